/* CUDA and cuBLAS failures as pathflow errors (see cuda/error.h). */
#include "cuda/error.h"

#include <cublas_v2.h>

int pf_cuda_error(pf_diag *diag, cudaError_t err, const char *what) {
  int code;
  if (err == cudaSuccess) return 0;
  switch (err) {
    case cudaErrorMemoryAllocation: code = PF_ENOMEM; break;
    case cudaErrorNoDevice:
    case cudaErrorInvalidDevice:
    case cudaErrorInsufficientDriver: code = PF_ENOTFOUND; break;
    default: code = PF_ESYS; break;
  }
  if (diag == NULL) return code;
  return pf_diag_error(diag, code, "%s: %s (%s)", what, cudaGetErrorName(err),
                       cudaGetErrorString(err));
}

int pf_cublas_error(pf_diag *diag, cublasStatus_t status, const char *what) {
  int code;
  if (status == CUBLAS_STATUS_SUCCESS) return 0;
  switch (status) {
    case CUBLAS_STATUS_ALLOC_FAILED: code = PF_ENOMEM; break;
    case CUBLAS_STATUS_NOT_SUPPORTED:
    case CUBLAS_STATUS_ARCH_MISMATCH: code = PF_ENOTSUP; break;
    default: code = PF_ESYS; break;
  }
  if (diag == NULL) return code;
  return pf_diag_error(diag, code, "%s: %s (%s)", what,
                       cublasGetStatusName(status),
                       cublasGetStatusString(status));
}
