/* Compiled plans as Chakra execution traces (see chakra_export.h). */
#include "sim/chakra_export.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/util.h"
#include "pathflow/graph.h"

/* Input specs of a kernel op live on the stack up to this many. */
#define ARGS_ON_STACK 64

typedef struct exporter {
  const pf_compiled *c;
  const pf_cluster *cl;
  pf_registry *reg;
  pf_diag *d;
  pf_chakra_trace **traces; /* per global device */
  size_t *caps;
  int32_t *global_base; /* per rank: global index of... see global_of */
  int32_t *send_dev, *recv_dev; /* per transfer tag: global device */
  uint64_t next_extra;          /* synthesized send/receive pairs so far */
  /* Collectives over communicators, sorted by (comm, k, rank). */
  struct coll_entry {
    int32_t comm, rank, k, device;
  } *colls;
  size_t n_colls;
} exporter;

/* The global device of (rank, local); -1 if the cluster has none. */
static int32_t global_of(const exporter *x, int32_t rank, int32_t local) {
  const pf_cluster *cl = x->cl;
  int32_t g;
  if (rank < 0 || rank >= cl->n_ranks) return -1;
  g = x->global_base[rank] + local;
  if (g < 0 || g >= cl->n_devices || cl->devices[g].rank != rank || cl->devices[g].local != local)
    return -1;
  return g;
}

static int64_t buffer_bytes(const pf_plan *p, uint32_t b) {
  return (int64_t)pf_spec_nbytes(p->buffers[b].spec);
}

static int64_t box_bytes(const pf_plan *p, const pf_plan_op *op) {
  int64_t n = 1;
  if (op->box == NULL) return 0; /* pf_plan_check refuses it; a hand-made plan may lack one */
  for (int k = 0; k < op->box->rank; k++) n *= op->box->extent[k];
  /* A receive has no input: its element type is its output's. */
  return n * (int64_t)pf_dtype_size(
                 p->buffers[op->n_in ? op->inputs[0] : op->outputs[0]].spec->dtype);
}

static pf_chakra_node *new_node(exporter *x, int32_t device, uint64_t id, const char *name,
                                int shard, int num_shards, int32_t type) {
  pf_chakra_trace *t = x->traces[device];
  pf_chakra_node *n;
  char buf[PF_NAME_MAX + 32];
  if (pf_grow((void **)&t->nodes, &x->caps[device], (size_t)t->n_nodes + 1, sizeof *t->nodes))
    return NULL;
  n = &t->nodes[t->n_nodes++];
  memset(n, 0, sizeof *n);
  if (num_shards > 1)
    snprintf(buf, sizeof buf, "%s[%d/%d]", name, shard, num_shards);
  else
    snprintf(buf, sizeof buf, "%s", name);
  n->id = id;
  n->type = type;
  n->comm_src = n->comm_dst = -1;
  n->comm_type = -1;
  n->is_cpu_op = -1;
  n->name = pf_strdup(buf);
  return n->name ? n : NULL;
}

static int add_dep(pf_chakra_node *n, uint64_t id) {
  uint64_t *deps = realloc(n->data_deps, ((size_t)n->n_data_deps + 1) * sizeof *deps);
  if (deps == NULL) return PF_ENOMEM;
  deps[n->n_data_deps++] = id;
  n->data_deps = deps;
  return 0;
}

static int cmp_coll(const void *a, const void *b) {
  const struct coll_entry *p = a, *q = b;
  if (p->comm != q->comm) return p->comm < q->comm ? -1 : 1;
  if (p->k != q->k) return p->k < q->k ? -1 : 1;
  return (p->rank > q->rank) - (p->rank < q->rank);
}

