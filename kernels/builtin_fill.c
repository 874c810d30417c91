/* Constants and copies: fill, iota, identity. */
#include <math.h>
#include <string.h>

#include "base/util.h"
#include "kernels/builtin_internal.h"
#include "kernels/sharding.h"
#include "pathflow/error.h"

/* The per-device spec from the "shape" and "dtype" attributes. */
static int spec_attr(const char *kernel, const pf_attrs *attrs, pf_spec *out,
                     pf_diag *diag) {
  char s[PF_BUILTIN_SPEC_STR];
  const int64_t *dims;
  int64_t dt;
  int rc, n = pf_attrs_get_ints(attrs, "shape", &dims);
  if (n < 0)
    return pf_diag_error(diag, PF_EINVAL,
                         "%s: attribute shape (an int list) is missing",
                         kernel);
  if (n > PF_MAX_RANK)
    return pf_diag_error(diag, PF_EINVAL,
                         "%s: attribute shape has %d dims; at most %d", kernel,
                         n, PF_MAX_RANK);
  rc = pf_builtin_int_attr(kernel, attrs, "dtype", PF_F32, 0,
                           PF_DTYPE_COUNT - 1, &dt, diag);
  if (rc != 0) return rc;
  /* bf16/f16 would need a conversion the CPU kernels do not carry. */
  if (dt == PF_BF16 || dt == PF_F16)
    return pf_diag_error(diag, PF_EDTYPE,
                         "%s: attribute dtype is %s; only f32, f64, i32, i64 "
                         "or u8 can be generated",
                         kernel, pf_dtype_name((pf_dtype)dt));
  *out = pf_spec_make((pf_dtype)dt, n, dims);
  if (pf_spec_check(out) != 0)
    return pf_diag_error(diag, PF_EINVAL,
                         "%s: attribute shape gives %s: a negative dimension "
                         "or too many bytes",
                         kernel, pf_spec_str(out, s, sizeof s));
  return 0;
}

/* Converting a double outside an integer type's range is undefined, so such
 * values are refused when the graph is built. Floats need no check. */
static int want_representable(const char *kernel, const char *what, double v,
                              pf_dtype dt, pf_diag *diag) {
  double lo, hi; /* [lo, hi) after truncation toward zero */
  switch (dt) {
    case PF_I32: lo = -2147483648.0; hi = 2147483648.0; break;
    case PF_I64: lo = -9223372036854775808.0; hi = 9223372036854775808.0; break;
    case PF_U8: lo = 0.0; hi = 256.0; break;
    default: return 0;
  }
  if (trunc(v) >= lo && trunc(v) < hi) return 0;
  return pf_diag_error(diag, PF_EINVAL, "%s: %s = %g does not fit in %s",
                       kernel, what, v, pf_dtype_name(dt));
}

static int fill_shape(const pf_attrs *attrs, int n_in, const pf_spec *in,
                      int n_out, pf_spec *out, pf_diag *diag) {
  double value;
  int rc = spec_attr("fill", attrs, &out[0], diag);
  if (rc == 0)
    rc = pf_builtin_float_attr("fill", attrs, "value", 0, &value, diag);
  if (rc == 0)
    rc = want_representable("fill", "attribute value", value, out[0].dtype,
                            diag);
  return rc;
}

static int iota_shape(const pf_attrs *attrs, int n_in, const pf_spec *in,
                      int n_out, pf_spec *out, pf_diag *diag) {
  double start, step;
  int64_t n;
  int rc = spec_attr("iota", attrs, &out[0], diag);
  if (rc == 0)
    rc = pf_builtin_float_attr("iota", attrs, "start", 0, &start, diag);
  if (rc == 0)
    rc = pf_builtin_float_attr("iota", attrs, "step", 1, &step, diag);
  if (rc != 0 || (n = pf_spec_numel(&out[0])) == 0) return rc;
  /* The ramp is monotonic, so its ends bound every value. */
  rc = want_representable("iota", "start", start, out[0].dtype, diag);
  if (rc == 0)
    rc = want_representable("iota", "the last value",
                            start + (double)(n - 1) * step, out[0].dtype, diag);
  return rc;
}

/* out[i] = start + i*step in out's dtype; fill is the ramp of step 0. */
#define RAMP(T, out, n, start, step) \
  for (int64_t i = 0; i < (n); i++)  \
    ((T *)(out))[i] = (T)((start) + (double)i * (step))

