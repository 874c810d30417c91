/* Internal: the executor core.
 *
 * Runs loaded plans on local devices (runtime/device.h). The executor owns
 * the dependency counting: ops of a step have counters of inputs not yet
 * done, decremented with atomics by whoever finishes an input; an op whose
 * count reaches zero goes to its device (or, for a transfer or an MPI
 * collective, to the loop thread). Each device runs its ops of each step
 * in plan (gang) order, like a stream; the CPU device with a worker thread,
 * so that a chain of ops on one device runs back to back with no thread hop.
 * See docs/architecture.md.
 *
 * Threads: devices run ops on their own threads. Every function here is
 * called from the loop thread (runtime/runtime.c) except where noted.
 */
#ifndef PF_RUNTIME_EXECUTOR_H
#define PF_RUNTIME_EXECUTOR_H

#include <stdint.h>

#include "base/diag.h"
#include "kernels/registry.h"
#include "base/counters.h"
#include "plan/plan.h"
#include "runtime/device.h"
#include "runtime/storage.h"

/* Most inputs of one op: as many as a program may have (PF_MAX_ARGS). */
#define PF_MAX_ARGS_RUNTIME 1024
/* Per-op argument arrays live on the stack up to this many entries (wider
 * ops take the heap): a frame of PF_MAX_ARGS_RUNTIME views would be 80 KiB,
 * and with stack-clash protection every op would probe each of its pages.
 * Also the most outputs of an op and the most shards of a local
 * collective. */
#define PF_OP_ARGS_ON_STACK 64

typedef struct pf_executor pf_executor;
typedef struct pf_loaded pf_loaded;

/* Called on a worker thread when the last op of a step finished (or at once,
 * on the caller's thread, for a step with no ops). */
typedef void (*pf_step_done_fn)(pf_step *step, void *arg);

/* Called when a transfer or an MPI collective of a step has all its inputs
 * (from any thread: a device worker, or the caller of pf_executor_run). The
 * callee must hand it to the loop thread, which performs it and then calls
 * pf_executor_loop_op_done. */
typedef void (*pf_loop_op_fn)(void *arg, pf_step *step, uint32_t op);

/* Called once per step, inside pf_executor_run, with the step's loop ops
 * that need no input (every receive, a send of a fed buffer), n of them in
 * plan order, instead of pf_loop_op_fn for each: the callee may hand them
 * to the transport over time (a long plan has thousands of receives). The
 * array is the loaded plan's: it stays valid while the step runs. */
typedef void (*pf_loop_ops_start_fn)(void *arg, pf_step *step, const uint32_t *ops, uint32_t n);

typedef struct pf_executor_config {
  int num_devices;       /* >= 1 */
  int rank;              /* for messages */
  pf_registry *registry; /* borrowed; must outlive the executor */
  pf_loop_op_fn loop_op; /* NULL: plans with transfers are refused */
  pf_loop_ops_start_fn loop_ops_start; /* NULL: loop_op for each */
  void *loop_arg;
  int record_times;      /* take op start/end timestamps (PATHFLOW_TRACE) */
  uint64_t spin_ns;      /* spin this long for an input before sleeping */
  /* >= 0: pin device d's worker to CPU number bind_first + d of the
   * process's affinity mask (counted within it), if the mask has at least
   * bind_span CPUs (the workers of every rank on the host: with fewer, an
   * oversubscribed host, the scheduler places them better); -1: never. */
  int bind_first, bind_span;
  /* Test hook (PATHFLOW_FAULT_ALLOC): > 0 makes the fault_alloc-th
   * allocation of a step's buffer or arena on this executor fail, as out
   * of memory would. 0: off. */
  int64_t fault_alloc;
  /* The devices, num_devices of them, taken over by the executor (it
   * destroys them when it stops, or when it fails to start); NULL: CPU
   * devices (runtime/device_cpu.c) with spin_ns, bind_first, bind_span and
   * device_memory. */
  pf_device **devices;
  int64_t device_memory; /* what each CPU device reports */
  /* Devices started elsewhere (device plugins, runtime/device_plugins.h),
   * n_extra_devices of them, after the num_devices above: their local
   * indices are num_devices .. num_devices + n_extra_devices - 1, and
   * pf_executor_num_devices counts them. Taken over like `devices` (also
   * when the start fails). Never bound to a CPU. */
  pf_device *const *extra_devices;
  int n_extra_devices;
  pf_clock *clock; /* time for timestamps and waits; NULL: the real clock */
  /* 1: the loop thread runs the CPU devices' ops itself, whatever their
   * length (pf_cpu_device_config.loop_runs_ops; pf_executor_run_claimed):
   * for a rank with one core. around_op, when set, is called on the loop
   * thread before (begin 1) and after (begin 0) each such op: the runtime
   * lets go of the MPI lock meanwhile, so that heartbeats go out during a
   * long kernel. */
  int loop_runs_ops;
  void (*around_op)(void *loop_arg, int begin);
} pf_executor_config;

