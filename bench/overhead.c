/* overhead: what pathflow costs per op when the ops do nothing.
 *
 * A user kernel "nop" (any number of inputs, one u8 scalar output, an empty
 * compute) is run in three graphs of N programs each, every slice pinned to
 * explicit local devices so that placement is known:
 *
 *   chain        N ops, op i reads op i-1's output, all on device 0
 *   independent  N ops with no inputs, op i on device i % D
 *   one_device   N ops with no inputs, all on device 0
 *
 * Each graph is compiled once and executed once to warm up; then K
 * executions are timed, each pf_execute + pf_future_wait, and the table
 * gives time / (K * N) in microseconds. pf_future_destroy (which frees the
 * step's buffers), graph building and pf_compile are timed apart and printed
 * as comment lines. The kernel
 * counts its calls, and a case whose count is not (K + 1) * N fails.
 *
 * Then, as comment lines, queued executions: Q/8, Q/2 and Q executions of
 * a one-op graph with a host feed, each pf_execute'd without waiting
 * (pf_execute blocks past max_pending), then all waited for; the time per
 * execution must not grow with their number (it grew linearly before the
 * controller's waiters and the executors' stores became hash tables).
 *
 * Usage: overhead [-n N] [-k K] [-d DEVICES] [-q Q (80000; 0: skip)]
 */
#include <pathflow.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static int nop_shape(const pf_attrs *attrs, int n_in, const pf_spec *in, int n_out,
                     pf_spec *out, pf_diag *diag) {
  out[0] = pf_spec_scalar(PF_U8);
  return 0;
}

/* The kernel does nothing but count its calls, one counter per device on its
 * own cache line (each device has one worker thread: no atomics needed), so
 * that the benchmark can check that every op ran. */
typedef struct { uint64_t calls, pad[7]; } counter;

static int nop_compute(const pf_kernel_call *call) {
  ((counter *)call->user)[call->device].calls++;
  return 0;
}

