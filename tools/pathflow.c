/* pathflow: the command-line tool.
 *
 *   pathflow example NAME OUT.pb [--devices N] [--steps T]
 *   pathflow plan GRAPH.pb [--cluster H:R:D] [--policy packed|spread]
 *                          [--memory BYTES] [--dot PREFIX]
 *                          [--export-chakra PREFIX]
 *   pathflow trace OUT.json RANK_FILE.json...
 *   pathflow chart METRICS.csv OUT.svg
 *   pathflow sim --cluster FILE|PRESET (GRAPH.pb | --example NAME |
 *                --import-chakra PREFIX) [...]   (tools/sim.c)
 *   pathflow cluster check FILE|PRESET | cluster show PRESET
 *   pathflow calibrate [OUT.json] [--mpirun CMD] [--reps N] (tools/calibrate.c)
 *   pathflow help [COMMAND]     (or COMMAND --help)
 *
 * `plan` compiles a serialized graph for a simulated cluster (no MPI job is
 * needed) and prints what each executor would run. See docs/cli.md. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/file.h"
#include "base/util.h"
#include "graph/graph_codec.h"
#include "runtime/trace.h"
#include "sim/chakra_export.h"
#include "pathflow/error.h"
#include "tools/tool.h"

#define EXAMPLE_USAGE                                                              \
  "usage: pathflow example NAME OUT.pb [--devices N] [--steps T]\n"               \
  "  Writes a sample graph in the wire format of pf_graph_encode.\n"              \
  "  NAME: mlp (data-parallel step with an allreduce), pipeline (one stage per\n" \
  "  device), stencil (Task Bench 1-D stencil). N devices (4), T steps (4).\n"
#define PLAN_USAGE                                                                        \
  "usage: pathflow plan GRAPH.pb [--cluster HOSTS:RANKS_PER_HOST:DEVICES_PER_RANK]\n"     \
  "         [--policy packed|spread] [--memory BYTES] [--dot PREFIX]\n"                   \
  "         [--export-chakra PREFIX]\n"                                                  \
  "  Compiles a serialized graph for a simulated cluster (1:1:4) and prints each\n"      \
  "  rank's ops, transfers, collectives and peak memory per device.\n"                   \
  "  --memory: each device's memory, in bytes or with a unit K, M, G, T (also\n"         \
  "  KB/KiB, MB/MiB, ...: all powers of 1024); a plan that does not fit is refused.\n"   \
  "  --dot PREFIX writes PREFIX.graph.dot and PREFIX.plan.dot for Graphviz.\n"            \
  "  --export-chakra PREFIX writes the plans as Chakra execution traces, the format\n"     \
  "  ASTRA-sim reads: PREFIX.DEVICE.et, one per device.\n"

#define TRACE_USAGE                                                                  \
  "usage: pathflow trace OUT.json RANK_FILE.json...\n"                              \
  "  Merges per-rank timelines (pathflow-trace.RANK.json, written with\n"           \
  "  PATHFLOW_TRACE=1 by ranks whose files rank 0 could not see) into one file.\n"

#define CHART_USAGE                                                                 \
  "usage: pathflow chart METRICS.csv OUT.svg\n"                                    \
  "  Draws a training run's metrics (train_mlp --metrics) as an SVG chart: loss,\n" \
  "  train and test accuracy against the step.\n"

#define CLUSTER_USAGE                                                                \
  "usage: pathflow cluster check FILE|PRESET\n"                                     \
  "       pathflow cluster show PRESET\n"                                           \
  "  check: reads a cluster description (docs/cluster-format.md), checks every\n"  \
  "  field and prints what it describes. show: prints a preset's file.\n"          \
  "  Presets: local (`pathflow calibrate`'s file, else placeholders), dgx-h100, palm.\n"

/* Usage of one command (or of all when cmd is NULL) on f; returns rc. */
static int usage(FILE *f, const char *cmd, int rc) {
  if (cmd == NULL || strcmp(cmd, "example") == 0) fputs(EXAMPLE_USAGE, f);
  if (cmd == NULL || strcmp(cmd, "plan") == 0) fputs(PLAN_USAGE, f);
  if (cmd == NULL || strcmp(cmd, "trace") == 0) fputs(TRACE_USAGE, f);
  if (cmd == NULL || strcmp(cmd, "chart") == 0) fputs(CHART_USAGE, f);
  if (cmd == NULL || strcmp(cmd, "sim") == 0) fputs(tool_sim_usage, f);
  if (cmd == NULL || strcmp(cmd, "cluster") == 0) fputs(CLUSTER_USAGE, f);
  if (cmd == NULL || strcmp(cmd, "calibrate") == 0) fputs(tool_calibrate_usage, f);
  if (cmd == NULL) fputs("See docs/cli.md.\n", f);
  return rc;
}

