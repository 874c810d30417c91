/* Execution traces replayed in virtual time (see replay.h). */
#include "sim/replay.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "base/util.h"

enum { WAITING, READY, RUNNING, DONE };

typedef struct node {
  const pf_chakra_node *src;
  int64_t device;
  uint32_t pending;    /* dependencies not done */
  uint8_t state;
  uint8_t arrived;     /* receive: its data is here */
  int32_t coll;        /* collective instance, or -1 */
  int64_t peer;        /* send: its receive's node index; a receive: its send's once sent; -1 */
  pf_simtime ready, start, end;
  /* A receive or a collective's member on a CPU device: when its rank's
   * loop will have done the work of receiving its messages, reserved there
   * when the send or the collective started (receive_work). */
  pf_simtime due;
  int64_t cause;       /* the node whose end let this one start, or -1 */
} node;

/* The k-th collective of one group: its nodes meet. */
typedef struct coll {
  struct engine *e;
  uint64_t key;
  const int64_t *group; /* sorted devices */
  uint32_t n_group;
  uint32_t n_ready, n_nodes;
  uint64_t outstanding; /* direct flows not yet complete */
  int64_t *nodes;       /* node index per member, in group order (-1: none yet) */
  pf_simtime ready;
  int64_t last;         /* the member that became ready last */
} coll;

typedef struct event {
  pf_simtime t;
  uint64_t seq;
  int64_t node;
} event;

/* A flow's (or bundle's) use of one link: when, and how many bytes it
 * moved there (for the trace's per-link rows). */
typedef struct link_use {
  int32_t link;
  pf_simtime a, b;
  double bytes;
} link_use;

typedef struct engine {
  const pf_sim_cluster *cl;
  const pf_sim_options *opt;
  pf_diag *d;
  pf_simnet *net;
  node *nodes;
  int64_t n_nodes, n_devices;
  int64_t *base;               /* per device: index of its first node */
  int64_t *succ_first, *succ;  /* successors, CSR */
  /* Per device: ready compute nodes (a FIFO by node index) and whether it
   * computes now. */
  int64_t **ready_q;
  size_t *ready_head, *ready_n, *ready_cap;
  uint8_t *busy_now;
  int64_t *last_done; /* per device: the compute node that ended last */
  /* Per rank (indexed by rank; ranks <= devices): when its loop thread is
   * free of the reductions it adds up (reduce_time), one after another, of
   * the messages it receives (receive_work), and of the kernels it runs
   * where it runs them (loop_runs_ops). */
  pf_simtime *loop_free;
  event *heap;
  size_t n_heap, cap_heap;
  uint64_t seq, events;
  coll *colls;
  size_t n_colls;
  int64_t *all_devices; /* the group of a collective that names none */
  int rc;
  pf_sim_result *res;
  link_use *uses; /* with a trace only */
  size_t n_uses, cap_uses;
} engine;

/* ---- the event heap (compute ends) -------------------------------------------------------- */

static int ev_before(const event *a, const event *b) {
  return a->t != b->t ? a->t < b->t : a->seq < b->seq;
}

static int heap_push(engine *e, pf_simtime t, int64_t n) {
  size_t i;
  if (pf_grow((void **)&e->heap, &e->cap_heap, e->n_heap + 1, sizeof *e->heap)) return PF_ENOMEM;
  i = e->n_heap++;
  e->heap[i] = (event){t, e->seq++, n};
  while (i > 0 && ev_before(&e->heap[i], &e->heap[(i - 1) / 2])) {
    event tmp = e->heap[i];
    e->heap[i] = e->heap[(i - 1) / 2];
    e->heap[(i - 1) / 2] = tmp;
    i = (i - 1) / 2;
  }
  return 0;
}

static event heap_pop(engine *e) {
  event top = e->heap[0];
  size_t i = 0;
  e->heap[0] = e->heap[--e->n_heap];
  for (;;) {
    size_t c = 2 * i + 1, m = i;
    if (c < e->n_heap && ev_before(&e->heap[c], &e->heap[m])) m = c;
    if (c + 1 < e->n_heap && ev_before(&e->heap[c + 1], &e->heap[m])) m = c + 1;
    if (m == i) break;
    event tmp = e->heap[i];
    e->heap[i] = e->heap[m];
    e->heap[m] = tmp;
    i = m;
  }
  return top;
}

/* ---- costs -------------------------------------------------------------------------------- */

static int loop_runs_ops(const engine *e, const pf_sim_place *pl);

/* How long compute node n takes on its device, at place pl. */
static pf_simtime compute_time(const engine *e, const node *n, const pf_sim_place *pl) {
  const pf_sim_device_type *ty = &e->cl->types[pl->type];
  double flops, secs = 0;
  const pf_chakra_node *c = n->src;
  flops = ty->flops[PF_F32];
  for (int k = 0; flops <= 0 && k < PF_DTYPE_COUNT; k++) flops = ty->flops[k];
  if (c->num_ops == 0 && c->tensor_size == 0) {
    secs = (double)c->duration_us * 1e-6;
  } else {
    double tf = flops > 0 ? (double)c->num_ops / flops : 0;
    double tm = ty->memory_bandwidth > 0 ? (double)c->tensor_size / ty->memory_bandwidth : 0;
    secs = (tf > tm ? tf : tm) / pf_sim_kernel_efficiency(ty, c->kernel);
  }
  if (!loop_runs_ops(e, pl)) {
    /* CPU devices share their host's cores (a worker thread each). Where
     * the loops run the ops, their share is the loop's (loop_share). */
    const pf_sim_host_group *g = &e->cl->groups[pl->group];
    int64_t per_host = (int64_t)g->ranks_per_host * g->devices_per_rank;
    if (ty->kind == PF_SIM_CPU && g->cores > 0 && per_host > g->cores)
      secs *= (double)per_host / (double)g->cores;
  }
  return e->cl->op_dispatch_ns + (pf_simtime)(secs * 1e9 + 0.5);
}

/* How much slower loop work starting at t runs on the rank at pl, where
 * its host has more ranks than cores: the host's ranks with loop work
 * outstanding then (this one included) over its cores, at least 1. A rank
 * that waits gives its core to those that compute (a pipeline's stages do
 * not all work at once); the share is fixed when the work starts. */
static double loop_share(const engine *e, const pf_sim_place *pl, pf_simtime t) {
  const pf_sim_host_group *g = &e->cl->groups[pl->group];
  int64_t first, active = 1;
  if (e->cl->types[pl->type].kind != PF_SIM_CPU || g->cores <= 0 || g->ranks_per_host <= g->cores)
    return 1;
  first = g->first_rank + (pl->host - g->first_host) * g->ranks_per_host;
  for (int64_t r = first; r < first + g->ranks_per_host && r < e->n_devices; r++)
    if (r != pl->rank && e->loop_free[r] > t) active++;
  return active > g->cores ? (double)active / (double)g->cores : 1;
}

/* ---- node life ---------------------------------------------------------------------------- */

