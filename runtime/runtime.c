#define _GNU_SOURCE /* pthread_setname_np, pthread_setaffinity_np */
#include "runtime/runtime.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "base/probe.h"
#include "base/util.h"
#include "base/warm.h"
#include "runtime/release_hold.h"
#include "runtime/trace.h"
#include "pathflow/error.h"

typedef enum event_kind { EV_SEND, EV_STEP_DONE, EV_LOOP_OP, EV_CALL } event_kind;

typedef struct event {
  event_kind kind;
  int rank;      /* EV_SEND */
  pf_msg *msg;   /* EV_SEND */
  void *arg;     /* EV_STEP_DONE: the service's step arg; EV_CALL: fn's */
  void (*fn)(void *arg); /* EV_CALL */
  pf_step *step; /* EV_LOOP_OP */
  uint32_t op;   /* EV_LOOP_OP */
  struct event *next;
} event;

struct pf_runtime {
  pf_runtime_config cfg;
  int rank, size;
  pf_executor *ex;
  pf_service *svc;
  uv_loop_t loop;
  uv_async_t wake;
  uv_idle_t spin;
  uv_timer_t poll, tick;
  uv_prepare_t unlock_mpi; /* around libuv's I/O poll, the MPI lock is free */
  uv_check_t relock_mpi;
  pthread_t thread;
  /* MPI_THREAD_SERIALIZED between the loop thread and the heartbeat
   * thread: the loop holds it but while libuv waits for I/O and while it
   * yields the core; the heartbeat thread only ever tries it. */
  pthread_mutex_t mpi_lock;
  pthread_t beat;
  pthread_mutex_t beat_lock;
  pthread_cond_t beat_cond;
  int beat_started, beat_stop; /* beat_stop guarded by beat_lock */
  int holds_mpi;              /* loop thread only: it holds mpi_lock */
  _Atomic uint64_t last_poll; /* when the loop last looked at MPI */
  pthread_mutex_t lock;
  pthread_cond_t cond;
  event *head, *tail; /* guarded by lock */
  atomic_int has_events; /* set by push: a spinning loop drains at once */
  /* The loop is not spinning: push must wake it (an eventfd write, and a
   * read on the loop: two system calls a message that a spinning loop,
   * which looks at has_events on every poll, does without). */
  atomic_int loop_asleep;
  atomic_int beat_due;   /* the heartbeat thread could not send: the loop sends */
  int stop_requested; /* guarded by lock */
  int shutdown_seen;  /* guarded by lock: an executor was told to stop */
  int spinning;
  unsigned polls_since_yield, yield_every;
  uint64_t last_activity, spin_ns;
  uint64_t poll_ms, poll_max_ms, idle_poll_ms;
  _Atomic uint64_t *last_seen; /* per rank: last message (heartbeat or other) */
  pf_peer_counters *ctrl; /* per rank: control messages (loop thread only) */
  /* Releases for other ranks held for their next message (send_out);
   * NULL where the loop does not spin (nothing would send them in time). */
  pf_release_hold *hold;
  int64_t rank_timeout_s, watchdog_s, hang_timeout_s;
  int watchdog_fired;
  uint64_t watchdog_fired_at;
  int trace;
  pf_trace *timeline;
  uint64_t worker_spin_ns;
  int bind_workers;
  int client_cpu;       /* pf_runtime_client_cpu */
  int loop_runs_ops;    /* the loop thread runs the devices' ops (one core) */
  int unlocked_for_op;  /* around_op let go of the MPI lock */
  _Atomic uint64_t op_since; /* loop_runs_ops: when the op it runs began, or 0 */
  int64_t fault_alloc; /* PATHFLOW_FAULT_ALLOC on this rank, or 0 */
  pf_clock clock_own;  /* when the config names no clock */
  pf_clock *clock;
  /* The data path (send_data, receive_data; loop thread only): the tags
   * of the last window, the next base tag per peer, and per peer the
   * message whose data is coming in now with those that came after it,
   * held so that each peer's messages keep their order. */
  int data_tag_lo, data_tag_n;
  uint32_t *data_tag_next;
  struct inbound *inbound;
  void *sink; /* a chunk's room for data that has nowhere to go */
  uint64_t stop_since;
  /* Memory readied for a plan the controller said is coming (EXPECT;
   * loop thread only), and since when. */
  pf_warmer *expect;
  uint64_t expect_at;
};


/* ---- the MPI lock, on the loop thread ---------------------------------------- */

static void loop_lock(pf_runtime *rt) {
  if (rt->cfg.transport == NULL || rt->holds_mpi) return;
  pthread_mutex_lock(&rt->mpi_lock);
  rt->holds_mpi = 1;
}

static void loop_unlock(pf_runtime *rt) {
  if (!rt->holds_mpi) return;
  rt->holds_mpi = 0;
  pthread_mutex_unlock(&rt->mpi_lock);
}

/* ---- events from other threads ------------------------------------------- */

static void push(pf_runtime *rt, event *e) {
  pthread_mutex_lock(&rt->lock);
  if (rt->tail)
    rt->tail->next = e;
  else
    rt->head = e;
  rt->tail = e;
  pthread_mutex_unlock(&rt->lock);
  /* Sequentially consistent, against the loop's going to sleep (on_spin):
   * either this sees loop_asleep, or the loop sees has_events. */
  atomic_store(&rt->has_events, 1);
  if (atomic_load(&rt->loop_asleep)) uv_async_send(&rt->wake);
}

static void post_done(void *arg, void *step_arg) {
  pf_runtime *rt = arg;
  event *e = calloc(1, sizeof *e);
  if (e == NULL) pf_transport_abort(rt->cfg.transport, 1, "out of memory reporting a finished step");
  e->kind = EV_STEP_DONE;
  e->arg = step_arg;
  push(rt, e);
}

/* Runs fn(fn_arg) on the loop thread (a device communicator joined on its
 * own thread, for the service). */
static void post_call(void *arg, void (*fn)(void *), void *fn_arg) {
  pf_runtime *rt = arg;
  event *e = calloc(1, sizeof *e);
  if (e == NULL) pf_transport_abort(rt->cfg.transport, 1, "out of memory posting to the loop");
  e->kind = EV_CALL;
  e->fn = fn;
  e->arg = fn_arg;
  push(rt, e);
}

/* The runtime whose loop thread this is (NULL on other threads): asked
 * for every transfer an op makes ready, cheaper than pthread_self. */
static __thread pf_runtime *tls_loop_of __attribute__((tls_model("initial-exec")));

static void post_loop_op(void *arg, pf_step *step, uint32_t op) {
  pf_runtime *rt = arg;
  event *e;
  /* Already on the loop thread (an op it ran inline made this transfer
   * ready): start it now rather than one round trip through the queue. */
  if (tls_loop_of == rt) {
    pf_service_loop_op(rt->svc, step, op);
    return;
  }
  e = calloc(1, sizeof *e);
  if (e == NULL) pf_transport_abort(rt->cfg.transport, 1, "out of memory starting a transfer");
  e->kind = EV_LOOP_OP;
  e->step = step;
  e->op = op;
  push(rt, e);
}

/* A step's start on the loop thread (the service's handle_run): its
 * receives go to the service in one call, which posts them over time.
 * Elsewhere, each through the queue. */
static void post_start_ops(void *arg, pf_step *step, const uint32_t *ops, uint32_t n) {
  pf_runtime *rt = arg;
  if (tls_loop_of == rt) {
    pf_service_start_ops(rt->svc, step, ops, n);
    return;
  }
  for (uint32_t k = 0; k < n; k++) post_loop_op(rt, step, ops[k]);
}

int pf_runtime_client_cpu(const pf_runtime *rt) { return rt->client_cpu; }

int pf_runtime_send(pf_runtime *rt, int rank, pf_msg *m) {
  event *e;
  if (m == NULL) return PF_ENOMEM;
  if (rank < 0 || rank >= rt->size) {
    pf_msg_free(m);
    return PF_EINVAL;
  }
  if ((e = calloc(1, sizeof *e)) == NULL) {
    pf_msg_free(m);
    return PF_ENOMEM;
  }
  e->kind = EV_SEND;
  e->rank = rank;
  e->msg = m;
  push(rt, e);
  return 0;
}

struct pf_runtime_reservation {
  event e; /* first: the reservation is the event */
};

pf_runtime_reservation *pf_runtime_send_reserve(void) { return calloc(1, sizeof(pf_runtime_reservation)); }

void pf_runtime_reservation_free(pf_runtime_reservation *res) { free(res); }

void pf_runtime_send_reserved(pf_runtime *rt, pf_runtime_reservation *res, int rank, pf_msg *m) {
  event *e = &res->e;
  memset(e, 0, sizeof *e);
  e->kind = EV_SEND;
  e->rank = rank;
  e->msg = m;
  push(rt, e); /* drain_events frees it as any event (res is its address) */
}

/* ---- routing on the loop thread ------------------------------------------- */

static void start_spinning(pf_runtime *rt);

/* A control message that cannot go out (it does not encode, or is larger
 * than the channel takes): whoever waits for its answer gets the error
 * instead of waiting forever. On the controller, the waiter is answered
 * here; an executor sends its answer again, bare, with the error (and ends
 * the job only if even that cannot go: the controller would wait forever).
 * Messages nobody waits on (a PUT: the step reading its buffer then fails,
 * naming it) are reported on stderr. */
