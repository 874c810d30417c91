/* pathflow: error codes.
 *
 * Every pathflow function that can fail returns an int: 0 on success or one
 * of the negative PF_E... codes below. pf_strerror() turns a code into a
 * sentence; the context keeps a longer message naming what failed (see
 * pf_last_error() in context.h).
 */
#ifndef PATHFLOW_ERROR_H
#define PATHFLOW_ERROR_H

#include "export.h"

#ifdef __cplusplus
extern "C" {
#endif

#define PF_OK 0

/* The codes are stable: they cross the wire in error messages. */
#define PF_ERRNO_MAP(X)                                                      \
  X(EINVAL, -1, "invalid argument")                                          \
  X(ENOMEM, -2, "out of memory")                                             \
  X(ECYCLE, -3, "the graph has a cycle")                                     \
  X(ENOKERNEL, -4, "unknown kernel")                                         \
  X(EARITY, -5, "wrong number of inputs or outputs")                         \
  X(EDTYPE, -6, "dtype mismatch")                                            \
  X(ESHAPE, -7, "shape mismatch")                                            \
  X(ESPLIT, -8, "split axis does not divide evenly over the slice")          \
  X(ESLICE, -9, "slice larger than the devices available")                   \
  X(ENOOUTPUT, -10, "graph output is never produced")                        \
  X(ENOFEED, -11, "a graph input has no feed")                               \
  X(EFEEDSHAPE, -12, "a feed has the wrong dtype or shape")                  \
  X(EKERNEL, -13, "a kernel failed")                                         \
  X(EDECODE, -14, "malformed message")                                       \
  X(ESTALE, -15, "stale or unknown handle")                                  \
  X(EEXIST, -16, "name already in use")                                      \
  X(ENOTFOUND, -17, "no such name")                                          \
  X(ESTATE, -18, "operation not valid in this state")                        \
  X(ERANGE, -19, "value out of range")                                       \
  X(ESYS, -20, "system call failed")                                         \
  X(EMPI, -21, "MPI call failed")                                            \
  X(ERANKLOST, -22, "a rank was lost")                                       \
  X(ETIMEDOUT, -23, "timed out")                                             \
  X(ECANCELED, -24, "canceled")                                              \
  X(ENOTSUP, -25, "not supported")                                           \
  X(EMEMORY, -26, "plan exceeds device memory")                             \
  X(ESHARDING, -27, "a sharding the kernel's sharding rule does not allow")  \
  X(EAGAIN, -28, "resource temporarily unavailable; try again")

enum {
#define PF_ERRNO_ENUM(name, code, text) PF_##name = (code),
  PF_ERRNO_MAP(PF_ERRNO_ENUM)
#undef PF_ERRNO_ENUM
};

/* A static sentence for `code`; "unknown error" for codes pathflow never
 * returns. Never NULL. */
PF_API const char *pf_strerror(int code);

/* The code's symbolic name, e.g. "PF_ECYCLE"; "PF_E?" if unknown. */
PF_API const char *pf_errname(int code);

/* Where a shape or compute function reports what is wrong. Opaque. */
typedef struct pf_diag pf_diag;

/* Records `code` and a message (printf format) in `diag` and returns `code`,
 * so that a kernel can write `return pf_diag_error(d, PF_ESHAPE, ...)`.
 * The first error recorded wins. */
PF_API int pf_diag_error(pf_diag *diag, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#ifdef __cplusplus
}
#endif
#endif