static void node_done(engine *e, int64_t i, pf_simtime t, int64_t cause);
static void node_ready(engine *e, int64_t i, pf_simtime t, int64_t cause);

static void fail(engine *e, int rc) {
  if (e->rc == 0) e->rc = rc;
}

/* Starts the device's next ready compute node, if it is idle. */
static void device_kick(engine *e, int64_t dev, pf_simtime t) {
  node *n;
  int64_t i;
  if (e->busy_now[dev] || e->ready_head[dev] == e->ready_n[dev]) return;
  i = e->ready_q[dev][e->ready_head[dev]++];
  n = &e->nodes[i];
  n->state = RUNNING;
  n->start = t;
  if (n->ready < t) n->cause = e->last_done[dev]; /* it waited for the device */
  e->busy_now[dev] = 1;
  {
    pf_sim_place pl;
    pf_simtime end = t;
    if (pf_sim_cluster_locate(e->cl, dev, &pl) == 0) {
      end = t + compute_time(e, n, &pl);
      if (loop_runs_ops(e, &pl)) { /* after what the rank's loop has to do first */
        n->start = e->loop_free[pl.rank] > t ? e->loop_free[pl.rank] : t;
        end = e->loop_free[pl.rank] =
            n->start + (pf_simtime)((double)(end - t) * loop_share(e, &pl, n->start) + 0.5);
      }
    }
    if (heap_push(e, end, i) != 0) fail(e, PF_ENOMEM);
  }
}

static void on_flow(pf_simnet *net, void *arg, uint64_t tag, pf_simtime now);
static pf_simtime loop_add(engine *e, int64_t dev, pf_simtime now, pf_simtime add);
static pf_simtime receive_work(const engine *e, int64_t src, int64_t dst, uint64_t bytes,
                               int collective);
static pf_simtime coll_receive_work(const engine *e, const coll *c, uint32_t k);
static void on_coll(void *arg, pf_simtime now);

/* Direct flows of a collective other than allreduce. */
static int coll_flows(engine *e, coll *c, int32_t type, uint64_t bytes, pf_simtime t) {
  uint32_t n = c->n_group;
  uint64_t piece = n ? bytes / n : 0;
  int rc = 0;
  for (uint32_t a = 0; a < n && rc == 0; a++)
    for (uint32_t b = 0; b < n && rc == 0; b++) {
      uint64_t size;
      if (a == b) continue;
      switch (type) {
        case PF_CHAKRA_ALL_GATHER: size = bytes; break;
        case PF_CHAKRA_REDUCE_SCATTER:
        case PF_CHAKRA_REDUCE_SCATTER_BLOCK:
        case PF_CHAKRA_ALL_TO_ALL: size = piece; break;
        case PF_CHAKRA_BROADCAST:
        case PF_CHAKRA_SCATTER:
          if (a != 0) continue;
          size = type == PF_CHAKRA_SCATTER ? piece : bytes;
          break;
        case PF_CHAKRA_GATHER:
        case PF_CHAKRA_REDUCE:
          if (b != 0) continue;
          size = type == PF_CHAKRA_GATHER ? piece : bytes;
          break;
        default: continue; /* a barrier: only the meeting */
      }
      c->outstanding++;
      rc = pf_simnet_send(e->net, c->group[a], c->group[b], size,
                          t + pf_sim_message_ns(e->cl, size, 1), on_flow, e,
                          (uint64_t)(c - e->colls) << 1 | 1);
    }
  return rc;
}

static void coll_start(engine *e, coll *c, pf_simtime t) {
  const pf_chakra_node *first = e->nodes[c->nodes[0]].src;
  int rc;
  /* Each member's receive work, on its loop from now (on_coll waits for it). */
  for (uint32_t k = 0; k < c->n_group; k++) {
    pf_simtime work = coll_receive_work(e, c, k);
    if (work > 0) e->nodes[c->nodes[k]].due = loop_add(e, e->nodes[c->nodes[k]].device, t, work);
  }
  if (first->comm_type == PF_CHAKRA_ALL_REDUCE) {
    rc = pf_sim_allreduce(e->net, e->cl, e->opt->algo, c->group, c->n_group, first->comm_size,
                          e->opt->chunks < 1 ? 1 : e->opt->chunks, t, on_coll, c, e->d);
  } else {
    rc = coll_flows(e, c, first->comm_type, first->comm_size, t);
    if (rc == 0 && c->outstanding == 0) on_coll(c, t);
  }
  if (rc != 0) fail(e, rc);
}

static void node_ready(engine *e, int64_t i, pf_simtime t, int64_t cause) {
  node *n = &e->nodes[i];
  n->state = READY;
  n->ready = t;
  n->cause = cause;
  switch (n->src->type) {
    case PF_CHAKRA_SEND: {
      pf_simtime work = receive_work(e, n->device, n->src->comm_dst, n->src->comm_size, 0);
      n->state = RUNNING;
      n->start = t;
      if (work > 0) e->nodes[n->peer].due = loop_add(e, n->src->comm_dst, t, work);
      if (pf_simnet_send(e->net, n->device, n->src->comm_dst, n->src->comm_size,
                         t + pf_sim_message_ns(e->cl, n->src->comm_size, 0), on_flow, e,
                         (uint64_t)i << 1) != 0)
        fail(e, PF_ENOMEM);
      break;
    }
    case PF_CHAKRA_RECV:
      n->start = t;
      if (n->arrived) node_done(e, i, t, cause);
      break;
    case PF_CHAKRA_DELAY: /* a wait that holds no device */
      n->state = RUNNING;
      n->start = t;
      if (heap_push(e, t + (pf_simtime)n->src->delay_ns, i) != 0) fail(e, PF_ENOMEM);
      break;
    case PF_CHAKRA_COLL: {
      coll *c = &e->colls[n->coll];
      n->start = t;
      c->n_ready++;
      if (c->ready <= t) {
        c->ready = t;
        c->last = i;
      }
      if (c->n_ready == c->n_group) coll_start(e, c, t);
      break;
    }
    default: { /* compute, memory */
      size_t *cap = &e->ready_cap[n->device];
      if (pf_grow((void **)&e->ready_q[n->device], cap, e->ready_n[n->device] + 1,
                  sizeof **e->ready_q) != 0) {
        fail(e, PF_ENOMEM);
        return;
      }
      e->ready_q[n->device][e->ready_n[n->device]++] = i;
      device_kick(e, n->device, t);
      break;
    }
  }
}

static void node_done(engine *e, int64_t i, pf_simtime t, int64_t cause) {
  node *n = &e->nodes[i];
  n->state = DONE;
  n->end = t;
  if (n->cause == -1) n->cause = cause;
  e->res->nodes++;
  if (t > e->res->makespan) e->res->makespan = t;
  for (int64_t k = e->succ_first[i]; k < e->succ_first[i + 1]; k++) {
    int64_t s = e->succ[k];
    if (--e->nodes[s].pending == 0) node_ready(e, s, t, i);
  }
}

