/* The device plugin loader: the runtime's side of runtime/device_plugin.h
 * (the host table plugins call back through) and the choice of plugins
 * (runtime/device_plugins.h). */
#define _GNU_SOURCE /* dladdr */
#include "runtime/device_plugins.h"

#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/util.h"
#include "runtime/executor.h"
#include "runtime/storage.h"

#define CUDA_PLUGIN "libpathflow_cuda.so"
/* Present when an NVIDIA kernel driver is loaded. */
#define NVIDIA_DRIVER "/proc/driver/nvidia/version"

/* ---- the host table ------------------------------------------------------- */

/* pf_executor_step_fail is variadic; the table's entry takes the message a
 * plugin formatted. */
static void host_step_fail(pf_step *s, int code, const char *message) {
  pf_executor_step_fail(s, code, "%s", message ? message : "");
}

static const pf_device_host host_table = {
    .abi = PF_DEVICE_PLUGIN_ABI,
    .step_device_queue = pf_step_device_queue,
    .step_op_ready = pf_step_op_ready,
    .step_op_pending = pf_step_op_pending,
    .step_run_op = pf_step_run_op,
    .step_op_done = pf_step_op_done,
    .step_part_done = pf_step_part_done,
    .step_part = pf_step_part,
    .step_clock = pf_step_clock,
    .step_plan = pf_step_plan,
    .step_fail = host_step_fail,
    .running_bind = pf_running_bind,
    .storage_new = pf_storage_new,
    .storage_wrap = pf_storage_wrap,
    .storage_ref = pf_storage_ref,
    .storage_unref = pf_storage_unref,
    .registry_find = pf_registry_find,
    .registry_add = pf_registry_add,
};

const pf_device_host *pf_device_host_table(void) { return &host_table; }

/* dlerror's message, which may be NULL after a failed dlopen or dlsym. */
static const char *dl_why(void) {
  const char *e = dlerror();
  return e ? e : "no reason given";
}

/* ---- the devices of one rank ----------------------------------------------- */

void pf_plugin_devices_free(pf_plugin_devices *p) {
  if (p == NULL) return;
  for (int i = 0; i < p->n; i++)
    if (p->devices[i] != NULL) p->devices[i]->ops->destroy(p->devices[i]);
  free(p->devices);
  p->devices = NULL;
  p->n = 0;
}

/* Checks what plugin `name` returned (devices numbered from first, of a
 * known kind, at most max) and appends its devices to out, which takes
 * them over. On error, destroys them. */
static int take_devices(const char *name, pf_device_plugin_result *res, int first, int max,
                        pf_plugin_devices *out, pf_diag *d) {
  pf_device **grown;
  int rc = 0;
  if (res->n_devices < 0 || res->n_devices > max)
    rc = pf_diag_error(d, PF_EINVAL, "device plugin %s: started %d devices, at most %d allowed",
                       name, res->n_devices, max);
  for (int i = 0; rc == 0 && i < res->n_devices; i++) {
    pf_device_info info;
    if (res->devices[i] == NULL || res->devices[i]->ops == NULL) {
      rc = pf_diag_error(d, PF_EINVAL, "device plugin %s: device %d of %d is NULL", name, i,
                         res->n_devices);
      break;
    }
    res->devices[i]->ops->info(res->devices[i], &info);
    if ((int)info.kind < 0 || info.kind >= PF_DEVICE_KIND_COUNT || info.index != first + i ||
        info.memory_bytes < 0 || (info.stage & ~(uint32_t)PF_STAGE_ALL) != 0)
      rc = pf_diag_error(d, PF_EINVAL,
                         "device plugin %s: device %d reports kind %d, index %d (expected %d), "
                         "memory %lld, stage %#x: not a valid device",
                         name, i, (int)info.kind, info.index, first + i,
                         (long long)info.memory_bytes, info.stage);
  }
  if (rc == 0 && res->n_devices > 0) {
    grown = realloc(out->devices, (size_t)(out->n + res->n_devices) * sizeof *grown);
    if (grown == NULL) {
      rc = pf_diag_error(d, PF_ENOMEM, "device plugin %s: out of memory", name);
    } else {
      out->devices = grown;
      memcpy(out->devices + out->n, res->devices, (size_t)res->n_devices * sizeof *grown);
      out->n += res->n_devices;
      return 0;
    }
  }
  for (int i = 0; rc != 0 && i < res->n_devices && i < PF_DEVICE_PLUGIN_MAX; i++)
    if (res->devices[i] != NULL && res->devices[i]->ops != NULL)
      res->devices[i]->ops->destroy(res->devices[i]);
  return rc;
}

