/* Persistent buffers: the controller's table of what users hold, and the
 * fetch and release of values that live on executors. Ids only grow and are
 * never reused, so a released or made-up id is found missing (PF_ESTALE),
 * never aliased. */
#include <stdlib.h>
#include <string.h>

#include "api/context_internal.h"
#include "base/util.h"

int pf_buffers_add(pf_context *ctx, uint64_t id, const pf_spec *spec, pf_sharding sh,
                   int num_shards, const pf_home *homes) {
  pf_buffer_table *t = &ctx->buffers;
  pf_buffer_entry *e;
  pf_home *copy = pf_mallocn((size_t)num_shards, sizeof *copy);
  if (copy == NULL || pf_grow((void **)&t->items, &t->cap, t->n + 1, sizeof *t->items)) {
    free(copy);
    return PF_ENOMEM;
  }
  memcpy(copy, homes, (size_t)num_shards * sizeof *copy);
  /* Ids are handed out in increasing order but may be added out of order
   * (outputs of older futures); keep the table sorted. */
  size_t pos = t->n;
  while (pos > 0 && t->items[pos - 1].id > id) pos--;
  memmove(&t->items[pos + 1], &t->items[pos], (t->n - pos) * sizeof *t->items);
  e = &t->items[pos];
  t->n++;
  e->id = id;
  e->spec = *spec;
  e->sharding = sh;
  e->num_shards = num_shards;
  e->homes = copy;
  return 0;
}

pf_buffer_entry *pf_buffers_find(pf_context *ctx, uint64_t id) {
  pf_buffer_table *t = &ctx->buffers;
  size_t lo = 0, hi = t->n;
  while (lo < hi) {
    size_t mid = (lo + hi) / 2;
    if (t->items[mid].id == id) return &t->items[mid];
    if (t->items[mid].id < id)
      lo = mid + 1;
    else
      hi = mid;
  }
  return NULL;
}

static void remove_entry(pf_context *ctx, pf_buffer_entry *e) {
  pf_buffer_table *t = &ctx->buffers;
  size_t i = (size_t)(e - t->items);
  free(e->homes);
  memmove(&t->items[i], &t->items[i + 1], (t->n - i - 1) * sizeof *t->items);
  t->n--;
}

void pf_buffers_clear(pf_context *ctx) {
  pf_buffer_table *t = &ctx->buffers;
  for (size_t i = 0; i < t->n; i++) free(t->items[i].homes);
  free(t->items);
  t->items = NULL;
  t->n = t->cap = 0;
}

/* The ranks holding shards, each once, in shard order of first appearance. */
static int holders(int num_shards, const pf_home *homes, int only_first, int32_t *ranks) {
  int n = 0;
  for (int s = 0; s < (only_first ? 1 : num_shards); s++) {
    int seen = 0;
    for (int k = 0; k < n; k++) seen |= ranks[k] == homes[s].rank;
    if (!seen) ranks[n++] = homes[s].rank;
  }
  return n;
}