/* A receive's data is here at t (its send: the node's peer): it
 * completes now if it was posted. */
static void deliver(engine *e, int64_t r, pf_simtime t) {
  node *n = &e->nodes[r];
  n->arrived = 1;
  if (n->state == READY) { /* posted first: the data is what it waited for */
    n->cause = n->peer;
    node_done(e, r, t, n->peer);
  }
}

/* What receiving a message of `bytes` from device src costs the loop
 * thread of the rank of device dst, when dst is a CPU device: MPI moves a
 * message between ranks of one host by a copy the receiving process makes
 * in its progress calls (Open MPI's shared-memory transport: CMA, or its
 * copy out of the shared buffer), on the thread that also adds up the
 * rank's reductions (and runs its kernels, where the loop runs the ops):
 * the runtime's cost per message (runtime.transfer_by_size) and, inside a
 * host, bytes over the intra-host bandwidth. The network model still
 * gives the message its latency and shares the links; this makes the
 * messages a rank receives take turns with each other and with the rest
 * of its loop's work, as they do (8 allreduces of 256 KiB in flight on 2
 * ranks: each member receives 16 messages one after another, which the
 * flows alone ran side by side, 0.27 ms simulated against 0.61 measured).
 * 0 for other devices (a GPU's or a NIC's copy engines move the bytes). */
static pf_simtime receive_work(const engine *e, int64_t src, int64_t dst, uint64_t bytes,
                               int collective) {
  pf_sim_place ps, pd;
  double secs = 0;
  if (pf_sim_cluster_locate(e->cl, dst, &pd) != 0 || e->cl->types[pd.type].kind != PF_SIM_CPU)
    return 0;
  if (pf_sim_cluster_locate(e->cl, src, &ps) == 0 && ps.host == pd.host &&
      e->cl->intra_host.bandwidth > 0)
    secs = (double)bytes / e->cl->intra_host.bandwidth;
  return (pf_simtime)(secs * 1e9 + 0.5) + pf_sim_message_ns(e->cl, bytes, collective);
}

static void on_flow(pf_simnet *net, void *arg, uint64_t tag, pf_simtime now) {
  engine *e = arg;
  (void)net;
  e->events++;
  if (tag & 1) { /* a direct flow of a collective */
    coll *c = &e->colls[tag >> 1];
    if (--c->outstanding == 0) on_coll(c, now);
    return;
  }
  int64_t i = (int64_t)(tag >> 1), r = e->nodes[i].peer;
  node_done(e, i, now, -1);
  e->nodes[r].peer = i;
  if (e->nodes[r].due > now) { /* once the receiving rank's loop has done its part */
    if (heap_push(e, e->nodes[r].due, r) != 0) fail(e, PF_ENOMEM);
    return;
  }
  deliver(e, r, now);
}

/* The arithmetic of a reduction, on top of its messages: each member
 * combines (n - 1) / n of the bytes, reading two operands and writing the
 * result at its device's memory bandwidth (in + out, as calibration
 * measures `add`). 0 for other collectives. Messages first, then the
 * additions: in a ring they alternate, and add up to the same. */
static pf_simtime reduce_time(const engine *e, const coll *c) {
  const pf_chakra_node *n = e->nodes[c->nodes[0]].src;
  pf_sim_place pl;
  double bw;
  if (c->n_group < 2 || (n->comm_type != PF_CHAKRA_ALL_REDUCE && n->comm_type != PF_CHAKRA_REDUCE &&
                         n->comm_type != PF_CHAKRA_REDUCE_SCATTER &&
                         n->comm_type != PF_CHAKRA_REDUCE_SCATTER_BLOCK))
    return 0;
  if (pf_sim_cluster_locate(e->cl, e->nodes[c->nodes[0]].device, &pl) != 0) return 0;
  bw = e->cl->types[pl.type].memory_bandwidth;
  if (!(bw > 0)) return 0;
  return (pf_simtime)(3.0 * (double)n->comm_size * (double)(c->n_group - 1) /
                          (double)c->n_group / bw * 1e9 + 0.5);
}

/* A rank's loop thread adds up every reduction of the rank, one at a time
 * (the real runtime's collectives run on it), at the speed of its share of
 * the host's cores when the host has more ranks than cores. Returns when
 * the member on device `dev` has added, from `now`. */
static pf_simtime loop_add(engine *e, int64_t dev, pf_simtime now, pf_simtime add) {
  pf_sim_place pl;
  pf_simtime start;
  if (pf_sim_cluster_locate(e->cl, dev, &pl) != 0 || pl.rank < 0 || pl.rank >= e->n_devices)
    return now + add;
  start = e->loop_free[pl.rank] > now ? e->loop_free[pl.rank] : now;
  return e->loop_free[pl.rank] = start + (pf_simtime)((double)add * loop_share(e, &pl, start) + 0.5);
}

/* 1 if the loop thread of the rank at pl runs its CPU kernels too. The
 * real runtime does so by default where a rank has at most one core
 * (mpirun binds a rank to a core when there are as many cores as ranks;
 * more ranks than cores: each gets less): kernels, reductions and MPI
 * progress then take turns on one thread. */
static int loop_runs_ops(const engine *e, const pf_sim_place *pl) {
  const pf_sim_host_group *g = &e->cl->groups[pl->group];
  return e->cl->types[pl->type].kind == PF_SIM_CPU && g->cores > 0 &&
         g->ranks_per_host >= g->cores && pl->rank >= 0 && pl->rank < e->n_devices;
}

/* The runtime's allreduces of at most this many bytes go by recursive
 * doubling, larger ones by a ring (transport/mpi_allreduce.c,
 * PF_MPI_AR_SMALL_BYTES; sim/ does not include the MPI transport). */
#define RUNTIME_AR_SMALL_BYTES 8192

/* The receive work (receive_work) of member k of collective c: the
 * messages the real runtime's collectives send it. An allreduce of more
 * than RUNTIME_AR_SMALL_BYTES: a ring in group order, 2(n-1) pieces of
 * bytes/n from the member before; a smaller one: recursive doubling, the
 * whole vector from each of log2(n) partners (k xor 2^i; where n is not a
 * power of two, one more round for the members that hand their vector
 * over); the other collectives as coll_flows sends them. */
