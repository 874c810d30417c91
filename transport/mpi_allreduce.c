/* Allreduces over point-to-point messages, two ways.
 *
 * Small vectors (at most PF_MPI_AR_SMALL_BYTES) by recursive doubling.
 * MPI_Iallreduce, used before, goes through Open MPI's libnbc, whose
 * schedule takes several passes of the progress engine (each behind
 * libnbc's lock) to finish one scalar: for a dependent chain of small
 * allreduces, that was most of a step's time (bench/dispatch, Chained). A
 * small vector is cheaper to exchange directly: log2(n) rounds of one
 * MPI_Isend and one
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
 * Tags and order: see mpi_lane.c. A ring's steps all carry round 1: each
 * rank receives only from its left neighbour, one step at a time, and MPI
 * delivers one sender's messages of one tag in the order they were sent. */
#include <string.h>

#include "base/reduce.h"
#include "base/util.h"
#include "pathflow/error.h"
#include "transport/mpi_coll.h"

#define LAST_ROUND (PF_MPI_ROUNDS - 1)

/* Posts a send of slen bytes of sbuf to speer and a receive of rlen bytes
 * into rbuf from rpeer (a peer < 0: none) on round r. The send first: the
 * partner waits for it, and the receive is posted before this rank's next
 * look at what arrived all the same (MPI matches arrivals only in its
 * progress, which neither post runs), so it never finds the partner's
 * message unexpected for coming second. A chain of small allreduces is a
 * ping-pong: the receive's posting (a sixth of the step's MPI
 * instructions) no longer delays the partner. */
static int post_to(pf_mpi_coll *c, int round, int rpeer, void *rbuf, size_t rlen, int speer,
                   const void *sbuf, size_t slen) {
  pf_mpi_xfer x[2];
  int n = 0;
  if (speer >= 0)
    x[n++] = (pf_mpi_xfer){.peer = speer, .send = 1, .buf = (void *)sbuf, .len = slen};
  if (rpeer >= 0) x[n++] = (pf_mpi_xfer){.peer = rpeer, .send = 0, .buf = rbuf, .len = rlen};
  return pf_mpi_coll_post(c, round, x, n);
}

/* Recursive doubling: the partner's vector into tmp (or a pair's buffer:
 * c->got says where) and/or ours to it. */
static int post(pf_mpi_coll *c, int peer, int round, int recv, int send) {
  if (recv && send && c->bytes > 0 && c->bytes <= PF_MPI_PAIR_MAX_BYTES) {
    int rc = pf_mpi_coll_pair(c, round, peer, c->acc, c->bytes);
    c->got = c->pair != NULL ? c->pair->buf : c->tmp;
    return rc;
  }
  c->got = c->tmp;
  return post_to(c, round, recv ? peer : -1, c->tmp, c->bytes, send ? peer : -1, c->acc,
                 c->bytes);
}

/* acc = lower (+) higher, the partner's vector being at c->got. */
static void combine(pf_mpi_coll *c, int partner) {
  if (c->me < partner) {
    pf_reduce_into(c->acc, c->got, c->count, c->call.dtype, (int)c->call.reduce_op);
  } else {
    pf_reduce_into(c->got, c->acc, c->count, c->call.dtype, (int)c->call.reduce_op);
    memcpy(c->acc, c->got, c->bytes);
  }
}

/* Block i of the ring: its first element and its length. */
static size_t block_at(const pf_mpi_coll *c, int i) {
  return c->count * (size_t)i / (size_t)c->n;
}
static size_t block_len(const pf_mpi_coll *c, int i) { return block_at(c, i + 1) - block_at(c, i); }

/* Block i of n, i taken modulo n (negative too). */
static int block_mod(int i, int n) { return (i % n + n) % n; }

/* The ring's next step, once the last one is done: step k < n - 1 of the
 * reduce-scatter sends block me - k and receives block me - k - 1 into
 * tmp, added into ours once it is in; step n - 1 + j of the allgather
 * sends block me + 1 - j and receives block me - j where it belongs.
 * Returns 1 when the ring was done (c is gone), else what posting gave. */
static int ring_post(pf_mpi_coll *c) {
  int n = c->n, me = c->me, k = c->step, send, recv;
  size_t es = pf_dtype_size(c->call.dtype);
  if (k >= 1 && k <= n - 1) {
    int got = block_mod(me - k, n);
    size_t at = block_at(c, got) * es;
    pf_reduce_pair(c->acc + at, (c->in != NULL ? c->in : c->acc) + at, c->tmp, block_len(c, got),
                   c->call.dtype, (int)c->call.reduce_op);
  }
  if (k == 2 * (n - 1)) {
    pf_mpi_coll_finish(c, 0);
    return 1;
  }
  if (k < n - 1) {
    send = block_mod(me - k, n);
    recv = block_mod(me - k - 1, n);
  } else {
    send = block_mod(me + 1 - (k - n + 1), n);
    recv = block_mod(me - (k - n + 1), n);
  }
  c->step = ++k;
  /* The first send is our own block, straight from the input. */
  return post_to(c, 1, (me + n - 1) % n,
                 k <= n - 1 ? c->tmp : c->acc + block_at(c, recv) * es, block_len(c, recv) * es,
                 (me + 1) % n,
                 (k == 1 && c->in != NULL ? c->in : c->acc) + block_at(c, send) * es,
                 block_len(c, send) * es);
}

