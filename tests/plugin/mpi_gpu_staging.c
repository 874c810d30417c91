/* GPU slices across 2 ranks, each graph run on GPUs and on CPUs with the
 * same feeds; the outputs must be equal. Every rank has one CPU device
 * and G GPUs (the guarded GPU plugin, or the CUDA plugin with
 * PATHFLOW_CUDA=1): CPU i is rank i, GPUs 0..G-1 are rank 0's and G..2G-1
 * rank 1's. Values are small integers in f32: sums are exact in any order.
 *
 *  - a 16 MiB value moved GPU (rank 0) -> GPU (rank 1) -> GPU (rank 0):
 *    staged transfers of more than one chunk, both ways;
 *  - an allreduce over a GPU slice spanning both ranks, and over every GPU
 *    of both ranks when each has two (hierarchical: local, then across);
 *  - a CPU program on rank 0 feeding a GPU program on rank 1, and a GPU
 *    program on rank 0 feeding a CPU program on rank 1.
 *
 * Only rank 0 runs the tests; the others serve inside pf_init. Without a
 * GPU (PATHFLOW_CUDA=1 on a machine with none) every rank exits 77. */
#include "../testing.h"

#include <unistd.h>

static pf_context *ctx;
static int g_per_rank; /* GPUs on each rank */

#include "gpu_compare.h"

static pf_slice_t pinned(pf_graph *g, pf_device_kind kind, int n, const int *devs) {
  pf_slice_t s;
  OK(pf_graph_slice(g, kind, n, &s));
  OK(pf_graph_slice_pin(g, s, devs));
  return s;
}

/* Where the graphs put things: the i-th device of a rank, of the kind. */
static int dev(pf_device_kind kind, int rank, int i) {
  return kind == PF_DEVICE_GPU ? rank * g_per_rank + i : rank;
}

static pf_value_t prog1(pf_graph *g, const char *kernel, pf_slice_t s, pf_value_t x,
                        const char *attr, double v) {
  pf_value_t y;
  pf_attrs *a = NULL;
  if (attr != NULL) {
    OK(pf_attrs_create(&a));
    OK(pf_attrs_set_float(a, attr, v));
  }
  OK(pf_graph_program(g, &(pf_program_desc){.kernel = kernel, .attrs = a, .slice = s, .n_in = 1,
                                             .in = &x},
                      &y, NULL));
  pf_attrs_destroy(a);
  return y;
}

static pf_value_t add(pf_graph *g, pf_slice_t s, pf_value_t x, pf_value_t y) {
  pf_value_t z;
  OK(pf_graph_program(g, &(pf_program_desc){.kernel = "add", .slice = s, .n_in = 2,
                                             .in = (pf_value_t[]){x, y}},
                      &z, NULL));
  return z;
}

static pf_executable *compile(pf_graph *g) {
  pf_executable *exe;
  OK(pf_compile(g, &exe));
  pf_graph_destroy(g);
  return exe;
}

typedef pf_executable *(*build_fn)(pf_device_kind kind);

/* Runs the graph on GPUs (twice: the second step reuses device memory)
 * and on CPUs, with one feed "x" of spec xs, and compares the outputs. */
static void compare(build_fn build, pf_spec xs, int n_outs, const char *const *outs) {
  pf_executable *exe[2] = {build(PF_DEVICE_GPU), build(PF_DEVICE_CPU)};
  pf_tensor *x = ints(xs, 1);
  pf_feed feed = {.name = "x", .tensor = x};
  gpu_compare_run(ctx, exe, 1, &feed, n_outs, outs, 1);
  pf_tensor_destroy(x);
}

/* ---- transfers of a large value ------------------------------------------ */

#define BIG_N ((int64_t)4 << 20) /* f32: 16 MiB */
/* Not a multiple of anything: the chunks of a transfer are uneven. */
#define ODD_N (BIG_N + 3)

