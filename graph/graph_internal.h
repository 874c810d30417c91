/* Internal: the graph IR.
 *
 * The public pf_graph_* builders (graph/graph.c) and the decoder
 * (graph/graph_codec.c) fill these arrays; the validator (graph/validate.c)
 * and the scheduler read them. Ids are int32 indices into the arrays (-1:
 * none); the public functions convert them from and to the API's id types
 * with graph/ids.h.
 */
#ifndef PF_GRAPH_INTERNAL_H
#define PF_GRAPH_INTERNAL_H

#include <stdlib.h>

#include "base/arena.h"
#include "base/diag.h"
#include "base/layout.h"
#include "base/spec_set.h"
#include "graph/ids.h"
#include "kernels/registry.h"
#include "pathflow/graph.h"

/* What a graph needs from its context, handed down by the api layer so that
 * this layer does not depend on it. */
typedef struct pf_graph_env {
  pf_registry *registry;
  int num_devices[PF_DEVICE_KIND_COUNT];
  pf_diag *diag; /* where errors are reported (the context's last error) */
  void *owner;   /* the context, opaque to this layer */
} pf_graph_env;

typedef struct pf_gslice {
  pf_device_kind kind;
  int num_devices;
  int *pinned; /* NULL, or num_devices device indices */
} pf_gslice;

typedef struct pf_gvalue {
  const pf_spec *spec; /* global; the graph's copy (specs, below) */
  int32_t slice;
  pf_sharding sharding;
  int32_t producer; /* -1: a graph input */
  int output_index;
  /* Build time only: 1 + the id of the allreduce of this partial value that
   * the builder inserted, so that every consumer shares one; 0: none yet. */
  int32_t reduced;
} pf_gvalue;

/* A program's name, kernel, in, in_shardings and out live in the graph's
 * arena (`mem`); attrs is its own (pf_attrs_share: empty ones are shared). */
typedef struct pf_gprogram {
  char *name;
  char *kernel;
  pf_attrs *attrs; /* never NULL */
  int32_t slice;
  int n_in;
  int32_t *in;
  pf_sharding *in_shardings; /* n_in, always filled */
  int n_out;
  int32_t *out;
} pf_gprogram;

/* A control dependency: `after` is ordered behind `before` (pf_graph_control). */
typedef struct pf_gcontrol {
  int32_t before, after;
} pf_gcontrol;

typedef struct pf_gnamed {
  char *name;
  int32_t value;
} pf_gnamed;

struct pf_graph {
  pf_graph_env env;
  pf_gslice *slices;
  size_t n_slices, cap_slices;
  pf_gvalue *values;
  size_t n_values, cap_values;
  pf_gprogram *programs;
  size_t n_programs, cap_programs;
  pf_gnamed *inputs;
  size_t n_inputs, cap_inputs;
  pf_gnamed *outputs;
  size_t n_outputs, cap_outputs;
  pf_gcontrol *controls;
  size_t n_controls, cap_controls;
  /* Program names, open addressing: graphs of 100k programs are built in
   * linear time. A slot holds the program's index + 1 in its low 32 bits
   * and the low 32 bits of its name's hash above (0: empty). A probe
   * compares hashes before names, so looking up a name that is not there
   * (every auto-named program is looked up first) reads no other program's
   * record or string, and growing the table hashes no name again: a million
   * programs spent a quarter of their build in those reads (cache misses).
   * Names that end in their program's own index ("busy_7" for program 7:
   * every auto-named program) stay out of it (pf_graph_find_program). */
  uint64_t *name_slots;
  size_t name_cap, name_count;
  pf_placement placement;
  pf_dispatch_mode dispatch;
  pf_arena mem;      /* programs' strings and arrays, values' specs */
  pf_spec_set specs; /* the values' distinct specs, in mem */
  char *last_kernel; /* in mem: the kernel name copied last */
};

/* The program named `name`, or -1. */
int pf_graph_find_program(const pf_graph *g, const char *name);

/* Creates an empty graph with `env`. Errors: PF_EINVAL, PF_ENOMEM. */
int pf_graph_new(const pf_graph_env *env, pf_graph **out);

/* Appenders used by the builders and the decoder; no checks beyond memory.
 * They take ownership of nothing: strings, arrays and specs are copied. */
int pf_graph_add_slice(pf_graph *g, const pf_gslice *s);
int pf_graph_add_value(pf_graph *g, const pf_gvalue *v);
/* Copies name, kernel, attrs (NULL: empty), in, in_shardings and out (into
 * the graph's arena). */
