/* Compile, execute, futures. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api/context_internal.h"
#include "base/layout.h"
#include "base/util.h"

struct pf_executable {
  pf_context *ctx;
  int refs; /* the user's handle + futures in flight; user thread only */
  int destroyed;
  pf_compiled *compiled; /* plans moved out to the executor */
  pf_loaded *loaded;     /* this rank's plan */
  pf_executable *prev, *next;
};

struct pf_future {
  pf_context *ctx;
  pf_executable *exe;
  pthread_mutex_t lock;
  pthread_cond_t cond;
  int done;   /* guarded by lock */
  int status; /* valid once done */
  pf_step *step;
  char *message;
  pf_future *prev, *next;
};

/* ---- executables ------------------------------------------------------------ */

static void exe_unref(pf_executable *e) {
  if (--e->refs > 0) return;
  if (e->prev)
    e->prev->next = e->next;
  else
    e->ctx->executables = e->next;
  if (e->next) e->next->prev = e->prev;
  pf_loaded_release(e->loaded);
  pf_compiled_free(e->compiled);
  free(e);
}

int pf_compile(pf_graph *g, pf_executable **out) {
  pf_context *ctx;
  pf_executable *e;
  pf_compiled *c;
  pf_plan *plan;
  int rc;
  if (g == NULL || out == NULL) return PF_EINVAL;
  *out = NULL;
  ctx = g->env.owner;
  pf_context_begin(ctx);
  rc = pf_schedule(g, &ctx->cluster, ++ctx->next_executable_id, &c, &ctx->diag);
  if (rc != 0) return rc;
  if ((e = calloc(1, sizeof *e)) == NULL) {
    pf_compiled_free(c);
    return pf_context_error(ctx, PF_ENOMEM, "compile: out of memory");
  }
  plan = c->plans[0];
  c->plans[0] = NULL;
  rc = pf_executor_load(pf_runtime_executor(ctx->runtime), plan, &e->loaded, &ctx->diag);
  if (rc != 0) {
    pf_compiled_free(c);
    free(e);
    return rc;
  }
  e->ctx = ctx;
  e->refs = 1;
  e->compiled = c;
  e->next = ctx->executables;
  if (e->next) e->next->prev = e;
  ctx->executables = e;
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

int pf_executable_num_inputs(const pf_executable *e) { return e ? e->compiled->n_inputs : 0; }
int pf_executable_num_outputs(const pf_executable *e) { return e ? e->compiled->n_outputs : 0; }

static int io_get(const pf_io *io, int n, int i, const char **name, pf_spec *spec) {
  if (i < 0 || i >= n) return PF_EINVAL;
  if (name) *name = io[i].name;
  if (spec) *spec = io[i].spec;
  return 0;
}

int pf_executable_input(const pf_executable *e, int i, const char **name, pf_spec *spec) {
  return e ? io_get(e->compiled->inputs, e->compiled->n_inputs, i, name, spec) : PF_EINVAL;
}

int pf_executable_output(const pf_executable *e, int i, const char **name, pf_spec *spec) {
  return e ? io_get(e->compiled->outputs, e->compiled->n_outputs, i, name, spec) : PF_EINVAL;
}

static int io_find(const pf_io *io, int n, const char *name) {
  for (int i = 0; name && i < n; i++)
    if (strcmp(io[i].name, name) == 0) return i;
  return -1;
}

/* ---- execute ------------------------------------------------------------------ */

static void on_step(pf_step *step, int rc, void *arg) {
  pf_future *f = arg;
  pthread_mutex_lock(&f->lock);
  f->step = step;
  f->status = rc != 0 ? rc : pf_step_status(step);
  f->message = pf_strdup(rc != 0 ? pf_strerror(rc) : pf_step_message(step));
  f->done = 1;
  pthread_cond_broadcast(&f->cond);
  pthread_mutex_unlock(&f->lock);
}

/* Storages for input i, one per shard: shared with a buffer when the layout
 * matches, else copied (local devices share host memory, so a layout change
 * costs one gather and one scatter on the host). */
static int feed_shards(pf_context *ctx, const pf_io *in, const pf_feed *feed,
                       pf_storage **shards) {
  int32_t *devices;
  const void *data;
  pf_tensor *tmp = NULL;
  char want[128], got[128];
  const pf_spec *have;
  int rc;
  if (feed->tensor != NULL) {
    have = pf_tensor_spec(feed->tensor);
    data = pf_tensor_cdata(feed->tensor);
  } else {
    pf_buffer_entry *b = pf_buffers_find(&ctx->buffers, feed->buffer.id);
    if (b == NULL)
      return pf_context_error(ctx, PF_ESTALE, "feed \"%s\": buffer %llu was released "
                              "or never made", in->name,
                              (unsigned long long)feed->buffer.id);
    have = &b->spec;
    if (pf_spec_equal(have, &in->spec) && b->num_shards == in->num_shards &&
        pf_sharding_equal(b->sharding, in->sharding)) {
      for (int s = 0; s < in->num_shards; s++) shards[s] = pf_storage_ref(b->shards[s]);
      return 0;
    }
    if (pf_spec_equal(have, &in->spec)) {
      if ((rc = pf_shards_gather(&b->spec, b->sharding, b->num_shards, b->shards, &tmp)))
        return pf_context_error(ctx, rc, "feed \"%s\": out of memory", in->name);
      data = pf_tensor_cdata(tmp);
    } else {
      data = NULL;
    }
  }
  if (!pf_spec_equal(have, &in->spec))
    return pf_context_error(ctx, PF_EFEEDSHAPE, "feed \"%s\": got %s, the input is %s",
                            in->name, pf_spec_str(have, got, sizeof got),
                            pf_spec_str(&in->spec, want, sizeof want));
  if ((devices = pf_mallocn((size_t)in->num_shards, sizeof *devices)) == NULL) {
    pf_tensor_destroy(tmp);
    return pf_context_error(ctx, PF_ENOMEM, "feed \"%s\": out of memory", in->name);
  }
  for (int s = 0; s < in->num_shards; s++) devices[s] = in->shards[s].device;
  rc = pf_shards_scatter(&in->spec, in->sharding, in->num_shards, data, devices, shards);
  free(devices);
  pf_tensor_destroy(tmp);
  if (rc) return pf_context_error(ctx, rc, "feed \"%s\": out of memory", in->name);
  return 0;
}

static int check_feeds(pf_context *ctx, const pf_compiled *c, int n, const pf_feed *feeds,
                       int *which) {
  for (int i = 0; i < c->n_inputs; i++) which[i] = -1;
  for (int k = 0; k < n; k++) {
    int i = io_find(c->inputs, c->n_inputs, feeds[k].name);
    if (feeds[k].name == NULL)
      return pf_context_error(ctx, PF_EINVAL, "feed %d has no name", k);
    if (i < 0)
      return pf_context_error(ctx, PF_ENOTFOUND, "feed \"%s\": no input of that name",
                              feeds[k].name);
    if (which[i] >= 0)
      return pf_context_error(ctx, PF_EEXIST, "input \"%s\" is fed twice", feeds[k].name);
    if ((feeds[k].tensor != NULL) == (feeds[k].buffer.id != 0))
      return pf_context_error(ctx, PF_EINVAL,
                              "feed \"%s\": give exactly one of a tensor and a buffer",
                              feeds[k].name);
    which[i] = k;
  }
  for (int i = 0; i < c->n_inputs; i++)
    if (which[i] < 0)
      return pf_context_error(ctx, PF_ENOFEED, "input \"%s\" has no feed",
                              c->inputs[i].name);
  return 0;
}

int pf_execute(pf_executable *e, int n_feeds, const pf_feed *feeds, pf_future **out) {
  pf_context *ctx;
  const pf_compiled *c;
  const pf_plan *plan;
  pf_storage **inputs = NULL;
  pf_storage **shards = NULL;
  int *which = NULL;
  pf_future *f;
  int rc;
  if (e == NULL || out == NULL || n_feeds < 0 || (n_feeds > 0 && feeds == NULL))
    return PF_EINVAL;
  *out = NULL;
  ctx = e->ctx;
  c = e->compiled;
  plan = pf_loaded_plan(e->loaded);
  pf_context_begin(ctx);
  which = pf_mallocn((size_t)c->n_inputs, sizeof *which);
  inputs = pf_calloc(plan->n_buffers, sizeof *inputs);
  if (which == NULL || inputs == NULL) {
    rc = pf_context_error(ctx, PF_ENOMEM, "execute: out of memory");
    goto fail;
  }
  if ((rc = check_feeds(ctx, c, n_feeds, feeds, which)) != 0) goto fail;
  for (int i = 0; i < c->n_inputs; i++) {
    const pf_io *in = &c->inputs[i];
    shards = pf_calloc((size_t)in->num_shards, sizeof *shards);
    if (shards == NULL) {
      rc = pf_context_error(ctx, PF_ENOMEM, "execute: out of memory");
      goto fail;
    }
    if ((rc = feed_shards(ctx, in, &feeds[which[i]], shards)) != 0) goto fail;
    for (int s = 0; s < in->num_shards; s++) inputs[in->shards[s].buffer] = shards[s];
    free(shards);
    shards = NULL;
  }
  if ((f = calloc(1, sizeof *f)) == NULL) {
    rc = pf_context_error(ctx, PF_ENOMEM, "execute: out of memory");
    goto fail;
  }
  pthread_mutex_init(&f->lock, NULL);
  pthread_cond_init(&f->cond, NULL);
  f->ctx = ctx;
  f->exe = e;
  e->refs++;
  f->next = ctx->futures;
  if (f->next) f->next->prev = f;
  ctx->futures = f;
  free(which);
  rc = pf_runtime_submit(ctx->runtime, e->loaded, inputs, on_step, f);
  if (rc != 0) {
    f->done = 1; /* never ran: nothing to wait for */
    pf_future_destroy(f);
    return pf_context_error(ctx, rc, "execute: could not submit (%s)", pf_strerror(rc));
  }
  *out = f;
  return 0;
fail:
  free(shards);
  if (inputs)
    for (uint32_t b = 0; b < plan->n_buffers; b++) pf_storage_unref(inputs[b]);
  free(inputs);
  free(which);
  return rc;
}

/* ---- futures ------------------------------------------------------------------ */

int pf_future_wait(pf_future *f) {
  int rc;
  if (f == NULL) return PF_EINVAL;
  pthread_mutex_lock(&f->lock);
  while (!f->done) pthread_cond_wait(&f->cond, &f->lock);
  rc = f->status;
  pthread_mutex_unlock(&f->lock);
  return rc;
}

int pf_future_wait_for(pf_future *f, int64_t timeout_ms) {
  struct timespec ts;
  int rc = 0;
  if (f == NULL || timeout_ms < 0) return PF_EINVAL;
  clock_gettime(CLOCK_REALTIME, &ts);
  ts.tv_sec += timeout_ms / 1000;
  ts.tv_nsec += (timeout_ms % 1000) * 1000000;
  if (ts.tv_nsec >= 1000000000) {
    ts.tv_sec++;
    ts.tv_nsec -= 1000000000;
  }
  pthread_mutex_lock(&f->lock);
  while (!f->done && rc != ETIMEDOUT) rc = pthread_cond_timedwait(&f->cond, &f->lock, &ts);
  rc = f->done ? f->status : PF_ETIMEDOUT;
  pthread_mutex_unlock(&f->lock);
  return rc;
}

int pf_future_done(const pf_future *f) {
  int done;
  if (f == NULL) return 0;
  pthread_mutex_lock((pthread_mutex_t *)&f->lock);
  done = f->done;
  pthread_mutex_unlock((pthread_mutex_t *)&f->lock);
  return done;
}

const char *pf_future_error(const pf_future *f) {
  if (f == NULL || !pf_future_done(f) || f->message == NULL) return "";
  return f->message;
}

static int output_shards(pf_future *f, const char *name, const pf_io **io,
                         pf_storage ***shards) {
  pf_context *ctx = f->ctx;
  const pf_compiled *c = f->exe->compiled;
  int o;
  pf_context_begin(ctx);
  if (!pf_future_done(f))
    return pf_context_error(ctx, PF_ESTATE, "output \"%s\": execution not complete",
                            name ? name : "");
  if (f->status != 0)
    return pf_context_error(ctx, PF_ESTATE, "output \"%s\": execution failed: %s",
                            name ? name : "", f->message ? f->message : "");
  if ((o = io_find(c->outputs, c->n_outputs, name)) < 0)
    return pf_context_error(ctx, PF_ENOTFOUND, "no output named \"%s\"", name ? name : "");
  *io = &c->outputs[o];
  *shards = pf_calloc((size_t)(*io)->num_shards, sizeof **shards);
  if (*shards == NULL) return pf_context_error(ctx, PF_ENOMEM, "output: out of memory");
  for (int s = 0; s < (*io)->num_shards; s++)
    (*shards)[s] = pf_step_take(f->step, (*io)->shards[s].buffer);
  return 0;
}

int pf_future_output(pf_future *f, const char *name, pf_buffer_t *out) {
  const pf_io *io;
  pf_storage **shards;
  int rc;
  if (f == NULL || out == NULL) return PF_EINVAL;
  out->id = 0;
  if ((rc = output_shards(f, name, &io, &shards)) != 0) return rc;
  rc = pf_buffers_add(&f->ctx->buffers, &io->spec, io->sharding, io->num_shards, shards,
                      &out->id);
  if (rc) return pf_context_error(f->ctx, rc, "output: out of memory");
  return 0;
}

int pf_future_fetch(pf_future *f, const char *name, pf_tensor **out) {
  const pf_io *io;
  pf_storage **shards;
  int rc;
  if (f == NULL || out == NULL) return PF_EINVAL;
  *out = NULL;
  if ((rc = output_shards(f, name, &io, &shards)) != 0) return rc;
  rc = pf_shards_gather(&io->spec, io->sharding, io->num_shards, shards, out);
  for (int s = 0; s < io->num_shards; s++) pf_storage_unref(shards[s]);
  free(shards);
  if (rc) return pf_context_error(f->ctx, rc, "fetch: out of memory");
  return 0;
}

void pf_future_destroy(pf_future *f) {
  pf_context *ctx;
  if (f == NULL) return;
  ctx = f->ctx;
  pf_future_wait(f);
  if (f->prev)
    f->prev->next = f->next;
  else
    ctx->futures = f->next;
  if (f->next) f->next->prev = f->prev;
  pf_step_free(f->step);
  free(f->message);
  exe_unref(f->exe);
  pthread_mutex_destroy(&f->lock);
  pthread_cond_destroy(&f->cond);
  free(f);
}

void pf_future_free_all(pf_context *ctx) {
  while (ctx->futures) pf_future_destroy(ctx->futures);
}
