/* Large values and buffers put from the host, across 2 ranks with 2
 * devices each (devices 0, 1 on rank 0; 2, 3 on rank 1):
 *  - a 1 GiB feed split over the 4 devices and its 1 GiB result fetched
 *    back (each shard 256 MiB, within PF_HOST_SHARD_MAX);
 *  - a shard over PF_HOST_SHARD_MAX fed to the other rank is PF_ERANGE
 *    before anything moves, naming the input (it used to pass pf_execute
 *    and abort the job), and the job goes on;
 *  - pf_buffer_put and pf_buffer_put_for with shards on both ranks;
 *  - a step with more receives on a rank than it posts at its start, one
 *    whose receives would hold far more memory than the window of
 *    receives a rank posts ahead, and one with a send of a fed input
 *    behind the receives a rank holds back.
 * LARGE_N overrides the 2^28 elements of the large feed (quick runs).
 * Feeds and fetches of 64 KiB or more travel on the data path (runtime.c),
 * from and into the shards in 64 MiB chunks, not in control messages (a
 * 256 MiB message once took seconds of copying on the loop thread). */
#include "mpi_common.h"

pf_context *ctx;

static int setup(void **state) {
  (void)state;
  if (pf_init(NULL, NULL, &(pf_init_options){.cpu_devices = 2}, &ctx)) return -1;
  return pf_world_size(ctx) == 2 && pf_device_count(ctx, PF_DEVICE_CPU) == 4 ? 0 : -1;
}

static int teardown(void **state) {
  (void)state;
  return pf_finalize(ctx);
}

/* y = alpha * x over the devices `pins`, x split by rows or replicated. */
static pf_executable *scale_exe(pf_spec spec, int n, const int *pins, pf_sharding sh,
                                double alpha) {
  pf_graph *g;
  pf_executable *exe;
  pf_slice_t s;
  pf_value_t x, y;
  pf_attrs *a;
  OK(pf_graph_create(ctx, &g));
  OK(pf_graph_slice(g, PF_DEVICE_CPU, n, &s));
  OK(pf_graph_slice_pin(g, s, pins));
  OK(pf_graph_input(g, "x", &spec, s, sh, &x));
  OK(pf_attrs_create(&a));
  OK(pf_attrs_set_float(a, "alpha", alpha));
  OK(pf_graph_program(g, &(pf_program_desc){.kernel = "scale", .attrs = a, .slice = s, .n_in = 1,
                                             .in = &x},
                      &y, NULL));
  pf_attrs_destroy(a);
  OK(pf_graph_output(g, "y", y));
  OK(pf_compile(g, &exe));
  pf_graph_destroy(g);
  return exe;
}

static float pattern(int64_t i) { return (float)(i % 1000003); }

static void test_one_gib_feed_and_fetch(void **state) {
  const int64_t n = getenv("LARGE_N") ? atoll(getenv("LARGE_N")) : (int64_t)1 << 28; /* 1 GiB */
  pf_spec spec = pf_spec_1d(PF_F32, n);
  pf_executable *exe = scale_exe(spec, 4, (int[]){0, 1, 2, 3}, pf_split(0), 2);
  pf_tensor *x, *y;
  pf_future *f;
  (void)state;
  OK(pf_tensor_create(&spec, &x));
  for (int64_t i = 0; i < n; i++) ((float *)pf_tensor_data(x))[i] = pattern(i);
  OK(pf_execute(exe, 1, &(pf_feed){.name = "x", .tensor = x}, &f));
  pf_tensor_destroy(x); /* copied by pf_execute */
  OK(pf_future_wait(f));
  OK(pf_future_fetch(f, "y", &y));
  pf_future_destroy(f);
  assert_int_equal(pf_tensor_nbytes(y), (size_t)n * 4);
  for (int64_t i = 0; i < n; i++)
    if (((const float *)pf_tensor_cdata(y))[i] != 2 * pattern(i))
      fail_msg("y[%lld] = %g, expected %g", (long long)i,
               (double)((const float *)pf_tensor_cdata(y))[i], 2.0 * pattern(i));
  pf_tensor_destroy(y);
  pf_executable_destroy(exe);
}

