/* Pieces the training examples share: device buffers kept by name from one
 * execution to the next, and feeding them back. Used by train_pipeline.c
 * (train_mlp.c has its own copy until it switches over). */
#ifndef PATHFLOW_EXAMPLES_TRAIN_COMMON_H
#define PATHFLOW_EXAMPLES_TRAIN_COMMON_H

#include <pathflow.h>

#define TC_MAX_BUFFERS 64

/* Device buffers by name: what the last execution left for the next. */
typedef struct tc_named {
  char name[TC_MAX_BUFFERS][32];
  pf_buffer_t buf[TC_MAX_BUFFERS];
  int n;
} tc_named;

/* Exits with a message naming `what` and pf_last_error when rc != 0. */
void tc_check(pf_context *ctx, int rc, const char *what);

/* The buffer named `name` in b, or NULL. */
pf_buffer_t *tc_find(tc_named *b, const char *name);

/* Takes every output of finished future f of `exe` into b except those
 * named in `skip` (NULL-terminated, may be NULL), releasing the buffers
 * they replace. */
void tc_collect(pf_context *ctx, pf_executable *exe, pf_future *f, tc_named *b,
                const char *const *skip);

/* Starts `exe`, feeding each input from b, except those named in
 * host_names (n_host of them), fed from host_tensors. Exits when an input
 * has no buffer. */
pf_future *tc_run(pf_context *ctx, pf_executable *exe, tc_named *b, int n_host,
                  const char *const *host_names, pf_tensor *const *host_tensors);

/* Releases every buffer of b. */
void tc_release(pf_context *ctx, tc_named *b);

/* Seconds on the monotonic clock. */
double tc_now_s(void);

#endif
