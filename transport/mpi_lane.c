/* A group's collectives over point-to-point messages: their order, their
 * tags, and the rounds of messages the algorithms post.
 *
 * Why no communicator per group: MPI_Comm_create_group is a blocking
 * collective over the group. Made when a plan was loaded, it held the loop
 * thread (and with it the MPI lock, so heartbeats too) until every member
 * had come to it: one member busy for a while left the others silent, and
 * their peers could declare them lost. Instead every group shares one
 * communicator and has tags of its own: the controller numbers the job's
 * groups (pf_plan_comm.group), group g owns the tags [g * span, (g + 1) *
 * span), span = width * PF_MPI_ROUNDS. Loading a plan now sends nothing.
 *
 * Within a group: every member issues the group's collectives in the same
 * order (the gang order), so the k-th has the same sequence number k on
 * every member, and its messages carry tag_base + (k mod width) *
 * PF_MPI_ROUNDS + round: two collectives in flight at once never take each
 * other's messages, whatever order their rounds complete in. The k-th
 * starts only once the (k - width)-th has finished here (may_start), so no
 * two in flight share a tag. On another member the older one may still be
 * in flight: its messages from here were all sent before, and its
 * receives there were posted before, the new one's, so MPI matches them
 * first. No other messages travel on this communicator. */
#include <stdlib.h>
#include <string.h>

#include "base/probe.h"
#include "base/util.h"
#include "pathflow/error.h"
#include "transport/mpi_coll.h"

/* Tags per group: width collectives of PF_MPI_ROUNDS tags. Between 4 and
 * 64 in flight, so that at least a thousand groups fit where the tag space
 * allows it (Open MPI's ob1: 2^31 tags, a million groups of 64; UCX: 2^23,
 * 4,096; the least MPI allows, 2^15: 256 groups of 4). */
int pf_mpi_lane_width(int tag_ub) {
  int64_t w = ((int64_t)tag_ub + 1) / PF_MPI_ROUNDS / 1024;
  int p = 4;
  /* A power of two: a collective's tag slot is its sequence number masked,
   * not divided (a division on the way to every send). */
  while (p < 64 && 2 * (int64_t)p <= w) p *= 2;
  return p;
}

int pf_mpi_max_groups(int tag_ub) {
  return (int)(((int64_t)tag_ub + 1) / ((int64_t)pf_mpi_lane_width(tag_ub) * PF_MPI_ROUNDS));
}

void pf_mpi_lane_init(pf_mpi_lane *lane, MPI_Comm comm, const int32_t *ranks, int n, int me,
                      uint32_t group, int tag_ub) {
  memset(lane, 0, sizeof *lane);
  lane->ranks = ranks;
  lane->size = n;
  lane->rank = -1;
  for (int i = 0; i < n; i++)
    if (ranks[i] == me) lane->rank = i;
  lane->comm = lane->rank >= 0 ? comm : MPI_COMM_NULL;
  lane->width = pf_mpi_lane_width(tag_ub);
  lane->tag_base = (int)((int64_t)group * lane->width * PF_MPI_ROUNDS);
}

void pf_mpi_lane_fini(pf_mpi_lane *lane) {
  free(lane->shape);
  lane->shape = NULL;
  if (lane->pairs == NULL) return;
  for (size_t i = 0; i < (size_t)lane->width * (size_t)lane->pair_rounds; i++) {
    pf_mpi_pair *p = &lane->pairs[i];
    int busy = 0;
    /* A pair in use by a collective in flight: its request is among the
     * tracked ones, which pf_mpi_finalize freed already. */
    for (const pf_mpi_coll *c = lane->first; c != NULL && !busy; c = c->newer) busy = c->pair == p;
    if (p->bytes > 0 && !busy) MPI_Request_free(&p->req);
    free(p->buf);
  }
  free(lane->pairs);
  lane->pairs = NULL;
}

