/* Chakra execution traces: decoding with every check, encoding. */
#include "sim/chakra.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/file.h"
#include "base/util.h"
#include "proto/chakra.pb-c.h"

/* No trace pathflow reads has more nodes; a length field claiming more
 * than the file holds is caught before this. */
#define MAX_NODES (1u << 26)

void pf_chakra_free(pf_chakra_trace *t) {
  if (t == NULL) return;
  for (uint32_t i = 0; i < t->n_nodes; i++) {
    pf_chakra_node *n = &t->nodes[i];
    free(n->name);
    free(n->kernel);
    free(n->data_deps);
    free(n->ctrl_deps);
    free(n->group);
  }
  free(t->nodes);
  free(t->version);
  free(t);
}

/* ---- reading ------------------------------------------------------------------------------ */

/* Reads a varint at *pos. 0, or -1 when it runs past the end or past 10
 * bytes. */
static int read_varint(const uint8_t *buf, size_t len, size_t *pos, uint64_t *out) {
  uint64_t v = 0;
  for (int shift = 0; shift < 70; shift += 7) {
    uint8_t b;
    if (*pos >= len) return -1;
    b = buf[(*pos)++];
    if (shift == 63 && (b & 0x7e)) return -1; /* more than 64 bits */
    v |= (uint64_t)(b & 0x7f) << shift;
    if (!(b & 0x80)) {
      *out = v;
      return 0;
    }
  }
  return -1;
}

/* The next length-delimited message: *msg, *msg_len. */
static int next_message(const uint8_t *buf, size_t len, size_t *pos, const uint8_t **msg,
                        size_t *msg_len, const char *what, pf_diag *d) {
  size_t at = *pos;
  uint64_t n;
  if (read_varint(buf, len, pos, &n) != 0)
    return pf_diag_error(d, PF_EDECODE, "%s: truncated length varint at byte %zu", what, at);
  if (n > len - *pos)
    return pf_diag_error(d, PF_EDECODE,
                         "%s: the message at byte %zu claims %" PRIu64 " bytes, %zu are left",
                         what, at, n, len - *pos);
  *msg = buf + *pos;
  *msg_len = (size_t)n;
  *pos += (size_t)n;
  return 0;
}

/* An attribute's value as a signed 64-bit integer, whatever its integer
 * kind. Returns 0, or -1 when it is not an integer (or does not fit). */
static int attr_int(const Chakra__Attribute *a, int64_t *out) {
  switch (a->value_case) {
    case CHAKRA__ATTRIBUTE__VALUE_INT32_VAL: *out = a->int32_val; return 0;
    case CHAKRA__ATTRIBUTE__VALUE_INT64_VAL: *out = a->int64_val; return 0;
    case CHAKRA__ATTRIBUTE__VALUE_UINT32_VAL: *out = a->uint32_val; return 0;
    case CHAKRA__ATTRIBUTE__VALUE_UINT64_VAL:
      if (a->uint64_val > INT64_MAX) return -1;
      *out = (int64_t)a->uint64_val;
      return 0;
    case CHAKRA__ATTRIBUTE__VALUE_SINT32_VAL: *out = a->sint32_val; return 0;
    case CHAKRA__ATTRIBUTE__VALUE_SINT64_VAL: *out = a->sint64_val; return 0;
    case CHAKRA__ATTRIBUTE__VALUE_FIXED32_VAL: *out = a->fixed32_val; return 0;
    case CHAKRA__ATTRIBUTE__VALUE_FIXED64_VAL:
      if (a->fixed64_val > INT64_MAX) return -1;
      *out = (int64_t)a->fixed64_val;
      return 0;
    case CHAKRA__ATTRIBUTE__VALUE_SFIXED32_VAL: *out = a->sfixed32_val; return 0;
    case CHAKRA__ATTRIBUTE__VALUE_SFIXED64_VAL: *out = a->sfixed64_val; return 0;
    case CHAKRA__ATTRIBUTE__VALUE_BOOL_VAL: *out = a->bool_val; return 0;
    default: return -1;
  }
}

