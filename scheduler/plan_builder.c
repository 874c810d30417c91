#include "scheduler/plan_builder.h"

#include <stdlib.h>
#include <string.h>

#include "base/arena.h"
#include "base/attrs_internal.h"
#include "base/spec_set.h"
#include "base/util.h"
#include "pathflow/error.h"

#define NONE UINT32_MAX

/* A set of the plan's shared records (boxes, specs): open addressing,
 * power-of-two size, at most half full. */
typedef struct intern_set {
  void **slots;
  size_t n, cap;
  size_t (*hash)(const void *x);
  int (*same)(const void *a, const void *b);
} intern_set;

/* The slot of x in t: the equal record's, or the empty one to fill (then
 * count it in t->n). NULL when out of memory. */
static void **intern_slot(intern_set *t, const void *x) {
  size_t i;
  if ((t->n + 1) * 2 > t->cap) {
    size_t cap = t->cap ? t->cap * 2 : 16;
    void **grown = calloc(cap, sizeof *grown);
    if (grown == NULL) return NULL;
    for (size_t k = 0; k < t->cap; k++) {
      if (t->slots[k] == NULL) continue;
      for (i = t->hash(t->slots[k]) & (cap - 1); grown[i]; i = (i + 1) & (cap - 1)) {
      }
      grown[i] = t->slots[k];
    }
    free(t->slots);
    t->slots = grown;
    t->cap = cap;
  }
  for (i = t->hash(x) & (t->cap - 1); t->slots[i]; i = (i + 1) & (t->cap - 1))
    if (t->same(t->slots[i], x)) break;
  return &t->slots[i];
}

/* Who wrote each buffer, as singly linked lists in one array: most buffers
 * have one writer, and a plan of millions of buffers cannot afford an
 * allocation each. */
typedef struct write_node {
  uint32_t op, next;
} write_node;

struct pf_plan_builder {
  pf_plan *plan;
  size_t cap_buffers, cap_ops, cap_slots, cap_comms;
  size_t ready_ops, ready_buffers; /* entries prefaulted (pf_prefault) */
  uint32_t *first_write, *last_write; /* per buffer: nodes, or NONE */
  write_node *writes;
  size_t n_writes, cap_writes;
  uint32_t *deps; /* scratch */
  size_t cap_deps;
  /* Equal boxes and specs are stored once. */
  intern_set boxes;
  pf_spec_set specs;
  /* Consecutive ops mostly come from one program: its name is copied once. */
  const char *last_name, *last_kernel;
};

int pf_pb_slot(pf_plan_builder *b, int32_t output, int32_t shard, uint32_t buffer) {
  pf_plan *p = b->plan;
  if (pf_grow((void **)&p->slots, &b->cap_slots, p->n_slots + 1, sizeof *p->slots))
    return PF_ENOMEM;
  p->slots[p->n_slots].output = output;
  p->slots[p->n_slots].shard = shard;
  p->slots[p->n_slots].buffer = buffer;
  p->n_slots++;
  return 0;
}

int pf_pb_comm(pf_plan_builder *b, int32_t id, const int32_t *ranks, uint32_t n) {
  pf_plan *p = b->plan;
  int32_t *copy;
  for (uint32_t i = 0; i < p->n_comms; i++)
    if (p->comms[i].id == id) return 0;
  if (pf_grow((void **)&p->comms, &b->cap_comms, p->n_comms + 1, sizeof *p->comms))
    return PF_ENOMEM;
  if ((copy = pf_mallocn(n, sizeof *copy)) == NULL) return PF_ENOMEM;
  memcpy(copy, ranks, n * sizeof *copy);
  p->comms[p->n_comms].id = id;
  p->comms[p->n_comms].n_ranks = n;
  p->comms[p->n_comms].ranks = copy;
  p->n_comms++;
  return 0;
}

static size_t box_hash(const void *v);
static int box_same(const void *a, const void *b);

