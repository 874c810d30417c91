/* Memory planning: peak bytes per device, arenas shared by buffers whose
 * lifetimes do not overlap, the device memory limit. */
#include "api/context_internal.h"
#include "testing.h"
#include "runtime/storage.h"

static pf_context *ctx;

static int setup(void **state) {
  (void)state;
  unsetenv("PATHFLOW_DEVICE_MEMORY");
  return pf_init(NULL, NULL, &(pf_init_options){.cpu_devices = 2}, &ctx);
}

static int teardown(void **state) {
  (void)state;
  return pf_finalize(ctx);
}

/* x -> scale -> scale -> ... (n times) on device 0. */
static pf_executable *chain(int n, int64_t len, pf_graph **g) {
  pf_executable *exe;
  pf_spec spec = pf_spec_1d(PF_F64, len);
  pf_slice_t s;
  pf_value_t v;
  pf_attrs *a;
  int dev0 = 0;
  OK(pf_graph_create(ctx, g));
  OK(pf_graph_slice(*g, PF_DEVICE_CPU, 1, &s));
  OK(pf_graph_slice_pin(*g, s, &dev0));
  OK(pf_graph_input(*g, "x", &spec, s, pf_replicated(), &v));
  OK(pf_attrs_create(&a));
  OK(pf_attrs_set_float(a, "alpha", 1.0009765625));
  for (int i = 0; i < n; i++) {
    pf_value_t next;
    OK(pf_graph_program(*g, &(pf_program_desc){.kernel = "scale", .attrs = a, .slice = s,
                                                .n_in = 1, .in = &v},
                        &next, NULL));
    v = next;
  }
  pf_attrs_destroy(a);
  OK(pf_graph_output(*g, "y", v));
  OK(pf_compile(*g, &exe));
  return exe;
}

/* The peak of a chain does not grow with its length: each link's output
 * reuses the memory of the link before the last. */
static void test_chain_peak_is_constant(void **state) {
  int64_t peaks[3];
  int lens[3] = {10, 100, 1000};
  const int64_t bytes = 4096 * 8;
  (void)state;
  for (int k = 0; k < 3; k++) {
    pf_graph *g;
    pf_executable *exe = chain(lens[k], 4096, &g);
    OK(pf_executable_peak_memory(exe, 0, &peaks[k]));
    pf_executable_destroy(exe);
    pf_graph_destroy(g);
  }
  assert_true(peaks[0] == peaks[1] && peaks[1] == peaks[2]);
  /* Input + output + two alternating temporaries, nothing more. */
  assert_true(peaks[0] <= 4 * bytes);
  assert_true(peaks[0] >= 2 * bytes);
}

/* Results stay right when buffers share the arena, across many steps. */
static void test_chain_results_with_arena(void **state) {
  pf_graph *g;
  pf_executable *exe = chain(200, 1000, &g);
  pf_spec spec = pf_spec_1d(PF_F64, 1000);
  pf_tensor *x, *y;
  (void)state;
  OK(pf_tensor_create(&spec, &x));
  for (int i = 0; i < 1000; i++) ((double *)pf_tensor_data(x))[i] = i - 500;
  for (int round = 0; round < 3; round++) {
    pf_future *f;
    OK(pf_execute(exe, 1, &(pf_feed){.name = "x", .tensor = x}, &f));
    OK(pf_future_wait(f));
    OK(pf_future_fetch(f, "y", &y));
    for (int i = 0; i < 1000; i++) {
      double want = (i - 500) * pow(1.0009765625, 200);
      assert_true(fabs(((double *)pf_tensor_data(y))[i] - want) <= 1e-9 * fabs(want) + 1e-12);
    }
    pf_tensor_destroy(y);
    pf_future_destroy(f);
  }
  pf_tensor_destroy(x);
  pf_executable_destroy(exe);
  pf_graph_destroy(g);
}

/* A value read by a late program stays live: a diamond where the first
 * temporary is read again at the end must not be overwritten. */
