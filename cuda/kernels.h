/* Internal: CUDA implementations of the built-in kernels.
 *
 * Each is the compute function of the CPU kernel of the same name
 * (kernels/builtin_*.c) for a GPU: it gets the same pf_kernel_call (attrs,
 * shard specs, device index, shard index; the views' data are device
 * pointers) plus the stream to queue its work on, and returns as soon as
 * the work is queued. It trusts the CPU kernel's shape function, which
 * checked the specs and attributes when the graph was built.
 *
 * How the CUDA device plugs them in (issue 10's device interface, not done
 * yet): for each entry it copies the CPU kernel's definition (shape, cost,
 * sharding, grad), sets kind PF_DEVICE_GPU and a compute function that
 * calls `compute` with the device's stream, and registers it, so that a
 * graph moves to GPUs by changing its slices' kind. The kernels that read
 * files (idx_read, checkpoint_load, checkpoint_save) have no CUDA version:
 * they run on the host.
 *
 * Errors: what the CPU kernel refuses on the host (a bad attribute, a
 * batch larger than the data set) is refused here the same way; a failed
 * launch is PF_ESYS (PF_ENOMEM for scratch); bad data the host cannot see
 * (a label out of range, a negative step) is recorded on the device and
 * reported by the next pf_cuda_stream_sync, as PF_EINVAL with the CPU
 * kernel's message. Outputs are unspecified when a call fails.
 */
#ifndef PF_CUDA_KERNELS_H
#define PF_CUDA_KERNELS_H

#include <stddef.h>

#include "cuda/stream.h"
#include "pathflow/kernel.h"

/* Queues `call` on `stream`; 0 or a PF_E code through call->diag. */
typedef int (*pf_cuda_compute_fn)(const pf_kernel_call *call,
                                  pf_cuda_stream *stream);

typedef struct pf_cuda_kernel {
  const char *name;           /* the CPU kernel's name */
  pf_cuda_compute_fn compute;
} pf_cuda_kernel;

/* The built-in CUDA kernels: a static table of *n entries. */
const pf_cuda_kernel *pf_cuda_kernels(size_t *n);

/* The CUDA kernel of that name, or NULL. */
const pf_cuda_kernel *pf_cuda_kernel_find(const char *name);

#endif
