/* The measurements behind `pathflow calibrate` (tools/calibrate.c) and
 * `sim_fidelity -C` (bench/sim_fidelity.c): what each figure is, see
 * calibrate.c's opening comment. */
#include "tools/calibration.h"

#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "base/file.h"
#include "base/util.h"
#include "sim/cluster.h"
#include "tools/measure.h"

/* printf, unless the caller wants silence (sim_fidelity -C). */
__attribute__((format(printf, 2, 3))) static void cal_print(const tool_cal *c, const char *fmt,
                                                           ...) {
  va_list ap;
  if (c->quiet) return;
  va_start(ap, fmt);
  vprintf(fmt, ap);
  va_end(ap);
}

/* Times the graph that build() makes, then destroys it. */
static int timed(tool_cal *c, int (*build)(pf_graph *, const int64_t *), const int64_t *arg,
                 double *ns) {
  pf_graph *g;
  int rc = pf_graph_create(c->ctx, &g);
  if (rc == 0 && (rc = build(g, arg)) != 0)
    snprintf(c->why, sizeof c->why, "building a graph: %s", pf_last_error(c->ctx));
  if (rc == 0) rc = tool_time_graph(c->ctx, g, 2, c->reps, ns, c->why, sizeof c->why);
  pf_graph_destroy(g);
  return rc;
}

/* arg[0] relus after a fill of 4 floats, on device 0. */
static int g_chain(pf_graph *g, const int64_t *arg) {
  pf_slice_t s;
  pf_value_t v;
  int rc = tool_slice1(g, 0, &s);
  if (rc == 0) rc = tool_fill(g, s, pf_spec_1d(PF_F32, 4), pf_replicated(), 1, &v);
  for (int64_t i = 0; i < arg[0] && rc == 0; i++) rc = tool_op(g, "relu", s, 1, &v, &v);
  return rc ? rc : pf_graph_output(g, "y", v);
}

/* A fill of 4 floats and a relu on each of devices 0 and 1. */
static int g_two(pf_graph *g, const int64_t *arg) {
  int rc = 0;
  (void)arg;
  for (int d = 0; d < 2 && rc == 0; d++) {
    pf_slice_t s;
    pf_value_t v;
    char name[8];
    snprintf(name, sizeof name, "y%d", d);
    if ((rc = tool_slice1(g, d, &s)) == 0 &&
        (rc = tool_fill(g, s, pf_spec_1d(PF_F32, 4), pf_replicated(), 1, &v)) == 0 &&
        (rc = tool_op(g, "relu", s, 1, &v, &v)) == 0)
      rc = pf_graph_output(g, name, v);
  }
  return rc;
}

/* arg[1] ops of kernel arg[2] (0: matmul of arg[0] x arg[0], 1: add of
 * arg[0] floats), each reading the one before and a fixed second operand,
 * on devices 0 and 1 at once (replicated): the devices of a job compute
 * side by side, sharing the host's caches and memory bandwidth (on this VM
 * the figures came out within the noise of those taken on one device). */
static int g_kernel(pf_graph *g, const int64_t *arg) {
  pf_slice_t s;
  pf_value_t x, w;
  pf_spec spec = arg[2] == 0 ? pf_spec_2d(PF_F32, arg[0], arg[0]) : pf_spec_1d(PF_F32, arg[0]);
  int rc = tool_slice_all(g, 2, &s);
  if (rc == 0) rc = tool_fill(g, s, spec, pf_replicated(), 1e-3, &x);
  if (rc == 0) rc = tool_fill(g, s, spec, pf_replicated(), 1e-3, &w);
  for (int64_t i = 0; i < arg[1] && rc == 0; i++)
    rc = tool_op(g, arg[2] == 0 ? "matmul" : "add", s, 2, (pf_value_t[]){x, w}, &x);
  return rc ? rc : pf_graph_output(g, "y", x);
}

/* Transfers are timed as a chain of HOPS: one of them alone is the
 * difference of two medians of a ~20 us graph's time, and consecutive
 * calibrations put the 64 KiB and 256 KiB points up to 2x apart. */
