/* Gang order: every rank issues the collectives of a communicator in the
 * same order, whatever order their inputs become ready in. Graphs that
 * deadlock (or silently mix data) under a naive order, on 4 ranks, one
 * device each; W = ranks {0,1,2,3}, P = ranks {0,1}:
 *   A: allreduce over W, then allreduce over P of the result;
 *   B: allreduce over P, then allreduce over W of the result;
 *   C: independent collectives on W (the same communicator): two
 *      allreduces, an allgather and a broadcast. c1's and c4's inputs come
 *      from a slow chain of kernels on rank 2, c2's and c3's from a fast
 *      kernel on every rank: rank 2 has c1's input first (its device runs
 *      the chain before the fast kernel), the others c2's.
 * Many executions of A, B and C run interleaved and in flight together;
 * every result is checked. A deadlock fails the test after 60 s instead of
 * hanging it: the failure is reported and the job ends. */
#include <time.h>
#include <unistd.h>

#include "mpi_common.h"

pf_context *ctx;
static int world, hung;

enum { TIMEOUT_MS = 60000, ROUNDS = 50, WINDOW = 4, SLOW_US = 2000 };

/* "test.sleep": identity, after sleeping attribute "us" microseconds. */
static int sleep_shape(const pf_attrs *attrs, int n_in, const pf_spec *in, int n_out, pf_spec *out,
                       pf_diag *diag) {
  (void)attrs, (void)n_in, (void)n_out, (void)diag;
  out[0] = in[0];
  return 0;
}

static int sleep_compute(const pf_kernel_call *call) {
  int64_t us = pf_attrs_get_int(call->attrs, "us", 0);
  size_t n = pf_spec_nbytes(&call->in[0].spec);
  if (us > 0) {
    struct timespec ts = {(time_t)(us / 1000000), (long)(us % 1000000) * 1000};
    nanosleep(&ts, NULL);
  }
  if (n > 0) memcpy(call->out[0].data, call->in[0].data, n);
  return 0;
}

static const pf_kernel_def sleep_def = {.name = "test.sleep", .kind = PF_DEVICE_CPU, .n_in = 1,
                                        .n_out = 1, .shape = sleep_shape,
                                        .compute = sleep_compute};

static int setup(void **state) {
  (void)state;
  if (pf_init(NULL, NULL,
              &(pf_init_options){.cpu_devices = 1, .kernels = &sleep_def, .n_kernels = 1}, &ctx))
    return -1;
  world = pf_world_size(ctx);
  return world >= 4 ? 0 : -1;
}

static int teardown(void **state) {
  (void)state;
  if (hung) {
    /* pf_finalize would wait for the stuck executions: end the job (mpirun
     * takes the other ranks down with it). */
    fprintf(stderr, "mpi_gang: an execution deadlocked; ending the job\n");
    fflush(stdout);
    fflush(stderr);
    _exit(1);
  }
  return pf_finalize(ctx);
}

/* Waits with a time limit: a deadlock fails the test, never hangs it. */
static void wait_or_fail(pf_future *f, const char *what) {
  int rc = pf_future_wait_for(f, TIMEOUT_MS);
  if (rc == PF_ETIMEDOUT) {
    hung = 1;
    fail_msg("%s: not done after %d s: deadlock (collectives issued out of gang order?)", what,
             TIMEOUT_MS / 1000);
  }
  if (rc != 0) fail_msg("%s: %s: %s", what, pf_errname(rc), pf_future_error(f));
}

/* Quarters in [-50, 50]: every sum below is exact in any order. */
static pf_tensor *quarters(pf_spec spec, int seed) {
  pf_tensor *t;
  OK(pf_tensor_create(&spec, &t));
  for (int64_t i = 0; i < pf_spec_numel(&spec); i++)
    ((double *)pf_tensor_data(t))[i] = (double)((i * 37 + (int64_t)seed * 101) % 401 - 200) * 0.25;
  return t;
}

/* scale * (sum of the n row blocks of x[rows, cols]), as [rows / n, cols]. */
static double *block_sum(const pf_tensor *x, int n, double scale) {
  const pf_spec *s = pf_tensor_spec(x);
  int64_t rows = s->dims[0] / n, cols = s->dims[1];
  double *out = calloc((size_t)(rows * cols), sizeof *out);
  const double *in = pf_tensor_cdata(x);
  for (int d = 0; d < n; d++)
    for (int64_t i = 0; i < rows * cols; i++) out[i] += in[d * rows * cols + i];
  for (int64_t i = 0; i < rows * cols; i++) out[i] *= scale;
  return out;
}

