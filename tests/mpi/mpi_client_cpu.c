/* Where the controller's client thread waits (pf_runtime_client_cpu), on
 * 2 ranks --bind-to none. When every CPU of the host carries a rank's loop
 * (two ranks, two CPUs), a waiting thread is moved beside its own rank's
 * loop for the wait: another rank's spinning loop kept a thread woken on
 * its CPU waiting (synchronous dispatch 6x slower). Checked here: the rule
 * (the loop's CPU then, -1 with CPUs to spare), that a wait puts the
 * caller's CPU mask back as it found it, and that a thread the user pinned
 * away from that CPU stays where it was pinned; every wait's result right. */
#define _GNU_SOURCE
#include <pathflow.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/context_internal.h"
#include "runtime/runtime.h"

#define CHECK(c)                                                              \
  do {                                                                        \
    if (!(c)) {                                                               \
      fprintf(stderr, "mpi_client_cpu: %s:%d: %s\n", __FILE__, __LINE__, #c); \
      exit(1);                                                                \
    }                                                                         \
  } while (0)

static cpu_set_t current_mask(void) {
  cpu_set_t m;
  CHECK(pthread_getaffinity_np(pthread_self(), sizeof m, &m) == 0);
  return m;
}

/* One execution, waited for: the sum over the ranks of each rank's fill
 * of ones (an allreduce), so the wait is for every rank's work. */
static void run_and_check(pf_executable *exe, int world) {
  pf_future *f;
  pf_tensor *t;
  CHECK(pf_execute(exe, 0, NULL, &f) == 0);
  CHECK(pf_future_wait(f) == 0);
  CHECK(pf_future_fetch(f, "v", &t) == 0);
  for (int i = 0; i < 4; i++) CHECK(((float *)pf_tensor_data(t))[i] == (float)world);
  pf_tensor_destroy(t);
  pf_future_destroy(f);
}

int main(int argc, char **argv) {
  pf_context *ctx;
  pf_graph *g;
  pf_executable *exe;
  pf_slice_t s;
  pf_value_t v, sum;
  pf_attrs *a;
  int64_t shape[1] = {4};
  cpu_set_t process, after, one;
  int cpu, world, other = -1;
  if (pf_init(&argc, &argv, &(pf_init_options){.cpu_devices = 1}, &ctx)) return 3;
  world = pf_world_size(ctx);
  process = current_mask();
  cpu = pf_runtime_client_cpu(ctx->runtime);
  printf("mpi_client_cpu: %d CPUs in the mask, %d ranks: client CPU %d\n", CPU_COUNT(&process),
         world, cpu);
  /* Every rank here is on this host (one mpirun, no hostfile). */
  if (CPU_COUNT(&process) >= 2 && CPU_COUNT(&process) <= world)
    CHECK(cpu >= 0 && CPU_ISSET(cpu, &process));
  else
    CHECK(cpu == -1);

  pf_graph_create(ctx, &g);
  pf_graph_slice(g, PF_DEVICE_CPU, world, &s);
  pf_attrs_create(&a);
  pf_attrs_set_ints(a, "shape", shape, 1);
  pf_attrs_set_float(a, "value", 1.0);
  CHECK(pf_graph_program(g, &(pf_program_desc){.kernel = "fill", .attrs = a, .slice = s}, &v,
                         NULL) == 0);
  CHECK(pf_graph_collective(g,
                            &(pf_collective_desc){.kind = PF_ALLREDUCE, .slice = s, .in = v,
                                                  .op = PF_REDUCE_SUM},
                            &sum, NULL) == 0);
  pf_graph_output(g, "v", sum);
  CHECK(pf_compile(g, &exe) == 0);

  for (int c = 0; c < CPU_SETSIZE; c++)
    if (CPU_ISSET(c, &process) && c != cpu) {
      other = c;
      break;
    }
  for (int round = 0; round < 20; round++) {
    /* Start each wait on another CPU than the loop's, the mask whole. */
    if (other >= 0) {
      CPU_ZERO(&one);
      CPU_SET(other, &one);
      CHECK(pthread_setaffinity_np(pthread_self(), sizeof one, &one) == 0);
      sched_yield();
      CHECK(pthread_setaffinity_np(pthread_self(), sizeof process, &process) == 0);
    }
    run_and_check(exe, world);
    after = current_mask();
    CHECK(CPU_EQUAL(&after, &process)); /* given back as it was */
  }
  /* Pinned by the user away from the loop's CPU: left there. */
  if (other >= 0) {
    CPU_ZERO(&one);
    CPU_SET(other, &one);
    CHECK(pthread_setaffinity_np(pthread_self(), sizeof one, &one) == 0);
    for (int round = 0; round < 5; round++) {
      run_and_check(exe, world);
      after = current_mask();
      CHECK(CPU_EQUAL(&after, &one));
    }
    CHECK(pthread_setaffinity_np(pthread_self(), sizeof process, &process) == 0);
  }
  pf_attrs_destroy(a);
  pf_executable_destroy(exe);
  pf_graph_destroy(g);
  pf_finalize(ctx);
  printf("mpi_client_cpu: ok\n");
  return 0;
}
