/* pf_plan -> pathflow.Plan (the decoder is plan_decode.c).
 *
 * A plan travels column by column (see pathflow.proto, PlanOps): the
 * encoder writes each field of the buffers and of the ops into one packed
 * array, and each distinct spec, string and attribute set once.
 */
#include <stdlib.h>
#include <string.h>

#include "base/attrs_internal.h"
#include "base/mix64.h"
#include "base/spec_set.h"
#include "base/util.h"
#include "base/wire.h"
#include "pathflow/error.h"
#include "plan/plan.h"
#include "plan/plan_columns.h"

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

/* The value of the entry of hash h for which same(ctx, value) holds, or
 * NONE: a look-up that never grows the table (the write pass's, which
 * cannot fail). */
static uint32_t table_find(const index_table *t, uint64_t h,
                           int (*same)(const void *ctx, uint32_t v), const void *ctx) {
  if (t->cap == 0) return NONE;
  for (size_t at = h & (t->cap - 1); t->value[at] != NONE; at = (at + 1) & (t->cap - 1))
    if (t->hash[at] == h && same(ctx, t->value[at])) return t->value[at];
  return NONE;
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

static uint64_t spec_hash(const pf_spec *sp) { return mix((uint64_t)pf_spec_hash(sp)); }

static uint64_t string_hash(const char *s) { return mix(pf_str_hash(s)); }

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
  /* By program index: the first name its ops had, and where it went. */
  const char **program_name;
  uint32_t *program_name_at;
  size_t n_programs;
  /* Specs met lately, by address (values share specs: base/spec_set.h),
   * and their indices: a buffer's spec is hashed only on a miss. */
  struct {
    const pf_spec *spec;
    uint32_t at;
  } spec_seen[64];
  /* The row before's op name and kernel, by address, and their places. */
  const char *last_name, *last_kernel;
  uint32_t last_name_at, last_kernel_at;
  /* 0 while the tables are filled (buffers_index, ops_index), which adds
   * every spec, string and attribute set; 1 in the two passes over the
   * rows, which only find them there, each the same way from the same
   * start (rows_begin), so that both see the same values. Kept per row
   * instead, the places were 16 bytes a row: for a plan of 1.5 million
   * ops, 24 MB of fresh memory to fault in on the encoding's path. */
  int finding;
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

/* Index of spec s in Plan.specs, added if new (first pass); NONE when out
 * of memory. */
static uint32_t spec_index(encoder *e, const pf_spec *s) {
  const void *ctx[2] = {e, s};
  size_t k = pf_mix64((uintptr_t)s) % PF_ARRAY_LEN(e->spec_seen);
  uint64_t h;
  ptrdiff_t at;
  uint32_t v;
  if (e->spec_seen[k].spec == s) return e->spec_seen[k].at;
  h = spec_hash(s);
  if (e->finding) {
    v = table_find(&e->specs, h, spec_same, ctx);
  } else {
    if ((at = table_slot(&e->specs, h, spec_same, ctx)) < 0) return NONE;
    if ((v = e->specs.value[at]) == NONE) {
      v = (uint32_t)e->specs.n;
      if (pf_grow((void **)&e->spec_of, &e->cap_specs, v + 1u, sizeof *e->spec_of) != 0)
        return NONE;
      e->spec_of[v] = s;
      table_put(&e->specs, at, h, v);
    }
  }
  e->spec_seen[k].spec = s;
  return e->spec_seen[k].at = v;
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

/* Offset of string s in Plan.strings, added if new (first pass); NONE
 * when out of memory or past the message's limit. */
static uint32_t string_offset(encoder *e, const char *s) {
  const void *ctx[2] = {e, s};
  uint64_t h = string_hash(s);
  ptrdiff_t at;
  uint32_t v;
  if (e->finding) return table_find(&e->strings, h, string_same, ctx);
  if ((at = table_slot(&e->strings, h, string_same, ctx)) < 0) return NONE;
  if (e->strings.value[at] != NONE) return e->strings.value[at];
  if ((v = string_append(e, s)) != NONE) table_put(&e->strings, at, h, v);
  return v;
}

/* Offset of op name s (of program `program`) in Plan.strings. A program's
 * ops share its name, and a plan's programs mostly have names of their
 * own: the first name of each program is found by program index, and
 * appended when new, not looked up by content (hashing a million names,
 * and a cache miss in the table for each, was most of encoding a plan).
 * The scheduler copies a name once per run of ops that have it (a
 * program's transfers and its kernel may lie apart): another copy of
 * that name is told by one compare; another name of the same program
 * goes by content. */
static uint32_t name_offset(encoder *e, int32_t program, const char *s) {
  uint32_t at;
  if (program < 0 || (size_t)program >= e->n_programs) return string_offset(e, s);
  if (e->program_name[program] == s) return e->program_name_at[program];
  if (e->program_name[program] != NULL && strcmp(e->program_name[program], s) == 0)
    return e->program_name_at[program];
  if (e->program_name[program] != NULL || e->finding) return string_offset(e, s);
  if ((at = string_append(e, s)) != NONE) {
    e->program_name[program] = s;
    e->program_name_at[program] = at;
  }
  return at;
}

/* Room for name_offset's look-up by program, where the programs' indices
 * are not far above the plan's op count (else names go by content), and
 * for Plan.strings: the programs' first names, counted here, plus some
 * room for the rest. Grown by doubling from nothing, its copies wrote as
 * much fresh memory again as the names (a million programs: 18 MB of
 * names, 17 MB of copies). Returns PF_ENOMEM when the strings' memory
 * could not be had; without memory for the look-up, it is left off (the
 * names then go by content, which only costs time). */
static int programs_prepare(encoder *e) {
  const pf_plan *p = e->plan;
  int32_t top = -1;
  size_t bytes = 0;
  for (uint32_t i = 0; i < p->n_ops; i++)
    if (p->ops[i].program > top) top = p->ops[i].program;
  if (top < 0 || (size_t)top > 4 * (size_t)p->n_ops + 1024) return 0;
  e->program_name = pf_calloc((size_t)top + 1, sizeof *e->program_name);
  e->program_name_at = pf_mallocn((size_t)top + 1, sizeof *e->program_name_at);
  if (e->program_name == NULL || e->program_name_at == NULL) return 0;
  e->n_programs = (size_t)top + 1;
  for (uint32_t i = 0; i < p->n_ops; i++) {
    const pf_plan_op *op = &p->ops[i];
    if (op->program < 0 || e->program_name[op->program] != NULL) continue;
    e->program_name[op->program] = op->name != NULL ? op->name : "";
    bytes += strlen(e->program_name[op->program]) + 1;
  }
  memset(e->program_name, 0, e->n_programs * sizeof *e->program_name);
  bytes += 4096 + bytes / 16;
  if (bytes > PF_WIRE_MAX_MESSAGE) return 0; /* string_append refuses */
  if ((e->blob = pf_mallocn(bytes, 1)) == NULL) return PF_ENOMEM;
  e->blob_cap = bytes;
  return 0;
}

/* 1 + the index of attribute set a in Plan.attr_sets (added if new, in
 * the first pass), 0 for none or an empty set; NONE when out of memory.
 * By content: programs built one by one hold equal sets of their own,
 * which would otherwise each go once. */
static uint32_t attrs_index(encoder *e, const pf_attrs *a) {
  const void *ctx[2] = {e, a};
  uint64_t h;
  ptrdiff_t at;
  uint32_t v;
  /* Kernel ops with a set between transfers with none: NULL first, so
   * that the set before stays the one remembered. */
  if (a == NULL) return 0;
  if (a == e->last_attrs) return e->last_attrs_at;
  if (pf_attrs_count(a) == 0) return 0;
  h = mix(pf_attrs_hash(a));
  if (e->finding) {
    v = table_find(&e->attr_sets, h, attrs_same, ctx);
  } else if ((at = table_slot(&e->attr_sets, h, attrs_same, ctx)) < 0) {
    return NONE;
  } else if (e->attr_sets.value[at] != NONE) {
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

/* The buffers' specs into their table. */
static int buffers_index(encoder *e) {
  const pf_plan *p = e->plan;
  for (uint32_t i = 0; i < p->n_buffers; i++) {
    const pf_spec *sp = p->buffers[i].spec;
    if (sp == NULL) return PF_EINVAL; /* pf_plan_check refuses it */
    if (sp->rank < 0 || sp->rank > PF_MAX_RANK) return PF_EINVAL;
    if (spec_index(e, sp) == NONE) return PF_ENOMEM;
  }
  return 0;
}

/* Before each pass over the rows: what the row before left is forgotten
 * (the tables are full from here on). */
static void rows_begin(encoder *e) {
  e->finding = 1;
  e->last_name = e->last_kernel = NULL;
  e->last_attrs = NULL;
}

/* Buffer i's row (either pass). */
static void buffer_row(encoder *e, uint32_t i) {
  const pf_plan_buffer *b = &e->plan->buffers[i];
  columns *c = &e->buffers;
  put(c, BC_SPEC, spec_index(e, b->spec));
  put(c, BC_DEVICE, int32_wire(b->device));
  put(c, BC_INPUT, sint32_wire(b->input));
  put(c, BC_OUTPUT, sint32_wire(b->output));
  put(c, BC_SHARD, sint32_wire(b->shard));
  put(c, BC_IN_ARENA, b->in_arena != 0);
  put(c, BC_OFFSET, b->in_arena ? (uint64_t)b->offset : 0);
  put(c, BC_HOST, b->host != 0);
}

/* The ops' names, kernels and attribute sets into their tables. Every op's
 * name goes through name_offset (a compare, for the ops after a program's
 * first), so that the rows find each there. */
static int ops_index(encoder *e) {
  const pf_plan *p = e->plan;
  const char *last_kernel = NULL;
  if (programs_prepare(e) != 0) return PF_ENOMEM;
  for (uint32_t i = 0; i < p->n_ops; i++) {
    const pf_plan_op *op = &p->ops[i];
    if ((op->n_in && !op->inputs) || (op->n_out && !op->outputs) || (op->n_deps && !op->deps))
      return PF_EINVAL;
    if (op->box != NULL && (op->box->rank < 0 || op->box->rank > PF_MAX_RANK)) return PF_EINVAL;
    if (name_offset(e, op->program, op->name != NULL ? op->name : "") == NONE) return PF_ENOMEM;
    /* Kernels by the one before, by address: a plan has a handful. */
    if (op->kernel != NULL && op->kernel != last_kernel) {
      if (string_offset(e, op->kernel) == NONE) return PF_ENOMEM;
      last_kernel = op->kernel;
    }
    if (attrs_index(e, op->attrs) == NONE) return PF_ENOMEM;
  }
  return 0;
}

/* In the rows: op's name's place in Plan.strings. The ops of a program
 * share its name: the row before's, by address, spares the look-up. */
static uint32_t name_place(encoder *e, const pf_plan_op *op) {
  const char *name = op->name != NULL ? op->name : "";
  if (name != e->last_name) {
    e->last_name_at = name_offset(e, op->program, name);
    e->last_name = name;
  }
  return e->last_name_at;
}

/* In the rows: 1 + op's kernel's place in Plan.strings, 0 for none. */
static uint32_t kernel_place(encoder *e, const pf_plan_op *op) {
  if (op->kernel == NULL) return 0;
  if (op->kernel != e->last_kernel) {
    e->last_kernel_at = string_offset(e, op->kernel) + 1;
    e->last_kernel = op->kernel;
  }
  return e->last_kernel_at;
}

/* Op i's row (either pass). */
static void op_row(encoder *e, uint32_t i) {
  const pf_plan_op *op = &e->plan->ops[i];
  columns *c = &e->ops;
  int r = op->box != NULL ? op->box->rank : 0;
  put(c, OC_KIND, int32_wire((int32_t)op->kind));
  put(c, OC_DEVICE, int32_wire(op->device));
  put(c, OC_PROGRAM, sint32_wire(op->program));
  put(c, OC_NAME, name_place(e, op));
  put(c, OC_SHARD, sint32_wire(op->shard));
  put(c, OC_NUM_SHARDS, sint32_wire(op->num_shards));
  put(c, OC_KERNEL, kernel_place(e, op));
  put(c, OC_ATTRS, attrs_index(e, op->attrs));
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
  rows_begin(e);
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
  rows_begin(e);
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
  if ((*buf = pf_mallocn(*len ? *len : 1, 1)) == NULL) {
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
