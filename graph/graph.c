/* Graph construction: the public builders and the raw appenders. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/attrs_internal.h"
#include "base/util.h"
#include "graph/collective.h"
#include "graph/graph_internal.h"
#include "pathflow/error.h"

int pf_graph_new(const pf_graph_env *env, pf_graph **out) {
  pf_graph *g;
  if (env == NULL || out == NULL || env->registry == NULL) return PF_EINVAL;
  if ((g = calloc(1, sizeof *g)) == NULL) return PF_ENOMEM;
  g->env = *env;
  *out = g;
  return 0;
}

void pf_graph_destroy(pf_graph *g) {
  if (g == NULL) return;
  for (size_t i = 0; i < g->n_slices; i++) free(g->slices[i].pinned);
  for (size_t i = 0; i < g->n_programs; i++) pf_attrs_destroy(g->programs[i].attrs);
  pf_spec_set_free(&g->specs);
  pf_arena_free(&g->mem);
  for (size_t i = 0; i < g->n_inputs; i++) free(g->inputs[i].name);
  for (size_t i = 0; i < g->n_outputs; i++) free(g->outputs[i].name);
  free(g->slices);
  free(g->values);
  free(g->programs);
  free(g->inputs);
  free(g->outputs);
  free(g->controls);
  free(g->name_slots);
  free(g);
}

/* ---- program names ---------------------------------------------------------- */

static uint32_t name_hash(const char *s) { return (uint32_t)pf_str_hash(s); }

static uint32_t slot_index(uint64_t slot) { return (uint32_t)slot - 1; }
static uint32_t slot_hash(uint64_t slot) { return (uint32_t)(slot >> 32); }

/* N when `name` ends in "_N" (decimal, no leading zero), else -1. A
 * program whose name ends in its own index (every auto-named one:
 * auto_name) is found by that index, not in the table. */
static int64_t own_index(const char *name) {
  size_t len = strlen(name), i = len;
  int64_t n = 0, scale = 1;
  while (i > 0 && name[i - 1] >= '0' && name[i - 1] <= '9') {
    if (len - i >= 10) return -1; /* past any program index */
    n += (name[i - 1] - '0') * scale;
    scale *= 10;
    i--;
  }
  if (i == len || i == 0 || name[i - 1] != '_' || (name[i] == '0' && len - i > 1)) return -1;
  return n;
}

/* The table's program named `name`, or -1. */
static int table_find(const pf_graph *g, const char *name, uint32_t h) {
  size_t mask, i;
  if (g->name_cap == 0) return -1;
  mask = g->name_cap - 1;
  for (i = h & mask; g->name_slots[i]; i = (i + 1) & mask)
    if (slot_hash(g->name_slots[i]) == h &&
        strcmp(g->programs[slot_index(g->name_slots[i])].name, name) == 0)
      return (int)slot_index(g->name_slots[i]);
  return -1;
}

/* The first program named `name`: the one the table holds, or the one
 * whose own index the name ends in. A graph whose names are all its own
 * (a million auto-named programs) has no table: the lookups that were a
 * third of its build (a cache miss each) read nothing but the name. */
int pf_graph_find_program(const pf_graph *g, const char *name) {
  int64_t n = own_index(name);
  int t = g->name_cap ? table_find(g, name, name_hash(name)) : -1;
  if (n >= 0 && (size_t)n < g->n_programs && (t < 0 || n < t) &&
      strcmp(g->programs[n].name, name) == 0)
    return (int)n;
  return t;
}

/* Indexes program `p` (already appended), unless its name ends in its own
 * index or an earlier program's has the name (pf_graph_find_program finds
 * either without the table). */
