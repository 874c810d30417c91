/* The device interface, shown with the smallest second implementation: a
 * device that runs its queue synchronously on the calling thread, in
 * virtual time, and counts what the executor asks of it. A plan compiled
 * by the scheduler (a split program, a local allreduce, a reshard to one
 * device) runs on two of them; the test checks the results, that the
 * counts follow from the plan, and that op times come from the virtual
 * clock in dependency order. No thread is started. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/clock.h"
#include "graph/graph_internal.h"
#include "pathflow/error.h"
#include "base/box.h"
#include "runtime/executor.h"
#include "runtime/runtime.h"
#include "scheduler/schedule.h"

#define OP_NS 1000u /* virtual time each op takes */

typedef struct counting_device {
  pf_device base;
  int index;
  pf_clock *clock;
  pf_part *head, *tail;
  uint32_t next;  /* place in the head part's queue */
  int pumping, again;
  /* What it was asked to do. */
  int submits, readies, ops_run, copies, allocs, destroyed;
  size_t alloc_bytes;
} counting_device;

static void cd_info(pf_device *d, pf_device_info *out) {
  memset(out, 0, sizeof *out);
  out->kind = PF_DEVICE_CPU;
  out->index = ((counting_device *)d)->index;
  out->memory_bytes = 1 << 20;
}

static pf_storage *cd_alloc(pf_device *d, size_t nbytes) {
  counting_device *c = (counting_device *)d;
  c->allocs++;
  c->alloc_bytes += nbytes;
  return pf_storage_new(nbytes, c->index);
}

static int cd_copy(pf_device *d, pf_copy_dir dir, void *dst, const int64_t *dst_dims,
                   const void *src, const int64_t *src_dims, const pf_box *box, size_t elem) {
  assert_int_equal(dir, PF_COPY_D2D);
  ((counting_device *)d)->copies++;
  pf_box_copy(dst, dst_dims, src, src_dims, box, elem);
  return 0;
}

/* Runs queued ops in order while they are ready; each takes OP_NS of
 * virtual time. An op done here may make another device's op ready, and
 * that device's may make one here ready again: the inner call only flags
 * it, and the outer loop goes on. */
static void pump(counting_device *c) {
  if (c->pumping) {
    c->again = 1;
    return;
  }
  c->pumping = 1;
  do {
    c->again = 0;
    while (c->head != NULL) {
      pf_step *s = c->head->step;
      uint32_t n;
      const uint32_t *q = pf_step_device_queue(s, c->index, &n);
      if (c->next < n) {
        if (!pf_step_op_ready(s, q[c->next])) break;
        pf_clock_advance(c->clock, pf_clock_now(c->clock) + OP_NS);
        c->ops_run += pf_step_run_op(s, q[c->next]);
        pf_step_op_done(s, q[c->next++], c->index);
        continue;
      }
      c->head = c->head->next;
      if (c->head == NULL) c->tail = NULL;
      c->next = 0;
      pf_step_part_done(s);
    }
  } while (c->again);
  c->pumping = 0;
}

static void cd_submit(pf_device *d, pf_part *pt) {
  counting_device *c = (counting_device *)d;
  c->submits++;
  pt->next = NULL;
  if (c->tail)
    c->tail->next = pt;
  else
    c->head = pt;
  c->tail = pt;
  pump(c);
}

static int cd_ready(pf_device *d, pf_step *s, uint32_t op, int may_claim) {
  counting_device *c = (counting_device *)d;
  (void)s;
  (void)op;
  assert_int_equal(may_claim, 0); /* only the loop thread claims */
  c->readies++;
  pump(c);
  return 0;
}

static pf_running_slot *cd_running(pf_device *d) {
  (void)d;
  return NULL;
}

static void cd_counters(pf_device *d, uint64_t *ops_run, uint64_t *wait_ns) {
  *ops_run = (uint64_t)((counting_device *)d)->ops_run;
  *wait_ns = 0;
}

static void cd_destroy(pf_device *d) { ((counting_device *)d)->destroyed = 1; }

static const pf_device_ops counting_ops = {
    .info = cd_info,
    .alloc = cd_alloc,
    .copy = cd_copy,
    .submit = cd_submit,
    .ready = cd_ready,
    .release = NULL, /* ready never hands an op over */
    .running = cd_running,
    .counters = cd_counters,
    .destroy = cd_destroy,
};

#include "testing_diag.h"

static int done_calls;
static void on_done(pf_step *s, void *arg) {
  (void)s;
  (void)arg;
  done_calls++;
}

/* A graph on one rank of n CPU devices (cl, freed by the caller), with
 * the builtin kernels of reg. */
static pf_graph *cpu_graph(pf_registry *reg, pf_cluster *cl, int n) {
  pf_graph_env env;
  pf_graph *g;
  cl->n_ranks = 1;
  cl->n_devices = n;
  cl->devices = calloc((size_t)n, sizeof *cl->devices);
  for (int d = 0; d < n; d++) {
    cl->devices[d].local = d;
    cl->devices[d].kind = PF_DEVICE_CPU;
    cl->devices[d].memory = 1 << 20;
  }
  memset(&env, 0, sizeof env);
  env.registry = reg;
  env.num_devices[PF_DEVICE_CPU] = n;
  env.diag = &diag;
  OK(pf_graph_new(&env, &g));
  return g;
}

