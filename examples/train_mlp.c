/* train_mlp: data-parallel MLP training on Fashion-MNIST.
 *
 *   mpirun -np 2 build/examples/train_mlp [--hidden 256] [--batch 128]
 *       [--epochs 5] [--lr 0.001] [--optimizer adam|momentum|sgd] [--seed 1]
 *       [--devices N] [--data DIR] [--limit-steps N] [--metrics FILE.csv]
 *       [--bucket-kb N | --no-bucket]
 *       [--checkpoint DIR [--checkpoint-every N] [--checkpoint-keep K] [--resume]]
 *
 * Every device reads and keeps only its part of the data set (idx_read
 * split by rows over all devices of the job); each step picks its rows of
 * the batch on the device from a permutation of its part (batch_rows,
 * partitioned), runs forward, the backward pass pf_graph_grad derived, and
 * the optimizer; the gradients (left partial by pf_graph_grad_partial) and
 * the loss are summed over the devices in buckets, one allreduce each
 * (pf_graph_allreduce_buckets); parameters and optimizer state stay on the devices as
 * buffers from step to step, updated in place (donated each step). Test
 * accuracy is counted by every device on its part of the test set. Per
 * step the controller sends the run message, the step number and the
 * learning rate, nothing else. */
#include <math.h>
#include <pathflow.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <fcntl.h>
#include <unistd.h>

#include "train_common.h"

#define MAX_LAYERS 8
#define CHECK(call)                                                                    \
  do {                                                                                 \
    int rc_ = (call);                                                                  \
    if (rc_ != 0) {                                                                    \
      fprintf(stderr, "train_mlp: %s failed: %s: %s\n", #call, pf_strerror(rc_),        \
              pf_last_error(ctx));                                                     \
      exit(1);                                                                         \
    }                                                                                  \
  } while (0)

typedef struct opts {
  int hidden[MAX_LAYERS], n_hidden, batch, epochs, devices, limit_steps, every, keep, resume;
  int in_flight; /* training steps sent ahead of the one whose loss is read */
  long bucket_kb; /* -1: --no-bucket, one allreduce per gradient */
  double lr;
  const char *optimizer, *data, *metrics, *schedule, *checkpoint;
  int64_t seed;
  pf_device_kind kind; /* the model's devices (--device) */
} opts;

#define MAX_IN_FLIGHT 16

static pf_context *ctx;
/* The kind of device the model runs on (--device): every graph but the
 * data set's reading, whose kernel reads files on a CPU. */
static pf_device_kind model_kind = PF_DEVICE_CPU;

static void usage(FILE *f) {
  fprintf(f,
          "usage: train_mlp [--hidden N[,N...]] [--batch N] [--epochs N] [--lr X]\n"
          "                 [--optimizer adam|momentum|sgd] [--seed N] [--devices N]\n"
          "                 [--schedule cosine|constant] [--data DIR] [--limit-steps N]\n"
          "                 [--metrics FILE.csv] [--checkpoint DIR [--checkpoint-every N]\n"
          "                 [--checkpoint-keep K] [--resume]] [--bucket-kb N | --no-bucket]\n"
          "                 [--in-flight N] [--device cpu|gpu]\n"
          "Data-parallel MLP training on Fashion-MNIST (Debian's dataset-fashion-mnist).\n"
          "Defaults: --hidden 256 --batch 128 --epochs 15 --lr 0.001 --optimizer adam\n"
          "          --schedule cosine (adam's rate decays to 0 over the run)\n"
          "          --seed 1 --devices 1 (per rank) --data /usr/share/datasets/fashion-mnist\n"
          "          --checkpoint-every 500 --checkpoint-keep 2 (older step-N directories\n"
          "          are removed once a newer checkpoint is complete)\n"
          "          --bucket-kb 256 (gradients and the loss summed in buckets of at most\n"
          "          N KiB, one allreduce each; a larger gradient alone; --no-bucket: one\n"
          "          allreduce per gradient, for comparison)\n"
          "          --in-flight 2 (steps sent before the loop waits for the oldest: each\n"
          "          fed the parameters the one before it will make; 1: send a step, wait\n"
          "          for it, send the next)\n"
          "          --device cpu (gpu: the model on the job's GPUs, --devices counting\n"
          "          its CPU devices; the data set is read on CPUs and moved to the GPUs\n"
          "          once)\n");
}

