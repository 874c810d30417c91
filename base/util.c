#include "base/util.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/diag.h"
#include "base/pages.h"
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
  if (ncap * elem_size >= PF_PAGES_HUGE_MIN && pf_pages_huge()) {
    /* A large array is written through: on huge pages, and the copy goes
     * there too (realloc would copy into 4 KiB pages before any hint). */
    if ((p = pf_pages_malloc(ncap * elem_size)) == NULL) return PF_ENOMEM;
    if (*items != NULL) memcpy(p, *items, *cap * elem_size);
    free(*items);
  } else if ((p = realloc(*items, ncap * elem_size)) == NULL) {
    return PF_ENOMEM;
  }
  *items = p;
  *cap = ncap;
  return 0;
}

void *pf_calloc(size_t n, size_t size) {
  void *p;
  if (n == 0 || size == 0) return calloc(1, 1);
  if (n > SIZE_MAX / size) return NULL;
  if (n * size < PF_PAGES_HUGE_MIN || !pf_pages_huge()) return calloc(n, size);
  /* Not calloc: it may clear the block itself (memory the heap had used),
   * faulting in every 4 KiB page before the block is marked. */
  if ((p = pf_pages_malloc(n * size)) != NULL) memset(p, 0, n * size);
  return p;
}

void *pf_mallocn(size_t n, size_t size) {
  if (size != 0 && n > SIZE_MAX / size) return NULL;
  if (n * size >= PF_PAGES_HUGE_MIN) return pf_pages_malloc(n * size);
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

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

double pf_median(double *v, size_t n) {
  if (n == 0) return 0;
  qsort(v, n, sizeof *v, cmp_double);
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

int pf_parse_int(const char *s, int64_t min, int64_t max, int64_t *out) {
  char *end = NULL;
  long long v;
  /* strtoll skips leading spaces and takes '+': a value is digits only. */
  if (s == NULL || !(*s == '-' || (*s >= '0' && *s <= '9'))) return PF_EINVAL;
  errno = 0;
  v = strtoll(s, &end, 10);
  if (errno != 0 || end == s || *end != '\0' || v < min || v > max) return PF_EINVAL;
  *out = v;
  return 0;
}

/* The shift of a unit ("", K, KB, Ki, KiB, ... case-insensitive), or -1. */
static int unit_shift(const char *u) {
  static const char prefixes[] = "kmgt";
  const char *p;
  int c = *u >= 'A' && *u <= 'Z' ? *u - 'A' + 'a' : *u;
  if (*u == '\0') return 0;
  if (c == '\0' || (p = strchr(prefixes, c)) == NULL) return -1;
  u++;
  if (*u == 'i' || *u == 'I') u++;
  if (*u == 'b' || *u == 'B') u++;
  return *u == '\0' ? 10 * (int)(p - prefixes + 1) : -1;
}

int pf_parse_bytes(const char *s, int64_t min, int64_t max, int64_t *out) {
  char digits[32];
  size_t n = 0;
  int64_t v;
  int shift;
  if (s == NULL) return PF_EINVAL;
  while (s[n] >= '0' && s[n] <= '9') n++;
  if (n == 0 || n >= sizeof digits || (shift = unit_shift(s + n)) < 0) return PF_EINVAL;
  memcpy(digits, s, n);
  digits[n] = '\0';
  if (pf_parse_int(digits, 0, INT64_MAX >> shift, &v) != 0) return PF_EINVAL;
  v <<= shift;
  if (v < min || v > max) return PF_EINVAL;
  *out = v;
  return 0;
}

int pf_env_bytes(const char *name, int64_t dflt, int64_t min, int64_t *out, pf_diag *diag) {
  const char *s = getenv(name);
  *out = dflt;
  if (s == NULL || *s == '\0') return 0;
  if (pf_parse_bytes(s, min, INT64_MAX, out) == 0) return 0;
  if (min > 0)
    return pf_diag_error(diag, PF_EINVAL, "%s=\"%s\": expected %s, at least %lld", name, s,
                         PF_BYTES_HELP, (long long)min);
  return pf_diag_error(diag, PF_EINVAL, "%s=\"%s\": expected %s", name, s, PF_BYTES_HELP);
}

int pf_env_int(const char *name, int64_t dflt, int64_t min, int64_t max,
               int64_t *out, pf_diag *diag) {
  const char *s = getenv(name);
  *out = dflt;
  if (s == NULL || *s == '\0') return 0;
  if (pf_parse_int(s, min, max, out) != 0)
    return pf_diag_error(diag, PF_EINVAL, "%s=\"%s\": expected an integer in [%lld, %lld]",
                         name, s, (long long)min, (long long)max);
  return 0;
}
