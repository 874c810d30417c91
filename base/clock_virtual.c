/* The virtual clock: time that passes only when someone advances it (a
 * discrete-event simulation, a test that must not wait for real seconds). */
#include <stdatomic.h>
#include <stddef.h>

#include "base/clock.h"

static uint64_t virtual_now(pf_clock *c) {
  return atomic_load_explicit(&c->virtual_now, memory_order_acquire);
}

/* A simulated thread that sleeps makes simulated time pass. */
static void virtual_sleep_until(pf_clock *c, uint64_t t) { pf_clock_advance(c, t); }

static const pf_clock_ops virtual_ops = {virtual_now, virtual_sleep_until};

void pf_clock_virtual_init(pf_clock *c, uint64_t start) {
  c->ops = &virtual_ops;
  c->timers = NULL;
  atomic_init(&c->virtual_now, start);
  c->by_cycles = 0;
}

int pf_clock_advance(pf_clock *c, uint64_t t) {
  int ran = 0;
  /* Step through the due timers one at a time, so each sees the time it
   * was due at, and timers it arms for before t run too. */
  while (c->timers != NULL && c->timers->due <= t) {
    if (c->timers->due > virtual_now(c))
      atomic_store_explicit(&c->virtual_now, c->timers->due, memory_order_release);
    ran += pf_clock_run_due(c);
  }
  if (t > virtual_now(c)) atomic_store_explicit(&c->virtual_now, t, memory_order_release);
  return ran;
}
