/* Device arenas by executable and pinned staging buffers (see cuda/pool.h). */
#include "cuda/pool.h"

#include <pthread.h>
#include <stdlib.h>

#include <cuda_runtime_api.h>

#include "base/util.h"
#include "cuda/error.h"

typedef struct arena {
  uint64_t exec_id;
  void *base;
  size_t size;
} arena;

typedef struct staging {
  void *host;
  size_t size;
  int held; /* 1 while a caller has it */
} staging;

struct pf_cuda_pool {
  int device;
  pthread_mutex_t mu;
  arena *arenas;
  size_t n_arenas, cap_arenas;
  staging *bufs;
  size_t n_bufs, cap_bufs;
  uint64_t device_allocs, host_allocs;
};

int pf_cuda_pool_create(int device, pf_cuda_pool **out, pf_diag *diag) {
  int count = 0, rc;
  pf_cuda_pool *p;
  if ((rc = pf_cuda_error(diag, cudaGetDeviceCount(&count),
                          "cuda pool: cudaGetDeviceCount")) != 0)
    return rc;
  if (device < 0 || device >= count)
    return pf_diag_error(diag, PF_ENOTFOUND,
                         "cuda pool: device %d does not exist (%d visible)",
                         device, count);
  if ((p = pf_calloc(1, sizeof *p)) == NULL)
    return pf_diag_error(diag, PF_ENOMEM, "cuda pool: out of memory");
  p->device = device;
  pthread_mutex_init(&p->mu, NULL);
  *out = p;
  return 0;
}

void pf_cuda_pool_destroy(pf_cuda_pool *pool) {
  if (pool == NULL) return;
  if (cudaSetDevice(pool->device) == cudaSuccess) {
    for (size_t i = 0; i < pool->n_arenas; i++)
      if (pool->arenas[i].base) (void)cudaFree(pool->arenas[i].base);
    for (size_t i = 0; i < pool->n_bufs; i++)
      (void)cudaFreeHost(pool->bufs[i].host);
  }
  free(pool->arenas);
  free(pool->bufs);
  pthread_mutex_destroy(&pool->mu);
  free(pool);
}

static arena *find_arena(pf_cuda_pool *pool, uint64_t exec_id) {
  for (size_t i = 0; i < pool->n_arenas; i++)
    if (pool->arenas[i].exec_id == exec_id) return &pool->arenas[i];
  return NULL;
}

/* Called with the lock held. */
static int new_arena(pf_cuda_pool *pool, uint64_t exec_id, size_t size,
                     void **base, pf_diag *diag) {
  void *mem = NULL;
  cudaError_t err;
  if (pf_grow((void **)&pool->arenas, &pool->cap_arenas, pool->n_arenas + 1,
              sizeof *pool->arenas) != 0)
    return pf_diag_error(diag, PF_ENOMEM, "cuda pool: out of memory");
  if (size > 0) {
    if ((err = cudaSetDevice(pool->device)) != cudaSuccess)
      return pf_cuda_error(diag, err, "cuda pool: cudaSetDevice");
    err = cudaMalloc(&mem, size); /* 256-byte aligned at least */
    pool->device_allocs++;
    if (err == cudaErrorMemoryAllocation) {
      size_t free_b = 0, total_b = 0;
      (void)cudaGetLastError(); /* clear it */
      (void)cudaMemGetInfo(&free_b, &total_b);
      return pf_diag_error(diag, PF_ENOMEM,
                           "cuda pool: device %d cannot hold the arena of "
                           "executable %llu: %zu bytes asked, %zu free of %zu",
                           pool->device, (unsigned long long)exec_id, size,
                           free_b, total_b);
    }
    if (err != cudaSuccess)
      return pf_cuda_error(diag, err, "cuda pool: cudaMalloc");
  }
  pool->arenas[pool->n_arenas++] = (arena){exec_id, mem, size};
  *base = mem;
  return 0;
}

int pf_cuda_pool_arena(pf_cuda_pool *pool, uint64_t exec_id, size_t size,
                       void **base, pf_diag *diag) {
  arena *a;
  int rc = 0;
  pthread_mutex_lock(&pool->mu);
  if ((a = find_arena(pool, exec_id)) != NULL) {
    if (a->size != size)
      rc = pf_diag_error(diag, PF_EINVAL,
                         "cuda pool: executable %llu has an arena of %zu "
                         "bytes; asked for %zu",
                         (unsigned long long)exec_id, a->size, size);
    else
      *base = a->base;
  } else {
    rc = new_arena(pool, exec_id, size, base, diag);
  }
  pthread_mutex_unlock(&pool->mu);
  return rc;
}

