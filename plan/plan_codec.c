/* pf_plan <-> pathflow.Plan.
 *
 * A plan travels column by column (see pathflow.proto, PlanOps): the
 * encoder writes each field of the buffers and of the ops into one packed
 * array, and each distinct spec, string and attribute set once; the decoder
 * checks that the columns agree (lengths, list totals, indices into the
 * shared tables), converts field by field with range checks, then hands
 * the result to pf_plan_check, which owns every cross-reference rule. The
 * plan is freed on any error.
 */
#include <stdlib.h>
#include <string.h>

#include "base/attrs_internal.h"
#include "base/util.h"
#include "base/wire.h"
#include "pathflow/error.h"
#include "plan/plan.h"

#define MAX_LIST (1u << 20) /* inputs, outputs or deps of one op */
#define NONE UINT32_MAX

/* ---- distinct things, by hash ---------------------------------------------- */

/* An open-addressing table of indices (or offsets) of distinct things, with
 * their hashes, grown at half full. The caller compares the candidates:
 * the table knows nothing of what it indexes. */
typedef struct index_table {
  uint32_t *value; /* NONE: an empty slot */
  uint64_t *hash;
  size_t cap, n;
} index_table;

static void table_free(index_table *t) {
  free(t->value);
  free(t->hash);
}

static int table_grow(index_table *t) {
  size_t cap = t->cap ? 2 * t->cap : 64;
  uint32_t *value = pf_mallocn(cap, sizeof *value);
  uint64_t *hash = pf_mallocn(cap, sizeof *hash);
  if (value == NULL || hash == NULL) {
    free(value);
    free(hash);
    return PF_ENOMEM;
  }
  memset(value, 0xff, cap * sizeof *value);
  for (size_t i = 0; i < t->cap; i++) {
    size_t at;
    if (t->value[i] == NONE) continue;
    for (at = t->hash[i] & (cap - 1); value[at] != NONE; at = (at + 1) & (cap - 1)) {
    }
    value[at] = t->value[i];
    hash[at] = t->hash[i];
  }
  table_free(t);
  t->value = value;
  t->hash = hash;
  t->cap = cap;
  return 0;
}

/* The slot where an entry of hash h for which same(ctx, value) holds lies,
 * or the empty slot where it would go (t->value[slot] == NONE). -1 when out
 * of memory. */
static ptrdiff_t table_slot(index_table *t, uint64_t h, int (*same)(const void *ctx, uint32_t v),
                            const void *ctx) {
  size_t at;
  if (2 * (t->n + 1) > t->cap && table_grow(t) != 0) return -1;
  for (at = h & (t->cap - 1); t->value[at] != NONE; at = (at + 1) & (t->cap - 1))
    if (t->hash[at] == h && same(ctx, t->value[at])) break;
  return (ptrdiff_t)at;
}

static void table_put(index_table *t, ptrdiff_t slot, uint64_t h, uint32_t v) {
  t->value[slot] = v;
  t->hash[slot] = h;
  t->n++;
}

static uint64_t mix(uint64_t h) {
  h ^= h >> 33;
  h *= 0xff51afd7ed558ccdull;
  return h ^ (h >> 33);
}

static uint64_t spec_hash(const pf_spec *sp) {
  uint64_t h = 1469598103934665603ull ^ ((uint64_t)sp->dtype << 8 | (uint64_t)sp->rank);
  for (int k = 0; k < sp->rank; k++) h = (h ^ (uint64_t)sp->dims[k]) * 1099511628211ull;
  return mix(h);
}

static uint64_t string_hash(const char *s) {
  uint64_t h = 1469598103934665603ull;
  for (; *s; s++) h = (h ^ (uint8_t)*s) * 1099511628211ull;
  return mix(h);
}

/* ---- encoder -------------------------------------------------------------- */

/* The buffers' and the ops' columns are written by hand, straight into
 * the message: protobuf-c would want each column as an array first (for a
 * plan of 1.5 million ops, 210 MB of fresh memory to fault in and zero
 * before the 80 MB message, most of the encoding's time on a virtual
 * machine). A packed repeated field is its key, its length in bytes and
 * its values as varints: what protobuf-c writes, and what it reads back in
 * pf_plan_decode. The rest of the plan (its header, the shared tables,
 * slots and communicators) goes through protobuf-c; a message's fields may
 * come in any order. */

/* PlanBuffers' columns, by field number - 1 (pathflow.proto). */
enum { BC_SPEC, BC_DEVICE, BC_INPUT, BC_OUTPUT, BC_SHARD, BC_IN_ARENA, BC_OFFSET, BC_HOST, BC_N };
/* PlanOps' columns, by field number - 1. */
enum {
  OC_KIND, OC_DEVICE, OC_PROGRAM, OC_NAME, OC_SHARD, OC_NUM_SHARDS, OC_KERNEL, OC_ATTRS,
  OC_INPUT_COUNT, OC_INPUTS, OC_OUTPUT_COUNT, OC_OUTPUTS, OC_DEP_COUNT, OC_DEPS, OC_BOX_RANK,
  OC_BOXES, OC_PEER, OC_TAG, OC_COMM, OC_COLLECTIVE, OC_REDUCE_OP, OC_AXIS, OC_ROOT, OC_IN_AXIS,
  OC_N
};
#define PLAN_BUFFERS_FIELD 11
#define PLAN_OPS_FIELD 12

/* The varints of the field types: int32 is sign-extended (a negative one
 * takes ten bytes), sint32 zigzag-coded. */
static uint64_t int32_wire(int32_t v) { return (uint64_t)(int64_t)v; }
static uint64_t sint32_wire(int32_t v) {
  return (uint64_t)(((uint32_t)v << 1) ^ (uint32_t)(v >> 31));
}

