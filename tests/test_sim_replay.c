/* The simulator's replay (sim/replay.c): hand-computed makespans for a
 * chain, a transfer and an allreduce, link sharing, determinism, the
 * errors of traces that cannot run, and compiled plans replayed in gang
 * order. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "graph/graph_internal.h"
#include "scheduler/schedule.h"
#include "sim/chakra_export.h"
#include "sim/replay.h"

#include "testing_diag.h"

/* 4 devices of 1 GFLOP/s, one a rank, on one host; 1 GB/s, 1 us inside it;
 * 1 us per op, 2 us per transfer, 10 us per step. */
static const char cluster_json[] =
    "{\"version\": 1, \"name\": \"t\",\n"
    " \"device_types\": {\"d\": {\"kind\": \"cpu\", \"flops\": {\"f32\": \"1GFLOP/s\"},\n"
    "                          \"memory\": \"1GiB\", \"memory_bandwidth\": \"1TB/s\"}},\n"
    " \"hosts\": [{\"count\": 1, \"ranks_per_host\": 4, \"devices_per_rank\": 1}],\n"
    " \"links\": {\"intra_host\": {\"bandwidth\": \"1GB/s\", \"latency\": \"1us\"},\n"
    "           \"nic\": {\"bandwidth\": \"1GB/s\", \"latency\": \"1us\"}},\n"
    " \"runtime\": {\"op_dispatch\": \"1us\", \"transfer\": \"2us\", \"step\": \"10us\"}}\n";

static pf_sim_cluster *cluster(void) {
  pf_sim_cluster *cl;
  pf_diag_init(&diag);
  OK(pf_sim_cluster_parse(cluster_json, strlen(cluster_json), "t.json", &cl, &diag));
  return cl;
}

/* The same cluster with devices of `kind` and, if not NULL, `cores` a
 * host. */
#define VARIANT_MAX (sizeof cluster_json + 128)

/* Replaces the first `from` in json (VARIANT_MAX bytes) with `to`. */
static void replace_once(char *json, const char *from, const char *to) {
  char *at = strstr(json, from);
  size_t head, tail;
  assert_non_null(at);
  head = (size_t)(at - json);
  tail = strlen(at + strlen(from));
  assert_true(head + strlen(to) + tail < VARIANT_MAX);
  memmove(json + head + strlen(to), at + strlen(from), tail + 1);
  memcpy(json + head, to, strlen(to));
}

/* The test cluster with devices of `kind`, memory at `mem_bw` (NULL: as
 * it is) and `cores` cores a host (NULL: not given; the text after
 * "cores": may add more fields of the host group). */
static pf_sim_cluster *cluster_of(const char *kind, const char *mem_bw, const char *cores) {
  char json[VARIANT_MAX], to[96];
  pf_sim_cluster *cl;
  memcpy(json, cluster_json, sizeof cluster_json);
  snprintf(to, sizeof to, "\"%s\"", kind);
  replace_once(json, "\"cpu\"", to);
  if (mem_bw != NULL) replace_once(json, "1TB/s", mem_bw);
  if (cores != NULL) {
    snprintf(to, sizeof to, "\"devices_per_rank\": 1, \"cores\": %s}", cores);
    replace_once(json, "\"devices_per_rank\": 1}", to);
  }
  pf_diag_init(&diag);
  OK(pf_sim_cluster_parse(json, strlen(json), "variant.json", &cl, &diag));
  return cl;
}

/* The same cluster with GPUs: their messages cost no rank's loop thread
 * anything (receive_work), so transfers are the network's alone. */
static pf_sim_cluster *gpu_cluster(void) { return cluster_of("gpu", NULL, NULL); }

/* Traces under construction: up to 8 nodes on each of 4 devices. */
typedef struct traces {
  pf_chakra_trace t[4];
  pf_chakra_trace *p[4];
  pf_chakra_node n[4][8];
  uint64_t deps[4][8][2];
} traces;

static void traces_init(traces *T) {
  memset(T, 0, sizeof *T);
  for (int d = 0; d < 4; d++) {
    T->t[d].version = "test";
    T->t[d].nodes = T->n[d];
    T->p[d] = &T->t[d];
  }
}

