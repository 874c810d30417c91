#include "graph/collective.h"

#include <stdio.h>
#include <string.h>

#include "pathflow/error.h"

static const char *const kernels[PF_COLLECTIVE_COUNT] = {
    [PF_ALLREDUCE] = "pf.allreduce",
    [PF_ALLGATHER] = "pf.allgather",
    [PF_REDUCE_SCATTER] = "pf.reduce_scatter",
    [PF_BROADCAST] = "pf.broadcast",
    [PF_ALL_TO_ALL] = "pf.all_to_all",
};

int pf_collective_from_kernel(const char *kernel) {
  /* Asked for every program, several times: most are no "pf." kernel. */
  if (kernel == NULL || kernel[0] != 'p' || kernel[1] != 'f' || kernel[2] != '.') return -1;
  for (int k = 0; k < PF_COLLECTIVE_COUNT; k++)
    if (strcmp(kernel, kernels[k]) == 0) return k;
  return -1;
}

const char *pf_collective_kernel(pf_collective_kind kind) {
  return (unsigned)kind < PF_COLLECTIVE_COUNT ? kernels[kind] : NULL;
}

const char *pf_collective_name(pf_collective_kind kind) {
  return (unsigned)kind < PF_COLLECTIVE_COUNT ? kernels[kind] + 3 : "?";
}

int pf_reduce_supports(pf_reduce_op op, pf_dtype dtype) {
  if ((unsigned)op >= PF_REDUCE_COUNT) return 0;
  if (dtype == PF_F32 || dtype == PF_F64) return 1;
  return op != PF_REDUCE_MEAN && (dtype == PF_I32 || dtype == PF_I64);
}

int pf_collective_infer(const pf_graph *g, const pf_gprogram *p,
                        pf_sharding *out_sh, pf_spec *out, pf_diag *d) {
  int kind = pf_collective_from_kernel(p->kernel);
  int n = g->slices[p->slice].num_devices;
  int64_t op = pf_attrs_get_int(p->attrs, PF_COLL_ATTR_OP, PF_REDUCE_SUM);
  int64_t axis = pf_attrs_get_int(p->attrs, PF_COLL_ATTR_AXIS, 0);
  int64_t root = pf_attrs_get_int(p->attrs, PF_COLL_ATTR_ROOT, 0);
  const pf_gvalue *in;
  pf_sharding sh;
  pf_spec local;
  char what[PF_NAME_MAX + 32], buf[128];
  int rc;
  if (kind < 0 || p->n_in != 1 || p->n_out != 1)
    return pf_diag_error(d, PF_EARITY, "collective \"%s\": takes 1 input and makes 1 output",
                         p->name);
  in = &g->values[p->in[0]];
  sh = p->in_shardings[0];
  snprintf(what, sizeof what, "collective \"%s\" input", p->name);
  if ((rc = pf_shard_spec(in->spec, sh, n, &local, what, d)) != 0) return rc;
  if (sh.kind == PF_SHARD_PARTIAL && n > 1 &&
      !((kind == PF_ALLREDUCE || kind == PF_REDUCE_SCATTER) &&
        op == PF_REDUCE_SUM))
    return pf_diag_error(d, PF_ESHARDING,
                         "collective \"%s\": its input is partial (each device "
                         "holds a summand); only an allreduce or "
                         "reduce_scatter with op sum can read it as it lies",
                         p->name);
  switch (kind) {
    case PF_ALLREDUCE:
    case PF_REDUCE_SCATTER:
      if (!pf_reduce_supports((pf_reduce_op)op, local.dtype))
        return pf_diag_error(d, (unsigned)op >= PF_REDUCE_COUNT ? PF_EINVAL : PF_EDTYPE,
                             "collective \"%s\": reduction %lld cannot reduce %s",
                             p->name, (long long)op, pf_dtype_name(local.dtype));
      *out = local;
      *out_sh = pf_replicated();
      if (kind == PF_ALLREDUCE) return 0;
      if (axis < 0 || axis >= local.rank || local.dims[axis] % n != 0)
        return pf_diag_error(d, PF_ESPLIT,
                             "collective \"%s\": reduce_scatter axis %lld of %s does "
                             "not split over %d devices",
                             p->name, (long long)axis, pf_spec_str(&local, buf, sizeof buf), n);
      *out_sh = pf_split((int)axis);
      return 0;
    case PF_ALLGATHER:
      if (sh.kind != PF_SHARD_SPLIT || sh.axis != axis)
        return pf_diag_error(d, PF_ESPLIT,
                             "collective \"%s\": allgather along axis %lld needs its "
                             "input consumed split along that axis",
                             p->name, (long long)axis);
      *out = *in->spec;
      *out_sh = pf_replicated();
      return 0;
    case PF_BROADCAST:
      if (root < 0 || root >= n)
        return pf_diag_error(d, PF_EINVAL, "collective \"%s\": root %lld not in [0, %d)",
                             p->name, (long long)root, n);
      *out = local;
      *out_sh = pf_replicated();
      return 0;
    case PF_ALL_TO_ALL:
      if (sh.kind != PF_SHARD_SPLIT || axis == sh.axis || axis < 0 || axis >= in->spec->rank ||
          in->spec->dims[axis] % n != 0)
        return pf_diag_error(d, PF_ESPLIT,
                             "collective \"%s\": all_to_all needs an input split along "
                             "one axis and a different target axis %lld of %s that "
                             "divides over %d devices",
                             p->name, (long long)axis,
                             pf_spec_str(in->spec, buf, sizeof buf), n);
      *out = *in->spec;
      *out_sh = pf_split((int)axis);
      return 0;
    default:
      return pf_diag_error(d, PF_EINVAL, "collective \"%s\": unknown kind", p->name);
  }
}

int pf_leading_axis(const pf_spec *s, int axis) {
  for (int i = 0; i < axis && i < s->rank; i++)
    if (s->dims[i] != 1) return 0;
  return 1;
}

int pf_collective_contiguous(pf_collective_kind kind, const pf_spec *in, const pf_spec *out,
                             int axis, int in_axis) {
  switch (kind) {
    case PF_ALLREDUCE:
    case PF_BROADCAST: return 1;
    case PF_ALLGATHER:
    case PF_REDUCE_SCATTER: return pf_leading_axis(in, axis);
    case PF_ALL_TO_ALL: return pf_leading_axis(in, axis) && pf_leading_axis(out, in_axis);
    default: return 0;
  }
}
