#include "runtime/executor.h"

#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/probe.h"
#include "base/util.h"
#include "pathflow/error.h"
#include "base/box.h"
#include "base/pages.h"
#include "graph/collective.h"
#include "runtime/reduce.h"

/* Finished steps' blocks a plan keeps: up to a step for each dispatch
 * slot (an executor starts a step when its run order comes, so up to that
 * many live at once and end together), and 16 MiB of them. Blocks are
 * kept only as steps end, so this is memory the plan's steps held at once
 * anyway. 1 MiB kept five blocks of a chain of 1,024 small collectives
 * (200 KB a step) with 32 in flight: the other 27 went back to glibc and
 * came back from it at every step, page faults and all (bench/dispatch -c
 * 1024, alternated: 0.77-0.84 of the raw loop against 0.86-1.01). */
#define STEP_SPARES 64
#define STEP_SPARE_BYTES ((size_t)16 << 20)

/* What running and finishing an op reads of it, in one cache line
 * (build_hot): the plan's op record is two lines, and the rest was spread
 * over six arrays of the loaded plan, each a line of its own per op; once a
 * long plan's state no longer fits in the core's cache (a stencil of a
 * thousand steps), each was a miss on every op's path. */
/* Where an input told by a flag says it is done (plan_flags): want 0, the
 * input op's t_end (at: its op slot); else the word at offset `at` of the
 * slot area once it reaches `want` (the input's output lies in that line:
 * one cross-core miss for both; SLOT_FLAG). Together: one line per check. */
struct input_flag {
  uint32_t at, want;
};

/* op_hot.flag_out's bits. */
#define OP_FLAG_OUT 1u     /* its dependents on flag devices read its done flag */
#define OP_COUNTS_READS 2u /* an input's reads are counted (finish_op) */
#define OP_EPILOGUE 4u     /* may run in its input collective's completion (run_epilogue) */
#define OP_HAS_EPILOGUE 8u /* a loop collective whose one dependent is OP_EPILOGUE */

/* An epilogue's inputs and outputs, each at most: its views on the stack
 * (run_epilogue's frame stays small). */
#define EPILOGUE_MAX_ARGS 4u

typedef struct op_hot {
  uint8_t kind, loop_op;
  uint8_t one_dep;  /* one input op: its count needs no atomic decrement */
  /* OP_FLAG_OUT, OP_COUNTS_READS (bits in one byte: the record is a full
   * line, and one more field would make it two). */
  uint8_t flag_out;
  int16_t device;
  uint16_t n_flags;              /* inputs told by flags (plan_flags), */
  uint32_t flag_first;           /*   their flags at flags[first..] */
  uint32_t slot;                 /* op_slot */
  uint16_t n_in, n_out;          /* inputs at io_bufs[io..], outputs after */
  uint32_t io;
  uint32_t dep_first, dep_end;   /* dependents */
  uint32_t rel_first, rel_end;   /* release_bufs */
  int32_t shard, num_shards;
  const pf_kernel_def *kernel;   /* KERNEL only */
  pf_attrs *attrs;
} op_hot;
_Static_assert(sizeof(void *) != 8 || sizeof(op_hot) == 64, "op_hot is one cache line");

/* The same for a buffer: what the op path reads of it (40 bytes). */
typedef struct buf_hot {
  uint32_t slot;    /* buf_slot */
  uint32_t point;   /* release point, or UINT32_MAX */
  uint32_t slot_at; /* offset in the slot area, or UINT32_MAX */
  int32_t device;
  uint8_t keep, in_arena, host;
  uint8_t one_reader; /* one op input reads it: its count needs no atomic decrement */
  uint32_t flag_val;  /* > 0: its writer stores this at its slot's flag word (SLOT_FLAG) */
  const pf_spec *spec;
  size_t nbytes; /* pf_spec_nbytes(spec) */
} buf_hot;
_Static_assert(sizeof(void *) != 8 || sizeof(buf_hot) == 40, "buf_hot stays 40 bytes");

struct pf_loaded {
  atomic_int refs;
  pf_plan *plan;
  const pf_kernel_def **kernels; /* per op; NULL unless KERNEL */
  uint32_t *dependents_first;    /* CSR: dependents of op i are */
  uint32_t *dependents;          /*   dependents[first[i] .. first[i+1]) */
  uint32_t *device_first;        /* CSR: ops of device d, in gang order */
  uint32_t *device_ops;
  int32_t *readers; /* per buffer: input slots of ops that read it */
  uint8_t *keep;    /* per buffer: an output, kept to the end of the step */
  uint8_t *loop_op; /* per op: performed by the loop thread */
  atomic_uchar *inline_ok; /* per op: INLINE_*, may the loop thread run it */
  uint32_t n_loop_ops;
  /* A step's start touches these, not the plan's large op records. */
  uint32_t *n_deps;    /* per op */
  /* Per op: its place in a step's pending counts. Each device's ops are
   * together, from a cache line of their own, and the loop's after them: a
   * worker spinning on its next op's count then shares that line with no
   * other device's ops (in plan order the two workers of a stencil touched
   * one line at every op, each decrement bouncing it between their cores). */
  uint32_t *op_slot, n_op_slots;
  /* Inputs told by flags (plan_flags): per op, 1 if it may tell its
   * dependents so; CSR, the flags of each op's inputs (flag_first[j] ..
   * flag_first[j + 1]; none for an op whose inputs are counted). */
  uint8_t *flag_out;
  uint32_t *flag_first;
  struct input_flag *flags;
  /* Per buffer: what its writer stores at its slot's flag word, or 0
   * (plan_slots); the slot area's ranges of lines with flag words, zeroed
   * at each step's start: [flag_ranges[2k], flag_ranges[2k + 1]). */
  uint32_t *flag_val;
  uint32_t *flag_ranges, n_flag_ranges;
  /* Per buffer: its place in a step's reader counts, the same way: each
   * device's buffers together, from a line of their own. */
  uint32_t *buf_slot, n_buf_slots;
  uint32_t *start_ops; /* loop ops with no dependencies, in plan order */
  uint32_t n_start_ops;
  uint32_t *recv_bufs; /* buffers receives write, given memory at step start (build_indexes) */
  uint32_t n_recv_bufs;
  uint32_t *input_bufs; /* buffers fed by the caller */
  uint32_t n_input_bufs;
  /* Release points (plan_release_points): per buffer, the op at which
   * every read of it is done (UINT32_MAX: none; finish_op counts the reads
   * of the others); CSR, the buffers op i lets go of when its device comes
   * to it (those with storage: not those in slots). */
  uint32_t *point;
  uint32_t *release_first, *release_bufs;
  /* Per buffer, its offset in a step's slot area (plan_slots), or
   * UINT32_MAX: it gets memory as other buffers do. The area's size. */
  uint32_t *slot_at;
  size_t slot_bytes;
  uint8_t *host_memory; /* per device: its memory is the host's */
  /* Per device: it runs collectives between ranks on its own memory
   * (pf_device_ops.collective; its stage lacks COLLECTIVES). */
  uint8_t *runs_collectives;
  /* Per plan communicator: the device whose collectives use it and its
   * handle (pf_loaded_set_comm), left when the plan is released. */
  pf_device **comm_device;
  void **comm_handle;
  /* Blocks of finished steps kept for the next ones (step_new): a step of
   * a small plan is over 1 KiB, and glibc serves a request that size by
   * first merging every small free chunk of the heap (malloc_consolidate:
   * a tenth of the loop thread's time in bench/dispatch's async case). */
  pthread_mutex_t spare_lock;
  pf_step *spare; /* a list through each block's first word */
  int n_spare;
  op_hot *hot;       /* per op */
  buf_hot *bh;       /* per buffer */
  uint32_t *io_bufs; /* every op's inputs then outputs, in plan order */
  /* A step's pending counts and reader counts as it starts, by op_slot and
   * buf_slot (n_op_slots + 16, n_buf_slots + 16 entries): copied whole
   * (step_new), not set op by op through the slot tables (~25 instructions
   * an op, paid at every step's start). */
  uint32_t *pending0;
  uint32_t *readers0;
};

/* A step's buffer: its storage, and the storage's data beside it. By
 * buf_slot, so that each device's buffers lie on lines of their own: the
 * two workers of a stencil wrote neighbouring entries at every op, and a
 * consumer reading an input's data pointer missed on the producer's
 * storage header besides (one cross-core line less each way). */
typedef struct step_buf {
  pf_storage *st;
  void *data;
} step_buf;

struct pf_step {
  pf_executor *ex;
  pf_loaded *l;
  uint64_t seq; /* the controller's step number, for messages */
  atomic_uint *pending; /* per op: deps not yet done */
  atomic_uint *readers; /* per buffer: reads not yet done */
  step_buf *bufs;       /* per buffer, by buf_slot (buf_get, buf_set) */
  pf_storage **arenas; /* per device: the step arena of the memory plan */
  uint64_t *t_start, *t_end;
  pf_part *parts; /* one per device */
  char *slots;    /* the slot area: buffers at offsets fixed at load (plan_slots) */
  /* Device parts not yet finished, and one for the loop ops while any is
   * left (loop_left: they all finish on the loop thread, which counts
   * them without a locked decrement each). */
  atomic_int remaining;
  uint32_t loop_left;
  atomic_int failed;
  pthread_mutex_t err_lock;
  pf_diag err;
  pf_step_done_fn done;
  void *arg;
  size_t size; /* of the block holding the step and its arrays (step_new) */
};

static inline pf_storage *buf_get(const pf_step *s, uint32_t b) {
  return s->bufs[s->l->bh[b].slot].st;
}

static inline void *buf_data(const pf_step *s, uint32_t b) { return s->bufs[s->l->bh[b].slot].data; }

static inline void buf_set(pf_step *s, uint32_t b, pf_storage *st) {
  step_buf *e = &s->bufs[s->l->bh[b].slot];
  e->st = st;
  e->data = st != NULL ? st->data : NULL;
}

/* This thread's running slot (a device worker's, or the loop thread's
 * while it runs ops inline); NULL in other threads. initial-exec: the signal
 * handler reads it, and must not make the dynamic loader allocate. */
static __thread pf_running_slot *tls_running __attribute__((tls_model("initial-exec")));

void pf_running_bind(pf_running_slot *slot) { tls_running = slot; }

struct pf_executor {
  pf_executor_config cfg;
  pf_device **devices; /* cfg.num_devices of them */
  int started;         /* devices made so far */
  pf_clock clock_own;  /* when cfg.clock is NULL */
  pf_clock *clock;
  /* Steps are queued on every device under this lock, so all devices see
   * steps in the same order: the earliest unfinished op is always runnable,
   * hence no deadlock between steps in flight. */
  pthread_mutex_t run_lock;
  /* Loop thread only: ops it claimed to run inline, at most one per
   * device (its worker sleeps on it), run by drain_inline. */
  struct inline_op {
    pf_step *step;
    uint32_t op;
  } *inline_ops;
  int n_inline, draining;
  unsigned inline_ticks; /* inline runs, to time one in INLINE_TIME_EVERY */
  pf_clock_reading inline_reading; /* drain_inline's (pf_clock_now_near) */
  pf_running_slot loop_running; /* the loop thread's, for ops it runs inline */
  uint64_t *inline_ops_run; /* loop thread only: per device, ops it ran */
  atomic_uint_fast64_t buffer_allocs; /* counted only while a fault is armed */
  /* The loop's own queues (loop_queue), one per device; NULL unless every
   * op of this executor runs on the loop thread. */
  struct loop_queue *lq;
};

/* A rank whose every op the loop thread runs (loop_runs_ops, with the
 * executor's own CPU devices and no other: one core per rank) keeps its
 * devices' queues here, on the loop thread alone: each device's parts of
 * steps in submission order and the place of the next op in the head
 * part, claimed when it is ready, with no device call, lock or locked
 * decrement per op (the CPU device's claim, ready, park and release cost
 * ~250 of the 2,500 instructions a stencil step on 2 ranks; the atomics
 * are a locked instruction each). Its worker thread sleeps throughout, as
 * it does whenever the loop runs the ops. */
typedef struct loop_queue {
  pf_part *head, *tail;
  const uint32_t *q; /* the head part's ops, n of them; the next at e */
  uint32_t n, e;
  /* The op at e, of step `step` (NULL: no part queued), and its count of
   * inputs not done: set as the queue moves (lq_at), read at every claim. */
  pf_step *step;
  uint32_t op;
  const atomic_uint *count;
  int taken;         /* the op at e is in the inline queue, or running */
  uint64_t head_t0;  /* the head part's first op waits since (0: not) */
  uint64_t wait_ns;  /* those waits, counted as the CPU device counts them */
} loop_queue;

/* ---- loaded plans -------------------------------------------------------- */

void pf_loaded_release(pf_loaded *l) {
  if (l == NULL) return;
  if (atomic_fetch_sub_explicit(&l->refs, 1, memory_order_acq_rel) != 1) return;
  for (uint32_t c = 0; l->comm_handle != NULL && c < l->plan->n_comms; c++)
    if (l->comm_handle[c] != NULL) l->comm_device[c]->ops->comm_leave(l->comm_device[c], l->comm_handle[c]);
  free(l->comm_device);
  free(l->comm_handle);
  free(l->runs_collectives);
  pf_plan_free(l->plan);
  free(l->host_memory);
  free(l->kernels);
  free(l->dependents_first);
  free(l->dependents);
  free(l->device_first);
  free(l->device_ops);
  free(l->readers);
  free(l->keep);
  free(l->loop_op);
  free(l->inline_ok);
  free(l->n_deps);
  free(l->op_slot);
  free(l->flag_out);
  free(l->pending0);
  free(l->readers0);
  free(l->flag_first);
  free(l->flags);
  free(l->flag_val);
  free(l->flag_ranges);
  free(l->buf_slot);
  free(l->start_ops);
  free(l->recv_bufs);
  free(l->input_bufs);
  free(l->release_first);
  free(l->release_bufs);
  free(l->point);
  free(l->slot_at);
  free(l->hot);
  free(l->bh);
  free(l->io_bufs);
  while (l->spare != NULL) {
    pf_step *next = *(pf_step **)l->spare;
    free(l->spare);
    l->spare = next;
  }
  pthread_mutex_destroy(&l->spare_lock);
  free(l);
}

const pf_plan *pf_loaded_plan(const pf_loaded *l) { return l->plan; }

uint32_t pf_loaded_release_point(const pf_loaded *l, uint32_t b) {
  return b < l->plan->n_buffers ? l->point[b] : UINT32_MAX;
}

uint32_t pf_loaded_slot(const pf_loaded *l, uint32_t b) {
  return b < l->plan->n_buffers ? l->slot_at[b] : UINT32_MAX;
}

uint32_t pf_loaded_flag_inputs(const pf_loaded *l, uint32_t i) {
  return i < l->plan->n_ops ? l->hot[i].n_flags : 0;
}

uint32_t pf_loaded_slot_flag_inputs(const pf_loaded *l, uint32_t i) {
  uint32_t n = 0;
  for (uint32_t k = 0; i < l->plan->n_ops && k < l->hot[i].n_flags; k++)
    n += l->flags[l->hot[i].flag_first + k].want != 0;
  return n;
}

/* 1 if op is a collective between ranks that its device runs itself: the
 * scheduler left it on device memory (NCCL; see pf_device_collective). */
static int device_collective(const pf_loaded *l, const pf_plan_op *op) {
  const pf_plan_buffer *b = l->plan->buffers;
  return op->kind == PF_OP_COLLECTIVE && op->comm >= 0 && l->runs_collectives != NULL &&
         l->runs_collectives[op->device] && !b[op->inputs[0]].host &&
         pf_collective_contiguous((pf_collective_kind)op->collective, b[op->inputs[0]].spec,
                                  b[op->outputs[0]].spec, op->axis, op->in_axis);
}

/* The first place from `at` on that starts a cache line of 4-byte counts
 * (16 of them). */
static uint32_t line_start(uint32_t at) { return (at + 15u) & ~15u; }

