/* Compile, execute, futures: the controller's half. Plans go to the
 * executors once (load); each execution then costs one small run message
 * per participating rank, plus the host feeds. */
#include <stdlib.h>
#include <string.h>

#include "api/execute_internal.h"
#include "base/layout.h"
#include "base/util.h"

/* ---- executables ---------------------------------------------------------- */

static void unload_everywhere(pf_executable *e) {
  for (int r = 0; r < e->ctx->size; r++) {
    pf_msg *m;
    if (!e->participates[r]) continue;
    if ((m = pf_msg_new(PF_MSG_UNLOAD)) == NULL) continue;
    m->executable = e->id;
    pf_controller_send(e->ctx, r, m);
  }
}

static void exe_unref(pf_executable *e) {
  if (--e->refs > 0) return;
  if (e->prev)
    e->prev->next = e->next;
  else
    e->ctx->executables = e->next;
  if (e->next) e->next->prev = e->prev;
  unload_everywhere(e);
  pf_compiled_free(e->compiled);
  free(e->participates);
  free(e->mem_devices);
  free(e->mem_peaks);
  free(e);
}

/* The devices a step of e needs memory on, listed once so that the
 * dispatcher's check costs O(those devices) per step. */
static int list_memory(pf_executable *e) {
  const pf_compiled *c = e->compiled;
  int n = 0;
  for (int g = 0; g < c->n_devices; g++) n += c->peak[g] > 0;
  e->mem_devices = pf_mallocn((size_t)n, sizeof *e->mem_devices);
  e->mem_peaks = pf_mallocn((size_t)n, sizeof *e->mem_peaks);
  if (e->mem_devices == NULL || e->mem_peaks == NULL) return PF_ENOMEM;
  for (int g = 0; g < c->n_devices; g++)
    if (c->peak[g] > 0) {
      e->mem_devices[e->n_mem] = g;
      e->mem_peaks[e->n_mem++] = c->peak[g];
    }
  return 0;
}

static int plan_is_empty(const pf_plan *p) { return p->n_ops == 0 && p->n_buffers == 0; }

/* What an executor takes, decoding and loading its plan, per op: ~950
 * bytes with its buffers, lists and tables (a stencil of a million
 * programs on 2 ranks: 473 MB on rank 1). */
#define EXPECT_BYTES_PER_OP 1024u
/* Plans expected to take less are not announced. */
#define EXPECT_MIN ((uint64_t)64 << 20)

/* Tells each other rank, before the schedule, about how much memory its
 * plan will take (PF_MSG_EXPECT), so that it readies it meanwhile on a core
 * that would otherwise wait (runtime/runtime.c): a million programs on 2
 * ranks compiled ~0.2 s sooner (docs/performance.md). The estimate is
 * the graph's programs shared out by devices (one op each; a program on
 * several devices has more, and is then underestimated: only less is
 * readied). A hint: a send that fails changes nothing, and is not an
 * error of the compile. Returns the ranks told (ctx->size flags, for
 * expect_none), or NULL when none was. */
static uint8_t *expect_plans(pf_context *ctx, const pf_graph *g, uint64_t id) {
  const pf_cluster *cl = &ctx->cluster;
  uint64_t *on_rank;
  uint8_t *told;
  int any = 0;
  if (cl->n_devices == 0 || g->n_programs * EXPECT_BYTES_PER_OP < EXPECT_MIN) return NULL;
  on_rank = pf_calloc((size_t)ctx->size, sizeof *on_rank);
  told = pf_calloc((size_t)ctx->size, 1);
  if (on_rank == NULL || told == NULL) {
    free(on_rank);
    free(told);
    return NULL;
  }
  for (int d = 0; d < cl->n_devices; d++)
    if (cl->devices[d].rank >= 0 && cl->devices[d].rank < ctx->size) on_rank[cl->devices[d].rank]++;
  for (int r = 1; r < ctx->size; r++) {
    uint64_t bytes = (uint64_t)g->n_programs * on_rank[r] / (uint64_t)cl->n_devices *
                     EXPECT_BYTES_PER_OP;
    pf_msg *m;
    if (bytes < EXPECT_MIN || (m = pf_msg_new(PF_MSG_EXPECT)) == NULL) continue;
    m->executable = id;
    m->bytes = bytes;
    told[r] = pf_runtime_send(ctx->runtime, r, m) == 0;
    any |= told[r];
  }
  free(on_rank);
  if (!any) {
    free(told);
    return NULL;
  }
  return told;
}

/* Tells the ranks told by expect_plans that will get no plan after all
 * (the compile failed: participates NULL; or their plan is empty) that
 * none is coming: an Expect of 0 bytes lets the memory readied go at once,
 * not after EXPECT_HOLD_NS (runtime/runtime.c). Frees `told`. */
