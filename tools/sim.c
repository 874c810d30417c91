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
#include "sim/workload.h"
#include "tools/timeline.h"
#include "tools/tool.h"

const char tool_sim_usage[] =
    "usage: pathflow sim --cluster FILE|PRESET (GRAPH.pb | --example NAME | --import-chakra PREFIX)\n"
    "         [--devices N] [--steps T] [--algo ring|ring_flows|tree|double_tree|hierarchical]\n"
    "         [--trace OUT.json] [--export-chakra PREFIX] [--svg OUT.svg]\n"
    "         [--compare REAL_TRACE.json [--compare-out BOTH.json]]\n"
    "         [--runs N] [--dispatch parallel|sequential] [--weight W]\n"
    "         [--tenant GRAPH.pb|example:NAME[@WEIGHT]]...\n"
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
    "  step's and each op's error; --compare-out writes both into one Chrome trace.\n"
    "  --runs: N executions of each graph, sent one after another by the controller\n"
    "  (on device 0) at runtime.dispatch each. --dispatch: send a run to the\n"
    "  pipeline's stages at once, or each once the one before started (default: the\n"
    "  graph's own mode). --tenant: another graph sharing the devices (repeat it),\n"
    "  with its weight; --weight: the first graph's (1). Runs are sent in stride\n"
    "  order by weight; prints each tenant's runs, span and share of the time.\n";

#define MAX_TENANTS 16

typedef struct sim_args {
  const char *cluster, *graph, *example, *import, *trace, *chakra, *svg, *compare, *compare_out;
  int64_t devices, steps, runs;
  int algo;
  int dispatch; /* -1: the graph's own; else pf_dispatch_mode */
  double weight;
  /* --tenant: graph files or examples, and their weights */
  const char *tenant[MAX_TENANTS];
  double tenant_weight[MAX_TENANTS];
  int n_tenants;
} sim_args;

/* GRAPH.pb or example:NAME, then @WEIGHT or nothing. */
static int parse_tenant(const char *v, sim_args *a) {
  const char *at = strrchr(v, '@');
  char *end;
  if (a->n_tenants == MAX_TENANTS) return 0;
  a->tenant_weight[a->n_tenants] = 1;
  if (at != NULL) {
    double w = strtod(at + 1, &end);
    if (at[1] == '\0' || *end != '\0' || !(w > 0) || w > 1e9) return 0;
    a->tenant_weight[a->n_tenants] = w;
  }
  a->tenant[a->n_tenants++] = v;
  return 1;
}

static int bad(const char *opt, const char *value, const char *want) {
  fprintf(stderr, "pathflow sim: %s \"%s\": expected %s\n", opt, value, want);
  return 2;
}

