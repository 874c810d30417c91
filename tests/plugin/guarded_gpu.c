/* A stand-in GPU for machines without one: a device plugin
 * (runtime/device_plugin.h) whose memory the host cannot touch.
 *
 * Each device reports kind PF_DEVICE_GPU, own_memory 1 and stage
 * PF_STAGE_ALL, as the CUDA device does, so the runtime must keep the host
 * off its memory: the scheduler stages transfers and collectives through
 * host buffers, the service moves feeds and fetches across with this
 * device's copy (docs/architecture.md, "Staging through host memory").
 * Its memory is GUARDED: a storage's data
 * pointer lies in a large PROT_NONE reservation, while its bytes live at
 * the same offset of a second, read-write reservation (the shadow). Host
 * code that dereferences a device pointer (a feed written in place, a
 * local collective reducing device blocks, an MPI send from device memory)
 * faults at once, and pathflow's crash handler names the op. Only this
 * device's copy and the kernels it wraps translate device pointers to the
 * shadow; each also checks that the side it does not translate is host
 * memory, and aborts with a message naming the op's side otherwise.
 *
 * Kernels: the CPU built-ins of the CUDA plugin's list, registered for
 * PF_DEVICE_GPU with a compute that translates every view's pointer and
 * calls the CPU compute. The queue: one worker thread per device runs its
 * parts in submission order and each part's ops in queue order, as a
 * stream does (the CPU device's protocol without its hand-offs to the
 * loop thread: ready never hands an op over). Kernels run on a device
 * get a non-NULL pf_kernel_call.stream, distinct per device, as on a CUDA
 * device: a token, not a stream (user GPU kernels' tests check it).
 *
 * Collectives (PATHFLOW_GUARDED_COLLECTIVES=1): the device runs allreduce
 * and broadcast between ranks itself, as a CUDA device with NCCL does
 * (comm_id, comm_join, collective of runtime/device.h), and its stage
 * lacks PF_STAGE_COLLECTIVES. Only for ranks of one process (loopback
 * ranks), whose devices share the arena: members meet in a process-wide
 * table and read each other's inputs in the shadow. A member that never
 * comes aborts the others after PATHFLOW_GUARDED_COMM_TIMEOUT seconds
 * (default 60), naming the communicator.
 *
 * Environment: PATHFLOW_GUARDED_GPUS (devices per rank, default 2),
 * PATHFLOW_GUARDED_GPU_BYTES (memory each reports and may hold, default
 * 1 GiB), PATHFLOW_GUARDED_POISON=0 (do not fill new allocations with
 * 0xff bytes, a NaN in every float dtype: a runtime that reads device
 * memory it never wrote gets garbage, not zeros), PATHFLOW_GUARDED_STAGE
 * (the pf_stage mask info reports, default PF_STAGE_ALL, without
 * PF_STAGE_COLLECTIVES when the device runs them: a smaller one shows the
 * guard catching the paths left unstaged), PATHFLOW_GUARDED_COLLECTIVES
 * and PATHFLOW_GUARDED_COMM_TIMEOUT (above).
 *
 * The module links nothing of libpathflow: every runtime function it uses
 * comes through the pf_device_host table, and the box copy is its own. */
#define _GNU_SOURCE /* MAP_NORESERVE, pthread_setname_np */
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "pathflow/error.h"
#include "runtime/device_plugin.h"
#include "guarded_gpu.h"

#define GG_EXPORT __attribute__((visibility("default")))

/* ---- failing loudly ------------------------------------------------------ */

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fputs("guarded GPU: ", stderr);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
  fflush(stderr);
  abort(); /* the crash handler names the op the thread runs */
}

/* ---- the arena: guarded addresses, shadow bytes -------------------------- */

/* One per process, shared by every device and every open (loopback ranks
 * open the plugin once each): a storage may outlive the device that made
 * it, and the reservations are never unmapped. */
#define GG_CLASSES 48   /* power-of-two size classes, 2^0 .. 2^47 */
#define GG_MIN_SHIFT 8  /* blocks of at least 256 bytes */
#define GG_RESERVE_DEFAULT ((size_t)64 << 30)
#define GG_RESERVE_MIN ((size_t)1 << 30)
#define GG_DONTNEED_MIN ((size_t)64 << 10)

static struct {
  pthread_mutex_t lock;
  char *guard, *shadow; /* size bytes each */
  size_t size, top;     /* bump pointer, an offset */
  /* Freed blocks by class: offsets, linked through their first 8 bytes in
   * the shadow (GG_NIL ends a list). */
  size_t free_head[GG_CLASSES];
  size_t live_bytes;
  int poison;
  int ready; /* 1 once reserved; -1: reserving failed */
} arena = {.lock = PTHREAD_MUTEX_INITIALIZER};

#define GG_NIL SIZE_MAX

static int arena_init_locked(char *err, size_t err_len) {
  const char *p;
  if (arena.ready == 1) return 0;
  for (size_t size = GG_RESERVE_DEFAULT; size >= GG_RESERVE_MIN; size /= 2) {
    void *g = mmap(NULL, size, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    void *s;
    if (g == MAP_FAILED) continue;
    s = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
             -1, 0);
    if (s == MAP_FAILED) {
      munmap(g, size);
      continue;
    }
    arena.guard = g;
    arena.shadow = s;
    arena.size = size;
    arena.top = 0;
    for (int c = 0; c < GG_CLASSES; c++) arena.free_head[c] = GG_NIL;
    p = getenv("PATHFLOW_GUARDED_POISON");
    arena.poison = !(p != NULL && strcmp(p, "0") == 0);
    arena.ready = 1;
    return 0;
  }
  snprintf(err, err_len, "guarded GPU: cannot reserve %zu GiB of address space twice",
           GG_RESERVE_MIN >> 30);
  return PF_ENOMEM;
}

int gg_arena_init(char *err, size_t err_len) {
  int rc;
  pthread_mutex_lock(&arena.lock);
  rc = arena_init_locked(err, err_len);
  pthread_mutex_unlock(&arena.lock);
  return rc;
}

/* The class of a request: the smallest power of two >= nbytes, at least
 * 2^GG_MIN_SHIFT. */
static int size_class(size_t nbytes) {
  int c = GG_MIN_SHIFT;
  while (c < GG_CLASSES - 1 && ((size_t)1 << c) < nbytes) c++;
  return c;
}