static void expect_none(pf_context *ctx, uint64_t id, uint8_t *told, const uint8_t *participates) {
  for (int r = 1; told != NULL && r < ctx->size; r++) {
    pf_msg *m;
    if (!told[r] || (participates != NULL && participates[r]) ||
        (m = pf_msg_new(PF_MSG_EXPECT)) == NULL)
      continue;
    m->executable = id;
    (void)pf_runtime_send(ctx->runtime, r, m);
  }
  free(told);
}

/* Sends a LOAD (with the rank's plan) or a CONNECT to every rank marked in
 * `to`, rank 0's own last (its loop thread would otherwise make the
 * communicators before the others were asked to), and waits for every
 * answer. A CONNECT carries the device communicator ids the LOAD round
 * collected (ids). Rank memory_later's memory plan (-1: none) is made just
 * before its message: refused, that rank is sent nothing and the round
 * returns PF_EMEMORY. Returns the first error any rank reported (its
 * message in w). */
static int load_round(pf_executable *e, pf_msg_kind kind, const uint8_t *to, pf_waiter *w,
                      const pf_msg_comm_id *ids, uint32_t n_ids, int memory_later) {
  pf_context *ctx = e->ctx;
  pf_compiled *c = e->compiled;
  int n = 0, sent = 0, rc, mrc = 0;
  for (int r = 0; r < c->n_ranks; r++) n += to[r] != 0;
  memset(w, 0, sizeof *w);
  pf_controller_expect(ctx, w, e->id, n);
  for (int k = 1; k <= c->n_ranks; k++) {
    int r = k % c->n_ranks;
    pf_msg *m;
    if (!to[r]) continue;
    /* The controller's own memory plan, left for now: the others decode
     * their plans meanwhile (pf_schedule_split). Refused, its plan is not
     * sent; the others' are unloaded with the executable. */
    if (r == memory_later &&
        (mrc = pf_schedule_memory(c, &ctx->cluster, r, &ctx->diag)) != 0) {
      snprintf(w->message, sizeof w->message, "%s", ctx->diag.msg);
      break;
    }
    if ((m = pf_msg_new(kind)) == NULL) break;
    if (kind == PF_MSG_LOAD) {
      m->plan = c->plans[r];
      c->plans[r] = NULL;
    } else {
      m->executable = e->id;
      if (n_ids > 0) {
        if ((m->comm_ids = pf_mallocn(n_ids, sizeof *ids)) == NULL) {
          pf_msg_free(m);
          break;
        }
        memcpy(m->comm_ids, ids, n_ids * sizeof *ids);
        m->n_comm_ids = n_ids;
      }
    }
    if (pf_controller_send(ctx, r, m) != 0) break;
    sent++;
  }
  if (sent < n) {
    pthread_mutex_lock(&ctx->lock);
    w->pending -= n - sent;
    pthread_mutex_unlock(&ctx->lock);
  }
  rc = pf_controller_wait(ctx, w);
  if (mrc != 0) return mrc;
  return rc == 0 && sent < n ? PF_ENOMEM : rc;
}

