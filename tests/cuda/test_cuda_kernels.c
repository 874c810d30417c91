/* Every CUDA kernel (cuda/kernels.h) against the CPU kernel of the same
 * name on the same inputs: the CPU kernel is called through the registry
 * as tests/test_kernels.c calls it, the CUDA one on device copies of the
 * inputs, and the outputs are compared element by element, exactly where
 * the two must agree bit for bit (generators, copies, integer ops, and the
 * float ops the build keeps free of fused multiply-adds), within a
 * tolerance per dtype elsewhere. Skipped (exit 77) without a GPU. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cuda_testing.h"

#include "base/diag.h"
#include "cuda/kernels.h"
#include "kernels/registry.h"
#include "pathflow/attrs.h"

#define S0(dt) {.dtype = (dt), .rank = 0}
#define S1(dt, a) {.dtype = (dt), .rank = 1, .dims = {a}}
#define S2(dt, a, b) {.dtype = (dt), .rank = 2, .dims = {a, b}}
#define S3(dt, a, b, c) {.dtype = (dt), .rank = 3, .dims = {a, b, c}}
#define MAXIO 8

static pf_registry *reg;
static pf_cuda_stream *stream;

static int setup(void **state) {
  pf_diag d;
  (void)state;
  pf_diag_init(&d);
  if (pf_registry_create(&reg) != 0 || pf_builtin_kernels_register(reg) != 0)
    return -1;
  if (pf_cuda_stream_create(0, &stream, &d) != 0) {
    fprintf(stderr, "pf_cuda_stream_create: %s\n", d.msg);
    return -1;
  }
  return 0;
}

static int teardown(void **state) {
  (void)state;
  pf_cuda_stream_destroy(stream);
  pf_registry_destroy(reg);
  return 0;
}

/* ---- inputs -------------------------------------------------------------- */

static uint64_t rng = 1;

static double rnd(void) { /* [-1, 1) */
  rng = rng * 6364136223846793005ull + 1442695040888963407ull;
  return (double)(rng >> 11) / 9007199254740992.0 * 2.0 - 1.0;
}

/* An input: a spec and its data, or NULL data for random values (floats in
 * [-1, 1), integers in [0, 10), u8 in [0, 256)). */
typedef struct tin {
  pf_spec spec;
  const void *data;
} tin;

static void *random_data(const pf_spec *s) {
  int64_t n = pf_spec_numel(s);
  size_t bytes = pf_spec_nbytes(s);
  void *p = malloc(bytes ? bytes : 1);
  for (int64_t i = 0; i < n; i++) {
    double r = rnd();
    switch (s->dtype) {
      case PF_F32: ((float *)p)[i] = (float)r; break;
      case PF_F64: ((double *)p)[i] = r; break;
      case PF_I32: ((int32_t *)p)[i] = (int32_t)floor((r + 1) * 5); break;
      case PF_I64: ((int64_t *)p)[i] = (int64_t)floor((r + 1) * 5); break;
      case PF_U8: ((uint8_t *)p)[i] = (uint8_t)floor((r + 1) * 128); break;
      default: fail_msg("random_data: dtype %d", s->dtype);
    }
  }
  return p;
}

static double get(const pf_spec *s, const void *p, int64_t i) {
  switch (s->dtype) {
    case PF_F32: return ((const float *)p)[i];
    case PF_F64: return ((const double *)p)[i];
    case PF_I32: return ((const int32_t *)p)[i];
    case PF_I64: return (double)((const int64_t *)p)[i];
    case PF_U8: return ((const uint8_t *)p)[i];
    default: fail_msg("get: dtype %d", s->dtype);
  }
  return 0;
}

/* ---- the comparison ------------------------------------------------------ */

enum { TOL, EXACT };

/* Relative tolerance (with a floor of 1 on the scale) by dtype; `loose`
 * for results that go through exp/log or a different summation order. */
