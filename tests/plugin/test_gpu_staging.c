/* GPU graphs in one process, each run twice: with its GPU programs on
 * GPU slices, and the same graph on CPU slices, with the same feeds; the
 * fetched outputs must be equal. Values are small integers in f32, so that
 * every sum is exact in any order and on any device (a real GPU's
 * reductions and cuBLAS included): equality is exact.
 *
 * Run with the guarded GPU (PATHFLOW_DEVICE_PLUGINS=libpf_guarded_gpu.so,
 * tests/plugin/guarded_gpu.c), whose memory faults when host code touches
 * it: the runtime must stage local collectives through host buffers, and
 * move feeds and fetches across the host boundary with the device's
 * copies (docs/architecture.md, "Staging through host memory"). With
 * PATHFLOW_CUDA=1 the same tests run on real GPUs; without one the program
 * says "no GPU: skipped" and exits 77.
 *
 *  (i)   feed on a GPU slice, a kernel chain there, fetch;
 *  (ii)  CPU program -> GPU program -> CPU program on one rank;
 *  (iii) a value split over 2 GPUs resharded to replicated, to split(1)
 *        and gathered on one GPU (copies between GPUs);
 *  (iv)  a local allreduce over 2 GPUs, and reduce_sum over a split axis
 *        (partial sums reduced by an inserted collective);
 *  (v)   matmul, rows split, and contracting a split axis;
 *  (vi)  values kept on a GPU between executions, fed on, fetched;
 *  (vii) bad data a GPU kernel finds (a label out of range) fails the
 *        execution with PF_EKERNEL and the CPU kernel's message, and the
 *        context runs the next execution as if nothing happened;
 *  (viii) a user kernel registered for GPUs (pf_init_options.kernels) is
 *        given its device's stream, a CPU one none. */
#include "../testing.h"

#include <unistd.h>

static pf_context *ctx;
static int n_gpus;

#include "gpu_compare.h"

static pf_attrs *attr_float(const char *name, double v) {
  pf_attrs *a;
  OK(pf_attrs_create(&a));
  OK(pf_attrs_set_float(a, name, v));
  return a;
}

static pf_attrs *attr_int(const char *name, int64_t v) {
  pf_attrs *a;
  OK(pf_attrs_create(&a));
  OK(pf_attrs_set_int(a, name, v));
  return a;
}

/* One output of a program (the built-ins used here have one). */
static pf_value_t prog(pf_graph *g, const char *kernel, pf_slice_t s, const pf_attrs *a, int n,
                       const pf_value_t *in, const pf_sharding *in_sh) {
  pf_value_t out;
  OK(pf_graph_program(g, &(pf_program_desc){.kernel = kernel, .attrs = a, .slice = s, .n_in = n,
                                             .in = in, .in_shardings = in_sh},
                      &out, NULL));
  return out;
}

static pf_value_t scale(pf_graph *g, pf_slice_t s, pf_value_t x, double alpha) {
  pf_attrs *a = attr_float("alpha", alpha);
  pf_value_t y = prog(g, "scale", s, a, 1, &x, NULL);
  pf_attrs_destroy(a);
  return y;
}

static pf_value_t add(pf_graph *g, pf_slice_t s, pf_value_t x, pf_value_t y) {
  return prog(g, "add", s, NULL, 2, (pf_value_t[]){x, y}, NULL);
}

/* The graphs, built for GPU slices (gpu = 1) or all on CPU slices. */
typedef pf_executable *(*build_fn)(pf_device_kind kind);

typedef struct feed_desc {
  const char *name;
  pf_spec spec;
} feed_desc;

/* Runs the graph for GPU and for CPU with the same feeds, and compares
 * every output named in outs. */
static void compare(build_fn build, int n_feeds, const feed_desc *fd, int n_outs,
                    const char *const *outs) {
  pf_executable *exe[2] = {build(PF_DEVICE_GPU), build(PF_DEVICE_CPU)};
  pf_tensor *in[GPU_COMPARE_MAX];
  pf_feed feeds[GPU_COMPARE_MAX];
  assert_true(n_feeds <= GPU_COMPARE_MAX);
  for (int i = 0; i < n_feeds; i++) {
    in[i] = ints(fd[i].spec, i + 1);
    feeds[i] = (pf_feed){.name = fd[i].name, .tensor = in[i]};
  }
  gpu_compare_run(ctx, exe, n_feeds, feeds, n_outs, outs, 2);
  for (int i = 0; i < n_feeds; i++) pf_tensor_destroy(in[i]);
}

