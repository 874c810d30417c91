/* The loopback transport (see loopback.h). */
#include "transport/loopback.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/box.h"
#include "base/reduce.h"
#include "base/util.h"
#include "pathflow/error.h"

/* How a box of a buffer is addressed: a run of bytes, or a sub-array. */
typedef struct lb_box {
  int contiguous;
  size_t displacement; /* contiguous: where the run starts */
  pf_spec buffer;
  int64_t offset[PF_MAX_RANK], extent[PF_MAX_RANK];
} lb_box;

/* A completion waiting for its rank's progress. `sent` callbacks of
 * control sends get the copy of their argument kept in arg_copy. */
typedef struct done_item {
  pf_transport_cb cb;
  void *arg;
  pf_transport_sent_fn sent; /* instead of cb, for a control send */
  int status;
  struct done_item *next;
  _Alignas(max_align_t) unsigned char arg_copy[];
} done_item;

/* A posted send or receive not matched yet. */
typedef struct p2p {
  int src, dst, tag;
  void *data; /* const for a send */
  const pf_xfer_box *box;
  pf_transport_cb cb;
  void *arg;
  struct p2p *next;
} p2p;

typedef struct ctrl_msg {
  int peer;
  uint8_t *buf;
  size_t len;
  struct ctrl_msg *next;
} ctrl_msg;

/* One collective in progress on a communicator: the calls of the members
 * that issued it so far. */
typedef struct lb_coll {
  uint64_t seq;
  int joined;
  pf_collective_call *calls; /* per member */
  pf_transport_cb *cbs;
  void **args;
  struct lb_coll *next;
} lb_coll;

struct pf_transport_comm {
  int32_t *ranks;
  int n;
  uint64_t *issued; /* per member: collectives issued so far */
  lb_coll *open;
  struct pf_transport_comm *next;
};

typedef struct endpoint {
  pf_transport iface; /* first */
  pf_loopback *lb;
  done_item *done_head, *done_tail;
  ctrl_msg *inbox_head, *inbox_tail;
  int pending; /* operations posted whose callback has not run */
  void (*wake)(void *arg);
  void *wake_arg;
  int64_t fault_at, ctrl_sends; /* PATHFLOW_FAULT_CTRL_SEND */
} endpoint;

struct pf_loopback {
  pthread_mutex_t lock;
  int n;
  endpoint *ep;
  p2p **sends; /* per destination, in posting order */
  p2p **recvs; /* per receiver, in posting order */
  struct pf_transport_comm *comms;
};

/* ---- queues (lock held) ------------------------------------------------------ */

static void wake(endpoint *e) {
  if (e->wake != NULL) e->wake(e->wake_arg);
}

/* Queues d for e's progress and wakes e's loop. */
static void queue_done(endpoint *e, done_item *d) {
  d->next = NULL;
  if (e->done_tail)
    e->done_tail->next = d;
  else
    e->done_head = d;
  e->done_tail = d;
  wake(e);
}

static int push_done(endpoint *e, pf_transport_cb cb, void *arg, int status) {
  done_item *d = malloc(sizeof *d);
  if (d == NULL) return PF_ENOMEM;
  d->cb = cb;
  d->arg = arg;
  d->sent = NULL;
  d->status = status;
  queue_done(e, d);
  return 0;
}

static void append(p2p **list, p2p *x) {
  /* Matching walks the list anyway (a test transport: thousands of posted
   * receives cost O(n) each, as MPI's own queues do). */
  while (*list) list = &(*list)->next;
  x->next = NULL;
  *list = x;
}

/* The first record of list from src with tag (and for dst), unlinked. */
static p2p *take_match(p2p **list, int src, int dst, int tag) {
  for (; *list; list = &(*list)->next)
    if ((*list)->src == src && (*list)->dst == dst && (*list)->tag == tag) {
      p2p *x = *list;
      *list = x->next;
      return x;
    }
  return NULL;
}

/* ---- data ------------------------------------------------------------------------ */

static int t_box_prepare(pf_transport *t, const pf_spec *buffer, const int64_t *offset,
                         const int64_t *extent, pf_xfer_box *out) {
  lb_box *b = calloc(1, sizeof *b);
  (void)t;
  out->impl = b;
  if (b == NULL) return PF_ENOMEM;
  b->buffer = *buffer;
  for (int k = 0; k < buffer->rank; k++) {
    b->offset[k] = offset[k];
    b->extent[k] = extent[k];
  }
  b->contiguous = pf_block_run(buffer, offset, extent, &b->displacement, &out->nbytes);
  return 0;
}

