/* The API's edges: the context after pf_finalize, pf_last_error never
 * stale, pf_spec_str(NULL), printing tensors, putting host tensors on the
 * devices as buffers. */
#include "testing.h"

static pf_context *ctx;

static int setup(void **state) {
  (void)state;
  return pf_init(NULL, NULL, &(pf_init_options){.cpu_devices = 2}, &ctx);
}

static int teardown(void **state) {
  (void)state;
  return pf_finalize(ctx);
}

static pf_tensor *seq(pf_spec spec) {
  pf_tensor *t;
  OK(pf_tensor_create(&spec, &t));
  for (int64_t i = 0; i < pf_spec_numel(&spec); i++) ((float *)pf_tensor_data(t))[i] = (float)i;
  return t;
}

static void assert_same(const pf_tensor *a, const pf_tensor *b) {
  assert_true(pf_spec_equal(pf_tensor_spec(a), pf_tensor_spec(b)));
  assert_memory_equal(pf_tensor_cdata(a), pf_tensor_cdata(b), pf_tensor_nbytes(a));
}

/* ---- the context after pf_finalize -------------------------------------------------- */

static void test_calls_after_finalize(void **state) {
  pf_context *c;
  pf_graph *g, *g2 = NULL;
  pf_executable *exe = (pf_executable *)1;
  pf_slice_t s;
  pf_spec spec = pf_spec_1d(PF_F32, 4);
  pf_value_t x, y;
  pf_tensor *t = seq(spec), *out = NULL;
  pf_buffer_t b;
  (void)state;
  OK(pf_init(NULL, NULL, &(pf_init_options){.cpu_devices = 1}, &c));
  OK(pf_graph_create(c, &g));
  OK(pf_graph_slice(g, PF_DEVICE_CPU, 1, &s));
  OK(pf_graph_input(g, "x", &spec, s, pf_replicated(), &x));
  OK(pf_graph_program(g, &(pf_program_desc){.kernel = "relu", .slice = s, .n_in = 1, .in = &x},
                      &y, NULL));
  OK(pf_graph_output(g, "y", y));
  OK(pf_buffer_put(c, t, 1, (int[]){0}, pf_replicated(), &b));
  assert_int_equal(pf_finalize(c), 0);
  /* Used to free the context a second time. */
  assert_int_equal(pf_finalize(c), PF_ESTATE);
  assert_non_null(strstr(pf_last_error(c), "finalized"));
  assert_int_equal(pf_graph_create(c, &g2), PF_ESTATE);
  assert_null(g2);
  assert_int_equal(pf_compile(g, &exe), PF_ESTATE);
  assert_null(exe);
  assert_non_null(strstr(pf_last_error(c), "pf_compile: the context was finalized"));
  assert_int_equal(pf_buffer_fetch(c, b, &out), PF_ESTATE);
  assert_null(out);
  assert_int_equal(pf_buffer_release(c, b), PF_ESTATE);
  assert_int_equal(pf_buffer_put(c, t, 1, (int[]){0}, pf_replicated(), &b), PF_ESTATE);
  assert_int_equal(pf_kernel_outputs(c, "relu", PF_DEVICE_CPU), PF_ESTATE);
  assert_int_equal(pf_device_count(c, PF_DEVICE_CPU), 0);
  pf_graph_destroy(g);
  pf_tensor_destroy(t);
}

/* ---- pf_last_error ----------------------------------------------------------------- */

static int fail_compute(const pf_kernel_call *c) {
  return pf_diag_error(c->diag, PF_EINVAL, "this kernel always fails");
}

static int same_shape(const pf_attrs *a, int n_in, const pf_spec *in, int n_out, pf_spec *out,
                      pf_diag *d) {
  (void)a, (void)n_in, (void)n_out, (void)d;
  out[0] = in[0];
  return 0;
}

