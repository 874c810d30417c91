/* Out of memory on one rank fails that execution, not the job: with
 * PATHFLOW_FAULT_ALLOC=1:N, the N-th allocation of a step's buffer on rank 1
 * fails. The execution it falls in fails with PF_ENOMEM naming rank 1, its
 * step and the bytes; rank 0, which sends to, receives from and meets
 * rank 1 in a collective in that step, does not hang; every other
 * execution, before and after, gives the right answer. Without the
 * variable, every execution succeeds. */
#include "mpi_common.h"

pf_context *ctx;

#define ROWS 64
#define COLS 32
#define RUNS 8

static int setup(void **state) {
  (void)state;
  if (pf_init(NULL, NULL, &(pf_init_options){.cpu_devices = 1}, &ctx)) return -1;
  return pf_world_size(ctx) == 2 ? 0 : -1;
}

static int teardown(void **state) {
  (void)state;
  return pf_finalize(ctx);
}

/* x (split by rows over both ranks) -> scale by 2 on each rank -> allreduce
 * (sum) -> "sum"; x gathered on rank 1 (a transfer from rank 0) -> relu
 * there -> "relu", and relu's result sent back to rank 0 -> scale by 2 ->
 * "back". Rank 1 allocates a receive buffer, kernel outputs and a
 * collective output per step; a step failed there still receives, sends
 * and meets rank 0 in the allreduce. */
static pf_executable *build(void) {
  pf_graph *g;
  pf_executable *exe;
  pf_spec spec = pf_spec_2d(PF_F64, ROWS, COLS);
  pf_slice_t both, one;
  pf_value_t x, y, z, r, x0, back;
  pf_slice_t zero;
  pf_attrs *a;
  OK(pf_graph_create(ctx, &g));
  both = pinned_slice(g, 2, 0);
  one = pinned_slice(g, 1, 1);
  zero = pinned_slice(g, 1, 0);
  OK(pf_graph_input(g, "x", &spec, both, pf_split(0), &x));
  OK(pf_attrs_create(&a));
  OK(pf_attrs_set_float(a, "alpha", 2.0));
  OK(pf_graph_program(g, &(pf_program_desc){.kernel = "scale", .attrs = a, .slice = both,
                                             .n_in = 1, .in = &x,
                                             .in_shardings = (pf_sharding[]){pf_split(0)}},
                      &y, NULL));
  OK(pf_graph_collective(g, &(pf_collective_desc){.kind = PF_ALLREDUCE, .slice = both, .in = y,
                                                   .op = PF_REDUCE_SUM},
                         &z, NULL));
  OK(pf_graph_output(g, "sum", z));
  x0 = x;
  OK(pf_graph_program(g, &(pf_program_desc){.kernel = "relu", .slice = one, .n_in = 1,
                                             .in = &x0},
                      &r, NULL));
  OK(pf_graph_output(g, "relu", r));
  OK(pf_graph_program(g, &(pf_program_desc){.kernel = "scale", .attrs = a, .slice = zero,
                                             .n_in = 1, .in = &r},
                      &back, NULL));
  pf_attrs_destroy(a);
  OK(pf_graph_output(g, "back", back));
  OK(pf_compile(g, &exe));
  pf_graph_destroy(g);
  return exe;
}

/* 0 and the outputs checked, or the execution's error. */
static int check(pf_future *f, const pf_tensor *x) {
  const double *xv = pf_tensor_cdata(x);
  pf_tensor *sum, *relu, *back;
  int rc = pf_future_wait(f);
  if (rc != 0) return rc;
  OK(pf_future_fetch(f, "sum", &sum));
  OK(pf_future_fetch(f, "relu", &relu));
  OK(pf_future_fetch(f, "back", &back));
  for (int i = 0; i < ROWS * COLS; i++)
    assert_true(((double *)pf_tensor_data(back))[i] == 2 * (xv[i] > 0 ? xv[i] : 0));
  pf_tensor_destroy(back);
  assert_int_equal(pf_tensor_spec(sum)->dims[0], ROWS / 2);
  for (int i = 0; i < ROWS / 2 * COLS; i++)
    assert_true(((double *)pf_tensor_data(sum))[i] == 2 * xv[i] + 2 * xv[ROWS / 2 * COLS + i]);
  for (int i = 0; i < ROWS * COLS; i++)
    assert_true(((double *)pf_tensor_data(relu))[i] == (xv[i] > 0 ? xv[i] : 0));
  pf_tensor_destroy(sum);
  pf_tensor_destroy(relu);
  return 0;
}

static void test_one_execution_fails(void **state) {
  const char *fault = getenv("PATHFLOW_FAULT_ALLOC");
  int armed = fault != NULL && strncmp(fault, "1:", 2) == 0, failed = 0, failed_at = -1;
  pf_executable *exe = build();
  pf_spec spec = pf_spec_2d(PF_F64, ROWS, COLS);
  pf_tensor *x = seq_tensor(spec, 1);
  pf_future *batch[4];
  (void)state;
  for (int k = 0; k < RUNS; k++) {
    pf_future *f;
    int rc;
    OK(pf_execute(exe, 1, &(pf_feed){.name = "x", .tensor = x}, &f));
    rc = check(f, x);
    if (rc != 0) {
      const char *msg = pf_future_error(f);
      print_message("execution %d: %s\n", k, msg);
      assert_int_equal(rc, PF_ENOMEM);
      assert_non_null(strstr(msg, "rank 1"));
      assert_non_null(strstr(msg, "step"));
      assert_non_null(strstr(msg, "bytes"));
      failed++;
      failed_at = k;
    }
    pf_future_destroy(f);
  }
  assert_int_equal(failed, armed ? 1 : 0);
  /* The job goes on: several executions in flight at once, all right. */
  for (int k = 0; k < 4; k++)
    OK(pf_execute(exe, 1, &(pf_feed){.name = "x", .tensor = x}, &batch[k]));
  for (int k = 0; k < 4; k++) {
    OK(check(batch[k], x));
    pf_future_destroy(batch[k]);
  }
  if (armed) print_message("the fault failed execution %d of %d; the others passed\n", failed_at,
                           RUNS);
  pf_tensor_destroy(x);
  pf_executable_destroy(exe);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_one_execution_fails),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
