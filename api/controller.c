/* The controller's side of the control protocol: replies from executors
 * (on the loop thread) complete waiters that user calls block on. */
#define _GNU_SOURCE /* sched_getcpu, pthread_getaffinity_np */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api/context_internal.h"
#include "base/util.h"

/* ---- the waiter table (ctx->lock held) ---- */

static pf_waiter **bucket(pf_waiter_table *t, uint64_t key) {
  if (t->buckets == NULL) {
    t->buckets = t->first;
    t->mask = PF_WAITER_BUCKETS0 - 1;
  }
  return &t->buckets[(key * 0x9E3779B97F4A7C15ull >> 32) & t->mask];
}

static pf_waiter *find(pf_context *ctx, uint64_t key) {
  for (pf_waiter *w = *bucket(&ctx->waiting, key); w; w = w->next) {
    ctx->waiting.steps++;
    if (w->key == key) return w;
  }
  return NULL;
}

/* Doubles the buckets when they hold two waiters each on average. Out of
 * memory, the chains only grow longer. */
static void grow(pf_waiter_table *t, size_t n) {
  size_t ocap = t->mask + 1, ncap = ocap * 2;
  pf_waiter **old = t->buckets, **nb;
  if (n <= 2 * ocap || (nb = pf_calloc(ncap, sizeof *nb)) == NULL) return;
  t->buckets = nb;
  t->mask = ncap - 1;
  for (size_t i = 0; i < ocap; i++)
    while (old[i]) {
      pf_waiter *w = old[i], **b;
      old[i] = w->next;
      b = bucket(t, w->key);
      w->next = *b;
      *b = w;
    }
  if (old != t->first) free(old);
}

void pf_controller_table_free(pf_context *ctx) {
  if (ctx->waiting.buckets != ctx->waiting.first) free(ctx->waiting.buckets);
  ctx->waiting.buckets = NULL;
}

static void record(pf_waiter *w, int status, const char *message) {
  if (status != 0 && w->status == 0) {
    w->status = status;
    snprintf(w->message, sizeof w->message, "%s", message ? message : "");
  }
}

/* w's last reply came: no more to poll for, whether or not anyone collects
 * it (ctx->lock held). */
static void note_done(pf_context *ctx, pf_waiter *w) {
  if (w->counted_done) return;
  w->counted_done = 1;
  atomic_store_explicit(&w->complete, 1, memory_order_release);
  atomic_fetch_add_explicit(&ctx->n_done, 1, memory_order_relaxed);
}

void pf_controller_on_reply(void *arg, pf_msg *m) {
  pf_context *ctx = arg;
  pf_waiter *w;
  int completed = 0;
  pthread_mutex_lock(&ctx->lock);
  switch (m->kind) {
    /* A message an executor could not decode is answered with the error by
     * the reply it would have had (runtime/runtime.c): it fails only its
     * own waiter. */
    case PF_MSG_LOAD_DONE:
    case PF_MSG_STEP_DONE:
      w = find(ctx, m->kind == PF_MSG_LOAD_DONE ? m->executable : m->step);
      if (w == NULL) break;
      record(w, m->status, m->message);
      if (m->kind == PF_MSG_LOAD_DONE && m->n_comm_ids > 0) {
        pf_msg_comm_id *all = realloc(w->comm_ids, (w->n_comm_ids + (size_t)m->n_comm_ids) *
                                                       sizeof *all);
        if (all == NULL) {
          record(w, PF_ENOMEM, "load: out of memory keeping the communicator ids");
        } else {
          memcpy(all + w->n_comm_ids, m->comm_ids, m->n_comm_ids * sizeof *all);
          w->comm_ids = all;
          w->n_comm_ids += m->n_comm_ids;
        }
      }
      completed = --w->pending == 0;
      if (completed) note_done(ctx, w);
      if (w->step_req != NULL) pf_controller_step_reply_locked(ctx, w, m->from);
      break;
    case PF_MSG_STEP_STARTED:
      /* Sequential dispatch: a stage started; the next one may go. */
      if ((w = find(ctx, m->step)) != NULL && w->step_req != NULL)
        pf_controller_stage_started_locked(ctx, w, m->from);
      break;
    case PF_MSG_FETCH_REPLY:
      if ((w = find(ctx, m->request)) == NULL) break;
      record(w, m->status, m->message);
      for (uint32_t k = 0; m->data && k < m->n_shards; k++) {
        int32_t s = m->shards[k];
        if (s < 0 || s >= w->num_shards || m->data[k] == NULL || w->shards[s] != NULL) continue;
        /* Never trust a reply's size: the gather reads a whole shard. */
        if (m->data[k]->nbytes != w->shard_bytes) {
          char why[160];
          snprintf(why, sizeof why, "rank %d sent %zu bytes for shard %d, which holds %zu bytes",
                   (int)m->from, m->data[k]->nbytes, (int)s, w->shard_bytes);
          record(w, PF_EDECODE, why);
          continue;
        }
        w->shards[s] = m->data[k];
        m->data[k] = NULL;
      }
      completed = --w->pending == 0;
      if (completed) note_done(ctx, w);
      break;
    case PF_MSG_COUNTERS_REPLY:
      if ((w = find(ctx, m->request)) == NULL || w->pending == 0) break;
      if (m->from != w->from) break; /* not the rank asked: not its answer */
      record(w, m->status, m->message);
      if (m->status == 0 && m->counters == NULL)
        record(w, PF_EDECODE, "the counters reply holds no counters");
      if (m->counters != NULL && w->counters == NULL) {
        w->counters = m->counters;
        w->counters->rank = m->from;
        m->counters = NULL;
      }
      completed = --w->pending == 0;
      if (completed) note_done(ctx, w);
      break;
    default:
      break;
  }
  pthread_mutex_unlock(&ctx->lock);
  /* Wake the user threads only when a waiter is complete: a woken thread
   * that finds nothing to do still takes the core from this loop thread
   * for tens of microseconds on a busy machine. After the unlock: a thread
   * woken under the lock would at once sleep again on the mutex, and the
   * unlock would have to wake it a second time (two futex calls, not one). */
  if (completed) pthread_cond_broadcast(&ctx->cond);
  pf_msg_free(m);
}