static void send_failed(pf_runtime *rt, int rank, const pf_msg *m, int rc) {
  pf_msg_kind answer = PF_MSG_NONE;
  pf_msg *ans;
  char why[256];
  snprintf(why, sizeof why, "rank %d: could not send a %s message to rank %d: %s (%s)", rt->rank,
           pf_msg_kind_name(m->kind), rank, pf_strerror(rc), pf_errname(rc));
  if (rt->rank == 0)
    answer = m->kind == PF_MSG_LOAD || m->kind == PF_MSG_CONNECT ? PF_MSG_LOAD_DONE
             : m->kind == PF_MSG_RUN ? PF_MSG_STEP_DONE
             : m->kind == PF_MSG_FETCH ? PF_MSG_FETCH_REPLY
             : m->kind == PF_MSG_COUNTERS ? PF_MSG_COUNTERS_REPLY : PF_MSG_NONE;
  else if (m->kind == PF_MSG_LOAD_DONE || m->kind == PF_MSG_STEP_DONE ||
           m->kind == PF_MSG_FETCH_REPLY || m->kind == PF_MSG_COUNTERS_REPLY)
    answer = m->kind;
  if (answer == PF_MSG_NONE || (ans = pf_msg_new(answer)) == NULL) {
    if (answer != PF_MSG_NONE && rt->rank != 0) pf_transport_abort(rt->cfg.transport, 1, why);
    fprintf(stderr, "pathflow: %s\n", why);
    return;
  }
  ans->executable = m->kind == PF_MSG_LOAD && m->plan != NULL ? m->plan->executable : m->executable;
  ans->step = answer == PF_MSG_STEP_DONE ? m->step : 0;
  ans->request =
      answer == PF_MSG_FETCH_REPLY || answer == PF_MSG_COUNTERS_REPLY ? m->request : 0;
  ans->status = rc;
  ans->message = pf_strdup(why);
  if (rt->rank == 0) {
    ans->from = rank;
    rt->cfg.on_reply(rt->cfg.reply_arg, ans);
  } else {
    uint8_t *buf;
    size_t len;
    int rc2 = pf_msg_encode(ans, &buf, &len);
    pf_msg_free(ans);
    if (rc2 == 0) rc2 = rt->cfg.transport->ops->ctrl_send(rt->cfg.transport, rank, buf, len, NULL, NULL, 0);
    if (rc2 != 0) pf_transport_abort(rt->cfg.transport, 1, why);
  }
}

/* What a control message concerns, kept until its send completes: a send
 * whose MPI request fails at completion is answered like one that could
 * not go at all (send_failed), so its waiter does not wait forever. */
typedef struct sent_check {
  pf_runtime *rt;
  pf_msg_kind kind;
  int rank;
  uint64_t executable, step, request;
} sent_check;

static void sent_check_init(sent_check *c, pf_runtime *rt, int rank, const pf_msg *m) {
  c->rt = rt;
  c->kind = m->kind;
  c->rank = rank;
  c->executable = m->kind == PF_MSG_LOAD && m->plan != NULL ? m->plan->executable : m->executable;
  c->step = m->step;
  c->request = m->request;
}

static void sent_done(void *arg, int status) {
  const sent_check *c = arg; /* the transport's copy */
  pf_msg shell; /* what send_failed reads: kind and envelope, owning nothing */
  if (status == 0) return;
  memset(&shell, 0, sizeof shell);
  shell.kind = c->kind;
  shell.executable = c->executable;
  shell.step = c->step;
  shell.request = c->request;
  send_failed(c->rt, c->rank, &shell, status);
}

/* A message whose encoding or decoding copies tensor data (a plan, a
 * feed, a fetched shard) may take seconds on a loaded machine: the loop
 * lets go of the MPI lock meanwhile, so that heartbeats still go out. */
#define BIG_MESSAGE (64u << 10)

static int wants_data_path(const pf_runtime *rt, const pf_msg *m);
static int prepare_data_path(pf_runtime *rt, int rank, pf_msg *m);
static void send_data(pf_runtime *rt, int rank, const pf_msg *m);

static void send_remote(pf_runtime *rt, int rank, pf_msg *m) {
  uint8_t *buf;
  size_t len;
  int data = wants_data_path(rt, m);
  int heartbeat = m->kind == PF_MSG_HEARTBEAT, rc,
      big = m->kind == PF_MSG_LOAD || m->kind == PF_MSG_PUT || m->kind == PF_MSG_FETCH_REPLY;
  /* Large data goes on the data path, after the message. */
  if (data && (rc = prepare_data_path(rt, rank, m)) != 0) {
    send_failed(rt, rank, m, rc);
    pf_msg_free(m);
    return;
  }
  big = big && !data;
  if (big) loop_unlock(rt);
  rc = pf_msg_encode(m, &buf, &len);
  if (big) loop_lock(rt);
  if (rc == 0) {
    /* Who waits for an answer to m, in case its send fails only when it
     * completes (the waiter is then answered with the error). */
    sent_check chk;
    sent_check_init(&chk, rt, rank, m);
    rc = rt->cfg.transport->ops->ctrl_send(rt->cfg.transport, rank, buf, len,
                                           heartbeat ? NULL : sent_done, &chk, sizeof chk);
  }
  if (rc != 0) send_failed(rt, rank, m, rc);
  if (rc == 0 && data) send_data(rt, rank, m);
  if (rc == 0 && !heartbeat) {
    rt->ctrl[rank].control_bytes_sent += len;
    rt->ctrl[rank].control_messages_sent++;
  }
  pf_msg_free(m);
  /* A heartbeat expects no answer: no reason to stay awake for one. */
  if (!heartbeat) start_spinning(rt);
}

/* Sends the releases held for rank, as one message. */
static void send_held(pf_runtime *rt, int rank) {
  pf_msg *m = pf_release_hold_take(rt->hold, rank);
  if (m != NULL) send_remote(rt, rank, m);
}

/* Sends every release held (their time is up, or the loop goes quiet). */
static void send_all_held(pf_runtime *rt) {
  for (int r = 0; r < rt->size; r++)
    if (pf_release_hold_has(rt->hold, r)) send_held(rt, r);
}

/* A message from this rank's controller or service to another rank. A
 * release waits for the next message there: a run carries it (handled as
 * a release just before the run), anything else goes after it; or the loop
 * sends it within RELEASE_HOLD_NS (on_spin). In a loop of executions that
 * saves a control message per execution (bench/dispatch OpByOp async
 * +10-29%). A release only frees memory: held a while, it
 * changes no result. */
static void send_out(pf_runtime *rt, int rank, pf_msg *m) {
  if (rt->hold != NULL && m->kind == PF_MSG_RELEASE) {
    int full = pf_release_hold_add(rt->hold, rank, m, pf_clock_now(rt->clock));
    if (full < 0) {
      send_remote(rt, rank, m); /* could not hold it: as it is */
      return;
    }
    if (full) send_held(rt, rank);
    start_spinning(rt); /* on_spin sends it in time */
    return;
  }
  if (rt->hold != NULL && pf_release_hold_has(rt->hold, rank)) {
    if (m->kind == PF_MSG_RUN)
      pf_release_hold_attach(rt->hold, rank, m);
    else
      send_held(rt, rank);
  }
  send_remote(rt, rank, m);
}

/* ---- the data path ------------------------------------------------------------
 * A feed (PUT) or a fetch reply with 64 KiB or more of data does not carry
 * it in its control message: the message says so (data_path, data_tag),
 * and the bytes follow on the transport's data path, straight from and
 * into the shards' storage, in chunks of at most DATA_CHUNK bytes tagged
 * data_tag, data_tag + 1, ... (tags from the last window, pf_tag_window).
 * No copy of the data is made, none is encoded, and the loop is never busy
 * with it for long (a 256 MiB feed used to take seconds of memcpy on the
 * loop thread, long enough for a peer to be declared lost). The receiving
 * runtime delivers the message once its data is in, and holds the peer's
 * later messages until then. */
#define DATA_PATH_MIN (64u << 10)
#define DATA_CHUNK ((size_t)64 << 20)

typedef struct held_msg {
  pf_msg *m;
  struct held_msg *next;
} held_msg;

typedef struct inbound {
  pf_msg *m;      /* receiving its data; NULL when none */
  int left;       /* chunks not yet in */
  int status;     /* 0, or why the data is lost */
  int sunk;       /* no memory for it: received into the sink */
  held_msg *head, *tail;
} inbound;

typedef struct data_chunk {
  pf_runtime *rt;
  int peer;          /* receive: whose message */
  pf_storage *st;    /* send: a reference held until it is out */
  pf_xfer_box box;
} data_chunk;

static size_t chunks_of(uint64_t n) { return (size_t)((n + DATA_CHUNK - 1) / DATA_CHUNK); }

/* The data of m, per shard: the storages and their sizes. */
static uint64_t data_bytes_of(const pf_msg *m, uint32_t k) {
  if (m->kind == PF_MSG_PUT) return pf_spec_nbytes(&m->spec);
  return m->data_bytes ? m->data_bytes[k] : (m->data && m->data[k] ? m->data[k]->nbytes : 0);
}

static uint32_t data_shards(const pf_msg *m) { return m->kind == PF_MSG_PUT ? 1 : m->n_shards; }

/* Posts chunk c (bytes [off, off + n) of the storage at data) as a send or
 * a receive. */
static int post_chunk(pf_runtime *rt, data_chunk *c, void *data, uint64_t off, uint64_t n,
                      int tag, int send, pf_transport_cb cb) {
  pf_transport *t = rt->cfg.transport;
  pf_spec bytes = pf_spec_1d(PF_U8, (int64_t)(off + n));
  int64_t o = (int64_t)off, e = (int64_t)n;
  int rc = t->ops->box_prepare(t, &bytes, &o, &e, &c->box);
  if (rc == 0)
    rc = send ? t->ops->send(t, data, &c->box, c->peer, tag, cb, c)
              : t->ops->recv(t, data, &c->box, c->peer, tag, cb, c);
  return rc;
}

static void chunk_sent(void *arg, int status) {
  data_chunk *c = arg;
  pf_transport *t = c->rt->cfg.transport;
  /* A chunk that could not go: its receiver's message is lost with it;
   * the receiver reports that (a feed's step fails naming its buffer). */
  if (status != 0)
    fprintf(stderr, "pathflow: rank %d: sending data to rank %d failed\n", c->rt->rank, c->peer);
  t->ops->box_release(t, &c->box);
  pf_storage_unref(c->st);
  free(c);
}

