/* Several runs of several graphs as one set of traces (see workload.h). */
#include "sim/workload.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "base/util.h"
#include "sim/net.h"

/* A trace's node ids, for translating its dependencies: sorted (id, place). */
typedef struct id_place {
  uint64_t id;
  uint32_t place;
} id_place;

static int cmp_id_place(const void *a, const void *b) {
  const id_place *p = a, *q = b;
  return (p->id > q->id) - (p->id < q->id);
}

/* What the builder needs of one tenant's trace on one device. */
typedef struct view {
  const pf_chakra_trace *t; /* NULL or empty: nothing here */
  id_place *ids;
  uint8_t *is_dep;          /* per node: some node depends on it (not a sink) */
  uint32_t n_sinks;
  uint64_t n_deps;          /* the trace's own dependencies */
} view;

static int64_t place_of(const view *v, uint64_t id) {
  size_t lo = 0, hi = v->t->n_nodes;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    if (v->ids[mid].id < id) lo = mid + 1;
    else hi = mid;
  }
  return lo < v->t->n_nodes && v->ids[lo].id == id ? (int64_t)v->ids[lo].place : -1;
}

static uint64_t dep_at(const pf_chakra_node *n, uint32_t k) {
  return k < n->n_data_deps ? n->data_deps[k] : n->ctrl_deps[k - n->n_data_deps];
}

static int view_make(view *v, const pf_chakra_trace *t, int64_t dev, pf_diag *d) {
  memset(v, 0, sizeof *v);
  if (t == NULL || t->n_nodes == 0) return 0;
  v->t = t;
  v->ids = pf_mallocn(t->n_nodes, sizeof *v->ids);
  v->is_dep = pf_calloc(t->n_nodes, 1);
  if (v->ids == NULL || v->is_dep == NULL) return PF_ENOMEM;
  for (uint32_t i = 0; i < t->n_nodes; i++) v->ids[i] = (id_place){t->nodes[i].id, i};
  qsort(v->ids, t->n_nodes, sizeof *v->ids, cmp_id_place);
  for (uint32_t i = 0; i < t->n_nodes; i++) {
    const pf_chakra_node *n = &t->nodes[i];
    for (uint32_t k = 0; k < n->n_data_deps + n->n_ctrl_deps; k++) {
      int64_t p = place_of(v, dep_at(n, k));
      if (p < 0)
        return pf_diag_error(d, PF_EINVAL, "sim: device %" PRId64 " node id %" PRIu64
                             " (\"%s\"): depends on node id %" PRIu64 ", which its trace lacks",
                             dev, n->id, n->name, dep_at(n, k));
      v->is_dep[p] = 1;
      v->n_deps++;
    }
  }
  for (uint32_t i = 0; i < t->n_nodes; i++) v->n_sinks += !v->is_dep[i];
  return 0;
}

static void view_free(view *v) {
  free(v->ids);
  free(v->is_dep);
}

/* The order the controller sends the runs in: stride scheduling. */
static int dispatch_order(const pf_sim_tenant *t, int n, int64_t total, int32_t *order) {
  double *pass = pf_calloc((size_t)n, sizeof *pass);
  int64_t *left = pf_mallocn((size_t)n, sizeof *left);
  if (pass == NULL || left == NULL) {
    free(pass);
    free(left);
    return PF_ENOMEM;
  }
  for (int k = 0; k < n; k++) left[k] = t[k].runs;
  for (int64_t j = 0; j < total; j++) {
    int best = -1;
    for (int k = 0; k < n; k++)
      if (left[k] > 0 && (best < 0 || pass[k] < pass[best])) best = k;
    order[j] = best;
    pass[best] += 1.0 / t[best].weight;
    left[best]--;
  }
  free(pass);
  free(left);
  return 0;
}

/* Per tenant and device: when its run's message reaches the device, after
 * the controller sent the run. Sequential dispatch: stage s's message goes
 * once every earlier stage has started and said so (a round trip each). */
static int arrivals(const pf_sim_tenant *t, int64_t n_devices, const pf_simtime *lat,
                    pf_simtime *out) {
  int32_t n_stages = 1;
  pf_simtime *stage_lat, *offset;
  for (int64_t dv = 0; dv < n_devices && t->stage_of; dv++)
    if (t->stage_of[dv] + 1 > n_stages) n_stages = t->stage_of[dv] + 1;
  stage_lat = pf_calloc((size_t)n_stages, sizeof *stage_lat);
  offset = pf_calloc((size_t)n_stages + 1, sizeof *offset);
  if (stage_lat == NULL || offset == NULL) {
    free(stage_lat);
    free(offset);
    return PF_ENOMEM;
  }
  for (int64_t dv = 0; dv < n_devices && t->stage_of; dv++)
    if (t->stage_of[dv] >= 0 && lat[dv] > stage_lat[t->stage_of[dv]])
      stage_lat[t->stage_of[dv]] = lat[dv];
  for (int32_t s = 1; s <= n_stages; s++)
    offset[s] = offset[s - 1] + (t->sequential ? 2 * stage_lat[s - 1] : 0);
  for (int64_t dv = 0; dv < n_devices; dv++) {
    int32_t s = t->stage_of && t->stage_of[dv] >= 0 ? t->stage_of[dv] : 0;
    out[dv] = offset[s] + lat[dv];
  }
  free(stage_lat);
  free(offset);
  return 0;
}