/* Runs the open function of the plugin at `path` (handle lib) for one
 * rank; `what` names it in messages ("PATHFLOW_DEVICE_PLUGINS: path"). */
static int run_plugin(void *lib, const char *what, int required,
                      const pf_device_plugins_config *cfg, pf_plugin_devices *out, pf_diag *d) {
  pf_device_plugin_open_fn open_fn;
  pf_device_plugin_args args;
  pf_device_plugin_result *res;
  char err[PF_DIAG_MSG_MAX] = "";
  int first = cfg->first_index + out->n, max = PF_RANK_DEVICES_MAX - first, rc;
  dlerror();
  *(void **)&open_fn = dlsym(lib, PF_DEVICE_PLUGIN_SYMBOL);
  if (open_fn == NULL) {
    return pf_diag_error(d, PF_ENOTFOUND, "%s: no symbol %s (%s)", what, PF_DEVICE_PLUGIN_SYMBOL,
                         dl_why());
  }
  if (max <= 0)
    return pf_diag_error(d, PF_EINVAL,
                         "%s: rank %d has %d devices already, the most a rank may have", what,
                         cfg->rank, first);
  memset(&args, 0, sizeof args);
  args.rank = cfg->rank;
  args.first_index = first;
  args.max_devices = PF_MINOF(max, PF_DEVICE_PLUGIN_MAX);
  args.required = required;
  args.clock = pf_clock_real();
  args.registry = cfg->registry;
  args.transport_cuda_memory = cfg->transport_cuda_memory;
  /* ~8 KiB: not on the stack of a thread that may be small. */
  if ((res = calloc(1, sizeof *res)) == NULL)
    return pf_diag_error(d, PF_ENOMEM, "%s: out of memory", what);
  rc = open_fn(&host_table, &args, res, err, sizeof err);
  err[sizeof err - 1] = '\0';
  if (rc != 0) {
    pf_diag_error(d, rc, "%s: %s", what, err[0] ? err : pf_strerror(rc));
  } else if ((rc = take_devices(what, res, first, args.max_devices, out, d)) == 0 && required &&
             res->n_devices == 0) {
    rc = pf_diag_error(d, PF_ENOTFOUND, "%s: started no device", what);
  }
  free(res);
  return rc;
}

/* PATHFLOW_CUDA: -1 (unset, empty or "auto"), 0 or 1. */
static int cuda_mode(pf_diag *d, int *out) {
  const char *v = getenv("PATHFLOW_CUDA");
  if (v == NULL || *v == '\0' || strcmp(v, "auto") == 0)
    *out = -1;
  else if (strcmp(v, "0") == 0 || strcmp(v, "1") == 0)
    *out = v[0] - '0';
  else
    return pf_diag_error(d, PF_EINVAL, "PATHFLOW_CUDA=%.100s: expected 0, 1 or auto", v);
  return 0;
}

/* The directory libpathflow was loaded from (the program's, when it is
 * linked in statically), with a trailing '/'; "" if unknown. */
static void own_dir(char *buf, size_t n) {
  Dl_info info;
  const char *slash;
  buf[0] = '\0';
  if (dladdr((void *)pf_device_plugins_start, &info) == 0 || info.dli_fname == NULL) return;
  if ((slash = strrchr(info.dli_fname, '/')) == NULL) return;
  if ((size_t)(slash - info.dli_fname) + 2 > n) return;
  memcpy(buf, info.dli_fname, (size_t)(slash - info.dli_fname) + 1);
  buf[slash - info.dli_fname + 1] = '\0';
}

/* Opens the CUDA plugin: beside libpathflow, else by name on the library
 * path. NULL when neither opens: why (n bytes) then says what was tried,
 * and *present is 1 when the file beside libpathflow exists (and did not
 * open: a broken install, not a machine without the plugin). */
