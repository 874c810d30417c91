/* train_pipeline: the MLP of train_mlp cut into pipeline stages (MPMD),
 * optionally replicated for data parallelism, on Fashion-MNIST.
 *
 *   mpirun -np 2 build/examples/train_pipeline [--microbatches 4]
 *       [--schedule gpipe|1f1b] [--dp 1] [--pp 2] [--hidden 256] [--batch 128]
 *       [--epochs 15] [--lr 0.001] [--optimizer adam|momentum|sgd]
 *       [--lr-schedule cosine|constant] [--seed 1] [--data DIR]
 *       [--limit-steps N] [--metrics FILE.csv] [--bubble]
 *
 * Stage s is a slice of its own devices (dp of them: global devices
 * s*dp .. s*dp+dp-1, one per rank) running its layers' programs: different
 * programs on different ranks. Stage 0 also owns the data (idx_read and
 * batch_rows on its slice, the batch split over its dp devices); the last
 * stage owns the loss and the accuracy. A step's batch is cut into
 * micro-batches on stage 0 (kernel microbatch); each micro-batch's forward
 * crosses the stages, its backward is derived by pf_graph_grad, the
 * gradients are summed over the micro-batches and the optimizer steps, all
 * in one execution. With dp > 1 the gradients of a stage's replicated
 * parameters come out partial over its slice (pf_graph_grad_partial), are
 * added up over the micro-batches, and the builder sums the total over the
 * replicas where the optimizer reads it (one allreduce per parameter: the
 * data-parallel allreduce, from the sharding rules).
 *
 * The schedule is the order of each stage's ops, which the compiler takes
 * from the graph (a topological order, lowest program id first):
 *   gpipe  every forward, then every backward (programs in creation order);
 *   1f1b   forward k of stage s waits (pf_graph_control) for backward
 *          k - (S - s) of that stage: S - s - 1 warm-up forwards, then one
 *          forward, one backward, and the cool-down backwards. A stage holds
 *          the activations of at most S - s micro-batches instead of M.
 * It prints both schedules' peak memory from the compiler's memory plan
 * and, with --bubble, the bubble fraction measured from the ops' timestamps
 * (the PATHFLOW_TRACE timeline) beside the theoretical (S-1)/(M+S-1). */
#include <errno.h>
#include <math.h>
#include <pathflow.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "train_common.h"

#define MAX_LAYERS TC_MAX_LAYERS
#define MAX_PARAMS (2 * MAX_LAYERS + 2)
#define MAX_MICRO 64
#define CHECK(call) tc_check(ctx, (call), "train_pipeline: " #call)

typedef struct opts {
  tc_opts c; /* the options every training example takes */
  int micro, dp, pp, bubble;
  const char *schedule;
} opts;

static pf_context *ctx;

static void usage(FILE *f) {
  fprintf(f,
          "usage: train_pipeline [--microbatches M] [--schedule gpipe|1f1b] [--dp N] [--pp S]\n"
          "                      [--hidden N[,N...]] [--batch N] [--epochs N] [--lr X]\n"
          "                      [--optimizer adam|momentum|sgd] [--lr-schedule cosine|constant]\n"
          "                      [--seed N] [--data DIR] [--limit-steps N] [--metrics FILE.csv]\n"
          "                      [--bubble]\n"
          "Pipeline (and hybrid) MLP training on Fashion-MNIST: S stages on dp*S ranks.\n"
          "Defaults: --microbatches 4 --schedule 1f1b --dp 1 --pp (ranks / dp) --hidden 256\n"
          "          --batch 128 --epochs 15 --lr 0.001 --optimizer adam --lr-schedule cosine\n"
          "          --seed 1 --data /usr/share/datasets/fashion-mnist\n"
          "--bubble: record the ops' timeline (PATHFLOW_TRACE) and print the measured bubble.\n");
}

static int int_arg(const char *v, int lo, int *out) {
  char *end;
  long x = strtol(v, &end, 10);
  if (*v == '\0' || *end || x < lo || x > 1 << 30) return -1;
  *out = (int)x;
  return 0;
}

