#include "runtime/reduce.h"

#include <stdlib.h>
#include <string.h>

#include "base/box.h"
#include "base/reduce.h"

void pf_collective_local(const pf_plan_op *op, int n, const pf_spec *in_spec,
                         const pf_spec *out_spec, pf_storage *const *in,
                         pf_storage *const *out) {
  size_t in_n = (size_t)pf_spec_numel(in_spec), out_bytes = pf_spec_nbytes(out_spec);
  int a = op->axis, ai = op->in_axis;
  switch (op->collective) {
    case PF_ALLREDUCE:
      memcpy(out[0]->data, in[0]->data, out_bytes);
      for (int k = 1; k < n; k++)
        pf_reduce_into(out[0]->data, in[k]->data, in_n, in_spec->dtype, op->reduce_op);
      pf_reduce_finish(out[0]->data, in_n, in_spec->dtype, op->reduce_op, n);
      for (int k = 1; k < n; k++) memcpy(out[k]->data, out[0]->data, out_bytes);
      return;
    case PF_ALLGATHER:
      for (int k = 0; k < n; k++) pf_block_put(out[0]->data, out_spec, a, k, in[k]->data, in_spec);
      for (int k = 1; k < n; k++) memcpy(out[k]->data, out[0]->data, out_bytes);
      return;
    case PF_REDUCE_SCATTER: {
      /* out_d = block d of (op over k of in_k). Blocks along a non-first
       * axis are strided in row-major order: copy block d of each other
       * input into a scratch tensor in out_d's shape, then reduce
       * contiguously. The scratch is allocated (not a char array on the
       * stack): the reduction reads it as floats or ints, which needs
       * their alignment and an object those types may access. */
      size_t out_n = (size_t)pf_spec_numel(out_spec);
      void *scratch = NULL;
      if (n > 1 && (scratch = malloc(out_bytes ? out_bytes : 1)) == NULL) return;
      for (int d = 0; d < n; d++) {
        pf_block_take(out[d]->data, in[0]->data, in_spec, a, n, d);
        for (int k = 1; k < n; k++) {
          pf_block_take(scratch, in[k]->data, in_spec, a, n, d);
          pf_reduce_into(out[d]->data, scratch, out_n, in_spec->dtype, op->reduce_op);
        }
        pf_reduce_finish(out[d]->data, out_n, in_spec->dtype, op->reduce_op, n);
      }
      free(scratch);
      return;
    }
    case PF_BROADCAST:
      for (int k = 0; k < n; k++) memcpy(out[k]->data, in[op->root]->data, out_bytes);
      return;
    case PF_ALL_TO_ALL: {
      /* out_j = concat over d (along ai) of block j (along a) of in_d:
       * one copy each, strided on both sides, with no contiguous block
       * in between (a != ai, so each offset has one nonzero axis). */
      int64_t off[PF_MAX_RANK] = {0}, doff[PF_MAX_RANK] = {0}, ext[PF_MAX_RANK];
      memcpy(ext, in_spec->dims, sizeof ext);
      ext[a] = in_spec->dims[a] / n;
      for (int j = 0; j < n; j++)
        for (int d = 0; d < n; d++) {
          off[a] = j * ext[a];
          doff[ai] = d * in_spec->dims[ai];
          pf_block_copy(out[j]->data, out_spec, doff, in[d]->data, in_spec, off, ext);
        }
      return;
    }
    default:
      return;
  }
}
