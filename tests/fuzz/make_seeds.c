/* Writes the seed corpus for the fuzzers: a few valid encoded graphs (built
 * with the real builders and built-in kernels, so the validator gets deep),
 * plans (every op kind) and control messages (the kinds with the most
 * fields), as DIR/graph/seed_N.pb, DIR/plan/seed_N.pb and DIR/msg/seed_N.pb.
 *
 * usage: make_seeds DIR */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "base/diag.h"
#include "graph/graph_internal.h"
#include "kernels/registry.h"
#include "pathflow/error.h"
#include "runtime/msg.h"
#include "plan/plan.h"
#include "runtime/storage.h"
#include "sim/chakra.h"

static int mkdir_p(const char *path) {
  if (mkdir(path, 0755) == 0 || errno == EEXIST) return 0;
  fprintf(stderr, "make_seeds: mkdir %s: %s\n", path, strerror(errno));
  return -1;
}

static int write_seed(const char *dir, const char *kind, int n,
                      const uint8_t *buf, size_t len) {
  char path[4096];
  FILE *f;
  snprintf(path, sizeof path, "%s/%s/seed_%d.pb", dir, kind, n);
  if ((f = fopen(path, "wb")) == NULL ||
      (len > 0 && fwrite(buf, 1, len, f) != len) || fclose(f) != 0) {
    fprintf(stderr, "make_seeds: cannot write %s\n", path);
    return -1;
  }
  return 0;
}

/* ---- graphs --------------------------------------------------------------- */

/* x[8,16] @ w[16,4] + b, relu, on a second (pinned) slice. */
static int graph_mlp(pf_graph *g) {
  static const int pins[] = {2, 3};
  pf_slice_t s0, s1;
  pf_value_t x, w, b, h, hb, y;
  pf_spec sx = pf_spec_2d(PF_F32, 8, 16), sw = pf_spec_2d(PF_F32, 16, 4);
  pf_spec sb = pf_spec_1d(PF_F32, 4);
  pf_sharding split0 = pf_split(0);
  pf_program_desc mm = {"mm", "matmul", NULL, {PF_NO_ID}, 2, NULL, NULL, &split0};
  pf_program_desc bias = {"bias", "bias_add", NULL, {PF_NO_ID}, 2, NULL, NULL, NULL};
  pf_program_desc act = {"act", "relu", NULL, {PF_NO_ID}, 1, NULL, NULL, NULL};
  pf_value_t mm_in[2], bias_in[2];
  int rc;
  if ((rc = pf_graph_slice(g, PF_DEVICE_CPU, 2, &s0)) ||
      (rc = pf_graph_slice(g, PF_DEVICE_CPU, 2, &s1)) ||
      (rc = pf_graph_slice_pin(g, s1, pins)) ||
      (rc = pf_graph_input(g, "x", &sx, s0, pf_split(0), &x)) ||
      (rc = pf_graph_input(g, "w", &sw, s0, pf_replicated(), &w)) ||
      (rc = pf_graph_input(g, "b", &sb, s0, pf_replicated(), &b)))
    return rc;
  mm_in[0] = x;
  mm_in[1] = w;
  mm.slice = s0;
  mm.in = mm_in;
  if ((rc = pf_graph_program(g, &mm, &h, NULL)) != 0) return rc;
  bias_in[0] = h;
  bias_in[1] = b;
  bias.slice = s0;
  bias.in = bias_in;
  if ((rc = pf_graph_program(g, &bias, &hb, NULL)) != 0) return rc;
  act.slice = s1;
  act.in = &hb;
  if ((rc = pf_graph_program(g, &act, &y, NULL)) != 0) return rc;
  return pf_graph_output(g, "y", y);
}

