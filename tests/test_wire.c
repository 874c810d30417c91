/* The wire codecs: plans and graphs round-trip exactly; pf_plan_check refuses
 * each broken rule with a message naming the culprit; decoders survive
 * truncated, random and bit-flipped bytes. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "base/attrs_internal.h"
#include "base/diag.h"
#include "base/wire.h"
#include "graph/graph_codec.h"
#include "graph/graph_internal.h"
#include "kernels/registry.h"
#include "pathflow/error.h"
#include "pathflow/graph.h"
#include "proto/pathflow.pb-c.h"
#include "plan/plan.h"

/* ---- helpers ---------------------------------------------------------------- */

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;

static uint64_t rng(void) {
  uint64_t x = rng_state;
  x ^= x << 13;
  x ^= x >> 7;
  x ^= x << 17;
  return rng_state = x;
}

/* Fails the test, printing the message, unless it holds every word. */
static void expect_words(const char *msg, const char *const *words) {
  for (int i = 0; words[i] != NULL; i++) {
    if (strstr(msg, words[i]) == NULL) {
      print_error("message \"%s\" lacks \"%s\"\n", msg, words[i]);
      fail();
    }
  }
}

static uint32_t *u32dup(uint32_t n, const uint32_t *v) {
  uint32_t *d;
  if (n == 0) return NULL;
  d = malloc(n * sizeof *d);
  assert_non_null(d);
  memcpy(d, v, n * sizeof *d);
  return d;
}

static void set_lists(pf_plan_op *op, uint32_t n_in, const uint32_t *in,
                      uint32_t n_out, const uint32_t *out, uint32_t n_deps,
                      const uint32_t *deps) {
  free(op->inputs);
  free(op->outputs);
  free(op->deps);
  op->n_in = n_in;
  op->inputs = u32dup(n_in, in);
  op->n_out = n_out;
  op->outputs = u32dup(n_out, out);
  op->n_deps = n_deps;
  op->deps = u32dup(n_deps, deps);
}

/* A rank-2 box, malloc'd: the op owns it (pf_plan_free frees it). */
static pf_box *box2(int64_t s0, int64_t s1, int64_t d0, int64_t d1, int64_t e0,
                    int64_t e1) {
  pf_box *b = calloc(1, sizeof *b);
  assert_non_null(b);
  b->rank = 2;
  b->src_offset[0] = s0;
  b->src_offset[1] = s1;
  b->dst_offset[0] = d0;
  b->dst_offset[1] = d1;
  b->extent[0] = e0;
  b->extent[1] = e1;
  return b;
}

static pf_attrs *all_attrs(void) {
  static const int64_t perm[] = {1, 0, -7, INT64_MIN, INT64_MAX};
  pf_attrs *a;
  assert_int_equal(pf_attrs_create(&a), 0);
  assert_int_equal(pf_attrs_set_float(a, "alpha", 1.5), 0);
  assert_int_equal(pf_attrs_set_int(a, "axis", -3), 0);
  assert_int_equal(pf_attrs_set_string(a, "mode", "fast"), 0);
  assert_int_equal(pf_attrs_set_ints(a, "perm", perm, 5), 0);
  assert_int_equal(pf_attrs_set_ints(a, "empty", NULL, 0), 0);
  return a;
}

static int32_t *i32dup(uint32_t n, const int32_t *v) {
  int32_t *d;
  if (n == 0) return NULL;
  d = malloc(n * sizeof *d);
  assert_non_null(d);
  memcpy(d, v, n * sizeof *d);
  return d;
}

static void set_ranks(pf_plan_comm *c, uint32_t n, const int32_t *ranks) {
  free(c->ranks);
  c->n_ranks = n;
  c->ranks = i32dup(n, ranks);
}

/* A hand-made plan's spec of buffer b, to write (good_plan gives each
 * buffer its own, in own_specs). */
#define SPEC(p, b) (*(pf_spec *)(p)->buffers[b].spec)

/* A plan for rank 1 with 2 devices and every op kind:
 *   op 0 KERNEL  dev0 add(b0) -> b1
 *   op 1 COPY    dev0 rows 2..3 of b1 -> rows 0..1 of b2
 *   op 2 SEND    dev0 rows 0..1 of b1 -> rank 1
 *   op 3 RECV    dev0 rank 1 -> rows 2..3 of b2
 *   op 4 KERNEL  dev1 fill() -> b3
 *   op 5 COLLECTIVE dev1 allgather(b3 [2,3]) along axis 1 -> b4 [2,6], over
 *                communicator 3 of 2 ranks (an MPI collective)
 * Output slots: output 0 shard 0 is b2, output 1 shard 1 is b4.
 * Communicators: 3 = ranks {0, 1}, 5 = ranks {2, 1, 0}. */
static pf_plan *good_plan(void) {
  pf_plan *p = calloc(1, sizeof *p);
  pf_plan_op *op;
  assert_non_null(p);
  p->executable = UINT64_C(0xfeedface12345678);
  p->rank = 1;
  p->num_devices = 2;
  p->num_inputs = 1;
  p->num_outputs = 2;
  p->n_buffers = 5;
  p->buffers = calloc(5, sizeof *p->buffers);
  p->n_ops = 6;
  p->ops = calloc(6, sizeof *p->ops);
  assert_non_null(p->buffers);
  assert_non_null(p->ops);
  /* Room for make_local_collective's two more buffers. */
  p->own_specs = calloc(7, sizeof *p->own_specs);
  assert_non_null(p->own_specs);
  p->buffers[0] = (pf_plan_buffer){0, &p->own_specs[0], 0, -1, 0, 0, 0, 0};
  p->buffers[1] = (pf_plan_buffer){0, &p->own_specs[1], -1, -1, 0, 0, 0, 0};
  p->buffers[2] = (pf_plan_buffer){0, &p->own_specs[2], -1, 0, 0, 0, 0, 0};
  p->buffers[3] = (pf_plan_buffer){1, &p->own_specs[3], -1, -1, 1, 0, 0, 0};
  p->buffers[4] = (pf_plan_buffer){1, &p->own_specs[4], -1, 1, 1, 0, 0, 0};
  SPEC(p, 0) = pf_spec_2d(PF_F32, 4, 8);
  SPEC(p, 1) = pf_spec_2d(PF_F32, 4, 8);
  SPEC(p, 2) = pf_spec_2d(PF_F32, 4, 8);
  SPEC(p, 3) = pf_spec_2d(PF_F64, 2, 3);
  SPEC(p, 4) = pf_spec_2d(PF_F64, 2, 6);

  op = &p->ops[0];
  op->kind = PF_OP_KERNEL;
  op->device = 0;
  op->program = 0;
  op->name = strdup("add0");
  op->kernel = strdup("add");
  op->attrs = all_attrs();
  op->shard = 0;
  op->num_shards = 2;
  set_lists(op, 1, (uint32_t[]){0}, 1, (uint32_t[]){1}, 0, NULL);

  op = &p->ops[1];
  op->kind = PF_OP_COPY;
  op->program = 1;
  op->name = strdup("reshard");
  op->box = box2(2, 0, 0, 0, 2, 8);
  set_lists(op, 1, (uint32_t[]){1}, 1, (uint32_t[]){2}, 1, (uint32_t[]){0});

  op = &p->ops[2];
  op->kind = PF_OP_SEND;
  op->program = 1;
  op->name = strdup("reshard");
  op->box = box2(0, 0, 0, 0, 2, 8);
  op->peer = 1;
  op->tag = 7;
  set_lists(op, 1, (uint32_t[]){1}, 0, NULL, 1, (uint32_t[]){0});

  op = &p->ops[3];
  op->kind = PF_OP_RECV;
  op->program = 1;
  op->name = strdup("reshard");
  op->box = box2(0, 0, 2, 0, 2, 8);
  op->peer = 1;
  op->tag = INT64_C(1) << 40;
  set_lists(op, 0, NULL, 1, (uint32_t[]){2}, 1, (uint32_t[]){1});

  op = &p->ops[4];
  op->kind = PF_OP_KERNEL;
  op->device = 1;
  op->program = 2;
  op->name = strdup("fill1");
  op->kernel = strdup("fill");
  assert_int_equal(pf_attrs_create(&op->attrs), 0);
  op->shard = 1;
  op->num_shards = 2;
  set_lists(op, 0, NULL, 1, (uint32_t[]){3}, 0, NULL);

  op = &p->ops[5];
  op->kind = PF_OP_COLLECTIVE;
  op->device = 1;
  op->program = 3;
  op->name = strdup("allgather");
  op->comm = 3;
  op->collective = PF_ALLGATHER;
  op->reduce_op = 2;
  op->axis = 1;
  op->root = 1;    /* unused by allgather: carried all the same */
  op->in_axis = 1; /* the input is consumed split along the gather axis */
  set_lists(op, 1, (uint32_t[]){3}, 1, (uint32_t[]){4}, 1, (uint32_t[]){4});

  p->n_slots = 2;
  p->slots = calloc(2, sizeof *p->slots);
  assert_non_null(p->slots);
  p->slots[0] = (pf_plan_slot){0, 0, 2};
  p->slots[1] = (pf_plan_slot){1, 1, 4};

  p->n_comms = 2;
  p->comms = calloc(2, sizeof *p->comms);
  assert_non_null(p->comms);
  p->comms[0].id = 3;
  set_ranks(&p->comms[0], 2, (int32_t[]){0, 1});
  p->comms[1].id = 5;
  p->comms[1].group = 70000; /* the job's number: travels as it is */
  set_ranks(&p->comms[1], 3, (int32_t[]){2, 1, 0});
  return p;
}

static void encode_plan(const pf_plan *p, uint8_t **buf, size_t *len) {
  assert_int_equal(pf_plan_encode(p, buf, len), 0);
  assert_non_null(*buf);
}

/* Whatever a decoder makes of hostile bytes: an error and no plan, or a plan
 * that passes the check and round-trips. */
static void plan_survives(const uint8_t *buf, size_t len) {
  pf_plan *p = (pf_plan *)&p, *q = NULL;
  pf_diag d;
  uint8_t *enc;
  size_t n;
  int rc = pf_plan_decode(buf, len, 4, &p, &d);
  if (rc != 0) {
    assert_null(p);
    assert_true(rc == PF_EDECODE || rc == PF_ENOMEM);
    assert_int_equal(d.code, rc);
    assert_true(d.msg[0] != '\0');
    return;
  }
  assert_int_equal(pf_plan_check(p, 4, &d), 0);
  encode_plan(p, &enc, &n);
  assert_int_equal(pf_plan_decode(enc, n, 4, &q, &d), 0);
  assert_true(pf_plan_equal(p, q));
  assert_int_equal(q->checked_for, 4); /* the executor's load need not check it again */
  free(enc);
  pf_plan_free(q);
  pf_plan_free(p);
}

/* ---- plan round trip ---------------------------------------------------------- */

/* The encoder writes the columns by hand: protobuf-c reads them, packs
 * what it read to as many bytes, and that decodes to plan p again
 * (negative, 64-bit and zero values included). */
static void repacks_same(const pf_plan *p, const uint8_t *buf, size_t len, int num_devices) {
  Pathflow__Plan *m = pathflow__plan__unpack(NULL, len, buf);
  pf_plan *q = NULL;
  pf_diag d;
  uint8_t *again;
  size_t n;
  assert_non_null(m);
  n = pathflow__plan__get_packed_size(m);
  assert_int_equal(n, len);
  assert_non_null(again = malloc(n));
  pathflow__plan__pack(m, again);
  pathflow__plan__free_unpacked(m, NULL);
  assert_int_equal(pf_plan_decode(again, n, num_devices, &q, &d), 0);
  assert_true(pf_plan_equal(p, q));
  pf_plan_free(q);
  free(again);
}

/* A chain of n kernel ops in a pool (as the scheduler's plans are): op i
 * reads buffer i and writes buffer i + 1; two ops per program, sharing
 * its name (program index i / 2 + first_program); every kernel name a
 * copy of "add" of its own; one attribute set for all; buffers
 * alternating between two specs. */
static pf_plan *long_plan(uint32_t n, int32_t first_program) {
  pf_plan *p = calloc(1, sizeof *p);
  pf_attrs *attrs = all_attrs();
  char *name = NULL;
  assert_non_null(p);
  assert_non_null(p->pool = calloc(1, sizeof *p->pool));
  p->executable = 9;
  p->num_devices = 1;
  p->num_inputs = 1;
  p->n_buffers = n + 1;
  p->n_ops = n;
  assert_non_null(p->buffers = pf_arena_alloc(p->pool, (n + 1) * sizeof *p->buffers));
  assert_non_null(p->ops = pf_arena_alloc(p->pool, n * sizeof *p->ops));
  assert_non_null(p->own_specs = calloc(2, sizeof *p->own_specs));
  memset(p->ops, 0, n * sizeof *p->ops);
  p->own_specs[0] = pf_spec_2d(PF_F32, 4, 8);
  p->own_specs[1] = pf_spec_2d(PF_F32, 2, 2);
  for (uint32_t i = 0; i <= n; i++)
    p->buffers[i] = (pf_plan_buffer){0, &p->own_specs[i % 2], i == 0 ? 0 : -1, -1, 0, 0, 0, 0};
  for (uint32_t i = 0; i < n; i++) {
    pf_plan_op *op = &p->ops[i];
    uint32_t *lists = pf_arena_alloc(p->pool, 3 * sizeof *lists);
    char text[32];
    assert_non_null(lists);
    if (i % 2 == 0) {
      snprintf(text, sizeof text, "p%u", i / 2);
      assert_non_null(name = pf_arena_strdup(p->pool, text));
    }
    op->kind = PF_OP_KERNEL;
    op->program = first_program + (int32_t)(i / 2);
    op->name = name;
    assert_non_null(op->kernel = pf_arena_strdup(p->pool, "add"));
    op->attrs = pf_attrs_ref(attrs);
    op->num_shards = 1;
    lists[0] = i;
    lists[1] = i + 1;
    lists[2] = i - 1;
    op->inputs = &lists[0];
    op->outputs = &lists[1];
    op->deps = i > 0 ? &lists[2] : NULL;
    op->n_in = op->n_out = 1;
    op->n_deps = i > 0;
  }
  pf_attrs_destroy(attrs);
  return p;
}