int pf_pb_create(int32_t rank, int32_t num_devices, uint64_t executable,
                 pf_plan_builder **out) {
  pf_plan_builder *b = calloc(1, sizeof *b);
  if (b == NULL || (b->plan = calloc(1, sizeof *b->plan)) == NULL ||
      (b->plan->pool = calloc(1, sizeof *b->plan->pool)) == NULL) {
    if (b) free(b->plan);
    free(b);
    return PF_ENOMEM;
  }
  b->boxes.hash = box_hash;
  b->boxes.same = box_same;
  b->plan->rank = rank;
  b->plan->num_devices = num_devices;
  b->plan->executable = executable;
  *out = b;
  return 0;
}

void pf_pb_destroy(pf_plan_builder *b) {
  if (b == NULL) return;
  free(b->first_write);
  free(b->last_write);
  free(b->writes);
  free(b->deps);
  free(b->boxes.slots);
  pf_spec_set_free(&b->specs);
  pf_plan_free(b->plan);
  free(b);
}

/* Grows an array of the plan (ops or buffers, n in use) to hold `need`,
 * doubling. It lives in the plan's pool: a large one is mapped pages of its
 * own, which cost nothing until written and go back to the system when the
 * plan is freed. A block outgrown stays in the pool until then. */
static int pool_grow(pf_plan_builder *b, void **items, size_t *cap, size_t n, size_t need,
                     size_t size, int exact) {
  size_t ncap;
  void *grown;
  if (need <= *cap) return 0;
  /* A reservation is what the plan will hold: room beyond it would be
   * memory (a huge page is backed whole once written). */
  ncap = exact ? need : (*cap ? *cap : 16);
  while (ncap < need) {
    if (ncap > SIZE_MAX / 2 / size) return PF_ENOMEM;
    ncap *= 2;
  }
  if (ncap > SIZE_MAX / size) return PF_ENOMEM;
  if ((grown = pf_arena_alloc(b->plan->pool, ncap * size)) == NULL) return PF_ENOMEM;
  if (n) memcpy(grown, *items, n * size);
  *items = grown;
  *cap = ncap;
  return 0;
}

/* Entries are written front to back: the next PREFAULT bytes of an array
 * are backed with memory in one call when the writes reach them. */
#define PREFAULT (64u << 10)
static void ready(void *items, size_t cap, size_t need, size_t size, size_t *done) {
  size_t upto;
  if (need <= *done) return;
  upto = PF_MINOF(cap, need + PREFAULT / size);
  pf_prefault((char *)items + *done * size, (upto - *done) * size);
  *done = upto;
}

/* Room for `need` buffers and their writer lists. */
static int grow_buffers(pf_plan_builder *b, size_t need, int exact) {
  pf_plan *p = b->plan;
  size_t cap = b->cap_buffers;
  uint32_t *f, *l;
  if (pool_grow(b, (void **)&p->buffers, &b->cap_buffers, p->n_buffers, need, sizeof *p->buffers,
                exact))
    return PF_ENOMEM;
  if (b->cap_buffers == cap) return 0;
  b->ready_buffers = p->n_buffers; /* moved: what was copied is backed */
  if ((f = realloc(b->first_write, b->cap_buffers * sizeof *f)) != NULL) b->first_write = f;
  if (f == NULL || (l = realloc(b->last_write, b->cap_buffers * sizeof *l)) == NULL) {
    b->cap_buffers = cap; /* the writer lists still have the old size */
    return PF_ENOMEM;
  }
  b->last_write = l;
  return 0;
}

int pf_pb_reserve(pf_plan_builder *b, size_t n_ops, size_t n_buffers) {
  pf_plan *p = b->plan;
  size_t cap = b->cap_ops;
  if (pool_grow(b, (void **)&p->ops, &b->cap_ops, p->n_ops, p->n_ops + n_ops, sizeof *p->ops, 1) ||
      grow_buffers(b, p->n_buffers + n_buffers, 1))
    return PF_ENOMEM;
  if (b->cap_ops != cap) b->ready_ops = p->n_ops;
  return 0;
}

