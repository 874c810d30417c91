/* Derived gradients (pf_graph_grad).
 *
 * Every gradient rule against central finite differences in f64: a kernel's
 * output is weighted by a fixed random tensor and summed to a scalar loss,
 * the loss is differentiated with respect to every differentiable input, on
 * slices of 1, 2 and 4 devices with the inputs fed replicated and split
 * along each axis; the finite differences run on one device. Then the
 * gradient of a small MLP, fed split by rows (data parallel), against a
 * plain-C backward pass over the whole batch, and the refusals. */
#include "testing.h"

#include "graph/graph_internal.h" /* to count the inserted allreduces */

static pf_context *ctx;

static int setup(void **state) {
  (void)state;
  return pf_init(NULL, NULL, &(pf_init_options){.cpu_devices = 4}, &ctx);
}

static int teardown(void **state) {
  (void)state;
  return pf_finalize(ctx);
}

#define MAX_IN 2

typedef struct gcase {
  const char *label;
  const char *kernel;
  int n_in;
  pf_spec in[MAX_IN];
  int diff[MAX_IN];        /* 1: differentiate with respect to this input */
  const char *attr[2];     /* int attributes */
  int64_t val[2];
  int out;                 /* which output the loss weighs */
  int labels;              /* input 1 holds class labels in [0, labels) */
} gcase;

static pf_tensor *make(const pf_spec *spec, int seed, int labels) {
  pf_tensor *t;
  OK(pf_tensor_create(spec, &t));
  for (int64_t i = 0; i < pf_spec_numel(spec); i++) {
    uint64_t h = (uint64_t)(i + 3) * 2654435761u + (uint64_t)seed * 97u;
    double v = (double)(h % 10007) / 10007.0 * 2 - 1;
    if (spec->dtype == PF_I64) {
      ((int64_t *)pf_tensor_data(t))[i] = (int64_t)(h % (uint64_t)labels);
    } else {
      if (fabs(v) < 0.05) v += 0.1; /* keep relu away from its kink */
      ((double *)pf_tensor_data(t))[i] = v;
    }
  }
  return t;
}

typedef struct built {
  pf_executable *exe;
  pf_spec out_spec;
} built;

/* loss = sum(kernel(in)[out] * w); with `grads`, also the gradients of the
 * differentiable inputs as outputs "g0", "g1". Inputs fed with `sh` on a
 * slice of n devices. */
static void build(const gcase *k, int n, const pf_sharding *sh, int grads, built *b) {
  pf_graph *g;
  pf_slice_t s;
  pf_value_t in[MAX_IN], outs[4], y, w, prod, params[MAX_IN], gv[MAX_IN];
  pf_attrs *a;
  int n_params = 0;
  OK(pf_graph_create(ctx, &g));
  OK(pf_graph_slice(g, PF_DEVICE_CPU, n, &s));
  for (int i = 0; i < k->n_in; i++) {
    char name[16];
    snprintf(name, sizeof name, "in%d", i);
    OK(pf_graph_input(g, name, &k->in[i], s, sh[i], &in[i]));
    if (k->diff[i]) params[n_params++] = in[i];
  }
  OK(pf_attrs_create(&a));
  for (int i = 0; i < 2 && k->attr[i]; i++) OK(pf_attrs_set_int(a, k->attr[i], k->val[i]));
  if (strcmp(k->kernel, "scale") == 0) OK(pf_attrs_set_float(a, "alpha", -1.75));
  OK(pf_graph_program(g, &(pf_program_desc){.name = "f", .kernel = k->kernel, .attrs = a,
                                            .slice = s, .n_in = k->n_in, .in = in},
                      outs, NULL));
  pf_attrs_destroy(a);
  y = outs[k->out];
  OK(pf_graph_value_spec(g, y, &b->out_spec));
  OK(pf_graph_input(g, "w", &b->out_spec, s, pf_replicated(), &w));
  OK(pf_graph_program(g, &(pf_program_desc){.name = "weigh", .kernel = "mul", .slice = s,
                                            .n_in = 2, .in = (pf_value_t[]){y, w}},
                      &prod, NULL));
  for (int r = b->out_spec.rank; r > 0; r--)
    OK(pf_graph_program(g, &(pf_program_desc){.kernel = "reduce_sum", .slice = s, .n_in = 1,
                                              .in = &prod},
                        &prod, NULL));
  OK(pf_graph_output(g, "loss", prod));
  if (grads) {
    OK(pf_graph_grad(g, prod, n_params, params, gv));
    for (int i = 0; i < n_params; i++) {
      char name[16];
      pf_spec gs, ps;
      snprintf(name, sizeof name, "g%d", i);
      /* Gradients come back in the parameter's layout. */
      OK(pf_graph_value_spec(g, gv[i], &gs));
      OK(pf_graph_value_spec(g, params[i], &ps));
      assert_true(pf_spec_equal(&gs, &ps));
      assert_int_equal(g->values[gv[i].id].sharding.kind, g->values[params[i].id].sharding.kind);
      OK(pf_graph_output(g, name, gv[i]));
    }
  }
  OK(pf_compile(g, &b->exe));
  pf_graph_destroy(g);
}

