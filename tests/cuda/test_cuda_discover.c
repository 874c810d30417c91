/* GPU discovery (cuda/discover.h) and events (cuda/event.h) on a real GPU.
 * Skipped (exit 77) without one. */
#include <stdlib.h>
#include <string.h>

#include "cuda_testing.h"

#include "base/diag.h"
#include "cuda/event.h"

static void test_discover_all(void **state) {
  pf_cuda_device_info info[PF_CUDA_MAX_DEVICES];
  int n = -1;
  pf_diag d;
  (void)state;
  pf_diag_init(&d);
  unsetenv("PATHFLOW_CUDA_DEVICES");
  if (pf_cuda_discover(info, PF_CUDA_MAX_DEVICES, &n, &d) != 0)
    fail_msg("pf_cuda_discover: %s", d.msg);
  assert_int_equal(n, pf_cuda_visible_count());
  for (int i = 0; i < n; i++) {
    printf("GPU %d: %s, %d SMs, sm_%d%d, %.1f GiB (%.1f free), %d MHz\n",
           info[i].ordinal, info[i].name, info[i].sm_count, info[i].cc_major,
           info[i].cc_minor, (double)info[i].total_bytes / (1 << 30),
           (double)info[i].free_bytes / (1 << 30), info[i].clock_khz / 1000);
    assert_int_equal(info[i].ordinal, i);
    assert_true(strlen(info[i].name) > 0);
    assert_true(info[i].sm_count > 0);
    assert_true(info[i].cc_major >= 7);
    assert_true(info[i].total_bytes > ((size_t)1 << 30));
    assert_true(info[i].free_bytes <= info[i].total_bytes);
  }
}

static void test_discover_restricted(void **state) {
  pf_cuda_device_info info[PF_CUDA_MAX_DEVICES];
  int n = -1, last = pf_cuda_visible_count() - 1;
  char spec[16];
  pf_diag d;
  (void)state;
  pf_diag_init(&d);
  snprintf(spec, sizeof spec, "%d", last);
  setenv("PATHFLOW_CUDA_DEVICES", spec, 1);
  if (pf_cuda_discover(info, PF_CUDA_MAX_DEVICES, &n, &d) != 0)
    fail_msg("pf_cuda_discover: %s", d.msg);
  assert_int_equal(n, 1);
  assert_int_equal(info[0].ordinal, last);
  /* A GPU that does not exist is an error naming the variable. */
  snprintf(spec, sizeof spec, "%d", last + 1);
  setenv("PATHFLOW_CUDA_DEVICES", spec, 1);
  pf_diag_init(&d);
  assert_int_equal(pf_cuda_discover(info, PF_CUDA_MAX_DEVICES, &n, &d),
                   PF_EINVAL);
  assert_non_null(strstr(d.msg, "PATHFLOW_CUDA_DEVICES"));
  unsetenv("PATHFLOW_CUDA_DEVICES");
}


static void test_event(void **state) {
  cudaEvent_t ev;
  cudaStream_t s;
  void *big, *host;
  size_t bytes = (size_t)256 << 20;
  pf_diag d;
  (void)state;
  pf_diag_init(&d);
  CU(cudaSetDevice(0));
  CU(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  assert_int_equal(pf_cuda_event_create(&ev, &d), 0);
  /* Never recorded: complete. */
  assert_int_equal(pf_cuda_event_done(ev, &d), 1);
  CU(cudaMalloc(&big, bytes));
  CU(cudaMallocHost(&host, bytes));
  /* A copy that takes milliseconds: the event is pending right after it
   * is queued, complete after the wait. */
  CU(cudaMemcpyAsync(host, big, bytes, cudaMemcpyDeviceToHost, s));
  CU(cudaMemcpyAsync(big, host, bytes, cudaMemcpyHostToDevice, s));
  assert_int_equal(pf_cuda_event_record(ev, s, &d), 0);
  assert_int_equal(pf_cuda_event_done(ev, &d), 0);
  assert_int_equal(pf_cuda_event_wait(ev, &d), 0);
  assert_int_equal(pf_cuda_event_done(ev, &d), 1);
  pf_cuda_event_destroy(ev);
  CU(cudaFreeHost(host));
  CU(cudaFree(big));
  CU(cudaStreamDestroy(s));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_discover_all),
      cmocka_unit_test(test_discover_restricted),
      cmocka_unit_test(test_event),
  };
  pf_cuda_test_require_gpu("test_cuda_discover");
  return cmocka_run_group_tests(tests, NULL, NULL);
}
