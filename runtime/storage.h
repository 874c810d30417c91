/* Internal: reference-counted device memory.
 *
 * Every buffer a step reads or writes is a pf_storage. A step holds one
 * reference per live buffer; a persistent buffer (pf_buffer_t) holds one
 * more, so feeding it to later steps shares the memory with no copy. The
 * last unref frees the memory, on whichever thread drops it.
 */
#ifndef PF_RUNTIME_STORAGE_H
#define PF_RUNTIME_STORAGE_H

#include <stdatomic.h>
#include <stddef.h>

typedef struct pf_storage {
  atomic_int refs;
  int device;
  size_t nbytes;
  void *data; /* 64-byte aligned, nbytes (at least 1) */
} pf_storage;

/* New storage with one reference, uninitialized. NULL when out of memory. */
pf_storage *pf_storage_new(size_t nbytes, int device);
pf_storage *pf_storage_ref(pf_storage *s);
/* NULL is a no-op. */
void pf_storage_unref(pf_storage *s);

#endif
