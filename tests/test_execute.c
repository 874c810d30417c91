/* Local execution: results against host references, reshards, persistent
 * buffers, executions in flight, kernel errors. */
#include "api/context_internal.h"
#include "testing.h"

static pf_context *ctx;

static int setup(void **state) {
  (void)state;
  return pf_init(NULL, NULL, &(pf_init_options){.cpu_devices = 4}, &ctx);
}

static int teardown(void **state) {
  (void)state;
  return pf_finalize(ctx);
}


static pf_tensor *filled(pf_spec spec, double seed) {
  pf_tensor *t;
  OK(pf_tensor_create(&spec, &t));
  for (int64_t i = 0; i < pf_spec_numel(&spec); i++) {
    double v = sin(seed + 0.37 * (double)i);
    if (spec.dtype == PF_F32) ((float *)pf_tensor_data(t))[i] = (float)v;
    if (spec.dtype == PF_F64) ((double *)pf_tensor_data(t))[i] = v;
    if (spec.dtype == PF_I32) ((int32_t *)pf_tensor_data(t))[i] = (int32_t)(i * 7 + seed);
  }
  return t;
}

static pf_tensor *run1(pf_executable *exe, int n, const pf_feed *feeds, const char *out) {
  pf_future *f;
  pf_tensor *t;
  OK(pf_execute(exe, n, feeds, &f));
  OK(pf_future_wait(f));
  OK(pf_future_fetch(f, out, &t));
  pf_future_destroy(f);
  return t;
}

/* x[8,6] split by rows over 2 devices @ w[6,5] replicated, then a column
 * sum on a third device: compared with a host triple loop. */
static void test_matmul_then_reduce(void **state) {
  pf_graph *g;
  pf_executable *exe;
  pf_slice_t two, one;
  pf_value_t x, w, xw, y;
  pf_spec xs = pf_spec_2d(PF_F64, 8, 6), ws = pf_spec_2d(PF_F64, 6, 5);
  pf_sharding rows = pf_split(0);
  pf_attrs *a;
  (void)state;
  OK(pf_graph_create(ctx, &g));
  OK(pf_graph_slice(g, PF_DEVICE_CPU, 2, &two));
  OK(pf_graph_slice(g, PF_DEVICE_CPU, 1, &one));
  OK(pf_graph_input(g, "x", &xs, two, rows, &x));
  OK(pf_graph_input(g, "w", &ws, two, pf_replicated(), &w));
  OK(pf_graph_program(g, &(pf_program_desc){.kernel = "matmul", .slice = two, .n_in = 2,
                                             .in = (pf_value_t[]){x, w}, .out_shardings = &rows},
                      &xw, NULL));
  OK(pf_attrs_create(&a));
  OK(pf_attrs_set_int(a, "axis", 0));
  OK(pf_graph_program(g, &(pf_program_desc){.kernel = "reduce_sum", .attrs = a, .slice = one,
                                             .n_in = 1, .in = &xw},
                      &y, NULL));
  pf_attrs_destroy(a);
  OK(pf_graph_output(g, "y", y));
  OK(pf_compile(g, &exe));
  pf_tensor *tx = filled(xs, 1), *tw = filled(ws, 2);
  pf_tensor *ty = run1(exe, 2, (pf_feed[]){{.name = "x", .tensor = tx}, {.name = "w", .tensor = tw}}, "y");
  const double *X = pf_tensor_data(tx), *W = pf_tensor_data(tw), *Y = pf_tensor_data(ty);
  assert_int_equal(pf_tensor_spec(ty)->rank, 1);
  assert_int_equal(pf_tensor_spec(ty)->dims[0], 5);
  for (int j = 0; j < 5; j++) {
    double ref = 0;
    for (int i = 0; i < 8; i++)
      for (int k = 0; k < 6; k++) ref += X[i * 6 + k] * W[k * 5 + j];
    assert_true(fabs(Y[j] - ref) < 1e-12);
  }
  pf_tensor_destroy(tx);
  pf_tensor_destroy(tw);
  pf_tensor_destroy(ty);
  pf_executable_destroy(exe);
  pf_graph_destroy(g);
}

