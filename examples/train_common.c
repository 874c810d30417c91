#include "train_common.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

void tc_check(pf_context *ctx, int rc, const char *what) {
  if (rc == 0) return;
  fprintf(stderr, "%s failed: %s: %s\n", what, pf_strerror(rc), pf_last_error(ctx));
  exit(1);
}

pf_buffer_t *tc_find(tc_named *b, const char *name) {
  for (int i = 0; i < b->n; i++)
    if (strcmp(b->name[i], name) == 0) return &b->buf[i];
  return NULL;
}

static int listed(const char *const *names, const char *name) {
  for (; names && *names; names++)
    if (strcmp(*names, name) == 0) return 1;
  return 0;
}

void tc_collect(pf_context *ctx, pf_executable *exe, pf_future *f, tc_named *b,
                const char *const *skip) {
  for (int i = 0; i < pf_executable_num_outputs(exe); i++) {
    const char *name;
    pf_buffer_t *slot;
    tc_check(ctx, pf_executable_output(exe, i, &name, NULL), "pf_executable_output");
    if (listed(skip, name)) continue;
    if ((slot = tc_find(b, name)) != NULL) {
      tc_check(ctx, pf_buffer_release(ctx, *slot), "pf_buffer_release");
    } else {
      if (b->n == TC_MAX_BUFFERS) {
        fprintf(stderr, "more than %d named buffers\n", TC_MAX_BUFFERS);
        exit(1);
      }
      slot = &b->buf[b->n];
      snprintf(b->name[b->n++], sizeof b->name[0], "%s", name);
    }
    tc_check(ctx, pf_future_output(f, name, slot), "pf_future_output");
  }
}

pf_future *tc_run(pf_context *ctx, pf_executable *exe, tc_named *b, int n_host,
                  const char *const *host_names, pf_tensor *const *host_tensors) {
  pf_feed feeds[TC_MAX_BUFFERS + 8];
  pf_future *f;
  int n = pf_executable_num_inputs(exe);
  if (n > (int)(sizeof feeds / sizeof feeds[0])) {
    fprintf(stderr, "an executable with %d inputs\n", n);
    exit(1);
  }
  for (int i = 0; i < n; i++) {
    const char *name;
    int h;
    tc_check(ctx, pf_executable_input(exe, i, &name, NULL), "pf_executable_input");
    feeds[i] = (pf_feed){.name = name};
    for (h = 0; h < n_host && strcmp(host_names[h], name) != 0; h++) continue;
    if (h < n_host) {
      feeds[i].tensor = host_tensors[h];
    } else {
      pf_buffer_t *src = tc_find(b, name);
      if (src == NULL) {
        fprintf(stderr, "no buffer for input %s\n", name);
        exit(1);
      }
      feeds[i].buffer = *src;
    }
  }
  tc_check(ctx, pf_execute(exe, n, feeds, &f), "pf_execute");
  return f;
}

static pf_value_t add_program(pf_context *ctx, pf_graph *g, pf_slice_t slice, const char *kernel,
                              const pf_attrs *a, int n_in, const pf_value_t *in) {
  pf_value_t out;
  tc_check(ctx,
           pf_graph_program(g,
                            &(pf_program_desc){.kernel = kernel, .attrs = a, .slice = slice,
                                               .n_in = n_in, .in = in},
                            &out, NULL),
           kernel);
  return out;
}

void tc_add_dataset(pf_context *ctx, pf_graph *g, pf_slice_t slice, int n, const char *dir) {
  tc_add_dataset_to(ctx, g, slice, n, dir, slice);
}

void tc_add_dataset_to(pf_context *ctx, pf_graph *g, pf_slice_t slice, int n, const char *dir,
                       pf_slice_t to) {
  static const struct {
    const char *out, *file;
    int64_t dims[2];
    int rank;
  } files[] = {
      {"train_x", "train-images-idx3-ubyte.gz", {60000, 784}, 2},
      {"train_y", "train-labels-idx1-ubyte.gz", {60000}, 1},
      {"test_x", "t10k-images-idx3-ubyte.gz", {10000, 784}, 2},
      {"test_y", "t10k-labels-idx1-ubyte.gz", {10000}, 1},
  };
  for (int i = 0; i < 4; i++) {
    char path[1024];
    pf_attrs *a;
    tc_check(ctx, pf_attrs_create(&a), "pf_attrs_create");
    snprintf(path, sizeof path, "%s/%s", dir, files[i].file);
    tc_check(ctx, pf_attrs_set_string(a, "path", path), "pf_attrs_set_string");
    int64_t part[2] = {files[i].dims[0] / n, files[i].dims[1]};
    tc_check(ctx, pf_attrs_set_ints(a, "shape", part, files[i].rank), "pf_attrs_set_ints");
    tc_check(ctx, pf_attrs_set_int(a, "split_rows", 1), "split_rows");
    {
      pf_value_t v = add_program(ctx, g, slice, "idx_read", a, 0, NULL);
      /* Moved once, split by rows over the other slice: where the model
       * reads it (a GPU's memory), so that no step moves it again. */
      if (to.id != slice.id)
        tc_check(ctx,
                 pf_graph_program(g,
                                  &(pf_program_desc){.kernel = "identity", .slice = to, .n_in = 1,
                                                     .in = &v,
                                                     .in_shardings = (pf_sharding[]){pf_split(0)}},
                                  &v, NULL),
                 "identity");
      tc_check(ctx, pf_graph_output(g, files[i].out, v), "pf_graph_output");
    }
    pf_attrs_destroy(a);
  }
}