static pf_simtime coll_receive_work(const engine *e, const coll *c, uint32_t k) {
  const pf_chakra_node *n = e->nodes[c->nodes[0]].src;
  uint32_t m = c->n_group;
  uint64_t bytes = n->comm_size, piece = m ? bytes / m : 0;
  int64_t dst = c->group[k];
  pf_sim_place pd;
  pf_simtime w = 0;
  if (m < 2 || pf_sim_cluster_locate(e->cl, dst, &pd) != 0 ||
      e->cl->types[pd.type].kind != PF_SIM_CPU)
    return 0;
  switch (n->comm_type) {
    case PF_CHAKRA_ALL_REDUCE:
      if (bytes > RUNTIME_AR_SMALL_BYTES)
        return (pf_simtime)(2 * (m - 1)) * receive_work(e, c->group[(k + m - 1) % m], dst, piece, 1);
      {
        uint32_t p2 = 1;
        while (p2 * 2 <= m) p2 *= 2;
        for (uint32_t bit = 1; bit < p2 && k < p2; bit *= 2)
          w += receive_work(e, c->group[k ^ bit], dst, bytes, 1);
        if (k < m - p2) w += receive_work(e, c->group[k + p2], dst, bytes, 1); /* its vector */
        if (k >= p2) w += receive_work(e, c->group[k - p2], dst, bytes, 1);    /* the result */
      }
      return w;
    case PF_CHAKRA_ALL_GATHER:
    case PF_CHAKRA_REDUCE_SCATTER:
    case PF_CHAKRA_REDUCE_SCATTER_BLOCK:
    case PF_CHAKRA_ALL_TO_ALL:
      for (uint32_t a = 0; a < m; a++)
        if (a != k)
          w += receive_work(e, c->group[a], dst,
                            n->comm_type == PF_CHAKRA_ALL_GATHER ? bytes : piece, 1);
      return w;
    case PF_CHAKRA_BROADCAST:
    case PF_CHAKRA_SCATTER:
      return k == 0 ? 0
                    : receive_work(e, c->group[0], dst,
                                   n->comm_type == PF_CHAKRA_SCATTER ? piece : bytes, 1);
    case PF_CHAKRA_GATHER:
    case PF_CHAKRA_REDUCE:
      for (uint32_t a = 1; k == 0 && a < m; a++)
        w += receive_work(e, c->group[a], dst, n->comm_type == PF_CHAKRA_GATHER ? piece : bytes, 1);
      return w;
    default:
      return 0; /* a barrier: only the meeting */
  }
}

static void on_coll(void *arg, pf_simtime now) {
  coll *c = arg;
  engine *e = c->e;
  pf_simtime add = reduce_time(e, c);
  e->events++;
  for (uint32_t k = 0; k < c->n_group; k++) {
    int64_t dev = e->nodes[c->nodes[k]].device;
    /* After its messages' receive work (coll_start; an allreduce alone on
     * its ranks: within the flows' time, no later), then its additions. */
    pf_simtime at = e->nodes[c->nodes[k]].due > now ? e->nodes[c->nodes[k]].due : now;
    /* Every member waited for the last to join; that one for its own inputs. */
    if (c->nodes[k] != c->last) e->nodes[c->nodes[k]].cause = c->last;
    if (add > 0) at = loop_add(e, dev, at, add);
    if (at == now)
      node_done(e, c->nodes[k], now, c->last);
    else if (heap_push(e, at, c->nodes[k]) != 0)
      fail(e, PF_ENOMEM); /* done once it has received and added */
  }
}

/* ---- setting up ------------------------------------------------------------------------------ */

typedef struct id_entry {
  uint64_t id;
  int64_t index;
} id_entry;

static int cmp_id(const void *a, const void *b) {
  const id_entry *p = a, *q = b;
  return (p->id > q->id) - (p->id < q->id);
}

/* The node of device `dev` with id `id`, or -1. */
static int64_t find_id(const id_entry *ids, const engine *e, int64_t dev, uint64_t id) {
  int64_t lo = e->base[dev], hi = e->base[dev + 1];
  /* Traces usually number their nodes densely (pathflow's do): try the
   * place the id would have then before searching. */
  if (lo < hi && id >= ids[lo].id && id - ids[lo].id < (uint64_t)(hi - lo)) {
    int64_t k = lo + (int64_t)(id - ids[lo].id);
    if (ids[k].id == id) return ids[k].index;
  }
  while (lo < hi) {
    int64_t mid = lo + (hi - lo) / 2;
    if (ids[mid].id < id) lo = mid + 1;
    else hi = mid;
  }
  return lo < e->base[dev + 1] && ids[lo].id == id ? ids[lo].index : -1;
}

static int build_edges(engine *e) {
  id_entry *ids = pf_mallocn((size_t)e->n_nodes + 1, sizeof *ids);
  int64_t n_edges = 0;
  int rc = 0;
  if (ids == NULL) return PF_ENOMEM;
  for (int64_t i = 0; i < e->n_nodes; i++) ids[i] = (id_entry){e->nodes[i].src->id, i};
  for (int64_t dev = 0; dev < e->n_devices; dev++) {
    int64_t k = e->base[dev] + 1;
    while (k < e->base[dev + 1] && ids[k - 1].id < ids[k].id) k++;
    if (k < e->base[dev + 1]) /* not in order already */
      qsort(ids + e->base[dev], (size_t)(e->base[dev + 1] - e->base[dev]), sizeof *ids, cmp_id);
  }
  e->succ_first = pf_calloc((size_t)e->n_nodes + 2, sizeof *e->succ_first);
  for (int64_t i = 0; i < e->n_nodes; i++)
    n_edges += (int64_t)e->nodes[i].src->n_data_deps + e->nodes[i].src->n_ctrl_deps;
  e->succ = pf_mallocn((size_t)n_edges + 1, sizeof *e->succ);
  if (e->succ_first == NULL || e->succ == NULL) {
    free(ids);
    return PF_ENOMEM;
  }
  for (int pass = 0; pass < 2 && rc == 0; pass++) {
    for (int64_t i = 0; i < e->n_nodes && rc == 0; i++) {
      const pf_chakra_node *c = e->nodes[i].src;
      for (uint32_t k = 0; k < c->n_data_deps + c->n_ctrl_deps; k++) {
        uint64_t dep = k < c->n_data_deps ? c->data_deps[k] : c->ctrl_deps[k - c->n_data_deps];
        int64_t j = find_id(ids, e, e->nodes[i].device, dep);
        if (j < 0) {
          rc = pf_diag_error(e->d, PF_EINVAL, "device %" PRId64 " node id %" PRIu64
                             " (\"%s\"): depends on node id %" PRIu64 ", which its trace lacks",
                             e->nodes[i].device, c->id, c->name, dep);
          break;
        }
        if (pass == 0) {
          e->succ_first[j + 1]++;
          e->nodes[i].pending++;
        } else {
          e->succ[e->succ_first[j]++] = i;
        }
      }
    }
    if (pass == 0)
      for (int64_t i = 0; i < e->n_nodes; i++) e->succ_first[i + 1] += e->succ_first[i];
    else {
      for (int64_t i = e->n_nodes; i > 0; i--) e->succ_first[i] = e->succ_first[i - 1];
      e->succ_first[0] = 0;
    }
  }
  free(ids);
  return rc;
}

/* Sends and receives pair up by (source, destination, tag), in file
 * order when a key repeats. */
typedef struct comm_key {
  int64_t src, dst, tag, index;
} comm_key;

