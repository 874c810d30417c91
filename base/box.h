/* Internal: copying a box of elements between two row-major shards. */
#ifndef PF_BASE_BOX_H
#define PF_BASE_BOX_H

#include <stddef.h>
#include <stdint.h>

#include "pathflow/types.h"

/* A box of elements: the part of one shard copied into another. */
typedef struct pf_box {
  int rank;
  int64_t src_offset[PF_MAX_RANK];
  int64_t dst_offset[PF_MAX_RANK];
  int64_t extent[PF_MAX_RANK];
} pf_box;

/* Copies box->extent elements from src (shape src_dims) at box->src_offset
 * to dst (shape dst_dims) at box->dst_offset. The box must have been checked
 * (pf_plan_check). Runs of contiguous elements are copied with one memcpy. */
void pf_box_copy(void *dst, const int64_t *dst_dims, const void *src,
                 const int64_t *src_dims, const pf_box *box, size_t elem_size);

/* Bytes in the box. */
size_t pf_box_nbytes(const pf_box *box, size_t elem_size);

/* 1 if the box is one contiguous run in a tensor of shape dims at the given
 * offset, so it can be sent or received in place. */
int pf_box_contiguous(const pf_box *box, const int64_t *dims,
                      const int64_t *offset);

#endif
