/* The guarded GPU's pieces, without the runtime: its allocator, that its
 * memory really faults when the host touches it, its box copies and their
 * translation, its queue (driven through a host table of fakes standing
 * in for pf_step_*), and its kernel wrappers. What must abort is run in a
 * forked child. */
#define _GNU_SOURCE
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "guarded_gpu.h"

/* ---- a host table of fakes ------------------------------------------------ */

/* A step: one device's queue of ops, each made ready by the test. */
#define MAX_OPS 16
typedef struct fake_step {
  uint32_t queue[MAX_OPS];
  uint32_t n;
  atomic_int ready[MAX_OPS];
  atomic_int ran[MAX_OPS]; /* order it ran in, from 1 */
  atomic_int done[MAX_OPS];
  atomic_int part_done;
  pf_part part;
} fake_step;

static atomic_int run_seq, parts_seq;
static _Atomic(pf_running_slot *) bound;
static atomic_int binds, unbinds;

static const uint32_t *f_queue(const pf_step *s, int device, uint32_t *n) {
  const fake_step *f = (const fake_step *)s;
  assert_int_equal(device, 3);
  *n = f->n;
  return f->queue;
}
static int f_op_ready(const pf_step *s, uint32_t op) {
  return atomic_load(&((fake_step *)s)->ready[op]);
}
static uint32_t f_op_pending(const pf_step *s, uint32_t op) { return !f_op_ready(s, op); }
static int f_run_op(pf_step *s, uint32_t op) {
  fake_step *f = (fake_step *)s;
  assert_true(atomic_load(&f->ready[op]));
  assert_true(atomic_load(&bound) != NULL); /* the worker bound its slot */
  atomic_store(&f->ran[op], atomic_fetch_add(&run_seq, 1) + 1);
  return 1;
}
static void f_op_done(pf_step *s, uint32_t op, int device) {
  assert_int_equal(device, 3);
  atomic_store(&((fake_step *)s)->done[op], 1);
}
static void f_part_done(pf_step *s) {
  atomic_store(&((fake_step *)s)->part_done, atomic_fetch_add(&parts_seq, 1) + 1);
}
static void f_running_bind(pf_running_slot *slot) {
  if (slot != NULL) {
    atomic_store(&bound, slot);
    atomic_fetch_add(&binds, 1);
  } else {
    atomic_fetch_add(&unbinds, 1);
  }
}
static pf_storage *f_wrap(void *data, size_t nbytes, int device, void (*release)(pf_storage *),
                          void *owner) {
  pf_storage *s = calloc(1, sizeof *s);
  atomic_init(&s->refs, 1);
  s->device = device;
  s->nbytes = nbytes;
  s->data = data;
  s->release = release;
  s->owner = owner;
  return s;
}
static void f_unref(pf_storage *s) {
  if (s != NULL && atomic_fetch_sub(&s->refs, 1) == 1) s->release(s);
}

/* A registry of one CPU kernel, "add" (f32), and what was added to it. */
static int cpu_user; /* its def's user */
static int add_calls;
static int cpu_add(const pf_kernel_call *call) {
  const float *a = call->in[0].data, *b = call->in[1].data;
  float *y = call->out[0].data;
  /* Handed the shadow, never the guarded address. */
  assert_false(gg_is_device(a));
  assert_false(gg_is_device(y));
  assert_ptr_equal(call->user, &cpu_user);
  for (int64_t i = 0; i < call->out[0].spec.dims[0]; i++) y[i] = a[i] + b[i];
  add_calls++;
  return 0;
}
static pf_kernel cpu_kernel = {.def = {.name = "add", .kind = PF_DEVICE_CPU, .n_in = 2,
                                       .n_out = 1, .compute = cpu_add, .user = &cpu_user}};
static pf_kernel_def added[8];
static int n_added;
static const pf_kernel *f_find(pf_registry *reg, const char *name, pf_device_kind kind) {
  (void)reg;
  assert_int_equal(kind, PF_DEVICE_CPU);
  return strcmp(name, "add") == 0 ? &cpu_kernel : NULL;
}
static int f_add(pf_registry *reg, const pf_kernel_def *def) {
  (void)reg;
  for (int i = 0; i < n_added; i++)
    if (strcmp(added[i].name, def->name) == 0 && added[i].kind == def->kind) return PF_EEXIST;
  added[n_added++] = *def;
  return 0;
}

static uint64_t f_now(pf_clock *c) {
  struct timespec ts;
  (void)c;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}
static const pf_clock_ops f_clock_ops = {.now = f_now};
static pf_clock f_clock = {.ops = &f_clock_ops};

static const pf_device_host host = {
    .abi = PF_DEVICE_PLUGIN_ABI,
    .step_device_queue = f_queue,
    .step_op_ready = f_op_ready,
    .step_op_pending = f_op_pending,
    .step_run_op = f_run_op,
    .step_op_done = f_op_done,
    .step_part_done = f_part_done,
    .running_bind = f_running_bind,
    .storage_wrap = f_wrap,
    .storage_unref = f_unref,
    .registry_find = f_find,
    .registry_add = f_add,
};

static int setup(void **state) {
  char err[256];
  (void)state;
  if (gg_arena_init(err, sizeof err) != 0) {
    fprintf(stderr, "%s\n", err);
    return -1;
  }
  return 0;
}

