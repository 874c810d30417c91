/* transfer: point-to-point tensor transfer rank 0 -> rank 1, pathflow
 * against raw MPI, in one mpirun job (2 ranks, one device each).
 *
 * Bandwidth, per size S:
 *   pathflow  K persistent u8[S] buffers on rank 0 (made once by an
 *             execution of K "bench.fill" programs, kept with
 *             pf_future_output) feed one executable of K "bench.sink"
 *             programs pinned to rank 1: one execution moves K tensors.
 *             Each timed execution is pf_execute + pf_future_wait +
 *             pf_future_destroy (the step's completion is the ack).
 *   raw MPI   per iteration, K MPI_Isend (rank 0) / MPI_Irecv (rank 1) of
 *             S bytes from/into K distinct buffers, MPI_Waitall, then a
 *             0-byte ack from rank 1 that rank 0 waits for (no barrier):
 *             the same work as pathflow's.
 *   osu_bw    as OSU's osu_bw runs it: a window of 64 MPI_Isend of one
 *             buffer (rank 0) into one buffer (rank 1), MPI_Waitall, a
 *             4-byte ack; and the same with windows of 2 and 8, the best
 *             of the three kept (64 messages of 16 MiB in flight ran below
 *             what pathflow moved with a few at a time). Both buffers stay
 *             in cache up to a few MiB, which K distinct tensors cannot:
 *             the best raw MPI does here (up to twice the K-buffer loop on
 *             this VM), the one to beat.
 *   MBps = K * S * iterations / time, 10^6 bytes per MB.
 *
 * Latency (one-way), per size S:
 *   pathflow  one execution runs a chain of H "bench.pass" programs (1
 *             input, same-spec output, in place: the runtime hands the
 *             received buffer on, no copy) alternating rank 1, rank 0,
 *             rank 1, ...: H transfers. Chains of H/4 and H hops are
 *             timed, alternating; the per-hop figure is the median over the
 *             pairs of the slope (t(H) - t(H/4)) / (3H/4), which removes the
 *             per-execution dispatch cost (printed apart as a comment).
 *             (Until 2026-12-02 the pass kernel copied its input, and a
 *             hop of 1 MiB cost twice a ping-pong for that copy.)
 *   raw MPI   ping-pong of S bytes, round trip / 2: blocking MPI_Send /
 *             MPI_Recv (as osu_latency), and with each receive posted
 *             before its message can come (as pathflow's chain posts
 *             them); the lesser of the two.
 *
 * Every figure is the median of R repetitions (-r, default 5) of about
 * 0.2 s (raw MPI) or 0.25 s (pathflow, at least 3 executions) each, after a
 * warm-up. The raw MPI half runs first, on every rank, before pf_init (see
 * mpi_bench.h).
 *
 * Usage: mpirun -np 2 transfer [-r REPS] [-s MIN_BYTES] [-m MAX_BYTES] [-k K]
 *                               [-t bw|lat]   (one half only, for profiling)
 */
#include <unistd.h>

#include "mpi_bench.h"

#define PATTERN 0xA5
#define MAX_SIZES 32

/* ---- kernels (registered on every rank through pf_init_options) ------------- */

static int fill_shape(const pf_attrs *attrs, int n_in, const pf_spec *in, int n_out,
                      pf_spec *out, pf_diag *diag) {
  int64_t n = pf_attrs_get_int(attrs, "bytes", -1);
  if (n < 1) return pf_diag_error(diag, PF_EINVAL, "bench.fill: attribute \"bytes\" >= 1 needed");
  out[0] = pf_spec_1d(PF_U8, n);
  return 0;
}

static int fill_compute(const pf_kernel_call *c) {
  memset(c->out[0].data, PATTERN, pf_spec_nbytes(&c->out[0].spec));
  return 0;
}

static int sink_shape(const pf_attrs *attrs, int n_in, const pf_spec *in, int n_out,
                      pf_spec *out, pf_diag *diag) {
  out[0] = pf_spec_scalar(PF_U8);
  return 0;
}