/* What many ops share goes once: each spec, each kernel's name, each
 * program's name, each attribute set; decoded, the ops share them again. */
static void plan_tables_shared(void **state) {
  enum { N = 1000 };
  size_t names = 4; /* "add" */
  size_t lens[2];
  (void)state;
  for (uint32_t k = 0; k < N / 2; k++) {
    char text[32];
    names += (size_t)snprintf(text, sizeof text, "p%u", k) + 1;
  }
  /* Program indices near the op count (names found by program) and far
   * above it (names found by content): the same tables. */
  for (int far = 0; far < 2; far++) {
    pf_plan *p = long_plan(N, far ? INT32_MAX - N : 0), *q = NULL;
    Pathflow__Plan *m;
    pf_diag d;
    uint8_t *buf;
    size_t len;
    assert_int_equal(pf_plan_check(p, 1, &d), 0);
    encode_plan(p, &buf, &len);
    assert_non_null(m = pathflow__plan__unpack(NULL, len, buf));
    assert_int_equal(m->n_specs, 2);
    assert_int_equal(m->n_attr_sets, 1);
    assert_int_equal(m->strings.len, names);
    assert_int_equal(m->ops->n_kind, N);
    assert_int_equal(m->buffers->n_spec, N + 1);
    pathflow__plan__free_unpacked(m, NULL);
    repacks_same(p, buf, len, 1);
    lens[far] = len;
    assert_int_equal(pf_plan_decode(buf, len, 1, &q, &d), 0);
    assert_true(pf_plan_equal(p, q));
    assert_ptr_equal(q->ops[0].attrs, q->ops[N - 1].attrs);
    assert_ptr_equal(q->ops[0].kernel, q->ops[N - 1].kernel);
    assert_ptr_equal(q->ops[2].name, q->ops[3].name);
    assert_ptr_equal(q->buffers[0].spec, q->buffers[N].spec);
    assert_true(q->ops[1].name != q->ops[2].name);
    free(buf);
    pf_plan_free(q);
    pf_plan_free(p);
  }
  /* Columns, not a message per op with its attributes again (about 40
   * bytes an op here); far up, the program indices take a few bytes more
   * each, and nothing else grows. */
  assert_true(lens[0] < 48 * N && lens[1] <= lens[0] + 4 * N);
}


/* The encoder finds each row's spec, name, kernel and attribute set in its
 * tables twice (once to measure, once to write), by address first: a plan
 * where those addresses mislead still round-trips. Here the ops of a
 * program alternate between two names (one of them in two copies), two
 * programs share one name string, two kernel strings and two attribute sets alternate, and the
 * buffers have 200 specs of their own (more than the encoder's cache of
 * addresses), equal in pairs. */
static void plan_rows_found_again(void **state) {
  enum { N = 600, SPECS = 200 };
  pf_plan *p = long_plan(N, 0), *q = NULL;
  pf_attrs *other;
  char *shared, *shared_copy, *alt, *kernels[2];
  Pathflow__Plan *m;
  pf_diag d;
  uint8_t *buf;
  size_t len;
  (void)state;
  assert_int_equal(pf_attrs_create(&other), 0);
  assert_int_equal(pf_attrs_set_int(other, "n", 7), 0);
  assert_non_null(shared = pf_arena_strdup(p->pool, "shared"));
  assert_non_null(shared_copy = pf_arena_strdup(p->pool, "shared"));
  assert_non_null(alt = pf_arena_strdup(p->pool, "alt"));
  assert_non_null(kernels[0] = pf_arena_strdup(p->pool, "add"));
  assert_non_null(kernels[1] = pf_arena_strdup(p->pool, "mul"));
  free(p->own_specs);
  assert_non_null(p->own_specs = calloc(SPECS, sizeof *p->own_specs));
  for (int k = 0; k < SPECS; k++) p->own_specs[k] = pf_spec_2d(PF_F32, 1 + k / 2, 3);
  for (uint32_t i = 0; i <= N; i++) p->buffers[i].spec = &p->own_specs[(i * 7) % SPECS];
  for (uint32_t i = 0; i < N; i++) {
    pf_plan_op *op = &p->ops[i];
    op->program = (int32_t)(i % 5); /* five programs, their ops interleaved */
    op->name = op->program == 3 ? alt : i % 3 == 0 ? shared : op->name;
    if (i % 7 == 0) op->name = shared_copy; /* the same name, another copy */
    op->kernel = kernels[i % 2];
    if (i % 4 == 1) {
      pf_attrs_destroy(op->attrs);
      op->attrs = pf_attrs_ref(other);
    }
  }
  assert_int_equal(pf_plan_check(p, 1, &d), 0);
  encode_plan(p, &buf, &len);
  assert_non_null(m = pathflow__plan__unpack(NULL, len, buf));
  assert_int_equal(m->n_specs, SPECS / 2);
  assert_int_equal(m->n_attr_sets, 2);
  pathflow__plan__free_unpacked(m, NULL);
  repacks_same(p, buf, len, 1);
  assert_int_equal(pf_plan_decode(buf, len, 1, &q, &d), 0);
  assert_true(pf_plan_equal(p, q));
  for (uint32_t i = 0; i < N; i++) {
    assert_string_equal(q->ops[i].name, p->ops[i].name);
    assert_string_equal(q->ops[i].kernel, p->ops[i].kernel);
  }
  free(buf);
  pf_plan_free(q);
  pf_plan_free(p);
  pf_attrs_destroy(other);
}

static void plan_roundtrip(void **state) {
  pf_plan *p = good_plan(), *q = NULL;
  pf_diag d;
  uint8_t *a, *b;
  size_t na, nb;
  (void)state;
  assert_int_equal(pf_plan_check(p, 2, &d), 0);
  encode_plan(p, &a, &na);
  assert_int_equal(pf_plan_decode(a, na, 2, &q, &d), 0);
  assert_non_null(q);
  assert_true(pf_plan_equal(p, q));
  repacks_same(p, a, na, 2);
  /* the decoded plan really holds the attrs, not only equal maps */
  assert_true(pf_attrs_get_float(q->ops[0].attrs, "alpha", 0) == 1.5);
  assert_int_equal(pf_attrs_get_int(q->ops[0].attrs, "axis", 0), -3);
  assert_string_equal(pf_attrs_get_string(q->ops[0].attrs, "mode", ""),
                      "fast");
  assert_int_equal(pf_attrs_get_ints(q->ops[0].attrs, "perm", NULL), 5);
  assert_int_equal(pf_attrs_get_ints(q->ops[0].attrs, "empty", NULL), 0);
  assert_null(q->ops[1].kernel);
  assert_null(q->ops[1].attrs);
  assert_int_equal(q->ops[3].tag, INT64_C(1) << 40);
  /* collective fields, output slots and communicators made the trip */
  assert_int_equal(q->ops[5].comm, 3);
  assert_int_equal(q->ops[5].collective, 1);
  assert_int_equal(q->ops[5].reduce_op, 2);
  assert_int_equal(q->ops[5].axis, 1);
  assert_int_equal(q->ops[5].root, 1);
  assert_int_equal(q->ops[5].in_axis, 1);
  assert_int_equal(q->n_slots, 2);
  assert_int_equal(q->slots[0].output, 0);
  assert_int_equal(q->slots[0].shard, 0);
  assert_int_equal(q->slots[0].buffer, 2);
  assert_int_equal(q->slots[1].output, 1);
  assert_int_equal(q->slots[1].shard, 1);
  assert_int_equal(q->slots[1].buffer, 4);
  assert_int_equal(q->n_comms, 2);
  assert_int_equal(q->comms[0].id, 3);
  assert_int_equal(q->comms[1].group, 70000);
  assert_int_equal(q->comms[0].n_ranks, 2);
  assert_memory_equal(q->comms[0].ranks, ((int32_t[]){0, 1}), 2 * sizeof(int32_t));
  assert_int_equal(q->comms[1].id, 5);
  assert_int_equal(q->comms[1].n_ranks, 3);
  assert_memory_equal(q->comms[1].ranks, ((int32_t[]){2, 1, 0}), 3 * sizeof(int32_t));
  encode_plan(q, &b, &nb);
  assert_int_equal(na, nb);
  assert_memory_equal(a, b, na);
  free(a);
  free(b);
  pf_plan_free(q);
  pf_plan_free(p);
}

static void plan_equal_sees_differences(void **state) {
  pf_plan *p = good_plan(), *q = good_plan();
  (void)state;
  assert_true(pf_plan_equal(p, q));
  q->ops[1].box->dst_offset[1] = 1;
  assert_false(pf_plan_equal(p, q));
  q->ops[1].box->dst_offset[1] = 0;
  assert_int_equal(pf_attrs_set_int(q->ops[0].attrs, "axis", 2), 0);
  assert_false(pf_plan_equal(p, q));
  assert_int_equal(pf_attrs_set_int(q->ops[0].attrs, "axis", -3), 0);
  q->buffers[2].output = -1;
  assert_false(pf_plan_equal(p, q));
  q->buffers[2].output = 0;
  q->ops[5].deps[0] = 3;
  assert_false(pf_plan_equal(p, q));
  q->ops[5].deps[0] = 4;
  assert_true(pf_plan_equal(p, q));
  /* collective fields */
  q->ops[5].axis = 0;
  assert_false(pf_plan_equal(p, q));
  q->ops[5].axis = 1;
  q->ops[5].root = 0;
  assert_false(pf_plan_equal(p, q));
  q->ops[5].root = 1;
  q->ops[5].in_axis = 0;
  assert_false(pf_plan_equal(p, q));
  q->ops[5].in_axis = 1;
  q->ops[5].comm = 5;
  assert_false(pf_plan_equal(p, q));
  q->ops[5].comm = 3;
  assert_true(pf_plan_equal(p, q));
  /* output slots: each field, and the count */
  q->slots[1].output = 0;
  assert_false(pf_plan_equal(p, q));
  q->slots[1].output = 1;
  q->slots[1].shard = 0;
  assert_false(pf_plan_equal(p, q));
  q->slots[1].shard = 1;
  q->slots[0].buffer = 4;
  assert_false(pf_plan_equal(p, q));
  q->slots[0].buffer = 2;
  q->n_slots = 1;
  assert_false(pf_plan_equal(p, q));
  q->n_slots = 2;
  assert_true(pf_plan_equal(p, q));
  /* communicators: id, rank list, rank count, count */
  q->comms[1].id = 6;
  assert_false(pf_plan_equal(p, q));
  q->comms[1].id = 5;
  q->comms[1].ranks[2] = 3;
  assert_false(pf_plan_equal(p, q));
  q->comms[1].ranks[2] = 0;
  q->comms[1].n_ranks = 2;
  assert_false(pf_plan_equal(p, q));
  q->comms[1].n_ranks = 3;
  q->n_comms = 1;
  assert_false(pf_plan_equal(p, q));
  q->n_comms = 2;
  assert_true(pf_plan_equal(p, q));
  assert_false(pf_plan_equal(p, NULL));
  assert_true(pf_plan_equal(NULL, NULL));
  pf_plan_free(p);
  pf_plan_free(q);
  pf_plan_free(NULL);
}

static void plan_args(void **state) {
  pf_plan *p = good_plan(), *q = (pf_plan *)&q;
  uint8_t *buf;
  size_t len;
  pf_diag d;
  (void)state;
  assert_int_equal(pf_plan_encode(NULL, &buf, &len), PF_EINVAL);
  assert_int_equal(pf_plan_encode(p, NULL, &len), PF_EINVAL);
  assert_int_equal(pf_plan_decode(NULL, 5, 2, &q, &d), PF_EINVAL);
  assert_null(q);
  assert_int_equal(pf_plan_decode((const uint8_t *)"", 0, 2, NULL, &d),
                   PF_EINVAL);
  /* an empty message is a plan with 0 devices: refused by the check */
  assert_int_equal(pf_plan_decode(NULL, 0, 2, &q, &d), PF_EDECODE);
  expect_words(d.msg, (const char *[]){"num_devices", NULL});
  /* a diag is optional */
  encode_plan(p, &buf, &len);
  assert_int_equal(pf_plan_decode(buf, len, 1, &q, NULL), PF_EDECODE);
  assert_int_equal(pf_plan_decode(buf, len, 2, &q, NULL), 0);
  pf_plan_free(q);
  free(buf);
  pf_plan_free(p);
}

/* Two copies (or a copy and a recv) may fill one buffer: reshard pieces. */
static void plan_reshard_pieces_share(void **state) {
  pf_plan *p = good_plan();
  pf_diag d;
  (void)state;
  p->ops[3].kind = PF_OP_COPY; /* rows 2..3 of b2 from rows 0..1 of b1 */
  set_lists(&p->ops[3], 1, (uint32_t[]){1}, 1, (uint32_t[]){2}, 1, (uint32_t[]){0});
  free(p->ops[3].box);
  p->ops[3].box = box2(0, 0, 2, 0, 2, 8);
  assert_int_equal(pf_plan_check(p, 2, &d), 0);
  /* a copy runs on its destination's device and may read a buffer of
   * another local device (a peer copy) */
  p->buffers[2].device = 1;
  p->ops[1].device = 1;
  p->ops[3].device = 1;
  assert_int_equal(pf_plan_check(p, 2, &d), 0);
  /* so may a kernel read another local device's buffer (the executor
   * refuses it at load where the two do not share memory); it still
   * writes its own device's */
  p->buffers[0].device = 1;
  assert_int_equal(pf_plan_check(p, 2, &d), 0);
  p->buffers[0].device = 0;
  /* scalars (an allreduce of them) */
  SPEC(p, 3) = pf_spec_scalar(PF_F64);
  SPEC(p, 4) = pf_spec_scalar(PF_F64);
  p->ops[5].collective = PF_ALLREDUCE;
  assert_int_equal(pf_plan_check(p, 2, &d), 0);
  /* an empty box at the very end of a dim is in bounds */
  free(p->ops[1].box);
  p->ops[1].box = box2(4, 8, 4, 8, 0, 0);
  assert_int_equal(pf_plan_check(p, 2, &d), 0);
  pf_plan_free(p);
}

