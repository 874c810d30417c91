/* Internal: attribute sets shared between many programs and ops. */
#ifndef PF_BASE_ATTRS_INTERNAL_H
#define PF_BASE_ATTRS_INTERNAL_H

#include "pathflow/attrs.h"

/* A set equal to src (NULL: empty) for the caller to keep and later pass to
 * pf_attrs_destroy, like a clone. An empty src gives one shared empty set
 * instead of a new one (a million programs without attributes need no
 * million allocations): pf_attrs_destroy leaves it alone and the setters
 * refuse to change it (PF_EINVAL), so treat the result as read-only.
 * Errors: PF_ENOMEM. */
int pf_attrs_share(const pf_attrs *src, pf_attrs **out);

#endif