/* Names a node in messages: `id 7 ("matmul_3")`. */
#define NODE_FMT "%s: node id %" PRIu64 " (\"%s\")"
#define NODE_ARGS(what, n) what, (n)->id, (n)->name

static int take_attr(pf_chakra_node *n, const Chakra__Attribute *a, const char *what,
                     pf_diag *d) {
  static const char *const ints[] = {"comm_size", "comm_src", "comm_dst", "comm_tag",
                                     "comm_type", "num_ops",  "tensor_size", "is_cpu_op"};
  int64_t v;
  const char *name = a->name ? a->name : "";
  if (strcmp(name, "pf_kernel") == 0) {
    if (a->value_case != CHAKRA__ATTRIBUTE__VALUE_STRING_VAL || a->string_val == NULL ||
        strlen(a->string_val) > PF_CHAKRA_KERNEL_MAX)
      return pf_diag_error(d, PF_EDECODE,
                           NODE_FMT ": attribute pf_kernel is not a string of at most %d bytes",
                           NODE_ARGS(what, n), PF_CHAKRA_KERNEL_MAX);
    free(n->kernel);
    if ((n->kernel = pf_strdup(a->string_val)) == NULL)
      return pf_diag_error(d, PF_ENOMEM, "%s: out of memory", what);
    return 0;
  }
  if (strcmp(name, "pf_comm_group") == 0) {
    if (a->value_case != CHAKRA__ATTRIBUTE__VALUE_UINT64_LIST || a->uint64_list == NULL)
      return pf_diag_error(d, PF_EDECODE, NODE_FMT ": attribute pf_comm_group is not a uint64 list",
                           NODE_ARGS(what, n));
    if (a->uint64_list->n_values > (1u << 24))
      return pf_diag_error(d, PF_EDECODE, NODE_FMT ": pf_comm_group of %zu devices",
                           NODE_ARGS(what, n), a->uint64_list->n_values);
    free(n->group);
    n->group = pf_mallocn(a->uint64_list->n_values ? a->uint64_list->n_values : 1,
                          sizeof *n->group);
    if (n->group == NULL) return pf_diag_error(d, PF_ENOMEM, "%s: out of memory", what);
    n->n_group = (uint32_t)a->uint64_list->n_values;
    for (uint32_t i = 0; i < n->n_group; i++) {
      if (a->uint64_list->values[i] > INT32_MAX)
        return pf_diag_error(d, PF_EDECODE, NODE_FMT ": pf_comm_group device %" PRIu64,
                             NODE_ARGS(what, n), a->uint64_list->values[i]);
      n->group[i] = (int64_t)a->uint64_list->values[i];
    }
    return 0;
  }
  for (size_t k = 0; k < sizeof ints / sizeof ints[0]; k++) {
    if (strcmp(name, ints[k]) != 0) continue;
    if (attr_int(a, &v) != 0)
      return pf_diag_error(d, PF_EDECODE, NODE_FMT ": attribute %s is not an integer",
                           NODE_ARGS(what, n), name);
    if (v < 0 && k != 3 /* a tag may be anything */)
      return pf_diag_error(d, PF_EDECODE, NODE_FMT ": attribute %s is negative (%" PRId64 ")",
                           NODE_ARGS(what, n), name, v);
    switch (k) {
      case 0: n->comm_size = (uint64_t)v; break;
      case 1: n->comm_src = v; break;
      case 2: n->comm_dst = v; break;
      case 3: n->comm_tag = v; break;
      case 4:
        if (v >= PF_CHAKRA_COMM_TYPE_COUNT)
          return pf_diag_error(d, PF_EDECODE, NODE_FMT ": unknown comm_type %" PRId64,
                               NODE_ARGS(what, n), v);
        n->comm_type = (int32_t)v;
        break;
      case 5: n->num_ops = (uint64_t)v; break;
      case 6: n->tensor_size = (uint64_t)v; break;
      default: n->is_cpu_op = v != 0; break;
    }
    return 0;
  }
  return 0; /* an attribute the simulator does not use */
}

static int copy_ids(const uint64_t *src, size_t n, uint64_t **dst, uint32_t *count) {
  *count = (uint32_t)n;
  *dst = NULL;
  if (n == 0) return 0;
  if ((*dst = pf_mallocn(n, sizeof **dst)) == NULL) return PF_ENOMEM;
  memcpy(*dst, src, n * sizeof **dst);
  return 0;
}

