/* How programs consume their inputs and lay out their outputs: the kernels'
 * sharding rules applied to a graph, the reductions inserted in front of
 * partial values, and the check that a whole graph only ever reads a value
 * in a layout that gives the right answer. */
#include <stdio.h>
#include <string.h>

#include "base/layout.h"
#include "graph/collective.h"
#include "graph/graph_internal.h"
#include "kernels/sharding.h"
#include "pathflow/error.h"

/* A partial value over one device is the value itself. */
static pf_sharding normalized(pf_sharding sh, int num_devices) {
  return sh.kind == PF_SHARD_PARTIAL && num_devices == 1 ? pf_replicated() : sh;
}

static int rule_of(const pf_kernel *k, int has_request, pf_sharding_fn *rule) {
  *rule = k->def.sharding;
  if (*rule == NULL && !has_request) *rule = pf_sharding_rule_replicated;
  return *rule != NULL;
}

/* Runs the rule on one candidate layout of the inputs. Without a rule (a
 * user kernel that declares its output shardings) the declaration stands,
 * but a partial input is never handed to it: nothing says it is linear. */
static int try_layout(const pf_graph *g, const pf_gprogram *p,
                      const pf_kernel *k, const pf_sharding *req,
                      const pf_sharding *in_sh, pf_sharding *out_sh,
                      pf_diag *d) {
  int n = g->slices[p->slice].num_devices, rc;
  pf_spec in_stack[PF_ARGS_ON_STACK], *in;
  pf_sharding_fn rule;
  for (int i = 0; i < p->n_out; i++)
    out_sh[i] = req ? req[i] : (pf_sharding){PF_SHARD_DEFAULT, 0};
  if (!rule_of(k, req != NULL, &rule)) {
    if (pf_sharding_count(p->n_in, in_sh, PF_SHARD_PARTIAL) > 0)
      return pf_sharding_refuse(d, k->name, p->n_in, in_sh,
                                "it has no sharding rule, so a partial input "
                                "must be reduced first");
    return 0;
  }
  if ((in = pf_args_scratch(in_stack, p->n_in, sizeof *in)) == NULL)
    return pf_diag_error(d, PF_ENOMEM, "%s: out of memory", k->name);
  for (int i = 0; i < p->n_in; i++) in[i] = *g->values[p->in[i]].spec;
  /* No inputs (fill, iota): no array, which also tells the compiler that
   * nothing unwritten is read. */
  rc = rule(p->attrs, p->n_in, p->n_in > 0 ? in : NULL, in_sh, n, p->n_out, out_sh, d);
  pf_args_scratch_free(in_stack, in);
  if (rc != 0) {
    if (d->code == 0) pf_diag_error(d, rc, "%s: sharding rule failed", k->name);
    return d->code;
  }
  for (int i = 0; i < p->n_out; i++) {
    char want[32], got[32];
    if ((unsigned)out_sh[i].kind > PF_SHARD_PARTIAL)
      return pf_diag_error(d, PF_ESHARDING,
                           "%s: sharding rule gave output %d no sharding",
                           k->name, i);
    out_sh[i] = normalized(out_sh[i], n);
    if (req != NULL && !pf_sharding_equal(out_sh[i], normalized(req[i], n)))
      return pf_diag_error(d, PF_ESHARDING,
                           "output %d was asked to be %s, but the kernel's "
                           "sharding rule makes it %s",
                           i, pf_sharding_str(req[i], want, sizeof want),
                           pf_sharding_str(out_sh[i], got, sizeof got));
  }
  return 0;
}

/* The other layouts the builder may consume inputs in, cheapest first:
 * partial inputs reduced; whole inputs cut like the first split one (no
 * communication); only the first split input kept split; all whole. */
