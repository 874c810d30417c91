/* pathflow: host tensors, used to feed inputs and fetch outputs.
 *
 * A pf_tensor owns a contiguous, row-major, 64-byte aligned block of host
 * memory. The caller owns every tensor it creates or receives from a fetch
 * and frees it with pf_tensor_destroy().
 */
#ifndef PATHFLOW_TENSOR_H
#define PATHFLOW_TENSOR_H

#include "export.h"

#include <stdio.h>

#include "types.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct pf_tensor pf_tensor;

/* Allocates a zero-filled tensor of `spec`.
 * Errors: PF_EINVAL (NULL argument), PF_EDTYPE/PF_ESHAPE/PF_ERANGE (bad spec,
 * see pf_spec_check), PF_ENOMEM. */
PF_API int pf_tensor_create(const pf_spec *spec, pf_tensor **out);

/* Allocates a tensor and copies `nbytes` from `data` into it. nbytes must
 * equal pf_spec_nbytes(spec), else PF_ESHAPE. Other errors as create. */
PF_API int pf_tensor_from(const pf_spec *spec, const void *data, size_t nbytes,
                   pf_tensor **out);

/* Frees the tensor and its data. NULL is a no-op. */
PF_API void pf_tensor_destroy(pf_tensor *t);

/* The tensor's spec; valid as long as the tensor. */
PF_API const pf_spec *pf_tensor_spec(const pf_tensor *t);
/* The data: pf_tensor_nbytes() bytes, row-major. */
PF_API void *pf_tensor_data(pf_tensor *t);
PF_API const void *pf_tensor_cdata(const pf_tensor *t);
PF_API size_t pf_tensor_nbytes(const pf_tensor *t);

/* Tensors with more elements than this print summarized: each axis longer
 * than 2 * PF_TENSOR_PRINT_EDGE shows its first and last
 * PF_TENSOR_PRINT_EDGE entries around "..." (as numpy does). */
#define PF_TENSOR_PRINT_THRESHOLD 1000
#define PF_TENSOR_PRINT_EDGE 3

/* Writes the tensor to `out` as numpy writes an array: its spec on one line
 * (e.g. "f32[2,3]"), then nested brackets, one row per line, elements
 * aligned, floats as %g (6 significant digits, 10 for f64; bf16 and f16
 * widened to float), then a newline:
 *
 *   f32[2,3]
 *   [[  1, 2.5,  -3],
 *    [  4,   5,   6]]
 *
 * Big tensors are summarized (PF_TENSOR_PRINT_THRESHOLD). The tensor is not
 * changed. Errors: PF_EINVAL (NULL argument), PF_ESYS (writing failed). */
PF_API int pf_tensor_print(const pf_tensor *t, FILE *out);

#ifdef __cplusplus
}
#endif
#endif
