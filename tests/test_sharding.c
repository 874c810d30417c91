/* Sharding rules: no layout gives a wrong answer.
 *
 * For every built-in kernel (and its attribute variants), every combination
 * of input shardings (replicated, split along each axis) and slices of 1 to
 * 4 devices, a program is built twice: with the inputs consumed by default
 * (the builder may pick another layout, reduce partial values, ...) and with
 * the combination fixed as its in_shardings. The default build must compile
 * and give the single-device answer; the fixed build must give it too, or be
 * refused with PF_ESHARDING before anything runs. Then the cases that were
 * silently wrong before sharding rules existed, and the refusals of graphs
 * that read a partial value as a whole one. */
#include "testing.h"

#include "graph/graph_internal.h" /* to see shardings and inserted programs */

static pf_context *ctx;

/* `call` must fail with `code`, and the message name every word given. */
#define REFUSED(call, code, ...)                                                   \
  do {                                                                             \
    int rc_ = (call);                                                              \
    const char *words_[] = {__VA_ARGS__};                                          \
    if (rc_ != (code))                                                             \
      fail_msg("%s: got %s, want %s (%s)", #call, pf_errname(rc_), pf_errname(code), \
               pf_last_error(ctx));                                                \
    for (size_t w_ = 0; w_ < sizeof words_ / sizeof words_[0]; w_++)               \
      if (strstr(pf_last_error(ctx), words_[w_]) == NULL)                          \
        fail_msg("%s: message \"%s\" does not name \"%s\"", #call,                 \
                 pf_last_error(ctx), words_[w_]);                                  \
  } while (0)

static int setup(void **state) {
  (void)state;
  return pf_init(NULL, NULL, &(pf_init_options){.cpu_devices = 4}, &ctx);
}

static int teardown(void **state) {
  (void)state;
  return pf_finalize(ctx);
}

#define MAX_IN 2

/* One kernel under test: its inputs' specs and attributes. */
typedef struct kcase {
  const char *label;
  const char *kernel;
  int n_in;
  pf_spec in[MAX_IN];
  const char *int_attr[2]; /* names of up to two int attributes */
  int64_t int_val[2];
  int out; /* which output to check */
} kcase;

/* Deterministic values, distinct enough that argmax has no ties and that a
 * summand read as the sum is far off. Labels stay in [0, classes). */
static pf_tensor *make(const pf_spec *spec, int seed, int64_t classes) {
  pf_tensor *t;
  OK(pf_tensor_create(spec, &t));
  for (int64_t i = 0; i < pf_spec_numel(spec); i++) {
    uint64_t h = (uint64_t)(i + 1) * 2654435761u + (uint64_t)seed * 40503u;
    double v = (double)(h % 1000003) / 1000003.0 - 0.37;
    switch (spec->dtype) {
      case PF_F64: ((double *)pf_tensor_data(t))[i] = v; break;
      case PF_I64: ((int64_t *)pf_tensor_data(t))[i] = (int64_t)(h % (uint64_t)classes); break;
      default: fail_msg("make: dtype %d", spec->dtype);
    }
  }
  return t;
}

static pf_attrs *attrs_of(const kcase *k) {
  pf_attrs *a;
  OK(pf_attrs_create(&a));
  for (int i = 0; i < 2 && k->int_attr[i]; i++)
    OK(pf_attrs_set_int(a, k->int_attr[i], k->int_val[i]));
  if (strcmp(k->kernel, "sgd") == 0) OK(pf_attrs_set_float(a, "lr", 0.5));
  if (strcmp(k->kernel, "scale") == 0) OK(pf_attrs_set_float(a, "alpha", -2.5));
  return a;
}

/* Builds kernel k on a slice of n devices, inputs fed with shardings
 * `feed_sh`, consumed as `in_sh` (NULL: default); runs it and returns the
 * output (NULL if the build or compile was refused: *refused gets the
 * code). */
