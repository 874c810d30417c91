/* Internal: the kernel registry, one per context.
 *
 * Lookups happen when graphs are built (shape functions) and when plans are
 * loaded (compute functions are resolved once per plan, never per op), so a
 * mutex is cheap enough and keeps plugin loading safe at any time.
 */
#ifndef PF_KERNELS_REGISTRY_H
#define PF_KERNELS_REGISTRY_H

#include "pathflow/kernel.h"

/* A registered kernel. Stable address for the registry's lifetime. */
typedef struct pf_kernel {
  pf_kernel_def def; /* def.name points at name[] */
  char name[PF_KERNEL_NAME_MAX + 1];
} pf_kernel;

int pf_registry_create(pf_registry **out);
void pf_registry_destroy(pf_registry *reg);

/* The kernel named `name` for `kind`, or NULL. */
const pf_kernel *pf_registry_find(pf_registry *reg, const char *name,
                                  pf_device_kind kind);

/* 1 if the name is a valid kernel name. */
int pf_kernel_name_valid(const char *name);

/* Registers every built-in CPU kernel (kernels/builtin_*.c). */
int pf_builtin_kernels_register(pf_registry *reg);

/* Cost when a kernel has no cost function: zero flops, inputs read and
 * outputs written once. */
void pf_default_cost(const pf_attrs *attrs, int n_in, const pf_spec *in,
                     int n_out, const pf_spec *out, pf_cost *cost);

#endif