static double tolerance(pf_dtype dt, int loose) {
  if (dt == PF_F32) return loose ? 2e-5 : 1e-6;
  if (dt == PF_F64) return loose ? 1e-12 : 1e-14;
  return 0;
}

typedef struct run_opts {
  int shard, num_shards; /* 0, 1 unless set */
  int mode;              /* TOL or EXACT */
  int loose;
  double tol;            /* overrides tolerance() when > 0 */
  int want_error;        /* a PF_E code the CUDA kernel must report */
  const char *want_msg;  /* part of its message */
} run_opts;

/* Runs kernel `name` on the CPU and on the GPU and compares. */
static void check(const char *name, const pf_attrs *attrs, int n_in,
                  const tin *in, run_opts o) {
  const pf_kernel *k = pf_registry_find(reg, name, PF_DEVICE_CPU);
  const pf_cuda_kernel *ck = pf_cuda_kernel_find(name);
  pf_spec in_specs[MAXIO], out_specs[MAXIO];
  pf_view hin[MAXIO], hout[MAXIO], din[MAXIO], dout[MAXIO];
  void *owned[MAXIO] = {0};
  pf_diag d;
  int n_out, rc;
  if (k == NULL || ck == NULL) fail_msg("%s: no CPU or CUDA kernel", name);
  if (o.num_shards == 0) o.num_shards = 1;
  n_out = k->def.n_out;
  for (int i = 0; i < n_in; i++) in_specs[i] = in[i].spec;
  pf_diag_init(&d);
  if (k->def.shape(attrs, n_in, in_specs, n_out, out_specs, &d) != 0)
    fail_msg("%s: shape: %s", name, d.msg);
  for (int i = 0; i < n_in; i++) {
    size_t bytes = pf_spec_nbytes(&in[i].spec);
    hin[i].spec = din[i].spec = in[i].spec;
    hin[i].data = (void *)in[i].data;
    if (hin[i].data == NULL) hin[i].data = owned[i] = random_data(&in[i].spec);
    CU(cudaMalloc(&din[i].data, bytes ? bytes : 1));
    CU(cudaMemcpy(din[i].data, hin[i].data, bytes, cudaMemcpyHostToDevice));
  }
  for (int i = 0; i < n_out; i++) {
    size_t bytes = pf_spec_nbytes(&out_specs[i]);
    hout[i].spec = dout[i].spec = out_specs[i];
    hout[i].data = malloc(bytes ? bytes : 1);
    memset(hout[i].data, 0xff, bytes ? bytes : 1);
    CU(cudaMalloc(&dout[i].data, bytes ? bytes : 1));
    CU(cudaMemset(dout[i].data, 0xff, bytes ? bytes : 1));
  }
  {
    pf_kernel_call cpu = {.attrs = attrs, .n_in = n_in, .in = hin,
                          .n_out = n_out, .out = hout, .shard = o.shard,
                          .num_shards = o.num_shards, .diag = &d};
    pf_kernel_call gpu = cpu;
    pf_diag gd;
    pf_diag_init(&gd);
    gpu.in = din;
    gpu.out = dout;
    gpu.diag = &gd;
    rc = ck->compute(&gpu, stream);
    if (rc == 0) rc = pf_cuda_stream_sync(stream, &gd);
    if (o.want_error) {
      assert_int_equal(rc, o.want_error);
      if (o.want_msg && strstr(gd.msg, o.want_msg) == NULL)
        fail_msg("%s (CUDA): message \"%s\" lacks \"%s\"", name, gd.msg,
                 o.want_msg);
      /* The CPU kernel refuses the same inputs. */
      assert_int_equal(k->def.compute(&cpu), o.want_error);
      goto out;
    }
    if (rc != 0) fail_msg("%s (CUDA): %s: %s", name, pf_errname(rc), gd.msg);
    if ((rc = k->def.compute(&cpu)) != 0)
      fail_msg("%s (CPU): %s: %s", name, pf_errname(rc), d.msg);
  }
  for (int i = 0; i < n_out; i++) {
    const pf_spec *s = &out_specs[i];
    size_t bytes = pf_spec_nbytes(s);
    int64_t n = pf_spec_numel(s);
    void *got = malloc(bytes ? bytes : 1);
    double tol = o.mode == EXACT ? 0
                 : o.tol > 0 && (s->dtype == PF_F32 || s->dtype == PF_F64)
                     ? o.tol
                     : tolerance(s->dtype, o.loose);
    CU(cudaMemcpy(got, dout[i].data, bytes, cudaMemcpyDeviceToHost));
    if (o.mode == EXACT && memcmp(got, hout[i].data, bytes) != 0) {
      for (int64_t j = 0; j < n; j++)
        if (get(s, got, j) != get(s, hout[i].data, j) &&
            !(isnan(get(s, got, j)) && isnan(get(s, hout[i].data, j))))
          fail_msg("%s output %d element %lld: GPU %.17g, CPU %.17g (want "
                   "them identical)",
                   name, i, (long long)j, get(s, got, j),
                   get(s, hout[i].data, j));
      fail_msg("%s output %d: the bytes differ", name, i);
    }
    for (int64_t j = 0; j < n; j++) {
      double g = get(s, got, j), w = get(s, hout[i].data, j);
      if (isnan(w) && isnan(g)) continue;
      if (!(fabs(g - w) <= tol * fmax(1.0, fabs(w))))
        fail_msg("%s output %d element %lld of %lld: GPU %.17g, CPU %.17g "
                 "(tolerance %g)",
                 name, i, (long long)j, (long long)n, g, w, tol);
    }
    free(got);
  }
out:
  for (int i = 0; i < n_in; i++) {
    CU(cudaFree(din[i].data));
    free(owned[i]);
  }
  for (int i = 0; i < n_out; i++) {
    CU(cudaFree(dout[i].data));
    free(hout[i].data);
  }
}

