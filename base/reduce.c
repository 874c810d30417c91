/* Element-wise reductions: what collectives do to blocks, wherever they
 * run (local collectives, the staging of collectives across ranks, the
 * loopback transport). */
#include "base/reduce.h"

#include <stdint.h>

/* d[i] = op(a[i], s[i]); a may be d (in place). */
#define REDUCE_LOOP(T)                                                      \
  do {                                                                      \
    T *d = dst;                                                             \
    const T *a = in, *s = src;                                              \
    switch (reduce_op) {                                                    \
      case PF_REDUCE_MAX:                                                   \
        for (size_t i = 0; i < n; i++) d[i] = s[i] > a[i] ? s[i] : a[i];    \
        break;                                                              \
      case PF_REDUCE_MIN:                                                   \
        for (size_t i = 0; i < n; i++) d[i] = s[i] < a[i] ? s[i] : a[i];    \
        break;                                                              \
      default:                                                              \
        for (size_t i = 0; i < n; i++) d[i] = a[i] + s[i];                  \
        break;                                                              \
    }                                                                       \
  } while (0)

void pf_reduce_pair(void *dst, const void *in, const void *src, size_t n, pf_dtype dtype,
                    int reduce_op) {
  switch (dtype) {
    case PF_F32: REDUCE_LOOP(float); break;
    case PF_F64: REDUCE_LOOP(double); break;
    case PF_I32: REDUCE_LOOP(int32_t); break;
    case PF_I64: REDUCE_LOOP(int64_t); break;
    default: break; /* the graph validator refuses other dtypes */
  }
}

void pf_reduce_into(void *dst, const void *src, size_t n, pf_dtype dtype, int reduce_op) {
  pf_reduce_pair(dst, dst, src, n, dtype, reduce_op);
}

void pf_reduce_mean(void *dst, size_t n, pf_dtype dtype, int count) {
  if (dtype == PF_F32)
    for (size_t i = 0; i < n; i++) ((float *)dst)[i] /= (float)count;
  if (dtype == PF_F64)
    for (size_t i = 0; i < n; i++) ((double *)dst)[i] /= (double)count;
}