size_t gg_block_bytes(size_t nbytes) { return (size_t)1 << size_class(nbytes); }

int gg_is_device(const void *p) {
  const char *c = p;
  return arena.guard != NULL && c >= arena.guard && c < arena.guard + arena.size;
}

void *gg_shadow(const void *p) {
  if (!gg_is_device(p)) return NULL;
  return arena.shadow + ((const char *)p - arena.guard);
}

void *gg_alloc(size_t nbytes) {
  int c = size_class(nbytes == 0 ? 1 : nbytes);
  size_t bytes = (size_t)1 << c, off;
  pthread_mutex_lock(&arena.lock);
  if (arena.ready != 1) {
    pthread_mutex_unlock(&arena.lock);
    return NULL;
  }
  if ((off = arena.free_head[c]) != GG_NIL) {
    memcpy(&arena.free_head[c], arena.shadow + off, sizeof off);
  } else {
    /* Blocks are aligned to their size up to 64 KiB: a freed block of 64
     * KiB or more gives its pages back whole (madvise). */
    size_t align = bytes < GG_DONTNEED_MIN ? bytes : GG_DONTNEED_MIN;
    off = (arena.top + align - 1) & ~(align - 1);
    if (off > arena.size || arena.size - off < bytes) {
      pthread_mutex_unlock(&arena.lock);
      return NULL;
    }
    arena.top = off + bytes;
  }
  arena.live_bytes += bytes;
  pthread_mutex_unlock(&arena.lock);
  if (arena.poison) memset(arena.shadow + off, 0xff, nbytes);
  return arena.guard + off;
}

void gg_free(void *p, size_t nbytes) {
  int c = size_class(nbytes == 0 ? 1 : nbytes);
  size_t bytes = (size_t)1 << c, off;
  if (!gg_is_device(p)) die("free of %p, which is not device memory", p);
  off = (size_t)((char *)p - arena.guard);
  if (bytes >= GG_DONTNEED_MIN) madvise(arena.shadow + off, bytes, MADV_DONTNEED);
  pthread_mutex_lock(&arena.lock);
  memcpy(arena.shadow + off, &arena.free_head[c], sizeof off);
  arena.free_head[c] = off;
  arena.live_bytes -= bytes;
  pthread_mutex_unlock(&arena.lock);
}

size_t gg_live_bytes(void) {
  size_t n;
  pthread_mutex_lock(&arena.lock);
  n = arena.live_bytes;
  pthread_mutex_unlock(&arena.lock);
  return n;
}

/* ---- box copies (base/box.h's pf_box_copy, on raw bytes) ------------------ */

void gg_box_copy(void *dst, const int64_t *dst_dims, const void *src, const int64_t *src_dims,
                 const pf_box *box, size_t es) {
  int64_t ds[PF_MAX_RANK], ss[PF_MAX_RANK], idx[PF_MAX_RANK];
  int64_t doff = 0, soff = 0, run;
  int r = box->rank, inner;
  if (r == 0) {
    memcpy(dst, src, es);
    return;
  }
  for (int i = 0; i < r; i++)
    if (box->extent[i] <= 0) return;
  ds[r - 1] = ss[r - 1] = 1;
  for (int i = r - 2; i >= 0; i--) {
    ds[i] = ds[i + 1] * dst_dims[i + 1];
    ss[i] = ss[i + 1] * src_dims[i + 1];
  }
  for (int i = 0; i < r; i++) {
    doff += box->dst_offset[i] * ds[i];
    soff += box->src_offset[i] * ss[i];
  }
  /* One memcpy per run: the inner dimensions taken whole in both tensors
   * join the innermost one. */
  inner = r - 1;
  run = box->extent[inner];
  while (inner > 0 && box->extent[inner] == dst_dims[inner] &&
         box->extent[inner] == src_dims[inner]) {
    inner--;
    run *= box->extent[inner];
  }
  for (int i = 0; i < inner; i++) idx[i] = 0;
  for (;;) {
    int64_t d = doff, s = soff;
    int i;
    for (i = 0; i < inner; i++) {
      d += idx[i] * ds[i];
      s += idx[i] * ss[i];
    }
    memcpy((char *)dst + (size_t)d * es, (const char *)src + (size_t)s * es, (size_t)run * es);
    for (i = inner - 1; i >= 0; i--) {
      if (++idx[i] < box->extent[i]) break;
      idx[i] = 0;
    }
    if (i < 0) break;
  }
}

/* ---- the device ----------------------------------------------------------- */

typedef struct gg_device {
  pf_device base;
  const pf_device_host *host;
  int index, rank;
  int64_t memory_bytes;
  uint32_t stage; /* what info reports */
  pf_clock *clock;
  pf_running_slot running;
  pthread_t thread;
  pthread_mutex_t lock;
  pthread_cond_t wake;
  pf_part *head, *tail; /* guarded by lock */
  int stop;
  /* The device itself, and one per live allocation: a storage may be freed
   * after the executor destroyed its device. */
  atomic_int refs;
  /* Bytes of live allocations, as asked for: what the scheduler planned
   * against memory_bytes (the size classes' slack is address space only). */
  _Atomic int64_t used;
  _Atomic uint64_t ops_run, wait_ns, copies, launches;
  /* What pf_kernel_call.stream points at for kernels run here: a CUDA
   * device passes its stream, so a GPU kernel may rely on a non-NULL one,
   * distinct per device. Nothing reads it. */
  char stream_token;
} gg_device;

static void device_unref(gg_device *g) {
  if (atomic_fetch_sub(&g->refs, 1) != 1) return;
  pthread_mutex_destroy(&g->lock);
  pthread_cond_destroy(&g->wake);
  free(g);
}

static void gg_info(pf_device *d, pf_device_info *out) {
  gg_device *g = (gg_device *)d;
  memset(out, 0, sizeof *out);
  out->kind = PF_DEVICE_GPU;
  out->index = g->index;
  out->memory_bytes = g->memory_bytes;
  out->own_memory = 1;
  out->stage = g->stage;
}

/* What an allocation counts against the device's memory. */
static int64_t charge(size_t nbytes) { return (int64_t)(nbytes == 0 ? 1 : nbytes); }