/* Every (sharding, devices) pair as source and destination of an identity
 * program: what comes out must be what went in, byte for byte. */
static void test_reshard_matrix(void **state) {
  pf_sharding shs[3] = {pf_replicated(), pf_split(0), pf_split(1)};
  pf_spec spec = pf_spec_2d(PF_I32, 12, 24);
  pf_tensor *in = filled(spec, 3);
  int checked = 0;
  (void)state;
  for (int sa = 0; sa < 3; sa++)
    for (int na = 1; na <= 4; na++)
      for (int sb = 0; sb < 3; sb++)
        for (int nb = 1; nb <= 4; nb++) {
          pf_graph *g;
          pf_executable *exe;
          pf_slice_t A, B;
          pf_value_t v, o;
          OK(pf_graph_create(ctx, &g));
          OK(pf_graph_slice(g, PF_DEVICE_CPU, na, &A));
          OK(pf_graph_slice(g, PF_DEVICE_CPU, nb, &B));
          OK(pf_graph_input(g, "v", &spec, A, shs[sa], &v));
          OK(pf_graph_program(g, &(pf_program_desc){.kernel = "identity", .slice = B, .n_in = 1,
                                                     .in = &v, .in_shardings = &shs[sb],
                                                     .out_shardings = &shs[sb]},
                              &o, NULL));
          OK(pf_graph_output(g, "o", o));
          OK(pf_compile(g, &exe));
          pf_tensor *out = run1(exe, 1, &(pf_feed){.name = "v", .tensor = in}, "o");
          assert_memory_equal(pf_tensor_data(out), pf_tensor_data(in), pf_tensor_nbytes(in));
          pf_tensor_destroy(out);
          pf_executable_destroy(exe);
          pf_graph_destroy(g);
          checked++;
        }
  assert_int_equal(checked, 144);
  pf_tensor_destroy(in);
}

/* 100 SGD steps where the parameters never leave the devices: the output
 * buffer of step k is fed as the input of step k+1. */
static void test_buffers_across_executions(void **state) {
  pf_graph *g;
  pf_executable *exe;
  pf_slice_t s;
  pf_value_t p, gr, np;
  pf_spec spec = pf_spec_1d(PF_F32, 64);
  pf_attrs *a;
  pf_buffer_t param = {0};
  (void)state;
  OK(pf_graph_create(ctx, &g));
  OK(pf_graph_slice(g, PF_DEVICE_CPU, 4, &s));
  OK(pf_graph_input(g, "p", &spec, s, pf_split(0), &p));
  OK(pf_graph_input(g, "g", &spec, s, pf_split(0), &gr));
  OK(pf_attrs_create(&a));
  OK(pf_attrs_set_float(a, "lr", 0.5));
  OK(pf_graph_program(g, &(pf_program_desc){.kernel = "sgd", .attrs = a, .slice = s, .n_in = 2,
                                             .in = (pf_value_t[]){p, gr},
                                             .out_shardings = (pf_sharding[]){pf_split(0)}},
                      &np, NULL));
  pf_attrs_destroy(a);
  OK(pf_graph_output(g, "p_next", np));
  OK(pf_compile(g, &exe));
  pf_tensor *p0 = filled(spec, 5), *grad = filled(spec, 6);
  float ref[64];
  memcpy(ref, pf_tensor_data(p0), sizeof ref);
  for (int step = 0; step < 100; step++) {
    pf_future *f;
    pf_feed feeds[2] = {{.name = "p"}, {.name = "g", .tensor = grad}};
    if (step == 0)
      feeds[0].tensor = p0;
    else
      feeds[0].buffer = param;
    OK(pf_execute(exe, 2, feeds, &f));
    OK(pf_future_wait(f));
    if (step > 0) OK(pf_buffer_release(ctx, param));
    OK(pf_future_output(f, "p_next", &param));
    pf_future_destroy(f);
    for (int i = 0; i < 64; i++) ref[i] -= 0.5f * ((float *)pf_tensor_data(grad))[i];
  }
  pf_tensor *out;
  OK(pf_buffer_fetch(ctx, param, &out));
  for (int i = 0; i < 64; i++) assert_true(fabsf(((float *)pf_tensor_data(out))[i] - ref[i]) < 1e-4f);
  OK(pf_buffer_release(ctx, param));
  assert_int_equal(pf_buffer_release(ctx, param), PF_ESTALE);
  pf_tensor_destroy(out);
  pf_tensor_destroy(p0);
  pf_tensor_destroy(grad);
  pf_executable_destroy(exe);
  pf_graph_destroy(g);
}

