#include "runtime/storage.h"

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>

#include "base/util.h"

/* Large blocks freed by a step are kept for the next step of the same
 * executable, which asks for the same sizes: a fresh block of tens of MiB
 * comes from mmap and costs a page fault per 4 KiB on first touch, more
 * than copying into it. Exact sizes only; oldest evicted first. */
#define CACHE_MIN ((size_t)64 << 10)
#define CACHE_SLOTS 32

static struct {
  pthread_mutex_t lock;
  void *ptr[CACHE_SLOTS];
  size_t size[CACHE_SLOTS];
  uint64_t age[CACHE_SLOTS]; /* when put: the oldest goes first */
  uint64_t clock;
  size_t bytes, limit;
  int limit_read;
} cache = {PTHREAD_MUTEX_INITIALIZER, {0}, {0}, {0}, 0, 0, 0, 0};

/* Under AddressSanitizer keep nothing: a reused block would hide a
 * use-after-free. */
#if defined(__SANITIZE_ADDRESS__)
#define CACHE_OFF 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define CACHE_OFF 1
#endif
#endif
#ifndef CACHE_OFF
#define CACHE_OFF 0
#endif

static void *cache_take(size_t nbytes) {
  void *p = NULL;
  if (CACHE_OFF || nbytes < CACHE_MIN) return NULL;
  pthread_mutex_lock(&cache.lock);
  for (int i = 0; i < CACHE_SLOTS && p == NULL; i++)
    if (cache.ptr[i] != NULL && cache.size[i] == nbytes) {
      p = cache.ptr[i];
      cache.ptr[i] = NULL;
      cache.bytes -= nbytes;
    }
  pthread_mutex_unlock(&cache.lock);
  return p;
}

/* 1 if the cache kept p. To make room, the oldest blocks go: the sizes of
 * the executable running now matter, not those of one that ran before
 * (without eviction, a cache full of 16 MiB blocks made every 64 MiB step
 * fault its pages in again). */
static int cache_put(void *p, size_t nbytes) {
  void *evicted[CACHE_SLOTS];
  int kept = 0, n_evicted = 0, slot = -1;
  if (CACHE_OFF || nbytes < CACHE_MIN) return 0;
  pthread_mutex_lock(&cache.lock);
  if (!cache.limit_read) {
    /* pf_init has refused a bad value (runtime.c, read_env). */
    const char *e = getenv("PATHFLOW_CACHE_BYTES");
    int64_t limit = (int64_t)256 << 20;
    if (e && *e) pf_parse_bytes(e, 0, INT64_MAX, &limit);
    cache.limit = (size_t)limit;
    cache.limit_read = 1;
  }
  if (nbytes <= cache.limit) {
    for (;;) {
      int oldest = -1;
      slot = -1;
      for (int i = 0; i < CACHE_SLOTS; i++) {
        if (cache.ptr[i] == NULL) {
          if (slot < 0) slot = i;
        } else if (oldest < 0 || cache.age[i] < cache.age[oldest]) {
          oldest = i;
        }
      }
      if (slot >= 0 && cache.bytes + nbytes <= cache.limit) break;
      /* oldest >= 0 here: an empty cache has a free slot and room. */
      evicted[n_evicted++] = cache.ptr[oldest];
      cache.bytes -= cache.size[oldest];
      cache.ptr[oldest] = NULL;
    }
    cache.ptr[slot] = p;
    cache.size[slot] = nbytes;
    cache.age[slot] = ++cache.clock;
    cache.bytes += nbytes;
    kept = 1;
  }
  pthread_mutex_unlock(&cache.lock);
  for (int i = 0; i < n_evicted; i++) pf_aligned_free(evicted[i]);
  return kept;
}

static void small_clear(void);

void pf_storage_cache_clear(void) {
  small_clear();
  pthread_mutex_lock(&cache.lock);
  for (int i = 0; i < CACHE_SLOTS; i++) {
    pf_aligned_free(cache.ptr[i]);
    cache.ptr[i] = NULL;
  }
  cache.bytes = 0;
  pthread_mutex_unlock(&cache.lock);
}