static void req_done(void *arg, int status) {
  pf_mpi_coll *c = arg;
  PF_PROBE("coll.req_done");
  if (status != 0 && c->status == 0) c->status = status;
  if (--c->pending == 0) {
    if (c->status != 0)
      pf_mpi_coll_finish(c, c->status);
    else
      c->next(c);
  }
}

/* Request *req of c, started, is tracked (its completion calls req_done),
 * or, when the tracker is full, waited for here. Returns 0 or PF_EMPI (the
 * wait failed). */
static int track(pf_mpi_coll *c, MPI_Request *req) {
  c->pending++;
  if (pf_mpi_track_quick(c->m, *req, req_done, c) == 0) return 0;
  c->pending--;
  /* A persistent request is left inactive by the wait, still its owner's. */
  return MPI_Wait(req, MPI_STATUS_IGNORE) == MPI_SUCCESS ? 0 : PF_EMPI;
}

int pf_mpi_coll_post(pf_mpi_coll *c, int round, const pf_mpi_xfer *x, int n) {
  MPI_Comm comm = c->lane->comm;
  int posted = 0, rc = 0, tag = c->tag0 + round;
  PF_PROBE("coll.post");
  for (; posted < n; posted++) {
    int peer = c->lane->ranks[x[posted].peer], err;
    if (x[posted].len > INT32_MAX) {
      rc = PF_ERANGE;
      break;
    }
    err = x[posted].send
              ? MPI_Isend(x[posted].buf, (int)x[posted].len, MPI_BYTE, peer, tag, comm,
                          &c->reqs[posted])
              : MPI_Irecv(x[posted].buf, (int)x[posted].len, MPI_BYTE, peer, tag, comm,
                          &c->reqs[posted]);
    if (err != MPI_SUCCESS) {
      rc = PF_EMPI;
      break;
    }
  }
  for (int k = 0; k < posted; k++) {
    int err = track(c, &c->reqs[k]);
    if (rc == 0) rc = err;
  }
  PF_PROBE("coll.post.out");
  return rc;
}

/* The pair of c's tag slot and round r in *out, made for `bytes` from
 * member `peer` if it is not (pf_mpi_pair). Returns 0, or PF_ENOMEM,
 * PF_EMPI (MPI refused the request) or PF_EINVAL (r is no doubling round
 * of the lane: post never asks), *out NULL then. */
static int pair_for(pf_mpi_coll *c, int round, int peer, size_t bytes, pf_mpi_pair **out) {
  pf_mpi_lane *lane = c->lane;
  size_t slot = (size_t)(c->tag0 - lane->tag_base) / PF_MPI_ROUNDS;
  pf_mpi_pair *p;
  char *buf;
  *out = NULL;
  if (lane->pairs == NULL) {
    /* Doubling rounds are 1 .. log2 of the largest power of two <= size. */
    int rounds = 1;
    while (rounds < PF_MPI_ROUNDS && (1 << rounds) <= lane->size) rounds++;
    if ((lane->pairs = pf_calloc((size_t)lane->width * (size_t)rounds, sizeof *lane->pairs)) ==
        NULL)
      return PF_ENOMEM;
    lane->pair_rounds = rounds;
  }
  if (round <= 0 || round >= lane->pair_rounds) return PF_EINVAL;
  p = &lane->pairs[slot * (size_t)lane->pair_rounds + (size_t)round];
  if (p->bytes != bytes) {
    /* Unmade, or made for another size: inactive (the slot's last
     * collective has finished here). */
    if (p->bytes > 0) MPI_Request_free(&p->req);
    p->bytes = 0;
    if ((buf = realloc(p->buf, bytes)) == NULL) return PF_ENOMEM;
    p->buf = buf;
    if (MPI_Recv_init(buf, (int)bytes, MPI_BYTE, lane->ranks[peer], c->tag0 + round, lane->comm,
                      &p->req) != MPI_SUCCESS)
      return PF_EMPI;
    p->bytes = bytes;
  }
  *out = p;
  return 0;
}

