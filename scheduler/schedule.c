#include "scheduler/schedule.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/arena.h"
#include "base/layout.h"
#include "base/util.h"
#include "graph/collective.h"
#include "pathflow/error.h"
#include "scheduler/memory.h"
#include "scheduler/plan_builder.h"
#include "scheduler/staging.h"

/* A shard's home: global device index and buffer on that device's rank. */
typedef struct home {
  int32_t device;
  uint32_t buffer;
} home;

/* One way a value is laid out (the producer's, or a consumer's after a
 * reshard): shards over a slice's devices. */
typedef struct layout {
  int32_t slice;
  pf_sharding sharding;
  home *shards;
  struct layout *next;
} layout;

/* A communicator: the ranks of a collective's slice, in shard order, and
 * for one whose collectives a device runs (NCCL), the device of each rank:
 * such a communicator is the device's, not the rank's. */
typedef struct comm_def {
  int32_t *ranks;
  int32_t *devices; /* global device indices, or NULL */
  int n;
} comm_def;

typedef struct lowering {
  const pf_graph *g;
  uint64_t n_transfers; /* tags: one per transfer, unique in the executable */
  comm_def *comms;
  size_t n_comms, cap_comms;
  const pf_cluster *cl;
  pf_diag *d;
  int32_t **slice_devices; /* per slice: global device indices */
  pf_plan_builder **pb;    /* per rank */
  layout **layouts;        /* per value: the producer's layout first */
  pf_arena mem;            /* layouts and their shards, freed together */
  pf_warmer *warmer;       /* backing the plans' records ahead (base/warm.h) */
  /* Per rank, -1 between uses: a collective's scratch (slot of the rank in
   * its communicator), so that grouping a slice's shards by rank is linear
   * in the slice's size. */
  int32_t *rank_slot;
  /* Staging through host memory (scheduler/staging.h): only when some
   * device stages a path; rank_first[r] is the global index of rank r's
   * first device. */
  int staged;
  int32_t *rank_first;
  pf_stage_memo memo;
} lowering;

static const pf_cluster_device *dev(const lowering *L, int32_t global) {
  return &L->cl->devices[global];
}

/* ---- staging (GPUs) ------------------------------------------------------ */

/* 1 if buffer b of rank r is in device memory the host cannot address. */
static int in_device_memory(const lowering *L, int32_t r, uint32_t b) {
  const pf_plan_buffer *pb = pf_pb_buffer_at(L->pb[r], b);
  return L->staged && !pb->host && dev(L, L->rank_first[r] + pb->device)->own_memory;
}

/* Buffer b of rank r as a reader in host (want_host 1) or device memory
 * needs it; b itself on devices whose memory is the host's. */
static int staged_buffer(lowering *L, int32_t r, uint32_t b, int want_host, int32_t program,
                         const char *name, uint32_t *out) {
  const pf_plan_buffer *pb = pf_pb_buffer_at(L->pb[r], b);
  if (!L->staged || !dev(L, L->rank_first[r] + pb->device)->own_memory) {
    *out = b;
    return 0;
  }
  return pf_stage_buffer(&L->memo, L->pb[r], r, b, 1, want_host, program, name, out);
}

/* ---- placement ---------------------------------------------------------- */

/* The order slices take devices in: packed fills a host (then a rank)
 * before the next; spread deals devices round-robin over hosts. */
static int device_order(const pf_cluster *cl, pf_device_kind kind, pf_placement policy,
                        int32_t *order) {
  int n = 0, n_hosts = 0;
  for (int i = 0; i < cl->n_devices; i++)
    if (cl->devices[i].kind == kind) {
      order[n++] = i;
      n_hosts = PF_MAXOF(n_hosts, cl->devices[i].host + 1);
    }
  /* Stable insertion sort by host: rank-major order is kept inside a host. */
  for (int i = 1; i < n; i++) {
    int32_t v = order[i];
    int k = i;
    while (k > 0 && cl->devices[order[k - 1]].host > cl->devices[v].host) {
      order[k] = order[k - 1];
      k--;
    }
    order[k] = v;
  }
  if (policy == PF_PLACE_SPREAD && n_hosts > 1) {
    int32_t *packed = pf_mallocn((size_t)n, sizeof *packed);
    int *next = pf_calloc((size_t)n_hosts, sizeof *next), *first = pf_calloc((size_t)n_hosts + 1, sizeof *first);
    int k = 0;
    if (!packed || !next || !first) {
      free(packed);
      free(next);
      free(first);
      return -1;
    }
    memcpy(packed, order, (size_t)n * sizeof *packed);
    for (int i = 0; i < n; i++) first[cl->devices[packed[i]].host + 1]++;
    for (int h = 0; h < n_hosts; h++) first[h + 1] += first[h];
    while (k < n)
      for (int h = 0; h < n_hosts; h++)
        if (first[h] + next[h] < first[h + 1]) order[k++] = packed[first[h] + next[h]++];
    free(packed);
    free(next);
    free(first);
  }
  return n;
}

static int place(lowering *L) {
  const pf_graph *g = L->g;
  int32_t *of_kind[PF_DEVICE_KIND_COUNT] = {0};
  int n_kind[PF_DEVICE_KIND_COUNT] = {0}, cursor[PF_DEVICE_KIND_COUNT] = {0};
  int rc = 0;
  for (int k = 0; k < PF_DEVICE_KIND_COUNT && rc == 0; k++) {
    of_kind[k] = pf_mallocn((size_t)L->cl->n_devices, sizeof(int32_t));
    if (of_kind[k] == NULL || (n_kind[k] = device_order(L->cl, (pf_device_kind)k, g->placement,
                                                        of_kind[k])) < 0)
      rc = PF_ENOMEM;
  }
  /* Pinned indices name devices of a kind in rank-major order. */
  for (size_t s = 0; rc == 0 && s < g->n_slices; s++) {
    const pf_gslice *sl = &g->slices[s];
    int32_t *devs = pf_mallocn((size_t)sl->num_devices, sizeof *devs);
    if (devs == NULL) {
      rc = PF_ENOMEM;
      break;
    }
    L->slice_devices[s] = devs;
    if (sl->num_devices > n_kind[sl->kind]) {
      rc = pf_diag_error(L->d, PF_ESLICE,
                         "slice %zu needs %d %s devices; the cluster has %d", s,
                         sl->num_devices, pf_device_kind_name(sl->kind),
                         n_kind[sl->kind]);
      break;
    }
    for (int i = 0; i < sl->num_devices; i++) {
      if (sl->pinned) {
        int found = -1;
        for (int k = 0, seen = 0; k < L->cl->n_devices && found < 0; k++)
          if (L->cl->devices[k].kind == sl->kind && seen++ == sl->pinned[i]) found = k;
        if (found < 0) {
          rc = pf_diag_error(L->d, PF_ESLICE,
                             "slice %zu: pinned device %d, the cluster has %d", s,
                             sl->pinned[i], n_kind[sl->kind]);
          break;
        }
        devs[i] = found;
      } else {
        devs[i] = of_kind[sl->kind][(cursor[sl->kind] + i) % n_kind[sl->kind]];
      }
    }
    if (!sl->pinned)
      cursor[sl->kind] = (cursor[sl->kind] + sl->num_devices) % n_kind[sl->kind];
  }
  for (int k = 0; k < PF_DEVICE_KIND_COUNT; k++) free(of_kind[k]);
  if (rc == PF_ENOMEM) pf_diag_error(L->d, rc, "placement: out of memory");
  return rc;
}

