/* Internal: a described cluster as the scheduler sees one. */
#ifndef PF_SIM_SCHED_CLUSTER_H
#define PF_SIM_SCHED_CLUSTER_H

#include "scheduler/cluster.h"
#include "sim/cluster.h"

/* The scheduler's view of `cl` (its first `devices` devices; <= 0: all):
 * ranks, each device's rank, local index and host, its type's memory (so a
 * plan that would not fit is refused as on the real cluster). Every device
 * is of the kind `kind`: the graph asks for a kind, the cluster file's
 * device types give speeds. The caller frees out->devices. Errors: PF_EINVAL
 * (more devices than the scheduler places: the message says how many),
 * PF_ENOMEM. */
int pf_sim_sched_cluster(const pf_sim_cluster *cl, int64_t devices, pf_device_kind kind,
                         pf_cluster *out, pf_diag *d);

#endif
