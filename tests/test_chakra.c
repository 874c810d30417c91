/* Chakra execution traces (sim/chakra.c): a written trace reads back the
 * same; attribute values of every integer kind are read; hostile traces are
 * errors naming the file and the node, never a crash. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "proto/chakra.pb-c.h"
#include "sim/chakra.h"

/* ---- building raw traces ------------------------------------------------------------------ */

typedef struct raw {
  uint8_t buf[4096];
  size_t len;
} raw;

static void raw_varint(raw *r, uint64_t v) {
  do {
    r->buf[r->len++] = (uint8_t)((v & 0x7f) | (v > 0x7f ? 0x80 : 0));
    v >>= 7;
  } while (v);
}

static void raw_message(raw *r, const ProtobufCMessage *m) {
  size_t n = protobuf_c_message_get_packed_size(m);
  assert_true(r->len + n + 10 < sizeof r->buf);
  raw_varint(r, n);
  r->len += protobuf_c_message_pack(m, r->buf + r->len);
}

static void raw_metadata(raw *r) {
  Chakra__GlobalMetadata meta = CHAKRA__GLOBAL_METADATA__INIT;
  meta.version = "0.0.4";
  raw_message(r, &meta.base);
}

/* A node with up to 4 attributes given as (name, value case, value). */
typedef struct attr_spec {
  const char *name;
  Chakra__Attribute__ValueCase kind;
  int64_t v;
} attr_spec;

static void raw_node(raw *r, uint64_t id, const char *name, int type, const uint64_t *deps,
                     size_t n_deps, const attr_spec *attrs, size_t n_attrs) {
  Chakra__Node m = CHAKRA__NODE__INIT;
  Chakra__Attribute a[4], *ap[4];
  m.id = id;
  m.name = (char *)name;
  m.type = (Chakra__NodeType)type;
  m.data_deps = (uint64_t *)deps;
  m.n_data_deps = n_deps;
  for (size_t k = 0; k < n_attrs; k++) {
    chakra__attribute__init(&a[k]);
    a[k].name = (char *)attrs[k].name;
    a[k].value_case = attrs[k].kind;
    switch (attrs[k].kind) {
      case CHAKRA__ATTRIBUTE__VALUE_INT32_VAL: a[k].int32_val = (int32_t)attrs[k].v; break;
      case CHAKRA__ATTRIBUTE__VALUE_INT64_VAL: a[k].int64_val = attrs[k].v; break;
      case CHAKRA__ATTRIBUTE__VALUE_UINT32_VAL: a[k].uint32_val = (uint32_t)attrs[k].v; break;
      case CHAKRA__ATTRIBUTE__VALUE_UINT64_VAL: a[k].uint64_val = (uint64_t)attrs[k].v; break;
      case CHAKRA__ATTRIBUTE__VALUE_SINT32_VAL: a[k].sint32_val = (int32_t)attrs[k].v; break;
      case CHAKRA__ATTRIBUTE__VALUE_SINT64_VAL: a[k].sint64_val = attrs[k].v; break;
      case CHAKRA__ATTRIBUTE__VALUE_FIXED32_VAL: a[k].fixed32_val = (uint32_t)attrs[k].v; break;
      case CHAKRA__ATTRIBUTE__VALUE_FIXED64_VAL: a[k].fixed64_val = (uint64_t)attrs[k].v; break;
      case CHAKRA__ATTRIBUTE__VALUE_SFIXED32_VAL: a[k].sfixed32_val = (int32_t)attrs[k].v; break;
      case CHAKRA__ATTRIBUTE__VALUE_SFIXED64_VAL: a[k].sfixed64_val = attrs[k].v; break;
      case CHAKRA__ATTRIBUTE__VALUE_BOOL_VAL: a[k].bool_val = attrs[k].v != 0; break;
      case CHAKRA__ATTRIBUTE__VALUE_DOUBLE_VAL: a[k].double_val = (double)attrs[k].v; break;
      default: fail_msg("attribute kind %d not built here", (int)attrs[k].kind);
    }
    ap[k] = &a[k];
  }
  m.attr = ap;
  m.n_attr = n_attrs;
  raw_message(r, &m.base);
}

/* Decodes r; expects `code` and a message containing each of the strings
 * (NULL-terminated). */
static void expect_error(const raw *r, int code, ...) {
  pf_diag d;
  pf_chakra_trace *t = NULL;
  va_list ap;
  const char *want;
  pf_diag_init(&d);
  assert_int_equal(pf_chakra_decode(r->buf, r->len, "bad.0.et", &t, &d), code);
  assert_null(t);
  assert_int_equal(d.code, code);
  va_start(ap, code);
  while ((want = va_arg(ap, const char *)) != NULL)
    if (strstr(d.msg, want) == NULL) fail_msg("message \"%s\" lacks \"%s\"", d.msg, want);
  va_end(ap);
  assert_non_null(strstr(d.msg, "bad.0.et"));
}

/* ---- tests --------------------------------------------------------------------------------- */

