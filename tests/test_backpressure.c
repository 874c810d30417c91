/* Backpressure and O(1) work per execution: pf_execute blocks while
 * max_pending executions are pending, pf_execute_try returns PF_EAGAIN,
 * and queueing many executions costs time linear in their number (the
 * controller's waiters and the executor's buffer store used to be walked
 * per execution: 40k queued took 25 s). */
#include <pthread.h>
#include <unistd.h>

#include "api/context_internal.h"
#include "runtime/store.h"
#include "testing.h"

static pf_context *ctx;
static atomic_int gate; /* test.gate kernels return once it is 1 */

static int gate_shape(const pf_attrs *a, int n_in, const pf_spec *in, int n_out, pf_spec *out,
                      pf_diag *d) {
  (void)a, (void)n_in, (void)in, (void)n_out, (void)d;
  out[0] = pf_spec_scalar(PF_U8);
  return 0;
}

static int gate_compute(const pf_kernel_call *c) {
  struct timespec ts = {0, 1000000};
  (void)c;
  while (!atomic_load(&gate)) nanosleep(&ts, NULL);
  return 0;
}

static const pf_kernel_def gate_def = {.name = "test.gate", .kind = PF_DEVICE_CPU, .n_in = 0,
                                       .n_out = 1, .shape = gate_shape,
                                       .compute = gate_compute};

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* ---- the executor's store: every operation a few probes ---------------------------- */

/* Puts n ids of 2 shards each, looks each up, drops them all; returns the
 * probes per operation. A drop used to scan the whole table. */
static double store_probes_per_op(int n) {
  pf_store *s;
  uint64_t p0;
  OK(pf_store_create(&s));
  p0 = pf_store_probes(s);
  for (int i = 1; i <= n; i++)
    for (int32_t k = 0; k < 2; k++) OK(pf_store_put(s, (uint64_t)i, k, pf_storage_new(8, 0)));
  assert_int_equal(pf_store_count(s), 2 * n);
  for (int i = 1; i <= n; i++) assert_non_null(pf_store_get(s, (uint64_t)i, 1));
  assert_null(pf_store_get(s, (uint64_t)n + 1, 0));
  for (int i = 1; i <= n; i++) assert_int_equal(pf_store_drop(s, (uint64_t)i), 2);
  assert_int_equal(pf_store_count(s), 0);
  assert_int_equal(pf_store_bytes(s), 0);
  assert_int_equal(pf_store_drop(s, 1), 0);
  double per_op = (double)(pf_store_probes(s) - p0) / (4.0 * n);
  pf_store_destroy(s);
  return per_op;
}

/* Marks for shards in the making: expected until put (then found) or
 * failed (then the run is named), gone with the drop; many marks at once
 * grow the table (marks that did not count toward its load once left it
 * with no empty slot, and the next insert probed for ever). */
static void test_store_marks(void **state) {
  pf_store *s;
  uint64_t exe = 0, step = 0;
  enum { N = 5000 };
  (void)state;
  OK(pf_store_create(&s));
  for (int i = 1; i <= N; i++)
    for (int32_t k = 0; k < 2; k++) OK(pf_store_expect(s, (uint64_t)i, k, 7, (uint64_t)i));
  assert_int_equal(pf_store_count(s), 0);
  assert_true(pf_store_expected(s, 1, 0) && pf_store_expected(s, 1, -1));
  assert_false(pf_store_expected(s, N + 1, -1));
  assert_null(pf_store_get(s, 1, 0));
  OK(pf_store_put(s, 1, 0, pf_storage_new(8, 0)));
  assert_non_null(pf_store_get(s, 1, 0));
  assert_false(pf_store_expected(s, 1, 0));
  assert_true(pf_store_expected(s, 1, -1)); /* shard 1 is still coming */
  pf_store_fail(s, 1, 1);
  assert_false(pf_store_expected(s, 1, -1));
  assert_true(pf_store_failed(s, 1, 1, &exe, &step));
  assert_true(exe == 7 && step == 1);
  assert_false(pf_store_failed(s, 1, 0, &exe, &step));
  assert_int_equal(pf_store_count(s), 1);
  for (int i = 1; i <= N; i++) assert_int_equal(pf_store_drop(s, (uint64_t)i), i == 1);
  assert_false(pf_store_failed(s, 1, 1, &exe, &step));
  assert_false(pf_store_expected(s, 2, -1));
  /* After the drops the tombstones go at the next resize: the table still
   * takes new ids. */
  for (int i = N + 1; i <= 3 * N; i++) OK(pf_store_expect(s, (uint64_t)i, 0, 7, 1));
  assert_int_equal(pf_store_count(s), 0);
  pf_store_destroy(s);
}

