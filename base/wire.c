/* The wire helpers both codecs share (the graph's, graph/graph_codec.c, and
 * the plan's, plan/plan_codec.c): a scratch arena for building messages, and
 * specs, shardings and attributes to and from their pathflow.proto messages.
 * They know only base types, so they sit below both codecs' layers.
 */
#include "base/wire.h"

#include <stdlib.h>
#include <string.h>

#include "base/util.h"
#include "pathflow/error.h"

/* ---- arena ---------------------------------------------------------------- */

struct pf_wire_block {
  struct pf_wire_block *next;
  /* keeps the payload after the header aligned for any field type */
  union {
    long double ld;
    int64_t i;
    void *p;
  } align;
};

void *pf_wire_alloc(pf_wire_arena *a, size_t n, size_t size) {
  struct pf_wire_block *b;
  size_t bytes;
  if (size != 0 && n > (SIZE_MAX - sizeof *b) / size) return NULL;
  bytes = n * size;
  if ((b = calloc(1, sizeof *b + bytes)) == NULL) return NULL;
  b->next = a->head;
  a->head = b;
  return b + 1;
}

void pf_wire_arena_free(pf_wire_arena *a) {
  struct pf_wire_block *b = a->head, *next;
  for (; b != NULL; b = next) {
    next = b->next;
    free(b);
  }
  a->head = NULL;
}

/* ---- hand-written fields ------------------------------------------------------ */

size_t pf_wire_field_len(int field, size_t n) {
  return pf_wire_varint_len((uint64_t)field << 3) + pf_wire_varint_len(n) + n;
}

uint8_t *pf_wire_field_start(uint8_t *p, int field, size_t n) {
  p = pf_wire_varint_put(p, (uint64_t)field << 3 | PF_WIRE_LENGTH_DELIMITED);
  return pf_wire_varint_put(p, n);
}

int pf_wire_varint_get(const uint8_t **p, const uint8_t *end, uint64_t *v) {
  const uint8_t *q = *p;
  uint64_t x = 0;
  for (int shift = 0; q < end && shift < 64; shift += 7) {
    uint8_t b = *q++;
    /* the tenth byte holds bit 63 only */
    if (shift == 63 && b > 1) return -1;
    x |= (uint64_t)(b & 0x7f) << shift;
    if (b < 0x80) {
      *p = q;
      *v = x;
      return 0;
    }
  }
  return -1;
}

int pf_wire_field_next(const uint8_t **p, const uint8_t *end, pf_wire_field *f) {
  const uint8_t *q = *p;
  uint64_t key, n;
  f->start = q;
  /* A key is at most five bytes and 32 bits (field numbers below 2^29),
   * as protobuf-c reads it. */
  if (pf_wire_varint_get(&q, end, &key) != 0 || q - f->start > 5 || key > UINT32_MAX ||
      key >> 3 == 0)
    return -1;
  f->number = (uint32_t)(key >> 3);
  f->type = (int)(key & 7);
  f->data = NULL;
  f->len = 0;
  switch (f->type) {
    case PF_WIRE_VARINT:
      if (pf_wire_varint_get(&q, end, &n) != 0) return -1;
      break;
    case PF_WIRE_FIXED64:
    case PF_WIRE_FIXED32: {
      size_t k = f->type == PF_WIRE_FIXED64 ? 8 : 4;
      if ((size_t)(end - q) < k) return -1;
      q += k;
      break;
    }
    case PF_WIRE_LENGTH_DELIMITED:
      if (pf_wire_varint_get(&q, end, &n) != 0 || n > (uint64_t)(end - q)) return -1;
      f->data = q;
      f->len = (size_t)n;
      q += n;
      break;
    default: /* groups (3, 4) are not proto3; 6 and 7 are no wire type */
      return -1;
  }
  *p = f->end = q;
  return 0;
}

/* ---- shared encoders -------------------------------------------------------- */