static void test_over_limit_refused_not_aborted(void **state) {
  pf_spec spec = pf_spec_1d(PF_F32, PF_HOST_SHARD_MAX / 4 + 16), small = pf_spec_1d(PF_F32, 8);
  pf_executable *exe = scale_exe(spec, 1, (int[]){2}, pf_replicated(), 1), *ok;
  pf_tensor *x, *t, *y;
  pf_future *f = (pf_future *)1;
  (void)state;
  OK(pf_tensor_create(&spec, &x));
  assert_int_equal(pf_execute(exe, 1, &(pf_feed){.name = "x", .tensor = x}, &f), PF_ERANGE);
  assert_null(f);
  assert_non_null(strstr(pf_last_error(ctx), "feed \"x\""));
  assert_non_null(strstr(pf_last_error(ctx), "PF_HOST_SHARD_MAX"));
  pf_tensor_destroy(x);
  pf_executable_destroy(exe);
  /* The job goes on. */
  ok = scale_exe(small, 1, (int[]){3}, pf_replicated(), 3);
  t = seq_tensor(small, 1);
  y = run_one(ok, 1, &(pf_feed){.name = "x", .tensor = t}, "y");
  for (int i = 0; i < 8; i++)
    assert_true(((const float *)pf_tensor_cdata(y))[i] == 3 * ((const float *)pf_tensor_cdata(t))[i]);
  pf_tensor_destroy(y);
  pf_tensor_destroy(t);
  pf_executable_destroy(ok);
}

static void test_buffer_put_across_ranks(void **state) {
  pf_spec spec = pf_spec_2d(PF_F32, 6, 5);
  pf_tensor *x = seq_tensor(spec, 2), *back, *y;
  pf_executable *exe = scale_exe(spec, 2, (int[]){3, 0}, pf_split(0), 2);
  pf_buffer_t split, repl, fitted;
  (void)state;
  /* Rows 0-2 on rank 1, rows 3-5 on rank 0. */
  OK(pf_buffer_put(ctx, x, 2, (int[]){2, 1}, pf_split(0), &split));
  OK(pf_buffer_fetch(ctx, split, &back));
  assert_memory_equal(pf_tensor_cdata(back), pf_tensor_cdata(x), pf_tensor_nbytes(x));
  pf_tensor_destroy(back);
  OK(pf_buffer_put(ctx, x, 2, (int[]){3, 0}, pf_replicated(), &repl));
  OK(pf_buffer_fetch(ctx, repl, &back));
  assert_memory_equal(pf_tensor_cdata(back), pf_tensor_cdata(x), pf_tensor_nbytes(x));
  pf_tensor_destroy(back);
  OK(pf_buffer_put_for(exe, "x", x, &fitted));
  const pf_buffer_t bufs[3] = {split, repl, fitted};
  for (int k = 0; k < 3; k++) {
    y = run_one(exe, 1, &(pf_feed){.name = "x", .buffer = bufs[k]}, "y");
    for (int i = 0; i < 30; i++)
      assert_true(((const float *)pf_tensor_cdata(y))[i] ==
                  2 * ((const float *)pf_tensor_cdata(x))[i]);
    pf_tensor_destroy(y);
    OK(pf_buffer_release(ctx, bufs[k]));
  }
  pf_executable_destroy(exe);
  pf_tensor_destroy(x);
}

/* In g: the one-device slices of device 0 (rank 0) and device `other`. */
static void chain_slices_on(pf_graph *g, int other, pf_slice_t *s0, pf_slice_t *s2) {
  OK(pf_graph_slice(g, PF_DEVICE_CPU, 1, s0));
  OK(pf_graph_slice_pin(g, *s0, (int[]){0}));
  OK(pf_graph_slice(g, PF_DEVICE_CPU, 1, s2));
  OK(pf_graph_slice_pin(g, *s2, (int[]){other}));
}

/* chain_slices_on with device 2, on rank 1. */
static void chain_slices(pf_graph *g, pf_slice_t *s0, pf_slice_t *s2) {
  chain_slices_on(g, 2, s0, s2);
}

/* `hops` programs "scale" on *v alternating devices 2 and 0 (rank 1, rank
 * 0), each hop doubling or halving: *v comes back exact (hops even). */
