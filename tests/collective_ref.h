/* Host references for the collective tests (tests/test_collectives.c and
 * tests/mpi/mpi_collectives.c): test tensors, blocks, reductions, and the
 * matrix of collectives to check. The including file defines `ctx` and the
 * OK macro. */
#ifndef PF_TESTS_COLLECTIVE_REF_H
#define PF_TESTS_COLLECTIVE_REF_H

/* ---- host references ------------------------------------------------------ */

/* Element i of a test tensor. Floats are quarters in [-50, 50], so any sum
 * of a few of them is exact in any order (MPI may reduce in any order) and
 * a mean is the exact sum divided once; ints are large and signed (i64 well
 * beyond 32 bits). The pattern differs along every axis, so every device's
 * block differs. */
static void fill(pf_tensor *t, int seed) {
  const pf_spec *s = pf_tensor_spec(t);
  void *d = pf_tensor_data(t);
  for (int64_t i = 0; i < pf_spec_numel(s); i++) {
    int64_t k = (i * 37 + (int64_t)seed * 101) % 401 - 200;
    switch (s->dtype) {
      case PF_F32: ((float *)d)[i] = (float)k * 0.25f; break;
      case PF_F64: ((double *)d)[i] = (double)k * 0.25; break;
      case PF_I32: ((int32_t *)d)[i] = (int32_t)(k * 1000003 + i % 1000); break;
      case PF_I64: ((int64_t *)d)[i] = k * ((int64_t)1 << 40) + i; break;
      case PF_U8: ((uint8_t *)d)[i] = (uint8_t)(k + 200); break;
      default: ((uint16_t *)d)[i] = (uint16_t)(i * 131 + seed); break;
    }
  }
}

static pf_tensor *make(pf_spec spec, int seed) {
  pf_tensor *t;
  OK(pf_tensor_create(&spec, &t));
  fill(t, seed);
  return t;
}

/* Block d of x under sharding sh over n devices, as a new tensor. */
static pf_tensor *block_of(const pf_tensor *x, pf_sharding sh, int n, int d) {
  const pf_spec *s = pf_tensor_spec(x);
  pf_spec b = *s;
  int64_t lo[PF_MAX_RANK] = {0}, idx[PF_MAX_RANK] = {0};
  size_t es = pf_dtype_size(s->dtype);
  pf_tensor *t;
  if (sh.kind == PF_SHARD_SPLIT) {
    b.dims[sh.axis] /= n;
    lo[sh.axis] = d * b.dims[sh.axis];
  }
  OK(pf_tensor_create(&b, &t));
  for (int64_t i = 0; i < pf_spec_numel(&b); i++) {
    int64_t off = 0;
    for (int a = 0; a < s->rank; a++) off = off * s->dims[a] + lo[a] + idx[a];
    memcpy((char *)pf_tensor_data(t) + (size_t)i * es,
           (const char *)pf_tensor_cdata(x) + (size_t)off * es, es);
    for (int a = s->rank - 1; a >= 0; a--) {
      if (++idx[a] < b.dims[a]) break;
      idx[a] = 0;
    }
  }
  return t;
}

static int is_float(pf_dtype dt) { return dt == PF_F32 || dt == PF_F64; }

static int reducible(pf_dtype dt, int op) {
  return is_float(dt) || (op != PF_REDUCE_MEAN && (dt == PF_I32 || dt == PF_I64));
}

static double get_f(const pf_tensor *t, int64_t i) {
  return pf_tensor_spec(t)->dtype == PF_F32 ? (double)((const float *)pf_tensor_cdata(t))[i]
                                            : ((const double *)pf_tensor_cdata(t))[i];
}

static int64_t get_i(const pf_tensor *t, int64_t i) {
  switch (pf_tensor_spec(t)->dtype) {
    case PF_I32: return ((const int32_t *)pf_tensor_cdata(t))[i];
    case PF_I64: return ((const int64_t *)pf_tensor_cdata(t))[i];
    case PF_U8: return ((const uint8_t *)pf_tensor_cdata(t))[i];
    default: return ((const uint16_t *)pf_tensor_cdata(t))[i];
  }
}

/* op over the n blocks of x (sharding sh), element by element. */
static pf_tensor *reduce_ref(const pf_tensor *x, pf_sharding sh, int n, int op) {
  pf_tensor **b = calloc((size_t)n, sizeof *b), *out;
  pf_spec spec;
  for (int d = 0; d < n; d++) b[d] = block_of(x, sh, n, d);
  spec = *pf_tensor_spec(b[0]);
  OK(pf_tensor_create(&spec, &out));
  for (int64_t i = 0; i < pf_spec_numel(&spec); i++) {
    if (is_float(spec.dtype)) {
      double acc = get_f(b[0], i); /* exact: see fill() */
      for (int d = 1; d < n; d++) {
        double v = get_f(b[d], i);
        acc = op == PF_REDUCE_MAX ? (v > acc ? v : acc)
              : op == PF_REDUCE_MIN ? (v < acc ? v : acc) : acc + v;
      }
      if (spec.dtype == PF_F32)
        ((float *)pf_tensor_data(out))[i] =
            op == PF_REDUCE_MEAN ? (float)acc / (float)n : (float)acc;
      else
        ((double *)pf_tensor_data(out))[i] = op == PF_REDUCE_MEAN ? acc / (double)n : acc;
    } else {
      int64_t acc = get_i(b[0], i);
      for (int d = 1; d < n; d++) {
        int64_t v = get_i(b[d], i);
        acc = op == PF_REDUCE_MAX ? (v > acc ? v : acc)
              : op == PF_REDUCE_MIN ? (v < acc ? v : acc) : acc + v;
      }
      if (spec.dtype == PF_I32)
        ((int32_t *)pf_tensor_data(out))[i] = (int32_t)acc;
      else
        ((int64_t *)pf_tensor_data(out))[i] = acc;
    }
  }
  for (int d = 0; d < n; d++) pf_tensor_destroy(b[d]);
  free(b);
  return out;
}

