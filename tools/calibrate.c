/* pathflow calibrate: measures this machine through the real runtime and
 * writes the simulator's `local` cluster file (docs/cluster-format.md,
 * "Calibration").
 *
 * The command starts `mpirun -np 2` of itself (`calibrate --measure OUT`);
 * rank 0 of that job is the controller and times graphs, rank 1 serves
 * inside pf_init. Every figure is a difference of two real runs that differ
 * only in what is measured, so that the constant costs cancel:
 *   op dispatch  a chain of 201 tiny ops against a chain of 1, on device 0
 *   step         two tiny ops on each rank, less their dispatch
 *   flop/s       a chain of matmuls of n x n against one, per size
 *   memory b/w   a chain of adds of n floats against one (bytes as the
 *                kernel's cost function counts them: in + out)
 *   transfer     a value made on device 0 and read on device 1 against the
 *                same made on device 1, over sizes: least squares gives the
 *                fixed part and the bandwidth
 *   allreduce    of 16 bytes over the 2 ranks, less the same graph without
 *                it: a ring of 2 takes 2 link latencies, which splits the
 *                transfer's fixed part into link latency and per-transfer
 *                cost; a 1 MiB allreduce is printed beside the model's time
 * Medians of --reps runs each, after 2 warm-up runs. */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/file.h"
#include "base/util.h"
#include "sim/cluster.h"
#include "tools/calibration.h"
#include "tools/tool.h"
#include "transport/mpi.h"

const char tool_calibrate_usage[] =
    "usage: pathflow calibrate [OUT.json] [--mpirun CMD] [--reps N]\n"
    "  Measures this machine through the real runtime on 2 ranks (per-op and\n"
    "  per-step costs, matmul flop/s and memory bandwidth of the built-in kernels\n"
    "  over sizes, transfer latency and bandwidth, an allreduce) and writes the\n"
    "  simulator's `local` cluster file: OUT.json, or where the `local` preset\n"
    "  looks for it ($PATHFLOW_LOCAL_CLUSTER, else $XDG_CONFIG_HOME/pathflow/\n"
    "  local.json, else ~/.config/pathflow/local.json). --mpirun: the launcher,\n"
    "  run as CMD -np 2 ... (\"mpirun --oversubscribe\"). --reps: timed runs per\n"
    "  graph (9). Takes a few seconds.\n";

/* `pathflow calibrate --measure OUT [--reps N]`, under mpirun. */
static int child(const char *out, int reps) {
  tool_cal c = {.reps = reps};
  tool_figures f = {0};
  pf_diag d;
  int rc = pf_init(NULL, NULL, &(pf_init_options){.cpu_devices = 1}, &c.ctx);
  if (rc != 0) {
    fprintf(stderr, "pathflow calibrate: pf_init: %s\n", pf_strerror(rc));
    return 1;
  }
  /* only rank 0 gets here: the others serve inside pf_init */
  if (pf_world_size(c.ctx) != 2 || pf_device_count(c.ctx, PF_DEVICE_CPU) != 2) {
    fprintf(stderr, "pathflow calibrate: needs 2 ranks of 1 device (got %d ranks, %d devices)\n",
            pf_world_size(c.ctx), pf_device_count(c.ctx, PF_DEVICE_CPU));
    pf_finalize(c.ctx);
    return 1;
  }
  rc = tool_calibration_measure(&c, &f);
  if (rc != 0) fprintf(stderr, "pathflow calibrate: %s (%s)\n", c.why, pf_errname(rc));
  pf_diag_init(&d);
  if (rc == 0 && (rc = tool_calibration_write(out, &f, 2, &d)) != 0)
    fprintf(stderr, "pathflow calibrate: %s\n", d.msg);
  pf_finalize(c.ctx);
  return rc == 0 ? 0 : 1;
}

/* mkdir -p of path's directory. */
static void make_parent(const char *path) {
  char dir[4096];
  snprintf(dir, sizeof dir, "%s", path);
  for (char *p = dir + 1; *p; p++)
    if (*p == '/') {
      *p = '\0';
      mkdir(dir, 0755);
      *p = '/';
    }
}

int tool_calibrate(int argc, char **argv) {
  const char *out = NULL, *mpirun = "mpirun --oversubscribe", *measure_to = NULL;
  char path[4096], where[4096], self[4096], cmd[12288];
  int64_t reps = 9;
  pf_sim_cluster *cl;
  pf_diag d;
  ssize_t n;
  int rc;
  for (int i = 2; i < argc; i++) {
    const char *o = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (strcmp(o, "--help") == 0 || strcmp(o, "-h") == 0) {
      fputs(tool_calibrate_usage, stdout);
      return 0;
    }
    if (o[0] != '-' && out == NULL) {
      out = o;
      continue;
    }
    if (v == NULL) return -1;
    i++;
    if (strcmp(o, "--mpirun") == 0) mpirun = v;
    else if (strcmp(o, "--measure") == 0) measure_to = v;
    else if (strcmp(o, "--reps") != 0) return -1;
    else if (pf_parse_int(v, 1, 256, &reps) != 0) {
      fprintf(stderr, "pathflow calibrate: --reps \"%s\": expected an integer in [1, 256]\n", v);
      return 2;
    }
  }
  if (measure_to) return child(measure_to, (int)reps);
  /* It starts its own job: under mpirun every rank would start one, and
   * Open MPI refuses nested launches with a message that says nothing of
   * this command. */
  if (pf_mpi_launched()) {
    fprintf(stderr, "pathflow calibrate: run it without mpirun: it starts its own job of 2 ranks "
                    "(--mpirun CMD says how)\n");
    return 2;
  }
  if (out == NULL) {
    if ((out = pf_sim_local_cluster_path(path, sizeof path)) == NULL) {
      fprintf(stderr, "pathflow calibrate: no OUT.json given and neither PATHFLOW_LOCAL_CLUSTER, "
                      "XDG_CONFIG_HOME nor HOME is set\n");
      return 2;
    }
    make_parent(out);
  }
  if ((n = readlink("/proc/self/exe", self, sizeof self - 1)) < 0) {
    fprintf(stderr, "pathflow calibrate: cannot find my own executable (/proc/self/exe)\n");
    return 1;
  }
  self[n] = '\0';
  if (strchr(self, '\'') || strchr(out, '\'')) {
    fprintf(stderr, "pathflow calibrate: paths with a quote (') are not supported\n");
    return 2;
  }
  /* One device a rank, whatever the binding gives: the file describes that. */
  setenv("PATHFLOW_CPU_DEVICES", "1", 1);
  snprintf(cmd, sizeof cmd, "%s -np 2 '%s' calibrate --measure '%s' --reps %" PRId64, mpirun,
           self, out, reps);
  printf("running: %s\n", cmd);
  fflush(stdout);
  if ((rc = system(cmd)) != 0) {
    fprintf(stderr, "pathflow calibrate: the measuring job failed (status %d): %s\n", rc, cmd);
    return 1;
  }
  pf_diag_init(&d);
  if ((rc = pf_sim_cluster_load_file(out, &cl, &d)) != 0) {
    fprintf(stderr, "pathflow calibrate: the file written does not load: %s\n", d.msg);
    return 1;
  }
  printf("wrote %s: cluster %s, %" PRId64 " devices (the `local` preset reads %s)\n", out,
         cl->name, cl->devices,
         pf_sim_local_cluster_path(where, sizeof where) ? where : "(no path: HOME unset)");
  pf_sim_cluster_free(cl);
  return 0;
}
