/* Building graphs through the public API: ids, names, default shardings,
 * the specs the builders derive, pinning, and the graph wire format.
 *
 * One context with 4 CPU devices for the whole file, whatever the machine's
 * core count. Where a derived spec is checked, the graph is also run and the
 * data compared with a plain-C reference, so the spec is known to describe
 * what the runtime actually produces. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "graph/graph_internal.h" /* to look at pins; everything else is public */
#include "pathflow.h"

#define NDEV 4

static pf_context *ctx;

#define OK(call)                                                              \
  do {                                                                        \
    int rc_ = (call);                                                         \
    if (rc_ != 0)                                                             \
      fail_msg("%s = %s: %s", #call, pf_errname(rc_), pf_last_error(ctx));    \
  } while (0)

/* The call fails with `code` and the context's message contains `needle`. */
#define FAILS(code, call, ...)                                                \
  do {                                                                        \
    int rc_ = (call);                                                         \
    const char *needles_[] = {__VA_ARGS__};                                   \
    if (rc_ != (code))                                                        \
      fail_msg("%s = %s, expected %s (%s)", #call, pf_errname(rc_),           \
               pf_errname(code), pf_last_error(ctx));                         \
    for (size_t k_ = 0; k_ < sizeof needles_ / sizeof *needles_; k_++)        \
      if (strstr(pf_last_error(ctx), needles_[k_]) == NULL)                   \
        fail_msg("%s: message \"%s\" does not mention \"%s\"", #call,         \
                 pf_last_error(ctx), needles_[k_]);                           \
  } while (0)

static int setup(void **state) {
  pf_init_options o = {.cpu_devices = NDEV};
  (void)state;
  return pf_init(NULL, NULL, &o, &ctx);
}

static int teardown(void **state) {
  (void)state;
  return pf_finalize(ctx);
}

/* ---- helpers ---------------------------------------------------------------- */

static pf_graph *new_graph(void) {
  pf_graph *g = NULL;
  OK(pf_graph_create(ctx, &g));
  assert_non_null(g);
  return g;
}

static pf_slice_t new_slice(pf_graph *g, int n) {
  pf_slice_t s = {PF_NO_ID};
  OK(pf_graph_slice(g, PF_DEVICE_CPU, n, &s));
  return s;
}

static pf_value_t new_input(pf_graph *g, const char *name, pf_spec spec,
                            pf_slice_t s, pf_sharding sh) {
  pf_value_t v = PF_NO_VALUE;
  OK(pf_graph_input(g, name, &spec, s, sh, &v));
  return v;
}

/* One program of one output. */
static pf_value_t prog1(pf_graph *g, const char *name, const char *kernel,
                        const pf_attrs *attrs, pf_slice_t s, int n_in,
                        const pf_value_t *in, const pf_sharding *in_sh,
                        const pf_sharding *out_sh) {
  pf_value_t out = PF_NO_VALUE;
  pf_program_desc d = {.name = name, .kernel = kernel, .attrs = attrs,
                       .slice = s, .n_in = n_in, .in = in,
                       .in_shardings = in_sh, .out_shardings = out_sh};
  OK(pf_graph_program(g, &d, &out, NULL));
  return out;
}

static pf_spec spec_of(const pf_graph *g, pf_value_t v) {
  pf_spec s;
  memset(&s, 0, sizeof s);
  assert_int_equal(pf_graph_value_spec(g, v, &s), 0);
  return s;
}

static void assert_spec_at(pf_spec got, pf_spec want, const char *file,
                           int line) {
  char a[128], b[128];
  if (!pf_spec_equal(&got, &want))
    fail_msg("%s:%d: spec %s, expected %s", file, line,
             pf_spec_str(&got, a, sizeof a), pf_spec_str(&want, b, sizeof b));
}
#define assert_spec(got, want) assert_spec_at((got), (want), __FILE__, __LINE__)

/* A tensor whose element i is f(i), for float dtypes and i32. */
static pf_tensor *ramp_tensor(pf_spec s, double scale, double offset) {
  pf_tensor *t = NULL;
  int64_t n = pf_spec_numel(&s);
  OK(pf_tensor_create(&s, &t));
  for (int64_t i = 0; i < n; i++) {
    double v = (double)i * scale + offset;
    switch (s.dtype) {
      case PF_F32: ((float *)pf_tensor_data(t))[i] = (float)v; break;
      case PF_F64: ((double *)pf_tensor_data(t))[i] = v; break;
      case PF_I32: ((int32_t *)pf_tensor_data(t))[i] = (int32_t)v; break;
      default: fail_msg("ramp_tensor: dtype %s", pf_dtype_name(s.dtype));
    }
  }
  return t;
}

/* Compiles, runs with feeds, fetches the named outputs into outs. */
static void run_graph(pf_graph *g, int n_feeds, const pf_feed *feeds,
                      int n_out, const char *const *names, pf_tensor **outs) {
  pf_executable *exe = NULL;
  pf_future *f = NULL;
  int rc;
  OK(pf_compile(g, &exe));
  OK(pf_execute(exe, n_feeds, feeds, &f));
  rc = pf_future_wait(f);
  if (rc != 0) fail_msg("execution: %s: %s", pf_errname(rc), pf_future_error(f));
  for (int i = 0; i < n_out; i++) OK(pf_future_fetch(f, names[i], &outs[i]));
  pf_future_destroy(f);
  pf_executable_destroy(exe);
}

static void encode(const pf_graph *g, uint8_t **buf, size_t *len) {
  OK(pf_graph_encode(g, buf, len));
  assert_non_null(*buf);
}

/* ---- ids and counts --------------------------------------------------------- */

static void test_ids(void **state) {
  pf_graph *g = new_graph();
  pf_slice_t s0, s1, s2;
  pf_value_t x, lab, outs[3] = {{-7}, {-7}, {-7}}, r;
  pf_program_t p = {PF_NO_ID};
  pf_spec sp;
  (void)state;
  assert_int_equal(pf_graph_num_programs(g), 0);
  assert_int_equal(pf_graph_num_inputs(g), 0);
  assert_int_equal(pf_graph_num_outputs(g), 0);
  s0 = new_slice(g, 1);
  s1 = new_slice(g, 2);
  s2 = new_slice(g, NDEV);
  assert_int_equal(s0.id, 0);
  assert_int_equal(s1.id, 1);
  assert_int_equal(s2.id, 2);
  x = new_input(g, "x", pf_spec_2d(PF_F32, 4, 5), s1, pf_split(0));
  lab = new_input(g, "labels", pf_spec_1d(PF_I32, 4), s0, pf_replicated());
  assert_int_equal(x.id, 0);
  assert_int_equal(lab.id, 1);
  assert_int_equal(pf_graph_num_inputs(g), 2);
  {
    pf_program_desc d = {.name = "relu0", .kernel = "relu", .slice = s1,
                         .n_in = 1, .in = &x};
    OK(pf_graph_program(g, &d, outs, &p));
    assert_int_equal(p.id, 0);
    assert_int_equal(outs[0].id, 2);
    assert_int_equal(outs[1].id, -7); /* one output written, no more */
  }
  {
    /* Two outputs: consecutive ids after the inputs and relu's. */
    pf_value_t in[2] = {outs[0], lab};
    pf_program_desc d = {.name = "xent", .kernel = "softmax_xent", .slice = s0,
                         .n_in = 2, .in = in};
    outs[2] = (pf_value_t){-7};
    OK(pf_graph_program(g, &d, outs, &p));
    assert_int_equal(p.id, 1);
    assert_int_equal(outs[0].id, 3);
    assert_int_equal(outs[1].id, 4);
    assert_int_equal(outs[2].id, -7);
    assert_spec(spec_of(g, outs[0]), pf_spec_scalar(PF_F32));
    assert_spec(spec_of(g, outs[1]), pf_spec_2d(PF_F32, 4, 5));
  }
  /* prog may be NULL. */
  r = prog1(g, NULL, "identity", NULL, s2, 1, &outs[1], NULL, NULL);
  assert_int_equal(r.id, 5);
  assert_int_equal(pf_graph_num_programs(g), 3);
  OK(pf_graph_output(g, "loss", (pf_value_t){3}));
  OK(pf_graph_output(g, "r", r));
  OK(pf_graph_output(g, "x_again", x)); /* an input may be an output */
  assert_int_equal(pf_graph_num_outputs(g), 3);
  /* Value specs, and the ids that name no value. */
  assert_spec(spec_of(g, x), pf_spec_2d(PF_F32, 4, 5));
  assert_spec(spec_of(g, lab), pf_spec_1d(PF_I32, 4));
  assert_int_equal(pf_graph_value_spec(g, PF_NO_VALUE, &sp), PF_EINVAL);
  assert_int_equal(pf_graph_value_spec(g, (pf_value_t){6}, &sp), PF_EINVAL);
  assert_int_equal(pf_graph_value_spec(g, (pf_value_t){INT32_MAX}, &sp), PF_EINVAL);
  assert_int_equal(pf_graph_value_spec(NULL, x, &sp), PF_EINVAL);
  assert_int_equal(pf_graph_value_spec(g, x, NULL), PF_EINVAL);
  assert_int_equal(pf_graph_num_programs(NULL), 0);
  OK(pf_graph_validate(g));
  pf_graph_destroy(g);
  pf_graph_destroy(NULL);
}

/* ---- names -------------------------------------------------------------------- */

static void test_auto_names(void **state) {
  pf_graph *g = new_graph();
  pf_slice_t s = new_slice(g, 1);
  pf_value_t x = new_input(g, "x", pf_spec_1d(PF_F32, 4), s, pf_replicated());
  pf_value_t y = new_input(g, "y", pf_spec_1d(PF_F32, 5), s, pf_replicated());
  pf_value_t a, b, out;
  (void)state;
  a = prog1(g, "first", "identity", NULL, s, 1, &x, NULL, NULL); /* program 0 */
  b = prog1(g, NULL, "relu", NULL, s, 1, &a, NULL, NULL);        /* "relu_1" */
  /* The automatic name is taken: an explicit program cannot reuse it. */
  {
    pf_program_desc d = {.name = "relu_1", .kernel = "identity", .slice = s,
                         .n_in = 1, .in = &b};
    FAILS(PF_EEXIST, pf_graph_program(g, &d, &out, NULL), "relu_1");
  }
  /* The failed program took no id: the next automatic name is _2. */
  prog1(g, NULL, "identity", NULL, s, 1, &b, NULL, NULL); /* "identity_2" */
  {
    pf_program_desc d = {.name = "identity_2", .kernel = "relu", .slice = s,
                         .n_in = 1, .in = &b};
    FAILS(PF_EEXIST, pf_graph_program(g, &d, &out, NULL), "identity_2");
  }
  /* A builder error on an unnamed program names it by its automatic name. */
  {
    pf_value_t in[2] = {x, y};
    pf_program_desc d = {.kernel = "add", .slice = s, .n_in = 2, .in = in};
    FAILS(PF_ESHAPE, pf_graph_program(g, &d, &out, NULL), "add_3", "f32[4]",
          "f32[5]");
  }
  /* Explicit names are kept as given. */
  prog1(g, "relu_2", "relu", NULL, s, 1, &b, NULL, NULL);
  assert_int_equal(pf_graph_num_programs(g), 4);
  OK(pf_graph_validate(g));
  pf_graph_destroy(g);
}

/* ---- kernels ------------------------------------------------------------------- */

static int triple_shape(const pf_attrs *attrs, int n_in, const pf_spec *in,
                        int n_out, pf_spec *out, pf_diag *diag) {
  (void)attrs;
  (void)n_in;
  (void)diag;
  assert_int_equal(n_out, 3);
  out[0] = in[0];
  out[1] = pf_spec_scalar(PF_I64);
  out[2] = pf_spec_1d(in[0].dtype, pf_spec_numel(&in[0]));
  return 0;
}

static int triple_compute(const pf_kernel_call *call) {
  size_t n = pf_spec_nbytes(&call->in[0].spec);
  memcpy(call->out[0].data, call->in[0].data, n);
  *(int64_t *)call->out[1].data = pf_spec_numel(&call->in[0].spec);
  memcpy(call->out[2].data, call->in[0].data, n);
  return 0;
}

static void test_kernel_outputs(void **state) {
  static const char *builtins[] = {"fill", "iota", "identity", "add", "sub",
                                   "mul", "scale", "relu", "relu_grad",
                                   "matmul", "bias_add", "reduce_sum",
                                   "softmax_xent", "argmax", "sgd"};
  pf_kernel_def def = {.name = "test.triple", .kind = PF_DEVICE_CPU, .n_in = 1,
                       .n_out = 3, .shape = triple_shape,
                       .compute = triple_compute};
  (void)state;
  for (size_t i = 0; i < sizeof builtins / sizeof *builtins; i++) {
    int n = pf_kernel_outputs(ctx, builtins[i], PF_DEVICE_CPU);
    if (n < 1) fail_msg("pf_kernel_outputs(%s) = %d", builtins[i], n);
    assert_int_equal(n, strcmp(builtins[i], "softmax_xent") == 0 ? 2 : 1);
    /* No GPU kernels are registered. */
    assert_int_equal(pf_kernel_outputs(ctx, builtins[i], PF_DEVICE_GPU),
                     PF_ENOKERNEL);
  }
  assert_int_equal(pf_kernel_outputs(ctx, "no_such_kernel", PF_DEVICE_CPU),
                   PF_ENOKERNEL);
  assert_int_equal(pf_kernel_outputs(ctx, "", PF_DEVICE_CPU), PF_ENOKERNEL);
  assert_int_equal(pf_kernel_outputs(ctx, "ADD", PF_DEVICE_CPU), PF_ENOKERNEL);
  assert_int_equal(pf_kernel_outputs(NULL, "add", PF_DEVICE_CPU), PF_EINVAL);

  /* A kernel of three outputs: the builder writes three value ids. */
  OK(pf_kernel_register(ctx, &def));
  FAILS(PF_EEXIST, pf_kernel_register(ctx, &def), "test.triple");
  assert_int_equal(pf_kernel_outputs(ctx, "test.triple", PF_DEVICE_CPU), 3);
  {
    pf_graph *g = new_graph();
    pf_slice_t s = new_slice(g, 2);
    pf_value_t x = new_input(g, "x", pf_spec_2d(PF_F64, 2, 3), s, pf_split(0));
    pf_value_t outs[4] = {{-9}, {-9}, {-9}, {-9}};
    pf_program_desc d = {.name = "t", .kernel = "test.triple", .slice = s,
                         .n_in = 1, .in = &x,
                         .out_shardings = (pf_sharding[]){pf_split(0),
                                                          pf_replicated(),
                                                          pf_split(0)}};
    pf_tensor *xt, *got[3];
    const char *names[3] = {"a", "n", "flat"};
    OK(pf_graph_program(g, &d, outs, NULL));
    assert_int_equal(outs[0].id, 1);
    assert_int_equal(outs[1].id, 2);
    assert_int_equal(outs[2].id, 3);
    assert_int_equal(outs[3].id, -9);
    /* Shard [1,3] split back to [2,3]; scalar; shard [3] split to [6]. */
    assert_spec(spec_of(g, outs[0]), pf_spec_2d(PF_F64, 2, 3));
    assert_spec(spec_of(g, outs[1]), pf_spec_scalar(PF_I64));
    assert_spec(spec_of(g, outs[2]), pf_spec_1d(PF_F64, 6));
    for (int i = 0; i < 3; i++) OK(pf_graph_output(g, names[i], outs[i]));
    xt = ramp_tensor(pf_spec_2d(PF_F64, 2, 3), 1.0, 0.5);
    run_graph(g, 1, &(pf_feed){.name = "x", .tensor = xt}, 3, names, got);
    assert_memory_equal(pf_tensor_cdata(got[0]), pf_tensor_cdata(xt), 6 * sizeof(double));
    assert_int_equal(*(const int64_t *)pf_tensor_cdata(got[1]), 3); /* shard numel */
    assert_memory_equal(pf_tensor_cdata(got[2]), pf_tensor_cdata(xt), 6 * sizeof(double));
    for (int i = 0; i < 3; i++) pf_tensor_destroy(got[i]);
    pf_tensor_destroy(xt);
    pf_graph_destroy(g);
  }
}

/* ---- shardings and derived specs --------------------------------------------- */

static pf_sharding sharding_of(const pf_graph *g, pf_value_t v) {
  assert_true(v.id >= 0 && (size_t)v.id < g->n_values);
  return g->values[v.id].sharding;
}

static void assert_sharding(pf_sharding got, pf_sharding want) {
  assert_int_equal(got.kind, want.kind);
  if (want.kind == PF_SHARD_SPLIT) assert_int_equal(got.axis, want.axis);
}

/* How the producer of v consumed its first input. */
static pf_sharding consumed_by_producer(const pf_graph *g, pf_value_t v) {
  return g->programs[g->values[v.id].producer].in_shardings[0];
}

static void test_default_input_sharding(void **state) {
  pf_graph *g = new_graph();
  pf_slice_t a = new_slice(g, 2), b = new_slice(g, 2), c = new_slice(g, NDEV),
             one = new_slice(g, 1);
  pf_value_t xs = new_input(g, "xs", pf_spec_2d(PF_F32, 8, 6), a, pf_split(0));
  pf_value_t xc = new_input(g, "xc", pf_spec_2d(PF_F32, 8, 6), a, pf_split(1));
  pf_value_t xr = new_input(g, "xr", pf_spec_2d(PF_F32, 8, 6), a, pf_replicated());
  pf_value_t v;
  (void)state;
  /* Same slice, and another slice of the same size: the value's own
   * sharding, which identity keeps. */
  v = prog1(g, NULL, "identity", NULL, a, 1, &xs, NULL, NULL);
  assert_sharding(consumed_by_producer(g, v), pf_split(0));
  assert_sharding(sharding_of(g, v), pf_split(0));
  assert_spec(spec_of(g, v), pf_spec_2d(PF_F32, 8, 6));
  v = prog1(g, NULL, "identity", NULL, b, 1, &xs, NULL, NULL);
  assert_sharding(consumed_by_producer(g, v), pf_split(0));
  v = prog1(g, NULL, "identity", NULL, b, 1, &xc, NULL, NULL);
  assert_sharding(consumed_by_producer(g, v), pf_split(1));
  v = prog1(g, NULL, "identity", NULL, b, 1, &xr, NULL, NULL);
  assert_sharding(consumed_by_producer(g, v), pf_replicated());
  /* Another size: replicated, whatever the value's sharding. */
  v = prog1(g, NULL, "identity", NULL, c, 1, &xs, NULL, NULL);
  assert_sharding(consumed_by_producer(g, v), pf_replicated());
  assert_spec(spec_of(g, v), pf_spec_2d(PF_F32, 8, 6));
  v = prog1(g, NULL, "identity", NULL, one, 1, &xc, NULL, NULL);
  assert_sharding(consumed_by_producer(g, v), pf_replicated());
  /* Explicit shardings override the default. */
  v = prog1(g, NULL, "identity", NULL, c, 1, &xs, (pf_sharding[]){pf_split(0)},
            NULL);
  assert_sharding(consumed_by_producer(g, v), pf_split(0));
  assert_spec(spec_of(g, v), pf_spec_2d(PF_F32, 8, 6));
  v = prog1(g, NULL, "identity", NULL, b, 1, &xs,
            (pf_sharding[]){pf_replicated()}, NULL);
  assert_sharding(consumed_by_producer(g, v), pf_replicated());
  assert_sharding(sharding_of(g, v), pf_replicated());
  /* A requested output layout the default input layout cannot give picks
   * another input layout: whole blocks in, whole value out. */
  v = prog1(g, NULL, "identity", NULL, a, 1, &xs, NULL,
            (pf_sharding[]){pf_replicated()});
  assert_sharding(consumed_by_producer(g, v), pf_replicated());
  {
    /* 6 columns do not split over 4 devices. */
    pf_value_t out;
    pf_program_desc d = {.name = "bad", .kernel = "identity", .slice = c,
                         .n_in = 1, .in = &xs,
                         .in_shardings = (pf_sharding[]){pf_split(1)}};
    FAILS(PF_ESPLIT, pf_graph_program(g, &d, &out, NULL), "bad", "6", "4");
    /* Fixed inputs leave the rule no choice: a contradicting output layout
     * is refused, naming both. */
    d.name = "contradiction";
    d.in_shardings = (pf_sharding[]){pf_split(0)};
    d.out_shardings = (pf_sharding[]){pf_replicated()};
    FAILS(PF_ESHARDING, pf_graph_program(g, &d, &out, NULL), "contradiction",
          "identity", "replicated", "split(0)");
  }
  OK(pf_graph_validate(g));
  pf_graph_destroy(g);
}

/* Without out_shardings an output is what the kernel's sharding rule says. */
static void test_default_output_sharding(void **state) {
  pf_graph *g = new_graph();
  pf_slice_t a = new_slice(g, 2), c = new_slice(g, NDEV);
  pf_value_t xs = new_input(g, "xs", pf_spec_2d(PF_F32, 8, 6), a, pf_split(0));
  pf_value_t xc = new_input(g, "xc", pf_spec_2d(PF_F32, 8, 6), a, pf_split(1));
  pf_value_t xr = new_input(g, "xr", pf_spec_2d(PF_F32, 8, 6), a, pf_replicated());
  pf_value_t v;
  pf_attrs *ax;
  (void)state;
  v = prog1(g, NULL, "identity", NULL, a, 1, &xs, NULL, NULL);
  assert_spec(spec_of(g, v), pf_spec_2d(PF_F32, 8, 6));
  assert_sharding(sharding_of(g, v), pf_split(0));
  v = prog1(g, NULL, "relu", NULL, a, 1, &xc, NULL, NULL);
  assert_spec(spec_of(g, v), pf_spec_2d(PF_F32, 8, 6));
  assert_sharding(sharding_of(g, v), pf_split(1));
  /* Consumed replicated (another slice size): replicated out. */
  v = prog1(g, NULL, "identity", NULL, c, 1, &xs, NULL, NULL);
  assert_spec(spec_of(g, v), pf_spec_2d(PF_F32, 8, 6));
  assert_sharding(sharding_of(g, v), pf_replicated());
  v = prog1(g, NULL, "identity", NULL, a, 1, &xr, NULL, NULL);
  assert_sharding(sharding_of(g, v), pf_replicated());
  /* Both inputs consumed split alike. */
  v = prog1(g, NULL, "add", NULL, a, 2, (pf_value_t[]){xr, xs},
            (pf_sharding[]){pf_split(0), pf_split(0)}, NULL);
  assert_sharding(sharding_of(g, v), pf_split(0));
  assert_spec(spec_of(g, v), pf_spec_2d(PF_F32, 8, 6));
  v = prog1(g, NULL, "add", NULL, a, 2, (pf_value_t[]){xr, xc},
            (pf_sharding[]){pf_replicated(), pf_replicated()}, NULL);
  assert_sharding(sharding_of(g, v), pf_replicated());
  /* By default a whole input is cut like the split one (no communication)
   * rather than the split one gathered. */
  v = prog1(g, "mixed", "add", NULL, a, 2, (pf_value_t[]){xr, xs}, NULL, NULL);
  assert_sharding(sharding_of(g, v), pf_split(0));
  assert_sharding(g->programs[g->values[v.id].producer].in_shardings[0], pf_split(0));
  /* Row sums of row blocks: split by rows, [8]. */
  OK(pf_attrs_create(&ax));
  OK(pf_attrs_set_int(ax, "axis", 1));
  v = prog1(g, "rowsum", "reduce_sum", ax, a, 1, &xs, NULL, NULL);
  assert_spec(spec_of(g, v), pf_spec_1d(PF_F32, 8));
  assert_sharding(sharding_of(g, v), pf_split(0));
  /* Row sums of column blocks: partial sums of the whole [8]. */
  v = prog1(g, "rowsum_c", "reduce_sum", ax, a, 1, &xc, NULL, NULL);
  assert_spec(spec_of(g, v), pf_spec_1d(PF_F32, 8));
  assert_sharding(sharding_of(g, v), pf_partial());
  pf_attrs_destroy(ax);
  OK(pf_graph_validate(g));
  pf_graph_destroy(g);
}

/* Programs added one after another with the same attributes share the
 * graph's one copy; -0.0 is not 0.0 there, and what the caller does with
 * its own set afterwards changes nothing in the graph. */
static void test_attrs_interned(void **state) {
  pf_graph *g = new_graph();
  pf_slice_t a = new_slice(g, 1);
  pf_value_t x = new_input(g, "x", pf_spec_1d(PF_F32, 4), a, pf_replicated());
  pf_value_t v1, v2, v3;
  pf_attrs *at;
  const pf_attrs *g1, *g2, *g3;
  (void)state;
  OK(pf_attrs_create(&at));
  OK(pf_attrs_set_float(at, "alpha", 0.0));
  v1 = prog1(g, "s1", "scale", at, a, 1, &x, NULL, NULL);
  v2 = prog1(g, "s2", "scale", at, a, 1, &v1, NULL, NULL);
  OK(pf_attrs_set_float(at, "alpha", -0.0));
  v3 = prog1(g, "s3", "scale", at, a, 1, &v2, NULL, NULL);
  OK(pf_attrs_set_float(at, "alpha", 5.0));
  g1 = g->programs[g->values[v1.id].producer].attrs;
  g2 = g->programs[g->values[v2.id].producer].attrs;
  g3 = g->programs[g->values[v3.id].producer].attrs;
  assert_ptr_equal(g1, g2);
  assert_ptr_not_equal(g2, g3);
  assert_ptr_not_equal(g1, at);
  assert_false(signbit(pf_attrs_get_float(g2, "alpha", 1)));
  assert_true(signbit(pf_attrs_get_float(g3, "alpha", 1)));
  assert_true(pf_attrs_get_float(g3, "alpha", 1) == 0.0);
  pf_attrs_destroy(at);
  OK(pf_graph_validate(g));
  pf_graph_destroy(g);
}

static void test_output_global_spec(void **state) {
  pf_graph *g = new_graph();
  pf_slice_t four = new_slice(g, NDEV), two = new_slice(g, 2);
  pf_value_t x = new_input(g, "x", pf_spec_2d(PF_F32, 8, 3), four, pf_split(0));
  pf_value_t v;
  pf_sharding s0 = pf_split(0), s1 = pf_split(1);
  (void)state;
  /* Shard [2,3]. */
  v = prog1(g, NULL, "identity", NULL, four, 1, &x, NULL, &s0);
  assert_spec(spec_of(g, v), pf_spec_2d(PF_F32, 8, 3));
  /* A fill of shard [2,3] split by columns: [2,12]. */
  {
    pf_attrs *at;
    OK(pf_attrs_create(&at));
    OK(pf_attrs_set_ints(at, "shape", (int64_t[]){2, 3}, 2));
    v = prog1(g, NULL, "fill", at, four, 0, NULL, NULL, &s1);
    assert_spec(spec_of(g, v), pf_spec_2d(PF_F32, 2, 12));
    v = prog1(g, NULL, "fill", at, two, 0, NULL, NULL, &s0);
    assert_spec(spec_of(g, v), pf_spec_2d(PF_F32, 4, 3));
    pf_attrs_destroy(at);
  }
  /* A reduction: shard [2] of the row sums, split -> [8]. */
  {
    pf_attrs *ax;
    OK(pf_attrs_create(&ax));
    OK(pf_attrs_set_int(ax, "axis", 1));
    v = prog1(g, NULL, "reduce_sum", ax, four, 1, &x, NULL, &s0);
    pf_attrs_destroy(ax);
    assert_spec(spec_of(g, v), pf_spec_1d(PF_F32, 8));
  }
  /* Split axis past the shard's rank. */
  {
    pf_value_t out;
    pf_attrs *at;
    pf_program_desc d = {.name = "bad_axis", .kernel = "fill", .slice = four,
                         .out_shardings = (pf_sharding[]){pf_split(2)}};
    OK(pf_attrs_create(&at));
    OK(pf_attrs_set_ints(at, "shape", (int64_t[]){2, 3}, 2));
    d.attrs = at;
    FAILS(PF_ESPLIT, pf_graph_program(g, &d, &out, NULL), "bad_axis", "2");
    pf_attrs_destroy(at);
  }
  OK(pf_graph_validate(g));
  pf_graph_destroy(g);
}

/* The split matmul of examples/hello_graph.c, checked against a reference:
 * the derived global spec must describe the data the runtime gathers. */
static void test_split_matmul_runs(void **state) {
  pf_graph *g = new_graph();
  pf_slice_t two = new_slice(g, 2), one = new_slice(g, 1);
  pf_spec xs = pf_spec_2d(PF_F64, 6, 3), ws = pf_spec_2d(PF_F64, 3, 5);
  pf_value_t x = new_input(g, "x", xs, two, pf_split(0));
  pf_value_t w = new_input(g, "w", ws, two, pf_replicated());
  pf_sharding rows = pf_split(0);
  pf_value_t xw, y;
  pf_attrs *ax;
  pf_tensor *xt, *wt, *got[2];
  const char *names[2] = {"xw", "y"};
  double ref[6][5], colsum[5] = {0};
  (void)state;
  xw = prog1(g, "mm", "matmul", NULL, two, 2, (pf_value_t[]){x, w}, NULL, &rows);
  assert_spec(spec_of(g, xw), pf_spec_2d(PF_F64, 6, 5));
  OK(pf_attrs_create(&ax));
  OK(pf_attrs_set_int(ax, "axis", 0));
  y = prog1(g, "colsum", "reduce_sum", ax, one, 1, &xw, NULL, NULL);
  /* Programs copy their attrs: changing the caller's map now changes
   * nothing. */
  OK(pf_attrs_set_int(ax, "axis", 1));
  pf_attrs_destroy(ax);
  assert_spec(spec_of(g, y), pf_spec_1d(PF_F64, 5));
  OK(pf_graph_output(g, "xw", xw));
  OK(pf_graph_output(g, "y", y));
  xt = ramp_tensor(xs, 0.5, -2.0);
  wt = ramp_tensor(ws, -0.25, 1.0);
  run_graph(g, 2,
            (pf_feed[]){{.name = "x", .tensor = xt}, {.name = "w", .tensor = wt}},
            2, names, got);
  for (int i = 0; i < 6; i++)
    for (int j = 0; j < 5; j++) {
      const double *X = pf_tensor_cdata(xt), *W = pf_tensor_cdata(wt);
      ref[i][j] = 0;
      for (int k = 0; k < 3; k++) ref[i][j] += X[i * 3 + k] * W[k * 5 + j];
      colsum[j] += ref[i][j];
    }
  assert_spec(*pf_tensor_spec(got[0]), pf_spec_2d(PF_F64, 6, 5));
  assert_spec(*pf_tensor_spec(got[1]), pf_spec_1d(PF_F64, 5));
  for (int i = 0; i < 30; i++)
    assert_true(fabs(((const double *)pf_tensor_cdata(got[0]))[i] -
                     ref[i / 5][i % 5]) < 1e-12);
  for (int j = 0; j < 5; j++)
    assert_true(fabs(((const double *)pf_tensor_cdata(got[1]))[j] - colsum[j]) <
                1e-12);
  pf_tensor_destroy(got[0]);
  pf_tensor_destroy(got[1]);
  pf_tensor_destroy(xt);
  pf_tensor_destroy(wt);
  pf_graph_destroy(g);
}

/* ---- pinning ------------------------------------------------------------------ */

static void test_slice_pin(void **state) {
  pf_graph *g = new_graph();
  pf_slice_t s = new_slice(g, 2), t = new_slice(g, NDEV);
  pf_value_t x = new_input(g, "x", pf_spec_1d(PF_F32, 8), s, pf_split(0));
  pf_value_t y = new_input(g, "y", pf_spec_1d(PF_F32, 8), s, pf_split(0));
  pf_value_t z;
  pf_tensor *xt, *yt, *got;
  const char *names[1] = {"z"};
  (void)state;
  OK(pf_graph_slice_pin(g, s, (int[]){3, 1}));
  assert_non_null(g->slices[s.id].pinned);
  assert_int_equal(g->slices[s.id].pinned[0], 3);
  assert_int_equal(g->slices[s.id].pinned[1], 1);
  /* Refusals leave the earlier pin in place. */
  FAILS(PF_EINVAL, pf_graph_slice_pin(g, s, (int[]){2, 2}), "2");
  FAILS(PF_ESLICE, pf_graph_slice_pin(g, s, (int[]){0, NDEV}), "4");
  FAILS(PF_ESLICE, pf_graph_slice_pin(g, s, (int[]){-1, 0}), "-1");
  FAILS(PF_EINVAL, pf_graph_slice_pin(g, (pf_slice_t){7}, (int[]){0, 1}), "7");
  FAILS(PF_EINVAL, pf_graph_slice_pin(g, (pf_slice_t){PF_NO_ID}, (int[]){0, 1}), "-1");
  assert_int_equal(pf_graph_slice_pin(g, s, NULL), PF_EINVAL);
  assert_int_equal(pf_graph_slice_pin(NULL, s, (int[]){0, 1}), PF_EINVAL);
  assert_int_equal(g->slices[s.id].pinned[0], 3);
  assert_int_equal(g->slices[s.id].pinned[1], 1);
  /* A slice may be re-pinned; all four devices in any order. */
  OK(pf_graph_slice_pin(g, t, (int[]){2, 0, 3, 1}));
  OK(pf_graph_slice_pin(g, t, (int[]){1, 2, 3, 0}));
  assert_int_equal(g->slices[t.id].pinned[0], 1);
  assert_int_equal(g->slices[t.id].pinned[3], 0);
  /* The pinned graph runs, and moves data between its two slices. */
  {
    pf_attrs *two;
    OK(pf_attrs_create(&two));
    OK(pf_attrs_set_float(two, "alpha", 2.0));
    z = prog1(g, "sum", "add", NULL, s, 2, (pf_value_t[]){x, y}, NULL,
              (pf_sharding[]){pf_split(0)});
    z = prog1(g, "wide", "scale", two, t, 1, &z, (pf_sharding[]){pf_split(0)},
              (pf_sharding[]){pf_split(0)});
    pf_attrs_destroy(two);
  }
  assert_spec(spec_of(g, z), pf_spec_1d(PF_F32, 8));
  OK(pf_graph_output(g, "z", z));
  xt = ramp_tensor(pf_spec_1d(PF_F32, 8), 1.0, 0.0);
  yt = ramp_tensor(pf_spec_1d(PF_F32, 8), -3.0, 100.0);
  run_graph(g, 2,
            (pf_feed[]){{.name = "x", .tensor = xt}, {.name = "y", .tensor = yt}},
            1, names, &got);
  for (int i = 0; i < 8; i++)
    assert_true(((const float *)pf_tensor_cdata(got))[i] ==
                2.0f * ((float)i + (100.0f - 3.0f * (float)i)));
  pf_tensor_destroy(got);
  pf_tensor_destroy(xt);
  pf_tensor_destroy(yt);
  pf_graph_destroy(g);
}

/* ---- the wire format ----------------------------------------------------------- */

/* A graph with something of everything: three slices (one pinned), split
 * and replicated inputs, explicit in/out shardings, attrs of every type, a
 * two-output kernel, and an input that is also an output. */
static pf_graph *rich_graph(void) {
  pf_graph *g = new_graph();
  pf_slice_t s2 = new_slice(g, 2), s1 = new_slice(g, 1), s4 = new_slice(g, NDEV);
  pf_value_t x, w, b, lab, mm, ba, sc, two[2], rs;
  pf_attrs *at;
  OK(pf_graph_slice_pin(g, s2, (int[]){2, 0}));
  x = new_input(g, "x", pf_spec_2d(PF_F32, 8, 3), s2, pf_split(0));
  w = new_input(g, "w", pf_spec_2d(PF_F32, 3, 4), s2, pf_replicated());
  b = new_input(g, "b", pf_spec_1d(PF_F32, 4), s4, pf_replicated());
  lab = new_input(g, "labels", pf_spec_1d(PF_I32, 8), s1, pf_replicated());
  mm = prog1(g, "mm", "matmul", NULL, s2, 2, (pf_value_t[]){x, w}, NULL,
             (pf_sharding[]){pf_split(0)});
  ba = prog1(g, NULL, "bias_add", NULL, s4, 2, (pf_value_t[]){mm, b},
             (pf_sharding[]){pf_split(0), pf_replicated()},
             (pf_sharding[]){pf_split(0)});
  OK(pf_attrs_create(&at));
  OK(pf_attrs_set_float(at, "alpha", 0.5));
  OK(pf_attrs_set_string(at, "note", "kept through the wire"));
  OK(pf_attrs_set_ints(at, "list", (int64_t[]){3, -1, INT64_MAX}, 3));
  OK(pf_attrs_set_int(at, "k", -42));
  sc = prog1(g, "scale", "scale", at, s4, 1, &ba, NULL, (pf_sharding[]){pf_split(0)});
  pf_attrs_destroy(at);
  {
    pf_program_desc d = {.name = "xent", .kernel = "softmax_xent", .slice = s1,
                         .n_in = 2, .in = (pf_value_t[]){sc, lab}};
    OK(pf_graph_program(g, &d, two, NULL));
  }
  OK(pf_attrs_create(&at));
  OK(pf_attrs_set_int(at, "axis", 1));
  OK(pf_attrs_set_int(at, "keepdims", 1));
  rs = prog1(g, "rowsum", "reduce_sum", at, s1, 1, &two[1], NULL, NULL);
  pf_attrs_destroy(at);
  OK(pf_graph_output(g, "loss", two[0]));
  OK(pf_graph_output(g, "grad", two[1]));
  OK(pf_graph_output(g, "rowsum", rs));
  OK(pf_graph_output(g, "mm", mm));
  OK(pf_graph_output(g, "labels_out", lab));
  return g;
}

static void run_rich(pf_graph *g, pf_tensor **outs) {
  static const char *names[5] = {"loss", "grad", "rowsum", "mm", "labels_out"};
  pf_tensor *x = ramp_tensor(pf_spec_2d(PF_F32, 8, 3), 0.125, -1.0);
  pf_tensor *w = ramp_tensor(pf_spec_2d(PF_F32, 3, 4), -0.25, 1.5);
  pf_tensor *b = ramp_tensor(pf_spec_1d(PF_F32, 4), 1.0, -2.0);
  pf_tensor *lab = NULL;
  int32_t labels[8] = {0, 3, 1, 2, 2, 0, 3, 1};
  pf_spec ls = pf_spec_1d(PF_I32, 8);
  OK(pf_tensor_from(&ls, labels, sizeof labels, &lab));
  run_graph(g, 4,
            (pf_feed[]){{.name = "labels", .tensor = lab},
                        {.name = "x", .tensor = x},
                        {.name = "b", .tensor = b},
                        {.name = "w", .tensor = w}},
            5, names, outs);
  /* mm against a reference, so the comparison below is not between two
   * equally wrong answers. */
  {
    const float *X = pf_tensor_cdata(x), *W = pf_tensor_cdata(w),
                *M = pf_tensor_cdata(outs[3]);
    assert_spec(*pf_tensor_spec(outs[3]), pf_spec_2d(PF_F32, 8, 4));
    for (int i = 0; i < 8; i++)
      for (int j = 0; j < 4; j++) {
        double r = 0;
        for (int k = 0; k < 3; k++) r += (double)X[i * 3 + k] * W[k * 4 + j];
        assert_true(fabs(M[i * 4 + j] - r) < 1e-5);
      }
    assert_memory_equal(pf_tensor_cdata(outs[4]), labels, sizeof labels);
  }
  pf_tensor_destroy(x);
  pf_tensor_destroy(w);
  pf_tensor_destroy(b);
  pf_tensor_destroy(lab);
}

static void test_encode_decode_roundtrip(void **state) {
  pf_graph *g = rich_graph(), *h = NULL;
  uint8_t *buf = NULL, *buf2 = NULL;
  size_t len = 0, len2 = 0;
  pf_tensor *a[5], *b[5];
  (void)state;
  OK(pf_graph_validate(g));
  encode(g, &buf, &len);
  assert_true(len > 0);
  OK(pf_graph_decode(ctx, buf, len, &h));
  assert_non_null(h);
  OK(pf_graph_validate(h));
  assert_int_equal(pf_graph_num_programs(h), pf_graph_num_programs(g));
  assert_int_equal(pf_graph_num_inputs(h), pf_graph_num_inputs(g));
  assert_int_equal(pf_graph_num_outputs(h), pf_graph_num_outputs(g));
  for (pf_value_t v = {0};; v.id++) {
    pf_spec sg, sh;
    int rg = pf_graph_value_spec(g, v, &sg), rh = pf_graph_value_spec(h, v, &sh);
    assert_int_equal(rg, rh);
    if (rg != 0) break;
    assert_spec(sh, sg);
  }
  /* Pins and attrs survive. */
  assert_non_null(h->slices[0].pinned);
  assert_int_equal(h->slices[0].pinned[0], 2);
  assert_int_equal(h->slices[0].pinned[1], 0);
  assert_null(h->slices[1].pinned);
  assert_string_equal(pf_attrs_get_string(h->programs[2].attrs, "note", ""),
                      "kept through the wire");
  assert_true(pf_attrs_equal(h->programs[2].attrs, g->programs[2].attrs));
  assert_string_equal(h->programs[1].name, "bias_add_1");
  /* Byte-identical re-encoding, from the decoded graph and again from the
   * original. */
  encode(h, &buf2, &len2);
  assert_int_equal(len2, len);
  assert_memory_equal(buf2, buf, len);
  free(buf2);
  encode(g, &buf2, &len2);
  assert_int_equal(len2, len);
  assert_memory_equal(buf2, buf, len);
  free(buf2);
  /* Both run, with the same results. */
  run_rich(g, a);
  run_rich(h, b);
  for (int i = 0; i < 5; i++) {
    assert_spec(*pf_tensor_spec(b[i]), *pf_tensor_spec(a[i]));
    assert_memory_equal(pf_tensor_cdata(b[i]), pf_tensor_cdata(a[i]),
                        pf_tensor_nbytes(a[i]));
    pf_tensor_destroy(a[i]);
    pf_tensor_destroy(b[i]);
  }
  /* Encoding is a pure function of the graph: an empty graph round-trips
   * too. */
  pf_graph_destroy(h);
  {
    pf_graph *e = new_graph();
    uint8_t *eb = NULL;
    size_t el = 99;
    encode(e, &eb, &el);
    OK(pf_graph_decode(ctx, eb, el, &h));
    assert_int_equal(pf_graph_num_programs(h), 0);
    OK(pf_graph_validate(h));
    free(eb);
    pf_graph_destroy(h);
    pf_graph_destroy(e);
  }
  assert_int_equal(pf_graph_encode(NULL, &buf2, &len2), PF_EINVAL);
  assert_int_equal(pf_graph_encode(g, NULL, &len2), PF_EINVAL);
  assert_int_equal(pf_graph_decode(ctx, NULL, 5, &h), PF_EINVAL);
  assert_int_equal(pf_graph_decode(NULL, buf, len, &h), PF_EINVAL);
  free(buf);
  pf_graph_destroy(g);
}

static void test_decode_untrusted(void **state) {
  pf_graph *g = rich_graph(), *h = (pf_graph *)&h;
  uint8_t *buf = NULL, *copy;
  size_t len = 0;
  static const uint8_t junk[] = {0xff, 0xff, 0xff, 0xff, 0x0f};
  (void)state;
  encode(g, &buf, &len);
  FAILS(PF_EDECODE, pf_graph_decode(ctx, junk, sizeof junk, &h), "");
  assert_null(h);
  assert_true(strlen(pf_last_error(ctx)) > 0);
  /* Every truncation either fails cleanly or gives a graph (a cut between
   * two fields is a valid, smaller message); nothing crashes or leaks. */
  for (size_t n = 0; n < len; n++) {
    int rc = pf_graph_decode(ctx, buf, n, &h);
    if (rc != 0 && rc != PF_EDECODE)
      fail_msg("truncated to %zu bytes: %s (%s)", n, pf_errname(rc),
               pf_last_error(ctx));
    if (rc == 0) {
      rc = pf_graph_validate(h);
      pf_graph_destroy(h);
    } else {
      assert_null(h);
    }
  }
  /* Single flipped bytes: the same. */
  copy = malloc(len);
  assert_non_null(copy);
  for (size_t i = 0; i < len; i++) {
    int rc;
    memcpy(copy, buf, len);
    copy[i] ^= 0x5a;
    rc = pf_graph_decode(ctx, copy, len, &h);
    if (rc != 0 && rc != PF_EDECODE)
      fail_msg("byte %zu flipped: %s (%s)", i, pf_errname(rc), pf_last_error(ctx));
    if (rc == 0) {
      /* What decodes must be safe to validate, and, if valid, to compile. */
      if (pf_graph_validate(h) == 0) {
        pf_executable *exe = NULL;
        if (pf_compile(h, &exe) == 0) pf_executable_destroy(exe);
      }
      pf_graph_destroy(h);
    }
  }
  free(copy);
  /* The context is still fine: the original decodes. */
  OK(pf_graph_decode(ctx, buf, len, &h));
  OK(pf_graph_validate(h));
  pf_graph_destroy(h);
  free(buf);
  pf_graph_destroy(g);
}

/* ---- builder errors ------------------------------------------------------------ */

static void test_last_error(void **state) {
  pf_graph *g = new_graph();
  pf_slice_t s, bad = {PF_NO_ID};
  pf_value_t x, y, v;
  char longname[PF_NAME_MAX + 2];
  (void)state;
  FAILS(PF_ESLICE, pf_graph_slice(g, PF_DEVICE_CPU, NDEV + 1, &bad), "5", "4");
  assert_int_equal(bad.id, PF_NO_ID);
  FAILS(PF_ESLICE, pf_graph_slice(g, PF_DEVICE_GPU, 1, &bad), "gpu", "0");
  FAILS(PF_EINVAL, pf_graph_slice(g, PF_DEVICE_CPU, 0, &bad), "0");
  FAILS(PF_EINVAL, pf_graph_slice(g, PF_DEVICE_KIND_COUNT, 1, &bad), "kind");
  s = new_slice(g, 2);
  /* A success clears the message. */
  assert_string_equal(pf_last_error(ctx), "");
  x = new_input(g, "x", pf_spec_1d(PF_F32, 4), s, pf_split(0));
  FAILS(PF_EEXIST, pf_graph_input(g, "x", &(pf_spec){PF_F32, 1, {4}}, s,
                                  pf_replicated(), &v),
        "\"x\"");
  FAILS(PF_EINVAL, pf_graph_input(g, "z", &(pf_spec){PF_F32, 1, {4}}, (pf_slice_t){9},
                                  pf_replicated(), &v),
        "\"z\"", "9");
  FAILS(PF_EDTYPE, pf_graph_input(g, "z", &(pf_spec){PF_DTYPE_COUNT, 1, {4}}, s,
                                  pf_replicated(), &v),
        "\"z\"");
  FAILS(PF_ESHAPE, pf_graph_input(g, "z", &(pf_spec){PF_F32, 1, {-4}}, s,
                                  pf_replicated(), &v),
        "\"z\"");
  FAILS(PF_ERANGE, pf_graph_input(g, "z", &(pf_spec){PF_F64, 2, {1LL << 40, 1LL << 40}},
                                  s, pf_replicated(), &v),
        "\"z\"");
  FAILS(PF_ESPLIT, pf_graph_input(g, "z", &(pf_spec){PF_F32, 1, {5}}, s,
                                  pf_split(0), &v),
        "\"z\"", "5", "2");
  FAILS(PF_ESPLIT, pf_graph_input(g, "z", &(pf_spec){PF_F32, 1, {4}}, s,
                                  pf_split(1), &v),
        "\"z\"", "axis 1");
  FAILS(PF_ESPLIT, pf_graph_input(g, "z", &(pf_spec){PF_F32, 1, {4}}, s,
                                  pf_split(-1), &v),
        "\"z\"", "-1");
  FAILS(PF_ESPLIT, pf_graph_input(g, "z", &(pf_spec){PF_F32, 0, {0}}, s,
                                  pf_split(0), &v),
        "\"z\"");
  /* Names: 127 bytes pass, 128 do not. */
  memset(longname, 'q', sizeof longname);
  longname[PF_NAME_MAX + 1] = '\0';
  FAILS(PF_EINVAL, pf_graph_input(g, longname, &(pf_spec){PF_F32, 1, {4}}, s,
                                  pf_replicated(), &v),
        "127");
  FAILS(PF_EINVAL, pf_graph_input(g, "", &(pf_spec){PF_F32, 1, {4}}, s,
                                  pf_replicated(), &v),
        "name");
  FAILS(PF_EINVAL, pf_graph_input(g, NULL, &(pf_spec){PF_F32, 1, {4}}, s,
                                  pf_replicated(), &v),
        "name");
  longname[PF_NAME_MAX] = '\0';
  y = new_input(g, longname, pf_spec_1d(PF_F32, 4), s, pf_split(0));
  assert_string_equal(pf_last_error(ctx), "");
  /* Programs. */
  {
    pf_program_desc d = {.name = "p", .kernel = "add", .slice = s, .n_in = 2,
                         .in = (pf_value_t[]){x, {42}}};
    FAILS(PF_EINVAL, pf_graph_program(g, &d, &v, NULL), "\"p\"", "42");
    d.in = (pf_value_t[]){x, PF_NO_VALUE};
    FAILS(PF_EINVAL, pf_graph_program(g, &d, &v, NULL), "\"p\"", "-1");
    d.in = (pf_value_t[]){x, y};
    d.slice = (pf_slice_t){5};
    FAILS(PF_EINVAL, pf_graph_program(g, &d, &v, NULL), "\"p\"", "5");
    d.slice = s;
    d.kernel = NULL;
    FAILS(PF_EINVAL, pf_graph_program(g, &d, &v, NULL), "kernel");
    d.kernel = "add";
    d.name = "";
    FAILS(PF_EINVAL, pf_graph_program(g, &d, &v, NULL), "name");
    d.name = longname; /* 127 bytes: fine */
    OK(pf_graph_program(g, &d, &v, NULL));
  }
  /* Outputs. */
  FAILS(PF_EINVAL, pf_graph_output(g, "o", (pf_value_t){99}), "\"o\"", "99");
  FAILS(PF_EINVAL, pf_graph_output(g, "", v), "name");
  OK(pf_graph_output(g, "o", v));
  FAILS(PF_EEXIST, pf_graph_output(g, "o", x), "\"o\"");
  /* Rewiring. */
  FAILS(PF_EINVAL, pf_graph_set_input(g, (pf_program_t){3}, 0, x), "3");
  FAILS(PF_EINVAL, pf_graph_set_input(g, (pf_program_t){0}, 2, x), longname, "2");
  FAILS(PF_EINVAL, pf_graph_set_input(g, (pf_program_t){0}, 0, (pf_value_t){1000}), "1000");
  OK(pf_graph_set_input(g, (pf_program_t){0}, 1, x));
  assert_string_equal(pf_last_error(ctx), "");
  OK(pf_graph_validate(g));
  pf_graph_destroy(g);
}

/* A refused builder call changes nothing: the encoding is the same before
 * and after, and the next ids carry on. */
static void test_failed_builders_change_nothing(void **state) {
  pf_graph *g = new_graph();
  pf_slice_t s = new_slice(g, 2);
  pf_value_t x = new_input(g, "x", pf_spec_1d(PF_F32, 4), s, pf_replicated());
  pf_value_t y = new_input(g, "y", pf_spec_1d(PF_F64, 4), s, pf_replicated());
  pf_value_t a = prog1(g, "a", "relu", NULL, s, 1, &x, NULL, NULL), v;
  uint8_t *before, *after;
  size_t lb, la;
  (void)state;
  OK(pf_graph_output(g, "a", a));
  encode(g, &before, &lb);
  {
    pf_program_desc d = {.name = "b", .kernel = "add", .slice = s, .n_in = 2,
                         .in = (pf_value_t[]){x, y}};
    FAILS(PF_EDTYPE, pf_graph_program(g, &d, &v, NULL), "\"b\"", "f64[4]", "f32[4]");
    d.n_in = 1;
    FAILS(PF_EARITY, pf_graph_program(g, &d, &v, NULL), "\"b\"", "add");
    d.n_in = 2;
    d.kernel = "nope";
    FAILS(PF_ENOKERNEL, pf_graph_program(g, &d, &v, NULL), "\"b\"", "nope");
    d.kernel = "add";
    d.name = "a";
    FAILS(PF_EEXIST, pf_graph_program(g, &d, &v, NULL), "\"a\"");
    d.name = "b";
    d.in = (pf_value_t[]){x, x};
    d.out_shardings = (pf_sharding[]){pf_split(1)};
    FAILS(PF_ESHARDING, pf_graph_program(g, &d, &v, NULL), "\"b\"", "split(1)");
  }
  FAILS(PF_ESLICE, pf_graph_slice(g, PF_DEVICE_CPU, 64, &s), "64");
  FAILS(PF_EEXIST, pf_graph_input(g, "y", &(pf_spec){PF_F32, 1, {4}}, s,
                                  pf_replicated(), &v), "\"y\"");
  FAILS(PF_EEXIST, pf_graph_output(g, "a", x), "\"a\"");
  assert_int_equal(pf_graph_num_programs(g), 1);
  assert_int_equal(pf_graph_num_inputs(g), 2);
  assert_int_equal(pf_graph_num_outputs(g), 1);
  encode(g, &after, &la);
  assert_int_equal(la, lb);
  assert_memory_equal(after, before, lb);
  free(after);
  /* The next value id follows the last good one. */
  v = prog1(g, "b", "add", NULL, s, 2, (pf_value_t[]){x, a}, NULL, NULL);
  assert_int_equal(v.id, a.id + 1);
  assert_int_equal(pf_graph_value_spec(g, (pf_value_t){v.id + 1}, &(pf_spec){0}), PF_EINVAL);
  free(before);
  OK(pf_graph_validate(g));
  pf_graph_destroy(g);
}

/* set_input rewires: the graph runs with the new edge. */
static void test_set_input_rewires(void **state) {
  pf_graph *g = new_graph();
  pf_slice_t s = new_slice(g, 2);
  pf_value_t x = new_input(g, "x", pf_spec_1d(PF_F32, 4), s, pf_split(0));
  pf_value_t y = new_input(g, "y", pf_spec_1d(PF_F32, 4), s, pf_split(0));
  pf_value_t n = prog1(g, "copy_y", "scale", NULL, s, 1, &y, NULL,
                       (pf_sharding[]){pf_split(0)});
  pf_value_t r;
  pf_program_t relu = {PF_NO_ID};
  pf_tensor *xt, *yt, *got;
  const char *names[1] = {"r"};
  (void)state;
  {
    pf_program_desc d = {.name = "relu", .kernel = "relu", .slice = s, .n_in = 1,
                         .in = &x, .out_shardings = (pf_sharding[]){pf_split(0)}};
    OK(pf_graph_program(g, &d, &r, &relu));
  }
  OK(pf_graph_output(g, "r", r));
  OK(pf_graph_set_input(g, relu, 0, n)); /* relu(scale(y)) now */
  OK(pf_graph_validate(g));
  xt = ramp_tensor(pf_spec_1d(PF_F32, 4), 1.0, 10.0);
  yt = ramp_tensor(pf_spec_1d(PF_F32, 4), -1.0, 1.5); /* 1.5 .5 -.5 -1.5 */
  run_graph(g, 2,
            (pf_feed[]){{.name = "x", .tensor = xt}, {.name = "y", .tensor = yt}},
            1, names, &got);
  {
    const float *o = pf_tensor_cdata(got);
    assert_true(o[0] == 1.5f && o[1] == 0.5f && o[2] == 0.0f && o[3] == 0.0f);
  }
  pf_tensor_destroy(got);
  pf_tensor_destroy(xt);
  pf_tensor_destroy(yt);
  pf_graph_destroy(g);
}

/* A variadic kernel: out = the sum of its inputs (all of one spec). */
static int sum_all_shape(const pf_attrs *attrs, int n_in, const pf_spec *in,
                         int n_out, pf_spec *out, pf_diag *diag) {
  (void)attrs;
  (void)n_out;
  for (int i = 1; i < n_in; i++)
    if (!pf_spec_equal(&in[i], &in[0]))
      return pf_diag_error(diag, PF_ESHAPE, "sum_all: input %d differs", i);
  out[0] = in[0];
  return 0;
}

static int sum_all_compute(const pf_kernel_call *call) {
  double *o = call->out[0].data;
  int64_t n = pf_spec_numel(&call->out[0].spec);
  for (int64_t j = 0; j < n; j++) o[j] = 0;
  for (int i = 0; i < call->n_in; i++)
    for (int64_t j = 0; j < n; j++) o[j] += ((const double *)call->in[i].data)[j];
  return 0;
}

/* Programs wider than 64 inputs (an all-to-all of width 200 used to need
 * packing programs), split over devices, up to the limit and past it. */
static void test_wide_program(void **state) {
  static pf_value_t in[PF_MAX_ARGS + 1];
  pf_kernel_def def = {.name = "sum_all", .kind = PF_DEVICE_CPU, .n_in = PF_VARIADIC,
                       .n_out = 1, .shape = sum_all_shape,
                       .sharding = pf_sharding_rule_elementwise,
                       .compute = sum_all_compute};
  pf_graph *g = new_graph();
  pf_slice_t s = new_slice(g, 2);
  pf_spec spec = pf_spec_1d(PF_F64, 4);
  pf_tensor *t, *got;
  pf_executable *exe;
  pf_future *f;
  pf_value_t x, out;
  (void)state;
  OK(pf_kernel_register(ctx, &def));
  x = new_input(g, "x", spec, s, pf_split(0));
  for (int i = 0; i <= PF_MAX_ARGS; i++) in[i] = x;
  OK(pf_graph_program(g, &(pf_program_desc){.name = "wide", .kernel = "sum_all", .slice = s,
                                            .n_in = 200, .in = in},
                      &out, NULL));
  OK(pf_graph_output(g, "out", out));
  OK(pf_graph_program(g, &(pf_program_desc){.name = "widest", .kernel = "sum_all",
                                            .slice = s, .n_in = PF_MAX_ARGS, .in = in},
                      &out, NULL));
  FAILS(PF_EARITY, pf_graph_program(g, &(pf_program_desc){.name = "too_wide",
                                                          .kernel = "sum_all", .slice = s,
                                                          .n_in = PF_MAX_ARGS + 1, .in = in},
                                    &out, NULL),
        "too_wide");
  OK(pf_compile(g, &exe));
  OK(pf_tensor_create(&spec, &t));
  for (int j = 0; j < 4; j++) ((double *)pf_tensor_data(t))[j] = j + 0.5;
  OK(pf_execute(exe, 1, &(pf_feed){.name = "x", .tensor = t}, &f));
  OK(pf_future_wait(f));
  OK(pf_future_fetch(f, "out", &got));
  for (int j = 0; j < 4; j++)
    assert_true(((double *)pf_tensor_data(got))[j] == 200 * (j + 0.5));
  pf_tensor_destroy(got);
  pf_tensor_destroy(t);
  pf_future_destroy(f);
  pf_executable_destroy(exe);
  pf_graph_destroy(g);
}


/* Appends program `name` = kernel(in...) with output value `out_spec`
 * (replicated) straight into the graph, as a decoded graph's are: no
 * builder checks it, only validation (pf_graph_validate, pf_compile). */
static void raw_program(pf_graph *g, const char *name, const char *kernel, pf_attrs *attrs,
                        pf_slice_t s, int n_in, const pf_value_t *in, pf_spec out_spec) {
  int32_t ids[4], out = (int32_t)g->n_values;
  pf_sharding sh[4];
  pf_gvalue v;
  pf_gprogram p;
  for (int i = 0; i < n_in; i++) {
    ids[i] = in[i].id;
    sh[i] = pf_replicated();
  }
  memset(&v, 0, sizeof v);
  v.spec = &out_spec;
  v.slice = s.id;
  v.sharding = pf_replicated();
  v.producer = (int32_t)g->n_programs;
  assert_int_equal(pf_graph_add_value(g, &v), 0);
  memset(&p, 0, sizeof p);
  p.name = (char *)name;
  p.kernel = (char *)kernel;
  p.attrs = attrs;
  p.slice = s.id;
  p.n_in = n_in;
  p.in = ids;
  p.in_shardings = sh;
  p.n_out = 1;
  p.out = &out;
  assert_int_equal(pf_graph_add_program(g, &p), 0);
}

/* Program names: a name that ends in its program's own index is found by
 * that index, any other in the table (graph/graph.c, own_index). Either
 * way names stay unique and a lookup finds the first program of a name. */
static void test_program_names(void **state) {
  pf_graph *g = new_graph();
  pf_slice_t s = new_slice(g, 1);
  pf_value_t x = new_input(g, "x", pf_spec_1d(PF_F32, 4), s, pf_replicated()), y;
  pf_program_desc desc = {.kernel = "relu", .slice = s, .n_in = 1, .in = &x};
  (void)state;
  /* 0: explicit, and another auto name's to be ("relu_2"). */
  desc.name = "relu_2";
  OK(pf_graph_program(g, &desc, &y, NULL));
  /* 1: explicit, ending in its own index. */
  desc.name = "mine_1";
  OK(pf_graph_program(g, &desc, &y, NULL));
  /* 2: auto, "relu_2" is taken: made unique. */
  desc.name = NULL;
  OK(pf_graph_program(g, &desc, &y, NULL));
  assert_string_equal(g->programs[2].name, "relu_2_1");
  /* 3: auto, its own name. 4: explicit with a leading zero (the table). */
  OK(pf_graph_program(g, &desc, &y, NULL));
  assert_string_equal(g->programs[3].name, "relu_3");
  desc.name = "relu_04";
  OK(pf_graph_program(g, &desc, &y, NULL));
  assert_int_equal(pf_graph_find_program(g, "relu_2"), 0);
  assert_int_equal(pf_graph_find_program(g, "mine_1"), 1);
  assert_int_equal(pf_graph_find_program(g, "relu_2_1"), 2);
  assert_int_equal(pf_graph_find_program(g, "relu_3"), 3);
  assert_int_equal(pf_graph_find_program(g, "relu_04"), 4);
  assert_int_equal(pf_graph_find_program(g, "relu_4"), -1);
  assert_int_equal(pf_graph_find_program(g, "relu_5"), -1);
  assert_int_equal(pf_graph_find_program(g, "mine_01"), -1);
  assert_int_equal(pf_graph_find_program(g, "_1"), -1);
  assert_int_equal(pf_graph_find_program(g, "99999999999999999999_3"), -1);
  for (const char *const *n = (const char *const[]){"relu_2", "mine_1", "relu_3", "relu_04", NULL};
       *n != NULL; n++) {
    desc.name = *n;
    assert_int_equal(pf_graph_program(g, &desc, &y, NULL), PF_EEXIST);
  }
  /* A decoded graph may repeat a name (pf_graph_add_program does not
   * refuse): the first program keeps it, whichever way each is found. */
  raw_program(g, "relu_3", "relu", NULL, s, 1, &x, pf_spec_1d(PF_F32, 4)); /* 5 */
  raw_program(g, "dup_7", "relu", NULL, s, 1, &x, pf_spec_1d(PF_F32, 4)); /* 6: the table */
  raw_program(g, "dup_7", "relu", NULL, s, 1, &x, pf_spec_1d(PF_F32, 4)); /* 7: its own */
  raw_program(g, "dup_7", "relu", NULL, s, 1, &x, pf_spec_1d(PF_F32, 4)); /* 8 */
  assert_int_equal(pf_graph_find_program(g, "relu_3"), 3);
  assert_int_equal(pf_graph_find_program(g, "dup_7"), 6);
  pf_graph_destroy(g);
}

/* Validation answers a program from the one before when the two are the
 * same to its kernel (check_memo in graph/validate.c): what makes them
 * differ must make it check again. Each graph has a good program and then
 * a wrong one that a memo keyed without inputs' specs, attributes or
 * outputs would pass. */
static void test_validation_repeats(void **state) {
  pf_attrs *axis0 = NULL, *axis1 = NULL;
  (void)state;
  OK(pf_attrs_create(&axis0));
  OK(pf_attrs_create(&axis1));
  OK(pf_attrs_set_int(axis0, "axis", 0));
  OK(pf_attrs_set_int(axis1, "axis", 1));
  for (int wrong = 0; wrong < 4; wrong++) {
    pf_graph *g = new_graph();
    pf_slice_t s = new_slice(g, 1);
    pf_value_t x = new_input(g, "x", pf_spec_1d(PF_F32, 4), s, pf_replicated());
    pf_value_t y = new_input(g, "y", pf_spec_1d(PF_F32, 8), s, pf_replicated());
    pf_value_t m = new_input(g, "m", pf_spec_2d(PF_F32, 4, 3), s, pf_replicated());
    pf_value_t xx[2] = {x, x}, xy[2] = {x, y};
    int rc;
    /* Good ones first, each twice (the second answered by the memo). */
    raw_program(g, "add_a", "add", NULL, s, 2, xx, pf_spec_1d(PF_F32, 4));
    raw_program(g, "add_b", "add", NULL, s, 2, xx, pf_spec_1d(PF_F32, 4));
    raw_program(g, "sum_a", "reduce_sum", axis0, s, 1, &m, pf_spec_1d(PF_F32, 3));
    raw_program(g, "sum_b", "reduce_sum", axis0, s, 1, &m, pf_spec_1d(PF_F32, 3));
    OK(pf_graph_validate(g));
    switch (wrong) {
    case 0: /* the same program, its output declared another size */
      raw_program(g, "add_c", "add", NULL, s, 2, xx, pf_spec_1d(PF_F32, 8));
      break;
    case 1: /* an input of another spec: add refuses f32[4] + f32[8] */
      raw_program(g, "add_a", "add", NULL, s, 2, xx, pf_spec_1d(PF_F32, 4));
      raw_program(g, "add_c", "add", NULL, s, 2, xy, pf_spec_1d(PF_F32, 4));
      break;
    case 2: /* other attributes: the sum over axis 1 is f32[4], not f32[3] */
      raw_program(g, "sum_c", "reduce_sum", axis1, s, 1, &m, pf_spec_1d(PF_F32, 3));
      break;
    default: /* another kernel of the same inputs: matmul takes no vectors */
      raw_program(g, "add_c", "add", NULL, s, 2, xx, pf_spec_1d(PF_F32, 4));
      raw_program(g, "mm_c", "matmul", NULL, s, 2, xx, pf_spec_1d(PF_F32, 4));
      break;
    }
    rc = pf_graph_validate(g);
    if (rc == 0) fail_msg("case %d: a wrong program passed validation", wrong);
    assert_true(rc == PF_ESHAPE || rc == PF_EDTYPE);
    pf_graph_destroy(g);
  }
  pf_attrs_destroy(axis0);
  pf_attrs_destroy(axis1);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_ids),
      cmocka_unit_test(test_auto_names),
      cmocka_unit_test(test_kernel_outputs),
      cmocka_unit_test(test_default_input_sharding),
      cmocka_unit_test(test_default_output_sharding),
      cmocka_unit_test(test_attrs_interned),
      cmocka_unit_test(test_output_global_spec),
      cmocka_unit_test(test_split_matmul_runs),
      cmocka_unit_test(test_wide_program),
      cmocka_unit_test(test_slice_pin),
      cmocka_unit_test(test_encode_decode_roundtrip),
      cmocka_unit_test(test_decode_untrusted),
      cmocka_unit_test(test_last_error),
      cmocka_unit_test(test_failed_builders_change_nothing),
      cmocka_unit_test(test_set_input_rewires),
      cmocka_unit_test(test_validation_repeats),
      cmocka_unit_test(test_program_names),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
