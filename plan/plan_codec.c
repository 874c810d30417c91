/* pf_plan <-> pathflow.Plan.
 *
 * Decoding converts field by field with range checks (enums, int32 ranges,
 * counts, string lengths), then hands the result to pf_plan_check, which
 * owns every cross-reference rule. The plan is freed on any error.
 */
#include <stdlib.h>
#include <string.h>

#include "base/attrs_internal.h"
#include "base/util.h"
#include "base/wire.h"
#include "pathflow/error.h"
#include "plan/plan.h"

#define MAX_LIST (1u << 20) /* inputs, outputs or deps of one op */

/* ---- encoder -------------------------------------------------------------- */

static int buffer_encode(pf_wire_arena *a, const pf_plan_buffer *b,
                         Pathflow__PlanBuffer **out) {
  Pathflow__PlanBuffer *m = pf_wire_alloc(a, 1, sizeof *m);
  int rc;
  if (m == NULL) return PF_ENOMEM;
  if (b->spec == NULL) return PF_EINVAL; /* pf_plan_check refuses it */
  pathflow__plan_buffer__init(m);
  if ((rc = pf_wire_spec_encode(a, b->spec, &m->spec)) != 0) return rc;
  m->device = b->device;
  m->input = b->input;
  m->output = b->output;
  m->shard = b->shard;
  m->in_arena = b->in_arena != 0;
  m->offset = b->in_arena ? b->offset : 0;
  m->host = b->host != 0;
  *out = m;
  return 0;
}

static const pf_box no_box; /* an op without a box has one of rank 0 */

static int box_encode(pf_wire_arena *a, const pf_box *b, Pathflow__Box **out) {
  Pathflow__Box *m;
  if (b->rank < 0 || b->rank > PF_MAX_RANK) return PF_EINVAL;
  if ((m = pf_wire_alloc(a, 1, sizeof *m)) == NULL) return PF_ENOMEM;
  pathflow__box__init(m);
  m->n_src_offset = m->n_dst_offset = m->n_extent = (size_t)b->rank;
  m->src_offset = (int64_t *)b->src_offset; /* only read by pack */
  m->dst_offset = (int64_t *)b->dst_offset;
  m->extent = (int64_t *)b->extent;
  *out = m;
  return 0;
}

static int op_encode(pf_wire_arena *a, const pf_plan_op *op,
                     Pathflow__PlanOp **out) {
  Pathflow__PlanOp *m = pf_wire_alloc(a, 1, sizeof *m);
  int rc;
  if (m == NULL) return PF_ENOMEM;
  pathflow__plan_op__init(m);
  if ((op->n_in && !op->inputs) || (op->n_out && !op->outputs) ||
      (op->n_deps && !op->deps))
    return PF_EINVAL;
  m->kind = (Pathflow__PlanOp__Kind)op->kind;
  m->device = op->device;
  m->program = op->program;
  if (op->name != NULL) m->name = op->name;
  m->shard = op->shard;
  m->num_shards = op->num_shards;
  if (op->kernel != NULL) m->kernel = op->kernel;
  if ((rc = pf_wire_attrs_encode(a, op->attrs, &m->n_attrs, &m->attrs)) != 0)
    return rc;
  m->n_inputs = op->n_in;
  m->inputs = op->inputs;
  m->n_outputs = op->n_out;
  m->outputs = op->outputs;
  m->n_deps = op->n_deps;
  m->deps = op->deps;
  /* always present, so that decode -> encode gives the same bytes */
  if ((rc = box_encode(a, op->box ? op->box : &no_box, &m->box)) != 0) return rc;
  m->peer = op->peer;
  m->tag = op->tag;
  m->comm = op->comm;
  m->collective = op->collective;
  m->reduce_op = op->reduce_op;
  m->axis = op->axis;
  m->root = op->root;
  m->in_axis = op->in_axis;
  *out = m;
  return 0;
}

