#include "sim/collective.h"

#include <stdlib.h>
#include <string.h>

#include "base/diag.h"
#include "base/util.h"

enum { RS, AG, AR }; /* what a ring does: reduce-scatter, allgather, both */

/* One ring of a phase: members[first .. first+m) of the phase, in ring
 * order, reducing `bytes`. */
typedef struct ring {
  int64_t first;
  int32_t m;
  uint64_t bytes;
} ring;

typedef struct phase {
  int kind;
  ring *rings;
  int64_t n_rings;
  int64_t *dev;     /* device of each member */
  int32_t *ring_of; /* ring of each member */
} phase;

/* A binary tree over devices dev[order(p)], p = 0 .. n-1, in heap order. */
typedef struct tree {
  int64_t *dev;
  uint64_t bytes;
  int32_t *up_next, *up_done, *down_recv, *down_next, *down_busy;
} tree;

typedef struct coll {
  pf_simnet *net;
  const pf_sim_cluster *cl; /* the runtime's cost per message: pf_sim_message_ns */
  pf_sim_coll_done done;
  void *arg;
  int algo;
  /* rings */
  phase *phases;
  int n_phases, cur;
  int per_flow;                  /* ring_flows: every flow on its own */
  int32_t *sent, *recvd, *sdone; /* per flow: per member of the current phase */
  int64_t flows_left;            /* per flow: in the current phase */
  int32_t *step, *parts;         /* bundled: per ring, its step and bundles in flight */
  int64_t rings_left;            /* bundled: rings of the current phase not done */
  pf_simnet_shape **shapes;      /* bundled: per ring, its step's flows (sim/net.h) */
  int64_t *bsrc, *bdst;          /* bundled: scratch for making a shape */
  uint64_t *bsize;               /* bundled: a step's sizes when they differ */
  /* trees */
  tree trees[2];
  int n_trees;
  int64_t n;
  int chunks;
  int64_t tree_flows_left;
  int failed;   /* a flow could not be sent (out of memory) */
  int64_t sent_flows; /* flows sent so far */
} coll;

static void coll_free(coll *c) {
  for (int i = 0; i < c->n_phases; i++) {
    free(c->phases[i].rings);
    free(c->phases[i].dev);
    free(c->phases[i].ring_of);
  }
  free(c->phases);
  free(c->sent);
  free(c->recvd);
  free(c->sdone);
  free(c->step);
  free(c->parts);
  for (int64_t q = 0; c->shapes && q < c->n; q++) pf_simnet_shape_destroy(c->net, c->shapes[q]);
  free(c->shapes);
  free(c->bsrc);
  free(c->bdst);
  free(c->bsize);
  for (int t = 0; t < 2; t++) {
    tree *tr = &c->trees[t];
    free(tr->dev);
    free(tr->up_next);
    free(tr->up_done);
    free(tr->down_recv);
    free(tr->down_next);
    free(tr->down_busy);
  }
  free(c);
}

static void finish(coll *c, pf_simtime now) {
  if (c->done) c->done(c->arg, now);
  coll_free(c);
}

/* Piece i of `bytes` cut in `parts`: the first bytes % parts pieces have
 * one byte more. */
static uint64_t piece(uint64_t bytes, uint64_t parts, uint64_t i) {
  return bytes / parts + (i < bytes % parts ? 1 : 0);
}

/* ---- rings ----------------------------------------------------------------- */

static void ring_flow_done(pf_simnet *net, void *arg, uint64_t tag, pf_simtime now);

static int ring_steps(const phase *ph, const ring *r) {
  return ph->kind == AR ? 2 * (r->m - 1) : r->m - 1;
}

/* The bytes ring member `pos` sends at step k: reduce-scatter steps send
 * chunk pos-k, allgather steps chunk pos+1-k' (k' counted from the start
 * of the allgather), all mod m. */
static uint64_t ring_chunk(const phase *ph, const ring *r, int64_t pos, int32_t k) {
  int64_t kk = ph->kind == AG ? k + (r->m - 1) : k;
  int64_t chunk = kk < r->m - 1 ? pos - kk : pos + 1 - (kk - (r->m - 1));
  chunk = ((chunk % r->m) + r->m) % r->m;
  return piece(r->bytes, (uint64_t)r->m, (uint64_t)chunk);
}

