/* Shared by the cmocka tests that use a context: includes and the OK
 * macro, which fails the test with the call, the error and the context's
 * message. The including file defines `ctx`. */
#ifndef PF_TESTS_TESTING_H
#define PF_TESTS_TESTING_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "pathflow.h"

#define OK(call)                                                                     \
  do {                                                                               \
    int rc_ = (call);                                                                \
    if (rc_ != 0) fail_msg("%s: %s: %s", #call, pf_errname(rc_), pf_last_error(ctx)); \
  } while (0)

#endif
