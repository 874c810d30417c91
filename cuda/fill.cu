// Generated tensors: fill and iota (a ramp), init_uniform (the counter-based
// generator of kernels/builtin_init.c, bit for bit: element i depends only
// on the seed and i, so the GPU draws exactly the CPU's numbers).
#include "base/mix64.h"
#include "cuda/grid.cuh"

namespace {

// start + i * step, rounded twice as the CPU rounds it (no fused
// multiply-add), then converted as C converts.
template <typename T>
__global__ void ramp_kernel(int64_t n, double start, double step, T *o) {
  PF_CUDA_FOR(i, n) { o[i] = (T)__dadd_rn(start, __dmul_rn((double)i, step)); }
}

template <typename T>
cudaError_t ramp(cudaStream_t s, int64_t n, double start, double step,
                 void *o) {
  ramp_kernel<T><<<pf_cuda_blocks(n), PF_CUDA_THREADS, 0, s>>>(n, start, step,
                                                              (T *)o);
  return cudaGetLastError();
}

// kernels/builtin_init.c's draw(): uniform in [0, 1) with 53 random bits.
__device__ double draw(uint64_t seed, uint64_t i) {
  return (double)(pf_mix64(seed * 0x9e3779b97f4a7c15ull + pf_mix64(i + 1)) >>
                  11) *
         0x1.0p-53;
}

template <typename T>
__global__ void init_kernel(int64_t n, uint64_t seed, double bound, T *o) {
  PF_CUDA_FOR(i, n) {
    double u = __dadd_rn(__dmul_rn(2.0, draw(seed, (uint64_t)i)), -1.0);
    o[i] = (T)__dmul_rn(u, bound);
  }
}

}  // namespace

extern "C" cudaError_t pf_cuda_launch_ramp(cudaStream_t stream, pf_dtype dt,
                                           int64_t n, double start,
                                           double step, void *o) {
  if (n == 0) return cudaSuccess;
  switch (dt) {
    case PF_F32: return ramp<float>(stream, n, start, step, o);
    case PF_F64: return ramp<double>(stream, n, start, step, o);
    case PF_I32: return ramp<int32_t>(stream, n, start, step, o);
    case PF_I64: return ramp<int64_t>(stream, n, start, step, o);
    case PF_U8: return ramp<uint8_t>(stream, n, start, step, o);
    default: return cudaErrorInvalidValue;
  }
}

extern "C" cudaError_t pf_cuda_launch_init_uniform(cudaStream_t stream,
                                                   pf_dtype dt, int64_t n,
                                                   uint64_t seed, double bound,
                                                   void *o) {
  if (n == 0) return cudaSuccess;
  PF_CUDA_FLOAT_SWITCH(dt, {
    init_kernel<T><<<pf_cuda_blocks(n), PF_CUDA_THREADS, 0, stream>>>(
        n, seed, bound, (T *)o);
  });
  return cudaGetLastError();
}