static void *open_cuda_plugin(char *path, size_t path_len, char *why, size_t n, int *present) {
  char dir[4096];
  void *lib;
  *present = 0;
  own_dir(dir, sizeof dir);
  snprintf(path, path_len, "%s%s", dir, CUDA_PLUGIN);
  if (dir[0] && access(path, F_OK) == 0) {
    if ((lib = dlopen(path, RTLD_NOW | RTLD_LOCAL)) != NULL) return lib;
    *present = 1;
    snprintf(why, n, "%s", dl_why());
    return NULL;
  }
  snprintf(path, path_len, "%s", CUDA_PLUGIN);
  if ((lib = dlopen(CUDA_PLUGIN, RTLD_NOW | RTLD_LOCAL)) != NULL) return lib;
  snprintf(why, n, "not in %s nor on the library path (%s)",
           dir[0] ? dir : "libpathflow's directory", dl_why());
  return NULL;
}

int pf_device_plugins_start(const pf_device_plugins_config *cfg, pf_plugin_devices *out,
                            pf_diag *d) {
  const char *list = getenv("PATHFLOW_DEVICE_PLUGINS");
  void *listed[64];
  int n_listed = 0, mode = -1, rc;
  memset(out, 0, sizeof *out);
  if ((rc = cuda_mode(d, &mode)) != 0) return rc;
  if (list != NULL && *list != '\0') {
    char *copy = pf_strdup(list), *save = NULL;
    if (copy == NULL) return pf_diag_error(d, PF_ENOMEM, "PATHFLOW_DEVICE_PLUGINS: out of memory");
    for (char *p = strtok_r(copy, ":", &save); p != NULL && rc == 0;
         p = strtok_r(NULL, ":", &save)) {
      char what[PF_DIAG_MSG_MAX / 2];
      void *lib;
      snprintf(what, sizeof what, "PATHFLOW_DEVICE_PLUGINS: %s", p);
      if ((lib = dlopen(p, RTLD_NOW | RTLD_LOCAL)) == NULL) {
        rc = pf_diag_error(d, PF_ENOTFOUND, "%s: %s", what, dl_why());
        break;
      }
      if (n_listed == (int)PF_ARRAY_LEN(listed)) {
        rc = pf_diag_error(d, PF_EINVAL, "%s: more than %d plugins listed", what,
                           (int)PF_ARRAY_LEN(listed));
        break;
      }
      listed[n_listed++] = lib;
      rc = run_plugin(lib, what, 1, cfg, out, d);
    }
    free(copy);
  }
  if (rc == 0 && (mode == 1 || (mode == -1 && access(NVIDIA_DRIVER, F_OK) == 0))) {
    char path[4200], why[PF_DIAG_MSG_MAX / 2] = "", what[PF_DIAG_MSG_MAX];
    int present, again = 0;
    void *lib = open_cuda_plugin(path, sizeof path, why, sizeof why, &present);
    /* Listed in PATHFLOW_DEVICE_PLUGINS too: its devices are started. */
    for (int i = 0; lib != NULL && i < n_listed; i++) again |= listed[i] == lib;
    if (lib == NULL && mode == 1) {
      rc = pf_diag_error(d, PF_ENOTFOUND,
                         "PATHFLOW_CUDA=1 but the CUDA plugin %s did not open: %s", CUDA_PLUGIN,
                         why);
    } else if (lib == NULL && present) {
      /* Auto: the GPUs are skipped, but a broken install should not pass
       * unnoticed. Once per process. */
      static int warned;
      if (!warned) {
        warned = 1;
        fprintf(stderr, "pathflow: warning: no GPU devices: %s did not open: %s\n", path, why);
      }
    } else if (lib != NULL && !again) {
      snprintf(what, sizeof what, "PATHFLOW_CUDA=%s %.400s",
               mode == 1 ? "1 but the CUDA plugin" : "auto: the CUDA plugin", path);
      rc = run_plugin(lib, what, mode == 1, cfg, out, d);
      /* Auto found GPUs but could not start one: say how to go without. */
      if (rc != 0 && mode == -1) pf_diag_suffix(d, " (PATHFLOW_CUDA=0 runs without GPUs)");
    }
  }
  if (rc != 0) pf_plugin_devices_free(out);
  return rc;
}