static void test_store_operations_are_constant(void **state) {
  double small, large;
  (void)state;
  small = store_probes_per_op(1000);
  large = store_probes_per_op(100000);
  printf("store: %.2f probes per operation at 1000 ids, %.2f at 100000\n", small, large);
  /* Linear probing at load <= 1/2: a few probes each, whatever the size. */
  assert_true(small < 8);
  assert_true(large < 8);
}

/* Shards that are not contiguous (spread placement puts shards 0, 3, 6 on
 * one rank): a drop finds them all, and only them. */
static void test_store_sparse_shards(void **state) {
  pf_store *s;
  (void)state;
  OK(pf_store_create(&s));
  for (int32_t k = 0; k < 9; k += 3) OK(pf_store_put(s, 7, k, pf_storage_new(16, 0)));
  OK(pf_store_put(s, 8, 1, pf_storage_new(16, 0)));
  OK(pf_store_put(s, 7, 3, pf_storage_new(32, 0))); /* replaces */
  assert_int_equal(pf_store_count(s), 4);
  assert_int_equal(pf_store_bytes(s), 16 + 32 + 16 + 16);
  assert_int_equal(pf_store_drop(s, 7), 3);
  assert_null(pf_store_get(s, 7, 0));
  assert_non_null(pf_store_get(s, 8, 1));
  assert_int_equal(pf_store_put(s, 9, -1, pf_storage_new(1, 0)), PF_EINVAL);
  assert_int_equal(pf_store_count(s), 1);
  pf_store_destroy(s);
}

/* ---- many executions queued at once ----------------------------------------------------- */

static int setup_default(void **state) {
  (void)state;
  return pf_init(NULL, NULL, &(pf_init_options){.cpu_devices = 2}, &ctx);
}

static int teardown(void **state) {
  (void)state;
  return pf_finalize(ctx);
}

/* relu(x) for x = f32[8] split over 2 devices; x[0] is the execution's
 * number, so every output can be matched to its feed. */
static pf_executable *relu_exe(void) {
  pf_graph *g;
  pf_executable *exe;
  pf_slice_t s;
  pf_value_t x, y;
  pf_spec spec = pf_spec_1d(PF_F32, 8);
  OK(pf_graph_create(ctx, &g));
  OK(pf_graph_slice(g, PF_DEVICE_CPU, 2, &s));
  OK(pf_graph_input(g, "x", &spec, s, pf_split(0), &x));
  OK(pf_graph_program(g, &(pf_program_desc){.kernel = "relu", .slice = s, .n_in = 1, .in = &x},
                      &y, NULL));
  OK(pf_graph_output(g, "y", y));
  OK(pf_compile(g, &exe));
  pf_graph_destroy(g);
  return exe;
}

/* Queues n executions without waiting (pf_execute blocks past
 * max_pending), then waits for all and checks a sample of results.
 * Returns the seconds it took. */
static double queue_many(pf_executable *exe, int n) {
  pf_spec spec = pf_spec_1d(PF_F32, 8);
  pf_future **f = calloc((size_t)n, sizeof *f);
  pf_tensor *x;
  double t0;
  assert_non_null(f);
  OK(pf_tensor_create(&spec, &x));
  for (int j = 0; j < 8; j++) ((float *)pf_tensor_data(x))[j] = (float)(j - 4);
  t0 = now_s();
  for (int i = 0; i < n; i++) {
    ((float *)pf_tensor_data(x))[0] = (float)i; /* copied by pf_execute */
    OK(pf_execute(exe, 1, &(pf_feed){.name = "x", .tensor = x}, &f[i]));
  }
  for (int i = 0; i < n; i++) OK(pf_future_wait(f[i]));
  double took = now_s() - t0;
  for (int i = 0; i < n; i += n / 16 + 1) {
    pf_tensor *y;
    OK(pf_future_fetch(f[i], "y", &y));
    const float *v = pf_tensor_cdata(y);
    assert_true(v[0] == (float)i);
    for (int j = 1; j < 8; j++) assert_true(v[j] == (j < 4 ? 0.0f : (float)(j - 4)));
    pf_tensor_destroy(y);
  }
  for (int i = 0; i < n; i++) pf_future_destroy(f[i]);
  pf_tensor_destroy(x);
  free(f);
  return took;
}