static pf_executable *compile(pf_graph *g) {
  pf_executable *exe;
  OK(pf_compile(g, &exe));
  pf_graph_destroy(g);
  return exe;
}

/* ---- (i) feed, chain, fetch ----------------------------------------------- */

/* y = relu(bias_add(2x + x, fill(1))) - x, all on one device; h = 2x is
 * fetched too (an output read by later ops). */
static pf_executable *build_chain(pf_device_kind kind) {
  pf_graph *g;
  pf_slice_t s;
  pf_value_t x, h, hx, b, r, y;
  pf_spec xs = pf_spec_2d(PF_F32, 64, 32);
  pf_attrs *fa;
  OK(pf_graph_create(ctx, &g));
  OK(pf_graph_slice(g, kind, 1, &s));
  OK(pf_graph_input(g, "x", &xs, s, pf_replicated(), &x));
  h = scale(g, s, x, 2);
  hx = add(g, s, h, x);
  OK(pf_attrs_create(&fa));
  OK(pf_attrs_set_ints(fa, "shape", (int64_t[]){32}, 1));
  OK(pf_attrs_set_float(fa, "value", 1));
  b = prog(g, "fill", s, fa, 0, NULL, NULL);
  pf_attrs_destroy(fa);
  r = prog(g, "bias_add", s, NULL, 2, (pf_value_t[]){hx, b}, NULL);
  r = prog(g, "relu", s, NULL, 1, &r, NULL);
  y = prog(g, "sub", s, NULL, 2, (pf_value_t[]){r, x}, NULL);
  OK(pf_graph_output(g, "y", y));
  OK(pf_graph_output(g, "h", h));
  return compile(g);
}

static void test_feed_chain_fetch(void **state) {
  (void)state;
  compare(build_chain, 1, (feed_desc[]){{"x", pf_spec_2d(PF_F32, 64, 32)}}, 2,
          (const char *[]){"y", "h"});
}

/* ---- (ii) CPU -> GPU -> CPU ------------------------------------------------- */

/* a = 3x on a CPU; b = relu(a + a) on the GPU (kind); c = b + x on a CPU. */
static pf_executable *build_mixed(pf_device_kind kind) {
  pf_graph *g;
  pf_slice_t c1, mid, c2;
  pf_value_t x, a, b, c;
  pf_spec xs = pf_spec_2d(PF_F32, 16, 24);
  OK(pf_graph_create(ctx, &g));
  OK(pf_graph_slice(g, PF_DEVICE_CPU, 1, &c1));
  OK(pf_graph_slice(g, kind, 1, &mid));
  OK(pf_graph_slice(g, PF_DEVICE_CPU, 1, &c2));
  OK(pf_graph_input(g, "x", &xs, c1, pf_replicated(), &x));
  a = scale(g, c1, x, 3);
  b = add(g, mid, a, a);
  b = prog(g, "relu", mid, NULL, 1, &b, NULL);
  c = add(g, c2, b, x);
  OK(pf_graph_output(g, "c", c));
  OK(pf_graph_output(g, "b", b));
  return compile(g);
}

static void test_cpu_gpu_cpu(void **state) {
  (void)state;
  compare(build_mixed, 1, (feed_desc[]){{"x", pf_spec_2d(PF_F32, 16, 24)}}, 2,
          (const char *[]){"c", "b"});
}

/* ---- (iii) reshards between GPUs ------------------------------------------ */

/* x [8,16] split(0) over 2 devices; y = 2x there; consumed replicated
 * (z), split(1) (w), and whole on the second device alone (v). */
