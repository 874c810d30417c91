#include "base/spec_set.h"

#include <stdint.h>
#include <stdlib.h>

void pf_spec_set_init(pf_spec_set *s) {
  s->slots = NULL;
  s->n = s->cap = 0;
  s->last = NULL;
}

size_t pf_spec_hash(const pf_spec *x) {
  uint64_t h = 1469598103934665603ull ^ ((uint64_t)x->dtype << 8 | (uint64_t)(uint8_t)x->rank);
  for (int i = 0; i < x->rank && i < PF_MAX_RANK; i++)
    h = (h ^ (uint64_t)x->dims[i]) * 1099511628211ull;
  return (size_t)(h ^ (h >> 29));
}

/* Doubles the table. Returns 0 or -1 (out of memory: the set unchanged). */
static int grow(pf_spec_set *s) {
  size_t cap = s->cap ? s->cap * 2 : 16;
  const pf_spec **slots = calloc(cap, sizeof *slots);
  if (slots == NULL) return -1;
  for (size_t k = 0; k < s->cap; k++) {
    size_t i;
    if (s->slots[k] == NULL) continue;
    for (i = pf_spec_hash(s->slots[k]) & (cap - 1); slots[i]; i = (i + 1) & (cap - 1)) {
    }
    slots[i] = s->slots[k];
  }
  free(s->slots);
  s->slots = slots;
  s->cap = cap;
  return 0;
}

const pf_spec *pf_spec_set_add(pf_spec_set *s, pf_arena *arena, const pf_spec *x) {
  pf_spec *copy;
  size_t i;
  if (s->last != NULL && pf_spec_equal(s->last, x)) return s->last;
  if ((s->n + 1) * 2 > s->cap && grow(s) != 0) return NULL;
  for (i = pf_spec_hash(x) & (s->cap - 1); s->slots[i]; i = (i + 1) & (s->cap - 1))
    if (pf_spec_equal(s->slots[i], x)) return s->last = s->slots[i];
  if ((copy = pf_arena_alloc(arena, sizeof *copy)) == NULL) return NULL;
  *copy = *x;
  s->slots[i] = copy;
  s->n++;
  return s->last = copy;
}

void pf_spec_set_free(pf_spec_set *s) {
  if (s == NULL) return;
  free(s->slots);
  pf_spec_set_init(s);
}
