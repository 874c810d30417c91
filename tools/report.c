/* What `pathflow plan` prints: placement, each executor's queue in gang
 * order, transfers, collectives, peak memory; and Graphviz output. */
#include <inttypes.h>
#include <stdio.h>

#include "graph/collective.h"
#include "tools/tool.h"

static const char *kind_name(pf_op_kind k) {
  static const char *const n[] = {"kernel", "copy", "send", "recv", "collective"};
  return (unsigned)k < 5 ? n[k] : "?";
}

static int64_t box_bytes(const pf_plan *p, const pf_plan_op *op) {
  uint32_t b = op->kind == PF_OP_RECV || op->kind == PF_OP_COPY ? op->outputs[0] : op->inputs[0];
  int64_t n = (int64_t)pf_dtype_size(p->buffers[b].spec->dtype);
  for (int i = 0; op->box && i < op->box->rank; i++) n *= op->box->extent[i];
  return n;
}

void tool_print_plan(FILE *f, const pf_graph *g, const pf_compiled *c, const pf_cluster *cl) {
  char buf[128];
  uint64_t transfers = 0, bytes = 0, collectives = 0;
  fprintf(f, "programs (%zu) and their devices (global: rank.local@host)\n", g->n_programs);
  for (size_t i = 0; i < g->n_programs; i++) {
    const pf_gprogram *p = &g->programs[i];
    int n = g->slices[p->slice].num_devices;
    fprintf(f, "  %-24s %-18s slice %d:", p->name, p->kernel, p->slice);
    for (int s = 0; s < n && s < 16; s++) {
      const pf_cluster_device *d = &cl->devices[c->placed[c->slice_devices[p->slice] + s]];
      fprintf(f, " %d.%d@%d", (int)d->rank, (int)d->local, (int)d->host);
    }
    fprintf(f, "%s\n", n > 16 ? " ..." : "");
  }
  for (int r = 0; r < c->n_ranks; r++) {
    const pf_plan *p = c->plans[r];
    if (p->n_ops == 0 && p->n_buffers == 0) continue;
    fprintf(f, "rank %d: %u ops in gang order, %u buffers\n", r, p->n_ops, p->n_buffers);
    for (uint32_t i = 0; i < p->n_ops; i++) {
      const pf_plan_op *op = &p->ops[i];
      fprintf(f, "  %5u dev %d %-10s %-22s", i, (int)op->device, kind_name(op->kind), op->name);
      switch (op->kind) {
        case PF_OP_KERNEL:
          fprintf(f, " %s shard %d/%d -> %s", op->kernel, (int)op->shard, (int)op->num_shards,
                  pf_spec_str(p->buffers[op->outputs[0]].spec, buf, sizeof buf));
          break;
        case PF_OP_COPY: {
          /* A GPU's staging copies move between its memory and host buffers. */
          int from_host = p->buffers[op->inputs[0]].host, to_host = p->buffers[op->outputs[0]].host;
          fprintf(f, " %" PRId64 " bytes from device %d%s", box_bytes(p, op),
                  (int)p->buffers[op->inputs[0]].device,
                  from_host && !to_host ? " (host to device)"
                  : to_host && !from_host ? " (device to host)"
                                          : "");
          break;
        }
        case PF_OP_SEND:
        case PF_OP_RECV:
          fprintf(f, " %" PRId64 " bytes %s rank %d, tag %" PRId64, box_bytes(p, op),
                  op->kind == PF_OP_SEND ? "to" : "from", (int)op->peer, op->tag);
          if (op->kind == PF_OP_SEND) {
            transfers++;
            bytes += (uint64_t)box_bytes(p, op);
          }
          break;
        case PF_OP_COLLECTIVE:
          fprintf(f, " %s over %s, %zu bytes per shard",
                  pf_collective_name((pf_collective_kind)op->collective),
                  op->comm < 0 ? "devices of this rank" : "a communicator",
                  pf_spec_nbytes(p->buffers[op->inputs[0]].spec));
          collectives++;
          break;
      }
      if (op->n_deps) fprintf(f, "  (after %u)", op->n_deps);
      fputc('\n', f);
    }
  }
  fprintf(f, "transfers between ranks: %" PRIu64 " (%" PRIu64 " bytes per step); collective ops: %" PRIu64 "\n",
          transfers, bytes, collectives);
  fprintf(f, "peak memory per device (bytes):\n");
  for (int d = 0; d < c->n_devices; d++)
    if (c->peak[d] > 0)
      fprintf(f, "  device %d (rank %d.%d): %" PRId64 "%s\n", d, (int)cl->devices[d].rank,
              (int)cl->devices[d].local, c->peak[d],
              cl->devices[d].memory > 0 && c->peak[d] > cl->devices[d].memory ? "  OVER" : "");
  fprintf(f, "dispatch: %s; stage order:", c->dispatch ? "sequential" : "parallel");
  for (int k = 0; k < c->n_stages && k < 32; k++) fprintf(f, " %d", (int)c->stages[k]);
  fprintf(f, "%s\n", c->n_stages > 32 ? " ..." : "");
}

