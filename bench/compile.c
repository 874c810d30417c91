/* bench/compile: how long pf_compile's scheduler takes (validate, place,
 * order, lower, plan memory) for big graphs on a simulated cluster, with no
 * ranks behind it. Target: 10,000 programs on 1,000 devices under 1 s.
 * compile1_s is the first of three compiles of the graph, compile_s the
 * best (under_1s says whether the best is under a second).
 * encode_s and decode_s: the plan codec, what a job on ranks adds to a
 * compile (rank 0 encodes every rank's plan, each rank decodes its own):
 * every plan of the last compile encoded, then decoded (plan_MiB: their
 * encoded size). copy_s, their baseline: the same bytes copied once into
 * fresh memory taken as the encoder takes its buffer, the floor under
 * writing or reading them.
 *   compile [-w WIDTH] [-t STEPS] [-c HOSTS:RANKS:DEVICES] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/arena.h"
#include "base/util.h"
#include "pathflow/error.h"
#include "plan/plan.h"
#include "tools/tool.h"

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Resident and peak resident memory of this process, in MiB (Linux). */
static void memory_mib(double *rss, double *peak) {
  char line[256];
  FILE *f = fopen("/proc/self/status", "r");
  *rss = *peak = 0;
  while (f && fgets(line, sizeof line, f)) {
    long kb;
    if (sscanf(line, "VmRSS: %ld kB", &kb) == 1) *rss = kb / 1024.0;
    if (sscanf(line, "VmHWM: %ld kB", &kb) == 1) *peak = kb / 1024.0;
  }
  if (f) fclose(f);
}

/* Encodes every plan of c, then decodes each and checks it equals the
 * original: the seconds each took, and the encoded MiB. */
static int codec(const pf_compiled *c, double *enc_s, double *dec_s, double *copy_s,
                 double *mib) {
  uint8_t **bufs = calloc((size_t)c->n_ranks, sizeof *bufs);
  size_t *lens = calloc((size_t)c->n_ranks, sizeof *lens);
  double t0 = now_s(), t1;
  int rc = bufs == NULL || lens == NULL ? PF_ENOMEM : 0;
  pf_diag d;
  *mib = 0;
  for (int r = 0; rc == 0 && r < c->n_ranks; r++) {
    if ((rc = pf_plan_encode(c->plans[r], &bufs[r], &lens[r])) != 0)
      fprintf(stderr, "compile: encoding rank %d's plan: %s\n", r, pf_strerror(rc));
    *mib += (double)lens[r] / (1 << 20);
  }
  t1 = now_s();
  *enc_s = t1 - t0;
  *copy_s = 0;
  for (int r = 0; rc == 0 && r < c->n_ranks; r++) {
    double a = now_s();
    uint8_t *copy = pf_mallocn(lens[r] ? lens[r] : 1, 1);
    if (copy == NULL) {
      fprintf(stderr, "compile: out of memory copying rank %d's %zu-byte plan\n", r, lens[r]);
      rc = PF_ENOMEM;
      break;
    }
    pf_prefault(copy, lens[r]); /* as pf_plan_encode's buffer */
    memcpy(copy, bufs[r], lens[r]);
    *copy_s += now_s() - a;
    if (memcmp(copy, bufs[r], lens[r]) != 0) { /* the copy is read, outside the timing */
      fprintf(stderr, "compile: the copy of rank %d's plan differs from it\n", r);
      rc = PF_EINVAL;
    }
    free(copy);
  }
  *dec_s = 0;
  for (int r = 0; rc == 0 && r < c->n_ranks; r++) {
    pf_plan *p = NULL;
    double a = now_s();
    rc = pf_plan_decode(bufs[r], lens[r], c->plans[r]->num_devices, &p, &d);
    *dec_s += now_s() - a;
    if (rc == 0 && !pf_plan_equal(p, c->plans[r])) {
      fprintf(stderr, "compile: rank %d's plan decoded differs from the original\n", r);
      rc = PF_EINVAL;
    } else if (rc != 0) {
      fprintf(stderr, "compile: decoding rank %d's plan: %s\n", r, d.msg);
    }
    pf_plan_free(p);
  }
  for (int r = 0; bufs != NULL && r < c->n_ranks; r++) free(bufs[r]);
  free(bufs);
  free(lens);
  return rc;
}