int pf_wire_spec_encode(pf_wire_arena *a, const pf_spec *s,
                        Pathflow__Spec **out) {
  Pathflow__Spec *m;
  if (s->rank < 0 || s->rank > PF_MAX_RANK) return PF_EINVAL;
  if ((m = pf_wire_alloc(a, 1, sizeof *m)) == NULL) return PF_ENOMEM;
  pathflow__spec__init(m);
  m->dtype = (int32_t)s->dtype;
  m->n_dims = (size_t)s->rank;
  m->dims = (int64_t *)s->dims; /* only read by pack */
  *out = m;
  return 0;
}

Pathflow__Sharding *pf_wire_sharding_encode(pf_wire_arena *a, pf_sharding s) {
  Pathflow__Sharding *m = pf_wire_alloc(a, 1, sizeof *m);
  if (m == NULL) return NULL;
  pathflow__sharding__init(m);
  m->kind = (int32_t)s.kind;
  m->axis = s.axis;
  return m;
}

static int attr_encode(pf_wire_arena *a, const pf_attrs *attrs, int i,
                       Pathflow__Attr **out) {
  const char *name = pf_attrs_name(attrs, i);
  Pathflow__Attr *m = pf_wire_alloc(a, 1, sizeof *m);
  const int64_t *v = NULL;
  int n;
  if (m == NULL) return PF_ENOMEM;
  pathflow__attr__init(m);
  m->name = (char *)name;
  switch (pf_attrs_type(attrs, i)) {
    case PF_ATTR_INT:
      m->value_case = PATHFLOW__ATTR__VALUE_I;
      m->i = pf_attrs_get_int(attrs, name, 0);
      break;
    case PF_ATTR_FLOAT:
      m->value_case = PATHFLOW__ATTR__VALUE_F;
      m->f = pf_attrs_get_float(attrs, name, 0.0);
      break;
    case PF_ATTR_STRING:
      m->value_case = PATHFLOW__ATTR__VALUE_S;
      m->s = (char *)pf_attrs_get_string(attrs, name, "");
      break;
    case PF_ATTR_INTS:
      m->value_case = PATHFLOW__ATTR__VALUE_INTS;
      if ((m->ints = pf_wire_alloc(a, 1, sizeof *m->ints)) == NULL)
        return PF_ENOMEM;
      pathflow__ints__init(m->ints);
      n = pf_attrs_get_ints(attrs, name, &v);
      m->ints->n_v = n > 0 ? (size_t)n : 0;
      m->ints->v = (int64_t *)v;
      break;
    default:
      return PF_EINVAL;
  }
  *out = m;
  return 0;
}

int pf_wire_attrs_encode(pf_wire_arena *a, const pf_attrs *attrs,
                         size_t *n_out, Pathflow__Attr ***out) {
  int n = pf_attrs_count(attrs), rc;
  Pathflow__Attr **items;
  *n_out = 0;
  *out = NULL;
  if (n <= 0) return 0;
  if ((items = pf_wire_alloc(a, (size_t)n, sizeof *items)) == NULL)
    return PF_ENOMEM;
  for (int i = 0; i < n; i++)
    if ((rc = attr_encode(a, attrs, i, &items[i])) != 0) return rc;
  *n_out = (size_t)n;
  *out = items;
  return 0;
}

/* ---- shared decoders -------------------------------------------------------- */

int pf_wire_string_check(const char *s, size_t max, pf_diag *diag) {
  size_t n;
  if (s == NULL) return pf_diag_error(diag, PF_EDECODE, "missing string");
  n = strnlen(s, max + 1);
  if (n > max)
    return pf_diag_error(diag, PF_EDECODE, "string longer than %zu bytes",
                         max);
  return 0;
}

int pf_wire_spec_decode(const Pathflow__Spec *m, pf_spec *out,
                        pf_diag *diag) {
  int rc;
  char buf[160];
  if (m == NULL) return pf_diag_error(diag, PF_EDECODE, "no spec");
  if (m->n_dims > PF_MAX_RANK)
    return pf_diag_error(diag, PF_EDECODE, "spec has %zu dims, at most %d",
                         m->n_dims, PF_MAX_RANK);
  if (m->dtype < 0 || m->dtype >= PF_DTYPE_COUNT)
    return pf_diag_error(diag, PF_EDECODE, "spec has unknown dtype %d",
                         (int)m->dtype);
  *out = pf_spec_make((pf_dtype)m->dtype, (int)m->n_dims, m->dims);
  if ((rc = pf_spec_check(out)) != 0)
    return pf_diag_error(diag, PF_EDECODE, "bad spec %s (%s)",
                         pf_spec_str(out, buf, sizeof buf), pf_strerror(rc));
  return 0;
}