static void elem_str(const pf_tensor *t, int64_t i, char *buf, size_t len) {
  if (is_float(pf_tensor_spec(t)->dtype))
    snprintf(buf, len, "%.17g", get_f(t, i));
  else
    snprintf(buf, len, "%lld", (long long)get_i(t, i));
}

/* Same spec and the same elements (floats compared with ==). */
static void expect_same(const pf_tensor *got, const pf_tensor *want, const char *what) {
  const pf_spec *g = pf_tensor_spec(got), *w = pf_tensor_spec(want);
  size_t es = pf_dtype_size(w->dtype);
  char a[128], b[128];
  if (!pf_spec_equal(g, w))
    fail_msg("%s: got %s, want %s", what, pf_spec_str(g, a, sizeof a), pf_spec_str(w, b, sizeof b));
  for (int64_t i = 0; i < pf_spec_numel(w); i++) {
    int same = is_float(w->dtype)
                   ? get_f(got, i) == get_f(want, i)
                   : memcmp((const char *)pf_tensor_cdata(got) + (size_t)i * es,
                            (const char *)pf_tensor_cdata(want) + (size_t)i * es, es) == 0;
    if (!same) {
      elem_str(got, i, a, sizeof a);
      elem_str(want, i, b, sizeof b);
      fail_msg("%s: element %lld of %lld: got %s, want %s", what, (long long)i,
               (long long)pf_spec_numel(w), a, b);
    }
  }
}

/* ---- the matrix -------------------------------------------------------------- */

enum { MAX_INPUTS = PF_MAX_RANK + 1, MAX_CHECKS = 512 };

static const char *const op_names[PF_REDUCE_COUNT] = {"sum", "max", "min", "mean"};

typedef struct check {
  char name[48];
  pf_collective_kind kind;
  int in; /* which input it reads */
  int op, axis, root;
} check;

typedef struct matrix {
  pf_graph *g;
  pf_slice_t slice;
  int n;
  pf_spec spec;
  int n_in;
  char in_name[MAX_INPUTS][8];
  pf_sharding in_sh[MAX_INPUTS];
  pf_value_t in_v[MAX_INPUTS];
  int n_checks;
  check checks[MAX_CHECKS];
} matrix;

static void add_input(matrix *m, pf_sharding sh) {
  int i = m->n_in++;
  if (sh.kind == PF_SHARD_SPLIT)
    snprintf(m->in_name[i], sizeof m->in_name[i], "xs%d", sh.axis);
  else
    snprintf(m->in_name[i], sizeof m->in_name[i], "xr");
  m->in_sh[i] = sh;
  OK(pf_graph_input(m->g, m->in_name[i], &m->spec, m->slice, sh, &m->in_v[i]));
}

static void add_check(matrix *m, int in, pf_collective_kind kind, int op, int axis, int root) {
  check *c;
  pf_value_t out;
  char in_name[sizeof m->in_name[0]];
  assert_true(m->n_checks < MAX_CHECKS);
  memcpy(in_name, m->in_name[in], sizeof in_name);
  c = &m->checks[m->n_checks++];
  c->kind = kind;
  c->in = in;
  c->op = op;
  c->axis = axis;
  c->root = root;
  switch (kind) {
    case PF_ALLREDUCE:
      snprintf(c->name, sizeof c->name, "allreduce_%s_%s", in_name, op_names[op]);
      break;
    case PF_REDUCE_SCATTER:
      snprintf(c->name, sizeof c->name, "reduce_scatter_%s_%s_axis%d", in_name, op_names[op],
               axis);
      break;
    case PF_ALLGATHER:
      snprintf(c->name, sizeof c->name, "allgather_%s_axis%d", in_name, axis);
      break;
    case PF_BROADCAST:
      snprintf(c->name, sizeof c->name, "broadcast_%s_root%d", in_name, root);
      break;
    default:
      snprintf(c->name, sizeof c->name, "all_to_all_%s_axis%d", in_name, axis);
      break;
  }
  OK(pf_graph_collective(m->g,
                         &(pf_collective_desc){.name = c->name, .kind = kind, .slice = m->slice,
                                               .in = m->in_v[in], .op = (pf_reduce_op)op,
                                               .axis = axis, .root = root},
                         &out, NULL));
  OK(pf_graph_output(m->g, c->name, out));
}

/* What output c must hold, from the fed tensor x. */
static pf_tensor *reference(const matrix *m, const check *c, const pf_tensor *x) {
  switch (c->kind) {
    case PF_ALLREDUCE:
    case PF_REDUCE_SCATTER: /* fetched whole: the reduced block */
      return reduce_ref(x, m->in_sh[c->in], m->n, c->op);
    case PF_BROADCAST:
      return block_of(x, m->in_sh[c->in], m->n, c->root);
    default: /* allgather, all_to_all: the value itself */
      return block_of(x, pf_replicated(), 1, 0);
  }
}

#endif
