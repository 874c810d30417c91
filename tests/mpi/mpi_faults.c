/* Faults that must end as errors, never hangs: a kernel failing on one
 * rank, a kernel missing on an executor (MPMD), a control message that
 * does not decode. Usage: mpi_faults PLUGIN.so [--expect-missing] */
#include <time.h>

#include "api/execute_internal.h"
#include "mpi_common.h"

pf_context *ctx;
static int world, expect_missing;
static const char *plugin;

static int setup(void **state) {
  const char *plugins[] = {plugin, NULL};
  (void)state;
  if (pf_init(NULL, NULL, &(pf_init_options){.cpu_devices = 1, .kernel_plugins = plugins}, &ctx))
    return -1;
  world = pf_world_size(ctx);
  return world >= 2 ? 0 : -1;
}

static int teardown(void **state) {
  (void)state;
  return pf_finalize(ctx);
}

static pf_executable *shard_graph(const char *kernel, int shard, pf_graph **g) {
  pf_executable *exe = NULL;
  pf_spec spec = pf_spec_1d(PF_F64, 8 * world);
  pf_slice_t s;
  pf_value_t x, y;
  pf_attrs *a;
  OK(pf_graph_create(ctx, g));
  s = pinned_slice(*g, world, 0);
  OK(pf_graph_input(*g, "x", &spec, s, pf_split(0), &x));
  OK(pf_attrs_create(&a));
  OK(pf_attrs_set_int(a, "shard", shard));
  OK(pf_graph_program(*g, &(pf_program_desc){.name = "work", .kernel = kernel, .attrs = a,
                                              .slice = s, .n_in = 1, .in = &x},
                      &y, NULL));
  pf_attrs_destroy(a);
  OK(pf_graph_output(*g, "y", y));
  return pf_compile(*g, &exe) == 0 ? exe : NULL;
}

/* A kernel error on the last rank completes the future with PF_EKERNEL
 * naming that rank, the program and the kernel; the job goes on. */
static void test_kernel_error_on_a_rank(void **state) {
  pf_graph *g;
  pf_executable *exe;
  pf_future *f;
  pf_spec spec = pf_spec_1d(PF_F64, 8 * world);
  pf_tensor *x = seq_tensor(spec, 1), *y;
  char want[32];
  (void)state;
  if (expect_missing) skip();
  exe = shard_graph("test.fail_shard", world - 1, &g);
  assert_non_null(exe);
  OK(pf_execute(exe, 1, &(pf_feed){.name = "x", .tensor = x}, &f));
  assert_int_equal(pf_future_wait(f), PF_EKERNEL);
  snprintf(want, sizeof want, "rank %d", world - 1);
  if (!strstr(pf_future_error(f), want)) fail_msg("error \"%s\" lacks \"%s\"", pf_future_error(f), want);
  assert_non_null(strstr(pf_future_error(f), "\"work\""));
  assert_non_null(strstr(pf_future_error(f), "test.fail_shard"));
  pf_future_destroy(f);
  pf_executable_destroy(exe);
  pf_graph_destroy(g);
  /* Still usable: the same kernel with no failing shard. */
  exe = shard_graph("test.fail_shard", -1, &g);
  y = run_one(exe, 1, &(pf_feed){.name = "x", .tensor = x}, "y");
  assert_memory_equal(pf_tensor_data(y), pf_tensor_data(x), pf_tensor_nbytes(x));
  pf_tensor_destroy(y);
  pf_tensor_destroy(x);
  pf_executable_destroy(exe);
  pf_graph_destroy(g);
}

/* Plugin kernels run on every rank (MPMD: the workers loaded them with
 * pathflow-worker --kernels). */
static void test_plugin_kernels_everywhere(void **state) {
  pf_graph *g;
  pf_executable *exe;
  pf_spec spec = pf_spec_1d(PF_F64, 8 * world);
  pf_tensor *x = seq_tensor(spec, 3), *y;
  (void)state;
  exe = shard_graph("test.twice", -1, &g);
  if (expect_missing) {
    /* The workers were started without the plugin: compile must say which
     * rank lacks which kernel. */
    assert_null(exe);
    assert_non_null(strstr(pf_last_error(ctx), "rank 1"));
    assert_non_null(strstr(pf_last_error(ctx), "test.twice"));
    pf_tensor_destroy(x);
    pf_graph_destroy(g);
    return;
  }
  assert_non_null(exe);
  y = run_one(exe, 1, &(pf_feed){.name = "x", .tensor = x}, "y");
  for (int i = 0; i < 8 * world; i++)
    assert_true(((double *)pf_tensor_data(y))[i] == 2 * ((double *)pf_tensor_data(x))[i]);
  pf_tensor_destroy(x);
  pf_tensor_destroy(y);
  pf_executable_destroy(exe);
  pf_graph_destroy(g);
}

