/* The CPU device: one worker thread that runs the device's ops of each
 * step in order, like a stream. It sleeps on a condition variable while its
 * next op waits for inputs, after a short spin (inputs from another device
 * of the process often land within microseconds). While it sleeps on one
 * op, the loop thread may run that op for it (ready with may_claim) and
 * move it on, so that a worker whose ops all run inline is never woken per
 * op. An idle worker "sleeps on" the first op of the part at the head of
 * its queue in the same way, before it has taken the part: a step whose
 * ops on this device all wait for a transfer or a collective and all run
 * inline never wakes the worker at all (two futex wake-ups and two sleeps
 * a step, on a machine whose cores the loop threads already keep busy). */
#define _GNU_SOURCE /* pthread_setname_np, pthread_setaffinity_np */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

#include "pathflow/error.h"
#include "base/box.h"
#include "runtime/device.h"

typedef struct cpu_device {
  pf_device base;
  pf_cpu_device_config cfg;
  pthread_t thread;
  /* Guarded by lock. While the worker sleeps waiting for an op's inputs,
   * park_step is that op's step (else NULL) and park_e its place in the
   * device's queue of the step. The loop thread may run that op itself
   * (loop_running while it does) and then move park_e on. */
  pf_step *park_step;
  uint32_t park_e;
  /* The op at park_e and its count of inputs not done (NULL: past the
   * last op, or inputs told by flags), set with them (park): the loop
   * thread looks on every poll (cpu_claim), without calls into the step. */
  uint32_t park_op;
  const _Atomic uint32_t *park_count;
  int loop_running;
  /* The worker waits for a part (in worker_main): park_step, when set, is
   * then the step of the part at the head of the queue, not yet taken,
   * waiting for its inputs since head_t0 (0: it was ready at once). */
  int idle;
  uint64_t head_t0;
  /* The loop thread ran the last op of the parked part and finished the
   * part itself: the worker must not touch that step again (it may be
   * freed before the worker wakes). */
  int part_taken;
  uint64_t taken_at; /* when */
  pthread_mutex_t lock;
  pthread_cond_t wake;
  pf_part *head, *tail;
  int stop;
  /* 1 while the worker sleeps, or is about to (wait_ready, worker_main):
   * what cpu_asleep tells producers of inputs told by flags, on every op.
   * On a line of its own, which changes only when the worker sleeps. */
  char pad_sleeping[64];
  atomic_int sleeping;
  /* Counters: the worker's own running counts (plain, no atomic per op),
   * published with one relaxed store each when a part of a step ends, for
   * the loop thread to read. Kept a cache line away from the fields the
   * loop thread takes under the lock to wake this worker or run its ops,
   * so that counting does not bounce that line. */
  char pad[64];
  uint64_t ops_run, wait_ns;
  _Atomic uint64_t ops_run_pub, wait_ns_pub;
  _Atomic uint64_t head_wait_ns; /* parts' waits before the worker took them */
  /* Written twice per op by the thread that runs it (run_kernel): lines
   * away from base and cfg, which other devices' threads read at every
   * op (finish_op calls asleep through base.ops). Beside base, it cost a
   * cache miss per op on each side of a stencil of two devices. */
  char pad_running[64];
  pf_running_slot running;
} cpu_device;

/* Set when this thread woke a sleeping worker (pf_cpu_device_woke_worker). */
static __thread int woke_worker __attribute__((tls_model("initial-exec"))); /* read every poll */

/* Wakes the worker (lock held) and says so to the calling thread. */
static void wake_worker(cpu_device *c) {
  pthread_cond_signal(&c->wake);
  woke_worker = 1;
}

/* The device's state is the worker's and the loop thread's, under the
 * lock; but when the loop thread runs the ops (loop_runs_ops) the worker
 * stays asleep for good (worker_main) and only the loop thread touches it:
 * no lock then, which was a lock and an unlock per poll (cpu_claim) and
 * three per op on the one thread that runs everything. */
static void dev_lock(cpu_device *c) {
  if (!c->cfg.loop_runs_ops) pthread_mutex_lock(&c->lock);
}

static void dev_unlock(cpu_device *c) {
  if (!c->cfg.loop_runs_ops) pthread_mutex_unlock(&c->lock);
}

