/* The real clock: CLOCK_MONOTONIC, and nanosleep to wait. */
#include <errno.h>
#include <time.h>

#include "base/clock.h"

static uint64_t real_now(pf_clock *c) {
  struct timespec ts;
  (void)c;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void real_sleep_until(pf_clock *c, uint64_t t) {
  struct timespec ts = {(time_t)(t / 1000000000u), (long)(t % 1000000000u)};
  (void)c;
  /* Absolute: a signal that interrupts the sleep does not lengthen it. */
  while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR) {
  }
}

static const pf_clock_ops real_ops = {real_now, real_sleep_until};

void pf_clock_real_init(pf_clock *c) {
  c->ops = &real_ops;
  c->timers = NULL;
  c->virtual_now = 0;
}

static pf_clock process_clock = {&real_ops, NULL, 0};

pf_clock *pf_clock_real(void) { return &process_clock; }
