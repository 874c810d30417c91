/* pathflow: per-rank counters.
 *
 * Every rank counts, from pf_init on, what it ran, what it moved to and
 * from each peer, and how long it waited. The controller (rank 0) reads any
 * rank's counters with pf_counters_get; PATHFLOW_COUNTERS=1 prints every
 * rank's at pf_finalize, one block per rank, on stderr.
 *
 * Counting is always on and costs no atomic operation per op: each device
 * worker keeps its own counts and publishes them when its part of a step
 * ends; the loop thread keeps the rest. A device's counts of a step still
 * running may therefore show up only when its part of the step ends.
 * Counters only grow: to measure a stretch of work, read them before and
 * after and subtract (pf_counters_diff).
 */
#ifndef PATHFLOW_COUNTERS_H
#define PATHFLOW_COUNTERS_H

#include <stdint.h>
#include <stdio.h>

#include "export.h"

/* The context (pathflow/context.h); declared here too, so that this header
 * stands on the base layer (the runtime fills these structs). */
typedef struct pf_context pf_context;

#ifdef __cplusplus
extern "C" {
#endif

/* What one rank exchanged with one peer (both seen from that rank). */
typedef struct pf_peer_counters {
  /* Tensor transfers of steps (SEND and RECV ops of the plans), on the
   * data channel: payload bytes and messages. */
  uint64_t data_bytes_sent, data_bytes_received;
  uint64_t data_messages_sent, data_messages_received;
  /* Control messages (plans, feeds, fetched shards, run orders, replies),
   * encoded bytes; heartbeats are not counted. Rank 0 talking to its own
   * executor sends nothing on the wire and counts nothing. */
  uint64_t control_bytes_sent, control_bytes_received;
  uint64_t control_messages_sent, control_messages_received;
} pf_peer_counters;

/* One local device of the rank. */
typedef struct pf_device_counters {
  /* Ops of the device that ran: kernels, local copies (reshards) and
   * collectives among the rank's own devices, by the device's worker or by
   * the loop thread for it. Ops skipped because their step had failed are
   * not counted. */
  uint64_t ops_run;
  /* Nanoseconds the device's worker had a step in hand whose next op was
   * not runnable yet (waiting for an input from another device or rank):
   * time the device sat idle while work was in flight. Time with no step
   * at all is not counted. */
  uint64_t wait_ns;
} pf_device_counters;

typedef struct pf_counters {
  int rank;
  /* Steps this rank ran its part of, and how many of them failed here. */
  uint64_t steps, steps_failed;
  /* Sums over the devices below. */
  uint64_t ops_run, device_wait_ns;
  /* Sums over the peers below of data messages, and the nanoseconds from
   * posting each send or receive to its completion (overlapping transfers
   * each count). */
  uint64_t transfers_sent, transfers_received, transfer_wait_ns;
  /* MPI collectives among ranks this rank took part in, the bytes it
   * contributed (its input), and the nanoseconds from issuing each to its
   * completion (time spent waiting for the other ranks and the network). */
  uint64_t collectives, collective_bytes, collective_wait_ns;
  /* Not counts but levels, when the counters were read: the buffers this
   * rank holds for the controller (fed inputs, outputs not yet released)
   * and their bytes. pf_counters_diff gives `after`'s levels. A released
   * buffer leaves them once its release reaches the rank: releases travel
   * with the next message to that rank, or within about 100 µs. */
  uint64_t buffers_held, buffer_bytes_held;
  int num_devices;
  pf_device_counters *devices; /* [num_devices] */
  int num_peers;               /* the job's ranks */
  pf_peer_counters *peers;     /* [num_peers], by rank; its own entry is zero */
} pf_counters;

/* Fetches rank `rank`'s counters to the controller (a round trip to that
 * rank; rank 0's own are read on its loop thread). *out is new, freed with
 * pf_counters_free. Call from the controller (rank 0) only.
 * Errors: PF_EINVAL (NULL argument, rank out of [0, size)), PF_ESTATE (the
 * context was finalized), PF_ENOMEM, PF_EDECODE (the rank's reply did not
 * decode), send errors. */
PF_API int pf_counters_get(pf_context *ctx, int rank, pf_counters **out);

/* Frees counters from pf_counters_get or pf_counters_diff. NULL: no-op. */
PF_API void pf_counters_free(pf_counters *c);

/* *out = after - before, field by field (a stretch of work between two
 * pf_counters_get of the same rank). *out is new, freed with
 * pf_counters_free. Errors: PF_EINVAL (NULL argument; different ranks,
 * device or peer counts; a counter of `before` above the one of `after`),
 * PF_ENOMEM. */
PF_API int pf_counters_diff(const pf_counters *after, const pf_counters *before, pf_counters **out);

/* Writes the counters as one readable block headed "pathflow counters:
 * rank R" (what PATHFLOW_COUNTERS=1 prints): totals, one line per device,
 * one line per peer with any traffic. Returns 0, or PF_EINVAL (NULL
 * argument) or PF_ESYS (the write failed). */
PF_API int pf_counters_print(const pf_counters *c, FILE *f);

#ifdef __cplusplus
}
#endif

#endif