static pf_executable *scale_exe(pf_graph **g, double alpha) {
  pf_executable *exe;
  pf_slice_t s;
  pf_value_t x, y;
  pf_spec spec = pf_spec_2d(PF_F64, 16, 4);
  pf_attrs *a;
  OK(pf_graph_create(ctx, g));
  OK(pf_graph_slice(*g, PF_DEVICE_CPU, 2, &s));
  OK(pf_graph_input(*g, "x", &spec, s, pf_split(0), &x));
  OK(pf_attrs_create(&a));
  OK(pf_attrs_set_float(a, "alpha", alpha));
  OK(pf_graph_program(*g, &(pf_program_desc){.kernel = "scale", .attrs = a, .slice = s,
                                              .n_in = 1, .in = &x},
                      &y, NULL));
  pf_attrs_destroy(a);
  OK(pf_graph_output(*g, "y", y));
  OK(pf_compile(*g, &exe));
  return exe;
}

/* Many executions in flight at once, each with its own feed. */
static void test_executions_in_flight(void **state) {
  enum { N = 32 };
  pf_graph *g;
  pf_executable *exe = scale_exe(&g, 3.0);
  pf_future *f[N];
  pf_tensor *x[N];
  pf_spec spec = pf_spec_2d(PF_F64, 16, 4);
  (void)state;
  for (int i = 0; i < N; i++) {
    x[i] = filled(spec, i);
    OK(pf_execute(exe, 1, &(pf_feed){.name = "x", .tensor = x[i]}, &f[i]));
  }
  /* Destroying the executable now must not disturb what is in flight. */
  pf_executable_destroy(exe);
  for (int i = N - 1; i >= 0; i--) {
    pf_tensor *y;
    OK(pf_future_wait(f[i]));
    OK(pf_future_fetch(f[i], "y", &y));
    for (int k = 0; k < 64; k++)
      assert_true(fabs(((double *)pf_tensor_data(y))[k] - 3.0 * ((double *)pf_tensor_data(x[i]))[k]) < 1e-12);
    pf_tensor_destroy(y);
    pf_tensor_destroy(x[i]);
    pf_future_destroy(f[i]);
  }
  pf_graph_destroy(g);
}

/* A kernel that fails at run time completes the future with PF_EKERNEL and
 * a message naming rank, program and kernel; the context stays usable. */