static int is_help(const char *arg) { return strcmp(arg, "-h") == 0 || strcmp(arg, "--help") == 0; }

/* 1 if any argument after the command asks for help. */
static int wants_help(int argc, char **argv) {
  for (int i = 2; i < argc; i++)
    if (is_help(argv[i])) return 1;
  return 0;
}

/* A bad option value: says which and what is accepted; exit status 2. */
static int bad_value(const char *cmd, const char *opt, const char *value, const char *want) {
  fprintf(stderr, "pathflow %s: %s \"%s\": expected %s\n", cmd, opt, value, want);
  return 2;
}

static int cmd_example(int argc, char **argv) {
  int devices = 4, steps = 4, rc;
  pf_graph_env env;
  pf_diag d;
  pf_graph *g;
  uint8_t *buf;
  size_t len;
  FILE *f;
  if (wants_help(argc, argv)) return usage(stdout, "example", 0);
  if (argc < 4) return usage(stderr, "example", 2);
  for (int i = 4; i < argc; i += 2) {
    int64_t v;
    if (i + 1 >= argc) return usage(stderr, "example", 2);
    if (strcmp(argv[i], "--devices") == 0) {
      if (pf_parse_int(argv[i + 1], 1, 1000000, &v) != 0)
        return bad_value("example", "--devices", argv[i + 1], "an integer in [1, 1000000]");
      devices = (int)v;
    } else if (strcmp(argv[i], "--steps") == 0) {
      if (pf_parse_int(argv[i + 1], 1, 1000000, &v) != 0)
        return bad_value("example", "--steps", argv[i + 1], "an integer in [1, 1000000]");
      steps = (int)v;
    } else {
      return usage(stderr, "example", 2);
    }
  }
  pf_diag_init(&d);
  if (tool_env(devices, &env, &d) != 0) {
    fprintf(stderr, "pathflow example: %s\n", d.msg);
    return 1;
  }
  if ((rc = tool_example(argv[2], devices, steps, &env, &g)) != 0) {
    fprintf(stderr, "pathflow example %s: %s %s\n", argv[2], pf_strerror(rc), d.msg);
    return 1;
  }
  if ((rc = pf_graph_encode(g, &buf, &len)) != 0 || (f = fopen(argv[3], "wb")) == NULL) {
    fprintf(stderr, "pathflow example: cannot write %s\n", argv[3]);
    return 1;
  }
  fwrite(buf, 1, len, f);
  fclose(f);
  printf("wrote %s: %d programs, %zu bytes\n", argv[3], pf_graph_num_programs(g), len);
  free(buf);
  pf_graph_destroy(g);
  pf_registry_destroy(env.registry);
  return 0;
}

static int write_dot(const char *prefix, const char *what, const pf_graph *g, const pf_compiled *c) {
  char path[1024];
  FILE *f;
  snprintf(path, sizeof path, "%s.%s.dot", prefix, what);
  if ((f = fopen(path, "w")) == NULL) return -1;
  if (c) tool_dot_plan(f, c); else tool_dot_graph(f, g);
  fclose(f);
  printf("wrote %s\n", path);
  return 0;
}