static pf_executable *build_reshard(pf_device_kind kind) {
  pf_graph *g;
  pf_slice_t two, other, one;
  pf_value_t x, y, z, w, v;
  pf_spec xs = pf_spec_2d(PF_F32, 8, 16);
  pf_sharding rep = pf_replicated(), cols = pf_split(1);
  OK(pf_graph_create(ctx, &g));
  OK(pf_graph_slice(g, kind, 2, &two));
  OK(pf_graph_slice_pin(g, two, (int[]){0, 1}));
  OK(pf_graph_slice(g, kind, 2, &other));
  OK(pf_graph_slice_pin(g, other, (int[]){1, 0})); /* swapped: blocks cross */
  OK(pf_graph_slice(g, kind, 1, &one));
  OK(pf_graph_slice_pin(g, one, (int[]){1}));
  OK(pf_graph_input(g, "x", &xs, two, pf_split(0), &x));
  y = scale(g, two, x, 2);
  z = prog(g, "identity", two, NULL, 1, &y, &rep);
  w = prog(g, "identity", other, NULL, 1, &y, &cols);
  v = scale(g, one, y, -1);
  OK(pf_graph_output(g, "z", z));
  OK(pf_graph_output(g, "w", w));
  OK(pf_graph_output(g, "v", v));
  return compile(g);
}

static void test_reshard_between_gpus(void **state) {
  (void)state;
  if (n_gpus < 2) skip();
  compare(build_reshard, 1, (feed_desc[]){{"x", pf_spec_2d(PF_F32, 8, 16)}}, 3,
          (const char *[]){"z", "w", "v"});
}

/* ---- (iv) collectives on one rank ----------------------------------------- */

/* x [8,6] split(0) over 2 devices: s = allreduce(x + x); r = reduce_sum
 * over axis 0 (partial on each device), fetched (reduced for the fetch) and
 * consumed by 3r (reduced for the consumer). */
static pf_executable *build_collectives(pf_device_kind kind) {
  pf_graph *g;
  pf_slice_t two;
  pf_value_t x, y, s, r, t;
  pf_spec xs = pf_spec_2d(PF_F32, 8, 6);
  pf_attrs *a = attr_int("axis", 0);
  OK(pf_graph_create(ctx, &g));
  OK(pf_graph_slice(g, kind, 2, &two));
  OK(pf_graph_input(g, "x", &xs, two, pf_split(0), &x));
  y = add(g, two, x, x);
  OK(pf_graph_collective(g, &(pf_collective_desc){.kind = PF_ALLREDUCE, .slice = two, .in = y,
                                                  .op = PF_REDUCE_SUM},
                         &s, NULL));
  r = prog(g, "reduce_sum", two, a, 1, &x, NULL);
  pf_attrs_destroy(a);
  t = scale(g, two, r, 3);
  OK(pf_graph_output(g, "s", s));
  OK(pf_graph_output(g, "r", r));
  OK(pf_graph_output(g, "t", t));
  return compile(g);
}

static void test_local_collectives(void **state) {
  (void)state;
  if (n_gpus < 2) skip();
  compare(build_collectives, 1, (feed_desc[]){{"x", pf_spec_2d(PF_F32, 8, 6)}}, 3,
          (const char *[]){"s", "r", "t"});
}

/* ---- (v) matmul ----------------------------------------------------------- */

/* y = x @ w with x split by rows (w whole on each device), and
 * p = x @ w with x split(1) and w split(0) (a partial value, reduced). */
static pf_executable *build_matmul(pf_device_kind kind) {
  pf_graph *g;
  pf_slice_t s;
  pf_value_t x, w, y, p;
  pf_spec xs = pf_spec_2d(PF_F32, 16, 8), ws = pf_spec_2d(PF_F32, 8, 12);
  pf_sharding rows = pf_split(0), cols = pf_split(1);
  int n = n_gpus >= 2 ? 2 : 1;
  OK(pf_graph_create(ctx, &g));
  OK(pf_graph_slice(g, kind, n, &s));
  OK(pf_graph_input(g, "x", &xs, s, rows, &x));
  OK(pf_graph_input(g, "w", &ws, s, pf_replicated(), &w));
  y = prog(g, "matmul", s, NULL, 2, (pf_value_t[]){x, w}, (pf_sharding[]){rows, pf_replicated()});
  p = prog(g, "matmul", s, NULL, 2, (pf_value_t[]){x, w}, (pf_sharding[]){cols, rows});
  OK(pf_graph_output(g, "y", y));
  OK(pf_graph_output(g, "p", p));
  return compile(g);
}

