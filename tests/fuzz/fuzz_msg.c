/* libFuzzer: pf_msg_decode and pf_msg_concerns (the envelope read of a
 * message that does not decode, which decides what a bad frame fails) on
 * arbitrary bytes.
 *
 * pf_msg_concerns never crashes or leaks, and on a message that decodes it
 * agrees with pf_msg_decode: same kind, executable and step, request or
 * buffer; every kind that something waits on is reported as concerning it.
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

/* The envelope of a message that decoded must say what the message says. */
static void check_concerns(const pf_msg *m, int concerns, pf_msg_kind kind, uint64_t executable,
                           uint64_t key) {
  uint64_t want_executable = m->executable, want_key = 0;
  switch (m->kind) {
    case PF_MSG_RUN:
    case PF_MSG_STEP_DONE:
    case PF_MSG_STEP_STARTED: want_key = m->step; break;
    case PF_MSG_FETCH:
    case PF_MSG_FETCH_REPLY:
    case PF_MSG_COUNTERS:
    case PF_MSG_COUNTERS_REPLY: want_executable = 0, want_key = m->request; break;
    case PF_MSG_PUT: want_executable = 0, want_key = m->buffer; break;
    case PF_MSG_LOAD: want_executable = m->plan->executable; break;
    case PF_MSG_LOAD_DONE: break;
    default:
      if (concerns) abort(); /* nothing waits on the other kinds */
      return;
  }
  if (m->kind == PF_MSG_LOAD && want_executable == 0) { /* nothing waits on executable 0 */
    if (concerns) abort();
    return;
  }
  if (!concerns || kind != m->kind || executable != want_executable || key != want_key) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  pf_msg *m = NULL, *m2 = NULL;
  pf_diag d;
  uint8_t *a = NULL, *b = NULL;
  size_t na = 0, nb = 0;
  pf_msg_kind kind;
  uint64_t executable, key;
  int concerns = pf_msg_concerns(data, size, &kind, &executable, &key);
  if (concerns != 0 && concerns != 1) abort();
  if (pf_msg_decode(data, size, 4, &m, &d) != 0) {
    if (m != NULL || d.code == 0 || d.msg[0] == '\0') abort();
    return 0;
  }
  if (m == NULL || m->kind <= PF_MSG_NONE || m->kind > PF_MSG_KIND_LAST) abort();
  check_concerns(m, concerns, kind, executable, key);
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
