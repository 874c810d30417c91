/* Allreduces over point-to-point messages (transport/mpi_allreduce.c,
 * mpi_lane.c):
 * recursive doubling up to 8 KiB, a ring above, on the ranks mpirun gives
 * (2, 3 and 4: with and without the fold of the ranks above a power of
 * two, blocks of the ring of equal and unequal lengths):
 *  - every dtype and reduce op, 1 to 100003 elements, in place or not: the
 *    result equals MPI_Allreduce's where the sum is exact (small
 *    integers), and has the same bits on every rank;
 *  - a max over a NaN has the same bits on every rank;
 *  - 60 allreduces in flight at once on a lane that allows 3 (the rest
 *    wait for a tag) each get their own result, whatever order their
 *    rounds complete in; so do rings and doublings in flight together
 *    (a younger one finishing first once let the next take the tag of one
 *    still in flight: a ring's block then came in the wrong receive);
 *  - calls of one shape in a row (started from the lane's copy of the
 *    first's set-up), in place or not, each get their own result. */
#include <math.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/reduce.h"
#include "base/util.h"
#include "pathflow/error.h"
#include "transport/mpi.h"
#include "transport/mpi_coll.h"
#include "mpi_check.h"


static int rank, size;

static void done_cb_fn(void *arg, int status) {
  CHECK(status == 0);
  (*(int *)arg)++;
}

/* An allreduce on the lane, as the transport issues one. */
static int start_ar(pf_mpi *m, pf_mpi_lane *lane, const void *send, void *recv, size_t count,
                    pf_dtype dt, int op, int *done) {
  pf_collective_call c = {.kind = PF_ALLREDUCE, .send = send, .recv = recv, .count = count,
                          .dtype = dt, .reduce_op = (pf_reduce_op)op};
  return pf_mpi_collective_start(m, lane, &c, done_cb_fn, done);
}


/* Polls until *done reaches want. */
static void wait_for(pf_mpi *m, const int *done, int want) {
  while (*done < want) CHECK(pf_mpi_progress(m) >= 0);
}

/* Element i of rank r's vector k: a small integer (exact sums), of
 * either sign. */
static double value(int r, int k, size_t i) {
  return (double)((int)((r * 7 + k * 13 + (int)i * 3) % 23) - 11);
}

static void fill(void *p, pf_dtype dt, size_t n, int r, int k) {
  for (size_t i = 0; i < n; i++) {
    double v = value(r, k, i);
    switch (dt) {
      case PF_F32: ((float *)p)[i] = (float)v; break;
      case PF_F64: ((double *)p)[i] = v; break;
      case PF_I32: ((int32_t *)p)[i] = (int32_t)v; break;
      default: ((int64_t *)p)[i] = (int64_t)v; break;
    }
  }
}

/* The same bits on every rank. */
static void same_everywhere(const void *p, size_t bytes) {
  char *all = malloc(bytes * (size_t)size + 1);
  CHECK(all != NULL);
  MPI_Allgather(p, (int)bytes, MPI_BYTE, all, (int)bytes, MPI_BYTE, MPI_COMM_WORLD);
  for (int r = 1; r < size; r++) CHECK(memcmp(all, all + (size_t)r * bytes, bytes) == 0);
  free(all);
}

