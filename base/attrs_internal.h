/* Internal: attribute sets shared between many programs and ops. */
#ifndef PF_BASE_ATTRS_INTERNAL_H
#define PF_BASE_ATTRS_INTERNAL_H

#include <stdint.h>

#include "pathflow/attrs.h"

/* A set equal to src (NULL: empty) for the caller to keep and later pass to
 * pf_attrs_destroy, like a clone. An empty src gives one shared empty set
 * instead of a new one (a million programs without attributes need no
 * million allocations): pf_attrs_destroy leaves it alone and the setters
 * refuse to change it (PF_EINVAL), so treat the result as read-only.
 * Errors: PF_ENOMEM. */
int pf_attrs_share(const pf_attrs *src, pf_attrs **out);

/* Another owner of a set that nobody changes any more (one a graph or a
 * plan owns): returns a itself, which pf_attrs_destroy frees when its last
 * owner lets go; the setters refuse a set with several owners (PF_EINVAL).
 * NULL and the shared empty set come back unchanged. Never fails. The
 * count is atomic: a plan may be freed on another thread than its graph. */
pf_attrs *pf_attrs_ref(const pf_attrs *a);

/* 1 if a and b hold the same attributes, floats compared bit for bit
 * (pf_attrs_equal says 0.0 == -0.0; a set shared in place of another
 * must not change what a kernel reads). */
int pf_attrs_identical(const pf_attrs *a, const pf_attrs *b);

/* A hash of what a holds, equal for sets that pf_attrs_identical finds
 * the same (floats by their bits). */
uint64_t pf_attrs_hash(const pf_attrs *a);

#endif
