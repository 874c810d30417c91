/* Internal: the CUDA device, a GPU behind the device interface
 * (runtime/device.h).
 *
 * One stream per device is its in-order queue: a launcher thread per
 * device (named pf-gpuN) queues the device's ops of each step on the
 * stream in gang order, records an event after each, and reports an op
 * done (pf_step_op_done) once its event has completed, waiting on events
 * with blocking synchronization (it sleeps, it does not spin). An op whose
 * missing inputs are all ops this device has queued and not yet reported
 * is queued at once: the stream runs it after them. Memory comes from the
 * device's pool (cuda/pool.h): blocks freed by a step are kept by exact
 * size and handed to the next step, so steady-state steps never call
 * cudaMalloc. Storage it allocates holds device memory (data is a device
 * pointer) and is freed through pf_storage.release.
 *
 * Built into pathflow_cuda, not into libpathflow (docs/architecture.md,
 * "The CUDA backend"): only what links pathflow_cuda makes GPU devices.
 */
#ifndef PF_RUNTIME_DEVICE_CUDA_H
#define PF_RUNTIME_DEVICE_CUDA_H

#include <stddef.h>
#include <stdint.h>

#include <cuda_runtime_api.h>

#include "base/box.h"
#include "base/diag.h"
#include "cuda/pool.h"
#include "kernels/registry.h"
#include "runtime/device.h"

typedef struct pf_cuda_device_config {
  int index;            /* the device's index on its rank */
  int rank;             /* for thread names and messages */
  int ordinal;          /* CUDA device number (cuda/discover.h) */
  int64_t memory_bytes; /* what it reports; 0: the GPU's free memory */
  pf_clock *clock;      /* borrowed; for the time it waits */
  /* 1: the transport moves CUDA memory itself (CUDA-aware MPI): the device
   * stages no transfer (pf_device_info.stage lacks PF_STAGE_TRANSFERS). */
  int transport_cuda_memory;
} pf_cuda_device_config;

/* Starts a CUDA device on GPU cfg->ordinal: its stream, pool, events and
 * launcher thread. The executor takes it over (pf_executor_config.devices)
 * and destroys it; storage it allocated may outlive it (the memory is
 * freed with the last such storage). Errors: PF_ENOTFOUND (no such GPU or
 * no driver), PF_ENOMEM, PF_ESYS; each with a message in diag. */
int pf_cuda_device_create(const pf_cuda_device_config *cfg, pf_device **out, pf_diag *diag);

/* The pool of a CUDA device, for its counters (cudaMalloc calls); NULL if
 * d is not a CUDA device. */
pf_cuda_pool *pf_cuda_device_pool(pf_device *d);

/* How copy moves a box (base/box.h's pf_box_copy arguments) with
 * cudaMemcpy3D: every axis whole in both tensors is merged into the axis
 * before it, the rest is seen as (leading axes) x depth x height x width,
 * and `piece` is called with the parameters of one 3D copy per index of the
 * leading axes (one call for a box of rank 3 or less once merged; none for
 * an empty box). Pure arithmetic, no CUDA call: tests check it on the host.
 * Returns 0, or the first nonzero value `piece` returns. */
int pf_cuda_box_pieces(void *dst, const int64_t *dst_dims, const void *src,
                       const int64_t *src_dims, const pf_box *box, size_t elem,
                       enum cudaMemcpyKind kind,
                       int (*piece)(void *arg, const struct cudaMemcpy3DParms *p), void *arg);

/* Registers, for PF_DEVICE_GPU, the CUDA version of every built-in kernel
 * that has one (cuda/kernels.h), under the CPU kernel's name with its
 * shape, cost, sharding, gradient and in-place rules: a graph moves to GPUs
 * by changing its slices' kind. The CPU built-ins must be registered first
 * (pf_builtin_kernels_register). The compute function queues on the stream
 * of the device whose launcher calls it. A name already registered for
 * GPUs (by another rank of this process, or the user) is kept as it is.
 * Errors: PF_ENOTFOUND (a CPU built-in is missing), those of
 * pf_registry_add but PF_EEXIST. */
int pf_cuda_kernels_register(pf_registry *reg);

#endif