/* Per flow: sends member i's next step if the algorithm allows it now. */
static void ring_try(coll *c, int64_t i, pf_simtime now) {
  phase *ph = &c->phases[c->cur];
  ring *r = &ph->rings[ph->ring_of[i]];
  int32_t k = c->sent[i];
  if (k >= ring_steps(ph, r) || (k > 0 && (c->recvd[i] < k || c->sdone[i] < k))) return;
  int64_t pos = i - r->first, next = r->first + (pos + 1) % r->m;
  c->sent[i]++;
  c->sent_flows++;
  uint64_t bytes = ring_chunk(ph, r, pos, k);
  if (pf_simnet_send(c->net, ph->dev[i], ph->dev[next], bytes,
                     now + pf_sim_message_ns(c->cl, bytes, 1), ring_flow_done, c, (uint64_t)i) != 0)
    c->failed = 1;
}

static void ring_bundle_done(pf_simnet *net, void *arg, uint64_t tag, pf_simtime now);

/* Bundled: sends step c->step[q] of ring q, every member's flow at once
 * as the ring's shape (sim/net.h). The ring moves in lockstep: step k+1
 * starts when all of step k has arrived. With no link carrying two of a
 * step's flows that is what the per-flow rule (send k+1 once k is received
 * and sent) gives too: every member's chain of steps is then paced by the
 * slowest link, whose flows wait for nothing else. */
static void ring_step_send(coll *c, int64_t q, pf_simtime now) {
  phase *ph = &c->phases[c->cur];
  ring *r = &ph->rings[q];
  int parts = 0;
  const uint64_t *sizes = NULL;
  if (r->bytes % (uint64_t)r->m != 0) { /* chunks differ by a byte */
    for (int64_t pos = 0; pos < r->m; pos++) c->bsize[pos] = ring_chunk(ph, r, pos, c->step[q]);
    sizes = c->bsize;
  }
  if (pf_simnet_shape_send(c->net, c->shapes[q], sizes, r->bytes / (uint64_t)r->m,
                           now + pf_sim_message_ns(c->cl, r->bytes / (uint64_t)r->m, 1),
                           ring_bundle_done, c, (uint64_t)q, &parts) != 0)
    c->failed = 1;
  c->parts[q] = parts;
  c->sent_flows += parts;
}

/* Bundled: the shape of ring q of the current phase. */
static int ring_shape(coll *c, int64_t q) {
  phase *ph = &c->phases[c->cur];
  ring *r = &ph->rings[q];
  for (int64_t pos = 0; pos < r->m; pos++) {
    c->bsrc[pos] = ph->dev[r->first + pos];
    c->bdst[pos] = ph->dev[r->first + (pos + 1) % r->m];
  }
  return pf_simnet_shape_create(c->net, c->bsrc, c->bdst, (size_t)r->m, &c->shapes[q]);
}

static int phase_start(coll *c, pf_simtime now) {
  for (; c->cur < c->n_phases; c->cur++) {
    phase *ph = &c->phases[c->cur];
    if (!c->per_flow) {
      c->rings_left = 0;
      for (int64_t q = 0; q < ph->n_rings; q++) {
        c->step[q] = 0;
        if (ring_steps(ph, &ph->rings[q]) > 0) c->rings_left++;
      }
      if (c->rings_left == 0) continue;
      for (int64_t q = 0; q < ph->n_rings && !c->failed; q++) {
        if (ring_steps(ph, &ph->rings[q]) == 0) continue;
        if (ring_shape(c, q) != 0) c->failed = 1;
        else ring_step_send(c, q, now);
      }
      return 1;
    }
    int64_t members = ph->n_rings ? ph->rings[ph->n_rings - 1].first + ph->rings[ph->n_rings - 1].m : 0;
    c->flows_left = 0;
    for (int64_t r = 0; r < ph->n_rings; r++) c->flows_left += (int64_t)ring_steps(ph, &ph->rings[r]) * ph->rings[r].m;
    if (c->flows_left == 0) continue;
    memset(c->sent, 0, (size_t)members * sizeof *c->sent);
    memset(c->recvd, 0, (size_t)members * sizeof *c->recvd);
    memset(c->sdone, 0, (size_t)members * sizeof *c->sdone);
    for (int64_t i = 0; i < members; i++) ring_try(c, i, now);
    return 1;
  }
  return 0;
}