int pf_compile(pf_graph *g, pf_executable **out) {
  pf_context *ctx;
  pf_executable *e;
  pf_compiled *c;
  pf_waiter w;
  uint8_t *connect, *told;
  int rc, n_connect = 0, later;
  if (g == NULL || out == NULL) return PF_EINVAL;
  *out = NULL;
  ctx = g->env.owner;
  if ((rc = pf_context_live(ctx, "pf_compile")) != 0) return rc;
  if ((e = calloc(1, sizeof *e)) == NULL) return pf_context_error(ctx, PF_ENOMEM, "compile: out of memory");
  e->ctx = ctx;
  e->id = pf_context_new_id(ctx);
  told = expect_plans(ctx, g, e->id);
  /* The controller plans its own plan's memory once the others are on
   * their way (load_round): it is on no one's path then. */
  later = ctx->size > 1 ? 0 : -1;
  rc = pf_schedule_split(g, &ctx->cluster, e->id, later, &c, &ctx->diag);
  if (rc != 0) {
    expect_none(ctx, e->id, told, NULL);
    free(e);
    return rc;
  }
  if (pf_comm_groups_number(&ctx->groups, c->plans, c->n_ranks) != 0) {
    expect_none(ctx, e->id, told, NULL);
    pf_compiled_free(c);
    free(e);
    return pf_context_error(ctx, PF_ENOMEM, "compile: out of memory");
  }
  e->compiled = c;
  e->refs = 1;
  e->weight = 1;
  e->dispatch = c->dispatch;
  e->stages = c->stages;
  e->participates = pf_calloc((size_t)ctx->size, 1);
  if (e->participates == NULL) {
    expect_none(ctx, e->id, told, NULL);
    free(e->participates);
    free(e->mem_devices);
    free(e->mem_peaks);
    pf_compiled_free(c);
    free(e);
    return pf_context_error(ctx, PF_ENOMEM, "compile: out of memory");
  }
  for (int r = 0; r < c->n_ranks; r++)
    if (!plan_is_empty(c->plans[r])) {
      e->participates[r] = 1;
      e->n_participants++;
    }
  if (later >= 0 && !e->participates[later]) {
    (void)pf_schedule_memory(c, &ctx->cluster, later, &ctx->diag); /* empty: nothing to refuse */
    later = -1;
  }
  expect_none(ctx, e->id, told, e->participates);
  /* Two phases: every rank checks its plan (its kernels, its transfers)
   * and answers; only when all succeeded are the communicators of the
   * collectives made, which every member must do together: a rank that
   * lacks a kernel then fails the compile, naming itself and the kernel,
   * instead of leaving its peers in communicator creation forever. */
  memset(&w, 0, sizeof w);
  connect = pf_calloc((size_t)ctx->size, 1);
  for (int r = 0; connect != NULL && r < c->n_ranks; r++) {
    connect[r] = e->participates[r] && c->plans[r]->n_comms > 0;
    n_connect += connect[r];
  }
  rc = connect == NULL ? PF_ENOMEM
                       : load_round(e, PF_MSG_LOAD, e->participates, &w, NULL, 0, later);
  if (rc == 0 && list_memory(e) != 0) rc = PF_ENOMEM;
  {
    /* The load round's ids go with CONNECT (a new waiter each round). */
    pf_msg_comm_id *ids = w.comm_ids;
    uint32_t n_ids = w.n_comm_ids;
    w.comm_ids = NULL;
    if (rc == 0 && n_connect > 0) rc = load_round(e, PF_MSG_CONNECT, connect, &w, ids, n_ids, -1);
    free(ids);
    free(w.comm_ids);
  }
  free(connect);
  e->next = ctx->executables;
  if (e->next) e->next->prev = e;
  ctx->executables = e;
  if (rc != 0) {
    exe_unref(e); /* unloads where it did load */
    return pf_context_error(ctx, rc, "%s", w.message[0] ? w.message : pf_strerror(rc));
  }
  *out = e;
  return 0;
}

void pf_executable_destroy(pf_executable *e) {
  if (e == NULL || e->destroyed) return;
  e->destroyed = 1;
  exe_unref(e);
}

void pf_executable_free_all(pf_context *ctx) {
  while (ctx->executables) {
    pf_executable *e = ctx->executables;
    e->refs = 1;
    exe_unref(e);
  }
}

int pf_executable_set_weight(pf_executable *e, double weight) {
  if (e == NULL) return PF_EINVAL;
  pf_context_begin(e->ctx);
  if (!(weight > 0) || weight > 1e9)
    return pf_context_error(e->ctx, PF_EINVAL, "weight %g: need a number > 0 and <= 1e9", weight);
  pthread_mutex_lock(&e->ctx->lock);
  e->weight = weight;
  pthread_mutex_unlock(&e->ctx->lock);
  return 0;
}

int pf_executable_stats_get(pf_executable *e, pf_executable_stats *out) {
  if (e == NULL) return PF_EINVAL;
  pf_context_begin(e->ctx);
  if (out == NULL) return pf_context_error(e->ctx, PF_EINVAL, "pf_executable_stats_get: out is NULL");
  pthread_mutex_lock(&e->ctx->lock);
  out->weight = e->weight;
  out->steps_dispatched = e->dispatched;
  out->steps_completed = e->completed;
  out->share = e->contended > 0 ? e->won / e->contended : 0;
  out->expected_share = e->contended > 0 ? e->expected / e->contended : 0;
  pthread_mutex_unlock(&e->ctx->lock);
  return 0;
}

int pf_executable_peak_memory(const pf_executable *e, int device, int64_t *bytes) {
  if (e == NULL) return PF_EINVAL;
  pf_context_begin(e->ctx);
  if (bytes == NULL || device < 0 || device >= e->compiled->n_devices)
    return pf_context_error(e->ctx, PF_EINVAL, "device %d: the devices are 0 to %d", device,
                            e->compiled->n_devices - 1);
  *bytes = e->compiled->peak[device];
  return 0;
}

int pf_executable_num_inputs(const pf_executable *e) { return e ? e->compiled->n_inputs : 0; }
int pf_executable_num_outputs(const pf_executable *e) { return e ? e->compiled->n_outputs : 0; }