static int name_index(pf_graph *g, size_t p) {
  const char *name = g->programs[p].name;
  int64_t own = own_index(name);
  uint32_t h;
  size_t mask, i;
  if (own >= 0 && (size_t)own <= p &&
      ((size_t)own == p || strcmp(g->programs[own].name, name) == 0))
    return 0;
  h = name_hash(name);
  if ((g->name_count + 1) * 2 > g->name_cap) {
    size_t cap = g->name_cap ? g->name_cap * 2 : 64;
    uint64_t *slots = pf_calloc(cap, sizeof *slots);
    if (slots == NULL) return PF_ENOMEM;
    /* Only the first program of a name is in the table (below). */
    for (size_t k = 0; k < g->name_cap; k++) {
      uint64_t slot = g->name_slots[k];
      if (slot == 0) continue;
      for (i = slot_hash(slot) & (cap - 1); slots[i]; i = (i + 1) & (cap - 1)) continue;
      slots[i] = slot;
    }
    free(g->name_slots);
    g->name_slots = slots;
    g->name_cap = cap;
  }
  /* One probe finds an equal name (the first program keeps it) or the
   * empty slot to take. */
  mask = g->name_cap - 1;
  for (i = h & mask; g->name_slots[i]; i = (i + 1) & mask)
    if (slot_hash(g->name_slots[i]) == h &&
        strcmp(g->programs[slot_index(g->name_slots[i])].name, name) == 0)
      return 0;
  g->name_slots[i] = (uint64_t)h << 32 | ((uint64_t)p + 1);
  g->name_count++;
  return 0;
}

/* ---- appenders ------------------------------------------------------------ */

int pf_graph_add_slice(pf_graph *g, const pf_gslice *s) {
  pf_gslice copy = *s;
  if (pf_grow((void **)&g->slices, &g->cap_slices, g->n_slices + 1,
              sizeof *g->slices))
    return PF_ENOMEM;
  if (s->pinned != NULL) {
    copy.pinned = pf_mallocn((size_t)s->num_devices, sizeof(int));
    if (copy.pinned == NULL) return PF_ENOMEM;
    memcpy(copy.pinned, s->pinned, (size_t)s->num_devices * sizeof(int));
  }
  g->slices[g->n_slices++] = copy;
  return 0;
}

int pf_graph_add_value(pf_graph *g, const pf_gvalue *v) {
  if (pf_grow((void **)&g->values, &g->cap_values, g->n_values + 1,
              sizeof *g->values))
    return PF_ENOMEM;
  g->values[g->n_values] = *v;
  /* The graph's own copy: v's spec may be anyone's. */
  if ((g->values[g->n_values].spec = pf_spec_set_add(&g->specs, &g->mem, v->spec)) == NULL)
    return PF_ENOMEM;
  g->values[g->n_values++].reduced = 0;
  return 0;
}

static void *dup_array(const void *src, size_t n, size_t size) {
  void *d = pf_mallocn(n, size);
  if (d != NULL && n > 0) memcpy(d, src, n * size);
  return d;
}

/* The graph's copy of kernel name k: consecutive programs mostly run one
 * kernel, so the last copy is reused when it is equal. */
static char *kernel_copy(pf_graph *g, const char *k) {
  if (g->last_kernel == NULL || strcmp(g->last_kernel, k) != 0) {
    char *c = pf_arena_strdup(&g->mem, k);
    if (c == NULL) return NULL;
    g->last_kernel = c;
  }
  return g->last_kernel;
}

int pf_graph_add_program(pf_graph *g, const pf_gprogram *p) {
  pf_gprogram c;
  size_t n_in = (size_t)p->n_in, n_out = (size_t)p->n_out;
  memset(&c, 0, sizeof c);
  if (pf_grow((void **)&g->programs, &g->cap_programs, g->n_programs + 1,
              sizeof *g->programs))
    return PF_ENOMEM;
  c.slice = p->slice;
  c.n_in = p->n_in;
  c.n_out = p->n_out;
  /* Shardings first: they hold 8-byte-aligned pairs of ints. */
  c.in_shardings = pf_arena_alloc(&g->mem, n_in * sizeof *c.in_shardings +
                                               (n_in + n_out) * sizeof *c.in);
  c.name = pf_arena_strdup(&g->mem, p->name);
  c.kernel = p->kernel ? kernel_copy(g, p->kernel) : NULL;
  if (c.name == NULL || c.kernel == NULL || c.in_shardings == NULL) return PF_ENOMEM;
  /* Programs added one after another mostly carry the same attributes
   * (the shards of a layer, the steps of a chain): one set for all of them,
   * which the plans share in turn, instead of a copy each (memory, and the
   * cache misses of kernels reading their attributes). */
  if (g->n_programs > 0 && pf_attrs_identical(g->programs[g->n_programs - 1].attrs, p->attrs))
    c.attrs = pf_attrs_ref(g->programs[g->n_programs - 1].attrs);
  else if (pf_attrs_share(p->attrs, &c.attrs) != 0)
    return PF_ENOMEM; /* what the arena gave stays there until destroy */
  c.in = (int32_t *)(c.in_shardings + n_in);
  c.out = c.in + n_in;
  if (n_in) {
    memcpy(c.in_shardings, p->in_shardings, n_in * sizeof *c.in_shardings);
    memcpy(c.in, p->in, n_in * sizeof *c.in);
  }
  if (n_out) memcpy(c.out, p->out, n_out * sizeof *c.out);
  g->programs[g->n_programs] = c;
  if (name_index(g, g->n_programs) != 0) {
    pf_attrs_destroy(c.attrs);
    return PF_ENOMEM;
  }
  g->n_programs++;
  return 0;
}

