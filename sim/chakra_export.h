/* Internal: compiled plans as Chakra execution traces.
 *
 * Every op of every rank's plan becomes one node in the trace of the device
 * it runs on, with the op's index in its rank's plan as its id, so a trace
 * names what a real run would execute, in the same gang order:
 *   kernel      COMP: num_ops and tensor_size from the kernel's cost
 *               function on the shard specs
 *   copy        COMP: no flops, the bytes read and written
 *   send, recv  COMM_SEND / COMM_RECV: the peer device (the device of the
 *               matching op on the other rank), the bytes and the tag
 *   collective  COMM_COLL: comm_type, the bytes of this device's block, and
 *               the devices taking part (attribute pf_comm_group); a
 *               collective among the devices of one rank (one op that reads
 *               every shard) is a COMP node on its device
 * A dependency on an op of another device of the same rank (a reshard
 * reading a neighbour's shard, say) cannot be a dependency between two
 * files: it becomes a send after the producer and a receive before the
 * consumer (ids from n_ops up, tags from the plan's transfers up), carrying
 * the bytes of the producer's outputs that the consumer reads, as the copy
 * between two devices would. A device runs its own ops (kernels, copies,
 * collectives within the rank) in gang order: each such node has a control
 * dependency on the one before it on the device.
 */
#ifndef PF_SIM_CHAKRA_EXPORT_H
#define PF_SIM_CHAKRA_EXPORT_H

#include "kernels/registry.h"
#include "scheduler/cluster.h"
#include "scheduler/schedule.h"
#include "sim/chakra.h"

/* One trace per device of `cl` (cl->n_devices of them, indexed by global
 * device), built from the compiled plans `c`; kernels' costs come from
 * `reg`. The caller frees each trace with pf_chakra_free and the array with
 * free. Errors: PF_EINVAL (plans that do not match the cluster, or a send
 * without its receive: the message says which), PF_ENOMEM. */
int pf_chakra_from_plans(const pf_compiled *c, const pf_cluster *cl, pf_registry *reg,
                         pf_chakra_trace ***out, pf_diag *d);

/* pf_chakra_from_plans, written to "<prefix>.<device>.et", one file per
 * device. Errors: those, and PF_ESYS naming the file. */
int pf_chakra_export(const pf_compiled *c, const pf_cluster *cl, pf_registry *reg,
                     const char *prefix, pf_diag *d);

#endif
