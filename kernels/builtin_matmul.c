/* matmul: out[M,N] = op(a) op(b) through OpenBLAS, op being an optional
 * transpose. OpenBLAS threading is set once by the context, never here. */
#include <cblas.h>
#include <limits.h>
#include <string.h>

#include "base/util.h"
#include "kernels/builtin_internal.h"
#include "kernels/sharding.h"
#include "pathflow/error.h"

typedef struct mm_dims {
  int64_t m, n, k;
  int ta, tb;
} mm_dims;

/* a is [M,K], or [K,M] transposed; b is [K,N], or [N,K] transposed. */
static void dims_of(const pf_spec *a, const pf_spec *b, int ta, int tb,
                    mm_dims *d, int64_t *kb) {
  d->ta = ta;
  d->tb = tb;
  d->m = a->dims[ta ? 1 : 0];
  d->k = a->dims[ta ? 0 : 1];
  d->n = b->dims[tb ? 0 : 1];
  *kb = b->dims[tb ? 1 : 0];
}

static int matmul_shape(const pf_attrs *attrs, int n_in, const pf_spec *in,
                        int n_out, pf_spec *out, pf_diag *diag) {
  char a[PF_BUILTIN_SPEC_STR], b[PF_BUILTIN_SPEC_STR];
  int64_t ta, tb, kb;
  mm_dims d;
  int rc;
  if ((rc = pf_builtin_want_dtype("matmul", in, 0, PF_BUILTIN_FLOATS, diag)) ||
      (rc = pf_builtin_want_same_dtype("matmul", in, 1, diag)) ||
      (rc = pf_builtin_want_rank("matmul", in, 0, 2, diag)) ||
      (rc = pf_builtin_want_rank("matmul", in, 1, 2, diag)) ||
      (rc = pf_builtin_int_attr("matmul", attrs, "transpose_a", 0, 0, 1, &ta,
                                diag)) ||
      (rc = pf_builtin_int_attr("matmul", attrs, "transpose_b", 0, 0, 1, &tb,
                                diag)))
    return rc;
  dims_of(&in[0], &in[1], (int)ta, (int)tb, &d, &kb);
  if (d.k != kb)
    return pf_diag_error(diag, PF_ESHAPE,
                         "matmul: inner dimensions differ (%lld vs %lld): "
                         "input 0 is %s (transpose_a=%d), input 1 is %s "
                         "(transpose_b=%d)",
                         (long long)d.k, (long long)kb,
                         pf_spec_str(&in[0], a, sizeof a), d.ta,
                         pf_spec_str(&in[1], b, sizeof b), d.tb);
  /* The BLAS interface takes int dimensions. */
  for (int i = 0; i < 2; i++)
    if (in[i].dims[0] > INT_MAX || in[i].dims[1] > INT_MAX)
      return pf_diag_error(diag, PF_ESHAPE,
                           "matmul: input %d is %s; BLAS takes dimensions up "
                           "to %d",
                           i, pf_spec_str(&in[i], a, sizeof a), INT_MAX);
  out[0] = pf_spec_2d(in[0].dtype, d.m, d.n);
  return 0;
}

static int matmul_compute(const pf_kernel_call *call) {
  const pf_spec *a = &call->in[0].spec, *b = &call->in[1].spec;
  int64_t kb;
  mm_dims d;
  enum CBLAS_TRANSPOSE ta, tb;
  int lda, ldb;
  dims_of(a, b, pf_attrs_get_int(call->attrs, "transpose_a", 0) != 0,
          pf_attrs_get_int(call->attrs, "transpose_b", 0) != 0, &d, &kb);
  if (d.m == 0 || d.n == 0) return 0;
  /* An empty inner dimension sums nothing; BLAS would also want a leading
   * dimension of at least 1 for the empty operand. */
  if (d.k == 0) {
    memset(call->out[0].data, 0, pf_spec_nbytes(&call->out[0].spec));
    return 0;
  }
  ta = d.ta ? CblasTrans : CblasNoTrans;
  tb = d.tb ? CblasTrans : CblasNoTrans;
  lda = (int)a->dims[1];
  ldb = (int)b->dims[1];
  if (a->dtype == PF_F32)
    cblas_sgemm(CblasRowMajor, ta, tb, (int)d.m, (int)d.n, (int)d.k, 1.0f,
                call->in[0].data, lda, call->in[1].data, ldb, 0.0f,
                call->out[0].data, (int)d.n);
  else
    cblas_dgemm(CblasRowMajor, ta, tb, (int)d.m, (int)d.n, (int)d.k, 1.0,
                call->in[0].data, lda, call->in[1].data, ldb, 0.0,
                call->out[0].data, (int)d.n);
  return 0;
}

