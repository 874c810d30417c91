/* Collectives of groups of ranks sharing one communicator (the MPI
 * transport's lanes: transport/mpi_lane.c, mpi_exchange.c), through the
 * transport interface, on the ranks mpirun gives (2 to 4):
 *  - making a group's communicator sends nothing: rank 0 alone makes one
 *    the others never make (it used to be a blocking collective over the
 *    group: this hung), and the same group number with another list of
 *    ranks is refused, as is a number past the transport's tags;
 *  - allgather, all-to-all, reduce-scatter (every dtype, sum, max, min)
 *    and broadcast from every root, at sizes from nothing to rendezvous,
 *    over groups in rank order, in reverse order, of two ranks (the last
 *    and 0), and without rank 0, all in flight at once, give what MPI's
 *    own collectives give over communicators of the same ranks in the
 *    same order. */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/util.h"
#include "graph/collective.h"
#include "pathflow/error.h"
#include "transport/mpi.h"
#include "mpi_check.h"


enum { MAX_GROUPS = 4, MAX_RANKS = 4 };

typedef struct group {
  int32_t ranks[MAX_RANKS];
  int n, me;                /* me: this rank's place, -1 if not a member */
  MPI_Comm ref;             /* MPI's communicator of the same ranks, same order */
  pf_transport_comm *comm;  /* the transport's */
} group;

static int rank, size, n_groups;
static group groups[MAX_GROUPS];
static pf_transport *t;

static void add_group(const int32_t *ranks, int n) {
  group *g = &groups[n_groups];
  g->n = n;
  g->me = -1;
  for (int i = 0; i < n; i++) {
    g->ranks[i] = ranks[i];
    if (ranks[i] == rank) g->me = i;
  }
  CHECK(MPI_Comm_split(MPI_COMM_WORLD, g->me >= 0 ? 1 : MPI_UNDEFINED, g->me, &g->ref) ==
        MPI_SUCCESS);
  CHECK(t->ops->comm_for(t, g->ranks, n, (uint32_t)(n_groups + 10), &g->comm) == 0);
  n_groups++;
}

static void done_cb(void *arg, int status) {
  CHECK(status == 0);
  (*(int *)arg)++;
}

static void wait_for(const int *done, int want) {
  while (*done < want) CHECK(t->ops->progress(t) >= 0);
}

/* Integer values (exact sums in every dtype), of both signs. */
static void fill(void *p, pf_dtype dt, size_t n, int seed) {
  for (size_t i = 0; i < n; i++) {
    int v = (int)((seed * 7 + rank * 13 + (int)i * 3) % 29) - 14;
    switch (dt) {
      case PF_F32: ((float *)p)[i] = (float)v; break;
      case PF_F64: ((double *)p)[i] = v; break;
      case PF_I32: ((int32_t *)p)[i] = v; break;
      case PF_I64: ((int64_t *)p)[i] = v; break;
      default: ((uint8_t *)p)[i] = (uint8_t)v; break;
    }
  }
}

/* One case on every group this rank is in, all in flight at once, then
 * each compared with MPI's. count: elements per block (reductions) or
 * bytes per block. */