static int take_node(pf_chakra_node *n, const Chakra__Node *m, const char *what, pf_diag *d) {
  int rc;
  n->id = m->id;
  n->name = pf_strdup(m->name ? m->name : "");
  n->comm_src = n->comm_dst = -1;
  n->comm_tag = 0;
  n->comm_type = -1;
  n->is_cpu_op = -1;
  if (n->name == NULL) return pf_diag_error(d, PF_ENOMEM, "%s: out of memory", what);
  n->type = (int32_t)m->type;
  if (n->type < PF_CHAKRA_MEM_LOAD || n->type > PF_CHAKRA_COLL)
    return pf_diag_error(d, PF_EDECODE, NODE_FMT ": unknown node type %d", NODE_ARGS(what, n),
                         (int)n->type);
  n->duration_us = m->duration_micros;
  if (copy_ids(m->data_deps, m->n_data_deps, &n->data_deps, &n->n_data_deps) ||
      copy_ids(m->ctrl_deps, m->n_ctrl_deps, &n->ctrl_deps, &n->n_ctrl_deps))
    return pf_diag_error(d, PF_ENOMEM, "%s: out of memory", what);
  for (size_t i = 0; i < m->n_attr; i++)
    if ((rc = take_attr(n, m->attr[i], what, d)) != 0) return rc;
  /* What each kind of node cannot be simulated without. */
  if (n->type == PF_CHAKRA_SEND && n->comm_dst < 0)
    return pf_diag_error(d, PF_EDECODE, NODE_FMT ": a send without comm_dst", NODE_ARGS(what, n));
  if (n->type == PF_CHAKRA_RECV && n->comm_src < 0)
    return pf_diag_error(d, PF_EDECODE, NODE_FMT ": a receive without comm_src",
                         NODE_ARGS(what, n));
  if (n->type == PF_CHAKRA_COLL && n->comm_type < 0)
    return pf_diag_error(d, PF_EDECODE, NODE_FMT ": a collective without comm_type",
                         NODE_ARGS(what, n));
  return 0;
}

/* Open addressing from node id to index; ids are arbitrary 64-bit values. */
typedef struct id_index {
  uint64_t *ids;
  uint32_t *at; /* index + 1; 0: empty */
  size_t mask;
} id_index;

static size_t id_hash(uint64_t id) {
  id ^= id >> 33;
  id *= 0xff51afd7ed558ccdull;
  id ^= id >> 33;
  return (size_t)id;
}

static int index_build(id_index *x, const pf_chakra_trace *t, const char *what, pf_diag *d) {
  size_t cap = 16;
  while (cap < 2 * (size_t)t->n_nodes) cap *= 2;
  x->ids = pf_calloc(cap, sizeof *x->ids);
  x->at = pf_calloc(cap, sizeof *x->at);
  x->mask = cap - 1;
  if (x->ids == NULL || x->at == NULL) return pf_diag_error(d, PF_ENOMEM, "%s: out of memory", what);
  for (uint32_t i = 0; i < t->n_nodes; i++) {
    size_t h = id_hash(t->nodes[i].id) & x->mask;
    while (x->at[h] != 0) {
      if (x->ids[h] == t->nodes[i].id)
        return pf_diag_error(d, PF_EDECODE, NODE_FMT ": id used by another node too",
                             NODE_ARGS(what, &t->nodes[i]));
      h = (h + 1) & x->mask;
    }
    x->ids[h] = t->nodes[i].id;
    x->at[h] = i + 1;
  }
  return 0;
}

/* The index of node `id`, or -1. */
static int64_t index_find(const id_index *x, uint64_t id) {
  for (size_t h = id_hash(id) & x->mask; x->at[h] != 0; h = (h + 1) & x->mask)
    if (x->ids[h] == id) return (int64_t)x->at[h] - 1;
  return -1;
}

/* Every dependency names a node of the trace, and they form no cycle
 * (Kahn's algorithm; a node left over lies on a cycle or after one, and
 * following its unfinished dependencies from it reaches the cycle). */