static void test_round_trip(void **state) {
  uint64_t deps1[] = {10}, deps2[] = {10, 11}, ctrl[] = {12};
  int64_t group[] = {0, 3, 5};
  pf_chakra_node nodes[4] = {
      {.id = 10, .name = "load", .type = PF_CHAKRA_COMP, .duration_us = 7, .num_ops = 1000,
       .tensor_size = 4096, .comm_src = -1, .comm_dst = -1, .comm_type = -1, .is_cpu_op = 1,
       .kernel = "matmul"},
      {.id = 11, .name = "send", .type = PF_CHAKRA_SEND, .n_data_deps = 1, .data_deps = deps1,
       .comm_size = 1u << 20, .comm_src = -1, .comm_dst = 3, .comm_tag = 42, .comm_type = -1,
       .is_cpu_op = -1},
      {.id = 12, .name = "recv", .type = PF_CHAKRA_RECV, .n_data_deps = 2, .data_deps = deps2,
       .comm_size = 512, .comm_src = 5, .comm_dst = -1, .comm_tag = 43, .comm_type = -1,
       .is_cpu_op = -1},
      {.id = 13, .name = "allreduce", .type = PF_CHAKRA_COLL, .n_ctrl_deps = 1,
       .ctrl_deps = ctrl, .comm_size = 814000, .comm_src = -1, .comm_dst = -1,
       .comm_type = PF_CHAKRA_ALL_REDUCE, .n_group = 3, .group = group, .is_cpu_op = 0},
  };
  pf_chakra_trace in = {.version = "pathflow", .n_nodes = 4, .nodes = nodes}, *out;
  char path[] = "/tmp/pf_chakra_XXXXXX";
  int fd = mkstemp(path);
  pf_diag d;
  (void)state;
  assert_true(fd >= 0);
  close(fd);
  pf_diag_init(&d);
  assert_int_equal(pf_chakra_write(path, &in, &d), 0);
  assert_int_equal(pf_chakra_read(path, &out, &d), 0);
  unlink(path);
  assert_string_equal(out->version, "pathflow");
  assert_int_equal(out->n_nodes, 4);
  for (int i = 0; i < 4; i++) {
    const pf_chakra_node *a = &nodes[i], *b = &out->nodes[i];
    assert_int_equal(a->id, b->id);
    assert_string_equal(a->name, b->name);
    assert_int_equal(a->type, b->type);
    assert_int_equal(a->n_data_deps, b->n_data_deps);
    assert_int_equal(a->n_ctrl_deps, b->n_ctrl_deps);
    for (uint32_t k = 0; k < a->n_data_deps; k++) assert_int_equal(a->data_deps[k], b->data_deps[k]);
    for (uint32_t k = 0; k < a->n_ctrl_deps; k++) assert_int_equal(a->ctrl_deps[k], b->ctrl_deps[k]);
    assert_int_equal(a->duration_us, b->duration_us);
    assert_int_equal(a->num_ops, b->num_ops);
    assert_int_equal(a->tensor_size, b->tensor_size);
    assert_int_equal(a->comm_size, b->comm_size);
    assert_int_equal(a->comm_src, b->comm_src);
    assert_int_equal(a->comm_dst, b->comm_dst);
    assert_int_equal(a->comm_type, b->comm_type);
    assert_int_equal(a->is_cpu_op, b->is_cpu_op);
    if (a->kernel != NULL)
      assert_string_equal(a->kernel, b->kernel);
    else
      assert_null(b->kernel);
    if (a->type == PF_CHAKRA_SEND || a->type == PF_CHAKRA_RECV)
      assert_int_equal(a->comm_tag, b->comm_tag);
    assert_int_equal(a->n_group, b->n_group);
    for (uint32_t k = 0; k < a->n_group; k++) assert_int_equal(a->group[k], b->group[k]);
  }
  pf_chakra_free(out);
}

/* comm_size written as each integer kind reads as the same number (a
 * uint64 read as 0 is the trap this guards). */
static void test_integer_kinds(void **state) {
  static const Chakra__Attribute__ValueCase kinds[] = {
      CHAKRA__ATTRIBUTE__VALUE_INT32_VAL,   CHAKRA__ATTRIBUTE__VALUE_INT64_VAL,
      CHAKRA__ATTRIBUTE__VALUE_UINT32_VAL,  CHAKRA__ATTRIBUTE__VALUE_UINT64_VAL,
      CHAKRA__ATTRIBUTE__VALUE_SINT32_VAL,  CHAKRA__ATTRIBUTE__VALUE_SINT64_VAL,
      CHAKRA__ATTRIBUTE__VALUE_FIXED32_VAL, CHAKRA__ATTRIBUTE__VALUE_FIXED64_VAL,
      CHAKRA__ATTRIBUTE__VALUE_SFIXED32_VAL, CHAKRA__ATTRIBUTE__VALUE_SFIXED64_VAL};
  (void)state;
  for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++) {
    raw r = {0};
    pf_chakra_trace *t;
    pf_diag d;
    attr_spec a[] = {{"comm_type", kinds[k], PF_CHAKRA_ALL_GATHER},
                     {"comm_size", kinds[k], 814000}};
    raw_metadata(&r);
    raw_node(&r, 1, "ag", PF_CHAKRA_COLL, NULL, 0, a, 2);
    pf_diag_init(&d);
    assert_int_equal(pf_chakra_decode(r.buf, r.len, "kinds.et", &t, &d), 0);
    assert_int_equal(t->nodes[0].comm_size, 814000);
    assert_int_equal(t->nodes[0].comm_type, PF_CHAKRA_ALL_GATHER);
    pf_chakra_free(t);
  }
}

