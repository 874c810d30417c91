/* Reductions over one axis: reduce_sum and argmax. Both view the input as
 * [outer, len, inner] around the axis and write [outer, inner]. */
#include <string.h>

#include "base/util.h"
#include "kernels/builtin_internal.h"
#include "kernels/sharding.h"
#include "pathflow/error.h"

/* `in` without `axis` (or with it set to 1 when keepdims), in dtype dt. */
static pf_spec reduced(const pf_spec *in, int axis, int keepdims, pf_dtype dt) {
  pf_spec out = *in;
  out.dtype = dt;
  if (keepdims) {
    out.dims[axis] = 1;
  } else {
    memmove(&out.dims[axis], &out.dims[axis + 1],
            (size_t)(in->rank - axis - 1) * sizeof out.dims[0]);
    out.dims[--out.rank] = 0;
  }
  return out;
}

static void input_numel_cost(const pf_attrs *attrs, int n_in, const pf_spec *in,
                             int n_out, const pf_spec *out, pf_cost *cost) {
  pf_builtin_cost(n_in, in, n_out, out, (double)pf_spec_numel(&in[0]), cost);
}

static int reduce_sum_shape(const pf_attrs *attrs, int n_in, const pf_spec *in,
                            int n_out, pf_spec *out, pf_diag *diag) {
  int64_t keepdims;
  int axis, rc;
  if ((rc = pf_builtin_want_dtype("reduce_sum", in, 0, PF_BUILTIN_FLOATS,
                                  diag)) ||
      (rc = pf_builtin_axis_attr("reduce_sum", attrs, "axis", 0, &in[0], &axis,
                                 diag)) ||
      (rc = pf_builtin_int_attr("reduce_sum", attrs, "keepdims", 0, 0, 1,
                                &keepdims, diag)))
    return rc;
  out[0] = reduced(&in[0], axis, (int)keepdims, in[0].dtype);
  return 0;
}

static int reduce_sum_compute(const pf_kernel_call *call) {
  const pf_spec *s = &call->in[0].spec;
  int64_t outer, len, inner;
  int axis;
  int rc = pf_builtin_axis_attr("reduce_sum", call->attrs, "axis", 0, s, &axis,
                                call->diag);
  if (rc != 0) return rc;
  pf_builtin_split_axis(s, axis, &outer, &len, &inner);
  /* Row by row along the axis, so the inner loop runs over contiguous
   * memory whatever the axis. */
  PF_BUILTIN_FLOAT_SWITCH(s->dtype, {
    const T *x = call->in[0].data;
    T *o = call->out[0].data;
    for (int64_t a = 0; a < outer; a++) {
      T *dst = o + a * inner;
      for (int64_t i = 0; i < inner; i++) dst[i] = 0;
      for (int64_t k = 0; k < len; k++) {
        const T *src = x + (a * len + k) * inner;
        for (int64_t i = 0; i < inner; i++) dst[i] += src[i];
      }
    }
  });
  return 0;
}

static int argmax_shape(const pf_attrs *attrs, int n_in, const pf_spec *in,
                        int n_out, pf_spec *out, pf_diag *diag) {
  char s[PF_BUILTIN_SPEC_STR];
  int axis, rc;
  if ((rc = pf_builtin_want_dtype("argmax", in, 0, PF_BUILTIN_FLOATS, diag)) ||
      (rc = pf_builtin_axis_attr("argmax", attrs, "axis", -1, &in[0], &axis,
                                 diag)))
    return rc;
  out[0] = reduced(&in[0], axis, 0, PF_I64);
  if (in[0].dims[axis] == 0 && pf_spec_numel(&out[0]) > 0)
    return pf_diag_error(diag, PF_ESHAPE,
                         "argmax: input 0 is %s; axis %d is empty, so there "
                         "is no maximum",
                         pf_spec_str(&in[0], s, sizeof s), axis);
  return 0;
}