/* Reads two bytes: enough to catch a transfer that never landed. */
static int check_bytes(const pf_view *v, pf_diag *d) {
  const uint8_t *p = v->data;
  size_t n = pf_spec_nbytes(&v->spec);
  if (p[0] != PATTERN || p[n - 1] != PATTERN)
    return pf_diag_error(d, PF_EKERNEL, "received bytes %#x..%#x, expected %#x", p[0], p[n - 1],
                         PATTERN);
  return 0;
}

static int sink_compute(const pf_kernel_call *c) {
  *(uint8_t *)c->out[0].data = 0;
  return check_bytes(&c->in[0], c->diag);
}

static int pass_shape(const pf_attrs *attrs, int n_in, const pf_spec *in, int n_out,
                      pf_spec *out, pf_diag *diag) {
  out[0] = in[0];
  return 0;
}

/* In place where the runtime can (the hop's received buffer is read by no
 * one else): a hop is then the transfer, not a copy as well, as in the
 * ping-pong it is set beside. */
static int pass_compute(const pf_kernel_call *c) {
  int rc = check_bytes(&c->in[0], c->diag);
  if (c->out[0].data != c->in[0].data)
    memcpy(c->out[0].data, c->in[0].data, pf_spec_nbytes(&c->in[0].spec));
  return rc;
}

static const int pass_in_place[] = {0};

static const pf_kernel_def kernels[] = {
    {.name = "bench.fill", .kind = PF_DEVICE_CPU, .n_in = 0, .n_out = 1, .shape = fill_shape,
     .compute = fill_compute},
    {.name = "bench.sink", .kind = PF_DEVICE_CPU, .n_in = 1, .n_out = 1, .shape = sink_shape,
     .compute = sink_compute},
    {.name = "bench.pass", .kind = PF_DEVICE_CPU, .n_in = 1, .n_out = 1, .shape = pass_shape,
     .compute = pass_compute, .in_place = pass_in_place},
};

/* ---- parameters: the same on every rank --------------------------------------- */

static int n_sizes;
static size_t sizes[MAX_SIZES];
static int reps = 5, k_max = 16;
static int do_bw = 1, do_lat = 1; /* -t bw | lat: one half only (for profiling) */
static size_t min_bytes = 8, max_bytes = (size_t)64 << 20;

/* Tensors per iteration: k_max, fewer so that K * S stays <= 256 MiB. */
static int k_of(size_t s) {
  size_t k = ((size_t)256 << 20) / s;
  return k < 1 ? 1 : k > (size_t)k_max ? k_max : (int)k;
}

/* Raw MPI iterations between two checks of the clock: about 16 MiB moved,
 * between 1 and 256. */
static int bw_iters(size_t s) {
  size_t it = ((size_t)16 << 20) / ((size_t)k_of(s) * s);
  return it < 1 ? 1 : it > 256 ? 256 : (int)it;
}

/* Hops of the long latency chain: 1024 for small tensors, fewer so that one
 * execution moves <= 512 MiB; a multiple of 4, >= 8. */
static int hops_of(size_t s) {
  size_t h = ((size_t)512 << 20) / s;
  h = h > 1024 ? 1024 : h < 8 ? 8 : h;
  return (int)(h / 4 * 4);
}

static int lat_iters(size_t s) {
  size_t it = ((size_t)16 << 20) / s;
  return it < 1 ? 1 : it > 1000 ? 1000 : (int)it;
}

/* ---- raw MPI (every rank) ---------------------------------------------------------- */

/* Runs batches of `batch` iterations of `one` until rank 0 has seen about
 * REP_S seconds go by (it tells the others with a broadcast after each
 * batch); returns seconds per iteration. */
