#include "runtime/runtime.h"

#include <pthread.h>
#include <stdlib.h>
#include <uv.h>

#include "base/util.h"
#include "pathflow/error.h"

typedef struct request {
  pf_loaded *loaded;
  pf_storage **inputs;
  pf_runtime_cb cb;
  void *arg;
  pf_step *step;
  struct pf_runtime *rt;
  struct request *next;
} request;

struct pf_runtime {
  pf_executor *ex;
  uv_loop_t loop;
  uv_async_t wake; /* new submissions, completions, or stop */
  pthread_t thread;
  pthread_mutex_t lock;
  pthread_cond_t idle;
  request *submitted, *submitted_tail; /* guarded by lock */
  request *completed;                  /* guarded by lock */
  int in_flight;                       /* guarded by lock */
  int stopping;                        /* guarded by lock */
};

static void step_done(pf_step *step, void *arg) {
  request *r = arg;
  pf_runtime *rt = r->rt;
  (void)step;
  pthread_mutex_lock(&rt->lock);
  r->next = rt->completed;
  rt->completed = r;
  pthread_mutex_unlock(&rt->lock);
  uv_async_send(&rt->wake);
}

static void release_inputs(const pf_loaded *l, pf_storage **inputs) {
  const pf_plan *p = pf_loaded_plan(l);
  if (inputs == NULL) return;
  for (uint32_t b = 0; b < p->n_buffers; b++)
    if (p->buffers[b].input >= 0) pf_storage_unref(inputs[b]);
  free(inputs);
}

static void finish(pf_runtime *rt, request *r, pf_step *step, int rc) {
  r->cb(step, rc, r->arg);
  pf_loaded_release(r->loaded);
  free(r);
  pthread_mutex_lock(&rt->lock);
  rt->in_flight--;
  pthread_cond_broadcast(&rt->idle);
  pthread_mutex_unlock(&rt->lock);
}

static void on_wake(uv_async_t *h) {
  pf_runtime *rt = h->data;
  request *sub, *done;
  int stop;
  pthread_mutex_lock(&rt->lock);
  sub = rt->submitted;
  rt->submitted = rt->submitted_tail = NULL;
  done = rt->completed;
  rt->completed = NULL;
  stop = rt->stopping && rt->in_flight == 0;
  pthread_mutex_unlock(&rt->lock);
  while (sub != NULL) {
    request *r = sub;
    int rc;
    sub = sub->next;
    rc = pf_executor_run(rt->ex, r->loaded, r->inputs, step_done, r, &r->step);
    release_inputs(r->loaded, r->inputs); /* the step holds its own refs */
    r->inputs = NULL;
    if (rc != 0) finish(rt, r, NULL, rc);
  }
  while (done != NULL) {
    request *r = done;
    done = done->next;
    finish(rt, r, r->step, 0);
  }
  if (stop) uv_close((uv_handle_t *)&rt->wake, NULL);
}

static void *loop_main(void *arg) {
  pf_runtime *rt = arg;
  uv_run(&rt->loop, UV_RUN_DEFAULT);
  return NULL;
}

int pf_runtime_start(const pf_executor_config *cfg, pf_runtime **out) {
  pf_runtime *rt;
  int rc;
  *out = NULL;
  if ((rt = calloc(1, sizeof *rt)) == NULL) return PF_ENOMEM;
  if ((rc = pf_executor_start(cfg, &rt->ex)) != 0) {
    free(rt);
    return rc;
  }
  pthread_mutex_init(&rt->lock, NULL);
  pthread_cond_init(&rt->idle, NULL);
  if (uv_loop_init(&rt->loop) != 0) goto fail_loop;
  if (uv_async_init(&rt->loop, &rt->wake, on_wake) != 0) goto fail_async;
  rt->wake.data = rt;
  if (pthread_create(&rt->thread, NULL, loop_main, rt) != 0) goto fail_thread;
  *out = rt;
  return 0;
fail_thread:
  uv_close((uv_handle_t *)&rt->wake, NULL);
  uv_run(&rt->loop, UV_RUN_DEFAULT);
fail_async:
  uv_loop_close(&rt->loop);
fail_loop:
  pf_executor_stop(rt->ex);
  pthread_mutex_destroy(&rt->lock);
  pthread_cond_destroy(&rt->idle);
  free(rt);
  return PF_ESYS;
}

void pf_runtime_stop(pf_runtime *rt) {
  if (rt == NULL) return;
  pthread_mutex_lock(&rt->lock);
  while (rt->in_flight > 0) pthread_cond_wait(&rt->idle, &rt->lock);
  rt->stopping = 1;
  pthread_mutex_unlock(&rt->lock);
  uv_async_send(&rt->wake);
  pthread_join(rt->thread, NULL);
  uv_loop_close(&rt->loop);
  pf_executor_stop(rt->ex);
  pthread_mutex_destroy(&rt->lock);
  pthread_cond_destroy(&rt->idle);
  free(rt);
}

pf_executor *pf_runtime_executor(pf_runtime *rt) { return rt->ex; }

int pf_runtime_submit(pf_runtime *rt, pf_loaded *l, pf_storage **inputs,
                      pf_runtime_cb cb, void *arg) {
  request *r = calloc(1, sizeof *r);
  if (r == NULL) {
    release_inputs(l, inputs);
    return PF_ENOMEM;
  }
  r->loaded = l;
  r->inputs = inputs;
  r->cb = cb;
  r->arg = arg;
  r->rt = rt;
  pthread_mutex_lock(&rt->lock);
  if (rt->stopping) {
    pthread_mutex_unlock(&rt->lock);
    release_inputs(l, inputs);
    free(r);
    return PF_ESTATE;
  }
  pf_executor_retain(l);
  if (rt->submitted_tail)
    rt->submitted_tail->next = r;
  else
    rt->submitted = r;
  rt->submitted_tail = r;
  rt->in_flight++;
  pthread_mutex_unlock(&rt->lock);
  uv_async_send(&rt->wake);
  return 0;
}

int pf_runtime_in_flight(pf_runtime *rt) {
  int n;
  pthread_mutex_lock(&rt->lock);
  n = rt->in_flight;
  pthread_mutex_unlock(&rt->lock);
  return n;
}