/* Starts the devices (or takes cfg.devices), takes cfg.extra_devices, and
 * (once per process) crash handlers for SIGSEGV, SIGBUS, SIGFPE, SIGILL and
 * SIGABRT that name the kernel the crashing thread runs (rank, program,
 * kernel, shard, step) on stderr with async-signal-safe calls, then hand
 * the signal on to the action installed before them (Open MPI's, or the
 * default), so the process still dies of it.
 * Errors: PF_EINVAL, PF_ENOMEM, PF_ESYS. */
int pf_executor_start(const pf_executor_config *cfg, pf_executor **out);
/* Stops the workers after the steps queued so far have run. */
void pf_executor_stop(pf_executor *ex);
/* Every device of the executor: num_devices plus n_extra_devices. */
int pf_executor_num_devices(const pf_executor *ex);
/* Fills c->devices (up to c->num_devices): ops run per device, by its
 * worker or inline by the loop thread, and the time its worker waited for
 * a step's next op. Loop thread only (it reads the loop's own counts);
 * a worker's counts are as of the end of its last part or its last wait. */
void pf_executor_counters(const pf_executor *ex, pf_counters *c);
/* Values kept between executions stay where their step left them: a GPU's
 * outputs in its memory. These move one across the host boundary, for a
 * feed into a GPU's input and a fetch of a GPU's output (the service, on the
 * loop thread: synchronous copies by the device).
 *   to_host: *out is a host copy of st, device memory of local device
 *            st->device, or st itself (one more reference) when st is host
 *            memory already.
 *   to_device: *out is a copy of host storage st in local device `device`'s
 *            memory, or st itself (one more reference) when that device's
 *            memory is the host's or st is on it already.
 * Errors: PF_ENOMEM, PF_EINVAL (no such device), the device's copy error. */
int pf_executor_to_host(pf_executor *ex, pf_storage *st, pf_storage **out);
int pf_executor_to_device(pf_executor *ex, int device, pf_storage *st, pf_storage **out);
/* Collectives between ranks that a device runs itself (NCCL; runtime/
 * device.h, pf_device_collective) use a communicator of that device, made
 * at the plan's Connect phase by the service:
 *   pf_loaded_comm_device  the local device whose collectives use plan
 *                          communicator c (its index in plan->comms), or -1
 *                          when the transport runs c's collectives;
 *   pf_loaded_set_comm     hands the plan the device's handle for c
 *                          (comm_join's); the plan leaves it (comm_leave)
 *                          when it is released. Before the plan runs.
 *   pf_executor_device     local device d, or NULL. */
int pf_loaded_comm_device(const pf_loaded *l, uint32_t c);
/* 1 if local device d keeps its buffers in memory of its own, as it said
 * when the plan loaded. */
