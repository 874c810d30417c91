/* CHECK for the MPI tests that drive the transport directly, without
 * cmocka (their ranks all run the test): a failed check ends the job. */
#ifndef PF_TESTS_MPI_CHECK_H
#define PF_TESTS_MPI_CHECK_H

#include <mpi.h>
#include <stdio.h>

#define CHECK(c)                                                              \
  do {                                                                        \
    if (!(c)) {                                                               \
      fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #c); \
      MPI_Abort(MPI_COMM_WORLD, 1);                                           \
    }                                                                         \
  } while (0)

#endif