static void test_hostile(void **state) {
  uint64_t missing[] = {99}, back[] = {2}, fwd[] = {1};
  attr_spec dst = {"comm_dst", CHAKRA__ATTRIBUTE__VALUE_INT64_VAL, 1};
  attr_spec neg = {"comm_size", CHAKRA__ATTRIBUTE__VALUE_INT64_VAL, -5};
  attr_spec notint = {"comm_src", CHAKRA__ATTRIBUTE__VALUE_DOUBLE_VAL, 1};
  attr_spec badtype = {"comm_type", CHAKRA__ATTRIBUTE__VALUE_INT64_VAL, 77};
  raw r;
  (void)state;

  r = (raw){0};
  expect_error(&r, PF_EDECODE, "empty", NULL);

  r = (raw){0};
  r.buf[r.len++] = 0x80; /* a varint that never ends */
  expect_error(&r, PF_EDECODE, "truncated length varint at byte 0", NULL);

  r = (raw){0};
  raw_metadata(&r);
  r.buf[r.len++] = 100; /* 100 bytes claimed, 1 present */
  r.buf[r.len++] = 0;
  expect_error(&r, PF_EDECODE, "claims 100 bytes, 1 are left", NULL);

  r = (raw){0};
  raw_metadata(&r);
  r.buf[r.len++] = 2;
  r.buf[r.len++] = 0xff; /* field 31, wire type 7: no such wire type */
  r.buf[r.len++] = 0xff;
  expect_error(&r, PF_EDECODE, "is not a Node", NULL);

  r = (raw){0};
  raw_metadata(&r);
  raw_node(&r, 7, "mystery", 42, NULL, 0, NULL, 0);
  expect_error(&r, PF_EDECODE, "node id 7 (\"mystery\")", "unknown node type 42", NULL);

  r = (raw){0};
  raw_metadata(&r);
  raw_node(&r, 1, "a", PF_CHAKRA_COMP, missing, 1, NULL, 0);
  expect_error(&r, PF_EDECODE, "node id 1 (\"a\")", "node id 99", "does not have", NULL);

  r = (raw){0};
  raw_metadata(&r);
  raw_node(&r, 0, "root", PF_CHAKRA_COMP, NULL, 0, NULL, 0);
  raw_node(&r, 1, "a", PF_CHAKRA_COMP, back, 1, NULL, 0);
  raw_node(&r, 2, "b", PF_CHAKRA_COMP, fwd, 1, NULL, 0);
  expect_error(&r, PF_ECYCLE, "on a dependency cycle", NULL);

  r = (raw){0};
  raw_metadata(&r);
  raw_node(&r, 3, "x", PF_CHAKRA_COMP, NULL, 0, NULL, 0);
  raw_node(&r, 3, "y", PF_CHAKRA_COMP, NULL, 0, NULL, 0);
  expect_error(&r, PF_EDECODE, "node id 3", "used by another node", NULL);

  r = (raw){0};
  raw_metadata(&r);
  raw_node(&r, 4, "s", PF_CHAKRA_SEND, NULL, 0, NULL, 0);
  expect_error(&r, PF_EDECODE, "node id 4 (\"s\")", "without comm_dst", NULL);

  r = (raw){0};
  raw_metadata(&r);
  raw_node(&r, 5, "c", PF_CHAKRA_COLL, NULL, 0, NULL, 0);
  expect_error(&r, PF_EDECODE, "without comm_type", NULL);

  r = (raw){0};
  raw_metadata(&r);
  raw_node(&r, 6, "s", PF_CHAKRA_SEND, NULL, 0, (attr_spec[]){dst, neg}, 2);
  expect_error(&r, PF_EDECODE, "comm_size is negative", NULL);

  r = (raw){0};
  raw_metadata(&r);
  raw_node(&r, 8, "r", PF_CHAKRA_RECV, NULL, 0, &notint, 1);
  expect_error(&r, PF_EDECODE, "comm_src is not an integer", NULL);

  r = (raw){0};
  raw_metadata(&r);
  raw_node(&r, 9, "c", PF_CHAKRA_COLL, NULL, 0, &badtype, 1);
  expect_error(&r, PF_EDECODE, "unknown comm_type 77", NULL);
}

static void test_missing_file(void **state) {
  pf_diag d;
  pf_chakra_trace *t = NULL;
  (void)state;
  pf_diag_init(&d);
  assert_int_equal(pf_chakra_read("/nonexistent/trace.0.et", &t, &d), PF_ESYS);
  assert_non_null(strstr(d.msg, "/nonexistent/trace.0.et"));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_round_trip),
      cmocka_unit_test(test_integer_kinds),
      cmocka_unit_test(test_hostile),
      cmocka_unit_test(test_missing_file),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
