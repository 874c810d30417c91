/* A control message whose MPI send fails only when it completes fails its
 * waiter instead of leaving it waiting forever. PATHFLOW_FAULT_CTRL_SEND=R:1
 * makes rank R's first control send (with someone waiting on its answer)
 * complete with an error, unsent: from rank 0 the request for rank 1's
 * counters, from rank 1 its reply. Either way pf_counters_get fails with
 * PF_EMPI naming the message and the ranks, and the next call succeeds. */
#include "mpi_common.h"

pf_context *ctx;

static int setup(void **state) {
  (void)state;
  if (pf_init(NULL, NULL, &(pf_init_options){.cpu_devices = 1}, &ctx)) return -1;
  return pf_world_size(ctx) == 2 ? 0 : -1;
}

static int teardown(void **state) {
  (void)state;
  return pf_finalize(ctx);
}

static void test_failed_send_fails_its_waiter(void **state) {
  const char *fault = getenv("PATHFLOW_FAULT_CTRL_SEND");
  pf_counters *c = NULL;
  int rc;
  (void)state;
  assert_non_null(fault);
  rc = pf_counters_get(ctx, 1, &c);
  print_message("first pf_counters_get: %s: %s\n", pf_errname(rc), pf_last_error(ctx));
  assert_int_equal(rc, PF_EMPI);
  assert_null(c);
  assert_non_null(strstr(pf_last_error(ctx), "counters of rank 1"));
  assert_non_null(strstr(pf_last_error(ctx), strcmp(fault, "0:1") == 0
                                                 ? "rank 0: could not send a counters message to rank 1"
                                                 : "rank 1: could not send a counters_reply message "
                                                   "to rank 0"));
  /* The channel goes on. */
  OK(pf_counters_get(ctx, 1, &c));
  assert_int_equal(c->rank, 1);
  pf_counters_free(c);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_failed_send_fails_its_waiter),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
