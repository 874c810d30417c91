/* libFuzzer: pf_sim_cluster_parse (the strict JSON reader under it) on
 * arbitrary bytes.
 *
 * Never a crash, a leak or a hang; a refused file has a message naming the
 * source; an accepted one is consistent (the groups add up, every device is
 * located in its group), and when it is small its network carries a few
 * flows and an allreduce to completion. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/diag.h"
#include "sim/cluster.h"
#include "sim/collective.h"
#include "sim/net.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int finished;
static void on_done(void *arg, pf_simtime now) { finished++; }

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  pf_sim_cluster *cl = NULL;
  pf_diag d;
  pf_diag_init(&d);
  int rc = pf_sim_cluster_parse((const char *)data, size, "fuzz", &cl, &d);
  if (rc != 0) {
    if (strstr(d.msg, "fuzz") == NULL) abort();
    return 0;
  }
  int64_t devices = 0, hosts = 0;
  for (int i = 0; i < cl->n_groups; i++) {
    const pf_sim_host_group *g = &cl->groups[i];
    if (g->first_device != devices || g->first_host != hosts) abort();
    devices += g->hosts * g->ranks_per_host * g->devices_per_rank;
    hosts += g->hosts;
  }
  if (devices != cl->devices || hosts != cl->hosts) abort();
  pf_sim_place p;
  if (pf_sim_cluster_locate(cl, cl->devices - 1, &p) != 0 || p.host != cl->hosts - 1 ||
      pf_sim_cluster_locate(cl, cl->devices, &p) != PF_ERANGE)
    abort();
  if (cl->devices <= 4096) {
    pf_simnet *net;
    if (pf_simnet_create(cl, &net) == 0) {
      int64_t devs[64];
      int64_t n = cl->devices < 64 ? cl->devices : 64;
      for (int64_t i = 0; i < n; i++) devs[i] = i;
      for (int64_t i = 0; i < n; i++) pf_simnet_send(net, i, cl->devices - 1 - i, 1000 * (uint64_t)(i + 1), 0, NULL, NULL, 0);
      finished = 0;
      if (pf_sim_allreduce(net, cl, PF_SIM_RING, devs, n, 1 << 20, 1, 0, on_done, NULL, &d) != 0) abort();
      pf_simnet_run(net, PF_SIMTIME_MAX);
      if (finished != 1 || pf_simnet_in_flight(net) != 0) abort();
      pf_simnet_destroy(net);
    }
  }
  pf_sim_cluster_free(cl);
  return 0;
}
