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
  struct pf_storage *parent; /* a view into parent's memory, or NULL */
  int pooled; /* small: 1 + its size class (one block with its data, back
               * to that class's free list); 0 otherwise */
  /* 1: data is device memory the host cannot address (a GPU's); set by
   * pf_storage_wrap, inherited by views. The service copies such storage
   * to the host before a fetch sends it (pf_executor_to_host). Beside
   * pooled: the struct stays 56 bytes. */
  int on_device;
  /* Memory a device owns (a GPU's): the last unref calls release, which
   * frees data and the struct itself, instead of the host's free. NULL for
   * host memory: the CPU path pays one test, on the last unref only. */
  void (*release)(struct pf_storage *s);
  void *owner; /* release's own: the device the memory came from */
} pf_storage;

/* New storage with one reference, uninitialized. NULL when out of memory. */
pf_storage *pf_storage_new(size_t nbytes, int device);
/* A view of `nbytes` at `offset` in `parent` (which it keeps alive): how a
 * buffer placed by the memory plan lives in its step's arena. NULL when out
 * of memory. */
pf_storage *pf_storage_view(pf_storage *parent, size_t offset, size_t nbytes);
/* Storage with one reference for memory a device allocated (data: nbytes
 * of device memory, never touched by the host here; on_device is 1: a
 * device wrapping host memory of its own, such as pinned staging buffers,
 * sets it to 0): the last unref calls release(s), which must free data and
 * the struct (malloc'd here; free(s)).
 * NULL when out of memory (data is then not released). */
pf_storage *pf_storage_wrap(void *data, size_t nbytes, int device,
                            void (*release)(pf_storage *s), void *owner);
pf_storage *pf_storage_ref(pf_storage *s);
/* NULL is a no-op. */
void pf_storage_unref(pf_storage *s);

/* Frees the blocks kept for reuse (large blocks of freed storages are kept,
 * up to PATHFLOW_CACHE_BYTES, default 256 MiB). Called at finalize. */
void pf_storage_cache_clear(void);
/* Bytes kept for reuse now (0 under AddressSanitizer, which keeps none). */
size_t pf_storage_cache_bytes(void);

#endif
