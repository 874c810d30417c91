#include "runtime/storage.h"

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>

#include "base/pages.h"
#include "base/util.h"

/* Large blocks freed by a step are kept for the next step of the same
 * executable, which asks for the same sizes: a fresh block comes from mmap,
 * costs a page fault per 4 KiB on first touch (more than copying into it)
 * and an munmap when freed (a TLB shootdown across cores). Exact sizes
 * only, a list of blocks per size: a step may free hundreds of blocks of one
 * size (a chain of transfers: a receive buffer per hop), and a cache of 32
 * blocks sent most of them back to the system (bench/transfer, a 64 KiB
 * hop: 190-310 us instead of 33). Up to PATHFLOW_CACHE_BYTES (256 MiB) in
 * all; the sizes used least recently give way first. */
#define CACHE_MIN ((size_t)64 << 10)
#define CACHE_SIZES 32 /* distinct sizes kept */

typedef struct cached_block {
  struct cached_block *next; /* in the block's own first bytes */
  size_t size;               /* for data_free, once evicted */
} cached_block;

/* Blocks of 256 KiB and more come from pf_pages_alloc: on huge pages
 * (those under 2 MiB carved from shared 2 MiB-aligned regions), so that a
 * fresh one is faulted in 2 MiB at a time (on the VMs measured the first
 * write to each 4 KiB page costs 12-13 us: a 64 MiB receive took 139 ms
 * instead of 14), copies into it miss the TLB less (a 4 MiB transfer: 11
 * GB/s on 4 KiB pages, against 15-17 GB/s for MPI between buffers on huge
 * pages), and the kernel's single-copy transfer between ranks (CMA) looks
 * up one page where it looked up 512: a 1 MiB hop between two ranks took
 * 139-165 us on 4 KiB pages, 80-89 on huge ones (bench/transfer; MPI
 * between huge-page buffers 59-81), 256 KiB 49-56 -> 26-27. The price: a
 * 2 MiB page stays resident while any block in it lives, up to 8 times a
 * lone 256 KiB block. Smaller ones from malloc. */
#define PAGES_MIN ((size_t)256 << 10)

static void *data_alloc(size_t n) { return n >= PAGES_MIN ? pf_pages_alloc(n) : pf_aligned_alloc(n); }

static void data_free(void *p, size_t n) {
  if (n >= PAGES_MIN)
    pf_pages_free(p, n);
  else
    pf_aligned_free(p);
}

static struct {
  pthread_mutex_t lock;
  struct {
    size_t size;
    cached_block *head;
    size_t count;
    uint64_t age; /* last put or take: the oldest size gives way first */
  } cls[CACHE_SIZES];
  uint64_t clock;
  size_t bytes, limit;
  int limit_read;
} cache = {.lock = PTHREAD_MUTEX_INITIALIZER};

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

/* The class holding blocks of nbytes, or -1 (lock held). */
static int cache_class(size_t nbytes) {
  for (int i = 0; i < CACHE_SIZES; i++)
    if (cache.cls[i].count > 0 && cache.cls[i].size == nbytes) return i;
  return -1;
}

static void *cache_take(size_t nbytes) {
  cached_block *b = NULL;
  int c;
  if (CACHE_OFF || nbytes < CACHE_MIN) return NULL;
  pthread_mutex_lock(&cache.lock);
  if ((c = cache_class(nbytes)) >= 0) {
    b = cache.cls[c].head;
    cache.cls[c].head = b->next;
    cache.cls[c].count--;
    cache.cls[c].age = ++cache.clock;
    cache.bytes -= nbytes;
  }
  pthread_mutex_unlock(&cache.lock);
  return b;
}

/* The class least recently used that holds blocks, other than `keep` (lock
 * held); -1 if none. */
static int oldest_class(int keep) {
  int oldest = -1;
  for (int i = 0; i < CACHE_SIZES; i++)
    if (i != keep && cache.cls[i].count > 0 &&
        (oldest < 0 || cache.cls[i].age < cache.cls[oldest].age))
      oldest = i;
  return oldest;
}

/* One block of class c leaves the cache, onto *out (lock held). */
static void evict_one(int c, cached_block **out) {
  cached_block *b = cache.cls[c].head;
  cache.cls[c].head = b->next;
  cache.cls[c].count--;
  cache.bytes -= cache.cls[c].size;
  b->next = *out;
  *out = b;
}

