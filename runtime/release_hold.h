/* Internal: releases held back for the next message to their rank.
 *
 * A loop of executions releases each one's outputs (pf_future_destroy,
 * pf_buffer_release): a RELEASE message to every rank holding shards, as
 * many control messages as runs, each encoded, sent, received, decoded
 * and handled. Held here instead, they ride on the next run order to that
 * rank (its `ids`: handled as a RELEASE just before the run), or go
 * together as one RELEASE before any other message to that rank, or when
 * held too long (the loop thread's poll, runtime.c). Loop thread only. */
#ifndef PF_RUNTIME_RELEASE_HOLD_H
#define PF_RUNTIME_RELEASE_HOLD_H

#include <stdint.h>

#include "runtime/msg.h"

typedef struct pf_release_hold pf_release_hold;

/* For a job of `size` ranks. Errors: PF_ENOMEM. */
int pf_release_hold_create(int size, pf_release_hold **out);
/* Frees the hold and whatever it still holds (nothing is sent). */
void pf_release_hold_destroy(pf_release_hold *h);
/* Takes the ids of RELEASE message m for rank (and frees m), held since
 * `now` if none was held. Returns 1 if rank's list is full (the caller
 * sends it now: pf_release_hold_take), 0 if not, PF_ENOMEM if it could not
 * take them (m is then still the caller's, to send as it is). */
int pf_release_hold_add(pf_release_hold *h, int rank, pf_msg *m, uint64_t now);
/* 1 if ids are held for rank. */
int pf_release_hold_has(const pf_release_hold *h, int rank);
/* Rank's held ids as a new RELEASE message (the caller's), or NULL: none
 * held, or out of memory (then they stay held for a later try). */
pf_msg *pf_release_hold_take(pf_release_hold *h, int rank);
/* Moves rank's held ids onto RUN message m (m->ids, empty before). */
void pf_release_hold_attach(pf_release_hold *h, int rank, pf_msg *m);
/* 1 if ids have been held for some rank since before now - max_ns (the
 * caller sends them all); with max_ns 0, if any are held at all. */
int pf_release_hold_due(const pf_release_hold *h, uint64_t now, uint64_t max_ns);

#endif
