#include "sim/net.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/util.h"

#define MAX_PATH 4

enum { FLOW_FREE, FLOW_LATENT, FLOW_ACTIVE };

/* A flow (or bundle) on a link, and which of the flow's links this is, so
 * that moving the entry within the link updates the flow in O(1). */
typedef struct link_entry {
  int32_t flow, slot;
} link_entry;

struct shape_part;

typedef struct link {
  double capacity;  /* bytes/s */
  double left;      /* progressive filling: capacity not yet given out */
  link_entry *flows; /* active flows and bundles on the link */
  int32_t n, cap;
  int64_t weight;   /* flows on the link: a bundle counts its members crossing it */
  int64_t unfrozen; /* progressive filling: weight without a rate yet */
  uint32_t mark;    /* == net->epoch: in this recomputation's component */
  uint32_t version; /* progressive filling: invalidates older heap entries */
  struct shape_part *owner; /* the first shape part over the link, or NULL */
  uint8_t cls;
  uint8_t dirty;
} link;

/* One bundle of a shape (pf_simnet_shape): the flows of one kind of path.
 * Its links, slots and weights (ext) serve each of its sends in turn. It
 * is exclusive when no other shape part crosses its links; then, sent when
 * none of its links carries anything (busy == 0), it runs "virtual": rated
 * at its bound without entering its links, so a ring step alone on its
 * links costs O(1), not O(links). Anything that enters one of its links
 * while it runs puts it there first (materialize). */
typedef struct shape_part {
  int32_t *ext;     /* links, slots, weights: 3 x nlinks */
  int32_t nlinks;
  int32_t busy;     /* its links that carry a flow or bundle */
  int32_t entity;   /* the flow id of its send in flight, or -1 */
  uint64_t members;
  pf_simtime lat;
  double bound;     /* min capacity / weight over its links */
  uint8_t classes, exclusive, kind;
} shape_part;

struct pf_simnet_shape {
  shape_part parts[PF_SIMNET_CLASS_COUNT];
  int n_parts;
  size_t n;
  uint8_t *part_of; /* per member: its part */
};

/* A flow, or a bundle of flows that move as one (pf_simnet_shape_send):
 * a bundle's remaining bytes and rate are those of each of its members, and
 * its links carry weights, the number of its members crossing each. */
typedef struct flow {
  double remaining; /* bytes, as of `last` (a bundle: its largest member's) */
  double rate;      /* bytes/s; 0 until the flow is active and rated */
  double bound;     /* the rate its links give it alone: min capacity / weight */
  pf_simtime last;  /* when remaining was last brought up to date */
  pf_simtime entered; /* when it entered its links */
  pf_simtime due;   /* the flow's next event: entering, then completing */
  uint64_t seq;     /* order of sending: breaks ties between events */
  uint64_t bytes;   /* in all (a bundle: summed over its members) */
  uint64_t members; /* 1, or a bundle's flows */
  int32_t *ext;     /* a bundle's links, slots and weights (its part's); NULL for a flow */
  shape_part *part; /* a bundle's shape part, or NULL */
  int32_t links[MAX_PATH];
  int32_t pos[MAX_PATH]; /* index of this flow in each link's flows */
  int32_t nlinks;
  int32_t heap;          /* index in the event heap, -1 if not there */
  uint32_t mark;
  uint8_t state, frozen, classes; /* classes: bit per pf_simnet_class crossed */
  uint8_t virt;     /* an active bundle rated at its bound, not entered in its links */
  pf_simnet_done cb;
  void *arg;
  uint64_t tag;
} flow;

static int32_t *flow_links(flow *f) { return f->ext ? f->ext : f->links; }
static int32_t *flow_pos(flow *f) { return f->ext ? f->ext + f->nlinks : f->pos; }
static int32_t flow_weight(const flow *f, int32_t j) { return f->ext ? f->ext[2 * f->nlinks + j] : 1; }

/* An entry of the event heap: the key is held here, not looked up in the
 * flow, so that sifting reads one array. */
typedef struct heap_entry {
  pf_simtime due;
  uint64_t seq;
  int32_t id;
} heap_entry;

/* Progressive filling's queue: a shared link at its fair share (key >= 0),
 * or a flow at the rate its links give it alone (key = -1 - flow id). */
typedef struct fill_entry {
  double share;
  int32_t key;
  uint32_t version;
} fill_entry;

/* Where a device is, for routing without searching the cluster's groups. */
typedef struct dev_place {
  int32_t host, island, nic; /* nic: host * nics + local % nics */
} dev_place;

/* Flows waiting out their latency, in (due, seq) order: flows sent one
 * after another with the same latency enter in the order they were sent,
 * so a queue per kind of path holds them for O(1) each instead of a heap
 * push and pop; a flow that would enter before its queue's last (sent for
 * a later start first) goes to the heap. */
typedef struct fifo {
  heap_entry *a;
  size_t head, n, cap;
} fifo;

#define N_FIFOS (PF_SIMNET_CLASS_COUNT + 1) /* a kind of path each, and a device to itself */