static void add_chain(pf_graph *g, pf_slice_t s0, pf_slice_t s2, int hops, pf_value_t *v) {
  for (int h = 0; h < hops; h++) {
    pf_attrs *a;
    OK(pf_attrs_create(&a));
    OK(pf_attrs_set_float(a, "alpha", h % 2 ? 0.5 : 2.0));
    OK(pf_graph_program(g, &(pf_program_desc){.kernel = "scale", .attrs = a,
                                               .slice = h % 2 ? s0 : s2, .n_in = 1, .in = v},
                        v, NULL));
    pf_attrs_destroy(a);
  }
}

/* x on device 0 through a chain of `hops` hops (add_chain) to y. */
static pf_executable *chain_exe_on(int other, int hops, pf_spec spec) {
  pf_graph *g;
  pf_executable *exe;
  pf_slice_t s0, s2;
  pf_value_t v;
  OK(pf_graph_create(ctx, &g));
  chain_slices_on(g, other, &s0, &s2);
  OK(pf_graph_input(g, "x", &spec, s0, pf_replicated(), &v));
  add_chain(g, s0, s2, hops, &v);
  OK(pf_graph_output(g, "y", v));
  OK(pf_compile(g, &exe));
  pf_graph_destroy(g);
  return exe;
}

static pf_executable *chain_exe(int hops, pf_spec spec) { return chain_exe_on(2, hops, spec); }

/* Runs chain_exe(hops) on x and checks that x comes back. */
static void run_chain(pf_executable *exe, pf_spec spec) {
  pf_tensor *x = seq_tensor(spec, 1), *y;
  y = run_one(exe, 1, &(pf_feed){.name = "x", .tensor = x}, "y");
  assert_memory_equal(pf_tensor_cdata(y), pf_tensor_cdata(x), pf_tensor_nbytes(x));
  pf_tensor_destroy(x);
  pf_tensor_destroy(y);
}

/* A chain of 512 hops of 256 KiB: a step with 256 receives a rank, beyond
 * the 64 a rank posts at a step's start (runtime/service.c,
 * PF_EAGER_RECVS); the rest are posted later, and the data arrives intact.
 * With the loopback transport (one process, PATHFLOW_LOOPBACK_RANKS) only
 * the MPI path's polling posted the rest, and such a step waited for them
 * forever. */
static void test_chain_of_many_receives(void **state) {
  pf_spec spec = pf_spec_1d(PF_F32, 65536);
  pf_executable *exe = chain_exe(512, spec);
  (void)state;
  run_chain(exe, spec);
  pf_executable_destroy(exe);
}

/* A step whose ops that need no input hold a send behind the receives a
 * rank holds back: z, fed on rank 1 (device 2), is read on rank 0 by the
 * program after a chain of 300 hops, so its send is handed to the service
 * with that rank's 150 receives, after them in plan order. Sends go at once
 * (pf_service_start_ops): held back with the receives, which are only
 * posted later, it would never go and rank 0 would wait forever. */
static void test_fed_send_behind_held_back_receives(void **state) {
  pf_spec spec = pf_spec_1d(PF_F32, 1024);
  pf_graph *g;
  pf_executable *exe;
  pf_slice_t s0, s2;
  pf_value_t v, z, y;
  pf_attrs *a;
  pf_tensor *x, *zt, *out;
  (void)state;
  OK(pf_graph_create(ctx, &g));
  chain_slices(g, &s0, &s2);
  OK(pf_graph_input(g, "x", &spec, s0, pf_replicated(), &v));
  OK(pf_graph_input(g, "z", &spec, s2, pf_replicated(), &z));
  add_chain(g, s0, s2, 300, &v);
  OK(pf_attrs_create(&a));
  OK(pf_attrs_set_float(a, "lr", 1.0));
  OK(pf_graph_program(g, &(pf_program_desc){.kernel = "sgd", .attrs = a, .slice = s0, .n_in = 2,
                                             .in = (pf_value_t[]){v, z}},
                      &y, NULL));
  pf_attrs_destroy(a);
  OK(pf_graph_output(g, "y", y));
  OK(pf_compile(g, &exe));
  pf_graph_destroy(g);
  x = seq_tensor(spec, 1);
  zt = seq_tensor(spec, 7);
  for (int run = 0; run < 2; run++) {
    out = run_one(exe, 2,
                  (pf_feed[]){{.name = "x", .tensor = x}, {.name = "z", .tensor = zt}}, "y");
    for (int64_t i = 0; i < pf_spec_numel(&spec); i++)
      assert_float_equal(((const float *)pf_tensor_cdata(out))[i],
                         ((const float *)pf_tensor_cdata(x))[i] -
                             ((const float *)pf_tensor_cdata(zt))[i],
                         0);
    pf_tensor_destroy(out);
  }
  pf_tensor_destroy(x);
  pf_tensor_destroy(zt);
  pf_executable_destroy(exe);
}

