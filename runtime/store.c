/* Open addressing with linear probing and tombstones, keyed by (id,
 * shard). Ids never repeat, so a dropped entry is never looked up again
 * and tombstones only cost space until the next resize.
 *
 * Dropping an id must not scan the table (a step drops its fed inputs, and
 * thousands of outputs may be held): each id with shards here also has a
 * head entry, keyed (id, -1), that records the lowest and highest shard
 * stored, so a drop looks up exactly those shards. Every operation then
 * costs a few probes, however many entries the store holds
 * (tests/test_backpressure.c counts them).
 *
 * An entry may also stand for a shard not made yet: a step in flight will
 * make it (expected), or the step that was to make it failed (failed). A
 * run fed an output of an execution still in flight waits on the first;
 * the second lets it say which step failed rather than "never made". */
#include "runtime/store.h"

#include <stdlib.h>

#include "base/util.h"
#include "pathflow/error.h"

#define HEAD_SHARD (-1)

enum { LIVE, EXPECTED, FAILED };

typedef struct entry {
  uint64_t id; /* 0: empty */
  int32_t shard; /* HEAD_SHARD: the id's head */
  int32_t dead;
  int32_t lo, hi; /* head: the range of shards stored under the id */
  int32_t state;    /* shard entries: LIVE (st set), EXPECTED or FAILED */
  int32_t expected; /* head: shards EXPECTED */
  uint64_t exe, step; /* EXPECTED, FAILED: the run that makes (made) it */
  pf_storage *st;   /* LIVE shard entries */
} entry;

struct pf_store {
  entry *slots;
  size_t cap, used; /* slots not empty (live, heads and tombstones) */
  size_t live, heads, marks; /* LIVE entries, heads, EXPECTED or FAILED ones */
  size_t bytes;
  uint64_t probes;
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
    if (s->slots[i].id && !s->slots[i].dead && s->slots[i].shard != HEAD_SHARD)
      pf_storage_unref(s->slots[i].st); /* NULL unless LIVE */
  free(s->slots);
  free(s);
}

/* The live entry (id, shard), or NULL. The table always has an empty slot
 * (load at most 1/2), so the probe ends. */
static entry *find(pf_store *s, uint64_t id, int32_t shard) {
  size_t mask = s->cap - 1, i = hash(id, shard) & mask;
  for (;;) {
    entry *e = &s->slots[i];
    s->probes++;
    if (e->id == 0) return NULL;
    if (!e->dead && e->id == id && e->shard == shard) return e;
    i = (i + 1) & mask;
  }
}

/* Rehashes the live entries, marks and heads into a table twice as large when
 * they fill more than a quarter of it, else of the same size (dropping the
 * tombstones): either way at most a quarter is used after, so the next
 * resize is many puts away. */