static void gg_release(pf_storage *s) {
  gg_device *g = s->owner;
  int64_t bytes = charge(s->nbytes);
  gg_free(s->data, s->nbytes);
  atomic_fetch_sub(&g->used, bytes);
  free(s); /* malloc'd by storage_wrap */
  device_unref(g);
}

/* Device memory: NULL past the memory it reports (as a real GPU runs out),
 * or when the arena is full. */
static pf_storage *gg_dev_alloc(pf_device *d, size_t nbytes) {
  gg_device *g = (gg_device *)d;
  int64_t bytes = charge(nbytes);
  pf_storage *s;
  void *p;
  if (atomic_fetch_add(&g->used, bytes) + bytes > g->memory_bytes) {
    atomic_fetch_sub(&g->used, bytes);
    return NULL;
  }
  if ((p = gg_alloc(nbytes)) == NULL) {
    atomic_fetch_sub(&g->used, bytes);
    return NULL;
  }
  atomic_fetch_add(&g->refs, 1);
  if ((s = g->host->storage_wrap(p, nbytes, g->index, gg_release, g)) == NULL) {
    gg_free(p, nbytes);
    atomic_fetch_sub(&g->used, bytes);
    device_unref(g);
  }
  return s;
}

static const char *const dir_names[] = {"D2D", "H2D", "D2H"};

/* The device side of a copy: translated to the shadow. */
static void *device_side(const gg_device *g, pf_copy_dir dir, const char *side, const void *p) {
  void *q = gg_shadow(p);
  if (q == NULL)
    die("device %d (rank %d): %s copy: %s %p is not device memory", g->index, g->rank,
        dir_names[dir], side, p);
  return q;
}

/* The host side of a copy: must not be device memory (a D2D the runtime
 * thought was H2D would otherwise fault here, in the device's own copy,
 * where the crash report would blame the device). */
static void host_side(const gg_device *g, pf_copy_dir dir, const char *side, const void *p) {
  if (gg_is_device(p))
    die("device %d (rank %d): %s copy: %s %p is device memory, not host memory", g->index,
        g->rank, dir_names[dir], side, p);
}

static int gg_copy(pf_device *d, pf_copy_dir dir, void *dst, const int64_t *dst_dims,
                   const void *src, const int64_t *src_dims, const pf_box *box,
                   size_t elem_size) {
  gg_device *g = (gg_device *)d;
  void *to = dst;
  const void *from = src;
  for (int i = 0; i < box->rank; i++)
    if (box->extent[i] <= 0) return 0; /* nothing moves: pointers unchecked */
  switch (dir) {
    case PF_COPY_D2D:
      to = device_side(g, dir, "dst", dst);
      from = device_side(g, dir, "src", src);
      break;
    case PF_COPY_H2D:
      to = device_side(g, dir, "dst", dst);
      host_side(g, dir, "src", src);
      break;
    case PF_COPY_D2H:
      from = device_side(g, dir, "src", src);
      host_side(g, dir, "dst", dst);
      break;
    default:
      die("device %d (rank %d): copy direction %d", g->index, g->rank, (int)dir);
  }
  atomic_fetch_add_explicit(&g->copies, 1, memory_order_relaxed);
  gg_box_copy(to, dst_dims, from, src_dims, box, elem_size);
  return 0;
}

static void gg_submit(pf_device *d, pf_part *part) {
  gg_device *g = (gg_device *)d;
  part->next = NULL;
  pthread_mutex_lock(&g->lock);
  if (g->tail)
    g->tail->next = part;
  else
    g->head = part;
  g->tail = part;
  pthread_cond_signal(&g->wake);
  pthread_mutex_unlock(&g->lock);
}

/* The worker may sleep on exactly this op: it checks readiness under the
 * lock before sleeping, and the op's count fell before this call, so the
 * signal cannot be lost. Never hands the op over. */
static int gg_ready(pf_device *d, pf_step *s, uint32_t op, int may_claim) {
  gg_device *g = (gg_device *)d;
  (void)s;
  (void)op;
  (void)may_claim;
  pthread_mutex_lock(&g->lock);
  pthread_cond_signal(&g->wake);
  pthread_mutex_unlock(&g->lock);
  return 0;
}

static pf_running_slot *gg_running(pf_device *d) { return &((gg_device *)d)->running; }

static void *gg_stream(pf_device *d) { return &((gg_device *)d)->stream_token; }

static void gg_counters(pf_device *d, uint64_t *ops_run, uint64_t *wait_ns) {
  gg_device *g = (gg_device *)d;
  *ops_run = atomic_load_explicit(&g->ops_run, memory_order_relaxed);
  *wait_ns = atomic_load_explicit(&g->wait_ns, memory_order_relaxed);
}

static void run_part(gg_device *g, pf_step *s) {
  const pf_device_host *h = g->host;
  uint32_t n;
  const uint32_t *q = h->step_device_queue(s, g->index, &n);
  for (uint32_t e = 0; e < n; e++) {
    uint32_t op = q[e];
    if (!h->step_op_ready(s, op)) {
      uint64_t t0 = pf_clock_now(g->clock);
      pthread_mutex_lock(&g->lock);
      while (!h->step_op_ready(s, op)) pthread_cond_wait(&g->wake, &g->lock);
      pthread_mutex_unlock(&g->lock);
      atomic_fetch_add_explicit(&g->wait_ns, pf_clock_now(g->clock) - t0,
                                memory_order_relaxed);
    }
    atomic_fetch_add_explicit(&g->ops_run, (uint64_t)h->step_run_op(s, op),
                              memory_order_relaxed);
    h->step_op_done(s, op, g->index);
  }
}

static void *worker_main(void *arg) {
  gg_device *g = arg;
  g->host->running_bind(&g->running);
  pthread_mutex_lock(&g->lock);
  for (;;) {
    pf_part *p;
    while (g->head == NULL && !g->stop) pthread_cond_wait(&g->wake, &g->lock);
    if ((p = g->head) == NULL) break; /* stopped, queue drained */
    if ((g->head = p->next) == NULL) g->tail = NULL;
    pthread_mutex_unlock(&g->lock);
    {
      pf_step *s = p->step; /* p lives in the step: not read after this */
      run_part(g, s);
      g->host->step_part_done(s); /* s may be freed now */
    }
    pthread_mutex_lock(&g->lock);
  }
  pthread_mutex_unlock(&g->lock);
  g->host->running_bind(NULL);
  return NULL;
}

