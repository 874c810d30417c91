/* granularity: Task Bench's dependency patterns across ranks, pathflow
 * against a hand-written MPI version, in one mpirun job (one device per
 * rank).
 *
 * The task graph: width W = number of ranks (devices), T steps (-t, default
 * 1000). Task (t, d) runs on device d and depends on tasks of step t-1 given
 * by the pattern (-p, default stencil; -p all runs each in turn):
 *   stencil     d-1, d, d+1 (Task Bench's stencil_1d)
 *   nearest     d-2 .. d+2 (Task Bench's nearest, radix 5)
 *   fft         d and d xor 2^(t mod log2 W) (a butterfly; W a power of 2)
 *   all_to_all  every d'
 *   tree        d, and d + 2^l when d is a multiple of 2^(l+1), l = t mod
 *               log2 W (the levels of a reduction tree, over and over)
 * (those that exist); each task outputs a small
 * tensor (u8[16], -b) and its kernel busy-waits for a given wall time
 * (no sleep, no yield). Kernel lengths: 1 ms down to 1 us in a 1-2-5
 * series (-l LONGEST_US, -s SHORTEST_US; down to 0.1 us, as -s 0.1).
 *
 *   pathflow  one graph per kernel length (T x W programs "bench.busy", the
 *             length an attribute), compiled once, executed once to warm up
 *             and then R times (-r, default 3), each pf_execute +
 *             pf_future_wait. The median is kept.
 *   raw MPI   the same stencil by hand: at each step t > 0 every rank posts
 *             MPI_Irecv from its neighbours and MPI_Isend of its step-(t-1)
 *             output to them, MPI_Waitall, then busy-waits. A barrier before
 *             and after; R runs after a warm-up, the median kept.
 *
 * In one process (-d D, run without mpirun or with -np 1): width D devices
 * of one rank, no MPI on any path, against
 *   threads   the pattern by hand with D pinned threads: task (t, d) spins
 *             until each task it reads has published its step (an atomic
 *             release/acquire counter per device), reads their outputs,
 *             busy-waits and publishes. The cheapest hand-off there is.
 *
 * efficiency = (kernel length * tasks) / (wall * devices), tasks = T * W.
 * METG(50%): the smallest kernel length whose efficiency is >= 50%,
 * interpolated linearly in log(length) between it and the next shorter
 * length measured (whose efficiency is < 50%); Task Bench itself
 * reports the task granularity there, wall * devices / tasks = length /
 * efficiency, i.e. twice that length: printed as well.
 *
 * -m mirrors the pattern: point d reads what point W-1-d reads, mirrored
 * (the tree's side that never waits is then rank 0, the controller, not
 * rank W-1; the other patterns are symmetric).
 *
 * Usage: mpirun -np W granularity [-p PATTERN|all] [-t STEPS] [-r REPS]
 *                                 [-b BYTES] [-l LONGEST_US] [-s SHORTEST_US]
 *                                 [-m]
 *        granularity -d D [...]   (one process, D devices)
 */
#define _GNU_SOURCE /* pthread_setaffinity_np */
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <unistd.h>

#include "mpi_bench.h"

#define MAX_LENGTHS 32
#define MAX_WIDTH 64

/* world: the width, W ranks with one device each, or (-d) D devices of one
 * process. */
static int steps = 1000, reps = 3, edge_bytes = 16, world, in_process;
static int n_lengths;
static double lengths_us[MAX_LENGTHS];

/* ---- dependency patterns ------------------------------------------------------------------ */

enum { STENCIL, NEAREST, FFT, ALL_TO_ALL, TREE, N_PATTERNS };
static const char *const pattern_names[N_PATTERNS] = {"stencil", "nearest", "fft",
                                                      "all_to_all", "tree"};
static int pattern = STENCIL;

static int log2_width(void) {
  int l = 0;
  while ((1 << (l + 1)) <= world) l++;
  return l > 0 ? l : 1;
}

/* The points of step t-1 that task (t, d) reads in the pattern as Task
 * Bench defines it, in increasing order. */