static int parse(int argc, char **argv, opts *o) {
  *o = (opts){.hidden = {256}, .n_hidden = 1, .batch = 128, .epochs = 15, .devices = 1,
              .in_flight = 2,
              .lr = 0.001, .optimizer = "adam", .schedule = "cosine",
              .data = "/usr/share/datasets/fashion-mnist",
              .seed = 1, .every = 500, .keep = 2, .bucket_kb = 256, .kind = PF_DEVICE_CPU};
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    char *end = NULL;
    if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
      usage(stdout);
      exit(0);
    }
    if (strcmp(a, "--resume") == 0) {
      o->resume = 1;
      continue;
    }
    if (strcmp(a, "--no-bucket") == 0) {
      o->bucket_kb = -1;
      continue;
    }
    if (v == NULL) {
      fprintf(stderr, "train_mlp: %s needs a value\n", a);
      return -1;
    }
    i++;
    if (strcmp(a, "--hidden") == 0) {
      o->n_hidden = 0;
      for (const char *p = v; *p && o->n_hidden < MAX_LAYERS; p = *end ? end + 1 : end) {
        long h = strtol(p, &end, 10);
        if (end == p || h < 1 || h > 65536 || (*end && *end != ',')) goto bad;
        o->hidden[o->n_hidden++] = (int)h;
      }
    } else if (strcmp(a, "--batch") == 0) {
      o->batch = (int)strtol(v, &end, 10);
      if (*end || o->batch < 1) goto bad;
    } else if (strcmp(a, "--epochs") == 0) {
      o->epochs = (int)strtol(v, &end, 10);
      if (*end || o->epochs < 1) goto bad;
    } else if (strcmp(a, "--devices") == 0) {
      o->devices = (int)strtol(v, &end, 10);
      if (*end || o->devices < 1) goto bad;
    } else if (strcmp(a, "--limit-steps") == 0) {
      o->limit_steps = (int)strtol(v, &end, 10);
      if (*end || o->limit_steps < 1) goto bad;
    } else if (strcmp(a, "--in-flight") == 0) {
      o->in_flight = (int)strtol(v, &end, 10);
      if (*end || o->in_flight < 1 || o->in_flight > MAX_IN_FLIGHT) goto bad;
    } else if (strcmp(a, "--bucket-kb") == 0) {
      o->bucket_kb = strtol(v, &end, 10);
      if (*end || o->bucket_kb < 0 || o->bucket_kb > (1L << 30)) goto bad;
    } else if (strcmp(a, "--seed") == 0) {
      o->seed = strtoll(v, &end, 10);
      if (*end) goto bad;
    } else if (strcmp(a, "--lr") == 0) {
      o->lr = strtod(v, &end);
      if (*end || !(o->lr > 0)) goto bad;
    } else if (strcmp(a, "--optimizer") == 0) {
      if (strcmp(v, "adam") && strcmp(v, "momentum") && strcmp(v, "sgd")) goto bad;
      o->optimizer = v;
    } else if (strcmp(a, "--schedule") == 0) {
      if (strcmp(v, "cosine") && strcmp(v, "constant")) goto bad;
      o->schedule = v;
    } else if (strcmp(a, "--device") == 0) {
      if (strcmp(v, "cpu") && strcmp(v, "gpu")) goto bad;
      o->kind = strcmp(v, "gpu") == 0 ? PF_DEVICE_GPU : PF_DEVICE_CPU;
    } else if (strcmp(a, "--data") == 0) {
      o->data = v;
    } else if (strcmp(a, "--metrics") == 0) {
      o->metrics = v;
    } else if (strcmp(a, "--checkpoint") == 0) {
      o->checkpoint = v;
    } else if (strcmp(a, "--checkpoint-every") == 0) {
      o->every = (int)strtol(v, &end, 10);
      if (*end || o->every < 1) goto bad;
    } else if (strcmp(a, "--checkpoint-keep") == 0) {
      o->keep = (int)strtol(v, &end, 10);
      if (*end || o->keep < 1) goto bad;
    } else {
      fprintf(stderr, "train_mlp: unknown option %s\n", a);
      usage(stderr);
      return -1;
    }
    continue;
  bad:
    fprintf(stderr, "train_mlp: bad value for %s: %s\n", a, v);
    return -1;
  }
  if (o->resume && o->checkpoint == NULL) {
    fprintf(stderr, "train_mlp: --resume needs --checkpoint DIR\n");
    return -1;
  }
  if (o->checkpoint != NULL && o->kind != PF_DEVICE_CPU) {
    /* The checkpoint kernels write files: CPU kernels only. */
    fprintf(stderr, "train_mlp: --checkpoint needs --device cpu\n");
    return -1;
  }
  return 0;
}

/* ---- graphs ----------------------------------------------------------------- */

typedef struct model {
  int n_layers, dims[MAX_LAYERS + 2];
  int n_params, n_state; /* state per parameter: 0 sgd, 1 momentum, 2 adam */
} model;

static pf_value_t program(pf_graph *g, pf_slice_t s, const char *kernel, pf_attrs *a, int n_in,
                          const pf_value_t *in, pf_value_t *outs) {
  pf_value_t one;
  CHECK(pf_graph_program(g,
                         &(pf_program_desc){.kernel = kernel, .attrs = a, .slice = s,
                                            .n_in = n_in, .in = in},
                         outs ? outs : &one, NULL));
  return outs ? outs[0] : one;
}

static pf_attrs *attrs(void) {
  pf_attrs *a;
  CHECK(pf_attrs_create(&a));
  return a;
}

/* logits = the MLP applied to x. */
static pf_value_t forward(pf_graph *g, pf_slice_t s, const model *m, const pf_value_t *params,
                          pf_value_t x) {
  for (int l = 0; l < m->n_layers; l++) {
    x = program(g, s, "matmul", NULL, 2, (pf_value_t[]){x, params[2 * l]}, NULL);
    x = program(g, s, "bias_add", NULL, 2, (pf_value_t[]){x, params[2 * l + 1]}, NULL);
    if (l + 1 < m->n_layers) x = program(g, s, "relu", NULL, 1, &x, NULL);
  }
  return x;
}

static void param_spec(const model *m, int p, pf_spec *s) {
  int l = p / 2;
  *s = p % 2 == 0 ? pf_spec_2d(PF_F32, m->dims[l], m->dims[l + 1])
                  : pf_spec_1d(PF_F32, m->dims[l + 1]);
}

