/* pathflow: dataflow graphs.
 *
 * A graph holds virtual slices, inputs, programs and outputs.
 *   slice   - "n devices of kind K"; mapped onto physical devices when the
 *             graph is compiled. Programs on the same slice share devices.
 *   value   - an edge: a logical tensor (global spec) with a sharding over
 *             the slice where it lives.
 *   program - a node: a kernel run SPMD over a slice. Each input is consumed
 *             in a sharding on the program's slice; when that differs from
 *             where and how the value lives, the compiler inserts the moves
 *             (a reshard).
 *   output  - a named value the caller wants back.
 *
 * Builders check what they can at once and return an error naming the node
 * and values involved; pf_compile() checks the whole graph again (graphs
 * can be rewired with pf_graph_set_input or decoded from bytes).
 *
 * Slices, values and programs are ids valid for their graph (see below).
 * The graph owns everything added to it. One thread at a time.
 */
#ifndef PATHFLOW_GRAPH_H
#define PATHFLOW_GRAPH_H

#include "export.h"
#include "attrs.h"
#include "kernel.h"
#include "types.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct pf_graph pf_graph;

/* Graph ids. Each kind of node has its own one-member struct, so that a
 * value passed where a slice or a program is wanted does not compile. The
 * member `id` is the node's index in its graph: slices, values and programs
 * are each numbered 0, 1, 2... in the order they are added (a program's
 * outputs get consecutive value ids), so pf_graph_num_programs bounds the
 * program ids. Write an id from its index as (pf_program_t){i}; compare ids
 * by their `id` members.
 *
 * No node has a negative id: PF_NO_ID (-1) marks an absent one, as in
 * PF_NO_VALUE (a gradient rule's "no gradient", pf_grad_call). A function
 * that makes an id writes it to an out parameter and returns 0, or returns
 * a negative PF_E code and leaves the out parameter as it was (except
 * pf_graph_grad, whose failure spoils the graph: grad.h); a function given
 * an id that is absent or not in the graph returns PF_EINVAL. */
typedef struct pf_slice_t {
  int32_t id;
} pf_slice_t;
typedef struct pf_value_t {
  int32_t id;
} pf_value_t;
typedef struct pf_program_t {
  int32_t id;
} pf_program_t;

#define PF_NO_ID (-1)
#ifdef __cplusplus
#define PF_NO_VALUE (pf_value_t{PF_NO_ID})
#else
#define PF_NO_VALUE ((pf_value_t){PF_NO_ID})
#endif

#define PF_NAME_MAX 127 /* longest node, input or output name, in bytes */
#define PF_MAX_ARGS 1024 /* most inputs per program */
#define PF_MAX_OUTS 64   /* most outputs per program (and per kernel) */

/* Creates an empty graph bound to `ctx` (for its kernel registry and error
 * messages). Errors: PF_EINVAL, PF_ENOMEM. */
PF_API int pf_graph_create(pf_context *ctx, pf_graph **out);
/* Frees the graph. Executables compiled from it stay valid. NULL: no-op. */
PF_API void pf_graph_destroy(pf_graph *g);

/* Adds a virtual slice of `num_devices` devices of `kind`.
 * Errors: PF_EINVAL (num_devices < 1 or bad kind), PF_ESLICE (more devices
 * than the context has: the message gives both counts), PF_ENOMEM. */
PF_API int pf_graph_slice(pf_graph *g, pf_device_kind kind, int num_devices,
                   pf_slice_t *out);

/* Pins a slice to explicit local device indices (num_devices of them) instead
 * of letting the compiler place it. Errors: PF_EINVAL (bad slice, repeated
 * index), PF_ESLICE (index out of range). */
PF_API int pf_graph_slice_pin(pf_graph *g, pf_slice_t slice, const int *devices);

/* Declares an input named `name`, with global spec `spec`, living on
 * `slice` with `sharding`. Errors: PF_EINVAL (bad name or slice), PF_EEXIST
 * (name taken), PF_EDTYPE/PF_ESHAPE (bad spec), PF_ESPLIT (split axis out of
 * range or not divisible by the slice size), PF_ESHARDING (a partial
 * sharding: inputs are replicated or split), PF_ENOMEM. */
PF_API int pf_graph_input(pf_graph *g, const char *name, const pf_spec *spec,
                   pf_slice_t slice, pf_sharding sharding, pf_value_t *out);

