/* pathflow-worker: an executor for MPMD launches.
 *
 *   mpirun -np 1 ./my_app : -np 3 pathflow-worker --kernels ./libmykernels.so
 *
 * The worker holds no user program: it loads kernels from plugins, then
 * serves the controller (rank 0, the user's program) until it finalizes. */
#include <pathflow.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *f) {
  fprintf(f,
          "usage: pathflow-worker [--kernels PLUGIN.so]...\n"
          "  Serves as a pathflow executor in an mpirun job whose rank 0 is the\n"
          "  controller program. --kernels loads a kernels plugin (a shared\n"
          "  library exporting pathflow_kernels_init); repeat for several.\n"
          "  PATHFLOW_KERNELS=a.so:b.so does the same. See docs/cli.md.\n");
}

int main(int argc, char **argv) {
  const char **plugins = calloc((size_t)argc + 1, sizeof *plugins);
  pf_context *ctx = NULL;
  int n = 0, rc;
  if (plugins == NULL) return 1;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--kernels") == 0 && i + 1 < argc) {
      plugins[n++] = argv[++i];
    } else if (strncmp(argv[i], "--kernels=", 10) == 0) {
      plugins[n++] = argv[i] + 10;
    } else if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
      usage(stdout);
      free(plugins);
      return 0;
    } else {
      char why[300];
      usage(stderr);
      snprintf(why, sizeof why, "pathflow-worker: unknown argument \"%.200s\"", argv[i]);
      free(plugins);
      /* In an mpirun job, through MPI (pf_abort says why); else exit(2). */
      pf_abort(2, why);
    }
  }
  /* Executor ranks do not return from pf_init: they serve, then exit. */
  rc = pf_init(&argc, &argv, &(pf_init_options){.kernel_plugins = plugins}, &ctx);
  free(plugins);
  if (rc != 0) return 1;
  fprintf(stderr,
          "pathflow-worker: this process is rank 0, the controller; start your "
          "program first: mpirun -np 1 ./app : -np N pathflow-worker ...\n");
  pf_finalize(ctx);
  return 2;
}
