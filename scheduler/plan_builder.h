/* Internal: appends buffers and ops to one rank's plan, deriving each op's
 * dependencies from the ops that wrote its input buffers. */
#ifndef PF_SCHEDULER_PLAN_BUILDER_H
#define PF_SCHEDULER_PLAN_BUILDER_H

#include "base/warm.h"
#include "plan/plan.h"

typedef struct pf_plan_builder pf_plan_builder;

int pf_pb_create(int32_t rank, int32_t num_devices, uint64_t executable,
                 pf_plan_builder **out);
/* Frees the builder and, unless taken, its plan. */
void pf_pb_destroy(pf_plan_builder *b);
/* Hands the finished plan to the caller (pf_plan_free). Its ops, buffers
 * and everything they point to live in the plan's pool. */
pf_plan *pf_pb_take(pf_plan_builder *b);

/* Makes room for n_ops more ops and n_buffers more buffers, so that a plan
 * of known size is not copied as it grows (room reserved but never used
 * costs address space, not memory). Errors: PF_ENOMEM. */
int pf_pb_reserve(pf_plan_builder *b, size_t n_ops, size_t n_buffers);

/* The memory of the next n_ops ops and n_buffers buffers the plan will
 * write (clamped to what is reserved): out[0] the ops', out[1] the
 * buffers' (empty ranges where there is none), for a warmer (base/warm.h). */
void pf_pb_next_records(const pf_plan_builder *b, size_t n_ops, size_t n_buffers,
                        pf_warm_range *out);

/* Makes about `bytes` of the ops' lists and names to come lie in one block
 * of the plan's pool (pf_arena_reserve), and *out that block, for a warmer.
 * Returns 0 or PF_ENOMEM. */
int pf_pb_reserve_lists(pf_plan_builder *b, size_t bytes, pf_warm_range *out);

/* New buffer on `device` with shard spec `spec`. */
int pf_pb_buffer(pf_plan_builder *b, int32_t device, const pf_spec *spec,
                 int32_t shard, uint32_t *out);
pf_plan_buffer *pf_pb_buffer_at(pf_plan_builder *b, uint32_t index);

/* Appends a copy of `op` (name, kernel, attrs and box are copied, into the
 * plan's pool, equal boxes once, empty attrs shared; inputs,
 * outputs and deps are taken from the arguments, deps = writers of the
 * inputs). The new op becomes the last writer of its outputs. */
int pf_pb_op(pf_plan_builder *b, const pf_plan_op *op, const uint32_t *in,
             uint32_t n_in, const uint32_t *out, uint32_t n_out,
             uint32_t *index);

/* Records that shard `shard` of graph output `output` is buffer `buffer`. */
int pf_pb_slot(pf_plan_builder *b, int32_t output, int32_t shard, uint32_t buffer);

/* Adds communicator `id` over `ranks` unless the plan has it already. */
int pf_pb_comm(pf_plan_builder *b, int32_t id, const int32_t *ranks, uint32_t n);

#endif
