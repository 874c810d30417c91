/* Internal: small helpers shared by every layer. */
#ifndef PF_BASE_UTIL_H
#define PF_BASE_UTIL_H

#include <stddef.h>
#include <stdint.h>

#define PF_ALIGN 64 /* alignment of every tensor allocation */
#define PF_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
#define PF_MINOF(a, b) ((a) < (b) ? (a) : (b))
#define PF_MAXOF(a, b) ((a) > (b) ? (a) : (b))

/* Grows *items (of elem_size bytes each, *cap of them) to hold at least
 * `need`. Returns 0 or PF_ENOMEM (the array is then unchanged). */
int pf_grow(void **items, size_t *cap, size_t need, size_t elem_size);

/* malloc/calloc that return NULL for n*size overflow. */
void *pf_calloc(size_t n, size_t size);
void *pf_mallocn(size_t n, size_t size);

/* 64-byte aligned allocation of at least 1 byte; free with pf_aligned_free. */
void *pf_aligned_alloc(size_t nbytes);
void pf_aligned_free(void *p);

/* strdup that returns NULL on failure and for NULL. */
char *pf_strdup(const char *s);

/* FNV-1a of the NUL-terminated string s: the hash of every table keyed by
 * a name (program names, kernel names, a plan's strings). */
static inline uint64_t pf_str_hash(const char *s) {
  uint64_t h = 1469598103934665603ull;
  for (; *s; s++) h = (h ^ (uint8_t)*s) * 1099511628211ull;
  return h;
}

/* Monotonic clock, nanoseconds. */
uint64_t pf_now_ns(void);

/* The median of v[0..n) (the mean of the middle two when n is even; 0 when
 * n is 0), for the benchmarks and calibration. Sorts v in place. */
double pf_median(double *v, size_t n);

/* Parses all of `s` as a decimal integer in [min, max] (no sign other than
 * '-', no spaces, nothing after the digits). Returns 0 or PF_EINVAL, leaving
 * *out unchanged. */
int pf_parse_int(const char *s, int64_t min, int64_t max, int64_t *out);

/* Parses all of `s` as a byte count in [min, max]: an integer with an
 * optional unit, case-insensitive, every one a power of 1024: K, KB, Ki or KiB
 * (1024), M.. (2^20), G.. (2^30), T.. (2^40). "1K" is 1024 bytes, "1.5G" and
 * "1 K" are refused. Returns 0 or PF_EINVAL (junk, overflow, out of range),
 * leaving *out unchanged. */
int pf_parse_bytes(const char *s, int64_t min, int64_t max, int64_t *out);

/* What pf_parse_bytes accepts, for error messages. */
#define PF_BYTES_HELP "a byte count such as 1073741824, 512K, 64MiB or 16G (units are powers of 1024)"

/* A macro's value as a string literal: PF_STR(PF_MAX_RANK) is "8". */
#define PF_STR(x) PF_STR_(x)
#define PF_STR_(x) #x

struct pf_spec;

/* pf_spec_check, and when it fails, what is wrong in words in why[len]
 * (which dimension is negative and its value, a rank out of 0..PF_MAX_RANK,
 * an unknown dtype, too many bytes); "" when the spec is valid. Defined in
 * base/types.c. */
int pf_spec_explain(const struct pf_spec *s, char *why, size_t len);

struct pf_diag;

/* Reads a byte count (pf_parse_bytes) in [min, INT64_MAX] from an
 * environment variable. Errors as pf_env_int. */
int pf_env_bytes(const char *name, int64_t dflt, int64_t min, int64_t *out,
                 struct pf_diag *diag);

/* Reads an integer environment variable. Unset or empty: *out = dflt, 0.
 * Set but not an integer in [min, max]: PF_EINVAL, with a message in diag
 * naming the variable, its value and what is accepted. */
int pf_env_int(const char *name, int64_t dflt, int64_t min, int64_t max,
               int64_t *out, struct pf_diag *diag);

#endif
