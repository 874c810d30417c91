/* pf_graph_grad: reverse-mode differentiation of a graph. Programs between
 * the parameters and the loss are visited in reverse topological order;
 * each one's gradient rule appends the programs for its inputs' gradients,
 * and gradients reaching a value from several consumers are added up. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/layout.h"
#include "base/util.h"
#include "graph/collective.h"
#include "graph/grad_rules.h"
#include "graph/graph_internal.h"
#include "pathflow/error.h"
#include "pathflow/grad.h"

void pf_grad_name(const pf_grad_call *call, const char *what, char *out) {
  snprintf(out, PF_NAME_MAX + 1, "%.80s/%.40s", call->name, what);
  for (int k = 1; pf_graph_find_program(call->graph, out) >= 0; k++)
    snprintf(out, PF_NAME_MAX + 1, "%.80s/%.30s_%d", call->name, what, k);
}

int pf_grad_program(const pf_grad_call *call, const char *what,
                    const char *kernel, const pf_attrs *attrs, int n_in,
                    const pf_value_t *in, pf_value_t *out) {
  char name[PF_NAME_MAX + 1];
  pf_grad_name(call, what, name);
  return pf_graph_program(call->graph,
                          &(pf_program_desc){.name = name, .kernel = kernel,
                                             .attrs = attrs,
                                             .slice = call->slice, .n_in = n_in,
                                             .in = in},
                          out, NULL);
}

/* What the walk keeps: per value of the original graph, its accumulated
 * gradient (-1: none yet) and whether it depends on a parameter. Values and
 * programs are the graph's indexes; they become ids only where the walk
 * calls the public builders and a rule. */
typedef struct walk {
  pf_graph *g;
  size_t n_values, n_programs;
  int32_t *grad;
  uint8_t *from_param;
  uint8_t *to_loss; /* per program: some output reaches the loss */
} walk;

static int is_float(pf_dtype dt) { return dt == PF_F32 || dt == PF_F64; }

/* pf_graph_program for a one-output program, writing the index of its
 * output to *out. */
static int program1(pf_graph *g, const pf_program_desc *d, int32_t *out) {
  pf_value_t v;
  int rc = pf_graph_program(g, d, &v, NULL);
  if (rc == 0) *out = v.id;
  return rc;
}

/* A gradient that reached value v from a consumer on another slice goes
 * back to v's slice, read as the graph reads by default there. */
static int move_home(walk *w, int32_t v, int32_t *gv, pf_sharding *want) {
  pf_graph *g = w->g;
  const pf_gvalue *val = &g->values[v], *gval = &g->values[*gv];
  char name[PF_NAME_MAX + 1];
  const char *owner = val->producer >= 0 ? g->programs[val->producer].name : "input";
  pf_value_t in = pf_value_of(*gv);
  pf_program_desc d = {.name = name, .kernel = "identity",
                       .slice = pf_slice_of(val->slice), .n_in = 1, .in = &in,
                       .in_shardings = want};
  if (gval->slice == val->slice &&
      (want == NULL || pf_sharding_equal(gval->sharding, *want)))
    return 0;
  snprintf(name, sizeof name, "%.80s/grad_home%d", owner, (int)v);
  for (int k = 1; pf_graph_find_program(g, name) >= 0; k++)
    snprintf(name, sizeof name, "%.80s/grad_home%d_%d", owner, (int)v, k);
  return program1(g, &d, gv);
}

/* grad[v] += contribution (both brought to v's slice first). */
static int accumulate(walk *w, int32_t v, int32_t contribution) {
  char name[PF_NAME_MAX + 1];
  pf_graph *g = w->g;
  int rc = move_home(w, v, &contribution, NULL);
  if (rc != 0) return rc;
  if (w->grad[v] < 0) {
    w->grad[v] = contribution;
    return 0;
  }
  snprintf(name, sizeof name, "grad_sum%d", (int)v);
  for (int k = 1; pf_graph_find_program(g, name) >= 0; k++)
    snprintf(name, sizeof name, "grad_sum%d_%d", (int)v, k);
  return program1(g,
                  &(pf_program_desc){.name = name, .kernel = "add",
                                     .slice = pf_slice_of(g->values[v].slice), .n_in = 2,
                                     .in = (pf_value_t[]){pf_value_of(w->grad[v]),
                                                          pf_value_of(contribution)}},
                  &w->grad[v]);
}

