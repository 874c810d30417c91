/* pathflow.Plan -> pf_plan (the encoder is plan_codec.c).
 *
 * The buffers' and the ops' columns are read by hand, straight into the
 * plan's rows, as the encoder writes them: protobuf-c would first unpack
 * every column into an array of its own (for a plan of 1.5 million ops,
 * 210 MB of fresh memory, zeroed page by page, most of the decoding's time
 * on a virtual machine). protobuf-c reads the rest of the plan (header,
 * shared tables, output slots, communicators) from a copy of the message
 * without the two column fields.
 *
 * Nothing read is trusted: the columns must agree (one number per row,
 * list counts adding up to their lists, boxes to their numbers), every
 * number must fit its field's type, indices must point into the shared
 * tables; then pf_plan_check, which owns every cross-reference rule. A
 * column must come packed and once, as protobuf-c and the encoder write
 * it (protobuf would also accept one split into pieces: refused here,
 * with a message). The plan is freed on any error.
 */
#include <stdlib.h>
#include <string.h>

#include "base/arena.h"
#include "base/attrs_internal.h"
#include "base/mix64.h"
#include "base/util.h"
#include "base/wire.h"
#include "pathflow/error.h"
#include "plan/plan.h"
#include "plan/plan_columns.h"

static const char *const buffer_columns[BC_N] = {"spec",   "device",   "input",  "output",
                                                 "shard",  "in_arena", "offset", "host"};
static const char *const op_columns[OC_N] = {
    "kind",   "device",       "program", "name",      "shard",    "num_shards", "kernel",
    "attrs",  "input_count",  "inputs",  "output_count", "outputs", "dep_count", "deps",
    "box_rank", "boxes",      "peer",    "tag",       "comm",     "collective", "reduce_op",
    "axis",   "root",         "in_axis"};

/* ---- columns ------------------------------------------------------------------ */

/* A packed column: a cursor over its varints, and how many it holds. */
typedef struct column {
  const uint8_t *p, *end;
  size_t n;
  int seen;
} column;

/* The columns of a table (PlanBuffers or PlanOps), as they are read row
 * by row; `bad` is the first column found holding a number its field's
 * type cannot take, or a varint cut short (-1: none). */
typedef struct table {
  column *col;
  const char *const *names;
  const char *what; /* "buffers", "ops" */
  int bad;
} table;

/* How many varints n bytes hold: one ends in each byte below 0x80.
 * Eight bytes at a time (a column can be tens of megabytes): each ending
 * byte's top bit, moved to the bottom of its byte, and the eight bytes
 * summed by a multiplication into the top one (at most 8: no carry). Not
 * __builtin_popcountll: without -mpopcnt (x86-64's baseline has none) it
 * is a call into libgcc per word. */
static size_t varints_in(const uint8_t *p, size_t n) {
  size_t count = 0, i = 0;
  for (; i + 8 <= n; i += 8) {
    uint64_t w;
    memcpy(&w, p + i, 8);
    count += (size_t)((((~w & 0x8080808080808080ull) >> 7) * 0x0101010101010101ull) >> 56);
  }
  for (; i < n; i++) count += p[i] < 0x80;
  return count;
}

/* Finds the table's columns in the bytes of its message; a field that is
 * not a column is skipped, as protobuf does with unknown fields. */
static int columns_find(table *t, int n_cols, const uint8_t *data, size_t len, pf_diag *diag) {
  const uint8_t *p = data, *end;
  memset(t->col, 0, (size_t)n_cols * sizeof *t->col);
  t->bad = -1;
  if (data == NULL) return 0; /* a table with no rows */
  end = data + len;
  while (p < end) {
    pf_wire_field f;
    column *c;
    if (pf_wire_field_next(&p, end, &f) != 0)
      return pf_diag_error(diag, PF_EDECODE, "plan: its %s are not a valid message", t->what);
    if (f.number > (uint32_t)n_cols) continue;
    c = &t->col[f.number - 1];
    if (f.type != PF_WIRE_LENGTH_DELIMITED)
      return pf_diag_error(diag, PF_EDECODE, "plan: %s.%s is not packed", t->what,
                           t->names[f.number - 1]);
    if (c->seen)
      return pf_diag_error(diag, PF_EDECODE, "plan: %s.%s comes in two pieces", t->what,
                           t->names[f.number - 1]);
    c->seen = 1;
    c->p = f.data;
    c->end = f.data + f.len;
    c->n = varints_in(c->p, f.len);
    if (f.len > 0 && c->end[-1] >= 0x80)
      return pf_diag_error(diag, PF_EDECODE, "plan: %s.%s ends inside a number", t->what,
                           t->names[f.number - 1]);
  }
  return 0;
}