/* Runs fn(arg) in a child; returns the signal that ended it, or 0. */
static int child_signal(void (*fn)(void *), void *arg) {
  int status;
  pid_t pid;
  fflush(NULL);
  if ((pid = fork()) == 0) {
    /* The child's report on stderr is expected: keep the log quiet. */
    if (freopen("/dev/null", "w", stderr) == NULL) _exit(3);
    /* cmocka's handlers would turn the fault into a test failure and run
     * the remaining tests in the child. */
    signal(SIGSEGV, SIG_DFL);
    signal(SIGBUS, SIG_DFL);
    signal(SIGABRT, SIG_DFL);
    fn(arg);
    _exit(0);
  }
  assert_true(pid > 0);
  assert_int_equal(waitpid(pid, &status, 0), pid);
  return WIFSIGNALED(status) ? WTERMSIG(status) : 0;
}

/* ---- the allocator -------------------------------------------------------- */

static void test_alloc(void **state) {
  static const size_t sizes[] = {1, 100, 256, 257, 4096, 65536, 1 << 20, 3 << 20};
  void *p[8];
  size_t live0 = gg_live_bytes();
  (void)state;
  for (int i = 0; i < 8; i++) {
    unsigned char *sh;
    p[i] = gg_alloc(sizes[i]);
    assert_non_null(p[i]);
    assert_true(gg_is_device(p[i]));
    assert_int_equal((uintptr_t)p[i] % 64, 0);
    assert_true(gg_block_bytes(sizes[i]) >= sizes[i]);
    sh = gg_shadow(p[i]);
    assert_non_null(sh);
    assert_false(gg_is_device(sh));
    /* New memory is poisoned, not zero. */
    assert_int_equal(sh[0], 0xff);
    assert_int_equal(sh[sizes[i] - 1], 0xff);
    memset(sh, i + 1, sizes[i]);
  }
  /* Blocks do not overlap: each still holds its own bytes. */
  for (int i = 0; i < 8; i++) {
    unsigned char *sh = gg_shadow(p[i]);
    for (size_t k = 0; k < sizes[i]; k += 61) assert_int_equal(sh[k], i + 1);
    for (int j = 0; j < 8; j++)
      if (j != i) {
        char *a = p[i], *b = p[j];
        assert_true(a + gg_block_bytes(sizes[i]) <= b || b + gg_block_bytes(sizes[j]) <= a);
      }
  }
  assert_int_equal(gg_live_bytes() - live0, gg_block_bytes(1) + gg_block_bytes(100) +
                                                gg_block_bytes(256) + gg_block_bytes(257) +
                                                4096 + 65536 + (1 << 20) + (4 << 20));
  /* A freed block is reused for its class. */
  gg_free(p[6], sizes[6]);
  {
    void *q = gg_alloc(sizes[6] - 100);
    assert_ptr_equal(q, p[6]);
    p[6] = q;
  }
  for (int i = 0; i < 8; i++) gg_free(p[i], sizes[i]);
  assert_int_equal(gg_live_bytes(), live0);
  assert_null(gg_shadow(&live0));
}

/* Allocation from several threads at once: no block given twice. */
#define THREADS 4
#define PER_THREAD 2000
static void *alloc_many(void *arg) {
  void **out = arg;
  for (int i = 0; i < PER_THREAD; i++) {
    out[i] = gg_alloc(64 + (size_t)(i % 7) * 300);
    *(void **)gg_shadow(out[i]) = out[i]; /* its own address, in its bytes */
    if (i % 3 == 2) {
      gg_free(out[i - 1], 64 + (size_t)((i - 1) % 7) * 300);
      out[i - 1] = NULL;
    }
  }
  return NULL;
}
static void test_alloc_threads(void **state) {
  pthread_t t[THREADS];
  void **got = calloc(THREADS * PER_THREAD, sizeof *got);
  size_t live0 = gg_live_bytes();
  (void)state;
  for (int i = 0; i < THREADS; i++) pthread_create(&t[i], NULL, alloc_many, got + i * PER_THREAD);
  for (int i = 0; i < THREADS; i++) pthread_join(t[i], NULL);
  for (int i = 0; i < THREADS * PER_THREAD; i++)
    if (got[i] != NULL) assert_ptr_equal(*(void **)gg_shadow(got[i]), got[i]);
  for (int i = 0; i < THREADS * PER_THREAD; i++)
    if (got[i] != NULL) gg_free(got[i], 64 + (size_t)((i % PER_THREAD) % 7) * 300);
  assert_int_equal(gg_live_bytes(), live0);
  free(got);
}

/* ---- the guard -------------------------------------------------------------- */

static void read_it(void *p) {
  volatile unsigned char *c = p;
  fprintf(stdout, "%d\n", c[0]);
}
static void write_it(void *p) { *(volatile unsigned char *)p = 1; }

static void test_guard_faults(void **state) {
  void *p = gg_alloc(4096);
  (void)state;
  *(unsigned char *)gg_shadow(p) = 7;
  assert_int_equal(child_signal(read_it, p), SIGSEGV);
  assert_int_equal(child_signal(write_it, p), SIGSEGV);
  assert_int_equal(child_signal(read_it, gg_shadow(p)), 0); /* the shadow is fine */
  gg_free(p, 4096);
}

/* ---- box copies ------------------------------------------------------------- */

static uint32_t rnd(uint32_t *s) {
  *s = *s * 1664525u + 1013904223u;
  return *s >> 8;
}