static pf_tensor *run_case(const kcase *k, int n, const pf_sharding *feed_sh,
                           const pf_sharding *in_sh, pf_tensor *const *data,
                           int *refused) {
  pf_graph *g;
  pf_slice_t s;
  pf_value_t in[MAX_IN], outs[4];
  pf_attrs *a = attrs_of(k);
  pf_executable *exe = NULL;
  pf_future *f;
  pf_tensor *got = NULL;
  pf_feed feeds[MAX_IN];
  char names[MAX_IN][16];
  int rc;
  *refused = 0;
  OK(pf_graph_create(ctx, &g));
  OK(pf_graph_slice(g, PF_DEVICE_CPU, n, &s));
  for (int i = 0; i < k->n_in; i++) {
    snprintf(names[i], sizeof names[i], "in%d", i);
    OK(pf_graph_input(g, names[i], &k->in[i], s, feed_sh[i], &in[i]));
    feeds[i] = (pf_feed){.name = names[i], .tensor = data[i]};
  }
  rc = pf_graph_program(g, &(pf_program_desc){.name = "p", .kernel = k->kernel,
                                              .attrs = a, .slice = s,
                                              .n_in = k->n_in, .in = in,
                                              .in_shardings = in_sh},
                        outs, NULL);
  if (rc == 0) rc = pf_graph_output(g, "out", outs[k->out]);
  if (rc == 0) rc = pf_compile(g, &exe);
  if (rc != 0) {
    *refused = rc;
    goto done;
  }
  OK(pf_execute(exe, k->n_in, feeds, &f));
  OK(pf_future_wait(f));
  OK(pf_future_fetch(f, "out", &got));
  pf_future_destroy(f);
done:
  pf_executable_destroy(exe);
  pf_attrs_destroy(a);
  pf_graph_destroy(g);
  return got;
}

static void assert_close(const kcase *k, const char *what, pf_tensor *want,
                         pf_tensor *got) {
  const pf_spec *ws = pf_tensor_spec(want), *gs = pf_tensor_spec(got);
  char a[64], b[64];
  if (!pf_spec_equal(ws, gs))
    fail_msg("%s %s: output %s, want %s", k->label, what, pf_spec_str(gs, a, sizeof a),
             pf_spec_str(ws, b, sizeof b));
  for (int64_t i = 0; i < pf_spec_numel(ws); i++) {
    double w, v;
    if (ws->dtype == PF_I64) {
      w = (double)((const int64_t *)pf_tensor_data(want))[i];
      v = (double)((const int64_t *)pf_tensor_data(got))[i];
    } else {
      w = ((const double *)pf_tensor_data(want))[i];
      v = ((const double *)pf_tensor_data(got))[i];
    }
    if (fabs(v - w) > 1e-9 * (1 + fabs(w)))
      fail_msg("%s %s: element %lld is %.17g, want %.17g", k->label, what,
               (long long)i, v, w);
  }
}

/* The shardings one input can be fed with: replicated, split along each
 * axis that divides over 1..4 devices (not the broadcast 1s). */
static int feed_options(const pf_spec *s, pf_sharding *opts) {
  int n = 0;
  opts[n++] = pf_replicated();
  for (int a = 0; a < s->rank; a++)
    if (s->dims[a] % 12 == 0) opts[n++] = pf_split(a);
  return n;
}

/* Runs every layout of kernel k; counts the fixed layouts it computed and
 * those it refused into *fixed_ok and *fixed_refused. */
