/* The built-in kernels on a CUDA stream: attributes and specs are read on
 * the host as the CPU kernels read them, then the CUDA C kernels
 * (cuda/launch.h) or cuBLAS are queued (see cuda/kernels.h). */
#include "cuda/kernels.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include <cublas_v2.h>

#include "base/util.h"
#include "cuda/error.h"
#include "cuda/launch.h"
#include "pathflow/attrs.h"

/* A queued launch's status as a PF_E code naming the kernel. */
static int launched(const pf_kernel_call *call, const char *kernel,
                    cudaError_t err) {
  char what[96];
  if (err == cudaSuccess) return 0;
  snprintf(what, sizeof what, "%s (CUDA)", kernel);
  return pf_cuda_error(call->diag, err, what);
}

static int64_t numel(const pf_view *v) { return pf_spec_numel(&v->spec); }

/* An axis attribute normalized to [0, rank), as the shape function
 * accepted it. */
static int axis_attr(const pf_kernel_call *call, int64_t dflt,
                     const pf_spec *s) {
  int64_t axis = pf_attrs_get_int(call->attrs, "axis", dflt);
  return (int)(axis < 0 ? axis + s->rank : axis);
}

/* `s` viewed as [outer, len, inner] around `axis`. */
static void split_axis(const pf_spec *s, int axis, int64_t *outer,
                       int64_t *len, int64_t *inner) {
  *outer = *inner = 1;
  for (int i = 0; i < axis; i++) *outer *= s->dims[i];
  *len = s->dims[axis];
  for (int i = axis + 1; i < s->rank; i++) *inner *= s->dims[i];
}

/* ---- fill, iota, identity, init_uniform ---------------------------------- */

static int cu_fill(const pf_kernel_call *call, pf_cuda_stream *s) {
  return launched(call, "fill",
                  pf_cuda_launch_ramp(s->stream, call->out[0].spec.dtype,
                                      numel(&call->out[0]),
                                      pf_attrs_get_float(call->attrs, "value", 0),
                                      0, call->out[0].data));
}

static int cu_iota(const pf_kernel_call *call, pf_cuda_stream *s) {
  return launched(call, "iota",
                  pf_cuda_launch_ramp(s->stream, call->out[0].spec.dtype,
                                      numel(&call->out[0]),
                                      pf_attrs_get_float(call->attrs, "start", 0),
                                      pf_attrs_get_float(call->attrs, "step", 1),
                                      call->out[0].data));
}

static int cu_identity(const pf_kernel_call *call, pf_cuda_stream *s) {
  size_t n = pf_spec_nbytes(&call->in[0].spec);
  if (n == 0) return 0;
  return launched(call, "identity",
                  cudaMemcpyAsync(call->out[0].data, call->in[0].data, n,
                                  cudaMemcpyDeviceToDevice, s->stream));
}

/* ---- pack, unpack, unpack_grad (gradient buckets) ------------------------ */

/* Queued copies and zero fills on the stream, as kernels/builtin_pack.c does
 * with memcpy and memset (all-zero bytes are zero in every dtype). */
static int cu_pack(const pf_kernel_call *call, pf_cuda_stream *s) {
  char *at = call->out[0].data;
  for (int i = 0; i < call->n_in; i++) {
    size_t n = pf_spec_nbytes(&call->in[i].spec);
    cudaError_t err =
        n ? cudaMemcpyAsync(at, call->in[i].data, n, cudaMemcpyDeviceToDevice, s->stream)
          : cudaSuccess;
    if (err != cudaSuccess) return launched(call, "pack", err);
    at += n;
  }
  return 0;
}

static int cu_unpack(const pf_kernel_call *call, pf_cuda_stream *s) {
  size_t n = pf_spec_nbytes(&call->out[0].spec);
  size_t at = (size_t)pf_attrs_get_int(call->attrs, "offset", 0) *
              pf_dtype_size(call->in[0].spec.dtype);
  if (n == 0) return 0;
  return launched(call, "unpack",
                  cudaMemcpyAsync(call->out[0].data, (const char *)call->in[0].data + at, n,
                                  cudaMemcpyDeviceToDevice, s->stream));
}