static int resize(pf_store *s) {
  size_t ncap = (s->live + s->heads + s->marks) * 4 > s->cap ? s->cap * 2 : s->cap;
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

/* A new entry (id, shard), known absent. The caller has made room. */
static entry *insert(pf_store *s, uint64_t id, int32_t shard) {
  size_t i = hash(id, shard) & (s->cap - 1);
  entry *e;
  while (s->slots[i].id && !s->slots[i].dead) {
    s->probes++;
    i = (i + 1) & (s->cap - 1);
  }
  e = &s->slots[i];
  if (e->id == 0) s->used++;
  e->id = id;
  e->shard = shard;
  e->dead = 0;
  e->state = LIVE;
  e->expected = 0;
  e->exe = e->step = 0;
  e->st = NULL;
  return e;
}

/* The entry (id, shard), made with its head if absent, or NULL (out of
 * memory). A new one is LIVE with no storage: the caller sets it. */
static entry *find_or_insert(pf_store *s, uint64_t id, int32_t shard, int *made) {
  entry *e, *head;
  *made = 0;
  if ((e = find(s, id, shard)) != NULL) return e;
  /* Room for the entry and perhaps its head. */
  if ((s->used + 2) * 2 > s->cap && resize(s) != 0) return NULL;
  if ((head = find(s, id, HEAD_SHARD)) == NULL) {
    head = insert(s, id, HEAD_SHARD);
    head->lo = head->hi = shard;
    s->heads++;
  }
  if (shard < head->lo) head->lo = shard;
  if (shard > head->hi) head->hi = shard;
  *made = 1;
  return insert(s, id, shard);
}

/* An entry leaves the EXPECTED state. */
static void unexpect(pf_store *s, entry *e) {
  if (e->state == EXPECTED) find(s, e->id, HEAD_SHARD)->expected--;
}

int pf_store_put(pf_store *s, uint64_t id, int32_t shard, pf_storage *st) {
  entry *e;
  int made;
  if (id == 0 || shard < 0) {
    pf_storage_unref(st);
    return PF_EINVAL;
  }
  if ((e = find_or_insert(s, id, shard, &made)) == NULL) {
    pf_storage_unref(st);
    return PF_ENOMEM;
  }
  if (e->state == LIVE && !made) {
    s->bytes -= e->st->nbytes;
    pf_storage_unref(e->st);
  } else {
    if (!made) s->marks--;
    unexpect(s, e);
    s->live++;
  }
  e->state = LIVE;
  e->st = st;
  s->bytes += st->nbytes;
  return 0;
}

int pf_store_expect(pf_store *s, uint64_t id, int32_t shard, uint64_t exe, uint64_t step) {
  entry *e;
  int made;
  if (id == 0 || shard < 0) return PF_EINVAL;
  if ((e = find_or_insert(s, id, shard, &made)) == NULL) return PF_ENOMEM;
  if (!made && e->state == LIVE) { /* ids never repeat: not expected to happen */
    s->bytes -= e->st->nbytes;
    pf_storage_unref(e->st);
    e->st = NULL;
    s->live--;
  }
  if (e->state == LIVE) s->marks++; /* a new entry is LIVE with no storage */
  if (e->state != EXPECTED) find(s, id, HEAD_SHARD)->expected++;
  e->state = EXPECTED;
  e->exe = exe;
  e->step = step;
  return 0;
}

void pf_store_fail(pf_store *s, uint64_t id, int32_t shard) {
  entry *e = id && shard >= 0 ? find(s, id, shard) : NULL;
  if (e == NULL || e->state != EXPECTED) return;
  unexpect(s, e);
  e->state = FAILED;
}

int pf_store_expected(pf_store *s, uint64_t id, int32_t shard) {
  entry *e;
  if (id == 0) return 0;
  if (shard < 0) {
    e = find(s, id, HEAD_SHARD);
    return e != NULL && e->expected > 0;
  }
  e = find(s, id, shard);
  return e != NULL && e->state == EXPECTED;
}

int pf_store_failed(pf_store *s, uint64_t id, int32_t shard, uint64_t *exe, uint64_t *step) {
  entry *e = id && shard >= 0 ? find(s, id, shard) : NULL;
  if (e == NULL || e->state != FAILED) return 0;
  *exe = e->exe;
  *step = e->step;
  return 1;
}

pf_storage *pf_store_get(pf_store *s, uint64_t id, int32_t shard) {
  entry *e = id && shard >= 0 ? find(s, id, shard) : NULL;
  return e && e->state == LIVE ? e->st : NULL;
}

int pf_store_drop(pf_store *s, uint64_t id) {
  entry *head = id ? find(s, id, HEAD_SHARD) : NULL;
  int n = 0;
  if (head == NULL) return 0;
  for (int32_t k = head->lo; k <= head->hi; k++) {
    entry *e = find(s, id, k);
    if (e == NULL) continue;
    e->dead = 1;
    if (e->state != LIVE) { /* a mark, not a shard */
      s->marks--;
      continue;
    }
    s->bytes -= e->st->nbytes;
    pf_storage_unref(e->st);
    e->st = NULL;
    s->live--;
    n++;
  }
  head->dead = 1;
  s->heads--;
  return n;
}

size_t pf_store_count(const pf_store *s) { return s->live; }
size_t pf_store_bytes(const pf_store *s) { return s->bytes; }
uint64_t pf_store_probes(const pf_store *s) { return s->probes; }