static void test_many_queued_scale_linearly(void **state) {
  pf_executable *exe;
  double small, large;
  (void)state;
  exe = relu_exe();
  queue_many(exe, 200); /* warm up */
  small = fmin(queue_many(exe, 2000), queue_many(exe, 2000));
  pthread_mutex_lock(&ctx->lock);
  uint64_t steps0 = ctx->waiting.steps;
  pthread_mutex_unlock(&ctx->lock);
  large = queue_many(exe, 20000);
  pthread_mutex_lock(&ctx->lock);
  double per_exe = (double)(ctx->waiting.steps - steps0) / 20000;
  pthread_mutex_unlock(&ctx->lock);
  large = fmin(large, queue_many(exe, 20000));
  printf("queued without waiting: 2000 in %.3f s, 20000 in %.3f s (%.1fx); %.2f waiters "
         "visited per execution\n",
         small, large, large / small, per_exe);
  /* A reply finds its waiter and a wait unlinks it in a few steps, however
   * many are pending (a list walk made it thousands). */
  assert_true(per_exe < 8);
  /* Linear: 10x, and up to 2.5x more as the working set outgrows the
   * caches. Quadratic, as before: over 100x. Best of two runs each, so
   * that a loaded machine does not fail it. */
  assert_true(large < 50 * small);
  pf_executable_destroy(exe);
}

/* Thousands of outputs held as buffers and released in a scattered order:
 * the table finds every one left and none released (its deletions move
 * entries back along their probe runs). */
static void test_many_buffers_held(void **state) {
  enum { N = 3000 };
  pf_executable *exe = relu_exe();
  pf_buffer_t *b = calloc(N, sizeof *b);
  pf_spec spec = pf_spec_1d(PF_F32, 8), got;
  pf_tensor *x, *y;
  (void)state;
  assert_non_null(b);
  OK(pf_tensor_create(&spec, &x));
  for (int i = 0; i < N; i++) {
    pf_future *f;
    ((float *)pf_tensor_data(x))[0] = (float)i;
    OK(pf_execute(exe, 1, &(pf_feed){.name = "x", .tensor = x}, &f));
    OK(pf_future_wait(f));
    OK(pf_future_output(f, "y", &b[i]));
    pf_future_destroy(f);
  }
  /* Release two in three, in an order unrelated to the ids. */
  for (int k = 0; k < N; k++) {
    int i = (int)(((int64_t)k * 1237) % N);
    if (i % 3 != 0) OK(pf_buffer_release(ctx, b[i]));
  }
  for (int i = 0; i < N; i++) {
    if (i % 3 != 0) {
      assert_int_equal(pf_buffer_spec(ctx, b[i], &got), PF_ESTALE);
      continue;
    }
    OK(pf_buffer_spec(ctx, b[i], &got));
    assert_true(pf_spec_equal(&got, &spec));
    if (i % 300 == 0) {
      OK(pf_buffer_fetch(ctx, b[i], &y));
      assert_true(((const float *)pf_tensor_cdata(y))[0] == (float)i);
      pf_tensor_destroy(y);
    }
    OK(pf_buffer_release(ctx, b[i]));
  }
  pf_tensor_destroy(x);
  free(b);
  pf_executable_destroy(exe);
}

/* ---- PF_EAGAIN and blocking ---------------------------------------------------------------- */

#define LIMIT 4

static int setup_limited(void **state) {
  (void)state;
  return pf_init(NULL, NULL,
                 &(pf_init_options){.cpu_devices = 2, .kernels = &gate_def, .n_kernels = 1,
                                    .max_pending = LIMIT},
                 &ctx);
}

static pf_executable *gate_exe(void) {
  pf_graph *g;
  pf_executable *exe;
  pf_slice_t s;
  pf_value_t v;
  OK(pf_graph_create(ctx, &g));
  OK(pf_graph_slice(g, PF_DEVICE_CPU, 1, &s));
  OK(pf_graph_program(g, &(pf_program_desc){.kernel = "test.gate", .slice = s}, &v, NULL));
  OK(pf_graph_output(g, "v", v));
  OK(pf_compile(g, &exe));
  pf_graph_destroy(g);
  return exe;
}

