// Elementwise CUDA kernels: add/sub/mul with broadcasting, scale, relu,
// relu_grad, sgd, bias_add, momentum, adam. The build turns off the
// contraction of a*b+c into one fused multiply-add (--fmad=false): these
// kernels are bound by memory, not arithmetic, and without contraction they
// round exactly as the CPU kernels do, so a graph gives the same numbers on
// either device.
#include "cuda/grid.cuh"

namespace {

// Integer ops wrap through the unsigned type U, as on the CPU.
template <typename T, typename U>
__global__ void binary_kernel(int op, int64_t n, pf_cuda_bcast sh,
                              const T *a, const T *b, T *o) {
  PF_CUDA_FOR(i, n) {
    int64_t oa = i * sh.sa[0], ob = i * sh.sb[0], rest = i;
    // One axis (the same shapes, or a scalar): no index arithmetic.
    if (sh.rank > 1) oa = ob = 0;
    for (int d = sh.rank - 1; sh.rank > 1 && d >= 0; d--) {
      int64_t at = rest % sh.dims[d];
      rest /= sh.dims[d];
      oa += at * sh.sa[d];
      ob += at * sh.sb[d];
    }
    U x = (U)a[oa], y = (U)b[ob];
    o[i] = (T)(op == PF_CUDA_ADD ? x + y : op == PF_CUDA_SUB ? x - y : x * y);
  }
}

template <typename T, typename U>
cudaError_t binary(cudaStream_t s, int op, int64_t n, const pf_cuda_bcast *sh,
                   const void *a, const void *b, void *o) {
  binary_kernel<T, U><<<pf_cuda_blocks(n), PF_CUDA_THREADS, 0, s>>>(
      op, n, *sh, (const T *)a, (const T *)b, (T *)o);
  return cudaGetLastError();
}

template <typename T>
__global__ void unary_kernel(int op, int64_t n, T alpha, const T *x,
                             const T *y, T *o) {
  PF_CUDA_FOR(i, n) {
    switch (op) {
      case PF_CUDA_SCALE: o[i] = alpha * x[i]; break;
      case PF_CUDA_RELU: o[i] = x[i] > 0 ? x[i] : 0; break;
      case PF_CUDA_RELU_GRAD: o[i] = y[i] > 0 ? x[i] : 0; break;
      default: o[i] = x[i] - alpha * y[i]; break;
    }
  }
}

template <typename T>
__global__ void bias_add_kernel(int64_t n, int64_t m, const T *x, const T *b,
                                T *o) {
  PF_CUDA_FOR(i, n) { o[i] = x[i] + b[i % m]; }
}

template <typename T>
__global__ void momentum_kernel(int64_t n, T lr, T beta, const T *p,
                                const T *g, const T *v, T *po, T *vo) {
  PF_CUDA_FOR(i, n) {
    T nv = beta * v[i] + g[i];
    vo[i] = nv;
    po[i] = p[i] - lr * nv;
  }
}

// The bias corrections depend on the step count, which lives on the device:
// every thread derives the two constants from it, in double, as the CPU
// does once per call.
template <typename T>
__global__ void adam_kernel(int64_t n, double lr, const double *lr_dev,
                            double b1, double b2, double eps, const int64_t *t,
                            const T *p, const T *g, const T *m, const T *v,
                            T *po, T *mo, T *vo) {
  double tt = (double)(*t + 1), rate = lr_dev ? *lr_dev : lr;
  double c1 = 1 - pow(b1, tt), c2 = 1 - pow(b2, tt);
  const T tb1 = (T)b1, tb2 = (T)b2, ob1 = (T)(1 - b1), ob2 = (T)(1 - b2);
  const T step = (T)(rate / c1), r = (T)(1 / sqrt(c2)), teps = (T)eps;
  PF_CUDA_FOR(i, n) {
    T nm = tb1 * m[i] + ob1 * g[i];
    T nv = tb2 * v[i] + ob2 * g[i] * g[i];
    mo[i] = nm;
    vo[i] = nv;
    po[i] = p[i] - step * nm / (sqrt(nv) * r + teps);
  }
}

// After the update, so that t_out may share t's memory.
__global__ void adam_count_kernel(const int64_t *t, int64_t *t_out) {
  *t_out = *t + 1;
}

}  // namespace