/* ---- layouts -------------------------------------------------------------- */

static layout *layout_new(lowering *L, int32_t v, int32_t slice,
                          pf_sharding sh) {
  size_t n = (size_t)L->g->slices[slice].num_devices;
  layout *lay = pf_arena_alloc(&L->mem, sizeof *lay + n * sizeof(home));
  if (lay == NULL) return NULL;
  lay->shards = (home *)(lay + 1);
  memset(lay->shards, 0, n * sizeof(home));
  lay->slice = slice;
  lay->sharding = sh;
  lay->next = L->layouts[v];
  L->layouts[v] = lay;
  return lay;
}

/* 1 if devices a and b (global indices) are two devices of one rank whose
 * memory is the host's: a kernel on b may then read a whole shard that a
 * makes where it lies (the CPU devices of a process share its memory); a
 * copy cost an op, a buffer and a cache line moved between the two
 * workers at every hand-off (bench/granularity -d 2). */
static int shares_memory(const lowering *L, int32_t a, int32_t b) {
  const pf_cluster_device *x = dev(L, a), *y = dev(L, b);
  return x->rank == y->rank && !x->own_memory && !y->own_memory;
}

/* The producer's layout is the last in the list (added first). */
static layout *layout_home(lowering *L, int32_t v) {
  layout *lay = L->layouts[v];
  while (lay && lay->next) lay = lay->next;
  return lay;
}

static int same_layout(const lowering *L, const layout *lay, int32_t slice,
                       pf_sharding sh) {
  const int32_t *a = L->slice_devices[lay->slice], *b = L->slice_devices[slice];
  int n = L->g->slices[lay->slice].num_devices;
  if (n != L->g->slices[slice].num_devices || !pf_sharding_equal(lay->sharding, sh))
    return 0;
  if (sh.kind == PF_SHARD_REPLICATED && n == 1) return a[0] == b[0];
  for (int i = 0; i < n; i++)
    if (a[i] != b[i]) return 0;
  return 1;
}

static int new_shard_buffers(lowering *L, layout *lay, const pf_spec *global) {
  const pf_gslice *sl = &L->g->slices[lay->slice];
  pf_spec local;
  pf_shard_spec(global, lay->sharding, sl->num_devices, &local, "", NULL);
  for (int s = 0; s < sl->num_devices; s++) {
    int32_t gd = L->slice_devices[lay->slice][s];
    const pf_cluster_device *cd = dev(L, gd);
    lay->shards[s].device = gd;
    if (pf_pb_buffer(L->pb[cd->rank], cd->local, &local, s, &lay->shards[s].buffer))
      return PF_ENOMEM;
  }
  return 0;
}

/* Which replica of a replicated source feeds destination device `gd`:
 * the same device, else the same rank, else spread by shard index. */
static int pick_replica(const lowering *L, const layout *src, int32_t gd, int s) {
  int n = L->g->slices[src->slice].num_devices;
  for (int i = 0; i < n; i++)
    if (src->shards[i].device == gd) return i;
  for (int i = 0; i < n; i++)
    if (dev(L, src->shards[i].device)->rank == dev(L, gd)->rank) return i;
  return s % n;
}

/* A host buffer on rank r's device `local` shaped like box's extent. */
static int chunk_buffer(lowering *L, int32_t r, int32_t local, pf_dtype dtype, const pf_box *box,
                        int32_t shard, uint32_t *out) {
  pf_spec spec = pf_spec_make(dtype, box->rank, box->extent);
  if (pf_pb_buffer(L->pb[r], local, &spec, shard, out)) return PF_ENOMEM;
  pf_pb_buffer_at(L->pb[r], *out)->host = 1;
  return 0;
}

/* A box as a whole buffer of its extent: offsets 0. */
static void whole_of(const pf_box *box, pf_box *out) {
  memset(out, 0, sizeof *out);
  out->rank = box->rank;
  memcpy(out->extent, box->extent, sizeof out->extent);
}

/* A transfer between ranks whose sender or receiver keeps the data in
 * device memory and stages transfers: cut into chunks, each sent from and
 * received into host buffers of its extent, with the device's copies
 * between them and the device buffers (scheduler/staging.h). */