/* Whether m goes with its data on the data path. */
static int wants_data_path(const pf_runtime *rt, const pf_msg *m) {
  uint64_t total = 0;
  if (rt->cfg.transport == NULL || (m->kind != PF_MSG_PUT && m->kind != PF_MSG_FETCH_REPLY) ||
      m->data == NULL)
    return 0;
  for (uint32_t k = 0; k < data_shards(m); k++) total += data_bytes_of(m, k);
  return total >= DATA_PATH_MIN;
}

/* Marks m for the data path to `rank`: tags, and each shard's size. */
static int prepare_data_path(pf_runtime *rt, int rank, pf_msg *m) {
  size_t n = 0;
  if (m->kind == PF_MSG_FETCH_REPLY) {
    if ((m->data_bytes = pf_calloc(m->n_shards + 1, sizeof *m->data_bytes)) == NULL)
      return PF_ENOMEM;
    for (uint32_t k = 0; k < m->n_shards; k++)
      m->data_bytes[k] = m->data[k] ? m->data[k]->nbytes : 0;
  }
  for (uint32_t k = 0; k < data_shards(m); k++) n += chunks_of(data_bytes_of(m, k));
  m->data_path = 1;
  m->data_tag = rt->data_tag_lo + (int)(rt->data_tag_next[rank] % (uint32_t)rt->data_tag_n);
  /* Consecutive tags within the window; a message never wraps round it. */
  if ((size_t)m->data_tag + n > (size_t)rt->data_tag_lo + (size_t)rt->data_tag_n) {
    m->data_tag = rt->data_tag_lo;
    rt->data_tag_next[rank] = 0;
  }
  rt->data_tag_next[rank] += (uint32_t)n;
  return 0;
}

/* After m's control message went to `rank`: its data, chunk by chunk. */
static void send_data(pf_runtime *rt, int rank, const pf_msg *m) {
  int tag = m->data_tag;
  for (uint32_t k = 0; k < data_shards(m); k++) {
    uint64_t n = data_bytes_of(m, k);
    for (uint64_t off = 0; off < n; off += DATA_CHUNK, tag++) {
      data_chunk *c = calloc(1, sizeof *c);
      if (c == NULL) pf_transport_abort(rt->cfg.transport, 1, "out of memory sending data");
      c->rt = rt;
      c->peer = rank;
      c->st = pf_storage_ref(m->data[k]);
      if (post_chunk(rt, c, c->st->data, off, PF_MINOF(DATA_CHUNK, n - off), tag, 1, chunk_sent))
        /* The receiver would wait for it forever. */
        pf_transport_abort(rt->cfg.transport, 1, "could not post a data transfer");
    }
  }
}

static void deliver(pf_runtime *rt, pf_msg *m);
static void route_in(pf_runtime *rt, int peer, pf_msg *m);

/* The data of the peer's inbound message is all in (or lost): deliver it,
 * then what it held back, until one of those waits for data in turn. */
static void inbound_done(pf_runtime *rt, int peer) {
  inbound *in = &rt->inbound[peer];
  pf_msg *m = in->m;
  in->m = NULL;
  if (in->status != 0 || in->sunk) {
    for (uint32_t k = 0; m->data && k < data_shards(m); k++) {
      pf_storage_unref(m->data[k]);
      m->data[k] = NULL;
    }
    if (m->kind == PF_MSG_PUT) {
      /* A feed has no answer: the step that reads it fails, naming it. */
      fprintf(stderr, "pathflow: rank %d: the data of a feed from rank %d was lost (%s)\n",
              rt->rank, peer, in->sunk ? "out of memory" : pf_strerror(in->status));
      pf_msg_free(m);
      m = NULL;
    } else {
      free(m->data);
      m->data = NULL;
      m->status = in->sunk ? PF_ENOMEM : in->status;
      free(m->message);
      m->message = pf_strdup(in->sunk ? "out of memory receiving fetched data"
                                      : "receiving fetched data failed");
    }
  }
  if (m != NULL) deliver(rt, m);
  while (in->m == NULL && in->head != NULL) {
    held_msg *h = in->head;
    in->head = h->next;
    if (in->head == NULL) in->tail = NULL;
    m = h->m;
    free(h);
    route_in(rt, peer, m);
  }
}

static void chunk_received(void *arg, int status) {
  data_chunk *c = arg;
  pf_runtime *rt = c->rt;
  inbound *in = &rt->inbound[c->peer];
  int peer = c->peer;
  rt->cfg.transport->ops->box_release(rt->cfg.transport, &c->box);
  free(c);
  if (status != 0 && in->status == 0) in->status = status;
  if (--in->left == 0) inbound_done(rt, peer);
}

/* Starts receiving the data of m from peer into new storage (or, without
 * memory, into the sink: the sender must not wait forever). */
static void receive_data(pf_runtime *rt, int peer, pf_msg *m) {
  inbound *in = &rt->inbound[peer];
  uint32_t n = data_shards(m);
  int tag = m->data_tag;
  in->m = m;
  in->status = 0;
  in->sunk = 0;
  in->left = 1; /* held until every chunk is posted */
  if ((m->data = pf_calloc(n + 1, sizeof *m->data)) == NULL) in->sunk = 1;
  /* A shard the sender had no data for stays NULL, as in a message that
   * carries its data. */
  for (uint32_t k = 0; !in->sunk && k < n; k++)
    if (data_bytes_of(m, k) > 0 &&
        (m->data[k] = pf_storage_new((size_t)data_bytes_of(m, k), 0)) == NULL)
      in->sunk = 1;
  if (in->sunk && rt->sink == NULL && (rt->sink = malloc(DATA_CHUNK)) == NULL)
    pf_transport_abort(rt->cfg.transport, 1, "out of memory receiving data");
  for (uint32_t k = 0; k < n; k++) {
    uint64_t bytes = data_bytes_of(m, k);
    for (uint64_t off = 0; off < bytes; off += DATA_CHUNK, tag++) {
      data_chunk *c = calloc(1, sizeof *c);
      uint64_t len = PF_MINOF(DATA_CHUNK, bytes - off);
      if (c == NULL) pf_transport_abort(rt->cfg.transport, 1, "out of memory receiving data");
      c->rt = rt;
      c->peer = peer;
      in->left++;
      /* Into the sink, each chunk lands at its start (and is dropped). */
      if (post_chunk(rt, c, in->sunk ? rt->sink : m->data[k]->data, in->sunk ? 0 : off, len, tag,
                     0, chunk_received))
        pf_transport_abort(rt->cfg.transport, 1, "could not post a data receive");
    }
  }
  if (--in->left == 0) inbound_done(rt, peer);
}

/* A message from peer, decoded: delivered now, or after the data of an
 * earlier one of the same peer (its order is kept), or once its own data
 * has come. */
static void route_in(pf_runtime *rt, int peer, pf_msg *m) {
  inbound *in = &rt->inbound[peer];
  if (in->m != NULL) {
    held_msg *h = malloc(sizeof *h);
    if (h == NULL) pf_transport_abort(rt->cfg.transport, 1, "out of memory holding a message");
    h->m = m;
    h->next = NULL;
    if (in->tail)
      in->tail->next = h;
    else
      in->head = h;
    in->tail = h;
    return;
  }
  if (m->data_path)
    receive_data(rt, peer, m);
  else
    deliver(rt, m);
}

/* The service answers the controller. */
static void service_reply(void *arg, pf_msg *m) {
  pf_runtime *rt = arg;
  if (rt->rank == 0) {
    m->from = 0;
    rt->cfg.on_reply(rt->cfg.reply_arg, m);
  } else {
    send_remote(rt, 0, m);
  }
}

/* This rank's counters, to the controller: the service's and executor's,
 * and the control messages this loop counted. */
static void answer_counters(pf_runtime *rt, pf_msg *m) {
  pf_msg *rep = pf_msg_new(PF_MSG_COUNTERS_REPLY);
  if (rep == NULL) {
    pf_msg_free(m);
    return; /* the controller's call then fails through the send error path */
  }
  rep->request = m->request;
  rep->counters = pf_counters_new(rt->rank, pf_executor_num_devices(rt->ex), rt->size);
  if (rep->counters == NULL) {
    rep->status = PF_ENOMEM;
    rep->message = pf_strdup("counters: out of memory");
  } else {
    pf_service_counters(rt->svc, rep->counters);
    for (int p = 0; p < rt->size; p++) {
      pf_peer_counters *q = &rep->counters->peers[p];
      q->control_bytes_sent = rt->ctrl[p].control_bytes_sent;
      q->control_bytes_received = rt->ctrl[p].control_bytes_received;
      q->control_messages_sent = rt->ctrl[p].control_messages_sent;
      q->control_messages_received = rt->ctrl[p].control_messages_received;
    }
    pf_counters_sum(rep->counters);
  }
  pf_msg_free(m);
  service_reply(rt, rep);
}

/* How long memory readied for an expected plan is held at most (the
 * controller says when no plan is coming, an Expect of 0 bytes, but that
 * message may fail to go). */
#define EXPECT_HOLD_NS (30 * 1000000000ull)

/* The controller is about to schedule a plan of about m->bytes for this
 * rank (api/execute.c): back that much fresh memory on an idle core while
 * this rank waits, and give it back as the plan arrives (expect_end), for
 * its decoder and executor to take again, cheaply (base/warm.h). At most
 * half the free memory, shared with the other ranks of this host. */
static void expect_begin(pf_runtime *rt, const pf_msg *m) {
  long pages = sysconf(_SC_AVPHYS_PAGES), page = sysconf(_SC_PAGESIZE);
  int local = rt->cfg.transport != NULL ? PF_MAXOF(rt->cfg.transport->local_size, 1) : 1;
  uint64_t cap = pages > 0 && page > 0 ? (uint64_t)pages * (uint64_t)page / 2 / (uint64_t)local : 0;
  pf_warmer_stop(rt->expect);
  rt->expect = pf_warmer_reserve((size_t)PF_MINOF(m->bytes, cap));
  rt->expect_at = pf_clock_now(rt->clock);
}

