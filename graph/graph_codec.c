/* pathflow.Graph <-> pf_graph.
 *
 * Encoding builds protobuf-c structs in a scratch arena that point into the
 * graph, packs them, and drops the arena. Decoding unpacks with protobuf-c,
 * checks every count, index and enum, and rebuilds the graph through the
 * appenders of graph_internal.h. What needs kernels and shapes (arity,
 * dtypes, cycles, outputs never produced) is left to pf_graph_check.
 */
#include "graph/graph_codec.h"

#include <stdlib.h>
#include <string.h>

#include "base/util.h"
#include "pathflow/error.h"

/* ---- graph encoder ------------------------------------------------------------ */

static int named_encode(pf_wire_arena *a, const pf_gnamed *items, size_t n,
                        Pathflow__NamedValue ***out) {
  Pathflow__NamedValue **ms = pf_wire_alloc(a, n, sizeof *ms);
  if (ms == NULL) return PF_ENOMEM;
  for (size_t i = 0; i < n; i++) {
    if ((ms[i] = pf_wire_alloc(a, 1, sizeof *ms[i])) == NULL) return PF_ENOMEM;
    pathflow__named_value__init(ms[i]);
    ms[i]->name = items[i].name;
    ms[i]->value = items[i].value;
  }
  *out = ms;
  return 0;
}

static int slice_encode(pf_wire_arena *a, const pf_gslice *s,
                        Pathflow__Slice **out) {
  Pathflow__Slice *m = pf_wire_alloc(a, 1, sizeof *m);
  if (m == NULL) return PF_ENOMEM;
  pathflow__slice__init(m);
  m->kind = (int32_t)s->kind;
  m->num_devices = s->num_devices;
  if (s->pinned != NULL && s->num_devices > 0) {
    /* int is not int32_t everywhere: copy rather than alias */
    m->pinned = pf_wire_alloc(a, (size_t)s->num_devices, sizeof *m->pinned);
    if (m->pinned == NULL) return PF_ENOMEM;
    for (int i = 0; i < s->num_devices; i++) m->pinned[i] = s->pinned[i];
    m->n_pinned = (size_t)s->num_devices;
  }
  *out = m;
  return 0;
}

static int value_encode(pf_wire_arena *a, const pf_gvalue *v,
                        Pathflow__Value **out) {
  Pathflow__Value *m = pf_wire_alloc(a, 1, sizeof *m);
  int rc;
  if (m == NULL) return PF_ENOMEM;
  pathflow__value__init(m);
  if ((rc = pf_wire_spec_encode(a, v->spec, &m->spec)) != 0) return rc;
  if ((m->sharding = pf_wire_sharding_encode(a, v->sharding)) == NULL)
    return PF_ENOMEM;
  m->slice = v->slice;
  m->producer = v->producer;
  m->output_index = v->output_index;
  *out = m;
  return 0;
}

static int program_encode(pf_wire_arena *a, const pf_gprogram *p,
                          Pathflow__Program **out) {
  Pathflow__Program *m = pf_wire_alloc(a, 1, sizeof *m);
  int rc;
  if (m == NULL) return PF_ENOMEM;
  pathflow__program__init(m);
  if (p->name == NULL || p->kernel == NULL || p->n_in < 0 || p->n_out < 0 ||
      (p->n_in > 0 && (p->in == NULL || p->in_shardings == NULL)) ||
      (p->n_out > 0 && p->out == NULL))
    return PF_EINVAL;
  m->name = p->name;
  m->kernel = p->kernel;
  if ((rc = pf_wire_attrs_encode(a, p->attrs, &m->n_attrs, &m->attrs)) != 0)
    return rc;
  m->slice = p->slice;
  m->n_inputs = (size_t)p->n_in;
  m->inputs = p->in;
  m->n_in_shardings = (size_t)p->n_in;
  if (p->n_in > 0) {
    m->in_shardings =
        pf_wire_alloc(a, (size_t)p->n_in, sizeof *m->in_shardings);
    if (m->in_shardings == NULL) return PF_ENOMEM;
    for (int i = 0; i < p->n_in; i++)
      if ((m->in_shardings[i] =
               pf_wire_sharding_encode(a, p->in_shardings[i])) == NULL)
        return PF_ENOMEM;
  }
  m->n_outputs = (size_t)p->n_out;
  m->outputs = p->out;
  *out = m;
  return 0;
}