static int cmp_key(const void *a, const void *b) {
  const comm_key *p = a, *q = b;
  if (p->src != q->src) return p->src < q->src ? -1 : 1;
  if (p->dst != q->dst) return p->dst < q->dst ? -1 : 1;
  if (p->tag != q->tag) return p->tag < q->tag ? -1 : 1;
  return (p->index > q->index) - (p->index < q->index);
}

static int match_transfers(engine *e) {
  comm_key *sends = pf_mallocn((size_t)e->n_nodes + 1, sizeof *sends);
  comm_key *recvs = pf_mallocn((size_t)e->n_nodes + 1, sizeof *recvs);
  size_t ns = 0, nr = 0, r = 0;
  int rc = 0;
  if (!sends || !recvs) {
    free(sends);
    free(recvs);
    return PF_ENOMEM;
  }
  for (int64_t i = 0; i < e->n_nodes && rc == 0; i++) {
    const node *n = &e->nodes[i];
    const pf_chakra_node *c = n->src;
    int64_t peer = c->type == PF_CHAKRA_SEND ? c->comm_dst : c->comm_src;
    if (c->type != PF_CHAKRA_SEND && c->type != PF_CHAKRA_RECV) continue;
    if (peer < 0 || peer >= e->n_devices)
      rc = pf_diag_error(e->d, PF_EINVAL, "device %" PRId64 " node id %" PRIu64 " (\"%s\"): "
                         "peer device %" PRId64 " is not one of the %" PRId64 " simulated",
                         n->device, c->id, c->name, peer, e->n_devices);
    else if (c->type == PF_CHAKRA_SEND)
      sends[ns++] = (comm_key){n->device, peer, c->comm_tag, i};
    else
      recvs[nr++] = (comm_key){peer, n->device, c->comm_tag, i};
  }
  if (rc == 0) {
    qsort(sends, ns, sizeof *sends, cmp_key);
    qsort(recvs, nr, sizeof *recvs, cmp_key);
    for (size_t s = 0; s < ns && rc == 0; s++) {
      while (r < nr && cmp_key(&recvs[r], &(comm_key){sends[s].src, sends[s].dst, sends[s].tag,
                                                     INT64_MAX}) < 0 &&
             (recvs[r].src != sends[s].src || recvs[r].dst != sends[s].dst ||
              recvs[r].tag != sends[s].tag))
        r++;
      if (r < nr && recvs[r].src == sends[s].src && recvs[r].dst == sends[s].dst &&
          recvs[r].tag == sends[s].tag) {
        e->nodes[sends[s].index].peer = recvs[r++].index;
      } else {
        const pf_chakra_node *c = e->nodes[sends[s].index].src;
        rc = pf_diag_error(e->d, PF_EINVAL, "device %" PRId64 " node id %" PRIu64 " (\"%s\"): "
                           "a send to device %" PRId64 " with tag %" PRId64
                           " that no receive matches", sends[s].src, c->id, c->name,
                           sends[s].dst, sends[s].tag);
      }
    }
  }
  free(sends);
  free(recvs);
  return rc;
}

/* Collectives: the k-th collective of a group on each of its devices meet. */
typedef struct coll_key {
  uint64_t hash;
  int64_t occ, device, index;
  const int64_t *group;
  uint32_t n_group;
} coll_key;

static int cmp_by_device(const void *a, const void *b) {
  const coll_key *p = a, *q = b;
  if (p->device != q->device) return p->device < q->device ? -1 : 1;
  if (p->hash != q->hash) return p->hash < q->hash ? -1 : 1;
  return (p->index > q->index) - (p->index < q->index);
}

static int cmp_by_instance(const void *a, const void *b) {
  const coll_key *p = a, *q = b;
  if (p->hash != q->hash) return p->hash < q->hash ? -1 : 1;
  if (p->occ != q->occ) return p->occ < q->occ ? -1 : 1;
  return (p->device > q->device) - (p->device < q->device);
}

static int cmp_i64(const void *a, const void *b) {
  int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
  return (x > y) - (x < y);
}

static uint64_t group_hash(const int64_t *g, uint32_t n) {
  uint64_t h = 0xcbf29ce484222325ull ^ n;
  for (uint32_t k = 0; k < n; k++) h = (h ^ (uint64_t)g[k]) * 0x100000001b3ull;
  return h;
}

static int match_collectives(engine *e) {
  coll_key *keys = NULL;
  size_t nk = 0, cap = 0;
  uint64_t h, all_hash = 0;
  int rc = 0, have_all = 0;
  for (int64_t i = 0; i < e->n_nodes && rc == 0; i++) {
    node *n = &e->nodes[i];
    pf_chakra_node *c = (pf_chakra_node *)n->src;
    if (c->type != PF_CHAKRA_COLL) continue;
    const int64_t *group = c->group;
    uint32_t n_group = c->n_group;
    if (group == NULL) { /* every device, as ASTRA-sim's traces mean: one shared array, so
                          * that n such nodes cost O(n) memory, not O(n^2) */
      group = e->all_devices;
      n_group = (uint32_t)e->n_devices;
    } else {
      uint32_t k = 1;
      while (k < n_group && c->group[k - 1] < c->group[k]) k++;
      if (k < n_group) qsort(c->group, n_group, sizeof *c->group, cmp_i64); /* sorted: skip */
    }
    for (uint32_t k = 0; group != e->all_devices && k < n_group; k++)
      if (group[k] < 0 || group[k] >= e->n_devices || (k && group[k] == group[k - 1])) {
        free(keys);
        return pf_diag_error(e->d, PF_EINVAL, "device %" PRId64 " node id %" PRIu64 " (\"%s\"): "
                             "its group names device %" PRId64 " %s", n->device, c->id, c->name,
                             group[k], group[k] < 0 || group[k] >= e->n_devices
                                              ? "outside the simulated devices" : "twice");
      }
    if (pf_grow((void **)&keys, &cap, nk + 1, sizeof *keys)) {
      free(keys);
      return PF_ENOMEM;
    }
    if (group == e->all_devices && !have_all) { /* hashed once, as an explicit full group */
      all_hash = group_hash(group, n_group);
      have_all = 1;
    }
    h = group == e->all_devices ? all_hash : group_hash(group, n_group);
    keys[nk++] = (coll_key){h, 0, n->device, i, group, n_group};
  }
  if (nk == 0) return 0;
  qsort(keys, nk, sizeof *keys, cmp_by_device);
  for (size_t k = 1; k < nk; k++)
    if (keys[k].device == keys[k - 1].device && keys[k].hash == keys[k - 1].hash)
      keys[k].occ = keys[k - 1].occ + 1;
  qsort(keys, nk, sizeof *keys, cmp_by_instance);
  e->colls = pf_calloc(nk, sizeof *e->colls);
  if (e->colls == NULL) {
    free(keys);
    return PF_ENOMEM;
  }
  for (size_t k = 0; k < nk && rc == 0;) {
    size_t end = k;
    coll *c = &e->colls[e->n_colls++];
    while (end < nk && keys[end].hash == keys[k].hash && keys[end].occ == keys[k].occ) end++;
    c->e = e;
    c->group = keys[k].group;
    c->n_group = keys[k].n_group;
    c->nodes = pf_mallocn(c->n_group, sizeof *c->nodes);
    c->last = -1;
    if (c->nodes == NULL) {
      rc = PF_ENOMEM;
      break;
    }
    for (uint32_t m = 0; m < c->n_group; m++) c->nodes[m] = -1;
    for (size_t m = k; m < end; m++) {
      const int64_t *pos = bsearch(&keys[m].device, c->group, c->n_group, sizeof *c->group,
                                   cmp_i64);
      const pf_chakra_node *src = e->nodes[keys[m].index].src;
      if (keys[m].n_group != c->n_group ||
          (keys[m].group != c->group &&
           memcmp(keys[m].group, c->group, c->n_group * sizeof *c->group) != 0) || pos == NULL) {
        rc = pf_diag_error(e->d, PF_EINVAL, "device %" PRId64 " node id %" PRIu64 " (\"%s\"): "
                           "a collective whose group does not include its own device",
                           keys[m].device, src->id, src->name);
        break;
      }
      c->nodes[pos - c->group] = keys[m].index;
      e->nodes[keys[m].index].coll = (int32_t)(c - e->colls);
    }
    for (uint32_t m = 0; m < c->n_group && rc == 0; m++)
      if (c->nodes[m] < 0) {
        const pf_chakra_node *src = e->nodes[keys[k].index].src;
        rc = pf_diag_error(e->d, PF_EINVAL, "device %" PRId64 " node id %" PRIu64 " (\"%s\"): "
                           "collective number %" PRId64 " of its group, which device %" PRId64
                           " never reaches", keys[k].device, src->id, src->name, keys[k].occ,
                           c->group[m]);
      }
    k = end;
  }
  free(keys);
  return rc;
}