static void expect_end(pf_runtime *rt) {
  pf_warmer_stop(rt->expect);
  rt->expect = NULL;
}

static void deliver(pf_runtime *rt, pf_msg *m) {
  if (m->kind == PF_MSG_EXPECT) {
    expect_begin(rt, m);
    pf_msg_free(m);
    return;
  }
  if (m->kind == PF_MSG_LOAD) expect_end(rt); /* a small plan: not decoded in its own time */
  if (m->kind == PF_MSG_SHUTDOWN) {
    pthread_mutex_lock(&rt->lock);
    rt->shutdown_seen = 1;
    pthread_cond_broadcast(&rt->cond);
    pthread_mutex_unlock(&rt->lock);
    pf_msg_free(m);
    return;
  }
  if (m->kind == PF_MSG_HEARTBEAT) {
    pf_msg_free(m);
    return;
  }
  if (m->kind == PF_MSG_COUNTERS) {
    answer_counters(rt, m);
    return;
  }
  if (rt->rank == 0 && (m->kind == PF_MSG_LOAD_DONE || m->kind == PF_MSG_STEP_DONE ||
                        m->kind == PF_MSG_STEP_STARTED || m->kind == PF_MSG_FETCH_REPLY ||
                        m->kind == PF_MSG_COUNTERS_REPLY)) {
    rt->cfg.on_reply(rt->cfg.reply_arg, m);
    return;
  }
  pf_service_handle(rt->svc, m);
}

/* Around an op the loop thread runs for a device (loop_runs_ops): the
 * MPI lock is free while a kernel runs, for the heartbeat thread (a long
 * kernel would otherwise keep this rank's beats in, and its peers would
 * declare it dead). */
static void around_op(void *arg, int begin) {
  pf_runtime *rt = arg;
  if (begin) {
    atomic_store_explicit(&rt->op_since, pf_clock_now(rt->clock), memory_order_relaxed);
    rt->unlocked_for_op = rt->holds_mpi;
    loop_unlock(rt);
  } else {
    if (rt->unlocked_for_op) loop_lock(rt);
    atomic_store_explicit(&rt->op_since, 0, memory_order_relaxed);
    pf_service_tick(rt->svc); /* the time stamps after a kernel are not those before */
  }
}

/* The devices' ops the loop runs itself (loop_runs_ops): those ready now,
 * and what they make ready in turn. Returns how many ran. */
static int run_ops(pf_runtime *rt) {
  return rt->loop_runs_ops ? pf_executor_run_claimed(rt->ex) : 0;
}

static void drain_events(pf_runtime *rt) {
  event *e;
  pf_service_tick(rt->svc);
  atomic_store_explicit(&rt->has_events, 0, memory_order_relaxed);
  pthread_mutex_lock(&rt->lock);
  e = rt->head;
  rt->head = rt->tail = NULL;
  pthread_mutex_unlock(&rt->lock);
  while (e != NULL) {
    event *next = e->next;
    switch (e->kind) {
      case EV_SEND:
        if (e->rank == rt->rank)
          deliver(rt, e->msg);
        else
          send_out(rt, e->rank, e->msg);
        break;
      case EV_STEP_DONE:
        pf_service_step_done(rt->svc, e->arg);
        break;
      case EV_LOOP_OP:
        pf_service_loop_op(rt->svc, e->step, e->op);
        start_spinning(rt);
        break;
      case EV_CALL:
        e->fn(e->arg);
        break;
    }
    free(e);
    e = next;
  }
}

/* ---- MPI polling ------------------------------------------------------------- */

/* A control message that cannot be trusted: refused, said so, and only
 * what it concerns is failed (`buf`, when given, holds its bytes, to find
 * out what that is). A frame that is not pathflow's, or a message of a
 * kind nothing waits on, concerns no execution: it is dropped. */
static void reject(pf_runtime *rt, int peer, int rc, const char *why, const uint8_t *buf,
                   size_t len) {
  pf_msg_kind kind = PF_MSG_NONE, answer = PF_MSG_NONE;
  uint64_t exe = 0, key = 0;
  char msg[PF_DIAG_MSG_MAX + 128];
  pf_msg *ans;
  int known = buf != NULL && pf_msg_concerns(buf, len, &kind, &exe, &key);
  fprintf(stderr, "pathflow: rank %d: rejected a control message from rank %d: %s%s\n", rt->rank,
          peer, why, known ? "" : " (dropped: it concerns no execution)");
  if (!known) return;
  if (rt->rank != 0 && peer == 0)
    /* An order of the controller's that cannot be carried out: answer it
     * with the error (a PUT has no answer: the step that reads its buffer
     * fails, naming it). */
    answer = kind == PF_MSG_LOAD ? PF_MSG_LOAD_DONE
             : kind == PF_MSG_RUN ? PF_MSG_STEP_DONE
             : kind == PF_MSG_FETCH ? PF_MSG_FETCH_REPLY
             : kind == PF_MSG_COUNTERS ? PF_MSG_COUNTERS_REPLY : PF_MSG_NONE;
  else if (rt->rank == 0 && peer > 0 && peer < rt->size)
    /* An executor's answer that cannot be read: its waiter gets the error. */
    /* A STEP_STARTED that cannot be read fails its step (sequential
     * dispatch would otherwise wait for it). */
    answer = kind == PF_MSG_STEP_STARTED ? PF_MSG_STEP_DONE
             : kind == PF_MSG_LOAD_DONE || kind == PF_MSG_STEP_DONE || kind == PF_MSG_FETCH_REPLY ||
                     kind == PF_MSG_COUNTERS_REPLY
                 ? kind : PF_MSG_NONE;
  if (answer == PF_MSG_NONE || (ans = pf_msg_new(answer)) == NULL) return;
  snprintf(msg, sizeof msg, "rank %d: rejected a %s message from rank %d: %s", rt->rank,
           pf_msg_kind_name(kind), peer, why);
  ans->executable = exe;
  ans->step = answer == PF_MSG_STEP_DONE ? key : 0;
  ans->request = answer == PF_MSG_FETCH_REPLY || answer == PF_MSG_COUNTERS_REPLY ? key : 0;
  ans->status = rc;
  ans->message = pf_strdup(msg);
  if (rt->rank == 0) {
    ans->from = peer;
    rt->cfg.on_reply(rt->cfg.reply_arg, ans);
  } else {
    send_remote(rt, 0, ans);
  }
}

/* Completes requests and receives every control message that has arrived.
 * Returns how much happened (heartbeats do not count). */
static int poll_mpi(pf_runtime *rt) {
  int activity;
  PF_PROBE("loop.poll");
  pf_service_tick(rt->svc);
  activity = rt->cfg.transport->ops->progress(rt->cfg.transport);
  if (activity < 0) pf_transport_abort(rt->cfg.transport, 1, "transport progress failed");
  for (;;) {
    uint8_t *buf;
    size_t len;
    int peer = -1, rc;
    pf_msg *m;
    pf_diag d;
    pf_diag_init(&d);
    rc = rt->cfg.transport->ops->ctrl_recv(rt->cfg.transport, &peer, &buf, &len, &d);
    if (rc == PF_EDECODE || (rc == PF_ENOMEM && peer >= 0)) {
      if (peer >= 0 && peer < rt->size)
        atomic_store_explicit(&rt->last_seen[peer], pf_clock_now(rt->clock), memory_order_relaxed);
      reject(rt, peer, rc, d.msg, NULL, 0);
      continue;
    }
    if (rc != 0) pf_transport_abort(rt->cfg.transport, 1, "receiving a control message failed");
    if (buf == NULL) break;
    atomic_store_explicit(&rt->last_seen[peer], pf_clock_now(rt->clock), memory_order_relaxed);
    if (len > BIG_MESSAGE) {
      /* The plan expected, most likely: its memory is wanted now. */
      expect_end(rt);
      loop_unlock(rt);
    }
    rc = pf_msg_decode(buf, len, pf_executor_num_devices(rt->ex), &m, &d);
    if (len > BIG_MESSAGE) loop_lock(rt);
    if (rc != 0) reject(rt, peer, rc, d.msg, buf, len);
    free(buf);
    if (rc != 0) continue;
    m->from = peer;
    if (m->kind != PF_MSG_HEARTBEAT) {
      activity++;
      rt->ctrl[peer].control_bytes_received += len;
      rt->ctrl[peer].control_messages_received++;
    }
    route_in(rt, peer, m);
  }
  /* What a message started or a completion made ready (loop_runs_ops):
   * every path that polls comes here, the event-driven ones included (a
   * transport that wakes the loop itself is not spun on). */
  PF_PROBE("loop.messages.out");
  activity += run_ops(rt);
  PF_PROBE("loop.poll.out");
  return activity;
}

static void on_poll(uv_timer_t *h);

/* Requests in flight need MPI progress: keep polling without a pause. */
static int transferring(pf_runtime *rt) {
  return rt->cfg.transport->ops->pending(rt->cfg.transport) > 0;
}

/* Waiting on computation (steps running, the controller waiting for a
 * reply): the answer may come any microsecond, and MPI cannot wake us, so
 * keep polling, but yield the core between polls: a device worker sharing
 * it (mpirun --bind-to core) keeps nearly all of it. */
static int waiting(pf_runtime *rt) {
  return pf_service_steps_in_flight(rt->svc) > 0 ||
         (rt->cfg.controller_busy != NULL && rt->cfg.controller_busy(rt->cfg.reply_arg));
}

