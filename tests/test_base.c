/* The base layer: error codes, dtypes and specs, host tensors, attributes,
 * shard regions, and the box copies and block moves the runtime moves shards
 * and collectives' blocks with.
 *
 * No context is created here: nothing starts a thread. Box copies and
 * region arithmetic are checked against element-by-element references on
 * random shapes, so the expected results never come from the code under
 * test. */
#define _GNU_SOURCE /* mincore */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <sys/mman.h>
#include <unistd.h>

#include "base/arena.h"
#include "base/attrs_internal.h"
#include "base/box.h"
#include "base/clock.h"
#include "base/layout.h"
#include "base/pages.h"
#include "base/probe.h"
#include "base/spec_set.h"
#include "base/warm.h"
#include "pathflow.h"

#define LEN(a) (sizeof(a) / sizeof((a)[0]))

/* ---- a small deterministic generator ------------------------------------ */

static uint64_t rng_state;

static void rng_seed(uint64_t s) { rng_state = s * 0x9E3779B97F4A7C15ull + 1; }

static uint64_t rng_next(void) {
  /* xorshift64* */
  rng_state ^= rng_state >> 12;
  rng_state ^= rng_state << 25;
  rng_state ^= rng_state >> 27;
  return rng_state * 0x2545F4914F6CDD1Dull;
}

/* Uniform in [lo, hi]. */
static int64_t rng_range(int64_t lo, int64_t hi) {
  return lo + (int64_t)(rng_next() % (uint64_t)(hi - lo + 1));
}

/* ---- error codes ---------------------------------------------------------- */

typedef struct code_info {
  int code;
  const char *name;
  const char *text;
} code_info;

static const code_info all_codes[] = {
#define PF_TEST_CODE(name, code, text) {PF_##name, "PF_" #name, text},
    PF_ERRNO_MAP(PF_TEST_CODE)
#undef PF_TEST_CODE
};

static void test_error_codes_distinct(void **state) {
  (void)state;
  assert_true(LEN(all_codes) >= 26);
  for (size_t i = 0; i < LEN(all_codes); i++) {
    const char *s = pf_strerror(all_codes[i].code);
    const char *n = pf_errname(all_codes[i].code);
    assert_true(all_codes[i].code < 0);
    assert_non_null(s);
    assert_non_null(n);
    assert_true(strlen(s) > 0);
    assert_string_not_equal(s, "unknown error");
    assert_string_equal(s, all_codes[i].text);
    assert_string_equal(n, all_codes[i].name);
    assert_string_not_equal(n, "PF_E?");
    for (size_t j = 0; j < i; j++) {
      assert_int_not_equal(all_codes[i].code, all_codes[j].code);
      assert_string_not_equal(s, pf_strerror(all_codes[j].code));
      assert_string_not_equal(n, pf_errname(all_codes[j].code));
    }
  }
}

static void test_error_codes_unknown(void **state) {
  static const int unknown[] = {1, 2, 100, -29, -100, -1000000, INT32_MIN,
                                INT32_MAX};
  (void)state;
  for (size_t i = 0; i < LEN(unknown); i++) {
    assert_non_null(pf_strerror(unknown[i]));
    assert_string_equal(pf_strerror(unknown[i]), "unknown error");
    assert_string_equal(pf_errname(unknown[i]), "PF_E?");
  }
  /* Success is not an unknown error. */
  assert_string_not_equal(pf_strerror(PF_OK), "unknown error");
  assert_true(strlen(pf_strerror(PF_OK)) > 0);
  assert_string_equal(pf_errname(PF_OK), "PF_OK");
}

/* ---- dtypes ----------------------------------------------------------------- */

static void test_dtypes(void **state) {
  static const struct {
    pf_dtype dt;
    size_t size;
    const char *name;
  } want[] = {{PF_F32, sizeof(float), "f32"},     {PF_F64, sizeof(double), "f64"},
              {PF_I32, sizeof(int32_t), "i32"},   {PF_I64, sizeof(int64_t), "i64"},
              {PF_U8, sizeof(uint8_t), "u8"},     {PF_BF16, 2, "bf16"},
              {PF_F16, 2, "f16"}};
  (void)state;
  assert_int_equal(LEN(want), PF_DTYPE_COUNT);
  for (size_t i = 0; i < LEN(want); i++) {
    assert_int_equal(pf_dtype_size(want[i].dt), want[i].size);
    assert_string_equal(pf_dtype_name(want[i].dt), want[i].name);
    for (size_t j = 0; j < i; j++)
      assert_string_not_equal(pf_dtype_name(want[i].dt),
                              pf_dtype_name(want[j].dt));
  }
  assert_int_equal(pf_dtype_size(PF_DTYPE_COUNT), 0);
  assert_int_equal(pf_dtype_size((pf_dtype)-1), 0);
  assert_int_equal(pf_dtype_size((pf_dtype)1000), 0);
  assert_string_equal(pf_dtype_name(PF_DTYPE_COUNT), "?");
  assert_string_equal(pf_dtype_name((pf_dtype)-1), "?");
  assert_string_equal(pf_device_kind_name(PF_DEVICE_CPU), "cpu");
  assert_string_equal(pf_device_kind_name(PF_DEVICE_GPU), "gpu");
  assert_string_equal(pf_device_kind_name(PF_DEVICE_KIND_COUNT), "?");
}

/* ---- specs ------------------------------------------------------------------ */

static void test_spec_make(void **state) {
  int64_t dims[PF_MAX_RANK + 1] = {2, 3, 4, 5, 6, 7, 8, 9, 10};
  pf_spec s;
  (void)state;
  for (int r = 0; r <= PF_MAX_RANK; r++) {
    s = pf_spec_make(PF_F64, r, dims);
    assert_int_equal(s.dtype, PF_F64);
    assert_int_equal(s.rank, r);
    for (int i = 0; i < r; i++) assert_int_equal(s.dims[i], dims[i]);
    assert_int_equal(pf_spec_check(&s), 0);
  }
  s = pf_spec_scalar(PF_I32);
  assert_int_equal(s.rank, 0);
  assert_int_equal(s.dtype, PF_I32);
  s = pf_spec_1d(PF_U8, 17);
  assert_int_equal(s.rank, 1);
  assert_int_equal(s.dims[0], 17);
  s = pf_spec_2d(PF_I64, 3, 11);
  assert_int_equal(s.rank, 2);
  assert_int_equal(s.dims[0], 3);
  assert_int_equal(s.dims[1], 11);
  /* Zero dims are allowed. */
  s = pf_spec_2d(PF_F32, 0, 5);
  assert_int_equal(pf_spec_check(&s), 0);
  /* Out-of-range ranks give a spec the check refuses, without reading dims
   * past the end. */
  s = pf_spec_make(PF_F32, PF_MAX_RANK + 1, dims);
  assert_int_equal(pf_spec_check(&s), PF_ESHAPE);
  s = pf_spec_make(PF_F32, -1, dims);
  assert_int_equal(pf_spec_check(&s), PF_ESHAPE);
  s = pf_spec_make(PF_F32, 3, NULL);
  assert_int_equal(s.rank, 3);
}

static void test_spec_check(void **state) {
  pf_spec s;
  (void)state;
  assert_int_equal(pf_spec_check(NULL), PF_EINVAL);
  s = pf_spec_1d(PF_DTYPE_COUNT, 4);
  assert_int_equal(pf_spec_check(&s), PF_EDTYPE);
  s = pf_spec_1d((pf_dtype)-3, 4);
  assert_int_equal(pf_spec_check(&s), PF_EDTYPE);
  s = pf_spec_1d(PF_F32, 4);
  s.rank = 9;
  assert_int_equal(pf_spec_check(&s), PF_ESHAPE);
  s.rank = -1;
  assert_int_equal(pf_spec_check(&s), PF_ESHAPE);
  s = pf_spec_2d(PF_F32, 4, -1);
  assert_int_equal(pf_spec_check(&s), PF_ESHAPE);
  s = pf_spec_2d(PF_F32, INT64_MIN, 2);
  assert_int_equal(pf_spec_check(&s), PF_ESHAPE);
  /* Byte size overflow, by one huge dim and by a product of fine ones. */
  s = pf_spec_1d(PF_F32, INT64_MAX);
  assert_int_equal(pf_spec_check(&s), PF_ERANGE);
  s = pf_spec_2d(PF_F64, INT64_C(1) << 32, INT64_C(1) << 32);
  assert_int_equal(pf_spec_check(&s), PF_ERANGE);
  {
    int64_t d[8] = {1 << 10, 1 << 10, 1 << 10, 1 << 10, 1 << 10, 1 << 10,
                    1 << 10, 1 << 10};
    s = pf_spec_make(PF_U8, 8, d); /* 2^80 bytes */
    assert_int_equal(pf_spec_check(&s), PF_ERANGE);
  }
  /* A zero anywhere makes the product zero, however big the rest. */
  s = pf_spec_2d(PF_F64, 0, INT64_C(1) << 61);
  assert_int_equal(pf_spec_check(&s), 0);
  /* A large but representable size passes. */
  s = pf_spec_2d(PF_U8, INT64_C(1) << 20, INT64_C(1) << 20);
  assert_int_equal(pf_spec_check(&s), 0);
  /* A bad dtype is reported before a bad rank. */
  s = pf_spec_1d(PF_DTYPE_COUNT, 1);
  s.rank = 12;
  assert_int_equal(pf_spec_check(&s), PF_EDTYPE);
}

