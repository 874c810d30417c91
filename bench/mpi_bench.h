/* Helpers shared by the benchmarks that run under mpirun (transfer,
 * dispatch, granularity).
 *
 * Each of them runs a raw-MPI baseline and the same pattern through
 * pathflow in one job. Under mpirun only rank 0 returns from pf_init (the
 * other ranks serve inside it), so the baseline must come first:
 *
 *   bench_mpi_init()   MPI_Init_thread(MPI_THREAD_SERIALIZED) on every rank
 *   ... raw MPI measurements, every rank ...
 *   pf_init()          sees MPI initialized and reuses it; ranks > 0 serve
 *                      and exit inside it when rank 0 calls pf_finalize
 *   ... pathflow measurements, rank 0 only ...
 *   pf_finalize(); MPI_Finalize()   rank 0 (pathflow did not initialize MPI,
 *                      so it leaves MPI_Finalize to whoever did)
 */
#ifndef PF_BENCH_MPI_BENCH_H
#define PF_BENCH_MPI_BENCH_H

#include <mpi.h>
#include <pathflow.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

static inline double bench_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static inline uint64_t bench_now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Spins (no sleep, no yield) until `ns` nanoseconds of wall time have
 * passed: what Task Bench's compute-bound kernels amount to. */
static inline void bench_busy_wait_ns(uint64_t ns) {
  uint64_t t0 = bench_now_ns();
  while (bench_now_ns() - t0 < ns) {
  }
}

static int bench_cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

/* A raw-MPI buffer of n bytes, on transparent huge pages when it spans
 * some (2 MiB-aligned, MADV_HUGEPAGE), as pathflow's large tensors are:
 * the baseline must not lose to pathflow on TLB misses and page faults.
 * Free with free(). Exits on failure. */
static inline void *bench_buffer(size_t n) {
  size_t huge = (size_t)2 << 20;
  void *p = NULL;
  if (posix_memalign(&p, n >= huge ? huge : 64, n ? n : 1) != 0) {
    fprintf(stderr, "bench: out of memory (%zu bytes)\n", n);
    exit(1);
  }
#ifdef MADV_HUGEPAGE
  if (n >= huge) madvise(p, n / huge * huge, MADV_HUGEPAGE);
#endif
  return p;
}

/* Median of v[0..n) (sorts v). */
static inline double bench_median(double *v, int n) {
  qsort(v, (size_t)n, sizeof *v, bench_cmp_double);
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* -R: the raw-MPI half alone, in a job of its own, initialized as a
 * hand-written MPI program is (MPI_Init: MPI_THREAD_SINGLE). Open MPI takes
 * a lock in every call at any level above SINGLE, and pathflow needs
 * SERIALIZED (its loop thread makes the calls): the raw half of a pathflow
 * job runs at SERIALIZED too, 15-20% slower on a loop of scalar
 * allreduces (2 ranks) than the same loop at SINGLE. bench/run_mpi.sh runs
 * both jobs, so that each table has the baseline at its best beside the
 * one that shares pathflow's MPI. */
static int bench_raw_only;

/* MPI_Init_thread(SERIALIZED), as pf_init would, or SINGLE with -R.
 * Returns the rank; exits the job on failure. */
static inline int bench_mpi_init(int *argc, char ***argv, const char *prog, int min_ranks,
                                 int *world) {
  int provided = 0, rank = 0;
  int level = bench_raw_only ? MPI_THREAD_SINGLE : MPI_THREAD_SERIALIZED;
  if (MPI_Init_thread(argc, argv, level, &provided) != MPI_SUCCESS) {
    fprintf(stderr, "%s: MPI_Init_thread failed\n", prog);
    exit(1);
  }
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, world);
  if (provided < level || *world < min_ranks) {
    if (rank == 0)
      fprintf(stderr, "%s: needs MPI thread level %d (got %d) and >= %d ranks (got %d); "
                      "run it under mpirun -np %d\n",
              prog, level, provided, min_ranks, *world, min_ranks);
    MPI_Abort(MPI_COMM_WORLD, 2);
  }
  return rank;
}

/* Rank 0 only: a pathflow call that failed ends the job with its message. */
#define BENCH_OK(ctx, call)                                                              \
  do {                                                                                   \
    int rc_ = (call);                                                                    \
    if (rc_ != 0) {                                                                      \
      fprintf(stderr, "%s:%d: %s: %s: %s\n", __FILE__, __LINE__, #call, pf_errname(rc_), \
              pf_last_error(ctx));                                                       \
      MPI_Abort(MPI_COMM_WORLD, 1);                                                      \
    }                                                                                    \
  } while (0)

/* A slice of one device pinned to `device` (with one device per rank,
 * device i is rank i). */
static inline pf_slice_t bench_slice1(pf_context *ctx, pf_graph *g, int device) {
  pf_slice_t s;
  BENCH_OK(ctx, pf_graph_slice(g, PF_DEVICE_CPU, 1, &s));
  BENCH_OK(ctx, pf_graph_slice_pin(g, s, &device));
  return s;
}

/* A slice of n devices pinned to 0..n-1. */
static inline pf_slice_t bench_slice_all(pf_context *ctx, pf_graph *g, int n) {
  pf_slice_t s;
  int devs[256];
  for (int i = 0; i < n && i < 256; i++) devs[i] = i;
  BENCH_OK(ctx, pf_graph_slice(g, PF_DEVICE_CPU, n, &s));
  BENCH_OK(ctx, pf_graph_slice_pin(g, s, devs));
  return s;
}

/* Runs `exe` once with the given feeds and waits; ends the job on error. */
static inline void bench_run(pf_context *ctx, pf_executable *exe, int n_feeds,
                             const pf_feed *feeds) {
  pf_future *f;
  int rc;
  BENCH_OK(ctx, pf_execute(exe, n_feeds, feeds, &f));
  if ((rc = pf_future_wait(f)) != 0) {
    fprintf(stderr, "execution failed: %s: %s\n", pf_errname(rc), pf_future_error(f));
    MPI_Abort(MPI_COMM_WORLD, 1);
  }
  pf_future_destroy(f);
}

#endif
