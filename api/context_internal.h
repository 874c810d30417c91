/* Internal: the context (the controller on rank 0) and what it owns.
 *
 * The controller never touches executor memory directly: it talks to every
 * executor, its own included, with control messages through the runtime.
 * Replies arrive on the loop thread (api/controller.c), which completes the
 * waiters below under ctx->lock.
 */
#ifndef PF_API_CONTEXT_INTERNAL_H
#define PF_API_CONTEXT_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>

#include "base/diag.h"
#include "graph/graph_internal.h"
#include "pathflow.h"
#include "runtime/runtime.h"
#include "transport/mpi.h"
#include "scheduler/schedule.h"

/* Where shard s of a buffer lives. */
typedef struct pf_home {
  int32_t rank;
  int32_t device;
} pf_home;

/* A device-resident value the user holds: its shards stay on executors
 * under `id`. One allocation with its homes. */
typedef struct pf_buffer_entry {
  uint64_t id;
  pf_spec spec; /* global */
  pf_sharding sharding;
  int num_shards;
  pf_home *homes; /* points into `home_store` */
  pf_home home_store[];
} pf_buffer_entry;

/* The buffers users hold, by id: open addressing (linear probing, deletion
 * by backward shift), so that adding, finding and releasing one costs
 * O(1) however many are held. */
typedef struct pf_buffer_table {
  pf_buffer_entry **slots; /* NULL: empty */
  size_t n, cap;          /* cap: 0 or a power of two, n <= cap / 2 */
} pf_buffer_table;

/* Someone on the user thread waiting for replies from several ranks. */
typedef struct pf_waiter {
  uint64_t key; /* executable id, step, or fetch request */
  int pending;  /* replies still expected */
  int status;
  char message[PF_DIAG_MSG_MAX];
  pf_storage **shards; /* fetch: one per shard */
  int num_shards;
  size_t shard_bytes; /* fetch: what each shard must hold */
  pf_counters *counters; /* counters: the reply's, taken from it */
  int from;              /* counters: the rank asked */
  void *step_req; /* a step: its dispatcher record (api/dispatch.c) */
  /* A load: the device communicator ids its LOAD_DONE replies carried
   * (malloc'd; the compile hands them to every rank with CONNECT). */
  pf_msg_comm_id *comm_ids;
  uint32_t n_comm_ids;
  int counted_done; /* its last reply came: counted in ctx->n_done; lock */
  atomic_int complete; /* the same, readable without the lock (wait's spin) */
  struct pf_waiter *next; /* in its bucket of the context's waiter table */
} pf_waiter;

/* The waiters by key (api/controller.c): a chained hash table, so that a
 * reply finds its waiter, and a waiter leaves, in O(1) however many
 * executions are pending. Starts on `first` and doubles as it fills. */
#define PF_WAITER_BUCKETS0 64
/* The job's communicator groups (api/comm_groups.c): group g is the list
 * of ranks list[g]; index finds a list by its hash. */
typedef struct pf_comm_group {
  uint32_t n;
  int32_t *ranks;
  uint64_t hash;
} pf_comm_group;

typedef struct pf_comm_groups {
  pf_comm_group *list;
  size_t n, cap;
  uint32_t *index; /* open addressing, UINT32_MAX: empty */
  size_t index_cap;
} pf_comm_groups;

/* *out = the group of this list of ranks (in this order), numbered now if
 * it is new. Errors: PF_ENOMEM. */
int pf_comm_group_of(pf_comm_groups *t, const int32_t *ranks, uint32_t n, uint32_t *out);
/* Sets the group of every communicator of plans[0..n_plans) (NULL plans
 * skipped). Errors: PF_ENOMEM. */
int pf_comm_groups_number(pf_comm_groups *t, pf_plan *const *plans, int n_plans);
void pf_comm_groups_free(pf_comm_groups *t);

typedef struct pf_waiter_table {
  pf_waiter **buckets;
  size_t mask;    /* buckets - 1 */
  uint64_t steps; /* waiters visited by lookups: tests check O(1) each */
  pf_waiter *first[PF_WAITER_BUCKETS0];
} pf_waiter_table;