/* x f32[4,3] split(0) on two devices; y = x + x there; s = allreduce(y)
 * (a collective between the two devices of this rank); z = y + y on a
 * one-device slice, which reads y whole (a reshard: box copies). */
static pf_compiled *compile_example(pf_registry *reg) {
  pf_cluster cl;
  pf_graph *g;
  pf_slice_t two, one;
  pf_value_t x, y, sum, z, in2[2];
  pf_spec spec = {.dtype = PF_F32, .rank = 2, .dims = {4, 3}};
  pf_sharding rows = {.kind = PF_SHARD_SPLIT, .axis = 0};
  pf_compiled *out = NULL;
  g = cpu_graph(reg, &cl, 2);
  OK(pf_graph_slice(g, PF_DEVICE_CPU, 2, &two));
  OK(pf_graph_slice(g, PF_DEVICE_CPU, 1, &one));
  OK(pf_graph_input(g, "x", &spec, two, rows, &x));
  in2[0] = x;
  in2[1] = x;
  OK(pf_graph_program(g, &(pf_program_desc){.name = "y", .kernel = "add", .slice = two,
                                            .n_in = 2, .in = in2},
                      &y, NULL));
  OK(pf_graph_collective(g, &(pf_collective_desc){.name = "s", .kind = PF_ALLREDUCE,
                                                  .slice = two, .in = y, .op = PF_REDUCE_SUM},
                         &sum, NULL));
  in2[0] = y;
  in2[1] = y;
  OK(pf_graph_program(g, &(pf_program_desc){.name = "z", .kernel = "add", .slice = one,
                                            .n_in = 2, .in = in2},
                      &z, NULL));
  OK(pf_graph_output(g, "z", z));
  OK(pf_graph_output(g, "s", sum));
  OK(pf_schedule(g, &cl, 1, &out, &diag));
  pf_graph_destroy(g);
  free(cl.devices);
  return out;
}

static void test_counting_device(void **state) {
  pf_registry *reg;
  pf_compiled *comp;
  pf_clock vclock;
  counting_device dev[2];
  pf_device *devs[2] = {&dev[0].base, &dev[1].base};
  pf_executor *ex;
  pf_loaded *l;
  pf_step *s;
  pf_storage **inputs;
  const pf_plan *p;
  int want_ops[2] = {0, 0}, want_copies = 0;
  float x[12];
  (void)state;
  pf_diag_init(&diag);
  OK(pf_registry_create(&reg));
  OK(pf_builtin_kernels_register(reg));
  comp = compile_example(reg);
  pf_clock_virtual_init(&vclock, 0);
  memset(dev, 0, sizeof dev);
  for (int d = 0; d < 2; d++) {
    dev[d].base.ops = &counting_ops;
    dev[d].index = d;
    dev[d].clock = &vclock;
  }
  OK(pf_executor_start(&(pf_executor_config){.num_devices = 2, .registry = reg,
                                             .record_times = 1, .bind_first = -1,
                                             .devices = devs, .clock = &vclock},
                       &ex));
  OK(pf_executor_load(ex, comp->plans[0], &l, &diag));
  comp->plans[0] = NULL; /* the executor's now */
  p = pf_loaded_plan(l);
  for (uint32_t i = 0; i < p->n_ops; i++) {
    want_ops[p->ops[i].device]++;
    want_copies += p->ops[i].kind == PF_OP_COPY;
  }
  assert_true(want_ops[0] > 0 && want_ops[1] > 0);
  assert_true(want_copies > 0);
  for (int k = 0; k < 12; k++) x[k] = (float)k;
  inputs = calloc(p->n_buffers, sizeof *inputs);
  for (int k = 0; k < comp->inputs[0].num_shards; k++) {
    const pf_io_shard *sh = &comp->inputs[0].shards[k];
    inputs[sh->buffer] = pf_storage_new(6 * sizeof(float), sh->device);
    memcpy(inputs[sh->buffer]->data, x + 6 * k, 6 * sizeof(float)); /* rows 2k, 2k+1 */
  }
  OK(pf_executor_run(ex, l, inputs, 7, on_done, NULL, &s));
  /* Synchronous devices: the step is done when run returns. */
  assert_int_equal(done_calls, 1);
  assert_int_equal(pf_step_status(s), 0);
  {
    /* z = 2y = 4x, whole on one device; s = the sum of y's two shards (rows
     * 0-1 + rows 2-3), on both devices. */
    pf_storage *z = pf_step_take(s, comp->outputs[0].shards[0].buffer);
    assert_non_null(z);
    for (int k = 0; k < 12; k++) assert_float_equal(((float *)z->data)[k], 4.0f * x[k], 0);
    pf_storage_unref(z);
    assert_int_equal(comp->outputs[1].num_shards, 2);
    for (int d = 0; d < 2; d++) {
      pf_storage *sum = pf_step_take(s, comp->outputs[1].shards[d].buffer);
      assert_non_null(sum);
      for (int k = 0; k < 6; k++)
        assert_float_equal(((float *)sum->data)[k], 2.0f * (x[k] + x[k + 6]), 0);
      pf_storage_unref(sum);
    }
  }
  /* The counts follow from the plan: one submit per device with ops, each
   * op run once on its own device, each COPY op through the device's copy. */
  for (int d = 0; d < 2; d++) {
    assert_int_equal(dev[d].submits, 1);
    assert_int_equal(dev[d].ops_run, want_ops[d]);
    assert_true(dev[d].allocs > 0);
  }
  assert_int_equal(dev[0].copies + dev[1].copies, want_copies);
  assert_true(dev[0].readies + dev[1].readies > 0); /* cross-device inputs */
  /* Times come from the virtual clock: each op ran within OP_NS of time
   * the device advanced, after every op it depends on. */
  assert_int_equal(pf_clock_now(&vclock), (uint64_t)p->n_ops * OP_NS);
  for (uint32_t i = 0; i < p->n_ops; i++) {
    uint64_t t0, t1;
    pf_step_op_times(s, i, &t0, &t1);
    assert_true(t0 >= OP_NS && t1 <= (uint64_t)p->n_ops * OP_NS && t0 <= t1);
    for (uint32_t k = 0; k < p->ops[i].n_deps; k++) {
      uint64_t d0, d1;
      pf_step_op_times(s, p->ops[i].deps[k], &d0, &d1);
      assert_true(d1 < t0 + 1 && d1 <= t1);
    }
  }
  pf_step_free(s);
  free(inputs);
  pf_loaded_release(l);
  pf_executor_stop(ex);
  assert_int_equal(dev[0].destroyed + dev[1].destroyed, 2);
  pf_compiled_free(comp);
  pf_registry_destroy(reg);
}