/* ---- results ------------------------------------------------------------------------------ */

typedef struct span {
  pf_simtime a, b;
} span;

static int cmp_span(const void *x, const void *y) {
  const span *p = x, *q = y;
  return (p->a > q->a) - (p->a < q->a);
}

/* Merges spans in place (sorted by start first); returns how many remain. */
static size_t merge_spans(span *s, size_t n) {
  size_t m = 0;
  qsort(s, n, sizeof *s, cmp_span);
  for (size_t i = 0; i < n; i++) {
    if (m > 0 && s[i].a <= s[m - 1].b) {
      if (s[i].b > s[m - 1].b) s[m - 1].b = s[i].b;
    } else {
      s[m++] = s[i];
    }
  }
  return m;
}

static int device_stats(engine *e) {
  pf_sim_result *r = e->res;
  for (int64_t dev = 0; dev < e->n_devices; dev++) {
    int64_t lo = e->base[dev], hi = e->base[dev + 1];
    span *comp = pf_mallocn((size_t)(hi - lo) + 1, sizeof *comp);
    span *comm = pf_mallocn((size_t)(hi - lo) + 1, sizeof *comm);
    size_t nc = 0, nm = 0, j = 0;
    if (!comp || !comm) {
      free(comp);
      free(comm);
      return PF_ENOMEM;
    }
    for (int64_t i = lo; i < hi; i++) {
      const node *n = &e->nodes[i];
      if (n->src->type == PF_CHAKRA_DELAY) continue; /* neither computing nor communicating */
      if (n->src->type >= PF_CHAKRA_SEND) comm[nm++] = (span){n->start, n->end};
      else comp[nc++] = (span){n->start, n->end};
    }
    nc = merge_spans(comp, nc);
    nm = merge_spans(comm, nm);
    for (size_t k = 0; k < nc; k++) r->busy[dev] += comp[k].b - comp[k].a;
    for (size_t k = 0; k < nm; k++) {
      pf_simtime a = comm[k].a, b = comm[k].b, hidden = 0;
      r->comm[dev] += b - a;
      while (j < nc && comp[j].b <= a) j++;
      for (size_t q = j; q < nc && comp[q].a < b; q++) {
        pf_simtime lo2 = comp[q].a > a ? comp[q].a : a, hi2 = comp[q].b < b ? comp[q].b : b;
        if (hi2 > lo2) hidden += hi2 - lo2;
      }
      r->exposed[dev] += b - a - hidden;
    }
    free(comp);
    free(comm);
  }
  return 0;
}

/* A workload's runs: each one's first start and last end over the nodes
 * that are its own (its DELAY nodes aside). */
static int run_spans(engine *e) {
  pf_sim_result *r = e->res;
  r->n_runs = e->opt->runs;
  r->run_start = pf_mallocn((size_t)r->n_runs, sizeof *r->run_start);
  r->run_end = pf_calloc((size_t)r->n_runs, sizeof *r->run_end);
  if (r->run_start == NULL || r->run_end == NULL) return PF_ENOMEM;
  for (int64_t k = 0; k < r->n_runs; k++) r->run_start[k] = PF_SIMTIME_MAX;
  for (int64_t i = 0; i < e->n_nodes; i++) {
    const node *n = &e->nodes[i];
    int64_t k = (int64_t)n->src->run - 1;
    if (k < 0 || k >= r->n_runs || n->src->type == PF_CHAKRA_DELAY) continue;
    r->run_start[k] = PF_MINOF(r->run_start[k], n->start);
    r->run_end[k] = PF_MAXOF(r->run_end[k], n->end);
  }
  for (int64_t k = 0; k < r->n_runs; k++)
    if (r->run_start[k] == PF_SIMTIME_MAX) r->run_start[k] = r->run_end[k] = 0; /* no node */
  return 0;
}

static int critical_path(engine *e) {
  pf_sim_result *r = e->res;
  int64_t last = -1;
  uint32_t n = 0;
  for (int64_t i = 0; i < e->n_nodes; i++)
    if (last < 0 || e->nodes[i].end > e->nodes[last].end) last = i;
  for (int64_t i = last; i >= 0 && n <= e->n_nodes; i = e->nodes[i].cause) n++;
  if ((r->path = pf_calloc(n ? n : 1, sizeof *r->path)) == NULL) return PF_ENOMEM;
  r->n_path = n;
  for (int64_t i = last, k = n; i >= 0 && k > 0; i = e->nodes[i].cause) {
    const node *nd = &e->nodes[i];
    pf_sim_path_node *p = &r->path[--k];
    p->device = nd->device;
    p->id = nd->src->id;
    p->type = nd->src->type;
    p->start = nd->start;
    p->end = nd->end;
    snprintf(p->name, sizeof p->name, "%s", nd->src->name);
  }
  return 0;
}

static void observe(void *arg, const int32_t *links, const int32_t *weights, int n,
                    double member_bytes, pf_simtime a, pf_simtime b) {
  engine *e = arg;
  if (e->n_uses + (size_t)n > e->cap_uses &&
      pf_grow((void **)&e->uses, &e->cap_uses, e->n_uses + (size_t)n, sizeof *e->uses) != 0) {
    fail(e, PF_ENOMEM);
    return;
  }
  for (int k = 0; k < n; k++)
    e->uses[e->n_uses++] = (link_use){links[k], a, b, member_bytes * (weights ? weights[k] : 1)};
}