/* Where every transfer starts and ends, and who meets in each collective. */
static int index_plans(exporter *x) {
  const pf_compiled *c = x->c;
  size_t cap = 0;
  uint64_t nt = c->n_transfers;
  x->send_dev = pf_mallocn(nt ? nt : 1, sizeof *x->send_dev);
  x->recv_dev = pf_mallocn(nt ? nt : 1, sizeof *x->recv_dev);
  if (!x->send_dev || !x->recv_dev) return pf_diag_error(x->d, PF_ENOMEM, "export: out of memory");
  for (uint64_t t = 0; t < nt; t++) x->send_dev[t] = x->recv_dev[t] = -1;
  for (int r = 0; r < c->n_ranks; r++) {
    const pf_plan *p = c->plans[r];
    int32_t *k_of = NULL; /* per communicator: collectives seen on this rank */
    int32_t n_k = 0;
    if (p == NULL) continue;
    for (uint32_t i = 0; i < p->n_ops; i++) {
      const pf_plan_op *op = &p->ops[i];
      int32_t g = global_of(x, r, op->device);
      if (g < 0)
        return pf_diag_error(x->d, PF_EINVAL, "export: rank %d op %u is on device %d, which "
                             "the cluster does not have", r, i, op->device);
      if (op->kind == PF_OP_SEND || op->kind == PF_OP_RECV) {
        if (op->tag < 0 || (uint64_t)op->tag >= nt)
          return pf_diag_error(x->d, PF_EINVAL, "export: rank %d op %u: tag %lld out of range",
                               r, i, (long long)op->tag);
        (op->kind == PF_OP_SEND ? x->send_dev : x->recv_dev)[op->tag] = g;
      } else if (op->kind == PF_OP_COLLECTIVE && op->comm >= 0) {
        if (op->comm >= n_k) {
          int32_t *nk = realloc(k_of, (size_t)(op->comm + 1) * sizeof *nk);
          if (nk == NULL) {
            free(k_of);
            return pf_diag_error(x->d, PF_ENOMEM, "export: out of memory");
          }
          memset(nk + n_k, 0, (size_t)(op->comm + 1 - n_k) * sizeof *nk);
          k_of = nk;
          n_k = op->comm + 1;
        }
        if (pf_grow((void **)&x->colls, &cap, x->n_colls + 1, sizeof *x->colls)) {
          free(k_of);
          return pf_diag_error(x->d, PF_ENOMEM, "export: out of memory");
        }
        x->colls[x->n_colls++] = (struct coll_entry){op->comm, r, k_of[op->comm]++, g};
      }
    }
    free(k_of);
  }
  for (uint64_t t = 0; t < nt; t++)
    if (x->send_dev[t] < 0 || x->recv_dev[t] < 0)
      return pf_diag_error(x->d, PF_EINVAL, "export: transfer tag %llu has a %s but no %s",
                           (unsigned long long)t, x->send_dev[t] < 0 ? "receive" : "send",
                           x->send_dev[t] < 0 ? "send" : "receive");
  if (x->n_colls) qsort(x->colls, x->n_colls, sizeof *x->colls, cmp_coll);
  return 0;
}

/* The devices meeting in the k-th collective on `comm`. */
static int set_group(exporter *x, pf_chakra_node *n, int32_t comm, int32_t k) {
  size_t lo = 0, hi = x->n_colls, m = 0;
  while (lo < hi) { /* first entry >= (comm, k) */
    size_t mid = (lo + hi) / 2;
    const struct coll_entry *e = &x->colls[mid];
    if (e->comm < comm || (e->comm == comm && e->k < k)) lo = mid + 1;
    else hi = mid;
  }
  while (lo + m < x->n_colls && x->colls[lo + m].comm == comm && x->colls[lo + m].k == k) m++;
  if ((n->group = pf_mallocn(m ? m : 1, sizeof *n->group)) == NULL) return PF_ENOMEM;
  n->n_group = (uint32_t)m;
  for (size_t i = 0; i < m; i++) n->group[i] = x->colls[lo + i].device;
  return 0;
}

