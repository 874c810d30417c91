/* PATHFLOW_CUDA_DEVICES parsing (cuda/discover.h): pure logic, so it runs
 * on every machine, GPU or not. */
#include <string.h>

#include "cuda_testing.h"

#include "base/diag.h"

static void parse_ok(const char *spec, int visible, int n_want,
                     const int *want) {
  int got[PF_CUDA_MAX_DEVICES], n = -1;
  pf_diag d;
  pf_diag_init(&d);
  if (pf_cuda_parse_devices(spec, visible, got, PF_CUDA_MAX_DEVICES, &n, &d))
    fail_msg("\"%s\" over %d: %s", spec ? spec : "(null)", visible, d.msg);
  assert_int_equal(n, n_want);
  for (int i = 0; i < n; i++) assert_int_equal(got[i], want[i]);
}

static void parse_bad(const char *spec, int visible, int max,
                      const char *want_msg) {
  int got[PF_CUDA_MAX_DEVICES], n = -7;
  pf_diag d;
  pf_diag_init(&d);
  assert_int_equal(pf_cuda_parse_devices(spec, visible, got, max, &n, &d),
                   PF_EINVAL);
  assert_int_equal(n, -7); /* untouched */
  if (strstr(d.msg, want_msg) == NULL)
    fail_msg("\"%s\": message \"%s\" lacks \"%s\"", spec, d.msg, want_msg);
}

static void test_all_when_unset(void **state) {
  static const int four[] = {0, 1, 2, 3};
  (void)state;
  parse_ok(NULL, 4, 4, four);
  parse_ok("", 4, 4, four);
  parse_ok(NULL, 0, 0, four);
}

static void test_subset_in_order(void **state) {
  static const int a[] = {2, 0}, b[] = {3};
  (void)state;
  parse_ok("2,0", 4, 2, a);
  parse_ok("3", 4, 1, b);
}

static void test_refused(void **state) {
  (void)state;
  parse_bad("4", 4, 8, "GPU 4 does not exist; 4 visible");
  parse_bad("0,,1", 4, 8, "expected GPU numbers separated by commas");
  parse_bad("0,", 4, 8, "expected GPU numbers separated by commas");
  parse_bad("gpu0", 4, 8, "\"gpu0\" is not a GPU number");
  parse_bad("-1", 4, 8, "\"-1\" is not a GPU number");
  parse_bad("1,1", 4, 8, "GPU 1 is listed twice");
  parse_bad("0,1,2", 4, 2, "more than 2 GPUs");
  parse_bad("0", 0, 8, "GPU 0 does not exist; 0 visible");
  parse_bad(NULL, 5, 4, "5 GPUs visible; pathflow drives at most 4");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_all_when_unset),
      cmocka_unit_test(test_subset_in_order),
      cmocka_unit_test(test_refused),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
