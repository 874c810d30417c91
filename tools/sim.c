/* pathflow sim: a graph compiled for a described cluster and replayed in
 * virtual time, or Chakra traces replayed (docs/cli.md). */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/file.h"
#include "base/util.h"
#include "graph/graph_codec.h"
#include "sim/chakra_export.h"
#include "sim/replay.h"
#include "sim/sched_cluster.h"
#include "tools/timeline.h"
#include "tools/tool.h"

const char tool_sim_usage[] =
    "usage: pathflow sim --cluster FILE|PRESET (GRAPH.pb | --example NAME | --import-chakra PREFIX)\n"
    "         [--devices N] [--steps T] [--algo ring|ring_flows|tree|double_tree|hierarchical]\n"
    "         [--trace OUT.json] [--export-chakra PREFIX] [--svg OUT.svg]\n"
    "         [--compare REAL_TRACE.json [--compare-out BOTH.json]]\n"
    "  Compiles a graph for a described cluster (a JSON file, docs/cluster-format.md,\n"
    "  or a preset: local, dgx-h100, palm) with the scheduler of a real run, and\n"
    "  replays one execution of it in virtual time; or replays Chakra traces\n"
    "  PREFIX.0.et, PREFIX.1.et, ... Prints the makespan, each device's busy and\n"
    "  exposed communication time, bytes per class of link and the critical path.\n"
    "  --example NAME: a built-in graph (mlp, pipeline, stencil, train) over N devices\n"
    "  (all the cluster's), T steps (train: T microbatches). --algo: the allreduce\n"
    "  algorithm (ring; ring_flows: the ring flow by flow, the reference). --trace:\n"
    "  a Chrome trace of the run (Perfetto).\n"
    "  --export-chakra: the plans as traces.\n"
    "  --svg: a Gantt chart of the run (compute and communication per device).\n"
    "  --compare: a real run's trace (PATHFLOW_TRACE) of the same graph: prints each\n"
    "  step's and each op's error; --compare-out writes both into one Chrome trace.\n";

typedef struct sim_args {
  const char *cluster, *graph, *example, *import, *trace, *chakra, *svg, *compare, *compare_out;
  int64_t devices, steps;
  int algo;
} sim_args;

static int bad(const char *opt, const char *value, const char *want) {
  fprintf(stderr, "pathflow sim: %s \"%s\": expected %s\n", opt, value, want);
  return 2;
}

static int parse(int argc, char **argv, sim_args *a) {
  *a = (sim_args){.devices = 0, .steps = 4, .algo = PF_SIM_RING};
  for (int i = 2; i < argc; i++) {
    const char *o = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (o[0] != '-' && a->graph == NULL) {
      a->graph = o;
      continue;
    }
    if (v == NULL) {
      fputs(tool_sim_usage, stderr);
      return 2;
    }
    i++;
    if (strcmp(o, "--cluster") == 0) a->cluster = v;
    else if (strcmp(o, "--example") == 0) a->example = v;
    else if (strcmp(o, "--import-chakra") == 0) a->import = v;
    else if (strcmp(o, "--trace") == 0) a->trace = v;
    else if (strcmp(o, "--export-chakra") == 0) a->chakra = v;
    else if (strcmp(o, "--svg") == 0) a->svg = v;
    else if (strcmp(o, "--compare") == 0) a->compare = v;
    else if (strcmp(o, "--compare-out") == 0) a->compare_out = v;
    else if (strcmp(o, "--devices") == 0) {
      if (pf_parse_int(v, 1, 100000000, &a->devices) != 0)
        return bad(o, v, "an integer in [1, 100000000]");
    } else if (strcmp(o, "--steps") == 0) {
      if (pf_parse_int(v, 1, 1000000, &a->steps) != 0)
        return bad(o, v, "an integer in [1, 1000000]");
    } else if (strcmp(o, "--algo") == 0) {
      if ((a->algo = pf_sim_algo_parse(v)) < 0)
        return bad(o, v, "ring, tree, double_tree or hierarchical");
    } else {
      fputs(tool_sim_usage, stderr);
      return 2;
    }
  }
  if (a->cluster == NULL || (a->graph != NULL) + (a->example != NULL) + (a->import != NULL) != 1) {
    fprintf(stderr, "pathflow sim: needs --cluster and one of GRAPH.pb, --example, "
                    "--import-chakra\n");
    fputs(tool_sim_usage, stderr);
    return 2;
  }
  return 0;
}

