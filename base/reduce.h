/* Internal: element-wise reductions of blocks (SUM, MAX, MIN, MEAN). */
#ifndef PF_BASE_REDUCE_H
#define PF_BASE_REDUCE_H

#include <stddef.h>

#include "pathflow/types.h"

/* dst[i] = op(dst[i], src[i]) for n elements of dtype (MEAN accumulates a
 * sum). Dtypes other than f32, f64, i32, i64 are left alone (the graph
 * validator refuses reductions of them). */
void pf_reduce_into(void *dst, const void *src, size_t n, pf_dtype dtype, int reduce_op);
/* dst[i] = op(in[i], src[i]), the same bits as copying in to dst and then
 * pf_reduce_into(dst, src): without the copy. in may be dst. */
void pf_reduce_pair(void *dst, const void *in, const void *src, size_t n, pf_dtype dtype,
                    int reduce_op);
/* dst[i] /= count (float dtypes only). */
void pf_reduce_mean(void *dst, size_t n, pf_dtype dtype, int count);
/* What a reduction does once its sum is complete: MEAN divides by count,
 * the others nothing (checked here: a collective's completion asks every
 * time). */
static inline void pf_reduce_finish(void *dst, size_t n, pf_dtype dtype, int reduce_op,
                                    int count) {
  if (reduce_op == PF_REDUCE_MEAN && count > 1) pf_reduce_mean(dst, n, dtype, count);
}

#endif
