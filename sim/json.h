/* Internal: a small strict JSON reader for the simulator's input files.
 *
 * RFC 8259 and nothing more: no comments, no trailing commas, no NaN or
 * Infinity, no duplicate keys in an object, nesting at most
 * PF_JSON_MAX_DEPTH, at most PF_JSON_MAX_MEMBERS members in an object. Every value keeps the line it starts on, so that the
 * layers reading a file can name the line of a field that is wrong.
 * Strings keep their UTF-8 bytes; \u escapes are decoded (a NUL escape is
 * refused, so strings are C strings).
 */
#ifndef PF_SIM_JSON_H
#define PF_SIM_JSON_H

#include <stddef.h>

#include "pathflow/error.h"

#define PF_JSON_MAX_DEPTH 64
#define PF_JSON_MAX_MEMBERS 4096 /* members of one object */

typedef enum pf_json_type {
  PF_JSON_NULL,
  PF_JSON_BOOL,
  PF_JSON_NUMBER,
  PF_JSON_STRING,
  PF_JSON_ARRAY,
  PF_JSON_OBJECT
} pf_json_type;

typedef struct pf_json pf_json;

struct pf_json {
  pf_json_type type;
  int line;             /* 1-based line the value starts on */
  int boolean;          /* PF_JSON_BOOL */
  double number;        /* PF_JSON_NUMBER */
  const char *string;   /* PF_JSON_STRING: NUL-terminated */
  size_t len;           /* items of an array or members of an object */
  pf_json **items;      /* PF_JSON_ARRAY: the items; PF_JSON_OBJECT: the values */
  const char **keys;    /* PF_JSON_OBJECT: the keys, in file order */
  const int *key_lines; /* PF_JSON_OBJECT: the line of each key */
};

typedef struct pf_json_doc pf_json_doc;

/* Parses text[0..len) into *out. The document owns every value; free it
 * with pf_json_free. Errors: PF_EDECODE with a message in diag naming the
 * line and what was expected; PF_ENOMEM. */
int pf_json_parse(const char *text, size_t len, pf_json_doc **out, pf_diag *diag);

/* The document's top-level value. */
const pf_json *pf_json_root(const pf_json_doc *doc);

/* Frees a document and every value in it; NULL is ignored. */
void pf_json_free(pf_json_doc *doc);

/* The member `key` of an object, or NULL (also when obj is not an object). */
const pf_json *pf_json_get(const pf_json *obj, const char *key);

/* "null", "boolean", "number", "string", "array" or "object". */
const char *pf_json_type_name(pf_json_type t);

#endif