int pf_graph_add_named(pf_graph *g, int is_output, const char *name,
                       int32_t value) {
  pf_gnamed **items = is_output ? &g->outputs : &g->inputs;
  size_t *n = is_output ? &g->n_outputs : &g->n_inputs;
  size_t *cap = is_output ? &g->cap_outputs : &g->cap_inputs;
  char *copy;
  if (pf_grow((void **)items, cap, *n + 1, sizeof **items)) return PF_ENOMEM;
  if ((copy = pf_strdup(name)) == NULL) return PF_ENOMEM;
  (*items)[*n].name = copy;
  (*items)[*n].value = value;
  (*n)++;
  return 0;
}

/* ---- public builders -------------------------------------------------------- */

static pf_diag *begin(pf_graph *g) {
  pf_diag_init(g->env.diag);
  return g->env.diag;
}

static int name_ok(const char *name) {
  return name != NULL && name[0] != '\0' && strlen(name) <= PF_NAME_MAX;
}

static int named_find(const pf_gnamed *items, size_t n, const char *name) {
  for (size_t i = 0; i < n; i++)
    if (strcmp(items[i].name, name) == 0) return (int)i;
  return -1;
}

/* "<base>_<n>", made unique if a program was given that name explicitly.
 * Written by hand: snprintf was a tenth of building a large graph. */
static void auto_name(const pf_graph *g, const char *base, char *out, size_t len) {
  char digits[24];
  size_t nb = strnlen(base, 64), nd = 0;
  size_t n = g->n_programs;
  do {
    digits[nd++] = (char)('0' + n % 10);
    n /= 10;
  } while (n > 0);
  if (nb + 1 + nd < len) {
    memcpy(out, base, nb);
    out[nb] = '_';
    for (size_t i = 0; i < nd; i++) out[nb + 1 + i] = digits[nd - 1 - i];
    out[nb + 1 + nd] = '\0';
  } else {
    snprintf(out, len, "%.64s_%zu", base, g->n_programs);
  }
  for (int k = 1; pf_graph_find_program(g, out) >= 0; k++)
    snprintf(out, len, "%.64s_%zu_%d", base, g->n_programs, k);
}

int pf_graph_slice(pf_graph *g, pf_device_kind kind, int num_devices,
                   pf_slice_t *out) {
  pf_gslice s = {kind, num_devices, NULL};
  pf_diag *d;
  int rc;
  if (g == NULL || out == NULL) return PF_EINVAL;
  d = begin(g);
  if ((unsigned)kind >= PF_DEVICE_KIND_COUNT)
    return pf_diag_error(d, PF_EINVAL, "slice: unknown device kind %d", kind);
  if (num_devices < 1)
    return pf_diag_error(d, PF_EINVAL, "slice: %d devices requested, need >= 1",
                         num_devices);
  if (num_devices > g->env.num_devices[kind])
    return pf_diag_error(d, PF_ESLICE,
                         "slice of %d %s devices: only %d available",
                         num_devices, pf_device_kind_name(kind),
                         g->env.num_devices[kind]);
  if ((rc = pf_graph_add_slice(g, &s)) != 0)
    return pf_diag_error(d, rc, "slice: out of memory");
  *out = pf_slice_of((int32_t)(g->n_slices - 1));
  return 0;
}