size_t pf_storage_cache_bytes(void) {
  size_t n;
  pthread_mutex_lock(&cache.lock);
  n = cache.bytes;
  pthread_mutex_unlock(&cache.lock);
  return n;
}

/* Small storage (the scalars and edges of a fine-grained graph) is one
 * block, header then data, reused through a free list per power-of-two
 * size class: a step of thousands of ops otherwise mallocs and frees
 * thousands of tiny blocks, and glibc then consolidates its fast bins in
 * one pass of ~100 us, inside whatever free() happens to trigger it. */
#define SMALL_HEADER ((sizeof(pf_storage) + PF_ALIGN - 1) / PF_ALIGN * PF_ALIGN)
#define SMALL_MIN_SHIFT 6 /* 64 bytes */
#define SMALL_CLASSES 7   /* up to 4 KiB */
#define SMALL_KEEP_BYTES ((size_t)4 << 20) /* per class */

typedef struct small_free {
  struct small_free *next;
} small_free;

static struct {
  pthread_mutex_t lock;
  small_free *head;
  size_t count;
} small[SMALL_CLASSES] = {
    {PTHREAD_MUTEX_INITIALIZER, NULL, 0}, {PTHREAD_MUTEX_INITIALIZER, NULL, 0},
    {PTHREAD_MUTEX_INITIALIZER, NULL, 0}, {PTHREAD_MUTEX_INITIALIZER, NULL, 0},
    {PTHREAD_MUTEX_INITIALIZER, NULL, 0}, {PTHREAD_MUTEX_INITIALIZER, NULL, 0},
    {PTHREAD_MUTEX_INITIALIZER, NULL, 0}};

/* The class of an allocation of nbytes, or -1 when it is not small. */
static int small_class(size_t nbytes) {
  int c = 0;
  if (CACHE_OFF) return -1;
  while (c < SMALL_CLASSES && ((size_t)1 << (SMALL_MIN_SHIFT + c)) < nbytes) c++;
  return c < SMALL_CLASSES ? c : -1;
}

/* Per thread, the blocks of each class it freed, which it takes again
 * first: no lock and no shared cache line on the hot path (two workers that
 * hand tensors back and forth otherwise took a class lock at every op: half
 * of a worker's time on a 1 us stencil, bench/granularity). A thread that
 * ends gives its blocks to the shared lists. */
#define TLS_KEEP_BYTES ((size_t)64 << 10) /* per class per thread */
static __thread struct {
  small_free *head;
  size_t count;
} tls_small[SMALL_CLASSES];
static __thread int tls_registered;
static pthread_key_t tls_key;
static pthread_once_t tls_once = PTHREAD_ONCE_INIT;
static int tls_key_made;

static size_t class_bytes(int c) { return (size_t)1 << (SMALL_MIN_SHIFT + c); }

/* Moves this thread's blocks to the shared lists (beyond their bound:
 * freed). */
/* A free block of class c to the shared list, or back to the system when
 * the list holds its bound. */
static void shared_put(int c, small_free *f) {
  pthread_mutex_lock(&small[c].lock);
  if (small[c].count * class_bytes(c) < SMALL_KEEP_BYTES) {
    f->next = small[c].head;
    small[c].head = f;
    small[c].count++;
    f = NULL;
  }
  pthread_mutex_unlock(&small[c].lock);
  if (f != NULL) pf_aligned_free(f);
}

static void tls_flush(void *unused) {
  (void)unused;
  for (int c = 0; c < SMALL_CLASSES; c++)
    while (tls_small[c].head != NULL) {
      small_free *f = tls_small[c].head;
      tls_small[c].head = f->next;
      tls_small[c].count--;
      shared_put(c, f);
    }
}

static void tls_key_make(void) { tls_key_made = pthread_key_create(&tls_key, tls_flush) == 0; }

/* 1 if this thread may keep blocks: its cache is flushed when it ends. */
static int tls_usable(void) {
  if (tls_registered) return 1;
  pthread_once(&tls_once, tls_key_make);
  if (!tls_key_made || pthread_setspecific(tls_key, &tls_registered) != 0) return 0;
  tls_registered = 1;
  return 1;
}

