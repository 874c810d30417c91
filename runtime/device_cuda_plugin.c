/* The CUDA device plugin: what makes libpathflow_cuda.so
 * (runtime/device_plugin.h). pf_init loads it with dlopen (runtime/
 * device_plugins.c) so that libpathflow itself never links cudart or
 * cuBLAS; it starts one CUDA device (runtime/device_cuda.h) per GPU of
 * cuda/discover.h, enables peer access between those GPUs and registers
 * the CUDA kernels.
 *
 * The CUDA device and kernels call the runtime's functions (pf_step_*,
 * storage, the registry), which libpathflow does not export. Here they are
 * defined as forwarders to the table the runtime hands the plugin, so the
 * module links with none of libpathflow's internals: a loaded plugin calls
 * into the very runtime that loaded it, be it libpathflow.so or a program
 * linked with the static library. Built into the module only, never into
 * pathflow_cuda: tests that link pathflow_cuda with pathflow_objects get
 * the real functions. The module exports nothing but the open function
 * (cuda/plugin.map).
 */
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cuda_runtime_api.h>

#include "cuda/discover.h"
#include "runtime/device_cuda.h"
#include "runtime/device_plugin.h"
#include "runtime/executor.h"

/* The runtime that opened the plugin; set once (a second copy of
 * libpathflow in the process may not share the plugin: its devices would
 * call back into the wrong one). */
static _Atomic(const pf_device_host *) host;

/* ---- forwarders: runtime/device.h, executor.h, storage.h, registry ------ */

const uint32_t *pf_step_device_queue(const pf_step *s, int device, uint32_t *n) {
  return atomic_load_explicit(&host, memory_order_relaxed)->step_device_queue(s, device, n);
}

int pf_step_op_ready(const pf_step *s, uint32_t op) {
  return atomic_load_explicit(&host, memory_order_relaxed)->step_op_ready(s, op);
}

uint32_t pf_step_op_pending(const pf_step *s, uint32_t op) {
  return atomic_load_explicit(&host, memory_order_relaxed)->step_op_pending(s, op);
}

int pf_step_run_op(pf_step *s, uint32_t op) {
  return atomic_load_explicit(&host, memory_order_relaxed)->step_run_op(s, op);
}

void pf_step_op_done(pf_step *s, uint32_t op, int device) {
  atomic_load_explicit(&host, memory_order_relaxed)->step_op_done(s, op, device);
}

void pf_step_part_done(pf_step *s) {
  atomic_load_explicit(&host, memory_order_relaxed)->step_part_done(s);
}

pf_part *pf_step_part(pf_step *s, int device) {
  return atomic_load_explicit(&host, memory_order_relaxed)->step_part(s, device);
}

pf_clock *pf_step_clock(const pf_step *s) {
  return atomic_load_explicit(&host, memory_order_relaxed)->step_clock(s);
}

const pf_plan *pf_step_plan(const pf_step *s) {
  return atomic_load_explicit(&host, memory_order_relaxed)->step_plan(s);
}

void pf_executor_step_fail(pf_step *s, int code, const char *fmt, ...) {
  char message[PF_DIAG_MSG_MAX];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(message, sizeof message, fmt, ap);
  va_end(ap);
  atomic_load_explicit(&host, memory_order_relaxed)->step_fail(s, code, message);
}

void pf_running_bind(pf_running_slot *slot) {
  atomic_load_explicit(&host, memory_order_relaxed)->running_bind(slot);
}

pf_storage *pf_storage_new(size_t nbytes, int device) {
  return atomic_load_explicit(&host, memory_order_relaxed)->storage_new(nbytes, device);
}

pf_storage *pf_storage_wrap(void *data, size_t nbytes, int device,
                            void (*release)(pf_storage *s), void *owner) {
  return atomic_load_explicit(&host, memory_order_relaxed)
      ->storage_wrap(data, nbytes, device, release, owner);
}