struct pf_context {
  pf_registry *registry;
  pf_mpi *mpi; /* NULL: a single process */
  pf_runtime *runtime;
  /* PATHFLOW_LOOPBACK_RANKS: the fabric, and the runtimes of ranks 1..n-1
   * this process serves beside rank 0's (api/init.c). */
  struct pf_loopback *loopback;
  pf_runtime **peers;
  int n_peers;
  int rank, size;
  pf_cluster cluster;
  pf_comm_groups groups; /* user thread (pf_compile) */
  int num_devices[PF_DEVICE_KIND_COUNT];
  pf_diag diag;
  pf_buffer_table buffers;
  uint64_t next_id; /* buffers, executables, steps, requests: never reused */
  pthread_mutex_t lock;
  pthread_cond_t cond;
  pf_waiter_table waiting; /* guarded by lock */
  atomic_int n_waiting; /* waiters linked in `waiting` (read without lock) */
  /* Of those, the ones whose last reply came and that nobody collected
   * yet (a future not waited on): the loop need not poll for them. */
  atomic_int n_done;
  /* Waits whose spin ended without the reply, in a row (capped), and
   * waits since the last spin: see pf_controller_wait_for. */
  atomic_int spin_misses, waits_unspun;
  int in_flight;      /* steps dispatched, not done; guarded by lock */
  int max_pending;    /* executions admitted at once (backpressure) */
  /* Per global device: the planned peaks of the steps in flight, so that
   * a step is dispatched only when its memory fits beside them (lock). */
  int64_t *mem_in_flight;
  /* Executions admitted: incremented by pf_execute on the user thread,
   * decremented under lock when a step completes (or by pf_execute when
   * it fails or has nothing to run); a blocked pf_execute waits on cond. */
  atomic_int n_pending;
  pf_executable *backlogged; /* executables with queued steps; lock */
  double vtime;              /* stride scheduling's virtual time; lock */
  uint64_t slots_used;       /* bit per dispatch slot held by a step; lock */
  pf_executable *executables; /* user thread */
  pf_future *futures;         /* user thread */
  int finalized;              /* pf_finalize ran: every call is PF_ESTATE */
  int print_counters;         /* PATHFLOW_COUNTERS=1: print them at pf_finalize */
  pf_context *next_finalized; /* in api/context.c's list of those */
};

/* Resets and returns the context's error sink. */
pf_diag *pf_context_begin(pf_context *ctx);
/* Begins a public call `call` on ctx: PF_EINVAL when ctx is NULL,
 * PF_ESTATE (with a message) once it was finalized, else 0. */
int pf_context_live(pf_context *ctx, const char *call);
/* Records an error in the context and returns code. */
int pf_context_error(pf_context *ctx, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
uint64_t pf_context_new_id(pf_context *ctx);

/* ---- controller (api/controller.c) ---- */

/* Called by the runtime on the loop thread for every reply. */
void pf_controller_on_reply(void *ctx, pf_msg *m);
/* 1 while some waiter expects replies (the loop then keeps polling). */
int pf_controller_busy(void *ctx);
/* Registers a waiter for `pending` replies keyed by `key` (under lock). */
void pf_controller_expect(pf_context *ctx, pf_waiter *w, uint64_t key, int pending);
/* Waits until w has all its replies, unlinks it; returns its status. */
int pf_controller_wait(pf_context *ctx, pf_waiter *w);
/* As wait, but gives up after timeout_ms (PF_ETIMEDOUT, still linked) or
 * only tests when timeout_ms is 0. */
int pf_controller_wait_for(pf_context *ctx, pf_waiter *w, int64_t timeout_ms);
/* The dispatcher's part of a step reply from rank `from` (api/dispatch.c),
 * lock held. */
void pf_controller_step_reply_locked(pf_context *ctx, pf_waiter *w, int from);
/* The dispatcher's part of a STEP_STARTED from rank `from`, lock held. */
void pf_controller_stage_started_locked(pf_context *ctx, pf_waiter *w, int from);
/* Frees the waiter table's buckets (the waiters are their callers'). */
void pf_controller_table_free(pf_context *ctx);
/* Prints every rank's counters (api/counters.c), rank by rank; a rank
 * whose counters cannot be had is named with the error. */
void pf_counters_print_all(pf_context *ctx, FILE *f);
/* Sends a message to `rank`; returns 0 or an error recorded in ctx. */
int pf_controller_send(pf_context *ctx, int rank, pf_msg *m);

/* ---- buffers (api/buffers.c) ---- */

/* Adds an entry (homes copied). Errors: PF_ENOMEM. */
int pf_buffers_add(pf_context *ctx, uint64_t id, const pf_spec *spec, pf_sharding sh,
                   int num_shards, const pf_home *homes);
pf_buffer_entry *pf_buffers_find(pf_context *ctx, uint64_t id);
/* Forgets buffer `id` on the controller only (the executors drop their
 * shards themselves: a donated feed, dropped by the run that reads it). */
void pf_buffers_forget(pf_context *ctx, uint64_t id);
void pf_buffers_clear(pf_context *ctx);
/* Gathers a value's shards from the executors into a new host tensor.
 * `what` names the value in errors ("output \"y\"", "buffer 12"). Every
 * shard reply is checked against the shard's size. Errors: PF_ERANGE (a
 * shard over PF_HOST_SHARD_MAX, before anything is asked), PF_EDECODE (a
 * reply of the wrong size: rank, shard and both sizes named), PF_ESTALE,
 * PF_ENOMEM. */
int pf_value_fetch(pf_context *ctx, const char *what, uint64_t id, const pf_spec *spec,
                   pf_sharding sh, int num_shards, const pf_home *homes, pf_tensor **out);
/* Tells the executors holding shards of `id` to drop them. */
void pf_value_release(pf_context *ctx, uint64_t id, int num_shards, const pf_home *homes);

/* ---- host <-> shards (api/shards.c) ---- */
int pf_shards_gather(const pf_spec *global, pf_sharding sh, int n,
                     pf_storage *const *shards, pf_tensor **out);
int pf_shards_scatter(const pf_spec *global, pf_sharding sh, int n,
                      const void *data, pf_storage **shards);

/* Executables and futures unlink themselves; finalize frees the rest. */
void pf_executable_free_all(pf_context *ctx);
void pf_future_free_all(pf_context *ctx);

#endif