static pf_future *run(built *b, int n_in, pf_tensor *const *data, pf_tensor *w) {
  pf_feed feeds[MAX_IN + 1];
  pf_future *f;
  static const char *names[] = {"in0", "in1"};
  for (int i = 0; i < n_in; i++) feeds[i] = (pf_feed){.name = names[i], .tensor = data[i]};
  feeds[n_in] = (pf_feed){.name = "w", .tensor = w};
  OK(pf_execute(b->exe, n_in + 1, feeds, &f));
  OK(pf_future_wait(f));
  return f;
}

static double loss_of(built *b, int n_in, pf_tensor *const *data, pf_tensor *w) {
  pf_future *f = run(b, n_in, data, w);
  pf_tensor *t;
  double v;
  OK(pf_future_fetch(f, "loss", &t));
  v = ((double *)pf_tensor_data(t))[0];
  pf_tensor_destroy(t);
  pf_future_destroy(f);
  return v;
}

static int check_case(const gcase *k) {
  pf_tensor *data[MAX_IN], *w, *fd[MAX_IN] = {NULL, NULL};
  pf_sharding rep[MAX_IN] = {pf_replicated(), pf_replicated()};
  built ref;
  int checked = 0;
  for (int i = 0; i < k->n_in; i++) data[i] = make(&k->in[i], 5 + 11 * i, k->labels);
  build(k, 1, rep, 0, &ref);
  w = make(&ref.out_spec, 77, 0);
  /* Central differences, one element at a time, on one device. */
  for (int i = 0; i < k->n_in; i++) {
    double *x = pf_tensor_data(data[i]);
    if (!k->diff[i]) continue;
    OK(pf_tensor_create(&k->in[i], &fd[i]));
    for (int64_t j = 0; j < pf_spec_numel(&k->in[i]); j++) {
      const double h = 1e-5, keep = x[j];
      double up, down;
      x[j] = keep + h;
      up = loss_of(&ref, k->n_in, data, w);
      x[j] = keep - h;
      down = loss_of(&ref, k->n_in, data, w);
      x[j] = keep;
      ((double *)pf_tensor_data(fd[i]))[j] = (up - down) / (2 * h);
    }
  }
  pf_executable_destroy(ref.exe);
  /* Derived gradients on every layout. */
  for (int n = 1; n <= 4; n *= 2) {
    pf_sharding opts[MAX_IN][PF_MAX_RANK + 1];
    int n_opts[MAX_IN] = {1, 1};
    for (int i = 0; i < k->n_in; i++) {
      opts[i][0] = pf_replicated();
      for (int a = 0; a < k->in[i].rank; a++)
        if (k->in[i].dims[a] % 4 == 0) opts[i][n_opts[i]++] = pf_split(a);
    }
    for (int c0 = 0; c0 < n_opts[0]; c0++)
      for (int c1 = 0; c1 < (k->n_in > 1 ? n_opts[1] : 1); c1++) {
        pf_sharding sh[MAX_IN] = {opts[0][c0], opts[1][c1]};
        built b;
        pf_future *f;
        int gi = 0;
        build(k, n, sh, 1, &b);
        f = run(&b, k->n_in, data, w);
        for (int i = 0; i < k->n_in; i++) {
          char name[16], s0[32], s1[32];
          pf_tensor *got;
          if (!k->diff[i]) continue;
          snprintf(name, sizeof name, "g%d", gi++);
          OK(pf_future_fetch(f, name, &got));
          for (int64_t j = 0; j < pf_spec_numel(&k->in[i]); j++) {
            double want = ((double *)pf_tensor_data(fd[i]))[j];
            double v = ((double *)pf_tensor_data(got))[j];
            if (fabs(v - want) > 1e-6 * (1 + fabs(want)))
              fail_msg("%s on %d devices, inputs (%s, %s): d/d input %d element %lld "
                       "is %.12g, finite differences %.12g",
                       k->label, n, pf_sharding_str(sh[0], s0, sizeof s0),
                       k->n_in > 1 ? pf_sharding_str(sh[1], s1, sizeof s1) : "-", i,
                       (long long)j, v, want);
          }
          pf_tensor_destroy(got);
          checked++;
        }
        pf_future_destroy(f);
        pf_executable_destroy(b.exe);
      }
  }
  for (int i = 0; i < k->n_in; i++) {
    pf_tensor_destroy(data[i]);
    pf_tensor_destroy(fd[i]);
  }
  pf_tensor_destroy(w);
  return checked;
}