/* fill + iota -> add -> scale (attrs of every type), replicated on 1. */
static int graph_fill(pf_graph *g) {
  static const int64_t shape[] = {4, 4};
  pf_attrs *fa = NULL, *sa = NULL;
  pf_slice_t s;
  pf_value_t a, b, c, d, ab[2];
  pf_program_t fill_p, iota_p;
  pf_program_desc fill = {"ones", "fill", NULL, {PF_NO_ID}, 0, NULL, NULL, NULL};
  pf_program_desc iota = {"ramp", "iota", NULL, {PF_NO_ID}, 0, NULL, NULL, NULL};
  pf_program_desc add = {"sum", "add", NULL, {PF_NO_ID}, 2, NULL, NULL, NULL};
  pf_program_desc scale = {"half", "scale", NULL, {PF_NO_ID}, 1, NULL, NULL, NULL};
  int rc;
  if ((rc = pf_attrs_create(&fa)) || (rc = pf_attrs_create(&sa)) ||
      (rc = pf_attrs_set_ints(fa, "shape", shape, 2)) ||
      (rc = pf_attrs_set_int(fa, "dtype", PF_F32)) ||
      (rc = pf_attrs_set_float(fa, "value", 1.5)) ||
      (rc = pf_attrs_set_float(sa, "alpha", 0.5)) ||
      (rc = pf_attrs_set_string(sa, "note", "seed")) ||
      (rc = pf_graph_slice(g, PF_DEVICE_CPU, 1, &s)))
    goto out;
  fill.attrs = fa;
  fill.slice = iota.slice = add.slice = scale.slice = s;
  iota.attrs = fa;
  if ((rc = pf_graph_program(g, &fill, &a, &fill_p)) ||
      (rc = pf_graph_program(g, &iota, &b, &iota_p)))
    goto out;
  ab[0] = a;
  ab[1] = b;
  add.in = ab;
  if ((rc = pf_graph_program(g, &add, &c, NULL))) goto out;
  scale.in = &c;
  scale.attrs = sa;
  if ((rc = pf_graph_program(g, &scale, &d, NULL)) ||
      (rc = pf_graph_output(g, "d", d)) || (rc = pf_graph_output(g, "c", c)))
    goto out;
  /* A control edge (iota before fill), so the fuzzer starts from one. */
  rc = pf_graph_control(g, iota_p, fill_p);
out:
  pf_attrs_destroy(fa);
  pf_attrs_destroy(sa);
  return rc;
}

/* One bf16 input, split over 4, to two outputs: itself and its identity
 * consumed split along the other axis. */
static int graph_identity(pf_graph *g) {
  pf_slice_t s;
  pf_value_t x, y;
  pf_spec sx = pf_spec_2d(PF_BF16, 8, 4);
  pf_program_desc id = {NULL, "identity", NULL, {PF_NO_ID}, 1, NULL, NULL, NULL};
  pf_sharding split1 = pf_split(1);
  int rc;
  if ((rc = pf_graph_slice(g, PF_DEVICE_CPU, 4, &s)) ||
      (rc = pf_graph_input(g, "x", &sx, s, pf_split(0), &x)))
    return rc;
  id.slice = s;
  id.in = &x;
  id.in_shardings = &split1; /* consumed split the other way: a reshard */
  if ((rc = pf_graph_program(g, &id, &y, NULL)) != 0) return rc;
  if ((rc = pf_graph_output(g, "y", y)) != 0) return rc;
  return pf_graph_output(g, "x_again", x);
}

static int write_graphs(const char *dir, pf_registry *reg) {
  static int (*const builders[])(pf_graph *) = {graph_mlp, graph_fill,
                                                graph_identity};
  pf_diag diag;
  pf_graph_env env;
  int written = 0;
  memset(&env, 0, sizeof env);
  env.registry = reg;
  env.num_devices[PF_DEVICE_CPU] = 4;
  env.diag = &diag;
  for (size_t i = 0; i < sizeof builders / sizeof builders[0]; i++) {
    pf_graph *g = NULL;
    uint8_t *buf = NULL;
    size_t len = 0;
    int rc = pf_graph_new(&env, &g);
    if (rc == 0) rc = builders[i](g);
    if (rc == 0) rc = pf_graph_encode(g, &buf, &len);
    if (rc != 0) {
      /* a seed less is not fatal: the others still start the fuzzer */
      fprintf(stderr, "make_seeds: graph %zu skipped: %s (%s)\n", i,
              pf_errname(rc), diag.msg);
    } else if (write_seed(dir, "graph", (int)i, buf, len) == 0) {
      written++;
    }
    free(buf);
    pf_graph_destroy(g);
  }
  return written;
}

/* ---- plans -------------------------------------------------------------- */

static uint32_t *u32s(uint32_t n, const uint32_t *v) {
  uint32_t *d = n ? malloc(n * sizeof *d) : NULL;
  if (d != NULL) memcpy(d, v, n * sizeof *d);
  return d;
}

