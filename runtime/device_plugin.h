/* Internal: device plugins, devices that live outside libpathflow.
 *
 * A device kind whose code links libraries libpathflow must not depend on
 * (the CUDA device links cudart and cuBLAS) is built as a shared object
 * that pf_init loads with dlopen: libpathflow_cuda.so beside libpathflow,
 * and any listed in PATHFLOW_DEVICE_PLUGINS (docs/architecture.md, "Device
 * plugins"). The plugin exports one function, PF_DEVICE_PLUGIN_SYMBOL, of
 * type pf_device_plugin_open_fn. The runtime hands it a table of the
 * functions a device calls back (runtime/device.h's pf_step_*, storage and
 * the kernel registry): the plugin does not link libpathflow's internals,
 * which libpathflow does not export (tests/abi.sh). A plugin built against
 * another table refuses to open (abi).
 */
#ifndef PF_RUNTIME_DEVICE_PLUGIN_H
#define PF_RUNTIME_DEVICE_PLUGIN_H

#include <stddef.h>
#include <stdint.h>

#include "base/clock.h"
#include "kernels/registry.h"
#include "runtime/device.h"
#include "runtime/storage.h"

#define PF_DEVICE_PLUGIN_SYMBOL "pathflow_device_plugin_open"
/* Bumped whenever pf_device_host or the argument structs change. */
#define PF_DEVICE_PLUGIN_ABI 4u
/* Devices one plugin may start on one rank. */
#define PF_DEVICE_PLUGIN_MAX 64

/* What the runtime lends a plugin: the device callbacks of runtime/device.h
 * and the storage and registry functions, with the same meaning. */
typedef struct pf_device_host {
  uint32_t abi; /* PF_DEVICE_PLUGIN_ABI */
  const uint32_t *(*step_device_queue)(const pf_step *s, int device, uint32_t *n);
  int (*step_op_ready)(const pf_step *s, uint32_t op);
  uint32_t (*step_op_pending)(const pf_step *s, uint32_t op);
  int (*step_run_op)(pf_step *s, uint32_t op);
  void (*step_op_done)(pf_step *s, uint32_t op, int device);
  void (*step_part_done)(pf_step *s);
  pf_part *(*step_part)(pf_step *s, int device);
  pf_clock *(*step_clock)(const pf_step *s);
  const pf_plan *(*step_plan)(const pf_step *s);
  /* pf_executor_step_fail, with the message already formatted. */
  void (*step_fail)(pf_step *s, int code, const char *message);
  void (*running_bind)(pf_running_slot *slot);
  pf_storage *(*storage_new)(size_t nbytes, int device);
  pf_storage *(*storage_wrap)(void *data, size_t nbytes, int device,
                              void (*release)(pf_storage *s), void *owner);
  pf_storage *(*storage_ref)(pf_storage *s);
  void (*storage_unref)(pf_storage *s);
  const pf_kernel *(*registry_find)(pf_registry *reg, const char *name, pf_device_kind kind);
  int (*registry_add)(pf_registry *reg, const pf_kernel_def *def);
} pf_device_host;

typedef struct pf_device_plugin_args {
  int rank;        /* for thread names and messages */
  int first_index; /* the local index of its first device (after the CPU
                    * devices and earlier plugins' devices) */
  int max_devices; /* start at most this many (<= PF_DEVICE_PLUGIN_MAX) */
  /* 1: the user asked for this plugin's devices (PATHFLOW_CUDA=1, or the
   * plugin was listed): finding none is an error, not zero devices. */
  int required;
  pf_clock *clock;       /* borrowed, outlives the devices */
  pf_registry *registry; /* where it registers its kernels, once per process:
                          * a kind's kernels already there are kept */
  /* 1: the rank's transport sends from and receives into CUDA memory
   * (pf_transport.cuda_memory): a CUDA device then stages no transfer
   * (its stage lacks PF_STAGE_TRANSFERS). */
  int transport_cuda_memory;
} pf_device_plugin_args;

typedef struct pf_device_plugin_result {
  int n_devices;
  /* Taken over by the executor, which destroys them. */
  pf_device *devices[PF_DEVICE_PLUGIN_MAX];
  char what[128]; /* e.g. "2 CUDA devices: NVIDIA H200 (0), NVIDIA H200 (1)" */
} pf_device_plugin_result;

/* Starts the plugin's devices (none is not an error unless args->required)
 * and registers their kernels. Returns 0, or a negative PF_E... code with
 * a message naming the cause in err (err_len bytes, NUL-terminated); on
 * error no device is left running. */
typedef int (*pf_device_plugin_open_fn)(const pf_device_host *host,
                                        const pf_device_plugin_args *args,
                                        pf_device_plugin_result *out, char *err, size_t err_len);

#endif
