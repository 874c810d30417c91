/* The job's communicator groups: one number per distinct list of ranks
 * that collectives run over, the same in every plan (pf_plan_comm.group).
 *
 * The scheduler numbers a plan's communicators for that plan only; the
 * MPI transport needs a number that every member of a list agrees on
 * without talking (it keeps each list's collectives apart by tag, with no
 * communicator to create: see transport/mpi_lane.c). Only the
 * controller compiles, so it numbers them, in the order it first meets
 * each list. A hash of the list finds it again: a job may have thousands. */
#include <stdlib.h>
#include <string.h>

#include "api/context_internal.h"
#include "base/mix64.h"
#include "base/util.h"

static uint64_t list_hash(const int32_t *ranks, uint32_t n) {
  uint64_t h = pf_mix64(n);
  for (uint32_t i = 0; i < n; i++) h = pf_mix64(h ^ (uint32_t)ranks[i]);
  return h;
}

static int same(const pf_comm_group *g, const int32_t *ranks, uint32_t n) {
  return g->n == n && memcmp(g->ranks, ranks, n * sizeof *ranks) == 0;
}

/* Rebuilds the index at twice the groups' number, at least 64 slots. */
static int reindex(pf_comm_groups *t) {
  size_t cap = 64;
  uint32_t *idx;
  while (cap < 2 * (t->n + 1)) cap *= 2;
  if ((idx = pf_mallocn(cap, sizeof *idx)) == NULL) return PF_ENOMEM;
  for (size_t i = 0; i < cap; i++) idx[i] = UINT32_MAX;
  for (size_t g = 0; g < t->n; g++) {
    size_t s = (size_t)t->list[g].hash & (cap - 1);
    while (idx[s] != UINT32_MAX) s = (s + 1) & (cap - 1);
    idx[s] = (uint32_t)g;
  }
  free(t->index);
  t->index = idx;
  t->index_cap = cap;
  return 0;
}

int pf_comm_group_of(pf_comm_groups *t, const int32_t *ranks, uint32_t n, uint32_t *out) {
  uint64_t h = list_hash(ranks, n);
  pf_comm_group *g;
  size_t s;
  if (t->index == NULL && reindex(t) != 0) return PF_ENOMEM;
  for (s = (size_t)h & (t->index_cap - 1); t->index[s] != UINT32_MAX;
       s = (s + 1) & (t->index_cap - 1)) {
    g = &t->list[t->index[s]];
    if (g->hash == h && same(g, ranks, n)) {
      *out = t->index[s];
      return 0;
    }
  }
  if (t->n >= UINT32_MAX - 1 ||
      pf_grow((void **)&t->list, &t->cap, t->n + 1, sizeof *t->list) != 0)
    return PF_ENOMEM;
  g = &t->list[t->n];
  if ((g->ranks = pf_mallocn(n ? n : 1, sizeof *ranks)) == NULL) return PF_ENOMEM;
  if (n) memcpy(g->ranks, ranks, n * sizeof *ranks);
  g->n = n;
  g->hash = h;
  *out = (uint32_t)t->n++;
  if (2 * t->n > t->index_cap) return reindex(t);
  t->index[s] = *out;
  return 0;
}

int pf_comm_groups_number(pf_comm_groups *t, pf_plan *const *plans, int n_plans) {
  for (int r = 0; r < n_plans; r++)
    for (uint32_t c = 0; plans[r] != NULL && c < plans[r]->n_comms; c++) {
      pf_plan_comm *pc = &plans[r]->comms[c];
      int rc = pf_comm_group_of(t, pc->ranks, pc->n_ranks, &pc->group);
      if (rc != 0) return rc;
    }
  return 0;
}

void pf_comm_groups_free(pf_comm_groups *t) {
  for (size_t g = 0; g < t->n; g++) free(t->list[g].ranks);
  free(t->list);
  free(t->index);
  memset(t, 0, sizeof *t);
}
