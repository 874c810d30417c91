/* Internal: collectives as graph programs ("pf.allreduce", ...): names,
 * attributes and the shape rule (what a collective's output is). */
#ifndef PF_GRAPH_COLLECTIVE_H
#define PF_GRAPH_COLLECTIVE_H

#include "graph/graph_internal.h"

/* The kind for kernel name `kernel`, or -1 if it is not a collective. */
int pf_collective_from_kernel(const char *kernel);
/* "pf.allreduce", ...; NULL for a bad kind. */
const char *pf_collective_kernel(pf_collective_kind kind);
/* "allreduce", ...; "?" for a bad kind. */
const char *pf_collective_name(pf_collective_kind kind);

/* Attributes a collective program carries. */
#define PF_COLL_ATTR_OP "op"
#define PF_COLL_ATTR_AXIS "axis"
#define PF_COLL_ATTR_ROOT "root"

/* Output global spec and sharding of collective program p (one input, one
 * output), checking the input's consumed sharding, the attributes and the
 * dtype. Errors: PF_EINVAL, PF_ESPLIT, PF_EDTYPE, with the program named. */
int pf_collective_infer(const pf_graph *g, const pf_gprogram *p,
                        pf_sharding *out_sh, pf_spec *out, pf_diag *diag);

/* 1 if every axis of `s` before `axis` has one element: blocks cut along
 * `axis` are then whole runs of memory. */
int pf_leading_axis(const pf_spec *s, int axis);

/* 1 if a collective of `kind` over local shards `in` and `out` moves whole
 * runs of memory: allreduce and broadcast always; allgather and
 * reduce-scatter when their blocks along `axis` of `in` are; all-to-all
 * when those and its chunks along `in_axis` of `out` are. The staged path
 * then needs no staging copies, and a device may run it on flat buffers
 * (NCCL): one rule for the service, the executor and the scheduler. */
int pf_collective_contiguous(pf_collective_kind kind, const pf_spec *in, const pf_spec *out,
                             int axis, int in_axis);

/* 1 if `op` can reduce `dtype`. */
int pf_reduce_supports(pf_reduce_op op, pf_dtype dtype);

#endif
