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