int pf_cpu_device_woke_worker(void) {
  int w = woke_worker;
  woke_worker = 0;
  return w;
}


static void cpu_info(pf_device *d, pf_device_info *out) {
  cpu_device *c = (cpu_device *)d;
  out->kind = PF_DEVICE_CPU;
  out->index = c->cfg.index;
  out->memory_bytes = c->cfg.memory_bytes;
  out->flops = 0;
  out->bytes_per_s = 0;
  out->own_memory = 0;
  out->stage = 0;
}

static pf_storage *cpu_alloc(pf_device *d, size_t nbytes) {
  return pf_storage_new(nbytes, ((cpu_device *)d)->cfg.index);
}

/* Host and device memory are the same memory: every direction is a copy
 * within it. */
static int cpu_copy(pf_device *d, pf_copy_dir dir, void *dst, const int64_t *dst_dims,
                    const void *src, const int64_t *src_dims, const pf_box *box,
                    size_t elem_size) {
  (void)d;
  (void)dir;
  pf_box_copy(dst, dst_dims, src, src_dims, box, elem_size);
  return 0;
}

/* The op at place e of the device's queue of s. */
static uint32_t queue_op(const pf_step *s, int device, uint32_t e, uint32_t *n) {
  const uint32_t *q = pf_step_device_queue(s, device, n);
  return e < *n ? q[e] : UINT32_MAX;
}

/* Under the lock: parks at place e of s's queue (s NULL: nowhere). */
static void park(cpu_device *c, pf_step *s, uint32_t e) {
  uint32_t n;
  c->park_step = s;
  c->park_e = e;
  c->park_op = s != NULL ? queue_op(s, c->cfg.index, e, &n) : UINT32_MAX;
  c->park_count = c->park_op != UINT32_MAX ? pf_step_op_count(s, c->park_op) : NULL;
}

/* Under the lock: the parked op has its inputs, or the part is done. */
static int park_ready(const cpu_device *c) {
  if (c->park_op == UINT32_MAX) return 1;
  if (c->park_count != NULL) return atomic_load_explicit(c->park_count, memory_order_acquire) == 0;
  /* Told by flags: when this says no, a sleeping worker stays asleep, so
   * the handshake's fence comes first (pf_device_ops.asleep): sleeping
   * stored, fence, flags read; against flag stored, fence, cpu_asleep. */
  if (atomic_load_explicit(&c->sleeping, memory_order_relaxed))
    atomic_thread_fence(memory_order_seq_cst);
  return pf_step_op_ready(c->park_step, c->park_op);
}

/* Under the lock, the worker idle: parks on the head part (at its first op,
 * unless parked on it already) and says whether the worker should take it
 * now: its next op is ready and the loop thread is not running one of it. */
static int head_runnable(cpu_device *c) {
  int fresh, runnable;
  if (c->head == NULL) return 0;
  fresh = c->park_step != c->head->step;
  if (fresh) park(c, c->head->step, 0);
  runnable = !c->loop_running && park_ready(c);
  if (fresh) c->head_t0 = runnable ? 0 : pf_clock_now(c->cfg.clock);
  return runnable;
}

/* Under the lock: the head part leaves the queue; the device waited for
 * it from head_t0 (counted as the worker's waits are). */
static void head_leaves(cpu_device *c) {
  if (c->head_t0 != 0)
    atomic_fetch_add_explicit(&c->head_wait_ns, pf_clock_now(c->cfg.clock) - c->head_t0,
                              memory_order_relaxed);
  c->head_t0 = 0;
  park(c, NULL, 0);
  if ((c->head = c->head->next) == NULL) c->tail = NULL;
}

static void cpu_submit(pf_device *d, pf_part *pt) {
  cpu_device *c = (cpu_device *)d;
  pt->next = NULL;
  dev_lock(c);
  if (c->tail)
    c->tail->next = pt;
  else
    c->head = pt;
  c->tail = pt;
  /* An idle worker is woken only for work it can do now; a busy one gets
   * to the part when it is done, and one asleep on an op of an earlier
   * part has nothing to do with this one (waking it cost a futex wake-up
   * and took the core from the loop thread once a step). */
  if (c->idle && head_runnable(c) && !c->cfg.loop_runs_ops) wake_worker(c);
  dev_unlock(c);
}