static int cu_unpack_grad(const pf_kernel_call *call, pf_cuda_stream *s) {
  size_t at = (size_t)pf_attrs_get_int(call->attrs, "offset", 0) *
              pf_dtype_size(call->in[0].spec.dtype);
  size_t n = pf_spec_nbytes(&call->in[0].spec), total = pf_spec_nbytes(&call->out[0].spec);
  char *out = call->out[0].data;
  cudaError_t err = cudaSuccess;
  if (at > 0) err = cudaMemsetAsync(out, 0, at, s->stream);
  if (err == cudaSuccess && n > 0)
    err = cudaMemcpyAsync(out + at, call->in[0].data, n, cudaMemcpyDeviceToDevice, s->stream);
  if (err == cudaSuccess && total > at + n)
    err = cudaMemsetAsync(out + at + n, 0, total - at - n, s->stream);
  return launched(call, "unpack_grad", err);
}

/* Part `index` of the rows: one contiguous run of bytes, as
 * kernels/builtin_microbatch.c copies it. */
static int cu_microbatch(const pf_kernel_call *call, pf_cuda_stream *s) {
  size_t n = pf_spec_nbytes(&call->out[0].spec);
  int64_t index = pf_attrs_get_int(call->attrs, "index", 0);
  if (n == 0) return 0;
  return launched(call, "microbatch",
                  cudaMemcpyAsync(call->out[0].data, (const char *)call->in[0].data + (size_t)index * n,
                                  n, cudaMemcpyDeviceToDevice, s->stream));
}

/* The bound as kernels/builtin_init.c computes it (its shape function
 * refused every other mode). */
static double init_bound(const pf_kernel_call *call) {
  const pf_spec *sp = &call->out[0].spec;
  const char *mode = pf_attrs_get_string(call->attrs, "mode", "uniform");
  if (strcmp(mode, "kaiming") == 0) return sqrt(6.0 / (double)sp->dims[0]);
  if (strcmp(mode, "xavier") == 0)
    return sqrt(6.0 / (double)(sp->dims[0] + sp->dims[1]));
  return pf_attrs_get_float(call->attrs, "bound", 1);
}

static int cu_init_uniform(const pf_kernel_call *call, pf_cuda_stream *s) {
  return launched(
      call, "init_uniform",
      pf_cuda_launch_init_uniform(
          s->stream, call->out[0].spec.dtype, numel(&call->out[0]),
          (uint64_t)pf_attrs_get_int(call->attrs, "seed", 0), init_bound(call),
          call->out[0].data));
}

/* ---- add, sub, mul ----------------------------------------------------- */

/* Size of `s` along output axis `axis` of an output of rank `rank`. */
static int64_t dim_at(const pf_spec *s, int rank, int axis) {
  int a = axis - (rank - s->rank);
  return a < 0 ? 1 : s->dims[a];
}

static int cu_binary(const pf_kernel_call *call, pf_cuda_stream *s, int op,
                     const char *kernel) {
  const pf_spec *os = &call->out[0].spec;
  const pf_spec *as = &call->in[0].spec, *bs = &call->in[1].spec;
  pf_cuda_bcast sh;
  memset(&sh, 0, sizeof sh);
  if (pf_spec_equal(as, bs) || os->rank == 0) {
    sh.rank = 1;
    sh.dims[0] = pf_spec_numel(os);
    sh.sa[0] = pf_spec_numel(as) == 1 ? 0 : 1;
    sh.sb[0] = pf_spec_numel(bs) == 1 ? 0 : 1;
  } else {
    int64_t ea = 1, eb = 1;
    sh.rank = os->rank;
    for (int i = os->rank - 1; i >= 0; i--) {
      int64_t da = dim_at(as, os->rank, i), db = dim_at(bs, os->rank, i);
      sh.dims[i] = os->dims[i];
      sh.sa[i] = da == 1 ? 0 : ea;
      sh.sb[i] = db == 1 ? 0 : eb;
      ea *= da;
      eb *= db;
    }
  }
  return launched(call, kernel,
                  pf_cuda_launch_binary(s->stream, os->dtype, op,
                                        pf_spec_numel(os), &sh,
                                        call->in[0].data, call->in[1].data,
                                        call->out[0].data));
}

