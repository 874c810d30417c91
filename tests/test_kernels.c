/* Built-in CPU kernels against plain-C references, and their shape errors.
 *
 * Kernels are called the way the runtime calls them: shape function on the
 * input specs, outputs allocated from the specs it gives, then compute. */
#include <limits.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "base/diag.h"
#include "kernels/registry.h"
#include "pathflow/attrs.h"
#include "pathflow/error.h"

#define LEN(a) (sizeof(a) / sizeof((a)[0]))
#define S0(dt) {.dtype = (dt), .rank = 0}
#define S1(dt, a) {.dtype = (dt), .rank = 1, .dims = {a}}
#define S2(dt, a, b) {.dtype = (dt), .rank = 2, .dims = {a, b}}
#define S3(dt, a, b, c) {.dtype = (dt), .rank = 3, .dims = {a, b, c}}

static const pf_dtype floats[] = {PF_F32, PF_F64};
static pf_registry *reg;

static int setup(void **state) {
  (void)state;
  if (pf_registry_create(&reg) != 0) return -1;
  return pf_builtin_kernels_register(reg);
}

static int teardown(void **state) {
  (void)state;
  pf_registry_destroy(reg);
  return 0;
}

/* ---- helpers ------------------------------------------------------------ */

static uint64_t rng;

static void seed(uint64_t s) { rng = s * 2654435761u + 1; }

/* Uniform in [-1, 1). */
static double rnd(void) {
  rng = rng * 6364136223846793005ull + 1442695040888963407ull;
  return (double)(rng >> 11) / 9007199254740992.0 * 2.0 - 1.0;
}

static const pf_kernel *kernel(const char *name) {
  const pf_kernel *k = pf_registry_find(reg, name, PF_DEVICE_CPU);
  if (k == NULL) fail_msg("kernel %s is not registered", name);
  return k;
}

static pf_attrs *attrs_new(void) {
  pf_attrs *a = NULL;
  assert_int_equal(pf_attrs_create(&a), 0);
  return a;
}

static void set_int(pf_attrs *a, const char *name, int64_t v) {
  assert_int_equal(pf_attrs_set_int(a, name, v), 0);
}

static void set_float(pf_attrs *a, const char *name, double v) {
  assert_int_equal(pf_attrs_set_float(a, name, v), 0);
}

static void set_shape(pf_attrs *a, int n, const int64_t *dims) {
  assert_int_equal(pf_attrs_set_ints(a, "shape", dims, n), 0);
}

/* Output buffers start as 0xff bytes (NaN, -1) so unwritten elements show. */
static pf_view alloc_view(pf_spec spec) {
  size_t n = pf_spec_nbytes(&spec);
  pf_view v = {spec, test_malloc(n ? n : 1)};
  memset(v.data, 0xff, n ? n : 1);
  return v;
}

static void free_views(int n, pf_view *v) {
  for (int i = 0; i < n; i++) test_free(v[i].data);
}

static double get(const pf_view *v, int64_t i) {
  switch (v->spec.dtype) {
    case PF_F32: return ((const float *)v->data)[i];
    case PF_F64: return ((const double *)v->data)[i];
    case PF_I32: return ((const int32_t *)v->data)[i];
    case PF_I64: return (double)((const int64_t *)v->data)[i];
    case PF_U8: return ((const uint8_t *)v->data)[i];
    default: fail_msg("get: dtype %d", v->spec.dtype);
  }
  return 0;
}

static void set(pf_view *v, int64_t i, double x) {
  switch (v->spec.dtype) {
    case PF_F32: ((float *)v->data)[i] = (float)x; break;
    case PF_F64: ((double *)v->data)[i] = x; break;
    case PF_I32: ((int32_t *)v->data)[i] = (int32_t)x; break;
    case PF_I64: ((int64_t *)v->data)[i] = (int64_t)x; break;
    default: fail_msg("set: dtype %d", v->spec.dtype);
  }
}

/* Random values: floats in [-scale, scale), integers in [-1000, 1000]. */
static pf_view random_view(pf_spec spec, double scale) {
  pf_view v = alloc_view(spec);
  int is_int = spec.dtype == PF_I32 || spec.dtype == PF_I64;
  for (int64_t i = 0; i < pf_spec_numel(&spec); i++)
    set(&v, i, is_int ? floor(rnd() * 1000.0) : rnd() * scale);
  return v;
}

/* Reads every element back as doubles (the stored, rounded values). */
static double *values(const pf_view *v) {
  int64_t n = pf_spec_numel(&v->spec);
  double *out = test_malloc((size_t)(n ? n : 1) * sizeof *out);
  for (int64_t i = 0; i < n; i++) out[i] = get(v, i);
  return out;
}

static double tolerance(pf_dtype dt) {
  return dt == PF_F32 ? 1e-5 : dt == PF_F64 ? 1e-12 : 0;
}

static void assert_close(const pf_view *got, const double *want, int64_t n) {
  double tol = tolerance(got->spec.dtype);
  assert_int_equal(pf_spec_numel(&got->spec), n);
  for (int64_t i = 0; i < n; i++) {
    double g = get(got, i);
    if (!(fabs(g - want[i]) <= tol * fmax(1.0, fabs(want[i]))))
      fail_msg("%s element %lld: got %.17g, want %.17g",
               pf_dtype_name(got->spec.dtype), (long long)i, g, want[i]);
  }
}

static void assert_spec(const pf_spec *got, pf_spec want) {
  char a[200], b[200];
  if (!pf_spec_equal(got, &want))
    fail_msg("spec %s, want %s", pf_spec_str(got, a, sizeof a),
             pf_spec_str(&want, b, sizeof b));
}

/* Shape, allocate the outputs, compute. Returns what compute returned. */
static int run(const char *name, const pf_attrs *attrs, int n_in,
               const pf_view *in, pf_view *out, pf_diag *diag) {
  const pf_kernel *k = kernel(name);
  pf_spec in_specs[8], out_specs[8];
  pf_kernel_call call;
  assert_true(n_in <= 8 && k->def.n_out <= 8);
  if (k->def.n_in != PF_VARIADIC) assert_int_equal(k->def.n_in, n_in);
  for (int i = 0; i < n_in; i++) in_specs[i] = in[i].spec;
  pf_diag_init(diag);
  if (k->def.shape(attrs, n_in, in_specs, k->def.n_out, out_specs, diag) != 0)
    fail_msg("%s: shape failed: %s", name, diag->msg);
  for (int i = 0; i < k->def.n_out; i++) out[i] = alloc_view(out_specs[i]);
  memset(&call, 0, sizeof call);
  call.attrs = attrs;
  call.n_in = n_in;
  call.in = in;
  call.n_out = k->def.n_out;
  call.out = out;
  call.num_shards = 1;
  call.user = k->def.user;
  call.diag = diag;
  return k->def.compute(&call);
}

static void run_ok(const char *name, const pf_attrs *attrs, int n_in,
                   const pf_view *in, pf_view *out) {
  pf_diag d;
  if (run(name, attrs, n_in, in, out, &d) != 0)
    fail_msg("%s: compute failed: %s", name, d.msg);
}

/* The shape function refuses with `code`; the message starts with the
 * kernel's name and holds each of the NULL-terminated needles. */
static void expect_shape_error(const char *name, const pf_attrs *attrs,
                               int n_in, const pf_spec *in, int code, ...) {
  const pf_kernel *k = kernel(name);
  pf_spec out[4];
  pf_diag d;
  size_t len = strlen(name);
  const char *needle;
  va_list ap;
  pf_diag_init(&d);
  if (k->def.shape(attrs, n_in, in, k->def.n_out, out, &d) != code)
    fail_msg("%s: want %s, got %s (%s)", name, pf_errname(code),
             pf_errname(d.code), d.msg);
  assert_int_equal(d.code, code);
  if (strncmp(d.msg, name, len) != 0 || d.msg[len] != ':')
    fail_msg("%s: message does not name the kernel: %s", name, d.msg);
  va_start(ap, code);
  while ((needle = va_arg(ap, const char *)) != NULL)
    if (strstr(d.msg, needle) == NULL)
      fail_msg("%s: message lacks \"%s\": %s", name, needle, d.msg);
  va_end(ap);
}

/* Coordinates of flat index i of `s`, row-major. */
static void unravel(const pf_spec *s, int64_t i, int64_t *coord) {
  for (int d = s->rank - 1; d >= 0; d--) {
    coord[d] = i % s->dims[d];
    i /= s->dims[d];
  }
}

/* Flat index in `s` with `axis` removed, of input flat index i. */
static int64_t drop_axis(const pf_spec *s, int axis, int64_t i, int64_t *k) {
  int64_t coord[PF_MAX_RANK], flat = 0;
  unravel(s, i, coord);
  for (int d = 0; d < s->rank; d++)
    if (d != axis) flat = flat * s->dims[d] + coord[d];
  *k = coord[axis];
  return flat;
}

/* ---- registry ------------------------------------------------------------ */

