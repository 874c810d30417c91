#include "base/warm.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/arena.h"
#include "base/pages.h"

/* The longest range advances this much per round (one huge page); the
 * others in proportion. */
#define STEP ((size_t)2 << 20)

struct pf_warmer {
  pthread_t thread;
  atomic_int stop;
  size_t n;
  pf_warm_range r[];
};

static void *warm_main(void *arg) {
  pf_warmer *w = arg;
  size_t longest = 0, rounds;
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

pf_warmer *pf_warmer_start(const pf_warm_range *ranges, size_t n) {
  pf_warmer *w;
  size_t total = 0;
  for (size_t i = 0; i < n; i++) total += ranges[i].n;
  if (total < PF_WARM_MIN || sysconf(_SC_NPROCESSORS_ONLN) < 2 || !pf_pages_huge()) return NULL;
  if ((w = malloc(sizeof *w + n * sizeof *ranges)) == NULL) return NULL;
  atomic_init(&w->stop, 0);
  w->n = n;
  memcpy(w->r, ranges, n * sizeof *ranges);
  if (pthread_create(&w->thread, NULL, warm_main, w) != 0) {
    free(w);
    return NULL;
  }
  return w;
}

void pf_warmer_stop(pf_warmer *w) {
  if (w == NULL) return;
  atomic_store_explicit(&w->stop, 1, memory_order_relaxed);
  pthread_join(w->thread, NULL);
  free(w);
}