#define F64(...) pf_spec_make(PF_F64, ARGC(__VA_ARGS__), (int64_t[]){__VA_ARGS__})
#define ARGC(...) ARGC_(__VA_ARGS__, 4, 3, 2, 1)
#define ARGC_(a, b, c, d, n, ...) n

static void test_rules_against_finite_differences(void **state) {
  const gcase cases[] = {
      {"identity", "identity", 1, {F64(4, 8)}, {1}, {0}, {0}, 0, 0},
      {"scale", "scale", 1, {F64(4, 8)}, {1}, {0}, {0}, 0, 0},
      {"relu", "relu", 1, {F64(4, 8)}, {1}, {0}, {0}, 0, 0},
      {"add", "add", 2, {F64(4, 8), F64(4, 8)}, {1, 1}, {0}, {0}, 0, 0},
      {"sub", "sub", 2, {F64(4, 8), F64(4, 8)}, {1, 1}, {0}, {0}, 0, 0},
      {"mul", "mul", 2, {F64(4, 8), F64(4, 8)}, {1, 1}, {0}, {0}, 0, 0},
      {"add broadcast", "add", 2, {F64(4, 8), F64(8)}, {1, 1}, {0}, {0}, 0, 0},
      {"sub broadcast", "sub", 2, {F64(4, 1), F64(1, 8)}, {1, 1}, {0}, {0}, 0, 0},
      {"mul broadcast", "mul", 2, {F64(4, 8), F64(4, 1)}, {1, 1}, {0}, {0}, 0, 0},
      {"bias_add", "bias_add", 2, {F64(4, 8), F64(8)}, {1, 1}, {0}, {0}, 0, 0},
      {"matmul", "matmul", 2, {F64(4, 8), F64(8, 4)}, {1, 1}, {0}, {0}, 0, 0},
      {"matmul ta", "matmul", 2, {F64(8, 4), F64(8, 4)}, {1, 1}, {"transpose_a"}, {1}, 0, 0},
      {"matmul tb", "matmul", 2, {F64(4, 8), F64(4, 8)}, {1, 1}, {"transpose_b"}, {1}, 0, 0},
      {"matmul ta tb", "matmul", 2, {F64(8, 4), F64(4, 8)}, {1, 1},
       {"transpose_a", "transpose_b"}, {1, 1}, 0, 0},
      {"reduce_sum 0", "reduce_sum", 1, {F64(4, 8)}, {1}, {"axis"}, {0}, 0, 0},
      {"reduce_sum 1 keepdims", "reduce_sum", 1, {F64(4, 8)}, {1}, {"axis", "keepdims"},
       {1, 1}, 0, 0},
      {"softmax_xent", "softmax_xent", 2, {F64(4, 8), pf_spec_1d(PF_I64, 4)}, {1, 0},
       {0}, {0}, 0, 8},
      {"pack", "pack", 2, {F64(4, 8), F64(8)}, {1, 1}, {0}, {0}, 0, 0},
      {"pack, second input only", "pack", 2, {F64(4, 8), F64(8)}, {0, 1}, {0}, {0}, 0, 0},
      {"unpack", "unpack", 1, {F64(32)}, {1}, {"offset"}, {4}, 0, 0},
      {"unpack_grad", "unpack_grad", 1, {F64(4, 8)}, {1}, {"offset", "size"}, {3, 40}, 0, 0},
  };
  int checked = 0;
  (void)state;
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) checked += check_case(&cases[i]);
  print_message("%d gradients checked against finite differences\n", checked);
  assert_true(checked > 100);
}