static void test_registry(void **state) {
  static const struct {
    const char *name;
    int n_in, n_out;
  } all[] = {
      {"fill", 0, 1},     {"iota", 0, 1},       {"identity", 1, 1},
      {"add", 2, 1},      {"sub", 2, 1},        {"mul", 2, 1},
      {"scale", 1, 1},    {"relu", 1, 1},       {"relu_grad", 2, 1},
      {"matmul", 2, 1},   {"bias_add", 2, 1},   {"reduce_sum", 1, 1},
      {"argmax", 1, 1},   {"softmax_xent", 2, 2}, {"sgd", 2, 1},
      {"reduce_sum_grad", 2, 1}, {"accuracy", 2, 1}, {"momentum", 3, 2},
      {"adam", PF_VARIADIC, 4},     {"init_uniform", 0, 1},
      {"idx_read", 0, 1}, {"batch_rows", 2, 1}, {"checkpoint_save", 2, 1},
      {"checkpoint_load", 1, 1}, {"pack", PF_VARIADIC, 1}, {"unpack", 1, 1},
      {"unpack_grad", 1, 1},
  };
  pf_registry *r;
  pf_kernel_def def;
  char long_name[PF_KERNEL_NAME_MAX + 2];
  (void)state;
  for (size_t i = 0; i < LEN(all); i++) {
    const pf_kernel *k = kernel(all[i].name);
    assert_string_equal(k->def.name, all[i].name);
    assert_int_equal(k->def.kind, PF_DEVICE_CPU);
    assert_int_equal(k->def.n_in, all[i].n_in);
    assert_int_equal(k->def.n_out, all[i].n_out);
    assert_non_null(k->def.shape);
    assert_non_null(k->def.cost);
    assert_non_null(k->def.compute);
    /* Every built-in states how its shardings flow. */
    assert_non_null(k->def.sharding);
    assert_null(pf_registry_find(reg, all[i].name, PF_DEVICE_GPU));
  }

  assert_int_equal(pf_registry_create(&r), 0);
  assert_int_equal(pf_builtin_kernels_register(r), 0);
  assert_int_equal(pf_builtin_kernels_register(r), PF_EEXIST);
  def = kernel("add")->def;
  assert_int_equal(pf_registry_add(r, &def), PF_EEXIST);
  def.kind = PF_DEVICE_GPU; /* same name, other kind: allowed */
  assert_int_equal(pf_registry_add(r, &def), 0);
  def.kind = PF_DEVICE_CPU;
  def.name = "my.add:v1-2";
  assert_int_equal(pf_registry_add(r, &def), 0);
  assert_non_null(pf_registry_find(r, "my.add:v1-2", PF_DEVICE_CPU));
  def.name = "bad name";
  assert_int_equal(pf_registry_add(r, &def), PF_EINVAL);
  def.name = "";
  assert_int_equal(pf_registry_add(r, &def), PF_EINVAL);
  def.name = NULL;
  assert_int_equal(pf_registry_add(r, &def), PF_EINVAL);
  memset(long_name, 'k', sizeof long_name - 1);
  long_name[sizeof long_name - 1] = '\0';
  def.name = long_name;
  assert_int_equal(pf_registry_add(r, &def), PF_EINVAL);
  long_name[PF_KERNEL_NAME_MAX] = '\0';
  assert_int_equal(pf_registry_add(r, &def), 0);
  {
    /* Hundreds of kernels (chunks of 64, the index grown several times):
     * each found by name and kind, at the address it had when added. */
    const pf_kernel *first = pf_registry_find(r, "my.add:v1-2", PF_DEVICE_CPU), *at[600];
    char name[32];
    for (int i = 0; i < 600; i++) {
      snprintf(name, sizeof name, "user.k%d", i);
      def.name = name;
      def.kind = i % 3 ? PF_DEVICE_CPU : PF_DEVICE_GPU;
      assert_int_equal(pf_registry_add(r, &def), 0);
      assert_int_equal(pf_registry_add(r, &def), PF_EEXIST);
      assert_non_null(at[i] = pf_registry_find(r, name, def.kind));
    }
    for (int i = 0; i < 600; i++) {
      snprintf(name, sizeof name, "user.k%d", i);
      assert_ptr_equal(pf_registry_find(r, name, i % 3 ? PF_DEVICE_CPU : PF_DEVICE_GPU), at[i]);
      assert_string_equal(at[i]->def.name, name);
      assert_null(pf_registry_find(r, name, i % 3 ? PF_DEVICE_GPU : PF_DEVICE_CPU));
    }
    assert_ptr_equal(pf_registry_find(r, "my.add:v1-2", PF_DEVICE_CPU), first);
    assert_null(pf_registry_find(r, "user.k600", PF_DEVICE_CPU));
  }
  pf_registry_destroy(r);
}

/* ---- fill, iota, identity ------------------------------------------------ */

static void test_fill(void **state) {
  static const pf_dtype dts[] = {PF_F32, PF_F64, PF_I32, PF_I64, PF_U8};
  const int64_t dims[] = {2, 3};
  (void)state;
  for (size_t t = 0; t < LEN(dts); t++) {
    pf_attrs *a = attrs_new();
    pf_view out;
    double v = dts[t] == PF_U8 ? 200 : dts[t] <= PF_F64 ? -2.5 : -7;
    set_shape(a, 2, dims);
    set_int(a, "dtype", dts[t]);
    set_float(a, "value", v);
    run_ok("fill", a, 0, NULL, &out);
    assert_spec(&out.spec, (pf_spec)S2(dts[t], 2, 3));
    for (int64_t i = 0; i < 6; i++) assert_true(get(&out, i) == v);
    free_views(1, &out);
    pf_attrs_destroy(a);
  }

  /* Defaults: f32, 0. An empty shape is a scalar; a zero dim is empty. */
  {
    pf_attrs *a = attrs_new();
    const int64_t zero[] = {0, 4};
    pf_view out;
    set_shape(a, 0, NULL);
    run_ok("fill", a, 0, NULL, &out);
    assert_spec(&out.spec, (pf_spec)S0(PF_F32));
    assert_true(get(&out, 0) == 0.0);
    free_views(1, &out);
    set_shape(a, 2, zero);
    run_ok("fill", a, 0, NULL, &out);
    assert_spec(&out.spec, (pf_spec)S2(PF_F32, 0, 4));
    free_views(1, &out);
    pf_attrs_destroy(a);
  }

  /* -0.0 fills +0.0, as the ramp of step 0 always has (the CUDA kernel
   * still computes the ramp: the bits must agree). */
  {
    pf_attrs *a = attrs_new();
    const int64_t dims1[] = {5};
    pf_view out;
    set_shape(a, 1, dims1);
    set_float(a, "value", -0.0);
    run_ok("fill", a, 0, NULL, &out);
    for (int64_t i = 0; i < 5; i++) {
      float f = ((const float *)out.data)[i];
      assert_false(signbit(f));
    }
    free_views(1, &out);
    pf_attrs_destroy(a);
  }
}

static void test_fill_attr_errors(void **state) {
  const int64_t dims[] = {2, 3}, neg[] = {2, -1};
  const int64_t nine[] = {1, 1, 1, 1, 1, 1, 1, 1, 1};
  const int64_t huge[] = {INT64_C(1) << 40, INT64_C(1) << 40};
  const char *kernels[] = {"fill", "iota"};
  (void)state;
  for (size_t i = 0; i < LEN(kernels); i++) {
    const char *k = kernels[i];
    pf_attrs *a = attrs_new();
    expect_shape_error(k, a, 0, NULL, PF_EINVAL, "shape", NULL);
    set_shape(a, 2, neg);
    expect_shape_error(k, a, 0, NULL, PF_EINVAL, "shape", "f32[2,-1]", NULL);
    set_shape(a, 9, nine);
    expect_shape_error(k, a, 0, NULL, PF_EINVAL, "shape", NULL);
    set_shape(a, 2, huge);
    expect_shape_error(k, a, 0, NULL, PF_EINVAL, "shape", NULL);
    assert_int_equal(pf_attrs_set_string(a, "shape", "2,3"), 0);
    expect_shape_error(k, a, 0, NULL, PF_EINVAL, "shape", NULL);
    set_shape(a, 2, dims);
    set_int(a, "dtype", PF_BF16);
    expect_shape_error(k, a, 0, NULL, PF_EDTYPE, "bf16", NULL);
    set_int(a, "dtype", PF_F16);
    expect_shape_error(k, a, 0, NULL, PF_EDTYPE, "f16", NULL);
    set_int(a, "dtype", 99);
    expect_shape_error(k, a, 0, NULL, PF_EINVAL, "dtype", NULL);
    set_int(a, "dtype", -1);
    expect_shape_error(k, a, 0, NULL, PF_EINVAL, "dtype", NULL);
    set_float(a, "dtype", 0.5);
    expect_shape_error(k, a, 0, NULL, PF_EINVAL, "dtype", NULL);
    pf_attrs_destroy(a);
  }
  {
    pf_attrs *a = attrs_new();
    set_shape(a, 2, dims);
    set_int(a, "dtype", PF_I32);
    set_float(a, "value", 3e9);
    expect_shape_error("fill", a, 0, NULL, PF_EINVAL, "value", "i32", NULL);
    set_int(a, "dtype", PF_U8);
    set_float(a, "value", -1);
    expect_shape_error("fill", a, 0, NULL, PF_EINVAL, "value", "u8", NULL);
    set_int(a, "dtype", PF_I64);
    set_float(a, "value", 1e19);
    expect_shape_error("fill", a, 0, NULL, PF_EINVAL, "value", NULL);
    assert_int_equal(pf_attrs_set_string(a, "value", "1"), 0);
    expect_shape_error("fill", a, 0, NULL, PF_EINVAL, "value", NULL);
    pf_attrs_destroy(a);
  }
  {
    pf_attrs *a = attrs_new();
    set_shape(a, 2, dims);
    set_int(a, "dtype", PF_I32);
    set_float(a, "step", 1e9); /* 0, 1e9, ..., 5e9: the end does not fit */
    expect_shape_error("iota", a, 0, NULL, PF_EINVAL, "i32", NULL);
    set_float(a, "step", -1);
    set_int(a, "dtype", PF_U8);
    expect_shape_error("iota", a, 0, NULL, PF_EINVAL, "u8", NULL);
    set_float(a, "start", 5); /* 5 down to 0 fits */
    {
      pf_spec out;
      pf_diag d;
      pf_diag_init(&d);
      assert_int_equal(kernel("iota")->def.shape(a, 0, NULL, 1, &out, &d), 0);
    }
    pf_attrs_destroy(a);
  }
}