static int io_get(pf_context *ctx, const pf_io *io, int n, int i, const char **name,
                  pf_spec *spec) {
  pf_context_begin(ctx);
  if (i < 0 || i >= n) return pf_context_error(ctx, PF_EINVAL, "index %d: there are %d", i, n);
  if (name) *name = io[i].name;
  if (spec) *spec = io[i].spec;
  return 0;
}

int pf_executable_input(const pf_executable *e, int i, const char **name, pf_spec *spec) {
  return e ? io_get(e->ctx, e->compiled->inputs, e->compiled->n_inputs, i, name, spec) : PF_EINVAL;
}

int pf_executable_output(const pf_executable *e, int i, const char **name, pf_spec *spec) {
  return e ? io_get(e->ctx, e->compiled->outputs, e->compiled->n_outputs, i, name, spec)
           : PF_EINVAL;
}

static int io_find(const pf_io *io, int n, const char *name) {
  for (int i = 0; name && i < n; i++)
    if (strcmp(io[i].name, name) == 0) return i;
  return -1;
}

/* ---- execute ------------------------------------------------------------------ */

static int check_feeds(pf_context *ctx, const pf_compiled *c, int n, const pf_feed *feeds,
                       int *which) {
  char want[128], got[128];
  for (int i = 0; i < c->n_inputs; i++) which[i] = -1;
  for (int k = 0; k < n; k++) {
    int i = io_find(c->inputs, c->n_inputs, feeds[k].name);
    const pf_spec *have = NULL;
    if (feeds[k].name == NULL) return pf_context_error(ctx, PF_EINVAL, "feed %d has no name", k);
    if (i < 0)
      return pf_context_error(ctx, PF_ENOTFOUND, "feed \"%s\": no input of that name",
                              feeds[k].name);
    if (which[i] >= 0)
      return pf_context_error(ctx, PF_EEXIST, "input \"%s\" is fed twice", feeds[k].name);
    if ((feeds[k].tensor != NULL) == (feeds[k].buffer.id != 0))
      return pf_context_error(ctx, PF_EINVAL,
                              "feed \"%s\": give exactly one of a tensor and a buffer",
                              feeds[k].name);
    if (feeds[k].tensor != NULL) {
      have = pf_tensor_spec(feeds[k].tensor);
    } else {
      pf_buffer_entry *b = pf_buffers_find(ctx, feeds[k].buffer.id);
      if (b == NULL)
        return pf_context_error(ctx, PF_ESTALE, "feed \"%s\": buffer %llu was released or never made",
                                feeds[k].name, (unsigned long long)feeds[k].buffer.id);
      have = &b->spec;
    }
    if (feeds[k].donate && feeds[k].tensor != NULL)
      return pf_context_error(ctx, PF_EINVAL,
                              "feed \"%s\": donate gives up a buffer; this feed is a tensor",
                              feeds[k].name);
    for (int j = 0; feeds[k].donate && j < n; j++)
      if (j != k && feeds[j].tensor == NULL && feeds[j].buffer.id == feeds[k].buffer.id)
        return pf_context_error(ctx, PF_EINVAL,
                                "feed \"%s\" donates buffer %llu, which feed \"%s\" of the "
                                "same call still reads",
                                feeds[k].name, (unsigned long long)feeds[k].buffer.id,
                                feeds[j].name ? feeds[j].name : "(no name)");
    if (!pf_spec_equal(have, &c->inputs[i].spec))
      return pf_context_error(ctx, PF_EFEEDSHAPE, "feed \"%s\": got %s, the input is %s",
                              feeds[k].name, pf_spec_str(have, got, sizeof got),
                              pf_spec_str(&c->inputs[i].spec, want, sizeof want));
    which[i] = k;
  }
  for (int i = 0; i < c->n_inputs; i++)
    if (which[i] < 0)
      return pf_context_error(ctx, PF_ENOFEED, "input \"%s\" has no feed", c->inputs[i].name);
  return 0;
}

/* 1 if buffer b already lies where and how input `in` wants its shards.
 * One shard is the whole value however it is said to be sharded (a split
 * or a partial over one device is the value itself): a buffer made
 * replicated on one device feeds an input split over one device as it is,
 * not through the host. */
static int same_layout(const pf_buffer_entry *b, const pf_io *in) {
  if (b->num_shards != in->num_shards ||
      (in->num_shards > 1 && !pf_sharding_equal(b->sharding, in->sharding)))
    return 0;
  for (int s = 0; s < in->num_shards; s++)
    if (b->homes[s].rank != in->shards[s].rank || b->homes[s].device != in->shards[s].device)
      return 0;
  return 1;
}