static int plan_build(pf_wire_arena *a, const pf_plan *p, Pathflow__Plan *m) {
  int rc;
  if ((p->n_buffers && !p->buffers) || (p->n_ops && !p->ops)) return PF_EINVAL;
  m->executable = p->executable;
  m->rank = p->rank;
  m->num_devices = p->num_devices;
  m->num_inputs = p->num_inputs;
  m->num_outputs = p->num_outputs;
  m->buffers = pf_wire_alloc(a, p->n_buffers, sizeof *m->buffers);
  m->ops = pf_wire_alloc(a, p->n_ops, sizeof *m->ops);
  if (m->buffers == NULL || m->ops == NULL) return PF_ENOMEM;
  for (uint32_t i = 0; i < p->n_buffers; i++, m->n_buffers++)
    if ((rc = buffer_encode(a, &p->buffers[i], &m->buffers[i])) != 0)
      return rc;
  for (uint32_t i = 0; i < p->n_ops; i++, m->n_ops++)
    if ((rc = op_encode(a, &p->ops[i], &m->ops[i])) != 0) return rc;
  if ((p->n_slots && !p->slots) || (p->n_comms && !p->comms)) return PF_EINVAL;
  if (p->arena_bytes != NULL) {
    m->n_arena_bytes = (size_t)p->num_devices;
    m->arena_bytes = p->arena_bytes;
  }
  m->outputs = pf_wire_alloc(a, p->n_slots, sizeof *m->outputs);
  m->comms = pf_wire_alloc(a, p->n_comms, sizeof *m->comms);
  if (m->outputs == NULL || m->comms == NULL) return PF_ENOMEM;
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

int pf_plan_encode(const pf_plan *p, uint8_t **buf, size_t *len) {
  pf_wire_arena arena = {NULL};
  Pathflow__Plan m = PATHFLOW__PLAN__INIT;
  uint8_t *out;
  size_t n;
  int rc;
  if (p == NULL || buf == NULL || len == NULL) return PF_EINVAL;
  *buf = NULL;
  *len = 0;
  if ((rc = plan_build(&arena, p, &m)) != 0) {
    pf_wire_arena_free(&arena);
    return rc;
  }
  n = pathflow__plan__get_packed_size(&m);
  if ((out = malloc(n ? n : 1)) == NULL) {
    pf_wire_arena_free(&arena);
    return PF_ENOMEM;
  }
  pathflow__plan__pack(&m, out);
  pf_wire_arena_free(&arena);
  *buf = out;
  *len = n;
  return 0;
}

/* ---- decoder -------------------------------------------------------------- */

static int u32s_copy(pf_arena *a, const uint32_t *src, size_t n, uint32_t **dst,
                     uint32_t *n_dst) {
  if (n == 0) return 0;
  if ((*dst = pf_arena_dup(a, src, n * sizeof **dst)) == NULL) return PF_ENOMEM;
  *n_dst = (uint32_t)n;
  return 0;
}

static int box_decode(const Pathflow__Box *m, pf_box *b, pf_diag *diag) {
  memset(b, 0, sizeof *b);
  if (m == NULL) return 0; /* no box: rank 0 */
  if (m->n_extent > PF_MAX_RANK || m->n_src_offset != m->n_extent ||
      m->n_dst_offset != m->n_extent)
    return pf_diag_error(diag, PF_EDECODE,
                         "box has %zu/%zu/%zu src_offset/dst_offset/extent "
                         "entries, expected equal counts of at most %d",
                         m->n_src_offset, m->n_dst_offset, m->n_extent,
                         PF_MAX_RANK);
  b->rank = (int)m->n_extent;
  for (size_t k = 0; k < m->n_extent; k++) {
    b->src_offset[k] = m->src_offset[k];
    b->dst_offset[k] = m->dst_offset[k];
    b->extent[k] = m->extent[k];
  }
  return 0;
}

/* Strings and kernel-only fields of op i. */
static int op_strings_decode(pf_arena *a, const Pathflow__PlanOp *m, uint32_t i,
                             pf_plan_op *op, pf_diag *diag) {
  int rc;
  if (pf_wire_string_check(m->name, PF_WIRE_MAX_STRING, NULL) ||
      pf_wire_string_check(m->kernel, PF_WIRE_MAX_STRING, NULL))
    return pf_diag_error(diag, PF_EDECODE,
                         "op %u: name or kernel longer than %d bytes", i,
                         PF_WIRE_MAX_STRING);
  if ((op->name = pf_arena_strdup(a, m->name)) == NULL)
    return pf_diag_error(diag, PF_ENOMEM, "op %u: out of memory", i);
  if (m->kind != PATHFLOW__PLAN_OP__KIND__KERNEL) {
    /* the in-memory plan has no place for these: refuse, do not drop */
    if (m->kernel[0] != '\0' || m->n_attrs != 0)
      return pf_diag_error(diag, PF_EDECODE,
                           "op %u (%s): kernel or attrs on a non-kernel op", i,
                           op->name);
    return 0;
  }
  if ((op->kernel = pf_arena_strdup(a, m->kernel)) == NULL)
    return pf_diag_error(diag, PF_ENOMEM, "op %u: out of memory", i);
  if ((rc = pf_wire_attrs_decode(m->n_attrs, m->attrs, &op->attrs, diag)))
    pf_diag_prefix(diag, "op %u (%s)", i, op->name);
  return rc;
}

/* An op's inputs, outputs and deps. Decoded for every op before anything
 * else of the ops, so that the lists lie together in plan order: the
 * executor reads them op after op, and one small block per op, scattered
 * among names and boxes, was a cache miss on each kernel's and transfer's
 * path in a long plan (bench/granularity -t 1000 and more). */
static int op_lists_decode(pf_arena *a, const Pathflow__PlanOp *m, uint32_t i, pf_plan_op *op,
                           pf_diag *diag) {
  if (m->n_inputs > MAX_LIST || m->n_outputs > MAX_LIST || m->n_deps > MAX_LIST)
    return pf_diag_error(diag, PF_EDECODE,
                         "op %u: %zu inputs, %zu outputs, %zu deps: at most %u each", i,
                         m->n_inputs, m->n_outputs, m->n_deps, MAX_LIST);
  if (u32s_copy(a, m->inputs, m->n_inputs, &op->inputs, &op->n_in) ||
      u32s_copy(a, m->outputs, m->n_outputs, &op->outputs, &op->n_out) ||
      u32s_copy(a, m->deps, m->n_deps, &op->deps, &op->n_deps))
    return pf_diag_error(diag, PF_ENOMEM, "op %u: out of memory", i);
  return 0;
}

static int op_decode(pf_arena *a, const Pathflow__PlanOp *m, uint32_t i, pf_plan_op *op,
                     pf_diag *diag) {
  pf_box box;
  int rc;
  if ((int)m->kind < PF_OP_KERNEL || (int)m->kind > PF_OP_COLLECTIVE)
    return pf_diag_error(diag, PF_EDECODE, "op %u: unknown kind %d", i,
                         (int)m->kind);
  op->kind = (pf_op_kind)m->kind;
  if ((rc = op_strings_decode(a, m, i, op, diag)) != 0) return rc;
  if ((rc = box_decode(m->box, &box, diag)) != 0) {
    pf_diag_prefix(diag, "op %u (%s)", i, op->name);
    return rc;
  }
  /* Ops that move data always have a box; others only keep one they were
   * sent (pf_plan_check judges it). */
  if (box.rank > 0 || op->kind == PF_OP_COPY || op->kind == PF_OP_SEND ||
      op->kind == PF_OP_RECV) {
    if ((op->box = pf_arena_dup(a, &box, sizeof box)) == NULL)
      return pf_diag_error(diag, PF_ENOMEM, "op %u: out of memory", i);
  }
  op->device = m->device;
  op->program = m->program;
  op->shard = m->shard;
  op->num_shards = m->num_shards;
  op->peer = m->peer;
  op->tag = m->tag;
  op->comm = m->comm;
  op->collective = m->collective;
  op->reduce_op = m->reduce_op;
  op->axis = m->axis;
  op->root = m->root;
  op->in_axis = m->in_axis;
  return 0;
}

static uint64_t spec_hash(const pf_spec *sp) {
  uint64_t h = 1469598103934665603ull ^ ((uint64_t)sp->dtype << 8 | (uint64_t)sp->rank);
  for (int k = 0; k < sp->rank; k++) h = (h ^ (uint64_t)sp->dims[k]) * 1099511628211ull;
  return h ^ (h >> 29);
}

/* The buffers' specs, each distinct one once in own_specs (buffers point
 * at it, as the scheduler's plans point into its pool): a plan's buffers
 * mostly share a few shapes, and one copy per buffer (72 bytes each) put
 * a cache miss on a kernel's or a transfer's path once a long plan's
 * specs no longer fit in the cache (bench/granularity -t 4000). */
static int specs_decode(const Pathflow__Plan *m, pf_plan *p, pf_diag *diag) {
  size_t cap = 16, n_own = 0;
  uint32_t *table;
  while (cap < 2 * (size_t)p->n_buffers) cap *= 2;
  if ((table = pf_mallocn(cap, sizeof *table)) == NULL)
    return pf_diag_error(diag, PF_ENOMEM, "plan: out of memory");
  memset(table, 0xff, cap * sizeof *table);
  for (uint32_t i = 0; i < p->n_buffers; i++) {
    pf_spec sp;
    size_t at;
    int rc = pf_wire_spec_decode(m->buffers[i]->spec, &sp, diag);
    if (rc != 0) {
      free(table);
      pf_diag_prefix(diag, "buffer %u", i);
      return rc;
    }
    for (at = spec_hash(&sp) & (cap - 1); table[at] != UINT32_MAX; at = (at + 1) & (cap - 1))
      if (pf_spec_equal(&p->own_specs[table[at]], &sp)) break;
    if (table[at] == UINT32_MAX) {
      p->own_specs[n_own] = sp;
      table[at] = (uint32_t)n_own++;
    }
    p->buffers[i].spec = &p->own_specs[table[at]];
  }
  free(table);
  return 0;
}

static int plan_fill(const Pathflow__Plan *m, pf_plan *p, pf_diag *diag) {
  int rc;
  /* Counts are uint32 in memory; the size limit already implies this. */
  if (m->n_buffers > UINT32_MAX || m->n_ops > UINT32_MAX)
    return pf_diag_error(diag, PF_EDECODE, "plan: too many buffers or ops");
  p->executable = m->executable;
  p->rank = m->rank;
  p->num_devices = m->num_devices;
  p->num_inputs = m->num_inputs;
  p->num_outputs = m->num_outputs;
  /* Ops, buffers, lists, names and boxes in the plan's pool (see `pool`):
   * no malloc per op, and what is read together lies together. */
  if ((p->pool = calloc(1, sizeof *p->pool)) == NULL ||
      (p->buffers = pf_arena_alloc(p->pool, m->n_buffers * sizeof *p->buffers)) == NULL ||
      (p->ops = pf_arena_alloc(p->pool, m->n_ops * sizeof *p->ops)) == NULL ||
      (p->own_specs = pf_calloc(m->n_buffers, sizeof *p->own_specs)) == NULL)
    return pf_diag_error(diag, PF_ENOMEM, "plan: out of memory");
  memset(p->buffers, 0, m->n_buffers * sizeof *p->buffers);
  memset(p->ops, 0, m->n_ops * sizeof *p->ops);
  /* set before filling, so pf_plan_free sees every op allocated so far */
  p->n_buffers = (uint32_t)m->n_buffers;
  p->n_ops = (uint32_t)m->n_ops;
  if ((rc = specs_decode(m, p, diag)) != 0) return rc;
  for (uint32_t i = 0; i < p->n_buffers; i++) {
    const Pathflow__PlanBuffer *b = m->buffers[i];
    pf_plan_buffer *pb = &p->buffers[i];
    pb->device = b->device;
    pb->input = b->input;
    pb->output = b->output;
    pb->shard = b->shard;
    pb->in_arena = b->in_arena ? 1 : 0;
    pb->offset = b->in_arena ? b->offset : 0;
    pb->host = b->host ? 1 : 0;
  }
  for (uint32_t i = 0; i < p->n_ops; i++)
    if ((rc = op_lists_decode(p->pool, m->ops[i], i, &p->ops[i], diag)) != 0) return rc;
  for (uint32_t i = 0, last = UINT32_MAX; i < p->n_ops; i++) {
    pf_plan_op *op = &p->ops[i];
    if ((rc = op_decode(p->pool, m->ops[i], i, op, diag)) != 0) return rc;
    if (op->attrs == NULL) continue;
    /* The attributes of the last kernel again: share its set (as the
     * scheduler's plans share their graph's). */
    if (last != UINT32_MAX && pf_attrs_identical(p->ops[last].attrs, op->attrs)) {
      pf_attrs_destroy(op->attrs);
      op->attrs = pf_attrs_ref(p->ops[last].attrs);
    }
    last = i;
  }
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

int pf_plan_decode(const uint8_t *buf, size_t len, int num_devices,
                   pf_plan **out, pf_diag *diag) {
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
  m = pathflow__plan__unpack(NULL, len, buf ? buf : (const uint8_t *)"");
  if (m == NULL)
    return pf_diag_error(diag, PF_EDECODE,
                         "plan: %zu bytes are not a valid pathflow.Plan", len);
  if ((p = calloc(1, sizeof *p)) == NULL) {
    pathflow__plan__free_unpacked(m, NULL);
    return pf_diag_error(diag, PF_ENOMEM, "plan: out of memory");
  }
  rc = plan_fill(m, p, diag);
  pathflow__plan__free_unpacked(m, NULL);
  if (rc == 0) rc = pf_plan_check(p, num_devices, diag);
  if (rc != 0) {
    pf_plan_free(p);
    return rc;
  }
  *out = p;
  return 0;
}