static int emit_staged_transfer(lowering *L, pf_plan_op *op, const home *from, const home *to,
                                const pf_box *box, int stage_src, int stage_dst) {
  const pf_cluster_device *a = dev(L, from->device), *b = dev(L, to->device);
  const pf_plan_buffer *src = pf_pb_buffer_at(L->pb[a->rank], from->buffer);
  pf_dtype dtype = src->spec->dtype;
  int32_t shard = src->shard;
  int n = pf_stage_chunks(box, pf_dtype_size(dtype)), rc = 0;
  for (int k = 0; k < n && rc == 0; k++) {
    pf_box chunk, whole, in_host;
    uint32_t hs = from->buffer, hr = to->buffer;
    pf_stage_chunk(box, n, k, &chunk);
    whole_of(&chunk, &whole);
    op->tag = (int64_t)L->n_transfers++;
    if (stage_src) { /* device -> host chunk, sent whole */
      in_host = chunk;
      memset(in_host.dst_offset, 0, sizeof in_host.dst_offset);
      op->kind = PF_OP_COPY;
      op->device = a->local;
      op->box = &in_host;
      if ((rc = chunk_buffer(L, a->rank, a->local, dtype, &chunk, shard, &hs)) != 0 ||
          (rc = pf_pb_op(L->pb[a->rank], op, &from->buffer, 1, &hs, 1, NULL)) != 0)
        break;
    }
    op->kind = PF_OP_SEND;
    op->device = a->local;
    op->peer = b->rank;
    op->box = stage_src ? &whole : &chunk;
    if ((rc = pf_pb_op(L->pb[a->rank], op, &hs, 1, NULL, 0, NULL)) != 0) break;
    if (stage_dst && (rc = chunk_buffer(L, b->rank, b->local, dtype, &chunk,
                                        pf_pb_buffer_at(L->pb[b->rank], to->buffer)->shard,
                                        &hr)) != 0)
      break;
    op->kind = PF_OP_RECV;
    op->device = b->local;
    op->peer = a->rank;
    if (stage_dst) { /* received whole, then host chunk -> device */
      memset(chunk.src_offset, 0, sizeof chunk.src_offset);
      op->box = &whole;
      if ((rc = pf_pb_op(L->pb[b->rank], op, NULL, 0, &hr, 1, NULL)) != 0) break;
      op->kind = PF_OP_COPY;
      op->box = &chunk;
      rc = pf_pb_op(L->pb[b->rank], op, &hr, 1, &to->buffer, 1, NULL);
    } else {
      op->box = &chunk;
      rc = pf_pb_op(L->pb[b->rank], op, NULL, 0, &to->buffer, 1, NULL);
    }
  }
  return rc;
}

/* One piece of a reshard: a copy within a rank (device to device), or a
 * matched send and receive between ranks carrying the same tag. With
 * devices that stage (GPUs), a copy runs on the destination's device, from
 * a host twin of the source when the destination is host memory; a
 * transfer is staged through host chunks. */
static int emit_piece(lowering *L, const pf_gprogram *consumer, const home *from,
                      const home *to, const pf_box *box) {
  const pf_cluster_device *a = dev(L, from->device), *b = dev(L, to->device);
  int32_t program = (int32_t)(consumer - L->g->programs);
  pf_plan_op op;
  int rc;
  memset(&op, 0, sizeof op);
  op.program = program;
  op.name = consumer->name;
  op.box = (pf_box *)box; /* copied by pf_pb_op */
  op.comm = -1;
  if (a->rank == b->rank) {
    uint32_t src = from->buffer;
    /* A device with memory of its own reaches host memory; a CPU device
     * does not reach a GPU's. */
    if (!in_device_memory(L, b->rank, to->buffer) &&
        (rc = staged_buffer(L, a->rank, from->buffer, 1, program, consumer->name, &src)) != 0)
      return rc;
    op.kind = PF_OP_COPY;
    op.device = b->local;
    return pf_pb_op(L->pb[b->rank], &op, &src, 1, &to->buffer, 1, NULL);
  }
  if (L->staged) {
    int stage_src = (a->stage & PF_STAGE_TRANSFERS) && in_device_memory(L, a->rank, from->buffer);
    int stage_dst = (b->stage & PF_STAGE_TRANSFERS) && in_device_memory(L, b->rank, to->buffer);
    if (stage_src || stage_dst)
      return emit_staged_transfer(L, &op, from, to, box, stage_src, stage_dst);
  }
  op.tag = (int64_t)L->n_transfers++;
  op.kind = PF_OP_SEND;
  op.device = a->local;
  op.peer = b->rank;
  if ((rc = pf_pb_op(L->pb[a->rank], &op, &from->buffer, 1, NULL, 0, NULL)) != 0) return rc;
  op.kind = PF_OP_RECV;
  op.device = b->local;
  op.peer = a->rank;
  return pf_pb_op(L->pb[b->rank], &op, NULL, 0, &to->buffer, 1, NULL);
}

/* The communicator over `ranks` (and, for device-run collectives, over
 * `devices`, one per rank; else NULL), made on first use. */
static int comm_id_on(lowering *L, const int32_t *ranks, const int32_t *devices, int n) {
  comm_def *c;
  for (size_t i = 0; i < L->n_comms; i++)
    if (L->comms[i].n == n && memcmp(L->comms[i].ranks, ranks, (size_t)n * sizeof *ranks) == 0 &&
        (L->comms[i].devices == NULL) == (devices == NULL) &&
        (devices == NULL ||
         memcmp(L->comms[i].devices, devices, (size_t)n * sizeof *devices) == 0))
      return (int)i;
  if (pf_grow((void **)&L->comms, &L->cap_comms, L->n_comms + 1, sizeof *L->comms))
    return PF_ENOMEM;
  c = &L->comms[L->n_comms];
  c->devices = NULL;
  if ((c->ranks = pf_mallocn((size_t)n, sizeof *ranks)) == NULL) return PF_ENOMEM;
  memcpy(c->ranks, ranks, (size_t)n * sizeof *ranks);
  if (devices != NULL) {
    if ((c->devices = pf_mallocn((size_t)n, sizeof *devices)) == NULL) {
      free(c->ranks);
      return PF_ENOMEM;
    }
    memcpy(c->devices, devices, (size_t)n * sizeof *devices);
  }
  c->n = n;
  return (int)L->n_comms++;
}

static int comm_id(lowering *L, const int32_t *ranks, int n) {
  return comm_id_on(L, ranks, NULL, n);
}

/* Allreduce or broadcast over several devices on each of several ranks:
 * one op per rank takes all its local shards (in shard order), combines
 * them in the rank, and runs one MPI collective among the ranks (ordered by
 * their first shard). For broadcast, `root` is the root's rank in the
 * communicator and `axis` the root shard's index among that rank's inputs.
 * Linear in n: shards are grouped by rank with a counting sort through
 * L->rank_slot, which is left all -1 again. */
