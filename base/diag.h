/* Internal: error sinks.
 *
 * A pf_diag collects the first error of an operation (code + message). The
 * context owns one for pf_last_error; graph building, compiling and kernels
 * write into the one they are handed.
 */
#ifndef PF_BASE_DIAG_H
#define PF_BASE_DIAG_H

#include <stdarg.h>

#include "pathflow/error.h"

#define PF_DIAG_MSG_MAX 512

struct pf_diag {
  int code;
  char msg[PF_DIAG_MSG_MAX];
};

void pf_diag_init(pf_diag *d);
/* Like pf_diag_error with a va_list. */
int pf_diag_verror(pf_diag *d, int code, const char *fmt, va_list ap);
/* Copies src into dst unless dst already holds an error; returns src->code. */
int pf_diag_copy(pf_diag *dst, const pf_diag *src);
/* Appends to an already-recorded message (cut at PF_DIAG_MSG_MAX). */
void pf_diag_suffix(pf_diag *d, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Prefixes an already-recorded message with "<prefix>: ". */
void pf_diag_prefix(pf_diag *d, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#endif
