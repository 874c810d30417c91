/* dispatch: the Pathways dispatch micro-benchmark on N ranks, one device
 * each, pathflow against raw MPI, in one mpirun job.
 *
 * A "computation" is a scalar allreduce over all N devices followed by a
 * scalar add: y = mean over devices of x, then y + 1 (an f64 scalar,
 * replicated; PF_REDUCE_MEAN keeps the value bounded, so after c
 * computations the value is x + c and the benchmark checks it). Measured as
 * computations per second:
 *
 *   OpByOp    one execution per computation (pf_graph_collective
 *             PF_ALLREDUCE + a user kernel "bench.inc"). Two ways:
 *             sync    each execution is fed the previous one's output
 *                     buffer (pf_future_output), so it must wait for it:
 *                     execute, wait, take the output, release the old one;
 *             async   independent computations all fed the same buffer,
 *                     up to 32 executions in flight (pathflow's dispatch
 *                     pipelined, as Pathways' client is).
 *   Chained   128 computations chained in one graph (256 programs): one
 *             execution runs 128 computations; executions as in async.
 *   Fused     one execution = one kernel "bench.inc128" (128 dependent
 *             adds of 1.0) then one allreduce; counted as 128 computations.
 *             In Pathways, Fused compiles the 128 allreduce+add into one
 *             device program, so nothing is dispatched per computation.
 *             pathflow kernels cannot communicate, so the 128 allreduces
 *             cannot go inside a kernel: this fuses the adds and keeps one
 *             allreduce. It is the floor of the dispatch cost (one
 *             gang-scheduled step with one collective per 128
 *             computations), not the same work as Chained. Executions as
 *             in async.
 *   raw MPI   MPI_Allreduce(MPI_SUM) of one double then /N + 1, in a loop
 *             on every rank: one computation per MPI_Allreduce.
 *
 * Every figure is the median of R repetitions (-r, default 5) of about
 * 0.25 s each. The raw MPI half runs first, on every rank, before pf_init
 * (see mpi_bench.h).
 *
 * Usage: mpirun -np N dispatch [-r REPS] [-c CHAIN (128)] [-w IN_FLIGHT (32)]
 *                             [-k CASES (sync,async,chained,fused)]
 * -k runs only the named pathflow cases (to profile one); raw MPI always runs.
 */
#include <math.h>
#include <unistd.h>

#include "mpi_bench.h"

#define REP_S 0.25

static int reps = 5, chain = 128, in_flight = 32;
static const char *cases = "sync,async,chained,fused";
static double raw_single; /* -B: the raw loop's rate in a job at MPI_THREAD_SINGLE (-R) */

/* 1 if -k names `what` (a comma-separated list). */
static int wanted(const char *what) {
  size_t n = strlen(what);
  for (const char *p = cases; (p = strstr(p, what)) != NULL; p += n)
    if ((p == cases || p[-1] == ',') && (p[n] == '\0' || p[n] == ','))
      return 1;
  return 0;
}

/* ---- kernels ---------------------------------------------------------------------------- */

static int same_shape(const pf_attrs *attrs, int n_in, const pf_spec *in, int n_out,
                      pf_spec *out, pf_diag *diag) {
  if (in[0].dtype != PF_F64 || in[0].rank != 0)
    return pf_diag_error(diag, PF_EDTYPE, "bench kernels take an f64 scalar");
  out[0] = in[0];
  return 0;
}

static int inc_compute(const pf_kernel_call *c) {
  *(double *)c->out[0].data = *(const double *)c->in[0].data + 1.0;
  return 0;
}

/* 128 dependent adds (attribute "n", default 128): not folded by the
 * compiler (floating-point adds are not reassociated without -ffast-math). */
static int inc_n_compute(const pf_kernel_call *c) {
  int64_t n = pf_attrs_get_int(c->attrs, "n", 128);
  double v = *(const double *)c->in[0].data;
  for (int64_t i = 0; i < n; i++) v += 1.0;
  *(double *)c->out[0].data = v;
  return 0;
}

static const pf_kernel_def kernels[] = {
    {.name = "bench.inc", .kind = PF_DEVICE_CPU, .n_in = 1, .n_out = 1, .shape = same_shape,
     .compute = inc_compute},
    {.name = "bench.inc_n", .kind = PF_DEVICE_CPU, .n_in = 1, .n_out = 1, .shape = same_shape,
     .compute = inc_n_compute},
};