int pf_cuda_pool_at(pf_cuda_pool *pool, uint64_t exec_id, size_t offset,
                    size_t nbytes, void **ptr, pf_diag *diag) {
  arena *a;
  int rc = 0;
  pthread_mutex_lock(&pool->mu);
  if ((a = find_arena(pool, exec_id)) == NULL)
    rc = pf_diag_error(diag, PF_ENOTFOUND,
                       "cuda pool: executable %llu has no arena on device %d",
                       (unsigned long long)exec_id, pool->device);
  else if (offset > a->size || nbytes > a->size - offset)
    rc = pf_diag_error(diag, PF_ERANGE,
                       "cuda pool: bytes [%zu, %zu) lie outside the %zu-byte "
                       "arena of executable %llu",
                       offset, offset + nbytes, a->size,
                       (unsigned long long)exec_id);
  else
    *ptr = (char *)a->base + offset;
  pthread_mutex_unlock(&pool->mu);
  return rc;
}

int pf_cuda_pool_release(pf_cuda_pool *pool, uint64_t exec_id, pf_diag *diag) {
  arena *a;
  int rc = 0;
  pthread_mutex_lock(&pool->mu);
  if ((a = find_arena(pool, exec_id)) == NULL) {
    rc = pf_diag_error(diag, PF_ENOTFOUND,
                       "cuda pool: executable %llu has no arena on device %d",
                       (unsigned long long)exec_id, pool->device);
  } else {
    if (a->base != NULL && cudaSetDevice(pool->device) == cudaSuccess)
      rc = pf_cuda_error(diag, cudaFree(a->base), "cuda pool: cudaFree");
    *a = pool->arenas[--pool->n_arenas];
  }
  pthread_mutex_unlock(&pool->mu);
  return rc;
}

int pf_cuda_staging_get(pf_cuda_pool *pool, size_t size, void **host,
                        pf_diag *diag) {
  staging *best = NULL;
  void *mem = NULL;
  cudaError_t err;
  int rc = 0;
  if (size == 0) size = 1;
  pthread_mutex_lock(&pool->mu);
  /* The smallest free buffer that fits, so big ones stay for big copies. */
  for (size_t i = 0; i < pool->n_bufs; i++) {
    staging *b = &pool->bufs[i];
    if (!b->held && b->size >= size && (best == NULL || b->size < best->size))
      best = b;
  }
  if (best != NULL) {
    best->held = 1;
    *host = best->host;
  } else if (pf_grow((void **)&pool->bufs, &pool->cap_bufs, pool->n_bufs + 1,
                     sizeof *pool->bufs) != 0) {
    rc = pf_diag_error(diag, PF_ENOMEM, "cuda staging: out of memory");
  } else if ((err = cudaHostAlloc(&mem, size, cudaHostAllocPortable)) !=
             cudaSuccess) {
    rc = pf_cuda_error(diag, err, "cuda staging: cudaHostAlloc");
  } else {
    pool->host_allocs++;
    pool->bufs[pool->n_bufs++] = (staging){mem, size, 1};
    *host = mem;
  }
  pthread_mutex_unlock(&pool->mu);
  return rc;
}

int pf_cuda_staging_put(pf_cuda_pool *pool, void *host, pf_diag *diag) {
  int rc = PF_EINVAL;
  pthread_mutex_lock(&pool->mu);
  for (size_t i = 0; i < pool->n_bufs; i++)
    if (pool->bufs[i].host == host && pool->bufs[i].held) {
      pool->bufs[i].held = 0;
      rc = 0;
      break;
    }
  pthread_mutex_unlock(&pool->mu);
  if (rc != 0)
    return pf_diag_error(diag, rc,
                         "cuda staging: %p is not a buffer this pool lent",
                         host);
  return 0;
}

void pf_cuda_pool_stats_get(pf_cuda_pool *pool, pf_cuda_pool_stats *out) {
  pf_cuda_pool_stats s = {0};
  pthread_mutex_lock(&pool->mu);
  s.arenas = pool->n_arenas;
  for (size_t i = 0; i < pool->n_arenas; i++)
    s.arena_bytes += pool->arenas[i].size;
  s.device_allocs = pool->device_allocs;
  for (size_t i = 0; i < pool->n_bufs; i++) {
    if (pool->bufs[i].held)
      s.staging_live++;
    else
      s.staging_free++;
  }
  s.host_allocs = pool->host_allocs;
  pthread_mutex_unlock(&pool->mu);
  *out = s;
}
