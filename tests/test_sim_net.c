/* The simulator's flow network and collective models against times worked
 * out by hand: one transfer, link sharing, disjoint links, max-min
 * fairness, ring/tree/hierarchical allreduce, determinism. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/diag.h"
#include "base/util.h"
#include "sim/cluster.h"
#include "sim/collective.h"
#include "sim/net.h"

/* A cluster of `islands` islands of `hosts` hosts of `per_host` devices;
 * bandwidths in bytes/s, latencies in ns; island_bw 0: none. */
static pf_sim_cluster *make(int islands, int hosts, int per_host, int nics, double intra_bw, int intra_lat,
                            double nic_bw, int nic_lat, double dcn_bw, int dcn_lat, double island_bw) {
  char groups[4096] = "", dcn[256] = "", text[8192];
  pf_sim_cluster *cl;
  pf_diag d;
  for (int i = 0; i < islands; i++) {
    size_t n = strlen(groups);
    snprintf(groups + n, sizeof groups - n, "%s{\"count\": %d, \"devices_per_rank\": %d, \"island\": %d}",
             i ? ", " : "", hosts, per_host, i);
  }
  if (islands > 1) {
    int n = snprintf(dcn, sizeof dcn, ", \"dcn\": {\"bandwidth\": %.17g, \"latency\": \"%dns\"", dcn_bw, dcn_lat);
    if (island_bw > 0) n += snprintf(dcn + n, sizeof dcn - (size_t)n, ", \"island_bandwidth\": %.17g", island_bw);
    snprintf(dcn + n, sizeof dcn - (size_t)n, "}");
  }
  snprintf(text, sizeof text,
           "{\"version\": 1, \"device_types\": {\"d\": {\"kind\": \"gpu\", \"flops\": {\"f32\": 1e12},"
           " \"memory\": \"1GB\", \"memory_bandwidth\": \"1TB/s\"}},"
           " \"hosts\": [%s],"
           " \"links\": {\"intra_host\": {\"bandwidth\": %.17g, \"latency\": \"%dns\"},"
           " \"nic\": {\"count\": %d, \"bandwidth\": %.17g, \"latency\": \"%dns\"}%s},"
           " \"runtime\": {\"op_dispatch\": 0, \"transfer\": 0, \"step\": 0}}",
           groups, intra_bw, intra_lat, nics, nic_bw, nic_lat, dcn);
  pf_diag_init(&d);
  if (pf_sim_cluster_parse(text, strlen(text), "test", &cl, &d) != 0) fail_msg("%s\n%s", d.msg, text);
  return cl;
}

static int nested_rc;
static void run_inside(pf_simnet *net, void *arg, uint64_t tag, pf_simtime now) {
  nested_rc = pf_simnet_run(net, PF_SIMTIME_MAX);
}

/* Completion times by tag. */
static pf_simtime done_at[64];
static void on_done(pf_simnet *net, void *arg, uint64_t tag, pf_simtime now) { done_at[tag] = now; }

static pf_simnet *net_for(const pf_sim_cluster *cl) {
  pf_simnet *net;
  assert_int_equal(pf_simnet_create(cl, &net), 0);
  memset(done_at, 0xff, sizeof done_at);
  return net;
}

static void test_single_transfer(void **state) {
  /* One host of 4 devices (1 GB/s, 1 us), 2 hosts a NIC (3 GB/s, 5 us). */
  pf_sim_cluster *cl = make(1, 2, 4, 1, 1e9, 1000, 3e9, 5000, 0, 0, 0);
  pf_simnet *net = net_for(cl);
  assert_int_equal(pf_simnet_send(net, 0, 1, 1000000, 0, on_done, NULL, 0), 0);
  assert_int_equal(pf_simnet_send(net, 2, 5, 12345, 70, on_done, NULL, 1), 0);  /* over the NICs */
  assert_int_equal(pf_simnet_send(net, 6, 3, 1000, 0, on_done, NULL, 2), 0);    /* 333.3 ns: rounded up */
  assert_int_equal(pf_simnet_send(net, 7, 7, 1 << 20, 42, on_done, NULL, 3), 0); /* to itself: no link */
  assert_int_equal(pf_simnet_send(net, 4, 0, 0, 10, on_done, NULL, 4), 0);     /* empty: latency only */
  assert_int_equal(pf_simnet_run(net, PF_SIMTIME_MAX), 0);
  assert_int_equal(done_at[0], 1000 + 1000000);
  assert_int_equal(done_at[1], 70 + 5000 + 4115);
  assert_int_equal(done_at[2], 5000 + 334);
  assert_int_equal(done_at[3], 42);
  assert_int_equal(done_at[4], 10 + 5000);
  pf_simtime lat;
  double bw;
  assert_int_equal(pf_simnet_path(net, 0, 5, &lat, &bw), 0);
  assert_int_equal(lat, 5000);
  assert_true(bw == 3e9);
  pf_simnet_stats st;
  pf_simnet_get_stats(net, &st);
  assert_int_equal(st.flows_done, 5);
  assert_true(st.bytes[PF_SIMNET_INTRA_HOST] == 1000000);
  assert_true(st.bytes[PF_SIMNET_NIC] == 12345 + 1000);
  /* Bad input. */
  assert_int_equal(pf_simnet_send(net, 0, 8, 1, pf_simnet_now(net), NULL, NULL, 0), PF_ERANGE);
  assert_int_equal(pf_simnet_send(net, -1, 0, 1, pf_simnet_now(net), NULL, NULL, 0), PF_ERANGE);
  assert_int_equal(pf_simnet_send(net, 0, 1, 1, pf_simnet_now(net) - 1, NULL, NULL, 0), PF_EINVAL);
  /* A callback cannot run the network from inside a run. */
  assert_int_equal(pf_simnet_send(net, 0, 1, 1, pf_simnet_now(net), run_inside, NULL, 0), 0);
  assert_int_equal(pf_simnet_run(net, PF_SIMTIME_MAX), 0);
  assert_int_equal(nested_rc, PF_ESTATE);
  pf_simnet_destroy(net);
  pf_sim_cluster_free(cl);
}