/* Makes op 5 a collective within the rank (comm -1) over both devices: inputs
 * b3 (dev1), b5 (dev0), outputs b4, b6, with b5 and b6 shaped as b3 and b4. */
static void make_local_collective(pf_plan *p) {
  pf_plan_buffer *grown = realloc(p->buffers, 7 * sizeof *p->buffers);
  assert_non_null(grown);
  p->buffers = grown;
  p->n_buffers = 7;
  p->buffers[5] = (pf_plan_buffer){0, &p->own_specs[5], -1, -1, 0, 0, 0, 0};
  p->buffers[6] = (pf_plan_buffer){0, &p->own_specs[6], -1, -1, 0, 0, 0, 0};
  SPEC(p, 5) = SPEC(p, 3);
  SPEC(p, 6) = SPEC(p, 4);
  p->ops[5].comm = -1;
  set_lists(&p->ops[5], 2, (uint32_t[]){3, 5}, 2, (uint32_t[]){4, 6}, 1,
            (uint32_t[]){4});
}

/* A collective within the rank (comm -1) takes one input per local device,
 * each with its output, and needs no communicator; a plan may have no slots
 * and no communicators at all. */
static void plan_local_collective(void **state) {
  pf_plan *p = good_plan(), *q = NULL;
  pf_diag d;
  uint8_t *buf;
  size_t len;
  (void)state;
  make_local_collective(p);
  assert_int_equal(pf_plan_check(p, 2, &d), 0);
  /* no communicators left for anyone to name, no output slots */
  for (uint32_t i = 0; i < p->n_comms; i++) free(p->comms[i].ranks);
  free(p->comms);
  p->comms = NULL;
  p->n_comms = 0;
  free(p->slots);
  p->slots = NULL;
  p->n_slots = 0;
  assert_int_equal(pf_plan_check(p, 2, &d), 0);
  encode_plan(p, &buf, &len);
  assert_int_equal(pf_plan_decode(buf, len, 2, &q, &d), 0);
  assert_true(pf_plan_equal(p, q));
  assert_int_equal(q->ops[5].comm, -1);
  assert_int_equal(q->n_slots, 0);
  assert_int_equal(q->n_comms, 0);
  free(buf);
  pf_plan_free(q);
  pf_plan_free(p);
}

/* Every collective kind with the shard specs the scheduler gives it, over
 * 2 local devices, over communicator 3 (2 ranks) and communicator 5 (3). */
static void plan_collective_shapes(void **state) {
  static const struct {
    int kind, axis, root, in_axis;
    int64_t in[2], out2[2], out3[2];
  } cases[] = {
      {PF_ALLREDUCE, 0, 0, 0, {6, 12}, {6, 12}, {6, 12}},
      {PF_ALLGATHER, 1, 0, 1, {6, 12}, {6, 24}, {6, 36}},
      {PF_ALLGATHER, 0, 0, 0, {6, 12}, {12, 12}, {18, 12}},
      {PF_REDUCE_SCATTER, 1, 0, 0, {6, 12}, {6, 6}, {6, 4}},
      {PF_BROADCAST, 0, 1, 0, {6, 12}, {6, 12}, {6, 12}},
      {PF_ALL_TO_ALL, 0, 0, 1, {6, 12}, {3, 24}, {2, 36}},
      {PF_ALL_TO_ALL, 1, 0, 0, {6, 12}, {12, 6}, {18, 4}},
  };
  pf_diag d;
  (void)state;
  for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
    for (int mode = 0; mode < 3; mode++) { /* local, comm 3, comm 5 */
      pf_plan *p = good_plan();
      const int64_t *out = mode == 2 ? cases[c].out3 : cases[c].out2;
      SPEC(p, 3) = pf_spec_2d(PF_F64, cases[c].in[0], cases[c].in[1]);
      SPEC(p, 4) = pf_spec_2d(PF_F64, out[0], out[1]);
      p->ops[5].collective = cases[c].kind;
      p->ops[5].axis = cases[c].axis;
      p->ops[5].root = cases[c].root;
      p->ops[5].in_axis = cases[c].in_axis;
      if (mode == 0) make_local_collective(p);
      if (mode == 2) p->ops[5].comm = 5;
      if (pf_plan_check(p, 2, &d) != 0) {
        print_error("case %zu mode %d: %s\n", c, mode, d.msg);
        fail();
      }
      /* one shard more or less: the shapes no longer fit (an allreduce and
       * a broadcast do not care, but a broadcast's root must exist) */
      if (mode == 1) {
        p->ops[5].comm = 5;
        assert_int_equal(pf_plan_check(p, 2, &d) == 0,
                         cases[c].kind == PF_ALLREDUCE || cases[c].kind == PF_BROADCAST);
      }
      pf_plan_free(p);
    }
  }
}

/* ---- plan check rules ------------------------------------------------------ */

typedef struct plan_rule {
  const char *name;
  void (*mutate)(pf_plan *p);
  int ndev;     /* executor's device count; 0 means 2 */
  int wire;     /* the mutation survives encoding: decode must refuse too */
  const char *words[5];
} plan_rule;

#define MUT(fn, body) \
  static void fn(pf_plan *p) { body; }

static void replace_str(char **slot, const char *v) {
  free(*slot);
  *slot = v ? strdup(v) : NULL;
}

MUT(m_nothing, (void)p)
MUT(m_devices_zero, p->num_devices = 0)
MUT(m_rank, p->rank = -1)
MUT(m_num_inputs, p->num_inputs = -1)
MUT(m_buf_device, p->buffers[3].device = 2)
MUT(m_buf_device_neg, p->buffers[0].device = -1)
MUT(m_buf_dim, SPEC(p, 0).dims[1] = -8)
MUT(m_buf_dtype, SPEC(p, 3).dtype = (pf_dtype)99)
MUT(m_buf_rank, SPEC(p, 0).rank = 9)
MUT(m_buf_overflow, SPEC(p, 0).dims[0] = INT64_MAX / 2)
MUT(m_buf_no_spec, p->buffers[1].spec = NULL)
MUT(m_buf_input, p->buffers[0].input = 1)
MUT(m_buf_input_neg, p->buffers[1].input = -2)
MUT(m_buf_output, p->buffers[4].output = 2)
MUT(m_buf_shard, p->buffers[3].shard = -1)
MUT(m_op_kind, p->ops[5].kind = (pf_op_kind)5)
MUT(m_op_device, p->ops[1].device = 2)
MUT(m_op_device_neg, p->ops[4].device = -1)
MUT(m_op_name, replace_str(&p->ops[2].name, NULL))
MUT(m_kernel_null, replace_str(&p->ops[0].kernel, NULL))
MUT(m_kernel_bad, replace_str(&p->ops[0].kernel, "a b"))
MUT(m_attrs_null, pf_attrs_destroy(p->ops[4].attrs); p->ops[4].attrs = NULL)
MUT(m_num_shards, p->ops[0].num_shards = 0)
MUT(m_shard_range, p->ops[4].shard = 2)
MUT(m_copy_kernel, replace_str(&p->ops[1].kernel, "add"))
MUT(m_coll_attrs, assert_int_equal(pf_attrs_create(&p->ops[5].attrs), 0);
    assert_int_equal(pf_attrs_set_int(p->ops[5].attrs, "x", 1), 0))
MUT(m_input_index, p->ops[0].inputs[0] = 99)
MUT(m_output_index, p->ops[4].outputs[0] = 5)
MUT(m_dep_self, p->ops[1].deps[0] = 1)
MUT(m_dep_later, p->ops[3].deps[0] = 5)
MUT(m_missing_array, free(p->ops[0].deps); p->ops[0].deps = NULL;
    p->ops[0].n_deps = 1)
MUT(m_kernel_out_device, p->buffers[3].device = 0)
/* A peer copy (op 1 on device 1) that does not wait for op 0, the writer
 * of the device-0 buffer it reads. */
MUT(m_peer_read_no_dep, (p->buffers[2].device = 1, p->ops[1].device = 1, p->ops[3].device = 1,
                         set_lists(&p->ops[1], 1, (uint32_t[]){1}, 1, (uint32_t[]){2}, 0, NULL)))
MUT(m_copy_out_device, p->buffers[2].device = 1)
MUT(m_send_device, p->ops[2].device = 1)
MUT(m_recv_device, p->ops[3].device = 1)
MUT(m_copy_arity, set_lists(&p->ops[1], 2, (uint32_t[]){1, 1}, 1,
                            (uint32_t[]){2}, 0, NULL))
MUT(m_copy_no_output, set_lists(&p->ops[1], 1, (uint32_t[]){1}, 0, NULL, 0,
                                NULL))
MUT(m_copy_dtype, SPEC(p, 2).dtype = PF_I32)
MUT(m_copy_rank, p->ops[1].box->rank = 1)
MUT(m_copy_buffer_rank, SPEC(p, 2) = pf_spec_1d(PF_F32, 32))
MUT(m_copy_neg_offset, p->ops[1].box->dst_offset[0] = -1)
MUT(m_copy_neg_extent, p->ops[1].box->extent[1] = -1)
MUT(m_copy_oob, p->ops[1].box->src_offset[0] = 3)
MUT(m_copy_oob_dst, p->ops[1].box->dst_offset[0] = 3)
MUT(m_copy_overflow, p->ops[1].box->src_offset[1] = INT64_MAX)
MUT(m_copy_big_extent, p->ops[1].box->extent[1] = INT64_MAX;
    p->ops[1].box->src_offset[1] = 1)
MUT(m_send_arity, set_lists(&p->ops[2], 1, (uint32_t[]){1}, 1,
                            (uint32_t[]){2}, 0, NULL))
MUT(m_recv_arity, set_lists(&p->ops[3], 1, (uint32_t[]){0}, 1,
                            (uint32_t[]){2}, 0, NULL))
MUT(m_send_box, p->ops[2].box->src_offset[0] = 3)
MUT(m_recv_box, p->ops[3].box->dst_offset[1] = 1)
MUT(m_send_rank, p->ops[2].box->rank = 3)
MUT(m_box_rank, p->ops[0].box = box2(0, 0, 0, 0, 0, 0); p->ops[0].box->rank = 9)
MUT(m_copy_no_box, free(p->ops[1].box); p->ops[1].box = NULL)
MUT(m_recv_no_box, free(p->ops[3].box); p->ops[3].box = NULL)
MUT(m_peer, p->ops[2].peer = -1)
MUT(m_tag, p->ops[3].tag = -5)
MUT(m_comm, p->ops[5].comm = 4)
/* collectives (collective_check) */
MUT(m_coll_kind, p->ops[5].collective = PF_COLLECTIVE_COUNT)
MUT(m_coll_kind_neg, p->ops[5].collective = -1)
MUT(m_coll_reduce, p->ops[5].reduce_op = PF_REDUCE_COUNT)
MUT(m_coll_reduce_neg, p->ops[5].reduce_op = -1)
MUT(m_coll_no_output, set_lists(&p->ops[5], 1, (uint32_t[]){3}, 0, NULL, 0,
                                NULL))
MUT(m_coll_no_args, set_lists(&p->ops[5], 0, NULL, 0, NULL, 0, NULL))
MUT(m_coll_over_devices, p->ops[5].comm = -1;
    set_lists(&p->ops[5], 3, (uint32_t[]){3, 3, 3}, 3, (uint32_t[]){4, 4, 4},
              0, NULL))
MUT(m_comm_negative, p->ops[5].comm = -2)
MUT(m_coll_mpi_two, set_lists(&p->ops[5], 2, (uint32_t[]){3, 0}, 2,
                              (uint32_t[]){4, 1}, 0, NULL))
MUT(m_coll_dtype, SPEC(p, 4).dtype = PF_F32)
/* collective shapes (collective_shape_check) */
MUT(m_coll_axis_range, p->ops[5].axis = 2)
MUT(m_coll_axis_neg, p->ops[5].axis = -1)
MUT(m_coll_gather_shape, SPEC(p, 4) = pf_spec_2d(PF_F64, 2, 5))
MUT(m_coll_rank_differs, SPEC(p, 4) = pf_spec_1d(PF_F64, 12))
MUT(m_coll_allreduce_shape, p->ops[5].collective = PF_ALLREDUCE)
MUT(m_coll_scatter_divides, p->ops[5].collective = PF_REDUCE_SCATTER;
    SPEC(p, 4) = pf_spec_2d(PF_F64, 2, 1))
MUT(m_coll_root_range, p->ops[5].collective = PF_BROADCAST;
    p->buffers[4].spec = p->buffers[3].spec; p->ops[5].root = 2)
MUT(m_coll_root_neg, p->ops[5].collective = PF_BROADCAST;
    p->buffers[4].spec = p->buffers[3].spec; p->ops[5].root = -1)
MUT(m_coll_a2a_in_axis, p->ops[5].collective = PF_ALL_TO_ALL;
    SPEC(p, 3) = pf_spec_2d(PF_F64, 2, 6);
    SPEC(p, 4) = pf_spec_2d(PF_F64, 4, 3); p->ops[5].in_axis = 2)
MUT(m_coll_a2a_same_axis, p->ops[5].collective = PF_ALL_TO_ALL;
    SPEC(p, 3) = pf_spec_2d(PF_F64, 2, 6);
    SPEC(p, 4) = pf_spec_2d(PF_F64, 4, 3); p->ops[5].in_axis = 1)
MUT(m_coll_a2a_shape, p->ops[5].collective = PF_ALL_TO_ALL;
    SPEC(p, 3) = pf_spec_2d(PF_F64, 2, 6);
    SPEC(p, 4) = pf_spec_2d(PF_F64, 4, 6); p->ops[5].in_axis = 0)
