#include "sim/json.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/diag.h"
#include "base/util.h"

/* Every value, string and array of a document comes from one arena of
 * blocks, freed together: a document is read once and dropped whole. */
typedef struct block {
  struct block *next;
  size_t used, cap;
  _Alignas(16) unsigned char data[];
} block;

struct pf_json_doc {
  block *blocks;
  pf_json *root;
};

typedef struct parser {
  const char *p, *end;
  int line;
  int depth;
  pf_json_doc *doc;
  pf_diag *diag;
} parser;

static void *arena_alloc(pf_json_doc *doc, size_t n) {
  block *b = doc->blocks;
  n = (n + 15) & ~(size_t)15;
  if (b == NULL || b->cap - b->used < n) {
    size_t cap = n > 16384 ? n : 16384;
    block *nb = malloc(sizeof *nb + cap);
    if (nb == NULL) return NULL;
    nb->next = b;
    nb->used = 0;
    nb->cap = cap;
    doc->blocks = nb;
    b = nb;
  }
  void *r = b->data + b->used;
  b->used += n;
  return r;
}

static int fail(parser *ps, const char *what) {
  if (ps->p >= ps->end)
    return pf_diag_error(ps->diag, PF_EDECODE, "line %d: %s, found the end of the file", ps->line, what);
  unsigned char c = (unsigned char)*ps->p;
  if (c >= 0x20 && c < 0x7f)
    return pf_diag_error(ps->diag, PF_EDECODE, "line %d: %s, found '%c'", ps->line, what, c);
  return pf_diag_error(ps->diag, PF_EDECODE, "line %d: %s, found byte 0x%02x", ps->line, what, c);
}

static int nomem(parser *ps) {
  return pf_diag_error(ps->diag, PF_ENOMEM, "line %d: out of memory reading JSON", ps->line);
}

static void skip_ws(parser *ps) {
  while (ps->p < ps->end) {
    char c = *ps->p;
    if (c == '\n') ps->line++;
    else if (c != ' ' && c != '\t' && c != '\r') return;
    ps->p++;
  }
}

static int hex4(const char *s, unsigned *out) {
  unsigned v = 0;
  for (int i = 0; i < 4; i++) {
    char c = s[i];
    v <<= 4;
    if (c >= '0' && c <= '9') v |= (unsigned)(c - '0');
    else if (c >= 'a' && c <= 'f') v |= (unsigned)(c - 'a' + 10);
    else if (c >= 'A' && c <= 'F') v |= (unsigned)(c - 'A' + 10);
    else return -1;
  }
  *out = v;
  return 0;
}