/* Every column of `cols` holds one number per row. */
static int columns_agree(const table *t, const int *cols, size_t n_cols, size_t rows,
                         pf_diag *diag) {
  for (size_t k = 0; k < n_cols; k++)
    if (t->col[cols[k]].n != rows)
      return pf_diag_error(diag, PF_EDECODE, "plan: %zu %s but %zu in %s.%s", rows, t->what,
                           t->col[cols[k]].n, t->what, t->names[cols[k]]);
  return 0;
}

static uint64_t get_slow(table *t, int k) {
  column *c = &t->col[k];
  uint64_t v = 0;
  if (pf_wire_varint_get(&c->p, c->end, &v) != 0) {
    if (t->bad < 0) t->bad = k;
    c->p = c->end;
    return 0;
  }
  return v;
}

/* The next number of column k (0 past its end, noted in t->bad). Most
 * numbers of a plan take one byte. */
static inline uint64_t get(table *t, int k) {
  column *c = &t->col[k];
  if (c->p < c->end && *c->p < 0x80) return *c->p++;
  return get_slow(t, k);
}

static inline void out_of_range(table *t, int k) {
  if (t->bad < 0) t->bad = k;
}

/* The field types of pathflow.proto: uint32, int32 (sign-extended to 64
 * bits), sint32 (zigzag), int64, bool. A number beyond its type is refused
 * (protobuf would cut it to 32 bits). */
static inline uint32_t get_u32(table *t, int k) {
  uint64_t v = get(t, k);
  if (v > UINT32_MAX) out_of_range(t, k);
  return (uint32_t)v;
}

static inline int32_t get_i32(table *t, int k) {
  uint64_t v = get(t, k);
  if ((uint64_t)((int64_t)v - INT32_MIN) > UINT32_MAX) out_of_range(t, k);
  return (int32_t)v;
}

static inline int32_t get_s32(table *t, int k) {
  uint64_t v = get(t, k);
  uint32_t u = (uint32_t)v;
  if (v > UINT32_MAX) out_of_range(t, k);
  return (int32_t)((u >> 1) ^ (0u - (u & 1)));
}

static inline int64_t get_i64(table *t, int k) { return (int64_t)get(t, k); }

static inline int get_bool(table *t, int k) {
  uint64_t v = get(t, k);
  if (v > 1) out_of_range(t, k);
  return v != 0;
}

static int row_error(const table *t, const char *row, size_t i, pf_diag *diag) {
  return pf_diag_error(diag, PF_EDECODE, "%s %zu: %s.%s holds a number out of its type's range",
                       row, i, t->what, t->names[t->bad]);
}

/* ---- buffers ------------------------------------------------------------------ */

static int buffers_read(table *t, const Pathflow__Plan *m, pf_plan *p, pf_diag *diag) {
  static const int scalars[] = {BC_DEVICE, BC_INPUT, BC_OUTPUT, BC_SHARD,
                                BC_IN_ARENA, BC_OFFSET, BC_HOST};
  size_t n = t->col[BC_SPEC].n;
  int rc;
  if ((rc = columns_agree(t, scalars, PF_ARRAY_LEN(scalars), n, diag)) != 0) return rc;
  if (n > UINT32_MAX || m->n_specs > UINT32_MAX)
    return pf_diag_error(diag, PF_EDECODE, "plan: too many buffers or specs");
  if ((p->own_specs = pf_calloc(m->n_specs, sizeof *p->own_specs)) == NULL ||
      (p->buffers = pf_arena_alloc(p->pool, n * sizeof *p->buffers)) == NULL)
    return pf_diag_error(diag, PF_ENOMEM, "plan: out of memory");
  for (size_t k = 0; k < m->n_specs; k++)
    if ((rc = pf_wire_spec_decode(m->specs[k], &p->own_specs[k], diag)) != 0) {
      pf_diag_prefix(diag, "spec %zu", k);
      return rc;
    }
  pf_prefault(p->buffers, n * sizeof *p->buffers); /* as pf_plan_encode's buffer */
  for (size_t i = 0; i < n; i++) {
    pf_plan_buffer *pb = &p->buffers[i];
    uint32_t spec = get_u32(t, BC_SPEC);
    int in_arena;
    memset(pb, 0, sizeof *pb);
    pb->device = get_i32(t, BC_DEVICE);
    pb->input = get_s32(t, BC_INPUT);
    pb->output = get_s32(t, BC_OUTPUT);
    pb->shard = get_s32(t, BC_SHARD);
    in_arena = get_bool(t, BC_IN_ARENA);
    pb->in_arena = in_arena;
    pb->offset = get_i64(t, BC_OFFSET);
    if (!in_arena) pb->offset = 0;
    pb->host = get_bool(t, BC_HOST);
    if (t->bad >= 0) return row_error(t, "buffer", i, diag);
    if (spec >= m->n_specs)
      return pf_diag_error(diag, PF_EDECODE, "buffer %zu: spec %u, the plan has %zu", i, spec,
                           m->n_specs);
    pb->spec = &p->own_specs[spec];
  }
  p->n_buffers = (uint32_t)n;
  return 0;
}