int pf_graph_slice_pin(pf_graph *g, pf_slice_t slice_id, const int *devices) {
  int32_t slice = slice_id.id;
  pf_gslice *s;
  pf_diag *d;
  int *copy;
  if (g == NULL || devices == NULL) return PF_EINVAL;
  d = begin(g);
  if (slice < 0 || (size_t)slice >= g->n_slices)
    return pf_diag_error(d, PF_EINVAL, "pin: no slice %d", slice);
  s = &g->slices[slice];
  for (int i = 0; i < s->num_devices; i++) {
    if (devices[i] < 0 || devices[i] >= g->env.num_devices[s->kind])
      return pf_diag_error(d, PF_ESLICE,
                           "pin slice %d: device %d out of range (%d %s devices)",
                           slice, devices[i], g->env.num_devices[s->kind],
                           pf_device_kind_name(s->kind));
    for (int j = 0; j < i; j++)
      if (devices[j] == devices[i])
        return pf_diag_error(d, PF_EINVAL, "pin slice %d: device %d repeated",
                             slice, devices[i]);
  }
  copy = dup_array(devices, (size_t)s->num_devices, sizeof(int));
  if (copy == NULL) return pf_diag_error(d, PF_ENOMEM, "pin: out of memory");
  free(s->pinned);
  s->pinned = copy;
  return 0;
}

int pf_graph_input(pf_graph *g, const char *name, const pf_spec *spec,
                   pf_slice_t slice_id, pf_sharding sharding, pf_value_t *out) {
  int32_t slice = slice_id.id;
  pf_gvalue v;
  pf_spec local;
  pf_diag *d;
  char what[PF_NAME_MAX + 16], why[256];
  int rc;
  if (g == NULL || spec == NULL || out == NULL) return PF_EINVAL;
  d = begin(g);
  if (!name_ok(name))
    return pf_diag_error(d, PF_EINVAL, "input: name must be 1..%d bytes",
                         PF_NAME_MAX);
  if (named_find(g->inputs, g->n_inputs, name) >= 0)
    return pf_diag_error(d, PF_EEXIST, "input \"%s\": name already in use",
                         name);
  if (slice < 0 || (size_t)slice >= g->n_slices)
    return pf_diag_error(d, PF_EINVAL, "input \"%s\": no slice %d", name, slice);
  if ((rc = pf_spec_explain(spec, why, sizeof why)) != 0)
    return pf_diag_error(d, rc, "input \"%s\": bad spec: %s", name, why);
  if (sharding.kind == PF_SHARD_PARTIAL)
    return pf_diag_error(d, PF_ESHARDING,
                         "input \"%s\": inputs are replicated or split, "
                         "never partial",
                         name);
  snprintf(what, sizeof what, "input \"%s\"", name);
  if ((rc = pf_shard_spec(spec, sharding, g->slices[slice].num_devices, &local,
                          what, d)) != 0)
    return rc;
  v.spec = spec;
  v.slice = slice;
  v.sharding = sharding;
  v.producer = -1;
  v.output_index = 0;
  if (pf_graph_add_value(g, &v) != 0 ||
      pf_graph_add_named(g, 0, name, (int32_t)(g->n_values - 1)) != 0)
    return pf_diag_error(d, PF_ENOMEM, "input \"%s\": out of memory", name);
  *out = pf_value_of((int32_t)(g->n_values - 1));
  return 0;
}

static int add_checked(pf_graph *g, pf_gprogram *p, const pf_sharding *out_sh,
                       const pf_spec *out_specs, pf_value_t *outs,
                       pf_program_t *prog, pf_diag *d);