static void test_try_returns_eagain_when_full(void **state) {
  pf_executable *exe = gate_exe(), *relu = relu_exe();
  pf_future *f[LIMIT], *extra = (pf_future *)1;
  pf_spec spec = pf_spec_1d(PF_F32, 8);
  pf_tensor *x;
  (void)state;
  OK(pf_tensor_create(&spec, &x));
  atomic_store(&gate, 0);
  /* Failed executions give their admission back. */
  for (int i = 0; i < 3 * LIMIT; i++)
    assert_int_equal(pf_execute_try(relu, 0, NULL, &extra), PF_ENOFEED);
  for (int i = 0; i < LIMIT; i++) OK(pf_execute_try(exe, 0, NULL, &f[i]));
  /* Full, whichever executable asks. */
  assert_int_equal(pf_execute_try(exe, 0, NULL, &extra), PF_EAGAIN);
  assert_null(extra);
  assert_non_null(strstr(pf_last_error(ctx), "max_pending"));
  assert_int_equal(pf_execute_try(relu, 1, &(pf_feed){.name = "x", .tensor = x}, &extra),
                   PF_EAGAIN);
  atomic_store(&gate, 1);
  OK(pf_future_wait(f[0]));
  OK(pf_execute_try(relu, 1, &(pf_feed){.name = "x", .tensor = x}, &extra));
  assert_string_equal(pf_last_error(ctx), "");
  OK(pf_future_wait(extra));
  pf_future_destroy(extra);
  for (int i = 0; i < LIMIT; i++) {
    OK(pf_future_wait(f[i]));
    pf_future_destroy(f[i]);
  }
  pf_tensor_destroy(x);
  pf_executable_destroy(relu);
  pf_executable_destroy(exe);
}

static void *open_gate_later(void *arg) {
  struct timespec ts = {0, 100 * 1000000};
  (void)arg;
  nanosleep(&ts, NULL);
  atomic_store(&gate, 1);
  return NULL;
}

/* With LIMIT executions pending, pf_execute returns only once one of them
 * has completed, which the gate holds back until another thread opens it. */
static void test_execute_blocks_until_one_completes(void **state) {
  pf_executable *exe = gate_exe();
  pf_future *f[LIMIT + 1];
  pthread_t opener;
  (void)state;
  atomic_store(&gate, 0);
  for (int i = 0; i < LIMIT; i++) OK(pf_execute(exe, 0, NULL, &f[i]));
  assert_int_equal(pthread_create(&opener, NULL, open_gate_later, NULL), 0);
  OK(pf_execute(exe, 0, NULL, &f[LIMIT]));
  assert_int_equal(atomic_load(&gate), 1);
  assert_true(pf_future_done(f[0]) || pf_future_done(f[1]) || pf_future_done(f[2]) ||
              pf_future_done(f[3]));
  pthread_join(opener, NULL);
  for (int i = 0; i <= LIMIT; i++) {
    OK(pf_future_wait(f[i]));
    pf_future_destroy(f[i]);
  }
  pf_executable_destroy(exe);
}

static void test_negative_limit_refused(void **state) {
  pf_context *bad = (pf_context *)1;
  (void)state;
  assert_int_equal(pf_init(NULL, NULL, &(pf_init_options){.max_pending = -1}, &bad), PF_EINVAL);
  assert_null(bad);
}

int main(void) {
  const struct CMUnitTest unit[] = {
      cmocka_unit_test(test_store_operations_are_constant),
      cmocka_unit_test(test_store_marks),
      cmocka_unit_test(test_store_sparse_shards),
      cmocka_unit_test(test_negative_limit_refused),
  };
  const struct CMUnitTest queued[] = {
      cmocka_unit_test(test_many_queued_scale_linearly),
      cmocka_unit_test(test_many_buffers_held),
  };
  const struct CMUnitTest limited[] = {
      cmocka_unit_test(test_try_returns_eagain_when_full),
      cmocka_unit_test(test_execute_blocks_until_one_completes),
  };
  int failed = cmocka_run_group_tests_name("store", unit, NULL, NULL);
  failed += cmocka_run_group_tests_name("queued", queued, setup_default, teardown);
  failed += cmocka_run_group_tests_name("limited", limited, setup_limited, teardown);
  return failed != 0;
}