static void test_iota(void **state) {
  static const struct {
    pf_dtype dt;
    double start, step;
  } cases[] = {
      {PF_F32, 0, 1},     {PF_F32, 0.5, -0.25}, {PF_F64, -3, 0.1},
      {PF_I32, 5, -2},    {PF_I64, -1e12, 3e10}, {PF_U8, 0, 20},
      {PF_I32, 0, 0.5}, /* truncates toward zero: 0 0 1 1 2 ... */
  };
  const int64_t dims[] = {3, 4};
  (void)state;
  for (size_t t = 0; t < LEN(cases); t++) {
    pf_attrs *a = attrs_new();
    pf_view out;
    double want[12];
    set_shape(a, 2, dims);
    set_int(a, "dtype", cases[t].dt);
    set_float(a, "start", cases[t].start);
    set_float(a, "step", cases[t].step);
    run_ok("iota", a, 0, NULL, &out);
    assert_spec(&out.spec, (pf_spec)S2(cases[t].dt, 3, 4));
    for (int i = 0; i < 12; i++) {
      want[i] = cases[t].start + i * cases[t].step;
      if (cases[t].dt == PF_F32) want[i] = (float)want[i];
      if (cases[t].dt >= PF_I32) want[i] = trunc(want[i]);
    }
    assert_close(&out, want, 12);
    free_views(1, &out);
    pf_attrs_destroy(a);
  }
}

static void test_identity(void **state) {
  static const pf_spec specs[] = {
      S2(PF_F32, 3, 5), S1(PF_BF16, 7), S3(PF_U8, 2, 3, 4),
      S0(PF_I64),       S2(PF_F16, 0, 3), S1(PF_F64, 9),
  };
  (void)state;
  for (size_t t = 0; t < LEN(specs); t++) {
    pf_view in = alloc_view(specs[t]), out;
    size_t n = pf_spec_nbytes(&specs[t]);
    for (size_t i = 0; i < n; i++)
      ((uint8_t *)in.data)[i] = (uint8_t)(i * 37 + t);
    run_ok("identity", NULL, 1, &in, &out);
    assert_spec(&out.spec, specs[t]);
    if (n > 0) assert_memory_equal(out.data, in.data, n);
    free_views(1, &in);
    free_views(1, &out);
  }
}

/* pack flattens and concatenates, bit for bit, any dtype; unpack takes
 * each piece back at its offset and shape; unpack_grad puts a piece back
 * among zeros. Mixed dtypes and pieces that do not fit are refused. */
static void test_pack_unpack(void **state) {
  static const pf_dtype dts[] = {PF_F32, PF_F64, PF_I64, PF_U8, PF_BF16};
  (void)state;
  for (size_t t = 0; t < LEN(dts); t++) {
    pf_spec specs[3] = {S2(dts[t], 3, 4), S0(dts[t]), S1(dts[t], 5)};
    pf_view in[3], packed, back, padded;
    size_t el = pf_dtype_size(dts[t]), at = 0;
    int64_t offset = 0;
    for (int i = 0; i < 3; i++) {
      in[i] = alloc_view(specs[i]);
      for (size_t b = 0; b < pf_spec_nbytes(&specs[i]); b++)
        ((uint8_t *)in[i].data)[b] = (uint8_t)(b * 29 + 7 * (size_t)i + t);
    }
    run_ok("pack", NULL, 3, in, &packed);
    assert_spec(&packed.spec, (pf_spec)S1(dts[t], 18));
    for (int i = 0; i < 3; i++) {
      size_t n = pf_spec_nbytes(&specs[i]);
      pf_attrs *a = attrs_new();
      assert_memory_equal((uint8_t *)packed.data + at, in[i].data, n);
      set_int(a, "offset", offset);
      set_shape(a, specs[i].rank, specs[i].dims);
      run_ok("unpack", a, 1, &packed, &back);
      assert_spec(&back.spec, specs[i]);
      assert_memory_equal(back.data, in[i].data, n);
      pf_attrs_destroy(a);
      a = attrs_new();
      set_int(a, "offset", offset);
      set_int(a, "size", 20);
      run_ok("unpack_grad", a, 1, &in[i], &padded);
      assert_spec(&padded.spec, (pf_spec)S1(dts[t], 20));
      for (size_t b = 0; b < 20 * el; b++) {
        uint8_t want = b >= at && b < at + n ? ((uint8_t *)in[i].data)[b - at] : 0;
        assert_int_equal(((uint8_t *)padded.data)[b], want);
      }
      pf_attrs_destroy(a);
      free_views(1, &back);
      free_views(1, &padded);
      at += n;
      offset += pf_spec_numel(&specs[i]);
    }
    { /* no shape: everything from the offset on */
      pf_attrs *a = attrs_new();
      set_int(a, "offset", 13);
      run_ok("unpack", a, 1, &packed, &back);
      assert_spec(&back.spec, (pf_spec)S1(dts[t], 5));
      assert_memory_equal(back.data, in[2].data, 5 * el);
      free_views(1, &back);
      pf_attrs_destroy(a);
    }
    free_views(3, in);
    free_views(1, &packed);
  }
  {
    const pf_spec mixed[2] = {S1(PF_F32, 3), S1(PF_F64, 3)}, flat = S1(PF_F32, 6),
                  square = S2(PF_F32, 2, 2);
    pf_attrs *a = attrs_new();
    expect_shape_error("pack", NULL, 2, mixed, PF_EDTYPE, "input 1", "same dtype", NULL);
    expect_shape_error("pack", NULL, 0, mixed, PF_EARITY, "at least one", NULL);
    set_int(a, "offset", 3);
    set_shape(a, 2, (int64_t[]){2, 2});
    expect_shape_error("unpack", a, 1, &flat, PF_ESHAPE, "offset 3", "does not fit", NULL);
    expect_shape_error("unpack", a, 1, &square, PF_ESHAPE, "rank 1", NULL);
    set_int(a, "offset", 7);
    expect_shape_error("unpack", a, 1, &flat, PF_EINVAL, "offset", NULL);
    pf_attrs_destroy(a);
    a = attrs_new();
    set_int(a, "size", 5);
    set_int(a, "offset", 2);
    expect_shape_error("unpack_grad", a, 1, &square, PF_ESHAPE, "does not fit", NULL);
    pf_attrs_destroy(a);
    a = attrs_new();
    expect_shape_error("unpack_grad", a, 1, &square, PF_EINVAL, "size", NULL);
    pf_attrs_destroy(a);
  }
}

/* microbatch: part `index` of `count` of the rows; a count that does not
 * divide the rows, or an index out of range, is refused by name. */
static void test_microbatch(void **state) {
  const pf_spec one = S2(PF_F32, 6, 2), part = S2(PF_F32, 2, 2);
  pf_view in = alloc_view(one), out;
  (void)state;
  for (int i = 0; i < 12; i++) ((float *)in.data)[i] = (float)i;
  for (int index = 0; index < 3; index++) {
    pf_attrs *a = attrs_new();
    set_int(a, "count", 3);
    set_int(a, "index", index);
    run_ok("microbatch", a, 1, &in, &out);
    assert_spec(&out.spec, part);
    for (int i = 0; i < 4; i++) assert_true(((float *)out.data)[i] == (float)(4 * index + i));
    free_views(1, &out);
    pf_attrs_destroy(a);
  }
  {
    pf_attrs *a = attrs_new();
    set_int(a, "count", 4);
    set_int(a, "index", 0);
    expect_shape_error("microbatch", a, 1, &one, PF_ESHAPE, "6 rows", "4 parts", NULL);
    set_int(a, "count", 2);
    set_int(a, "index", 2);
    expect_shape_error("microbatch", a, 1, &one, PF_EINVAL, "index", NULL);
    pf_attrs_destroy(a);
  }
  free_views(1, &in);
}

/* ---- elementwise --------------------------------------------------------- */