static void test_shared_link_twice_as_long(void **state) {
  pf_sim_cluster *cl = make(1, 1, 4, 1, 2e9, 700, 1e9, 1000, 0, 0, 0);
  pf_simnet *net = net_for(cl);
  uint64_t S = 6000000;
  assert_int_equal(pf_simnet_send(net, 0, 1, S, 0, on_done, NULL, 0), 0);
  assert_int_equal(pf_simnet_run(net, PF_SIMTIME_MAX), 0);
  pf_simtime one = done_at[0] - 700, t0 = pf_simnet_now(net);
  assert_int_equal(one, 3000000);
  /* Two flows out of device 0: its port carries both. */
  assert_int_equal(pf_simnet_send(net, 0, 1, S, t0, on_done, NULL, 1), 0);
  assert_int_equal(pf_simnet_send(net, 0, 2, S, t0, on_done, NULL, 2), 0);
  /* Two flows into device 3 from 1 and 2 (distinct senders): its port. */
  assert_int_equal(pf_simnet_send(net, 1, 3, S, t0, on_done, NULL, 3), 0);
  assert_int_equal(pf_simnet_send(net, 2, 3, S, t0, on_done, NULL, 4), 0);
  assert_int_equal(pf_simnet_run(net, PF_SIMTIME_MAX), 0);
  for (int k = 1; k <= 4; k++) assert_int_equal(done_at[k] - t0 - 700, 2 * one);
  pf_simnet_destroy(net);
  pf_sim_cluster_free(cl);
}

static void test_disjoint_links(void **state) {
  pf_sim_cluster *cl = make(1, 2, 4, 4, 2e9, 700, 1e9, 1000, 0, 0, 0);
  pf_simnet *net = net_for(cl);
  /* Inside host 0: 0->1 and 2->3; between hosts on distinct NICs: 4->0, 5->1. */
  assert_int_equal(pf_simnet_send(net, 0, 1, 4000000, 0, on_done, NULL, 0), 0);
  assert_int_equal(pf_simnet_send(net, 2, 3, 4000000, 0, on_done, NULL, 1), 0);
  assert_int_equal(pf_simnet_send(net, 4, 0, 1000000, 0, on_done, NULL, 2), 0);
  assert_int_equal(pf_simnet_send(net, 5, 1, 1000000, 0, on_done, NULL, 3), 0);
  assert_int_equal(pf_simnet_run(net, PF_SIMTIME_MAX), 0);
  assert_int_equal(done_at[0], 700 + 2000000);
  assert_int_equal(done_at[1], 700 + 2000000);
  assert_int_equal(done_at[2], 1000 + 1000000);
  assert_int_equal(done_at[3], 1000 + 1000000);
  pf_simnet_destroy(net);
  pf_sim_cluster_free(cl);
}