MUT(m_coll_local_input_spec, make_local_collective(p);
    SPEC(p, 5) = pf_spec_2d(PF_F64, 3, 3))
MUT(m_coll_local_output_spec, make_local_collective(p);
    SPEC(p, 6) = pf_spec_2d(PF_F64, 2, 3))
/* output slots and communicators (slots_comms_check) */
MUT(m_slots_missing, free(p->slots); p->slots = NULL)
MUT(m_comms_missing, for (uint32_t i = 0; i < p->n_comms; i++)
    free(p->comms[i].ranks); free(p->comms); p->comms = NULL)
MUT(m_slot_output_neg, p->slots[0].output = -1)
MUT(m_slot_output_range, p->slots[1].output = 2)
MUT(m_slot_shard, p->slots[1].shard = -1)
MUT(m_slot_buffer_range, p->slots[0].buffer = 5)
MUT(m_slot_not_output, p->slots[1].buffer = 3)
MUT(m_comm_id_neg, p->comms[1].id = -1)
MUT(m_comm_empty, set_ranks(&p->comms[1], 0, NULL))
MUT(m_comm_ranks_null, free(p->comms[1].ranks); p->comms[1].ranks = NULL)
MUT(m_comm_too_big, {
  uint32_t n = (1u << 20) + 1;
  int32_t *v = malloc(n * sizeof *v);
  assert_non_null(v);
  for (uint32_t i = 0; i < n; i++) v[i] = (int32_t)i;
  free(p->comms[1].ranks);
  p->comms[1].ranks = v;
  p->comms[1].n_ranks = n;
})
MUT(m_comm_id_dup, p->comms[1].id = 3)
MUT(m_comm_rank_neg, p->comms[1].ranks[0] = -1)
MUT(m_comm_rank_big, p->comms[0].ranks[0] = 1 << 20)
MUT(m_comm_rank_dup, p->comms[1].ranks[2] = 2)
MUT(m_comm_not_me, p->comms[1].ranks[1] = 7)
MUT(m_kernel_kernel_writer,
    p->ops[5].kind = PF_OP_KERNEL; replace_str(&p->ops[5].kernel, "k");
    assert_int_equal(pf_attrs_create(&p->ops[5].attrs), 0);
    p->ops[5].num_shards = 1; p->ops[5].outputs[0] = 3)
MUT(m_kernel_coll_writer, p->ops[4].outputs[0] = 4)
MUT(m_kernel_copy_writer, p->ops[0].outputs[0] = 2)
MUT(m_kernel_writes_twice, set_lists(&p->ops[0], 1, (uint32_t[]){0}, 2,
                                     (uint32_t[]){1, 1}, 0, NULL))
MUT(m_too_many_inputs, {
  uint32_t n = (1u << 20) + 1;
  uint32_t *v = malloc(n * sizeof *v);
  assert_non_null(v);
  for (uint32_t i = 0; i < n; i++) v[i] = 3;
  free(p->ops[5].inputs);
  p->ops[5].inputs = v;
  p->ops[5].n_in = n;
})

static const plan_rule plan_rules[] = {
    {"devices_over_executor", m_nothing, 1, 1, {"num_devices 2", "executor has 1"}},
    {"devices_zero", m_devices_zero, 0, 1, {"num_devices 0"}},
    {"negative_rank", m_rank, 0, 1, {"negative rank"}},
    {"negative_num_inputs", m_num_inputs, 0, 1, {"num_inputs -1"}},
    {"buffer_device", m_buf_device, 0, 1, {"buffer 3", "device 2"}},
    {"buffer_device_negative", m_buf_device_neg, 0, 1, {"buffer 0", "device -1"}},
    {"buffer_negative_dim", m_buf_dim, 0, 1, {"buffer 0", "bad spec"}},
    {"buffer_dtype", m_buf_dtype, 0, 1, {"buffer 3", "spec"}},
    {"buffer_rank", m_buf_rank, 0, 1, {"buffer 0", "bad spec"}},
    {"buffer_size_overflow", m_buf_overflow, 0, 1, {"buffer 0", "bad spec"}},
    {"buffer_no_spec", m_buf_no_spec, 0, 1, {"buffer 1", "no spec"}},
    {"buffer_input", m_buf_input, 0, 1, {"buffer 0", "input index 1"}},
    {"buffer_input_negative", m_buf_input_neg, 0, 1, {"buffer 1", "input index -2"}},
    {"buffer_output", m_buf_output, 0, 1, {"buffer 4", "output index 2"}},
    {"buffer_shard", m_buf_shard, 0, 1, {"buffer 3", "negative shard"}},
    {"op_kind", m_op_kind, 0, 1, {"op 5", "unknown kind 5"}},
    {"op_device", m_op_device, 0, 1, {"op 1", "device 2"}},
    {"op_device_negative", m_op_device_neg, 0, 1, {"op 4", "device -1"}},
    {"op_name", m_op_name, 0, 0, {"op 2", "no name"}},
    {"kernel_missing", m_kernel_null, 0, 1, {"op 0", "kernel name"}},
    {"kernel_bad_name", m_kernel_bad, 0, 1, {"op 0", "kernel name"}},
    {"kernel_attrs_missing", m_attrs_null, 0, 0, {"op 4", "attrs"}},
    {"kernel_num_shards", m_num_shards, 0, 1, {"op 0", "shard 0 of 0"}},
    {"kernel_shard", m_shard_range, 0, 1, {"op 4", "shard 2 of 2"}},
    {"copy_with_kernel", m_copy_kernel, 0, 1, {"op 1", "kernel or attrs"}},
    {"collective_with_attrs", m_coll_attrs, 0, 1, {"op 5", "kernel or attrs"}},
    {"input_buffer_index", m_input_index, 0, 1, {"op 0", "input 0 is buffer 99"}},
    {"output_buffer_index", m_output_index, 0, 1, {"op 4", "output 0 is buffer 5"}},
    {"dep_self", m_dep_self, 0, 1, {"op 1", "dep 0 is op 1", "earlier"}},
    {"dep_later", m_dep_later, 0, 1, {"op 3", "dep 0 is op 5", "topological"}},
    {"too_many_inputs", m_too_many_inputs, 0, 1, {"op 5", "1048577 inputs", "at most"}},
    {"missing_array", m_missing_array, 0, 0, {"op 0", "missing"}},
    {"kernel_output_device", m_kernel_out_device, 0, 1, {"op 4", "output buffer 3", "device 0"}},
    {"peer_read_no_dep", m_peer_read_no_dep, 0, 1, {"op 1", "buffer 1 of device 0", "op 0", "without depending"}},
    {"copy_output_device", m_copy_out_device, 0, 1, {"op 1", "output buffer 2"}},
    {"send_input_device", m_send_device, 0, 1, {"op 2", "input buffer 1"}},
    {"recv_output_device", m_recv_device, 0, 1, {"op 3", "output buffer 2"}},
    {"copy_arity", m_copy_arity, 0, 1, {"op 1", "exactly 1 input and 1 output"}},
    {"copy_no_output", m_copy_no_output, 0, 1, {"op 1", "has 1 and 0"}},
    {"copy_dtype", m_copy_dtype, 0, 1, {"op 1", "f32", "i32", "dtype"}},
    {"copy_box_rank", m_copy_rank, 0, 1, {"op 1", "box rank 1"}},
    {"copy_buffer_rank", m_copy_buffer_rank, 0, 1, {"op 1", "box rank 2", "buffer 2 has rank 1"}},
    {"copy_negative_offset", m_copy_neg_offset, 0, 1, {"op 1", "negative destination offset"}},
    {"copy_negative_extent", m_copy_neg_extent, 0, 1, {"op 1", "extent -1"}},
    {"copy_source_bounds", m_copy_oob, 0, 1, {"op 1", "source offset 3", "exceeds dim 4"}},
    {"copy_dest_bounds", m_copy_oob_dst, 0, 1, {"op 1", "destination offset 3", "exceeds"}},
    {"copy_offset_overflow", m_copy_overflow, 0, 1, {"op 1", "exceeds dim 8"}},
    {"copy_extent_overflow", m_copy_big_extent, 0, 1, {"op 1", "exceeds dim 8"}},
    {"send_arity", m_send_arity, 0, 1, {"op 2", "send needs exactly 1 input"}},
    {"recv_arity", m_recv_arity, 0, 1, {"op 3", "recv needs exactly 1 output"}},
    {"send_box_bounds", m_send_box, 0, 1, {"op 2", "source offset 3", "exceeds"}},
    {"recv_box_bounds", m_recv_box, 0, 1, {"op 3", "destination offset 1", "exceeds"}},
    {"send_box_rank", m_send_rank, 0, 1, {"op 2", "box rank 3"}},
    {"box_rank_range", m_box_rank, 0, 1, {"op 0", "box rank 9"}},
    {"copy_without_box", m_copy_no_box, 0, 1, {"op 1", "copy op without a box"}},
    {"recv_without_box", m_recv_no_box, 0, 1, {"op 3", "recv op without a box"}},
    {"send_peer", m_peer, 0, 1, {"op 2", "negative peer -1"}},
    {"recv_tag", m_tag, 0, 1, {"op 3", "negative tag -5"}},
    {"collective_comm", m_comm, 0, 1, {"op 5", "no communicator 4"}},
    {"collective_kind", m_coll_kind, 0, 1, {"op 5", "unknown collective 5"}},
    {"collective_kind_negative", m_coll_kind_neg, 0, 1, {"op 5", "unknown collective -1"}},
    {"collective_reduction", m_coll_reduce, 0, 1, {"op 5", "reduction 4"}},
    {"collective_reduction_negative", m_coll_reduce_neg, 0, 1, {"op 5", "reduction -1"}},
    {"collective_no_output", m_coll_no_output, 0, 1, {"op 5", "one output per input"}},
    {"collective_no_arguments", m_coll_no_args, 0, 1, {"op 5", "one output per input"}},
    {"collective_over_devices", m_coll_over_devices, 0, 1, {"op 5", "one output per input"}},
    {"collective_comm_negative", m_comm_negative, 0, 1, {"op 5", "no communicator -2"}},
    {"collective_mpi_two_shards", m_coll_mpi_two, 0, 1, {"op 5", "MPI collective", "one local shard"}},
    {"collective_dtype", m_coll_dtype, 0, 1, {"op 5", "dtypes differ"}},
    {"collective_axis_range", m_coll_axis_range, 0, 1, {"op 5", "axis 2 out of range for rank 2"}},
    {"collective_axis_negative", m_coll_axis_neg, 0, 1, {"op 5", "axis -1 out of range"}},
    {"collective_gather_shape", m_coll_gather_shape, 0, 1, {"op 5 (allgather): allgather", "f64[2,3]", "f64[2,5]", "2 shards"}},
    {"collective_rank_differs", m_coll_rank_differs, 0, 1, {"op 5", "allgather", "f64[12]"}},
    {"collective_allreduce_shape", m_coll_allreduce_shape, 0, 1, {"op 5", "allreduce", "does not hold"}},
    {"collective_scatter_divides", m_coll_scatter_divides, 0, 1, {"op 5", "reduce_scatter", "does not hold"}},
    {"collective_root_range", m_coll_root_range, 0, 1, {"op 5", "root 2 not in [0, 2)"}},
    {"collective_root_negative", m_coll_root_neg, 0, 1, {"op 5", "root -1"}},
    {"collective_in_axis_range", m_coll_a2a_in_axis, 0, 1, {"op 5", "in_axis 2 out of range"}},
    {"collective_a2a_same_axis", m_coll_a2a_same_axis, 0, 1, {"op 5", "both 1"}},
    {"collective_a2a_shape", m_coll_a2a_shape, 0, 1, {"op 5", "all_to_all", "does not hold"}},
    {"collective_local_input_spec", m_coll_local_input_spec, 0, 1, {"op 5", "input or output 1", "another spec"}},
    {"collective_local_output_spec", m_coll_local_output_spec, 0, 1, {"op 5", "input or output 1", "another spec"}},
    {"slots_missing", m_slots_missing, 0, 0, {"missing slots or communicators"}},
    {"comms_missing", m_comms_missing, 0, 0, {"missing slots or communicators"}},
    {"slot_output_negative", m_slot_output_neg, 0, 1, {"output slot 0", "output -1"}},
    {"slot_output_range", m_slot_output_range, 0, 1, {"output slot 1", "output 2"}},
    {"slot_shard", m_slot_shard, 0, 1, {"output slot 1", "shard -1"}},
    {"slot_buffer_range", m_slot_buffer_range, 0, 1, {"output slot 0", "buffer 5"}},
    {"slot_buffer_not_output", m_slot_not_output, 0, 1, {"output slot 1", "buffer 3"}},
    {"comm_id_negative", m_comm_id_neg, 0, 1, {"communicator 1 is invalid"}},
    {"comm_no_ranks", m_comm_empty, 0, 1, {"communicator 1 is invalid"}},
    {"comm_ranks_missing", m_comm_ranks_null, 0, 0, {"communicator 1 is invalid"}},
    {"comm_too_many_ranks", m_comm_too_big, 0, 1, {"communicator 1"}},
    {"comm_id_repeated", m_comm_id_dup, 0, 1, {"communicator id 3 repeated"}},
    {"comm_rank_negative", m_comm_rank_neg, 0, 1, {"communicator 5", "rank -1 out of range"}},
    {"comm_rank_too_high", m_comm_rank_big, 0, 1, {"communicator 3", "rank 1048576 out of range"}},
    {"comm_rank_repeated", m_comm_rank_dup, 0, 1, {"communicator 5", "rank 2 repeated"}},
    {"comm_without_own_rank", m_comm_not_me, 0, 1, {"communicator 5", "does not include rank 1"}},
    {"two_kernels_write", m_kernel_kernel_writer, 0, 1, {"op 5", "buffer 3", "op 4"}},
    {"kernel_and_collective_write", m_kernel_coll_writer, 0, 1, {"op 5", "buffer 4", "op 4"}},
    {"kernel_and_copy_write", m_kernel_copy_writer, 0, 1, {"op 1", "buffer 2", "op 0 (add0, kernel)"}},
    {"kernel_writes_twice", m_kernel_writes_twice, 0, 1, {"op 0", "buffer 1", "also written by op 0"}},
};

