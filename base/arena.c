#include "base/arena.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Chunks grow from 4 KiB to 1 MiB, so that a small plan or graph stays
 * small and a large one makes few chunks. */
#define CHUNK_MIN 4096
#define CHUNK_MAX (1u << 20)

struct pf_arena_chunk {
  pf_arena_chunk *next;
  size_t size;
  max_align_t data[];
};

void pf_arena_init(pf_arena *a) { memset(a, 0, sizeof *a); }

void *pf_arena_alloc(pf_arena *a, size_t n) {
  size_t need = (n + 7) & ~(size_t)7, size;
  pf_arena_chunk *c;
  if (need < n || need > SIZE_MAX - sizeof *c) return NULL;
  if (a->chunks != NULL && a->size - a->used >= need) {
    void *p = (char *)a->chunks->data + a->used;
    a->used += need;
    return p;
  }
  if (a->chunks != NULL && need > CHUNK_MAX / 4) {
    /* A big block gets a chunk of its own, behind the current one, which
     * keeps serving small blocks. */
    if ((c = malloc(sizeof *c + need)) == NULL) return NULL;
    c->size = need;
    c->next = a->chunks->next;
    a->chunks->next = c;
    return c->data;
  }
  size = a->chunks ? a->chunks->size * 2 : CHUNK_MIN;
  if (size > CHUNK_MAX) size = CHUNK_MAX;
  if (size < need) size = need;
  if ((c = malloc(sizeof *c + size)) == NULL) return NULL;
  c->size = size;
  c->next = a->chunks;
  a->chunks = c;
  a->size = size;
  a->used = need;
  return c->data;
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
    free(c);
  }
  pf_arena_init(a);
}