static int check_kernel(const kcase *k, int *fixed_ok, int *fixed_refused) {
  pf_tensor *data[MAX_IN], *want;
  pf_sharding opts[MAX_IN][PF_MAX_RANK + 1], rep[MAX_IN];
  int n_opts[MAX_IN] = {1, 1}, refused, runs = 0, ok_before = *fixed_ok;
  for (int i = 0; i < k->n_in; i++) {
    data[i] = make(&k->in[i], 11 + 7 * i, 12);
    n_opts[i] = feed_options(&k->in[i], opts[i]);
    rep[i] = pf_replicated();
  }
  want = run_case(k, 1, rep, NULL, data, &refused);
  if (want == NULL) fail_msg("%s: reference refused: %s", k->label, pf_last_error(ctx));
  for (int n = 1; n <= 4; n++)
    for (int c0 = 0; c0 < n_opts[0]; c0++)
      for (int c1 = 0; c1 < (k->n_in > 1 ? n_opts[1] : 1); c1++) {
        pf_sharding sh[MAX_IN] = {opts[0][c0], opts[1][c1]};
        char what[128], s0[32], s1[32];
        pf_tensor *got;
        snprintf(what, sizeof what, "on %d devices, inputs (%s, %s)", n,
                 pf_sharding_str(sh[0], s0, sizeof s0),
                 k->n_in > 1 ? pf_sharding_str(sh[1], s1, sizeof s1) : "-");
        /* Default consumption: always computable, always right. */
        got = run_case(k, n, sh, NULL, data, &refused);
        if (got == NULL)
          fail_msg("%s %s, default layout: refused: %s", k->label, what,
                   pf_last_error(ctx));
        assert_close(k, what, want, got);
        pf_tensor_destroy(got);
        /* Fixed consumption: right, or refused for its layout. */
        got = run_case(k, n, sh, sh, data, &refused);
        if (got == NULL) {
          if (refused != PF_ESHARDING && refused != PF_ESPLIT && refused != PF_ESHAPE)
            fail_msg("%s %s, fixed layout: refused with %s: %s", k->label, what,
                     pf_errname(refused), pf_last_error(ctx));
          ++*fixed_refused;
        } else {
          assert_close(k, what, want, got);
          pf_tensor_destroy(got);
          ++*fixed_ok;
        }
        runs++;
      }
  /* Every kernel computes on more layouts than the replicated one. */
  if (*fixed_ok - ok_before <= 4)
    fail_msg("%s: only %d fixed layouts computed", k->label, *fixed_ok - ok_before);
  for (int i = 0; i < k->n_in; i++) pf_tensor_destroy(data[i]);
  pf_tensor_destroy(want);
  return runs;
}

#define F64(...) pf_spec_make(PF_F64, PF_ARGC(__VA_ARGS__), (int64_t[]){__VA_ARGS__})
#define PF_ARGC(...) PF_ARGC_(__VA_ARGS__, 4, 3, 2, 1)
#define PF_ARGC_(a, b, c, d, n, ...) n

