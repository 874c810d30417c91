/* Internal: the GPUs an executor may use.
 *
 * CUDA numbers the GPUs it sees 0..n-1, after the driver has applied
 * CUDA_VISIBLE_DEVICES. PATHFLOW_CUDA_DEVICES, a comma-separated list of
 * those numbers (e.g. "0,2"), restricts pathflow to some of them, in the
 * order given; unset or empty means all. Several executors on one machine
 * use it (or CUDA_VISIBLE_DEVICES) to take distinct GPUs.
 */
#ifndef PF_CUDA_DISCOVER_H
#define PF_CUDA_DISCOVER_H

#include <stddef.h>

#include "pathflow/error.h"

#define PF_CUDA_MAX_DEVICES 64
#define PF_CUDA_NAME_MAX 256

/* What an executor reports about one GPU when it registers it. */
typedef struct pf_cuda_device_info {
  int ordinal;             /* CUDA device number */
  char name[PF_CUDA_NAME_MAX];
  size_t total_bytes;      /* global memory */
  size_t free_bytes;       /* free when discovered */
  int sm_count;            /* streaming multiprocessors */
  int cc_major, cc_minor;  /* compute capability */
  int clock_khz;           /* SM clock */
} pf_cuda_device_info;

/* Parses a PATHFLOW_CUDA_DEVICES value against `visible` GPUs into
 * ordinals[0..*n) (at most `max`). NULL or "" selects all of them.
 * Errors (PF_EINVAL, the message quoting the value): not a list of
 * integers, a number >= visible or negative, a number listed twice, more
 * than `max`. */
int pf_cuda_parse_devices(const char *spec, int visible, int *ordinals,
                          int max, int *n, pf_diag *diag);

/* The GPUs this process may use: every visible one, restricted by
 * PATHFLOW_CUDA_DEVICES, into out[0..*n) (at most `max`). Reading each
 * GPU's free memory makes it the calling thread's current device in turn. *n is 0, and the call succeeds, when there is no
 * GPU or no driver: a machine without GPUs is not an error. Errors:
 * PF_EINVAL (a bad PATHFLOW_CUDA_DEVICES), PF_ESYS (the driver failed). */
int pf_cuda_discover(pf_cuda_device_info *out, int max, int *n, pf_diag *diag);

/* The number of GPUs CUDA sees (0 without a GPU or a driver); never
 * fails. Tests use it to decide whether to skip. */
int pf_cuda_visible_count(void);

#endif
