/* pathflow's side of bench/sim/run.sh: the same program as allreduce_mpi.c
 * (`steps` allreduces of `bytes`, back to back, on every device) as Chakra
 * nodes, replayed on the same platform: `hosts` hosts of one device, each
 * with its own full-duplex link of `bw` bytes/s into a switch, `lat`
 * seconds end to end, no runtime costs; ring allreduce. Prints
 *   pathflow_time <seconds> wall <seconds> events <n> rss_kib <KiB>
 * Usage: sim_allreduce HOSTS BYTES STEPS BW_BYTES_PER_S LAT_S */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>

#include "base/util.h"
#include "sim/replay.h"

static void oom(void) {
  fprintf(stderr, "sim_allreduce: out of memory\n");
  exit(1);
}

int main(int argc, char **argv) {
  int64_t hosts, steps;
  uint64_t bytes;
  double bw, lat;
  char json[1024];
  pf_sim_cluster *cl;
  pf_chakra_trace **t;
  pf_sim_result *r;
  pf_diag d;
  struct rusage ru;
  uint64_t t0 = pf_now_ns();
  if (argc != 6 || (hosts = atoll(argv[1])) < 1 || (bytes = strtoull(argv[2], NULL, 10)) < 1 ||
      (steps = atoll(argv[3])) < 1 || (bw = atof(argv[4])) <= 0 || (lat = atof(argv[5])) < 0) {
    fprintf(stderr, "usage: sim_allreduce HOSTS BYTES STEPS BW_BYTES_PER_S LAT_S\n");
    return 2;
  }
  /* SMPI simulates no computation here (smpi/simulate-computation:no): a
   * memory bandwidth so high that the allreduce's arithmetic costs nothing
   * (sim/replay.c adds it after the messages). */
  int len = snprintf(json, sizeof json,
                     "{\"version\": 1, \"name\": \"smpi-cluster\",\n"
                     " \"device_types\": {\"host\": {\"kind\": \"cpu\", \"flops\": {\"f32\": \"1GFLOP/s\"},\n"
                     "   \"memory\": \"1GB\", \"memory_bandwidth\": 1e18}},\n"
                     " \"hosts\": [{\"count\": %" PRId64 ", \"ranks_per_host\": 1, \"devices_per_rank\": 1}],\n"
                     " \"links\": {\"intra_host\": {\"bandwidth\": \"%.17gB/s\", \"latency\": \"%.17gs\"},\n"
                     "   \"nic\": {\"bandwidth\": \"%.17gB/s\", \"latency\": \"%.17gs\"}},\n"
                     " \"runtime\": {\"op_dispatch\": \"0us\", \"transfer\": \"0us\", \"step\": \"0us\"}}\n",
                     hosts, bw, lat, bw, lat);
  pf_diag_init(&d);
  if (pf_sim_cluster_parse(json, (size_t)len, "sim_allreduce", &cl, &d) != 0) {
    fprintf(stderr, "sim_allreduce: %s\n", d.msg);
    return 1;
  }
  if ((t = pf_calloc((size_t)hosts, sizeof *t)) == NULL) oom();
  for (int64_t h = 0; h < hosts; h++) {
    pf_chakra_trace *tr = pf_calloc(1, sizeof *tr);
    if (tr == NULL || (tr->version = pf_strdup("bench")) == NULL ||
        (tr->nodes = pf_calloc((size_t)steps, sizeof *tr->nodes)) == NULL)
      oom();
    tr->n_nodes = (uint32_t)steps;
    for (int64_t s = 0; s < steps; s++) {
      pf_chakra_node *n = &tr->nodes[s];
      *n = (pf_chakra_node){.id = (uint64_t)s, .type = PF_CHAKRA_COLL, .comm_size = bytes,
                            .comm_src = -1, .comm_dst = -1, .comm_tag = -1,
                            .comm_type = PF_CHAKRA_ALL_REDUCE, .is_cpu_op = -1};
      if ((n->name = pf_strdup("allreduce")) == NULL) oom();
      if (s > 0) { /* the steps run back to back, as the MPI loop does */
        if ((n->ctrl_deps = pf_mallocn(1, sizeof *n->ctrl_deps)) == NULL) oom();
        n->ctrl_deps[0] = (uint64_t)(s - 1);
        n->n_ctrl_deps = 1;
      }
    }
    t[h] = tr;
  }
  if (pf_sim_replay(t, hosts, cl, &(pf_sim_options){.algo = PF_SIM_RING, .chunks = 1}, &r, &d) != 0) {
    fprintf(stderr, "sim_allreduce: %s\n", d.msg);
    return 1;
  }
  getrusage(RUSAGE_SELF, &ru);
  printf("pathflow_time %.9f wall %.6f events %" PRIu64 " rss_kib %ld\n", (double)r->makespan * 1e-9,
         (double)(pf_now_ns() - t0) * 1e-9, r->events, ru.ru_maxrss);
  pf_sim_result_free(r);
  for (int64_t h = 0; h < hosts; h++) pf_chakra_free(t[h]);
  free(t);
  pf_sim_cluster_free(cl);
  return 0;
}
