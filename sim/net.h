/* Internal: the simulator's network, a flow model in virtual time.
 *
 * The links of a described cluster (sim/cluster.h): each device's port into
 * its host's switch (both directions), each host NIC (up and down), each
 * host's DCN port and each island's DCN uplink (up and down) when there are
 * several islands. A transfer is a flow over the links of its path
 * (docs/cluster-format.md, "The network model"): it waits the path's
 * latency, then moves its bytes at the rate the links give it. Concurrent
 * flows share links max-min fairly (progressive filling), recomputed
 * whenever a flow enters or leaves the network, only over the flows that
 * share links, transitively, with the ones that changed. Alone on its path,
 * a flow takes latency + bytes / (narrowest bandwidth on the path).
 *
 * A bundle (pf_simnet_shape_send) is a set of flows that move as one: one
 * event to enter, one to leave, one rate for all its members, and on each
 * link a weight, the number of its members crossing it, in weighted max-min
 * sharing with everything else. A collective's step (every device of a ring
 * sending to the next) is a bundle, so that a ring costs O(steps) events,
 * not O(steps x devices); and a bundle alone on its links does not enter
 * them (see pf_simnet_shape_create), so such a step is O(1) work.
 *
 * Flows waiting out their latency wait on a queue per kind of path (they
 * enter in the order they were sent), the others on a 4-ary heap.
 *
 * Time is integer nanoseconds (pf_simtime): events at the same instant tie
 * exactly and are taken in the order their flows were added, so a run is
 * deterministic; a flow completes at the first nanosecond at or after its
 * exact fluid completion time. Not thread-safe: one network, one thread.
 */
#ifndef PF_SIM_NET_H
#define PF_SIM_NET_H

#include <stdint.h>

#include "sim/cluster.h"

typedef int64_t pf_simtime; /* nanoseconds */
#define PF_SIMTIME_MAX INT64_MAX

typedef struct pf_simnet pf_simnet;

/* The classes of links, for statistics. */
typedef enum pf_simnet_class {
  PF_SIMNET_INTRA_HOST, /* device ports into the host switch */
  PF_SIMNET_NIC,        /* host NICs into the island fabric */
  PF_SIMNET_DCN,        /* host DCN ports and island uplinks */
  PF_SIMNET_CLASS_COUNT
} pf_simnet_class;

/* Called when a flow has delivered its last byte, at virtual time `now`,
 * with the arg and tag given to pf_simnet_send. It may send more flows
 * (starting at `now` or later). */
typedef void (*pf_simnet_done)(pf_simnet *net, void *arg, uint64_t tag, pf_simtime now);

typedef struct pf_simnet_stats {
  uint64_t flows_sent, flows_done; /* a bundle counts its members */
  uint64_t bundles_done;    /* bundles completed */
  uint64_t events;          /* flows and bundles entering the network + leaving it */
  uint64_t recomputes;      /* sharing recomputations (one per instant with changes) */
  uint64_t flows_rerated;   /* flow rates recomputed, summed over recomputations */
  uint64_t peak_flows;      /* most flows in flight at once (a bundle counts once) */
  double bytes[PF_SIMNET_CLASS_COUNT]; /* bytes carried by each class of link */
} pf_simnet_stats;

/* A network for `cl` (which must outlive it), at time 0. O(devices + hosts)
 * memory. Returns 0, PF_ENOMEM, or PF_ERANGE for a cluster of more than
 * 2^31 links (about a billion devices). */
int pf_simnet_create(const pf_sim_cluster *cl, pf_simnet **out);

/* Frees the network and any flow still in it (their callbacks are not
 * called); NULL is ignored. */
void pf_simnet_destroy(pf_simnet *net);

/* Sends `bytes` from device src to device dst, starting at `start` (not
 * before pf_simnet_now). `cb` (may be NULL) is called on completion. A flow
 * from a device to itself uses no link and completes at `start`. Returns 0,
 * PF_ERANGE (a device outside the cluster), PF_EINVAL (start in the past) or
 * PF_ENOMEM. */
int pf_simnet_send(pf_simnet *net, int64_t src, int64_t dst, uint64_t bytes, pf_simtime start,
                   pf_simnet_done cb, void *arg, uint64_t tag);

