/* Internal: launch geometry and dtype dispatch shared by the .cu files. */
#ifndef PF_CUDA_GRID_CUH
#define PF_CUDA_GRID_CUH

#include <stdint.h>

#include <cuda_runtime.h>

#include "cuda/launch.h"

#define PF_CUDA_THREADS 256

/* Blocks for n elements with a grid-stride loop: enough to fill any GPU,
 * few enough that each thread does a handful of elements when n is huge. */
static inline unsigned pf_cuda_blocks(int64_t n) {
  int64_t b = (n + PF_CUDA_THREADS - 1) / PF_CUDA_THREADS;
  if (b > 8192) b = 8192;
  return b < 1 ? 1u : (unsigned)b;
}

#define PF_CUDA_FOR(i, n)                                             \
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;    \
       i < (n); i += (int64_t)gridDim.x * blockDim.x)

/* Runs the statements with T the C type of a float dtype (f32 or f64). */
#define PF_CUDA_FLOAT_SWITCH(dt, ...) \
  do {                                \
    if ((dt) == PF_F32) {             \
      typedef float T;                \
      __VA_ARGS__                     \
    } else {                          \
      typedef double T;               \
      __VA_ARGS__                     \
    }                                 \
  } while (0)

#endif
