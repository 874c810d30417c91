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

/* Monotonic clock, nanoseconds. */
uint64_t pf_now_ns(void);

struct pf_diag;

/* Reads a byte count from an environment variable: an integer with an
 * optional K, M, G or T suffix (powers of 1024). Errors as pf_env_int. */
int pf_env_bytes(const char *name, int64_t dflt, int64_t *out, struct pf_diag *diag);

/* Reads an integer environment variable. Unset or empty: *out = dflt, 0.
 * Set but not an integer in [min, max]: PF_EINVAL, message in diag. */
int pf_env_int(const char *name, int64_t dflt, int64_t min, int64_t max,
               int64_t *out, struct pf_diag *diag);

#endif