static uint64_t total_calls(const counter *c, int devices) {
  uint64_t n = 0;
  for (int d = 0; d < devices; d++) n += c[d].calls;
  return n;
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

typedef enum { CHAIN, INDEPENDENT, ONE_DEVICE } bench_case;
static const char *const case_names[] = {"chain", "independent", "one_device"};

static int fail(pf_context *ctx, const char *what, int rc) {
  fprintf(stderr, "overhead: %s: %s: %s\n", what, pf_strerror(rc), pf_last_error(ctx));
  return rc;
}

/* Builds the graph of case `c` with n programs over `devices` devices. */
static int build(pf_context *ctx, bench_case c, int n, int devices, pf_graph **out) {
  pf_graph *g;
  pf_slice_t *slices;
  pf_value_t prev = PF_NO_VALUE, v;
  int used = c == INDEPENDENT ? devices : 1, rc;
  *out = NULL;
  if ((rc = pf_graph_create(ctx, &g)) != 0) return fail(ctx, "graph", rc);
  if ((slices = calloc((size_t)used, sizeof *slices)) == NULL) {
    pf_graph_destroy(g);
    return PF_ENOMEM;
  }
  for (int d = 0; d < used; d++) {
    if ((rc = pf_graph_slice(g, PF_DEVICE_CPU, 1, &slices[d])) != 0 ||
        (rc = pf_graph_slice_pin(g, slices[d], &d)) != 0)
      goto done;
  }
  for (int i = 0; i < n; i++) {
    pf_program_desc p = {.kernel = "nop", .slice = slices[i % used],
                         .n_in = c == CHAIN && i > 0, .in = &prev};
    if ((rc = pf_graph_program(g, &p, &v, NULL)) != 0) goto done;
    prev = v;
  }
  rc = pf_graph_output(g, "last", prev);
done:
  free(slices);
  if (rc != 0) {
    pf_graph_destroy(g);
    return fail(ctx, "build", rc);
  }
  *out = g;
  return 0;
}

/* What run_case measures, besides the table's figure. */
typedef struct {
  double us_op;       /* pf_execute + pf_future_wait, per op */
  double us_teardown; /* pf_future_destroy, per op */
  double ms_build;    /* building the graph (pf_graph_program calls) */
  double ms_compile;  /* pf_compile */
} result;

/* Runs case `c`. */
static int run_case(pf_context *ctx, bench_case c, int n, int k, int devices,
                    const counter *calls, result *res) {
  pf_graph *g;
  pf_executable *exe;
  pf_future *f;
  double t_run = 0, t_free = 0, t0, t1;
  uint64_t calls0 = total_calls(calls, devices);
  int rc;
  t0 = now_s();
  if ((rc = build(ctx, c, n, devices, &g)) != 0) return rc;
  t1 = now_s();
  rc = pf_compile(g, &exe);
  res->ms_build = 1e3 * (t1 - t0);
  res->ms_compile = 1e3 * (now_s() - t1);
  pf_graph_destroy(g);
  if (rc != 0) return fail(ctx, "compile", rc);
  for (int i = -1; i < k; i++) { /* i == -1: warm-up, not timed */
    t0 = now_s();
    if ((rc = pf_execute(exe, 0, NULL, &f)) != 0) {
      pf_executable_destroy(exe);
      return fail(ctx, "execute", rc);
    }
    rc = pf_future_wait(f);
    t1 = now_s();
    if (rc != 0) {
      fprintf(stderr, "overhead: %s: %s\n", case_names[c], pf_future_error(f));
      pf_future_destroy(f);
      pf_executable_destroy(exe);
      return rc;
    }
    pf_future_destroy(f);
    if (i >= 0) {
      t_run += t1 - t0;
      t_free += now_s() - t1;
    }
  }
  pf_executable_destroy(exe);
  if (total_calls(calls, devices) - calls0 != (uint64_t)(k + 1) * (uint64_t)n) {
    fprintf(stderr, "overhead: %s: the kernel ran %llu times, expected %llu\n",
            case_names[c], (unsigned long long)(total_calls(calls, devices) - calls0),
            (unsigned long long)(k + 1) * (unsigned long long)n);
    return PF_EKERNEL;
  }
  res->us_op = 1e6 * t_run / ((double)k * n);
  res->us_teardown = 1e6 * t_free / ((double)k * n);
  return 0;
}

/* Queues n executions of `exe` (input "x", a u8 scalar) without waiting,
 * then waits for every one; returns the seconds, or a negative value. */
static double run_queued(pf_context *ctx, pf_executable *exe, int n) {
  pf_spec spec = pf_spec_scalar(PF_U8);
  pf_future **f = calloc((size_t)n, sizeof *f);
  pf_tensor *x = NULL;
  double t0, took = -1;
  int rc = 0, made = 0;
  if (f == NULL || (rc = pf_tensor_create(&spec, &x)) != 0) {
    fail(ctx, "queued", f == NULL ? PF_ENOMEM : rc);
    free(f);
    return -1;
  }
  t0 = now_s();
  for (; made < n && rc == 0; made++)
    if ((rc = pf_execute(exe, 1, &(pf_feed){.name = "x", .tensor = x}, &f[made])) != 0) break;
  for (int i = 0; i < made && rc == 0; i++) rc = pf_future_wait(f[i]);
  if (rc == 0) took = now_s() - t0;
  else fail(ctx, "queued", rc);
  for (int i = 0; i < made; i++) pf_future_destroy(f[i]);
  pf_tensor_destroy(x);
  free(f);
  return took;
}

static int queued_rows(pf_context *ctx, int q) {
  pf_spec spec = pf_spec_scalar(PF_U8);
  pf_graph *g;
  pf_executable *exe;
  pf_slice_t s;
  pf_value_t x, v;
  int rc, device = 0;
  if ((rc = pf_graph_create(ctx, &g)) != 0) return fail(ctx, "graph", rc);
  if ((rc = pf_graph_slice(g, PF_DEVICE_CPU, 1, &s)) != 0 ||
      (rc = pf_graph_slice_pin(g, s, &device)) != 0 ||
      (rc = pf_graph_input(g, "x", &spec, s, pf_replicated(), &x)) != 0 ||
      (rc = pf_graph_program(g, &(pf_program_desc){.kernel = "nop", .slice = s, .n_in = 1,
                                                   .in = &x},
                             &v, NULL)) != 0 ||
      (rc = pf_graph_output(g, "v", v)) != 0 || (rc = pf_compile(g, &exe)) != 0) {
    pf_graph_destroy(g);
    return fail(ctx, "queued graph", rc);
  }
  pf_graph_destroy(g);
  printf("# queued executions (1 op, a host feed; pf_execute without waiting, then wait):\n");
  for (int k = 0; k < 3; k++) {
    int n = k == 0 ? q / 8 : k == 1 ? q / 2 : q;
    double t;
    if (n < 1) continue;
    if ((t = run_queued(ctx, exe, n)) < 0) {
      pf_executable_destroy(exe);
      return PF_EKERNEL;
    }
    printf("#   %7d queued: %7.3f s, %6.2f us per execution\n", n, t, 1e6 * t / n);
    fflush(stdout);
  }
  pf_executable_destroy(exe);
  return 0;
}

static int parse_int(const char *s, const char *flag, int min) {
  char *end;
  long v = strtol(s, &end, 10);
  if (*s == '\0' || *end != '\0' || v < min || v > 100000000) {
    fprintf(stderr, "overhead: %s wants an integer >= %d, got \"%s\"\n", flag, min, s);
    exit(2);
  }
  return (int)v;
}

int main(int argc, char **argv) {
  pf_init_options opts = {0};
  pf_context *ctx = NULL;
  int n = 10000, k = 50, q = 80000, opt, devices, rc;
  counter *calls;
  pf_kernel_def nop = {.name = "nop", .kind = PF_DEVICE_CPU, .n_in = PF_VARIADIC,
                       .n_out = 1, .shape = nop_shape, .compute = nop_compute};
  while ((opt = getopt(argc, argv, "n:k:d:q:h")) != -1) {
    switch (opt) {
    case 'n': n = parse_int(optarg, "-n", 1); break;
    case 'q': q = parse_int(optarg, "-q", 0); break;
    case 'k': k = parse_int(optarg, "-k", 1); break;
    case 'd': opts.cpu_devices = parse_int(optarg, "-d", 1); break;
    default:
      fprintf(stderr, "usage: %s [-n OPS] [-k EXECUTIONS] [-d DEVICES] [-q QUEUED]\n"
                      "  defaults: -n 10000 -k 50 -d <cores in the affinity mask> -q 80000\n",
              argv[0]);
      return opt == 'h' ? 0 : 2;
    }
  }
  if ((rc = pf_init(NULL, NULL, &opts, &ctx)) != 0) {
    fprintf(stderr, "overhead: pf_init: %s: %s\n", pf_strerror(rc), pf_last_error(ctx));
    return 1;
  }
  devices = pf_device_count(ctx, PF_DEVICE_CPU);
  nop.user = calls = calloc((size_t)devices, sizeof *calls);
  if (calls == NULL || (rc = pf_kernel_register(ctx, &nop)) != 0) {
    fail(ctx, "register nop", calls == NULL ? PF_ENOMEM : rc);
    pf_finalize(ctx);
    free(calls);
    return 1;
  }
  printf("%-12s %8s %8s %10s\n", "case", "ops", "devices", "us_per_op");
  result r[3];
  for (int c = CHAIN; c <= ONE_DEVICE; c++) {
    if (run_case(ctx, (bench_case)c, n, k, devices, calls, &r[c]) != 0) {
      pf_finalize(ctx);
      free(calls);
      return 1;
    }
    printf("%-12s %8d %8d %10.3f\n", case_names[c], n,
           c == INDEPENDENT ? devices : 1, r[c].us_op);
    fflush(stdout);
  }
  printf("# us_per_op: mean of K=%d timed executions (pf_execute + pf_future_wait)\n", k);
  printf("# not timed above, per case (chain, independent, one_device):\n");
  printf("#   pf_future_destroy, us per op: %.3f, %.3f, %.3f\n", r[0].us_teardown,
         r[1].us_teardown, r[2].us_teardown);
  printf("#   graph build / pf_compile, ms: %.1f / %.1f, %.1f / %.1f, %.1f / %.1f\n",
         r[0].ms_build, r[0].ms_compile, r[1].ms_build, r[1].ms_compile, r[2].ms_build,
         r[2].ms_compile);
  if (q > 0 && queued_rows(ctx, q) != 0) {
    pf_finalize(ctx);
    free(calls);
    return 1;
  }
  rc = pf_finalize(ctx);
  free(calls); /* after pf_finalize: the kernel's user pointer outlives the context */
  return rc != 0;
}
