/* The CUDA device plugin, libpathflow_cuda.so (runtime/device_cuda_plugin.c):
 * it opens with RTLD_NOW (nothing left unresolved: it links no internal of
 * libpathflow) and exports its open function only; through pf_init (a
 * program linked with libpathflow.so, which finds the plugin beside it),
 * PATHFLOW_CUDA=1 gives a GPU device per GPU, for each loopback rank, or
 * without a GPU fails saying none was found; PATHFLOW_CUDA unset gives the
 * GPUs where a driver is, none elsewhere. Meaningful with and without a
 * GPU: it checks whichever the machine is. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <cuda_runtime_api.h>
#include <dlfcn.h>
#include <unistd.h>

#include "pathflow.h"
#include "../init_capture.h"

static char err_path[] = "/tmp/pf_test_cuda_plugin_XXXXXX";
static int n_gpus; /* what CUDA sees, at most 64 (PF_CUDA_MAX_DEVICES) */

static void opens_with_rtld_now(void **state) {
  /* The build's plugin, unless PF_TEST_CUDA_PLUGIN names another copy
   * (scripts/gpu-check runs its bundle far from the build). */
  const char *path = getenv("PF_TEST_CUDA_PLUGIN");
  void *lib;
  (void)state;
  if (path == NULL || *path == '\0') path = PF_CUDA_PLUGIN;
  lib = dlopen(path, RTLD_NOW | RTLD_LOCAL);
  if (lib == NULL) fail_msg("dlopen(%s, RTLD_NOW): %s", path, dlerror());
  assert_non_null(dlsym(lib, "pathflow_device_plugin_open"));
  /* The forwarders and the base/ helpers compiled in stay local. */
  assert_null(dlsym(lib, "pf_step_run_op"));
  assert_null(dlsym(lib, "pf_storage_wrap"));
  assert_null(dlsym(lib, "pf_diag_error"));
  assert_null(dlsym(lib, "pf_cuda_device_create"));
  /* Stays loaded: the process may open it again through pf_init. */
}

static void cuda_required(void **state) {
  char text[4096];
  pf_context *ctx = NULL;
  int rc;
  (void)state;
  setenv("PATHFLOW_CUDA", "1", 1);
  rc = init_quiet(&ctx, text, sizeof text);
  if (n_gpus == 0) {
    if (rc == 0) {
      pf_finalize(ctx);
      fail_msg("PATHFLOW_CUDA=1 without a GPU: pf_init succeeded");
    }
    assert_int_equal(rc, PF_ENOTFOUND);
    if (strstr(text, "PATHFLOW_CUDA=1") == NULL || strstr(text, "no GPU") == NULL)
      fail_msg("message \"%s\" does not say PATHFLOW_CUDA=1 found no GPU", text);
    return;
  }
  if (rc != 0) fail_msg("PATHFLOW_CUDA=1 with %d GPUs: %s (%s)", n_gpus, pf_errname(rc), text);
  assert_int_equal(pf_device_count(ctx, PF_DEVICE_GPU), n_gpus);
  assert_int_equal(pf_device_count(ctx, PF_DEVICE_CPU), 1);
  assert_int_equal(pf_finalize(ctx), 0);
  /* Each loopback rank starts its own devices. */
  setenv("PATHFLOW_LOOPBACK_RANKS", "2", 1);
  rc = init_quiet(&ctx, text, sizeof text);
  unsetenv("PATHFLOW_LOOPBACK_RANKS");
  if (rc != 0) fail_msg("2 loopback ranks: %s (%s)", pf_errname(rc), text);
  assert_int_equal(pf_device_count(ctx, PF_DEVICE_GPU), 2 * n_gpus);
  assert_int_equal(pf_device_count(ctx, PF_DEVICE_CPU), 2);
  assert_int_equal(pf_finalize(ctx), 0);
}

static void cuda_auto(void **state) {
  char text[4096];
  pf_context *ctx = NULL;
  int rc, driver = access("/proc/driver/nvidia/version", F_OK) == 0;
  (void)state;
  unsetenv("PATHFLOW_CUDA");
  rc = init_quiet(&ctx, text, sizeof text);
  if (rc != 0) fail_msg("PATHFLOW_CUDA unset: %s (%s)", pf_errname(rc), text);
  assert_int_equal(pf_device_count(ctx, PF_DEVICE_GPU), driver ? n_gpus : 0);
  assert_int_equal(pf_finalize(ctx), 0);
}

static int setup(void **state) {
  int n = 0;
  (void)state;
  if (init_capture_open(err_path) != 0) return -1;
  if (cudaGetDeviceCount(&n) != cudaSuccess) n = 0;
  (void)cudaGetLastError();
  n_gpus = n > 64 ? 64 : n;
  printf("CUDA sees %d GPUs%s\n", n,
         access("/proc/driver/nvidia/version", F_OK) == 0 ? "" : " (no NVIDIA driver)");
  setenv("PATHFLOW_CPU_DEVICES", "1", 1);
  unsetenv("PATHFLOW_DEVICE_PLUGINS");
  unsetenv("PATHFLOW_CUDA_DEVICES");
  unsetenv("PATHFLOW_LOOPBACK_RANKS");
  return 0;
}

static int teardown(void **state) {
  (void)state;
  close(capture_fd);
  return 0;
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(opens_with_rtld_now),
      cmocka_unit_test(cuda_required),
      cmocka_unit_test(cuda_auto),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