static int lower_hierarchical(lowering *L, pf_plan_op *op, int n, const int32_t *ranks,
                              const uint32_t *in_buf, const uint32_t *out_buf, const layout *in) {
  int32_t *order = pf_mallocn((size_t)n, sizeof *order), *slot = L->rank_slot;
  int32_t *start = pf_calloc((size_t)n + 1, sizeof *start), *first = pf_mallocn((size_t)n, sizeof *first);
  uint32_t *li = pf_mallocn((size_t)n, sizeof *li), *lo = pf_mallocn((size_t)n, sizeof *lo);
  int n_ranks = 0, id, rc = PF_ENOMEM, root_shard = op->root;
  if (!order || !start || !first || !li || !lo) goto out;
  for (int s = 0; s < n; s++) {
    if (slot[ranks[s]] < 0) {
      first[n_ranks] = s;
      slot[ranks[s]] = n_ranks;
      order[n_ranks++] = ranks[s];
    }
    start[slot[ranks[s]] + 1]++;
  }
  for (int k = 0; k < n_ranks; k++) start[k + 1] += start[k];
  for (int s = 0; s < n; s++) { /* stable: shard order within a rank */
    int32_t k = slot[ranks[s]];
    li[start[k]] = in_buf[s];
    lo[start[k]++] = out_buf[s];
  }
  for (int k = n_ranks; k > 0; k--) start[k] = start[k - 1];
  start[0] = 0;
  if ((id = comm_id(L, order, n_ranks)) < 0) {
    rc = id;
    goto out;
  }
  op->comm = id;
  if (op->collective == PF_BROADCAST) {
    /* The root's rank in the communicator, and its place among that
     * rank's inputs. */
    int before = 0;
    for (int s = 0; s < root_shard; s++) before += ranks[s] == ranks[root_shard];
    op->root = slot[ranks[root_shard]];
    op->axis = before;
  }
  rc = 0;
  for (int k = 0; k < n_ranks && rc == 0; k++) {
    op->device = dev(L, in->shards[first[k]].device)->local;
    op->shard = k;
    if ((rc = pf_pb_comm(L->pb[order[k]], id, order, (uint32_t)n_ranks)) == 0)
      rc = pf_pb_op(L->pb[order[k]], op, li + start[k], (uint32_t)(start[k + 1] - start[k]),
                    lo + start[k], (uint32_t)(start[k + 1] - start[k]), NULL);
  }
out:
  for (int k = 0; order && k < n_ranks; k++) slot[order[k]] = -1;
  free(order);
  free(start);
  free(first);
  free(li);
  free(lo);
  return rc;
}

/* A collective: one op on the rank when the whole slice is on one rank;
 * else one MPI collective op per rank, each rank holding one shard. */
static int lower_collective(lowering *L, int32_t pid, layout *in, layout *out) {
  const pf_gprogram *p = &L->g->programs[pid];
  int n = L->g->slices[p->slice].num_devices, rc = 0, id;
  int32_t *ranks = pf_mallocn((size_t)n, sizeof *ranks);
  uint32_t *in_buf = pf_mallocn((size_t)n, sizeof *in_buf);
  uint32_t *out_buf = pf_mallocn((size_t)n, sizeof *out_buf);
  pf_plan_op op;
  int one_rank = 1, one_each = 1, device_runs = 0;
  if (!ranks || !in_buf || !out_buf) {
    rc = PF_ENOMEM;
    goto out;
  }
  for (int s = 0; s < n; s++) {
    ranks[s] = dev(L, in->shards[s].device)->rank;
    one_rank &= ranks[s] == ranks[0];
    one_each &= L->rank_slot[ranks[s]] < 0; /* a rank seen before is marked */
    L->rank_slot[ranks[s]] = s;
    in_buf[s] = in->shards[s].buffer;
    out_buf[s] = out->shards[s].buffer;
  }
  for (int s = 0; s < n; s++) L->rank_slot[ranks[s]] = -1;
  /* A collective over devices of their own memory, one per rank, each
   * running collectives itself (NCCL: its stage lacks COLLECTIVES), runs on
   * the devices when its blocks are whole runs of memory. Anything else over
   * devices of their own memory reduces host twins into host results in the
   * runtime. */
  if (L->staged) {
    /* NCCL's buffers are flat: gathered, scattered or exchanged blocks
     * must be whole runs of memory. */
    device_runs =
        !one_rank && one_each &&
        pf_collective_contiguous(
            (pf_collective_kind)pf_collective_from_kernel(p->kernel),
            pf_pb_buffer_at(L->pb[ranks[0]], in_buf[0])->spec,
            pf_pb_buffer_at(L->pb[ranks[0]], out_buf[0])->spec,
            (int)pf_attrs_get_int(p->attrs, PF_COLL_ATTR_AXIS, 0),
            p->in_shardings[0].kind == PF_SHARD_SPLIT ? p->in_shardings[0].axis : 0);
    for (int s = 0; s < n && device_runs; s++) {
      const pf_cluster_device *cd = dev(L, in->shards[s].device);
      device_runs = cd->own_memory && !(cd->stage & PF_STAGE_COLLECTIVES);
    }
  }
  for (int s = 0; L->staged && !device_runs && s < n && rc == 0; s++) {
    const pf_cluster_device *cd = dev(L, in->shards[s].device);
    if (!cd->own_memory) continue;
    rc = staged_buffer(L, cd->rank, in_buf[s], 1, pid, p->name, &in_buf[s]);
    pf_pb_buffer_at(L->pb[cd->rank], out_buf[s])->host = 1;
  }
  if (rc != 0) goto out;
  memset(&op, 0, sizeof op);
  op.kind = PF_OP_COLLECTIVE;
  op.program = pid;
  op.name = p->name;
  op.num_shards = n;
  /* Both checked by the graph (a known collective, a known reduction). */
  op.collective = (int8_t)pf_collective_from_kernel(p->kernel);
  op.reduce_op = (int8_t)pf_attrs_get_int(p->attrs, PF_COLL_ATTR_OP, 0);
  op.axis = (int32_t)pf_attrs_get_int(p->attrs, PF_COLL_ATTR_AXIS, 0);
  op.root = (int32_t)pf_attrs_get_int(p->attrs, PF_COLL_ATTR_ROOT, 0);
  op.in_axis = (int8_t)(p->in_shardings[0].kind == PF_SHARD_SPLIT ? p->in_shardings[0].axis : 0);
  if (one_rank) {
    op.comm = -1;
    op.device = dev(L, in->shards[0].device)->local;
    rc = pf_pb_op(L->pb[ranks[0]], &op, in_buf, (uint32_t)n, out_buf, (uint32_t)n, NULL);
    goto out;
  }
  if (!one_each) {
    if (op.collective == PF_ALLREDUCE || op.collective == PF_BROADCAST)
      rc = lower_hierarchical(L, &op, n, ranks, in_buf, out_buf, in);
    else
      rc = pf_diag_error(L->d, PF_ENOTSUP,
                         "collective \"%s\": a %s over a slice with several devices on each "
                         "of several ranks is not supported (allreduce and broadcast are); "
                         "use one device per rank, or one rank",
                         p->name, op.collective == PF_ALLGATHER ? "allgather" : "collective");
    goto out;
  }
  if (device_runs) {
    int32_t *devs = pf_mallocn((size_t)n, sizeof *devs);
    if (devs == NULL) {
      rc = PF_ENOMEM;
      goto out;
    }
    for (int s = 0; s < n; s++) devs[s] = in->shards[s].device;
    id = comm_id_on(L, ranks, devs, n);
    free(devs);
  } else {
    id = comm_id(L, ranks, n);
  }
  if (id < 0) {
    rc = id;
    goto out;
  }
  op.comm = id;
  for (int s = 0; s < n && rc == 0; s++) {
    op.device = dev(L, in->shards[s].device)->local;
    op.shard = s;
    if ((rc = pf_pb_comm(L->pb[ranks[s]], id, ranks, (uint32_t)n)) == 0)
      rc = pf_pb_op(L->pb[ranks[s]], &op, &in_buf[s], 1, &out_buf[s], 1, NULL);
  }
out:
  free(ranks);
  free(in_buf);
  free(out_buf);
  return rc;
}

