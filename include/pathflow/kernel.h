/* pathflow: kernels.
 *
 * A kernel is a pure local computation registered by name for a device kind.
 * It has four functions:
 *   shape    - output specs from input specs and attrs, called when a graph
 *              is built, so every shape is known before anything runs;
 *   sharding - how output shardings follow from input shardings (which
 *              layouts the kernel computes correctly), also checked when a
 *              graph is built;
 *   cost     - flops and bytes moved, for the simulator and the scheduler;
 *   compute  - the work itself, on one device's shard.
 * shape and sharding must be functions of their arguments alone: pathflow
 * checks a graph again when it is compiled, and answers a program that
 * repeats an earlier one (same kernel, attrs, input specs and layouts) from
 * that one's check instead of calling them again.
 * A program runs its kernel SPMD: every device of the slice calls compute on
 * its own shard, so specs seen by shape and compute are shard (local) specs.
 * Kernels never communicate; communication is explicit in the graph.
 *
 * Built-in CPU kernels (registered by pf_init) are listed in docs/api.md.
 */
#ifndef PATHFLOW_KERNEL_H
#define PATHFLOW_KERNEL_H

#include "export.h"
#include "error.h"
#include "attrs.h"
#include "types.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct pf_context pf_context;
typedef struct pf_registry pf_registry;

/* A tensor as a kernel sees it: a spec and a pointer. Inputs are read-only;
 * outputs are allocated by the runtime, 64-byte aligned, uninitialized. */
typedef struct pf_view {
  pf_spec spec;
  void *data;
} pf_view;

/* Output specs from input specs. `in` has n_in specs, `out` has n_out slots
 * to fill. Returns 0, or a PF_E code through pf_diag_error (PF_EDTYPE,
 * PF_ESHAPE, PF_EINVAL for a bad attribute). */
typedef int (*pf_shape_fn)(const pf_attrs *attrs, int n_in, const pf_spec *in,
                           int n_out, pf_spec *out, pf_diag *diag);

typedef struct pf_cost {
  double flops; /* floating point operations */
  double bytes; /* bytes read plus bytes written */
} pf_cost;

/* Cost of one call on shard specs. Must not fail. */
typedef void (*pf_cost_fn)(const pf_attrs *attrs, int n_in, const pf_spec *in,
                           int n_out, const pf_spec *out, pf_cost *cost);

/* Everything a compute function is given. Valid for the call only. */
typedef struct pf_kernel_call {
  const pf_attrs *attrs;
  int n_in;
  const pf_view *in;
  int n_out;
  pf_view *out;
  int device;      /* local device index on this executor */
  int shard;       /* index of this shard in the program's slice */
  int num_shards;  /* devices in the program's slice */
  void *user;      /* pf_kernel_def.user */
  pf_diag *diag;   /* for pf_diag_error */
  /* On a PF_DEVICE_GPU device: its CUDA stream (a cudaStream_t), the
   * device's in-order queue. The kernel queues its work on it and returns
   * at once; the device reports the op done when the stream has run it,
   * and the view pointers are device memory. NULL on CPU devices. */
  void *stream;
} pf_kernel_call;

/* Runs the kernel. Returns 0, or a PF_E code (usually through
 * pf_diag_error); the execution then completes with PF_EKERNEL and the
 * message, naming the node, rank and kernel. Called on a device worker
 * thread: it may run concurrently with other kernels on other devices. */
typedef int (*pf_compute_fn)(const pf_kernel_call *call);

/* How a kernel's outputs are laid over a slice, given how its inputs are
 * consumed: the kernel's sharding rule, checked beside its shape rule when a
 * graph is built, so that a program is never run on a layout it cannot
 * compute correctly.
 *   in, in_sh   n_in global input specs and the sharding each input is
 *               consumed in, over num_devices devices
 *   out_sh      n_out entries. On entry: the sharding the program asked for
 *               each output, or kind PF_SHARD_DEFAULT where it asked for
 *               none. On return: the sharding each output will have.
 * Returns 0, or PF_ESHARDING (through pf_diag_error, saying why) when the
 * kernel cannot compute its outputs from inputs laid out this way. The graph
 * builder then tries consuming the inputs in other shardings (partial inputs
 * reduced, then everything replicated) unless the program fixed them. An
 * output sharding that differs from what the program asked for is refused
 * with PF_ESHARDING naming the program, the kernel and both shardings.
 * A rule may return a sharding different from the request to refuse it
 * (most do), or keep a request it can honour (fill keeps any). */
