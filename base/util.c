#include "base/util.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/diag.h"
#include "pathflow/error.h"

int pf_grow(void **items, size_t *cap, size_t need, size_t elem_size) {
  size_t ncap;
  void *p;
  if (need <= *cap) return 0;
  ncap = *cap ? *cap : 8;
  while (ncap < need) {
    if (ncap > SIZE_MAX / 2) return PF_ENOMEM;
    ncap *= 2;
  }
  if (elem_size != 0 && ncap > SIZE_MAX / elem_size) return PF_ENOMEM;
  p = realloc(*items, ncap * elem_size);
  if (p == NULL) return PF_ENOMEM;
  *items = p;
  *cap = ncap;
  return 0;
}

void *pf_calloc(size_t n, size_t size) {
  if (n == 0 || size == 0) return calloc(1, 1);
  return calloc(n, size);
}

void *pf_mallocn(size_t n, size_t size) {
  if (size != 0 && n > SIZE_MAX / size) return NULL;
  return malloc(n * size != 0 ? n * size : 1);
}

void *pf_aligned_alloc(size_t nbytes) {
  void *p = NULL;
  if (nbytes == 0) nbytes = 1;
  if (posix_memalign(&p, PF_ALIGN, nbytes) != 0) return NULL;
  return p;
}

void pf_aligned_free(void *p) { free(p); }

char *pf_strdup(const char *s) {
  size_t n;
  char *d;
  if (s == NULL) return NULL;
  n = strlen(s) + 1;
  d = malloc(n);
  if (d != NULL) memcpy(d, s, n);
  return d;
}

uint64_t pf_now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

int pf_env_bytes(const char *name, int64_t dflt, int64_t *out, pf_diag *diag) {
  const char *s = getenv(name);
  char *end = NULL;
  long long v;
  int shift = 0;
  *out = dflt;
  if (s == NULL || *s == '\0') return 0;
  errno = 0;
  v = strtoll(s, &end, 10);
  if (end && *end) {
    switch (*end) {
      case 'K': case 'k': shift = 10; break;
      case 'M': case 'm': shift = 20; break;
      case 'G': case 'g': shift = 30; break;
      case 'T': case 't': shift = 40; break;
      default: shift = -1;
    }
    if (shift >= 0 && end[1] != '\0' && !((end[1] == 'B' || end[1] == 'b') && end[2] == '\0'))
      shift = -1;
  }
  if (errno != 0 || end == s || shift < 0 || v < 1 || v > (INT64_MAX >> 40))
    return pf_diag_error(diag, PF_EINVAL,
                         "%s=\"%s\": expected a byte count such as 1073741824, 512M or 16G",
                         name, s);
  *out = (int64_t)v << shift;
  return 0;
}

int pf_env_int(const char *name, int64_t dflt, int64_t min, int64_t max,
               int64_t *out, pf_diag *diag) {
  const char *s = getenv(name);
  char *end = NULL;
  long long v;
  *out = dflt;
  if (s == NULL || *s == '\0') return 0;
  errno = 0;
  v = strtoll(s, &end, 10);
  if (errno != 0 || end == s || *end != '\0' || v < min || v > max)
    return pf_diag_error(diag, PF_EINVAL,
                         "%s=\"%s\": expected an integer in [%lld, %lld]",
                         name, s, (long long)min, (long long)max);
  *out = v;
  return 0;
}