static void t_box_release(pf_transport *t, pf_xfer_box *x) {
  (void)t;
  free(x->impl);
  x->impl = NULL;
}

/* The box's bytes into (pack) or out of (unpack) a contiguous run. */
static void box_move(const pf_xfer_box *x, void *data, void *run, int pack) {
  const lb_box *b = x->impl;
  pf_spec block = b->buffer;
  int64_t zero[PF_MAX_RANK] = {0};
  if (b->contiguous) {
    if (pack)
      memcpy(run, (char *)data + b->displacement, x->nbytes);
    else
      memcpy((char *)data + b->displacement, run, x->nbytes);
    return;
  }
  for (int k = 0; k < block.rank; k++) block.dims[k] = b->extent[k];
  if (pack)
    pf_block_copy(run, &block, zero, data, &b->buffer, b->offset, b->extent);
  else
    pf_block_copy(data, &b->buffer, b->offset, run, &block, zero, b->extent);
}

/* Copies a matched send into its receive; both complete. */
static void deliver(pf_loopback *lb, p2p *s, p2p *r) {
  int status = 0;
  if (s->box->nbytes != r->box->nbytes) {
    status = PF_EMPI; /* as MPI reports a truncated receive */
  } else {
    void *run = malloc(s->box->nbytes ? s->box->nbytes : 1);
    if (run == NULL) {
      status = PF_EMPI;
    } else {
      box_move(s->box, s->data, run, 1);
      box_move(r->box, r->data, run, 0);
      free(run);
    }
  }
  /* Out of memory for a completion record: nothing can report it. */
  if (push_done(&lb->ep[s->src], s->cb, s->arg, status) != 0 ||
      push_done(&lb->ep[r->dst], r->cb, r->arg, status) != 0)
    pf_transport_abort(&lb->ep[r->dst].iface, 1, "loopback: out of memory completing a transfer");
  free(s);
  free(r);
}

static int post(pf_transport *t, void *data, const pf_xfer_box *b, int peer, int tag,
                pf_transport_cb cb, void *arg, int is_send) {
  endpoint *e = (endpoint *)t;
  pf_loopback *lb = e->lb;
  p2p *x, *match;
  if (peer < 0 || peer >= lb->n) return PF_EINVAL;
  if ((x = malloc(sizeof *x)) == NULL) return PF_ENOMEM;
  x->src = is_send ? t->rank : peer;
  x->dst = is_send ? peer : t->rank;
  x->tag = tag;
  x->data = data;
  x->box = b;
  x->cb = cb;
  x->arg = arg;
  pthread_mutex_lock(&lb->lock);
  e->pending++;
  if (is_send) {
    match = take_match(&lb->recvs[x->dst], x->src, x->dst, tag);
    if (match)
      deliver(lb, x, match);
    else
      append(&lb->sends[x->dst], x);
  } else {
    match = take_match(&lb->sends[x->dst], x->src, x->dst, tag);
    if (match)
      deliver(lb, match, x);
    else
      append(&lb->recvs[x->dst], x);
  }
  pthread_mutex_unlock(&lb->lock);
  return 0;
}

static int t_send(pf_transport *t, const void *data, const pf_xfer_box *b, int peer, int tag,
                  pf_transport_cb cb, void *arg) {
  return post(t, (void *)data, b, peer, tag, cb, arg, 1);
}

static int t_recv(pf_transport *t, void *data, const pf_xfer_box *b, int peer, int tag,
                  pf_transport_cb cb, void *arg) {
  return post(t, data, b, peer, tag, cb, arg, 0);
}

/* ---- collectives ------------------------------------------------------------------ */

