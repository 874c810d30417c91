#include "sim/sched_cluster.h"

#include <inttypes.h>
#include <stdlib.h>

#include "base/util.h"

int pf_sim_sched_cluster(const pf_sim_cluster *cl, int64_t devices, pf_device_kind kind,
                         pf_cluster *out, pf_diag *d) {
  int64_t n = devices > 0 && devices < cl->devices ? devices : cl->devices;
  pf_sim_place pl;
  if (n > INT32_MAX / 2)
    return pf_diag_error(d, PF_EINVAL, "cluster %s: %" PRId64 " devices, more than the "
                         "scheduler places (%d)", cl->name, n, INT32_MAX / 2);
  out->n_devices = (int)n;
  out->n_ranks = 0;
  out->memory_origin = "the cluster file's device memory";
  if ((out->devices = pf_calloc((size_t)n, sizeof *out->devices)) == NULL)
    return pf_diag_error(d, PF_ENOMEM, "out of memory");
  for (int64_t g = 0; g < n; g++) {
    const pf_sim_host_group *grp;
    if (pf_sim_cluster_locate(cl, g, &pl) != 0) {
      free(out->devices);
      return pf_diag_error(d, PF_EINVAL, "cluster %s: device %" PRId64 " not found", cl->name, g);
    }
    grp = &cl->groups[pl.group];
    out->devices[g] = (pf_cluster_device){
        .rank = (int32_t)pl.rank,
        .local = pl.local % grp->devices_per_rank,
        .host = (int32_t)pl.host,
        .kind = kind,
        .memory = cl->types[pl.type].memory};
    if (pl.rank + 1 > out->n_ranks) out->n_ranks = (int)(pl.rank + 1);
  }
  return 0;
}