/* ---- ops ---------------------------------------------------------------------- */

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

/* What the ops share while they are read: the tables, and where each list
 * column's values go in the plan's pool. */
typedef struct ops_reader {
  table t;
  const Pathflow__Plan *m;
  pf_plan *p;
  char *strings, *no_kernel;
  pf_attrs **sets, *empty;
  uint32_t *in, *out, *deps;
  pf_box *seen[64]; /* the boxes met last, by hash: equal boxes are one copy */
} ops_reader;

/* A count column (input_count, ..., box_rank), read once ahead of the
 * rows: each count at most `max`, and `per` numbers of column `list` per
 * unit of count adding up to that column's, so that the rows never read a
 * list past its end. */
static int counts_agree(table *t, int counts, int list, uint64_t max, size_t per,
                        pf_diag *diag) {
  column saved = t->col[counts];
  size_t sum = 0;
  for (size_t i = 0; i < saved.n; i++) {
    uint64_t v = get(t, counts);
    if (v > max)
      return pf_diag_error(diag, PF_EDECODE, "op %zu: %s %llu, at most %llu", i,
                           t->names[counts], (unsigned long long)v, (unsigned long long)max);
    sum += per * (size_t)v;
  }
  t->col[counts] = saved;
  if (sum != t->col[list].n)
    return pf_diag_error(diag, PF_EDECODE,
                         "plan: the ops' %s call for %zu numbers in %s.%s, it has %zu",
                         t->names[counts], sum, t->what, t->names[list], t->col[list].n);
  return 0;
}

/* n numbers of list column k into the pool at *at, which moves past them;
 * NULL for none. */
static uint32_t *list_read(table *t, int k, uint32_t n, uint32_t **at) {
  uint32_t *list = n ? *at : NULL;
  for (uint32_t j = 0; j < n; j++) list[j] = get_u32(t, k);
  *at += n;
  return list;
}

/* Op i's box (r dimensions), one copy per distinct box among those met
 * lately; NULL when out of memory. */
static pf_box *box_read(ops_reader *r, int rank) {
  table *t = &r->t;
  uint64_t h = (uint64_t)rank;
  pf_box box, **slot;
  memset(&box, 0, sizeof box);
  box.rank = rank;
  for (int k = 0; k < rank; k++) box.src_offset[k] = get_i64(t, OC_BOXES);
  for (int k = 0; k < rank; k++) box.dst_offset[k] = get_i64(t, OC_BOXES);
  for (int k = 0; k < rank; k++) box.extent[k] = get_i64(t, OC_BOXES);
  for (int k = 0; k < rank; k++)
    h = pf_mix64(h ^ (uint64_t)box.src_offset[k] ^ (uint64_t)box.dst_offset[k] << 21 ^
                 (uint64_t)box.extent[k] << 42);
  slot = &r->seen[h % PF_ARRAY_LEN(r->seen)];
  if (*slot == NULL || memcmp(*slot, &box, sizeof box) != 0)
    *slot = pf_arena_dup(r->p->pool, &box, sizeof box);
  return *slot;
}

/* Op i's kernel and attributes (a KERNEL op), or the check that it has
 * none. */