static int parse(int argc, char **argv, opts *o) {
  *o = (opts){.c = tc_opts_default(), .micro = 4, .dp = 1, .schedule = "1f1b"};
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    int taken;
    if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
      usage(stdout);
      exit(0);
    }
    if (strcmp(a, "--bubble") == 0) {
      o->bubble = 1;
      continue;
    }
    if ((taken = tc_parse_option("train_pipeline", a, v, &o->c)) != 0) {
      if (taken < 0) return -1;
      i++;
      continue;
    }
    if (strcmp(a, "--microbatches") && strcmp(a, "--dp") && strcmp(a, "--pp") &&
        strcmp(a, "--schedule")) {
      fprintf(stderr, "train_pipeline: unknown option %s\n", a);
      usage(stderr);
      return -1;
    }
    if (v == NULL) {
      fprintf(stderr, "train_pipeline: %s needs a value\n", a);
      return -1;
    }
    i++;
    if ((strcmp(a, "--microbatches") == 0 && (int_arg(v, 1, &o->micro) || o->micro > MAX_MICRO)) ||
        (strcmp(a, "--dp") == 0 && int_arg(v, 1, &o->dp)) ||
        (strcmp(a, "--pp") == 0 && int_arg(v, 1, &o->pp)) ||
        (strcmp(a, "--schedule") == 0 && strcmp(v, "gpipe") && strcmp(v, "1f1b"))) {
      fprintf(stderr, "train_pipeline: bad value for %s: %s\n", a, v);
      return -1;
    }
    if (strcmp(a, "--schedule") == 0) o->schedule = v;
  }
  return 0;
}

/* ---- the model, cut into stages ------------------------------------------- */

typedef struct model {
  int n_layers, dims[MAX_LAYERS + 2], stage[MAX_LAYERS + 1];
  int n_params, n_state; /* state per parameter: 0 sgd, 1 momentum, 2 adam */
  int n_stages, dp;
} model;

static int stage_of_param(const model *m, int p) { return m->stage[p / 2]; }

static void param_spec(const model *m, int p, pf_spec *s) {
  int l = p / 2;
  *s = p % 2 == 0 ? pf_spec_2d(PF_F32, m->dims[l], m->dims[l + 1])
                  : pf_spec_1d(PF_F32, m->dims[l + 1]);
}

/* Cuts the layers into n_stages contiguous groups of balanced cost (the
 * multiply-adds of each layer's matmul): the cut whose costliest stage is
 * cheapest, so that no stage waits on a slower one more than it must. */
static void balance_stages(model *m) {
  /* best[s][l]: the least maximum over the first s stages holding layers
   * 0..l-1; cut[s][l]: where stage s-1 starts in that solution. */
  double best[MAX_LAYERS + 2][MAX_LAYERS + 2], cost[MAX_LAYERS + 2] = {0};
  int cut[MAX_LAYERS + 2][MAX_LAYERS + 2], L = m->n_layers, S = m->n_stages;
  for (int l = 0; l < L; l++) cost[l + 1] = cost[l] + (double)m->dims[l] * m->dims[l + 1];
  for (int s = 0; s <= S; s++)
    for (int l = 0; l <= L; l++) best[s][l] = INFINITY;
  best[0][0] = 0;
  for (int s = 1; s <= S; s++)
    for (int l = s; l <= L; l++)
      for (int k = s - 1; k < l; k++) {
        double v = fmax(best[s - 1][k], cost[l] - cost[k]);
        if (v < best[s][l]) {
          best[s][l] = v;
          cut[s][l] = k;
        }
      }
  for (int s = S, l = L; s > 0; l = cut[s][l], s--)
    for (int k = cut[s][l]; k < l; k++) m->stage[k] = s - 1;
}

static pf_attrs *attrs(void) {
  pf_attrs *a;
  CHECK(pf_attrs_create(&a));
  return a;
}

static pf_value_t program(pf_graph *g, pf_slice_t s, const char *name, const char *kernel,
                          pf_attrs *a, int n_in, const pf_value_t *in, pf_value_t *outs) {
  pf_value_t one[4];
  CHECK(pf_graph_program(g,
                         &(pf_program_desc){.name = name, .kernel = kernel, .attrs = a,
                                            .slice = s, .n_in = n_in, .in = in},
                         outs ? outs : one, NULL));
  return outs ? outs[0] : one[0];
}

/* A graph with one slice per stage: stage s on global devices s*dp... */
static pf_graph *new_graph(const model *m, pf_slice_t *slices) {
  pf_graph *g;
  CHECK(pf_graph_create(ctx, &g));
  for (int s = 0; s < m->n_stages; s++) {
    int devs[64];
    for (int i = 0; i < m->dp; i++) devs[i] = s * m->dp + i;
    CHECK(pf_graph_slice(g, PF_DEVICE_CPU, m->dp, &slices[s]));
    CHECK(pf_graph_slice_pin(g, slices[s], devs));
  }
  return g;
}

static void declare(pf_graph *g, pf_slice_t s, const char *name, pf_spec spec, pf_value_t *v) {
  CHECK(pf_graph_input(g, name, &spec, s, pf_replicated(), v));
}

static void pname(char *buf, const char *what, int p) { snprintf(buf, 32, "%s%d", what, p); }

/* Parameters (Kaiming-uniform weights with train_mlp's seeds, zero
 * biases) and zeroed optimizer state, each on its stage. */
