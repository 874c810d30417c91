/* pathflow: the command-line tool.
 *
 *   pathflow example NAME OUT.pb [--devices N] [--steps T]
 *   pathflow plan GRAPH.pb [--cluster H:R:D] [--policy packed|spread]
 *                          [--memory BYTES] [--dot PREFIX]
 *
 * `plan` compiles a serialized graph for a simulated cluster (no MPI job is
 * needed) and prints what each executor would run. See docs/cli.md. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "graph/graph_codec.h"
#include "pathflow/error.h"
#include "tools/tool.h"

static int usage(FILE *f, int rc) {
  fprintf(f,
          "usage: pathflow example NAME OUT.pb [--devices N] [--steps T]\n"
          "         NAME: mlp, pipeline, stencil\n"
          "       pathflow plan GRAPH.pb [--cluster HOSTS:RANKS_PER_HOST:DEVICES_PER_RANK]\n"
          "         [--policy packed|spread] [--memory BYTES] [--dot PREFIX]\n");
  return rc;
}

static int read_file(const char *path, uint8_t **buf, size_t *len) {
  FILE *f = fopen(path, "rb");
  long n;
  if (f == NULL || fseek(f, 0, SEEK_END) != 0 || (n = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) != 0) {
    if (f) fclose(f);
    return -1;
  }
  *buf = malloc((size_t)n + 1);
  *len = *buf ? fread(*buf, 1, (size_t)n, f) : 0;
  fclose(f);
  return *buf && *len == (size_t)n ? 0 : -1;
}

static int cmd_example(int argc, char **argv) {
  int devices = 4, steps = 4, rc;
  pf_graph_env env;
  pf_diag d;
  pf_graph *g;
  uint8_t *buf;
  size_t len;
  FILE *f;
  if (argc < 4) return usage(stderr, 2);
  for (int i = 4; i + 1 < argc; i += 2) {
    if (strcmp(argv[i], "--devices") == 0) devices = atoi(argv[i + 1]);
    else if (strcmp(argv[i], "--steps") == 0) steps = atoi(argv[i + 1]);
    else return usage(stderr, 2);
  }
  pf_diag_init(&d);
  if (devices < 1 || steps < 1 || tool_env(devices, &env, &d) != 0) return usage(stderr, 2);
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
  const char *cluster = "1:1:4", *dot = NULL, *policy = NULL; /* NULL: the graph's own */
  int64_t memory = 0;
  pf_cluster cl;
  pf_graph_env env;
  pf_graph *g;
  pf_compiled *c;
  pf_diag d;
  uint8_t *buf;
  size_t len;
  int rc;
  if (argc < 3) return usage(stderr, 2);
  for (int i = 3; i < argc; i += 2) {
    if (i + 1 >= argc) return usage(stderr, 2);
    if (strcmp(argv[i], "--cluster") == 0) cluster = argv[i + 1];
    else if (strcmp(argv[i], "--policy") == 0) policy = argv[i + 1];
    else if (strcmp(argv[i], "--memory") == 0) memory = atoll(argv[i + 1]);
    else if (strcmp(argv[i], "--dot") == 0) dot = argv[i + 1];
    else return usage(stderr, 2);
  }
  pf_diag_init(&d);
  if (tool_cluster(cluster, memory, &cl) != 0) {
    fprintf(stderr, "pathflow plan: bad --cluster \"%s\" (HOSTS:RANKS_PER_HOST:DEVICES_PER_RANK)\n", cluster);
    return 2;
  }
  if (policy && strcmp(policy, "packed") != 0 && strcmp(policy, "spread") != 0)
    return usage(stderr, 2);
  if (read_file(argv[2], &buf, &len) != 0) {
    fprintf(stderr, "pathflow plan: cannot read %s\n", argv[2]);
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
  pf_compiled_free(c);
  pf_graph_destroy(g);
  pf_registry_destroy(env.registry);
  free(cl.devices);
  return rc;
}

int main(int argc, char **argv) {
  if (argc < 2) return usage(stderr, 2);
  if (strcmp(argv[1], "example") == 0) return cmd_example(argc, argv);
  if (strcmp(argv[1], "plan") == 0) return cmd_plan(argc, argv);
  if (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0) return usage(stdout, 0);
  fprintf(stderr, "pathflow: unknown command \"%s\"\n", argv[1]);
  return usage(stderr, 2);
}