static void test_max_min_fairness(void **state) {
  /* Ports of C = 3 GB/s, no latency. f0, f1, f2 leave device 0 (its port
   * gives each C/3 = 1 GB/s); f3 goes 4 -> 1 and shares device 1's port
   * with f0 only, so it gets what f0 leaves: 2 GB/s. f0..f2 (1 MB) end at
   * 1 ms. f3 (3 MB) has moved 2 MB by then and takes the last 1 MB alone at
   * 3 GB/s: 333,333.3 ns, rounded up to 333,334. */
  pf_sim_cluster *cl = make(1, 1, 5, 1, 3e9, 0, 1e9, 0, 0, 0, 0);
  pf_simnet *net = net_for(cl);
  assert_int_equal(pf_simnet_send(net, 0, 1, 1000000, 0, on_done, NULL, 0), 0);
  assert_int_equal(pf_simnet_send(net, 0, 2, 1000000, 0, on_done, NULL, 1), 0);
  assert_int_equal(pf_simnet_send(net, 0, 3, 1000000, 0, on_done, NULL, 2), 0);
  assert_int_equal(pf_simnet_send(net, 4, 1, 3000000, 0, on_done, NULL, 3), 0);
  assert_int_equal(pf_simnet_run(net, PF_SIMTIME_MAX), 0);
  assert_int_equal(done_at[0], 1000000);
  assert_int_equal(done_at[1], 1000000);
  assert_int_equal(done_at[2], 1000000);
  assert_int_equal(done_at[3], 1000000 + 333334);
  pf_simnet_destroy(net);
  /* Across islands: host DCN ports of 1 GB/s under an island uplink of
   * 1.5 GB/s. Host 0 sends to hosts 2 and 3 (its port: 0.5 GB/s each);
   * host 1 sends to host 3 and gets what the uplink leaves: 0.5 GB/s too,
   * bounded by the uplink, not by its own port of 1 GB/s. */
  pf_sim_cluster_free(cl);
  cl = make(2, 2, 1, 1, 1e9, 0, 1e9, 0, 1e9, 100, 1.5e9);
  net = net_for(cl);
  assert_int_equal(pf_simnet_send(net, 0, 2, 500000, 0, on_done, NULL, 0), 0);
  assert_int_equal(pf_simnet_send(net, 0, 3, 500000, 0, on_done, NULL, 1), 0);
  assert_int_equal(pf_simnet_send(net, 1, 3, 1000000, 0, on_done, NULL, 2), 0);
  assert_int_equal(pf_simnet_run(net, PF_SIMTIME_MAX), 0);
  /* Host 3's down port carries f1 and f2: 0.5 each; the uplink 1.5 is
   * shared three ways at 0.5. Everything moves at 0.5 GB/s: f0 and f1 end
   * at 1 ms; then f2 alone has 0.5 MB left at 1 GB/s (its port): 0.5 ms. */
  assert_int_equal(done_at[0], 100 + 1000000);
  assert_int_equal(done_at[1], 100 + 1000000);
  assert_int_equal(done_at[2], 100 + 1500000);
  pf_simnet_stats st;
  pf_simnet_get_stats(net, &st);
  assert_true(st.bytes[PF_SIMNET_DCN] == 2000000);
  pf_simnet_destroy(net);
  pf_sim_cluster_free(cl);
}

static pf_simtime coll_end;
static int coll_calls;
static void on_coll(void *arg, pf_simtime now) {
  coll_end = now;
  coll_calls++;
}

static pf_simtime allreduce(const pf_sim_cluster *cl, pf_sim_algo algo, const int64_t *devs, int64_t n,
                            uint64_t bytes, int chunks) {
  pf_simnet *net;
  pf_diag d;
  pf_diag_init(&d);
  assert_int_equal(pf_simnet_create(cl, &net), 0);
  coll_end = -1;
  coll_calls = 0;
  if (pf_sim_allreduce(net, cl, algo, devs, n, bytes, chunks, 0, on_coll, NULL, &d) != 0) fail_msg("%s", d.msg);
  assert_int_equal(pf_simnet_run(net, PF_SIMTIME_MAX), 0);
  assert_int_equal(coll_calls, 1);
  assert_int_equal(pf_simnet_in_flight(net), 0);
  pf_simnet_destroy(net);
  return coll_end;
}

static void test_ring_closed_form(void **state) {
  int64_t devs[16];
  for (int i = 0; i < 16; i++) devs[i] = i;
  /* One host: 2(N-1)/N * S/bw + 2(N-1) * lat. */
  for (int n = 2; n <= 16; n *= 2) {
    pf_sim_cluster *cl = make(1, 1, n, 1, 1e9, 1500, 1e9, 0, 0, 0, 0);
    uint64_t S = (uint64_t)n * 1000000;
    pf_simtime want = (pf_simtime)(2 * (n - 1)) * (1500 + (pf_simtime)(S / (uint64_t)n));
    assert_int_equal(allreduce(cl, PF_SIM_RING, devs, n, S, 1), want);
    pf_sim_cluster_free(cl);
  }
  /* One device a host: the same over the NICs. */
  pf_sim_cluster *cl = make(1, 5, 1, 1, 1e9, 0, 2e9, 4000, 0, 0, 0);
  assert_int_equal(allreduce(cl, PF_SIM_RING, devs, 5, 5000000, 1), 8 * (4000 + 500000));
  /* Bytes that do not divide: chunks differ by one byte; the largest sets
   * each step. */
  pf_simtime t = allreduce(cl, PF_SIM_RING, devs, 5, 5000003, 1);
  assert_true(t > 8 * (4000 + 500000) && t <= 8 * (4000 + 500001));
  /* One device or no bytes: done at once. */
  assert_int_equal(allreduce(cl, PF_SIM_RING, devs, 1, 100, 1), 0);
  assert_int_equal(allreduce(cl, PF_SIM_RING, devs, 5, 0, 1), 0);
  pf_sim_cluster_free(cl);
}

