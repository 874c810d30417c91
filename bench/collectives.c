/* collectives: the time of one collective across N ranks, one device each,
 * pathflow against raw MPI's blocking collectives, in one mpirun job.
 *
 * Four patterns, each a chain of K (-c, 16) dependent collectives in one
 * execution (so that dispatch, a few us per execution, is spread over K),
 * with up to 4 executions in flight; the same chain in a loop of raw MPI
 * calls on MPI_COMM_WORLD is the baseline:
 *   allreduce   max of a vector of B bytes (f32)      MPI_Allreduce
 *   broadcast   B bytes from rank 0                    MPI_Bcast
 *   all-to-all  B bytes to each rank (split(0) <-> split(1) in turn)
 *                                                      MPI_Alltoall
 *   ag+rs       allgather of B bytes per rank, then reduce-scatter (max)
 *               of the result: ZeRO's per-layer pair  MPI_Allgather +
 *                                                      MPI_Reduce_scatter_block
 *   agrs_cols   the same pair on a matrix of 8 rows split by columns (a
 *               tensor-parallel layout): every block strided, staged by
 *               pathflow; the same MPI calls on contiguous blocks
 * Every vector holds ones, so every result must be ones (checked).
 * Figures: us per collective (per pair for ag+rs), median of R (-r, 3)
 * repetitions of about 0.2 s, for B = 8 B, 1 KiB, 64 KiB, 1 MiB, 8 MiB.
 *
 * glibc's malloc is told to keep freed memory (no mmap per large block, no
 * trim): otherwise large figures depend on what ran before, on both
 * sides (Open MPI's reduce-scatter allocates a temporary per call, and
 * glibc's dynamic mmap threshold decided whether that cost 7 or 90 ms).
 * -M leaves malloc as programs get it, to see what fresh pages cost.
 *
 * Usage: mpirun -np N collectives [-r REPS] [-c CHAIN] [-M]
 *                                [-k allreduce,broadcast,alltoall,agrs,agrs_cols] */
#include <malloc.h>
#include <unistd.h>

#include "mpi_bench.h"

#define REP_S 0.2
#define WINDOW 4

static int reps = 3, chain = 16, world, rank;
static const char *cases = "allreduce,broadcast,alltoall,agrs,agrs_cols";
static pf_context *ctx;
static const size_t sizes[] = {8, 1024, 65536, 1 << 20, 8 << 20};
#define N_SIZES (sizeof sizes / sizeof *sizes)

enum { ALLREDUCE, BROADCAST, ALLTOALL, AGRS, AGRS_COLS, N_KINDS };
static const char *const names[N_KINDS] = {"allreduce", "broadcast", "alltoall", "agrs",
                                           "agrs_cols"};

/* A whole word of the -k list (agrs is not agrs_cols). */
static int wanted(int k) {
  size_t n = strlen(names[k]);
  for (const char *p = cases; (p = strstr(p, names[k])) != NULL; p += n)
    if ((p == cases || p[-1] == ',') && (p[n] == '\0' || p[n] == ',')) return 1;
  return 0;
}

/* ---- raw MPI (every rank) ---------------------------------------------------- */

static void raw_one(int kind, float *a, float *b, size_t m) {
  int n = (int)m;
  switch (kind) {
    case ALLREDUCE: MPI_Allreduce(a, b, n, MPI_FLOAT, MPI_MAX, MPI_COMM_WORLD); break;
    case BROADCAST: MPI_Bcast(a, n, MPI_FLOAT, 0, MPI_COMM_WORLD); break;
    case ALLTOALL: MPI_Alltoall(a, n, MPI_FLOAT, b, n, MPI_FLOAT, MPI_COMM_WORLD); break;
    default:
      MPI_Allgather(a, n, MPI_FLOAT, b, n, MPI_FLOAT, MPI_COMM_WORLD);
      MPI_Reduce_scatter_block(b, a, n, MPI_FLOAT, MPI_MAX, MPI_COMM_WORLD);
      break;
  }
}

/* Microseconds per collective: rank 0 decides when a repetition has run
 * long enough (a broadcast every `chain` collectives). */
static double raw_us(int kind, size_t bytes) {
  size_t m = bytes / sizeof(float), total = m * (size_t)world;
  float *a = malloc(total * sizeof *a), *b = malloc(total * sizeof *b);
  double t[64];
  if (a == NULL || b == NULL) MPI_Abort(MPI_COMM_WORLD, 1);
  for (size_t i = 0; i < total; i++) a[i] = b[i] = 1.0f;
  for (int r = -1; r < reps; r++) {
    long n = 0;
    int more = 1;
    double t0;
    MPI_Barrier(MPI_COMM_WORLD);
    t0 = bench_now();
    while (more) {
      for (int i = 0; i < chain; i++) raw_one(kind, a, b, m);
      n += chain;
      more = bench_now() - t0 < (r < 0 ? 0.1 : REP_S);
      MPI_Bcast(&more, 1, MPI_INT, 0, MPI_COMM_WORLD);
    }
    if (r >= 0) t[r] = (bench_now() - t0) * 1e6 / (double)n;
  }
  free(a);
  free(b);
  return bench_median(t, reps);
}