static void plan_rule_test(void **state) {
  const plan_rule *r = *state;
  int ndev = r->ndev ? r->ndev : 2;
  pf_plan *p = good_plan(), *q = (pf_plan *)&q;
  pf_diag d;
  uint8_t *buf;
  size_t len;
  int rc;
  r->mutate(p);
  assert_int_equal(pf_plan_check(p, ndev, &d), PF_EDECODE);
  assert_int_equal(d.code, PF_EDECODE);
  expect_words(d.msg, r->words);
  rc = pf_plan_encode(p, &buf, &len);
  if (rc == 0) {
    rc = pf_plan_decode(buf, len, ndev, &q, &d);
    free(buf);
    if (r->wire) {
      assert_int_equal(rc, PF_EDECODE);
      assert_null(q);
    } else if (rc == 0) {
      pf_plan_free(q);
    }
  } else {
    assert_int_equal(rc, PF_EINVAL); /* only for ranks out of range, or no spec */
  }
  pf_plan_free(p);
}

/* ---- plan decoder rules (crafted messages) -------------------------------- */

/* Edits of an unpacked message are undone before free_unpacked, so that
 * protobuf-c frees exactly what it allocated. */
typedef struct edit {
  void *slot;
  unsigned char saved[sizeof(size_t) > sizeof(void *) ? sizeof(size_t)
                                                      : sizeof(void *)];
  size_t n;
} edit;

static edit edits[32];
static int n_edits;

static void set_bytes(void *slot, const void *v, size_t n) {
  assert_true(n_edits < 32 && n <= sizeof edits[0].saved);
  edits[n_edits].slot = slot;
  edits[n_edits].n = n;
  memcpy(edits[n_edits].saved, slot, n);
  n_edits++;
  memcpy(slot, v, n);
}

#define SET(lvalue, value)                         \
  do {                                             \
    __typeof__(lvalue) v_ = (value);               \
    set_bytes(&(lvalue), &v_, sizeof v_);          \
  } while (0)

static void undo_edits(void) {
  while (n_edits > 0) {
    n_edits--;
    memcpy(edits[n_edits].slot, edits[n_edits].saved, edits[n_edits].n);
  }
}

static char long_name[2048];
static int64_t nine[9] = {1, 1, 1, 1, 1, 1, 1, 1, 1};
static int64_t many_ints[PF_ATTR_LIST_MAX + 1];
static Pathflow__Attr attr_a, attr_b;
static Pathflow__Attr *attr_list[2] = {&attr_a, &attr_b};
static Pathflow__Ints ints_msg;
static Pathflow__Attr big_attrs[PF_WIRE_MAX_ATTRS + 1];
static Pathflow__Attr *big_attr_list[PF_WIRE_MAX_ATTRS + 1];
static char big_attr_names[PF_WIRE_MAX_ATTRS + 1][8];

static char *name_of(size_t n) {
  memset(long_name, 'a', n);
  long_name[n] = '\0';
  return long_name;
}

static void attrs_pair(const char *a, const char *b) {
  pathflow__attr__init(&attr_a);
  pathflow__attr__init(&attr_b);
  attr_a.name = (char *)a;
  attr_a.value_case = PATHFLOW__ATTR__VALUE_I;
  attr_b.name = (char *)b;
  attr_b.value_case = PATHFLOW__ATTR__VALUE_I;
}

typedef struct plan_wire_rule {
  const char *name;
  void (*mutate)(Pathflow__Plan *m);
  int ok; /* the edit is valid: decode must succeed */
  const char *words[5];
} plan_wire_rule;

#define WMUT(fn, body) \
  static void fn(Pathflow__Plan *m) { body; }

/* Puts string s before the plan's strings, at offset 0: every op's name
 * and kernel move along. */
static uint8_t prepended[4096];
static void prepend_string(Pathflow__Plan *m, const char *s) {
  size_t k = strlen(s) + 1;
  assert_true(k + m->strings.len <= sizeof prepended);
  memcpy(prepended, s, k);
  memcpy(prepended + k, m->strings.data, m->strings.len);
  for (size_t i = 0; i < m->ops->n_name; i++) {
    SET(m->ops->name[i], m->ops->name[i] + (uint32_t)k);
    if (m->ops->kernel[i] != 0) SET(m->ops->kernel[i], m->ops->kernel[i] + (uint32_t)k);
  }
  SET(m->strings.data, prepended);
  SET(m->strings.len, k + m->strings.len);
}

/* good_plan's specs, in the order the encoder meets them: f32[4,8]
 * (buffers 0-2), f64[2,3], f64[2,6]; its strings start with op 0's name
 * "add0" and kernel "add"; op 0's attributes are set 0, op 4's empty set
 * is none; op 1's box (rank 2) is the first six numbers of the boxes. */
WMUT(w_dims9, SET(m->specs[0]->n_dims, 9); SET(m->specs[0]->dims, nine))
WMUT(w_dtype, SET(m->specs[0]->dtype, PF_DTYPE_COUNT))
WMUT(w_dtype_neg, SET(m->specs[1]->dtype, -1))
WMUT(w_spec_index, SET(m->buffers->spec[2], 99))
WMUT(w_buffer_column, SET(m->buffers->n_host, 4))
WMUT(w_kind, SET(m->ops->kind[1], (Pathflow__PlanOps__Kind)9))
WMUT(w_kind_neg, SET(m->ops->kind[1], (Pathflow__PlanOps__Kind)-1))
WMUT(w_op_column, SET(m->ops->n_tag, 5))
WMUT(w_name_long, prepend_string(m, name_of(1025)); SET(m->ops->name[0], 0))
WMUT(w_name_max, prepend_string(m, name_of(1024)); SET(m->ops->name[0], 0))
WMUT(w_kernel_long, prepend_string(m, name_of(1025)); SET(m->ops->kernel[0], 1))
WMUT(w_name_inside, SET(m->ops->name[0], 1))
WMUT(w_name_past, SET(m->ops->name[0], (uint32_t)m->strings.len))
WMUT(w_kernel_past, SET(m->ops->kernel[0], (uint32_t)m->strings.len + 1))
WMUT(w_strings_open, SET(m->strings.len, m->strings.len - 1))
WMUT(w_attr_dup, attrs_pair("k", "k"); SET(m->attr_sets[0]->n_attrs, 2);
     SET(m->attr_sets[0]->attrs, attr_list))
WMUT(w_attr_unset, attrs_pair("k", "l");
     attr_b.value_case = PATHFLOW__ATTR__VALUE__NOT_SET;
     SET(m->attr_sets[0]->n_attrs, 2); SET(m->attr_sets[0]->attrs, attr_list))
WMUT(w_attr_nan, attrs_pair("k", "l");
     attr_b.value_case = PATHFLOW__ATTR__VALUE_F; attr_b.f = NAN;
     SET(m->attr_sets[0]->n_attrs, 2); SET(m->attr_sets[0]->attrs, attr_list))
WMUT(w_attr_inf, attrs_pair("k", "l");
     attr_b.value_case = PATHFLOW__ATTR__VALUE_F; attr_b.f = -INFINITY;
     SET(m->attr_sets[0]->n_attrs, 2); SET(m->attr_sets[0]->attrs, attr_list))
WMUT(w_attr_ints, attrs_pair("k", "l");
     pathflow__ints__init(&ints_msg); ints_msg.n_v = PF_ATTR_LIST_MAX + 1;
     ints_msg.v = many_ints; attr_b.value_case = PATHFLOW__ATTR__VALUE_INTS;
     attr_b.ints = &ints_msg; SET(m->attr_sets[0]->n_attrs, 2);
     SET(m->attr_sets[0]->attrs, attr_list))
WMUT(w_attr_name_long, attrs_pair("k", name_of(PF_ATTR_NAME_MAX + 1));
     SET(m->attr_sets[0]->n_attrs, 2); SET(m->attr_sets[0]->attrs, attr_list))
WMUT(w_attr_name_empty, attrs_pair("k", ""); SET(m->attr_sets[0]->n_attrs, 2);
     SET(m->attr_sets[0]->attrs, attr_list))
WMUT(w_attr_string_long, attrs_pair("k", "l");
     attr_b.value_case = PATHFLOW__ATTR__VALUE_S; attr_b.s = name_of(1025);
     SET(m->attr_sets[0]->n_attrs, 2); SET(m->attr_sets[0]->attrs, attr_list))
WMUT(w_attrs_many, {
  for (int i = 0; i <= PF_WIRE_MAX_ATTRS; i++) {
    pathflow__attr__init(&big_attrs[i]);
    snprintf(big_attr_names[i], sizeof big_attr_names[i], "a%d", i);
    big_attrs[i].name = big_attr_names[i];
    big_attrs[i].value_case = PATHFLOW__ATTR__VALUE_I;
    big_attr_list[i] = &big_attrs[i];
  }
  SET(m->attr_sets[0]->n_attrs, (size_t)PF_WIRE_MAX_ATTRS + 1);
  SET(m->attr_sets[0]->attrs, big_attr_list);
})
WMUT(w_attr_set_index, SET(m->ops->attrs[0], 5))
WMUT(w_copy_kernel, SET(m->ops->kernel[1], 1))
WMUT(w_copy_attrs, SET(m->ops->attrs[1], 1))
WMUT(w_list_sum, SET(m->ops->input_count[0], 2))
WMUT(w_list_long, SET(m->ops->dep_count[0], (1u << 20) + 1))
WMUT(w_box_nine, SET(m->ops->box_rank[1], 9))
WMUT(w_box_numbers, SET(m->ops->n_boxes, m->ops->n_boxes - 1))
WMUT(w_no_box_copy, SET(m->ops->box_rank[1], 0); SET(m->ops->boxes, m->ops->boxes + 6);
     SET(m->ops->n_boxes, m->ops->n_boxes - 6))

#define BIG_LIST ((1u << 20) + 1)
static int32_t big_ranks[BIG_LIST];
static Pathflow__OutputSlot big_slot;
static Pathflow__OutputSlot *big_slots[BIG_LIST];

WMUT(w_comm_big, SET(m->comms[0]->n_ranks, (size_t)BIG_LIST);
     SET(m->comms[0]->ranks, big_ranks))
WMUT(w_slots_many, {
  pathflow__output_slot__init(&big_slot);
  for (uint32_t i = 0; i < BIG_LIST; i++) big_slots[i] = &big_slot;
  SET(m->n_outputs, (size_t)BIG_LIST);
  SET(m->outputs, big_slots);
})
WMUT(w_comm_no_ranks, SET(m->comms[1]->n_ranks, 0))
WMUT(w_slot_buffer, SET(m->outputs[1]->buffer, 99))
/* (in_axis is a byte in the record: what does not fit is refused even
 * where unused, plan_columns_by_hand) */
WMUT(w_coll_unused, SET(m->ops->root[5], INT32_MAX);
     SET(m->ops->in_axis[5], INT8_MIN))
WMUT(w_coll_axis, SET(m->ops->axis[5], -7))

static const plan_wire_rule plan_wire_rules[] = {
    {"spec_nine_dims", w_dims9, 0, {"spec 0", "9 dims"}},
    {"spec_dtype", w_dtype, 0, {"spec 0", "unknown dtype 7"}},
    {"spec_dtype_negative", w_dtype_neg, 0, {"spec 1", "unknown dtype -1"}},
    {"spec_index", w_spec_index, 0, {"buffer 2", "spec 99", "has 3"}},
    {"buffer_column_short", w_buffer_column, 0, {"5 buffers but 4 in buffers.host"}},
    {"op_kind_enum", w_kind, 0, {"op 1", "unknown kind 9"}},
    {"op_kind_negative", w_kind_neg, 0, {"op 1", "unknown kind -1"}},
    {"op_column_short", w_op_column, 0, {"6 ops but 5 in ops.tag"}},
    {"name_too_long", w_name_long, 0, {"string at byte 0", "longer than 1024"}},
    {"name_at_limit", w_name_max, 1, {NULL}},
    {"kernel_too_long", w_kernel_long, 0, {"string at byte 0", "longer than 1024"}},
    {"name_inside_a_string", w_name_inside, 0, {"op 0", "byte 1", "not one of the plan's strings"}},
    {"name_past_the_strings", w_name_past, 0, {"op 0", "not one of the plan's strings"}},
    {"kernel_past_the_strings", w_kernel_past, 0, {"op 0 (add0)", "kernel", "not one of"}},
    {"strings_unterminated", w_strings_open, 0, {"strings do not end in a NUL byte"}},
    {"attr_repeated", w_attr_dup, 0, {"attribute set 0", "attr \"k\" repeated"}},
    {"attr_unset", w_attr_unset, 0, {"attribute set 0", "attr \"l\" has no value"}},
    {"attr_nan", w_attr_nan, 0, {"attribute set 0", "attr \"l\" refused"}},
    {"attr_infinite", w_attr_inf, 0, {"attribute set 0", "attr \"l\" refused"}},
    {"attr_list_long", w_attr_ints, 0, {"attribute set 0", "int list longer than 64"}},
    {"attr_name_long", w_attr_name_long, 0, {"attribute set 0", "attr name longer"}},
    {"attr_name_empty", w_attr_name_empty, 0, {"attribute set 0", "refused"}},
    {"attr_string_long", w_attr_string_long, 0, {"attribute set 0", "longer than 1024"}},
    {"attrs_too_many", w_attrs_many, 0, {"attribute set 0", "1025 attrs"}},
    {"attr_set_index", w_attr_set_index, 0, {"op 0 (add0)", "attribute set 4", "has 1"}},
    {"copy_kernel_name", w_copy_kernel, 0, {"op 1", "non-kernel"}},
    {"copy_attrs", w_copy_attrs, 0, {"op 1", "non-kernel"}},
    {"list_counts_disagree", w_list_sum, 0, {"input_count call for 5 numbers in ops.inputs", "it has 4"}},
    {"list_too_long", w_list_long, 0, {"op 0", "dep_count 1048577", "at most 1048576"}},
    {"box_nine", w_box_nine, 0, {"op 1", "box_rank 9", "at most 8"}},
    {"box_numbers", w_box_numbers, 0, {"box_rank call for 18 numbers in ops.boxes", "it has 17"}},
    {"copy_without_box", w_no_box_copy, 0, {"op 1", "box rank 0"}},
    {"communicator_too_large", w_comm_big, 0, {"communicator 0 too large"}},
    {"output_slots_too_many", w_slots_many, 0, {"too many output slots"}},
    {"communicator_no_ranks", w_comm_no_ranks, 0, {"communicator 1 is invalid"}},
    {"output_slot_buffer", w_slot_buffer, 0, {"output slot 1", "buffer 99"}},
    {"allgather_ignores_root_in_axis", w_coll_unused, 1, {NULL}},
    {"collective_axis", w_coll_axis, 0, {"op 5", "axis -7 out of range"}},
};