static void exact_results(pf_mpi *m, pf_mpi_lane *lane) {
  static const pf_dtype dts[] = {PF_F32, PF_F64, PF_I32, PF_I64};
  static const int ops[] = {PF_REDUCE_SUM, PF_REDUCE_MAX, PF_REDUCE_MIN, PF_REDUCE_MEAN};
  static const size_t counts[] = {1, 2, 7, 1000, 2049, 100003};
  int k = 0, done = 0;
  for (size_t d = 0; d < 4; d++)
    for (size_t o = 0; o < 4; o++)
      for (size_t c = 0; c < 6; c++, k++) {
        /* f32: 2048 elements, exactly the 8 KiB limit. */
        size_t n = dts[d] == PF_F32 && c == 3 ? 2048 : counts[c];
        size_t bytes = n * pf_dtype_size(dts[d]);
        char *in = malloc(bytes), *out = malloc(bytes), *want = malloc(bytes);
        int in_place = k % 2;
        CHECK(in && out && want);
        fill(in, dts[d], n, rank, k);
        MPI_Allreduce(in, want, (int)n, pf_mpi_dtype(dts[d]), pf_mpi_op(ops[o]), MPI_COMM_WORLD);
        if (in_place) memcpy(out, in, bytes);
        CHECK(start_ar(m, lane, in_place ? NULL : in, out, n, dts[d], ops[o], &done) == 0);
        wait_for(m, &done, k + 1);
        if (memcmp(out, want, bytes) != 0) {
          fprintf(stderr, "rank %d: dtype %s op %d count %zu: differs from MPI_Allreduce\n",
                  rank, pf_dtype_name(dts[d]), ops[o], n);
          MPI_Abort(MPI_COMM_WORLD, 1);
        }
        same_everywhere(out, bytes);
        free(in);
        free(out);
        free(want);
      }
  /* A dtype it cannot reduce is refused, with nothing in flight. */
  {
    uint8_t b[8] = {0};
    CHECK(start_ar(m, lane, NULL, b, 8, PF_U8, PF_REDUCE_SUM, &done) == PF_EINVAL);
    CHECK(lane->in_flight == 0 && done == k);
  }
}

/* Calls of one shape in a row start from the lane's copy of the first's
 * set-up (transport/mpi_lane.c): each with its own buffers, in place or
 * not, gets its own result, the ring's and recursive doubling's. */
static void same_shape_again(pf_mpi *m, pf_mpi_lane *lane) {
  static const pf_dtype dts[] = {PF_F32, PF_F64, PF_I32, PF_I64};
  static const size_t counts[] = {7, 3001};
  int done = 0, k = 0;
  for (size_t d = 0; d < 4; d++)
    for (size_t c = 0; c < 2; c++)
      for (int again = 0; again < 4; again++, k++) {
        size_t n = counts[c], bytes = n * pf_dtype_size(dts[d]);
        char *in = malloc(bytes), *out = malloc(bytes), *want = malloc(bytes);
        int in_place = again % 2;
        CHECK(in && out && want);
        fill(in, dts[d], n, rank, 100 + k);
        MPI_Allreduce(in, want, (int)n, pf_mpi_dtype(dts[d]), MPI_SUM, MPI_COMM_WORLD);
        if (in_place) memcpy(out, in, bytes);
        CHECK(start_ar(m, lane, in_place ? NULL : in, out, n, dts[d], PF_REDUCE_SUM, &done) == 0);
        if (again > 0) CHECK(lane->shape != NULL && lane->shape->call.count == n);
        wait_for(m, &done, k + 1);
        CHECK(memcmp(out, want, bytes) == 0);
        free(in);
        free(out);
        free(want);
      }
}

/* Fractions and a NaN: bits agree on every rank. */
static void same_bits(pf_mpi *m, pf_mpi_lane *lane) {
  double v[3] = {1.0 / (rank + 3), rank == 1 ? NAN : rank * 0.1, -1.0 / (rank + 7)};
  int done = 0;
  CHECK(start_ar(m, lane, NULL, v, 1, PF_F64, PF_REDUCE_SUM, &done) == 0);
  CHECK(start_ar(m, lane, NULL, v + 1, 1, PF_F64, PF_REDUCE_MAX, &done) == 0);
  CHECK(start_ar(m, lane, NULL, v + 2, 1, PF_F64, PF_REDUCE_MIN, &done) == 0);
  wait_for(m, &done, 3);
  same_everywhere(v, sizeof v);
}

/* A lane of 4 tag slots, the narrowest pf_mpi_lane_width gives (a power
 * of two: a slot is the sequence number masked), group 1's tags starting
 * at 0. */
static void narrow_lane(pf_mpi *m, MPI_Comm comm, const int32_t *world, pf_mpi_lane *lane) {
  pf_mpi_lane_init(lane, comm, world, size, rank, 1, pf_mpi_tag_ub(m));
  lane->width = 4;
  lane->tag_base = 0;
}

/* Many at once on a lane of 4 tag slots. `resized`: of two sizes in turn, so
 * that the persistent receive of each tag slot and round (mpi_coll.h,
 * pf_mpi_pair) is re-made for every collective, with the other slots'
 * collectives in flight. */
