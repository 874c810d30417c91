/* Internal: staging through host memory, for devices whose memory the host
 * cannot address (GPUs; see pf_stage in plan/plan.h).
 *
 * The runtime sends, receives, reduces, feeds and fetches host memory. On a
 * device that reports a path as staged, the scheduler gives that path a
 * host buffer (pf_plan_buffer.host) and moves data between it and the
 * device's own buffers with COPY ops on the device, which the executor runs
 * as host-to-device or device-to-host copies. A buffer read in the other
 * memory than the one it was written in gets a twin there, made once and
 * shared by every later reader (plan buffers are written before they are
 * read, and never after: a twin stays true).
 */
#ifndef PF_SCHEDULER_STAGING_H
#define PF_SCHEDULER_STAGING_H

#include <stddef.h>
#include <stdint.h>

#include "base/box.h"
#include "scheduler/plan_builder.h"

/* Chunks of a staged transfer: a send of a larger box is cut along its
 * first axis of more than one element, so that the device's copy of chunk
 * k+1 overlaps the network's transfer of chunk k (and the receiver's copy
 * of chunk k the transfer of chunk k+1). */
#define PF_STAGE_CHUNK_BYTES ((int64_t)4 << 20)

/* Twins made so far, per rank and buffer. */
typedef struct pf_stage_memo {
  int n_ranks;
  uint32_t **twin; /* per rank: twin of each buffer, UINT32_MAX: none */
  size_t *cap;
} pf_stage_memo;

int pf_stage_memo_init(pf_stage_memo *m, int n_ranks);
void pf_stage_memo_free(pf_stage_memo *m);

/* The buffer that a reader in host memory (want_host 1) or in device memory
 * (0) uses for buffer b of rank `rank`'s plan: b itself when it is there
 * already (in_device_memory says whether b's device keeps its buffers
 * where the host cannot reach), else b's twin, made with a COPY op on b's
 * device named after `program` the first time it is asked for. Errors:
 * PF_ENOMEM. */
int pf_stage_buffer(pf_stage_memo *m, pf_plan_builder *pb, int32_t rank, uint32_t b,
                    int in_device_memory, int want_host, int32_t program, const char *name,
                    uint32_t *out);

/* How many chunks a staged transfer of `box` (elements of elem bytes) is
 * cut into, and chunk k of them (its box, offsets moved along the cut
 * axis). */
int pf_stage_chunks(const pf_box *box, size_t elem);
void pf_stage_chunk(const pf_box *box, int n_chunks, int k, pf_box *out);

#endif