static void plan_wire_rule_test(void **state) {
  const plan_wire_rule *r = *state;
  pf_plan *p = good_plan(), *q = (pf_plan *)&q;
  Pathflow__Plan *m;
  pf_diag d;
  uint8_t *buf, *buf2;
  size_t len, len2;
  int rc;
  encode_plan(p, &buf, &len);
  m = pathflow__plan__unpack(NULL, len, buf);
  assert_non_null(m);
  r->mutate(m);
  len2 = pathflow__plan__get_packed_size(m);
  buf2 = malloc(len2);
  assert_non_null(buf2);
  pathflow__plan__pack(m, buf2);
  undo_edits();
  pathflow__plan__free_unpacked(m, NULL);
  rc = pf_plan_decode(buf2, len2, 2, &q, &d);
  if (r->ok) {
    assert_int_equal(rc, 0);
    pf_plan_free(q);
  } else {
    assert_int_equal(rc, PF_EDECODE);
    assert_null(q);
    expect_words(d.msg, r->words);
  }
  free(buf);
  free(buf2);
  pf_plan_free(p);
}

/* ---- plan garbage ------------------------------------------------------------ */

static void plan_truncated(void **state) {
  pf_plan *p = good_plan();
  uint8_t *buf;
  size_t len;
  (void)state;
  encode_plan(p, &buf, &len);
  for (size_t n = 0; n < len; n++) plan_survives(buf, n);
  plan_survives(buf, len);
  free(buf);
  pf_plan_free(p);
}

static void plan_flipped(void **state) {
  static const uint8_t masks[] = {0x01, 0x80, 0xff, 0x7f};
  pf_plan *p = good_plan();
  uint8_t *buf;
  size_t len;
  (void)state;
  encode_plan(p, &buf, &len);
  for (size_t i = 0; i < len; i++) {
    for (size_t k = 0; k < sizeof masks; k++) {
      buf[i] ^= masks[k];
      plan_survives(buf, len);
      buf[i] ^= masks[k];
    }
  }
  free(buf);
  pf_plan_free(p);
}

/* ---- fields read by hand ---------------------------------------------------- */

static int field_at(const uint8_t *b, size_t n, pf_wire_field *f) {
  const uint8_t *p = b;
  int rc = pf_wire_field_next(&p, b + n, f);
  assert_true(rc != 0 || p == f->end);
  return rc;
}

/* pf_wire_field_next reads what protobuf-c reads, and refuses what it
 * refuses: keys over five bytes or 32 bits, field 0, groups, lengths past
 * the end, varints over ten bytes. */
static void wire_fields_by_hand(void **state) {
  pf_wire_field f;
  uint64_t v;
  const uint8_t *p;
  (void)state;
  assert_int_equal(field_at((const uint8_t[]){0x08, 0x96, 0x01}, 3, &f), 0);
  assert_true(f.number == 1 && f.type == PF_WIRE_VARINT && f.end - f.start == 3);
  assert_int_equal(field_at((const uint8_t[]){0x12, 2, 'h', 'i'}, 4, &f), 0);
  assert_true(f.number == 2 && f.len == 2 && memcmp(f.data, "hi", 2) == 0);
  assert_int_equal(field_at((const uint8_t[]){0x0d, 1, 2, 3, 4}, 5, &f), 0); /* fixed32 */
  assert_int_equal(field_at((const uint8_t[]){0x09, 1, 2, 3, 4, 5, 6, 7, 8}, 9, &f), 0);
  /* a key of five bytes is read, of six refused, as is one past 32 bits */
  assert_int_equal(field_at((const uint8_t[]){0x88, 0x80, 0x80, 0x80, 0x00, 0}, 6, &f), 0);
  assert_int_equal(field_at((const uint8_t[]){0x88, 0x80, 0x80, 0x80, 0x80, 0x00, 0}, 7, &f), -1);
  assert_int_equal(field_at((const uint8_t[]){0xf8, 0xff, 0xff, 0xff, 0x1f, 0}, 6, &f), -1);
  assert_int_equal(field_at((const uint8_t[]){0x00, 0}, 2, &f), -1);            /* field 0 */
  assert_int_equal(field_at((const uint8_t[]){0x0b, 0x0c}, 2, &f), -1);         /* a group */
  assert_int_equal(field_at((const uint8_t[]){0x0e, 0}, 2, &f), -1);            /* type 6 */
  assert_int_equal(field_at((const uint8_t[]){0x12, 3, 'h', 'i'}, 4, &f), -1);  /* cut short */
  assert_int_equal(field_at((const uint8_t[]){0x0d, 1, 2, 3}, 4, &f), -1);
  /* varints: ten bytes at most, the tenth holding bit 63 only */
  p = (const uint8_t[]){0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01};
  assert_int_equal(pf_wire_varint_get(&p, p + 10, &v), 0);
  assert_true(v == UINT64_MAX);
  p = (const uint8_t[]){0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02};
  assert_int_equal(pf_wire_varint_get(&p, p + 10, &v), -1);
  p = (const uint8_t[]){0x80, 0x80};
  assert_int_equal(pf_wire_varint_get(&p, p + 2, &v), -1);
}

/* ---- plan columns read by hand ------------------------------------------- */

/* good_plan encoded, with its PlanOps (field 12) rebuilt: every column but
 * `drop` (a field number, 0: none) as it was, then `extra` (n bytes). */
static uint8_t *ops_rebuilt(uint32_t drop, const uint8_t *extra, size_t n, size_t *out_len) {
  pf_plan *p = good_plan();
  uint8_t *buf, *out, *ops, *at;
  const uint8_t *q, *end;
  size_t len, n_ops = 0;
  pf_wire_field f, g;
  encode_plan(p, &buf, &len);
  pf_plan_free(p);
  out = malloc(2 * len + n + 16);
  ops = malloc(len + n);
  assert_true(out != NULL && ops != NULL);
  at = out;
  for (q = buf, end = buf + len; q < end;) {
    assert_int_equal(pf_wire_field_next(&q, end, &f), 0);
    if (f.number != 12) {
      memcpy(at, f.start, (size_t)(f.end - f.start));
      at += f.end - f.start;
      continue;
    }
    for (const uint8_t *r = f.data; r < f.data + f.len;) {
      assert_int_equal(pf_wire_field_next(&r, f.data + f.len, &g), 0);
      if (g.number == drop) continue;
      memcpy(ops + n_ops, g.start, (size_t)(g.end - g.start));
      n_ops += (size_t)(g.end - g.start);
    }
  }
  memcpy(ops + n_ops, extra, n);
  n_ops += n;
  at = pf_wire_field_start(at, 12, n_ops);
  memcpy(at, ops, n_ops);
  *out_len = (size_t)(at + n_ops - out);
  free(ops);
  free(buf);
  return out;
}

static void expect_refused(const uint8_t *buf, size_t len, const char *const *words) {
  pf_plan *q = (pf_plan *)&q;
  pf_diag d;
  assert_int_equal(pf_plan_decode(buf, len, 2, &q, &d), PF_EDECODE);
  assert_null(q);
  expect_words(d.msg, words);
}

/* The decoder reads PlanOps' columns itself: what it must refuse that
 * protobuf-c would accept or cut, and what it must accept that protobuf-c
 * never writes. good_plan has 6 ops; ops.peer is field 17 (sint32),
 * ops.tag field 18 (int64). */
static void plan_columns_by_hand(void **state) {
  /* 6 peers: op 0's is 2^33 zigzag-coded, past sint32 */
  static const uint8_t peer_big[] = {0x8a, 0x01, 10, 0x80, 0x80, 0x80, 0x80, 0x40, 0, 0, 0, 0, 0};
  static const uint8_t peer_cut[] = {0x8a, 0x01, 6, 0, 0, 0, 0, 0, 0x80};
  static const uint8_t tag_unpacked[] = {0x90, 0x01, 0};
  static const uint8_t tag_twice[] = {0x92, 0x01, 1, 0};
  static const uint8_t unknown[] = {0xfa, 0x07, 2, 1, 2}; /* field 127 */
  /* ops.collective (field 20, sint32): op 0's 300, an int32 that is not a
   * byte; ops.in_axis (24): op 0's -200 */
  static const uint8_t coll_wide[] = {0xa2, 0x01, 7, 0xd8, 0x04, 0, 0, 0, 0, 0};
  static const uint8_t in_axis_wide[] = {0xc2, 0x01, 7, 0x8f, 0x03, 0, 0, 0, 0, 0};
  /* an 11-byte varint */
  static const uint8_t peer_long[] = {0x8a, 0x01, 17, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80,
                                      0x80, 0x80, 0x80, 0x80, 0, 0, 0, 0, 0, 0};
  static const struct {
    uint32_t drop; /* the column replaced, or 0 */
    const uint8_t *bytes;
    size_t n;
    const char *words[4];
  } refused[] = {
      {17, peer_big, sizeof peer_big, {"op 0", "ops.peer", "out of its type's range"}},
      {17, peer_long, sizeof peer_long, {"op 0", "ops.peer", "out of its type's range"}},
      {17, peer_cut, sizeof peer_cut, {"ops.peer ends inside a number"}},
      {0, tag_unpacked, sizeof tag_unpacked, {"ops.tag is not packed"}},
      {0, tag_twice, sizeof tag_twice, {"ops.tag comes in two pieces"}},
      {20, coll_wide, sizeof coll_wide, {"op 0", "collective 300", "out of range"}},
      {24, in_axis_wide, sizeof in_axis_wide, {"op 0", "in_axis -200", "out of range"}},
  };
  const char *ops_twice[] = {"its ops come in two pieces", NULL};
  pf_plan *q = NULL;
  uint8_t *buf, *two;
  size_t len;
  (void)state;
  for (size_t k = 0; k < sizeof refused / sizeof *refused; k++) {
    buf = ops_rebuilt(refused[k].drop, refused[k].bytes, refused[k].n, &len);
    expect_refused(buf, len, refused[k].words);
    free(buf);
  }
  /* an unknown field is skipped, as protobuf does */
  buf = ops_rebuilt(0, unknown, sizeof unknown, &len);
  assert_int_equal(pf_plan_decode(buf, len, 2, &q, NULL), 0);
  pf_plan_free(q);
  /* PlanOps twice, the second { tag: [0] }: protobuf would merge them */
  two = malloc(len + 6);
  assert_non_null(two);
  memcpy(two, buf, len);
  memcpy(two + len, (const uint8_t[]){0x62, 4, 0x92, 0x01, 1, 0}, 6);
  expect_refused(two, len + 6, ops_twice);
  free(two);
  free(buf);
}

static void plan_random(void **state) {
  uint8_t buf[512];
  uint8_t *enc;
  size_t len;
  pf_plan *p = good_plan();
  (void)state;
  rng_state = 0x5eed5eed5eedull;
  for (int i = 0; i < 4000; i++) {
    size_t n = (size_t)(rng() % sizeof buf);
    for (size_t j = 0; j < n; j++) buf[j] = (uint8_t)rng();
    plan_survives(buf, n);
  }
  /* random edits of a real plan get much deeper into the decoder */
  encode_plan(p, &enc, &len);
  for (int i = 0; i < 3000; i++) {
    uint8_t *copy = malloc(len);
    assert_non_null(copy);
    memcpy(copy, enc, len);
    for (int k = 0; k < 1 + (int)(rng() % 4); k++)
      copy[rng() % len] = (uint8_t)rng();
    plan_survives(copy, len);
    free(copy);
  }
  free(enc);
  pf_plan_free(p);
}

static void plan_oversized(void **state) {
  uint8_t small[16] = {0};
  pf_plan *p = (pf_plan *)&p;
  pf_diag d;
  (void)state;
  /* refused from the length alone: the buffer is never read that far */
  assert_int_equal(pf_plan_decode(small, PF_WIRE_MAX_MESSAGE + (size_t)1, 4,
                                  &p, &d),
                   PF_EDECODE);
  assert_null(p);
  expect_words(d.msg, (const char *[]){"268435457", "268435456", NULL});
}

/* ---- graphs ---------------------------------------------------------------------- */

typedef struct graph_fixture {
  pf_registry *reg;
  pf_diag diag;
  pf_graph_env env;
} graph_fixture;

static int graph_setup(void **state) {
  graph_fixture *f = calloc(1, sizeof *f);
  if (f == NULL || pf_registry_create(&f->reg) != 0) return -1;
  f->env.registry = f->reg;
  f->env.num_devices[PF_DEVICE_CPU] = 4;
  f->env.diag = &f->diag;
  *state = f;
  return 0;
}

static int graph_teardown(void **state) {
  graph_fixture *f = *state;
  pf_registry_destroy(f->reg);
  free(f);
  return 0;
}