void pf_sim_workload_free(pf_sim_workload *w) {
  if (w == NULL) return;
  for (int64_t dv = 0; dv < w->n_devices; dv++) {
    if (w->traces) free(w->traces[dv]);
    if (w->nodes) free(w->nodes[dv]);
    if (w->deps) free(w->deps[dv]);
  }
  free(w->traces);
  free(w->nodes);
  free(w->deps);
  free(w->run_tenant);
  free(w);
}

/* A DELAY node of the simulator's own. */
static pf_chakra_node *delay(pf_chakra_node *n, uint64_t id, const char *name, pf_simtime ns,
                             uint32_t run) {
  memset(n, 0, sizeof *n);
  n->id = id;
  n->name = (char *)name;
  n->type = PF_CHAKRA_DELAY;
  n->delay_ns = (uint64_t)ns;
  n->run = run;
  n->comm_src = n->comm_dst = -1;
  n->comm_type = -1;
  n->is_cpu_op = -1;
  return n;
}

/* Appends a dependency on id to n, from the pool at *pool. */
static void add_dep(pf_chakra_node *n, uint64_t **pool, uint64_t id) {
  if (n->n_ctrl_deps == 0) n->ctrl_deps = *pool;
  n->ctrl_deps[n->n_ctrl_deps++] = id;
  (*pool)++;
}

/* One device's trace: every run's controller step, and the runs of the
 * tenants that have nodes here. */
static int build_device(pf_sim_workload *w, const pf_sim_tenant *t, view *const *views,
                        const pf_simtime *const *arrive, const pf_sim_cluster *cl, int64_t dv) {
  uint64_t n_nodes = 0, n_deps = 0, id = 0, prev_c = 0, prev_gate = 0;
  int have_gate = 0;
  pf_chakra_node *nodes, *n;
  uint64_t *pool;
  pf_chakra_trace *tr;
  for (int64_t j = 0; j < w->n_runs; j++) {
    const view *v = &views[w->run_tenant[j]][dv];
    n_nodes++, n_deps++; /* the controller's step */
    if (v->t == NULL) continue;
    /* the message's way, the start, the run's nodes (sources wait for the
     * start), the gate after its sinks */
    n_nodes += 3 + v->t->n_nodes;
    n_deps += 1 + 2 + v->n_deps + v->t->n_nodes + v->n_sinks;
  }
  if (n_nodes > UINT32_MAX) return PF_ERANGE;
  nodes = pf_calloc((size_t)n_nodes + 1, sizeof *nodes);
  pool = pf_mallocn((size_t)n_deps + 1, sizeof *pool);
  tr = pf_calloc(1, sizeof *tr);
  w->nodes[dv] = nodes;
  w->deps[dv] = pool;
  w->traces[dv] = tr;
  if (nodes == NULL || pool == NULL || tr == NULL) return PF_ENOMEM;
  tr->version = (char *)"pathflow workload";
  tr->nodes = nodes;
  n = nodes;
  for (int64_t j = 0; j < w->n_runs; j++) {
    const view *v = &views[w->run_tenant[j]][dv];
    uint32_t run = (uint32_t)j + 1;
    uint64_t c = id++, r, s, base, gate;
    delay(n, c, "dispatch", cl->dispatch_ns, run);
    if (j > 0) add_dep(n, &pool, prev_c);
    n++;
    prev_c = c;
    if (v->t == NULL) continue;
    r = id++;
    add_dep(delay(n++, r, "run message", arrive[w->run_tenant[j]][dv], run), &pool, c);
    s = id++;
    delay(n, s, "step start", cl->step_ns, run);
    add_dep(n, &pool, r);
    if (have_gate) add_dep(n, &pool, prev_gate);
    n++;
    base = id;
    id += v->t->n_nodes;
    for (uint32_t i = 0; i < v->t->n_nodes; i++, n++) {
      const pf_chakra_node *src = &v->t->nodes[i];
      uint32_t nd = src->n_data_deps + src->n_ctrl_deps;
      *n = *src;
      n->id = base + i;
      n->run = run;
      n->data_deps = NULL;
      n->n_data_deps = 0;
      n->ctrl_deps = NULL;
      n->n_ctrl_deps = 0;
      /* Data and control dependencies alike: the replay waits for both. */
      for (uint32_t k = 0; k < nd; k++) add_dep(n, &pool, base + (uint64_t)place_of(v, dep_at(src, k)));
      if (nd == 0) add_dep(n, &pool, s);
    }
    gate = id++;
    delay(n, gate, "step end", 0, run);
    for (uint32_t i = 0; i < v->t->n_nodes; i++)
      if (!v->is_dep[i]) add_dep(n, &pool, base + i);
    n++;
    prev_gate = gate;
    have_gate = 1;
  }
  tr->n_nodes = (uint32_t)(n - nodes);
  return 0;
}

