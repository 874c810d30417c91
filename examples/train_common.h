/* Pieces the training examples share: device buffers kept by name from one
 * execution to the next, and feeding them back. Used by train_pipeline.c
 * (train_mlp.c has its own copy until it switches over). */
#ifndef PATHFLOW_EXAMPLES_TRAIN_COMMON_H
#define PATHFLOW_EXAMPLES_TRAIN_COMMON_H

#include <pathflow.h>

#define TC_MAX_BUFFERS 64
#define TC_MAX_LAYERS 8

/* The options every training example takes, with train_mlp's defaults:
 * --hidden N[,N...] (256) --batch N (128) --epochs N (15) --lr X (0.001)
 * --optimizer adam|momentum|sgd (adam) --lr-schedule cosine|constant
 * (cosine) --seed N (1) --data DIR (/usr/share/datasets/fashion-mnist)
 * --limit-steps N --metrics FILE.csv. */
typedef struct tc_opts {
  int hidden[TC_MAX_LAYERS], n_hidden, batch, epochs, limit_steps;
  double lr;
  const char *optimizer, *lr_schedule, *data, *metrics;
  int64_t seed;
} tc_opts;

/* The defaults above. */
tc_opts tc_opts_default(void);

/* Parses option `a` with value `v` (may be NULL) into o if it is one of
 * tc_opts's: returns 1 (taken), 0 (not one of them), or -1 (a bad or
 * missing value: the message, prefixed with `prog`, is printed). */
int tc_parse_option(const char *prog, const char *a, const char *v, tc_opts *o);

/* The learning rate of step `step` of `total`: o->lr, or under cosine
 * decay from o->lr to 0 over the run. */
double tc_lr_at(const tc_opts *o, int64_t step, int64_t total);

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

/* Adds to g, on `slice` (of n devices), the four Fashion-MNIST files of
 * directory `dir`, each device reading and keeping only its part (idx_read
 * split_rows: rows s*N/n .. of device s), as outputs "train_x" (u8
 * [60000, 784] split by rows), "train_y", "test_x" and "test_y". Exits on
 * error. */
void tc_add_dataset(pf_context *ctx, pf_graph *g, pf_slice_t slice, int n, const char *dir);
/* The same, read on `slice` and handed out as split by rows over slice `to`
 * (the model's GPUs, say): a move the executable makes once. */
void tc_add_dataset_to(pf_context *ctx, pf_graph *g, pf_slice_t slice, int n, const char *dir,
                       pf_slice_t to);

/* The rows of data set data_x/data_y (u8 values split by rows over
 * `slice`, each device holding its part) for `step`: f32 pixels in [0, 1]
 * into *x and i64 labels into *y, split by rows over the slice, per_device
 * rows on each device from its own part, in the order batch_rows draws from
 * `seed`, the epoch and the device (batch_rows partitioned, as train_mlp
 * reads its data). Exits on error. */
void tc_batch(pf_context *ctx, pf_graph *g, pf_slice_t slice, int per_device, int64_t seed,
              pf_value_t data_x, pf_value_t data_y, pf_value_t step, pf_value_t *x,
              pf_value_t *y);

/* Releases every buffer of b. */
void tc_release(pf_context *ctx, tc_named *b);

/* Seconds on the monotonic clock. */
double tc_now_s(void);

#endif
