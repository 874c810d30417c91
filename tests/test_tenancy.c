/* Multi-tenancy: executables sharing the same devices get dispatch slots in
 * proportion to their weights while they all have executions waiting. */
#include "testing.h"

static pf_context *ctx;

static int nap_shape(const pf_attrs *a, int n_in, const pf_spec *in, int n_out, pf_spec *out,
                     pf_diag *d) {
  (void)a, (void)n_in, (void)in, (void)n_out, (void)d;
  out[0] = pf_spec_scalar(PF_U8);
  return 0;
}

/* Closed while the test submits its tenants: the blockers wait on it (at
 * most 30 s, so that a bug fails the test instead of hanging it), so every
 * tenant is waiting before any is dispatched however slowly submission goes
 * (a sanitizer, a loaded machine). */
static atomic_int gate_open;

static int nap(const pf_kernel_call *c) {
  struct timespec ts = {0, 1000000};
  (void)c;
  for (int waited = 0; !atomic_load(&gate_open) && waited < 30000; waited++)
    nanosleep(&ts, NULL);
  nanosleep(&ts, NULL);
  return 0;
}

static int setup(void **state) {
  pf_kernel_def def = {.name = "test.nap", .kind = PF_DEVICE_CPU, .n_in = 0, .n_out = 1,
                       .shape = nap_shape, .compute = nap};
  (void)state;
  /* Room for every execution of a run at once: the blockers hold their
   * admissions until the gate opens. */
  return pf_init(NULL, NULL,
                 &(pf_init_options){.cpu_devices = 2, .kernels = &def, .n_kernels = 1,
                                    .max_pending = 4096},
                 &ctx);
}

/* 64 executions that wait for the gate hold every dispatch slot, so that
 * the tenants submitted next all start out waiting. */
static pf_executable *blocker(pf_graph **g, pf_future **f) {
  pf_executable *exe;
  pf_slice_t s;
  pf_value_t v;
  OK(pf_graph_create(ctx, g));
  OK(pf_graph_slice(*g, PF_DEVICE_CPU, 2, &s));
  OK(pf_graph_program(*g, &(pf_program_desc){.kernel = "test.nap", .slice = s}, &v, NULL));
  OK(pf_graph_output(*g, "v", v));
  OK(pf_compile(*g, &exe));
  for (int i = 0; i < 64; i++) OK(pf_execute(exe, 0, NULL, &f[i]));
  return exe;
}

static int teardown(void **state) {
  (void)state;
  return pf_finalize(ctx);
}

/* A small program over both devices: every executable competes for the same
 * devices. */
static pf_executable *tenant(pf_graph **g) {
  pf_executable *exe;
  pf_spec spec = pf_spec_1d(PF_F32, 4096);
  pf_slice_t s;
  pf_value_t x, y;
  OK(pf_graph_create(ctx, g));
  OK(pf_graph_slice(*g, PF_DEVICE_CPU, 2, &s));
  OK(pf_graph_input(*g, "x", &spec, s, pf_split(0), &x));
  OK(pf_graph_program(*g, &(pf_program_desc){.kernel = "relu", .slice = s, .n_in = 1, .in = &x},
                      &y, NULL));
  OK(pf_graph_output(*g, "y", y));
  OK(pf_compile(*g, &exe));
  return exe;
}

static void run_weights(const double *weights, int n_exe, int per_exe) {
  pf_graph *g[8];
  pf_executable *exe[8];
  pf_future **f = calloc((size_t)(n_exe * per_exe), sizeof *f), *fb[64];
  pf_spec spec = pf_spec_1d(PF_F32, 4096);
  pf_tensor *x;
  pf_graph *gb;
  pf_executable *eb;
  double wsum = 0;
  OK(pf_tensor_create(&spec, &x));
  for (int e = 0; e < n_exe; e++) {
    exe[e] = tenant(&g[e]);
    OK(pf_executable_set_weight(exe[e], weights[e]));
    wsum += weights[e];
  }
  atomic_store(&gate_open, 0);
  eb = blocker(&gb, fb);
  /* Interleaved submission keeps every tenant waiting from the start. */
  for (int k = 0; k < per_exe; k++)
    for (int e = 0; e < n_exe; e++)
      OK(pf_execute(exe[e], 1, &(pf_feed){.name = "x", .tensor = x}, &f[k * n_exe + e]));
  atomic_store(&gate_open, 1);
  for (int k = 0; k < 64; k++) {
    OK(pf_future_wait(fb[k]));
    pf_future_destroy(fb[k]);
  }
  for (int k = 0; k < n_exe * per_exe; k++) {
    OK(pf_future_wait(f[k]));
    pf_future_destroy(f[k]);
  }
  pf_executable_destroy(eb);
  pf_graph_destroy(gb);
  for (int e = 0; e < n_exe; e++) {
    pf_executable_stats st;
    OK(pf_executable_stats_get(exe[e], &st));
    printf("weight %4.1f: %4llu steps, share %.3f, entitled %.3f (all waiting: %.3f)\n",
           st.weight, (unsigned long long)st.steps_dispatched, st.share, st.expected_share,
           weights[e] / wsum);
    assert_int_equal(st.steps_dispatched, per_exe);
    assert_int_equal(st.steps_completed, per_exe);
    /* Within 10% of what the weight entitles it to. */
    assert_true(fabs(st.share - st.expected_share) <= 0.10 * st.expected_share);
    /* The heaviest drains first, so it waits only while all wait: its share
     * is its weight over all the weights. */
    if (e == n_exe - 1)
      assert_true(fabs(st.share - weights[e] / wsum) <= 0.10 * weights[e] / wsum);
    pf_executable_destroy(exe[e]);
    pf_graph_destroy(g[e]);
  }
  pf_tensor_destroy(x);
  free(f);
}

static void test_weights_equal(void **state) {
  (void)state;
  run_weights((double[]){1, 1, 1, 1}, 4, 300);
}

static void test_weights_1_2_4_8(void **state) {
  (void)state;
  run_weights((double[]){1, 2, 4, 8}, 4, 300);
}

static void test_bad_weight(void **state) {
  pf_graph *g;
  pf_executable *e;
  (void)state;
  e = tenant(&g);
  assert_int_equal(pf_executable_set_weight(e, 0), PF_EINVAL);
  assert_int_equal(pf_executable_set_weight(e, -1), PF_EINVAL);
  assert_int_equal(pf_executable_set_weight(e, NAN), PF_EINVAL);
  pf_executable_destroy(e);
  pf_graph_destroy(g);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_weights_equal),
      cmocka_unit_test(test_weights_1_2_4_8),
      cmocka_unit_test(test_bad_weight),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
