/* An idle job must not burn CPU: after one execution, rank 0 sleeps 3 s and
 * measures the CPU time every rank of this job used meanwhile (from
 * /proc/PID/stat of the processes running this executable). */
#define _GNU_SOURCE
#include <dirent.h>
#include <pathflow.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* utime + stime, in clock ticks, of every process whose comm is `comm`. */
static long long cpu_ticks(const char *comm, int *nproc) {
  DIR *d = opendir("/proc");
  struct dirent *e;
  long long total = 0;
  *nproc = 0;
  while (d && (e = readdir(d)) != NULL) {
    char path[300], buf[1024], name[64];
    FILE *f;
    unsigned long ut = 0, st = 0;
    if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
    snprintf(path, sizeof path, "/proc/%s/stat", e->d_name);
    if ((f = fopen(path, "r")) == NULL) continue;
    if (fgets(buf, sizeof buf, f) != NULL) {
      char *open = strchr(buf, '('), *close = strrchr(buf, ')');
      if (open && close && close > open && (size_t)(close - open - 1) < sizeof name) {
        memcpy(name, open + 1, (size_t)(close - open - 1));
        name[close - open - 1] = '\0';
        /* fields after ")": state(3) ... utime(14) stime(15) */
        if (strcmp(name, comm) == 0 &&
            sscanf(close + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) == 2) {
          total += (long long)(ut + st);
          (*nproc)++;
        }
      }
    }
    fclose(f);
  }
  if (d) closedir(d);
  return total;
}

int main(int argc, char **argv) {
  pf_context *ctx;
  pf_graph *g;
  pf_executable *exe;
  pf_future *f;
  pf_slice_t s;
  pf_value_t v;
  pf_attrs *a;
  int64_t shape[1] = {4};
  int n0, n1;
  long long t0, t1;
  double seconds = 3.0, share;
  if (pf_init(&argc, &argv, &(pf_init_options){.cpu_devices = 1}, &ctx)) return 3;
  /* One execution over every rank first, so each has been busy once. */
  pf_graph_create(ctx, &g);
  pf_graph_slice(g, PF_DEVICE_CPU, pf_world_size(ctx), &s);
  pf_attrs_create(&a);
  pf_attrs_set_ints(a, "shape", shape, 1);
  pf_graph_program(g, &(pf_program_desc){.kernel = "fill", .attrs = a, .slice = s}, &v, NULL);
  pf_graph_output(g, "v", v);
  if (pf_compile(g, &exe) || pf_execute(exe, 0, NULL, &f) || pf_future_wait(f)) return 3;
  pf_future_destroy(f);
  sleep(1); /* past the spin window */
  t0 = cpu_ticks("mpi_idle", &n0);
  usleep((useconds_t)(seconds * 1e6));
  t1 = cpu_ticks("mpi_idle", &n1);
  share = (double)(t1 - t0) / (double)sysconf(_SC_CLK_TCK) / seconds;
  printf("idle: %d ranks used %.1f%% of one core over %.0f s\n", n1, 100 * share, seconds);
  pf_attrs_destroy(a);
  pf_executable_destroy(exe);
  pf_graph_destroy(g);
  pf_finalize(ctx);
  if (n1 != pf_world_size(ctx) && n1 < 1) return 4;
  /* Near 0%: allow 5% of one core for the whole job (heartbeats, timers). */
  return share < 0.05 ? 0 : 1;
}