/* gg_box_copy against an element-by-element copy, over random boxes. */
static void test_box_copy(void **state) {
  uint32_t seed = 12345;
  (void)state;
  for (int trial = 0; trial < 400; trial++) {
    pf_box b;
    int64_t sd[PF_MAX_RANK], dd[PF_MAX_RANK], sn = 1, dn = 1, idx[PF_MAX_RANK] = {0};
    int32_t *src, *dst, *want;
    memset(&b, 0, sizeof b);
    b.rank = 1 + (int)(rnd(&seed) % 4);
    for (int i = 0; i < b.rank; i++) {
      sd[i] = 1 + rnd(&seed) % 5;
      dd[i] = 1 + rnd(&seed) % 5;
      /* Often whole, so runs join. */
      b.extent[i] = rnd(&seed) % 2 ? (sd[i] < dd[i] ? sd[i] : dd[i])
                                   : 1 + rnd(&seed) % (sd[i] < dd[i] ? sd[i] : dd[i]);
      if (rnd(&seed) % 2 && sd[i] == dd[i]) b.extent[i] = sd[i];
      b.src_offset[i] = rnd(&seed) % (sd[i] - b.extent[i] + 1);
      b.dst_offset[i] = rnd(&seed) % (dd[i] - b.extent[i] + 1);
      sn *= sd[i];
      dn *= dd[i];
    }
    src = malloc((size_t)sn * 4);
    dst = malloc((size_t)dn * 4);
    want = malloc((size_t)dn * 4);
    for (int64_t k = 0; k < sn; k++) src[k] = (int32_t)k;
    for (int64_t k = 0; k < dn; k++) dst[k] = want[k] = -1;
    for (;;) {
      int64_t so = 0, o = 0;
      int i;
      for (i = 0; i < b.rank; i++) {
        so = so * sd[i] + b.src_offset[i] + idx[i];
        o = o * dd[i] + b.dst_offset[i] + idx[i];
      }
      want[o] = src[so];
      for (i = b.rank - 1; i >= 0; i--) {
        if (++idx[i] < b.extent[i]) break;
        idx[i] = 0;
      }
      if (i < 0) break;
    }
    gg_box_copy(dst, dd, src, sd, &b, 4);
    assert_memory_equal(dst, want, (size_t)dn * 4);
    free(src);
    free(dst);
    free(want);
  }
}

/* ---- the device: memory and copies ------------------------------------------ */

static pf_device *new_device(int64_t memory) {
  pf_device *d;
  assert_int_equal(gg_device_create(&host, 3, 0, memory, &f_clock, &d), 0);
  return d;
}

static pf_box whole_1d(int64_t n) {
  pf_box b;
  memset(&b, 0, sizeof b);
  b.rank = 1;
  b.extent[0] = n;
  return b;
}

static void test_device_copies(void **state) {
  pf_device *d = new_device(1 << 20);
  pf_device_info info;
  pf_storage *a, *b, *big;
  float host_in[64], host_out[64];
  int64_t dims[1] = {64}, dims2[2] = {8, 8};
  pf_box box = whole_1d(64), sub;
  size_t live0 = gg_live_bytes();
  (void)state;
  d->ops->info(d, &info);
  assert_int_equal(info.kind, PF_DEVICE_GPU);
  assert_int_equal(info.index, 3);
  assert_int_equal(info.own_memory, 1);
  assert_int_equal(info.stage, PF_STAGE_ALL);
  assert_int_equal(info.memory_bytes, 1 << 20);
  a = d->ops->alloc(d, sizeof host_in);
  b = d->ops->alloc(d, sizeof host_in);
  assert_true(gg_is_device(a->data) && gg_is_device(b->data));
  assert_int_equal(a->device, 3);
  for (int i = 0; i < 64; i++) host_in[i] = (float)i * 0.5f;
  /* H2D, D2D, D2H: the round trip gives the input back. */
  d->ops->copy(d, PF_COPY_H2D, a->data, dims, host_in, dims, &box, 4);
  assert_memory_equal(gg_shadow(a->data), host_in, sizeof host_in);
  d->ops->copy(d, PF_COPY_D2D, b->data, dims, a->data, dims, &box, 4);
  memset(host_out, 0, sizeof host_out);
  d->ops->copy(d, PF_COPY_D2H, host_out, dims, b->data, dims, &box, 4);
  assert_memory_equal(host_out, host_in, sizeof host_in);
  /* A box of a 2-d tensor: rows 2..3, columns 1..4, to the host's 0,0. */
  memset(&sub, 0, sizeof sub);
  sub.rank = 2;
  sub.src_offset[0] = 2;
  sub.src_offset[1] = 1;
  sub.extent[0] = 2;
  sub.extent[1] = 4;
  memset(host_out, 0, sizeof host_out);
  d->ops->copy(d, PF_COPY_D2H, host_out, dims2, b->data, dims2, &sub, 4);
  for (int r = 0; r < 2; r++)
    for (int c = 0; c < 4; c++) assert_true(host_out[r * 8 + c] == host_in[(r + 2) * 8 + c + 1]);
  assert_int_equal(gg_device_copies(d), 4);
  /* Past the memory it reports: NULL, as a GPU out of memory. */
  big = d->ops->alloc(d, (1 << 20) - 256);
  assert_null(big);
  host.storage_unref(a);
  host.storage_unref(b);
  assert_int_equal(gg_live_bytes(), live0);
  big = d->ops->alloc(d, (1 << 20) - 256);
  assert_non_null(big);
  /* The device goes before its last storage: the storage frees later. */
  d->ops->destroy(d);
  host.storage_unref(big);
  assert_int_equal(gg_live_bytes(), live0);
}