static void lists(pf_plan_op *op, uint32_t n_in, const uint32_t *in,
                  uint32_t n_out, const uint32_t *out, uint32_t n_deps,
                  const uint32_t *deps) {
  op->n_in = n_in;
  op->inputs = u32s(n_in, in);
  op->n_out = n_out;
  op->outputs = u32s(n_out, out);
  op->n_deps = n_deps;
  op->deps = u32s(n_deps, deps);
}

/* A rank-2 box, malloc'd: the op owns it. NULL when out of memory (the
 * plan then fails its check). */
static pf_box *box2(int64_t s0, int64_t d0, int64_t e0, int64_t e1) {
  pf_box *b = calloc(1, sizeof *b);
  if (b == NULL) return NULL;
  b->rank = 2;
  b->src_offset[0] = s0;
  b->dst_offset[0] = d0;
  b->extent[0] = e0;
  b->extent[1] = e1;
  return b;
}

static pf_plan *plan_new(uint32_t n_buffers, uint32_t n_ops) {
  pf_plan *p = calloc(1, sizeof *p);
  if (p == NULL) return NULL;
  p->buffers = calloc(n_buffers, sizeof *p->buffers);
  p->own_specs = calloc(n_buffers, sizeof *p->own_specs);
  p->ops = calloc(n_ops, sizeof *p->ops);
  p->n_buffers = n_buffers;
  p->n_ops = n_ops;
  if (p->buffers == NULL || p->own_specs == NULL || p->ops == NULL) {
    pf_plan_free(p);
    return NULL;
  }
  return p;
}

/* Buffer i of p: on `device`, of spec `spec` (kept in the plan's own). */
static void buffer(pf_plan *p, uint32_t i, int32_t device, pf_spec spec, int32_t input,
                   int32_t output, int32_t shard) {
  p->own_specs[i] = spec;
  p->buffers[i] = (pf_plan_buffer){device, &p->own_specs[i], input, output, shard, 0, 0, 0};
}

static void kernel_op(pf_plan_op *op, int device, const char *name,
                      const char *kernel, int shard, int num_shards) {
  op->kind = PF_OP_KERNEL;
  op->device = device;
  op->name = strdup(name);
  op->kernel = strdup(kernel);
  pf_attrs_create(&op->attrs);
  op->shard = shard;
  op->num_shards = num_shards;
}

static void other_op(pf_plan_op *op, pf_op_kind kind, int device,
                     const char *name) {
  op->kind = kind;
  op->device = device;
  op->name = strdup(name);
}