#define HOPS 8

/* arg[0] floats made on device 0 then passed through HOPS relus on devices
 * 1, 0, 1, ... (arg[1] == 0: a transfer before each), or all on device 1
 * (arg[1] == 1: no transfer, the same kernels); a tiny fill and relu on
 * device 0 too, so that both ranks take part either way. */
static int g_xfer(pf_graph *g, const int64_t *arg) {
  pf_slice_t s0, s1;
  pf_value_t v, t;
  int rc = tool_slice1(g, 0, &s0);
  if (rc == 0) rc = tool_slice1(g, 1, &s1);
  if (rc == 0) rc = tool_fill(g, arg[1] ? s1 : s0, pf_spec_1d(PF_F32, arg[0]), pf_replicated(), 1, &v);
  for (int h = 0; h < HOPS && rc == 0; h++)
    rc = tool_op(g, "relu", arg[1] || h % 2 == 0 ? s1 : s0, 1, &v, &v);
  if (rc == 0) rc = tool_fill(g, s0, pf_spec_1d(PF_F32, 4), pf_replicated(), 1, &t);
  if (rc == 0) rc = tool_op(g, "relu", s0, 1, &t, &t);
  if (rc == 0) rc = pf_graph_output(g, "y", v);
  return rc ? rc : pf_graph_output(g, "t", t);
}

/* A block of arg[0] floats on each of devices 0 and 1, then (arg[1]) their
 * allreduce. */
static int g_allreduce(pf_graph *g, const int64_t *arg) {
  pf_slice_t s;
  pf_value_t v;
  int rc = tool_slice_all(g, 2, &s);
  if (rc == 0) rc = tool_fill(g, s, pf_spec_2d(PF_F32, 1, arg[0]), pf_split(0), 1, &v);
  if (rc == 0 && arg[1])
    rc = pf_graph_collective(g, &(pf_collective_desc){.kind = PF_ALLREDUCE, .slice = s, .in = v,
                                                       .op = PF_REDUCE_SUM},
                             &v, NULL);
  return rc ? rc : pf_graph_output(g, "y", v);
}

#define CHAIN 200