static void test_kernel_error(void **state) {
  pf_graph *g;
  pf_executable *exe;
  pf_slice_t s;
  pf_value_t lg, lb, out[2];
  pf_spec ls = pf_spec_2d(PF_F32, 4, 3), bs = pf_spec_1d(PF_I32, 4);
  pf_future *f;
  pf_buffer_t b;
  (void)state;
  OK(pf_graph_create(ctx, &g));
  OK(pf_graph_slice(g, PF_DEVICE_CPU, 1, &s));
  OK(pf_graph_input(g, "logits", &ls, s, pf_replicated(), &lg));
  OK(pf_graph_input(g, "labels", &bs, s, pf_replicated(), &lb));
  OK(pf_graph_program(g, &(pf_program_desc){.name = "xent", .kernel = "softmax_xent", .slice = s,
                                             .n_in = 2, .in = (pf_value_t[]){lg, lb}},
                      out, NULL));
  OK(pf_graph_output(g, "loss", out[0]));
  OK(pf_compile(g, &exe));
  pf_tensor *logits = filled(ls, 1), *labels;
  OK(pf_tensor_create(&bs, &labels));
  ((int32_t *)pf_tensor_data(labels))[2] = 7; /* out of [0, 3) */
  pf_feed feeds[2] = {{.name = "logits", .tensor = logits}, {.name = "labels", .tensor = labels}};
  OK(pf_execute(exe, 2, feeds, &f));
  assert_int_equal(pf_future_wait(f), PF_EKERNEL);
  assert_non_null(strstr(pf_future_error(f), "rank 0"));
  assert_non_null(strstr(pf_future_error(f), "\"xent\""));
  assert_non_null(strstr(pf_future_error(f), "softmax_xent"));
  assert_int_equal(pf_future_output(f, "loss", &b), PF_ESTATE);
  pf_future_destroy(f);
  ((int32_t *)pf_tensor_data(labels))[2] = 2;
  pf_tensor *loss = run1(exe, 2, feeds, "loss");
  assert_true(isfinite(((float *)pf_tensor_data(loss))[0]));
  assert_true(((float *)pf_tensor_data(loss))[0] > 0);
  pf_tensor_destroy(loss);
  pf_tensor_destroy(logits);
  pf_tensor_destroy(labels);
  pf_executable_destroy(exe);
  pf_graph_destroy(g);
}

/* An input that is also an output, and one value under two output names. */
static void test_passthrough_outputs(void **state) {
  pf_graph *g;
  pf_executable *exe;
  pf_slice_t s;
  pf_value_t x, y;
  pf_spec spec = pf_spec_1d(PF_F32, 8);
  pf_future *f;
  pf_tensor *a, *b, *c;
  (void)state;
  OK(pf_graph_create(ctx, &g));
  OK(pf_graph_slice(g, PF_DEVICE_CPU, 2, &s));
  OK(pf_graph_input(g, "x", &spec, s, pf_split(0), &x));
  OK(pf_graph_program(g, &(pf_program_desc){.kernel = "relu", .slice = s, .n_in = 1, .in = &x,
                                             .out_shardings = (pf_sharding[]){pf_split(0)}},
                      &y, NULL));
  OK(pf_graph_output(g, "same", x));
  OK(pf_graph_output(g, "y1", y));
  OK(pf_graph_output(g, "y2", y));
  OK(pf_compile(g, &exe));
  pf_tensor *in = filled(spec, 9);
  OK(pf_execute(exe, 1, &(pf_feed){.name = "x", .tensor = in}, &f));
  OK(pf_future_wait(f));
  OK(pf_future_fetch(f, "same", &a));
  OK(pf_future_fetch(f, "y1", &b));
  OK(pf_future_fetch(f, "y2", &c));
  assert_memory_equal(pf_tensor_data(a), pf_tensor_data(in), 32);
  assert_memory_equal(pf_tensor_data(b), pf_tensor_data(c), 32);
  for (int i = 0; i < 8; i++) {
    float v = ((float *)pf_tensor_data(in))[i];
    assert_true(((float *)pf_tensor_data(b))[i] == (v > 0 ? v : 0));
  }
  pf_tensor *none = (pf_tensor *)&none;
  assert_int_equal(pf_future_fetch(f, "nope", &none), PF_ENOTFOUND);
  assert_null(none);
  pf_tensor_destroy(a);
  pf_tensor_destroy(b);
  pf_tensor_destroy(c);
  pf_tensor_destroy(in);
  pf_future_destroy(f);
  pf_executable_destroy(exe);
  pf_graph_destroy(g);
}