/* Copies given the wrong kind of memory abort, naming it. */
typedef struct bad_copy {
  pf_device *d;
  pf_copy_dir dir;
  void *dst;
  void *src;
} bad_copy;
static void do_copy(void *arg) {
  bad_copy *c = arg;
  int64_t dims[1] = {16};
  pf_box box = whole_1d(16);
  c->d->ops->copy(c->d, c->dir, c->dst, dims, c->src, dims, &box, 4);
}
static void test_device_copy_checks(void **state) {
  pf_device *d = new_device(1 << 20);
  pf_storage *a = d->ops->alloc(d, 64), *b = d->ops->alloc(d, 64);
  float h[16] = {0}, h2[16] = {0};
  (void)state;
  /* Device pointer as the host side, host pointer as the device side. */
  assert_int_equal(child_signal(do_copy, &(bad_copy){d, PF_COPY_H2D, a->data, b->data}), SIGABRT);
  assert_int_equal(child_signal(do_copy, &(bad_copy){d, PF_COPY_D2H, a->data, b->data}), SIGABRT);
  assert_int_equal(child_signal(do_copy, &(bad_copy){d, PF_COPY_D2D, a->data, h}), SIGABRT);
  assert_int_equal(child_signal(do_copy, &(bad_copy){d, PF_COPY_H2D, h, h2}), SIGABRT);
  assert_int_equal(child_signal(do_copy, &(bad_copy){d, PF_COPY_D2H, h, a->data}), 0);
  host.storage_unref(a);
  host.storage_unref(b);
  d->ops->destroy(d);
}

/* ---- the queue ----------------------------------------------------------- */

static void init_step(fake_step *f, uint32_t n, uint32_t first_op) {
  memset(f, 0, sizeof *f);
  f->n = n;
  for (uint32_t i = 0; i < n; i++) f->queue[i] = first_op + i;
  f->part.step = (pf_step *)f;
}

static void sleep_ms(int ms) {
  struct timespec ts = {0, (long)ms * 1000000L};
  nanosleep(&ts, NULL);
}

/* Two parts: the first's ops become ready from another thread in reverse
 * order, the second's are ready at once. Ops run in queue order, each once,
 * each after it became ready; parts finish in submission order. destroy
 * runs what is queued. */
static void test_queue(void **state) {
  pf_device *d = new_device(1 << 20);
  fake_step s1, s2, s3;
  uint64_t ops, wait_ns;
  (void)state;
  atomic_store(&run_seq, 0);
  atomic_store(&parts_seq, 0);
  init_step(&s1, 4, 0);
  init_step(&s2, 3, 4);
  init_step(&s3, 2, 0);
  for (uint32_t i = 0; i < s2.n; i++) atomic_store(&s2.ready[s2.queue[i]], 1);
  d->ops->submit(d, &s1.part);
  d->ops->submit(d, &s2.part);
  sleep_ms(20);
  assert_int_equal(atomic_load(&run_seq), 0); /* s1's first op waits */
  for (int i = 3; i >= 0; i--) {
    atomic_store(&s1.ready[s1.queue[i]], 1);
    assert_int_equal(d->ops->ready(d, (pf_step *)&s1, s1.queue[i], 1), 0); /* never handed over */
    sleep_ms(5);
    if (i > 0) assert_int_equal(atomic_load(&run_seq), 0);
  }
  while (atomic_load(&s2.part_done) == 0) sleep_ms(1);
  for (uint32_t i = 0; i < s1.n; i++) {
    assert_int_equal(atomic_load(&s1.ran[s1.queue[i]]), (int)i + 1);
    assert_true(atomic_load(&s1.done[s1.queue[i]]));
  }
  for (uint32_t i = 0; i < s2.n; i++)
    assert_int_equal(atomic_load(&s2.ran[s2.queue[i]]), (int)(s1.n + i) + 1);
  assert_int_equal(atomic_load(&s1.part_done), 1);
  assert_int_equal(atomic_load(&s2.part_done), 2);
  d->ops->counters(d, &ops, &wait_ns);
  assert_int_equal(ops, 7);
  assert_true(wait_ns > 0);
  assert_ptr_equal(d->ops->running(d), atomic_load(&bound));
  /* Queued, ready, then destroyed: it runs before the device stops. */
  for (uint32_t i = 0; i < s3.n; i++) atomic_store(&s3.ready[s3.queue[i]], 1);
  d->ops->submit(d, &s3.part);
  d->ops->destroy(d);
  assert_int_equal(atomic_load(&s3.part_done), 3);
  assert_true(atomic_load(&unbinds) >= 1);
}

/* ---- kernels ---------------------------------------------------------------- */

static const pf_kernel_def *gpu_add(void) {
  for (int i = 0; i < n_added; i++)
    if (strcmp(added[i].name, "add") == 0) return &added[i];
  return NULL;
}

static void test_kernels(void **state) {
  const pf_kernel_def *k;
  float *a = gg_alloc(16), *b = gg_alloc(16), *y = gg_alloc(16);
  pf_view in[2], out[1];
  pf_kernel_call call;
  (void)state;
  assert_int_equal(gg_kernels_register(&host, NULL), 0);
  assert_int_equal(gg_kernels_register(&host, NULL), 0); /* again: EEXIST ignored */
  assert_int_equal(n_added, 1);                          /* only "add" is in the fake */
  k = gpu_add();
  assert_non_null(k);
  assert_int_equal(k->kind, PF_DEVICE_GPU);
  assert_int_equal(k->n_in, 2);
  assert_true(k->compute != cpu_add);
  for (int i = 0; i < 4; i++) {
    ((float *)gg_shadow(a))[i] = (float)i;
    ((float *)gg_shadow(b))[i] = 10.0f * (float)i;
  }
  memset(&call, 0, sizeof call);
  in[0].spec = in[1].spec = out[0].spec = (pf_spec){.dtype = PF_F32, .rank = 1, .dims = {4}};
  in[0].data = a;
  in[1].data = b;
  out[0].data = y;
  call.n_in = 2;
  call.in = in;
  call.n_out = 1;
  call.out = out;
  call.user = k->user;
  assert_int_equal(k->compute(&call), 0);
  assert_int_equal(add_calls, 1);
  for (int i = 0; i < 4; i++) assert_true(((float *)gg_shadow(y))[i] == 11.0f * (float)i);
  /* The caller's views are left as they were. */
  assert_ptr_equal(in[0].data, a);
  gg_free(a, 16);
  gg_free(b, 16);
  gg_free(y, 16);
}