static void test_long_lived_value_not_reused(void **state) {
  pf_graph *g;
  pf_executable *exe;
  pf_spec spec = pf_spec_1d(PF_F64, 512);
  pf_slice_t s;
  pf_value_t x, a, v, sum;
  pf_tensor *tx, *ty;
  pf_future *f;
  (void)state;
  OK(pf_graph_create(ctx, &g));
  OK(pf_graph_slice(g, PF_DEVICE_CPU, 1, &s));
  OK(pf_graph_input(g, "x", &spec, s, pf_replicated(), &x));
  OK(pf_graph_program(g, &(pf_program_desc){.kernel = "relu", .slice = s, .n_in = 1, .in = &x},
                      &a, NULL));
  v = a;
  for (int i = 0; i < 20; i++) { /* -relu(...) chains: each writes a new temporary */
    pf_value_t next;
    OK(pf_graph_program(g, &(pf_program_desc){.kernel = "add", .slice = s, .n_in = 2,
                                               .in = (pf_value_t[]){v, x}},
                        &next, NULL));
    v = next;
  }
  OK(pf_graph_program(g, &(pf_program_desc){.kernel = "add", .slice = s, .n_in = 2,
                                             .in = (pf_value_t[]){v, a}},
                      &sum, NULL));
  OK(pf_graph_output(g, "y", sum));
  OK(pf_compile(g, &exe));
  OK(pf_tensor_create(&spec, &tx));
  for (int i = 0; i < 512; i++) ((double *)pf_tensor_data(tx))[i] = (i % 7) - 3;
  OK(pf_execute(exe, 1, &(pf_feed){.name = "x", .tensor = tx}, &f));
  OK(pf_future_wait(f));
  OK(pf_future_fetch(f, "y", &ty));
  for (int i = 0; i < 512; i++) {
    double xv = (i % 7) - 3, r = xv > 0 ? xv : 0;
    assert_true(((double *)pf_tensor_data(ty))[i] == r + 20 * xv + r);
  }
  pf_tensor_destroy(tx);
  pf_tensor_destroy(ty);
  pf_future_destroy(f);
  pf_executable_destroy(exe);
  pf_graph_destroy(g);
}

/* A plan whose peak exceeds PATHFLOW_DEVICE_MEMORY is refused at compile
 * time, naming the device, the peak and the limit. */
static void test_device_memory_limit(void **state) {
  pf_context *small;
  pf_graph *g;
  pf_executable *exe = NULL;
  pf_spec spec = pf_spec_1d(PF_F64, 1 << 16); /* 512 KiB */
  pf_slice_t s;
  pf_value_t x, y;
  int rc;
  (void)state;
  setenv("PATHFLOW_DEVICE_MEMORY", "1M", 1);
  OK(pf_init(NULL, NULL, &(pf_init_options){.cpu_devices = 1}, &small));
  unsetenv("PATHFLOW_DEVICE_MEMORY");
  OK(pf_graph_create(small, &g));
  OK(pf_graph_slice(g, PF_DEVICE_CPU, 1, &s));
  OK(pf_graph_input(g, "x", &spec, s, pf_replicated(), &x));
  OK(pf_graph_program(g, &(pf_program_desc){.kernel = "relu", .slice = s, .n_in = 1, .in = &x},
                      &y, NULL));
  OK(pf_graph_output(g, "y", y));
  rc = pf_compile(g, &exe); /* 2 x 512 KiB fits in 1 MiB */
  if (rc) fail_msg("%s", pf_last_error(small));
  pf_executable_destroy(exe);
  OK(pf_graph_program(g, &(pf_program_desc){.kernel = "relu", .slice = s, .n_in = 1, .in = &y},
                      &x, NULL));
  OK(pf_graph_output(g, "y2", x));
  rc = pf_compile(g, &exe); /* three live at the end: does not fit */
  assert_int_equal(rc, PF_EMEMORY);
  assert_null(exe);
  assert_non_null(strstr(pf_last_error(small), "device 0"));
  assert_non_null(strstr(pf_last_error(small), "1572864"));
  assert_non_null(strstr(pf_last_error(small), "1048576"));
  pf_graph_destroy(g);
  pf_finalize(small);
  /* A malformed limit is refused by name. */
  setenv("PATHFLOW_DEVICE_MEMORY", "lots", 1);
  assert_int_equal(pf_init(NULL, NULL, NULL, &small), PF_EINVAL);
  unsetenv("PATHFLOW_DEVICE_MEMORY");
}


