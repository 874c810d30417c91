/* Parallel execution on local devices, asserted from timestamps taken
 * inside the kernels, never from wall-clock thresholds. */
#include "testing.h"

static pf_context *ctx;

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Each call records when it started and ended, by "slot" attribute. A call
 * waits (up to 5 s) until the other slot has started too: if the runtime
 * ran the two programs one after the other, the intervals would not
 * overlap and the test fails; if it runs them in parallel they overlap
 * however slow the machine is. */
static _Atomic uint64_t started[2], ended[2];
static atomic_int order_log[64], order_n;

static int stamp_shape(const pf_attrs *a, int n_in, const pf_spec *in, int n_out, pf_spec *out,
                       pf_diag *d) {
  (void)a, (void)n_in, (void)in, (void)n_out, (void)d;
  out[0] = pf_spec_scalar(PF_U8);
  return 0;
}

static int stamp_compute(const pf_kernel_call *call) {
  int slot = (int)pf_attrs_get_int(call->attrs, "slot", 0);
  int other = 1 - slot;
  uint64_t t0 = now_ns();
  atomic_store(&started[slot], t0);
  while (atomic_load(&started[other]) == 0 && now_ns() - t0 < 5000000000ull) {
  }
  atomic_store(&ended[slot], now_ns());
  return 0;
}

static int log_compute(const pf_kernel_call *call) {
  int n = atomic_fetch_add(&order_n, 1);
  if (n < 64) atomic_store(&order_log[n], (int)pf_attrs_get_int(call->attrs, "slot", 0));
  return 0;
}

static int setup(void **state) {
  pf_kernel_def stamp = {.name = "stamp", .kind = PF_DEVICE_CPU, .n_in = PF_VARIADIC, .n_out = 1,
                         .shape = stamp_shape, .compute = stamp_compute};
  pf_kernel_def logk = stamp;
  (void)state;
  logk.name = "log_order";
  logk.compute = log_compute;
  if (pf_init(NULL, NULL, &(pf_init_options){.cpu_devices = 2}, &ctx)) return -1;
  return pf_kernel_register(ctx, &stamp) || pf_kernel_register(ctx, &logk);
}

static int teardown(void **state) {
  (void)state;
  return pf_finalize(ctx);
}

static void add_slot_program(pf_graph *g, const char *kernel, pf_slice_t s, int slot, int n_in,
                             const pf_value_t *in, pf_value_t *out) {
  pf_attrs *a;
  OK(pf_attrs_create(&a));
  OK(pf_attrs_set_int(a, "slot", slot));
  OK(pf_graph_program(g, &(pf_program_desc){.kernel = kernel, .attrs = a, .slice = s,
                                             .n_in = n_in, .in = in},
                      out, NULL));
  pf_attrs_destroy(a);
}

static void test_independent_programs_overlap(void **state) {
  pf_graph *g;
  pf_executable *exe;
  pf_future *f;
  pf_slice_t d0, d1;
  pf_value_t a, b;
  int dev0 = 0, dev1 = 1;
  (void)state;
  OK(pf_graph_create(ctx, &g));
  OK(pf_graph_slice(g, PF_DEVICE_CPU, 1, &d0));
  OK(pf_graph_slice(g, PF_DEVICE_CPU, 1, &d1));
  OK(pf_graph_slice_pin(g, d0, &dev0));
  OK(pf_graph_slice_pin(g, d1, &dev1));
  add_slot_program(g, "stamp", d0, 0, 0, NULL, &a);
  add_slot_program(g, "stamp", d1, 1, 0, NULL, &b);
  OK(pf_graph_output(g, "a", a));
  OK(pf_graph_output(g, "b", b));
  OK(pf_compile(g, &exe));
  OK(pf_execute(exe, 0, NULL, &f));
  OK(pf_future_wait(f));
  /* Overlap: each started before the other ended. */
  assert_true(started[0] != 0 && started[1] != 0);
  assert_true(started[0] < ended[1]);
  assert_true(started[1] < ended[0]);
  pf_future_destroy(f);
  pf_executable_destroy(exe);
  pf_graph_destroy(g);
}

/* Ops on one device run in gang order: a chain whose links alternate
 * between two devices runs strictly in chain order. */
static void test_chain_order_across_devices(void **state) {
  pf_graph *g;
  pf_executable *exe;
  pf_future *f;
  pf_slice_t d[2];
  pf_value_t v = PF_NO_VALUE;
  int pins[2] = {0, 1};
  (void)state;
  atomic_store(&order_n, 0);
  OK(pf_graph_create(ctx, &g));
  for (int i = 0; i < 2; i++) {
    OK(pf_graph_slice(g, PF_DEVICE_CPU, 1, &d[i]));
    OK(pf_graph_slice_pin(g, d[i], &pins[i]));
  }
  for (int i = 0; i < 40; i++) {
    pf_value_t next;
    add_slot_program(g, "log_order", d[i % 2], i, i ? 1 : 0, &v, &next);
    v = next;
  }
  OK(pf_graph_output(g, "last", v));
  OK(pf_compile(g, &exe));
  OK(pf_execute(exe, 0, NULL, &f));
  OK(pf_future_wait(f));
  assert_int_equal(atomic_load(&order_n), 40);
  for (int i = 0; i < 40; i++) assert_int_equal(atomic_load(&order_log[i]), i);
  pf_future_destroy(f);
  pf_executable_destroy(exe);
  pf_graph_destroy(g);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_independent_programs_overlap),
      cmocka_unit_test(test_chain_order_across_devices),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