static pf_executable *build_init(const model *m, const opts *o) {
  pf_slice_t sl[MAX_LAYERS + 1];
  pf_graph *g = new_graph(m, sl);
  pf_executable *exe;
  char name[32];
  for (int p = 0; p < m->n_params; p++) {
    pf_spec ps;
    pf_attrs *a = attrs();
    pf_slice_t s = sl[stage_of_param(m, p)];
    param_spec(m, p, &ps);
    CHECK(pf_attrs_set_ints(a, "shape", ps.dims, ps.rank));
    if (p % 2 == 0) {
      CHECK(pf_attrs_set_string(a, "mode", "kaiming"));
      CHECK(pf_attrs_set_int(a, "seed", o->c.seed * 1000 + p));
    }
    pname(name, "p", p);
    CHECK(pf_graph_output(
        g, name, program(g, s, NULL, p % 2 == 0 ? "init_uniform" : "fill", a, 0, NULL, NULL)));
    for (int k = 0; k < m->n_state; k++) {
      pname(name, k == 0 ? "m" : "v", p);
      CHECK(pf_graph_output(g, name, program(g, s, NULL, "fill", a, 0, NULL, NULL)));
    }
    pf_attrs_destroy(a);
  }
  {
    pf_attrs *a = attrs();
    CHECK(pf_attrs_set_ints(a, "shape", NULL, 0));
    CHECK(pf_attrs_set_int(a, "dtype", PF_I64));
    CHECK(pf_graph_output(g, "t", program(g, sl[0], NULL, "fill", a, 0, NULL, NULL)));
    pf_attrs_destroy(a);
  }
  CHECK(pf_compile(g, &exe));
  pf_graph_destroy(g);
  return exe;
}

/* The data set, read once into stage 0's devices: only the first stage
 * touches the files. */
static pf_executable *build_load(const model *m, const char *dir) {
  pf_slice_t sl[MAX_LAYERS + 1];
  pf_graph *g = new_graph(m, sl);
  pf_executable *exe;
  tc_add_dataset(ctx, g, sl[0], m->dp, dir);
  CHECK(pf_compile(g, &exe));
  pf_graph_destroy(g);
  return exe;
}

/* Layers of micro-batch `mb` (-1: the whole batch, for evaluation), each
 * on its stage's slice; x moves between stages where the dataflow crosses
 * them. Programs are named "mb<mb>/..." (the timeline finds them so). */
static pf_value_t forward(pf_graph *g, const pf_slice_t *sl, const model *m,
                          const pf_value_t *params, pf_value_t x, int mb) {
  char name[64];
  for (int l = 0; l < m->n_layers; l++) {
    pf_slice_t s = sl[m->stage[l]];
    snprintf(name, sizeof name, "mb%d/s%d/matmul%d", mb, m->stage[l], l);
    x = program(g, s, mb >= 0 ? name : NULL, "matmul", NULL, 2, (pf_value_t[]){x, params[2 * l]},
                NULL);
    snprintf(name, sizeof name, "mb%d/s%d/bias%d", mb, m->stage[l], l);
    x = program(g, s, mb >= 0 ? name : NULL, "bias_add", NULL, 2,
                (pf_value_t[]){x, params[2 * l + 1]}, NULL);
    if (l + 1 < m->n_layers) {
      snprintf(name, sizeof name, "mb%d/s%d/relu%d", mb, m->stage[l], l);
      x = program(g, s, mb >= 0 ? name : NULL, "relu", NULL, 1, &x, NULL);
    }
  }
  return x;
}

/* Inputs of a step's graph: the data set on stage 0, the step, and each
 * parameter (with n_state state values) on its stage. */
static void step_inputs(pf_graph *g, const pf_slice_t *sl, const model *m, const char *set,
                        int64_t rows, int n_state, pf_value_t *data_x, pf_value_t *data_y,
                        pf_value_t *step, pf_value_t *params, pf_value_t (*state)[MAX_PARAMS]) {
  char name[32];
  pf_spec xs = pf_spec_2d(PF_U8, rows, 784), ys = pf_spec_1d(PF_U8, rows);
  /* Each of stage 0's devices holds its part of the data set. */
  snprintf(name, sizeof name, "%s_x", set);
  CHECK(pf_graph_input(g, name, &xs, sl[0], pf_split(0), data_x));
  snprintf(name, sizeof name, "%s_y", set);
  CHECK(pf_graph_input(g, name, &ys, sl[0], pf_split(0), data_y));
  declare(g, sl[0], "step", pf_spec_scalar(PF_I64), step);
  for (int p = 0; p < m->n_params; p++) {
    pf_spec ps;
    param_spec(m, p, &ps);
    pname(name, "p", p);
    declare(g, sl[stage_of_param(m, p)], name, ps, &params[p]);
    for (int k = 0; k < n_state; k++) {
      pname(name, k == 0 ? "m" : "v", p);
      declare(g, sl[stage_of_param(m, p)], name, ps, &state[k][p]);
    }
  }
}