typedef struct rate_step {
  pf_simtime t;
  double delta; /* bytes/ns (GB/s) */
} rate_step;

static int cmp_step(const void *x, const void *y) {
  const rate_step *p = x, *q = y;
  return (p->t > q->t) - (p->t < q->t);
}

static int cmp_use_link(const void *x, const void *y) {
  const link_use *p = x, *q = y;
  return (p->link > q->link) - (p->link < q->link);
}

typedef struct link_total {
  int32_t link;
  double bytes;
  size_t first, n; /* its uses, after sorting by link */
} link_total;

static int cmp_total_desc(const void *x, const void *y) {
  const link_total *p = x, *q = y;
  return (p->bytes < q->bytes) - (p->bytes > q->bytes);
}

static int cmp_total_link(const void *x, const void *y) {
  const link_total *p = x, *q = y;
  return (p->link > q->link) - (p->link < q->link);
}

/* The per-link rows: a counter per link that carried bytes (the busiest
 * PF_SIM_TRACE_LINKS at most), its traffic in GB/s over time, each flow
 * counted at its average rate from entering its links to its last byte. */
static int write_links(engine *e, FILE *f, int first) {
  link_total *tot = NULL;
  rate_step *st = NULL;
  size_t nt = 0, cap_st = 0;
  qsort(e->uses, e->n_uses, sizeof *e->uses, cmp_use_link);
  if ((tot = pf_mallocn(e->n_uses + 1, sizeof *tot)) == NULL) return PF_ENOMEM;
  for (size_t i = 0; i < e->n_uses; i++) {
    if (nt == 0 || tot[nt - 1].link != e->uses[i].link) tot[nt++] = (link_total){e->uses[i].link, 0, i, 0};
    tot[nt - 1].bytes += e->uses[i].bytes;
    tot[nt - 1].n++;
  }
  qsort(tot, nt, sizeof *tot, cmp_total_desc);
  if (nt > PF_SIM_TRACE_LINKS) nt = PF_SIM_TRACE_LINKS;
  qsort(tot, nt, sizeof *tot, cmp_total_link);
  if (nt > 0)
    fprintf(f, "%s{\"ph\":\"M\",\"name\":\"process_name\",\"pid\":%d,\"args\":{\"name\":"
               "\"links (GB/s)\"}}", first ? "" : ",\n", PF_SIM_TRACE_LINKS_PID);
  for (size_t k = 0; k < nt; k++) {
    char name[64];
    size_t n = 0;
    double v = 0;
    pf_simnet_link_name(e->net, tot[k].link, name, sizeof name);
    if (pf_grow((void **)&st, &cap_st, 2 * tot[k].n, sizeof *st) != 0) {
      free(tot);
      return PF_ENOMEM;
    }
    for (size_t i = tot[k].first; i < tot[k].first + tot[k].n; i++) {
      const link_use *u = &e->uses[i];
      double rate = u->b > u->a ? u->bytes / (double)(u->b - u->a) : 0;
      st[n++] = (rate_step){u->a, rate};
      st[n++] = (rate_step){u->b, -rate};
    }
    qsort(st, n, sizeof *st, cmp_step);
    for (size_t i = 0; i < n; i++) {
      v += st[i].delta;
      if (i + 1 < n && st[i + 1].t == st[i].t) continue; /* one sample an instant */
      fprintf(f, ",\n{\"ph\":\"C\",\"name\":\"%s\",\"pid\":%d,\"ts\":%.3f,"
                 "\"args\":{\"GB/s\":%.6g}}",
              name, PF_SIM_TRACE_LINKS_PID, (double)st[i].t * 1e-3, v < 1e-12 ? 0.0 : v);
    }
  }
  free(st);
  free(tot);
  return 0;
}

/* ",\"run\":N" for a node of run N - 1 of a workload, else "". */
static const char *run_arg(uint32_t run) {
  static char buf[32];
  if (run == 0) return "";
  snprintf(buf, sizeof buf, ",\"run\":%u", run - 1);
  return buf;
}

static int write_trace(engine *e, FILE *f) {
  int rc, first = 1;
  static const char *const kinds[] = {"", "", "load", "store", "compute", "send", "recv",
                                      "collective"};
  fprintf(f, "{\"displayTimeUnit\":\"ns\",\"traceEvents\":[\n");
  for (int64_t dev = 0; dev < e->n_devices; dev++)
    fprintf(f, "{\"ph\":\"M\",\"name\":\"process_name\",\"pid\":%" PRId64
               ",\"args\":{\"name\":\"device %" PRId64 "\"}},\n"
               "{\"ph\":\"M\",\"name\":\"thread_name\",\"pid\":%" PRId64
               ",\"tid\":0,\"args\":{\"name\":\"compute\"}},\n"
               "{\"ph\":\"M\",\"name\":\"thread_name\",\"pid\":%" PRId64
               ",\"tid\":1,\"args\":{\"name\":\"communication\"}},\n",
            dev, dev, dev, dev);
  for (int64_t i = 0; i < e->n_nodes; i++) {
    const node *n = &e->nodes[i];
    if (n->src->type == PF_CHAKRA_DELAY) continue; /* dispatch and start waits: no device row */
    fprintf(f, "%s{\"ph\":\"X\",\"name\":\"", first ? "" : ",\n");
    first = 0;
    for (const char *c = n->src->name; *c; c++) /* names are ours or a trace's: escape */
      if (*c == '"' || *c == '\\') fprintf(f, "\\%c", *c);
      else if ((unsigned char)*c < 0x20) fprintf(f, "\\u%04x", (unsigned char)*c);
      else fputc(*c, f);
    fprintf(f, "\",\"cat\":\"%s\",\"pid\":%" PRId64 ",\"tid\":%d,\"ts\":%.3f,\"dur\":%.3f,"
               "\"args\":{\"id\":%" PRIu64 "%s}}",
            kinds[n->src->type], n->device, n->src->type >= PF_CHAKRA_SEND, (double)n->start * 1e-3,
            (double)(n->end - n->start) * 1e-3, n->src->id, run_arg(n->src->run));
  }
  rc = write_links(e, f, first);
  fprintf(f, "\n]}\n");
  return rc;
}

/* ---- the run ------------------------------------------------------------------------------ */

void pf_sim_result_free(pf_sim_result *r) {
  if (r == NULL) return;
  free(r->busy);
  free(r->comm);
  free(r->exposed);
  free(r->path);
  free(r->run_start);
  free(r->run_end);
  free(r);
}

