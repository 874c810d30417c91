#include "scheduler/plan_builder.h"

#include <stdlib.h>
#include <string.h>

#include "base/util.h"
#include "pathflow/error.h"

typedef struct writers {
  uint32_t *ops;
  size_t n, cap;
} writers;

struct pf_plan_builder {
  pf_plan *plan;
  size_t cap_buffers, cap_ops, cap_slots, cap_comms;
  writers *w; /* per buffer: the ops that write it */
  size_t cap_w;
  uint32_t *deps; /* scratch */
  size_t cap_deps;
};

int pf_pb_slot(pf_plan_builder *b, int32_t output, int32_t shard, uint32_t buffer) {
  pf_plan *p = b->plan;
  if (pf_grow((void **)&p->slots, &b->cap_slots, p->n_slots + 1, sizeof *p->slots))
    return PF_ENOMEM;
  p->slots[p->n_slots].output = output;
  p->slots[p->n_slots].shard = shard;
  p->slots[p->n_slots].buffer = buffer;
  p->n_slots++;
  return 0;
}

int pf_pb_comm(pf_plan_builder *b, int32_t id, const int32_t *ranks, uint32_t n) {
  pf_plan *p = b->plan;
  int32_t *copy;
  for (uint32_t i = 0; i < p->n_comms; i++)
    if (p->comms[i].id == id) return 0;
  if (pf_grow((void **)&p->comms, &b->cap_comms, p->n_comms + 1, sizeof *p->comms))
    return PF_ENOMEM;
  if ((copy = pf_mallocn(n, sizeof *copy)) == NULL) return PF_ENOMEM;
  memcpy(copy, ranks, n * sizeof *copy);
  p->comms[p->n_comms].id = id;
  p->comms[p->n_comms].n_ranks = n;
  p->comms[p->n_comms].ranks = copy;
  p->n_comms++;
  return 0;
}

int pf_pb_create(int32_t rank, int32_t num_devices, uint64_t executable,
                 pf_plan_builder **out) {
  pf_plan_builder *b = calloc(1, sizeof *b);
  if (b == NULL || (b->plan = calloc(1, sizeof *b->plan)) == NULL) {
    free(b);
    return PF_ENOMEM;
  }
  b->plan->rank = rank;
  b->plan->num_devices = num_devices;
  b->plan->executable = executable;
  *out = b;
  return 0;
}

void pf_pb_destroy(pf_plan_builder *b) {
  if (b == NULL) return;
  for (size_t i = 0; i < b->cap_w; i++) free(b->w[i].ops);
  free(b->w);
  free(b->deps);
  pf_plan_free(b->plan);
  free(b);
}

pf_plan *pf_pb_take(pf_plan_builder *b) {
  pf_plan *p = b->plan;
  b->plan = NULL;
  return p;
}

int pf_pb_buffer(pf_plan_builder *b, int32_t device, const pf_spec *spec,
                 int32_t shard, uint32_t *out) {
  pf_plan *p = b->plan;
  pf_plan_buffer *pb;
  if (pf_grow((void **)&p->buffers, &b->cap_buffers, p->n_buffers + 1,
              sizeof *p->buffers))
    return PF_ENOMEM;
  if (b->cap_w < b->cap_buffers) {
    writers *nw = realloc(b->w, b->cap_buffers * sizeof *nw);
    if (nw == NULL) return PF_ENOMEM;
    memset(nw + b->cap_w, 0, (b->cap_buffers - b->cap_w) * sizeof *nw);
    b->w = nw;
    b->cap_w = b->cap_buffers;
  }
  pb = &p->buffers[p->n_buffers];
  memset(pb, 0, sizeof *pb);
  pb->device = device;
  pb->spec = *spec;
  pb->input = -1;
  pb->output = -1;
  pb->shard = shard;
  *out = p->n_buffers++;
  return 0;
}

pf_plan_buffer *pf_pb_buffer_at(pf_plan_builder *b, uint32_t index) {
  return &b->plan->buffers[index];
}

static uint32_t *dup_u32(const uint32_t *v, uint32_t n) {
  uint32_t *d = pf_mallocn(n, sizeof *d);
  if (d != NULL && n > 0) memcpy(d, v, n * sizeof *d);
  return d;
}

int pf_pb_op(pf_plan_builder *b, const pf_plan_op *tmpl, const uint32_t *in,
             uint32_t n_in, const uint32_t *out, uint32_t n_out,
             uint32_t *index) {
  pf_plan *p = b->plan;
  pf_plan_op *op;
  size_t n_deps = 0;
  uint32_t me = p->n_ops;
  if (pf_grow((void **)&p->ops, &b->cap_ops, p->n_ops + 1, sizeof *p->ops))
    return PF_ENOMEM;
  for (uint32_t i = 0; i < n_in; i++) {
    const writers *w = &b->w[in[i]];
    for (size_t k = 0; k < w->n; k++) {
      int seen = 0;
      for (size_t j = 0; j < n_deps && !seen; j++) seen = b->deps[j] == w->ops[k];
      if (seen) continue;
      if (pf_grow((void **)&b->deps, &b->cap_deps, n_deps + 1, sizeof *b->deps))
        return PF_ENOMEM;
      b->deps[n_deps++] = w->ops[k];
    }
  }
  op = &p->ops[me];
  *op = *tmpl;
  op->name = pf_strdup(tmpl->name ? tmpl->name : "");
  op->kernel = tmpl->kernel ? pf_strdup(tmpl->kernel) : NULL;
  op->attrs = NULL;
  op->inputs = dup_u32(in, n_in);
  op->outputs = dup_u32(out, n_out);
  op->deps = dup_u32(b->deps, (uint32_t)n_deps);
  op->n_in = n_in;
  op->n_out = n_out;
  op->n_deps = (uint32_t)n_deps;
  if (op->name == NULL || (tmpl->kernel && op->kernel == NULL) ||
      op->inputs == NULL || op->outputs == NULL || op->deps == NULL ||
      (tmpl->attrs && pf_attrs_clone(tmpl->attrs, &op->attrs) != 0)) {
    free(op->name);
    free(op->kernel);
    free(op->inputs);
    free(op->outputs);
    free(op->deps);
    return PF_ENOMEM;
  }
  p->n_ops++;
  for (uint32_t i = 0; i < n_out; i++) {
    writers *w = &b->w[out[i]];
    if (pf_grow((void **)&w->ops, &w->cap, w->n + 1, sizeof *w->ops)) return PF_ENOMEM;
    w->ops[w->n++] = me;
  }
  if (index) *index = me;
  return 0;
}
