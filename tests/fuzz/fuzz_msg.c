/* libFuzzer: pf_msg_decode on arbitrary bytes.
 *
 * Beyond "no crash, no leak": a message that decodes must encode, and the
 * encoding must decode again and encode to the same bytes, else the decoder
 * accepts messages that the encoder cannot write or that change on the way
 * (a plan inside a LOAD goes through pf_plan_decode and its check). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/diag.h"
#include "runtime/msg.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  pf_msg *m = NULL, *m2 = NULL;
  pf_diag d;
  uint8_t *a = NULL, *b = NULL;
  size_t na = 0, nb = 0;
  if (pf_msg_decode(data, size, 4, &m, &d) != 0) {
    if (m != NULL || d.code == 0 || d.msg[0] == '\0') abort();
    return 0;
  }
  if (m == NULL || m->kind <= PF_MSG_NONE || m->kind > PF_MSG_DUMP) abort();
  if (m->kind == PF_MSG_LOAD && (m->plan == NULL || pf_plan_check(m->plan, 4, &d) != 0))
    abort();
  if (pf_msg_encode(m, &a, &na) != 0) abort();
  if (pf_msg_decode(a, na, 4, &m2, &d) != 0) abort();
  if (m2->kind != m->kind) abort();
  if (m->kind == PF_MSG_LOAD && !pf_plan_equal(m->plan, m2->plan)) abort();
  if (pf_msg_encode(m2, &b, &nb) != 0) abort();
  if (na != nb || (na > 0 && memcmp(a, b, na) != 0)) abort();
  free(a);
  free(b);
  pf_msg_free(m2);
  pf_msg_free(m);
  return 0;
}