static int kernel_cost(exporter *x, const pf_plan *p, const pf_plan_op *op, pf_chakra_node *n) {
  pf_spec in_st[ARGS_ON_STACK], out_st[PF_MAX_OUTS];
  pf_spec *in = op->n_in <= ARGS_ON_STACK ? in_st : pf_mallocn(op->n_in, sizeof *in);
  const pf_kernel *k = pf_registry_find(x->reg, op->kernel, PF_DEVICE_CPU);
  pf_cost cost = {0, 0};
  if (in == NULL || op->n_out > PF_MAX_OUTS) {
    if (in != in_st) free(in);
    return PF_ENOMEM;
  }
  for (uint32_t i = 0; i < op->n_in; i++) in[i] = *p->buffers[op->inputs[i]].spec;
  for (uint32_t i = 0; i < op->n_out; i++) out_st[i] = *p->buffers[op->outputs[i]].spec;
  if (k != NULL && k->def.cost != NULL)
    k->def.cost(op->attrs, (int)op->n_in, in, (int)op->n_out, out_st, &cost);
  else
    pf_default_cost(op->attrs, (int)op->n_in, in, (int)op->n_out, out_st, &cost);
  n->num_ops = cost.flops > 0 ? (uint64_t)cost.flops : 0;
  n->tensor_size = cost.bytes > 0 ? (uint64_t)cost.bytes : 0;
  if (in != in_st) free(in);
  /* The simulator's per-kernel efficiency (device_types.*.kernel_efficiency). */
  if (op->kernel != NULL && strlen(op->kernel) <= PF_CHAKRA_KERNEL_MAX &&
      (n->kernel = pf_strdup(op->kernel)) == NULL)
    return PF_ENOMEM;
  return 0;
}

/* Bytes of `dep`'s outputs that `op` reads. */
static int64_t bytes_between(const pf_plan *p, const pf_plan_op *dep, const pf_plan_op *op) {
  int64_t bytes = 0;
  for (uint32_t a = 0; a < dep->n_out; a++)
    for (uint32_t b = 0; b < op->n_in; b++)
      if (dep->outputs[a] == op->inputs[b]) {
        bytes += buffer_bytes(p, op->inputs[b]);
        break;
      }
  return bytes;
}