static pf_chakra_node *add(traces *T, int dev, int32_t type, const char *name, int dep) {
  pf_chakra_node *n = &T->n[dev][T->t[dev].n_nodes];
  memset(n, 0, sizeof *n);
  n->id = T->t[dev].n_nodes++;
  n->name = (char *)name;
  n->type = type;
  n->comm_src = n->comm_dst = -1;
  n->comm_type = -1;
  n->is_cpu_op = -1;
  if (dep >= 0) {
    T->deps[dev][n->id][0] = (uint64_t)dep;
    n->data_deps = T->deps[dev][n->id];
    n->n_data_deps = 1;
  }
  return n;
}

static pf_sim_result *replay(traces *T, int n_devices, pf_sim_cluster *cl) {
  pf_sim_result *r = NULL;
  pf_diag_init(&diag);
  OK(pf_sim_replay(T->p, n_devices, cl, NULL, &r, &diag));
  return r;
}

#define US 1000

/* compute (1 ms) -> compute (1 ms) -> send 1 MB; receive -> compute. */
static void chain(traces *T) {
  pf_chakra_node *s, *rv;
  traces_init(T);
  add(T, 0, PF_CHAKRA_COMP, "a", -1)->num_ops = 1000000;
  add(T, 0, PF_CHAKRA_COMP, "b", 0)->num_ops = 1000000;
  s = add(T, 0, PF_CHAKRA_SEND, "send", 1);
  s->comm_dst = 1;
  s->comm_tag = 7;
  s->comm_size = 1000000;
  rv = add(T, 1, PF_CHAKRA_RECV, "recv", -1);
  rv->comm_src = 0;
  rv->comm_tag = 7;
  rv->comm_size = 1000000;
  add(T, 1, PF_CHAKRA_COMP, "c", 0)->num_ops = 1000000;
}

/* CPU devices beyond the host's cores share them, where the loops run the
 * ops by the ranks that have work then (loop_share): on 2 cores a kernel
 * alone runs at full speed, and of 4 started at once the last starts with
 * all 4 ranks busy and computes twice as slowly; given 4 cores, as fast as
 * without the field either way. */
static void test_cores(void **state) {
  pf_simtime one = 1 * US + 1000 * US; /* dispatch and 1 ms at 1 GFLOP/s */
  (void)state;
  for (int k = 0; k < 2; k++) {
    pf_sim_cluster *cl = cluster_of("cpu", NULL, k == 0 ? "2" : "4");
    pf_sim_result *r;
    traces T;
    traces_init(&T);
    add(&T, 0, PF_CHAKRA_COMP, "a", -1)->num_ops = 1000000;
    r = replay(&T, 1, cl);
    assert_int_equal(r->makespan, 10 * US + one);
    pf_sim_result_free(r);
    traces_init(&T);
    for (int d = 0; d < 4; d++) add(&T, d, PF_CHAKRA_COMP, "a", -1)->num_ops = 1000000;
    r = replay(&T, 4, cl);
    assert_int_equal(r->makespan, 10 * US + (k == 0 ? 2 * one : one));
    pf_sim_result_free(r);
    pf_sim_cluster_free(cl);
  }
}

static void test_chain(void **state) {
  pf_sim_cluster *cl = cluster();
  pf_simnet *net;
  pf_simtime lat;
  double bw;
  traces T;
  pf_sim_result *r;
  (void)state;
  OK(pf_simnet_create(cl, &net));
  OK(pf_simnet_path(net, 0, 1, &lat, &bw));
  pf_simnet_destroy(net);
  chain(&T);
  r = replay(&T, 2, cl);
  /* step, two ops, the transfer's own cost, the flow, the last op */
  pf_simtime want = 10 * US + 2 * (1 * US + 1000 * US) + 2 * US + lat +
                    (pf_simtime)(1e6 / bw * 1e9 + 0.5) + (1 * US + 1000 * US);
  assert_true(r->makespan >= want - 1 && r->makespan <= want + 1);
  assert_int_equal(r->nodes, 5);
  assert_int_equal(r->busy[0], 2 * 1001 * US);
  assert_int_equal(r->busy[1], 1001 * US);
  /* The critical path: a, b, send, recv, c. */
  assert_int_equal(r->n_path, 5);
  assert_string_equal(r->path[0].name, "a");
  assert_string_equal(r->path[2].name, "send");
  assert_string_equal(r->path[4].name, "c");
  assert_int_equal(r->path[4].end, r->makespan);
  pf_sim_result_free(r);
  pf_sim_cluster_free(cl);
}