/* A GPU kernel handed host memory aborts. */
static void call_with_host(void *arg) {
  const pf_kernel_def *k = arg;
  float h[4] = {0};
  void *dev = gg_alloc(16);
  pf_view in[2] = {{.spec = {.dtype = PF_F32, .rank = 1, .dims = {4}}, .data = dev},
                   {.spec = {.dtype = PF_F32, .rank = 1, .dims = {4}}, .data = h}};
  pf_view out[1] = {{.spec = {.dtype = PF_F32, .rank = 1, .dims = {4}}, .data = dev}};
  pf_kernel_call call = {.n_in = 2, .in = in, .n_out = 1, .out = out, .user = k->user};
  k->compute(&call);
}
static void test_kernel_host_memory_aborts(void **state) {
  (void)state;
  if (gpu_add() == NULL) assert_int_equal(gg_kernels_register(&host, NULL), 0);
  assert_int_equal(child_signal(call_with_host, (void *)gpu_add()), SIGABRT);
}

/* ---- collectives on device memory --------------------------------------- */

/* Opens the plugin through its entry with the fake host: one device. */
static pf_device *open_one(int *rc_out) {
  pf_device_plugin_args args = {.rank = 0, .first_index = 3, .max_devices = 1, .required = 1,
                                .clock = &f_clock, .registry = NULL};
  pf_device_plugin_result res;
  char err[256] = "";
  *rc_out = pathflow_device_plugin_open(&host, &args, &res, err, sizeof err);
  if (*rc_out != 0) return NULL;
  assert_int_equal(res.n_devices, 1);
  return res.devices[0];
}

/* Without PATHFLOW_GUARDED_COLLECTIVES the ops are NULL and everything is
 * staged; with it, the ops are there and collectives are not staged,
 * unless PATHFLOW_GUARDED_STAGE says otherwise. */
static void test_collectives_env(void **state) {
  pf_device *d;
  pf_device_info info;
  int rc;
  (void)state;
  unsetenv("PATHFLOW_GUARDED_COLLECTIVES");
  unsetenv("PATHFLOW_GUARDED_STAGE");
  unsetenv("PATHFLOW_GUARDED_GPUS");
  d = open_one(&rc);
  assert_int_equal(rc, 0);
  assert_null(d->ops->comm_id);
  assert_null(d->ops->comm_join);
  assert_null(d->ops->comm_leave);
  assert_null(d->ops->collective);
  d->ops->info(d, &info);
  assert_int_equal(info.stage, PF_STAGE_ALL);
  d->ops->destroy(d);
  setenv("PATHFLOW_GUARDED_COLLECTIVES", "0", 1);
  d = open_one(&rc);
  assert_null(d->ops->collective);
  d->ops->destroy(d);
  setenv("PATHFLOW_GUARDED_COLLECTIVES", "1", 1);
  d = open_one(&rc);
  assert_non_null(d->ops->comm_id);
  assert_non_null(d->ops->comm_join);
  assert_non_null(d->ops->comm_leave);
  assert_non_null(d->ops->collective);
  d->ops->info(d, &info);
  assert_int_equal(info.stage, PF_STAGE_ALL & ~PF_STAGE_COLLECTIVES);
  d->ops->destroy(d);
  setenv("PATHFLOW_GUARDED_STAGE", "7", 1);
  d = open_one(&rc);
  d->ops->info(d, &info);
  assert_int_equal(info.stage, PF_STAGE_ALL);
  assert_non_null(d->ops->collective);
  d->ops->destroy(d);
  unsetenv("PATHFLOW_GUARDED_STAGE");
  setenv("PATHFLOW_GUARDED_COLLECTIVES", "yes", 1);
  assert_null(open_one(&rc));
  assert_int_equal(rc, PF_EINVAL);
  unsetenv("PATHFLOW_GUARDED_COLLECTIVES");
}

/* One collective of the sequence every member runs. */
typedef struct coll_round {
  int kind, op;
  pf_dtype dtype;
  size_t count;
  unsigned alias; /* members whose out is their in */
  int root;       /* broadcast; -1: the last member */
  int skew;       /* member k posts count + k elements: a mismatch */
  int want_rc;
} coll_round;

