/* The simulator's flow network: how many flow events a second it takes,
 * with how much memory, on a few traffic patterns (docs/performance.md).
 *
 *   bench/sim_net [--quick]
 *   bench/sim_net random K N | incast K     (one pattern, for profiling)
 *
 * An event is a flow or a bundle entering the network (after its latency) or
 * leaving it; each changes the rates of the flows that share links with it.
 * Patterns:
 *   ring        one ring allreduce (sim/collective.h) over N devices, each
 *               step a bundle
 *   ring_flows  the same with every flow of every step on its own
 *   hier        one hierarchical allreduce over all of the palm preset
 *   random      a closed loop of K concurrent flows between random devices
 *               of the dgx-h100 preset, a new one started as one ends: with
 *               hundreds in flight every flow shares links, transitively,
 *               with every other, and each event re-rates all of them
 *   incast      K flows of different sizes into one device: every event
 *               re-rates all of them (the worst case of the model) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "base/diag.h"
#include "base/util.h"
#include "sim/cluster.h"
#include "sim/collective.h"
#include "sim/net.h"

typedef struct loop {
  uint64_t rng;
  int64_t left, devices;
} loop;

static uint64_t rnd(loop *l) {
  l->rng = l->rng * 6364136223846793005ULL + 1442695040888963407ULL;
  return l->rng >> 33;
}

static void loop_send(pf_simnet *net, loop *l, pf_simtime at);

static void loop_done(pf_simnet *net, void *arg, uint64_t tag, pf_simtime now) {
  loop *l = arg;
  if (l->left > 0) loop_send(net, l, now);
}

static void loop_send(pf_simnet *net, loop *l, pf_simtime at) {
  int64_t a = (int64_t)(rnd(l) % (uint64_t)l->devices), b = (int64_t)(rnd(l) % (uint64_t)l->devices);
  l->left--;
  if (pf_simnet_send(net, a, b, 65536 + rnd(l) % (4u << 20), at, loop_done, l, 0) != 0) {
    fprintf(stderr, "send failed\n");
    exit(1);
  }
}

static long max_rss_kib(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_maxrss;
}

static void row(const char *name, int64_t devices, pf_simnet *net, uint64_t t0, pf_simtime sim_end) {
  double wall = (double)(pf_now_ns() - t0) * 1e-9;
  pf_simnet_stats st;
  pf_simnet_get_stats(net, &st);
  printf("%-26s %7lld %10llu %10llu %8llu %9.3f %12.0f %9.1f %10.3f %8ld\n", name, (long long)devices,
         (unsigned long long)st.flows_done, (unsigned long long)st.events, (unsigned long long)st.peak_flows, wall,
         (double)st.events / wall, (double)st.flows_rerated / (double)(st.recomputes ? st.recomputes : 1),
         (double)sim_end * 1e-9, (long)(pf_simnet_memory(net) >> 10));
  fflush(stdout);
}

static pf_sim_cluster *preset(const char *name) {
  pf_sim_cluster *cl;
  pf_diag d;
  pf_diag_init(&d);
  if (pf_sim_cluster_preset(name, &cl, &d) != 0) {
    fprintf(stderr, "%s\n", d.msg);
    exit(1);
  }
  return cl;
}

static void bench_allreduce(const char *label, const char *cluster, pf_sim_algo algo, int64_t n, uint64_t bytes) {
  pf_sim_cluster *cl = preset(cluster);
  pf_simnet *net;
  pf_diag d;
  int64_t *devs = malloc((size_t)n * sizeof *devs);
  for (int64_t i = 0; i < n; i++) devs[i] = i;
  pf_diag_init(&d);
  uint64_t t0 = pf_now_ns();
  if (pf_simnet_create(cl, &net) != 0 || pf_sim_allreduce(net, cl, algo, devs, n, bytes, 4, 0, NULL, NULL, &d) != 0) {
    fprintf(stderr, "%s: %s\n", label, d.msg);
    exit(1);
  }
  pf_simnet_run(net, PF_SIMTIME_MAX);
  row(label, n, net, t0, pf_simnet_now(net));
  pf_simnet_destroy(net);
  pf_sim_cluster_free(cl);
  free(devs);
}

static void bench_random(int64_t concurrent, int64_t total) {
  pf_sim_cluster *cl = preset("dgx-h100");
  pf_simnet *net;
  loop l = {.rng = 42, .left = total, .devices = cl->devices};
  char label[64];
  uint64_t t0 = pf_now_ns();
  pf_simnet_create(cl, &net);
  for (int64_t i = 0; i < concurrent; i++) loop_send(net, &l, 0);
  pf_simnet_run(net, PF_SIMTIME_MAX);
  snprintf(label, sizeof label, "random, %lld in flight", (long long)concurrent);
  row(label, cl->devices, net, t0, pf_simnet_now(net));
  pf_simnet_destroy(net);
  pf_sim_cluster_free(cl);
}

static void bench_incast(int64_t k) {
  pf_sim_cluster *cl = preset("dgx-h100");
  pf_simnet *net;
  loop l = {.rng = 7};
  char label[64];
  uint64_t t0 = pf_now_ns();
  pf_simnet_create(cl, &net);
  for (int64_t i = 0; i < k; i++)
    pf_simnet_send(net, 1 + (int64_t)(rnd(&l) % (uint64_t)(cl->devices - 1)), 0, 1 + rnd(&l) % (1u << 20), 0, NULL,
                   NULL, 0);
  pf_simnet_run(net, PF_SIMTIME_MAX);
  snprintf(label, sizeof label, "incast of %lld", (long long)k);
  row(label, cl->devices, net, t0, pf_simnet_now(net));
  pf_simnet_destroy(net);
  pf_sim_cluster_free(cl);
}

int main(int argc, char **argv) {
  int quick = argc > 1 && strcmp(argv[1], "--quick") == 0;
  if (argc == 4 && strcmp(argv[1], "random") == 0) { /* one pattern, for profiling */
    bench_random(atoll(argv[2]), atoll(argv[3]));
    return 0;
  }
  if (argc == 3 && strcmp(argv[1], "incast") == 0) {
    bench_incast(atoll(argv[2]));
    return 0;
  }
  printf("%-26s %7s %10s %10s %8s %9s %12s %9s %10s %8s\n", "pattern", "devices", "flows", "events", "peak",
         "wall s", "events/s", "rerate/rc", "sim s", "net KiB");
  bench_allreduce("ring 1MB, dgx-h100", "dgx-h100", PF_SIM_RING, 256, 1 << 20);
  bench_allreduce("ring 1MB, palm", "palm", PF_SIM_RING, quick ? 512 : 1024, 1 << 20);
  bench_allreduce("ring_flows 1MB, dgx-h100", "dgx-h100", PF_SIM_RING_FLOWS, 256, 1 << 20);
  bench_allreduce("ring_flows 1MB, palm", "palm", PF_SIM_RING_FLOWS, quick ? 512 : 1024, 1 << 20);
  bench_allreduce("tree 1MB x4 chunks, palm", "palm", PF_SIM_DOUBLE_TREE, 6144, 1 << 20);
  bench_allreduce("hierarchical 1GB, palm", "palm", PF_SIM_HIERARCHICAL, 6144, 1u << 30);
  bench_random(16, quick ? 100000 : 1000000);
  bench_random(256, quick ? 20000 : 100000);
  bench_random(1000, quick ? 5000 : 20000);
  bench_incast(quick ? 1000 : 4000);
  printf("max RSS %ld MiB\n", max_rss_kib() >> 10);
  return 0;
}
