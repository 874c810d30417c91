/* Releases held per rank: a growing array of ids each, and the time the
 * oldest was held (one for all ranks: they are sent together when due). */
#include "runtime/release_hold.h"

#include <stdlib.h>

#include "base/util.h"
#include "pathflow/error.h"

/* Ids held for one rank before they go on their own: a bound on the
 * message (a loop that releases without running anything). */
#define HOLD_MAX 1024

typedef struct held {
  uint64_t *ids;
  size_t n, cap;
} held;

struct pf_release_hold {
  held *ranks;
  int size, holding; /* ranks with ids held */
  uint64_t since;    /* when the first of them was held */
};

int pf_release_hold_create(int size, pf_release_hold **out) {
  pf_release_hold *h = calloc(1, sizeof *h);
  if (h == NULL || (h->ranks = pf_calloc((size_t)size, sizeof *h->ranks)) == NULL) {
    free(h);
    return PF_ENOMEM;
  }
  h->size = size;
  *out = h;
  return 0;
}

void pf_release_hold_destroy(pf_release_hold *h) {
  if (h == NULL) return;
  for (int r = 0; r < h->size; r++) free(h->ranks[r].ids);
  free(h->ranks);
  free(h);
}

int pf_release_hold_add(pf_release_hold *h, int rank, pf_msg *m, uint64_t now) {
  held *k = &h->ranks[rank];
  if (m->n_ids == 0) {
    pf_msg_free(m);
    return 0;
  }
  if (pf_grow((void **)&k->ids, &k->cap, k->n + m->n_ids, sizeof *k->ids) != 0) return PF_ENOMEM;
  if (k->n == 0 && h->holding++ == 0) h->since = now;
  for (uint32_t i = 0; i < m->n_ids; i++) k->ids[k->n++] = m->ids[i];
  pf_msg_free(m);
  return k->n >= HOLD_MAX;
}

int pf_release_hold_has(const pf_release_hold *h, int rank) { return h->ranks[rank].n > 0; }

/* Moves k's ids onto m (the array goes with them: the next hold starts
 * a new one). */
static void give(pf_release_hold *h, held *k, pf_msg *m) {
  m->ids = k->ids;
  m->n_ids = (uint32_t)k->n;
  k->ids = NULL;
  k->n = k->cap = 0;
  h->holding--;
}

pf_msg *pf_release_hold_take(pf_release_hold *h, int rank) {
  held *k = &h->ranks[rank];
  pf_msg *m;
  if (k->n == 0 || (m = pf_msg_new(PF_MSG_RELEASE)) == NULL) return NULL;
  /* The message takes the array; the next hold starts a new one. */
  give(h, k, m);
  return m;
}

void pf_release_hold_attach(pf_release_hold *h, int rank, pf_msg *m) {
  held *k = &h->ranks[rank];
  if (k->n == 0 || m->ids != NULL) return;
  give(h, k, m);
}

int pf_release_hold_due(const pf_release_hold *h, uint64_t now, uint64_t max_ns) {
  return h->holding > 0 && now - h->since >= max_ns;
}