static const coll_round rounds[] = {
    {PF_ALLREDUCE, PF_REDUCE_SUM, PF_F32, 1000, 0x0, 0, 0, 0},
    {PF_ALLREDUCE, PF_REDUCE_SUM, PF_F64, 333, 0x2, 0, 0, 0},
    {PF_ALLREDUCE, PF_REDUCE_SUM, PF_I32, 1000, 0x7, 0, 0, 0},
    {PF_ALLREDUCE, PF_REDUCE_SUM, PF_F32, 4097, 0x1, 0, 0, 0},
    {PF_ALLREDUCE, PF_REDUCE_SUM, PF_I64, 17, 0x1, 0, 0, 0},
    {PF_ALLREDUCE, PF_REDUCE_MAX, PF_F32, 100, 0x0, 0, 0, 0},
    {PF_ALLREDUCE, PF_REDUCE_MIN, PF_I32, 100, 0x4, 0, 0, 0},
    {PF_ALLREDUCE, PF_REDUCE_MEAN, PF_F64, 100, 0x1, 0, 0, 0},
    {PF_BROADCAST, 0, PF_F32, 1000, 0x7, -1, 0, 0},
    {PF_BROADCAST, 0, PF_I64, 10, 0x0, 0, 0, 0},
    {PF_ALLREDUCE, PF_REDUCE_SUM, PF_F32, 0, 0x0, 0, 0, 0},
    /* Refused, by every member alike; the next ones still run. */
    {PF_ALLREDUCE, PF_REDUCE_SUM, PF_F32, 10, 0x0, 0, 1, PF_EINVAL},
    {PF_ALLREDUCE, PF_REDUCE_SUM, PF_U8, 10, 0x0, 0, 0, PF_ENOTSUP},
    {PF_ALLREDUCE, PF_REDUCE_MEAN, PF_I32, 10, 0x0, 0, 0, PF_ENOTSUP},
    {PF_ALLGATHER, 0, PF_U8, 10, 0x0, 0, 0, PF_ENOTSUP},
    {PF_ALLREDUCE, PF_REDUCE_SUM, PF_F64, 50, 0x3, 0, 0, 0},
    /* Gather and scatter: count is each member's share. */
    {PF_ALLGATHER, 0, PF_F32, 10, 0x0, 0, 0, 0},
    {PF_ALLGATHER, 0, PF_I64, 3, 0x0, 0, 0, 0},
    {PF_REDUCE_SCATTER, PF_REDUCE_SUM, PF_F32, 7, 0x0, 0, 0, 0},
    {PF_REDUCE_SCATTER, PF_REDUCE_MAX, PF_I32, 5, 0x0, 0, 0, 0},
    {PF_ALL_TO_ALL, 0, PF_F32, 6, 0x0, 0, 0, 0},
    {PF_ALL_TO_ALL, 0, PF_I64, 2, 0x0, 0, 0, 0},
};
#define N_ROUNDS (sizeof rounds / sizeof rounds[0])
#define MAX_MEMBERS 3

static size_t dt_size(pf_dtype dt) {
  return dt == PF_F64 || dt == PF_I64 ? 8 : dt == PF_U8 ? 1 : 4;
}

/* Member me's input element i in round r: different per member; every
 * fifth f32 element is 1e8, 1, -1e8 by member, whose f32 sum depends on
 * the order of the members. */
static void input_of(const coll_round *c, int r, int me, void *buf, size_t count) {
  for (size_t i = 0; i < count; i++) {
    double v = (double)((me * 7 + (int)i * 3 + r) % 11 - 5) * 0.375 + (double)me * 0.1;
    int64_t iv = (int64_t)(me + 1) * 1000 + (int64_t)i - (int64_t)r * 7 - (me == 1 ? 3000 : 0);
    switch (c->dtype) {
      case PF_F32:
        ((float *)buf)[i] = i % 5 == 0 ? (me == 0 ? 1e8f : me == 1 ? 1.0f : -1e8f) : (float)v;
        break;
      case PF_F64: ((double *)buf)[i] = v; break;
      case PF_I32: ((int32_t *)buf)[i] = (int32_t)iv; break;
      case PF_I64: ((int64_t *)buf)[i] = iv * 1000003; break;
      default: ((uint8_t *)buf)[i] = (uint8_t)iv; break;
    }
  }
}

#define REF_OP(T)                                                               \
  do {                                                                          \
    T *a = acc;                                                                 \
    const T *s = src;                                                           \
    for (size_t i = 0; i < count; i++)                                          \
      a[i] = op == PF_REDUCE_MAX   ? (s[i] > a[i] ? s[i] : a[i])                \
             : op == PF_REDUCE_MIN ? (s[i] < a[i] ? s[i] : a[i])                \
                                   : a[i] + s[i];                               \
  } while (0)

/* Elements of a member's input and output in a round of n members. */
static size_t in_count(const coll_round *c, int n) {
  return c->count * (c->kind == PF_REDUCE_SCATTER || c->kind == PF_ALL_TO_ALL ? (size_t)n : 1);
}
static size_t out_count(const coll_round *c, int n) {
  return c->count * (c->kind == PF_ALLGATHER || c->kind == PF_ALL_TO_ALL ? (size_t)n : 1);
}

/* What member me must get: the members' inputs in member order (all of
 * them for an allgather; block me of each for a reduce-scatter). */