/* 1 if receive op writes all of its buffer. */
static int whole_receive(const pf_plan *p, const pf_plan_op *op) {
  const pf_spec *spec = p->buffers[op->outputs[0]].spec;
  return op->box != NULL &&
         pf_box_nbytes(op->box, pf_dtype_size(spec->dtype)) == pf_spec_nbytes(spec);
}

/* Two passes over the op records (112 bytes each: a plan of 1.5 million
 * is 168 MB, read again at each pass; there were seven), and two over the
 * buffers. */
static int build_indexes(pf_loaded *l, int num_devices) {
  const pf_plan *p = l->plan;
  size_t n_edges = 0;
  uint32_t *fill, *writes, *dev_fill;
  l->dependents_first = pf_calloc(p->n_ops + 1, sizeof(uint32_t));
  l->device_first = pf_calloc((size_t)num_devices + 1, sizeof(uint32_t));
  l->device_ops = pf_mallocn(p->n_ops, sizeof(uint32_t));
  l->readers = pf_calloc(p->n_buffers, sizeof(int32_t));
  l->keep = pf_calloc(p->n_buffers, 1);
  l->kernels = pf_calloc(p->n_ops, sizeof(*l->kernels));
  l->loop_op = pf_calloc(p->n_ops, 1);
  l->inline_ok = pf_calloc(p->n_ops, sizeof(atomic_uchar));
  l->n_deps = pf_mallocn(p->n_ops, sizeof(uint32_t));
  l->start_ops = pf_mallocn(p->n_ops, sizeof(uint32_t));
  l->recv_bufs = pf_mallocn(p->n_ops, sizeof(uint32_t));
  l->input_bufs = pf_mallocn(p->n_buffers, sizeof(uint32_t));
  l->op_slot = pf_mallocn(p->n_ops, sizeof(uint32_t));
  l->buf_slot = pf_mallocn(p->n_buffers, sizeof(uint32_t));
  fill = pf_mallocn((size_t)p->n_ops + 1, sizeof(uint32_t));
  /* writes[b]: how many ops write buffer b (for recv_bufs, below). */
  writes = pf_calloc((size_t)p->n_buffers + 1, sizeof(uint32_t));
  dev_fill = pf_calloc((size_t)num_devices + 1, sizeof(uint32_t));
  if (!l->dependents_first || !l->device_first || !l->device_ops || !l->readers || !l->keep ||
      !l->kernels || !l->loop_op || !l->inline_ok || !l->n_deps || !l->start_ops ||
      !l->recv_bufs || !l->input_bufs || !l->op_slot || !l->buf_slot || !fill || !writes ||
      !dev_fill) {
    free(fill);
    free(writes);
    free(dev_fill);
    return PF_ENOMEM;
  }
  for (uint32_t i = 0; i < p->n_ops; i++) {
    const pf_plan_op *op = &p->ops[i];
    for (uint32_t k = 0; k < op->n_deps; k++) l->dependents_first[op->deps[k] + 1]++;
    n_edges += op->n_deps;
    l->loop_op[i] = op->kind == PF_OP_SEND || op->kind == PF_OP_RECV ||
                    (op->kind == PF_OP_COLLECTIVE && op->comm >= 0 && !device_collective(l, op));
    l->n_loop_ops += l->loop_op[i];
    l->n_deps[i] = op->n_deps;
    if (l->loop_op[i] && op->n_deps == 0) l->start_ops[l->n_start_ops++] = i;
    if (!l->loop_op[i]) l->device_first[op->device + 1]++;
    if (op->kind != PF_OP_RECV)
      for (uint32_t k = 0; k < op->n_in; k++) l->readers[op->inputs[k]]++;
    for (uint32_t k = 0; k < op->n_out; k++) writes[op->outputs[k]]++;
  }
  if ((l->dependents = pf_mallocn(n_edges ? n_edges : 1, sizeof(uint32_t))) == NULL) {
    free(fill);
    free(writes);
    free(dev_fill);
    return PF_ENOMEM;
  }
  for (uint32_t i = 0; i < p->n_ops; i++)
    l->dependents_first[i + 1] += l->dependents_first[i];
  for (int d = 0; d < num_devices; d++) l->device_first[d + 1] += l->device_first[d];
  memcpy(fill, l->dependents_first, p->n_ops * sizeof(uint32_t));
  memcpy(dev_fill, l->device_first, (size_t)num_devices * sizeof(uint32_t));
  /* A buffer that one receive fills whole, in host memory, gets its memory
   * when the receive is posted (the service posts a long step's receives a
   * window at a time, so a chain of many large transfers does not hold all
   * its receive buffers from its start); any other buffer a receive writes
   * gets it at the step's start (start_step). writes[b] becomes UINT32_MAX
   * once b is looked at. */
  for (uint32_t i = 0; i < p->n_ops; i++) {
    const pf_plan_op *op = &p->ops[i];
    uint32_t b;
    for (uint32_t k = 0; k < op->n_deps; k++) l->dependents[fill[op->deps[k]]++] = i;
    if (!l->loop_op[i]) l->device_ops[dev_fill[op->device]++] = i;
    if (op->kind != PF_OP_RECV || writes[b = op->outputs[0]] == UINT32_MAX) continue;
    if (writes[b] > 1 || !whole_receive(p, op) || !l->host_memory[p->buffers[b].device] ||
        p->buffers[b].host)
      l->recv_bufs[l->n_recv_bufs++] = b;
    writes[b] = UINT32_MAX;
  }
  free(fill);
  free(writes);
  {
    uint32_t at = 0;
    for (int d = 0; d < num_devices; d++) {
      at = line_start(at);
      for (uint32_t e = l->device_first[d]; e < l->device_first[d + 1]; e++)
        l->op_slot[l->device_ops[e]] = at++;
    }
    at = line_start(at);
    for (uint32_t i = 0; i < p->n_ops; i++)
      if (l->loop_op[i]) l->op_slot[i] = at++;
    l->n_op_slots = at;
    /* dev_fill[d]: device d's buffers, then their first place. */
    memset(dev_fill, 0, ((size_t)num_devices + 1) * sizeof(uint32_t));
    for (uint32_t b = 0; b < p->n_buffers; b++) {
      const pf_plan_buffer *pb = &p->buffers[b];
      int32_t d = pb->device;
      dev_fill[d >= 0 && d < num_devices ? d : num_devices]++;
      l->keep[b] = pb->output >= 0;
      if (pb->input >= 0) l->input_bufs[l->n_input_bufs++] = b;
    }
    at = 0;
    for (int d = 0; d <= num_devices; d++) {
      uint32_t n = dev_fill[d];
      dev_fill[d] = at = line_start(at);
      at += n;
    }
    for (uint32_t b = 0; b < p->n_buffers; b++) {
      int32_t d = p->buffers[b].device;
      l->buf_slot[b] = dev_fill[d >= 0 && d < num_devices ? d : num_devices]++;
    }
    l->n_buf_slots = at;
  }
  free(dev_fill);
  return 0;
}

/* Release points. A buffer read on another device than the one that made
 * it costs each read an atomic decrement of a count the other core wrote
 * too (finish_op), and the last reader a release of storage the other
 * core made: locked instructions on lines the two cores pass back and
 * forth, a wait of one cross-core transfer each, at every op of a stencil
 * (the hand-written pinned threads it is measured against store one
 * counter a step). Instead, if an op o later in the producer's queue can
 * only start once every read of the buffer is done, o's device lets go of
 * the buffer when it comes to o, with no count at all: each reader on the
 * producer's device comes before o in its queue, and for each reader on
 * another device E, o or an op before it in the producer's queue depends
 * directly on that reader or on a later op of E (a device runs its queue
 * in order, each op finished before the next starts). The point is looked
 * for among the next RELEASE_WINDOW ops of the producer's queue, for
 * buffers of host-memory devices made by one op of a device queue and read
 * only by such ops, of at most RELEASE_MAX_BYTES (a release point may come
 * later than the last read, which the memory plan's peaks assume, and an
 * op on a large buffer takes long enough that two atomic operations are
 * nothing to it); other buffers keep their counts. */
#define RELEASE_WINDOW 16u
#define RELEASE_MAX_BYTES ((size_t)64 << 10)
#define RELEASE_DEVICES 8 /* readers' devices followed; more: counted */

/* The release point of buffer b (written by op w, its readers
 * rops[0..n)), or UINT32_MAX. pos: each device op's place in its queue. */
static uint32_t release_point(const pf_loaded *l, uint32_t b, uint32_t w, const uint32_t *rops,
                              uint32_t n, const uint32_t *pos) {
  const pf_plan *p = l->plan;
  int32_t d = p->ops[w].device, dev[RELEASE_DEVICES];
  int64_t seen[RELEASE_DEVICES]; /* per reader device: latest op some op so far depends on */
  int n_dev = 0, cross = 0;
  uint32_t first = l->device_first[d], end = l->device_first[d + 1];
  if (l->keep[b] || p->buffers[b].input >= 0 || p->buffers[b].host || n == 0 || l->loop_op[w] ||
      p->buffers[b].device != d || !l->host_memory[d] ||
      pf_spec_nbytes(p->buffers[b].spec) > RELEASE_MAX_BYTES)
    return UINT32_MAX;
  for (uint32_t k = 0; k < n; k++) {
    int32_t e = p->ops[rops[k]].device, j;
    if (l->loop_op[rops[k]] || !l->host_memory[e]) return UINT32_MAX;
    if (e == d) continue;
    cross = 1;
    for (j = 0; j < n_dev && dev[j] != e; j++) continue;
    if (j == n_dev) {
      if (n_dev == RELEASE_DEVICES) return UINT32_MAX;
      dev[n_dev] = e;
      seen[n_dev++] = -1;
    }
  }
  if (!cross) return UINT32_MAX; /* its counts stay on this device's lines */
  for (uint32_t at = pos[w] + 1; at < end - first && at <= pos[w] + RELEASE_WINDOW; at++) {
    uint32_t o = l->device_ops[first + at], k;
    const pf_plan_op *op = &p->ops[o];
    for (uint32_t q = 0; q < op->n_deps; q++) {
      uint32_t x = op->deps[q];
      if (l->loop_op[x]) continue;
      for (int j = 0; j < n_dev; j++)
        if (dev[j] == p->ops[x].device && (int64_t)pos[x] > seen[j]) seen[j] = pos[x];
    }
    for (k = 0; k < n; k++) {
      int32_t e = p->ops[rops[k]].device;
      int j;
      if (e == d) {
        if (pos[rops[k]] >= at) break;
        continue;
      }
      for (j = 0; dev[j] != e; j++) continue;
      if (seen[j] < (int64_t)pos[rops[k]]) break;
    }
    if (k == n) return o;
  }
  return UINT32_MAX;
}

/* Slots. A buffer with a release point, made by a kernel and read only by
 * kernels, gets a place in the step's slot area fixed at load: its
 * producer writes there and its readers read there, with no storage to
 * allocate, release or look up in the step's buffer table (a line the
 * producer's core rewrites at its next op: one more cross-core miss on a
 * stencil's critical path). Each device's queue is scanned in order: a
 * slot taken at the producer's place is free again from the release
 * point's place on (every read is done when the device comes to it, so the
 * op there may write its own output into it). Each device's slots start
 * on a line of their own; SLOT_BYTES_MAX in all, the rest counted. */
#define SLOT_BYTES_MAX ((size_t)256 << 10)

typedef struct slot_use {
  size_t offset, size;
  uint32_t free_at; /* the place in the queue from which it is free */
} slot_use;

/* Slot flags. A buffer of at most SLOT_FLAG bytes in a slot leaves its
 * line's last 4 bytes alone: its writer stores there its place in its
 * device's queue, plus one, after the op (run_op), and a consumer on
 * another device waits for that word instead of the op's t_end: the flag
 * and the data then cross between the cores in one line, not two (each a
 * cross-core miss on a stencil's critical path). Such buffers get lines
 * of their own (a region of the device's slots that no larger buffer
 * shares, so no other data ever lies on a flag word), reused only by later
 * ops of the same device: the word only grows during a step, from 0 at its
 * start (start_step zeroes the regions). */
#define SLOT_FLAG 60u

/* Permanent slots: a buffer of one line at most, made by a kernel of a
 * host-memory device and read only by kernels of such devices, some on
 * another device, that has no release point (no op of its producer's
 * device waits for its readers: a device that runs ahead of the one that
 * reads it, as the free side of a reduction tree) gets a line of the slot
 * area for the whole step instead of storage: no allocation, reader count
 * or release, each written by one core and freed by the other, four
 * cross-core misses per op on bench/granularity -d 2 -p tree.
 *
 * Transfers' buffers too, of one line at most on host-memory devices: a
 * kernel's output that sends or one-shard allreduces read (with kernels or
 * alone), and a receive's or a one-shard allreduce's output, read only by
 * such ops (slot_reader). The transport sends from, receives into and
 * reduces in the slot (pf_step_slot); a stencil step on 2 ranks spent ~330
 * of its 2,500 own instructions making and letting go of the storage of
 * its two buffers (bench/instructions.sh). A loop op's output has no flag
 * word: the loop counts its readers' inputs (plan_flags). */
#define PERMANENT_SLOT_BYTES 64u

/* 1 if `op` may read a buffer in a slot (the service knows how): a kernel
 * of a host-memory device, a send, or an allreduce of one shard into one
 * output that the transport runs (the service's one_allreduce). */
static int slot_reader(const pf_loaded *l, const pf_plan_op *op, uint32_t i) {
  if (!l->host_memory[op->device]) return 0;
  if (op->kind == PF_OP_KERNEL || op->kind == PF_OP_SEND) return 1;
  return op->kind == PF_OP_COLLECTIVE && l->loop_op[i] && op->collective == PF_ALLREDUCE &&
         op->n_in == 1 && op->n_out == 1;
}

/* A kernel's output that may have a slot (slot_candidates): its op's place
 * in its device's queue, its bytes, and which kind of slot. The passes that
 * give slots walk these, not the device's every op, output and reader
 * again (three passes of a plan of 1.5 million ops: 80 ms on the rank
 * that loads it, each a miss on the op's record and its buffer's). */
typedef struct slot_candidate {
  uint32_t place, b;
  size_t nbytes;
  int kind; /* SLOT_SMALL, SLOT_LARGE, SLOT_PERMANENT */
} slot_candidate;
enum { SLOT_SMALL, SLOT_LARGE, SLOT_PERMANENT };

/* Device d's candidates, in queue order, into c; returns how many. */
static size_t slot_candidates(const pf_loaded *l, int d, const uint32_t *point,
                              const uint32_t *writer, const uint32_t *rfirst,
                              const uint32_t *rops, slot_candidate *c) {
  const pf_plan *p = l->plan;
  size_t n = 0;
  for (uint32_t e = l->device_first[d]; e < l->device_first[d + 1]; e++) {
    uint32_t i = l->device_ops[e];
    const pf_plan_op *op = &p->ops[i];
    if (op->kind != PF_OP_KERNEL) continue;
    for (uint32_t k = 0; k < op->n_out; k++) {
      uint32_t b = op->outputs[k], r;
      const pf_plan_buffer *pb = &p->buffers[b];
      size_t nbytes;
      int cross = 0;
      if (writer[b] != i) continue;
      nbytes = pf_spec_nbytes(pb->spec);
      if (nbytes == 0) continue;
      if (point[b] != UINT32_MAX) {
        /* A copy or a collective reads it: a storage. */
        for (r = rfirst[b]; r < rfirst[b + 1] && p->ops[rops[r]].kind == PF_OP_KERNEL; r++) continue;
        if (r == rfirst[b + 1])
          c[n++] = (slot_candidate){e - l->device_first[d], b, nbytes,
                                    nbytes <= SLOT_FLAG ? SLOT_SMALL : SLOT_LARGE};
        continue;
      }
      if (!l->host_memory[d] || nbytes > PERMANENT_SLOT_BYTES || l->keep[b] || pb->input >= 0 ||
          pb->host || pb->device != d || rfirst[b] == rfirst[b + 1])
        continue;
      for (r = rfirst[b]; r < rfirst[b + 1]; r++) {
        const pf_plan_op *reader = &p->ops[rops[r]];
        if (!slot_reader(l, reader, rops[r])) break;
        cross |= reader->device != d || reader->kind != PF_OP_KERNEL;
      }
      if (r == rfirst[b + 1] && cross)
        c[n++] = (slot_candidate){e - l->device_first[d], b, nbytes, SLOT_PERMANENT};
    }
  }
  return n;
}