/* y = 2x on rank 0; z = y + y on rank 1; w = -z back on rank 0. */
static pf_executable *build_transfers(pf_device_kind kind) {
  pf_graph *g;
  pf_slice_t r0, r1;
  pf_value_t x, y, z, w;
  pf_spec xs = pf_spec_1d(PF_F32, ODD_N);
  OK(pf_graph_create(ctx, &g));
  r0 = pinned(g, kind, 1, (int[]){dev(kind, 0, 0)});
  r1 = pinned(g, kind, 1, (int[]){dev(kind, 1, 0)});
  OK(pf_graph_input(g, "x", &xs, r0, pf_replicated(), &x));
  y = prog1(g, "scale", r0, x, "alpha", 2);
  z = add(g, r1, y, y);
  w = prog1(g, "scale", r0, z, "alpha", -1);
  OK(pf_graph_output(g, "z", z));
  OK(pf_graph_output(g, "w", w));
  return compile(g);
}

static void test_large_transfers(void **state) {
  (void)state;
  compare(build_transfers, pf_spec_1d(PF_F32, ODD_N), 2, (const char *[]){"z", "w"});
}

/* A value split over a slice with a device on each rank, fed (one shard
 * lands on rank 1) and resharded to replicated: each rank's GPU gets the
 * other's half. */
static pf_executable *build_split_reshard(pf_device_kind kind) {
  pf_graph *g;
  pf_slice_t both;
  pf_value_t x, y, z;
  pf_spec xs = pf_spec_2d(PF_F32, 4, BIG_N / 4);
  pf_sharding rep = pf_replicated();
  OK(pf_graph_create(ctx, &g));
  both = pinned(g, kind, 2, (int[]){dev(kind, 0, 0), dev(kind, 1, 0)});
  OK(pf_graph_input(g, "x", &xs, both, pf_split(0), &x));
  y = prog1(g, "scale", both, x, "alpha", 3);
  OK(pf_graph_program(g, &(pf_program_desc){.kernel = "relu", .slice = both, .n_in = 1,
                                             .in = &y, .in_shardings = &rep},
                      &z, NULL));
  OK(pf_graph_output(g, "z", z));
  return compile(g);
}

static void test_split_reshard_across_ranks(void **state) {
  (void)state;
  compare(build_split_reshard, pf_spec_2d(PF_F32, 4, BIG_N / 4), 1, (const char *[]){"z"});
}

/* ---- allreduce across ranks ----------------------------------------------- */

/* x [4096, 64] split(0) over one device per rank; s = allreduce(2x). */
static pf_executable *build_allreduce(pf_device_kind kind) {
  pf_graph *g;
  pf_slice_t both;
  pf_value_t x, y, s;
  pf_spec xs = pf_spec_2d(PF_F32, 4096, 64);
  OK(pf_graph_create(ctx, &g));
  both = pinned(g, kind, 2, (int[]){dev(kind, 0, 0), dev(kind, 1, 0)});
  OK(pf_graph_input(g, "x", &xs, both, pf_split(0), &x));
  y = prog1(g, "scale", both, x, "alpha", 2);
  OK(pf_graph_collective(g, &(pf_collective_desc){.kind = PF_ALLREDUCE, .slice = both, .in = y,
                                                  .op = PF_REDUCE_SUM},
                         &s, NULL));
  OK(pf_graph_output(g, "s", s));
  return compile(g);
}

/* MPI collectives rank 0 has taken part in so far. */
static uint64_t transport_collectives(void) {
  pf_counters *c;
  uint64_t n;
  OK(pf_counters_get(ctx, 0, &c));
  n = c->collectives;
  pf_counters_free(c);
  return n;
}

/* With devices that run collectives themselves (the guarded GPU with
 * PATHFLOW_GUARDED_COLLECTIVES=1, or NCCL), the GPU run's allreduce goes
 * through the devices, not through the transport: the CPU run's does. */
static void test_allreduce_across_ranks(void **state) {
  const char *dc = getenv("PATHFLOW_GUARDED_COLLECTIVES");
  uint64_t before = transport_collectives();
  (void)state;
  compare(build_allreduce, pf_spec_2d(PF_F32, 4096, 64), 1, (const char *[]){"s"});
  /* 3 runs: 2 on GPUs, 1 on CPUs. */
  if (dc != NULL && strcmp(dc, "1") == 0)
    assert_int_equal(transport_collectives() - before, 1);
  else if (getenv("PATHFLOW_CUDA") == NULL || strcmp(getenv("PATHFLOW_CUDA"), "1") != 0)
    assert_int_equal(transport_collectives() - before, 3);
  else /* real GPUs: 1 when NCCL ran the GPU runs' allreduces, 3 without it */
    printf("# allreduce across ranks: %llu of 3 runs through the transport\n",
           (unsigned long long)(transport_collectives() - before));
}