/* This process's peak resident memory (VmHWM) in bytes, after resetting it
 * to the current resident size when `reset` (Linux: clear_refs 5); 0 where
 * /proc cannot tell. */
static size_t peak_rss(int reset) {
  char line[256];
  long kb = 0;
  FILE *f;
  if (reset && (f = fopen("/proc/self/clear_refs", "w")) != NULL) {
    fputs("5", f);
    fclose(f);
  }
  if ((f = fopen("/proc/self/status", "r")) == NULL) return 0;
  while (fgets(line, sizeof line, f))
    if (sscanf(line, "VmHWM: %ld kB", &kb) == 1) break;
  fclose(f);
  return (size_t)kb << 10;
}

/* The same with hops of 1 MiB: a rank holds at most 16 MiB of receives
 * posted ahead (PF_RECV_AHEAD_BYTES), each buffer given memory when its
 * receive is posted, not the 256 MiB of all its receives from the step's
 * start (that was fresh memory for every hop: 69,000 page faults a rank
 * in bench/transfer's 1 MiB chains). Under the sanitizers memory is not
 * reused (quarantine, shadow memory): not measured there. */
static void test_long_chain_holds_a_window(void **state) {
  const int hops = 512;
  pf_spec spec = pf_spec_1d(PF_F32, 262144);
  size_t ranks_here = getenv("PATHFLOW_LOOPBACK_RANKS") ? 2 : 1, before, grown, all;
  pf_executable *exe = chain_exe(hops, spec);
  (void)state;
  all = (size_t)hops / 2 * pf_spec_nbytes(&spec) * ranks_here;
  before = peak_rss(1);
  run_chain(exe, spec);
  grown = peak_rss(0) - before;
#if !defined(__SANITIZE_ADDRESS__) && !defined(__SANITIZE_THREAD__)
  if (before > 0 && grown >= all / 2)
    fail_msg("a chain of %d hops of 1 MiB grew this process by %zu MiB (all its receives "
             "at once: %zu MiB)", hops, grown >> 20, all >> 20);
#else
  (void)grown;
  (void)all;
#endif
  pf_executable_destroy(exe);
}

/* A chain of 140,000 one-element hops between device 0 and `other`,
 * large enough that the controller announces rank 1's plan before
 * scheduling it (api/execute.c, PF_MSG_EXPECT: 131,072 programs or more on
 * 2 ranks of 2 devices), computes its value. */
static void run_announced(int other) {
  pf_spec spec = pf_spec_1d(PF_F32, 1);
  pf_executable *exe = chain_exe_on(other, 140000, spec);
  run_chain(exe, spec);
  pf_executable_destroy(exe);
}

/* Across the ranks: rank 1 readies memory for its plan meanwhile
 * (runtime/runtime.c) and lets it go as the plan arrives. */
static void test_announced_plan(void **state) {
  (void)state;
  run_announced(2);
}

/* All on rank 0's devices 0 and 1, yet announced to rank 1 too (the
 * estimate shares programs out by devices): rank 1 gets no plan, and is
 * told so (an Expect of 0 bytes) instead of holding the memory it readied
 * for 30 s. */
static void test_announced_plan_not_sent(void **state) {
  (void)state;
  run_announced(1);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_announced_plan),
      cmocka_unit_test(test_announced_plan_not_sent),
      cmocka_unit_test(test_long_chain_holds_a_window),
      cmocka_unit_test(test_chain_of_many_receives),
      cmocka_unit_test(test_fed_send_behind_held_back_receives),
      cmocka_unit_test(test_buffer_put_across_ranks),
      cmocka_unit_test(test_over_limit_refused_not_aborted),
      cmocka_unit_test(test_one_gib_feed_and_fetch),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