static atomic_int slow_calls;

static int slow_shape(const pf_attrs *at, int n_in, const pf_spec *in, int n_out, pf_spec *out,
                      pf_diag *d) {
  (void)at, (void)n_in, (void)n_out, (void)d;
  out[0] = in[0];
  return 0;
}

static int slow_compute(const pf_kernel_call *call) {
  struct timespec ts = {0, 300 * 1000000};
  nanosleep(&ts, NULL);
  memcpy(call->out[0].data, call->in[0].data, pf_spec_nbytes(&call->in[0].spec));
  atomic_fetch_add(&slow_calls, 1);
  return 0;
}

/* wait_for times out while the kernel sleeps, then the wait succeeds; a
 * buffer with a layout other than the input's is fed through a copy. */
static void test_wait_for_and_relayout(void **state) {
  pf_graph *g;
  pf_executable *exe, *exe2;
  pf_slice_t s;
  pf_value_t x, y;
  pf_spec spec = pf_spec_2d(PF_F64, 16, 4);
  pf_future *f;
  pf_buffer_t b;
  pf_kernel_def def = {.name = "slow_copy", .kind = PF_DEVICE_CPU, .n_in = 1, .n_out = 1,
                       .shape = slow_shape, .compute = slow_compute};
  (void)state;
  OK(pf_kernel_register(ctx, &def));
  assert_int_equal(pf_kernel_register(ctx, &def), PF_EEXIST);
  OK(pf_graph_create(ctx, &g));
  OK(pf_graph_slice(g, PF_DEVICE_CPU, 1, &s));
  OK(pf_graph_input(g, "x", &spec, s, pf_replicated(), &x));
  OK(pf_graph_program(g, &(pf_program_desc){.kernel = "slow_copy", .slice = s, .n_in = 1, .in = &x},
                      &y, NULL));
  OK(pf_graph_output(g, "y", y));
  OK(pf_compile(g, &exe));
  pf_tensor *in = filled(spec, 4);
  OK(pf_execute(exe, 1, &(pf_feed){.name = "x", .tensor = in}, &f));
  assert_int_equal(pf_future_wait_for(f, 10), PF_ETIMEDOUT);
  assert_int_equal(pf_future_done(f), 0);
  OK(pf_future_wait_for(f, 60000));
  assert_int_equal(pf_future_done(f), 1);
  OK(pf_future_output(f, "y", &b));
  pf_future_destroy(f);
  /* The buffer is replicated on one device; scale_exe wants split over 2. */
  pf_graph *g2;
  exe2 = scale_exe(&g2, 2.0);
  pf_tensor *out = run1(exe2, 1, &(pf_feed){.name = "x", .buffer = b}, "y");
  for (int k = 0; k < 64; k++)
    assert_true(((double *)pf_tensor_data(out))[k] == 2.0 * ((double *)pf_tensor_data(in))[k]);
  OK(pf_buffer_release(ctx, b));
  assert_int_equal(pf_execute(exe2, 1, &(pf_feed){.name = "x", .buffer = b}, &f), PF_ESTALE);
  assert_int_equal(atomic_load(&slow_calls), 1);
  pf_tensor_destroy(out);
  pf_tensor_destroy(in);
  pf_executable_destroy(exe);
  pf_executable_destroy(exe2);
  pf_graph_destroy(g);
  pf_graph_destroy(g2);
}

/* An output of the shape in attribute "n" (f32) that the kernel leaves as
 * it is: a large value made on the devices without the time to fill it. */
static int big_shape(const pf_attrs *a, int n_in, const pf_spec *in, int n_out, pf_spec *out,
                     pf_diag *d) {
  (void)n_in, (void)in, (void)n_out, (void)d;
  out[0] = pf_spec_1d(PF_F32, pf_attrs_get_int(a, "n", 1));
  return 0;
}

static int big_compute(const pf_kernel_call *c) {
  (void)c;
  return 0;
}