static void name_of(char *buf, size_t n, const char *what, int i) {
  snprintf(buf, n, "%s%d", what, i);
}

/* Parameters (Kaiming-uniform weights, zero biases) and zeroed state. */
static pf_executable *build_init(const model *m, int n, const opts *o) {
  pf_graph *g;
  pf_slice_t s;
  pf_executable *exe;
  char name[32];
  CHECK(pf_graph_create(ctx, &g));
  CHECK(pf_graph_slice(g, model_kind, n, &s));
  for (int p = 0; p < m->n_params; p++) {
    pf_spec ps;
    pf_attrs *a = attrs();
    param_spec(m, p, &ps);
    CHECK(pf_attrs_set_ints(a, "shape", ps.dims, ps.rank));
    if (p % 2 == 0) {
      CHECK(pf_attrs_set_string(a, "mode", "kaiming"));
      CHECK(pf_attrs_set_int(a, "seed", o->seed * 1000 + p));
    }
    name_of(name, sizeof name, "p", p);
    CHECK(pf_graph_output(g, name, program(g, s, p % 2 == 0 ? "init_uniform" : "fill", a, 0,
                                           NULL, NULL)));
    for (int k = 0; k < m->n_state; k++) {
      name_of(name, sizeof name, k == 0 ? "m" : "v", p);
      CHECK(pf_graph_output(g, name, program(g, s, "fill", a, 0, NULL, NULL)));
    }
    pf_attrs_destroy(a);
  }
  {
    pf_attrs *a = attrs();
    CHECK(pf_attrs_set_ints(a, "shape", NULL, 0));
    CHECK(pf_attrs_set_int(a, "dtype", PF_I64));
    CHECK(pf_graph_output(g, "t", program(g, s, "fill", a, 0, NULL, NULL)));
    pf_attrs_destroy(a);
  }
  CHECK(pf_compile(g, &exe));
  pf_graph_destroy(g);
  return exe;
}

/* The data set, read once: each of the n devices keeps its part of the
 * rows (n divides both sets: checked in main). GPUs cannot read files: the
 * job's CPUs read it (n of them, else one) and hand it to the GPUs. */
static pf_executable *build_load(int n, const char *dir) {
  pf_graph *g;
  pf_slice_t s, readers;
  pf_executable *exe;
  CHECK(pf_graph_create(ctx, &g));
  CHECK(pf_graph_slice(g, model_kind, n, &s));
  if (model_kind == PF_DEVICE_CPU) {
    tc_add_dataset(ctx, g, s, n, dir);
  } else {
    int k = pf_device_count(ctx, PF_DEVICE_CPU) >= n ? n : 1;
    CHECK(pf_graph_slice(g, PF_DEVICE_CPU, k, &readers));
    tc_add_dataset_to(ctx, g, readers, k, dir, s);
  }
  CHECK(pf_compile(g, &exe));
  pf_graph_destroy(g);
  return exe;
}

static void declare(pf_graph *g, pf_slice_t s, const char *name, pf_spec spec, pf_value_t *v) {
  CHECK(pf_graph_input(g, name, &spec, s, pf_replicated(), v));
}

/* A data set input: split by rows, each device's part where it lies. */
static void declare_rows(pf_graph *g, pf_slice_t s, const char *name, pf_spec spec,
                         pf_value_t *v) {
  CHECK(pf_graph_input(g, name, &spec, s, pf_split(0), v));
}

/* The start of a step's graph: a slice of the job's n devices, the data
 * set `set` ("train" or "test", `rows` rows) and the step as inputs, the
 * parameters and `n_state` state values per parameter. */
static void step_inputs(int n, const char *set, int64_t rows, const model *m, int n_state,
                        pf_graph **g, pf_slice_t *s, pf_value_t *data_x, pf_value_t *data_y,
                        pf_value_t *step, pf_value_t *params, pf_value_t (*state)[2 * MAX_LAYERS + 2]) {
  char name[32];
  CHECK(pf_graph_create(ctx, g));
  CHECK(pf_graph_slice(*g, model_kind, n, s));
  snprintf(name, sizeof name, "%s_x", set);
  declare_rows(*g, *s, name, pf_spec_2d(PF_U8, rows, 784), data_x);
  snprintf(name, sizeof name, "%s_y", set);
  declare_rows(*g, *s, name, pf_spec_1d(PF_U8, rows), data_y);
  declare(*g, *s, "step", pf_spec_scalar(PF_I64), step);
  for (int p = 0; p < m->n_params; p++) {
    pf_spec ps;
    param_spec(m, p, &ps);
    name_of(name, sizeof name, "p", p);
    declare(*g, *s, name, ps, &params[p]);
    for (int k = 0; k < n_state; k++) {
      name_of(name, sizeof name, k == 0 ? "m" : "v", p);
      declare(*g, *s, name, ps, &state[k][p]);
    }
  }
}