#define REP_S 0.2
typedef void (*iteration_fn)(int rank, size_t s, void *arg);
static double timed_batches(int rank, size_t s, int batch, iteration_fn one, void *arg,
                            double limit) {
  double t0 = bench_now();
  long n = 0;
  int more = 1;
  while (more) {
    for (int it = 0; it < batch; it++) one(rank, s, arg);
    n += batch;
    more = bench_now() - t0 < limit;
    MPI_Bcast(&more, 1, MPI_INT, 0, MPI_COMM_WORLD);
  }
  return (bench_now() - t0) / (double)n;
}

typedef struct {
  int k;
  uint8_t **bufs;
  int osu; /* osu_bw's way: a window of `window` messages of bufs[0] */
  int window;
} bw_state;

#define OSU_WINDOW 64

/* K messages rank 0 -> rank 1, then a 0-byte ack back. */
static void bw_iteration(int rank, size_t s, void *arg) {
  bw_state *st = arg;
  MPI_Request req[OSU_WINDOW + 1];
  int n = st->osu ? st->window : st->k, ack = st->osu ? 4 : 0;
  char ack_buf[4] = {0};
  if (rank == 0) {
    MPI_Irecv(ack_buf, ack, MPI_BYTE, 1, 1, MPI_COMM_WORLD, &req[n]);
    for (int i = 0; i < n; i++)
      MPI_Isend(st->bufs[st->osu ? 0 : i], (int)s, MPI_BYTE, 1, 0, MPI_COMM_WORLD, &req[i]);
    MPI_Waitall(n + 1, req, MPI_STATUSES_IGNORE);
  } else if (rank == 1) {
    for (int i = 0; i < n; i++)
      MPI_Irecv(st->bufs[st->osu ? 0 : i], (int)s, MPI_BYTE, 0, 0, MPI_COMM_WORLD, &req[i]);
    MPI_Waitall(n, req, MPI_STATUSES_IGNORE);
    MPI_Send(ack_buf, ack, MPI_BYTE, 0, 1, MPI_COMM_WORLD);
  }
}

/* MB/s of the K-buffer loop, or (osu, window) of osu_bw's way. */
static double mpi_bandwidth_window(int rank, size_t s, int osu, int window) {
  bw_state st = {.k = k_of(s), .osu = osu, .window = window};
  double t[64];
  int per = osu ? window : st.k;
  st.bufs = calloc((size_t)st.k, sizeof *st.bufs);
  for (int i = 0; i < st.k; i++) {
    st.bufs[i] = bench_buffer(s);
    memset(st.bufs[i], rank == 0 ? PATTERN : 0, s); /* touched: no page faults when timed */
  }
  for (int r = -1; r < reps; r++) { /* r == -1: warm-up */
    MPI_Barrier(MPI_COMM_WORLD);
    int batch = bw_iters(s) * st.k / per; /* the same bytes between clock checks */
    double sec = timed_batches(rank, s, batch > 0 ? batch : 1, bw_iteration, &st,
                               r < 0 ? 0.02 : REP_S);
    if (r >= 0) t[r] = sec;
  }
  if (rank == 1 && (st.bufs[0][0] != PATTERN || st.bufs[osu ? 0 : st.k - 1][s - 1] != PATTERN)) {
    fprintf(stderr, "transfer: raw MPI data check failed\n");
    MPI_Abort(MPI_COMM_WORLD, 1);
  }
  for (int i = 0; i < st.k; i++) free(st.bufs[i]);
  free(st.bufs);
  return (double)per * (double)s / bench_median(t, reps) / 1e6;
}

/* MB/s of the K-buffer loop, or (osu) of osu_bw's way with the best of
 * windows 2, 8 and OSU_WINDOW. */
static double mpi_bandwidth(int rank, size_t s, int osu) {
  static const int windows[] = {2, 8, OSU_WINDOW};
  double best = 0;
  if (!osu) return mpi_bandwidth_window(rank, s, 0, 0);
  for (size_t w = 0; w < sizeof windows / sizeof *windows; w++) {
    double mbps = mpi_bandwidth_window(rank, s, 1, windows[w]);
    if (mbps > best) best = mbps;
  }
  return best;
}

