/* libFuzzer: pf_plan_decode on arbitrary bytes.
 *
 * Beyond "no crash, no leak": a plan that decodes must pass pf_plan_check
 * and survive encode -> decode unchanged, else the decoder and the check
 * disagree about what a plan is. */
#include <stdint.h>
#include <stdlib.h>

#include "base/diag.h"
#include "plan/plan.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  pf_plan *p = NULL, *q = NULL;
  pf_diag d;
  uint8_t *buf = NULL;
  size_t len = 0;
  if (pf_plan_decode(data, size, 4, &p, &d) != 0) {
    if (p != NULL || d.code == 0 || d.msg[0] == '\0') abort();
    return 0;
  }
  if (pf_plan_check(p, 4, &d) != 0) abort();
  if (pf_plan_encode(p, &buf, &len) != 0) abort();
  if (pf_plan_decode(buf, len, 4, &q, &d) != 0) abort();
  if (!pf_plan_equal(p, q)) abort();
  free(buf);
  pf_plan_free(q);
  pf_plan_free(p);
  return 0;
}