static int graph_build(pf_wire_arena *a, const pf_graph *g,
                       Pathflow__Graph *m) {
  int rc;
  m->slices = pf_wire_alloc(a, g->n_slices, sizeof *m->slices);
  m->values = pf_wire_alloc(a, g->n_values, sizeof *m->values);
  m->programs = pf_wire_alloc(a, g->n_programs, sizeof *m->programs);
  if (m->slices == NULL || m->values == NULL || m->programs == NULL)
    return PF_ENOMEM;
  for (size_t i = 0; i < g->n_slices; i++, m->n_slices++)
    if ((rc = slice_encode(a, &g->slices[i], &m->slices[i])) != 0) return rc;
  for (size_t i = 0; i < g->n_values; i++, m->n_values++)
    if ((rc = value_encode(a, &g->values[i], &m->values[i])) != 0) return rc;
  for (size_t i = 0; i < g->n_programs; i++, m->n_programs++)
    if ((rc = program_encode(a, &g->programs[i], &m->programs[i])) != 0)
      return rc;
  if ((rc = named_encode(a, g->inputs, g->n_inputs, &m->inputs)) != 0)
    return rc;
  m->n_inputs = g->n_inputs;
  if ((rc = named_encode(a, g->outputs, g->n_outputs, &m->outputs)) != 0)
    return rc;
  m->n_outputs = g->n_outputs;
  m->placement = (int32_t)g->placement;
  m->dispatch = (int32_t)g->dispatch;
  if (g->n_controls > 0) {
    m->controls = pf_wire_alloc(a, g->n_controls, sizeof *m->controls);
    if (m->controls == NULL) return PF_ENOMEM;
    for (size_t i = 0; i < g->n_controls; i++, m->n_controls++) {
      Pathflow__ControlEdge *c = pf_wire_alloc(a, 1, sizeof *c);
      if (c == NULL) return PF_ENOMEM;
      pathflow__control_edge__init(c);
      c->before = g->controls[i].before;
      c->after = g->controls[i].after;
      m->controls[i] = c;
    }
  }
  return 0;
}

int pf_graph_encode(const pf_graph *g, uint8_t **buf, size_t *len) {
  pf_wire_arena arena = {NULL};
  Pathflow__Graph m = PATHFLOW__GRAPH__INIT;
  size_t n;
  uint8_t *out;
  int rc;
  if (g == NULL || buf == NULL || len == NULL) return PF_EINVAL;
  *buf = NULL;
  *len = 0;
  if ((rc = graph_build(&arena, g, &m)) != 0) {
    pf_wire_arena_free(&arena);
    return rc;
  }
  n = pathflow__graph__get_packed_size(&m);
  if ((out = malloc(n ? n : 1)) == NULL) {
    pf_wire_arena_free(&arena);
    return PF_ENOMEM;
  }
  pathflow__graph__pack(&m, out);
  pf_wire_arena_free(&arena);
  *buf = out;
  *len = n;
  return 0;
}

/* ---- graph decoder ------------------------------------------------------------ */

static int name_check(const char *s, const char *what, size_t i,
                      pf_diag *diag) {
  if (s == NULL || s[0] == '\0')
    return pf_diag_error(diag, PF_EDECODE, "%s %zu: empty name", what, i);
  if (strnlen(s, PF_NAME_MAX + 1) > PF_NAME_MAX)
    return pf_diag_error(diag, PF_EDECODE, "%s %zu: name longer than %d bytes",
                         what, i, PF_NAME_MAX);
  return 0;
}

