/* pack, unpack, unpack_grad: several tensors as one flat buffer and back,
 * so that one collective moves them all (gradient buckets,
 * pf_graph_allreduce_buckets). Byte copies: any dtype, no arithmetic, so
 * the values come out bit for bit as they went in. */
#include <string.h>

#include "base/util.h"
#include "kernels/builtin_internal.h"
#include "kernels/sharding.h"
#include "pathflow/error.h"

/* out = the inputs flattened (row-major) and concatenated, rank 1. */
static int pack_shape(const pf_attrs *attrs, int n_in, const pf_spec *in, int n_out,
                      pf_spec *out, pf_diag *diag) {
  int64_t total = 0;
  char s[PF_BUILTIN_SPEC_STR];
  int rc;
  (void)attrs;
  (void)n_out;
  if (n_in < 1) return pf_diag_error(diag, PF_EARITY, "pack: needs at least one input");
  for (int i = 1; i < n_in; i++)
    if ((rc = pf_builtin_want_same_dtype("pack", in, i, diag)) != 0) return rc;
  for (int i = 0; i < n_in; i++) total += pf_spec_numel(&in[i]);
  out[0] = pf_spec_1d(in[0].dtype, total);
  if (pf_spec_check(&out[0]) != 0)
    return pf_diag_error(diag, PF_ESHAPE, "pack: %d inputs make %s: too many bytes", n_in,
                         pf_spec_str(&out[0], s, sizeof s));
  return 0;
}

static int pack_compute(const pf_kernel_call *call) {
  char *at = call->out[0].data;
  for (int i = 0; i < call->n_in; i++) {
    size_t n = pf_spec_nbytes(&call->in[i].spec);
    if (n > 0) memcpy(at, call->in[i].data, n);
    at += n;
  }
  return 0;
}

/* Elements [offset, offset + numel(shape)) of a rank-1 input, as `shape`
 * (default: everything from offset on, rank 1). */
static int unpack_shape(const pf_attrs *attrs, int n_in, const pf_spec *in, int n_out,
                        pf_spec *out, pf_diag *diag) {
  char s[PF_BUILTIN_SPEC_STR], o[PF_BUILTIN_SPEC_STR];
  const int64_t *dims;
  int64_t offset;
  int rc, rank;
  (void)n_in;
  (void)n_out;
  if ((rc = pf_builtin_want_rank("unpack", in, 0, 1, diag)) != 0 ||
      (rc = pf_builtin_int_attr("unpack", attrs, "offset", 0, 0, in[0].dims[0], &offset,
                                diag)) != 0)
    return rc;
  rank = pf_attrs_get_ints(attrs, "shape", &dims);
  if (rank > PF_MAX_RANK)
    return pf_diag_error(diag, PF_EINVAL, "unpack: attribute shape has %d dims; at most %d",
                         rank, PF_MAX_RANK);
  out[0] = rank < 0 ? pf_spec_1d(in[0].dtype, in[0].dims[0] - offset)
                    : pf_spec_make(in[0].dtype, rank, dims);
  if (pf_spec_check(&out[0]) != 0 || pf_spec_numel(&out[0]) > in[0].dims[0] - offset)
    return pf_diag_error(diag, PF_ESHAPE,
                         "unpack: %s from offset %lld does not fit in input 0, %s",
                         pf_spec_str(&out[0], o, sizeof o), (long long)offset,
                         pf_spec_str(&in[0], s, sizeof s));
  return 0;
}

static int unpack_compute(const pf_kernel_call *call) {
  size_t n = pf_spec_nbytes(&call->out[0].spec);
  size_t at = (size_t)pf_attrs_get_int(call->attrs, "offset", 0) *
              pf_dtype_size(call->in[0].spec.dtype);
  if (n > 0) memcpy(call->out[0].data, (const char *)call->in[0].data + at, n);
  return 0;
}

/* The gradient of unpack: rank 1 of `size` elements, zero but for the
 * input (flattened) at `offset`. */
