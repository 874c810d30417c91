/* Plans: freeing, comparing, and the check that stands between decoded bytes
 * and the executor. The executor indexes buffers, ops and shard memory with
 * what a plan says, so pf_plan_check must refuse every plan whose indices,
 * devices or boxes could make it read or write out of bounds. */
#include "plan/plan.h"

#include <stdlib.h>
#include <string.h>

#include "base/util.h"
#include "kernels/registry.h"
#include "pathflow/error.h"

/* Most inputs, outputs or deps of one op: far above anything the scheduler
 * emits, low enough that counts cannot overflow the arithmetic below. */
#define PF_PLAN_MAX_ARGS (1u << 20)
#define NO_WRITER UINT32_MAX
/* Highest rank a communicator may name (far above any job pathflow runs). */
#define PF_PLAN_MAX_RANKS (1 << 20)

static void op_clear(const pf_plan *p, pf_plan_op *op) {
  pf_attrs_destroy(op->attrs);
  if (p->pool != NULL) return;
  free(op->box);
  free(op->name);
  free(op->kernel);
  free(op->inputs);
  free(op->outputs);
  free(op->deps);
}

void pf_plan_free(pf_plan *p) {
  if (p == NULL) return;
  for (uint32_t i = 0; p->ops != NULL && i < p->n_ops; i++)
    op_clear(p, &p->ops[i]);
  if (p->pool != NULL) {
    pf_arena_free(p->pool); /* ops and buffers too */
    free(p->pool);
  } else {
    free(p->ops);
    free(p->buffers);
  }
  free(p->slots);
  free(p->own_specs);
  free(p->arena_bytes);
  for (uint32_t i = 0; p->comms != NULL && i < p->n_comms; i++) free(p->comms[i].ranks);
  free(p->comms);
  free(p);
}

/* ---- equality ------------------------------------------------------------- */

static int str_eq(const char *a, const char *b) {
  if (a == NULL || b == NULL) return a == b;
  return strcmp(a, b) == 0;
}

static int u32s_eq(const uint32_t *a, const uint32_t *b, uint32_t n) {
  return n == 0 || memcmp(a, b, (size_t)n * sizeof *a) == 0;
}

/* An op without a box has a box of rank 0. */
static const pf_box no_box;

static const pf_box *box_of(const pf_plan_op *op) { return op->box ? op->box : &no_box; }

static int box_eq(const pf_box *a, const pf_box *b) {
  if (a->rank != b->rank) return 0;
  for (int i = 0; i < a->rank && i < PF_MAX_RANK; i++)
    if (a->src_offset[i] != b->src_offset[i] ||
        a->dst_offset[i] != b->dst_offset[i] || a->extent[i] != b->extent[i])
      return 0;
  return 1;
}

static int op_eq(const pf_plan_op *a, const pf_plan_op *b) {
  return a->kind == b->kind && a->device == b->device &&
         a->program == b->program && str_eq(a->name, b->name) &&
         a->shard == b->shard && a->num_shards == b->num_shards &&
         str_eq(a->kernel, b->kernel) &&
         (a->attrs == NULL) == (b->attrs == NULL) &&
         pf_attrs_equal(a->attrs, b->attrs) && a->n_in == b->n_in &&
         a->n_out == b->n_out && a->n_deps == b->n_deps &&
         u32s_eq(a->inputs, b->inputs, a->n_in) &&
         u32s_eq(a->outputs, b->outputs, a->n_out) &&
         u32s_eq(a->deps, b->deps, a->n_deps) && box_eq(box_of(a), box_of(b)) &&
         a->peer == b->peer && a->tag == b->tag && a->comm == b->comm &&
         a->collective == b->collective && a->reduce_op == b->reduce_op &&
         a->axis == b->axis && a->root == b->root && a->in_axis == b->in_axis;
}