/* If the worker sleeps waiting for exactly j and j is ready (an op told by
 * flags may still miss another's): claims j for the loop thread
 * (may_claim), or wakes the worker to run it. */
static int cpu_ready(pf_device *d, pf_step *s, uint32_t j, int may_claim) {
  cpu_device *c = (cpu_device *)d;
  int claimed = 0;
  /* With the loop running the ops, only a call from the loop may claim
   * (may_claim); one from another device's thread (a GPU's op done) must
   * not touch the state, which is the loop's alone (dev_lock): the loop
   * finds j ready at its next poll (cpu_claim). */
  if (c->cfg.loop_runs_ops && !may_claim) return 0;
  dev_lock(c);
  /* Only the op the worker sleeps on concerns it: a busy worker finds j
   * ready when it gets there (the count fell before this call), and one
   * asleep on another op would only wake to sleep again. */
  if (c->park_step == s && !c->loop_running && c->park_op == j && park_ready(c)) {
    if (may_claim)
      claimed = c->loop_running = 1;
    else
      wake_worker(c);
  }
  dev_unlock(c);
  return claimed;
}

/* The loop thread ran op j for the sleeping worker: the worker now waits
 * for its next op, and is woken only if that one is ready already. If j
 * was its last, the part is done: returns 1, and the caller finishes the
 * part for the worker (a worker woken at the end of a step on a busy
 * machine takes tens of microseconds to run; the step need not wait). A
 * part the idle worker never took leaves the queue here, unseen by it. */
static int cpu_release(pf_device *d, pf_step *s, uint32_t j) {
  cpu_device *c = (cpu_device *)d;
  int last, wake;
  (void)j;
  dev_lock(c);
  park(c, s, c->park_e + 1);
  c->loop_running = 0;
  last = c->park_op == UINT32_MAX;
  if (c->idle && c->head != NULL && c->head->step == s) {
    if (last) head_leaves(c);
    /* With the loop running the ops, it parks on the next part when it
     * next claims (cpu_claim): nobody to wake. */
    wake = !c->cfg.loop_runs_ops && head_runnable(c);
  } else if (last) {
    /* The worker sleeps in wait_ready on this part, which is done: it is
     * idle from now on, parked on the next part as an idle worker is, and
     * woken only when that one is runnable (not once a step to find its
     * part gone and go back to sleep). */
    c->part_taken = 1;
    c->taken_at = pf_clock_now(c->cfg.clock);
    c->idle = 1;
    park(c, NULL, 0);
    wake = head_runnable(c);
  } else {
    /* Only a worker that runs its ops is woken (with the loop running
     * them, asking would cost a fence an op for nothing). */
    wake = !c->cfg.loop_runs_ops && park_ready(c);
  }
  if (wake && !c->cfg.loop_runs_ops) wake_worker(c);
  dev_unlock(c);
  return last;
}

/* The op the worker waits on, if it is ready and nobody runs it: the
 * loop thread's now (loop_runs_ops). An idle worker parks on the head
 * part first (head_runnable). */
static int cpu_claim(pf_device *d, pf_step **s, uint32_t *op) {
  cpu_device *c = (cpu_device *)d;
  int claimed = 0;
  dev_lock(c);
  /* Parked on the head part already: whether its op is ready is asked
   * below (head_runnable would ask too, every poll). */
  if (c->idle && c->head != NULL && c->park_step != c->head->step) head_runnable(c);
  if (c->park_step != NULL && !c->loop_running && c->park_op != UINT32_MAX && park_ready(c)) {
    c->loop_running = claimed = 1;
    *s = c->park_step;
    *op = c->park_op;
  }
  dev_unlock(c);
  return claimed;
}

static int cpu_asleep(pf_device *d) {
  return atomic_load_explicit(&((cpu_device *)d)->sleeping, memory_order_relaxed);
}

static pf_running_slot *cpu_running(pf_device *d) { return &((cpu_device *)d)->running; }

static void cpu_counters(pf_device *d, uint64_t *ops_run, uint64_t *wait_ns) {
  cpu_device *c = (cpu_device *)d;
  *ops_run = atomic_load_explicit(&c->ops_run_pub, memory_order_relaxed);
  *wait_ns = atomic_load_explicit(&c->wait_ns_pub, memory_order_relaxed) +
             atomic_load_explicit(&c->head_wait_ns, memory_order_relaxed);
}

