/* pathflow: dtypes, tensor specs, shardings, device kinds.
 *
 * Plain value types: no ownership, no allocation. Everything here can be
 * copied by assignment.
 */
#ifndef PATHFLOW_TYPES_H
#define PATHFLOW_TYPES_H

#include "export.h"

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Element types. bf16 and f16 are storage types: they can be fed, moved,
 * copied, resharded and fetched, but the built-in math kernels refuse them
 * with PF_EDTYPE. */
typedef enum pf_dtype {
  PF_F32 = 0,
  PF_F64 = 1,
  PF_I32 = 2,
  PF_I64 = 3,
  PF_U8 = 4,
  PF_BF16 = 5,
  PF_F16 = 6,
  PF_DTYPE_COUNT
} pf_dtype;

/* Size in bytes of one element; 0 for an invalid dtype. */
PF_API size_t pf_dtype_size(pf_dtype dtype);
/* "f32", "f64", ...; "?" for an invalid dtype. */
PF_API const char *pf_dtype_name(pf_dtype dtype);

#define PF_MAX_RANK 8

/* The dtype and shape of a tensor. rank 0 is a scalar. Dimensions are >= 0. */
typedef struct pf_spec {
  pf_dtype dtype;
  int rank;
  int64_t dims[PF_MAX_RANK];
} pf_spec;

/* Builds a spec from `rank` dims. rank must be 0..PF_MAX_RANK; out-of-range
 * arguments give a spec that pf_spec_check() refuses. */
PF_API pf_spec pf_spec_make(pf_dtype dtype, int rank, const int64_t *dims);
/* Shorthands for the common ranks. */
PF_API pf_spec pf_spec_scalar(pf_dtype dtype);
PF_API pf_spec pf_spec_1d(pf_dtype dtype, int64_t d0);
PF_API pf_spec pf_spec_2d(pf_dtype dtype, int64_t d0, int64_t d1);

/* 0 if the spec is well formed; PF_EDTYPE for a bad dtype, PF_ESHAPE for a bad
 * rank or a negative dimension, PF_ERANGE if the byte size overflows. */
PF_API int pf_spec_check(const pf_spec *spec);
/* Number of elements (1 for a scalar). */
PF_API int64_t pf_spec_numel(const pf_spec *spec);
/* numel * element size. */
PF_API size_t pf_spec_nbytes(const pf_spec *spec);
/* 1 if dtype, rank and every dimension are equal. */
PF_API int pf_spec_equal(const pf_spec *a, const pf_spec *b);
/* Writes e.g. "f32[4,8]" into buf (always NUL-terminated; "(null)" for a
 * NULL spec); returns buf. */
PF_API char *pf_spec_str(const pf_spec *spec, char *buf, size_t len);

/* How a value's data is laid over the devices of its slice.
 *
 * A PARTIAL value is what a computation over a split axis leaves behind
 * (matmul contracting a split axis, reduce_sum over a split axis): every
 * device holds a tensor of the whole value's shape, and the value is the sum
 * of those tensors. It is never read as if it were the answer: a consumer
 * that needs the whole value gets it reduced first (the graph builder
 * inserts an allreduce), a graph output is reduced before it is fetched, and
 * only kernels whose sharding rule accepts partial inputs (linear ones, such
 * as add, scale, identity, reduce_sum) consume it as it is. Graph inputs
 * cannot be partial. */
typedef enum pf_sharding_kind {
  PF_SHARD_REPLICATED = 0, /* every device holds the whole tensor */
  PF_SHARD_SPLIT = 1,      /* device i holds block i along `axis` */
  PF_SHARD_PARTIAL = 2     /* every device holds a summand of the value */
} pf_sharding_kind;

/* Splits must divide evenly: a dimension of 10 split over 4 devices is
 * refused with PF_ESPLIT when the graph is built. */
typedef struct pf_sharding {
  pf_sharding_kind kind;
  int axis; /* PF_SHARD_SPLIT only */
} pf_sharding;

static inline pf_sharding pf_replicated(void) {
  pf_sharding s = {PF_SHARD_REPLICATED, 0};
  return s;
}
static inline pf_sharding pf_split(int axis) {
  pf_sharding s = {PF_SHARD_SPLIT, axis};
  return s;
}
static inline pf_sharding pf_partial(void) {
  pf_sharding s = {PF_SHARD_PARTIAL, 0};
  return s;
}

/* Writes "replicated", "split(1)" or "partial" into buf (always
 * NUL-terminated; "?" for an unknown kind); returns buf. */
PF_API char *pf_sharding_str(pf_sharding sh, char *buf, size_t len);

/* How a reduction combines blocks (collectives, partial values). */
typedef enum pf_reduce_op {
  PF_REDUCE_SUM = 0,
  PF_REDUCE_MAX = 1,
  PF_REDUCE_MIN = 2,
  PF_REDUCE_MEAN = 3,
  PF_REDUCE_COUNT
} pf_reduce_op;

/* The collectives (what each computes: pathflow/graph.h, where they are
 * added to a graph). Here beside pf_reduce_op because plans carry them
 * too, below the graph layer. */
typedef enum pf_collective_kind {
  PF_ALLREDUCE = 0,
  PF_ALLGATHER = 1,
  PF_REDUCE_SCATTER = 2,
  PF_BROADCAST = 3,
  PF_ALL_TO_ALL = 4,
  PF_COLLECTIVE_COUNT
} pf_collective_kind;

typedef enum pf_device_kind {
  PF_DEVICE_CPU = 0,
  PF_DEVICE_GPU = 1,
  PF_DEVICE_KIND_COUNT
} pf_device_kind;

/* "cpu", "gpu"; "?" otherwise. */
PF_API const char *pf_device_kind_name(pf_device_kind kind);

#ifdef __cplusplus
}
#endif
#endif
