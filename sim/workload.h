/* Internal: several runs of several graphs on one simulated cluster, as
 * one set of traces the replay runs (sim/replay.h): Pathways' multi-tenancy
 * (executables sharing devices, time-sliced by weight) and its dispatch
 * experiments (parallel or sequential dispatch of a pipeline's stages).
 *
 * The controller (on device 0) sends the runs one after another, in the
 * order pathflow's dispatcher gives them when every tenant has runs
 * waiting: stride scheduling, the tenant with the least virtual time next,
 * which then advances by 1 / weight (ties to the lower tenant). Sending a
 * run costs it the cluster's runtime.dispatch. A run's message reaches a
 * device after the network latency from device 0; with sequential
 * dispatch, the message to stage s goes only once stage s - 1 has said it
 * started, a round trip later. A device starts a run once its message is
 * in and its previous run is done there (devices run steps one after
 * another), paying runtime.step; the run's own nodes follow.
 *
 * All of that is DELAY nodes (pf_chakra_node, PF_CHAKRA_DELAY) added to
 * each device's trace, repeated per device since a trace's nodes can only
 * depend on its own: the controller's chain of sends, the message's way,
 * the step's start, and a gate after the run's last nodes. Every node of
 * a run carries its number (pf_chakra_node.run = index + 1), so the replay
 * reports each run's span (pf_sim_options.runs). */
#ifndef PF_SIM_WORKLOAD_H
#define PF_SIM_WORKLOAD_H

#include <stdint.h>

#include "base/diag.h"
#include "sim/chakra.h"
#include "sim/cluster.h"

typedef struct pf_sim_tenant {
  pf_chakra_trace *const *traces; /* per device (n_devices); NULL: nothing on that device */
  const int32_t *stage_of; /* per device: its place in the dispatch order; NULL: all 0 */
  double weight;           /* > 0: its share of the runs sent while others wait too */
  int64_t runs;            /* >= 1 */
  int sequential;          /* dispatch: 0 parallel (every stage at once), 1 sequential */
} pf_sim_tenant;

typedef struct pf_sim_workload {
  int64_t n_devices, n_runs;
  pf_chakra_trace **traces; /* per device: what the replay runs */
  int32_t *run_tenant;      /* per run, in dispatch order: its tenant */
  /* Owned storage behind the traces (nodes, dependency lists). */
  pf_chakra_node **nodes;
  uint64_t **deps;
} pf_sim_workload;

/* Builds the workload of tenants[0..n) on the first n_devices devices of
 * cl (which must have them). The traces stay the caller's and must
 * outlive the workload (names and groups are shared). Errors: PF_EINVAL (a
 * weight <= 0, runs < 1, a dependency a trace lacks: the message says
 * which), PF_ERANGE (more than 2^31 runs), PF_ENOMEM. */
int pf_sim_workload_build(const pf_sim_tenant *tenants, int n, int64_t n_devices,
                          const pf_sim_cluster *cl, pf_sim_workload **out, pf_diag *d);
void pf_sim_workload_free(pf_sim_workload *w);

#endif