static void publish_counts(cpu_device *c) {
  atomic_store_explicit(&c->ops_run_pub, c->ops_run, memory_order_relaxed);
  atomic_store_explicit(&c->wait_ns_pub, c->wait_ns, memory_order_relaxed);
}

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}

/* Waits until this worker may run the op at *e of its queue q (n ops). The
 * loop thread may run ops for it meanwhile and move *e on; on return *e is
 * the op to run, or n when none is left. Returns 1 when the loop thread
 * ran the last op and finished the part: the step may be gone already. */
static int wait_ready(cpu_device *c, pf_step *s, const uint32_t *q, uint32_t n, uint32_t *e) {
  pf_clock *clock = c->cfg.clock;
  uint64_t spin = c->cfg.spin_ns, t0;
  int taken;
  if (pf_step_op_ready(s, q[*e])) return 0;
  /* Not runnable yet: the device waits (counted; clock reads only on this
   * path, never for an op that is ready). */
  t0 = pf_clock_now(clock);
  /* An input from another device or rank often lands within microseconds:
   * a short spin saves the futex sleep and wake-up (several µs each way). */
  if (spin > 0) {
    do {
      for (int k = 0; k < 64; k++) {
        if (pf_step_op_ready(s, q[*e])) {
          c->wait_ns += pf_clock_now(clock) - t0;
          return 0;
        }
        cpu_relax();
      }
    } while (pf_clock_now(clock) - t0 < spin);
  }
  publish_counts(c); /* the loop may finish the part while this sleeps */
  pthread_mutex_lock(&c->lock);
  park(c, s, *e);
  /* Asleep from here, for producers of inputs told by flags (park_ready
   * fences before it reads them). Once the part is taken, s may be gone:
   * not read again. */
  atomic_store_explicit(&c->sleeping, 1, memory_order_relaxed);
  while (!c->part_taken && (c->loop_running || !park_ready(c)))
    pthread_cond_wait(&c->wake, &c->lock);
  atomic_store_explicit(&c->sleeping, 0, memory_order_relaxed);
  taken = c->part_taken;
  if (taken) {
    /* Parked as idle on the head part meanwhile (cpu_release): that park
     * stays, for worker_main to take on. */
    c->part_taken = 0;
    c->idle = 0;
    c->wait_ns += c->taken_at - t0;
  } else {
    *e = c->park_e;
    park(c, NULL, 0);
  }
  pthread_mutex_unlock(&c->lock);
  if (!taken) c->wait_ns += pf_clock_now(clock) - t0;
  return taken;
}

/* Runs this device's ops of step s from the first-th (the loop thread ran
 * those before it). Returns 1 if the loop thread ran the last of them and
 * finished the part (s must not be touched again). */
static int run_part(cpu_device *c, pf_step *s, uint32_t first) {
  uint32_t n;
  const uint32_t *q = pf_step_device_queue(s, c->cfg.index, &n);
  for (uint32_t e = first; e < n; e++) {
    uint32_t i;
    if (wait_ready(c, s, q, n, &e)) {
      publish_counts(c);
      return 1;
    }
    if (e == n) break; /* the loop thread ran the rest */
    i = q[e];
    c->ops_run += (uint64_t)pf_step_run_op(s, i);
    pf_step_op_done(s, i, c->cfg.index);
  }
  publish_counts(c);
  return 0;
}

static void *worker_main(void *arg) {
  cpu_device *c = arg;
  pf_running_bind(&c->running);
  if (c->cfg.loop_runs_ops) {
    /* The loop thread runs every op: asleep until the device is destroyed,
     * touching nothing (the loop takes no lock: dev_lock). */
    pthread_mutex_lock(&c->lock);
    while (!c->stop) pthread_cond_wait(&c->wake, &c->lock);
    pthread_mutex_unlock(&c->lock);
    return NULL;
  }
  for (;;) {
    pf_part *p;
    uint32_t first;
    pthread_mutex_lock(&c->lock);
    while (!head_runnable(c) && !(c->stop && c->head == NULL)) {
      if (!atomic_load_explicit(&c->sleeping, memory_order_relaxed)) {
        /* Asleep from here, for producers of inputs told by flags: then
         * one more look (park_ready fences first). */
        atomic_store_explicit(&c->sleeping, 1, memory_order_relaxed);
        continue;
      }
      c->idle = 1;
      pthread_cond_wait(&c->wake, &c->lock);
      c->idle = 0;
    }
    atomic_store_explicit(&c->sleeping, 0, memory_order_relaxed);
    if (c->head == NULL) {
      pthread_mutex_unlock(&c->lock);
      return NULL;
    }
    p = c->head;
    first = c->park_e; /* ops the loop thread ran for it while it was idle */
    head_leaves(c);
    pthread_mutex_unlock(&c->lock);
    {
      pf_step *s = p->step; /* p lives in the step */
      if (!run_part(c, s, first)) pf_step_part_done(s);
    }
  }
}