static int buffer_eq(const pf_plan_buffer *a, const pf_plan_buffer *b) {
  return a->device == b->device && pf_spec_equal(a->spec, b->spec) &&
         a->input == b->input && a->output == b->output &&
         a->shard == b->shard && a->in_arena == b->in_arena && a->host == b->host &&
         (!a->in_arena || a->offset == b->offset);
}

int pf_plan_equal(const pf_plan *a, const pf_plan *b) {
  if (a == NULL || b == NULL) return a == b;
  if (a->executable != b->executable || a->rank != b->rank ||
      a->num_devices != b->num_devices || a->num_inputs != b->num_inputs ||
      a->num_outputs != b->num_outputs || a->n_buffers != b->n_buffers ||
      a->n_ops != b->n_ops || a->n_slots != b->n_slots || a->n_comms != b->n_comms ||
      (a->arena_bytes == NULL) != (b->arena_bytes == NULL))
    return 0;
  if (a->arena_bytes &&
      memcmp(a->arena_bytes, b->arena_bytes, (size_t)a->num_devices * sizeof(int64_t)) != 0)
    return 0;
  for (uint32_t i = 0; i < a->n_slots; i++)
    if (a->slots[i].output != b->slots[i].output || a->slots[i].shard != b->slots[i].shard ||
        a->slots[i].buffer != b->slots[i].buffer)
      return 0;
  for (uint32_t i = 0; i < a->n_comms; i++)
    if (a->comms[i].id != b->comms[i].id || a->comms[i].group != b->comms[i].group ||
        a->comms[i].n_ranks != b->comms[i].n_ranks ||
        (a->comms[i].n_ranks &&
         memcmp(a->comms[i].ranks, b->comms[i].ranks, a->comms[i].n_ranks * sizeof(int32_t))))
      return 0;
  for (uint32_t i = 0; i < a->n_buffers; i++)
    if (!buffer_eq(&a->buffers[i], &b->buffers[i])) return 0;
  for (uint32_t i = 0; i < a->n_ops; i++)
    if (!op_eq(&a->ops[i], &b->ops[i])) return 0;
  return 1;
}

/* ---- check ---------------------------------------------------------------- */

static const char *kind_name(pf_op_kind k) {
  static const char *const names[] = {"kernel", "copy", "send", "recv",
                                      "collective"};
  return (unsigned)k < PF_ARRAY_LEN(names) ? names[k] : "?";
}

static const char *collective_name(int32_t k) {
  static const char *const names[] = {"allreduce", "allgather", "reduce_scatter", "broadcast",
                                      "all_to_all"};
  return k >= 0 && (size_t)k < PF_ARRAY_LEN(names) ? names[k] : "?";
}

static int buffer_check(const pf_plan *p, uint32_t i, pf_diag *d) {
  const pf_plan_buffer *b = &p->buffers[i];
  char s[160];
  int rc;
  if (b->device < 0 || b->device >= p->num_devices)
    return pf_diag_error(d, PF_EDECODE,
                         "buffer %u: device %d out of range (plan has %d)", i,
                         (int)b->device, (int)p->num_devices);
  if (b->spec == NULL) return pf_diag_error(d, PF_EDECODE, "buffer %u: no spec", i);
  if ((rc = pf_spec_check(b->spec)) != 0)
    return pf_diag_error(d, PF_EDECODE, "buffer %u: bad spec %s (%s)", i,
                         b->spec->rank >= 0 && b->spec->rank <= PF_MAX_RANK
                             ? pf_spec_str(b->spec, s, sizeof s)
                             : "with a bad rank",
                         pf_strerror(rc));
  if (b->input < -1 || b->input >= p->num_inputs)
    return pf_diag_error(d, PF_EDECODE,
                         "buffer %u: input index %d out of range [-1, %d)", i,
                         (int)b->input, (int)p->num_inputs);
  if (b->output < -1 || b->output >= p->num_outputs)
    return pf_diag_error(d, PF_EDECODE,
                         "buffer %u: output index %d out of range [-1, %d)", i,
                         (int)b->output, (int)p->num_outputs);
  if (b->in_arena) {
    int64_t size = (int64_t)pf_spec_nbytes(b->spec);
    if (p->arena_bytes == NULL || (b->in_arena != 1) || b->offset < 0 ||
        b->offset > p->arena_bytes[b->device] - size || b->input >= 0 || b->output >= 0)
      return pf_diag_error(d, PF_EDECODE,
                           "buffer %u: arena offset %lld does not fit its device's arena, "
                           "or the buffer is an input or output",
                           i, (long long)b->offset);
  }
  if (b->host != 0 && (b->host != 1 || b->in_arena))
    return pf_diag_error(d, PF_EDECODE, "buffer %u: a host staging buffer in its device's arena",
                         i);
  if (b->shard < 0)
    return pf_diag_error(d, PF_EDECODE, "buffer %u: negative shard %d", i,
                         (int)b->shard);
  return 0;
}

