// Reductions over one axis of x viewed as [outer, len, inner]: reduce_sum,
// its gradient (a repeat), argmax. One thread per output element walks the
// axis in order, so sums are added in the CPU kernel's order and round the
// same way; threads next to each other read neighbouring columns (inner),
// so the reads coalesce whenever inner > 1.
#include "cuda/grid.cuh"

namespace {

template <typename T>
__global__ void sum_kernel(int64_t outer, int64_t len, int64_t inner,
                           const T *x, T *o) {
  PF_CUDA_FOR(idx, outer * inner) {
    int64_t a = idx / inner, i = idx % inner;
    const T *col = x + a * len * inner + i;
    T acc = 0;
    for (int64_t k = 0; k < len; k++) acc += col[k * inner];
    o[idx] = acc;
  }
}

template <typename T>
__global__ void repeat_kernel(int64_t outer, int64_t len, int64_t inner,
                              const T *g, T *o) {
  PF_CUDA_FOR(idx, outer * len * inner) {
    int64_t i = idx % inner, a = idx / (len * inner);
    o[idx] = g[a * inner + i];
  }
}

// Ties go to the first index; a NaN wins over numbers, the first NaN over
// later ones (kernels/builtin_reduce.c).
template <typename T>
__global__ void argmax_kernel(int64_t outer, int64_t len, int64_t inner,
                              const T *x, int64_t *o) {
  PF_CUDA_FOR(idx, outer * inner) {
    int64_t a = idx / inner, i = idx % inner, at = 0;
    const T *col = x + a * len * inner + i;
    T best = col[0];
    for (int64_t k = 1; k < len; k++) {
      T v = col[k * inner];
      if (v > best || (v != v && best == best)) {
        best = v;
        at = k;
      }
    }
    o[idx] = at;
  }
}

}  // namespace

extern "C" cudaError_t pf_cuda_launch_reduce_sum(cudaStream_t stream,
                                                 pf_dtype dt, int64_t outer,
                                                 int64_t len, int64_t inner,
                                                 const void *x, void *o) {
  int64_t n = outer * inner;
  if (n == 0) return cudaSuccess;
  PF_CUDA_FLOAT_SWITCH(dt, {
    sum_kernel<T><<<pf_cuda_blocks(n), PF_CUDA_THREADS, 0, stream>>>(
        outer, len, inner, (const T *)x, (T *)o);
  });
  return cudaGetLastError();
}

extern "C" cudaError_t pf_cuda_launch_repeat(cudaStream_t stream, pf_dtype dt,
                                             int64_t outer, int64_t len,
                                             int64_t inner, const void *g,
                                             void *o) {
  int64_t n = outer * len * inner;
  if (n == 0) return cudaSuccess;
  PF_CUDA_FLOAT_SWITCH(dt, {
    repeat_kernel<T><<<pf_cuda_blocks(n), PF_CUDA_THREADS, 0, stream>>>(
        outer, len, inner, (const T *)g, (T *)o);
  });
  return cudaGetLastError();
}

extern "C" cudaError_t pf_cuda_launch_argmax(cudaStream_t stream, pf_dtype dt,
                                             int64_t outer, int64_t len,
                                             int64_t inner, const void *x,
                                             int64_t *o) {
  int64_t n = outer * inner;
  if (n == 0 || len == 0) return cudaSuccess;
  PF_CUDA_FLOAT_SWITCH(dt, {
    argmax_kernel<T><<<pf_cuda_blocks(n), PF_CUDA_THREADS, 0, stream>>>(
        outer, len, inner, (const T *)x, o);
  });
  return cudaGetLastError();
}