/* Where each column's values go: two passes over the rows, the first
 * adding up each column's length, the second writing each at its place. */
typedef struct columns {
  int writing;
  size_t len[OC_N];
  uint8_t *at[OC_N];
} columns;

static void put(columns *c, int col, uint64_t v) {
  if (c->writing)
    c->at[col] = pf_wire_varint_put(c->at[col], v);
  else
    c->len[col] += pf_wire_varint_len(v);
}

/* Bytes of a packed field holding n bytes (0: left out, as an empty
 * packed field is). */
static size_t field_len(int field, size_t n) { return n == 0 ? 0 : pf_wire_field_len(field, n); }

/* After the first pass: the columns' fields laid out from p (keys and
 * lengths written, each column's cursor at its values); returns the end. */
static uint8_t *columns_place(columns *c, int n_cols, uint8_t *p) {
  for (int k = 0; k < n_cols; k++) {
    if (c->len[k] == 0) continue;
    c->at[k] = p = pf_wire_field_start(p, k + 1, c->len[k]);
    p += c->len[k];
  }
  c->writing = 1;
  return p;
}

static size_t columns_len(const columns *c, int n_cols) {
  size_t n = 0;
  for (int k = 0; k < n_cols; k++) n += field_len(k + 1, c->len[k]);
  return n;
}

struct pf_plan_writer {
  pf_wire_arena arena; /* head's messages */
  Pathflow__Plan head; /* the plan but its columns, for protobuf-c */
  const pf_plan *plan;
  size_t body_b, body_o; /* PlanBuffers' and PlanOps' bytes */
  index_table specs, strings, attr_sets;
  const pf_spec **spec_of;   /* the distinct specs, in table order */
  const pf_attrs **attrs_of; /* the distinct attribute sets */
  const pf_attrs *last_attrs; /* the set before, and its index + 1 */
  uint32_t last_attrs_at;
  size_t cap_specs, cap_attrs;
  char *blob; /* Plan.strings */
  size_t blob_len, blob_cap;
  /* By program index: the name its ops had last, and where it went. */
  const char **program_name;
  uint32_t *program_name_at;
  size_t n_programs;
  /* Per buffer its spec's index; per op its name's offset, 1 + its
   * kernel's and 1 + its attribute set's index (0: none): found in the
   * first pass, written in the second. */
  uint32_t *spec_at, *name_at, *kernel_at, *attrs_at;
  columns buffers, ops;
};
typedef struct pf_plan_writer encoder;

static int spec_same(const void *ctx, uint32_t v) {
  const encoder *e = ((const void *const *)ctx)[0];
  return pf_spec_equal(e->spec_of[v], ((const void *const *)ctx)[1]);
}

static int string_same(const void *ctx, uint32_t v) {
  const encoder *e = ((const void *const *)ctx)[0];
  return strcmp(e->blob + v, ((const void *const *)ctx)[1]) == 0;
}

static int attrs_same(const void *ctx, uint32_t v) {
  const encoder *e = ((const void *const *)ctx)[0];
  return pf_attrs_identical(e->attrs_of[v], ((const void *const *)ctx)[1]);
}

/* Index of spec s in Plan.specs, added if new; NONE when out of memory. */
static uint32_t spec_index(encoder *e, const pf_spec *s) {
  const void *ctx[2] = {e, s};
  uint64_t h = spec_hash(s);
  ptrdiff_t at = table_slot(&e->specs, h, spec_same, ctx);
  uint32_t v;
  if (at < 0) return NONE;
  if (e->specs.value[at] != NONE) return e->specs.value[at];
  v = (uint32_t)e->specs.n;
  if (pf_grow((void **)&e->spec_of, &e->cap_specs, v + 1u, sizeof *e->spec_of) != 0) return NONE;
  e->spec_of[v] = s;
  table_put(&e->specs, at, h, v);
  return v;
}

/* Appends string s to Plan.strings: its offset, or NONE when out of
 * memory or past the message's limit. */
static uint32_t string_append(encoder *e, const char *s) {
  size_t n = strlen(s) + 1;
  uint32_t v = (uint32_t)e->blob_len;
  if (e->blob_len + n > PF_WIRE_MAX_MESSAGE ||
      pf_grow((void **)&e->blob, &e->blob_cap, e->blob_len + n, 1) != 0)
    return NONE;
  memcpy(e->blob + v, s, n);
  e->blob_len += n;
  return v;
}

/* Offset of string s in Plan.strings, added if new; NONE when out of
 * memory or past the message's limit. */
static uint32_t string_offset(encoder *e, const char *s) {
  const void *ctx[2] = {e, s};
  uint64_t h = string_hash(s);
  ptrdiff_t at = table_slot(&e->strings, h, string_same, ctx);
  uint32_t v;
  if (at < 0) return NONE;
  if (e->strings.value[at] != NONE) return e->strings.value[at];
  if ((v = string_append(e, s)) != NONE) table_put(&e->strings, at, h, v);
  return v;
}

/* Offset of op name s (of program `program`) in Plan.strings. A program's
 * ops share its name, and a plan's programs mostly have names of their
 * own: found by program index, and a new one appended, not looked up by
 * content (hashing a million names, and a cache miss in the table for
 * each, was most of encoding a plan). */
static uint32_t name_offset(encoder *e, int32_t program, const char *s) {
  uint32_t at;
  if (program < 0 || (size_t)program >= e->n_programs) return string_offset(e, s);
  if (e->program_name[program] == s) return e->program_name_at[program];
  if ((at = string_append(e, s)) != NONE) {
    e->program_name[program] = s;
    e->program_name_at[program] = at;
  }
  return at;
}