int pf_graph_add_program(pf_graph *g, const pf_gprogram *p);
int pf_graph_add_named(pf_graph *g, int is_output, const char *name,
                       int32_t value);
int pf_graph_add_control(pf_graph *g, int32_t before, int32_t after);

/* Runs program p's shape function on its current inputs (consumed with
 * p->in_shardings), writing the global output specs, under output shardings
 * `out_sh`, to `out` (p->n_out of them). k is p's kernel, found by the
 * caller (pf_registry_find for p's slice's kind; NULL: not registered, an
 * error unless p is a collective): a run of programs of one kernel is
 * looked up once. Errors as pf_graph_program, with a message naming the
 * program and kernel. */
int pf_graph_infer_kernel(const pf_graph *g, const pf_gprogram *p, const pf_kernel *k,
                          const pf_sharding *out_sh, pf_spec *out, pf_diag *diag);

/* Per-input arrays of a program live on the stack up to this many inputs and
 * on the heap past it (PF_MAX_ARGS specs would make a frame of 72 KiB). */
#define PF_ARGS_ON_STACK 64

/* `stack` (PF_ARGS_ON_STACK entries) when n fits, else a heap block of n
 * entries of `size` bytes; NULL when out of memory. Free with
 * pf_args_scratch_free. */
static inline void *pf_args_scratch(void *stack, int n, size_t size) {
  return n <= PF_ARGS_ON_STACK ? stack : malloc((size_t)n * size);
}
static inline void pf_args_scratch_free(void *stack, void *p) {
  if (p != stack) free(p);
}

/* ---- sharding rules (graph/sharding.c) ---- */

/* Chooses how program p (not yet in the graph) consumes its inputs and lays
 * out its outputs. p->in_shardings holds the defaults on entry and the
 * chosen layout on return; `req` the requested output shardings (NULL: none;
 * kind PF_SHARD_DEFAULT entries ask for nothing). Unless `fixed_in`, other
 * layouts of the inputs are tried when the kernel's rule refuses the
 * defaults. Errors: PF_ESHARDING naming the program, the kernel and the
 * shardings. */
int pf_graph_choose_shardings(const pf_graph *g, pf_gprogram *p,
                              const pf_kernel *k, int fixed_in,
                              const pf_sharding *req, pf_sharding *out_sh,
                              pf_diag *d);

/* Appends an allreduce (sum) of partial value v on its slice, once per
 * value, and writes the reduced (replicated) value to *out. The inserted
 * program's name is never `avoid`. `d` must be the graph's own diag
 * (g->env.diag), where pf_graph_collective reports. Errors: as
 * pf_graph_collective. */
int pf_graph_reduce_partial(pf_graph *g, int32_t v, const char *avoid,
                            int32_t *out, pf_diag *d);

/* Replaces each input of p that is partial but consumed otherwise by its
 * reduction (pf_graph_reduce_partial). p->in must be writable. */
int pf_graph_reduce_inputs(pf_graph *g, pf_gprogram *p, const char *avoid,
                           pf_diag *d);

/* Checks that p reads every partial value as partial, on a slice of its
 * size, and nothing else as partial. With `will_reduce` (the builder, about
 * to call pf_graph_reduce_inputs), a partial value read otherwise is fine.
 * Errors: PF_ESHARDING. */
int pf_graph_check_consumption(const pf_graph *g, const pf_gprogram *p,
                               int will_reduce, pf_diag *d);

/* Checks p's stored output shardings against kernel k's sharding rule for
 * its stored input shardings. Errors: PF_ESHARDING. */
int pf_graph_check_rule(const pf_graph *g, const pf_gprogram *p,
                        const pf_kernel *k, pf_diag *d);

/* Checks that no graph input is partial and no output is partial over more
 * than one device. Errors: PF_ESHARDING naming the input or output. */
int pf_graph_check_ends(const pf_graph *g, pf_diag *d);

/* Topological order of the programs over data and control edges (Kahn's
 * algorithm, ties broken by the lowest program index, so the order is
 * deterministic). `order` must hold
 * n_programs entries. PF_ECYCLE (naming a program on the cycle). */
int pf_graph_topo_order(const pf_graph *g, int32_t *order, pf_diag *diag);

/* Full validation into `diag` (pf_graph_validate reports into env.diag). */
int pf_graph_check(const pf_graph *g, pf_diag *diag);

/* pf_graph_check that also leaves the topological order it checked in
 * `order` (n_programs entries, as pf_graph_topo_order), for a caller that
 * needs both (the scheduler). */
int pf_graph_check_order(const pf_graph *g, int32_t *order, pf_diag *diag);

#endif