static pf_attrs *attrs_new(void) {
  pf_attrs *a = NULL;
  assert_int_equal(pf_attrs_create(&a), 0);
  return a;
}

static const run_opts exact = {.mode = EXACT};
static const run_opts close_ = {.mode = TOL};
static const run_opts loose = {.mode = TOL, .loose = 1};

/* ---- the kernels --------------------------------------------------------- */

static void test_binary(void **state) {
  static const char *ops[] = {"add", "sub", "mul"};
  static const pf_dtype dts[] = {PF_F32, PF_F64, PF_I32, PF_I64};
  (void)state;
  for (size_t o = 0; o < 3; o++)
    for (size_t t = 0; t < 4; t++) {
      pf_dtype dt = dts[t];
      tin same[] = {{S2(dt, 37, 41), NULL}, {S2(dt, 37, 41), NULL}};
      tin bcast[] = {{S3(dt, 4, 1, 3), NULL}, {S2(dt, 5, 1), NULL}};
      tin row[] = {{S2(dt, 300, 3), NULL}, {S1(dt, 3), NULL}};
      tin scalar[] = {{S0(dt), NULL}, {S2(dt, 2, 300), NULL}};
      tin empty[] = {{S2(dt, 0, 3), NULL}, {S1(dt, 3), NULL}};
      check(ops[o], NULL, 2, same, exact);
      check(ops[o], NULL, 2, bcast, exact);
      check(ops[o], NULL, 2, row, exact);
      check(ops[o], NULL, 2, scalar, exact);
      check(ops[o], NULL, 2, empty, exact);
    }
  {
    /* Integer overflow wraps on both. */
    int32_t big[2] = {INT32_MAX, INT32_MIN};
    tin wrap[] = {{S1(PF_I32, 2), big}, {S1(PF_I32, 2), big}};
    check("add", NULL, 2, wrap, exact);
    check("mul", NULL, 2, wrap, exact);
  }
}