static void matmul_cost(const pf_attrs *attrs, int n_in, const pf_spec *in,
                        int n_out, const pf_spec *out, pf_cost *cost) {
  int64_t kb;
  mm_dims d;
  dims_of(&in[0], &in[1], pf_attrs_get_int(attrs, "transpose_a", 0) != 0,
          pf_attrs_get_int(attrs, "transpose_b", 0) != 0, &d, &kb);
  pf_builtin_cost(n_in, in, n_out, out,
                  2.0 * (double)d.m * (double)d.n * (double)d.k, cost);
}

/* The role of an input's split axis: a [M,K] or b [K,N] (before the
 * transpose flags) split along M, N or the contracted K. */
enum { ROLE_WHOLE, ROLE_M, ROLE_N, ROLE_K, ROLE_PARTIAL };
static int role_of(pf_sharding sh, int k_axis, int other) {
  if (sh.kind == PF_SHARD_REPLICATED) return ROLE_WHOLE;
  if (sh.kind == PF_SHARD_PARTIAL) return ROLE_PARTIAL;
  return sh.axis == k_axis ? ROLE_K : other;
}

/* Rows of a split give rows of the product, columns of b give its columns,
 * both split along K give partial sums; a partial operand times a whole one
 * is partial. Anything else would need a 2-D device mesh. */
static int matmul_sharding(const pf_attrs *attrs, int n_in, const pf_spec *in,
                           const pf_sharding *in_sh, int num_devices,
                           int n_out, pf_sharding *out_sh, pf_diag *diag) {
  int ta = pf_attrs_get_int(attrs, "transpose_a", 0) != 0;
  int tb = pf_attrs_get_int(attrs, "transpose_b", 0) != 0;
  int a = role_of(in_sh[0], ta ? 0 : 1, ROLE_M);
  int b = role_of(in_sh[1], tb ? 1 : 0, ROLE_N);
  (void)in;
  (void)num_devices;
  (void)n_out;
  if (a == ROLE_WHOLE && b == ROLE_WHOLE)
    out_sh[0] = pf_replicated();
  else if (a == ROLE_M && b == ROLE_WHOLE)
    out_sh[0] = pf_split(0);
  else if (a == ROLE_WHOLE && b == ROLE_N)
    out_sh[0] = pf_split(1);
  else if ((a == ROLE_K && b == ROLE_K) ||
           (a == ROLE_PARTIAL && b == ROLE_WHOLE) ||
           (a == ROLE_WHOLE && b == ROLE_PARTIAL))
    out_sh[0] = pf_partial();
  else
    return pf_sharding_refuse(diag, "matmul", n_in, in_sh,
                              "a split by rows needs b whole, b split by "
                              "columns needs a whole, a split along K needs "
                              "b split along K, a partial operand needs the "
                              "other whole");
  return 0;
}

static const pf_kernel_def defs[] = {
    {.name = "matmul", .n_in = 2, .n_out = 1, .shape = matmul_shape,
     .cost = matmul_cost, .sharding = matmul_sharding,
     .compute = matmul_compute},
};

int pf_builtin_register_matmul(pf_registry *reg) {
  return pf_builtin_add_all(reg, defs, PF_ARRAY_LEN(defs));
}
