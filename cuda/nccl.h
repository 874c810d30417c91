/* Internal: collectives between ranks on GPU memory, through NCCL.
 *
 * Built with NCCL when CMake finds it (nccl.h and libnccl beside the CUDA
 * toolkit, or a system package: PF_HAVE_NCCL); without it every function
 * here but pf_nccl_available returns PF_ENOTSUP, and the CUDA device stages
 * collectives through host memory instead. What the CUDA device's
 * collective ops (runtime/device.h) call.
 */
#ifndef PF_CUDA_NCCL_H
#define PF_CUDA_NCCL_H

#include <stddef.h>
#include <stdint.h>

#include <cuda_runtime_api.h>

#include "base/diag.h"
#include "pathflow/types.h"

/* Bytes of a communicator id (NCCL's unique id). */
#define PF_NCCL_ID_BYTES 128

/* 1 when NCCL was built in and PATHFLOW_NCCL is not 0. */
int pf_nccl_available(void);

/* A new communicator id in id (PF_NCCL_ID_BYTES). Makes this process the
 * communicator's bootstrap root: call it on its first member. Errors:
 * PF_ENOTSUP (no NCCL), PF_ESYS (NCCL's, in diag). */
int pf_nccl_id(uint8_t *id, pf_diag *diag);

/* Joins communicator `id` as member `me` of `n` on GPU `ordinal`; blocks
 * until every member has joined. *comm is freed by pf_nccl_leave. Errors:
 * PF_EINVAL (me, n), PF_ENOTSUP, PF_ESYS, each with NCCL's reason. */
int pf_nccl_join(int ordinal, const uint8_t *id, int n, int me, void **comm, pf_diag *diag);
void pf_nccl_leave(void *comm);

/* Queues an allreduce (reduce_op: sum, max, min, mean), a broadcast
 * (root: a member index), an allgather, a reduce-scatter or an all-to-all
 * (grouped sends and receives) on `stream`;
 * `count` is each member's share, as in pf_device_collective.
 * Errors: PF_ENOTSUP (a kind, dtype or mean on integers NCCL lacks),
 * PF_ESYS (NCCL's), each in diag. */
int pf_nccl_collective(cudaStream_t stream, void *comm, pf_collective_kind kind,
                       pf_reduce_op reduce_op, pf_dtype dtype, size_t count, int root,
                       const void *in, void *out, pf_diag *diag);

#endif
