/* Small allreduces by recursive doubling over point-to-point messages.
 *
 * MPI_Iallreduce goes through Open MPI's libnbc, whose schedule takes
 * several passes of the progress engine (each behind libnbc's lock) to
 * finish one scalar: for a dependent chain of small allreduces, that is
 * most of a step's time (bench/dispatch, Chained). A small vector is
 * cheaper to exchange directly: log2(n) rounds of one MPI_Isend and one
 * MPI_Irecv with a partner, tested with the transport's other quick
 * requests, each completing on the poll that sees its message.
 *
 * n not a power of two: the n - p2 ranks above the largest power of two
 * p2 first hand their vector to rank r - p2 (round 0) and get the result
 * back at the end (the last round).
 *
 * The same result bits on every rank (a replicated value must be one
 * value): each exchange combines the lower rank's vector with the higher
 * one's in that order on both partners (max and min of a NaN are not
 * symmetric), so both hold the same bits after every round.
 *
 * Tags: every rank issues a communicator's collectives in the same order
 * (the gang order), so the k-th small allreduce on a communicator has the
 * same sequence number k on every rank, and its messages carry
 * (k mod W) * ROUNDS + round: two allreduces in flight at once on a
 * communicator never take each other's messages, whatever order their
 * rounds complete in. At most W are in flight on a communicator; the next
 * waits for the oldest, so no two in flight share a tag. No other messages
 * travel on these communicators (MPI's own collectives use tags of their
 * own). */
#include <stdlib.h>
#include <string.h>

#include "base/reduce.h"
#include "base/util.h"
#include "pathflow/error.h"
#include "transport/mpi.h"

#define ROUNDS 32 /* round 0, up to 30 doubling rounds, the last */
#define LAST_ROUND (ROUNDS - 1)

typedef struct small_ar {
  pf_mpi *m;
  pf_mpi_ar_lane *lane;
  char *acc; /* the caller's receive buffer: the running result */
  size_t bytes, count;
  pf_dtype dtype;
  int op;
  int me, p2, rem;
  int mask; /* doubling: the partner is me ^ mask; 0 before doubling, p2 after */
  int tag0;
  int pending, status;
  pf_mpi_cb cb;
  void *arg;
  struct small_ar *next; /* waiting for a tag */
  _Alignas(max_align_t) char tmp[]; /* what the partner sends */
} small_ar;

int pf_mpi_ar_small(size_t bytes, pf_dtype dtype, int n) {
  return n >= 2 && bytes <= PF_MPI_AR_SMALL_BYTES &&
         (dtype == PF_F32 || dtype == PF_F64 || dtype == PF_I32 || dtype == PF_I64);
}

void pf_mpi_ar_lane_init(pf_mpi_ar_lane *lane, MPI_Comm comm, int tag_ub) {
  memset(lane, 0, sizeof *lane);
  lane->comm = comm;
  lane->width = tag_ub / ROUNDS;
  if (lane->width < 1) lane->width = 1;
  if (comm != MPI_COMM_NULL) {
    MPI_Comm_rank(comm, &lane->rank);
    MPI_Comm_size(comm, &lane->size);
  }
}

static void advance(small_ar *ar);

static void req_done(void *arg, int status) {
  small_ar *ar = arg;
  if (status != 0 && ar->status == 0) ar->status = status;
  if (--ar->pending == 0) advance(ar);
}

/* Posts a receive into tmp and/or a send of acc with `peer`, on round r,
 * both before either is tracked: a request that cannot be tracked (out of
 * memory) is waited for here rather than lost, and its partner request, on
 * which the peer's may depend, is already posted. */
static int post(small_ar *ar, int peer, int round, int recv, int send) {
  MPI_Request req[2];
  int n = 0, rc = 0, tag = ar->tag0 + round;
  if (recv && MPI_Irecv(ar->tmp, (int)ar->bytes, MPI_BYTE, peer, tag, ar->lane->comm,
                        &req[n++]) != MPI_SUCCESS)
    return PF_EMPI;
  if (send && MPI_Isend(ar->acc, (int)ar->bytes, MPI_BYTE, peer, tag, ar->lane->comm,
                        &req[n++]) != MPI_SUCCESS) {
    n--;
    rc = PF_EMPI; /* the receive, if any, is still tracked */
  }
  for (int k = 0; k < n; k++) {
    ar->pending++;
    if (pf_mpi_track_quick(ar->m, req[k], req_done, ar) == 0) continue;
    ar->pending--;
    if (MPI_Wait(&req[k], MPI_STATUS_IGNORE) != MPI_SUCCESS && rc == 0) rc = PF_EMPI;
  }
  return rc;
}

/* acc = lower (+) higher, the partner's vector being in tmp. */
static void combine(small_ar *ar, int partner) {
  if (ar->me < partner) {
    pf_reduce_into(ar->acc, ar->tmp, ar->count, ar->dtype, ar->op);
  } else {
    pf_reduce_into(ar->tmp, ar->acc, ar->count, ar->dtype, ar->op);
    memcpy(ar->acc, ar->tmp, ar->bytes);
  }
}