/* Permanent slots for device d's candidates, from `at`, within
 * SLOT_BYTES_MAX; returns the bytes taken. After its reusable slots. */
static size_t permanent_slots(pf_loaded *l, size_t at, const slot_candidate *c, size_t n) {
  size_t taken = 0;
  for (size_t k = 0; k < n; k++) {
    if (c[k].kind != SLOT_PERMANENT) continue;
    if (at + taken + PERMANENT_SLOT_BYTES > SLOT_BYTES_MAX) return taken;
    l->slot_at[c[k].b] = (uint32_t)(at + taken);
    if (c[k].nbytes <= SLOT_FLAG) l->flag_val[c[k].b] = c[k].place + 1;
    taken += PERMANENT_SLOT_BYTES;
  }
  return taken;
}

/* Reusable slots from `at` for device d's candidates of one kind
 * (SLOT_SMALL: at most SLOT_FLAG bytes; SLOT_LARGE), each free from its
 * release point's place on; returns the bytes taken. */
static size_t reusable_slots(pf_loaded *l, size_t at, int kind, const uint32_t *point,
                             const uint32_t *pos, const slot_candidate *c, size_t n,
                             slot_use *used) {
  size_t n_used = 0, end = 0;
  for (size_t k = 0; k < n; k++) {
    size_t size = (c[k].nbytes + 63) / 64 * 64, off = 0, place, w = 0;
    if (c[k].kind != kind) continue;
    /* Those free by this op's place are free for it (the slots are only
     * looked at here, so dropping them now is dropping them at every op
     * before). */
    for (size_t j = 0; j < n_used; j++)
      if (used[j].free_at > c[k].place) used[w++] = used[j];
    n_used = w;
    /* The lowest gap that fits, among the slots in use (by offset). */
    for (place = 0; place < n_used; place++) {
      if (used[place].offset >= off + size) break;
      off = PF_MAXOF(off, used[place].offset + used[place].size);
    }
    if (at + off + size > SLOT_BYTES_MAX) continue;
    memmove(&used[place + 1], &used[place], (n_used - place) * sizeof *used);
    used[place] = (slot_use){off, size, pos[point[c[k].b]]};
    n_used++;
    l->slot_at[c[k].b] = (uint32_t)(at + off);
    if (kind == SLOT_SMALL) l->flag_val[c[k].b] = c[k].place + 1;
    end = PF_MAXOF(end, off + size);
  }
  return end;
}

/* Slots for loop ops' outputs (PERMANENT_SLOT_BYTES: of one line at
 * most, in host memory, written whole by a receive or a one-shard
 * allreduce, read only by slot_readers), from `at` within SLOT_BYTES_MAX;
 * returns the bytes taken. Loop ops only are looked at (a plan of 1.5
 * million ops has few). */
static size_t loop_output_slots(pf_loaded *l, size_t at, const uint32_t *writer,
                                const uint32_t *rfirst, const uint32_t *rops) {
  const pf_plan *p = l->plan;
  size_t taken = 0;
  for (uint32_t i = 0; i < p->n_ops && at + taken + PERMANENT_SLOT_BYTES <= SLOT_BYTES_MAX; i++) {
    const pf_plan_op *op;
    const pf_plan_buffer *pb;
    size_t nbytes;
    uint32_t b, r;
    if (!l->loop_op[i] || (op = &p->ops[i])->n_out != 1) continue;
    b = op->outputs[0];
    pb = &p->buffers[b];
    if ((op->kind != PF_OP_RECV && (op->kind != PF_OP_COLLECTIVE || !slot_reader(l, op, i))) ||
        writer[b] != i || l->keep[b] || pb->input >= 0 || pb->host || !l->host_memory[pb->device])
      continue;
    nbytes = pf_spec_nbytes(pb->spec);
    if (nbytes == 0 || nbytes > PERMANENT_SLOT_BYTES ||
        (op->kind == PF_OP_RECV && pf_box_nbytes(op->box, pf_dtype_size(pb->spec->dtype)) != nbytes))
      continue;
    for (r = rfirst[b]; r < rfirst[b + 1] && slot_reader(l, &p->ops[rops[r]], rops[r]); r++)
      continue;
    if (r != rfirst[b + 1]) continue;
    l->slot_at[b] = (uint32_t)(at + taken);
    taken += PERMANENT_SLOT_BYTES;
  }
  return taken;
}

static int plan_slots(pf_loaded *l, int num_devices, const uint32_t *point, const uint32_t *pos,
                      const uint32_t *writer, const uint32_t *rfirst, const uint32_t *rops) {
  const pf_plan *p = l->plan;
  /* Slots in use at once: each of at least a line, SLOT_BYTES_MAX in all;
   * in practice a few per device (each is free within RELEASE_WINDOW ops). */
  slot_use *used = pf_mallocn(PF_MINOF((size_t)p->n_buffers, SLOT_BYTES_MAX / 64) + 1, sizeof *used);
  slot_candidate *cand = pf_mallocn((size_t)p->n_buffers + 1, sizeof *cand);
  size_t total = 0;
  l->slot_at = pf_mallocn(p->n_buffers + 1, sizeof *l->slot_at);
  l->flag_val = pf_calloc(p->n_buffers + 1, sizeof *l->flag_val);
  l->flag_ranges = pf_mallocn(4 * (size_t)num_devices + 1, sizeof *l->flag_ranges);
  if (used == NULL || cand == NULL || l->slot_at == NULL || l->flag_val == NULL ||
      l->flag_ranges == NULL) {
    free(used);
    free(cand);
    return PF_ENOMEM;
  }
  for (uint32_t b = 0; b < p->n_buffers; b++) l->slot_at[b] = UINT32_MAX;
  for (int d = 0; d < num_devices; d++) {
    size_t start = (total + 63) / 64 * 64, small, large, perm;
    size_t n = slot_candidates(l, d, point, writer, rfirst, rops, cand);
    small = reusable_slots(l, start, SLOT_SMALL, point, pos, cand, n, used);
    large = reusable_slots(l, start + small, SLOT_LARGE, point, pos, cand, n, used);
    perm = permanent_slots(l, start + small + large, cand, n);
    if (small > 0) {
      l->flag_ranges[2 * l->n_flag_ranges] = (uint32_t)start;
      l->flag_ranges[2 * l->n_flag_ranges++ + 1] = (uint32_t)(start + small);
    }
    if (perm > 0) {
      l->flag_ranges[2 * l->n_flag_ranges] = (uint32_t)(start + small + large);
      l->flag_ranges[2 * l->n_flag_ranges++ + 1] = (uint32_t)(start + small + large + perm);
    }
    if (small + large + perm > 0) total = start + small + large + perm;
  }
  total = (total + 63) / 64 * 64;
  total += loop_output_slots(l, total, writer, rfirst, rops);
  l->slot_bytes = total;
  free(used);
  free(cand);
  return 0;
}

/* Fills point, release_first and release_bufs (see release_point), and
 * the slots (plan_slots). */
static int plan_release_points(pf_loaded *l, int num_devices) {
  const pf_plan *p = l->plan;
  uint32_t *pos = pf_mallocn(p->n_ops + 1, sizeof *pos);
  uint32_t *writer = pf_mallocn(p->n_buffers + 1, sizeof *writer);
  uint32_t *rfirst = pf_calloc(p->n_buffers + 2, sizeof *rfirst);
  uint32_t *point = l->point = pf_mallocn(p->n_buffers + 1, sizeof *point), *rops = NULL;
  int rc = PF_ENOMEM;
  l->release_first = pf_calloc(p->n_ops + 1, sizeof *l->release_first);
  if (!pos || !writer || !rfirst || !point || !l->release_first) goto done;
  for (int d = 0; d < num_devices; d++)
    for (uint32_t e = l->device_first[d]; e < l->device_first[d + 1]; e++)
      pos[l->device_ops[e]] = e - l->device_first[d];
  /* Each buffer's one writer (UINT32_MAX: none, or several) and readers
   * (the reads finish_op counts). */
  for (uint32_t b = 0; b < p->n_buffers; b++) writer[b] = point[b] = UINT32_MAX;
  for (uint32_t i = 0; i < p->n_ops; i++) {
    const pf_plan_op *op = &p->ops[i];
    for (uint32_t k = 0; k < op->n_out; k++) {
      uint32_t *w = &writer[op->outputs[k]];
      *w = *w == UINT32_MAX ? i : UINT32_MAX - 1;
    }
    if (op->kind != PF_OP_RECV)
      for (uint32_t k = 0; k < op->n_in; k++) rfirst[op->inputs[k] + 2]++;
  }
  for (uint32_t b = 0; b < p->n_buffers; b++) rfirst[b + 2] += rfirst[b + 1];
  if ((rops = pf_mallocn((size_t)rfirst[p->n_buffers + 1] + 1, sizeof *rops)) == NULL) goto done;
  for (uint32_t i = 0; i < p->n_ops; i++)
    if (p->ops[i].kind != PF_OP_RECV)
      for (uint32_t k = 0; k < p->ops[i].n_in; k++) rops[rfirst[p->ops[i].inputs[k] + 1]++] = i;
  /* rfirst[b] .. rfirst[b + 1]: b's readers. */
  for (uint32_t b = 0; b < p->n_buffers; b++) {
    uint32_t w = writer[b];
    if (w >= UINT32_MAX - 1) continue;
    point[b] = release_point(l, b, w, rops + rfirst[b], rfirst[b + 1] - rfirst[b], pos);
  }
  if (plan_slots(l, num_devices, point, pos, writer, rfirst, rops) != 0) goto done;
  /* A buffer in a slot has no storage to let go of: no release op. */
  for (uint32_t b = 0; b < p->n_buffers; b++)
    if (point[b] != UINT32_MAX && l->slot_at[b] == UINT32_MAX) l->release_first[point[b] + 1]++;
  for (uint32_t i = 0; i < p->n_ops; i++) l->release_first[i + 1] += l->release_first[i];
  if ((l->release_bufs = pf_mallocn((size_t)l->release_first[p->n_ops] + 1, sizeof(uint32_t))) ==
      NULL)
    goto done;
  memcpy(pos, l->release_first, p->n_ops * sizeof *pos); /* now: fill */
  for (uint32_t b = 0; b < p->n_buffers; b++)
    if (point[b] != UINT32_MAX && l->slot_at[b] == UINT32_MAX) l->release_bufs[pos[point[b]]++] = b;
  rc = 0;
done:
  free(pos);
  free(writer);
  free(rfirst);
  free(rops);
  return rc;
}

/* An op whose input arrives over MPI may be run by the loop thread itself
 * when its device's worker sleeps waiting for it: the result can then be
 * sent at once, with no hand-off to the worker and back. Only for short
 * ops: while it runs one, the loop neither makes MPI progress nor sends
 * heartbeats. An op qualifies if its cost function calls it tiny; with no
 * cost function (the default counts bytes only, not time), once a worker
 * has run it in under INLINE_MAX_NS. An op that takes longer on the loop
 * thread (data-dependent time) goes back to its worker, until a worker run
 * is short again. */
#define INLINE_MAX_BYTES (64.0 * 1024)
#define INLINE_MAX_FLOPS (64.0 * 1024)
#define INLINE_MAX_NS 50000u
enum { INLINE_NO = 0, INLINE_UNPROVEN = 1, INLINE_YES = 2 };
/* How often an inline run is timed: an op that turns long goes back to
 * its worker after at most this many runs on the loop thread. */
#define INLINE_TIME_EVERY 8u

static void mark_inline(pf_executor *ex, pf_loaded *l, uint32_t i) {
  const pf_plan *p = l->plan;
  const pf_plan_op *op = &p->ops[i];
  pf_spec in[PF_OP_ARGS_ON_STACK], out[PF_OP_ARGS_ON_STACK];
  pf_cost cost = {0, 0};
  /* Wide ops are never short enough to be worth running on the loop. */
  if (ex->cfg.loop_op == NULL || op->kind != PF_OP_KERNEL || op->n_in > PF_OP_ARGS_ON_STACK ||
      op->n_out > PF_OP_ARGS_ON_STACK)
    return;
  for (uint32_t k = 0; k < op->n_in; k++) in[k] = *p->buffers[op->inputs[k]].spec;
  for (uint32_t k = 0; k < op->n_out; k++) out[k] = *p->buffers[op->outputs[k]].spec;
  l->kernels[i]->cost(op->attrs, (int)op->n_in, in, (int)op->n_out, out, &cost);
  if (cost.bytes <= INLINE_MAX_BYTES && cost.flops <= INLINE_MAX_FLOPS)
    atomic_init(&l->inline_ok[i],
                l->kernels[i]->cost == pf_default_cost ? INLINE_UNPROVEN : INLINE_YES);
}

/* Records how long op i took: a short run proves it may run inline; a
 * long one sends it back to its worker until a worker run is short again
 * (one sample: a worker preempted in the middle of a short op must not
 * lose it the loop thread for good). */
static void note_inline_time(pf_loaded *l, uint32_t i, uint64_t ns) {
  atomic_store_explicit(&l->inline_ok[i], ns <= INLINE_MAX_NS ? INLINE_YES : INLINE_UNPROVEN,
                        memory_order_relaxed);
}

/* What each device says of its memory and collectives, for this plan;
 * stage[d] (num_devices entries) gets what device d stages. */
static int read_devices(pf_executor *ex, pf_loaded *l, uint32_t *stage) {
  int n = ex->cfg.num_devices;
  l->host_memory = pf_calloc((size_t)n, 1);
  l->runs_collectives = pf_calloc((size_t)n, 1);
  l->comm_device = pf_calloc((size_t)l->plan->n_comms + 1, sizeof *l->comm_device);
  l->comm_handle = pf_calloc((size_t)l->plan->n_comms + 1, sizeof *l->comm_handle);
  if (!l->host_memory || !l->runs_collectives || !l->comm_device || !l->comm_handle)
    return PF_ENOMEM;
  for (int d = 0; d < n; d++) {
    const pf_device_ops *ops = ex->devices[d]->ops;
    pf_device_info info;
    memset(&info, 0, sizeof info);
    ops->info(ex->devices[d], &info);
    l->host_memory[d] = !info.own_memory;
    stage[d] = info.own_memory ? info.stage : 0;
    l->runs_collectives[d] = info.own_memory && !(info.stage & PF_STAGE_COLLECTIVES) &&
                             ops->collective && ops->comm_id && ops->comm_join && ops->comm_leave;
  }
  return 0;
}

/* The path an op or a buffer's feed/fetch takes through host memory. */
static uint32_t host_path(const pf_plan_op *op) {
  if (op->kind == PF_OP_SEND || op->kind == PF_OP_RECV) return PF_STAGE_TRANSFERS;
  if (op->kind == PF_OP_COLLECTIVE) return op->comm >= 0 ? PF_STAGE_COLLECTIVES : PF_STAGE_LOCAL;
  return 0;
}

/* Refuses a plan that would have the host touch a device's own memory (a
 * path the device stages, on a buffer not staged; a copy run by a CPU
 * device), or a kernel of such a device read host memory: it could only
 * compute garbage or crash. The scheduler never makes one for devices that
 * say what they stage; a plan from elsewhere, or a device that stages less
 * than it should, may. stage: read_devices'. */