static void test_spec_numel_nbytes_equal(void **state) {
  int64_t dims[4];
  pf_spec a, b;
  (void)state;
  rng_seed(1);
  for (int iter = 0; iter < 200; iter++) {
    int rank = (int)rng_range(0, 4);
    pf_dtype dt = (pf_dtype)rng_range(0, PF_DTYPE_COUNT - 1);
    int64_t n = 1;
    for (int i = 0; i < rank; i++) {
      dims[i] = rng_range(0, 7);
      n *= dims[i];
    }
    a = pf_spec_make(dt, rank, dims);
    assert_int_equal(pf_spec_numel(&a), n);
    assert_int_equal(pf_spec_nbytes(&a), (size_t)n * pf_dtype_size(dt));
    b = a;
    assert_true(pf_spec_equal(&a, &b));
    b.dtype = (pf_dtype)((dt + 1) % PF_DTYPE_COUNT);
    assert_false(pf_spec_equal(&a, &b));
    b = a;
    if (rank > 0) {
      b.dims[rng_range(0, rank - 1)] += 1;
      assert_false(pf_spec_equal(&a, &b));
      b = a;
      b.rank = rank - 1;
      assert_false(pf_spec_equal(&a, &b));
    }
  }
  /* Dims past the rank are not dimensions. */
  a = pf_spec_1d(PF_F32, 3);
  b = a;
  b.dims[1] = 99;
  assert_true(pf_spec_equal(&a, &b));
  /* Rank 0 vs rank 1 of size 1: same numel, different specs. */
  a = pf_spec_scalar(PF_F32);
  b = pf_spec_1d(PF_F32, 1);
  assert_int_equal(pf_spec_numel(&a), 1);
  assert_int_equal(pf_spec_numel(&b), 1);
  assert_false(pf_spec_equal(&a, &b));
}

static void test_spec_str(void **state) {
  char buf[128], small[8];
  int64_t d8[8] = {1000000, 2000000, 3000000, 4000000, 5000000, 6000000,
                   7000000, 8000000};
  pf_spec s;
  (void)state;
  s = pf_spec_2d(PF_F32, 4, 8);
  assert_ptr_equal(pf_spec_str(&s, buf, sizeof buf), buf);
  assert_string_equal(buf, "f32[4,8]");
  s = pf_spec_scalar(PF_F64);
  assert_string_equal(pf_spec_str(&s, buf, sizeof buf), "f64[]");
  s = pf_spec_1d(PF_U8, 0);
  assert_string_equal(pf_spec_str(&s, buf, sizeof buf), "u8[0]");
  s = pf_spec_make(PF_I64, 8, d8);
  assert_string_equal(pf_spec_str(&s, buf, sizeof buf),
                      "i64[1000000,2000000,3000000,4000000,5000000,6000000,"
                      "7000000,8000000]");
  /* Truncation: always NUL-terminated, a prefix of the full text. */
  for (size_t len = 1; len <= sizeof small; len++) {
    memset(small, 'x', sizeof small);
    pf_spec_str(&s, small, len);
    assert_true(strlen(small) < len);
    assert_memory_equal(small, buf, strlen(small));
  }
  /* len 0 writes nothing. */
  small[0] = 'Z';
  pf_spec_str(&s, small, 0);
  assert_int_equal(small[0], 'Z');
  /* A bad dtype still prints. */
  s = pf_spec_1d(PF_DTYPE_COUNT, 2);
  assert_string_equal(pf_spec_str(&s, buf, sizeof buf), "?[2]");
}

/* ---- tensors ---------------------------------------------------------------- */

static void test_tensor_create(void **state) {
  static const int64_t shapes[][3] = {{1, 1, 1}, {3, 5, 7}, {64, 1, 3},
                                      {2, 0, 4}, {1, 1, 65}};
  (void)state;
  for (size_t k = 0; k < LEN(shapes); k++)
    for (int dt = 0; dt < PF_DTYPE_COUNT; dt++) {
      pf_spec s = pf_spec_make((pf_dtype)dt, 3, shapes[k]);
      pf_tensor *t = NULL;
      const unsigned char *p;
      size_t nb = (size_t)(shapes[k][0] * shapes[k][1] * shapes[k][2]) *
                  pf_dtype_size((pf_dtype)dt);
      assert_int_equal(pf_tensor_create(&s, &t), 0);
      assert_non_null(t);
      assert_true(pf_spec_equal(pf_tensor_spec(t), &s));
      assert_int_equal(pf_tensor_nbytes(t), nb);
      assert_ptr_equal(pf_tensor_data(t), pf_tensor_cdata(t));
      p = pf_tensor_cdata(t);
      if (nb > 0) {
        assert_non_null(p);
        assert_int_equal((uintptr_t)p % 64, 0);
      }
      for (size_t i = 0; i < nb; i++) assert_int_equal(p[i], 0);
      /* The whole block is writable (ASan checks the bound). */
      if (nb > 0) memset(pf_tensor_data(t), 0xAB, nb);
      pf_tensor_destroy(t);
    }
  pf_tensor_destroy(NULL);
}

static void test_tensor_create_errors(void **state) {
  pf_tensor *t = (pf_tensor *)&t; /* not NULL: must be cleared on error */
  pf_spec s = pf_spec_1d(PF_F32, 4);
  (void)state;
  assert_int_equal(pf_tensor_create(&s, NULL), PF_EINVAL);
  assert_int_equal(pf_tensor_create(NULL, &t), PF_EINVAL);
  assert_null(t);
  s = pf_spec_1d(PF_DTYPE_COUNT, 4);
  t = (pf_tensor *)&t;
  assert_int_equal(pf_tensor_create(&s, &t), PF_EDTYPE);
  assert_null(t);
  s = pf_spec_1d(PF_F32, -4);
  assert_int_equal(pf_tensor_create(&s, &t), PF_ESHAPE);
  assert_null(t);
  s = pf_spec_2d(PF_F64, INT64_C(1) << 40, INT64_C(1) << 40);
  assert_int_equal(pf_tensor_create(&s, &t), PF_ERANGE);
  assert_null(t);
}

static void test_tensor_from(void **state) {
  float src[12];
  pf_spec s = pf_spec_2d(PF_F32, 3, 4);
  pf_tensor *t = NULL;
  (void)state;
  for (int i = 0; i < 12; i++) src[i] = (float)i * 1.5f - 3.0f;
  assert_int_equal(pf_tensor_from(&s, src, sizeof src, &t), 0);
  assert_int_equal(pf_tensor_nbytes(t), sizeof src);
  assert_int_equal((uintptr_t)pf_tensor_cdata(t) % 64, 0);
  assert_memory_equal(pf_tensor_cdata(t), src, sizeof src);
  /* The data is copied, not referenced. */
  src[5] = 1234.0f;
  assert_true(((const float *)pf_tensor_cdata(t))[5] != 1234.0f);
  pf_tensor_destroy(t);

  /* nbytes must match the spec exactly. */
  t = (pf_tensor *)&t;
  assert_int_equal(pf_tensor_from(&s, src, sizeof src - 4, &t), PF_ESHAPE);
  assert_null(t);
  assert_int_equal(pf_tensor_from(&s, src, sizeof src + 4, &t), PF_ESHAPE);
  assert_null(t);
  assert_int_equal(pf_tensor_from(&s, src, 0, &t), PF_ESHAPE);
  assert_null(t);
  /* Spec errors come first. */
  {
    pf_spec bad = pf_spec_1d(PF_F32, -1);
    assert_int_equal(pf_tensor_from(&bad, src, sizeof src, &t), PF_ESHAPE);
    bad = pf_spec_1d(PF_DTYPE_COUNT, 3);
    assert_int_equal(pf_tensor_from(&bad, src, 12, &t), PF_EDTYPE);
  }
  assert_int_equal(pf_tensor_from(&s, NULL, sizeof src, &t), PF_EINVAL);
  assert_int_equal(pf_tensor_from(&s, src, sizeof src, NULL), PF_EINVAL);
  /* An empty tensor from no data. */
  {
    pf_spec e = pf_spec_2d(PF_I32, 0, 3);
    assert_int_equal(pf_tensor_from(&e, NULL, 0, &t), 0);
    assert_int_equal(pf_tensor_nbytes(t), 0);
    pf_tensor_destroy(t);
  }
}

/* ---- attrs -------------------------------------------------------------------- */