/* Room for name_offset's look-up by program, where the programs' indices
 * are not far above the plan's op count (else names go by content). */
static void programs_prepare(encoder *e) {
  const pf_plan *p = e->plan;
  int32_t top = -1;
  for (uint32_t i = 0; i < p->n_ops; i++)
    if (p->ops[i].program > top) top = p->ops[i].program;
  if (top < 0 || (size_t)top > 4 * (size_t)p->n_ops + 1024) return;
  e->program_name = pf_calloc((size_t)top + 1, sizeof *e->program_name);
  e->program_name_at = pf_mallocn((size_t)top + 1, sizeof *e->program_name_at);
  if (e->program_name != NULL && e->program_name_at != NULL) e->n_programs = (size_t)top + 1;
}

/* 1 + the index of attribute set a in Plan.attr_sets (added if new), 0 for
 * none or an empty set; NONE when out of memory. By content: programs
 * built one by one hold equal sets of their own, which would otherwise
 * each go once. */
static uint32_t attrs_index(encoder *e, const pf_attrs *a) {
  const void *ctx[2] = {e, a};
  uint64_t h;
  ptrdiff_t at;
  uint32_t v;
  if (a == NULL || pf_attrs_count(a) == 0) return 0;
  if (a == e->last_attrs) return e->last_attrs_at;
  h = mix(pf_attrs_hash(a));
  if ((at = table_slot(&e->attr_sets, h, attrs_same, ctx)) < 0) return NONE;
  if (e->attr_sets.value[at] != NONE) {
    v = e->attr_sets.value[at];
  } else {
    v = (uint32_t)e->attr_sets.n;
    if (pf_grow((void **)&e->attrs_of, &e->cap_attrs, v + 1u, sizeof *e->attrs_of) != 0)
      return NONE;
    e->attrs_of[v] = a;
    table_put(&e->attr_sets, at, h, v);
  }
  e->last_attrs = a;
  return e->last_attrs_at = v + 1;
}

/* First pass over the buffers: their specs' indices. */
static int buffers_index(encoder *e) {
  const pf_plan *p = e->plan;
  if (p->n_buffers && (e->spec_at = pf_mallocn(p->n_buffers, sizeof *e->spec_at)) == NULL)
    return PF_ENOMEM;
  for (uint32_t i = 0; i < p->n_buffers; i++) {
    const pf_spec *sp = p->buffers[i].spec;
    if (sp == NULL) return PF_EINVAL; /* pf_plan_check refuses it */
    if (sp->rank < 0 || sp->rank > PF_MAX_RANK) return PF_EINVAL;
    if ((e->spec_at[i] = spec_index(e, sp)) == NONE) return PF_ENOMEM;
  }
  return 0;
}

/* Buffer i's row (either pass). */
static void buffer_row(encoder *e, uint32_t i) {
  const pf_plan_buffer *b = &e->plan->buffers[i];
  columns *c = &e->buffers;
  put(c, BC_SPEC, e->spec_at[i]);
  put(c, BC_DEVICE, int32_wire(b->device));
  put(c, BC_INPUT, sint32_wire(b->input));
  put(c, BC_OUTPUT, sint32_wire(b->output));
  put(c, BC_SHARD, sint32_wire(b->shard));
  put(c, BC_IN_ARENA, b->in_arena != 0);
  put(c, BC_OFFSET, b->in_arena ? (uint64_t)b->offset : 0);
  put(c, BC_HOST, b->host != 0);
}

/* First pass over the ops: their names', kernels' and attribute sets'
 * places in the shared tables. */
static int ops_index(encoder *e) {
  const pf_plan *p = e->plan;
  const char *last_name = NULL, *last_kernel = NULL;
  uint32_t last_kernel_at = 0, n = p->n_ops;
  if (n && ((e->name_at = pf_mallocn(n, sizeof *e->name_at)) == NULL ||
            (e->kernel_at = pf_mallocn(n, sizeof *e->kernel_at)) == NULL ||
            (e->attrs_at = pf_mallocn(n, sizeof *e->attrs_at)) == NULL))
    return PF_ENOMEM;
  programs_prepare(e);
  for (uint32_t i = 0; i < n; i++) {
    const pf_plan_op *op = &p->ops[i];
    /* The ops of a program share its name, and kernels their name: the
     * string before, by address, spares the look-up. */
    const char *name = op->name != NULL ? op->name : "";
    uint32_t at;
    if ((op->n_in && !op->inputs) || (op->n_out && !op->outputs) || (op->n_deps && !op->deps))
      return PF_EINVAL;
    if (op->box != NULL && (op->box->rank < 0 || op->box->rank > PF_MAX_RANK)) return PF_EINVAL;
    if (i > 0 && name == last_name)
      e->name_at[i] = e->name_at[i - 1];
    else if ((e->name_at[i] = name_offset(e, op->program, name)) == NONE)
      return PF_ENOMEM;
    last_name = name;
    e->kernel_at[i] = 0;
    if (op->kernel != NULL && op->kernel == last_kernel) {
      e->kernel_at[i] = last_kernel_at;
    } else if (op->kernel != NULL) {
      if ((at = string_offset(e, op->kernel)) == NONE) return PF_ENOMEM;
      e->kernel_at[i] = last_kernel_at = at + 1;
      last_kernel = op->kernel;
    }
    if ((e->attrs_at[i] = attrs_index(e, op->attrs)) == NONE) return PF_ENOMEM;
  }
  return 0;
}

