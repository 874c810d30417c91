/* Internal: the executor service of one rank.
 *
 * Handles the controller's messages (load, connect, run, fetch, put, release,
 * unload, dump) against this rank's executor and buffer store, performs the
 * transfers and MPI collectives of running steps, and answers the
 * controller. Every function runs on the loop thread.
 */
#ifndef PF_RUNTIME_SERVICE_H
#define PF_RUNTIME_SERVICE_H

#include <stdio.h>

#include "runtime/executor.h"
#include "runtime/msg.h"
#include "transport/transport.h"

/* Steps in flight at once, across all executables: bounds tag reuse. */
#define PF_MAX_IN_FLIGHT PF_MSG_SLOTS

/* Tags: the transport's [0, tag_ub] is cut into PF_MAX_IN_FLIGHT + 1
 * windows of this many: one per dispatch slot (a step's transfers), and the
 * last for the data path of feeds and fetches (runtime/runtime.c). */
static inline int pf_tag_window(int tag_ub) {
  return (int)(((int64_t)tag_ub + 1) / (PF_MAX_IN_FLIGHT + 1));
}

typedef struct pf_service pf_service;

typedef struct pf_service_config {
  int rank;
  pf_executor *executor;
  pf_transport *transport; /* NULL in a process alone in its job; borrowed */
  /* Answers to the controller; takes ownership of the message. */
  void (*reply)(void *arg, pf_msg *m);
  void *reply_arg;
  /* Hands a finished step to the loop thread (called on a device worker);
   * the loop then calls pf_service_step_done(step_arg). */
  void (*post_done)(void *arg, void *step_arg);
  /* Runs fn(fn_arg) on the loop thread, from any thread (post_arg). */
  void (*post_call)(void *arg, void (*fn)(void *), void *fn_arg);
  void *post_arg;
  struct pf_trace *trace; /* timeline (PATHFLOW_TRACE), or NULL; borrowed */
  pf_clock *clock;        /* borrowed */
} pf_service_config;

int pf_service_create(const pf_service_config *cfg, pf_service **out);
/* Frees everything; steps must have completed. */
void pf_service_destroy(pf_service *s);

/* Handles one message from the controller; takes ownership. */
void pf_service_handle(pf_service *s, pf_msg *m);
/* The executor finished a step started by this service (arg as given). */
void pf_service_step_done(pf_service *s, void *step_arg);
/* A transfer or a collective across ranks of a step is ready to go. */
void pf_service_loop_op(pf_service *s, pf_step *step, uint32_t op);
/* A step this service started hands over its loop ops that need no input
 * (pf_loop_ops_start_fn: n of them, plan order, the array the step's): all
 * but receives go at once, and the first receives; the rest wait for
 * pf_service_post_deferred. Loop thread only. */
void pf_service_start_ops(pf_service *s, pf_step *step, const uint32_t *ops, uint32_t n);

int pf_service_steps_in_flight(const pf_service *s);
/* The loop starts a poll or a batch of events: the service reads the
 * clock now, and the time stamps it takes until the next tick (a
 * transfer's or collective's start or end, for the counters' waits) reuse
 * that reading (a chain of small collectives took a start and an end stamp
 * per computation, within a microsecond of each other, and the first on
 * the way from the partner's message to the next send). With a timeline
 * (cfg.trace), or a clock that does not follow the cycle counter (a
 * virtual one, a host whose clock source is not the TSC), the first stamp
 * after the tick reads it instead. Loop thread only. */
void pf_service_tick(pf_service *s);
/* Fills this rank's counters that the service and the executor keep:
 * steps, transfers per peer, collectives, waiting times, per-device ops
 * (not the control messages, which the runtime counts). Loop thread. */
void pf_service_counters(const pf_service *s, pf_counters *c);

/* Posts up to `max` of the receives that step starts left for later (the
 * first receives of a step are posted at once, the rest when the loop is
 * idle), in plan order. Loop thread only. Returns how many it posted. */
int pf_service_post_deferred(pf_service *s, int max);
/* When an op or step of this service last completed, to within one call:
 * `now` if a transfer or collective completed since the previous call
 * (the loop asks once a second, for the watchdog). */
uint64_t pf_service_last_progress(pf_service *s, uint64_t now);
/* Prints what each step in flight waits on: device queues, transfers,
 * collectives (the watchdog's report). */
void pf_service_dump(const pf_service *s, FILE *f);

#endif