int pf_graph_program(pf_graph *g, const pf_program_desc *desc,
                     pf_value_t *outs, pf_program_t *prog) {
  pf_gprogram p;
  pf_sharding in_sh[PF_MAX_ARGS], out_sh[PF_MAX_OUTS];
  int32_t in_ids[PF_MAX_ARGS];
  pf_spec out_specs[PF_MAX_OUTS];
  const pf_kernel *k;
  char autoname[PF_NAME_MAX + 1];
  pf_diag *d;
  int rc;
  if (g == NULL || desc == NULL) return PF_EINVAL;
  d = begin(g);
  if (desc->kernel == NULL)
    return pf_diag_error(d, PF_EINVAL, "program: no kernel name");
  if (desc->slice.id < 0 || (size_t)desc->slice.id >= g->n_slices)
    return pf_diag_error(d, PF_EINVAL, "program \"%s\": no slice %d",
                         desc->name ? desc->name : desc->kernel, desc->slice.id);
  if (desc->name == NULL) {
    auto_name(g, desc->kernel, autoname, sizeof autoname);
  } else if (!name_ok(desc->name)) {
    return pf_diag_error(d, PF_EINVAL, "program: name must be 1..%d bytes",
                         PF_NAME_MAX);
  }
  memset(&p, 0, sizeof p);
  p.name = desc->name ? (char *)desc->name : autoname;
  p.kernel = (char *)desc->kernel;
  p.attrs = (pf_attrs *)desc->attrs;
  p.slice = desc->slice.id;
  if (desc->name != NULL && pf_graph_find_program(g, p.name) >= 0) /* auto: unique */
    return pf_diag_error(d, PF_EEXIST, "program \"%s\": name already in use",
                         p.name);
  k = pf_registry_find(g->env.registry, desc->kernel, g->slices[p.slice].kind);
  if (k == NULL)
    return pf_diag_error(d, PF_ENOKERNEL,
                         "program \"%s\": no kernel \"%s\" for %s devices",
                         p.name, desc->kernel,
                         pf_device_kind_name(g->slices[p.slice].kind));
  if (desc->n_in < 0 || desc->n_in > PF_MAX_ARGS || (desc->n_in && !desc->in))
    return pf_diag_error(d, PF_EARITY, "program \"%s\": bad input count %d",
                         p.name, desc->n_in);
  if (k->def.n_out > PF_MAX_OUTS)
    return pf_diag_error(d, PF_EARITY, "program \"%s\": kernel \"%s\" has %d outputs",
                         p.name, k->def.name, k->def.n_out);
  for (int i = 0; i < desc->n_in; i++) {
    int32_t v = desc->in[i].id;
    if (v < 0 || (size_t)v >= g->n_values)
      return pf_diag_error(d, PF_EINVAL, "program \"%s\": input %d is no value (%d)",
                           p.name, i, v);
    in_ids[i] = v;
    if (desc->in_shardings != NULL) {
      in_sh[i] = desc->in_shardings[i];
    } else {
      const pf_gvalue *gv = &g->values[v];
      in_sh[i] = g->slices[gv->slice].num_devices ==
                         g->slices[p.slice].num_devices
                     ? gv->sharding
                     : pf_replicated();
    }
  }
  p.n_in = desc->n_in;
  p.in = in_ids;
  p.in_shardings = in_sh;
  p.n_out = k->def.n_out;
  if ((k->def.n_in != PF_VARIADIC && p.n_in != k->def.n_in))
    return pf_diag_error(d, PF_EARITY,
                         "program \"%s\": kernel \"%s\" takes %d inputs, got %d",
                         p.name, k->name, k->def.n_in, p.n_in);
  /* Layouts first (the rule may pick other input shardings), then shapes on
   * that layout, and only then, when nothing can fail but memory, the
   * reductions of partial inputs go into the graph. */
  if ((rc = pf_graph_choose_shardings(g, &p, k, desc->in_shardings != NULL,
                                      desc->out_shardings, out_sh, d)) != 0 ||
      (rc = pf_graph_check_consumption(g, &p, 1, d)) != 0 ||
      (rc = pf_graph_infer_kernel(g, &p, k, out_sh, out_specs, d)) != 0 ||
      (rc = pf_graph_reduce_inputs(g, &p, p.name, d)) != 0)
    return rc;
  return add_checked(g, &p, out_sh, out_specs, outs, prog, d);
}

/* Appends program p, whose output specs and shardings are known, and its
 * output values. */
static int add_checked(pf_graph *g, pf_gprogram *p, const pf_sharding *out_sh,
                       const pf_spec *out_specs, pf_value_t *outs,
                       pf_program_t *prog, pf_diag *d) {
  int32_t out_ids[PF_MAX_OUTS];
  p->out = NULL;
  for (int i = 0; i < p->n_out; i++) {
    pf_gvalue v;
    v.spec = &out_specs[i];
    v.slice = p->slice;
    v.sharding = out_sh[i];
    v.producer = (int32_t)g->n_programs;
    v.output_index = i;
    if (pf_graph_add_value(g, &v) != 0) {
      g->n_values -= (size_t)i;
      return pf_diag_error(d, PF_ENOMEM, "program \"%s\": out of memory", p->name);
    }
    out_ids[i] = (int32_t)(g->n_values - 1);
  }
  p->out = out_ids;
  if (pf_graph_add_program(g, p) != 0) {
    g->n_values -= (size_t)p->n_out;
    return pf_diag_error(d, PF_ENOMEM, "program \"%s\": out of memory", p->name);
  }
  if (outs != NULL) pf_values_of(outs, out_ids, p->n_out);
  if (prog != NULL) *prog = pf_program_of((int32_t)(g->n_programs - 1));
  return 0;
}

