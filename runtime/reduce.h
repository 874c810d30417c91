/* Internal: local collectives (among the devices of one rank). Blocks move
 * through base/box.h, elements are reduced by base/reduce.h. */
#ifndef PF_RUNTIME_REDUCE_H
#define PF_RUNTIME_REDUCE_H

#include <stddef.h>

#include "base/reduce.h"
#include "pathflow/types.h"
#include "plan/plan.h"
#include "runtime/storage.h"


/* Runs collective `op` over n shards that all live on this rank: in[k] and
 * out[k] are shard k's input and output buffers with specs in_spec and
 * out_spec. Outputs must not alias inputs. */
void pf_collective_local(const pf_plan_op *op, int n, const pf_spec *in_spec,
                         const pf_spec *out_spec, pf_storage *const *in,
                         pf_storage *const *out);

#endif
