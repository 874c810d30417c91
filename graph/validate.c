/* Whole-graph validation: the one place that decides whether a graph is
 * well formed. The builders call the per-program part (pf_graph_infer_kernel)
 * eagerly; pf_compile calls pf_graph_check on everything, because graphs can
 * be rewired or decoded from untrusted bytes. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/attrs_internal.h"
#include "base/layout.h"
#include "base/util.h"
#include "graph/collective.h"
#include "graph/graph_internal.h"
#include "pathflow/error.h"

/* A kernel's shape function sees shard specs; a user declared global ones.
 * When they differ, the message says how each input was cut. */
static void explain_shards(const pf_graph *g, const pf_gprogram *p,
                           const pf_spec *local, pf_diag *d) {
  int n = g->slices[p->slice].num_devices, cut = 0;
  for (int i = 0; i < p->n_in; i++) cut |= p->in_shardings[i].kind == PF_SHARD_SPLIT;
  if (n == 1 || !cut) return;
  pf_diag_suffix(d, " (the kernel sees shards: inputs consumed over %d devices as", n);
  for (int i = 0; i < p->n_in; i++) {
    char gs[128], ls[128], sh[32];
    pf_diag_suffix(d, "%s %s %s -> %s", i ? "," : "",
                   pf_spec_str(g->values[p->in[i]].spec, gs, sizeof gs),
                   pf_sharding_str(p->in_shardings[i], sh, sizeof sh),
                   pf_spec_str(&local[i], ls, sizeof ls));
  }
  pf_diag_suffix(d, ")");
}

int pf_graph_infer_kernel(const pf_graph *g, const pf_gprogram *p, const pf_kernel *k,
                          const pf_sharding *out_sh, pf_spec *out, pf_diag *d) {
  const pf_gslice *slice = &g->slices[p->slice];
  pf_spec in_stack[PF_ARGS_ON_STACK], *in_local, out_local[PF_MAX_OUTS];
  char what[PF_NAME_MAX + 64], buf[128];
  pf_diag kd;
  int rc;
  if (pf_collective_from_kernel(p->kernel) >= 0) {
    pf_sharding sh;
    if ((rc = pf_collective_infer(g, p, &sh, &out[0], d)) != 0) return rc;
    if (!pf_sharding_equal(sh, out_sh[0]))
      return pf_diag_error(d, PF_EINVAL,
                           "collective \"%s\": output sharding differs from what "
                           "%s gives",
                           p->name, p->kernel);
    return 0;
  }
  if (k == NULL)
    return pf_diag_error(d, PF_ENOKERNEL,
                         "program \"%s\": no kernel \"%s\" for %s devices",
                         p->name, p->kernel, pf_device_kind_name(slice->kind));
  if ((k->def.n_in != PF_VARIADIC && p->n_in != k->def.n_in) ||
      p->n_in > PF_MAX_ARGS)
    return pf_diag_error(d, PF_EARITY,
                         "program \"%s\": kernel \"%s\" takes %d inputs, got %d",
                         p->name, k->name, k->def.n_in, p->n_in);
  if (p->n_out != k->def.n_out || p->n_out > PF_MAX_OUTS)
    return pf_diag_error(d, PF_EARITY,
                         "program \"%s\": kernel \"%s\" makes %d outputs, got %d",
                         p->name, k->name, k->def.n_out, p->n_out);
  if ((in_local = pf_args_scratch(in_stack, p->n_in, sizeof *in_local)) == NULL)
    return pf_diag_error(d, PF_ENOMEM, "program \"%s\": out of memory", p->name);
  for (int i = 0; i < p->n_in; i++) {
    const pf_gvalue *v = &g->values[p->in[i]];
    /* The message is only written when the spec does not divide: a million
     * programs would spend more time formatting it than checking. */
    rc = pf_shard_spec(v->spec, p->in_shardings[i], slice->num_devices,
                       &in_local[i], "", NULL);
    if (rc) {
      snprintf(what, sizeof what, "program \"%s\" input %d (value %d)", p->name,
               i, p->in[i]);
      rc = pf_shard_spec(v->spec, p->in_shardings[i], slice->num_devices,
                         &in_local[i], what, d);
      pf_args_scratch_free(in_stack, in_local);
      return rc;
    }
  }
  pf_diag_init(&kd);
  memset(out_local, 0, sizeof out_local);
  rc = k->def.shape(p->attrs, p->n_in, in_local, p->n_out, out_local, &kd);
  if (rc != 0) {
    if (kd.code == 0) pf_diag_error(&kd, rc, "shape function failed");
    pf_diag_prefix(&kd, "program \"%s\" (kernel \"%s\")", p->name, k->name);
    explain_shards(g, p, in_local, &kd);
  }
  pf_args_scratch_free(in_stack, in_local);
  if (rc != 0) return pf_diag_copy(d, &kd);
  for (int i = 0; i < p->n_out; i++) {
    if ((rc = pf_spec_check(&out_local[i])) != 0)
      return pf_diag_error(d, PF_ESHAPE,
                           "program \"%s\": kernel \"%s\" gave a bad spec for "
                           "output %d",
                           p->name, k->name, i);
    out[i] = out_local[i];
    if (out_sh[i].kind == PF_SHARD_REPLICATED ||
        out_sh[i].kind == PF_SHARD_PARTIAL)
      continue;
    if (out_sh[i].kind != PF_SHARD_SPLIT || out_sh[i].axis < 0 ||
        out_sh[i].axis >= out_local[i].rank)
      return pf_diag_error(d, PF_ESPLIT,
                           "program \"%s\" output %d: split axis %d out of "
                           "range for shard %s",
                           p->name, i, out_sh[i].axis,
                           pf_spec_str(&out_local[i], buf, sizeof buf));
    out[i].dims[out_sh[i].axis] *= slice->num_devices;
    if (pf_spec_check(&out[i]) != 0)
      return pf_diag_error(d, PF_ERANGE, "program \"%s\" output %d: too large",
                           p->name, i);
  }
  return 0;
}

