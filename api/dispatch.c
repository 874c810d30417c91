/* The controller's dispatcher: executions wait in their executable's queue
 * until one of PF_MAX_IN_FLIGHT slots frees; slots go to executables in
 * proportion to their weights (stride scheduling: the lowest pass goes next,
 * and its pass advances by 1/weight). Everything here runs under ctx->lock,
 * on the user thread (enqueue) or the loop thread (replies). */
#include <stdlib.h>
#include <string.h>

#include "api/execute_internal.h"

void pf_step_req_free(pf_step_req *req) {
  if (req == NULL) return;
  for (int k = req->next_run; k < req->n_runs; k++) {
    pf_msg_free(req->runs[k]);
    if (req->sends) pf_runtime_reservation_free(req->sends[k]);
  }
  free(req->runs);
  free(req->sends);
  free(req->ranks);
  free(req);
}

static void send_next_run(pf_context *ctx, pf_step_req *req) {
  pf_msg *m = req->runs[req->next_run];
  int rank = req->ranks[req->next_run];
  pf_runtime_reservation *res = req->sends[req->next_run];
  req->sends[req->next_run] = NULL;
  req->runs[req->next_run++] = NULL;
  /* Reserved when the step was built: this cannot fail. */
  pf_runtime_send_reserved(ctx->runtime, res, rank, m);
  /* pf_future_output may wait for the last one (api/execute.c, wait_sent):
   * only when the step waited for a slot or goes stage by stage. */
  if (req->next_run == req->n_runs && req->waited) pthread_cond_broadcast(&ctx->cond);
}

/* Parallel dispatch: this rank's own run starts its step on the loop
 * thread at once (posting every receive takes a while for a long plan);
 * the other ranks' runs go out before it, so that their setup overlaps. */
static void run_local_last(pf_step_req *req) {
  for (int k = 0; k + 1 < req->n_runs; k++)
    if (req->ranks[k] == 0) {
      pf_msg *m = req->runs[k];
      memmove(&req->runs[k], &req->runs[k + 1], (size_t)(req->n_runs - k - 1) * sizeof *req->runs);
      memmove(&req->ranks[k], &req->ranks[k + 1], (size_t)(req->n_runs - k - 1) * sizeof *req->ranks);
      req->runs[req->n_runs - 1] = m;
      req->ranks[req->n_runs - 1] = 0;
      /* The reservations are alike: no need to move them. */
      return;
    }
}

/* Share accounting: every executable waiting when a slot is given was
 * entitled to weight / (weights of all waiting) of it. */
static void account(pf_context *ctx, pf_executable *chosen) {
  double total = 0;
  for (pf_executable *e = ctx->backlogged; e; e = e->backlog_next) total += e->weight;
  for (pf_executable *e = ctx->backlogged; e; e = e->backlog_next) {
    e->expected += e->weight / total;
    e->contended += 1;
  }
  chosen->won += 1;
}

/* Memory admission: pf_compile checks one step's peak against each
 * device's memory, but up to 64 steps run at once, and an executor
 * allocates a step's buffers when it starts it. A step goes out only when
 * its peak fits beside those of the steps in flight on every device it
 * uses; with nothing in flight it always fits (its peak passed compile). */
static int memory_fits(const pf_context *ctx, const pf_executable *e) {
  if (ctx->in_flight == 0 || ctx->mem_in_flight == NULL) return 1;
  for (int k = 0; k < e->n_mem; k++) {
    int64_t limit = ctx->cluster.devices[e->mem_devices[k]].memory;
    if (limit > 0 && ctx->mem_in_flight[e->mem_devices[k]] + e->mem_peaks[k] > limit) return 0;
  }
  return 1;
}

static void memory_charge(pf_context *ctx, const pf_executable *e, int sign) {
  for (int k = 0; ctx->mem_in_flight != NULL && k < e->n_mem; k++)
    ctx->mem_in_flight[e->mem_devices[k]] += sign * e->mem_peaks[k];
}