int pf_pb_reserve_lists(pf_plan_builder *b, size_t bytes, pf_warm_range *out) {
  out->n = bytes;
  return pf_arena_reserve(b->plan->pool, bytes, &out->p);
}

void pf_pb_next_records(const pf_plan_builder *b, size_t n_ops, size_t n_buffers,
                        pf_warm_range *out) {
  const pf_plan *p = b->plan;
  n_ops = PF_MINOF(n_ops, b->cap_ops - p->n_ops);
  n_buffers = PF_MINOF(n_buffers, b->cap_buffers - p->n_buffers);
  /* (No arithmetic on a NULL array: nothing reserved, nothing to warm.) */
  out[0] = (pf_warm_range){.p = p->ops ? p->ops + p->n_ops : NULL,
                           .n = p->ops ? n_ops * sizeof *p->ops : 0};
  out[1] = (pf_warm_range){.p = p->buffers ? p->buffers + p->n_buffers : NULL,
                           .n = p->buffers ? n_buffers * sizeof *p->buffers : 0};
}

pf_plan *pf_pb_take(pf_plan_builder *b) {
  pf_plan *p = b->plan;
  b->plan = NULL;
  return p;
}

int pf_pb_buffer(pf_plan_builder *b, int32_t device, const pf_spec *spec,
                 int32_t shard, uint32_t *out) {
  pf_plan *p = b->plan;
  pf_plan_buffer *pb;
  if (grow_buffers(b, (size_t)p->n_buffers + 1, 0)) return PF_ENOMEM;
  ready(p->buffers, b->cap_buffers, (size_t)p->n_buffers + 1, sizeof *p->buffers,
        &b->ready_buffers);
  pb = &p->buffers[p->n_buffers];
  memset(pb, 0, sizeof *pb);
  pb->device = device;
  if ((pb->spec = pf_spec_set_add(&b->specs, b->plan->pool, spec)) == NULL) return PF_ENOMEM;
  pb->input = -1;
  pb->output = -1;
  pb->shard = shard;
  b->first_write[p->n_buffers] = b->last_write[p->n_buffers] = NONE;
  *out = p->n_buffers++;
  return 0;
}

pf_plan_buffer *pf_pb_buffer_at(pf_plan_builder *b, uint32_t index) {
  return &b->plan->buffers[index];
}

static size_t box_hash(const void *v) {
  const pf_box *x = v;
  uint64_t h = 1469598103934665603ull ^ (uint64_t)x->rank;
  for (int i = 0; i < x->rank; i++) {
    h = (h ^ (uint64_t)x->src_offset[i]) * 1099511628211ull;
    h = (h ^ (uint64_t)x->dst_offset[i]) * 1099511628211ull;
    h = (h ^ (uint64_t)x->extent[i]) * 1099511628211ull;
  }
  return (size_t)(h ^ (h >> 29));
}

static int box_same(const void *va, const void *vb) {
  const pf_box *a = va, *b = vb;
  if (a->rank != b->rank) return 0;
  for (int i = 0; i < a->rank; i++)
    if (a->src_offset[i] != b->src_offset[i] || a->dst_offset[i] != b->dst_offset[i] ||
        a->extent[i] != b->extent[i])
      return 0;
  return 1;
}

/* The plan's copy of box x, shared with every op that has an equal box. */
static pf_box *box_intern(pf_plan_builder *b, const pf_box *x) {
  void **slot = intern_slot(&b->boxes, x);
  pf_box *copy;
  if (slot == NULL) return NULL;
  if (*slot != NULL) return *slot;
  if ((copy = pf_arena_alloc(b->plan->pool, sizeof *copy)) == NULL) return NULL;
  memset(copy, 0, sizeof *copy);
  copy->rank = x->rank;
  for (int k = 0; k < x->rank && k < PF_MAX_RANK; k++) {
    copy->src_offset[k] = x->src_offset[k];
    copy->dst_offset[k] = x->dst_offset[k];
    copy->extent[k] = x->extent[k];
  }
  *slot = copy;
  b->boxes.n++;
  return copy;
}