static int pattern_deps(int t, int d, int *out) {
  int n = 0, l = (t - 1) % log2_width();
  switch (pattern) {
    case STENCIL:
    case NEAREST: {
      int r = pattern == STENCIL ? 1 : 2;
      for (int k = d - r; k <= d + r; k++)
        if (k >= 0 && k < world) out[n++] = k;
      break;
    }
    case FFT: {
      int p = d ^ (1 << l);
      if (p < d && p < world) out[n++] = p;
      out[n++] = d;
      if (p > d && p < world) out[n++] = p;
      break;
    }
    case ALL_TO_ALL:
      for (int k = 0; k < world; k++) out[n++] = k;
      break;
    default:
      out[n++] = d;
      if (d % (2 << l) == 0 && d + (1 << l) < world) out[n++] = d + (1 << l);
      break;
  }
  return n;
}

/* -m: the pattern mirrored, point d playing point W-1-d (a tree's free
 * running side on rank 0 instead of rank W-1). */
static int mirrored;

/* The points of step t-1 that task (t, d) reads, in increasing order. */
static int deps(int t, int d, int *out) {
  int in[MAX_WIDTH], n;
  if (!mirrored) return pattern_deps(t, d, out);
  n = pattern_deps(t, world - 1 - d, in);
  for (int i = 0; i < n; i++) out[i] = world - 1 - in[n - 1 - i];
  return n;
}

/* Who reads task (t-1, d): the d' whose deps at step t include d. */
static int readers(int t, int d, int *out) {
  int n = 0, dd[MAX_WIDTH];
  for (int k = 0; k < world; k++) {
    int m = deps(t, k, dd);
    for (int i = 0; i < m; i++)
      if (dd[i] == d) out[n++] = k;
  }
  return n;
}

/* ---- kernel ----------------------------------------------------------------------------- */

static int busy_shape(const pf_attrs *attrs, int n_in, const pf_spec *in, int n_out,
                      pf_spec *out, pf_diag *diag) {
  int64_t b = pf_attrs_get_int(attrs, "bytes", 16);
  if (b < 1) return pf_diag_error(diag, PF_EINVAL, "bench.busy: \"bytes\" must be >= 1");
  out[0] = pf_spec_1d(PF_U8, b);
  return 0;
}

/* Busy-waits "ns" nanoseconds; the output is the xor of the inputs' first
 * bytes plus one (the value itself does not matter, only that it is
 * written and depends on the inputs). */
static int busy_compute(const pf_kernel_call *c) {
  uint8_t v = 1;
  for (int i = 0; i < c->n_in; i++) v ^= *(const uint8_t *)c->in[i].data;
  bench_busy_wait_ns((uint64_t)pf_attrs_get_int(c->attrs, "ns", 0));
  memset(c->out[0].data, v, pf_spec_nbytes(&c->out[0].spec));
  return 0;
}

static const pf_kernel_def kernels[] = {
    {.name = "bench.busy", .kind = PF_DEVICE_CPU, .n_in = PF_VARIADIC, .n_out = 1,
     .shape = busy_shape, .compute = busy_compute},
};

/* ---- raw MPI (every rank) ---------------------------------------------------------------- */

/* The pattern by hand: at each step t > 0 every rank posts an MPI_Irecv
 * from each task it reads and an MPI_Isend of its step-(t-1) output to each
 * task that reads it (itself excluded), MPI_Waitall, then busy-waits. The
 * peer lists are computed before the clock starts. */