static void add_program(pf_graph *g, const char *name, const char *kernel,
                        pf_attrs *attrs, int32_t slice, int n_in,
                        const int32_t *in, const pf_sharding *sh, int n_out,
                        const int32_t *out) {
  pf_gprogram p;
  memset(&p, 0, sizeof p);
  p.name = (char *)name;
  p.kernel = (char *)kernel;
  p.attrs = attrs;
  p.slice = slice;
  p.n_in = n_in;
  p.in = (int32_t *)in;
  p.in_shardings = (pf_sharding *)sh;
  p.n_out = n_out;
  p.out = (int32_t *)out;
  assert_int_equal(pf_graph_add_program(g, &p), 0);
}

static void add_value(pf_graph *g, pf_spec spec, int32_t slice,
                      pf_sharding sh, int32_t producer, int index) {
  pf_gvalue v;
  memset(&v, 0, sizeof v);
  v.spec = &spec;
  v.slice = slice;
  v.sharding = sh;
  v.producer = producer;
  v.output_index = index;
  assert_int_equal(pf_graph_add_value(g, &v), 0);
}

/* slices: 0 = 2 cpus, 1 = 2 cpus pinned to {1, 3}
 * values: v0 input x, v1 = mm.0, v2 = two.0, v3 = two.1
 * programs: mm(v0, v0) -> v1 on slice 0; two(v1) -> v2, v3 on slice 1 */
static pf_graph *good_graph(const graph_fixture *f) {
  static const int pins[] = {1, 3};
  pf_graph *g;
  pf_gslice s0 = {PF_DEVICE_CPU, 2, NULL};
  pf_gslice s1 = {PF_DEVICE_CPU, 2, (int *)pins};
  pf_attrs *attrs = all_attrs();
  assert_int_equal(pf_graph_new(&f->env, &g), 0);
  assert_int_equal(pf_graph_add_slice(g, &s0), 0);
  assert_int_equal(pf_graph_add_slice(g, &s1), 0);
  add_value(g, pf_spec_2d(PF_F32, 4, 8), 0, pf_split(0), -1, 0);
  add_value(g, pf_spec_2d(PF_F32, 4, 4), 0, pf_replicated(), 0, 0);
  add_value(g, pf_spec_1d(PF_BF16, 6), 1, pf_split(0), 1, 0);
  add_value(g, pf_spec_scalar(PF_I64), 1, pf_replicated(), 1, 1);
  add_program(g, "mm", "matmul", attrs, 0, 2, (int32_t[]){0, 0},
              (pf_sharding[]){pf_split(0), pf_replicated()}, 1,
              (int32_t[]){1});
  add_program(g, "two", "split2", NULL, 1, 1, (int32_t[]){1},
              (pf_sharding[]){pf_split(1)}, 2, (int32_t[]){2, 3});
  assert_int_equal(pf_graph_add_named(g, 0, "x", 0), 0);
  assert_int_equal(pf_graph_add_named(g, 1, "y", 2), 0);
  assert_int_equal(pf_graph_add_named(g, 1, "z", 3), 0);
  pf_attrs_destroy(attrs);
  return g;
}

static int sharding_eq(pf_sharding a, pf_sharding b) {
  return a.kind == b.kind && a.axis == b.axis;
}

static void assert_graphs_equal(const pf_graph *a, const pf_graph *b) {
  assert_int_equal(a->n_slices, b->n_slices);
  for (size_t i = 0; i < a->n_slices; i++) {
    const pf_gslice *x = &a->slices[i], *y = &b->slices[i];
    assert_int_equal(x->kind, y->kind);
    assert_int_equal(x->num_devices, y->num_devices);
    assert_int_equal(x->pinned == NULL, y->pinned == NULL);
    if (x->pinned)
      assert_memory_equal(x->pinned, y->pinned,
                          (size_t)x->num_devices * sizeof(int));
  }
  assert_int_equal(a->n_values, b->n_values);
  for (size_t i = 0; i < a->n_values; i++) {
    const pf_gvalue *x = &a->values[i], *y = &b->values[i];
    assert_true(pf_spec_equal(x->spec, y->spec));
    assert_int_equal(x->slice, y->slice);
    assert_true(sharding_eq(x->sharding, y->sharding));
    assert_int_equal(x->producer, y->producer);
    assert_int_equal(x->output_index, y->output_index);
  }
  assert_int_equal(a->n_programs, b->n_programs);
  for (size_t i = 0; i < a->n_programs; i++) {
    const pf_gprogram *x = &a->programs[i], *y = &b->programs[i];
    assert_string_equal(x->name, y->name);
    assert_string_equal(x->kernel, y->kernel);
    assert_true(pf_attrs_equal(x->attrs, y->attrs));
    assert_int_equal(x->slice, y->slice);
    assert_int_equal(x->n_in, y->n_in);
    assert_int_equal(x->n_out, y->n_out);
    for (int j = 0; j < x->n_in; j++) {
      assert_int_equal(x->in[j], y->in[j]);
      assert_true(sharding_eq(x->in_shardings[j], y->in_shardings[j]));
    }
    for (int j = 0; j < x->n_out; j++) assert_int_equal(x->out[j], y->out[j]);
  }
  assert_int_equal(a->n_inputs, b->n_inputs);
  for (size_t i = 0; i < a->n_inputs; i++) {
    assert_string_equal(a->inputs[i].name, b->inputs[i].name);
    assert_int_equal(a->inputs[i].value, b->inputs[i].value);
  }
  assert_int_equal(a->n_outputs, b->n_outputs);
  for (size_t i = 0; i < a->n_outputs; i++) {
    assert_string_equal(a->outputs[i].name, b->outputs[i].name);
    assert_int_equal(a->outputs[i].value, b->outputs[i].value);
  }
}

/* The decoder's contract: every id of a decoded graph points somewhere. */
static void assert_graph_indices_ok(const pf_graph *g) {
  for (size_t i = 0; i < g->n_slices; i++) {
    const pf_gslice *s = &g->slices[i];
    assert_true((unsigned)s->kind < PF_DEVICE_KIND_COUNT);
    assert_true(s->num_devices >= 1 && s->num_devices <= (1 << 20));
    for (int j = 0; s->pinned && j < s->num_devices; j++)
      assert_true(s->pinned[j] >= 0);
  }
  for (size_t i = 0; i < g->n_values; i++) {
    const pf_gvalue *v = &g->values[i];
    assert_true(v->slice >= 0 && (size_t)v->slice < g->n_slices);
    assert_int_equal(pf_spec_check(v->spec), 0);
    assert_true(v->sharding.kind == PF_SHARD_REPLICATED ||
                v->sharding.kind == PF_SHARD_SPLIT);
    assert_true(v->producer >= -1 && v->producer < (int)g->n_programs);
    if (v->producer >= 0) {
      const pf_gprogram *p = &g->programs[v->producer];
      assert_true(v->output_index >= 0 && v->output_index < p->n_out);
      assert_int_equal(p->out[v->output_index], (int32_t)i);
    }
  }
  for (size_t i = 0; i < g->n_programs; i++) {
    const pf_gprogram *p = &g->programs[i];
    assert_true(p->slice >= 0 && (size_t)p->slice < g->n_slices);
    assert_true(p->n_in >= 0 && p->n_in <= PF_MAX_ARGS);
    assert_true(p->n_out >= 0 && p->n_out <= PF_MAX_ARGS);
    assert_true(p->name[0] && strlen(p->name) <= PF_NAME_MAX);
    assert_true(p->kernel[0] && strlen(p->kernel) <= PF_NAME_MAX);
    assert_non_null(p->attrs);
    for (int j = 0; j < p->n_in; j++)
      assert_true(p->in[j] >= 0 && (size_t)p->in[j] < g->n_values);
    for (int j = 0; j < p->n_out; j++) {
      assert_true(p->out[j] >= 0 && (size_t)p->out[j] < g->n_values);
      assert_int_equal(g->values[p->out[j]].producer, (int32_t)i);
    }
  }
  for (size_t i = 0; i < g->n_inputs; i++)
    assert_true(g->inputs[i].value >= 0 &&
                (size_t)g->inputs[i].value < g->n_values);
  for (size_t i = 0; i < g->n_outputs; i++)
    assert_true(g->outputs[i].value >= 0 &&
                (size_t)g->outputs[i].value < g->n_values);
}

static void graph_survives(const graph_fixture *f, const uint8_t *buf,
                           size_t len) {
  pf_graph *g = (pf_graph *)&g, *h = NULL;
  pf_diag d;
  uint8_t *a, *b;
  size_t na, nb;
  int rc = pf_graph_decode_env(&f->env, buf, len, &g, &d);
  if (rc != 0) {
    assert_null(g);
    assert_true(rc == PF_EDECODE || rc == PF_ENOMEM);
    assert_int_equal(d.code, rc);
    return;
  }
  assert_graph_indices_ok(g);
  assert_int_equal(pf_graph_encode(g, &a, &na), 0);
  assert_int_equal(pf_graph_decode_env(&f->env, a, na, &h, &d), 0);
  assert_graphs_equal(g, h);
  assert_int_equal(pf_graph_encode(h, &b, &nb), 0);
  assert_int_equal(na, nb);
  assert_memory_equal(a, b, na);
  free(a);
  free(b);
  pf_graph_destroy(h);
  pf_graph_destroy(g);
}

static void graph_roundtrip(void **state) {
  graph_fixture *f = *state;
  pf_graph *g = good_graph(f), *h = NULL;
  pf_diag d;
  uint8_t *a, *b;
  size_t na, nb;
  assert_int_equal(pf_graph_encode(g, &a, &na), 0);
  assert_int_equal(pf_graph_decode_env(&f->env, a, na, &h, &d), 0);
  assert_non_null(h);
  assert_graphs_equal(g, h);
  assert_graph_indices_ok(h);
  assert_ptr_equal(h->env.registry, f->reg);
  assert_int_equal(pf_attrs_get_int(h->programs[0].attrs, "axis", 0), -3);
  assert_int_equal(pf_attrs_count(h->programs[1].attrs), 0);
  assert_int_equal(pf_graph_encode(h, &b, &nb), 0);
  assert_int_equal(na, nb);
  assert_memory_equal(a, b, na);
  free(a);
  free(b);
  pf_graph_destroy(h);
  pf_graph_destroy(g);
}

static void graph_empty_and_args(void **state) {
  graph_fixture *f = *state;
  pf_graph *g = (pf_graph *)&g;
  pf_diag d;
  uint8_t *buf;
  size_t len;
  assert_int_equal(pf_graph_new(&f->env, &g), 0);
  assert_int_equal(pf_graph_encode(g, &buf, &len), 0);
  assert_int_equal(len, 0);
  pf_graph_destroy(g);
  assert_int_equal(pf_graph_decode_env(&f->env, buf, len, &g, &d), 0);
  assert_int_equal(g->n_programs, 0);
  pf_graph_destroy(g);
  free(buf);
  assert_int_equal(pf_graph_decode_env(&f->env, NULL, 0, &g, &d), 0);
  pf_graph_destroy(g);
  assert_int_equal(pf_graph_decode_env(NULL, NULL, 0, &g, &d), PF_EINVAL);
  assert_null(g);
  assert_int_equal(pf_graph_decode_env(&f->env, NULL, 3, &g, &d), PF_EINVAL);
  assert_int_equal(pf_graph_decode_env(&f->env, NULL, 0, NULL, &d), PF_EINVAL);
  assert_int_equal(pf_graph_encode(NULL, &buf, &len), PF_EINVAL);
}

static void graph_oversized(void **state) {
  graph_fixture *f = *state;
  uint8_t small[16] = {0};
  pf_graph *g = (pf_graph *)&g;
  pf_diag d;
  assert_int_equal(pf_graph_decode_env(&f->env, small,
                                       PF_WIRE_MAX_MESSAGE + (size_t)1, &g, &d),
                   PF_EDECODE);
  assert_null(g);
  expect_words(d.msg, (const char *[]){"268435457", "268435456", NULL});
}

typedef struct graph_rule {
  const char *name;
  void (*mutate)(Pathflow__Graph *m);
  int ok;
  const char *words[5];
} graph_rule;

#define GMUT(fn, body) \
  static void fn(Pathflow__Graph *m) { body; }

static int32_t neg_pins[2] = {1, -3};
static int32_t many_values[PF_MAX_ARGS + 1];
static Pathflow__Sharding *many_shardings[PF_MAX_ARGS + 1];
static Pathflow__Sharding repl_msg;
static Pathflow__NamedValue named_x2;
static Pathflow__NamedValue *named_two[2];
static int32_t out_77[2] = {77, 3};

static void many_inputs(void) {
  pathflow__sharding__init(&repl_msg);
  for (int i = 0; i <= PF_MAX_ARGS; i++) many_shardings[i] = &repl_msg;
}

GMUT(g_slice_kind, SET(m->slices[0]->kind, PF_DEVICE_KIND_COUNT))
GMUT(g_slice_kind_neg, SET(m->slices[0]->kind, -1))
GMUT(g_slice_zero, SET(m->slices[1]->num_devices, 0); SET(m->slices[1]->n_pinned, 0))
GMUT(g_slice_huge, SET(m->slices[0]->num_devices, (1 << 20) + 1))
GMUT(g_pinned_count, SET(m->slices[1]->n_pinned, 1))
GMUT(g_pinned_neg, SET(m->slices[1]->pinned, neg_pins))
GMUT(g_value_slice, SET(m->values[0]->slice, 5))
GMUT(g_value_slice_neg, SET(m->values[0]->slice, -1))
GMUT(g_value_dims, SET(m->values[1]->spec->n_dims, 9);
     SET(m->values[1]->spec->dims, nine))