/* A plugin kernel followed by a collective across every rank. Loading is
 * two-phase: with the kernel missing on a worker (MPMD without --kernels),
 * pf_compile fails at once with PF_ENOKERNEL naming that rank and the
 * kernel; it used to leave rank 0 in communicator creation until the job
 * died ("rank 0 lost"). With the kernel everywhere it runs. */
static void test_missing_kernel_before_collective(void **state) {
  pf_graph *g;
  pf_executable *exe = NULL;
  pf_spec spec = pf_spec_1d(PF_F64, 8 * world);
  pf_tensor *x = seq_tensor(spec, 5), *y;
  pf_slice_t s;
  pf_value_t vx, v2, vy;
  struct timespec t0, t1;
  int rc;
  (void)state;
  OK(pf_graph_create(ctx, &g));
  s = pinned_slice(g, world, 0);
  OK(pf_graph_input(g, "x", &spec, s, pf_split(0), &vx));
  OK(pf_graph_program(g, &(pf_program_desc){.name = "double", .kernel = "test.twice", .slice = s,
                                             .n_in = 1, .in = &vx},
                      &v2, NULL));
  OK(pf_graph_collective(g, &(pf_collective_desc){.name = "gather", .kind = PF_ALLGATHER,
                                                   .slice = s, .in = v2, .axis = 0},
                         &vy, NULL));
  OK(pf_graph_output(g, "y", vy));
  clock_gettime(CLOCK_MONOTONIC, &t0);
  rc = pf_compile(g, &exe);
  clock_gettime(CLOCK_MONOTONIC, &t1);
  if (expect_missing) {
    assert_int_equal(rc, PF_ENOKERNEL);
    assert_non_null(strstr(pf_last_error(ctx), "rank 1"));
    assert_non_null(strstr(pf_last_error(ctx), "test.twice"));
    /* No hang: the answer is immediate; 10 s only catches one. */
    assert_true(t1.tv_sec - t0.tv_sec < 10);
    pf_tensor_destroy(x);
    pf_graph_destroy(g);
    return;
  }
  OK(rc);
  y = run_one(exe, 1, &(pf_feed){.name = "x", .tensor = x}, "y");
  for (int i = 0; i < 8 * world; i++)
    assert_true(((double *)pf_tensor_data(y))[i] == 2 * ((double *)pf_tensor_data(x))[i]);
  pf_tensor_destroy(y);
  pf_tensor_destroy(x);
  pf_executable_destroy(exe);
  pf_graph_destroy(g);
}

/* A control message an executor cannot decode fails only what it concerns:
 * a RUN for a step nobody waits on (its dispatch slot out of range) is
 * refused and answered, and the execution in flight meanwhile completes
 * normally. It used to fail every execution in flight. */
static void test_malformed_message_fails_only_its_step(void **state) {
  pf_graph *g;
  pf_executable *exe;
  pf_future *f;
  pf_spec spec = pf_spec_1d(PF_F64, 8 * world);
  pf_tensor *x = seq_tensor(spec, 7), *y;
  pf_slice_t s;
  pf_value_t vx, vy;
  pf_attrs *a;
  pf_msg *bad;
  (void)state;
  if (expect_missing) skip();
  OK(pf_graph_create(ctx, &g));
  s = pinned_slice(g, world, 0);
  OK(pf_graph_input(g, "x", &spec, s, pf_split(0), &vx));
  OK(pf_attrs_create(&a));
  OK(pf_attrs_set_int(a, "shard", world - 1));
  OK(pf_attrs_set_int(a, "ms", 1000));
  OK(pf_graph_program(g, &(pf_program_desc){.name = "slow", .kernel = "test.sleep_shard",
                                             .attrs = a, .slice = s, .n_in = 1, .in = &vx},
                      &vy, NULL));
  pf_attrs_destroy(a);
  OK(pf_graph_output(g, "y", vy));
  OK(pf_compile(g, &exe));
  OK(pf_execute(exe, 1, &(pf_feed){.name = "x", .tensor = x}, &f));
  /* While it runs: a RUN of the same executable, for a step that does not
   * exist, that the last rank cannot decode. */
  bad = pf_msg_new(PF_MSG_RUN);
  assert_non_null(bad);
  bad->executable = exe->id;
  bad->step = UINT64_MAX - 1;
  bad->slot = 1000;
  OK(pf_runtime_send(ctx->runtime, world - 1, bad));
  assert_int_equal(pf_future_wait(f), PF_OK);
  OK(pf_future_fetch(f, "y", &y));
  assert_memory_equal(pf_tensor_data(y), pf_tensor_data(x), pf_tensor_nbytes(x));
  pf_tensor_destroy(y);
  pf_future_destroy(f);
  /* And the job goes on. */
  y = run_one(exe, 1, &(pf_feed){.name = "x", .tensor = x}, "y");
  assert_memory_equal(pf_tensor_data(y), pf_tensor_data(x), pf_tensor_nbytes(x));
  pf_tensor_destroy(y);
  pf_tensor_destroy(x);
  pf_executable_destroy(exe);
  pf_graph_destroy(g);
}