static void ring_flow_done(pf_simnet *net, void *arg, uint64_t tag, pf_simtime now) {
  coll *c = arg;
  phase *ph = &c->phases[c->cur];
  int64_t i = (int64_t)tag;
  ring *r = &ph->rings[ph->ring_of[i]];
  int64_t next = r->first + (i - r->first + 1) % r->m;
  c->sdone[i]++;
  c->recvd[next]++;
  ring_try(c, i, now);
  ring_try(c, next, now);
  if (--c->flows_left == 0) {
    c->cur++;
    if (!phase_start(c, now)) finish(c, now);
  }
}

static void ring_bundle_done(pf_simnet *net, void *arg, uint64_t tag, pf_simtime now) {
  coll *c = arg;
  phase *ph = &c->phases[c->cur];
  int64_t q = (int64_t)tag;
  if (--c->parts[q] > 0) return;
  if (++c->step[q] < ring_steps(ph, &ph->rings[q])) {
    ring_step_send(c, q, now);
    return;
  }
  pf_simnet_shape_destroy(c->net, c->shapes[q]);
  c->shapes[q] = NULL;
  if (--c->rings_left == 0) {
    c->cur++;
    if (!phase_start(c, now)) finish(c, now);
  }
}

/* A phase of `n_rings` rings of m members each; members filled by caller. */
static int phase_alloc(phase *ph, int kind, int64_t n_rings, int32_t m) {
  ph->kind = kind;
  ph->n_rings = n_rings;
  ph->rings = pf_calloc((size_t)n_rings, sizeof *ph->rings);
  ph->dev = pf_mallocn((size_t)(n_rings * m), sizeof *ph->dev);
  ph->ring_of = pf_mallocn((size_t)(n_rings * m), sizeof *ph->ring_of);
  if (ph->rings == NULL || ph->dev == NULL || ph->ring_of == NULL) return PF_ENOMEM;
  for (int64_t r = 0; r < n_rings; r++) {
    ph->rings[r].first = r * m;
    ph->rings[r].m = m;
    for (int32_t k = 0; k < m; k++) ph->ring_of[r * m + k] = (int32_t)r;
  }
  return 0;
}

/* Hierarchical: devices grouped grid[island][host][local]; sizes I, H, M.
 * The levels with more than one member, bottom up (host, island, world):
 * reduce-scatter on each but the top, allreduce on the top, allgather back
 * down. A ring at level L is one per combination of the other coordinates,
 * and reduces the piece its members hold after the levels below. */
static int build_hier(coll *c, const int64_t *grid, int64_t I, int64_t H, int64_t M, uint64_t bytes) {
  int64_t size[3] = {M, H, I};
  int lv[3], k = 0, order[5], kinds[5], np = 0;
  for (int L = 0; L < 3; L++)
    if (size[L] > 1) lv[k++] = L;
  for (int i = 0; i < k - 1; i++) { order[np] = lv[i]; kinds[np++] = RS; }
  order[np] = lv[k - 1];
  kinds[np++] = AR;
  for (int i = k - 2; i >= 0; i--) { order[np] = lv[i]; kinds[np++] = AG; }
  if ((c->phases = calloc((size_t)np, sizeof *c->phases)) == NULL) return PF_ENOMEM;
  c->n_phases = np;
  for (int q = 0; q < np; q++) {
    phase *ph = &c->phases[q];
    int L = order[q];
    int64_t r = 0;
    if (phase_alloc(ph, kinds[q], (I * H * M) / size[L], (int32_t)size[L]) != 0) return PF_ENOMEM;
    for (int64_t a = 0; a < I; a++)
      for (int64_t b = 0; b < H; b++)
        for (int64_t d = 0; d < M; d++) {
          int64_t coord[3] = {d, b, a};
          if (coord[L] != 0) continue;
          uint64_t part = bytes;
          for (int low = 0; low < L; low++) part = piece(part, (uint64_t)size[low], (uint64_t)coord[low]);
          ph->rings[r].bytes = part;
          for (int64_t x = 0; x < size[L]; x++) {
            coord[L] = x;
            ph->dev[r * size[L] + x] = grid[(coord[2] * H + coord[1]) * M + coord[0]];
          }
          r++;
        }
  }
  return 0;
}

/* ---- trees ------------------------------------------------------------------- */

static void tree_flow_done(pf_simnet *net, void *arg, uint64_t tag, pf_simtime now);

