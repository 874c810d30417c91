#include "base/arena.h"

#include "base/pages.h"
#include "base/util.h"
#include "pathflow/error.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

/* Chunks grow from 4 KiB to 256 KiB, so that a small plan or graph stays
 * small and a large one makes few chunks. Chunks from MAPPED up are whole
 * pages (base/pages.h: on huge pages, shared with other arenas): freeing
 * them gives the memory back to the system at once (malloc would keep it,
 * and the next compile of a large graph would grow the process again
 * around what it keeps), and what is reserved but never written costs no
 * memory. */
#define CHUNK_MIN 4096
#define CHUNK_MAX (256u << 10)
#define MAPPED (64u << 10)
#define PREFAULT (64u << 10)

struct pf_arena_chunk {
  pf_arena_chunk *next;
  size_t size;   /* bytes of data */
  size_t mapped; /* 0: malloc'd, else the length of the mapping */
  max_align_t data[];
};

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23 /* Linux 5.14 */
#endif

void pf_prefault(void *p, size_t n) {
  uintptr_t lo = (uintptr_t)p & ~(uintptr_t)4095, hi = ((uintptr_t)p + n) & ~(uintptr_t)4095;
  if (hi > lo) (void)madvise((void *)lo, hi - lo, MADV_POPULATE_WRITE);
}

/* A chunk of `size` bytes of data. */
static pf_arena_chunk *chunk_new(size_t size) {
  pf_arena_chunk *c;
  size_t total;
  /* Half the address space at most: beyond, no allocation can succeed, and
   * the bound keeps total from wrapping where the compiler can see it. */
  if (size > SIZE_MAX / 2) return NULL;
  total = sizeof *c + size;
  if (total >= MAPPED) {
    total = (total + 4095) & ~(size_t)4095;
    if ((c = pf_pages_alloc(total)) == NULL) return NULL;
    c->mapped = total;
  } else {
    if ((c = malloc(total)) == NULL) return NULL;
    c->mapped = 0;
  }
  c->size = size;
  return c;
}

static void chunk_free(pf_arena_chunk *c) {
  if (c->mapped)
    pf_pages_free(c, c->mapped);
  else
    free(c);
}

void pf_arena_init(pf_arena *a) { memset(a, 0, sizeof *a); }

void *pf_arena_alloc(pf_arena *a, size_t n) {
  size_t need = pf_arena_size(n), size;
  pf_arena_chunk *c;
  if (need < n) return NULL;
  if (a->chunks != NULL && a->size - a->used >= need) {
    void *p = (char *)a->chunks->data + a->used;
    a->used += need;
    if (a->used > a->ready) {
      /* A mapped chunk is filled front to back: back the next stretch of
       * it with memory in one call. */
      size_t upto = PF_MINOF(a->size, a->used + PREFAULT);
      if (a->chunks->mapped) pf_prefault((char *)a->chunks->data + a->ready, upto - a->ready);
      a->ready = upto;
    }
    return p;
  }
  if (a->chunks != NULL && need > CHUNK_MAX / 4) {
    /* A big block gets a chunk of its own, behind the current one, which
     * keeps serving small blocks. */
    if ((c = chunk_new(need)) == NULL) return NULL;
    c->next = a->chunks->next;
    a->chunks->next = c;
    return c->data;
  }
  size = a->chunks ? a->chunks->size * 2 : CHUNK_MIN;
  if (size > CHUNK_MAX) size = CHUNK_MAX;
  if (size < need) size = need;
  if ((c = chunk_new(size)) == NULL) return NULL;
  c->next = a->chunks;
  a->chunks = c;
  a->size = size;
  a->used = need;
  a->ready = 0;
  return c->data;
}

int pf_arena_reserve(pf_arena *a, size_t n, void **at) {
  pf_arena_chunk *c;
  *at = NULL;
  if (n == 0) return 0;
  n = pf_arena_size(n);
  if (n < 8 || (c = chunk_new(n)) == NULL) return PF_ENOMEM;
  c->next = a->chunks;
  a->chunks = c;
  a->size = n;
  a->used = 0;
  a->ready = 0;
  *at = c->data;
  return 0;
}

void *pf_arena_dup(pf_arena *a, const void *src, size_t n) {
  void *p = pf_arena_alloc(a, n);
  if (p != NULL && n > 0) memcpy(p, src, n);
  return p;
}

char *pf_arena_strdup(pf_arena *a, const char *s) {
  return s ? pf_arena_dup(a, s, strlen(s) + 1) : NULL;
}

void pf_arena_free(pf_arena *a) {
  for (pf_arena_chunk *c = a->chunks, *next; c; c = next) {
    next = c->next;
    chunk_free(c);
  }
  pf_arena_init(a);
}
