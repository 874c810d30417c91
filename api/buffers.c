/* The table of persistent buffers. Ids only grow and are never reused, so
 * a released or made-up id is found missing (PF_ESTALE), never aliased. */
#include <stdlib.h>
#include <string.h>

#include "api/context_internal.h"
#include "base/util.h"

static void entry_free(pf_buffer_entry *e) {
  for (int s = 0; s < e->num_shards; s++) pf_storage_unref(e->shards[s]);
  free(e->shards);
}

int pf_buffers_add(pf_buffer_table *t, const pf_spec *spec, pf_sharding sh,
                   int num_shards, pf_storage **shards, uint64_t *id) {
  pf_buffer_entry *e;
  if (pf_grow((void **)&t->items, &t->cap, t->n + 1, sizeof *t->items)) {
    pf_buffer_entry tmp = {0, *spec, sh, num_shards, shards};
    entry_free(&tmp);
    return PF_ENOMEM;
  }
  e = &t->items[t->n++];
  e->id = ++t->next_id;
  e->spec = *spec;
  e->sharding = sh;
  e->num_shards = num_shards;
  e->shards = shards;
  *id = e->id;
  return 0;
}

pf_buffer_entry *pf_buffers_find(pf_buffer_table *t, uint64_t id) {
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

void pf_buffers_remove(pf_buffer_table *t, uint64_t id) {
  pf_buffer_entry *e = pf_buffers_find(t, id);
  size_t i;
  if (e == NULL) return;
  i = (size_t)(e - t->items);
  entry_free(e);
  memmove(&t->items[i], &t->items[i + 1], (t->n - i - 1) * sizeof *t->items);
  t->n--;
}

void pf_buffers_clear(pf_buffer_table *t) {
  for (size_t i = 0; i < t->n; i++) entry_free(&t->items[i]);
  free(t->items);
  t->items = NULL;
  t->n = t->cap = 0;
}

int pf_buffer_spec(pf_context *ctx, pf_buffer_t buf, pf_spec *out) {
  pf_buffer_entry *e;
  if (ctx == NULL || out == NULL) return PF_EINVAL;
  pf_context_begin(ctx);
  if ((e = pf_buffers_find(&ctx->buffers, buf.id)) == NULL)
    return pf_context_error(ctx, PF_ESTALE, "buffer %llu: released or never made",
                            (unsigned long long)buf.id);
  *out = e->spec;
  return 0;
}

int pf_buffer_fetch(pf_context *ctx, pf_buffer_t buf, pf_tensor **out) {
  pf_buffer_entry *e;
  int rc;
  if (ctx == NULL || out == NULL) return PF_EINVAL;
  *out = NULL;
  pf_context_begin(ctx);
  if ((e = pf_buffers_find(&ctx->buffers, buf.id)) == NULL)
    return pf_context_error(ctx, PF_ESTALE, "buffer %llu: released or never made",
                            (unsigned long long)buf.id);
  rc = pf_shards_gather(&e->spec, e->sharding, e->num_shards, e->shards, out);
  if (rc) return pf_context_error(ctx, rc, "fetch buffer %llu: out of memory",
                                  (unsigned long long)buf.id);
  return 0;
}

int pf_buffer_release(pf_context *ctx, pf_buffer_t buf) {
  if (ctx == NULL) return PF_EINVAL;
  pf_context_begin(ctx);
  if (pf_buffers_find(&ctx->buffers, buf.id) == NULL)
    return pf_context_error(ctx, PF_ESTALE, "buffer %llu: released or never made",
                            (unsigned long long)buf.id);
  pf_buffers_remove(&ctx->buffers, buf.id);
  return 0;
}