/* Back to the system, outside the lock. */
static void free_blocks(cached_block *b) {
  while (b != NULL) {
    cached_block *next = b->next;
    data_free(b, b->size);
    b = next;
  }
}

/* 1 if the cache kept p. */
static int cache_put(void *p, size_t nbytes) {
  cached_block *evicted = NULL, *b = p;
  int c;
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
  if (nbytes > cache.limit) {
    pthread_mutex_unlock(&cache.lock);
    return 0;
  }
  if ((c = cache_class(nbytes)) < 0) {
    /* A class for this size: an empty one, or the oldest size's. */
    for (int i = 0; i < CACHE_SIZES && c < 0; i++)
      if (cache.cls[i].count == 0) c = i;
    if (c < 0) {
      c = oldest_class(-1);
      while (cache.cls[c].count > 0) evict_one(c, &evicted);
    }
    cache.cls[c].size = nbytes;
  }
  /* Room: blocks of the sizes used least recently go first, then older
   * blocks of this size. */
  while (cache.bytes + nbytes > cache.limit) {
    int o = oldest_class(c);
    evict_one(o >= 0 ? o : c, &evicted);
  }
  b->next = cache.cls[c].head;
  b->size = nbytes;
  cache.cls[c].head = b;
  cache.cls[c].count++;
  cache.cls[c].age = ++cache.clock;
  cache.bytes += nbytes;
  pthread_mutex_unlock(&cache.lock);
  free_blocks(evicted);
  return 1;
}

static void small_clear(void);

void pf_storage_cache_clear(void) {
  cached_block *evicted = NULL;
  small_clear();
  pthread_mutex_lock(&cache.lock);
  for (int i = 0; i < CACHE_SIZES; i++)
    while (cache.cls[i].count > 0) evict_one(i, &evicted);
  cache.bytes = 0;
  pthread_mutex_unlock(&cache.lock);
  free_blocks(evicted);
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
/* initial-exec, as executor.c's tls_running: the default model for a
 * shared library calls __tls_get_addr on every access (an allocation and
 * a free per buffer). */
static __thread struct {
  small_free *head;
  size_t count;
} tls_small[SMALL_CLASSES] __attribute__((tls_model("initial-exec")));
static __thread int tls_registered __attribute__((tls_model("initial-exec")));
static pthread_key_t tls_key;
static pthread_once_t tls_once = PTHREAD_ONCE_INIT;
static int tls_key_made;

static size_t class_bytes(int c) { return (size_t)1 << (SMALL_MIN_SHIFT + c); }

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

/* Moves this thread's blocks to the shared lists (beyond their bound:
 * freed). */
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
    if (s->data == NULL) {
      if ((s->data = data_alloc(nbytes)) == NULL) {
        free(s);
        return NULL;
      }
    }
  }
  atomic_init(&s->refs, 1);
  s->device = device;
  s->nbytes = nbytes;
  s->parent = NULL;
  s->pooled = c + 1;
  s->release = NULL;
  s->owner = NULL;
  s->on_device = 0;
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
  s->on_device = 1;
  return s;
}

pf_storage *pf_storage_view(pf_storage *parent, size_t offset, size_t nbytes) {
  pf_storage *s = malloc(sizeof *s);
  if (s == NULL) return NULL;
  atomic_init(&s->refs, 1);
  s->device = parent->device;
  s->nbytes = nbytes;
  s->data = (char *)parent->data + offset;
  s->on_device = parent->on_device;
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
  /* acq_rel: whoever frees must see every write made through other refs.
   * The last reference needs no locked decrement: nobody else holds one,
   * so nobody can take or drop one meanwhile; the acquire load sees the
   * writes made through those dropped before. */
  if (atomic_load_explicit(&s->refs, memory_order_acquire) == 1 ||
      atomic_fetch_sub_explicit(&s->refs, 1, memory_order_acq_rel) == 1) {
    if (s->parent) {
      pf_storage_unref(s->parent);
    } else if (s->pooled) {
      small_free_block(s);
      return;
    } else if (s->release != NULL) {
      s->release(s); /* device memory: the device frees it, and s */
      return;
    } else if (!cache_put(s->data, s->nbytes)) {
      data_free(s->data, s->nbytes);
    }
    free(s);
  }
}