static int candidate(const pf_graph *g, const pf_gprogram *p, int which,
                     const pf_sharding *dflt, pf_sharding *in_sh) {
  int first = -1;
  for (int i = 0; i < p->n_in; i++) {
    in_sh[i] = dflt[i];
    if (first < 0 && dflt[i].kind == PF_SHARD_SPLIT) first = i;
  }
  for (int i = 0; i < p->n_in; i++) {
    const pf_spec *s = g->values[p->in[i]].spec;
    if (which >= 1 && in_sh[i].kind == PF_SHARD_PARTIAL) in_sh[i] = pf_replicated();
    if (which == 2 && first >= 0 && in_sh[i].kind == PF_SHARD_REPLICATED) {
      /* Axes aligned at the end, as broadcasting aligns them. */
      const pf_spec *f = g->values[p->in[first]].spec;
      int axis = dflt[first].axis, mine = axis + s->rank - f->rank;
      if (mine >= 0 && mine < s->rank && s->dims[mine] == f->dims[axis])
        in_sh[i] = pf_split(mine);
    }
    if (which == 3 && i != first) in_sh[i] = pf_replicated();
    if (which == 4) in_sh[i] = pf_replicated();
  }
  return which == 0 || memcmp(in_sh, dflt, (size_t)p->n_in * sizeof *in_sh) != 0;
}

int pf_graph_choose_shardings(const pf_graph *g, pf_gprogram *p,
                              const pf_kernel *k, int fixed_in,
                              const pf_sharding *req, pf_sharding *out_sh,
                              pf_diag *d) {
  pf_sharding dflt[PF_MAX_ARGS], tried[5][PF_ARGS_ON_STACK];
  int n_tried = 0, last = fixed_in ? 0 : 4;
  pf_diag first;
  memcpy(dflt, p->in_shardings, (size_t)p->n_in * sizeof *dflt);
  pf_diag_init(&first);
  for (int c = 0; c <= last; c++) {
    pf_diag kd;
    int seen = 0;
    if (!candidate(g, p, c, dflt, p->in_shardings)) continue;
    /* Wide programs skip the check for repeats: a repeat only costs a rule
     * call. */
    for (int t = 0; t < n_tried && !seen && p->n_in <= PF_ARGS_ON_STACK; t++)
      seen = memcmp(tried[t], p->in_shardings,
                    (size_t)p->n_in * sizeof *dflt) == 0;
    if (seen) continue;
    if (p->n_in <= PF_ARGS_ON_STACK)
      memcpy(tried[n_tried], p->in_shardings, (size_t)p->n_in * sizeof *dflt);
    n_tried++;
    pf_diag_init(&kd);
    if (try_layout(g, p, k, req, p->in_shardings, out_sh, &kd) == 0) return 0;
    if (first.code == 0) first = kd;
  }
  memcpy(p->in_shardings, dflt, (size_t)p->n_in * sizeof *dflt);
  pf_diag_prefix(&first, "program \"%s\" (kernel \"%s\")%s", p->name, k->name,
                 fixed_in || n_tried == 1 ? ""
                                          : " (no other layout of its inputs "
                                            "works either)");
  return pf_diag_copy(d, &first);
}

/* ---- reductions in front of partial values -------------------------------- */

/* A name for the reduction of `v` that no program has, nor `avoid`. */
static void reduction_name(const pf_graph *g, int32_t v, const char *avoid,
                           char *out, size_t len) {
  const pf_gvalue *val = &g->values[v];
  const pf_gprogram *prod = &g->programs[val->producer];
  if (prod->n_out > 1)
    snprintf(out, len, "%.100s/sum%d", prod->name, val->output_index);
  else
    snprintf(out, len, "%.100s/sum", prod->name);
  for (int k = 1; pf_graph_find_program(g, out) >= 0 ||
                  (avoid != NULL && strcmp(out, avoid) == 0);
       k++)
    snprintf(out, len, "%.100s/sum%d_%d", prod->name, val->output_index, k);
}

int pf_graph_reduce_partial(pf_graph *g, int32_t v, const char *avoid,
                            int32_t *out, pf_diag *d) {
  pf_collective_desc desc;
  pf_value_t reduced;
  char name[PF_NAME_MAX + 1];
  int rc;
  if (g->values[v].reduced > 0) {
    *out = g->values[v].reduced - 1;
    return 0;
  }
  reduction_name(g, v, avoid, name, sizeof name);
  memset(&desc, 0, sizeof desc);
  desc.name = name;
  desc.kind = PF_ALLREDUCE;
  desc.slice = pf_slice_of(g->values[v].slice);
  desc.in = pf_value_of(v);
  desc.op = PF_REDUCE_SUM;
  /* pf_graph_collective reports into the graph's diag, which is d. */
  rc = pf_graph_collective(g, &desc, &reduced, NULL);
  if (rc != 0) {
    pf_diag_prefix(d, "reducing partial value %d", v);
    return rc;
  }
  *out = reduced.id;
  g->values[v].reduced = *out + 1;
  return 0;
}

