/* Internal: how pathflow.Plan's columns are laid out on the wire, shared by
 * the encoder (plan_codec.c) and the decoder (plan_decode.c), which both
 * read and write them by hand (see pathflow.proto, PlanOps).
 */
#ifndef PF_PLAN_COLUMNS_H
#define PF_PLAN_COLUMNS_H

/* Plan's fields that hold the columns. */
#define PLAN_BUFFERS_FIELD 11
#define PLAN_OPS_FIELD 12

/* PlanBuffers' columns, by field number - 1. */
enum { BC_SPEC, BC_DEVICE, BC_INPUT, BC_OUTPUT, BC_SHARD, BC_IN_ARENA, BC_OFFSET, BC_HOST, BC_N };
/* PlanOps' columns, by field number - 1. */
enum {
  OC_KIND, OC_DEVICE, OC_PROGRAM, OC_NAME, OC_SHARD, OC_NUM_SHARDS, OC_KERNEL, OC_ATTRS,
  OC_INPUT_COUNT, OC_INPUTS, OC_OUTPUT_COUNT, OC_OUTPUTS, OC_DEP_COUNT, OC_DEPS, OC_BOX_RANK,
  OC_BOXES, OC_PEER, OC_TAG, OC_COMM, OC_COLLECTIVE, OC_REDUCE_OP, OC_AXIS, OC_ROOT, OC_IN_AXIS,
  OC_N
};

/* Most inputs, outputs or deps of one op, and most output slots or
 * communicator members of one plan, that a decoder accepts. */
#define MAX_LIST (1u << 20)

#endif
