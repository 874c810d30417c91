/* Optimizer steps beside sgd: momentum and Adam. Each takes a parameter, its
 * gradient and its optimizer state, all of one spec, and returns the new
 * parameter and state, so that the state lives on the devices beside the
 * parameter from step to step (fed back as buffers). */
#include <math.h>
#include <string.h>

#include "base/util.h"
#include "kernels/builtin_internal.h"
#include "kernels/sharding.h"
#include "pathflow/error.h"

/* momentum(param, grad, velocity) -> (param', velocity'), as PyTorch's SGD
 * with momentum: v' = beta v + g; p' = p - lr v'. */
static int momentum_shape(const pf_attrs *attrs, int n_in, const pf_spec *in,
                          int n_out, pf_spec *out, pf_diag *diag) {
  double lr, beta;
  int rc;
  (void)n_out;
  if ((rc = pf_builtin_want_all_same("momentum", n_in, in, PF_BUILTIN_FLOATS,
                                     diag)) ||
      (rc = pf_builtin_float_attr("momentum", attrs, "lr", 0.01, &lr, diag)) ||
      (rc = pf_builtin_float_attr("momentum", attrs, "beta", 0.9, &beta, diag)))
    return rc;
  out[0] = out[1] = in[0];
  return 0;
}

/* The element loops, one per precision: with `restrict` the compiler
 * vectorizes them (it checks at most ten pairs of pointers for overlap at
 * run time, fewer than adam's seven arrays need). A step that updates in
 * place (outputs donated the inputs' buffers, pf_graph_donate) runs the
 * in-place form; outputs that are neither all separate nor all in place
 * take copies of their inputs first and then run in place. */
#define MOMENTUM_LOOPS(T, S)                                                   \
  static void momentum_out_##S(int64_t n, const T *restrict p, const T *restrict g,        \
                               const T *restrict v, T *restrict po, T *restrict vo,     \
                               T lr, T beta) {                                          \
    for (int64_t i = 0; i < n; i++) {                                                   \
      T nv = beta * v[i] + g[i];                                                        \
      vo[i] = nv;                                                                       \
      po[i] = p[i] - lr * nv;                                                           \
    }                                                                                   \
  }                                                                                     \
  static void momentum_in_##S(int64_t n, T *restrict p, const T *restrict g,           \
                              T *restrict v, T lr, T beta) {                            \
    for (int64_t i = 0; i < n; i++) {                                                   \
      T nv = beta * v[i] + g[i];                                                        \
      v[i] = nv;                                                                        \
      p[i] -= lr * nv;                                                                  \
    }                                                                                   \
  }
MOMENTUM_LOOPS(float, f32)
MOMENTUM_LOOPS(double, f64)

/* 1 if each output k is input k's buffer (pairs[2k], pairs[2k+1]); 0 if
 * no output overlaps an input. Otherwise copies each input into its output
 * where they differ (so that the in-place loop can run on the outputs) and
 * returns 1. */
static int in_place(const pf_kernel_call *call, int n_pairs, const int *in_of, size_t bytes) {
  int same = 0;
  for (int k = 0; k < n_pairs; k++) same += call->out[k].data == call->in[in_of[k]].data;
  if (same == 0) return 0;
  for (int k = 0; k < n_pairs; k++)
    if (call->out[k].data != call->in[in_of[k]].data)
      memcpy(call->out[k].data, call->in[in_of[k]].data, bytes);
  return 1;
}

static int momentum_compute(const pf_kernel_call *call) {
  static const int in_of[2] = {0, 2};
  double lr = pf_attrs_get_float(call->attrs, "lr", 0.01);
  double beta = pf_attrs_get_float(call->attrs, "beta", 0.9);
  int64_t n = pf_spec_numel(&call->in[0].spec);
  const void *p = call->in[0].data, *g = call->in[1].data, *v = call->in[2].data;
  void *po = call->out[0].data, *vo = call->out[1].data;
  int f32 = call->in[0].spec.dtype == PF_F32;
  if (in_place(call, 2, in_of, pf_spec_nbytes(&call->in[0].spec))) {
    if (f32) momentum_in_f32(n, po, g, vo, (float)lr, (float)beta);
    else momentum_in_f64(n, po, g, vo, lr, beta);
  } else if (f32) {
    momentum_out_f32(n, p, g, v, po, vo, (float)lr, (float)beta);
  } else {
    momentum_out_f64(n, p, g, v, po, vo, lr, beta);
  }
  return 0;
}