static void test_elementwise(void **state) {
  static const pf_dtype dts[] = {PF_F32, PF_F64};
  (void)state;
  for (size_t t = 0; t < 2; t++) {
    pf_dtype dt = dts[t];
    pf_attrs *a = attrs_new();
    tin one[] = {{S1(dt, 100003), NULL}};
    tin two[] = {{S1(dt, 100003), NULL}, {S1(dt, 100003), NULL}};
    tin bias[] = {{S3(dt, 7, 3, 33), NULL}, {S1(dt, 33), NULL}};
    assert_int_equal(pf_attrs_set_float(a, "alpha", 2.5), 0);
    assert_int_equal(pf_attrs_set_float(a, "lr", 0.1), 0);
    check("scale", a, 1, one, exact);
    check("relu", NULL, 1, one, exact);
    check("identity", NULL, 1, one, exact);
    check("relu_grad", NULL, 2, two, exact);
    /* A CPU whose compiler fuses p - lr g (aarch64) rounds once less. */
    check("sgd", a, 2, two, close_);
    check("bias_add", NULL, 2, bias, exact);
    pf_attrs_destroy(a);
  }
}

/* Gradient buckets and pipeline microbatches: byte copies, exact. */
static void test_pack_unpack(void **state) {
  pf_attrs *a = attrs_new(), *g = attrs_new(), *m = attrs_new();
  tin parts[] = {{S2(PF_F32, 33, 7), NULL}, {S1(PF_F32, 5), NULL}, {S0(PF_F32), NULL}};
  tin flat[] = {{S1(PF_F32, 400), NULL}};
  tin grad[] = {{S2(PF_F32, 3, 7), NULL}};
  tin rows[] = {{S2(PF_F32, 12, 9), NULL}};
  (void)state;
  check("pack", NULL, 3, parts, exact);
  assert_int_equal(pf_attrs_set_int(a, "offset", 17), 0);
  assert_int_equal(pf_attrs_set_ints(a, "shape", (int64_t[]){11, 3}, 2), 0);
  check("unpack", a, 1, flat, exact);
  assert_int_equal(pf_attrs_set_int(g, "offset", 5), 0);
  assert_int_equal(pf_attrs_set_int(g, "size", 40), 0);
  check("unpack_grad", g, 1, grad, exact);
  assert_int_equal(pf_attrs_set_int(m, "count", 3), 0);
  assert_int_equal(pf_attrs_set_int(m, "index", 2), 0);
  check("microbatch", m, 1, rows, exact);
  pf_attrs_destroy(a);
  pf_attrs_destroy(g);
  pf_attrs_destroy(m);
}

static void test_matmul(void **state) {
  static const pf_dtype dts[] = {PF_F32, PF_F64};
  (void)state;
  for (size_t t = 0; t < 2; t++)
    for (int ta = 0; ta < 2; ta++)
      for (int tb = 0; tb < 2; tb++) {
        pf_dtype dt = dts[t];
        int64_t m = 33, k = 67, n = 45;
        pf_attrs *a = attrs_new();
        tin in[] = {{S2(dt, ta ? k : m, ta ? m : k), NULL},
                    {S2(dt, tb ? n : k, tb ? k : n), NULL}};
        tin empty_k[] = {{S2(dt, ta ? 0 : 3, ta ? 3 : 0), NULL},
                         {S2(dt, tb ? 4 : 0, tb ? 0 : 4), NULL}};
        assert_int_equal(pf_attrs_set_int(a, "transpose_a", ta), 0);
        assert_int_equal(pf_attrs_set_int(a, "transpose_b", tb), 0);
        /* cuBLAS sums in another order than OpenBLAS: 67 products of
         * numbers below 1 differ by a few units in the last place. */
        check("matmul", a, 2, in,
              (run_opts){.mode = TOL, .tol = dt == PF_F32 ? 1e-4 : 1e-12});
        check("matmul", a, 2, empty_k, exact);
        pf_attrs_destroy(a);
      }
}

