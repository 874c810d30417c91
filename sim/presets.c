/* The built-in clusters, in the file format itself so that the loader checks
 * them like any file. The figures and their sources are in
 * docs/cluster-format.md; keep the two in step. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sim/cluster.h"

/* This machine, when `pathflow calibrate` has not written its file
 * (pf_sim_local_cluster_path): the op dispatch cost is bench/overhead's
 * figure (docs/performance.md), the rest are rough guesses for a small
 * 2-core VM. */
static const char local_json[] =
    "{\n"
    "  \"version\": 1,\n"
    "  \"name\": \"local\",\n"
    "  \"device_types\": {\n"
    "    \"core\": {\"kind\": \"cpu\", \"flops\": {\"f32\": \"50GFLOP/s\", \"f64\": \"25GFLOP/s\"},\n"
    "             \"memory\": \"4GiB\", \"memory_bandwidth\": \"10GB/s\"}\n"
    "  },\n"
    "  \"hosts\": [{\"count\": 1, \"ranks_per_host\": 2, \"devices_per_rank\": 1}],\n"
    "  \"links\": {\n"
    "    \"intra_host\": {\"bandwidth\": \"5GB/s\", \"latency\": \"1us\"},\n"
    "    \"nic\": {\"bandwidth\": \"10Gb/s\", \"latency\": \"20us\"}\n"
    "  },\n"
    "  \"runtime\": {\"op_dispatch\": \"0.07us\", \"transfer\": \"5us\", \"step\": \"30us\"}\n"
    "}\n";

/* 32 DGX H100 (one SuperPOD scalable unit, 256 GPUs): 8 H100 SXM5 a host on
 * NVLink 4 through NVSwitch, 8 ConnectX-7 400 Gb/s InfiniBand ports a host,
 * one per GPU. */
static const char dgx_h100_json[] =
    "{\n"
    "  \"version\": 1,\n"
    "  \"name\": \"dgx-h100\",\n"
    "  \"device_types\": {\n"
    "    \"h100-sxm5\": {\"kind\": \"gpu\",\n"
    "                  \"flops\": {\"f64\": \"67TFLOP/s\", \"f32\": \"67TFLOP/s\",\n"
    "                            \"bf16\": \"989TFLOP/s\", \"f16\": \"989TFLOP/s\"},\n"
    "                  \"memory\": \"80GB\", \"memory_bandwidth\": \"3.35TB/s\"}\n"
    "  },\n"
    "  \"hosts\": [{\"count\": 32, \"ranks_per_host\": 8, \"devices_per_rank\": 1}],\n"
    "  \"links\": {\n"
    "    \"intra_host\": {\"bandwidth\": \"450GB/s\", \"latency\": \"2us\"},\n"
    "    \"nic\": {\"count\": 8, \"bandwidth\": \"400Gb/s\", \"latency\": \"5us\"}\n"
    "  },\n"
    "  \"runtime\": {\"op_dispatch\": \"5us\", \"transfer\": \"10us\", \"step\": \"50us\"}\n"
    "}\n";

/* PaLM 540B's training layout: 2 TPU v4 pods of 3,072 chips (768 hosts of 4
 * chips) each, ICI inside a pod, the data-centre network between them. */
static const char palm_json[] =
    "{\n"
    "  \"version\": 1,\n"
    "  \"name\": \"palm\",\n"
    "  \"device_types\": {\n"
    "    \"tpu-v4\": {\"kind\": \"tpu\",\n"
    "               \"flops\": {\"bf16\": \"275TFLOP/s\", \"f32\": \"45.8TFLOP/s\"},\n"
    "               \"memory\": \"32GiB\", \"memory_bandwidth\": \"1200GB/s\"}\n"
    "  },\n"
    "  \"hosts\": [\n"
    "    {\"count\": 768, \"ranks_per_host\": 1, \"devices_per_rank\": 4, \"island\": 0},\n"
    "    {\"count\": 768, \"ranks_per_host\": 1, \"devices_per_rank\": 4, \"island\": 1}\n"
    "  ],\n"
    "  \"links\": {\n"
    "    \"intra_host\": {\"bandwidth\": \"268GB/s\", \"latency\": \"1us\"},\n"
    "    \"nic\": {\"count\": 4, \"bandwidth\": \"268GB/s\", \"latency\": \"2us\"},\n"
    "    \"dcn\": {\"bandwidth\": \"100Gb/s\", \"latency\": \"10us\"}\n"
    "  },\n"
    "  \"runtime\": {\"op_dispatch\": \"5us\", \"transfer\": \"10us\", \"step\": \"100us\"}\n"
    "}\n";

static const struct {
  const char *name, *text;
} presets[] = {{"local", local_json}, {"dgx-h100", dgx_h100_json}, {"palm", palm_json}};

const char *pf_sim_cluster_preset_text(const char *name, const char **names) {
  if (names) *names = "local, dgx-h100, palm";
  for (size_t i = 0; i < sizeof presets / sizeof presets[0]; i++)
    if (name != NULL && strcmp(presets[i].name, name) == 0) return presets[i].text;
  return NULL;
}

const char *pf_sim_local_cluster_file(const char *name, char *buf, size_t len) {
  if (name == NULL || strcmp(name, "local") != 0 || pf_sim_local_cluster_path(buf, len) == NULL)
    return NULL;
  return access(buf, F_OK) == 0 ? buf : NULL;
}

const char *pf_sim_local_cluster_path(char *buf, size_t len) {
  const char *env = getenv("PATHFLOW_LOCAL_CLUSTER"), *xdg = getenv("XDG_CONFIG_HOME"),
             *home = getenv("HOME");
  int n;
  if (env != NULL && env[0] != '\0') n = snprintf(buf, len, "%s", env);
  else if (xdg != NULL && xdg[0] != '\0') n = snprintf(buf, len, "%s/pathflow/local.json", xdg);
  else if (home != NULL && home[0] != '\0') n = snprintf(buf, len, "%s/.config/pathflow/local.json", home);
  else return NULL;
  return n >= 0 && (size_t)n < len ? buf : NULL;
}