/* adam(param, grad, m, v, t [, lr]) -> (param', m', v', t'), t an i64
 * scalar counting the steps taken: m' = b1 m + (1-b1) g; v' = b2 v +
 * (1-b2) g^2; p' = p - lr m'/(1-b1^t') / (sqrt(v'/(1-b2^t')) + eps);
 * t' = t + 1. The optional sixth input, an f64 scalar, is the learning rate
 * of this step (a schedule fed from the host) instead of attribute lr. */
static int adam_shape(const pf_attrs *attrs, int n_in, const pf_spec *in,
                      int n_out, pf_spec *out, pf_diag *diag) {
  char s[PF_BUILTIN_SPEC_STR];
  double x;
  int rc;
  (void)n_out;
  if ((rc = pf_builtin_want_all_same("adam", 4, in, PF_BUILTIN_FLOATS, diag)) ||
      (rc = pf_builtin_float_attr("adam", attrs, "lr", 0.001, &x, diag)) ||
      (rc = pf_builtin_float_attr("adam", attrs, "beta1", 0.9, &x, diag)) ||
      (rc = pf_builtin_float_attr("adam", attrs, "beta2", 0.999, &x, diag)) ||
      (rc = pf_builtin_float_attr("adam", attrs, "eps", 1e-8, &x, diag)))
    return rc;
  if (n_in != 5 && n_in != 6)
    return pf_diag_error(diag, PF_EARITY, "adam: takes 5 inputs, or 6 with a learning rate");
  if (in[4].dtype != PF_I64 || in[4].rank != 0)
    return pf_diag_error(diag, PF_ESHAPE,
                         "adam: input 4 is %s; expected the step count, an i64 "
                         "scalar",
                         pf_spec_str(&in[4], s, sizeof s));
  if (n_in == 6 && (in[5].dtype != PF_F64 || in[5].rank != 0))
    return pf_diag_error(diag, PF_ESHAPE,
                         "adam: input 5 is %s; expected the learning rate, an f64 "
                         "scalar",
                         pf_spec_str(&in[5], s, sizeof s));
  out[0] = out[1] = out[2] = in[0];
  out[3] = in[4];
  return 0;
}

/* In the parameters' own precision, as PyTorch does, with the bias
 * corrections folded into two constants: p -= step * m / (sqrt(v) * r +
 * eps), step = lr / c1, r = 1 / sqrt(c2). In double with a division and a
 * square root of a quotient per element it took a quarter of a small MLP's
 * training step, and still nearly as long as the matmuls while its loop was
 * not vectorized (without `restrict`). */
#define ADAM_LOOPS(T, S)                                                                 \
  static void adam_out_##S(int64_t n, const T *restrict p, const T *restrict g,         \
                           const T *restrict m, const T *restrict v, T *restrict po,    \
                           T *restrict mo, T *restrict vo, const double *k) {          \
    const T b1 = (T)k[0], b2 = (T)k[1], ob1 = (T)(1 - k[0]), ob2 = (T)(1 - k[1]);      \
    const T step = (T)k[2], r = (T)k[3], eps = (T)k[4];                                \
    for (int64_t i = 0; i < n; i++) {                                                   \
      T nm = b1 * m[i] + ob1 * g[i];                                                    \
      T nv = b2 * v[i] + ob2 * g[i] * g[i];                                             \
      mo[i] = nm;                                                                       \
      vo[i] = nv;                                                                       \
      po[i] = p[i] - step * nm / (pf_builtin_sqrt(nv) * r + eps);                       \
    }                                                                                   \
  }                                                                                     \
  static void adam_in_##S(int64_t n, T *restrict p, const T *restrict g, T *restrict m, \
                          T *restrict v, const double *k) {                             \
    const T b1 = (T)k[0], b2 = (T)k[1], ob1 = (T)(1 - k[0]), ob2 = (T)(1 - k[1]);      \
    const T step = (T)k[2], r = (T)k[3], eps = (T)k[4];                                \
    for (int64_t i = 0; i < n; i++) {                                                   \
      T nm = b1 * m[i] + ob1 * g[i];                                                    \
      T nv = b2 * v[i] + ob2 * g[i] * g[i];                                             \
      m[i] = nm;                                                                        \
      v[i] = nv;                                                                        \
      p[i] -= step * nm / (pf_builtin_sqrt(nv) * r + eps);                              \
    }                                                                                   \
  }
