/* Internal: the loopback transport: the ranks of a job as runtimes of one
 * process, joined by memory instead of a network (transport/transport.h's
 * interface). pf_init makes one when PATHFLOW_LOOPBACK_RANKS=N: a
 * multi-rank plan then runs in a single process, without mpirun, under a
 * debugger or a thread sanitizer. Messages are copied between the ranks'
 * buffers, matched by (source, destination, tag) in posting order as MPI
 * matches them; a collective completes when every member has issued it,
 * computed by the last one to arrive. Completions and control messages
 * wait in each rank's queue until its loop makes progress, and the
 * transport wakes that loop (set_wake), so nothing is polled.
 *
 * Threads: every rank's calls may come from its own threads at once; one
 * lock guards the shared state. */
#ifndef PF_TRANSPORT_LOOPBACK_H
#define PF_TRANSPORT_LOOPBACK_H

#include "transport/transport.h"

typedef struct pf_loopback pf_loopback;

/* A fabric of n_ranks (>= 1) endpoints. Errors: PF_EINVAL, PF_ENOMEM. */
int pf_loopback_create(int n_ranks, pf_loopback **out);
/* Rank `rank`'s transport, owned by the fabric; NULL for a bad rank. */
pf_transport *pf_loopback_transport(pf_loopback *lb, int rank);
/* Frees the fabric and whatever is still queued in it; every runtime
 * using it must have stopped. NULL: no-op. */
void pf_loopback_destroy(pf_loopback *lb);

#endif