/* Tags: bit 0 up/down, bit 1 which tree, the rest the node. */
static void tree_send(coll *c, int t, int up, int64_t from, int64_t to, int32_t chunk, pf_simtime now) {
  tree *tr = &c->trees[t];
  uint64_t tag = ((uint64_t)(up ? from : to) << 2) | ((uint64_t)t << 1) | (uint64_t)up;
  c->sent_flows++;
  uint64_t bytes = piece(tr->bytes, (uint64_t)c->chunks, (uint64_t)chunk);
  if (pf_simnet_send(c->net, tr->dev[from], tr->dev[to], bytes,
                     now + pf_sim_message_ns(c->cl, bytes, 1), tree_flow_done, c, tag) != 0)
    c->failed = 1;
}

static int32_t reduced_at_root(const coll *c, const tree *tr) {
  int32_t m = c->chunks;
  for (int64_t ch = 1; ch <= 2 && ch < c->n; ch++)
    if (tr->up_done[ch] < m) m = tr->up_done[ch];
  return m;
}

static void tree_try_up(coll *c, int t, int64_t p, pf_simtime now) {
  tree *tr = &c->trees[t];
  int32_t k = tr->up_next[p];
  if (p == 0 || k >= c->chunks || tr->up_done[p] != k) return;
  for (int64_t ch = 2 * p + 1; ch <= 2 * p + 2 && ch < c->n; ch++)
    if (tr->up_done[ch] <= k) return;
  tr->up_next[p]++;
  tree_send(c, t, 1, p, (p - 1) / 2, k, now);
}

static void tree_try_down(coll *c, int t, int64_t p, pf_simtime now) {
  tree *tr = &c->trees[t];
  int32_t avail = p == 0 ? reduced_at_root(c, tr) : tr->down_recv[p], k = tr->down_next[p];
  if (2 * p + 1 >= c->n || k >= avail || tr->down_busy[p] != 0) return;
  tr->down_next[p]++;
  for (int64_t ch = 2 * p + 1; ch <= 2 * p + 2 && ch < c->n; ch++) {
    tr->down_busy[p]++;
    tree_send(c, t, 0, p, ch, k, now);
  }
}

static void tree_flow_done(pf_simnet *net, void *arg, uint64_t tag, pf_simtime now) {
  coll *c = arg;
  int up = (int)(tag & 1), t = (int)((tag >> 1) & 1);
  int64_t node = (int64_t)(tag >> 2), parent = (node - 1) / 2;
  tree *tr = &c->trees[t];
  if (up) {
    tr->up_done[node]++;
    tree_try_up(c, t, node, now);
    tree_try_up(c, t, parent, now);
    if (parent == 0) tree_try_down(c, t, 0, now);
  } else {
    tr->down_recv[node]++;
    tr->down_busy[parent]--;
    tree_try_down(c, t, node, now);
    tree_try_down(c, t, parent, now);
  }
  if (--c->tree_flows_left == 0) finish(c, now);
}

static int tree_alloc(tree *tr, int64_t n) {
  tr->dev = pf_mallocn((size_t)n, sizeof *tr->dev);
  tr->up_next = pf_calloc((size_t)n, sizeof(int32_t));
  tr->up_done = pf_calloc((size_t)n, sizeof(int32_t));
  tr->down_recv = pf_calloc((size_t)n, sizeof(int32_t));
  tr->down_next = pf_calloc((size_t)n, sizeof(int32_t));
  tr->down_busy = pf_calloc((size_t)n, sizeof(int32_t));
  return tr->dev && tr->up_next && tr->up_done && tr->down_recv && tr->down_next && tr->down_busy ? 0 : PF_ENOMEM;
}

/* ---- starting ----------------------------------------------------------------- */

static void trivial_done(pf_simnet *net, void *arg, uint64_t tag, pf_simtime now) { finish(arg, now); }

static int cmp_i64(const void *a, const void *b) {
  int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
  return (x > y) - (x < y);
}

/* Pairs (key, index), by key then index: a stable order. */
static int cmp_pair(const void *a, const void *b) {
  const int64_t *x = a, *y = b;
  return x[0] != y[0] ? (x[0] > y[0]) - (x[0] < y[0]) : (x[1] > y[1]) - (x[1] < y[1]);
}

/* Orders the devices [island][host][local] (keeping the given order within
 * a host) and checks that every host holds M of them and every island H
 * hosts. */