struct pf_simnet {
  const pf_sim_cluster *cl;
  pf_simtime now;
  dev_place *place;
  fifo latent[N_FIFOS];
  link *links;
  int64_t n_links;
  int64_t nic_base, dcn_base, isl_base; /* first link of each kind */
  int64_t nics; /* NICs a host that some device uses */
  flow *flows;
  size_t n_flows, cap_flows;
  int32_t *free_ids;
  size_t n_free, cap_free;
  heap_entry *heap; /* event heap, by (due, seq): completions, and entries the queues cannot take */
  size_t n_heap, cap_heap;
  uint64_t seq;
  uint32_t epoch;
  /* Scratch of a recomputation. */
  int32_t *dirty;
  size_t n_dirty, cap_dirty;
  int32_t *comp_links, *comp_flows;
  size_t n_cl, cap_cl, n_cf, cap_cf;
  fill_entry *fill;
  size_t n_fill, cap_fill;
  int32_t *done;
  size_t n_done, cap_done;
  /* Scratch of pf_simnet_shape_create: members per link, links touched. */
  int32_t *wcount;
  int32_t *touched;
  size_t n_touched, cap_touched;
  pf_simnet_stats stats;
  pf_simnet_observer observer;
  void *observer_arg;
  uint64_t in_flight;
  int running; /* inside pf_simnet_run: a callback may not run it again */
};

/* a + b for b >= 0, saturating: a tiny bandwidth in a hostile file must not
 * overflow the clock (the run then just ends at the end of time). */
static pf_simtime time_add(pf_simtime a, pf_simtime b) { return a > PF_SIMTIME_MAX - b ? PF_SIMTIME_MAX : a + b; }

/* ---- the event heap ------------------------------------------------------ */

/* 4-ary: half the depth of a binary heap, and a node's children share a
 * cache line or two, which pays off where most operations are pops. */
#define ARITY 4

static int before(const heap_entry *a, const heap_entry *b) {
  return a->due < b->due || (a->due == b->due && a->seq < b->seq);
}

static void heap_set(pf_simnet *net, size_t i, heap_entry e) {
  net->heap[i] = e;
  net->flows[e.id].heap = (int32_t)i;
}

static void heap_up(pf_simnet *net, size_t i) {
  heap_entry e = net->heap[i];
  while (i > 0) {
    size_t p = (i - 1) / ARITY;
    if (!before(&e, &net->heap[p])) break;
    heap_set(net, i, net->heap[p]);
    i = p;
  }
  heap_set(net, i, e);
}

static void heap_down(pf_simnet *net, size_t i) {
  heap_entry e = net->heap[i];
  for (;;) {
    size_t first = ARITY * i + 1, c = first, end = first + ARITY;
    if (first >= net->n_heap) break;
    if (end > net->n_heap) end = net->n_heap;
    for (size_t k = first + 1; k < end; k++)
      if (before(&net->heap[k], &net->heap[c])) c = k;
    if (!before(&net->heap[c], &e)) break;
    heap_set(net, i, net->heap[c]);
    i = c;
  }
  heap_set(net, i, e);
}

/* Queues flow id at its due time; the caller has made room. */
static void heap_push_room(pf_simnet *net, int32_t id) {
  const flow *f = &net->flows[id];
  net->heap[net->n_heap++] = (heap_entry){f->due, f->seq, id};
  heap_up(net, net->n_heap - 1);
}

static int heap_reserve(pf_simnet *net) {
  if (net->n_heap == net->cap_heap &&
      pf_grow((void **)&net->heap, &net->cap_heap, net->n_heap + 1, sizeof *net->heap) != 0)
    return PF_ENOMEM;
  return 0;
}

static int heap_push(pf_simnet *net, int32_t id) {
  if (heap_reserve(net) != 0) return PF_ENOMEM;
  heap_push_room(net, id);
  return 0;
}

static int32_t heap_pop(pf_simnet *net) {
  int32_t top = net->heap[0].id;
  net->flows[top].heap = -1;
  if (--net->n_heap > 0) {
    heap_set(net, 0, net->heap[net->n_heap]);
    heap_down(net, 0);
  }
  return top;
}

/* After flow id's due time changed. */
static void heap_fix(pf_simnet *net, int32_t id) {
  size_t i = (size_t)net->flows[id].heap;
  pf_simtime old = net->heap[i].due;
  net->heap[i].due = net->flows[id].due;
  if (net->heap[i].due < old) heap_up(net, i);
  else heap_down(net, i);
}

/* ---- the links of a cluster ----------------------------------------------- */

