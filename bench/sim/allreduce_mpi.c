/* The MPI program SimGrid's SMPI simulates for bench/sim/run.sh: `steps`
 * allreduces (sum) of `count` floats on MPI_COMM_WORLD, back to back. Rank
 * 0 prints the simulated time they took (the latest rank's), in seconds:
 *   smpi_time <seconds>
 * Buffers come from SMPI_SHARED_MALLOC when built with smpicc: their
 * contents do not change the simulated time, and 1,024 ranks with private
 * copies would need gigabytes that say nothing about the simulator.
 * Usage: allreduce_mpi COUNT STEPS */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>

#ifdef SMPI_SHARED_MALLOC
#define ALLOC(n) SMPI_SHARED_MALLOC(n)
#define FREE(p) SMPI_SHARED_FREE(p)
#else
#define ALLOC(n) malloc(n)
#define FREE(p) free(p)
#endif

int main(int argc, char **argv) {
  int rank, count, steps;
  double t0, t1, worst;
  float *in, *out;
  MPI_Init(&argc, &argv);
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  if (argc != 3 || (count = atoi(argv[1])) < 1 || (steps = atoi(argv[2])) < 1) {
    if (rank == 0) fprintf(stderr, "usage: allreduce_mpi COUNT STEPS\n");
    MPI_Abort(MPI_COMM_WORLD, 2);
  }
  in = ALLOC((size_t)count * sizeof *in);
  out = ALLOC((size_t)count * sizeof *out);
  for (int i = 0; i < count; i++) in[i] = 1.0f;
  t0 = MPI_Wtime();
  for (int s = 0; s < steps; s++) MPI_Allreduce(in, out, count, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
  t1 = MPI_Wtime() - t0;
  /* After the measurement: what this reduce costs is not counted. */
  MPI_Reduce(&t1, &worst, 1, MPI_DOUBLE, MPI_MAX, 0, MPI_COMM_WORLD);
  if (rank == 0) printf("smpi_time %.9f\n", worst);
  FREE(in);
  FREE(out);
  MPI_Finalize();
  return 0;
}