int tool_calibration_measure(tool_cal *c, tool_figures *f) {
  static const int64_t mm_n[] = {64, 128, 256}, mm_m[] = {32, 12, 4};
  static const int64_t add_n[] = {16384, 262144, 1048576}, add_m[] = {64, 16, 8};
  static const int64_t xfer_n[TOOL_TRANSFER_SIZES] = {4, 1024, 16384, 65536, 262144, 1048576}; /* floats */
  double t1, t2, rates[3], d[TOOL_TRANSFER_SIZES], x[TOOL_TRANSFER_SIZES];
  int rc;
  if ((rc = timed(c, g_chain, (int64_t[]){1}, &t1)) || (rc = timed(c, g_chain, (int64_t[]){1 + CHAIN}, &t2)))
    return rc;
  f->op_ns = PF_MAXOF(0.0, (t2 - t1) / CHAIN);
  cal_print(c, "op dispatch     %10.3f us   (a chain of %d relus: %.1f us, of 1: %.1f us)\n",
         f->op_ns * 1e-3, 1 + CHAIN, t2 * 1e-3, t1 * 1e-3);
  if ((rc = timed(c, g_two, NULL, &t1)) != 0) return rc;
  f->step_ns = PF_MAXOF(0.0, t1 - 2 * f->op_ns);
  cal_print(c, "step            %10.3f us   (2 tiny ops on each of 2 ranks: %.1f us)\n",
         f->step_ns * 1e-3, t1 * 1e-3);
  {
    pf_graph *g;
    if ((rc = pf_graph_create(c->ctx, &g)) != 0) return rc;
    if ((rc = g_two(g, NULL)) == 0)
      rc = tool_time_pipelined(c->ctx, g, 64 * c->reps, 16, &f->dispatch_ns, c->why, sizeof c->why);
    pf_graph_destroy(g);
    if (rc != 0) return rc;
  }
  cal_print(c, "dispatch        %10.3f us   (a run of that graph, 16 in flight)\n", f->dispatch_ns * 1e-3);
  for (int k = 0; k < 3; k++) {
    double n = (double)mm_n[k], per;
    if ((rc = timed(c, g_kernel, (int64_t[]){mm_n[k], 1, 0}, &t1)) ||
        (rc = timed(c, g_kernel, (int64_t[]){mm_n[k], 1 + mm_m[k], 0}, &t2)))
      return rc;
    per = PF_MAXOF(1.0, (t2 - t1) / (double)mm_m[k] - f->op_ns);
    rates[k] = 2 * n * n * n / (per * 1e-9);
    cal_print(c, "matmul %4" PRId64 "^3   %10.3f us   %8.2f GFLOP/s\n", mm_n[k], per * 1e-3,
           rates[k] * 1e-9);
  }
  f->flops = pf_median(rates, 3);
  for (int k = 0; k < 3; k++) {
    double per;
    if ((rc = timed(c, g_kernel, (int64_t[]){add_n[k], 1, 1}, &t1)) ||
        (rc = timed(c, g_kernel, (int64_t[]){add_n[k], 1 + add_m[k], 1}, &t2)))
      return rc;
    per = PF_MAXOF(1.0, (t2 - t1) / (double)add_m[k] - f->op_ns);
    rates[k] = 12.0 * (double)add_n[k] / (per * 1e-9);
    cal_print(c, "add %8" PRId64 "   %10.3f us   %8.2f GB/s (in + out)\n", add_n[k], per * 1e-3,
           rates[k] * 1e-9);
  }
  f->mem_bw = pf_median(rates, 3);
  for (int k = 0; k < TOOL_TRANSFER_SIZES; k++) {
    x[k] = 4.0 * (double)xfer_n[k];
    if ((rc = timed(c, g_xfer, (int64_t[]){xfer_n[k], 0}, &t1)) ||
        (rc = timed(c, g_xfer, (int64_t[]){xfer_n[k], 1}, &t2)))
      return rc;
    d[k] = (t1 - t2) / HOPS;
    cal_print(c, "transfer %8.0f B  %8.3f us  a hop of a chain of %d, more than on one device\n", x[k],
              d[k] * 1e-3, HOPS);
  }
  {
    /* Bandwidth: the best rate a transfer of 64 KiB or more reached,
     * bytes over its time less the latency; each size's cost beyond its
     * bytes at that rate is the runtime's per message (runtime.
     * transfer_by_size), so that the model gives every measured size its
     * measured time and interpolates between. (A line through all sizes
     * let 4 MiB set the fixed part of 64 KiB: 0 to 7 us from one
     * calibration to the next.) */
    double slope = 0;
    if ((rc = timed(c, g_allreduce, (int64_t[]){4, 0}, &t1)) ||
        (rc = timed(c, g_allreduce, (int64_t[]){4, 1}, &t2)))
      return rc;
    /* A ring of 2 is 2 steps of one latency each (docs/cluster-format.md). */
    f->latency_ns = PF_MINOF(PF_MAXOF(0.0, d[0]), PF_MAXOF(0.0, (t2 - t1) / 2));
    for (int k = 0; k < TOOL_TRANSFER_SIZES; k++)
      if (x[k] >= 65536 && d[k] > f->latency_ns) {
        double per_byte = (d[k] - f->latency_ns) / x[k];
        if (slope == 0 || per_byte < slope) slope = per_byte;
      }
    if (!(slope > 0)) slope = 1e-3; /* no measurable cost per byte: 1 TB/s */
    f->link_bw = 1e9 / slope;
    f->n_points = TOOL_TRANSFER_SIZES;
    for (int k = 0; k < TOOL_TRANSFER_SIZES; k++) {
      f->point_bytes[k] = x[k];
      f->point_ns[k] = PF_MAXOF(0.0, d[k] - f->latency_ns - x[k] * slope);
    }
    f->transfer_ns = f->point_ns[0];
    cal_print(c, "bandwidth       %10.3f GB/s (the best rate of a transfer of 64 KiB or more)\n",
              f->link_bw * 1e-9);
    cal_print(c, "allreduce 16 B  %10.3f us   -> link latency %.3f us\n", (t2 - t1) * 1e-3,
              f->latency_ns * 1e-3);
    for (int k = 0; k < TOOL_TRANSFER_SIZES; k++)
      cal_print(c, "per message %8.0f B  %8.3f us (beyond latency and bandwidth)\n", x[k],
                f->point_ns[k] * 1e-3);
  }
  if ((rc = timed(c, g_allreduce, (int64_t[]){262144, 0}, &t1)) ||
      (rc = timed(c, g_allreduce, (int64_t[]){262144, 1}, &t2)))
    return rc;
  f->ar_ns = t2 - t1;
  /* The replay's model on 2 devices: the ring's messages (half the vector
   * each way, twice), then its arithmetic (half the vector combined, 3
   * bytes of memory traffic each). */
  {
    pf_sim_cluster pts; /* only its message costs, for pf_sim_message_ns */
    memset(&pts, 0, sizeof pts);
    pts.n_transfer_points = f->n_points;
    for (int k = 0; k < f->n_points; k++) {
      pts.transfer_point_bytes[k] = (uint64_t)f->point_bytes[k];
      pts.transfer_point_ns[k] = (int64_t)llround(f->point_ns[k]);
    }
    f->ar_model_ns = 1048576.0 / f->link_bw * 1e9 +
                     2 * (f->latency_ns + (double)pf_sim_message_ns(&pts, 524288, 1)) +
                     3.0 * 524288 / f->mem_bw * 1e9;
  }
  cal_print(c, "allreduce 1 MiB %10.3f us   (the ring model with these figures: %.3f us)\n",
         f->ar_ns * 1e-3, f->ar_model_ns * 1e-3);
  return 0;
}