static void test_add_sub_mul(void **state) {
  static const char *names[] = {"add", "sub", "mul"};
  static const pf_dtype dts[] = {PF_F32, PF_F64, PF_I32, PF_I64};
  (void)state;
  seed(1);
  for (size_t op = 0; op < LEN(names); op++)
    for (size_t t = 0; t < LEN(dts); t++)
      for (int shape = 0; shape < 3; shape++) {
        pf_spec s = shape == 0   ? (pf_spec)S2(dts[t], 5, 7)
                    : shape == 1 ? (pf_spec)S3(dts[t], 2, 3, 4)
                                 : (pf_spec)S0(dts[t]);
        pf_view in[2] = {random_view(s, 10), random_view(s, 10)}, out;
        int64_t n = pf_spec_numel(&s);
        double *a = values(&in[0]), *b = values(&in[1]);
        double *want = test_malloc((size_t)n * sizeof *want);
        for (int64_t i = 0; i < n; i++) {
          want[i] = op == 0 ? a[i] + b[i] : op == 1 ? a[i] - b[i] : a[i] * b[i];
          if (dts[t] == PF_F32) want[i] = (float)want[i];
        }
        run_ok(names[op], NULL, 2, in, &out);
        assert_spec(&out.spec, s);
        assert_close(&out, want, n);
        test_free(a);
        test_free(b);
        test_free(want);
        free_views(2, in);
        free_views(1, &out);
      }
}

/* numpy broadcasting: each pair of shapes against an element-by-element
 * reference that indexes both inputs by the output's coordinates. */
static void test_broadcast(void **state) {
  static const struct {
    pf_spec a, b, out;
  } cases[] = {
      {S2(PF_F64, 3, 4), S1(PF_F64, 4), S2(PF_F64, 3, 4)},
      {S1(PF_F64, 4), S2(PF_F64, 3, 4), S2(PF_F64, 3, 4)},
      {S2(PF_F64, 3, 1), S2(PF_F64, 1, 4), S2(PF_F64, 3, 4)},
      {S3(PF_F64, 2, 1, 4), S2(PF_F64, 3, 1), S3(PF_F64, 2, 3, 4)},
      {S0(PF_F64), S2(PF_F64, 2, 5), S2(PF_F64, 2, 5)},
      {S1(PF_F64, 1), S1(PF_F64, 7), S1(PF_F64, 7)},
      {S2(PF_F64, 0, 1), S1(PF_F64, 3), S2(PF_F64, 0, 3)},
  };
  (void)state;
  seed(4);
  for (size_t c = 0; c < LEN(cases); c++)
    for (int op = 0; op < 3; op++) {
      static const char *names[] = {"add", "sub", "mul"};
      pf_view in[2] = {random_view(cases[c].a, 10), random_view(cases[c].b, 10)}, out;
      const pf_spec *os = &cases[c].out;
      int64_t n = pf_spec_numel(os);
      double *a = values(&in[0]), *b = values(&in[1]);
      double *want = test_malloc((size_t)(n > 0 ? n : 1) * sizeof *want);
      for (int64_t i = 0; i < n; i++) {
        int64_t rest = i, ia = 0, ib = 0, ma = 1, mb = 1;
        for (int ax = os->rank - 1; ax >= 0; ax--) {
          int64_t coord = rest % os->dims[ax];
          int xa = ax - (os->rank - cases[c].a.rank), xb = ax - (os->rank - cases[c].b.rank);
          rest /= os->dims[ax];
          if (xa >= 0) {
            ia += (cases[c].a.dims[xa] == 1 ? 0 : coord) * ma;
            ma *= cases[c].a.dims[xa];
          }
          if (xb >= 0) {
            ib += (cases[c].b.dims[xb] == 1 ? 0 : coord) * mb;
            mb *= cases[c].b.dims[xb];
          }
        }
        want[i] = op == 0 ? a[ia] + b[ib] : op == 1 ? a[ia] - b[ib] : a[ia] * b[ib];
      }
      run_ok(names[op], NULL, 2, in, &out);
      assert_spec(&out.spec, *os);
      assert_close(&out, want, n);
      test_free(a);
      test_free(b);
      test_free(want);
      free_views(2, in);
      free_views(1, &out);
    }
}

/* momentum and Adam against their formulas, two steps in a row (the state
 * one step returns is the next step's input), f32 and f64. */
static void test_optimizers(void **state) {
  (void)state;
  seed(5);
  for (size_t t = 0; t < LEN(floats); t++) {
    pf_spec s = (pf_spec)S2(floats[t], 3, 5), ts = (pf_spec)S0(PF_I64);
    pf_view p = random_view(s, 1), g = random_view(s, 1), z = alloc_view(s);
    pf_view step = alloc_view(ts), mom_out[2], adam_out[4], adam2[4];
    int64_t n = pf_spec_numel(&s);
    double *pv = values(&p), *gv = values(&g), *want = test_malloc((size_t)n * sizeof *want);
    pf_attrs *a = attrs_new();
    memset(z.data, 0, pf_spec_nbytes(&s));
    *(int64_t *)step.data = 0;
    /* momentum from zero velocity: v = g, p' = p - lr g. */
    set_float(a, "lr", 0.5);
    set_float(a, "beta", 0.25);
    run_ok("momentum", a, 3, (pf_view[]){p, g, z}, mom_out);
    for (int64_t i = 0; i < n; i++) want[i] = pv[i] - 0.5 * gv[i];
    assert_close(&mom_out[0], want, n);
    assert_close(&mom_out[1], gv, n);
    {
      /* Second step: v' = 0.25 g + g. */
      pf_view again[2];
      run_ok("momentum", a, 3, (pf_view[]){p, g, mom_out[1]}, again);
      for (int64_t i = 0; i < n; i++) want[i] = pv[i] - 0.5 * 1.25 * gv[i];
      assert_close(&again[0], want, n);
      free_views(2, again);
    }
    pf_attrs_destroy(a);
    /* Adam: the first step moves every element by lr against its gradient's
     * sign (m/sqrt(v) = g/|g| after bias correction). */
    a = attrs_new();
    set_float(a, "lr", 0.125);
    run_ok("adam", a, 5, (pf_view[]){p, g, z, z, step}, adam_out);
    for (int64_t i = 0; i < n; i++)
      want[i] = pv[i] - 0.125 * gv[i] / (fabs(gv[i]) + 1e-8);
    assert_close(&adam_out[0], want, n);
    assert_int_equal(*(int64_t *)adam_out[3].data, 1);
    run_ok("adam", a, 5, (pf_view[]){adam_out[0], g, adam_out[1], adam_out[2], adam_out[3]},
           adam2);
    assert_int_equal(*(int64_t *)adam2[3].data, 2);
    for (int64_t i = 0; i < n; i++) {
      /* Same gradient twice: the corrected m and v are g and g^2 again. */
      want[i] = pv[i] - 2 * 0.125 * gv[i] / (fabs(gv[i]) + 1e-8);
    }
    assert_close(&adam2[0], want, n);
    {
      /* A learning rate fed as input 5 replaces the attribute. */
      pf_view lr = alloc_view((pf_spec)S0(PF_F64)), fed[4];
      *(double *)lr.data = 0.25;
      run_ok("adam", a, 6, (pf_view[]){p, g, z, z, step, lr}, fed);
      for (int64_t i = 0; i < n; i++) want[i] = pv[i] - 0.25 * gv[i] / (fabs(gv[i]) + 1e-8);
      assert_close(&fed[0], want, n);
      free_views(4, fed);
      free_views(1, &lr);
    }
    pf_attrs_destroy(a);
    free_views(2, mom_out);
    free_views(4, adam_out);
    free_views(4, adam2);
    free_views(1, &p);
    free_views(1, &g);
    free_views(1, &z);
    free_views(1, &step);
    test_free(pv);
    test_free(gv);
    test_free(want);
  }
}

/* Compute into the given outputs (which may be inputs' buffers). */
static void run_into(const char *name, const pf_attrs *attrs, int n_in, const pf_view *in,
                     int n_out, pf_view *out) {
  const pf_kernel *k = kernel(name);
  pf_kernel_call call;
  pf_diag d;
  pf_diag_init(&d);
  memset(&call, 0, sizeof call);
  call.attrs = attrs;
  call.n_in = n_in;
  call.in = in;
  call.n_out = n_out;
  call.out = out;
  call.num_shards = 1;
  call.user = k->def.user;
  call.diag = &d;
  if (k->def.compute(&call) != 0) fail_msg("%s: compute failed: %s", name, d.msg);
}

static pf_view copy_view(const pf_view *v) {
  pf_view c = alloc_view(v->spec);
  memcpy(c.data, v->data, pf_spec_nbytes(&v->spec));
  return c;
}

/* momentum and Adam updating in place (outputs given their inputs'
 * buffers, as a donated step runs them), all of them or only the
 * parameter, give what they give into fresh buffers; 1003 elements run the
 * vectorized loops and their remainders. */