/* Op i's index lists: counts sane, every entry in range. */
static int op_lists_check(const pf_plan *p, uint32_t i, pf_diag *d) {
  const pf_plan_op *op = &p->ops[i];
  if (op->n_in > PF_PLAN_MAX_ARGS || op->n_out > PF_PLAN_MAX_ARGS ||
      op->n_deps > PF_PLAN_MAX_ARGS)
    return pf_diag_error(d, PF_EDECODE,
                         "op %u (%s): %u inputs, %u outputs, %u deps: at most "
                         "%u each", i, op->name, op->n_in, op->n_out,
                         op->n_deps, PF_PLAN_MAX_ARGS);
  if ((op->n_in && !op->inputs) || (op->n_out && !op->outputs) ||
      (op->n_deps && !op->deps))
    return pf_diag_error(d, PF_EDECODE, "op %u (%s): missing index array", i,
                         op->name);
  for (uint32_t j = 0; j < op->n_in; j++)
    if (op->inputs[j] >= p->n_buffers)
      return pf_diag_error(d, PF_EDECODE,
                           "op %u (%s): input %u is buffer %u, out of range "
                           "(%u buffers)", i, op->name, j, op->inputs[j],
                           p->n_buffers);
  for (uint32_t j = 0; j < op->n_out; j++)
    if (op->outputs[j] >= p->n_buffers)
      return pf_diag_error(d, PF_EDECODE,
                           "op %u (%s): output %u is buffer %u, out of range "
                           "(%u buffers)", i, op->name, j, op->outputs[j],
                           p->n_buffers);
  for (uint32_t j = 0; j < op->n_deps; j++)
    if (op->deps[j] >= i)
      return pf_diag_error(d, PF_EDECODE,
                           "op %u (%s): dep %u is op %u, not an earlier op "
                           "(gang order must be topological)", i, op->name, j,
                           op->deps[j]);
  return 0;
}

static int on_device(const pf_plan *p, uint32_t i, const uint32_t *bufs,
                     uint32_t n, const char *what, pf_diag *d) {
  const pf_plan_op *op = &p->ops[i];
  for (uint32_t j = 0; j < n; j++)
    if (p->buffers[bufs[j]].device != op->device)
      return pf_diag_error(d, PF_EDECODE,
                           "op %u (%s): %s buffer %u is on device %d, the op "
                           "runs on device %d", i, op->name, what, bufs[j],
                           (int)p->buffers[bufs[j]].device, (int)op->device);
  return 0;
}

/* One side of a box (offsets `off`) against buffer b: in bounds, with no
 * int64 overflow (dims and extents are >= 0, so dim - extent cannot). */