/* One limit for shards moved between the host and the devices, checked
 * before anything moves, on rank 0 as on any other: the message names the
 * input or output and the limit. */
static void test_host_shard_limit(void **state) {
  pf_graph *g;
  pf_executable *exe;
  pf_slice_t one;
  pf_value_t x, y, big;
  int64_t n = PF_HOST_SHARD_MAX / 4 + 16; /* f32: 64 bytes over the limit */
  pf_spec xs = pf_spec_1d(PF_F32, n), small = pf_spec_1d(PF_F32, 4);
  pf_attrs *a;
  pf_future *f;
  pf_tensor *t, *out = NULL;
  (void)state;
  OK(pf_graph_create(ctx, &g));
  OK(pf_graph_slice(g, PF_DEVICE_CPU, 1, &one));
  OK(pf_graph_input(g, "x", &xs, one, pf_replicated(), &x));
  OK(pf_graph_program(g, &(pf_program_desc){.kernel = "identity", .slice = one, .n_in = 1,
                                             .in = &x},
                      &y, NULL));
  OK(pf_graph_output(g, "y", y));
  OK(pf_compile(g, &exe));
  pf_graph_destroy(g);
  OK(pf_tensor_create(&xs, &t));
  f = (pf_future *)1;
  assert_int_equal(pf_execute(exe, 1, &(pf_feed){.name = "x", .tensor = t}, &f), PF_ERANGE);
  assert_null(f);
  assert_non_null(strstr(pf_last_error(ctx), "feed \"x\""));
  assert_non_null(strstr(pf_last_error(ctx), "PF_HOST_SHARD_MAX"));
  pf_tensor_destroy(t);
  pf_executable_destroy(exe);
  /* An output made on the devices may be that large; fetching it is not. */
  OK(pf_graph_create(ctx, &g));
  OK(pf_graph_slice(g, PF_DEVICE_CPU, 1, &one));
  OK(pf_graph_input(g, "s", &small, one, pf_replicated(), &x));
  OK(pf_kernel_register(ctx, &(pf_kernel_def){.name = "test.big", .kind = PF_DEVICE_CPU,
                                               .n_out = 1, .shape = big_shape,
                                               .compute = big_compute}));
  OK(pf_attrs_create(&a));
  OK(pf_attrs_set_int(a, "n", n));
  OK(pf_graph_program(g, &(pf_program_desc){.kernel = "test.big", .attrs = a, .slice = one},
                      &big, NULL));
  pf_attrs_destroy(a);
  OK(pf_graph_output(g, "big", big));
  OK(pf_graph_output(g, "s", x));
  OK(pf_compile(g, &exe));
  pf_graph_destroy(g);
  OK(pf_tensor_create(&small, &t));
  OK(pf_execute(exe, 1, &(pf_feed){.name = "s", .tensor = t}, &f));
  OK(pf_future_wait(f));
  assert_int_equal(pf_future_fetch(f, "big", &out), PF_ERANGE);
  assert_null(out);
  assert_non_null(strstr(pf_last_error(ctx), "output \"big\""));
  assert_non_null(strstr(pf_last_error(ctx), "PF_HOST_SHARD_MAX"));
  OK(pf_future_fetch(f, "s", &out));
  pf_tensor_destroy(out);
  pf_future_destroy(f);
  pf_tensor_destroy(t);
  pf_executable_destroy(exe);
}

/* A fetch reply whose shard is not the size asked for is refused, naming
 * the rank, the shard and both sizes: the gather would read past it. */