static void gg_destroy(pf_device *d) {
  gg_device *g = (gg_device *)d;
  pthread_mutex_lock(&g->lock);
  g->stop = 1;
  pthread_cond_signal(&g->wake);
  pthread_mutex_unlock(&g->lock);
  pthread_join(g->thread, NULL);
  device_unref(g);
}

/* ---- collectives on device memory (comm_id, comm_join, collective) ------- */

/* Only between ranks of one process (loopback ranks): their devices share
 * the arena, so a member reads the others' inputs in the shadow directly,
 * as NCCL's kernels read peers' memory over NVLink. Off unless
 * PATHFLOW_GUARDED_COLLECTIVES=1: the ops stay NULL and the scheduler
 * stages every collective, as for a device without them. */

static int env_int64(const char *name, int64_t dflt, int64_t *out);

/* A communicator's id: magic, the process, a salt drawn once per process
 * and a serial. The pid lets comm_join refuse an id from another process
 * at once (nothing here could reach it) instead of waiting for members
 * that never come; the salt, an id left over from an earlier process with
 * the same pid. */
#define GG_ID_MAGIC "ggc1"
#define GG_ID_LEN 24
#define GG_COMM_TIMEOUT_S 60

typedef struct gg_comm_id {
  uint32_t pid;
  uint64_t salt, serial;
} gg_comm_id;

static pthread_once_t salt_once = PTHREAD_ONCE_INIT;
static uint64_t id_salt;
static atomic_uint_fast64_t id_serial;

static void salt_init(void) {
  struct timespec ts;
  uint64_t x;
  clock_gettime(CLOCK_REALTIME, &ts);
  x = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
  x ^= (uint64_t)(uintptr_t)&ts * 0x9e3779b97f4a7c15u; /* the stack's place, randomized */
  x ^= x >> 31; /* splitmix64's finish: every input bit reaches every output bit */
  x *= 0xbf58476d1ce4e5b9u;
  x ^= x >> 27;
  id_salt = x;
}

static int gg_comm_id_make(pf_device *d, uint8_t *id, size_t *len, pf_diag *diag) {
  uint32_t pid = (uint32_t)getpid();
  uint64_t serial = atomic_fetch_add(&id_serial, 1) + 1;
  (void)d;
  (void)diag; /* never fails */
  pthread_once(&salt_once, salt_init);
  memcpy(id, GG_ID_MAGIC, 4);
  memcpy(id + 4, &pid, 4);
  memcpy(id + 8, &id_salt, 8);
  memcpy(id + 16, &serial, 8);
  *len = GG_ID_LEN;
  return 0;
}

/* What one member posts for a collective: its arguments, pointers already
 * translated to the shadow. */
typedef struct gg_post {
  pf_device_collective c;
  const void *in; /* shadow */
} gg_post;

/* The rendezvous of one communicator, in the process-wide table while any
 * member holds it. Everything in it is guarded by comms.lock. */
typedef struct gg_comm {
  struct gg_comm *next;
  uint8_t id[GG_ID_LEN];
  char name[64]; /* for messages */
  int n;
  int joined;          /* members that joined (each once) */
  int refs;            /* members that joined and have not left */
  unsigned char *have; /* n flags: member k joined */
  int timeout_s;
  pthread_cond_t cond;
  /* The barrier: `arrived` members wait for `gen` to move, the last one
   * moves it. A member released from one barrier can only arrive at the
   * next after the count was reset: consecutive barriers never mix. */
  uint64_t gen;
  int arrived;
  gg_post *posts; /* n */
} gg_comm;

/* A member's handle (what comm_join gives): the rendezvous and its place
 * in it, which the collective needs and the shared object cannot say. */
typedef struct gg_member {
  gg_comm *comm;
  int me;
} gg_member;

static struct {
  pthread_mutex_t lock;
  gg_comm *head;
} comms = {.lock = PTHREAD_MUTEX_INITIALIZER};

/* pf_diag_error's meaning (the first error wins), written here: the module
 * links nothing of libpathflow. */
static int diag_set(pf_diag *d, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int diag_set(pf_diag *d, int code, const char *fmt, ...) {
  va_list ap;
  if (d == NULL || d->code != 0) return code;
  d->code = code;
  va_start(ap, fmt);
  vsnprintf(d->msg, sizeof d->msg, fmt, ap);
  va_end(ap);
  return code;
}

static void comm_free(gg_comm *c) {
  pthread_cond_destroy(&c->cond);
  free(c->have);
  free(c->posts);
  free(c);
}

static gg_comm *comm_new(const uint8_t *id, const gg_comm_id *parsed, int n) {
  gg_comm *c = calloc(1, sizeof *c);
  pthread_condattr_t attr;
  int64_t t;
  if (c == NULL) return NULL;
  c->have = calloc((size_t)n, 1);
  c->posts = calloc((size_t)n, sizeof *c->posts);
  if (c->have == NULL || c->posts == NULL) {
    free(c->have);
    free(c->posts);
    free(c);
    return NULL;
  }
  memcpy(c->id, id, GG_ID_LEN);
  snprintf(c->name, sizeof c->name, "%u:%016llx:%llu", (unsigned)parsed->pid,
           (unsigned long long)parsed->salt, (unsigned long long)parsed->serial);
  c->n = n;
  /* PATHFLOW_GUARDED_COMM_TIMEOUT: seconds a member waits for the others
   * before it aborts (tests of the abort shorten it). */
  if (env_int64("PATHFLOW_GUARDED_COMM_TIMEOUT", GG_COMM_TIMEOUT_S, &t) != 0 || t <= 0 ||
      t > 86400)
    t = GG_COMM_TIMEOUT_S;
  c->timeout_s = (int)t;
  /* Deadlines on the monotonic clock: a wall clock step cannot cut a wait
   * short nor stretch it. */
  pthread_condattr_init(&attr);
  pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
  pthread_cond_init(&c->cond, &attr);
  pthread_condattr_destroy(&attr);
  return c;
}

static struct timespec deadline_in(int seconds) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  ts.tv_sec += seconds;
  return ts;
}

/* With comms.lock held: waits until every member has arrived here. A
 * member that never comes (its rank hung, or the runtime ran collectives
 * out of gang order) would hang the others silently: abort, naming the
 * communicator, once the timeout passes. */