int pf_put_shards(pf_context *ctx, const char *kind, const pf_io *in, const void *data,
                  uint64_t *id) {
  pf_storage **shards;
  pf_spec local;
  int rc;
  pf_shard_spec(&in->spec, in->sharding, in->num_shards, &local, "", NULL);
  if (pf_spec_nbytes(&local) > (size_t)PF_HOST_SHARD_MAX)
    return pf_context_error(ctx, PF_ERANGE,
                            "%s \"%s\": a shard holds %zu bytes, over the %lld bytes a shard "
                            "moved from the host may hold (PF_HOST_SHARD_MAX); split the value "
                            "over more devices or make it on the devices",
                            kind, in->name, pf_spec_nbytes(&local), (long long)PF_HOST_SHARD_MAX);
  if ((shards = pf_calloc((size_t)in->num_shards, sizeof *shards)) == NULL)
    return pf_context_error(ctx, PF_ENOMEM, "feed: out of memory");
  rc = pf_shards_scatter(&in->spec, in->sharding, in->num_shards, data, shards);
  if (rc != 0) {
    free(shards);
    return pf_context_error(ctx, rc, "feed \"%s\": out of memory", in->name);
  }
  *id = pf_context_new_id(ctx);
  for (int s = 0; s < in->num_shards && rc == 0; s++) {
    pf_msg *m = pf_msg_new(PF_MSG_PUT);
    if (m == NULL || (m->shards = malloc(sizeof *m->shards)) == NULL ||
        (m->data = calloc(1, sizeof *m->data)) == NULL) {
      pf_msg_free(m);
      rc = pf_context_error(ctx, PF_ENOMEM, "feed: out of memory");
      break;
    }
    m->buffer = *id;
    m->shards[0] = s;
    m->n_shards = 1;
    m->data[0] = shards[s];
    shards[s] = NULL;
    pf_shard_spec(&in->spec, in->sharding, in->num_shards, &m->spec, "", NULL);
    rc = pf_controller_send(ctx, in->shards[s].rank, m);
  }
  for (int s = 0; s < in->num_shards; s++) pf_storage_unref(shards[s]);
  free(shards);
  return rc;
}

static void future_link(pf_context *ctx, pf_future *f) {
  f->next = ctx->futures;
  if (f->next) f->next->prev = f;
  ctx->futures = f;
}

static pf_home *homes_of(const pf_io *io);

/* Backpressure: takes one of ctx->max_pending admissions, waiting for a
 * completion when `block`, else PF_EAGAIN. The user thread takes
 * admissions and the loop thread gives them back under ctx->lock (then
 * broadcasts cond), so a wait here cannot miss the one that frees. The
 * fast path is one atomic, no lock. */
_Static_assert(PF_HOST_SHARD_MAX == PF_MSG_DATA_MAX,
               "the public shard limit is the one the runtime decodes");

static int admit(pf_context *ctx, int block) {
  int n = atomic_load_explicit(&ctx->n_pending, memory_order_relaxed);
  for (;;) {
    while (n < ctx->max_pending)
      if (atomic_compare_exchange_weak_explicit(&ctx->n_pending, &n, n + 1, memory_order_relaxed,
                                                memory_order_relaxed))
        return 0;
    if (!block)
      return pf_context_error(ctx, PF_EAGAIN,
                              "execute: %d executions pending, the most admitted at once "
                              "(pf_init_options.max_pending): try again when one completes",
                              n);
    pthread_mutex_lock(&ctx->lock);
    while ((n = atomic_load_explicit(&ctx->n_pending, memory_order_relaxed)) >= ctx->max_pending)
      pthread_cond_wait(&ctx->cond, &ctx->lock);
    pthread_mutex_unlock(&ctx->lock);
  }
}

static void unadmit(pf_context *ctx) {
  atomic_fetch_sub_explicit(&ctx->n_pending, 1, memory_order_relaxed);
}

/* The step's dispatcher record: one run message per participating rank,
 * in stage order, sent when the step gets a slot. Errors: PF_ENOMEM
 * (nothing kept). */
