#include "runtime/service.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "base/mix64.h"
#include "base/probe.h"
#include "base/spec_set.h"
#include "base/util.h"
#include "graph/collective.h"
#include "pathflow/error.h"
#include "pathflow/graph.h"
#include "base/box.h"
#include "runtime/reduce.h"
#include "runtime/store.h"
#include "runtime/trace.h"

/* What the loop's path reads of an op (index_plan, prepare_transfer):
 * not the plan's two-line op record, nor the buffer's spec. One record of
 * 20 bytes an op: a plan of 1.5 million ops had three per-op arrays here
 * (the box, 16 bytes; the communicator, 8; the collective's place, 4)
 * beside this one, 36 MB more of fresh memory to load it, although its
 * million transfers shared two boxes and it had no collective. */
typedef struct xfer_op {
  uint32_t buffer; /* sent from, or received into */
  int32_t peer;
  int32_t tag;     /* within the tag window */
  /* SEND, RECV: its box, in e->boxes; a collective the loop runs: its
   * place in e->collectives; else UINT32_MAX. */
  uint32_t at;
  uint8_t kind;    /* pf_op_kind, for every op */
  uint8_t whole;   /* the box is the whole buffer */
} xfer_op;

/* A collective the loop runs that is one shard's allreduce into one
 * output (a chain of small reductions, a training step's gradients): what
 * issuing and finishing it read, instead of the plan's op record, its
 * buffers' records and their specs, and the general path's cases (90 of
 * the 2,900 instructions pathflow ran per computation of bench/dispatch
 * Chained, callgrind). count 0: another kind. */
typedef struct one_allreduce {
  uint32_t in, out; /* buffers */
  uint32_t count;   /* elements (a shard of at most 2 GiB) */
  uint8_t dtype, reduce_op;
  int32_t num_shards;
} one_allreduce;

/* A loaded executable and what its transfers need from the transport. */
typedef struct exe {
  uint64_t id;
  int refs; /* the table's + steps in flight */
  pf_loaded *loaded;
  /* The distinct addressings of its transfers (xfer_op.at), each
   * prepared once: a step's transfers of one shape share one. */
  pf_xfer_box *boxes;
  size_t n_boxes, cap_boxes;
  xfer_op *xfers;            /* per op; NULL without a transport */
  pf_transport_comm **comms; /* per place in collectives: its communicator */
  struct comm_queue **queues; /* per place in collectives: its communicator's queue */
  pf_transport *tp;          /* that made them */
  int connected;     /* its communicators are made (CONNECT, or none needed) */
  /* RUNs received: they come in the order of the user's pf_execute calls,
   * so the n-th is the user's step n of this executable (in traces). */
  uint64_t runs_seen;
  /* MPI collective ops in plan order: what a step's start walks, not the
   * plan's thousands of records (an op's place here: xfer_op.at). */
  uint32_t *collectives, n_collectives;
  one_allreduce *allreduces; /* per place in collectives */
  /* The place in collectives of the first on each communicator, in plan
   * order (connect_comms): where a step's collectives join the queues. */
  uint32_t *comm_firsts, n_comm_firsts;
  /* Connect: device communicators still joining (their threads), whether
   * one failed and why; the reply waits for the last. */
  int joins_pending;
  pf_diag join_err;
  struct exe *next;
} exe;

/* A step this service started. */
typedef struct run {
  pf_service *svc;
  exe *e;
  pf_step *step;
  uint64_t seq;
  uint64_t user_step; /* the n-th run of its executable, from 1 */
  uint32_t slot; /* tag window */
  pf_msg *msg; /* the RUN message: output and drop ids */
  int ops_in_flight; /* loop ops posted and not done */
  struct loop_op *posted; /* those ops, for the watchdog */
  /* Its start ops (pf_service_start_ops) from later[later_next] to
   * later[later_n - 1] hold `deferred` receives not posted yet, the first
   * at later_next; queued in s->defer_head while there are any. */
  const uint32_t *later;
  uint32_t later_next, later_n;
  uint32_t deferred;
  struct run *defer_next;
  struct run *prev, *next;
  /* Per collective (e->collectives' order): its inputs are ready. */
  uint8_t ready[];
} run;

/* A long plan has thousands of receives, ~0.2 us each to post: a step
 * posts its first PF_EAGER_RECVS at once and leaves the rest, in plan
 * order, to the loop's polls that find nothing to do (8 per such poll), so
 * that its first ops start at once instead of after every receive is
 * posted. Those left cost nothing until posted: a place in the step's list
 * of start ops, not a 72-byte record each made at the step's start (a plan
 * of a million receives made a million). No deadlock: when nothing
 * completes, every poll is one that posts, so a receive that the rest of
 * the work waits for gets posted. A message that comes before its receive
 * is posted waits in MPI's unexpected queue. */
#define PF_EAGER_RECVS 64u

/* And at most this many bytes of receives posted ahead (when none is
 * posted, a larger one still goes, alone): a buffer that one receive fills
 * whole gets its memory when the receive is posted (runtime/executor.c),
 * and a chain of 512 hops of 1 MiB, posting all of them at its start, held
 * 256 MiB on each rank from its start to its end, beyond the storage cache
 * (PATHFLOW_CACHE_BYTES): fresh memory for every hop. With a window the
 * receive buffers come back through the storage cache while they are
 * still in the CPU's caches: 16 tensors of 4 MiB to another rank moved at
 * 20-26 GB/s against 11-14 with all posted at once (bench/transfer), and
 * hops of 64 KiB-4 MiB cost no more (64 MiB windows ran 256 KiB hops 15%
 * slower, 16 MiB ones not). No deadlock:
 * receives are posted strictly in order (steps in the order they start,
 * which is the order every rank runs them in; within a step, plan order,
 * which follows the graph's), so no posted receive waits, through any
 * rank, for one not yet posted: the posted ones complete and free their
 * bytes for the next. */
#define PF_RECV_AHEAD_BYTES ((size_t)16 << 20)
/* And at most this many receives (the same argument: posted in order, the
 * earliest always completes). 16 MiB is a million receives of 16 bytes: a
 * long plan of small hops posted every receive of the step at its start,
 * each with its buffer, its MPI request and its place in the tested window,
 * and the loop then touched all of them while the hops ran (bench/granularity
 * -t 4000, 1 us kernels: 2.7-2.8 us a step against 2.1-2.5 with this bound). */
#define PF_RECV_AHEAD_COUNT 64u

/* A transfer or collective in progress (`next`: in the spare list). */
typedef struct loop_op {
  run *r;
  uint32_t op;
  const xfer_op *x; /* &r->e->xfers[op]: what finishing it reads, at hand */
  void *stage_in, *stage_out; /* collective staging buffers */
  int drained;                /* a collective of a failed step, on the reserve */
  uint64_t started;           /* pf_now_ns when posted (timeline) */
  struct loop_op *next;
  struct loop_op *posted_prev, *posted_next; /* in r->posted */
} loop_op;

static void posted_add(loop_op *lo) {
  lo->posted_prev = NULL;
  lo->posted_next = lo->r->posted;
  if (lo->posted_next) lo->posted_next->posted_prev = lo;
  lo->r->posted = lo;
}

static void posted_remove(loop_op *lo) {
  if (lo->posted_prev)
    lo->posted_prev->posted_next = lo->posted_next;
  else if (lo->r->posted == lo)
    lo->r->posted = lo->posted_next;
  if (lo->posted_next) lo->posted_next->posted_prev = lo->posted_prev;
}

/* A message waiting for buffers in the making (see park). */
typedef struct parked {
  pf_msg *m;
  uint64_t since; /* clock when it began to wait */
  struct parked *next;
} parked;

/* A step's collectives on one communicator, from `next` (a place in
 * e->collectives) on: those not issued yet. */
typedef struct queued_run {
  run *r;
  uint32_t next;
  struct queued_run *after;
} queued_run;

/* Collectives of one communicator, in the order every rank issues them:
 * the steps in the order they started, each with its collectives on the
 * communicator in plan order. A step is queued once, not each of its
 * collectives (a chain of 128 small collectives in each of 32 steps in
 * flight kept 4,096 records, each written when its step started and read
 * again, out of cache, when its turn came). */
typedef struct comm_queue {
  pf_transport_comm *comm;
  queued_run *head, *tail;
  struct comm_queue *next;
} comm_queue;

struct pf_service {
  pf_service_config cfg;
  pf_store *store;
  exe *exes;
  run *runs;
  int n_runs;
  comm_queue *queues;
  parked *parked, *parked_tail; /* messages waiting for buffers in the making */
  size_t n_parked;
  run *defer_head, *defer_tail; /* steps with receives to post when idle */
  size_t recv_bytes; /* the buffers of receives posted and not done */
  uint32_t recvs_posted; /* and how many */
  loop_op *spare;                   /* finished records, for reuse */
  size_t n_spare;
  uint64_t last_progress;
  int progressed; /* a loop op finished since last_progress was read */
  uint64_t stamp; /* the clock as read since the last tick, if stamp_valid */
  int stamp_valid;
  pf_clock_reading reading; /* the last read, for the next within the cycles */
  int tag_window;
  /* The reserve (see reserve_for): zeros to send from and a sink to
   * receive into, for a failed step's transfers and collectives whose
   * buffers have no memory. Earlier, smaller ones stay mapped until the
   * service ends (a step in flight may still use them). */
  void *zero, *sink;
  size_t reserve_bytes;
  struct old_reserve {
    void *zero, *sink;
    size_t bytes;
    struct old_reserve *next;
  } *old_reserves;
  /* Counters (loop thread only, plain): see pf_service_counters. */
  int size;                /* ranks in the job */
  pf_peer_counters *peers; /* [size]: data transfers per peer */
  uint64_t steps, steps_failed, transfer_wait_ns;
  uint64_t collectives, collective_bytes, collective_wait_ns;
};

/* A step has a record per transfer: reuse them (loop thread only) rather
 * than malloc and free thousands per step. */
#define SPARE_MAX 65536u

static loop_op *loop_op_new(pf_service *s) {
  loop_op *lo = s->spare;
  if (lo == NULL) return calloc(1, sizeof *lo);
  s->spare = lo->next;
  s->n_spare--;
  /* What the caller does not set (r, op; started and the lists when posted). */
  lo->stage_in = lo->stage_out = NULL;
  lo->drained = 0;
  lo->started = 0;
  return lo;
}

