/* Internal: the CUDA C kernels (the .cu files of cuda/) as plain C launchers.
 *
 * cuda/kernels.c reads attributes and specs on the host, then calls these
 * with element counts, scalars and device pointers. Each queues its work on
 * `stream`, never waits, and returns the launch's status (cudaSuccess when
 * queued). `dt` is a pf_dtype the CPU kernel's shape function accepted.
 * Semantics are those of the CPU kernels of the same names (kernels/builtin_ files).
 */
#ifndef PF_CUDA_LAUNCH_H
#define PF_CUDA_LAUNCH_H

#include <stdint.h>

#include <cuda_runtime_api.h>

#include "cuda/fault.h"
#include "pathflow/types.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Binary ops with numpy broadcasting: element i of the output, of shape
 * dims[0..rank), reads a and b at the offsets their strides give (0 along
 * an axis they repeat). Integer ops wrap, as on the CPU. */
enum { PF_CUDA_ADD, PF_CUDA_SUB, PF_CUDA_MUL };
typedef struct pf_cuda_bcast {
  int rank;
  int64_t dims[PF_MAX_RANK];
  int64_t sa[PF_MAX_RANK], sb[PF_MAX_RANK];
} pf_cuda_bcast;
cudaError_t pf_cuda_launch_binary(cudaStream_t stream, pf_dtype dt, int op,
                                  int64_t n, const pf_cuda_bcast *shape,
                                  const void *a, const void *b, void *o);

/* One-spec float ops: scale o = alpha x; relu o = max(x, 0); relu_grad
 * o = y > 0 ? x : 0 (x the gradient, y the input); sgd o = x - alpha y. */
enum { PF_CUDA_SCALE, PF_CUDA_RELU, PF_CUDA_RELU_GRAD, PF_CUDA_SGD };
cudaError_t pf_cuda_launch_unary(cudaStream_t stream, pf_dtype dt, int op,
                                 int64_t n, double alpha, const void *x,
                                 const void *y, void *o);

/* o[r, j] = x[r, j] + b[j] over rows x m. */
cudaError_t pf_cuda_launch_bias_add(cudaStream_t stream, pf_dtype dt,
                                    int64_t rows, int64_t m, const void *x,
                                    const void *b, void *o);

/* v' = beta v + g; p' = p - lr v'. */
cudaError_t pf_cuda_launch_momentum(cudaStream_t stream, pf_dtype dt,
                                    int64_t n, double lr, double beta,
                                    const void *p, const void *g,
                                    const void *v, void *po, void *vo);

/* Adam as kernels/builtin_optim.c computes it. The step count t (an i64
 * on the device) is read there, t_out = t + 1 written after the update;
 * lr_dev (an f64 on the device) overrides lr when not NULL. */
cudaError_t pf_cuda_launch_adam(cudaStream_t stream, pf_dtype dt, int64_t n,
                                double lr, const double *lr_dev, double b1,
                                double b2, double eps, const int64_t *t,
                                int64_t *t_out, const void *p, const void *g,
                                const void *m, const void *v, void *po,
                                void *mo, void *vo);

/* o[i] = (dt)(start + i * step): fill (step 0) and iota. */
cudaError_t pf_cuda_launch_ramp(cudaStream_t stream, pf_dtype dt, int64_t n,
                                double start, double step, void *o);

/* init_uniform: o[i] = (2 u(seed, i) - 1) bound, bit for bit the CPU's. */
cudaError_t pf_cuda_launch_init_uniform(cudaStream_t stream, pf_dtype dt,
                                        int64_t n, uint64_t seed, double bound,
                                        void *o);

/* x viewed as [outer, len, inner]: reduce_sum over len into o [outer,
 * inner], in the order the CPU sums; repeat (reduce_sum_grad) g [outer,
 * inner] along len into o; argmax over len into o (i64), ties to the first,
 * NaN wins. */
cudaError_t pf_cuda_launch_reduce_sum(cudaStream_t stream, pf_dtype dt,
                                      int64_t outer, int64_t len,
                                      int64_t inner, const void *x, void *o);
cudaError_t pf_cuda_launch_repeat(cudaStream_t stream, pf_dtype dt,
                                  int64_t outer, int64_t len, int64_t inner,
                                  const void *g, void *o);
cudaError_t pf_cuda_launch_argmax(cudaStream_t stream, pf_dtype dt,
                                  int64_t outer, int64_t len, int64_t inner,
                                  const void *x, int64_t *o);

/* softmax_xent of logits x [n, c] (dt) against labels (label_dt, i32 or
 * i64): grad [n, c], loss a scalar, both scaled by inv_n. row_loss is
 * device scratch of n doubles. A label outside [0, c) is recorded in
 * `fault` (PF_CUDA_FAULT_LABEL, the first such row). */
cudaError_t pf_cuda_launch_softmax_xent(cudaStream_t stream, pf_dtype dt,
                                        int64_t n, int64_t c, double inv_n,
                                        const void *x, pf_dtype label_dt,
                                        const void *labels, void *loss,
                                        void *grad, double *row_loss,
                                        pf_cuda_fault *fault);

/* accuracy: rows whose first largest logit is at the label, into *hits. */
cudaError_t pf_cuda_launch_accuracy(cudaStream_t stream, pf_dtype dt,
                                    int64_t n, int64_t c, const void *x,
                                    pf_dtype label_dt, const void *labels,
                                    int64_t *hits);

/* batch_rows: b rows of `row` u8 each from src [n, row], picked in the
 * (seed, epoch) order by the step on the device, starting at the block
 * `offset` rows into the step's global batch of `global` rows, converted
 * to out_dt (floats times scale). `order` is device memory of
 * pf_cuda_order_bytes(n) bytes that keeps the epoch's order from call to
 * call; pf_cuda_order_reset marks it empty (call it once, after
 * allocating). A negative step is recorded in `fault`. */
size_t pf_cuda_order_bytes(int64_t n);
cudaError_t pf_cuda_order_reset(cudaStream_t stream, void *order);
cudaError_t pf_cuda_launch_batch_rows(cudaStream_t stream, pf_dtype out_dt,
                                      int64_t n, int64_t row, int64_t b,
                                      int64_t global, int64_t offset,
                                      uint64_t seed, double scale,
                                      const uint8_t *src, const int64_t *step,
                                      void *order, void *o,
                                      pf_cuda_fault *fault);

/* Clears a fault word (code 0, at ~0). */
cudaError_t pf_cuda_fault_reset(cudaStream_t stream, pf_cuda_fault *fault);

#ifdef __cplusplus
}
#endif
#endif