/* Marks the programs some of whose outputs reach the loss. */
static int mark_to_loss(walk *w, int32_t loss) {
  pf_graph *g = w->g;
  int32_t *stack = pf_mallocn(w->n_programs + 1, sizeof *stack);
  size_t top = 0;
  if (stack == NULL) return PF_ENOMEM;
  /* Marked when pushed, so each program is pushed once. */
  if (g->values[loss].producer >= 0) {
    stack[top++] = g->values[loss].producer;
    w->to_loss[stack[0]] = 1;
  }
  while (top > 0) {
    int32_t p = stack[--top];
    for (int i = 0; i < g->programs[p].n_in; i++) {
      int32_t q = g->values[g->programs[p].in[i]].producer;
      if (q >= 0 && !w->to_loss[q]) {
        w->to_loss[q] = 1;
        stack[top++] = q;
      }
    }
  }
  free(stack);
  return 0;
}

static int differentiate(walk *w, int32_t pid, pf_diag *d) {
  pf_graph *g = w->g;
  const pf_gprogram *p = &g->programs[pid];
  pf_value_t out_grad[PF_MAX_OUTS], in_grad_stack[PF_ARGS_ON_STACK], *in_grad;
  int wants_stack[PF_ARGS_ON_STACK], *wants, any = 0, rc;
  const pf_kernel *k = pf_registry_find(g->env.registry, p->kernel,
                                        g->slices[p->slice].kind);
  pf_grad_fn rule = k && k->def.grad ? k->def.grad : pf_grad_builtin_rule(p->kernel);
  pf_grad_call call;
  for (int o = 0; o < p->n_out; o++) {
    out_grad[o] = pf_value_of(w->grad[p->out[o]]);
    any |= out_grad[o].id >= 0;
  }
  if (!any) return 0;
  if (rule == NULL)
    return pf_diag_error(d, PF_ENOTSUP,
                         "gradient: program \"%s\" (kernel \"%s\") is on the way "
                         "from a parameter to the loss, and its kernel has no "
                         "gradient rule",
                         p->name, p->kernel);
  in_grad = pf_args_scratch(in_grad_stack, p->n_in, sizeof *in_grad);
  wants = pf_args_scratch(wants_stack, p->n_in, sizeof *wants);
  if (in_grad == NULL || wants == NULL) {
    pf_args_scratch_free(in_grad_stack, in_grad);
    pf_args_scratch_free(wants_stack, wants);
    return pf_diag_error(d, PF_ENOMEM, "gradient: out of memory");
  }
  for (int i = 0; i < p->n_in; i++) {
    in_grad[i] = PF_NO_VALUE;
    wants[i] = w->from_param[p->in[i]];
  }
  /* The rule's builders may grow the program array: copy what it reads. */
  call = (pf_grad_call){.graph = g, .kernel = p->kernel, .attrs = p->attrs,
                        .slice = pf_slice_of(p->slice), .n_in = p->n_in, .n_out = p->n_out,
                        .out_grad = out_grad, .in_grad = in_grad, .wants = wants};
  {
    char *name = pf_strdup(p->name);
    char *kernel = pf_strdup(p->kernel);
    pf_attrs *attrs = NULL;
    pf_value_t *in = pf_mallocn((size_t)p->n_in + (size_t)p->n_out, sizeof *in);
    pf_sharding *sh = pf_mallocn((size_t)p->n_in, sizeof *sh);
    if (name == NULL || kernel == NULL || in == NULL || (p->n_in && sh == NULL) ||
        pf_attrs_clone(p->attrs, &attrs) != 0) {
      rc = pf_diag_error(d, PF_ENOMEM, "gradient: out of memory");
    } else {
      pf_values_of(in, p->in, p->n_in);
      pf_values_of(in + p->n_in, p->out, p->n_out);
      if (p->n_in) memcpy(sh, p->in_shardings, (size_t)p->n_in * sizeof *sh);
      call.name = name;
      call.kernel = kernel;
      call.attrs = attrs;
      call.in = in;
      call.out = in + p->n_in;
      call.in_shardings = sh;
      pf_diag_init(g->env.diag);
      rc = rule(&call);
      if (rc != 0) {
        if (g->env.diag->code == 0)
          pf_diag_error(g->env.diag, rc, "gradient rule failed");
        pf_diag_copy(d, g->env.diag);
        pf_diag_prefix(d, "gradient of program \"%s\" (kernel \"%s\")", name,
                       kernel);
      }
      for (int i = 0; rc == 0 && i < call.n_in; i++)
        if (in_grad[i].id >= 0 && wants[i]) rc = accumulate(w, in[i].id, in_grad[i].id);
      if (rc != 0 && d->code == 0) pf_diag_copy(d, g->env.diag);
    }
    free(name);
    free(kernel);
    free(in);
    free(sh);
    pf_attrs_destroy(attrs);
  }
  pf_args_scratch_free(in_grad_stack, in_grad);
  pf_args_scratch_free(wants_stack, wants);
  return rc;
}