static void test_tree_and_hierarchical(void **state) {
  int64_t devs[16];
  for (int i = 0; i < 16; i++) devs[i] = i;
  pf_sim_cluster *cl = make(1, 1, 8, 1, 1e9, 1000, 1e9, 0, 0, 0, 0);
  /* Three devices: both children send S into the root's port (2S/bw), then
   * the root sends S to both out of its port (2S/bw). */
  assert_int_equal(allreduce(cl, PF_SIM_TREE, devs, 3, 1000000, 1), 2 * 1000 + 4 * 1000000);
  /* Two devices, two chunks: up 2 chunks back to back, the second chunk's
   * broadcast after it: 3 chunk times, 3 latencies. */
  assert_int_equal(allreduce(cl, PF_SIM_TREE, devs, 2, 1000000, 2), 3 * (1000 + 500000));
  /* Pipelining helps a deep tree: 8 devices, 8 chunks beat 1 chunk. */
  assert_true(allreduce(cl, PF_SIM_TREE, devs, 8, 8000000, 8) < allreduce(cl, PF_SIM_TREE, devs, 8, 8000000, 1));
  /* Double tree of 2: each tree moves half the bytes, and the trees' flows
   * go opposite ways (1->0 and 0->1 at once), on different ports: half the
   * single tree's 2 * (lat + S/bw). */
  assert_int_equal(allreduce(cl, PF_SIM_TREE, devs, 2, 1000000, 1), 2 * (1000 + 1000000));
  assert_int_equal(allreduce(cl, PF_SIM_DOUBLE_TREE, devs, 2, 1000000, 1), 2 * (1000 + 500000));
  pf_sim_cluster_free(cl);
  /* Hierarchical on 2 hosts of 4: ring reduce-scatter in the host (3 steps
   * of S/4 over 1 GB/s, 1 us), allreduce of S/4 between the hosts (4 rings
   * of 2, 2 steps of S/8; one NIC of 2 GB/s a host carries 4 flows: 0.5 GB/s
   * each, 5 us), allgather in the host (3 steps). */
  cl = make(1, 2, 4, 1, 1e9, 1000, 2e9, 5000, 0, 0, 0);
  uint64_t S = 8000000;
  pf_simtime intra = 1000 + 2000000, inter = 5000 + 2000000;
  assert_int_equal(allreduce(cl, PF_SIM_HIERARCHICAL, devs, 8, S, 1), 3 * intra + 2 * inter + 3 * intra);
  pf_sim_cluster_free(cl);
  /* With a NIC a device, the inter-host rings do not share: S/8 at 2 GB/s. */
  cl = make(1, 2, 4, 4, 1e9, 1000, 2e9, 5000, 0, 0, 0);
  assert_int_equal(allreduce(cl, PF_SIM_HIERARCHICAL, devs, 8, S, 1), 6 * intra + 2 * (5000 + 500000));
  pf_sim_cluster_free(cl);
  /* Two islands of 2 hosts of 2: RS in host (1 step of S/2), RS across the
   * island's hosts (1 step of S/4 on NICs), AR across islands over the DCN
   * (2 steps of S/8, 4 rings, one per host and device: each host's DCN
   * port carries 2 flows), then AG back. */
  cl = make(2, 2, 2, 2, 1e9, 1000, 1e9, 2000, 1e9, 10000, 0);
  pf_simtime h = 1000 + 4000000, isl = 2000 + 2000000, dcn = 10000 + 2000000;
  assert_int_equal(allreduce(cl, PF_SIM_HIERARCHICAL, devs, 8, S, 1), 2 * h + 2 * isl + 2 * dcn);
  /* Uneven slices are refused for hierarchical, not for ring. */
  pf_simnet *net;
  pf_diag d;
  pf_diag_init(&d);
  assert_int_equal(pf_simnet_create(cl, &net), 0);
  int64_t uneven[] = {0, 1, 2};
  assert_int_equal(pf_sim_allreduce(net, cl, PF_SIM_HIERARCHICAL, uneven, 3, 100, 1, 0, NULL, NULL, &d), PF_EINVAL);
  assert_non_null(strstr(d.msg, "hosts hold different numbers"));
  int64_t dup[] = {0, 1, 1};
  pf_diag_init(&d);
  assert_int_equal(pf_sim_allreduce(net, cl, PF_SIM_RING, dup, 3, 100, 1, 0, NULL, NULL, &d), PF_EINVAL);
  assert_non_null(strstr(d.msg, "device 1 appears twice"));
  int64_t out[] = {0, 99};
  assert_int_equal(pf_sim_allreduce(net, cl, PF_SIM_RING, out, 2, 100, 1, 0, NULL, NULL, &d), PF_ERANGE);
  pf_simnet_destroy(net);
  pf_sim_cluster_free(cl);
}

/* ---- the bundled ring against the per-flow ring ---------------------------- */

typedef struct cross {
  int64_t src, dst;
  uint64_t bytes;
  pf_simtime start;
} cross;

static pf_simtime cross_end[16];
static void on_cross(pf_simnet *net, void *arg, uint64_t tag, pf_simtime now) { cross_end[tag] = now; }

/* An allreduce with other flows beside it: the collective's end; the other
 * flows' ends in cross_end; the network's counters in *st. */
static pf_simtime ring_with(const pf_sim_cluster *cl, pf_sim_algo algo, const int64_t *devs, int64_t n, uint64_t bytes,
                            const cross *x, int nx, pf_simnet_stats *st) {
  pf_simnet *net;
  pf_diag d;
  pf_diag_init(&d);
  assert_int_equal(pf_simnet_create(cl, &net), 0);
  coll_end = -1;
  coll_calls = 0;
  for (int i = 0; i < nx; i++) {
    cross_end[i] = -1;
    assert_int_equal(pf_simnet_send(net, x[i].src, x[i].dst, x[i].bytes, x[i].start, on_cross, NULL, (uint64_t)i), 0);
  }
  if (pf_sim_allreduce(net, cl, algo, devs, n, bytes, 1, 0, on_coll, NULL, &d) != 0) fail_msg("%s", d.msg);
  assert_int_equal(pf_simnet_run(net, PF_SIMTIME_MAX), 0);
  assert_int_equal(coll_calls, 1);
  assert_int_equal(pf_simnet_in_flight(net), 0);
  pf_simnet_get_stats(net, st);
  pf_simnet_destroy(net);
  return coll_end;
}