/* ---- a data-parallel MLP ------------------------------------------------ */

enum { B = 8, IN = 6, HID = 8, OUT = 4 };

/* Plain C: forward and backward of softmax_xent(relu(x W1 + b1) W2 + b2). */
static void mlp_reference(const double *x, const int64_t *lab, const double *w1,
                          const double *b1, const double *w2, const double *b2, double *gw1,
                          double *gb1, double *gw2, double *gb2) {
  double h[B][HID], a[B][HID], z[B][OUT], dz[B][OUT], da[B][HID];
  memset(gw1, 0, sizeof(double) * IN * HID);
  memset(gb1, 0, sizeof(double) * HID);
  memset(gw2, 0, sizeof(double) * HID * OUT);
  memset(gb2, 0, sizeof(double) * OUT);
  for (int r = 0; r < B; r++) {
    double max = -1e300, sum = 0;
    for (int j = 0; j < HID; j++) {
      h[r][j] = b1[j];
      for (int i = 0; i < IN; i++) h[r][j] += x[r * IN + i] * w1[i * HID + j];
      a[r][j] = h[r][j] > 0 ? h[r][j] : 0;
    }
    for (int o = 0; o < OUT; o++) {
      z[r][o] = b2[o];
      for (int j = 0; j < HID; j++) z[r][o] += a[r][j] * w2[j * OUT + o];
      if (z[r][o] > max) max = z[r][o];
    }
    for (int o = 0; o < OUT; o++) sum += exp(z[r][o] - max);
    for (int o = 0; o < OUT; o++)
      dz[r][o] = (exp(z[r][o] - max) / sum - (o == lab[r])) / B;
    for (int j = 0; j < HID; j++) {
      da[r][j] = 0;
      for (int o = 0; o < OUT; o++) da[r][j] += dz[r][o] * w2[j * OUT + o];
      if (h[r][j] <= 0) da[r][j] = 0;
    }
    for (int o = 0; o < OUT; o++) {
      gb2[o] += dz[r][o];
      for (int j = 0; j < HID; j++) gw2[j * OUT + o] += a[r][j] * dz[r][o];
    }
    for (int j = 0; j < HID; j++) {
      gb1[j] += da[r][j];
      for (int i = 0; i < IN; i++) gw1[i * HID + j] += x[r * IN + i] * da[r][j];
    }
  }
}

