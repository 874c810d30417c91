/* Collectives across ranks (one device per rank, so every collective over
 * more than one rank runs in the MPI transport, over point-to-point
 * messages among the slice's ranks): every kind, reduction and dtype, over every rank, a
 * subset of them, and slices pinned in orders other than rank order (shard
 * d of a slice is member d of its group), against host references
 * computed from the fed tensor. Also: collectives whose input lives on
 * other ranks, and matrices executed several times in flight. */
#include "mpi_common.h"

pf_context *ctx;
static int world;

/* test.step: y = x + 1 on an f64 scalar; fails on x equal to attribute
 * "poison". */
static int step_shape(const pf_attrs *attrs, int n_in, const pf_spec *in, int n_out, pf_spec *out,
                      pf_diag *diag) {
  (void)attrs;
  (void)n_in;
  (void)n_out;
  if (in[0].dtype != PF_F64 || in[0].rank != 0)
    return pf_diag_error(diag, PF_EDTYPE, "test.step takes an f64 scalar");
  out[0] = in[0];
  return 0;
}

static int step_compute(const pf_kernel_call *c) {
  double x = *(const double *)c->in[0].data;
  if (x == pf_attrs_get_float(c->attrs, "poison", -1))
    return pf_diag_error(c->diag, PF_EINVAL, "poisoned value %g", x);
  *(double *)c->out[0].data = x + 1.0;
  return 0;
}

static const pf_kernel_def step_kernel = {.name = "test.step", .kind = PF_DEVICE_CPU, .n_in = 1,
                                          .n_out = 1, .shape = step_shape,
                                          .compute = step_compute};

static int setup(void **state) {
  (void)state;
  if (pf_init(NULL, NULL,
              &(pf_init_options){.cpu_devices = 1, .kernels = &step_kernel, .n_kernels = 1},
              &ctx))
    return -1;
  world = pf_world_size(ctx);
  return world >= 2 ? 0 : -1;
}

static int teardown(void **state) {
  (void)state;
  return pf_finalize(ctx);
}

#include "../collective_ref.h"

/* Every collective that applies to a value of `spec` on a slice of n ranks
 * (pinned to ranks pin[0..n-1]: shard d on rank pin[d]), from the value
 * replicated and split along every axis that divides; one graph, `reps`
 * executions in flight with different inputs, every output of each
 * checked. Returns the number of outputs checked. */
static int run_matrix(pf_spec spec, int n, const int *pin, int seed, int reps) {
  matrix *m = calloc(1, sizeof *m);
  pf_executable *exe;
  pf_future *f[8];
  pf_tensor *x[8];
  char what[200], sbuf[64], where[64];
  int checked = 0, len = 0;
  assert_non_null(m);
  assert_true(reps >= 1 && reps <= 8);
  m->n = n;
  m->spec = spec;
  for (int d = 0; d < n; d++)
    len += snprintf(where + len, sizeof where - (size_t)len, "%s%d", d ? "," : "", pin[d]);
  OK(pf_graph_create(ctx, &m->g));
  OK(pf_graph_slice(m->g, PF_DEVICE_CPU, n, &m->slice));
  OK(pf_graph_slice_pin(m->g, m->slice, pin));
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
  for (int r = 0; r < reps; r++) {
    pf_feed feeds[MAX_INPUTS];
    x[r] = make(spec, seed + 1000 * r);
    for (int i = 0; i < m->n_in; i++) feeds[i] = (pf_feed){.name = m->in_name[i], .tensor = x[r]};
    OK(pf_execute(exe, m->n_in, feeds, &f[r]));
  }
  for (int r = 0; r < reps; r++) {
    OK(pf_future_wait(f[r]));
    for (int k = 0; k < m->n_checks; k++) {
      const check *c = &m->checks[k];
      pf_tensor *got, *want = reference(m, c, x[r]);
      OK(pf_future_fetch(f[r], c->name, &got));
      snprintf(what, sizeof what, "%s over ranks {%s}, x %s, execution %d", c->name, where,
               pf_spec_str(&spec, sbuf, sizeof sbuf), r);
      expect_same(got, want, what);
      pf_tensor_destroy(got);
      pf_tensor_destroy(want);
      checked++;
    }
    pf_future_destroy(f[r]);
    pf_tensor_destroy(x[r]);
  }
  pf_executable_destroy(exe);
  pf_graph_destroy(m->g);
  free(m);
  return checked;
}

/* Slices by rank lists. With 4 ranks: all of them in order and reversed,
 * ranks 1..3, a shuffle, a pair without rank 0, one rank other than 0.
 * With 2: in order, reversed, each alone. */
typedef struct slice_def {
  int n;
  int ranks[4];
} slice_def;

