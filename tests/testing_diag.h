/* Shared by the cmocka tests of internal layers that report through a
 * pf_diag rather than a context: the file's `diag` and the OK macro, which
 * fails the test with the call, the error and diag's message. Include it
 * after <cmocka.h>. */
#ifndef PF_TESTS_TESTING_DIAG_H
#define PF_TESTS_TESTING_DIAG_H

#include "base/diag.h"

static pf_diag diag;

#define OK(call)                                                            \
  do {                                                                      \
    int rc_ = (call);                                                       \
    if (rc_ != 0) fail_msg("%s: %s: %s", #call, pf_errname(rc_), diag.msg); \
  } while (0)

#endif