/* ---- topological order -------------------------------------------------- */

static void heap_push(int32_t *h, size_t *n, int32_t v) {
  size_t i = (*n)++;
  while (i > 0 && h[(i - 1) / 2] > v) {
    h[i] = h[(i - 1) / 2];
    i = (i - 1) / 2;
  }
  h[i] = v;
}

static int32_t heap_pop(int32_t *h, size_t *n) {
  int32_t top = h[0], last = h[--(*n)];
  size_t i = 0;
  for (;;) {
    size_t c = 2 * i + 1;
    if (c >= *n) break;
    if (c + 1 < *n && h[c + 1] < h[c]) c++;
    if (last <= h[c]) break;
    h[i] = h[c];
    i = c;
  }
  if (*n > 0) h[i] = last;
  return top;
}

static int32_t producer_of(const pf_graph *g, int32_t v) {
  if (v < 0 || (size_t)v >= g->n_values) return -1;
  return g->values[v].producer;
}

/* A producer of p's inputs, or a control predecessor, that is itself still
 * pending (on the cycle). */
static int32_t pending_producer(const pf_graph *g, const int *pending, int32_t p) {
  const pf_gprogram *pr = &g->programs[p];
  for (int i = 0; i < pr->n_in; i++) {
    int32_t q = producer_of(g, pr->in[i]);
    if (q >= 0 && pending[q] > 0) return q;
  }
  for (size_t c = 0; c < g->n_controls; c++)
    if (g->controls[c].after == p && pending[g->controls[c].before] > 0)
      return g->controls[c].before;
  return p;
}

