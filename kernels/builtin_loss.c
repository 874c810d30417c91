/* softmax_xent: mean softmax cross-entropy of logits [N, C] against integer
 * labels [N], and its gradient with respect to the logits. */
#include <math.h>

#include "base/diag.h"
#include "base/util.h"
#include "kernels/builtin_internal.h"
#include "kernels/sharding.h"
#include "pathflow/error.h"

static int softmax_xent_shape(const pf_attrs *attrs, int n_in,
                              const pf_spec *in, int n_out, pf_spec *out,
                              pf_diag *diag) {
  char x[PF_BUILTIN_SPEC_STR], l[PF_BUILTIN_SPEC_STR];
  int64_t mean_over;
  int rc;
  if ((rc = pf_builtin_int_attr("softmax_xent", attrs, "mean_over", 0, 0,
                                INT64_MAX, &mean_over, diag)) ||
      (rc = pf_builtin_want_dtype("softmax_xent", in, 0, PF_BUILTIN_FLOATS,
                                  diag)) ||
      (rc = pf_builtin_want_dtype("softmax_xent", in, 1, PF_BUILTIN_INTS,
                                  diag)) ||
      (rc = pf_builtin_want_rank("softmax_xent", in, 0, 2, diag)) ||
      (rc = pf_builtin_want_rank("softmax_xent", in, 1, 1, diag)))
    return rc;
  if (in[1].dims[0] != in[0].dims[0])
    return pf_diag_error(diag, PF_ESHAPE,
                         "softmax_xent: input 1 is %s but input 0 is %s; "
                         "expected one label per row of logits",
                         pf_spec_str(&in[1], l, sizeof l),
                         pf_spec_str(&in[0], x, sizeof x));
  out[0] = pf_spec_scalar(in[0].dtype);
  out[1] = in[0];
  return 0;
}

static int64_t label_at(const pf_view *labels, int64_t row) {
  if (labels->spec.dtype == PF_I32)
    return ((const int32_t *)labels->data)[row];
  return ((const int64_t *)labels->data)[row];
}

/* Labels are data, so only compute can check them; doing it first means a
 * bad one fails the call before anything is written. */
static int check_labels(const pf_kernel_call *call, int64_t n, int64_t c) {
  for (int64_t r = 0; r < n; r++) {
    int64_t label = label_at(&call->in[1], r);
    if (label < 0 || label >= c)
      return pf_diag_error(call->diag, PF_EINVAL,
                           "softmax_xent: row %lld has label %lld; expected "
                           "0 <= label < %lld",
                           (long long)r, (long long)label, (long long)c);
  }
  return 0;
}

static int softmax_xent_compute(const pf_kernel_call *call) {
  const pf_spec *s = &call->in[0].spec;
  int64_t n = s->dims[0], c = s->dims[1];
  int64_t over = pf_attrs_get_int(call->attrs, "mean_over", 0);
  double total = 0, inv_n = over > 0 ? 1.0 / (double)over : n > 0 ? 1.0 / (double)n : 0;
  int rc = check_labels(call, n, c);
  if (rc != 0) return rc;
  /* Rows are shifted by their max so exp never overflows; sums run in
   * double whatever T is. */
  PF_BUILTIN_FLOAT_SWITCH(s->dtype, {
    const T *x = call->in[0].data;
    T *grad = call->out[1].data;
    for (int64_t r = 0; r < n; r++) {
      const T *row = x + r * c;
      T *g = grad + r * c;
      int64_t label = label_at(&call->in[1], r);
      double max = row[0], sum = 0;
      for (int64_t j = 1; j < c; j++)
        if (row[j] > max) max = row[j];
      for (int64_t j = 0; j < c; j++) {
        double e = exp((double)row[j] - max);
        g[j] = (T)e;
        sum += e;
      }
      total += log(sum) + max - (double)row[label];
      for (int64_t j = 0; j < c; j++)
        g[j] = (T)(((double)g[j] / sum - (j == label)) * inv_n);
    }
    *(T *)call->out[0].data = (T)(total * inv_n);
  });
  return 0;
}

/* About six flops a logit: max, shift, exp, sum, normalize, scale. */
static void softmax_xent_cost(const pf_attrs *attrs, int n_in,
                              const pf_spec *in, int n_out, const pf_spec *out,
                              pf_cost *cost) {
  pf_builtin_cost(n_in, in, n_out, out, 6.0 * (double)pf_spec_numel(&in[0]),
                  cost);
}