int pf_graph_collective(pf_graph *g, const pf_collective_desc *desc,
                        pf_value_t *out, pf_program_t *prog) {
  pf_gprogram p;
  pf_sharding in_sh, out_sh;
  pf_spec out_spec;
  int32_t in_id;
  char autoname[PF_NAME_MAX + 1];
  const pf_gvalue *v;
  pf_diag *d;
  pf_attrs *attrs;
  int rc;
  if (g == NULL || desc == NULL || out == NULL) return PF_EINVAL;
  d = begin(g);
  if ((unsigned)desc->kind >= PF_COLLECTIVE_COUNT)
    return pf_diag_error(d, PF_EINVAL, "collective: unknown kind %d", desc->kind);
  if (desc->slice.id < 0 || (size_t)desc->slice.id >= g->n_slices)
    return pf_diag_error(d, PF_EINVAL, "collective: no slice %d", desc->slice.id);
  if (desc->in.id < 0 || (size_t)desc->in.id >= g->n_values)
    return pf_diag_error(d, PF_EINVAL, "collective: input is no value (%d)", desc->in.id);
  if (desc->name == NULL)
    auto_name(g, pf_collective_name(desc->kind), autoname, sizeof autoname);
  else if (!name_ok(desc->name))
    return pf_diag_error(d, PF_EINVAL, "collective: name must be 1..%d bytes", PF_NAME_MAX);
  memset(&p, 0, sizeof p);
  p.name = desc->name ? (char *)desc->name : autoname;
  if (pf_graph_find_program(g, p.name) >= 0)
    return pf_diag_error(d, PF_EEXIST, "collective \"%s\": name already in use", p.name);
  v = &g->values[desc->in.id];
  /* Allgather consumes the value split along its axis; the others take the
   * blocks as they lie when the slice has the value's size. */
  if (desc->kind == PF_ALLGATHER)
    in_sh = pf_split(desc->axis);
  else if (g->slices[v->slice].num_devices == g->slices[desc->slice.id].num_devices)
    in_sh = v->sharding;
  else
    in_sh = pf_replicated();
  /* Broadcasting a summand would be wrong: broadcast the sum. */
  if (desc->kind == PF_BROADCAST && in_sh.kind == PF_SHARD_PARTIAL)
    in_sh = pf_replicated();
  if ((rc = pf_attrs_create(&attrs)) != 0 ||
      (rc = pf_attrs_set_int(attrs, PF_COLL_ATTR_OP, desc->op)) != 0 ||
      (rc = pf_attrs_set_int(attrs, PF_COLL_ATTR_AXIS, desc->axis)) != 0 ||
      (rc = pf_attrs_set_int(attrs, PF_COLL_ATTR_ROOT, desc->root)) != 0) {
    pf_attrs_destroy(attrs);
    return pf_diag_error(d, PF_ENOMEM, "collective: out of memory");
  }
  p.kernel = (char *)pf_collective_kernel(desc->kind);
  p.attrs = attrs;
  p.slice = desc->slice.id;
  in_id = desc->in.id;
  p.n_in = 1;
  p.in = &in_id;
  p.in_shardings = &in_sh;
  p.n_out = 1;
  /* A partial input is reduced first unless the collective sums it as it
   * lies (allreduce and reduce-scatter with op sum). */
  if ((rc = pf_collective_infer(g, &p, &out_sh, &out_spec, d)) == 0 &&
      (rc = pf_graph_check_consumption(g, &p, 1, d)) == 0 &&
      (rc = pf_graph_reduce_inputs(g, &p, p.name, d)) == 0)
    rc = add_checked(g, &p, &out_sh, &out_spec, out, prog, d);
  pf_attrs_destroy(attrs);
  return rc;
}

