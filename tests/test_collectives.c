/* Collectives in one process with 4 CPU devices (every collective then runs
 * as one local op): every kind, every reduction and dtype, on slices of 1 to
 * 4 devices placed in order or pinned out of order, along every axis of a
 * rank-2 and two rank-3 tensors (and empty ones), against host references
 * computed from the fed tensor. Then chains of collectives in flight, a
 * graph that goes through encode/decode, and the refusals when a graph is
 * built. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pathflow.h"

static pf_context *ctx;

static int setup(void **state) {
  (void)state;
  return pf_init(NULL, NULL, &(pf_init_options){.cpu_devices = 4}, &ctx);
}

static int teardown(void **state) {
  (void)state;
  return pf_finalize(ctx);
}

#define OK(call)                                                                     \
  do {                                                                               \
    int rc_ = (call);                                                                \
    if (rc_ != 0) fail_msg("%s: %s: %s", #call, pf_errname(rc_), pf_last_error(ctx)); \
  } while (0)

#define REFUSED(call, code)                                                            \
  do {                                                                                 \
    int rc_ = (call);                                                                  \
    if (rc_ != (code))                                                                 \
      fail_msg("%s: got %s, want %s (%s)", #call, pf_errname(rc_), pf_errname(code),   \
               pf_last_error(ctx));                                                    \
  } while (0)

#include "collective_ref.h"

/* Every collective that applies to a value of `spec` on a slice of n
 * devices (pinned to `pin` if not NULL), from the value replicated and
 * split along every axis that divides; one graph, one execution, every
 * output checked. Returns the number of outputs checked. */
static int run_matrix(pf_spec spec, int n, const int *pin, int seed) {
  matrix *m = calloc(1, sizeof *m);
  pf_executable *exe;
  pf_future *f;
  pf_feed feeds[MAX_INPUTS];
  pf_tensor *x = make(spec, seed);
  char what[160], sbuf[64];
  int checked;
  assert_non_null(m);
  m->n = n;
  m->spec = spec;
  OK(pf_graph_create(ctx, &m->g));
  OK(pf_graph_slice(m->g, PF_DEVICE_CPU, n, &m->slice));
  if (pin) OK(pf_graph_slice_pin(m->g, m->slice, pin));
  add_input(m, pf_replicated());
  for (int a = 0; a < spec.rank; a++)
    if (spec.dims[a] % n == 0) add_input(m, pf_split(a));
  for (int i = 0; i < m->n_in; i++) {
    pf_spec b = spec;
    if (m->in_sh[i].kind == PF_SHARD_SPLIT) b.dims[m->in_sh[i].axis] /= n;
    for (int op = 0; op < PF_REDUCE_COUNT; op++) {
      if (!reducible(spec.dtype, op)) continue;
      add_check(m, i, PF_ALLREDUCE, op, 0, 0);
      for (int a = 0; a < spec.rank; a++)
        if (b.dims[a] % n == 0) add_check(m, i, PF_REDUCE_SCATTER, op, a, 0);
    }
    for (int root = 0; root < n; root++) add_check(m, i, PF_BROADCAST, 0, 0, root);
    for (int a = 0; a < spec.rank; a++) {
      if (spec.dims[a] % n != 0) continue;
      add_check(m, i, PF_ALLGATHER, 0, a, 0);
      if (m->in_sh[i].kind == PF_SHARD_SPLIT && m->in_sh[i].axis != a)
        add_check(m, i, PF_ALL_TO_ALL, 0, a, 0);
    }
  }
  OK(pf_compile(m->g, &exe));
  for (int i = 0; i < m->n_in; i++) feeds[i] = (pf_feed){.name = m->in_name[i], .tensor = x};
  OK(pf_execute(exe, m->n_in, feeds, &f));
  OK(pf_future_wait(f));
  for (int k = 0; k < m->n_checks; k++) {
    const check *c = &m->checks[k];
    pf_tensor *got, *want = reference(m, c, x);
    OK(pf_future_fetch(f, c->name, &got));
    snprintf(what, sizeof what, "%s over %d devices%s, x %s", c->name, n, pin ? " (pinned)" : "",
             pf_spec_str(&spec, sbuf, sizeof sbuf));
    expect_same(got, want, what);
    pf_tensor_destroy(got);
    pf_tensor_destroy(want);
  }
  checked = m->n_checks;
  pf_future_destroy(f);
  pf_executable_destroy(exe);
  pf_graph_destroy(m->g);
  pf_tensor_destroy(x);
  free(m);
  return checked;
}