/* The loss is a mean, and the gradient is scaled by the row count: on
 * whole inputs that is the rows the device sees. Rows split over the slice
 * need the global count in attribute mean_over, so that every block's loss
 * is its share of the global mean (a partial loss: the blocks' losses add
 * up to it) and its gradient rows are those of the whole batch. */
static int softmax_xent_sharding(const pf_attrs *attrs, int n_in,
                                 const pf_spec *in, const pf_sharding *in_sh,
                                 int num_devices, int n_out,
                                 pf_sharding *out_sh, pf_diag *diag) {
  int64_t over = pf_attrs_get_int(attrs, "mean_over", 0);
  (void)n_out;
  if (num_devices == 1 ||
      pf_sharding_count(n_in, in_sh, PF_SHARD_REPLICATED) == n_in) {
    out_sh[0] = out_sh[1] = pf_replicated();
    return 0;
  }
  if (in_sh[0].kind == PF_SHARD_SPLIT && in_sh[0].axis == 0 &&
      in_sh[1].kind == PF_SHARD_SPLIT && in_sh[1].axis == 0 &&
      over == in[0].dims[0]) {
    out_sh[0] = pf_partial();
    out_sh[1] = pf_split(0);
    return 0;
  }
  return pf_sharding_refuse(diag, "softmax_xent", n_in, in_sh,
                            "whole inputs, or logits and labels split by rows "
                            "with attribute mean_over set to the global row "
                            "count");
}

/* accuracy(logits [N, C], labels [N]) -> i64 scalar: the rows whose
 * largest logit (the first, on ties) is at the label. */
static int accuracy_shape(const pf_attrs *attrs, int n_in, const pf_spec *in,
                          int n_out, pf_spec *out, pf_diag *diag) {
  pf_spec tmp[2];
  int rc = softmax_xent_shape(attrs, n_in, in, 2, tmp, diag);
  (void)n_out;
  if (rc != 0) {
    pf_diag_prefix(diag, "accuracy (same inputs as softmax_xent)");
    return rc;
  }
  out[0] = pf_spec_scalar(PF_I64);
  return 0;
}

static int accuracy_compute(const pf_kernel_call *call) {
  const pf_spec *s = &call->in[0].spec;
  int64_t n = s->dims[0], c = s->dims[1], hits = 0;
  PF_BUILTIN_FLOAT_SWITCH(s->dtype, {
    const T *x = call->in[0].data;
    for (int64_t r = 0; r < n; r++) {
      int64_t best = 0;
      for (int64_t j = 1; j < c; j++)
        if (x[r * c + j] > x[r * c + best]) best = j;
      hits += c > 0 && best == label_at(&call->in[1], r);
    }
  });
  *(int64_t *)call->out[0].data = hits;
  return 0;
}

/* Counts over blocks of rows add up: a partial count. */
static int accuracy_sharding(const pf_attrs *attrs, int n_in, const pf_spec *in,
                             const pf_sharding *in_sh, int num_devices,
                             int n_out, pf_sharding *out_sh, pf_diag *diag) {
  (void)attrs;
  (void)in;
  (void)n_out;
  if (num_devices == 1 ||
      pf_sharding_count(n_in, in_sh, PF_SHARD_REPLICATED) == n_in) {
    out_sh[0] = pf_replicated();
    return 0;
  }
  if (in_sh[0].kind == PF_SHARD_SPLIT && in_sh[0].axis == 0 &&
      in_sh[1].kind == PF_SHARD_SPLIT && in_sh[1].axis == 0) {
    out_sh[0] = pf_partial();
    return 0;
  }
  return pf_sharding_refuse(diag, "accuracy", n_in, in_sh,
                            "whole inputs, or logits and labels split by rows");
}

static const pf_kernel_def defs[] = {
    {.name = "accuracy", .n_in = 2, .n_out = 1, .shape = accuracy_shape,
     .cost = softmax_xent_cost, .sharding = accuracy_sharding,
     .compute = accuracy_compute},
    {.name = "softmax_xent", .n_in = 2, .n_out = 2,
     .shape = softmax_xent_shape, .cost = softmax_xent_cost,
     .sharding = softmax_xent_sharding, .compute = softmax_xent_compute},
};

int pf_builtin_register_loss(pf_registry *reg) {
  return pf_builtin_add_all(reg, defs, PF_ARRAY_LEN(defs));
}
