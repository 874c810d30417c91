/* The scheduler on simulated clusters (no ranks needed): placement
 * policies, reshard lowering, gang order, sequential dispatch checks. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "base/layout.h"
#include "base/util.h"
#include "pathflow/error.h"
#include "graph/graph_codec.h"
#include "graph/graph_internal.h"
#include "scheduler/schedule.h"

static pf_registry *reg;
static pf_diag diag;

static int setup(void **state) {
  (void)state;
  return pf_registry_create(&reg) || pf_builtin_kernels_register(reg);
}

static int teardown(void **state) {
  (void)state;
  pf_registry_destroy(reg);
  return 0;
}

/* hosts x ranks_per_host x devices_per_rank; ranks dealt to hosts
 * round-robin (rank r on host r % hosts), as mpirun --map-by node does. */
static pf_cluster make_cluster(int hosts, int ranks_per_host, int per_rank) {
  pf_cluster c;
  int ranks = hosts * ranks_per_host, k = 0;
  c.n_ranks = ranks;
  c.n_devices = ranks * per_rank;
  c.devices = calloc((size_t)c.n_devices, sizeof *c.devices);
  for (int r = 0; r < ranks; r++)
    for (int d = 0; d < per_rank; d++, k++) {
      c.devices[k].rank = r;
      c.devices[k].local = d;
      c.devices[k].host = r % hosts;
      c.devices[k].kind = PF_DEVICE_CPU;
    }
  return c;
}

static pf_graph *new_graph(const pf_cluster *c) {
  pf_graph_env env;
  pf_graph *g;
  memset(&env, 0, sizeof env);
  env.registry = reg;
  env.num_devices[PF_DEVICE_CPU] = c->n_devices;
  env.diag = &diag;
  assert_int_equal(pf_graph_new(&env, &g), 0);
  return g;
}