static int cu_add(const pf_kernel_call *call, pf_cuda_stream *s) {
  return cu_binary(call, s, PF_CUDA_ADD, "add");
}
static int cu_sub(const pf_kernel_call *call, pf_cuda_stream *s) {
  return cu_binary(call, s, PF_CUDA_SUB, "sub");
}
static int cu_mul(const pf_kernel_call *call, pf_cuda_stream *s) {
  return cu_binary(call, s, PF_CUDA_MUL, "mul");
}

/* ---- scale, relu, relu_grad, sgd, bias_add ----------------------------- */

static int cu_unary(const pf_kernel_call *call, pf_cuda_stream *s, int op,
                    double alpha, const char *kernel) {
  return launched(call, kernel,
                  pf_cuda_launch_unary(s->stream, call->in[0].spec.dtype, op,
                                       numel(&call->out[0]), alpha,
                                       call->in[0].data,
                                       call->n_in > 1 ? call->in[1].data : NULL,
                                       call->out[0].data));
}

static int cu_scale(const pf_kernel_call *call, pf_cuda_stream *s) {
  return cu_unary(call, s, PF_CUDA_SCALE,
                  pf_attrs_get_float(call->attrs, "alpha", 1), "scale");
}
static int cu_relu(const pf_kernel_call *call, pf_cuda_stream *s) {
  return cu_unary(call, s, PF_CUDA_RELU, 0, "relu");
}
static int cu_relu_grad(const pf_kernel_call *call, pf_cuda_stream *s) {
  return cu_unary(call, s, PF_CUDA_RELU_GRAD, 0, "relu_grad");
}
static int cu_sgd(const pf_kernel_call *call, pf_cuda_stream *s) {
  return cu_unary(call, s, PF_CUDA_SGD,
                  pf_attrs_get_float(call->attrs, "lr", 0.01), "sgd");
}

static int cu_bias_add(const pf_kernel_call *call, pf_cuda_stream *s) {
  const pf_spec *x = &call->in[0].spec;
  int64_t rows, m, one;
  split_axis(x, x->rank - 1, &rows, &m, &one);
  return launched(call, "bias_add",
                  pf_cuda_launch_bias_add(s->stream, x->dtype, rows, m,
                                          call->in[0].data, call->in[1].data,
                                          call->out[0].data));
}

/* ---- matmul ------------------------------------------------------------ */

/* Row-major out[M,N] = op(a) op(b) is column-major out^T = op(b)^T op(a)^T:
 * cuBLAS is called with the operands swapped, no copy or transpose. */
static int cu_matmul(const pf_kernel_call *call, pf_cuda_stream *s) {
  const pf_spec *a = &call->in[0].spec, *b = &call->in[1].spec;
  int ta = pf_attrs_get_int(call->attrs, "transpose_a", 0) != 0;
  int tb = pf_attrs_get_int(call->attrs, "transpose_b", 0) != 0;
  int m = (int)a->dims[ta ? 1 : 0], k = (int)a->dims[ta ? 0 : 1];
  int n = (int)b->dims[tb ? 0 : 1];
  int lda = (int)a->dims[1], ldb = (int)b->dims[1];
  cublasOperation_t opa = ta ? CUBLAS_OP_T : CUBLAS_OP_N;
  cublasOperation_t opb = tb ? CUBLAS_OP_T : CUBLAS_OP_N;
  cublasStatus_t st;
  if (m == 0 || n == 0) return 0;
  if (k == 0) /* an empty sum: zeros (cuBLAS wants leading dims >= 1) */
    return launched(call, "matmul",
                    cudaMemsetAsync(call->out[0].data, 0,
                                    pf_spec_nbytes(&call->out[0].spec),
                                    s->stream));
  if (a->dtype == PF_F32) {
    const float one = 1, zero = 0;
    st = cublasSgemm(s->blas, opb, opa, n, m, k, &one, call->in[1].data, ldb,
                     call->in[0].data, lda, &zero, call->out[0].data, n);
  } else {
    const double one = 1, zero = 0;
    st = cublasDgemm(s->blas, opb, opa, n, m, k, &one, call->in[1].data, ldb,
                     call->in[0].data, lda, &zero, call->out[0].data, n);
  }
  return pf_cublas_error(call->diag, st, "matmul (cuBLAS gemm)");
}