int pf_controller_busy(void *arg) {
  pf_context *ctx = arg;
  /* Called on every poll: counters, not a walk of the waiters under the
   * lock. A waiter counts while replies are due: one whose replies all came
   * does not, though nobody collected it (a future never waited on would
   * otherwise keep this loop polling for good). */
  return atomic_load_explicit(&ctx->n_waiting, memory_order_relaxed) -
             atomic_load_explicit(&ctx->n_done, memory_order_relaxed) > 0;
}

void pf_controller_expect(pf_context *ctx, pf_waiter *w, uint64_t key, int pending) {
  pf_waiter **b;
  w->key = key;
  w->pending = pending;
  w->status = 0;
  w->message[0] = '\0';
  w->counted_done = 0;
  atomic_init(&w->complete, 0);
  pthread_mutex_lock(&ctx->lock);
  grow(&ctx->waiting, (size_t)atomic_load_explicit(&ctx->n_waiting, memory_order_relaxed) + 1);
  b = bucket(&ctx->waiting, key);
  w->next = *b;
  *b = w;
  atomic_fetch_add_explicit(&ctx->n_waiting, 1, memory_order_relaxed);
  pthread_mutex_unlock(&ctx->lock);
}

static void unlink_locked(pf_context *ctx, pf_waiter *w) {
  for (pf_waiter **p = bucket(&ctx->waiting, w->key); *p; p = &(*p)->next, ctx->waiting.steps++)
    if (*p == w) {
      *p = w->next;
      atomic_fetch_sub_explicit(&ctx->n_waiting, 1, memory_order_relaxed);
      if (w->counted_done) atomic_fetch_sub_explicit(&ctx->n_done, 1, memory_order_relaxed);
      return;
    }
}

/* Before a wait that may sleep: moves the calling thread onto the CPU
 * the runtime names for it (pf_runtime_client_cpu: its rank's loop's,
 * when every CPU carries a loop), if it is elsewhere and may run there.
 * Returns 1 with the thread's own mask in *saved, to be put back after
 * the wait (restore_cpus); 0 when nothing moved. */
static int wait_beside_loop(pf_context *ctx, cpu_set_t *saved) {
  int cpu = pf_runtime_client_cpu(ctx->runtime);
  cpu_set_t one;
  if (cpu < 0 || sched_getcpu() == cpu) return 0;
  if (pthread_getaffinity_np(pthread_self(), sizeof *saved, saved) != 0 ||
      !CPU_ISSET(cpu, saved))
    return 0; /* the user's own pinning keeps it elsewhere: left alone */
  CPU_ZERO(&one);
  CPU_SET(cpu, &one);
  return pthread_setaffinity_np(pthread_self(), sizeof one, &one) == 0;
}