static void test_every_builtin_every_layout(void **state) {
  const kcase cases[] = {
      {"identity", "identity", 1, {F64(12, 24)}, {0}, {0}, 0},
      {"scale", "scale", 1, {F64(12, 24)}, {0}, {0}, 0},
      {"relu", "relu", 1, {F64(12, 24)}, {0}, {0}, 0},
      {"add", "add", 2, {F64(12, 24), F64(12, 24)}, {0}, {0}, 0},
      {"sub", "sub", 2, {F64(12, 24), F64(12, 24)}, {0}, {0}, 0},
      {"mul", "mul", 2, {F64(12, 24), F64(12, 24)}, {0}, {0}, 0},
      {"add broadcast row", "add", 2, {F64(12, 24), F64(24)}, {0}, {0}, 0},
      {"sub broadcast column", "sub", 2, {F64(12, 24), F64(12, 1)}, {0}, {0}, 0},
      {"mul broadcast both", "mul", 2, {F64(12, 1), F64(1, 24)}, {0}, {0}, 0},
      {"mul broadcast rank 3", "mul", 2, {F64(12, 1, 24), F64(12, 24)}, {0}, {0}, 0},
      {"relu_grad", "relu_grad", 2, {F64(12, 24), F64(12, 24)}, {0}, {0}, 0},
      {"sgd", "sgd", 2, {F64(12, 24), F64(12, 24)}, {0}, {0}, 0},
      {"bias_add", "bias_add", 2, {F64(12, 24), F64(24)}, {0}, {0}, 0},
      {"bias_add rank 3", "bias_add", 2, {F64(12, 12, 24), F64(24)}, {0}, {0}, 0},
      {"matmul", "matmul", 2, {F64(12, 24), F64(24, 36)}, {0}, {0}, 0},
      {"matmul ta", "matmul", 2, {F64(24, 12), F64(24, 36)}, {"transpose_a"}, {1}, 0},
      {"matmul tb", "matmul", 2, {F64(12, 24), F64(36, 24)}, {"transpose_b"}, {1}, 0},
      {"matmul ta tb", "matmul", 2, {F64(24, 12), F64(36, 24)},
       {"transpose_a", "transpose_b"}, {1, 1}, 0},
      {"reduce_sum 0", "reduce_sum", 1, {F64(12, 24)}, {"axis"}, {0}, 0},
      {"reduce_sum 1", "reduce_sum", 1, {F64(12, 24)}, {"axis"}, {1}, 0},
      {"reduce_sum 1 keepdims", "reduce_sum", 1, {F64(12, 24)}, {"axis", "keepdims"}, {1, 1}, 0},
      {"reduce_sum rank 3", "reduce_sum", 1, {F64(12, 12, 24)}, {"axis"}, {1}, 0},
      {"argmax 0", "argmax", 1, {F64(12, 24)}, {"axis"}, {0}, 0},
      {"argmax 1", "argmax", 1, {F64(12, 24)}, {"axis"}, {1}, 0},
      {"accuracy", "accuracy", 2, {F64(12, 12), pf_spec_1d(PF_I64, 12)}, {0}, {0}, 0},
      {"softmax_xent loss, rows split", "softmax_xent", 2,
       {F64(12, 12), pf_spec_1d(PF_I64, 12)}, {"mean_over"}, {12}, 0},
      {"softmax_xent grad, rows split", "softmax_xent", 2,
       {F64(12, 12), pf_spec_1d(PF_I64, 12)}, {"mean_over"}, {12}, 1},
      {"softmax_xent loss", "softmax_xent", 2,
       {F64(12, 12), pf_spec_1d(PF_I64, 12)}, {0}, {0}, 0},
      {"softmax_xent grad", "softmax_xent", 2,
       {F64(12, 12), pf_spec_1d(PF_I64, 12)}, {0}, {0}, 1},
      {"pack", "pack", 2, {F64(12, 24), F64(24)}, {0}, {0}, 0},
      {"unpack", "unpack", 1, {F64(48)}, {"offset"}, {12}, 0},
      {"unpack_grad", "unpack_grad", 1, {F64(12, 24)}, {"offset", "size"}, {12, 300}, 0},
  };
  int runs = 0, fixed_ok = 0, fixed_refused = 0;
  (void)state;
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
    runs += check_kernel(&cases[i], &fixed_ok, &fixed_refused);
  /* 1-input rank 2: 3 layouts; 2 inputs: 9 (bias_add 6); 4 slice sizes. */
  assert_true(runs > 400);
  /* Both branches ran: layouts computed and layouts refused. */
  print_message("%d layouts, %d fixed ones computed, %d refused\n", runs, fixed_ok, fixed_refused);
  assert_true(fixed_ok > 100 && fixed_refused > 100);
}

/* Constants: fill split keeps its per-device block, iota is replicated. */
static void test_fill_and_iota(void **state) {
  pf_graph *g;
  pf_slice_t s;
  pf_value_t v;
  pf_attrs *a;
  (void)state;
  OK(pf_graph_create(ctx, &g));
  OK(pf_graph_slice(g, PF_DEVICE_CPU, 2, &s));
  OK(pf_attrs_create(&a));
  OK(pf_attrs_set_ints(a, "shape", (int64_t[]){3}, 1));
  OK(pf_graph_program(g, &(pf_program_desc){.kernel = "fill", .attrs = a, .slice = s,
                                            .out_shardings = (pf_sharding[]){pf_split(0)}},
                      &v, NULL));
  REFUSED(pf_graph_program(g, &(pf_program_desc){.name = "ramp", .kernel = "iota",
                                                 .attrs = a, .slice = s,
                                                 .out_shardings = (pf_sharding[]){pf_split(0)}},
                           &v, NULL),
          PF_ESHARDING, "ramp", "iota", "split(0)", "replicated");
  REFUSED(pf_graph_program(g, &(pf_program_desc){.name = "sum_of_fills", .kernel = "fill",
                                                 .attrs = a, .slice = s,
                                                 .out_shardings = (pf_sharding[]){pf_partial()}},
                           &v, NULL),
          PF_ESHARDING, "sum_of_fills", "partial");
  pf_attrs_destroy(a);
  pf_graph_destroy(g);
}