int pf_graph_reduce_inputs(pf_graph *g, pf_gprogram *p, const char *avoid,
                           pf_diag *d) {
  for (int i = 0; i < p->n_in; i++) {
    const pf_gvalue *v = &g->values[p->in[i]];
    int rc;
    if (v->sharding.kind != PF_SHARD_PARTIAL ||
        p->in_shardings[i].kind == PF_SHARD_PARTIAL)
      continue;
    if ((rc = pf_graph_reduce_partial(g, p->in[i], avoid, &p->in[i], d)) != 0)
      return rc;
  }
  return 0;
}

/* ---- the whole-graph check ------------------------------------------------- */

int pf_graph_check_consumption(const pf_graph *g, const pf_gprogram *p,
                               int will_reduce, pf_diag *d) {
  int n = g->slices[p->slice].num_devices;
  for (int i = 0; i < p->n_in; i++) {
    const pf_gvalue *v = &g->values[p->in[i]];
    pf_sharding sh = p->in_shardings[i];
    char a[32], b[32];
    int partial = v->sharding.kind == PF_SHARD_PARTIAL &&
                  g->slices[v->slice].num_devices > 1;
    if (partial && ((sh.kind != PF_SHARD_PARTIAL && !will_reduce) ||
                    (sh.kind == PF_SHARD_PARTIAL &&
                     g->slices[v->slice].num_devices != n)))
      return pf_diag_error(d, PF_ESHARDING,
                           "program \"%s\" input %d: value %d is partial (each "
                           "of its %d devices holds a summand) but is consumed "
                           "%s over %d devices: reduce it first (an allreduce)",
                           p->name, i, p->in[i],
                           g->slices[v->slice].num_devices,
                           pf_sharding_str(sh, a, sizeof a), n);
    if (!partial && sh.kind == PF_SHARD_PARTIAL && n > 1)
      return pf_diag_error(d, PF_ESHARDING,
                           "program \"%s\" input %d: value %d is %s, consumed "
                           "as partial: it would be counted once per device",
                           p->name, i, p->in[i],
                           pf_sharding_str(v->sharding, b, sizeof b));
  }
  return 0;
}

int pf_graph_check_rule(const pf_graph *g, const pf_gprogram *p,
                        const pf_kernel *k, pf_diag *d) {
  pf_sharding have[PF_MAX_OUTS], out_sh[PF_MAX_OUTS];
  pf_diag kd;
  for (int i = 0; i < p->n_out; i++) have[i] = g->values[p->out[i]].sharding;
  pf_diag_init(&kd);
  /* Stored shardings are requests the rule must give back. A rule-less
   * kernel's stored outputs are its author's declaration. */
  if (try_layout(g, p, k, have, p->in_shardings, out_sh, &kd) != 0) {
    pf_diag_prefix(&kd, "program \"%s\" (kernel \"%s\")", p->name, k->name);
    return pf_diag_copy(d, &kd);
  }
  return 0;
}

int pf_graph_check_ends(const pf_graph *g, pf_diag *d) {
  for (size_t i = 0; i < g->n_inputs; i++) {
    const pf_gvalue *v = &g->values[g->inputs[i].value];
    if (v->sharding.kind == PF_SHARD_PARTIAL)
      return pf_diag_error(d, PF_ESHARDING,
                           "input \"%s\": inputs are replicated or split, "
                           "never partial",
                           g->inputs[i].name);
  }
  for (size_t i = 0; i < g->n_outputs; i++) {
    const pf_gvalue *v = &g->values[g->outputs[i].value];
    if (v->sharding.kind == PF_SHARD_PARTIAL &&
        g->slices[v->slice].num_devices > 1)
      return pf_diag_error(d, PF_ESHARDING,
                           "output \"%s\": value %d is partial (each device "
                           "holds a summand): reduce it before it is fetched",
                           g->outputs[i].name, g->outputs[i].value);
  }
  return 0;
}
