/* Real runs timed, and the same graphs simulated (see measure.h). */
#include "tools/measure.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/util.h"
#include "graph/graph_internal.h"
#include "scheduler/schedule.h"
#include "sim/chakra_export.h"
#include "sim/sched_cluster.h"

int tool_slice1(pf_graph *g, int device, pf_slice_t *out) {
  int rc = pf_graph_slice(g, PF_DEVICE_CPU, 1, out);
  return rc ? rc : pf_graph_slice_pin(g, *out, &device);
}

int tool_slice_all(pf_graph *g, int n, pf_slice_t *out) {
  int *devs = malloc((size_t)n * sizeof *devs), rc;
  if (devs == NULL) return PF_ENOMEM;
  for (int i = 0; i < n; i++) devs[i] = i;
  if ((rc = pf_graph_slice(g, PF_DEVICE_CPU, n, out)) == 0) rc = pf_graph_slice_pin(g, *out, devs);
  free(devs);
  return rc;
}

int tool_fill(pf_graph *g, pf_slice_t slice, pf_spec spec, pf_sharding sharding, double value,
              pf_value_t *out) {
  pf_attrs *a;
  int64_t dims[PF_MAX_RANK];
  int rc;
  if ((rc = pf_attrs_create(&a)) != 0) return rc;
  for (int i = 0; i < spec.rank; i++) dims[i] = spec.dims[i];
  if ((rc = pf_attrs_set_ints(a, "shape", dims, spec.rank)) == 0 &&
      (rc = pf_attrs_set_int(a, "dtype", spec.dtype)) == 0 &&
      (rc = pf_attrs_set_float(a, "value", value)) == 0)
    rc = pf_graph_program(g, &(pf_program_desc){.kernel = "fill", .attrs = a, .slice = slice,
                                                 .out_shardings = &sharding},
                          out, NULL);
  pf_attrs_destroy(a);
  return rc;
}

int tool_op(pf_graph *g, const char *kernel, pf_slice_t slice, int n, const pf_value_t *in,
            pf_value_t *out) {
  pf_value_t outs[PF_MAX_ARGS];
  int rc = pf_graph_program(g, &(pf_program_desc){.kernel = kernel, .slice = slice, .n_in = n,
                                                   .in = in},
                            outs, NULL);
  if (rc == 0) *out = outs[0];
  return rc;
}

int tool_time_graph(pf_context *ctx, pf_graph *g, int warmup, int reps, double *median_ns,
                    char *why, size_t why_len) {
  pf_executable *exe;
  double t[256];
  int rc;
  if (reps < 1 || reps > 256) return PF_EINVAL;
  if ((rc = pf_compile(g, &exe)) != 0) {
    snprintf(why, why_len, "pf_compile: %s", pf_last_error(ctx));
    return rc;
  }
  for (int i = -warmup; i < reps && rc == 0; i++) {
    pf_future *f;
    uint64_t t0 = pf_now_ns();
    if ((rc = pf_execute(exe, 0, NULL, &f)) != 0) {
      snprintf(why, why_len, "pf_execute: %s", pf_last_error(ctx));
      break;
    }
    if ((rc = pf_future_wait(f)) != 0) snprintf(why, why_len, "%s", pf_future_error(f));
    pf_future_destroy(f);
    if (i >= 0) t[i] = (double)(pf_now_ns() - t0);
  }
  pf_executable_destroy(exe);
  if (rc == 0) {
    *median_ns = pf_median(t, (size_t)reps);
  }
  return rc;
}

int tool_time_pipelined(pf_context *ctx, pf_graph *g, int runs, int window, double *per_run_ns,
                        char *why, size_t why_len) {
  pf_executable *exe;
  pf_future *ring[64];
  uint64_t t0 = 0;
  int rc, started = 0, done = 0;
  if (runs < 1 || window < 1 || window > 64) return PF_EINVAL;
  if ((rc = pf_compile(g, &exe)) != 0) {
    snprintf(why, why_len, "pf_compile: %s", pf_last_error(ctx));
    return rc;
  }
  /* The first window's runs warm up; the clock starts when the first is done. */
  while (rc == 0 && done < runs + window) {
    if (started < runs + window && started - done < window) {
      if ((rc = pf_execute(exe, 0, NULL, &ring[started % window])) != 0)
        snprintf(why, why_len, "pf_execute: %s", pf_last_error(ctx));
      else
        started++;
      continue;
    }
    if ((rc = pf_future_wait(ring[done % window])) != 0)
      snprintf(why, why_len, "%s", pf_future_error(ring[done % window]));
    pf_future_destroy(ring[done % window]);
    if (++done == window) t0 = pf_now_ns();
  }
  while (done < started) pf_future_destroy(ring[done++ % window]); /* after an error */
  pf_executable_destroy(exe);
  if (rc == 0) *per_run_ns = (double)(pf_now_ns() - t0) / runs;
  return rc;
}

int tool_simulate(pf_graph *g, const pf_sim_cluster *cl, int64_t devices,
                  const pf_sim_options *opt, pf_sim_result **out, pf_diag *d) {
  pf_cluster sc = {0};
  pf_compiled *comp = NULL;
  pf_chakra_trace **t = NULL;
  pf_sim_options dflt = {.algo = PF_SIM_RING, .chunks = 4};
  int rc;
  *out = NULL;
  if ((rc = pf_sim_sched_cluster(cl, devices, PF_DEVICE_CPU, &sc, d)) != 0) return rc;
  if ((rc = pf_schedule(g, &sc, 1, &comp, d)) == 0 &&
      (rc = pf_chakra_from_plans(comp, &sc, g->env.registry, &t, d)) == 0)
    rc = pf_sim_replay(t, sc.n_devices, cl, opt ? opt : &dflt, out, d);
  for (int k = 0; t && k < sc.n_devices; k++) pf_chakra_free(t[k]);
  free(t);
  pf_compiled_free(comp);
  free(sc.devices);
  return rc;
}