static void test_matmul(void **state) {
  (void)state;
  compare(build_matmul, 2,
          (feed_desc[]){{"x", pf_spec_2d(PF_F32, 16, 8)}, {"w", pf_spec_2d(PF_F32, 8, 12)}}, 2,
          (const char *[]){"y", "p"});
}

/* ---- setup ------------------------------------------------------------- */

/* An NVIDIA driver is loaded (the loader's test too). */
static int nvidia_driver(void) {
  return access("/proc/driver/nvidia/version", F_OK) == 0 || access("/dev/nvidiactl", F_OK) == 0;
}

static void skipped(void) {
  printf("no GPU: skipped\n");
  fflush(stdout);
  exit(77);
}

/* ---- (vi) values kept on the GPU between executions ------------------------ */

/* y = 2x on GPU 0 (or CPU device 0), an output that stays on the device. */
static pf_executable *build_double(pf_device_kind kind, const char *in, const char *out) {
  pf_graph *g;
  pf_slice_t s;
  pf_value_t x;
  pf_spec xs = pf_spec_2d(PF_F32, 48, 40);
  OK(pf_graph_create(ctx, &g));
  OK(pf_graph_slice(g, kind, 1, &s));
  OK(pf_graph_slice_pin(g, s, (const int[]){0}));
  OK(pf_graph_input(g, in, &xs, s, pf_replicated(), &x));
  OK(pf_graph_output(g, out, scale(g, s, x, 2)));
  return compile(g);
}

/* x fed once; then y = 2x, and y fed back as its own input three times
 * (each output handed on before its execution ends, the last one donated),
 * fetches on the way: 2x, 4x, ..., 16x, on the GPU as on the CPU. */
static void test_values_stay_on_device(void **state) {
  pf_spec xs = pf_spec_2d(PF_F32, 48, 40);
  pf_tensor *x = ints(xs, 3), *got[2][2];
  (void)state;
  for (int k = 0; k < 2; k++) {
    pf_device_kind kind = k == 0 ? PF_DEVICE_GPU : PF_DEVICE_CPU;
    pf_executable *first = build_double(kind, "x", "y"), *again = build_double(kind, "y", "y");
    pf_future *f, *g;
    pf_buffer_t y;
    OK(pf_execute(first, 1, &(pf_feed){.name = "x", .tensor = x}, &f));
    OK(pf_future_output(f, "y", &y));
    pf_future_destroy(f);
    for (int i = 0; i < 3; i++) {
      OK(pf_execute(again, 1, &(pf_feed){.name = "y", .buffer = y, .donate = i == 2}, &g));
      if (i < 2) OK(pf_buffer_release(ctx, y));
      OK(pf_future_output(g, "y", &y));
      if (i == 0) OK(pf_buffer_fetch(ctx, y, &got[k][0])); /* 4x, fetched while kept */
      pf_future_destroy(g);
    }
    OK(pf_buffer_fetch(ctx, y, &got[k][1])); /* 16x */
    OK(pf_buffer_release(ctx, y));
    pf_executable_destroy(first);
    pf_executable_destroy(again);
  }
  for (int o = 0; o < 2; o++) {
    const float *a = pf_tensor_cdata(got[0][o]), *b = pf_tensor_cdata(got[1][o]);
    const float *xv = pf_tensor_cdata(x);
    for (int64_t i = 0; i < pf_spec_numel(&xs); i++) {
      if (a[i] != b[i] || b[i] != xv[i] * (o == 0 ? 4 : 16))
        fail_msg("output %d [%lld]: GPU %g, CPU %g, x %g", o, (long long)i, (double)a[i],
                 (double)b[i], (double)xv[i]);
    }
    pf_tensor_destroy(got[0][o]);
    pf_tensor_destroy(got[1][o]);
  }
  pf_tensor_destroy(x);
}

/* ---- (vii) a kernel error on the GPU --------------------------------------- */

#define XENT_ROWS 8
#define XENT_CLASSES 5