/* Lays value v out on `slice` with `sh` for `consumer`, reusing a layout
 * made earlier for another consumer, or aliasing the producer's. */
static int consume(lowering *L, const pf_gprogram *consumer, int32_t v,
                   int32_t slice, pf_sharding sh, layout **out) {
  const pf_gvalue *val = &L->g->values[v];
  layout *src = layout_home(L, v), *lay;
  int n_dst = L->g->slices[slice].num_devices;
  int n_src = L->g->slices[src->slice].num_devices;
  int rank = val->spec->rank;
  for (lay = L->layouts[v]; lay; lay = lay->next)
    if (same_layout(L, lay, slice, sh)) {
      *out = lay;
      return 0;
    }
  /* Summands move one to one; anything else would read a summand as the
   * value. The validator refuses such graphs: this is the last guard. */
  if ((src->sharding.kind == PF_SHARD_PARTIAL) != (sh.kind == PF_SHARD_PARTIAL) ||
      (sh.kind == PF_SHARD_PARTIAL && n_src != n_dst))
    return pf_diag_error(L->d, PF_ESHARDING,
                         "program \"%s\": value %d is laid out as one kind of "
                         "sharding and read as another (partial vs whole)",
                         consumer->name, v);
  if ((lay = layout_new(L, v, slice, sh)) == NULL) return PF_ENOMEM;
  for (int d = 0; d < n_dst; d++) {
    int64_t dlo[PF_MAX_RANK], dext[PF_MAX_RANK];
    int32_t gd = L->slice_devices[slice][d];
    const pf_cluster_device *cd = dev(L, gd);
    pf_spec local;
    int first = 1;
    /* The source shards that can feed shard d: a replicated source's one
     * replica (found once per shard: once per source shard was cubic), a
     * partial one's summand d, or any split piece. */
    int s_lo = 0, s_hi = n_src;
    if (src->sharding.kind == PF_SHARD_REPLICATED) {
      s_lo = pick_replica(L, src, gd, d);
      s_hi = s_lo + 1;
    } else if (src->sharding.kind == PF_SHARD_PARTIAL) { /* summand d to shard d */
      s_lo = d;
      s_hi = d + 1;
    }
    pf_shard_region(val->spec, sh, n_dst, d, dlo, dext);
    if (src->sharding.kind == PF_SHARD_SPLIT && src->sharding.axis >= 0 && src->sharding.axis < rank) {
      /* Only the split pieces that overlap this shard along the axis: a
       * reshard between two slices is then linear, not quadratic. */
      int a = src->sharding.axis;
      int64_t block = val->spec->dims[a] / n_src;
      if (block > 0 && dext[a] > 0) {
        s_lo = (int)PF_MINOF(dlo[a] / block, (int64_t)n_src);
        s_hi = (int)PF_MINOF((dlo[a] + dext[a] - 1) / block + 1, (int64_t)n_src);
      }
    }
    pf_shard_spec(val->spec, sh, n_dst, &local, "", NULL);
    lay->shards[d].device = gd;
    for (int s = s_lo; s < s_hi; s++) {
      int64_t slo[PF_MAX_RANK], sext[PF_MAX_RANK], ilo[PF_MAX_RANK], iext[PF_MAX_RANK];
      pf_box box;
      int rc, whole = 1;
      pf_shard_region(val->spec, src->sharding, n_src, s, slo, sext);
      if (!pf_region_intersect(rank, dlo, dext, slo, sext, ilo, iext)) continue;
      box.rank = rank;
      for (int i = 0; i < rank; i++) {
        box.src_offset[i] = ilo[i] - slo[i];
        box.dst_offset[i] = ilo[i] - dlo[i];
        box.extent[i] = iext[i];
        whole &= iext[i] == dext[i] && iext[i] == sext[i];
      }
      if (whole && (src->shards[s].device == gd || shares_memory(L, src->shards[s].device, gd))) {
        lay->shards[d].buffer = src->shards[s].buffer; /* pointer hand-off */
        first = 0;
        break;
      }
      if (first) {
        if (pf_pb_buffer(L->pb[cd->rank], cd->local, &local, d, &lay->shards[d].buffer))
          return PF_ENOMEM;
        first = 0;
      }
      if ((rc = emit_piece(L, consumer, &src->shards[s], &lay->shards[d], &box)) != 0)
        return rc;
    }
    if (first && pf_pb_buffer(L->pb[cd->rank], cd->local, &local, d,
                              &lay->shards[d].buffer))
      return PF_ENOMEM; /* an empty tensor: nothing to move */
  }
  *out = lay;
  return 0;
}