static int cmd_plan(int argc, char **argv) {
  const char *cluster = "1:1:4", *dot = NULL, *chakra = NULL,
             *policy = NULL; /* NULL: the graph's own */
  int64_t memory = 0;
  pf_cluster cl;
  pf_graph_env env;
  pf_graph *g;
  pf_compiled *c;
  pf_diag d;
  uint8_t *buf;
  size_t len;
  int rc;
  if (wants_help(argc, argv)) return usage(stdout, "plan", 0);
  if (argc < 3) return usage(stderr, "plan", 2);
  for (int i = 3; i < argc; i += 2) {
    if (i + 1 >= argc) return usage(stderr, "plan", 2);
    if (strcmp(argv[i], "--cluster") == 0) cluster = argv[i + 1];
    else if (strcmp(argv[i], "--policy") == 0) policy = argv[i + 1];
    else if (strcmp(argv[i], "--dot") == 0) dot = argv[i + 1];
    else if (strcmp(argv[i], "--export-chakra") == 0) chakra = argv[i + 1];
    else if (strcmp(argv[i], "--memory") != 0) return usage(stderr, "plan", 2);
    else if (pf_parse_bytes(argv[i + 1], 1, INT64_MAX, &memory) != 0)
      return bad_value("plan", "--memory", argv[i + 1], PF_BYTES_HELP);
  }
  pf_diag_init(&d);
  if (tool_cluster(cluster, memory, &cl) != 0)
    return bad_value("plan", "--cluster", cluster,
                     "HOSTS:RANKS_PER_HOST:DEVICES_PER_RANK, each >= 1, at most 1000000 devices");
  if (policy && strcmp(policy, "packed") != 0 && strcmp(policy, "spread") != 0) {
    free(cl.devices);
    return bad_value("plan", "--policy", policy, "packed or spread");
  }
  if (pf_file_read(argv[2], &buf, &len, &d) != 0) {
    fprintf(stderr, "pathflow plan: %s\n", d.msg); /* names the file and the reason */
    free(cl.devices);
    return 1;
  }
  tool_env(cl.n_devices, &env, &d);
  rc = pf_graph_decode_env(&env, buf, len, &g, &d);
  free(buf);
  if (rc != 0) {
    fprintf(stderr, "pathflow plan: %s: %s\n", argv[2], d.msg);
    return 1;
  }
  if (policy)
    pf_graph_set_placement(g, strcmp(policy, "spread") == 0 ? PF_PLACE_SPREAD : PF_PLACE_PACKED);
  if ((rc = pf_schedule(g, &cl, 1, &c, &d)) != 0) {
    fprintf(stderr, "pathflow plan: %s (%s)\n", d.msg, pf_errname(rc));
    return 1;
  }
  tool_print_plan(stdout, g, c, &cl);
  if (dot && (write_dot(dot, "graph", g, NULL) || write_dot(dot, "plan", g, c))) rc = 1;
  if (chakra && rc == 0) {
    if (pf_chakra_export(c, &cl, env.registry, chakra, &d) != 0) {
      fprintf(stderr, "pathflow plan: --export-chakra: %s\n", d.msg);
      rc = 1;
    } else {
      printf("wrote %s.0.et .. %s.%d.et (Chakra execution traces, one per device)\n", chakra,
             chakra, cl.n_devices - 1);
    }
  }
  pf_compiled_free(c);
  pf_graph_destroy(g);
  pf_registry_destroy(env.registry);
  free(cl.devices);
  return rc;
}

static int cmd_trace(int argc, char **argv) {
  char why[512];
  int rc;
  if (wants_help(argc, argv)) return usage(stdout, "trace", 0);
  if (argc < 4) return usage(stderr, "trace", 2);
  if ((rc = pf_trace_merge(argv[2], (const char *const *)argv + 3, argc - 3, why, sizeof why)) != 0) {
    fprintf(stderr, "pathflow trace: %s\n", why);
    return 1;
  }
  printf("wrote %s: %d timelines\n", argv[2], argc - 3);
  return 0;
}

static int cmd_chart(int argc, char **argv) {
  char why[512];
  if (wants_help(argc, argv)) return usage(stdout, "chart", 0);
  if (argc != 4) return usage(stderr, "chart", 2);
  if (tool_chart(argv[2], argv[3], why, sizeof why) != 0) {
    fprintf(stderr, "pathflow chart: %s\n", why);
    return 1;
  }
  printf("wrote %s\n", argv[3]);
  return 0;
}

int main(int argc, char **argv) {
  if (argc < 2) return usage(stderr, NULL, 2);
  if (strcmp(argv[1], "example") == 0) return cmd_example(argc, argv);
  if (strcmp(argv[1], "plan") == 0) return cmd_plan(argc, argv);
  if (strcmp(argv[1], "trace") == 0) return cmd_trace(argc, argv);
  if (strcmp(argv[1], "chart") == 0) return cmd_chart(argc, argv);
  if (strcmp(argv[1], "sim") == 0) return tool_sim(argc, argv);
  if (strcmp(argv[1], "calibrate") == 0) {
    int rc = tool_calibrate(argc, argv);
    return rc < 0 ? usage(stderr, "calibrate", 2) : rc;
  }
  if (strcmp(argv[1], "cluster") == 0) {
    if (wants_help(argc, argv)) return usage(stdout, "cluster", 0);
    int rc = tool_cluster_cmd(argc, argv);
    return rc < 0 ? usage(stderr, "cluster", 2) : rc;
  }
  if (is_help(argv[1])) return usage(stdout, NULL, 0);
  if (strcmp(argv[1], "help") == 0) {
    if (argc > 2 && strcmp(argv[2], "example") != 0 && strcmp(argv[2], "plan") != 0 &&
        strcmp(argv[2], "trace") != 0 && strcmp(argv[2], "chart") != 0 &&
        strcmp(argv[2], "sim") != 0 && strcmp(argv[2], "cluster") != 0 &&
        strcmp(argv[2], "calibrate") != 0) {
      fprintf(stderr, "pathflow: unknown command \"%s\"\n", argv[2]);
      return usage(stderr, NULL, 2);
    }
    return usage(stdout, argc > 2 ? argv[2] : NULL, 0);
  }
  fprintf(stderr, "pathflow: unknown command \"%s\"\n", argv[1]);
  return usage(stderr, NULL, 2);
}
