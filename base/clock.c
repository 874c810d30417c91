/* Timers, shared by every clock implementation: a list sorted by due time
 * (a runtime arms a handful, so a heap would not pay for itself). */
#include "base/clock.h"

#include <stddef.h>

void pf_clock_sleep(pf_clock *c, uint64_t ns) { c->ops->sleep_until(c, pf_clock_now(c) + ns); }

void pf_timer_stop(pf_clock *c, pf_timer *t) {
  pf_timer **p = &c->timers;
  if (!t->armed) return;
  while (*p != NULL && *p != t) p = &(*p)->next;
  if (*p == t) *p = t->next;
  t->next = NULL;
  t->armed = 0;
}

void pf_timer_start(pf_clock *c, pf_timer *t, uint64_t after_ns, pf_timer_fn fn, void *arg) {
  pf_timer **p = &c->timers;
  uint64_t now = pf_clock_now(c);
  pf_timer_stop(c, t);
  t->due = after_ns > UINT64_MAX - now ? UINT64_MAX : now + after_ns;
  t->fn = fn;
  t->arg = arg;
  /* After the timers due at the same time: they run in the order armed. */
  while (*p != NULL && (*p)->due <= t->due) p = &(*p)->next;
  t->next = *p;
  *p = t;
  t->armed = 1;
}

uint64_t pf_clock_next_due(const pf_clock *c) { return c->timers ? c->timers->due : UINT64_MAX; }

int pf_clock_run_due(pf_clock *c) {
  uint64_t now = pf_clock_now(c);
  int ran = 0;
  while (c->timers != NULL && c->timers->due <= now) {
    pf_timer *t = c->timers;
    c->timers = t->next;
    t->next = NULL;
    t->armed = 0;
    t->fn(t, t->arg);
    ran++;
  }
  return ran;
}