/* The same input twice: the same result, event for event. */
static void test_deterministic(void **state) {
  pf_sim_cluster *cl = cluster();
  traces T;
  pf_sim_result *a, *b;
  (void)state;
  chain(&T);
  a = replay(&T, 2, cl);
  b = replay(&T, 2, cl);
  assert_int_equal(a->makespan, b->makespan);
  assert_int_equal(a->events, b->events);
  assert_int_equal(a->n_path, b->n_path);
  assert_memory_equal(a->busy, b->busy, 2 * sizeof *a->busy);
  assert_memory_equal(a->exposed, b->exposed, 2 * sizeof *a->exposed);
  pf_sim_result_free(a);
  pf_sim_result_free(b);
  pf_sim_cluster_free(cl);
}

/* k transfers of 10 MB from device 0 to device 1, all at once. */
static void transfers(traces *T, int k) {
  for (int j = 0; j < k; j++) {
    pf_chakra_node *s = add(T, 0, PF_CHAKRA_SEND, "s", -1), *rv;
    s->comm_dst = 1;
    s->comm_tag = j;
    s->comm_size = 10000000;
    rv = add(T, 1, PF_CHAKRA_RECV, "r", -1);
    rv->comm_src = 0;
    rv->comm_tag = j;
    rv->comm_size = 10000000;
  }
}

/* Two transfers on one link at once take twice as long as one. */
static void test_link_sharing(void **state) {
  pf_sim_cluster *cl = gpu_cluster();
  pf_sim_result *one = NULL, *two = NULL;
  traces T;
  (void)state;
  for (int k = 1; k <= 2; k++) {
    traces_init(&T);
    transfers(&T, k);
    if (k == 1) one = replay(&T, 2, cl);
    else two = replay(&T, 2, cl);
  }
  assert_non_null(one);
  assert_non_null(two);
  /* 10 ms of bytes alone; 20 ms shared. Fixed costs (step, transfer,
   * latency: 13 us) are paid once either way. */
  pf_simtime fixed = 13 * US, alone = one->makespan - fixed, shared = two->makespan - fixed;
  assert_true(alone > 9990 * US && alone < 10010 * US);
  assert_true(shared > 2 * alone - 10 && shared < 2 * alone + 10);
  pf_sim_result_free(one);
  pf_sim_result_free(two);
  pf_sim_cluster_free(cl);
}

/* An allreduce of 4 MB over the 4 devices of `group` (malloc'd copy: the
 * caller frees the node's group). */
static void add_allreduce(traces *T, int dev, const char *name, const int64_t group[4]) {
  pf_chakra_node *c = add(T, dev, PF_CHAKRA_COLL, name, -1);
  c->comm_type = PF_CHAKRA_ALL_REDUCE;
  c->comm_size = 4000000;
  c->group = malloc(4 * sizeof *group);
  memcpy(c->group, group, 4 * sizeof *group);
  c->n_group = 4;
}

/* An allreduce over 4 devices ends when the algorithm's flows do. */
static void test_allreduce(void **state) {
  pf_sim_cluster *cl = cluster();
  int64_t group[4] = {3, 1, 0, 2};
  traces T;
  pf_sim_result *r;
  (void)state;
  traces_init(&T);
  for (int d = 0; d < 4; d++) add_allreduce(&T, d, "ar", group);
  r = replay(&T, 4, cl);
  /* Ring on 4 alone on its links: 2(n-1)/n * S / bw + 2(n-1) * latency,
   * with S = 4 MB, bw = 1 GB/s, latency = 2 hops of 1 us inside a host;
   * then the arithmetic: 3/4 of S combined, 3 bytes of traffic each, at
   * the device's 1 TB/s (9 us). */
  {
    pf_simnet *net;
    pf_simtime lat;
    double bw;
    OK(pf_simnet_create(cl, &net));
    OK(pf_simnet_path(net, 0, 1, &lat, &bw));
    pf_simnet_destroy(net);
    pf_simtime want = 10 * US + (pf_simtime)(1.5 * 4e6 / bw * 1e9) + 6 * lat + 9 * US;
    assert_true(r->makespan >= want - 10 && r->makespan <= want + 10);
  }
  for (int d = 0; d < 4; d++) {
    assert_int_equal(r->busy[d], 0);
    assert_int_equal(r->exposed[d], r->makespan - 10 * US);
    free(T.n[d][0].group);
  }
  pf_sim_result_free(r);
  pf_sim_cluster_free(cl);
}

