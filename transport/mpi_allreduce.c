/* Allreduces over point-to-point messages, two ways.
 *
 * Small vectors (at most PF_MPI_AR_SMALL_BYTES) by recursive doubling.
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
 * Larger vectors by a ring: the vector is cut into n blocks; in n - 1
 * steps each rank sends one block to its right neighbour and adds the one
 * from its left into its own (a reduce-scatter: rank r ends with the whole
 * sum of block r + 1), then in n - 1 more it passes the summed blocks on
 * (an allgather). Each rank moves 2 (n - 1) / n of the vector, the least
 * any allreduce can. libnbc sends the whole vector both ways between two
 * ranks and reduces all of it on each: a gradient of 800 KB took 280 us
 * against 190 for the blocking MPI_Allreduce and 200 for these two steps
 * (bench/train's gradients, 2 ranks).
 *
 * The same result bits on every rank (a replicated value must be one
 * value): recursive doubling combines the lower rank's vector with the
 * higher one's in that order on both partners (max and min of a NaN are
 * not symmetric), so both hold the same bits after every round; the ring
 * computes each block once, on one rank, and copies it to the others.
 *
 * Tags: every rank issues a communicator's collectives in the same order
 * (the gang order), so the k-th such allreduce on a communicator has the
 * same sequence number k on every rank, and its messages carry
 * (k mod W) * ROUNDS + round: two allreduces in flight at once on a
 * communicator never take each other's messages, whatever order their
 * rounds complete in. The k-th starts only once the (k - W)-th has
 * finished here (may_start), so no two in flight share a tag. A ring's steps
 * all carry round 1: each rank receives only from its left neighbour, one
 * step at a time, and MPI delivers one sender's messages of one tag in the
 * order they were sent. No other messages travel on these communicators
 * (MPI's own collectives use tags of their own). */
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
  int ring;  /* 1: by the ring; step: the ring steps posted so far */
  int step;
  int tag0;
  int pending, status;
  pf_mpi_cb cb;
  void *arg;
  uint64_t seq;                   /* its place in the lane's order */
  struct small_ar *older, *newer; /* in flight, in seq order */
  struct small_ar *next;          /* waiting for a tag */
  _Alignas(max_align_t) char tmp[]; /* what the partner sends */
} small_ar;