static void loop_op_free(pf_service *s, loop_op *lo) {
  if (s->n_spare >= SPARE_MAX) {
    free(lo);
    return;
  }
  lo->next = s->spare;
  s->spare = lo;
  s->n_spare++;
}

int pf_service_create(const pf_service_config *cfg, pf_service **out) {
  pf_service *s = calloc(1, sizeof *s);
  if (s == NULL) return PF_ENOMEM;
  s->cfg = *cfg;
  if (pf_store_create(&s->store) != 0) {
    free(s);
    return PF_ENOMEM;
  }
  s->tag_window = cfg->transport ? pf_tag_window(cfg->transport->tag_ub) : 1 << 24;
  s->size = cfg->transport ? cfg->transport->size : 1;
  if ((s->peers = pf_calloc((size_t)s->size, sizeof *s->peers)) == NULL) {
    pf_store_destroy(s->store);
    free(s);
    return PF_ENOMEM;
  }
  s->last_progress = pf_clock_now(s->cfg.clock);
  *out = s;
  return 0;
}

static void exe_unref(exe *e) {
  if (--e->refs > 0) return;
  for (size_t k = 0; k < e->n_boxes; k++)
    if (e->boxes[k].impl != NULL) e->tp->ops->box_release(e->tp, &e->boxes[k]);
  free(e->boxes);
  free(e->xfers);
  free(e->comms);
  free(e->queues);
  free(e->collectives);
  free(e->allreduces);
  free(e->comm_firsts);
  pf_loaded_release(e->loaded);
  free(e);
}

static void free_chain(loop_op *lo) {
  while (lo != NULL) {
    loop_op *next = lo->next;
    free(lo);
    lo = next;
  }
}

void pf_service_destroy(pf_service *s) {
  if (s == NULL) return;
  while (s->exes) {
    exe *e = s->exes;
    s->exes = e->next;
    exe_unref(e);
  }
  while (s->queues) {
    comm_queue *q = s->queues;
    s->queues = q->next;
    while (q->head) {
      queued_run *qr = q->head;
      q->head = qr->after;
      free(qr);
    }
    free(q);
  }
  while (s->parked) {
    parked *w = s->parked;
    s->parked = w->next;
    pf_msg_free(w->m);
    free(w);
  }
  free_chain(s->spare);
  pf_store_destroy(s->store);
  free(s->peers);
  if (s->reserve_bytes > 0) {
    munmap(s->zero, s->reserve_bytes);
    munmap(s->sink, s->reserve_bytes);
  }
  while (s->old_reserves) {
    struct old_reserve *o = s->old_reserves;
    s->old_reserves = o->next;
    munmap(o->zero, o->bytes);
    munmap(o->sink, o->bytes);
    free(o);
  }
  free(s);
}

int pf_service_steps_in_flight(const pf_service *s) { return s->n_runs; }

/* The time stamp of loop ops (see pf_service_tick): for the counters'
 * waits, within two microseconds of the clock (pf_clock_now_near: a step
 * of bench/granularity's stencil started or finished a transfer on three
 * polls in four, each a clock read, 8% of the step); for a timeline, read
 * at the first stamp after the tick. */
static __attribute__((noinline)) uint64_t stamp_read(pf_service *s) {
  s->stamp = s->cfg.trace != NULL ? pf_clock_now(s->cfg.clock)
                                  : pf_clock_now_near(s->cfg.clock, &s->reading);
  s->stamp_valid = 1;
  return s->stamp;
}

/* The read out of line: most stamps of a poll are the first's again. */
static inline uint64_t stamp(pf_service *s) {
  return s->stamp_valid ? s->stamp : stamp_read(s);
}

void pf_service_tick(pf_service *s) {
  s->stamp_valid = 0;
  /* Without a timeline, and where the cycle counter makes a reading cheap,
   * read as the poll begins, not at its first stamp: that one is taken on
   * the way from a completion to what it starts (a chain of small
   * collectives read the clock between the partner's message and the next
   * send, 10-35 ns of a 300-500 ns round). Elsewhere (a clock read each
   * idle poll would cost more; a virtual clock) the first stamp reads it. */
  if (s->cfg.trace == NULL && s->cfg.clock->by_cycles) stamp_read(s);
}

uint64_t pf_service_last_progress(pf_service *s, uint64_t now) {
  if (s->progressed) {
    s->last_progress = now;
    s->progressed = 0;
  }
  return s->last_progress;
}

static void reply(pf_service *s, pf_msg *m) { s->cfg.reply(s->cfg.reply_arg, m); }

static void reply_status(pf_service *s, pf_msg_kind kind, uint64_t exe_id, uint64_t step,
                         int status, const char *message) {
  pf_msg *m = pf_msg_new(kind);
  if (m == NULL) return; /* the controller's watchdog will report the stall */
  m->executable = exe_id;
  m->step = step;
  m->status = status;
  m->message = pf_strdup(message ? message : "");
  reply(s, m);
}

static exe *exe_find(pf_service *s, uint64_t id) {
  for (exe *e = s->exes; e; e = e->next)
    if (e->id == id) return e;
  return NULL;
}

/* ---- load ------------------------------------------------------------------ */

static comm_queue *queue_for(pf_service *s, pf_transport_comm *comm) {
  comm_queue *q;
  for (q = s->queues; q; q = q->next)
    if (q->comm == comm) return q;
  if ((q = calloc(1, sizeof *q)) == NULL) return NULL;
  q->comm = comm;
  q->next = s->queues;
  s->queues = q;
  return q;
}

/* The largest buffer op touches, if it is a transfer or a collective
 * between ranks (what reserve_for must cover), else 0. */
static size_t reserve_need(const pf_plan *p, const pf_plan_op *op) {
  size_t need = 0;
  if (op->kind == PF_OP_SEND || op->kind == PF_OP_RECV ||
      (op->kind == PF_OP_COLLECTIVE && op->comm >= 0)) {
    for (uint32_t k = 0; k < op->n_in; k++)
      need = PF_MAXOF(need, pf_spec_nbytes(p->buffers[op->inputs[k]].spec));
    for (uint32_t k = 0; k < op->n_out; k++)
      need = PF_MAXOF(need, pf_spec_nbytes(p->buffers[op->outputs[k]].spec));
  }
  return need;
}

/* A step that runs out of memory on this rank fails here, but its peers
 * still send to it, receive from it and meet it in collectives: MPI
 * cannot withdraw a rank from a collective others have entered, and a
 * rendezvous send waits for its receive. So the failed step still does
 * every transfer and collective, and where a buffer has no memory it
 * sends zeros and receives into a sink (the execution's future gets the
 * error; what its peers computed from the zeros is never handed out). The
 * reserve is made when a plan loads, as large as the largest buffer one
 * of its transfers or collectives touches, so a started step can always
 * do that much: zeros are read-only anonymous memory (the kernel's zero
 * page, no RAM), the sink is counted against the commit limit at once but
 * touched only if a step ever needs it. */
