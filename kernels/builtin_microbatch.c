/* microbatch: part `index` of `count` equal parts of each device's rows,
 * the way a pipeline cuts a step's batch into micro-batches on the device
 * that holds it (nothing passes through the controller). */
#include <string.h>

#include "base/util.h"
#include "kernels/builtin_internal.h"
#include "kernels/sharding.h"
#include "pathflow/error.h"

static int microbatch_shape(const pf_attrs *attrs, int n_in, const pf_spec *in, int n_out,
                            pf_spec *out, pf_diag *diag) {
  int64_t index, count;
  int rc;
  (void)n_in;
  (void)n_out;
  if ((rc = pf_builtin_int_attr("microbatch", attrs, "count", -1, 1, INT64_MAX, &count,
                                diag)) != 0 ||
      (rc = pf_builtin_int_attr("microbatch", attrs, "index", -1, 0, count - 1, &index,
                                diag)) != 0)
    return rc;
  if (in[0].rank < 1)
    return pf_diag_error(diag, PF_ESHAPE, "microbatch: input 0 is a scalar; expected rows");
  if (in[0].dims[0] % count != 0)
    return pf_diag_error(diag, PF_ESHAPE,
                         "microbatch: %lld rows (on a device) do not divide into %lld parts",
                         (long long)in[0].dims[0], (long long)count);
  out[0] = in[0];
  out[0].dims[0] = in[0].dims[0] / count;
  return 0;
}

static int microbatch_compute(const pf_kernel_call *call) {
  size_t n = pf_spec_nbytes(&call->out[0].spec);
  int64_t index = pf_attrs_get_int(call->attrs, "index", 0);
  if (n > 0) memcpy(call->out[0].data, (const char *)call->in[0].data + (size_t)index * n, n);
  return 0;
}

static const pf_kernel_def defs[] = {
    {.name = "microbatch", .n_in = 1, .n_out = 1, .shape = microbatch_shape,
     .sharding = pf_sharding_rule_elementwise, .compute = microbatch_compute},
};

int pf_builtin_register_microbatch(pf_registry *reg) {
  return pf_builtin_add_all(reg, defs, PF_ARRAY_LEN(defs));
}