static int t_comm_for(pf_transport *t, const int32_t *ranks, int n, uint32_t group,
                      pf_transport_comm **out) {
  pf_loopback *lb = ((endpoint *)t)->lb;
  (void)group; /* ranks share memory: the list itself finds the communicator */
  pf_transport_comm *c;
  int rc = 0;
  pthread_mutex_lock(&lb->lock);
  for (c = lb->comms; c; c = c->next)
    if (c->n == n && memcmp(c->ranks, ranks, (size_t)n * sizeof *ranks) == 0) break;
  if (c == NULL) {
    c = calloc(1, sizeof *c);
    if (c == NULL || (c->ranks = pf_mallocn((size_t)n, sizeof *ranks)) == NULL ||
        (c->issued = pf_calloc((size_t)n, sizeof *c->issued)) == NULL) {
      if (c) free(c->ranks);
      free(c);
      c = NULL;
      rc = PF_ENOMEM;
    } else {
      memcpy(c->ranks, ranks, (size_t)n * sizeof *ranks);
      c->n = n;
      c->next = lb->comms;
      lb->comms = c;
    }
  }
  pthread_mutex_unlock(&lb->lock);
  *out = c;
  return rc;
}

static const void *input_of(const pf_collective_call *c) { return c->send ? c->send : c->recv; }

/* Every member has issued it: computes the results into every member's
 * receive buffer. 0, or PF_EMPI when the members disagree (kinds, sizes,
 * dtypes, roots), as MPI would fail them; PF_ENOMEM. */
static int compute(const lb_coll *x, int n) {
  const pf_collective_call *c0 = &x->calls[0];
  size_t es = pf_dtype_size(c0->dtype), count = c0->count, bytes = c0->bytes;
  void *tmp = NULL;
  for (int i = 1; i < n; i++) {
    const pf_collective_call *c = &x->calls[i];
    if (c->kind != c0->kind || c->count != count || c->bytes != bytes || c->dtype != c0->dtype ||
        c->reduce_op != c0->reduce_op || c->root != c0->root)
      return PF_EMPI;
  }
  switch (c0->kind) {
    case PF_ALLREDUCE:
    case PF_REDUCE_SCATTER: {
      size_t total = c0->kind == PF_ALLREDUCE ? count : count * (size_t)n;
      size_t total_bytes = total * es;
      if ((tmp = malloc(total_bytes > 0 ? total_bytes : 1)) == NULL) return PF_ENOMEM;
      memcpy(tmp, input_of(&x->calls[0]), total * es);
      for (int i = 1; i < n; i++)
        pf_reduce_into(tmp, input_of(&x->calls[i]), total, c0->dtype, c0->reduce_op);
      for (int i = 0; i < n; i++)
        memcpy(x->calls[i].recv,
               (char *)tmp + (c0->kind == PF_ALLREDUCE ? 0 : (size_t)i * count * es), count * es);
      break;
    }
    case PF_ALLGATHER:
      for (int i = 0; i < n; i++)
        for (int k = 0; k < n; k++)
          memcpy((char *)x->calls[i].recv + (size_t)k * bytes, x->calls[k].send, bytes);
      break;
    case PF_BROADCAST:
      if (c0->root < 0 || c0->root >= n) return PF_EMPI;
      for (int i = 0; i < n; i++)
        if (i != c0->root) memcpy(x->calls[i].recv, x->calls[c0->root].recv, bytes);
      break;
    case PF_ALL_TO_ALL:
      for (int i = 0; i < n; i++)
        for (int k = 0; k < n; k++)
          memcpy((char *)x->calls[i].recv + (size_t)k * bytes,
                 (const char *)x->calls[k].send + (size_t)i * bytes, bytes);
      break;
    default:
      return PF_EMPI;
  }
  free(tmp);
  return 0;
}

static void coll_free(lb_coll *x) {
  free(x->calls);
  free(x->cbs);
  free(x->args);
  free(x);
}

static int t_collective(pf_transport *t, pf_transport_comm *c, const pf_collective_call *call,
                        pf_transport_cb cb, void *arg) {
  endpoint *e = (endpoint *)t;
  pf_loopback *lb = e->lb;
  lb_coll **px, *x;
  int me = 0, status, rc = 0;
  uint64_t seq;
  while (me < c->n && c->ranks[me] != t->rank) me++;
  if (me == c->n) return PF_EINVAL; /* not a member */
  pthread_mutex_lock(&lb->lock);
  seq = c->issued[me];
  for (px = &c->open; *px && (*px)->seq != seq; px = &(*px)->next) {
  }
  if ((x = *px) == NULL) {
    x = calloc(1, sizeof *x);
    if (x == NULL || (x->calls = pf_calloc((size_t)c->n, sizeof *x->calls)) == NULL ||
        (x->cbs = pf_calloc((size_t)c->n, sizeof *x->cbs)) == NULL ||
        (x->args = pf_calloc((size_t)c->n, sizeof *x->args)) == NULL) {
      if (x) coll_free(x);
      pthread_mutex_unlock(&lb->lock);
      return PF_ENOMEM;
    }
    x->seq = seq;
    *px = x;
  }
  c->issued[me]++;
  e->pending++;
  x->calls[me] = *call;
  x->cbs[me] = cb;
  x->args[me] = arg;
  if (++x->joined == c->n) {
    *px = x->next;
    status = compute(x, c->n);
    for (int i = 0; i < c->n && rc == 0; i++)
      rc = push_done(&lb->ep[c->ranks[i]], x->cbs[i], x->args[i], status);
    coll_free(x);
  }
  pthread_mutex_unlock(&lb->lock);
  if (rc != 0) pf_transport_abort(t, 1, "loopback: out of memory completing a collective");
  return 0;
}