static void test_mlp_data_parallel(void **state) {
  const pf_spec specs[] = {F64(B, IN), pf_spec_1d(PF_I64, B), F64(IN, HID), F64(HID),
                           F64(HID, OUT), F64(OUT)};
  static const char *names[] = {"x", "labels", "w1", "b1", "w2", "b2"};
  pf_tensor *data[6];
  double want[4][IN * HID];
  (void)state;
  for (int i = 0; i < 6; i++) data[i] = make(&specs[i], 3 + i, OUT);
  mlp_reference(pf_tensor_data(data[0]), pf_tensor_data(data[1]), pf_tensor_data(data[2]),
                pf_tensor_data(data[3]), pf_tensor_data(data[4]), pf_tensor_data(data[5]),
                want[0], want[1], want[2], want[3]);
  for (int run = 0; run < 9; run++) {
    /* On 1, 2 and 4 devices; the loss on gathered logits, then on the rows
     * each device holds (mean_over: the global batch), then so with the
     * gradients left partial (pf_graph_grad_partial: the outputs sum them). */
    int n = 1 << (run % 3), rows_split = run >= 3, keep_partial = run >= 6;
    pf_attrs *xa;
    pf_graph *g;
    pf_slice_t s;
    pf_value_t v[6], h, z, loss[2], gv[4];
    pf_executable *exe;
    pf_future *f;
    pf_feed feeds[6];
    int allreduces = 0;
    OK(pf_graph_create(ctx, &g));
    OK(pf_graph_slice(g, PF_DEVICE_CPU, n, &s));
    /* The batch split over the devices, the parameters whole. */
    for (int i = 0; i < 6; i++) {
      OK(pf_graph_input(g, names[i], &specs[i], s, i < 2 ? pf_split(0) : pf_replicated(),
                        &v[i]));
      feeds[i] = (pf_feed){.name = names[i], .tensor = data[i]};
    }
#define P(kernel_, n_in_, ...)                                                           \
  OK(pf_graph_program(g, &(pf_program_desc){.kernel = kernel_, .slice = s, .n_in = n_in_, \
                                            .in = (pf_value_t[]){__VA_ARGS__}},          \
                      &h, NULL))
    P("matmul", 2, v[0], v[2]);
    P("bias_add", 2, h, v[3]);
    P("relu", 1, h);
    P("matmul", 2, h, v[4]);
    P("bias_add", 2, h, v[5]);
#undef P
    z = h;
    OK(pf_attrs_create(&xa));
    if (rows_split) OK(pf_attrs_set_int(xa, "mean_over", B));
    OK(pf_graph_program(g, &(pf_program_desc){.name = "xent", .kernel = "softmax_xent",
                                              .attrs = xa, .slice = s, .n_in = 2,
                                              .in = (pf_value_t[]){z, v[1]}},
                        loss, NULL));
    pf_attrs_destroy(xa);
    /* With mean_over the loss is computed on the rows where they are. */
    if (rows_split && n > 1)
      assert_int_equal(g->values[loss[0].id].sharding.kind, PF_SHARD_PARTIAL);
    if (keep_partial)
      OK(pf_graph_grad_partial(g, loss[0], 4, &v[2], gv));
    else
      OK(pf_graph_grad(g, loss[0], 4, &v[2], gv));
    for (size_t p = 0; p < g->n_programs; p++)
      allreduces += strcmp(g->programs[p].kernel, "pf.allreduce") == 0;
    /* Weights read whole by a computation split by rows: partial sums,
     * summed by pf_graph_grad, left so by pf_graph_grad_partial. */
    if (n > 1 && !keep_partial) assert_true(allreduces >= 1);
    for (int i = 0; keep_partial && i < 4; i++)
      assert_int_equal(g->values[gv[i].id].sharding.kind,
                       n > 1 ? PF_SHARD_PARTIAL : g->values[v[2 + i].id].sharding.kind);
    for (int i = 0; i < 4; i++) {
      char name[16];
      snprintf(name, sizeof name, "g%d", i);
      OK(pf_graph_output(g, name, gv[i]));
    }
    OK(pf_compile(g, &exe));
    OK(pf_execute(exe, 6, feeds, &f));
    OK(pf_future_wait(f));
    for (int i = 0; i < 4; i++) {
      char name[16];
      pf_tensor *t;
      snprintf(name, sizeof name, "g%d", i);
      OK(pf_future_fetch(f, name, &t));
      for (int64_t j = 0; j < pf_spec_numel(&specs[2 + i]); j++)
        if (fabs(((double *)pf_tensor_data(t))[j] - want[i][j]) > 1e-12)
          fail_msg("MLP on %d devices: gradient %d element %lld is %.17g, want %.17g", n,
                   i, (long long)j, ((double *)pf_tensor_data(t))[j], want[i][j]);
      pf_tensor_destroy(t);
    }
    pf_future_destroy(f);
    pf_executable_destroy(exe);
    pf_graph_destroy(g);
  }
  for (int i = 0; i < 6; i++) pf_tensor_destroy(data[i]);
}

/* ---- gradient buckets (pf_graph_allreduce_buckets) ---------------------- */

/* The data-parallel MLP of test_mlp_data_parallel on n devices; its partial
 * gradients (b2, w2, b1, w1: the order the backward pass makes them) and
 * loss summed by buckets of at most `cap` bytes (cap < 0: pf_graph_grad and
 * one allreduce each, the reference). Returns the outputs g0..g3 (w1, b1,
 * w2, b2) and the loss, and how many allreduces the graph has. */
