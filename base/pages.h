/* Internal: large blocks of memory on huge pages.
 *
 * Compiling a graph of a million programs writes about half a gigabyte of
 * fresh memory (plans, layouts, the graph itself). On a virtual machine the
 * first write to each 4 KiB page traps to the hypervisor: 12-13 us a page
 * on the KVM guests this project is measured on, so that most of a large
 * compile was page faults and not work. A 2 MiB transparent huge page is
 * faulted in at once (0.25 us per 4 KiB of it once the guest has huge
 * pages), and it also spares TLB misses on bare metal.
 *
 * Two tools:
 * - pf_pages_alloc / pf_pages_free: blocks of whole pages for arenas,
 *   carved from shared 2 MiB-aligned regions marked for huge pages (the
 *   arenas of a compile, one plan per rank, are a megabyte or two each: too
 *   small to get a huge page of their own). A 2 MiB page whose blocks are
 *   all freed goes back to the system at once.
 * - pf_pages_malloc: a large block for free() (the graph's arrays, grown
 *   by realloc; a loaded plan's per-op arrays), on whole huge pages.
 *
 * `PATHFLOW_HUGE_PAGES=0` turns both off (each block its own mapping,
 * nothing marked; base/warm.h's warmer stays off too), for comparing or
 * where huge pages misbehave. Under
 * AddressSanitizer they are off too: a block reused within a region would
 * hide a use after free that an unmapped block turns into a crash. */
#ifndef PF_BASE_PAGES_H
#define PF_BASE_PAGES_H

#include <stddef.h>

/* Blocks of this size and more are on huge pages (pf_pages_malloc): the smallest
 * that always holds a whole 2 MiB page, wherever malloc put it (a plan of a
 * million ops has dozens of per-op arrays of 4-6 MiB). */
#define PF_PAGES_HUGE_MIN ((size_t)4 << 20)

/* A block of n bytes (rounded up to whole 4 KiB pages), page-aligned,
 * uninitialized, and mostly not yet backed by memory: pages are faulted in
 * as they are written (or by pf_prefault). NULL when out of memory. Free
 * it with pf_pages_free and the same n. Thread-safe. */
void *pf_pages_alloc(size_t n);

/* Frees a block of pf_pages_alloc (p == NULL: nothing). */
void pf_pages_free(void *p, size_t n);

/* 1 if the blocks above are on huge pages (not turned off). */
int pf_pages_huge(void);

/* A block of n bytes for malloc's free() and realloc(), aligned to 64
 * bytes, uninitialized; NULL when out of memory. From PF_PAGES_HUGE_MIN up
 * it is whole 2 MiB pages marked for huge pages (n rounded up: the block's
 * first and last pages too; a block merely hinted after malloc lost up to
 * 2 MiB at either end to 4 KiB pages). For the large arrays a compile and
 * a plan's load write through. */
void *pf_pages_malloc(size_t n);

#endif