typedef struct pf_program_desc {
  const char *name;    /* unique in the graph; NULL: named "<kernel>_<id>" */
  const char *kernel;  /* registered kernel name */
  const pf_attrs *attrs; /* copied; may be NULL */
  pf_slice_t slice;
  int n_in;
  const pf_value_t *in;
  /* How each input is consumed on this program's slice. NULL means: the
   * value's own sharding if it lives on a slice of the same size, else
   * replicated; and if the kernel's sharding rule refuses that layout, the
   * builder tries others (partial inputs reduced; whole inputs cut like a
   * split one; one split input and the rest whole; all whole). Given, the
   * layout is kept as it is, and one the rule refuses is PF_ESHARDING.
   * A partial value consumed other than as partial is reduced first (an
   * allreduce the builder inserts, once per value). */
  const pf_sharding *in_shardings;
  /* Sharding of each output over the slice, as the kernel's sharding rule
   * gives it for the inputs' layout (docs/api.md lists the built-ins'
   * rules): NULL accepts it; given, it must be what the rule gives, else
   * PF_ESHARDING naming the program, the kernel and both shardings. The
   * kernel's shape function gives shard specs; the global spec follows. */
  const pf_sharding *out_shardings;
} pf_program_desc;

/* Adds a program. Writes the kernel's n_out output values to `outs` (which
 * must have room for them; pf_kernel_outputs tells how many) and its id to
 * *prog if prog is not NULL.
 * Errors: PF_EINVAL (bad slice, value or name), PF_EEXIST (name taken),
 * PF_ENOKERNEL (no kernel of that name for the slice's device kind),
 * PF_EARITY (input count, more than PF_MAX_ARGS), PF_ESPLIT (a sharding
 * does not divide), PF_ESHARDING (a layout the kernel's sharding rule
 * refuses), PF_EDTYPE / PF_ESHAPE (from the kernel's shape function),
 * PF_ENOMEM.
 * The message names the program, the kernel and the values. */
PF_API int pf_graph_program(pf_graph *g, const pf_program_desc *desc,
                     pf_value_t *outs, pf_program_t *prog);

/* Collectives: communication over the devices of a slice, as graph nodes.
 * Each device d of the slice holds a block B_d of the input (its shard as
 * consumed); n is the slice size.
 *   ALLREDUCE      out (replicated, spec of B) = op over d of B_d
 *   ALLGATHER      input consumed split(axis); out (replicated) = the whole
 *                  value, the blocks concatenated along axis
 *   REDUCE_SCATTER out split(axis) = block d of (op over d of B_d); B's axis
 *                  must divide by n
 *   BROADCAST      out (replicated, spec of B) = B_root
 *   ALL_TO_ALL     input must live split(a) on a slice of the same size;
 *                  out = the same value split(axis) instead (axis != a)
 * Reductions accept f32, f64, i32, i64 (MEAN: f32, f64 only). Across
 * ranks, collectives run in the MPI transport over point-to-point messages
 * (docs/architecture.md, Collectives), issued by every rank in the same
 * (gang) order.
 * Over a slice with several devices on each of several ranks only
 * ALLREDUCE and BROADCAST compile (hierarchically); the others give
 * PF_ENOTSUP from pf_compile. The kinds, pf_collective_kind, are in
 * pathflow/types.h: plans carry them too. */
typedef struct pf_collective_desc {
  const char *name; /* NULL: named "<collective>_<id>" */
  pf_collective_kind kind;
  pf_slice_t slice;
  pf_value_t in;
  pf_reduce_op op; /* ALLREDUCE, REDUCE_SCATTER */
  int axis;        /* ALLGATHER, REDUCE_SCATTER, ALL_TO_ALL */
  int root;        /* BROADCAST: shard index in the slice */
} pf_collective_desc;

/* Adds a collective; writes its output value to *out. Stored in the graph as
 * a program whose kernel is "pf.allreduce", "pf.allgather", ...
 * Errors: PF_EINVAL (bad kind, op, root, slice or value), PF_ESPLIT (axis
 * out of range or not divisible), PF_EDTYPE (reduction of a dtype it
 * cannot reduce), PF_EEXIST (name taken). */
PF_API int pf_graph_collective(pf_graph *g, const pf_collective_desc *desc,
                        pf_value_t *out, pf_program_t *prog);

/* How a graph's slices are mapped to devices when it is compiled.
 *   PACKED: slices take consecutive devices, filling a host before the next
 *           (the default): neighbours in the graph stay inside a host.
 *   SPREAD: devices are taken round-robin over hosts. */
typedef enum pf_placement {
  PF_PLACE_PACKED = 0,
  PF_PLACE_SPREAD = 1
} pf_placement;