int pf_mpi_ar_direct(size_t count, pf_dtype dtype, int n) {
  size_t bytes = count * pf_dtype_size(dtype);
  return n >= 2 && (bytes <= PF_MPI_AR_SMALL_BYTES || count >= (size_t)n) &&
         bytes <= INT32_MAX &&
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

/* Posts a receive of rlen bytes into rbuf from rpeer and a send of slen
 * bytes of sbuf to speer (a peer < 0: none), on round r, both before
 * either is tracked: a request that cannot be tracked (out of memory) is
 * waited for here rather than lost, and its partner request, on which the
 * peer's may depend, is already posted. */
static int post_to(small_ar *ar, int round, int rpeer, void *rbuf, size_t rlen, int speer,
                   const void *sbuf, size_t slen) {
  MPI_Request req[2];
  int n = 0, rc = 0, tag = ar->tag0 + round;
  if (rpeer >= 0 &&
      MPI_Irecv(rbuf, (int)rlen, MPI_BYTE, rpeer, tag, ar->lane->comm, &req[n++]) != MPI_SUCCESS)
    return PF_EMPI;
  if (speer >= 0 && MPI_Isend(sbuf, (int)slen, MPI_BYTE, speer, tag, ar->lane->comm,
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

/* Recursive doubling: the partner's vector into tmp and/or ours to it. */
static int post(small_ar *ar, int peer, int round, int recv, int send) {
  return post_to(ar, round, recv ? peer : -1, ar->tmp, ar->bytes, send ? peer : -1, ar->acc,
                 ar->bytes);
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

/* ar leaves the lane's in-flight list. */
static void unlink_ar(small_ar *ar) {
  pf_mpi_ar_lane *lane = ar->lane;
  if (ar->older)
    ar->older->newer = ar->newer;
  else
    lane->first = ar->newer;
  if (ar->newer)
    ar->newer->older = ar->older;
  else
    lane->last = ar->older;
  lane->in_flight--;
}

static void finish(small_ar *ar, int status) {
  pf_mpi_ar_lane *lane = ar->lane;
  pf_mpi_cb cb = ar->cb;
  void *arg = ar->arg;
  unlink_ar(ar);
  free(ar);
  cb(arg, status);
  start_waiting(lane);
}

/* Block i of the ring: its first element and its length. */
static size_t block_at(const small_ar *ar, int i) {
  return ar->count * (size_t)i / (size_t)ar->lane->size;
}
static size_t block_len(const small_ar *ar, int i) { return block_at(ar, i + 1) - block_at(ar, i); }

/* Block i of n, i taken modulo n (negative too). */
static int block_mod(int i, int n) { return (i % n + n) % n; }

/* The ring's next step, once the last one is done: step k < n - 1 of the
 * reduce-scatter sends block me - k and receives block me - k - 1 into
 * tmp, added into ours once it is in; step n - 1 + j of the allgather
 * sends block me + 1 - j and receives block me - j where it belongs.
 * Called by start for the first step: if that fails with nothing in
 * flight, returns the error (the allreduce is not finished: start reports
 * it); else 0, and ar may be gone. */
static int ring_advance(small_ar *ar) {
  int n = ar->lane->size, me = ar->me, k = ar->step, rc, send, recv;
  size_t es = pf_dtype_size(ar->dtype);
  while (ar->status == 0) {
    if (k >= 1 && k <= n - 1) {
      int got = block_mod(me - k, n);
      pf_reduce_into(ar->acc + block_at(ar, got) * es, ar->tmp, block_len(ar, got), ar->dtype,
                     ar->op);
    }
    if (k == 2 * (n - 1)) break;
    if (k < n - 1) {
      send = block_mod(me - k, n);
      recv = block_mod(me - k - 1, n);
    } else {
      send = block_mod(me + 1 - (k - n + 1), n);
      recv = block_mod(me - (k - n + 1), n);
    }
    ar->step = ++k;
    rc = post_to(ar, 1, (me + n - 1) % n,
                 k <= n - 1 ? ar->tmp : ar->acc + block_at(ar, recv) * es, block_len(ar, recv) * es,
                 (me + 1) % n, ar->acc + block_at(ar, send) * es, block_len(ar, send) * es);
    if (rc != 0 && k == 1 && ar->pending == 0) return rc;
    if (rc != 0 && ar->status == 0) ar->status = rc;
    if (ar->pending > 0) return 0; /* on, from req_done */
  }
  finish(ar, ar->status);
  return 0;
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
  if (ar->ring) {
    ring_advance(ar); /* past its first step: never an error here */
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
  pf_mpi_ar_lane *lane = ar->lane;
  int rc = 0;
  ar->seq = lane->seq++;
  ar->tag0 = (int)(ar->seq % (uint64_t)lane->width) * ROUNDS;
  ar->older = lane->last;
  ar->newer = NULL;
  if (lane->last)
    lane->last->newer = ar;
  else
    lane->first = ar;
  lane->last = ar;
  lane->in_flight++;
  if (ar->ring) return ring_advance(ar);
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

/* 1 if the next allreduce may start: its tag is not one an allreduce
 * still in flight here uses, i.e. the oldest in flight is less than width
 * older. (Counting those in flight is not enough: when a younger one
 * finishes first, the next would take the tag of the oldest, and the two
 * would take each other's messages: a ring's blocks then arrive in the
 * wrong receive, truncated.) On another rank the oldest may still be in
 * flight: its messages from here were all sent before, and its receives
 * there were posted before, the new one's, so MPI matches them first. */
static int may_start(const pf_mpi_ar_lane *lane) {
  return lane->first == NULL || lane->seq - lane->first->seq < (uint64_t)lane->width;
}

static void start_waiting(pf_mpi_ar_lane *lane) {
  while (lane->waiting != NULL && may_start(lane)) {
    small_ar *ar = lane->waiting;
    int rc;
    if ((lane->waiting = ar->next) == NULL) lane->waiting_tail = NULL;
    if ((rc = start(ar)) != 0) finish(ar, rc);
  }
}

int pf_mpi_ar_start(pf_mpi *m, pf_mpi_ar_lane *lane, const void *send, void *recv, size_t count,
                    pf_dtype dtype, int reduce_op, pf_mpi_cb cb, void *arg) {
  size_t bytes = count * pf_dtype_size(dtype), tmp;
  int ring = bytes > PF_MPI_AR_SMALL_BYTES;
  small_ar *ar;
  if (lane->comm == MPI_COMM_NULL || !pf_mpi_ar_direct(count, dtype, lane->size))
    return PF_EINVAL;
  /* tmp: the partner's vector, or the ring's largest block. */
  tmp = ring ? (count / (size_t)lane->size + 1) * pf_dtype_size(dtype) : bytes;
  if ((ar = malloc(sizeof *ar + (tmp ? tmp : 1))) == NULL) return PF_ENOMEM;
  memset(ar, 0, sizeof *ar);
  ar->ring = ring;
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
  if (!may_start(lane) || lane->waiting != NULL) {
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
      unlink_ar(ar);
      lane->seq--;
      free(ar);
      return rc;
    }
  }
  return 0;
}