/* A shape: n flows, src[k] -> dst[k], that a collective sends together,
 * again and again (each step of a ring), as bundles. The flows are grouped
 * by the kind of path they take (inside a host, across an island's fabric,
 * across islands; at most 3 parts), and each part is sent as one bundle:
 * its flows enter the network together after their path's latency, all
 * move at one rate, the max-min fair rate of an entity that counts w times
 * on a link that w of them cross (all get what the most crowded or
 * narrowest of their links gives), and complete together when the largest
 * has moved its bytes. Exact against n separate flows where no link carries
 * two of a part's flows and the flows are the same size; a lockstep
 * approximation otherwise (a step ends when its slowest flow would).
 * Routing and link weights are worked out once here (O(n)); a part whose
 * links no other shape crosses and that finds them empty when it is sent
 * costs O(1) a send (it enters its links only when other traffic comes).
 * Returns 0, PF_ERANGE (a device outside the cluster), PF_EINVAL (a flow
 * from a device to itself) or PF_ENOMEM. */
typedef struct pf_simnet_shape pf_simnet_shape;
int pf_simnet_shape_create(pf_simnet *net, const int64_t *src, const int64_t *dst, size_t n,
                           pf_simnet_shape **out);

/* Sends the shape's flows, starting at `start`: flow k moves bytes[k], or
 * `each` bytes when bytes is NULL. `cb` (may be NULL) is called once per
 * part, with `tag`; *parts gets how many parts were sent, which is how
 * many calls to expect. Returns 0, PF_EINVAL (start in the past), PF_ESTATE
 * (the shape's previous send is still in flight) or PF_ENOMEM (then *parts
 * were sent). */
int pf_simnet_shape_send(pf_simnet *net, pf_simnet_shape *sh, const uint64_t *bytes, uint64_t each,
                         pf_simtime start, pf_simnet_done cb, void *arg, uint64_t tag, int *parts);

/* Frees a shape with no send in flight; NULL is ignored. */
void pf_simnet_shape_destroy(pf_simnet *net, pf_simnet_shape *sh);

/* Runs events up to and including time `until`, then sets the clock to
 * `until` (PF_SIMTIME_MAX: until no flow is left, the clock staying at the
 * last event). Returns 0, PF_ENOMEM (the network is then unusable), or
 * PF_ESTATE when called from a completion callback. */
int pf_simnet_run(pf_simnet *net, pf_simtime until);

/* Called, when set, for each flow or bundle that has delivered its last
 * byte (before its completion callback): the links it crossed, the bundle's
 * weight on each (how many of its members cross it; NULL: 1 each), the
 * bytes each member moved, and when it entered and left its links. What
 * per-link timelines are made of (sim/replay.c's trace). */
typedef void (*pf_simnet_observer)(void *arg, const int32_t *links, const int32_t *weights,
                                   int n, double member_bytes, pf_simtime start, pf_simtime end);
void pf_simnet_observe(pf_simnet *net, pf_simnet_observer fn, void *arg);
/* The name of link `id` (as the observer gives them): "device 3 out",
 * "host 2 NIC 0 in", "host 5 DCN out", "island 1 uplink in". */
void pf_simnet_link_name(const pf_simnet *net, int32_t id, char *buf, size_t len);

/* The current virtual time. */
pf_simtime pf_simnet_now(const pf_simnet *net);

/* When the network's next event is due (a flow entering its links or
 * completing), or PF_SIMTIME_MAX when no flow is in flight. A caller with
 * events of its own runs the network up to the earlier of the two. */
pf_simtime pf_simnet_next(const pf_simnet *net);

/* Flows and bundles sent and not yet complete. */
uint64_t pf_simnet_in_flight(const pf_simnet *net);

/* Counters since creation. */
void pf_simnet_get_stats(const pf_simnet *net, pf_simnet_stats *out);

/* The path latency and narrowest bandwidth between two devices (what one
 * flow alone would see); PF_ERANGE for a device outside the cluster. */
int pf_simnet_path(const pf_simnet *net, int64_t src, int64_t dst, pf_simtime *latency, double *bandwidth);

/* Bytes of memory the network holds now (links, flows, queues). */
size_t pf_simnet_memory(const pf_simnet *net);

#endif