/* The case from the issue: reduce_sum over axis 0 of f32[4,3] split(0) on 2
 * devices used to return f32[6] of partial sums. */
static void test_reduce_over_split_axis(void **state) {
  pf_graph *g;
  pf_slice_t s;
  pf_value_t x, y;
  pf_attrs *a;
  pf_executable *exe;
  pf_future *f;
  pf_tensor *t, *got;
  pf_spec spec = pf_spec_2d(PF_F32, 4, 3), want_spec = pf_spec_1d(PF_F32, 3);
  (void)state;
  OK(pf_graph_create(ctx, &g));
  OK(pf_graph_slice(g, PF_DEVICE_CPU, 2, &s));
  OK(pf_graph_input(g, "x", &spec, s, pf_split(0), &x));
  OK(pf_attrs_create(&a));
  OK(pf_attrs_set_int(a, "axis", 0));
  OK(pf_graph_program(g, &(pf_program_desc){.name = "colsum", .kernel = "reduce_sum",
                                            .attrs = a, .slice = s, .n_in = 1, .in = &x},
                      &y, NULL));
  OK(pf_graph_output(g, "y", y));
  /* The fetched output is the inserted allreduce's. */
  assert_int_equal(pf_graph_num_programs(g), 2);
  OK(pf_compile(g, &exe));
  OK(pf_tensor_create(&spec, &t));
  for (int i = 0; i < 12; i++) ((float *)pf_tensor_data(t))[i] = (float)(i + 1);
  OK(pf_execute(exe, 1, &(pf_feed){.name = "x", .tensor = t}, &f));
  OK(pf_future_wait(f));
  OK(pf_future_fetch(f, "y", &got));
  assert_true(pf_spec_equal(pf_tensor_spec(got), &want_spec));
  for (int j = 0; j < 3; j++)
    assert_float_equal(((float *)pf_tensor_data(got))[j], (float)(1 + 4 + 7 + 10 + 4 * j),
                       1e-6);
  pf_tensor_destroy(got);
  pf_tensor_destroy(t);
  pf_future_destroy(f);
  pf_executable_destroy(exe);
  pf_attrs_destroy(a);
  pf_graph_destroy(g);
}

/* Partial values: kept partial through linear kernels, reduced once for
 * every consumer that needs the whole value, summed as they lie by an
 * explicit allreduce, refused where they would be read as whole. */