#define OK(call)                                                              \
  do {                                                                        \
    int rc_ = (call);                                                         \
    if (rc_ != 0) fail_msg("%s: %s: %s", #call, pf_errname(rc_), diag.msg);   \
  } while (0)

static pf_compiled *compile(const pf_graph *g, const pf_cluster *c) {
  pf_compiled *out = NULL;
  pf_diag_init(&diag);
  OK(pf_schedule(g, c, 1, &out, &diag));
  return out;
}

/* Every plan of a compiled graph passes pf_plan_check and survives the wire
 * unchanged (both keep their ops in a pool);
 * ops with equal boxes share one. */
static void round_trip(const pf_compiled *comp, const pf_cluster *c) {
  for (int r = 0; r < comp->n_ranks; r++) {
    const pf_plan *p = comp->plans[r];
    pf_plan *q = NULL;
    uint8_t *buf;
    size_t len;
    int local = 0;
    for (int k = 0; k < c->n_devices; k++) local += c->devices[k].rank == r;
    assert_non_null(p->pool);
    OK(pf_plan_check(p, local, &diag));
    OK(pf_plan_encode(p, &buf, &len));
    OK(pf_plan_decode(buf, len, local, &q, &diag));
    free(buf);
    assert_non_null(q->pool);
    assert_true(pf_plan_equal(p, q));
    pf_plan_free(q);
    for (uint32_t i = 0; i < p->n_ops; i++)
      for (uint32_t j = 0; j < i; j++)
        if (p->ops[i].box && p->ops[j].box &&
            memcmp(p->ops[i].box, p->ops[j].box, sizeof(pf_box)) == 0)
          assert_ptr_equal(p->ops[i].box, p->ops[j].box);
  }
}

static int host_of(const pf_cluster *c, const pf_compiled *comp, pf_slice_t slice, int i) {
  return c->devices[comp->placed[comp->slice_devices[slice.id] + i]].host;
}

/* Two single-program slices of 4 devices on 2 hosts x 2 ranks x 2
 * devices: packed fills one host per slice; spread alternates hosts. */
static void test_packed_and_spread(void **state) {
  pf_cluster c = make_cluster(2, 2, 2);
  (void)state;
  for (int policy = 0; policy < 2; policy++) {
    pf_graph *g = new_graph(&c);
    pf_slice_t a, b;
    pf_value_t x, y;
    pf_spec spec = pf_spec_1d(PF_F32, 8);
    pf_compiled *comp;
    OK(pf_graph_set_placement(g, policy ? PF_PLACE_SPREAD : PF_PLACE_PACKED));
    OK(pf_graph_slice(g, PF_DEVICE_CPU, 4, &a));
    OK(pf_graph_slice(g, PF_DEVICE_CPU, 4, &b));
    OK(pf_graph_input(g, "x", &spec, a, pf_split(0), &x));
    OK(pf_graph_program(g, &(pf_program_desc){.kernel = "relu", .slice = b, .n_in = 1, .in = &x},
                        &y, NULL));
    OK(pf_graph_output(g, "y", y));
    comp = compile(g, &c);
    for (int i = 0; i < 4; i++) {
      if (policy == 0) {
        assert_int_equal(host_of(&c, comp, a, i), 0);
        assert_int_equal(host_of(&c, comp, b, i), 1);
      } else {
        assert_int_equal(host_of(&c, comp, a, i), i % 2);
        assert_int_equal(host_of(&c, comp, b, i), i % 2);
      }
    }
    pf_compiled_free(comp);
    pf_graph_destroy(g);
  }
  free(c.devices);
}

/* Counts ops of a kind over every rank's plan, and the bytes they move. */
static int count_ops(const pf_compiled *comp, pf_op_kind kind, int64_t *bytes) {
  int n = 0;
  if (bytes) *bytes = 0;
  for (int r = 0; r < comp->n_ranks; r++)
    for (uint32_t i = 0; i < comp->plans[r]->n_ops; i++) {
      const pf_plan_op *op = &comp->plans[r]->ops[i];
      if (op->kind != kind) continue;
      n++;
      if (bytes) {
        int64_t e = 4;
        for (int k = 0; op->box && k < op->box->rank; k++) e *= op->box->extent[k];
        *bytes += e;
      }
    }
  return n;
}

/* Every pair of (replicated, split 0, split 1) x (1..4 devices), one
 * device per rank: each destination shard receives exactly the pieces of
 * the source shards it intersects, and the same layout moves nothing. */
static void test_reshard_pieces_are_minimal(void **state) {
  pf_cluster c = make_cluster(1, 8, 1);
  pf_sharding shs[3] = {{PF_SHARD_REPLICATED, 0}, {PF_SHARD_SPLIT, 0}, {PF_SHARD_SPLIT, 1}};
  (void)state;
  for (int sa = 0; sa < 3; sa++)
    for (int na = 1; na <= 4; na++)
      for (int sb = 0; sb < 3; sb++)
        for (int nb = 1; nb <= 4; nb++) {
          pf_graph *g = new_graph(&c);
          pf_spec spec = pf_spec_2d(PF_F32, 12, 12);
          pf_slice_t A, B;
          pf_value_t v, o;
          pf_compiled *comp;
          int64_t moved_send, moved_copy, need = 0;
          int pins_a[4] = {0, 1, 2, 3}, pins_b[4] = {0, 1, 2, 3};
          OK(pf_graph_slice(g, PF_DEVICE_CPU, na, &A));
          OK(pf_graph_slice(g, PF_DEVICE_CPU, nb, &B));
          OK(pf_graph_slice_pin(g, A, pins_a));
          OK(pf_graph_slice_pin(g, B, pins_b));
          OK(pf_graph_input(g, "v", &spec, A, shs[sa], &v));
          OK(pf_graph_program(g, &(pf_program_desc){.kernel = "identity", .slice = B, .n_in = 1,
                                                     .in = &v, .in_shardings = &shs[sb],
                                                     .out_shardings = &shs[sb]},
                              &o, NULL));
          OK(pf_graph_output(g, "o", o));
          comp = compile(g, &c);
          count_ops(comp, PF_OP_SEND, &moved_send);
          count_ops(comp, PF_OP_COPY, &moved_copy);
          assert_int_equal(count_ops(comp, PF_OP_SEND, NULL), count_ops(comp, PF_OP_RECV, NULL));
          /* Bytes each destination shard needs from other devices: its
           * whole shard, less what an aliasing source shard already holds. */
          for (int d = 0; d < nb; d++) {
            int64_t dlo[2], dext[2], slo[2], sext[2];
            int same = 0;
            pf_shard_region(&spec, shs[sb], nb, d, dlo, dext);
            if (d < na) { /* the source shard on the same device */
              pf_shard_region(&spec, shs[sa], na, d, slo, sext);
              same = dlo[0] == slo[0] && dlo[1] == slo[1] && dext[0] == sext[0] &&
                     dext[1] == sext[1];
            }
            need += same ? 0 : dext[0] * dext[1] * 4;
          }
          assert_int_equal(moved_send + moved_copy, need);
          round_trip(comp, &c);
          pf_compiled_free(comp);
          pf_graph_destroy(g);
        }
  free(c.devices);
}

/* Programs that could run in any order are ordered by index: the gang
 * order is the same whatever else happens. */
static void test_gang_order_ties_by_index(void **state) {
  pf_cluster c = make_cluster(1, 1, 1);
  pf_graph *g = new_graph(&c);
  pf_slice_t s;
  pf_value_t x, outs[6];
  pf_spec spec = pf_spec_1d(PF_F32, 4);
  int32_t order[6]; /* internal: program indexes */
  (void)state;
  OK(pf_graph_slice(g, PF_DEVICE_CPU, 1, &s));
  OK(pf_graph_input(g, "x", &spec, s, pf_replicated(), &x));
  for (int i = 0; i < 3; i++)
    OK(pf_graph_program(g, &(pf_program_desc){.kernel = "relu", .slice = s, .n_in = 1, .in = &x},
                        &outs[i], NULL));
  /* Program 3 depends on program 2, program 4 on program 0, 5 on 3 and 4. */
  OK(pf_graph_program(g, &(pf_program_desc){.kernel = "relu", .slice = s, .n_in = 1, .in = &outs[2]},
                      &outs[3], NULL));
  OK(pf_graph_program(g, &(pf_program_desc){.kernel = "relu", .slice = s, .n_in = 1, .in = &outs[0]},
                      &outs[4], NULL));
  OK(pf_graph_program(g, &(pf_program_desc){.kernel = "add", .slice = s, .n_in = 2,
                                             .in = (pf_value_t[]){outs[3], outs[4]}},
                      &outs[5], NULL));
  pf_diag_init(&diag);
  OK(pf_graph_topo_order(g, order, &diag));
  for (int i = 0; i < 6; i++) assert_int_equal(order[i], i);
  pf_graph_destroy(g);
  free(c.devices);
}

/* A control edge reorders independent programs: in the gang order and in
 * the device's plan, the later program waits for the earlier one; it
 * survives encode and decode; a control cycle is PF_ECYCLE naming both
 * programs; bad edges are PF_EINVAL. */
static void test_control_dependencies(void **state) {
  pf_cluster c = make_cluster(1, 1, 1);
  pf_graph *g = new_graph(&c), *back = NULL;
  pf_slice_t s;
  pf_value_t x, outs[3];
  pf_spec spec = pf_spec_1d(PF_F32, 4);
  int32_t order[3]; /* internal: program indexes */
  pf_program_t prog[3];
  pf_slice_t on;
  pf_compiled *comp;
  uint8_t *buf;
  size_t len;
  const char *names[3] = {"a", "b", "c"};
  (void)state;
  OK(pf_graph_slice(g, PF_DEVICE_CPU, 1, &s));
  OK(pf_graph_input(g, "x", &spec, s, pf_replicated(), &x));
  for (int i = 0; i < 3; i++)
    OK(pf_graph_program(g, &(pf_program_desc){.name = names[i], .kernel = "relu", .slice = s,
                                               .n_in = 1, .in = &x},
                        &outs[i], &prog[i]));
  for (int i = 0; i < 3; i++) OK(pf_graph_output(g, names[i], outs[i]));
  on = (pf_slice_t){PF_NO_ID};
  OK(pf_graph_program_slice(g, prog[2], &on));
  assert_int_equal(on.id, s.id);
  /* A bad program or out is refused, and *out stays as it was. */
  assert_int_equal(pf_graph_program_slice(g, (pf_program_t){3}, &on), PF_EINVAL);
  assert_int_equal(pf_graph_program_slice(g, (pf_program_t){PF_NO_ID}, &on), PF_EINVAL);
  assert_int_equal(pf_graph_program_slice(g, prog[2], NULL), PF_EINVAL);
  assert_int_equal(on.id, s.id);
  /* a waits for c: b (lowest ready), c, a. */
  OK(pf_graph_control(g, prog[2], prog[0]));
  assert_int_equal(pf_graph_control(g, prog[1], prog[1]), PF_EINVAL);
  assert_int_equal(pf_graph_control(g, prog[1], (pf_program_t){7}), PF_EINVAL);
  pf_diag_init(&diag);
  OK(pf_graph_topo_order(g, order, &diag));
  assert_int_equal(order[0], prog[1].id);
  assert_int_equal(order[1], prog[2].id);
  assert_int_equal(order[2], prog[0].id);
  comp = compile(g, &c);
  {
    const char *seen[3];
    int n = 0;
    for (uint32_t i = 0; i < comp->plans[0]->n_ops; i++)
      if (comp->plans[0]->ops[i].kind == PF_OP_KERNEL && n < 3)
        seen[n++] = comp->plans[0]->ops[i].name;
    assert_int_equal(n, 3);
    assert_string_equal(seen[0], "b");
    assert_string_equal(seen[1], "c");
    assert_string_equal(seen[2], "a");
  }
  pf_compiled_free(comp);
  /* The edge travels with the graph. */
  OK(pf_graph_encode(g, &buf, &len));
  OK(pf_graph_decode_env(&g->env, buf, len, &back, &diag));
  free(buf);
  assert_int_equal(back->n_controls, 1);
  pf_diag_init(&diag);
  OK(pf_graph_topo_order(back, order, &diag));
  assert_int_equal(order[1], prog[2].id);
  assert_int_equal(order[2], prog[0].id);
  pf_graph_destroy(back);
  /* a -> c closes a cycle with c -> a. */
  OK(pf_graph_control(g, prog[0], prog[2]));
  pf_diag_init(&diag);
  assert_int_equal(pf_graph_check(g, &diag), PF_ECYCLE);
  assert_non_null(strstr(diag.msg, "\"a\""));
  assert_non_null(strstr(diag.msg, "\"c\""));
  pf_graph_destroy(g);
  free(c.devices);
}


/* Collectives over more devices than the old 4096-entry stack arrays:
 * 6,144 devices 4 to a rank (one op per rank with its 4 local shards, a
 * communicator of 1,536 ranks in shard order), and 5,000 ranks one device
 * each; a broadcast's root maps to its rank and its place on the rank. */
static void test_large_collectives(void **state) {
  static const struct {
    int ranks, per;
    pf_collective_kind kind;
    int root;
  } cases[] = {{1536, 4, PF_ALLREDUCE, 0}, {1536, 4, PF_BROADCAST, 4097}, {5000, 1, PF_ALLREDUCE, 0}};
  (void)state;
  for (size_t k = 0; k < PF_ARRAY_LEN(cases); k++) {
    pf_cluster c = make_cluster(cases[k].ranks, 1, cases[k].per);
    pf_graph *g = new_graph(&c);
    pf_slice_t sl;
    pf_value_t x, y;
    pf_spec spec = pf_spec_1d(PF_F32, 8);
    pf_compiled *comp;
    OK(pf_graph_slice(g, PF_DEVICE_CPU, c.n_devices, &sl));
    OK(pf_graph_input(g, "x", &spec, sl, pf_replicated(), &x));
    OK(pf_graph_collective(g, &(pf_collective_desc){.name = "c", .kind = cases[k].kind, .slice = sl,
                                                      .in = x, .op = PF_REDUCE_SUM,
                                                      .root = cases[k].root},
                           &y, NULL));
    OK(pf_graph_output(g, "y", y));
    comp = compile(g, &c);
    assert_int_equal(count_ops(comp, PF_OP_COLLECTIVE, NULL), cases[k].ranks);
    for (int r = 0; r < comp->n_ranks; r++) {
      const pf_plan *p = comp->plans[r];
      const pf_plan_op *op = NULL;
      for (uint32_t i = 0; i < p->n_ops; i++)
        if (p->ops[i].kind == PF_OP_COLLECTIVE) op = &p->ops[i];
      assert_non_null(op);
      assert_int_equal(op->n_in, cases[k].per);
      assert_int_equal(op->shard, r); /* ranks ordered by their first shard */
      assert_int_equal(p->n_comms, 1);
      assert_int_equal(p->comms[0].n_ranks, cases[k].ranks);
      assert_int_equal(p->comms[0].ranks[r], r);
      if (cases[k].kind == PF_BROADCAST) {
        assert_int_equal(op->root, cases[k].root / cases[k].per);
        assert_int_equal(op->axis, cases[k].root % cases[k].per);
      }
    }
    pf_compiled_free(comp);
    pf_graph_destroy(g);
    free(c.devices);
  }
}


/* ---- staging through host memory (GPUs) --------------------------------- */

/* 2 ranks, each a CPU device (local 0) and two GPUs (local 1, 2) that
 * stage `stage` (pf_stage), with memory of their own unless stage is 0 (a
 * simulated cluster's GPUs). */
static pf_cluster gpu_cluster(uint32_t stage) {
  pf_cluster c = make_cluster(2, 1, 3);
  for (int k = 0; k < c.n_devices; k++)
    if (c.devices[k].local > 0) {
      c.devices[k].kind = PF_DEVICE_GPU;
      c.devices[k].stage = stage;
      c.devices[k].own_memory = stage != 0;
    }
  return c;
}

/* GPU versions of the CPU built-ins the graph uses: the scheduler needs
 * only their rules. */
static void register_gpu_copies(void) {
  static const char *names[] = {"relu", "identity"};
  for (size_t i = 0; i < PF_ARRAY_LEN(names); i++) {
    pf_kernel_def def = pf_registry_find(reg, names[i], PF_DEVICE_CPU)->def;
    int rc;
    def.kind = PF_DEVICE_GPU;
    rc = pf_registry_add(reg, &def);
    assert_true(rc == 0 || rc == PF_EEXIST);
  }
}

/* x (16 MiB, on rank 0's CPU) -> relu on one GPU of each rank (a copy to
 * rank 0's GPU, a transfer to rank 1's) -> allreduce over both GPUs ->
 * identity on rank 1's other GPU; outputs c and o. */
static pf_compiled *staging_graph(const pf_cluster *c, pf_graph **gp) {
  pf_graph_env env;
  pf_graph *g;
  pf_slice_t cpu, gpus, last;
  pf_value_t x, y, z, o;
  pf_spec spec = pf_spec_2d(PF_F32, 2048, 2048);
  static const int pin_cpu[] = {0}, pin_gpus[] = {0, 2}, pin_last[] = {3};
  memset(&env, 0, sizeof env);
  env.registry = reg;
  env.num_devices[PF_DEVICE_CPU] = 2;
  env.num_devices[PF_DEVICE_GPU] = 4;
  env.diag = &diag;
  assert_int_equal(pf_graph_new(&env, &g), 0);
  OK(pf_graph_slice(g, PF_DEVICE_CPU, 1, &cpu));
  OK(pf_graph_slice(g, PF_DEVICE_GPU, 2, &gpus));
  OK(pf_graph_slice(g, PF_DEVICE_GPU, 1, &last));
  OK(pf_graph_slice_pin(g, cpu, pin_cpu));
  OK(pf_graph_slice_pin(g, gpus, pin_gpus));
  OK(pf_graph_slice_pin(g, last, pin_last));
  OK(pf_graph_input(g, "x", &spec, cpu, pf_replicated(), &x));
  OK(pf_graph_program(g, &(pf_program_desc){.kernel = "relu", .slice = gpus, .n_in = 1, .in = &x},
                      &y, NULL));
  OK(pf_graph_collective(g, &(pf_collective_desc){.name = "c", .kind = PF_ALLREDUCE,
                                                    .slice = gpus, .in = y, .op = PF_REDUCE_SUM},
                         &z, NULL));
  OK(pf_graph_program(g, &(pf_program_desc){.kernel = "identity", .slice = last, .n_in = 1,
                                            .in = &z},
                      &o, NULL));
  OK(pf_graph_output(g, "c", z));
  OK(pf_graph_output(g, "o", o));
  *gp = g;
  return compile(g, c);
}

/* Every buffer of a GPU that a host path touches is a host buffer, every
 * buffer a GPU kernel touches, feeds and outputs are the GPU's own; copies
 * between the two run on the GPU. Returns how many host buffers the plans
 * have. */
static int check_spaces(const pf_compiled *comp, uint32_t staged) {
  int n_host = 0;
  for (int r = 0; r < comp->n_ranks; r++) {
    const pf_plan *p = comp->plans[r];
    for (uint32_t b = 0; b < p->n_buffers; b++) {
      const pf_plan_buffer *pb = &p->buffers[b];
      n_host += pb->host;
      /* Feeds and fetches are the runtime's: values stay in GPU memory. */
      if (pb->input >= 0 || pb->output >= 0) assert_int_equal(pb->host, 0);
      if (pb->host) assert_int_equal(pb->in_arena, 0);
    }
    for (uint32_t i = 0; i < p->n_slots; i++)
      assert_int_equal(p->buffers[p->slots[i].buffer].host, 0);
    for (uint32_t i = 0; i < p->n_ops; i++) {
      const pf_plan_op *op = &p->ops[i];
      for (uint32_t k = 0; k < op->n_in + op->n_out; k++) {
        const pf_plan_buffer *pb =
            &p->buffers[k < op->n_in ? op->inputs[k] : op->outputs[k - op->n_in]];
        int gpu_memory = staged && pb->device > 0 && !pb->host;
        if ((op->kind == PF_OP_SEND || op->kind == PF_OP_RECV) && (staged & PF_STAGE_TRANSFERS))
          assert_false(gpu_memory);
        if (op->kind == PF_OP_COLLECTIVE) assert_false(gpu_memory);
        if (staged && op->kind == PF_OP_KERNEL && op->device > 0) assert_true(gpu_memory);
        if (op->kind == PF_OP_COPY && gpu_memory) assert_true(op->device > 0);
      }
    }
  }
  return n_host;
}

static void test_gpu_staging(void **state) {
  pf_cluster c = gpu_cluster(PF_STAGE_ALL), direct = gpu_cluster(0);
  pf_graph *g;
  pf_compiled *comp;
  int sends = 0, copies_on_gpu = 0;
  (void)state;
  register_gpu_copies();
  comp = staging_graph(&c, &g);
  assert_true(check_spaces(comp, PF_STAGE_ALL) > 0);
  round_trip(comp, &c);
  /* Rank 1's 16 MiB of x arrive in 4 MiB chunks, each sent from rank 0's
   * CPU memory as is and copied to the GPU as it arrives. */
  sends = count_ops(comp, PF_OP_SEND, NULL);
  assert_int_equal(sends, 4);
  for (uint32_t i = 0; i < comp->plans[1]->n_ops; i++)
    copies_on_gpu += comp->plans[1]->ops[i].kind == PF_OP_COPY && comp->plans[1]->ops[i].device > 0;
  /* The 4 chunks in; the allreduce's input out; its result (in host
   * memory) into the other GPU for identity, and into its own GPU as
   * output c (outputs stay in device memory between executions). */
  assert_int_equal(copies_on_gpu, 4 + 1 + 1 + 1);
  pf_compiled_free(comp);
  pf_graph_destroy(g);
  /* GPUs whose transport sends from their memory (CUDA-aware MPI): x goes
   * straight into rank 1's GPU, whole; the allreduce is still staged. */
  {
    pf_cluster aware = gpu_cluster(PF_STAGE_LOCAL | PF_STAGE_COLLECTIVES);
    int gpu_recvs = 0;
    comp = staging_graph(&aware, &g);
    assert_true(check_spaces(comp, PF_STAGE_LOCAL | PF_STAGE_COLLECTIVES) > 0);
    assert_int_equal(count_ops(comp, PF_OP_SEND, NULL), 1);
    for (uint32_t i = 0; i < comp->plans[1]->n_ops; i++) {
      const pf_plan_op *op = &comp->plans[1]->ops[i];
      if (op->kind == PF_OP_RECV) {
        const pf_plan_buffer *pb = &comp->plans[1]->buffers[op->outputs[0]];
        gpu_recvs += pb->device > 0 && !pb->host;
      }
    }
    assert_int_equal(gpu_recvs, 1);
    pf_compiled_free(comp);
    pf_graph_destroy(g);
    free(aware.devices);
  }
  /* Devices that stage nothing (a simulated cluster's GPUs): no staging. */
  comp = staging_graph(&direct, &g);
  assert_int_equal(check_spaces(comp, 0), 0);
  assert_int_equal(count_ops(comp, PF_OP_SEND, NULL), 1);
  pf_compiled_free(comp);
  pf_graph_destroy(g);
  free(c.devices);
  free(direct.devices);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_packed_and_spread),
      cmocka_unit_test(test_reshard_pieces_are_minimal),
      cmocka_unit_test(test_gang_order_ties_by_index),
      cmocka_unit_test(test_control_dependencies),
      cmocka_unit_test(test_large_collectives),
      cmocka_unit_test(test_gpu_staging),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