static const slice_def slices4[] = {
    {4, {0, 1, 2, 3}}, {4, {3, 2, 1, 0}}, {3, {1, 2, 3}}, {4, {2, 0, 3, 1}}, {2, {3, 1}}, {1, {2}},
};
static const slice_def slices2[] = {{2, {0, 1}}, {2, {1, 0}}, {1, {1}}, {1, {0}}};

/* [48,36]: axis 0 reduce-scatters over 2 and 4 ranks from a block split
 * along it, axis 1 over 2 and 3. [12,6,8]: a middle axis (strided blocks,
 * packed and unpacked). [1,12,8]: blocks along axis 1 that are contiguous.
 * [0,12] and [12,0,4]: empty tensors. */
static const int64_t shapes[][3] = {{48, 36, 0}, {12, 6, 8}, {1, 12, 8}, {0, 12, 0}, {12, 0, 4}};

static void matrix_for(pf_dtype dt) {
  const slice_def *sl = world >= 4 ? slices4 : slices2;
  size_t n_sl =
      world >= 4 ? sizeof slices4 / sizeof slices4[0] : sizeof slices2 / sizeof slices2[0];
  int total = 0;
  for (size_t sh = 0; sh < sizeof shapes / sizeof shapes[0]; sh++) {
    pf_spec spec = pf_spec_make(dt, shapes[sh][2] ? 3 : 2, shapes[sh]);
    for (size_t s = 0; s < n_sl; s++)
      /* The first slice (every rank in order) runs 3 executions in flight. */
      total += run_matrix(spec, sl[s].n, sl[s].ranks, (int)(sh * 10 + s), s == 0 ? 3 : 1);
  }
  print_message("%s on %d ranks: %d collective outputs checked\n", pf_dtype_name(dt), world, total);
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

/* The input lives split by rows over every rank in order; the collectives
 * run over the ranks reversed and over the last ranks, so the blocks cross
 * ranks first (point-to-point reshards) and then meet in the collective. */
static void test_input_from_other_ranks(void **state) {
  pf_graph *g;
  pf_executable *exe;
  pf_slice_t home, rev, tail;
  pf_value_t x, y[6];
  pf_spec spec = pf_spec_2d(PF_F64, 8 * world, 4 * world);
  int rranks[64], tranks[64], nt = world - 1;
  const char *names[6] = {"allreduce", "reduce_scatter", "broadcast", "allgather", "all_to_all",
                          "tail_sum"};
  (void)state;
  for (int i = 0; i < world; i++) rranks[i] = world - 1 - i;
  for (int i = 0; i < nt; i++) tranks[i] = i + 1;
  OK(pf_graph_create(ctx, &g));
  home = pinned_slice(g, world, 0);
  OK(pf_graph_slice(g, PF_DEVICE_CPU, world, &rev));
  OK(pf_graph_slice_pin(g, rev, rranks));
  OK(pf_graph_slice(g, PF_DEVICE_CPU, nt, &tail));
  OK(pf_graph_slice_pin(g, tail, tranks));
  OK(pf_graph_input(g, "x", &spec, home, pf_split(0), &x));
  OK(pf_graph_collective(g, &(pf_collective_desc){.kind = PF_ALLREDUCE, .slice = rev, .in = x,
                                                   .op = PF_REDUCE_MAX},
                         &y[0], NULL));
  OK(pf_graph_collective(g, &(pf_collective_desc){.kind = PF_REDUCE_SCATTER, .slice = rev, .in = x,
                                                   .op = PF_REDUCE_SUM, .axis = 1},
                         &y[1], NULL));
  OK(pf_graph_collective(g, &(pf_collective_desc){.kind = PF_BROADCAST, .slice = rev, .in = x,
                                                   .root = 1},
                         &y[2], NULL));
  OK(pf_graph_collective(g, &(pf_collective_desc){.kind = PF_ALLGATHER, .slice = rev, .in = x,
                                                   .axis = 1},
                         &y[3], NULL));
  OK(pf_graph_collective(g, &(pf_collective_desc){.kind = PF_ALL_TO_ALL, .slice = rev, .in = x,
                                                   .axis = 1},
                         &y[4], NULL));
  /* A slice of another size consumes x replicated: the sum is nt * x. */
  OK(pf_graph_collective(g, &(pf_collective_desc){.kind = PF_ALLREDUCE, .slice = tail, .in = x,
                                                   .op = PF_REDUCE_SUM},
                         &y[5], NULL));
  for (int k = 0; k < 6; k++) OK(pf_graph_output(g, names[k], y[k]));
  OK(pf_compile(g, &exe));
  pf_tensor *in = make(spec, 3);
  pf_future *f;
  pf_tensor *want[6];
  OK(pf_execute(exe, 1, &(pf_feed){.name = "x", .tensor = in}, &f));
  OK(pf_future_wait(f));
  want[0] = reduce_ref(in, pf_split(0), world, PF_REDUCE_MAX);
  want[1] = reduce_ref(in, pf_split(0), world, PF_REDUCE_SUM);
  want[2] = block_of(in, pf_split(0), world, 1);
  want[3] = block_of(in, pf_replicated(), 1, 0);
  want[4] = block_of(in, pf_replicated(), 1, 0);
  want[5] = block_of(in, pf_replicated(), 1, 0);
  for (int64_t i = 0; i < pf_spec_numel(&spec); i++) ((double *)pf_tensor_data(want[5]))[i] *= nt;
  for (int k = 0; k < 6; k++) {
    pf_tensor *got;
    OK(pf_future_fetch(f, names[k], &got));
    expect_same(got, want[k], names[k]);
    pf_tensor_destroy(got);
    pf_tensor_destroy(want[k]);
  }
  pf_future_destroy(f);
  pf_tensor_destroy(in);
  pf_executable_destroy(exe);
  pf_graph_destroy(g);
}

/* A chain of small allreduces over every rank, each read by one small
 * kernel (where the loop thread runs the ops, each kernel runs in its
 * allreduce's completion: executor.c, run_epilogue), executions in flight:
 * every result right; an execution whose kernel fails in the middle of the
 * chain fails alone, naming the program and the kernel, and the chain
 * runs on after it. */
static void test_chain_of_small_collectives(void **state) {
  enum { CHAIN = 48, RUNS = 12, BAD = 3 };
  pf_graph *g;
  pf_executable *exe;
  pf_slice_t all;
  pf_value_t v;
  pf_spec scalar = pf_spec_scalar(PF_F64);
  pf_attrs *attrs;
  pf_future *f[RUNS];
  pf_tensor *x[RUNS];
  (void)state;
  OK(pf_graph_create(ctx, &g));
  all = pinned_slice(g, world, 0);
  OK(pf_graph_input(g, "x", &scalar, all, pf_replicated(), &v));
  OK(pf_attrs_create(&attrs));
  /* Run BAD's value at its 8th computation. */
  OK(pf_attrs_set_float(attrs, "poison", 1000.0 * BAD + 7));
  for (int k = 0; k < CHAIN; k++) {
    pf_value_t a;
    char name[32];
    OK(pf_graph_collective(g, &(pf_collective_desc){.kind = PF_ALLREDUCE, .slice = all, .in = v,
                                                     .op = PF_REDUCE_MEAN},
                           &a, NULL));
    snprintf(name, sizeof name, "step_%d", k);
    OK(pf_graph_program(g, &(pf_program_desc){.name = name, .kernel = "test.step", .attrs = attrs,
                                               .slice = all, .n_in = 1, .in = &a},
                        &v, NULL));
  }
  pf_attrs_destroy(attrs);
  OK(pf_graph_output(g, "y", v));
  OK(pf_compile(g, &exe));
  for (int round = 0; round < 2; round++) {
    for (int i = 0; i < RUNS; i++) {
      double x0 = 1000.0 * i + (round ? 0.5 : 0);
      OK(pf_tensor_from(&scalar, &x0, sizeof x0, &x[i]));
      OK(pf_execute(exe, 1, &(pf_feed){.name = "x", .tensor = x[i]}, &f[i]));
    }
    for (int i = 0; i < RUNS; i++) {
      int rc = pf_future_wait(f[i]);
      if (round == 0 && i == BAD) {
        assert_int_not_equal(rc, 0);
        assert_non_null(strstr(pf_future_error(f[i]), "step_7"));
        assert_non_null(strstr(pf_future_error(f[i]), "test.step"));
        assert_non_null(strstr(pf_future_error(f[i]), "poisoned value 3007"));
      } else {
        pf_tensor *y;
        assert_int_equal(rc, 0);
        OK(pf_future_fetch(f[i], "y", &y));
        assert_true(*(const double *)pf_tensor_cdata(y) ==
                    1000.0 * i + (round ? 0.5 : 0) + CHAIN);
        pf_tensor_destroy(y);
      }
      pf_future_destroy(f[i]);
      pf_tensor_destroy(x[i]);
    }
  }
  pf_executable_destroy(exe);
  pf_graph_destroy(g);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_chain_of_small_collectives),
      cmocka_unit_test(test_matrix_f32), cmocka_unit_test(test_matrix_f64),
      cmocka_unit_test(test_matrix_i32), cmocka_unit_test(test_matrix_i64),
      cmocka_unit_test(test_matrix_u8),  cmocka_unit_test(test_matrix_bf16),
      cmocka_unit_test(test_input_from_other_ranks),
  };
  /* Many short round trips (one fetch per output): keep each rank's loop
   * polling a while after activity instead of backing off to sleeps. */
  setenv("PATHFLOW_SPIN_US", "50000", 0);
  return cmocka_run_group_tests(tests, setup, teardown);
}
