/* The CUDA device (runtime/device_cuda.h) under the executor: a plan
 * compiled by the scheduler for two GPU devices (a split program, a
 * reshard to one device through box copies on the GPU, a matmul through
 * cuBLAS, a relu) runs on two CUDA devices sharing GPU 0, and its outputs
 * match the same graph compiled for two CPU devices and run on the CPU
 * device. Then three steps in flight at once give the CPU's results, and a
 * later step allocates no device memory (the pool's blocks are reused).
 * Skipped (exit 77) without a GPU. */
#include <math.h>
#include <stdatomic.h>
#include <string.h>
#include <unistd.h>

#include "cuda_testing.h"

#include "base/box.h"
#include "base/diag.h"
#include "graph/graph_internal.h"
#include "runtime/device_cuda.h"
#include "runtime/executor.h"
#include "scheduler/schedule.h"

#define M 4
#define K 3
#define N 5

#include "../testing_diag.h"

/* x f32[M,K] split(0) over a two-device slice; y = x + x there; z =
 * matmul(y, w) and r = relu(z) on a one-device slice (which reads y whole:
 * a reshard). Outputs y (split), z and r. */
static pf_compiled *compile_for(pf_registry *reg, pf_device_kind kind) {
  pf_cluster cl;
  pf_graph_env env;
  pf_graph *g;
  pf_slice_t two, one;
  pf_value_t x, w, y, z, r, in2[2];
  pf_spec xs = {.dtype = PF_F32, .rank = 2, .dims = {M, K}};
  pf_spec ws = {.dtype = PF_F32, .rank = 2, .dims = {K, N}};
  pf_sharding rows = {.kind = PF_SHARD_SPLIT, .axis = 0};
  pf_sharding repl = {.kind = PF_SHARD_REPLICATED};
  pf_compiled *out = NULL;
  cl.n_ranks = 1;
  cl.n_devices = 2;
  cl.devices = calloc(2, sizeof *cl.devices);
  for (int d = 0; d < 2; d++) {
    cl.devices[d].local = d;
    cl.devices[d].kind = kind;
    cl.devices[d].memory = 1 << 24;
  }
  memset(&env, 0, sizeof env);
  env.registry = reg;
  env.num_devices[kind] = 2;
  env.diag = &diag;
  OK(pf_graph_new(&env, &g));
  OK(pf_graph_slice(g, kind, 2, &two));
  OK(pf_graph_slice(g, kind, 1, &one));
  OK(pf_graph_input(g, "x", &xs, two, rows, &x));
  OK(pf_graph_input(g, "w", &ws, one, repl, &w));
  in2[0] = x;
  in2[1] = x;
  OK(pf_graph_program(g, &(pf_program_desc){.name = "y", .kernel = "add", .slice = two,
                                            .n_in = 2, .in = in2},
                      &y, NULL));
  in2[0] = y;
  in2[1] = w;
  OK(pf_graph_program(g, &(pf_program_desc){.name = "z", .kernel = "matmul", .slice = one,
                                            .n_in = 2, .in = in2},
                      &z, NULL));
  OK(pf_graph_program(g, &(pf_program_desc){.name = "r", .kernel = "relu", .slice = one,
                                            .n_in = 1, .in = &z},
                      &r, NULL));
  OK(pf_graph_output(g, "y", y));
  OK(pf_graph_output(g, "z", z));
  OK(pf_graph_output(g, "r", r));
  OK(pf_schedule(g, &cl, 1, &out, &diag));
  pf_graph_destroy(g);
  free(cl.devices);
  return out;
}

static pf_box whole(const pf_spec *s) {
  pf_box b;
  memset(&b, 0, sizeof b);
  b.rank = s->rank;
  for (int a = 0; a < s->rank; a++) b.extent[a] = s->dims[a];
  return b;
}

/* Storage for buffer b on device dev (NULL: host) holding `host`. */
static pf_storage *feed(pf_device *dev, const pf_spec *s, const void *host) {
  size_t n = pf_spec_nbytes(s);
  pf_storage *st;
  if (dev == NULL) {
    st = pf_storage_new(n, 0);
    memcpy(st->data, host, n);
  } else {
    pf_box b = whole(s);
    assert_non_null(st = dev->ops->alloc(dev, n));
    assert_int_equal(dev->ops->copy(dev, PF_COPY_H2D, st->data, s->dims, host, s->dims, &b,
                                    pf_dtype_size(s->dtype)),
                     0);
  }
  return st;
}