/* Ops run so far by local device `local` of rank `rank`. */
static uint64_t device_ops(int rank, int local) {
  pf_counters *c;
  uint64_t n;
  OK(pf_counters_get(ctx, rank, &c));
  assert_true(local < c->num_devices);
  n = c->devices[local].ops_run;
  pf_counters_free(c);
  return n;
}

/* Over the first two GPUs of both ranks: the local allreduce on each
 * rank, then across, of y = 1x, and z = 2s after it (kernels on both
 * sides keep the value on the GPUs: each of the four runs ops). Compared
 * with a host reference (the CPU slices have one device per rank). */
/* ---- allgather and reduce-scatter across ranks ------------------------------ */

static pf_value_t collective(pf_graph *g, pf_collective_kind kind, pf_slice_t s, pf_value_t x,
                             int axis) {
  pf_value_t y;
  OK(pf_graph_collective(g, &(pf_collective_desc){.kind = kind, .slice = s, .in = x,
                                                  .op = PF_REDUCE_SUM, .axis = axis},
                         &y, NULL));
  return y;
}

/* x [64, 48] split by rows over one device per rank: gathered along rows
 * (blocks that are whole runs of memory: a device may run it) and, split
 * by columns, along columns (strided blocks: always staged); 3x
 * replicated, reduce-scattered along rows; its rows exchanged all-to-all. */
static pf_executable *build_gather_scatter(pf_device_kind kind) {
  pf_graph *g;
  pf_slice_t both;
  pf_value_t x, xc, y, rep;
  pf_spec xs = pf_spec_2d(PF_F32, 64, 48);
  OK(pf_graph_create(ctx, &g));
  both = pinned(g, kind, 2, (int[]){dev(kind, 0, 0), dev(kind, 1, 0)});
  OK(pf_graph_input(g, "x", &xs, both, pf_split(0), &x));
  y = prog1(g, "scale", both, x, "alpha", 2);
  OK(pf_graph_output(g, "rows", collective(g, PF_ALLGATHER, both, y, 0)));
  OK(pf_graph_program(g, &(pf_program_desc){.kernel = "scale", .slice = both, .n_in = 1,
                                             .in = &x, .in_shardings = (pf_sharding[]){pf_split(1)},
                                             .attrs = NULL},
                      &xc, NULL));
  OK(pf_graph_output(g, "cols", collective(g, PF_ALLGATHER, both, xc, 1)));
  OK(pf_graph_program(g, &(pf_program_desc){.kernel = "identity", .slice = both, .n_in = 1,
                                             .in = &x, .in_shardings = (pf_sharding[]){pf_replicated()}},
                      &rep, NULL));
  OK(pf_graph_output(g, "rs", collective(g, PF_REDUCE_SCATTER, both, prog1(g, "scale", both, rep, "alpha", 3), 0)));
  return compile(g);
}

/* With devices running collectives, the GPU runs' row gather,
 * reduce-scatter and all-to-all go through the devices and only the column
 * gather (strided blocks) through the transport: 2 x 1 + 4 for the CPU
 * run, against 2 x 4 + 4 when everything is staged. */
static void test_gather_scatter_across_ranks(void **state) {
  const char *dc = getenv("PATHFLOW_GUARDED_COLLECTIVES");
  uint64_t before = transport_collectives();
  (void)state;
  compare(build_gather_scatter, pf_spec_2d(PF_F32, 64, 48), 3,
          (const char *[]){"rows", "cols", "rs"});
  if (dc != NULL && strcmp(dc, "1") == 0)
    assert_int_equal(transport_collectives() - before, 2 * 1 + 3);
  else if (getenv("PATHFLOW_CUDA") == NULL || strcmp(getenv("PATHFLOW_CUDA"), "1") != 0)
    assert_int_equal(transport_collectives() - before, 2 * 3 + 3);
}

/* x [2, 4, 6] split along axis 0, exchanged all-to-all along axis 1: each
 * device's chunks and results are whole runs of memory (every axis before
 * the cut one has 1 element), a device may run it; the same of x reshaped
 * by columns ([2, 4, 6] split along axis 2, exchanged along axis 1) is
 * strided: staged. */
