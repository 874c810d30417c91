/* Internal: device memory for one GPU, and pinned host staging buffers.
 *
 * The compiler's memory plan gives every executable one arena per device
 * and every buffer an offset in it. The pool allocates that arena once,
 * when the executable is first loaded, and hands out pointers by offset:
 * running a step never calls cudaMalloc. Arenas are keyed by the
 * executable's id and freed when it is unloaded.
 *
 * Staging buffers are page-locked host memory for host<->device copies
 * (feeds, fetches, transfers between ranks without CUDA-aware MPI): copies
 * from them run at full bus speed and asynchronously. They are kept in a
 * free list and reused.
 *
 * Thread-safe: the pool's calls may come from any thread. Allocating and
 * freeing arenas makes the pool's device the calling thread's current CUDA
 * device.
 */
#ifndef PF_CUDA_POOL_H
#define PF_CUDA_POOL_H

#include <stddef.h>
#include <stdint.h>

#include "pathflow/error.h"

/* Arena alignment: more than any CUDA access or cuBLAS needs. */
#define PF_CUDA_ARENA_ALIGN 256

typedef struct pf_cuda_pool pf_cuda_pool;

typedef struct pf_cuda_pool_stats {
  size_t arenas;           /* live arenas */
  size_t arena_bytes;      /* their total size */
  uint64_t device_allocs;  /* cudaMalloc calls so far */
  size_t staging_live;     /* staging buffers held by callers */
  size_t staging_free;     /* staging buffers kept for reuse */
  uint64_t host_allocs;    /* cudaHostAlloc calls so far */
} pf_cuda_pool_stats;

/* A pool for CUDA device `device`. *out is owned by the caller.
 * Errors: PF_ENOMEM, PF_ENOTFOUND (no such device). */
int pf_cuda_pool_create(int device, pf_cuda_pool **out, pf_diag *diag);

/* Frees every arena and staging buffer (including ones still held: call it
 * when no stream uses them). NULL is ignored. */
void pf_cuda_pool_destroy(pf_cuda_pool *pool);

/* The arena of executable `exec_id`, of `size` bytes: allocated on the
 * first call for that id, returned as is on later ones. *base is device
 * memory aligned to PF_CUDA_ARENA_ALIGN (NULL when size is 0).
 * Errors: PF_EINVAL (the id has an arena of another size), PF_ENOMEM
 * (the device has no room: the message gives the size and the free
 * memory), PF_ESYS. */
int pf_cuda_pool_arena(pf_cuda_pool *pool, uint64_t exec_id, size_t size,
                       void **base, pf_diag *diag);

/* A buffer of an arena: base + offset, after checking that
 * [offset, offset + nbytes) lies in the arena. Errors: PF_ENOTFOUND (no
 * arena for the id), PF_ERANGE (outside it; the message says by how
 * much). */
int pf_cuda_pool_at(pf_cuda_pool *pool, uint64_t exec_id, size_t offset,
                    size_t nbytes, void **ptr, pf_diag *diag);

/* Frees the arena of `exec_id` (its executable is unloaded and none of its
 * work is queued). PF_ENOTFOUND when it has none. */
int pf_cuda_pool_release(pf_cuda_pool *pool, uint64_t exec_id, pf_diag *diag);

/* A pinned host buffer of at least `size` bytes, reused from the free
 * list when one is large enough. Give it back with pf_cuda_staging_put.
 * Errors: PF_ENOMEM. */
int pf_cuda_staging_get(pf_cuda_pool *pool, size_t size, void **host,
                        pf_diag *diag);

/* Returns a buffer from pf_cuda_staging_get to the free list. PF_EINVAL
 * when it did not come from this pool or was already returned. */
int pf_cuda_staging_put(pf_cuda_pool *pool, void *host, pf_diag *diag);

/* Current counters. */
void pf_cuda_pool_stats_get(pf_cuda_pool *pool, pf_cuda_pool_stats *out);

#endif