static void test_reduce(void **state) {
  static const pf_dtype dts[] = {PF_F32, PF_F64};
  (void)state;
  for (size_t t = 0; t < 2; t++)
    for (int axis = -3; axis < 3; axis++)
      for (int keep = 0; keep < 2; keep++) {
        pf_dtype dt = dts[t];
        pf_attrs *a = attrs_new();
        pf_spec x = S3(dt, 4, 50, 6), g = x;
        int ax = axis < 0 ? axis + 3 : axis;
        assert_int_equal(pf_attrs_set_int(a, "axis", axis), 0);
        assert_int_equal(pf_attrs_set_int(a, "keepdims", keep), 0);
        {
          tin in[] = {{x, NULL}};
          check("reduce_sum", a, 1, in, exact);
        }
        if (keep) {
          g.dims[ax] = 1;
        } else {
          memmove(&g.dims[ax], &g.dims[ax + 1],
                  (size_t)(2 - ax) * sizeof g.dims[0]);
          g.dims[--g.rank] = 0;
        }
        {
          tin in[] = {{g, NULL}, {x, NULL}};
          check("reduce_sum_grad", a, 2, in, exact);
        }
        if (!keep) {
          tin in[] = {{x, NULL}};
          check("argmax", a, 1, in, exact);
        }
        pf_attrs_destroy(a);
      }
}

static void test_argmax_ties_nan(void **state) {
  float x[12] = {1, 3, 3, 0, /* tie: the first */
                 2, NAN, 5, NAN, /* the first NaN */
                 -1, -1, -1, -1};
  tin in[] = {{S2(PF_F32, 3, 4), x}};
  (void)state;
  check("argmax", NULL, 1, in, exact);
}

static void test_softmax_xent(void **state) {
  static const pf_dtype dts[] = {PF_F32, PF_F64};
  static const pf_dtype lts[] = {PF_I32, PF_I64};
  (void)state;
  for (size_t t = 0; t < 2; t++)
    for (size_t l = 0; l < 2; l++)
      for (int over = 0; over <= 1000; over += 1000) {
        pf_attrs *a = attrs_new();
        tin in[] = {{S2(dts[t], 517, 10), NULL}, {S1(lts[l], 517), NULL}};
        assert_int_equal(pf_attrs_set_int(a, "mean_over", over), 0);
        check("softmax_xent", a, 2, in, loose);
        check("accuracy", NULL, 2, in, exact);
        pf_attrs_destroy(a);
      }
}

static void test_softmax_xent_bad_label(void **state) {
  int64_t labels[4] = {1, 2, 10, -1};
  tin in[] = {{S2(PF_F32, 4, 10), NULL}, {S1(PF_I64, 4), labels}};
  (void)state;
  check("softmax_xent", NULL, 2, in,
        (run_opts){.want_error = PF_EINVAL,
                   .want_msg = "row 2 has label 10; expected 0 <= label < 10"});
  /* The stream is usable afterwards, and the fault was cleared. */
  labels[2] = labels[3] = 0;
  check("softmax_xent", NULL, 2, in, loose);
  {
    /* No classes: every label is out of range (and no logit is read). */
    tin none[] = {{S2(PF_F32, 4, 0), NULL}, {S1(PF_I64, 4), labels}};
    tin empty[] = {{S2(PF_F64, 0, 10), NULL}, {S1(PF_I32, 0), NULL}};
    check("softmax_xent", NULL, 2, none,
          (run_opts){.want_error = PF_EINVAL,
                     .want_msg = "row 0 has label 1; expected 0 <= label < 0"});
    /* No rows: a zero loss. */
    check("softmax_xent", NULL, 2, empty, loose);
    check("accuracy", NULL, 2, empty, exact);
  }
}