static int lower_program(lowering *L, int32_t pid) {
  const pf_gprogram *p = &L->g->programs[pid];
  const pf_gslice *sl = &L->g->slices[p->slice];
  layout *ins[PF_MAX_ARGS], *outs[PF_MAX_OUTS];
  int rc;
  for (int i = 0; i < p->n_in; i++)
    if ((rc = consume(L, p, p->in[i], p->slice, p->in_shardings[i], &ins[i])) != 0)
      return rc;
  for (int o = 0; o < p->n_out; o++) {
    const pf_gvalue *v = &L->g->values[p->out[o]];
    if ((outs[o] = layout_new(L, p->out[o], p->slice, v->sharding)) == NULL ||
        new_shard_buffers(L, outs[o], v->spec) != 0)
      return PF_ENOMEM;
  }
  if (pf_collective_from_kernel(p->kernel) >= 0) return lower_collective(L, pid, ins[0], outs[0]);
  for (int s = 0; s < sl->num_devices; s++) {
    const pf_cluster_device *cd = dev(L, L->slice_devices[p->slice][s]);
    uint32_t in_buf[PF_MAX_ARGS], out_buf[PF_MAX_OUTS];
    pf_plan_op op;
    memset(&op, 0, sizeof op);
    op.kind = PF_OP_KERNEL;
    op.comm = -1;
    op.device = cd->local;
    op.program = pid;
    op.name = p->name;
    op.shard = s;
    op.num_shards = sl->num_devices;
    op.kernel = p->kernel;
    op.attrs = p->attrs;
    for (int i = 0; i < p->n_in; i++)
      if (staged_buffer(L, cd->rank, ins[i]->shards[s].buffer, 0, pid, p->name, &in_buf[i]))
        return PF_ENOMEM;
    for (int o = 0; o < p->n_out; o++) out_buf[o] = outs[o]->shards[s].buffer;
    if (pf_pb_op(L->pb[cd->rank], &op, in_buf, (uint32_t)p->n_in, out_buf,
                 (uint32_t)p->n_out, NULL))
      return PF_ENOMEM;
  }
  return 0;
}

static int fill_io(lowering *L, pf_io *io, const pf_gnamed *named, int is_output,
                   int index) {
  const pf_gvalue *v = &L->g->values[named->value];
  layout *lay = layout_home(L, named->value);
  int n = L->g->slices[v->slice].num_devices;
  io->name = pf_strdup(named->name);
  io->spec = *v->spec;
  io->sharding = v->sharding;
  io->num_shards = n;
  io->shards = pf_calloc((size_t)n, sizeof *io->shards);
  if (io->name == NULL || io->shards == NULL) return PF_ENOMEM;
  for (int s = 0; s < n; s++) {
    const pf_cluster_device *cd = dev(L, lay->shards[s].device);
    uint32_t buffer = lay->shards[s].buffer;
    pf_plan_buffer *pb;
    /* An output must be a device's own buffer, kept where the next
     * execution reads it (a GPU's memory); a staging buffer (a collective's
     * result in host memory) gets its device twin. Feeds and fetches cross
     * the host boundary in the runtime, when one needs it. */
    if (is_output && pf_pb_buffer_at(L->pb[cd->rank], buffer)->host &&
        staged_buffer(L, cd->rank, buffer, 0, -1, named->name, &buffer))
      return PF_ENOMEM;
    pb = pf_pb_buffer_at(L->pb[cd->rank], buffer);
    io->shards[s].rank = cd->rank;
    io->shards[s].device = cd->local;
    io->shards[s].buffer = buffer;
    if (is_output && pb->output < 0) pb->output = index;
    if (is_output && pf_pb_slot(L->pb[cd->rank], index, s, buffer)) return PF_ENOMEM;
    if (!is_output) pb->input = index;
  }
  return 0;
}

void pf_compiled_free(pf_compiled *c) {
  if (c == NULL) return;
  for (int r = 0; r < c->n_ranks; r++) pf_plan_free(c->plans[r]);
  free(c->plans);
  for (int i = 0; i < c->n_inputs; i++) {
    free(c->inputs[i].name);
    free(c->inputs[i].shards);
  }
  for (int i = 0; i < c->n_outputs; i++) {
    free(c->outputs[i].name);
    free(c->outputs[i].shards);
  }
  free(c->inputs);
  free(c->outputs);
  free(c->peak);
  free(c->slice_devices);
  free(c->placed);
  free(c->stages);
  free(c);
}

/* The memory plan of rank r's plan: its devices' peaks into c->peak, each
 * checked against its device's memory. */
static int rank_memory(pf_compiled *c, const pf_cluster *cl, int r, int64_t *local, pf_diag *d) {
  int rc = pf_memory_plan(c->plans[r], local, d);
  for (int g = 0; g < cl->n_devices && rc == 0; g++)
    if (cl->devices[g].rank == r) c->peak[g] = local[cl->devices[g].local];
  for (int g = 0; g < cl->n_devices && rc == 0; g++)
    if (cl->devices[g].rank == r && cl->devices[g].memory > 0 &&
        c->peak[g] > cl->devices[g].memory)
      rc = pf_diag_error(d, PF_EMEMORY,
                         "device %d (rank %d, local device %d) needs %lld bytes at its peak; "
                         "its memory is %lld bytes%s%s",
                         g, (int)cl->devices[g].rank, (int)cl->devices[g].local,
                         (long long)c->peak[g], (long long)cl->devices[g].memory,
                         cl->memory_origin ? ": " : "",
                         cl->memory_origin ? cl->memory_origin : "");
  return rc;
}

/* Every rank's memory plan but `later`'s (-1: every rank's). */
static int plan_memory(pf_compiled *c, const pf_cluster *cl, int later, pf_diag *d) {
  int64_t *local = pf_calloc((size_t)cl->n_devices, sizeof *local);
  int rc = 0;
  c->n_devices = cl->n_devices;
  c->peak = pf_calloc((size_t)cl->n_devices, sizeof *c->peak);
  if (local == NULL || c->peak == NULL) {
    free(local);
    return pf_diag_error(d, PF_ENOMEM, "memory plan: out of memory");
  }
  for (int r = 0; r < c->n_ranks && rc == 0; r++)
    if (r != later) rc = rank_memory(c, cl, r, local, d);
  free(local);
  return rc;
}

int pf_schedule_memory(pf_compiled *c, const pf_cluster *cl, int rank, pf_diag *d) {
  int64_t *local;
  int rc;
  if (rank < 0 || rank >= c->n_ranks) return 0;
  if ((local = pf_calloc((size_t)cl->n_devices, sizeof *local)) == NULL)
    return pf_diag_error(d, PF_ENOMEM, "memory plan: out of memory");
  rc = rank_memory(c, cl, rank, local, d);
  free(local);
  return rc;
}