static double mpi_pattern(int rank, uint64_t ns) {
  static uint8_t out[2][4096], in[MAX_WIDTH][4096];
  int (*from)[MAX_WIDTH] = calloc((size_t)steps, sizeof *from);
  int (*to)[MAX_WIDTH] = calloc((size_t)steps, sizeof *to);
  int *n_from = calloc((size_t)steps, sizeof *n_from), *n_to = calloc((size_t)steps, sizeof *n_to);
  double t[64];
  for (int s = 1; s < steps; s++) {
    int d[MAX_WIDTH], m = deps(s, rank, d);
    for (int i = 0; i < m; i++)
      if (d[i] != rank) from[s][n_from[s]++] = d[i];
    m = readers(s, rank, d);
    for (int i = 0; i < m; i++)
      if (d[i] != rank) to[s][n_to[s]++] = d[i];
  }
  for (int r = -1; r < reps; r++) {
    double t0;
    MPI_Barrier(MPI_COMM_WORLD);
    t0 = bench_now();
    for (int s = 0; s < steps; s++) {
      uint8_t v = 1;
      if (s > 0) {
        MPI_Request req[2 * MAX_WIDTH];
        int n = 0;
        for (int k = 0; k < n_from[s]; k++)
          MPI_Irecv(in[k], edge_bytes, MPI_BYTE, from[s][k], 0, MPI_COMM_WORLD, &req[n++]);
        for (int k = 0; k < n_to[s]; k++)
          MPI_Isend(out[(s - 1) % 2], edge_bytes, MPI_BYTE, to[s][k], 0, MPI_COMM_WORLD,
                    &req[n++]);
        MPI_Waitall(n, req, MPI_STATUSES_IGNORE);
        v ^= out[(s - 1) % 2][0];
        for (int k = 0; k < n_from[s]; k++) v ^= in[k][0];
      }
      bench_busy_wait_ns(ns);
      memset(out[s % 2], v, (size_t)edge_bytes);
    }
    MPI_Barrier(MPI_COMM_WORLD);
    if (r >= 0) t[r] = bench_now() - t0;
  }
  free(from);
  free(to);
  free(n_from);
  free(n_to);
  return bench_median(t, reps);
}

/* ---- hand-written threads (-d: one process) ---------------------------------------------- */

/* One published step counter per device, each on its own cache line. */
static struct {
  _Atomic int done; /* the last step whose output is written, -1 before */
  char pad[64 - sizeof(int)];
} published[MAX_WIDTH];
static uint8_t *thread_out; /* [steps][world][edge_bytes]: no buffer reuse, no WAR waits */
static pthread_barrier_t thread_start;

struct thread_arg {
  int d;
  uint64_t ns;
  int (*from)[MAX_WIDTH]; /* [steps][...]: the tasks each step reads */
  int *n_from;
};

static void *thread_main(void *p) {
  const struct thread_arg *a = p;
  int d = a->d;
  pthread_barrier_wait(&thread_start);
  for (int s = 0; s < steps; s++) {
    uint8_t v = 1;
    for (int k = 0; k < a->n_from[s]; k++) {
      int from = a->from[s][k];
      while (atomic_load_explicit(&published[from].done, memory_order_acquire) < s - 1) {
      }
      v ^= thread_out[((size_t)(s - 1) * (size_t)world + (size_t)from) * (size_t)edge_bytes];
    }
    bench_busy_wait_ns(a->ns);
    memset(thread_out + ((size_t)s * (size_t)world + (size_t)d) * (size_t)edge_bytes, v,
           (size_t)edge_bytes);
    atomic_store_explicit(&published[d].done, s, memory_order_release);
  }
  return NULL;
}

static double threads_pattern(uint64_t ns) {
  /* Per device, per step, the devices whose step-(s-1) output it reads:
   * computed before the clock starts. */
  int (*from)[MAX_WIDTH] = calloc((size_t)world * (size_t)steps, sizeof *from);
  int *n_from = calloc((size_t)world * (size_t)steps, sizeof *n_from);
  long cores = sysconf(_SC_NPROCESSORS_ONLN);
  struct thread_arg args[MAX_WIDTH];
  double t[64];
  thread_out = calloc((size_t)steps * (size_t)world, (size_t)edge_bytes);
  if (!from || !n_from || !thread_out) {
    fprintf(stderr, "granularity: out of memory\n");
    exit(1);
  }
  for (int d = 0; d < world; d++) {
    size_t base = (size_t)d * (size_t)steps;
    for (int s = 1; s < steps; s++) n_from[base + (size_t)s] = deps(s, d, from[base + (size_t)s]);
    args[d] = (struct thread_arg){.d = d, .ns = ns, .from = from + base, .n_from = n_from + base};
  }
  for (int r = -1; r < reps; r++) {
    pthread_t th[MAX_WIDTH];
    double t0;
    for (int d = 0; d < world; d++) atomic_store(&published[d].done, -1);
    pthread_barrier_init(&thread_start, NULL, (unsigned)world + 1);
    for (int d = 0; d < world; d++) {
      if (pthread_create(&th[d], NULL, thread_main, &args[d]) != 0) {
        fprintf(stderr, "granularity: pthread_create failed\n");
        exit(1);
      }
      if (world <= cores) { /* pinned, as pathflow pins its workers */
        cpu_set_t set;
        CPU_ZERO(&set);
        CPU_SET(d, &set);
        pthread_setaffinity_np(th[d], sizeof set, &set);
      }
    }
    t0 = bench_now();
    pthread_barrier_wait(&thread_start);
    for (int d = 0; d < world; d++) pthread_join(th[d], NULL);
    if (r >= 0) t[r] = bench_now() - t0;
    pthread_barrier_destroy(&thread_start);
  }
  free(from);
  free(n_from);
  free(thread_out);
  return bench_median(t, reps);
}