/* ---- pathflow (rank 0) ----------------------------------------------------------- */

/* The value each pattern starts from, and its sharding. */
static pf_spec input_spec(int kind, size_t m, pf_sharding *sh) {
  *sh = pf_replicated();
  if (kind == ALLTOALL) {
    *sh = pf_split(0);
    return pf_spec_2d(PF_F32, world, (int64_t)(m * (size_t)world));
  }
  if (kind == AGRS) {
    *sh = pf_split(0);
    return pf_spec_1d(PF_F32, (int64_t)(m * (size_t)world));
  }
  if (kind == AGRS_COLS) { /* 8 rows (2 for the smallest), split by columns: strided blocks */
    int64_t rows = m >= 8 ? 8 : (int64_t)m;
    *sh = pf_split(1);
    return pf_spec_2d(PF_F32, rows, (int64_t)(m / (size_t)rows * (size_t)world));
  }
  return pf_spec_1d(PF_F32, (int64_t)m);
}

static pf_executable *build(int kind, size_t m, int length) {
  pf_graph *g;
  pf_executable *exe;
  pf_sharding sh;
  pf_spec spec = input_spec(kind, m, &sh);
  pf_slice_t s;
  pf_value_t v;
  BENCH_OK(ctx, pf_graph_create(ctx, &g));
  s = bench_slice_all(ctx, g, world);
  BENCH_OK(ctx, pf_graph_input(g, "x", &spec, s, sh, &v));
  if (length == 0) {
    /* The identity, to make the input a buffer on every device. */
    BENCH_OK(ctx, pf_graph_program(g, &(pf_program_desc){.kernel = "identity", .slice = s,
                                                        .n_in = 1, .in = &v},
                                   &v, NULL));
  }
  for (int i = 0; i < length; i++) {
    pf_collective_desc d = {.slice = s, .in = v, .op = PF_REDUCE_MAX};
    switch (kind) {
      case ALLREDUCE: d.kind = PF_ALLREDUCE; break;
      case BROADCAST: d.kind = PF_BROADCAST; break;
      case ALLTOALL:
        d.kind = PF_ALL_TO_ALL;
        d.axis = i % 2 == 0 ? 1 : 0;
        break;
      default:
        d.kind = PF_ALLGATHER;
        d.axis = kind == AGRS_COLS ? 1 : 0;
        break;
    }
    BENCH_OK(ctx, pf_graph_collective(g, &d, &v, NULL));
    if (kind == AGRS || kind == AGRS_COLS) {
      d.kind = PF_REDUCE_SCATTER;
      d.in = v;
      BENCH_OK(ctx, pf_graph_collective(g, &d, &v, NULL));
    }
  }
  BENCH_OK(ctx, pf_graph_output(g, "y", v));
  BENCH_OK(ctx, pf_compile(g, &exe));
  pf_graph_destroy(g);
  return exe;
}

static void check_ones(const char *what, pf_tensor *t) {
  const float *p = pf_tensor_cdata(t);
  size_t n = pf_tensor_nbytes(t) / sizeof *p;
  for (size_t i = 0; i < n; i++)
    if (p[i] != 1.0f) {
      fprintf(stderr, "collectives: %s: element %zu is %g, not 1\n", what, i, (double)p[i]);
      MPI_Abort(MPI_COMM_WORLD, 1);
    }
}