/* On several ranks the controller plans its own plan's memory last, once
 * the others' plans are sent (pf_schedule_split): a plan too large for
 * rank 0's device is refused all the same, naming it, the others' loaded
 * plans are let go, and the job goes on; one too large for rank 1's device
 * is refused before anything is sent. Two ranks in one process
 * (PATHFLOW_LOOPBACK_RANKS), one device each, 1 MiB of memory each. */
static pf_graph *two_rank_graph(pf_context *c, int big_on, int big) {
  pf_graph *g;
  pf_spec large = pf_spec_1d(PF_F64, 1 << 16), small = pf_spec_1d(PF_F64, 16); /* 512 KiB, 128 B */
  for (int r = 0; r < 2; r++) {
    pf_slice_t s;
    pf_value_t v;
    char x[16], y[32];
    int dev = r, n = big && r == big_on ? 2 : 1;
    if (r == 0) OK(pf_graph_create(c, &g));
    OK(pf_graph_slice(g, PF_DEVICE_CPU, 1, &s));
    OK(pf_graph_slice_pin(g, s, &dev));
    snprintf(x, sizeof x, "x%d", r);
    OK(pf_graph_input(g, x, r == big_on ? &large : &small, s, pf_replicated(), &v));
    for (int i = 0; i < n; i++) { /* two relus: three 512 KiB live at the end */
      pf_value_t next;
      OK(pf_graph_program(g, &(pf_program_desc){.kernel = "relu", .slice = s, .n_in = 1,
                                                 .in = &v},
                          &next, NULL));
      snprintf(y, sizeof y, "y%d_%d", r, i);
      OK(pf_graph_output(g, y, next));
      v = next;
    }
  }
  return g;
}

static void test_device_memory_limit_ranks(void **state) {
  pf_context *two;
  pf_graph *g;
  pf_executable *exe = NULL;
  pf_tensor *x0, *x1, *y;
  pf_future *f;
  pf_spec large = pf_spec_1d(PF_F64, 1 << 16), small = pf_spec_1d(PF_F64, 16);
  int rc;
  (void)state;
  setenv("PATHFLOW_DEVICE_MEMORY", "1M", 1);
  setenv("PATHFLOW_LOOPBACK_RANKS", "2", 1);
  OK(pf_init(NULL, NULL, &(pf_init_options){.cpu_devices = 1}, &two));
  unsetenv("PATHFLOW_DEVICE_MEMORY");
  unsetenv("PATHFLOW_LOOPBACK_RANKS");
  for (int big_on = 0; big_on < 2; big_on++) {
    char want[24];
    g = two_rank_graph(two, big_on, 1);
    rc = pf_compile(g, &exe);
    assert_int_equal(rc, PF_EMEMORY);
    assert_null(exe);
    snprintf(want, sizeof want, "device %d", big_on);
    if (strstr(pf_last_error(two), want) == NULL || strstr(pf_last_error(two), "1572864") == NULL)
      fail_msg("big on rank %d: %s", big_on, pf_last_error(two));
    pf_graph_destroy(g);
  }
  /* The job goes on: a graph that fits compiles and runs on both ranks. */
  g = two_rank_graph(two, 0, 0);
  rc = pf_compile(g, &exe);
  if (rc) fail_msg("%s", pf_last_error(two));
  OK(pf_tensor_create(&large, &x0));
  OK(pf_tensor_create(&small, &x1));
  for (int i = 0; i < 1 << 16; i++) ((double *)pf_tensor_data(x0))[i] = i % 2 ? -i : i;
  for (int i = 0; i < 16; i++) ((double *)pf_tensor_data(x1))[i] = i % 2 ? i : -i;
  OK(pf_execute(exe, 2, (pf_feed[]){{.name = "x0", .tensor = x0}, {.name = "x1", .tensor = x1}},
                &f));
  OK(pf_future_wait(f));
  OK(pf_future_fetch(f, "y0_0", &y));
  for (int i = 0; i < 1 << 16; i++) assert_true(((double *)pf_tensor_data(y))[i] == (i % 2 ? 0 : i));
  pf_tensor_destroy(y);
  OK(pf_future_fetch(f, "y1_0", &y));
  for (int i = 0; i < 16; i++) assert_true(((double *)pf_tensor_data(y))[i] == (i % 2 ? i : 0));
  pf_tensor_destroy(y);
  pf_future_destroy(f);
  pf_tensor_destroy(x0);
  pf_tensor_destroy(x1);
  pf_executable_destroy(exe);
  pf_graph_destroy(g);
  OK(pf_finalize(two));
}

