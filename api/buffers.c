/* Persistent buffers: the controller's table of what users hold, and the
 * fetch and release of values that live on executors. Ids only grow and are
 * never reused, so a released or made-up id is found missing (PF_ESTALE),
 * never aliased. */
#include <stdlib.h>
#include <string.h>

#include "api/execute_internal.h"
#include "base/util.h"

/* ---- the table ---------------------------------------------------------------- */

static size_t home_of(const pf_buffer_table *t, uint64_t id) {
  return (size_t)((id * 0x9E3779B97F4A7C15ull) >> 17) & (t->cap - 1);
}

static void place(pf_buffer_table *t, pf_buffer_entry *e) {
  size_t i = home_of(t, e->id);
  while (t->slots[i] != NULL) i = (i + 1) & (t->cap - 1);
  t->slots[i] = e;
}

static int grow(pf_buffer_table *t) {
  size_t ocap = t->cap, ncap = ocap ? ocap * 2 : 64;
  pf_buffer_entry **old = t->slots, **slots = pf_calloc(ncap, sizeof *slots);
  if (slots == NULL) return PF_ENOMEM;
  t->slots = slots;
  t->cap = ncap;
  for (size_t i = 0; i < ocap; i++)
    if (old[i] != NULL) place(t, old[i]);
  free(old);
  return 0;
}

int pf_buffers_add(pf_context *ctx, uint64_t id, const pf_spec *spec, pf_sharding sh,
                   int num_shards, const pf_home *homes) {
  pf_buffer_table *t = &ctx->buffers;
  pf_buffer_entry *e;
  if ((t->n + 1) * 2 > t->cap && grow(t) != 0) return PF_ENOMEM;
  e = malloc(sizeof *e + (size_t)num_shards * sizeof *homes);
  if (e == NULL) return PF_ENOMEM;
  e->id = id;
  e->spec = *spec;
  e->sharding = sh;
  e->num_shards = num_shards;
  e->homes = e->home_store;
  memcpy(e->home_store, homes, (size_t)num_shards * sizeof *homes);
  place(t, e);
  t->n++;
  return 0;
}

static size_t slot_of(const pf_buffer_table *t, uint64_t id) {
  size_t i;
  if (t->cap == 0 || id == 0) return SIZE_MAX;
  for (i = home_of(t, id); t->slots[i] != NULL; i = (i + 1) & (t->cap - 1))
    if (t->slots[i]->id == id) return i;
  return SIZE_MAX;
}

pf_buffer_entry *pf_buffers_find(pf_context *ctx, uint64_t id) {
  size_t i = slot_of(&ctx->buffers, id);
  return i == SIZE_MAX ? NULL : ctx->buffers.slots[i];
}

/* Frees the entry and closes the gap: the entries after it in its probe
 * run move back where their lookups will still find them. */
static void remove_entry(pf_context *ctx, pf_buffer_entry *e) {
  pf_buffer_table *t = &ctx->buffers;
  size_t i = slot_of(t, e->id), j = i;
  if (i == SIZE_MAX) return;
  free(e);
  t->slots[i] = NULL;
  t->n--;
  for (;;) {
    size_t h;
    j = (j + 1) & (t->cap - 1);
    if (t->slots[j] == NULL) return;
    h = home_of(t, t->slots[j]->id);
    /* The entry at j may move to i unless its home lies in (i, j]. */
    if (i <= j ? (i < h && h <= j) : (i < h || h <= j)) continue;
    t->slots[i] = t->slots[j];
    t->slots[j] = NULL;
    i = j;
  }
}

void pf_buffers_clear(pf_context *ctx) {
  pf_buffer_table *t = &ctx->buffers;
  for (size_t i = 0; i < t->cap; i++) free(t->slots[i]);
  free(t->slots);
  t->slots = NULL;
  t->n = t->cap = 0;
}

/* ---- fetch and release --------------------------------------------------------- */