static int box_side_check(const pf_plan *p, uint32_t i, const int64_t *off,
                          uint32_t b, const char *side, pf_diag *d) {
  const pf_plan_op *op = &p->ops[i];
  const pf_spec *s = p->buffers[b].spec;
  const pf_box *box = box_of(op);
  if (box->rank != s->rank)
    return pf_diag_error(d, PF_EDECODE,
                         "op %u (%s): box rank %d, %s buffer %u has rank %d",
                         i, op->name, box->rank, side, b, s->rank);
  for (int k = 0; k < box->rank; k++) {
    if (off[k] < 0 || box->extent[k] < 0)
      return pf_diag_error(d, PF_EDECODE,
                           "op %u (%s): box axis %d: negative %s offset %lld "
                           "or extent %lld", i, op->name, k, side,
                           (long long)off[k], (long long)box->extent[k]);
    if (box->extent[k] > s->dims[k] || off[k] > s->dims[k] - box->extent[k])
      return pf_diag_error(d, PF_EDECODE,
                           "op %u (%s): box axis %d: %s offset %lld + extent "
                           "%lld exceeds dim %lld of buffer %u", i, op->name, k,
                           side, (long long)off[k],
                           (long long)box->extent[k], (long long)s->dims[k],
                           b);
  }
  return 0;
}

static int copy_check(const pf_plan *p, uint32_t i, pf_diag *d) {
  const pf_plan_op *op = &p->ops[i];
  const pf_plan_buffer *src, *dst;
  int rc;
  if (op->n_in != 1 || op->n_out != 1)
    return pf_diag_error(d, PF_EDECODE,
                         "op %u (%s): copy needs exactly 1 input and 1 output, "
                         "has %u and %u", i, op->name, op->n_in, op->n_out);
  src = &p->buffers[op->inputs[0]];
  dst = &p->buffers[op->outputs[0]];
  if (src->spec->dtype != dst->spec->dtype)
    return pf_diag_error(d, PF_EDECODE,
                         "op %u (%s): copy from %s buffer %u to %s buffer %u: "
                         "dtype mismatch", i, op->name,
                         pf_dtype_name(src->spec->dtype), op->inputs[0],
                         pf_dtype_name(dst->spec->dtype), op->outputs[0]);
  if ((rc = box_side_check(p, i, op->box->src_offset, op->inputs[0], "source",
                           d)) != 0)
    return rc;
  return box_side_check(p, i, op->box->dst_offset, op->outputs[0],
                        "destination", d);
}

static int transfer_check(const pf_plan *p, uint32_t i, pf_diag *d) {
  const pf_plan_op *op = &p->ops[i];
  int send = op->kind == PF_OP_SEND;
  if (op->n_in != (send ? 1u : 0u) || op->n_out != (send ? 0u : 1u))
    return pf_diag_error(d, PF_EDECODE,
                         "op %u (%s): %s needs exactly %s, has %u inputs and "
                         "%u outputs", i, op->name, kind_name(op->kind),
                         send ? "1 input" : "1 output", op->n_in, op->n_out);
  if (op->peer < 0)
    return pf_diag_error(d, PF_EDECODE, "op %u (%s): negative peer %d", i,
                         op->name, (int)op->peer);
  if (op->tag < 0)
    return pf_diag_error(d, PF_EDECODE, "op %u (%s): negative tag %lld", i,
                         op->name, (long long)op->tag);
  return send ? box_side_check(p, i, op->box->src_offset, op->inputs[0],
                               "source", d)
              : box_side_check(p, i, op->box->dst_offset, op->outputs[0],
                               "destination", d);
}

static int kernel_check(const pf_plan *p, uint32_t i, pf_diag *d) {
  const pf_plan_op *op = &p->ops[i];
  if (op->kernel == NULL || !pf_kernel_name_valid(op->kernel))
    return pf_diag_error(d, PF_EDECODE, "op %u (%s): kernel op without a "
                         "valid kernel name", i, op->name);
  if (op->attrs == NULL)
    return pf_diag_error(d, PF_EDECODE, "op %u (%s): kernel op without attrs",
                         i, op->name);
  /* kernels see shard/num_shards and may divide by the latter */
  if (op->num_shards < 1 || op->shard < 0 || op->shard >= op->num_shards)
    return pf_diag_error(d, PF_EDECODE,
                         "op %u (%s): shard %d of %d out of range", i,
                         op->name, (int)op->shard, (int)op->num_shards);
  return 0;
}