static void test_optimizers_in_place(void **state) {
  (void)state;
  seed(6);
  for (size_t t = 0; t < LEN(floats); t++) {
    pf_spec s = (pf_spec)S1(floats[t], 1003), ts = (pf_spec)S0(PF_I64);
    pf_view p = random_view(s, 1), g = random_view(s, 1), m = random_view(s, 1);
    pf_view v = random_view(s, 1), step = alloc_view(ts), ref[4];
    int64_t n = pf_spec_numel(&s);
    pf_attrs *a = attrs_new();
    for (int64_t i = 0; i < n; i++) /* v is a running mean of squares */
      set(&v, i, fabs(get(&v, i)));
    *(int64_t *)step.data = 3;
    set_float(a, "lr", 0.125);
    for (int opt = 0; opt < 2; opt++) {
      const char *name = opt == 0 ? "momentum" : "adam";
      int n_in = opt == 0 ? 3 : 5, n_out = opt == 0 ? 2 : 4;
      pf_view in[5] = {p, g, opt == 0 ? v : m, v, step};
      run_ok(name, a, n_in, in, ref);
      for (int all = 0; all < 2; all++) {
        pf_view cin[5], out[4];
        double *want;
        for (int i = 0; i < n_in; i++) cin[i] = copy_view(&in[i]);
        /* Outputs 0.. are inputs 0, 2, 3 in place; t' a fresh scalar. */
        out[0] = cin[0];
        out[1] = all ? cin[2] : alloc_view(s);
        if (opt == 1) {
          out[2] = all ? cin[3] : alloc_view(s);
          out[3] = alloc_view(ts);
        }
        run_into(name, a, n_in, cin, n_out, out);
        for (int o = 0; o < n_out - (opt == 1); o++) {
          want = values(&ref[o]);
          assert_close(&out[o], want, n);
          test_free(want);
        }
        if (opt == 1) assert_int_equal(*(int64_t *)out[3].data, 4);
        if (!all) free_views(n_out - 1, out + 1);
        if (all && opt == 1) free_views(1, &out[3]);
        free_views(n_in, cin);
      }
      free_views(n_out, ref);
    }
    pf_attrs_destroy(a);
    free_views(1, &p);
    free_views(1, &g);
    free_views(1, &m);
    free_views(1, &v);
    free_views(1, &step);
  }
}

/* init_uniform: the same seed gives the same tensor, another seed another;
 * values fill (-bound, bound) with Kaiming's and Glorot's bounds. */
static void test_init_uniform(void **state) {
  static const char *modes[] = {"kaiming", "xavier", "uniform"};
  (void)state;
  for (int m = 0; m < 3; m++) {
    pf_attrs *a = attrs_new(), *b = NULL;
    pf_view x, y, z;
    double bound = m == 0 ? sqrt(6.0 / 64) : m == 1 ? sqrt(6.0 / (64 + 32)) : 0.5, lo = 1, hi = -1;
    int same = 1, diff = 0;
    assert_int_equal(pf_attrs_set_ints(a, "shape", (int64_t[]){64, 32}, 2), 0);
    assert_int_equal(pf_attrs_set_string(a, "mode", modes[m]), 0);
    set_float(a, "bound", 0.5);
    set_int(a, "dtype", PF_F64);
    set_int(a, "seed", 7);
    run_ok("init_uniform", a, 0, NULL, &x);
    run_ok("init_uniform", a, 0, NULL, &y);
    assert_int_equal(pf_attrs_clone(a, &b) == 0, 1);
    set_int(b, "seed", 8);
    run_ok("init_uniform", b, 0, NULL, &z);
    for (int64_t i = 0; i < 64 * 32; i++) {
      double v = ((double *)x.data)[i];
      same &= v == ((double *)y.data)[i];
      diff += v != ((double *)z.data)[i];
      if (v < lo) lo = v;
      if (v > hi) hi = v;
    }
    assert_true(same);
    assert_true(diff > 64 * 32 - 4);
    assert_true(lo >= -bound && hi <= bound);
    /* 2048 draws cover the range: within 1% of each end. */
    assert_true(lo < -0.99 * bound && hi > 0.99 * bound);
    free_views(1, &x);
    free_views(1, &y);
    free_views(1, &z);
    pf_attrs_destroy(a);
    pf_attrs_destroy(b);
  }
  {
    pf_attrs *a = attrs_new();
    assert_int_equal(pf_attrs_set_ints(a, "shape", (int64_t[]){8}, 1), 0);
    assert_int_equal(pf_attrs_set_string(a, "mode", "kaiming"), 0);
    expect_shape_error("init_uniform", a, 0, NULL, PF_ESHAPE, "[in, out]", NULL);
    assert_int_equal(pf_attrs_set_string(a, "mode", "normal"), 0);
    expect_shape_error("init_uniform", a, 0, NULL, PF_EINVAL, "\"normal\"", NULL);
    pf_attrs_destroy(a);
  }
}

static void test_accuracy(void **state) {
  pf_view in[2] = {alloc_view((pf_spec)S2(PF_F32, 4, 3)), alloc_view((pf_spec)S1(PF_I64, 4))};
  pf_view out;
  const float x[12] = {0, 1, 2, /* 2 */ 5, 1, 0, /* 0 */ 1, 1, 0, /* 0: first on ties */
                       0, 0, 9 /* 2 */};
  const int64_t labels[4] = {2, 1, 0, 2};
  (void)state;
  memcpy(in[0].data, x, sizeof x);
  memcpy(in[1].data, labels, sizeof labels);
  run_ok("accuracy", NULL, 2, in, &out);
  assert_int_equal(*(int64_t *)out.data, 3);
  free_views(1, &out);
  free_views(2, in);
}

/* Integer overflow wraps (and is not undefined: UBSan runs this). */
static void test_integer_wrap(void **state) {
  pf_view in[2] = {alloc_view((pf_spec)S1(PF_I32, 2)),
                   alloc_view((pf_spec)S1(PF_I32, 2))};
  pf_view in64[2] = {alloc_view((pf_spec)S1(PF_I64, 1)),
                     alloc_view((pf_spec)S1(PF_I64, 1))};
  pf_view out;
  int32_t *a = in[0].data, *b = in[1].data;
  int64_t *a64 = in64[0].data, *b64 = in64[1].data;
  (void)state;
  a[0] = INT32_MAX, b[0] = 1;
  a[1] = 65536, b[1] = 65536;
  run_ok("add", NULL, 2, in, &out);
  assert_int_equal(((int32_t *)out.data)[0], INT32_MIN);
  free_views(1, &out);
  run_ok("mul", NULL, 2, in, &out);
  assert_int_equal(((int32_t *)out.data)[1], 0);
  free_views(1, &out);
  a64[0] = INT64_MIN, b64[0] = 1;
  run_ok("sub", NULL, 2, in64, &out);
  assert_true(((int64_t *)out.data)[0] == INT64_MAX);
  free_views(1, &out);
  free_views(2, in);
  free_views(2, in64);
}

static void test_scale(void **state) {
  (void)state;
  seed(2);
  for (size_t t = 0; t < LEN(floats); t++)
    for (int c = 0; c < 3; c++) {
      pf_attrs *a = attrs_new();
      pf_view in = random_view((pf_spec)S2(floats[t], 4, 6), 5), out;
      double *x = values(&in), want[24];
      double alpha = c == 0 ? 1 : c == 1 ? -2.75 : 3;
      if (c == 1) set_float(a, "alpha", alpha);
      if (c == 2) set_int(a, "alpha", 3); /* an int answers a float read */
      for (int i = 0; i < 24; i++) want[i] = alpha * x[i];
      run_ok("scale", a, 1, &in, &out);
      assert_close(&out, want, 24);
      test_free(x);
      free_views(1, &in);
      free_views(1, &out);
      pf_attrs_destroy(a);
    }
  {
    pf_attrs *a = attrs_new();
    pf_spec s = S1(PF_F32, 3);
    assert_int_equal(pf_attrs_set_string(a, "alpha", "2"), 0);
    expect_shape_error("scale", a, 1, &s, PF_EINVAL, "alpha", NULL);
    pf_attrs_destroy(a);
  }
}

static void test_relu(void **state) {
  (void)state;
  seed(3);
  for (size_t t = 0; t < LEN(floats); t++) {
    pf_spec s = S3(floats[t], 3, 4, 5);
    pf_view in[2] = {random_view(s, 2), random_view(s, 2)}, out;
    double *g, *x, want[60];
    set(&in[1], 7, 0.0); /* x == 0 is not > 0 */
    set(&in[0], 9, 0.0);
    g = values(&in[0]);
    x = values(&in[1]);
    for (int i = 0; i < 60; i++) want[i] = g[i] > 0 ? g[i] : 0;
    run_ok("relu", NULL, 1, &in[0], &out);
    assert_spec(&out.spec, s);
    assert_close(&out, want, 60);
    free_views(1, &out);
    for (int i = 0; i < 60; i++) want[i] = x[i] > 0 ? g[i] : 0;
    run_ok("relu_grad", NULL, 2, in, &out);
    assert_close(&out, want, 60);
    assert_true(get(&out, 7) == 0.0);
    free_views(1, &out);
    test_free(g);
    test_free(x);
    free_views(2, in);
  }
}

static void test_sgd(void **state) {
  (void)state;
  seed(4);
  for (size_t t = 0; t < LEN(floats); t++)
    for (int c = 0; c < 2; c++) {
      pf_attrs *a = attrs_new();
      pf_spec s = S2(floats[t], 6, 3);
      pf_view in[2] = {random_view(s, 3), random_view(s, 3)}, out;
      double *p = values(&in[0]), *g = values(&in[1]), want[18];
      double lr = c == 0 ? 0.01 : 0.3;
      if (c == 1) set_float(a, "lr", lr);
      for (int i = 0; i < 18; i++) want[i] = p[i] - lr * g[i];
      run_ok("sgd", a, 2, in, &out);
      assert_close(&out, want, 18);
      test_free(p);
      test_free(g);
      free_views(2, in);
      free_views(1, &out);
      pf_attrs_destroy(a);
    }
}

