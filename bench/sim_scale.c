/* The simulator at scale: wall time, memory and events per second of whole
 * simulations as the device count grows (docs/performance.md).
 *
 *   bench/sim_scale [--reps R] [--algo ALGO] [--devices N] [train|ring]...
 *
 *   train  one data-parallel + pipeline training step (`pathflow sim
 *          --example train`, 4 microbatches) on the first N devices of the
 *          palm preset, N = 64 .. 6,144: compiled by the scheduler of a real
 *          run, turned into traces, replayed
 *   ring   one 1 MB ring allreduce over N devices, N = 256 .. 8,192, given
 *          as ASTRA-sim's micro-benchmarks give it (one collective node per
 *          device, no group: every device), one device a host on 400 Gb/s
 *          links
 *
 * ALGO is the allreduce algorithm (sim/collective.h): ring (bundled steps,
 * the default) or ring_flows (every flow of a ring on its own: the events
 * per second of the network model under many flows). --devices N runs
 * that size only (for profiling).
 *
 * Every size runs in a child process of its own, so that its peak resident
 * memory (max RSS) is its own; wall times are the median of R runs (3). */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "base/util.h"
#include "sim/chakra_export.h"
#include "sim/replay.h"
#include "sim/sched_cluster.h"
#include "tools/tool.h"

static pf_sim_algo algo = PF_SIM_RING;
static int64_t only; /* --devices: one size, or 0 */

typedef struct figures {
  double compile_s, replay_s, events, nodes, makespan_s;
  long rss_kib;
} figures;

static void die(const char *what, const pf_diag *d) {
  fprintf(stderr, "sim_scale: %s: %s\n", what, d->msg);
  exit(1);
}

static void free_traces(pf_chakra_trace **t, int64_t n) {
  for (int64_t k = 0; k < n && t; k++) pf_chakra_free(t[k]);
  free(t);
}

static void replay(pf_chakra_trace **t, int64_t n, const pf_sim_cluster *cl, figures *f, pf_diag *d) {
  pf_sim_result *r;
  uint64_t t0 = pf_now_ns();
  if (pf_sim_replay(t, n, cl, &(pf_sim_options){.algo = algo, .chunks = 4}, &r, d) != 0)
    die("replay", d);
  f->replay_s = (double)(pf_now_ns() - t0) * 1e-9;
  f->events = (double)r->events;
  f->nodes = (double)r->nodes;
  f->makespan_s = (double)r->makespan * 1e-9;
  pf_sim_result_free(r);
}

static void run_train(int64_t n, figures *f) {
  pf_sim_cluster *cl;
  pf_cluster sc = {0};
  pf_graph_env env;
  pf_graph *g;
  pf_compiled *comp;
  pf_chakra_trace **t;
  pf_diag d;
  uint64_t t0;
  pf_diag_init(&d);
  if (pf_sim_cluster_preset("palm", &cl, &d) != 0) die("palm", &d);
  t0 = pf_now_ns();
  if (pf_sim_sched_cluster(cl, n, PF_DEVICE_CPU, &sc, &d) != 0 || tool_env(sc.n_devices, &env, &d) != 0 ||
      tool_example("train", sc.n_devices, 4, &env, &g) != 0 || pf_schedule(g, &sc, 1, &comp, &d) != 0 ||
      pf_chakra_from_plans(comp, &sc, env.registry, &t, &d) != 0)
    die("compile", &d);
  f->compile_s = (double)(pf_now_ns() - t0) * 1e-9;
  replay(t, n, cl, f, &d);
  free_traces(t, n);
  pf_compiled_free(comp);
  pf_graph_destroy(g);
  pf_registry_destroy(env.registry);
  free(sc.devices);
  pf_sim_cluster_free(cl);
}

static void run_ring(int64_t n, figures *f) {
  char json[1024];
  pf_sim_cluster *cl;
  pf_chakra_trace **t = pf_calloc((size_t)n, sizeof *t);
  pf_diag d;
  uint64_t t0 = pf_now_ns();
  int len = snprintf(json, sizeof json,
                     "{\"version\": 1, \"name\": \"ring%" PRId64 "\",\n"
                     " \"device_types\": {\"npu\": {\"kind\": \"gpu\", \"flops\": {\"f32\": \"100TFLOP/s\"},\n"
                     "   \"memory\": \"80GB\", \"memory_bandwidth\": \"2TB/s\"}},\n"
                     " \"hosts\": [{\"count\": %" PRId64 ", \"ranks_per_host\": 1, \"devices_per_rank\": 1}],\n"
                     " \"links\": {\"intra_host\": {\"bandwidth\": \"400Gb/s\", \"latency\": \"1us\"},\n"
                     "   \"nic\": {\"bandwidth\": \"400Gb/s\", \"latency\": \"1us\"}},\n"
                     " \"runtime\": {\"op_dispatch\": \"0us\", \"transfer\": \"0us\", \"step\": \"0us\"}}\n",
                     n, n);
  pf_diag_init(&d);
  if (t == NULL || pf_sim_cluster_parse(json, (size_t)len, "ring", &cl, &d) != 0) die("cluster", &d);
  for (int64_t k = 0; k < n; k++) {
    pf_chakra_trace *tr = pf_calloc(1, sizeof *tr);
    pf_chakra_node *nd = tr ? pf_calloc(1, sizeof *nd) : NULL;
    if (nd == NULL || (tr->version = pf_strdup("bench")) == NULL || (nd->name = pf_strdup("allreduce")) == NULL) {
      fprintf(stderr, "sim_scale: out of memory\n");
      exit(1);
    }
    *nd = (pf_chakra_node){.id = 0, .name = nd->name, .type = PF_CHAKRA_COLL, .comm_size = 1 << 20,
                           .comm_src = -1, .comm_dst = -1, .comm_tag = -1,
                           .comm_type = PF_CHAKRA_ALL_REDUCE, .is_cpu_op = -1};
    tr->n_nodes = 1;
    tr->nodes = nd;
    t[k] = tr;
  }
  f->compile_s = (double)(pf_now_ns() - t0) * 1e-9;
  replay(t, n, cl, f, &d);
  free_traces(t, n);
  pf_sim_cluster_free(cl);
}