static int axis_check(const pf_plan *p, uint32_t i, const char *what, int32_t axis, int rank,
                      pf_diag *d) {
  if (axis < 0 || axis >= rank)
    return pf_diag_error(d, PF_EDECODE, "op %u (%s): %s %d out of range for rank %d", i,
                         p->ops[i].name, what, (int)axis, rank);
  return 0;
}

/* d == n * s, without overflow (dims are >= 0, n >= 1). */
static int is_n_times(int64_t d, int64_t s, uint32_t n) {
  return d % (int64_t)n == 0 && d / (int64_t)n == s;
}

/* The executor (runtime/reduce.c) reads every input with the spec of input
 * 0, writes every output with the spec of output 0, indexes dims with axis
 * and in_axis and the inputs with root: all of that must hold, for n shards
 * (the local inputs, or the communicator's ranks). Shard specs as
 * pf_collective_infer makes them (splits divide evenly):
 *   allreduce, broadcast  out == in
 *   allgather             out[axis] == n * in[axis]
 *   reduce_scatter        in[axis] == n * out[axis]
 *   all_to_all            in[axis] == n * out[axis], out[in_axis] == n * in[in_axis]
 * every other dim equal. */
static int collective_shape_check(const pf_plan *p, uint32_t i, uint32_t n, pf_diag *d) {
  const pf_plan_op *op = &p->ops[i];
  const pf_spec *in = p->buffers[op->inputs[0]].spec, *out = p->buffers[op->outputs[0]].spec;
  int32_t a = op->axis, ai = op->in_axis;
  char si[160], so[160];
  int rc, ok = in->rank == out->rank;
  for (uint32_t k = 1; k < op->n_in; k++)
    if (!pf_spec_equal(p->buffers[op->inputs[k]].spec, in) ||
        !pf_spec_equal(p->buffers[op->outputs[k]].spec, out))
      return pf_diag_error(d, PF_EDECODE,
                           "op %u (%s): input or output %u has another spec than input or "
                           "output 0", i, op->name, k);
  switch (op->collective) {
    case PF_ALLGATHER:
    case PF_REDUCE_SCATTER:
      if ((rc = axis_check(p, i, "axis", a, in->rank, d)) != 0) return rc;
      break;
    case PF_ALL_TO_ALL:
      if ((rc = axis_check(p, i, "axis", a, in->rank, d)) != 0 ||
          (rc = axis_check(p, i, "in_axis", ai, in->rank, d)) != 0)
        return rc;
      if (a == ai)
        return pf_diag_error(d, PF_EDECODE, "op %u (%s): all_to_all axis and in_axis are both %d",
                             i, op->name, (int)a);
      break;
    case PF_BROADCAST:
      if (op->root < 0 || (uint32_t)op->root >= n)
        return pf_diag_error(d, PF_EDECODE, "op %u (%s): root %d not in [0, %u)", i, op->name,
                             (int)op->root, n);
      /* Across ranks, `axis` picks the root shard among the root rank's inputs. */
      if (op->comm >= 0 && (op->axis < 0 || (uint32_t)op->axis >= op->n_in))
        return pf_diag_error(d, PF_EDECODE, "op %u (%s): broadcast root input %d not in [0, %u)",
                             i, op->name, (int)op->axis, op->n_in);
      break;
    default:
      break;
  }
  for (int k = 0; ok && k < in->rank; k++) {
    switch (op->collective) {
      case PF_ALLGATHER:
        ok = k == a ? is_n_times(out->dims[k], in->dims[k], n) : out->dims[k] == in->dims[k];
        break;
      case PF_REDUCE_SCATTER:
        ok = k == a ? is_n_times(in->dims[k], out->dims[k], n) : out->dims[k] == in->dims[k];
        break;
      case PF_ALL_TO_ALL:
        ok = k == a    ? is_n_times(in->dims[k], out->dims[k], n)
             : k == ai ? is_n_times(out->dims[k], in->dims[k], n)
                       : out->dims[k] == in->dims[k];
        break;
      default:
        ok = out->dims[k] == in->dims[k];
        break;
    }
  }
  if (!ok)
    return pf_diag_error(d, PF_EDECODE,
                         "op %u (%s): %s of input %s to output %s does not hold over %u shards",
                         i, op->name, collective_name(op->collective),
                         pf_spec_str(in, si, sizeof si), pf_spec_str(out, so, sizeof so), n);
  return 0;
}