static void expect_output(pf_future *f, const char *name, const double *want, int64_t n,
                          const char *what) {
  pf_tensor *t;
  OK(pf_future_fetch(f, name, &t));
  if (pf_spec_numel(pf_tensor_spec(t)) != n)
    fail_msg("%s: output %s has %lld elements, want %lld", what, name,
             (long long)pf_spec_numel(pf_tensor_spec(t)), (long long)n);
  for (int64_t i = 0; i < n; i++)
    if (((double *)pf_tensor_data(t))[i] != want[i])
      fail_msg("%s: output %s element %lld: got %g, want %g", what, name, (long long)i,
               ((double *)pf_tensor_data(t))[i], want[i]);
  pf_tensor_destroy(t);
}

static pf_slice_t slice_of(pf_graph *g, int n, const int *ranks) {
  pf_slice_t s;
  OK(pf_graph_slice(g, PF_DEVICE_CPU, n, &s));
  OK(pf_graph_slice_pin(g, s, ranks));
  return s;
}

static const int W[4] = {0, 1, 2, 3}, P[2] = {0, 1}, R2[1] = {2};

static pf_value_t allreduce(pf_graph *g, const char *name, pf_slice_t s, pf_value_t in) {
  pf_value_t out;
  OK(pf_graph_collective(g, &(pf_collective_desc){.name = name, .kind = PF_ALLREDUCE, .slice = s,
                                                   .in = in, .op = PF_REDUCE_SUM},
                         &out, NULL));
  return out;
}

static pf_value_t kernel(pf_graph *g, const char *kname, pf_slice_t s, pf_value_t in,
                         const char *attr, double v) {
  pf_value_t out;
  pf_attrs *a;
  OK(pf_attrs_create(&a));
  if (attr && strcmp(attr, "us") == 0) OK(pf_attrs_set_int(a, attr, (int64_t)v));
  else if (attr) OK(pf_attrs_set_float(a, attr, v));
  OK(pf_graph_program(g, &(pf_program_desc){.kernel = kname, .attrs = a, .slice = s, .n_in = 1,
                                             .in = &in},
                      &out, NULL));
  pf_attrs_destroy(a);
  return out;
}

/* A: x[8,16] split over W -> allreduce W -> allreduce P: 2 * block sum. */
static pf_executable *graph_a(pf_graph **g) {
  pf_executable *exe;
  pf_spec spec = pf_spec_2d(PF_F64, 8, 16);
  pf_value_t x, y;
  pf_slice_t w, p;
  OK(pf_graph_create(ctx, g));
  w = slice_of(*g, 4, W);
  p = slice_of(*g, 2, P);
  OK(pf_graph_input(*g, "x", &spec, w, pf_split(0), &x));
  y = allreduce(*g, "a_world", w, x);
  y = allreduce(*g, "a_pair", p, y);
  OK(pf_graph_output(*g, "y", y));
  OK(pf_compile(*g, &exe));
  return exe;
}

/* B: x[4,16] split over P -> allreduce P -> allreduce W: 4 * block sum. */
static pf_executable *graph_b(pf_graph **g) {
  pf_executable *exe;
  pf_spec spec = pf_spec_2d(PF_F64, 4, 16);
  pf_value_t x, y;
  pf_slice_t w, p;
  OK(pf_graph_create(ctx, g));
  w = slice_of(*g, 4, W);
  p = slice_of(*g, 2, P);
  OK(pf_graph_input(*g, "x", &spec, p, pf_split(0), &x));
  y = allreduce(*g, "b_pair", p, x);
  y = allreduce(*g, "b_world", w, y);
  OK(pf_graph_output(*g, "y", y));
  OK(pf_compile(*g, &exe));
  return exe;
}

/* C: a[2,16] on rank 2 -> sleep -> scale 2 -> sleep (the slow chain);
 * b[8,16] split over W -> scale 1 (fast). On W, in this order: c1 =
 * allreduce of the chain's result (consumed replicated: 4 * 2a), c2 =
 * allreduce of the fast kernel's (block sum of b), c3 = allgather of the
 * fast kernel's (b), c4 = broadcast from rank 2 of the chain's result (2a).
 * The chain is added first, so rank 2 runs it before its shard of the fast
 * kernel: rank 2 has the inputs of c1 and c4 first, the others those of c2
 * and c3. Out of order, the allreduces would mix data and the other kinds
 * would not match at all. */