/* A kernel on one device reading a whole shard another device of the rank
 * made: the scheduler hands the buffer over (no copy op) where both
 * devices' memory is the host's, and the executor refuses such a plan at
 * load when one of them says its memory is its own. */
static int own_memory_of[2];
static void cd_info_own(pf_device *d, pf_device_info *out) {
  cd_info(d, out);
  out->own_memory = own_memory_of[((counting_device *)d)->index];
}

static void test_kernel_reads_other_device(void **state) {
  pf_registry *reg;
  pf_cluster cl;
  pf_graph *g;
  pf_slice_t s0, s1;
  pf_value_t x, y, z;
  pf_spec spec = pf_spec_1d(PF_F32, 8);
  pf_compiled *comp;
  pf_device_ops own_ops = counting_ops;
  pf_clock vclock;
  counting_device dev[2];
  pf_device *devs[2] = {&dev[0].base, &dev[1].base};
  const int d0 = 0, d1 = 1;
  (void)state;
  pf_diag_init(&diag);
  OK(pf_registry_create(&reg));
  OK(pf_builtin_kernels_register(reg));
  g = cpu_graph(reg, &cl, 2);
  OK(pf_graph_slice(g, PF_DEVICE_CPU, 1, &s0));
  OK(pf_graph_slice_pin(g, s0, &d0));
  OK(pf_graph_slice(g, PF_DEVICE_CPU, 1, &s1));
  OK(pf_graph_slice_pin(g, s1, &d1));
  OK(pf_graph_input(g, "x", &spec, s0, pf_replicated(), &x));
  OK(pf_graph_program(g, &(pf_program_desc){.name = "y", .kernel = "add", .slice = s0, .n_in = 2,
                                            .in = (pf_value_t[]){x, x}},
                      &y, NULL));
  OK(pf_graph_program(g, &(pf_program_desc){.name = "z", .kernel = "add", .slice = s1, .n_in = 2,
                                            .in = (pf_value_t[]){y, y}},
                      &z, NULL));
  OK(pf_graph_output(g, "z", z));
  OK(pf_schedule(g, &cl, 1, &comp, &diag));
  {
    const pf_plan *p = comp->plans[0];
    int copies = 0, cross = 0;
    for (uint32_t i = 0; i < p->n_ops; i++) {
      copies += p->ops[i].kind == PF_OP_COPY;
      if (p->ops[i].kind == PF_OP_KERNEL && p->ops[i].device == 1)
        cross += p->buffers[p->ops[i].inputs[0]].device == 0;
    }
    assert_int_equal(copies, 0);
    assert_int_equal(cross, 1);
  }
  own_ops.info = cd_info_own;
  pf_clock_virtual_init(&vclock, 0);
  for (int round = 0; round < 2; round++) {
    pf_executor *ex;
    pf_loaded *l = NULL;
    memset(dev, 0, sizeof dev);
    own_memory_of[0] = round == 1; /* device 0 keeps its buffers in memory of its own */
    for (int d = 0; d < 2; d++) {
      dev[d].base.ops = &own_ops;
      dev[d].index = d;
      dev[d].clock = &vclock;
    }
    OK(pf_executor_start(&(pf_executor_config){.num_devices = 2, .registry = reg,
                                               .bind_first = -1, .devices = devs,
                                               .clock = &vclock},
                         &ex));
    if (round == 0) {
      pf_storage **inputs;
      pf_step *s;
      pf_storage *out;
      const pf_plan *p;
      OK(pf_executor_load(ex, comp->plans[0], &l, &diag));
      comp->plans[0] = NULL;
      p = pf_loaded_plan(l);
      inputs = calloc(p->n_buffers, sizeof *inputs);
      inputs[comp->inputs[0].shards[0].buffer] = pf_storage_new(8 * sizeof(float), 0);
      for (int k = 0; k < 8; k++)
        ((float *)inputs[comp->inputs[0].shards[0].buffer]->data)[k] = (float)k;
      done_calls = 0;
      OK(pf_executor_run(ex, l, inputs, 1, on_done, NULL, &s));
      assert_int_equal(pf_step_status(s), 0);
      out = pf_step_take(s, comp->outputs[0].shards[0].buffer);
      assert_non_null(out);
      for (int k = 0; k < 8; k++) assert_float_equal(((float *)out->data)[k], 4.0f * k, 0);
      pf_storage_unref(out);
      pf_step_free(s);
      free(inputs);
      pf_loaded_release(l);
    } else {
      pf_compiled *again;
      OK(pf_schedule(g, &cl, 2, &again, &diag));
      assert_int_equal(pf_executor_load(ex, again->plans[0], &l, &diag), PF_EDECODE);
      again->plans[0] = NULL; /* freed by the failed load */
      assert_non_null(strstr(diag.msg, "do not share memory"));
      assert_non_null(strstr(diag.msg, "\"z\""));
      pf_compiled_free(again);
    }
    pf_executor_stop(ex);
  }
  pf_graph_destroy(g);
  free(cl.devices);
  pf_compiled_free(comp);
  pf_registry_destroy(reg);
}

