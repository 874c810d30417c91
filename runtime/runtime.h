/* Internal: the per-process runtime: one libuv loop thread plus the
 * executor's device workers.
 *
 * The loop thread owns submission and completion of steps (and, in a
 * distributed job, every MPI call). Other threads talk to it through
 * uv_async_send: the user thread submits steps, device workers report
 * finished steps. When nothing is pending the loop sleeps in epoll, so an
 * idle process uses no CPU.
 */
#ifndef PF_RUNTIME_RUNTIME_H
#define PF_RUNTIME_RUNTIME_H

#include "runtime/executor.h"

typedef struct pf_runtime pf_runtime;

/* Called on the loop thread when a submitted step completed (status in the
 * step) or could not start (`rc` < 0, step NULL). The callee owns the step. */
typedef void (*pf_runtime_cb)(pf_step *step, int rc, void *arg);

/* Starts the executor and the loop thread. Errors: as pf_executor_start. */
int pf_runtime_start(const pf_executor_config *cfg, pf_runtime **out);

/* Waits for every submitted step to complete, then stops all threads. */
void pf_runtime_stop(pf_runtime *rt);

pf_executor *pf_runtime_executor(pf_runtime *rt);

/* Queues a step of `l` (the runtime takes a reference to l). `inputs` is an
 * array of plan-buffer-indexed storages, malloc'd by the caller; ownership
 * of the array and of one reference per non-NULL entry passes to the
 * runtime. Thread-safe. Errors: PF_ENOMEM, PF_ESTATE (stopping). */
int pf_runtime_submit(pf_runtime *rt, pf_loaded *l, pf_storage **inputs,
                      pf_runtime_cb cb, void *arg);

/* Number of steps submitted and not yet completed. Thread-safe. */
int pf_runtime_in_flight(pf_runtime *rt);

#endif