static void ring_next(pf_mpi_coll *c) {
  int rc = ring_post(c);
  if (rc != 1) pf_mpi_coll_posted(c, rc);
}

/* n >= 2: the first step never ends the ring. */
static int ring_first(pf_mpi_coll *c) {
  int rc = ring_post(c);
  if (rc != 0 && c->pending == 0) return rc;
  pf_mpi_coll_posted(c, rc);
  return 0;
}

/* What comes next in recursive doubling, once nothing of it is in flight. */
static void doubling_next(pf_mpi_coll *c) {
  int rc;
  if (c->me >= c->p2) { /* handed over in round 0; the result is in tmp */
    memcpy(c->acc, c->tmp, c->bytes);
    pf_mpi_coll_finish(c, 0);
    return;
  }
  if (c->mask == 0) { /* round 0 is done (or had nothing to do) */
    if (c->me < c->rem) combine(c, c->me + c->p2);
    c->mask = 1;
  } else if (c->mask < c->p2) { /* a doubling round is done */
    combine(c, c->me ^ c->mask);
    c->mask <<= 1;
  } else { /* the result went back up: done */
    pf_mpi_coll_finish(c, 0);
    return;
  }
  if (c->mask < c->p2) {
    rc = post(c, c->me ^ c->mask, 1 + __builtin_ctz((unsigned)c->mask), 1, 1);
  } else if (c->me < c->rem) {
    rc = post(c, c->me + c->p2, LAST_ROUND, 0, 1);
  } else {
    pf_mpi_coll_finish(c, 0);
    return;
  }
  pf_mpi_coll_posted(c, rc);
}

/* Round 0: hand the vector down (ranks above p2), or take one (the ranks
 * below n - p2), or nothing. */
static int doubling_first(pf_mpi_coll *c) {
  int rc = 0;
  if (c->me >= c->p2) {
    /* The result comes back into tmp: not into acc, which the send reads. */
    if ((rc = post(c, c->me - c->p2, 0, 0, 1)) == 0) rc = post(c, c->me - c->p2, LAST_ROUND, 1, 0);
  } else if (c->me < c->rem) {
    rc = post(c, c->me + c->p2, 0, 1, 0);
  } else {
    /* Nothing in round 0 (every rank when n is a power of two): on to
     * the doubling at once, as pf_mpi_coll_posted would with nothing in
     * flight and nothing failed. */
    doubling_next(c);
    return 0;
  }
  if (rc != 0 && c->pending == 0) return rc;
  pf_mpi_coll_posted(c, rc);
  return 0;
}

int pf_mpi_allreduce_setup(pf_mpi_coll *c, size_t *tmp_bytes) {
  const pf_collective_call *call = &c->call;
  pf_dtype dt = call->dtype;
  if (dt != PF_F32 && dt != PF_F64 && dt != PF_I32 && dt != PF_I64) return PF_EINVAL;
  c->count = call->count;
  c->bytes = call->count * pf_dtype_size(dt);
  if (c->bytes > INT32_MAX) return PF_ERANGE;
  c->ring = c->bytes > PF_MPI_AR_SMALL_BYTES;
  c->p2 = 1;
  while (c->p2 * 2 <= c->n) c->p2 *= 2;
  c->rem = c->n - c->p2;
  c->first = c->ring ? ring_first : doubling_first;
  c->next = c->ring ? ring_next : doubling_next;
  /* tmp: the partner's vector, or the ring's largest block. */
  *tmp_bytes = c->ring ? (c->count / (size_t)c->n + 1) * pf_dtype_size(dt) : c->bytes;
  return 0;
}

void pf_mpi_allreduce_bind(pf_mpi_coll *c) {
  const pf_collective_call *call = &c->call;
  c->acc = call->recv;
  /* The ring reads the input where it is: every block of the result is
   * written once (summed from the input and a received block, or
   * received), so the input need not be copied first (a copy of the whole
   * vector: 800 KB of gradients per training step). */
  if (call->send != NULL && call->send != call->recv) {
    if (c->ring)
      c->in = call->send;
    else
      memcpy(c->acc, call->send, c->bytes);
  }
}