int pf_value_fetch(pf_context *ctx, const char *what, uint64_t id, const pf_spec *spec,
                   pf_sharding sh, int num_shards, const pf_home *homes, pf_tensor **out) {
  int parts = sh.kind == PF_SHARD_REPLICATED ? 1 : num_shards;
  pf_spec local;
  pf_waiter w;
  int rc;
  pf_shard_spec(spec, sh, num_shards, &local, "", NULL);
  /* Checked before anything is asked: a shard travels in one control
   * message. */
  if (pf_spec_nbytes(&local) > (size_t)PF_HOST_SHARD_MAX)
    return pf_context_error(ctx, PF_ERANGE,
                            "fetch of %s: a shard holds %zu bytes, over the %lld bytes a shard "
                            "moved to the host may hold (PF_HOST_SHARD_MAX)",
                            what, pf_spec_nbytes(&local), (long long)PF_HOST_SHARD_MAX);
  memset(&w, 0, sizeof w);
  w.num_shards = num_shards;
  w.shard_bytes = pf_spec_nbytes(&local);
  w.shards = pf_calloc((size_t)num_shards, sizeof *w.shards);
  if (w.shards == NULL) return pf_context_error(ctx, PF_ENOMEM, "fetch of %s: out of memory", what);
  /* One request per shard: a reply carries one shard, whatever the
   * rank holds. */
  pf_controller_expect(ctx, &w, pf_context_new_id(ctx), parts);
  for (int s = 0; s < parts; s++) {
    pf_msg *m = pf_msg_new(PF_MSG_FETCH);
    int sent = PF_ENOMEM;
    if (m != NULL && (m->shards = malloc(sizeof *m->shards)) != NULL) {
      m->request = w.key;
      m->buffer = id;
      m->shards[0] = s;
      m->n_shards = 1;
      sent = pf_controller_send(ctx, homes[s].rank, m); /* takes m */
    } else {
      pf_msg_free(m);
    }
    if (sent != 0) {
      /* Still wait for the requests already sent; this one never comes. */
      pthread_mutex_lock(&ctx->lock);
      w.pending--;
      if (w.status == 0) {
        w.status = sent;
        snprintf(w.message, sizeof w.message, "cannot ask rank %d for shard %d: %s",
                 (int)homes[s].rank, s, pf_strerror(sent));
      }
      pthread_mutex_unlock(&ctx->lock);
    }
  }
  rc = pf_controller_wait(ctx, &w);
  if (rc == 0) {
    for (int s = 0; s < parts; s++)
      if (w.shards[s] == NULL) rc = PF_ESTALE;
    if (rc == 0) rc = pf_shards_gather(spec, sh, num_shards, w.shards, out);
    if (rc != 0) pf_context_error(ctx, rc, "fetch of %s: %s", what, pf_strerror(rc));
  } else {
    pf_context_error(ctx, rc, "fetch of %s: %s", what, w.message);
  }
  for (int s = 0; s < num_shards; s++) pf_storage_unref(w.shards[s]);
  free(w.shards);
  return rc;
}

static void send_release(pf_context *ctx, int rank, uint64_t id) {
  pf_msg *m = pf_msg_new(PF_MSG_RELEASE);
  if (m == NULL || (m->ids = malloc(sizeof *m->ids)) == NULL) {
    pf_msg_free(m);
    return; /* the memory stays until the job ends; nothing breaks */
  }
  m->ids[0] = id;
  m->n_ids = 1;
  pf_controller_send(ctx, rank, m);
}

void pf_value_release(pf_context *ctx, uint64_t id, int num_shards, const pf_home *homes) {
  /* Each rank holding shards once: a bit per rank marks those told. Out of
   * memory, every shard's rank is told (a second drop is a no-op). */
  uint64_t small[4], *told = small;
  size_t words = ((size_t)ctx->size + 63) / 64;
  if (words > sizeof small / sizeof *small) told = pf_calloc(words, sizeof *told);
  else memset(small, 0, sizeof small);
  for (int s = 0; s < num_shards; s++) {
    uint32_t r = (uint32_t)homes[s].rank;
    if (told != NULL) {
      if (told[r / 64] >> (r % 64) & 1) continue;
      told[r / 64] |= 1ull << (r % 64);
    }
    send_release(ctx, (int)r, id);
  }
  if (told != small) free(told);
}

/* ---- the public calls -------------------------------------------------------- */

static pf_buffer_entry *lookup(pf_context *ctx, pf_buffer_t buf) {
  pf_buffer_entry *e = pf_buffers_find(ctx, buf.id);
  if (e == NULL)
    pf_context_error(ctx, PF_ESTALE, "buffer %llu: released or never made",
                     (unsigned long long)buf.id);
  return e;
}

int pf_buffer_spec(pf_context *ctx, pf_buffer_t buf, pf_spec *out) {
  pf_buffer_entry *e;
  int rc;
  if ((rc = pf_context_live(ctx, "pf_buffer_spec")) != 0) return rc;
  if (out == NULL) return pf_context_error(ctx, PF_EINVAL, "pf_buffer_spec: out is NULL");
  if ((e = lookup(ctx, buf)) == NULL) return PF_ESTALE;
  *out = e->spec;
  return 0;
}

int pf_buffer_fetch(pf_context *ctx, pf_buffer_t buf, pf_tensor **out) {
  pf_buffer_entry *e;
  char what[40];
  int rc;
  if ((rc = pf_context_live(ctx, "pf_buffer_fetch")) != 0) return rc;
  if (out == NULL) return pf_context_error(ctx, PF_EINVAL, "pf_buffer_fetch: out is NULL");
  *out = NULL;
  if ((e = lookup(ctx, buf)) == NULL) return PF_ESTALE;
  snprintf(what, sizeof what, "buffer %llu", (unsigned long long)e->id);
  return pf_value_fetch(ctx, what, e->id, &e->spec, e->sharding, e->num_shards, e->homes, out);
}