/* ---- progress and the control channel ------------------------------------------------ */

static int t_progress(pf_transport *t) {
  endpoint *e = (endpoint *)t;
  done_item *d;
  int n = 0;
  pthread_mutex_lock(&e->lb->lock);
  d = e->done_head;
  e->done_head = e->done_tail = NULL;
  pthread_mutex_unlock(&e->lb->lock);
  while (d != NULL) {
    done_item *next = d->next;
    if (d->sent)
      d->sent(d->arg_copy, d->status);
    else
      d->cb(d->arg, d->status);
    free(d);
    n++;
    d = next;
  }
  if (n > 0) {
    pthread_mutex_lock(&e->lb->lock);
    e->pending -= n;
    pthread_mutex_unlock(&e->lb->lock);
  }
  return n;
}

static int t_pending(const pf_transport *t) {
  endpoint *e = (endpoint *)t;
  int n;
  pthread_mutex_lock(&e->lb->lock);
  n = e->pending;
  pthread_mutex_unlock(&e->lb->lock);
  return n;
}

static int t_ctrl_send(pf_transport *t, int peer, uint8_t *buf, size_t len,
                       pf_transport_sent_fn sent, const void *arg, size_t arg_size) {
  endpoint *e = (endpoint *)t;
  pf_loopback *lb = e->lb;
  ctrl_msg *m = malloc(sizeof *m);
  done_item *d = sent ? malloc(sizeof *d + arg_size) : NULL;
  int fail;
  if (peer < 0 || peer >= lb->n || m == NULL || (sent != NULL && d == NULL)) {
    free(buf);
    free(m);
    free(d);
    return peer < 0 || peer >= lb->n ? PF_EINVAL : PF_ENOMEM;
  }
  m->peer = t->rank;
  m->buf = buf;
  m->len = len;
  m->next = NULL;
  pthread_mutex_lock(&lb->lock);
  fail = sent != NULL && e->fault_at > 0 && ++e->ctrl_sends == e->fault_at;
  if (fail) {
    free(buf);
    free(m);
  } else {
    endpoint *to = &lb->ep[peer];
    if (to->inbox_tail)
      to->inbox_tail->next = m;
    else
      to->inbox_head = m;
    to->inbox_tail = m;
    wake(to);
  }
  if (d != NULL) {
    /* The completion runs sent(copy of arg) on this rank's progress. */
    if (arg_size > 0) memcpy(d->arg_copy, arg, arg_size);
    d->cb = NULL;
    d->arg = NULL;
    d->sent = sent;
    d->status = fail ? PF_EMPI : 0;
    e->pending++;
    queue_done(e, d);
  }
  pthread_mutex_unlock(&lb->lock);
  return 0;
}

static int t_ctrl_recv(pf_transport *t, int *peer, uint8_t **buf, size_t *len, pf_diag *dg) {
  endpoint *e = (endpoint *)t;
  ctrl_msg *m;
  (void)dg;
  *buf = NULL;
  pthread_mutex_lock(&e->lb->lock);
  m = e->inbox_head;
  if (m != NULL) {
    e->inbox_head = m->next;
    if (e->inbox_head == NULL) e->inbox_tail = NULL;
  }
  pthread_mutex_unlock(&e->lb->lock);
  if (m == NULL) return 0;
  *peer = m->peer;
  *buf = m->buf;
  *len = m->len;
  free(m);
  return 0;
}

