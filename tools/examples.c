/* Sample graphs for `pathflow example` and the benchmarks. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pathflow/error.h"
#include "tools/tool.h"

int tool_env(int devices, pf_graph_env *env, pf_diag *diag) {
  int rc;
  memset(env, 0, sizeof *env);
  if ((rc = pf_registry_create(&env->registry)) != 0 ||
      (rc = pf_builtin_kernels_register(env->registry)) != 0)
    return rc;
  env->num_devices[PF_DEVICE_CPU] = devices;
  env->diag = diag;
  return 0;
}

int tool_cluster(const char *spec, int64_t memory, pf_cluster *out) {
  int hosts = 0, ranks = 0, per = 0, k = 0, end = 0;
  if (sscanf(spec, "%d:%d:%d%n", &hosts, &ranks, &per, &end) != 3 || spec[end] != '\0' ||
      hosts < 1 || ranks < 1 || per < 1 || (int64_t)hosts * ranks * per > 1000000)
    return PF_EINVAL;
  out->memory_origin = memory > 0 ? "pathflow plan --memory" : NULL;
  out->n_ranks = hosts * ranks;
  out->n_devices = hosts * ranks * per;
  out->devices = calloc((size_t)out->n_devices, sizeof *out->devices);
  if (out->devices == NULL) return PF_ENOMEM;
  for (int r = 0; r < out->n_ranks; r++)
    for (int d = 0; d < per; d++, k++) {
      out->devices[k].rank = r;
      out->devices[k].local = d;
      out->devices[k].host = r % hosts;
      out->devices[k].kind = PF_DEVICE_CPU;
      out->devices[k].memory = memory;
    }
  return 0;
}

static int slice1(pf_graph *g, int device, pf_slice_t *s) {
  int rc = pf_graph_slice(g, PF_DEVICE_CPU, 1, s);
  return rc ? rc : pf_graph_slice_pin(g, *s, &device);
}

static int prog(pf_graph *g, const char *kernel, pf_slice_t s, int n, const pf_value_t *in,
                pf_value_t *out) {
  return pf_graph_program(g, &(pf_program_desc){.kernel = kernel, .slice = s, .n_in = n, .in = in},
                          out, NULL);
}

/* Task Bench's 1-D stencil: op (t, d) reads (t-1, d-1), (t-1, d), (t-1, d+1). */
static int stencil(pf_graph *g, int width, int steps) {
  pf_spec spec = pf_spec_1d(PF_F32, 4);
  pf_value_t *prev = calloc((size_t)width, sizeof *prev), *cur = calloc((size_t)width, sizeof *cur);
  pf_slice_t *sl = calloc((size_t)width, sizeof *sl);
  int rc = (prev && cur && sl) ? 0 : PF_ENOMEM;
  for (int d = 0; d < width && rc == 0; d++) {
    char name[32];
    snprintf(name, sizeof name, "x%d", d);
    if ((rc = slice1(g, d, &sl[d])) == 0)
      rc = pf_graph_input(g, name, &spec, sl[d], pf_replicated(), &prev[d]);
  }
  for (int t = 0; t < steps && rc == 0; t++) {
    for (int d = 0; d < width && rc == 0; d++) {
      pf_value_t l = prev[d > 0 ? d - 1 : d], r = prev[d + 1 < width ? d + 1 : d], m;
      if ((rc = prog(g, "add", sl[d], 2, (pf_value_t[]){l, r}, &m)) == 0)
        rc = prog(g, "add", sl[d], 2, (pf_value_t[]){m, prev[d]}, &cur[d]);
    }
    memcpy(prev, cur, (size_t)width * sizeof *prev);
  }
  for (int d = 0; d < width && rc == 0; d++) {
    char name[32];
    snprintf(name, sizeof name, "y%d", d);
    rc = pf_graph_output(g, name, prev[d]);
  }
  free(prev);
  free(cur);
  free(sl);
  return rc;
}

/* One tiny program per device, chained device to device. */
static int pipeline(pf_graph *g, int stages) {
  pf_spec spec = pf_spec_1d(PF_F32, 256);
  pf_slice_t s;
  pf_value_t v;
  int rc = slice1(g, 0, &s);
  if (rc == 0) rc = pf_graph_input(g, "x", &spec, s, pf_replicated(), &v);
  for (int i = 0; i < stages && rc == 0; i++)
    if ((rc = slice1(g, i, &s)) == 0) rc = prog(g, "relu", s, 1, &v, &v);
  return rc ? rc : pf_graph_output(g, "y", v);
}

/* Data-parallel MLP step: x split by rows over all devices, w replicated;
 * h = relu(x @ w1) @ w2, gradients of w2 reduced with an allreduce. */