static int bucketed_mlp(int n, long cap, pf_tensor *const *data, pf_tensor **got) {
  static const char *names[] = {"x", "labels", "w1", "b1", "w2", "b2"};
  const pf_spec specs[] = {F64(B, IN), pf_spec_1d(PF_I64, B), F64(IN, HID), F64(HID),
                           F64(HID, OUT), F64(OUT)};
  pf_graph *g;
  pf_slice_t s;
  pf_value_t v[6], h, loss[2], gv[4], sums[5], twice;
  pf_attrs *xa;
  pf_executable *exe;
  pf_future *f;
  pf_feed feeds[6];
  int allreduces = 0, before;
  OK(pf_graph_create(ctx, &g));
  OK(pf_graph_slice(g, PF_DEVICE_CPU, n, &s));
  for (int i = 0; i < 6; i++) {
    OK(pf_graph_input(g, names[i], &specs[i], s, i < 2 ? pf_split(0) : pf_replicated(),
                      &v[i]));
    feeds[i] = (pf_feed){.name = names[i], .tensor = data[i]};
  }
#define P(kernel_, n_in_, ...)                                                           \
  OK(pf_graph_program(g, &(pf_program_desc){.kernel = kernel_, .slice = s, .n_in = n_in_, \
                                            .in = (pf_value_t[]){__VA_ARGS__}},          \
                      &h, NULL))
  P("matmul", 2, v[0], v[2]);
  P("bias_add", 2, h, v[3]);
  P("relu", 1, h);
  P("matmul", 2, h, v[4]);
  P("bias_add", 2, h, v[5]);
#undef P
  OK(pf_attrs_create(&xa));
  OK(pf_attrs_set_int(xa, "mean_over", B));
  OK(pf_graph_program(g, &(pf_program_desc){.kernel = "softmax_xent", .attrs = xa,
                                            .slice = s, .n_in = 2,
                                            .in = (pf_value_t[]){h, v[1]}},
                      loss, NULL));
  pf_attrs_destroy(xa);
  if (cap < 0) {
    OK(pf_graph_grad(g, loss[0], 4, &v[2], gv));
    sums[4] = loss[0]; /* pf_graph_output sums it */
    for (int i = 0; i < 4; i++) sums[i] = gv[i];
  } else {
    pf_value_t in[5];
    OK(pf_graph_grad_partial(g, loss[0], 4, &v[2], gv));
    for (int i = 0; i < 4; i++) in[i] = gv[3 - i];
    in[4] = loss[0];
    OK(pf_graph_allreduce_buckets(g, 5, in, (size_t)cap, sums));
    for (int i = 0; i < 5; i++) {
      /* Summed: replicated now, or untouched on one device. */
      assert_int_equal(g->values[sums[i].id].sharding.kind,
                       n > 1 ? PF_SHARD_REPLICATED : g->values[in[i].id].sharding.kind);
      if (n == 1) assert_int_equal(sums[i].id, in[i].id);
    }
    for (int i = 0; i < 2; i++) { /* back in the order of the parameters */
      pf_value_t t = sums[i];
      sums[i] = sums[3 - i];
      sums[3 - i] = t;
    }
  }
  for (size_t p = 0; p < g->n_programs; p++)
    allreduces += strcmp(g->programs[p].kernel, "pf.allreduce") == 0;
  if (cap == 400 && n > 1) {
    /* The first bucket (b2, w2, b1) is packed, and its allreduce started,
     * before w1's gradient is computed, not after it. */
    int32_t *order = malloc(g->n_programs * sizeof *order), pack = -1, w1 = -1;
    int32_t w1_producer = g->values[gv[0].id].producer;
    pf_diag d;
    pf_diag_init(&d);
    OK(pf_graph_topo_order(g, order, &d));
    for (size_t k = 0; k < g->n_programs; k++) {
      if (strcmp(g->programs[order[k]].name, "bucket0/pack") == 0) pack = (int32_t)k;
      if (order[k] == w1_producer) w1 = (int32_t)k;
    }
    assert_true(pack >= 0 && w1 >= 0 && pack < w1);
    free(order);
  }
  /* Reading a bucketed partial gradient whole later takes its piece of
   * the bucket: no allreduce of its own. */
  before = (int)g->n_programs;
  OK(pf_graph_program(g, &(pf_program_desc){.kernel = "add", .slice = s, .n_in = 2,
                                            .in = (pf_value_t[]){gv[0], gv[0]}},
                      &twice, NULL));
  if (cap >= 0) assert_int_equal((int)g->n_programs, before + 1);
  for (int i = 0; i < 5; i++) {
    char name[16];
    snprintf(name, sizeof name, "g%d", i);
    OK(pf_graph_output(g, name, sums[i]));
  }
  OK(pf_graph_output(g, "twice", twice));
  OK(pf_compile(g, &exe));
  OK(pf_execute(exe, 6, feeds, &f));
  OK(pf_future_wait(f));
  for (int i = 0; i < 6; i++) {
    char name[16];
    snprintf(name, sizeof name, i < 5 ? "g%d" : "twice", i);
    OK(pf_future_fetch(f, name, &got[i]));
  }
  pf_future_destroy(f);
  pf_executable_destroy(exe);
  pf_graph_destroy(g);
  return allreduces;
}

