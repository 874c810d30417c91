/* Per-rank counters in one process: ops run per device follow from the
 * plan and the number of steps; diff, print and PATHFLOW_COUNTERS. */
#include "testing.h"

static pf_context *ctx;

#define CHAIN 5 /* scale ops per device per step */

/* x -> CHAIN scales on device 0 -> CHAIN scales on device 1 -> y. The
 * plan: CHAIN kernels on device 0; on device 1 a copy (the value moves to
 * the device that reads it) and CHAIN kernels. */
static pf_executable *two_device_chain(void) {
  pf_graph *g;
  pf_executable *exe;
  pf_spec spec = pf_spec_1d(PF_F32, 64);
  pf_slice_t s[2];
  pf_value_t v;
  pf_attrs *a;
  OK(pf_graph_create(ctx, &g));
  for (int d = 0; d < 2; d++) {
    OK(pf_graph_slice(g, PF_DEVICE_CPU, 1, &s[d]));
    OK(pf_graph_slice_pin(g, s[d], (int[]){d}));
  }
  OK(pf_graph_input(g, "x", &spec, s[0], pf_replicated(), &v));
  OK(pf_attrs_create(&a));
  OK(pf_attrs_set_float(a, "alpha", 2.0));
  for (int d = 0; d < 2; d++)
    for (int k = 0; k < CHAIN; k++) {
      pf_value_t next;
      OK(pf_graph_program(g, &(pf_program_desc){.kernel = "scale", .attrs = a, .slice = s[d],
                                                 .n_in = 1, .in = &v},
                          &next, NULL));
      v = next;
    }
  pf_attrs_destroy(a);
  OK(pf_graph_output(g, "y", v));
  OK(pf_compile(g, &exe));
  pf_graph_destroy(g);
  return exe;
}

static void run_steps(pf_executable *exe, int steps) {
  pf_spec spec = pf_spec_1d(PF_F32, 64);
  pf_tensor *x;
  OK(pf_tensor_create(&spec, &x));
  for (int i = 0; i < 64; i++) ((float *)pf_tensor_data(x))[i] = (float)i;
  for (int n = 0; n < steps; n++) {
    pf_future *f;
    pf_tensor *y;
    OK(pf_execute(exe, 1, &(pf_feed){.name = "x", .tensor = x}, &f));
    OK(pf_future_wait(f));
    OK(pf_future_fetch(f, "y", &y));
    assert_true(((float *)pf_tensor_data(y))[3] == 3.0f * (float)(1 << (2 * CHAIN)));
    pf_tensor_destroy(y);
    pf_future_destroy(f);
  }
  pf_tensor_destroy(x);
}

static void test_ops_follow_the_plan(void **state) {
  pf_executable *exe;
  pf_counters *before, *after, *d;
  (void)state;
  OK(pf_init(NULL, NULL, &(pf_init_options){.cpu_devices = 2}, &ctx));
  exe = two_device_chain();
  OK(pf_counters_get(ctx, 0, &before));
  assert_int_equal(before->rank, 0);
  assert_int_equal(before->num_devices, 2);
  assert_int_equal(before->num_peers, 1);
  run_steps(exe, 7);
  OK(pf_counters_get(ctx, 0, &after));
  OK(pf_counters_diff(after, before, &d));
  assert_int_equal(d->steps, 7);
  assert_int_equal(d->steps_failed, 0);
  assert_int_equal(d->devices[0].ops_run, 7 * CHAIN);
  /* device 1 reads device 0's last value where it lies (no copy op) */
  assert_int_equal(d->devices[1].ops_run, 7 * CHAIN);
  assert_int_equal(d->ops_run, 7 * (2 * CHAIN));
  /* One process: nothing on the wire. */
  assert_int_equal(d->transfers_sent + d->transfers_received + d->collectives, 0);
  assert_int_equal(after->peers[0].control_messages_sent, 0);
  /* Counters only grow: before - after is refused. */
  pf_counters_free(d);
  assert_int_equal(pf_counters_diff(before, after, &d), PF_EINVAL);
  assert_null(d);
  {
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    assert_non_null(f);
    assert_int_equal(pf_counters_print(after, f), 0);
    fclose(f);
    assert_non_null(strstr(text, "pathflow counters: rank 0\n"));
    assert_non_null(strstr(text, "device 1: ops run"));
    free(text);
  }
  assert_int_equal(pf_counters_get(ctx, 1, &d), PF_EINVAL);
  assert_non_null(strstr(pf_last_error(ctx), "rank 1"));
  assert_int_equal(pf_counters_get(ctx, 0, NULL), PF_EINVAL);
  pf_counters_free(before);
  pf_counters_free(after);
  pf_executable_destroy(exe);
  OK(pf_finalize(ctx));
  assert_int_equal(pf_counters_get(ctx, 0, &d), PF_ESTATE);
}