static atomic_int hold; /* test.hold returns once it is 0 */

static int hold_shape(const pf_attrs *a, int n_in, const pf_spec *in, int n_out, pf_spec *out,
                      pf_diag *d) {
  (void)a, (void)n_in, (void)n_out, (void)d;
  out[0] = in[0];
  return 0;
}

static int hold_compute(const pf_kernel_call *c) {
  struct timespec ts = {0, 1000000};
  while (atomic_load(&hold)) nanosleep(&ts, NULL);
  memcpy(c->out[0].data, c->in[0].data, pf_spec_nbytes(&c->in[0].spec));
  return 0;
}

/* The compile-time check covers one step, but 64 may be in flight: a step
 * is dispatched only when its planned peak fits beside those of the steps
 * in flight on its devices. With room for 3 steps and the first held, 3
 * are in flight and the rest wait (all 10 were in flight before); then
 * every one completes with its own result. */
static void test_steps_admitted_by_memory(void **state) {
  pf_kernel_def def = {.name = "test.hold", .kind = PF_DEVICE_CPU, .n_in = 1, .n_out = 1,
                       .shape = hold_shape, .compute = hold_compute};
  pf_spec spec = pf_spec_1d(PF_F64, 1 << 16); /* 512 KiB */
  pf_context *small;
  pf_graph *g;
  pf_executable *exe;
  pf_slice_t s;
  pf_value_t x, y;
  pf_future *f[10];
  pf_tensor *t;
  int64_t peak;
  int in_flight;
  (void)state;
  setenv("PATHFLOW_DEVICE_MEMORY", "3584K", 1); /* 3.5 MiB */
  OK(pf_init(NULL, NULL, &(pf_init_options){.cpu_devices = 1, .kernels = &def, .n_kernels = 1},
             &small));
  unsetenv("PATHFLOW_DEVICE_MEMORY");
  OK(pf_graph_create(small, &g));
  OK(pf_graph_slice(g, PF_DEVICE_CPU, 1, &s));
  OK(pf_graph_input(g, "x", &spec, s, pf_replicated(), &x));
  OK(pf_graph_program(g, &(pf_program_desc){.kernel = "test.hold", .slice = s, .n_in = 1,
                                             .in = &x},
                      &y, NULL));
  OK(pf_graph_output(g, "y", y));
  OK(pf_compile(g, &exe));
  OK(pf_executable_peak_memory(exe, 0, &peak));
  assert_int_equal(peak, 1 << 20); /* x and y */
  OK(pf_tensor_create(&spec, &t));
  atomic_store(&hold, 1);
  for (int i = 0; i < 10; i++) {
    ((double *)pf_tensor_data(t))[0] = i;
    OK(pf_execute(exe, 1, &(pf_feed){.name = "x", .tensor = t}, &f[i]));
  }
  pthread_mutex_lock(&small->lock);
  in_flight = small->in_flight;
  pthread_mutex_unlock(&small->lock);
  assert_int_equal(in_flight, 3);
  atomic_store(&hold, 0);
  for (int i = 0; i < 10; i++) {
    pf_tensor *out;
    OK(pf_future_wait(f[i]));
    OK(pf_future_fetch(f[i], "y", &out));
    assert_true(((const double *)pf_tensor_cdata(out))[0] == i);
    pf_tensor_destroy(out);
    pf_future_destroy(f[i]);
  }
  pthread_mutex_lock(&small->lock);
  assert_int_equal(small->mem_in_flight[0], 0);
  pthread_mutex_unlock(&small->lock);
  pf_tensor_destroy(t);
  pf_executable_destroy(exe);
  pf_graph_destroy(g);
  pf_finalize(small);
}