int pf_mpi_coll_pair(pf_mpi_coll *c, int round, int peer, const void *buf, size_t bytes) {
  MPI_Request send;
  int rc = pair_for(c, round, peer, bytes, &c->pair), err, sent = 0;
  PF_PROBE("coll.pair");
  if (rc != 0) return rc;
  /* The send first (post_to in mpi_allreduce.c says why). */
  if (MPI_Isend(buf, (int)bytes, MPI_BYTE, c->lane->ranks[peer], c->tag0 + round, c->lane->comm,
                &send) != MPI_SUCCESS)
    return PF_EMPI;
  PF_PROBE("coll.pair.sent");
  rc = MPI_Start(&c->pair->req) == MPI_SUCCESS ? track(c, &c->pair->req) : PF_EMPI;
  /* A small send mostly leaves at once (Open MPI's inline send hands back
   * a request already complete, which a test frees without running
   * progress): only one still in flight is tracked, and a chain of small
   * allreduces tracks, tests and calls back one request a round, not two. */
  if (MPI_Test(&send, &sent, MPI_STATUS_IGNORE) != MPI_SUCCESS)
    err = PF_EMPI;
  else
    err = sent ? 0 : track(c, &send);
  return rc != 0 ? rc : err;
}

void pf_mpi_coll_posted(pf_mpi_coll *c, int rc) {
  if (rc != 0 && c->status == 0) c->status = rc;
  if (c->pending > 0) return; /* on, from req_done */
  if (c->status != 0)
    pf_mpi_coll_finish(c, c->status);
  else
    c->next(c);
}

static void start_waiting(pf_mpi_lane *lane);

/* c leaves the lane's in-flight list. */
static void unlink_coll(pf_mpi_coll *c) {
  pf_mpi_lane *lane = c->lane;
  if (c->older)
    c->older->newer = c->newer;
  else
    lane->first = c->newer;
  if (c->newer)
    c->newer->older = c->older;
  else
    lane->last = c->older;
  lane->in_flight--;
}

void pf_mpi_coll_finish(pf_mpi_coll *c, int status) {
  PF_PROBE("coll.finish");
  pf_mpi_lane *lane = c->lane;
  /* The caller first: what it starts (a chain's next collective, on this
   * lane) goes out before this record leaves the lane and goes back. The
   * lane's order is kept: a collective it starts takes the next sequence
   * number, and waits while this one still holds the oldest tag slot that
   * its own would reuse (may_start). */
  c->cb(c->arg, status);
  unlink_coll(c);
  pf_mpi_scratch_give(c->m, c, c->block);
  start_waiting(lane);
}

/* Takes the next sequence number and its tags, joins the in-flight list,
 * posts the first round. Returns an error only when nothing of it is in
 * flight (then it is not finished, and still linked). */
static int start(pf_mpi_coll *c) {
  pf_mpi_lane *lane = c->lane;
  c->seq = lane->seq++;
  c->tag0 = lane->tag_base + (int)(c->seq & (uint64_t)(lane->width - 1)) * PF_MPI_ROUNDS;
  c->older = lane->last;
  c->newer = NULL;
  if (lane->last)
    lane->last->newer = c;
  else
    lane->first = c;
  lane->last = c;
  lane->in_flight++;
  return c->first(c);
}

/* 1 if the next collective may start: its tag is not one a collective
 * still in flight here uses, i.e. the oldest in flight is less than width
 * older. (Counting those in flight is not enough: when a younger one
 * finishes first, the next would take the tag of the oldest, and the two
 * would take each other's messages: a ring's blocks then arrive in the
 * wrong receive, truncated.) */
static int may_start(const pf_mpi_lane *lane) {
  return lane->first == NULL || lane->seq - lane->first->seq < (uint64_t)lane->width;
}

static void start_waiting(pf_mpi_lane *lane) {
  while (lane->waiting != NULL && may_start(lane)) {
    pf_mpi_coll *c = lane->waiting;
    int rc;
    if ((lane->waiting = c->next_waiting) == NULL) lane->waiting_tail = NULL;
    if ((rc = start(c)) != 0) pf_mpi_coll_finish(c, rc);
  }
}

