/* pf_graph_allreduce_buckets: partial values summed a bucket at a time.
 *
 * One allreduce per gradient costs a collective's fixed price per
 * parameter, and on a rank with one core the small ones queue behind the
 * large one's optimizer step. Packing them into one flat buffer (kernel
 * "pack"), summing that once and taking the pieces back out ("unpack") is
 * what a hand-written MPI loop and PyTorch DDP's buckets do. It is a
 * builder over pack/unpack and the builder's own reductions rather than a
 * pass over the compiled plan, so the caller chooses what is bucketed and
 * the result is an ordinary graph: validated, placed, simulated and
 * differentiated like any other. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/util.h"
#include "graph/graph_internal.h"
#include "pathflow/error.h"
#include "pathflow/grad.h"

/* "bucket<k>" that no program's name starts as "<it>/pack" yet. */
static void bucket_name(const pf_graph *g, int *next, char *out, size_t len) {
  char probe[PF_NAME_MAX + 1];
  do {
    snprintf(out, len, "bucket%d", (*next)++);
    snprintf(probe, sizeof probe, "%s/pack", out);
  } while (pf_graph_find_program(g, probe) >= 0);
}

/* Whether value v is summed by a bucket: partial over several devices and
 * not reduced yet. */
static int wants_sum(const pf_graph *g, int32_t v) {
  const pf_gvalue *val = &g->values[v];
  return val->sharding.kind == PF_SHARD_PARTIAL &&
         g->slices[val->slice].num_devices > 1 && val->reduced == 0;
}

static int32_t packed_program(const pf_graph *g, pf_value_t packed) {
  return g->values[packed.id].producer;
}

/* Orders bucket program `pack` ahead of the programs on its slice that
 * were added after its members' producers and before the buckets (`start`:
 * the rest of the backward pass), so the device packs, and the loop starts
 * the bucket's allreduce, as soon as the members are ready rather than
 * after everything with a lower number (the gang order breaks ties by
 * number, and the pack is numbered last). Builders add a program after its
 * inputs, so none of those programs feeds the pack; a graph rewired
 * against that order is checked by the caller, which drops the edges if
 * they close a cycle. */
static int order_early(pf_graph *g, const pf_value_t *values, const int *members, int count,
                       int32_t pack, int32_t start) {
  int32_t last = -1, slice = g->programs[pack].slice;
  for (int j = 0; j < count; j++) {
    int32_t p = g->values[values[members[j]].id].producer;
    if (p > last) last = p;
  }
  for (int32_t q = last + 1; q < start; q++)
    if (g->programs[q].slice == slice && pf_graph_add_control(g, pack, q) != 0)
      return pf_diag_error(g->env.diag, PF_ENOMEM, "allreduce buckets: out of memory");
  return 0;
}

/* Packs the `count` values members[] (indices into values), sums the pack
 * once and unpacks each piece into sums[]. A bucket of one is reduced as
 * it is. */
static int emit(pf_graph *g, const pf_value_t *values, const int *members, int count,
                int32_t start, int *next, pf_value_t *sums) {
  char base[64], name[PF_NAME_MAX + 1];
  pf_value_t in[PF_MAX_ARGS], packed, sum;
  int32_t summed;
  int64_t offset = 0;
  int rc;
  if (count == 1) {
    rc = pf_graph_reduce_partial(g, values[members[0]].id, NULL, &summed, g->env.diag);
    if (rc == 0) sums[members[0]] = pf_value_of(summed);
    return rc;
  }
  bucket_name(g, next, base, sizeof base);
  for (int j = 0; j < count; j++) in[j] = values[members[j]];
  snprintf(name, sizeof name, "%s/pack", base);
  rc = pf_graph_program(g,
                        &(pf_program_desc){.name = name, .kernel = "pack",
                                           .slice = pf_slice_of(g->values[in[0].id].slice),
                                           .n_in = count, .in = in},
                        &packed, NULL);
  if (rc != 0) return rc;
  if ((rc = order_early(g, values, members, count, packed_program(g, packed), start)) != 0)
    return rc;
  /* Named "<base>/pack/sum". */
  if ((rc = pf_graph_reduce_partial(g, packed.id, NULL, &summed, g->env.diag)) != 0)
    return rc;
  sum = pf_value_of(summed);
  for (int j = 0; j < count; j++) {
    const pf_gvalue *v = &g->values[in[j].id];
    pf_spec spec = *v->spec;
    pf_value_t piece;
    pf_attrs *a;
    if ((rc = pf_attrs_create(&a)) != 0) return rc;
    snprintf(name, sizeof name, "%s/unpack%d", base, j);
    if ((rc = pf_attrs_set_int(a, "offset", offset)) == 0 &&
        (rc = pf_attrs_set_ints(a, "shape", spec.dims, spec.rank)) == 0)
      rc = pf_graph_program(g,
                            &(pf_program_desc){.name = name, .kernel = "unpack", .attrs = a,
                                               .slice = pf_slice_of(v->slice), .n_in = 1,
                                               .in = &sum},
                            &piece, NULL);
    pf_attrs_destroy(a);
    if (rc != 0) return rc;
    offset += pf_spec_numel(&spec);
    sums[members[j]] = piece;
    /* A later whole read of the partial value takes this piece. */
    g->values[in[j].id].reduced = piece.id + 1;
  }
  return 0;
}

