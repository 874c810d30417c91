#include "scheduler/staging.h"

#include <stdlib.h>
#include <string.h>

#include "base/util.h"
#include "pathflow/error.h"

int pf_stage_memo_init(pf_stage_memo *m, int n_ranks) {
  memset(m, 0, sizeof *m);
  m->twin = pf_calloc((size_t)n_ranks, sizeof *m->twin);
  m->cap = pf_calloc((size_t)n_ranks, sizeof *m->cap);
  if (m->twin == NULL || m->cap == NULL) {
    pf_stage_memo_free(m);
    return PF_ENOMEM;
  }
  m->n_ranks = n_ranks;
  return 0;
}

void pf_stage_memo_free(pf_stage_memo *m) {
  for (int r = 0; m->twin && r < m->n_ranks; r++) free(m->twin[r]);
  free(m->twin);
  free(m->cap);
  memset(m, 0, sizeof *m);
}

/* Room for buffer index b in rank r's table, new entries UINT32_MAX. */
static int memo_room(pf_stage_memo *m, int32_t r, uint32_t b) {
  size_t old = m->cap[r];
  if ((size_t)b < old) return 0;
  if (pf_grow((void **)&m->twin[r], &m->cap[r], (size_t)b + 1, sizeof **m->twin)) return PF_ENOMEM;
  memset(m->twin[r] + old, 0xff, (m->cap[r] - old) * sizeof **m->twin);
  return 0;
}

int pf_stage_buffer(pf_stage_memo *m, pf_plan_builder *pb, int32_t rank, uint32_t b,
                    int in_device_memory, int want_host, int32_t program, const char *name,
                    uint32_t *out) {
  const pf_plan_buffer *src = pf_pb_buffer_at(pb, b);
  int is_host = src->host || !in_device_memory;
  pf_plan_op op;
  pf_box box;
  uint32_t t;
  if (is_host == (want_host != 0)) {
    *out = b;
    return 0;
  }
  if (memo_room(m, rank, b)) return PF_ENOMEM;
  if (m->twin[rank][b] != UINT32_MAX) {
    *out = m->twin[rank][b];
    return 0;
  }
  if (pf_pb_buffer(pb, src->device, src->spec, src->shard, &t)) return PF_ENOMEM;
  src = pf_pb_buffer_at(pb, b); /* the buffer array may have moved */
  pf_pb_buffer_at(pb, t)->host = want_host ? 1 : 0;
  memset(&box, 0, sizeof box);
  box.rank = src->spec->rank;
  for (int i = 0; i < box.rank; i++) box.extent[i] = src->spec->dims[i];
  memset(&op, 0, sizeof op);
  op.kind = PF_OP_COPY;
  op.device = src->device;
  op.program = program;
  op.name = (char *)name;
  op.comm = -1;
  op.box = &box; /* copied by pf_pb_op */
  if (pf_pb_op(pb, &op, &b, 1, &t, 1, NULL) || memo_room(m, rank, t)) return PF_ENOMEM;
  m->twin[rank][b] = t;
  m->twin[rank][t] = b; /* b is never written again: it is t's twin too */
  *out = t;
  return 0;
}

/* The axis a staged transfer is cut along: its first of more than one
 * element; -1 when none (a single element). */
static int cut_axis(const pf_box *box) {
  for (int i = 0; i < box->rank; i++)
    if (box->extent[i] > 1) return i;
  return -1;
}

int pf_stage_chunks(const pf_box *box, size_t elem) {
  int a = cut_axis(box);
  int64_t bytes = (int64_t)elem, n;
  if (a < 0) return 1;
  for (int i = 0; i < box->rank; i++) bytes *= box->extent[i];
  n = (bytes + PF_STAGE_CHUNK_BYTES - 1) / PF_STAGE_CHUNK_BYTES;
  if (n > box->extent[a]) n = box->extent[a];
  return n < 1 ? 1 : (int)n;
}

void pf_stage_chunk(const pf_box *box, int n_chunks, int k, pf_box *out) {
  int a = cut_axis(box);
  int64_t lo, hi;
  *out = *box;
  if (a < 0 || n_chunks <= 1) return;
  /* Even shares of the axis. */
  lo = box->extent[a] * k / n_chunks;
  hi = box->extent[a] * (k + 1) / n_chunks;
  out->src_offset[a] += lo;
  out->dst_offset[a] += lo;
  out->extent[a] = hi - lo;
}
