/* Internal: the clock interface.
 *
 * Everything in the runtime that reads the time, sleeps or waits for a
 * deadline does it through a pf_clock, so that the same code runs against
 * the wall clock in a job and against virtual time in a simulation. A clock
 * is a small struct of function pointers (now, sleep_until) with one
 * implementation per file: the real clock (base/clock_real.c, CLOCK_MONOTONIC)
 * and the virtual clock (base/clock_virtual.c, time that moves only when it
 * is advanced). Timers are kept here, once, for every implementation: a
 * timer is due when the clock's now() reaches it, and runs when its owner
 * calls pf_clock_run_due (the runtime's loop on the real clock; whoever
 * advances a virtual clock on that one).
 *
 * Threads: now() and sleep_until() may be called from any thread. Timers
 * belong to one thread: start, stop and run them from it only.
 */
#ifndef PF_BASE_CLOCK_H
#define PF_BASE_CLOCK_H

#include <stdint.h>

typedef struct pf_clock pf_clock;
typedef struct pf_timer pf_timer;
typedef void (*pf_timer_fn)(pf_timer *t, void *arg);

typedef struct pf_clock_ops {
  /* Nanoseconds since an arbitrary origin; never goes back. */
  uint64_t (*now)(pf_clock *c);
  /* Returns once now() >= t (at once if it is already). */
  void (*sleep_until)(pf_clock *c, uint64_t t);
} pf_clock_ops;

/* A timer, owned by its caller (no allocation): fn(t, arg) runs once, from
 * pf_clock_run_due, when the clock reaches `due`. */
struct pf_timer {
  uint64_t due;
  pf_timer_fn fn;
  void *arg;
  pf_timer *next;
  int armed;
};

struct pf_clock {
  const pf_clock_ops *ops;
  pf_timer *timers; /* armed timers, earliest first */
  _Atomic uint64_t virtual_now; /* the virtual clock's time (unused by the real one) */
  /* 1: now() follows the processor's cycle counter (the real clock where
   * the kernel keeps time by it), so pf_clock_now_near may use that. */
  int by_cycles;
};

/* A reading of a clock and the cycle counter when it was taken, for
 * pf_clock_now_near (owned by one thread; zeroed: none yet). */
typedef struct pf_clock_reading {
  uint64_t now, cycles;
} pf_clock_reading;

/* Cycles within which pf_clock_now_near gives a reading again: about 1.5
 * to two microseconds at the 2-3 GHz of today's counters. */
#define PF_CLOCK_NEAR_CYCLES 4096u

/* The real clock: CLOCK_MONOTONIC, nanosleep. */
void pf_clock_real_init(pf_clock *c);
/* A process-wide real clock, for code that has no clock of its own (tools,
 * tests). Its timers must not be used: each owner inits its own clock. */
pf_clock *pf_clock_real(void);

/* A virtual clock starting at `start` ns: now() returns that until
 * pf_clock_advance moves it; sleep_until(t) advances it to t (a simulated
 * thread that sleeps makes simulated time pass; only one thread should
 * then be driving it). */
void pf_clock_virtual_init(pf_clock *c, uint64_t start);
/* Moves a virtual clock to `t` (no-op if t is not later than now) and
 * runs, in order of their due times, every timer due by then, with the
 * clock set to each one's due time while it runs (a timer started by a
 * timer runs in the same call if it is due by t). Returns how many ran.
 * Only for a virtual clock. */
int pf_clock_advance(pf_clock *c, uint64_t t);

static inline uint64_t pf_clock_now(pf_clock *c) { return c->ops->now(c); }

/* now() to within PF_CLOCK_NEAR_CYCLES: the reading in r again when the
 * cycle counter says it is that recent, else a new one, kept in r. For
 * stamps taken by the thousand a millisecond (the loop's transfers: a
 * clock read, ~30 ns in a virtual machine, against ~10 for the counter,
 * was three reads a stencil step of ~1 us). A clock that does not follow
 * the counter (the virtual one; a host whose kernel keeps time otherwise)
 * is read every time. Readings never go back. */
uint64_t pf_clock_now_near(pf_clock *c, pf_clock_reading *r);

/* Nanoseconds from `then` to `now`; 0 when `then` is later: a stamp another
 * thread took after `now` was read (now - then would wrap to centuries,
 * and a healthy peer would look silent for that long). */
static inline uint64_t pf_clock_since(uint64_t now, uint64_t then) {
  return now > then ? now - then : 0;
}
/* Sleeps ns nanoseconds of this clock's time. */
void pf_clock_sleep(pf_clock *c, uint64_t ns);

/* Arms t to run fn(t, arg) `after_ns` from now (re-arming an armed timer
 * moves it). */
void pf_timer_start(pf_clock *c, pf_timer *t, uint64_t after_ns, pf_timer_fn fn, void *arg);
/* Disarms t; no-op if it is not armed. */
void pf_timer_stop(pf_clock *c, pf_timer *t);
/* The due time of the earliest armed timer, or UINT64_MAX when none. */
uint64_t pf_clock_next_due(const pf_clock *c);
/* Runs every timer due by now() (each disarmed before it runs, so it may
 * start itself again). Returns how many ran. */
int pf_clock_run_due(pf_clock *c);

#endif