static void test_last_error_never_stale(void **state) {
  pf_graph *g, *bad = NULL;
  pf_executable *exe;
  pf_slice_t s;
  pf_spec spec = pf_spec_1d(PF_F32, 4);
  pf_value_t x, y;
  pf_future *f, *ff;
  pf_tensor *t = seq(spec);
  pf_executable_stats st;
  pf_kernel_def def = {.name = "test.fail", .kind = PF_DEVICE_CPU, .n_in = 1, .n_out = 1,
                       .shape = same_shape, .compute = fail_compute};
  (void)state;
  OK(pf_kernel_register(ctx, &def));
  assert_int_equal(pf_graph_create(ctx, NULL), PF_EINVAL);
  assert_string_not_equal(pf_last_error(ctx), "");
  OK(pf_graph_create(ctx, &g));
  assert_string_equal(pf_last_error(ctx), "");
  OK(pf_graph_slice(g, PF_DEVICE_CPU, 1, &s));
  OK(pf_graph_input(g, "x", &spec, s, pf_replicated(), &x));
  OK(pf_graph_program(g, &(pf_program_desc){.kernel = "relu", .slice = s, .n_in = 1, .in = &x},
                      &y, NULL));
  OK(pf_graph_output(g, "y", y));
  OK(pf_compile(g, &exe));
  /* An error, then calls that succeed, each clearing it. */
  assert_int_equal(pf_execute(exe, 0, NULL, &f), PF_ENOFEED);
  assert_non_null(strstr(pf_last_error(ctx), "\"x\""));
  OK(pf_execute(exe, 1, &(pf_feed){.name = "x", .tensor = t}, &f));
  assert_string_equal(pf_last_error(ctx), "");
  assert_int_equal(pf_executable_set_weight(exe, -1), PF_EINVAL);
  assert_non_null(strstr(pf_last_error(ctx), "weight"));
  OK(pf_future_wait(f));
  assert_string_equal(pf_last_error(ctx), "");
  assert_int_equal(pf_executable_peak_memory(exe, 99, &(int64_t){0}), PF_EINVAL);
  assert_string_not_equal(pf_last_error(ctx), "");
  OK(pf_executable_stats_get(exe, &st));
  assert_string_equal(pf_last_error(ctx), "");
  assert_int_equal(pf_future_wait_for(f, -1), PF_EINVAL);
  assert_string_not_equal(pf_last_error(ctx), "");
  OK(pf_future_wait_for(f, 0));
  assert_string_equal(pf_last_error(ctx), "");
  pf_future_destroy(f);
  pf_executable_destroy(exe);
  pf_graph_destroy(g);
  /* A failed execution: the wait's error is the execution's message. */
  OK(pf_graph_create(ctx, &bad));
  OK(pf_graph_slice(bad, PF_DEVICE_CPU, 1, &s));
  OK(pf_graph_input(bad, "x", &spec, s, pf_replicated(), &x));
  OK(pf_graph_program(bad, &(pf_program_desc){.kernel = "test.fail", .slice = s, .n_in = 1,
                                               .in = &x},
                      &y, NULL));
  OK(pf_graph_output(bad, "y", y));
  OK(pf_compile(bad, &exe));
  OK(pf_execute(exe, 1, &(pf_feed){.name = "x", .tensor = t}, &ff));
  assert_int_equal(pf_future_wait(ff), PF_EKERNEL);
  assert_string_equal(pf_last_error(ctx), pf_future_error(ff));
  assert_non_null(strstr(pf_last_error(ctx), "this kernel always fails"));
  assert_int_equal(pf_kernel_outputs(ctx, "no.such", PF_DEVICE_CPU), PF_ENOKERNEL);
  assert_non_null(strstr(pf_last_error(ctx), "no.such"));
  assert_int_equal(pf_kernel_outputs(ctx, "relu", PF_DEVICE_CPU), 1);
  assert_string_equal(pf_last_error(ctx), "");
  pf_future_destroy(ff);
  pf_executable_destroy(exe);
  pf_graph_destroy(bad);
  pf_tensor_destroy(t);
}

static void test_spec_str_null(void **state) {
  char buf[16];
  pf_spec s = pf_spec_2d(PF_F64, 2, 3);
  (void)state;
  assert_string_equal(pf_spec_str(NULL, buf, sizeof buf), "(null)");
  assert_null(pf_spec_str(&s, NULL, 8));
  assert_string_equal(pf_spec_str(&s, buf, sizeof buf), "f64[2,3]");
  /* After a failed pf_init there is no context: still a message. */
  assert_non_null(strstr(pf_last_error(NULL), "pf_init"));
}

static void test_version(void **state) {
  const char *text = NULL;
  char expect[32];
  (void)state;
  assert_int_equal(pf_version(NULL), PATHFLOW_VERSION_HEX);
  assert_int_equal(pf_version(&text), PATHFLOW_VERSION_HEX);
  snprintf(expect, sizeof expect, "%d.%d.%d", PATHFLOW_VERSION_MAJOR, PATHFLOW_VERSION_MINOR,
           PATHFLOW_VERSION_PATCH);
  assert_string_equal(text, expect);
}