/* Op i's row (either pass). */
static void op_row(encoder *e, uint32_t i) {
  const pf_plan_op *op = &e->plan->ops[i];
  columns *c = &e->ops;
  int r = op->box != NULL ? op->box->rank : 0;
  put(c, OC_KIND, int32_wire((int32_t)op->kind));
  put(c, OC_DEVICE, int32_wire(op->device));
  put(c, OC_PROGRAM, sint32_wire(op->program));
  put(c, OC_NAME, e->name_at[i]);
  put(c, OC_SHARD, sint32_wire(op->shard));
  put(c, OC_NUM_SHARDS, sint32_wire(op->num_shards));
  put(c, OC_KERNEL, e->kernel_at[i]);
  put(c, OC_ATTRS, e->attrs_at[i]);
  put(c, OC_INPUT_COUNT, op->n_in);
  for (uint32_t k = 0; k < op->n_in; k++) put(c, OC_INPUTS, op->inputs[k]);
  put(c, OC_OUTPUT_COUNT, op->n_out);
  for (uint32_t k = 0; k < op->n_out; k++) put(c, OC_OUTPUTS, op->outputs[k]);
  put(c, OC_DEP_COUNT, op->n_deps);
  for (uint32_t k = 0; k < op->n_deps; k++) put(c, OC_DEPS, op->deps[k]);
  put(c, OC_BOX_RANK, (uint64_t)r);
  for (int k = 0; k < r; k++) put(c, OC_BOXES, (uint64_t)op->box->src_offset[k]);
  for (int k = 0; k < r; k++) put(c, OC_BOXES, (uint64_t)op->box->dst_offset[k]);
  for (int k = 0; k < r; k++) put(c, OC_BOXES, (uint64_t)op->box->extent[k]);
  put(c, OC_PEER, sint32_wire(op->peer));
  put(c, OC_TAG, (uint64_t)op->tag);
  put(c, OC_COMM, sint32_wire(op->comm));
  put(c, OC_COLLECTIVE, sint32_wire(op->collective));
  put(c, OC_REDUCE_OP, sint32_wire(op->reduce_op));
  put(c, OC_AXIS, sint32_wire(op->axis));
  put(c, OC_ROOT, sint32_wire(op->root));
  put(c, OC_IN_AXIS, sint32_wire(op->in_axis));
}

/* The plan but its columns, for protobuf-c: header, shared tables, output
 * slots, communicators. */
static int head_build(encoder *e) {
  const pf_plan *p = e->plan;
  Pathflow__Plan *m = &e->head;
  pf_wire_arena *a = &e->arena;
  int rc;
  m->executable = p->executable;
  m->rank = p->rank;
  m->num_devices = p->num_devices;
  m->num_inputs = p->num_inputs;
  m->num_outputs = p->num_outputs;
  if ((p->n_slots && !p->slots) || (p->n_comms && !p->comms)) return PF_EINVAL;
  if (p->arena_bytes != NULL) {
    m->n_arena_bytes = (size_t)p->num_devices;
    m->arena_bytes = p->arena_bytes;
  }
  m->n_specs = e->specs.n;
  m->strings.data = (uint8_t *)e->blob;
  m->strings.len = e->blob_len;
  m->n_attr_sets = e->attr_sets.n;
  if ((m->specs = pf_wire_alloc(a, e->specs.n, sizeof *m->specs)) == NULL ||
      (m->attr_sets = pf_wire_alloc(a, e->attr_sets.n, sizeof *m->attr_sets)) == NULL ||
      (m->outputs = pf_wire_alloc(a, p->n_slots, sizeof *m->outputs)) == NULL ||
      (m->comms = pf_wire_alloc(a, p->n_comms, sizeof *m->comms)) == NULL)
    return PF_ENOMEM;
  for (size_t k = 0; k < e->specs.n; k++)
    if ((rc = pf_wire_spec_encode(a, e->spec_of[k], &m->specs[k])) != 0) return rc;
  for (size_t k = 0; k < e->attr_sets.n; k++) {
    Pathflow__AttrSet *set = pf_wire_alloc(a, 1, sizeof *set);
    if (set == NULL) return PF_ENOMEM;
    pathflow__attr_set__init(set);
    if ((rc = pf_wire_attrs_encode(a, e->attrs_of[k], &set->n_attrs, &set->attrs)) != 0) return rc;
    m->attr_sets[k] = set;
  }
  for (uint32_t i = 0; i < p->n_slots; i++, m->n_outputs++) {
    Pathflow__OutputSlot *s = pf_wire_alloc(a, 1, sizeof *s);
    if (s == NULL) return PF_ENOMEM;
    pathflow__output_slot__init(s);
    s->output = p->slots[i].output;
    s->shard = p->slots[i].shard;
    s->buffer = p->slots[i].buffer;
    m->outputs[i] = s;
  }
  for (uint32_t i = 0; i < p->n_comms; i++, m->n_comms++) {
    Pathflow__Communicator *c;
    if (p->comms[i].n_ranks && !p->comms[i].ranks) return PF_EINVAL;
    if ((c = pf_wire_alloc(a, 1, sizeof *c)) == NULL) return PF_ENOMEM;
    pathflow__communicator__init(c);
    c->id = p->comms[i].id;
    c->group = p->comms[i].group;
    c->n_ranks = p->comms[i].n_ranks;
    c->ranks = p->comms[i].ranks;
    m->comms[i] = c;
  }
  return 0;
}

void pf_plan_writer_free(pf_plan_writer *e) {
  if (e == NULL) return;
  pf_wire_arena_free(&e->arena);
  table_free(&e->specs);
  table_free(&e->strings);
  table_free(&e->attr_sets);
  free(e->spec_of);
  free(e->attrs_of);
  free(e->blob);
  free(e->program_name);
  free(e->program_name_at);
  free(e->spec_at);
  free(e->name_at);
  free(e->kernel_at);
  free(e->attrs_at);
  free(e);
}