static int kernel_read(ops_reader *r, size_t i, pf_plan_op *op, uint32_t kernel, uint32_t attrs,
                       pf_diag *diag) {
  const Pathflow__Plan *m = r->m;
  if (op->kind != PF_OP_KERNEL) {
    /* the in-memory plan has no place for these: refuse, do not drop */
    if (kernel != 0 || attrs != 0)
      return pf_diag_error(diag, PF_EDECODE, "op %zu (%s): kernel or attrs on a non-kernel op", i,
                           op->name);
    return 0;
  }
  if (kernel == 0) {
    /* No kernel named: "" (pf_plan_check refuses it), one for all. */
    if (r->no_kernel == NULL) r->no_kernel = pf_arena_strdup(r->p->pool, "");
    op->kernel = r->no_kernel;
  } else if ((op->kernel = string_at(r->strings, m->strings.len, kernel - 1)) == NULL) {
    return pf_diag_error(diag, PF_EDECODE,
                         "op %zu (%s): its kernel at byte %u is not one of the plan's strings", i,
                         op->name, kernel - 1);
  }
  if (attrs > m->n_attr_sets)
    return pf_diag_error(diag, PF_EDECODE, "op %zu (%s): attribute set %u, the plan has %zu", i,
                         op->name, attrs - 1, m->n_attr_sets);
  if (attrs == 0 && r->empty == NULL && pf_attrs_create(&r->empty) != 0) r->empty = NULL;
  op->attrs = pf_attrs_ref(attrs ? r->sets[attrs - 1] : r->empty);
  if (op->kernel == NULL || op->attrs == NULL)
    return pf_diag_error(diag, PF_ENOMEM, "plan: out of memory");
  return 0;
}

/* Op i, its columns' next numbers. */
static int op_read(ops_reader *r, size_t i, pf_diag *diag) {
  table *t = &r->t;
  pf_plan_op *op = &r->p->ops[i];
  int32_t kind = get_i32(t, OC_KIND), collective, reduce_op, in_axis;
  uint32_t name, kernel, attrs, rank;
  memset(op, 0, sizeof *op);
  op->device = get_i32(t, OC_DEVICE);
  op->program = get_s32(t, OC_PROGRAM);
  name = get_u32(t, OC_NAME);
  op->shard = get_s32(t, OC_SHARD);
  op->num_shards = get_s32(t, OC_NUM_SHARDS);
  kernel = get_u32(t, OC_KERNEL);
  attrs = get_u32(t, OC_ATTRS);
  op->n_in = get_u32(t, OC_INPUT_COUNT);
  op->inputs = list_read(t, OC_INPUTS, op->n_in, &r->in);
  op->n_out = get_u32(t, OC_OUTPUT_COUNT);
  op->outputs = list_read(t, OC_OUTPUTS, op->n_out, &r->out);
  op->n_deps = get_u32(t, OC_DEP_COUNT);
  op->deps = list_read(t, OC_DEPS, op->n_deps, &r->deps);
  rank = get_u32(t, OC_BOX_RANK);
  op->peer = get_s32(t, OC_PEER);
  op->tag = get_i64(t, OC_TAG);
  op->comm = get_s32(t, OC_COMM);
  collective = get_s32(t, OC_COLLECTIVE);
  reduce_op = get_s32(t, OC_REDUCE_OP);
  op->axis = get_s32(t, OC_AXIS);
  op->root = get_s32(t, OC_ROOT);
  in_axis = get_s32(t, OC_IN_AXIS);
  if (t->bad >= 0) return row_error(t, "op", i, diag);
  /* Fields of a byte in the record (plan.h): what does not fit is refused
   * here, not cut to a value pf_plan_check might accept. */
  if (collective != (int8_t)collective || reduce_op != (int8_t)reduce_op ||
      in_axis != (int8_t)in_axis)
    return pf_diag_error(diag, PF_EDECODE, "op %zu: collective %d, reduce_op %d or in_axis %d "
                         "out of range", i, (int)collective, (int)reduce_op, (int)in_axis);
  op->collective = (int8_t)collective;
  op->reduce_op = (int8_t)reduce_op;
  op->in_axis = (int8_t)in_axis;
  if (kind < PF_OP_KERNEL || kind > PF_OP_COLLECTIVE)
    return pf_diag_error(diag, PF_EDECODE, "op %zu: unknown kind %d", i, (int)kind);
  op->kind = (pf_op_kind)kind;
  if ((op->name = string_at(r->strings, r->m->strings.len, name)) == NULL)
    return pf_diag_error(diag, PF_EDECODE,
                         "op %zu: its name at byte %u is not one of the plan's strings", i, name);
  /* Ops that move data always have a box; others only keep one they were
   * sent (pf_plan_check judges it). */
  if (rank > 0 || op->kind == PF_OP_COPY || op->kind == PF_OP_SEND || op->kind == PF_OP_RECV) {
    if ((op->box = box_read(r, (int)rank)) == NULL)
      return pf_diag_error(diag, PF_ENOMEM, "plan: out of memory");
    if (t->bad >= 0) return row_error(t, "op", i, diag);
  }
  return kernel_read(r, i, op, kernel, attrs, diag);
}