/* Whether program p runs on slice s. */
static int runs_on(pf_graph *g, pf_program_t p, pf_slice_t s) {
  pf_slice_t on;
  CHECK(pf_graph_program_slice(g, p, &on));
  return on.id == s.id;
}

/* Orders the programs of forward micro-batch k on stage s behind those of
 * backward micro-batch k - (S - s) there: the 1F1B schedule. Forward and
 * backward micro-batch j hold programs [fa[j], fb[j]) and [ba[j], bb[j])
 * (program ids, numbered as added). */
static void order_1f1b(pf_graph *g, const model *m, int n_micro, const int *fa, const int *fb,
                       const int *ba, const int *bb, const pf_slice_t *sl) {
  for (int s = 0; s < m->n_stages; s++)
    for (int k = m->n_stages - s; k < n_micro; k++) {
      int j = k - (m->n_stages - s);
      for (int b = ba[j]; b < bb[j]; b++) {
        pf_program_t back = {b};
        if (!runs_on(g, back, sl[s])) continue;
        for (int f = fa[k]; f < fb[k]; f++) {
          pf_program_t fwd = {f};
          if (runs_on(g, fwd, sl[s])) CHECK(pf_graph_control(g, back, fwd));
        }
      }
    }
}

/* One training step: batch on stage 0, M micro-batches through the stages,
 * their gradients (pf_graph_grad per micro-batch) summed, the optimizer. */
static pf_executable *build_train(const model *m, const opts *o, int one_f_one_b) {
  pf_slice_t sl[MAX_LAYERS + 1];
  pf_graph *g = new_graph(m, sl);
  pf_executable *exe;
  pf_value_t params[MAX_PARAMS], grads[MAX_PARAMS], acc[MAX_PARAMS], state[2][MAX_PARAMS];
  pf_value_t data_x, data_y, step, t = PF_NO_VALUE, lr = PF_NO_VALUE, x, y, loss[MAX_MICRO] = {0},
      correct[MAX_MICRO] = {0};
  pf_value_t total_loss, total_correct;
  int fa[MAX_MICRO], fb[MAX_MICRO], ba[MAX_MICRO], bb[MAX_MICRO], last = m->n_stages - 1;
  char name[64];
  step_inputs(g, sl, m, "train", 60000, m->n_state, &data_x, &data_y, &step, params, state);
  if (m->n_state == 2) {
    declare(g, sl[0], "t", pf_spec_scalar(PF_I64), &t);
    declare(g, sl[0], "lr", pf_spec_scalar(PF_F64), &lr);
  }
  tc_batch(ctx, g, sl[0], o->c.batch / m->dp, o->c.seed, data_x, data_y, step, &x, &y);
  for (int mb = 0; mb < o->micro; mb++) {
    pf_value_t xm, ym, logits, outs[2];
    pf_attrs *a = attrs();
    fa[mb] = pf_graph_num_programs(g);
    CHECK(pf_attrs_set_int(a, "count", o->micro));
    CHECK(pf_attrs_set_int(a, "index", mb));
    snprintf(name, sizeof name, "mb%d/s0/x", mb);
    xm = program(g, sl[0], name, "microbatch", a, 1, &x, NULL);
    snprintf(name, sizeof name, "mb%d/s0/y", mb);
    ym = program(g, sl[0], name, "microbatch", a, 1, &y, NULL);
    pf_attrs_destroy(a);
    logits = forward(g, sl, m, params, xm, mb);
    a = attrs();
    CHECK(pf_attrs_set_int(a, "mean_over", o->c.batch));
    snprintf(name, sizeof name, "mb%d/s%d/xent", mb, last);
    program(g, sl[last], name, "softmax_xent", a, 2, (pf_value_t[]){logits, ym}, outs);
    loss[mb] = outs[0];
    pf_attrs_destroy(a);
    snprintf(name, sizeof name, "mb%d/s%d/accuracy", mb, last);
    correct[mb] = program(g, sl[last], name, "accuracy", NULL, 2, (pf_value_t[]){logits, ym}, NULL);
    fb[mb] = pf_graph_num_programs(g);
  }
  total_loss = loss[0];
  total_correct = correct[0];
  for (int mb = 1; mb < o->micro; mb++) {
    total_loss = program(g, sl[last], NULL, "add", NULL, 2, (pf_value_t[]){total_loss, loss[mb]},
                         NULL);
    total_correct = program(g, sl[last], NULL, "add", NULL, 2,
                            (pf_value_t[]){total_correct, correct[mb]}, NULL);
  }
  /* Backward micro-batch by micro-batch, each added into the sum at once:
   * a micro-batch's gradients live only until the next is added. With
   * dp > 1 they stay partial over the replicas, so the optimizer's input
   * is summed by one allreduce per parameter and step, not one per
   * micro-batch. */
  for (int mb = 0; mb < o->micro; mb++) {
    ba[mb] = pf_graph_num_programs(g);
    CHECK(pf_graph_grad_partial(g, loss[mb], m->n_params, params, grads));
    for (int p = 0; p < m->n_params; p++) {
      if (mb == 0) {
        acc[p] = grads[p];
        continue;
      }
      snprintf(name, sizeof name, "mb%d/s%d/grad_acc%d", mb, stage_of_param(m, p), p);
      acc[p] = program(g, sl[stage_of_param(m, p)], name, "add", NULL, 2,
                       (pf_value_t[]){acc[p], grads[p]}, NULL);
    }
    bb[mb] = pf_graph_num_programs(g);
  }
  if (one_f_one_b) order_1f1b(g, m, o->micro, fa, fb, ba, bb, sl);
  for (int p = 0; p < m->n_params; p++) {
    pf_value_t outs[4];
    pf_slice_t s = sl[stage_of_param(m, p)];
    pf_attrs *a = attrs();
    CHECK(pf_attrs_set_float(a, "lr", o->c.lr));
    if (m->n_state == 2) {
      program(g, s, NULL, "adam", a, 6,
              (pf_value_t[]){params[p], acc[p], state[0][p], state[1][p], t, lr}, outs);
      pname(name, "m", p);
      CHECK(pf_graph_output(g, name, outs[1]));
      pname(name, "v", p);
      CHECK(pf_graph_output(g, name, outs[2]));
      if (p == 0) CHECK(pf_graph_output(g, "t", outs[3]));
    } else if (m->n_state == 1) {
      program(g, s, NULL, "momentum", a, 3, (pf_value_t[]){params[p], acc[p], state[0][p]}, outs);
      pname(name, "m", p);
      CHECK(pf_graph_output(g, name, outs[1]));
    } else {
      program(g, s, NULL, "sgd", a, 2, (pf_value_t[]){params[p], acc[p]}, outs);
    }
    pf_attrs_destroy(a);
    pname(name, "p", p);
    CHECK(pf_graph_output(g, name, outs[0]));
  }
  CHECK(pf_graph_output(g, "loss", total_loss));
  CHECK(pf_graph_output(g, "correct", total_correct));
  CHECK(pf_compile(g, &exe));
  pf_graph_destroy(g);
  return exe;
}