static double pathflow_us(int kind, size_t bytes) {
  size_t m = bytes / sizeof(float);
  pf_sharding sh;
  pf_spec spec = input_spec(kind, m, &sh);
  pf_executable *ident = build(kind, m, 0), *exe = build(kind, m, chain);
  pf_tensor *ones;
  pf_future *f, *ring[WINDOW];
  pf_buffer_t x;
  double t[64];
  BENCH_OK(ctx, pf_tensor_create(&spec, &ones));
  for (size_t i = 0; i < pf_tensor_nbytes(ones) / sizeof(float); i++)
    ((float *)pf_tensor_data(ones))[i] = 1.0f;
  BENCH_OK(ctx, pf_execute(ident, 1, &(pf_feed){.name = "x", .tensor = ones}, &f));
  BENCH_OK(ctx, pf_future_wait(f));
  BENCH_OK(ctx, pf_future_output(f, "y", &x));
  pf_future_destroy(f);
  for (int r = -1; r < reps; r++) {
    double t0 = bench_now(), limit = r < 0 ? 0.1 : REP_S;
    long started = 0, done = 0;
    for (;;) {
      if (bench_now() - t0 < limit && started - done < WINDOW) {
        BENCH_OK(ctx, pf_execute(exe, 1, &(pf_feed){.name = "x", .buffer = x},
                                 &ring[started % WINDOW]));
        started++;
        continue;
      }
      if (done == started) break;
      BENCH_OK(ctx, pf_future_wait(ring[done % WINDOW]));
      if (done == started - 1) {
        pf_tensor *y;
        BENCH_OK(ctx, pf_future_fetch(ring[done % WINDOW], "y", &y));
        check_ones(names[kind], y);
        pf_tensor_destroy(y);
      }
      pf_future_destroy(ring[done % WINDOW]);
      done++;
    }
    if (r >= 0) t[r] = (bench_now() - t0) * 1e6 / (double)(done * chain);
  }
  BENCH_OK(ctx, pf_buffer_release(ctx, x));
  pf_tensor_destroy(ones);
  pf_executable_destroy(ident);
  pf_executable_destroy(exe);
  return bench_median(t, reps);
}

static long parse_long(const char *s, const char *flag, long min, long max) {
  char *end;
  long v = strtol(s, &end, 10);
  if (*s == '\0' || *end != '\0' || v < min || v > max) {
    fprintf(stderr, "collectives: %s wants an integer in [%ld, %ld], got \"%s\"\n", flag, min,
            max, s);
    exit(2);
  }
  return v;
}

int main(int argc, char **argv) {
  double raw[N_KINDS][N_SIZES] = {{0}};
  int opt;
  int keep_memory = 1;
  while ((opt = getopt(argc, argv, "r:c:k:MRh")) != -1) {
    switch (opt) {
      case 'M': keep_memory = 0; break;
      case 'R': bench_raw_only = 1; break;
      case 'r': reps = (int)parse_long(optarg, "-r", 1, 64); break;
      case 'c': chain = (int)parse_long(optarg, "-c", 1, 1000); break;
      case 'k': cases = optarg; break;
      default:
        fprintf(stderr, "usage: mpirun -np N %s [-r REPS (3)] [-c CHAIN (16)] "
                        "[-k allreduce,broadcast,alltoall,agrs,agrs_cols] [-M] [-R]\n", argv[0]);
        return opt == 'h' ? 0 : 2;
    }
  }
  if (keep_memory) {
    mallopt(M_MMAP_THRESHOLD, 1 << 30);
    mallopt(M_TRIM_THRESHOLD, 1 << 30);
  }
  rank = bench_mpi_init(&argc, &argv, "collectives", 2, &world);
  for (int k = 0; k < N_KINDS; k++)
    for (size_t s = 0; s < N_SIZES && wanted(k); s++) raw[k][s] = raw_us(k, sizes[s]);
  MPI_Barrier(MPI_COMM_WORLD);
  if (bench_raw_only) { /* the baseline alone, at MPI_THREAD_SINGLE (mpi_bench.h) */
    if (rank == 0) {
      printf("# collectives: %d ranks, MPI alone (MPI_THREAD_SINGLE); us per collective, "
             "median of %d repetitions\n", world, reps);
      printf("%-10s %10s %12s\n", "pattern", "bytes", "raw_mpi_us");
      for (int k = 0; k < N_KINDS; k++)
        for (size_t s = 0; s < N_SIZES && wanted(k); s++)
          printf("%-10s %10zu %12.2f\n", names[k], sizes[s], raw[k][s]);
    }
    MPI_Finalize();
    return 0;
  }
  if (pf_init(&argc, &argv, &(pf_init_options){.cpu_devices = 1}, &ctx) != 0)
    MPI_Abort(MPI_COMM_WORLD, 1);
  printf("# collectives: %d ranks, 1 device each; us per collective (ag+rs: per pair), "
         "chains of %d, median of %d repetitions\n", world, chain, reps);
  printf("%-10s %10s %12s %12s %8s\n", "pattern", "bytes", "pathflow_us", "raw_mpi_us",
         "ratio");
  for (int k = 0; k < N_KINDS; k++)
    for (size_t s = 0; s < N_SIZES && wanted(k); s++) {
      double pf = pathflow_us(k, sizes[s]);
      printf("%-10s %10zu %12.2f %12.2f %8.2f\n", names[k], sizes[s], pf, raw[k][s],
             pf / raw[k][s]);
      fflush(stdout);
    }
  pf_finalize(ctx);
  MPI_Finalize();
  return 0;
}