int pf_graph_allreduce_buckets(pf_graph *g, int n, const pf_value_t *values,
                               size_t bucket_bytes, pf_value_t *sums) {
  /* Per value, its bucket (-1: none); per bucket, its slice, dtype, bytes
   * and whether it still takes values. */
  int *bucket_of = NULL, *members = NULL, n_buckets = 0, next = 0, rc = 0;
  struct open_bucket {
    int32_t slice;
    pf_dtype dtype;
    size_t bytes;
    int count, open;
  } *b = NULL;
  int32_t start;
  size_t n_controls;
  if (g == NULL || values == NULL || sums == NULL || n < 1) return PF_EINVAL;
  start = (int32_t)g->n_programs;
  n_controls = g->n_controls;
  for (int i = 0; i < n; i++)
    if (values[i].id < 0 || (size_t)values[i].id >= g->n_values)
      return pf_diag_error(g->env.diag, PF_EINVAL,
                           "allreduce buckets: value %d (index %d) is not in the graph",
                           values[i].id, i);
  bucket_of = pf_mallocn((size_t)n, sizeof *bucket_of);
  members = pf_mallocn((size_t)n, sizeof *members);
  b = pf_mallocn((size_t)n, sizeof *b);
  if (bucket_of == NULL || members == NULL || b == NULL) {
    rc = pf_diag_error(g->env.diag, PF_ENOMEM, "allreduce buckets: out of memory");
    goto done;
  }
  for (int i = 0; i < n; i++) {
    const pf_gvalue *v = &g->values[values[i].id];
    size_t bytes = pf_spec_nbytes(v->spec);
    int k;
    bucket_of[i] = -1;
    sums[i] = values[i];
    if (v->sharding.kind == PF_SHARD_PARTIAL && v->reduced > 0) {
      sums[i] = pf_value_of(v->reduced - 1);
      continue;
    }
    if (!wants_sum(g, values[i].id)) continue;
    for (k = 0; k < n_buckets; k++)
      if (b[k].open && b[k].slice == v->slice && b[k].dtype == v->spec->dtype) break;
    if (k < n_buckets && (b[k].count >= PF_MAX_ARGS || b[k].bytes > bucket_bytes ||
                          bytes > bucket_bytes - b[k].bytes)) {
      b[k].open = 0; /* full: later values start the next one */
      k = n_buckets;
    }
    if (k == n_buckets)
      b[n_buckets++] = (struct open_bucket){.slice = v->slice, .dtype = v->spec->dtype,
                                            .open = 1};
    b[k].bytes += bytes;
    b[k].count++;
    bucket_of[i] = k;
  }
  /* Emitted in the order they were started: the first bucket's allreduce
   * comes first in the gang order. */
  for (int k = 0; k < n_buckets && rc == 0; k++) {
    int count = 0;
    for (int i = 0; i < n; i++)
      if (bucket_of[i] == k) members[count++] = i;
    rc = emit(g, values, members, count, start, &next, sums);
  }
  if (rc == 0 && g->n_controls > n_controls) {
    /* The early ordering is an optimisation: if a rewired graph makes it a
     * cycle, leave the buckets in the default order instead. */
    int32_t *order = pf_mallocn(g->n_programs, sizeof *order);
    pf_diag quiet;
    pf_diag_init(&quiet);
    if (order == NULL) {
      rc = pf_diag_error(g->env.diag, PF_ENOMEM, "allreduce buckets: out of memory");
    } else if (pf_graph_topo_order(g, order, &quiet) != 0) {
      g->n_controls = n_controls;
    }
    free(order);
  }
done:
  free(bucket_of);
  free(members);
  free(b);
  return rc;
}
