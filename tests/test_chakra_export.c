/* Compiled plans as Chakra traces (sim/chakra_export.c): every op of every
 * rank's plan is one node of its device's trace, with its kind, sizes,
 * peers and dependencies; each trace reads back with every check. */
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

static pf_registry *reg;
#include "testing_diag.h"

/* 2 ranks x 2 devices. */
static pf_cluster cluster(void) {
  pf_cluster c = {.n_ranks = 2, .n_devices = 4};
  c.devices = calloc(4, sizeof *c.devices);
  for (int g = 0; g < 4; g++)
    c.devices[g] = (pf_cluster_device){.rank = g / 2, .local = g % 2, .host = 0,
                                       .kind = PF_DEVICE_CPU};
  return c;
}

/* x f32[8,16] split over 4 devices @ w f32[16,4]: a matmul on every device;
 * reduce_sum over the split axis, partial, so an allreduce over the four
 * (across both ranks); the product read whole on a slice of 2 devices:
 * transfers between ranks and copies within one. */
static pf_graph *graph(const pf_cluster *c) {
  pf_graph_env env = {.registry = reg, .diag = &diag};
  pf_graph *g;
  pf_slice_t all, two;
  pf_value_t x, w, y, s, r;
  pf_spec xs = pf_spec_2d(PF_F32, 8, 16), ws = pf_spec_2d(PF_F32, 16, 4);
  pf_attrs *axis0;
  env.num_devices[PF_DEVICE_CPU] = c->n_devices;
  OK(pf_graph_new(&env, &g));
  OK(pf_graph_slice(g, PF_DEVICE_CPU, 4, &all));
  OK(pf_graph_slice(g, PF_DEVICE_CPU, 2, &two));
  OK(pf_graph_input(g, "x", &xs, all, pf_split(0), &x));
  OK(pf_graph_input(g, "w", &ws, all, pf_replicated(), &w));
  OK(pf_graph_program(g, &(pf_program_desc){.kernel = "matmul", .slice = all, .n_in = 2,
                                            .in = (pf_value_t[]){x, w}},
                      &y, NULL));
  OK(pf_attrs_create(&axis0));
  OK(pf_attrs_set_int(axis0, "axis", 0));
  OK(pf_graph_program(g, &(pf_program_desc){.kernel = "reduce_sum", .attrs = axis0,
                                            .slice = all, .n_in = 1, .in = &y},
                      &s, NULL));
  pf_attrs_destroy(axis0);
  OK(pf_graph_program(g, &(pf_program_desc){.kernel = "relu", .slice = two, .n_in = 1,
                                            .in = &y, .in_shardings = (pf_sharding[]){pf_replicated()}},
                      &r, NULL));
  OK(pf_graph_output(g, "s", s));
  OK(pf_graph_output(g, "r", r));
  return g;
}

static const pf_chakra_node *find(const pf_chakra_trace *t, uint64_t id) {
  for (uint32_t i = 0; i < t->n_nodes; i++)
    if (t->nodes[i].id == id) return &t->nodes[i];
  return NULL;
}

static int has_dep(const pf_chakra_node *n, uint64_t id) {
  for (uint32_t k = 0; k < n->n_data_deps; k++)
    if (n->data_deps[k] == id) return 1;
  return 0;
}

