#include "scheduler/memory.h"

#include <stdlib.h>
#include <string.h>

#include "base/util.h"
#include "pathflow/error.h"

typedef struct life {
  int64_t first, last; /* op positions; -1: before the step; n_ops: after */
  int64_t size;
  uint32_t buffer;
  int32_t shareable;
} life;

static int64_t aligned(int64_t n) { return (n + PF_ALIGN - 1) / PF_ALIGN * PF_ALIGN; }

/* Lifetimes and whether each buffer may live in the arena. */
static void lifetimes(const pf_plan *p, life *L) {
  for (uint32_t b = 0; b < p->n_buffers; b++) {
    const pf_plan_buffer *pb = &p->buffers[b];
    L[b].buffer = b;
    /* Inputs are held (by the caller's buffer or the feed) for the whole
     * step; outputs from their writer on. */
    L[b].first = pb->input >= 0 ? -1 : INT64_MAX;
    L[b].last = pb->output >= 0 || pb->input >= 0 ? (int64_t)p->n_ops : -1;
    L[b].size = aligned((int64_t)pf_spec_nbytes(pb->spec));
    /* A host staging buffer is not its device's memory: never in the
     * arena, and not counted in the device's peak (see live_peak). */
    L[b].shareable = pb->input < 0 && pb->output < 0 && !pb->host;
  }
  for (uint32_t i = 0; i < p->n_ops; i++) {
    const pf_plan_op *op = &p->ops[i];
    /* Only kernels and copies run on the buffer's own device queue; a
     * transfer or collective touches memory from another thread. */
    int local = op->kind == PF_OP_KERNEL || op->kind == PF_OP_COPY;
    for (uint32_t k = 0; k < op->n_out; k++) {
      life *l = &L[op->outputs[k]];
      int64_t at = op->kind == PF_OP_RECV ? -1 : (int64_t)i; /* receives allocate at start */
      if (at < l->first) l->first = at;
      if (!local || p->buffers[op->outputs[k]].device != op->device) l->shareable = 0;
    }
    for (uint32_t k = 0; k < op->n_in; k++) {
      life *l = &L[op->inputs[k]];
      if ((int64_t)i > l->last) l->last = i;
      if (!local || p->buffers[op->inputs[k]].device != op->device) l->shareable = 0;
    }
  }
  for (uint32_t b = 0; b < p->n_buffers; b++) {
    if (L[b].first == INT64_MAX) L[b].first = -1; /* never written: zero-size reshard target */
    if (L[b].last < L[b].first) L[b].last = L[b].first; /* written, never read */
  }
}

static int by_first(const void *a, const void *b) {
  const life *x = a, *y = b;
  if (x->first != y->first) return x->first < y->first ? -1 : 1;
  if (x->size != y->size) return x->size > y->size ? -1 : 1;
  return x->buffer < y->buffer ? -1 : (x->buffer > y->buffer);
}

typedef struct slot {
  int64_t offset, size, last;
} slot;

/* Linear scan over one device's shareable buffers in order of first use:
 * expire what died, then take the lowest gap that fits. Returns the arena
 * size. `active` has room for n slots. */
static int64_t place(pf_plan *p, life *L, size_t n, slot *active) {
  size_t n_active = 0;
  int64_t arena = 0;
  for (size_t k = 0; k < n; k++) {
    int64_t at = 0;
    size_t pos = 0, w = 0;
    /* A buffer last read by op i is free for a buffer first written after i. */
    for (size_t j = 0; j < n_active; j++)
      if (active[j].last >= L[k].first) active[w++] = active[j];
    n_active = w;
    for (pos = 0; pos < n_active; pos++) {
      if (active[pos].offset - at >= L[k].size) break;
      at = PF_MAXOF(at, active[pos].offset + active[pos].size);
    }
    memmove(&active[pos + 1], &active[pos], (n_active - pos) * sizeof *active);
    active[pos].offset = at;
    active[pos].size = L[k].size;
    active[pos].last = L[k].last;
    n_active++;
    p->buffers[L[k].buffer].in_arena = 1;
    p->buffers[L[k].buffer].offset = at;
    arena = PF_MAXOF(arena, at + L[k].size);
  }
  return arena;
}

/* Most bytes of non-arena buffers live at once on `device`. */
static int64_t live_peak(const pf_plan *p, const life *L, int device, int64_t *delta) {
  int64_t peak = 0, now = 0;
  /* delta[t + 1] for t in [-1, n_ops]: bytes born at t minus bytes dead
   * after t. */
  memset(delta, 0, ((size_t)p->n_ops + 3) * sizeof *delta);
  for (uint32_t b = 0; b < p->n_buffers; b++) {
    if (p->buffers[b].device != device || p->buffers[b].in_arena || p->buffers[b].host) continue;
    delta[L[b].first + 1] += L[b].size;
    delta[L[b].last + 2] -= L[b].size;
  }
  for (size_t t = 0; t < (size_t)p->n_ops + 3; t++) {
    now += delta[t];
    peak = PF_MAXOF(peak, now);
  }
  return peak;
}

int pf_memory_plan(pf_plan *p, int64_t *peak, pf_diag *d) {
  /* Not zeroed: each is written before it is read (lifetimes, the device's
   * list, the scan's front, live_peak), and a plan of a million buffers
   * would otherwise back a hundred megabytes that the scan never touches
   * (its active slots are few). */
  life *L = pf_mallocn(p->n_buffers, sizeof *L), *mine = pf_mallocn(p->n_buffers, sizeof *L);
  slot *active = pf_mallocn(p->n_buffers, sizeof *active);
  int64_t *delta = pf_mallocn((size_t)p->n_ops + 3, sizeof *delta);
  int rc = 0;
  free(p->arena_bytes);
  p->arena_bytes = pf_calloc((size_t)p->num_devices, sizeof *p->arena_bytes);
  if (!L || !mine || !active || !delta || !p->arena_bytes) {
    rc = pf_diag_error(d, PF_ENOMEM, "memory plan: out of memory");
    goto done;
  }
  lifetimes(p, L);
  for (int dev = 0; dev < p->num_devices; dev++) {
    size_t n = 0, k;
    for (uint32_t b = 0; b < p->n_buffers; b++)
      if (p->buffers[b].device == dev && L[b].shareable && L[b].size > 0) mine[n++] = L[b];
    /* by_first is a total order (the buffer last), so a list already in
     * it is the one qsort would give: a scheduler's plan lists its
     * kernels' outputs in the order they are written, and sorting half a
     * million of them anyway took a tenth of the memory plan. */
    for (k = 1; k < n && by_first(&mine[k - 1], &mine[k]) < 0; k++) continue;
    if (k < n) qsort(mine, n, sizeof *mine, by_first);
    p->arena_bytes[dev] = place(p, mine, n, active);
    peak[dev] = p->arena_bytes[dev] + live_peak(p, L, dev, delta);
  }
done:
  free(L);
  free(mine);
  free(active);
  free(delta);
  return rc;
}