void tool_dot_graph(FILE *f, const pf_graph *g) {
  char buf[128];
  fprintf(f, "digraph graph_ {\n  rankdir=LR; node [fontname=\"monospace\", fontsize=10];\n");
  for (size_t i = 0; i < g->n_inputs; i++)
    fprintf(f, "  v%d [shape=box, label=\"%s\"];\n", g->inputs[i].value, g->inputs[i].name);
  for (size_t i = 0; i < g->n_programs; i++)
    fprintf(f, "  p%zu [shape=ellipse, label=\"%s\\n%s on slice %d\"];\n", i, g->programs[i].name,
            g->programs[i].kernel, g->programs[i].slice);
  for (size_t i = 0; i < g->n_programs; i++) {
    const pf_gprogram *p = &g->programs[i];
    for (int k = 0; k < p->n_in; k++) {
      const pf_gvalue *v = &g->values[p->in[k]];
      if (v->producer >= 0)
        fprintf(f, "  p%d -> p%zu [label=\"%s\"];\n", v->producer, i,
                pf_spec_str(v->spec, buf, sizeof buf));
      else
        fprintf(f, "  v%d -> p%zu;\n", p->in[k], i);
    }
  }
  for (size_t i = 0; i < g->n_outputs; i++) {
    const pf_gvalue *v = &g->values[g->outputs[i].value];
    fprintf(f, "  o%zu [shape=box, label=\"%s\"];\n", i, g->outputs[i].name);
    if (v->producer >= 0) fprintf(f, "  p%d -> o%zu;\n", v->producer, i);
  }
  fprintf(f, "}\n");
}

void tool_dot_plan(FILE *f, const pf_compiled *c) {
  fprintf(f, "digraph plan {\n  rankdir=LR; node [fontname=\"monospace\", fontsize=9];\n");
  for (int r = 0; r < c->n_ranks; r++) {
    const pf_plan *p = c->plans[r];
    if (p->n_ops == 0) continue;
    fprintf(f, "  subgraph cluster_rank%d {\n    label=\"rank %d\";\n", r, r);
    for (uint32_t i = 0; i < p->n_ops; i++)
      fprintf(f, "    r%d_%u [shape=%s, label=\"%s\\n%s d%d\"];\n", r, i,
              p->ops[i].kind == PF_OP_KERNEL ? "ellipse" : "box", p->ops[i].name,
              kind_name(p->ops[i].kind), (int)p->ops[i].device);
    fprintf(f, "  }\n");
    for (uint32_t i = 0; i < p->n_ops; i++)
      for (uint32_t k = 0; k < p->ops[i].n_deps; k++)
        fprintf(f, "  r%d_%u -> r%d_%u;\n", r, p->ops[i].deps[k], r, i);
  }
  /* A send and the receive with the same tag are one transfer. */
  for (int r = 0; r < c->n_ranks; r++)
    for (uint32_t i = 0; i < c->plans[r]->n_ops; i++) {
      const pf_plan_op *s = &c->plans[r]->ops[i];
      if (s->kind != PF_OP_SEND) continue;
      for (uint32_t j = 0; j < c->plans[s->peer]->n_ops; j++) {
        const pf_plan_op *q = &c->plans[s->peer]->ops[j];
        if (q->kind == PF_OP_RECV && q->tag == s->tag)
          fprintf(f, "  r%d_%u -> r%d_%u [style=dashed, color=blue];\n", r, i, (int)s->peer, j);
      }
    }
  fprintf(f, "}\n");
}