int pf_loaded_own_memory(const pf_loaded *l, int d);
void pf_loaded_set_comm(pf_loaded *l, uint32_t c, pf_device *d, void *handle);
pf_device *pf_executor_device(pf_executor *ex, int d);

/* 1 if local device `device` keeps its buffers in memory of its own. */
int pf_executor_device_memory(const pf_executor *ex, int device);

/* The CPU device `device`'s worker is pinned to (cfg.bind_first), or -1. */
int pf_executor_worker_cpu(const pf_executor *ex, int device);

/* Takes ownership of `plan`, checks it (pf_plan_check) and resolves its
 * kernels. Errors: PF_EDECODE (bad plan), PF_ENOKERNEL (a kernel missing on
 * this executor: the message names the rank, the kernel and the program),
 * PF_ERANGE (more than 2^32 op inputs and outputs in all), PF_ENOMEM. On
 * error the plan is freed. Thread-safe. */
int pf_executor_load(pf_executor *ex, pf_plan *plan, pf_loaded **out,
                     pf_diag *diag);
/* Drops a reference; steps in flight keep their own. NULL: no-op. */
void pf_loaded_release(pf_loaded *l);
const pf_plan *pf_loaded_plan(const pf_loaded *l);
/* The plan's buffers fed by the caller (input >= 0), in buffer order;
 * *n their count. Owned by l. */
const uint32_t *pf_loaded_inputs(const pf_loaded *l, uint32_t *n);

/* Starts a step of `l`; `seq` is the controller's step number (messages
 * and crash reports name it). `inputs[b]` is the storage fed into plan buffer b
 * for every buffer with input >= 0, with a reference the step takes over
 * (released by the executor on errors too); entries for other buffers are
 * ignored; inputs may be NULL when the plan has no inputs. Handing over
 * references (rather than the step taking its own) lets the caller drop
 * its other ones before any op runs, so that an op sees whether the step
 * alone holds an input (an in-place update, take_over in executor.c).
 * The step is queued on every device that has ops in it.
 * Errors: PF_EINVAL (a missing input storage or one too small), PF_ENOMEM.
 * Thread-safe. */
int pf_executor_run(pf_executor *ex, pf_loaded *l, pf_storage *const *inputs, uint64_t seq,
                    pf_step_done_fn done, void *arg, pf_step **out);

/* Like pf_executor_run, for a step already known to have failed (an input
 * buffer missing here): no kernel runs, but transfers and collectives still
 * happen (with zeroed data) so that peers do not wait forever. Missing
 * inputs may be NULL; the others' references are taken over likewise. */
int pf_executor_run_failed(pf_executor *ex, pf_loaded *l, pf_storage *const *inputs, uint64_t seq,
                           const pf_diag *why, pf_step_done_fn done, void *arg,
                           pf_step **out);

/* Loop thread: describes into buf (n bytes, always terminated) each kernel
 * running now on a device worker or inline on the loop thread ("kernel K
 * (program P, shard S of N, step T) on device D", separated by "; ").
 * Returns how many run. */
int pf_executor_running(pf_executor *ex, char *buf, size_t n);

/* Buffer b's release point (executor.c): the op that can only start once
 * every read of b is done, where b's device lets go of its memory (or its
 * slot becomes free) instead of counting b's reads; UINT32_MAX: b's reads
 * are counted. For the tests. */
uint32_t pf_loaded_release_point(const pf_loaded *l, uint32_t b);
/* Buffer b's offset in a step's slot area (plan_slots, executor.c), or
 * UINT32_MAX: it gets memory of its own. For the tests. */
uint32_t pf_loaded_slot(const pf_loaded *l, uint32_t b);
/* How many of op i's inputs are told by done flags instead of its count
 * (plan_flags, executor.c; pf_device_ops.asleep): 0 when they are
 * counted. For the tests. */
uint32_t pf_loaded_flag_inputs(const pf_loaded *l, uint32_t i);
/* How many of those are told by the flag word in the slot line of the
 * input's output (executor.c, SLOT_FLAG), not by the input op's t_end. For
 * the tests. */