/* Release points and inputs told by flags (executor.c): random graphs of
 * "add" programs on three devices of one process, each program reading two
 * of the last few values made. For every buffer given a release point,
 * every op that reads it happens before the point (through dependencies
 * and each device's queue order, the only orders the executor keeps), and
 * the graph computes what the same adds compute on the host: run by the
 * counting devices (inputs counted: they have no asleep), and many times by
 * CPU worker threads racing each other (inputs from other devices told by
 * flags), which never spin (every wait sleeps: the sleeping handshake of
 * pf_device_ops.asleep at every op) or spin 20 us (some flags in the
 * lines of their inputs' data: slot flags), each add busy for a
 * random 0-16 us so that producers finish around the moment the consumer
 * goes to sleep. A lost wake-up hangs the test. */
#define RP_DEVICES 3
#define RP_PROGRAMS 40
#define RP_GRAPHS 24
#define RP_RUNS 30

/* 1 if op a happens before op b in p: a path back from b through each
 * op's dependencies and the op before it in its device's queue (prev). */
static int happens_before(const pf_plan *p, const uint32_t *prev, uint32_t a, uint32_t b,
                          uint8_t *seen, uint32_t *stack) {
  uint32_t n = 0;
  int found = 0;
  memset(seen, 0, p->n_ops);
  stack[n++] = b;
  while (n > 0 && !found) {
    uint32_t x = stack[--n];
    for (uint32_t k = 0; k <= p->ops[x].n_deps; k++) {
      uint32_t y = k < p->ops[x].n_deps ? p->ops[x].deps[k] : prev[x];
      if (y == UINT32_MAX || seen[y]) continue;
      seen[y] = 1;
      if (y == a) found = 1;
      stack[n++] = y;
    }
  }
  return found;
}

/* The op that writes buffer b. */
static uint32_t writer_of(const pf_plan *p, uint32_t b) {
  for (uint32_t i = 0; i < p->n_ops; i++)
    for (uint32_t k = 0; k < p->ops[i].n_out; k++)
      if (p->ops[i].outputs[k] == b) return i;
  return UINT32_MAX;
}

/* "test.jitter_add": add, then a busy wait of 0-16 us (a per-thread
 * xorshift), so that threads meet at every moment of each other's paths. */
static __thread uint32_t jitter_state;
static int jitter_compute(const pf_kernel_call *c) {
  const float *a = c->in[0].data, *b = c->in[1].data;
  float *y = c->out[0].data;
  struct timespec t0, t;
  long ns;
  for (int64_t i = 0; i < pf_spec_numel(&c->out[0].spec); i++) y[i] = a[i] + b[i];
  if (jitter_state == 0) jitter_state = (uint32_t)(uintptr_t)&jitter_state | 1u;
  jitter_state ^= jitter_state << 13;
  jitter_state ^= jitter_state >> 17;
  jitter_state ^= jitter_state << 5;
  ns = (long)(jitter_state % 16384u);
  clock_gettime(CLOCK_MONOTONIC, &t0);
  do clock_gettime(CLOCK_MONOTONIC, &t);
  while ((t.tv_sec - t0.tv_sec) * 1000000000L + (t.tv_nsec - t0.tv_nsec) < ns);
  return 0;
}

static int jitter_shape(const pf_attrs *attrs, int n_in, const pf_spec *in, int n_out,
                        pf_spec *out, pf_diag *d) {
  (void)attrs;
  (void)n_in;
  (void)n_out;
  (void)d;
  out[0] = in[0];
  return 0;
}

static const pf_kernel_def jitter_add = {.name = "test.jitter_add", .kind = PF_DEVICE_CPU,
                                         .n_in = 2, .n_out = 1, .shape = jitter_shape,
                                         .compute = jitter_compute};

static atomic_int rp_done;
static void rp_on_done(pf_step *s, void *arg) {
  (void)s;
  (void)arg;
  atomic_store(&rp_done, 1);
}

/* Runs one step of l fed x (4 floats) and checks output buffer `out`
 * against want. */