/* Buckets give the unbucketed sums bit for bit (the local allreduce adds
 * the devices' buffers in the same order either way) with fewer
 * allreduces: all five values in one, one each at cap 0, and 352 + 392
 * bytes in two at cap 400 (b2 32, w2 256, b1 64 | w1 384, loss 8). */
static void test_allreduce_buckets(void **state) {
  const pf_spec specs[] = {F64(B, IN), pf_spec_1d(PF_I64, B), F64(IN, HID), F64(HID),
                           F64(HID, OUT), F64(OUT)};
  static const long caps[] = {-1, (long)(SIZE_MAX >> 1), 0, 400};
  /* On several devices; the reference's fifth, the loss's, comes with its output. */
  static const int want_allreduces[] = {4, 1, 5, 2};
  pf_tensor *data[6], *ref[6], *got[6];
  (void)state;
  for (int i = 0; i < 6; i++) data[i] = make(&specs[i], 3 + i, OUT);
  for (int n = 1; n <= 4; n *= 2) {
    assert_int_equal(bucketed_mlp(n, caps[0], data, ref), n > 1 ? want_allreduces[0] : 0);
    for (size_t c = 1; c < sizeof caps / sizeof caps[0]; c++) {
      int allreduces = bucketed_mlp(n, caps[c], data, got);
      if (allreduces != (n > 1 ? want_allreduces[c] : 0))
        fail_msg("cap %ld on %d devices: %d allreduces, want %d", caps[c], n, allreduces,
                 n > 1 ? want_allreduces[c] : 0);
      for (int i = 0; i < 6; i++) {
        const pf_spec *rs = pf_tensor_spec(ref[i]);
        assert_true(pf_spec_equal(rs, pf_tensor_spec(got[i])));
        if (memcmp(pf_tensor_data(ref[i]), pf_tensor_data(got[i]), pf_spec_nbytes(rs)) != 0)
          fail_msg("cap %ld on %d devices: output %d differs from one allreduce a value",
                   caps[c], n, i);
        pf_tensor_destroy(got[i]);
      }
    }
    for (int i = 0; i < 6; i++) pf_tensor_destroy(ref[i]);
  }
  for (int i = 0; i < 6; i++) pf_tensor_destroy(data[i]);
  { /* refusals */
    pf_graph *g;
    pf_value_t out;
    OK(pf_graph_create(ctx, &g));
    assert_int_equal(pf_graph_allreduce_buckets(g, 1, &(pf_value_t){7}, 0, &out), PF_EINVAL);
    assert_non_null(strstr(pf_last_error(ctx), "not in the graph"));
    assert_int_equal(pf_graph_allreduce_buckets(g, 0, &(pf_value_t){0}, 0, &out), PF_EINVAL);
    pf_graph_destroy(g);
  }
}