/* One size in a child process: its figures through a pipe. */
static int measure(const char *what, int64_t n, figures *out) {
  int fd[2];
  pid_t pid;
  int status;
  if (pipe(fd) != 0 || (pid = fork()) < 0) return -1;
  if (pid == 0) {
    figures f = {0};
    struct rusage ru;
    close(fd[0]);
    if (strcmp(what, "train") == 0) run_train(n, &f);
    else run_ring(n, &f);
    getrusage(RUSAGE_SELF, &ru);
    f.rss_kib = ru.ru_maxrss;
    _exit(write(fd[1], &f, sizeof f) == (ssize_t)sizeof f ? 0 : 1);
  }
  close(fd[1]);
  ssize_t got = read(fd[0], out, sizeof *out);
  close(fd[0]);
  waitpid(pid, &status, 0);
  return got == (ssize_t)sizeof *out && WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -1;
}


static void bench(const char *what, const int64_t *sizes, int n_sizes, int reps) {
  printf("%-6s %7s %9s %10s %10s %10s %10s %8s %12s\n", what, "devices", "nodes", "events", "compile_s",
         "replay_s", "total_s", "M_ev/s", "max_RSS_MiB");
  for (int i = 0; i < n_sizes; i++) {
    double c[16], r[16], tot[16];
    if (only > 0 && sizes[i] != only) continue;
    figures f = {0};
    long rss = 0;
    for (int k = 0; k < reps; k++) {
      if (measure(what, sizes[i], &f) != 0) {
        fprintf(stderr, "sim_scale: %s on %" PRId64 " devices failed\n", what, sizes[i]);
        exit(1);
      }
      c[k] = f.compile_s;
      r[k] = f.replay_s;
      tot[k] = f.compile_s + f.replay_s;
      rss = PF_MAXOF(rss, f.rss_kib);
    }
    double rm = pf_median(r, (size_t)reps), cm = pf_median(c, (size_t)reps);
    double tm = pf_median(tot, (size_t)reps);
    printf("%-6s %7" PRId64 " %9.0f %10.0f %10.3f %10.3f %10.3f %8.2f %12.1f   (makespan %.3f ms)\n", what,
           sizes[i], f.nodes, f.events, cm, rm, tm, f.events / rm * 1e-6, (double)rss / 1024.0,
           f.makespan_s * 1e3);
    fflush(stdout);
  }
}

int main(int argc, char **argv) {
  static const int64_t train_sizes[] = {64, 256, 1024, 3072, 6144};
  static const int64_t ring_sizes[] = {256, 1024, 4096, 8192};
  int reps = 3, any = 0;
  for (int i = 1; i < argc; i++)
    if (strcmp(argv[i], "--reps") == 0 && i + 1 < argc) {
      reps = atoi(argv[++i]);
      if (reps < 1 || reps > 16) {
        fprintf(stderr, "sim_scale: --reps in [1, 16]\n");
        return 2;
      }
    } else if (strcmp(argv[i], "--algo") == 0 && i + 1 < argc) {
      int a = pf_sim_algo_parse(argv[++i]);
      if (a < 0) {
        fprintf(stderr, "sim_scale: unknown algorithm %s\n", argv[i]);
        return 2;
      }
      algo = (pf_sim_algo)a;
    } else if (strcmp(argv[i], "--devices") == 0 && i + 1 < argc) {
      only = atoll(argv[++i]);
    }
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--reps") == 0 || strcmp(argv[i], "--algo") == 0 || strcmp(argv[i], "--devices") == 0) {
      i++;
    } else if (strcmp(argv[i], "train") == 0) {
      bench("train", train_sizes, (int)PF_ARRAY_LEN(train_sizes), reps);
      any = 1;
    } else if (strcmp(argv[i], "ring") == 0) {
      bench("ring", ring_sizes, (int)PF_ARRAY_LEN(ring_sizes), reps);
      any = 1;
    } else {
      fprintf(stderr, "usage: sim_scale [--reps R] [--algo ALGO] [--devices N] [train|ring]...\n");
      return 2;
    }
  }
  if (!any) {
    bench("train", train_sizes, (int)PF_ARRAY_LEN(train_sizes), reps);
    bench("ring", ring_sizes, (int)PF_ARRAY_LEN(ring_sizes), reps);
  }
  return 0;
}