static void rp_run(pf_executor *ex, pf_loaded *l, const pf_compiled *comp, const float *x,
                   const float *want) {
  const pf_plan *p = pf_loaded_plan(l);
  pf_storage **inputs = calloc(p->n_buffers, sizeof *inputs), *out;
  pf_step *s;
  uint32_t in = comp->inputs[0].shards[0].buffer;
  inputs[in] = pf_storage_new(4 * sizeof(float), comp->inputs[0].shards[0].device);
  memcpy(inputs[in]->data, x, 4 * sizeof(float));
  atomic_store(&rp_done, 0);
  OK(pf_executor_run(ex, l, inputs, 1, rp_on_done, NULL, &s));
  while (!atomic_load(&rp_done)) sched_yield();
  assert_int_equal(pf_step_status(s), 0);
  out = pf_step_take(s, comp->outputs[0].shards[0].buffer);
  assert_non_null(out);
  assert_memory_equal(out->data, want, 4 * sizeof(float));
  pf_storage_unref(out);
  pf_step_free(s);
  free(inputs);
}

static void test_release_points(void **state) {
  pf_registry *reg;
  unsigned seed = 7;
  int with_points = 0, checked = 0, with_slots = 0, with_permanent = 0;
  uint32_t flagged[3] = {0, 0, 0}, in_line = 0;
  (void)state;
  pf_diag_init(&diag);
  OK(pf_registry_create(&reg));
  OK(pf_builtin_kernels_register(reg));
  OK(pf_registry_add(reg, &jitter_add));
  for (int round = 0; round < RP_GRAPHS; round++) {
    pf_cluster cl;
    pf_graph *g = cpu_graph(reg, &cl, RP_DEVICES);
    pf_slice_t sl[RP_DEVICES];
    pf_value_t v[RP_PROGRAMS + 1];
    pf_spec spec = pf_spec_1d(PF_F32, 4);
    float ref[RP_PROGRAMS + 1][4];
    for (int d = 0; d < RP_DEVICES; d++) {
      OK(pf_graph_slice(g, PF_DEVICE_CPU, 1, &sl[d]));
      OK(pf_graph_slice_pin(g, sl[d], &d));
    }
    OK(pf_graph_input(g, "x", &spec, sl[0], pf_replicated(), &v[0]));
    for (int i = 0; i < 4; i++) ref[0][i] = (float)(i + 1);
    for (int k = 1; k <= RP_PROGRAMS; k++) {
      int back = k < 5 ? k : 5;
      int a = k - 1 - (int)(rand_r(&seed) % (unsigned)back);
      int b = k - 1 - (int)(rand_r(&seed) % (unsigned)back);
      int d = (int)(rand_r(&seed) % RP_DEVICES);
      OK(pf_graph_program(g, &(pf_program_desc){.kernel = "test.jitter_add", .slice = sl[d],
                                                .n_in = 2,
                                                .in = (pf_value_t[]){v[a], v[b]}},
                          &v[k], NULL));
      for (int i = 0; i < 4; i++) ref[k][i] = ref[a][i] + ref[b][i];
    }
    OK(pf_graph_output(g, "y", v[RP_PROGRAMS]));
    for (int mode = 0; mode < 3; mode++) {
      counting_device dev[RP_DEVICES];
      pf_device *devs[RP_DEVICES];
      pf_clock vclock;
      pf_compiled *comp;
      pf_executor *ex;
      pf_loaded *l;
      const pf_plan *p;
      OK(pf_schedule(g, &cl, 1, &comp, &diag));
      pf_clock_virtual_init(&vclock, 0);
      memset(dev, 0, sizeof dev);
      for (int d = 0; d < RP_DEVICES; d++) {
        dev[d].base.ops = &counting_ops;
        dev[d].index = d;
        dev[d].clock = &vclock;
        devs[d] = &dev[d].base;
      }
      /* mode 0: the counting devices, in virtual time; 1: worker threads
       * that never spin; 2: worker threads that spin 20 us. */
      OK(pf_executor_start(&(pf_executor_config){.num_devices = RP_DEVICES, .registry = reg,
                                                 .bind_first = -1,
                                                 .spin_ns = mode == 2 ? 20000u : 0,
                                                 .devices = mode == 0 ? devs : NULL,
                                                 .clock = mode == 0 ? &vclock : NULL},
                           &ex));
      OK(pf_executor_load(ex, comp->plans[0], &l, &diag));
      comp->plans[0] = NULL;
      p = pf_loaded_plan(l);
      for (uint32_t i = 0; i < p->n_ops; i++) {
        flagged[mode] += pf_loaded_flag_inputs(l, i);
        if (mode == 1) in_line += pf_loaded_slot_flag_inputs(l, i);
      }
      if (mode == 0) {
        uint32_t *prev = malloc(p->n_ops * sizeof *prev), *stack = malloc(p->n_ops * 4 * sizeof *stack);
        uint32_t last[RP_DEVICES];
        uint8_t *seen = malloc(p->n_ops);
        for (int d = 0; d < RP_DEVICES; d++) last[d] = UINT32_MAX;
        for (uint32_t i = 0; i < p->n_ops; i++) {
          prev[i] = last[p->ops[i].device];
          last[p->ops[i].device] = i;
        }
        for (uint32_t b = 0; b < p->n_buffers; b++) {
          uint32_t o = pf_loaded_release_point(l, b), at = pf_loaded_slot(l, b);
          if (at != UINT32_MAX) {
            /* Another buffer whose slot overlaps b's lives apart from it:
             * one of the two is made where the other is released, or
             * after (the same device's queue). A slot without a release
             * point is the buffer's for the whole step: nothing overlaps
             * it. */
            with_slots++;
            with_permanent += o == UINT32_MAX;
            for (uint32_t c = 0; c < p->n_buffers; c++) {
              uint32_t ac = pf_loaded_slot(l, c), oc = pf_loaded_release_point(l, c);
              uint32_t wb = writer_of(p, b), wc = writer_of(p, c);
              if (c == b || ac == UINT32_MAX || ac >= at + pf_spec_nbytes(p->buffers[b].spec) ||
                  at >= ac + pf_spec_nbytes(p->buffers[c].spec))
                continue;
              assert_int_equal(p->buffers[b].device, p->buffers[c].device);
              assert_true(o != UINT32_MAX && oc != UINT32_MAX);
              assert_true(wc >= o || wb >= oc);
            }
          }
          if (o == UINT32_MAX) continue;
          with_points++;
          for (uint32_t i = 0; i < p->n_ops; i++)
            for (uint32_t k = 0; k < p->ops[i].n_in; k++)
              if (p->ops[i].inputs[k] == b) {
                assert_true(happens_before(p, prev, i, o, seen, stack));
                checked++;
              }
        }
        free(prev);
        free(stack);
        free(seen);
      }
      for (int r = 0; r < (mode == 0 ? 1 : RP_RUNS); r++) rp_run(ex, l, comp, ref[0], ref[RP_PROGRAMS]);
      pf_loaded_release(l);
      pf_executor_stop(ex);
      pf_compiled_free(comp);
    }
    pf_graph_destroy(g);
    free(cl.devices);
  }
  /* The graphs gave the analysis something to do. */
  assert_true(with_points >= RP_GRAPHS);
  assert_true(with_slots >= RP_GRAPHS);
  assert_true(with_permanent > 0);
  assert_true(checked > with_points);
  /* Counted on the counting devices; told by flags between workers. */
  assert_int_equal(flagged[0], 0);
  assert_true(flagged[1] >= RP_GRAPHS * RP_PROGRAMS);
  assert_int_equal(flagged[1], flagged[2]);
  /* Some in the lines of their data (slot flags), not all. */
  assert_true(in_line > 0 && in_line < flagged[1]);
  pf_registry_destroy(reg);
}

