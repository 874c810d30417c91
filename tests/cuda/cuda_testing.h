/* Shared by the CUDA tests: skipping without a GPU, and CUDA calls that
 * fail the test with CUDA's message. */
#ifndef PF_TESTS_CUDA_TESTING_H
#define PF_TESTS_CUDA_TESTING_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <cmocka.h>

#include <cuda_runtime_api.h>

#include "cuda/discover.h"

/* ctest's SKIP_RETURN_CODE for these tests. */
#define PF_TEST_SKIP 77

/* Exits with PF_TEST_SKIP, saying why, when CUDA sees no GPU. */
static inline void pf_cuda_test_require_gpu(const char *test) {
  if (pf_cuda_visible_count() > 0) return;
  printf("SKIP %s: no CUDA GPU visible (cudaGetDeviceCount reports none); "
         "run scripts/gpu-check on a machine with one\n",
         test);
  fflush(stdout);
  exit(PF_TEST_SKIP);
}

#define CU(call)                                                          \
  do {                                                                    \
    cudaError_t err_ = (call);                                            \
    if (err_ != cudaSuccess)                                              \
      fail_msg("%s: %s (%s)", #call, cudaGetErrorName(err_),              \
               cudaGetErrorString(err_));                                 \
  } while (0)

#endif
