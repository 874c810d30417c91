/* bench/pipeline: Pathways' pipeline micro-benchmark. S stages, each a tiny
 * program on its own rank, chained rank 0 -> 1 -> ... -> S-1; computations
 * per second for S = 1..N under parallel and sequential dispatch, with one
 * execution at a time and with many in flight.
 *   mpirun -np N -x PATHFLOW_CPU_DEVICES=1 pipeline [-k EXECUTIONS] */
#include <pathflow.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static pf_context *ctx;

#define CHECK(call)                                                                 \
  do {                                                                              \
    int rc_ = (call);                                                               \
    if (rc_ != 0) {                                                                 \
      fprintf(stderr, "%s: %s: %s\n", #call, pf_errname(rc_), pf_last_error(ctx)); \
      exit(1);                                                                      \
    }                                                                               \
  } while (0)

static pf_executable *build(int stages, pf_dispatch_mode mode) {
  pf_graph *g;
  pf_executable *exe;
  pf_spec spec = pf_spec_1d(PF_F32, 16);
  pf_value_t v;
  pf_slice_t s;
  int dev = 0;
  CHECK(pf_graph_create(ctx, &g));
  CHECK(pf_graph_set_dispatch(g, mode));
  CHECK(pf_graph_slice(g, PF_DEVICE_CPU, 1, &s));
  CHECK(pf_graph_slice_pin(g, s, &dev));
  CHECK(pf_graph_input(g, "x", &spec, s, pf_replicated(), &v));
  for (int i = 0; i < stages; i++) {
    dev = i;
    CHECK(pf_graph_slice(g, PF_DEVICE_CPU, 1, &s));
    CHECK(pf_graph_slice_pin(g, s, &dev));
    CHECK(pf_graph_program(g, &(pf_program_desc){.kernel = "relu", .slice = s, .n_in = 1, .in = &v},
                           &v, NULL));
  }
  CHECK(pf_graph_output(g, "y", v));
  CHECK(pf_compile(g, &exe));
  pf_graph_destroy(g);
  return exe;
}

/* Computations per second: `window` executions kept in flight. */
static double rate(pf_executable *exe, pf_tensor *x, int k, int window) {
  pf_future **f = calloc((size_t)k, sizeof *f);
  pf_feed feed = {.name = "x", .tensor = x};
  double t0;
  int done = 0;
  for (int i = 0; i < 10; i++) { /* warm up */
    CHECK(pf_execute(exe, 1, &feed, &f[0]));
    CHECK(pf_future_wait(f[0]));
    pf_future_destroy(f[0]);
  }
  t0 = now_s();
  for (int i = 0; i < k; i++) {
    CHECK(pf_execute(exe, 1, &feed, &f[i]));
    if (i - done + 1 >= window) {
      CHECK(pf_future_wait(f[done]));
      pf_future_destroy(f[done++]);
    }
  }
  while (done < k) {
    CHECK(pf_future_wait(f[done]));
    pf_future_destroy(f[done++]);
  }
  free(f);
  return k / (now_s() - t0);
}

int main(int argc, char **argv) {
  int k = 500;
  pf_tensor *x;
  pf_spec spec = pf_spec_1d(PF_F32, 16);
  for (int i = 1; i + 1 < argc; i += 2)
    if (strcmp(argv[i], "-k") == 0) k = atoi(argv[i + 1]);
  CHECK(pf_init(&argc, &argv, NULL, &ctx));
  CHECK(pf_tensor_create(&spec, &x));
  printf("# pipeline: S stages on S ranks, %d executions per cell; computations/s\n", k);
  printf("%-7s %-16s %-16s %-16s %-16s\n", "stages", "parallel_1", "sequential_1",
         "parallel_32", "sequential_32");
  for (int s = 1; s <= pf_world_size(ctx); s++) {
    pf_executable *par = build(s, PF_DISPATCH_PARALLEL), *seq = build(s, PF_DISPATCH_SEQUENTIAL);
    double r[4];
    r[0] = rate(par, x, k, 1);
    r[1] = rate(seq, x, k, 1);
    r[2] = rate(par, x, k, 32);
    r[3] = rate(seq, x, k, 32);
    printf("%-7d %-16.0f %-16.0f %-16.0f %-16.0f\n", s, r[0], r[1], r[2], r[3]);
    pf_executable_destroy(par);
    pf_executable_destroy(seq);
  }
  pf_tensor_destroy(x);
  return pf_finalize(ctx);
}