static void cpu_destroy(pf_device *d) {
  cpu_device *c = (cpu_device *)d;
  pthread_mutex_lock(&c->lock);
  c->stop = 1;
  pthread_cond_signal(&c->wake);
  pthread_mutex_unlock(&c->lock);
  pthread_join(c->thread, NULL);
  pthread_mutex_destroy(&c->lock);
  pthread_cond_destroy(&c->wake);
  free(c);
}

static const pf_device_ops cpu_ops = {
    .info = cpu_info,
    .alloc = cpu_alloc,
    .copy = cpu_copy,
    .submit = cpu_submit,
    .ready = cpu_ready,
    .release = cpu_release,
    .claim = cpu_claim,
    .asleep = cpu_asleep,
    .running = cpu_running,
    .counters = cpu_counters,
    .destroy = cpu_destroy,
};

int pf_cpu_device_create(const pf_cpu_device_config *cfg, pf_device **out) {
  cpu_device *c;
  char name[32];
  *out = NULL;
  if ((c = calloc(1, sizeof *c)) == NULL) return PF_ENOMEM;
  c->base.ops = &cpu_ops;
  c->cfg = *cfg;
  c->running.rank = cfg->rank;
  /* With the loop running the ops, the worker never takes a part: the
   * device is idle from the start, its head parts parked on by the loop. */
  c->idle = cfg->loop_runs_ops;
  pthread_mutex_init(&c->lock, NULL);
  pthread_cond_init(&c->wake, NULL);
  if (pthread_create(&c->thread, NULL, worker_main, c) != 0) {
    pthread_mutex_destroy(&c->lock);
    pthread_cond_destroy(&c->wake);
    free(c);
    return PF_ESYS;
  }
  /* Named, for top -H, gdb and perf: which device a thread serves. */
  snprintf(name, sizeof name, "pf-dev%d", cfg->index);
  name[15] = '\0'; /* the kernel's limit */
  pthread_setname_np(c->thread, name);
  if (cfg->cpu >= 0) {
    cpu_set_t one;
    CPU_ZERO(&one);
    CPU_SET(cfg->cpu, &one);
    /* A failure to pin is not an error: the worker runs where the
     * scheduler puts it. */
    if (pthread_setaffinity_np(c->thread, sizeof one, &one) != 0) c->cfg.cpu = -1;
  }
  *out = &c->base;
  return 0;
}

int pf_cpu_device_cpu(const pf_device *d) {
  return d->ops == &cpu_ops ? ((const cpu_device *)d)->cfg.cpu : -1;
}

/* Pins each worker to its own CPU of the process's affinity mask, counting
 * from bind_first (the local rank's first device), when the host has a
 * core for every worker: with loop threads spinning beside them, the
 * scheduler sometimes put two busy workers on one core (each then ran at
 * half speed). */
void pf_cpu_device_pick_cpus(int bind_first, int bind_span, int n_devices, int *cpus) {
  cpu_set_t allowed;
  int mask[CPU_SETSIZE], n = 0;
  for (int d = 0; d < n_devices; d++) cpus[d] = -1;
  if (bind_first < 0 || sched_getaffinity(0, sizeof allowed, &allowed) != 0) return;
  for (int c = 0; c < CPU_SETSIZE; c++)
    if (CPU_ISSET(c, &allowed)) mask[n++] = c;
  /* One core, or more workers than cores: nothing to gain. */
  if (n < 2 || n < bind_span || bind_first + n_devices > n) return;
  for (int d = 0; d < n_devices; d++) cpus[d] = mask[bind_first + d];
}
