/* Attributes are kept sorted by name so that equality, encoding and
 * iteration are deterministic (plans must be byte-identical across runs). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/attrs_internal.h"
#include "base/util.h"
#include "pathflow/attrs.h"
#include "pathflow/error.h"

typedef struct attr {
  char name[PF_ATTR_NAME_MAX + 1];
  pf_attr_type type;
  int64_t i;
  double f;
  char *s;
  int64_t *ints;
  int n_ints;
} attr;

/* The first item lives in the set itself (items points at `first` until
 * a second comes): most kernels have one attribute or none, and a kernel
 * reading it takes one cache miss, not two (bench/granularity's kernel
 * reads its length on every call). */
struct pf_attrs {
  attr *items;
  size_t n, cap;
  int refs; /* owners (pf_attrs_ref), atomic */
  attr first;
};

int pf_attrs_create(pf_attrs **out) {
  if (out == NULL) return PF_EINVAL;
  if ((*out = calloc(1, sizeof **out)) == NULL) return PF_ENOMEM;
  (*out)->items = &(*out)->first;
  (*out)->cap = 1;
  (*out)->refs = 1;
  return 0;
}

/* Room for one more item. */
static int grow(pf_attrs *a) {
  size_t cap = a->cap < 4 ? 4 : 2 * a->cap;
  attr *items;
  if (a->n < a->cap) return 0;
  if (a->items != &a->first) return pf_grow((void **)&a->items, &a->cap, a->n + 1, sizeof *items);
  if ((items = pf_mallocn(cap, sizeof *items)) == NULL) return PF_ENOMEM;
  memcpy(items, a->items, a->n * sizeof *items);
  a->items = items;
  a->cap = cap;
  return 0;
}

static void attr_clear(attr *a) {
  free(a->s);
  free(a->ints);
  a->s = NULL;
  a->ints = NULL;
  a->n_ints = 0;
}

/* The one empty set that pf_attrs_share hands out: never freed, never
 * changed (the setters refuse it). */
static pf_attrs shared_empty;

int pf_attrs_share(const pf_attrs *src, pf_attrs **out) {
  if (src == NULL || src->n == 0) {
    *out = &shared_empty;
    return 0;
  }
  return pf_attrs_clone(src, out);
}

pf_attrs *pf_attrs_ref(const pf_attrs *a) {
  pf_attrs *m = (pf_attrs *)a; /* the count is not the set's value */
  if (m != NULL && m != &shared_empty) __atomic_fetch_add(&m->refs, 1, __ATOMIC_RELAXED);
  return m;
}

void pf_attrs_destroy(pf_attrs *a) {
  if (a == NULL || a == &shared_empty) return;
  if (__atomic_fetch_sub(&a->refs, 1, __ATOMIC_ACQ_REL) != 1) return;
  for (size_t i = 0; i < a->n; i++) attr_clear(&a->items[i]);
  if (a->items != &a->first) free(a->items);
  free(a);
}

static attr *find(const pf_attrs *a, const char *name) {
  size_t lo = 0, hi;
  if (a == NULL || name == NULL) return NULL;
  hi = a->n;
  while (lo < hi) {
    size_t mid = (lo + hi) / 2;
    int c = strcmp(a->items[mid].name, name);
    if (c == 0) return &a->items[mid];
    if (c < 0)
      lo = mid + 1;
    else
      hi = mid;
  }
  return NULL;
}

static int valid_name(const char *name) {
  size_t n;
  if (name == NULL) return 0;
  n = strlen(name);
  return n > 0 && n <= PF_ATTR_NAME_MAX;
}

/* Returns the slot for `name`, cleared, inserting it in order if needed. */
static int slot(pf_attrs *a, const char *name, attr **out) {
  size_t pos = 0;
  attr *hit;
  if (a == NULL || a == &shared_empty || !valid_name(name) ||
      __atomic_load_n(&a->refs, __ATOMIC_RELAXED) > 1)
    return PF_EINVAL;
  if ((hit = find(a, name)) != NULL) {
    attr_clear(hit);
    *out = hit;
    return 0;
  }
  if (grow(a) != 0) return PF_ENOMEM;
  while (pos < a->n && strcmp(a->items[pos].name, name) < 0) pos++;
  memmove(&a->items[pos + 1], &a->items[pos], (a->n - pos) * sizeof(attr));
  memset(&a->items[pos], 0, sizeof(attr));
  strcpy(a->items[pos].name, name);
  a->n++;
  *out = &a->items[pos];
  return 0;
}

int pf_attrs_set_int(pf_attrs *a, const char *name, int64_t v) {
  attr *s;
  int rc = slot(a, name, &s);
  if (rc) return rc;
  s->type = PF_ATTR_INT;
  s->i = v;
  return 0;
}

int pf_attrs_set_float(pf_attrs *a, const char *name, double v) {
  attr *s;
  int rc;
  if (!isfinite(v)) return PF_EINVAL;
  if ((rc = slot(a, name, &s)) != 0) return rc;
  s->type = PF_ATTR_FLOAT;
  s->f = v;
  return 0;
}

int pf_attrs_set_string(pf_attrs *a, const char *name, const char *v) {
  attr *s;
  char *copy;
  int rc;
  if (v == NULL) return PF_EINVAL;
  if ((copy = pf_strdup(v)) == NULL) return PF_ENOMEM;
  if ((rc = slot(a, name, &s)) != 0) {
    free(copy);
    return rc;
  }
  s->type = PF_ATTR_STRING;
  s->s = copy;
  return 0;
}