/* PREFIX.0.et, PREFIX.1.et, ... up to the first that does not exist. */
static int import_traces(const char *prefix, pf_chakra_trace ***out, int64_t *n, pf_diag *d) {
  pf_chakra_trace **t = NULL;
  size_t cap = 0;
  *n = 0;
  for (;;) {
    char path[4096];
    FILE *f;
    int rc;
    snprintf(path, sizeof path, "%s.%" PRId64 ".et", prefix, *n);
    if ((f = fopen(path, "rb")) == NULL) break;
    fclose(f);
    if (pf_grow((void **)&t, &cap, (size_t)*n + 1, sizeof *t) != 0) {
      rc = pf_diag_error(d, PF_ENOMEM, "out of memory");
    } else {
      rc = pf_chakra_read(path, &t[*n], d);
    }
    if (rc != 0) {
      for (int64_t k = 0; k < *n; k++) pf_chakra_free(t[k]);
      free(t);
      return rc;
    }
    (*n)++;
  }
  if (*n == 0) {
    free(t);
    return pf_diag_error(d, PF_ENOTFOUND, "no trace %s.0.et", prefix);
  }
  *out = t;
  return 0;
}

/* The graph (a file or an example), compiled for the cluster, as traces. */
static int graph_traces(const sim_args *a, const pf_sim_cluster *cl, pf_chakra_trace ***out,
                        int64_t *n, pf_compiled **comp, pf_diag *d) {
  int64_t devices = a->devices > 0 ? a->devices : cl->devices;
  pf_cluster sc = {0};
  pf_graph_env env;
  pf_graph *g = NULL;
  int rc;
  if (devices > cl->devices)
    return pf_diag_error(d, PF_EINVAL, "--devices %" PRId64 ": cluster %s has %" PRId64,
                         devices, cl->name, cl->devices);
  if ((rc = pf_sim_sched_cluster(cl, devices, PF_DEVICE_CPU, &sc, d)) != 0) return rc;
  if ((rc = tool_env(sc.n_devices, &env, d)) != 0) goto out;
  if (a->example) {
    rc = tool_example(a->example, sc.n_devices, (int)a->steps, &env, &g);
  } else {
    uint8_t *buf;
    size_t len;
    if ((rc = pf_file_read(a->graph, &buf, &len, d)) == 0) {
      rc = pf_graph_decode_env(&env, buf, len, &g, d);
      free(buf);
    }
  }
  if (rc == 0) rc = pf_schedule(g, &sc, 1, comp, d);
  if (rc == 0) rc = pf_chakra_from_plans(*comp, &sc, env.registry, out, d);
  if (rc == 0 && a->chakra) rc = pf_chakra_export(*comp, &sc, env.registry, a->chakra, d);
  *n = sc.n_devices;
  pf_graph_destroy(g);
  pf_registry_destroy(env.registry);
out:
  free(sc.devices);
  return rc;
}

static double pct(pf_simtime part, pf_simtime whole) {
  return whole > 0 ? 100.0 * (double)part / (double)whole : 0;
}

