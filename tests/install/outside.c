/* An outside program: built only against an installed pathflow. */
#include <pathflow.h>
#include <stdio.h>

int main(void) {
  pf_context *ctx;
  pf_graph *g;
  pf_executable *exe;
  pf_future *f;
  pf_tensor *a, *out;
  pf_slice_t s;
  pf_value_t va, vsum;
  pf_spec spec = pf_spec_1d(PF_F64, 3);
  int rc;
  const char *version;
  if (pf_version(&version) != PATHFLOW_VERSION_HEX) {
    fprintf(stderr, "library %s is not the version of the headers (%d)\n", version,
            PATHFLOW_VERSION_HEX);
    return 1;
  }
  if ((rc = pf_init(NULL, NULL, &(pf_init_options){.cpu_devices = 1}, &ctx)) != 0) {
    fprintf(stderr, "pf_init: %s\n", pf_strerror(rc));
    return 1;
  }
  if (pf_graph_create(ctx, &g) || pf_graph_slice(g, PF_DEVICE_CPU, 1, &s) ||
      pf_graph_input(g, "a", &spec, s, pf_replicated(), &va) ||
      pf_graph_program(g, &(pf_program_desc){.kernel = "add", .slice = s, .n_in = 2,
                                             .in = (pf_value_t[]){va, va}},
                       &vsum, NULL) ||
      pf_graph_output(g, "sum", vsum) || pf_compile(g, &exe) ||
      pf_tensor_create(&spec, &a)) {
    fprintf(stderr, "build: %s\n", pf_last_error(ctx));
    return 1;
  }
  for (int i = 0; i < 3; i++) ((double *)pf_tensor_data(a))[i] = i + 0.5;
  if (pf_execute(exe, 1, &(pf_feed){.name = "a", .tensor = a}, &f) ||
      pf_future_wait(f) || pf_future_fetch(f, "sum", &out)) {
    fprintf(stderr, "run: %s\n", pf_last_error(ctx));
    return 1;
  }
  const double *o = pf_tensor_data(out);
  rc = !(o[0] == 1.0 && o[1] == 3.0 && o[2] == 5.0);
  printf("outside program: sum = [%g %g %g] %s\n", o[0], o[1], o[2], rc ? "WRONG" : "ok");
  pf_tensor_destroy(a);
  pf_tensor_destroy(out);
  pf_future_destroy(f);
  pf_executable_destroy(exe);
  pf_graph_destroy(g);
  pf_finalize(ctx);
  return rc;
}