/* Zeros in the layout of parameter v. */
static int zeros_like(pf_graph *g, int32_t v, int32_t *out) {
  const pf_gvalue *val = &g->values[v];
  pf_spec local;
  pf_attrs *a;
  char name[PF_NAME_MAX + 1];
  int rc;
  pf_shard_spec(val->spec, val->sharding, g->slices[val->slice].num_devices, &local, "",
                NULL);
  if ((rc = pf_attrs_create(&a)) != 0) return rc;
  snprintf(name, sizeof name, "grad_zeros%d", (int)v);
  for (int k = 1; pf_graph_find_program(g, name) >= 0; k++)
    snprintf(name, sizeof name, "grad_zeros%d_%d", (int)v, k);
  if ((rc = pf_attrs_set_ints(a, "shape", local.dims, local.rank)) == 0 &&
      (rc = pf_attrs_set_int(a, "dtype", local.dtype)) == 0)
    rc = program1(g,
                  &(pf_program_desc){.name = name, .kernel = "fill", .attrs = a,
                                     .slice = pf_slice_of(val->slice),
                                     .out_shardings = &val->sharding},
                  out);
  pf_attrs_destroy(a);
  return rc;
}

static int seed(pf_graph *g, int32_t loss, int32_t *out) {
  const pf_gvalue *val = &g->values[loss];
  pf_attrs *a;
  int rc;
  char name[PF_NAME_MAX + 1];
  if ((rc = pf_attrs_create(&a)) != 0) return rc;
  snprintf(name, sizeof name, "grad_seed%d", (int)loss);
  for (int k = 1; pf_graph_find_program(g, name) >= 0; k++)
    snprintf(name, sizeof name, "grad_seed%d_%d", (int)loss, k);
  if ((rc = pf_attrs_set_ints(a, "shape", NULL, 0)) == 0 &&
      (rc = pf_attrs_set_int(a, "dtype", val->spec->dtype)) == 0 &&
      (rc = pf_attrs_set_float(a, "value", 1.0)) == 0)
    rc = program1(g,
                  &(pf_program_desc){.name = name, .kernel = "fill", .attrs = a,
                                     .slice = pf_slice_of(val->slice)},
                  out);
  pf_attrs_destroy(a);
  return rc;
}

static int check_args(pf_graph *g, int32_t loss, int n, const pf_value_t *params,
                      pf_diag *d) {
  char s[128];
  if (loss < 0 || (size_t)loss >= g->n_values)
    return pf_diag_error(d, PF_EINVAL, "gradient: loss is no value (%d)", loss);
  if (g->values[loss].spec->rank != 0 || !is_float(g->values[loss].spec->dtype))
    return pf_diag_error(d, PF_EINVAL,
                         "gradient: loss (value %d) is %s; expected an f32 or f64 "
                         "scalar",
                         loss, pf_spec_str(g->values[loss].spec, s, sizeof s));
  if (n < 1 || params == NULL)
    return pf_diag_error(d, PF_EINVAL, "gradient: no parameters");
  for (int i = 0; i < n; i++) {
    int32_t v = params[i].id;
    if (v < 0 || (size_t)v >= g->n_values)
      return pf_diag_error(d, PF_EINVAL, "gradient: parameter %d is no value (%d)", i, v);
    if (!is_float(g->values[v].spec->dtype))
      return pf_diag_error(d, PF_EDTYPE,
                           "gradient: parameter %d (value %d) is %s; expected f32 "
                           "or f64",
                           i, v, pf_spec_str(g->values[v].spec, s, sizeof s));
  }
  return 0;
}