static void comm_barrier_locked(gg_comm *c, const gg_device *g, int me, const char *what) {
  uint64_t gen = c->gen;
  struct timespec until;
  if (++c->arrived == c->n) {
    c->arrived = 0;
    c->gen++;
    pthread_cond_broadcast(&c->cond);
    return;
  }
  until = deadline_in(c->timeout_s);
  while (c->gen == gen)
    if (pthread_cond_timedwait(&c->cond, &comms.lock, &until) != 0 && c->gen == gen)
      die("device %d (rank %d): communicator %s: member %d of %d waited %d s %s, and only "
          "%d of %d members came",
          g->index, g->rank, c->name, me, c->n, c->timeout_s, what, c->arrived, c->n);
}

static int gg_comm_join(pf_device *d, const uint8_t *id, size_t len, int n, int me, void **comm,
                        pf_diag *diag) {
  gg_device *g = (gg_device *)d;
  gg_comm_id parsed;
  gg_comm *c;
  gg_member *m;
  struct timespec until;
  *comm = NULL;
  if (n < 1 || me < 0 || me >= n)
    return diag_set(diag, PF_EINVAL, "guarded GPU %d (rank %d): member %d of %d", g->index,
                    g->rank, me, n);
  /* The runtime hands ids on zero-padded to PF_COMM_ID_MAX bytes. */
  for (size_t k = GG_ID_LEN; k < len; k++)
    if (id[k] != 0) len = 0;
  if (len < GG_ID_LEN || memcmp(id, GG_ID_MAGIC, 4) != 0)
    return diag_set(diag, PF_EINVAL,
                    "guarded GPU %d (rank %d): a communicator id of %zu bytes that no guarded "
                    "GPU made",
                    g->index, g->rank, len);
  memcpy(&parsed.pid, id + 4, 4);
  memcpy(&parsed.salt, id + 8, 8);
  memcpy(&parsed.serial, id + 16, 8);
  if (parsed.pid != (uint32_t)getpid())
    return diag_set(diag, PF_ENOTSUP,
                    "guarded GPU %d (rank %d): communicator made in process %u, this is "
                    "process %u: the guarded GPU's collectives join only ranks of one "
                    "process (PATHFLOW_LOOPBACK_RANKS)",
                    g->index, g->rank, (unsigned)parsed.pid, (unsigned)getpid());
  if ((m = malloc(sizeof *m)) == NULL) return diag_set(diag, PF_ENOMEM, "out of memory");
  pthread_mutex_lock(&comms.lock);
  for (c = comms.head; c != NULL; c = c->next)
    if (memcmp(c->id, id, GG_ID_LEN) == 0) break;
  if (c == NULL) {
    if ((c = comm_new(id, &parsed, n)) == NULL) {
      pthread_mutex_unlock(&comms.lock);
      free(m);
      return diag_set(diag, PF_ENOMEM, "out of memory");
    }
    c->next = comms.head;
    comms.head = c;
  } else if (c->n != n || c->have[me]) {
    int rc = diag_set(diag, PF_EINVAL,
                      "guarded GPU %d (rank %d): communicator %s has %d members, member %d of "
                      "%d %s",
                      g->index, g->rank, c->name, c->n, me, n,
                      c->n != n ? "cannot join it" : "joined it already");
    pthread_mutex_unlock(&comms.lock);
    free(m);
    return rc;
  }
  c->have[me] = 1;
  c->joined++;
  c->refs++;
  if (c->joined == c->n) pthread_cond_broadcast(&c->cond);
  until = deadline_in(c->timeout_s);
  while (c->joined < c->n)
    if (pthread_cond_timedwait(&c->cond, &comms.lock, &until) != 0 && c->joined < c->n) {
      int missing = 0;
      while (c->have[missing]) missing++;
      die("device %d (rank %d): communicator %s: member %d of %d waited %d s for the others "
          "to join, and only %d came (member %d did not)",
          g->index, g->rank, c->name, me, n, c->timeout_s, c->joined, missing);
    }
  pthread_mutex_unlock(&comms.lock);
  m->comm = c;
  m->me = me;
  *comm = m;
  return 0;
}

static void gg_comm_leave(pf_device *d, void *comm) {
  gg_member *m = comm;
  gg_comm *c, **pp;
  int last;
  (void)d;
  if (m == NULL) return;
  c = m->comm;
  pthread_mutex_lock(&comms.lock);
  last = --c->refs == 0;
  if (last)
    for (pp = &comms.head; *pp != NULL; pp = &(*pp)->next)
      if (*pp == c) {
        *pp = c->next;
        break;
      }
  pthread_mutex_unlock(&comms.lock);
  if (last) comm_free(c);
  free(m);
}

static size_t reduce_dtype_size(pf_dtype dt) {
  switch (dt) {
    case PF_F32: return 4;
    case PF_F64: return 8;
    case PF_I32: return 4;
    case PF_I64: return 8;
    default: return 0;
  }
}

static const char *const kind_names[] = {"allreduce", "allgather", "reduce_scatter",
                                         "broadcast", "all_to_all"};

static const char *kind_name(int kind) {
  return kind >= 0 && kind < (int)(sizeof kind_names / sizeof kind_names[0]) ? kind_names[kind]
                                                                             : "?";
}

/* Whether the collective all members posted can run; 0 or a PF_E code in
 * diag. Every member judges the same posts, so all return the same. */