static void test_bias_add(void **state) {
  (void)state;
  seed(5);
  for (size_t t = 0; t < LEN(floats); t++)
    for (int shape = 0; shape < 4; shape++) {
      pf_dtype dt = floats[t];
      pf_spec s = shape == 0   ? (pf_spec)S2(dt, 4, 6)
                  : shape == 1 ? (pf_spec)S3(dt, 2, 3, 5)
                  : shape == 2 ? (pf_spec)S1(dt, 7)
                               : (pf_spec)S2(dt, 3, 0);
      int64_t m = s.dims[s.rank - 1], n = pf_spec_numel(&s);
      pf_view in[2] = {random_view(s, 4), random_view((pf_spec)S1(dt, m), 4)};
      pf_view out;
      double *x = values(&in[0]), *b = values(&in[1]);
      double *want = test_malloc((size_t)(n ? n : 1) * sizeof *want);
      for (int64_t i = 0; i < n; i++) want[i] = x[i] + b[i % m];
      run_ok("bias_add", NULL, 2, in, &out);
      assert_spec(&out.spec, s);
      assert_close(&out, want, n);
      test_free(x);
      test_free(b);
      test_free(want);
      free_views(2, in);
      free_views(1, &out);
    }
}

/* ---- matmul -------------------------------------------------------------- */

static void check_matmul(pf_dtype dt, int64_t m, int64_t k, int64_t n, int ta,
                         int tb) {
  pf_attrs *a = attrs_new();
  pf_spec sa = ta ? (pf_spec)S2(dt, k, m) : (pf_spec)S2(dt, m, k);
  pf_spec sb = tb ? (pf_spec)S2(dt, n, k) : (pf_spec)S2(dt, k, n);
  pf_view in[2] = {random_view(sa, 1), random_view(sb, 1)}, out;
  double *av = values(&in[0]), *bv = values(&in[1]);
  double *want = test_malloc((size_t)(m * n > 0 ? m * n : 1) * sizeof *want);
  set_int(a, "transpose_a", ta);
  set_int(a, "transpose_b", tb);
  for (int64_t i = 0; i < m; i++)
    for (int64_t j = 0; j < n; j++) {
      double sum = 0;
      for (int64_t p = 0; p < k; p++)
        sum += (ta ? av[p * m + i] : av[i * k + p]) *
               (tb ? bv[j * k + p] : bv[p * n + j]);
      want[i * n + j] = sum;
    }
  run_ok("matmul", a, 2, in, &out);
  assert_spec(&out.spec, (pf_spec)S2(dt, m, n));
  assert_close(&out, want, m * n);
  test_free(av);
  test_free(bv);
  test_free(want);
  free_views(2, in);
  free_views(1, &out);
  pf_attrs_destroy(a);
}

static void test_matmul(void **state) {
  static const int64_t shapes[][3] = {
      {3, 5, 4}, {7, 2, 6}, {1, 9, 1}, {4, 4, 4}, {17, 33, 9}, {2, 1, 3},
  };
  (void)state;
  seed(6);
  for (size_t t = 0; t < LEN(floats); t++)
    for (size_t s = 0; s < LEN(shapes); s++)
      for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++)
          check_matmul(floats[t], shapes[s][0], shapes[s][1], shapes[s][2], ta,
                       tb);
}

/* Empty dims must not reach BLAS with a leading dimension of 0; an empty
 * inner dimension gives zeros. */
static void test_matmul_empty(void **state) {
  static const int64_t shapes[][3] = {
      {3, 0, 2}, {0, 4, 2}, {3, 4, 0}, {0, 0, 0}};
  (void)state;
  seed(7);
  for (size_t t = 0; t < LEN(floats); t++)
    for (size_t s = 0; s < LEN(shapes); s++)
      for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++)
          check_matmul(floats[t], shapes[s][0], shapes[s][1], shapes[s][2], ta,
                       tb);
}

static void test_matmul_attr_errors(void **state) {
  pf_spec in[2] = {S2(PF_F32, 3, 5), S2(PF_F32, 5, 4)};
  pf_spec big[2] = {S2(PF_F32, 3, INT64_C(1) << 31),
                    S2(PF_F32, INT64_C(1) << 31, 2)};
  pf_attrs *a = attrs_new();
  (void)state;
  set_int(a, "transpose_a", 2);
  expect_shape_error("matmul", a, 2, in, PF_EINVAL, "transpose_a", NULL);
  set_int(a, "transpose_a", 0);
  set_float(a, "transpose_b", 1.0);
  expect_shape_error("matmul", a, 2, in, PF_EINVAL, "transpose_b", NULL);
  set_int(a, "transpose_b", 1); /* [3,5] x [5,4]^T: inner 5 vs 4 */
  expect_shape_error("matmul", a, 2, in, PF_ESHAPE, "f32[3,5]", "f32[5,4]",
                     "transpose_b=1", NULL);
  expect_shape_error("matmul", NULL, 2, big, PF_ESHAPE, "BLAS", NULL);
  pf_attrs_destroy(a);
}

/* ---- reductions ---------------------------------------------------------- */

static void test_reduce_sum(void **state) {
  (void)state;
  seed(8);
  for (size_t t = 0; t < LEN(floats); t++)
    for (int axis = -3; axis < 3; axis++)
      for (int keep = 0; keep < 2; keep++) {
        pf_attrs *a = attrs_new();
        pf_spec s = S3(floats[t], 3, 4, 5), want_spec = s;
        int ax = axis < 0 ? axis + 3 : axis;
        pf_view in = random_view(s, 3), out;
        double *x = values(&in), want[60] = {0};
        int64_t k;
        set_int(a, "axis", axis);
        set_int(a, "keepdims", keep);
        for (int64_t i = 0; i < 60; i++) want[drop_axis(&s, ax, i, &k)] += x[i];
        if (keep) {
          want_spec.dims[ax] = 1;
        } else {
          for (int d = ax; d < 2; d++)
            want_spec.dims[d] = want_spec.dims[d + 1];
          want_spec.dims[2] = 0;
          want_spec.rank = 2;
        }
        run_ok("reduce_sum", a, 1, &in, &out);
        assert_spec(&out.spec, want_spec);
        assert_close(&out, want, 60 / s.dims[ax]);
        test_free(x);
        free_views(1, &in);
        free_views(1, &out);
        pf_attrs_destroy(a);
      }
}

static void test_reduce_sum_edges(void **state) {
  pf_attrs *a = attrs_new();
  pf_view in, out;
  double want[6] = {0};
  (void)state;
  seed(9);
  /* Default axis 0 on a vector: a scalar. */
  in = random_view((pf_spec)S1(PF_F64, 10), 1);
  want[0] = 0;
  for (int i = 0; i < 10; i++) want[0] += get(&in, i);
  run_ok("reduce_sum", NULL, 1, &in, &out);
  assert_spec(&out.spec, (pf_spec)S0(PF_F64));
  assert_close(&out, want, 1);
  free_views(1, &in);
  free_views(1, &out);
  /* An empty axis sums to zeros. */
  want[0] = 0;
  in = alloc_view((pf_spec)S3(PF_F32, 3, 0, 2));
  set_int(a, "axis", 1);
  run_ok("reduce_sum", a, 1, &in, &out);
  assert_spec(&out.spec, (pf_spec)S2(PF_F32, 3, 2));
  assert_close(&out, want, 6);
  free_views(1, &in);
  free_views(1, &out);
  pf_attrs_destroy(a);
}

static void test_reduce_attr_errors(void **state) {
  const char *kernels[] = {"reduce_sum", "argmax"};
  pf_spec s = S3(PF_F32, 3, 4, 5), scalar = S0(PF_F32);
  (void)state;
  for (size_t i = 0; i < LEN(kernels); i++) {
    pf_attrs *a = attrs_new();
    set_int(a, "axis", 3);
    expect_shape_error(kernels[i], a, 1, &s, PF_EINVAL, "axis", "f32[3,4,5]",
                       NULL);
    set_int(a, "axis", -4);
    expect_shape_error(kernels[i], a, 1, &s, PF_EINVAL, "axis", NULL);
    set_int(a, "axis", 0);
    expect_shape_error(kernels[i], a, 1, &scalar, PF_EINVAL, "axis", NULL);
    assert_int_equal(pf_attrs_set_string(a, "axis", "0"), 0);
    expect_shape_error(kernels[i], a, 1, &s, PF_EINVAL, "axis", NULL);
    pf_attrs_destroy(a);
  }
  {
    pf_attrs *a = attrs_new();
    set_int(a, "keepdims", 2);
    expect_shape_error("reduce_sum", a, 1, &s, PF_EINVAL, "keepdims", NULL);
    pf_attrs_destroy(a);
  }
}

