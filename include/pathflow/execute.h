/* pathflow: compiling and executing graphs.
 *
 *   pf_compile   graph -> executable (placed, lowered, checked)
 *   pf_execute   executable + feeds -> future (returns at once)
 *   pf_future_*  wait, status, outputs
 *   pf_buffer_*  outputs that stay on the devices: fetch to host, feed to a
 *                later execution without a host copy, or release.
 *
 * Buffers are ids that are never reused: a released or unknown buffer gives
 * PF_ESTALE, never a use-after-free.
 */
#ifndef PATHFLOW_EXECUTE_H
#define PATHFLOW_EXECUTE_H

#include "export.h"
#include "context.h"
#include "graph.h"
#include "tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct pf_executable pf_executable;
typedef struct pf_future pf_future;

/* A device-resident value: its shards, on the devices where it was made. */
typedef struct pf_buffer_t {
  uint64_t id; /* 0 is never a valid buffer */
} pf_buffer_t;

/* Compiles `g`. The executable does not refer to the graph afterwards.
 * Errors: any of pf_graph_validate's, PF_ESLICE (placement), PF_ENOMEM. */
PF_API int pf_compile(pf_graph *g, pf_executable **out);

/* Frees the executable. Executions in flight keep what they need and
 * complete normally. NULL is a no-op. */
PF_API void pf_executable_destroy(pf_executable *exe);

/* Names and global specs of the executable's inputs and outputs, in the
 * order they were added to the graph. Errors: PF_EINVAL (index). */
PF_API int pf_executable_num_inputs(const pf_executable *exe);
PF_API int pf_executable_num_outputs(const pf_executable *exe);
PF_API int pf_executable_input(const pf_executable *exe, int i, const char **name,
                        pf_spec *spec);
PF_API int pf_executable_output(const pf_executable *exe, int i, const char **name,
                         pf_spec *spec);

/* Peak bytes one execution needs on global device `device` (rank-major
 * numbering, as pf_graph_slice_pin): the step arena where the memory plan
 * lets buffers with disjoint lifetimes share memory, plus the most other
 * buffers (inputs, outputs, transfer targets) live at once. pf_compile
 * refuses a plan whose peak exceeds a device's memory; when executions
 * are dispatched, a step goes out only when its peak fits beside the peaks
 * of the steps in flight on each device it uses (else it waits in its
 * queue until enough of them complete).
 * Errors: PF_EINVAL (bad device). */
PF_API int pf_executable_peak_memory(const pf_executable *exe, int device, int64_t *bytes);

/* Multi-tenancy: executables sharing devices get dispatch slots in
 * proportion to their weights (stride scheduling) while they have
 * executions waiting. Default weight 1. Errors: PF_EINVAL (weight <= 0 or
 * not finite). */
PF_API int pf_executable_set_weight(pf_executable *exe, double weight);

typedef struct pf_executable_stats {
  double weight;
  uint64_t steps_dispatched, steps_completed;
  /* Over the dispatches made while this executable had executions waiting:
   * the fraction it received, and the fraction its weight entitled it to. */
  double share, expected_share;
} pf_executable_stats;

/* Errors: PF_EINVAL. */
PF_API int pf_executable_stats_get(pf_executable *exe, pf_executable_stats *out);

/* Host tensors fed to an execution and values fetched to the host move
 * shard by shard (between ranks, a shard of 64 KiB or more goes on the
 * data path, from and into its memory in 64 MiB chunks): a shard (the part
 * of the tensor one device holds) is at most PF_HOST_SHARD_MAX bytes, 511
 * MiB, on every rank alike (what an executor accepts from a peer's
 * message, so that a corrupt one cannot make it allocate more). Checked
 * before anything is sent: pf_execute, pf_future_fetch and pf_buffer_fetch return
 * PF_ERANGE naming the input or output, the shard's size and the limit.
 * Larger values can still be computed and kept on the devices as buffers;
 * split them over more devices to move them. */