/* Where each slice went, for inspection (pathflow plan) and tests. */
static int record_placement(const lowering *L, pf_compiled *c) {
  size_t total = 0;
  for (size_t s = 0; s < L->g->n_slices; s++) total += (size_t)L->g->slices[s].num_devices;
  c->n_slices = (int)L->g->n_slices;
  c->slice_devices = pf_mallocn(L->g->n_slices, sizeof *c->slice_devices);
  c->placed = pf_mallocn(total, sizeof *c->placed);
  if (c->slice_devices == NULL || c->placed == NULL) return PF_ENOMEM;
  total = 0;
  for (size_t s = 0; s < L->g->n_slices; s++) {
    c->slice_devices[s] = (int32_t)total;
    for (int i = 0; i < L->g->slices[s].num_devices; i++) c->placed[total++] = L->slice_devices[s][i];
  }
  return 0;
}

static void add_stage(pf_compiled *c, uint8_t *seen, int32_t rank) {
  if (seen[rank] || (c->plans[rank]->n_ops == 0 && c->plans[rank]->n_buffers == 0)) return;
  seen[rank] = 1;
  c->stages[c->n_stages++] = rank;
}

/* Ranks in the order they first act: holders of inputs, then the ranks of
 * each program in gang order. Sequential dispatch runs them in this order,
 * so data must only flow forward along it. */
static int order_stages(const lowering *L, pf_compiled *c, const int32_t *order, pf_diag *d) {
  const pf_graph *g = L->g;
  uint8_t *seen = pf_calloc((size_t)c->n_ranks, 1);
  int32_t *pos = pf_mallocn((size_t)c->n_ranks, sizeof *pos);
  int rc = 0;
  c->stages = pf_mallocn((size_t)c->n_ranks, sizeof *c->stages);
  if (seen == NULL || pos == NULL || c->stages == NULL) {
    free(seen);
    free(pos);
    return pf_diag_error(d, PF_ENOMEM, "compile: out of memory");
  }
  for (int i = 0; i < c->n_inputs; i++)
    for (int s = 0; s < c->inputs[i].num_shards; s++) add_stage(c, seen, c->inputs[i].shards[s].rank);
  for (size_t k = 0; k < g->n_programs; k++) {
    const pf_gprogram *p = &g->programs[order[k]];
    for (int s = 0; s < g->slices[p->slice].num_devices; s++)
      add_stage(c, seen, dev(L, L->slice_devices[p->slice][s])->rank);
  }
  for (int r = 0; r < c->n_ranks; r++) add_stage(c, seen, r);
  for (int k = 0; k < c->n_stages; k++) pos[c->stages[k]] = k;
  c->dispatch = g->dispatch;
  for (int r = 0; g->dispatch == PF_DISPATCH_SEQUENTIAL && r < c->n_ranks && rc == 0; r++) {
    const pf_plan *p = c->plans[r];
    for (uint32_t i = 0; i < p->n_ops && rc == 0; i++) {
      const pf_plan_op *op = &p->ops[i];
      if (op->kind == PF_OP_SEND && pos[op->peer] <= pos[r])
        rc = pf_diag_error(d, PF_ENOTSUP,
                           "sequential dispatch: program \"%s\" sends data from rank %d back "
                           "to rank %d, which acts earlier; use parallel dispatch",
                           op->name, r, (int)op->peer);
      if (op->kind == PF_OP_COLLECTIVE && op->comm >= 0)
        rc = pf_diag_error(d, PF_ENOTSUP,
                           "sequential dispatch: collective \"%s\" spans ranks; use parallel "
                           "dispatch",
                           op->name);
    }
  }
  free(seen);
  free(pos);
  return rc;
}

/* Sizes each rank's plan before lowering, so that its op and buffer
 * arrays are not copied again and again as they double, nor reserved far
 * beyond what lowering puts there: the arrays are carved from huge pages
 * that the arena's next chunk writes into, so what is reserved is memory
 * (a reserve of one op and one buffer per input, twice what a million-
 * program stencil needs, was 270 MiB of its 920). Per shard of a program:
 * its op and its outputs on its rank; per input of another slice whose
 * shard lies on another device that does not share this one's memory, a
 * receive (an op and a buffer) here and a send on the producer's rank, or
 * a copy when that is this rank. An estimate, with an eighth more for the
 * resharding and staging it does not foresee: lowering grows a plan it
 * overruns. A large graph also reserves its plans' lists and names and the
 * layouts, counted low (inputs standing for the ops' dependencies, a
 * program's name once per shard), and a warmer backs all of it as counted
 * (not the slack) while the programs are lowered. */
static int reserve_plans(lowering *L) {
  const pf_graph *g = L->g;
  size_t n_ranks = (size_t)L->cl->n_ranks, layouts = 0, n_next = 0;
  size_t *n = pf_calloc(3 * n_ranks, sizeof *n); /* per rank: ops, buffers, list bytes */
  pf_warm_range *next = NULL;
  int rc = 0;
  if (n == NULL) return PF_ENOMEM;
  for (size_t k = 0; k < g->n_programs; k++) {
    const pf_gprogram *p = &g->programs[k];
    size_t name = pf_arena_size(strlen(p->name) + 1);
    for (int s = 0; s < g->slices[p->slice].num_devices; s++) {
      int32_t d = L->slice_devices[p->slice][s], r = dev(L, d)->rank;
      n[3 * r] += 1;
      n[3 * r + 1] += (size_t)p->n_out;
      n[3 * r + 2] += pf_arena_size(4 * (2 * (size_t)p->n_in + (size_t)p->n_out)) + name;
      for (int i = 0; i < p->n_in; i++) {
        int32_t vs = g->values[p->in[i]].slice, src;
        if (vs == p->slice) continue;
        src = L->slice_devices[vs][s % g->slices[vs].num_devices];
        if (src == d || shares_memory(L, src, d)) continue;
        n[3 * r] += 1;
        n[3 * r + 1] += 1;
        n[3 * r + 2] += pf_arena_size(4 * 3);
        if (dev(L, src)->rank != r) {
          n[3 * dev(L, src)->rank] += 1;
          n[3 * dev(L, src)->rank + 2] += pf_arena_size(4 * 2);
        }
      }
    }
  }
  for (size_t v = 0; v < g->n_values; v++)
    layouts += pf_arena_size(sizeof(layout) +
                             (size_t)g->slices[g->values[v].slice].num_devices * sizeof(home));
  for (size_t r = 0; r < n_ranks && rc == 0; r++)
    rc = pf_pb_reserve(L->pb[r], n[3 * r] + n[3 * r] / 8 + 16, n[3 * r + 1] + n[3 * r + 1] / 8 + 16);
  /* Backing all this with memory is half of a large schedule on a virtual
   * machine: a warmer does it on another core. A small graph reserves no
   * lists, and a rank's few lists stay in its pool's ordinary chunks. */
  if (rc == 0 && (next = pf_mallocn(3 * n_ranks + 1, sizeof *next)) != NULL) {
    size_t total = layouts;
    for (size_t r = 0; r < n_ranks; r++) total += n[3 * r + 2];
    for (size_t r = 0; r < n_ranks; r++, n_next += 2)
      pf_pb_next_records(L->pb[r], n[3 * r], n[3 * r + 1], &next[n_next]);
    for (size_t r = 0; total >= PF_WARM_MIN && r < n_ranks; r++)
      if (n[3 * r + 2] >= 4096 && pf_pb_reserve_lists(L->pb[r], n[3 * r + 2], &next[n_next]) == 0)
        n_next++;
    if (total >= PF_WARM_MIN && pf_arena_reserve(&L->mem, layouts, &next[n_next].p) == 0)
      next[n_next++].n = layouts;
    L->warmer = pf_warmer_start(next, n_next);
  }
  free(next);
  free(n);
  return rc;
}


