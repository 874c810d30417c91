/* Internal: a plan, the part of a compiled graph that one executor runs.
 *
 * Produced by the scheduler, sent over the wire as pathflow.Plan
 * (plan/plan_codec.c), run by the executor (runtime/executor.c).
 * Buffers and ops are referred to by their index. Ops are in gang order:
 * every dep of op i is an op j < i, so the order is topological, and a
 * device runs its ops in this order.
 */
#ifndef PF_PLAN_PLAN_H
#define PF_PLAN_PLAN_H

#include <stdint.h>

#include "base/arena.h"
#include "base/box.h"
#include "base/diag.h"
#include "pathflow/attrs.h"
#include "pathflow/types.h"

/* One byte (packed), as in every op record of a plan. */
typedef enum __attribute__((packed)) pf_op_kind {
  PF_OP_KERNEL = 0,
  PF_OP_COPY = 1,
  PF_OP_SEND = 2,
  PF_OP_RECV = 3,
  PF_OP_COLLECTIVE = 4
} pf_op_kind;

/* Which of a device's data paths go through host memory (a bit mask): a
 * device whose memory the host cannot address (a GPU's) reports the paths
 * the runtime cannot run on its memory directly, and the scheduler stages
 * them through host buffers (pf_plan_buffer.host) with copies on the
 * device. A CPU device, or a simulated one, reports 0. Feeds and fetches
 * are not staged in plans: values stay in device memory between
 * executions, and the runtime moves one across the host boundary when a
 * feed or fetch needs it (pf_executor_to_host, _to_device). */
typedef enum pf_stage {
  PF_STAGE_LOCAL = 1,       /* collectives among the devices of a rank */
  PF_STAGE_TRANSFERS = 2,   /* sends and receives between ranks */
  PF_STAGE_COLLECTIVES = 4, /* collectives between ranks */
  PF_STAGE_ALL = 7
} pf_stage;

typedef struct pf_plan_buffer {
  int32_t device;
  /* Shard spec. Not inline: a spec is 72 bytes, most buffers of a plan
   * share a few (the scheduler's plans point at one copy each in the
   * pool; a decoded plan's are in own_specs), and the plan's memory is
   * most of a compile's time (page faults). */
  const pf_spec *spec;
  int32_t input;  /* graph input index, or -1 */
  int32_t output; /* graph output index, or -1 */
  int32_t shard;
  int32_t in_arena; /* 1: lives at `offset` in its device's step arena */
  int64_t offset;
  /* 1: in host memory although its device's memory is not: a staging
   * buffer that a send, a receive or a collective uses (see pf_stage); its
   * device's copies move it from and to that device's own buffers. Never
   * in the arena. 0 for every buffer of a CPU device. */
  int32_t host;
} pf_plan_buffer;

/* A plan holds millions of these (a million programs on 2 ranks: 1.5
 * million per rank, and the controller builds every rank's): each byte is
 * megabytes of fresh memory, the cost of a large compile. The fields of
 * small range are bytes; a decoder refuses what does not fit. */
typedef struct pf_plan_op {
  pf_op_kind kind;
  int8_t collective; /* pf_collective_kind */
  int8_t reduce_op;  /* pf_reduce_op */
  int8_t in_axis;    /* a tensor axis (< PF_MAX_RANK) */
  int32_t device;
  int32_t program;
  int32_t shard, num_shards;
  uint32_t n_in, n_out, n_deps;
  int32_t peer;
  int32_t comm; /* COLLECTIVE: communicator id, -1 within this rank */
  int32_t axis; /* a tensor axis, or (BROADCAST) the root's place among its rank's inputs */
  int32_t root;
  int64_t tag;
  char *name; /* program name, for messages; never NULL */
  char *kernel;     /* KERNEL only, else NULL */
  pf_attrs *attrs;  /* KERNEL only, else NULL */
  uint32_t *inputs;  /* buffer indices */
  uint32_t *outputs; /* buffer indices */
  uint32_t *deps;    /* op indices, each < this op's index */
  /* COPY, SEND, RECV (required); NULL elsewhere, read as a box of rank 0.
   * Out of line: a box is 200 bytes and most ops have none; ops of a
   * scheduled plan share equal boxes. */
  pf_box *box;
} pf_plan_op;
#if UINTPTR_MAX == UINT64_MAX
_Static_assert(sizeof(pf_plan_op) == 112, "a plan op record grew: see its comment");
#endif