/* ---- pf_tensor_print ----------------------------------------------------------------- */

static char *printed(const pf_tensor *t) {
  char *buf = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&buf, &len);
  assert_non_null(f);
  OK(pf_tensor_print(t, f));
  fclose(f);
  return buf;
}

static void test_tensor_print(void **state) {
  pf_spec s23 = pf_spec_2d(PF_F32, 2, 3), big = pf_spec_2d(PF_I64, 100, 50), half = pf_spec_scalar(PF_F16),
          empty = pf_spec_1d(PF_U8, 0), cube = {.dtype = PF_I32, .rank = 3, .dims = {2, 2, 2}};
  pf_tensor *t;
  char *p;
  (void)state;
  OK(pf_tensor_create(&s23, &t));
  const float v[] = {1, 2.5f, -3, 4, 5, 6};
  memcpy(pf_tensor_data(t), v, sizeof v);
  p = printed(t);
  assert_string_equal(p, "f32[2,3]\n[[  1, 2.5,  -3],\n [  4,   5,   6]]\n");
  free(p);
  pf_tensor_destroy(t);

  OK(pf_tensor_create(&big, &t));
  for (int64_t i = 0; i < 5000; i++) ((int64_t *)pf_tensor_data(t))[i] = i;
  p = printed(t);
  assert_string_equal(p, "i64[100,50]\n"
                         "[[   0,    1,    2, ...,   47,   48,   49],\n"
                         " [  50,   51,   52, ...,   97,   98,   99],\n"
                         " [ 100,  101,  102, ...,  147,  148,  149],\n"
                         " ...,\n"
                         " [4850, 4851, 4852, ..., 4897, 4898, 4899],\n"
                         " [4900, 4901, 4902, ..., 4947, 4948, 4949],\n"
                         " [4950, 4951, 4952, ..., 4997, 4998, 4999]]\n");
  free(p);
  pf_tensor_destroy(t);

  OK(pf_tensor_create(&cube, &t));
  for (int i = 0; i < 8; i++) ((int32_t *)pf_tensor_data(t))[i] = i * 10;
  p = printed(t);
  assert_string_equal(p, "i32[2,2,2]\n[[[ 0, 10],\n  [20, 30]],\n\n [[40, 50],\n  [60, 70]]]\n");
  free(p);
  pf_tensor_destroy(t);

  OK(pf_tensor_create(&half, &t));
  *(uint16_t *)pf_tensor_data(t) = 0xc100; /* -2.5 */
  p = printed(t);
  assert_string_equal(p, "f16[]\n-2.5\n");
  free(p);
  pf_tensor_destroy(t);

  OK(pf_tensor_create(&empty, &t));
  p = printed(t);
  assert_string_equal(p, "u8[0]\n[]\n");
  free(p);
  assert_int_equal(pf_tensor_print(NULL, stdout), PF_EINVAL);
  assert_int_equal(pf_tensor_print(t, NULL), PF_EINVAL);
  pf_tensor_destroy(t);
}

/* ---- pf_buffer_put --------------------------------------------------------------------- */

/* y = 2x over a slice pinned to devices {1, 0}, x split by rows. */
static pf_executable *scale_on_1_0(void) {
  pf_graph *g;
  pf_executable *exe;
  pf_slice_t s;
  pf_value_t x, y;
  pf_spec spec = pf_spec_2d(PF_F32, 4, 3);
  pf_attrs *a;
  OK(pf_graph_create(ctx, &g));
  OK(pf_graph_slice(g, PF_DEVICE_CPU, 2, &s));
  OK(pf_graph_slice_pin(g, s, (int[]){1, 0}));
  OK(pf_graph_input(g, "x", &spec, s, pf_split(0), &x));
  OK(pf_attrs_create(&a));
  OK(pf_attrs_set_float(a, "alpha", 2));
  OK(pf_graph_program(g, &(pf_program_desc){.kernel = "scale", .attrs = a, .slice = s, .n_in = 1,
                                             .in = &x},
                      &y, NULL));
  pf_attrs_destroy(a);
  OK(pf_graph_output(g, "y", y));
  OK(pf_compile(g, &exe));
  pf_graph_destroy(g);
  return exe;
}