static int fired[4], n_fired;
static void on_timer(pf_timer *t, void *arg) {
  (void)t;
  fired[n_fired++] = (int)(intptr_t)arg;
}

/* The virtual clock: time moves only when advanced; timers run in due
 * order, each at its due time; a stopped timer does not run; sleeping
 * advances it. */
static void test_virtual_clock(void **state) {
  pf_clock c;
  pf_timer a, b, z;
  (void)state;
  memset(&a, 0, sizeof a);
  memset(&b, 0, sizeof b);
  memset(&z, 0, sizeof z);
  pf_clock_virtual_init(&c, 100);
  assert_int_equal(pf_clock_now(&c), 100);
  pf_timer_start(&c, &b, 50, on_timer, (void *)2);
  pf_timer_start(&c, &a, 10, on_timer, (void *)1);
  pf_timer_start(&c, &z, 20, on_timer, (void *)9);
  pf_timer_stop(&c, &z);
  assert_int_equal(pf_clock_next_due(&c), 110);
  assert_int_equal(pf_clock_advance(&c, 120), 1);
  assert_int_equal(n_fired, 1);
  assert_int_equal(fired[0], 1);
  assert_int_equal(pf_clock_now(&c), 120);
  pf_clock_sleep(&c, 40); /* to 160: b (due 150) runs */
  assert_int_equal(n_fired, 2);
  assert_int_equal(fired[1], 2);
  assert_int_equal(pf_clock_now(&c), 160);
  assert_int_equal(pf_clock_next_due(&c), UINT64_MAX);
  assert_int_equal(pf_clock_advance(&c, 150), 0); /* never backwards */
  assert_int_equal(pf_clock_now(&c), 160);
}

/* Who runs a rank's ops by default: the loop thread whenever it would
 * share a CPU with the rank's only worker (two ranks on two cores: its
 * sends then waited a scheduler time slice behind a busy worker). */
static void ignore_loop_op(void *arg, pf_step *step, uint32_t op) {
  (void)arg;
  (void)step;
  (void)op;
}

/* A graph over two ranks of one CPU device each (device d on rank d), its
 * registry with the built-in kernels in *reg and its cluster in *cl. */
static pf_graph *two_rank_graph(pf_registry **reg, pf_cluster *cl) {
  pf_graph *g;
  pf_diag_init(&diag);
  OK(pf_registry_create(reg));
  OK(pf_builtin_kernels_register(*reg));
  g = cpu_graph(*reg, cl, 2);
  cl->n_ranks = 2;
  cl->devices[1].rank = 1;
  cl->devices[1].local = 0;
  return g;
}

/* Frees what a test of two_rank_graph's made. */
static void two_rank_done(pf_loaded *l, pf_executor *ex, pf_compiled *comp, pf_graph *g,
                          pf_cluster *cl, pf_registry *reg) {
  pf_loaded_release(l);
  pf_executor_stop(ex);
  pf_compiled_free(comp);
  pf_graph_destroy(g);
  free(cl->devices);
  pf_registry_destroy(reg);
}

/* A transfer's small buffer lies in the step's slot area (executor.c,
 * PERMANENT_SLOT_BYTES): a receive's output of a line at most that kernels
 * read, and a kernel's output that a send reads; a larger one, or one a
 * copy reads, gets storage. Rank 1's plan of a graph over two ranks:
 * x f32[4] and w f32[32] come from rank 0; y = x + x and u = w + w are made
 * here, y sent back (z = y + y on rank 0) and read here again (v = y + y);
 * t = w + w is read whole by a program on both ranks (a reshard: its send
 * reads a buffer of 128 bytes). */