/* A collective: a known kind and reduction, a communicator of this plan (or
 * -1 within the rank), one output per input, and (for an MPI collective)
 * exactly one input: one device of this rank in the communicator. */
static int collective_check(const pf_plan *p, uint32_t i, pf_diag *d) {
  const pf_plan_op *op = &p->ops[i];
  uint32_t n = op->n_in;
  int found = op->comm == -1;
  if (op->collective < 0 || op->collective >= PF_COLLECTIVE_COUNT || op->reduce_op < 0 ||
      op->reduce_op >= PF_REDUCE_COUNT)
    return pf_diag_error(d, PF_EDECODE, "op %u (%s): unknown collective %d or reduction %d", i,
                         op->name, (int)op->collective, (int)op->reduce_op);
  if (op->n_in < 1 || op->n_in != op->n_out || op->n_in > (uint32_t)p->num_devices)
    return pf_diag_error(d, PF_EDECODE, "op %u (%s): a collective needs one output per input",
                         i, op->name);
  for (uint32_t c = 0; c < p->n_comms && !found; c++)
    if ((found = p->comms[c].id == op->comm)) n = p->comms[c].n_ranks;
  if (!found)
    return pf_diag_error(d, PF_EDECODE, "op %u (%s): no communicator %d in the plan", i,
                         op->name, (int)op->comm);
  /* Across ranks, only allreduce and broadcast combine several local shards
   * (reduced or copied within the rank around the MPI call). */
  if (op->comm >= 0 && op->n_in != 1 &&
      op->collective != PF_ALLREDUCE && op->collective != PF_BROADCAST)
    return pf_diag_error(d, PF_EDECODE,
                         "op %u (%s): an MPI collective of this kind takes one local shard", i,
                         op->name);
  for (uint32_t k = 0; k < op->n_in; k++)
    if (p->buffers[op->inputs[k]].spec->dtype != p->buffers[op->outputs[k]].spec->dtype)
      return pf_diag_error(d, PF_EDECODE, "op %u (%s): input and output dtypes differ", i,
                           op->name);
  return collective_shape_check(p, i, n, d);
}

static int slots_comms_check(const pf_plan *p, pf_diag *d) {
  if ((p->n_slots && p->slots == NULL) || (p->n_comms && p->comms == NULL))
    return pf_diag_error(d, PF_EDECODE, "plan: missing slots or communicators");
  for (uint32_t i = 0; i < p->n_slots; i++) {
    const pf_plan_slot *s = &p->slots[i];
    if (s->output < 0 || s->output >= p->num_outputs || s->shard < 0 ||
        s->buffer >= p->n_buffers || p->buffers[s->buffer].output < 0)
      return pf_diag_error(d, PF_EDECODE,
                           "plan: output slot %u (output %d, shard %d, buffer %u) is invalid",
                           i, (int)s->output, (int)s->shard, s->buffer);
  }
  for (uint32_t i = 0; i < p->n_comms; i++) {
    const pf_plan_comm *c = &p->comms[i];
    int me = 0;
    if (c->id < 0 || c->n_ranks < 1 || c->n_ranks > PF_PLAN_MAX_ARGS || c->ranks == NULL)
      return pf_diag_error(d, PF_EDECODE, "plan: communicator %u is invalid", i);
    for (uint32_t j = 0; j < i; j++)
      if (p->comms[j].id == c->id)
        return pf_diag_error(d, PF_EDECODE, "plan: communicator id %d repeated", (int)c->id);
    for (uint32_t r = 0; r < c->n_ranks; r++) {
      if (c->ranks[r] < 0 || c->ranks[r] >= PF_PLAN_MAX_RANKS)
        return pf_diag_error(d, PF_EDECODE, "plan: communicator %d: rank %d out of range",
                             (int)c->id, (int)c->ranks[r]);
      for (uint32_t q = 0; q < r; q++)
        if (c->ranks[q] == c->ranks[r])
          return pf_diag_error(d, PF_EDECODE, "plan: communicator %d: rank %d repeated",
                               (int)c->id, (int)c->ranks[r]);
      me |= c->ranks[r] == p->rank;
    }
    if (!me)
      return pf_diag_error(d, PF_EDECODE, "plan: communicator %d does not include rank %d",
                           (int)c->id, (int)p->rank);
  }
  return 0;
}

