/* Gradient rules of the built-in kernels and collectives. Each appends the
 * programs for its inputs' gradients with the graph's own builders, so the
 * sharding rules pick the layouts and reduce partial sums where needed. */
#include "graph/grad_rules.h"

#include <stdio.h>
#include <string.h>

#include "base/util.h"
#include "graph/collective.h"
#include "graph/graph_internal.h"
#include "pathflow/error.h"

static const pf_spec *spec_of(const pf_grad_call *c, pf_value_t v) {
  return c->graph->values[v.id].spec;
}

/* A one-input or two-input program with one int attribute or none. */
static int op1(const pf_grad_call *c, const char *what, const char *kernel,
               const char *attr, int64_t value, int n_in, const pf_value_t *in,
               pf_value_t *out) {
  pf_attrs *a = NULL;
  int rc = 0;
  if (attr != NULL && ((rc = pf_attrs_create(&a)) != 0 ||
                       (rc = pf_attrs_set_int(a, attr, value)) != 0)) {
    pf_attrs_destroy(a);
    return rc;
  }
  rc = pf_grad_program(c, what, kernel, a, n_in, in, out);
  pf_attrs_destroy(a);
  return rc;
}

static int scaled(const pf_grad_call *c, const char *what, pf_value_t x, double alpha,
                  pf_value_t *out) {
  pf_attrs *a;
  int rc = pf_attrs_create(&a);
  if (rc == 0 && (rc = pf_attrs_set_float(a, "alpha", alpha)) == 0)
    rc = pf_grad_program(c, what, "scale", a, 1, &x, out);
  pf_attrs_destroy(a);
  return rc;
}

/* The gradient of a broadcast operand: `gv` (the output's shape) summed
 * over the axes the operand was repeated along, to `target`'s shape. */
static int sum_to(const pf_grad_call *c, const char *what, pf_value_t gv,
                  const pf_spec *target, pf_value_t *out) {
  int rc;
  while (spec_of(c, gv)->rank > target->rank)
    if ((rc = op1(c, what, "reduce_sum", "axis", 0, 1, &gv, &gv)) != 0) return rc;
  for (int i = 0; i < target->rank; i++) {
    pf_attrs *a;
    if (target->dims[i] != 1 || spec_of(c, gv)->dims[i] == 1) continue;
    if ((rc = pf_attrs_create(&a)) != 0) return rc;
    if ((rc = pf_attrs_set_int(a, "axis", i)) == 0 &&
        (rc = pf_attrs_set_int(a, "keepdims", 1)) == 0)
      rc = pf_grad_program(c, what, "reduce_sum", a, 1, &gv, &gv);
    pf_attrs_destroy(a);
    if (rc != 0) return rc;
  }
  *out = gv;
  return 0;
}

static int grad_identity(pf_grad_call *c) {
  c->in_grad[0] = c->out_grad[0];
  return 0;
}

static int grad_scale(pf_grad_call *c) {
  return scaled(c, "grad", c->out_grad[0], pf_attrs_get_float(c->attrs, "alpha", 1),
                &c->in_grad[0]);
}

static int grad_add_sub(pf_grad_call *c, int negate) {
  pf_value_t gy = c->out_grad[0], neg;
  int rc = 0;
  if (c->wants[0]) rc = sum_to(c, "grad0", gy, spec_of(c, c->in[0]), &c->in_grad[0]);
  if (rc == 0 && c->wants[1]) {
    if (negate && (rc = scaled(c, "grad1_neg", gy, -1, &neg)) == 0) gy = neg;
    if (rc == 0) rc = sum_to(c, "grad1", gy, spec_of(c, c->in[1]), &c->in_grad[1]);
  }
  return rc;
}
static int grad_add(pf_grad_call *c) { return grad_add_sub(c, 0); }
static int grad_sub(pf_grad_call *c) { return grad_add_sub(c, 1); }