int pf_plan_measure(const pf_plan *p, pf_plan_writer **out, size_t *len) {
  encoder *e;
  int rc;
  if (out == NULL || len == NULL) return PF_EINVAL;
  *out = NULL;
  *len = 0;
  if (p == NULL || (p->n_buffers && !p->buffers) || (p->n_ops && !p->ops)) return PF_EINVAL;
  if ((e = calloc(1, sizeof *e)) == NULL) return PF_ENOMEM;
  pathflow__plan__init(&e->head);
  e->plan = p;
  if ((rc = buffers_index(e)) != 0 || (rc = ops_index(e)) != 0 || (rc = head_build(e)) != 0) {
    pf_plan_writer_free(e);
    return rc;
  }
  for (uint32_t i = 0; i < p->n_buffers; i++) buffer_row(e, i);
  for (uint32_t i = 0; i < p->n_ops; i++) op_row(e, i);
  e->body_b = columns_len(&e->buffers, BC_N);
  e->body_o = columns_len(&e->ops, OC_N);
  *len = pathflow__plan__get_packed_size(&e->head) + field_len(PLAN_BUFFERS_FIELD, e->body_b) +
         field_len(PLAN_OPS_FIELD, e->body_o);
  *out = e;
  return 0;
}

void pf_plan_write(pf_plan_writer *e, uint8_t *out) {
  const pf_plan *p = e->plan;
  uint8_t *at = out + pathflow__plan__pack(&e->head, out);
  if (e->body_b > 0) {
    at = pf_wire_field_start(at, PLAN_BUFFERS_FIELD, e->body_b);
    at = columns_place(&e->buffers, BC_N, at);
    for (uint32_t i = 0; i < p->n_buffers; i++) buffer_row(e, i);
  }
  if (e->body_o > 0) {
    at = pf_wire_field_start(at, PLAN_OPS_FIELD, e->body_o);
    columns_place(&e->ops, OC_N, at);
    for (uint32_t i = 0; i < p->n_ops; i++) op_row(e, i);
  }
  pf_plan_writer_free(e);
}

int pf_plan_encode(const pf_plan *p, uint8_t **buf, size_t *len) {
  pf_plan_writer *w;
  int rc;
  if (buf == NULL || len == NULL) return PF_EINVAL;
  *buf = NULL;
  if ((rc = pf_plan_measure(p, &w, len)) != 0) return rc;
  if ((*buf = malloc(*len ? *len : 1)) == NULL) {
    pf_plan_writer_free(w);
    *len = 0;
    return PF_ENOMEM;
  }
  /* Backed by memory in one system call, where a page fault per page cost
   * as much as the writing on a virtual machine. */
  pf_prefault(*buf, *len);
  pf_plan_write(w, *buf);
  return 0;
}

/* ---- decoder -------------------------------------------------------------- */

/* A column and its length, for the check that every column of a table has
 * one element per row. */
typedef struct column {
  const char *name;
  size_t n;
} column;

static int columns_agree(const column *c, size_t n_cols, size_t rows, const char *what,
                         pf_diag *diag) {
  for (size_t k = 0; k < n_cols; k++)
    if (c[k].n != rows)
      return pf_diag_error(diag, PF_EDECODE, "plan: %zu %s but %zu in %s.%s", rows, what, c[k].n,
                           what, c[k].name);
  return 0;
}

/* Each count at most MAX_LIST, and the counts add up to the list's length. */
static int list_agrees(const uint32_t *counts, size_t rows, size_t total, const char *name,
                       pf_diag *diag) {
  size_t sum = 0;
  for (size_t i = 0; i < rows; i++) {
    if (counts[i] > MAX_LIST)
      return pf_diag_error(diag, PF_EDECODE, "op %zu: %u %s, at most %u", i, counts[i], name,
                           MAX_LIST);
    sum += counts[i];
  }
  if (sum != total)
    return pf_diag_error(diag, PF_EDECODE, "plan: the ops' %s add up to %zu, the list has %zu",
                         name, sum, total);
  return 0;
}

static int buffers_decode(const Pathflow__Plan *m, pf_plan *p, pf_diag *diag) {
  const Pathflow__PlanBuffers *b = m->buffers;
  size_t n = b != NULL ? b->n_spec : 0;
  if (b != NULL) {
    const column cols[] = {{"device", b->n_device}, {"input", b->n_input},
                           {"output", b->n_output}, {"shard", b->n_shard},
                           {"in_arena", b->n_in_arena}, {"offset", b->n_offset},
                           {"host", b->n_host}};
    int rc = columns_agree(cols, sizeof cols / sizeof *cols, n, "buffers", diag);
    if (rc != 0) return rc;
  }
  if (n > UINT32_MAX || m->n_specs > UINT32_MAX)
    return pf_diag_error(diag, PF_EDECODE, "plan: too many buffers or specs");
  if ((p->own_specs = pf_calloc(m->n_specs, sizeof *p->own_specs)) == NULL ||
      (p->buffers = pf_arena_alloc(p->pool, n * sizeof *p->buffers)) == NULL)
    return pf_diag_error(diag, PF_ENOMEM, "plan: out of memory");
  for (size_t k = 0; k < m->n_specs; k++) {
    int rc = pf_wire_spec_decode(m->specs[k], &p->own_specs[k], diag);
    if (rc != 0) {
      pf_diag_prefix(diag, "spec %zu", k);
      return rc;
    }
  }
  pf_prefault(p->buffers, n * sizeof *p->buffers); /* as pf_plan_encode's buffer */
  memset(p->buffers, 0, n * sizeof *p->buffers);
  p->n_buffers = (uint32_t)n;
  for (size_t i = 0; i < n; i++) {
    pf_plan_buffer *pb = &p->buffers[i];
    if (b->spec[i] >= m->n_specs)
      return pf_diag_error(diag, PF_EDECODE, "buffer %zu: spec %u, the plan has %zu", i,
                           b->spec[i], m->n_specs);
    pb->spec = &p->own_specs[b->spec[i]];
    pb->device = b->device[i];
    pb->input = b->input[i];
    pb->output = b->output[i];
    pb->shard = b->shard[i];
    pb->in_arena = b->in_arena[i] ? 1 : 0;
    pb->offset = b->in_arena[i] ? b->offset[i] : 0;
    pb->host = b->host[i] ? 1 : 0;
  }
  return 0;
}