/* Names the programs of a cycle among those left with pending inputs. */
static int report_cycle(const pf_graph *g, const int *pending, pf_diag *d) {
  int32_t cur = -1, start;
  char path[PF_DIAG_MSG_MAX / 2];
  size_t off = 0;
  for (size_t i = 0; i < g->n_programs && cur < 0; i++)
    if (pending[i] > 0) cur = (int32_t)i;
  /* Walking to a pending producer n times is sure to land on the cycle. */
  for (size_t step = 0; step < g->n_programs; step++) cur = pending_producer(g, pending, cur);
  start = cur;
  path[0] = '\0';
  /* "a" <- "b" <- ... <- "a": each arrow a real edge; stop before a name
   * that would not fit rather than cut it. */
  for (int n = 0;; n++) {
    const char *name = g->programs[cur].name;
    int w = snprintf(path + off, sizeof path - off, "%s\"%s\"", n ? " <- " : "", name);
    if (w < 0 || (size_t)w >= sizeof path - off) {
      path[off] = '\0';
      if (off + 8 < sizeof path) strcat(path, " <- ...");
      break;
    }
    off += (size_t)w;
    if (n > 0 && cur == start) break;
    cur = pending_producer(g, pending, cur);
  }
  return pf_diag_error(d, PF_ECYCLE, "the graph has a cycle: %s", path);
}

int pf_graph_topo_order(const pf_graph *g, int32_t *order, pf_diag *d) {
  size_t n = g->n_programs, emitted = 0, heap_n = 0;
  int *pending = pf_calloc(n, sizeof(int));
  size_t *first = pf_calloc(n + 1, sizeof(size_t));
  int32_t *users = NULL, *heap = pf_mallocn(n, sizeof(int32_t));
  size_t n_edges = 0;
  int rc = 0;
  if (pending == NULL || first == NULL || heap == NULL) {
    rc = pf_diag_error(d, PF_ENOMEM, "topological sort: out of memory");
    goto done;
  }
  /* Consumers of each program, as a CSR adjacency list. */
  for (size_t p = 0; p < n; p++)
    for (int i = 0; i < g->programs[p].n_in; i++) {
      int32_t q = producer_of(g, g->programs[p].in[i]);
      if (q >= 0) {
        pending[p]++;
        first[q + 1]++;
        n_edges++;
      }
    }
  /* Control edges count like data edges (ids checked by their builder and
   * decoder). */
  for (size_t c = 0; c < g->n_controls; c++) {
    pending[g->controls[c].after]++;
    first[g->controls[c].before + 1]++;
    n_edges++;
  }
  for (size_t p = 0; p < n; p++) first[p + 1] += first[p];
  if ((users = pf_mallocn(n_edges, sizeof *users)) == NULL) {
    rc = pf_diag_error(d, PF_ENOMEM, "topological sort: out of memory");
    goto done;
  }
  {
    size_t *fill = pf_mallocn(n + 1, sizeof(size_t));
    if (fill == NULL) {
      rc = pf_diag_error(d, PF_ENOMEM, "topological sort: out of memory");
      goto done;
    }
    memcpy(fill, first, (n + 1) * sizeof(size_t));
    for (size_t p = 0; p < n; p++)
      for (int i = 0; i < g->programs[p].n_in; i++) {
        int32_t q = producer_of(g, g->programs[p].in[i]);
        if (q >= 0) users[fill[q]++] = (int32_t)p;
      }
    for (size_t c = 0; c < g->n_controls; c++)
      users[fill[g->controls[c].before]++] = g->controls[c].after;
    free(fill);
  }
  for (size_t p = 0; p < n; p++)
    if (pending[p] == 0) heap_push(heap, &heap_n, (int32_t)p);
  while (heap_n > 0) {
    int32_t p = heap_pop(heap, &heap_n);
    order[emitted++] = p;
    for (size_t e = first[p]; e < first[p + 1]; e++)
      if (--pending[users[e]] == 0) heap_push(heap, &heap_n, users[e]);
  }
  if (emitted < n) rc = report_cycle(g, pending, d);
done:
  free(pending);
  free(first);
  free(users);
  free(heap);
  return rc;
}

/* ---- the whole graph ----------------------------------------------------- */

static int is_input(const pf_graph *g, int32_t v) {
  for (size_t i = 0; i < g->n_inputs; i++)
    if (g->inputs[i].value == v) return 1;
  return 0;
}