static int grad_mul(pf_grad_call *c) {
  for (int i = 0; i < 2; i++) {
    pf_value_t prod;
    char what[16];
    int rc;
    if (!c->wants[i]) continue;
    snprintf(what, sizeof what, "grad%d", i);
    if ((rc = pf_grad_program(c, what, "mul", NULL, 2,
                              (pf_value_t[]){c->out_grad[0], c->in[1 - i]}, &prod)) != 0 ||
        (rc = sum_to(c, what, prod, spec_of(c, c->in[i]), &c->in_grad[i])) != 0)
      return rc;
  }
  return 0;
}

static int grad_relu(pf_grad_call *c) {
  return pf_grad_program(c, "grad", "relu_grad", NULL, 2,
                         (pf_value_t[]){c->out_grad[0], c->in[0]}, &c->in_grad[0]);
}

/* x [..., m] + b [m]: the bias gets the sum over every leading axis. */
static int grad_bias_add(pf_grad_call *c) {
  c->in_grad[0] = c->out_grad[0];
  return c->wants[1] ? sum_to(c, "grad1", c->out_grad[0], spec_of(c, c->in[1]),
                              &c->in_grad[1])
                     : 0;
}

/* y = op(a) op(b). With gy = dL/dy: da = gy op(b)^T, db = op(a)^T gy, each
 * written as one matmul of a, b and gy with the right transpose flags. */
static int grad_matmul(pf_grad_call *c) {
  int ta = pf_attrs_get_int(c->attrs, "transpose_a", 0) != 0;
  int tb = pf_attrs_get_int(c->attrs, "transpose_b", 0) != 0;
  pf_value_t a = c->in[0], b = c->in[1], gy = c->out_grad[0];
  for (int i = 0; i < 2; i++) {
    pf_value_t x, y;
    int fx, fy, rc;
    pf_attrs *at;
    if (!c->wants[i]) continue;
    if (i == 0) { /* da: [M,K] = gy b^T (tb: gy b); ta: [K,M] = b gy^T (tb: b^T gy^T) */
      if (!ta) { x = gy; y = b; fx = 0; fy = !tb; }
      else { x = b; y = gy; fx = tb; fy = 1; }
    } else { /* db: [K,N] = a^T gy (ta: a gy); tb: [N,K] = gy^T a (ta: gy^T a^T) */
      if (!tb) { x = a; y = gy; fx = !ta; fy = 0; }
      else { x = gy; y = a; fx = 1; fy = ta; }
    }
    if ((rc = pf_attrs_create(&at)) != 0) return rc;
    if ((rc = pf_attrs_set_int(at, "transpose_a", fx)) == 0 &&
        (rc = pf_attrs_set_int(at, "transpose_b", fy)) == 0)
      rc = pf_grad_program(c, i == 0 ? "grad0" : "grad1", "matmul", at, 2,
                           (pf_value_t[]){x, y}, &c->in_grad[i]);
    pf_attrs_destroy(at);
    if (rc != 0) return rc;
  }
  return 0;
}

static int grad_reduce_sum(pf_grad_call *c) {
  pf_attrs *a;
  int rc = pf_attrs_clone(c->attrs, &a);
  if (rc == 0)
    rc = pf_grad_program(c, "grad", "reduce_sum_grad", a, 2,
                         (pf_value_t[]){c->out_grad[0], c->in[0]}, &c->in_grad[0]);
  pf_attrs_destroy(a);
  return rc;
}

/* d loss / d logits is the kernel's second output, times the loss's own
 * gradient (a scalar, broadcast). Labels have none. */
static int grad_softmax_xent(pf_grad_call *c) {
  if (c->out_grad[1].id >= 0)
    return pf_diag_error(c->graph->env.diag, PF_ENOTSUP,
                         "softmax_xent: the loss depends on its gradient output; "
                         "second derivatives are not supported");
  if (!c->wants[0]) return 0;
  return pf_grad_program(c, "grad", "mul", NULL, 2,
                         (pf_value_t[]){c->out[1], c->out_grad[0]}, &c->in_grad[0]);
}

/* pack's inputs get their pieces of the packed gradient back. The rule
 * runs pack replicated or partial, so shard specs are the global ones and
 * the offsets are the same on every device. */