/* ---- pathflow (rank 0) ---------------------------------------------------------------------- */

static pf_context *ctx;

static double pf_pattern(uint64_t ns, double *ms_build, double *ms_compile) {
  pf_graph *g;
  pf_executable *exe;
  pf_attrs *a;
  pf_slice_t *slices = calloc((size_t)world, sizeof *slices);
  pf_value_t *prev = calloc((size_t)world, sizeof *prev), *cur = calloc((size_t)world, sizeof *cur);
  double t[64], t0 = bench_now();
  BENCH_OK(ctx, pf_graph_create(ctx, &g));
  BENCH_OK(ctx, pf_attrs_create(&a));
  BENCH_OK(ctx, pf_attrs_set_int(a, "ns", (int64_t)ns));
  BENCH_OK(ctx, pf_attrs_set_int(a, "bytes", edge_bytes));
  for (int d = 0; d < world; d++) slices[d] = bench_slice1(ctx, g, d);
  for (int s = 0; s < steps; s++) {
    for (int d = 0; d < world; d++) {
      pf_value_t in[MAX_WIDTH];
      int dd[MAX_WIDTH], n = s > 0 ? deps(s, d, dd) : 0;
      for (int i = 0; i < n; i++) in[i] = prev[dd[i]];
      BENCH_OK(ctx, pf_graph_program(g, &(pf_program_desc){.kernel = "bench.busy", .attrs = a,
                                                          .slice = slices[d], .n_in = n,
                                                          .in = in},
                                     &cur[d], NULL));
    }
    memcpy(prev, cur, (size_t)world * sizeof *prev);
  }
  for (int d = 0; d < world; d++) {
    char name[32];
    snprintf(name, sizeof name, "out%d", d);
    BENCH_OK(ctx, pf_graph_output(g, name, prev[d]));
  }
  pf_attrs_destroy(a);
  *ms_build = 1e3 * (bench_now() - t0);
  t0 = bench_now();
  BENCH_OK(ctx, pf_compile(g, &exe));
  *ms_compile = 1e3 * (bench_now() - t0);
  pf_graph_destroy(g);
  for (int r = -1; r < reps; r++) {
    t0 = bench_now();
    bench_run(ctx, exe, 0, NULL);
    if (r >= 0) t[r] = bench_now() - t0;
  }
  pf_executable_destroy(exe);
  free(slices);
  free(prev);
  free(cur);
  return bench_median(t, reps);
}

/* ---- METG ------------------------------------------------------------------------------------ */

/* Lengths are in decreasing order. The smallest length whose efficiency is
 * >= 50%, interpolated in log(length) with the next shorter one (whose
 * efficiency is < 50%); *bound is 0 for such a crossing, -1 when the
 * shortest length already reaches 50% (METG below it), +1 when no length
 * does (METG above the longest). */
static double metg(const double *eff, int *bound) {
  int i = n_lengths - 1;
  while (i >= 0 && eff[i] < 0.5) i--;
  if (i < 0) {
    *bound = 1;
    return lengths_us[0];
  }
  if (i == n_lengths - 1) {
    *bound = -1;
    return lengths_us[i];
  }
  *bound = 0;
  {
    double l0 = log(lengths_us[i]), l1 = log(lengths_us[i + 1]);
    double e0 = eff[i], e1 = eff[i + 1];
    return exp(l0 + (0.5 - e0) * (l1 - l0) / (e1 - e0));
  }
}

