// softmax_xent and accuracy over logits [n, c] and integer labels [n]. One
// thread a row (c, the class count, is small for the models pathflow
// trains); the loss is the sum of the rows' losses, added by one block.
#include "cuda/grid.cuh"

namespace {

__device__ int64_t label_at(pf_dtype dt, const void *labels, int64_t r) {
  return dt == PF_I32 ? (int64_t)((const int32_t *)labels)[r]
                      : ((const int64_t *)labels)[r];
}

// Shifted by the row's max so exp never overflows; in double whatever T
// is, as kernels/builtin_loss.c computes it.
template <typename T>
__global__ void xent_rows(int64_t n, int64_t c, double inv_n, const T *x,
                          pf_dtype label_dt, const void *labels, T *grad,
                          double *row_loss, pf_cuda_fault *fault) {
  PF_CUDA_FOR(r, n) {
    const T *row = x + r * c;
    T *g = grad + r * c;
    int64_t label = label_at(label_dt, labels, r);
    double max, sum = 0;
    // Checked before the row is read: with no classes there is no row[0].
    if (label < 0 || label >= c) {
      atomicMin(&fault->at, (unsigned long long)r);
      atomicCAS(&fault->code, PF_CUDA_FAULT_NONE, PF_CUDA_FAULT_LABEL);
      row_loss[r] = 0;
      continue;
    }
    max = row[0];
    for (int64_t j = 1; j < c; j++)
      if (row[j] > max) max = row[j];
    for (int64_t j = 0; j < c; j++) {
      double e = exp((double)row[j] - max);
      g[j] = (T)e;
      sum += e;
    }
    row_loss[r] = log(sum) + max - (double)row[label];
    for (int64_t j = 0; j < c; j++)
      g[j] = (T)(((double)g[j] / sum - (j == label)) * inv_n);
  }
}

// The first bad row's label, for the host's message.
__global__ void xent_fault(int64_t n, int64_t c, pf_dtype label_dt,
                           const void *labels, pf_cuda_fault *fault) {
  if (fault->code == PF_CUDA_FAULT_LABEL && fault->at < (unsigned long long)n) {
    fault->value = label_at(label_dt, labels, (int64_t)fault->at);
    fault->limit = c;
  }
}

template <typename T>
__global__ void xent_total(int64_t n, double inv_n, const double *row_loss,
                           T *loss) {
  __shared__ double part[PF_CUDA_THREADS];
  double s = 0;
  for (int64_t r = threadIdx.x; r < n; r += blockDim.x) s += row_loss[r];
  part[threadIdx.x] = s;
  __syncthreads();
  for (int w = blockDim.x / 2; w > 0; w /= 2) {
    if ((int)threadIdx.x < w) part[threadIdx.x] += part[threadIdx.x + w];
    __syncthreads();
  }
  if (threadIdx.x == 0) *loss = (T)(part[0] * inv_n);
}

template <typename T>
__global__ void accuracy_kernel(int64_t n, int64_t c, const T *x,
                                pf_dtype label_dt, const void *labels,
                                unsigned long long *hits) {
  PF_CUDA_FOR(r, n) {
    int64_t best = 0;
    for (int64_t j = 1; j < c; j++)
      if (x[r * c + j] > x[r * c + best]) best = j;
    if (c > 0 && best == label_at(label_dt, labels, r)) atomicAdd(hits, 1ull);
  }
}

}  // namespace

extern "C" cudaError_t pf_cuda_launch_softmax_xent(
    cudaStream_t stream, pf_dtype dt, int64_t n, int64_t c, double inv_n,
    const void *x, pf_dtype label_dt, const void *labels, void *loss,
    void *grad, double *row_loss, pf_cuda_fault *fault) {
  cudaError_t err;
  // With no classes every label is out of range: the rows kernel says so.
  if (n > 0) {
    PF_CUDA_FLOAT_SWITCH(dt, {
      xent_rows<T><<<pf_cuda_blocks(n), PF_CUDA_THREADS, 0, stream>>>(
          n, c, inv_n, (const T *)x, label_dt, labels, (T *)grad, row_loss,
          fault);
    });
    if ((err = cudaGetLastError()) != cudaSuccess) return err;
    xent_fault<<<1, 1, 0, stream>>>(n, c, label_dt, labels, fault);
    if ((err = cudaGetLastError()) != cudaSuccess) return err;
  }
  PF_CUDA_FLOAT_SWITCH(dt, {
    xent_total<T><<<1, PF_CUDA_THREADS, 0, stream>>>(n, inv_n, row_loss,
                                                     (T *)loss);
  });
  return cudaGetLastError();
}

extern "C" cudaError_t pf_cuda_launch_accuracy(cudaStream_t stream,
                                               pf_dtype dt, int64_t n,
                                               int64_t c, const void *x,
                                               pf_dtype label_dt,
                                               const void *labels,
                                               int64_t *hits) {
  cudaError_t err = cudaMemsetAsync(hits, 0, sizeof *hits, stream);
  if (err != cudaSuccess || n == 0) return err;
  PF_CUDA_FLOAT_SWITCH(dt, {
    accuracy_kernel<T><<<pf_cuda_blocks(n), PF_CUDA_THREADS, 0, stream>>>(
        n, c, (const T *)x, label_dt, labels, (unsigned long long *)hits);
  });
  return cudaGetLastError();
}