int pf_wire_sharding_decode(const Pathflow__Sharding *m, pf_sharding *out,
                            pf_diag *diag) {
  if (m == NULL) return pf_diag_error(diag, PF_EDECODE, "no sharding");
  if (m->kind != PF_SHARD_REPLICATED && m->kind != PF_SHARD_SPLIT &&
      m->kind != PF_SHARD_PARTIAL)
    return pf_diag_error(diag, PF_EDECODE, "unknown sharding kind %d",
                         (int)m->kind);
  /* The axis is checked against the spec by the validator (PF_ESPLIT). */
  out->kind = (pf_sharding_kind)m->kind;
  out->axis = m->axis;
  return 0;
}

static int attr_decode(pf_attrs *a, const Pathflow__Attr *m, pf_diag *diag) {
  int rc = 0;
  if (m->name == NULL || pf_wire_string_check(m->name, PF_ATTR_NAME_MAX, NULL))
    return pf_diag_error(diag, PF_EDECODE, "attr name longer than %d bytes",
                         PF_ATTR_NAME_MAX);
  /* A setter would silently replace: a repeated name is a malformed map. */
  if (pf_attrs_has(a, m->name))
    return pf_diag_error(diag, PF_EDECODE, "attr \"%s\" repeated", m->name);
  switch (m->value_case) {
    case PATHFLOW__ATTR__VALUE_I:
      rc = pf_attrs_set_int(a, m->name, m->i);
      break;
    case PATHFLOW__ATTR__VALUE_F:
      rc = pf_attrs_set_float(a, m->name, m->f);
      break;
    case PATHFLOW__ATTR__VALUE_S:
      if (pf_wire_string_check(m->s, PF_WIRE_MAX_STRING, NULL))
        return pf_diag_error(diag, PF_EDECODE,
                             "attr \"%s\": string longer than %d bytes",
                             m->name, PF_WIRE_MAX_STRING);
      rc = pf_attrs_set_string(a, m->name, m->s);
      break;
    case PATHFLOW__ATTR__VALUE_INTS:
      if (m->ints == NULL || m->ints->n_v > PF_ATTR_LIST_MAX)
        return pf_diag_error(diag, PF_EDECODE,
                             "attr \"%s\": int list longer than %d", m->name,
                             PF_ATTR_LIST_MAX);
      rc = pf_attrs_set_ints(a, m->name, m->ints->v, (int)m->ints->n_v);
      break;
    default:
      return pf_diag_error(diag, PF_EDECODE, "attr \"%s\" has no value",
                           m->name);
  }
  if (rc == PF_ENOMEM)
    return pf_diag_error(diag, rc, "attr \"%s\": out of memory", m->name);
  if (rc != 0)
    return pf_diag_error(diag, PF_EDECODE, "attr \"%s\" refused (%s)",
                         m->name, pf_strerror(rc));
  return 0;
}

int pf_wire_attrs_decode(size_t n, Pathflow__Attr *const *in, pf_attrs **out,
                         pf_diag *diag) {
  pf_attrs *a;
  int rc;
  *out = NULL;
  if (n > PF_WIRE_MAX_ATTRS)
    return pf_diag_error(diag, PF_EDECODE, "%zu attrs, at most %d", n,
                         PF_WIRE_MAX_ATTRS);
  if ((rc = pf_attrs_create(&a)) != 0)
    return pf_diag_error(diag, rc, "attrs: out of memory");
  for (size_t i = 0; i < n; i++) {
    if ((rc = attr_decode(a, in[i], diag)) != 0) {
      pf_attrs_destroy(a);
      return rc;
    }
  }
  *out = a;
  return 0;
}