static int ops_read(ops_reader *r, pf_diag *diag) {
  static const int scalars[] = {
      OC_DEVICE,    OC_PROGRAM,   OC_NAME,      OC_SHARD, OC_NUM_SHARDS, OC_KERNEL,
      OC_ATTRS,     OC_INPUT_COUNT, OC_OUTPUT_COUNT, OC_DEP_COUNT, OC_BOX_RANK, OC_PEER,
      OC_TAG,       OC_COMM,      OC_COLLECTIVE, OC_REDUCE_OP, OC_AXIS,     OC_ROOT,
      OC_IN_AXIS};
  table *t = &r->t;
  pf_plan *p = r->p;
  size_t n = t->col[OC_KIND].n;
  int rc;
  if ((rc = columns_agree(t, scalars, PF_ARRAY_LEN(scalars), n, diag)) != 0) return rc;
  if (n > UINT32_MAX) return pf_diag_error(diag, PF_EDECODE, "plan: too many ops");
  if ((rc = counts_agree(t, OC_INPUT_COUNT, OC_INPUTS, MAX_LIST, 1, diag)) != 0 ||
      (rc = counts_agree(t, OC_OUTPUT_COUNT, OC_OUTPUTS, MAX_LIST, 1, diag)) != 0 ||
      (rc = counts_agree(t, OC_DEP_COUNT, OC_DEPS, MAX_LIST, 1, diag)) != 0 ||
      (rc = counts_agree(t, OC_BOX_RANK, OC_BOXES, PF_MAX_RANK, 3, diag)) != 0)
    return rc;
  if ((p->ops = pf_arena_alloc(p->pool, n * sizeof *p->ops)) == NULL ||
      (r->in = pf_arena_alloc(p->pool, t->col[OC_INPUTS].n * sizeof *r->in)) == NULL ||
      (r->out = pf_arena_alloc(p->pool, t->col[OC_OUTPUTS].n * sizeof *r->out)) == NULL ||
      (r->deps = pf_arena_alloc(p->pool, t->col[OC_DEPS].n * sizeof *r->deps)) == NULL)
    return pf_diag_error(diag, PF_ENOMEM, "plan: out of memory");
  if (n == 0) return 0;
  pf_prefault(p->ops, n * sizeof *p->ops);
  if ((rc = strings_decode(r->m, p, &r->strings, diag)) != 0 ||
      (rc = attr_sets_decode(r->m, &r->sets, diag)) != 0)
    return rc;
  /* pf_plan_free sees the ops read so far: each op is whole once counted */
  for (size_t i = 0; i < n; i++, p->n_ops++)
    if ((rc = op_read(r, i, diag)) != 0) {
      pf_attrs_destroy(p->ops[i].attrs);
      return rc;
    }
  return 0;
}

/* ---- the plan ------------------------------------------------------------------ */