static void report(const pf_sim_result *r, const pf_sim_cluster *cl, const pf_compiled *comp,
                   double prep_s, double wall_s) {
  static const char *const kinds[] = {"", "", "load", "store", "compute", "send", "recv",
                                      "collective"};
  pf_simtime busy_min = INT64_MAX, busy_max = 0, exp_max = 0;
  double busy_sum = 0, exp_sum = 0, path_comp = 0;
  for (int64_t dv = 0; dv < r->n_devices; dv++) {
    busy_min = PF_MINOF(busy_min, r->busy[dv]);
    busy_max = PF_MAXOF(busy_max, r->busy[dv]);
    exp_max = PF_MAXOF(exp_max, r->exposed[dv]);
    busy_sum += (double)r->busy[dv];
    exp_sum += (double)r->exposed[dv];
  }
  printf("cluster %s: %" PRId64 " devices simulated\n", cl->name, r->n_devices);
  printf("makespan: %.3f ms (one execution)\n", (double)r->makespan * 1e-6);
  printf("devices busy: %.1f%% on average (min %.1f%%, max %.1f%%), idle or waiting the rest\n",
         pct((pf_simtime)(busy_sum / (double)r->n_devices), r->makespan),
         pct(busy_min, r->makespan), pct(busy_max, r->makespan));
  printf("exposed communication: %.1f%% of the makespan on average, %.1f%% at most\n",
         pct((pf_simtime)(exp_sum / (double)r->n_devices), r->makespan),
         pct(exp_max, r->makespan));
  if (r->n_devices <= 16) {
    printf("%8s %10s %10s %10s %10s\n", "device", "busy_ms", "comm_ms", "exposed_ms",
           "peak_MiB");
    for (int64_t dv = 0; dv < r->n_devices; dv++)
      printf("%8" PRId64 " %10.3f %10.3f %10.3f %10.3f\n", dv, (double)r->busy[dv] * 1e-6,
             (double)r->comm[dv] * 1e-6, (double)r->exposed[dv] * 1e-6,
             comp ? (double)comp->peak[dv] / 1048576.0 : 0.0);
  }
  printf("link bytes: intra-host %.3g, NIC %.3g, DCN %.3g\n",
         r->net.bytes[PF_SIMNET_INTRA_HOST], r->net.bytes[PF_SIMNET_NIC],
         r->net.bytes[PF_SIMNET_DCN]);
  for (uint32_t k = 0; k < r->n_path; k++)
    if (r->path[k].type < PF_CHAKRA_SEND) path_comp += (double)(r->path[k].end - r->path[k].start);
  printf("critical path: %u nodes, %.1f%% of the makespan computing\n", r->n_path,
         pct((pf_simtime)path_comp, r->makespan));
  for (uint32_t k = 0; k < r->n_path; k++) {
    const pf_sim_path_node *p = &r->path[k];
    if (r->n_path > 12 && k == 6) {
      printf("  ... %u more ...\n", r->n_path - 12);
      k = r->n_path - 6;
      p = &r->path[k];
    }
    printf("  %10.3f ms %-10s device %-6" PRId64 " %s\n", (double)p->start * 1e-6,
           kinds[p->type], p->device, p->name);
  }
  printf("simulation: %" PRIu64 " nodes, %" PRIu64 " events in %.3f s (%.2f M events/s); "
         "%s %.3f s before\n", r->nodes, r->events, wall_s,
         wall_s > 0 ? (double)r->events / wall_s * 1e-6 : 0,
         comp ? "compiling the graph and making its traces took" : "reading the traces took",
         prep_s);
}

/* --svg and --compare, from the simulated timeline (the --trace file, or
 * text[0..len)). */