/* A control message that cannot be sent (here a RUN with more input ids
 * than any executor accepts) fails the waiter of its answer at once; it
 * used to end the job ("could not send a control message"). */
static void test_failed_send_fails_its_waiter(void **state) {
  pf_waiter w;
  pf_msg *m = pf_msg_new(PF_MSG_RUN);
  (void)state;
  assert_non_null(m);
  memset(&w, 0, sizeof w);
  m->executable = pf_context_new_id(ctx);
  m->step = pf_context_new_id(ctx);
  m->n_inputs = (1u << 20) + 1;
  m->inputs = calloc(m->n_inputs, sizeof *m->inputs);
  assert_non_null(m->inputs);
  pf_controller_expect(ctx, &w, m->step, 1);
  OK(pf_runtime_send(ctx->runtime, world - 1, m));
  assert_int_equal(pf_controller_wait_for(ctx, &w, 60000), PF_EINVAL);
  if (!strstr(w.message, "could not send a run message to rank"))
    fail_msg("the waiter's error \"%s\" does not say the send failed", w.message);
}

static int copy_shape(const pf_attrs *a, int n_in, const pf_spec *in, int n_out, pf_spec *out,
                      pf_diag *d) {
  (void)a, (void)n_in, (void)n_out, (void)d;
  out[0] = in[0];
  return 0;
}

static int copy_compute(const pf_kernel_call *c) {
  memcpy(c->out[0].data, c->in[0].data, pf_spec_nbytes(&c->in[0].spec));
  return 0;
}

/* The other everyday cause of a missing kernel: one registered on rank 0
 * after pf_init, which the other ranks (serving since pf_init) never saw.
 * In front of a collective it fails pf_compile with PF_ENOKERNEL naming
 * a rank that lacks it and the kernel, at once (it used to hang rank 0). */
static void test_kernel_registered_after_init(void **state) {
  pf_graph *g;
  pf_executable *exe = NULL;
  pf_spec spec = pf_spec_1d(PF_F64, 8 * world);
  pf_slice_t s;
  pf_value_t vx, v2, vy;
  int r;
  (void)state;
  OK(pf_kernel_register(ctx, &(pf_kernel_def){.name = "test.late_copy", .kind = PF_DEVICE_CPU,
                                              .n_in = 1, .n_out = 1, .shape = copy_shape,
                                              .sharding = pf_sharding_rule_elementwise,
                                              .compute = copy_compute}));
  OK(pf_graph_create(ctx, &g));
  s = pinned_slice(g, world, 0);
  OK(pf_graph_input(g, "x", &spec, s, pf_split(0), &vx));
  OK(pf_graph_program(g, &(pf_program_desc){.name = "late", .kernel = "test.late_copy",
                                             .slice = s, .n_in = 1, .in = &vx},
                      &v2, NULL));
  OK(pf_graph_collective(g, &(pf_collective_desc){.name = "gather", .kind = PF_ALLGATHER,
                                                   .slice = s, .in = v2, .axis = 0},
                         &vy, NULL));
  OK(pf_graph_output(g, "y", vy));
  assert_int_equal(pf_compile(g, &exe), PF_ENOKERNEL);
  assert_null(exe);
  /* Every other rank lacks it: the first to answer is named. */
  for (r = 1; r < world; r++) {
    char want[32];
    snprintf(want, sizeof want, "rank %d:", r);
    if (strstr(pf_last_error(ctx), want)) break;
  }
  if (r == world) fail_msg("\"%s\" names no rank that lacks the kernel", pf_last_error(ctx));
  assert_non_null(strstr(pf_last_error(ctx), "test.late_copy"));
  pf_graph_destroy(g);
}

int main(int argc, char **argv) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_kernel_error_on_a_rank),
      cmocka_unit_test(test_plugin_kernels_everywhere),
      cmocka_unit_test(test_missing_kernel_before_collective),
      cmocka_unit_test(test_malformed_message_fails_only_its_step),
      cmocka_unit_test(test_failed_send_fails_its_waiter),
      cmocka_unit_test(test_kernel_registered_after_init),
  };
  if (argc < 2) return 2;
  plugin = argv[1];
  expect_missing = argc > 2 && strcmp(argv[2], "--expect-missing") == 0;
  return cmocka_run_group_tests(tests, setup, teardown);
}