/* sched_yield costs more than a poll (~0.5 us in a VM, a poll ~0.25 us),
 * and a message that lands during one waits for it: yield on one idle poll
 * in YIELD_EVERY (every 15-30 us). A worker sharing the core gets it within
 * that, and keeps it for its time slice; a thread that wakes up takes the
 * core at once anyway (the scheduler's wake-up preemption). 8 cost a chain
 * of small collectives (bench/dispatch Chained) and synchronous dispatch a
 * fifth of their rate against 64, with no difference on the stencil
 * (bench/granularity) nor with 4 ranks on 2 cores. */
#define YIELD_EVERY 64u

/* But a yield that hands the core to nobody (it returned within
 * YIELD_IDLE_NS: no thread waited for this core) only costs a system call
 * and delays the next message: a chain of small collectives on as many
 * cores as ranks (bench/dispatch Chained) ran a fifth faster without. So
 * each such yield doubles the polls to the next one, up to
 * YIELD_EVERY_MAX (a few hundred microseconds; 4096, a millisecond or
 * two, cost bench/granularity a third of its rate between 50 and 200 us
 * kernels), and a yield that let another thread run goes back to
 * YIELD_EVERY. Threads of other ranks count too:
 * on a full node a loop that never yielded took two thirds of the rate of
 * the kernels it shared a core with (bench/granularity). */
#define YIELD_EVERY_MAX 1024u
#define YIELD_IDLE_NS 10000u

/* A libuv iteration (timers, an epoll_wait system call) costs as much as
 * a poll: poll up to SPIN_BURST times per iteration, and go back to libuv
 * between bursts for its timers and stop requests (messages pushed by
 * other threads are taken on every poll: has_events). 256 (about 100 us)
 * against 32: bench/dispatch Chained +20%; 1024 (with YIELD_EVERY_MAX
 * 1024 against 512): +4% more; nothing else moved. */
#define SPIN_BURST 1024u
/* How long a release may wait for a message to its rank to ride on
 * (send_out): memory freed that much later, never a result changed. */
#define RELEASE_HOLD_NS 100000u

static void send_due_heartbeats(pf_runtime *rt);

/* This thread just woke a device worker that slept: yield at once. The
 * worker may share this core (one core per rank), and a woken thread does
 * not take the core from a running one (the scheduler's wake-up
 * granularity): after the yields of a long wait had backed off to 1024
 * polls, the optimizer step that a gradient allreduce made ready started
 * ~40 us late, and each training step after the one before it the same
 * (bench/train). */
static void yield_to_woken(pf_runtime *rt) {
  if (!pf_cpu_device_woke_worker()) return;
  rt->polls_since_yield = 0;
  rt->yield_every = YIELD_EVERY;
  loop_unlock(rt);
  sched_yield();
  loop_lock(rt);
}

static void on_spin(uv_idle_t *h) {
  pf_runtime *rt = h->data;
  uint64_t now;
  int busy = 0;
  send_due_heartbeats(rt);
  for (unsigned i = 0; i < SPIN_BURST; i++) {
    /* Work handed over by a device worker: take it now, not one loop
     * iteration later through the async handle. */
    if (atomic_load_explicit(&rt->has_events, memory_order_acquire)) drain_events(rt);
    if (poll_mpi(rt) > 0) {
      busy = 1;
      yield_to_woken(rt);
      continue;
    }
    yield_to_woken(rt);
    /* Nothing completed: post receives a step left for later. Not after a
     * poll that completed something: the loop is then on the critical
     * path (a rank that never waits would pay for a post every step). */
    PF_PROBE("loop.idle");
    if (pf_service_post_deferred(rt->svc, 8) > 0) {
      busy = 1;
      continue;
    }
    if (!transferring(rt) && !waiting(rt)) break;
    /* Receives posted ahead, steps running: keep polling, but let a device
     * worker that shares this core run first. */
    busy = 1;
    if (++rt->polls_since_yield >= rt->yield_every) {
      uint64_t t0 = pf_clock_now(rt->clock);
      rt->polls_since_yield = 0;
      /* The heartbeat thread may send while the worker has the core. */
      loop_unlock(rt);
      sched_yield();
      loop_lock(rt);
      if (pf_clock_now(rt->clock) - t0 > YIELD_IDLE_NS)
        rt->yield_every = YIELD_EVERY;
      else if (rt->yield_every < YIELD_EVERY_MAX)
        rt->yield_every *= 2;
    }
  }
  now = pf_clock_now(rt->clock);
  atomic_store_explicit(&rt->last_poll, now, memory_order_relaxed);
  if (rt->hold != NULL && pf_release_hold_due(rt->hold, now, RELEASE_HOLD_NS)) send_all_held(rt);
  if (busy) {
    rt->last_activity = now;
    return;
  }
  /* Nothing due, but still spinning in case more comes (spin_ns): let the
   * threads sharing this core run between polls, as a busy burst does. The
   * caller's next pf_execute, or a device worker, is usually one of them;
   * without this, spinning between two synchronous executions took their
   * core (bench/dispatch OpByOp sync 22k -> 16k per s). */
  loop_unlock(rt);
  sched_yield();
  loop_lock(rt);
  if (now - rt->last_activity > rt->spin_ns) {
    /* Releases held go first (sending counts as activity: the loop spins
     * on, and sleeps the next time it is quiet). */
    if (rt->hold != NULL && pf_release_hold_due(rt->hold, now, 0)) {
      send_all_held(rt);
      return;
    }
    /* Quiet: sleep between polls instead of spinning a core. */
    atomic_store(&rt->loop_asleep, 1);
    if (atomic_load(&rt->has_events)) {
      /* Pushed before it could see loop_asleep: take it now. */
      atomic_store(&rt->loop_asleep, 0);
      return;
    }
    uv_idle_stop(&rt->spin);
    rt->spinning = 0;
    rt->poll_ms = 1;
    uv_timer_start(&rt->poll, on_poll, rt->poll_ms, 0);
  }
}

static void start_spinning(pf_runtime *rt) {
  /* Alone in the job, nothing arrives through MPI: device workers hand
   * work over through the event queue, which wakes the loop. A spinning
   * loop would only take a core from them. Nor does a transport that
   * wakes the loop itself need polling. */
  if (rt->cfg.transport == NULL || rt->size < 2 || !rt->cfg.transport->needs_polling) return;
  rt->last_activity = pf_clock_now(rt->clock);
  if (rt->spinning) return;
  uv_timer_stop(&rt->poll);
  uv_idle_start(&rt->spin, on_spin);
  rt->spinning = 1;
  atomic_store(&rt->loop_asleep, 0);
}

static void on_poll(uv_timer_t *h) {
  pf_runtime *rt = h->data;
  int got;
  send_due_heartbeats(rt);
  got = poll_mpi(rt);
  atomic_store_explicit(&rt->last_poll, pf_clock_now(rt->clock), memory_order_relaxed);
  if (got > 0 || transferring(rt) || waiting(rt)) {
    start_spinning(rt);
    return;
  }
  /* Quiet for a second: deep idle, poll rarely. */
  rt->poll_ms = PF_MINOF(rt->poll_ms * 2, pf_clock_now(rt->clock) - rt->last_activity > 1000000000u
                                              ? rt->idle_poll_ms
                                              : rt->poll_max_ms);
  uv_timer_start(&rt->poll, on_poll, rt->poll_ms, 0);
}

/* The watchdog reported a stall and nothing progressed since: past
 * PATHFLOW_HANG_TIMEOUT_S, end the job rather than hang it forever. A rank
 * running a kernel names it; a rank that only waits gives such a rank
 * HANG_GRACE_S more to say so first (its report names the real culprit). */
#define HANG_GRACE_S 10
static void check_hang(pf_runtime *rt, uint64_t now) {
  char running[400], why[560];
  uint64_t limit = (uint64_t)rt->hang_timeout_s * 1000000000u;
  int n = pf_executor_running(rt->ex, running, sizeof running);
  if (now - rt->watchdog_fired_at <= limit + (n > 0 ? 0 : (uint64_t)HANG_GRACE_S * 1000000000u))
    return;
  if (n > 0)
    snprintf(why, sizeof why, "hung: %s has not returned for %llu s (PATHFLOW_WATCHDOG_S + "
             "PATHFLOW_HANG_TIMEOUT_S; 0 turns this off)", running,
             (unsigned long long)(rt->watchdog_s + rt->hang_timeout_s));
  else
    snprintf(why, sizeof why, "hung: nothing progressed for %llu s and no kernel runs on this "
             "rank: it waits on others (the watchdog report above says on what; "
             "PATHFLOW_HANG_TIMEOUT_S, 0 turns this off)",
             (unsigned long long)((now - rt->watchdog_fired_at) / 1000000000u + rt->watchdog_s));
  pf_transport_abort(rt->cfg.transport, 1, why);
}

/* Every second: the watchdog (heartbeats and lost ranks are the
 * heartbeat thread's). */
static void on_tick(uv_timer_t *h) {
  pf_runtime *rt = h->data;
  uint64_t now = pf_clock_now(rt->clock);
  if (rt->expect != NULL && now - rt->expect_at > EXPECT_HOLD_NS) expect_end(rt);
  if (rt->watchdog_s > 0 && pf_service_steps_in_flight(rt->svc) > 0 &&
      now - pf_service_last_progress(rt->svc, now) > (uint64_t)rt->watchdog_s * 1000000000u) {
    if (!rt->watchdog_fired) {
      fprintf(stderr, "pathflow: rank %d: nothing progressed for %lld s (PATHFLOW_WATCHDOG_S)\n",
              rt->rank, (long long)rt->watchdog_s);
      pf_service_dump(rt->svc, stderr);
      if (rt->rank == 0)
        for (int r = 1; r < rt->size; r++) {
          pf_msg *dm = pf_msg_new(PF_MSG_DUMP);
          if (dm) send_remote(rt, r, dm);
        }
      rt->watchdog_fired = 1;
      rt->watchdog_fired_at = now;
    } else if (rt->hang_timeout_s > 0) {
      check_hang(rt, now);
    }
  } else {
    rt->watchdog_fired = 0;
  }
}

