/* Per-rank counters on 2 ranks (one device each): the controller reads
 * both ranks' counters, and what they count follows from the graphs run:
 * ops, bytes to and from the peer, messages, collectives. */
#include <math.h>
#include <unistd.h>

#include "mpi_common.h"

pf_context *ctx;

#define N 1000 /* f64 elements moved each way per step */
#define STEPS 9

static int setup(void **state) {
  (void)state;
  if (pf_init(NULL, NULL, &(pf_init_options){.cpu_devices = 1}, &ctx)) return -1;
  return pf_world_size(ctx) == 2 ? 0 : -1;
}

static int teardown(void **state) {
  (void)state;
  return pf_finalize(ctx);
}

static void get_both(pf_counters *c[2]) {
  for (int r = 0; r < 2; r++) {
    OK(pf_counters_get(ctx, r, &c[r]));
    assert_int_equal(c[r]->rank, r);
    assert_int_equal(c[r]->num_peers, 2);
    assert_int_equal(c[r]->num_devices, 1);
  }
}

static void diff_both(pf_counters *after[2], pf_counters *before[2], pf_counters *d[2]) {
  for (int r = 0; r < 2; r++) {
    OK(pf_counters_diff(after[r], before[r], &d[r]));
    pf_counters_free(after[r]);
    pf_counters_free(before[r]);
  }
}

/* x on rank 0 -> scale on rank 1 -> scale on rank 0 -> y: per step, one
 * kernel on each rank and N f64 each way. */
static void test_transfers(void **state) {
  pf_graph *g;
  pf_executable *exe;
  pf_spec spec = pf_spec_1d(PF_F64, N);
  pf_value_t v;
  pf_attrs *a;
  pf_counters *before[2], *after[2], *d[2];
  pf_tensor *x = seq_tensor(spec, 1);
  uint64_t nbytes = (uint64_t)pf_spec_nbytes(&spec);
  (void)state;
  OK(pf_graph_create(ctx, &g));
  OK(pf_graph_input(g, "x", &spec, pinned_slice(g, 1, 0), pf_replicated(), &v));
  OK(pf_attrs_create(&a));
  OK(pf_attrs_set_float(a, "alpha", 2.0));
  for (int hop = 1; hop <= 2; hop++) {
    pf_value_t next;
    OK(pf_graph_program(g, &(pf_program_desc){.kernel = "scale", .attrs = a,
                                               .slice = pinned_slice(g, 1, hop % 2), .n_in = 1,
                                               .in = &v},
                        &next, NULL));
    v = next;
  }
  pf_attrs_destroy(a);
  OK(pf_graph_output(g, "y", v));
  OK(pf_compile(g, &exe));
  get_both(before);
  for (int s = 0; s < STEPS; s++) {
    pf_tensor *y = run_one(exe, 1, &(pf_feed){.name = "x", .tensor = x}, "y");
    assert_true(((double *)pf_tensor_data(y))[5] == 4 * ((double *)pf_tensor_data(x))[5]);
    pf_tensor_destroy(y);
  }
  get_both(after);
  diff_both(after, before, d);
  for (int r = 0; r < 2; r++) {
    const pf_peer_counters *peer = &d[r]->peers[1 - r];
    assert_int_equal(d[r]->steps, STEPS);
    assert_int_equal(d[r]->steps_failed, 0);
    assert_int_equal(d[r]->ops_run, STEPS);
    assert_int_equal(d[r]->devices[0].ops_run, STEPS);
    assert_int_equal(peer->data_bytes_sent, STEPS * nbytes);
    assert_int_equal(peer->data_bytes_received, STEPS * nbytes);
    assert_int_equal(peer->data_messages_sent, STEPS);
    assert_int_equal(peer->data_messages_received, STEPS);
    assert_int_equal(d[r]->transfers_sent, STEPS);
    assert_int_equal(d[r]->transfers_received, STEPS);
    assert_int_equal(d[r]->collectives, 0);
    /* Nothing to itself. */
    assert_int_equal(d[r]->peers[r].data_messages_sent + d[r]->peers[r].control_messages_sent, 0);
    /* Each receive waited for the other rank's kernel. */
    assert_true(d[r]->transfer_wait_ns > 0);
  }
  /* Rank 1 got at least a run order per step from the controller and
   * answered each; the feed of x stays on rank 0. */
  assert_true(d[1]->peers[0].control_messages_received >= STEPS);
  assert_true(d[1]->peers[0].control_messages_sent >= STEPS);
  assert_true(d[0]->peers[1].control_messages_sent >= STEPS);
  assert_true(d[0]->peers[1].control_bytes_sent > 0);
  /* Rank 0's device waited for the value to come back from rank 1. */
  assert_true(d[0]->device_wait_ns > 0);
  for (int r = 0; r < 2; r++) pf_counters_free(d[r]);
  pf_tensor_destroy(x);
  pf_executable_destroy(exe);
  pf_graph_destroy(g);
}

/* An allreduce over both ranks: one MPI collective per rank per step, each
 * rank contributing its shard. */