static int collective_check(const gg_comm *c, const gg_device *g, pf_diag *diag) {
  const pf_device_collective *a = &c->posts[0].c;
  for (int k = 1; k < c->n; k++) {
    const pf_device_collective *b = &c->posts[k].c;
    if (b->kind != a->kind || b->dtype != a->dtype || b->count != a->count ||
        ((a->kind == PF_ALLREDUCE || a->kind == PF_REDUCE_SCATTER) &&
         b->reduce_op != a->reduce_op) ||
        (a->kind == PF_BROADCAST && b->root != a->root))
      return diag_set(diag, PF_EINVAL,
                      "guarded GPU %d (rank %d): communicator %s: member %d runs %s (dtype "
                      "%d, %zu elements, op %d, root %d), member 0 %s (dtype %d, %zu "
                      "elements, op %d, root %d)",
                      g->index, g->rank, c->name, k, kind_name(b->kind), (int)b->dtype,
                      b->count, b->reduce_op, b->root, kind_name(a->kind), (int)a->dtype,
                      a->count, a->reduce_op, a->root);
  }
  if (a->kind != PF_ALLREDUCE && a->kind != PF_BROADCAST && a->kind != PF_ALLGATHER &&
      a->kind != PF_REDUCE_SCATTER && a->kind != PF_ALL_TO_ALL)
    return diag_set(diag, PF_ENOTSUP, "guarded GPU %d (rank %d): collective %s (%d) on device",
                    g->index, g->rank, kind_name(a->kind), a->kind);
  if (reduce_dtype_size(a->dtype) == 0)
    return diag_set(diag, PF_ENOTSUP, "guarded GPU %d (rank %d): %s of dtype %d on device",
                    g->index, g->rank, kind_name(a->kind), (int)a->dtype);
  if ((a->kind == PF_ALLREDUCE || a->kind == PF_REDUCE_SCATTER) &&
      (a->reduce_op < 0 || a->reduce_op >= PF_REDUCE_COUNT ||
       (a->reduce_op == PF_REDUCE_MEAN && a->dtype != PF_F32 && a->dtype != PF_F64)))
    return diag_set(diag, PF_ENOTSUP, "guarded GPU %d (rank %d): allreduce op %d of dtype %d",
                    g->index, g->rank, a->reduce_op, (int)a->dtype);
  if (a->kind == PF_BROADCAST && (a->root < 0 || a->root >= c->n))
    return diag_set(diag, PF_EINVAL, "guarded GPU %d (rank %d): broadcast root %d of %d",
                    g->index, g->rank, a->root, c->n);
  return 0;
}

/* acc[i] = op(acc[i], src[i]), as base/reduce.c's pf_reduce_into (the
 * same comparisons, the same order of the operands): what the staged path
 * and the local collectives compute, bit for bit. */
#define GG_REDUCE(T)                                                          \
  do {                                                                        \
    T *a = acc;                                                               \
    const T *s = src;                                                         \
    if (op == PF_REDUCE_MAX)                                                  \
      for (size_t i = 0; i < n; i++) a[i] = s[i] > a[i] ? s[i] : a[i];        \
    else if (op == PF_REDUCE_MIN)                                             \
      for (size_t i = 0; i < n; i++) a[i] = s[i] < a[i] ? s[i] : a[i];        \
    else                                                                      \
      for (size_t i = 0; i < n; i++) a[i] = a[i] + s[i];                      \
  } while (0)

static void reduce_into(void *acc, const void *src, size_t n, pf_dtype dt, int op) {
  switch (dt) {
    case PF_F32: GG_REDUCE(float); break;
    case PF_F64: GG_REDUCE(double); break;
    case PF_I32: GG_REDUCE(int32_t); break;
    case PF_I64: GG_REDUCE(int64_t); break;
    default: break; /* refused by collective_check */
  }
}

/* The collective, on the calling thread (the device's worker). Three
 * barriers: after the first every member's input is posted; between the
 * first and the second each member reads all inputs and computes its
 * result into a private buffer (out may be in: nobody writes out while
 * anyone still reads inputs); after the second each copies the result to
 * its out; the third holds every member until all outs are written (the
 * interface: it completes when every member's has) and lets a member post
 * again only when nobody reads the posts any more. Inputs are read in
 * member order, so every member computes the same bits. */
static int gg_collective(pf_device *d, const pf_device_collective *c, pf_diag *diag) {
  gg_device *g = (gg_device *)d;
  gg_member *m = c->comm;
  gg_comm *cm;
  size_t es = reduce_dtype_size(c->dtype), bytes = es * c->count, out_bytes;
  void *out = NULL, *tmp = NULL;
  const void *in = NULL;
  int rc;
  if (m == NULL) die("device %d (rank %d): collective without a communicator", g->index, g->rank);
  cm = m->comm;
  /* count is each member's share (runtime/device.h): an allgather's out
   * holds n of them. */
  out_bytes = c->kind == PF_ALLGATHER || c->kind == PF_ALL_TO_ALL ? bytes * (size_t)cm->n : bytes;
  /* Pointers as the kernels check them: device memory, translated. An
   * empty collective moves nothing (its pointers are not looked at). */
  if (bytes > 0) {
    if ((in = gg_shadow(c->in)) == NULL)
      die("device %d (rank %d): %s on communicator %s: in %p is not device memory", g->index,
          g->rank, kind_name(c->kind), cm->name, c->in);
    if ((out = gg_shadow(c->out)) == NULL)
      die("device %d (rank %d): %s on communicator %s: out %p is not device memory", g->index,
          g->rank, kind_name(c->kind), cm->name, c->out);
    tmp = malloc(out_bytes);
  }
  pthread_mutex_lock(&comms.lock);
  cm->posts[m->me].c = *c;
  cm->posts[m->me].in = in;
  comm_barrier_locked(cm, g, m->me, "for the others' inputs");
  pthread_mutex_unlock(&comms.lock);
  /* Until the second barrier nobody posts again: the posts hold still. */
  if ((rc = collective_check(cm, g, diag)) == 0 && bytes > 0) {
    if (tmp == NULL) {
      rc = diag_set(diag, PF_ENOMEM, "guarded GPU %d (rank %d): %zu bytes for a %s", g->index,
                    g->rank, bytes, kind_name(c->kind));
    } else if (c->kind == PF_BROADCAST) {
      memcpy(tmp, cm->posts[c->root].in, bytes);
    } else if (c->kind == PF_ALLGATHER) {
      for (int k = 0; k < cm->n; k++)
        memcpy((char *)tmp + (size_t)k * bytes, cm->posts[k].in, bytes);
    } else if (c->kind == PF_ALL_TO_ALL) {
      /* Chunk k of out: member k's chunk `me`. */
      for (int k = 0; k < cm->n; k++)
        memcpy((char *)tmp + (size_t)k * bytes,
               (const char *)cm->posts[k].in + (size_t)m->me * bytes, bytes);
    } else {
      /* Allreduce: the whole; reduce-scatter: block `me` of every input. */
      size_t at = c->kind == PF_REDUCE_SCATTER ? (size_t)m->me * bytes : 0;
      memcpy(tmp, (const char *)cm->posts[0].in + at, bytes);
      for (int k = 1; k < cm->n; k++)
        reduce_into(tmp, (const char *)cm->posts[k].in + at, c->count, c->dtype, c->reduce_op);
      /* MEAN: the sum over the members divided by their count, as
       * pf_reduce_finish does after a staged allreduce. */
      if (c->reduce_op == PF_REDUCE_MEAN && cm->n > 1) {
        if (c->dtype == PF_F32)
          for (size_t i = 0; i < c->count; i++) ((float *)tmp)[i] /= (float)cm->n;
        else
          for (size_t i = 0; i < c->count; i++) ((double *)tmp)[i] /= (double)cm->n;
      }
    }
  }
  pthread_mutex_lock(&comms.lock);
  comm_barrier_locked(cm, g, m->me, "for the others to read the inputs");
  pthread_mutex_unlock(&comms.lock);
  if (rc == 0 && bytes > 0) memcpy(out, tmp, out_bytes);
  pthread_mutex_lock(&comms.lock);
  comm_barrier_locked(cm, g, m->me, "for the others to write their results");
  pthread_mutex_unlock(&comms.lock);
  free(tmp);
  return rc;
}

