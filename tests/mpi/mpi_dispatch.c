/* Dispatch modes: a pipeline with one stage per rank gives the same
 * results under sequential and parallel dispatch; sequential dispatch
 * refuses data flowing back to an earlier rank. */
#include "mpi_common.h"

pf_context *ctx;
static int world;

static int setup(void **state) {
  (void)state;
  if (pf_init(NULL, NULL, &(pf_init_options){.cpu_devices = 1}, &ctx)) return -1;
  world = pf_world_size(ctx);
  return world >= 2 ? 0 : -1;
}

static int teardown(void **state) {
  (void)state;
  return pf_finalize(ctx);
}

/* x on rank 0 -> add(v, v) on rank 1 -> ... -> rank world-1; if `back`,
 * one more stage on rank 0. */
static pf_graph *pipeline(pf_dispatch_mode mode, int back, int64_t n) {
  pf_graph *g;
  pf_spec spec = pf_spec_1d(PF_F64, n);
  pf_value_t v;
  OK(pf_graph_create(ctx, &g));
  OK(pf_graph_set_dispatch(g, mode));
  OK(pf_graph_input(g, "x", &spec, pinned_slice(g, 1, 0), pf_replicated(), &v));
  for (int r = 1; r <= world - 1 + back; r++) {
    pf_value_t next;
    OK(pf_graph_program(g, &(pf_program_desc){.kernel = "add", .slice = pinned_slice(g, 1, r % world),
                                               .n_in = 2, .in = (pf_value_t[]){v, v}},
                        &next, NULL));
    v = next;
  }
  OK(pf_graph_output(g, "y", v));
  return g;
}

/* Both modes on `n` doubles: the same results. */
static void sequential_equals_parallel(int64_t n) {
  pf_spec spec = pf_spec_1d(PF_F64, n);
  pf_tensor *x = seq_tensor(spec, 1), *y[2];
  for (int m = 0; m < 2; m++) {
    pf_graph *g = pipeline(m ? PF_DISPATCH_SEQUENTIAL : PF_DISPATCH_PARALLEL, 0, n);
    pf_executable *exe;
    pf_future *f[10];
    OK(pf_compile(g, &exe));
    for (int k = 0; k < 10; k++) OK(pf_execute(exe, 1, &(pf_feed){.name = "x", .tensor = x}, &f[k]));
    for (int k = 0; k < 10; k++) {
      OK(pf_future_wait(f[k]));
      if (k == 9) OK(pf_future_fetch(f[k], "y", &y[m]));
      pf_future_destroy(f[k]);
    }
    pf_executable_destroy(exe);
    pf_graph_destroy(g);
  }
  for (int64_t i = 0; i < n; i++) {
    double want = ((double *)pf_tensor_data(x))[i] * (double)(1 << (world - 1));
    assert_true(((double *)pf_tensor_data(y[0]))[i] == want);
    assert_true(((double *)pf_tensor_data(y[1]))[i] == want);
  }
  pf_tensor_destroy(x);
  pf_tensor_destroy(y[0]);
  pf_tensor_destroy(y[1]);
}

static void test_sequential_equals_parallel(void **state) {
  (void)state;
  sequential_equals_parallel(64);
}

/* 2 MiB transfers, above MPI's eager limit: a stage's send completes only
 * when the next stage has posted its receive. Sequential dispatch used to
 * send the next stage its run only once the stage before was done, which
 * waited for that send: every such pipeline hung. */
static void test_sequential_large_transfers(void **state) {
  (void)state;
  sequential_equals_parallel(1 << 18);
}

static void test_sequential_refuses_back_flow(void **state) {
  pf_graph *g = pipeline(PF_DISPATCH_SEQUENTIAL, 1, 64);
  pf_executable *exe = NULL;
  (void)state;
  assert_int_equal(pf_compile(g, &exe), PF_ENOTSUP);
  assert_null(exe);
  assert_non_null(strstr(pf_last_error(ctx), "sequential dispatch"));
  assert_non_null(strstr(pf_last_error(ctx), "rank 0"));
  pf_graph_destroy(g);
  /* The same graph under parallel dispatch is fine. */
  g = pipeline(PF_DISPATCH_PARALLEL, 1, 64);
  OK(pf_compile(g, &exe));
  pf_executable_destroy(exe);
  pf_graph_destroy(g);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_sequential_equals_parallel),
      cmocka_unit_test(test_sequential_large_transfers),
      cmocka_unit_test(test_sequential_refuses_back_flow),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