static int check_memory_spaces(pf_executor *ex, pf_loaded *l, const uint32_t *stage,
                               pf_diag *diag) {
  const pf_plan *p = l->plan;
  int rc = 0, own = 0;
  for (uint32_t b = 0; b < p->n_buffers && rc == 0; b++)
    if ((p->buffers[b].input >= 0 || p->buffers[b].output >= 0) && p->buffers[b].host)
      rc = pf_diag_error(diag, PF_EDECODE,
                         "rank %d: buffer %u is fed or fetched but is a staging buffer",
                         ex->cfg.rank, b);
  /* With every device's memory the host's (CPU devices), no op below can
   * be refused: not a pass over a plan's records for nothing. */
  for (int d = 0; d < ex->cfg.num_devices && !own; d++) own = !l->host_memory[d];
  for (uint32_t i = 0; own && i < p->n_ops && rc == 0; i++) {
    const pf_plan_op *op = &p->ops[i];
    uint32_t path = host_path(op);
    for (uint32_t k = 0; k < op->n_in + op->n_out && rc == 0; k++) {
      uint32_t b = k < op->n_in ? op->inputs[k] : op->outputs[k - op->n_in];
      const pf_plan_buffer *pb = &p->buffers[b];
      int host = pb->host || l->host_memory[pb->device];
      /* Collectives reduce on the host whatever a device says; a transfer
       * may read a device's memory when the device says the transport can
       * (it does not stage transfers: CUDA-aware MPI). */
      if (path != 0 && !host && !device_collective(l, op) &&
          (op->kind == PF_OP_COLLECTIVE || (stage[pb->device] & path)))
        rc = pf_diag_error(diag, PF_EDECODE,
                           "rank %d: op %u (program \"%s\") moves buffer %u through the host, "
                           "but it lives in device %d's own memory (not staged)",
                           ex->cfg.rank, i, op->name, b, (int)pb->device);
      else if (op->kind == PF_OP_COPY && !host && l->host_memory[op->device])
        rc = pf_diag_error(diag, PF_EDECODE,
                           "rank %d: op %u (copy for \"%s\") runs on device %d, whose memory "
                           "is the host's, but buffer %u is in device %d's own memory",
                           ex->cfg.rank, i, op->name, (int)op->device, b, (int)pb->device);
      else if (op->kind == PF_OP_KERNEL && k < op->n_in && pb->device != op->device &&
               !(host && l->host_memory[op->device]))
        rc = pf_diag_error(diag, PF_EDECODE,
                           "rank %d: op %u (kernel \"%s\" of program \"%s\") on device %d reads "
                           "buffer %u of device %d, and the two do not share memory",
                           ex->cfg.rank, i, op->kernel ? op->kernel : "?", op->name,
                           (int)op->device, b, (int)pb->device);
      else if (op->kind == PF_OP_KERNEL && host && !l->host_memory[op->device])
        rc = pf_diag_error(diag, PF_EDECODE,
                           "rank %d: op %u (program \"%s\") runs on device %d but reads or "
                           "writes buffer %u in host memory",
                           ex->cfg.rank, i, op->name, (int)op->device, b);
    }
  }
  return rc;
}

/* The buffer whose slot's flag word tells that op i is done, or
 * UINT32_MAX (its t_end tells): i's one output, small and in a slot, that
 * every op depending on i reads (the slot's line may be another buffer's
 * once those reads are done, no sooner). */
static uint32_t slot_flag_of(const pf_loaded *l, uint32_t i) {
  const pf_plan *p = l->plan;
  uint32_t b;
  if (p->ops[i].kind != PF_OP_KERNEL || p->ops[i].n_out != 1) return UINT32_MAX;
  b = p->ops[i].outputs[0];
  if (l->slot_at[b] == UINT32_MAX || l->flag_val[b] == 0) return UINT32_MAX;
  for (uint32_t e = l->dependents_first[i]; e < l->dependents_first[i + 1]; e++) {
    const pf_plan_op *dep = &p->ops[l->dependents[e]];
    uint32_t k = 0;
    while (k < dep->n_in && dep->inputs[k] != b) k++;
    if (k == dep->n_in) return UINT32_MAX;
  }
  return b;
}

/* Which inputs are told by a flag instead of a count (pf_device_ops.asleep):
 * those of an op on a device with asleep whose inputs are all ops of such
 * devices (its own included), which run on its threads and finish there.
 * The op's count then starts at 0, and pf_step_op_ready reads the flags:
 * each input op's end time, which run_op stores (t_end, by op slot, so a
 * device's flags lie on lines of its own). An op with any other input (a
 * receive, a GPU's op) is counted whole: a count and flags together would
 * need the two sides to see each other's last step. An input whose output
 * lies in a slot with a flag word is told by that word (slot_flag_of,
 * SLOT_FLAG) rather than its t_end. Errors: PF_ENOMEM. */
static int plan_flags(pf_executor *ex, pf_loaded *l) {
  const pf_plan *p = l->plan;
  size_t n = 0;
  l->flag_out = pf_calloc(p->n_ops ? p->n_ops : 1, 1);
  l->flag_first = pf_calloc((size_t)p->n_ops + 1, sizeof(uint32_t));
  if (l->flag_out == NULL || l->flag_first == NULL) return PF_ENOMEM;
  for (uint32_t i = 0; i < p->n_ops; i++)
    l->flag_out[i] = !l->loop_op[i] && ex->lq == NULL &&
                     ex->devices[p->ops[i].device]->ops->asleep != NULL;
  for (uint32_t j = 0; j < p->n_ops; j++) {
    const pf_plan_op *op = &p->ops[j];
    uint32_t k = 0;
    if (l->flag_out[j] && op->n_deps > 0 && op->n_deps <= UINT16_MAX)
      for (k = 0; k < op->n_deps && l->flag_out[op->deps[k]]; k++) continue;
    l->flag_first[j + 1] = l->flag_first[j] + (k > 0 && k == op->n_deps ? k : 0);
  }
  n = l->flag_first[p->n_ops];
  if ((l->flags = pf_mallocn(n ? n : 1, sizeof *l->flags)) == NULL) return PF_ENOMEM;
  for (uint32_t j = 0; j < p->n_ops; j++) {
    uint32_t at = l->flag_first[j];
    if (at == l->flag_first[j + 1]) continue;
    for (uint32_t k = 0; k < p->ops[j].n_deps; k++) {
      uint32_t i = p->ops[j].deps[k], b = slot_flag_of(l, i);
      l->flags[at + k] = b != UINT32_MAX
                             ? (struct input_flag){l->slot_at[b] + SLOT_FLAG, l->flag_val[b]}
                             : (struct input_flag){l->op_slot[i], 0};
    }
    l->n_deps[j] = 0; /* nothing counts down */
  }
  return 0;
}

/* 1 if kernel op j, the one dependent of a loop collective, may run in
 * that collective's completion (run_epilogue): its only input op is the
 * collective, and running it takes nothing of run_op's general path: every
 * input and output in the slot area (no storage to find, make, take over
 * or let go of), no release point, no read counted, no flag told, at most
 * EPILOGUE_MAX_ARGS inputs and outputs. The small kernel after a small
 * allreduce (a chain of them: bench/dispatch Chained). */
static int is_epilogue(const pf_loaded *l, uint32_t j) {
  const op_hot *h = &l->hot[j];
  if (h->kind != PF_OP_KERNEL || h->loop_op || !h->one_dep || h->n_flags != 0 ||
      h->flag_out != 0 || h->rel_first != h->rel_end || h->n_in > EPILOGUE_MAX_ARGS ||
      h->n_out > EPILOGUE_MAX_ARGS)
    return 0;
  for (uint32_t k = 0; k < (uint32_t)h->n_in + h->n_out; k++)
    if (l->bh[l->io_bufs[h->io + k]].slot_at == UINT32_MAX) return 0;
  return 1;
}

/* The ops' and buffers' hot records (op_hot, buf_hot), once everything
 * they copy is known. Errors: PF_ENOMEM, PF_ERANGE (more than 2^32 inputs
 * and outputs in all, or a value past op_hot's 16-bit fields). */
static int build_hot(pf_loaded *l) {
  const pf_plan *p = l->plan;
  size_t n_io = 0;
  for (uint32_t i = 0; i < p->n_ops; i++) n_io += (size_t)p->ops[i].n_in + p->ops[i].n_out;
  if (n_io > UINT32_MAX) return PF_ERANGE; /* op_hot.io is 32 bits */
  for (uint32_t i = 0; i < p->n_ops; i++)
    if (p->ops[i].n_in > UINT16_MAX || p->ops[i].n_out > UINT16_MAX ||
        p->ops[i].device > INT16_MAX)
      return PF_ERANGE; /* op_hot's fields */
  l->hot = pf_calloc(p->n_ops, sizeof *l->hot);
  l->bh = pf_calloc(p->n_buffers, sizeof *l->bh);
  l->io_bufs = pf_mallocn(n_io ? n_io : 1, sizeof *l->io_bufs);
  if (l->hot == NULL || l->bh == NULL || l->io_bufs == NULL) return PF_ENOMEM;
  n_io = 0;
  for (uint32_t i = 0; i < p->n_ops; i++) {
    const pf_plan_op *op = &p->ops[i];
    op_hot *h = &l->hot[i];
    h->kind = (uint8_t)op->kind;
    h->loop_op = l->loop_op[i];
    h->one_dep = l->n_deps[i] == 1;
    h->flag_out = l->flag_out[i] ? OP_FLAG_OUT : 0;
    h->device = (int16_t)op->device;
    h->n_flags = (uint16_t)(l->flag_first[i + 1] - l->flag_first[i]);
    h->flag_first = l->flag_first[i];
    h->slot = l->op_slot[i];
    h->n_in = (uint16_t)op->n_in;
    h->n_out = (uint16_t)op->n_out;
    h->io = (uint32_t)n_io;
    if (op->n_in) memcpy(l->io_bufs + n_io, op->inputs, op->n_in * sizeof *op->inputs);
    n_io += op->n_in;
    if (op->n_out) memcpy(l->io_bufs + n_io, op->outputs, op->n_out * sizeof *op->outputs);
    n_io += op->n_out;
    h->dep_first = l->dependents_first[i];
    h->dep_end = l->dependents_first[i + 1];
    h->rel_first = l->release_first[i];
    h->rel_end = l->release_first[i + 1];
    h->shard = op->shard;
    h->num_shards = op->num_shards;
    h->kernel = l->kernels[i];
    h->attrs = op->attrs;
  }
  for (uint32_t b = 0; b < p->n_buffers; b++) {
    const pf_plan_buffer *pb = &p->buffers[b];
    buf_hot *h = &l->bh[b];
    h->slot = l->buf_slot[b];
    h->point = l->point[b];
    h->slot_at = l->slot_at[b];
    h->device = pb->device;
    h->keep = l->keep[b];
    h->one_reader = l->readers[b] == 1;
    h->flag_val = l->slot_at[b] != UINT32_MAX ? l->flag_val[b] : 0;
    h->in_arena = pb->in_arena != 0;
    h->host = pb->host != 0;
    h->spec = pb->spec;
    h->nbytes = pf_spec_nbytes(pb->spec);
  }
  l->pending0 = pf_calloc((size_t)l->n_op_slots + 16, sizeof *l->pending0);
  l->readers0 = pf_calloc((size_t)l->n_buf_slots + 16, sizeof *l->readers0);
  if (l->pending0 == NULL || l->readers0 == NULL) return PF_ENOMEM;
  for (uint32_t i = 0; i < p->n_ops; i++) l->pending0[l->op_slot[i]] = l->n_deps[i];
  for (uint32_t b = 0; b < p->n_buffers; b++)
    l->readers0[l->buf_slot[b]] = (uint32_t)l->readers[b];
  /* Reads counted by finish_op: neither a release point's nor in a slot. */
  for (uint32_t i = 0; i < p->n_ops; i++)
    for (uint32_t k = 0; k < l->hot[i].n_in; k++) {
      const buf_hot *bh = &l->bh[l->io_bufs[l->hot[i].io + k]];
      if (bh->point == UINT32_MAX && bh->slot_at == UINT32_MAX) {
        l->hot[i].flag_out |= OP_COUNTS_READS;
        break;
      }
    }
  /* Epilogues, and the collectives they follow: those whose finish_op
   * has nothing to do but count the epilogue (no read counted, no flag). */
  for (uint32_t c = 0; c < p->n_ops; c++)
    if (l->hot[c].loop_op && l->hot[c].kind == PF_OP_COLLECTIVE && l->hot[c].flag_out == 0 &&
        l->hot[c].dep_end - l->hot[c].dep_first == 1 &&
        is_epilogue(l, l->dependents[l->hot[c].dep_first])) {
      l->hot[l->dependents[l->hot[c].dep_first]].flag_out |= OP_EPILOGUE;
      l->hot[c].flag_out |= OP_HAS_EPILOGUE;
    }
  return 0;
}

int pf_executor_load(pf_executor *ex, pf_plan *plan, pf_loaded **out,
                     pf_diag *diag) {
  pf_loaded *l;
  uint32_t *stage = NULL;
  int rc;
  *out = NULL;
  /* A decoded plan was checked for these devices as it was decoded. */
  if (plan->checked_for != ex->cfg.num_devices &&
      (rc = pf_plan_check(plan, ex->cfg.num_devices, diag)) != 0) {
    pf_plan_free(plan);
    return rc;
  }
  if ((l = calloc(1, sizeof *l)) == NULL) {
    pf_plan_free(plan);
    return pf_diag_error(diag, PF_ENOMEM, "load plan: out of memory");
  }
  atomic_init(&l->refs, 1);
  pthread_mutex_init(&l->spare_lock, NULL);
  l->plan = plan;
  if ((stage = pf_calloc((size_t)ex->cfg.num_devices, sizeof *stage)) == NULL ||
      read_devices(ex, l, stage) != 0 || build_indexes(l, ex->cfg.num_devices) != 0 ||
      plan_release_points(l, ex->cfg.num_devices) != 0) {
    free(stage);
    pf_loaded_release(l);
    return pf_diag_error(diag, PF_ENOMEM, "load plan: out of memory");
  }
  rc = check_memory_spaces(ex, l, stage, diag);
  free(stage);
  if (rc != 0) {
    pf_loaded_release(l);
    return rc;
  }
  for (uint32_t i = 0, last = UINT32_MAX; i < plan->n_ops; i++) {
    const pf_plan_op *op = &plan->ops[i];
    const pf_kernel *k;
    if (op->kind == PF_OP_KERNEL) {
      pf_device_info info;
      /* The kernel of the kernel op before, on the same device: no look-up
       * (a decoded plan's ops share their kernel's name; a million of
       * them each took a registry search). */
      const pf_plan_op *prev = last != UINT32_MAX ? &plan->ops[last] : NULL;
      if (prev != NULL && prev->device == op->device &&
          (prev->kernel == op->kernel || strcmp(prev->kernel, op->kernel) == 0)) {
        l->kernels[i] = l->kernels[last];
        mark_inline(ex, l, i);
        last = i;
        continue;
      }
      ex->devices[op->device]->ops->info(ex->devices[op->device], &info);
      k = pf_registry_find(ex->cfg.registry, op->kernel, info.kind);
      if (k == NULL) {
        pf_diag_error(diag, PF_ENOKERNEL,
                      "rank %d: kernel \"%s\" (program \"%s\") is not "
                      "registered for %s devices on this executor",
                      ex->cfg.rank, op->kernel, op->name, pf_device_kind_name(info.kind));
        pf_loaded_release(l);
        return PF_ENOKERNEL;
      }
      l->kernels[i] = &k->def;
      mark_inline(ex, l, i);
      last = i;
    } else if (l->loop_op[i] && ex->cfg.loop_op == NULL) {
      pf_diag_error(diag, PF_ENOTSUP,
                    "rank %d: op %u of program \"%s\" needs a transport "
                    "(kind %d), not available to a local executor",
                    ex->cfg.rank, i, op->name, op->kind);
      pf_loaded_release(l);
      return PF_ENOTSUP;
    }
  }
  if ((rc = plan_flags(ex, l)) != 0 || (rc = build_hot(l)) != 0) {
    pf_loaded_release(l);
    return pf_diag_error(diag, rc, "rank %d: load plan: %s", ex->cfg.rank,
                         rc == PF_ERANGE ? "more than 2^32 op inputs and outputs in all, "
                                           "an op of more than 65535 inputs or outputs, "
                                           "or more than 32767 devices"
                                         : "out of memory");
  }
  *out = l;
  return 0;
}