static void ramp(const pf_view *out, double start, double step) {
  int64_t n = pf_spec_numel(&out->spec);
  switch (out->spec.dtype) {
    case PF_F32: RAMP(float, out->data, n, start, step); break;
    case PF_F64: RAMP(double, out->data, n, start, step); break;
    case PF_I32: RAMP(int32_t, out->data, n, start, step); break;
    case PF_I64: RAMP(int64_t, out->data, n, start, step); break;
    case PF_U8: RAMP(uint8_t, out->data, n, start, step); break;
    default: break;
  }
}

/* out[i] = v + 0.0: one conversion, then stores (the ramp of step 0
 * converted start + i * 0.0 for every element, 5x the time of the stores,
 * since the compiler may not fold i * 0.0 away). + 0.0 keeps the ramp's
 * bits, which the CUDA kernel still computes: -0.0 becomes +0.0. */
#define CONST(T, out, n, v)               \
  do {                                    \
    const T c_ = (T)((v) + 0.0);          \
    for (int64_t i = 0; i < (n); i++) ((T *)(out))[i] = c_; \
  } while (0)

static int fill_compute(const pf_kernel_call *call) {
  const pf_view *out = &call->out[0];
  double v = pf_attrs_get_float(call->attrs, "value", 0);
  int64_t n = pf_spec_numel(&out->spec);
  switch (out->spec.dtype) {
    case PF_F32: CONST(float, out->data, n, v); break;
    case PF_F64: CONST(double, out->data, n, v); break;
    case PF_I32: CONST(int32_t, out->data, n, v); break;
    case PF_I64: CONST(int64_t, out->data, n, v); break;
    case PF_U8: CONST(uint8_t, out->data, n, v); break;
    default: break;
  }
  return 0;
}

static int iota_compute(const pf_kernel_call *call) {
  ramp(&call->out[0], pf_attrs_get_float(call->attrs, "start", 0),
       pf_attrs_get_float(call->attrs, "step", 1));
  return 0;
}

static int identity_shape(const pf_attrs *attrs, int n_in, const pf_spec *in,
                          int n_out, pf_spec *out, pf_diag *diag) {
  out[0] = in[0];
  return 0;
}

static int identity_compute(const pf_kernel_call *call) {
  size_t n = pf_spec_nbytes(&call->in[0].spec);
  if (n > 0) memcpy(call->out[0].data, call->in[0].data, n);
  return 0;
}

/* Every block of a constant is the constant, so fill honours a split (its
 * "shape" attribute is then the block's); n summands of it are not. */
static int fill_sharding(const pf_attrs *attrs, int n_in, const pf_spec *in,
                         const pf_sharding *in_sh, int num_devices, int n_out,
                         pf_sharding *out_sh, pf_diag *diag) {
  (void)attrs;
  (void)n_in;
  (void)in;
  (void)in_sh;
  (void)n_out;
  if (out_sh[0].kind == PF_SHARD_PARTIAL && num_devices > 1)
    return pf_diag_error(diag, PF_ESHARDING,
                         "fill: a partial constant would count the value "
                         "once per device");
  if (out_sh[0].kind != PF_SHARD_SPLIT) out_sh[0] = pf_replicated();
  return 0;
}

/* A ramp restarts on every device, so split blocks would not form a ramp:
 * iota is replicated (consume it split to cut it). */
static int iota_sharding(const pf_attrs *attrs, int n_in, const pf_spec *in,
                         const pf_sharding *in_sh, int num_devices, int n_out,
                         pf_sharding *out_sh, pf_diag *diag) {
  return pf_sharding_rule_replicated(attrs, n_in, in, in_sh, num_devices,
                                     n_out, out_sh, diag);
}

static const pf_kernel_def defs[] = {
    {.name = "fill", .n_in = 0, .n_out = 1, .shape = fill_shape,
     .sharding = fill_sharding, .compute = fill_compute},
    {.name = "iota", .n_in = 0, .n_out = 1, .shape = iota_shape,
     .cost = pf_builtin_cost_numel, .sharding = iota_sharding,
     .compute = iota_compute},
    {.name = "identity", .n_in = 1, .n_out = 1, .shape = identity_shape,
     .sharding = pf_sharding_rule_linear, .compute = identity_compute},
};

int pf_builtin_register_fill(pf_registry *reg) {
  return pf_builtin_add_all(reg, defs, PF_ARRAY_LEN(defs));
}