int pf_attrs_set_ints(pf_attrs *a, const char *name, const int64_t *v, int n) {
  attr *s;
  int64_t *copy;
  int rc;
  if (n < 0 || n > PF_ATTR_LIST_MAX || (n > 0 && v == NULL)) return PF_EINVAL;
  if ((copy = pf_mallocn((size_t)n, sizeof *copy)) == NULL) return PF_ENOMEM;
  if (n) memcpy(copy, v, (size_t)n * sizeof *copy);
  if ((rc = slot(a, name, &s)) != 0) {
    free(copy);
    return rc;
  }
  s->type = PF_ATTR_INTS;
  s->ints = copy;
  s->n_ints = n;
  return 0;
}

int pf_attrs_clone(const pf_attrs *src, pf_attrs **out) {
  pf_attrs *a;
  int rc = 0;
  if (out == NULL) return PF_EINVAL;
  *out = NULL;
  if ((rc = pf_attrs_create(&a)) != 0) return rc;
  for (size_t i = 0; src && i < src->n && rc == 0; i++) {
    const attr *s = &src->items[i];
    switch (s->type) {
      case PF_ATTR_INT: rc = pf_attrs_set_int(a, s->name, s->i); break;
      case PF_ATTR_FLOAT: rc = pf_attrs_set_float(a, s->name, s->f); break;
      case PF_ATTR_STRING: rc = pf_attrs_set_string(a, s->name, s->s); break;
      case PF_ATTR_INTS:
        rc = pf_attrs_set_ints(a, s->name, s->ints, s->n_ints);
        break;
    }
  }
  if (rc) {
    pf_attrs_destroy(a);
    return rc;
  }
  *out = a;
  return 0;
}

int64_t pf_attrs_get_int(const pf_attrs *a, const char *name, int64_t dflt) {
  const attr *s = find(a, name);
  return s && s->type == PF_ATTR_INT ? s->i : dflt;
}

double pf_attrs_get_float(const pf_attrs *a, const char *name, double dflt) {
  const attr *s = find(a, name);
  if (s && s->type == PF_ATTR_FLOAT) return s->f;
  if (s && s->type == PF_ATTR_INT) return (double)s->i;
  return dflt;
}

const char *pf_attrs_get_string(const pf_attrs *a, const char *name,
                                const char *dflt) {
  const attr *s = find(a, name);
  return s && s->type == PF_ATTR_STRING ? s->s : dflt;
}

int pf_attrs_get_ints(const pf_attrs *a, const char *name, const int64_t **v) {
  const attr *s = find(a, name);
  if (!s || s->type != PF_ATTR_INTS) return -1;
  if (v) *v = s->ints;
  return s->n_ints;
}

int pf_attrs_has(const pf_attrs *a, const char *name) { return find(a, name) != NULL; }

int pf_attrs_count(const pf_attrs *a) { return a ? (int)a->n : 0; }

const char *pf_attrs_name(const pf_attrs *a, int i) {
  return a && i >= 0 && (size_t)i < a->n ? a->items[i].name : NULL;
}

pf_attr_type pf_attrs_type(const pf_attrs *a, int i) {
  return a && i >= 0 && (size_t)i < a->n ? a->items[i].type : PF_ATTR_INT;
}

int pf_attrs_identical(const pf_attrs *a, const pf_attrs *b) {
  if (!pf_attrs_equal(a, b)) return 0;
  for (size_t i = 0; a != NULL && i < a->n; i++)
    if (a->items[i].type == PF_ATTR_FLOAT &&
        memcmp(&a->items[i].f, &b->items[i].f, sizeof a->items[i].f) != 0)
      return 0;
  return 1;
}

static uint64_t hash_bytes(uint64_t h, const void *p, size_t n) {
  const unsigned char *b = p;
  for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 1099511628211ull;
  return h;
}

uint64_t pf_attrs_hash(const pf_attrs *a) {
  uint64_t h = 1469598103934665603ull;
  for (size_t i = 0; a != NULL && i < a->n; i++) {
    const attr *x = &a->items[i];
    h = hash_bytes(h, x->name, strlen(x->name) + 1);
    h = hash_bytes(h, &x->type, sizeof x->type);
    switch (x->type) {
      case PF_ATTR_INT: h = hash_bytes(h, &x->i, sizeof x->i); break;
      case PF_ATTR_FLOAT: h = hash_bytes(h, &x->f, sizeof x->f); break;
      case PF_ATTR_STRING: h = hash_bytes(h, x->s, strlen(x->s)); break;
      case PF_ATTR_INTS:
        if (x->n_ints) h = hash_bytes(h, x->ints, (size_t)x->n_ints * sizeof(int64_t));
        break;
    }
  }
  return h;
}

int pf_attrs_equal(const pf_attrs *a, const pf_attrs *b) {
  size_t na = a ? a->n : 0, nb = b ? b->n : 0;
  if (na != nb) return 0;
  for (size_t i = 0; i < na; i++) {
    const attr *x = &a->items[i], *y = &b->items[i];
    if (strcmp(x->name, y->name) != 0 || x->type != y->type) return 0;
    switch (x->type) {
      case PF_ATTR_INT: if (x->i != y->i) return 0; break;
      case PF_ATTR_FLOAT: if (x->f != y->f) return 0; break;
      case PF_ATTR_STRING: if (strcmp(x->s, y->s) != 0) return 0; break;
      case PF_ATTR_INTS:
        if (x->n_ints != y->n_ints ||
            (x->n_ints && memcmp(x->ints, y->ints,
                                 (size_t)x->n_ints * sizeof(int64_t)) != 0))
          return 0;
        break;
    }
  }
  return 1;
}
