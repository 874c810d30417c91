/* Allgather, all-to-all, reduce-scatter and broadcast over point-to-point
 * messages (the group's tags and order: mpi_lane.c).
 *
 * Allgather, all-to-all and reduce-scatter in one round: every member
 * posts its receives from, and its sends to, every other member at once.
 * Each member moves (n - 1) / n of its data, as a ring would, in one
 * latency instead of n - 1; the price is n - 1 messages in flight per
 * member, which the groups pathflow plans (a mesh axis, tens of ranks)
 * afford. Reduce-scatter receives the other members' copies of its block
 * side by side and reduces them in member order, so the result does not
 * depend on which message came first.
 *
 * Broadcast down a binomial tree rooted at the root: a member receives
 * once, from its parent, then sends to each of its children; log2(n)
 * latencies, and the root sends log2(n) messages instead of n - 1. */
#include <string.h>

#include "base/reduce.h"
#include "base/util.h"
#include "pathflow/error.h"
#include "transport/mpi_coll.h"

/* The round's messages are listed at the start of tmp; staging follows. */
static pf_mpi_xfer *xfers(pf_mpi_coll *c) { return (pf_mpi_xfer *)(void *)c->tmp; }

static size_t staging_at(int n) {
  size_t at = 2 * (size_t)n * sizeof(pf_mpi_xfer);
  return (at + 63) & ~(size_t)63;
}
static char *staging(pf_mpi_coll *c) { return c->tmp + staging_at(c->n); }

/* The one-round kinds: chunk i of recv from member i, and to member j
 * chunk j of send (all-to-all, reduce-scatter) or all of send (allgather). */
static int exchange_first(pf_mpi_coll *c) {
  const pf_collective_call *call = &c->call;
  pf_mpi_xfer *x = xfers(c);
  size_t chunk = c->bytes;
  const char *send = call->send;
  char *into = call->kind == PF_REDUCE_SCATTER ? staging(c) : call->recv;
  int k = 0, rc;
  for (int i = 0; i < c->n; i++) {
    if (i == c->me) continue;
    x[k++] = (pf_mpi_xfer){.peer = i, .send = 0, .buf = into + (size_t)i * chunk, .len = chunk};
    x[k++] = (pf_mpi_xfer){.peer = i,
                           .send = 1,
                           .buf = (void *)(call->kind == PF_ALLGATHER ? send
                                                                      : send + (size_t)i * chunk),
                           .len = chunk};
  }
  /* Our own chunk stays here (reduce-scatter reads it from send). */
  if (call->kind != PF_REDUCE_SCATTER) {
    const char *own = call->kind == PF_ALLGATHER ? send : send + (size_t)c->me * chunk;
    if (own != (char *)call->recv + (size_t)c->me * chunk)
      memmove((char *)call->recv + (size_t)c->me * chunk, own, chunk);
  }
  rc = pf_mpi_coll_post(c, 1, x, k);
  if (rc != 0 && c->pending == 0) return rc;
  pf_mpi_coll_posted(c, rc);
  return 0;
}

static void exchange_next(pf_mpi_coll *c) {
  const pf_collective_call *call = &c->call;
  if (call->kind == PF_REDUCE_SCATTER) {
    /* Member order: 0's copy, then each next one's reduced into it. */
    const char *send = call->send;
    for (int i = 0; i < c->n; i++) {
      const char *blk = i == c->me ? send + (size_t)c->me * c->bytes : staging(c) + (size_t)i * c->bytes;
      if (i == 0)
        memcpy(call->recv, blk, c->bytes);
      else
        pf_reduce_into(call->recv, blk, c->count, call->dtype, (int)call->reduce_op);
    }
  }
  pf_mpi_coll_finish(c, 0);
}

/* Broadcast: members numbered from the root (v = me - root mod n); v's
 * parent is v without its lowest set bit, its children v + 2^j for every
 * 2^j below that bit (below n for the root). step 0: receiving, 1:
 * sending. */
static int lowest_bit(int v, int n) {
  int b = 1;
  if (v == 0) {
    while (b < n) b <<= 1;
    return b;
  }
  return v & -v;
}

static int bcast_send(pf_mpi_coll *c) {
  int v = (c->me - c->call.root + c->n) % c->n, k = 0;
  pf_mpi_xfer *x = xfers(c);
  c->step = 1;
  for (int b = lowest_bit(v, c->n) >> 1; b >= 1; b >>= 1)
    if (v + b < c->n)
      x[k++] = (pf_mpi_xfer){.peer = (v + b + c->call.root) % c->n,
                             .send = 1,
                             .buf = c->call.recv,
                             .len = c->bytes};
  if (k == 0) return 1; /* a leaf */
  return pf_mpi_coll_post(c, 1, x, k);
}

static void bcast_next(pf_mpi_coll *c) {
  int rc = 0;
  if (c->step == 1 || (rc = bcast_send(c)) == 1) {
    pf_mpi_coll_finish(c, 0);
    return;
  }
  pf_mpi_coll_posted(c, rc);
}

static int bcast_first(pf_mpi_coll *c) {
  int v = (c->me - c->call.root + c->n) % c->n, rc;
  if (v != 0) {
    pf_mpi_xfer x = {.peer = (v - (v & -v) + c->call.root) % c->n,
                     .send = 0,
                     .buf = c->call.recv,
                     .len = c->bytes};
    rc = pf_mpi_coll_post(c, 1, &x, 1);
  } else if ((rc = bcast_send(c)) == 1) {
    rc = 0; /* nothing to send: done once posted() runs next */
    c->step = 1;
  }
  if (rc != 0 && c->pending == 0) return rc;
  pf_mpi_coll_posted(c, rc);
  return 0;
}

int pf_mpi_exchange_setup(pf_mpi_coll *c, size_t *tmp_bytes) {
  const pf_collective_call *call = &c->call;
  size_t es = pf_dtype_size(call->dtype);
  *tmp_bytes = staging_at(c->n);
  c->next = exchange_next;
  c->first = exchange_first;
  switch (call->kind) {
    case PF_ALLGATHER:
    case PF_ALL_TO_ALL:
      c->bytes = call->bytes;
      break;
    case PF_REDUCE_SCATTER:
      if (call->dtype != PF_F32 && call->dtype != PF_F64 && call->dtype != PF_I32 &&
          call->dtype != PF_I64)
        return PF_EINVAL;
      c->count = call->count;
      c->bytes = call->count * es;
      *tmp_bytes += (size_t)c->n * c->bytes;
      break;
    case PF_BROADCAST:
      if (call->root < 0 || call->root >= c->n) return PF_EINVAL;
      c->bytes = call->bytes;
      c->first = bcast_first;
      c->next = bcast_next;
      break;
    default:
      return PF_EINVAL;
  }
  if (c->bytes > INT32_MAX) return PF_ERANGE;
  return 0;
}
