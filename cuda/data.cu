// batch_rows: a step's batch from a u8 data set on the device, in the
// order kernels/builtin_data.c draws for (seed, epoch). The step is on the
// device, so the epoch is too: one thread reads it, redraws the order when
// the epoch changed (a Fisher-Yates shuffle is sequential: about a
// millisecond per 10,000 rows, once per epoch), and leaves the first row of
// the batch for the gather that follows.
#include "base/mix64.h"
#include "cuda/grid.cuh"

namespace {

// What the order buffer holds, before the order itself.
struct order_head {
  unsigned long long seed;
  long long epoch, n; // n = -1: no order yet
  long long first;    // the batch's first position in the order; -1: none
};

__global__ void order_kernel(int64_t n, int64_t global, int64_t offset,
                             uint64_t seed, const int64_t *step_dev,
                             order_head *head, int64_t *order,
                             pf_cuda_fault *fault) {
  int64_t step = *step_dev, per_epoch = n / global, epoch;
  if (step < 0) {
    atomicMin(&fault->at, 0ull);
    if (atomicCAS(&fault->code, PF_CUDA_FAULT_NONE, PF_CUDA_FAULT_STEP) ==
        PF_CUDA_FAULT_NONE)
      fault->value = step;
    head->first = -1;
    return;
  }
  epoch = step / per_epoch;
  if (head->n != n || head->epoch != epoch || head->seed != seed) {
    uint64_t key = pf_mix64(
        seed ^ pf_mix64((uint64_t)epoch + 0x9e3779b97f4a7c15ull));
    for (int64_t i = 0; i < n; i++) order[i] = i;
    for (int64_t i = n - 1; i > 0; i--) {
      int64_t j = (int64_t)(pf_mix64(key + (uint64_t)i) % (uint64_t)(i + 1));
      int64_t t = order[i];
      order[i] = order[j];
      order[j] = t;
    }
    head->seed = seed;
    head->epoch = epoch;
    head->n = n;
  }
  head->first = (step % per_epoch) * global + offset;
}

template <typename T>
__global__ void gather_kernel(int64_t b, int64_t row, T scale,
                              const uint8_t *src, const order_head *head,
                              const int64_t *order, T *o) {
  int64_t first = head->first;
  if (first < 0) return;
  PF_CUDA_FOR(idx, b * row) {
    int64_t r = idx / row, j = idx % row;
    // Integers get scale 1: the product is then exact.
    o[idx] = (T)src[order[first + r] * row + j] * scale;
  }
}

template <typename T>
cudaError_t gather(cudaStream_t s, int64_t b, int64_t row, double scale,
                   const uint8_t *src, const order_head *head,
                   const int64_t *order, void *o) {
  gather_kernel<T><<<pf_cuda_blocks(b * row), PF_CUDA_THREADS, 0, s>>>(
      b, row, (T)scale, src, head, order, (T *)o);
  return cudaGetLastError();
}

}  // namespace

extern "C" size_t pf_cuda_order_bytes(int64_t n) {
  return sizeof(order_head) + (size_t)(n > 0 ? n : 1) * sizeof(int64_t);
}

extern "C" cudaError_t pf_cuda_order_reset(cudaStream_t stream, void *order) {
  // All bits set: n = -1, first = -1.
  return cudaMemsetAsync(order, 0xff, sizeof(order_head), stream);
}

extern "C" cudaError_t pf_cuda_launch_batch_rows(
    cudaStream_t stream, pf_dtype out_dt, int64_t n, int64_t row, int64_t b,
    int64_t global, int64_t offset, uint64_t seed, double scale,
    const uint8_t *src, const int64_t *step, void *order, void *o,
    pf_cuda_fault *fault) {
  order_head *head = (order_head *)order;
  int64_t *rows = (int64_t *)(head + 1);
  cudaError_t err;
  order_kernel<<<1, 1, 0, stream>>>(n, global, offset, seed, step, head, rows,
                                    fault);
  if ((err = cudaGetLastError()) != cudaSuccess || b * row == 0) return err;
  switch (out_dt) {
    case PF_F32: return gather<float>(stream, b, row, scale, src, head, rows, o);
    case PF_F64: return gather<double>(stream, b, row, scale, src, head, rows, o);
    case PF_I32: return gather<int32_t>(stream, b, row, 1, src, head, rows, o);
    case PF_I64: return gather<int64_t>(stream, b, row, 1, src, head, rows, o);
    default: return cudaErrorInvalidValue;
  }
}

extern "C" cudaError_t pf_cuda_fault_reset(cudaStream_t stream,
                                           pf_cuda_fault *fault) {
  pf_cuda_fault clear = {PF_CUDA_FAULT_NONE, 0, ~0ull, 0, 0};
  // From the stack: a pageable copy is staged by the driver before this
  // returns, so `clear` may go out of scope.
  return cudaMemcpyAsync(fault, &clear, sizeof clear, cudaMemcpyHostToDevice,
                         stream);
}