static void print_metg(const char *who, const double *eff) {
  int bound;
  double m = metg(eff, &bound);
  if (bound < 0)
    printf("# METG(50%%) %-8s < %g us (every length measured reaches 50%%)\n", who, m);
  else if (bound > 0)
    printf("# METG(50%%) %-8s > %g us (no length measured reaches 50%%)\n", who, m);
  else
    printf("# METG(50%%) %-8s = %.2f us kernel length (Task Bench granularity, "
           "length / 0.5: %.2f us)\n", who, m, 2 * m);
}

/* ---- main ------------------------------------------------------------------------------------- */

static double parse_us(const char *s, const char *flag) {
  char *end;
  double v = strtod(s, &end);
  if (*s == '\0' || *end != '\0' || !(v >= 0.1 && v <= 1e7)) {
    fprintf(stderr, "granularity: %s wants microseconds in [0.1, 10000000], got \"%s\"\n", flag,
            s);
    exit(2);
  }
  return v;
}

static long parse_long(const char *s, const char *flag, long min, long max) {
  char *end;
  long v = strtol(s, &end, 10);
  if (*s == '\0' || *end != '\0' || v < min || v > max) {
    fprintf(stderr, "granularity: %s wants an integer in [%ld, %ld], got \"%s\"\n", flag, min,
            max, s);
    exit(2);
  }
  return v;
}

/* -R: the baseline's table alone (its job ran at MPI_THREAD_SINGLE, as a
 * hand-written MPI program does; see mpi_bench.h). */
static void print_raw_only(int first, int last, double (*wall)[MAX_LENGTHS],
                           double (*eff)[MAX_LENGTHS]) {
  const char *base = in_process ? "threads" : "mpi";
  for (int p = first; p <= last; p++) {
    printf("# granularity: %s%s, width %d, %d steps, %d-byte edges, median of %d; baseline "
           "alone: %s\n", pattern_names[p], mirrored ? " mirrored" : "", world, steps,
           edge_bytes, reps,
           in_process ? "hand-written pinned threads" : "hand-written MPI, MPI_THREAD_SINGLE");
    printf("%10s %9s_eff %9s_wall_ms\n", "kernel_us", base, base);
    for (int i = 0; i < n_lengths; i++)
      printf("%10g %10.3f %12.2f\n", lengths_us[i], eff[p][i], 1e3 * wall[p][i]);
    print_metg(in_process ? "threads" : "MPI", eff[p]);
  }
}

