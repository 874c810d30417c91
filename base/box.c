#include "base/box.h"

#include <string.h>

size_t pf_box_nbytes(const pf_box *box, size_t elem_size) {
  size_t n = elem_size;
  for (int i = 0; i < box->rank; i++) n *= (size_t)box->extent[i];
  return n;
}

int pf_box_contiguous(const pf_box *box, const int64_t *dims,
                      const int64_t *offset) {
  /* Contiguous if, after the first dimension with extent > 1, every inner
   * dimension is taken whole. */
  int i = 0;
  (void)offset;
  while (i < box->rank && box->extent[i] == 1) i++;
  for (i = i + 1; i < box->rank; i++)
    if (box->extent[i] != dims[i]) return 0;
  return 1;
}

int pf_block_run(const pf_spec *buffer, const int64_t *offset, const int64_t *extent,
                 size_t *displacement, size_t *nbytes) {
  size_t es = pf_dtype_size(buffer->dtype), n = es;
  int64_t stride = 1, disp = 0;
  int i = 0, contiguous = 1;
  for (int k = buffer->rank - 1; k >= 0; k--) {
    n *= (size_t)extent[k];
    disp += offset[k] * stride;
    stride *= buffer->dims[k];
  }
  while (i < buffer->rank && extent[i] == 1) i++;
  for (int k = i + 1; k < buffer->rank; k++)
    if (extent[k] != buffer->dims[k]) contiguous = 0;
  *displacement = (size_t)disp * es;
  *nbytes = n;
  return contiguous;
}

/* Row-major strides in elements. */
static void strides(const int64_t *dims, int rank, int64_t *st) {
  int64_t s = 1;
  for (int i = rank - 1; i >= 0; i--) {
    st[i] = s;
    s *= dims[i];
  }
}

void pf_box_copy(void *dst, const int64_t *dst_dims, const void *src,
                 const int64_t *src_dims, const pf_box *box,
                 size_t elem_size) {
  int64_t sst[PF_MAX_RANK], dst_st[PF_MAX_RANK], idx[PF_MAX_RANK];
  int rank = box->rank, inner;
  size_t run;
  int64_t soff = 0, doff = 0;
  for (int i = 0; i < rank; i++)
    if (box->extent[i] == 0) return;
  if (rank == 0) {
    memcpy(dst, src, elem_size);
    return;
  }
  strides(src_dims, rank, sst);
  strides(dst_dims, rank, dst_st);
  /* Merge trailing dimensions that are whole in both tensors into one run. */
  inner = rank - 1;
  run = (size_t)box->extent[inner];
  while (inner > 0 && box->extent[inner] == src_dims[inner] &&
         box->extent[inner] == dst_dims[inner]) {
    inner--;
    run *= (size_t)box->extent[inner];
  }
  for (int i = 0; i < rank; i++) {
    soff += box->src_offset[i] * sst[i];
    doff += box->dst_offset[i] * dst_st[i];
    idx[i] = 0;
  }
  for (;;) {
    int64_t so = soff, dof = doff;
    for (int i = 0; i < inner; i++) {
      so += idx[i] * sst[i];
      dof += idx[i] * dst_st[i];
    }
    memcpy((char *)dst + (size_t)dof * elem_size,
           (const char *)src + (size_t)so * elem_size, run * elem_size);
    /* Odometer over the outer dimensions [0, inner). */
    {
      int i = inner - 1;
      while (i >= 0 && ++idx[i] == box->extent[i]) idx[i--] = 0;
      if (i < 0) return;
    }
  }
}

void pf_block_copy(void *dst, const pf_spec *dst_spec, const int64_t *dst_off,
                   const void *src, const pf_spec *src_spec, const int64_t *src_off,
                   const int64_t *extent) {
  pf_box box;
  box.rank = src_spec->rank;
  for (int i = 0; i < box.rank; i++) {
    box.src_offset[i] = src_off[i];
    box.dst_offset[i] = dst_off[i];
    box.extent[i] = extent[i];
  }
  pf_box_copy(dst, dst_spec->dims, src, src_spec->dims, &box, pf_dtype_size(src_spec->dtype));
}

void pf_block_put(void *dst, const pf_spec *dst_spec, int axis, int k, const void *block,
                  const pf_spec *block_spec) {
  int64_t zero[PF_MAX_RANK] = {0}, off[PF_MAX_RANK] = {0};
  off[axis] = k * block_spec->dims[axis];
  pf_block_copy(dst, dst_spec, off, block, block_spec, zero, block_spec->dims);
}

/* The spec of one of n blocks along axis. */
static pf_spec block_of(const pf_spec *s, int axis, int n) {
  pf_spec b = *s;
  b.dims[axis] /= n;
  return b;
}

void pf_block_take(void *dst, const void *src, const pf_spec *src_spec, int axis, int n,
                   int k) {
  pf_spec block = block_of(src_spec, axis, n);
  int64_t zero[PF_MAX_RANK] = {0}, off[PF_MAX_RANK] = {0};
  off[axis] = k * block.dims[axis];
  pf_block_copy(dst, &block, zero, src, src_spec, off, block.dims);
}

void pf_blocks_concat(void *dst, const pf_spec *dst_spec, int axis, const void *blocks,
                      const pf_spec *block_spec, int n) {
  size_t bytes = pf_spec_nbytes(block_spec);
  for (int k = 0; k < n; k++)
    pf_block_put(dst, dst_spec, axis, k, (const char *)blocks + (size_t)k * bytes, block_spec);
}

void pf_blocks_split(void *dst, const void *src, const pf_spec *src_spec, int axis, int n) {
  pf_spec block = block_of(src_spec, axis, n);
  size_t bytes = pf_spec_nbytes(&block);
  for (int k = 0; k < n; k++)
    pf_block_take((char *)dst + (size_t)k * bytes, src, src_spec, axis, n, k);
}
