/* pathflow: derived gradients.
 *
 * pf_graph_grad appends to a graph the programs that compute the gradient of
 * a scalar loss with respect to a list of values (parameters). Each program
 * on the way from the parameters to the loss is differentiated by its
 * kernel's gradient rule: the built-in kernels have one (docs/api.md lists
 * them) and a user kernel may register one (pf_kernel_def.grad).
 *
 * Gradients follow the sharding rules: a gradient program runs on the slice
 * of the program it differentiates, and where the forward pass read a whole
 * value on a slice that computed on blocks (a weight beside a batch split
 * over the devices), the gradient comes out partial and is summed over the
 * slice, so data-parallel training needs no hand-written communication. A
 * gradient is returned on the slice and in the sharding of its parameter
 * (moved back the way the forward pass moved the value).
 */
#ifndef PATHFLOW_GRAD_H
#define PATHFLOW_GRAD_H

#include "export.h"
#include "graph.h"

#ifdef __cplusplus
extern "C" {
#endif

/* What a gradient rule is given and fills. The rule appends programs to
 * `graph` (with pf_graph_program, pf_graph_collective) computing, for each
 * input i, the gradient of the loss with respect to in[i] from the
 * gradients of the outputs, and stores it in in_grad[i]. */
struct pf_grad_call {
  pf_graph *graph;
  const char *name;       /* the program's name: prefix for new programs */
  const char *kernel;
  const pf_attrs *attrs;  /* the program's attributes; never NULL */
  pf_slice_t slice;       /* run the gradient programs here */
  int n_in;
  const pf_value_t *in;   /* the program's inputs, as values of the graph */
  const pf_sharding *in_shardings; /* how the program consumed them */
  int n_out;
  const pf_value_t *out;
  /* Gradient of the loss with respect to each output, or PF_NO_VALUE (id
   * PF_NO_ID) where the loss does not depend on that output (zero). At least
   * one is a value. */
  const pf_value_t *out_grad;
  /* To fill: the gradient for each input, or PF_NO_VALUE where there is
   * none (a constant input, such as labels). PF_NO_VALUE on entry. */
  pf_value_t *in_grad;
  /* 1 for each input whose gradient is needed (on a path to a parameter);
   * a rule may skip the others. */
  const int *wants;
};

/* Appends the gradient programs of the scalar (rank 0, f32 or f64) value
 * `loss` with respect to `params` (n values) and writes the n gradient
 * values to `grads`. A parameter the loss does not depend on gets a
 * gradient of zeros. Programs appended are named "<program>/grad...".
 * Errors: PF_EINVAL (bad value, a loss that is not a float scalar, n < 1),
 * PF_ENOTSUP (a program on the way has no gradient rule, or a rule cannot
 * differentiate it: the message names the program and kernel), PF_EDTYPE
 * (a parameter that is not f32 or f64), and the errors of the builders the
 * rules call. On error the graph may hold some of the appended programs:
 * discard it. */
PF_API int pf_graph_grad(pf_graph *g, pf_value_t loss, int n, const pf_value_t *params,
                  pf_value_t *grads);

/* As pf_graph_grad, except that a gradient which comes out as a partial
 * sum over its parameter's slice (a parameter read whole by programs that
 * split the work, as in data parallelism) is returned partial instead of
 * summed there. Adding such gradients (kernel "add" keeps them partial) and
 * consuming the total once costs one allreduce instead of one per loss:
 * gradient accumulation over a pipeline's micro-batches. The sum happens
 * where the value is consumed otherwise than as partial (pf_graph_program
 * inserts the allreduce, pf_graph_output returns the sum). Gradients on a
 * one-device slice, or that do not come out partial, are as pf_graph_grad
 * returns them. Errors: as pf_graph_grad. */
PF_API int pf_graph_grad_partial(pf_graph *g, pf_value_t loss, int n, const pf_value_t *params,
                          pf_value_t *grads);

/* Sums partial values over their slices with few collectives, as PyTorch
 * DDP's gradient buckets do: values of one slice and dtype are packed
 * (kernel "pack") into buckets of at most `bucket_bytes`, each bucket is
 * summed by one allreduce, and each value's piece of the sum is taken out
 * ("unpack") and written to sums[i], replicated on the value's slice.
 * Buckets fill in the order of `values`, so list them in the order the
 * backward pass makes them (the last layer's first) and the first bucket
 * is ready first. A value larger than `bucket_bytes` is summed alone, with
 * no copy, and so is a bucket of one (0 gives one allreduce per value, as
 * pf_graph_grad has; SIZE_MAX one per slice and dtype). A value that is not
 * partial (replicated, split, or on a one-device slice) needs no sum and is
 * returned as it is; one whose allreduce the builder already inserted gets
 * that sum. Later programs that read a bucketed value whole get its
 * unpacked sum too, not another allreduce. Each element is the same sum of
 * the same summands as its own allreduce computes; whether the bits match
 * depends on the reduction order of the transport, which for MPI can
 * change with the message size when more than 2 ranks take part (with 2
 * ranks and any number of devices each, it cannot: a sum of two is one
 * addition). Programs are named "bucket<k>/pack", "bucket<k>/pack/sum",
 * ".../unpack<i>" (unique in the graph). Use it on the gradients from
 * pf_graph_grad_partial (examples/train_mlp.c).
 * Errors: PF_EINVAL (n < 1, NULL, a bad value), PF_EDTYPE (a partial value
 * of a dtype allreduce cannot sum), the errors of pf_graph_program and
 * pf_graph_collective. On error the graph may hold some of the appended
 * programs: discard it. */
PF_API int pf_graph_allreduce_buckets(pf_graph *g, int n, const pf_value_t *values,
                                      size_t bucket_bytes, pf_value_t *sums);

/* The name for a program a gradient rule appends: "<call->name>/<what>",
 * made unique in the graph. `out` has room for PF_NAME_MAX + 1 bytes. */
PF_API void pf_grad_name(const struct pf_grad_call *call, const char *what, char *out);

/* A one-output program appended by a rule: kernel on call->slice with the
 * inputs consumed by default, attributes `attrs` (may be NULL), named
 * pf_grad_name(call, what). Writes its output to *out. Errors: as
 * pf_graph_program. */
PF_API int pf_grad_program(const struct pf_grad_call *call, const char *what,
                    const char *kernel, const pf_attrs *attrs, int n_in,
                    const pf_value_t *in, pf_value_t *out);

#ifdef __cplusplus
}
#endif
#endif