static void start_waiting(pf_mpi_ar_lane *lane);

static void finish(small_ar *ar, int status) {
  pf_mpi_ar_lane *lane = ar->lane;
  pf_mpi_cb cb = ar->cb;
  void *arg = ar->arg;
  free(ar);
  lane->in_flight--;
  cb(arg, status);
  start_waiting(lane);
}

/* Issues what comes next, once nothing of this allreduce is in flight. A
 * request that fails ends it with PF_EMPI (the step fails; a peer left
 * waiting is the hang watchdog's). */
static void advance(small_ar *ar) {
  int rc;
  if (ar->status != 0) {
    finish(ar, ar->status);
    return;
  }
  if (ar->me >= ar->p2) { /* handed over in round 0; the result is in tmp */
    memcpy(ar->acc, ar->tmp, ar->bytes);
    finish(ar, 0);
    return;
  }
  if (ar->mask == 0) { /* round 0 is done (or had nothing to do) */
    if (ar->me < ar->rem) combine(ar, ar->me + ar->p2);
    ar->mask = 1;
  } else if (ar->mask < ar->p2) { /* a doubling round is done */
    combine(ar, ar->me ^ ar->mask);
    ar->mask <<= 1;
  } else { /* the result went back up: done */
    finish(ar, 0);
    return;
  }
  if (ar->mask < ar->p2) {
    int round = 1 + __builtin_ctz((unsigned)ar->mask);
    rc = post(ar, ar->me ^ ar->mask, round, 1, 1);
  } else if (ar->me < ar->rem) {
    rc = post(ar, ar->me + ar->p2, LAST_ROUND, 0, 1);
  } else {
    finish(ar, 0);
    return;
  }
  if (rc != 0 && ar->status == 0) ar->status = rc;
  if (ar->pending == 0) advance(ar); /* the round was waited for, or failed */
}

/* Round 0: hand the vector down (ranks above p2), or take one (the ranks
 * below n - p2), or nothing. Returns an error only when nothing of the
 * allreduce is in flight any more (then it is not finished). */
static int start(small_ar *ar) {
  int rc = 0;
  ar->lane->in_flight++;
  ar->tag0 = (int)(ar->lane->seq++ % (uint64_t)ar->lane->width) * ROUNDS;
  if (ar->me >= ar->p2) {
    /* The result comes back into tmp: not into acc, which the send reads. */
    if ((rc = post(ar, ar->me - ar->p2, 0, 0, 1)) == 0)
      rc = post(ar, ar->me - ar->p2, LAST_ROUND, 1, 0);
  } else if (ar->me < ar->rem) {
    rc = post(ar, ar->me + ar->p2, 0, 1, 0);
  }
  if (rc != 0 && ar->pending == 0) return rc;
  if (rc != 0)
    ar->status = rc; /* ends it once what is in flight completes */
  else if (ar->pending == 0)
    advance(ar); /* nothing in round 0, or it was waited for */
  return 0;
}

static void start_waiting(pf_mpi_ar_lane *lane) {
  while (lane->waiting != NULL && lane->in_flight < lane->width) {
    small_ar *ar = lane->waiting;
    int rc;
    if ((lane->waiting = ar->next) == NULL) lane->waiting_tail = NULL;
    if ((rc = start(ar)) != 0) finish(ar, rc);
  }
}

int pf_mpi_ar_start(pf_mpi *m, pf_mpi_ar_lane *lane, const void *send, void *recv, size_t count,
                    pf_dtype dtype, int reduce_op, pf_mpi_cb cb, void *arg) {
  size_t bytes = count * pf_dtype_size(dtype);
  small_ar *ar;
  if (lane->comm == MPI_COMM_NULL || !pf_mpi_ar_small(bytes, dtype, lane->size))
    return PF_EINVAL;
  if ((ar = malloc(sizeof *ar + (bytes ? bytes : 1))) == NULL) return PF_ENOMEM;
  memset(ar, 0, sizeof *ar);
  ar->m = m;
  ar->lane = lane;
  ar->acc = recv;
  ar->bytes = bytes;
  ar->count = count;
  ar->dtype = dtype;
  ar->op = reduce_op;
  ar->me = lane->rank;
  ar->p2 = 1;
  while (ar->p2 * 2 <= lane->size) ar->p2 *= 2;
  ar->rem = lane->size - ar->p2;
  ar->cb = cb;
  ar->arg = arg;
  if (send != NULL && send != recv) memcpy(ar->acc, send, bytes);
  if (lane->in_flight >= lane->width || lane->waiting != NULL) {
    if (lane->waiting_tail)
      lane->waiting_tail->next = ar;
    else
      lane->waiting = ar;
    lane->waiting_tail = ar;
    return 0;
  }
  {
    int rc = start(ar);
    if (rc != 0) {
      /* Nothing of it is in flight: the caller hears of it now, not later. */
      lane->in_flight--;
      lane->seq--;
      free(ar);
      return rc;
    }
  }
  return 0;
}