static pf_executable *build_exchange(pf_device_kind kind) {
  pf_graph *g;
  pf_slice_t both;
  pf_value_t x, y, yc;
  pf_spec xs = pf_spec_make(PF_F32, 3, (int64_t[]){2, 4, 6});
  OK(pf_graph_create(ctx, &g));
  both = pinned(g, kind, 2, (int[]){dev(kind, 0, 0), dev(kind, 1, 0)});
  OK(pf_graph_input(g, "x", &xs, both, pf_split(0), &x));
  y = prog1(g, "scale", both, x, "alpha", 2);
  OK(pf_graph_output(g, "rows", collective(g, PF_ALL_TO_ALL, both, y, 1)));
  OK(pf_graph_program(g, &(pf_program_desc){.kernel = "scale", .slice = both, .n_in = 1,
                                             .in = &x, .in_shardings = (pf_sharding[]){pf_split(2)}},
                      &yc, NULL));
  OK(pf_graph_output(g, "cols", collective(g, PF_ALL_TO_ALL, both, yc, 1)));
  return compile(g);
}

static void test_exchange_across_ranks(void **state) {
  const char *dc = getenv("PATHFLOW_GUARDED_COLLECTIVES");
  uint64_t before = transport_collectives();
  (void)state;
  compare(build_exchange, pf_spec_make(PF_F32, 3, (int64_t[]){2, 4, 6}), 2,
          (const char *[]){"rows", "cols"});
  if (dc != NULL && strcmp(dc, "1") == 0)
    assert_int_equal(transport_collectives() - before, 2 * 1 + 2);
  else if (getenv("PATHFLOW_CUDA") == NULL || strcmp(getenv("PATHFLOW_CUDA"), "1") != 0)
    assert_int_equal(transport_collectives() - before, 2 * 2 + 2);
}

static void test_hierarchical_allreduce(void **state) {
  pf_graph *g;
  pf_slice_t all;
  pf_value_t x, y, s, z;
  pf_spec xs = pf_spec_2d(PF_F32, 4 * 256, 33);
  pf_executable *exe;
  pf_tensor *tx, *ts;
  pf_future *f;
  uint64_t ops0[4];
  (void)state;
  if (g_per_rank < 2) skip();
  OK(pf_graph_create(ctx, &g));
  all = pinned(g, PF_DEVICE_GPU, 4, (int[]){0, 1, g_per_rank, g_per_rank + 1});
  OK(pf_graph_input(g, "x", &xs, all, pf_split(0), &x));
  y = prog1(g, "scale", all, x, "alpha", 1);
  OK(pf_graph_collective(g, &(pf_collective_desc){.kind = PF_ALLREDUCE, .slice = all, .in = y,
                                                  .op = PF_REDUCE_SUM},
                         &s, NULL));
  z = prog1(g, "scale", all, s, "alpha", 2);
  OK(pf_graph_output(g, "z", z));
  exe = compile(g);
  tx = ints(xs, 3);
  for (int k = 0; k < 4; k++) ops0[k] = device_ops(k / 2, 1 + k % 2);
  OK(pf_execute(exe, 1, &(pf_feed){.name = "x", .tensor = tx}, &f));
  OK(pf_future_wait(f));
  OK(pf_future_fetch(f, "z", &ts));
  pf_future_destroy(f);
  for (int k = 0; k < 4; k++)
    if (device_ops(k / 2, 1 + k % 2) == ops0[k])
      fail_msg("rank %d's GPU %d ran no op", k / 2, k % 2);
  {
    const float *X = pf_tensor_cdata(tx), *S = pf_tensor_cdata(ts);
    int64_t block = 256 * 33;
    assert_int_equal(pf_spec_numel(pf_tensor_spec(ts)), block);
    for (int64_t i = 0; i < block; i++) {
      float want = 2 * (X[i] + X[i + block] + X[i + 2 * block] + X[i + 3 * block]);
      if (S[i] != want) fail_msg("z[%lld] = %g, want %g", (long long)i, (double)S[i], (double)want);
    }
  }
  pf_tensor_destroy(tx);
  pf_tensor_destroy(ts);
  pf_executable_destroy(exe);
}

/* ---- CPU and GPU on different ranks --------------------------------------- */