/* The plan's header, tables, slots and communicators, through protobuf-c. */
static int rest_fill(const Pathflow__Plan *m, pf_plan *p, pf_diag *diag) {
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

/* The message split: its two column fields, and a copy of the rest. */
typedef struct plan_parts {
  const uint8_t *buffers, *ops;
  size_t n_buffers, n_ops;
  uint8_t *rest;
  size_t n_rest;
} plan_parts;

static int plan_split(const uint8_t *buf, size_t len, pf_arena *scratch, plan_parts *out,
                      pf_diag *diag) {
  const uint8_t *end = buf + len, *p;
  int seen_b = 0, seen_o = 0;
  memset(out, 0, sizeof *out);
  for (p = buf; p < end;) {
    pf_wire_field f;
    if (pf_wire_field_next(&p, end, &f) != 0) goto invalid;
    if (f.number != PLAN_BUFFERS_FIELD && f.number != PLAN_OPS_FIELD) {
      out->n_rest += (size_t)(f.end - f.start);
      continue;
    }
    if (f.type != PF_WIRE_LENGTH_DELIMITED) goto invalid;
    if (f.number == PLAN_BUFFERS_FIELD ? seen_b++ : seen_o++)
      return pf_diag_error(diag, PF_EDECODE, "plan: its %s come in two pieces",
                           f.number == PLAN_BUFFERS_FIELD ? "buffers" : "ops");
    if (f.number == PLAN_BUFFERS_FIELD) {
      out->buffers = f.data;
      out->n_buffers = f.len;
    } else {
      out->ops = f.data;
      out->n_ops = f.len;
    }
  }
  if ((out->rest = pf_arena_alloc(scratch, out->n_rest)) == NULL)
    return pf_diag_error(diag, PF_ENOMEM, "plan: out of memory");
  p = buf;
  for (uint8_t *at = out->rest; p < end;) {
    pf_wire_field f;
    pf_wire_field_next(&p, end, &f); /* read once above */
    if (f.number == PLAN_BUFFERS_FIELD || f.number == PLAN_OPS_FIELD) continue;
    memcpy(at, f.start, (size_t)(f.end - f.start));
    at += f.end - f.start;
  }
  return 0;
invalid:
  return pf_diag_error(diag, PF_EDECODE, "plan: %zu bytes are not a valid pathflow.Plan", len);
}

/* protobuf-c's allocations while unpacking, from an arena freed at once. */
static void *unpack_alloc(void *arena, size_t size) { return pf_arena_alloc(arena, size); }
static void unpack_free(void *arena, void *p) {
  (void)arena;
  (void)p;
}

static int plan_read(const uint8_t *buf, size_t len, pf_arena *scratch, pf_plan *p,
                     pf_diag *diag) {
  ProtobufCAllocator alloc = {unpack_alloc, unpack_free, scratch};
  column bcols[BC_N], ocols[OC_N];
  table bt = {bcols, buffer_columns, "buffers", -1};
  ops_reader r;
  plan_parts parts;
  int rc;
  if ((rc = plan_split(buf, len, scratch, &parts, diag)) != 0) return rc;
  memset(&r, 0, sizeof r);
  r.t = (table){ocols, op_columns, "ops", -1};
  r.p = p;
  if ((r.m = pathflow__plan__unpack(&alloc, parts.n_rest, parts.rest)) == NULL)
    return pf_diag_error(diag, PF_EDECODE, "plan: %zu bytes are not a valid pathflow.Plan", len);
  p->executable = r.m->executable;
  p->rank = r.m->rank;
  p->num_devices = r.m->num_devices;
  p->num_inputs = r.m->num_inputs;
  p->num_outputs = r.m->num_outputs;
  /* Ops, buffers, lists, strings and boxes in the plan's pool (see
   * `pool`): no malloc per op, and what is read together lies together. */
  if ((p->pool = calloc(1, sizeof *p->pool)) == NULL)
    return pf_diag_error(diag, PF_ENOMEM, "plan: out of memory");
  if ((rc = columns_find(&bt, BC_N, parts.buffers, parts.n_buffers, diag)) == 0 &&
      (rc = columns_find(&r.t, OC_N, parts.ops, parts.n_ops, diag)) == 0 &&
      (rc = buffers_read(&bt, r.m, p, diag)) == 0 && (rc = ops_read(&r, diag)) == 0)
    rc = rest_fill(r.m, p, diag);
  for (size_t k = 0; r.sets != NULL && k < r.m->n_attr_sets; k++) pf_attrs_destroy(r.sets[k]);
  free(r.sets);
  pf_attrs_destroy(r.empty);
  return rc;
}

int pf_plan_decode(const uint8_t *buf, size_t len, int num_devices, pf_plan **out,
                   pf_diag *diag) {
  pf_arena scratch = {0};
  pf_plan *p;
  int rc;
  if (out == NULL) return PF_EINVAL;
  *out = NULL;
  if (diag != NULL) pf_diag_init(diag);
  if (buf == NULL && len > 0) return pf_diag_error(diag, PF_EINVAL, "plan decode: NULL buffer");
  if (len > PF_WIRE_MAX_MESSAGE)
    return pf_diag_error(diag, PF_EDECODE,
                         "plan message of %zu bytes exceeds the limit of %u "
                         "bytes", len, PF_WIRE_MAX_MESSAGE);
  if ((p = calloc(1, sizeof *p)) == NULL)
    return pf_diag_error(diag, PF_ENOMEM, "plan: out of memory");
  rc = plan_read(buf ? buf : (const uint8_t *)"", len, &scratch, p, diag);
  pf_arena_free(&scratch); /* the unpacked rest: nothing to free one by one */
  if (rc == 0) rc = pf_plan_check(p, num_devices, diag);
  if (rc == 0) p->checked_for = num_devices;
  if (rc != 0) {
    pf_plan_free(p);
    return rc;
  }
  *out = p;
  return 0;
}
