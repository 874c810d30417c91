/* Internal: what the built-in CPU kernels (kernels/builtin_*.c) share.
 *
 * Every check helper reports through pf_diag_error with a message that starts
 * with the kernel's name, so a failed graph build says which program and
 * which input is wrong. Compute functions trust their shape function: they
 * only ever see specs it accepted.
 */
#ifndef PF_KERNELS_BUILTIN_INTERNAL_H
#define PF_KERNELS_BUILTIN_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "base/mix64.h"
#include "kernels/registry.h"

/* Room for pf_spec_str of any valid spec. */
#define PF_BUILTIN_SPEC_STR 200

/* Square root in the argument's own precision, without errno (the
 * arguments are never negative where it is used), so loops vectorize. */
#define pf_builtin_sqrt(x)                                                  \
  _Generic((x), float: __builtin_sqrtf, double: __builtin_sqrt)(x)

/* splitmix64's finalizer (base/mix64.h, shared with the CUDA kernels). */
#define pf_builtin_mix64 pf_mix64

/* Dtype sets for pf_builtin_want_dtype. */
#define PF_BUILTIN_DT(dt) (1u << (unsigned)(dt))
#define PF_BUILTIN_FLOATS (PF_BUILTIN_DT(PF_F32) | PF_BUILTIN_DT(PF_F64))
#define PF_BUILTIN_INTS (PF_BUILTIN_DT(PF_I32) | PF_BUILTIN_DT(PF_I64))

/* Runs the statements given with T the C type of `dt`, f32 or f64 (the
 * shape functions refused every other dtype). One body for both precisions
 * keeps the float kernels from being written twice. */
#define PF_BUILTIN_FLOAT_SWITCH(dt, ...) \
  do {                                   \
    if ((dt) == PF_F32) {                \
      typedef float T;                   \
      __VA_ARGS__                        \
    } else if ((dt) == PF_F64) {         \
      typedef double T;                  \
      __VA_ARGS__                        \
    }                                    \
  } while (0)

/* One per builtin_*.c file. */
int pf_builtin_register_fill(pf_registry *reg);
int pf_builtin_register_elementwise(pf_registry *reg);
int pf_builtin_register_binary(pf_registry *reg);
int pf_builtin_register_optim(pf_registry *reg);
int pf_builtin_register_init(pf_registry *reg);
int pf_builtin_register_data(pf_registry *reg);
int pf_builtin_register_checkpoint(pf_registry *reg);
int pf_builtin_register_microbatch(pf_registry *reg);
int pf_builtin_register_pack(pf_registry *reg);
int pf_builtin_register_matmul(pf_registry *reg);
int pf_builtin_register_reduce(pf_registry *reg);
int pf_builtin_register_loss(pf_registry *reg);

/* Adds n definitions as CPU kernels; stops at the first error. */
int pf_builtin_add_all(pf_registry *reg, const pf_kernel_def *defs, size_t n);

/* Cost with `flops` and the bytes of every input and output. */
void pf_builtin_cost(int n_in, const pf_spec *in, int n_out, const pf_spec *out,
                     double flops, pf_cost *cost);
/* A pf_cost_fn: one flop per element of the first output. */
void pf_builtin_cost_numel(const pf_attrs *attrs, int n_in, const pf_spec *in,
                           int n_out, const pf_spec *out, pf_cost *cost);

/* PF_EDTYPE unless in[idx]'s dtype is in `allowed` (PF_BUILTIN_FLOATS, ...). */
int pf_builtin_want_dtype(const char *kernel, const pf_spec *in, int idx,
                          unsigned allowed, pf_diag *diag);
/* PF_ESHAPE unless in[idx] has rank `rank`. */
int pf_builtin_want_rank(const char *kernel, const pf_spec *in, int idx,
                         int rank, pf_diag *diag);
/* PF_EDTYPE unless in[idx] has in[0]'s dtype. */
int pf_builtin_want_same_dtype(const char *kernel, const pf_spec *in, int idx,
                               pf_diag *diag);
/* in[idx] must equal in[0]: PF_EDTYPE if the dtypes differ, else PF_ESHAPE
 * if the shapes do. */
int pf_builtin_want_same(const char *kernel, const pf_spec *in, int idx,
                         pf_diag *diag);
/* Every input in `allowed` and all equal to in[0] (elementwise kernels). */
int pf_builtin_want_all_same(const char *kernel, int n_in, const pf_spec *in,
                             unsigned allowed, pf_diag *diag);

/* Attribute readers. An attribute of the wrong type, or out of [lo, hi], is
 * PF_EINVAL naming it, rather than silently taking the default. */
int pf_builtin_int_attr(const char *kernel, const pf_attrs *attrs,
                        const char *name, int64_t dflt, int64_t lo, int64_t hi,
                        int64_t *out, pf_diag *diag);
int pf_builtin_float_attr(const char *kernel, const pf_attrs *attrs,
                          const char *name, double dflt, double *out,
                          pf_diag *diag);
/* An axis of `spec` (negative counts from the end), normalized to
 * [0, rank). */
int pf_builtin_axis_attr(const char *kernel, const pf_attrs *attrs,
                         const char *name, int64_t dflt, const pf_spec *spec,
                         int *axis, pf_diag *diag);

/* Views `spec` as [outer, len, inner] around `axis`. */
void pf_builtin_split_axis(const pf_spec *spec, int axis, int64_t *outer,
                           int64_t *len, int64_t *inner);

#endif