static size_t put_utf8(char *o, unsigned cp) {
  if (cp < 0x80) { o[0] = (char)cp; return 1; }
  if (cp < 0x800) { o[0] = (char)(0xc0 | (cp >> 6)); o[1] = (char)(0x80 | (cp & 0x3f)); return 2; }
  if (cp < 0x10000) {
    o[0] = (char)(0xe0 | (cp >> 12)); o[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
    o[2] = (char)(0x80 | (cp & 0x3f));
    return 3;
  }
  o[0] = (char)(0xf0 | (cp >> 18)); o[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
  o[2] = (char)(0x80 | ((cp >> 6) & 0x3f)); o[3] = (char)(0x80 | (cp & 0x3f));
  return 4;
}

/* At the opening quote. The decoded string is never longer than its source. */
static int parse_string(parser *ps, const char **out) {
  const char *s = ++ps->p;
  size_t n = 0;
  while (s + n < ps->end && s[n] != '"') {
    if (s[n] == '\\') n++;
    n++;
  }
  if (s + n >= ps->end) { ps->p = ps->end; return fail(ps, "expected the closing '\"' of a string"); }
  char *o = arena_alloc(ps->doc, n + 1), *w = o;
  if (o == NULL) return nomem(ps);
  while (*ps->p != '"') {
    unsigned char c = (unsigned char)*ps->p;
    if (c < 0x20) return fail(ps, "a control character in a string must be escaped");
    if (c != '\\') { *w++ = (char)c; ps->p++; continue; }
    ps->p++;
    switch (*ps->p) {
      case '"': *w++ = '"'; break;
      case '\\': *w++ = '\\'; break;
      case '/': *w++ = '/'; break;
      case 'b': *w++ = '\b'; break;
      case 'f': *w++ = '\f'; break;
      case 'n': *w++ = '\n'; break;
      case 'r': *w++ = '\r'; break;
      case 't': *w++ = '\t'; break;
      case 'u': {
        unsigned cp, lo;
        if (ps->end - ps->p < 5 || hex4(ps->p + 1, &cp) != 0) return fail(ps, "expected 4 hex digits after \\u");
        ps->p += 4;
        if (cp >= 0xd800 && cp < 0xdc00) {
          if (ps->end - ps->p < 7 || ps->p[1] != '\\' || ps->p[2] != 'u' || hex4(ps->p + 3, &lo) != 0 ||
              lo < 0xdc00 || lo >= 0xe000)
            return fail(ps, "expected a low surrogate \\uDC00..\\uDFFF after a high one");
          ps->p += 6;
          cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
        } else if (cp >= 0xdc00 && cp < 0xe000) {
          return fail(ps, "a lone low surrogate in a \\u escape");
        } else if (cp == 0) {
          return fail(ps, "\\u0000 is not allowed in a string");
        }
        w += put_utf8(w, cp);
        break;
      }
      default:
        return fail(ps, "expected one of \\\" \\\\ \\/ \\b \\f \\n \\r \\t \\u after a backslash");
    }
    ps->p++;
  }
  ps->p++;
  *w = '\0';
  *out = o;
  return 0;
}

static int parse_number(parser *ps, double *out) {
  const char *s = ps->p, *q = s;
  if (q < ps->end && *q == '-') q++;
  if (q < ps->end && *q == '0') q++;
  else if (q < ps->end && *q >= '1' && *q <= '9') while (q < ps->end && *q >= '0' && *q <= '9') q++;
  else { ps->p = q; return fail(ps, "expected a digit in a number"); }
  if (q < ps->end && *q == '.') {
    q++;
    if (q >= ps->end || *q < '0' || *q > '9') { ps->p = q; return fail(ps, "expected a digit after '.'"); }
    while (q < ps->end && *q >= '0' && *q <= '9') q++;
  }
  if (q < ps->end && (*q == 'e' || *q == 'E')) {
    q++;
    if (q < ps->end && (*q == '+' || *q == '-')) q++;
    if (q >= ps->end || *q < '0' || *q > '9') { ps->p = q; return fail(ps, "expected a digit in an exponent"); }
    while (q < ps->end && *q >= '0' && *q <= '9') q++;
  }
  char buf[128];
  size_t n = (size_t)(q - s);
  if (n >= sizeof buf) return fail(ps, "a number of at most 127 characters");
  memcpy(buf, s, n);
  buf[n] = '\0';
  errno = 0;
  *out = strtod(buf, NULL);
  if (errno == ERANGE && (*out > 1.0 || *out < -1.0))
    return pf_diag_error(ps->diag, PF_EDECODE, "line %d: the number %s is out of range", ps->line, buf);
  ps->p = q;
  return 0;
}

static int parse_value(parser *ps, pf_json **out);

static int literal(parser *ps, const char *word) {
  size_t n = strlen(word);
  if ((size_t)(ps->end - ps->p) < n || memcmp(ps->p, word, n) != 0) return fail(ps, "expected a JSON value");
  ps->p += n;
  return 0;
}

/* Grows a temporary (malloc'd) array of pointers; copied into the arena when
 * the container is closed. */
typedef struct vec {
  void **items;
  size_t n, cap;
} vec;

static int vec_push(vec *v, void *x) {
  if (v->n == v->cap && pf_grow((void **)&v->items, &v->cap, v->n + 1, sizeof *v->items) != 0) return -1;
  v->items[v->n++] = x;
  return 0;
}

static int parse_container(parser *ps, pf_json *v, int object) {
  vec items = {0}, keys = {0};
  int *lines = NULL;
  size_t lines_cap = 0;
  int rc = 0;
  char close = object ? '}' : ']';
  if (++ps->depth > PF_JSON_MAX_DEPTH)
    return pf_diag_error(ps->diag, PF_EDECODE, "line %d: nested deeper than %d", ps->line, PF_JSON_MAX_DEPTH);
  ps->p++;
  skip_ws(ps);
  if (ps->p < ps->end && *ps->p == close) {
    ps->p++;
    goto done;
  }
  for (;;) {
    pf_json *item = NULL;
    skip_ws(ps);
    if (object) {
      const char *key;
      int kline = ps->line;
      if (ps->p >= ps->end || *ps->p != '"') { rc = fail(ps, "expected a key in quotes"); goto out; }
      if ((rc = parse_string(ps, &key)) != 0) goto out;
      /* Keys are compared pairwise: cap them so a hostile object cannot
       * make that quadratic cost a hang. */
      if (keys.n >= PF_JSON_MAX_MEMBERS) {
        rc = pf_diag_error(ps->diag, PF_EDECODE, "line %d: more than %d members in one object", kline,
                           PF_JSON_MAX_MEMBERS);
        goto out;
      }
      for (size_t i = 0; i < keys.n; i++)
        if (strcmp(keys.items[i], key) == 0) {
          rc = pf_diag_error(ps->diag, PF_EDECODE, "line %d: \"%s\" appears twice in one object (first on line %d)",
                             kline, key, lines[i]);
          goto out;
        }
      if (vec_push(&keys, (void *)key) != 0 ||
          (keys.n > lines_cap && pf_grow((void **)&lines, &lines_cap, keys.n, sizeof *lines) != 0)) {
        rc = nomem(ps);
        goto out;
      }
      lines[keys.n - 1] = kline;
      skip_ws(ps);
      if (ps->p >= ps->end || *ps->p != ':') { rc = fail(ps, "expected ':' after a key"); goto out; }
      ps->p++;
    }
    if ((rc = parse_value(ps, &item)) != 0) goto out;
    if (vec_push(&items, item) != 0) { rc = nomem(ps); goto out; }
    skip_ws(ps);
    if (ps->p < ps->end && *ps->p == ',') { ps->p++; continue; }
    if (ps->p < ps->end && *ps->p == close) { ps->p++; break; }
    rc = fail(ps, object ? "expected ',' or '}'" : "expected ',' or ']'");
    goto out;
  }
done:
  v->len = items.n;
  if (items.n > 0) {
    v->items = arena_alloc(ps->doc, items.n * sizeof *v->items);
    if (v->items == NULL) { rc = nomem(ps); goto out; }
    memcpy(v->items, items.items, items.n * sizeof *v->items);
    if (object) {
      int *kl = arena_alloc(ps->doc, keys.n * sizeof *kl);
      v->keys = arena_alloc(ps->doc, keys.n * sizeof *v->keys);
      if (kl == NULL || v->keys == NULL) { rc = nomem(ps); goto out; }
      memcpy((void *)v->keys, keys.items, keys.n * sizeof *v->keys);
      memcpy(kl, lines, keys.n * sizeof *kl);
      v->key_lines = kl;
    }
  }
  ps->depth--;
out:
  free(items.items);
  free(keys.items);
  free(lines);
  return rc;
}

static int parse_value(parser *ps, pf_json **out) {
  pf_json *v;
  int rc = 0;
  skip_ws(ps);
  if (ps->p >= ps->end) return fail(ps, "expected a JSON value");
  if ((v = arena_alloc(ps->doc, sizeof *v)) == NULL) return nomem(ps);
  memset(v, 0, sizeof *v);
  v->line = ps->line;
  switch (*ps->p) {
    case '{': v->type = PF_JSON_OBJECT; rc = parse_container(ps, v, 1); break;
    case '[': v->type = PF_JSON_ARRAY; rc = parse_container(ps, v, 0); break;
    case '"': v->type = PF_JSON_STRING; rc = parse_string(ps, &v->string); break;
    case 't': v->type = PF_JSON_BOOL; v->boolean = 1; rc = literal(ps, "true"); break;
    case 'f': v->type = PF_JSON_BOOL; rc = literal(ps, "false"); break;
    case 'n': v->type = PF_JSON_NULL; rc = literal(ps, "null"); break;
    default:
      if (*ps->p != '-' && (*ps->p < '0' || *ps->p > '9')) return fail(ps, "expected a JSON value");
      v->type = PF_JSON_NUMBER;
      rc = parse_number(ps, &v->number);
  }
  if (rc == 0) *out = v;
  return rc;
}

int pf_json_parse(const char *text, size_t len, pf_json_doc **out, pf_diag *diag) {
  parser ps = {.p = text, .end = text + len, .line = 1, .diag = diag};
  pf_json_doc *doc = calloc(1, sizeof *doc);
  int rc;
  if (doc == NULL) return pf_diag_error(diag, PF_ENOMEM, "out of memory reading JSON");
  ps.doc = doc;
  if ((rc = parse_value(&ps, &doc->root)) == 0) {
    skip_ws(&ps);
    if (ps.p < ps.end) rc = fail(&ps, "expected the end of the file after the top-level value");
  }
  if (rc != 0) {
    pf_json_free(doc);
    return rc;
  }
  *out = doc;
  return 0;
}

const pf_json *pf_json_root(const pf_json_doc *doc) { return doc->root; }

void pf_json_free(pf_json_doc *doc) {
  if (doc == NULL) return;
  for (block *b = doc->blocks, *n; b; b = n) {
    n = b->next;
    free(b);
  }
  free(doc);
}

const pf_json *pf_json_get(const pf_json *obj, const char *key) {
  if (obj == NULL || obj->type != PF_JSON_OBJECT) return NULL;
  for (size_t i = 0; i < obj->len; i++)
    if (strcmp(obj->keys[i], key) == 0) return obj->items[i];
  return NULL;
}

const char *pf_json_type_name(pf_json_type t) {
  static const char *const names[] = {"null", "boolean", "number", "string", "array", "object"};
  return (unsigned)t < PF_ARRAY_LEN(names) ? names[t] : "?";
}