static void test_attrs_set_get(void **state) {
  pf_attrs *a = NULL;
  const int64_t list[] = {5, -7, INT64_MAX, INT64_MIN};
  const int64_t *got = NULL;
  char sbuf[16];
  (void)state;
  assert_int_equal(pf_attrs_create(&a), 0);
  assert_int_equal(pf_attrs_count(a), 0);

  assert_int_equal(pf_attrs_set_int(a, "i", -42), 0);
  assert_int_equal(pf_attrs_set_float(a, "f", 2.5), 0);
  strcpy(sbuf, "hello");
  assert_int_equal(pf_attrs_set_string(a, "s", sbuf), 0);
  strcpy(sbuf, "CHANGED"); /* the string was copied */
  assert_int_equal(pf_attrs_set_ints(a, "l", list, (int)LEN(list)), 0);
  assert_int_equal(pf_attrs_count(a), 4);

  assert_int_equal(pf_attrs_get_int(a, "i", 0), -42);
  assert_true(pf_attrs_get_float(a, "f", 0) == 2.5);
  assert_string_equal(pf_attrs_get_string(a, "s", NULL), "hello");
  assert_int_equal(pf_attrs_get_ints(a, "l", &got), (int)LEN(list));
  assert_non_null(got);
  assert_ptr_not_equal(got, list);
  assert_memory_equal(got, list, sizeof list);
  /* get_ints with v NULL still answers the length. */
  assert_int_equal(pf_attrs_get_ints(a, "l", NULL), (int)LEN(list));

  /* An int answers get_float; nothing else converts. */
  assert_true(pf_attrs_get_float(a, "i", 0) == -42.0);
  assert_int_equal(pf_attrs_get_int(a, "f", 99), 99);
  assert_int_equal(pf_attrs_get_int(a, "s", 99), 99);
  assert_int_equal(pf_attrs_get_int(a, "l", 99), 99);
  assert_true(pf_attrs_get_float(a, "s", 7.5) == 7.5);
  assert_true(pf_attrs_get_float(a, "l", 7.5) == 7.5);
  assert_string_equal(pf_attrs_get_string(a, "i", "dflt"), "dflt");
  assert_string_equal(pf_attrs_get_string(a, "f", "dflt"), "dflt");
  assert_int_equal(pf_attrs_get_ints(a, "i", &got), -1);
  assert_int_equal(pf_attrs_get_ints(a, "s", &got), -1);

  /* Missing names give the defaults. */
  assert_int_equal(pf_attrs_get_int(a, "missing", 31), 31);
  assert_true(pf_attrs_get_float(a, "missing", -0.25) == -0.25);
  assert_null(pf_attrs_get_string(a, "missing", NULL));
  assert_int_equal(pf_attrs_get_ints(a, "missing", &got), -1);
  assert_false(pf_attrs_has(a, "missing"));
  assert_true(pf_attrs_has(a, "i"));
  assert_true(pf_attrs_has(a, "l"));
  /* A NULL map: everything missing. */
  assert_int_equal(pf_attrs_get_int(NULL, "i", 3), 3);
  assert_true(pf_attrs_get_float(NULL, "f", 3.5) == 3.5);
  assert_string_equal(pf_attrs_get_string(NULL, "s", "d"), "d");
  assert_int_equal(pf_attrs_get_ints(NULL, "l", &got), -1);
  assert_false(pf_attrs_has(NULL, "i"));
  assert_int_equal(pf_attrs_count(NULL), 0);
  assert_null(pf_attrs_name(NULL, 0));

  /* An empty list. */
  assert_int_equal(pf_attrs_set_ints(a, "empty", NULL, 0), 0);
  assert_int_equal(pf_attrs_get_ints(a, "empty", &got), 0);
  assert_true(pf_attrs_has(a, "empty"));
  pf_attrs_destroy(a);
  pf_attrs_destroy(NULL);
}

static void test_attrs_replace(void **state) {
  pf_attrs *a = NULL;
  const int64_t list[] = {1, 2, 3};
  const int64_t *got;
  (void)state;
  assert_int_equal(pf_attrs_create(&a), 0);
  assert_int_equal(pf_attrs_set_int(a, "x", 1), 0);
  assert_int_equal(pf_attrs_set_int(a, "x", 2), 0);
  assert_int_equal(pf_attrs_count(a), 1);
  assert_int_equal(pf_attrs_get_int(a, "x", 0), 2);
  /* Replacing with another type: the old value is gone. */
  assert_int_equal(pf_attrs_set_string(a, "x", "now a string"), 0);
  assert_int_equal(pf_attrs_count(a), 1);
  assert_int_equal(pf_attrs_type(a, 0), PF_ATTR_STRING);
  assert_int_equal(pf_attrs_get_int(a, "x", -1), -1);
  assert_string_equal(pf_attrs_get_string(a, "x", NULL), "now a string");
  assert_int_equal(pf_attrs_set_ints(a, "x", list, 3), 0);
  assert_int_equal(pf_attrs_type(a, 0), PF_ATTR_INTS);
  assert_null(pf_attrs_get_string(a, "x", NULL));
  assert_int_equal(pf_attrs_get_ints(a, "x", &got), 3);
  assert_memory_equal(got, list, sizeof list);
  assert_int_equal(pf_attrs_set_float(a, "x", -1.25), 0);
  assert_int_equal(pf_attrs_type(a, 0), PF_ATTR_FLOAT);
  assert_int_equal(pf_attrs_get_ints(a, "x", &got), -1);
  assert_true(pf_attrs_get_float(a, "x", 0) == -1.25);
  assert_int_equal(pf_attrs_count(a), 1);
  /* A refused set leaves the existing value alone. */
  assert_int_equal(pf_attrs_set_float(a, "x", NAN), PF_EINVAL);
  assert_true(pf_attrs_get_float(a, "x", 0) == -1.25);
  assert_int_equal(pf_attrs_set_string(a, "x", NULL), PF_EINVAL);
  assert_true(pf_attrs_get_float(a, "x", 0) == -1.25);
  assert_int_equal(pf_attrs_count(a), 1);
  pf_attrs_destroy(a);
}

static void test_attrs_order(void **state) {
  static const char *names[] = {"zeta", "alpha", "mid", "beta", "a", "zz",
                                "Alpha", "b_", "b", "m1", "m10", "m2"};
  pf_attrs *a = NULL;
  (void)state;
  rng_seed(7);
  for (int round = 0; round < 20; round++) {
    const char *shuffled[LEN(names)];
    memcpy(shuffled, names, sizeof names);
    for (size_t i = LEN(names) - 1; i > 0; i--) {
      size_t j = (size_t)rng_range(0, (int64_t)i);
      const char *t = shuffled[i];
      shuffled[i] = shuffled[j];
      shuffled[j] = t;
    }
    assert_int_equal(pf_attrs_create(&a), 0);
    for (size_t i = 0; i < LEN(names); i++) {
      /* Mixed types, value tied to the name so lookups can be checked. */
      if (i % 2 == 0)
        assert_int_equal(pf_attrs_set_int(a, shuffled[i], (int64_t)strlen(shuffled[i])), 0);
      else
        assert_int_equal(pf_attrs_set_string(a, shuffled[i], shuffled[i]), 0);
    }
    assert_int_equal(pf_attrs_count(a), (int)LEN(names));
    for (int i = 0; i < pf_attrs_count(a); i++) {
      const char *n = pf_attrs_name(a, i);
      assert_non_null(n);
      if (i > 0) assert_true(strcmp(pf_attrs_name(a, i - 1), n) < 0);
      if (pf_attrs_type(a, i) == PF_ATTR_INT)
        assert_int_equal(pf_attrs_get_int(a, n, -1), (int64_t)strlen(n));
      else {
        assert_int_equal(pf_attrs_type(a, i), PF_ATTR_STRING);
        assert_string_equal(pf_attrs_get_string(a, n, ""), n);
      }
    }
    /* Every name is found. */
    for (size_t i = 0; i < LEN(names); i++) assert_true(pf_attrs_has(a, names[i]));
    assert_null(pf_attrs_name(a, -1));
    assert_null(pf_attrs_name(a, (int)LEN(names)));
    pf_attrs_destroy(a);
  }
}

static void test_attrs_clone_equal(void **state) {
  pf_attrs *a = NULL, *b = NULL, *c = NULL, *e = NULL;
  int64_t list[] = {9, 8, 7};
  const int64_t *ga, *gb;
  (void)state;
  assert_int_equal(pf_attrs_create(&a), 0);
  assert_int_equal(pf_attrs_set_int(a, "n", 3), 0);
  assert_int_equal(pf_attrs_set_float(a, "lr", 0.125), 0);
  assert_int_equal(pf_attrs_set_string(a, "mode", "fast"), 0);
  assert_int_equal(pf_attrs_set_ints(a, "shape", list, 3), 0);
  assert_int_equal(pf_attrs_clone(a, &b), 0);
  assert_non_null(b);
  assert_ptr_not_equal(a, b);
  assert_true(pf_attrs_equal(a, b));
  assert_true(pf_attrs_equal(b, a));
  /* Deep: storage is not shared. */
  assert_ptr_not_equal(pf_attrs_get_string(a, "mode", NULL),
                       pf_attrs_get_string(b, "mode", NULL));
  assert_int_equal(pf_attrs_get_ints(a, "shape", &ga), 3);
  assert_int_equal(pf_attrs_get_ints(b, "shape", &gb), 3);
  assert_ptr_not_equal(ga, gb);
  /* Changing the original does not change the clone. */
  assert_int_equal(pf_attrs_set_string(a, "mode", "slow"), 0);
  list[0] = -1;
  assert_int_equal(pf_attrs_set_ints(a, "shape", list, 3), 0);
  assert_int_equal(pf_attrs_set_int(a, "extra", 1), 0);
  assert_string_equal(pf_attrs_get_string(b, "mode", NULL), "fast");
  assert_int_equal(pf_attrs_get_ints(b, "shape", &gb), 3);
  assert_int_equal(gb[0], 9);
  assert_false(pf_attrs_has(b, "extra"));
  assert_false(pf_attrs_equal(a, b));
  /* The clone outlives the original. */
  pf_attrs_destroy(a);
  a = NULL;
  assert_string_equal(pf_attrs_get_string(b, "mode", NULL), "fast");

  /* Equality: each kind of difference. */
  assert_int_equal(pf_attrs_clone(b, &c), 0);
  assert_true(pf_attrs_equal(b, c));
  assert_int_equal(pf_attrs_set_float(c, "lr", 0.25), 0);
  assert_false(pf_attrs_equal(b, c));
  assert_int_equal(pf_attrs_set_float(c, "lr", 0.125), 0);
  assert_true(pf_attrs_equal(b, c));
  assert_int_equal(pf_attrs_set_int(c, "n", 4), 0);
  assert_false(pf_attrs_equal(b, c));
  assert_int_equal(pf_attrs_set_int(c, "n", 3), 0);
  assert_true(pf_attrs_equal(b, c));
  /* Same value, other type. */
  assert_int_equal(pf_attrs_set_float(c, "n", 3.0), 0);
  assert_false(pf_attrs_equal(b, c));
  assert_int_equal(pf_attrs_set_int(c, "n", 3), 0);
  /* A list that is a prefix of the other. */
  assert_int_equal(pf_attrs_set_ints(c, "shape", (int64_t[]){9, 8}, 2), 0);
  assert_false(pf_attrs_equal(b, c));
  assert_int_equal(pf_attrs_set_ints(c, "shape", (int64_t[]){9, 8, 7}, 3), 0);
  assert_true(pf_attrs_equal(b, c));
  assert_int_equal(pf_attrs_set_string(c, "mode", "fas"), 0);
  assert_false(pf_attrs_equal(b, c));
  pf_attrs_destroy(c);

  /* Empty maps and NULL. */
  assert_int_equal(pf_attrs_clone(NULL, &c), 0);
  assert_non_null(c);
  assert_int_equal(pf_attrs_count(c), 0);
  assert_int_equal(pf_attrs_create(&e), 0);
  assert_true(pf_attrs_equal(c, e));
  assert_true(pf_attrs_equal(NULL, e));
  assert_true(pf_attrs_equal(NULL, NULL));
  assert_false(pf_attrs_equal(NULL, b));
  assert_false(pf_attrs_equal(b, e));
  /* Same names, other insertion order: equal. */
  assert_int_equal(pf_attrs_set_ints(e, "shape", (int64_t[]){9, 8, 7}, 3), 0);
  assert_int_equal(pf_attrs_set_string(e, "mode", "fast"), 0);
  assert_int_equal(pf_attrs_set_float(e, "lr", 0.125), 0);
  assert_int_equal(pf_attrs_set_int(e, "n", 3), 0);
  assert_true(pf_attrs_equal(b, e));
  assert_int_equal(pf_attrs_clone(b, NULL), PF_EINVAL);
  assert_int_equal(pf_attrs_create(NULL), PF_EINVAL);
  pf_attrs_destroy(b);
  pf_attrs_destroy(c);
  pf_attrs_destroy(e);
}