/* Plan.strings, copied into the plan's pool once (ops point into it): a
 * run of strings, each ending in a NUL byte, none longer than
 * PF_WIRE_MAX_STRING. */
static int strings_decode(const Pathflow__Plan *m, pf_plan *p, char **out, pf_diag *diag) {
  const uint8_t *s = m->strings.data;
  size_t n = m->strings.len, start = 0;
  *out = NULL;
  if (n == 0) return 0;
  if (s[n - 1] != 0)
    return pf_diag_error(diag, PF_EDECODE, "plan: its strings do not end in a NUL byte");
  for (size_t i = 0; i < n; i++) {
    if (s[i] != 0) continue;
    if (i - start > PF_WIRE_MAX_STRING)
      return pf_diag_error(diag, PF_EDECODE,
                           "plan: the string at byte %zu is longer than %d bytes", start,
                           PF_WIRE_MAX_STRING);
    start = i + 1;
  }
  if ((*out = pf_arena_dup(p->pool, s, n)) == NULL)
    return pf_diag_error(diag, PF_ENOMEM, "plan: out of memory");
  return 0;
}

/* The string at offset `at` of the plan's strings, or NULL where `at` does
 * not start one. */
static char *string_at(char *strings, size_t len, uint32_t at) {
  if (at >= len || (at > 0 && strings[at - 1] != 0)) return NULL;
  return strings + at;
}

/* Plan.attr_sets, each decoded once; sets[k] holds one reference. */
static int attr_sets_decode(const Pathflow__Plan *m, pf_attrs ***sets, pf_diag *diag) {
  if (m->n_attr_sets > UINT32_MAX - 1)
    return pf_diag_error(diag, PF_EDECODE, "plan: too many attribute sets");
  if ((*sets = pf_calloc(m->n_attr_sets, sizeof **sets)) == NULL)
    return pf_diag_error(diag, PF_ENOMEM, "plan: out of memory");
  for (size_t k = 0; k < m->n_attr_sets; k++) {
    int rc = pf_wire_attrs_decode(m->attr_sets[k]->n_attrs, m->attr_sets[k]->attrs, &(*sets)[k],
                                  diag);
    if (rc != 0) {
      pf_diag_prefix(diag, "attribute set %zu", k);
      return rc;
    }
  }
  return 0;
}

/* The lists, each column copied into the pool once, in plan order (the
 * executor reads them op after op); the ops point into them. */
static int lists_decode(const Pathflow__PlanOps *o, pf_plan *p, pf_diag *diag) {
  size_t n = p->n_ops;
  uint32_t *in, *out, *deps;
  int rc;
  if ((rc = list_agrees(o->input_count, n, o->n_inputs, "inputs", diag)) != 0 ||
      (rc = list_agrees(o->output_count, n, o->n_outputs, "outputs", diag)) != 0 ||
      (rc = list_agrees(o->dep_count, n, o->n_deps, "deps", diag)) != 0)
    return rc;
  in = pf_arena_dup(p->pool, o->inputs, o->n_inputs * sizeof *in);
  out = pf_arena_dup(p->pool, o->outputs, o->n_outputs * sizeof *out);
  deps = pf_arena_dup(p->pool, o->deps, o->n_deps * sizeof *deps);
  if (in == NULL || out == NULL || deps == NULL)
    return pf_diag_error(diag, PF_ENOMEM, "plan: out of memory");
  for (size_t i = 0; i < n; i++) {
    pf_plan_op *op = &p->ops[i];
    op->n_in = o->input_count[i];
    op->n_out = o->output_count[i];
    op->n_deps = o->dep_count[i];
    op->inputs = op->n_in ? in : NULL;
    op->outputs = op->n_out ? out : NULL;
    op->deps = op->n_deps ? deps : NULL;
    in += op->n_in;
    out += op->n_out;
    deps += op->n_deps;
  }
  return 0;
}

/* The boxes. Ops that move data always have one; others only keep one
 * they were sent (pf_plan_check judges it). Equal boxes are one copy:
 * a box is 200 bytes, and the sends and receives of a long plan repeat a
 * few. */
