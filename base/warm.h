/* Internal: faulting memory in on another thread, ahead of its writer.
 *
 * A compile of a million programs writes a few hundred megabytes of plan
 * records front to back, and on the virtual machines this project is
 * measured on, backing fresh memory costs 1.5-2 ms per MB even on huge
 * pages (base/pages.h): half of the schedule. The reservations are known
 * before the first record is written, and the machine has a core idle
 * meanwhile (the other ranks wait for their plans). A warmer is a thread
 * that asks the system to back those reservations (MADV_POPULATE_WRITE,
 * which changes no byte) a step at a time, all of them in proportion, while
 * the scheduler writes them; the scheduler's own faults then find the pages
 * there.
 *
 * It only ever asks the system for pages, so it cannot race with the writer
 * in the C sense; it must be stopped before the ranges are freed (freed and
 * reused pages would be backed again, costing memory, not correctness). */
#ifndef PF_BASE_WARM_H
#define PF_BASE_WARM_H

#include <stddef.h>

typedef struct pf_warm_range {
  void *p;
  size_t n;
} pf_warm_range;

typedef struct pf_warmer pf_warmer;

/* Starts warming ranges[0..n) (copied), each front to back and all in
 * proportion to their lengths, so that arrays filled together are warmed
 * together. NULL (nothing started, not an error) when the ranges add up to
 * less than PF_WARM_MIN, the system has one CPU, huge pages are off
 * (PATHFLOW_HUGE_PAGES=0: the comparison without either), or a thread or
 * memory could not be had. */
pf_warmer *pf_warmer_start(const pf_warm_range *ranges, size_t n);

/* Stops the warmer (what it has not reached stays cold), waits for its
 * thread and, for pf_warmer_reserve's, unmaps its memory. w == NULL:
 * nothing. */
void pf_warmer_stop(pf_warmer *w);

/* Maps `bytes` of fresh memory (rounded up to whole huge pages) and backs
 * it, a step at a time, on a thread of idle priority (SCHED_IDLE: it runs
 * on a core nothing else wants); pf_warmer_stop then unmaps it.
 *
 * Why memory nobody will write: on the virtual machines this project is
 * measured on, the host backs a guest page on its first use (1.5-2 ms per
 * MB), and a page the guest freed moments before costs 0.06 ms per MB to
 * take again (base/pages.h). A rank about to receive a large plan (the
 * controller says so before it schedules: runtime/runtime.c) backs about
 * as much as decoding and loading it will take while it would otherwise
 * wait, and lets it go just before the plan arrives: its decoder and
 * executor then find those pages in the guest's free lists. On a machine
 * without that cost it is idle time spent zeroing pages, nothing more.
 *
 * NULL (nothing started, not an error) under PF_WARM_MIN, with one CPU,
 * huge pages off, or when memory, a mapping or a thread could not be
 * had. */
pf_warmer *pf_warmer_reserve(size_t bytes);

/* Ranges adding up to less than this are left to their writer. */
#define PF_WARM_MIN ((size_t)32 << 20)

#endif