/* Correct predictions over the test set: stage 0 reads the rows (split
 * over its devices), the stages run the layers, the last one counts. */
static pf_executable *build_eval(const model *m) {
  pf_slice_t sl[MAX_LAYERS + 1];
  pf_graph *g = new_graph(m, sl);
  pf_executable *exe;
  pf_value_t params[MAX_PARAMS], data_x, data_y, step, x, y, logits;
  step_inputs(g, sl, m, "test", 10000, 0, &data_x, &data_y, &step, params, NULL);
  tc_batch(ctx, g, sl[0], 10000 / m->dp, 0, data_x, data_y, step, &x, &y);
  logits = forward(g, sl, m, params, x, -1);
  CHECK(pf_graph_output(g, "correct", program(g, sl[m->n_stages - 1], NULL, "accuracy", NULL, 2,
                                              (pf_value_t[]){logits, y}, NULL)));
  CHECK(pf_compile(g, &exe));
  pf_graph_destroy(g);
  return exe;
}

/* ---- measurements --------------------------------------------------------- */

/* Bytes of the step's inputs that a device of stage s holds: present the
 * whole step in either schedule, so not activations. */
static int64_t input_bytes(pf_executable *exe, const model *m, int s) {
  int64_t sum = 0;
  for (int i = 0; i < pf_executable_num_inputs(exe); i++) {
    const char *name;
    pf_spec spec;
    int p;
    CHECK(pf_executable_input(exe, i, &name, &spec));
    if ((name[0] == 'p' || name[0] == 'm' || name[0] == 'v') && sscanf(name + 1, "%d", &p) == 1)
      sum += stage_of_param(m, p) == s ? pf_spec_nbytes(&spec) : 0;
    else if (s == 0)
      sum += pf_spec_nbytes(&spec);
  }
  return sum;
}

