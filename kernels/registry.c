#include "kernels/registry.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "base/util.h"
#include "pathflow/error.h"

/* Kernels live in fixed chunks so that pointers handed out stay valid while
 * the registry grows. */
#define CHUNK 64

typedef struct chunk {
  pf_kernel items[CHUNK];
  struct chunk *next;
} chunk;

struct pf_registry {
  pthread_mutex_t lock;
  chunk *head;
  size_t n;
  /* Kernels by (name, kind): open addressing, a power of two, at most half
   * full. Every program of a graph is looked up by its kernel's name (a
   * million of them in a large graph), among some seventy built-ins. */
  pf_kernel **index;
  size_t index_cap;
};

int pf_registry_create(pf_registry **out) {
  pf_registry *r = calloc(1, sizeof *r);
  if (r == NULL) return PF_ENOMEM;
  pthread_mutex_init(&r->lock, NULL);
  *out = r;
  return 0;
}

void pf_registry_destroy(pf_registry *r) {
  chunk *c, *next;
  if (r == NULL) return;
  for (c = r->head; c; c = next) {
    next = c->next;
    free(c);
  }
  free(r->index);
  pthread_mutex_destroy(&r->lock);
  free(r);
}

int pf_kernel_name_valid(const char *name) {
  size_t n;
  if (name == NULL) return 0;
  n = strlen(name);
  if (n == 0 || n > PF_KERNEL_NAME_MAX) return 0;
  for (size_t i = 0; i < n; i++) {
    char c = name[i];
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
          (c >= '0' && c <= '9') || c == '_' || c == '.' || c == ':' ||
          c == '-'))
      return 0;
  }
  return 1;
}

static size_t index_hash(const char *name, pf_device_kind kind) {
  return (size_t)(pf_str_hash(name) ^ ((uint64_t)kind * 0x9e3779b97f4a7c15ull));
}

/* The index slot of (name, kind): the kernel's, or the empty one where it
 * would go. index_cap > 0. */
static pf_kernel **index_slot(pf_kernel **index, size_t cap, const char *name,
                              pf_device_kind kind) {
  size_t i = index_hash(name, kind) & (cap - 1);
  for (; index[i]; i = (i + 1) & (cap - 1))
    if (index[i]->def.kind == kind && strcmp(index[i]->name, name) == 0) break;
  return &index[i];
}

static pf_kernel *find_locked(pf_registry *r, const char *name,
                              pf_device_kind kind) {
  return r->index_cap ? *index_slot(r->index, r->index_cap, name, kind) : NULL;
}

/* Room in the index for one more kernel. Returns 0 or PF_ENOMEM. */
static int index_grow(pf_registry *r) {
  size_t cap = r->index_cap ? r->index_cap * 2 : 128, i = 0;
  pf_kernel **grown;
  if ((r->n + 1) * 2 <= r->index_cap) return 0;
  if ((grown = calloc(cap, sizeof *grown)) == NULL) return PF_ENOMEM;
  for (chunk *c = r->head; c; c = c->next)
    for (size_t j = 0; j < CHUNK && i < r->n; j++, i++)
      *index_slot(grown, cap, c->items[j].name, c->items[j].def.kind) = &c->items[j];
  free(r->index);
  r->index = grown;
  r->index_cap = cap;
  return 0;
}

const pf_kernel *pf_registry_find(pf_registry *r, const char *name,
                                  pf_device_kind kind) {
  const pf_kernel *k;
  if (r == NULL || name == NULL) return NULL;
  pthread_mutex_lock(&r->lock);
  k = find_locked(r, name, kind);
  pthread_mutex_unlock(&r->lock);
  return k;
}

int pf_registry_add(pf_registry *r, const pf_kernel_def *def) {
  chunk **tail;
  pf_kernel *k;
  size_t slot;
  if (r == NULL || def == NULL || !pf_kernel_name_valid(def->name) ||
      def->shape == NULL || def->compute == NULL || def->n_out < 1 ||
      def->n_out > 64 || def->n_in < PF_VARIADIC || def->n_in > 64 ||
      (unsigned)def->kind >= PF_DEVICE_KIND_COUNT)
    return PF_EINVAL;
  pthread_mutex_lock(&r->lock);
  if (find_locked(r, def->name, def->kind) != NULL) {
    pthread_mutex_unlock(&r->lock);
    return PF_EEXIST;
  }
  if (index_grow(r) != 0) {
    pthread_mutex_unlock(&r->lock);
    return PF_ENOMEM;
  }
  slot = r->n % CHUNK;
  tail = &r->head;
  for (size_t i = 0; i < r->n / CHUNK; i++) tail = &(*tail)->next;
  if (slot == 0) {
    *tail = calloc(1, sizeof(chunk));
    if (*tail == NULL) {
      pthread_mutex_unlock(&r->lock);
      return PF_ENOMEM;
    }
  }
  k = &(*tail)->items[slot];
  k->def = *def;
  strcpy(k->name, def->name);
  k->def.name = k->name;
  if (k->def.cost == NULL) k->def.cost = pf_default_cost;
  *index_slot(r->index, r->index_cap, k->name, k->def.kind) = k;
  r->n++;
  pthread_mutex_unlock(&r->lock);
  return 0;
}

void pf_default_cost(const pf_attrs *attrs, int n_in, const pf_spec *in,
                     int n_out, const pf_spec *out, pf_cost *cost) {
  (void)attrs;
  cost->flops = 0;
  cost->bytes = 0;
  for (int i = 0; i < n_in; i++) cost->bytes += (double)pf_spec_nbytes(&in[i]);
  for (int i = 0; i < n_out; i++) cost->bytes += (double)pf_spec_nbytes(&out[i]);
}