static int hier_grid(const pf_sim_cluster *cl, const int64_t *devices, int64_t n, int64_t **grid, int64_t *I,
                     int64_t *H, int64_t *M, pf_diag *diag) {
  int64_t *key = pf_mallocn((size_t)n, 2 * sizeof *key), m = 0, h = 0, islands = 0, run = 0, hosts_here = 0;
  int rc = 0;
  if (key == NULL || (*grid = pf_mallocn((size_t)n, sizeof **grid)) == NULL) {
    free(key);
    return pf_diag_error(diag, PF_ENOMEM, "allreduce: out of memory");
  }
  for (int64_t i = 0; i < n; i++) {
    pf_sim_place p;
    pf_sim_cluster_locate(cl, devices[i], &p);
    key[2 * i] = ((int64_t)p.island << 40) | p.host;
    key[2 * i + 1] = i;
  }
  qsort(key, (size_t)n, 2 * sizeof *key, cmp_pair);
  for (int64_t i = 0; i < n && rc == 0; i++) {
    run++;
    if (i + 1 < n && key[2 * i + 2] == key[2 * i]) continue;
    /* a host ends */
    if (m == 0) m = run;
    if (run != m)
      rc = pf_diag_error(diag, PF_EINVAL, "hierarchical allreduce: hosts hold different numbers of the devices "
                         "(%lld and %lld)", (long long)m, (long long)run);
    run = 0;
    hosts_here++;
    if (i + 1 < n && key[2 * i + 2] >> 40 == key[2 * i] >> 40) continue;
    /* an island ends */
    if (h == 0) h = hosts_here;
    if (rc == 0 && hosts_here != h)
      rc = pf_diag_error(diag, PF_EINVAL, "hierarchical allreduce: islands hold different numbers of the hosts "
                         "(%lld and %lld)", (long long)h, (long long)hosts_here);
    hosts_here = 0;
    islands++;
  }
  for (int64_t i = 0; i < n; i++) (*grid)[i] = devices[key[2 * i + 1]];
  free(key);
  if (rc != 0) {
    free(*grid);
    return rc;
  }
  *I = islands;
  *H = h;
  *M = m;
  return 0;
}

