/* The CUDA device (runtime/device_cuda.h): a launcher thread per GPU that
 * queues the device's ops on one stream in gang order and reports them
 * done as their events complete. */
#define _GNU_SOURCE /* pthread_setname_np */
#include "runtime/device_cuda.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cuda_runtime_api.h>

#include "base/box.h"
#include "cuda/error.h"
#include "cuda/event.h"
#include "cuda/kernels.h"
#include "cuda/nccl.h"
#include "cuda/stream.h"
#include "pathflow/error.h"
#include "runtime/executor.h"

/* Ops queued on the stream and not yet reported done, at most: enough to
 * keep a GPU busy ahead of the host, few enough that the events are made
 * once. */
#define INFLIGHT 256
/* Device blocks are handed out rounded to this (the pool's alignment). */
#define BLOCK_ALIGN ((size_t)PF_CUDA_ARENA_ALIGN)

typedef struct inflight {
  pf_step *step;
  uint32_t op;
  int last; /* the last op of its part: the part is done with it */
  cudaEvent_t ev;
} inflight;

/* A freed block, kept for the next allocation of the same size. */
typedef struct free_block {
  uint64_t id; /* its arena id in the pool */
  size_t size;
  void *base;
} free_block;

typedef struct cuda_device {
  pf_device base;
  pf_cuda_device_config cfg;
  pf_running_slot running;
  pf_cuda_stream *stream;
  pf_cuda_pool *pool;
  pthread_t thread;
  int thread_started;
  /* Guarded by lock: parts submitted and not yet fully queued on the
   * stream, and whether something happened that may let the launcher
   * move (kick: a submit, an input made ready, stop). */
  pthread_mutex_t lock;
  pthread_cond_t wake;
  pf_part *head, *tail;
  int kick, stop;
  /* Launcher thread only: the place in the head part's queue, and the
   * ops queued on the stream, oldest first (a ring). */
  uint32_t next;
  inflight ring[INFLIGHT];
  int ring_first, ring_n;
  /* An error of copy (which cannot return one): the launcher fails the
   * op's step with it. */
  pf_diag copy_err;
  /* Memory: guarded by mem_lock (storage is released on any thread). */
  pthread_mutex_t mem_lock;
  free_block *blocks;
  size_t n_blocks, cap_blocks;
  uint64_t next_id;
  /* One for the executor's hold, one per live storage: the pool outlives
   * the device while storage it gave out lives on. */
  atomic_int refs;
  uint64_t ops_run, wait_ns;
  _Atomic uint64_t ops_run_pub, wait_ns_pub;
} cuda_device;

/* The stream of the device whose launcher runs on this thread: how the
 * registered GPU kernels find it (pf_kernel_call has no stream). */
static __thread pf_cuda_stream *tls_stream;

/* ---- memory ----------------------------------------------------------------- */

static void device_unref(cuda_device *c);

/* Puts the in-use block at base back on the free list. */
static void give_back(cuda_device *c, void *base, size_t size) {
  pthread_mutex_lock(&c->mem_lock);
  for (size_t i = 0; i < c->n_blocks; i++)
    if (c->blocks[i].base == base && c->blocks[i].size == (size_t)-1) {
      c->blocks[i].size = size;
      break;
    }
  pthread_mutex_unlock(&c->mem_lock);
}

static size_t block_size(size_t nbytes) {
  return ((nbytes ? nbytes : 1) + BLOCK_ALIGN - 1) / BLOCK_ALIGN * BLOCK_ALIGN;
}

/* The last unref of device storage: on any thread, after every op that
 * used it has completed on the GPU (an op is reported done, and its inputs
 * unreferenced, only once its event completed). */
static void block_release(pf_storage *s) {
  cuda_device *c = s->owner;
  give_back(c, s->data, block_size(s->nbytes));
  free(s);
  device_unref(c);
}

/* Blocks live in c->blocks for their whole life: size (size_t)-1 marks one
 * in use, any other size one free for reuse. A step of an executable asks
 * for the sizes the step before asked for (its arena, its buffers), so
 * after the first step every allocation is a reuse: no cudaMalloc. */