static int reserve_for(pf_service *s, size_t need, pf_diag *d) {
  void *zero, *sink;
  if (need <= s->reserve_bytes) return 0;
  zero = mmap(NULL, need, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  sink = mmap(NULL, need, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (zero == MAP_FAILED || sink == MAP_FAILED) {
    if (zero != MAP_FAILED) munmap(zero, need);
    if (sink != MAP_FAILED) munmap(sink, need);
    return pf_diag_error(d, PF_ENOMEM,
                         "rank %d: load: out of memory reserving %zu bytes for the transfers "
                         "of a step that runs out of memory",
                         s->cfg.rank, need);
  }
  if (s->reserve_bytes > 0) {
    struct old_reserve *o = malloc(sizeof *o);
    if (o == NULL) {
      munmap(zero, need);
      munmap(sink, need);
      return pf_diag_error(d, PF_ENOMEM, "rank %d: load: out of memory", s->cfg.rank);
    }
    *o = (struct old_reserve){s->zero, s->sink, s->reserve_bytes, s->old_reserves};
    s->old_reserves = o;
  }
  s->zero = zero;
  s->sink = sink;
  s->reserve_bytes = need;
  return 0;
}

/* Where a loop op reads (writes = 0) or writes buffer b: its memory when it
 * has some; else, unless the step failed, new memory (zeroed, unless the op
 * writes all of it: whole); else the reserve. *reserved says which. Never
 * NULL once the plan loaded. */
static char *data_of(pf_service *s, run *r, uint32_t b, int writes, int whole, int *reserved) {
  char *slot = pf_step_slot(r->step, b);
  pf_storage *st;
  if (slot != NULL) {
    /* A failed step's skipped producer left it unwritten: zeros go. */
    if (reserved) *reserved = 0;
    return writes || !pf_step_failed(r->step) ? slot : s->zero;
  }
  st = pf_step_buffer_if_any(r->step, b);
  if (st == NULL && !pf_step_failed(r->step))
    st = writes && whole ? pf_step_buffer_whole(r->step, b) : pf_step_buffer(r->step, b);
  if (reserved) *reserved = st == NULL;
  if (st != NULL) return st->data;
  return writes ? s->sink : s->zero;
}

/* Buffer b's memory if it has any now (its slot, or storage), else NULL. */
static void *step_data_if_any(pf_step *step, uint32_t b) {
  void *slot = pf_step_slot(step, b);
  pf_storage *st;
  if (slot != NULL) return slot;
  st = pf_step_buffer_if_any(step, b);
  return st != NULL ? st->data : NULL;
}

/* The memory of buffer b of a step that has not failed, for a loop op
 * that reads it or (writes: 1) writes it whole: what it has, or storage
 * made now. NULL: out of memory (the step has failed, saying why). */
static void *step_data(pf_step *step, uint32_t b, int writes) {
  void *data = step_data_if_any(step, b);
  pf_storage *st;
  if (data != NULL) return data;
  st = writes ? pf_step_buffer_whole(step, b) : pf_step_buffer(step, b);
  return st != NULL ? st->data : NULL;
}

/* What the transport reads of transfer op's box (box_prepare): the
 * offset on this rank's side and the extent. */
static const int64_t *own_offset(const pf_plan_op *op) {
  return op->kind == PF_OP_SEND ? op->box->src_offset : op->box->dst_offset;
}

/* A hash of how transfer op addresses its buffer of spec sp. */
static uint64_t addressing_hash(const pf_plan_op *op, const pf_spec *sp) {
  uint64_t h = pf_mix64((uint64_t)pf_spec_hash(sp) ^ (uint64_t)op->kind << 56 ^
                        (uint64_t)op->box->rank);
  for (int k = 0; k < op->box->rank; k++)
    h = pf_mix64(h ^ (uint64_t)own_offset(op)[k] ^ (uint64_t)op->box->extent[k] << 29);
  return h;
}

/* Whether transfer ops a and b (buffers of specs sa, sb) need the same
 * transport addressing: of one kind, the same spec, offset and extent.
 * By content, not by the box's address: sends whose boxes differ only on
 * the receiving side (dst_offset) address their buffers alike. */
static int same_addressing(const pf_plan_op *a, const pf_spec *sa, const pf_plan_op *b,
                           const pf_spec *sb) {
  if (a->kind != b->kind || a->box->rank != b->box->rank || !pf_spec_equal(sa, sb)) return 0;
  for (int k = 0; k < a->box->rank; k++)
    if (own_offset(a)[k] != own_offset(b)[k] || a->box->extent[k] != b->box->extent[k]) return 0;
  return 1;
}

/* The buffer transfer op sends from or receives into. */
static uint32_t transfer_buffer(const pf_plan_op *op) {
  return op->kind == PF_OP_SEND ? op->inputs[0] : op->outputs[0];
}

static const pf_spec *transfer_spec(const pf_plan *p, const pf_plan_op *op) {
  return p->buffers[transfer_buffer(op)].spec;
}

/* The ops that prepared the addressings met lately, by their hash: a
 * plan's transfers repeat a few (a stencil's million, one send and one
 * receive), and each prepared costs an allocation and the transport's
 * work (an MPI datatype), kept until the plan goes. Two ways a set, the
 * latest first: with one, a send and a receive that fell in one set
 * took turns putting each other out, and every transfer of the
 * million-program job's rank 0 was prepared anew. */
typedef struct prepared {
  uint32_t op[32][2]; /* UINT32_MAX: none */
} prepared;

/* The op of p that prepared an addressing as op's (spec sp), or
 * UINT32_MAX; *set is where op goes if none did (prepared_put). */
static uint32_t prepared_find(prepared *c, const pf_plan *p, const pf_plan_op *op,
                              const pf_spec *sp, uint32_t *set) {
  uint32_t *ways = c->op[*set = (uint32_t)(addressing_hash(op, sp) % PF_ARRAY_LEN(c->op))];
  for (int w = 0; w < 2; w++) {
    uint32_t j = ways[w];
    if (j == UINT32_MAX || !same_addressing(&p->ops[j], transfer_spec(p, &p->ops[j]), op, sp))
      continue;
    ways[w] = ways[0]; /* the latest first */
    return ways[0] = j;
  }
  return UINT32_MAX;
}

static void prepared_put(prepared *c, uint32_t set, uint32_t op) {
  c->op[set][1] = c->op[set][0];
  c->op[set][0] = op;
}

/* The last send and receive prepared or found (a box and a spec of the
 * same address are the same, and most transfers repeat the one before of
 * their kind: no hashing then), and the addressings met lately. */
typedef struct preparing {
  prepared seen;
  uint32_t last[2];
} preparing;

/* Transport addressing for transfer op i: done once per plan, never per
 * step. Local work only (no communication), so that a rank that cannot
 * load a plan says so before any rank enters a collective call. */
static int prepare_transfer(pf_service *s, exe *e, uint32_t i, preparing *pr, pf_diag *d) {
  const pf_plan *p = pf_loaded_plan(e->loaded);
  const pf_plan_op *op = &p->ops[i];
  const pf_plan_buffer *b;
  xfer_op *x = &e->xfers[i];
  uint32_t set, *was_last = &pr->last[op->kind == PF_OP_RECV], was = *was_last;
  int rc;
  if (op->tag >= s->tag_window)
    return pf_diag_error(d, PF_ERANGE,
                         "rank %d: transfer tag %lld exceeds the tag window %d "
                         "(the transport's tags / %d windows)",
                         s->cfg.rank, (long long)op->tag, s->tag_window, PF_MAX_IN_FLIGHT + 1);
  b = &p->buffers[transfer_buffer(op)];
  /* Device memory is sent and received only by a transport that moves it
   * (CUDA-aware MPI); a device that says otherwise is not believed. */
  if (!b->host && pf_loaded_own_memory(e->loaded, b->device) && !s->cfg.transport->cuda_memory)
    return pf_diag_error(d, PF_EDECODE,
                         "rank %d: op %u (program \"%s\") %s device %d's own memory, which "
                         "this transport cannot move (not staged through host memory)",
                         s->cfg.rank, i, op->name,
                         op->kind == PF_OP_SEND ? "sends from" : "receives into",
                         (int)b->device);
  if (was == UINT32_MAX || p->ops[was].box != op->box ||
      transfer_spec(p, &p->ops[was]) != b->spec)
    was = prepared_find(&pr->seen, p, op, b->spec, &set);
  if (was != UINT32_MAX) {
    *was_last = was;
    x->at = e->xfers[was].at;
  } else {
    if (pf_grow((void **)&e->boxes, &e->cap_boxes, e->n_boxes + 1, sizeof *e->boxes))
      return pf_diag_error(d, PF_ENOMEM, "load: out of memory");
    rc = s->cfg.transport->ops->box_prepare(s->cfg.transport, b->spec, own_offset(op),
                                            op->box->extent, &e->boxes[e->n_boxes]);
    if (rc)
      return pf_diag_error(d, rc, "rank %d: op %u: cannot describe the transfer to the transport",
                           s->cfg.rank, i);
    x->at = (uint32_t)e->n_boxes++;
    prepared_put(&pr->seen, set, i);
    *was_last = i;
  }
  x->buffer = transfer_buffer(op);
  x->peer = op->peer;
  x->tag = (int32_t)op->tag;
  x->whole = e->boxes[x->at].nbytes == pf_spec_nbytes(b->spec);
  return 0;
}

/* The loop's record of every op, the list of the collectives it runs, each
 * transfer's addressing (prepare_transfer) and the reserve (reserve_for):
 * one pass over the plan's op records (112 bytes each, 168 MB for a plan
 * of 1.5 million: there were three). Without a transport there are
 * neither transfers nor collectives across ranks (a plan with any is
 * refused: handle_load), so nothing. */
static int index_plan(pf_service *s, exe *e, pf_diag *d) {
  const pf_plan *p = pf_loaded_plan(e->loaded);
  preparing pr;
  size_t need = 0;
  int rc;
  if (s->cfg.transport == NULL) return 0;
  memset(&pr, 0xff, sizeof pr);
  e->tp = s->cfg.transport;
  e->xfers = pf_mallocn(p->n_ops, sizeof *e->xfers);
  e->collectives = pf_mallocn(p->n_ops, sizeof *e->collectives); /* what it holds is touched */
  if (e->xfers == NULL || e->collectives == NULL)
    return pf_diag_error(d, PF_ENOMEM, "load: out of memory");
  for (uint32_t i = 0; i < p->n_ops; i++) {
    const pf_plan_op *op = &p->ops[i];
    xfer_op *x = &e->xfers[i];
    *x = (xfer_op){.buffer = UINT32_MAX, .peer = -1, .at = UINT32_MAX, .kind = (uint8_t)op->kind};
    need = PF_MAXOF(need, reserve_need(p, op));
    /* A collective its device runs (NCCL) is the device's, not the loop's. */
    if (op->kind == PF_OP_COLLECTIVE && op->comm >= 0 && pf_loaded_is_loop_op(e->loaded, i)) {
      x->at = e->n_collectives;
      e->collectives[e->n_collectives++] = i;
    } else if ((op->kind == PF_OP_SEND || op->kind == PF_OP_RECV) &&
               (rc = prepare_transfer(s, e, i, &pr, d)) != 0) {
      return rc;
    }
  }
  if (e->n_collectives > 0 &&
      ((e->comms = pf_calloc(e->n_collectives, sizeof *e->comms)) == NULL ||
       (e->queues = pf_calloc(e->n_collectives, sizeof *e->queues)) == NULL ||
       (e->allreduces = pf_calloc(e->n_collectives, sizeof *e->allreduces)) == NULL))
    return pf_diag_error(d, PF_ENOMEM, "load: out of memory");
  for (uint32_t k = 0; k < e->n_collectives; k++) {
    const pf_plan_op *op = &p->ops[e->collectives[k]];
    const pf_spec *ins = p->buffers[op->inputs[0]].spec;
    int64_t numel = pf_spec_numel(ins);
    /* The general path's range check passes (start_collective). */
    if (op->collective == PF_ALLREDUCE && op->n_in == 1 && op->n_out == 1 && numel > 0 &&
        (uint64_t)numel * pf_dtype_size(ins->dtype) * (uint64_t)op->num_shards <= INT32_MAX)
      e->allreduces[k] = (one_allreduce){.in = op->inputs[0], .out = op->outputs[0],
                                         .count = (uint32_t)numel, .dtype = (uint8_t)ins->dtype,
                                         .reduce_op = (uint8_t)op->reduce_op,
                                         .num_shards = op->num_shards};
  }
  return reserve_for(s, need, d);
}

/* The communicator of every collective (the second phase of loading).
 * Collective over each communicator's ranks: the controller asks for it
 * only once every rank has loaded its plan, so no member is missing. */
static int connect_comms(pf_service *s, exe *e, pf_diag *d) {
  const pf_plan *p = pf_loaded_plan(e->loaded);
  int rc;
  for (uint32_t c = 0; c < p->n_comms; c++) {
    pf_transport_comm *comm;
    comm_queue *q;
    if ((rc = s->cfg.transport->ops->comm_for(s->cfg.transport, p->comms[c].ranks,
                                              (int)p->comms[c].n_ranks, p->comms[c].group,
                                              &comm)))
      return pf_diag_error(d, rc, "rank %d: could not make communicator %d (group %u of %u ranks)%s",
                           s->cfg.rank, (int)p->comms[c].id, (unsigned)p->comms[c].group,
                           (unsigned)p->comms[c].n_ranks,
                           rc == PF_ERANGE ? ": the job has more groups of ranks running "
                                             "collectives than the transport's tags can keep apart"
                                           : "");
    if ((q = queue_for(s, comm)) == NULL) return pf_diag_error(d, PF_ENOMEM, "load: out of memory");
    for (uint32_t k = 0; k < e->n_collectives; k++)
      if (p->ops[e->collectives[k]].comm == p->comms[c].id) {
        e->comms[k] = comm;
        e->queues[k] = q;
      }
  }
  /* Plan communicators of the same ranks may share one: by handle. (A
   * second connect, after a device's join failed, makes them anew.) */
  free(e->comm_firsts);
  e->comm_firsts = NULL;
  e->n_comm_firsts = 0;
  if (e->n_collectives > 0 &&
      (e->comm_firsts = pf_mallocn(e->n_collectives, sizeof *e->comm_firsts)) == NULL)
    return pf_diag_error(d, PF_ENOMEM, "load: out of memory");
  for (uint32_t k = 0; k < e->n_collectives; k++) {
    uint32_t j = 0;
    while (j < e->n_comm_firsts && e->comms[e->comm_firsts[j]] != e->comms[k]) j++;
    if (j == e->n_comm_firsts) e->comm_firsts[e->n_comm_firsts++] = k;
  }
  return 0;
}

/* ---- communicators of device-run collectives (NCCL) ------------------------- */

/* This rank's place in plan communicator c, or -1. */
static int member_of(const pf_service *s, const pf_plan_comm *c) {
  for (uint32_t k = 0; k < c->n_ranks; k++)
    if (c->ranks[k] == s->cfg.rank) return (int)k;
  return -1;
}

/* At load: for every communicator whose collectives a device here runs and
 * whose first member this rank is, a new id (the device's comm_id), for
 * LOAD_DONE: the controller hands them to every member with CONNECT. */
static int device_comm_ids(pf_service *s, exe *e, pf_msg *rep, pf_diag *d) {
  const pf_plan *p = pf_loaded_plan(e->loaded);
  for (uint32_t c = 0; c < p->n_comms; c++) {
    int dev = pf_loaded_comm_device(e->loaded, c), rc;
    pf_device *dv;
    pf_msg_comm_id *id;
    pf_diag why;
    size_t len = PF_COMM_ID_MAX;
    if (dev < 0 || member_of(s, &p->comms[c]) != 0) continue;
    dv = pf_executor_device(s->cfg.executor, dev);
    if (rep->comm_ids == NULL &&
        (rep->comm_ids = pf_calloc(p->n_comms, sizeof *rep->comm_ids)) == NULL)
      return pf_diag_error(d, PF_ENOMEM, "load: out of memory");
    id = &rep->comm_ids[rep->n_comm_ids++];
    id->comm = p->comms[c].id;
    pf_diag_init(&why);
    if ((rc = dv->ops->comm_id(dv, id->id, &len, &why)) != 0)
      return pf_diag_error(d, rc, "rank %d: device %d: no id for communicator %d: %s",
                           s->cfg.rank, dev, (int)p->comms[c].id,
                           why.code ? why.msg : pf_strerror(rc));
  }
  return 0;
}

typedef struct comm_join {
  pf_service *s;
  exe *e;
  uint32_t c;
  int device, n, me, rc;
  pf_device *dev;
  uint8_t id[PF_COMM_ID_MAX];
  void *handle;
  pf_diag why;
} comm_join;

static void connect_reply(pf_service *s, exe *e) {
  if (e->join_err.code == 0) e->connected = 1;
  reply_status(s, PF_MSG_LOAD_DONE, e->id, 0, e->join_err.code,
               e->join_err.code ? e->join_err.msg : NULL);
}

/* On the loop thread, once a join's thread is done. */
static void join_done(void *arg) {
  comm_join *j = arg;
  exe *e = j->e;
  if (j->rc == 0)
    pf_loaded_set_comm(e->loaded, j->c, j->dev, j->handle);
  else if (e->join_err.code == 0)
    pf_diag_error(&e->join_err, j->rc, "rank %d: device %d: joining communicator %d: %s",
                  j->s->cfg.rank, j->device, (int)pf_loaded_plan(e->loaded)->comms[j->c].id,
                  j->why.code ? j->why.msg : pf_strerror(j->rc));
  if (--e->joins_pending == 0) connect_reply(j->s, e);
  exe_unref(e);
  free(j);
}

/* comm_join blocks until every member has joined: on its own thread, never
 * the loop's (heartbeats, other executables' steps go on meanwhile). */
static void *join_main(void *arg) {
  comm_join *j = arg;
  pf_diag_init(&j->why);
  j->rc = j->dev->ops->comm_join(j->dev, j->id, PF_COMM_ID_MAX, j->n, j->me, &j->handle, &j->why);
  j->s->cfg.post_call(j->s->cfg.post_arg, join_done, j);
  return NULL;
}

/* The id CONNECT carries for plan communicator c, or NULL. */
static const pf_msg_comm_id *comm_id_for(const pf_msg *m, int32_t comm) {
  for (uint32_t k = 0; k < m->n_comm_ids; k++)
    if (m->comm_ids[k].comm == comm) return &m->comm_ids[k];
  return NULL;
}

/* At connect: every device communicator of the plan is joined, with the id
 * its first member made (m->comm_ids). Returns how many joins started (the
 * last to finish answers CONNECT, with the first error if one failed or
 * one could not start), or a negative code with d set when none started. */
static int join_device_comms(pf_service *s, exe *e, const pf_msg *m, pf_diag *d) {
  const pf_plan *p = pf_loaded_plan(e->loaded);
  int started = 0;
  /* Every id first: a missing one fails the connect before any join. */
  for (uint32_t c = 0; c < p->n_comms; c++)
    if (pf_loaded_comm_device(e->loaded, c) >= 0 && comm_id_for(m, p->comms[c].id) == NULL)
      return pf_diag_error(d, PF_EDECODE, "rank %d: connect: no id for communicator %d",
                           s->cfg.rank, (int)p->comms[c].id);
  for (uint32_t c = 0; c < p->n_comms; c++) {
    int dev = pf_loaded_comm_device(e->loaded, c);
    const pf_msg_comm_id *id = comm_id_for(m, p->comms[c].id);
    comm_join *j;
    pthread_t t;
    pthread_attr_t attr;
    if (dev < 0) continue;
    if (s->cfg.post_call == NULL || (j = calloc(1, sizeof *j)) == NULL) {
      pf_diag_error(started ? &e->join_err : d, PF_ENOMEM, "rank %d: connect: out of memory",
                    s->cfg.rank);
      return started ? started : PF_ENOMEM;
    }
    *j = (comm_join){.s = s, .e = e, .c = c, .device = dev, .n = (int)p->comms[c].n_ranks,
                     .me = member_of(s, &p->comms[c]),
                     .dev = pf_executor_device(s->cfg.executor, dev)};
    memcpy(j->id, id->id, PF_COMM_ID_MAX);
    e->refs++;
    e->joins_pending++;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    if (pthread_create(&t, &attr, join_main, j) != 0) {
      pthread_attr_destroy(&attr);
      e->refs--;
      e->joins_pending--;
      free(j);
      /* Joins already started answer for the connect when they end. */
      pf_diag_error(started ? &e->join_err : d, PF_ESYS,
                    "rank %d: connect: no thread to join communicator %d", s->cfg.rank,
                    (int)p->comms[c].id);
      return started ? started : PF_ESYS;
    }
    pthread_attr_destroy(&attr);
    started++;
  }
  return started;
}

static void handle_load(pf_service *s, pf_msg *m) {
  uint64_t id = m->plan ? m->plan->executable : 0;
  pf_diag d;
  exe *e;
  int rc;
  pf_diag_init(&d);
  if (m->plan == NULL || exe_find(s, id) != NULL) {
    reply_status(s, PF_MSG_LOAD_DONE, id, 0, PF_EINVAL, "load: no plan, or executable loaded twice");
    return;
  }
  if ((e = calloc(1, sizeof *e)) == NULL) {
    reply_status(s, PF_MSG_LOAD_DONE, id, 0, PF_ENOMEM, "load: out of memory");
    return;
  }
  rc = pf_executor_load(s->cfg.executor, m->plan, &e->loaded, &d);
  m->plan = NULL; /* the executor owns it now, even on error */
  if (rc == 0) rc = index_plan(s, e, &d);
  if (rc == 0 && !s->cfg.transport && pf_loaded_plan(e->loaded)->n_comms > 0)
    rc = pf_diag_error(&d, PF_ENOTSUP, "rank %d: collectives across ranks in a process alone",
                       s->cfg.rank);
  e->id = id;
  e->refs = 1;
  e->connected = rc == 0 && pf_loaded_plan(e->loaded)->n_comms == 0;
  if (rc != 0) {
    if (e->loaded) exe_unref(e); else free(e);
    reply_status(s, PF_MSG_LOAD_DONE, id, 0, rc, d.msg);
    return;
  }
  e->next = s->exes;
  s->exes = e;
  {
    pf_msg *rep = pf_msg_new(PF_MSG_LOAD_DONE);
    if (rep == NULL) return;
    rep->executable = id;
    if ((rc = device_comm_ids(s, e, rep, &d)) != 0) {
      rep->status = rc;
      rep->message = pf_strdup(d.msg);
      free(rep->comm_ids);
      rep->comm_ids = NULL;
      rep->n_comm_ids = 0;
    }
    reply(s, rep);
  }
}

/* Phase 2: every rank loaded its plan; make the communicators. */
static void handle_connect(pf_service *s, const pf_msg *m) {
  uint64_t id = m->executable;
  exe *e = exe_find(s, id);
  pf_diag d;
  int rc = 0;
  pf_diag_init(&d);
  if (e == NULL)
    rc = pf_diag_error(&d, PF_ESTALE, "rank %d: connect: executable %llu is not loaded here",
                       s->cfg.rank, (unsigned long long)id);
  else if (!e->connected && e->joins_pending == 0 && (rc = connect_comms(s, e, &d)) == 0) {
    pf_diag_init(&e->join_err);
    if ((rc = join_device_comms(s, e, m, &d)) > 0) return; /* the last join answers */
    if (rc == 0) e->connected = 1;
  }
  reply_status(s, PF_MSG_LOAD_DONE, id, 0, rc, rc ? d.msg : NULL);
}

static void handle_unload(pf_service *s, uint64_t id) {
  for (exe **pe = &s->exes; *pe; pe = &(*pe)->next)
    if ((*pe)->id == id) {
      exe *e = *pe;
      *pe = e->next;
      exe_unref(e);
      return;
    }
}

/* ---- run --------------------------------------------------------------------- */

static void executor_done(pf_step *step, void *arg);
static void unpark(pf_service *s);

/* The first of r's collectives on q's communicator from place k on, or
 * n_collectives. */
static uint32_t next_on(const run *r, const comm_queue *q, uint32_t k) {
  while (k < r->e->n_collectives && r->e->comms[k] != q->comm) k++;
  return k;
}

static void enqueue_collectives(pf_service *s, run *r) {
  for (uint32_t f = 0; f < r->e->n_comm_firsts; f++) {
    uint32_t k = r->e->comm_firsts[f];
    comm_queue *q = queue_for(s, r->e->comms[k]);
    queued_run *qr;
    if (q == NULL || (qr = malloc(sizeof *qr)) == NULL) {
      /* Cannot keep the gang order: the job cannot go on safely. */
      pf_transport_abort(s->cfg.transport, 1, "out of memory queueing a collective");
    }
    qr->r = r;
    qr->next = k;
    qr->after = NULL;
    if (q->tail)
      q->tail->after = qr;
    else
      q->head = qr;
    q->tail = qr;
  }
}

/* An input kept in host memory for a device that keeps its buffers in
 * memory of its own (a feed for a GPU), or the other way round: a copy
 * where the step wants it, which also replaces the stored one (later runs
 * find it there: a value fed once and run many times crosses once).
 * Returns the step's reference, or NULL with the reason in why. */
static pf_storage *move_input(pf_service *s, uint64_t id, const pf_plan_buffer *pb,
                              pf_storage *st, pf_diag *why) {
  pf_storage *moved = NULL;
  int to_device = !pb->host && pf_executor_device_memory(s->cfg.executor, pb->device);
  int rc = to_device ? pf_executor_to_device(s->cfg.executor, pb->device, st, &moved)
                     : pf_executor_to_host(s->cfg.executor, st, &moved);
  if (rc != 0) {
    pf_diag_error(why, rc, "rank %d: input shard %d (buffer %llu): moving it %s device %d: %s",
                  s->cfg.rank, (int)pb->shard, (unsigned long long)id,
                  to_device ? "into" : "out of", (int)pb->device, pf_strerror(rc));
    return NULL;
  }
  /* On failure the store keeps the one it had: the next run moves it again. */
  (void)pf_store_put(s->store, id, pb->shard, pf_storage_ref(moved));
  return moved;
}

/* 1 if stored input st is not in the memory buffer pb wants: host memory
 * for a device of its own memory, another device's memory, or a device's
 * own for a host buffer. */
static int misplaced(const exe *e, const pf_plan_buffer *pb, const pf_storage *st) {
  int want_device = !pb->host && pf_loaded_own_memory(e->loaded, pb->device);
  return st->on_device != want_device || (want_device && st->device != pb->device);
}

static void handle_run(pf_service *s, pf_msg *m) {
  exe *e = exe_find(s, m->executable);
  const pf_plan *p;
  pf_storage **inputs = NULL;
  const uint32_t *fed;
  uint32_t n_fed;
  pf_diag why;
  run *r;
  int rc;
  pf_diag_init(&why);
  if (e == NULL) {
    reply_status(s, PF_MSG_STEP_DONE, m->executable, m->step, PF_ESTALE,
                 "run: executable not loaded on this rank");
    pf_msg_free(m);
    return;
  }
  e->runs_seen++; /* failed runs count too: the user's steps stay numbered alike on every rank */
  if (!e->connected) {
    reply_status(s, PF_MSG_STEP_DONE, m->executable, m->step, PF_ESTATE,
                 "run: the executable's communicators are not made on this rank (no connect)");
    pf_msg_free(m);
    return;
  }
  p = pf_loaded_plan(e->loaded);
  if (m->n_inputs != (uint32_t)p->num_inputs || m->n_outputs != (uint32_t)p->num_outputs) {
    reply_status(s, PF_MSG_STEP_DONE, m->executable, m->step, PF_EINVAL,
                 "run: input or output count differs from the plan");
    pf_msg_free(m);
    return;
  }
  inputs = pf_calloc(p->n_buffers, sizeof *inputs);
  r = calloc(1, sizeof *r + (size_t)e->n_collectives * sizeof r->ready[0]);
  if (inputs == NULL || r == NULL) {
    free(inputs);
    free(r);
    reply_status(s, PF_MSG_STEP_DONE, m->executable, m->step, PF_ENOMEM, "run: out of memory");
    pf_msg_free(m);
    return;
  }
  fed = pf_loaded_inputs(e->loaded, &n_fed);
  for (uint32_t k = 0; k < n_fed; k++) {
    uint32_t b = fed[k];
    const pf_plan_buffer *pb = &p->buffers[b];
    uint64_t maker_exe, maker_step;
    inputs[b] = pf_store_get(s->store, m->inputs[pb->input], pb->shard);
    if (inputs[b] == NULL &&
        pf_store_failed(s->store, m->inputs[pb->input], pb->shard, &maker_exe, &maker_step))
      pf_diag_error(&why, PF_ESTALE,
                    "rank %d: input %d shard %d (buffer %llu) was to be made by run %llu of "
                    "executable %llu, which failed",
                    s->cfg.rank, (int)pb->input, (int)pb->shard,
                    (unsigned long long)m->inputs[pb->input], (unsigned long long)maker_step,
                    (unsigned long long)maker_exe);
    else if (inputs[b] == NULL || inputs[b]->nbytes < pf_spec_nbytes(pb->spec))
      pf_diag_error(&why, PF_ESTALE,
                    "rank %d: input %d shard %d (buffer %llu) is not on this rank: "
                    "released, or never made",
                    s->cfg.rank, (int)pb->input, (int)pb->shard,
                    (unsigned long long)m->inputs[pb->input]);
    if (why.code == 0 && misplaced(e, pb, inputs[b]))
      inputs[b] = move_input(s, m->inputs[pb->input], pb, inputs[b], &why);
    else
      inputs[b] = why.code ? NULL : pf_storage_ref(inputs[b]); /* the step's */
  }
  if (why.code) /* a failed step reads none: let go of those taken before */
    for (uint32_t k = 0; k < n_fed; k++) {
      pf_storage_unref(inputs[fed[k]]);
      inputs[fed[k]] = NULL;
    }
  /* The run's own feeds and the buffers donated to it leave the store
   * before the step starts: the step's reference is then the only one
   * (unless another step in flight reads them too), and a kernel that
   * updates in place may write its output into one (executor.c, take_over). */
  for (uint32_t k = 0; k < m->n_drop; k++) pf_store_drop(s->store, m->drop[k]);
  r->svc = s;
  r->e = e;
  r->seq = m->step;
  r->user_step = e->runs_seen;
  r->slot = m->slot;
  r->msg = m;
  e->refs++;
  r->next = s->runs;
  if (r->next) r->next->prev = r;
  s->runs = r;
  s->n_runs++;
  enqueue_collectives(s, r);
  /* What the run will store: a run or fetch that comes for it meanwhile
   * waits (pf_service_handle) instead of finding nothing. Out of memory, a
   * consumer is not held back and fails as if the buffer were released. */
  for (uint32_t k = 0; k < p->n_slots; k++)
    pf_store_expect(s->store, m->outputs[p->slots[k].output], p->slots[k].shard, e->id,
                    r->user_step);
  /* Sequential dispatch waits for this before it sends the next stage its
   * run: said before the step starts, so it goes ahead of a STEP_DONE of a
   * step that completes at once. Messages that come meanwhile wait for
   * their receives (MPI's unexpected queue). */
  if (m->ack_start) reply_status(s, PF_MSG_STEP_STARTED, m->executable, m->step, 0, NULL);
  if (why.code)
    rc = pf_executor_run_failed(s->cfg.executor, e->loaded, inputs, m->step, &why, executor_done,
                                r, &r->step);
  else
    rc = pf_executor_run(s->cfg.executor, e->loaded, inputs, m->step, executor_done, r, &r->step);
  free(inputs);
  if (rc != 0) {
    /* Only the step's bookkeeping (a few words per op) can fail here: its
     * buffers failing only fail the step. Without the bookkeeping the step
     * cannot even do its transfers, and its peers would wait forever. */
    char msg[200];
    snprintf(msg, sizeof msg,
             "rank %d: step %llu: out of memory for the step's bookkeeping (%u ops, %u buffers); "
             "its peers would wait for it forever",
             s->cfg.rank, (unsigned long long)m->step, p->n_ops, p->n_buffers);
    pf_transport_abort(s->cfg.transport, 1, msg);
  }
}

/* Runs on a device worker (or inside pf_executor_run): the runtime hands
 * the completion to the loop thread, which calls pf_service_step_done. */
static void executor_done(pf_step *step, void *arg) {
  run *r = arg;
  (void)step;
  r->svc->cfg.post_done(r->svc->cfg.post_arg, r);
}

void pf_service_step_done(pf_service *s, void *arg) {
  run *r = arg;
  const pf_plan *p = pf_loaded_plan(r->e->loaded);
  int status = pf_step_status(r->step);
  for (uint32_t k = 0; k < p->n_slots; k++) {
    const pf_plan_slot *sl = &p->slots[k];
    uint64_t id = r->msg->outputs[sl->output];
    pf_storage *st = status == 0 ? pf_step_take(r->step, sl->buffer) : NULL;
    if (st == NULL || pf_store_put(s->store, id, sl->shard, st) != 0)
      pf_store_fail(s->store, id, sl->shard);
  }
  /* What waited for these outputs starts before the controller hears of
   * this step: told first, the client thread wakes and takes this core
   * (fetching the step's loss, sending the next) while the devices wait
   * (bench/train, one core per rank: 50 us a step). */
  unpark(s);
  if (s->cfg.trace != NULL)
    for (uint32_t i = 0; i < p->n_ops; i++) {
      uint64_t t0, t1;
      pf_step_op_times(r->step, i, &t0, &t1);
      if (t0 != 0 && !pf_loaded_is_loop_op(r->e->loaded, i))
        pf_trace_event(s->cfg.trace, p->ops[i].name,
                       p->ops[i].kernel ? p->ops[i].kernel : "copy", p->ops[i].device, t0, t1,
                       r->e->id, r->user_step, r->seq);
    }
  reply_status(s, PF_MSG_STEP_DONE, r->e->id, r->seq, status, pf_step_message(r->step));
  s->steps++;
  s->steps_failed += status != 0;
  s->last_progress = pf_clock_now(s->cfg.clock);
  if (r->prev)
    r->prev->next = r->next;
  else
    s->runs = r->next;
  if (r->next) r->next->prev = r->prev;
  s->n_runs--;
  pf_step_free(r->step);
  exe_unref(r->e);
  pf_msg_free(r->msg);
  free(r);
}

/* ---- transfers and collectives ------------------------------------------------- */

/* The controller gives each step in flight its own slot, so two steps in
 * flight never share a tag. */
static int tag_of(const pf_service *s, uint32_t slot, int64_t tag) {
  return (int)((uint64_t)(slot % PF_MAX_IN_FLIGHT) * (uint64_t)s->tag_window + (uint64_t)tag);
}

/* Loop op lo's event on the timeline (PATHFLOW_TRACE). Out of line: its
 * name's buffer would cost every loop op a larger frame. */
static __attribute__((noinline)) void trace_loop_op(pf_service *s, const loop_op *lo) {
  const pf_plan_op *op = &pf_step_plan(lo->r->step)->ops[lo->op];
  char name[160];
  if (op->kind == PF_OP_COLLECTIVE)
    snprintf(name, sizeof name, "%s %s", pf_collective_name((pf_collective_kind)op->collective),
             op->name);
  else
    snprintf(name, sizeof name, "%s %s rank %d (%s)", op->kind == PF_OP_SEND ? "send" : "recv",
             op->kind == PF_OP_SEND ? "to" : "from", (int)op->peer, op->name);
  pf_trace_event(s->cfg.trace, name, op->kind == PF_OP_COLLECTIVE ? "collective" : "transfer",
                 PF_TRACE_LOOP_ROW, lo->started, stamp(s), lo->r->e->id, lo->r->user_step,
                 lo->r->seq);
}

static void loop_op_finish(loop_op *lo, int status, const char *why) {
  pf_service *s = lo->r->svc;
  if (lo->started != 0) {
    uint64_t waited = stamp(s) - lo->started;
    if (lo->x->kind == PF_OP_COLLECTIVE)
      s->collective_wait_ns += waited;
    else
      s->transfer_wait_ns += waited;
    if (s->cfg.trace != NULL) trace_loop_op(s, lo);
  }
  posted_remove(lo);
  lo->r->ops_in_flight--;
  s->progressed = 1; /* a clock read per op would cost more */
  if (lo->stage_in != NULL) free(lo->stage_in); /* a collective's: a transfer has none */
  if (lo->stage_out != NULL) free(lo->stage_out);
  pf_executor_loop_op_done(lo->r->step, lo->op, status, why);
  loop_op_free(s, lo);
  PF_PROBE("service.loop_op_done");
}

/* A transfer that failed: its step fails, naming it. Out of line, as
 * trace_loop_op. */
static __attribute__((noinline)) void transfer_failed(loop_op *lo, const xfer_op *x, int status) {
  char why[160];
  snprintf(why, sizeof why, "%s of program \"%s\" with rank %d failed",
           x->kind == PF_OP_SEND ? "send" : "receive", pf_step_plan(lo->r->step)->ops[lo->op].name,
           (int)x->peer);
  loop_op_finish(lo, status, why);
}

static void transfer_done(void *arg, int status) {
  loop_op *lo = arg;
  const xfer_op *x = lo->x;
  PF_PROBE("service.transfer_done");
  if (x->kind == PF_OP_RECV) {
    lo->r->svc->recv_bytes -= lo->r->e->boxes[x->at].nbytes;
    lo->r->svc->recvs_posted--;
  }
  if (status != 0)
    transfer_failed(lo, x, status);
  else
    loop_op_finish(lo, 0, NULL);
}

static void start_transfer(pf_service *s, loop_op *lo) {
  run *r = lo->r;
  PF_PROBE("service.start_transfer");
  const xfer_op *op = lo->x;
  const pf_xfer_box *bx = &r->e->boxes[op->at];
  pf_transport *t = s->cfg.transport;
  /* The reserve, when the buffer has no memory, is at least as large as
   * the whole buffer: the same box addresses it. */
  char *data = data_of(s, r, op->buffer, op->kind == PF_OP_RECV, op->whole, NULL);
  int err, tag = tag_of(s, r->slot, op->tag);
  lo->started = stamp(s); /* counters' wait and the timeline */
  posted_add(lo);
  if (op->kind == PF_OP_RECV) {
    s->recv_bytes += bx->nbytes;
    s->recvs_posted++;
  }
  if (op->kind == PF_OP_SEND)
    err = t->ops->send(t, data, bx, op->peer, tag, transfer_done, lo);
  else
    err = t->ops->recv(t, data, bx, op->peer, tag, transfer_done, lo);
  if (err != 0) {
    transfer_done(lo, PF_EMPI);
    return;
  }
  if (op->peer >= 0 && op->peer < s->size) {
    pf_peer_counters *c = &s->peers[op->peer];
    uint64_t nbytes = bx->nbytes;
    if (op->kind == PF_OP_SEND) {
      c->data_bytes_sent += nbytes;
      c->data_messages_sent++;
    } else {
      c->data_bytes_received += nbytes;
      c->data_messages_received++;
    }
  }
}

static void collective_done(void *arg, int status) {
  PF_PROBE("service.collective_done");
  loop_op *lo = arg;
  const one_allreduce *ar = &lo->r->e->allreduces[lo->x->at];
  if (ar->count != 0) {
    void *out = lo->drained ? NULL : step_data_if_any(lo->r->step, ar->out);
    if (status == 0 && out != NULL)
      pf_reduce_finish(out, ar->count, (pf_dtype)ar->dtype, ar->reduce_op, ar->num_shards);
    loop_op_finish(lo, status, status ? "collective failed in the transport" : NULL);
    return;
  }
  const pf_plan *p = pf_step_plan(lo->r->step);
  const pf_plan_op *op = &p->ops[lo->op];
  const pf_spec *ins = p->buffers[op->inputs[0]].spec, *outs = p->buffers[op->outputs[0]].spec;
  /* A drained collective (its step failed) has nothing to finish. */
  pf_storage *out = lo->drained ? NULL : pf_step_buffer_if_any(lo->r->step, op->outputs[0]);
  int n = op->num_shards;
  if (status == 0 && out != NULL) {
    if (op->collective == PF_ALLREDUCE || op->collective == PF_REDUCE_SCATTER)
      pf_reduce_finish(out->data, (size_t)pf_spec_numel(outs), outs->dtype, op->reduce_op, n);
    if (op->collective == PF_ALLGATHER && lo->stage_out) /* blocks arrived one after the other */
      pf_blocks_concat(out->data, outs, op->axis, lo->stage_out, ins, n);
    if (op->collective == PF_ALL_TO_ALL && lo->stage_out) {
      /* Chunk d came from shard d: it goes at offset d along in_axis. */
      pf_spec chunk = *ins;
      chunk.dims[op->axis] /= n;
      pf_blocks_concat(out->data, outs, op->in_axis, lo->stage_out, &chunk, n);
    }
  }
  /* Every other local shard gets a copy of the result. */
  for (uint32_t k = 1; status == 0 && out != NULL && k < op->n_out &&
                       (op->collective == PF_ALLREDUCE || op->collective == PF_BROADCAST);
       k++) {
    pf_storage *more = pf_step_buffer_whole(lo->r->step, op->outputs[k]); /* NULL: step failed */
    if (more != NULL) memcpy(more->data, out->data, pf_spec_nbytes(outs));
  }
  loop_op_finish(lo, status, status ? "collective failed in the transport" : NULL);
}

/* 1 if blocks along `axis` are already contiguous in row-major order. */

/* A collective MPI refuses to issue would leave the other ranks of its
 * communicator waiting in it forever: end the job, saying which collective
 * and why, rather than hang it. (Out of memory is not a reason: the
 * collective is then issued on the reserve, see issue_drained.) */
__attribute__((noreturn)) static void cannot_issue(pf_service *s, loop_op *lo, const char *why) {
  const pf_plan_op *op = &pf_step_plan(lo->r->step)->ops[lo->op];
  char msg[256];
  snprintf(msg, sizeof msg,
           "collective \"%s\" (%s) of step %llu cannot be issued here: %s; the other ranks "
           "of its communicator would wait in it forever",
           op->name, pf_collective_name((pf_collective_kind)op->collective),
           (unsigned long long)lo->r->seq, why);
  pf_transport_abort(s->cfg.transport, 1, msg);
}

/* A collective of a failed step whose buffers have no memory (or whose
 * staging could not be had): issued all the same, the same call with the
 * same counts as its peers make, from the reserve's zeros into its sink,
 * so they do not wait in it forever. */
static void drained_call(pf_service *s, loop_op *lo, const pf_plan_op *op,
                         pf_collective_call *c) {
  const pf_plan *p = pf_step_plan(lo->r->step);
  const pf_spec *ins = p->buffers[op->inputs[0]].spec, *outs = p->buffers[op->outputs[0]].spec;
  int n = op->num_shards;
  lo->drained = 1;
  free(lo->stage_in);
  free(lo->stage_out);
  lo->stage_in = lo->stage_out = NULL;
  c->send = s->zero;
  c->recv = s->sink;
  switch (op->collective) {
    case PF_ALLREDUCE: c->count = (size_t)pf_spec_numel(ins); break;
    case PF_ALLGATHER: c->bytes = pf_spec_nbytes(ins); break;
    case PF_REDUCE_SCATTER: c->count = (size_t)pf_spec_numel(outs); break;
    case PF_BROADCAST:
      /* The root sends zeros, the others receive into the sink. */
      c->recv = op->shard == op->root ? s->zero : s->sink;
      c->bytes = pf_spec_nbytes(outs);
      break;
    case PF_ALL_TO_ALL: c->bytes = pf_spec_nbytes(ins) / (size_t)n; break;
    default: break;
  }
}

/* The n blocks of `in` along `axis` (strided: not the leading axis), made
 * contiguous in staging memory that the collective sends from. 1, or 0
 * when that memory could not be had. */
static int stage_split(loop_op *lo, const pf_storage *in, const pf_spec *ins, int axis, int n,
                       pf_collective_call *c) {
  size_t bytes = pf_spec_nbytes(ins);
  if ((lo->stage_in = malloc(bytes ? bytes : 1)) == NULL) return 0;
  pf_blocks_split(lo->stage_in, in->data, ins, axis, n);
  c->send = lo->stage_in;
  return 1;
}

/* Hands collective lo, `bytes` of its inputs, to the transport (counted). */
static void issue(pf_service *s, loop_op *lo, const pf_collective_call *c, uint64_t bytes) {
  pf_transport *t = s->cfg.transport;
  int err;
  s->collectives++;
  s->collective_bytes += bytes;
  if ((err = t->ops->collective(t, lo->r->e->comms[lo->x->at], c,
                                collective_done, lo)) != 0) {
    char why[96];
    snprintf(why, sizeof why, "the transport refused it (%s)", pf_errname(err));
    cannot_issue(s, lo, why);
  }
}

/* Issues lo, a collective of one_allreduce's kind, from its record: 0
 * when its step failed (its buffers may have no memory: the general path
 * drains it). */
static int start_allreduce(pf_service *s, loop_op *lo, const one_allreduce *ar) {
  pf_step *step = lo->r->step;
  void *in, *out;
  pf_collective_call c;
  if (pf_step_failed(step) || (in = step_data(step, ar->in, 0)) == NULL ||
      (out = step_data(step, ar->out, 1)) == NULL)
    return 0;
  lo->started = stamp(s);
  posted_add(lo);
  c = (pf_collective_call){.kind = PF_ALLREDUCE, .dtype = (pf_dtype)ar->dtype,
                           .reduce_op = (pf_reduce_op)ar->reduce_op, .count = ar->count,
                           .send = in, .recv = out};
  issue(s, lo, &c, (uint64_t)ar->count * pf_dtype_size((pf_dtype)ar->dtype));
  return 1;
}

static void start_collective(pf_service *s, loop_op *lo) {
  PF_PROBE("service.start_collective");
  const one_allreduce *ar = &lo->r->e->allreduces[lo->x->at];
  if (ar->count != 0 && start_allreduce(s, lo, ar)) return;
  const pf_plan *p = pf_step_plan(lo->r->step);
  const pf_plan_op *op = &p->ops[lo->op];
  const pf_spec *ins = p->buffers[op->inputs[0]].spec, *outs = p->buffers[op->outputs[0]].spec;
  pf_storage *in = NULL, *out = NULL;
  pf_collective_call c = {.kind = (pf_collective_kind)op->collective, .dtype = ins->dtype,
                          .reduce_op = (pf_reduce_op)op->reduce_op, .root = op->root};
  int n = op->num_shards, ok = 1;
  size_t in_bytes = pf_spec_nbytes(ins), out_bytes = pf_spec_nbytes(outs);
  lo->started = stamp(s); /* counters' wait and the timeline */
  posted_add(lo);
  /* The same on every rank of the communicator (shards have one size):
   * each fails its step, none waits. */
  if (in_bytes > INT32_MAX || (size_t)n * in_bytes > INT32_MAX) {
    loop_op_finish(lo, PF_ERANGE, "collective: shard larger than 2 GiB");
    return;
  }
  /* A failed step allocates nothing more: what has no memory comes from
   * the reserve (drained_call). */
  if (!pf_step_failed(lo->r->step) || (pf_step_buffer_if_any(lo->r->step, op->inputs[0]) &&
                                       pf_step_buffer_if_any(lo->r->step, op->outputs[0]))) {
    in = pf_step_buffer(lo->r->step, op->inputs[0]);
    /* Every collective writes all of its output. */
    out = in != NULL ? pf_step_buffer_whole(lo->r->step, op->outputs[0]) : NULL;
  }
  if (in == NULL || out == NULL) {
    drained_call(s, lo, op, &c);
  } else {
    switch (op->collective) {
      case PF_ALLREDUCE:
        c.count = (size_t)pf_spec_numel(ins);
        c.recv = out->data;
        if (op->n_in == 1) {
          c.send = in->data;
          break;
        }
        /* Several shards here: reduce them in the rank, then across ranks
         * (in place). */
        memcpy(out->data, in->data, out_bytes);
        for (uint32_t k = 1; k < op->n_in; k++) {
          pf_storage *more = pf_step_buffer(lo->r->step, op->inputs[k]);
          if (more == NULL) break; /* the step failed, saying why */
          pf_reduce_into(out->data, more->data, (size_t)pf_spec_numel(ins), ins->dtype,
                         op->reduce_op);
        }
        c.send = NULL;
        break;
      case PF_ALLGATHER:
        c.send = in->data;
        c.bytes = in_bytes;
        if (pf_leading_axis(ins, op->axis))
          c.recv = out->data;
        else if ((c.recv = lo->stage_out = malloc(out_bytes ? out_bytes : 1)) == NULL)
          ok = 0;
        break;
      case PF_REDUCE_SCATTER:
        c.send = in->data;
        c.recv = out->data;
        c.count = (size_t)pf_spec_numel(outs);
        if (!pf_leading_axis(ins, op->axis)) ok = stage_split(lo, in, ins, op->axis, n, &c);
        break;
      case PF_BROADCAST:
        if (op->shard == op->root) {
          /* `axis` picks the root shard among this rank's inputs. */
          pf_storage *src = pf_step_buffer(lo->r->step, op->inputs[op->axis]);
          if (src != NULL) memcpy(out->data, src->data, out_bytes);
        }
        c.recv = out->data;
        c.bytes = out_bytes;
        break;
      case PF_ALL_TO_ALL:
        /* Chunks lie contiguous in the shards when every axis before the
         * one they are cut along (or laid along) has one element: no
         * staging then (a 1 MiB all-to-all spent most of its time copying
         * into and out of fresh staging memory). */
        c.send = in->data;
        c.recv = out->data;
        c.bytes = in_bytes / (size_t)n;
        if (!pf_leading_axis(ins, op->axis)) ok = stage_split(lo, in, ins, op->axis, n, &c);
        if (ok && !pf_leading_axis(outs, op->in_axis) &&
            (c.recv = lo->stage_out = malloc(out_bytes ? out_bytes : 1)) == NULL)
          ok = 0;
        break;
      default:
        cannot_issue(s, lo, "unknown collective");
    }
    if (!ok) {
      /* Staging memory could not be had: fail the step, still meet the
       * peers in the collective. */
      pf_executor_step_fail(lo->r->step, PF_ENOMEM,
                            "rank %d: step %llu: out of memory: %zu bytes staging collective \"%s\"",
                            s->cfg.rank, (unsigned long long)lo->r->seq,
                            PF_MAXOF(in_bytes, out_bytes), op->name);
      drained_call(s, lo, op, &c);
    }
  }
  issue(s, lo, &c, (uint64_t)in_bytes * op->n_in);
}

/* Issues the collectives at the head of q whose inputs are ready: every
 * rank issues a communicator's collectives in the same order. A step
 * leaves the queue with its last collective there issued (it may end, and
 * be freed, before the next pump). Only a collective's readiness moves a
 * queue (its head advances here, nowhere else), so a collective that
 * becomes ready pumps its own communicator's queue: not every queue, in a
 * plan with a communicator per mesh axis. */
static void pump(pf_service *s, comm_queue *q) {
  while (q->head && q->head->r->ready[q->head->next]) {
    queued_run *qr = q->head;
    run *r = qr->r;
    uint32_t k = qr->next;
    loop_op *lo = loop_op_new(s);
    if (lo == NULL) pf_transport_abort(s->cfg.transport, 1, "out of memory issuing a collective");
    lo->r = r;
    lo->op = r->e->collectives[k];
    lo->x = &r->e->xfers[lo->op];
    if ((qr->next = next_on(r, q, k + 1)) == r->e->n_collectives) {
      if ((q->head = qr->after) == NULL) q->tail = NULL;
      free(qr);
    }
    start_collective(s, lo);
  }
}

/* Whether a receive of `bytes` may be posted now (PF_RECV_AHEAD_BYTES,
 * PF_RECV_AHEAD_COUNT; with none posted, any one may). */
static int may_post(const pf_service *s, size_t bytes) {
  return s->recvs_posted == 0 ||
         (s->recv_bytes + bytes <= PF_RECV_AHEAD_BYTES && s->recvs_posted < PF_RECV_AHEAD_COUNT);
}

/* Starts loop op i of run r: a collective when its turn comes on its
 * communicator, a transfer now. */
static void start_loop_op(pf_service *s, run *r, uint32_t i) {
  loop_op *lo;
  r->ops_in_flight++;
  if (r->e->xfers[i].kind == PF_OP_COLLECTIVE) {
    uint32_t k = r->e->xfers[i].at;
    if (k != UINT32_MAX) {
      r->ready[k] = 1;
      pump(s, r->e->queues[k]);
    }
    return;
  }
  if ((lo = loop_op_new(s)) == NULL)
    pf_transport_abort(s->cfg.transport, 1, "out of memory starting a transfer");
  lo->r = r;
  lo->op = i;
  lo->x = &r->e->xfers[i];
  start_transfer(s, lo);
}

void pf_service_loop_op(pf_service *s, pf_step *step, uint32_t i) {
  start_loop_op(s, pf_step_arg(step), i);
}

static int is_recv(const run *r, uint32_t i) { return r->e->xfers[i].kind == PF_OP_RECV; }

/* Moves r's place in its start ops to the next receive (the others went
 * at the start); r leaves the queue, the head, when it has none left. */
static void next_deferred(pf_service *s, run *r) {
  while (r->later_next < r->later_n && !is_recv(r, r->later[r->later_next])) r->later_next++;
  if (r->later_next < r->later_n) return;
  if ((s->defer_head = r->defer_next) == NULL) s->defer_tail = NULL;
}

void pf_service_start_ops(pf_service *s, pf_step *step, const uint32_t *ops, uint32_t n) {
  run *r = pf_step_arg(step);
  uint32_t k = 0, eager = 0;
  /* Receives are posted in the order they come (steps in the order they
   * start, each in plan order): one held back holds back those after it,
   * so that the bytes bound never keeps the earliest waiting. */
  for (; k < n; k++) {
    uint32_t i = ops[k];
    if (is_recv(r, i) && (s->defer_head != NULL || eager++ >= PF_EAGER_RECVS ||
                          !may_post(s, r->e->boxes[r->e->xfers[i].at].nbytes)))
      break;
    start_loop_op(s, r, i);
  }
  if (k == n) return;
  /* The rest: all but receives go now; the receives are counted and wait. */
  for (uint32_t j = k; j < n; j++)
    if (is_recv(r, ops[j]))
      r->deferred++;
    else
      start_loop_op(s, r, ops[j]);
  r->later = ops;
  r->later_next = k;
  r->later_n = n;
  r->defer_next = NULL;
  if (s->defer_tail)
    s->defer_tail->defer_next = r;
  else
    s->defer_head = r;
  s->defer_tail = r;
}

int pf_service_post_deferred(pf_service *s, int max) {
  int n = 0;
  run *r;
  while (n < max && (r = s->defer_head) != NULL &&
         may_post(s, r->e->boxes[r->e->xfers[r->later[r->later_next]].at].nbytes)) {
    uint32_t i = r->later[r->later_next++];
    r->deferred--;
    next_deferred(s, r);
    start_loop_op(s, r, i);
    n++;
  }
  return n;
}

/* ---- buffers ------------------------------------------------------------------- */

static void handle_fetch(pf_service *s, pf_msg *m) {
  pf_msg *rep = pf_msg_new(PF_MSG_FETCH_REPLY);
  int rc;
  if (rep == NULL) return;
  rep->request = m->request;
  rep->shards = pf_mallocn(m->n_shards, sizeof *rep->shards);
  rep->data = pf_calloc(m->n_shards, sizeof *rep->data);
  if (rep->shards == NULL || rep->data == NULL) {
    rep->status = PF_ENOMEM;
    rep->message = pf_strdup("fetch: out of memory");
    reply(s, rep);
    return;
  }
  rep->n_shards = m->n_shards;
  for (uint32_t k = 0; k < m->n_shards; k++) {
    pf_storage *st = pf_store_get(s->store, m->buffer, m->shards[k]);
    rep->shards[k] = m->shards[k];
    if (st == NULL) {
      char why[128];
      snprintf(why, sizeof why, "rank %d: buffer %llu shard %d is not here", s->cfg.rank,
               (unsigned long long)m->buffer, (int)m->shards[k]);
      rep->status = PF_ESTALE;
      free(rep->message);
      rep->message = pf_strdup(why);
      continue;
    }
    /* A GPU's value leaves through the host: a copy, the stored one stays. */
    if ((rc = pf_executor_to_host(s->cfg.executor, st, &rep->data[k])) != 0) {
      char why[128];
      snprintf(why, sizeof why, "rank %d: buffer %llu shard %d: copying it out of device %d: %s",
               s->cfg.rank, (unsigned long long)m->buffer, (int)m->shards[k], st->device,
               pf_strerror(rc));
      rep->status = rc;
      free(rep->message);
      rep->message = pf_strdup(why);
    }
  }
  reply(s, rep);
}

/* ---- waiting for buffers in the making ------------------------------------------- */

/* A run fed an output of an execution still in flight (pf_future_output
 * before completion), a fetch of one, or a release of one, arrives while
 * the run making it is in flight here: it waits until that run stores its
 * outputs (or fails), rather than finding nothing. Everything such a
 * message would touch comes after it: later runs, fetches and releases wait
 * behind it, in arrival order, so that a release never overtakes a run that
 * reads the buffer, and runs start in the order the controller sent them
 * (the gang order of their collectives). The runs they wait for are in
 * flight, so the wait ends; the watchdog's dump shows it. */
/* 1 if m names a shard that a run in flight here has yet to store. */
static int waits_for_buffers(pf_service *s, const pf_msg *m) {
  switch (m->kind) {
    case PF_MSG_RUN: {
      exe *e = exe_find(s, m->executable);
      const pf_plan *p;
      const uint32_t *fed;
      uint32_t n_fed;
      if (e == NULL) return 0; /* handle_run says what is wrong */
      p = pf_loaded_plan(e->loaded);
      if (m->n_inputs != (uint32_t)p->num_inputs) return 0;
      fed = pf_loaded_inputs(e->loaded, &n_fed);
      for (uint32_t k = 0; k < n_fed; k++) {
        const pf_plan_buffer *pb = &p->buffers[fed[k]];
        if (pf_store_expected(s->store, m->inputs[pb->input], pb->shard)) return 1;
      }
      return 0;
    }
    case PF_MSG_FETCH:
      for (uint32_t k = 0; k < m->n_shards; k++)
        if (pf_store_expected(s->store, m->buffer, m->shards[k])) return 1;
      return 0;
    case PF_MSG_RELEASE:
      for (uint32_t k = 0; k < m->n_ids; k++)
        if (pf_store_expected(s->store, m->ids[k], -1)) return 1;
      return 0;
    default:
      return 0;
  }
}

static void handle_now(pf_service *s, pf_msg *m);

/* 1 if m waits (the service keeps it); 0 if it is to be handled now. */
static int park(pf_service *s, pf_msg *m) {
  parked *w;
  if (m->kind != PF_MSG_RUN && m->kind != PF_MSG_FETCH && m->kind != PF_MSG_RELEASE) return 0;
  if (s->parked == NULL && !waits_for_buffers(s, m)) return 0;
  /* Out of memory it goes now: a run or fetch then fails (the buffer is
   * not there), a release leaves the buffer behind; none hangs. */
  if ((w = malloc(sizeof *w)) == NULL) return 0;
  w->m = m;
  w->since = pf_clock_now(s->cfg.clock);
  w->next = NULL;
  if (s->parked_tail)
    s->parked_tail->next = w;
  else
    s->parked = w;
  s->parked_tail = w;
  s->n_parked++;
  return 1;
}

static void unpark(pf_service *s) {
  while (s->parked != NULL && !waits_for_buffers(s, s->parked->m)) {
    parked *w = s->parked;
    if ((s->parked = w->next) == NULL) s->parked_tail = NULL;
    s->n_parked--;
    handle_now(s, w->m);
    free(w);
  }
}

void pf_service_handle(pf_service *s, pf_msg *m) {
  /* Releases that came with a run are a RELEASE just before it. */
  if (m->kind == PF_MSG_RUN && m->n_ids > 0) {
    pf_msg *rel = pf_msg_new(PF_MSG_RELEASE);
    if (rel != NULL) { /* else the buffers stay until the job ends; nothing breaks */
      rel->ids = m->ids;
      rel->n_ids = m->n_ids;
      m->ids = NULL;
      m->n_ids = 0;
      pf_service_handle(s, rel);
    }
  }
  if (!park(s, m)) handle_now(s, m);
}

static void handle_now(pf_service *s, pf_msg *m) {
  switch (m->kind) {
    case PF_MSG_LOAD:
      handle_load(s, m);
      break;
    case PF_MSG_RUN:
      handle_run(s, m);
      return; /* the run keeps the message */
    case PF_MSG_FETCH:
      handle_fetch(s, m);
      break;
    case PF_MSG_PUT:
      if (m->n_shards == 1 && m->data && m->data[0]) {
        pf_store_put(s->store, m->buffer, m->shards[0], m->data[0]);
        m->data[0] = NULL;
      }
      break;
    case PF_MSG_RELEASE:
      for (uint32_t k = 0; k < m->n_ids; k++) pf_store_drop(s->store, m->ids[k]);
      break;
    case PF_MSG_CONNECT:
      handle_connect(s, m);
      break;
    case PF_MSG_UNLOAD:
      handle_unload(s, m->executable);
      break;
    case PF_MSG_DUMP:
      pf_service_dump(s, stderr);
      break;
    default:
      break;
  }
  pf_msg_free(m);
}

void pf_service_counters(const pf_service *s, pf_counters *c) {
  c->steps = s->steps;
  c->steps_failed = s->steps_failed;
  c->transfer_wait_ns = s->transfer_wait_ns;
  c->collectives = s->collectives;
  c->collective_bytes = s->collective_bytes;
  c->collective_wait_ns = s->collective_wait_ns;
  c->buffers_held = pf_store_count(s->store);
  c->buffer_bytes_held = pf_store_bytes(s->store);
  for (int p = 0; p < s->size && p < c->num_peers; p++) {
    c->peers[p].data_bytes_sent = s->peers[p].data_bytes_sent;
    c->peers[p].data_bytes_received = s->peers[p].data_bytes_received;
    c->peers[p].data_messages_sent = s->peers[p].data_messages_sent;
    c->peers[p].data_messages_received = s->peers[p].data_messages_received;
  }
  pf_executor_counters(s->cfg.executor, c);
}

void pf_service_dump(const pf_service *s, FILE *f) {
  fprintf(f, "pathflow watchdog: rank %d: %d steps in flight, %zu buffers (%zu bytes) held\n",
          s->cfg.rank, s->n_runs, pf_store_count(s->store), pf_store_bytes(s->store));
  for (const run *r = s->runs; r; r = r->next) {
    fprintf(f, " step %llu of executable %llu: %d transfers/collectives posted"
            " (%u receives not yet posted)\n",
            (unsigned long long)r->seq, (unsigned long long)r->e->id,
            r->ops_in_flight, r->deferred);
    pf_step_dump(r->step, f);
    for (const loop_op *lo = r->posted; lo; lo = lo->posted_next) {
      const pf_plan_op *op = &pf_step_plan(r->step)->ops[lo->op];
      if (op->kind == PF_OP_COLLECTIVE)
        fprintf(f, "  collective \"%s\" (%s) issued, waiting for the other ranks of its "
                "communicator\n",
                op->name, pf_collective_name((pf_collective_kind)op->collective));
      else
        fprintf(f, "  %s for \"%s\" %s rank %d (tag %d) waiting to complete\n",
                op->kind == PF_OP_SEND ? "send" : "receive", op->name,
                op->kind == PF_OP_SEND ? "to" : "from", (int)op->peer,
                tag_of(s, r->slot, op->tag));
    }
  }
  for (const comm_queue *q = s->queues; q; q = q->next)
    for (const queued_run *qr = q->head; qr; qr = qr->after)
      for (uint32_t k = qr->next; k < qr->r->e->n_collectives; k = next_on(qr->r, q, k + 1)) {
        const pf_plan_op *op = &pf_step_plan(qr->r->step)->ops[qr->r->e->collectives[k]];
        fprintf(f, "  collective \"%s\" of step %llu: %s\n", op->name,
                (unsigned long long)qr->r->seq,
                qr->r->ready[k] ? "ready, waiting for earlier collectives on its communicator"
                                : "waiting for its input");
      }
  for (const parked *w = s->parked; w; w = w->next) {
    const pf_msg *m = w->m;
    char what[64];
    if (m->kind == PF_MSG_RUN)
      snprintf(what, sizeof what, "run of step %llu", (unsigned long long)m->step);
    else if (m->kind == PF_MSG_FETCH)
      snprintf(what, sizeof what, "fetch of buffer %llu", (unsigned long long)m->buffer);
    else
      snprintf(what, sizeof what, "release of %u buffers", m->n_ids);
    fprintf(f, "  %s waits (%.3f s) for buffers that steps in flight here are making%s\n", what,
            (double)(pf_clock_now(s->cfg.clock) - w->since) * 1e-9,
            w == s->parked ? "" : ", or behind one that does");
  }
  if (s->cfg.transport)
    fprintf(f, "  %d transport operations pending\n",
            s->cfg.transport->ops->pending(s->cfg.transport));
  fflush(f);
}
