/* Elementwise float kernels of one spec: scale, relu, relu_grad, sgd; and
 * bias_add, which repeats a bias along the leading axes. (add, sub and mul,
 * which broadcast, are in builtin_binary.c.) */
#include "base/util.h"
#include "kernels/builtin_internal.h"
#include "kernels/sharding.h"
#include "pathflow/error.h"

/* The float-only kernels: n_in inputs of one f32 or f64 spec, output alike. */
static int float_shape(const char *kernel, int n_in, const pf_spec *in,
                       pf_spec *out, pf_diag *diag) {
  int rc = pf_builtin_want_all_same(kernel, n_in, in, PF_BUILTIN_FLOATS, diag);
  if (rc == 0) out[0] = in[0];
  return rc;
}

static int scale_shape(const pf_attrs *attrs, int n_in, const pf_spec *in,
                       int n_out, pf_spec *out, pf_diag *diag) {
  double alpha;
  int rc = float_shape("scale", n_in, in, out, diag);
  if (rc == 0)
    rc = pf_builtin_float_attr("scale", attrs, "alpha", 1, &alpha, diag);
  return rc;
}

static int scale_compute(const pf_kernel_call *call) {
  double alpha = pf_attrs_get_float(call->attrs, "alpha", 1);
  int64_t n = pf_spec_numel(&call->out[0].spec);
  PF_BUILTIN_FLOAT_SWITCH(call->in[0].spec.dtype, {
    const T *x = call->in[0].data;
    T *o = call->out[0].data, a = (T)alpha;
    for (int64_t i = 0; i < n; i++) o[i] = a * x[i];
  });
  return 0;
}

static int relu_shape(const pf_attrs *attrs, int n_in, const pf_spec *in,
                      int n_out, pf_spec *out, pf_diag *diag) {
  return float_shape("relu", n_in, in, out, diag);
}

static int relu_compute(const pf_kernel_call *call) {
  int64_t n = pf_spec_numel(&call->out[0].spec);
  PF_BUILTIN_FLOAT_SWITCH(call->in[0].spec.dtype, {
    const T *x = call->in[0].data;
    T *o = call->out[0].data;
    for (int64_t i = 0; i < n; i++) o[i] = x[i] > 0 ? x[i] : 0;
  });
  return 0;
}

static int relu_grad_shape(const pf_attrs *attrs, int n_in, const pf_spec *in,
                           int n_out, pf_spec *out, pf_diag *diag) {
  return float_shape("relu_grad", n_in, in, out, diag);
}

static int relu_grad_compute(const pf_kernel_call *call) {
  int64_t n = pf_spec_numel(&call->out[0].spec);
  PF_BUILTIN_FLOAT_SWITCH(call->in[0].spec.dtype, {
    const T *g = call->in[0].data, *x = call->in[1].data;
    T *o = call->out[0].data;
    /* g[i] read whatever x[i] is: a conditional load keeps the loop scalar
     * and branchy (a mispredict per element on ReLU's random signs: 50 us
     * for 64x256 instead of 3); an unconditional one is a vector blend. */
    for (int64_t i = 0; i < n; i++) {
      T gi = g[i];
      o[i] = x[i] > 0 ? gi : (T)0;
    }
  });
  return 0;
}

static int sgd_shape(const pf_attrs *attrs, int n_in, const pf_spec *in,
                     int n_out, pf_spec *out, pf_diag *diag) {
  double lr;
  int rc = float_shape("sgd", n_in, in, out, diag);
  if (rc == 0) rc = pf_builtin_float_attr("sgd", attrs, "lr", 0.01, &lr, diag);
  return rc;
}

static int sgd_compute(const pf_kernel_call *call) {
  double lr = pf_attrs_get_float(call->attrs, "lr", 0.01);
  int64_t n = pf_spec_numel(&call->out[0].spec);
  PF_BUILTIN_FLOAT_SWITCH(call->in[0].spec.dtype, {
    const T *p = call->in[0].data, *g = call->in[1].data;
    T *o = call->out[0].data, r = (T)lr;
    for (int64_t i = 0; i < n; i++) o[i] = p[i] - r * g[i];
  });
  return 0;
}

/* p' may take p's buffer: element i of p is read before it is written. */
static const int sgd_in_place[1] = {0};

