/* The simulator's workloads (sim/workload.c): several runs of several
 * graphs sharing devices, against hand-computed times:
 *  - two tenants of weights 1 and 3 on one device: the controller sends
 *    their runs in stride order, each run starts once its message is in
 *    and the run before it is done, and pays the step cost;
 *  - parallel against sequential dispatch of three stages on three hosts:
 *    sequential sends a stage its run a round trip after the stage before;
 *  - a transfer and a collective repeated over runs still pair up;
 *  - bad tenants are refused, naming them. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "sim/replay.h"
#include "sim/workload.h"

#include "testing_diag.h"

/* 3 hosts of 1 device (one a rank); 1 GB/s everywhere; 1 us inside a
 * host, 100 us between hosts; 1 us per op, 2 us per transfer, 5 us per
 * step, 3 us per run the controller sends. */
static const char cluster_json[] =
    "{\"version\": 1, \"name\": \"w\",\n"
    " \"device_types\": {\"d\": {\"kind\": \"cpu\", \"flops\": {\"f32\": \"1GFLOP/s\"},\n"
    "                          \"memory\": \"1GiB\", \"memory_bandwidth\": \"1TB/s\"}},\n"
    " \"hosts\": [{\"count\": 3, \"ranks_per_host\": 1, \"devices_per_rank\": 1}],\n"
    " \"links\": {\"intra_host\": {\"bandwidth\": \"1GB/s\", \"latency\": \"1us\"},\n"
    "           \"nic\": {\"bandwidth\": \"1GB/s\", \"latency\": \"100us\"}},\n"
    " \"runtime\": {\"op_dispatch\": \"1us\", \"transfer\": \"2us\", \"step\": \"5us\",\n"
    "             \"dispatch\": \"3us\"}}\n";

#define US 1000 /* ns */

static pf_sim_cluster *cluster(void) {
  pf_sim_cluster *cl;
  pf_diag_init(&diag);
  OK(pf_sim_cluster_parse(cluster_json, strlen(cluster_json), "w.json", &cl, &diag));
  assert_int_equal(cl->dispatch_ns, 3 * US);
  return cl;
}

/* A trace of up to 4 nodes on each of 3 devices. */
typedef struct traces {
  pf_chakra_trace t[3];
  pf_chakra_trace *p[3];
  pf_chakra_node n[3][4];
  uint64_t deps[3][4];
} traces;

static void traces_init(traces *T) {
  memset(T, 0, sizeof *T);
  for (int d = 0; d < 3; d++) {
    T->t[d].version = "test";
    T->t[d].nodes = T->n[d];
    T->p[d] = &T->t[d];
  }
}

/* A node of `type` on dev; dep >= 0: it depends on that node. A compute
 * node takes us microseconds (plus the op cost). */
static pf_chakra_node *add(traces *T, int dev, int32_t type, int dep, uint64_t us) {
  pf_chakra_node *n = &T->n[dev][T->t[dev].n_nodes];
  memset(n, 0, sizeof *n);
  n->id = 10 + T->t[dev].n_nodes++; /* not 0-based: ids are translated */
  n->name = "n";
  n->type = type;
  n->duration_us = us;
  n->comm_src = n->comm_dst = -1;
  n->comm_type = -1;
  n->is_cpu_op = -1;
  if (dep >= 0) {
    T->deps[dev][n->id - 10] = 10 + (uint64_t)dep;
    n->data_deps = &T->deps[dev][n->id - 10];
    n->n_data_deps = 1;
  }
  return n;
}

static pf_sim_result *run(const pf_sim_tenant *t, int n, int64_t devices, pf_sim_cluster *cl,
                          pf_sim_workload **w) {
  pf_sim_result *r = NULL;
  pf_diag_init(&diag);
  OK(pf_sim_workload_build(t, n, devices, cl, w, &diag));
  OK(pf_sim_replay((*w)->traces, devices, cl, &(pf_sim_options){.runs = (*w)->n_runs}, &r, &diag));
  assert_int_equal(r->n_runs, (*w)->n_runs);
  return r;
}

static void test_weights(void **state) {
  static const int32_t order[8] = {0, 1, 1, 1, 0, 1, 0, 0};
  pf_sim_cluster *cl = cluster();
  traces A, B;
  pf_sim_workload *w;
  pf_sim_result *r;
  pf_simtime end = 0;
  (void)state;
  traces_init(&A);
  traces_init(&B);
  add(&A, 0, PF_CHAKRA_COMP, -1, 10);
  add(&B, 0, PF_CHAKRA_COMP, -1, 20);
  r = run((pf_sim_tenant[]){{.traces = A.p, .weight = 1, .runs = 4},
                            {.traces = B.p, .weight = 3, .runs = 4}},
          2, 1, cl, &w);
  /* Stride order: ties to the lower tenant; 1/3 per run for tenant 1. */
  for (int j = 0; j < 8; j++) assert_int_equal(w->run_tenant[j], order[j]);
  /* Run j is sent at (j + 1) x 3 us; on device 0 (the controller's: no
   * latency) it starts 5 us after that or after the run before it ended,
   * and computes 1 + 10 or 1 + 20 us. */
  for (int j = 0; j < 8; j++) {
    pf_simtime sent = (pf_simtime)(j + 1) * 3 * US, start = (sent > end ? sent : end) + 5 * US;
    assert_int_equal(r->run_start[j], start);
    end = start + (order[j] ? 21 : 11) * US;
    assert_int_equal(r->run_end[j], end);
  }
  assert_int_equal(r->makespan, end);
  /* The waits are nobody's work: the device computed 4 x 11 + 4 x 21 us. */
  assert_int_equal(r->busy[0], (4 * 11 + 4 * 21) * US);
  pf_sim_result_free(r);
  pf_sim_workload_free(w);
  pf_sim_cluster_free(cl);
}

