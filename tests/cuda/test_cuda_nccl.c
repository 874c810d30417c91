/* NCCL opened at run time (cuda/nccl.h), without a GPU: PATHFLOW_NCCL=0
 * turns it off; a library that is not there leaves it off (collectives
 * over GPUs are then staged); the toolkit's libnccl, when this machine has
 * one, opens and makes communicator ids (which needs no GPU). Joining and
 * collectives need GPUs: mpi_gpu_staging_2_cuda runs them. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cuda_testing.h"

#include "base/diag.h"
#include "cuda/nccl.h"

/* Where CUDA toolkits put libnccl (the Debian machines here: the first). */
static const char *toolkit_nccl(void) {
  static const char *const paths[] = {"/usr/local/cuda/lib/libnccl.so.2",
                                      "/usr/local/cuda/lib64/libnccl.so.2",
                                      "/usr/lib/x86_64-linux-gnu/libnccl.so.2"};
  for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++)
    if (access(paths[i], R_OK) == 0) return paths[i];
  return NULL;
}

static void off_when_asked(void **state) {
  (void)state;
  setenv("PATHFLOW_NCCL", "0", 1);
  assert_int_equal(pf_nccl_available(), 0);
  unsetenv("PATHFLOW_NCCL");
}

static void opens_and_makes_ids(void **state) {
  const char *lib = toolkit_nccl();
  uint8_t a[PF_NCCL_ID_BYTES], b[PF_NCCL_ID_BYTES];
  pf_diag d;
  void *comm = (void *)1;
  (void)state;
  if (lib == NULL) {
    /* No NCCL here: off, and every call says why. */
    setenv("PATHFLOW_NCCL_LIBRARY", "/nonexistent/libnccl.so.2", 1);
    assert_int_equal(pf_nccl_available(), 0);
    pf_diag_init(&d);
    assert_int_equal(pf_nccl_id(a, &d), PF_ENOTSUP);
    assert_non_null(strstr(d.msg, "NCCL"));
    skip();
  }
  setenv("PATHFLOW_NCCL_LIBRARY", lib, 1);
  if (!pf_nccl_available()) fail_msg("%s does not open or lacks a symbol", lib);
  pf_diag_init(&d);
  if (pf_nccl_id(a, &d) != 0) fail_msg("ncclGetUniqueId: %s", d.msg);
  if (pf_nccl_id(b, &d) != 0) fail_msg("ncclGetUniqueId: %s", d.msg);
  assert_true(memcmp(a, b, sizeof a) != 0); /* two communicators, two ids */
  /* A member out of range is refused before NCCL is asked. */
  pf_diag_init(&d);
  assert_int_equal(pf_nccl_join(0, a, 2, 2, &comm, &d), PF_EINVAL);
  assert_null(comm);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(off_when_asked),
      cmocka_unit_test(opens_and_makes_ids),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
