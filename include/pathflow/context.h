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

#include "kernel.h"
#include "types.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct pf_init_options {
  /* Local CPU devices. 0 means: PATHFLOW_CPU_DEVICES if set, else the number
   * of cores in the process's affinity mask. */
  int cpu_devices;
} pf_init_options;

/* Creates the context: registers the built-in kernels, discovers local
 * devices, starts the loop and worker threads. argc/argv may be NULL.
 * `opts` may be NULL for defaults.
 * Errors: PF_EINVAL (bad option or bad PATHFLOW_CPU_DEVICES: the message
 * names the variable), PF_ENOMEM, PF_ESYS (a thread or the loop could not
 * start). On error *out is NULL and nothing is left running. */
int pf_init(int *argc, char ***argv, const pf_init_options *opts,
            pf_context **out);

/* Waits for executions in flight, stops the threads, frees everything the
 * context owns (buffers, executables, futures not yet destroyed) and the
 * context itself. NULL is a no-op. Returns 0 or the first error seen while
 * draining. */
int pf_finalize(pf_context *ctx);

/* The message of the last error a call on this context returned: it names
 * the node, kernel, value, shape or variable at fault. "" if none. Valid
 * until the next call on the context. */
const char *pf_last_error(const pf_context *ctx);

/* Number of devices of `kind` that this context can place programs on. */
int pf_device_count(const pf_context *ctx, pf_device_kind kind);

#ifdef __cplusplus
}
#endif
#endif