static void test_attrs_limits(void **state) {
  pf_attrs *a = NULL;
  char name[PF_ATTR_NAME_MAX + 2];
  int64_t list[PF_ATTR_LIST_MAX + 1];
  const int64_t *got;
  (void)state;
  assert_int_equal(pf_attrs_create(&a), 0);
  for (int i = 0; i <= PF_ATTR_LIST_MAX; i++) list[i] = i * 3 - 50;

  /* Names: 63 bytes pass, 64 are refused, for every setter. */
  memset(name, 'n', sizeof name);
  name[PF_ATTR_NAME_MAX] = '\0';
  assert_int_equal(strlen(name), 63);
  assert_int_equal(pf_attrs_set_int(a, name, 1), 0);
  assert_int_equal(pf_attrs_get_int(a, name, 0), 1);
  assert_string_equal(pf_attrs_name(a, 0), name);
  name[PF_ATTR_NAME_MAX] = 'n';
  name[PF_ATTR_NAME_MAX + 1] = '\0';
  assert_int_equal(strlen(name), 64);
  assert_int_equal(pf_attrs_set_int(a, name, 1), PF_EINVAL);
  assert_int_equal(pf_attrs_set_float(a, name, 1.0), PF_EINVAL);
  assert_int_equal(pf_attrs_set_string(a, name, "v"), PF_EINVAL);
  assert_int_equal(pf_attrs_set_ints(a, name, list, 2), PF_EINVAL);
  assert_false(pf_attrs_has(a, name));
  assert_int_equal(pf_attrs_count(a), 1);
  /* Empty and NULL names, NULL map. */
  assert_int_equal(pf_attrs_set_int(a, "", 1), PF_EINVAL);
  assert_int_equal(pf_attrs_set_int(a, NULL, 1), PF_EINVAL);
  assert_int_equal(pf_attrs_set_string(a, "", "v"), PF_EINVAL);
  assert_int_equal(pf_attrs_set_int(NULL, "x", 1), PF_EINVAL);
  assert_int_equal(pf_attrs_set_string(NULL, "x", "v"), PF_EINVAL);
  assert_int_equal(pf_attrs_set_ints(NULL, "x", list, 1), PF_EINVAL);
  assert_int_equal(pf_attrs_set_float(NULL, "x", 1.0), PF_EINVAL);

  /* Lists: 64 pass, 65 are refused, negative counts and NULL data too. */
  assert_int_equal(pf_attrs_set_ints(a, "list", list, PF_ATTR_LIST_MAX), 0);
  assert_int_equal(pf_attrs_get_ints(a, "list", &got), PF_ATTR_LIST_MAX);
  assert_memory_equal(got, list, PF_ATTR_LIST_MAX * sizeof *list);
  assert_int_equal(pf_attrs_set_ints(a, "list", list, PF_ATTR_LIST_MAX + 1),
                   PF_EINVAL);
  assert_int_equal(pf_attrs_set_ints(a, "big", list, PF_ATTR_LIST_MAX + 1),
                   PF_EINVAL);
  assert_false(pf_attrs_has(a, "big"));
  assert_int_equal(pf_attrs_get_ints(a, "list", &got), PF_ATTR_LIST_MAX);
  assert_int_equal(pf_attrs_set_ints(a, "neg", list, -1), PF_EINVAL);
  assert_int_equal(pf_attrs_set_ints(a, "nul", NULL, 2), PF_EINVAL);
  assert_false(pf_attrs_has(a, "neg"));
  assert_false(pf_attrs_has(a, "nul"));

  /* Non-finite floats are refused; extreme finite ones pass. */
  assert_int_equal(pf_attrs_set_float(a, "nan", NAN), PF_EINVAL);
  assert_int_equal(pf_attrs_set_float(a, "nan", -NAN), PF_EINVAL);
  assert_int_equal(pf_attrs_set_float(a, "inf", INFINITY), PF_EINVAL);
  assert_int_equal(pf_attrs_set_float(a, "inf", -INFINITY), PF_EINVAL);
  assert_false(pf_attrs_has(a, "nan"));
  assert_false(pf_attrs_has(a, "inf"));
  assert_int_equal(pf_attrs_set_float(a, "max", 1.7976931348623157e308), 0);
  assert_int_equal(pf_attrs_set_float(a, "tiny", 4.9e-324), 0);
  assert_true(pf_attrs_get_float(a, "tiny", 0) > 0);
  /* NULL string refused. */
  assert_int_equal(pf_attrs_set_string(a, "s", NULL), PF_EINVAL);
  assert_false(pf_attrs_has(a, "s"));
  assert_int_equal(pf_attrs_count(a), 4);
  pf_attrs_destroy(a);
}

/* ---- layout ------------------------------------------------------------------- */

static int64_t lin_index(int rank, const int64_t *dims, const int64_t *idx) {
  int64_t l = 0;
  for (int i = 0; i < rank; i++) l = l * dims[i] + idx[i];
  return l;
}

/* Advances idx over extent (row-major odometer); 0 when it wraps. */
static int odometer(int rank, const int64_t *extent, int64_t *idx) {
  for (int i = rank - 1; i >= 0; i--) {
    if (++idx[i] < extent[i]) return 1;
    idx[i] = 0;
  }
  return 0;
}

static void test_shard_region(void **state) {
  (void)state;
  /* The worked example: [4,6] split on axis 1 over 3. */
  {
    pf_spec s = pf_spec_2d(PF_F32, 4, 6);
    int64_t lo[2], ext[2];
    for (int k = 0; k < 3; k++) {
      pf_shard_region(&s, pf_split(1), 3, k, lo, ext);
      assert_int_equal(lo[0], 0);
      assert_int_equal(ext[0], 4);
      assert_int_equal(lo[1], 2 * k);
      assert_int_equal(ext[1], 2);
    }
    pf_shard_region(&s, pf_replicated(), 3, 2, lo, ext);
    assert_int_equal(lo[0], 0);
    assert_int_equal(lo[1], 0);
    assert_int_equal(ext[0], 4);
    assert_int_equal(ext[1], 6);
  }
  /* Random: the shards of a split tile the tensor exactly once; replicated
   * shards each cover all of it. */
  rng_seed(3);
  for (int iter = 0; iter < 300; iter++) {
    int rank = (int)rng_range(1, 4), n = (int)rng_range(1, 4);
    int axis = (int)rng_range(0, rank - 1);
    int replicated = rng_range(0, 4) == 0;
    int64_t dims[4], total = 1, idx[4] = {0};
    unsigned char *cover;
    pf_spec s;
    for (int i = 0; i < rank; i++) {
      dims[i] = rng_range(1, 4);
      if (i == axis) dims[i] *= n;
      total *= dims[i];
    }
    s = pf_spec_make(PF_F32, rank, dims);
    cover = calloc((size_t)total, 1);
    assert_non_null(cover);
    for (int k = 0; k < n; k++) {
      int64_t lo[4], ext[4], e[4] = {0};
      pf_shard_region(&s, replicated ? pf_replicated() : pf_split(axis), n, k,
                      lo, ext);
      for (int i = 0; i < rank; i++) {
        assert_true(lo[i] >= 0);
        assert_true(ext[i] >= 1);
        assert_true(lo[i] + ext[i] <= dims[i]);
      }
      do {
        int64_t g[4];
        for (int i = 0; i < rank; i++) g[i] = lo[i] + e[i];
        cover[lin_index(rank, dims, g)]++;
      } while (odometer(rank, ext, e));
    }
    do {
      assert_int_equal(cover[lin_index(rank, dims, idx)], replicated ? n : 1);
    } while (odometer(rank, dims, idx));
    free(cover);
  }
}

static int in_region(int rank, const int64_t *lo, const int64_t *ext,
                     const int64_t *p) {
  for (int i = 0; i < rank; i++)
    if (p[i] < lo[i] || p[i] >= lo[i] + ext[i]) return 0;
  return 1;
}

