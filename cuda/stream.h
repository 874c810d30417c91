/* Internal: a CUDA stream as the CUDA kernels use it.
 *
 * One per GPU an executor drives: the stream is the in-order queue that runs
 * the device's ops in gang order (issue 13). Beside the stream it carries
 * what the kernels need and should not create per call: the cuBLAS handle
 * bound to the stream, the fault word kernels report bad data through
 * (cuda/fault.h), and a scratch buffer grown on demand and kept.
 *
 * Not thread-safe: one host thread issues work to a stream at a time.
 */
#ifndef PF_CUDA_STREAM_H
#define PF_CUDA_STREAM_H

#include <stddef.h>

#include <cublas_api.h>
#include <cuda_runtime_api.h>

#include "cuda/fault.h"
#include "pathflow/error.h"

typedef struct pf_cuda_stream {
  int device;              /* CUDA ordinal (after CUDA_VISIBLE_DEVICES) */
  cudaStream_t stream;     /* non-blocking with respect to stream 0 */
  cublasHandle_t blas;     /* bound to `stream` */
  pf_cuda_fault *fault;    /* device memory, reset after each report */
  void *scratch;           /* device memory of scratch_size bytes, or NULL */
  size_t scratch_size;
  /* batch_rows' epoch order, kept from step to step (device memory: a
   * header saying whose order it is, then the rows), or NULL. */
  void *order;
  size_t order_size;
} pf_cuda_stream;

/* Creates a stream on `device` (and makes it the calling thread's current
 * device). *out is owned by the caller (pf_cuda_stream_destroy).
 * Errors: PF_ENOTFOUND (no such device or no driver), PF_ENOMEM, PF_ESYS;
 * each with a message in `diag`. */
int pf_cuda_stream_create(int device, pf_cuda_stream **out, pf_diag *diag);

/* Waits for the stream's work, frees everything. NULL is ignored. */
void pf_cuda_stream_destroy(pf_cuda_stream *s);

/* Waits until the stream's work is done (blocking, not spinning), then
 * reports what its kernels recorded: a fault (PF_EINVAL naming the kernel,
 * the row and the value, then the fault is cleared) or an asynchronous CUDA
 * error (PF_ESYS). 0 when all went well. */
int pf_cuda_stream_sync(pf_cuda_stream *s, pf_diag *diag);

/* At least `size` bytes of device scratch, valid until the next call that
 * grows it (only ever grown; the stream is synchronized before the old
 * buffer is freed). Errors: PF_ENOMEM. */
int pf_cuda_stream_scratch(pf_cuda_stream *s, size_t size, void **out,
                           pf_diag *diag);

#endif