static void test_fetch_reply_size_checked(void **state) {
  pf_waiter w;
  pf_msg *m = pf_msg_new(PF_MSG_FETCH_REPLY);
  pf_storage *shards[2] = {NULL, NULL};
  (void)state;
  memset(&w, 0, sizeof w);
  w.num_shards = 2;
  w.shard_bytes = 64;
  w.shards = shards;
  pf_controller_expect(ctx, &w, pf_context_new_id(ctx), 1);
  assert_non_null(m);
  m->request = w.key;
  m->from = 3;
  m->n_shards = 2;
  m->shards = calloc(2, sizeof *m->shards);
  m->data = calloc(2, sizeof *m->data);
  assert_non_null(m->shards);
  assert_non_null(m->data);
  m->shards[0] = 0;
  m->shards[1] = 1;
  m->data[0] = pf_storage_new(64, 0);
  m->data[1] = pf_storage_new(32, 0);
  pf_controller_on_reply(ctx, m);
  assert_int_equal(pf_controller_wait(ctx, &w), PF_EDECODE);
  assert_non_null(strstr(w.message, "rank 3 sent 32 bytes for shard 1, which holds 64 bytes"));
  assert_non_null(shards[0]);
  assert_null(shards[1]);
  pf_storage_unref(shards[0]);
}

/* test.bump: y = x + 1, allowed to update x in place; records whether it
 * did (its output was its input's memory). */
static atomic_int bump_aliased;
static const int bump_in_place[1] = {0};

static int bump_compute(const pf_kernel_call *call) {
  const double *x = call->in[0].data;
  double *y = call->out[0].data;
  atomic_store(&bump_aliased, call->out[0].data == call->in[0].data);
  for (int64_t i = 0; i < pf_spec_numel(&call->in[0].spec); i++) y[i] = x[i] + 1;
  return 0;
}

/* y = bump(x) on one device; with `also` the graph outputs x as well, and
 * with `second` it has another input z. */
static pf_executable *bump_graph(int also, int second) {
  pf_graph *g;
  pf_executable *exe;
  pf_slice_t one;
  pf_value_t x, y, z;
  pf_spec xs = pf_spec_1d(PF_F64, 1000);
  OK(pf_graph_create(ctx, &g));
  OK(pf_graph_slice(g, PF_DEVICE_CPU, 1, &one));
  OK(pf_graph_input(g, "x", &xs, one, pf_replicated(), &x));
  if (second) OK(pf_graph_input(g, "z", &xs, one, pf_replicated(), &z));
  OK(pf_graph_program(g, &(pf_program_desc){.kernel = "test.bump", .slice = one, .n_in = 1,
                                             .in = &x},
                      &y, NULL));
  OK(pf_graph_output(g, "y", y));
  if (also) OK(pf_graph_output(g, "x_again", x));
  if (second) OK(pf_graph_output(g, "z_again", z));
  OK(pf_compile(g, &exe));
  pf_graph_destroy(g);
  return exe;
}

static void assert_values(const pf_tensor *t, double plus) {
  const double *v = pf_tensor_cdata(t);
  for (int i = 0; i < 1000; i++)
    if (fabs(v[i] - (sin(3 + 0.37 * i) + plus)) > 1e-12)
      fail_msg("element %d: %.17g, want %.17g (+%g)", i, v[i], sin(3 + 0.37 * i) + plus, plus);
}

/* pf_feed.donate: a donated buffer is updated in place by a kernel that
 * allows it (pf_kernel_def.in_place) and its handle is gone; one not
 * donated, or still needed (also a graph output), is never written; a
 * host tensor's copy is the run's own; donating a tensor, or a buffer
 * another feed of the call reads, is refused and changes nothing. */