static void test_optim(void **state) {
  static const pf_dtype dts[] = {PF_F32, PF_F64};
  (void)state;
  for (size_t t = 0; t < 2; t++) {
    pf_dtype dt = dts[t];
    int64_t step = 41;
    double lr = 0.003;
    double v[3000];
    pf_attrs *a = attrs_new();
    tin mom[] = {{S1(dt, 3000), NULL}, {S1(dt, 3000), NULL},
                 {S1(dt, 3000), NULL}};
    /* Adam's second moment is never negative. */
    for (int i = 0; i < 3000; i++) v[i] = fabs(rnd());
    if (dt == PF_F32)
      for (int i = 0; i < 3000; i++) ((float *)v)[i] = (float)v[i];
    tin adam[] = {{S1(dt, 3000), NULL}, {S1(dt, 3000), NULL},
                  {S1(dt, 3000), NULL}, {S1(dt, 3000), v},
                  {S0(PF_I64), &step}, {S0(PF_F64), &lr}};
    assert_int_equal(pf_attrs_set_float(a, "lr", 0.05), 0);
    assert_int_equal(pf_attrs_set_float(a, "beta", 0.8), 0);
    check("momentum", a, 3, mom, close_);
    /* pow and sqrt of the bias corrections may differ in the last bit. */
    check("adam", a, 5, adam, close_);
    check("adam", a, 6, adam, close_);
    pf_attrs_destroy(a);
  }
}

static void test_generators(void **state) {
  static const pf_dtype fill_dts[] = {PF_F32, PF_F64, PF_I32, PF_I64, PF_U8};
  static const char *modes[] = {"uniform", "kaiming", "xavier"};
  int64_t shape[2] = {301, 77};
  (void)state;
  for (size_t t = 0; t < 5; t++) {
    pf_attrs *a = attrs_new();
    assert_int_equal(pf_attrs_set_ints(a, "shape", shape, 2), 0);
    assert_int_equal(pf_attrs_set_int(a, "dtype", fill_dts[t]), 0);
    assert_int_equal(pf_attrs_set_float(a, "value", 7.75), 0);
    assert_int_equal(pf_attrs_set_float(a, "start", 3), 0);
    assert_int_equal(pf_attrs_set_float(a, "step", fill_dts[t] == PF_U8 ? 0.01 : 0.37), 0);
    check("fill", a, 0, NULL, exact);
    /* Integers exactly; floats within an ulp, for a CPU compiler that
     * fuses start + i step. */
    check("iota", a, 0, NULL, close_);
    pf_attrs_destroy(a);
  }
  for (int dt = PF_F32; dt <= PF_F64; dt++)
    for (size_t m = 0; m < 3; m++) {
      pf_attrs *a = attrs_new();
      assert_int_equal(pf_attrs_set_ints(a, "shape", shape, 2), 0);
      assert_int_equal(pf_attrs_set_int(a, "dtype", dt), 0);
      assert_int_equal(pf_attrs_set_int(a, "seed", -12345), 0);
      assert_int_equal(pf_attrs_set_float(a, "bound", 0.3), 0);
      assert_int_equal(pf_attrs_set_string(a, "mode", modes[m]), 0);
      check("init_uniform", a, 0, NULL, exact);
      pf_attrs_destroy(a);
    }
}