typedef struct named_ref {
  const char *name;
  size_t index;
} named_ref;

static int by_name(const void *x, const void *y) {
  const named_ref *a = x, *b = y;
  int c = strcmp(a->name, b->name);
  if (c != 0) return c;
  return a->index < b->index ? -1 : a->index > b->index;
}

/* Names must be unique in a list; sorting keeps this O(n log n) for hostile
 * lists. `refs` (n of them, names already checked) is reordered. */
static int names_unique(named_ref *refs, size_t n, const char *what,
                        pf_diag *diag) {
  if (n < 2) return 0;
  qsort(refs, n, sizeof *refs, by_name);
  for (size_t i = 1; i < n; i++)
    if (strcmp(refs[i - 1].name, refs[i].name) == 0)
      return pf_diag_error(diag, PF_EDECODE,
                           "%s %zu: name \"%s\" repeated (also %s %zu)", what,
                           refs[i].index, refs[i].name, what,
                           refs[i - 1].index);
  return 0;
}

static int slices_decode(pf_graph *g, const Pathflow__Graph *m,
                         pf_diag *diag) {
  for (size_t i = 0; i < m->n_slices; i++) {
    const Pathflow__Slice *s = m->slices[i];
    pf_gslice gs = {PF_DEVICE_CPU, 0, NULL};
    int rc;
    if (s->kind < 0 || s->kind >= PF_DEVICE_KIND_COUNT)
      return pf_diag_error(diag, PF_EDECODE, "slice %zu: unknown device kind %d",
                           i, (int)s->kind);
    if (s->num_devices < 1 || s->num_devices > (1 << 20))
      return pf_diag_error(diag, PF_EDECODE,
                           "slice %zu: %d devices, expected 1..%d", i,
                           (int)s->num_devices, 1 << 20);
    if (s->n_pinned != 0 && s->n_pinned != (size_t)s->num_devices)
      return pf_diag_error(diag, PF_EDECODE,
                           "slice %zu: %zu pinned devices for a slice of %d",
                           i, s->n_pinned, (int)s->num_devices);
    gs.kind = (pf_device_kind)s->kind;
    gs.num_devices = s->num_devices;
    if (s->n_pinned != 0) {
      if ((gs.pinned = pf_mallocn(s->n_pinned, sizeof *gs.pinned)) == NULL)
        return pf_diag_error(diag, PF_ENOMEM, "slice %zu: out of memory", i);
      for (size_t j = 0; j < s->n_pinned; j++) {
        if (s->pinned[j] < 0) {
          free(gs.pinned);
          return pf_diag_error(diag, PF_EDECODE,
                               "slice %zu: pinned device %zu is negative (%d)",
                               i, j, (int)s->pinned[j]);
        }
        gs.pinned[j] = s->pinned[j];
      }
    }
    rc = pf_graph_add_slice(g, &gs);
    free(gs.pinned);
    if (rc != 0) return pf_diag_error(diag, rc, "slice %zu: out of memory", i);
  }
  return 0;
}

