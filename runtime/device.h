/* Internal: the device interface.
 *
 * What the executor needs from a device: memory for the buffers of a step,
 * box copies, an in-order queue that runs the device's ops of each step and
 * reports each one done, and what it says of itself at registration. A
 * device is a struct of function pointers (pf_device_ops) with one
 * implementation per file: the CPU device (runtime/device_cpu.c, a worker
 * thread per device) is the real one; tests/test_device.c adds a device that
 * counts what it is asked to do. docs/architecture.md says how to add one.
 *
 * The executor (runtime/executor.c) owns the dependency counting: it knows
 * when an op may run and tells the op's device (ready; between devices that
 * offer asleep, the device reads done flags with pf_step_op_ready and is told
 * only when it sleeps); the device decides
 * on which thread, stream or simulated time it runs, runs it through
 * pf_step_run_op, and reports it with pf_step_op_done. Ops of one device run
 * one after another in the order pf_step_device_queue lists them (gang
 * order): parts of steps are submitted in the same order on every device,
 * which is what keeps steps in flight from deadlocking one another.
 */
#ifndef PF_RUNTIME_DEVICE_H
#define PF_RUNTIME_DEVICE_H

#include <stddef.h>
#include <stdint.h>

#include "base/clock.h"
#include "base/diag.h"
#include "pathflow/types.h"
#include "plan/plan.h"
#include "runtime/storage.h"

typedef struct pf_device pf_device;
typedef struct pf_step pf_step;

/* What a device reports when its rank registers with the controller. */
typedef struct pf_device_info {
  pf_device_kind kind;   /* which kernels it runs (pf_registry_find) */
  int index;             /* its place among its rank's devices */
  int64_t memory_bytes;  /* memory the scheduler may plan on it */
  double flops;          /* peak operations per second, 0 if unknown */
  double bytes_per_s;    /* memory bandwidth, 0 if unknown */
  /* 1: its storage's data pointers are memory of its own that only the
   * device's copy and kernels may touch (a GPU's); 0: host memory (the CPU
   * device, and what a zeroed info says). */
  int own_memory;
  /* pf_stage: the data paths the runtime must stage through host buffers
   * for this device (0 when own_memory is 0). Registered with the
   * controller, whose scheduler inserts the staging. */
  uint32_t stage;
} pf_device_info;

/* Which way a box copy goes: within device memory, or across the host
 * boundary (host memory is where feeds arrive and fetches leave from). */
typedef enum pf_copy_dir { PF_COPY_D2D = 0, PF_COPY_H2D = 1, PF_COPY_D2H = 2 } pf_copy_dir;

/* A device's place in a step, lent to the device for its own queue (a CPU
 * device links its pending parts through `next`): no allocation per step. */
typedef struct pf_part {
  pf_step *step;
  struct pf_part *next;
} pf_part;

/* Collectives between ranks that a device runs on its own memory (NCCL on
 * GPUs), for a device whose stage lacks PF_STAGE_COLLECTIVES: the
 * scheduler leaves allreduce, broadcast, and allgather, reduce-scatter and
 * all-to-all of contiguous blocks over such devices, one per rank, unstaged, and the
 * executor runs the op on the device's queue (see docs/architecture.md,
 * "Collectives on GPUs"). */
#define PF_COMM_ID_MAX 128

typedef struct pf_device_collective {
  int kind;       /* pf_collective_kind: allreduce, broadcast, allgather,
                   * reduce-scatter, all-to-all */
  int reduce_op;  /* pf_reduce_op, for allreduce and reduce-scatter (MEAN:
                   * the device divides) */
  pf_dtype dtype;
  /* Each member's share, in elements: of in and out (allreduce,
   * broadcast); of in, out holding n of them in member order (allgather);
   * of out, in holding n blocks of it, block k for member k
   * (reduce-scatter); of each of the n chunks of in and of out, in's chunk
   * k going to member k, out's chunk k coming from member k (all-to-all). */
  size_t count;
  int root;       /* broadcast: the root's index in the communicator */
  const void *in; /* device memory */
  void *out;      /* device memory; may be in */
  void *comm;     /* what comm_join gave */
} pf_device_collective;

