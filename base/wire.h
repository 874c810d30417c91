/* Internal: the wire helpers that the graph codec (graph/graph_codec.c) and
 * the plan codec (plan/plan_codec.c) share.
 *
 * Decoders never trust their bytes: every count, enum and string length is
 * checked before anything is built from it, and every error is PF_EDECODE
 * with a message naming the element at fault.
 */
#ifndef PF_BASE_WIRE_H
#define PF_BASE_WIRE_H

#include <stddef.h>
#include <stdint.h>

#include "base/diag.h"
#include "pathflow/attrs.h"
#include "pathflow/types.h"
#include "proto/pathflow.pb-c.h"

/* Largest message either decoder accepts, in bytes: refused before parsing,
 * so a hostile length cannot make protobuf-c allocate for it. */
#define PF_WIRE_MAX_MESSAGE (256u << 20)
/* Longest string a plan may carry (names, kernels, string attrs). */
#define PF_WIRE_MAX_STRING 1024
/* Most attributes on one program or op: pf_attrs inserts in order, so an
 * unbounded count would make decoding quadratic. */
#define PF_WIRE_MAX_ATTRS 1024

/* Scratch memory for building a message to pack: every allocation is freed
 * at once, so encoders need no per-field cleanup. Zero-initialize. */
typedef struct pf_wire_arena {
  struct pf_wire_block *head;
} pf_wire_arena;

/* n * size zeroed bytes, or NULL (overflow, out of memory). */
void *pf_wire_alloc(pf_wire_arena *a, size_t n, size_t size);
void pf_wire_arena_free(pf_wire_arena *a);

/* In-memory -> message, allocated from the arena. Pointers into `s` and
 * `attrs` are kept (protobuf-c only reads them when packing), so they must
 * outlive the pack. Errors: PF_EINVAL (bad rank), PF_ENOMEM. */
int pf_wire_spec_encode(pf_wire_arena *a, const pf_spec *s,
                        Pathflow__Spec **out);
Pathflow__Sharding *pf_wire_sharding_encode(pf_wire_arena *a, pf_sharding s);
int pf_wire_attrs_encode(pf_wire_arena *a, const pf_attrs *attrs,
                         size_t *n_out, Pathflow__Attr ***out);

/* Message -> in-memory. Messages have no prefix: the caller adds one naming
 * the element (pf_diag_prefix). Errors: PF_EDECODE, PF_ENOMEM. */
int pf_wire_spec_decode(const Pathflow__Spec *m, pf_spec *out, pf_diag *diag);
int pf_wire_sharding_decode(const Pathflow__Sharding *m, pf_sharding *out,
                            pf_diag *diag);
/* Builds a new pf_attrs through the public setters; a repeated name, an
 * unset value and whatever a setter refuses are PF_EDECODE. */
int pf_wire_attrs_decode(size_t n, Pathflow__Attr *const *in, pf_attrs **out,
                         pf_diag *diag);

/* Hand-written protobuf fields, for messages written straight into their
 * buffer (plan/plan_codec.c's columns, runtime/msg_codec.c's LoadPlan): a
 * varint's length in bytes, and writing one at p (returns the byte after
 * it). A length-delimited field is its key (field << 3 |
 * PF_WIRE_LENGTH_DELIMITED), its length, its bytes. */
#define PF_WIRE_LENGTH_DELIMITED 2
static inline size_t pf_wire_varint_len(uint64_t v) {
  size_t n = 1;
  for (; v >= 0x80; v >>= 7) n++;
  return n;
}
/* Inline: the plan encoder writes tens of millions, most of one byte. */
static inline uint8_t *pf_wire_varint_put(uint8_t *p, uint64_t v) {
  for (; v >= 0x80; v >>= 7) *p++ = (uint8_t)(v | 0x80);
  *p++ = (uint8_t)v;
  return p;
}
/* Reading by hand, the other way. The wire types a field key names
 * (beside PF_WIRE_LENGTH_DELIMITED). */
#define PF_WIRE_VARINT 0
#define PF_WIRE_FIXED64 1
#define PF_WIRE_FIXED32 5
/* Reads the varint at *p (bytes before end) into *v and moves *p past it:
 * 0, or -1 when it runs to end or past ten bytes (64 bits). */
int pf_wire_varint_get(const uint8_t **p, const uint8_t *end, uint64_t *v);
/* One field of a message: its number, its wire type, where it lies (key
 * included) and, for a length-delimited one, its bytes. */
typedef struct pf_wire_field {
  uint32_t number;
  int type;
  const uint8_t *start, *end;
  const uint8_t *data;
  size_t len;
} pf_wire_field;
/* Reads the field at *p (bytes before end) into *f and moves *p past it:
 * 0, or -1 when the bytes there are no field (a key, length or value cut
 * short, a key over five bytes or 32 bits, field number 0, a group or no
 * wire type). */
int pf_wire_field_next(const uint8_t **p, const uint8_t *end, pf_wire_field *f);
/* Bytes of a length-delimited field of n bytes, key and length included. */
size_t pf_wire_field_len(int field, size_t n);
/* Writes the key and the length of such a field; returns where its bytes go. */
uint8_t *pf_wire_field_start(uint8_t *p, int field, size_t n);

/* 0 if s is at most `max` bytes (checked without reading past max + 1). */
int pf_wire_string_check(const char *s, size_t max, pf_diag *diag);

#endif
