/* Internal to the MPI transport's collectives (mpi_lane.c, mpi_allreduce.c,
 * mpi_exchange.c): one collective in flight, and the lane's services to
 * the algorithms.
 *
 * An algorithm is a sequence of rounds. `first` posts the first round;
 * whenever every request of a round has completed, `next` computes what
 * the round brought and posts the following one, or finishes. */
#ifndef PF_TRANSPORT_MPI_COLL_H
#define PF_TRANSPORT_MPI_COLL_H

#include <stddef.h>

#include "transport/mpi.h"

typedef struct pf_mpi_coll pf_mpi_coll;

/* A small exchange with one partner (a round of recursive doubling): every
 * collective of a lane that takes tag slot s receives round r on the same
 * tag from the same partner, so one persistent receive made for (s, r)
 * serves them all, into its own buffer (read where it landed). Its send
 * stays an MPI_Isend: Open MPI sends a small one inline, which a
 * persistent send does not. Re-made when the size changes; the collective
 * that used the slot before has finished here (may_start), so the request
 * is inactive. */
#define PF_MPI_PAIR_MAX_BYTES 512
typedef struct pf_mpi_pair {
  MPI_Request req;
  size_t bytes; /* 0: not made */
  char *buf;    /* what was received */
} pf_mpi_pair;

struct pf_mpi_coll {
  pf_mpi *m;
  pf_mpi_lane *lane;
  pf_collective_call call;
  int me, n; /* this rank among the members, and their number */
  /* Allreduce: acc is the caller's receive buffer (the running result);
   * the ring reads the input from in (NULL: in place, in acc). */
  char *acc;
  const char *in;
  /* Recursive doubling: where the partner's vector came in (tmp, or the
   * buffer of the pair it came through, `pair`). */
  char *got;
  pf_mpi_pair *pair;
  size_t bytes, count;
  int p2, rem; /* doubling: the largest power of two <= n, and n - p2 */
  int mask;    /* doubling: the partner is me ^ mask; 0 before doubling, p2 after */
  int ring;    /* 1: by the ring; step: the ring steps posted so far */
  int step;
  int tag0; /* the first of its PF_MPI_ROUNDS tags */
  int pending, status;
  /* Posts the first round. Returns an error only when nothing of it is in
   * flight (the collective is then not finished: the caller reports it). */
  int (*first)(pf_mpi_coll *c);
  /* Every request of the last round has completed (status 0): posts the
   * next round, or calls pf_mpi_coll_finish. */
  void (*next)(pf_mpi_coll *c);
  pf_mpi_cb cb;
  void *arg;
  uint64_t seq;                     /* its place in the lane's order */
  struct pf_mpi_coll *older, *newer; /* in flight, in seq order */
  struct pf_mpi_coll *next_waiting;  /* waiting for a tag */
  MPI_Request *reqs;                 /* room for 2 n requests, in tmp's block */
  size_t block;                      /* the record's bytes (pf_mpi_scratch_take) */
  _Alignas(max_align_t) char tmp[]; /* what the algorithm receives into */
};

/* One message of a round: to (send) or from member `peer`. */
typedef struct pf_mpi_xfer {
  int peer;
  int send;
  void *buf;
  size_t len;
} pf_mpi_xfer;

/* Posts every message of round `round` (all before any is tracked: a
 * request that cannot be tracked is waited for, and the peer's may depend
 * on another of them). Returns 0 or the first error; requests posted
 * before it stay tracked. */
int pf_mpi_coll_post(pf_mpi_coll *c, int round, const pf_mpi_xfer *x, int n);
/* Sends `bytes` (1 to PF_MPI_PAIR_MAX_BYTES) of buf to member `peer` and
 * receives as many from it, on round `round`, the receive through the
 * lane's pair for the collective's tag slot and that round: c->pair is
 * the pair (NULL when it could not be had: PF_ENOMEM, PF_EMPI, nothing
 * in flight), the partner's bytes arrive at c->pair->buf. Returns 0 or
 * the first error, as pf_mpi_coll_post (what was started stays tracked). */
int pf_mpi_coll_pair(pf_mpi_coll *c, int round, int peer, const void *buf, size_t bytes);
/* Ends the collective: leaves the lane, runs its callback, frees it, and
 * starts what waited for its tag. */
void pf_mpi_coll_finish(pf_mpi_coll *c, int status);
/* After a round was posted with result rc: records a failure, and goes on
 * at once when nothing of the round is in flight (it was waited for, or
 * failed). */
void pf_mpi_coll_posted(pf_mpi_coll *c, int rc);

/* The algorithms: given c's call, me and n, set its first and next (and
 * their own fields) and say how many bytes of tmp they need, from the
 * call's shape only (kind, dtype, reduce_op, count, bytes, root: not its
 * buffers): c is then copied into the record that has that room, and kept
 * as the lane's template for the next call of that shape. Errors:
 * PF_EINVAL (a call they cannot do). */
int pf_mpi_allreduce_setup(pf_mpi_coll *c, size_t *tmp_bytes);
int pf_mpi_exchange_setup(pf_mpi_coll *c, size_t *tmp_bytes);
/* An allreduce's own use of its call's buffers, in its record: where the
 * result accumulates (the receive buffer), and the input read where it is
 * (the ring) or copied there (recursive doubling). */
void pf_mpi_allreduce_bind(pf_mpi_coll *c);

#endif