static pf_storage *cuda_alloc(pf_device *d, size_t nbytes) {
  cuda_device *c = (cuda_device *)d;
  size_t size = block_size(nbytes), slot = (size_t)-1;
  void *base = NULL;
  pf_storage *s;
  pthread_mutex_lock(&c->mem_lock);
  for (size_t i = 0; i < c->n_blocks && slot == (size_t)-1; i++)
    if (c->blocks[i].size == size) slot = i;
  if (slot == (size_t)-1) {
    uint64_t id = ++c->next_id;
    int rc;
    if (c->n_blocks == c->cap_blocks) {
      size_t cap = c->cap_blocks ? 2 * c->cap_blocks : 16;
      free_block *nb = realloc(c->blocks, cap * sizeof *nb);
      if (nb == NULL) {
        pthread_mutex_unlock(&c->mem_lock);
        return NULL;
      }
      c->blocks = nb;
      c->cap_blocks = cap;
    }
    rc = pf_cuda_pool_arena(c->pool, id, size, &base, NULL);
    if (rc == PF_ENOMEM) {
      /* Free blocks of other sizes go back to the GPU, then one more try. */
      size_t k = 0;
      for (size_t i = 0; i < c->n_blocks; i++) {
        if (c->blocks[i].size != (size_t)-1)
          (void)pf_cuda_pool_release(c->pool, c->blocks[i].id, NULL);
        else
          c->blocks[k++] = c->blocks[i];
      }
      c->n_blocks = k;
      rc = pf_cuda_pool_arena(c->pool, id, size, &base, NULL);
    }
    if (rc != 0) {
      pthread_mutex_unlock(&c->mem_lock);
      return NULL;
    }
    slot = c->n_blocks++;
    c->blocks[slot] = (free_block){.id = id, .size = size, .base = base};
  }
  c->blocks[slot].size = (size_t)-1; /* in use */
  base = c->blocks[slot].base;
  pthread_mutex_unlock(&c->mem_lock);
  if ((s = pf_storage_wrap(base, nbytes, c->cfg.index, block_release, c)) == NULL) {
    give_back(c, base, size);
    return NULL;
  }
  atomic_fetch_add(&c->refs, 1);
  return s;
}

/* The last unref of a pinned staging buffer: back to the pool's free list
 * (after every op that used it completed, as for device blocks). */
static void staging_release(pf_storage *s) {
  cuda_device *c = s->owner;
  pthread_mutex_lock(&c->mem_lock);
  (void)pf_cuda_staging_put(c->pool, s->data, NULL);
  pthread_mutex_unlock(&c->mem_lock);
  free(s);
  device_unref(c);
}

/* Host memory for the plan's staging buffers: pinned, so that the
 * stream's copies from and to it run asynchronously (from pageable memory
 * the driver copies synchronously through its own buffer), kept by the
 * pool for reuse: a steady state allocates none. */
static pf_storage *cuda_alloc_host(pf_device *d, size_t nbytes) {
  cuda_device *c = (cuda_device *)d;
  void *host = NULL;
  pf_storage *s;
  int rc;
  pthread_mutex_lock(&c->mem_lock);
  rc = pf_cuda_staging_get(c->pool, nbytes ? nbytes : 1, &host, NULL);
  pthread_mutex_unlock(&c->mem_lock);
  if (rc != 0) return NULL;
  if ((s = pf_storage_wrap(host, nbytes, c->cfg.index, staging_release, c)) == NULL) {
    pthread_mutex_lock(&c->mem_lock);
    (void)pf_cuda_staging_put(c->pool, host, NULL);
    pthread_mutex_unlock(&c->mem_lock);
    return NULL;
  }
  s->on_device = 0; /* pinned, but host memory */
  atomic_fetch_add(&c->refs, 1);
  return s;
}

/* ---- box copies -------------------------------------------------------------- */

/* One 3D copy of a box copy (pf_cuda_box_pieces): queued on the stream
 * when the launcher runs it (a COPY op, every direction: staging copies
 * are ops too), synchronous from any other thread. */
