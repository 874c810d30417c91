/* `pathflow cluster`: checks a cluster description (docs/cluster-format.md)
 * and prints what it describes, or prints a preset's file. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/diag.h"
#include "base/file.h"
#include "sim/cluster.h"
#include "tools/tool.h"

/* 1536 -> "1.54 k"; with the unit after. */
static const char *si(double v, const char *unit, char *buf, size_t len) {
  static const char *const prefix[] = {"", "K", "M", "G", "T", "P", "E"};
  int p = 0;
  while (v >= 1000 && p < 6) {
    v /= 1000;
    p++;
  }
  snprintf(buf, len, "%.4g %s%s", v, prefix[p], unit);
  return buf;
}

static const char *ns_str(int64_t ns, char *buf, size_t len) {
  if (ns >= 1000000) snprintf(buf, len, "%.4g ms", (double)ns / 1e6);
  else if (ns >= 1000) snprintf(buf, len, "%.4g us", (double)ns / 1e3);
  else snprintf(buf, len, "%lld ns", (long long)ns);
  return buf;
}

/* Memory sizes are binary when they are whole MiB: "32 GiB", not "34.36 GB". */
static const char *mem_str(int64_t bytes, char *buf, size_t len) {
  static const char *const unit[] = {"MiB", "GiB", "TiB", "PiB"};
  int u = 0;
  if (bytes % (1 << 20) != 0) return si((double)bytes, "B", buf, len);
  double v = (double)bytes / (1 << 20);
  while (v >= 1024 && u < 3) {
    v /= 1024;
    u++;
  }
  snprintf(buf, len, "%.4g %s", v, unit[u]);
  return buf;
}

static void print_link(FILE *f, const char *what, const pf_sim_link *l) {
  char a[32], b[32], c[32];
  fprintf(f, "  %-11s %s (%s) each way, latency %s\n", what, si(l->bandwidth, "B/s", a, sizeof a),
          si(l->bandwidth * 8, "b/s", b, sizeof b), ns_str(l->latency_ns, c, sizeof c));
}

static void summary(FILE *f, const pf_sim_cluster *cl, const char *source) {
  char a[32], b[32], c[32];
  fprintf(f, "cluster %s (%s): %lld host%s, %lld ranks, %lld devices, %d island%s\n", cl->name, source,
          (long long)cl->hosts, cl->hosts > 1 ? "s" : "", (long long)cl->ranks, (long long)cl->devices, cl->islands,
          cl->islands > 1 ? "s" : "");
  for (int i = 0; i < cl->n_groups; i++) {
    const pf_sim_host_group *g = &cl->groups[i];
    fprintf(f, "  hosts %lld-%lld: %d rank%s x %d %s (island %d), devices %lld-%lld\n", (long long)g->first_host,
            (long long)(g->first_host + g->hosts - 1), g->ranks_per_host, g->ranks_per_host > 1 ? "s" : "",
            g->devices_per_rank, cl->types[g->type].name, g->island, (long long)g->first_device,
            (long long)(g->first_device + g->hosts * g->ranks_per_host * g->devices_per_rank - 1));
  }
  for (int t = 0; t < cl->n_types; t++) {
    const pf_sim_device_type *ty = &cl->types[t];
    fprintf(f, "  device %s: %s, memory %s at %s, peak", ty->name, pf_sim_device_kind_name(ty->kind),
            mem_str(ty->memory, a, sizeof a), si(ty->memory_bandwidth, "B/s", b, sizeof b));
    for (int d = 0; d < PF_DTYPE_COUNT; d++)
      if (ty->flops[d] > 0) fprintf(f, " %s %s", pf_dtype_name((pf_dtype)d), si(ty->flops[d], "FLOP/s", c, sizeof c));
    fputc('\n', f);
  }
  print_link(f, "intra-host", &cl->intra_host);
  fprintf(f, "  NICs        %d a host\n", cl->nics_per_host);
  print_link(f, "NIC", &cl->nic);
  if (cl->islands > 1) {
    print_link(f, "DCN", &cl->dcn);
    if (cl->dcn_island_bandwidth > 0)
      fprintf(f, "  DCN island uplink %s each way\n", si(cl->dcn_island_bandwidth, "B/s", a, sizeof a));
  }
  fprintf(f, "  runtime     op dispatch %s, transfer %s, step %s\n", ns_str(cl->op_dispatch_ns, a, sizeof a),
          ns_str(cl->transfer_ns, b, sizeof b), ns_str(cl->step_ns, c, sizeof c));
  fprintf(f, "  controller  %s a run sent\n", ns_str(cl->dispatch_ns, a, sizeof a));
  for (int k = 0; k < cl->n_transfer_points; k++)
    fprintf(f, "%s%s %s%s", k ? "" : "  per message ", si((double)cl->transfer_point_bytes[k], "B", a, sizeof a),
            ns_str(cl->transfer_point_ns[k], b, sizeof b), k + 1 < cl->n_transfer_points ? ", " : "\n");
}

int tool_cluster_cmd(int argc, char **argv) {
  pf_sim_cluster *cl;
  pf_diag d;
  const char *names;
  if (argc != 4 || (strcmp(argv[2], "check") != 0 && strcmp(argv[2], "show") != 0)) return -1;
  if (strcmp(argv[2], "show") == 0) {
    const char *text = pf_sim_cluster_preset_text(argv[3], &names);
    char path[4096];
    if (text == NULL) {
      fprintf(stderr, "pathflow cluster show: no preset \"%s\" (presets: %s)\n", argv[3], names);
      return 1;
    }
    /* "local" is what calibration measured, when it did (the preset the
     * simulator loads): that file, not the placeholder figures. */
    if (pf_sim_local_cluster_file(argv[3], path, sizeof path) != NULL) {
      uint8_t *buf;
      size_t len;
      pf_diag_init(&d);
      if (pf_file_read(path, &buf, &len, &d) != 0) {
        fprintf(stderr, "pathflow cluster show: %s\n", d.msg);
        return 1;
      }
      fwrite(buf, 1, len, stdout);
      free(buf);
      fprintf(stderr, "pathflow cluster show: local is %s (written by pathflow calibrate)\n", path);
      return 0;
    }
    fputs(text, stdout);
    return 0;
  }
  pf_diag_init(&d);
  if (pf_sim_cluster_load(argv[3], &cl, &d) != 0) {
    fprintf(stderr, "pathflow cluster check: %s\n", d.msg);
    return 1;
  }
  {
    char path[4096], source[4200] = "preset";
    if (pf_sim_local_cluster_file(argv[3], path, sizeof path) != NULL) /* what the preset read */
      snprintf(source, sizeof source, "preset, from %s", path);
    summary(stdout, cl, pf_sim_cluster_preset_text(argv[3], NULL) ? source : argv[3]);
  }
  pf_sim_cluster_free(cl);
  return 0;
}
