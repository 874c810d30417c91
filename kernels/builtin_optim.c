/* Optimizer steps beside sgd: momentum and Adam. Each takes a parameter, its
 * gradient and its optimizer state, all of one spec, and returns the new
 * parameter and state, so that the state lives on the devices beside the
 * parameter from step to step (fed back as buffers). */
#include <math.h>

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

static int momentum_compute(const pf_kernel_call *call) {
  double lr = pf_attrs_get_float(call->attrs, "lr", 0.01);
  double beta = pf_attrs_get_float(call->attrs, "beta", 0.9);
  int64_t n = pf_spec_numel(&call->in[0].spec);
  PF_BUILTIN_FLOAT_SWITCH(call->in[0].spec.dtype, {
    const T *p = call->in[0].data, *g = call->in[1].data, *v = call->in[2].data;
    T *po = call->out[0].data, *vo = call->out[1].data;
    for (int64_t i = 0; i < n; i++) {
      T nv = (T)beta * v[i] + g[i];
      vo[i] = nv;
      po[i] = p[i] - (T)lr * nv;
    }
  });
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

static int adam_compute(const pf_kernel_call *call) {
  double lr = call->n_in == 6 ? *(const double *)call->in[5].data
                              : pf_attrs_get_float(call->attrs, "lr", 0.001);
  double b1 = pf_attrs_get_float(call->attrs, "beta1", 0.9);
  double b2 = pf_attrs_get_float(call->attrs, "beta2", 0.999);
  double eps = pf_attrs_get_float(call->attrs, "eps", 1e-8);
  int64_t n = pf_spec_numel(&call->in[0].spec);
  int64_t t = *(const int64_t *)call->in[4].data + 1;
  double c1 = 1 - pow(b1, (double)t), c2 = 1 - pow(b2, (double)t);
  *(int64_t *)call->out[3].data = t;
  /* In the parameters' own precision, as PyTorch does, with the bias
   * corrections folded into two constants: p -= step * m / (sqrt(v) * r +
   * eps), step = lr / c1, r = 1 / sqrt(c2). One loop the compiler
   * vectorizes; in double with a division and a square root of a quotient
   * per element it took a quarter of a small MLP's training step. */
  PF_BUILTIN_FLOAT_SWITCH(call->in[0].spec.dtype, {
    const T *p = call->in[0].data, *g = call->in[1].data;
    const T *m = call->in[2].data, *v = call->in[3].data;
    T *po = call->out[0].data, *mo = call->out[1].data, *vo = call->out[2].data;
    const T tb1 = (T)b1, tb2 = (T)b2, ob1 = (T)(1 - b1), ob2 = (T)(1 - b2);
    const T step = (T)(lr / c1), r = (T)(1 / sqrt(c2)), teps = (T)eps;
    for (int64_t i = 0; i < n; i++) {
      T nm = tb1 * m[i] + ob1 * g[i];
      T nv = tb2 * v[i] + ob2 * g[i] * g[i];
      mo[i] = nm;
      vo[i] = nv;
      po[i] = p[i] - step * nm / (pf_builtin_sqrt(nv) * r + teps);
    }
  });
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

static const pf_kernel_def defs[] = {
    {.name = "momentum", .n_in = 3, .n_out = 2, .shape = momentum_shape,
     .cost = optim_cost, .sharding = pf_sharding_rule_elementwise,
     .compute = momentum_compute},
    {.name = "adam", .n_in = PF_VARIADIC, .n_out = 4, .shape = adam_shape,
     .cost = optim_cost, .sharding = adam_sharding, .compute = adam_compute},
};

int pf_builtin_register_optim(pf_registry *reg) {
  return pf_builtin_add_all(reg, defs, PF_ARRAY_LEN(defs));
}