typedef struct copy_ctx {
  cuda_device *c;
  int queued;
  pf_diag *err; /* the launcher's copy_err when queued; the caller's own else */
} copy_ctx;

static int copy_piece(void *arg, const struct cudaMemcpy3DParms *p) {
  copy_ctx *x = arg;
  cudaError_t err = x->queued ? cudaMemcpy3DAsync(p, x->c->stream->stream) : cudaMemcpy3D(p);
  return err == cudaSuccess ? 0 : pf_cuda_error(x->err, err, "cuda device: box copy");
}

int pf_cuda_box_pieces(void *dst, const int64_t *dst_dims, const void *src,
                       const int64_t *src_dims, const pf_box *box, size_t elem,
                       enum cudaMemcpyKind kind,
                       int (*piece)(void *arg, const struct cudaMemcpy3DParms *p), void *arg) {
  int64_t ext[PF_MAX_RANK + 3], sd[PF_MAX_RANK + 3], dd[PF_MAX_RANK + 3];
  int64_t so[PF_MAX_RANK + 3], dof[PF_MAX_RANK + 3], idx[PF_MAX_RANK + 3];
  int n = 0, lead;
  for (int a = 0; a < box->rank; a++) {
    if (box->extent[a] == 0) return 0; /* nothing to move */
    if (n > 0 && box->extent[a] == src_dims[a] && box->extent[a] == dst_dims[a]) {
      /* Whole in both: row-major, it merges into the axis before. */
      ext[n - 1] *= src_dims[a];
      sd[n - 1] *= src_dims[a];
      dd[n - 1] *= dst_dims[a];
      so[n - 1] *= src_dims[a];
      dof[n - 1] *= dst_dims[a];
      continue;
    }
    ext[n] = box->extent[a];
    sd[n] = src_dims[a];
    dd[n] = dst_dims[a];
    so[n] = box->src_offset[a];
    dof[n] = box->dst_offset[a];
    n++;
  }
  /* At least three axes: leading ones of size 1. */
  while (n < 3) {
    memmove(ext + 1, ext, (size_t)n * sizeof *ext);
    memmove(sd + 1, sd, (size_t)n * sizeof *sd);
    memmove(dd + 1, dd, (size_t)n * sizeof *dd);
    memmove(so + 1, so, (size_t)n * sizeof *so);
    memmove(dof + 1, dof, (size_t)n * sizeof *dof);
    ext[0] = sd[0] = dd[0] = 1;
    so[0] = dof[0] = 0;
    n++;
  }
  lead = n - 3;
  memset(idx, 0, sizeof idx);
  for (;;) {
    struct cudaMemcpy3DParms p;
    size_t soff = 0, doff = 0, sstride = 1, dstride = 1;
    int rc, a;
    /* Elements before this index of the leading axes (the last three
     * axes' place is the pitched pointers' and positions'). */
    for (a = n - 1; a >= 0; a--) {
      if (a < lead) {
        soff += (size_t)(so[a] + idx[a]) * sstride;
        doff += (size_t)(dof[a] + idx[a]) * dstride;
      }
      sstride *= (size_t)sd[a];
      dstride *= (size_t)dd[a];
    }
    memset(&p, 0, sizeof p);
    p.srcPtr.ptr = (char *)src + soff * elem;
    p.srcPtr.pitch = p.srcPtr.xsize = (size_t)sd[n - 1] * elem;
    p.srcPtr.ysize = (size_t)sd[n - 2];
    p.dstPtr.ptr = (char *)dst + doff * elem;
    p.dstPtr.pitch = p.dstPtr.xsize = (size_t)dd[n - 1] * elem;
    p.dstPtr.ysize = (size_t)dd[n - 2];
    p.srcPos.x = (size_t)so[n - 1] * elem;
    p.srcPos.y = (size_t)so[n - 2];
    p.srcPos.z = (size_t)so[n - 3];
    p.dstPos.x = (size_t)dof[n - 1] * elem;
    p.dstPos.y = (size_t)dof[n - 2];
    p.dstPos.z = (size_t)dof[n - 3];
    p.extent.width = (size_t)ext[n - 1] * elem;
    p.extent.height = (size_t)ext[n - 2];
    p.extent.depth = (size_t)ext[n - 3];
    p.kind = kind;
    if ((rc = piece(arg, &p)) != 0) return rc;
    /* The next index of the leading axes. */
    a = lead - 1;
    while (a >= 0 && ++idx[a] == ext[a]) idx[a--] = 0;
    if (a < 0) return 0;
  }
}

