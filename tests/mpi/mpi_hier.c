/* Allreduce and broadcast over a slice with several devices on each of
 * several ranks (2 devices per rank here): combined inside each rank, one
 * MPI collective across ranks. Every device's copy of the result is
 * checked, with shards in rank order and interleaved over ranks. */
#include "mpi_common.h"

pf_context *ctx;
static int devices;

/* A copy with no sharding rule: declared split over the slice, it lays every
 * device's replica side by side, so that one fetch shows all copies (no
 * built-in kernel may do that: it reads replicas as blocks). */
static int probe_shape(const pf_attrs *attrs, int n_in, const pf_spec *in,
                       int n_out, pf_spec *out, pf_diag *diag) {
  (void)attrs;
  (void)n_in;
  (void)n_out;
  (void)diag;
  out[0] = in[0];
  return 0;
}

static int probe_compute(const pf_kernel_call *call) {
  memcpy(call->out[0].data, call->in[0].data,
         pf_spec_nbytes(&call->in[0].spec));
  return 0;
}

static const pf_kernel_def probe_def = {
    .name = "replica_probe", .kind = PF_DEVICE_CPU, .n_in = 1, .n_out = 1,
    .shape = probe_shape, .compute = probe_compute};

static int setup(void **state) {
  (void)state;
  if (pf_init(NULL, NULL,
              &(pf_init_options){.cpu_devices = 2, .kernels = &probe_def,
                                 .n_kernels = 1},
              &ctx))
    return -1;
  devices = pf_device_count(ctx, PF_DEVICE_CPU);
  return pf_world_size(ctx) >= 2 ? 0 : -1;
}

static int teardown(void **state) {
  (void)state;
  return pf_finalize(ctx);
}

/* out = kind(x) over `pins`; then every device's replica laid side by side
 * (replica_probe declared split) so that one fetch shows all copies. */
static void check(const int *pins, pf_collective_kind kind, pf_reduce_op op, int root) {
  const int n = devices, rows = 3, cols = 5;
  pf_graph *g;
  pf_executable *exe;
  pf_slice_t s;
  pf_value_t x, r, all;
  pf_spec spec = pf_spec_2d(PF_F64, rows * n, cols);
  pf_sharding split0 = pf_split(0);
  pf_tensor *tx = seq_tensor(spec, 3), *ty;
  const double *X = pf_tensor_data(tx);
  OK(pf_graph_create(ctx, &g));
  OK(pf_graph_slice(g, PF_DEVICE_CPU, n, &s));
  OK(pf_graph_slice_pin(g, s, pins));
  OK(pf_graph_input(g, "x", &spec, s, split0, &x));
  OK(pf_graph_collective(g, &(pf_collective_desc){.kind = kind, .slice = s, .in = x, .op = op,
                                                   .root = root},
                         &r, NULL));
  OK(pf_graph_program(g, &(pf_program_desc){.kernel = "replica_probe", .slice = s, .n_in = 1, .in = &r,
                                             .out_shardings = &split0},
                      &all, NULL));
  OK(pf_graph_output(g, "all", all));
  OK(pf_compile(g, &exe));
  ty = run_one(exe, 1, &(pf_feed){.name = "x", .tensor = tx}, "all");
  for (int d = 0; d < n; d++)
    for (int i = 0; i < rows * cols; i++) {
      double want = kind == PF_BROADCAST ? X[root * rows * cols + i] : 0;
      if (kind == PF_ALLREDUCE) {
        want = op == PF_REDUCE_MAX ? -1e300 : op == PF_REDUCE_MIN ? 1e300 : 0;
        for (int b = 0; b < n; b++) {
          double v = X[b * rows * cols + i];
          want = op == PF_REDUCE_MAX ? fmax(want, v) : op == PF_REDUCE_MIN ? fmin(want, v) : want + v;
        }
        if (op == PF_REDUCE_MEAN) want /= n;
      }
      double got = ((double *)pf_tensor_data(ty))[d * rows * cols + i];
      if (fabs(got - want) > 1e-12)
        fail_msg("%s op %d pins %d,%d,%d,%d: device %d element %d: got %g, want %g", kind == PF_BROADCAST ? "broadcast" : "allreduce", (int)op, pins[0], pins[1], pins[2], pins[3], d, i, got, want);
    }
  pf_tensor_destroy(tx);
  pf_tensor_destroy(ty);
  pf_executable_destroy(exe);
  pf_graph_destroy(g);
}

static void test_allreduce_several_devices_per_rank(void **state) {
  int in_order[64], interleaved[64];
  (void)state;
  for (int d = 0; d < devices; d++) {
    in_order[d] = d;
    /* rank-major devices 0,1 | 2,3: shards alternate between ranks */
    interleaved[d] = (d % 2) * (devices / 2) + d / 2;
  }
  for (int op = 0; op < PF_REDUCE_COUNT; op++) {
    check(in_order, PF_ALLREDUCE, (pf_reduce_op)op, 0);
    check(interleaved, PF_ALLREDUCE, (pf_reduce_op)op, 0);
  }
}

static void test_broadcast_several_devices_per_rank(void **state) {
  int interleaved[64];
  (void)state;
  for (int d = 0; d < devices; d++) interleaved[d] = (d % 2) * (devices / 2) + d / 2;
  for (int root = 0; root < devices; root++) check(interleaved, PF_BROADCAST, PF_REDUCE_SUM, root);
}

static void test_allgather_is_refused(void **state) {
  pf_graph *g;
  pf_executable *exe = NULL;
  pf_slice_t s;
  pf_value_t x, y;
  pf_spec spec = pf_spec_1d(PF_F64, 4 * devices);
  (void)state;
  OK(pf_graph_create(ctx, &g));
  OK(pf_graph_slice(g, PF_DEVICE_CPU, devices, &s));
  OK(pf_graph_input(g, "x", &spec, s, pf_split(0), &x));
  OK(pf_graph_collective(g, &(pf_collective_desc){.kind = PF_ALLGATHER, .slice = s, .in = x},
                         &y, NULL));
  OK(pf_graph_output(g, "y", y));
  assert_int_equal(pf_compile(g, &exe), PF_ENOTSUP);
  assert_non_null(strstr(pf_last_error(ctx), "several devices on each"));
  pf_graph_destroy(g);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_allreduce_several_devices_per_rank),
      cmocka_unit_test(test_broadcast_several_devices_per_rank),
      cmocka_unit_test(test_allgather_is_refused),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
