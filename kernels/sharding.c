/* Sharding rules: the two public ones and the helpers the built-in rules
 * share. A rule only looks at layouts; shapes are the shape rule's job. */
#include "kernels/sharding.h"

#include <stdio.h>
#include <string.h>

#include "base/layout.h"
#include "pathflow/error.h"

int pf_sharding_refuse(pf_diag *diag, const char *kernel, int n_in,
                       const pf_sharding *in_sh, const char *why) {
  char list[256], one[32];
  size_t at = 0;
  list[0] = '\0';
  for (int i = 0; i < n_in && at < sizeof list; i++) {
    int w = snprintf(list + at, sizeof list - at, "%s%s", i ? ", " : "",
                     pf_sharding_str(in_sh[i], one, sizeof one));
    if (w < 0) break;
    at += (size_t)w;
  }
  return pf_diag_error(diag, PF_ESHARDING,
                       "%s: cannot compute on inputs consumed (%s): %s", kernel,
                       list, why);
}

void pf_sharding_set_all(int n_out, pf_sharding *out_sh, pf_sharding sh) {
  for (int i = 0; i < n_out; i++) out_sh[i] = sh;
}

int pf_sharding_all_alike(int n_in, const pf_sharding *in_sh) {
  for (int i = 1; i < n_in; i++)
    if (!pf_sharding_equal(in_sh[i], in_sh[0])) return 0;
  return 1;
}

int pf_sharding_count(int n_in, const pf_sharding *in_sh,
                      pf_sharding_kind kind) {
  int n = 0;
  for (int i = 0; i < n_in; i++) n += in_sh[i].kind == kind;
  return n;
}

int pf_sharding_rule_replicated(const pf_attrs *attrs, int n_in,
                                const pf_spec *in, const pf_sharding *in_sh,
                                int num_devices, int n_out,
                                pf_sharding *out_sh, pf_diag *diag) {
  (void)attrs;
  (void)in;
  if (num_devices > 1 &&
      pf_sharding_count(n_in, in_sh, PF_SHARD_REPLICATED) != n_in)
    return pf_sharding_refuse(diag, "kernel", n_in, in_sh,
                              "it computes only on whole (replicated) inputs");
  pf_sharding_set_all(n_out, out_sh, pf_replicated());
  return 0;
}

int pf_sharding_rule_elementwise(const pf_attrs *attrs, int n_in,
                                 const pf_spec *in, const pf_sharding *in_sh,
                                 int num_devices, int n_out,
                                 pf_sharding *out_sh, pf_diag *diag) {
  (void)attrs;
  (void)in;
  (void)num_devices;
  if (n_in == 0) {
    pf_sharding_set_all(n_out, out_sh, pf_replicated());
    return 0;
  }
  if (pf_sharding_count(n_in, in_sh, PF_SHARD_PARTIAL) > 0)
    return pf_sharding_refuse(diag, "elementwise kernel", n_in, in_sh,
                              "a partial input must be reduced first");
  if (!pf_sharding_all_alike(n_in, in_sh))
    return pf_sharding_refuse(diag, "elementwise kernel", n_in, in_sh,
                              "every input must be laid out alike");
  pf_sharding_set_all(n_out, out_sh, in_sh[0]);
  return 0;
}

int pf_sharding_rule_linear(const pf_attrs *attrs, int n_in, const pf_spec *in,
                            const pf_sharding *in_sh, int num_devices,
                            int n_out, pf_sharding *out_sh, pf_diag *diag) {
  (void)attrs;
  (void)in;
  (void)num_devices;
  if (n_in > 0 && !pf_sharding_all_alike(n_in, in_sh))
    return pf_sharding_refuse(diag, "linear kernel", n_in, in_sh,
                              "every input must be laid out alike (a sum of "
                              "partial values is partial; partial plus whole "
                              "would count the whole once per device)");
  pf_sharding_set_all(n_out, out_sh, n_in > 0 ? in_sh[0] : pf_replicated());
  return 0;
}