static void restore_cpus(const cpu_set_t *saved) {
  (void)pthread_setaffinity_np(pthread_self(), sizeof *saved, saved);
}

/* How long a wait yields before it sleeps. */
#define WAIT_SPIN_NS 15000u
/* After SPIN_MISSES_MAX spins in a row that ended without the reply, a
 * wait sleeps at once, but for one in SPIN_PROBE_EVERY that spins again
 * to see whether replies come sooner now. */
#define SPIN_MISSES_MAX 4
#define SPIN_PROBE_EVERY 16

int pf_controller_wait_for(pf_context *ctx, pf_waiter *w, int64_t timeout_ms) {
  struct timespec ts;
  cpu_set_t saved;
  int rc = 0, moved;
  if (timeout_ms > 0) {
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += timeout_ms / 1000;
    ts.tv_nsec += (timeout_ms % 1000) * 1000000;
    if (ts.tv_nsec >= 1000000000) {
      ts.tv_sec++;
      ts.tv_nsec -= 1000000000;
    }
  }
  /* With other executions in flight (a pipelined client), replies come
   * every few microseconds: one is waited for by yielding the core (often
   * to this rank's loop thread, which brings it), not by sleeping, for a
   * futex sleep and wake-up cost the loop thread more than the rest of a
   * small step's handling (bench/dispatch OpByOp async +50%). A lone
   * execution's reply takes a whole step: sleep at once (spinning first
   * cost synchronous dispatch 7%). Nor when the spins keep missing: long
   * executions in flight (a chain of 128 small computations each,
   * bench/dispatch Chained) reply every hundred microseconds, and each
   * yield of such a spin hands this core back and forth with the loop
   * thread for nothing. */
  moved = timeout_ms != 0 && !atomic_load_explicit(&w->complete, memory_order_acquire) &&
          wait_beside_loop(ctx, &saved);
  if (timeout_ms != 0 &&
      atomic_load_explicit(&ctx->n_waiting, memory_order_relaxed) -
              atomic_load_explicit(&ctx->n_done, memory_order_relaxed) > 1 &&
      (atomic_load_explicit(&ctx->spin_misses, memory_order_relaxed) < SPIN_MISSES_MAX ||
       atomic_fetch_add_explicit(&ctx->waits_unspun, 1, memory_order_relaxed) %
               SPIN_PROBE_EVERY == SPIN_PROBE_EVERY - 1)) {
    uint64_t t0 = pf_now_ns();
    int got;
    while (!(got = atomic_load_explicit(&w->complete, memory_order_acquire)) &&
           pf_now_ns() - t0 < WAIT_SPIN_NS)
      sched_yield();
    if (got)
      atomic_store_explicit(&ctx->spin_misses, 0, memory_order_relaxed);
    else if (atomic_load_explicit(&ctx->spin_misses, memory_order_relaxed) < SPIN_MISSES_MAX)
      atomic_fetch_add_explicit(&ctx->spin_misses, 1, memory_order_relaxed);
  }
  pthread_mutex_lock(&ctx->lock);
  while (w->pending > 0 && timeout_ms != 0 && rc != ETIMEDOUT)
    rc = timeout_ms < 0 ? pthread_cond_wait(&ctx->cond, &ctx->lock)
                        : pthread_cond_timedwait(&ctx->cond, &ctx->lock, &ts);
  if (w->pending > 0) {
    pthread_mutex_unlock(&ctx->lock);
    if (moved) restore_cpus(&saved);
    return PF_ETIMEDOUT;
  }
  unlink_locked(ctx, w);
  pthread_mutex_unlock(&ctx->lock);
  if (moved) restore_cpus(&saved);
  return w->status;
}

int pf_controller_wait(pf_context *ctx, pf_waiter *w) {
  return pf_controller_wait_for(ctx, w, -1);
}

int pf_controller_send(pf_context *ctx, int rank, pf_msg *m) {
  int rc;
  if (m == NULL) return pf_context_error(ctx, PF_ENOMEM, "out of memory");
  rc = pf_runtime_send(ctx->runtime, rank, m);
  if (rc != 0) return pf_context_error(ctx, rc, "cannot reach rank %d: %s", rank, pf_strerror(rc));
  return 0;
}