#define BOX_CACHE 64
static int boxes_decode(const Pathflow__PlanOps *o, pf_plan *p, pf_diag *diag) {
  pf_box *seen[BOX_CACHE] = {NULL};
  size_t sum = 0, at = 0;
  for (size_t i = 0; i < p->n_ops; i++) {
    if (o->box_rank[i] > PF_MAX_RANK)
      return pf_diag_error(diag, PF_EDECODE, "op %zu (%s): box of rank %u, at most %d", i,
                           p->ops[i].name, o->box_rank[i], PF_MAX_RANK);
    sum += 3 * (size_t)o->box_rank[i];
  }
  if (sum != o->n_boxes)
    return pf_diag_error(diag, PF_EDECODE, "plan: the ops' boxes take %zu numbers, there are %zu",
                         sum, o->n_boxes);
  for (size_t i = 0; i < p->n_ops; i++) {
    pf_plan_op *op = &p->ops[i];
    int r = (int)o->box_rank[i];
    const int64_t *v = r > 0 ? o->boxes + at : NULL;
    uint64_t h = (uint64_t)r;
    pf_box box;
    pf_box **slot;
    if (r == 0 && op->kind != PF_OP_COPY && op->kind != PF_OP_SEND && op->kind != PF_OP_RECV)
      continue;
    at += 3 * (size_t)r;
    memset(&box, 0, sizeof box);
    box.rank = r;
    for (int k = 0; k < r; k++) {
      box.src_offset[k] = v[k];
      box.dst_offset[k] = v[r + k];
      box.extent[k] = v[2 * r + k];
    }
    for (int k = 0; k < 3 * r; k++) h = (h ^ (uint64_t)v[k]) * 1099511628211ull;
    slot = &seen[mix(h) % BOX_CACHE];
    if (*slot == NULL || memcmp(*slot, &box, sizeof box) != 0) {
      pf_box *copy = pf_arena_dup(p->pool, &box, sizeof box);
      if (copy == NULL) return pf_diag_error(diag, PF_ENOMEM, "plan: out of memory");
      *slot = copy;
    }
    op->box = *slot;
  }
  return 0;
}

static int ops_decode(const Pathflow__Plan *m, pf_plan *p, pf_diag *diag) {
  const Pathflow__PlanOps *o = m->ops;
  size_t n = o != NULL ? o->n_kind : 0;
  pf_attrs **sets = NULL, *empty = NULL;
  char *strings = NULL, *no_kernel = NULL;
  int rc = 0;
  if (o != NULL) {
    const column cols[] = {{"device", o->n_device},
                           {"program", o->n_program},
                           {"name", o->n_name},
                           {"shard", o->n_shard},
                           {"num_shards", o->n_num_shards},
                           {"kernel", o->n_kernel},
                           {"attrs", o->n_attrs},
                           {"input_count", o->n_input_count},
                           {"output_count", o->n_output_count},
                           {"dep_count", o->n_dep_count},
                           {"box_rank", o->n_box_rank},
                           {"peer", o->n_peer},
                           {"tag", o->n_tag},
                           {"comm", o->n_comm},
                           {"collective", o->n_collective},
                           {"reduce_op", o->n_reduce_op},
                           {"axis", o->n_axis},
                           {"root", o->n_root},
                           {"in_axis", o->n_in_axis}};
    if ((rc = columns_agree(cols, sizeof cols / sizeof *cols, n, "ops", diag)) != 0) return rc;
  }
  if (n > UINT32_MAX) return pf_diag_error(diag, PF_EDECODE, "plan: too many ops");
  if ((p->ops = pf_arena_alloc(p->pool, n * sizeof *p->ops)) == NULL)
    return pf_diag_error(diag, PF_ENOMEM, "plan: out of memory");
  pf_prefault(p->ops, n * sizeof *p->ops);
  memset(p->ops, 0, n * sizeof *p->ops);
  p->n_ops = (uint32_t)n; /* pf_plan_free sees every op from here on */
  if (n == 0) return 0;
  if ((rc = strings_decode(m, p, &strings, diag)) != 0 ||
      (rc = attr_sets_decode(m, &sets, diag)) != 0)
    goto out;
  for (size_t i = 0; i < n; i++) {
    pf_plan_op *op = &p->ops[i];
    if ((int)o->kind[i] < PF_OP_KERNEL || (int)o->kind[i] > PF_OP_COLLECTIVE) {
      rc = pf_diag_error(diag, PF_EDECODE, "op %zu: unknown kind %d", i, (int)o->kind[i]);
      goto out;
    }
    op->kind = (pf_op_kind)o->kind[i];
    if ((op->name = string_at(strings, m->strings.len, o->name[i])) == NULL) {
      rc = pf_diag_error(diag, PF_EDECODE,
                         "op %zu: its name at byte %u is not one of the plan's strings", i,
                         o->name[i]);
      goto out;
    }
    if (op->kind != PF_OP_KERNEL) {
      /* the in-memory plan has no place for these: refuse, do not drop */
      if (o->kernel[i] != 0 || o->attrs[i] != 0) {
        rc = pf_diag_error(diag, PF_EDECODE, "op %zu (%s): kernel or attrs on a non-kernel op", i,
                           op->name);
        goto out;
      }
    } else {
      if (o->kernel[i] == 0) {
        /* No kernel named: "" (pf_plan_check refuses it), one for all. */
        if (no_kernel == NULL) no_kernel = pf_arena_strdup(p->pool, "");
        op->kernel = no_kernel;
      } else if ((op->kernel = string_at(strings, m->strings.len, o->kernel[i] - 1)) == NULL) {
        rc = pf_diag_error(diag, PF_EDECODE,
                           "op %zu (%s): its kernel at byte %u is not one of the plan's strings",
                           i, op->name, o->kernel[i] - 1);
        goto out;
      }
      if (o->attrs[i] > m->n_attr_sets) {
        rc = pf_diag_error(diag, PF_EDECODE, "op %zu (%s): attribute set %u, the plan has %zu", i,
                           op->name, o->attrs[i] - 1, m->n_attr_sets);
        goto out;
      }
      if (o->attrs[i] == 0 && empty == NULL && pf_attrs_create(&empty) != 0) empty = NULL;
      op->attrs = pf_attrs_ref(o->attrs[i] ? sets[o->attrs[i] - 1] : empty);
      if (op->kernel == NULL || op->attrs == NULL) {
        rc = pf_diag_error(diag, PF_ENOMEM, "plan: out of memory");
        goto out;
      }
    }
    op->device = o->device[i];
    op->program = o->program[i];
    op->shard = o->shard[i];
    op->num_shards = o->num_shards[i];
    op->peer = o->peer[i];
    op->tag = o->tag[i];
    op->comm = o->comm[i];
    op->collective = o->collective[i];
    op->reduce_op = o->reduce_op[i];
    op->axis = o->axis[i];
    op->root = o->root[i];
    op->in_axis = o->in_axis[i];
  }
  if ((rc = lists_decode(o, p, diag)) == 0) rc = boxes_decode(o, p, diag);
out:
  for (size_t k = 0; sets != NULL && k < m->n_attr_sets; k++) pf_attrs_destroy(sets[k]);
  free(sets);
  pf_attrs_destroy(empty);
  return rc;
}