static void fetch(pf_device *dev, const pf_spec *s, pf_storage *st, void *host) {
  if (dev == NULL) {
    memcpy(host, st->data, pf_spec_nbytes(s));
  } else {
    pf_box b = whole(s);
    assert_int_equal(dev->ops->copy(dev, PF_COPY_D2H, host, s->dims, st->data, s->dims, &b,
                                    pf_dtype_size(s->dtype)),
                     0);
  }
}

static atomic_int steps_done;
static void on_done(pf_step *s, void *arg) {
  (void)s;
  (void)arg;
  atomic_fetch_add(&steps_done, 1);
}

static void wait_steps(int n) {
  for (int t = 0; atomic_load(&steps_done) < n; t++) {
    if (t > 20000) fail_msg("steps not done after 20 s (%d of %d)", atomic_load(&steps_done), n);
    usleep(1000);
  }
}

/* The global values y[M,K], z[M,N], r[M,N] of one step of comp on ex
 * (devs: the GPU devices, or NULL for the CPU), from x and w. */
typedef struct result {
  float y[M * K], z[M * N], r[M * N];
} result;

static pf_step *start(pf_executor *ex, pf_loaded *l, const pf_compiled *comp, pf_device **devs,
                      const float *x, const float *w, uint64_t seq) {
  const pf_plan *p = pf_loaded_plan(l);
  pf_storage **inputs = calloc(p->n_buffers, sizeof *inputs);
  pf_step *s;
  for (int i = 0; i < comp->n_inputs; i++) {
    const pf_io *io = &comp->inputs[i];
    const float *src = strcmp(io->name, "x") == 0 ? x : w;
    for (int k = 0; k < io->num_shards; k++) {
      const pf_io_shard *sh = &io->shards[k];
      const pf_spec *bs = p->buffers[sh->buffer].spec;
      /* x is split by rows: shard k is the k-th contiguous block. */
      const float *part = src + (io->num_shards > 1 ? (size_t)k * (size_t)pf_spec_numel(bs) : 0);
      inputs[sh->buffer] = feed(devs ? devs[sh->device] : NULL, bs, part);
    }
  }
  OK(pf_executor_run(ex, l, inputs, seq, on_done, NULL, &s));
  free(inputs);
  return s;
}

static void collect(pf_step *s, const pf_loaded *l, const pf_compiled *comp, pf_device **devs,
                    result *out) {
  const pf_plan *p = pf_loaded_plan(l);
  assert_int_equal(pf_step_status(s), 0);
  for (int i = 0; i < comp->n_outputs; i++) {
    const pf_io *io = &comp->outputs[i];
    float *dst = strcmp(io->name, "y") == 0 ? out->y : strcmp(io->name, "z") == 0 ? out->z : out->r;
    for (int k = 0; k < io->num_shards; k++) {
      const pf_io_shard *sh = &io->shards[k];
      const pf_spec *bs = p->buffers[sh->buffer].spec;
      pf_storage *st = pf_step_take(s, sh->buffer);
      assert_non_null(st);
      fetch(devs ? devs[sh->device] : NULL, bs, st,
            dst + (io->num_shards > 1 ? (size_t)k * (size_t)pf_spec_numel(bs) : 0));
      pf_storage_unref(st);
    }
  }
}

static void inputs_for(int step, float *x, float *w) {
  for (int k = 0; k < M * K; k++) x[k] = (float)((k * 7 + step * 3) % 11) - 5.0f;
  for (int k = 0; k < K * N; k++) w[k] = (float)((k * 5 + step) % 9) * 0.25f - 1.0f;
}

static void expect_close(const float *got, const float *want, int n, const char *what) {
  for (int k = 0; k < n; k++)
    if (fabsf(got[k] - want[k]) > 1e-5f * (1.0f + fabsf(want[k])))
      fail_msg("%s[%d]: GPU %g, CPU %g", what, k, (double)got[k], (double)want[k]);
}