static int cuda_copy(pf_device *d, pf_copy_dir dir, void *dst, const int64_t *dst_dims,
                     const void *src, const int64_t *src_dims, const pf_box *box,
                     size_t elem_size) {
  cuda_device *c = (cuda_device *)d;
  /* The launcher runs COPY ops, queued, and reads copy_err after each
   * (launch); another thread (a feed or fetch moving a stored value, a
   * test) copies synchronously, with the current device set first (one
   * call, no context switch when it is current already). Both directions
   * across the host boundary come from either. */
  int queued = tls_stream == c->stream;
  pf_diag mine;
  copy_ctx x = {c, queued, queued ? &c->copy_err : &mine};
  int rc;
  pf_diag_init(&mine);
  if (!queued) (void)cudaSetDevice(c->cfg.ordinal);
  rc = pf_cuda_box_pieces(dst, dst_dims, src, src_dims, box, elem_size,
                          dir == PF_COPY_H2D   ? cudaMemcpyHostToDevice
                          : dir == PF_COPY_D2H ? cudaMemcpyDeviceToHost
                                               : cudaMemcpyDeviceToDevice,
                          copy_piece, &x);
  return queued ? 0 : rc;
}

/* ---- the queue ----------------------------------------------------------------- */

static void cuda_info(pf_device *d, pf_device_info *out) {
  cuda_device *c = (cuda_device *)d;
  memset(out, 0, sizeof *out);
  out->kind = PF_DEVICE_GPU;
  out->index = c->cfg.index;
  out->memory_bytes = c->cfg.memory_bytes;
  out->own_memory = 1;
  /* Local collectives reduce on the host: staged. Collectives between ranks
   * too, unless NCCL runs them here; transfers unless the transport is
   * CUDA-aware and sends from device memory. */
  out->stage = PF_STAGE_ALL;
  if (c->base.ops->collective != NULL) out->stage &= ~(uint32_t)PF_STAGE_COLLECTIVES;
  if (c->cfg.transport_cuda_memory) out->stage &= ~(uint32_t)PF_STAGE_TRANSFERS;
}

static void cuda_submit(pf_device *d, pf_part *pt) {
  cuda_device *c = (cuda_device *)d;
  pt->next = NULL;
  pthread_mutex_lock(&c->lock);
  if (c->tail)
    c->tail->next = pt;
  else
    c->head = pt;
  c->tail = pt;
  c->kick = 1;
  pthread_cond_signal(&c->wake);
  pthread_mutex_unlock(&c->lock);
}

/* An input arrived from another device or the loop: the launcher may be
 * able to queue its next op. Never hands the op over (the loop thread
 * must not issue work to this stream). */
static int cuda_ready(pf_device *d, pf_step *s, uint32_t op, int may_claim) {
  cuda_device *c = (cuda_device *)d;
  (void)s;
  (void)op;
  (void)may_claim;
  pthread_mutex_lock(&c->lock);
  c->kick = 1;
  pthread_cond_signal(&c->wake);
  pthread_mutex_unlock(&c->lock);
  return 0;
}

static pf_running_slot *cuda_running(pf_device *d) { return &((cuda_device *)d)->running; }

static void *cuda_stream(pf_device *d) { return (void *)((cuda_device *)d)->stream->stream; }

static void cuda_counters(pf_device *d, uint64_t *ops_run, uint64_t *wait_ns) {
  cuda_device *c = (cuda_device *)d;
  *ops_run = atomic_load_explicit(&c->ops_run_pub, memory_order_relaxed);
  *wait_ns = atomic_load_explicit(&c->wait_ns_pub, memory_order_relaxed);
}