static pf_executable *graph_c(pf_graph **g) {
  pf_executable *exe;
  pf_spec as = pf_spec_2d(PF_F64, 2, 16), bs = pf_spec_2d(PF_F64, 8, 16);
  pf_value_t a, b, s, fst;
  pf_slice_t w, r2;
  OK(pf_graph_create(ctx, g));
  w = slice_of(*g, 4, W);
  r2 = slice_of(*g, 1, R2);
  OK(pf_graph_input(*g, "a", &as, r2, pf_replicated(), &a));
  OK(pf_graph_input(*g, "b", &bs, w, pf_split(0), &b));
  s = kernel(*g, "test.sleep", r2, a, "us", SLOW_US);
  s = kernel(*g, "scale", r2, s, "alpha", 2.0);
  s = kernel(*g, "test.sleep", r2, s, "us", SLOW_US);
  fst = kernel(*g, "scale", w, b, "alpha", 1.0);
  OK(pf_graph_output(*g, "c1", allreduce(*g, "c_slow", w, s)));
  OK(pf_graph_output(*g, "c2", allreduce(*g, "c_fast", w, fst)));
  {
    pf_value_t c3, c4;
    OK(pf_graph_collective(*g, &(pf_collective_desc){.name = "c_gather", .kind = PF_ALLGATHER,
                                                      .slice = w, .in = fst, .axis = 0},
                           &c3, NULL));
    OK(pf_graph_collective(*g, &(pf_collective_desc){.name = "c_bcast", .kind = PF_BROADCAST,
                                                      .slice = w, .in = s, .root = 2},
                           &c4, NULL));
    OK(pf_graph_output(*g, "c3", c3));
    OK(pf_graph_output(*g, "c4", c4));
  }
  OK(pf_compile(*g, &exe));
  return exe;
}

typedef struct launched {
  pf_future *f;
  pf_tensor *in[2];
  char what[48];
} launched;

static void launch(pf_executable *exe, int which, int round, launched *l) {
  snprintf(l->what, sizeof l->what, "round %d graph %c", round, "ABC"[which]);
  if (which == 0) {
    l->in[0] = quarters(pf_spec_2d(PF_F64, 8, 16), round);
    l->in[1] = NULL;
    OK(pf_execute(exe, 1, &(pf_feed){.name = "x", .tensor = l->in[0]}, &l->f));
  } else if (which == 1) {
    l->in[0] = quarters(pf_spec_2d(PF_F64, 4, 16), round + 1000);
    l->in[1] = NULL;
    OK(pf_execute(exe, 1, &(pf_feed){.name = "x", .tensor = l->in[0]}, &l->f));
  } else {
    l->in[0] = quarters(pf_spec_2d(PF_F64, 2, 16), round + 2000);
    l->in[1] = quarters(pf_spec_2d(PF_F64, 8, 16), round + 3000);
    OK(pf_execute(exe, 2,
                  (pf_feed[]){{.name = "a", .tensor = l->in[0]}, {.name = "b", .tensor = l->in[1]}},
                  &l->f));
  }
}

static void check(int which, launched *l) {
  double *want;
  wait_or_fail(l->f, l->what);
  if (which == 0) {
    want = block_sum(l->in[0], 4, 2.0);
    expect_output(l->f, "y", want, 32, l->what);
  } else if (which == 1) {
    want = block_sum(l->in[0], 2, 4.0);
    expect_output(l->f, "y", want, 32, l->what);
  } else {
    want = block_sum(l->in[0], 1, 8.0);
    expect_output(l->f, "c1", want, 32, l->what);
    free(want);
    want = block_sum(l->in[1], 4, 1.0);
    expect_output(l->f, "c2", want, 32, l->what);
    free(want);
    want = block_sum(l->in[1], 1, 1.0);
    expect_output(l->f, "c3", want, 128, l->what);
    free(want);
    want = block_sum(l->in[0], 1, 2.0);
    expect_output(l->f, "c4", want, 32, l->what);
  }
  free(want);
  pf_tensor_destroy(l->in[0]);
  pf_tensor_destroy(l->in[1]);
  pf_future_destroy(l->f);
  l->f = NULL;
}

