/* Spec and attribute checks shared by the built-in kernels' shape
 * functions. Messages start with the kernel name and print specs in full. */
#include <math.h>
#include <stdio.h>

#include "kernels/builtin_internal.h"
#include "pathflow/error.h"

/* "f32 or f64", "i32, i64 or u8", ... */
static const char *dtype_set_str(unsigned set, char *buf, size_t len) {
  size_t off = 0;
  int left = 0;
  for (int dt = 0; dt < PF_DTYPE_COUNT; dt++) left += (set >> dt) & 1;
  buf[0] = '\0';
  for (int dt = 0; dt < PF_DTYPE_COUNT && off < len; dt++) {
    if (!((set >> dt) & 1)) continue;
    left--;
    off += (size_t)snprintf(buf + off, len - off, "%s%s",
                            pf_dtype_name((pf_dtype)dt),
                            left > 1 ? ", " : left == 1 ? " or " : "");
  }
  return buf;
}

int pf_builtin_want_dtype(const char *kernel, const pf_spec *in, int idx,
                          unsigned allowed, pf_diag *diag) {
  char s[PF_BUILTIN_SPEC_STR], set[64];
  if ((unsigned)in[idx].dtype < PF_DTYPE_COUNT &&
      (allowed & PF_BUILTIN_DT(in[idx].dtype)))
    return 0;
  return pf_diag_error(diag, PF_EDTYPE, "%s: input %d is %s; expected %s",
                       kernel, idx, pf_spec_str(&in[idx], s, sizeof s),
                       dtype_set_str(allowed, set, sizeof set));
}

int pf_builtin_want_rank(const char *kernel, const pf_spec *in, int idx,
                         int rank, pf_diag *diag) {
  char s[PF_BUILTIN_SPEC_STR];
  if (in[idx].rank == rank) return 0;
  return pf_diag_error(diag, PF_ESHAPE, "%s: input %d is %s; expected rank %d",
                       kernel, idx, pf_spec_str(&in[idx], s, sizeof s), rank);
}

int pf_builtin_want_same_dtype(const char *kernel, const pf_spec *in, int idx,
                               pf_diag *diag) {
  char a[PF_BUILTIN_SPEC_STR], b[PF_BUILTIN_SPEC_STR];
  if (in[idx].dtype == in[0].dtype) return 0;
  return pf_diag_error(diag, PF_EDTYPE,
                       "%s: input %d is %s but input 0 is %s; they must have "
                       "the same dtype",
                       kernel, idx, pf_spec_str(&in[idx], a, sizeof a),
                       pf_spec_str(&in[0], b, sizeof b));
}

int pf_builtin_want_same(const char *kernel, const pf_spec *in, int idx,
                         pf_diag *diag) {
  char a[PF_BUILTIN_SPEC_STR], b[PF_BUILTIN_SPEC_STR];
  if (pf_spec_equal(&in[idx], &in[0])) return 0;
  return pf_diag_error(
      diag, in[idx].dtype != in[0].dtype ? PF_EDTYPE : PF_ESHAPE,
      "%s: input %d is %s but input 0 is %s; they must have the same dtype "
      "and shape",
      kernel, idx, pf_spec_str(&in[idx], a, sizeof a),
      pf_spec_str(&in[0], b, sizeof b));
}

int pf_builtin_want_all_same(const char *kernel, int n_in, const pf_spec *in,
                             unsigned allowed, pf_diag *diag) {
  int rc;
  for (int i = 0; i < n_in; i++) {
    /* Same-spec first: "input 1 is f64 but input 0 is f32" says more than
     * "input 1 is f64; expected f32 or f64" would. */
    if ((rc = pf_builtin_want_same(kernel, in, i, diag)) != 0) return rc;
    if ((rc = pf_builtin_want_dtype(kernel, in, i, allowed, diag)) != 0)
      return rc;
  }
  return 0;
}

int pf_builtin_int_attr(const char *kernel, const pf_attrs *attrs,
                        const char *name, int64_t dflt, int64_t lo, int64_t hi,
                        int64_t *out, pf_diag *diag) {
  /* The getter answers the default for a missing attribute and for one of
   * another type; two different defaults tell the cases apart. */
  if (pf_attrs_has(attrs, name) &&
      pf_attrs_get_int(attrs, name, INT64_MIN) == INT64_MIN &&
      pf_attrs_get_int(attrs, name, INT64_MAX) == INT64_MAX)
    return pf_diag_error(diag, PF_EINVAL,
                         "%s: attribute %s must be an int", kernel, name);
  *out = pf_attrs_get_int(attrs, name, dflt);
  if (*out < lo || *out > hi)
    return pf_diag_error(diag, PF_EINVAL,
                         "%s: attribute %s = %lld is out of range [%lld, %lld]",
                         kernel, name, (long long)*out, (long long)lo,
                         (long long)hi);
  return 0;
}

int pf_builtin_float_attr(const char *kernel, const pf_attrs *attrs,
                          const char *name, double dflt, double *out,
                          pf_diag *diag) {
  /* Stored floats are finite, so NaN can only be the default echoed back. */
  if (pf_attrs_has(attrs, name) && isnan(pf_attrs_get_float(attrs, name, NAN)))
    return pf_diag_error(diag, PF_EINVAL,
                         "%s: attribute %s must be a float", kernel, name);
  *out = pf_attrs_get_float(attrs, name, dflt);
  return 0;
}

int pf_builtin_axis_attr(const char *kernel, const pf_attrs *attrs,
                         const char *name, int64_t dflt, const pf_spec *spec,
                         int *axis, pf_diag *diag) {
  char s[PF_BUILTIN_SPEC_STR];
  int64_t v = 0;
  int rc = pf_builtin_int_attr(kernel, attrs, name, dflt, INT64_MIN, INT64_MAX,
                               &v, diag);
  if (rc != 0) return rc;
  if (v < -(int64_t)spec->rank || v >= spec->rank)
    return pf_diag_error(diag, PF_EINVAL,
                         "%s: attribute %s = %lld is out of range for input 0 "
                         "%s (rank %d)",
                         kernel, name, (long long)v,
                         pf_spec_str(spec, s, sizeof s), spec->rank);
  *axis = (int)(v < 0 ? v + spec->rank : v);
  return 0;
}

void pf_builtin_split_axis(const pf_spec *spec, int axis, int64_t *outer,
                           int64_t *len, int64_t *inner) {
  *outer = 1;
  *inner = 1;
  for (int i = 0; i < axis; i++) *outer *= spec->dims[i];
  for (int i = axis + 1; i < spec->rank; i++) *inner *= spec->dims[i];
  *len = spec->dims[axis];
}