uint32_t pf_loaded_slot_flag_inputs(const pf_loaded *l, uint32_t i);
/* 1 if kernel op i may run in the completion of the loop collective it
 * alone reads (its epilogue: every input and output in the slot area, no
 * release point, no read counted; executor.c, is_epilogue), where the loop
 * thread runs its device's ops. For the tests. */
int pf_loaded_is_epilogue(const pf_loaded *l, uint32_t i);

/* 1 if op i is performed by the loop thread (SEND, RECV, MPI collective). */
int pf_loaded_is_loop_op(const pf_loaded *l, uint32_t op);

/* For the loop thread performing op i: the storage of buffer b, allocated
 * (zero-filled) if nothing wrote it (a skipped producer of a failed step);
 * in a device's own memory (a CUDA-aware transport receiving into a GPU)
 * allocated but not filled: the host cannot write it, and a receive writes
 * its whole box. NULL when out of memory: the step has then failed with
 * PF_ENOMEM, its message naming the rank, the step and the bytes. */
pf_storage *pf_step_buffer(pf_step *s, uint32_t b);
/* As pf_step_buffer, but new memory is not zero-filled: for a caller that
 * writes every byte of b before anything reads it (a receive whose box is
 * the whole buffer, a collective's output): zeroing it first would be a
 * second pass over the memory for nothing. */
pf_storage *pf_step_buffer_whole(pf_step *s, uint32_t b);
/* Where buffer b lies in the step's slot area, or NULL when it gets
 * storage of its own (pf_step_buffer). A small buffer that transfers or a
 * one-shard allreduce read or write (and only kernels besides) lies there
 * for the whole step (executor.c, PERMANENT_SLOT_BYTES): sent from,
 * received into and reduced in, with no storage; its contents are
 * undefined until its writer ran. */
void *pf_step_slot(pf_step *s, uint32_t b);
/* Buffer b of the step if it has memory now, else NULL (allocates nothing):
 * what a failed step's transfers use before falling back on a reserve. */
pf_storage *pf_step_buffer_if_any(pf_step *s, uint32_t b);
/* 1 once the step has failed (its kernels are then skipped). */
int pf_step_failed(const pf_step *s);
/* Fails the step with `code` and a message (the first failure is kept);
 * its later kernels are skipped, its transfers and collectives still go. */
void pf_executor_step_fail(pf_step *s, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
const pf_plan *pf_step_plan(const pf_step *s);

/* Loop thread, loop_runs_ops: runs the ops the devices hand over (claim),
 * and those they make ready in turn, until none is left. Returns how many
 * ran. */
int pf_executor_run_claimed(pf_executor *ex);

/* The loop thread finished op i: `status` 0 or an error recorded as the
 * step's failure with `message`. Wakes dependents; may complete the step.
 * Always the same thread for a step (its loop ops are counted without
 * atomics). */
void pf_executor_loop_op_done(pf_step *s, uint32_t op, int status, const char *message);

/* Writes what each device queue of the step waits on (watchdog). */
void pf_step_dump(const pf_step *s, void *file);

/* After done: the status (0 or the first error) and its message. */
int pf_step_status(const pf_step *s);
const char *pf_step_message(const pf_step *s);
/* After done: a new reference to the storage of buffer b (an output), or
 * NULL if the step failed or b holds nothing. */
pf_storage *pf_step_take(pf_step *s, uint32_t b);
/* Nanosecond timestamps of op i's start and end on its worker, when the
 * executor records times; else 0 and 1 once the op is done. */
void pf_step_op_times(const pf_step *s, uint32_t op, uint64_t *start,
                      uint64_t *end);
/* The `arg` given to pf_executor_run for this step. */
void *pf_step_arg(const pf_step *s);
/* Frees a completed step and every buffer reference it still holds. */
void pf_step_free(pf_step *s);

#endif