/* The test cluster with runtime.transfer_by_size `points` added. */
static pf_sim_cluster *cluster_with_points(const char *points) {
  char json[VARIANT_MAX], to[96];
  pf_sim_cluster *cl;
  memcpy(json, cluster_json, sizeof cluster_json);
  snprintf(to, sizeof to, "\"10us\", \"transfer_by_size\": %s}}", points);
  replace_once(json, "\"10us\"}}", to);
  pf_diag_init(&diag);
  OK(pf_sim_cluster_parse(json, strlen(json), "pts.json", &cl, &diag));
  return cl;
}

/* With runtime.transfer_by_size a transfer costs its size's point (here
 * 10 us at 1 MB, halfway between 5 and 15) instead of runtime.transfer (2
 * us), and each message of a collective costs its size's too (a ring of 4
 * sends 6 messages in a row: 6 x 4 us more than without). */
static pf_simtime allreduces_after(int n, const char *cores, uint64_t kernel_ops);

/* Where a rank has at most one core, its loop thread runs its kernels too
 * (the real runtime's default there): a 10 ms kernel on device 0 then
 * holds rank 0's loop, and the allreduce's receives and addition on rank 0
 * wait for it; with more cores than ranks they overlap. */
static void test_loop_runs_kernels(void **state) {
  pf_simtime add = 9000 * US, plain = allreduces_after(1, "8", 0);
  pf_simtime msgs_end = plain - add, kernel_end = 10 * US + 1 * US + 10000 * US;
  (void)state;
  assert_true(msgs_end < kernel_end); /* else the case shows nothing */
  assert_int_equal(allreduces_after(1, "8", 10000000), plain);
  assert_int_equal(allreduces_after(1, "4", 0), plain);
  /* The receives wait for the kernel too: 6 pieces of 1 MB at 1 GB/s. */
  assert_int_equal(allreduces_after(1, "4", 10000000), kernel_end + 6000 * US + add);
}

static void test_message_costs(void **state) {
  pf_sim_cluster *plain = cluster(), *cl = cluster_with_points("[[0, \"5us\"], [2000000, \"15us\"]]");
  int64_t group[4] = {3, 1, 0, 2};
  traces T;
  pf_sim_result *a, *b;
  (void)state;
  chain(&T);
  a = replay(&T, 2, plain);
  chain(&T);
  b = replay(&T, 2, cl);
  assert_int_equal(b->makespan - a->makespan, 10 * US - 2 * US);
  pf_sim_result_free(a);
  pf_sim_result_free(b);
  pf_sim_cluster_free(cl);
  cl = cluster_with_points("[[0, \"4us\"]]");
  traces_init(&T);
  for (int d = 0; d < 4; d++) add_allreduce(&T, d, "ar", group);
  a = replay(&T, 4, plain);
  b = replay(&T, 4, cl);
  assert_true(b->makespan - a->makespan >= 6 * 4 * US - 10 && b->makespan - a->makespan <= 6 * 4 * US + 10);
  for (int d = 0; d < 4; d++) free(T.n[d][0].group);
  pf_sim_result_free(a);
  pf_sim_result_free(b);
  pf_sim_cluster_free(cl);
  pf_sim_cluster_free(plain);
}

/* A kernel the device type names in kernel_efficiency takes its roofline
 * time over that efficiency: "slow" at 0.25 runs its 1 ms chain of ops 4
 * times as long; a node of another kernel (or none) is not touched. */