/* a = 3x on rank 0's CPU; b = relu(a + a) on rank 1's GPU (kind); c = -b
 * on rank 0's GPU (kind); d = c + a on rank 1's CPU. */
static pf_executable *build_cpu_gpu(pf_device_kind kind) {
  pf_graph *g;
  pf_slice_t c0, g1, g0, c1;
  pf_value_t x, a, b, c, d;
  pf_spec xs = pf_spec_2d(PF_F32, 512, 300);
  OK(pf_graph_create(ctx, &g));
  c0 = pinned(g, PF_DEVICE_CPU, 1, (int[]){0});
  g1 = pinned(g, kind, 1, (int[]){dev(kind, 1, 0)});
  g0 = pinned(g, kind, 1, (int[]){dev(kind, 0, 0)});
  c1 = pinned(g, PF_DEVICE_CPU, 1, (int[]){1});
  OK(pf_graph_input(g, "x", &xs, c0, pf_replicated(), &x));
  a = prog1(g, "scale", c0, x, "alpha", 3);
  b = add(g, g1, a, a);
  b = prog1(g, "relu", g1, b, NULL, 0);
  c = prog1(g, "scale", g0, b, "alpha", -1);
  d = add(g, c1, c, a);
  OK(pf_graph_output(g, "b", b));
  OK(pf_graph_output(g, "d", d));
  return compile(g);
}

static void test_cpu_and_gpu_across_ranks(void **state) {
  (void)state;
  compare(build_cpu_gpu, pf_spec_2d(PF_F32, 512, 300), 2, (const char *[]){"b", "d"});
}

/* ---- setup ------------------------------------------------------------- */

/* An NVIDIA driver is loaded (the loader's test too). */
static int nvidia_driver(void) {
  return access("/proc/driver/nvidia/version", F_OK) == 0 || access("/dev/nvidiactl", F_OK) == 0;
}

static void skipped(void) {
  printf("no GPU: skipped\n");
  fflush(stdout);
  exit(77);
}

int main(int argc, char **argv) {
  const char *cuda = getenv("PATHFLOW_CUDA");
  int real = cuda != NULL && strcmp(cuda, "0") != 0 && getenv("PATHFLOW_DEVICE_PLUGINS") == NULL;
  int rc, n_gpus;
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_large_transfers),
      cmocka_unit_test(test_split_reshard_across_ranks),
      cmocka_unit_test(test_allreduce_across_ranks),
      cmocka_unit_test(test_gather_scatter_across_ranks),
      cmocka_unit_test(test_exchange_across_ranks),
      cmocka_unit_test(test_hierarchical_allreduce),
      cmocka_unit_test(test_cpu_and_gpu_across_ranks),
  };
  /* A failed pf_init ends an mpirun job (MPI_Abort): every rank decides
   * alone, before it, that there is no GPU to run on. */
  if (real && !nvidia_driver()) skipped();
  /* Ranks other than 0 serve inside pf_init and exit there. */
  if ((rc = pf_init(&argc, &argv, &(pf_init_options){.cpu_devices = 1}, &ctx)) != 0) {
    fprintf(stderr, "pf_init: %s\n", pf_errname(rc));
    return 1;
  }
  n_gpus = pf_device_count(ctx, PF_DEVICE_GPU);
  if (pf_world_size(ctx) != 2 || pf_device_count(ctx, PF_DEVICE_CPU) != 2) {
    fprintf(stderr, "want 2 ranks of one CPU device each: %d ranks, %d CPU devices\n",
            pf_world_size(ctx), pf_device_count(ctx, PF_DEVICE_CPU));
    pf_finalize(ctx);
    return 1;
  }
  if (n_gpus == 0 && real) {
    pf_finalize(ctx);
    skipped();
  }
  if (n_gpus == 0 || n_gpus % 2 != 0) {
    fprintf(stderr, "%d GPU devices over 2 ranks: is PATHFLOW_DEVICE_PLUGINS (%s) loaded?\n",
            n_gpus,
            getenv("PATHFLOW_DEVICE_PLUGINS") ? getenv("PATHFLOW_DEVICE_PLUGINS") : "unset");
    pf_finalize(ctx);
    return 1;
  }
  g_per_rank = n_gpus / 2;
  rc = cmocka_run_group_tests(tests, NULL, NULL);
  if (pf_finalize(ctx) != 0) return 1;
  return rc;
}