static void on_wake_locked(pf_runtime *rt);

/* Runs inside libuv's I/O poll, where the loop does not hold the MPI lock. */
static void on_wake(uv_async_t *h) {
  pf_runtime *rt = h->data;
  int held = rt->holds_mpi;
  loop_lock(rt);
  on_wake_locked(rt);
  if (!held) loop_unlock(rt);
}

static void on_wake_locked(pf_runtime *rt) {
  int stop;
  /* Read the stop flag before draining: everything queued before the stop
   * request is then sent before the loop closes. */
  pthread_mutex_lock(&rt->lock);
  stop = rt->stop_requested;
  pthread_mutex_unlock(&rt->lock);
  drain_events(rt);
  if (rt->cfg.transport) {
    /* Something happened here (a step ran, a message was sent): replies
     * tend to follow within microseconds, so poll without pause a while. */
    poll_mpi(rt);
    start_spinning(rt);
    /* A transport that wakes the loop itself (loopback) is never spun on,
     * and only the spin posts the receives a step left for later: post
     * them now, all of them (a step of more than 64 receives on a rank
     * used to wait for them forever). */
    if (!rt->cfg.transport->needs_polling)
      while (pf_service_post_deferred(rt->svc, 64) > 0) {
      }
  }
  if (!stop) return;
  if (rt->stop_since == 0) rt->stop_since = pf_clock_now(rt->clock);
  /* The controller stops once its messages (shutdown included) have left,
   * or after 5 s; an executor has nothing left to say after shutdown. */
  if (rt->cfg.transport == NULL || rt->rank != 0 || !transferring(rt) ||
      pf_clock_now(rt->clock) - rt->stop_since > 5000000000ull) {
    uv_close((uv_handle_t *)&rt->wake, NULL);
    uv_close((uv_handle_t *)&rt->spin, NULL);
    uv_close((uv_handle_t *)&rt->poll, NULL);
    uv_close((uv_handle_t *)&rt->tick, NULL);
    uv_close((uv_handle_t *)&rt->unlock_mpi, NULL);
    uv_close((uv_handle_t *)&rt->relock_mpi, NULL);
  } else {
    uv_async_send(&rt->wake); /* come back once the sends are out */
  }
}

static void on_unlock_mpi(uv_prepare_t *h) { loop_unlock(h->data); }

/* From any thread: the transport has something for this rank. */
static void transport_woke(void *arg) {
  pf_runtime *rt = arg;
  uv_async_send(&rt->wake);
}
static void on_relock_mpi(uv_check_t *h) { loop_lock(h->data); }

static void *loop_main(void *arg) {
  pf_runtime *rt = arg;
  pthread_setname_np(pthread_self(), "pf-loop");
  tls_loop_of = rt;
  /* Held through libuv's timers and idle callbacks; released from the
   * prepare callback (before the I/O poll) to the check callback. */
  loop_lock(rt);
  uv_run(&rt->loop, UV_RUN_DEFAULT);
  loop_unlock(rt);
  return NULL;
}

/* ---- liveness ------------------------------------------------------------------
 * Heartbeats and the check for lost ranks run on a thread of their own
 * that sleeps a second at a time: a sleeper gets the CPU at once when it
 * wakes, even on a loaded machine, where the loop thread (which yields to
 * the workers) may wait. It sends when it gets the MPI lock, which the
 * loop leaves free while libuv waits and while it yields; when it cannot
 * get it within 10 ms, the loop sends the beat on its next pass. The checker
 * blames no peer for its own process's stall: after a sleep that took far
 * longer than asked (the process was stopped, or got no CPU) it restarts
 * every peer's clock, and it judges only while the loop thread has looked
 * at MPI recently (else a peer's messages may be waiting unread). */

/* A one-second sleep that took this long: this process did not run. */
#define STALL_NS 3000000000ull
/* The loop looked at MPI within this: silence means the peer is silent. */
#define LOOP_RECENT_NS 2000000000ull

/* With the MPI lock held. */
static void send_heartbeats_locked(pf_runtime *rt) {
  for (int r = 0; r < rt->size; r++) {
    pf_msg *hb;
    uint8_t *buf;
    size_t len;
    if (r == rt->rank || (rt->rank != 0 && r != 0)) continue;
    if ((hb = pf_msg_new(PF_MSG_HEARTBEAT)) == NULL) continue;
    if (pf_msg_encode(hb, &buf, &len) == 0)
      (void)rt->cfg.transport->ops->ctrl_send(rt->cfg.transport, r, buf, len, NULL, NULL, 0);
    pf_msg_free(hb);
  }
}

/* The loop's part: it holds the lock whenever it runs, so a beat the
 * heartbeat thread could not send goes on the loop's next pass (a loop
 * thread that the scheduler took off the core while it held the lock keeps
 * the heartbeat thread out for as long). */
static void send_due_heartbeats(pf_runtime *rt) {
  if (atomic_load_explicit(&rt->beat_due, memory_order_relaxed) &&
      atomic_exchange_explicit(&rt->beat_due, 0, memory_order_relaxed))
    send_heartbeats_locked(rt);
}

static void send_heartbeats(pf_runtime *rt) {
  for (int tries = 0; tries < 5; tries++) {
    if (pthread_mutex_trylock(&rt->mpi_lock) == 0) {
      atomic_store_explicit(&rt->beat_due, 0, memory_order_relaxed);
      send_heartbeats_locked(rt);
      pthread_mutex_unlock(&rt->mpi_lock);
      return;
    }
    /* The loop is in the middle of a burst: it lets go within microseconds
     * of its own CPU time. */
    pf_clock_sleep(rt->clock, 2000000);
  }
  atomic_store_explicit(&rt->beat_due, 1, memory_order_relaxed);
}

static void check_peers(pf_runtime *rt, uint64_t now) {
  uint64_t limit = (uint64_t)rt->rank_timeout_s * 1000000000u;
  if (rt->rank_timeout_s == 0 ||
      pf_clock_since(now, atomic_load_explicit(&rt->last_poll, memory_order_relaxed)) >
          LOOP_RECENT_NS)
    return;
  for (int r = 0; r < rt->size; r++) {
    char why[200];
    if (r == rt->rank || (rt->rank != 0 && r != 0)) continue;
    /* the loop may stamp a message after `now` was read */
    if (pf_clock_since(now, atomic_load_explicit(&rt->last_seen[r], memory_order_relaxed)) <=
        limit)
      continue;
    snprintf(why, sizeof why, "rank %d lost: no message from it for %lld s, while this rank ran "
             "and listened (PATHFLOW_RANK_TIMEOUT_S; 0 turns this off)",
             r, (long long)rt->rank_timeout_s);
    /* Serialized with the loop if it lets go; ending the job either way. */
    for (int tries = 0; tries < 100 && pthread_mutex_trylock(&rt->mpi_lock) != 0; tries++)
      pf_clock_sleep(rt->clock, 2000000);
    pf_transport_abort(rt->cfg.transport, 1, why);
  }
}

/* loop_runs_ops: while the loop thread runs a kernel it cannot watch
 * itself (on_tick is its timer): a kernel it has run for longer than
 * PATHFLOW_WATCHDOG_S + PATHFLOW_HANG_TIMEOUT_S ends the job from here,
 * named as check_hang names one. The loop let go of the MPI lock for the
 * op (around_op); taken here, the op still the same one, MPI is ours. */
static void check_loop_op(pf_runtime *rt, uint64_t now) {
  uint64_t since = atomic_load_explicit(&rt->op_since, memory_order_relaxed);
  char running[400], why[560];
  if (!rt->loop_runs_ops || since == 0 || rt->watchdog_s == 0 || rt->hang_timeout_s == 0 ||
      pf_clock_since(now, since) <= (uint64_t)(rt->watchdog_s + rt->hang_timeout_s) * 1000000000u)
    return;
  pthread_mutex_lock(&rt->mpi_lock);
  if (atomic_load_explicit(&rt->op_since, memory_order_relaxed) != since ||
      pf_executor_running(rt->ex, running, sizeof running) <= 0) {
    pthread_mutex_unlock(&rt->mpi_lock);
    return;
  }
  snprintf(why, sizeof why, "hung: %s has not returned for %llu s (PATHFLOW_WATCHDOG_S + "
           "PATHFLOW_HANG_TIMEOUT_S; 0 turns this off)", running,
           (unsigned long long)(rt->watchdog_s + rt->hang_timeout_s));
  pf_transport_abort(rt->cfg.transport, 1, why);
}

static void *beat_main(void *arg) {
  pf_runtime *rt = arg;
  uint64_t last = pf_clock_now(rt->clock);
  pthread_setname_np(pthread_self(), "pf-beat");
  pthread_mutex_lock(&rt->beat_lock);
  while (!rt->beat_stop) {
    struct timespec ts;
    uint64_t now;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    ts.tv_sec += 1;
    pthread_cond_timedwait(&rt->beat_cond, &rt->beat_lock, &ts);
    if (rt->beat_stop) break;
    pthread_mutex_unlock(&rt->beat_lock);
    now = pf_clock_now(rt->clock);
    if (now - last > STALL_NS)
      /* This process was stopped or starved: its peers are not to blame. */
      for (int r = 0; r < rt->size; r++)
        atomic_store_explicit(&rt->last_seen[r], now, memory_order_relaxed);
    last = now;
    send_heartbeats(rt);
    check_peers(rt, pf_clock_now(rt->clock));
    check_loop_op(rt, pf_clock_now(rt->clock));
    pthread_mutex_lock(&rt->beat_lock);
  }
  pthread_mutex_unlock(&rt->beat_lock);
  return NULL;
}

static int start_beat(pf_runtime *rt) {
  pthread_condattr_t ca;
  pthread_mutex_init(&rt->beat_lock, NULL);
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_init(&rt->beat_cond, &ca);
  pthread_condattr_destroy(&ca);
  if (rt->cfg.transport == NULL || rt->size < 2) return 0;
  if (pthread_create(&rt->beat, NULL, beat_main, rt) != 0) return PF_ESYS;
  rt->beat_started = 1;
  return 0;
}