static int build_runs(pf_executable *e, pf_future *f, const uint64_t *in_ids,
                      const uint64_t *drop, int n_drop) {
  const pf_compiled *c = e->compiled;
  pf_step_req *req = calloc(1, sizeof *req);
  int ok;
  if (req == NULL) return PF_ENOMEM;
  req->f = f;
  req->slot = -1;
  req->runs = pf_calloc((size_t)c->n_stages, sizeof *req->runs);
  req->ranks = pf_calloc((size_t)c->n_stages, sizeof *req->ranks);
  req->sends = pf_calloc((size_t)c->n_stages, sizeof *req->sends);
  ok = req->runs != NULL && req->ranks != NULL && req->sends != NULL;
  for (int k = 0; ok && k < c->n_stages; k++) {
    pf_msg *m = pf_msg_new(PF_MSG_RUN);
    pf_runtime_reservation *res = m != NULL ? pf_runtime_send_reserve() : NULL;
    if (res == NULL) {
      pf_msg_free(m);
      ok = 0;
      break;
    }
    req->sends[req->n_runs] = res;
    req->runs[req->n_runs++] = m;
    req->ranks[k] = c->stages[k];
    m->executable = e->id;
    /* Sequential dispatch sends each stage's run once the stage before has
     * started (every stage but the last says when). */
    m->ack_start = e->dispatch == PF_DISPATCH_SEQUENTIAL && k + 1 < c->n_stages;
    m->n_inputs = (uint32_t)c->n_inputs;
    m->n_outputs = (uint32_t)c->n_outputs;
    m->n_drop = (uint32_t)n_drop;
    m->inputs = pf_mallocn((size_t)c->n_inputs, sizeof *m->inputs);
    m->outputs = pf_mallocn((size_t)c->n_outputs, sizeof *m->outputs);
    m->drop = pf_mallocn((size_t)n_drop, sizeof *m->drop);
    if (!m->inputs || !m->outputs || !m->drop) {
      ok = 0;
      break;
    }
    memcpy(m->inputs, in_ids, (size_t)c->n_inputs * sizeof *in_ids);
    memcpy(m->outputs, f->output_ids, (size_t)c->n_outputs * sizeof *in_ids);
    memcpy(m->drop, drop, (size_t)n_drop * sizeof *drop);
  }
  if (!ok) {
    pf_step_req_free(req);
    return PF_ENOMEM;
  }
  f->req = req;
  return 0;
}

static int execute(pf_executable *e, int n_feeds, const pf_feed *feeds, pf_future **out,
                   int block) {
  pf_context *ctx;
  const pf_compiled *c;
  uint64_t *in_ids = NULL, *drop = NULL;
  int *which = NULL, n_drop = 0, n_temp, rc = 0;
  pf_future *f = NULL;
  if (e == NULL) return PF_EINVAL;
  ctx = e->ctx;
  c = e->compiled;
  pf_context_begin(ctx);
  if (out == NULL || n_feeds < 0 || (n_feeds > 0 && feeds == NULL))
    return pf_context_error(ctx, PF_EINVAL, "execute: out is NULL, or %d feeds at %p", n_feeds,
                            (const void *)feeds);
  *out = NULL;
  if ((rc = admit(ctx, block)) != 0) return rc;
  which = pf_mallocn((size_t)c->n_inputs, sizeof *which);
  in_ids = pf_calloc((size_t)c->n_inputs, sizeof *in_ids);
  /* Feeds copied in for this run, then donated buffers: the run drops
   * both from the executors' stores once it holds them. */
  drop = pf_calloc(2 * (size_t)c->n_inputs + 1, sizeof *drop);
  f = calloc(1, sizeof *f);
  if (f) {
    f->output_ids = pf_calloc((size_t)c->n_outputs, sizeof *f->output_ids);
    f->taken = pf_calloc((size_t)c->n_outputs, 1);
  }
  if (!which || !in_ids || !drop || !f || !f->output_ids || !f->taken) {
    rc = pf_context_error(ctx, PF_ENOMEM, "execute: out of memory");
    goto fail;
  }
  if ((rc = check_feeds(ctx, c, n_feeds, feeds, which)) != 0) goto fail;
  for (int i = 0; i < c->n_inputs && rc == 0; i++) {
    const pf_feed *fd = &feeds[which[i]];
    pf_buffer_entry *b = fd->tensor ? NULL : pf_buffers_find(ctx, fd->buffer.id);
    pf_tensor *tmp = NULL;
    if (b != NULL && same_layout(b, &c->inputs[i])) {
      in_ids[i] = b->id; /* no copy: the shards are already in place */
      continue;
    }
    if (b != NULL) { /* another layout: gather, then scatter the new way */
      char what[160];
      snprintf(what, sizeof what, "buffer %llu (fed to \"%s\")", (unsigned long long)b->id,
               c->inputs[i].name);
      rc = pf_value_fetch(ctx, what, b->id, &b->spec, b->sharding, b->num_shards, b->homes, &tmp);
    }
    if (rc == 0)
      rc = pf_put_shards(ctx, "feed", &c->inputs[i],
                         fd->tensor ? pf_tensor_cdata(fd->tensor) : pf_tensor_cdata(tmp),
                         &in_ids[i]);
    /* pf_put_shards sets the id before sending: drop it even if it failed
     * halfway. */
    if (in_ids[i] != 0 && (b == NULL || in_ids[i] != b->id)) drop[n_drop++] = in_ids[i];
    pf_tensor_destroy(tmp);
  }
  n_temp = n_drop;
  for (int i = 0; rc == 0 && i < c->n_inputs; i++)
    if (feeds[which[i]].donate && in_ids[i] == feeds[which[i]].buffer.id)
      drop[n_drop++] = in_ids[i]; /* the run reads it where it lies */
  for (int o = 0; rc == 0 && o < c->n_outputs; o++) f->output_ids[o] = pf_context_new_id(ctx);
  if (rc == 0 && build_runs(e, f, in_ids, drop, n_drop) != 0)
    rc = pf_context_error(ctx, PF_ENOMEM, "execute: out of memory building the run messages");
  if (rc != 0) {
    /* The feeds already sent would stay on the executors: drop them. */
    for (int i = 0, k = 0; i < c->n_inputs && k < n_temp; i++)
      if (in_ids[i] == drop[k]) {
        pf_home *homes = homes_of(&c->inputs[i]);
        if (homes) pf_value_release(ctx, drop[k], c->inputs[i].num_shards, homes);
        free(homes);
        k++;
      }
    goto fail;
  }
  /* Donated buffers are the run's now: forgotten here (the run drops
   * those it reads where they lie; one fed through a copy is released). */
  for (int i = 0; i < c->n_inputs; i++) {
    const pf_feed *fd = &feeds[which[i]];
    if (!fd->donate) continue;
    if (in_ids[i] == fd->buffer.id)
      pf_buffers_forget(ctx, fd->buffer.id);
    else
      pf_buffer_release(ctx, fd->buffer);
  }
  f->ctx = ctx;
  f->exe = e;
  e->refs++;
  future_link(ctx, f);
  f->w.step_req = f->req;
  pf_controller_expect(ctx, &f->w, pf_context_new_id(ctx), e->n_participants);
  for (int k = 0; k < f->req->n_runs; k++) f->req->runs[k]->step = f->w.key;
  if (f->req->n_runs == 0) {
    /* Nothing runs anywhere (an empty graph): complete at once. */
    pf_step_req_free(f->req);
    f->req = NULL;
    f->w.step_req = NULL;
    unadmit(ctx);
  } else {
    pf_dispatch_enqueue(ctx, e, f->req);
  }
  free(which);
  free(in_ids);
  free(drop);
  *out = f;
  return 0;
fail:
  unadmit(ctx);
  if (f) {
    free(f->output_ids);
    free(f->taken);
    free(f);
  }
  free(which);
  free(in_ids);
  free(drop);
  return rc;
}

