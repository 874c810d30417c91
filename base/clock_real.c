/* The real clock: CLOCK_MONOTONIC, and nanosleep to wait. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#if defined(__x86_64__)
#include <x86intrin.h>
#endif

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

/* Whether CLOCK_MONOTONIC follows the processor's time stamp counter: the
 * kernel's clock source is "tsc". Then reading the counter costs a
 * fraction of a clock read and never traps (the vDSO reads it too); on a
 * host where the kernel distrusts it (unsynchronized across cores, a
 * hypervisor that emulates it) the clock is read every time. */
static int tsc_keeps_time;
static pthread_once_t tsc_once = PTHREAD_ONCE_INIT;

static void tsc_check(void) {
#if defined(__x86_64__)
  char src[32] = "";
  FILE *f = fopen("/sys/devices/system/clocksource/clocksource0/current_clocksource", "r");
  if (f == NULL) return;
  if (fgets(src, sizeof src, f) != NULL) tsc_keeps_time = strcmp(src, "tsc\n") == 0;
  fclose(f);
#endif
}

void pf_clock_real_init(pf_clock *c) {
  c->ops = &real_ops;
  c->timers = NULL;
  c->virtual_now = 0;
  pthread_once(&tsc_once, tsc_check);
  c->by_cycles = tsc_keeps_time;
}

/* Here beside the counter's check: only the real clock may follow it. */
uint64_t pf_clock_now_near(pf_clock *c, pf_clock_reading *r) {
#if defined(__x86_64__)
  if (c->by_cycles) {
    uint64_t cycles = __rdtsc();
    if (r->cycles != 0 && cycles - r->cycles < PF_CLOCK_NEAR_CYCLES) return r->now;
    r->now = pf_clock_now(c);
    r->cycles = cycles;
    return r->now;
  }
#else
  (void)r;
#endif
  return pf_clock_now(c);
}

static pf_clock process_clock = {&real_ops, NULL, 0, 0};

pf_clock *pf_clock_real(void) { return &process_clock; }