int tool_calibration_write(const char *path, const tool_figures *f, int ranks, pf_diag *d) {
  char text[4096], points[1024];
  size_t at = 0;
  points[0] = '\0';
  for (int k = 0; k < f->n_points && at < sizeof points; k++)
    at += (size_t)snprintf(points + at, sizeof points - at, "%s[%.0f, %.6g]", k ? ", " : "",
                           f->point_bytes[k], f->point_ns[k] * 1e-9);
  long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
  long cores = sysconf(_SC_NPROCESSORS_ONLN);
  double mem = pages > 0 && page > 0 ? (double)pages * (double)page / ranks : 1e9;
  int n = snprintf(
      text, sizeof text,
      "{\n"
      "  \"version\": 1,\n"
      "  \"name\": \"local\",\n"
      "  \"device_types\": {\n"
      "    \"core\": {\"kind\": \"cpu\", \"flops\": {\"f32\": %.6g},\n"
      "             \"memory\": %.0f, \"memory_bandwidth\": %.6g}\n"
      "  },\n"
      "  \"hosts\": [{\"count\": 1, \"ranks_per_host\": %d, \"devices_per_rank\": 1, \"cores\": %ld}],\n"
      "  \"links\": {\n"
      "    \"intra_host\": {\"bandwidth\": %.6g, \"latency\": %.6g},\n"
      "    \"nic\": {\"bandwidth\": %.6g, \"latency\": %.6g}\n"
      "  },\n"
      "  \"runtime\": {\"op_dispatch\": %.6g, \"transfer\": %.6g, \"step\": %.6g,\n"
      "              \"dispatch\": %.6g,\n"
      "              \"transfer_by_size\": [%s]}\n"
      "}\n",
      f->flops, floor(mem), f->mem_bw, ranks, cores > 0 ? cores : 1, f->link_bw,
      f->latency_ns * 1e-9, f->link_bw,
      f->latency_ns * 1e-9, f->op_ns * 1e-9, f->transfer_ns * 1e-9, f->step_ns * 1e-9,
      f->dispatch_ns * 1e-9, points);
  size_t len = (size_t)n;
  const void *parts[] = {text};
  return pf_file_write_atomic(path, parts, &len, 1, d);
}