/* ---- steps --------------------------------------------------------------- */

static void step_fail(pf_step *s, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void step_vfail(pf_step *s, int code, const char *fmt, va_list ap) {
  pthread_mutex_lock(&s->err_lock);
  pf_diag_verror(&s->err, code, fmt, ap);
  pthread_mutex_unlock(&s->err_lock);
  atomic_store_explicit(&s->failed, 1, memory_order_release);
}

static void step_fail(pf_step *s, int code, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  step_vfail(s, code, fmt, ap);
  va_end(ap);
}

void pf_executor_step_fail(pf_step *s, int code, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  step_vfail(s, code, fmt, ap);
  va_end(ap);
}

int pf_step_status(const pf_step *s) { return s->err.code; }
const char *pf_step_message(const pf_step *s) { return s->err.msg; }

pf_storage *pf_step_take(pf_step *s, uint32_t b) {
  if (s->err.code != 0 || b >= s->l->plan->n_buffers || buf_get(s, b) == NULL)
    return NULL;
  return pf_storage_ref(buf_get(s, b));
}

void pf_step_op_times(const pf_step *s, uint32_t op, uint64_t *start,
                      uint64_t *end) {
  *start = op < s->l->plan->n_ops ? s->t_start[s->l->op_slot[op]] : 0;
  *end = op < s->l->plan->n_ops ? s->t_end[s->l->op_slot[op]] : 0;
}

/* A finished step's block kept by its plan for the next step (1), or
 * not (0: the caller frees it). The step still holds its plan. */
static int keep_spare(pf_loaded *l, pf_step *s) {
  int kept = 0;
  pthread_mutex_lock(&l->spare_lock);
  if (l->n_spare < STEP_SPARES && (size_t)(l->n_spare + 1) * s->size <= STEP_SPARE_BYTES) {
    *(pf_step **)s = l->spare;
    l->spare = s;
    l->n_spare++;
    kept = 1;
  }
  pthread_mutex_unlock(&l->spare_lock);
  return kept;
}

/* A kept block (of the plan's step size), or NULL. */
static void *take_spare(pf_loaded *l) {
  pf_step *s;
  pthread_mutex_lock(&l->spare_lock);
  if ((s = l->spare) != NULL) {
    l->spare = *(pf_step **)s;
    l->n_spare--;
  }
  pthread_mutex_unlock(&l->spare_lock);
  return s;
}

void pf_step_free(pf_step *s) {
  if (s == NULL) return;
  for (uint32_t b = 0; b < s->l->plan->n_buffers; b++) pf_storage_unref(buf_get(s, b));
  for (int d = 0; d < s->ex->cfg.num_devices; d++) pf_storage_unref(s->arenas[d]);
  pthread_mutex_destroy(&s->err_lock);
  pf_loaded *l = s->l;
  if (!keep_spare(l, s)) free(s); /* and its arrays: one allocation (step_new) */
  pf_loaded_release(l);
}

/* A step record and its per-op, per-buffer and per-device arrays in one
 * zeroed allocation: a step costs one malloc and one free, not eight. */
static pf_step *step_new(pf_loaded *l, int nd) {
  size_t size = sizeof(pf_step), at[8];
  char *base;
  void *mem;
  pf_step *s;
#define PF_STEP_ARRAY(k, count, type)                                          \
  do {                                                                         \
    size = (size + _Alignof(type) - 1) / _Alignof(type) * _Alignof(type);      \
    at[k] = size;                                                              \
    size += (size_t)(count) * sizeof(type);                                    \
  } while (0)
  size = (size + 63) / 64 * 64; /* the pending counts' lines are theirs (op_slot) */
  PF_STEP_ARRAY(0, (size_t)l->n_op_slots + 16, atomic_uint);
  size = (size + 63) / 64 * 64;
  PF_STEP_ARRAY(1, (size_t)l->n_buf_slots + 16, atomic_uint);
  size = (size + 63) / 64 * 64;
  PF_STEP_ARRAY(2, (size_t)l->n_buf_slots + 16, step_buf);
  PF_STEP_ARRAY(3, nd, pf_storage *);
  /* Times by op_slot too: every op writes its end (the watchdog's dump
   * reads it), so the two devices' ends must not share lines either. */
  size = (size + 63) / 64 * 64;
  PF_STEP_ARRAY(4, (size_t)l->n_op_slots + 16, uint64_t);
  size = (size + 63) / 64 * 64;
  PF_STEP_ARRAY(5, (size_t)l->n_op_slots + 16, uint64_t);
  PF_STEP_ARRAY(6, nd, pf_part);
#undef PF_STEP_ARRAY
  size = (size + 63) / 64 * 64;
  at[7] = size; /* the slot area, not zeroed: each slot's kernel writes it whole */
  size += l->slot_bytes;
  /* A large plan's step is megabytes, zeroed below: on huge pages. */
  if ((mem = take_spare(l)) == NULL && (mem = pf_pages_malloc(size)) == NULL) return NULL;
  /* Zeroed but for the counts, which start as the loaded plan's. */
  base = memset(mem, 0, at[0]);
  memcpy(base + at[0], l->pending0, ((size_t)l->n_op_slots + 16) * sizeof *l->pending0);
  memcpy(base + at[1], l->readers0, ((size_t)l->n_buf_slots + 16) * sizeof *l->readers0);
  memset(base + at[2], 0, at[7] - at[2]);
  s = (pf_step *)base;
  s->size = size;
  s->pending = (atomic_uint *)(base + at[0]);
  s->readers = (atomic_uint *)(base + at[1]);
  s->bufs = (step_buf *)(base + at[2]);
  s->arenas = (pf_storage **)(base + at[3]);
  s->t_start = (uint64_t *)(base + at[4]);
  s->t_end = (uint64_t *)(base + at[5]);
  s->parts = (pf_part *)(base + at[6]);
  s->slots = base + at[7];
  return s;
}

/* Memory for a step's buffer or arena. PATHFLOW_FAULT_ALLOC (cfg.fault_alloc
 * = N) makes the N-th such allocation of this executor fail, to test that a
 * step out of memory fails its execution and nothing else. */
static pf_storage *step_alloc(pf_executor *ex, size_t nbytes, int device) {
  if (ex->cfg.fault_alloc > 0 &&
      atomic_fetch_add_explicit(&ex->buffer_allocs, 1, memory_order_relaxed) + 1 ==
          (uint64_t)ex->cfg.fault_alloc)
    return NULL;
  return ex->devices[device]->ops->alloc(ex->devices[device], nbytes);
}

/* The step's failure for memory it could not get: the rank, the step, what
 * for and how many bytes, so the user can tell which limit to raise. */
static void out_of_memory(pf_step *s, size_t nbytes, const char *what, int device) {
  step_fail(s, PF_ENOMEM, "rank %d: step %llu: out of memory: %zu bytes for %s on device %d",
            s->ex->cfg.rank, (unsigned long long)s->seq, nbytes, what, device);
}

/* Makes sure buffer b has memory before an op writes it. Only the device
 * owning b writes it, so this needs no lock. */
static pf_storage *new_buffer(pf_step *s, uint32_t b) {
  const buf_hot *pb = &s->l->bh[b];
  pf_storage *st;
  if (pb->in_arena && s->arenas[pb->device])
    st = pf_storage_view(s->arenas[pb->device], (size_t)s->l->plan->buffers[b].offset,
                         pb->nbytes);
  else if (pb->host) /* a GPU's staging buffer: host memory */
    st = s->ex->devices[pb->device]->ops->alloc_host
             ? s->ex->devices[pb->device]->ops->alloc_host(s->ex->devices[pb->device], pb->nbytes)
             : pf_storage_new(pb->nbytes, pb->device);
  else
    st = step_alloc(s->ex, pb->nbytes, pb->device);
  if (st == NULL) out_of_memory(s, pb->nbytes, "a buffer", pb->device);
  return st;
}

static pf_storage *ensure(pf_step *s, uint32_t b) {
  if (buf_get(s, b) == NULL) buf_set(s, b, new_buffer(s, b));
  return buf_get(s, b);
}

/* Output o of op `op` takes over the buffer of the input its kernel names
 * (pf_kernel_def.in_place) when nothing else can see that buffer: the step
 * holds the only reference (no pf_buffer_t names it, no other step reads
 * it), no other read of it remains in this step (this op's is the last), it
 * is no output of the graph, not a view into an arena, on the same device
 * and of the same size. Only this op's device thread touches bufs[] of its
 * buffers now; the counts can only fall to these values, never rise back. */
static void take_over(pf_step *s, const op_hot *op, const pf_kernel_def *k) {
  const pf_loaded *l = s->l;
  for (uint32_t o = 0; k->in_place != NULL && o < op->n_out; o++) {
    int j = k->in_place[o];
    uint32_t bi, bo;
    const buf_hot *hi, *ho;
    pf_storage *st;
    if (j < 0 || (uint32_t)j >= op->n_in) continue;
    bi = l->io_bufs[op->io + (uint32_t)j];
    bo = l->io_bufs[op->io + op->n_in + o];
    hi = &l->bh[bi];
    ho = &l->bh[bo];
    if (ho->slot_at != UINT32_MAX) continue; /* written in its slot */
    st = buf_get(s, bi);
    if (st == NULL || buf_get(s, bo) != NULL || st->parent != NULL || hi->keep ||
        hi->device != ho->device || hi->host != ho->host ||
        hi->nbytes != ho->nbytes ||
        atomic_load_explicit(&s->readers[hi->slot], memory_order_acquire) != 1 ||
        atomic_load_explicit(&st->refs, memory_order_acquire) != 1)
      continue;
    buf_set(s, bo, pf_storage_ref(st));
  }
}

/* Calls kernel op i of s on views in and out; a failure fails the step,
 * naming the program, the kernel and the shard. Inlined in both callers
 * (run_kernel, run_epilogue): a call more per kernel cost a stencil step
 * ~20 instructions. */
static inline __attribute__((always_inline)) void call_kernel(pf_step *s, uint32_t i,
                                                               pf_view *in, pf_view *out) {
  const pf_loaded *l = s->l;
  const op_hot *op = &l->hot[i];
  const pf_kernel_def *k = op->kernel;
  pf_kernel_call call;
  pf_diag d;
  int rc;
  pf_diag_init(&d);
  call.attrs = op->attrs;
  call.n_in = (int)op->n_in;
  call.in = in;
  call.n_out = (int)op->n_out;
  call.out = out;
  call.device = op->device;
  call.shard = op->shard;
  call.num_shards = op->num_shards;
  call.user = k->user;
  call.diag = &d;
  call.stream = s->ex->devices[op->device]->ops->stream
                    ? s->ex->devices[op->device]->ops->stream(s->ex->devices[op->device])
                    : NULL;
  if (tls_running != NULL) {
    atomic_store_explicit(&tls_running->op, i, memory_order_relaxed);
    atomic_store_explicit(&tls_running->step, s, memory_order_release);
  }
  PF_PROBE("exec.kernel");
  rc = k->compute(&call);
  PF_PROBE("exec.kernel.out");
  if (tls_running != NULL) atomic_store_explicit(&tls_running->step, NULL, memory_order_relaxed);
  if (rc != 0) {
    if (d.code == 0) pf_diag_error(&d, rc, "%s", pf_strerror(rc));
    step_fail(s, PF_EKERNEL,
              "rank %d device %d: program \"%s\" (kernel \"%s\", shard %d of "
              "%d) failed: %s (%s)",
              s->ex->cfg.rank, op->device, l->plan->ops[i].name, k->name, op->shard,
              op->num_shards, d.msg, pf_errname(rc));
  }
}

static void run_kernel(pf_step *s, uint32_t i) {
  const pf_loaded *l = s->l;
  const op_hot *op = &l->hot[i];
  const uint32_t *ins = l->io_bufs + op->io, *outs = ins + op->n_in;
  const pf_kernel_def *k = op->kernel;
  pf_view in_stack[PF_OP_ARGS_ON_STACK], out[PF_OP_ARGS_ON_STACK], *in = in_stack;
  if (op->n_in > PF_MAX_ARGS_RUNTIME || op->n_out > PF_OP_ARGS_ON_STACK) {
    step_fail(s, PF_EARITY, "program \"%s\": too many arguments", l->plan->ops[i].name);
    return;
  }
  if (op->n_in > PF_OP_ARGS_ON_STACK && (in = pf_mallocn(op->n_in, sizeof *in)) == NULL) {
    step_fail(s, PF_ENOMEM, "rank %d device %d: program \"%s\": out of memory",
              s->ex->cfg.rank, op->device, l->plan->ops[i].name);
    return;
  }
  for (uint32_t k2 = 0; k2 < op->n_in; k2++) {
    const buf_hot *bh = &l->bh[ins[k2]];
    in[k2].spec = *bh->spec;
    in[k2].data = bh->slot_at != UINT32_MAX ? s->slots + bh->slot_at : buf_data(s, ins[k2]);
  }
  take_over(s, op, k);
  for (uint32_t k2 = 0; k2 < op->n_out; k2++) {
    uint32_t b = outs[k2];
    const buf_hot *bh = &l->bh[b];
    out[k2].spec = *bh->spec;
    if (bh->slot_at != UINT32_MAX) {
      out[k2].data = s->slots + bh->slot_at;
    } else {
      pf_storage *st = ensure(s, b); /* NULL: the step failed, saying why */
      if (st == NULL) {
        if (in != in_stack) free(in);
        return;
      }
      out[k2].data = st->data;
    }
  }
  call_kernel(s, i, in, out);
  if (in != in_stack) free(in);
}

/* 1 if buffer b lives in host memory: a staging buffer, or any buffer of
 * a device whose memory is the host's. */
static int host_buffer(const pf_step *s, uint32_t b) {
  const pf_plan_buffer *pb = &s->l->plan->buffers[b];
  return pb->host || s->l->host_memory[pb->device];
}

static void run_copy(pf_step *s, uint32_t i) {
  const pf_plan *p = s->l->plan;
  const pf_plan_op *op = &p->ops[i];
  const pf_plan_buffer *src = &p->buffers[op->inputs[0]];
  const pf_plan_buffer *dst = &p->buffers[op->outputs[0]];
  int src_host = host_buffer(s, op->inputs[0]), dst_host = host_buffer(s, op->outputs[0]);
  pf_copy_dir dir = src_host == dst_host ? PF_COPY_D2D : src_host ? PF_COPY_H2D : PF_COPY_D2H;
  pf_storage *d = ensure(s, op->outputs[0]);
  int rc;
  if (d == NULL) return; /* the step failed, saying why */
  if (buf_get(s, op->inputs[0]) == NULL) {
    step_fail(s, PF_ESTATE, "rank %d device %d: reshard for \"%s\": its source is missing",
              s->ex->cfg.rank, op->device, op->name);
    return;
  }
  /* Run by the device of the destination, or of the memory that is not
   * the host's (the scheduler puts a GPU's copies on the GPU); D2D between
   * two host buffers is a copy within host memory. */
  rc = s->ex->devices[op->device]->ops->copy(s->ex->devices[op->device], dir, d->data,
                                              dst->spec->dims, buf_data(s, op->inputs[0]),
                                              src->spec->dims, op->box,
                                              pf_dtype_size(src->spec->dtype));
  if (rc != 0)
    step_fail(s, rc, "rank %d device %d: copy for \"%s\" failed: %s", s->ex->cfg.rank,
              op->device, op->name, pf_strerror(rc));
}

/* A collective among devices of this rank: one op reads every shard and
 * writes every output (peer access, as a device-to-device copy would). */
static void run_local_collective(pf_step *s, uint32_t i) {
  const pf_plan *p = s->l->plan;
  const pf_plan_op *op = &p->ops[i];
  pf_storage *in[PF_OP_ARGS_ON_STACK], *out[PF_OP_ARGS_ON_STACK];
  if (op->n_in > PF_OP_ARGS_ON_STACK) {
    step_fail(s, PF_EARITY, "collective \"%s\": too many local shards", op->name);
    return;
  }
  for (uint32_t k = 0; k < op->n_in; k++) {
    in[k] = pf_step_buffer(s, op->inputs[k]);
    out[k] = in[k] != NULL ? ensure(s, op->outputs[k]) : NULL;
    if (in[k] == NULL || out[k] == NULL) return; /* the step failed, saying why */
  }
  pf_collective_local(op, (int)op->n_in, p->buffers[op->inputs[0]].spec,
                      p->buffers[op->outputs[0]].spec, in, out);
}

/* The index in p->comms of communicator `id`, or UINT32_MAX. */
static uint32_t comm_index(const pf_plan *p, int32_t id) {
  for (uint32_t c = 0; c < p->n_comms; c++)
    if (p->comms[c].id == id) return c;
  return UINT32_MAX;
}

/* A collective between ranks that its device runs (NCCL). It runs in a
 * failed step too, on whatever memory the step has (a skipped producer's
 * buffer is new, its contents unspecified): its peers wait in it, and a
 * device collective cannot be withdrawn from. Only a step that cannot get
 * the memory leaves them waiting, until the hang watchdog ends the job. */
static void run_device_collective(pf_step *s, uint32_t i) {
  const pf_plan *p = s->l->plan;
  const pf_plan_op *op = &p->ops[i];
  pf_device *dev = s->ex->devices[op->device];
  uint32_t k = comm_index(p, op->comm);
  pf_storage *in = ensure(s, op->inputs[0]), *out = in ? ensure(s, op->outputs[0]) : NULL;
  pf_device_collective c;
  pf_diag d;
  int rc;
  if (in == NULL || out == NULL) return; /* the step failed, saying why */
  if (k == UINT32_MAX || s->l->comm_handle[k] == NULL) {
    step_fail(s, PF_ESTATE, "rank %d device %d: collective \"%s\": its communicator was not made",
              s->ex->cfg.rank, op->device, op->name);
    return;
  }
  memset(&c, 0, sizeof c);
  c.kind = op->collective;
  c.reduce_op = op->reduce_op;
  c.dtype = p->buffers[op->inputs[0]].spec->dtype;
  c.count = (size_t)pf_spec_numel(
      p->buffers[op->collective == PF_REDUCE_SCATTER ? op->outputs[0] : op->inputs[0]].spec);
  if (op->collective == PF_ALL_TO_ALL) c.count /= p->comms[k].n_ranks; /* a chunk */
  c.root = op->root;
  c.in = in->data;
  c.out = out->data;
  c.comm = s->l->comm_handle[k];
  pf_diag_init(&d);
  if ((rc = dev->ops->collective(dev, &c, &d)) != 0)
    step_fail(s, rc, "rank %d device %d: collective \"%s\" failed: %s", s->ex->cfg.rank,
              op->device, op->name, d.code ? d.msg : pf_strerror(rc));
}

static int run_op(pf_step *s, uint32_t i);

static void step_piece_done(pf_step *s) {
  if (atomic_fetch_sub_explicit(&s->remaining, 1, memory_order_acq_rel) == 1)
    s->done(s, s->arg);
}

/* One holder of count *c (an op's inputs, a buffer's reads) is done: 1
 * when it was the last. A locked decrement where threads share the count;
 * with the loop's own queues (ex->lq) every op finishes on the loop thread,
 * and a plain one does. */
static inline int count_down(const pf_executor *ex, atomic_uint *c) {
  if (ex->lq != NULL) {
    unsigned v = atomic_load_explicit(c, memory_order_relaxed) - 1;
    atomic_store_explicit(c, v, memory_order_relaxed);
    return v == 0;
  }
  return atomic_fetch_sub_explicit(c, 1, memory_order_acq_rel) == 1;
}

/* ---- the loop's own queues (loop_queue) ----------------------------------- */

/* The queue's part's first op is (ready) or is not ready: its wait
 * begins, or ends and is counted. */
static __attribute__((noinline)) void lq_timed(pf_executor *ex, loop_queue *q, int ready) {
  if (!ready) {
    if (q->head_t0 == 0) q->head_t0 = pf_clock_now(ex->clock);
  } else if (q->head_t0 != 0) {
    q->wait_ns += pf_clock_now(ex->clock) - q->head_t0;
    q->head_t0 = 0;
  }
}

/* Device d's op at its place, if it is ready and nobody runs it: into the
 * inline queue (drain_inline runs it). The head part's first op waiting is
 * timed, as the CPU device times a part before its worker takes it. */
static inline void lq_claim(pf_executor *ex, int d) {
  loop_queue *q = &ex->lq[d];
  int ready;
  if (q->step == NULL || q->taken) return;
  ready = atomic_load_explicit(q->count, memory_order_relaxed) == 0;
  /* Only a part's first op is timed (below, out of line). */
  if (q->e == 0 || q->head_t0 != 0) lq_timed(ex, q, ready);
  if (!ready) return;
  q->taken = 1;
  ex->inline_ops[ex->n_inline++] = (struct inline_op){q->step, q->op};
}

/* The queue's place moved to e of its head part (none: step NULL). */
static inline __attribute__((always_inline)) void lq_at(loop_queue *q, uint32_t e) {
  q->e = e;
  if (q->head == NULL) {
    q->step = NULL;
    return;
  }
  q->step = q->head->step;
  q->op = q->q[e];
  q->count = &q->step->pending[q->step->l->hot[q->op].slot];
}

/* Part pt of device d joins d's queue (submission order). */
static void lq_submit(pf_executor *ex, int d, pf_part *pt) {
  loop_queue *q = &ex->lq[d];
  pt->next = NULL;
  if (q->tail != NULL) {
    q->tail->next = pt;
    q->tail = pt;
    return;
  }
  q->head = q->tail = pt;
  q->q = pf_step_device_queue(pt->step, d, &q->n);
  lq_at(q, 0);
  lq_claim(ex, d);
}

/* Device d's op at its place ran: d moves on to its next, or to the next
 * part when that was the last. Returns 1 then: the caller finishes the
 * part (pf_step_part_done, after the op's dependents are counted). */
static inline __attribute__((always_inline)) int lq_next(pf_executor *ex, int d) {
  loop_queue *q = &ex->lq[d];
  q->taken = 0;
  if (q->e + 1 < q->n) {
    lq_at(q, q->e + 1);
    return 0;
  }
  q->head_t0 = 0;
  if ((q->head = q->head->next) == NULL)
    q->tail = NULL;
  else
    q->q = pf_step_device_queue(q->head->step, d, &q->n);
  lq_at(q, 0);
  return 1;
}

/* Op j of s has its inputs: its device is told (ready), and runs it, or
 * hands it to the loop thread (finishing on device -1) to run inline. Out
 * of line, as flag_dependents: with the loop's own queues neither is
 * taken, and finish_op's every call pays for the registers they hold. */
static __attribute__((noinline)) void tell_device(pf_executor *ex, pf_step *s, uint32_t j,
                                                  int dev, int device) {
  pf_device *dv = ex->devices[dev];
  /* At most one claim per device: the inline queue has a place each. */
  int may_claim = device < 0 && (ex->cfg.loop_runs_ops ||
                                 atomic_load_explicit(&s->l->inline_ok[j], memory_order_relaxed) ==
                                     INLINE_YES);
  if (dv->ops->ready(dv, s, j, may_claim))
    ex->inline_ops[ex->n_inline++] = (struct inline_op){s, j};
}

/* Counts one input of dependent j of s done; when it was the last, hands
 * j to whoever runs it. The finishing thread runs device `device`'s ops
 * (-1: the loop thread). */
static inline void count_dependent(pf_executor *ex, pf_step *s, uint32_t j, const op_hot *dep,
                                   int device) {
  int dev = dep->device;
  if (dep->one_dep) {
    /* Counts are shared with other threads (a device's worker, the loop),
     * but an op with one input has one producer: it stores 0 (what its
     * worker waits for), and a locked decrement is saved. */
    atomic_store_explicit(&s->pending[dep->slot], 0, memory_order_release);
  } else if (!count_down(ex, &s->pending[dep->slot])) {
    return;
  }
  if (dep->loop_op) {
    ex->cfg.loop_op(ex->cfg.loop_arg, s, j);
  } else if (ex->lq != NULL) {
    /* The next op of its device's queue: claimed now. A later one is
     * claimed when the queue comes to it (lq_claim in drain_inline). */
    const loop_queue *q = &ex->lq[dev];
    if (q->op == j && q->step == s && !q->taken) lq_claim(ex, dev);
  } else if (dev != device) {
    tell_device(ex, s, j, dev, device);
  }
}

/* The dependents of op `op` of s, which tells those on flag devices by the
 * flag run_op stored (plan_flags): their device's thread finds it when it
 * looks; one asleep is told, under the handshake of pf_device_ops.asleep:
 * flag stored, fence, then asleep read. The others are counted. */
static __attribute__((noinline)) void flag_dependents(pf_executor *ex, pf_step *s,
                                                      const op_hot *op, int device) {
  const pf_loaded *l = s->l;
  int fenced = 0;
  for (uint32_t e = op->dep_first; e < op->dep_end; e++) {
    uint32_t j = l->dependents[e];
    const op_hot *dep = &l->hot[j];
    int dev = dep->device;
    if (dep->n_flags == 0) {
      count_dependent(ex, s, j, dep, device);
      continue;
    }
    if (dev == device) continue; /* its queue moves on by itself */
    if (!fenced) {
      atomic_thread_fence(memory_order_seq_cst);
      fenced = 1;
    }
    if (ex->devices[dev]->ops->asleep(ex->devices[dev])) tell_device(ex, s, j, dev, device);
  }
}

/* The dependency counting: op i is done; each dependent that has all its
 * inputs now goes to whoever runs it (the loop, for transfers and MPI
 * collectives; else its device, unless the finishing thread is that
 * device, whose queue moves on by itself). */
static void finish_op(pf_step *s, uint32_t i, int device) {
  const pf_loaded *l = s->l;
  const op_hot *op = &l->hot[i];
  const uint32_t *in = l->io_bufs + op->io;
  pf_executor *ex = s->ex;
  if (op->flag_out & OP_FLAG_OUT)
    flag_dependents(ex, s, op, device);
  else
    for (uint32_t e = op->dep_first; e < op->dep_end; e++) {
      uint32_t j = l->dependents[e];
      count_dependent(ex, s, j, &l->hot[j], device);
    }
  PF_PROBE("exec.dependents.out");
  /* Free what no later op reads, as soon as possible: peak memory then
   * follows the live values, not the whole graph. */
  if (!(op->flag_out & OP_COUNTS_READS)) return;
  for (uint32_t k = 0; k < op->n_in; k++) {
    uint32_t b = in[k];
    const buf_hot *bh = &l->bh[b];
    /* Its release point frees it (run_op), or it lies in a slot. */
    if (bh->point != UINT32_MAX || bh->slot_at != UINT32_MAX) continue;
    /* A buffer with one reader is this op's alone: its count stays. */
    if ((bh->one_reader || count_down(ex, &s->readers[bh->slot])) && !bh->keep) {
      pf_storage_unref(buf_get(s, b));
      buf_set(s, b, NULL);
    }
  }
}

/* Op `op` of s, the op at device d's place in the loop's own queues, ran
 * on the loop thread: the queue moves on first (the op's dependents,
 * counted next, may claim its next op at once in finish_op; one ready
 * already is claimed after). Returns 1 when that was the part's last op:
 * the caller finishes the part (step_piece_done). */
static inline __attribute__((always_inline)) int lq_ran(pf_executor *ex, pf_step *s, uint32_t op,
                                                        int d) {
  int part_done = lq_next(ex, d);
  finish_op(s, op, -1);
  if (!ex->lq[d].taken) lq_claim(ex, d);
  return part_done;
}

/* loop_runs_ops: each device's next op, if it can be had (claim), into
 * the inline queue, which is empty when this is called (drain_inline): one
 * per device at most, as it holds. Returns how many. */
static int claim_next(pf_executor *ex) {
  int got = 0;
  for (int d = 0; d < ex->cfg.num_devices; d++) {
    pf_device *dv = ex->devices[d];
    pf_step *s;
    uint32_t op;
    if (dv->ops->claim == NULL || !dv->ops->claim(dv, &s, &op)) continue;
    ex->inline_ops[ex->n_inline++] = (struct inline_op){s, op};
    got++;
  }
  return got;
}

/* On the loop thread: runs the ops it claimed, and those they make ready
 * in turn, one after another (not recursively: a chain of tiny ops across
 * ranks must not grow the stack); with loop_runs_ops, then the ops the
 * devices hand over (claim_next), when `claim` says to look or an op ran
 * (which moves its device on to its next op). Re-entered from a transfer
 * that completes at once, it leaves the work to the outer call. Returns
 * how many ops ran. */
static int drain_inline(pf_executor *ex, int claim) {
  int ran = 0;
  /* The loop's own queues claim each op as it becomes ready (lq_submit,
   * finish_op, lq_next): nothing to look for. */
  if (ex->draining || (ex->n_inline == 0 && (!claim || ex->lq != NULL))) return 0;
  ex->draining = 1;
  tls_running = &ex->loop_running;
  while (ex->n_inline > 0 ||
         (ex->cfg.loop_runs_ops && ex->lq == NULL && claim && claim_next(ex) > 0)) {
    struct inline_op it = ex->inline_ops[--ex->n_inline];
    PF_PROBE("exec.inline_op");
    int device = it.step->l->hot[it.op].device, part_done;
    pf_device *dv = ex->devices[device];
    if (ex->cfg.loop_runs_ops &&
        atomic_load_explicit(&it.step->l->inline_ok[it.op], memory_order_relaxed) != INLINE_YES) {
      /* Every op, whatever its length. One not known to be short runs
       * between around_op's calls (the MPI lock let go: it may be long) and
       * is timed: a short one then takes the path below, which costs a
       * chain of tiny ops across ranks nothing more than inline runs do
       * (bench/dispatch Chained lost a tenth to a lock, an unlock and a
       * clock read per op). */
      uint64_t t0;
      if (ex->cfg.around_op) ex->cfg.around_op(ex->cfg.loop_arg, 1);
      t0 = pf_clock_now(ex->clock);
      ex->inline_ops_run[device] += (uint64_t)run_op(it.step, it.op);
      note_inline_time(it.step->l, it.op, pf_clock_now(ex->clock) - t0);
      if (ex->cfg.around_op) ex->cfg.around_op(ex->cfg.loop_arg, 0);
    } else {
      /* Two clock reads cost a tenth of a chain of tiny ops across ranks:
       * one inline run in INLINE_TIME_EVERY is timed, by readings within
       * two microseconds of the clock (pf_clock_now_near: the cycle
       * counter, ~10 ns against ~25), against a bound of 50. */
      int timed = ex->inline_ticks++ % INLINE_TIME_EVERY == 0;
      uint64_t t0 = timed ? pf_clock_now_near(ex->clock, &ex->inline_reading) : 0;
      ex->inline_ops_run[device] += (uint64_t)run_op(it.step, it.op);
      if (timed)
        note_inline_time(it.step->l, it.op,
                         pf_clock_now_near(ex->clock, &ex->inline_reading) - t0);
    }
    ran++;
    if (ex->lq != NULL) {
      part_done = lq_ran(ex, it.step, it.op, device);
    } else {
      claim = 1;
      part_done = dv->ops->release(dv, it.step, it.op);
      finish_op(it.step, it.op, -1);
    }
    PF_PROBE("exec.inline_op.out");
    if (part_done) step_piece_done(it.step);
  }
  tls_running = NULL;
  ex->draining = 0;
  return ran;
}

int pf_executor_run_claimed(pf_executor *ex) {
  return ex->cfg.loop_runs_ops ? drain_inline(ex, 1) : 0;
}

/* Returns 1 if the op ran (0: skipped, its step had failed). */
static int run_op(pf_step *s, uint32_t i) {
  const pf_loaded *l = s->l;
  const op_hot *op = &l->hot[i];
  /* Every read of these is done (plan_release_points). */
  for (uint32_t e = op->rel_first; e < op->rel_end; e++) {
    uint32_t b = l->release_bufs[e];
    pf_storage_unref(buf_get(s, b));
    buf_set(s, b, NULL);
  }
  /* A collective between ranks on a device's queue is one its device runs
   * (device_collective; the loop runs the others): its peers wait in it,
   * so a failed step runs it too. */
  int device_coll = op->kind == PF_OP_COLLECTIVE && l->plan->ops[i].comm >= 0;
  int ran = 0;
  if (device_coll || !atomic_load_explicit(&s->failed, memory_order_acquire)) {
    ran = 1;
    /* Two clock reads cost as much as an empty kernel: only when asked. */
    if (s->ex->cfg.record_times) s->t_start[op->slot] = pf_clock_now(s->ex->clock);
    if (op->kind == PF_OP_KERNEL)
      run_kernel(s, i);
    else if (device_coll)
      run_device_collective(s, i);
    else if (op->kind == PF_OP_COLLECTIVE)
      run_local_collective(s, i);
    else
      run_copy(s, i);
  }
  /* Atomic (a plain store on x86): the watchdog's dump reads it on the
   * loop thread while workers run, and it is the op's done flag for the
   * dependents told by flags (plan_flags): a release, after its output. */
  __atomic_store_n(&s->t_end[op->slot], s->ex->cfg.record_times ? pf_clock_now(s->ex->clock) : 1,
                   __ATOMIC_RELEASE);
  /* And its small outputs' slot flags, in the lines of their data: read
   * only by dependents told by flags, which only an op that tells by flags
   * has (plan_flags; none on the loop's own queues). */
  for (uint32_t k = 0; (op->flag_out & OP_FLAG_OUT) && op->kind == PF_OP_KERNEL && k < op->n_out;
       k++) {
    const buf_hot *bh = &l->bh[l->io_bufs[op->io + op->n_in + k]];
    if (bh->flag_val != 0)
      __atomic_store_n((uint32_t *)(void *)(s->slots + bh->slot_at + SLOT_FLAG), bh->flag_val,
                       __ATOMIC_RELEASE);
  }
  return ran;
}

/* ---- what devices call ------------------------------------------------------ */

const uint32_t *pf_step_device_queue(const pf_step *s, int device, uint32_t *n) {
  const pf_loaded *l = s->l;
  *n = l->device_first[device + 1] - l->device_first[device];
  return l->device_ops + l->device_first[device];
}

const _Atomic uint32_t *pf_step_op_count(const pf_step *s, uint32_t op) {
  const op_hot *h = &s->l->hot[op];
  return h->n_flags == 0 ? &s->pending[h->slot] : NULL;
}

/* 1 if flag k of the loaded plan is set in s: an op's t_end, or a slot's
 * flag word that reached its value (an acquire either way). */
static inline int flag_set(const pf_step *s, uint32_t k) {
  struct input_flag f = s->l->flags[k];
  if (f.want == 0) return __atomic_load_n(&s->t_end[f.at], __ATOMIC_ACQUIRE) != 0;
  return __atomic_load_n((const uint32_t *)(const void *)(s->slots + f.at), __ATOMIC_ACQUIRE) >=
         f.want;
}

uint32_t pf_step_op_pending(const pf_step *s, uint32_t op) {
  const op_hot *h = &s->l->hot[op];
  uint32_t left = atomic_load_explicit(&s->pending[h->slot], memory_order_acquire);
  for (uint32_t k = 0; k < h->n_flags; k++) left += !flag_set(s, h->flag_first + k);
  return left;
}

int pf_step_op_ready(const pf_step *s, uint32_t op) {
  const op_hot *h = &s->l->hot[op];
  if (h->n_flags == 0) return atomic_load_explicit(&s->pending[h->slot], memory_order_acquire) == 0;
  /* Last first: in gang order the latest input is the likeliest missing. */
  for (uint32_t k = h->n_flags; k-- > 0;)
    if (!flag_set(s, h->flag_first + k)) return 0;
  return 1;
}

int pf_step_run_op(pf_step *s, uint32_t i) {
  /* An op the loop thread might run inline is timed on its device until
   * a short run proves it short (note_inline_time). */
  if (atomic_load_explicit(&s->l->inline_ok[i], memory_order_relaxed) == INLINE_UNPROVEN &&
      !atomic_load_explicit(&s->failed, memory_order_acquire)) {
    uint64_t t0 = pf_clock_now(s->ex->clock);
    int ran = run_op(s, i);
    note_inline_time(s->l, i, pf_clock_now(s->ex->clock) - t0);
    return ran;
  }
  return run_op(s, i);
}

void pf_step_op_done(pf_step *s, uint32_t op, int device) { finish_op(s, op, device); }

void pf_step_part_done(pf_step *s) { step_piece_done(s); }

pf_part *pf_step_part(pf_step *s, int device) { return &s->parts[device]; }

pf_clock *pf_step_clock(const pf_step *s) { return s->ex->clock; }

const uint32_t *pf_loaded_inputs(const pf_loaded *l, uint32_t *n) {
  *n = l->n_input_bufs;
  return l->input_bufs;
}

int pf_executor_worker_cpu(const pf_executor *ex, int device) {
  return device >= 0 && device < ex->cfg.num_devices ? pf_cpu_device_cpu(ex->devices[device])
                                                     : -1;
}

/* Lets go of the input references a step was handed and never took. */
static int unref_inputs(const pf_loaded *l, pf_storage *const *inputs, int rc) {
  for (uint32_t k = 0; inputs != NULL && k < l->n_input_bufs; k++)
    pf_storage_unref(inputs[l->input_bufs[k]]);
  return rc;
}

static int start_step(pf_executor *ex, pf_loaded *l, pf_storage *const *inputs, uint64_t seq,
                      const pf_diag *why, pf_step_done_fn done, void *arg,
                      pf_step **out) {
  const pf_plan *p = l->plan;
  int nd = ex->cfg.num_devices, used = 0;
  pf_step *s;
  *out = NULL;
  if (why == NULL)
    for (uint32_t k = 0; k < l->n_input_bufs; k++) {
      uint32_t b = l->input_bufs[k];
      if (inputs == NULL || inputs[b] == NULL ||
          inputs[b]->nbytes < pf_spec_nbytes(p->buffers[b].spec))
        return unref_inputs(l, inputs, PF_EINVAL);
    }
  if ((s = step_new(l, nd)) == NULL) return unref_inputs(l, inputs, PF_ENOMEM);
  pthread_mutex_init(&s->err_lock, NULL);
  atomic_fetch_add(&l->refs, 1);
  s->l = l;
  s->ex = ex;
  s->seq = seq;
  pf_diag_init(&s->err);
  s->done = done;
  s->arg = arg;
  atomic_init(&s->failed, 0);
  if (why != NULL && why->code != 0) {
    s->err = *why;
    atomic_init(&s->failed, 1);
  }
  if (p->arena_bytes != NULL) {
    /* One allocation per device per step for every buffer the memory plan
     * placed: no malloc per op, and peak memory as planned.
     * Out of memory, the step still starts, failed: it then runs no
     * kernel but does every transfer and collective its peers expect (from
     * and into the service's reserve), so that only its execution fails. */
    for (int d = 0; d < p->num_devices && d < nd && !atomic_load(&s->failed); d++)
      if (p->arena_bytes[d] > 0 &&
          (s->arenas[d] = step_alloc(ex, (size_t)p->arena_bytes[d], d)) == NULL)
        out_of_memory(s, (size_t)p->arena_bytes[d], "its arena", d);
  }
  /* Slot flags start at 0 (the slot area is not zeroed: step_new). */
  for (uint32_t r = 0; r < l->n_flag_ranges; r++)
    for (uint32_t at = l->flag_ranges[2 * r]; at < l->flag_ranges[2 * r + 1]; at += 64)
      __atomic_store_n((uint32_t *)(void *)(s->slots + at + SLOT_FLAG), 0, __ATOMIC_RELAXED);
  for (uint32_t k = 0; inputs != NULL && k < l->n_input_bufs; k++) {
    uint32_t b = l->input_bufs[k];
    buf_set(s, b, inputs[b]); /* the step's reference now */
  }
  /* These receive buffers exist before any op of the step runs: several
   * receives may fill parts of one, and a local copy another part (from a
   * worker thread), so none of them may allocate it lazily; a buffer one
   * receive fills whole gets its memory when that is posted (the loop
   * thread; its readers run after the receive). */
  for (uint32_t k = 0; k < l->n_recv_bufs && !atomic_load(&s->failed); k++)
    ensure(s, l->recv_bufs[k]); /* NULL: the step failed, saying why */
  for (int d = 0; d < nd; d++)
    if (l->device_first[d + 1] > l->device_first[d]) used++;
  s->loop_left = l->n_loop_ops;
  atomic_init(&s->remaining, used + (l->n_loop_ops > 0));
  *out = s;
  if (used + l->n_loop_ops == 0) {
    done(s, arg);
    return 0;
  }
  pthread_mutex_lock(&ex->run_lock);
  for (int d = 0; d < nd; d++) {
    if (l->device_first[d + 1] == l->device_first[d]) continue;
    s->parts[d].step = s;
    if (ex->lq != NULL)
      lq_submit(ex, d, &s->parts[d]);
    else
      ex->devices[d]->ops->submit(ex->devices[d], &s->parts[d]);
  }
  pthread_mutex_unlock(&ex->run_lock);
  /* Loop ops with no dependencies (every receive) are handed to the loop
   * now, before their producers run (parallel asynchronous dispatch); the
   * loop may post some receives of a long plan a little later. */
  if (ex->cfg.loop_ops_start != NULL && l->n_start_ops > 0)
    ex->cfg.loop_ops_start(ex->cfg.loop_arg, s, l->start_ops, l->n_start_ops);
  else
    for (uint32_t k = 0; k < l->n_start_ops; k++)
      ex->cfg.loop_op(ex->cfg.loop_arg, s, l->start_ops[k]);
  return 0;
}

int pf_executor_run(pf_executor *ex, pf_loaded *l, pf_storage *const *inputs, uint64_t seq,
                    pf_step_done_fn done, void *arg, pf_step **out) {
  return start_step(ex, l, inputs, seq, NULL, done, arg, out);
}

int pf_executor_run_failed(pf_executor *ex, pf_loaded *l, pf_storage *const *inputs, uint64_t seq,
                           const pf_diag *why, pf_step_done_fn done, void *arg,
                           pf_step **out) {
  return start_step(ex, l, inputs, seq, why, done, arg, out);
}

int pf_loaded_is_loop_op(const pf_loaded *l, uint32_t op) {
  return op < l->plan->n_ops && l->loop_op[op];
}

int pf_loaded_is_epilogue(const pf_loaded *l, uint32_t i) {
  return i < l->plan->n_ops && (l->hot[i].flag_out & OP_EPILOGUE) != 0;
}

pf_storage *pf_step_buffer(pf_step *s, uint32_t b) {
  pf_storage *st = buf_get(s, b);
  if (st == NULL) {
    buf_set(s, b, st = new_buffer(s, b));
    /* Only transfers reach a device's own memory here (check_memory_spaces
     * refuses every other host path on it), and a receive writes its box. */
    if (st != NULL && host_buffer(s, b)) memset(st->data, 0, st->nbytes);
  }
  return st;
}

pf_storage *pf_step_buffer_whole(pf_step *s, uint32_t b) { return ensure(s, b); }

void *pf_step_slot(pf_step *s, uint32_t b) {
  uint32_t at = s->l->bh[b].slot_at;
  return at == UINT32_MAX ? NULL : s->slots + at;
}

pf_storage *pf_step_buffer_if_any(pf_step *s, uint32_t b) { return buf_get(s, b); }

int pf_step_failed(const pf_step *s) {
  return atomic_load_explicit(&((pf_step *)s)->failed, memory_order_acquire);
}

const pf_plan *pf_step_plan(const pf_step *s) { return s->l->plan; }

void *pf_step_arg(const pf_step *s) { return s->arg; }

/* Loop op c of s has finished well: its one dependent, if c is a
 * collective followed by an epilogue (is_epilogue) that the loop would run
 * next anyway (the next op of its device's queue, proven short, no step
 * failed, no op being run inline here already, times not recorded), in *j.
 * Every loop op's completion asks (a transfer's too): one bit of c's
 * record answers for all but those. */
static inline int epilogue_ready(const pf_step *s, uint32_t c, uint32_t *j) {
  const pf_executor *ex = s->ex;
  const pf_loaded *l = s->l;
  const op_hot *ch = &l->hot[c], *op;
  const loop_queue *q;
  if (!(ch->flag_out & OP_HAS_EPILOGUE) || ex->lq == NULL || ex->draining || ex->cfg.record_times)
    return 0;
  *j = l->dependents[ch->dep_first];
  op = &l->hot[*j];
  q = &ex->lq[op->device];
  return q->step == s && q->op == *j && !q->taken &&
         atomic_load_explicit(&l->inline_ok[*j], memory_order_relaxed) == INLINE_YES &&
         !pf_step_failed(s);
}

/* Runs epilogue j of s now, in its collective's completion, as
 * drain_inline would run it, without going through the inline queue: its
 * views straight from the slot area, no storage looked up. What a chain of
 * small allreduces, each read by one small kernel, pays per kernel between
 * the partner's message and the next send (bench/dispatch Chained). Then
 * j's dependents are counted. Out of line: its views' frame is not every
 * loop op's. */
static __attribute__((noinline)) void run_epilogue(pf_step *s, uint32_t j) {
  pf_executor *ex = s->ex;
  pf_loaded *l = s->l;
  const op_hot *op = &l->hot[j];
  const uint32_t *io = l->io_bufs + op->io;
  pf_view in[EPILOGUE_MAX_ARGS], out[EPILOGUE_MAX_ARGS];
  int device = op->device, timed;
  loop_queue *q = &ex->lq[device];
  uint64_t t0;
  /* The collective was its one input: count_dependent's store, and
   * lq_claim's claim (a part's first op ends its wait). */
  atomic_store_explicit(&s->pending[op->slot], 0, memory_order_release);
  if (q->e == 0 || q->head_t0 != 0) lq_timed(ex, q, 1);
  q->taken = 1;
  ex->draining = 1;
  tls_running = &ex->loop_running;
  if (op->n_in == 1 && op->n_out == 1) { /* the usual one: no loops */
    const buf_hot *bi = &l->bh[io[0]], *bo = &l->bh[io[1]];
    in[0] = (pf_view){*bi->spec, s->slots + bi->slot_at};
    out[0] = (pf_view){*bo->spec, s->slots + bo->slot_at};
  } else {
    for (uint32_t k = 0; k < op->n_in; k++) {
      const buf_hot *bh = &l->bh[io[k]];
      in[k] = (pf_view){*bh->spec, s->slots + bh->slot_at};
    }
    for (uint32_t k = 0; k < op->n_out; k++) {
      const buf_hot *bh = &l->bh[io[op->n_in + k]];
      out[k] = (pf_view){*bh->spec, s->slots + bh->slot_at};
    }
  }
  /* Timed as drain_inline times it: a kernel that turns long goes back
   * to its worker. */
  timed = ex->inline_ticks++ % INLINE_TIME_EVERY == 0;
  t0 = timed ? pf_clock_now_near(ex->clock, &ex->inline_reading) : 0;
  call_kernel(s, j, in, out);
  if (timed) note_inline_time(l, j, pf_clock_now_near(ex->clock, &ex->inline_reading) - t0);
  /* run_op's done flag (the watchdog's dump reads it). */
  __atomic_store_n(&s->t_end[op->slot], 1, __ATOMIC_RELEASE);
  ex->inline_ops_run[device]++;
  if (lq_ran(ex, s, j, device)) step_piece_done(s);
  tls_running = NULL;
  ex->draining = 0;
}

void pf_executor_loop_op_done(pf_step *s, uint32_t op, int status, const char *message) {
  uint32_t j;
  if (status != 0)
    step_fail(s, status, "rank %d: %s", s->ex->cfg.rank, message ? message : pf_strerror(status));
  if (status == 0 && epilogue_ready(s, op, &j))
    run_epilogue(s, j);
  else
    finish_op(s, op, -1);
  drain_inline(s->ex, 0);
  if (--s->loop_left == 0) step_piece_done(s);
}

void pf_step_dump(const pf_step *s, void *file) {
  FILE *f = file;
  const pf_plan *p = s->l->plan;
  for (int d = 0; d < s->ex->cfg.num_devices; d++) {
    for (uint32_t e = s->l->device_first[d]; e < s->l->device_first[d + 1]; e++) {
      uint32_t i = s->l->device_ops[e];
      unsigned left = pf_step_op_pending(s, i);
      if (__atomic_load_n(&s->t_end[s->l->op_slot[i]], __ATOMIC_RELAXED) != 0) continue;
      if (left == 0)
        fprintf(f, "  device %d: running op %u (%s \"%s\" shard %d)\n", d, i,
                p->ops[i].kernel ? p->ops[i].kernel : "copy", p->ops[i].name, p->ops[i].shard);
      else
        fprintf(f, "  device %d: next op %u (%s \"%s\" shard %d) waits on %u of its %u inputs\n",
                d, i, p->ops[i].kernel ? p->ops[i].kernel : "copy", p->ops[i].name,
                p->ops[i].shard, left, p->ops[i].n_deps);
      break;
    }
  }
}

/* One running kernel, described for a person. */
static int describe(const pf_step *s, uint32_t i, char *buf, size_t n) {
  const pf_plan_op *op = &s->l->plan->ops[i];
  return snprintf(buf, n, "kernel \"%s\" (program \"%s\", shard %d of %d, step %llu) on device %d",
                  op->kernel ? op->kernel : "?", op->name ? op->name : "?", op->shard,
                  op->num_shards, (unsigned long long)s->seq, op->device);
}

int pf_executor_running(pf_executor *ex, char *buf, size_t n) {
  int found = 0;
  size_t used = 0;
  if (n > 0) buf[0] = '\0';
  for (int d = 0; d <= ex->cfg.num_devices; d++) {
    pf_running_slot *rs = d < ex->cfg.num_devices ? ex->devices[d]->ops->running(ex->devices[d])
                                                  : &ex->loop_running;
    pf_step *s = rs ? atomic_load_explicit(&rs->step, memory_order_acquire) : NULL;
    int w;
    if (s == NULL) continue;
    if (found++ > 0 && used + 2 < n) {
      memcpy(buf + used, "; ", 3);
      used += 2;
    }
    if (used < n) {
      w = describe(s, atomic_load_explicit(&rs->op, memory_order_relaxed), buf + used, n - used);
      used += w > 0 ? PF_MINOF((size_t)w, n - used - 1) : 0;
    }
  }
  return found;
}

/* ---- crash reports ----------------------------------------------------------
 * A kernel that crashes its process (SIGSEGV, SIGBUS, SIGFPE, SIGILL,
 * abort) is named before the process dies: rank, program, kernel, shard,
 * step. Async-signal-safe: no stdio, no malloc, only write(2) of text put
 * together by hand, and reads of this thread's running slot. Then the
 * previous action (Open MPI's handler, or the default) is restored and the
 * signal raised again, so the launcher still sees the death. */

static const int crash_signals[] = {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT};
#define N_CRASH_SIGNALS ((int)(sizeof crash_signals / sizeof crash_signals[0]))
static struct sigaction crash_previous[N_CRASH_SIGNALS];
static volatile int crash_rank;
static atomic_int crash_installed;

typedef struct sig_text {
  char buf[768];
  size_t n;
} sig_text;

static void st_str(sig_text *t, const char *s) {
  while (s != NULL && *s && t->n < sizeof t->buf - 1) t->buf[t->n++] = *s++;
}

static void st_u64(sig_text *t, uint64_t v) {
  char digits[24];
  int k = 0;
  do {
    digits[k++] = (char)('0' + v % 10);
    v /= 10;
  } while (v > 0);
  while (k > 0 && t->n < sizeof t->buf - 1) t->buf[t->n++] = digits[--k];
}

static void st_int(sig_text *t, int64_t v) {
  if (v < 0) {
    st_str(t, "-");
    st_u64(t, (uint64_t)(-(v + 1)) + 1);
  } else {
    st_u64(t, (uint64_t)v);
  }
}

static const char *signal_name(int sig) {
  switch (sig) {
    case SIGSEGV: return "SIGSEGV (invalid memory access)";
    case SIGBUS: return "SIGBUS (bus error)";
    case SIGFPE: return "SIGFPE (arithmetic fault)";
    case SIGILL: return "SIGILL (illegal instruction)";
    case SIGABRT: return "SIGABRT (abort)";
    default: return "a fatal signal";
  }
}

static void crash_handler(int sig, siginfo_t *info, void *ctx) {
  pf_running_slot *rs = tls_running;
  pf_step *s = rs != NULL ? atomic_load_explicit(&rs->step, memory_order_acquire) : NULL;
  sig_text t = {.n = 0};
  int k = 0;
  (void)ctx;
  /* pathflow's own aborts (pf_mpi_abort) have said why already. */
  if (s != NULL || sig != SIGABRT) {
    st_str(&t, "pathflow: rank ");
    st_int(&t, rs != NULL ? rs->rank : crash_rank);
    st_str(&t, ": ");
    st_str(&t, signal_name(sig));
    if (s != NULL) {
      const pf_plan_op *op = &s->l->plan->ops[atomic_load_explicit(&rs->op, memory_order_relaxed)];
      st_str(&t, " in kernel \"");
      st_str(&t, op->kernel);
      st_str(&t, "\" (program \"");
      st_str(&t, op->name);
      st_str(&t, "\", shard ");
      st_int(&t, op->shard);
      st_str(&t, " of ");
      st_int(&t, op->num_shards);
      st_str(&t, ", step ");
      st_u64(&t, s->seq);
      st_str(&t, ") on device ");
      st_int(&t, op->device);
    } else {
      st_str(&t, " outside any kernel");
    }
    st_str(&t, "; the process dies\n");
    {
      ssize_t w = write(STDERR_FILENO, t.buf, t.n);
      (void)w;
    }
  }
  while (k < N_CRASH_SIGNALS && crash_signals[k] != sig) k++;
  if (k < N_CRASH_SIGNALS)
    sigaction(sig, &crash_previous[k], NULL);
  else
    signal(sig, SIG_DFL);
  /* A fault (si_code > 0) happens again when this handler returns, now
   * with the previous action and the real address; a sent signal (abort,
   * kill) is sent again: blocked while this handler runs, it is delivered
   * to the previous action when it returns. */
  if (info == NULL || info->si_code <= 0) raise(sig);
}

/* Installs the crash handlers once per process, keeping the previous
 * actions to hand the signal on to. */
static void install_crash_handlers(int rank) {
  struct sigaction sa;
  crash_rank = rank;
  if (atomic_exchange(&crash_installed, 1)) return;
  memset(&sa, 0, sizeof sa);
  sa.sa_sigaction = crash_handler;
  sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
  sigemptyset(&sa.sa_mask);
  for (int k = 0; k < N_CRASH_SIGNALS; k++)
    sigaction(crash_signals[k], &sa, &crash_previous[k]);
}

/* ---- the executor ---------------------------------------------------------- */

/* The executor did not start: its extra devices are destroyed all the
 * same, as the config promises (the caller let go of them). */
static void drop_extra_devices(const pf_executor_config *cfg) {
  for (int i = 0; cfg->extra_devices != NULL && i < cfg->n_extra_devices; i++)
    if (cfg->extra_devices[i] != NULL) cfg->extra_devices[i]->ops->destroy(cfg->extra_devices[i]);
}

int pf_executor_start(const pf_executor_config *cfg, pf_executor **out) {
  pf_executor *ex;
  int *cpus, rc = 0, total, lean;
  *out = NULL;
  if (cfg == NULL) return PF_EINVAL;
  if (cfg->num_devices < 1 || cfg->registry == NULL || cfg->n_extra_devices < 0 ||
      (cfg->n_extra_devices > 0 && cfg->extra_devices == NULL)) {
    drop_extra_devices(cfg);
    return PF_EINVAL;
  }
  for (int i = 0; i < cfg->n_extra_devices; i++)
    if (cfg->extra_devices[i] == NULL) {
      drop_extra_devices(cfg);
      return PF_EINVAL;
    }
  total = cfg->num_devices + cfg->n_extra_devices;
  if ((ex = calloc(1, sizeof *ex)) == NULL) {
    drop_extra_devices(cfg);
    return PF_ENOMEM;
  }
  /* From here on the executor counts every device: its CPU devices (or
   * cfg->devices), then the extra ones. */
  ex->cfg = *cfg;
  ex->cfg.num_devices = total;
  ex->cfg.devices = NULL; /* the caller's arrays: not kept */
  ex->cfg.extra_devices = NULL;
  pf_clock_real_init(&ex->clock_own);
  ex->clock = cfg->clock ? cfg->clock : &ex->clock_own;
  ex->loop_running.rank = cfg->rank;
  pthread_mutex_init(&ex->run_lock, NULL);
  ex->devices = pf_calloc((size_t)total, sizeof *ex->devices);
  ex->inline_ops = pf_calloc((size_t)total, sizeof(*ex->inline_ops));
  ex->inline_ops_run = pf_calloc((size_t)total, sizeof(*ex->inline_ops_run));
  /* Every op on the loop thread: its own queues (loop_queue). */
  lean = cfg->loop_runs_ops && cfg->devices == NULL && cfg->n_extra_devices == 0;
  if (lean) ex->lq = pf_calloc((size_t)total, sizeof *ex->lq);
  cpus = pf_calloc((size_t)cfg->num_devices, sizeof *cpus);
  if (ex->devices == NULL || ex->inline_ops == NULL || ex->inline_ops_run == NULL || cpus == NULL ||
      (lean && ex->lq == NULL)) {
    free(cpus);
    pf_executor_stop(ex);
    drop_extra_devices(cfg);
    return PF_ENOMEM;
  }
  if (cfg->devices == NULL) pf_cpu_device_pick_cpus(cfg->bind_first, cfg->bind_span, cfg->num_devices, cpus);
  for (int d = 0; d < cfg->num_devices && rc == 0; d++) {
    if (cfg->devices != NULL) {
      ex->devices[d] = cfg->devices[d];
    } else {
      pf_cpu_device_config dc = {.index = d, .rank = cfg->rank, .cpu = cpus[d],
                                 .spin_ns = cfg->spin_ns, .memory_bytes = cfg->device_memory,
                                 .clock = ex->clock, .loop_runs_ops = cfg->loop_runs_ops};
      rc = pf_cpu_device_create(&dc, &ex->devices[d]);
    }
    if (rc == 0) ex->started = d + 1;
  }
  free(cpus);
  if (rc != 0) {
    pf_executor_stop(ex);
    drop_extra_devices(cfg);
    return rc;
  }
  for (int i = 0; i < cfg->n_extra_devices; i++)
    ex->devices[cfg->num_devices + i] = cfg->extra_devices[i];
  ex->started = total;
  install_crash_handlers(cfg->rank);
  *out = ex;
  return 0;
}

void pf_executor_stop(pf_executor *ex) {
  if (ex == NULL) return;
  for (int d = 0; d < ex->started; d++) ex->devices[d]->ops->destroy(ex->devices[d]);
  pthread_mutex_destroy(&ex->run_lock);
  free(ex->devices);
  free(ex->inline_ops);
  free(ex->inline_ops_run);
  free(ex->lq);
  free(ex);
}

void pf_executor_counters(const pf_executor *ex, pf_counters *c) {
  for (int d = 0; d < ex->cfg.num_devices && d < c->num_devices; d++) {
    uint64_t ops_run = 0, wait_ns = 0;
    ex->devices[d]->ops->counters(ex->devices[d], &ops_run, &wait_ns);
    c->devices[d].ops_run = ops_run + ex->inline_ops_run[d];
    c->devices[d].wait_ns = wait_ns + (ex->lq != NULL ? ex->lq[d].wait_ns : 0);
  }
}

int pf_executor_num_devices(const pf_executor *ex) { return ex->cfg.num_devices; }

/* ---- values across the host boundary -------------------------------------- */

int pf_executor_device_memory(const pf_executor *ex, int device) {
  pf_device_info info;
  if (device < 0 || device >= ex->cfg.num_devices) return 0;
  memset(&info, 0, sizeof info);
  ex->devices[device]->ops->info(ex->devices[device], &info);
  return info.own_memory != 0;
}

/* Moves all nbytes of src to dst as one row of bytes, by `device`. */
static int copy_bytes(pf_executor *ex, int device, pf_copy_dir dir, pf_storage *dst,
                      const pf_storage *src) {
  int64_t dims[1] = {(int64_t)src->nbytes};
  pf_box box;
  memset(&box, 0, sizeof box);
  box.rank = 1;
  box.extent[0] = dims[0];
  if (src->nbytes == 0) return 0;
  return ex->devices[device]->ops->copy(ex->devices[device], dir, dst->data, dims, src->data,
                                        dims, &box, 1);
}

int pf_executor_to_host(pf_executor *ex, pf_storage *st, pf_storage **out) {
  pf_storage *h;
  int rc;
  *out = NULL;
  if (!st->on_device) {
    *out = pf_storage_ref(st);
    return 0;
  }
  if (st->device < 0 || st->device >= ex->cfg.num_devices) return PF_EINVAL;
  if ((h = pf_storage_new(st->nbytes, st->device)) == NULL) return PF_ENOMEM;
  if ((rc = copy_bytes(ex, st->device, PF_COPY_D2H, h, st)) != 0) {
    pf_storage_unref(h);
    return rc;
  }
  *out = h;
  return 0;
}

int pf_executor_to_device(pf_executor *ex, int device, pf_storage *st, pf_storage **out) {
  pf_storage *d;
  int rc;
  *out = NULL;
  if (device < 0 || device >= ex->cfg.num_devices) return PF_EINVAL;
  if ((st->on_device && st->device == device) || !pf_executor_device_memory(ex, device)) {
    *out = pf_storage_ref(st);
    return 0;
  }
  if (st->on_device) { /* another device's memory: through the host */
    pf_storage *h;
    if ((rc = pf_executor_to_host(ex, st, &h)) != 0) return rc;
    rc = pf_executor_to_device(ex, device, h, out);
    pf_storage_unref(h);
    return rc;
  }
  if ((d = ex->devices[device]->ops->alloc(ex->devices[device], st->nbytes)) == NULL)
    return PF_ENOMEM;
  if ((rc = copy_bytes(ex, device, PF_COPY_H2D, d, st)) != 0) {
    pf_storage_unref(d);
    return rc;
  }
  *out = d;
  return 0;
}

/* ---- communicators of device-run collectives ------------------------------- */

int pf_loaded_comm_device(const pf_loaded *l, uint32_t c) {
  const pf_plan *p = l->plan;
  for (uint32_t i = 0; c < p->n_comms && i < p->n_ops; i++)
    if (p->ops[i].comm == p->comms[c].id && device_collective(l, &p->ops[i])) return p->ops[i].device;
  return -1;
}

int pf_loaded_own_memory(const pf_loaded *l, int d) { return !l->host_memory[d]; }

void pf_loaded_set_comm(pf_loaded *l, uint32_t c, pf_device *d, void *handle) {
  l->comm_device[c] = d;
  l->comm_handle[c] = handle;
}

pf_device *pf_executor_device(pf_executor *ex, int d) {
  return d >= 0 && d < ex->cfg.num_devices ? ex->devices[d] : NULL;
}