static int op_check(const pf_plan *p, uint32_t i, pf_diag *d) {
  const pf_plan_op *op = &p->ops[i];
  int rc;
  if (op->name == NULL)
    return pf_diag_error(d, PF_EDECODE, "op %u: no name", i);
  if ((unsigned)op->kind > PF_OP_COLLECTIVE)
    return pf_diag_error(d, PF_EDECODE, "op %u (%s): unknown kind %d", i,
                         op->name, (int)op->kind);
  if (op->device < 0 || op->device >= p->num_devices)
    return pf_diag_error(d, PF_EDECODE,
                         "op %u (%s): device %d out of range (plan has %d)", i,
                         op->name, (int)op->device, (int)p->num_devices);
  if (box_of(op)->rank < 0 || box_of(op)->rank > PF_MAX_RANK)
    return pf_diag_error(d, PF_EDECODE, "op %u (%s): box rank %d out of range",
                         i, op->name, box_of(op)->rank);
  if (op->box == NULL &&
      (op->kind == PF_OP_COPY || op->kind == PF_OP_SEND || op->kind == PF_OP_RECV))
    return pf_diag_error(d, PF_EDECODE, "op %u (%s): %s op without a box", i, op->name,
                         kind_name(op->kind));
  if (op->kind != PF_OP_KERNEL && (op->kernel != NULL || op->attrs != NULL))
    return pf_diag_error(d, PF_EDECODE,
                         "op %u (%s): %s op with a kernel or attrs", i,
                         op->name, kind_name(op->kind));
  if ((rc = op_lists_check(p, i, d)) != 0) return rc;
  switch (op->kind) {
    case PF_OP_KERNEL:
      if ((rc = kernel_check(p, i, d)) != 0) return rc;
      /* fall through */
    case PF_OP_COPY:
      /* A copy runs on the destination's device and may read a buffer of
       * another device of this rank (a peer copy); so may a kernel, where
       * the two devices share memory (CPU devices: the executor refuses
       * the plan at load where they do not). It writes its own device's. */
      if ((rc = on_device(p, i, op->outputs, op->n_out, "output", d)) != 0) return rc;
      return op->kind == PF_OP_COPY ? copy_check(p, i, d) : 0;
    case PF_OP_SEND:
    case PF_OP_RECV:
      if ((rc = transfer_check(p, i, d)) != 0) return rc;
      return op->kind == PF_OP_SEND
                 ? on_device(p, i, op->inputs, op->n_in, "input", d)
                 : on_device(p, i, op->outputs, op->n_out, "output", d);
    case PF_OP_COLLECTIVE:
      return collective_check(p, i, d);
  }
  return 0;
}

static int is_reshard_piece(pf_op_kind k) {
  return k == PF_OP_COPY || k == PF_OP_RECV;
}

/* Two ops may write one buffer only when both are pieces of a reshard (each
 * fills its own box); anything else is a race between devices or steps. */