/* ---- reduce_sum, reduce_sum_grad, argmax ------------------------------- */

static int cu_reduce_sum(const pf_kernel_call *call, pf_cuda_stream *s) {
  const pf_spec *x = &call->in[0].spec;
  int64_t outer, len, inner;
  split_axis(x, axis_attr(call, 0, x), &outer, &len, &inner);
  return launched(call, "reduce_sum",
                  pf_cuda_launch_reduce_sum(s->stream, x->dtype, outer, len,
                                            inner, call->in[0].data,
                                            call->out[0].data));
}

static int cu_reduce_sum_grad(const pf_kernel_call *call, pf_cuda_stream *s) {
  const pf_spec *o = &call->out[0].spec;
  int64_t outer, len, inner;
  split_axis(o, axis_attr(call, 0, o), &outer, &len, &inner);
  return launched(call, "reduce_sum_grad",
                  pf_cuda_launch_repeat(s->stream, o->dtype, outer, len, inner,
                                        call->in[0].data, call->out[0].data));
}

static int cu_argmax(const pf_kernel_call *call, pf_cuda_stream *s) {
  const pf_spec *x = &call->in[0].spec;
  int64_t outer, len, inner;
  split_axis(x, axis_attr(call, -1, x), &outer, &len, &inner);
  return launched(call, "argmax",
                  pf_cuda_launch_argmax(s->stream, x->dtype, outer, len, inner,
                                        call->in[0].data, call->out[0].data));
}

/* ---- softmax_xent, accuracy -------------------------------------------- */

static int cu_softmax_xent(const pf_kernel_call *call, pf_cuda_stream *s) {
  const pf_spec *x = &call->in[0].spec;
  int64_t n = x->dims[0], c = x->dims[1];
  int64_t over = pf_attrs_get_int(call->attrs, "mean_over", 0);
  double inv_n = over > 0 ? 1.0 / (double)over : n > 0 ? 1.0 / (double)n : 0;
  void *rows = NULL;
  int rc = pf_cuda_stream_scratch(s, (size_t)(n > 0 ? n : 1) * sizeof(double),
                                  &rows, call->diag);
  if (rc != 0) return rc;
  return launched(call, "softmax_xent",
                  pf_cuda_launch_softmax_xent(
                      s->stream, x->dtype, n, c, inv_n, call->in[0].data,
                      call->in[1].spec.dtype, call->in[1].data,
                      call->out[0].data, call->out[1].data, rows, s->fault));
}

static int cu_accuracy(const pf_kernel_call *call, pf_cuda_stream *s) {
  const pf_spec *x = &call->in[0].spec;
  return launched(call, "accuracy",
                  pf_cuda_launch_accuracy(s->stream, x->dtype, x->dims[0],
                                          x->dims[1], call->in[0].data,
                                          call->in[1].spec.dtype,
                                          call->in[1].data, call->out[0].data));
}

/* ---- momentum, adam ---------------------------------------------------- */

static int cu_momentum(const pf_kernel_call *call, pf_cuda_stream *s) {
  return launched(call, "momentum",
                  pf_cuda_launch_momentum(
                      s->stream, call->in[0].spec.dtype, numel(&call->in[0]),
                      pf_attrs_get_float(call->attrs, "lr", 0.01),
                      pf_attrs_get_float(call->attrs, "beta", 0.9),
                      call->in[0].data, call->in[1].data, call->in[2].data,
                      call->out[0].data, call->out[1].data));
}