/* Where no link carries two flows of a step, the bundled ring (one bundle a
 * kind of path a step) gives exactly the per-flow ring's time, bytes per
 * class of link and flows, with far fewer events; with chunks that differ
 * by a byte, at most a nanosecond a step later (a step waits for its
 * largest chunk everywhere). */
static void test_ring_bundled_is_exact(void **state) {
  struct {
    int islands, hosts, per_host, nics;
  } shapes[] = {{1, 1, 8, 1}, {1, 6, 1, 1}, {1, 3, 4, 1}, {1, 2, 4, 4}, {2, 2, 2, 1}, {3, 2, 3, 2}};
  int64_t devs[64], shuffled[64];
  for (size_t c = 0; c < PF_ARRAY_LEN(shapes); c++) {
    /* Different bandwidths and latencies per kind of path: the steps are
     * paced by the slowest kind, and the kinds' bundles end apart. */
    pf_sim_cluster *cl = make(shapes[c].islands, shapes[c].hosts, shapes[c].per_host, shapes[c].nics, 7e9, 700,
                              3e9, 3000, 1e9, 9000, 0);
    int64_t n = shapes[c].islands * shapes[c].hosts * shapes[c].per_host;
    for (int64_t i = 0; i < n; i++) devs[i] = i;
    for (int k = 0; k < 3; k++) {
      uint64_t bytes = k == 0 ? (uint64_t)n * 100000 : k == 1 ? (uint64_t)n * 37 : (uint64_t)n * 100000 + 5;
      pf_simnet_stats a, b;
      pf_simtime flows = ring_with(cl, PF_SIM_RING_FLOWS, devs, n, bytes, NULL, 0, &a);
      pf_simtime bundled = ring_with(cl, PF_SIM_RING, devs, n, bytes, NULL, 0, &b);
      if (k < 2) assert_int_equal(bundled, flows);
      else assert_true(bundled >= flows && bundled <= flows + 2 * (n - 1));
      assert_int_equal(a.flows_done, (uint64_t)(2 * (n - 1) * n));
      assert_int_equal(b.flows_done, a.flows_done);
      for (int cls = 0; cls < PF_SIMNET_CLASS_COUNT; cls++) assert_true(a.bytes[cls] == b.bytes[cls]);
      assert_true(b.events * (uint64_t)n <= a.events * 3);
      assert_true(b.bundles_done >= (uint64_t)(2 * (n - 1)) && b.bundles_done <= (uint64_t)(6 * (n - 1)));
    }
    /* A ring order that crosses hosts at every step: several flows of a
     * step share each NIC, all alike, so the bundle's weight there gives
     * each what max-min gives it. */
    if (shapes[c].islands == 1 && shapes[c].hosts == 2 && shapes[c].nics == 1) {
      for (int64_t i = 0; i < n; i++) shuffled[i] = (i % 2) * (n / 2) + i / 2;
      pf_simnet_stats a, b;
      assert_int_equal(ring_with(cl, PF_SIM_RING, shuffled, n, (uint64_t)n * 1000, NULL, 0, &b),
                       ring_with(cl, PF_SIM_RING_FLOWS, shuffled, n, (uint64_t)n * 1000, NULL, 0, &a));
    }
    pf_sim_cluster_free(cl);
  }
}

/* Two devices on two hosts: each step is 0->1 and 1->0, and a flow 0->1
 * beside them shares host 0's NIC up and host 1's down with the step's
 * 0->1 flow. Both rings wait for that flow each step, so they agree exactly,
 * whether the other flow is there from the start or comes in the middle
 * of a step (the bundle, alone on its links until then, must then enter
 * them and be slowed), and the other flow ends at the same time too. By
 * hand, for the flow from the start: a step is 1 us + 1 MB at 0.5 GB/s
 * while they share. */
static void test_ring_bundled_cross_exact(void **state) {
  pf_sim_cluster *cl = make(1, 2, 1, 1, 1e9, 0, 1e9, 1000, 0, 0, 0);
  int64_t devs[] = {0, 1};
  pf_simnet_stats st;
  cross x = {0, 1, 10000000, 0};
  pf_simtime t = ring_with(cl, PF_SIM_RING, devs, 2, 2000000, &x, 1, &st);
  assert_int_equal(t, 2 * (1000 + 2000000));
  /* The other flow: 1 MB done in each step's 2 ms and the gap of 1 us
   * between them at full rate, the rest alone: 10 MB - 2 MB - 1000 B. */
  pf_simtime other = cross_end[0];
  assert_int_equal(other, t + (10000000 - 2000000 - 1000));
  assert_int_equal(ring_with(cl, PF_SIM_RING_FLOWS, devs, 2, 2000000, &x, 1, &st), t);
  assert_int_equal(cross_end[0], other);
  for (pf_simtime start = 1; start < 2000000; start += 133331) {
    x.start = start;
    pf_simtime b = ring_with(cl, PF_SIM_RING, devs, 2, 2000000, &x, 1, &st);
    pf_simtime ob = cross_end[0];
    assert_int_equal(ring_with(cl, PF_SIM_RING_FLOWS, devs, 2, 2000000, &x, 1, &st), b);
    assert_int_equal(cross_end[0], ob);
    assert_true(b > 2 * (1000 + 1000000)); /* slowed down */
  }
  pf_sim_cluster_free(cl);
}