static int writers_check(const pf_plan *p, pf_diag *d) {
  uint32_t *writer;
  int rc = 0;
  if (p->n_buffers == 0) return 0;
  if ((writer = pf_mallocn(p->n_buffers, sizeof *writer)) == NULL)
    return pf_diag_error(d, PF_ENOMEM, "plan check: out of memory");
  for (uint32_t b = 0; b < p->n_buffers; b++) writer[b] = NO_WRITER;
  for (uint32_t i = 0; i < p->n_ops && rc == 0; i++) {
    const pf_plan_op *op = &p->ops[i];
    /* A kernel or copy reading another device's buffer runs on another
     * thread than the op that wrote it: it must wait for that op itself
     * (on its own device, the queue's order does). */
    for (uint32_t j = 0; (op->kind == PF_OP_KERNEL || op->kind == PF_OP_COPY) && j < op->n_in &&
                         rc == 0;
         j++) {
      uint32_t b = op->inputs[j], w = writer[b], k = 0;
      if (w == NO_WRITER || p->buffers[b].device == op->device) continue;
      while (k < op->n_deps && op->deps[k] != w) k++;
      if (k == op->n_deps)
        rc = pf_diag_error(d, PF_EDECODE,
                           "op %u (%s, %s) on device %d reads buffer %u of device %d, written "
                           "by op %u (%s), without depending on it",
                           i, op->name, kind_name(op->kind), (int)op->device, b,
                           (int)p->buffers[b].device, w, p->ops[w].name);
    }
    for (uint32_t j = 0; j < op->n_out && rc == 0; j++) {
      uint32_t b = op->outputs[j], w = writer[b];
      if (w != NO_WRITER && (w == i || !is_reshard_piece(op->kind) ||
                             !is_reshard_piece(p->ops[w].kind))) {
        rc = pf_diag_error(d, PF_EDECODE,
                           "op %u (%s, %s) writes buffer %u, also written by "
                           "op %u (%s, %s)", i, op->name, kind_name(op->kind),
                           b, w, p->ops[w].name, kind_name(p->ops[w].kind));
      }
      writer[b] = i; /* the last so far: the one a later reader waits for */
    }
  }
  free(writer);
  return rc;
}

int pf_plan_check(const pf_plan *p, int num_devices, pf_diag *diag) {
  int rc;
  if (diag != NULL) pf_diag_init(diag);
  if (p == NULL) return pf_diag_error(diag, PF_EINVAL, "plan check: no plan");
  if (p->num_devices < 1 || p->num_devices > num_devices)
    return pf_diag_error(diag, PF_EDECODE,
                         "plan: num_devices %d, the executor has %d devices",
                         (int)p->num_devices, num_devices);
  if (p->rank < 0 || p->num_inputs < 0 || p->num_outputs < 0)
    return pf_diag_error(diag, PF_EDECODE,
                         "plan: negative rank %d, num_inputs %d or num_outputs "
                         "%d", (int)p->rank, (int)p->num_inputs,
                         (int)p->num_outputs);
  if ((p->n_buffers && p->buffers == NULL) || (p->n_ops && p->ops == NULL))
    return pf_diag_error(diag, PF_EDECODE, "plan: missing buffers or ops");
  for (int dv = 0; p->arena_bytes && dv < p->num_devices; dv++)
    if (p->arena_bytes[dv] < 0 || p->arena_bytes[dv] > ((int64_t)1 << 50))
      return pf_diag_error(diag, PF_EDECODE, "plan: arena of device %d has %lld bytes", dv,
                           (long long)p->arena_bytes[dv]);
  for (uint32_t i = 0; i < p->n_buffers; i++)
    if ((rc = buffer_check(p, i, diag)) != 0) return rc;
  if ((rc = slots_comms_check(p, diag)) != 0) return rc;
  for (uint32_t i = 0; i < p->n_ops; i++)
    if ((rc = op_check(p, i, diag)) != 0) return rc;
  return writers_check(p, diag);
}