static int argmax_compute(const pf_kernel_call *call) {
  const pf_spec *s = &call->in[0].spec;
  int64_t outer, len, inner, *o = call->out[0].data;
  int axis;
  int rc = pf_builtin_axis_attr("argmax", call->attrs, "axis", -1, s, &axis,
                                call->diag);
  if (rc != 0) return rc;
  pf_builtin_split_axis(s, axis, &outer, &len, &inner);
  if (len == 0) return 0; /* then the output is empty (see argmax_shape) */
  /* Ties go to the first index; a NaN wins over numbers, the first NaN over
   * later ones (as numpy does), so a NaN in the input is never hidden. */
  PF_BUILTIN_FLOAT_SWITCH(s->dtype, {
    const T *x = call->in[0].data;
    for (int64_t a = 0; a < outer; a++)
      for (int64_t i = 0; i < inner; i++) {
        const T *col = x + a * len * inner + i;
        T best = col[0];
        int64_t at = 0;
        for (int64_t k = 1; k < len; k++) {
          T v = col[k * inner];
          if (v > best || (v != v && best == best)) {
            best = v;
            at = k;
          }
        }
        o[a * inner + i] = at;
      }
  });
  return 0;
}

/* reduce_sum_grad(gy, x): gy repeated along the axis reduce_sum took away,
 * to x's shape (x is read for its shape only). */
static int reduce_sum_grad_shape(const pf_attrs *attrs, int n_in,
                                 const pf_spec *in, int n_out, pf_spec *out,
                                 pf_diag *diag) {
  char g[PF_BUILTIN_SPEC_STR], x[PF_BUILTIN_SPEC_STR];
  int64_t keepdims;
  int axis, rc;
  pf_spec want;
  if ((rc = pf_builtin_want_dtype("reduce_sum_grad", in, 0, PF_BUILTIN_FLOATS,
                                  diag)) ||
      (rc = pf_builtin_want_same_dtype("reduce_sum_grad", in, 1, diag)) ||
      (rc = pf_builtin_axis_attr("reduce_sum_grad", attrs, "axis", 0, &in[1],
                                 &axis, diag)) ||
      (rc = pf_builtin_int_attr("reduce_sum_grad", attrs, "keepdims", 0, 0, 1,
                                &keepdims, diag)))
    return rc;
  want = reduced(&in[1], axis, (int)keepdims, in[1].dtype);
  if (!pf_spec_equal(&want, &in[0]))
    return pf_diag_error(diag, PF_ESHAPE,
                         "reduce_sum_grad: input 0 is %s; reduce_sum over "
                         "axis %d of input 1 (%s) gives %s",
                         pf_spec_str(&in[0], g, sizeof g), axis,
                         pf_spec_str(&in[1], x, sizeof x),
                         pf_spec_str(&want, g, sizeof g));
  out[0] = in[1];
  return 0;
}

static int reduce_sum_grad_compute(const pf_kernel_call *call) {
  const pf_spec *s = &call->out[0].spec;
  int64_t outer, len, inner;
  int axis;
  int rc = pf_builtin_axis_attr("reduce_sum_grad", call->attrs, "axis", 0, s,
                                &axis, call->diag);
  if (rc != 0) return rc;
  pf_builtin_split_axis(s, axis, &outer, &len, &inner);
  PF_BUILTIN_FLOAT_SWITCH(s->dtype, {
    const T *g = call->in[0].data;
    T *o = call->out[0].data;
    for (int64_t a = 0; a < outer; a++)
      for (int64_t k = 0; k < len; k++)
        memcpy(o + (a * len + k) * inner, g + a * inner,
               (size_t)inner * sizeof(T));
  });
  return 0;
}

/* Each device repeats its gy into its block of x's shape: blocks of x along
 * the repeated axis take gy whole; along another axis, gy split alike. A
 * partial gy repeats into a partial result (x whole). */