/* A group of one: the result is the input (reduce-scatter's one block,
 * the all-to-all's one chunk). */
static void alone(const pf_collective_call *c) {
  size_t len = c->kind == PF_ALLREDUCE || c->kind == PF_REDUCE_SCATTER
                   ? c->count * pf_dtype_size(c->dtype)
                   : c->bytes;
  if (c->kind != PF_BROADCAST && c->send != NULL && c->send != c->recv && len > 0)
    memmove(c->recv, c->send, len);
}

/* 1 if call b has the shape of call a (the set-up depends on nothing
 * else): a collective of it may start as a copy of a's set-up. */
static int same_shape(const pf_collective_call *a, const pf_collective_call *b) {
  return a->kind == b->kind && a->dtype == b->dtype && a->reduce_op == b->reduce_op &&
         a->count == b->count && a->bytes == b->bytes && a->root == b->root;
}

/* A record with room for tmp bytes and the lane's requests after them
 * (at *reqs_at in tmp), of *block bytes; NULL when out of memory. */
static pf_mpi_coll *take_record(pf_mpi *m, const pf_mpi_lane *lane, size_t tmp, size_t *reqs_at,
                                size_t *block) {
  *reqs_at = (tmp + _Alignof(MPI_Request) - 1) / _Alignof(MPI_Request) * _Alignof(MPI_Request);
  return pf_mpi_scratch_take(
      m, sizeof(pf_mpi_coll) + *reqs_at + 2 * (size_t)lane->size * sizeof(MPI_Request), block);
}

int pf_mpi_collective_start(pf_mpi *m, pf_mpi_lane *lane, const pf_collective_call *call,
                            pf_mpi_cb cb, void *arg) {
  pf_mpi_coll proto, *c;
  const pf_mpi_coll *from = &proto;
  size_t tmp = 0, reqs_at, block;
  int rc;
  PF_PROBE("coll.start");
  if (lane->comm == MPI_COMM_NULL || lane->rank < 0) return PF_EINVAL;
  if (lane->size == 1) {
    alone(call);
    cb(arg, 0);
    return 0;
  }
  if (lane->shape != NULL && same_shape(&lane->shape->call, call)) {
    /* The same shape as the last: its algorithm's set-up again. */
    from = lane->shape;
    tmp = lane->shape_tmp;
  } else {
    memset(&proto, 0, sizeof proto);
    proto.m = m;
    proto.lane = lane;
    proto.call = *call;
    proto.me = lane->rank;
    proto.n = lane->size;
    rc = call->kind == PF_ALLREDUCE ? pf_mpi_allreduce_setup(&proto, &tmp)
                                    : pf_mpi_exchange_setup(&proto, &tmp);
    if (rc != 0) return rc;
    if (lane->shape != NULL || (lane->shape = malloc(sizeof *lane->shape)) != NULL) {
      memcpy(lane->shape, &proto, sizeof proto);
      lane->shape_tmp = tmp;
    }
  }
  if ((c = take_record(m, lane, tmp, &reqs_at, &block)) == NULL) return PF_ENOMEM;
  memcpy(c, from, sizeof *c);
  c->block = block;
  c->call = *call;
  c->cb = cb;
  c->arg = arg;
  c->reqs = (MPI_Request *)(void *)(c->tmp + reqs_at);
  c->acc = call->recv;
  if (call->kind == PF_ALLREDUCE) pf_mpi_allreduce_bind(c);
  if (!may_start(lane) || lane->waiting != NULL) {
    c->next_waiting = NULL;
    if (lane->waiting_tail)
      lane->waiting_tail->next_waiting = c;
    else
      lane->waiting = c;
    lane->waiting_tail = c;
    return 0;
  }
  if ((rc = start(c)) != 0) {
    /* Nothing of it is in flight: the caller hears of it now, not later. */
    unlink_coll(c);
    lane->seq--;
    pf_mpi_scratch_give(m, c, c->block);
    return rc;
  }
  return 0;
}