static void pump_locked(pf_context *ctx) {
  while (ctx->in_flight < PF_MAX_IN_FLIGHT && ctx->backlogged != NULL) {
    pf_executable *best = ctx->backlogged, **link;
    pf_step_req *req;
    for (pf_executable *e = best->backlog_next; e; e = e->backlog_next)
      if (e->pass < best->pass) best = e;
    /* The next step by weight waits for memory (others wait behind it, so
     * that a large step is not passed over for ever). */
    if (!memory_fits(ctx, best)) break;
    memory_charge(ctx, best, 1);
    account(ctx, best);
    ctx->vtime = best->pass;
    best->pass += 1.0 / best->weight;
    req = best->queue_head;
    best->queue_head = req->next;
    if (best->queue_head == NULL) {
      /* Leaving: remember how far ahead or behind it is, so that waiting
       * again later neither gains nor loses slots. */
      best->remain = best->pass - ctx->vtime;
      best->queue_tail = NULL;
      for (link = &ctx->backlogged; *link != best; link = &(*link)->backlog_next) {
      }
      *link = best->backlog_next;
      best->backlog_next = NULL;
    }
    ctx->in_flight++;
    best->dispatched++;
    /* A free slot: in_flight < PF_MAX_IN_FLIGHT guarantees one. */
    req->slot = __builtin_ctzll(~ctx->slots_used);
    ctx->slots_used |= 1ull << req->slot;
    for (int k = 0; k < req->n_runs; k++) req->runs[k]->slot = (uint32_t)req->slot;
    if (best->dispatch == PF_DISPATCH_SEQUENTIAL) {
      send_next_run(ctx, req);
    } else {
      run_local_last(req);
      while (req->next_run < req->n_runs) send_next_run(ctx, req);
    }
  }
}

void pf_dispatch_enqueue(pf_context *ctx, pf_executable *e, pf_step_req *req) {
  pthread_mutex_lock(&ctx->lock);
  req->next = NULL;
  if (e->queue_tail == NULL) {
    /* Waiting again: where it left off relative to the others, and no credit
     * for the time it was idle. */
    e->pass = ctx->vtime + (e->remain > 0 ? e->remain : 0);
    e->backlog_next = ctx->backlogged;
    ctx->backlogged = e;
    e->queue_head = req;
  } else {
    e->queue_tail->next = req;
  }
  e->queue_tail = req;
  pump_locked(ctx);
  req->waited = req->slot < 0 || req->next_run < req->n_runs;
  pthread_mutex_unlock(&ctx->lock);
}

void pf_controller_step_reply_locked(pf_context *ctx, pf_waiter *w, int from) {
  pf_dispatch_step_reply_locked(ctx, w->step_req, w->pending == 0, from);
}

void pf_controller_stage_started_locked(pf_context *ctx, pf_waiter *w, int from) {
  pf_dispatch_stage_started_locked(ctx, w->step_req, from);
}

void pf_dispatch_stage_started_locked(pf_context *ctx, pf_step_req *req, int from) {
  /* Only the stage dispatched last moves dispatch on: a stage's DONE after
   * its STARTED, or a late message of an earlier stage, does not. */
  if (req->next_run > 0 && req->next_run < req->n_runs && req->ranks[req->next_run - 1] == from)
    send_next_run(ctx, req);
}

/* Takes a step that never got a slot out of its executable's queue (every
 * waiter was failed at once): a walk, but only on that error path. */
static void unqueue(pf_context *ctx, pf_executable *e, pf_step_req *req) {
  pf_step_req *prev = NULL;
  for (pf_step_req *q = e->queue_head; q != req; q = q->next) {
    if (q == NULL) return;
    prev = q;
  }
  if (prev)
    prev->next = req->next;
  else
    e->queue_head = req->next;
  if (e->queue_tail == req) e->queue_tail = prev;
  if (e->queue_head == NULL) {
    pf_executable **link;
    e->remain = e->pass - ctx->vtime;
    for (link = &ctx->backlogged; *link && *link != e; link = &(*link)->backlog_next) {
    }
    if (*link) *link = e->backlog_next;
    e->backlog_next = NULL;
  }
}

void pf_dispatch_step_reply_locked(pf_context *ctx, pf_step_req *req, int step_done, int from) {
  pf_executable *e = req->f->exe;
  if (!step_done) {
    /* Sequential: a stage that failed before it started says so only by
     * its DONE; the next stage goes all the same. */
    pf_dispatch_stage_started_locked(ctx, req, from);
    return;
  }
  if (req->slot < 0) {
    unqueue(ctx, e, req);
  } else {
    e->completed++;
    ctx->in_flight--;
    ctx->slots_used &= ~(1ull << req->slot);
    memory_charge(ctx, e, -1);
  }
  /* Its admission frees: a pf_execute blocked on backpressure wakes on the
   * broadcast the caller makes for the completed waiter. */
  atomic_fetch_sub_explicit(&ctx->n_pending, 1, memory_order_relaxed);
  req->f->req = NULL;
  req->f->w.step_req = NULL;
  pf_step_req_free(req);
  pump_locked(ctx);
}
