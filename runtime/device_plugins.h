/* Internal: the device plugin loader (runtime/device_plugins.c).
 *
 * Opens the device plugins a process is asked for and starts their devices
 * for one rank; runtime/device_plugin.h is what a plugin implements. Which
 * plugins (docs/architecture.md, "Device plugins"):
 *   PATHFLOW_DEVICE_PLUGINS  colon-separated paths, each one required: a
 *                            file that does not open, lacks the symbol or
 *                            fails to start is an error naming the path.
 *   PATHFLOW_CUDA            the CUDA plugin, libpathflow_cuda.so, looked up
 *                            beside libpathflow, then on the library path.
 *                            0: never; 1: required (no plugin or no GPU is
 *                            an error); unset or "auto": only when an NVIDIA
 *                            driver is installed, and then no plugin or no
 *                            GPU means no GPU device, silently. So a machine
 *                            without GPUs never loads cudart or cuBLAS.
 * Plugins stay loaded until the process ends: storage their devices
 * allocated may outlive the devices, and its release code is theirs.
 */
#ifndef PF_RUNTIME_DEVICE_PLUGINS_H
#define PF_RUNTIME_DEVICE_PLUGINS_H

#include "base/diag.h"
#include "kernels/registry.h"
#include "runtime/device.h"
#include "runtime/device_plugin.h"

/* The most devices one rank may have, CPU devices included: what a
 * registration may carry (pf_msg_decode). */
#define PF_RANK_DEVICES_MAX 4096

/* The devices plugins started for one rank. */
typedef struct pf_plugin_devices {
  int n;
  pf_device **devices; /* n of them, owned (until handed to a runtime) */
} pf_plugin_devices;

typedef struct pf_device_plugins_config {
  int rank;              /* the rank the devices serve (thread names, messages) */
  int first_index;       /* local index of the first plugin device: the
                          * number of CPU devices before them */
  pf_registry *registry; /* borrowed: plugins register their kernels in it
                          * (the CPU built-ins must be there already) */
  int transport_cuda_memory; /* pf_device_plugin_args.transport_cuda_memory */
} pf_device_plugins_config;

/* Opens the plugins that PATHFLOW_DEVICE_PLUGINS and PATHFLOW_CUDA ask for
 * (listed ones first, in order, then CUDA's) and starts each one's devices
 * for cfg->rank, numbered from cfg->first_index on. A process that serves
 * several ranks (loopback) calls it once per rank: each gets devices of
 * its own, and a plugin registers its kernels in a registry once. *out is
 * filled (zero devices when none is asked for or, in auto mode, none is
 * found); free it with pf_plugin_devices_free. On error nothing is left
 * running, *out is empty, and the message in d names the variable, the
 * path and the cause. Errors: PF_EINVAL (a bad PATHFLOW_CUDA value, a bad
 * plugin result, too many devices), PF_ENOTFOUND (a listed plugin that does
 * not open or lacks PF_DEVICE_PLUGIN_SYMBOL; PATHFLOW_CUDA=1 without the
 * plugin or without a GPU), PF_ENOMEM, or the code a plugin returned. */
int pf_device_plugins_start(const pf_device_plugins_config *cfg, pf_plugin_devices *out,
                            pf_diag *d);

/* Destroys the devices p still holds and frees its array; p is then empty.
 * NULL or empty: no-op. */
void pf_plugin_devices_free(pf_plugin_devices *p);

/* The table of runtime functions handed to plugins (runtime/device_plugin.h):
 * static, for tests that open a plugin themselves. */
const pf_device_host *pf_device_host_table(void);

#endif