static int grad_pack(pf_grad_call *c) {
  int64_t offset = 0;
  for (int i = 0; i < c->n_in; i++) {
    const pf_spec *s = spec_of(c, c->in[i]);
    char what[16];
    pf_attrs *a;
    int rc;
    if (c->wants[i]) {
      snprintf(what, sizeof what, "grad%d", i);
      if ((rc = pf_attrs_create(&a)) != 0) return rc;
      if ((rc = pf_attrs_set_int(a, "offset", offset)) == 0 &&
          (rc = pf_attrs_set_ints(a, "shape", s->dims, s->rank)) == 0)
        rc = pf_grad_program(c, what, "unpack", a, 1, &c->out_grad[0], &c->in_grad[i]);
      pf_attrs_destroy(a);
      if (rc != 0) return rc;
    }
    offset += pf_spec_numel(s);
  }
  return 0;
}

/* unpack's input gets zeros around the output's gradient. */
static int grad_unpack(pf_grad_call *c) {
  pf_attrs *a;
  int rc = pf_attrs_create(&a);
  if (rc == 0 &&
      (rc = pf_attrs_set_int(a, "offset", pf_attrs_get_int(c->attrs, "offset", 0))) == 0 &&
      (rc = pf_attrs_set_int(a, "size", spec_of(c, c->in[0])->dims[0])) == 0)
    rc = pf_grad_program(c, "grad", "unpack_grad", a, 1, &c->out_grad[0], &c->in_grad[0]);
  pf_attrs_destroy(a);
  return rc;
}

/* unpack_grad is linear: its adjoint takes the piece back out. */
static int grad_unpack_grad(pf_grad_call *c) {
  const pf_spec *s = spec_of(c, c->in[0]);
  pf_attrs *a;
  int rc = pf_attrs_create(&a);
  if (rc == 0 &&
      (rc = pf_attrs_set_int(a, "offset", pf_attrs_get_int(c->attrs, "offset", 0))) == 0 &&
      (rc = pf_attrs_set_ints(a, "shape", s->dims, s->rank)) == 0)
    rc = pf_grad_program(c, "grad", "unpack", a, 1, &c->out_grad[0], &c->in_grad[0]);
  pf_attrs_destroy(a);
  return rc;
}

/* allreduce (sum) of a partial value is the value: its gradient passes
 * through. allgather is the value itself laid out whole. */
static int grad_collective(pf_grad_call *c) {
  int kind = pf_collective_from_kernel(c->kernel);
  int64_t op = pf_attrs_get_int(c->attrs, PF_COLL_ATTR_OP, PF_REDUCE_SUM);
  if ((kind == PF_ALLREDUCE && op == PF_REDUCE_SUM &&
       c->in_shardings[0].kind == PF_SHARD_PARTIAL) ||
      kind == PF_ALLGATHER) {
    c->in_grad[0] = c->out_grad[0];
    return 0;
  }
  return pf_diag_error(c->graph->env.diag, PF_ENOTSUP,
                       "%s: gradients pass only through an allreduce (sum) of a "
                       "partial value and an allgather",
                       c->kernel);
}

static const struct {
  const char *kernel;
  pf_grad_fn rule;
} rules[] = {
    {"identity", grad_identity},
    {"scale", grad_scale},
    {"add", grad_add},
    {"sub", grad_sub},
    {"mul", grad_mul},
    {"relu", grad_relu},
    {"bias_add", grad_bias_add},
    {"matmul", grad_matmul},
    {"reduce_sum", grad_reduce_sum},
    {"softmax_xent", grad_softmax_xent},
    {"pack", grad_pack},
    {"unpack", grad_unpack},
    {"unpack_grad", grad_unpack_grad},
    {"pf.allreduce", grad_collective},
    {"pf.allgather", grad_collective},
    {"pf.reduce_scatter", grad_collective},
    {"pf.broadcast", grad_collective},
    {"pf.all_to_all", grad_collective},
};

pf_grad_fn pf_grad_builtin_rule(const char *kernel) {
  for (size_t i = 0; i < PF_ARRAY_LEN(rules); i++)
    if (strcmp(rules[i].kernel, kernel) == 0) return rules[i].rule;
  return NULL;
}