static int check_deps(const pf_chakra_trace *t, const char *what, pf_diag *d) {
  id_index x = {0};
  uint32_t *indeg = NULL, *first = NULL, *succ = NULL, *queue = NULL, done = 0, head = 0;
  size_t n_edges = 0;
  int rc;
  if ((rc = index_build(&x, t, what, d)) != 0) goto out;
  for (uint32_t i = 0; i < t->n_nodes; i++)
    n_edges += (size_t)t->nodes[i].n_data_deps + t->nodes[i].n_ctrl_deps;
  indeg = pf_calloc((size_t)t->n_nodes + 1, sizeof *indeg);
  first = pf_calloc((size_t)t->n_nodes + 2, sizeof *first);
  succ = pf_mallocn(n_edges + 1, sizeof *succ);
  queue = pf_mallocn((size_t)t->n_nodes + 1, sizeof *queue);
  if (!indeg || !first || !succ || !queue) {
    rc = pf_diag_error(d, PF_ENOMEM, "%s: out of memory", what);
    goto out;
  }
  /* Edges dep -> node, grouped by dep (counting sort). */
  for (int pass = 0; pass < 2; pass++) {
    for (uint32_t i = 0; i < t->n_nodes; i++) {
      const pf_chakra_node *n = &t->nodes[i];
      for (uint32_t k = 0; k < n->n_data_deps + n->n_ctrl_deps; k++) {
        uint64_t dep = k < n->n_data_deps ? n->data_deps[k] : n->ctrl_deps[k - n->n_data_deps];
        int64_t j = index_find(&x, dep);
        if (j < 0) {
          rc = pf_diag_error(d, PF_EDECODE, NODE_FMT ": depends on node id %" PRIu64
                                            ", which the trace does not have",
                             NODE_ARGS(what, n), dep);
          goto out;
        }
        if (pass == 0) {
          first[j + 1]++;
          indeg[i]++;
        } else {
          succ[first[j]++] = i;
        }
      }
    }
    if (pass == 0)
      for (uint32_t i = 0; i < t->n_nodes; i++) first[i + 1] += first[i];
    else /* first[] moved one group on: shift back */
      for (uint32_t i = t->n_nodes; i > 0; i--) first[i] = first[i - 1];
    if (pass == 1) first[0] = 0;
  }
  for (uint32_t i = 0; i < t->n_nodes; i++)
    if (indeg[i] == 0) queue[done++] = i;
  while (head < done) {
    uint32_t i = queue[head++];
    for (uint32_t e = first[i]; e < first[i + 1]; e++)
      if (--indeg[succ[e]] == 0) queue[done++] = succ[e];
  }
  if (done < t->n_nodes) {
    /* Walk back along unfinished dependencies until a node repeats. */
    uint32_t at = 0, steps = 0;
    while (indeg[at] == 0) at++;
    for (steps = 0; steps <= t->n_nodes; steps++) {
      const pf_chakra_node *n = &t->nodes[at];
      for (uint32_t k = 0; k < n->n_data_deps + n->n_ctrl_deps; k++) {
        uint64_t dep = k < n->n_data_deps ? n->data_deps[k] : n->ctrl_deps[k - n->n_data_deps];
        uint32_t j = (uint32_t)index_find(&x, dep);
        if (indeg[j] != 0) {
          at = j;
          break;
        }
      }
    }
    rc = pf_diag_error(d, PF_ECYCLE, NODE_FMT ": on a dependency cycle",
                       NODE_ARGS(what, &t->nodes[at]));
    goto out;
  }
  rc = 0;
out:
  free(x.ids);
  free(x.at);
  free(indeg);
  free(first);
  free(succ);
  free(queue);
  return rc;
}