static void test_plan_on_gpu(void **state) {
  pf_registry *reg;
  pf_compiled *cpu_comp, *gpu_comp;
  pf_executor *cpu_ex, *gpu_ex;
  pf_loaded *cpu_l, *gpu_l;
  pf_device *gpu[2];
  const pf_plan *p;
  int copies = 0;
  float x[M * K], w[K * N];
  result want[4], got[4];
  pf_step *s[4];
  (void)state;
  pf_diag_init(&diag);
  OK(pf_registry_create(&reg));
  OK(pf_builtin_kernels_register(reg));
  OK(pf_cuda_kernels_register(reg));
  cpu_comp = compile_for(reg, PF_DEVICE_CPU);
  gpu_comp = compile_for(reg, PF_DEVICE_GPU);
  for (int d = 0; d < 2; d++)
    OK(pf_cuda_device_create(&(pf_cuda_device_config){.index = d, .ordinal = 0}, &gpu[d], &diag));
  {
    pf_device_info info;
    gpu[0]->ops->info(gpu[0], &info);
    assert_int_equal(info.kind, PF_DEVICE_GPU);
    assert_true(info.memory_bytes > 0);
  }
  OK(pf_executor_start(&(pf_executor_config){.num_devices = 2, .registry = reg,
                                             .bind_first = -1},
                       &cpu_ex));
  OK(pf_executor_start(&(pf_executor_config){.num_devices = 2, .registry = reg,
                                             .bind_first = -1, .devices = gpu},
                       &gpu_ex));
  OK(pf_executor_load(cpu_ex, cpu_comp->plans[0], &cpu_l, &diag));
  cpu_comp->plans[0] = NULL;
  OK(pf_executor_load(gpu_ex, gpu_comp->plans[0], &gpu_l, &diag));
  gpu_comp->plans[0] = NULL;
  p = pf_loaded_plan(gpu_l);
  for (uint32_t i = 0; i < p->n_ops; i++) copies += p->ops[i].kind == PF_OP_COPY;
  assert_true(copies > 0); /* the reshard runs as box copies on the GPU */

  /* Step 0 on both; the CPU's result is the reference. */
  for (int t = 0; t < 4; t++) {
    pf_step *c;
    inputs_for(t, x, w);
    c = start(cpu_ex, cpu_l, cpu_comp, NULL, x, w, (uint64_t)t);
    wait_steps(t + 1);
    collect(c, cpu_l, cpu_comp, NULL, &want[t]);
    pf_step_free(c);
  }
  atomic_store(&steps_done, 0);
  inputs_for(0, x, w);
  s[0] = start(gpu_ex, gpu_l, gpu_comp, gpu, x, w, 0);
  wait_steps(1);
  collect(s[0], gpu_l, gpu_comp, gpu, &got[0]);
  pf_step_free(s[0]);
  expect_close(got[0].y, want[0].y, M * K, "y");
  expect_close(got[0].z, want[0].z, M * N, "z");
  expect_close(got[0].r, want[0].r, M * N, "r");

  /* Three steps in flight at once, each with its own inputs: same results
   * as the CPU's. */
  for (int t = 1; t < 4; t++) {
    inputs_for(t, x, w);
    s[t] = start(gpu_ex, gpu_l, gpu_comp, gpu, x, w, (uint64_t)t);
  }
  wait_steps(4);
  for (int t = 1; t < 4; t++) {
    collect(s[t], gpu_l, gpu_comp, gpu, &got[t]);
    pf_step_free(s[t]);
    expect_close(got[t].y, want[t].y, M * K, "y");
    expect_close(got[t].z, want[t].z, M * N, "z");
    expect_close(got[t].r, want[t].r, M * N, "r");
  }
  {
    /* A later step alone allocates no device memory: the blocks the steps
     * before freed are reused (no cudaMalloc per step). */
    pf_cuda_pool_stats before[2], after[2];
    result one;
    for (int d = 0; d < 2; d++) pf_cuda_pool_stats_get(pf_cuda_device_pool(gpu[d]), &before[d]);
    inputs_for(1, x, w);
    s[0] = start(gpu_ex, gpu_l, gpu_comp, gpu, x, w, 4);
    wait_steps(5);
    collect(s[0], gpu_l, gpu_comp, gpu, &one);
    pf_step_free(s[0]);
    expect_close(one.z, want[1].z, M * N, "z");
    for (int d = 0; d < 2; d++) {
      pf_cuda_pool_stats_get(pf_cuda_device_pool(gpu[d]), &after[d]);
      assert_int_equal(after[d].device_allocs, before[d].device_allocs);
      assert_true(before[d].device_allocs > 0);
    }
  }
  {
    /* Every op ran on its device's launcher. */
    pf_counters c;
    pf_device_counters dc[2];
    memset(&c, 0, sizeof c);
    c.num_devices = 2;
    c.devices = dc;
    pf_executor_counters(gpu_ex, &c);
    assert_true(dc[0].ops_run > 0 && dc[1].ops_run > 0);
  }
  pf_loaded_release(cpu_l);
  pf_loaded_release(gpu_l);
  pf_executor_stop(cpu_ex);
  pf_executor_stop(gpu_ex);
  pf_compiled_free(cpu_comp);
  pf_compiled_free(gpu_comp);
  pf_registry_destroy(reg);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_plan_on_gpu),
  };
  pf_cuda_test_require_gpu("test_cuda_device");
  return cmocka_run_group_tests(tests, NULL, NULL);
}
