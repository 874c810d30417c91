/* Internal: executables, futures and the step dispatcher of the
 * controller. */
#ifndef PF_API_EXECUTE_INTERNAL_H
#define PF_API_EXECUTE_INTERNAL_H

#include "api/context_internal.h"

/* One execution waiting for, or holding, a dispatch slot. */
typedef struct pf_step_req {
  pf_future *f;
  pf_msg **runs; /* one RUN per participating rank, in stage order */
  int32_t *ranks; /* where each goes */
  /* Per run, what sending it takes, reserved when the step is built: a
   * step whose run went to one rank must reach every other (the first
   * would wait for its peers forever), so that send cannot fail. */
  pf_runtime_reservation **sends;
  int n_runs, next_run;
  int slot; /* dispatch slot while in flight, else -1 */
  int waited; /* not all sent when enqueued: the last send broadcasts ctx->cond */
  struct pf_step_req *next; /* in its executable's queue */
} pf_step_req;

struct pf_executable {
  pf_context *ctx;
  uint64_t id;
  int refs; /* the user's handle + futures; user thread only */
  int destroyed;
  pf_compiled *compiled; /* io tables; plans moved out to the executors */
  uint8_t *participates; /* per rank: has a plan */
  int n_participants;
  int32_t *stages; /* participating ranks in the order they first act */
  pf_dispatch_mode dispatch;
  /* Dispatcher state, guarded by ctx->lock. */
  pf_step_req *queue_head, *queue_tail;
  double weight, pass, remain;
  uint64_t dispatched, completed;
  double won, expected, contended; /* share accounting */
  pf_executable *backlog_next;     /* in ctx->backlogged */
  /* The devices one step uses memory on and its planned peak on each. */
  int n_mem;
  int32_t *mem_devices;
  int64_t *mem_peaks;
  pf_executable *prev, *next;      /* ctx->executables; user thread */
};

struct pf_future {
  pf_context *ctx;
  pf_executable *exe;
  pf_waiter w;
  pf_step_req *req;
  int done;
  uint64_t *output_ids;
  uint8_t *taken;
  pf_future *prev, *next;
};

/* Sends host data (a whole tensor of in->spec) as shards to where `in`
 * says they live, under a fresh id, set in *id before the first is sent
 * (so that a caller can release what went out when a later one fails).
 * Errors name it as `kind` "in->name" ("feed \"x\""). Errors: PF_ERANGE
 * (a shard over PF_HOST_SHARD_MAX, before anything is sent), PF_ENOMEM,
 * send errors. */
int pf_put_shards(pf_context *ctx, const char *kind, const pf_io *in, const void *data,
                  uint64_t *id);

/* Queues a step of `e` and dispatches what the slots allow. Takes `req`. */
void pf_dispatch_enqueue(pf_context *ctx, pf_executable *e, pf_step_req *req);
/* Rank `from` finished its part of the step `req` (ctx->lock held): in
 * sequential mode the next stage starts if `from` was the last one sent
 * and had not said it started; once every rank is done the slot frees and
 * queued steps go out. */
void pf_dispatch_step_reply_locked(pf_context *ctx, pf_step_req *req, int step_done, int from);
/* Sequential dispatch: rank `from` started its part of `req`; if it is the
 * stage sent last, the next stage's run goes out (ctx->lock held). Its
 * sends then meet their receives, however large: waiting for the stage to
 * be done instead hung any transfer above MPI's eager limit. */
void pf_dispatch_stage_started_locked(pf_context *ctx, pf_step_req *req, int from);
void pf_step_req_free(pf_step_req *req);

#endif