int pf_simnet_create(const pf_sim_cluster *cl, pf_simnet **out) {
  pf_simnet *net = calloc(1, sizeof *net);
  if (net == NULL) return PF_ENOMEM;
  net->cl = cl;
  net->nic_base = 2 * cl->devices;
  /* Device i of a host uses NIC i mod count: NICs beyond the largest host's
   * device count carry nothing and get no link. */
  net->nics = PF_MINOF(cl->nics_per_host, cl->max_devices_per_host);
  net->dcn_base = net->nic_base + 2 * cl->hosts * net->nics;
  net->isl_base = net->dcn_base + (cl->islands > 1 ? 2 * cl->hosts : 0);
  net->n_links = net->isl_base + (cl->islands > 1 && cl->dcn_island_bandwidth > 0 ? 2 * cl->islands : 0);
  if (net->n_links > INT32_MAX) { /* link ids are int32 */
    free(net);
    return PF_ERANGE;
  }
  if ((net->links = pf_calloc((size_t)net->n_links, sizeof *net->links)) == NULL) {
    free(net);
    return PF_ENOMEM;
  }
  if ((net->place = pf_mallocn((size_t)cl->devices, sizeof *net->place)) == NULL) {
    free(net->links);
    free(net);
    return PF_ENOMEM;
  }
  for (int64_t d = 0; d < cl->devices; d++) {
    pf_sim_place p;
    pf_sim_cluster_locate(cl, d, &p);
    net->place[d] = (dev_place){(int32_t)p.host, p.island, (int32_t)(p.host * net->nics + p.local % net->nics)};
  }
  for (int64_t i = 0; i < net->n_links; i++) {
    link *l = &net->links[i];
    if (i < net->nic_base) { l->capacity = cl->intra_host.bandwidth; l->cls = PF_SIMNET_INTRA_HOST; }
    else if (i < net->dcn_base) { l->capacity = cl->nic.bandwidth; l->cls = PF_SIMNET_NIC; }
    else if (i < net->isl_base) { l->capacity = cl->dcn.bandwidth; l->cls = PF_SIMNET_DCN; }
    else { l->capacity = cl->dcn_island_bandwidth; l->cls = PF_SIMNET_DCN; }
  }
  *out = net;
  return 0;
}

void pf_simnet_destroy(pf_simnet *net) {
  if (net == NULL) return;
  for (int64_t i = 0; i < net->n_links; i++) free(net->links[i].flows);
  free(net->links);
  free(net->place);
  for (int q = 0; q < N_FIFOS; q++) free(net->latent[q].a);
  free(net->flows);
  free(net->free_ids);
  free(net->heap);
  free(net->dirty);
  free(net->comp_links);
  free(net->comp_flows);
  free(net->fill);
  free(net->done);
  free(net->wcount);
  free(net->touched);
  free(net);
}

/* The links between two devices, the latency of the path and its kind:
 * the class of all its links (-1 for a device to itself: no link). */
static int route(const pf_simnet *net, int64_t src, int64_t dst, int32_t *links, int32_t *n, pf_simtime *lat,
                 int *kind) {
  const pf_sim_cluster *cl = net->cl;
  if (src < 0 || src >= cl->devices || dst < 0 || dst >= cl->devices) return PF_ERANGE;
  const dev_place a = net->place[src], b = net->place[dst];
  *n = 0;
  if (src == dst) {
    *lat = 0;
    *kind = -1;
  } else if (a.host == b.host) {
    links[(*n)++] = (int32_t)(2 * src);
    links[(*n)++] = (int32_t)(2 * dst + 1);
    *lat = cl->intra_host.latency_ns;
    *kind = PF_SIMNET_INTRA_HOST;
  } else if (a.island == b.island) {
    links[(*n)++] = (int32_t)(net->nic_base + 2 * (int64_t)a.nic);
    links[(*n)++] = (int32_t)(net->nic_base + 2 * (int64_t)b.nic + 1);
    *lat = cl->nic.latency_ns;
    *kind = PF_SIMNET_NIC;
  } else {
    links[(*n)++] = (int32_t)(net->dcn_base + 2 * (int64_t)a.host);
    if (net->isl_base < net->n_links) {
      links[(*n)++] = (int32_t)(net->isl_base + 2 * (int64_t)a.island);
      links[(*n)++] = (int32_t)(net->isl_base + 2 * (int64_t)b.island + 1);
    }
    links[(*n)++] = (int32_t)(net->dcn_base + 2 * (int64_t)b.host + 1);
    *lat = cl->dcn.latency_ns;
    *kind = PF_SIMNET_DCN;
  }
  return 0;
}

int pf_simnet_path(const pf_simnet *net, int64_t src, int64_t dst, pf_simtime *latency, double *bandwidth) {
  int32_t links[MAX_PATH], n;
  int kind;
  int rc = route(net, src, dst, links, &n, latency, &kind);
  if (rc != 0) return rc;
  *bandwidth = INFINITY;
  for (int i = 0; i < n; i++)
    if (net->links[links[i]].capacity < *bandwidth) *bandwidth = net->links[links[i]].capacity;
  return 0;
}

/* ---- flows ------------------------------------------------------------------ */

static int push_i32(int32_t **a, size_t *n, size_t *cap, int32_t v) {
  if (*n == *cap && pf_grow((void **)a, cap, *n + 1, sizeof **a) != 0) return PF_ENOMEM;
  (*a)[(*n)++] = v;
  return 0;
}

/* A free flow slot, zeroed, with room for it in the event heap; -1 when out
 * of memory. */
static int32_t flow_new(pf_simnet *net) {
  int32_t id;
  if (heap_reserve(net) != 0) return -1;
  if (net->n_free > 0) {
    id = net->free_ids[--net->n_free];
  } else {
    if (net->n_flows >= INT32_MAX) return -1;
    if (net->n_flows == net->cap_flows &&
        pf_grow((void **)&net->flows, &net->cap_flows, net->n_flows + 1, sizeof *net->flows) != 0)
      return -1;
    id = (int32_t)net->n_flows++;
  }
  memset(&net->flows[id], 0, sizeof net->flows[id]);
  net->flows[id].heap = -1;
  return id;
}