/* The bubble: over the train steps after the first two, the fraction of
 * (devices x step span) in which no op of the step ran on a device. Reads
 * the merged timeline (one event a line, as runtime/trace.c writes it) of
 * the executable whose ops are named "mb...". Writes each rank's busy
 * fraction of the same spans to busy_of[rank] (one device a rank). Returns
 * -1 if there is no timeline or some rank has no op in it. */
static double measured_bubble(const char *path, int n_devices, double *busy_of) {
  FILE *f = fopen(path, "r");
  char line[1024];
  unsigned long long exe = 0;
  int have_exe = 0;
  enum { MAX_STEPS = 100000 };
  double *lo = NULL, *hi = NULL, *busy = NULL, span = 0, sum = 0, rank_busy[64] = {0};
  unsigned long long max_step = 0;
  if (f == NULL) return -1;
  lo = malloc(MAX_STEPS * sizeof *lo);
  hi = calloc(MAX_STEPS, sizeof *hi);
  busy = calloc(MAX_STEPS, sizeof *busy);
  if (!lo || !hi || !busy) goto done;
  for (int i = 0; i < MAX_STEPS; i++) lo[i] = INFINITY;
  while (fgets(line, sizeof line, f)) {
    const char *at = strstr(line, "\"pid\":");
    int pid, tid;
    double ts, dur;
    unsigned long long step, e;
    if (strstr(line, "\"ph\":\"X\"") == NULL || at == NULL ||
        sscanf(at, "\"pid\":%d,\"tid\":%d,\"ts\":%lf,\"dur\":%lf,\"args\":{\"step\":%llu,"
                   "\"executable\":%llu",
               &pid, &tid, &ts, &dur, &step, &e) != 6)
      continue;
    if (!have_exe && strncmp(line, "{\"name\":\"mb", 11) == 0) {
      exe = e;
      have_exe = 1;
    }
    if (!have_exe || e != exe || tid >= 1000 || step >= MAX_STEPS || pid < 0 || pid >= 64)
      continue;
    if (step >= 3) rank_busy[pid] += dur;
    lo[step] = fmin(lo[step], ts);
    hi[step] = fmax(hi[step], ts + dur);
    busy[step] += dur;
    if (step > max_step) max_step = step;
  }
  for (unsigned long long s = 3; s <= max_step; s++)
    if (hi[s] > lo[s]) {
      span += (hi[s] - lo[s]) * n_devices;
      sum += busy[s];
    }
  for (int r = 0; r < n_devices && r < 64; r++) {
    busy_of[r] = span > 0 ? rank_busy[r] / (span / n_devices) : 0;
    /* A rank with no op in the timeline: its file was not merged (another
     * host's disk), so the figure would count it idle. */
    if (rank_busy[r] == 0) span = 0;
  }
done:
  fclose(f);
  free(lo);
  free(hi);
  free(busy);
  return span > 0 ? 1 - sum / span : -1;
}

/* --bubble: every rank records its timeline into one directory, chosen
 * alike on every rank before pf_init (the ranks run main up to there). */
static char trace_dir[512];
static void enable_trace(void) {
  const char *job = getenv("PMIX_NAMESPACE"), *dir = getenv("PATHFLOW_TRACE_DIR");
  char jobbuf[32];
  if (dir && *dir) {
    snprintf(trace_dir, sizeof trace_dir, "%s", dir);
  } else {
    if (job == NULL || *job == '\0') {
      snprintf(jobbuf, sizeof jobbuf, "%d", (int)getpid());
      job = jobbuf;
    }
    snprintf(trace_dir, sizeof trace_dir, "/tmp/pathflow-bubble-%s", job);
    for (char *c = trace_dir + 5; *c; c++)
      if (*c == '/') *c = '_';
    if (mkdir(trace_dir, 0700) != 0 && errno != EEXIST) {
      fprintf(stderr, "train_pipeline: --bubble: cannot make %s: %s\n", trace_dir,
              strerror(errno));
      exit(1);
    }
    setenv("PATHFLOW_TRACE_DIR", trace_dir, 1);
  }
  setenv("PATHFLOW_TRACE", "1", 1);
}

/* ---- the loop ------------------------------------------------------------- */