static void many_in_flight(pf_mpi *m, MPI_Comm comm, const int32_t *world, int resized) {
  enum { N = 60, LEN = 9 };
  pf_mpi_lane narrow;
  int64_t in[N][LEN], out[N][LEN], want[N][LEN];
  int done = 0, p2 = 1;
  narrow_lane(m, comm, world, &narrow);
  for (int k = 0; k < N; k++) {
    int len = resized && k % 2 ? LEN : 5;
    fill(in[k], PF_I64, (size_t)len, rank, k);
    MPI_Allreduce(in[k], want[k], len, MPI_INT64_T, MPI_SUM, MPI_COMM_WORLD);
  }
  for (int k = 0; k < N; k++)
    CHECK(start_ar(m, &narrow, in[k], out[k], resized && k % 2 ? LEN : 5, PF_I64,
                   PF_REDUCE_SUM, &done) == 0);
  CHECK(narrow.in_flight <= 4);
  wait_for(m, &done, N);
  CHECK(narrow.in_flight == 0 && narrow.waiting == NULL);
  for (int k = 0; k < N; k++)
    CHECK(memcmp(out[k], want[k], (resized && k % 2 ? LEN : 5) * sizeof(int64_t)) == 0);
  /* Pairs on the ranks that exchange: not above the largest power of two,
   * which only hand their vector over. */
  while (p2 * 2 <= size) p2 *= 2;
  CHECK((narrow.pairs != NULL) == (rank < p2));
  pf_mpi_lane_fini(&narrow);
  CHECK(narrow.pairs == NULL);
}

/* Rings and doublings in flight together on a lane of 4 tag slots: each gets
 * its own result (a ring's steps all share one tag of its own). */
static void rings_in_flight(pf_mpi *m, MPI_Comm comm, const int32_t *world) {
  enum { N = 12, BIG = 3001 };
  pf_mpi_lane narrow;
  int64_t *in[N], *out[N], *want[N];
  int done = 0;
  narrow_lane(m, comm, world, &narrow);
  for (int k = 0; k < N; k++) {
    size_t len = k % 2 ? BIG : 5;
    CHECK((in[k] = malloc(len * 8)) && (out[k] = malloc(len * 8)) && (want[k] = malloc(len * 8)));
    fill(in[k], PF_I64, len, rank, k);
    MPI_Allreduce(in[k], want[k], (int)len, MPI_INT64_T, MPI_SUM, MPI_COMM_WORLD);
  }
  for (int k = 0; k < N; k++)
    CHECK(start_ar(m, &narrow, in[k], out[k], k % 2 ? BIG : 5, PF_I64, PF_REDUCE_SUM, &done) ==
          0);
  CHECK(narrow.in_flight <= 4);
  wait_for(m, &done, N);
  CHECK(narrow.in_flight == 0 && narrow.waiting == NULL && narrow.first == NULL);
  for (int k = 0; k < N; k++) {
    CHECK(memcmp(out[k], want[k], (k % 2 ? BIG : 5) * 8) == 0);
    free(in[k]);
    free(out[k]);
    free(want[k]);
  }
  pf_mpi_lane_fini(&narrow);
}

int main(int argc, char **argv) {
  pf_mpi *m;
  pf_diag d;
  MPI_Comm comm;
  pf_mpi_lane lane;
  int32_t *world;
  pf_diag_init(&d);
  CHECK(pf_mpi_init(&argc, &argv, &m, &d) == 0);
  rank = pf_mpi_rank(m);
  size = pf_mpi_size(m);
  CHECK(MPI_Comm_dup(MPI_COMM_WORLD, &comm) == MPI_SUCCESS);
  CHECK((world = malloc((size_t)size * sizeof *world)) != NULL);
  for (int r = 0; r < size; r++) world[r] = r;
  pf_mpi_lane_init(&lane, comm, world, size, rank, 0, pf_mpi_tag_ub(m));
  CHECK(lane.rank == rank && lane.size == size && lane.width == 64 && lane.tag_base == 0);
  exact_results(m, &lane);
  same_bits(m, &lane);
  same_shape_again(m, &lane);
  pf_mpi_lane_fini(&lane);
  many_in_flight(m, comm, world, 0);
  many_in_flight(m, comm, world, 1);
  rings_in_flight(m, comm, world);
  MPI_Comm_free(&comm);
  free(world);
  if (rank == 0) printf("mpi_allreduce: %d ranks: ok\n", size);
  pf_mpi_finalize(m);
  return 0;
}