static int parse(int argc, char **argv, sim_args *a) {
  *a = (sim_args){.devices = 0, .steps = 4, .algo = PF_SIM_RING, .runs = 1, .dispatch = -1,
                  .weight = 1};
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
    } else if (strcmp(o, "--runs") == 0) {
      if (pf_parse_int(v, 1, 1000000, &a->runs) != 0)
        return bad(o, v, "an integer in [1, 1000000]");
    } else if (strcmp(o, "--dispatch") == 0) {
      if (strcmp(v, "parallel") == 0) a->dispatch = PF_DISPATCH_PARALLEL;
      else if (strcmp(v, "sequential") == 0) a->dispatch = PF_DISPATCH_SEQUENTIAL;
      else return bad(o, v, "parallel or sequential");
    } else if (strcmp(o, "--weight") == 0) {
      char *end;
      a->weight = strtod(v, &end);
      if (*end != '\0' || !(a->weight > 0) || a->weight > 1e9)
        return bad(o, v, "a number > 0");
    } else if (strcmp(o, "--tenant") == 0) {
      if (!parse_tenant(v, a))
        return bad(o, v, "GRAPH.pb or example:NAME, then @WEIGHT (> 0) or nothing, at most 16 times");
    } else if (strcmp(o, "--algo") == 0) {
      if ((a->algo = pf_sim_algo_parse(v)) < 0)
        return bad(o, v, "ring, tree, double_tree or hierarchical");
    } else {
      fputs(tool_sim_usage, stderr);
      return 2;
    }
  }
  if (a->compare && (a->runs > 1 || a->n_tenants > 0)) {
    fprintf(stderr, "pathflow sim: --compare sets one execution beside a real run's steps: "
                    "not with --runs or --tenant\n");
    return 2;
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

/* One graph (a file, or an example when `example` is set), compiled for
 * the cluster, as traces; *stage_of (when not NULL) gets each device's
 * place in the graph's dispatch order (its rank's; -1: not used). */
static int source_traces(const sim_args *a, const char *graph, const char *example,
                         const pf_sim_cluster *cl, pf_chakra_trace ***out, int64_t *n,
                         pf_compiled **comp, int32_t **stage_of, pf_diag *d) {
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
  if (example) {
    rc = tool_example(example, sc.n_devices, (int)a->steps, &env, &g);
  } else {
    uint8_t *buf;
    size_t len;
    if ((rc = pf_file_read(graph, &buf, &len, d)) == 0) {
      rc = pf_graph_decode_env(&env, buf, len, &g, d);
      free(buf);
    }
  }
  if (rc == 0) rc = pf_schedule(g, &sc, 1, comp, d);
  if (rc == 0) rc = pf_chakra_from_plans(*comp, &sc, env.registry, out, d);
  if (rc == 0 && a->chakra && graph == a->graph && example == a->example)
    rc = pf_chakra_export(*comp, &sc, env.registry, a->chakra, d);
  if (rc == 0 && stage_of != NULL) {
    /* Each rank's stage first: devices x stages would be 9 M steps at PaLM's size. */
    int32_t *of_rank = pf_mallocn((size_t)sc.n_ranks + 1, sizeof *of_rank);
    if (of_rank == NULL ||
        (*stage_of = pf_mallocn((size_t)sc.n_devices, sizeof **stage_of)) == NULL) {
      rc = pf_diag_error(d, PF_ENOMEM, "out of memory");
    } else {
      for (int r = 0; r < sc.n_ranks; r++) of_rank[r] = -1;
      for (int k = 0; k < (*comp)->n_stages; k++)
        if ((*comp)->stages[k] >= 0 && (*comp)->stages[k] < sc.n_ranks)
          of_rank[(*comp)->stages[k]] = k;
      for (int dv = 0; dv < sc.n_devices; dv++) (*stage_of)[dv] = of_rank[sc.devices[dv].rank];
    }
    free(of_rank);
  }
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
  if (r->n_runs > 0)
    printf("makespan: %.3f ms (%" PRId64 " runs)\n", (double)r->makespan * 1e-6, r->n_runs);
  else
    printf("makespan: %.3f ms (one execution)\n", (double)r->makespan * 1e-6);
  printf("devices busy: %.1f%% on average (min %.1f%%, max %.1f%%), idle or waiting the rest\n",
         pct((pf_simtime)(busy_sum / (double)r->n_devices), r->makespan),
         pct(busy_min, r->makespan), pct(busy_max, r->makespan));
  printf("exposed communication: %.1f%% of the makespan on average, %.1f%% at most\n",
         pct((pf_simtime)(exp_sum / (double)r->n_devices), r->makespan),
         pct(exp_max, r->makespan));
  {
    /* The bubble as train_pipeline measures it: the share of (devices that
     * compute x makespan) in which they compute nothing. */
    int64_t active = 0;
    double busy_active = 0;
    for (int64_t dv = 0; dv < r->n_devices; dv++)
      if (r->busy[dv] > 0) {
        active++;
        busy_active += (double)r->busy[dv];
      }
    if (active > 0 && r->makespan > 0)
      printf("bubble: %.1f%% of %" PRId64 " computing devices x the makespan idle\n",
             100.0 * (1.0 - busy_active / ((double)active * (double)r->makespan)), active);
  }
  if (comp != NULL && r->n_devices > 0) {
    int64_t top = 0;
    double sum = 0;
    for (int64_t dv = 0; dv < r->n_devices; dv++) {
      sum += (double)comp->peak[dv];
      if (comp->peak[dv] > comp->peak[top]) top = dv;
    }
    printf("peak memory (one execution's plan): %.3f MiB at most (device %" PRId64
           "), %.3f MiB on average\n", (double)comp->peak[top] / 1048576.0, top,
           sum / (double)r->n_devices / 1048576.0);
  }
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
           p->type == PF_CHAKRA_DELAY ? "wait" : kinds[p->type], p->device, p->name);
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

/* Each tenant's runs: how many, the first start and the last end, the
 * mean time of one, and runs per second up to its last end. */
static void report_workload(const pf_sim_result *r, const pf_sim_workload *w,
                            const sim_args *a, int n_tenants) {
  printf("%-24s %7s %5s %12s %12s %12s %12s\n", "tenant", "weight", "runs", "first_ms",
         "last_ms", "mean_run_ms", "runs_per_s");
  for (int k = 0; k < n_tenants; k++) {
    pf_simtime first = PF_SIMTIME_MAX, last = 0, sum = 0;
    int64_t runs = 0;
    for (int64_t j = 0; j < w->n_runs; j++) {
      if (w->run_tenant[j] != k) continue;
      first = PF_MINOF(first, r->run_start[j]);
      last = PF_MAXOF(last, r->run_end[j]);
      sum += r->run_end[j] - r->run_start[j];
      runs++;
    }
    printf("%-24.24s %7.3g %5" PRId64 " %12.3f %12.3f %12.3f %12.1f\n",
           k == 0 ? (a->example ? a->example : a->graph ? a->graph : a->import) : a->tenant[k - 1],
           k == 0 ? a->weight : a->tenant_weight[k - 1], runs, (double)first * 1e-6,
           (double)last * 1e-6, runs ? (double)sum / (double)runs * 1e-6 : 0.0,
           last > 0 ? (double)runs / ((double)last * 1e-9) : 0.0);
  }
  if (w->n_runs <= 24)
    for (int64_t j = 0; j < w->n_runs; j++)
      printf("  run %-4" PRId64 " tenant %d: %10.3f .. %10.3f ms\n", j, w->run_tenant[j],
             (double)r->run_start[j] * 1e-6, (double)r->run_end[j] * 1e-6);
}

/* Everything a workload is made of, freed together. */
typedef struct tenants {
  pf_sim_tenant t[MAX_TENANTS + 1];
  pf_chakra_trace **traces[MAX_TENANTS + 1];
  pf_compiled *comp[MAX_TENANTS + 1];
  int32_t *stage_of[MAX_TENANTS + 1];
  int64_t n_traces[MAX_TENANTS + 1];
  int n;
} tenants;

static void tenants_free(tenants *ts) {
  /* tenant 0's traces and compiled graph are the caller's */
  for (int k = 1; k < ts->n; k++) {
    for (int64_t i = 0; ts->traces[k] && i < ts->n_traces[k]; i++) pf_chakra_free(ts->traces[k][i]);
    free(ts->traces[k]);
    pf_compiled_free(ts->comp[k]);
  }
  for (int k = 0; k < ts->n; k++) free(ts->stage_of[k]);
}

/* The first graph (traces t, compiled comp and stage_of: NULL when
 * imported) and the --tenant graphs, as one workload over n devices. */
static int make_workload(const sim_args *a, const pf_sim_cluster *cl, pf_chakra_trace **t,
                         int64_t n, const pf_compiled *comp, int32_t *stage_of, tenants *ts,
                         pf_sim_workload **w, pf_diag *d) {
  int rc = 0;
  memset(ts, 0, sizeof *ts);
  ts->stage_of[0] = stage_of; /* ts's from now on */
  ts->traces[0] = t;
  ts->n_traces[0] = n;
  ts->n = 1;
  for (int k = 0; k < a->n_tenants && rc == 0; k++) {
    const char *spec = a->tenant[k];
    char path[4096];
    size_t len = strcspn(spec, "@");
    int64_t m = 0;
    snprintf(path, sizeof path, "%.*s", (int)len, spec);
    rc = strncmp(path, "example:", 8) == 0
             ? source_traces(a, NULL, path + 8, cl, &ts->traces[k + 1], &m, &ts->comp[k + 1],
                             &ts->stage_of[k + 1], d)
             : source_traces(a, path, NULL, cl, &ts->traces[k + 1], &m, &ts->comp[k + 1],
                             &ts->stage_of[k + 1], d);
    ts->n_traces[k + 1] = m;
    ts->n = k + 2;
    if (rc == 0 && m != n)
      rc = pf_diag_error(d, PF_EINVAL, "--tenant %s: %" PRId64 " devices, the first graph %" PRId64,
                         spec, m, n);
  }
  for (int k = 0; k < ts->n && rc == 0; k++) {
    const pf_compiled *c = k == 0 ? comp : ts->comp[k];
    ts->t[k] = (pf_sim_tenant){
        .traces = ts->traces[k],
        .stage_of = ts->stage_of[k],
        .weight = k == 0 ? a->weight : a->tenant_weight[k - 1],
        .runs = a->runs,
        .sequential = a->dispatch >= 0 ? a->dispatch == PF_DISPATCH_SEQUENTIAL
                                       : c != NULL && c->dispatch == PF_DISPATCH_SEQUENTIAL};
  }
  if (rc == 0) rc = pf_sim_workload_build(ts->t, ts->n, n, cl, w, d);
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
  int32_t *stage_of = NULL;
  pf_sim_workload *w = NULL;
  tenants ts = {.n = 0}; /* freed at the end even when make_workload never ran */
  int rc, workload = 0;
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
  workload = a.runs > 1 || a.n_tenants > 0 || a.dispatch >= 0;
  rc = a.import ? import_traces(a.import, &t, &n, &d)
                : source_traces(&a, a.graph, a.example, cl, &t, &n, &comp, &stage_of, &d);
  if (rc == 0 && workload) {
    rc = make_workload(&a, cl, t, n, comp, stage_of, &ts, &w, &d);
    stage_of = NULL;
  }
  if (rc == 0 && a.trace && (trace = fopen(a.trace, "w")) == NULL)
    rc = pf_diag_error(&d, PF_ESYS, "cannot write %s", a.trace);
  if (rc == 0 && !a.trace && (a.svg || a.compare) &&
      (trace = open_memstream(&timeline, &timeline_len)) == NULL)
    rc = pf_diag_error(&d, PF_ENOMEM, "out of memory");
  t1 = pf_now_ns();
  if (rc == 0)
    rc = pf_sim_replay(w ? w->traces : t, n, cl,
                       &(pf_sim_options){.algo = (pf_sim_algo)a.algo, .chunks = 4,
                                         .trace = trace, .runs = w ? w->n_runs : 0},
                       &r, &d);
  if (trace && fclose(trace) != 0 && rc == 0)
    rc = pf_diag_error(&d, PF_ESYS, "writing %s failed", a.trace ? a.trace : "the timeline");
  if (rc == 0) {
    report(r, cl, comp, (double)(t1 - t0) * 1e-9, (double)(pf_now_ns() - t1) * 1e-9);
    if (w) report_workload(r, w, &a, ts.n);
    if (a.trace) printf("wrote %s (Chrome trace: open it in Perfetto)\n", a.trace);
    if (a.chakra) printf("wrote %s.0.et .. %s.%" PRId64 ".et\n", a.chakra, a.chakra, n - 1);
    if (a.svg || a.compare) rc = timeline_outputs(&a, timeline, timeline_len, &d);
  }
  if (rc != 0) fprintf(stderr, "pathflow sim: %s (%s)\n", d.msg, pf_errname(rc));
  for (int64_t k = 0; k < n && t; k++) pf_chakra_free(t[k]);
  free(t);
  free(timeline);
  pf_sim_result_free(r);
  pf_sim_workload_free(w);
  if (workload) tenants_free(&ts);
  free(stage_of);
  pf_compiled_free(comp);
  pf_sim_cluster_free(cl);
  return rc == 0 ? 0 : 1;
}