static void test_batch_rows(void **state) {
  static const pf_dtype dts[] = {PF_F32, PF_F64, PF_I32, PF_I64};
  /* Steps within an epoch, across epochs, and back to an earlier one (the
   * device's cached order must be redrawn). */
  static const int64_t steps[] = {0, 3, 7, 15, 2};
  (void)state;
  for (size_t t = 0; t < 4; t++)
    for (int split = 0; split < 2; split++)
      for (size_t s = 0; s < 5; s++) {
        int64_t step = steps[s];
        pf_attrs *a = attrs_new();
        tin in[] = {{S3(PF_U8, 100, 3, 2), NULL}, {S0(PF_I64), &step}};
        assert_int_equal(pf_attrs_set_int(a, "batch", 12), 0);
        assert_int_equal(pf_attrs_set_int(a, "split_rows", split), 0);
        assert_int_equal(pf_attrs_set_int(a, "dtype", dts[t]), 0);
        assert_int_equal(pf_attrs_set_int(a, "seed", 99 + (int)s / 4), 0);
        assert_int_equal(pf_attrs_set_float(a, "scale", 1.0 / 255), 0);
        check("batch_rows", a, 2, in,
              (run_opts){.mode = EXACT, .shard = split,
                         .num_shards = split ? 3 : 1});
        pf_attrs_destroy(a);
      }
  {
    int64_t step = -4;
    pf_attrs *a = attrs_new();
    tin in[] = {{S2(PF_U8, 10, 4), NULL}, {S0(PF_I64), &step}};
    assert_int_equal(pf_attrs_set_int(a, "batch", 2), 0);
    check("batch_rows", a, 2, in,
          (run_opts){.want_error = PF_EINVAL,
                     .want_msg = "batch_rows: step -4 is negative"});
    /* A global batch larger than the data set: refused on the host. */
    step = 0;
    assert_int_equal(pf_attrs_set_int(a, "batch", 4), 0);
    assert_int_equal(pf_attrs_set_int(a, "split_rows", 1), 0);
    check("batch_rows", a, 2, in,
          (run_opts){.want_error = PF_ESHAPE, .num_shards = 3,
                     .want_msg = "a global batch of 12 rows from 10"});
    pf_attrs_destroy(a);
  }
}

/* Every CUDA kernel has a CPU kernel of its name, and every built-in CPU
 * kernel a CUDA one, but for those that read or write files. */
static void test_table(void **state) {
  static const char *host_only[] = {"idx_read", "checkpoint_load",
                                    "checkpoint_save", "checkpoint_prune"};
  static const char *cpu[] = {
      "accuracy", "adam", "argmax", "batch_rows", "fill", "identity",
      "init_uniform", "iota", "matmul", "momentum", "reduce_sum",
      "reduce_sum_grad", "softmax_xent", "add", "sub", "mul", "scale",
      "relu", "relu_grad", "sgd", "bias_add", "pack", "unpack", "unpack_grad",
      "microbatch"};
  size_t n;
  const pf_cuda_kernel *t = pf_cuda_kernels(&n);
  (void)state;
  assert_int_equal(n, sizeof cpu / sizeof cpu[0]);
  for (size_t i = 0; i < n; i++)
    if (pf_registry_find(reg, t[i].name, PF_DEVICE_CPU) == NULL)
      fail_msg("CUDA kernel %s has no CPU kernel", t[i].name);
  for (size_t i = 0; i < sizeof cpu / sizeof cpu[0]; i++)
    assert_non_null(pf_cuda_kernel_find(cpu[i]));
  for (size_t i = 0; i < sizeof host_only / sizeof host_only[0]; i++) {
    assert_non_null(pf_registry_find(reg, host_only[i], PF_DEVICE_CPU));
    assert_null(pf_cuda_kernel_find(host_only[i]));
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_table),
      cmocka_unit_test(test_binary),
      cmocka_unit_test(test_elementwise),
      cmocka_unit_test(test_pack_unpack),
      cmocka_unit_test(test_matmul),
      cmocka_unit_test(test_reduce),
      cmocka_unit_test(test_argmax_ties_nan),
      cmocka_unit_test(test_softmax_xent),
      cmocka_unit_test(test_softmax_xent_bad_label),
      cmocka_unit_test(test_optim),
      cmocka_unit_test(test_generators),
      cmocka_unit_test(test_batch_rows),
  };
  pf_cuda_test_require_gpu("test_cuda_kernels");
  return cmocka_run_group_tests(tests, setup, teardown);
}