void pf_buffers_forget(pf_context *ctx, uint64_t id) {
  pf_buffer_entry *e = pf_buffers_find(ctx, id);
  if (e != NULL) remove_entry(ctx, e);
}

int pf_buffer_release(pf_context *ctx, pf_buffer_t buf) {
  pf_buffer_entry *e;
  int rc;
  if ((rc = pf_context_live(ctx, "pf_buffer_release")) != 0) return rc;
  if ((e = lookup(ctx, buf)) == NULL) return PF_ESTALE;
  pf_value_release(ctx, e->id, e->num_shards, e->homes);
  remove_entry(ctx, e);
  return 0;
}

/* Sends t's shards to where `io` says and records the buffer. */
static int put(pf_context *ctx, const pf_io *io, const pf_tensor *t, pf_buffer_t *out) {
  pf_home *homes = pf_mallocn((size_t)io->num_shards, sizeof *homes);
  uint64_t id = 0;
  int rc;
  if (homes == NULL) return pf_context_error(ctx, PF_ENOMEM, "pf_buffer_put: out of memory");
  for (int s = 0; s < io->num_shards; s++) {
    homes[s].rank = io->shards[s].rank;
    homes[s].device = io->shards[s].device;
  }
  rc = pf_put_shards(ctx, "pf_buffer_put of", io, pf_tensor_cdata(t), &id);
  if (rc == 0 && (rc = pf_buffers_add(ctx, id, &io->spec, io->sharding, io->num_shards, homes)))
    pf_context_error(ctx, rc, "pf_buffer_put: out of memory");
  if (rc != 0 && id != 0) pf_value_release(ctx, id, io->num_shards, homes);
  if (rc == 0) out->id = id;
  free(homes);
  return rc;
}

int pf_buffer_put(pf_context *ctx, const pf_tensor *t, int n_devices, const int *devices,
                  pf_sharding sharding, pf_buffer_t *out) {
  pf_io io = {.name = "tensor", .sharding = sharding, .num_shards = n_devices};
  pf_spec local;
  int rc;
  if ((rc = pf_context_live(ctx, "pf_buffer_put")) != 0) return rc;
  if (t == NULL || out == NULL || devices == NULL || n_devices < 1)
    return pf_context_error(ctx, PF_EINVAL,
                            "pf_buffer_put: needs a tensor, an output and at least one device");
  out->id = 0;
  if (sharding.kind != PF_SHARD_REPLICATED && sharding.kind != PF_SHARD_SPLIT)
    return pf_context_error(ctx, PF_EINVAL,
                            "pf_buffer_put: a buffer from the host is replicated or split");
  io.spec = *pf_tensor_spec(t);
  if ((rc = pf_shard_spec(&io.spec, sharding, n_devices, &local, "pf_buffer_put", &ctx->diag)))
    return rc;
  if ((io.shards = pf_calloc((size_t)n_devices, sizeof *io.shards)) == NULL)
    return pf_context_error(ctx, PF_ENOMEM, "pf_buffer_put: out of memory");
  for (int s = 0; s < n_devices && rc == 0; s++) {
    int d = devices[s];
    if (d < 0 || d >= ctx->cluster.n_devices)
      rc = pf_context_error(ctx, PF_EINVAL, "pf_buffer_put: device %d: the job has %d (0 to %d)",
                            d, ctx->cluster.n_devices, ctx->cluster.n_devices - 1);
    else {
      io.shards[s].rank = ctx->cluster.devices[d].rank;
      io.shards[s].device = ctx->cluster.devices[d].local;
    }
  }
  if (rc == 0) rc = put(ctx, &io, t, out);
  free(io.shards);
  return rc;
}

int pf_buffer_put_for(pf_executable *exe, const char *input, const pf_tensor *t,
                      pf_buffer_t *out) {
  const pf_compiled *c;
  char want[128], got[128];
  int rc;
  if (exe == NULL) return PF_EINVAL;
  if ((rc = pf_context_live(exe->ctx, "pf_buffer_put_for")) != 0) return rc;
  if (t == NULL || out == NULL)
    return pf_context_error(exe->ctx, PF_EINVAL, "pf_buffer_put_for: needs a tensor and an output");
  out->id = 0;
  c = exe->compiled;
  for (int i = 0; input != NULL && i < c->n_inputs; i++) {
    if (strcmp(c->inputs[i].name, input) != 0) continue;
    if (!pf_spec_equal(pf_tensor_spec(t), &c->inputs[i].spec))
      return pf_context_error(exe->ctx, PF_EFEEDSHAPE, "pf_buffer_put_for \"%s\": got %s, the input is %s",
                              input, pf_spec_str(pf_tensor_spec(t), got, sizeof got),
                              pf_spec_str(&c->inputs[i].spec, want, sizeof want));
    return put(exe->ctx, &c->inputs[i], t, out);
  }
  return pf_context_error(exe->ctx, PF_ENOTFOUND, "pf_buffer_put_for: no input named \"%s\"",
                          input ? input : "(null)");
}