static int check_structure(const pf_graph *g, pf_diag *d) {
  for (size_t s = 0; s < g->n_slices; s++) {
    const pf_gslice *sl = &g->slices[s];
    if ((unsigned)sl->kind >= PF_DEVICE_KIND_COUNT || sl->num_devices < 1)
      return pf_diag_error(d, PF_EINVAL, "slice %zu: bad kind or size", s);
    if (sl->num_devices > g->env.num_devices[sl->kind])
      return pf_diag_error(d, PF_ESLICE,
                           "slice %zu: %d %s devices requested, %d available",
                           s, sl->num_devices, pf_device_kind_name(sl->kind),
                           g->env.num_devices[sl->kind]);
    for (int i = 0; sl->pinned && i < sl->num_devices; i++) {
      if (sl->pinned[i] < 0 || sl->pinned[i] >= g->env.num_devices[sl->kind])
        return pf_diag_error(d, PF_ESLICE, "slice %zu: pinned device %d out of range",
                             s, sl->pinned[i]);
      for (int j = 0; j < i; j++)
        if (sl->pinned[j] == sl->pinned[i])
          return pf_diag_error(d, PF_EINVAL, "slice %zu: pinned device %d repeated", s,
                               sl->pinned[i]);
    }
  }
  for (size_t v = 0; v < g->n_values; v++) {
    const pf_gvalue *val = &g->values[v];
    char what[48];
    pf_spec local;
    int rc;
    if (val->slice < 0 || (size_t)val->slice >= g->n_slices)
      return pf_diag_error(d, PF_EINVAL, "value %zu: no slice %d", v, val->slice);
    if ((rc = pf_spec_check(val->spec)) != 0)
      return pf_diag_error(d, rc, "value %zu: bad spec", v);
    if (pf_shard_spec(val->spec, val->sharding, g->slices[val->slice].num_devices,
                      &local, "", NULL) != 0) {
      snprintf(what, sizeof what, "value %zu", v); /* only for the message */
      return pf_shard_spec(val->spec, val->sharding, g->slices[val->slice].num_devices,
                           &local, what, d);
    }
    if (val->producer >= 0) {
      const pf_gprogram *p;
      if ((size_t)val->producer >= g->n_programs)
        return pf_diag_error(d, PF_EINVAL, "value %zu: no program %d", v,
                             val->producer);
      p = &g->programs[val->producer];
      if (val->output_index < 0 || val->output_index >= p->n_out ||
          p->out[val->output_index] != (int32_t)v)
        return pf_diag_error(d, PF_EINVAL,
                             "value %zu: not output %d of program \"%s\"", v,
                             val->output_index, p->name);
    }
  }
  for (size_t p = 0; p < g->n_programs; p++) {
    const pf_gprogram *pr = &g->programs[p];
    if (pr->slice < 0 || (size_t)pr->slice >= g->n_slices)
      return pf_diag_error(d, PF_EINVAL, "program \"%s\": no slice %d",
                           pr->name, pr->slice);
    for (int i = 0; i < pr->n_in; i++) {
      int32_t v = pr->in[i];
      if (v < 0 || (size_t)v >= g->n_values)
        return pf_diag_error(d, PF_EINVAL, "program \"%s\" input %d: no value %d",
                             pr->name, i, v);
      if (g->values[v].producer < 0 && !is_input(g, v))
        return pf_diag_error(d, PF_ENOOUTPUT,
                             "program \"%s\" input %d: value %d is never produced",
                             pr->name, i, v);
    }
    for (int i = 0; i < pr->n_out; i++) {
      int32_t v = pr->out[i];
      if (v < 0 || (size_t)v >= g->n_values || g->values[v].producer != (int)p ||
          g->values[v].output_index != i)
        return pf_diag_error(d, PF_EINVAL,
                             "program \"%s\" output %d: value %d does not name "
                             "it as producer",
                             pr->name, i, v);
      if (g->values[v].slice != pr->slice)
        return pf_diag_error(d, PF_EINVAL,
                             "program \"%s\" output %d: value on another slice",
                             pr->name, i);
    }
  }
  for (size_t i = 0; i < g->n_inputs; i++) {
    int32_t v = g->inputs[i].value;
    if (v < 0 || (size_t)v >= g->n_values || g->values[v].producer != -1)
      return pf_diag_error(d, PF_EINVAL, "input \"%s\": not an input value",
                           g->inputs[i].name);
  }
  for (size_t i = 0; i < g->n_outputs; i++) {
    int32_t v = g->outputs[i].value;
    if (v < 0 || (size_t)v >= g->n_values)
      return pf_diag_error(d, PF_EINVAL, "output \"%s\": no value %d",
                           g->outputs[i].name, v);
    if (g->values[v].producer < 0 && !is_input(g, v))
      return pf_diag_error(d, PF_ENOOUTPUT,
                           "output \"%s\": value %d is never produced",
                           g->outputs[i].name, v);
  }
  return 0;
}