static void test_kernel_efficiency(void **state) {
  char json[2 * sizeof cluster_json];
  const char *at = strstr(cluster_json, "\"memory_bandwidth\": \"1TB/s\"}");
  pf_sim_cluster *plain = cluster(), *cl;
  traces T;
  pf_sim_result *a, *b;
  (void)state;
  snprintf(json, sizeof json, "%.*s\"memory_bandwidth\": \"1TB/s\", \"kernel_efficiency\": {\"slow\": 0.25}}%s",
           (int)(at - cluster_json), cluster_json, at + strlen("\"memory_bandwidth\": \"1TB/s\"}"));
  pf_diag_init(&diag);
  OK(pf_sim_cluster_parse(json, strlen(json), "eff.json", &cl, &diag));
  traces_init(&T);
  add(&T, 0, PF_CHAKRA_COMP, "a", -1)->num_ops = 1000000; /* 1 ms at 1 GFLOP/s */
  add(&T, 0, PF_CHAKRA_COMP, "b", 0)->num_ops = 1000000;
  T.n[0][0].kernel = "slow";
  T.n[0][1].kernel = "other";
  a = replay(&T, 1, plain);
  b = replay(&T, 1, cl);
  assert_int_equal(b->makespan - a->makespan, 3 * 1000 * US);
  pf_sim_result_free(a);
  pf_sim_result_free(b);
  pf_sim_cluster_free(cl);
  pf_sim_cluster_free(plain);
}

/* Two allreduces in flight over the same 4 ranks: their messages share the
 * links, and each rank's loop thread then adds up one after the other (the
 * real runtime runs every reduction of a rank on its loop thread), at half
 * speed where the host has half as many cores as ranks. */
static pf_simtime allreduces(int n, const char *cores) { return allreduces_after(n, cores, 0); }

/* As allreduces, with a kernel of kernel_ops flops (0: none) on device 0
 * that depends on nothing. */
static pf_simtime allreduces_after(int n, const char *cores, uint64_t kernel_ops) {
  /* memory at 1 GB/s: the arithmetic of 4 MB takes 9 ms */
  pf_sim_cluster *cl = cluster_of("cpu", "1GB/s", cores);
  pf_sim_result *r;
  int64_t group[4] = {0, 1, 2, 3};
  pf_simtime makespan;
  traces T;
  traces_init(&T);
  if (kernel_ops > 0) add(&T, 0, PF_CHAKRA_COMP, "k", -1)->num_ops = kernel_ops;
  for (int d = 0; d < 4; d++)
    for (int k = 0; k < n; k++) add_allreduce(&T, d, k ? "b" : "a", group);
  r = replay(&T, 4, cl);
  makespan = r->makespan;
  for (int d = 0; d < 4; d++)
    for (uint32_t k = 0; k < T.t[d].n_nodes; k++) free(T.n[d][k].group);
  pf_sim_result_free(r);
  pf_sim_cluster_free(cl);
  return makespan;
}

static void test_reductions_on_the_loop(void **state) {
  pf_simtime add = 9000 * US, one = allreduces(1, NULL), two = allreduces(2, NULL);
  pf_simtime msgs1 = one - 10 * US - add, lat6 = 6 * 2 * US; /* 6 hops of 2 us */
  /* The two rings' messages, sharing the links: twice the bytes' time,
   * their latencies partly overlapped; then 2 additions in a row (9 ms
   * less if they overlapped). */
  pf_simtime lo = 10 * US + 2 * msgs1 - lat6, hi = 10 * US + 2 * msgs1;
  (void)state;
  assert_true(two >= lo + 2 * add && two <= hi + 2 * add);
  /* 4 ranks on 2 cores: each rank's loop work takes twice as long, and
   * is then all there is: the receive work of both allreduces (each
   * member copies 6 pieces of 1 MB at 1 GB/s, 6 ms, 12 ms on half a core),
   * reserved when they start, then the 4 additions. */
  two = allreduces(2, "2");
  assert_int_equal(two, 10 * US + 2 * 12000 * US + 4 * add);
}

/* A CPU rank's loop thread copies the messages it receives (Open MPI's
 * shared-memory transport; receive_work): two 10 MB transfers into one
 * rank take their turns on its loop, and where the loop also runs the
 * kernels (a core per rank), a 5 ms kernel holds the receives back. With
 * GPUs the same traces take only the network's time. */