/* ---- raw MPI (every rank) ------------------------------------------------------------------ */

/* Computations per second. Rank 0 decides when a repetition has run long
 * enough and says so with a broadcast every 256 computations. */
static double mpi_rate(int world) {
  double t[64];
  for (int r = -1; r < reps; r++) {
    double v = 0, t0, el;
    long n = 0;
    int more = 1;
    MPI_Barrier(MPI_COMM_WORLD);
    t0 = bench_now();
    while (more) {
      for (int i = 0; i < 256; i++) {
        double sum;
        MPI_Allreduce(&v, &sum, 1, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
        v = sum / world + 1.0;
      }
      n += 256;
      el = bench_now() - t0;
      more = el < (r < 0 ? 0.05 : REP_S);
      MPI_Bcast(&more, 1, MPI_INT, 0, MPI_COMM_WORLD);
    }
    if (v != (double)n) {
      fprintf(stderr, "dispatch: raw MPI result %g, expected %ld\n", v, n);
      MPI_Abort(MPI_COMM_WORLD, 1);
    }
    if (r >= 0) t[r] = (double)n / (bench_now() - t0);
  }
  return bench_median(t, reps);
}

/* ---- pathflow (rank 0) ------------------------------------------------------------------------ */

static pf_context *ctx;
static int world;

/* One computation on slice s: allreduce(mean) then +1. */
static pf_value_t computation(pf_graph *g, pf_slice_t s, pf_value_t v) {
  pf_value_t a, b;
  BENCH_OK(ctx, pf_graph_collective(g, &(pf_collective_desc){.kind = PF_ALLREDUCE, .slice = s,
                                                            .in = v, .op = PF_REDUCE_MEAN},
                                    &a, NULL));
  BENCH_OK(ctx, pf_graph_program(g, &(pf_program_desc){.kernel = "bench.inc", .slice = s,
                                                      .n_in = 1, .in = &a},
                                 &b, NULL));
  return b;
}

/* Kinds of executable: n chained computations, or the fused one. */
static pf_executable *build(int n, int fused) {
  pf_graph *g;
  pf_executable *exe;
  pf_spec spec = pf_spec_scalar(PF_F64);
  pf_slice_t s;
  pf_value_t v;
  BENCH_OK(ctx, pf_graph_create(ctx, &g));
  s = bench_slice_all(ctx, g, world);
  BENCH_OK(ctx, pf_graph_input(g, "x", &spec, s, pf_replicated(), &v));
  if (fused) {
    pf_attrs *a;
    pf_value_t w;
    BENCH_OK(ctx, pf_attrs_create(&a));
    BENCH_OK(ctx, pf_attrs_set_int(a, "n", n));
    BENCH_OK(ctx, pf_graph_program(g, &(pf_program_desc){.kernel = "bench.inc_n", .attrs = a,
                                                        .slice = s, .n_in = 1, .in = &v},
                                   &w, NULL));
    pf_attrs_destroy(a);
    BENCH_OK(ctx, pf_graph_collective(g, &(pf_collective_desc){.kind = PF_ALLREDUCE, .slice = s,
                                                              .in = w, .op = PF_REDUCE_MEAN},
                                      &v, NULL));
  } else {
    for (int i = 0; i < n; i++) v = computation(g, s, v);
  }
  BENCH_OK(ctx, pf_graph_output(g, "y", v));
  BENCH_OK(ctx, pf_compile(g, &exe));
  pf_graph_destroy(g);
  return exe;
}

static pf_buffer_t make_input(double x) {
  pf_graph *g;
  pf_executable *exe;
  pf_future *f;
  pf_tensor *t;
  pf_buffer_t b;
  pf_spec spec = pf_spec_scalar(PF_F64);
  pf_value_t v, y;
  pf_slice_t s;
  /* An identity program makes the value a step output, so that it can be
   * kept as a buffer on every device. */
  BENCH_OK(ctx, pf_graph_create(ctx, &g));
  s = bench_slice_all(ctx, g, world);
  BENCH_OK(ctx, pf_graph_input(g, "x", &spec, s, pf_replicated(), &v));
  BENCH_OK(ctx, pf_graph_program(g, &(pf_program_desc){.kernel = "identity", .slice = s,
                                                      .n_in = 1, .in = &v},
                                 &y, NULL));
  BENCH_OK(ctx, pf_graph_output(g, "y", y));
  BENCH_OK(ctx, pf_compile(g, &exe));
  pf_graph_destroy(g);
  BENCH_OK(ctx, pf_tensor_from(&spec, &x, sizeof x, &t));
  BENCH_OK(ctx, pf_execute(exe, 1, &(pf_feed){.name = "x", .tensor = t}, &f));
  BENCH_OK(ctx, pf_future_wait(f));
  BENCH_OK(ctx, pf_future_output(f, "y", &b));
  pf_future_destroy(f);
  pf_executable_destroy(exe);
  pf_tensor_destroy(t);
  return b;
}

static double fetch_value(pf_buffer_t b) {
  pf_tensor *t;
  double v;
  BENCH_OK(ctx, pf_buffer_fetch(ctx, b, &t));
  v = *(const double *)pf_tensor_cdata(t);
  pf_tensor_destroy(t);
  return v;
}

static void check(const char *what, double got, double want) {
  if (fabs(got - want) > 1e-9 * fmax(1.0, fabs(want))) {
    fprintf(stderr, "dispatch: %s: result %.17g, expected %.17g\n", what, got, want);
    MPI_Abort(MPI_COMM_WORLD, 1);
  }
}

/* OpByOp, sync: each execution consumes the previous one's output. */
static double opbyop_sync(void) {
  pf_executable *exe = build(1, 0);
  double t[64];
  for (int r = -1; r < reps; r++) {
    pf_buffer_t cur = make_input(0.0);
    double t0 = bench_now();
    long n = 0;
    do {
      pf_future *f;
      pf_buffer_t next;
      BENCH_OK(ctx, pf_execute(exe, 1, &(pf_feed){.name = "x", .buffer = cur}, &f));
      BENCH_OK(ctx, pf_future_wait(f));
      BENCH_OK(ctx, pf_future_output(f, "y", &next));
      pf_future_destroy(f);
      BENCH_OK(ctx, pf_buffer_release(ctx, cur));
      cur = next;
      n++;
    } while (bench_now() - t0 < (r < 0 ? 0.05 : REP_S));
    if (r >= 0) t[r] = (double)n / (bench_now() - t0);
    check("OpByOp sync", fetch_value(cur), (double)n);
    BENCH_OK(ctx, pf_buffer_release(ctx, cur));
  }
  pf_executable_destroy(exe);
  return bench_median(t, reps);
}

/* Executions of exe fed buffer x, up to `window` in flight, for about
 * REP_S seconds per repetition; returns executions per second. Checks the
 * last output against `want`. */
static double pipelined(pf_executable *exe, int window, double want, const char *what) {
  pf_buffer_t x = make_input(0.0);
  pf_future **ring = calloc((size_t)window, sizeof *ring);
  double t[64];
  for (int r = -1; r < reps; r++) {
    double t0 = bench_now(), limit = r < 0 ? 0.05 : REP_S;
    long started = 0, done = 0;
    for (;;) {
      int stop = bench_now() - t0 >= limit;
      pf_future **slot;
      if (!stop && started - done < window) {
        BENCH_OK(ctx, pf_execute(exe, 1, &(pf_feed){.name = "x", .buffer = x},
                                 &ring[started % window]));
        started++;
        continue;
      }
      if (done == started) break;
      slot = &ring[done % window]; /* the oldest execution in flight */
      if (pf_future_wait(*slot) != 0) {
        fprintf(stderr, "dispatch: %s: %s\n", what, pf_future_error(*slot));
        MPI_Abort(MPI_COMM_WORLD, 1);
      }
      if (done == started - 1) { /* the last one: check its value */
        pf_tensor *y;
        BENCH_OK(ctx, pf_future_fetch(*slot, "y", &y));
        check(what, *(const double *)pf_tensor_cdata(y), want);
        pf_tensor_destroy(y);
      }
      pf_future_destroy(*slot);
      *slot = NULL;
      done++;
    }
    if (r >= 0) t[r] = (double)done / (bench_now() - t0);
  }
  free(ring);
  BENCH_OK(ctx, pf_buffer_release(ctx, x));
  return bench_median(t, reps);
}

/* ---- main --------------------------------------------------------------------------------- */

static long parse_long(const char *s, const char *flag, long min, long max) {
  char *end;
  long v = strtol(s, &end, 10);
  if (*s == '\0' || *end != '\0' || v < min || v > max) {
    fprintf(stderr, "dispatch: %s wants an integer in [%ld, %ld], got \"%s\"\n", flag, min, max, s);
    exit(2);
  }
  return v;
}

/* A row of the table: rate, and its ratio to each raw loop measured. */
static void print_row(const char *name, double rate, double mpi) {
  printf("%-28s %16.0f %10.3f", name, rate, rate / mpi);
  if (raw_single > 0) printf("  %13.3f", rate / raw_single);
  printf("\n");
}

int main(int argc, char **argv) {
  double mpi;
  int opt;
  while ((opt = getopt(argc, argv, "r:c:w:k:B:Rh")) != -1) {
    switch (opt) {
      case 'r': reps = (int)parse_long(optarg, "-r", 1, 64); break;
      case 'c': chain = (int)parse_long(optarg, "-c", 1, 100000); break;
      case 'w': in_flight = (int)parse_long(optarg, "-w", 1, 64); break;
      case 'k': cases = optarg; break;
      case 'R': bench_raw_only = 1; break;
      case 'B': {
        char *end;
        raw_single = strtod(optarg, &end);
        if (*end != '\0' || !(raw_single > 0)) {
          fprintf(stderr, "dispatch: -B wants a rate > 0 (a -R job's), got \"%s\"\n", optarg);
          return 2;
        }
        break;
      }
      default:
        fprintf(stderr, "usage: mpirun -np N %s [-r REPS (5)] [-c CHAIN (128)] "
                        "[-w IN_FLIGHT (32)] [-k sync,async,chained,fused] [-R] [-B RAW_RATE]\n",
                argv[0]);
        return opt == 'h' ? 0 : 2;
    }
  }
  bench_mpi_init(&argc, &argv, "dispatch", 2, &world);
  mpi = mpi_rate(world);
  MPI_Barrier(MPI_COMM_WORLD);
  if (bench_raw_only) { /* the baseline alone, at MPI_THREAD_SINGLE (mpi_bench.h) */
    int rank;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    if (rank == 0)
      printf("raw MPI_Allreduce loop (MPI_THREAD_SINGLE), %d ranks: %.0f computations/s\n",
             world, mpi);
    MPI_Finalize();
    return 0;
  }

  if (pf_init(&argc, &argv,
              &(pf_init_options){.cpu_devices = 1, .kernels = kernels,
                                 .n_kernels = (int)(sizeof kernels / sizeof kernels[0])},
              &ctx) != 0)
    MPI_Abort(MPI_COMM_WORLD, 1);
  {
    double sync = 0, async = 0, chained = 0, fused = 0;
    pf_executable *one = build(1, 0), *ch = build(chain, 0), *fu = build(chain, 1);
    if (wanted("sync")) sync = opbyop_sync();
    if (wanted("async")) async = pipelined(one, in_flight, 1.0, "OpByOp async");
    if (wanted("chained")) chained = chain * pipelined(ch, in_flight, (double)chain, "Chained");
    if (wanted("fused")) fused = chain * pipelined(fu, in_flight, (double)chain, "Fused");
    printf("# dispatch: %d ranks, 1 device each; computation = scalar allreduce (mean) "
           "+ scalar add; median of %d repetitions\n", world, reps);
    printf("%-28s %16s %10s%s\n", "case", "computations_per_s", "of_raw",
           raw_single > 0 ? "  of_raw_single" : "");
    if (wanted("sync")) print_row("pathflow OpByOp (sync)", sync, mpi);
    if (wanted("async")) print_row("pathflow OpByOp (async)", async, mpi);
    if (wanted("chained")) print_row("pathflow Chained", chained, mpi);
    if (wanted("fused")) print_row("pathflow Fused", fused, mpi);
    print_row("raw MPI_Allreduce loop", mpi, mpi);
    if (raw_single > 0) print_row("raw loop, MPI_THREAD_SINGLE", raw_single, mpi);
    printf("#   of_raw: against the raw loop in this job (MPI_THREAD_SERIALIZED, as pathflow "
           "runs MPI)%s\n", raw_single > 0 ? "; of_raw_single: against the loop in a job of "
                                              "its own at MPI_THREAD_SINGLE (-B, from -R)" : "");
    printf("#   async, Chained, Fused: up to %d executions in flight; Chained and Fused: %d "
           "computations per execution\n", in_flight, chain);
    pf_executable_destroy(one);
    pf_executable_destroy(ch);
    pf_executable_destroy(fu);
  }
  pf_finalize(ctx);
  MPI_Finalize();
  return 0;
}