/* A, B and C interleaved: each round launches all three (in an order that
 * turns with the round), WINDOW rounds stay in flight. */
static void test_interleaved_in_flight(void **state) {
  pf_graph *g[3];
  pf_executable *exe[3];
  launched l[WINDOW][3];
  (void)state;
  if (hung) skip();
  exe[0] = graph_a(&g[0]);
  exe[1] = graph_b(&g[1]);
  exe[2] = graph_c(&g[2]);
  for (int round = 0; round < ROUNDS + WINDOW; round++) {
    int slot = round % WINDOW;
    if (round >= WINDOW)
      for (int k = 0; k < 3; k++) check(k, &l[slot][k]);
    if (round < ROUNDS)
      for (int k = 0; k < 3; k++) {
        int which = (k + round) % 3;
        launch(exe[which], which, round, &l[slot][which]);
      }
  }
  for (int k = 0; k < 3; k++) {
    pf_executable_destroy(exe[k]);
    pf_graph_destroy(g[k]);
  }
}

/* C alone, many in flight: the queue of W holds c1 and c2 of many steps,
 * with their inputs ready in opposite orders on rank 2 and the others. */
static void test_opposite_readiness_deep(void **state) {
  enum { N = 24 };
  pf_graph *g;
  pf_executable *exe;
  launched l[N];
  (void)state;
  if (hung) skip();
  exe = graph_c(&g);
  for (int i = 0; i < N; i++) launch(exe, 2, 100 + i, &l[i]);
  for (int i = N - 1; i >= 0; i--) check(2, &l[i]);
  pf_executable_destroy(exe);
  pf_graph_destroy(g);
}

/* B then A compiled in one graph: P's collective of B's half and W's of
 * A's half are independent, so on ranks 0 and 1 both are ready at once
 * while ranks 2 and 3 only ever see W's. */
static void test_both_orders_in_one_graph(void **state) {
  pf_graph *g;
  pf_executable *exe;
  pf_spec xs = pf_spec_2d(PF_F64, 8, 16), zs = pf_spec_2d(PF_F64, 4, 16);
  pf_value_t x, z, y1, y2;
  pf_slice_t w, p;
  launched l[8];
  (void)state;
  if (hung) skip();
  OK(pf_graph_create(ctx, &g));
  w = slice_of(g, 4, W);
  p = slice_of(g, 2, P);
  OK(pf_graph_input(g, "x", &xs, w, pf_split(0), &x));
  OK(pf_graph_input(g, "z", &zs, p, pf_split(0), &z));
  y1 = allreduce(g, "z_pair", p, z);
  y2 = allreduce(g, "x_world", w, x);
  y1 = allreduce(g, "z_world", w, y1);
  y2 = allreduce(g, "x_pair", p, y2);
  OK(pf_graph_output(g, "zw", y1));
  OK(pf_graph_output(g, "xp", y2));
  OK(pf_compile(g, &exe));
  for (int i = 0; i < 8; i++) {
    l[i].in[0] = quarters(xs, 300 + i);
    l[i].in[1] = quarters(zs, 400 + i);
    snprintf(l[i].what, sizeof l[i].what, "mixed graph, execution %d", i);
    OK(pf_execute(exe, 2,
                  (pf_feed[]){{.name = "x", .tensor = l[i].in[0]},
                              {.name = "z", .tensor = l[i].in[1]}},
                  &l[i].f));
  }
  for (int i = 0; i < 8; i++) {
    double *want;
    wait_or_fail(l[i].f, l[i].what);
    want = block_sum(l[i].in[0], 4, 2.0);
    expect_output(l[i].f, "xp", want, 32, l[i].what);
    free(want);
    want = block_sum(l[i].in[1], 2, 4.0);
    expect_output(l[i].f, "zw", want, 32, l[i].what);
    free(want);
    pf_tensor_destroy(l[i].in[0]);
    pf_tensor_destroy(l[i].in[1]);
    pf_future_destroy(l[i].f);
  }
  pf_executable_destroy(exe);
  pf_graph_destroy(g);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_interleaved_in_flight),
      cmocka_unit_test(test_opposite_readiness_deep),
      cmocka_unit_test(test_both_orders_in_one_graph),
  };
  /* Many short round trips: keep each rank's loop polling a while after
   * activity instead of backing off to sleeps between them. */
  setenv("PATHFLOW_SPIN_US", "50000", 0);
  return cmocka_run_group_tests(tests, setup, teardown);
}