/* Queues flow id to enter at its due time: on the queue of its kind of
 * path (-1: a device to itself) when it goes last there, else on the heap
 * (room was made by flow_new). */
static void latent_push(pf_simnet *net, int32_t id, int kind) {
  const flow *f = &net->flows[id];
  fifo *q = &net->latent[kind < 0 ? PF_SIMNET_CLASS_COUNT : kind];
  if (q->n > q->head && q->a[q->n - 1].due > f->due) {
    heap_push_room(net, id);
    return;
  }
  if (q->n == q->cap && q->head > 0) { /* slide down rather than grow */
    memmove(q->a, q->a + q->head, (q->n - q->head) * sizeof *q->a);
    q->n -= q->head;
    q->head = 0;
  }
  if (q->n == q->cap && pf_grow((void **)&q->a, &q->cap, q->n + 1, sizeof *q->a) != 0) {
    heap_push_room(net, id);
    return;
  }
  q->a[q->n++] = (heap_entry){f->due, f->seq, id};
}

/* The earliest event, from the heap or a queue (*from: -1 or the queue);
 * 0 when there is none. */
static int next_event(const pf_simnet *net, heap_entry *e, int *from) {
  int found = 0;
  if (net->n_heap > 0) {
    *e = net->heap[0];
    *from = -1;
    found = 1;
  }
  for (int k = 0; k < N_FIFOS; k++) {
    const fifo *q = &net->latent[k];
    if (q->head == q->n || (found && !before(&q->a[q->head], e))) continue;
    *e = q->a[q->head];
    *from = k;
    found = 1;
  }
  return found;
}

/* Queues a filled-in flow to enter the network at `due`. */
static void flow_queue(pf_simnet *net, int32_t id, pf_simtime due, int kind) {
  flow *f = &net->flows[id];
  f->state = FLOW_LATENT;
  f->due = due;
  f->seq = net->seq++;
  f->bound = INFINITY;
  if (f->part) { /* worked out once for the shape */
    f->bound = f->part->bound;
    f->classes = f->part->classes;
  }
  for (int32_t j = 0; !f->part && j < f->nlinks; j++) {
    const link *l = &net->links[flow_links(f)[j]];
    double b = l->capacity / flow_weight(f, j);
    if (b < f->bound) f->bound = b;
    f->classes |= (uint8_t)(1u << l->cls);
  }
  latent_push(net, id, kind);
  net->stats.flows_sent += f->members;
  if (++net->in_flight > net->stats.peak_flows) net->stats.peak_flows = net->in_flight;
}

int pf_simnet_send(pf_simnet *net, int64_t src, int64_t dst, uint64_t bytes, pf_simtime start,
                   pf_simnet_done cb, void *arg, uint64_t tag) {
  int32_t links[MAX_PATH], n, id;
  pf_simtime lat;
  int rc, kind;
  if (start < net->now) return PF_EINVAL;
  if ((rc = route(net, src, dst, links, &n, &lat, &kind)) != 0) return rc;
  if ((id = flow_new(net)) < 0) return PF_ENOMEM;
  flow *f = &net->flows[id];
  f->bytes = bytes;
  f->members = 1;
  f->remaining = (double)bytes;
  f->nlinks = n;
  memcpy(f->links, links, (size_t)n * sizeof *links);
  f->cb = cb;
  f->arg = arg;
  f->tag = tag;
  flow_queue(net, id, time_add(start, lat), kind);
  return 0;
}

