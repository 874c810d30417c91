#include "base/pages.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "base/util.h"

#define PAGE ((size_t)4096)
#define HUGE ((size_t)2 << 20)
/* Regions are this much address space each; a block of more than a
 * quarter of one gets a mapping of its own. */
#define REGION ((size_t)64 << 20)
#define HUGE_PER_REGION (REGION / HUGE)
#define BIG (REGION / 4)
/* Empty regions kept for later blocks (their memory is given back: they
 * hold only address space). */
#define SPARE_MAX 4

#if defined(__SANITIZE_ADDRESS__)
#define PAGES_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define PAGES_SANITIZED 1
#endif
#endif
#ifndef PAGES_SANITIZED
#define PAGES_SANITIZED 0
#endif

typedef struct region {
  char *base;
  size_t bump;  /* bytes handed out from base, front to back */
  size_t live;  /* bytes of blocks not yet freed */
  uint32_t live_in[HUGE_PER_REGION]; /* the same, per 2 MiB page */
} region;

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static region **regions; /* sorted by base */
static size_t n_regions, cap_regions;
static region *current;  /* the one blocks are carved from */
static atomic_int enabled = -1;

static int huge_enabled(void) {
  int e = atomic_load_explicit(&enabled, memory_order_relaxed);
  if (e < 0) {
    const char *s = getenv("PATHFLOW_HUGE_PAGES");
    e = !PAGES_SANITIZED && !(s != NULL && strcmp(s, "0") == 0);
    atomic_store_explicit(&enabled, e, memory_order_relaxed);
  }
  return e;
}

static size_t round_up(size_t n, size_t to) { return (n + to - 1) & ~(to - 1); }

/* n bytes of address space starting on a 2 MiB boundary, marked for huge
 * pages; NULL when out of memory. */
static char *map_aligned(size_t n) {
  char *m = mmap(NULL, n + HUGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  char *a;
  if (m == MAP_FAILED) return NULL;
  a = (char *)round_up((uintptr_t)m, HUGE);
  if (a > m) munmap(m, (size_t)(a - m));
  if (m + n + HUGE > a + n) munmap(a + n, (size_t)(m + n + HUGE - (a + n)));
  (void)madvise(a, n, MADV_HUGEPAGE);
  return a;
}

/* The region holding p, or NULL. Under the lock. */
static region *region_of(const char *p) {
  size_t lo = 0, hi = n_regions;
  while (lo < hi) {
    size_t mid = (lo + hi) / 2;
    if (p < regions[mid]->base)
      hi = mid;
    else if (p >= regions[mid]->base + REGION)
      lo = mid + 1;
    else
      return regions[mid];
  }
  return NULL;
}

/* An empty region to carve from: a spare one, or a new one. Under the
 * lock. */
static region *region_get(void) {
  region *r;
  size_t at;
  for (size_t i = 0; i < n_regions; i++)
    if (regions[i]->live == 0 && regions[i] != current) {
      regions[i]->bump = 0;
      return regions[i];
    }
  if (pf_grow((void **)&regions, &cap_regions, n_regions + 1, sizeof *regions) ||
      (r = calloc(1, sizeof *r)) == NULL)
    return NULL;
  if ((r->base = map_aligned(REGION)) == NULL) {
    free(r);
    return NULL;
  }
  for (at = n_regions; at > 0 && regions[at - 1]->base > r->base; at--)
    regions[at] = regions[at - 1];
  regions[at] = r;
  n_regions++;
  return r;
}

/* Adds (add) or removes the bytes [off, off + n) to or from the live
 * counts of r's 2 MiB pages; a page left with none, and wholly handed out,
 * goes back to the system. Under the lock. */
static void count_live(region *r, size_t off, size_t n, int add) {
  for (size_t k = off / HUGE; k * HUGE < off + n; k++) {
    size_t lo = PF_MAXOF(off, k * HUGE), hi = PF_MINOF(off + n, (k + 1) * HUGE);
    if (add) {
      r->live_in[k] += (uint32_t)(hi - lo);
    } else {
      r->live_in[k] -= (uint32_t)(hi - lo);
      if (r->live_in[k] == 0 && (k + 1) * HUGE <= r->bump)
        (void)madvise(r->base + k * HUGE, HUGE, MADV_DONTNEED);
    }
  }
}

/* An empty region beyond the SPARE_MAX kept goes back whole; a kept one
 * gives back the page its bump pointer was in (the others went as they
 * emptied). Under the lock. */
static void region_emptied(region *r) {
  size_t spares = 0, at;
  for (size_t i = 0; i < n_regions; i++) spares += regions[i]->live == 0;
  if (r == current) current = NULL;
  if (spares <= SPARE_MAX) {
    size_t k = r->bump / HUGE;
    if (r->bump % HUGE != 0) (void)madvise(r->base + k * HUGE, HUGE, MADV_DONTNEED);
    r->bump = 0;
    return;
  }
  for (at = 0; regions[at] != r; at++) {
  }
  memmove(regions + at, regions + at + 1, (n_regions - at - 1) * sizeof *regions);
  n_regions--;
  munmap(r->base, REGION);
  free(r);
}

void *pf_pages_alloc(size_t n) {
  char *p;
  n = round_up(n ? n : 1, PAGE);
  if (!huge_enabled()) {
    p = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    return p == MAP_FAILED ? NULL : p;
  }
  if (n > BIG) return map_aligned(round_up(n, HUGE));
  pthread_mutex_lock(&lock);
  if (current == NULL || REGION - current->bump < n) current = region_get();
  if (current == NULL) {
    pthread_mutex_unlock(&lock);
    return NULL;
  }
  p = current->base + current->bump;
  count_live(current, current->bump, n, 1);
  current->bump += n;
  current->live += n;
  pthread_mutex_unlock(&lock);
  return p;
}

void pf_pages_free(void *p, size_t n) {
  region *r;
  if (p == NULL) return;
  n = round_up(n ? n : 1, PAGE);
  if (!huge_enabled() || n > BIG) { /* a mapping of its own (pf_pages_alloc) */
    munmap(p, huge_enabled() ? round_up(n, HUGE) : n);
    return;
  }
  pthread_mutex_lock(&lock);
  r = region_of(p);
  if (r != NULL) {
    count_live(r, (size_t)((char *)p - r->base), n, 0);
    if ((r->live -= n) == 0) region_emptied(r);
  }
  pthread_mutex_unlock(&lock);
}

int pf_pages_huge(void) { return huge_enabled(); }

void *pf_pages_malloc(size_t n) {
  void *p = NULL;
  size_t whole;
  if (n < PF_PAGES_HUGE_MIN || !huge_enabled())
    return posix_memalign(&p, 64, n ? n : 1) == 0 ? p : NULL;
  if ((whole = round_up(n, HUGE)) < n || posix_memalign(&p, HUGE, whole) != 0) return NULL;
  (void)madvise(p, whole, MADV_HUGEPAGE);
  return p;
}