static int export_rank(exporter *x, int r) {
  const pf_plan *p = x->c->plans[r];
  int32_t *k_of = NULL, n_k = 0;
  /* Per local device: its last op that runs on the device itself (kernel,
   * copy, collective among this rank's devices). The device runs those in
   * gang order: each waits for the one before (a control dependency). */
  int64_t *last_on_device = pf_mallocn(p->num_devices > 0 ? (size_t)p->num_devices : 1,
                                       sizeof *last_on_device);
  int rc = 0;
  if (last_on_device == NULL) return pf_diag_error(x->d, PF_ENOMEM, "export: out of memory");
  for (int32_t k = 0; k < p->num_devices; k++) last_on_device[k] = -1;
  for (uint32_t i = 0; i < p->n_ops && rc == 0; i++) {
    const pf_plan_op *op = &p->ops[i];
    int32_t g = global_of(x, r, op->device), type = PF_CHAKRA_COMP;
    pf_chakra_node *n;
    if (op->kind == PF_OP_SEND) type = PF_CHAKRA_SEND;
    else if (op->kind == PF_OP_RECV) type = PF_CHAKRA_RECV;
    else if (op->kind == PF_OP_COLLECTIVE && op->comm >= 0) type = PF_CHAKRA_COLL;
    if ((n = new_node(x, g, i, op->name, op->shard, op->num_shards, type)) == NULL) {
      rc = PF_ENOMEM;
      break;
    }
    switch (op->kind) {
      case PF_OP_KERNEL: rc = kernel_cost(x, p, op, n); break;
      case PF_OP_COPY: n->tensor_size = 2 * (uint64_t)box_bytes(p, op); break;
      case PF_OP_SEND:
        n->comm_size = (uint64_t)box_bytes(p, op);
        n->comm_tag = op->tag;
        n->comm_dst = x->recv_dev[op->tag];
        break;
      case PF_OP_RECV:
        n->comm_size = (uint64_t)box_bytes(p, op);
        n->comm_tag = op->tag;
        n->comm_src = x->send_dev[op->tag];
        break;
      default: /* PF_OP_COLLECTIVE */
        if (op->comm < 0) { /* among this rank's devices: one op reading them all */
          for (uint32_t k = 0; k < op->n_in; k++) n->tensor_size += (uint64_t)buffer_bytes(p, op->inputs[k]);
          for (uint32_t k = 0; k < op->n_out; k++) n->tensor_size += (uint64_t)buffer_bytes(p, op->outputs[k]);
          break;
        }
        static const int32_t kinds[PF_COLLECTIVE_COUNT] = {
            [PF_ALLREDUCE] = PF_CHAKRA_ALL_REDUCE, [PF_ALLGATHER] = PF_CHAKRA_ALL_GATHER,
            [PF_REDUCE_SCATTER] = PF_CHAKRA_REDUCE_SCATTER,
            [PF_BROADCAST] = PF_CHAKRA_BROADCAST, [PF_ALL_TO_ALL] = PF_CHAKRA_ALL_TO_ALL};
        if (op->collective < 0 || op->collective >= PF_COLLECTIVE_COUNT) {
          rc = pf_diag_error(x->d, PF_EINVAL, "export: rank %d op %u: collective kind %d", r,
                             i, op->collective);
          break;
        }
        n->comm_type = kinds[op->collective];
        n->comm_size = op->n_in ? (uint64_t)buffer_bytes(p, op->inputs[0]) : 0;
        if (op->comm >= n_k) {
          int32_t *nk = realloc(k_of, (size_t)(op->comm + 1) * sizeof *nk);
          if (nk == NULL) {
            rc = PF_ENOMEM;
            break;
          }
          memset(nk + n_k, 0, (size_t)(op->comm + 1 - n_k) * sizeof *nk);
          k_of = nk;
          n_k = op->comm + 1;
        }
        rc = set_group(x, n, op->comm, k_of[op->comm]++);
        break;
    }
    if (rc == 0 && type == PF_CHAKRA_COMP && op->device >= 0 && op->device < p->num_devices) {
      if (last_on_device[op->device] >= 0) {
        uint64_t *c = realloc(n->ctrl_deps, ((size_t)n->n_ctrl_deps + 1) * sizeof *c);
        if (c == NULL) {
          rc = PF_ENOMEM;
          break;
        }
        c[n->n_ctrl_deps++] = (uint64_t)last_on_device[op->device];
        n->ctrl_deps = c;
      }
      last_on_device[op->device] = i;
    }
    /* Dependencies; one on another device of this rank becomes a transfer. */
    for (uint32_t e = 0; e < op->n_deps && rc == 0; e++) {
      const pf_plan_op *dep = &p->ops[op->deps[e]];
      int32_t dg = global_of(x, r, dep->device);
      uint64_t id, tag;
      pf_chakra_node *send, *recv;
      if (dg == g) {
        rc = add_dep(&x->traces[g]->nodes[x->traces[g]->n_nodes - 1], op->deps[e]);
        continue;
      }
      id = p->n_ops + x->next_extra;
      tag = x->c->n_transfers + x->next_extra++;
      if ((send = new_node(x, dg, id, dep->name, dep->shard, dep->num_shards, PF_CHAKRA_SEND)) ==
              NULL ||
          add_dep(send, op->deps[e]) != 0) {
        rc = PF_ENOMEM;
        break;
      }
      send->comm_dst = g;
      send->comm_tag = (int64_t)tag;
      send->comm_size = (uint64_t)bytes_between(p, dep, op);
      if ((recv = new_node(x, g, id, op->name, op->shard, op->num_shards, PF_CHAKRA_RECV)) ==
          NULL) {
        rc = PF_ENOMEM;
        break;
      }
      recv->comm_src = dg;
      recv->comm_tag = (int64_t)tag;
      recv->comm_size = send->comm_size;
      /* The op's node was the last of its trace before the receive. */
      n = &x->traces[g]->nodes[x->traces[g]->n_nodes - 2];
      rc = add_dep(n, id);
      /* Keep the op's node last, so later dependencies find it there. */
      if (rc == 0) {
        pf_chakra_node tmp = x->traces[g]->nodes[x->traces[g]->n_nodes - 1];
        x->traces[g]->nodes[x->traces[g]->n_nodes - 1] = *n;
        *n = tmp;
      }
    }
  }
  free(k_of);
  free(last_on_device);
  if (rc == PF_ENOMEM) return pf_diag_error(x->d, PF_ENOMEM, "export: out of memory");
  return rc;
}