/* One round trip: rank 0 -> rank 1 -> rank 0. */
static void pingpong(int rank, size_t s, void *arg) {
  uint8_t *buf = arg;
  if (rank == 0) {
    MPI_Send(buf, (int)s, MPI_BYTE, 1, 2, MPI_COMM_WORLD);
    MPI_Recv(buf, (int)s, MPI_BYTE, 1, 2, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
  } else if (rank == 1) {
    MPI_Recv(buf, (int)s, MPI_BYTE, 0, 2, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
    MPI_Send(buf, (int)s, MPI_BYTE, 0, 2, MPI_COMM_WORLD);
  }
}

/* The same round trip with every receive posted before its message can
 * come, as pathflow's chain posts them: rank 0 posts the reply's receive
 * before it sends; rank 1 posts the next round's before it replies (one is
 * left posted at the end: cancelled). */
typedef struct {
  uint8_t *buf, *rbuf;
  MPI_Request next; /* rank 1: the receive of the next round */
} preposted;

static void pingpong_preposted(int rank, size_t s, void *arg) {
  preposted *p = arg;
  MPI_Request req;
  if (rank == 0) {
    MPI_Irecv(p->rbuf, (int)s, MPI_BYTE, 1, 3, MPI_COMM_WORLD, &req);
    MPI_Send(p->buf, (int)s, MPI_BYTE, 1, 3, MPI_COMM_WORLD);
    MPI_Wait(&req, MPI_STATUS_IGNORE);
  } else if (rank == 1) {
    MPI_Wait(&p->next, MPI_STATUS_IGNORE);
    MPI_Irecv(p->rbuf, (int)s, MPI_BYTE, 0, 3, MPI_COMM_WORLD, &p->next);
    MPI_Send(p->buf, (int)s, MPI_BYTE, 0, 3, MPI_COMM_WORLD);
  }
}

/* One-way latency in microseconds: half the round trip of the blocking
 * ping-pong (as osu_latency) or of the pre-posted one, whichever is less
 * (the best raw MPI does). */
static double mpi_latency_us(int rank, size_t s) {
  double t[64], best = 0;
  preposted p = {bench_buffer(s), bench_buffer(s), MPI_REQUEST_NULL};
  memset(p.buf, PATTERN, s);
  memset(p.rbuf, 0, s);
  for (int way = 0; way < 2; way++) {
    double us;
    for (int r = -1; r < reps; r++) {
      double per;
      if (way == 1 && rank == 1)
        MPI_Irecv(p.rbuf, (int)s, MPI_BYTE, 0, 3, MPI_COMM_WORLD, &p.next);
      MPI_Barrier(MPI_COMM_WORLD);
      per = way == 0 ? timed_batches(rank, s, lat_iters(s), pingpong, p.buf, r < 0 ? 0.02 : REP_S)
                     : timed_batches(rank, s, lat_iters(s), pingpong_preposted, &p,
                                     r < 0 ? 0.02 : REP_S);
      if (way == 1 && rank == 1) {
        MPI_Cancel(&p.next);
        MPI_Wait(&p.next, MPI_STATUS_IGNORE);
      }
      if (r >= 0) t[r] = per;
    }
    us = 1e6 * bench_median(t, reps) / 2.0;
    if (way == 0 || us < best) best = us;
  }
  free(p.buf);
  free(p.rbuf);
  return best;
}

/* ---- pathflow (rank 0) ---------------------------------------------------------------- */

static pf_context *ctx;

/* k persistent u8[s] buffers on rank 0, filled with PATTERN. */
static void make_buffers(size_t s, int k, pf_buffer_t *out) {
  pf_graph *g;
  pf_executable *exe;
  pf_future *f;
  pf_attrs *a;
  pf_slice_t r0;
  char name[32];
  BENCH_OK(ctx, pf_graph_create(ctx, &g));
  r0 = bench_slice1(ctx, g, 0);
  BENCH_OK(ctx, pf_attrs_create(&a));
  BENCH_OK(ctx, pf_attrs_set_int(a, "bytes", (int64_t)s));
  for (int i = 0; i < k; i++) {
    pf_value_t v;
    BENCH_OK(ctx, pf_graph_program(g, &(pf_program_desc){.kernel = "bench.fill", .attrs = a,
                                                        .slice = r0},
                                   &v, NULL));
    snprintf(name, sizeof name, "b%d", i);
    BENCH_OK(ctx, pf_graph_output(g, name, v));
  }
  pf_attrs_destroy(a);
  BENCH_OK(ctx, pf_compile(g, &exe));
  pf_graph_destroy(g);
  BENCH_OK(ctx, pf_execute(exe, 0, NULL, &f));
  BENCH_OK(ctx, pf_future_wait(f));
  for (int i = 0; i < k; i++) {
    snprintf(name, sizeof name, "b%d", i);
    BENCH_OK(ctx, pf_future_output(f, name, &out[i]));
  }
  pf_future_destroy(f);
  pf_executable_destroy(exe);
}

/* Median seconds per synchronous execution of exe (pf_execute +
 * pf_future_wait + pf_future_destroy) over `reps` repetitions of about
 * BENCH_REP_S seconds each (at least 3 executions), after one warm-up
 * execution that also sizes the repetitions. */
#define BENCH_REP_S 0.25
static double time_exe(pf_executable *exe, int n_feeds, const pf_feed *feeds) {
  double t[64], t0 = bench_now();
  int iters;
  bench_run(ctx, exe, n_feeds, feeds);
  iters = (int)(BENCH_REP_S / (bench_now() - t0));
  iters = iters < 3 ? 3 : iters > 100000 ? 100000 : iters;
  for (int r = 0; r < reps; r++) {
    t0 = bench_now();
    for (int it = 0; it < iters; it++) bench_run(ctx, exe, n_feeds, feeds);
    t[r] = (bench_now() - t0) / iters;
  }
  return bench_median(t, reps);
}

static double pf_bandwidth(size_t s) {
  int k = k_of(s);
  pf_buffer_t bufs[64];
  pf_feed feeds[64];
  char names[64][16];
  pf_graph *g;
  pf_executable *exe;
  pf_slice_t r0, r1;
  pf_spec spec = pf_spec_1d(PF_U8, (int64_t)s);
  double t;
  make_buffers(s, k, bufs);
  BENCH_OK(ctx, pf_graph_create(ctx, &g));
  r0 = bench_slice1(ctx, g, 0);
  r1 = bench_slice1(ctx, g, 1);
  for (int i = 0; i < k; i++) {
    pf_value_t x, y;
    snprintf(names[i], sizeof names[i], "x%d", i);
    BENCH_OK(ctx, pf_graph_input(g, names[i], &spec, r0, pf_replicated(), &x));
    BENCH_OK(ctx, pf_graph_program(g, &(pf_program_desc){.kernel = "bench.sink", .slice = r1,
                                                        .n_in = 1, .in = &x},
                                   &y, NULL));
    feeds[i] = (pf_feed){.name = names[i], .buffer = bufs[i]};
  }
  BENCH_OK(ctx, pf_compile(g, &exe));
  pf_graph_destroy(g);
  t = time_exe(exe, k, feeds);
  pf_executable_destroy(exe);
  for (int i = 0; i < k; i++) BENCH_OK(ctx, pf_buffer_release(ctx, bufs[i]));
  return (double)k * (double)s / t / 1e6;
}

/* A chain of `hops` pass programs starting on rank 1, fed input "x" (on
 * rank 0). */
static pf_executable *pf_chain(size_t s, int hops) {
  pf_graph *g;
  pf_executable *exe;
  pf_slice_t r[2];
  pf_spec spec = pf_spec_1d(PF_U8, (int64_t)s);
  pf_value_t v;
  BENCH_OK(ctx, pf_graph_create(ctx, &g));
  r[0] = bench_slice1(ctx, g, 0);
  r[1] = bench_slice1(ctx, g, 1);
  BENCH_OK(ctx, pf_graph_input(g, "x", &spec, r[0], pf_replicated(), &v));
  for (int h = 1; h <= hops; h++) {
    pf_value_t next;
    BENCH_OK(ctx, pf_graph_program(g, &(pf_program_desc){.kernel = "bench.pass",
                                                        .slice = r[h % 2], .n_in = 1,
                                                        .in = &v},
                                   &next, NULL));
    v = next;
  }
  BENCH_OK(ctx, pf_compile(g, &exe));
  pf_graph_destroy(g);
  return exe;
}

/* One-way latency per hop (us), and the fixed cost of one execution (us).
 * Executions of the short and the long chain alternate, and each pair
 * gives one estimate of the slope; the median over the pairs (at least
 * 20 per repetition) is kept, so that a disturbance of one execution
 * (the other core busy for a moment) does not move the figure. */
static void pf_latency(size_t s, double *hop_us, double *fixed_us) {
  pf_buffer_t x;
  int h = hops_of(s), pairs;
  pf_executable *short_exe, *long_exe;
  pf_feed feed = {.name = "x"};
  double *slope, *fixed, t0, t_short, t_long;
  make_buffers(s, 1, &x);
  feed.buffer = x;
  short_exe = pf_chain(s, h / 4);
  long_exe = pf_chain(s, h);
  bench_run(ctx, short_exe, 1, &feed); /* warm-up, and sizes the pairs */
  t0 = bench_now();
  bench_run(ctx, long_exe, 1, &feed);
  pairs = (int)(BENCH_REP_S * reps / (bench_now() - t0));
  pairs = pairs < 20 * reps ? 20 * reps : pairs > 20000 ? 20000 : pairs;
  slope = calloc((size_t)pairs, sizeof *slope);
  fixed = calloc((size_t)pairs, sizeof *fixed);
  if (slope == NULL || fixed == NULL) BENCH_OK(ctx, PF_ENOMEM);
  for (int p = 0; p < pairs; p++) {
    t0 = bench_now();
    bench_run(ctx, short_exe, 1, &feed);
    t_short = bench_now() - t0;
    t0 = bench_now();
    bench_run(ctx, long_exe, 1, &feed);
    t_long = bench_now() - t0;
    slope[p] = 1e6 * (t_long - t_short) / (h - h / 4);
    fixed[p] = 1e6 * t_short - slope[p] * (h / 4);
  }
  *hop_us = bench_median(slope, pairs);
  *fixed_us = bench_median(fixed, pairs);
  free(slope);
  free(fixed);
  pf_executable_destroy(short_exe);
  pf_executable_destroy(long_exe);
  BENCH_OK(ctx, pf_buffer_release(ctx, x));
}

/* ---- main ------------------------------------------------------------------------------- */

static long parse_long(const char *s, const char *flag, long min, long max) {
  char *end;
  long v = strtol(s, &end, 10);
  if (*s == '\0' || *end != '\0' || v < min || v > max) {
    fprintf(stderr, "transfer: %s wants an integer in [%ld, %ld], got \"%s\"\n", flag, min, max, s);
    exit(2);
  }
  return v;
}

int main(int argc, char **argv) {
  double bw_mpi[MAX_SIZES], bw_osu[MAX_SIZES], lat_mpi[MAX_SIZES];
  int rank, world, opt;
  while ((opt = getopt(argc, argv, "r:s:m:k:t:Rh")) != -1) {
    switch (opt) {
      case 't':
        do_bw = strcmp(optarg, "lat") != 0;
        do_lat = strcmp(optarg, "bw") != 0;
        break;
      case 'r': reps = (int)parse_long(optarg, "-r", 1, 64); break;
      case 's': min_bytes = (size_t)parse_long(optarg, "-s", 8, 1L << 30); break;
      case 'm': max_bytes = (size_t)parse_long(optarg, "-m", 8, 1L << 30); break;
      case 'k': k_max = (int)parse_long(optarg, "-k", 1, 64); break;
      case 'R': bench_raw_only = 1; break;
      default:
        fprintf(stderr, "usage: mpirun -np 2 %s [-r REPS (5)] [-s MIN_BYTES (8)] "
                        "[-m MAX_BYTES (67108864)] "
                        "[-k TENSORS_PER_EXECUTION (16)] [-t bw|lat] [-R]\n", argv[0]);
        return opt == 'h' ? 0 : 2;
    }
  }
  /* 8 B, then powers of 4 from 16 B up to max_bytes. */
  if (min_bytes <= 8 && max_bytes >= 8) sizes[n_sizes++] = 8;
  for (size_t s = 16; s <= max_bytes && n_sizes < MAX_SIZES; s *= 4)
    if (s >= min_bytes) sizes[n_sizes++] = s;
  if (n_sizes == 0) {
    fprintf(stderr, "transfer: no size in [%zu, %zu] (8 B, then powers of 4)\n", min_bytes,
            max_bytes);
    return 2;
  }

  rank = bench_mpi_init(&argc, &argv, "transfer", 2, &world);
  for (int i = 0; i < n_sizes; i++) {
    bw_mpi[i] = do_bw ? mpi_bandwidth(rank, sizes[i], 0) : 0;
    bw_osu[i] = do_bw ? mpi_bandwidth(rank, sizes[i], 1) : 0;
    lat_mpi[i] = do_lat ? mpi_latency_us(rank, sizes[i]) : 0;
  }
  MPI_Barrier(MPI_COMM_WORLD);
  if (bench_raw_only) { /* the baseline alone, at MPI_THREAD_SINGLE (mpi_bench.h) */
    if (rank == 0) {
      printf("# transfer rank 0 -> rank 1, MPI alone (MPI_THREAD_SINGLE), %d repetitions\n", reps);
      printf("%10s %12s %12s %10s\n", "bytes", "mpi_MBps", "osu_MBps", "mpi_us");
      for (int i = 0; i < n_sizes; i++)
        printf("%10zu %12.1f %12.1f %10.2f\n", sizes[i], bw_mpi[i], bw_osu[i], lat_mpi[i]);
    }
    MPI_Finalize();
    return 0;
  }

  /* Ranks > 0 serve inside pf_init and exit there. */
  if (pf_init(&argc, &argv,
              &(pf_init_options){.cpu_devices = 1, .kernels = kernels,
                                 .n_kernels = (int)(sizeof kernels / sizeof kernels[0])},
              &ctx) != 0)
    MPI_Abort(MPI_COMM_WORLD, 1);
  printf("# transfer rank 0 -> rank 1: %d ranks, %d repetitions (median), "
         "K <= %d tensors per execution\n", world, reps, k_max);
  printf("%10s %12s %12s %12s %7s %7s %12s %10s\n", "bytes", "pathflow_MBps", "mpi_MBps",
         "osu_MBps", "of_mpi", "of_osu", "pathflow_us", "mpi_us");
  fflush(stdout);
  for (int i = 0; i < n_sizes; i++) {
    double bw = do_bw ? pf_bandwidth(sizes[i]) : 0, hop = 0, fixed = 0;
    if (do_lat) pf_latency(sizes[i], &hop, &fixed);
    printf("%10zu %12.1f %12.1f %12.1f %7.3f %7.3f %12.2f %10.2f\n", sizes[i], bw, bw_mpi[i],
           bw_osu[i], bw / bw_mpi[i], bw / bw_osu[i], hop, lat_mpi[i]);
    printf("#   K=%d tensors per execution; latency chains of %d and %d hops: "
           "fixed cost %.1f us per execution\n",
           k_of(sizes[i]), hops_of(sizes[i]) / 4, hops_of(sizes[i]), fixed);
    fflush(stdout);
  }
  pf_finalize(ctx);
  MPI_Finalize();
  return 0;
}