static int plan_fill(const Pathflow__Plan *m, pf_plan *p, pf_diag *diag) {
  int rc;
  p->executable = m->executable;
  p->rank = m->rank;
  p->num_devices = m->num_devices;
  p->num_inputs = m->num_inputs;
  p->num_outputs = m->num_outputs;
  /* Ops, buffers, lists, strings and boxes in the plan's pool (see
   * `pool`): no malloc per op, and what is read together lies together. */
  if ((p->pool = calloc(1, sizeof *p->pool)) == NULL)
    return pf_diag_error(diag, PF_ENOMEM, "plan: out of memory");
  if ((rc = buffers_decode(m, p, diag)) != 0 || (rc = ops_decode(m, p, diag)) != 0) return rc;
  if (m->n_outputs > MAX_LIST || m->n_comms > MAX_LIST)
    return pf_diag_error(diag, PF_EDECODE, "plan: too many output slots or communicators");
  if ((p->slots = pf_calloc(m->n_outputs, sizeof *p->slots)) == NULL ||
      (p->comms = pf_calloc(m->n_comms, sizeof *p->comms)) == NULL)
    return pf_diag_error(diag, PF_ENOMEM, "plan: out of memory");
  if (m->n_arena_bytes != 0) {
    if (m->n_arena_bytes != (size_t)m->num_devices || m->num_devices < 1 ||
        m->num_devices > (1 << 16))
      return pf_diag_error(diag, PF_EDECODE, "plan: %zu arena sizes for %d devices",
                           m->n_arena_bytes, (int)m->num_devices);
    if ((p->arena_bytes = pf_mallocn(m->n_arena_bytes, sizeof(int64_t))) == NULL)
      return pf_diag_error(diag, PF_ENOMEM, "plan: out of memory");
    memcpy(p->arena_bytes, m->arena_bytes, m->n_arena_bytes * sizeof(int64_t));
  }
  p->n_slots = (uint32_t)m->n_outputs;
  for (uint32_t i = 0; i < p->n_slots; i++) {
    p->slots[i].output = m->outputs[i]->output;
    p->slots[i].shard = m->outputs[i]->shard;
    p->slots[i].buffer = m->outputs[i]->buffer;
  }
  for (uint32_t i = 0; i < m->n_comms; i++, p->n_comms++) {
    const Pathflow__Communicator *c = m->comms[i];
    if (c->n_ranks > MAX_LIST)
      return pf_diag_error(diag, PF_EDECODE, "plan: communicator %u too large", i);
    p->comms[i].id = c->id;
    p->comms[i].group = c->group;
    p->comms[i].n_ranks = (uint32_t)c->n_ranks;
    p->comms[i].ranks = pf_mallocn(c->n_ranks, sizeof(int32_t));
    if (p->comms[i].ranks == NULL) return pf_diag_error(diag, PF_ENOMEM, "plan: out of memory");
    if (c->n_ranks) memcpy(p->comms[i].ranks, c->ranks, c->n_ranks * sizeof(int32_t));
  }
  return 0;
}

/* protobuf-c's allocations while unpacking, from an arena freed at once
 * (the columns of a large plan: a few big blocks, on huge pages). */
static void *unpack_alloc(void *arena, size_t size) { return pf_arena_alloc(arena, size); }
static void unpack_free(void *arena, void *p) {
  (void)arena;
  (void)p;
}

int pf_plan_decode(const uint8_t *buf, size_t len, int num_devices,
                   pf_plan **out, pf_diag *diag) {
  pf_arena scratch = {0};
  ProtobufCAllocator alloc = {unpack_alloc, unpack_free, &scratch};
  Pathflow__Plan *m;
  pf_plan *p;
  int rc;
  if (out == NULL) return PF_EINVAL;
  *out = NULL;
  if (diag != NULL) pf_diag_init(diag);
  if (buf == NULL && len > 0)
    return pf_diag_error(diag, PF_EINVAL, "plan decode: NULL buffer");
  if (len > PF_WIRE_MAX_MESSAGE)
    return pf_diag_error(diag, PF_EDECODE,
                         "plan message of %zu bytes exceeds the limit of %u "
                         "bytes", len, PF_WIRE_MAX_MESSAGE);
  m = pathflow__plan__unpack(&alloc, len, buf ? buf : (const uint8_t *)"");
  if (m == NULL) {
    pf_arena_free(&scratch);
    return pf_diag_error(diag, PF_EDECODE,
                         "plan: %zu bytes are not a valid pathflow.Plan", len);
  }
  if ((p = calloc(1, sizeof *p)) == NULL) {
    pf_arena_free(&scratch);
    return pf_diag_error(diag, PF_ENOMEM, "plan: out of memory");
  }
  rc = plan_fill(m, p, diag);
  pf_arena_free(&scratch); /* the unpacked message: nothing to free one by one */
  if (rc == 0) rc = pf_plan_check(p, num_devices, diag);
  if (rc != 0) {
    pf_plan_free(p);
    return rc;
  }
  *out = p;
  return 0;
}