/* One training step: batch, forward, loss, pf_graph_grad, optimizer. */
static pf_executable *build_train(const model *m, int n, const opts *o) {
  pf_graph *g;
  pf_slice_t s;
  pf_executable *exe;
  pf_value_t params[2 * MAX_LAYERS + 2], grads[2 * MAX_LAYERS + 2], state[2][2 * MAX_LAYERS + 2];
  pf_value_t data_x, data_y, step, t = PF_NO_VALUE, lr = PF_NO_VALUE, x, y, logits, loss[2], correct;
  char name[32];
  pf_attrs *a;
  step_inputs(n, "train", 60000, m, m->n_state, &g, &s, &data_x, &data_y, &step, params, state);
  if (strcmp(o->optimizer, "adam") == 0) {
    declare(g, s, "t", pf_spec_scalar(PF_I64), &t);
    declare(g, s, "lr", pf_spec_scalar(PF_F64), &lr);
  }
  tc_batch(ctx, g, s, o->batch / n, o->seed, data_x, data_y, step, &x, &y);
  logits = forward(g, s, m, params, x);
  a = attrs();
  CHECK(pf_attrs_set_int(a, "mean_over", o->batch));
  program(g, s, "softmax_xent", a, 2, (pf_value_t[]){logits, y}, loss);
  pf_attrs_destroy(a);
  correct = program(g, s, "accuracy", NULL, 2, (pf_value_t[]){logits, y}, NULL);
  if (o->bucket_kb < 0) {
    CHECK(pf_graph_grad(g, loss[0], m->n_params, params, grads));
  } else {
    /* Partial gradients and loss summed in buckets: the loss (ready
     * first), then the gradients in the order the backward pass makes
     * them, the last layer's first. Each element is the same sum of two
     * ranks' summands as in its own allreduce, so the run is the same bit
     * for bit (examples/train_check.sh compares the losses). */
    pf_value_t partial[2 * MAX_LAYERS + 3], sums[2 * MAX_LAYERS + 3];
    CHECK(pf_graph_grad_partial(g, loss[0], m->n_params, params, grads));
    partial[0] = loss[0];
    for (int p = 0; p < m->n_params; p++) partial[1 + p] = grads[m->n_params - 1 - p];
    CHECK(pf_graph_allreduce_buckets(g, m->n_params + 1, partial, (size_t)o->bucket_kb * 1024,
                                     sums));
    loss[0] = sums[0];
    for (int p = 0; p < m->n_params; p++) grads[m->n_params - 1 - p] = sums[1 + p];
  }
  for (int p = 0; p < m->n_params; p++) {
    pf_value_t outs[4];
    a = attrs();
    CHECK(pf_attrs_set_float(a, "lr", o->lr));
    if (strcmp(o->optimizer, "adam") == 0) {
      program(g, s, "adam", a, 6,
              (pf_value_t[]){params[p], grads[p], state[0][p], state[1][p], t, lr}, outs);
      name_of(name, sizeof name, "m", p);
      CHECK(pf_graph_output(g, name, outs[1]));
      name_of(name, sizeof name, "v", p);
      CHECK(pf_graph_output(g, name, outs[2]));
      if (p == 0) CHECK(pf_graph_output(g, "t", outs[3]));
    } else if (strcmp(o->optimizer, "momentum") == 0) {
      program(g, s, "momentum", a, 3, (pf_value_t[]){params[p], grads[p], state[0][p]}, outs);
      name_of(name, sizeof name, "m", p);
      CHECK(pf_graph_output(g, name, outs[1]));
    } else {
      program(g, s, "sgd", a, 2, (pf_value_t[]){params[p], grads[p]}, outs);
    }
    pf_attrs_destroy(a);
    name_of(name, sizeof name, "p", p);
    CHECK(pf_graph_output(g, name, outs[0]));
  }
  CHECK(pf_graph_output(g, "loss", loss[0]));
  CHECK(pf_graph_output(g, "correct", correct));
  CHECK(pf_compile(g, &exe));
  pf_graph_destroy(g);
  return exe;
}

/* Correct predictions over the whole test set: each device counts its part. */
static pf_executable *build_eval(const model *m, int n) {
  pf_graph *g;
  pf_slice_t s;
  pf_executable *exe;
  pf_value_t params[2 * MAX_LAYERS + 2], data_x, data_y, step, x, y;
  step_inputs(n, "test", 10000, m, 0, &g, &s, &data_x, &data_y, &step, params, NULL);
  tc_batch(ctx, g, s, 10000 / n, 0, data_x, data_y, step, &x, &y); /* all of each part */
  CHECK(pf_graph_output(g, "correct",
                        program(g, s, "accuracy", NULL, 2,
                                (pf_value_t[]){forward(g, s, m, params, x), y}, NULL)));
  CHECK(pf_compile(g, &exe));
  pf_graph_destroy(g);
  return exe;
}

/* The optimizer state beside the parameters: names and specs of everything
 * a checkpoint holds, in a fixed order. Returns how many. */
static int state_names(const model *m, char names[][32], pf_spec *specs) {
  int n = 0;
  for (int p = 0; p < m->n_params; p++) {
    pf_spec ps;
    param_spec(m, p, &ps);
    for (int k = -1; k < m->n_state; k++) {
      name_of(names[n], 32, k < 0 ? "p" : k == 0 ? "m" : "v", p);
      specs[n++] = ps;
    }
  }
  if (m->n_state == 2) {
    snprintf(names[n], 32, "t");
    specs[n++] = pf_spec_scalar(PF_I64);
  }
  return n;
}

/* save: every device writes its copy of each state value to
 * DIR/step-<step>/; load: each reads its own back. */