/* A larger ring with cross traffic that slows some of its flows: the
 * per-flow ring lets the members that are not slowed run ahead within a
 * step's dependencies and its slowed flows meet the other traffic at
 * different moments, the bundle moves in lockstep, so they differ a little,
 * either way: within 5% (measured: 0.014% here), the cross flows too. */
static void test_ring_bundled_cross_tolerance(void **state) {
  pf_sim_cluster *cl = make(1, 8, 2, 1, 4e9, 500, 1e9, 2000, 0, 0, 0);
  int64_t devs[16];
  for (int i = 0; i < 16; i++) devs[i] = i;
  cross x[] = {{1, 6, 3000000, 0}, {9, 4, 2000000, 150000}, {12, 3, 5000000, 700000}, {5, 14, 1000000, 40000}};
  pf_simnet_stats a, b;
  pf_simtime flows = ring_with(cl, PF_SIM_RING_FLOWS, devs, 16, 16000000, x, 4, &a);
  pf_simtime fx[4];
  memcpy(fx, cross_end, sizeof fx);
  pf_simtime bundled = ring_with(cl, PF_SIM_RING, devs, 16, 16000000, x, 4, &b);
  print_message("ring of 16 with cross traffic: per flow %lld ns, bundled %lld ns (%+.3f%%)\n", (long long)flows,
                (long long)bundled, 100.0 * (double)(bundled - flows) / (double)flows);
  assert_true(fabs((double)(bundled - flows)) <= 0.05 * (double)flows);
  assert_true(flows > ring_with(cl, PF_SIM_RING_FLOWS, devs, 16, 16000000, NULL, 0, &a) + 1000000); /* slowed */
  for (int i = 0; i < 4; i++) {
    print_message("  cross flow %d: per flow %lld ns, bundled %lld ns\n", i, (long long)fx[i], (long long)cross_end[i]);
    assert_true(fabs((double)(cross_end[i] - fx[i])) <= 0.05 * (double)fx[i]);
  }
  pf_sim_cluster_free(cl);
}

/* Two allreduces at once over the same devices: both rings' bundles cross
 * the same links, so they share each link as bundles. Started together, or
 * the second while the first is under way (the first then runs alone,
 * without entering its links, and must be put on them when the second's
 * step arrives), both ways give the same times to the nanosecond: here
 * every link carries one flow of each ring and each ring's flows are alike
 * and in step, so lockstep loses nothing (with unlike flows it can, as the
 * test above shows). */
static pf_simtime second_end;
static void on_second(void *arg, pf_simtime now) { second_end = now; }

static pf_simtime two_rings(const pf_sim_cluster *cl, pf_sim_algo algo, const int64_t *devs, int64_t n,
                            pf_simtime offset) {
  pf_simnet *net;
  pf_diag d;
  pf_diag_init(&d);
  assert_int_equal(pf_simnet_create(cl, &net), 0);
  coll_end = second_end = -1;
  coll_calls = 0;
  if (pf_sim_allreduce(net, cl, algo, devs, n, (uint64_t)n * 500000, 1, 0, on_coll, NULL, &d) != 0) fail_msg("%s", d.msg);
  assert_int_equal(pf_simnet_run(net, offset), 0);
  if (pf_sim_allreduce(net, cl, algo, devs, n, (uint64_t)n * 300000, 1, offset, on_second, NULL, &d) != 0)
    fail_msg("%s", d.msg);
  assert_int_equal(pf_simnet_run(net, PF_SIMTIME_MAX), 0);
  assert_int_equal(pf_simnet_in_flight(net), 0);
  pf_simnet_destroy(net);
  return coll_end;
}

static void test_ring_bundled_two_rings(void **state) {
  pf_sim_cluster *cl = make(1, 4, 2, 1, 4e9, 500, 1e9, 2000, 0, 0, 0);
  int64_t devs[8];
  for (int i = 0; i < 8; i++) devs[i] = i;
  pf_simtime a = two_rings(cl, PF_SIM_RING, devs, 8, 0), a2 = second_end;
  assert_int_equal(two_rings(cl, PF_SIM_RING_FLOWS, devs, 8, 0), a);
  assert_int_equal(second_end, a2);
  /* Sharing slowed the first: alone it takes 14 steps of 2 us + 0.5 ms. */
  assert_true(a > 14 * (2000 + 500000));
  for (pf_simtime off = 250000; off < 6000000; off += 1250000) {
    pf_simtime b = two_rings(cl, PF_SIM_RING, devs, 8, off), b2 = second_end;
    pf_simtime f = two_rings(cl, PF_SIM_RING_FLOWS, devs, 8, off), f2 = second_end;
    print_message("second ring at %lld ns: first ends %lld (per flow %lld), second %lld (per flow %lld)\n",
                  (long long)off, (long long)b, (long long)f, (long long)b2, (long long)f2);
    assert_int_equal(b, f);
    assert_int_equal(b2, f2);
    assert_true(b > 14 * (2000 + 500000)); /* the second slowed the first */
  }
  pf_sim_cluster_free(cl);
}