static void test_partial_values(void **state) {
  pf_graph *g;
  pf_slice_t s, other;
  pf_value_t a, b, p, q, r, v;
  int before;
  (void)state;
  OK(pf_graph_create(ctx, &g));
  OK(pf_graph_slice(g, PF_DEVICE_CPU, 2, &s));
  OK(pf_graph_slice(g, PF_DEVICE_CPU, 4, &other));
  OK(pf_graph_input(g, "a", &(pf_spec){PF_F64, 2, {4, 6}}, s, pf_split(1), &a));
  OK(pf_graph_input(g, "b", &(pf_spec){PF_F64, 2, {6, 4}}, s, pf_split(0), &b));
  /* a split along K times b split along K: partial sums. */
  OK(pf_graph_program(g, &(pf_program_desc){.name = "ab", .kernel = "matmul", .slice = s,
                                            .n_in = 2, .in = (pf_value_t[]){a, b}},
                      &p, NULL));
  assert_int_equal(g->values[p.id].sharding.kind, PF_SHARD_PARTIAL);
  /* Linear: scale and add keep it partial, with no reduction. */
  before = pf_graph_num_programs(g);
  OK(pf_graph_program(g, &(pf_program_desc){.kernel = "scale", .slice = s, .n_in = 1,
                                            .in = &p},
                      &q, NULL));
  OK(pf_graph_program(g, &(pf_program_desc){.kernel = "add", .slice = s, .n_in = 2,
                                            .in = (pf_value_t[]){p, q}},
                      &r, NULL));
  assert_int_equal(pf_graph_num_programs(g), before + 2);
  assert_int_equal(g->values[r.id].sharding.kind, PF_SHARD_PARTIAL);
  /* relu needs the whole value: one allreduce, shared by two consumers. */
  OK(pf_graph_program(g, &(pf_program_desc){.name = "relu1", .kernel = "relu", .slice = s,
                                            .n_in = 1, .in = &r},
                      &v, NULL));
  OK(pf_graph_program(g, &(pf_program_desc){.name = "relu2", .kernel = "relu", .slice = s,
                                            .n_in = 1, .in = &r},
                      &v, NULL));
  assert_int_equal(pf_graph_num_programs(g), before + 5);
  assert_int_not_equal(g->programs[g->values[v.id].producer].in[0], r.id);
  /* Another slice size reads it reduced too. */
  OK(pf_graph_program(g, &(pf_program_desc){.kernel = "relu", .slice = other, .n_in = 1,
                                            .in = &r},
                      &v, NULL));
  assert_int_equal(pf_graph_num_programs(g), before + 6);
  /* Explicit collectives: a sum reads it as it lies, a max cannot. */
  OK(pf_graph_collective(g, &(pf_collective_desc){.name = "sum", .kind = PF_ALLREDUCE,
                                                  .slice = s, .in = r, .op = PF_REDUCE_SUM},
                         &v, NULL));
  assert_int_equal(g->programs[g->values[v.id].producer].in[0], r.id);
  REFUSED(pf_graph_collective(g, &(pf_collective_desc){.name = "max", .kind = PF_ALLREDUCE,
                                                       .slice = s, .in = r,
                                                       .op = PF_REDUCE_MAX},
                              &v, NULL),
          PF_ESHARDING, "max", "partial", "sum");
  /* A replicated value read as partial would count it twice. */
  REFUSED(pf_graph_program(g, &(pf_program_desc){.name = "twice", .kernel = "identity",
                                                 .slice = s, .n_in = 1, .in = &v,
                                                 .in_shardings = (pf_sharding[]){pf_partial()}},
                              &q, NULL),
          PF_ESHARDING, "twice", "partial");
  /* Graph inputs are never partial. */
  REFUSED(pf_graph_input(g, "p_in", &(pf_spec){PF_F64, 1, {4}}, s, pf_partial(), &v),
          PF_ESHARDING, "p_in", "partial");
  OK(pf_graph_output(g, "r", r));
  OK(pf_graph_validate(g));
  pf_graph_destroy(g);
}

/* A graph rewired (or decoded) so that a partial value is read as a whole
 * one is refused when it is compiled, naming the program and the value. */
static void test_rewired_partial_refused(void **state) {
  pf_graph *g;
  pf_slice_t s;
  pf_value_t a, p, w, v;
  pf_program_t relu;
  pf_executable *exe = NULL;
  (void)state;
  OK(pf_graph_create(ctx, &g));
  OK(pf_graph_slice(g, PF_DEVICE_CPU, 2, &s));
  OK(pf_graph_input(g, "a", &(pf_spec){PF_F64, 2, {4, 6}}, s, pf_split(1), &a));
  OK(pf_graph_input(g, "w", &(pf_spec){PF_F64, 1, {4}}, s, pf_replicated(), &w));
  {
    pf_attrs *ax;
    OK(pf_attrs_create(&ax));
    OK(pf_attrs_set_int(ax, "axis", 1));
    OK(pf_graph_program(g, &(pf_program_desc){.name = "rowsum", .kernel = "reduce_sum",
                                              .attrs = ax, .slice = s, .n_in = 1, .in = &a},
                        &p, NULL));
    pf_attrs_destroy(ax);
  }
  OK(pf_graph_program(g, &(pf_program_desc){.name = "act", .kernel = "relu", .slice = s,
                                            .n_in = 1, .in = &w},
                      &v, &relu));
  OK(pf_graph_output(g, "v", v));
  OK(pf_compile(g, &exe));
  pf_executable_destroy(exe);
  OK(pf_graph_set_input(g, relu, 0, p));
  REFUSED(pf_compile(g, &exe), PF_ESHARDING, "act", "partial", "reduce it first");
  pf_graph_destroy(g);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_every_builtin_every_layout),
      cmocka_unit_test(test_fill_and_iota),
      cmocka_unit_test(test_reduce_over_split_axis),
      cmocka_unit_test(test_partial_values),
      cmocka_unit_test(test_rewired_partial_refused),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
