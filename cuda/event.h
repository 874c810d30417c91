/* Internal: completion of work on a CUDA stream, by events.
 *
 * An event is recorded after an op; the executor asks whether it has
 * completed (a poll that never blocks, for a loop that has other work) or
 * waits on it. Events are created with blocking synchronization, so a wait
 * sleeps in the driver instead of spinning a core.
 */
#ifndef PF_CUDA_EVENT_H
#define PF_CUDA_EVENT_H

#include <cuda_runtime_api.h>

#include "pathflow/error.h"

/* Creates an event (no timing, blocking sync) on the current device.
 * Errors: PF_ENOMEM, PF_ESYS, PF_ENOTFOUND (no driver). */
int pf_cuda_event_create(cudaEvent_t *out, pf_diag *diag);

/* Records `ev` after the work queued so far on `stream`. */
int pf_cuda_event_record(cudaEvent_t ev, cudaStream_t stream, pf_diag *diag);

/* 1 when the work before the recorded point has completed (or the event was
 * never recorded), 0 while it runs; a negative PF_E code when that work
 * failed (the CUDA error, in `diag`). Never blocks. */
int pf_cuda_event_done(cudaEvent_t ev, pf_diag *diag);

/* Waits, sleeping, until the event completed; 0 or a PF_E code. */
int pf_cuda_event_wait(cudaEvent_t ev, pf_diag *diag);

/* Destroys an event (recorded work need not have completed). */
void pf_cuda_event_destroy(cudaEvent_t ev);

#endif