static void test_collectives(void **state) {
  pf_graph *g;
  pf_executable *exe;
  pf_spec spec = pf_spec_2d(PF_F32, 2 * 16, 8);
  pf_value_t x, y;
  pf_slice_t both;
  pf_counters *before[2], *after[2], *d[2];
  pf_tensor *in = seq_tensor(spec, 2);
  (void)state;
  OK(pf_graph_create(ctx, &g));
  both = pinned_slice(g, 2, 0);
  OK(pf_graph_input(g, "x", &spec, both, pf_split(0), &x));
  OK(pf_graph_collective(g, &(pf_collective_desc){.kind = PF_ALLREDUCE, .slice = both, .in = x,
                                                   .op = PF_REDUCE_SUM},
                         &y, NULL));
  OK(pf_graph_output(g, "y", y));
  OK(pf_compile(g, &exe));
  get_both(before);
  for (int s = 0; s < STEPS; s++) {
    pf_tensor *out = run_one(exe, 1, &(pf_feed){.name = "x", .tensor = in}, "y");
    const float *i = pf_tensor_data(in), *o = pf_tensor_data(out);
    assert_true(o[3] == i[3] + i[16 * 8 + 3]);
    pf_tensor_destroy(out);
  }
  get_both(after);
  diff_both(after, before, d);
  for (int r = 0; r < 2; r++) {
    assert_int_equal(d[r]->steps, STEPS);
    assert_int_equal(d[r]->collectives, STEPS);
    assert_int_equal(d[r]->collective_bytes, STEPS * 16 * 8 * sizeof(float));
    assert_true(d[r]->collective_wait_ns > 0);
    assert_int_equal(d[r]->transfers_sent + d[r]->transfers_received, 0);
  }
  for (int r = 0; r < 2; r++) pf_counters_free(d[r]);
  pf_tensor_destroy(in);
  pf_executable_destroy(exe);
  pf_graph_destroy(g);
}

/* Rank 0's own count of control messages sent to rank 1 (read on rank 0:
 * nothing is sent to rank 1 for it). */
static uint64_t sent_to_rank1(void) {
  pf_counters *c;
  uint64_t n;
  OK(pf_counters_get(ctx, 0, &c));
  n = c->peers[1].control_messages_sent;
  pf_counters_free(c);
  return n;
}

/* Releases ride on the next message to their rank (runtime.c, send_out):
 * a loop of executions on rank 1, each fed the previous one's output and
 * releasing it, costs rank 1 one control message per execution, not two
 * (over MPI; the loopback transport sends them one by one). What is
 * released leaves rank 1's buffers all the same: with the next message
 * there, or alone within about 100 µs. */
static void test_releases(void **state) {
  enum { RUNS = 40 };
  pf_graph *g;
  pf_executable *exe;
  pf_spec spec = pf_spec_1d(PF_F64, 8);
  pf_value_t x, y;
  pf_attrs *a;
  pf_buffer_t buf, next;
  pf_counters *before[2], *after[2], *d[2], *c;
  pf_tensor *in = seq_tensor(spec, 1), *out;
  int held = getenv("PATHFLOW_LOOPBACK_RANKS") == NULL;
  uint64_t sent;
  (void)state;
  OK(pf_graph_create(ctx, &g));
  OK(pf_graph_input(g, "x", &spec, pinned_slice(g, 1, 1), pf_replicated(), &x));
  OK(pf_attrs_create(&a));
  OK(pf_attrs_set_float(a, "alpha", 2.0));
  OK(pf_graph_program(g, &(pf_program_desc){.kernel = "scale", .attrs = a,
                                             .slice = pinned_slice(g, 1, 1), .n_in = 1, .in = &x},
                      &y, NULL));
  pf_attrs_destroy(a);
  OK(pf_graph_output(g, "y", y));
  OK(pf_compile(g, &exe));
  OK(pf_buffer_put_for(exe, "x", in, &buf));
  get_both(before);
  assert_int_equal(before[1]->buffers_held, 1);
  assert_int_equal(before[1]->buffer_bytes_held, pf_spec_nbytes(&spec));
  for (int k = 0; k < RUNS; k++) {
    pf_future *f;
    OK(pf_execute(exe, 1, &(pf_feed){.name = "x", .buffer = buf}, &f));
    OK(pf_future_output(f, "y", &next));
    OK(pf_future_wait(f));
    pf_future_destroy(f);
    OK(pf_buffer_release(ctx, buf));
    buf = next;
  }
  get_both(after);
  /* The last release went before the counters request, if not before. */
  assert_int_equal(after[1]->buffers_held, 1);
  diff_both(after, before, d);
  assert_int_equal(d[1]->steps, RUNS);
  assert_int_equal(d[1]->buffers_held, 1); /* levels: after's */
  /* A run order each, the counters request, and perhaps the last release
   * alone; one message per release besides would be 2 RUNS + 1. */
  assert_true(d[1]->peers[0].control_messages_received >= RUNS + 1);
  if (held) assert_true(d[1]->peers[0].control_messages_received <= RUNS + 2);
  for (int r = 0; r < 2; r++) pf_counters_free(d[r]);
  OK(pf_buffer_fetch(ctx, buf, &out));
  assert_true(((double *)pf_tensor_data(out))[3] ==
              ldexp(((double *)pf_tensor_data(in))[3], RUNS));
  pf_tensor_destroy(out);
  /* A release with nothing after it goes alone, soon: rank 0 sends rank 1
   * one message without being asked to send anything else. */
  sent = sent_to_rank1();
  OK(pf_buffer_release(ctx, buf));
  for (int i = 0; i < 1000 && sent_to_rank1() == sent; i++) usleep(1000);
  assert_int_equal(sent_to_rank1(), sent + 1);
  OK(pf_counters_get(ctx, 1, &c));
  assert_int_equal(c->buffers_held, 0);
  assert_int_equal(c->buffer_bytes_held, 0);
  pf_counters_free(c);
  pf_tensor_destroy(in);
  pf_executable_destroy(exe);
  pf_graph_destroy(g);
}

static void test_bad_rank(void **state) {
  pf_counters *c = NULL;
  (void)state;
  assert_int_equal(pf_counters_get(ctx, 2, &c), PF_EINVAL);
  assert_int_equal(pf_counters_get(ctx, -1, &c), PF_EINVAL);
  assert_null(c);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_transfers),
      cmocka_unit_test(test_collectives),
      cmocka_unit_test(test_releases),
      cmocka_unit_test(test_bad_rank),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