static void one_case(pf_collective_kind kind, pf_dtype dt, pf_reduce_op op, size_t count,
                     int root, int seed) {
  void *send[MAX_GROUPS] = {0}, *recv[MAX_GROUPS] = {0}, *want[MAX_GROUPS] = {0};
  size_t es = kind == PF_REDUCE_SCATTER ? pf_dtype_size(dt) : 1, blk = count * es;
  int done = 0, started = 0;
  for (int k = 0; k < n_groups; k++) {
    group *g = &groups[k];
    size_t in_n = kind == PF_ALLGATHER || kind == PF_BROADCAST ? count : count * (size_t)g->n;
    size_t out_bytes = kind == PF_REDUCE_SCATTER || kind == PF_BROADCAST ? blk : blk * (size_t)g->n;
    pf_collective_call c = {.kind = kind, .count = count, .bytes = blk, .dtype = dt,
                            .reduce_op = op, .root = root % g->n};
    if (g->me < 0) continue;
    CHECK((send[k] = malloc(in_n * es + 1)) && (recv[k] = malloc(out_bytes + 1)) &&
          (want[k] = malloc(out_bytes + 1)));
    fill(send[k], kind == PF_REDUCE_SCATTER ? dt : PF_U8, in_n, seed + k);
    switch (kind) {
      case PF_ALLGATHER:
        MPI_Allgather(send[k], (int)blk, MPI_BYTE, want[k], (int)blk, MPI_BYTE, g->ref);
        break;
      case PF_ALL_TO_ALL:
        MPI_Alltoall(send[k], (int)blk, MPI_BYTE, want[k], (int)blk, MPI_BYTE, g->ref);
        break;
      case PF_REDUCE_SCATTER:
        MPI_Reduce_scatter_block(send[k], want[k], (int)count, pf_mpi_dtype(dt), pf_mpi_op(op),
                                 g->ref);
        break;
      default: /* broadcast: the root's send is its recv */
        memcpy(want[k], send[k], blk);
        MPI_Bcast(want[k], (int)blk, MPI_BYTE, c.root, g->ref);
        memset(recv[k], 0xee, blk);
        if (g->me == c.root) memcpy(recv[k], send[k], blk);
        break;
    }
  }
  for (int k = 0; k < n_groups; k++) {
    group *g = &groups[k];
    pf_collective_call c = {.kind = kind, .send = send[k], .recv = recv[k], .count = count,
                            .bytes = blk, .dtype = dt, .reduce_op = op, .root = root % g->n};
    if (g->me < 0) continue;
    CHECK(t->ops->collective(t, g->comm, &c, done_cb, &done) == 0);
    started++;
  }
  wait_for(&done, started);
  for (int k = 0; k < n_groups; k++) {
    group *g = &groups[k];
    size_t out_bytes = kind == PF_REDUCE_SCATTER || kind == PF_BROADCAST ? blk : blk * (size_t)g->n;
    if (g->me < 0) continue;
    if (memcmp(recv[k], want[k], out_bytes) != 0) {
      fprintf(stderr, "rank %d: %s of %zu over group %d (%d ranks, root %d): differs from MPI's\n",
              rank, pf_collective_name(kind), count, k, g->n, root % g->n);
      MPI_Abort(MPI_COMM_WORLD, 1);
    }
    free(send[k]);
    free(recv[k]);
    free(want[k]);
  }
}

int main(int argc, char **argv) {
  static const size_t counts[] = {0, 1, 5, 3001, 70000};
  static const pf_dtype dts[] = {PF_F32, PF_F64, PF_I32, PF_I64};
  static const pf_reduce_op ops[] = {PF_REDUCE_SUM, PF_REDUCE_MAX, PF_REDUCE_MIN};
  int32_t order[MAX_RANKS], reverse[MAX_RANKS], pair[2], tail[MAX_RANKS];
  pf_transport_comm *c;
  pf_mpi *m;
  pf_diag d;
  int seed = 0;
  pf_diag_init(&d);
  CHECK(pf_mpi_init(&argc, &argv, &m, &d) == 0);
  rank = pf_mpi_rank(m);
  size = pf_mpi_size(m);
  CHECK(size >= 2 && size <= MAX_RANKS);
  t = pf_mpi_transport(m);

  /* Made here alone: nothing is sent, nothing waits for the others. */
  if (rank == 0) {
    int32_t lone[2] = {(int32_t)size - 1, 0}, other[2] = {0, 1};
    CHECK(t->ops->comm_for(t, lone, 2, 5, &c) == 0);
    CHECK(t->ops->comm_for(t, lone, 2, 5, &c) == 0);
    CHECK(t->ops->comm_for(t, other, 2, 5, &c) == PF_EINVAL);
    CHECK(t->ops->comm_for(t, other, 2, (uint32_t)pf_mpi_max_groups(t->tag_ub), &c) == PF_ERANGE);
  }
  MPI_Barrier(MPI_COMM_WORLD);

  for (int i = 0; i < size; i++) {
    order[i] = i;
    reverse[i] = size - 1 - i;
    tail[i] = i + 1;
  }
  pair[0] = size - 1;
  pair[1] = 0;
  add_group(order, size);
  add_group(reverse, size);
  if (size > 2) add_group(pair, 2);
  if (size > 2) add_group(tail, size - 1);

  for (size_t i = 0; i < sizeof counts / sizeof *counts; i++) {
    one_case(PF_ALLGATHER, PF_U8, PF_REDUCE_SUM, counts[i], 0, seed++);
    one_case(PF_ALL_TO_ALL, PF_U8, PF_REDUCE_SUM, counts[i], 0, seed++);
    for (int root = 0; root < size; root++)
      one_case(PF_BROADCAST, PF_U8, PF_REDUCE_SUM, counts[i], root, seed++);
    for (size_t dt = 0; dt < 4; dt++)
      for (size_t o = 0; o < 3; o++) one_case(PF_REDUCE_SCATTER, dts[dt], ops[o], counts[i], 0, seed++);
  }
  for (int k = 0; k < n_groups; k++)
    if (groups[k].ref != MPI_COMM_NULL) MPI_Comm_free(&groups[k].ref);
  if (rank == 0) printf("mpi_groups: %d ranks, %d groups: ok\n", size, n_groups);
  pf_mpi_finalize(m);
  return 0;
}