static void engine_free(engine *e) {
  free(e->nodes);
  free(e->base);
  free(e->succ_first);
  free(e->succ);
  for (int64_t dev = 0; e->ready_q && dev < e->n_devices; dev++) free(e->ready_q[dev]);
  free(e->ready_q);
  free(e->ready_head);
  free(e->ready_n);
  free(e->ready_cap);
  free(e->loop_free);
  free(e->busy_now);
  free(e->heap);
  for (size_t k = 0; k < e->n_colls; k++) free(e->colls[k].nodes);
  free(e->colls);
  free(e->all_devices);
  free(e->last_done);
  free(e->uses);
  pf_simnet_destroy(e->net);
}

int pf_sim_replay(pf_chakra_trace *const *traces, int64_t n_devices, const pf_sim_cluster *cl,
                  const pf_sim_options *opt, pf_sim_result **out, pf_diag *d) {
  static const pf_sim_options defaults = {0};
  engine e = {.cl = cl, .opt = opt ? opt : &defaults, .d = d, .n_devices = n_devices};
  pf_sim_result *r = pf_calloc(1, sizeof *r);
  int rc = 0;
  *out = NULL;
  if (r == NULL) return pf_diag_error(d, PF_ENOMEM, "sim: out of memory");
  e.res = r;
  r->n_devices = n_devices;
  if (n_devices < 1 || n_devices > cl->devices) {
    free(r);
    return pf_diag_error(d, PF_EINVAL, "sim: %" PRId64 " traces for a cluster of %" PRId64
                         " devices", n_devices, cl->devices);
  }
  e.base = pf_calloc((size_t)n_devices + 1, sizeof *e.base);
  e.all_devices = pf_mallocn((size_t)n_devices, sizeof *e.all_devices);
  e.ready_q = pf_calloc((size_t)n_devices, sizeof *e.ready_q);
  e.ready_head = pf_calloc((size_t)n_devices, sizeof *e.ready_head);
  e.ready_n = pf_calloc((size_t)n_devices, sizeof *e.ready_n);
  e.ready_cap = pf_calloc((size_t)n_devices, sizeof *e.ready_cap);
  e.busy_now = pf_calloc((size_t)n_devices, 1);
  e.last_done = pf_mallocn((size_t)n_devices, sizeof *e.last_done);
  e.loop_free = pf_calloc((size_t)n_devices, sizeof *e.loop_free);
  r->busy = pf_calloc((size_t)n_devices, sizeof *r->busy);
  r->comm = pf_calloc((size_t)n_devices, sizeof *r->comm);
  r->exposed = pf_calloc((size_t)n_devices, sizeof *r->exposed);
  if (!e.base || !e.all_devices || !e.ready_q || !e.ready_head || !e.ready_n || !e.ready_cap ||
      !e.busy_now || !e.last_done || !e.loop_free || !r->busy || !r->comm || !r->exposed) {
    rc = PF_ENOMEM;
    goto out;
  }
  for (int64_t dev = 0; dev < n_devices; dev++) {
    e.all_devices[dev] = dev;
    e.last_done[dev] = -1;
    e.base[dev + 1] = e.base[dev] + (traces[dev] ? traces[dev]->n_nodes : 0);
  }
  e.n_nodes = e.base[n_devices];
  if ((e.nodes = pf_calloc((size_t)e.n_nodes + 1, sizeof *e.nodes)) == NULL) {
    rc = PF_ENOMEM;
    goto out;
  }
  for (int64_t dev = 0; dev < n_devices; dev++)
    for (int64_t k = 0; k < e.base[dev + 1] - e.base[dev]; k++) {
      node *n = &e.nodes[e.base[dev] + k];
      n->src = &traces[dev]->nodes[k];
      n->device = dev;
      n->coll = -1;
      n->peer = -1;
      n->cause = -1;
    }
  if ((rc = build_edges(&e)) || (rc = match_transfers(&e)) || (rc = match_collectives(&e)) ||
      (rc = pf_simnet_create(cl, &e.net)))
    goto out;
  if (e.opt->trace) pf_simnet_observe(e.net, observe, &e);
  /* The step starts once its fixed cost is paid (a workload's own DELAY
   * nodes pay it for each of its runs). */
  for (int64_t i = 0; i < e.n_nodes && e.rc == 0; i++)
    if (e.nodes[i].pending == 0) node_ready(&e, i, e.opt->runs > 0 ? 0 : cl->step_ns, -1);
  while (e.rc == 0) {
    pf_simtime tn = pf_simnet_next(e.net), te = e.n_heap ? e.heap[0].t : PF_SIMTIME_MAX;
    if (tn == PF_SIMTIME_MAX && te == PF_SIMTIME_MAX) break;
    if (te <= tn) {
      if ((rc = pf_simnet_run(e.net, te)) != 0) break;
      while (e.n_heap && e.heap[0].t == te && e.rc == 0) {
        event ev = heap_pop(&e);
        int64_t dev = e.nodes[ev.node].device;
        e.events++;
        if (e.nodes[ev.node].src->type == PF_CHAKRA_RECV) { /* its data, through the loop */
          deliver(&e, ev.node, ev.t);
          continue;
        }
        if (e.nodes[ev.node].src->type == PF_CHAKRA_DELAY ||
            e.nodes[ev.node].src->type == PF_CHAKRA_COLL) { /* holds no device */
          node_done(&e, ev.node, ev.t, -1);
          continue;
        }
        e.busy_now[dev] = 0;
        e.last_done[dev] = ev.node;
        node_done(&e, ev.node, ev.t, -1);
        device_kick(&e, dev, ev.t);
      }
    } else if ((rc = pf_simnet_run(e.net, tn)) != 0) {
      break;
    }
  }
  if (rc == 0) rc = e.rc;
  if (rc == 0 && (int64_t)r->nodes < e.n_nodes) {
    for (int64_t i = 0; i < e.n_nodes; i++) {
      const node *n = &e.nodes[i];
      const char *why;
      if (n->state == DONE) continue;
      why = n->pending ? "dependencies that never complete"
            : n->src->type == PF_CHAKRA_RECV ? "a send that never comes"
            : n->src->type == PF_CHAKRA_COLL ? "devices of its group that never join"
                                             : "its device";
      rc = pf_diag_error(d, PF_ESTATE, "sim: %" PRId64 " of %" PRId64 " nodes never ran; device "
                         "%" PRId64 " node id %" PRIu64 " (\"%s\") waits for %s",
                         e.n_nodes - (int64_t)r->nodes, e.n_nodes, n->device, n->src->id,
                         n->src->name, why);
      break;
    }
  }
  if (rc == 0 && e.opt->runs > 0) rc = run_spans(&e);
  if (rc == 0) {
    pf_simnet_get_stats(e.net, &r->net);
    r->events = e.events + r->net.events;
    if ((rc = device_stats(&e)) == 0 && (rc = critical_path(&e)) == 0 && e.opt->trace)
      rc = write_trace(&e, e.opt->trace);
  }
out:
  if (rc == PF_ENOMEM && (d == NULL || d->code == 0)) pf_diag_error(d, rc, "sim: out of memory");
  engine_free(&e);
  if (rc != 0) {
    pf_sim_result_free(r);
    return rc;
  }
  *out = r;
  return 0;
}