/* 1 when op j of s may be queued now: every input not yet done is an op
 * queued on this stream before it (stream order runs j after them).
 * pending is read first and only falls, while this thread alone reports
 * the ring's ops done: so pending <= (ring ops among j's deps) means no
 * other input is missing. */
static int queueable(cuda_device *c, pf_step *s, uint32_t j) {
  uint32_t pending = pf_step_op_pending(s, j), ours = 0;
  const pf_plan_op *op;
  if (pending == 0) return 1;
  if (c->ring_n == 0) return 0;
  op = &pf_step_plan(s)->ops[j];
  /* A local collective runs on the host, now, on staged host buffers:
   * every input must be done, not merely queued before it. A collective
   * between ranks (NCCL) waits so too: simpler, and its peers wait for the
   * slowest member anyway. */
  if (op->kind != PF_OP_KERNEL && op->kind != PF_OP_COPY) return 0;
  for (uint32_t k = 0; k < op->n_deps && ours < pending; k++)
    for (int r = 0; r < c->ring_n; r++) {
      const inflight *f = &c->ring[(c->ring_first + r) % INFLIGHT];
      if (f->step == s && f->op == op->deps[k]) {
        ours++;
        break;
      }
    }
  return pending <= ours;
}

/* Queues op j of s on the stream (its kernel, box copy), records its event
 * and puts it on the ring. */
static void launch(cuda_device *c, pf_step *s, uint32_t j, int last) {
  inflight *f = &c->ring[(c->ring_first + c->ring_n) % INFLIGHT];
  pf_diag d;
  pf_diag_init(&d);
  c->copy_err.code = 0;
  c->ops_run += (uint64_t)pf_step_run_op(s, j);
  if (c->copy_err.code != 0)
    pf_executor_step_fail(s, PF_EKERNEL, "rank %d device %d: op %u: %s", c->cfg.rank,
                          c->cfg.index, j, c->copy_err.msg);
  if (pf_cuda_event_record(f->ev, c->stream->stream, &d) != 0)
    pf_executor_step_fail(s, PF_EKERNEL, "rank %d device %d: op %u: %s", c->cfg.rank,
                          c->cfg.index, j, d.msg);
  f->step = s;
  f->op = j;
  f->last = last;
  c->ring_n++;
}

/* Fails s with what the stream's sync found (d): bad data a kernel
 * recorded in the fault word (its message starts with the kernel's name,
 * "softmax_xent: row ..."), or an asynchronous CUDA error. The fault word
 * holds no op: the program named is the first of this part whose kernel
 * has that name (work queued after the part may have faulted instead, but
 * the part's own op is far likelier), so that the message names the
 * program as a kernel's failure on the host does. */
static void fail_synced(cuda_device *c, pf_step *s, const pf_diag *d) {
  const char *colon = strchr(d->msg, ':');
  size_t len = colon != NULL ? (size_t)(colon - d->msg) : 0;
  const pf_plan *p = pf_step_plan(s);
  uint32_t n;
  const uint32_t *q = pf_step_device_queue(s, c->cfg.index, &n);
  for (uint32_t e = 0; e < n && len > 0; e++) {
    const pf_plan_op *op = &p->ops[q[e]];
    if (op->kind != PF_OP_KERNEL || op->kernel == NULL || strlen(op->kernel) != len ||
        memcmp(op->kernel, d->msg, len) != 0)
      continue;
    pf_executor_step_fail(s, PF_EKERNEL,
                          "rank %d device %d: program \"%s\" (kernel \"%s\", shard %d of %d) "
                          "failed on the GPU: %s (%s)",
                          c->cfg.rank, c->cfg.index, op->name, op->kernel, op->shard,
                          op->num_shards, d->msg, pf_errname(d->code));
    return;
  }
  pf_executor_step_fail(s, PF_EKERNEL, "rank %d device %d: a kernel failed on the GPU: %s",
                        c->cfg.rank, c->cfg.index, d->msg);
}