/* Every op kind over 4 devices. */
static pf_plan *plan_all_kinds(void) {
  static const int64_t perm[] = {1, 0};
  pf_plan *p = plan_new(6, 6);
  if (p == NULL) return NULL;
  p->executable = 42;
  p->rank = 1;
  p->num_devices = 4;
  p->num_inputs = 1;
  p->num_outputs = 2;
  buffer(p, 0, 0, pf_spec_2d(PF_F32, 4, 8), 0, -1, 0);
  buffer(p, 1, 0, pf_spec_2d(PF_F32, 4, 8), -1, -1, 0);
  buffer(p, 2, 1, pf_spec_2d(PF_F32, 4, 8), -1, 0, 1);
  buffer(p, 3, 3, pf_spec_2d(PF_F64, 2, 3), -1, -1, 3);
  buffer(p, 4, 3, pf_spec_2d(PF_F64, 2, 6), -1, 1, 3);
  buffer(p, 5, 2, pf_spec_scalar(PF_U8), -1, -1, 0);
  kernel_op(&p->ops[0], 0, "add0", "add", 0, 4);
  pf_attrs_set_float(p->ops[0].attrs, "alpha", 2.0);
  pf_attrs_set_int(p->ops[0].attrs, "axis", 1);
  pf_attrs_set_string(p->ops[0].attrs, "mode", "fast");
  pf_attrs_set_ints(p->ops[0].attrs, "perm", perm, 2);
  lists(&p->ops[0], 1, (uint32_t[]){0}, 1, (uint32_t[]){1}, 0, NULL);
  other_op(&p->ops[1], PF_OP_COPY, 1, "reshard"); /* a peer copy */
  p->ops[1].box = box2(2, 0, 2, 8);
  lists(&p->ops[1], 1, (uint32_t[]){1}, 1, (uint32_t[]){2}, 1, (uint32_t[]){0});
  other_op(&p->ops[2], PF_OP_SEND, 0, "reshard");
  p->ops[2].box = box2(0, 0, 2, 8);
  p->ops[2].peer = 0;
  p->ops[2].tag = 7;
  lists(&p->ops[2], 1, (uint32_t[]){1}, 0, NULL, 1, (uint32_t[]){0});
  other_op(&p->ops[3], PF_OP_RECV, 1, "reshard");
  p->ops[3].box = box2(0, 2, 2, 8);
  p->ops[3].peer = 2;
  p->ops[3].tag = 8;
  lists(&p->ops[3], 0, NULL, 1, (uint32_t[]){2}, 1, (uint32_t[]){1});
  kernel_op(&p->ops[4], 3, "fill3", "fill", 3, 4);
  lists(&p->ops[4], 0, NULL, 1, (uint32_t[]){3}, 0, NULL);
  /* allgather along axis 1 over communicator 1 (ranks 0 and 1) */
  other_op(&p->ops[5], PF_OP_COLLECTIVE, 3, "allgather");
  p->ops[5].comm = 1;
  p->ops[5].collective = 1;
  p->ops[5].reduce_op = 0;
  p->ops[5].axis = 1;
  p->ops[5].in_axis = 1;
  lists(&p->ops[5], 1, (uint32_t[]){3}, 1, (uint32_t[]){4}, 2,
        (uint32_t[]){3, 4});
  p->slots = calloc(2, sizeof *p->slots);
  p->comms = calloc(1, sizeof *p->comms);
  if (p->slots == NULL || p->comms == NULL) {
    pf_plan_free(p);
    return NULL;
  }
  p->n_slots = 2;
  p->slots[0] = (pf_plan_slot){0, 1, 2};
  p->slots[1] = (pf_plan_slot){1, 3, 4};
  p->n_comms = 1;
  p->comms[0].id = 1;
  if ((p->comms[0].ranks = malloc(2 * sizeof(int32_t))) == NULL) {
    pf_plan_free(p);
    return NULL;
  }
  p->comms[0].n_ranks = 2;
  p->comms[0].ranks[0] = 0;
  p->comms[0].ranks[1] = 1;
  return p;
}

/* One kernel, one device. */
static pf_plan *plan_single(void) {
  pf_plan *p = plan_new(2, 1);
  if (p == NULL) return NULL;
  p->num_devices = 1;
  p->num_inputs = 1;
  p->num_outputs = 1;
  buffer(p, 0, 0, pf_spec_2d(PF_I64, 2, 3), 0, -1, 0);
  buffer(p, 1, 0, pf_spec_2d(PF_I64, 2, 3), -1, 0, 0);
  kernel_op(&p->ops[0], 0, "relu", "relu", 0, 1);
  lists(&p->ops[0], 1, (uint32_t[]){0}, 1, (uint32_t[]){1}, 0, NULL);
  if ((p->slots = calloc(1, sizeof *p->slots)) == NULL) {
    pf_plan_free(p);
    return NULL;
  }
  p->n_slots = 1;
  p->slots[0] = (pf_plan_slot){0, 0, 1};
  return p;
}

static int write_plans(const char *dir) {
  pf_plan *plans[2];
  int written = 0;
  plans[0] = plan_all_kinds();
  plans[1] = plan_single();
  for (int i = 0; i < 2; i++) {
    uint8_t *buf = NULL;
    size_t len = 0;
    pf_diag d;
    int rc = plans[i] ? pf_plan_check(plans[i], 4, &d) : PF_ENOMEM;
    if (rc == 0) rc = pf_plan_encode(plans[i], &buf, &len);
    if (rc != 0)
      fprintf(stderr, "make_seeds: plan %d skipped: %s (%s)\n", i,
              pf_errname(rc), plans[i] ? d.msg : "");
    else if (write_seed(dir, "plan", i, buf, len) == 0)
      written++;
    free(buf);
    pf_plan_free(plans[i]);
  }
  return written;
}

/* ---- control messages ------------------------------------------------------ */

static pf_storage *bytes(size_t n, uint8_t seed) {
  pf_storage *s = pf_storage_new(n, 0);
  if (s != NULL)
    for (size_t i = 0; i < n; i++) ((uint8_t *)s->data)[i] = (uint8_t)(seed + i);
  return s;
}

