/* Executions chained through outputs handed over before they are made
 * (pf_future_output on an execution still running): the values, donation
 * along the chain, fetches and releases of a buffer in the making, a
 * producer that fails, and a producer that waits for a dispatch slot. */
#include <stdatomic.h>
#include <time.h>

#include "testing.h"

static pf_context *ctx;

static int setup(void **state) {
  (void)state;
  return pf_init(NULL, NULL, &(pf_init_options){.cpu_devices = 2}, &ctx);
}

static int teardown(void **state) {
  (void)state;
  return pf_finalize(ctx);
}

static atomic_int inc_calls;

static int inc_shape(const pf_attrs *at, int n_in, const pf_spec *in, int n_out, pf_spec *out,
                     pf_diag *d) {
  (void)at, (void)n_in, (void)n_out, (void)d;
  out[0] = in[0];
  return 0;
}

/* y = x + 1 after `ms` milliseconds (attribute), or an error when x[0] is
 * negative: long enough that the next execution is sent while this one
 * runs. */
static int inc_compute(const pf_kernel_call *call) {
  int64_t ms = pf_attrs_get_int(call->attrs, "ms", 0);
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000};
  const double *x = call->in[0].data;
  double *y = call->out[0].data;
  int64_t n = pf_spec_numel(&call->in[0].spec);
  if (n > 0 && x[0] < 0) return pf_diag_error(call->diag, PF_EKERNEL, "test.inc: x[0] < 0");
  nanosleep(&ts, NULL);
  for (int64_t i = 0; i < n; i++) y[i] = x[i] + 1;
  atomic_fetch_add(&inc_calls, 1);
  return 0;
}

/* x[8] f64 split over both devices -> test.inc(ms) -> "y". */
static pf_executable *inc_exe(int64_t ms) {
  static int registered;
  pf_graph *g;
  pf_executable *exe;
  pf_slice_t s;
  pf_value_t x, y;
  pf_spec spec = pf_spec_1d(PF_F64, 8);
  pf_attrs *a;
  if (!registered) {
    OK(pf_kernel_register(ctx, &(pf_kernel_def){.name = "test.inc", .kind = PF_DEVICE_CPU,
                                                 .n_in = 1, .n_out = 1, .shape = inc_shape,
                                                 .compute = inc_compute}));
    registered = 1;
  }
  OK(pf_attrs_create(&a));
  OK(pf_attrs_set_int(a, "ms", ms));
  OK(pf_graph_create(ctx, &g));
  OK(pf_graph_slice(g, PF_DEVICE_CPU, 2, &s));
  OK(pf_graph_input(g, "x", &spec, s, pf_split(0), &x));
  OK(pf_graph_program(g, &(pf_program_desc){.kernel = "test.inc", .attrs = a, .slice = s,
                                             .n_in = 1, .in = &x, .out_shardings =
                                                 (pf_sharding[]){pf_split(0)}},
                      &y, NULL));
  OK(pf_graph_output(g, "y", y));
  OK(pf_compile(g, &exe));
  pf_attrs_destroy(a);
  pf_graph_destroy(g);
  return exe;
}

static pf_tensor *ramp(double first) {
  pf_tensor *t;
  pf_spec spec = pf_spec_1d(PF_F64, 8);
  OK(pf_tensor_create(&spec, &t));
  for (int i = 0; i < 8; i++) ((double *)pf_tensor_data(t))[i] = first + i;
  return t;
}

static void expect_ramp(const pf_tensor *t, double first) {
  for (int i = 0; i < 8; i++) assert_true(((const double *)pf_tensor_cdata(t))[i] == first + i);
}

/* Step k + 1 is sent, fed (and donated) step k's output, before step k is
 * done: a training loop's shape. 40 steps, each with the one before it in
 * flight; the last output is x + 40, and no step waited on the client. */
static void test_chain_values(void **state) {
  enum { STEPS = 40 };
  pf_executable *exe = inc_exe(2);
  pf_tensor *x = ramp(10), *got;
  pf_future *f[STEPS];
  pf_buffer_t b;
  int pending_seen = 0;
  (void)state;
  atomic_store(&inc_calls, 0);
  OK(pf_execute(exe, 1, &(pf_feed){.name = "x", .tensor = x}, &f[0]));
  for (int k = 0; k < STEPS; k++) {
    pending_seen += !pf_future_done(f[k]);
    OK(pf_future_output(f[k], "y", &b));
    if (k + 1 < STEPS) OK(pf_execute(exe, 1, &(pf_feed){.name = "x", .buffer = b, .donate = 1},
                                     &f[k + 1]));
    /* Donated: the handle is the next execution's now. */
    if (k + 1 < STEPS) assert_int_equal(pf_buffer_release(ctx, b), PF_ESTALE);
  }
  /* Most outputs were handed over while their step ran (2 ms each). */
  assert_true(pending_seen > STEPS / 2);
  OK(pf_buffer_fetch(ctx, b, &got)); /* waits for the last step */
  expect_ramp(got, 10 + STEPS);
  assert_int_equal(atomic_load(&inc_calls), 2 * STEPS); /* two shards a step */
  for (int k = 0; k < STEPS; k++) {
    OK(pf_future_wait(f[k]));
    pf_future_destroy(f[k]);
  }
  OK(pf_buffer_release(ctx, b));
  pf_tensor_destroy(got);
  pf_tensor_destroy(x);
  pf_executable_destroy(exe);
}

