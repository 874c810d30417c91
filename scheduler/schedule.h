/* Internal: compiling a validated graph into per-rank plans.
 *
 *   place  - each virtual slice gets physical devices (pinned, or packed:
 *            slices take consecutive devices of their kind, wrapping round
 *            when the cluster is smaller than the sum of the slices);
 *   order  - programs in topological order, ties by program index: the
 *            gang order, the same on every rank;
 *   lower  - per shard: a kernel op; per edge whose layouts differ: the
 *            pieces each destination shard needs (local copies now,
 *            transfers between ranks later); equal layouts on the same
 *            device alias the same buffer (a pointer hand-off).
 */
#ifndef PF_SCHEDULER_SCHEDULE_H
#define PF_SCHEDULER_SCHEDULE_H

#include "graph/graph_internal.h"
#include "plan/plan.h"
#include "scheduler/cluster.h"

/* Where one shard of a graph input or output lives. */
typedef struct pf_io_shard {
  int32_t rank;
  int32_t device; /* local index on that rank */
  uint32_t buffer; /* plan buffer index on that rank */
} pf_io_shard;

typedef struct pf_io {
  char *name;
  pf_spec spec; /* global */
  pf_sharding sharding;
  int num_shards;
  pf_io_shard *shards;
} pf_io;

typedef struct pf_compiled {
  int n_ranks;
  pf_plan **plans; /* one per rank; ownership may be moved out (set NULL) */
  int n_inputs, n_outputs;
  pf_io *inputs, *outputs;
  uint64_t n_transfers; /* send/receive pairs; their tags are 0..n-1 */
  int n_devices;        /* of the cluster */
  int64_t *peak;        /* per global device: peak bytes of one step */
  int32_t *slice_devices; /* per slice: offset into `placed` */
  int32_t *placed;        /* global device of each slice's shard, concatenated */
  int n_slices;
  int32_t *stages; /* ranks with a plan, in the order they first act */
  int n_stages;
  pf_dispatch_mode dispatch;
} pf_compiled;

/* Compiles `g` (validated first) for `cluster`. Errors: any validation
 * error, PF_ESLICE (a slice cannot be placed: the message names it),
 * PF_ENOTSUP (a collective over a slice with several devices on each of
 * several ranks), PF_EMEMORY (a device's peak exceeds its memory: the
 * message names the device, the peak and the limit), PF_ENOMEM. */
int pf_schedule(const pf_graph *g, const pf_cluster *cluster,
                uint64_t executable_id, pf_compiled **out, pf_diag *diag);

/* As pf_schedule, but rank `later`'s memory plan (its buffers' places in
 * its devices' step arenas, the peaks of its devices in (*out)->peak, and
 * their check against its devices' memory) is left to pf_schedule_memory:
 * a controller sends the other ranks their plans first, and plans its own
 * memory while they decode theirs. later = -1: none left (pf_schedule). */
int pf_schedule_split(const pf_graph *g, const pf_cluster *cluster, uint64_t executable_id,
                      int later, pf_compiled **out, pf_diag *diag);

/* Rank `rank`'s memory plan, left by pf_schedule_split. Errors: PF_EMEMORY
 * (as pf_schedule's), PF_ENOMEM. */
int pf_schedule_memory(pf_compiled *c, const pf_cluster *cluster, int rank, pf_diag *diag);
void pf_compiled_free(pf_compiled *c);

#endif