int pf_value_fetch(pf_context *ctx, uint64_t id, const pf_spec *spec, pf_sharding sh,
                   int num_shards, const pf_home *homes, pf_tensor **out) {
  int only_first = sh.kind == PF_SHARD_REPLICATED;
  int32_t *ranks = pf_mallocn((size_t)num_shards, sizeof *ranks);
  pf_waiter w;
  int n, rc;
  memset(&w, 0, sizeof w);
  w.num_shards = num_shards;
  w.shards = pf_calloc((size_t)num_shards, sizeof *w.shards);
  if (ranks == NULL || w.shards == NULL) {
    free(ranks);
    free(w.shards);
    return pf_context_error(ctx, PF_ENOMEM, "fetch: out of memory");
  }
  n = holders(num_shards, homes, only_first, ranks);
  pf_controller_expect(ctx, &w, pf_context_new_id(ctx), n);
  for (int k = 0; k < n; k++) {
    pf_msg *m = pf_msg_new(PF_MSG_FETCH);
    int cnt = 0;
    if (m != NULL) {
      m->request = w.key;
      m->buffer = id;
      m->shards = pf_mallocn((size_t)num_shards, sizeof *m->shards);
      if (m->shards == NULL) {
        pf_msg_free(m);
        m = NULL;
      }
    }
    if (m == NULL) {
      /* Still wait for the requests already sent; this one never comes. */
      pthread_mutex_lock(&ctx->lock);
      w.pending--;
      if (w.status == 0) w.status = PF_ENOMEM;
      pthread_mutex_unlock(&ctx->lock);
      continue;
    }
    for (int s = 0; s < (only_first ? 1 : num_shards); s++)
      if (homes[s].rank == ranks[k]) m->shards[cnt++] = s;
    m->n_shards = (uint32_t)cnt;
    pf_controller_send(ctx, ranks[k], m);
  }
  rc = pf_controller_wait(ctx, &w);
  if (rc == 0) {
    pf_storage **sh_list = w.shards;
    for (int s = 0; s < (only_first ? 1 : num_shards); s++)
      if (sh_list[s] == NULL) rc = PF_ESTALE;
    if (rc == 0) rc = pf_shards_gather(spec, sh, num_shards, sh_list, out);
    if (rc != 0) pf_context_error(ctx, rc, "fetch of buffer %llu failed: %s",
                                  (unsigned long long)id, pf_strerror(rc));
  } else {
    pf_context_error(ctx, rc, "fetch of buffer %llu: %s", (unsigned long long)id, w.message);
  }
  for (int s = 0; s < num_shards; s++) pf_storage_unref(w.shards[s]);
  free(w.shards);
  free(ranks);
  return rc;
}

void pf_value_release(pf_context *ctx, uint64_t id, int num_shards, const pf_home *homes) {
  int32_t ranks[4096];
  int n = holders(PF_MINOF(num_shards, 4096), homes, 0, ranks);
  for (int k = 0; k < n; k++) {
    pf_msg *m = pf_msg_new(PF_MSG_RELEASE);
    if (m == NULL || (m->ids = malloc(sizeof *m->ids)) == NULL) {
      pf_msg_free(m);
      continue; /* the memory stays until the job ends; nothing breaks */
    }
    m->ids[0] = id;
    m->n_ids = 1;
    pf_controller_send(ctx, ranks[k], m);
  }
}

static pf_buffer_entry *lookup(pf_context *ctx, pf_buffer_t buf) {
  pf_buffer_entry *e = pf_buffers_find(ctx, buf.id);
  if (e == NULL)
    pf_context_error(ctx, PF_ESTALE, "buffer %llu: released or never made",
                     (unsigned long long)buf.id);
  return e;
}

int pf_buffer_spec(pf_context *ctx, pf_buffer_t buf, pf_spec *out) {
  pf_buffer_entry *e;
  if (ctx == NULL || out == NULL) return PF_EINVAL;
  pf_context_begin(ctx);
  if ((e = lookup(ctx, buf)) == NULL) return PF_ESTALE;
  *out = e->spec;
  return 0;
}

int pf_buffer_fetch(pf_context *ctx, pf_buffer_t buf, pf_tensor **out) {
  pf_buffer_entry *e;
  if (ctx == NULL || out == NULL) return PF_EINVAL;
  *out = NULL;
  pf_context_begin(ctx);
  if ((e = lookup(ctx, buf)) == NULL) return PF_ESTALE;
  return pf_value_fetch(ctx, e->id, &e->spec, e->sharding, e->num_shards, e->homes, out);
}

int pf_buffer_release(pf_context *ctx, pf_buffer_t buf) {
  pf_buffer_entry *e;
  if (ctx == NULL) return PF_EINVAL;
  pf_context_begin(ctx);
  if ((e = lookup(ctx, buf)) == NULL) return PF_ESTALE;
  pf_value_release(ctx, e->id, e->num_shards, e->homes);
  remove_entry(ctx, e);
  return 0;
}