int pf_simnet_shape_create(pf_simnet *net, const int64_t *src, const int64_t *dst, size_t n,
                           pf_simnet_shape **out) {
  int32_t links[MAX_PATH], nl, n_links[PF_SIMNET_CLASS_COUNT] = {0}, part_of_kind[PF_SIMNET_CLASS_COUNT];
  pf_simtime lat;
  int kind, rc = 0;
  pf_simnet_shape *sh;
  /* Every member routed before anything is made: nothing to undo on error. */
  for (size_t k = 0; k < n; k++) {
    if ((rc = route(net, src[k], dst[k], links, &nl, &lat, &kind)) != 0) return rc;
    if (kind < 0) return PF_EINVAL;
  }
  if (net->wcount == NULL && (net->wcount = pf_calloc((size_t)net->n_links, sizeof *net->wcount)) == NULL)
    return PF_ENOMEM;
  if ((sh = calloc(1, sizeof *sh)) == NULL || (sh->part_of = pf_mallocn(n ? n : 1, 1)) == NULL) {
    free(sh);
    return PF_ENOMEM;
  }
  sh->n = n;
  net->n_touched = 0;
  for (int c = 0; c < PF_SIMNET_CLASS_COUNT; c++) part_of_kind[c] = -1;
  for (size_t k = 0; k < n && rc == 0; k++) {
    route(net, src[k], dst[k], links, &nl, &lat, &kind);
    if (part_of_kind[kind] < 0) {
      part_of_kind[kind] = sh->n_parts;
      sh->parts[sh->n_parts++] =
          (shape_part){.lat = lat, .entity = -1, .exclusive = 1, .bound = INFINITY, .kind = (uint8_t)kind};
    }
    sh->part_of[k] = (uint8_t)part_of_kind[kind];
    sh->parts[part_of_kind[kind]].members++;
    for (int32_t j = 0; j < nl; j++) {
      if (net->wcount[links[j]] == 0) {
        if ((rc = push_i32(&net->touched, &net->n_touched, &net->cap_touched, links[j])) != 0) break;
        n_links[kind]++;
      }
      net->wcount[links[j]]++;
    }
  }
  /* A part's links are the touched links of its class (a link's class is
   * the kind of every path over it). */
  for (int c = 0; c < PF_SIMNET_CLASS_COUNT && rc == 0; c++) {
    if (part_of_kind[c] < 0) continue;
    shape_part *p = &sh->parts[part_of_kind[c]];
    int32_t m = 0;
    if ((p->ext = pf_mallocn((size_t)n_links[c], 3 * sizeof *p->ext)) == NULL) {
      rc = PF_ENOMEM;
      break;
    }
    p->nlinks = n_links[c];
    for (size_t i = 0; i < net->n_touched; i++) {
      int32_t l = net->touched[i];
      link *lk = &net->links[l];
      if (lk->cls != c) continue;
      p->ext[m] = l;
      p->ext[2 * p->nlinks + m] = net->wcount[l];
      m++;
      if (lk->capacity / net->wcount[l] < p->bound) p->bound = lk->capacity / net->wcount[l];
      p->classes |= (uint8_t)(1u << lk->cls);
      if (lk->n > 0) p->busy++;
      if (lk->owner == NULL) {
        lk->owner = p;
      } else { /* shared with another shape: both go through the links */
        lk->owner->exclusive = 0;
        p->exclusive = 0;
      }
    }
  }
  for (size_t i = 0; i < net->n_touched; i++) net->wcount[net->touched[i]] = 0;
  if (rc != 0) {
    pf_simnet_shape_destroy(net, sh);
    return rc;
  }
  *out = sh;
  return 0;
}

void pf_simnet_shape_destroy(pf_simnet *net, pf_simnet_shape *sh) {
  if (sh == NULL) return;
  for (int q = 0; q < sh->n_parts; q++) {
    shape_part *p = &sh->parts[q];
    for (int32_t j = 0; p->ext && j < p->nlinks; j++)
      if (net->links[p->ext[j]].owner == p) net->links[p->ext[j]].owner = NULL;
    free(p->ext);
  }
  free(sh->part_of);
  free(sh);
}

int pf_simnet_shape_send(pf_simnet *net, pf_simnet_shape *sh, const uint64_t *bytes, uint64_t each,
                         pf_simtime start, pf_simnet_done cb, void *arg, uint64_t tag, int *parts) {
  uint64_t largest[PF_SIMNET_CLASS_COUNT] = {0}, total[PF_SIMNET_CLASS_COUNT] = {0};
  *parts = 0;
  if (start < net->now) return PF_EINVAL;
  for (int q = 0; q < sh->n_parts; q++)
    if (sh->parts[q].entity >= 0) return PF_ESTATE;
  for (int q = 0; bytes == NULL && q < sh->n_parts; q++) {
    largest[q] = each;
    total[q] = each * sh->parts[q].members;
  }
  for (size_t k = 0; bytes && k < sh->n; k++) {
    int q = sh->part_of[k];
    total[q] += bytes[k];
    if (bytes[k] > largest[q]) largest[q] = bytes[k];
  }
  for (int q = 0; q < sh->n_parts; q++) {
    shape_part *p = &sh->parts[q];
    int32_t id = flow_new(net);
    if (id < 0) return PF_ENOMEM;
    flow *f = &net->flows[id];
    f->ext = p->ext;
    f->part = p;
    f->nlinks = p->nlinks;
    f->bytes = total[q];
    f->members = p->members;
    f->remaining = (double)largest[q];
    f->cb = cb;
    f->arg = arg;
    f->tag = tag;
    p->entity = id;
    flow_queue(net, id, time_add(start, p->lat), p->kind);
    (*parts)++;
  }
  return 0;
}

static int link_add(pf_simnet *net, int32_t id);

/* A virtual bundle enters its links (something else is about to share
 * one); the recomputation of this instant rates it with the rest. Its
 * remaining bytes are brought up to date there, at the rate it had. */
static int materialize(pf_simnet *net, int32_t id) {
  net->flows[id].virt = 0;
  return link_add(net, id);
}

static int mark_dirty(pf_simnet *net, int32_t l) {
  if (net->links[l].dirty) return 0;
  net->links[l].dirty = 1;
  return push_i32(&net->dirty, &net->n_dirty, &net->cap_dirty, l);
}