static int run(int width, int steps, const char *cluster_spec) {
  double graph_mib, peak_mib, base_mib, unused;
  pf_cluster cl;
  pf_graph_env env;
  pf_graph *g;
  pf_compiled *c;
  pf_diag d;
  double t0, t1, t2, best = 1e9, first = 0, enc_s = 0, dec_s = 0, copy_s = 0, plan_mib = 0;
  uint64_t ops = 0;
  pf_diag_init(&d);
  if (tool_cluster(cluster_spec, 0, &cl) != 0 || cl.n_devices < width) {
    fprintf(stderr, "compile: cluster %s has fewer than %d devices\n", cluster_spec, width);
    return 1;
  }
  tool_env(cl.n_devices, &env, &d);
  memory_mib(&base_mib, &unused);
  t0 = now_s();
  if (tool_example("stencil", width, steps, &env, &g) != 0) {
    fprintf(stderr, "compile: building the graph failed: %s\n", d.msg);
    return 1;
  }
  t1 = now_s();
  memory_mib(&graph_mib, &unused);
  for (int rep = 0; rep < 3; rep++) {
    double a = now_s();
    if (pf_schedule(g, &cl, 1, &c, &d) != 0) {
      fprintf(stderr, "compile: %s\n", d.msg);
      return 1;
    }
    t2 = now_s() - a;
    if (rep == 0) first = t2;
    if (t2 < best) best = t2;
    ops = 0;
    for (int r = 0; r < c->n_ranks; r++) ops += c->plans[r]->n_ops;
    if (rep == 2 && codec(c, &enc_s, &dec_s, &copy_s, &plan_mib) != 0) {
      pf_compiled_free(c);
      return 1;
    }
    pf_compiled_free(c);
  }
  memory_mib(&unused, &peak_mib);
  printf("%-9d %-8d %-9d %-9llu %-10.3f %-10.3f %-10.3f %-9.0f %-9.0f %-9s %-9.3f %-9.3f %-9.3f "
         "%.0f\n",
         pf_graph_num_programs(g), cl.n_devices, cl.n_ranks, (unsigned long long)ops, t1 - t0,
         first, best, graph_mib - base_mib, peak_mib - base_mib, best < 1.0 ? "yes" : "NO", enc_s,
         dec_s, copy_s, plan_mib);
  pf_graph_destroy(g);
  pf_registry_destroy(env.registry);
  free(cl.devices);
  return 0;
}

int main(int argc, char **argv) {
  int width = 0, steps = 0;
  const char *cluster = NULL;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (strcmp(argv[i], "-w") == 0) width = atoi(argv[i + 1]);
    else if (strcmp(argv[i], "-t") == 0) steps = atoi(argv[i + 1]);
    else if (strcmp(argv[i], "-c") == 0) cluster = argv[i + 1];
  }
  printf("# Task Bench stencil graphs (2 programs per cell and step), simulated clusters\n");
  printf("%-9s %-8s %-9s %-9s %-10s %-10s %-10s %-9s %-9s %-9s %-9s %-9s %-9s %s\n", "programs",
         "devices", "ranks", "plan_ops", "build_s", "compile1_s", "compile_s", "graph_MiB",
         "peak_MiB", "under_1s", "encode_s", "decode_s", "copy_s", "plan_MiB");
  if (width > 0) return run(width, steps > 0 ? steps : 5, cluster ? cluster : "10:25:4");
  return run(100, 5, "1:25:4") || run(1000, 5, "10:25:4") || run(1000, 10, "10:25:4");
}