/* (loss, grad) = softmax_xent(logits, labels), one device. */
static pf_executable *build_xent(pf_device_kind kind) {
  pf_graph *g;
  pf_slice_t s;
  pf_value_t x, l, out[2];
  pf_spec xs = pf_spec_2d(PF_F32, XENT_ROWS, XENT_CLASSES), ls = pf_spec_1d(PF_I32, XENT_ROWS);
  OK(pf_graph_create(ctx, &g));
  OK(pf_graph_slice(g, kind, 1, &s));
  OK(pf_graph_input(g, "logits", &xs, s, pf_replicated(), &x));
  OK(pf_graph_input(g, "labels", &ls, s, pf_replicated(), &l));
  OK(pf_graph_program(g, &(pf_program_desc){.name = "xent", .kernel = "softmax_xent", .slice = s,
                                             .n_in = 2, .in = (pf_value_t[]){x, l}},
                      out, NULL));
  OK(pf_graph_output(g, "loss", out[0]));
  OK(pf_graph_output(g, "grad", out[1]));
  return compile(g);
}

/* Labels r % classes, but row 3's is 9 and row 6's -2 when bad. */
static pf_tensor *xent_labels(int bad) {
  pf_spec ls = pf_spec_1d(PF_I32, XENT_ROWS);
  pf_tensor *t;
  int32_t *v;
  OK(pf_tensor_create(&ls, &t));
  v = pf_tensor_data(t);
  for (int r = 0; r < XENT_ROWS; r++) v[r] = r % XENT_CLASSES;
  if (bad) {
    v[3] = XENT_CLASSES + 4;
    v[6] = -2;
  }
  return t;
}

/* What both devices must say: the CPU kernel's message for the first bad
 * row (a CUDA kernel records it in the stream's fault word, read when the
 * device's part ends: runtime/device_cuda.c), and the program and kernel. */
static void expect_label_error(pf_future *f, const char *where) {
  const char *msg = pf_future_error(f);
  static const char *const want[] = {
      "softmax_xent: row 3 has label 9; expected 0 <= label < 5",
      "program \"xent\"",
      "kernel \"softmax_xent\"",
  };
  assert_non_null(msg);
  for (size_t i = 0; i < sizeof want / sizeof *want; i++)
    if (strstr(msg, want[i]) == NULL)
      fail_msg("%s: the error \"%s\" does not contain \"%s\"", where, msg, want[i]);
}

/* A bad label fails the execution with PF_EKERNEL on either device, then
 * the same executable runs good labels; their results agree (to rounding:
 * exp and log are not exact). */
static void test_kernel_error_on_gpu(void **state) {
  pf_spec xs = pf_spec_2d(PF_F32, XENT_ROWS, XENT_CLASSES);
  pf_tensor *x = ints(xs, 5), *bad = xent_labels(1), *good = xent_labels(0), *got[2][2];
  (void)state;
  for (int k = 0; k < 2; k++) {
    pf_executable *exe = build_xent(k == 0 ? PF_DEVICE_GPU : PF_DEVICE_CPU);
    pf_future *f;
    OK(pf_execute(exe, 2,
                  (pf_feed[]){{.name = "logits", .tensor = x}, {.name = "labels", .tensor = bad}},
                  &f));
    assert_int_equal(pf_future_wait(f), PF_EKERNEL);
    expect_label_error(f, k == 0 ? "GPU" : "CPU");
    pf_future_destroy(f);
    /* Twice: the fault is cleared, the device and its memory still serve. */
    for (int rep = 0; rep < 2; rep++) {
      OK(pf_execute(exe, 2,
                    (pf_feed[]){{.name = "logits", .tensor = x}, {.name = "labels", .tensor = good}},
                    &f));
      OK(pf_future_wait(f));
      if (rep == 1) {
        OK(pf_future_fetch(f, "loss", &got[k][0]));
        OK(pf_future_fetch(f, "grad", &got[k][1]));
      }
      pf_future_destroy(f);
    }
    pf_executable_destroy(exe);
  }
  for (int o = 0; o < 2; o++) {
    const float *a = pf_tensor_cdata(got[0][o]), *b = pf_tensor_cdata(got[1][o]);
    int64_t n = pf_spec_numel(pf_tensor_spec(got[1][o]));
    assert_true(pf_spec_equal(pf_tensor_spec(got[0][o]), pf_tensor_spec(got[1][o])));
    for (int64_t i = 0; i < n; i++)
      if (!(fabs((double)a[i] - (double)b[i]) <= 1e-5 * fmax(1, fabs((double)b[i]))))
        fail_msg("%s[%lld]: GPU %.9g, CPU %.9g", o == 0 ? "loss" : "grad", (long long)i,
                 (double)a[i], (double)b[i]);
    pf_tensor_destroy(got[0][o]);
    pf_tensor_destroy(got[1][o]);
  }
  pf_tensor_destroy(x);
  pf_tensor_destroy(bad);
  pf_tensor_destroy(good);
}

