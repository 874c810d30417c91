/* Internal: element-wise reductions, shared by local collectives (devices
 * of one rank) and by the staging steps of MPI collectives, and the local
 * collectives themselves. Blocks move through base/box.h in both. */
#ifndef PF_RUNTIME_REDUCE_H
#define PF_RUNTIME_REDUCE_H

#include <stddef.h>

#include "pathflow/types.h"
#include "plan/plan.h"
#include "runtime/storage.h"

/* dst[i] = op(dst[i], src[i]) for n elements (MEAN accumulates a sum). */
void pf_reduce_into(void *dst, const void *src, size_t n, pf_dtype dtype, int reduce_op);
/* dst[i] /= count, for MEAN after a sum (float dtypes only). */
void pf_reduce_finish(void *dst, size_t n, pf_dtype dtype, int reduce_op, int count);

/* Runs collective `op` over n shards that all live on this rank: in[k] and
 * out[k] are shard k's input and output buffers with specs in_spec and
 * out_spec. Outputs must not alias inputs. */
void pf_collective_local(const pf_plan_op *op, int n, const pf_spec *in_spec,
                         const pf_spec *out_spec, pf_storage *const *in,
                         pf_storage *const *out);

#endif