static int fail_shape(const pf_attrs *attrs, int n_in, const pf_spec *in, int n_out,
                      pf_spec *out, pf_diag *diag) {
  (void)attrs, (void)n_in, (void)n_out, (void)diag;
  out[0] = in[0];
  return 0;
}

static int fail_compute(const pf_kernel_call *c) {
  (void)c;
  return PF_EINVAL;
}

static const pf_kernel_def fail_kernel = {.name = "test.fail", .kind = PF_DEVICE_CPU, .n_in = 1,
                                          .n_out = 1, .shape = fail_shape,
                                          .compute = fail_compute};

/* A failed step counts as failed; the op that failed ran, the one after it
 * was skipped and does not count. */
static void test_failed_step(void **state) {
  pf_graph *g;
  pf_executable *exe;
  pf_spec spec = pf_spec_1d(PF_F32, 8);
  pf_slice_t s;
  pf_value_t v;
  pf_counters *c;
  pf_future *f;
  pf_tensor *t;
  const char *kernels[] = {"relu", "test.fail", "relu"};
  (void)state;
  OK(pf_init(NULL, NULL,
             &(pf_init_options){.cpu_devices = 1, .kernels = &fail_kernel, .n_kernels = 1}, &ctx));
  OK(pf_graph_create(ctx, &g));
  OK(pf_graph_slice(g, PF_DEVICE_CPU, 1, &s));
  OK(pf_graph_input(g, "x", &spec, s, pf_replicated(), &v));
  for (int k = 0; k < 3; k++) {
    pf_value_t next;
    OK(pf_graph_program(g, &(pf_program_desc){.kernel = kernels[k], .slice = s, .n_in = 1,
                                               .in = &v},
                        &next, NULL));
    v = next;
  }
  OK(pf_graph_output(g, "y", v));
  OK(pf_compile(g, &exe));
  pf_graph_destroy(g);
  OK(pf_tensor_create(&spec, &t));
  OK(pf_execute(exe, 1, &(pf_feed){.name = "x", .tensor = t}, &f));
  assert_int_equal(pf_future_wait(f), PF_EKERNEL);
  pf_future_destroy(f);
  OK(pf_counters_get(ctx, 0, &c));
  assert_int_equal(c->steps, 1);
  assert_int_equal(c->steps_failed, 1);
  assert_int_equal(c->ops_run, 2);
  pf_counters_free(c);
  pf_tensor_destroy(t);
  pf_executable_destroy(exe);
  OK(pf_finalize(ctx));
}

/* Bad values fail pf_init, as every PATHFLOW_* variable does. */
static void test_env_checked(void **state) {
  (void)state;
  setenv("PATHFLOW_COUNTERS", "maybe", 1);
  assert_int_equal(pf_init(NULL, NULL, NULL, &ctx), PF_EINVAL);
  assert_null(ctx);
  unsetenv("PATHFLOW_COUNTERS");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_ops_follow_the_plan),
      cmocka_unit_test(test_failed_step),
      cmocka_unit_test(test_env_checked),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