#define PF_HOST_SHARD_MAX ((int64_t)511 << 20)

/* One feed: a graph input by name, from a host tensor (copied into the
 * devices before pf_execute returns, so the tensor may be freed at once) or
 * from a device buffer (no host copy; the buffer stays valid and owned by
 * the caller). Exactly one of tensor and buffer.id must be set. */
typedef struct pf_feed {
  const char *name;
  const pf_tensor *tensor;
  pf_buffer_t buffer;
  /* With a buffer: 1 gives it up to this execution. pf_execute releases
   * the handle as pf_buffer_release would (later use of it: PF_ESTALE),
   * and a kernel that updates in place (pf_kernel_def.in_place, as adam
   * and momentum do) may then write its output into the buffer's memory
   * instead of new memory: an optimizer step updates parameters and state
   * where they lie. Memory still read elsewhere (another execution in
   * flight, a later op of this one) is never written: that output then gets
   * memory of its own. Refused by pf_execute (PF_EINVAL, nothing runs, the
   * buffer stays valid) with a tensor feed, or when another feed of the
   * call names the same buffer (it is still needed there). */
  int donate;
} pf_feed;

/* Starts one execution and returns its future. Up to 64 executions are in
 * flight; more wait in their executable's queue (their host feeds are
 * already sent) and go out as slots free, by weight.
 *
 * Backpressure: at most pf_init_options.max_pending executions (default
 * PF_MAX_PENDING_DEFAULT, 1024) are admitted at once, in flight or queued,
 * across the context's executables. When that many are pending,
 * pf_execute BLOCKS until one of them completes (it always will: pending
 * executions need nothing more from the caller), then starts this one.
 * The work per execution does not grow with the number pending.
 * Errors (nothing runs): PF_ENOFEED (an input has no feed: the message names
 * it), PF_EFEEDSHAPE (dtype or shape differs from the input's: the message
 * gives both), PF_ENOTFOUND (feed for no such input), PF_EEXIST (input fed
 * twice), PF_ESTALE (released buffer), PF_ERANGE (a host feed's shard over
 * PF_HOST_SHARD_MAX), PF_ENOMEM. */
PF_API int pf_execute(pf_executable *exe, int n_feeds, const pf_feed *feeds,
               pf_future **out);

/* As pf_execute, but never blocks: when max_pending executions are
 * pending it returns PF_EAGAIN at once and does nothing (no feed is copied
 * or sent, *out is NULL); try again after a pending future completes.
 * Errors: PF_EAGAIN, and those of pf_execute. */
PF_API int pf_execute_try(pf_executable *exe, int n_feeds, const pf_feed *feeds,
                   pf_future **out);

/* Blocks until the execution completes; returns its status: 0, or the first
 * error (PF_EKERNEL with pf_future_error naming rank, node and kernel).
 * Where every CPU of the process carries a rank's loop thread (mpirun
 * with as many ranks as cores, unbound), the calling thread waits on its
 * own rank's loop's CPU: its CPU affinity is narrowed to that CPU for the
 * wait and put back as it was before this returns (a thread whose
 * affinity excludes that CPU is left alone). docs/architecture.md says
 * why. */
PF_API int pf_future_wait(pf_future *f);

/* Like wait with a time limit: PF_ETIMEDOUT if not done in `timeout_ms`
 * (the same CPU for the wait). */
PF_API int pf_future_wait_for(pf_future *f, int64_t timeout_ms);

/* 1 if complete, 0 if not. Never blocks. */
PF_API int pf_future_done(const pf_future *f);

/* The error message of a failed execution, "" if it succeeded or is still
 * running. Valid as long as the future. */
PF_API const char *pf_future_error(const pf_future *f);