static int mlp(pf_graph *g, int devices) {
  pf_spec xs = pf_spec_2d(PF_F32, 32 * devices, 64), w1s = pf_spec_2d(PF_F32, 64, 128),
          w2s = pf_spec_2d(PF_F32, 128, 10);
  pf_slice_t s;
  pf_value_t x, w1, w2, h, a, o, gw;
  pf_attrs *t;
  int rc = pf_graph_slice(g, PF_DEVICE_CPU, devices, &s);
  if (rc == 0) rc = pf_graph_input(g, "x", &xs, s, pf_split(0), &x);
  if (rc == 0) rc = pf_graph_input(g, "w1", &w1s, s, pf_replicated(), &w1);
  if (rc == 0) rc = pf_graph_input(g, "w2", &w2s, s, pf_replicated(), &w2);
  if (rc == 0) rc = prog(g, "matmul", s, 2, (pf_value_t[]){x, w1}, &h);
  if (rc == 0) rc = prog(g, "relu", s, 1, &h, &a);
  if (rc == 0) rc = prog(g, "matmul", s, 2, (pf_value_t[]){a, w2}, &o);
  if (rc == 0 && (rc = pf_attrs_create(&t)) == 0) {
    pf_attrs_set_int(t, "transpose_a", 1);
    /* a^T @ o contracts the split batch axis: partial sums of [128, 10] */
    rc = pf_graph_program(g, &(pf_program_desc){.name = "grad_w2", .kernel = "matmul", .attrs = t,
                                                 .slice = s, .n_in = 2,
                                                 .in = (pf_value_t[]){a, o}},
                          &gw, NULL);
    pf_attrs_destroy(t);
  }
  if (rc == 0)
    rc = pf_graph_collective(g, &(pf_collective_desc){.name = "allreduce_w2", .kind = PF_ALLREDUCE,
                                                       .slice = s, .in = gw, .op = PF_REDUCE_SUM},
                             &gw, NULL);
  if (rc == 0) rc = pf_graph_output(g, "out", o);
  if (rc == 0) rc = pf_graph_output(g, "grad_w2", gw);
  return rc;
}

/* A data-parallel + pipeline training step: `devices` split into `stages`
 * pipeline stages (4, 2 or 1: the most that divide the devices), each a
 * data-parallel slice holding its layer's weight whole; `micro`
 * microbatches go forward through the stages (h = relu(h @ w), activations
 * handed from stage to stage), then backward in reverse (each stage's
 * weight gradient is a partial sum over its slice, accumulated over the
 * microbatches and reduced by one allreduce per stage). */
static int train(pf_graph *g, int devices, int micro) {
  int stages = devices % 4 == 0 ? 4 : devices % 2 == 0 ? 2 : 1, per = devices / stages;
  enum { ROWS = 8, H = 256 };
  pf_spec xs = pf_spec_2d(PF_F32, (int64_t)ROWS * per, H), ws = pf_spec_2d(PF_F32, H, H);
  pf_slice_t sl[4];
  pf_value_t w[4], gw[4], *act = calloc((size_t)(stages + 1) * (size_t)micro, sizeof *act);
  pf_attrs *ta = NULL;
  int rc = act ? pf_attrs_create(&ta) : PF_ENOMEM;
  if (rc == 0) rc = pf_attrs_set_int(ta, "transpose_a", 1);
  for (int i = 0; i < stages && rc == 0; i++) {
    char name[32];
    snprintf(name, sizeof name, "w%d", i);
    if ((rc = pf_graph_slice(g, PF_DEVICE_CPU, per, &sl[i])) == 0)
      rc = pf_graph_input(g, name, &ws, sl[i], pf_replicated(), &w[i]);
  }
  /* act[m * (stages + 1) + i]: the input of stage i for microbatch m. */
  for (int m = 0; m < micro && rc == 0; m++) {
    char name[32];
    pf_value_t *a = &act[m * (stages + 1)], h;
    snprintf(name, sizeof name, "x%d", m);
    rc = pf_graph_input(g, name, &xs, sl[0], pf_split(0), &a[0]);
    for (int i = 0; i < stages && rc == 0; i++)
      if ((rc = prog(g, "matmul", sl[i], 2, (pf_value_t[]){a[i], w[i]}, &h)) == 0)
        rc = prog(g, "relu", sl[i], 1, &h, &a[i + 1]);
  }
  for (int m = 0; m < micro && rc == 0; m++) {
    pf_value_t *a = &act[m * (stages + 1)], grad = a[stages], gm;
    for (int i = stages - 1; i >= 0 && rc == 0; i--) {
      char name[32];
      snprintf(name, sizeof name, "grad_w%d_m%d", i, m);
      rc = pf_graph_program(g, &(pf_program_desc){.name = name, .kernel = "matmul",
                                                   .attrs = ta, .slice = sl[i], .n_in = 2,
                                                   .in = (pf_value_t[]){a[i], grad}},
                            &gm, NULL);
      if (rc == 0 && m > 0) rc = prog(g, "add", sl[i], 2, (pf_value_t[]){gw[i], gm}, &gm);
      if (rc == 0) gw[i] = gm;
      if (rc == 0 && i > 0) rc = prog(g, "matmul", sl[i], 2, (pf_value_t[]){grad, w[i]}, &grad);
    }
  }
  for (int i = 0; i < stages && rc == 0; i++) {
    char name[32], ar[32];
    snprintf(name, sizeof name, "grad_w%d", i);
    snprintf(ar, sizeof ar, "allreduce_w%d", i);
    rc = pf_graph_collective(g, &(pf_collective_desc){.name = ar, .kind = PF_ALLREDUCE,
                                                       .slice = sl[i], .in = gw[i],
                                                       .op = PF_REDUCE_SUM},
                             &gw[i], NULL);
    if (rc == 0) rc = pf_graph_output(g, name, gw[i]);
  }
  pf_attrs_destroy(ta);
  free(act);
  return rc;
}

int tool_example(const char *name, int devices, int steps, const pf_graph_env *env,
                 pf_graph **out) {
  int rc;
  if ((rc = pf_graph_new(env, out)) != 0) return rc;
  if (strcmp(name, "stencil") == 0)
    rc = stencil(*out, devices, steps);
  else if (strcmp(name, "pipeline") == 0)
    rc = pipeline(*out, devices);
  else if (strcmp(name, "mlp") == 0)
    rc = mlp(*out, devices);
  else if (strcmp(name, "train") == 0)
    rc = train(*out, devices, steps);
  else
    rc = PF_ENOTFOUND;
  if (rc != 0) {
    pf_graph_destroy(*out);
    *out = NULL;
  }
  return rc;
}
