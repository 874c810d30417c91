/* Internal: execution traces replayed in virtual time on a described
 * cluster.
 *
 * The input is one Chakra trace per device (sim/chakra.h): compiled plans
 * become such traces with sim/chakra_export.h, whose gang order is kept as
 * control dependencies, so what is simulated is what a real job would run;
 * traces written by other tools are simulated the same way.
 *
 * Each device computes one node at a time: a compute node becomes ready
 * when its dependencies are done, and ready nodes run in file order. It
 * takes the cluster's per-op dispatch cost plus its roofline time, the
 * larger of flops over the device type's peak (f32) and bytes over its
 * memory bandwidth; a node with neither takes its recorded duration.
 * Communication does not occupy the device: a send starts a flow (after the
 * cluster's per-transfer cost) on the network model (sim/net.h) when it is
 * ready, and completes with it; its receive (same devices and tag)
 * completes when both the data has arrived and it is ready itself. A
 * collective starts when every device of its group is ready for it (the
 * k-th collective of a group on each device meet) and completes for all at
 * once, a reduction's arithmetic after its messages ((n - 1) / n of its
 * bytes combined, 3 bytes of memory traffic each, at the device type's
 * memory bandwidth): allreduce by the algorithm chosen (sim/collective.h), the others
 * as direct flows (allgather: each block to every other device;
 * reduce-scatter and all-to-all: a 1/n piece to every other device;
 * broadcast and scatter from, gather and reduce to, the group's first
 * device; a barrier waits only for the group). A step starts after the
 * cluster's per-step cost. DELAY nodes (PF_CHAKRA_DELAY, a workload's:
 * sim/workload.h) wait their delay_ns holding no device.
 *
 * Deterministic: the same input gives the same result, event for event.
 */
#ifndef PF_SIM_REPLAY_H
#define PF_SIM_REPLAY_H

#include <stdint.h>
#include <stdio.h>

#include "sim/chakra.h"
#include "sim/cluster.h"
#include "sim/collective.h"
#include "sim/net.h"

/* The trace's per-link rows: a process of this pid (not a device's)
 * holding a counter per link (its traffic in GB/s over time), for the
 * PF_SIM_TRACE_LINKS links that carried the most bytes. */
#define PF_SIM_TRACE_LINKS_PID (1 << 30)
#define PF_SIM_TRACE_LINKS 256

typedef struct pf_sim_options {
  pf_sim_algo algo; /* allreduce algorithm (PF_SIM_RING by default: 0) */
  int chunks;       /* pipelining of the tree algorithms; < 1: 1 */
  FILE *trace;      /* NULL, or where to write a Chrome trace (Perfetto): a
                     * process per device (rows compute and communication),
                     * then the links' rows */
  /* A workload's runs (sim/workload.h): > 0 when the traces number their
   * nodes' runs (pf_chakra_node.run) and pay each run's step cost with
   * DELAY nodes of their own; the result then gives each run's span. */
  int64_t runs;
} pf_sim_options;

/* One node of the critical path. */
typedef struct pf_sim_path_node {
  int64_t device;
  uint64_t id;
  int32_t type;
  pf_simtime start, end;
  char name[64];
} pf_sim_path_node;

typedef struct pf_sim_result {
  pf_simtime makespan; /* the last node's end */
  int64_t n_devices;
  uint64_t nodes;      /* simulated */
  uint64_t events;     /* engine events plus network events */
  pf_simtime *busy;    /* per device: time computing */
  pf_simtime *comm;    /* per device: time with communication of its own in flight */
  pf_simtime *exposed; /* per device: communication time not hidden under compute */
  pf_simnet_stats net;
  uint32_t n_path; /* the critical path, first node first */
  pf_sim_path_node *path;
  int64_t n_runs;  /* options.runs: each run's first start and last end (0, 0 if empty) */
  pf_simtime *run_start, *run_end;
} pf_sim_result;

/* Replays traces[0..n_devices) (trace d runs on device d of `cl`, which
 * must have at least n_devices devices). The traces are the caller's; the
 * replay sorts each collective's group in place (a collective that names
 * no group is read as the group of every device, held once for all such
 * nodes, so memory stays linear in the devices). Errors: PF_EINVAL (a send without
 * its receive, a device outside the cluster, a collective whose group names
 * a device without a trace: the message names the node), PF_ESTATE (nodes
 * that can never run: the message names one and what it waits for),
 * PF_ENOMEM. The caller frees *out with pf_sim_result_free. */
int pf_sim_replay(pf_chakra_trace *const *traces, int64_t n_devices, const pf_sim_cluster *cl,
                  const pf_sim_options *opt, pf_sim_result **out, pf_diag *d);

void pf_sim_result_free(pf_sim_result *r);

#endif