static void t_set_wake(pf_transport *t, void (*fn)(void *), void *arg) {
  endpoint *e = (endpoint *)t;
  pthread_mutex_lock(&e->lb->lock);
  e->wake = fn;
  e->wake_arg = arg;
  /* What came before the hook was set is waiting: look at it now. */
  if (fn != NULL && (e->done_head != NULL || e->inbox_head != NULL)) fn(arg);
  pthread_mutex_unlock(&e->lb->lock);
}

static void t_fault_ctrl_send(pf_transport *t, int64_t n) {
  endpoint *e = (endpoint *)t;
  pthread_mutex_lock(&e->lb->lock);
  e->fault_at = n;
  e->ctrl_sends = 0;
  pthread_mutex_unlock(&e->lb->lock);
}

__attribute__((noreturn)) static void t_abort(pf_transport *t, int code, const char *why) {
  (void)code;
  fprintf(stderr, "pathflow: rank %d: %s; ending the job (every loopback rank is this process)\n",
          t->rank, why);
  fflush(stderr);
  abort();
}

static const pf_transport_ops loopback_ops = {
    .box_prepare = t_box_prepare,
    .box_release = t_box_release,
    .send = t_send,
    .recv = t_recv,
    .comm_for = t_comm_for,
    .collective = t_collective,
    .progress = t_progress,
    .pending = t_pending,
    .ctrl_send = t_ctrl_send,
    .ctrl_recv = t_ctrl_recv,
    .fault_ctrl_send = t_fault_ctrl_send,
    .set_wake = t_set_wake,
    .abort = t_abort,
};

/* ---- the fabric ---------------------------------------------------------------------- */

int pf_loopback_create(int n_ranks, pf_loopback **out) {
  pf_loopback *lb;
  *out = NULL;
  if (n_ranks < 1) return PF_EINVAL;
  if ((lb = calloc(1, sizeof *lb)) == NULL) return PF_ENOMEM;
  pthread_mutex_init(&lb->lock, NULL);
  lb->n = n_ranks;
  lb->ep = pf_calloc((size_t)n_ranks, sizeof *lb->ep);
  lb->sends = pf_calloc((size_t)n_ranks, sizeof *lb->sends);
  lb->recvs = pf_calloc((size_t)n_ranks, sizeof *lb->recvs);
  if (lb->ep == NULL || lb->sends == NULL || lb->recvs == NULL) {
    pf_loopback_destroy(lb);
    return PF_ENOMEM;
  }
  for (int r = 0; r < n_ranks; r++) {
    endpoint *e = &lb->ep[r];
    e->lb = lb;
    e->iface.ops = &loopback_ops;
    e->iface.rank = r;
    e->iface.size = n_ranks;
    e->iface.local_rank = r; /* one host */
    e->iface.local_size = n_ranks;
    e->iface.tag_ub = INT32_MAX;
    e->iface.needs_polling = 0;
    e->iface.cuda_memory = 0;
  }
  *out = lb;
  return 0;
}

pf_transport *pf_loopback_transport(pf_loopback *lb, int rank) {
  return lb != NULL && rank >= 0 && rank < lb->n ? &lb->ep[rank].iface : NULL;
}

void pf_loopback_destroy(pf_loopback *lb) {
  if (lb == NULL) return;
  for (int r = 0; lb->ep && r < lb->n; r++) {
    endpoint *e = &lb->ep[r];
    while (e->done_head) {
      done_item *d = e->done_head;
      e->done_head = d->next;
      free(d);
    }
    while (e->inbox_head) {
      ctrl_msg *m = e->inbox_head;
      e->inbox_head = m->next;
      free(m->buf);
      free(m);
    }
  }
  for (int r = 0; r < lb->n; r++) {
    while (lb->sends && lb->sends[r]) {
      p2p *x = lb->sends[r];
      lb->sends[r] = x->next;
      free(x);
    }
    while (lb->recvs && lb->recvs[r]) {
      p2p *x = lb->recvs[r];
      lb->recvs[r] = x->next;
      free(x);
    }
  }
  while (lb->comms) {
    struct pf_transport_comm *c = lb->comms;
    lb->comms = c->next;
    while (c->open) {
      lb_coll *x = c->open;
      c->open = x->next;
      coll_free(x);
    }
    free(c->ranks);
    free(c->issued);
    free(c);
  }
  pthread_mutex_destroy(&lb->lock);
  free(lb->ep);
  free(lb->sends);
  free(lb->recvs);
  free(lb);
}