static void test_region_intersect(void **state) {
  (void)state;
  /* Touching is not overlapping. */
  {
    int64_t la[1] = {0}, ea[1] = {4}, lb[1] = {4}, eb[1] = {3}, l[1], e[1];
    assert_int_equal(pf_region_intersect(1, la, ea, lb, eb, l, e), 0);
    lb[0] = 3;
    assert_int_equal(pf_region_intersect(1, la, ea, lb, eb, l, e), 1);
    assert_int_equal(l[0], 3);
    assert_int_equal(e[0], 1);
  }
  /* Random regions in an 8^rank grid against point membership. */
  rng_seed(11);
  for (int iter = 0; iter < 500; iter++) {
    int rank = (int)rng_range(1, 4);
    int64_t la[4], ea[4], lb[4], eb[4], l[4], e[4], grid[4], p[4] = {0};
    int64_t both = 0, vol = 1;
    int hit;
    for (int i = 0; i < rank; i++) {
      grid[i] = 8;
      la[i] = rng_range(0, 7);
      ea[i] = rng_range(1, 8 - la[i]);
      lb[i] = rng_range(0, 7);
      eb[i] = rng_range(1, 8 - lb[i]);
    }
    hit = pf_region_intersect(rank, la, ea, lb, eb, l, e);
    do {
      both += in_region(rank, la, ea, p) && in_region(rank, lb, eb, p);
    } while (odometer(rank, grid, p));
    assert_int_equal(hit, both > 0);
    if (!hit) continue;
    for (int i = 0; i < rank; i++) vol *= e[i];
    assert_int_equal(vol, both);
    /* Every point of the result is in both. */
    memset(p, 0, sizeof p);
    do {
      int64_t q[4];
      for (int i = 0; i < rank; i++) q[i] = l[i] + p[i];
      assert_true(in_region(rank, la, ea, q));
      assert_true(in_region(rank, lb, eb, q));
    } while (odometer(rank, e, p));
    /* Symmetric. */
    {
      int64_t l2[4], e2[4];
      assert_int_equal(pf_region_intersect(rank, lb, eb, la, ea, l2, e2), 1);
      assert_memory_equal(l, l2, (size_t)rank * sizeof *l);
      assert_memory_equal(e, e2, (size_t)rank * sizeof *e);
    }
  }
  assert_true(pf_sharding_equal(pf_replicated(), pf_replicated()));
  assert_true(pf_sharding_equal(pf_split(1), pf_split(1)));
  assert_false(pf_sharding_equal(pf_split(0), pf_split(1)));
  assert_false(pf_sharding_equal(pf_split(0), pf_replicated()));
  /* The axis of a replicated sharding means nothing. */
  {
    pf_sharding r1 = pf_replicated(), r2 = pf_replicated();
    r2.axis = 3;
    assert_true(pf_sharding_equal(r1, r2));
  }
}

/* ---- box copy ------------------------------------------------------------------ */

static void box_copy_ref(unsigned char *dst, const int64_t *ddims,
                         const unsigned char *src, const int64_t *sdims,
                         const pf_box *b, size_t es) {
  int64_t idx[PF_MAX_RANK] = {0};
  for (int i = 0; i < b->rank; i++)
    if (b->extent[i] == 0) return;
  do {
    int64_t s[PF_MAX_RANK], d[PF_MAX_RANK];
    for (int i = 0; i < b->rank; i++) {
      s[i] = b->src_offset[i] + idx[i];
      d[i] = b->dst_offset[i] + idx[i];
    }
    memcpy(dst + (size_t)lin_index(b->rank, ddims, d) * es,
           src + (size_t)lin_index(b->rank, sdims, s) * es, es);
  } while (odometer(b->rank, b->extent, idx));
}

static int64_t prod(int rank, const int64_t *d) {
  int64_t n = 1;
  for (int i = 0; i < rank; i++) n *= d[i];
  return n;
}

/* The dtype whose elements are es bytes, for the spec-taking block moves. */
static pf_dtype dtype_of_size(size_t es) {
  switch (es) {
    case 1: return PF_U8;
    case 2: return PF_F16;
    case 4: return PF_F32;
    default: return PF_F64;
  }
}

/* mode 0: arbitrary boxes (strided); 1: trailing axes whole in both tensors
 * from a random axis on (contiguous runs merge); 2: trailing axes whole in
 * the source only; 3: some extent is 0. */
static void box_case(int mode) {
  static const size_t sizes[] = {1, 2, 4, 8};
  int rank = (int)rng_range(1, 4);
  int whole_from = (int)rng_range(0, rank - 1);
  size_t es = sizes[rng_range(0, 3)];
  int64_t sdims[PF_MAX_RANK], ddims[PF_MAX_RANK];
  pf_box b;
  unsigned char *src, *dst, *ref, *blk;
  size_t sn, dn;
  pf_spec sspec, dspec;
  memset(&b, 0, sizeof b);
  b.rank = rank;
  for (int i = 0; i < rank; i++) {
    int whole = (mode == 1 || mode == 2) && i >= whole_from;
    b.extent[i] = rng_range(1, 4);
    sdims[i] = b.extent[i] + (whole ? 0 : rng_range(0, 3));
    ddims[i] = b.extent[i] + ((whole && mode == 1) ? 0 : rng_range(0, 3));
    b.src_offset[i] = rng_range(0, sdims[i] - b.extent[i]);
    b.dst_offset[i] = rng_range(0, ddims[i] - b.extent[i]);
  }
  if (mode == 3) b.extent[rng_range(0, rank - 1)] = 0;
  sn = (size_t)prod(rank, sdims) * es;
  dn = (size_t)prod(rank, ddims) * es;
  src = malloc(sn);
  dst = malloc(dn);
  ref = malloc(dn);
  blk = malloc(dn);
  assert_non_null(src);
  assert_non_null(dst);
  assert_non_null(ref);
  assert_non_null(blk);
  for (size_t i = 0; i < sn; i++) src[i] = (unsigned char)rng_next();
  for (size_t i = 0; i < dn; i++) dst[i] = (unsigned char)rng_next();
  memcpy(ref, dst, dn);
  memcpy(blk, dst, dn);
  box_copy_ref(ref, ddims, src, sdims, &b, es);
  pf_box_copy(dst, ddims, src, sdims, &b, es);
  /* The same block through the spec-taking form must move the same bytes. */
  sspec = pf_spec_make(dtype_of_size(es), rank, sdims);
  dspec = pf_spec_make(dtype_of_size(es), rank, ddims);
  pf_block_copy(blk, &dspec, b.dst_offset, src, &sspec, b.src_offset, b.extent);
  if (memcmp(blk, ref, dn) != 0) fail_msg("pf_block_copy differs from the reference (mode %d)", mode);
  if (memcmp(dst, ref, dn) != 0) {
    char msg[512];
    int off = snprintf(msg, sizeof msg, "mode %d rank %d es %zu:", mode, rank, es);
    for (int i = 0; i < rank; i++)
      off += snprintf(msg + off, sizeof msg - (size_t)off,
                      " [src %lld@%lld dst %lld@%lld ext %lld]",
                      (long long)sdims[i], (long long)b.src_offset[i],
                      (long long)ddims[i], (long long)b.dst_offset[i],
                      (long long)b.extent[i]);
    fail_msg("box copy differs from the reference: %s", msg);
  }
  assert_int_equal(pf_box_nbytes(&b, es), (size_t)prod(rank, b.extent) * es);
  free(src);
  free(dst);
  free(ref);
  free(blk);
}

static void test_box_copy_random(void **state) {
  (void)state;
  rng_seed(2024);
  for (int mode = 0; mode < 4; mode++)
    for (int iter = 0; iter < 400; iter++) box_case(mode);
}

static void test_box_copy_edges(void **state) {
  (void)state;
  /* Rank 0: one element. */
  {
    pf_box b;
    double s = 3.25, d = -1;
    memset(&b, 0, sizeof b);
    pf_box_copy(&d, NULL, &s, NULL, &b, sizeof d);
    assert_true(d == 3.25);
    assert_int_equal(pf_box_nbytes(&b, sizeof d), sizeof d);
  }
  /* The whole tensor, identical shapes: one memcpy's worth. */
  {
    int32_t s[2 * 3 * 4], d[2 * 3 * 4];
    int64_t dims[3] = {2, 3, 4};
    pf_box b = {.rank = 3, .extent = {2, 3, 4}};
    for (int i = 0; i < 24; i++) {
      s[i] = i * 7 + 1;
      d[i] = -1;
    }
    pf_box_copy(d, dims, s, dims, &b, sizeof *s);
    assert_memory_equal(d, s, sizeof s);
  }
  /* A column out of a matrix into a row-major vector shape [3,1]. */
  {
    float s[3 * 4], d[3] = {0};
    int64_t sd[2] = {3, 4}, dd[2] = {3, 1};
    pf_box b = {.rank = 2, .src_offset = {0, 2}, .dst_offset = {0, 0},
                .extent = {3, 1}};
    for (int i = 0; i < 12; i++) s[i] = (float)i;
    pf_box_copy(d, dd, s, sd, &b, sizeof *s);
    assert_true(d[0] == 2.0f && d[1] == 6.0f && d[2] == 10.0f);
  }
}

/* Blocks along an axis: block k of n along `axis` of a tensor of dims
 * `dims` holds, at index idx, the tensor's element at idx shifted by
 * k * dims[axis] / n on that axis. Split, take, concatenate and put are
 * checked against that, element by element, on random shapes, axes
 * (leading, where blocks are contiguous, and inner, where they are
 * strided) and block counts. */