int main(int argc, char **argv) {
  opts o;
  model m;
  tc_named bufs = {.n = 0};
  pf_executable *init, *load, *train, *eval, *other;
  pf_future *f;
  pf_tensor *step, *lr_now;
  pf_spec ss = pf_spec_scalar(PF_I64), ls = pf_spec_scalar(PF_F64);
  const char *host_names[] = {"step", "lr"};
  const char *const skip[] = {"loss", "correct", NULL};
  int n, steps_per_epoch, one_f_one_b, tty = isatty(1) && getenv("OMPI_COMM_WORLD_SIZE") == NULL;
  double t0, accuracy = 0, elapsed;
  int64_t total_steps, done = 0;
  FILE *csv = NULL;
  if (parse(argc, argv, &o) != 0) return 2;
  if (o.bubble) enable_trace();
  CHECK(pf_init(&argc, &argv, &(pf_init_options){.cpu_devices = 1}, &ctx));
  n = pf_device_count(ctx, PF_DEVICE_CPU);
  if (o.pp == 0) o.pp = n / o.dp;
  m.n_layers = o.c.n_hidden + 1;
  if (o.pp < 1 || o.dp * o.pp != n || o.pp > m.n_layers || o.dp > 64) {
    fprintf(stderr,
            "train_pipeline: --dp %d x --pp %d must equal the job's %d devices (one per rank: "
            "mpirun -np DP*PP), with at most one stage per layer (%d layers)\n",
            o.dp, o.pp, n, m.n_layers);
    return 2;
  }
  if (o.c.batch % (o.dp * o.micro) != 0 || 10000 % o.dp != 0) {
    fprintf(stderr,
            "train_pipeline: the batch (%d) must divide into %d micro-batches on each of the "
            "%d replicas\n",
            o.c.batch, o.micro, o.dp);
    return 2;
  }
  m.dims[0] = 784;
  for (int i = 0; i < o.c.n_hidden; i++) m.dims[i + 1] = o.c.hidden[i];
  m.dims[m.n_layers] = 10;
  m.n_params = 2 * m.n_layers;
  m.n_state = strcmp(o.c.optimizer, "adam") == 0 ? 2 : strcmp(o.c.optimizer, "momentum") == 0;
  m.n_stages = o.pp;
  m.dp = o.dp;
  balance_stages(&m);
  one_f_one_b = strcmp(o.schedule, "1f1b") == 0;
  init = build_init(&m, &o);
  load = build_load(&m, o.c.data);
  train = build_train(&m, &o, one_f_one_b);
  other = build_train(&m, &o, !one_f_one_b);
  eval = build_eval(&m);
  printf("train_pipeline: %d stages x %d replicas, MLP 784", o.pp, o.dp);
  for (int i = 0; i < o.c.n_hidden; i++) printf("-%d", o.c.hidden[i]);
  printf("-10, batch %d in %d micro-batches, schedule %s, %s lr %g\n", o.c.batch, o.micro,
         o.schedule, o.c.optimizer, o.c.lr);
  printf("train_pipeline: layers by stage:");
  for (int s = 0; s < m.n_stages; s++) {
    printf("%s stage %d", s ? " |" : "", s);
    for (int l = 0; l < m.n_layers; l++)
      if (m.stage[l] == s) printf(" %dx%d", m.dims[l], m.dims[l + 1]);
  }
  printf("\n");
  for (int s = 0; s < m.n_stages; s++) {
    int64_t pk[2], in = input_bytes(train, &m, s);
    CHECK(pf_executable_peak_memory(one_f_one_b ? other : train, s * m.dp, &pk[0]));
    CHECK(pf_executable_peak_memory(one_f_one_b ? train : other, s * m.dp, &pk[1]));
    printf("stage %d peak activation memory (memory plan, beyond %.1f KiB of inputs): "
           "gpipe %.1f KiB, 1f1b %.1f KiB\n",
           s, (double)in / 1024, (double)(pk[0] - in) / 1024, (double)(pk[1] - in) / 1024);
  }
  pf_executable_destroy(other);
  CHECK(pf_tensor_create(&ss, &step));
  CHECK(pf_tensor_create(&ls, &lr_now));
  f = tc_run(ctx, init, &bufs, 0, NULL, NULL);
  CHECK(pf_future_wait(f));
  tc_collect(ctx, init, f, &bufs, NULL);
  pf_future_destroy(f);
  f = tc_run(ctx, load, &bufs, 0, NULL, NULL);
  if (pf_future_wait(f) != 0) {
    fprintf(stderr, "train_pipeline: loading the data set failed: %s\n", pf_future_error(f));
    return 1;
  }
  tc_collect(ctx, load, f, &bufs, NULL);
  pf_future_destroy(f);
  steps_per_epoch = 60000 / o.c.batch;
  total_steps = (int64_t)steps_per_epoch * o.c.epochs;
  if (o.c.limit_steps > 0 && o.c.limit_steps < total_steps) total_steps = o.c.limit_steps;
  if (o.c.metrics != NULL) {
    if ((csv = fopen(o.c.metrics, "w")) == NULL) {
      fprintf(stderr, "train_pipeline: cannot write %s\n", o.c.metrics);
      return 1;
    }
    fprintf(csv, "kind,epoch,step,loss,accuracy\n");
  }
  t0 = tc_now_s();
  for (int epoch = 0; done < total_steps; epoch++) {
    double loss_sum = 0;
    int64_t correct = 0, seen = 0, ran = 0;
    for (int i = 0; i < steps_per_epoch && done < total_steps; i++, done++) {
      pf_tensor *lt, *ct;
      pf_tensor *host[2] = {step, lr_now};
      double loss;
      int64_t hits;
      *(int64_t *)pf_tensor_data(step) = done;
      *(double *)pf_tensor_data(lr_now) = tc_lr_at(&o.c, done, total_steps);
      f = tc_run(ctx, train, &bufs, 2, host_names, host);
      if (pf_future_wait(f) != 0) {
        fprintf(stderr, "train_pipeline: step %lld failed: %s\n", (long long)done,
                pf_future_error(f));
        return 1;
      }
      tc_collect(ctx, train, f, &bufs, skip);
      CHECK(pf_future_fetch(f, "loss", &lt));
      CHECK(pf_future_fetch(f, "correct", &ct));
      loss = *(float *)pf_tensor_data(lt);
      hits = *(int64_t *)pf_tensor_data(ct);
      pf_tensor_destroy(lt);
      pf_tensor_destroy(ct);
      pf_future_destroy(f);
      loss_sum += loss;
      ran++;
      correct += hits;
      seen += o.c.batch;
      if (csv)
        fprintf(csv, "step,%d,%lld,%.9g,%.6f\n", epoch + 1, (long long)(done + 1), loss,
                (double)hits / o.c.batch);
      if ((done + 1) % 50 == 0 || i + 1 == steps_per_epoch || done + 1 == total_steps) {
        double el = tc_now_s() - t0, rate = (double)(done + 1) * o.c.batch / el;
        double eta = (double)(total_steps - done - 1) * o.c.batch / rate;
        printf("%sepoch %d step %lld/%lld loss %.4f train acc %.3f %.0f samples/s ETA %.0fs%s",
               tty ? "\r" : "", epoch + 1, (long long)(done + 1), (long long)total_steps,
               loss_sum / (double)ran, (double)correct / (double)seen, rate, eta,
               tty ? "   " : "\n");
        fflush(stdout);
      }
    }
    *(int64_t *)pf_tensor_data(step) = 0;
    f = tc_run(ctx, eval, &bufs, 1, host_names, &step);
    CHECK(pf_future_wait(f));
    {
      pf_tensor *ct;
      CHECK(pf_future_fetch(f, "correct", &ct));
      accuracy = (double)*(int64_t *)pf_tensor_data(ct) / 10000.0;
      pf_tensor_destroy(ct);
    }
    pf_future_destroy(f);
    printf("%sepoch %d: test accuracy %.4f\n", tty ? "\n" : "", epoch + 1, accuracy);
    if (csv) fprintf(csv, "epoch,%d,%lld,0,%.6f\n", epoch + 1, (long long)done, accuracy);
  }
  elapsed = tc_now_s() - t0;
  printf("train_pipeline: final test accuracy %.4f after %lld steps in %.1f s (%.0f samples/s "
         "with evaluation)\n",
         accuracy, (long long)done, elapsed, (double)done * o.c.batch / elapsed);
  if (csv != NULL) fclose(csv);
  tc_release(ctx, &bufs);
  pf_tensor_destroy(step);
  pf_tensor_destroy(lr_now);
  pf_executable_destroy(init);
  pf_executable_destroy(load);
  pf_executable_destroy(train);
  pf_executable_destroy(eval);
  if (pf_finalize(ctx) != 0) return 1;
  if (o.bubble) {
    char path[600];
    double b, busy[64] = {0};
    snprintf(path, sizeof path, "%s/pathflow-trace.json", trace_dir);
    b = measured_bubble(path, n, busy);
    if (b < 0) {
      printf("train_pipeline: bubble: no complete timeline in %s (every rank's part must be "
             "on this host's disk)\n", path);
    } else {
      printf("train_pipeline: bubble fraction measured %.3f (ops' timestamps, %d devices), "
             "theoretical (S-1)/(M+S-1) = %.3f\n",
             b, n, (double)(o.pp - 1) / (o.micro + o.pp - 1));
      printf("train_pipeline: busy fraction of the step per stage:");
      for (int s = 0; s < o.pp; s++) {
        double sum = 0;
        for (int r = 0; r < o.dp; r++) sum += busy[s * o.dp + r];
        printf(" stage %d %.3f", s, sum / o.dp);
      }
      printf("\n");
    }
    if (getenv("PATHFLOW_TRACE_DIR") && strncmp(trace_dir, "/tmp/pathflow-bubble-", 21) == 0) {
      unlink(path);
      rmdir(trace_dir);
    }
  }
  return 0;
}