/* ---- (viii) a user GPU kernel gets its device's stream --------------------- */

/* "stream_probe", y = x, registered for CPUs and GPUs through
 * pf_init_options.kernels. The GPU twin cannot move data in this program:
 * the guarded GPU's memory is host-inaccessible, and this program does
 * not link CUDA (tests/cuda/test_cuda_user_kernel.c runs a user kernel
 * that queues real work on the stream). So it checks the stream, records
 * it per device and writes nothing: its output is never fetched. Either
 * twin fails, naming itself, on the wrong stream. */
#define PROBE_DEVICES 64
static _Atomic(void *) probe_stream[PROBE_DEVICES];
static atomic_int probe_gpu_calls, probe_cpu_calls;

static int probe_shape(const pf_attrs *attrs, int n_in, const pf_spec *in, int n_out,
                       pf_spec *out, pf_diag *diag) {
  (void)attrs;
  (void)n_in;
  (void)n_out;
  (void)diag;
  out[0] = in[0];
  return 0;
}

static int probe_gpu(const pf_kernel_call *call) {
  if (call->stream == NULL)
    return pf_diag_error(call->diag, PF_EINVAL,
                         "stream_probe on GPU device %d: call->stream is NULL; a GPU kernel "
                         "is given its device's stream",
                         call->device);
  if (call->device < 0 || call->device >= PROBE_DEVICES)
    return pf_diag_error(call->diag, PF_EINVAL, "stream_probe: device %d, expected < %d",
                         call->device, PROBE_DEVICES);
  atomic_store(&probe_stream[call->device], call->stream);
  atomic_fetch_add(&probe_gpu_calls, 1);
  return 0;
}

static int probe_cpu(const pf_kernel_call *call) {
  if (call->stream != NULL)
    return pf_diag_error(call->diag, PF_EINVAL,
                         "stream_probe on CPU device %d: call->stream is %p; expected NULL",
                         call->device, call->stream);
  memcpy(call->out[0].data, call->in[0].data, pf_spec_nbytes(&call->in[0].spec));
  atomic_fetch_add(&probe_cpu_calls, 1);
  return 0;
}

static const pf_kernel_def probe_kernels[] = {
    {.name = "stream_probe", .kind = PF_DEVICE_GPU, .n_in = 1, .n_out = 1,
     .shape = probe_shape, .sharding = pf_sharding_rule_elementwise, .compute = probe_gpu},
    {.name = "stream_probe", .kind = PF_DEVICE_CPU, .n_in = 1, .n_out = 1,
     .shape = probe_shape, .sharding = pf_sharding_rule_elementwise, .compute = probe_cpu},
};

/* p = stream_probe(x) and y = 2x, x split over n devices. */
static pf_executable *build_probe(pf_device_kind kind, int n) {
  pf_graph *g;
  pf_slice_t s;
  pf_value_t x;
  pf_spec xs = pf_spec_2d(PF_F32, 8, 4);
  OK(pf_graph_create(ctx, &g));
  OK(pf_graph_slice(g, kind, n, &s));
  OK(pf_graph_input(g, "x", &xs, s, n > 1 ? pf_split(0) : pf_replicated(), &x));
  OK(pf_graph_output(g, "p", prog(g, "stream_probe", s, NULL, 1, &x, NULL)));
  OK(pf_graph_output(g, "y", scale(g, s, x, 2)));
  return compile(g);
}