static int values_decode(pf_graph *g, const Pathflow__Graph *m,
                         pf_diag *diag) {
  for (size_t i = 0; i < m->n_values; i++) {
    const Pathflow__Value *v = m->values[i];
    pf_gvalue gv;
    pf_spec spec;
    int rc;
    memset(&gv, 0, sizeof gv);
    if (v->slice < 0 || (size_t)v->slice >= m->n_slices)
      return pf_diag_error(diag, PF_EDECODE,
                           "value %zu: slice %d out of range (%zu slices)", i,
                           (int)v->slice, m->n_slices);
    gv.spec = &spec; /* copied by pf_graph_add_value */
    if ((rc = pf_wire_spec_decode(v->spec, &spec, diag)) != 0 ||
        (rc = pf_wire_sharding_decode(v->sharding, &gv.sharding, diag)) != 0) {
      pf_diag_prefix(diag, "value %zu", i);
      return rc;
    }
    if (v->producer < -1 || (v->producer >= 0 &&
                             (size_t)v->producer >= m->n_programs))
      return pf_diag_error(diag, PF_EDECODE,
                           "value %zu: producer %d out of range (%zu programs)",
                           i, (int)v->producer, m->n_programs);
    if (v->producer >= 0) {
      const Pathflow__Program *p = m->programs[v->producer];
      if (v->output_index < 0 || (size_t)v->output_index >= p->n_outputs)
        return pf_diag_error(diag, PF_EDECODE,
                             "value %zu: output_index %d out of range "
                             "(program %d has %zu outputs)",
                             i, (int)v->output_index, (int)v->producer,
                             p->n_outputs);
      if (p->outputs[v->output_index] != (int32_t)i)
        return pf_diag_error(diag, PF_EDECODE,
                             "value %zu: claims to be output %d of program %d, "
                             "which lists value %d there",
                             i, (int)v->output_index, (int)v->producer,
                             (int)p->outputs[v->output_index]);
    }
    gv.slice = v->slice;
    gv.producer = v->producer;
    gv.output_index = v->output_index;
    if ((rc = pf_graph_add_value(g, &gv)) != 0)
      return pf_diag_error(diag, rc, "value %zu: out of memory", i);
  }
  return 0;
}

/* Everything of program i but attrs; writes its shardings to in_sh. */
static int program_check(const Pathflow__Graph *m, size_t i,
                         pf_sharding *in_sh, pf_diag *diag) {
  const Pathflow__Program *p = m->programs[i];
  int rc;
  if ((rc = name_check(p->name, "program", i, diag)) != 0) return rc;
  if (p->kernel == NULL || p->kernel[0] == '\0' ||
      strnlen(p->kernel, PF_NAME_MAX + 1) > PF_NAME_MAX)
    return pf_diag_error(diag, PF_EDECODE,
                         "program %zu (%s): kernel name must be 1..%d bytes", i,
                         p->name, PF_NAME_MAX);
  if (p->slice < 0 || (size_t)p->slice >= m->n_slices)
    return pf_diag_error(diag, PF_EDECODE,
                         "program %zu (%s): slice %d out of range (%zu slices)",
                         i, p->name, (int)p->slice, m->n_slices);
  if (p->n_inputs > PF_MAX_ARGS || p->n_outputs > PF_MAX_OUTS)
    return pf_diag_error(diag, PF_EDECODE,
                         "program %zu (%s): %zu inputs and %zu outputs, at most "
                         "%d and %d", i, p->name, p->n_inputs, p->n_outputs,
                         PF_MAX_ARGS, PF_MAX_OUTS);
  if (p->n_in_shardings != p->n_inputs)
    return pf_diag_error(diag, PF_EDECODE,
                         "program %zu (%s): %zu in_shardings for %zu inputs", i,
                         p->name, p->n_in_shardings, p->n_inputs);
  for (size_t j = 0; j < p->n_inputs; j++) {
    if (p->inputs[j] < 0 || (size_t)p->inputs[j] >= m->n_values)
      return pf_diag_error(diag, PF_EDECODE,
                           "program %zu (%s): input %zu is value %d, out of "
                           "range (%zu values)", i, p->name, j,
                           (int)p->inputs[j], m->n_values);
    if ((rc = pf_wire_sharding_decode(p->in_shardings[j], &in_sh[j], diag))) {
      pf_diag_prefix(diag, "program %zu (%s): input %zu", i, p->name, j);
      return rc;
    }
  }
  for (size_t j = 0; j < p->n_outputs; j++) {
    const Pathflow__Value *v;
    if (p->outputs[j] < 0 || (size_t)p->outputs[j] >= m->n_values)
      return pf_diag_error(diag, PF_EDECODE,
                           "program %zu (%s): output %zu is value %d, out of "
                           "range (%zu values)", i, p->name, j,
                           (int)p->outputs[j], m->n_values);
    /* the other half of the producer check done for values */
    v = m->values[p->outputs[j]];
    if (v->producer != (int32_t)i || v->output_index != (int32_t)j)
      return pf_diag_error(diag, PF_EDECODE,
                           "program %zu (%s): output %zu is value %d, whose "
                           "producer is %d output %d", i, p->name, j,
                           (int)p->outputs[j], (int)v->producer,
                           (int)v->output_index);
  }
  return 0;
}