static void sgd_cost(const pf_attrs *attrs, int n_in, const pf_spec *in,
                     int n_out, const pf_spec *out, pf_cost *cost) {
  pf_builtin_cost(n_in, in, n_out, out, 2.0 * (double)pf_spec_numel(&out[0]),
                  cost);
}

static int bias_add_shape(const pf_attrs *attrs, int n_in, const pf_spec *in,
                          int n_out, pf_spec *out, pf_diag *diag) {
  char x[PF_BUILTIN_SPEC_STR], b[PF_BUILTIN_SPEC_STR];
  int rc;
  if ((rc = pf_builtin_want_dtype("bias_add", in, 0, PF_BUILTIN_FLOATS,
                                  diag)) ||
      (rc = pf_builtin_want_same_dtype("bias_add", in, 1, diag)) ||
      (rc = pf_builtin_want_rank("bias_add", in, 1, 1, diag)))
    return rc;
  if (in[0].rank < 1 || in[0].dims[in[0].rank - 1] != in[1].dims[0])
    return pf_diag_error(diag, PF_ESHAPE,
                         "bias_add: input 1 is %s but input 0 is %s; the bias "
                         "must match the last axis of input 0 (rank >= 1)",
                         pf_spec_str(&in[1], b, sizeof b),
                         pf_spec_str(&in[0], x, sizeof x));
  out[0] = in[0];
  return 0;
}

static int bias_add_compute(const pf_kernel_call *call) {
  const pf_spec *s = &call->in[0].spec;
  int64_t rows, m, one;
  pf_builtin_split_axis(s, s->rank - 1, &rows, &m, &one);
  PF_BUILTIN_FLOAT_SWITCH(s->dtype, {
    const T *x = call->in[0].data, *b = call->in[1].data;
    T *o = call->out[0].data;
    for (int64_t r = 0; r < rows; r++)
      for (int64_t j = 0; j < m; j++) o[r * m + j] = x[r * m + j] + b[j];
  });
  return 0;
}

/* x [..., m] + b [m]: x split along any axis but the last takes the whole
 * bias; split along the last it takes the bias split alike. Partial plus
 * partial is partial (the bias summands add up to the bias). */
static int bias_add_sharding(const pf_attrs *attrs, int n_in, const pf_spec *in,
                             const pf_sharding *in_sh, int num_devices,
                             int n_out, pf_sharding *out_sh, pf_diag *diag) {
  pf_sharding x = in_sh[0], b = in_sh[1];
  int last = in[0].rank - 1;
  (void)attrs;
  (void)num_devices;
  if ((x.kind == PF_SHARD_REPLICATED && b.kind == PF_SHARD_REPLICATED) ||
      (x.kind == PF_SHARD_PARTIAL && b.kind == PF_SHARD_PARTIAL) ||
      (x.kind == PF_SHARD_SPLIT && x.axis != last &&
       b.kind == PF_SHARD_REPLICATED) ||
      (x.kind == PF_SHARD_SPLIT && x.axis == last && b.kind == PF_SHARD_SPLIT &&
       b.axis == 0)) {
    pf_sharding_set_all(n_out, out_sh, x);
    return 0;
  }
  return pf_sharding_refuse(diag, "bias_add", n_in, in_sh,
                            "x split along a leading axis takes the whole "
                            "bias, x split along its last axis takes the "
                            "bias split(0), partial x takes a partial bias");
}

#define DEF(kname, nin, costfn, rule)                               \
  {.name = #kname, .n_in = nin, .n_out = 1, .shape = kname##_shape, \
   .cost = costfn, .sharding = rule, .compute = kname##_compute}
static const pf_kernel_def defs[] = {
    DEF(scale, 1, pf_builtin_cost_numel, pf_sharding_rule_linear),
    DEF(relu, 1, pf_builtin_cost_numel, pf_sharding_rule_elementwise),
    DEF(relu_grad, 2, pf_builtin_cost_numel, pf_sharding_rule_elementwise),
    {.name = "sgd", .n_in = 2, .n_out = 1, .shape = sgd_shape, .cost = sgd_cost,
     .sharding = pf_sharding_rule_elementwise, .compute = sgd_compute,
     .in_place = sgd_in_place},
    DEF(bias_add, 2, pf_builtin_cost_numel, bias_add_sharding),
};

int pf_builtin_register_elementwise(pf_registry *reg) {
  return pf_builtin_add_all(reg, defs, PF_ARRAY_LEN(defs));
}