/* A buffer in the making fetched, fed without donation to two executions,
 * and released before it is made: each sees the made value, and the
 * release does not overtake the runs that read it. */
static void test_fetch_and_release_in_the_making(void **state) {
  pf_executable *slow = inc_exe(50), *fast = inc_exe(0);
  pf_tensor *x = ramp(0), *got;
  pf_future *f, *g1, *g2;
  pf_buffer_t b, c;
  (void)state;
  OK(pf_execute(slow, 1, &(pf_feed){.name = "x", .tensor = x}, &f));
  OK(pf_future_output(f, "y", &b));
  assert_int_equal(pf_future_done(f), 0);
  /* Not complete: fetching the output as a tensor is still refused. */
  assert_int_equal(pf_future_fetch(f, "y", &got), PF_ESTATE);
  OK(pf_execute(fast, 1, &(pf_feed){.name = "x", .buffer = b}, &g1));
  OK(pf_execute(fast, 1, &(pf_feed){.name = "x", .buffer = b}, &g2));
  OK(pf_buffer_release(ctx, b)); /* the two runs hold it; it goes after them */
  OK(pf_future_wait(g1));
  OK(pf_future_fetch(g1, "y", &got));
  expect_ramp(got, 2);
  pf_tensor_destroy(got);
  OK(pf_future_wait(g2));
  OK(pf_future_output(g2, "y", &c));
  OK(pf_buffer_fetch(ctx, c, &got));
  expect_ramp(got, 2);
  pf_tensor_destroy(got);
  OK(pf_buffer_release(ctx, c));
  OK(pf_future_wait(f));
  pf_future_destroy(f);
  pf_future_destroy(g1);
  pf_future_destroy(g2);
  pf_tensor_destroy(x);
  pf_executable_destroy(slow);
  pf_executable_destroy(fast);
}

/* The producer fails after its output was handed over: the execution fed
 * it fails too, naming the run that was to make it; the handle is then
 * refused by pf_future_output, and a fetch of it fails the same way. */
static void test_producer_fails(void **state) {
  pf_executable *slow = inc_exe(20), *fast = inc_exe(0);
  pf_tensor *x = ramp(-5), *got = NULL;
  pf_future *f, *g;
  pf_buffer_t b, again;
  (void)state;
  OK(pf_execute(slow, 1, &(pf_feed){.name = "x", .tensor = x}, &f));
  OK(pf_future_output(f, "y", &b));
  OK(pf_execute(fast, 1, &(pf_feed){.name = "x", .buffer = b, .donate = 1}, &g));
  assert_int_equal(pf_future_wait(f), PF_EKERNEL);
  assert_int_equal(pf_future_wait(g), PF_ESTALE);
  print_message("consumer: %s\n", pf_future_error(g));
  assert_non_null(strstr(pf_future_error(g), "which failed"));
  assert_non_null(strstr(pf_future_error(g), "was to be made by run"));
  assert_int_equal(pf_future_output(g, "y", &again), PF_ESTATE);
  pf_future_destroy(g);
  pf_future_destroy(f);
  pf_tensor_destroy(got);
  pf_tensor_destroy(x);
  pf_executable_destroy(slow);
  pf_executable_destroy(fast);
}

/* Every dispatch slot busy: the producer waits in the dispatcher, and
 * pf_future_output waits until it is sent, so that the consumer (another
 * executable, which the dispatcher might pick first) finds it expected on
 * every executor. */
static void test_producer_waits_for_a_slot(void **state) {
  enum { FILL = 64 + 6 };
  pf_executable *filler = inc_exe(3), *slow = inc_exe(1), *fast = inc_exe(0);
  pf_tensor *x = ramp(100), *got;
  pf_future *fill[FILL], *f, *g;
  pf_buffer_t b;
  (void)state;
  OK(pf_executable_set_weight(fast, 1000)); /* picked first when both wait */
  for (int i = 0; i < FILL; i++) OK(pf_execute(filler, 1, &(pf_feed){.name = "x", .tensor = x},
                                              &fill[i]));
  OK(pf_execute(slow, 1, &(pf_feed){.name = "x", .tensor = x}, &f));
  OK(pf_future_output(f, "y", &b));
  OK(pf_execute(fast, 1, &(pf_feed){.name = "x", .buffer = b, .donate = 1}, &g));
  OK(pf_future_wait(g));
  OK(pf_future_fetch(g, "y", &got));
  expect_ramp(got, 102);
  pf_tensor_destroy(got);
  for (int i = 0; i < FILL; i++) {
    OK(pf_future_wait(fill[i]));
    pf_future_destroy(fill[i]);
  }
  pf_future_destroy(f);
  pf_future_destroy(g);
  pf_tensor_destroy(x);
  pf_executable_destroy(filler);
  pf_executable_destroy(slow);
  pf_executable_destroy(fast);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_chain_values),
      cmocka_unit_test(test_fetch_and_release_in_the_making),
      cmocka_unit_test(test_producer_fails),
      cmocka_unit_test(test_producer_waits_for_a_slot),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