extern "C" cudaError_t pf_cuda_launch_binary(cudaStream_t stream, pf_dtype dt,
                                             int op, int64_t n,
                                             const pf_cuda_bcast *shape,
                                             const void *a, const void *b,
                                             void *o) {
  if (n == 0) return cudaSuccess;
  switch (dt) {
    case PF_F32: return binary<float, float>(stream, op, n, shape, a, b, o);
    case PF_F64: return binary<double, double>(stream, op, n, shape, a, b, o);
    case PF_I32: return binary<int32_t, uint32_t>(stream, op, n, shape, a, b, o);
    case PF_I64: return binary<int64_t, uint64_t>(stream, op, n, shape, a, b, o);
    default: return cudaErrorInvalidValue;
  }
}

extern "C" cudaError_t pf_cuda_launch_unary(cudaStream_t stream, pf_dtype dt,
                                            int op, int64_t n, double alpha,
                                            const void *x, const void *y,
                                            void *o) {
  if (n == 0) return cudaSuccess;
  PF_CUDA_FLOAT_SWITCH(dt, {
    unary_kernel<T><<<pf_cuda_blocks(n), PF_CUDA_THREADS, 0, stream>>>(
        op, n, (T)alpha, (const T *)x, (const T *)y, (T *)o);
  });
  return cudaGetLastError();
}

extern "C" cudaError_t pf_cuda_launch_bias_add(cudaStream_t stream,
                                               pf_dtype dt, int64_t rows,
                                               int64_t m, const void *x,
                                               const void *b, void *o) {
  int64_t n = rows * m;
  if (n == 0) return cudaSuccess;
  PF_CUDA_FLOAT_SWITCH(dt, {
    bias_add_kernel<T><<<pf_cuda_blocks(n), PF_CUDA_THREADS, 0, stream>>>(
        n, m, (const T *)x, (const T *)b, (T *)o);
  });
  return cudaGetLastError();
}

extern "C" cudaError_t pf_cuda_launch_momentum(cudaStream_t stream,
                                               pf_dtype dt, int64_t n,
                                               double lr, double beta,
                                               const void *p, const void *g,
                                               const void *v, void *po,
                                               void *vo) {
  if (n == 0) return cudaSuccess;
  PF_CUDA_FLOAT_SWITCH(dt, {
    momentum_kernel<T><<<pf_cuda_blocks(n), PF_CUDA_THREADS, 0, stream>>>(
        n, (T)lr, (T)beta, (const T *)p, (const T *)g, (const T *)v, (T *)po,
        (T *)vo);
  });
  return cudaGetLastError();
}

extern "C" cudaError_t pf_cuda_launch_adam(
    cudaStream_t stream, pf_dtype dt, int64_t n, double lr,
    const double *lr_dev, double b1, double b2, double eps, const int64_t *t,
    int64_t *t_out, const void *p, const void *g, const void *m,
    const void *v, void *po, void *mo, void *vo) {
  cudaError_t err;
  if (n > 0) {
    PF_CUDA_FLOAT_SWITCH(dt, {
      adam_kernel<T><<<pf_cuda_blocks(n), PF_CUDA_THREADS, 0, stream>>>(
          n, lr, lr_dev, b1, b2, eps, t, (const T *)p, (const T *)g,
          (const T *)m, (const T *)v, (T *)po, (T *)mo, (T *)vo);
    });
    if ((err = cudaGetLastError()) != cudaSuccess) return err;
  }
  adam_count_kernel<<<1, 1, 0, stream>>>(t, t_out);
  return cudaGetLastError();
}