/* The shape interface on its own: a send while the last is in flight is
 * refused; a device to itself or outside the cluster is refused up front. */
static void test_shape_errors(void **state) {
  pf_sim_cluster *cl = make(1, 2, 2, 1, 1e9, 100, 1e9, 1000, 0, 0, 0);
  pf_simnet *net = net_for(cl);
  pf_simnet_shape *sh;
  int64_t src[] = {0, 1, 2}, dst[] = {1, 2, 0}, self[] = {0, 1, 2}, far[] = {1, 2, 9};
  int parts;
  assert_int_equal(pf_simnet_shape_create(net, src, self, 3, &sh), PF_EINVAL);
  assert_int_equal(pf_simnet_shape_create(net, src, far, 3, &sh), PF_ERANGE);
  assert_int_equal(pf_simnet_shape_create(net, src, dst, 3, &sh), 0);
  assert_int_equal(pf_simnet_shape_send(net, sh, NULL, 1000, 0, on_done, NULL, 1, &parts), 0);
  assert_int_equal(parts, 2); /* 0->1 inside host 0; 1->2 and 2->0 across */
  assert_int_equal(pf_simnet_shape_send(net, sh, NULL, 1000, 0, on_done, NULL, 1, &parts), PF_ESTATE);
  assert_int_equal(pf_simnet_run(net, PF_SIMTIME_MAX), 0);
  assert_int_equal(done_at[1], 1000 + 1000);
  assert_int_equal(pf_simnet_shape_send(net, sh, NULL, 1000, pf_simnet_now(net) - 1, on_done, NULL, 1, &parts),
                   PF_EINVAL);
  pf_simnet_stats st;
  pf_simnet_get_stats(net, &st);
  assert_int_equal(st.flows_done, 3);
  assert_int_equal(st.bundles_done, 2);
  pf_simnet_shape_destroy(net, sh);
  pf_simnet_destroy(net);
  pf_sim_cluster_free(cl);
}

/* A pseudo-random mix of flows, some sent from completion callbacks. */
typedef struct mix {
  uint64_t rng;
  int left;
  pf_simtime *log;
  int n_log;
  int64_t devices;
} mix;

static uint64_t next(mix *m) {
  m->rng = m->rng * 6364136223846793005ULL + 1442695040888963407ULL;
  return m->rng >> 33;
}

static void mix_done(pf_simnet *net, void *arg, uint64_t tag, pf_simtime now) {
  mix *m = arg;
  m->log[m->n_log++] = now * 1000 + (pf_simtime)(tag % 1000);
  if (m->left > 0) {
    m->left--;
    pf_simnet_send(net, (int64_t)(next(m) % (uint64_t)m->devices), (int64_t)(next(m) % (uint64_t)m->devices),
                   next(m) % 5000000, now + (pf_simtime)(next(m) % 3000), mix_done, m, next(m));
  }
}

static void on_ref(pf_simnet *net, void *arg, uint64_t tag, pf_simtime now) { ((pf_simtime *)arg)[tag] = now; }

static void run_mix(const pf_sim_cluster *cl, pf_simtime *log, int *n_log, pf_simnet_stats *st) {
  pf_simnet *net;
  mix m = {.rng = 12345, .left = 3000, .log = log, .devices = cl->devices};
  assert_int_equal(pf_simnet_create(cl, &net), 0);
  for (int i = 0; i < 500; i++)
    assert_int_equal(pf_simnet_send(net, (int64_t)(next(&m) % (uint64_t)cl->devices),
                                    (int64_t)(next(&m) % (uint64_t)cl->devices), next(&m) % 5000000,
                                    (pf_simtime)(next(&m) % 100000), mix_done, &m, next(&m)),
                     0);
  /* In two legs, to check that running up to a time and going on is the
   * same as one run. */
  assert_int_equal(pf_simnet_run(net, 2000000), 0);
  assert_int_equal(pf_simnet_now(net), 2000000);
  assert_int_equal(pf_simnet_run(net, PF_SIMTIME_MAX), 0);
  pf_simnet_get_stats(net, st);
  *n_log = m.n_log;
  pf_simnet_destroy(net);
}


/* A reference: the same model computed the slow, obvious way, in continuous
 * time (doubles), with every active flow re-rated by global progressive
 * filling at every event. Paths for 2 hosts of 4 devices and one NIC a host:
 * links 0-7 device ports up, 8-15 down, 16-17 NICs up, 18-19 down. */
#define REF_FLOWS 60
typedef struct ref_flow {
  int src, dst, links[2];
  double bytes, start, enter, left, rate, end;
  int state; /* 0 waiting, 1 active, 2 done */
} ref_flow;