ADAM_LOOPS(float, f32)
ADAM_LOOPS(double, f64)

static int adam_compute(const pf_kernel_call *call) {
  static const int in_of[3] = {0, 2, 3};
  double lr = call->n_in == 6 ? *(const double *)call->in[5].data
                              : pf_attrs_get_float(call->attrs, "lr", 0.001);
  double b1 = pf_attrs_get_float(call->attrs, "beta1", 0.9);
  double b2 = pf_attrs_get_float(call->attrs, "beta2", 0.999);
  double eps = pf_attrs_get_float(call->attrs, "eps", 1e-8);
  int64_t n = pf_spec_numel(&call->in[0].spec);
  int64_t t = *(const int64_t *)call->in[4].data + 1;
  double c1 = 1 - pow(b1, (double)t), c2 = 1 - pow(b2, (double)t);
  const double k[5] = {b1, b2, lr / c1, 1 / sqrt(c2), eps};
  const void *p = call->in[0].data, *g = call->in[1].data;
  const void *m = call->in[2].data, *v = call->in[3].data;
  void *po = call->out[0].data, *mo = call->out[1].data, *vo = call->out[2].data;
  int f32 = call->in[0].spec.dtype == PF_F32;
  /* t' is written after t is read: the two may share a buffer. */
  if (in_place(call, 3, in_of, pf_spec_nbytes(&call->in[0].spec))) {
    if (f32) adam_in_f32(n, po, g, mo, vo, k);
    else adam_in_f64(n, po, g, mo, vo, k);
  } else if (f32) {
    adam_out_f32(n, p, g, m, v, po, mo, vo, k);
  } else {
    adam_out_f64(n, p, g, m, v, po, mo, vo, k);
  }
  *(int64_t *)call->out[3].data = t;
  return 0;
}

/* Parameter and state laid out alike, the step count whole. */
static int adam_sharding(const pf_attrs *attrs, int n_in, const pf_spec *in,
                         const pf_sharding *in_sh, int num_devices, int n_out,
                         pf_sharding *out_sh, pf_diag *diag) {
  int rc;
  if (num_devices > 1 && (in_sh[4].kind != PF_SHARD_REPLICATED ||
                          (n_in == 6 && in_sh[5].kind != PF_SHARD_REPLICATED)))
    return pf_sharding_refuse(diag, "adam", n_in, in_sh,
                              "the step count and learning rate must be whole");
  if ((rc = pf_sharding_rule_elementwise(attrs, 4, in, in_sh, num_devices, 3,
                                         out_sh, diag)) != 0)
    return rc;
  (void)n_out;
  out_sh[3] = pf_replicated();
  return 0;
}

static void optim_cost(const pf_attrs *attrs, int n_in, const pf_spec *in,
                       int n_out, const pf_spec *out, pf_cost *cost) {
  (void)attrs;
  pf_builtin_cost(n_in, in, n_out, out, 8.0 * (double)pf_spec_numel(&in[0]),
                  cost);
}

/* Parameter and state updated where they lie when their buffers were
 * donated (pf_feed.donate): output k takes input in_place[k]'s buffer. */
static const int momentum_in_place[2] = {0, 2};
static const int adam_in_place[4] = {0, 2, 3, 4};

static const pf_kernel_def defs[] = {
    {.name = "momentum", .n_in = 3, .n_out = 2, .shape = momentum_shape,
     .cost = optim_cost, .sharding = pf_sharding_rule_elementwise,
     .compute = momentum_compute, .in_place = momentum_in_place},
    {.name = "adam", .n_in = PF_VARIADIC, .n_out = 4, .shape = adam_shape,
     .cost = optim_cost, .sharding = adam_sharding, .compute = adam_compute,
     .in_place = adam_in_place},
};

int pf_builtin_register_optim(pf_registry *reg) {
  return pf_builtin_add_all(reg, defs, PF_ARRAY_LEN(defs));
}