static pf_storage *small_new(int c) {
  pf_storage *s = (pf_storage *)tls_small[c].head;
  if (s != NULL) {
    tls_small[c].head = tls_small[c].head->next;
    tls_small[c].count--;
    s->data = (char *)s + SMALL_HEADER;
    return s;
  }
  pthread_mutex_lock(&small[c].lock);
  s = (pf_storage *)small[c].head;
  if (s != NULL) {
    small[c].head = small[c].head->next;
    small[c].count--;
  }
  pthread_mutex_unlock(&small[c].lock);
  if (s == NULL && (s = pf_aligned_alloc(SMALL_HEADER + class_bytes(c))) == NULL)
    return NULL;
  s->data = (char *)s + SMALL_HEADER;
  return s;
}

static void small_free_block(pf_storage *s) {
  int c = s->pooled - 1;
  small_free *f = (small_free *)s;
  if (tls_small[c].count * class_bytes(c) < TLS_KEEP_BYTES && tls_usable()) {
    f->next = tls_small[c].head;
    tls_small[c].head = f;
    tls_small[c].count++;
    return;
  }
  shared_put(c, f);
}

static void small_clear(void) {
  tls_flush(NULL); /* the calling thread's: other threads' are theirs */
  for (int c = 0; c < SMALL_CLASSES; c++) {
    small_free *f;
    pthread_mutex_lock(&small[c].lock);
    f = small[c].head;
    small[c].head = NULL;
    small[c].count = 0;
    pthread_mutex_unlock(&small[c].lock);
    while (f != NULL) {
      small_free *next = f->next;
      pf_aligned_free(f);
      f = next;
    }
  }
}

pf_storage *pf_storage_new(size_t nbytes, int device) {
  int c = small_class(nbytes);
  pf_storage *s;
  if (c >= 0) {
    if ((s = small_new(c)) == NULL) return NULL;
  } else {
    if ((s = malloc(sizeof *s)) == NULL) return NULL;
    s->data = cache_take(nbytes);
    if (s->data == NULL) s->data = pf_aligned_alloc(nbytes);
    if (s->data == NULL) {
      free(s);
      return NULL;
    }
  }
  atomic_init(&s->refs, 1);
  s->device = device;
  s->nbytes = nbytes;
  s->parent = NULL;
  s->pooled = c + 1;
  s->release = NULL;
  s->owner = NULL;
  return s;
}

pf_storage *pf_storage_wrap(void *data, size_t nbytes, int device,
                            void (*release)(pf_storage *s), void *owner) {
  pf_storage *s = malloc(sizeof *s);
  if (s == NULL) return NULL;
  atomic_init(&s->refs, 1);
  s->device = device;
  s->nbytes = nbytes;
  s->data = data;
  s->parent = NULL;
  s->pooled = 0;
  s->release = release;
  s->owner = owner;
  return s;
}

pf_storage *pf_storage_view(pf_storage *parent, size_t offset, size_t nbytes) {
  pf_storage *s = malloc(sizeof *s);
  if (s == NULL) return NULL;
  atomic_init(&s->refs, 1);
  s->device = parent->device;
  s->nbytes = nbytes;
  s->data = (char *)parent->data + offset;
  s->parent = pf_storage_ref(parent);
  s->pooled = 0;
  s->release = NULL;
  s->owner = NULL;
  return s;
}

pf_storage *pf_storage_ref(pf_storage *s) {
  atomic_fetch_add_explicit(&s->refs, 1, memory_order_relaxed);
  return s;
}

void pf_storage_unref(pf_storage *s) {
  if (s == NULL) return;
  /* acq_rel: whoever frees must see every write made through other refs. */
  if (atomic_fetch_sub_explicit(&s->refs, 1, memory_order_acq_rel) == 1) {
    if (s->parent) {
      pf_storage_unref(s->parent);
    } else if (s->pooled) {
      small_free_block(s);
      return;
    } else if (s->release != NULL) {
      s->release(s); /* device memory: the device frees it, and s */
      return;
    } else if (!cache_put(s->data, s->nbytes)) {
      pf_aligned_free(s->data);
    }
    free(s);
  }
}