/* Seed i, or NULL when there are no more (or out of memory: *done stays 0). */
static pf_msg *msg_seed(int i, int *done) {
  static const uint64_t ins[] = {1, 2, 3}, outs[] = {4, 5}, drop[] = {1};
  static const int32_t shards[] = {0, 1, 3};
  pf_msg *m;
  *done = 0;
  switch (i) {
    case 0:
      if ((m = pf_msg_new(PF_MSG_RUN)) == NULL) return NULL;
      m->executable = 42;
      m->step = 7;
      m->inputs = malloc(sizeof ins);
      m->outputs = malloc(sizeof outs);
      m->drop = malloc(sizeof drop);
      if (m->inputs && m->outputs && m->drop) {
        memcpy(m->inputs, ins, sizeof ins);
        memcpy(m->outputs, outs, sizeof outs);
        memcpy(m->drop, drop, sizeof drop);
        m->n_inputs = 3;
        m->n_outputs = 2;
        m->n_drop = 1;
      }
      return m;
    case 1:
      if ((m = pf_msg_new(PF_MSG_FETCH_REPLY)) == NULL) return NULL;
      m->request = 9;
      m->shards = malloc(sizeof shards);
      m->data = calloc(3, sizeof *m->data);
      if (m->shards && m->data) {
        memcpy(m->shards, shards, sizeof shards);
        m->n_shards = 3;
        m->data[0] = bytes(16, 1);
        m->data[1] = bytes(0, 0);
        m->data[2] = bytes(24, 100);
      }
      return m;
    case 2:
      if ((m = pf_msg_new(PF_MSG_PUT)) == NULL) return NULL;
      m->buffer = 11;
      m->spec = pf_spec_2d(PF_F32, 2, 3);
      m->shards = malloc(sizeof *m->shards);
      m->data = calloc(1, sizeof *m->data);
      if (m->shards && m->data) {
        m->shards[0] = 1;
        m->n_shards = 1;
        m->data[0] = bytes(24, 7);
      }
      return m;
    case 3:
      if ((m = pf_msg_new(PF_MSG_LOAD)) == NULL) return NULL;
      m->plan = plan_all_kinds();
      return m;
    case 4:
      if ((m = pf_msg_new(PF_MSG_REGISTER)) == NULL) return NULL;
      m->host = strdup("node0");
      m->n_devices = 4;
      if ((m->devices = calloc(4, sizeof *m->devices)) == NULL) {
        pf_msg_free(m);
        return NULL;
      }
      for (int i = 0; i < 4; i++)
        m->devices[i] = (pf_msg_device){i < 3 ? PF_DEVICE_CPU : PF_DEVICE_GPU, INT64_C(1) << 32,
                                        i < 3 ? 0u : (uint32_t)PF_STAGE_ALL, i >= 3};
      return m;
    case 5:
      if ((m = pf_msg_new(PF_MSG_STEP_DONE)) == NULL) return NULL;
      m->executable = 42;
      m->step = 7;
      m->status = -13;
      m->message = strdup("kernel \"add\" failed");
      return m;
    case 6: /* sequential dispatch's answer to a run */
      if ((m = pf_msg_new(PF_MSG_STEP_STARTED)) == NULL) return NULL;
      m->executable = 42;
      m->step = 8;
      return m;
    case 7: /* a feed whose bytes follow on the data path */
      if ((m = pf_msg_new(PF_MSG_PUT)) == NULL) return NULL;
      m->buffer = 12;
      m->spec = pf_spec_2d(PF_F32, 256, 256);
      m->data_path = 1;
      m->data_tag = 4096;
      if ((m->shards = malloc(sizeof *m->shards)) != NULL) {
        m->shards[0] = 0;
        m->n_shards = 1;
      }
      return m;
    case 8: /* a fetch reply whose shards follow on the data path */
      if ((m = pf_msg_new(PF_MSG_FETCH_REPLY)) == NULL) return NULL;
      m->request = 10;
      m->data_path = 1;
      m->data_tag = 77;
      m->shards = malloc(2 * sizeof *m->shards);
      m->data_bytes = malloc(2 * sizeof *m->data_bytes);
      if (m->shards && m->data_bytes) {
        m->shards[0] = 0;
        m->shards[1] = 1;
        m->data_bytes[0] = 1 << 20;
        m->data_bytes[1] = 3 << 20;
        m->n_shards = 2;
      }
      return m;
    default:
      *done = 1;
      return NULL;
  }
}