int main(int argc, char **argv) {
  static double wall_mpi[N_PATTERNS][MAX_LENGTHS], eff_mpi[N_PATTERNS][MAX_LENGTHS];
  double eff_pf[MAX_LENGTHS];
  double longest = 1000, shortest = 1;
  int rank, opt, first = STENCIL, last = STENCIL;
  while ((opt = getopt(argc, argv, "p:t:r:b:l:s:d:mRh")) != -1) {
    switch (opt) {
      case 'p':
        if (strcmp(optarg, "all") == 0) {
          first = 0;
          last = N_PATTERNS - 1;
          break;
        }
        for (first = 0; first < N_PATTERNS && strcmp(optarg, pattern_names[first]); first++) {
        }
        if (first == N_PATTERNS) {
          fprintf(stderr, "granularity: -p wants stencil, nearest, fft, all_to_all, tree or "
                          "all, got \"%s\"\n", optarg);
          return 2;
        }
        last = first;
        break;
      case 't': steps = (int)parse_long(optarg, "-t", 2, 1000000); break;
      case 'r': reps = (int)parse_long(optarg, "-r", 1, 64); break;
      case 'b': edge_bytes = (int)parse_long(optarg, "-b", 1, 4096); break;
      case 'l': longest = parse_us(optarg, "-l"); break;
      case 's': shortest = parse_us(optarg, "-s"); break;
      case 'd': in_process = (int)parse_long(optarg, "-d", 2, MAX_WIDTH); break;
      case 'm': mirrored = 1; break;
      case 'R': bench_raw_only = 1; break;
      default:
        fprintf(stderr, "usage: mpirun -np W %s [-p stencil|nearest|fft|all_to_all|tree|all] "
                        "[-t STEPS (1000)] [-r REPS (3)] [-b EDGE_BYTES (16)] "
                        "[-l LONGEST_US (1000)] [-s SHORTEST_US (1)] [-m] [-R]\n"
                        "       %s -d DEVICES [...] (one process, no MPI on any path)\n",
                argv[0], argv[0]);
        return opt == 'h' ? 0 : 2;
    }
  }
  /* 1-2-5 series from longest down to shortest. */
  for (double dec = pow(10, floor(log10(longest))); dec >= 0.099 && n_lengths < MAX_LENGTHS;
       dec /= 10) {
    static const int mant[] = {5, 2, 1};
    for (int k = 0; k < 3 && n_lengths < MAX_LENGTHS; k++) {
      double l = mant[k] * dec;
      if (l <= longest * 1.0001 && l >= shortest * 0.9999) lengths_us[n_lengths++] = l;
    }
  }
  if (n_lengths == 0) {
    fprintf(stderr, "granularity: no kernel length between %g and %g us\n", shortest, longest);
    return 2;
  }

  rank = bench_mpi_init(&argc, &argv, "granularity", in_process ? 1 : 2, &world);
  if (in_process && world != 1) {
    if (rank == 0) fprintf(stderr, "granularity: -d runs in one process (mpirun -np 1 or none)\n");
    MPI_Abort(MPI_COMM_WORLD, 2);
  }
  if (in_process) world = in_process;
  if (world > MAX_WIDTH) {
    if (rank == 0) fprintf(stderr, "granularity: at most %d ranks\n", MAX_WIDTH);
    MPI_Abort(MPI_COMM_WORLD, 2);
  }
  /* Every rank runs the MPI half before pf_init: afterwards ranks > 0 serve
   * inside it. */
  for (pattern = first; pattern <= last; pattern++)
    for (int i = 0; i < n_lengths; i++) {
      wall_mpi[pattern][i] = in_process ? threads_pattern((uint64_t)(lengths_us[i] * 1e3))
                                        : mpi_pattern(rank, (uint64_t)(lengths_us[i] * 1e3));
      eff_mpi[pattern][i] = lengths_us[i] * 1e-6 * steps / wall_mpi[pattern][i];
    }
  MPI_Barrier(MPI_COMM_WORLD);
  if (bench_raw_only) {
    if (rank == 0) print_raw_only(first, last, wall_mpi, eff_mpi);
    MPI_Finalize();
    return 0;
  }

  if (pf_init(&argc, &argv,
              &(pf_init_options){.cpu_devices = in_process ? in_process : 1, .kernels = kernels,
                                 .n_kernels = (int)(sizeof kernels / sizeof kernels[0])},
              &ctx) != 0)
    MPI_Abort(MPI_COMM_WORLD, 1);
  for (pattern = first; pattern <= last; pattern++) {
    double build = 0, compile = 0;
    const char *base = in_process ? "threads" : "mpi";
    printf("# granularity: %s%s, width %d (%s), %d steps, %d-byte edges, median of %d "
           "executions; baseline: %s\n", pattern_names[pattern], mirrored ? " mirrored" : "",
           world, in_process ? "devices of one process" : "one device per rank", steps,
           edge_bytes, reps, in_process ? "hand-written pinned threads" : "hand-written MPI");
    printf("%10s %10s %9s_eff %12s %9s_wall_ms\n", "kernel_us", "pf_eff", base, "pf_wall_ms",
           base);
    fflush(stdout);
    for (int i = 0; i < n_lengths; i++) {
      double wall = pf_pattern((uint64_t)(lengths_us[i] * 1e3), &build, &compile);
      /* (length * T * W) / (wall * W) */
      eff_pf[i] = lengths_us[i] * 1e-6 * steps / wall;
      printf("%10g %10.3f %10.3f %12.2f %12.2f\n", lengths_us[i], eff_pf[i],
             eff_mpi[pattern][i], 1e3 * wall, 1e3 * wall_mpi[pattern][i]);
      fflush(stdout);
    }
    print_metg("pathflow", eff_pf);
    print_metg(in_process ? "threads" : "MPI", eff_mpi[pattern]);
    printf("# graph of %d programs: build %.0f ms, pf_compile %.0f ms (last length; not timed "
           "above)\n", steps * world, build, compile);
  }
  pf_finalize(ctx);
  MPI_Finalize();
  return 0;
}