static const pf_device_ops gg_ops = {
    .info = gg_info,
    .alloc = gg_dev_alloc,
    .copy = gg_copy,
    .submit = gg_submit,
    .ready = gg_ready,
    .release = NULL, /* ready never hands an op over */
    .claim = NULL,
    .running = gg_running,
    .stream = gg_stream,
    .counters = gg_counters,
    .destroy = gg_destroy,
};

/* gg_ops with the collectives (PATHFLOW_GUARDED_COLLECTIVES=1). */
static const pf_device_ops gg_ops_collectives = {
    .info = gg_info,
    .alloc = gg_dev_alloc,
    .copy = gg_copy,
    .submit = gg_submit,
    .ready = gg_ready,
    .release = NULL,
    .claim = NULL,
    .running = gg_running,
    .stream = gg_stream,
    .comm_id = gg_comm_id_make,
    .comm_join = gg_comm_join,
    .comm_leave = gg_comm_leave,
    .collective = gg_collective,
    .counters = gg_counters,
    .destroy = gg_destroy,
};

int gg_device_create(const pf_device_host *host, int index, int rank, int64_t memory_bytes,
                     pf_clock *clock, pf_device **out) {
  gg_device *g;
  char name[16];
  *out = NULL;
  if ((g = calloc(1, sizeof *g)) == NULL) return PF_ENOMEM;
  g->base.ops = &gg_ops;
  g->host = host;
  g->index = index;
  g->rank = rank;
  g->memory_bytes = memory_bytes;
  g->stage = PF_STAGE_ALL;
  g->clock = clock;
  g->running.rank = rank;
  atomic_init(&g->refs, 1);
  pthread_mutex_init(&g->lock, NULL);
  pthread_cond_init(&g->wake, NULL);
  if (pthread_create(&g->thread, NULL, worker_main, g) != 0) {
    device_unref(g);
    return PF_ESYS;
  }
  snprintf(name, sizeof name, "pf-ggpu%d", index);
  pthread_setname_np(g->thread, name);
  *out = &g->base;
  return 0;
}

void gg_device_set_stage(pf_device *d, uint32_t stage) { ((gg_device *)d)->stage = stage; }

/* Before the device is handed to the executor: its ops table is read
 * without a lock. */
void gg_device_set_collectives(pf_device *d, int on) {
  d->ops = on ? &gg_ops_collectives : &gg_ops;
}

uint64_t gg_device_copies(const pf_device *d) {
  return atomic_load(&((const gg_device *)d)->copies);
}

/* ---- kernels -------------------------------------------------------------- */

/* The CPU kernels it runs for the GPU kind: the CUDA plugin's list
 * (cuda/kernels.c), so a graph that runs here runs there too. */
typedef struct gg_kernel {
  const char *name;
  pf_compute_fn compute; /* the CPU kernel's; NULL: not registered */
  void *user;            /* and its user */
} gg_kernel;

static gg_kernel kernels[] = {
    {"fill", NULL, NULL},          {"iota", NULL, NULL},
    {"identity", NULL, NULL},      {"init_uniform", NULL, NULL},
    {"add", NULL, NULL},           {"sub", NULL, NULL},
    {"mul", NULL, NULL},           {"scale", NULL, NULL},
    {"relu", NULL, NULL},          {"relu_grad", NULL, NULL},
    {"sgd", NULL, NULL},           {"bias_add", NULL, NULL},
    {"matmul", NULL, NULL},        {"reduce_sum", NULL, NULL},
    {"reduce_sum_grad", NULL, NULL}, {"argmax", NULL, NULL},
    {"softmax_xent", NULL, NULL},  {"accuracy", NULL, NULL},
    {"momentum", NULL, NULL},      {"adam", NULL, NULL},
    {"batch_rows", NULL, NULL},    {"pack", NULL, NULL},
    {"unpack", NULL, NULL},        {"unpack_grad", NULL, NULL},
    {"microbatch", NULL, NULL},
};
static pthread_mutex_t kernels_lock = PTHREAD_MUTEX_INITIALIZER;

#define GG_VIEWS_ON_STACK 16

/* A kernel view's pointer, translated: a GPU kernel is only ever given
 * device memory (NULL, for an empty tensor, is left alone). */
static void *kernel_side(const pf_kernel_call *call, const gg_kernel *k, const char *side,
                         int i, void *p) {
  void *q;
  if (p == NULL) return NULL;
  if ((q = gg_shadow(p)) == NULL)
    die("kernel %s on device %d: %s %d at %p is not device memory", k->name, call->device,
        side, i, p);
  return q;
}

static int gg_compute(const pf_kernel_call *call) {
  const gg_kernel *k = call->user;
  pf_view in_buf[GG_VIEWS_ON_STACK], out_buf[GG_VIEWS_ON_STACK];
  pf_view *in = in_buf, *out = out_buf;
  pf_kernel_call c = *call;
  int rc;
  if (call->n_in > GG_VIEWS_ON_STACK && (in = malloc((size_t)call->n_in * sizeof *in)) == NULL)
    return PF_ENOMEM;
  if (call->n_out > GG_VIEWS_ON_STACK &&
      (out = malloc((size_t)call->n_out * sizeof *out)) == NULL) {
    if (in != in_buf) free(in);
    return PF_ENOMEM;
  }
  for (int i = 0; i < call->n_in; i++) {
    in[i] = call->in[i];
    in[i].data = kernel_side(call, k, "input", i, call->in[i].data);
  }
  for (int i = 0; i < call->n_out; i++) {
    out[i] = call->out[i];
    out[i].data = kernel_side(call, k, "output", i, call->out[i].data);
  }
  c.in = in;
  c.out = out;
  c.user = k->user;
  rc = k->compute(&c);
  if (in != in_buf) free(in);
  if (out != out_buf) free(out);
  return rc;
}