int pf_sim_workload_build(const pf_sim_tenant *tenants, int n, int64_t n_devices,
                          const pf_sim_cluster *cl, pf_sim_workload **out, pf_diag *d) {
  pf_sim_workload *w = NULL;
  view **views = NULL;
  pf_simtime *lat = NULL, **arrive = NULL;
  pf_simnet *net = NULL;
  int64_t total = 0;
  int rc = 0;
  *out = NULL;
  if (n < 1 || n_devices < 1 || n_devices > cl->devices)
    return pf_diag_error(d, PF_EINVAL, "sim: a workload of %d tenants on %" PRId64
                         " devices (the cluster has %" PRId64 ")", n, n_devices, cl->devices);
  for (int k = 0; k < n; k++) {
    if (!(tenants[k].weight > 0) || tenants[k].runs < 1)
      return pf_diag_error(d, PF_EINVAL, "sim: tenant %d: weight %g and %" PRId64
                           " runs (want a weight > 0 and at least one run)", k,
                           tenants[k].weight, tenants[k].runs);
    total += tenants[k].runs;
    if (total > INT32_MAX) return pf_diag_error(d, PF_ERANGE, "sim: more than 2^31 runs");
  }
  if ((w = pf_calloc(1, sizeof *w)) == NULL) return pf_diag_error(d, PF_ENOMEM, "sim: out of memory");
  w->n_devices = n_devices;
  w->n_runs = total;
  w->traces = pf_calloc((size_t)n_devices, sizeof *w->traces);
  w->nodes = pf_calloc((size_t)n_devices, sizeof *w->nodes);
  w->deps = pf_calloc((size_t)n_devices, sizeof *w->deps);
  w->run_tenant = pf_mallocn((size_t)total, sizeof *w->run_tenant);
  views = pf_calloc((size_t)n, sizeof *views);
  arrive = pf_calloc((size_t)n, sizeof *arrive);
  lat = pf_calloc((size_t)n_devices, sizeof *lat);
  if (!w->traces || !w->nodes || !w->deps || !w->run_tenant || !views || !arrive || !lat ||
      (rc = dispatch_order(tenants, n, total, w->run_tenant)) != 0 ||
      (rc = pf_simnet_create(cl, &net)) != 0) {
    rc = rc ? rc : PF_ENOMEM;
    goto out;
  }
  /* The controller is on device 0: its messages take the path's latency. */
  for (int64_t dv = 0; dv < n_devices; dv++) {
    double bw;
    if ((rc = pf_simnet_path(net, 0, dv, &lat[dv], &bw)) != 0) goto out;
  }
  for (int k = 0; k < n && rc == 0; k++) {
    views[k] = pf_calloc((size_t)n_devices, sizeof *views[k]);
    arrive[k] = pf_mallocn((size_t)n_devices, sizeof *arrive[k]);
    if (views[k] == NULL || arrive[k] == NULL) {
      rc = PF_ENOMEM;
      break;
    }
    for (int64_t dv = 0; dv < n_devices && rc == 0; dv++)
      rc = view_make(&views[k][dv], tenants[k].traces[dv], dv, d);
    if (rc == 0) rc = arrivals(&tenants[k], n_devices, lat, arrive[k]);
  }
  for (int64_t dv = 0; dv < n_devices && rc == 0; dv++)
    rc = build_device(w, tenants, views, (const pf_simtime *const *)arrive, cl, dv);
out:
  for (int k = 0; k < n && views; k++) {
    for (int64_t dv = 0; views[k] && dv < n_devices; dv++) view_free(&views[k][dv]);
    free(views[k]);
  }
  for (int k = 0; k < n && arrive; k++) free(arrive[k]);
  free(views);
  free(arrive);
  free(lat);
  pf_simnet_destroy(net);
  if (rc != 0) {
    pf_sim_workload_free(w);
    if (d == NULL || d->code == 0)
      pf_diag_error(d, rc, rc == PF_ERANGE ? "sim: a device's workload trace has over 2^32 nodes"
                                           : "sim: out of memory building the workload");
    return rc;
  }
  *out = w;
  return 0;
}