static int link_add(pf_simnet *net, int32_t id) {
  flow *f = &net->flows[id];
  int32_t *fl = flow_links(f), *pos = flow_pos(f);
  for (int32_t j = 0; j < f->nlinks; j++) {
    link *l = &net->links[fl[j]];
    shape_part *o = l->owner;
    if (o && o != f->part && o->entity >= 0 && net->flows[o->entity].virt) {
      int rc = materialize(net, o->entity);
      if (rc != 0) return rc;
      f = &net->flows[id]; /* (no flow is added: the pointers stay valid) */
    }
    if (l->n == 0 && o) o->busy++;
    if (l->n == l->cap) {
      size_t cap = (size_t)l->cap;
      if (pf_grow((void **)&l->flows, &cap, (size_t)l->n + 1, sizeof *l->flows) != 0) return PF_ENOMEM;
      l->cap = (int32_t)cap;
    }
    pos[j] = l->n;
    l->flows[l->n++] = (link_entry){id, j};
    l->weight += flow_weight(f, j);
    if (mark_dirty(net, fl[j]) != 0) return PF_ENOMEM;
  }
  return 0;
}

static int link_remove(pf_simnet *net, int32_t id) {
  flow *f = &net->flows[id];
  int32_t *fl = flow_links(f), *pos = flow_pos(f);
  for (int32_t j = 0; j < f->nlinks; j++) {
    link *l = &net->links[fl[j]];
    link_entry last = l->flows[--l->n];
    if (last.flow != id) { /* move the last entry of the link into the hole */
      l->flows[pos[j]] = last;
      flow_pos(&net->flows[last.flow])[last.slot] = pos[j];
    }
    l->weight -= flow_weight(f, j);
    if (l->n == 0 && l->owner) l->owner->busy--;
    /* A link left empty changes nobody's rate. */
    if (l->n > 0 && mark_dirty(net, fl[j]) != 0) return PF_ENOMEM;
  }
  return 0;
}

/* ---- max-min fair sharing ------------------------------------------------ */

static int fill_before(const fill_entry *a, const fill_entry *b) {
  return a->share < b->share || (a->share == b->share && a->key < b->key);
}

static int fill_add(pf_simnet *net, fill_entry e) {
  size_t i;
  if (net->n_fill == net->cap_fill &&
      pf_grow((void **)&net->fill, &net->cap_fill, net->n_fill + 1, sizeof *net->fill) != 0)
    return PF_ENOMEM;
  for (i = net->n_fill++; i > 0 && fill_before(&e, &net->fill[(i - 1) / 2]); i = (i - 1) / 2)
    net->fill[i] = net->fill[(i - 1) / 2];
  net->fill[i] = e;
  return 0;
}

/* Queues shared link l at its current fair share. An entry is exact while
 * the link's version is the entry's; taking flows out of a link only raises
 * its share (they leave at a rate no more than it), so an older entry is a
 * lower bound and is brought up to date when it reaches the top. */
static int fill_push(pf_simnet *net, int32_t l) {
  link *lk = &net->links[l];
  /* left only falls below a tiny fraction of the capacity by rounding. */
  double left = lk->left > lk->capacity * 1e-12 ? lk->left : lk->capacity * 1e-12;
  return fill_add(net, (fill_entry){left / (double)lk->unfrozen, l, lk->version});
}

static fill_entry fill_pop(pf_simnet *net) {
  fill_entry top = net->fill[0], e = net->fill[--net->n_fill];
  size_t i = 0;
  for (;;) {
    size_t c = 2 * i + 1;
    if (c >= net->n_fill) break;
    if (c + 1 < net->n_fill && fill_before(&net->fill[c + 1], &net->fill[c])) c++;
    if (!fill_before(&net->fill[c], &e)) break;
    net->fill[i] = net->fill[c];
    i = c;
  }
  if (net->n_fill > 0) net->fill[i] = e;
  return top;
}

/* Nanoseconds to move `bytes` at `rate`, rounded up; a hair of slack so that
 * a quotient that is an integer in exact arithmetic is not pushed to the
 * next nanosecond by rounding. */
static pf_simtime duration(double bytes, double rate) {
  if (bytes <= 0) return 0;
  double ns = bytes * 1e9 / rate;
  double c = ceil(ns - 1e-9 * (ns > 1 ? ns : 1));
  return c > 9.0e18 ? PF_SIMTIME_MAX : (pf_simtime)c;
}

/* Gives flow id its max-min rate and takes it out of its shared links'
 * filling. Links it has to itself are skipped: nothing reads their filling
 * state until a recomputation that finds them shared sets it afresh. */
static inline int freeze(pf_simnet *net, int32_t id, double rate) {
  flow *f = &net->flows[id];
  double old = f->rate;
  f->frozen = 1;
  f->rate = rate;
  if (f->ext == NULL) { /* a flow: weight 1 on each link */
    for (int32_t j = 0; j < f->nlinks; j++) {
      link *m = &net->links[f->links[j]];
      if (m->n < 2) continue;
      m->left -= rate;
      m->unfrozen--;
      m->version++;
    }
  } else {
    for (int32_t j = 0; j < f->nlinks; j++) {
      link *m = &net->links[f->ext[j]];
      if (m->n < 2) continue;
      int32_t w = f->ext[2 * f->nlinks + j];
      m->left -= rate * w;
      m->unfrozen -= w;
      m->version++;
    }
  }
  /* A flow keeps its completion time when its rate did not change, so
   * that rounding never moves a flow nobody disturbed. */
  if (f->rate != old || f->due < net->now) {
    f->due = time_add(net->now, duration(f->remaining, f->rate));
    if (f->heap < 0) return heap_push(net, id); /* entering now: out of the heap until rated */
    heap_fix(net, id);
  }
  return 0;
}

