/* A CUDA stream with its cuBLAS handle, fault word and scratch (see
 * cuda/stream.h). */
#include "cuda/stream.h"

#include <stdlib.h>

#include <cublas_v2.h>

#include "base/util.h"
#include "cuda/error.h"
#include "cuda/launch.h"

int pf_cuda_stream_create(int device, pf_cuda_stream **out, pf_diag *diag) {
  pf_cuda_stream *s = pf_calloc(1, sizeof *s);
  int rc;
  if (s == NULL) return pf_diag_error(diag, PF_ENOMEM, "cuda stream: out of memory");
  s->device = device;
  if ((rc = pf_cuda_error(diag, cudaSetDevice(device), "cuda stream: cudaSetDevice")) ||
      (rc = pf_cuda_error(diag, cudaStreamCreateWithFlags(&s->stream, cudaStreamNonBlocking),
                          "cuda stream: cudaStreamCreateWithFlags")) ||
      (rc = pf_cublas_error(diag, cublasCreate(&s->blas), "cuda stream: cublasCreate")) ||
      (rc = pf_cublas_error(diag, cublasSetStream(s->blas, s->stream),
                            "cuda stream: cublasSetStream")) ||
      (rc = pf_cuda_error(diag, cudaMalloc((void **)&s->fault, sizeof *s->fault),
                          "cuda stream: cudaMalloc")) ||
      (rc = pf_cuda_error(diag, pf_cuda_fault_reset(s->stream, s->fault),
                          "cuda stream: clearing the fault word"))) {
    pf_cuda_stream_destroy(s);
    return rc;
  }
  *out = s;
  return 0;
}

void pf_cuda_stream_destroy(pf_cuda_stream *s) {
  if (s == NULL) return;
  (void)cudaSetDevice(s->device);
  if (s->stream) (void)cudaStreamSynchronize(s->stream);
  if (s->blas) (void)cublasDestroy(s->blas);
  (void)cudaFree(s->fault);
  (void)cudaFree(s->scratch);
  (void)cudaFree(s->order);
  if (s->stream) (void)cudaStreamDestroy(s->stream);
  free(s);
}

int pf_cuda_stream_sync(pf_cuda_stream *s, pf_diag *diag) {
  pf_cuda_fault f;
  int rc;
  if ((rc = pf_cuda_error(diag, cudaStreamSynchronize(s->stream),
                          "cuda stream: a kernel failed")) != 0)
    return rc;
  if ((rc = pf_cuda_error(diag, cudaMemcpy(&f, s->fault, sizeof f, cudaMemcpyDeviceToHost),
                          "cuda stream: reading the fault word")) != 0)
    return rc;
  if (f.code == PF_CUDA_FAULT_NONE) return 0;
  (void)pf_cuda_fault_reset(s->stream, s->fault);
  (void)cudaStreamSynchronize(s->stream);
  switch (f.code) {
    case PF_CUDA_FAULT_LABEL:
      return pf_diag_error(diag, PF_EINVAL,
                           "softmax_xent: row %llu has label %lld; expected 0 <= label < %lld",
                           f.at, f.value, f.limit);
    case PF_CUDA_FAULT_STEP:
      return pf_diag_error(diag, PF_EINVAL, "batch_rows: step %lld is negative", f.value);
    default:
      return pf_diag_error(diag, PF_ESYS, "cuda stream: unknown fault %d", f.code);
  }
}

int pf_cuda_stream_scratch(pf_cuda_stream *s, size_t size, void **out, pf_diag *diag) {
  int rc;
  if (size > s->scratch_size) {
    void *mem = NULL;
    /* The old buffer may still be read by queued work. */
    if ((rc = pf_cuda_error(diag, cudaStreamSynchronize(s->stream),
                            "cuda scratch: cudaStreamSynchronize")) != 0)
      return rc;
    if ((rc = pf_cuda_error(diag, cudaMalloc(&mem, size), "cuda scratch: cudaMalloc")) != 0)
      return rc;
    (void)cudaFree(s->scratch);
    s->scratch = mem;
    s->scratch_size = size;
  }
  *out = s->scratch;
  return 0;
}