/* Reports the oldest queued op done (its event has completed, or failed:
 * then its step fails). At the end of a part, the stream's fault word is
 * read (pf_cuda_stream_sync): bad data a kernel found on the GPU fails
 * the step whose part ends first after it. */
static void complete_oldest(cuda_device *c, int status, const pf_diag *why) {
  inflight *f = &c->ring[c->ring_first];
  pf_step *s = f->step;
  uint32_t j = f->op;
  int last = f->last;
  c->ring_first = (c->ring_first + 1) % INFLIGHT;
  c->ring_n--;
  if (status != 0)
    pf_executor_step_fail(s, PF_EKERNEL, "rank %d device %d: op %u on the GPU: %s",
                          c->cfg.rank, c->cfg.index, j, why->msg);
  if (last) {
    pf_diag d;
    pf_diag_init(&d);
    if (pf_cuda_stream_sync(c->stream, &d) != 0) fail_synced(c, s, &d);
  }
  pf_step_op_done(s, j, c->cfg.index);
  if (last) pf_step_part_done(s); /* s may be freed now */
}

static void publish_counts(cuda_device *c) {
  atomic_store_explicit(&c->ops_run_pub, c->ops_run, memory_order_relaxed);
  atomic_store_explicit(&c->wait_ns_pub, c->wait_ns, memory_order_relaxed);
}

/* Queues every op it can, in order, across the parts submitted; returns
 * how many. */
static int launch_ready(cuda_device *c) {
  int launched = 0;
  for (;;) {
    pf_part *p;
    uint32_t n;
    const uint32_t *q;
    pthread_mutex_lock(&c->lock);
    c->kick = 0; /* what is ready from here on is seen below */
    p = c->head;
    pthread_mutex_unlock(&c->lock);
    if (p == NULL || c->ring_n == INFLIGHT) return launched;
    q = pf_step_device_queue(p->step, c->cfg.index, &n);
    if (n == 0) { /* no op to carry the part's end: finish it here */
      pthread_mutex_lock(&c->lock);
      c->head = p->next;
      if (c->head == NULL) c->tail = NULL;
      pthread_mutex_unlock(&c->lock);
      pf_step_part_done(p->step);
      continue;
    }
    if (c->next < n) {
      if (!queueable(c, p->step, q[c->next])) return launched;
      launch(c, p->step, q[c->next], c->next + 1 == n);
      c->next++;
      launched++;
      if (c->next < n) continue;
    }
    /* The part is all queued: the next one's ops may follow on the stream
     * (its own dependencies are checked as for any op). The part is not
     * touched again here: the ring's last entry finishes it. */
    pthread_mutex_lock(&c->lock);
    c->head = p->next;
    if (c->head == NULL) c->tail = NULL;
    pthread_mutex_unlock(&c->lock);
    c->next = 0;
  }
}

static void *launcher_main(void *arg) {
  cuda_device *c = arg;
  pf_clock *clock = c->cfg.clock;
  (void)cudaSetDevice(c->cfg.ordinal);
  tls_stream = c->stream;
  pf_running_bind(&c->running);
  for (;;) {
    int launched = launch_ready(c);
    if (c->ring_n > 0) {
      /* Report what has completed, in order; when nothing could be queued,
       * sleep on the oldest event (blocking sync) rather than spin. */
      pf_diag d;
      int rc;
      pf_diag_init(&d);
      rc = launched > 0 ? pf_cuda_event_done(c->ring[c->ring_first].ev, &d)
                        : (pf_cuda_event_wait(c->ring[c->ring_first].ev, &d) == 0 ? 1 : -1);
      if (rc == 0) continue;
      complete_oldest(c, rc < 0 ? rc : 0, &d);
      while (c->ring_n > 0) {
        pf_diag_init(&d);
        rc = pf_cuda_event_done(c->ring[c->ring_first].ev, &d);
        if (rc == 0) break;
        complete_oldest(c, rc < 0 ? rc : 0, &d);
      }
      publish_counts(c);
      continue;
    }
    if (launched > 0) continue;
    /* Nothing on the GPU and nothing queueable: wait for an input, a part
     * or stop. */
    publish_counts(c);
    pthread_mutex_lock(&c->lock);
    if (!c->kick && !(c->stop && c->head == NULL)) {
      /* Counted as waiting only with a step in hand (pf_device_counters). */
      int in_hand = c->head != NULL;
      uint64_t t0 = in_hand ? pf_clock_now(clock) : 0;
      while (!c->kick && !(c->stop && c->head == NULL)) pthread_cond_wait(&c->wake, &c->lock);
      if (in_hand) c->wait_ns += pf_clock_now(clock) - t0;
    }
    if (c->stop && c->head == NULL) {
      pthread_mutex_unlock(&c->lock);
      break;
    }
    pthread_mutex_unlock(&c->lock);
  }
  publish_counts(c);
  tls_stream = NULL;
  return NULL;
}