/* Rates of every flow that shares links, transitively, with a link whose
 * set of flows changed at this instant; then their completion times.
 * Weighted progressive filling: every unrated flow's rate rises together; a
 * shared link is full when its capacity left equals the rising rate times
 * the weight of its unrated flows (a bundle counts once per member crossing
 * it), and its flows are rated there; a flow whose own links fill first
 * (those it has to itself) is rated at their bound, queued once per flow
 * rather than once per link. */
static int recompute(pf_simnet *net) {
  pf_simtime now = net->now;
  uint32_t ep = ++net->epoch;
  net->n_cl = net->n_cf = 0;
  for (size_t i = 0; i < net->n_dirty; i++) {
    int32_t l = net->dirty[i];
    net->links[l].dirty = 0;
    if (net->links[l].mark != ep) {
      net->links[l].mark = ep;
      if (push_i32(&net->comp_links, &net->n_cl, &net->cap_cl, l) != 0) return PF_ENOMEM;
    }
  }
  net->n_dirty = 0;
  /* The component: links and flows reached from the dirty links. */
  for (size_t i = 0; i < net->n_cl; i++) {
    link *l = &net->links[net->comp_links[i]];
    for (int32_t k = 0; k < l->n; k++) {
      int32_t id = l->flows[k].flow;
      flow *f = &net->flows[id];
      if (f->mark == ep) continue;
      f->mark = ep;
      if (push_i32(&net->comp_flows, &net->n_cf, &net->cap_cf, id) != 0) return PF_ENOMEM;
      int32_t *fl = flow_links(f);
      for (int32_t j = 0; j < f->nlinks; j++) {
        link *m = &net->links[fl[j]];
        if (m->mark == ep) continue;
        m->mark = ep;
        if (push_i32(&net->comp_links, &net->n_cl, &net->cap_cl, fl[j]) != 0) return PF_ENOMEM;
      }
    }
  }
  if (net->n_cf == 0) return 0;
  net->stats.recomputes++;
  net->stats.flows_rerated += net->n_cf;
  net->n_fill = 0;
  /* Bring every flow's remaining bytes up to now, at its old rate. */
  for (size_t i = 0; i < net->n_cf; i++) {
    int32_t id = net->comp_flows[i];
    flow *f = &net->flows[id];
    if (f->rate > 0) f->remaining -= f->rate * (double)(now - f->last) * 1e-9;
    if (f->remaining < 0) f->remaining = 0;
    f->last = now;
    f->frozen = 0;
  }
  /* A flow with no shared link is rated at its bound at once (most are:
   * a step's flows entering side by side); rating it first changes nobody's
   * filling, as freeze skips unshared links. A flow with both kinds queues
   * at its bound, which stands for its unshared links (on a shared link the
   * share reached is never above capacity / weight, so the bound over all
   * its links is the bound over its unshared ones wherever it matters). A
   * flow with only shared links is rated by them. */
  for (size_t i = 0; i < net->n_cf; i++) {
    int32_t id = net->comp_flows[i];
    flow *f = &net->flows[id];
    const int32_t *fl = flow_links(f);
    int32_t shared = 0;
    for (int32_t j = 0; j < f->nlinks; j++) shared += net->links[fl[j]].n > 1;
    if (shared == 0) {
      if (freeze(net, id, f->bound) != 0) return PF_ENOMEM;
    } else if (shared < f->nlinks && fill_add(net, (fill_entry){f->bound, -1 - id, 0}) != 0) {
      return PF_ENOMEM;
    }
  }
  for (size_t i = 0; i < net->n_cl; i++) {
    link *l = &net->links[net->comp_links[i]];
    if (l->n < 2) continue;
    l->left = l->capacity;
    l->unfrozen = l->weight;
    if (fill_push(net, net->comp_links[i]) != 0) return PF_ENOMEM;
  }
  while (net->n_fill > 0) {
    fill_entry e = fill_pop(net);
    if (e.key < 0) {
      if (!net->flows[-1 - e.key].frozen && freeze(net, -1 - e.key, e.share) != 0) return PF_ENOMEM;
      continue;
    }
    link *l = &net->links[e.key];
    if (l->unfrozen == 0) continue;
    if (e.version != l->version) { /* a lower bound: requeue at its share now */
      if (fill_push(net, e.key) != 0) return PF_ENOMEM;
      continue;
    }
    for (int32_t k = 0; k < l->n; k++) {
      int32_t id = l->flows[k].flow;
      if (!net->flows[id].frozen && freeze(net, id, e.share) != 0) return PF_ENOMEM;
    }
    l->unfrozen = 0;
  }
  return 0;
}

/* ---- running ------------------------------------------------------------- */

static int run_events(pf_simnet *net, pf_simtime until);

int pf_simnet_run(pf_simnet *net, pf_simtime until) {
  if (net->running) return PF_ESTATE;
  net->running = 1;
  int rc = run_events(net, until);
  net->running = 0;
  return rc;
}

