/* A rank that dies mid-step must end the whole job with an error naming
 * it, never a hang: tests/mpi/death.sh runs this and checks how it ends.
 * Usage: mpi_death PLUGIN.so */
#include <pathflow.h>
#include <stdio.h>

int main(int argc, char **argv) {
  const char *plugins[] = {argc > 1 ? argv[1] : "", NULL};
  pf_context *ctx;
  pf_graph *g;
  pf_executable *exe;
  pf_future *f;
  pf_tensor *x;
  pf_slice_t s;
  pf_value_t vx, vy;
  pf_attrs *a;
  int world, devs[64];
  if (pf_init(&argc, &argv, &(pf_init_options){.cpu_devices = 1, .kernel_plugins = plugins}, &ctx))
    return 3;
  world = pf_world_size(ctx);
  pf_spec spec = pf_spec_1d(PF_F64, 8 * world);
  for (int i = 0; i < world; i++) devs[i] = i;
  pf_graph_create(ctx, &g);
  pf_graph_slice(g, PF_DEVICE_CPU, world, &s);
  pf_graph_slice_pin(g, s, devs);
  pf_graph_input(g, "x", &spec, s, pf_split(0), &vx);
  pf_attrs_create(&a);
  pf_attrs_set_int(a, "shard", world - 1);
  pf_graph_program(g, &(pf_program_desc){.name = "die", .kernel = "test.die_shard", .attrs = a,
                                          .slice = s, .n_in = 1, .in = &vx},
                   &vy, NULL);
  pf_graph_output(g, "y", vy);
  if (pf_compile(g, &exe) != 0) {
    fprintf(stderr, "compile failed: %s\n", pf_last_error(ctx));
    return 3;
  }
  pf_tensor_create(&spec, &x);
  pf_execute(exe, 1, &(pf_feed){.name = "x", .tensor = x}, &f);
  pf_future_wait(f);
  /* Reaching this line means the job survived a dead rank: wrong. */
  printf("mpi_death: the job went on after rank %d died\n", world - 1);
  return 0;
}
