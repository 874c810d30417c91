#include "runtime/storage.h"

#include <stdlib.h>

#include "base/util.h"

pf_storage *pf_storage_new(size_t nbytes, int device) {
  pf_storage *s = malloc(sizeof *s);
  if (s == NULL) return NULL;
  s->data = pf_aligned_alloc(nbytes);
  if (s->data == NULL) {
    free(s);
    return NULL;
  }
  atomic_init(&s->refs, 1);
  s->device = device;
  s->nbytes = nbytes;
  s->parent = NULL;
  return s;
}

pf_storage *pf_storage_view(pf_storage *parent, size_t offset, size_t nbytes) {
  pf_storage *s = malloc(sizeof *s);
  if (s == NULL) return NULL;
  atomic_init(&s->refs, 1);
  s->device = parent->device;
  s->nbytes = nbytes;
  s->data = (char *)parent->data + offset;
  s->parent = pf_storage_ref(parent);
  return s;
}

pf_storage *pf_storage_ref(pf_storage *s) {
  atomic_fetch_add_explicit(&s->refs, 1, memory_order_relaxed);
  return s;
}

void pf_storage_unref(pf_storage *s) {
  if (s == NULL) return;
  /* acq_rel: whoever frees must see every write made through other refs. */
  if (atomic_fetch_sub_explicit(&s->refs, 1, memory_order_acq_rel) == 1) {
    if (s->parent)
      pf_storage_unref(s->parent);
    else
      pf_aligned_free(s->data);
    free(s);
  }
}
