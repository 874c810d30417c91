/* Internal: how a CUDA kernel reports bad data (a label out of range, a
 * negative step) without aborting: it records the first offending index in
 * a fault word in device memory, which the host reads when it next waits on
 * the stream (pf_cuda_stream_sync) and turns into a PF_E code and message.
 * Shared by the host code (C) and the device code (.cu).
 */
#ifndef PF_CUDA_FAULT_H
#define PF_CUDA_FAULT_H

#include <stdint.h>

/* What went wrong: the kernel and the kind of datum. */
enum {
  PF_CUDA_FAULT_NONE = 0,
  PF_CUDA_FAULT_LABEL = 1, /* softmax_xent: label outside [0, limit) */
  PF_CUDA_FAULT_STEP = 2   /* batch_rows: negative step */
};

typedef struct pf_cuda_fault {
  int code;               /* PF_CUDA_FAULT_*; the first fault wins */
  int unused;
  unsigned long long at;  /* first offending index (row); ~0 when none */
  long long value;        /* the offending value */
  long long limit;        /* the bound it broke */
} pf_cuda_fault;

#endif