static void test_refusals(void **state) {
  pf_graph *g;
  pf_slice_t s;
  pf_value_t x, y, m, l, gv;
  pf_attrs *a;
  (void)state;
  OK(pf_graph_create(ctx, &g));
  OK(pf_graph_slice(g, PF_DEVICE_CPU, 1, &s));
  OK(pf_graph_input(g, "x", &(pf_spec){PF_F64, 1, {4}}, s, pf_replicated(), &x));
  OK(pf_graph_input(g, "n", &(pf_spec){PF_I64, 1, {4}}, s, pf_replicated(), &y));
  /* Not a scalar loss; not a float parameter. */
  assert_int_equal(pf_graph_grad(g, x, 1, &x, &gv), PF_EINVAL);
  assert_non_null(strstr(pf_last_error(ctx), "f64[4]"));
  OK(pf_graph_program(g, &(pf_program_desc){.kernel = "reduce_sum", .slice = s, .n_in = 1,
                                            .in = &x},
                      &l, NULL));
  assert_int_equal(pf_graph_grad(g, l, 1, &y, &gv), PF_EDTYPE);
  /* A kernel without a gradient rule on the way. */
  OK(pf_attrs_create(&a));
  OK(pf_attrs_set_float(a, "lr", 0.1));
  OK(pf_graph_program(g, &(pf_program_desc){.name = "step", .kernel = "sgd", .attrs = a,
                                            .slice = s, .n_in = 2,
                                            .in = (pf_value_t[]){x, x}},
                      &m, NULL));
  pf_attrs_destroy(a);
  OK(pf_graph_program(g, &(pf_program_desc){.kernel = "reduce_sum", .slice = s, .n_in = 1,
                                            .in = &m},
                      &l, NULL));
  assert_int_equal(pf_graph_grad(g, l, 1, &x, &gv), PF_ENOTSUP);
  assert_non_null(strstr(pf_last_error(ctx), "\"step\""));
  assert_non_null(strstr(pf_last_error(ctx), "sgd"));
  pf_graph_destroy(g);
}

/* A parameter the loss does not depend on gets zeros. */
static void test_unused_parameter(void **state) {
  pf_graph *g;
  pf_slice_t s;
  pf_value_t x, u, l, gv[2];
  pf_executable *exe;
  pf_future *f;
  pf_tensor *tx, *tu, *t;
  pf_spec spec = pf_spec_1d(PF_F64, 4);
  (void)state;
  OK(pf_graph_create(ctx, &g));
  OK(pf_graph_slice(g, PF_DEVICE_CPU, 2, &s));
  OK(pf_graph_input(g, "x", &spec, s, pf_split(0), &x));
  OK(pf_graph_input(g, "u", &spec, s, pf_split(0), &u));
  OK(pf_graph_program(g, &(pf_program_desc){.kernel = "reduce_sum", .slice = s, .n_in = 1,
                                            .in = &x},
                      &l, NULL));
  OK(pf_graph_grad(g, l, 2, (pf_value_t[]){x, u}, gv));
  OK(pf_graph_output(g, "gx", gv[0]));
  OK(pf_graph_output(g, "gu", gv[1]));
  OK(pf_compile(g, &exe));
  tx = make(&spec, 1, 0);
  tu = make(&spec, 2, 0);
  OK(pf_execute(exe, 2,
                (pf_feed[]){{.name = "x", .tensor = tx}, {.name = "u", .tensor = tu}}, &f));
  OK(pf_future_wait(f));
  OK(pf_future_fetch(f, "gx", &t));
  for (int j = 0; j < 4; j++) assert_true(((double *)pf_tensor_data(t))[j] == 1.0);
  pf_tensor_destroy(t);
  OK(pf_future_fetch(f, "gu", &t));
  for (int j = 0; j < 4; j++) assert_true(((double *)pf_tensor_data(t))[j] == 0.0);
  pf_tensor_destroy(t);
  pf_tensor_destroy(tx);
  pf_tensor_destroy(tu);
  pf_future_destroy(f);
  pf_executable_destroy(exe);
  pf_graph_destroy(g);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_rules_against_finite_differences),
      cmocka_unit_test(test_mlp_data_parallel),
      cmocka_unit_test(test_allreduce_buckets),
      cmocka_unit_test(test_refusals),
      cmocka_unit_test(test_unused_parameter),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