pf_storage *pf_storage_ref(pf_storage *s) {
  return atomic_load_explicit(&host, memory_order_relaxed)->storage_ref(s);
}

void pf_storage_unref(pf_storage *s) {
  atomic_load_explicit(&host, memory_order_relaxed)->storage_unref(s);
}

const pf_kernel *pf_registry_find(pf_registry *reg, const char *name, pf_device_kind kind) {
  return atomic_load_explicit(&host, memory_order_relaxed)->registry_find(reg, name, kind);
}

int pf_registry_add(pf_registry *reg, const pf_kernel_def *def) {
  return atomic_load_explicit(&host, memory_order_relaxed)->registry_add(reg, def);
}

/* ---- the open function -------------------------------------------------- */

__attribute__((visibility("default"))) int pathflow_device_plugin_open(
    const pf_device_host *h, const pf_device_plugin_args *args, pf_device_plugin_result *out,
    char *err, size_t err_len);

_Static_assert(__builtin_types_compatible_p(__typeof__(&pathflow_device_plugin_open),
                                            pf_device_plugin_open_fn),
               "pathflow_device_plugin_open is not a pf_device_plugin_open_fn");

/* Appends to out->what, cut at its size. */
static void say(pf_device_plugin_result *out, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void say(pf_device_plugin_result *out, const char *fmt, ...) {
  size_t used = strlen(out->what);
  va_list ap;
  if (used + 1 >= sizeof out->what) return;
  va_start(ap, fmt);
  vsnprintf(out->what + used, sizeof out->what - used, fmt, ap);
  va_end(ap);
}

/* Lets each pair of distinct GPUs that can reach each other's memory do
 * so, both ways, so that a copy between two devices of this rank (a
 * reshard: cudaMemcpy3DAsync D2D, queued on the destination's stream)
 * goes over NVLink or PCIe directly; without peer access the driver
 * stages it through host memory. Best effort: a pair that cannot is
 * copied as before, correctly. Peer access belongs to the GPUs' primary
 * contexts, shared by every device on them, so the next open (another
 * loopback rank) finds it enabled already. Returns the pairs enabled;
 * *pairs: the pairs of distinct GPUs. */
static int enable_peers(const pf_cuda_device_info *gpus, int n, int *pairs) {
  int prev = -1, enabled = 0;
  *pairs = 0;
  if (cudaGetDevice(&prev) != cudaSuccess) prev = -1;
  for (int i = 0; i < n; i++)
    for (int j = i + 1; j < n; j++) {
      int ok = 1;
      if (gpus[i].ordinal == gpus[j].ordinal) continue;
      ++*pairs;
      for (int way = 0; way < 2 && ok; way++) {
        int from = way ? gpus[j].ordinal : gpus[i].ordinal;
        int to = way ? gpus[i].ordinal : gpus[j].ordinal, can = 0;
        cudaError_t err;
        if (cudaDeviceCanAccessPeer(&can, from, to) != cudaSuccess || !can ||
            cudaSetDevice(from) != cudaSuccess) {
          ok = 0;
          break;
        }
        err = cudaDeviceEnablePeerAccess(to, 0);
        ok = err == cudaSuccess || err == cudaErrorPeerAccessAlreadyEnabled;
      }
      /* An error above (AlreadyEnabled included) stays this thread's last
       * error: a later launch check must not find it. */
      (void)cudaGetLastError();
      enabled += ok;
    }
  if (prev >= 0) (void)cudaSetDevice(prev);
  return enabled;
}

/* Discovers the GPUs (gpus: room for PF_CUDA_MAX_DEVICES) and starts a
 * device on each of the first `max`; pathflow_device_plugin_open's errors. */
static int open_gpus(pf_cuda_device_info *gpus, int max, const pf_device_plugin_args *args,
                     pf_device_plugin_result *out, char *err, size_t err_len) {
  const char *only = getenv("PATHFLOW_CUDA_DEVICES");
  pf_diag diag;
  int n = 0, rc, peers, pairs;
  pf_diag_init(&diag);
  if ((rc = pf_cuda_discover(gpus, max, &n, &diag)) != 0) {
    snprintf(err, err_len, "finding GPUs: %s", diag.msg);
    return rc;
  }
  if (n == 0) {
    if (!args->required) return 0;
    snprintf(err, err_len, "no GPU was found (CUDA sees %d GPUs%s%s)", pf_cuda_visible_count(),
             only ? "; PATHFLOW_CUDA_DEVICES=" : "", only ? only : "");
    return PF_ENOTFOUND;
  }
  /* Once per registry: a process of loopback ranks opens the plugin for
   * each, with one registry (the kernels a user registered for GPUs under
   * these names are kept too). */
  rc = pf_cuda_kernels_register(args->registry);
  if (rc != 0 && rc != PF_EEXIST) {
    snprintf(err, err_len, "registering the CUDA kernels: %s%s", pf_strerror(rc),
             rc == PF_ENOTFOUND ? " (the CPU built-ins are not registered)" : "");
    return rc;
  }
  for (int i = 0; i < n; i++) {
    pf_cuda_device_config c = {.index = args->first_index + i,
                               .rank = args->rank,
                               .ordinal = gpus[i].ordinal,
                               .memory_bytes = 0, /* the GPU's free memory */
                               .clock = args->clock,
                               .transport_cuda_memory = args->transport_cuda_memory};
    if ((rc = pf_cuda_device_create(&c, &out->devices[i], &diag)) != 0) {
      snprintf(err, err_len, "starting a device on GPU %d (%s): %s", gpus[i].ordinal,
               gpus[i].name, diag.msg);
      for (int k = 0; k < i; k++) out->devices[k]->ops->destroy(out->devices[k]);
      memset(out, 0, sizeof *out);
      return rc;
    }
    out->n_devices = i + 1;
  }
  peers = enable_peers(gpus, n, &pairs);
  say(out, "%d CUDA device%s:", n, n == 1 ? "" : "s");
  for (int i = 0; i < n; i++) say(out, "%s %s (%d)", i ? "," : "", gpus[i].name, gpus[i].ordinal);
  if (pairs > 0) say(out, "; peer access: %d of %d pairs", peers, pairs);
  return 0;
}

int pathflow_device_plugin_open(const pf_device_host *h, const pf_device_plugin_args *args,
                                pf_device_plugin_result *out, char *err, size_t err_len) {
  pf_cuda_device_info *gpus;
  const pf_device_host *none = NULL;
  int rc, max;
  memset(out, 0, sizeof *out);
  if (err_len > 0) err[0] = '\0';
  if (h == NULL || h->abi != PF_DEVICE_PLUGIN_ABI) {
    snprintf(err, err_len, "built for device plugin ABI %u, the runtime has %u: rebuild it",
             PF_DEVICE_PLUGIN_ABI, h ? h->abi : 0u);
    return PF_EINVAL;
  }
  if (!atomic_compare_exchange_strong(&host, &none, h) && none != h) {
    snprintf(err, err_len,
             "already opened by another copy of libpathflow in this process (a program "
             "linked with the static library and libpathflow.so?)");
    return PF_ESTATE;
  }
  if (args == NULL || args->registry == NULL || args->max_devices < 0) {
    snprintf(err, err_len, "bad arguments (no registry, or max_devices < 0)");
    return PF_EINVAL;
  }
  max = args->max_devices < PF_CUDA_MAX_DEVICES ? args->max_devices : PF_CUDA_MAX_DEVICES;
  /* 17 KiB: not on the stack. */
  if ((gpus = calloc(PF_CUDA_MAX_DEVICES, sizeof *gpus)) == NULL) {
    snprintf(err, err_len, "out of memory");
    return PF_ENOMEM;
  }
  rc = open_gpus(gpus, max, args, out, err, err_len);
  free(gpus);
  return rc;
}