/* Freed large blocks are kept for the next step; when the cache is full of
 * one size, a block of another size evicts the oldest ones instead of
 * being refused (then every step of a new size would fault its pages in
 * again). */
static void test_block_cache_evicts_oldest(void **state) {
  const size_t mib = (size_t)1 << 20;
  pf_storage *small[16], *big;
  (void)state;
  pf_storage_cache_clear();
  for (int i = 0; i < 16; i++) assert_non_null(small[i] = pf_storage_new(16 * mib, 0));
  for (int i = 0; i < 16; i++) pf_storage_unref(small[i]);
  if (pf_storage_cache_bytes() == 0) {
    pf_storage_cache_clear();
    skip(); /* AddressSanitizer: nothing is kept */
  }
  assert_int_equal(pf_storage_cache_bytes(), 256 * mib); /* the default limit, full */
  assert_non_null(big = pf_storage_new(64 * mib, 0));
  pf_storage_unref(big);
  /* Kept: four 16 MiB blocks went to make room. */
  assert_int_equal(pf_storage_cache_bytes(), 256 * mib);
  assert_non_null(big = pf_storage_new(64 * mib, 0)); /* taken from the cache */
  assert_int_equal(pf_storage_cache_bytes(), 192 * mib);
  pf_storage_unref(big);
  pf_storage_cache_clear();
  assert_int_equal(pf_storage_cache_bytes(), 0);
}

/* A step may free hundreds of blocks of one size (a receive buffer per hop
 * of a chain of transfers): all are kept, up to the limit, not 32; and past
 * 32 distinct sizes, the size used least recently gives way. */
static void test_block_cache_keeps_many(void **state) {
  const size_t kib = (size_t)1 << 10;
  enum { N = 300, SIZES = 40 };
  pf_storage *b[N];
  (void)state;
  pf_storage_cache_clear();
  for (int i = 0; i < N; i++) assert_non_null(b[i] = pf_storage_new(64 * kib, 0));
  for (int i = 0; i < N; i++) pf_storage_unref(b[i]);
  if (pf_storage_cache_bytes() == 0) {
    pf_storage_cache_clear();
    skip(); /* AddressSanitizer: nothing is kept */
  }
  assert_int_equal(pf_storage_cache_bytes(), N * 64 * kib);
  for (int i = 0; i < N; i++) assert_non_null(b[i] = pf_storage_new(64 * kib, 0));
  assert_int_equal(pf_storage_cache_bytes(), 0); /* every one came back from the cache */
  for (int i = 0; i < N; i++) pf_storage_unref(b[i]);
  /* 40 more sizes, one block each: 32 sizes fit, so the 64 KiB blocks
   * (used least recently) go first, then the oldest of the new sizes. */
  for (int i = 0; i < SIZES; i++) {
    pf_storage *one = pf_storage_new((size_t)(100 + i) * kib, 0);
    assert_non_null(one);
    pf_storage_unref(one);
  }
  {
    size_t want = 0;
    for (int i = SIZES - 32; i < SIZES; i++) want += (size_t)(100 + i) * kib;
    assert_int_equal(pf_storage_cache_bytes(), want);
  }
  pf_storage_cache_clear();
  assert_int_equal(pf_storage_cache_bytes(), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_block_cache_keeps_many),
      cmocka_unit_test(test_chain_peak_is_constant),
      cmocka_unit_test(test_chain_results_with_arena),
      cmocka_unit_test(test_long_lived_value_not_reused),
      cmocka_unit_test(test_device_memory_limit),
      cmocka_unit_test(test_device_memory_limit_ranks),
      cmocka_unit_test(test_steps_admitted_by_memory),
      cmocka_unit_test(test_block_cache_evicts_oldest),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