static int unpack_grad_shape(const pf_attrs *attrs, int n_in, const pf_spec *in, int n_out,
                             pf_spec *out, pf_diag *diag) {
  char s[PF_BUILTIN_SPEC_STR];
  int64_t size, offset;
  int rc;
  (void)n_in;
  (void)n_out;
  if ((rc = pf_builtin_int_attr("unpack_grad", attrs, "size", -1, 0, INT64_MAX, &size,
                                diag)) != 0 ||
      (rc = pf_builtin_int_attr("unpack_grad", attrs, "offset", 0, 0, size, &offset,
                                diag)) != 0)
    return rc;
  if (pf_spec_numel(&in[0]) > size - offset)
    return pf_diag_error(diag, PF_ESHAPE,
                         "unpack_grad: input 0, %s, does not fit in %lld elements from "
                         "offset %lld",
                         pf_spec_str(&in[0], s, sizeof s), (long long)size,
                         (long long)offset);
  out[0] = pf_spec_1d(in[0].dtype, size);
  if (pf_spec_check(&out[0]) != 0)
    return pf_diag_error(diag, PF_ESHAPE, "unpack_grad: %s: too many bytes",
                         pf_spec_str(&out[0], s, sizeof s));
  return 0;
}

static int unpack_grad_compute(const pf_kernel_call *call) {
  size_t el = pf_dtype_size(call->in[0].spec.dtype);
  size_t at = (size_t)pf_attrs_get_int(call->attrs, "offset", 0) * el;
  size_t n = pf_spec_nbytes(&call->in[0].spec), total = pf_spec_nbytes(&call->out[0].spec);
  char *out = call->out[0].data;
  /* All-zero bytes are zero in every dtype pack carries. */
  if (at > 0) memset(out, 0, at);
  if (n > 0) memcpy(out + at, call->in[0].data, n);
  if (total > at + n) memset(out + at + n, 0, total - at - n);
  return 0;
}

/* A copy is linear, so partial inputs give a partial output (the sum of the
 * devices' buffers is the buffer of the sums) and whole ones a whole one.
 * Split inputs are refused on several devices: the output is flat, and the
 * blocks of a split input would land between the other inputs' elements,
 * not where the whole value's flattening puts them. */
static int pack_sharding(const pf_attrs *attrs, int n_in, const pf_spec *in,
                         const pf_sharding *in_sh, int num_devices, int n_out,
                         pf_sharding *out_sh, pf_diag *diag) {
  int partial = pf_sharding_count(n_in, in_sh, PF_SHARD_PARTIAL);
  (void)attrs;
  (void)in;
  if (n_in > 0 && partial == n_in) {
    pf_sharding_set_all(n_out, out_sh, pf_partial());
    return 0;
  }
  if (partial > 0)
    return pf_sharding_refuse(diag, "pack", n_in, in_sh,
                              "every input must be partial or none (a whole value "
                              "beside partial ones would be counted once per device)");
  if (num_devices > 1 && pf_sharding_count(n_in, in_sh, PF_SHARD_REPLICATED) != n_in)
    return pf_sharding_refuse(diag, "pack", n_in, in_sh,
                              "a flat buffer cannot be cut like a split input: "
                              "inputs must be whole or partial");
  pf_sharding_set_all(n_out, out_sh, pf_replicated());
  return 0;
}

static const pf_kernel_def defs[] = {
    {.name = "pack", .n_in = PF_VARIADIC, .n_out = 1, .shape = pack_shape,
     .sharding = pack_sharding, .compute = pack_compute},
    {.name = "unpack", .n_in = 1, .n_out = 1, .shape = unpack_shape,
     .sharding = pack_sharding, .compute = unpack_compute},
    {.name = "unpack_grad", .n_in = 1, .n_out = 1, .shape = unpack_grad_shape,
     .sharding = pack_sharding, .compute = unpack_grad_compute},
};

int pf_builtin_register_pack(pf_registry *reg) {
  return pf_builtin_add_all(reg, defs, PF_ARRAY_LEN(defs));
}