static void stop_beat(pf_runtime *rt) {
  pthread_mutex_lock(&rt->beat_lock);
  rt->beat_stop = 1;
  pthread_cond_signal(&rt->beat_cond);
  pthread_mutex_unlock(&rt->beat_lock);
  if (rt->beat_started) pthread_join(rt->beat, NULL);
  rt->beat_started = 0;
}

/* ---- start and stop --------------------------------------------------------- */

/* Test hooks, NAME=RANK:N: PATHFLOW_FAULT_ALLOC (the N-th allocation of a
 * step's buffer or arena on rank RANK fails as out of memory would) and
 * PATHFLOW_FAULT_CTRL_SEND (the N-th control message rank RANK sends fails
 * at completion, unsent). Sets *n to N on that rank, 0 elsewhere or when
 * unset. */
/* The per-peer tables, and whatever data path state is left (a stopping
 * runtime drops messages still waiting for their data). */
static void free_tables(pf_runtime *rt) {
  for (int r = 0; rt->inbound != NULL && r < rt->size; r++) {
    inbound *in = &rt->inbound[r];
    pf_msg_free(in->m);
    while (in->head) {
      held_msg *h = in->head;
      in->head = h->next;
      pf_msg_free(h->m);
      free(h);
    }
  }
  free(rt->inbound);
  free(rt->data_tag_next);
  free(rt->sink);
  free(rt->last_seen);
  free(rt->ctrl);
  pf_release_hold_destroy(rt->hold);
}

static int fault_at(const char *name, int rank, pf_diag *d, int64_t *n) {
  const char *v = getenv(name);
  const char *colon = v ? strchr(v, ':') : NULL;
  int64_t r = -1, at = 0;
  char head[32];
  *n = 0;
  if (v == NULL || *v == '\0') return 0;
  if (colon != NULL && (size_t)(colon - v) < sizeof head) {
    memcpy(head, v, (size_t)(colon - v));
    head[colon - v] = '\0';
  }
  if (colon == NULL || (size_t)(colon - v) >= sizeof head ||
      pf_parse_int(head, 0, INT32_MAX, &r) != 0 || pf_parse_int(colon + 1, 1, INT64_MAX, &at) != 0)
    return pf_diag_error(d, PF_EINVAL, "%s=\"%.64s\": expected RANK:N (N >= 1), a test hook",
                         name, v);
  if (r == rank) *n = at;
  return 0;
}

/* How long a device worker whose next op waits for another device spins
 * before it sleeps, unless PATHFLOW_WORKER_SPIN_US says. Alone in the job
 * with a core for every device, the input comes from a worker of this
 * process within microseconds, and a futex sleep and wake-up cost more than
 * the spin (bench/granularity -d 2: METG 16 us without, 4.6 us with 20 us
 * of spin). Across ranks the loop thread and the other ranks' workers need
 * those cores: no spin. */
static int64_t worker_spin_default(const pf_runtime *rt) {
  long cores = sysconf(_SC_NPROCESSORS_ONLN);
  return rt->size < 2 && cores > 0 && rt->cfg.num_devices <= cores ? 50 : 0;
}

/* Whether the loop thread runs the devices' ops, unless
 * PATHFLOW_LOOP_RUNS_OPS says: in a job, when the loop thread has no CPU
 * of its own to spin on beside the workers. That is when this process has
 * one CPU in its affinity mask (mpirun --bind-to core with a core per
 * rank), or more ranks on this host than it has CPUs (--oversubscribe):
 * its loop thread, device workers and client thread then take turns on
 * that CPU, and a thread woken for a hand-off waits until the running
 * one's time slice ends: a collective made ready during the backward pass
 * was issued up to 100 us later, the optimizer step after it 40 us
 * (bench/train), and four ranks on two cores ran the fidelity graphs a
 * quarter to a third slower than with the loop running the ops. And it is
 * when each rank has one device but the host has fewer than two CPUs per
 * rank (two ranks on two cores): a rank's loop thread and its worker then
 * share a CPU (pinned there together, or put there by the scheduler), and
 * a yield does not hand it over (the kernel's EEVDF scheduler keeps a
 * spinning thread's fair share whatever it yields). A worker running ops
 * back to back left its loop waiting a time slice (~2.5 ms) to send what
 * they made: a rank that runs free of the others' inputs
 * (bench/granularity -p tree) sent in bursts while its peer waited, METG
 * over 2 us against 0.5 us with the loop running the ops, and the same
 * either way on the other patterns and on bench/dispatch
 * (docs/performance.md). With more devices than one (a GPU too) the
 * workers keep their ops: the loop would run them one at a time. One
 * thread running everything in turn, as a hand-written loop does, hands
 * nothing off. */
int pf_loop_runs_ops_default(int cpus, long online, int local_ranks, int cpu_devices,
                             int other_devices) {
  if (cpus == 1 || (online > 0 && local_ranks > online)) return 1;
  return cpu_devices == 1 && other_devices == 0 && cpus < 2 * local_ranks;
}

static int64_t loop_runs_ops_default(const pf_runtime *rt) {
  cpu_set_t set;
  if (rt->cfg.transport == NULL) return 0; /* no loop ops: nothing to hand off */
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof set, &set) != 0) return 0;
  return pf_loop_runs_ops_default(CPU_COUNT(&set), sysconf(_SC_NPROCESSORS_ONLN),
                                  rt->cfg.transport->local_size, rt->cfg.num_devices,
                                  rt->cfg.n_extra_devices);
}

static int read_env(pf_runtime *rt, pf_diag *d) {
  int64_t spin_us, poll_max_ms, idle_poll_ms, trace, worker_spin_us, bind, cache_bytes, loop_ops;
  int64_t fault_send;
  int rc;
  if ((rc = pf_env_int("PATHFLOW_SPIN_US", 1000, 0, 10000000, &spin_us, d)) ||
      (rc = pf_env_int("PATHFLOW_POLL_MAX_MS", 2, 1, 1000, &poll_max_ms, d)) ||
      (rc = pf_env_int("PATHFLOW_IDLE_POLL_MS", 20, 1, 1000, &idle_poll_ms, d)) ||
      (rc = pf_env_int("PATHFLOW_RANK_TIMEOUT_S", 10, 0, 86400, &rt->rank_timeout_s, d)) ||
      (rc = pf_env_int("PATHFLOW_WATCHDOG_S", 30, 0, 86400, &rt->watchdog_s, d)) ||
      (rc = pf_env_int("PATHFLOW_HANG_TIMEOUT_S", 600, 0, 864000, &rt->hang_timeout_s, d)) ||
      (rc = pf_env_int("PATHFLOW_TRACE", 0, 0, 1, &trace, d)) ||
      (rc = pf_env_int("PATHFLOW_WORKER_SPIN_US", worker_spin_default(rt), 0, 1000000,
                       &worker_spin_us, d)) ||
      (rc = pf_env_int("PATHFLOW_BIND_WORKERS", rt->cfg.transport != NULL, 0, 1, &bind, d)) ||
      (rc = pf_env_int("PATHFLOW_LOOP_RUNS_OPS", loop_runs_ops_default(rt), 0, 1, &loop_ops,
                       d)) ||
      /* Read where blocks are freed (runtime/storage.c), with the same parser;
       * checked here so that a bad value fails pf_init, not a later step. */
      (rc = pf_env_bytes("PATHFLOW_CACHE_BYTES", 0, 0, &cache_bytes, d)) ||
      (rc = fault_at("PATHFLOW_FAULT_ALLOC", rt->rank, d, &rt->fault_alloc)) ||
      (rc = fault_at("PATHFLOW_FAULT_CTRL_SEND", rt->rank, d, &fault_send)) ||
      (rc = pf_trace_check_dir(trace != 0, d)))
    return rc;
  rt->bind_workers = (int)bind;
  /* Without a transport the executor has no loop ops: the loop thread does
   * not run steps' ops there. */
  rt->loop_runs_ops = loop_ops != 0 && rt->cfg.transport != NULL;
  if (fault_send > 0 && rt->cfg.transport != NULL && rt->cfg.transport->ops->fault_ctrl_send)
    rt->cfg.transport->ops->fault_ctrl_send(rt->cfg.transport, fault_send);
  rt->worker_spin_ns = (uint64_t)worker_spin_us * 1000u;
  rt->trace = (int)trace;
  rt->spin_ns = (uint64_t)spin_us * 1000u;
  rt->poll_max_ms = (uint64_t)poll_max_ms;
  rt->idle_poll_ms = (uint64_t)PF_MAXOF(idle_poll_ms, poll_max_ms);
  return 0;
}

/* A start that fails before the executor has the plugin devices still
 * destroys them (pf_runtime_config.extra_devices). */
static void drop_extra_devices(const pf_runtime_config *cfg) {
  for (int i = 0; cfg->extra_devices != NULL && i < cfg->n_extra_devices; i++)
    if (cfg->extra_devices[i] != NULL) cfg->extra_devices[i]->ops->destroy(cfg->extra_devices[i]);
}