static int timeline_outputs(const sim_args *a, const char *text, size_t len, pf_diag *d) {
  tl_trace *sim = NULL, *real = NULL;
  FILE *f = NULL;
  int rc = a->trace ? tl_load(a->trace, &sim, d) : tl_parse(text, len, "the simulation", &sim, d);
  if (rc == 0 && a->svg) {
    if ((f = fopen(a->svg, "w")) == NULL) rc = pf_diag_error(d, PF_ESYS, "cannot write %s", a->svg);
    else if ((rc = tl_svg(sim, f, 256)) != 0 || fclose(f) != 0)
      rc = pf_diag_error(d, PF_ESYS, "writing %s failed", a->svg);
    if (rc == 0) printf("wrote %s (SVG Gantt chart)\n", a->svg);
    f = NULL;
  }
  if (rc == 0 && a->compare && (rc = tl_load(a->compare, &real, d)) == 0) {
    if (a->compare_out && (f = fopen(a->compare_out, "w")) == NULL)
      rc = pf_diag_error(d, PF_ESYS, "cannot write %s", a->compare_out);
    if (rc == 0) rc = tl_compare(real, sim, -1, stdout, f, d);
    if (f && fclose(f) != 0 && rc == 0)
      rc = pf_diag_error(d, PF_ESYS, "writing %s failed", a->compare_out);
    if (rc == 0 && f)
      printf("wrote %s (the real run's median step and the simulation: open it in Perfetto)\n",
             a->compare_out);
  }
  tl_free(sim);
  tl_free(real);
  return rc;
}

int tool_sim(int argc, char **argv) {
  sim_args a;
  pf_sim_cluster *cl = NULL;
  pf_chakra_trace **t = NULL;
  pf_compiled *comp = NULL;
  pf_sim_result *r = NULL;
  pf_diag d;
  int64_t n = 0;
  uint64_t t0, t1 = 0;
  FILE *trace = NULL;
  char *timeline = NULL; /* the simulated timeline, when not in a --trace file */
  size_t timeline_len = 0;
  int rc;
  for (int i = 2; i < argc; i++)
    if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
      fputs(tool_sim_usage, stdout);
      return 0;
    }
  if ((rc = parse(argc, argv, &a)) != 0) return rc;
  pf_diag_init(&d);
  if ((rc = pf_sim_cluster_load(a.cluster, &cl, &d)) != 0) {
    fprintf(stderr, "pathflow sim: --cluster %s: %s\n", a.cluster, d.msg);
    return 1;
  }
  t0 = pf_now_ns();
  rc = a.import ? import_traces(a.import, &t, &n, &d) : graph_traces(&a, cl, &t, &n, &comp, &d);
  if (rc == 0 && a.trace && (trace = fopen(a.trace, "w")) == NULL)
    rc = pf_diag_error(&d, PF_ESYS, "cannot write %s", a.trace);
  if (rc == 0 && !a.trace && (a.svg || a.compare) &&
      (trace = open_memstream(&timeline, &timeline_len)) == NULL)
    rc = pf_diag_error(&d, PF_ENOMEM, "out of memory");
  t1 = pf_now_ns();
  if (rc == 0)
    rc = pf_sim_replay(t, n, cl,
                       &(pf_sim_options){.algo = (pf_sim_algo)a.algo, .chunks = 4,
                                         .trace = trace},
                       &r, &d);
  if (trace && fclose(trace) != 0 && rc == 0)
    rc = pf_diag_error(&d, PF_ESYS, "writing %s failed", a.trace ? a.trace : "the timeline");
  if (rc == 0) {
    report(r, cl, comp, (double)(t1 - t0) * 1e-9, (double)(pf_now_ns() - t1) * 1e-9);
    if (a.trace) printf("wrote %s (Chrome trace: open it in Perfetto)\n", a.trace);
    if (a.chakra) printf("wrote %s.0.et .. %s.%" PRId64 ".et\n", a.chakra, a.chakra, n - 1);
    if (a.svg || a.compare) rc = timeline_outputs(&a, timeline, timeline_len, &d);
  }
  if (rc != 0) fprintf(stderr, "pathflow sim: %s (%s)\n", d.msg, pf_errname(rc));
  for (int64_t k = 0; k < n && t; k++) pf_chakra_free(t[k]);
  free(t);
  free(timeline);
  pf_sim_result_free(r);
  pf_compiled_free(comp);
  pf_sim_cluster_free(cl);
  return rc == 0 ? 0 : 1;
}
