/* Internal: collective algorithms as the point-to-point flows they issue.
 *
 * Each algorithm is a small state machine on the flow network
 * (sim/net.h): it sends a flow when the algorithm would, so concurrent
 * flows share links like any others. The models are in
 * docs/cluster-format.md ("Collective models"):
 *
 *  ring          reduce-scatter then allgather around the devices in the
 *                order given: 2(n-1) steps of bytes/n. Each step is sent as
 *                bundles (pf_simnet_shape_send: one a kind of path), and
 *                step k+1 starts when all of step k has arrived, so a ring
 *                is O(n) events. Alone on its links:
 *                2(n-1)/n * bytes/bw + 2(n-1) * lat.
 *  ring_flows    the same ring with every flow simulated on its own: a
 *                device sends step k+1 once it has received step k and its
 *                send of step k is done (O(n^2) events). The two give the
 *                same time where no link carries two flows of one step and
 *                the chunks are equal (docs/cluster-format.md); ring_flows
 *                is the reference the bundled ring is tested against.
 *  tree          reduce up a binary tree (heap order over the devices given:
 *                parent of i is (i-1)/2), then broadcast down, pipelined in
 *                `chunks` pieces.
 *  double_tree   two such trees on half the bytes each, the second over the
 *                devices in reverse order, so that most inner nodes of one
 *                are leaves of the other (NCCL's idea).
 *  hierarchical  reduce-scatter inside each host (ring), reduce-scatter
 *                across the hosts of an island (one ring per local device
 *                index), allreduce across islands over the DCN (one ring
 *                per host position and local index), then allgathers back
 *                down. One level is skipped when it has one member. Phases
 *                end together: a phase starts when every flow of the one
 *                before has completed. Each ring's steps are bundles, as
 *                for ring.
 *
 * The state is O(devices) and is freed when the collective completes.
 */
#ifndef PF_SIM_COLLECTIVE_H
#define PF_SIM_COLLECTIVE_H

#include <stdint.h>

#include "sim/net.h"

typedef enum pf_sim_algo {
  PF_SIM_RING,
  PF_SIM_TREE,
  PF_SIM_DOUBLE_TREE,
  PF_SIM_HIERARCHICAL,
  PF_SIM_RING_FLOWS,
  PF_SIM_ALGO_COUNT
} pf_sim_algo;

/* Called once when every device has the reduced result, at time `now`. */
typedef void (*pf_sim_coll_done)(void *arg, pf_simtime now);

/* Starts an allreduce of `bytes` over devices[0..n) (distinct devices of the
 * network's cluster; the array is copied) at time `start`. `chunks` (>= 1)
 * pipelines the tree algorithms; the others ignore it. `done` (may be NULL)
 * is called on completion while the network runs. Returns 0; PF_EINVAL
 * (n < 1, a repeated device, chunks < 1, start in the past; hierarchical:
 * hosts holding different numbers of the devices, or islands different
 * numbers of hosts), PF_ERANGE (a device outside the cluster) or PF_ENOMEM,
 * with a message in diag (may be NULL). n == 1 or bytes == 0 completes at
 * `start`. Out of memory while the collective runs (a flow that cannot be
 * sent), it never completes: `done` is not called. */
int pf_sim_allreduce(pf_simnet *net, const pf_sim_cluster *cl, pf_sim_algo algo, const int64_t *devices,
                     int64_t n, uint64_t bytes, int chunks, pf_simtime start, pf_sim_coll_done done,
                     void *arg, pf_diag *diag);

/* "ring", "tree", "double_tree", "hierarchical", "ring_flows"; and back (-1
 * if unknown). */
const char *pf_sim_algo_name(pf_sim_algo algo);
int pf_sim_algo_parse(const char *name);

#endif
