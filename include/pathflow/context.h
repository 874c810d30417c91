/* pathflow: the context.
 *
 * One pf_context per process. It owns the kernel registry, the local
 * executor (one worker thread per local device plus one libuv loop thread)
 * and every buffer, executable and future made through it.
 *
 * Threads: the context starts exactly 1 + (number of local devices) threads:
 * the loop thread, which owns scheduling state and, in a distributed job,
 * every MPI call; and one worker per device, which runs that device's queue
 * in order. See docs/architecture.md for how this meets mpirun --bind-to.
 *
 * The public functions may be called from any one user thread at a time
 * (the context is not meant to be driven by several user threads at once).
 */
#ifndef PATHFLOW_CONTEXT_H
#define PATHFLOW_CONTEXT_H

#include "export.h"
#include "kernel.h"
#include "types.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct pf_init_options {
  /* Local CPU devices. 0 means: PATHFLOW_CPU_DEVICES if set, else the number
   * of cores in the process's affinity mask. */
  int cpu_devices;
  /* User kernels to register on every rank before executors start serving
   * (in an mpirun job, kernels registered after pf_init exist on rank 0
   * only). The definitions are copied. */
  const pf_kernel_def *kernels;
  int n_kernels;
  /* Kernel plugins (shared libraries, see pf_kernels_load) to load on every
   * rank, NULL-terminated; PATHFLOW_KERNELS (paths separated by ':') adds
   * more. */
  const char *const *kernel_plugins;
  /* Executions admitted at once (dispatched or waiting for one of the 64
   * dispatch slots): past it, pf_execute blocks and pf_execute_try returns
   * PF_EAGAIN until one completes. Each holds its host feeds on the
   * executors until it completes. 0 means PF_MAX_PENDING_DEFAULT. */
  int max_pending;
} pf_init_options;

#define PF_MAX_PENDING_DEFAULT 1024

/* Creates the context.
 *
 * Launched by mpirun (or with PATHFLOW_MPI=1), pf_init calls
 * MPI_Init_thread(MPI_THREAD_SERIALIZED) unless MPI is already initialized,
 * and every rank registers its devices with rank 0. Rank 0 returns: it is
 * the controller (and an executor). Every other rank serves as an executor
 * and DOES NOT RETURN: once the controller calls pf_finalize, it finalizes
 * MPI and exits the process with status 0. Started without mpirun, the
 * process is a one-rank job with no MPI.
 *
 * Registers the built-in kernels, then opts->kernels and the plugins,
 * discovers local devices, starts the loop and worker threads. argc/argv
 * may be NULL. `opts` may be NULL for defaults.
 * Errors: PF_EINVAL (bad option, such as a negative cpu_devices or
 * max_pending, or environment variable: the message names it), PF_ENOTFOUND (a plugin), PF_EMPI, PF_ENOMEM, PF_ESYS. On error *out
 * is NULL and nothing is left running. pf_last_error cannot be used without
 * a context, so pf_init prints the message to stderr. In an MPI job (mpirun,
 * or PATHFLOW_MPI=1) a failing pf_init does not return: the job cannot go
 * on without the rank, so pf_init ends it with MPI_Abort (initializing MPI
 * first if the failure came before it), and mpirun exits non-zero. */
PF_API int pf_init(int *argc, char ***argv, const pf_init_options *opts,
            pf_context **out);

/* This process's rank and the number of ranks (1 without MPI). */
PF_API int pf_rank(const pf_context *ctx);
PF_API int pf_world_size(const pf_context *ctx);

/* Waits for executions in flight, stops the threads and frees everything
 * the context owns (buffers, executables, futures not yet destroyed). NULL
 * is a no-op. Returns 0, or PF_ESTATE when the context was already
 * finalized.
 *
 * After it, the executables, futures and buffers of the context are gone
 * (using them is undefined), but the context pointer itself stays safe to
 * pass: every call taking it, or a graph of it (pf_compile, the builders),
 * returns PF_ESTATE ("the context was finalized" in pf_last_error),
 * pf_device_count returns 0. The context keeps a few KiB (and its kernel
 * registry) until the process ends, for that. */
PF_API int pf_finalize(pf_context *ctx);

/* Ends the whole job now, from any rank, before or after pf_init: prints
 * `why` (NULL: a default) to stderr (in an MPI job with this process's
 * rank), then, in an MPI job (launched by mpirun), calls MPI_Abort(code),
 * initializing MPI first if it is not, so that mpirun ends every rank and
 * exits non-zero (if this process's MPI initialization failed, MPI is not
 * called again: the process aborts, and mpirun ends the job on that);
 * outside one, exit(code). Does not return. A program that gives up on
 * its own (bad arguments) should leave an mpirun job this way: a process
 * that simply exits while the others are starting can hang Open MPI 4.1's
 * mpirun (see docs/architecture.md, Faults). */
PF_API void pf_abort(int code, const char *why) __attribute__((noreturn));

/* The message of the last error a call on this context returned: it names
 * the node, kernel, value, shape or variable at fault. Every call that can
 * fail and reaches the context (through the context, a graph, an
 * executable or a future) clears it when it starts, so after a call that
 * succeeded it is "". pf_future_wait and pf_future_wait_for set it to the
 * execution's message when it failed. Calls that cannot fail leave it as
 * it is: pf_last_error, pf_rank, pf_world_size, pf_device_count,
 * pf_future_done, pf_future_error, pf_executable_num_inputs/outputs and
 * the destroy functions. Valid until the next call on the context.
 * With ctx NULL (pf_init failed, and set *out to NULL): a constant
 * sentence saying that pf_init printed its message on stderr, so that
 * "call failed: %s" after a failed pf_init still tells where to look. */
PF_API const char *pf_last_error(const pf_context *ctx);

/* Number of devices of `kind` that this context can place programs on: on
 * rank 0 of an mpirun job, the devices of every rank. 0 once finalized. */
PF_API int pf_device_count(const pf_context *ctx, pf_device_kind kind);

#ifdef __cplusplus
}
#endif
#endif