static int programs_decode(pf_graph *g, const Pathflow__Graph *m,
                           pf_diag *diag) {
  for (size_t i = 0; i < m->n_programs; i++) {
    const Pathflow__Program *p = m->programs[i];
    pf_sharding in_sh[PF_MAX_ARGS];
    pf_gprogram gp;
    int rc;
    if ((rc = program_check(m, i, in_sh, diag)) != 0) return rc;
    memset(&gp, 0, sizeof gp);
    if ((rc = pf_wire_attrs_decode(p->n_attrs, p->attrs, &gp.attrs, diag))) {
      pf_diag_prefix(diag, "program %zu (%s)", i, p->name);
      return rc;
    }
    gp.name = p->name;
    gp.kernel = p->kernel;
    gp.slice = p->slice;
    gp.n_in = (int)p->n_inputs;
    gp.in = p->inputs;
    gp.in_shardings = in_sh;
    gp.n_out = (int)p->n_outputs;
    gp.out = p->outputs;
    rc = pf_graph_add_program(g, &gp);
    pf_attrs_destroy(gp.attrs);
    if (rc != 0)
      return pf_diag_error(diag, rc, "program %zu (%s): out of memory", i,
                           p->name);
  }
  return 0;
}

static int named_decode(pf_graph *g, const Pathflow__Graph *m, int is_output,
                        pf_diag *diag) {
  Pathflow__NamedValue *const *items = is_output ? m->outputs : m->inputs;
  size_t n = is_output ? m->n_outputs : m->n_inputs;
  const char *what = is_output ? "output" : "input";
  for (size_t i = 0; i < n; i++) {
    int rc;
    if ((rc = name_check(items[i]->name, what, i, diag)) != 0) return rc;
    if (items[i]->value < 0 || (size_t)items[i]->value >= m->n_values)
      return pf_diag_error(diag, PF_EDECODE,
                           "%s %zu (%s): value %d out of range (%zu values)",
                           what, i, items[i]->name, (int)items[i]->value,
                           m->n_values);
    if ((rc = pf_graph_add_named(g, is_output, items[i]->name,
                                 items[i]->value)) != 0)
      return pf_diag_error(diag, rc, "%s %zu: out of memory", what, i);
  }
  return 0;
}

/* Uniqueness of program, input and output names, on the built graph (its
 * strings are already checked). */
static int graph_names_unique(const pf_graph *g, pf_diag *diag) {
  size_t n = PF_MAXOF(g->n_programs, PF_MAXOF(g->n_inputs, g->n_outputs));
  named_ref *refs;
  int rc;
  if (n < 2) return 0;
  if ((refs = pf_mallocn(n, sizeof *refs)) == NULL)
    return pf_diag_error(diag, PF_ENOMEM, "names: out of memory");
  for (size_t i = 0; i < g->n_programs; i++)
    refs[i] = (named_ref){g->programs[i].name, i};
  rc = names_unique(refs, g->n_programs, "program", diag);
  for (size_t i = 0; rc == 0 && i < g->n_inputs; i++)
    refs[i] = (named_ref){g->inputs[i].name, i};
  if (rc == 0) rc = names_unique(refs, g->n_inputs, "input", diag);
  for (size_t i = 0; rc == 0 && i < g->n_outputs; i++)
    refs[i] = (named_ref){g->outputs[i].name, i};
  if (rc == 0) rc = names_unique(refs, g->n_outputs, "output", diag);
  free(refs);
  return rc;
}

