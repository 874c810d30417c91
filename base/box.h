/* Internal: moving blocks of elements between row-major tensors.
 *
 * The one module that moves blocks: reshards (a plan's COPY ops and the
 * host's gathers and scatters of shards) copy boxes, and collectives lay
 * blocks along an axis or cut them out of one, both within a rank
 * (runtime/reduce.c) and around MPI calls that want contiguous blocks
 * (runtime/service.c). Pure layout: sizes come from specs, nothing is
 * allocated, and nothing is checked (callers derive boxes from checked
 * plans or specs).
 */
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
 * to dst (shape dst_dims) at box->dst_offset. The box must lie inside both
 * tensors (a plan's boxes are checked by pf_plan_check). Runs of contiguous
 * elements are copied with one memcpy. */
void pf_box_copy(void *dst, const int64_t *dst_dims, const void *src,
                 const int64_t *src_dims, const pf_box *box, size_t elem_size);

/* Bytes in the box. */
size_t pf_box_nbytes(const pf_box *box, size_t elem_size);

/* 1 if the box is one contiguous run in a tensor of shape dims at the given
 * offset, so it can be sent or received in place. */
int pf_box_contiguous(const pf_box *box, const int64_t *dims,
                      const int64_t *offset);

/* Where the block of `extent` elements at `offset` lies in a row-major
 * tensor of spec `buffer`: *displacement bytes from its start (of its first
 * element), *nbytes bytes in all. Returns 1 when those bytes are one
 * contiguous run (past leading extents of 1, every extent whole), so the
 * block can be sent, received or copied in place; 0 when not. */
int pf_block_run(const pf_spec *buffer, const int64_t *offset, const int64_t *extent,
                 size_t *displacement, size_t *nbytes);

/* Copies the block of `extent` elements at src_off in src (spec src_spec) to
 * dst_off in dst (spec dst_spec), with pf_box_copy. Both specs have the
 * same rank and dtype, and the block lies inside both tensors. */
void pf_block_copy(void *dst, const pf_spec *dst_spec, const int64_t *dst_off,
                   const void *src, const pf_spec *src_spec, const int64_t *src_off,
                   const int64_t *extent);

/* ---- blocks along an axis ----------------------------------------------
 * A tensor of spec s seen as n blocks along `axis`: block k holds indices
 * k * s.dims[axis] / n .. (k + 1) * s.dims[axis] / n - 1 on that axis and
 * every index on the others. n >= 1 divides s.dims[axis] (the plan check
 * and the collectives' shape rules guarantee it). Along the leading axis
 * (or when every axis before it has size 1) blocks are already contiguous
 * and each block moves in one memcpy. */

/* Writes `block` (contiguous, spec block_spec) as block k along `axis` of
 * dst (spec dst_spec): at offset k * block_spec->dims[axis] on that axis. */
void pf_block_put(void *dst, const pf_spec *dst_spec, int axis, int k, const void *block,
                  const pf_spec *block_spec);

/* Reads block k of n along `axis` of src (spec src_spec) into dst,
 * contiguous (spec: src_spec with dims[axis] / n). */
void pf_block_take(void *dst, const void *src, const pf_spec *src_spec, int axis, int n,
                   int k);

/* Concatenates n blocks along `axis` into dst (spec dst_spec): block k,
 * of spec block_spec, lies contiguous at blocks + k * its size in bytes
 * (what MPI_Allgather and MPI_Alltoall receive). */
void pf_blocks_concat(void *dst, const pf_spec *dst_spec, int axis, const void *blocks,
                      const pf_spec *block_spec, int n);

/* Splits src (spec src_spec) along `axis` into n blocks laid one after the
 * other in dst, each contiguous (what MPI_Reduce_scatter_block and
 * MPI_Alltoall send). The inverse of pf_blocks_concat. */
void pf_blocks_split(void *dst, const void *src, const pf_spec *src_spec, int axis, int n);

#endif