static pf_executable *build_checkpoint(const model *m, int n, const char *dir, int load) {
  static char names[4 * (2 * MAX_LAYERS + 2) + 1][32];
  pf_spec specs[4 * (2 * MAX_LAYERS + 2) + 1];
  int count = state_names(m, names, specs);
  pf_graph *g;
  pf_slice_t s;
  pf_executable *exe;
  pf_value_t step;
  CHECK(pf_graph_create(ctx, &g));
  CHECK(pf_graph_slice(g, model_kind, n, &s));
  declare(g, s, "step", pf_spec_scalar(PF_I64), &step);
  for (int i = 0; i < count; i++) {
    pf_attrs *a = attrs();
    pf_value_t v;
    char out[40];
    CHECK(pf_attrs_set_string(a, "dir", dir));
    CHECK(pf_attrs_set_string(a, "name", names[i]));
    if (load) {
      CHECK(pf_attrs_set_ints(a, "shape", specs[i].dims, specs[i].rank));
      CHECK(pf_attrs_set_int(a, "dtype", specs[i].dtype));
      CHECK(pf_graph_output(g, names[i], program(g, s, "checkpoint_load", a, 1, &step, NULL)));
    } else {
      declare(g, s, names[i], specs[i], &v);
      snprintf(out, sizeof out, "bytes_%.30s", names[i]);
      CHECK(pf_graph_output(g, out, program(g, s, "checkpoint_save", a, 2,
                                            (pf_value_t[]){v, step}, NULL)));
    }
    pf_attrs_destroy(a);
  }
  CHECK(pf_compile(g, &exe));
  pf_graph_destroy(g);
  return exe;
}

/* Every device removes its files of the checkpoints older than the `keep`
 * newest (checkpoint_prune), after the manifest names the newest. */
static pf_executable *build_prune(int n, const char *dir, int keep) {
  pf_graph *g;
  pf_slice_t s;
  pf_executable *exe;
  pf_value_t step;
  pf_attrs *a = attrs();
  CHECK(pf_graph_create(ctx, &g));
  CHECK(pf_graph_slice(g, model_kind, n, &s));
  declare(g, s, "step", pf_spec_scalar(PF_I64), &step);
  CHECK(pf_attrs_set_string(a, "dir", dir));
  CHECK(pf_attrs_set_int(a, "keep", keep));
  CHECK(pf_graph_output(g, "removed", program(g, s, "checkpoint_prune", a, 1, &step, NULL)));
  pf_attrs_destroy(a);
  CHECK(pf_compile(g, &exe));
  pf_graph_destroy(g);
  return exe;
}

/* What a checkpoint must agree on with the run that resumes it. */
static void describe(const opts *o, int n, int64_t total, char *buf, size_t len) {
  int at = snprintf(buf, len, "hidden=");
  for (int i = 0; i < o->n_hidden; i++) at += snprintf(buf + at, len - (size_t)at, "%s%d", i ? "," : "", o->hidden[i]);
  snprintf(buf + at, len - (size_t)at,
           "\nbatch=%d\noptimizer=%s\nlr=%.17g\nschedule=%s\nseed=%lld\ndevices=%d\n"
           "total_steps=%lld\n",
           o->batch, o->optimizer, o->lr, o->schedule, (long long)o->seed, n, (long long)total);
}

/* The manifest goes last and whole: temporary file, fsync, rename, fsync of
 * the directory. A job killed before the rename leaves the previous one. */
static int write_manifest(const char *dir, int64_t step, const char *config) {
  char tmp[1100], path[1100];
  FILE *f;
  int fd;
  snprintf(tmp, sizeof tmp, "%s/manifest.tmp", dir);
  snprintf(path, sizeof path, "%s/manifest", dir);
  if ((f = fopen(tmp, "w")) == NULL) return -1;
  fprintf(f, "format=pathflow-train-1\nstep=%lld\n%s", (long long)step, config);
  if (fflush(f) != 0 || fsync(fileno(f)) != 0) {
    fclose(f);
    return -1;
  }
  fclose(f);
  if (rename(tmp, path) != 0 || (fd = open(dir, O_RDONLY | O_DIRECTORY)) < 0) return -1;
  fsync(fd);
  close(fd);
  return 0;
}

/* The step of the checkpoint in dir, after checking that it was written by
 * a run like this one; -1 with a message naming the mismatch otherwise. */
static int64_t read_manifest(const char *dir, const char *config) {
  char path[1100], line[256], want[256];
  long long step = -1;
  const char *c = config;
  FILE *f;
  snprintf(path, sizeof path, "%s/manifest", dir);
  if ((f = fopen(path, "r")) == NULL) {
    fprintf(stderr, "train_mlp: --resume: no checkpoint in %s (%s is missing)\n", dir, path);
    return -1;
  }
  if (fgets(line, sizeof line, f) == NULL || strcmp(line, "format=pathflow-train-1\n") != 0 ||
      fgets(line, sizeof line, f) == NULL || sscanf(line, "step=%lld", &step) != 1) {
    fprintf(stderr, "train_mlp: --resume: %s is not a train_mlp manifest\n", path);
    fclose(f);
    return -1;
  }
  while (*c) {
    size_t k = strcspn(c, "\n");
    snprintf(want, sizeof want, "%.*s\n", (int)k, c);
    if (fgets(line, sizeof line, f) == NULL || strcmp(line, want) != 0) {
      want[k] = '\0';
      line[strcspn(line, "\n")] = '\0';
      fprintf(stderr,
              "train_mlp: --resume: the checkpoint in %s was written with %s; this run has %s\n",
              dir, line[0] ? line : "(nothing)", want);
      fclose(f);
      return -1;
    }
    c += k + (c[k] == '\n');
  }
  fclose(f);
  return step;
}