/* Slices of 1 to 4 devices in placement order, and pinned out of order. */
static const struct {
  int n;
  int pin[4];
  int pinned;
} slices[] = {
    {1, {0}, 0}, {2, {0}, 0}, {3, {0}, 0}, {4, {0}, 0},
    {1, {2}, 1}, {2, {3, 1}, 1}, {3, {2, 0, 3}, 1}, {4, {3, 1, 0, 2}, 1},
};

/* [48,36]: axis 0 reduce-scatters over 2 and 4 devices from a block split
 * along it, axis 1 over 2 and 3. [12,6,8]: a middle axis. [1,12,8]: blocks
 * along axis 1 that are contiguous.
 * [0,12] and [12,0,4]: empty tensors. */
static const int64_t shapes[][3] = {{48, 36, 0}, {12, 6, 8}, {1, 12, 8}, {0, 12, 0}, {12, 0, 4}};

static void matrix_for(pf_dtype dt) {
  int total = 0;
  for (size_t sh = 0; sh < sizeof shapes / sizeof shapes[0]; sh++) {
    pf_spec spec = pf_spec_make(dt, shapes[sh][2] ? 3 : 2, shapes[sh]);
    for (size_t s = 0; s < sizeof slices / sizeof slices[0]; s++)
      total += run_matrix(spec, slices[s].n, slices[s].pinned ? slices[s].pin : NULL,
                          (int)(sh * 10 + s));
  }
  print_message("%s: %d collective outputs checked\n", pf_dtype_name(dt), total);
  assert_true(total > 100);
}

static void test_matrix_f32(void **state) { (void)state; matrix_for(PF_F32); }
static void test_matrix_f64(void **state) { (void)state; matrix_for(PF_F64); }
static void test_matrix_i32(void **state) { (void)state; matrix_for(PF_I32); }
static void test_matrix_i64(void **state) { (void)state; matrix_for(PF_I64); }
/* Storage types: no reductions, but gathers, broadcasts and all-to-alls
 * move their bytes. */
static void test_matrix_u8(void **state) { (void)state; matrix_for(PF_U8); }
static void test_matrix_bf16(void **state) { (void)state; matrix_for(PF_BF16); }

/* ---- chains, executions in flight ------------------------------------------- */

/* x[16,8] split by rows over 4 devices -> reduce_scatter(sum, axis 1) ->
 * all_to_all to axis 0 -> allgather(axis 0) on the same 4 -> allreduce(max)
 * over 2 other devices (each holds the whole value: max changes nothing) ->
 * broadcast(root 1) over 3 devices. Every intermediate is an output too;
 * 24 executions in flight, each with its own input. */
static void test_chain_in_flight(void **state) {
  enum { N = 24 };
  pf_graph *g;
  pf_executable *exe;
  pf_slice_t four, two, three;
  pf_value_t x, rs, a2a, ag, ar, bc;
  pf_spec spec = pf_spec_2d(PF_F64, 16, 8);
  pf_future *f[N];
  pf_tensor *xs[N];
  (void)state;
  OK(pf_graph_create(ctx, &g));
  OK(pf_graph_slice(g, PF_DEVICE_CPU, 4, &four));
  OK(pf_graph_slice(g, PF_DEVICE_CPU, 2, &two));
  OK(pf_graph_slice_pin(g, two, (int[]){3, 0}));
  OK(pf_graph_slice(g, PF_DEVICE_CPU, 3, &three));
  OK(pf_graph_slice_pin(g, three, (int[]){1, 3, 2}));
  OK(pf_graph_input(g, "x", &spec, four, pf_split(0), &x));
  OK(pf_graph_collective(g, &(pf_collective_desc){.kind = PF_REDUCE_SCATTER, .slice = four, .in = x,
                                                   .op = PF_REDUCE_SUM, .axis = 1},
                         &rs, NULL));
  OK(pf_graph_collective(g, &(pf_collective_desc){.kind = PF_ALL_TO_ALL, .slice = four, .in = rs,
                                                   .axis = 0},
                         &a2a, NULL));
  OK(pf_graph_collective(g, &(pf_collective_desc){.kind = PF_ALLGATHER, .slice = four, .in = a2a,
                                                   .axis = 0},
                         &ag, NULL));
  OK(pf_graph_collective(g, &(pf_collective_desc){.kind = PF_ALLREDUCE, .slice = two, .in = ag,
                                                   .op = PF_REDUCE_MAX},
                         &ar, NULL));
  OK(pf_graph_collective(g, &(pf_collective_desc){.kind = PF_BROADCAST, .slice = three, .in = ar,
                                                   .root = 1},
                         &bc, NULL));
  OK(pf_graph_output(g, "rs", rs));
  OK(pf_graph_output(g, "a2a", a2a));
  OK(pf_graph_output(g, "ag", ag));
  OK(pf_graph_output(g, "bc", bc));
  OK(pf_compile(g, &exe));
  for (int i = 0; i < N; i++) {
    xs[i] = make(spec, 100 + i);
    OK(pf_execute(exe, 1, &(pf_feed){.name = "x", .tensor = xs[i]}, &f[i]));
  }
  for (int i = 0; i < N; i++) {
    pf_tensor *sum = reduce_ref(xs[i], pf_split(0), 4, PF_REDUCE_SUM); /* [4,8] */
    const char *names[] = {"rs", "a2a", "ag", "bc"};
    OK(pf_future_wait(f[i]));
    for (int k = 0; k < 4; k++) {
      pf_tensor *got;
      char what[64];
      OK(pf_future_fetch(f[i], names[k], &got));
      snprintf(what, sizeof what, "execution %d: %s", i, names[k]);
      expect_same(got, sum, what);
      pf_tensor_destroy(got);
    }
    pf_tensor_destroy(sum);
    pf_tensor_destroy(xs[i]);
    pf_future_destroy(f[i]);
  }
  pf_executable_destroy(exe);
  pf_graph_destroy(g);
}

