/* init_uniform: deterministic parameter initialisation from a seed.
 * Element i is drawn from a counter-based generator keyed by (seed, i), so
 * the same seed gives the same tensor on every rank, device count and run,
 * with no generator state to carry or checkpoint. */
#include <math.h>
#include <string.h>

#include "base/util.h"
#include "kernels/builtin_internal.h"
#include "kernels/sharding.h"
#include "pathflow/error.h"

/* Uniform in [0, 1) with 53 random bits. */
static double draw(uint64_t seed, uint64_t i) {
  return (double)(pf_builtin_mix64(seed * 0x9e3779b97f4a7c15ull + pf_builtin_mix64(i + 1)) >> 11) *
         0x1.0p-53;
}

/* The bound b of U(-b, b): "kaiming" sqrt(6 / fan_in) (He, for ReLU),
 * "xavier" sqrt(6 / (fan_in + fan_out)) (Glorot), for a weight [in, out]
 * as matmul(x, w) reads it; "uniform" the "bound" attribute. */
static int bound_of(const pf_attrs *attrs, const pf_spec *s, double *bound,
                    pf_diag *diag) {
  const char *mode = pf_attrs_get_string(attrs, "mode", "uniform");
  char buf[PF_BUILTIN_SPEC_STR];
  if (strcmp(mode, "uniform") == 0)
    return pf_builtin_float_attr("init_uniform", attrs, "bound", 1, bound, diag);
  if (strcmp(mode, "kaiming") != 0 && strcmp(mode, "xavier") != 0)
    return pf_diag_error(diag, PF_EINVAL,
                         "init_uniform: attribute mode is \"%s\"; expected "
                         "\"uniform\", \"kaiming\" or \"xavier\"",
                         mode);
  if (s->rank != 2 || s->dims[0] < 1 || s->dims[1] < 1)
    return pf_diag_error(diag, PF_ESHAPE,
                         "init_uniform: mode \"%s\" needs a weight [in, out]; "
                         "the shape is %s",
                         mode, pf_spec_str(s, buf, sizeof buf));
  *bound = mode[0] == 'k' ? sqrt(6.0 / (double)s->dims[0])
                          : sqrt(6.0 / (double)(s->dims[0] + s->dims[1]));
  return 0;
}

static int init_shape(const pf_attrs *attrs, int n_in, const pf_spec *in,
                      int n_out, pf_spec *out, pf_diag *diag) {
  const int64_t *dims;
  int64_t dt, seed;
  double bound;
  int rc, n = pf_attrs_get_ints(attrs, "shape", &dims);
  (void)n_in;
  (void)in;
  (void)n_out;
  if (n < 0 || n > PF_MAX_RANK)
    return pf_diag_error(diag, PF_EINVAL,
                         "init_uniform: attribute shape (an int list of at "
                         "most %d dims) is missing or too long",
                         PF_MAX_RANK);
  if ((rc = pf_builtin_int_attr("init_uniform", attrs, "dtype", PF_F32, 0,
                                PF_DTYPE_COUNT - 1, &dt, diag)) ||
      (rc = pf_builtin_int_attr("init_uniform", attrs, "seed", 0, INT64_MIN,
                                INT64_MAX, &seed, diag)))
    return rc;
  out[0] = pf_spec_make((pf_dtype)dt, n, dims);
  if (dt != PF_F32 && dt != PF_F64)
    return pf_diag_error(diag, PF_EDTYPE,
                         "init_uniform: attribute dtype is %s; expected f32 or "
                         "f64",
                         pf_dtype_name((pf_dtype)dt));
  if (pf_spec_check(&out[0]) != 0)
    return pf_diag_error(diag, PF_EINVAL,
                         "init_uniform: attribute shape has a negative "
                         "dimension or too many elements");
  return bound_of(attrs, &out[0], &bound, diag);
}

static int init_compute(const pf_kernel_call *call) {
  const pf_spec *s = &call->out[0].spec;
  uint64_t seed = (uint64_t)pf_attrs_get_int(call->attrs, "seed", 0);
  int64_t n = pf_spec_numel(s);
  double bound;
  int rc = bound_of(call->attrs, s, &bound, call->diag);
  if (rc != 0) return rc;
  PF_BUILTIN_FLOAT_SWITCH(s->dtype, {
    T *o = call->out[0].data;
    for (int64_t i = 0; i < n; i++)
      o[i] = (T)((2 * draw(seed, (uint64_t)i) - 1) * bound);
  });
  return 0;
}

static const pf_kernel_def defs[] = {
    {.name = "init_uniform", .n_in = 0, .n_out = 1, .shape = init_shape,
     /* Counters index the whole tensor, so the kernel makes it whole. */
     .cost = pf_builtin_cost_numel, .sharding = pf_sharding_rule_replicated,
     .compute = init_compute},
};

int pf_builtin_register_init(pf_registry *reg) {
  return pf_builtin_add_all(reg, defs, PF_ARRAY_LEN(defs));
}