int pf_execute(pf_executable *e, int n_feeds, const pf_feed *feeds, pf_future **out) {
  return execute(e, n_feeds, feeds, out, 1);
}

int pf_execute_try(pf_executable *e, int n_feeds, const pf_feed *feeds, pf_future **out) {
  return execute(e, n_feeds, feeds, out, 0);
}

/* ---- futures ------------------------------------------------------------------ */

static int finish(pf_future *f, int64_t timeout_ms) {
  int rc;
  if (f->done) return f->w.status;
  rc = pf_controller_wait_for(f->ctx, &f->w, timeout_ms);
  if (rc == PF_ETIMEDOUT) return PF_ETIMEDOUT;
  f->done = 1;
  return f->w.status;
}

/* A wait is a call like any other for pf_last_error: cleared, then the
 * execution's own message when it failed. */
static int wait_call(pf_future *f, int64_t timeout_ms) {
  int rc;
  pf_context_begin(f->ctx);
  if ((rc = finish(f, timeout_ms)) == PF_ETIMEDOUT)
    return pf_context_error(f->ctx, rc, "the execution did not complete in %lld ms",
                            (long long)timeout_ms);
  if (rc != 0) pf_context_error(f->ctx, rc, "%s", f->w.message);
  return rc;
}

int pf_future_wait(pf_future *f) { return f ? wait_call(f, -1) : PF_EINVAL; }

int pf_future_wait_for(pf_future *f, int64_t timeout_ms) {
  if (f == NULL) return PF_EINVAL;
  if (timeout_ms < 0) {
    pf_context_begin(f->ctx);
    return pf_context_error(f->ctx, PF_EINVAL, "wait_for: timeout %lld ms is negative",
                            (long long)timeout_ms);
  }
  return wait_call(f, timeout_ms);
}

int pf_future_done(const pf_future *f) {
  if (f == NULL) return 0;
  finish((pf_future *)f, 0);
  return f->done;
}

const char *pf_future_error(const pf_future *f) {
  if (f == NULL || !f->done) return "";
  return f->w.message;
}

/* 1 once every rank that runs f has been sent its run, or f is over
 * (ctx->lock held). Every message sent after that about f's outputs
 * (a run fed one, a fetch, a release) reaches each executor after the run
 * that makes them: one queue carries all of them in order
 * (runtime/runtime.c), and the executor holds such a message until the
 * output is made (runtime/service.c, park). */