static int write_msgs(const char *dir) {
  int written = 0, done = 0;
  for (int i = 0; !done; i++) {
    pf_msg *m = msg_seed(i, &done);
    uint8_t *buf = NULL;
    size_t len = 0;
    if (done) break;
    /* a seed built short (out of memory) still encodes: as what it holds */
    if (m == NULL || pf_msg_encode(m, &buf, &len) != 0)
      fprintf(stderr, "make_seeds: message %d skipped\n", i);
    else if (write_seed(dir, "msg", i, buf, len) == 0)
      written++;
    free(buf);
    pf_msg_free(m);
  }
  return written;
}

/* ---- Chakra traces ------------------------------------------------------- */

/* A compute -> send, receive -> collective trace, and a bare one. */
static int write_chakra(const char *dir) {
  uint64_t d0[] = {0}, d1[] = {2};
  int64_t group[] = {0, 1};
  pf_chakra_node nodes[] = {
      {.id = 0, .name = "comp", .type = PF_CHAKRA_COMP, .duration_us = 3, .num_ops = 64,
       .tensor_size = 256, .comm_src = -1, .comm_dst = -1, .comm_type = -1, .is_cpu_op = 1},
      {.id = 1, .name = "send", .type = PF_CHAKRA_SEND, .n_data_deps = 1, .data_deps = d0,
       .comm_size = 128, .comm_src = -1, .comm_dst = 1, .comm_tag = 5, .comm_type = -1,
       .is_cpu_op = -1},
      {.id = 2, .name = "recv", .type = PF_CHAKRA_RECV, .comm_size = 128, .comm_src = 1,
       .comm_dst = -1, .comm_tag = 6, .comm_type = -1, .is_cpu_op = -1},
      {.id = 3, .name = "ar", .type = PF_CHAKRA_COLL, .n_ctrl_deps = 1, .ctrl_deps = d1,
       .comm_size = 1024, .comm_src = -1, .comm_dst = -1, .comm_type = PF_CHAKRA_ALL_REDUCE,
       .n_group = 2, .group = group, .is_cpu_op = -1},
  };
  pf_chakra_trace traces[] = {{.version = "pathflow", .n_nodes = 4, .nodes = nodes},
                              {.version = "0.0.4", .n_nodes = 0, .nodes = NULL}};
  int n = 0;
  for (int i = 0; i < 2; i++) {
    uint8_t *buf;
    size_t len;
    if (pf_chakra_encode(&traces[i], &buf, &len) != 0)
      fprintf(stderr, "make_seeds: chakra seed %d: cannot encode\n", i);
    else if (write_seed(dir, "chakra", i, buf, len) == 0)
      n++;
    free(buf);
  }
  return n;
}

int main(int argc, char **argv) {
  char sub[4096];
  pf_registry *reg = NULL;
  int graphs, plans, msgs, traces;
  if (argc != 2) {
    fprintf(stderr, "usage: %s DIR\n", argv[0]);
    return 2;
  }
  if (mkdir_p(argv[1])) return 1;
  snprintf(sub, sizeof sub, "%s/graph", argv[1]);
  if (mkdir_p(sub)) return 1;
  snprintf(sub, sizeof sub, "%s/plan", argv[1]);
  if (mkdir_p(sub)) return 1;
  snprintf(sub, sizeof sub, "%s/msg", argv[1]);
  if (mkdir_p(sub)) return 1;
  snprintf(sub, sizeof sub, "%s/chakra", argv[1]);
  if (mkdir_p(sub)) return 1;
  if (pf_registry_create(&reg) != 0 || pf_builtin_kernels_register(reg) != 0) {
    fprintf(stderr, "make_seeds: cannot register the built-in kernels\n");
    pf_registry_destroy(reg);
    return 1;
  }
  graphs = write_graphs(argv[1], reg);
  plans = write_plans(argv[1]);
  msgs = write_msgs(argv[1]);
  traces = write_chakra(argv[1]);
  pf_registry_destroy(reg);
  printf("make_seeds: %d graphs, %d plans, %d messages, %d Chakra traces in %s\n", graphs,
         plans, msgs, traces, argv[1]);
  return graphs > 0 && plans > 0 && msgs > 0 && traces > 0 ? 0 : 1;
}