typedef struct pf_device_ops {
  void (*info)(pf_device *d, pf_device_info *out);
  /* New storage of nbytes in the device's memory, one reference, contents
   * undefined; NULL when out of memory. */
  pf_storage *(*alloc)(pf_device *d, size_t nbytes);
  /* New host storage for the device's staging buffers (pf_plan_buffer.host),
   * as alloc; memory the device copies from and to fastest (pinned). NULL:
   * ordinary host memory (pf_storage_new). */
  pf_storage *(*alloc_host)(pf_device *d, size_t nbytes);
  /* Copies box->extent elements of elem_size bytes from src (dims src_dims)
   * at box->src_offset to dst (dims dst_dims) at box->dst_offset; dir says
   * which side is host memory. Run as a COPY op in the device's order (a
   * GPU queues it on its stream: done when the op is reported done; a
   * failure found later fails the op's step), or from another thread
   * (pf_executor_to_host, _to_device), where it is done on return.
   * Returns 0, or a PF_E code when the copy failed. */
  int (*copy)(pf_device *d, pf_copy_dir dir, void *dst, const int64_t *dst_dims,
              const void *src, const int64_t *src_dims, const pf_box *box, size_t elem_size);
  /* Queues the device's part of step s (pf_step_part(s, index)) behind the
   * parts queued before it. Called with the executor's run lock held, so
   * every device sees steps in the same order. */
  void (*submit)(pf_device *d, pf_part *part);
  /* Op `op` of s, on this device, has all its inputs now. Called from the
   * thread that finished its last input: another device's, or the loop
   * thread (may_claim = 1). Returns 1 when the device hands the op to the
   * caller to run itself (the loop runs a tiny op inline for a device
   * that sleeps waiting for exactly it); the caller then runs it and calls
   * release. Returns 0 otherwise. Never called for an op whose last input
   * came from its own device: the device's queue moves on by itself. */
  int (*ready)(pf_device *d, pf_step *s, uint32_t op, int may_claim);
  /* The caller ran the op `ready` handed it. Returns 1 when it was the
   * last op of the device's part: the caller finishes the part
   * (pf_step_part_done) and the device never touches s again. NULL for a
   * device whose ready never hands an op over. */
  int (*release)(pf_device *d, pf_step *s, uint32_t op);
  /* The loop thread asks for the device's next op to run itself: when the
   * device's worker waits (idle, or for that op's inputs) and the op is
   * ready, claims it as ready with may_claim does, sets *s and *op and
   * returns 1 (the caller runs it and calls release); else 0. NULL for a
   * device that never hands ops over. Only for a device made to leave its
   * ops to the loop (pf_cpu_device_config.loop_runs_ops): another worker
   * is never woken for them, so the loop must ask. */
  int (*claim)(pf_device *d, pf_step **s, uint32_t *op);
  /* Optional: 1 when the thread that runs the device's ops sleeps, or is
   * about to, waiting for an op (read without a lock). A device that has it
   * runs each op to its end in pf_step_run_op and calls pf_step_op_done
   * after, on the same thread. Between two such devices the executor then
   * marks an input done with a flag in the step that the consumer reads
   * (pf_step_op_ready), not with a count both sides write: a locked
   * decrement of a line the consumer spins on cost a third of a microsecond
   * per op (bench/granularity, one process). The producer stores its flag,
   * fences (sequentially consistent), reads asleep, and calls ready only
   * when it says 1; so the device sets what asleep reads and fences before
   * it checks pf_step_op_ready one last time and sleeps (one of the two
   * sees the other), and ready checks pf_step_op_ready under the device's
   * lock (of two producers, the later sees both flags). NULL: every input
   * counted, ready called when the last one is done. */
  int (*asleep)(pf_device *d);
  /* The slot where the thread running this device's ops records which op
   * it runs (pf_running_bind), for crash and hang reports; NULL if none. */
  struct pf_running_slot *(*running)(pf_device *d);
  /* What a kernel run on this device now gets as pf_kernel_call.stream (a
   * GPU's cudaStream_t); NULL: none (a CPU device). */
  void *(*stream)(pf_device *d);
  /* Collectives on the device's own memory (NULL for a device without):
   *   comm_id     makes a new communicator's id (at most PF_COMM_ID_MAX
   *               bytes, *len set), on the first member; the runtime sends
   *               it to the others.
   *   comm_join   joins communicator `id` (what comm_id made, zero-padded
   *               to PF_COMM_ID_MAX bytes: len) as member `me` of `n`; blocks
   *               until every member has joined (never on the loop thread).
   *               *comm is the device's handle, freed by comm_leave.
   *   collective  runs (a GPU: queues on its stream) one collective, on the
   *               thread that runs the device's ops, in gang order; it
   *               completes when every member's has (a GPU's stream waits).
   * Each returns 0 or a PF_E code, naming the cause in diag. */
  int (*comm_id)(pf_device *d, uint8_t *id, size_t *len, pf_diag *diag);
  int (*comm_join)(pf_device *d, const uint8_t *id, size_t len, int n, int me, void **comm,
                   pf_diag *diag);
  void (*comm_leave)(pf_device *d, void *comm);
  int (*collective)(pf_device *d, const pf_device_collective *c, pf_diag *diag);
  /* Ops run and time spent waiting for inputs, as of its last report. */
  void (*counters)(pf_device *d, uint64_t *ops_run, uint64_t *wait_ns);
  /* Runs what is queued, then stops and frees the device. */
  void (*destroy)(pf_device *d);
} pf_device_ops;