/* Collectives survive encode/decode: attributes (op, axis, root) included. */
static void test_encode_decode(void **state) {
  pf_graph *g, *g2;
  pf_executable *exe;
  pf_slice_t s;
  pf_value_t x, y[4];
  pf_spec spec = pf_spec_2d(PF_I64, 8, 12);
  uint8_t *buf;
  size_t len;
  (void)state;
  OK(pf_graph_create(ctx, &g));
  OK(pf_graph_slice(g, PF_DEVICE_CPU, 4, &s));
  OK(pf_graph_input(g, "x", &spec, s, pf_split(0), &x));
  OK(pf_graph_collective(g, &(pf_collective_desc){.name = "min", .kind = PF_ALLREDUCE, .slice = s,
                                                   .in = x, .op = PF_REDUCE_MIN},
                         &y[0], NULL));
  OK(pf_graph_collective(g, &(pf_collective_desc){.name = "rs", .kind = PF_REDUCE_SCATTER,
                                                   .slice = s, .in = x, .op = PF_REDUCE_MAX,
                                                   .axis = 1},
                         &y[1], NULL));
  OK(pf_graph_collective(g, &(pf_collective_desc){.name = "bc", .kind = PF_BROADCAST, .slice = s,
                                                   .in = x, .root = 2},
                         &y[2], NULL));
  OK(pf_graph_collective(g, &(pf_collective_desc){.name = "a2a", .kind = PF_ALL_TO_ALL, .slice = s,
                                                   .in = x, .axis = 1},
                         &y[3], NULL));
  OK(pf_graph_output(g, "min", y[0]));
  OK(pf_graph_output(g, "rs", y[1]));
  OK(pf_graph_output(g, "bc", y[2]));
  OK(pf_graph_output(g, "a2a", y[3]));
  OK(pf_graph_encode(g, &buf, &len));
  OK(pf_graph_decode(ctx, buf, len, &g2));
  free(buf);
  OK(pf_graph_validate(g2));
  OK(pf_compile(g2, &exe));
  pf_tensor *in = make(spec, 5), *got, *want;
  pf_future *f;
  OK(pf_execute(exe, 1, &(pf_feed){.name = "x", .tensor = in}, &f));
  OK(pf_future_wait(f));
  OK(pf_future_fetch(f, "min", &got));
  want = reduce_ref(in, pf_split(0), 4, PF_REDUCE_MIN);
  expect_same(got, want, "decoded allreduce min");
  pf_tensor_destroy(got);
  pf_tensor_destroy(want);
  OK(pf_future_fetch(f, "rs", &got));
  want = reduce_ref(in, pf_split(0), 4, PF_REDUCE_MAX);
  expect_same(got, want, "decoded reduce_scatter max");
  pf_tensor_destroy(got);
  pf_tensor_destroy(want);
  OK(pf_future_fetch(f, "bc", &got));
  want = block_of(in, pf_split(0), 4, 2);
  expect_same(got, want, "decoded broadcast root 2");
  pf_tensor_destroy(got);
  pf_tensor_destroy(want);
  OK(pf_future_fetch(f, "a2a", &got));
  expect_same(got, in, "decoded all_to_all");
  pf_tensor_destroy(got);
  pf_future_destroy(f);
  pf_tensor_destroy(in);
  pf_executable_destroy(exe);
  pf_graph_destroy(g);
  pf_graph_destroy(g2);
}