int pf_graph_output(pf_graph *g, const char *name, pf_value_t value_id) {
  int32_t value = value_id.id;
  pf_diag *d;
  int rc;
  if (g == NULL) return PF_EINVAL;
  d = begin(g);
  if (!name_ok(name))
    return pf_diag_error(d, PF_EINVAL, "output: name must be 1..%d bytes",
                         PF_NAME_MAX);
  if (value < 0 || (size_t)value >= g->n_values)
    return pf_diag_error(d, PF_EINVAL, "output \"%s\": no value %d", name, value);
  if (named_find(g->outputs, g->n_outputs, name) >= 0)
    return pf_diag_error(d, PF_EEXIST, "output \"%s\": name already in use",
                         name);
  /* A caller fetching a partial value wants the sum, never one summand. */
  if (g->values[value].sharding.kind == PF_SHARD_PARTIAL &&
      g->slices[g->values[value].slice].num_devices > 1 &&
      (rc = pf_graph_reduce_partial(g, value, NULL, &value, d)) != 0)
    return rc;
  if (pf_graph_add_named(g, 1, name, value) != 0)
    return pf_diag_error(d, PF_ENOMEM, "output \"%s\": out of memory", name);
  return 0;
}

int pf_graph_set_input(pf_graph *g, pf_program_t prog_id, int index,
                       pf_value_t value_id) {
  int32_t prog = prog_id.id, value = value_id.id;
  pf_diag *d;
  if (g == NULL) return PF_EINVAL;
  d = begin(g);
  if (prog < 0 || (size_t)prog >= g->n_programs)
    return pf_diag_error(d, PF_EINVAL, "set_input: no program %d", prog);
  if (index < 0 || index >= g->programs[prog].n_in)
    return pf_diag_error(d, PF_EINVAL,
                         "set_input: program \"%s\" has no input %d",
                         g->programs[prog].name, index);
  if (value < 0 || (size_t)value >= g->n_values)
    return pf_diag_error(d, PF_EINVAL, "set_input: no value %d", value);
  g->programs[prog].in[index] = value;
  return 0;
}

int pf_graph_value_spec(const pf_graph *g, pf_value_t value, pf_spec *out) {
  if (g == NULL || out == NULL || value.id < 0 || (size_t)value.id >= g->n_values)
    return PF_EINVAL;
  *out = *g->values[value.id].spec;
  return 0;
}

int pf_graph_num_programs(const pf_graph *g) { return g ? (int)g->n_programs : 0; }
int pf_graph_num_inputs(const pf_graph *g) { return g ? (int)g->n_inputs : 0; }
int pf_graph_num_outputs(const pf_graph *g) { return g ? (int)g->n_outputs : 0; }

int pf_graph_set_placement(pf_graph *g, pf_placement policy) {
  if (g == NULL || (policy != PF_PLACE_PACKED && policy != PF_PLACE_SPREAD)) return PF_EINVAL;
  g->placement = policy;
  return 0;
}

int pf_graph_set_dispatch(pf_graph *g, pf_dispatch_mode mode) {
  if (g == NULL || (mode != PF_DISPATCH_PARALLEL && mode != PF_DISPATCH_SEQUENTIAL))
    return PF_EINVAL;
  g->dispatch = mode;
  return 0;
}

int pf_graph_add_control(pf_graph *g, int32_t before, int32_t after) {
  if (pf_grow((void **)&g->controls, &g->cap_controls, g->n_controls + 1, sizeof *g->controls))
    return PF_ENOMEM;
  g->controls[g->n_controls++] = (pf_gcontrol){before, after};
  return 0;
}

int pf_graph_control(pf_graph *g, pf_program_t before_id, pf_program_t after_id) {
  int32_t before = before_id.id, after = after_id.id;
  pf_diag *d;
  if (g == NULL) return PF_EINVAL;
  d = begin(g);
  if (before < 0 || (size_t)before >= g->n_programs || after < 0 ||
      (size_t)after >= g->n_programs)
    return pf_diag_error(d, PF_EINVAL, "control dependency %d -> %d: the graph has %zu programs",
                         (int)before, (int)after, g->n_programs);
  if (before == after)
    return pf_diag_error(d, PF_EINVAL, "control dependency of program \"%s\" on itself",
                         g->programs[before].name);
  if (pf_graph_add_control(g, before, after) != 0)
    return pf_diag_error(d, PF_ENOMEM, "control dependency: out of memory");
  return 0;
}

int pf_graph_program_slice(const pf_graph *g, pf_program_t prog, pf_slice_t *out) {
  if (g == NULL || out == NULL || prog.id < 0 || (size_t)prog.id >= g->n_programs)
    return PF_EINVAL;
  *out = pf_slice_of(g->programs[prog.id].slice);
  return 0;
}

int pf_graph_validate(pf_graph *g) {
  if (g == NULL) return PF_EINVAL;
  return pf_graph_check(g, begin(g));
}