int pf_chakra_decode(const uint8_t *buf, size_t len, const char *what, pf_chakra_trace **out,
                     pf_diag *d) {
  pf_chakra_trace *t;
  Chakra__GlobalMetadata *meta;
  const uint8_t *msg;
  size_t pos = 0, msg_len, cap = 0;
  int rc;
  if (what == NULL) what = "trace";
  *out = NULL;
  if (len == 0) return pf_diag_error(d, PF_EDECODE, "%s: empty (no GlobalMetadata)", what);
  if ((t = pf_calloc(1, sizeof *t)) == NULL)
    return pf_diag_error(d, PF_ENOMEM, "%s: out of memory", what);
  if ((rc = next_message(buf, len, &pos, &msg, &msg_len, what, d)) != 0) goto fail;
  if ((meta = chakra__global_metadata__unpack(NULL, msg_len, msg)) == NULL) {
    rc = pf_diag_error(d, PF_EDECODE, "%s: the first message is not a GlobalMetadata", what);
    goto fail;
  }
  t->version = pf_strdup(meta->version ? meta->version : "");
  chakra__global_metadata__free_unpacked(meta, NULL);
  if (t->version == NULL) {
    rc = pf_diag_error(d, PF_ENOMEM, "%s: out of memory", what);
    goto fail;
  }
  while (pos < len) {
    size_t at = pos;
    Chakra__Node *m;
    if ((rc = next_message(buf, len, &pos, &msg, &msg_len, what, d)) != 0) goto fail;
    if (t->n_nodes == MAX_NODES) {
      rc = pf_diag_error(d, PF_EDECODE, "%s: more than %u nodes", what, MAX_NODES);
      goto fail;
    }
    if ((m = chakra__node__unpack(NULL, msg_len, msg)) == NULL) {
      rc = pf_diag_error(d, PF_EDECODE, "%s: the message at byte %zu (node %u) is not a Node",
                         what, at, t->n_nodes);
      goto fail;
    }
    if (pf_grow((void **)&t->nodes, &cap, (size_t)t->n_nodes + 1, sizeof *t->nodes) != 0) {
      chakra__node__free_unpacked(m, NULL);
      rc = pf_diag_error(d, PF_ENOMEM, "%s: out of memory", what);
      goto fail;
    }
    memset(&t->nodes[t->n_nodes], 0, sizeof *t->nodes);
    rc = take_node(&t->nodes[t->n_nodes++], m, what, d);
    chakra__node__free_unpacked(m, NULL);
    if (rc != 0) goto fail;
  }
  if ((rc = check_deps(t, what, d)) != 0) goto fail;
  *out = t;
  return 0;
fail:
  pf_chakra_free(t);
  return rc;
}

int pf_chakra_read(const char *path, pf_chakra_trace **out, pf_diag *d) {
  uint8_t *buf;
  size_t len;
  int rc = pf_file_read(path, &buf, &len, d);
  if (rc != 0) return rc;
  rc = pf_chakra_decode(buf, len, path, out, d);
  free(buf);
  return rc;
}

/* ---- writing ------------------------------------------------------------------------------ */

typedef struct sink {
  uint8_t *buf;
  size_t len, cap;
  int failed;
} sink;

static void sink_put(sink *s, const void *p, size_t n) {
  if (s->failed) return;
  if (pf_grow((void **)&s->buf, &s->cap, s->len + n, 1) != 0) {
    s->failed = 1;
    return;
  }
  memcpy(s->buf + s->len, p, n);
  s->len += n;
}

/* Appends a message preceded by its length as a varint. */
static void sink_message(sink *s, const ProtobufCMessage *m) {
  size_t n = protobuf_c_message_get_packed_size(m);
  uint8_t varint[10];
  int k = 0;
  uint64_t v = n;
  do {
    varint[k++] = (uint8_t)((v & 0x7f) | (v > 0x7f ? 0x80 : 0));
    v >>= 7;
  } while (v);
  sink_put(s, varint, (size_t)k);
  if (s->failed || pf_grow((void **)&s->buf, &s->cap, s->len + n, 1) != 0) {
    s->failed = 1;
    return;
  }
  s->len += protobuf_c_message_pack(m, s->buf + s->len);
}

static void int_attr(Chakra__Attribute *a, const char *name, int64_t v) {
  chakra__attribute__init(a);
  a->name = (char *)name;
  a->value_case = CHAKRA__ATTRIBUTE__VALUE_INT64_VAL;
  a->int64_val = v;
}