/* ---- the loop ----------------------------------------------------------------- */

#define MAX_BUFFERS (3 * (2 * MAX_LAYERS + 2) + 1)

/* Buffers by name: what the last execution left for the next. */
typedef struct named {
  char name[MAX_BUFFERS][32];
  pf_buffer_t buf[MAX_BUFFERS];
  int n;
} named;

static pf_buffer_t *find(named *b, const char *name) {
  for (int i = 0; i < b->n; i++)
    if (strcmp(b->name[i], name) == 0) return &b->buf[i];
  return NULL;
}

/* Takes every output of `exe` but `skip` from finished future f into b,
 * releasing the buffers they replace. */
static void collect(pf_executable *exe, pf_future *f, named *b, const char *skip1,
                    const char *skip2) {
  for (int i = 0; i < pf_executable_num_outputs(exe); i++) {
    const char *name;
    pf_buffer_t *slot;
    CHECK(pf_executable_output(exe, i, &name, NULL));
    if ((skip1 && strcmp(name, skip1) == 0) || (skip2 && strcmp(name, skip2) == 0)) continue;
    if ((slot = find(b, name)) != NULL) {
      if (slot->id != 0) CHECK(pf_buffer_release(ctx, *slot)); /* 0: donated */
    } else {
      slot = &b->buf[b->n];
      snprintf(b->name[b->n++], sizeof b->name[0], "%s", name);
    }
    CHECK(pf_future_output(f, name, slot));
  }
}

/* 1 if `exe` has an output called `name`. */
static int has_output(pf_executable *exe, const char *name) {
  for (int i = 0; i < pf_executable_num_outputs(exe); i++) {
    const char *out;
    CHECK(pf_executable_output(exe, i, &out, NULL));
    if (strcmp(out, name) == 0) return 1;
  }
  return 0;
}

/* Feeds every input of `exe` from b, and "step" and "lr" from the host.
 * A buffer the execution replaces (an output of the same name: parameters
 * and optimizer state) is donated to it, so the optimizer updates it in
 * place; its slot in b is empty (id 0) until collect fills it. */
static pf_tensor *lr_now;
static pf_future *run(pf_executable *exe, named *b, pf_tensor *step) {
  pf_feed feeds[MAX_BUFFERS + 1];
  pf_future *f;
  int n = pf_executable_num_inputs(exe);
  for (int i = 0; i < n; i++) {
    const char *name;
    CHECK(pf_executable_input(exe, i, &name, NULL));
    feeds[i] = (pf_feed){.name = name};
    if (strcmp(name, "step") == 0) {
      feeds[i].tensor = step;
    } else if (strcmp(name, "lr") == 0) {
      feeds[i].tensor = lr_now;
    } else {
      pf_buffer_t *src = find(b, name);
      if (src == NULL) {
        fprintf(stderr, "train_mlp: no buffer for input %s\n", name);
        exit(1);
      }
      feeds[i].buffer = *src;
      feeds[i].donate = has_output(exe, name);
    }
  }
  CHECK(pf_execute(exe, n, feeds, &f));
  for (int i = 0; i < n; i++)
    if (feeds[i].donate) find(b, feeds[i].name)->id = 0;
  return f;
}

static int64_t fetch_i64(pf_future *f, const char *name) {
  pf_tensor *t;
  int64_t v;
  CHECK(pf_future_fetch(f, name, &t));
  v = *(int64_t *)pf_tensor_data(t);
  pf_tensor_destroy(t);
  return v;
}

/* Tests kill the job at a known point: TRAIN_MLP_PAUSE_AT=N stops after step
 * N (after its checkpoint's files, before its manifest) for a minute. */
static int pause_wanted(int64_t step);

static void pause_for_tests(int64_t step) {
  if (!pause_wanted(step)) return;
  printf("train_mlp: paused after step %lld\n", (long long)step);
  fflush(stdout);
  sleep(60);
}