static void test_argmax(void **state) {
  (void)state;
  seed(10);
  for (size_t t = 0; t < LEN(floats); t++)
    for (int axis = -4; axis < 3; axis++) {
      pf_attrs *a = attrs_new();
      pf_spec s = S3(floats[t], 3, 4, 5);
      int ax = axis == -4 ? 2 : axis < 0 ? axis + 3 : axis; /* -4: default */
      pf_view in = random_view(s, 1), out;
      double *x = values(&in), best[20] = {0}, want[20] = {0};
      int64_t k, o;
      if (axis != -4) set_int(a, "axis", axis);
      for (int64_t i = 0; i < 60; i++) {
        o = drop_axis(&s, ax, i, &k);
        if (k == 0 || x[i] > best[o]) best[o] = x[i], want[o] = (double)k;
      }
      run_ok("argmax", a, 1, &in, &out);
      assert_int_equal(out.spec.dtype, PF_I64);
      assert_int_equal(out.spec.rank, 2);
      assert_close(&out, want, 60 / s.dims[ax]);
      test_free(x);
      free_views(1, &in);
      free_views(1, &out);
      pf_attrs_destroy(a);
    }
}

/* Ties go to the first index; a NaN wins, the first NaN over later ones. */
static void test_argmax_ties(void **state) {
  static const double rows[3][4] = {
      {1, 3, 3, 2}, {5, 5, 5, 5}, {1, NAN, 3, NAN}};
  static const double want_rows[3] = {1, 0, 1}, want_cols[4] = {1, 2, 1, 2};
  (void)state;
  for (size_t t = 0; t < LEN(floats); t++) {
    pf_attrs *a = attrs_new();
    pf_view in = alloc_view((pf_spec)S2(floats[t], 3, 4)), out;
    for (int i = 0; i < 12; i++) set(&in, i, rows[i / 4][i % 4]);
    run_ok("argmax", NULL, 1, &in, &out);
    assert_spec(&out.spec, (pf_spec)S1(PF_I64, 3));
    assert_close(&out, want_rows, 3);
    free_views(1, &out);
    set_int(a, "axis", 0);
    run_ok("argmax", a, 1, &in, &out);
    assert_spec(&out.spec, (pf_spec)S1(PF_I64, 4));
    assert_close(&out, want_cols, 4);
    free_views(1, &out);
    free_views(1, &in);
    pf_attrs_destroy(a);
  }
}

/* ---- softmax_xent -------------------------------------------------------- */

/* Loss and gradient in double, straight from the definition. */
static double xent_reference(const double *x, const int64_t *labels, int64_t n,
                             int64_t c, double *grad) {
  double loss = 0;
  for (int64_t r = 0; r < n; r++) {
    double max = x[r * c], sum = 0;
    for (int64_t j = 0; j < c; j++) max = fmax(max, x[r * c + j]);
    for (int64_t j = 0; j < c; j++) sum += exp(x[r * c + j] - max);
    loss -= x[r * c + labels[r]] - max - log(sum);
    for (int64_t j = 0; j < c; j++)
      grad[r * c + j] =
          (exp(x[r * c + j] - max) / sum - (j == labels[r])) / (double)n;
  }
  return n ? loss / (double)n : 0;
}

static pf_view label_view(pf_dtype dt, int64_t n, const int64_t *labels) {
  pf_view v = alloc_view((pf_spec)S1(dt, n));
  for (int64_t i = 0; i < n; i++) set(&v, i, (double)labels[i]);
  return v;
}

static void test_softmax_xent(void **state) {
  static const pf_dtype label_dts[] = {PF_I32, PF_I64};
  const int64_t n = 6, c = 5, labels[6] = {0, 4, 2, 2, 1, 3};
  (void)state;
  seed(11);
  for (size_t t = 0; t < LEN(floats); t++)
    for (size_t l = 0; l < LEN(label_dts); l++)
      for (int offset = 0; offset < 2; offset++) {
        pf_view in[2], out[2];
        double *x, want_grad[30], want_loss;
        in[0] = random_view((pf_spec)S2(floats[t], n, c), 4);
        /* Logits near 1000 would overflow a naive exp; the loss and
         * gradient do not move. */
        if (offset)
          for (int i = 0; i < 30; i++) set(&in[0], i, get(&in[0], i) + 1000);
        in[1] = label_view(label_dts[l], n, labels);
        x = values(&in[0]);
        want_loss = xent_reference(x, labels, n, c, want_grad);
        run_ok("softmax_xent", NULL, 2, in, out);
        assert_spec(&out[0].spec, (pf_spec)S0(floats[t]));
        assert_spec(&out[1].spec, (pf_spec)S2(floats[t], n, c));
        assert_true(isfinite(get(&out[0], 0)));
        assert_close(&out[0], &want_loss, 1);
        assert_close(&out[1], want_grad, 30);
        test_free(x);
        free_views(2, in);
        free_views(2, out);
      }
}

static double xent_loss(pf_view *in) {
  pf_view out[2];
  double loss;
  run_ok("softmax_xent", NULL, 2, in, out);
  loss = get(&out[0], 0);
  free_views(2, out);
  return loss;
}

/* The gradient is d loss / d logits: central differences agree. */
static void test_softmax_xent_finite_difference(void **state) {
  const int64_t n = 4, c = 3, labels[4] = {2, 0, 1, 2};
  const double h = 1e-5;
  pf_view in[2], out[2];
  double *x;
  (void)state;
  seed(12);
  in[0] = random_view((pf_spec)S2(PF_F64, n, c), 2);
  in[1] = label_view(PF_I64, n, labels);
  run_ok("softmax_xent", NULL, 2, in, out);
  x = in[0].data;
  for (int64_t i = 0; i < n * c; i++) {
    double keep = x[i], up, down, fd;
    x[i] = keep + h;
    up = xent_loss(in);
    x[i] = keep - h;
    down = xent_loss(in);
    x[i] = keep;
    fd = (up - down) / (2 * h);
    if (fabs(fd - get(&out[1], i)) > 1e-8)
      fail_msg("logit %lld: gradient %.12g, finite difference %.12g",
               (long long)i, get(&out[1], i), fd);
  }
  free_views(2, in);
  free_views(2, out);
}

static void test_softmax_xent_labels(void **state) {
  static const pf_dtype label_dts[] = {PF_I32, PF_I64};
  const int64_t bad[][3] = {{0, 1, 4}, {-1, 0, 0}, {3, 2, 1000000}};
  (void)state;
  seed(13);
  for (size_t l = 0; l < LEN(label_dts); l++)
    for (size_t b = 0; b < LEN(bad); b++) {
      pf_view in[2] = {random_view((pf_spec)S2(PF_F32, 3, 4), 1),
                       label_view(label_dts[l], 3, bad[b])};
      pf_view out[2];
      pf_diag d;
      char row[32], label[40];
      int r = bad[b][0] < 0 ? 0 : 2;
      assert_int_equal(run("softmax_xent", NULL, 2, in, out, &d), PF_EINVAL);
      assert_int_equal(d.code, PF_EINVAL);
      snprintf(row, sizeof row, "row %d", r);
      snprintf(label, sizeof label, "label %lld", (long long)bad[b][r]);
      assert_non_null(strstr(d.msg, "softmax_xent"));
      assert_non_null(strstr(d.msg, row));
      assert_non_null(strstr(d.msg, label));
      free_views(2, in);
      free_views(2, out);
    }
  /* No rows: the mean over nothing is 0, the gradient is empty. */
  {
    pf_view in[2] = {alloc_view((pf_spec)S2(PF_F64, 0, 4)),
                     alloc_view((pf_spec)S1(PF_I32, 0))};
    pf_view out[2];
    run_ok("softmax_xent", NULL, 2, in, out);
    assert_true(get(&out[0], 0) == 0.0);
    assert_spec(&out[1].spec, (pf_spec)S2(PF_F64, 0, 4));
    free_views(2, in);
    free_views(2, out);
  }
}

/* ---- shape errors for every kernel, and costs ---------------------------- */

typedef struct shape_case {
  const char *kernel;
  int n_in;
  pf_spec in[2];
  int code;
  const char *needle; /* besides the kernel name */
} shape_case;