static void check_scaled(pf_executable *exe, pf_buffer_t b, const pf_tensor *x) {
  pf_future *f;
  pf_tensor *y;
  OK(pf_execute(exe, 1, &(pf_feed){.name = "x", .buffer = b}, &f));
  OK(pf_future_wait(f));
  OK(pf_future_fetch(f, "y", &y));
  for (int i = 0; i < 12; i++)
    assert_true(((const float *)pf_tensor_cdata(y))[i] == 2 * ((const float *)pf_tensor_cdata(x))[i]);
  pf_tensor_destroy(y);
  pf_future_destroy(f);
}

static void test_buffer_put(void **state) {
  pf_spec spec = pf_spec_2d(PF_F32, 4, 3), odd = pf_spec_2d(PF_F32, 3, 3), got;
  pf_tensor *x = seq(spec), *o = seq(odd), *back;
  pf_executable *exe = scale_on_1_0();
  pf_buffer_t split, repl, fitted, none;
  (void)state;
  /* Split over {1, 0}: the layout the executable wants (no copy when fed). */
  OK(pf_buffer_put(ctx, x, 2, (int[]){1, 0}, pf_split(0), &split));
  OK(pf_buffer_spec(ctx, split, &got));
  assert_true(pf_spec_equal(&got, &spec));
  OK(pf_buffer_fetch(ctx, split, &back));
  assert_same(back, x);
  pf_tensor_destroy(back);
  check_scaled(exe, split, x);
  /* Replicated on both: gathered and re-split when fed. */
  OK(pf_buffer_put(ctx, x, 2, (int[]){0, 1}, pf_replicated(), &repl));
  OK(pf_buffer_fetch(ctx, repl, &back));
  assert_same(back, x);
  pf_tensor_destroy(back);
  check_scaled(exe, repl, x);
  /* Where the input wants it. */
  OK(pf_buffer_put_for(exe, "x", x, &fitted));
  check_scaled(exe, fitted, x);
  OK(pf_buffer_fetch(ctx, fitted, &back));
  assert_same(back, x);
  pf_tensor_destroy(back);
  /* Refused, naming why. */
  assert_int_equal(pf_buffer_put(ctx, x, 2, (int[]){0, 7}, pf_split(0), &none), PF_EINVAL);
  assert_non_null(strstr(pf_last_error(ctx), "device 7"));
  assert_int_equal(none.id, 0);
  assert_int_equal(pf_buffer_put(ctx, o, 2, (int[]){0, 1}, pf_split(0), &none), PF_ESPLIT);
  assert_int_equal(pf_buffer_put(ctx, x, 2, (int[]){0, 1}, pf_split(2), &none), PF_ESPLIT);
  assert_int_equal(pf_buffer_put(ctx, x, 2, (int[]){0, 1}, pf_partial(), &none), PF_EINVAL);
  assert_int_equal(pf_buffer_put(ctx, x, 0, (int[]){0}, pf_replicated(), &none), PF_EINVAL);
  assert_int_equal(pf_buffer_put_for(exe, "x", o, &none), PF_EFEEDSHAPE);
  assert_non_null(strstr(pf_last_error(ctx), "f32[3,3]"));
  assert_int_equal(pf_buffer_put_for(exe, "nope", x, &none), PF_ENOTFOUND);
  OK(pf_buffer_release(ctx, split));
  OK(pf_buffer_release(ctx, repl));
  OK(pf_buffer_release(ctx, fitted));
  assert_int_equal(pf_buffer_release(ctx, split), PF_ESTALE);
  pf_executable_destroy(exe);
  pf_tensor_destroy(x);
  pf_tensor_destroy(o);
}

int main(void) {
  const struct CMUnitTest alone[] = {
      cmocka_unit_test(test_calls_after_finalize),
      cmocka_unit_test(test_spec_str_null),
      cmocka_unit_test(test_tensor_print),
  };
  const struct CMUnitTest shared[] = {
      cmocka_unit_test(test_last_error_never_stale),
      cmocka_unit_test(test_buffer_put),
      cmocka_unit_test(test_version),
  };
  int failed = cmocka_run_group_tests_name("alone", alone, NULL, NULL);
  failed += cmocka_run_group_tests_name("context", shared, setup, teardown);
  return failed != 0;
}