static void blocks_case(void) {
  static const size_t sizes[] = {1, 2, 4, 8};
  int rank = (int)rng_range(1, 4), axis = (int)rng_range(0, rank - 1);
  int n = (int)rng_range(1, 4), k = (int)rng_range(0, n - 1);
  size_t es = sizes[rng_range(0, 3)];
  int64_t dims[PF_MAX_RANK], bdims[PF_MAX_RANK];
  pf_spec whole, block;
  size_t wn, bn;
  unsigned char *src, *split, *ref, *back, *one, *put, *put_ref;
  for (int i = 0; i < rank; i++) dims[i] = bdims[i] = rng_range(1, 3);
  dims[axis] = bdims[axis] * n;
  whole = pf_spec_make(dtype_of_size(es), rank, dims);
  block = pf_spec_make(dtype_of_size(es), rank, bdims);
  wn = pf_spec_nbytes(&whole);
  bn = pf_spec_nbytes(&block);
  assert_int_equal(wn, (size_t)n * bn);
  src = malloc(wn);
  split = malloc(wn);
  ref = malloc(wn);
  back = malloc(wn);
  one = malloc(bn);
  put = malloc(wn);
  put_ref = malloc(wn);
  assert_true(src && split && ref && back && one && put && put_ref);
  for (size_t i = 0; i < wn; i++) {
    src[i] = (unsigned char)rng_next();
    put[i] = put_ref[i] = (unsigned char)rng_next();
  }
  for (int j = 0; j < n; j++) {
    int64_t idx[PF_MAX_RANK] = {0};
    do {
      int64_t at[PF_MAX_RANK];
      for (int i = 0; i < rank; i++) at[i] = idx[i] + (i == axis ? j * bdims[axis] : 0);
      memcpy(ref + (size_t)j * bn + (size_t)lin_index(rank, bdims, idx) * es,
             src + (size_t)lin_index(rank, dims, at) * es, es);
    } while (odometer(rank, bdims, idx));
  }
  pf_blocks_split(split, src, &whole, axis, n);
  if (memcmp(split, ref, wn) != 0)
    fail_msg("pf_blocks_split: rank %d axis %d n %d es %zu", rank, axis, n, es);
  pf_block_take(one, src, &whole, axis, n, k);
  if (memcmp(one, ref + (size_t)k * bn, bn) != 0)
    fail_msg("pf_block_take: block %d, rank %d axis %d n %d", k, rank, axis, n);
  /* Concatenating the reference's blocks gives the tensor back. */
  memset(back, 0xA5, wn);
  pf_blocks_concat(back, &whole, axis, ref, &block, n);
  if (memcmp(back, src, wn) != 0)
    fail_msg("pf_blocks_concat: rank %d axis %d n %d es %zu", rank, axis, n, es);
  /* Putting one block writes its region and nothing else. */
  {
    int64_t idx[PF_MAX_RANK] = {0};
    do {
      int64_t at[PF_MAX_RANK];
      for (int i = 0; i < rank; i++) at[i] = idx[i] + (i == axis ? k * bdims[axis] : 0);
      memcpy(put_ref + (size_t)lin_index(rank, dims, at) * es,
             one + (size_t)lin_index(rank, bdims, idx) * es, es);
    } while (odometer(rank, bdims, idx));
  }
  pf_block_put(put, &whole, axis, k, one, &block);
  if (memcmp(put, put_ref, wn) != 0)
    fail_msg("pf_block_put: block %d, rank %d axis %d n %d", k, rank, axis, n);
  free(src);
  free(split);
  free(ref);
  free(back);
  free(one);
  free(put);
  free(put_ref);
}

static void test_blocks_along_axis(void **state) {
  (void)state;
  rng_seed(31);
  for (int iter = 0; iter < 1000; iter++) blocks_case();
}

/* The naive answer: the box's elements are one run of consecutive linear
 * indices in a tensor of shape dims at offset. */
static int contiguous_ref(const pf_box *b, const int64_t *dims,
                          const int64_t *offset) {
  int64_t idx[PF_MAX_RANK] = {0}, lo = INT64_MAX, hi = -1, n = 0;
  do {
    int64_t p[PF_MAX_RANK], l;
    for (int i = 0; i < b->rank; i++) p[i] = offset[i] + idx[i];
    l = lin_index(b->rank, dims, p);
    if (l < lo) lo = l;
    if (l > hi) hi = l;
    n++;
  } while (odometer(b->rank, b->extent, idx));
  return hi - lo + 1 == n;
}

static void test_box_contiguous(void **state) {
  (void)state;
  {
    int64_t dims[2] = {4, 6}, off[2] = {1, 0};
    pf_box b = {.rank = 2, .extent = {2, 6}};
    assert_true(pf_box_contiguous(&b, dims, off));
    b.extent[1] = 5;
    assert_false(pf_box_contiguous(&b, dims, off));
    b.extent[0] = 1; /* part of one row */
    off[1] = 1;
    assert_true(pf_box_contiguous(&b, dims, off));
  }
  rng_seed(99);
  for (int iter = 0; iter < 2000; iter++) {
    int rank = (int)rng_range(1, 4);
    int64_t dims[PF_MAX_RANK], off[PF_MAX_RANK];
    pf_box b;
    memset(&b, 0, sizeof b);
    b.rank = rank;
    for (int i = 0; i < rank; i++) {
      dims[i] = rng_range(1, 4);
      /* Bias towards whole and unit extents, where the answer flips. */
      switch (rng_range(0, 2)) {
        case 0: b.extent[i] = dims[i]; break;
        case 1: b.extent[i] = 1; break;
        default: b.extent[i] = rng_range(1, dims[i]); break;
      }
      off[i] = rng_range(0, dims[i] - b.extent[i]);
    }
    if (pf_box_contiguous(&b, dims, off) != contiguous_ref(&b, dims, off)) {
      char msg[256];
      int o = 0;
      for (int i = 0; i < rank; i++)
        o += snprintf(msg + o, sizeof msg - (size_t)o, " [dim %lld off %lld ext %lld]",
                      (long long)dims[i], (long long)off[i], (long long)b.extent[i]);
      fail_msg("pf_box_contiguous disagrees with the reference (ref %d):%s",
               contiguous_ref(&b, dims, off), msg);
    }
  }
}

/* The arena: aligned blocks that keep their contents while many more are
 * handed out (small ones, and big ones in mapped chunks of their own). */
/* A reservation: the next small blocks lie in it, in order, and the arena
 * goes on past its end; big blocks still get chunks of their own. */
static void test_arena_reserve(void **state) {
  pf_arena a;
  void *at = (void *)1;
  char *p, *q, *big;
  (void)state;
  pf_arena_init(&a);
  assert_non_null(pf_arena_alloc(&a, 10)); /* a chunk, partly used, abandoned */
  assert_int_equal(pf_arena_reserve(&a, 0, &at), 0);
  assert_null(at);
  assert_int_equal(pf_arena_reserve(&a, 1000, &at), 0);
  assert_non_null(at);
  p = pf_arena_alloc(&a, 5);
  assert_ptr_equal(p, at);
  big = pf_arena_alloc(&a, 1u << 20); /* a chunk of its own */
  assert_true(big < (char *)at || big >= (char *)at + 1000);
  q = pf_arena_alloc(&a, 990);
  assert_ptr_equal(q, (char *)at + 8);
  memset(q, 7, 990);
  p = pf_arena_alloc(&a, 16); /* past the reservation: a new chunk */
  assert_true(p < (char *)at || p >= (char *)at + 1000);
  memset(p, 1, 16);
  pf_arena_free(&a);
}

static void test_arena(void **state) {
  pf_arena a;
  char *first, *big = NULL, *s;
  uint32_t *blocks[3000];
  (void)state;
  pf_arena_init(&a);
  first = pf_arena_strdup(&a, "first");
  assert_non_null(first);
  assert_null(pf_arena_strdup(&a, NULL));
  for (int i = 0; i < 3000; i++) {
    blocks[i] = pf_arena_alloc(&a, (size_t)(i % 37 + 1) * sizeof(uint32_t));
    assert_non_null(blocks[i]);
    assert_int_equal((uintptr_t)blocks[i] % 8, 0);
    for (int k = 0; k < i % 37 + 1; k++) blocks[i][k] = (uint32_t)(i * 40 + k);
    if (i == 1500) {
      /* a block far larger than a chunk, between small ones */
      big = pf_arena_alloc(&a, 3u << 20);
      assert_non_null(big);
      memset(big, 0x5a, 3u << 20);
      pf_prefault(big, 3u << 20); /* a hint: changes nothing it covers */
    }
  }
  s = pf_arena_dup(&a, "abc", 4);
  assert_string_equal(s, "abc");
  assert_string_equal(first, "first");
  assert_non_null(big);
  assert_int_equal(big[0], 0x5a);
  assert_int_equal(big[(3u << 20) - 1], 0x5a);
  for (int i = 0; i < 3000; i++)
    for (int k = 0; k < i % 37 + 1; k++) assert_int_equal(blocks[i][k], (uint32_t)(i * 40 + k));
  pf_arena_free(&a);
  assert_null(a.chunks);
  assert_non_null(pf_arena_alloc(&a, 16)); /* usable again */
  pf_arena_free(&a);
}

/* 1 if no 4 KiB page of [p, p + n) is backed by memory (or mapped). */
static int not_resident(const void *p, size_t n) {
  unsigned char vec[1024];
  size_t pages = n / 4096;
  assert_true(pages <= sizeof vec && (uintptr_t)p % 4096 == 0);
  if (mincore((void *)(uintptr_t)p, n, vec) != 0) return errno == ENOMEM; /* unmapped */
  for (size_t i = 0; i < pages; i++)
    if (vec[i] & 1) return 0;
  return 1;
}