static int cu_adam(const pf_kernel_call *call, pf_cuda_stream *s) {
  return launched(call, "adam",
                  pf_cuda_launch_adam(
                      s->stream, call->in[0].spec.dtype, numel(&call->in[0]),
                      pf_attrs_get_float(call->attrs, "lr", 0.001),
                      call->n_in == 6 ? call->in[5].data : NULL,
                      pf_attrs_get_float(call->attrs, "beta1", 0.9),
                      pf_attrs_get_float(call->attrs, "beta2", 0.999),
                      pf_attrs_get_float(call->attrs, "eps", 1e-8),
                      call->in[4].data, call->out[3].data, call->in[0].data,
                      call->in[1].data, call->in[2].data, call->in[3].data,
                      call->out[0].data, call->out[1].data,
                      call->out[2].data));
}

/* ---- batch_rows -------------------------------------------------------- */

static int cu_batch_rows(const pf_kernel_call *call, pf_cuda_stream *s) {
  const pf_spec *ds = &call->in[0].spec, *os = &call->out[0].spec;
  int64_t n = ds->dims[0], b = os->dims[0], k = call->num_shards;
  int64_t row = pf_spec_numel(ds) / (n ? n : 1);
  int split = pf_attrs_get_int(call->attrs, "split_rows", 0) != 0;
  int64_t global = split ? b * k : b;
  size_t need = pf_cuda_order_bytes(n);
  int rc;
  if (global > n)
    return pf_diag_error(call->diag, PF_ESHAPE,
                         "batch_rows: a global batch of %lld rows from %lld",
                         (long long)global, (long long)n);
  /* The epoch's order stays on the device from step to step. */
  if (need > s->order_size) {
    void *mem = NULL;
    if ((rc = pf_cuda_error(call->diag, cudaStreamSynchronize(s->stream),
                            "batch_rows (CUDA): cudaStreamSynchronize")) ||
        (rc = pf_cuda_error(call->diag, cudaMalloc(&mem, need),
                            "batch_rows (CUDA): cudaMalloc")))
      return rc;
    (void)cudaFree(s->order);
    s->order = mem;
    s->order_size = need;
    if ((rc = launched(call, "batch_rows",
                       pf_cuda_order_reset(s->stream, s->order))) != 0)
      return rc;
  }
  return launched(
      call, "batch_rows",
      pf_cuda_launch_batch_rows(
          s->stream, os->dtype, n, row, b, global, split ? call->shard * b : 0,
          (uint64_t)pf_attrs_get_int(call->attrs, "seed", 0),
          pf_attrs_get_float(call->attrs, "scale", 1), call->in[0].data,
          call->in[1].data, s->order, call->out[0].data, s->fault));
}

/* ---- the table --------------------------------------------------------- */

static const pf_cuda_kernel table[] = {
    {"fill", cu_fill},
    {"iota", cu_iota},
    {"identity", cu_identity},
    {"pack", cu_pack},
    {"unpack", cu_unpack},
    {"unpack_grad", cu_unpack_grad},
    {"microbatch", cu_microbatch},
    {"init_uniform", cu_init_uniform},
    {"add", cu_add},
    {"sub", cu_sub},
    {"mul", cu_mul},
    {"scale", cu_scale},
    {"relu", cu_relu},
    {"relu_grad", cu_relu_grad},
    {"sgd", cu_sgd},
    {"bias_add", cu_bias_add},
    {"matmul", cu_matmul},
    {"reduce_sum", cu_reduce_sum},
    {"reduce_sum_grad", cu_reduce_sum_grad},
    {"argmax", cu_argmax},
    {"softmax_xent", cu_softmax_xent},
    {"accuracy", cu_accuracy},
    {"momentum", cu_momentum},
    {"adam", cu_adam},
    {"batch_rows", cu_batch_rows},
};

const pf_cuda_kernel *pf_cuda_kernels(size_t *n) {
  *n = PF_ARRAY_LEN(table);
  return table;
}

const pf_cuda_kernel *pf_cuda_kernel_find(const char *name) {
  for (size_t i = 0; i < PF_ARRAY_LEN(table); i++)
    if (strcmp(table[i].name, name) == 0) return &table[i];
  return NULL;
}