static void test_receive_work(void **state) {
  pf_sim_cluster *cpu = cluster_of("cpu", NULL, "4"), *gpu = gpu_cluster();
  pf_simtime bytes_ns = 10000 * US, cost = 2 * US; /* runtime.transfer */
  traces T;
  pf_sim_result *r;
  (void)state;
  traces_init(&T);
  transfers(&T, 2);
  add(&T, 1, PF_CHAKRA_COMP, "k", -1)->num_ops = 5000000; /* 5 ms at 1 GFLOP/s */
  /* 4 cores for 4 ranks: the loop runs the kernel, the receives wait. */
  r = replay(&T, 2, cpu);
  assert_int_equal(r->makespan, 10 * US + (1 * US + 5000 * US) + 2 * (cost + bytes_ns));
  pf_sim_result_free(r);
  /* GPUs: the bytes share the link (20 ms), the kernel runs beside them. */
  r = replay(&T, 2, gpu);
  assert_true(r->makespan >= 10 * US + 2 * bytes_ns &&
              r->makespan <= 10 * US + 2 * bytes_ns + cost + 2 * US);
  pf_sim_result_free(r);
  pf_sim_cluster_free(cpu);
  pf_sim_cluster_free(gpu);
}

static void test_errors(void **state) {
  pf_sim_cluster *cl = cluster();
  pf_sim_result *r = NULL;
  traces T;
  pf_chakra_node *n;
  (void)state;
  /* A send nobody receives. */
  traces_init(&T);
  n = add(&T, 0, PF_CHAKRA_SEND, "lonely", -1);
  n->comm_dst = 1;
  n->comm_tag = 3;
  pf_diag_init(&diag);
  assert_int_equal(pf_sim_replay(T.p, 2, cl, NULL, &r, &diag), PF_EINVAL);
  assert_non_null(strstr(diag.msg, "\"lonely\""));
  assert_non_null(strstr(diag.msg, "no receive matches"));
  /* A receive nobody sends to: it never runs. */
  traces_init(&T);
  n = add(&T, 1, PF_CHAKRA_RECV, "waiting", -1);
  n->comm_src = 0;
  add(&T, 1, PF_CHAKRA_COMP, "after", 0);
  pf_diag_init(&diag);
  assert_int_equal(pf_sim_replay(T.p, 2, cl, NULL, &r, &diag), PF_ESTATE);
  assert_non_null(strstr(diag.msg, "2 of 2 nodes never ran"));
  assert_non_null(strstr(diag.msg, "\"waiting\""));
  /* A peer outside the simulated devices. */
  traces_init(&T);
  n = add(&T, 0, PF_CHAKRA_SEND, "far", -1);
  n->comm_dst = 9;
  pf_diag_init(&diag);
  assert_int_equal(pf_sim_replay(T.p, 2, cl, NULL, &r, &diag), PF_EINVAL);
  assert_non_null(strstr(diag.msg, "peer device 9"));
  /* A collective a member of its group never reaches. */
  traces_init(&T);
  n = add(&T, 0, PF_CHAKRA_COLL, "half", -1);
  n->comm_type = PF_CHAKRA_ALL_REDUCE;
  n->group = (int64_t[]){0, 1};
  n->n_group = 2;
  pf_diag_init(&diag);
  assert_int_equal(pf_sim_replay(T.p, 2, cl, NULL, &r, &diag), PF_EINVAL);
  assert_non_null(strstr(diag.msg, "device 1 never reaches"));
  /* More traces than the cluster has devices. */
  pf_diag_init(&diag);
  assert_int_equal(pf_sim_replay(T.p, 9, cl, NULL, &r, &diag), PF_EINVAL);
  assert_null(r);
  pf_sim_cluster_free(cl);
}

/* A compiled plan replayed: every op runs, each device's own ops in gang
 * order and one at a time. */
