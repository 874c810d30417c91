/* pathflow: program attributes (kernel parameters).
 *
 * A pf_attrs is a small map from names to typed values: int64, double,
 * string, or a list of int64. Programs copy the attrs they are given, so the
 * caller keeps ownership of its pf_attrs and may destroy it right after
 * adding the program. Kernels read attrs through the getters; a getter that
 * finds no attribute of that name and type returns the default given.
 */
#ifndef PATHFLOW_ATTRS_H
#define PATHFLOW_ATTRS_H

#include "export.h"

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct pf_attrs pf_attrs;

#define PF_ATTR_NAME_MAX 63  /* longest attribute name, in bytes */
#define PF_ATTR_LIST_MAX 64  /* longest int list */

typedef enum pf_attr_type {
  PF_ATTR_INT = 0,
  PF_ATTR_FLOAT = 1,
  PF_ATTR_STRING = 2,
  PF_ATTR_INTS = 3
} pf_attr_type;

/* Creates an empty map. Errors: PF_EINVAL, PF_ENOMEM. */
PF_API int pf_attrs_create(pf_attrs **out);
/* Frees the map. NULL is a no-op. */
PF_API void pf_attrs_destroy(pf_attrs *a);
/* Deep copy. `src` may be NULL (gives an empty map). Errors: PF_ENOMEM. */
PF_API int pf_attrs_clone(const pf_attrs *src, pf_attrs **out);

/* Setters replace an existing attribute of the same name, whatever its type.
 * Errors: PF_EINVAL (NULL or empty name, name longer than PF_ATTR_NAME_MAX,
 * NULL string, list longer than PF_ATTR_LIST_MAX, non-finite float, or a set
 * pathflow shares between programs: one it hands out as const, such as
 * pf_grad_call's attrs), PF_ENOMEM. The string and list are copied. */
PF_API int pf_attrs_set_int(pf_attrs *a, const char *name, int64_t v);
PF_API int pf_attrs_set_float(pf_attrs *a, const char *name, double v);
PF_API int pf_attrs_set_string(pf_attrs *a, const char *name, const char *v);
PF_API int pf_attrs_set_ints(pf_attrs *a, const char *name, const int64_t *v,
                      int n);

/* Getters. `a` may be NULL (every attribute missing). An int attribute also
 * answers get_float; nothing else converts. */
PF_API int64_t pf_attrs_get_int(const pf_attrs *a, const char *name, int64_t dflt);
PF_API double pf_attrs_get_float(const pf_attrs *a, const char *name, double dflt);
/* The returned string lives as long as the map. */
PF_API const char *pf_attrs_get_string(const pf_attrs *a, const char *name,
                                const char *dflt);
/* Returns the list length and points *v at the values (owned by the map),
 * or -1 if there is no such list. */
PF_API int pf_attrs_get_ints(const pf_attrs *a, const char *name, const int64_t **v);
/* 1 if an attribute of this name exists (any type), else 0. */
PF_API int pf_attrs_has(const pf_attrs *a, const char *name);

/* Iteration, in name order: number of attributes and the i-th name/type. */
PF_API int pf_attrs_count(const pf_attrs *a);
PF_API const char *pf_attrs_name(const pf_attrs *a, int i);
PF_API pf_attr_type pf_attrs_type(const pf_attrs *a, int i);

/* 1 if both maps hold the same names, types and values. */
PF_API int pf_attrs_equal(const pf_attrs *a, const pf_attrs *b);

#ifdef __cplusplus
}
#endif
#endif