static void *reference(const coll_round *c, int r, int n, int me) {
  size_t es = dt_size(c->dtype), count = c->count, bytes = count * es;
  size_t whole = in_count(c, n) * es;
  void *acc = malloc(out_count(c, n) * es + 1), *src = malloc(whole + 1), *blk = malloc(whole + 1);
  int op = c->op;
  size_t at = c->kind == PF_REDUCE_SCATTER ? (size_t)me * bytes : 0;
  if (c->kind == PF_BROADCAST) {
    input_of(c, r, c->root < 0 ? n - 1 : c->root, acc, count);
    free(src);
    free(blk);
    return acc;
  }
  if (c->kind == PF_ALLGATHER) {
    for (int k = 0; k < n; k++) input_of(c, r, k, (char *)acc + (size_t)k * bytes, count);
    free(src);
    free(blk);
    return acc;
  }
  if (c->kind == PF_ALL_TO_ALL) { /* chunk k: member k's chunk me */
    for (int k = 0; k < n; k++) {
      input_of(c, r, k, blk, in_count(c, n));
      memcpy((char *)acc + (size_t)k * bytes, (char *)blk + (size_t)me * bytes, bytes);
    }
    free(src);
    free(blk);
    return acc;
  }
  input_of(c, r, 0, blk, in_count(c, n));
  memcpy(acc, (char *)blk + at, bytes);
  for (int k = 1; k < n; k++) {
    input_of(c, r, k, blk, in_count(c, n));
    memcpy(src, (char *)blk + at, bytes);
    if (c->dtype == PF_F32) REF_OP(float);
    if (c->dtype == PF_F64) REF_OP(double);
    if (c->dtype == PF_I32) REF_OP(int32_t);
    if (c->dtype == PF_I64) REF_OP(int64_t);
  }
  if (op == PF_REDUCE_MEAN && c->dtype == PF_F64)
    for (size_t i = 0; i < count; i++) ((double *)acc)[i] /= (double)n;
  free(src);
  free(blk);
  return acc;
}

typedef struct member {
  pf_device *d;
  const uint8_t *id;
  size_t id_len;
  int n, me;
  int join_rc;
  int rc[N_ROUNDS];
  pf_diag diag[N_ROUNDS];
  void *got[N_ROUNDS]; /* host copies of out */
  void *comm;
} member;

/* A member's thread: joins, then runs every round, arriving in a different
 * order each time. No cmocka asserts here: the main thread checks. */
static void *member_main(void *arg) {
  member *m = arg;
  pf_diag jd = {0};
  m->join_rc = m->d->ops->comm_join(m->d, m->id, m->id_len, m->n, m->me, &m->comm, &jd);
  if (m->join_rc != 0) return NULL;
  for (int r = 0; r < (int)N_ROUNDS; r++) {
    const coll_round *c = &rounds[r];
    size_t count = c->count + (c->skew ? (size_t)m->me : 0);
    size_t es = dt_size(c->dtype), in_n = in_count(c, m->n) + (c->skew ? (size_t)m->me : 0);
    size_t in_bytes = in_n * es, out_bytes = out_count(c, m->n) * es;
    void *in = gg_alloc(in_bytes), *out = (c->alias >> m->me) & 1 ? in : gg_alloc(out_bytes);
    pf_device_collective dc = {.kind = c->kind, .reduce_op = c->op, .dtype = c->dtype,
                               .count = count, .root = c->root < 0 ? m->n - 1 : c->root,
                               .in = in, .out = out, .comm = m->comm};
    input_of(c, r, m->me, gg_shadow(in), in_n);
    sleep_ms((m->me + r) % m->n);
    m->rc[r] = m->d->ops->collective(m->d, &dc, &m->diag[r]);
    m->got[r] = malloc(out_bytes + 1);
    memcpy(m->got[r], gg_shadow(out), out_bytes);
    if (out != in) gg_free(out, out_bytes);
    gg_free(in, in_bytes);
  }
  m->d->ops->comm_leave(m->d, m->comm);
  return NULL;
}

static void run_members(int n) {
  pf_device *dev[MAX_MEMBERS];
  member m[MAX_MEMBERS];
  pthread_t t[MAX_MEMBERS];
  uint8_t id[PF_COMM_ID_MAX];
  size_t id_len = 0;
  size_t live0 = gg_live_bytes();
  for (int k = 0; k < n; k++) {
    assert_int_equal(gg_device_create(&host, k, k, 1 << 20, &f_clock, &dev[k]), 0);
    gg_device_set_collectives(dev[k], 1);
  }
  assert_int_equal(dev[0]->ops->comm_id(dev[0], id, &id_len, NULL), 0);
  assert_true(id_len > 0 && id_len <= PF_COMM_ID_MAX);
  for (int k = 0; k < n; k++) {
    memset(&m[k], 0, sizeof m[k]);
    m[k] = (member){.d = dev[k], .id = id, .id_len = id_len, .n = n, .me = k};
    assert_int_equal(pthread_create(&t[k], NULL, member_main, &m[k]), 0);
  }
  for (int k = 0; k < n; k++) pthread_join(t[k], NULL);
  for (int k = 0; k < n; k++) assert_int_equal(m[k].join_rc, 0);
  for (int r = 0; r < (int)N_ROUNDS; r++) {
    const coll_round *c = &rounds[r];
    size_t bytes = out_count(c, n) * dt_size(c->dtype);
    for (int k = 0; k < n; k++) {
      void *want = c->want_rc == 0 ? reference(c, r, n, k) : NULL;
      assert_int_equal(m[k].rc[r], c->want_rc);
      if (c->want_rc != 0) {
        /* Named in the diag, not only coded. */
        assert_int_equal(m[k].diag[r].code, c->want_rc);
        assert_true(strlen(m[k].diag[r].msg) > 0);
      } else {
        assert_int_equal(m[k].diag[r].code, 0);
        /* Bit for bit, on every member. */
        assert_memory_equal(m[k].got[r], want, bytes);
      }
      free(m[k].got[r]);
      free(want);
    }
  }
  for (int k = 0; k < n; k++) dev[k]->ops->destroy(dev[k]);
  assert_int_equal(gg_live_bytes(), live0);
}

static void test_collectives_2(void **state) {
  (void)state;
  run_members(2);
}