static void test_plan(void **state) {
  pf_sim_cluster *sc = cluster();
  pf_registry *reg;
  pf_cluster c = {.n_ranks = 4, .n_devices = 4};
  pf_graph_env env = {.diag = &diag};
  pf_graph *g;
  pf_slice_t all;
  pf_value_t x, w, y, s;
  pf_spec xs = pf_spec_2d(PF_F32, 64, 256), ws = pf_spec_2d(PF_F32, 256, 256);
  pf_compiled *comp;
  pf_chakra_trace **t;
  pf_sim_result *r;
  pf_attrs *axis0;
  (void)state;
  assert_int_equal(pf_registry_create(&reg) || pf_builtin_kernels_register(reg), 0);
  c.devices = calloc(4, sizeof *c.devices);
  for (int d = 0; d < 4; d++)
    c.devices[d] = (pf_cluster_device){.rank = d, .local = 0, .host = 0, .kind = PF_DEVICE_CPU};
  env.registry = reg;
  env.num_devices[PF_DEVICE_CPU] = 4;
  OK(pf_graph_new(&env, &g));
  OK(pf_graph_slice(g, PF_DEVICE_CPU, 4, &all));
  OK(pf_graph_input(g, "x", &xs, all, pf_split(0), &x));
  OK(pf_graph_input(g, "w", &ws, all, pf_replicated(), &w));
  OK(pf_graph_program(g, &(pf_program_desc){.kernel = "matmul", .slice = all, .n_in = 2,
                                            .in = (pf_value_t[]){x, w}}, &y, NULL));
  OK(pf_attrs_create(&axis0));
  OK(pf_attrs_set_int(axis0, "axis", 0));
  OK(pf_graph_program(g, &(pf_program_desc){.kernel = "reduce_sum", .attrs = axis0,
                                            .slice = all, .n_in = 1, .in = &y}, &s, NULL));
  pf_attrs_destroy(axis0);
  OK(pf_graph_output(g, "s", s));
  OK(pf_schedule(g, &c, 1, &comp, &diag));
  OK(pf_chakra_from_plans(comp, &c, reg, &t, &diag));
  OK(pf_sim_replay(t, 4, sc, NULL, &r, &diag));
  {
    uint32_t ops = 0;
    for (int d = 0; d < 4; d++) ops += comp->plans[d]->n_ops;
    assert_int_equal(r->nodes, ops);
  }
  /* matmul [16,256] @ [256,256] on each device: 2*16*256*256 flops at
   * 1 GFLOP/s is 2.1 ms, and the reduction is the only other compute. */
  for (int d = 0; d < 4; d++) assert_true(r->busy[d] >= 2097 * US);
  assert_true(r->makespan > 2097 * US);
  assert_true(r->n_path > 0 && r->path[r->n_path - 1].end == r->makespan);
  {
    /* The bundled ring (the default) and every flow on its own: the same
     * run, with fewer network events. */
    pf_sim_result *rf;
    OK(pf_sim_replay(t, 4, sc, &(pf_sim_options){.algo = PF_SIM_RING_FLOWS}, &rf, &diag));
    assert_int_equal(rf->makespan, r->makespan);
    for (int d = 0; d < 4; d++) assert_int_equal(rf->exposed[d], r->exposed[d]);
    for (int k = 0; k < PF_SIMNET_CLASS_COUNT; k++) assert_true(rf->net.bytes[k] == r->net.bytes[k]);
    assert_int_equal(rf->net.flows_done, r->net.flows_done);
    assert_true(rf->net.events >= r->net.events);
    assert_true(r->net.bundles_done > 0 && rf->net.bundles_done == 0); /* the plan has an allreduce */
    pf_sim_result_free(rf);
  }
  for (int d = 0; d < 4; d++) pf_chakra_free(t[d]);
  free(t);
  pf_sim_result_free(r);
  pf_compiled_free(comp);
  pf_graph_destroy(g);
  pf_registry_destroy(reg);
  free(c.devices);
  pf_sim_cluster_free(sc);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_chain),        cmocka_unit_test(test_deterministic),
      cmocka_unit_test(test_cores),
      cmocka_unit_test(test_link_sharing), cmocka_unit_test(test_receive_work),
      cmocka_unit_test(test_allreduce),
      cmocka_unit_test(test_reductions_on_the_loop),
      cmocka_unit_test(test_message_costs),
      cmocka_unit_test(test_loop_runs_kernels),
      cmocka_unit_test(test_kernel_efficiency),
      cmocka_unit_test(test_errors),       cmocka_unit_test(test_plan),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