/* ---- life ------------------------------------------------------------------------ */

static void device_free(cuda_device *c) {
  for (int r = 0; r < INFLIGHT; r++)
    if (c->ring[r].ev != NULL) pf_cuda_event_destroy(c->ring[r].ev);
  pf_cuda_stream_destroy(c->stream);
  pf_cuda_pool_destroy(c->pool); /* every block, free or not */
  free(c->blocks);
  pthread_mutex_destroy(&c->lock);
  pthread_mutex_destroy(&c->mem_lock);
  pthread_cond_destroy(&c->wake);
  free(c);
}

static void device_unref(cuda_device *c) {
  if (atomic_fetch_sub_explicit(&c->refs, 1, memory_order_acq_rel) == 1) device_free(c);
}

/* Runs what is queued, stops the launcher; the memory goes with the last
 * storage that holds some. */
static void cuda_destroy(pf_device *d) {
  cuda_device *c = (cuda_device *)d;
  if (c->thread_started) {
    pthread_mutex_lock(&c->lock);
    c->stop = 1;
    pthread_cond_signal(&c->wake);
    pthread_mutex_unlock(&c->lock);
    pthread_join(c->thread, NULL);
  }
  device_unref(c);
}

/* ---- collectives between ranks (NCCL, cuda/nccl.h) ------------------------------ */

static int cuda_comm_id(pf_device *d, uint8_t *id, size_t *len, pf_diag *diag) {
  (void)d;
  *len = PF_NCCL_ID_BYTES;
  return pf_nccl_id(id, diag);
}

static int cuda_comm_join(pf_device *d, const uint8_t *id, size_t len, int n, int me, void **comm,
                          pf_diag *diag) {
  if (len < PF_NCCL_ID_BYTES)
    return pf_diag_error(diag, PF_EINVAL, "cuda device: a communicator id of %zu bytes", len);
  return pf_nccl_join(((cuda_device *)d)->cfg.ordinal, id, n, me, comm, diag);
}

static void cuda_comm_leave(pf_device *d, void *comm) {
  (void)d;
  pf_nccl_leave(comm);
}

/* On the launcher, as a kernel is: queued on the stream, its event after
 * it; the stream waits for the other members. */
static int cuda_collective(pf_device *d, const pf_device_collective *x, pf_diag *diag) {
  cuda_device *c = (cuda_device *)d;
  return pf_nccl_collective(c->stream->stream, x->comm, (pf_collective_kind)x->kind,
                            (pf_reduce_op)x->reduce_op, x->dtype, x->count, x->root, x->in,
                            x->out, diag);
}

static const pf_device_ops cuda_ops = {
    .info = cuda_info,
    .alloc = cuda_alloc,
    .alloc_host = cuda_alloc_host,
    .copy = cuda_copy,
    .submit = cuda_submit,
    .ready = cuda_ready,
    .release = NULL, /* ready never hands an op over */
    .running = cuda_running,
    .stream = cuda_stream,
    .counters = cuda_counters,
    .destroy = cuda_destroy,
};