struct pf_device {
  const pf_device_ops *ops;
};

/* ---- what a device calls back (runtime/executor.c) ---------------------- */

/* Which op a thread runs now: the step, or NULL between ops. Written by
 * pf_step_run_op (two stores, no clock); read by the crash handler of that
 * thread and, on the loop thread, by the hang report. */
typedef struct pf_running_slot {
  _Atomic(pf_step *) step;
  _Atomic uint32_t op;
  int rank; /* of the thread's runtime: crash reports name it (a process
             * of loopback ranks holds several) */
} pf_running_slot;

/* The calling thread runs ops from now on and records them in `slot`
 * (NULL: stops recording). Crash handlers then name the kernel it runs. */
void pf_running_bind(pf_running_slot *slot);

/* The ops of device `device` in step s, in the order they must run; *n
 * their count. Owned by the step's plan. */
const uint32_t *pf_step_device_queue(const pf_step *s, int device, uint32_t *n);
/* 1 when op `op` of s has all its inputs (an acquire: what they wrote is
 * visible to the caller). */
int pf_step_op_ready(const pf_step *s, uint32_t op);
/* How many of op `op`'s inputs are not done yet (0: ready). Only ever
 * falls. A device that queues work asynchronously (a GPU stream) compares
 * it with the inputs it has queued itself and not yet reported done: when
 * they are all that is missing, stream order makes the op safe to queue. */
uint32_t pf_step_op_pending(const pf_step *s, uint32_t op);
/* Where op `op`'s count of inputs not done lives, for a device that looks
 * at it on every poll without a call (the step owns it; valid while s is);
 * NULL when its inputs are told by flags (pf_device_ops.asleep): then only
 * pf_step_op_ready says. */
const _Atomic uint32_t *pf_step_op_count(const pf_step *s, uint32_t op);
/* Runs op `op` of s on the calling thread: its kernel, box copy or local
 * collective (nothing if the step has failed). Returns 1 if it ran. */
int pf_step_run_op(pf_step *s, uint32_t op);
/* Counts op `op` done for its dependents, telling their devices (or the
 * loop) when one has all its inputs; `device` is the caller's device
 * index (-1: the loop thread). Frees inputs nothing reads any more. */
void pf_step_op_done(pf_step *s, uint32_t op, int device);
/* The device has run every op of its part of s. The last part or loop op
 * to finish completes the step, which may then be freed at once. */
void pf_step_part_done(pf_step *s);
/* The device's queue entry in s. */
pf_part *pf_step_part(pf_step *s, int device);
/* The executor's clock (timestamps, waits). */
pf_clock *pf_step_clock(const pf_step *s);

/* ---- the CPU device (runtime/device_cpu.c) ------------------------------- */

typedef struct pf_cpu_device_config {
  int index;        /* the device's index on its rank */
  int rank;         /* for thread names and messages */
  int cpu;          /* pin its worker to this CPU, or -1 */
  uint64_t spin_ns; /* spin this long for an input before sleeping */
  int64_t memory_bytes; /* what it reports */
  pf_clock *clock;  /* borrowed */
  /* 1: the loop thread runs the device's ops (claim): its worker is not
   * woken for a new step nor for the next op in its queue, only for an op
   * another thread's work made ready (ready without may_claim). For a rank
   * with one core, where the worker and the loop thread took turns on it
   * and each hand-off waited for the scheduler. */
  int loop_runs_ops;
} pf_cpu_device_config;

/* Starts a CPU device: one worker thread, named pf-devN, that runs its
 * queue. Errors: PF_ENOMEM, PF_ESYS (no thread). */
int pf_cpu_device_create(const pf_cpu_device_config *cfg, pf_device **out);
/* 1 if the calling thread woke a sleeping CPU worker since it last asked
 * (and forgets it): the loop thread, which may share its core with the
 * worker, then yields at once instead of keeping the core for the rest
 * of its spin. */
int pf_cpu_device_woke_worker(void);
/* The CPU the device's worker is pinned to, or -1. */
int pf_cpu_device_cpu(const pf_device *d);
/* The CPUs to pin n_devices workers to: the bind_first-th and following
 * CPUs of the process's affinity mask, when it has at least bind_span of
 * them (every worker of every rank on the host gets a core); else every
 * entry -1 (an oversubscribed host: the OS scheduler places them better). */
void pf_cpu_device_pick_cpus(int bind_first, int bind_span, int n_devices, int *cpus);

#endif
