/* Open addressing with linear probing and tombstones; ids never repeat, so
 * a dropped entry is never looked up again and tombstones only cost space
 * until the next resize. */
#include "runtime/store.h"

#include <stdlib.h>

#include "base/util.h"
#include "pathflow/error.h"

typedef struct entry {
  uint64_t id; /* 0: empty */
  int32_t shard;
  int dead;
  pf_storage *st;
} entry;

struct pf_store {
  entry *slots;
  size_t cap, used, live;
  size_t bytes;
};

static uint64_t hash(uint64_t id, int32_t shard) {
  uint64_t h = id * 0x9E3779B97F4A7C15ull ^ (uint64_t)(uint32_t)shard * 0xC2B2AE3D27D4EB4Full;
  return h ^ (h >> 29);
}

int pf_store_create(pf_store **out) {
  pf_store *s = calloc(1, sizeof *s);
  if (s == NULL) return PF_ENOMEM;
  s->cap = 64;
  if ((s->slots = calloc(s->cap, sizeof *s->slots)) == NULL) {
    free(s);
    return PF_ENOMEM;
  }
  *out = s;
  return 0;
}

void pf_store_destroy(pf_store *s) {
  if (s == NULL) return;
  for (size_t i = 0; i < s->cap; i++)
    if (s->slots[i].id && !s->slots[i].dead) pf_storage_unref(s->slots[i].st);
  free(s->slots);
  free(s);
}

static entry *find(const pf_store *s, uint64_t id, int32_t shard) {
  size_t mask = s->cap - 1, i = hash(id, shard) & mask;
  for (;;) {
    entry *e = &s->slots[i];
    if (e->id == 0) return NULL;
    if (!e->dead && e->id == id && e->shard == shard) return e;
    i = (i + 1) & mask;
  }
}

static int resize(pf_store *s) {
  size_t ncap = s->live * 4 > s->cap ? s->cap * 2 : s->cap;
  entry *old = s->slots, *slots = calloc(ncap, sizeof *slots);
  size_t ocap = s->cap;
  if (slots == NULL) return PF_ENOMEM;
  s->slots = slots;
  s->cap = ncap;
  s->used = 0;
  for (size_t i = 0; i < ocap; i++) {
    if (old[i].id == 0 || old[i].dead) continue;
    size_t j = hash(old[i].id, old[i].shard) & (ncap - 1);
    while (slots[j].id) j = (j + 1) & (ncap - 1);
    slots[j] = old[i];
    s->used++;
  }
  free(old);
  return 0;
}

int pf_store_put(pf_store *s, uint64_t id, int32_t shard, pf_storage *st) {
  entry *e = find(s, id, shard);
  size_t i;
  if (e != NULL) {
    s->bytes -= e->st->nbytes;
    pf_storage_unref(e->st);
    e->st = st;
    s->bytes += st->nbytes;
    return 0;
  }
  if ((s->used + 1) * 2 > s->cap && resize(s) != 0) {
    pf_storage_unref(st);
    return PF_ENOMEM;
  }
  i = hash(id, shard) & (s->cap - 1);
  while (s->slots[i].id && !s->slots[i].dead) i = (i + 1) & (s->cap - 1);
  if (s->slots[i].id == 0) s->used++;
  s->slots[i].id = id;
  s->slots[i].shard = shard;
  s->slots[i].dead = 0;
  s->slots[i].st = st;
  s->live++;
  s->bytes += st->nbytes;
  return 0;
}

pf_storage *pf_store_get(const pf_store *s, uint64_t id, int32_t shard) {
  entry *e = id ? find(s, id, shard) : NULL;
  return e ? e->st : NULL;
}

int pf_store_drop(pf_store *s, uint64_t id) {
  int n = 0;
  /* Shards of one id are few; scan the table (release is not a hot path). */
  for (size_t i = 0; id && i < s->cap; i++) {
    entry *e = &s->slots[i];
    if (e->id == id && !e->dead) {
      s->bytes -= e->st->nbytes;
      pf_storage_unref(e->st);
      e->st = NULL;
      e->dead = 1;
      s->live--;
      n++;
    }
  }
  return n;
}

size_t pf_store_count(const pf_store *s) { return s->live; }
size_t pf_store_bytes(const pf_store *s) { return s->bytes; }
