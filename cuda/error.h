/* Internal: CUDA and cuBLAS failures as pathflow errors. */
#ifndef PF_CUDA_ERROR_H
#define PF_CUDA_ERROR_H

#include <cublas_api.h>
#include <cuda_runtime_api.h>

#include "pathflow/error.h"

/* Records a failed CUDA runtime call in `diag` and returns its PF_E code:
 * PF_ENOMEM for an allocation failure, PF_ENOTFOUND when there is no
 * (such) device or driver, PF_ESYS otherwise. The message is
 * "<what>: <CUDA's name and sentence for err>". `diag` may be NULL. Returns
 * 0 for cudaSuccess. */
int pf_cuda_error(pf_diag *diag, cudaError_t err, const char *what);

/* The same for a cuBLAS status: PF_ENOMEM for CUBLAS_STATUS_ALLOC_FAILED,
 * PF_ENOTSUP for CUBLAS_STATUS_NOT_SUPPORTED / ARCH_MISMATCH, PF_ESYS
 * otherwise. */
int pf_cublas_error(pf_diag *diag, cublasStatus_t status, const char *what);

#endif
