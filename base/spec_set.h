/* Internal: a set of distinct specs, each kept once in an arena.
 *
 * A graph of a million programs has a million values and a plan as many
 * buffers, but few distinct specs among them (the Task Bench stencil: one).
 * A 72-byte spec inline in each record was most of it (a graph value was 96
 * bytes, 32 with a pointer); records point at the set's copy instead. */
#ifndef PF_BASE_SPEC_SET_H
#define PF_BASE_SPEC_SET_H

#include <stddef.h>

#include "base/arena.h"
#include "pathflow/types.h"

/* Open addressing, a power-of-two size, at most half full. Zeroed (or
 * pf_spec_set_init) is an empty set. */
typedef struct pf_spec_set {
  const pf_spec **slots;
  size_t n, cap;
  const pf_spec *last; /* the spec added last: runs of equal specs skip the hash */
} pf_spec_set;

void pf_spec_set_init(pf_spec_set *s);

/* The set's copy of x (compared by pf_spec_equal), made in `arena` when x
 * is new; valid as long as the arena. NULL when out of memory. The set
 * must always be given the same arena. */
const pf_spec *pf_spec_set_add(pf_spec_set *s, pf_arena *arena, const pf_spec *x);

/* Frees the set's table (the copies are the arena's). NULL: nothing. */
void pf_spec_set_free(pf_spec_set *s);

/* A hash of x's dtype, rank and dims (what pf_spec_equal compares). */
size_t pf_spec_hash(const pf_spec *x);

#endif