int pf_schedule(const pf_graph *g, const pf_cluster *cl, uint64_t exe_id,
                pf_compiled **out, pf_diag *d) {
  return pf_schedule_split(g, cl, exe_id, -1, out, d);
}

int pf_schedule_split(const pf_graph *g, const pf_cluster *cl, uint64_t exe_id, int later,
                      pf_compiled **out, pf_diag *d) {
  lowering L;
  pf_compiled *c = NULL;
  int32_t *order = NULL;
  int rc;
  *out = NULL;
  memset(&L, 0, sizeof L);
  L.g = g;
  L.cl = cl;
  L.d = d;
  L.slice_devices = pf_calloc(g->n_slices, sizeof *L.slice_devices);
  L.pb = pf_calloc((size_t)cl->n_ranks, sizeof *L.pb);
  L.layouts = pf_calloc(g->n_values, sizeof *L.layouts);
  L.rank_slot = pf_mallocn((size_t)cl->n_ranks + 1, sizeof *L.rank_slot);
  order = pf_mallocn(g->n_programs, sizeof *order);
  c = calloc(1, sizeof *c);
  rc = PF_ENOMEM;
  if (!L.slice_devices || !L.pb || !L.layouts || !L.rank_slot || !order || !c) goto done;
  /* Devices per rank, counted once (rank_slot is then reset to -1). */
  memset(L.rank_slot, 0, ((size_t)cl->n_ranks + 1) * sizeof *L.rank_slot);
  for (int i = 0; i < cl->n_devices; i++) L.rank_slot[cl->devices[i].rank]++;
  for (int r = 0; r < cl->n_ranks; r++)
    if (pf_pb_create(r, L.rank_slot[r], exe_id, &L.pb[r])) goto done;
  for (int r = 0; r < cl->n_ranks; r++) L.rank_slot[r] = -1;
  /* Devices of their own memory: the plan keeps the host off it. */
  for (int i = 0; i < cl->n_devices; i++) L.staged |= cl->devices[i].own_memory != 0;
  if (L.staged) {
    if ((L.rank_first = pf_mallocn((size_t)cl->n_ranks, sizeof *L.rank_first)) == NULL ||
        pf_stage_memo_init(&L.memo, cl->n_ranks) != 0)
      goto done;
    for (int i = cl->n_devices - 1; i >= 0; i--) L.rank_first[cl->devices[i].rank] = i;
  }
  if ((rc = pf_graph_check_order(g, order, d)) != 0) goto done;
  if ((rc = place(&L)) != 0) goto done;
  if ((rc = reserve_plans(&L)) != 0) goto done;
  rc = PF_ENOMEM;
  for (size_t i = 0; i < g->n_inputs; i++) {
    int32_t v = g->inputs[i].value;
    layout *lay = layout_new(&L, v, g->values[v].slice, g->values[v].sharding);
    if (lay == NULL || new_shard_buffers(&L, lay, g->values[v].spec)) goto done;
  }
  for (size_t k = 0; k < g->n_programs; k++)
    if ((rc = lower_program(&L, order[k])) != 0) goto done;
  rc = PF_ENOMEM;
  c->n_inputs = (int)g->n_inputs;
  c->n_outputs = (int)g->n_outputs;
  c->inputs = pf_calloc(g->n_inputs, sizeof *c->inputs);
  c->outputs = pf_calloc(g->n_outputs, sizeof *c->outputs);
  c->plans = pf_calloc((size_t)cl->n_ranks, sizeof *c->plans);
  if (!c->inputs || !c->outputs || !c->plans) goto done;
  for (size_t i = 0; i < g->n_inputs; i++)
    if (fill_io(&L, &c->inputs[i], &g->inputs[i], 0, (int)i)) goto done;
  for (size_t i = 0; i < g->n_outputs; i++)
    if (fill_io(&L, &c->outputs[i], &g->outputs[i], 1, (int)i)) goto done;
  c->n_ranks = cl->n_ranks;
  c->n_transfers = L.n_transfers;
  for (int r = 0; r < cl->n_ranks; r++) {
    c->plans[r] = pf_pb_take(L.pb[r]);
    c->plans[r]->num_inputs = (int32_t)g->n_inputs;
    c->plans[r]->num_outputs = (int32_t)g->n_outputs;
  }
  if ((rc = plan_memory(c, cl, later, d)) != 0) goto done;
  if (record_placement(&L, c) != 0) {
    rc = PF_ENOMEM;
    goto done;
  }
  if ((rc = order_stages(&L, c, order, d)) != 0) goto done;
  rc = 0;
done:
  if (rc == PF_ENOMEM && d->code == 0) pf_diag_error(d, rc, "compile: out of memory");
  pf_warmer_stop(L.warmer); /* before any plan is freed */
  pf_arena_free(&L.mem);
  for (size_t s = 0; L.slice_devices && s < g->n_slices; s++) free(L.slice_devices[s]);
  for (size_t i = 0; i < L.n_comms; i++) {
    free(L.comms[i].ranks);
    free(L.comms[i].devices);
  }
  free(L.comms);
  for (int r = 0; L.pb && r < cl->n_ranks; r++) pf_pb_destroy(L.pb[r]);
  free(L.slice_devices);
  free(L.pb);
  free(L.layouts);
  free(L.rank_slot);
  free(L.rank_first);
  pf_stage_memo_free(&L.memo);
  free(order);
  if (rc != 0) {
    pf_compiled_free(c);
    return rc;
  }
  *out = c;
  return 0;
}