/* Shard `shard` of graph output `output` is buffer `buffer`. A buffer may
 * serve several outputs (one value under two names). */
typedef struct pf_plan_slot {
  int32_t output;
  int32_t shard;
  uint32_t buffer;
} pf_plan_slot;

/* A communicator for collectives: rank i of it is ranks[i]. id names it
 * in this plan's ops; group is the job's number for this list of ranks
 * (the same in every plan of the job: see pf_comm_groups in
 * api/context_internal.h). */
typedef struct pf_plan_comm {
  int32_t id;
  uint32_t group;
  uint32_t n_ranks;
  int32_t *ranks;
} pf_plan_comm;

typedef struct pf_plan {
  uint64_t executable;
  int32_t rank;
  int32_t num_devices;
  int32_t num_inputs, num_outputs;
  uint32_t n_buffers, n_ops, n_slots, n_comms;
  pf_plan_buffer *buffers;
  pf_plan_op *ops;
  pf_plan_slot *slots; /* output slots */
  pf_plan_comm *comms;
  int64_t *arena_bytes; /* NULL, or per device: bytes of its step arena */
  /* NULL: ops and buffers are malloc'd arrays, and each op owns its name,
   * kernel, lists and box (malloc'd, freed one by one). Else all of these
   * live in this pool (the scheduler's plans and decoded ones: millions of
   * ops without a malloc each) and are freed with it; attrs are always a
   * reference the op owns (possibly on a set shared with other ops or the
   * graph: pf_attrs_ref), let go of with pf_attrs_destroy. Code that grows a
   * plan's arrays must know which. */
  pf_arena *pool;
  /* NULL, or the plan's own specs that its buffers point at (a decoded
   * plan: each distinct spec once), freed with it. */
  pf_spec *own_specs;
  /* The local device count pf_plan_decode checked the plan for
   * (pf_plan_check), so that the executor loading it need not check it
   * again; 0: not checked. Code that changes a plan sets it to 0. */
  int32_t checked_for;
} pf_plan;

/* Frees the plan, its ops' strings, lists, boxes and attrs (see `pool`). */
void pf_plan_free(pf_plan *p);

/* Checks every index, spec and box of a plan: what a decoder must do before
 * an executor trusts it. PF_EDECODE with a message naming the op or buffer.
 * `num_devices`: the executor's local device count. */
int pf_plan_check(const pf_plan *p, int num_devices, pf_diag *diag);

/* Serializes to pathflow.Plan. *buf is malloc'd, owned by the caller.
 * Errors: PF_ENOMEM; PF_EINVAL (what the wire cannot carry: a rank out of
 * range, a buffer without a spec; pf_plan_check refuses these too). */
int pf_plan_encode(const pf_plan *p, uint8_t **buf, size_t *len);

/* pf_plan_encode in two steps, for a caller that writes the plan inside a
 * larger message without copying it (runtime/msg_codec.c's LoadPlan: a
 * plan can be 80 MB). pf_plan_measure finds the encoded size (*len) and
 * keeps what writing it needs in *w, which reads p until written: p must
 * not change meanwhile. pf_plan_write writes exactly *len bytes at out and
 * frees w; pf_plan_writer_free frees one that will not be written.
 * Errors: as pf_plan_encode. */
typedef struct pf_plan_writer pf_plan_writer;
int pf_plan_measure(const pf_plan *p, pf_plan_writer **w, size_t *len);
void pf_plan_write(pf_plan_writer *w, uint8_t *out);
void pf_plan_writer_free(pf_plan_writer *w);

/* Parses and checks (pf_plan_check) a pathflow.Plan. On success *out is a
 * new plan owned by the caller (pf_plan_free). Errors: PF_EDECODE, PF_ENOMEM. */
int pf_plan_decode(const uint8_t *buf, size_t len, int num_devices,
                   pf_plan **out, pf_diag *diag);

/* 1 if both plans are equal field by field (for round-trip tests). */
int pf_plan_equal(const pf_plan *a, const pf_plan *b);

#endif
