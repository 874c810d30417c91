/* Internal: a bump allocator for many small blocks freed all at once.
 *
 * Graphs and plans of a million programs hold millions of short names and
 * index arrays; one malloc each costs time and 16-32 bytes of overhead, and
 * freeing them one by one costs as much again. An arena hands out pieces of
 * large chunks and frees the chunks together. */
#ifndef PF_BASE_ARENA_H
#define PF_BASE_ARENA_H

#include <stddef.h>

typedef struct pf_arena_chunk pf_arena_chunk;

/* Zero-initialized (or pf_arena_init) is an empty arena. */
typedef struct pf_arena {
  pf_arena_chunk *chunks; /* newest first */
  size_t used, size;      /* bytes used and available in the newest chunk */
  size_t ready;           /* bytes of it backed by pf_prefault */
} pf_arena;

void pf_arena_init(pf_arena *a);

/* n bytes aligned to 8, valid until pf_arena_free; uninitialized. NULL when
 * out of memory (n == 0 gives a valid pointer to no bytes). */
void *pf_arena_alloc(pf_arena *a, size_t n);

/* What pf_arena_alloc(a, n) takes of a chunk: n rounded up to 8 (0 when
 * that overflows). A caller sizing a pf_arena_reserve adds these up. */
static inline size_t pf_arena_size(size_t n) { return (n + 7) & ~(size_t)7; }

/* Makes the arena's next n bytes of small blocks (those it does not give a
 * chunk of their own) come from one new chunk, so that a caller who knows
 * roughly how much it will allocate can have that memory backed ahead on
 * another thread (base/warm.h): *at is where the blocks will start. Room
 * left in the current chunk is abandoned. n == 0: nothing (*at NULL).
 * Returns 0 or PF_ENOMEM (the arena is then unchanged). */
int pf_arena_reserve(pf_arena *a, size_t n, void **at);

/* A copy of n bytes of src in the arena; NULL when out of memory. */
void *pf_arena_dup(pf_arena *a, const void *src, size_t n);

/* A copy of string s in the arena; NULL when out of memory or s is NULL. */
char *pf_arena_strdup(pf_arena *a, const char *s);

/* Asks the system to back [p, p + n) with memory now, in one call rather
 * than a page fault per page (page faults were half of compiling a large
 * graph on a virtual machine). A hint: nothing happens where the system
 * does not support it. Only for memory the caller is about to write. */
void pf_prefault(void *p, size_t n);

/* Frees every block the arena handed out; the arena is empty again. */
void pf_arena_free(pf_arena *a);

#endif