/* Blocks of whole pages (base/pages.c): page-aligned, disjoint (each keeps
 * its contents while others are handed out and freed), and a 2 MiB page
 * whose blocks are all freed is given back at once, as is a big block of
 * its own mapping. */
static void test_pages(void **state) {
  enum { N = 40 };
  unsigned char *b[N];
  size_t n[N];
  (void)state;
  rng_seed(7);
  for (int round = 0; round < 3; round++) {
    for (int i = 0; i < N; i++) {
      n[i] = (size_t)(rng_next() % (3u << 20)) + 1; /* up to 3 MiB, odd sizes */
      if (i == 7) n[i] = 20u << 20;                 /* past a quarter region: own mapping */
      b[i] = pf_pages_alloc(n[i]);
      assert_non_null(b[i]);
      assert_int_equal((uintptr_t)b[i] % 4096, 0);
      memset(b[i], i + 1, n[i]);
      if (i % 3 == 2) { /* frees between allocations */
        pf_pages_free(b[i - 1], n[i - 1]);
        b[i - 1] = NULL;
      }
    }
    for (int i = 0; i < N; i++) {
      if (b[i] == NULL) continue;
      assert_int_equal(b[i][0], i + 1);
      assert_int_equal(b[i][n[i] / 2], i + 1);
      assert_int_equal(b[i][n[i] - 1], i + 1);
    }
    for (int i = 0; i < N; i++) pf_pages_free(b[i], n[i]);
  }
  {
    /* 6 MiB written then freed: its whole 2 MiB pages (at least two) hold
     * no memory afterwards; so does a 20 MiB block (unmapped). */
    size_t six = 6u << 20, big = 20u << 20;
    unsigned char *p = pf_pages_alloc(six), *q = pf_pages_alloc(big);
    uintptr_t lo = ((uintptr_t)p + (2u << 20) - 1) & ~(uintptr_t)((2u << 20) - 1);
    assert_non_null(p);
    assert_non_null(q);
    memset(p, 1, six);
    memset(q, 2, big);
    assert_false(not_resident((void *)lo, 4u << 20));
    pf_pages_free(p, six);
    pf_pages_free(q, big);
    assert_true(not_resident((void *)lo, 4u << 20));
    assert_true(not_resident(q, 4u << 20));
  }
  pf_pages_free(NULL, 10); /* nothing */
  {
    /* Large blocks are whole huge pages for free() and realloc(); small
     * ones are still 64-byte aligned. */
    size_t len = PF_PAGES_HUGE_MIN + 12345;
    unsigned char *m = pf_pages_malloc(len), *s = pf_pages_malloc(100);
    assert_non_null(m);
    assert_non_null(s);
    assert_int_equal((uintptr_t)s % 64, 0);
    if (pf_pages_huge()) assert_int_equal((uintptr_t)m % (2u << 20), 0);
    for (size_t i = 0; i < len; i++) m[i] = (unsigned char)(i * 31);
    m = realloc(m, 2 * len);
    assert_non_null(m);
    for (size_t i = 0; i < len; i += 4099) assert_int_equal(m[i], (unsigned char)(i * 31));
    free(s);
    free(m);
  }
}

/* Pages of [p, p + n) resident, of those looked at (every 64th). */
static size_t resident_pages(const void *p, size_t n) {
  static unsigned char vec[(64u << 20) / 4096];
  size_t count = 0;
  assert_true(n <= sizeof vec * 4096);
  assert_int_equal(mincore((void *)(uintptr_t)p, n, vec), 0);
  for (size_t i = 0; i < n / 4096; i += 64) count += vec[i] & 1;
  return count;
}

/* A warmer backs its ranges with memory on its own thread and changes no
 * byte of them, though their writer writes them meanwhile; it starts only
 * for ranges large enough, and stops when asked, even half way. */
static void test_warmer(void **state) {
  (void)state;
  size_t len = 48u << 20, half = len / 2;
  unsigned char *m = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  pf_warm_range r[2], small = {.p = NULL, .n = PF_WARM_MIN - 1};
  pf_warmer *w;
  assert_true(m != MAP_FAILED);
  r[0] = (pf_warm_range){.p = m, .n = half};
  r[1] = (pf_warm_range){.p = m + half, .n = half};
  assert_null(pf_warmer_start(&small, 1)); /* too small: left to the writer */
  pf_warmer_stop(NULL);                    /* nothing */
  assert_int_equal(resident_pages(m, len), 0);
  w = pf_warmer_start(r, 2);
  if (w == NULL) {
    /* One CPU, or huge pages off (PATHFLOW_HUGE_PAGES=0, sanitizers):
     * nothing warmed. */
    assert_true(sysconf(_SC_NPROCESSORS_ONLN) < 2 || !pf_pages_huge());
    munmap(m, len);
    return;
  }
  /* The writer fills the first half while the warmer runs; only the
   * warmer touches the second. */
  for (size_t i = 0; i < half; i += 4096) m[i] = (unsigned char)(i / 4096 * 7 + 1);
  for (int tries = 0; tries < 1000 && resident_pages(m, len) < len / 4096 / 64; tries++)
    usleep(10000);
  pf_warmer_stop(w);
  assert_int_equal(resident_pages(m + half, half), half / 4096 / 64);
  for (size_t i = 0; i < half; i += 4096) assert_int_equal(m[i], (unsigned char)(i / 4096 * 7 + 1));
  for (size_t i = half; i < len; i += 4096) assert_int_equal(m[i], 0);
  munmap(m, len);
  /* Stopped at once: whatever it reached, it returns and frees itself. */
  m = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  assert_true(m != MAP_FAILED);
  r[0].p = m;
  r[1].p = m + half;
  pf_warmer_stop(pf_warmer_start(r, 2));
  munmap(m, len);
}

/* Equal specs share one copy, in the arena; distinct ones each have their
 * own, found again however many there are; the caller's spec may change
 * afterwards. */
static void test_spec_set(void **state) {
  pf_arena arena;
  pf_spec_set set;
  pf_spec x = pf_spec_2d(PF_F32, 3, 4), y = pf_spec_2d(PF_F32, 4, 3);
  const pf_spec *a, *b, *seen[1000];
  (void)state;
  pf_arena_init(&arena);
  pf_spec_set_init(&set);
  assert_non_null(a = pf_spec_set_add(&set, &arena, &x));
  assert_ptr_not_equal(a, &x);
  assert_ptr_equal(pf_spec_set_add(&set, &arena, &x), a);
  assert_non_null(b = pf_spec_set_add(&set, &arena, &y));
  assert_ptr_not_equal(a, b);
  x.dims[0] = 5; /* the set kept a copy */
  assert_int_equal(a->dims[0], 3);
  assert_ptr_equal(pf_spec_set_add(&set, &arena, &(pf_spec){PF_F32, 2, {3, 4}}), a);
  /* Same dims, another dtype or rank: not equal. */
  assert_ptr_not_equal(pf_spec_set_add(&set, &arena, &(pf_spec){PF_F64, 2, {3, 4}}), a);
  assert_ptr_not_equal(pf_spec_set_add(&set, &arena, &(pf_spec){PF_F32, 1, {3}}), a);
  for (int i = 0; i < 1000; i++) {
    pf_spec s = pf_spec_1d(PF_I32, 1000 + i);
    assert_non_null(seen[i] = pf_spec_set_add(&set, &arena, &s));
  }
  for (int i = 999; i >= 0; i--) {
    pf_spec s = pf_spec_1d(PF_I32, 1000 + i);
    assert_ptr_equal(pf_spec_set_add(&set, &arena, &s), seen[i]);
    assert_int_equal(seen[i]->dims[0], 1000 + i);
  }
  assert_int_equal(set.n, 1004);
  assert_int_equal(pf_spec_hash(&(pf_spec){PF_F32, 2, {3, 4}}), pf_spec_hash(a));
  pf_spec_set_free(&set);
  pf_spec_set_free(NULL);
  pf_arena_free(&arena);
}

/* This process's resident bytes (/proc/self/statm). */
static size_t resident_bytes(void) {
  long size = 0, rss = 0;
  FILE *f = fopen("/proc/self/statm", "r");
  assert_non_null(f);
  assert_int_equal(fscanf(f, "%ld %ld", &size, &rss), 2);
  fclose(f);
  return (size_t)rss * (size_t)sysconf(_SC_PAGESIZE);
}

/* Probes count each thread's way from one to the next: passes and ticks
 * per pair, names registered once, bad ids ignored, a report naming them. */
static void *probe_elsewhere(void *arg) {
  int *ids = arg;
  uint64_t passes, ticks;
  pf_probe_pair(ids[0], ids[1], &passes, &ticks); /* another thread's table: none */
  ids[2] = passes == 0 && ticks == 0;
  return NULL;
}