/* The pool's copy of s, reusing the last copy when it is equal. */
static char *str_copy(pf_plan_builder *b, const char *s, const char **last_copy) {
  if (*last_copy == NULL || strcmp(s, *last_copy) != 0) {
    char *c = pf_arena_strdup(b->plan->pool, s);
    if (c == NULL) return NULL;
    *last_copy = c;
  }
  return (char *)*last_copy;
}

int pf_pb_op(pf_plan_builder *b, const pf_plan_op *tmpl, const uint32_t *in,
             uint32_t n_in, const uint32_t *out, uint32_t n_out,
             uint32_t *index) {
  pf_plan *p = b->plan;
  pf_plan_op *op;
  size_t n_deps = 0;
  uint32_t me = p->n_ops, *lists;
  size_t cap = b->cap_ops;
  if (pool_grow(b, (void **)&p->ops, &b->cap_ops, p->n_ops, (size_t)p->n_ops + 1, sizeof *p->ops, 0) ||
      pf_grow((void **)&b->writes, &b->cap_writes, b->n_writes + n_out, sizeof *b->writes))
    return PF_ENOMEM;
  if (b->cap_ops != cap) b->ready_ops = p->n_ops;
  ready(p->ops, b->cap_ops, (size_t)p->n_ops + 1, sizeof *p->ops, &b->ready_ops);
  for (uint32_t i = 0; i < n_in; i++)
    for (uint32_t k = b->first_write[in[i]]; k != NONE; k = b->writes[k].next) {
      uint32_t w = b->writes[k].op;
      int seen = 0;
      for (size_t j = 0; j < n_deps && !seen; j++) seen = b->deps[j] == w;
      if (seen) continue;
      if (pf_grow((void **)&b->deps, &b->cap_deps, n_deps + 1, sizeof *b->deps))
        return PF_ENOMEM;
      b->deps[n_deps++] = w;
    }
  op = &p->ops[me];
  *op = *tmpl;
  op->attrs = NULL;
  op->box = NULL;
  /* Inputs, outputs and deps in one block of the pool. */
  lists = pf_arena_alloc(p->pool, ((size_t)n_in + n_out + n_deps) * sizeof *lists);
  op->name = str_copy(b, tmpl->name ? tmpl->name : "", &b->last_name);
  op->kernel = tmpl->kernel ? str_copy(b, tmpl->kernel, &b->last_kernel) : NULL;
  if (lists == NULL || op->name == NULL || (tmpl->kernel && op->kernel == NULL) ||
      (tmpl->box && (op->box = box_intern(b, tmpl->box)) == NULL))
    return PF_ENOMEM;
  /* The graph's set itself (it never changes): shards and programs with the
   * same attributes read one copy. */
  op->attrs = pf_attrs_ref(tmpl->attrs);
  op->inputs = lists;
  op->outputs = lists + n_in;
  op->deps = lists + n_in + n_out;
  if (n_in) memcpy(op->inputs, in, n_in * sizeof *in);
  if (n_out) memcpy(op->outputs, out, n_out * sizeof *out);
  if (n_deps) memcpy(op->deps, b->deps, n_deps * sizeof *b->deps);
  op->n_in = n_in;
  op->n_out = n_out;
  op->n_deps = (uint32_t)n_deps;
  p->n_ops++;
  for (uint32_t i = 0; i < n_out; i++) {
    uint32_t k = (uint32_t)b->n_writes++;
    b->writes[k].op = me;
    b->writes[k].next = NONE;
    if (b->last_write[out[i]] == NONE)
      b->first_write[out[i]] = k;
    else
      b->writes[b->last_write[out[i]]].next = k;
    b->last_write[out[i]] = k;
  }
  if (index) *index = me;
  return 0;
}