int pf_chakra_encode(const pf_chakra_trace *t, uint8_t **buf, size_t *len) {
  sink s = {0};
  Chakra__GlobalMetadata meta = CHAKRA__GLOBAL_METADATA__INIT;
  meta.version = t->version ? t->version : (char *)"pathflow";
  sink_message(&s, &meta.base);
  for (uint32_t i = 0; i < t->n_nodes && !s.failed; i++) {
    const pf_chakra_node *n = &t->nodes[i];
    Chakra__Node m = CHAKRA__NODE__INIT;
    Chakra__Attribute attrs[11], *ap[11];
    Chakra__Uint64List group = CHAKRA__UINT64_LIST__INIT;
    uint64_t *gv = NULL;
    size_t na = 0;
    m.id = n->id;
    m.name = n->name ? n->name : (char *)"";
    m.type = (Chakra__NodeType)n->type;
    m.n_data_deps = n->n_data_deps;
    m.data_deps = n->data_deps;
    m.n_ctrl_deps = n->n_ctrl_deps;
    m.ctrl_deps = n->ctrl_deps;
    m.duration_micros = n->duration_us;
    if (n->is_cpu_op >= 0) {
      chakra__attribute__init(&attrs[na]);
      attrs[na].name = (char *)"is_cpu_op";
      attrs[na].value_case = CHAKRA__ATTRIBUTE__VALUE_BOOL_VAL;
      attrs[na++].bool_val = n->is_cpu_op != 0;
    }
    /* Every attribute the node has, whatever its type, so that a trace
     * read and written again says the same. */
    if (n->type == PF_CHAKRA_COMP || n->num_ops) int_attr(&attrs[na++], "num_ops", (int64_t)n->num_ops);
    if (n->type == PF_CHAKRA_COMP || n->tensor_size)
      int_attr(&attrs[na++], "tensor_size", (int64_t)n->tensor_size);
    if (n->type >= PF_CHAKRA_SEND || n->comm_size)
      int_attr(&attrs[na++], "comm_size", (int64_t)n->comm_size);
    if (n->type == PF_CHAKRA_SEND || n->type == PF_CHAKRA_RECV || n->comm_tag)
      int_attr(&attrs[na++], "comm_tag", n->comm_tag);
    if (n->comm_src >= 0) int_attr(&attrs[na++], "comm_src", n->comm_src);
    if (n->comm_dst >= 0) int_attr(&attrs[na++], "comm_dst", n->comm_dst);
    if (n->comm_type >= 0) int_attr(&attrs[na++], "comm_type", n->comm_type);
    if (n->kernel != NULL) {
      chakra__attribute__init(&attrs[na]);
      attrs[na].name = (char *)"pf_kernel";
      attrs[na].value_case = CHAKRA__ATTRIBUTE__VALUE_STRING_VAL;
      attrs[na++].string_val = n->kernel;
    }
    if (n->group != NULL) {
      if ((gv = pf_mallocn(n->n_group ? n->n_group : 1, sizeof *gv)) == NULL) {
        s.failed = 1;
        break;
      }
      for (uint32_t k = 0; k < n->n_group; k++) gv[k] = (uint64_t)n->group[k];
      group.n_values = n->n_group;
      group.values = gv;
      chakra__attribute__init(&attrs[na]);
      attrs[na].name = (char *)"pf_comm_group";
      attrs[na].value_case = CHAKRA__ATTRIBUTE__VALUE_UINT64_LIST;
      attrs[na++].uint64_list = &group;
    }
    for (size_t k = 0; k < na; k++) ap[k] = &attrs[k];
    m.n_attr = na;
    m.attr = ap;
    sink_message(&s, &m.base);
    free(gv);
  }
  if (s.failed) {
    free(s.buf);
    return PF_ENOMEM;
  }
  *buf = s.buf;
  *len = s.len;
  return 0;
}

int pf_chakra_write(const char *path, const pf_chakra_trace *t, pf_diag *d) {
  uint8_t *buf;
  size_t len;
  int rc = pf_chakra_encode(t, &buf, &len);
  if (rc != 0) return pf_diag_error(d, rc, "%s: out of memory", path);
  rc = pf_file_write_atomic(path, (const void *[]){buf}, &len, 1, d);
  free(buf);
  return rc;
}