static void test_probe(void **state) {
  char copy[] = "test.probe.a";
  int a = pf_probe_id("test.probe.a"), b = pf_probe_id("test.probe.b"), ids[3];
  uint64_t passes, ticks, passes_back, ticks_back;
  volatile uint64_t spin = 0;
  pthread_t th;
  char *text = NULL;
  size_t len = 0;
  FILE *f;
  (void)state;
  assert_true(a > 0 && b > 0 && a != b);
  assert_int_equal(pf_probe_id(copy), a); /* by name, not by pointer */
  for (int i = 0; i < 3; i++) {
    pf_probe_hit(a);
    for (int k = 0; k < 1000; k++) spin += (uint64_t)k;
    pf_probe_hit(b);
  }
  pf_probe_hit(0);                /* ignored */
  pf_probe_hit(PF_PROBE_MAX + 1); /* ignored */
  pf_probe_pair(a, b, &passes, &ticks);
  pf_probe_pair(b, a, &passes_back, &ticks_back);
  assert_int_equal(passes, 3);
  assert_int_equal(passes_back, 2);
  assert_true(ticks > 0);
  pf_probe_pair(a, 0, &passes, &ticks);
  assert_int_equal(passes, 0);
  ids[0] = a;
  ids[1] = b;
  ids[2] = 0;
  assert_int_equal(pthread_create(&th, NULL, probe_elsewhere, ids), 0);
  pthread_join(th, NULL);
  assert_int_equal(ids[2], 1);
  f = open_memstream(&text, &len);
  assert_non_null(f);
  assert_true(pf_probe_report(f) >= 2);
  fclose(f);
  assert_non_null(strstr(text, "test.probe.a"));
  assert_non_null(strstr(text, "floor"));
  free(text);
  /* Past PF_PROBE_MAX names, 0: not counted. */
  {
    static char more[PF_PROBE_MAX + 1][24];
    int last = 1;
    for (int i = 0; i <= PF_PROBE_MAX; i++) {
      snprintf(more[i], sizeof more[i], "test.probe.more%d", i);
      last = pf_probe_id(more[i]);
    }
    assert_int_equal(last, 0);
  }
}

/* A reserve backs memory of its own on an idle thread, and gives all of
 * it back when stopped; too small a one is not started. */
static void test_warmer_reserve(void **state) {
  size_t len = 64u << 20, before, peak = 0;
  pf_warmer *w;
  (void)state;
  assert_null(pf_warmer_reserve(PF_WARM_MIN - (4u << 20)));
  before = resident_bytes();
  if ((w = pf_warmer_reserve(len)) == NULL) {
    assert_true(sysconf(_SC_NPROCESSORS_ONLN) < 2 || !pf_pages_huge());
    return;
  }
  /* Its thread runs when this one sleeps (it is of idle priority). */
  for (int tries = 0; tries < 1000 && peak < before + len / 2; tries++) {
    usleep(10000);
    size_t now = resident_bytes();
    if (now > peak) peak = now;
  }
  assert_true(peak >= before + len / 2);
  pf_warmer_stop(w);
  assert_true(resident_bytes() < peak - len / 4);
  pf_warmer_stop(pf_warmer_reserve(len)); /* stopped at once */
}

/* Two threads allocating, writing and freeing blocks at once (the
 * regions are shared by every arena of the process). */
static void *pages_worker(void *arg) {
  unsigned seed = (unsigned)(uintptr_t)arg;
  for (int i = 0; i < 200; i++) {
    size_t n = (size_t)(rand_r(&seed) % (1u << 20)) + 4096;
    unsigned char *p = pf_pages_alloc(n), v = (unsigned char)(seed + (unsigned)i);
    if (p == NULL) return arg;
    memset(p, v, n);
    sched_yield();
    if (p[0] != v || p[n - 1] != v) return arg;
    pf_pages_free(p, n);
  }
  return NULL;
}

static void test_pages_threads(void **state) {
  pthread_t t[2];
  void *r[2];
  (void)state;
  for (int i = 0; i < 2; i++) assert_int_equal(pthread_create(&t[i], NULL, pages_worker, (void *)(uintptr_t)(i + 1)), 0);
  for (int i = 0; i < 2; i++) {
    pthread_join(t[i], &r[i]);
    assert_null(r[i]);
  }
}

/* Shared empty attributes: one set for all, read-only, never freed. */
/* A set with several owners (pf_attrs_ref) is read-only and lives until
 * the last lets go; pf_attrs_identical tells -0.0 from 0.0. */
static void test_attrs_ref(void **state) {
  pf_attrs *a, *b, *r;
  (void)state;
  assert_int_equal(pf_attrs_create(&a), 0);
  assert_int_equal(pf_attrs_set_float(a, "f", 0.0), 0);
  assert_int_equal(pf_attrs_set_int(a, "i", 7), 0);
  assert_int_equal(pf_attrs_set_string(a, "s", "x"), 0); /* past the first item */
  r = pf_attrs_ref(a);
  assert_ptr_equal(r, a);
  assert_int_equal(pf_attrs_set_int(a, "i", 8), PF_EINVAL);
  assert_int_equal(pf_attrs_get_int(r, "i", 0), 7);
  pf_attrs_destroy(r); /* one owner left: the set lives on, writable */
  assert_int_equal(pf_attrs_get_int(a, "i", 0), 7);
  assert_int_equal(pf_attrs_set_int(a, "i", 9), 0);
  assert_null(pf_attrs_ref(NULL));
  assert_int_equal(pf_attrs_clone(a, &b), 0);
  assert_true(pf_attrs_identical(a, b));
  assert_int_equal(pf_attrs_set_float(b, "f", -0.0), 0);
  assert_true(pf_attrs_equal(a, b));
  assert_false(pf_attrs_identical(a, b));
  pf_attrs_destroy(b);
  pf_attrs_destroy(a);
}

static void test_attrs_share(void **state) {
  pf_attrs *e1, *e2, *empty, *full, *c;
  (void)state;
  assert_int_equal(pf_attrs_share(NULL, &e1), 0);
  assert_int_equal(pf_attrs_create(&empty), 0);
  assert_int_equal(pf_attrs_share(empty, &e2), 0);
  assert_ptr_equal(e1, e2);
  assert_int_equal(pf_attrs_count(e1), 0);
  assert_int_equal(pf_attrs_set_int(e1, "axis", 1), PF_EINVAL);
  assert_int_equal(pf_attrs_set_string(e1, "mode", "x"), PF_EINVAL);
  assert_int_equal(pf_attrs_count(e2), 0);
  pf_attrs_destroy(e1); /* no-op: still usable */
  assert_int_equal(pf_attrs_count(e2), 0);
  assert_int_equal(pf_attrs_set_int(empty, "axis", 2), 0);
  assert_int_equal(pf_attrs_share(empty, &full), 0);
  assert_ptr_not_equal(full, empty); /* a set with attributes is a clone */
  assert_true(pf_attrs_equal(full, empty));
  assert_int_equal(pf_attrs_clone(e2, &c), 0);
  assert_ptr_not_equal(c, e2); /* a clone of the shared set is the caller's */
  assert_int_equal(pf_attrs_set_int(c, "axis", 3), 0);
  pf_attrs_destroy(c);
  pf_attrs_destroy(full);
  pf_attrs_destroy(empty);
  pf_attrs_destroy(e2);
}

/* pf_clock_now_near: a reading again only while the cycle counter says it
 * is recent; never one that goes back; the virtual clock read every time. */
static void test_clock_now_near(void **state) {
  pf_clock real, virt;
  pf_clock_reading r = {0, 0}, rv = {0, 0};
  uint64_t a, b, before;
  (void)state;
  pf_clock_real_init(&real);
  before = pf_clock_now(&real);
  a = pf_clock_now_near(&real, &r);
  assert_true(a >= before);
  b = pf_clock_now_near(&real, &r);
  assert_true(b >= a);
  /* A millisecond is millions of cycles: the next reading is new. */
  pf_clock_sleep(&real, 1000000);
  b = pf_clock_now_near(&real, &r);
  assert_true(b >= a + 1000000);
  assert_true(b <= pf_clock_now(&real));
  pf_clock_virtual_init(&virt, 5);
  assert_true(pf_clock_now_near(&virt, &rv) == 5);
  pf_clock_advance(&virt, 9);
  assert_true(pf_clock_now_near(&virt, &rv) == 9);
}

/* A stamp taken by another thread after `now` was read is no time ago, not
 * 2^64 ns ago: check_peers read it so once, under ThreadSanitizer, and
 * declared a healthy loopback rank lost after 1 s of a 10-s limit. */
static void test_clock_since(void **state) {
  (void)state;
  assert_true(pf_clock_since(10, 3) == 7);
  assert_true(pf_clock_since(10, 10) == 0);
  assert_true(pf_clock_since(10, 11) == 0);
  assert_true(pf_clock_since(UINT64_C(5), UINT64_MAX) == 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_clock_since),
      cmocka_unit_test(test_clock_now_near),
      cmocka_unit_test(test_error_codes_distinct),
      cmocka_unit_test(test_error_codes_unknown),
      cmocka_unit_test(test_dtypes),
      cmocka_unit_test(test_spec_make),
      cmocka_unit_test(test_spec_check),
      cmocka_unit_test(test_spec_numel_nbytes_equal),
      cmocka_unit_test(test_spec_str),
      cmocka_unit_test(test_tensor_create),
      cmocka_unit_test(test_tensor_create_errors),
      cmocka_unit_test(test_tensor_from),
      cmocka_unit_test(test_attrs_set_get),
      cmocka_unit_test(test_attrs_replace),
      cmocka_unit_test(test_attrs_order),
      cmocka_unit_test(test_attrs_clone_equal),
      cmocka_unit_test(test_attrs_limits),
      cmocka_unit_test(test_shard_region),
      cmocka_unit_test(test_region_intersect),
      cmocka_unit_test(test_box_copy_random),
      cmocka_unit_test(test_box_copy_edges),
      cmocka_unit_test(test_box_contiguous),
      cmocka_unit_test(test_blocks_along_axis),
      cmocka_unit_test(test_arena),
      cmocka_unit_test(test_arena_reserve),
      cmocka_unit_test(test_pages),
      cmocka_unit_test(test_pages_threads),
      cmocka_unit_test(test_warmer),
      cmocka_unit_test(test_warmer_reserve),
      cmocka_unit_test(test_probe),
      cmocka_unit_test(test_spec_set),
      cmocka_unit_test(test_attrs_share),
      cmocka_unit_test(test_attrs_ref),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