static void test_transfer_slots(void **state) {
  pf_registry *reg;
  pf_cluster cl;
  pf_graph *g;
  pf_slice_t s0, s1, both;
  pf_value_t x, w, y, u, z, v;
  pf_spec small = pf_spec_1d(PF_F32, 4), large = pf_spec_1d(PF_F32, 32);
  pf_compiled *comp;
  pf_executor *ex;
  pf_loaded *l;
  const pf_plan *p;
  int d0 = 0, d1 = 1, in_slots = 0, in_storage = 0;
  (void)state;
  g = two_rank_graph(&reg, &cl);
  OK(pf_graph_slice(g, PF_DEVICE_CPU, 1, &s0));
  OK(pf_graph_slice_pin(g, s0, &d0));
  OK(pf_graph_slice(g, PF_DEVICE_CPU, 1, &s1));
  OK(pf_graph_slice_pin(g, s1, &d1));
  OK(pf_graph_slice(g, PF_DEVICE_CPU, 2, &both));
  OK(pf_graph_input(g, "x", &small, s0, pf_replicated(), &x));
  OK(pf_graph_input(g, "w", &large, s0, pf_replicated(), &w));
  OK(pf_graph_program(g, &(pf_program_desc){.name = "y", .kernel = "add", .slice = s1, .n_in = 2,
                                            .in = (pf_value_t[]){x, x}},
                      &y, NULL));
  OK(pf_graph_program(g, &(pf_program_desc){.name = "u", .kernel = "add", .slice = s1, .n_in = 2,
                                            .in = (pf_value_t[]){w, w}},
                      &u, NULL));
  OK(pf_graph_program(g, &(pf_program_desc){.name = "z", .kernel = "add", .slice = s0, .n_in = 2,
                                            .in = (pf_value_t[]){y, y}},
                      &z, NULL));
  OK(pf_graph_program(g, &(pf_program_desc){.name = "v", .kernel = "add", .slice = s1, .n_in = 2,
                                            .in = (pf_value_t[]){y, y}},
                      &v, NULL));
  OK(pf_graph_program(g, &(pf_program_desc){.name = "t", .kernel = "add", .slice = both,
                                            .n_in = 2, .in = (pf_value_t[]){u, u}},
                      &(pf_value_t){0}, NULL));
  OK(pf_graph_output(g, "z", z));
  OK(pf_graph_output(g, "v", v));
  OK(pf_schedule(g, &cl, 1, &comp, &diag));
  OK(pf_executor_start(&(pf_executor_config){.num_devices = 1, .rank = 1, .registry = reg,
                                             .bind_first = -1, .loop_op = ignore_loop_op},
                       &ex));
  OK(pf_executor_load(ex, comp->plans[1], &l, &diag));
  comp->plans[1] = NULL;
  p = pf_loaded_plan(l);
  for (uint32_t i = 0; i < p->n_ops; i++) {
    const pf_plan_op *op = &p->ops[i];
    uint32_t b;
    if (op->kind != PF_OP_SEND && op->kind != PF_OP_RECV) continue;
    b = op->kind == PF_OP_SEND ? op->inputs[0] : op->outputs[0];
    if (pf_spec_nbytes(p->buffers[b].spec) <= 64) {
      assert_int_not_equal(pf_loaded_slot(l, b), UINT32_MAX);
      in_slots++;
    } else {
      assert_int_equal(pf_loaded_slot(l, b), UINT32_MAX);
      in_storage++;
    }
  }
  /* x's receive and y's send; w's receive and u's send (a shard of t's
   * input, 128 bytes). */
  assert_int_equal(in_slots, 2);
  assert_true(in_storage >= 2);
  two_rank_done(l, ex, comp, g, &cl, reg);
}

/* Op `name` of plan p (a program's ops carry its name), or UINT32_MAX. */
static uint32_t op_named(const pf_plan *p, const char *name, pf_op_kind kind) {
  for (uint32_t i = 0; i < p->n_ops; i++)
    if (p->ops[i].kind == kind && strcmp(p->ops[i].name, name) == 0) return i;
  return UINT32_MAX;
}

/* Which kernels run in the completion of the collective they read
 * (executor.c, is_epilogue), where the loop thread runs the ops: rank 1's
 * plan of a graph over two ranks. b = scale(allreduce(scale(x))) is one (a
 * small collective read by one kernel, in the slot area both); d and e both
 * read c2 = allreduce(b), so neither is (the collective has two
 * dependents); k reads a 4 KiB allreduce, which has storage of its own;
 * m = c4 + x reads a small allreduce and the fed input, which has storage
 * too; f = scale(allreduce(x)) is not, for the allreduce's finish counts
 * the reads of x, which three ops read. */