/* The same with NCCL's collectives (pf_nccl_available). */
static const pf_device_ops cuda_nccl_ops = {
    .info = cuda_info,
    .alloc = cuda_alloc,
    .alloc_host = cuda_alloc_host,
    .copy = cuda_copy,
    .submit = cuda_submit,
    .ready = cuda_ready,
    .release = NULL,
    .running = cuda_running,
    .stream = cuda_stream,
    .comm_id = cuda_comm_id,
    .comm_join = cuda_comm_join,
    .comm_leave = cuda_comm_leave,
    .collective = cuda_collective,
    .counters = cuda_counters,
    .destroy = cuda_destroy,
};

int pf_cuda_device_create(const pf_cuda_device_config *cfg, pf_device **out, pf_diag *diag) {
  cuda_device *c;
  char name[32];
  int rc;
  *out = NULL;
  if ((c = calloc(1, sizeof *c)) == NULL)
    return pf_diag_error(diag, PF_ENOMEM, "cuda device: out of memory");
  c->base.ops = pf_nccl_available() ? &cuda_nccl_ops : &cuda_ops;
  c->cfg = *cfg;
  c->running.rank = cfg->rank;
  atomic_init(&c->refs, 1);
  pf_diag_init(&c->copy_err);
  pthread_mutex_init(&c->lock, NULL);
  pthread_mutex_init(&c->mem_lock, NULL);
  pthread_cond_init(&c->wake, NULL);
  if ((rc = pf_cuda_stream_create(cfg->ordinal, &c->stream, diag)) != 0 ||
      (rc = pf_cuda_pool_create(cfg->ordinal, &c->pool, diag)) != 0) {
    device_free(c);
    return rc;
  }
  for (int r = 0; r < INFLIGHT; r++)
    if ((rc = pf_cuda_event_create(&c->ring[r].ev, diag)) != 0) {
      device_free(c);
      return rc;
    }
  if (c->cfg.memory_bytes <= 0) {
    size_t free_b = 0, total_b = 0;
    if ((rc = pf_cuda_error(diag, cudaMemGetInfo(&free_b, &total_b),
                            "cuda device: reading free memory")) != 0) {
      device_free(c);
      return rc;
    }
    c->cfg.memory_bytes = (int64_t)free_b;
  }
  if (pthread_create(&c->thread, NULL, launcher_main, c) != 0) {
    device_free(c);
    return pf_diag_error(diag, PF_ESYS, "cuda device: no launcher thread");
  }
  c->thread_started = 1;
  snprintf(name, sizeof name, "pf-gpu%d", cfg->index);
  name[15] = '\0';
  pthread_setname_np(c->thread, name);
  *out = &c->base;
  return 0;
}

pf_cuda_pool *pf_cuda_device_pool(pf_device *d) {
  return d != NULL && (d->ops == &cuda_ops || d->ops == &cuda_nccl_ops)
             ? ((cuda_device *)d)->pool
             : NULL;
}

/* ---- kernels ------------------------------------------------------------------- */

/* The compute function of every registered GPU kernel: the CUDA kernel is
 * the def's user; the stream is the calling launcher's. */
static int gpu_compute(const pf_kernel_call *call) {
  const pf_cuda_kernel *k = call->user;
  if (tls_stream == NULL)
    return pf_diag_error(call->diag, PF_ESTATE,
                         "%s: a GPU kernel called outside a CUDA device's launcher", k->name);
  return k->compute(call, tls_stream);
}

int pf_cuda_kernels_register(pf_registry *reg) {
  size_t n;
  const pf_cuda_kernel *ks = pf_cuda_kernels(&n);
  for (size_t i = 0; i < n; i++) {
    const pf_kernel *cpu = pf_registry_find(reg, ks[i].name, PF_DEVICE_CPU);
    pf_kernel_def def;
    int rc;
    if (cpu == NULL) return PF_ENOTFOUND;
    def = cpu->def;
    def.name = ks[i].name;
    def.kind = PF_DEVICE_GPU;
    def.compute = gpu_compute;
    def.user = (void *)&ks[i];
    /* PF_EEXIST: registered before (another rank of this process, or the
     * user's own GPU kernel of that name, which is kept). */
    if ((rc = pf_registry_add(reg, &def)) != 0 && rc != PF_EEXIST) return rc;
  }
  return 0;
}