static int pause_wanted(int64_t step) {
  const char *at = getenv("TRAIN_MLP_PAUSE_AT");
  return at != NULL && strtoll(at, NULL, 10) == step;
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* The steady rate: training steps read from the WARM_STEPS-th of the run
 * on, and when (the first steps allocate memory and fill caches; the
 * hand-written loop bench/train compares with times from its 10th). */
#define WARM_STEPS 10
static double warm_t, last_t, eval_s; /* eval_s: evaluations after warm_t */
static int64_t warm_done = -1, last_done;

/* An epoch's running figures and where they go. */
typedef struct progress {
  int epoch, tty, batch, per_epoch;
  FILE *csv;
  double t0, loss_sum;
  int64_t start, total, correct, seen, ran;
} progress;

/* Waits for training step `done` (the i-th of its epoch), reads its loss
 * and hits, writes its metrics and, every 50 steps and at the end of an
 * epoch or the run, the progress line; frees the future. */
static void record(pf_future *f, progress *p, int64_t done, int i) {
  pf_tensor *lt;
  double loss;
  int64_t hits;
  if (pf_future_wait(f) != 0) {
    fprintf(stderr, "train_mlp: step %lld failed: %s\n", (long long)done, pf_future_error(f));
    exit(1);
  }
  CHECK(pf_future_fetch(f, "loss", &lt));
  loss = *(float *)pf_tensor_data(lt);
  pf_tensor_destroy(lt);
  p->loss_sum += loss;
  p->ran++;
  p->correct += hits = fetch_i64(f, "correct");
  p->seen += p->batch;
  pf_future_destroy(f);
  last_t = now_s();
  last_done = done + 1;
  if (done + 1 - p->start == WARM_STEPS) {
    warm_t = last_t;
    warm_done = done + 1;
  }
  if (p->csv)
    fprintf(p->csv, "step,%d,%lld,%.9g,%.6f\n", p->epoch, (long long)(done + 1), loss,
            (double)hits / p->batch);
  if ((done + 1) % 50 == 0 || i + 1 == p->per_epoch || done + 1 == p->total) {
    double el = now_s() - p->t0, rate = (double)(done + 1 - p->start) * p->batch / el;
    double eta = (double)(p->total - done - 1) * p->batch / rate;
    printf("%sepoch %d step %lld/%lld loss %.4f train acc %.3f %.0f samples/s ETA %.0fs%s",
           p->tty ? "\r" : "", p->epoch, (long long)(done + 1), (long long)p->total,
           p->loss_sum / (double)p->ran, (double)p->correct / (double)p->seen, rate, eta,
           p->tty ? "   " : "\n");
    fflush(stdout);
  }
}

int main(int argc, char **argv) {
  opts o;
  model m;
  named bufs = {.n = 0};
  pf_executable *init, *load, *train, *eval;
  pf_future *f;
  pf_tensor *step;
  pf_spec ss = pf_spec_scalar(PF_I64);
  /* Under mpirun a rank's stdout is a pseudo-terminal even when mpirun's is
   * a file: redraw a line only on a terminal of our own. */
  int n, steps_per_epoch, tty = isatty(1) && getenv("OMPI_COMM_WORLD_SIZE") == NULL;
  double t0, accuracy = 0;
  int64_t total_steps, done = 0, start;
  FILE *csv = NULL;
  pf_executable *save = NULL, *prune = NULL;
  char config[512];
  if (parse(argc, argv, &o) != 0) return 2;
  CHECK(pf_init(&argc, &argv, &(pf_init_options){.cpu_devices = o.devices}, &ctx));
  model_kind = o.kind;
  if ((n = pf_device_count(ctx, model_kind)) < 1) {
    fprintf(stderr, "train_mlp: --device %s: this job has no such device%s\n",
            pf_device_kind_name(model_kind),
            model_kind == PF_DEVICE_GPU ? " (no GPU found; see PATHFLOW_CUDA in docs/cli.md)" : "");
    return 2;
  }
  if (o.batch % n != 0 || 10000 % n != 0 || 60000 % n != 0) {
    fprintf(stderr, "train_mlp: the batch (%d), the training set (60000) and the test set "
                    "(10000) must divide over the %d devices\n", o.batch, n);
    return 2;
  }
  m.n_layers = o.n_hidden + 1;
  m.dims[0] = 784;
  for (int i = 0; i < o.n_hidden; i++) m.dims[i + 1] = o.hidden[i];
  m.dims[m.n_layers] = 10;
  m.n_params = 2 * m.n_layers;
  m.n_state = strcmp(o.optimizer, "adam") == 0 ? 2 : strcmp(o.optimizer, "momentum") == 0;
  init = build_init(&m, n, &o);
  load = build_load(n, o.data);
  train = build_train(&m, n, &o);
  eval = build_eval(&m, n);
  CHECK(pf_tensor_create(&ss, &step));
  {
    pf_spec ls = pf_spec_scalar(PF_F64);
    CHECK(pf_tensor_create(&ls, &lr_now));
  }
  f = run(init, &bufs, step);
  CHECK(pf_future_wait(f));
  collect(init, f, &bufs, NULL, NULL);
  pf_future_destroy(f);
  f = run(load, &bufs, step);
  if (pf_future_wait(f) != 0) {
    fprintf(stderr, "train_mlp: loading the data set failed: %s\n", pf_future_error(f));
    return 1;
  }
  collect(load, f, &bufs, NULL, NULL);
  pf_future_destroy(f);
  steps_per_epoch = 60000 / o.batch;
  total_steps = (int64_t)steps_per_epoch * o.epochs;
  if (o.limit_steps > 0 && o.limit_steps < total_steps) total_steps = o.limit_steps;
  describe(&o, n, total_steps, config, sizeof config);
  if (o.checkpoint != NULL) {
    save = build_checkpoint(&m, n, o.checkpoint, 0);
    prune = build_prune(n, o.checkpoint, o.keep);
    if (o.resume) {
      pf_executable *load_ckpt = build_checkpoint(&m, n, o.checkpoint, 1);
      if ((done = read_manifest(o.checkpoint, config)) < 0) return 1;
      *(int64_t *)pf_tensor_data(step) = done;
      f = run(load_ckpt, &bufs, step);
      if (pf_future_wait(f) != 0) {
        fprintf(stderr, "train_mlp: --resume: %s\n", pf_future_error(f));
        return 1;
      }
      collect(load_ckpt, f, &bufs, NULL, NULL);
      pf_future_destroy(f);
      pf_executable_destroy(load_ckpt);
      printf("train_mlp: resumed from %s at step %lld\n", o.checkpoint, (long long)done);
    }
  }
  printf("train_mlp: %d devices, MLP 784", n);
  for (int i = 0; i < o.n_hidden; i++) printf("-%d", o.hidden[i]);
  printf("-10, batch %d, %s lr %g, %lld steps\n", o.batch, o.optimizer, o.lr,
         (long long)total_steps);
  if (o.metrics != NULL) {
    if ((csv = fopen(o.metrics, o.resume ? "a" : "w")) == NULL) {
      fprintf(stderr, "train_mlp: cannot write %s\n", o.metrics);
      return 1;
    }
    if (!o.resume) fprintf(csv, "kind,epoch,step,loss,accuracy\n");
  }
  t0 = now_s();
  start = done;
  for (int epoch = (int)(done / steps_per_epoch); done < total_steps; epoch++) {
    progress pr = {.epoch = epoch + 1, .tty = tty, .csv = csv, .t0 = t0, .start = start,
                   .total = total_steps, .batch = o.batch, .per_epoch = steps_per_epoch};
    /* Steps sent and not yet read, oldest first: ring[k] is step first + k
     * of the run. */
    pf_future *ring[MAX_IN_FLIGHT];
    int64_t first = done;
    int n_ring = 0;
    for (int i = (int)(done % steps_per_epoch); i < steps_per_epoch && done < total_steps;
         i++, done++) {
      int ckpt = save != NULL && ((done + 1) % o.every == 0 || done + 1 == total_steps), drain;
      *(int64_t *)pf_tensor_data(step) = done;
      /* Cosine decay from lr to 0 over the run, one scalar sent per step. */
      *(double *)pf_tensor_data(lr_now) =
          strcmp(o.schedule, "cosine") == 0
              ? o.lr * 0.5 * (1 + cos(M_PI * (double)done / (double)total_steps))
              : o.lr;
      f = run(train, &bufs, step);
      /* Its outputs are handed over now, before they are made: the next
       * step goes out fed them while this one runs, and this loop reads a
       * step's loss while the devices run the steps after it. Waiting for
       * each step before sending the next left the devices idle for the
       * round trip to this thread, ~90 us a step; one step ahead was not
       * enough with one core per rank, where this thread runs only when
       * the device thread waits (bench/train). */
      collect(train, f, &bufs, "loss", "correct");
      ring[n_ring++] = f;
      /* Before a checkpoint or a test's pause every step is read. */
      drain = ckpt || pause_wanted(done + 1);
      while (n_ring > (drain ? 0 : o.in_flight - 1)) {
        record(ring[0], &pr, first, (int)(first % steps_per_epoch));
        memmove(ring, ring + 1, (size_t)--n_ring * sizeof *ring);
        first++;
      }
      if (!drain) continue;
      if (!ckpt) {
        pause_for_tests(done + 1);
        continue;
      }
      pf_future *sf;
      *(int64_t *)pf_tensor_data(step) = done + 1;
      sf = run(save, &bufs, step);
      if (pf_future_wait(sf) != 0) {
        fprintf(stderr, "train_mlp: checkpoint at step %lld failed: %s\n",
                (long long)(done + 1), pf_future_error(sf));
        return 1;
      }
      pf_future_destroy(sf);
      if (csv) fflush(csv);
      pause_for_tests(done + 1);
      if (write_manifest(o.checkpoint, done + 1, config) != 0) {
        fprintf(stderr, "train_mlp: cannot write the manifest in %s\n", o.checkpoint);
        return 1;
      }
      sf = run(prune, &bufs, step);
      if (pf_future_wait(sf) != 0) /* the checkpoint is safe: say so, go on */
        fprintf(stderr, "train_mlp: removing old checkpoints: %s\n", pf_future_error(sf));
      pf_future_destroy(sf);
    }
    for (int k = 0; k < n_ring; k++, first++)
      record(ring[k], &pr, first, (int)(first % steps_per_epoch));
    *(int64_t *)pf_tensor_data(step) = 0;
    double eval_t = now_s();
    f = run(eval, &bufs, step);
    CHECK(pf_future_wait(f));
    accuracy = (double)fetch_i64(f, "correct") / 10000.0;
    pf_future_destroy(f);
    if (warm_done >= 0 && done < total_steps) eval_s += now_s() - eval_t;
    printf("%sepoch %d: test accuracy %.4f\n", tty ? "\n" : "", epoch + 1, accuracy);
    if (csv) fprintf(csv, "epoch,%d,%lld,0,%.6f\n", epoch + 1, (long long)done, accuracy);
  }
  printf("train_mlp: final test accuracy %.4f after %lld steps (%lld in this run) in %.1f s",
         accuracy, (long long)done, (long long)(done - start), now_s() - t0);
  if (warm_done >= 0 && last_done > warm_done && last_t - warm_t - eval_s > 0)
    printf(", training %.0f samples/s from step %lld on",
           (double)(last_done - warm_done) * o.batch / (last_t - warm_t - eval_s),
           (long long)warm_done + 1);
  printf("\n");
  if (csv != NULL) {
    fclose(csv);
    printf("train_mlp: metrics in %s (draw them: pathflow chart %s chart.svg)\n", o.metrics,
           o.metrics);
  }
  for (int i = 0; i < bufs.n; i++)
    if (bufs.buf[i].id != 0) pf_buffer_release(ctx, bufs.buf[i]);
  pf_tensor_destroy(step);
  pf_tensor_destroy(lr_now);
  pf_executable_destroy(init);
  pf_executable_destroy(load);
  pf_executable_destroy(train);
  pf_executable_destroy(eval);
  pf_executable_destroy(save);
  pf_executable_destroy(prune);
  return pf_finalize(ctx) != 0;
}
