/* The built-in CPU kernels: registration and the cost helpers they share.
 * The kernels themselves live in kernels/builtin_*.c, one family a file. */
#include "kernels/builtin_internal.h"

#include "base/util.h"

int pf_builtin_kernels_register(pf_registry *reg) {
  static int (*const families[])(pf_registry *) = {
      pf_builtin_register_fill,   pf_builtin_register_binary,
      pf_builtin_register_elementwise,
      pf_builtin_register_matmul, pf_builtin_register_reduce,
      pf_builtin_register_loss,   pf_builtin_register_optim,
      pf_builtin_register_init,   pf_builtin_register_data,
      pf_builtin_register_checkpoint, pf_builtin_register_microbatch,
      pf_builtin_register_pack,
  };
  for (size_t i = 0; i < PF_ARRAY_LEN(families); i++) {
    int rc = families[i](reg);
    if (rc != 0) return rc;
  }
  return 0;
}

int pf_builtin_add_all(pf_registry *reg, const pf_kernel_def *defs, size_t n) {
  for (size_t i = 0; i < n; i++) {
    pf_kernel_def def = defs[i];
    int rc;
    def.kind = PF_DEVICE_CPU;
    if ((rc = pf_registry_add(reg, &def)) != 0) return rc;
  }
  return 0;
}

void pf_builtin_cost(int n_in, const pf_spec *in, int n_out, const pf_spec *out,
                     double flops, pf_cost *cost) {
  pf_default_cost(NULL, n_in, in, n_out, out, cost);
  cost->flops = flops;
}

void pf_builtin_cost_numel(const pf_attrs *attrs, int n_in, const pf_spec *in,
                           int n_out, const pf_spec *out, pf_cost *cost) {
  (void)attrs;
  pf_builtin_cost(n_in, in, n_out, out, (double)pf_spec_numel(&out[0]), cost);
}
