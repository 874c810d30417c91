/* pf_counters_get: a rank's counters, fetched to the controller. */
#include <stdlib.h>
#include <string.h>

#include "api/context_internal.h"
#include "base/counters.h"

int pf_counters_get(pf_context *ctx, int rank, pf_counters **out) {
  pf_waiter w;
  pf_msg *m;
  int rc;
  if ((rc = pf_context_live(ctx, "pf_counters_get")) != 0) return rc;
  if (out == NULL) return pf_context_error(ctx, PF_EINVAL, "pf_counters_get: out is NULL");
  *out = NULL;
  if (rank < 0 || rank >= ctx->size)
    return pf_context_error(ctx, PF_EINVAL, "pf_counters_get: rank %d is not in the job (0..%d)",
                            rank, ctx->size - 1);
  memset(&w, 0, sizeof w);
  w.from = rank;
  pf_controller_expect(ctx, &w, pf_context_new_id(ctx), 1);
  m = pf_msg_new(PF_MSG_COUNTERS);
  if (m != NULL) m->request = w.key;
  if ((rc = pf_controller_send(ctx, rank, m)) != 0) {
    /* Nothing went out: no reply will come. */
    pthread_mutex_lock(&ctx->lock);
    w.pending = 0;
    pthread_mutex_unlock(&ctx->lock);
    pf_controller_wait(ctx, &w);
    return rc;
  }
  rc = pf_controller_wait(ctx, &w);
  if (rc != 0) {
    pf_counters_free(w.counters);
    return pf_context_error(ctx, rc, "counters of rank %d: %s", rank, w.message);
  }
  *out = w.counters;
  return 0;
}

void pf_counters_print_all(pf_context *ctx, FILE *f) {
  for (int r = 0; r < ctx->size; r++) {
    pf_counters *c;
    int rc = pf_counters_get(ctx, r, &c);
    if (rc != 0) {
      fprintf(f, "pathflow counters: rank %d: not available: %s\n", r, pf_last_error(ctx));
      continue;
    }
    pf_counters_print(c, f);
    pf_counters_free(c);
  }
}
