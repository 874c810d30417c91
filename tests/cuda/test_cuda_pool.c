/* The device memory pool and staging buffers (cuda/pool.h) on a real GPU:
 * one arena per executable allocated once and reused, offsets checked,
 * staging buffers reused, errors named. Skipped (exit 77) without a GPU. */
#include <stdlib.h>
#include <string.h>

#include "cuda_testing.h"

#include "base/diag.h"
#include "cuda/pool.h"

static pf_cuda_pool *pool;

static int setup(void **state) {
  pf_diag d;
  (void)state;
  pf_diag_init(&d);
  if (pf_cuda_pool_create(0, &pool, &d) != 0) {
    fprintf(stderr, "pf_cuda_pool_create: %s\n", d.msg);
    return -1;
  }
  return 0;
}

static int teardown(void **state) {
  (void)state;
  pf_cuda_pool_destroy(pool);
  return 0;
}

static void test_arena_once_per_executable(void **state) {
  void *a = NULL, *again = NULL, *b = NULL, *p = NULL;
  pf_cuda_pool_stats st;
  pf_diag d;
  uint64_t allocs;
  unsigned char pattern[64], back[64];
  (void)state;
  pf_diag_init(&d);
  pf_cuda_pool_stats_get(pool, &st);
  allocs = st.device_allocs;
  assert_int_equal(pf_cuda_pool_arena(pool, 7, 1 << 20, &a, &d), 0);
  assert_non_null(a);
  assert_int_equal((uintptr_t)a % PF_CUDA_ARENA_ALIGN, 0);
  /* Steps ask again: the same arena, no new allocation. */
  for (int step = 0; step < 100; step++) {
    assert_int_equal(pf_cuda_pool_arena(pool, 7, 1 << 20, &again, &d), 0);
    assert_ptr_equal(again, a);
  }
  assert_int_equal(pf_cuda_pool_arena(pool, 8, 4096, &b, &d), 0);
  assert_true(b != a);
  pf_cuda_pool_stats_get(pool, &st);
  assert_int_equal(st.device_allocs - allocs, 2);
  assert_int_equal(st.arenas, 2);
  assert_int_equal(st.arena_bytes, (1 << 20) + 4096);
  /* A buffer by offset is real device memory of the arena. */
  assert_int_equal(pf_cuda_pool_at(pool, 7, 4096, 64, &p, &d), 0);
  assert_ptr_equal(p, (char *)a + 4096);
  for (int i = 0; i < 64; i++) pattern[i] = (unsigned char)(i * 7);
  CU(cudaMemcpy(p, pattern, 64, cudaMemcpyHostToDevice));
  CU(cudaMemcpy(back, (char *)a + 4096, 64, cudaMemcpyDeviceToHost));
  assert_memory_equal(back, pattern, 64);
  assert_int_equal(pf_cuda_pool_release(pool, 7, &d), 0);
  assert_int_equal(pf_cuda_pool_release(pool, 8, &d), 0);
  pf_cuda_pool_stats_get(pool, &st);
  assert_int_equal(st.arenas, 0);
}

static void test_arena_errors(void **state) {
  void *a = NULL, *p = NULL;
  pf_diag d;
  (void)state;
  pf_diag_init(&d);
  assert_int_equal(pf_cuda_pool_arena(pool, 1, 1000, &a, &d), 0);
  assert_int_equal(pf_cuda_pool_arena(pool, 1, 2000, &a, &d), PF_EINVAL);
  assert_non_null(strstr(d.msg, "has an arena of 1000 bytes; asked for 2000"));
  pf_diag_init(&d);
  assert_int_equal(pf_cuda_pool_at(pool, 1, 990, 11, &p, &d), PF_ERANGE);
  assert_non_null(strstr(d.msg, "[990, 1001) lie outside the 1000-byte"));
  pf_diag_init(&d);
  assert_int_equal(pf_cuda_pool_at(pool, 1, 990, 10, &p, &d), 0);
  assert_int_equal(pf_cuda_pool_at(pool, 2, 0, 1, &p, &d), PF_ENOTFOUND);
  pf_diag_init(&d);
  /* More than the device has: PF_ENOMEM saying how much is free. */
  assert_int_equal(pf_cuda_pool_arena(pool, 3, (size_t)1 << 50, &a, &d),
                   PF_ENOMEM);
  assert_non_null(strstr(d.msg, "free of"));
  pf_diag_init(&d);
  assert_int_equal(pf_cuda_pool_release(pool, 3, &d), PF_ENOTFOUND);
  assert_int_equal(pf_cuda_pool_release(pool, 1, NULL), 0);
  /* The device still works after the failed allocation. */
  assert_int_equal(pf_cuda_pool_arena(pool, 4, 512, &a, &d), 0);
  CU(cudaMemset(a, 0, 512));
  assert_int_equal(pf_cuda_pool_release(pool, 4, NULL), 0);
}

static void test_staging_reused(void **state) {
  void *a = NULL, *b = NULL, *c = NULL, *dev = NULL;
  pf_cuda_pool_stats st;
  pf_diag d;
  uint64_t allocs;
  size_t size = (size_t)8 << 20;
  (void)state;
  pf_diag_init(&d);
  pf_cuda_pool_stats_get(pool, &st);
  allocs = st.host_allocs;
  assert_int_equal(pf_cuda_staging_get(pool, size, &a, &d), 0);
  assert_int_equal(pf_cuda_staging_get(pool, size / 2, &b, &d), 0);
  assert_true(a != b);
  assert_int_equal(pf_cuda_staging_put(pool, a, &d), 0);
  /* The free buffer is large enough: reused. */
  assert_int_equal(pf_cuda_staging_get(pool, size / 4, &c, &d), 0);
  assert_ptr_equal(c, a);
  pf_cuda_pool_stats_get(pool, &st);
  assert_int_equal(st.host_allocs - allocs, 2);
  assert_int_equal(st.staging_live, 2);
  /* Pinned: an asynchronous copy from it round-trips. */
  memset(c, 0x5a, size);
  CU(cudaMalloc(&dev, size));
  CU(cudaMemcpyAsync(dev, c, size, cudaMemcpyHostToDevice, 0));
  CU(cudaMemcpyAsync(b, dev, size / 2, cudaMemcpyDeviceToHost, 0));
  CU(cudaStreamSynchronize(0));
  assert_int_equal(((unsigned char *)b)[size / 2 - 1], 0x5a);
  CU(cudaFree(dev));
  assert_int_equal(pf_cuda_staging_put(pool, b, &d), 0);
  assert_int_equal(pf_cuda_staging_put(pool, c, &d), 0);
  /* Twice, or a pointer it never lent: refused. */
  assert_int_equal(pf_cuda_staging_put(pool, c, &d), PF_EINVAL);
  assert_int_equal(pf_cuda_staging_put(pool, &d, NULL), PF_EINVAL);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_arena_once_per_executable),
      cmocka_unit_test(test_arena_errors),
      cmocka_unit_test(test_staging_reused),
  };
  pf_cuda_test_require_gpu("test_cuda_pool");
  return cmocka_run_group_tests(tests, setup, teardown);
}