int pf_chakra_from_plans(const pf_compiled *c, const pf_cluster *cl, pf_registry *reg,
                         pf_chakra_trace ***out, pf_diag *d) {
  exporter x = {.c = c, .cl = cl, .reg = reg, .d = d};
  int rc = 0;
  *out = NULL;
  if (c->n_ranks != cl->n_ranks)
    return pf_diag_error(d, PF_EINVAL, "export: plans for %d ranks, a cluster of %d", c->n_ranks,
                         cl->n_ranks);
  x.traces = pf_calloc((size_t)cl->n_devices, sizeof *x.traces);
  x.caps = pf_calloc((size_t)cl->n_devices, sizeof *x.caps);
  x.global_base = pf_mallocn((size_t)cl->n_ranks, sizeof *x.global_base);
  if (!x.traces || !x.caps || !x.global_base) {
    rc = pf_diag_error(d, PF_ENOMEM, "export: out of memory");
    goto out;
  }
  for (int r = 0; r < cl->n_ranks; r++) x.global_base[r] = -1;
  for (int g = cl->n_devices - 1; g >= 0; g--) {
    const pf_cluster_device *dv = &cl->devices[g];
    if (dv->rank >= 0 && dv->rank < cl->n_ranks && dv->local == 0) x.global_base[dv->rank] = g;
  }
  for (int g = 0; g < cl->n_devices; g++)
    if ((x.traces[g] = pf_calloc(1, sizeof *x.traces[g])) == NULL ||
        (x.traces[g]->version = pf_strdup("pathflow")) == NULL) {
      rc = pf_diag_error(d, PF_ENOMEM, "export: out of memory");
      goto out;
    }
  if ((rc = index_plans(&x)) != 0) goto out;
  for (int r = 0; r < c->n_ranks && rc == 0; r++)
    if (c->plans[r] != NULL) rc = export_rank(&x, r);
out:
  if (rc != 0 && x.traces != NULL) {
    for (int g = 0; g < cl->n_devices; g++) pf_chakra_free(x.traces[g]);
    free(x.traces);
    x.traces = NULL;
  }
  free(x.caps);
  free(x.global_base);
  free(x.send_dev);
  free(x.recv_dev);
  free(x.colls);
  *out = x.traces;
  return rc;
}

int pf_chakra_export(const pf_compiled *c, const pf_cluster *cl, pf_registry *reg,
                     const char *prefix, pf_diag *d) {
  pf_chakra_trace **t;
  int rc = pf_chakra_from_plans(c, cl, reg, &t, d);
  if (rc != 0) return rc;
  for (int g = 0; g < cl->n_devices; g++) {
    char path[4096];
    if (rc == 0) {
      snprintf(path, sizeof path, "%s.%d.et", prefix, g);
      rc = pf_chakra_write(path, t[g], d);
    }
    pf_chakra_free(t[g]);
  }
  free(t);
  return rc;
}