static int graph_fill(pf_graph *g, const Pathflow__Graph *m, pf_diag *diag) {
  int rc;
  /* Every id must fit a pf_*_t; the size limit already implies it, but the
   * casts below rely on it, so say it. */
  if (m->n_slices > INT32_MAX || m->n_values > INT32_MAX ||
      m->n_programs > INT32_MAX)
    return pf_diag_error(diag, PF_EDECODE, "graph: too many elements");
  if ((rc = slices_decode(g, m, diag)) != 0) return rc;
  if ((rc = values_decode(g, m, diag)) != 0) return rc;
  if ((rc = programs_decode(g, m, diag)) != 0) return rc;
  if ((rc = named_decode(g, m, 0, diag)) != 0) return rc;
  if ((rc = named_decode(g, m, 1, diag)) != 0) return rc;
  if ((m->placement != PF_PLACE_PACKED && m->placement != PF_PLACE_SPREAD) ||
      (m->dispatch != PF_DISPATCH_PARALLEL && m->dispatch != PF_DISPATCH_SEQUENTIAL))
    return pf_diag_error(diag, PF_EDECODE, "graph: unknown placement %d or dispatch %d",
                         (int)m->placement, (int)m->dispatch);
  g->placement = (pf_placement)m->placement;
  g->dispatch = (pf_dispatch_mode)m->dispatch;
  for (size_t i = 0; i < m->n_controls; i++) {
    const Pathflow__ControlEdge *c = m->controls[i];
    if (c->before < 0 || (size_t)c->before >= g->n_programs || c->after < 0 ||
        (size_t)c->after >= g->n_programs || c->before == c->after)
      return pf_diag_error(diag, PF_EDECODE,
                           "graph: control dependency %zu (%d -> %d) names no program "
                           "or one program twice (%zu programs)",
                           i, (int)c->before, (int)c->after, g->n_programs);
    if (pf_graph_add_control(g, c->before, c->after) != 0)
      return pf_diag_error(diag, PF_ENOMEM, "graph decode: out of memory");
  }
  return graph_names_unique(g, diag);
}

int pf_graph_decode_env(const pf_graph_env *env, const uint8_t *buf,
                        size_t len, pf_graph **out, pf_diag *diag) {
  Pathflow__Graph *m;
  pf_graph *g = NULL;
  int rc;
  if (out == NULL) return PF_EINVAL;
  *out = NULL;
  if (diag != NULL) pf_diag_init(diag);
  if (env == NULL || (buf == NULL && len > 0))
    return pf_diag_error(diag, PF_EINVAL, "graph decode: NULL argument");
  if (len > PF_WIRE_MAX_MESSAGE)
    return pf_diag_error(diag, PF_EDECODE,
                         "graph message of %zu bytes exceeds the limit of %u "
                         "bytes", len, PF_WIRE_MAX_MESSAGE);
  /* protobuf-c reads nothing for len 0 but wants a pointer */
  m = pathflow__graph__unpack(NULL, len, buf ? buf : (const uint8_t *)"");
  if (m == NULL)
    return pf_diag_error(diag, PF_EDECODE,
                         "graph: %zu bytes are not a valid pathflow.Graph", len);
  if ((rc = pf_graph_new(env, &g)) != 0) {
    pathflow__graph__free_unpacked(m, NULL);
    return pf_diag_error(diag, rc, "graph decode: cannot create the graph");
  }
  rc = graph_fill(g, m, diag);
  pathflow__graph__free_unpacked(m, NULL);
  if (rc != 0) {
    pf_graph_destroy(g);
    return rc;
  }
  *out = g;
  return 0;
}