static void test_epilogues(void **state) {
  pf_registry *reg;
  pf_cluster cl;
  pf_graph *g;
  pf_slice_t both;
  pf_value_t x, w, a0, a, b, c2, d, e, c3, k, c4, m, c5, f;
  pf_spec scalar = pf_spec_scalar(PF_F64), large = pf_spec_1d(PF_F32, 1024);
  pf_compiled *comp;
  pf_executor *ex;
  pf_loaded *l;
  const pf_plan *p;
  int pin[2] = {0, 1};
  (void)state;
  g = two_rank_graph(&reg, &cl);
  OK(pf_graph_slice(g, PF_DEVICE_CPU, 2, &both));
  OK(pf_graph_slice_pin(g, both, pin));
  OK(pf_graph_input(g, "x", &scalar, both, pf_replicated(), &x));
  OK(pf_graph_input(g, "w", &large, both, pf_replicated(), &w));
#define AR(nm, src, dst)                                                                     \
  OK(pf_graph_collective(g, &(pf_collective_desc){.name = nm, .kind = PF_ALLREDUCE,           \
                                                  .slice = both, .in = src, .op = PF_REDUCE_SUM}, \
                         &dst, NULL))
#define SCALE(nm, src, dst)                                                                  \
  OK(pf_graph_program(g, &(pf_program_desc){.name = nm, .kernel = "scale", .slice = both,   \
                                            .n_in = 1, .in = &src},                         \
                      &dst, NULL))
  SCALE("a0", x, a0);
  AR("a", a0, a);
  SCALE("b", a, b);
  AR("c2", b, c2);
  SCALE("d", c2, d);
  SCALE("e", c2, e);
  AR("c3", w, c3);
  SCALE("k", c3, k);
  AR("c5", x, c5);
  SCALE("f", c5, f);
  AR("c4", x, c4);
  OK(pf_graph_program(g, &(pf_program_desc){.name = "m", .kernel = "add", .slice = both,
                                            .n_in = 2, .in = (pf_value_t[]){c4, x}},
                      &m, NULL));
#undef AR
#undef SCALE
  OK(pf_graph_output(g, "d", d));
  OK(pf_graph_output(g, "e", e));
  OK(pf_graph_output(g, "k", k));
  OK(pf_graph_output(g, "m", m));
  OK(pf_graph_output(g, "f", f));
  OK(pf_schedule(g, &cl, 1, &comp, &diag));
  /* The loop thread runs the ops (its own queues): no op tells its
   * dependents by flags there. */
  OK(pf_executor_start(&(pf_executor_config){.num_devices = 1, .rank = 1, .registry = reg,
                                             .bind_first = -1, .loop_op = ignore_loop_op,
                                             .loop_runs_ops = 1},
                       &ex));
  OK(pf_executor_load(ex, comp->plans[1], &l, &diag));
  comp->plans[1] = NULL;
  p = pf_loaded_plan(l);
  assert_int_not_equal(op_named(p, "b", PF_OP_KERNEL), UINT32_MAX);
  assert_true(pf_loaded_is_epilogue(l, op_named(p, "b", PF_OP_KERNEL)));
  assert_false(pf_loaded_is_epilogue(l, op_named(p, "d", PF_OP_KERNEL)));
  assert_false(pf_loaded_is_epilogue(l, op_named(p, "e", PF_OP_KERNEL)));
  assert_false(pf_loaded_is_epilogue(l, op_named(p, "k", PF_OP_KERNEL)));
  assert_false(pf_loaded_is_epilogue(l, op_named(p, "m", PF_OP_KERNEL)));
  assert_false(pf_loaded_is_epilogue(l, op_named(p, "f", PF_OP_KERNEL)));
  /* No collective is one. */
  for (uint32_t i = 0; i < p->n_ops; i++)
    if (p->ops[i].kind != PF_OP_KERNEL) assert_false(pf_loaded_is_epilogue(l, i));
  two_rank_done(l, ex, comp, g, &cl, reg);
}

static void test_loop_runs_ops_default(void **state) {
  (void)state;
  assert_int_equal(pf_loop_runs_ops_default(1, 16, 1, 4, 0), 1);  /* --bind-to core */
  assert_int_equal(pf_loop_runs_ops_default(2, 2, 4, 1, 0), 1);   /* --oversubscribe */
  assert_int_equal(pf_loop_runs_ops_default(2, 2, 2, 1, 0), 1);   /* a CPU per rank */
  assert_int_equal(pf_loop_runs_ops_default(3, 3, 2, 1, 0), 1);   /* 1.5 per rank */
  assert_int_equal(pf_loop_runs_ops_default(4, 4, 2, 1, 0), 0);   /* a core for each */
  assert_int_equal(pf_loop_runs_ops_default(2, 2, 1, 1, 0), 0);   /* one rank, two CPUs */
  assert_int_equal(pf_loop_runs_ops_default(2, 2, 2, 2, 0), 0);   /* two devices a rank */
  assert_int_equal(pf_loop_runs_ops_default(2, 2, 2, 1, 1), 0);   /* a GPU besides */
  assert_int_equal(pf_loop_runs_ops_default(2, 0, 2, 1, 0), 1);   /* online unknown */
}

/* The real clock moves by itself and sleeps at least as long as asked. */
static void test_real_clock(void **state) {
  pf_clock c;
  uint64_t t0;
  (void)state;
  pf_clock_real_init(&c);
  t0 = pf_clock_now(&c);
  pf_clock_sleep(&c, 2000000);
  assert_true(pf_clock_now(&c) - t0 >= 2000000);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_counting_device),
      cmocka_unit_test(test_kernel_reads_other_device),
      cmocka_unit_test(test_release_points),
      cmocka_unit_test(test_transfer_slots),
      cmocka_unit_test(test_virtual_clock),
      cmocka_unit_test(test_real_clock),
      cmocka_unit_test(test_epilogues),
      cmocka_unit_test(test_loop_runs_ops_default),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