static void test_collectives_3(void **state) {
  (void)state;
  run_members(3);
  /* And the order of the members counts: (1e8 + 1) - 1e8 in f32. */
  {
    float a = 1e8f, b = 1.0f, c = -1e8f;
    assert_true((a + b) + c != (a + c) + b);
  }
}

/* Ids: each new; joins refused when they cannot work. */
static void test_comm_join_checks(void **state) {
  pf_device *d = new_device(1 << 20);
  uint8_t id[PF_COMM_ID_MAX], id2[PF_COMM_ID_MAX];
  size_t len, len2;
  void *comm = NULL, *other = NULL;
  pf_diag diag = {0};
  (void)state;
  gg_device_set_collectives(d, 1);
  assert_int_equal(d->ops->comm_id(d, id, &len, NULL), 0);
  assert_int_equal(d->ops->comm_id(d, id2, &len2, NULL), 0);
  assert_int_equal(len, len2);
  assert_true(memcmp(id, id2, len) != 0);
  /* One member: joined at once; a collective of one copies in to out. */
  assert_int_equal(d->ops->comm_join(d, id, len, 1, 0, &comm, &diag), 0);
  assert_non_null(comm);
  {
    double *in = gg_alloc(64), *out = gg_alloc(64);
    pf_device_collective c = {.kind = PF_ALLREDUCE, .reduce_op = PF_REDUCE_MEAN,
                              .dtype = PF_F64, .count = 8, .in = in, .out = out, .comm = comm};
    for (int i = 0; i < 8; i++) ((double *)gg_shadow(in))[i] = i * 1.5;
    assert_int_equal(d->ops->collective(d, &c, &diag), 0);
    assert_memory_equal(gg_shadow(out), gg_shadow(in), 64);
    gg_free(in, 64);
    gg_free(out, 64);
  }
  /* The same member again, or as one of another count. */
  assert_int_equal(d->ops->comm_join(d, id, len, 1, 0, &other, &diag), PF_EINVAL);
  assert_null(other);
  assert_true(strstr(diag.msg, "already") != NULL);
  memset(&diag, 0, sizeof diag);
  assert_int_equal(d->ops->comm_join(d, id, len, 2, 1, &other, &diag), PF_EINVAL);
  memset(&diag, 0, sizeof diag);
  /* Not an id, a member out of range. */
  assert_int_equal(d->ops->comm_join(d, id, len - 1, 1, 0, &other, &diag), PF_EINVAL);
  memset(&diag, 0, sizeof diag);
  assert_int_equal(d->ops->comm_join(d, id2, len2, 2, 2, &other, &diag), PF_EINVAL);
  memset(&diag, 0, sizeof diag);
  /* An id of another process: refused at once, not waited on. */
  id2[4] ^= 0x55;
  assert_int_equal(d->ops->comm_join(d, id2, len2, 2, 0, &other, &diag), PF_ENOTSUP);
  assert_true(strstr(diag.msg, "process") != NULL);
  d->ops->comm_leave(d, comm);
  /* Left by every member: the id is free of the table again. */
  memset(&diag, 0, sizeof diag);
  assert_int_equal(d->ops->comm_join(d, id, len, 1, 0, &comm, &diag), 0);
  d->ops->comm_leave(d, comm);
  d->ops->destroy(d);
}

/* A collective given host memory aborts; so does a member left waiting
 * for one that never joins or never comes. */
static void collective_host_in(void *arg) {
  pf_device *d = arg;
  uint8_t id[PF_COMM_ID_MAX];
  size_t len;
  void *comm;
  float h[4] = {0};
  pf_diag diag = {0};
  pf_device_collective c = {.kind = PF_ALLREDUCE, .dtype = PF_F32, .count = 4, .in = h,
                            .out = gg_alloc(16)};
  d->ops->comm_id(d, id, &len, NULL);
  if (d->ops->comm_join(d, id, len, 1, 0, &comm, &diag) != 0) _exit(2);
  c.comm = comm;
  d->ops->collective(d, &c, &diag);
}
static void join_alone(void *arg) {
  pf_device *d = arg;
  uint8_t id[PF_COMM_ID_MAX];
  size_t len;
  void *comm;
  pf_diag diag = {0};
  setenv("PATHFLOW_GUARDED_COMM_TIMEOUT", "1", 1);
  d->ops->comm_id(d, id, &len, NULL);
  d->ops->comm_join(d, id, len, 2, 1, &comm, &diag);
}
static void test_collective_aborts(void **state) {
  pf_device *d = new_device(1 << 20);
  (void)state;
  gg_device_set_collectives(d, 1);
  assert_int_equal(child_signal(collective_host_in, d), SIGABRT);
  assert_int_equal(child_signal(join_alone, d), SIGABRT);
  d->ops->destroy(d);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_alloc),
      cmocka_unit_test(test_alloc_threads),
      cmocka_unit_test(test_guard_faults),
      cmocka_unit_test(test_box_copy),
      cmocka_unit_test(test_device_copies),
      cmocka_unit_test(test_device_copy_checks),
      cmocka_unit_test(test_queue),
      cmocka_unit_test(test_kernels),
      cmocka_unit_test(test_kernel_host_memory_aborts),
      cmocka_unit_test(test_collectives_env),
      cmocka_unit_test(test_collectives_2),
      cmocka_unit_test(test_collectives_3),
      cmocka_unit_test(test_comm_join_checks),
      cmocka_unit_test(test_collective_aborts),
  };
  return cmocka_run_group_tests(tests, setup, NULL);
}