int pf_sim_allreduce(pf_simnet *net, const pf_sim_cluster *cl, pf_sim_algo algo, const int64_t *devices,
                     int64_t n, uint64_t bytes, int chunks, pf_simtime start, pf_sim_coll_done done, void *arg,
                     pf_diag *diag) {
  coll *c;
  int rc = 0;
  if (n < 1 || (unsigned)algo >= PF_SIM_ALGO_COUNT || chunks < 1 || start < pf_simnet_now(net))
    return pf_diag_error(diag, PF_EINVAL, "allreduce: n = %lld, chunks = %d, start %lld (now %lld): %s",
                         (long long)n, chunks, (long long)start, (long long)pf_simnet_now(net),
                         n < 1 ? "no device" : chunks < 1 ? "chunks must be >= 1"
                         : start < pf_simnet_now(net) ? "start is in the past" : "unknown algorithm");
  {
    int64_t *sorted = pf_mallocn((size_t)n, sizeof *sorted);
    if (sorted == NULL) return pf_diag_error(diag, PF_ENOMEM, "allreduce: out of memory");
    memcpy(sorted, devices, (size_t)n * sizeof *sorted);
    qsort(sorted, (size_t)n, sizeof *sorted, cmp_i64);
    for (int64_t i = 0; i < n && rc == 0; i++) {
      if (sorted[i] < 0 || sorted[i] >= cl->devices)
        rc = pf_diag_error(diag, PF_ERANGE, "allreduce: device %lld is not in the cluster (0 .. %lld)",
                           (long long)sorted[i], (long long)cl->devices - 1);
      else if (i > 0 && sorted[i] == sorted[i - 1])
        rc = pf_diag_error(diag, PF_EINVAL, "allreduce: device %lld appears twice", (long long)sorted[i]);
    }
    free(sorted);
    if (rc != 0) return rc;
  }
  if ((c = calloc(1, sizeof *c)) == NULL) return pf_diag_error(diag, PF_ENOMEM, "allreduce: out of memory");
  c->net = net;
  c->cl = cl;
  c->done = done;
  c->arg = arg;
  c->algo = algo;
  c->n = n;
  c->chunks = chunks;
  if (n == 1 || bytes == 0) {
    if ((rc = pf_simnet_send(net, devices[0], devices[0], 0, start, trivial_done, c, 0)) != 0) goto fail;
    return 0;
  }
  if (algo == PF_SIM_RING || algo == PF_SIM_RING_FLOWS || algo == PF_SIM_HIERARCHICAL) {
    c->per_flow = algo == PF_SIM_RING_FLOWS;
    if (algo != PF_SIM_HIERARCHICAL) {
      if ((c->phases = calloc(1, sizeof *c->phases)) == NULL) { rc = PF_ENOMEM; goto fail; }
      c->n_phases = 1;
      if ((rc = phase_alloc(&c->phases[0], AR, 1, (int32_t)n)) != 0) goto fail;
      memcpy(c->phases[0].dev, devices, (size_t)n * sizeof *devices);
      c->phases[0].rings[0].bytes = bytes;
    } else {
      int64_t *grid, I = 1, H = 1, M = 1;
      if ((rc = hier_grid(cl, devices, n, &grid, &I, &H, &M, diag)) != 0) { coll_free(c); return rc; }
      rc = build_hier(c, grid, I, H, M, bytes);
      free(grid);
      if (rc != 0) goto fail;
    }
    c->sent = pf_calloc((size_t)n, sizeof *c->sent);
    c->recvd = pf_calloc((size_t)n, sizeof *c->recvd);
    c->sdone = pf_calloc((size_t)n, sizeof *c->sdone);
    c->step = pf_calloc((size_t)n, sizeof *c->step);
    c->parts = pf_calloc((size_t)n, sizeof *c->parts);
    c->shapes = pf_calloc((size_t)n, sizeof *c->shapes);
    c->bsrc = pf_mallocn((size_t)n, sizeof *c->bsrc);
    c->bdst = pf_mallocn((size_t)n, sizeof *c->bdst);
    c->bsize = pf_mallocn((size_t)n, sizeof *c->bsize);
    if (c->sent == NULL || c->recvd == NULL || c->sdone == NULL || c->step == NULL || c->parts == NULL ||
        c->shapes == NULL ||
        c->bsrc == NULL || c->bdst == NULL || c->bsize == NULL) {
      rc = PF_ENOMEM;
      goto fail;
    }
    c->cur = 0;
    if (!phase_start(c, start)) {
      if ((rc = pf_simnet_send(net, devices[0], devices[0], 0, start, trivial_done, c, 0)) != 0) goto fail;
    } else if (c->failed) {
      rc = PF_ENOMEM;
      goto fail;
    }
    return 0;
  }
  c->n_trees = algo == PF_SIM_DOUBLE_TREE ? 2 : 1;
  for (int t = 0; t < c->n_trees; t++) {
    tree *tr = &c->trees[t];
    if ((rc = tree_alloc(tr, n)) != 0) goto fail;
    for (int64_t p = 0; p < n; p++) tr->dev[p] = t == 0 ? devices[p] : devices[n - 1 - p];
    tr->bytes = c->n_trees == 1 ? bytes : piece(bytes, 2, (uint64_t)t);
    c->tree_flows_left += 2 * (n - 1) * (int64_t)chunks;
  }
  for (int t = 0; t < c->n_trees; t++)
    for (int64_t p = n - 1; p > 0; p--) tree_try_up(c, t, p, start);
  if (c->failed) { rc = PF_ENOMEM; goto fail; }
  return 0;
fail:
  if (rc == PF_ENOMEM) pf_diag_error(diag, PF_ENOMEM, "allreduce: out of memory");
  /* Flows already sent hold c: it stays, and the collective never
   * completes (its callback is never called), rather than freed under them. */
  if (c->sent_flows == 0) coll_free(c);
  return rc;
}

const char *pf_sim_algo_name(pf_sim_algo algo) {
  static const char *const names[] = {"ring", "tree", "double_tree", "hierarchical", "ring_flows"};
  return (unsigned)algo < PF_SIM_ALGO_COUNT ? names[algo] : "?";
}

int pf_sim_algo_parse(const char *name) {
  for (int a = 0; a < PF_SIM_ALGO_COUNT; a++)
    if (strcmp(name, pf_sim_algo_name((pf_sim_algo)a)) == 0) return a;
  return -1;
}