GMUT(g_value_dtype, SET(m->values[1]->spec->dtype, 42))
GMUT(g_value_dim_neg, SET(m->values[0]->spec->dims[1], -8))
GMUT(g_value_no_spec, SET(m->values[0]->spec, NULL))
GMUT(g_value_no_sharding, SET(m->values[0]->sharding, NULL))
GMUT(g_value_sharding_kind, SET(m->values[0]->sharding->kind, 7))
GMUT(g_producer, SET(m->values[1]->producer, 7))
GMUT(g_producer_neg, SET(m->values[1]->producer, -2))
GMUT(g_output_index, SET(m->values[1]->output_index, 1))
GMUT(g_output_index_neg, SET(m->values[1]->output_index, -1))
GMUT(g_claims, SET(m->values[2]->output_index, 1))
GMUT(g_unclaimed_output, SET(m->values[3]->producer, -1))
GMUT(g_prog_name_empty, SET(m->programs[0]->name, ""))
GMUT(g_prog_name_long, SET(m->programs[0]->name, name_of(PF_NAME_MAX + 1)))
GMUT(g_prog_name_max, SET(m->programs[0]->name, name_of(PF_NAME_MAX)))
GMUT(g_kernel_empty, SET(m->programs[1]->kernel, ""))
GMUT(g_kernel_long, SET(m->programs[1]->kernel, name_of(PF_NAME_MAX + 1)))
GMUT(g_prog_slice, SET(m->programs[0]->slice, 9))
GMUT(g_prog_input, SET(m->programs[0]->inputs[1], 99))
GMUT(g_prog_input_neg, SET(m->programs[0]->inputs[0], -1))
GMUT(g_prog_output, SET(m->values[2]->producer, -1);
     SET(m->programs[1]->outputs, out_77))
GMUT(g_in_shardings, SET(m->programs[0]->n_in_shardings, 1))
GMUT(g_in_sharding_kind, SET(m->programs[0]->in_shardings[1]->kind, 5))
GMUT(g_too_many_inputs, many_inputs();
     SET(m->programs[0]->n_inputs, (size_t)PF_MAX_ARGS + 1);
     SET(m->programs[0]->inputs, many_values);
     SET(m->programs[0]->n_in_shardings, (size_t)PF_MAX_ARGS + 1);
     SET(m->programs[0]->in_shardings, many_shardings))
GMUT(g_max_inputs, many_inputs();
     SET(m->programs[0]->n_inputs, (size_t)PF_MAX_ARGS);
     SET(m->programs[0]->inputs, many_values);
     SET(m->programs[0]->n_in_shardings, (size_t)PF_MAX_ARGS);
     SET(m->programs[0]->in_shardings, many_shardings))
GMUT(g_prog_dup, SET(m->programs[1]->name, "mm"))
GMUT(g_input_dup, pathflow__named_value__init(&named_x2);
     named_x2.name = "x"; named_x2.value = 1; named_two[0] = m->inputs[0];
     named_two[1] = &named_x2; SET(m->n_inputs, 2); SET(m->inputs, named_two))
GMUT(g_output_dup, SET(m->outputs[1]->name, "y"))
GMUT(g_input_empty, SET(m->inputs[0]->name, ""))
GMUT(g_output_long, SET(m->outputs[0]->name, name_of(PF_NAME_MAX + 1)))
GMUT(g_output_value, SET(m->outputs[1]->value, 9))
GMUT(g_input_value_neg, SET(m->inputs[0]->value, -1))
GMUT(g_attr_bad, attrs_pair("k", "k"); SET(m->programs[0]->n_attrs, 2);
     SET(m->programs[0]->attrs, attr_list))

static const graph_rule graph_rules[] = {
    {"slice_kind", g_slice_kind, 0, {"slice 0", "unknown device kind 2"}},
    {"slice_kind_negative", g_slice_kind_neg, 0, {"slice 0", "device kind -1"}},
    {"slice_no_devices", g_slice_zero, 0, {"slice 1", "0 devices"}},
    {"slice_too_many_devices", g_slice_huge, 0, {"slice 0", "1048577 devices"}},
    {"pinned_count", g_pinned_count, 0, {"slice 1", "1 pinned devices", "slice of 2"}},
    {"pinned_negative", g_pinned_neg, 0, {"slice 1", "pinned device 1", "-3"}},
    {"value_slice", g_value_slice, 0, {"value 0", "slice 5"}},
    {"value_slice_negative", g_value_slice_neg, 0, {"value 0", "slice -1"}},
    {"value_nine_dims", g_value_dims, 0, {"value 1", "9 dims"}},
    {"value_dtype", g_value_dtype, 0, {"value 1", "dtype 42"}},
    {"value_negative_dim", g_value_dim_neg, 0, {"value 0", "bad spec"}},
    {"value_no_spec", g_value_no_spec, 0, {"value 0", "no spec"}},
    {"value_no_sharding", g_value_no_sharding, 0, {"value 0", "no sharding"}},
    {"value_sharding_kind", g_value_sharding_kind, 0, {"value 0", "sharding kind 7"}},
    {"producer_range", g_producer, 0, {"value 1", "producer 7"}},
    {"producer_negative", g_producer_neg, 0, {"value 1", "producer -2"}},
    {"output_index_range", g_output_index, 0, {"value 1", "output_index 1", "1 outputs"}},
    {"output_index_negative", g_output_index_neg, 0, {"value 1", "output_index -1"}},
    {"producer_inconsistent", g_claims, 0, {"value 2", "output 1 of program 1", "value 3"}},
    {"output_unclaimed", g_unclaimed_output, 0, {"program 1", "output 1 is value 3", "producer is -1"}},
    {"program_name_empty", g_prog_name_empty, 0, {"program 0", "empty name"}},
    {"program_name_long", g_prog_name_long, 0, {"program 0", "longer than 127"}},
    {"program_name_at_limit", g_prog_name_max, 1, {NULL}},
    {"kernel_empty", g_kernel_empty, 0, {"program 1", "kernel name"}},
    {"kernel_long", g_kernel_long, 0, {"program 1", "kernel name"}},
    {"program_slice", g_prog_slice, 0, {"program 0", "slice 9"}},
    {"program_input", g_prog_input, 0, {"program 0", "input 1 is value 99"}},
    {"program_input_negative", g_prog_input_neg, 0, {"program 0", "input 0 is value -1"}},
    {"program_output", g_prog_output, 0, {"program 1", "output 0 is value 77"}},
    {"in_shardings_count", g_in_shardings, 0, {"program 0", "1 in_shardings for 2 inputs"}},
    {"in_sharding_kind", g_in_sharding_kind, 0, {"program 0", "input 1", "sharding kind 5"}},
    {"too_many_inputs", g_too_many_inputs, 0, {"program 0", "1025 inputs"}},
    {"inputs_at_limit", g_max_inputs, 1, {NULL}},
    {"program_name_repeated", g_prog_dup, 0, {"program 1", "\"mm\" repeated", "program 0"}},
    {"input_name_repeated", g_input_dup, 0, {"input 1", "\"x\" repeated"}},
    {"output_name_repeated", g_output_dup, 0, {"output 1", "\"y\" repeated"}},
    {"input_name_empty", g_input_empty, 0, {"input 0", "empty name"}},
    {"output_name_long", g_output_long, 0, {"output 0", "longer than 127"}},
    {"output_value", g_output_value, 0, {"output 1", "value 9"}},
    {"input_value_negative", g_input_value_neg, 0, {"input 0", "value -1"}},
    {"program_attr", g_attr_bad, 0, {"program 0", "attr \"k\" repeated"}},
};

static graph_fixture *rule_fixture;

static void graph_rule_test(void **state) {
  const graph_rule *r = *state;
  graph_fixture *f = rule_fixture;
  pf_graph *g = good_graph(f), *h = (pf_graph *)&h;
  Pathflow__Graph *m;
  pf_diag d;
  uint8_t *buf, *buf2;
  size_t len, len2;
  int rc;
  assert_int_equal(pf_graph_encode(g, &buf, &len), 0);
  m = pathflow__graph__unpack(NULL, len, buf);
  assert_non_null(m);
  r->mutate(m);
  len2 = pathflow__graph__get_packed_size(m);
  buf2 = malloc(len2);
  assert_non_null(buf2);
  pathflow__graph__pack(m, buf2);
  undo_edits();
  pathflow__graph__free_unpacked(m, NULL);
  rc = pf_graph_decode_env(&f->env, buf2, len2, &h, &d);
  if (r->ok) {
    assert_int_equal(rc, 0);
    assert_graph_indices_ok(h);
    pf_graph_destroy(h);
  } else {
    assert_int_equal(rc, PF_EDECODE);
    assert_null(h);
    expect_words(d.msg, r->words);
  }
  free(buf);
  free(buf2);
  pf_graph_destroy(g);
}

static void graph_truncated(void **state) {
  graph_fixture *f = *state;
  pf_graph *g = good_graph(f);
  uint8_t *buf;
  size_t len;
  assert_int_equal(pf_graph_encode(g, &buf, &len), 0);
  for (size_t n = 0; n <= len; n++) graph_survives(f, buf, n);
  free(buf);
  pf_graph_destroy(g);
}

static void graph_flipped(void **state) {
  static const uint8_t masks[] = {0x01, 0x80, 0xff, 0x7f};
  graph_fixture *f = *state;
  pf_graph *g = good_graph(f);
  uint8_t *buf;
  size_t len;
  assert_int_equal(pf_graph_encode(g, &buf, &len), 0);
  for (size_t i = 0; i < len; i++) {
    for (size_t k = 0; k < sizeof masks; k++) {
      buf[i] ^= masks[k];
      graph_survives(f, buf, len);
      buf[i] ^= masks[k];
    }
  }
  free(buf);
  pf_graph_destroy(g);
}

static void graph_random(void **state) {
  graph_fixture *f = *state;
  pf_graph *g = good_graph(f);
  uint8_t buf[512];
  uint8_t *enc;
  size_t len;
  rng_state = 0x6a09e667f3bcc908ull;
  for (int i = 0; i < 4000; i++) {
    size_t n = (size_t)(rng() % sizeof buf);
    for (size_t j = 0; j < n; j++) buf[j] = (uint8_t)rng();
    graph_survives(f, buf, n);
  }
  assert_int_equal(pf_graph_encode(g, &enc, &len), 0);
  for (int i = 0; i < 3000; i++) {
    uint8_t *copy = malloc(len);
    assert_non_null(copy);
    memcpy(copy, enc, len);
    for (int k = 0; k < 1 + (int)(rng() % 4); k++)
      copy[rng() % len] = (uint8_t)rng();
    graph_survives(f, copy, len);
    free(copy);
  }
  free(enc);
  pf_graph_destroy(g);
}

/* ---- main ------------------------------------------------------------------------- */

#define N_PLAN_RULES PF_ARRAY_LEN_(plan_rules)
#define N_PLAN_WIRE PF_ARRAY_LEN_(plan_wire_rules)
#define N_GRAPH_RULES PF_ARRAY_LEN_(graph_rules)
#define PF_ARRAY_LEN_(a) (sizeof(a) / sizeof((a)[0]))

static int run_rules(const char *group, const char *prefix, const void *rules,
                     size_t n, size_t stride, CMUnitTestFunction fn) {
  struct CMUnitTest *tests = calloc(n, sizeof *tests);
  char (*names)[96] = calloc(n, sizeof *names);
  int failed;
  if (tests == NULL || names == NULL) {
    free(tests);
    free(names);
    return 1;
  }
  for (size_t i = 0; i < n; i++) {
    const void *r = (const char *)rules + i * stride;
    /* every rule struct starts with its name */
    snprintf(names[i], sizeof names[i], "%s%s", prefix,
             *(const char *const *)r);
    tests[i].name = names[i];
    tests[i].test_func = fn;
    tests[i].initial_state = (void *)r;
  }
  failed = _cmocka_run_group_tests(group, tests, n, NULL, NULL);
  free(names);
  free(tests);
  return failed;
}

static int rule_group_setup(void **state) {
  (void)state;
  return graph_setup((void **)&rule_fixture);
}

static int rule_group_teardown(void **state) {
  (void)state;
  return graph_teardown((void **)&rule_fixture);
}

int main(void) {
  const struct CMUnitTest plan_tests[] = {
      cmocka_unit_test(plan_roundtrip),
      cmocka_unit_test(plan_tables_shared),
      cmocka_unit_test(plan_rows_found_again),
      cmocka_unit_test(plan_equal_sees_differences),
      cmocka_unit_test(plan_args),
      cmocka_unit_test(plan_reshard_pieces_share),
      cmocka_unit_test(plan_local_collective),
      cmocka_unit_test(plan_collective_shapes),
      cmocka_unit_test(wire_fields_by_hand),
      cmocka_unit_test(plan_columns_by_hand),
      cmocka_unit_test(plan_truncated),
      cmocka_unit_test(plan_flipped),
      cmocka_unit_test(plan_random),
      cmocka_unit_test(plan_oversized),
  };
  const struct CMUnitTest graph_tests[] = {
      cmocka_unit_test_setup_teardown(graph_roundtrip, graph_setup,
                                      graph_teardown),
      cmocka_unit_test_setup_teardown(graph_empty_and_args, graph_setup,
                                      graph_teardown),
      cmocka_unit_test_setup_teardown(graph_oversized, graph_setup,
                                      graph_teardown),
      cmocka_unit_test_setup_teardown(graph_truncated, graph_setup,
                                      graph_teardown),
      cmocka_unit_test_setup_teardown(graph_flipped, graph_setup,
                                      graph_teardown),
      cmocka_unit_test_setup_teardown(graph_random, graph_setup,
                                      graph_teardown),
  };
  int failed = 0;
  failed += cmocka_run_group_tests_name("plan", plan_tests, NULL, NULL);
  failed += run_rules("plan check", "check_", plan_rules, N_PLAN_RULES,
                      sizeof plan_rules[0], plan_rule_test);
  failed += run_rules("plan decode", "decode_", plan_wire_rules, N_PLAN_WIRE,
                      sizeof plan_wire_rules[0], plan_wire_rule_test);
  failed += cmocka_run_group_tests_name("graph", graph_tests, NULL, NULL);
  if (rule_group_setup(NULL) != 0) return 1;
  failed += run_rules("graph decode", "graph_", graph_rules, N_GRAPH_RULES,
                      sizeof graph_rules[0], graph_rule_test);
  rule_group_teardown(NULL);
  return failed != 0;
}
