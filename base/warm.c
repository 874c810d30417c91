#define _GNU_SOURCE /* SCHED_IDLE */
#include "base/warm.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "base/arena.h"
#include "base/pages.h"

/* The longest range advances this much per round (one huge page); the
 * others in proportion. */
#define STEP ((size_t)2 << 20)

struct pf_warmer {
  pthread_t thread;
  atomic_int stop;
  int idle;      /* lower the thread to SCHED_IDLE first */
  void *own;     /* pf_warmer_reserve's mapping, unmapped on stop */
  size_t own_n;
  size_t n;
  pf_warm_range r[];
};

static void *warm_main(void *arg) {
  pf_warmer *w = arg;
  size_t longest = 0, rounds;
  if (w->idle) {
    /* Best effort: at normal priority it only takes a share of a core. */
    struct sched_param none = {0};
    (void)pthread_setschedparam(pthread_self(), SCHED_IDLE, &none);
  }
  for (size_t i = 0; i < w->n; i++)
    if (w->r[i].n > longest) longest = w->r[i].n;
  rounds = (longest + STEP - 1) / STEP;
  for (size_t k = 0; k < rounds; k++)
    for (size_t i = 0; i < w->n; i++) {
      size_t step = (w->r[i].n + rounds - 1) / rounds, at = k * step;
      if (atomic_load_explicit(&w->stop, memory_order_relaxed)) return NULL;
      if (at < w->r[i].n)
        pf_prefault((char *)w->r[i].p + at, w->r[i].n - at < step ? w->r[i].n - at : step);
    }
  return NULL;
}

/* Whether warming `total` bytes can pay: enough of them, a second CPU to
 * do it on, and huge pages (without them, the comparison runs cold). */
static int worth_warming(size_t total) {
  return total >= PF_WARM_MIN && sysconf(_SC_NPROCESSORS_ONLN) >= 2 && pf_pages_huge();
}

/* A warmer of ranges[0..n), its thread started; NULL on failure. */
static pf_warmer *start(const pf_warm_range *ranges, size_t n, int idle, void *own,
                        size_t own_n) {
  pf_warmer *w = malloc(sizeof *w + n * sizeof *ranges);
  if (w == NULL) return NULL;
  atomic_init(&w->stop, 0);
  w->idle = idle;
  w->own = own;
  w->own_n = own_n;
  w->n = n;
  memcpy(w->r, ranges, n * sizeof *ranges);
  if (pthread_create(&w->thread, NULL, warm_main, w) != 0) {
    free(w);
    return NULL;
  }
  return w;
}

pf_warmer *pf_warmer_start(const pf_warm_range *ranges, size_t n) {
  size_t total = 0;
  for (size_t i = 0; i < n; i++) total += ranges[i].n;
  return worth_warming(total) ? start(ranges, n, 0, NULL, 0) : NULL;
}

pf_warmer *pf_warmer_reserve(size_t bytes) {
  size_t n = (bytes + STEP - 1) / STEP * STEP;
  pf_warmer *w;
  void *p;
  if (!worth_warming(n)) return NULL;
  if ((p = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                -1, 0)) == MAP_FAILED)
    return NULL;
  (void)madvise(p, n, MADV_HUGEPAGE);
  if ((w = start(&(pf_warm_range){p, n}, 1, 1, p, n)) == NULL) munmap(p, n);
  return w;
}

void pf_warmer_stop(pf_warmer *w) {
  if (w == NULL) return;
  atomic_store_explicit(&w->stop, 1, memory_order_relaxed);
  pthread_join(w->thread, NULL);
  if (w->own != NULL) munmap(w->own, w->own_n);
  free(w);
}