static int run_events(pf_simnet *net, pf_simtime until) {
  int rc;
  heap_entry ev;
  int from;
  while (next_event(net, &ev, &from) && ev.due <= until) {
    pf_simtime t = ev.due;
    net->now = t;
    net->n_done = 0;
    while (next_event(net, &ev, &from) && ev.due == t) {
      int32_t id = ev.id;
      if (from < 0) {
        heap_pop(net);
      } else { /* (its flow's heap index is -1 already) */
        fifo *q = &net->latent[from];
        if (++q->head == q->n) q->head = q->n = 0;
      }
      flow *f = &net->flows[id];
      net->stats.events++;
      if (f->state == FLOW_LATENT && f->nlinks > 0 && f->remaining > 0) {
        f->state = FLOW_ACTIVE;
        f->last = f->entered = t;
        if (f->part && f->part->exclusive && f->part->busy == 0) {
          /* Alone on its links: the rate recompute would give it, without
           * entering them. */
          f->virt = 1;
          f->rate = f->bound;
          f->due = time_add(t, duration(f->remaining, f->rate));
          if ((rc = heap_push(net, id)) != 0) return rc;
        } else { /* into the heap when recompute rates it */
          f->rate = 0;
          f->due = PF_SIMTIME_MAX;
          if ((rc = link_add(net, id)) != 0) return rc;
        }
        continue;
      }
      if (f->part) f->part->entity = -1;
      if (f->state == FLOW_ACTIVE && !f->virt) {
        if ((rc = link_remove(net, id)) != 0) return rc;
      }
      if ((rc = push_i32(&net->done, &net->n_done, &net->cap_done, id)) != 0) return rc;
    }
    if ((rc = recompute(net)) != 0) return rc;
    /* Callbacks last: they may send flows that start now. */
    for (size_t i = 0; i < net->n_done; i++) {
      int32_t id = net->done[i];
      flow *f = &net->flows[id];
      for (int c = 0; c < PF_SIMNET_CLASS_COUNT; c++)
        if (f->classes & (1u << c)) net->stats.bytes[c] += (double)f->bytes;
      pf_simnet_done cb = f->cb;
      void *arg = f->arg;
      uint64_t tag = f->tag;
      if (net->observer && f->nlinks > 0 && f->bytes > 0)
        net->observer(net->observer_arg, flow_links(f), f->ext ? f->ext + 2 * f->nlinks : NULL,
                      f->nlinks, (double)f->bytes / (double)(f->members ? f->members : 1),
                      f->entered, t);
      if (f->ext) net->stats.bundles_done++;
      f->state = FLOW_FREE;
      f->ext = NULL;
      f->part = NULL;
      if ((rc = push_i32(&net->free_ids, &net->n_free, &net->cap_free, id)) != 0) return rc;
      net->stats.flows_done += f->members;
      net->in_flight--;
      if (cb) cb(net, arg, tag, t);
    }
  }
  if (until != PF_SIMTIME_MAX && until > net->now) net->now = until;
  return 0;
}

pf_simtime pf_simnet_now(const pf_simnet *net) { return net->now; }

void pf_simnet_observe(pf_simnet *net, pf_simnet_observer fn, void *arg) {
  net->observer = fn;
  net->observer_arg = arg;
}

/* Links are laid out by kind (pf_simnet_create): each device's port out of
 * and into its host switch, each NIC's, each host's DCN port, each
 * island's uplink; even ids go out, odd ones in. */
void pf_simnet_link_name(const pf_simnet *net, int32_t id, char *buf, size_t len) {
  const char *dir = id % 2 ? "in" : "out";
  int64_t k = id / 2;
  if (id < net->nic_base)
    snprintf(buf, len, "device %" PRId64 " %s", k, dir);
  else if (id < net->dcn_base)
    snprintf(buf, len, "host %" PRId64 " NIC %" PRId64 " %s", (k - net->nic_base / 2) / net->nics,
             (k - net->nic_base / 2) % net->nics, dir);
  else if (id < net->isl_base)
    snprintf(buf, len, "host %" PRId64 " DCN %s", k - net->dcn_base / 2, dir);
  else
    snprintf(buf, len, "island %" PRId64 " uplink %s", k - net->isl_base / 2, dir);
}

uint64_t pf_simnet_in_flight(const pf_simnet *net) { return net->in_flight; }

pf_simtime pf_simnet_next(const pf_simnet *net) {
  heap_entry e = {0};
  int from;
  return next_event(net, &e, &from) ? e.due : PF_SIMTIME_MAX;
}

void pf_simnet_get_stats(const pf_simnet *net, pf_simnet_stats *out) { *out = net->stats; }

size_t pf_simnet_memory(const pf_simnet *net) {
  size_t m = sizeof *net + (size_t)net->n_links * sizeof *net->links + (size_t)net->cl->devices * sizeof *net->place;
  for (int q = 0; q < N_FIFOS; q++) m += net->latent[q].cap * sizeof(heap_entry);
  for (int64_t i = 0; i < net->n_links; i++) m += (size_t)net->links[i].cap * sizeof(link_entry);
  m += net->cap_flows * sizeof(flow) + net->cap_heap * sizeof(heap_entry) +
       (net->cap_free + net->cap_dirty + net->cap_cl + net->cap_cf + net->cap_done + net->cap_touched) *
           sizeof(int32_t);
  if (net->wcount) m += (size_t)net->n_links * sizeof(int32_t);
  return m + net->cap_fill * sizeof(fill_entry);
}