int pf_graph_check(const pf_graph *g, pf_diag *d) {
  int32_t *order = pf_mallocn(g->n_programs, sizeof *order);
  int rc;
  if (order == NULL) return pf_diag_error(d, PF_ENOMEM, "validate: out of memory");
  rc = pf_graph_check_order(g, order, d);
  free(order);
  return rc;
}

/* A program whose checks passed, as far as they read it, and the output
 * specs its kernel gave: a program equal to it in all of these passes them
 * too and gets the same specs, since a kernel's shape and sharding rules
 * are functions of its attributes and its inputs' specs and layouts alone.
 * A graph of a million programs is a few programs over and over (a
 * stencil of width 2: one per slice, alternating), and their checks were
 * two thirds of the compile's first pass. Programs are kept by their
 * slice and their inputs' slices, four places per slice of the graph (at
 * least 16, at most MEMO_WAYS_MAX); a later one of the same place takes
 * it. Programs of more than MEMO_ARGS inputs or outputs are always
 * checked. */
#define MEMO_ARGS 8
#define MEMO_WAYS_MAX 8192
typedef struct check_memo {
  int valid;
  int32_t slice;
  const char *kernel;
  const pf_attrs *attrs;
  int n_in, n_out;
  const pf_spec *in_spec[MEMO_ARGS]; /* the graph's one copy of each spec */
  int32_t in_slice[MEMO_ARGS];
  pf_sharding in_value_sh[MEMO_ARGS], in_sh[MEMO_ARGS], out_sh[MEMO_ARGS];
  const pf_spec *out[MEMO_ARGS]; /* its outputs' specs: what its kernel gave */
} check_memo;

static int memo_hit(const pf_graph *g, const check_memo *m, const pf_gprogram *p) {
  if (!m->valid || p->slice != m->slice || p->n_in != m->n_in || p->n_out != m->n_out ||
      (p->kernel != m->kernel && strcmp(p->kernel, m->kernel) != 0) ||
      (p->attrs != m->attrs && !pf_attrs_identical(p->attrs, m->attrs)))
    return 0;
  for (int i = 0; i < p->n_in; i++) {
    const pf_gvalue *v = &g->values[p->in[i]];
    if (v->spec != m->in_spec[i] || v->slice != m->in_slice[i] ||
        !pf_sharding_equal(v->sharding, m->in_value_sh[i]) ||
        !pf_sharding_equal(p->in_shardings[i], m->in_sh[i]))
      return 0;
  }
  for (int i = 0; i < p->n_out; i++)
    if (!pf_sharding_equal(g->values[p->out[i]].sharding, m->out_sh[i])) return 0;
  return 1;
}

/* Where p's memo is: by its slice and its inputs' (the programs of a
 * stencil's step on one slice differ in where their inputs come from). */
static size_t memo_way(const pf_graph *g, const pf_gprogram *p, size_t ways) {
  uint32_t h = (uint32_t)p->slice * 2654435761u + (uint32_t)p->n_in;
  for (int i = 0; i < p->n_in && i < MEMO_ARGS; i++)
    h = h * 31u + (uint32_t)g->values[p->in[i]].slice;
  h ^= h >> 16; /* the low bits from all of it (murmur3's finish) */
  h *= 0x85ebca6bu;
  h ^= h >> 13;
  h *= 0xc2b2ae35u;
  h ^= h >> 16;
  return h & (ways - 1);
}

