/* A step that stalls on one rank: with PATHFLOW_WATCHDOG_S=1 every rank
 * must print what it waits on (tests/mpi/watchdog.sh checks the output);
 * the step then completes normally. Usage:
 *   mpi_stall PLUGIN.so [KERNEL [MS]]
 * runs KERNEL (default test.sleep_shard, MS 3500 ms on the last shard)
 * followed by an allgather: tests/mpi/hang.sh makes the kernel sleep for
 * an hour, tests/mpi/crash.sh runs test.segv_shard. */
#include <pathflow.h>
#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv) {
  const char *plugins[] = {argc > 1 ? argv[1] : "", NULL};
  pf_context *ctx;
  pf_graph *g;
  pf_executable *exe;
  pf_future *f;
  pf_tensor *x;
  pf_slice_t s;
  pf_value_t vx, vy, vz;
  pf_attrs *a;
  int world, rc;
  const char *kernel = argc > 2 ? argv[2] : "test.sleep_shard";
  long long ms = argc > 3 ? atoll(argv[3]) : 3500;
  if (pf_init(&argc, &argv, &(pf_init_options){.cpu_devices = 1, .kernel_plugins = plugins}, &ctx))
    return 3;
  world = pf_world_size(ctx);
  pf_spec spec = pf_spec_1d(PF_F64, 8 * world);
  pf_graph_create(ctx, &g);
  pf_graph_slice(g, PF_DEVICE_CPU, world, &s);
  pf_graph_input(g, "x", &spec, s, pf_split(0), &vx);
  pf_attrs_create(&a);
  pf_attrs_set_int(a, "shard", world - 1);
  pf_attrs_set_int(a, "ms", ms);
  pf_graph_program(g, &(pf_program_desc){.name = "slow", .kernel = kernel, .attrs = a,
                                          .slice = s, .n_in = 1, .in = &vx},
                   &vy, NULL);
  /* Everyone then needs everyone's block: ranks wait on the slow one. */
  pf_graph_collective(g, &(pf_collective_desc){.name = "gather", .kind = PF_ALLGATHER, .slice = s,
                                                .in = vy, .axis = 0},
                      &vz, NULL);
  pf_graph_output(g, "z", vz);
  if (pf_compile(g, &exe) != 0) {
    fprintf(stderr, "compile failed: %s\n", pf_last_error(ctx));
    return 3;
  }
  pf_tensor_create(&spec, &x);
  pf_execute(exe, 1, &(pf_feed){.name = "x", .tensor = x}, &f);
  rc = pf_future_wait(f);
  printf("mpi_stall: step finished with %s\n", pf_errname(rc));
  pf_future_destroy(f);
  pf_executable_destroy(exe);
  pf_graph_destroy(g);
  pf_attrs_destroy(a);
  pf_tensor_destroy(x);
  pf_finalize(ctx);
  return rc == 0 ? 0 : 1;
}
