/* Completion of work on a CUDA stream, by events (see cuda/event.h). */
#include "cuda/event.h"

#include "cuda/error.h"

int pf_cuda_event_create(cudaEvent_t *out, pf_diag *diag) {
  return pf_cuda_error(
      diag,
      cudaEventCreateWithFlags(out,
                               cudaEventDisableTiming | cudaEventBlockingSync),
      "cudaEventCreateWithFlags");
}

int pf_cuda_event_record(cudaEvent_t ev, cudaStream_t stream, pf_diag *diag) {
  return pf_cuda_error(diag, cudaEventRecord(ev, stream), "cudaEventRecord");
}

int pf_cuda_event_done(cudaEvent_t ev, pf_diag *diag) {
  cudaError_t err = cudaEventQuery(ev);
  if (err == cudaSuccess) return 1;
  if (err == cudaErrorNotReady) return 0;
  return pf_cuda_error(diag, err, "cudaEventQuery");
}

int pf_cuda_event_wait(cudaEvent_t ev, pf_diag *diag) {
  return pf_cuda_error(diag, cudaEventSynchronize(ev), "cudaEventSynchronize");
}

void pf_cuda_event_destroy(cudaEvent_t ev) {
  if (ev != NULL) (void)cudaEventDestroy(ev);
}