/* After p's checks passed: its output values' specs are what its kernel
 * gave. */
static void memo_keep(const pf_graph *g, check_memo *m, const pf_gprogram *p) {
  m->valid = p->n_in <= MEMO_ARGS && p->n_out <= MEMO_ARGS;
  if (!m->valid) return;
  m->slice = p->slice;
  m->kernel = p->kernel;
  m->attrs = p->attrs;
  m->n_in = p->n_in;
  m->n_out = p->n_out;
  for (int i = 0; i < p->n_in; i++) {
    const pf_gvalue *v = &g->values[p->in[i]];
    m->in_spec[i] = v->spec;
    m->in_slice[i] = v->slice;
    m->in_value_sh[i] = v->sharding;
    m->in_sh[i] = p->in_shardings[i];
  }
  for (int i = 0; i < p->n_out; i++) {
    m->out_sh[i] = g->values[p->out[i]].sharding;
    m->out[i] = g->values[p->out[i]].spec;
  }
}

int pf_graph_check_order(const pf_graph *g, int32_t *order, pf_diag *d) {
  const pf_kernel *last = NULL;
  const char *last_name = NULL;
  pf_device_kind last_kind = PF_DEVICE_CPU;
  size_t ways = 16;
  check_memo *memo;
  int rc;
  if ((rc = check_structure(g, d)) != 0 || (rc = pf_graph_check_ends(g, d)) != 0)
    return rc;
  if ((rc = pf_graph_topo_order(g, order, d)) != 0) return rc;
  while (ways < 4 * g->n_slices && ways < MEMO_WAYS_MAX) ways *= 2;
  memo = calloc(ways, sizeof *memo); /* NULL: every program checked */
  for (size_t k = 0; k < g->n_programs && rc == 0; k++) {
    const pf_gprogram *p = &g->programs[order[k]];
    pf_device_kind kind = g->slices[p->slice].kind;
    pf_sharding out_sh[PF_MAX_OUTS];
    pf_spec out[PF_MAX_OUTS];
    char want[128], got[128];
    if (p->n_out > PF_MAX_OUTS || p->n_in > PF_MAX_ARGS) {
      rc = pf_diag_error(d, PF_EARITY, "program \"%s\": too many arguments",
                         p->name);
      break;
    }
    /* Consecutive programs mostly share their kernel's name (the graph
     * keeps one copy of a run of them): one look-up for the run. */
    if (p->kernel != last_name || kind != last_kind) {
      last = pf_registry_find(g->env.registry, p->kernel, kind);
      last_name = p->kernel;
      last_kind = kind;
    }
    check_memo *m = memo != NULL ? &memo[memo_way(g, p, ways)] : NULL;
    int hit = m != NULL && memo_hit(g, m, p);
    if (hit) {
      for (int i = 0; i < p->n_out; i++) out[i] = *m->out[i];
    } else {
      for (int i = 0; i < p->n_out; i++) out_sh[i] = g->values[p->out[i]].sharding;
      if ((rc = pf_graph_check_consumption(g, p, 0, d)) != 0 ||
          (rc = pf_graph_infer_kernel(g, p, last, out_sh, out, d)) != 0)
        break;
      if (pf_collective_from_kernel(p->kernel) < 0 &&
          (rc = pf_graph_check_rule(g, p, last, d)) != 0)
        break;
    }
    for (int i = 0; i < p->n_out; i++) {
      const pf_spec *have = g->values[p->out[i]].spec;
      if (!pf_spec_equal(have, &out[i])) {
        rc = pf_diag_error(
            d, out[i].dtype != have->dtype ? PF_EDTYPE : PF_ESHAPE,
            "program \"%s\" output %d: kernel \"%s\" now gives %s, but value "
            "%d is %s (an input changed?)",
            p->name, i, p->kernel, pf_spec_str(&out[i], got, sizeof got),
            p->out[i], pf_spec_str(have, want, sizeof want));
        break;
      }
    }
    if (rc == 0 && m != NULL && !hit) memo_keep(g, m, p); /* its outputs agreed */
  }
  free(memo);
  return rc;
}