/* ---- refusals ------------------------------------------------------------------ */

static int collective(pf_graph *g, pf_collective_kind kind, pf_slice_t s, pf_value_t in, int op,
                      int axis, int root) {
  pf_value_t out;
  return pf_graph_collective(g, &(pf_collective_desc){.name = "bad", .kind = kind, .slice = s,
                                                       .in = in, .op = (pf_reduce_op)op,
                                                       .axis = axis, .root = root},
                             &out, NULL);
}

static void test_refusals(void **state) {
  pf_graph *g;
  pf_slice_t four, two;
  pf_value_t v[PF_DTYPE_COUNT], rep, one;
  pf_spec s2 = pf_spec_2d(PF_F32, 8, 12);
  int before;
  (void)state;
  OK(pf_graph_create(ctx, &g));
  OK(pf_graph_slice(g, PF_DEVICE_CPU, 4, &four));
  OK(pf_graph_slice(g, PF_DEVICE_CPU, 2, &two));
  for (int dt = 0; dt < PF_DTYPE_COUNT; dt++) {
    pf_spec s = pf_spec_2d((pf_dtype)dt, 8, 12);
    char name[16];
    snprintf(name, sizeof name, "x_%s", pf_dtype_name((pf_dtype)dt));
    OK(pf_graph_input(g, name, &s, four, pf_split(0), &v[dt]));
  }
  OK(pf_graph_input(g, "rep", &s2, four, pf_replicated(), &rep));
  OK(pf_graph_input(g, "one", &s2, two, pf_split(1), &one));
  before = pf_graph_num_programs(g);

  /* Reductions of dtypes that cannot be reduced; MEAN of ints. */
  const pf_dtype no_reduce[] = {PF_U8, PF_BF16, PF_F16};
  for (size_t i = 0; i < sizeof no_reduce / sizeof no_reduce[0]; i++)
    for (int op = 0; op < PF_REDUCE_COUNT; op++) {
      REFUSED(collective(g, PF_ALLREDUCE, four, v[no_reduce[i]], op, 0, 0), PF_EDTYPE);
      assert_non_null(strstr(pf_last_error(ctx), "\"bad\""));
      assert_non_null(strstr(pf_last_error(ctx), pf_dtype_name(no_reduce[i])));
      REFUSED(collective(g, PF_REDUCE_SCATTER, four, v[no_reduce[i]], op, 1, 0), PF_EDTYPE);
    }
  REFUSED(collective(g, PF_ALLREDUCE, four, v[PF_I32], PF_REDUCE_MEAN, 0, 0), PF_EDTYPE);
  REFUSED(collective(g, PF_ALLREDUCE, four, v[PF_I64], PF_REDUCE_MEAN, 0, 0), PF_EDTYPE);
  REFUSED(collective(g, PF_REDUCE_SCATTER, four, v[PF_I32], PF_REDUCE_MEAN, 1, 0), PF_EDTYPE);
  /* ...but they can be moved. */
  for (size_t i = 0; i < sizeof no_reduce / sizeof no_reduce[0]; i++) {
    pf_value_t out;
    OK(pf_graph_collective(g, &(pf_collective_desc){.kind = PF_BROADCAST, .slice = four,
                                                     .in = v[no_reduce[i]], .root = 3},
                           &out, NULL));
    OK(pf_graph_collective(g, &(pf_collective_desc){.kind = PF_ALLGATHER, .slice = four,
                                                     .in = v[no_reduce[i]], .axis = 0},
                           &out, NULL));
    OK(pf_graph_collective(g, &(pf_collective_desc){.kind = PF_ALL_TO_ALL, .slice = four,
                                                     .in = v[no_reduce[i]], .axis = 1},
                           &out, NULL));
  }
  before = pf_graph_num_programs(g);

  /* Bad op or kind. */
  REFUSED(collective(g, PF_ALLREDUCE, four, v[PF_F32], PF_REDUCE_COUNT, 0, 0), PF_EINVAL);
  REFUSED(collective(g, PF_REDUCE_SCATTER, four, v[PF_F32], -1, 0, 0), PF_EINVAL);
  REFUSED(collective(g, PF_COLLECTIVE_COUNT, four, v[PF_F32], 0, 0, 0), PF_EINVAL);
  REFUSED(collective(g, (pf_collective_kind)-1, four, v[PF_F32], 0, 0, 0), PF_EINVAL);
  REFUSED(collective(g, PF_ALLREDUCE, (pf_slice_t){7}, v[PF_F32], 0, 0, 0), PF_EINVAL);
  REFUSED(collective(g, PF_ALLREDUCE, four, (pf_value_t){1000}, 0, 0, 0), PF_EINVAL);

  /* Bad axes. x_f32 is [8,12] split(0) over 4: blocks [2,12]. */
  REFUSED(collective(g, PF_REDUCE_SCATTER, four, v[PF_F32], 0, 2, 0), PF_ESPLIT);
  REFUSED(collective(g, PF_REDUCE_SCATTER, four, v[PF_F32], 0, -1, 0), PF_ESPLIT);
  REFUSED(collective(g, PF_REDUCE_SCATTER, four, v[PF_F32], 0, 0, 0), PF_ESPLIT); /* 2 % 4 */
  REFUSED(collective(g, PF_ALLGATHER, four, v[PF_F32], 0, 2, 0), PF_ESPLIT);
  REFUSED(collective(g, PF_ALLGATHER, four, v[PF_F32], 0, -1, 0), PF_ESPLIT);
  REFUSED(collective(g, PF_ALLGATHER, two, one, 0, 7, 0), PF_ESPLIT);
  REFUSED(collective(g, PF_ALL_TO_ALL, four, v[PF_F32], 0, 2, 0), PF_ESPLIT);
  REFUSED(collective(g, PF_ALL_TO_ALL, four, v[PF_F32], 0, -1, 0), PF_ESPLIT);
  /* all_to_all: target axis == source axis, a replicated input, an input
   * from a slice of another size (consumed replicated). */
  REFUSED(collective(g, PF_ALL_TO_ALL, four, v[PF_F32], 0, 0, 0), PF_ESPLIT);
  assert_non_null(strstr(pf_last_error(ctx), "\"bad\""));
  REFUSED(collective(g, PF_ALL_TO_ALL, two, one, 0, 1, 0), PF_ESPLIT);
  REFUSED(collective(g, PF_ALL_TO_ALL, four, rep, 0, 1, 0), PF_ESPLIT);
  REFUSED(collective(g, PF_ALL_TO_ALL, four, one, 0, 0, 0), PF_ESPLIT);
  {
    /* [8,12] split(1) over 2 to axis 0 over... 12 split by 2 is fine, but
     * a target axis that does not divide: [6,12] split(1) over 4 -> 6 % 4. */
    pf_spec s = pf_spec_2d(PF_F32, 6, 12);
    pf_value_t w;
    OK(pf_graph_input(g, "w", &s, four, pf_split(1), &w));
    REFUSED(collective(g, PF_ALL_TO_ALL, four, w, 0, 0, 0), PF_ESPLIT);
    REFUSED(collective(g, PF_ALLGATHER, four, w, 0, 0, 0), PF_ESPLIT);
  }

  /* Roots outside the slice. */
  REFUSED(collective(g, PF_BROADCAST, four, v[PF_F32], 0, 0, 4), PF_EINVAL);
  assert_non_null(strstr(pf_last_error(ctx), "\"bad\""));
  REFUSED(collective(g, PF_BROADCAST, four, v[PF_F32], 0, 0, -1), PF_EINVAL);
  REFUSED(collective(g, PF_BROADCAST, two, one, 0, 0, 2), PF_EINVAL);

  /* Nothing refused was added, and the graph still compiles and runs. */
  assert_int_equal(pf_graph_num_programs(g), before);
  OK(pf_graph_validate(g));
  pf_graph_destroy(g);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_matrix_f32),   cmocka_unit_test(test_matrix_f64),
      cmocka_unit_test(test_matrix_i32),   cmocka_unit_test(test_matrix_i64),
      cmocka_unit_test(test_matrix_u8),    cmocka_unit_test(test_matrix_bf16),
      cmocka_unit_test(test_chain_in_flight), cmocka_unit_test(test_encode_decode),
      cmocka_unit_test(test_refusals),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