static void test_export(void **state) {
  pf_cluster c = cluster();
  pf_graph *g = graph(&c);
  pf_compiled *comp = NULL;
  pf_chakra_trace **t = NULL;
  int kinds[5] = {0}, cross = 0;
  uint32_t nodes = 0, ops = 0;
  (void)state;
  pf_diag_init(&diag);
  OK(pf_schedule(g, &c, 1, &comp, &diag));
  OK(pf_chakra_from_plans(comp, &c, reg, &t, &diag));
  for (int r = 0; r < comp->n_ranks; r++) {
    const pf_plan *p = comp->plans[r];
    if (p == NULL) continue;
    ops += p->n_ops;
    for (uint32_t i = 0; i < p->n_ops; i++) {
      const pf_plan_op *op = &p->ops[i];
      int gdev = r * 2 + op->device;
      const pf_chakra_node *n = find(t[gdev], i);
      assert_non_null(n);
      kinds[op->kind]++;
      switch (op->kind) {
        case PF_OP_KERNEL:
          assert_int_equal(n->type, PF_CHAKRA_COMP);
          assert_string_equal(n->kernel, op->kernel); /* the simulator's kernel_efficiency */
          if (strcmp(op->kernel, "matmul") == 0) /* 2 x [2,16] @ [16,4] */
            assert_int_equal(n->num_ops, 2 * 2 * 16 * 4);
          break;
        case PF_OP_COPY: assert_int_equal(n->type, PF_CHAKRA_COMP); break;
        case PF_OP_SEND:
        case PF_OP_RECV: {
          int64_t elems = 1;
          for (int k = 0; k < op->box->rank; k++) elems *= op->box->extent[k];
          assert_int_equal(n->type, op->kind == PF_OP_SEND ? PF_CHAKRA_SEND : PF_CHAKRA_RECV);
          assert_int_equal(n->comm_size, elems * 4);
          assert_int_equal(n->comm_tag, op->tag);
          /* The peer is on the other rank, and its node says the same. */
          int64_t peer = op->kind == PF_OP_SEND ? n->comm_dst : n->comm_src;
          assert_int_equal(peer / 2, op->peer);
          int matched = 0;
          for (uint32_t k = 0; k < t[peer]->n_nodes; k++) {
            const pf_chakra_node *m = &t[peer]->nodes[k];
            if (m->comm_tag == op->tag &&
                m->type == (op->kind == PF_OP_SEND ? PF_CHAKRA_RECV : PF_CHAKRA_SEND)) {
              assert_int_equal(op->kind == PF_OP_SEND ? m->comm_src : m->comm_dst, gdev);
              assert_int_equal(m->comm_size, n->comm_size);
              matched++;
            }
          }
          assert_int_equal(matched, 1);
          break;
        }
        default:
          if (op->comm >= 0) {
            assert_int_equal(n->type, PF_CHAKRA_COLL);
            assert_int_equal(n->comm_type, PF_CHAKRA_ALL_REDUCE);
            const pf_plan_comm *cm = NULL;
            for (uint32_t k = 0; k < p->n_comms; k++)
              if (p->comms[k].id == op->comm) cm = &p->comms[k];
            assert_non_null(cm);
            assert_int_equal(n->n_group, cm->n_ranks);
            for (uint32_t k = 0; k < n->n_group; k++) {
              int in = 0;
              for (uint32_t j = 0; j < cm->n_ranks; j++) in |= cm->ranks[j] == n->group[k] / 2;
              assert_true(in);
            }
          }
          break;
      }
      /* Every dependency: directly on the same device, else through a
       * receive from the producer's device. */
      for (uint32_t e = 0; e < op->n_deps; e++) {
        const pf_plan_op *dep = &p->ops[op->deps[e]];
        if (dep->device == op->device) {
          assert_true(has_dep(n, op->deps[e]));
          continue;
        }
        cross++;
        int found = 0;
        for (uint32_t k = 0; k < n->n_data_deps && !found; k++) {
          const pf_chakra_node *rv = find(t[gdev], n->data_deps[k]);
          const pf_chakra_node *sd;
          if (rv == NULL || rv->type != PF_CHAKRA_RECV || rv->id < p->n_ops) continue;
          assert_int_equal(rv->comm_src, r * 2 + dep->device);
          sd = find(t[r * 2 + dep->device], rv->id);
          assert_non_null(sd);
          assert_int_equal(sd->type, PF_CHAKRA_SEND);
          assert_int_equal(sd->comm_tag, rv->comm_tag);
          found = has_dep(sd, op->deps[e]);
        }
        assert_true(found);
      }
    }
  }
  print_message("ops: %d kernels, %d copies, %d sends, %d receives, %d collectives; %d "
                "dependencies across devices of one rank\n", kinds[0], kinds[1], kinds[2],
                kinds[3], kinds[4], cross);
  /* The graph has each kind this test means to cover. */
  assert_true(kinds[PF_OP_KERNEL] > 0 && kinds[PF_OP_SEND] > 0 && kinds[PF_OP_RECV] > 0 &&
              kinds[PF_OP_COLLECTIVE] > 0);
  /* Nothing else: one node per op, two per cross-device dependency; and
   * each trace reads back whole, with the reader's checks. */
  for (int gd = 0; gd < 4; gd++) {
    uint8_t *buf;
    size_t len;
    pf_chakra_trace *back;
    nodes += t[gd]->n_nodes;
    OK(pf_chakra_encode(t[gd], &buf, &len));
    OK(pf_chakra_decode(buf, len, "export", &back, &diag));
    assert_int_equal(back->n_nodes, t[gd]->n_nodes);
    free(buf);
    pf_chakra_free(back);
    pf_chakra_free(t[gd]);
  }
  assert_true(cross > 0 || kinds[PF_OP_COPY] == 0);
  assert_true(nodes >= ops && nodes <= ops + 2 * (uint32_t)cross);
  free(t);
  pf_compiled_free(comp);
  pf_graph_destroy(g);
  free(c.devices);
}

static int setup(void **state) {
  (void)state;
  return pf_registry_create(&reg) || pf_builtin_kernels_register(reg);
}

static int teardown(void **state) {
  (void)state;
  pf_registry_destroy(reg);
  return 0;
}

int main(void) {
  const struct CMUnitTest tests[] = {cmocka_unit_test(test_export)};
  return cmocka_run_group_tests(tests, setup, teardown);
}