/* Three independent 10 us ops, stage order: device 1, device 2, device 0. */
static void test_dispatch(void **state) {
  static const int32_t stage_of[3] = {2, 0, 1};
  pf_sim_cluster *cl = cluster();
  traces T;
  pf_sim_result *r;
  pf_sim_workload *w;
  (void)state;
  traces_init(&T);
  for (int d = 0; d < 3; d++) add(&T, d, PF_CHAKRA_COMP, -1, 10);
  /* Parallel: every stage's message leaves at 3 us; devices 1 and 2 get it
   * 100 us later, device 0 at once. */
  r = run((pf_sim_tenant[]){{.traces = T.p, .stage_of = stage_of, .weight = 1, .runs = 1}}, 1, 3,
          cl, &w);
  assert_int_equal(r->run_start[0], 8 * US);
  assert_int_equal(r->makespan, (3 + 100 + 5 + 11) * US);
  pf_sim_result_free(r);
  pf_sim_workload_free(w);
  /* Sequential: stage 1 (device 2) a round trip after stage 0 (device 1),
   * stage 2 (device 0) a round trip after that: 3 + 4 x 100 us. */
  r = run((pf_sim_tenant[]){{.traces = T.p, .stage_of = stage_of, .weight = 1, .runs = 1,
                             .sequential = 1}},
          1, 3, cl, &w);
  assert_int_equal(r->run_start[0], (3 + 100 + 5) * US);
  assert_int_equal(r->makespan, (3 + 400 + 5 + 11) * US);
  pf_sim_result_free(r);
  pf_sim_workload_free(w);
  pf_sim_cluster_free(cl);
}

/* A send and its receive, and an allreduce, in each of 3 runs: each run's
 * transfer pairs with its own receive, and its collective meets its own. */
static void test_repeated_communication(void **state) {
  pf_sim_cluster *cl = cluster();
  traces T;
  pf_sim_result *r;
  pf_sim_workload *w;
  pf_chakra_node *s, *c0, *c1;
  (void)state;
  traces_init(&T);
  s = add(&T, 0, PF_CHAKRA_SEND, -1, 0);
  s->comm_dst = 1;
  s->comm_size = 1000;
  s->comm_tag = 7;
  add(&T, 1, PF_CHAKRA_RECV, -1, 0)->comm_src = 0;
  T.n[1][0].comm_size = 1000;
  T.n[1][0].comm_tag = 7;
  c0 = add(&T, 0, PF_CHAKRA_COLL, 0, 0);
  c1 = add(&T, 1, PF_CHAKRA_COLL, 0, 0);
  c0->comm_type = c1->comm_type = PF_CHAKRA_ALL_REDUCE;
  c0->comm_size = c1->comm_size = 4000;
  r = run((pf_sim_tenant[]){{.traces = T.p, .weight = 1, .runs = 3}}, 1, 2, cl, &w);
  /* Every node ran (the replay refuses to finish otherwise). */
  assert_int_equal(r->nodes, w->traces[0]->n_nodes + w->traces[1]->n_nodes);
  for (int j = 1; j < 3; j++) assert_true(r->run_start[j] >= r->run_end[j - 1]);
  assert_true(r->run_end[2] == r->makespan);
  pf_sim_result_free(r);
  pf_sim_workload_free(w);
  pf_sim_cluster_free(cl);
}

static void test_refused(void **state) {
  pf_sim_cluster *cl = cluster();
  traces T;
  pf_sim_workload *w = NULL;
  (void)state;
  traces_init(&T);
  add(&T, 0, PF_CHAKRA_COMP, -1, 1);
  pf_diag_init(&diag);
  assert_int_equal(pf_sim_workload_build((pf_sim_tenant[]){{.traces = T.p, .weight = 0, .runs = 1}},
                                         1, 1, cl, &w, &diag),
                   PF_EINVAL);
  assert_non_null(strstr(diag.msg, "tenant 0"));
  pf_diag_init(&diag);
  assert_int_equal(pf_sim_workload_build((pf_sim_tenant[]){{.traces = T.p, .weight = 1, .runs = 1}},
                                         1, 4, cl, &w, &diag),
                   PF_EINVAL);
  T.n[0][0].n_data_deps = 1;
  T.n[0][0].data_deps = &T.deps[0][0];
  T.deps[0][0] = 99;
  pf_diag_init(&diag);
  assert_int_equal(pf_sim_workload_build((pf_sim_tenant[]){{.traces = T.p, .weight = 1, .runs = 1}},
                                         1, 1, cl, &w, &diag),
                   PF_EINVAL);
  assert_non_null(strstr(diag.msg, "node id 99"));
  assert_null(w);
  pf_sim_cluster_free(cl);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_weights),
      cmocka_unit_test(test_dispatch),
      cmocka_unit_test(test_repeated_communication),
      cmocka_unit_test(test_refused),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