static int grad(pf_graph *g, pf_value_t loss_id, int n, const pf_value_t *params,
                pf_value_t *grads, int keep_partial) {
  int32_t loss = loss_id.id;
  pf_diag d;
  walk w;
  int32_t *order = NULL;
  int rc;
  if (g == NULL || grads == NULL) return PF_EINVAL;
  pf_diag_init(&d);
  if ((rc = check_args(g, loss, n, params, &d)) != 0) {
    pf_diag_init(g->env.diag);
    pf_diag_copy(g->env.diag, &d);
    return rc;
  }
  memset(&w, 0, sizeof w);
  w.g = g;
  w.n_values = g->n_values;
  w.n_programs = g->n_programs;
  w.grad = pf_mallocn(w.n_values, sizeof *w.grad);
  w.from_param = pf_calloc(w.n_values, 1);
  w.to_loss = pf_calloc(w.n_programs + 1, 1);
  order = pf_mallocn(w.n_programs + 1, sizeof *order);
  if (w.grad == NULL || w.from_param == NULL || w.to_loss == NULL || order == NULL) {
    rc = pf_diag_error(&d, PF_ENOMEM, "gradient: out of memory");
    goto done;
  }
  for (size_t v = 0; v < w.n_values; v++) w.grad[v] = -1;
  for (int i = 0; i < n; i++) w.from_param[params[i].id] = 1;
  if ((rc = pf_graph_topo_order(g, order, &d)) != 0 || (rc = mark_to_loss(&w, loss)) != 0)
    goto done;
  for (size_t k = 0; k < w.n_programs; k++) {
    const pf_gprogram *p = &g->programs[order[k]];
    int dep = 0;
    for (int i = 0; i < p->n_in; i++) dep |= w.from_param[p->in[i]];
    for (int o = 0; dep && o < p->n_out; o++) w.from_param[p->out[o]] = 1;
  }
  if (w.from_param[loss]) {
    if ((rc = seed(g, loss, &w.grad[loss])) != 0) goto builder_error;
    for (size_t k = w.n_programs; k-- > 0;) {
      int32_t pid = order[k];
      if (!w.to_loss[pid]) continue;
      if ((rc = differentiate(&w, pid, &d)) != 0) goto done;
    }
  }
  for (int i = 0; i < n; i++) {
    int32_t v = params[i].id, gv = w.grad[v];
    pf_sharding want = g->values[v].sharding;
    if (gv < 0) {
      rc = zeros_like(g, v, &gv);
    } else {
      /* A partial sum on the parameter's slice is summed in place, or
       * left to its consumer (keep_partial). */
      int partial_home = g->values[gv].sharding.kind == PF_SHARD_PARTIAL &&
                         g->values[gv].slice == g->values[v].slice &&
                         g->slices[g->values[gv].slice].num_devices > 1;
      if (partial_home && keep_partial) {
        grads[i] = pf_value_of(gv);
        continue;
      }
      if (partial_home) rc = pf_graph_reduce_partial(g, gv, NULL, &gv, g->env.diag);
      if (rc == 0) rc = move_home(&w, v, &gv, &want);
    }
    if (rc != 0) goto builder_error;
    grads[i] = pf_value_of(gv);
  }
  goto done;
builder_error:
  pf_diag_copy(&d, g->env.diag);
done:
  if (rc != 0) {
    pf_diag_init(g->env.diag);
    pf_diag_copy(g->env.diag, &d);
  }
  free(w.grad);
  free(w.from_param);
  free(w.to_loss);
  free(order);
  return rc;
}

int pf_graph_grad(pf_graph *g, pf_value_t loss, int n, const pf_value_t *params,
                  pf_value_t *grads) {
  return grad(g, loss, n, params, grads, 0);
}

int pf_graph_grad_partial(pf_graph *g, pf_value_t loss, int n, const pf_value_t *params,
                          pf_value_t *grads) {
  return grad(g, loss, n, params, grads, 1);
}