#define PF_SHARD_DEFAULT ((pf_sharding_kind)-1)
typedef int (*pf_sharding_fn)(const pf_attrs *attrs, int n_in,
                              const pf_spec *in, const pf_sharding *in_sh,
                              int num_devices, int n_out, pf_sharding *out_sh,
                              pf_diag *diag);

/* Two rules for user kernels (usable as pf_kernel_def.sharding):
 *   replicated   every input consumed replicated; outputs replicated. The
 *                rule of a kernel registered without one.
 *   elementwise  every input consumed alike (all replicated, or all split
 *                along the same axis); outputs laid out the same way. For
 *                kernels whose output element i depends only on input
 *                element i, with all inputs and outputs of one shape.
 * Partial inputs are refused by both (PF_ESHARDING). */
PF_API int pf_sharding_rule_replicated(const pf_attrs *attrs, int n_in,
                                const pf_spec *in, const pf_sharding *in_sh,
                                int num_devices, int n_out,
                                pf_sharding *out_sh, pf_diag *diag);
PF_API int pf_sharding_rule_elementwise(const pf_attrs *attrs, int n_in,
                                 const pf_spec *in, const pf_sharding *in_sh,
                                 int num_devices, int n_out,
                                 pf_sharding *out_sh, pf_diag *diag);

/* A gradient rule: appends to a graph the programs that compute the
 * gradients of a program's inputs from those of its outputs. What it is
 * given and fills is in pathflow/grad.h (struct pf_grad_call). Returns 0,
 * or a PF_E code through the graph's builders (PF_ENOTSUP when it cannot
 * differentiate this use of the kernel). */
typedef struct pf_grad_call pf_grad_call;
typedef int (*pf_grad_fn)(pf_grad_call *call);

#define PF_VARIADIC (-1)
#define PF_KERNEL_NAME_MAX 63

typedef struct pf_kernel_def {
  const char *name;       /* [A-Za-z0-9_.:-], 1..PF_KERNEL_NAME_MAX bytes */
  pf_device_kind kind;
  int n_in;               /* exact input count, or PF_VARIADIC */
  int n_out;              /* exact output count, >= 1 */
  pf_shape_fn shape;      /* required */
  pf_cost_fn cost;        /* optional: NULL means zero flops, bytes moved */
  /* optional: NULL means pf_sharding_rule_replicated, unless the program
   * declares its output shardings itself (then the shape rule alone checks
   * them: the author vouches for the layout). */
  pf_sharding_fn sharding;
  /* optional: the gradient rule (pathflow/grad.h); NULL means the kernel
   * is not differentiable, and pf_graph_grad refuses a path through it. */
  pf_grad_fn grad;
  pf_compute_fn compute;  /* required */
  void *user;             /* handed to compute; owned by the caller */
  /* optional: an in-place update. NULL, or an array of n_out entries: for
   * output k, the index of the input whose buffer it may take over, or -1.
   * The runtime gives output k that input's memory (out[k].data ==
   * in[in_place[k]].data) only when nothing else can see it any more: the
   * execution holds the only reference (the feed gave the buffer up,
   * pf_feed.donate, and no other execution in flight reads it), no later
   * op of the step reads it, it is no output of the graph, it lies on the
   * op's device and has the output's byte size. Otherwise the output gets
   * memory of its own, as without this field. compute must give the same
   * result both ways (element i of the input read before element i of the
   * output is written). Indices outside [0, n_in) are ignored. Like `user`,
   * the array must outlive the context. */
  const int *in_place;
} pf_kernel_def;

/* Registers a kernel in the context's registry. The definition is copied
 * (the name too); `user` must outlive the context.
 * Errors: PF_EINVAL (NULL field, bad name, n_out < 1), PF_EEXIST (a kernel of
 * this name and device kind exists), PF_ENOMEM. */
PF_API int pf_kernel_register(pf_context *ctx, const pf_kernel_def *def);

/* The same, on a bare registry: the form a kernels plugin receives. */
PF_API int pf_registry_add(pf_registry *reg, const pf_kernel_def *def);

/* A kernels plugin (a shared library loaded by pathflow-worker --kernels or
 * by pf_kernels_load) exports this symbol; it registers its kernels and
 * returns 0 or a PF_E code. */
#define PF_PLUGIN_INIT_SYMBOL "pathflow_kernels_init"
typedef int (*pf_plugin_init_fn)(pf_registry *reg);

/* Loads a kernels plugin into the context's registry: dlopen()s `path` and
 * calls its pathflow_kernels_init. Errors: PF_ENOTFOUND (cannot open, or no
 * init symbol; the message says which), what the init returned. */
PF_API int pf_kernels_load(pf_context *ctx, const char *path);

#ifdef __cplusplus
}
#endif
#endif