int gg_kernels_register(const pf_device_host *host, pf_registry *reg) {
  int rc = 0;
  pthread_mutex_lock(&kernels_lock);
  for (size_t i = 0; i < sizeof kernels / sizeof kernels[0]; i++) {
    const pf_kernel *cpu = host->registry_find(reg, kernels[i].name, PF_DEVICE_CPU);
    pf_kernel_def def;
    int r;
    if (cpu == NULL) continue; /* a kernel this build lacks */
    /* Every registry of the process holds the same built-ins: the first
     * open's entries serve the later ones. */
    kernels[i].compute = cpu->def.compute;
    kernels[i].user = cpu->def.user;
    def = cpu->def;
    def.kind = PF_DEVICE_GPU;
    def.compute = gg_compute;
    def.user = &kernels[i];
    /* Loopback ranks share one registry: already there is fine. */
    if ((r = host->registry_add(reg, &def)) != 0 && r != PF_EEXIST) {
      rc = r;
      break;
    }
  }
  pthread_mutex_unlock(&kernels_lock);
  return rc;
}

/* ---- the plugin's entry --------------------------------------------------- */

static int env_int64(const char *name, int64_t dflt, int64_t *out) {
  const char *v = getenv(name);
  char *end;
  long long x;
  *out = dflt;
  if (v == NULL || *v == '\0') return 0;
  x = strtoll(v, &end, 10);
  if (*end != '\0' || x < 0) return PF_EINVAL;
  *out = x;
  return 0;
}

GG_EXPORT int pathflow_device_plugin_open(const pf_device_host *host,
                                          const pf_device_plugin_args *args,
                                          pf_device_plugin_result *out, char *err,
                                          size_t err_len) {
  int64_t n, bytes, stage;
  const char *coll_env = getenv("PATHFLOW_GUARDED_COLLECTIVES");
  int rc, coll;
  memset(out, 0, sizeof *out);
  if (host == NULL || host->abi != PF_DEVICE_PLUGIN_ABI) {
    snprintf(err, err_len, "guarded GPU: built for plugin ABI %u, the runtime has %u",
             PF_DEVICE_PLUGIN_ABI, host != NULL ? host->abi : 0u);
    return PF_ENOTSUP;
  }
  if (env_int64("PATHFLOW_GUARDED_GPUS", 2, &n) != 0 || n > PF_DEVICE_PLUGIN_MAX) {
    snprintf(err, err_len, "guarded GPU: PATHFLOW_GUARDED_GPUS=%s: want 0..%d",
             getenv("PATHFLOW_GUARDED_GPUS"), PF_DEVICE_PLUGIN_MAX);
    return PF_EINVAL;
  }
  if (env_int64("PATHFLOW_GUARDED_GPU_BYTES", (int64_t)1 << 30, &bytes) != 0 || bytes == 0) {
    snprintf(err, err_len, "guarded GPU: PATHFLOW_GUARDED_GPU_BYTES=%s: want a byte count",
             getenv("PATHFLOW_GUARDED_GPU_BYTES"));
    return PF_EINVAL;
  }
  if (coll_env != NULL && *coll_env != '\0' && strcmp(coll_env, "0") != 0 &&
      strcmp(coll_env, "1") != 0) {
    snprintf(err, err_len, "guarded GPU: PATHFLOW_GUARDED_COLLECTIVES=%s: want 0 or 1", coll_env);
    return PF_EINVAL;
  }
  coll = coll_env != NULL && strcmp(coll_env, "1") == 0;
  /* With its own collectives the device asks for no staging of them, as a
   * CUDA device with NCCL does. */
  if (env_int64("PATHFLOW_GUARDED_STAGE",
                coll ? PF_STAGE_ALL & ~PF_STAGE_COLLECTIVES : PF_STAGE_ALL, &stage) != 0 ||
      (stage & ~(int64_t)PF_STAGE_ALL) != 0) {
    snprintf(err, err_len, "guarded GPU: PATHFLOW_GUARDED_STAGE=%s: want a mask in 0..%d",
             getenv("PATHFLOW_GUARDED_STAGE"), PF_STAGE_ALL);
    return PF_EINVAL;
  }
  if (n > args->max_devices) n = args->max_devices;
  if (n <= 0) {
    if (!args->required) return 0;
    snprintf(err, err_len, "guarded GPU: no device to start (PATHFLOW_GUARDED_GPUS=0 or "
                           "no room for more devices)");
    return PF_ENOTFOUND;
  }
  if ((rc = gg_arena_init(err, err_len)) != 0) return rc;
  if ((rc = gg_kernels_register(host, args->registry)) != 0) {
    snprintf(err, err_len, "guarded GPU: registering its kernels: error %d", rc);
    return rc;
  }
  for (int i = 0; i < (int)n; i++) {
    if ((rc = gg_device_create(host, args->first_index + i, args->rank, bytes, args->clock,
                               &out->devices[i])) != 0) {
      for (int k = 0; k < i; k++) out->devices[k]->ops->destroy(out->devices[k]);
      memset(out, 0, sizeof *out);
      snprintf(err, err_len, "guarded GPU: cannot start device %d's thread",
               args->first_index + i);
      return rc;
    }
    gg_device_set_stage(out->devices[i], (uint32_t)stage);
    gg_device_set_collectives(out->devices[i], coll);
  }
  out->n_devices = (int)n;
  snprintf(out->what, sizeof out->what, "%d guarded GPUs (%lld MiB each, host-inaccessible%s)",
           (int)n, (long long)(bytes >> 20), coll ? ", in-process collectives" : "");
  return 0;
}

/* The entry has the type the runtime calls it through. */
static const pf_device_plugin_open_fn gg_open_checked __attribute__((unused)) =
    pathflow_device_plugin_open;