static void ref_run(ref_flow *f, int n, double intra_bw, double nic_bw) {
  double now = 0, cap[20];
  for (int l = 0; l < 20; l++) cap[l] = l < 16 ? intra_bw : nic_bw;
  for (;;) {
    /* rates: progressive filling over all active flows */
    double left[20];
    int unfrozen[20] = {0}, frozen[REF_FLOWS] = {0};
    memcpy(left, cap, sizeof left);
    for (int i = 0; i < n; i++)
      if (f[i].state == 1)
        for (int k = 0; k < 2; k++) unfrozen[f[i].links[k]]++;
    for (;;) {
      int best = -1;
      for (int l = 0; l < 20; l++)
        if (unfrozen[l] > 0 && (best < 0 || left[l] / unfrozen[l] < left[best] / unfrozen[best])) best = l;
      if (best < 0) break;
      double share = left[best] / unfrozen[best];
      for (int i = 0; i < n; i++)
        if (f[i].state == 1 && !frozen[i] && (f[i].links[0] == best || f[i].links[1] == best)) {
          frozen[i] = 1;
          f[i].rate = share;
          for (int k = 0; k < 2; k++) {
            left[f[i].links[k]] -= share;
            unfrozen[f[i].links[k]]--;
          }
        }
    }
    /* the next event */
    double next = INFINITY;
    for (int i = 0; i < n; i++) {
      if (f[i].state == 0 && f[i].enter < next) next = f[i].enter;
      if (f[i].state == 1 && now + f[i].left / f[i].rate * 1e9 < next) next = now + f[i].left / f[i].rate * 1e9;
    }
    if (next == INFINITY) return;
    for (int i = 0; i < n; i++)
      if (f[i].state == 1) {
        f[i].left -= f[i].rate * (next - now) * 1e-9;
        if (f[i].left <= f[i].bytes * 1e-12) {
          f[i].state = 2;
          f[i].end = next;
        }
      }
    now = next;
    for (int i = 0; i < n; i++)
      if (f[i].state == 0 && f[i].enter <= now) f[i].state = 1;
  }
}

static void test_against_reference(void **state) {
  pf_sim_cluster *cl = make(1, 2, 4, 1, 2e9, 1000, 1.5e9, 3000, 0, 0, 0);
  for (int round = 0; round < 20; round++) {
    ref_flow f[REF_FLOWS];
    mix m = {.rng = 1000 + (uint64_t)round};
    pf_simnet *net = net_for(cl);
    static pf_simtime got[REF_FLOWS];
    for (int i = 0; i < REF_FLOWS; i++) {
      ref_flow *r = &f[i];
      memset(r, 0, sizeof *r);
      r->src = (int)(next(&m) % 8);
      do r->dst = (int)(next(&m) % 8); while (r->dst == r->src);
      r->bytes = (double)(1 + next(&m) % 2000000);
      r->left = r->bytes;
      r->start = (double)(next(&m) % (round < 10 ? 3000000 : 5)); /* later rounds: all at once */
      int same = r->src / 4 == r->dst / 4;
      r->enter = r->start + (same ? 1000 : 3000);
      r->links[0] = same ? r->src : 16 + r->src / 4;
      r->links[1] = same ? 8 + r->dst : 18 + r->dst / 4;
      assert_int_equal(pf_simnet_send(net, r->src, r->dst, (uint64_t)r->bytes, (pf_simtime)r->start, on_ref, got,
                                      (uint64_t)i), 0);
    }
    assert_int_equal(pf_simnet_run(net, PF_SIMTIME_MAX), 0);
    ref_run(f, REF_FLOWS, 2e9, 1.5e9);
    for (int i = 0; i < REF_FLOWS; i++) {
      /* The network rounds each completion up to a nanosecond; the delays
       * add up along a chain of events, no more. */
      double diff = fabs((double)got[i] - f[i].end);
      if (diff > 100 + f[i].end * 1e-7)
        fail_msg("round %d flow %d (%d->%d, %.0f B from %.0f): network %lld ns, reference %.1f ns", round, i,
                 f[i].src, f[i].dst, f[i].bytes, f[i].start, (long long)got[i], f[i].end);
    }
    pf_simnet_destroy(net);
  }
  pf_sim_cluster_free(cl);
}

static void test_determinism(void **state) {
  pf_sim_cluster *cl = make(2, 3, 4, 2, 3e9, 700, 1.25e9, 3000, 5e8, 20000, 8e8);
  pf_simtime *a = malloc(4000 * sizeof *a), *b = malloc(4000 * sizeof *b);
  int na, nb;
  pf_simnet_stats sa, sb;
  run_mix(cl, a, &na, &sa);
  run_mix(cl, b, &nb, &sb);
  assert_int_equal(na, 3500);
  assert_int_equal(nb, na);
  assert_memory_equal(a, b, (size_t)na * sizeof *a);
  assert_memory_equal(&sa, &sb, sizeof sa);
  for (int i = 1; i < na; i++) assert_true(a[i] / 1000 >= a[i - 1] / 1000); /* time never goes back */
  free(a);
  free(b);
  pf_sim_cluster_free(cl);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_single_transfer),
      cmocka_unit_test(test_shared_link_twice_as_long),
      cmocka_unit_test(test_disjoint_links),
      cmocka_unit_test(test_max_min_fairness),
      cmocka_unit_test(test_ring_closed_form),
      cmocka_unit_test(test_tree_and_hierarchical),
      cmocka_unit_test(test_ring_bundled_is_exact),
      cmocka_unit_test(test_ring_bundled_cross_exact),
      cmocka_unit_test(test_ring_bundled_cross_tolerance),
      cmocka_unit_test(test_ring_bundled_two_rings),
      cmocka_unit_test(test_shape_errors),
      cmocka_unit_test(test_against_reference),
      cmocka_unit_test(test_determinism),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