static int reduce_sum_grad_sharding(const pf_attrs *attrs, int n_in,
                                    const pf_spec *in, const pf_sharding *in_sh,
                                    int num_devices, int n_out,
                                    pf_sharding *out_sh, pf_diag *diag) {
  pf_sharding g = in_sh[0], x = in_sh[1];
  int64_t axis = pf_attrs_get_int(attrs, "axis", 0);
  int keepdims = pf_attrs_get_int(attrs, "keepdims", 0) != 0;
  (void)num_devices;
  (void)n_out;
  if (axis < 0) axis += in[1].rank;
  if (x.kind == PF_SHARD_PARTIAL) x = pf_replicated(); /* shape only */
  if (x.kind == PF_SHARD_REPLICATED) {
    if (g.kind == PF_SHARD_SPLIT && !keepdims && g.axis >= axis) g.axis++;
    out_sh[0] = g;
    return 0;
  }
  if (x.axis == axis && g.kind == PF_SHARD_REPLICATED) {
    out_sh[0] = x;
    return 0;
  }
  if (x.axis != axis && g.kind == PF_SHARD_SPLIT &&
      g.axis == (x.axis < axis || keepdims ? x.axis : x.axis - 1)) {
    out_sh[0] = x;
    return 0;
  }
  return pf_sharding_refuse(diag, "reduce_sum_grad", n_in, in_sh,
                            "x split along the reduced axis takes gy whole; "
                            "along another axis, gy split alike");
}

/* The output sharding of a reduction over `axis` of an input laid out as
 * `in`: a split along another axis stays a split (renumbered when the axis
 * goes away), a split along the reduced axis leaves per-device parts:
 * partial sums for reduce_sum, which argmax cannot combine. */
static int reduce_sharding(const char *kernel, const pf_attrs *attrs,
                           const pf_spec *in, const pf_sharding *in_sh,
                           int64_t axis_dflt, int linear, pf_sharding *out_sh,
                           pf_diag *diag) {
  pf_sharding sh = in_sh[0];
  int64_t axis = pf_attrs_get_int(attrs, "axis", axis_dflt);
  int keepdims = pf_attrs_get_int(attrs, "keepdims", 0) != 0;
  if (axis < 0) axis += in[0].rank;
  if (sh.kind == PF_SHARD_PARTIAL && !linear)
    return pf_sharding_refuse(diag, kernel, 1, in_sh,
                              "the maximum of a sum is not the sum of "
                              "maxima: reduce the input first");
  if (sh.kind == PF_SHARD_SPLIT && sh.axis == axis) {
    if (!linear)
      return pf_sharding_refuse(diag, kernel, 1, in_sh,
                                "the reduced axis is split");
    sh = pf_partial();
  } else if (sh.kind == PF_SHARD_SPLIT && sh.axis > axis && !keepdims) {
    sh.axis--;
  }
  out_sh[0] = sh;
  return 0;
}

static int reduce_sum_sharding(const pf_attrs *attrs, int n_in,
                               const pf_spec *in, const pf_sharding *in_sh,
                               int num_devices, int n_out, pf_sharding *out_sh,
                               pf_diag *diag) {
  (void)n_in;
  (void)num_devices;
  (void)n_out;
  return reduce_sharding("reduce_sum", attrs, in, in_sh, 0, 1, out_sh, diag);
}

static int argmax_sharding(const pf_attrs *attrs, int n_in, const pf_spec *in,
                           const pf_sharding *in_sh, int num_devices,
                           int n_out, pf_sharding *out_sh, pf_diag *diag) {
  (void)n_in;
  (void)num_devices;
  (void)n_out;
  return reduce_sharding("argmax", attrs, in, in_sh, -1, 0, out_sh, diag);
}

static const pf_kernel_def defs[] = {
    {.name = "reduce_sum", .n_in = 1, .n_out = 1, .shape = reduce_sum_shape,
     .cost = input_numel_cost, .sharding = reduce_sum_sharding,
     .compute = reduce_sum_compute},
    {.name = "reduce_sum_grad", .n_in = 2, .n_out = 1,
     .shape = reduce_sum_grad_shape, .cost = pf_builtin_cost_numel,
     .sharding = reduce_sum_grad_sharding, .compute = reduce_sum_grad_compute},
    {.name = "argmax", .n_in = 1, .n_out = 1, .shape = argmax_shape,
     .cost = input_numel_cost, .sharding = argmax_sharding,
     .compute = argmax_compute},
};

int pf_builtin_register_reduce(pf_registry *reg) {
  return pf_builtin_add_all(reg, defs, PF_ARRAY_LEN(defs));
}