/* Hands output `name` of an execution to the caller as a buffer (release
 * it with pf_buffer_release). It stays where it is made: no copy, no
 * transfer. An output is handed over once.
 *
 * The execution need not be complete: the buffer then stands for the
 * value it will make, and may be fed (or donated) to the next pf_execute at
 * once, fetched or released. Each executor starts a run fed such a buffer
 * once the run making it there has stored it, and holds a fetch or release
 * of it until then, so a client can keep the devices busy by sending step
 * k + 1 before it waits for step k (a training loop, bench/train). If
 * that execution fails, what reads the buffer fails with a message naming
 * the run that was to make it. Returns at once, unless the execution still
 * waits for a dispatch slot (or, dispatched stage by stage, for its
 * stages to start): then it waits for that.
 * Errors: PF_ESTATE (the execution failed, or the output was already
 * handed over), PF_ENOTFOUND (no such output). */
PF_API int pf_future_output(pf_future *f, const char *name, pf_buffer_t *out);

/* Output `name` of a completed, successful execution gathered into a new
 * host tensor owned by the caller. Each shard an executor sends back is
 * checked against the shard's size.
 * Errors: PF_ESTATE (not complete, failed, or handed over as a buffer),
 * PF_ENOTFOUND, PF_ERANGE (a shard over PF_HOST_SHARD_MAX),
 * PF_EDECODE (a reply of the wrong size: the message names the output, the
 * rank, the shard and both sizes), PF_ENOMEM. */
PF_API int pf_future_fetch(pf_future *f, const char *name, pf_tensor **out);

/* Frees the future; its outputs not handed over with pf_future_output are
 * released on the executors. Waits first if still running. NULL: no-op. */
PF_API void pf_future_destroy(pf_future *f);

/* Copies a buffer's value (gathered from its shards) into a new host tensor
 * owned by the caller. Errors: PF_ESTALE, PF_ERANGE and PF_EDECODE (as
 * pf_future_fetch), PF_ENOMEM. */
PF_API int pf_buffer_fetch(pf_context *ctx, pf_buffer_t buf, pf_tensor **out);

/* The global spec of a buffer. Errors: PF_ESTALE. */
PF_API int pf_buffer_spec(pf_context *ctx, pf_buffer_t buf, pf_spec *out);

/* Drops the caller's handle; device memory is freed when no execution uses
 * it any more. Errors: PF_ESTALE (already released or never made). */
PF_API int pf_buffer_release(pf_context *ctx, pf_buffer_t buf);

/* Puts host tensor `t` on the devices as a new buffer (release it with
 * pf_buffer_release), to feed executions without a host copy each time:
 * model parameters, a dataset. `devices` are n_devices global device
 * indices (rank-major, as pf_graph_slice_pin); `sharding` is
 * pf_replicated() (a whole copy on each device) or pf_split(axis) (device
 * i holds the i-th of n_devices equal parts along axis). The tensor is
 * copied and sent before this returns; the caller keeps it. A buffer fed
 * to an input that wants it on the same devices with the same sharding
 * moves nothing; else it is gathered and re-split (pf_buffer_put_for puts
 * it where an input wants it).
 * Errors: PF_EINVAL (NULL argument, no device, a device out of range, a
 * sharding other than replicated or split), PF_ESPLIT (axis out of range or
 * not dividing by n_devices), PF_ERANGE (a shard over PF_HOST_SHARD_MAX),
 * PF_ESTATE (finalized context), PF_ENOMEM. */
PF_API int pf_buffer_put(pf_context *ctx, const pf_tensor *t, int n_devices, const int *devices,
                  pf_sharding sharding, pf_buffer_t *out);

/* As pf_buffer_put, on the devices and with the sharding that input `input`
 * of `exe` wants: feeding the buffer to exe then moves nothing.
 * Errors: PF_ENOTFOUND (no such input), PF_EFEEDSHAPE (t's spec differs
 * from the input's: both in the message), as pf_buffer_put. */
PF_API int pf_buffer_put_for(pf_executable *exe, const char *input, const pf_tensor *t,
                      pf_buffer_t *out);

#ifdef __cplusplus
}
#endif
#endif