static void test_user_kernel_stream(void **state) {
  pf_spec xs = pf_spec_2d(PF_F32, 8, 4);
  pf_tensor *x = ints(xs, 2), *y, *p;
  int n = n_gpus >= 2 ? 2 : 1, distinct = 0;
  (void)state;
  for (int k = 0; k < 2; k++) {
    pf_executable *exe = build_probe(k == 0 ? PF_DEVICE_GPU : PF_DEVICE_CPU, k == 0 ? n : 1);
    pf_future *f;
    for (int d = 0; d < PROBE_DEVICES; d++) atomic_store(&probe_stream[d], NULL);
    atomic_store(&probe_gpu_calls, 0);
    atomic_store(&probe_cpu_calls, 0);
    OK(pf_execute(exe, 1, &(pf_feed){.name = "x", .tensor = x}, &f));
    OK(pf_future_wait(f));
    OK(pf_future_fetch(f, "y", &y));
    for (int64_t i = 0; i < pf_spec_numel(&xs); i++)
      assert_true(((const float *)pf_tensor_cdata(y))[i] ==
                  2 * ((const float *)pf_tensor_cdata(x))[i]);
    pf_tensor_destroy(y);
    if (k == 0) {
      /* One call per GPU of the slice, each with its own device's stream. */
      assert_int_equal(atomic_load(&probe_gpu_calls), n);
      assert_int_equal(atomic_load(&probe_cpu_calls), 0);
      for (int d = 0; d < PROBE_DEVICES; d++) {
        void *sd = atomic_load(&probe_stream[d]);
        int dup = 0;
        for (int e = 0; e < d && sd != NULL; e++) dup |= atomic_load(&probe_stream[e]) == sd;
        distinct += sd != NULL && !dup;
      }
      assert_int_equal(distinct, n);
    } else {
      assert_int_equal(atomic_load(&probe_cpu_calls), 1);
      assert_int_equal(atomic_load(&probe_gpu_calls), 0);
      OK(pf_future_fetch(f, "p", &p));
      assert_memory_equal(pf_tensor_cdata(p), pf_tensor_cdata(x), pf_spec_nbytes(&xs));
      pf_tensor_destroy(p);
    }
    pf_future_destroy(f);
    pf_executable_destroy(exe);
  }
  pf_tensor_destroy(x);
}

int main(void) {
  const char *cuda = getenv("PATHFLOW_CUDA");
  const char *gg = getenv("PATHFLOW_GUARDED_GPUS");
  int real = cuda != NULL && strcmp(cuda, "0") != 0 && getenv("PATHFLOW_DEVICE_PLUGINS") == NULL;
  int rc;
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_feed_chain_fetch),  cmocka_unit_test(test_cpu_gpu_cpu),
      cmocka_unit_test(test_reshard_between_gpus), cmocka_unit_test(test_local_collectives),
      cmocka_unit_test(test_matmul), cmocka_unit_test(test_values_stay_on_device),
      cmocka_unit_test(test_kernel_error_on_gpu), cmocka_unit_test(test_user_kernel_stream),
  };
  if (real && !nvidia_driver()) skipped();
  if ((rc = pf_init(NULL, NULL,
                    &(pf_init_options){.cpu_devices = 2,
                                       .kernels = probe_kernels,
                                       .n_kernels = 2},
                    &ctx)) != 0) {
    /* A machine with a GPU must not skip because the plugin failed: pf_init
     * said why on stderr. */
    fprintf(stderr, "pf_init: %s\n", pf_errname(rc));
    return 1;
  }
  n_gpus = pf_device_count(ctx, PF_DEVICE_GPU);
  if (n_gpus == 0 && real) {
    pf_finalize(ctx);
    skipped();
  }
  if (!real) {
    /* Every guarded GPU the plugin was told to start, none other. */
    int want = gg != NULL ? atoi(gg) : 2;
    if (n_gpus != want) {
      fprintf(stderr,
              "%d GPU devices, expected %d guarded ones: is PATHFLOW_DEVICE_PLUGINS "
              "(%s) loaded?\n",
              n_gpus, want,
              getenv("PATHFLOW_DEVICE_PLUGINS") ? getenv("PATHFLOW_DEVICE_PLUGINS") : "unset");
      pf_finalize(ctx);
      return 1;
    }
  }
  rc = cmocka_run_group_tests(tests, NULL, NULL);
  if (pf_finalize(ctx) != 0) return 1;
  return rc;
}
