/* GPU discovery and PATHFLOW_CUDA_DEVICES (see cuda/discover.h). */
#include "cuda/discover.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cuda_runtime_api.h>

#include "base/util.h"
#include "cuda/error.h"

int pf_cuda_parse_devices(const char *spec, int visible, int *ordinals,
                          int max, int *n, pf_diag *diag) {
  char item[32];
  const char *p = spec;
  int count = 0;
  if (spec == NULL || spec[0] == '\0') {
    if (visible > max)
      return pf_diag_error(diag, PF_EINVAL,
                           "%d GPUs visible; pathflow drives at most %d",
                           visible, max);
    for (int i = 0; i < visible; i++) ordinals[i] = i;
    *n = visible;
    return 0;
  }
  for (;;) {
    const char *end = strchr(p, ',');
    size_t len = end ? (size_t)(end - p) : strlen(p);
    int64_t v;
    if (len == 0 || len >= sizeof item)
      return pf_diag_error(diag, PF_EINVAL,
                           "PATHFLOW_CUDA_DEVICES=\"%s\": expected GPU "
                           "numbers separated by commas, such as \"0,1\"",
                           spec);
    memcpy(item, p, len);
    item[len] = '\0';
    if (pf_parse_int(item, 0, INT32_MAX, &v) != 0)
      return pf_diag_error(diag, PF_EINVAL,
                           "PATHFLOW_CUDA_DEVICES=\"%s\": \"%s\" is not a GPU "
                           "number",
                           spec, item);
    if (v >= visible)
      return pf_diag_error(diag, PF_EINVAL,
                           "PATHFLOW_CUDA_DEVICES=\"%s\": GPU %lld does not "
                           "exist; %d visible (numbered after "
                           "CUDA_VISIBLE_DEVICES)",
                           spec, (long long)v, visible);
    for (int i = 0; i < count; i++)
      if (ordinals[i] == (int)v)
        return pf_diag_error(diag, PF_EINVAL,
                             "PATHFLOW_CUDA_DEVICES=\"%s\": GPU %lld is listed "
                             "twice",
                             spec, (long long)v);
    if (count == max)
      return pf_diag_error(diag, PF_EINVAL,
                           "PATHFLOW_CUDA_DEVICES=\"%s\": more than %d GPUs",
                           spec, max);
    ordinals[count++] = (int)v;
    if (end == NULL) break;
    p = end + 1;
  }
  *n = count;
  return 0;
}

int pf_cuda_visible_count(void) {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) {
    (void)cudaGetLastError();
    return 0;
  }
  return count;
}

int pf_cuda_discover(pf_cuda_device_info *out, int max, int *n, pf_diag *diag) {
  int ordinals[PF_CUDA_MAX_DEVICES], count = 0, picked = 0, rc;
  cudaError_t err = cudaGetDeviceCount(&count);
  *n = 0;
  if (err == cudaErrorNoDevice || err == cudaErrorInsufficientDriver) {
    (void)cudaGetLastError();
    return 0; /* no GPU here: CPU devices only */
  }
  if ((rc = pf_cuda_error(diag, err, "cudaGetDeviceCount")) != 0) return rc;
  if ((rc = pf_cuda_parse_devices(getenv("PATHFLOW_CUDA_DEVICES"), count,
                                  ordinals, PF_MINOF(max, PF_CUDA_MAX_DEVICES),
                                  &picked, diag)) != 0)
    return rc;
  for (int i = 0; i < picked; i++) {
    struct cudaDeviceProp prop;
    pf_cuda_device_info *d = &out[i];
    memset(d, 0, sizeof *d);
    if ((rc = pf_cuda_error(diag, cudaGetDeviceProperties(&prop, ordinals[i]),
                            "cudaGetDeviceProperties")) != 0)
      return rc;
    d->ordinal = ordinals[i];
    snprintf(d->name, sizeof d->name, "%s", prop.name);
    d->total_bytes = prop.totalGlobalMem;
    d->sm_count = prop.multiProcessorCount;
    d->cc_major = prop.major;
    d->cc_minor = prop.minor;
    /* cudaDeviceProp.clockRate is gone in CUDA 13: ask the attribute. */
    (void)cudaDeviceGetAttribute(&d->clock_khz, cudaDevAttrClockRate,
                                 ordinals[i]);
    if ((rc = pf_cuda_error(diag, cudaSetDevice(ordinals[i]),
                            "cudaSetDevice")) != 0 ||
        (rc = pf_cuda_error(diag, cudaMemGetInfo(&d->free_bytes, &d->total_bytes),
                            "cudaMemGetInfo")) != 0)
      return rc;
  }
  *n = picked;
  return 0;
}