static int sent_locked(const pf_future *f) {
  const pf_step_req *req = f->req;
  return req == NULL || (req->slot >= 0 && req->next_run == req->n_runs);
}

/* Waits until f is sent (see sent_locked): at once unless f still waits
 * for a dispatch slot or, dispatched stage by stage, for its stages to
 * start. The dispatcher broadcasts ctx->cond when it sends a step's last
 * run. */
static void wait_sent(pf_future *f) {
  pf_context *ctx = f->ctx;
  pthread_mutex_lock(&ctx->lock);
  while (!sent_locked(f)) pthread_cond_wait(&ctx->cond, &ctx->lock);
  pthread_mutex_unlock(&ctx->lock);
}

/* The index of output `name`, or an error. `pending`: f may still be
 * running (its output is handed over before it is made). */
static int output_index(pf_future *f, const char *name, int pending) {
  pf_context *ctx = f->ctx;
  const pf_compiled *c = f->exe->compiled;
  int o;
  pf_context_begin(ctx);
  if ((o = io_find(c->outputs, c->n_outputs, name)) < 0)
    return pf_context_error(ctx, PF_ENOTFOUND, "no output named \"%s\"", name ? name : "");
  if (f->taken[o])
    return pf_context_error(ctx, PF_ESTATE, "output \"%s\" was already taken as a buffer", name);
  if (!pf_future_done(f)) {
    if (!pending)
      return pf_context_error(ctx, PF_ESTATE, "output \"%s\": execution not complete",
                              name ? name : "");
    wait_sent(f);
  }
  if (pf_future_done(f) && f->w.status != 0)
    return pf_context_error(ctx, PF_ESTATE, "output \"%s\": execution failed: %s",
                            name ? name : "", f->w.message);
  return o;
}

static pf_home *homes_of(const pf_io *io) {
  pf_home *h = pf_mallocn((size_t)io->num_shards, sizeof *h);
  for (int s = 0; h && s < io->num_shards; s++) {
    h[s].rank = io->shards[s].rank;
    h[s].device = io->shards[s].device;
  }
  return h;
}

int pf_future_output(pf_future *f, const char *name, pf_buffer_t *out) {
  const pf_io *io;
  pf_home *homes;
  int o, rc;
  if (f == NULL || out == NULL) return PF_EINVAL;
  out->id = 0;
  if ((o = output_index(f, name, 1)) < 0) return o;
  io = &f->exe->compiled->outputs[o];
  if ((homes = homes_of(io)) == NULL) return pf_context_error(f->ctx, PF_ENOMEM, "out of memory");
  rc = pf_buffers_add(f->ctx, f->output_ids[o], &io->spec, io->sharding, io->num_shards, homes);
  free(homes);
  if (rc) return pf_context_error(f->ctx, rc, "output: out of memory");
  f->taken[o] = 1;
  out->id = f->output_ids[o];
  return 0;
}

int pf_future_fetch(pf_future *f, const char *name, pf_tensor **out) {
  const pf_io *io;
  pf_home *homes;
  int o, rc;
  if (f == NULL || out == NULL) return PF_EINVAL;
  *out = NULL;
  if ((o = output_index(f, name, 0)) < 0) return o;
  io = &f->exe->compiled->outputs[o];
  if ((homes = homes_of(io)) == NULL) return pf_context_error(f->ctx, PF_ENOMEM, "out of memory");
  char what[160];
  snprintf(what, sizeof what, "output \"%s\"", io->name);
  rc = pf_value_fetch(f->ctx, what, f->output_ids[o], &io->spec, io->sharding, io->num_shards,
                      homes, out);
  free(homes);
  return rc;
}

void pf_future_destroy(pf_future *f) {
  pf_context *ctx;
  const pf_compiled *c;
  if (f == NULL) return;
  ctx = f->ctx;
  c = f->exe->compiled;
  finish(f, -1);
  /* A failed run leaves marks where its outputs were to be (what a run fed
   * one that was handed over early names): released like outputs. */
  for (int o = 0; o < c->n_outputs; o++) {
    pf_home *homes;
    if (f->taken[o] || (homes = homes_of(&c->outputs[o])) == NULL) continue;
    pf_value_release(ctx, f->output_ids[o], c->outputs[o].num_shards, homes);
    free(homes);
  }
  if (f->prev)
    f->prev->next = f->next;
  else
    ctx->futures = f->next;
  if (f->next) f->next->prev = f->prev;
  exe_unref(f->exe);
  free(f->output_ids);
  free(f->taken);
  free(f);
}

void pf_future_free_all(pf_context *ctx) {
  while (ctx->futures) pf_future_destroy(ctx->futures);
}