int pf_runtime_start(const pf_runtime_config *cfg, pf_runtime **out) {
  pf_runtime *rt;
  pf_executor_config ec = {0};
  pf_service_config sc = {0};
  pf_diag d;
  int rc;
  *out = NULL;
  if ((rt = calloc(1, sizeof *rt)) == NULL) {
    drop_extra_devices(cfg);
    return PF_ENOMEM;
  }
  rt->cfg = *cfg;
  rt->cfg.extra_devices = NULL; /* the caller's array; the executor has them */
  rt->yield_every = YIELD_EVERY;
  rt->client_cpu = -1;
  pf_clock_real_init(&rt->clock_own);
  rt->clock = cfg->clock ? cfg->clock : &rt->clock_own;
  rt->rank = cfg->transport ? cfg->transport->rank : 0;
  rt->size = cfg->transport ? cfg->transport->size : 1;
  pf_diag_init(&d);
  if ((rc = read_env(rt, &d)) != 0) {
    fprintf(stderr, "pathflow: %s\n", d.msg);
    free(rt);
    drop_extra_devices(cfg);
    return rc;
  }
  rt->last_seen = pf_calloc((size_t)rt->size, sizeof *rt->last_seen);
  rt->ctrl = pf_calloc((size_t)rt->size, sizeof *rt->ctrl);
  rt->data_tag_next = pf_calloc((size_t)rt->size, sizeof *rt->data_tag_next);
  rt->inbound = pf_calloc((size_t)rt->size, sizeof *rt->inbound);
  if (cfg->transport) {
    /* The last tag window is the data path's (the service's steps use the
     * others). */
    rt->data_tag_n = pf_tag_window(cfg->transport->tag_ub);
    rt->data_tag_lo = PF_MAX_IN_FLIGHT * rt->data_tag_n;
  }
  if (cfg->transport && cfg->transport->needs_polling && rt->size > 1 &&
      pf_release_hold_create(rt->size, &rt->hold) != 0)
    rt->hold = NULL; /* releases then go one message each, as they come */
  if (rt->last_seen == NULL || rt->ctrl == NULL || rt->data_tag_next == NULL ||
      rt->inbound == NULL) {
    free_tables(rt);
    free(rt);
    drop_extra_devices(cfg);
    return PF_ENOMEM;
  }
  for (int r = 0; r < rt->size; r++) atomic_init(&rt->last_seen[r], pf_clock_now(rt->clock));
  ec.num_devices = cfg->num_devices;
  ec.rank = rt->rank;
  ec.registry = cfg->registry;
  ec.loop_op = cfg->transport ? post_loop_op : NULL;
  ec.loop_ops_start = cfg->transport ? post_start_ops : NULL;
  ec.loop_arg = rt;
  ec.record_times = rt->trace;
  ec.spin_ns = rt->worker_spin_ns;
  ec.fault_alloc = rt->fault_alloc;
  ec.clock = rt->clock;
  ec.device_memory = cfg->device_memory;
  ec.extra_devices = cfg->extra_devices; /* taken over even if it fails */
  ec.n_extra_devices = cfg->n_extra_devices;
  ec.loop_runs_ops = rt->loop_runs_ops;
  ec.around_op = around_op;
  /* Ranks on one host share its cores: each starts at its own offset.
   * Only CPU devices have workers to pin (a GPU's launcher sleeps). */
  ec.bind_first = !rt->bind_workers ? -1
                  : (cfg->transport ? cfg->transport->local_rank : 0) * cfg->num_devices;
  ec.bind_span = (cfg->transport ? cfg->transport->local_size : 1) * cfg->num_devices;
  if ((rc = pf_executor_start(&ec, &rt->ex)) != 0) {
    free_tables(rt);
    free(rt);
    return rc;
  }
  sc.rank = rt->rank;
  sc.executor = rt->ex;
  sc.transport = cfg->transport;
  sc.reply = service_reply;
  sc.reply_arg = rt;
  sc.post_done = post_done;
  sc.post_call = post_call;
  sc.post_arg = rt;
  sc.trace = NULL;
  sc.clock = rt->clock;
  if (rt->trace) {
    char why[256];
    if ((rc = pf_trace_open(rt->rank, rt->size, pf_executor_num_devices(rt->ex), &rt->timeline,
                            why, sizeof why)) != 0) {
      fprintf(stderr, "pathflow: %s\n", why);
      pf_executor_stop(rt->ex);
      free_tables(rt);
      free(rt);
      return rc;
    }
    sc.trace = rt->timeline;
  }
  if ((rc = pf_service_create(&sc, &rt->svc)) != 0) {
    pf_trace_close(rt->timeline);
    pf_executor_stop(rt->ex);
    free_tables(rt);
    free(rt);
    return rc;
  }
  pthread_mutex_init(&rt->lock, NULL);
  pthread_cond_init(&rt->cond, NULL);
  uv_loop_init(&rt->loop);
  uv_async_init(&rt->loop, &rt->wake, on_wake);
  uv_idle_init(&rt->loop, &rt->spin);
  uv_timer_init(&rt->loop, &rt->poll);
  uv_timer_init(&rt->loop, &rt->tick);
  uv_prepare_init(&rt->loop, &rt->unlock_mpi);
  uv_check_init(&rt->loop, &rt->relock_mpi);
  pthread_mutex_init(&rt->mpi_lock, NULL);
  rt->wake.data = rt->spin.data = rt->poll.data = rt->tick.data = rt;
  rt->unlock_mpi.data = rt->relock_mpi.data = rt;
  atomic_init(&rt->last_poll, pf_clock_now(rt->clock));
  atomic_init(&rt->loop_asleep, 1); /* until it spins */
  if (cfg->transport) {
    uv_prepare_start(&rt->unlock_mpi, on_unlock_mpi);
    uv_check_start(&rt->relock_mpi, on_relock_mpi);
    /* They must not keep the loop alive on their own. */
    uv_unref((uv_handle_t *)&rt->unlock_mpi);
    uv_unref((uv_handle_t *)&rt->relock_mpi);
  }
  /* The tick keeps heartbeats and the watchdog going; it must not keep the
   * loop alive on its own. */
  uv_timer_start(&rt->tick, on_tick, 1000, 1000);
  uv_unref((uv_handle_t *)&rt->tick);
  if (cfg->transport && cfg->transport->needs_polling) {
    rt->poll_ms = 1;
    uv_timer_start(&rt->poll, on_poll, 1, 0);
  }
  if (cfg->transport && cfg->transport->ops->set_wake)
    /* A transport that says when something arrives wakes the loop. */
    cfg->transport->ops->set_wake(cfg->transport, transport_woke, rt);
  if (pthread_create(&rt->thread, NULL, loop_main, rt) != 0) {
    uv_close((uv_handle_t *)&rt->wake, NULL);
    uv_close((uv_handle_t *)&rt->spin, NULL);
    uv_close((uv_handle_t *)&rt->poll, NULL);
    uv_close((uv_handle_t *)&rt->tick, NULL);
    uv_close((uv_handle_t *)&rt->unlock_mpi, NULL);
    uv_close((uv_handle_t *)&rt->relock_mpi, NULL);
    uv_run(&rt->loop, UV_RUN_DEFAULT);
    uv_loop_close(&rt->loop);
    pf_service_destroy(rt->svc);
    pf_trace_close(rt->timeline);
    pf_executor_stop(rt->ex);
    free_tables(rt);
    free(rt);
    return PF_ESYS;
  }
  {
    /* With the workers pinned, the loop goes on its first worker's CPU:
     * each core then holds one worker and at most one loop (which runs
     * that worker's ops when it is the rank's only one:
     * pf_loop_runs_ops_default). Left floating, both ranks' loops
     * sometimes settled on one core beside a worker, halving that
     * worker's speed for a while. */
    int cpu = pf_executor_worker_cpu(rt->ex, 0);
    cpu_set_t one, mask;
    if (cpu >= 0) {
      CPU_ZERO(&one);
      CPU_SET(cpu, &one);
      (void)pthread_setaffinity_np(rt->thread, sizeof one, &one);
      /* Every CPU of the mask carries a rank's loop: a client thread of
       * this process is best off beside its own (pf_runtime_client_cpu). */
      if (cfg->transport != NULL && sched_getaffinity(0, sizeof mask, &mask) == 0 &&
          CPU_COUNT(&mask) <= cfg->transport->local_size)
        rt->client_cpu = cpu;
    }
  }
  if (start_beat(rt) != 0)
    /* Without heartbeats its peers would declare this rank lost. */
    fprintf(stderr, "pathflow: rank %d: could not start the heartbeat thread: liveness is "
            "checked by mpirun only (set PATHFLOW_RANK_TIMEOUT_S=0 on every rank)\n", rt->rank);
  *out = rt;
  return 0;
}

void pf_runtime_wait_shutdown(pf_runtime *rt) {
  pthread_mutex_lock(&rt->lock);
  while (!rt->shutdown_seen) pthread_cond_wait(&rt->cond, &rt->lock);
  pthread_mutex_unlock(&rt->lock);
}

void pf_runtime_stop(pf_runtime *rt) {
  if (rt == NULL) return;
  stop_beat(rt); /* before the loop goes: it makes MPI calls */
  if (rt->rank == 0)
    for (int r = 1; r < rt->size; r++) pf_runtime_send(rt, r, pf_msg_new(PF_MSG_SHUTDOWN));
  pthread_mutex_lock(&rt->lock);
  rt->stop_requested = 1;
  pthread_mutex_unlock(&rt->lock);
  uv_async_send(&rt->wake);
  /* The loop closes its wake handle as it stops: the transport must not
   * use it any more (the loop wakes itself until its sends are out). */
  if (rt->cfg.transport && rt->cfg.transport->ops->set_wake)
    rt->cfg.transport->ops->set_wake(rt->cfg.transport, NULL, NULL);
  pthread_join(rt->thread, NULL);
  expect_end(rt);
  uv_loop_close(&rt->loop);
  pf_executor_stop(rt->ex);
  pf_service_destroy(rt->svc);
  pf_trace_close(rt->timeline);
  pf_storage_cache_clear();
  while (rt->head) {
    event *e = rt->head;
    rt->head = e->next;
    pf_msg_free(e->msg);
    free(e);
  }
  pthread_mutex_destroy(&rt->lock);
  pthread_cond_destroy(&rt->cond);
  pthread_mutex_destroy(&rt->mpi_lock);
  pthread_mutex_destroy(&rt->beat_lock);
  pthread_cond_destroy(&rt->beat_cond);
  free_tables(rt);
  free(rt);
}