void tc_batch(pf_context *ctx, pf_graph *g, pf_slice_t slice, int per_device, int64_t seed,
              pf_value_t data_x, pf_value_t data_y, pf_value_t step, pf_value_t *x,
              pf_value_t *y) {
  for (int i = 0; i < 2; i++) {
    pf_attrs *a;
    tc_check(ctx, pf_attrs_create(&a), "pf_attrs_create");
    tc_check(ctx, pf_attrs_set_int(a, "batch", per_device), "batch");
    tc_check(ctx, pf_attrs_set_int(a, "seed", seed), "seed");
    tc_check(ctx, pf_attrs_set_int(a, "split_rows", 1), "split_rows");
    tc_check(ctx, pf_attrs_set_int(a, "partitioned", 1), "partitioned");
    tc_check(ctx, pf_attrs_set_int(a, "dtype", i == 0 ? PF_F32 : PF_I64), "dtype");
    if (i == 0) tc_check(ctx, pf_attrs_set_float(a, "scale", 1.0 / 255), "scale");
    *(i == 0 ? x : y) = add_program(ctx, g, slice, "batch_rows", a, 2,
                                    (pf_value_t[]){i == 0 ? data_x : data_y, step});
    pf_attrs_destroy(a);
  }
}

void tc_release(pf_context *ctx, tc_named *b) {
  for (int i = 0; i < b->n; i++) pf_buffer_release(ctx, b->buf[i]);
  b->n = 0;
}

double tc_now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

tc_opts tc_opts_default(void) {
  return (tc_opts){.hidden = {256}, .n_hidden = 1, .batch = 128, .epochs = 15, .lr = 0.001,
                   .optimizer = "adam", .lr_schedule = "cosine",
                   .data = "/usr/share/datasets/fashion-mnist", .seed = 1};
}

static int positive(const char *v, int *out) {
  char *end;
  long x = strtol(v, &end, 10);
  if (*v == '\0' || *end || x < 1 || x > 1 << 30) return -1;
  *out = (int)x;
  return 0;
}

int tc_parse_option(const char *prog, const char *a, const char *v, tc_opts *o) {
  static const char *const known[] = {"--hidden", "--batch", "--epochs", "--lr",
                                      "--optimizer", "--lr-schedule", "--seed", "--data",
                                      "--limit-steps", "--metrics"};
  char *end = NULL;
  size_t k = 0;
  while (k < sizeof known / sizeof known[0] && strcmp(known[k], a) != 0) k++;
  if (k == sizeof known / sizeof known[0]) return 0;
  if (v == NULL) {
    fprintf(stderr, "%s: %s needs a value\n", prog, a);
    return -1;
  }
  if (strcmp(a, "--hidden") == 0) {
    o->n_hidden = 0;
    for (const char *p = v; *p; p = *end ? end + 1 : end) {
      long h = strtol(p, &end, 10);
      if (end == p || h < 1 || h > 65536 || (*end && *end != ',') ||
          o->n_hidden == TC_MAX_LAYERS)
        goto bad;
      o->hidden[o->n_hidden++] = (int)h;
    }
    if (o->n_hidden == 0) goto bad;
  } else if (strcmp(a, "--batch") == 0) {
    if (positive(v, &o->batch)) goto bad;
  } else if (strcmp(a, "--epochs") == 0) {
    if (positive(v, &o->epochs)) goto bad;
  } else if (strcmp(a, "--limit-steps") == 0) {
    if (positive(v, &o->limit_steps)) goto bad;
  } else if (strcmp(a, "--seed") == 0) {
    o->seed = strtoll(v, &end, 10);
    if (*v == '\0' || *end) goto bad;
  } else if (strcmp(a, "--lr") == 0) {
    o->lr = strtod(v, &end);
    if (*v == '\0' || *end || !(o->lr > 0)) goto bad;
  } else if (strcmp(a, "--optimizer") == 0) {
    if (strcmp(v, "adam") && strcmp(v, "momentum") && strcmp(v, "sgd")) goto bad;
    o->optimizer = v;
  } else if (strcmp(a, "--lr-schedule") == 0) {
    if (strcmp(v, "cosine") && strcmp(v, "constant")) goto bad;
    o->lr_schedule = v;
  } else if (strcmp(a, "--data") == 0) {
    o->data = v;
  } else {
    o->metrics = v;
  }
  return 1;
bad:
  fprintf(stderr, "%s: bad value for %s: %s\n", prog, a, v);
  return -1;
}

double tc_lr_at(const tc_opts *o, int64_t step, int64_t total) {
  if (strcmp(o->lr_schedule, "cosine") != 0) return o->lr;
  return o->lr * 0.5 * (1 + cos(M_PI * (double)step / (double)total));
}