/* How executions of the compiled graph are dispatched.
 *   PARALLEL: every rank gets its run message at once; receivers allocate
 *             and post before producers run (the default; Pathways' parallel
 *             asynchronous dispatch).
 *   SEQUENTIAL: a rank gets its run message only when the ranks before it
 *             (in the order they first act) have finished: for comparison.
 *             Graphs whose data flows back to an earlier rank, or with
 *             collectives across ranks, are refused (PF_ENOTSUP). */
typedef enum pf_dispatch_mode {
  PF_DISPATCH_PARALLEL = 0,
  PF_DISPATCH_SEQUENTIAL = 1
} pf_dispatch_mode;

/* Sets the placement policy and dispatch mode used by pf_compile.
 * Errors: PF_EINVAL. */
PF_API int pf_graph_set_placement(pf_graph *g, pf_placement policy);
PF_API int pf_graph_set_dispatch(pf_graph *g, pf_dispatch_mode mode);

/* Number of outputs of kernel `name` for device kind `kind`, or PF_ENOKERNEL. */
PF_API int pf_kernel_outputs(pf_context *ctx, const char *name, pf_device_kind kind);

/* Marks `value` as an output named `name`. A partial value is reduced first
 * (an allreduce the builder inserts): the output is the sum. Errors:
 * PF_EINVAL, PF_EEXIST, PF_ENOMEM. */
PF_API int pf_graph_output(pf_graph *g, const char *name, pf_value_t value);

/* Replaces input `index` of program `prog` with `value`. Shapes and cycles
 * are checked by pf_graph_validate / pf_compile, not here.
 * Errors: PF_EINVAL (bad program, index or value). */
PF_API int pf_graph_set_input(pf_graph *g, pf_program_t prog, int index,
                       pf_value_t value);

/* Control dependency: orders program `after` behind program `before`
 * without passing data. The compiler lowers programs in one gang order, a
 * topological order of the data and control edges that takes the
 * lowest-numbered ready program first (so, without control edges, the
 * order in which programs were added breaks ties); each device runs its
 * ops in that order. So on a device that both use, `after` runs once
 * `before` has run; on different devices the edge orders only the
 * compiled order (collectives, transfers), not time. This is how a caller
 * picks a schedule the data edges leave open, such as a pipeline's 1F1B
 * order of forward and backward micro-batches (examples/train_pipeline.c).
 * Errors: PF_EINVAL (no such program, or before == after), PF_ENOMEM. A
 * cycle through control edges is PF_ECYCLE from pf_graph_validate and
 * pf_compile, naming programs on it. */
PF_API int pf_graph_control(pf_graph *g, pf_program_t before, pf_program_t after);

/* Writes the slice program `prog` runs on to *out. With
 * pf_graph_num_programs it lets a caller find the programs another builder
 * appended (pf_graph_grad's) on a given slice. Errors: PF_EINVAL (bad
 * graph, program or out). */
PF_API int pf_graph_program_slice(const pf_graph *g, pf_program_t prog, pf_slice_t *out);

/* Checks the whole graph: acyclic, kernels known, arities, dtypes, shapes,
 * shardings, slices, outputs produced. Returns the first problem found, in
 * topological order, with a message naming the node. */
PF_API int pf_graph_validate(pf_graph *g);

/* The global spec of a value. Errors: PF_EINVAL (bad value). */
PF_API int pf_graph_value_spec(const pf_graph *g, pf_value_t value, pf_spec *out);

/* Serializes the graph (protobuf message pathflow.Graph). On success *buf is
 * malloc'd and owned by the caller (free()). Errors: PF_EINVAL, PF_ENOMEM. */
PF_API int pf_graph_encode(const pf_graph *g, uint8_t **buf, size_t *len);

/* Parses a serialized graph. Never trusts the bytes: a truncated, garbled or
 * oversized message is PF_EDECODE; ids that point nowhere are PF_EDECODE.
 * The decoded graph is not validated: call pf_graph_validate.
 * Errors: PF_EINVAL, PF_EDECODE, PF_ENOMEM. */
PF_API int pf_graph_decode(pf_context *ctx, const uint8_t *buf, size_t len,
                    pf_graph **out);

/* Number of programs, inputs, outputs. */
PF_API int pf_graph_num_programs(const pf_graph *g);
PF_API int pf_graph_num_inputs(const pf_graph *g);
PF_API int pf_graph_num_outputs(const pf_graph *g);

#ifdef __cplusplus
}
#endif
#endif