static void test_shape_errors(void **state) {
  static const shape_case cases[] = {
      /* Wrong dtypes. */
      {"add", 2, {S2(PF_F32, 2, 3), S2(PF_F64, 2, 3)},
       PF_EDTYPE, "input 1 is f64[2,3]"},
      {"add", 2, {S2(PF_BF16, 2, 3), S2(PF_BF16, 2, 3)},
       PF_EDTYPE, "input 0 is bf16[2,3]"},
      {"sub", 2, {S1(PF_U8, 4), S1(PF_U8, 4)}, PF_EDTYPE, "input 0 is u8[4]"},
      {"mul", 2, {S1(PF_F16, 4), S1(PF_F16, 4)}, PF_EDTYPE, "f16[4]"},
      {"scale", 1, {S1(PF_I32, 4)}, PF_EDTYPE, "input 0 is i32[4]"},
      {"relu", 1, {S1(PF_BF16, 4)}, PF_EDTYPE, "input 0 is bf16[4]"},
      {"relu_grad", 2, {S1(PF_F32, 4), S1(PF_I32, 4)},
       PF_EDTYPE, "input 1 is i32[4]"},
      {"sgd", 2, {S1(PF_I64, 4), S1(PF_I64, 4)},
       PF_EDTYPE, "input 0 is i64[4]"},
      {"sgd", 2, {S1(PF_F64, 4), S1(PF_F32, 4)},
       PF_EDTYPE, "input 1 is f32[4]"},
      {"matmul", 2, {S2(PF_I32, 2, 2), S2(PF_I32, 2, 2)},
       PF_EDTYPE, "input 0 is i32[2,2]"},
      {"matmul", 2, {S2(PF_F32, 2, 2), S2(PF_F64, 2, 2)},
       PF_EDTYPE, "input 1 is f64[2,2]"},
      {"matmul", 2, {S2(PF_BF16, 2, 2), S2(PF_BF16, 2, 2)},
       PF_EDTYPE, "bf16[2,2]"},
      {"bias_add", 2, {S2(PF_F32, 2, 3), S1(PF_F64, 3)},
       PF_EDTYPE, "input 1 is f64[3]"},
      {"bias_add", 2, {S2(PF_I32, 2, 3), S1(PF_I32, 3)},
       PF_EDTYPE, "input 0 is i32[2,3]"},
      {"reduce_sum", 1, {S2(PF_I64, 2, 3)}, PF_EDTYPE, "input 0 is i64[2,3]"},
      {"argmax", 1, {S2(PF_F16, 2, 3)}, PF_EDTYPE, "input 0 is f16[2,3]"},
      {"softmax_xent", 2, {S2(PF_I32, 2, 3), S1(PF_I32, 2)},
       PF_EDTYPE, "input 0 is i32[2,3]"},
      {"softmax_xent", 2, {S2(PF_F32, 2, 3), S1(PF_F32, 2)},
       PF_EDTYPE, "input 1 is f32[2]"},
      {"softmax_xent", 2, {S2(PF_BF16, 2, 3), S1(PF_I64, 2)},
       PF_EDTYPE, "bf16[2,3]"},
      /* Wrong shapes. */
      {"add", 2, {S2(PF_F32, 2, 3), S2(PF_F32, 3, 2)},
       PF_ESHAPE, "input 1 is f32[3,2] but input 0 is f32[2,3]"},
      {"sub", 2, {S1(PF_I32, 4), S2(PF_I32, 3, 2)},
       PF_ESHAPE, "input 1 is i32[3,2]"},
      {"mul", 2, {S1(PF_F64, 3), S1(PF_F64, 2)}, PF_ESHAPE, "axis -1: 2 vs 3"},
      {"relu_grad", 2, {S1(PF_F32, 4), S1(PF_F32, 5)},
       PF_ESHAPE, "input 1 is f32[5]"},
      {"sgd", 2, {S2(PF_F64, 2, 2), S1(PF_F64, 4)},
       PF_ESHAPE, "input 1 is f64[4]"},
      {"matmul", 2, {S2(PF_F32, 3, 5), S2(PF_F32, 4, 2)},
       PF_ESHAPE, "input 0 is f32[3,5] (transpose_a=0), input 1 is f32[4,2]"},
      {"matmul", 2, {S1(PF_F32, 3), S2(PF_F32, 3, 2)},
       PF_ESHAPE, "input 0 is f32[3]"},
      {"matmul", 2, {S2(PF_F64, 3, 2), S3(PF_F64, 2, 2, 2)},
       PF_ESHAPE, "input 1 is f64[2,2,2]"},
      {"bias_add", 2, {S2(PF_F32, 4, 6), S1(PF_F32, 5)},
       PF_ESHAPE, "input 1 is f32[5] but input 0 is f32[4,6]"},
      {"bias_add", 2, {S2(PF_F32, 4, 6), S2(PF_F32, 1, 6)},
       PF_ESHAPE, "input 1 is f32[1,6]"},
      {"bias_add", 2, {S0(PF_F32), S1(PF_F32, 1)},
       PF_ESHAPE, "input 0 is f32[]"},
      {"argmax", 1, {S2(PF_F32, 3, 0)}, PF_ESHAPE, "input 0 is f32[3,0]"},
      {"softmax_xent", 2, {S1(PF_F32, 3), S1(PF_I32, 3)},
       PF_ESHAPE, "input 0 is f32[3]"},
      {"softmax_xent", 2, {S2(PF_F32, 3, 4), S2(PF_I32, 3, 1)},
       PF_ESHAPE, "input 1 is i32[3,1]"},
      {"softmax_xent", 2, {S2(PF_F32, 3, 4), S1(PF_I64, 4)},
       PF_ESHAPE, "input 1 is i64[4] but input 0 is f32[3,4]"},
  };
  (void)state;
  for (size_t i = 0; i < LEN(cases); i++)
    expect_shape_error(cases[i].kernel, NULL, cases[i].n_in, cases[i].in,
                       cases[i].code, cases[i].needle, NULL);
}

/* What each kernel accepts that its neighbours might not. */
static void test_shape_accepts(void **state) {
  static const shape_case cases[] = {
      {"add", 2, {S2(PF_I64, 2, 3), S2(PF_I64, 2, 3)}, 0, NULL},
      {"mul", 2, {S0(PF_I32), S0(PF_I32)}, 0, NULL},
      {"identity", 1, {S2(PF_BF16, 2, 3)}, 0, NULL},
      {"argmax", 1, {S2(PF_F32, 0, 0)}, 0, NULL}, /* empty output */
      {"matmul", 2, {S2(PF_F64, 0, 3), S2(PF_F64, 3, 0)}, 0, NULL},
  };
  (void)state;
  for (size_t i = 0; i < LEN(cases); i++) {
    const pf_kernel *k = kernel(cases[i].kernel);
    pf_spec out[2];
    pf_diag d;
    pf_diag_init(&d);
    if (k->def.shape(NULL, cases[i].n_in, cases[i].in, k->def.n_out, out, &d))
      fail_msg("%s refused: %s", cases[i].kernel, d.msg);
  }
}

static void cost_of(const char *name, const pf_attrs *a, int n_in,
                    const pf_spec *in, pf_cost *cost) {
  const pf_kernel *k = kernel(name);
  pf_spec out[2];
  pf_diag d;
  pf_diag_init(&d);
  assert_int_equal(k->def.shape(a, n_in, in, k->def.n_out, out, &d), 0);
  k->def.cost(a, n_in, in, k->def.n_out, out, cost);
}

static void test_costs(void **state) {
  pf_spec mm[2] = {S2(PF_F32, 5, 3), S2(PF_F32, 5, 4)};
  pf_spec ew[2] = {S2(PF_F64, 4, 5), S2(PF_F64, 4, 5)};
  pf_spec xent[2] = {S2(PF_F32, 8, 10), S1(PF_I32, 8)};
  pf_spec r = S3(PF_F32, 2, 3, 4);
  const int64_t dims[] = {6};
  pf_attrs *a = attrs_new();
  pf_cost c;
  (void)state;
  set_int(a, "transpose_a", 1); /* [5,3]^T [5,4]: M=3 K=5 N=4 */
  cost_of("matmul", a, 2, mm, &c);
  assert_true(c.flops == 2.0 * 3 * 4 * 5);
  assert_true(c.bytes == 4.0 * (15 + 20 + 12));
  cost_of("add", NULL, 2, ew, &c);
  assert_true(c.flops == 20 && c.bytes == 3 * 160);
  cost_of("sgd", NULL, 2, ew, &c);
  assert_true(c.flops == 40 && c.bytes == 3 * 160);
  cost_of("reduce_sum", NULL, 1, &r, &c);
  assert_true(c.flops == 24 && c.bytes == 4.0 * (24 + 12));
  cost_of("softmax_xent", NULL, 2, xent, &c);
  assert_true(c.flops > 80 && c.bytes == 320 + 32 + 4 + 320);
  set_shape(a, 1, dims);
  cost_of("fill", a, 0, NULL, &c);
  assert_true(c.flops == 0 && c.bytes == 24);
  cost_of("identity", NULL, 1, &r, &c);
  assert_true(c.flops == 0 && c.bytes == 2 * 96);
  pf_attrs_destroy(a);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_registry),
      cmocka_unit_test(test_fill),
      cmocka_unit_test(test_fill_attr_errors),
      cmocka_unit_test(test_iota),
      cmocka_unit_test(test_identity),
      cmocka_unit_test(test_microbatch),
      cmocka_unit_test(test_pack_unpack),
      cmocka_unit_test(test_add_sub_mul),
      cmocka_unit_test(test_broadcast),
      cmocka_unit_test(test_optimizers),
      cmocka_unit_test(test_optimizers_in_place),
      cmocka_unit_test(test_init_uniform),
      cmocka_unit_test(test_accuracy),
      cmocka_unit_test(test_integer_wrap),
      cmocka_unit_test(test_scale),
      cmocka_unit_test(test_relu),
      cmocka_unit_test(test_sgd),
      cmocka_unit_test(test_bias_add),
      cmocka_unit_test(test_matmul),
      cmocka_unit_test(test_matmul_empty),
      cmocka_unit_test(test_matmul_attr_errors),
      cmocka_unit_test(test_reduce_sum),
      cmocka_unit_test(test_reduce_sum_edges),
      cmocka_unit_test(test_reduce_attr_errors),
      cmocka_unit_test(test_argmax),
      cmocka_unit_test(test_argmax_ties),
      cmocka_unit_test(test_softmax_xent),
      cmocka_unit_test(test_softmax_xent_finite_difference),
      cmocka_unit_test(test_softmax_xent_labels),
      cmocka_unit_test(test_shape_errors),
      cmocka_unit_test(test_shape_accepts),
      cmocka_unit_test(test_costs),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
