/* Internal: the cluster view the scheduler places programs on.
 *
 * Devices are numbered globally, rank-major: all devices of rank 0, then
 * rank 1, ... A local context has one rank. In a distributed job the
 * controller fills this from the executors' registrations.
 */
#ifndef PF_SCHEDULER_CLUSTER_H
#define PF_SCHEDULER_CLUSTER_H

#include <stdint.h>

#include "pathflow/types.h"
#include "plan/plan.h"

typedef struct pf_cluster_device {
  int32_t rank;
  int32_t local; /* device index on its rank */
  int32_t host;  /* ranks that registered the same host name share an id */
  pf_device_kind kind;
  int64_t memory; /* bytes; 0: unknown */
  uint32_t stage; /* pf_stage: which data paths go through host buffers */
  int own_memory; /* 1: memory the host cannot address (a GPU's); stage
                   * says which host paths its buffers need staged */
} pf_cluster_device;

typedef struct pf_cluster {
  int n_ranks;
  int n_devices;
  pf_cluster_device *devices;
  /* Where the devices' memory came from, for PF_EMEMORY's message
   * ("PATHFLOW_DEVICE_MEMORY=4G", "--memory 1K"); NULL: not said. Static. */
  const char *memory_origin;
} pf_cluster;

#endif
