/* Internal: helpers for sharding rules (kernels/sharding.c), shared by the
 * built-in kernels and the graph builder. */
#ifndef PF_KERNELS_SHARDING_H
#define PF_KERNELS_SHARDING_H

#include "pathflow/kernel.h"

/* Records PF_ESHARDING in `diag`: "<kernel>: cannot compute on inputs
 * consumed (<shardings>): <why>", and returns it. */
int pf_sharding_refuse(pf_diag *diag, const char *kernel, int n_in,
                       const pf_sharding *in_sh, const char *why);

/* Sets every output sharding to `sh`. */
void pf_sharding_set_all(int n_out, pf_sharding *out_sh, pf_sharding sh);

/* 1 if every input is laid out like the first (and for n_in <= 1). */
int pf_sharding_all_alike(int n_in, const pf_sharding *in_sh);

/* How many inputs are consumed with sharding kind `kind`. */
int pf_sharding_count(int n_in, const pf_sharding *in_sh,
                      pf_sharding_kind kind);

/* The rule of a kernel linear in all its inputs together (add, sub,
 * identity, scale): like the elementwise rule, and partial inputs give a
 * partial output when every input is partial. */
int pf_sharding_rule_linear(const pf_attrs *attrs, int n_in, const pf_spec *in,
                            const pf_sharding *in_sh, int num_devices,
                            int n_out, pf_sharding *out_sh, pf_diag *diag);

#endif