static void test_donation(void **state) {
  pf_executable *exe = NULL, *keep, *two;
  pf_spec xs = pf_spec_1d(PF_F64, 1000);
  pf_tensor *t = filled(xs, 3), *got;
  pf_buffer_t b, y;
  pf_future *f;
  (void)state;
  OK(pf_kernel_register(ctx, &(pf_kernel_def){.name = "test.bump", .kind = PF_DEVICE_CPU,
                                              .n_in = 1, .n_out = 1, .shape = slow_shape,
                                              .compute = bump_compute,
                                              .in_place = bump_in_place}));
  exe = bump_graph(0, 0);
  keep = bump_graph(1, 0);
  two = bump_graph(0, 1);
  OK(pf_buffer_put_for(exe, "x", t, &b));
  /* Not donated: the buffer keeps its values. */
  got = run1(exe, 1, &(pf_feed){.name = "x", .buffer = b}, "y");
  assert_int_equal(atomic_load(&bump_aliased), 0);
  assert_values(got, 1);
  pf_tensor_destroy(got);
  OK(pf_buffer_fetch(ctx, b, &got));
  assert_values(got, 0);
  pf_tensor_destroy(got);
  /* Refused: a tensor donated; a buffer donated that another feed reads. */
  f = (pf_future *)1;
  assert_int_equal(pf_execute(exe, 1, &(pf_feed){.name = "x", .tensor = t, .donate = 1}, &f),
                   PF_EINVAL);
  assert_null(f);
  assert_non_null(strstr(pf_last_error(ctx), "tensor"));
  assert_int_equal(pf_execute(two, 2,
                              (pf_feed[]){{.name = "x", .buffer = b, .donate = 1},
                                          {.name = "z", .buffer = b}},
                              &f),
                   PF_EINVAL);
  assert_non_null(strstr(pf_last_error(ctx), "still reads"));
  /* Donated but still needed (the graph outputs it too): not written. */
  OK(pf_buffer_put_for(keep, "x", t, &y));
  OK(pf_execute(keep, 1, &(pf_feed){.name = "x", .buffer = y, .donate = 1}, &f));
  OK(pf_future_wait(f));
  assert_int_equal(atomic_load(&bump_aliased), 0);
  assert_int_equal(pf_buffer_fetch(ctx, y, &got), PF_ESTALE);
  OK(pf_future_fetch(f, "x_again", &got));
  assert_values(got, 0);
  pf_tensor_destroy(got);
  OK(pf_future_fetch(f, "y", &got));
  assert_values(got, 1);
  pf_tensor_destroy(got);
  pf_future_destroy(f);
  /* Donated, twice in a row as an optimizer's state: updated in place. */
  OK(pf_execute(exe, 1, &(pf_feed){.name = "x", .buffer = b, .donate = 1}, &f));
  OK(pf_future_wait(f));
  assert_int_equal(atomic_load(&bump_aliased), 1);
  assert_int_equal(pf_buffer_fetch(ctx, b, &got), PF_ESTALE);
  OK(pf_future_output(f, "y", &y));
  pf_future_destroy(f);
  OK(pf_execute(exe, 1, &(pf_feed){.name = "x", .buffer = y, .donate = 1}, &f));
  OK(pf_future_wait(f));
  assert_int_equal(atomic_load(&bump_aliased), 1);
  OK(pf_future_fetch(f, "y", &got));
  assert_values(got, 2);
  pf_tensor_destroy(got);
  pf_future_destroy(f);
  /* A host tensor's copy belongs to the run alone. */
  got = run1(exe, 1, &(pf_feed){.name = "x", .tensor = t}, "y");
  assert_int_equal(atomic_load(&bump_aliased), 1);
  assert_values(got, 1);
  pf_tensor_destroy(got);
  assert_values(t, 0);
  pf_tensor_destroy(t);
  pf_executable_destroy(exe);
  pf_executable_destroy(keep);
  pf_executable_destroy(two);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_matmul_then_reduce),
      cmocka_unit_test(test_reshard_matrix),
      cmocka_unit_test(test_buffers_across_executions),
      cmocka_unit_test(test_executions_in_flight),
      cmocka_unit_test(test_kernel_error),
      cmocka_unit_test(test_passthrough_outputs),
      cmocka_unit_test(test_wait_for_and_relayout),
      cmocka_unit_test(test_host_shard_limit),
      cmocka_unit_test(test_fetch_reply_size_checked),
      cmocka_unit_test(test_donation),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
