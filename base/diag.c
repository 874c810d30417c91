#include "base/diag.h"

#include <stdio.h>
#include <string.h>

void pf_diag_init(pf_diag *d) {
  d->code = 0;
  d->msg[0] = '\0';
}

int pf_diag_verror(pf_diag *d, int code, const char *fmt, va_list ap) {
  if (d == NULL) return code;
  if (d->code != 0) return code; /* the first error is the interesting one */
  d->code = code;
  vsnprintf(d->msg, sizeof d->msg, fmt, ap);
  return code;
}

int pf_diag_error(pf_diag *d, int code, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  pf_diag_verror(d, code, fmt, ap);
  va_end(ap);
  return code;
}

int pf_diag_copy(pf_diag *dst, const pf_diag *src) {
  if (dst != NULL && dst->code == 0 && src->code != 0) *dst = *src;
  return src->code;
}

void pf_diag_suffix(pf_diag *d, const char *fmt, ...) {
  size_t used;
  va_list ap;
  if (d == NULL || d->code == 0) return;
  used = strlen(d->msg);
  va_start(ap, fmt);
  vsnprintf(d->msg + used, sizeof d->msg - used, fmt, ap);
  va_end(ap);
}

void pf_diag_prefix(pf_diag *d, const char *fmt, ...) {
  char head[PF_DIAG_MSG_MAX];
  char joined[2 * PF_DIAG_MSG_MAX + 2];
  va_list ap;
  if (d == NULL || d->code == 0) return;
  va_start(ap, fmt);
  vsnprintf(head, sizeof head, fmt, ap);
  va_end(ap);
  snprintf(joined, sizeof joined, "%s: %s", head, d->msg);
  memcpy(d->msg, joined, sizeof d->msg - 1);
  d->msg[sizeof d->msg - 1] = '\0';
}
