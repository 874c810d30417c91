/* Internal: a described cluster, the simulator's input (docs/cluster-format.md).
 *
 * A cluster is a few host groups (hosts alike in ranks, devices and device
 * type), a few device types, the links between devices and the runtime's own
 * costs. Nothing is stored per device, so 6,144 devices or a million cost the
 * same few hundred bytes; device d's host, rank, island and type are computed
 * (pf_sim_cluster_locate).
 *
 * Devices are numbered host-major: host 0's devices first (its rank 0's
 * devices, then rank 1's, ...), then host 1's. Hosts are numbered in the
 * order of the groups in the file. Time is in integer nanoseconds, bandwidth
 * in bytes per second, flops in floating-point operations per second.
 */
#ifndef PF_SIM_CLUSTER_H
#define PF_SIM_CLUSTER_H

#include <stddef.h>
#include <stdint.h>

#include "pathflow/error.h"
#include "pathflow/types.h"

#define PF_SIM_NAME_MAX 48
#define PF_SIM_MAX_TYPES 64
#define PF_SIM_MAX_GROUPS 1024
#define PF_SIM_MAX_ISLANDS 1024
#define PF_SIM_MAX_DEVICES ((int64_t)1 << 30)
#define PF_SIM_TRANSFER_POINTS 16 /* runtime.transfer_by_size's points, at most */
#define PF_SIM_MAX_KERNELS 32     /* a device type's kernel_efficiency entries, at most */

typedef enum pf_sim_device_kind { PF_SIM_CPU, PF_SIM_GPU, PF_SIM_TPU, PF_SIM_KIND_COUNT } pf_sim_device_kind;

/* One kind of device. flops[dt] is 0 for a dtype the device has no figure
 * for (the simulator then refuses kernels in that dtype). */
typedef struct pf_sim_device_type {
  char name[PF_SIM_NAME_MAX];
  pf_sim_device_kind kind;
  double flops[PF_DTYPE_COUNT];
  int64_t memory;          /* bytes */
  double memory_bandwidth; /* bytes/s */
  /* kernel_efficiency: the fraction of the roofline (flops at peak, bytes
   * at memory_bandwidth) each named kernel reaches; 1 for the others. */
  int n_kernels;
  struct {
    char name[PF_SIM_NAME_MAX];
    double efficiency;
  } kernels[PF_SIM_MAX_KERNELS];
} pf_sim_device_type;

/* The efficiency of `kernel` (NULL: none) on devices of type t: 1 unless
 * the type names it. */
double pf_sim_kernel_efficiency(const pf_sim_device_type *t, const char *kernel);

/* `hosts` hosts, each with ranks_per_host ranks of devices_per_rank devices
 * of one type, all in one island. The first_* fields are derived on load. */
typedef struct pf_sim_host_group {
  int64_t hosts;
  int32_t ranks_per_host;
  int32_t devices_per_rank;
  int32_t type;   /* index into the cluster's types */
  int32_t island; /* 0 .. islands-1 */
  /* CPU cores a host, 0 when not given. CPU devices (each a worker thread)
   * share them: with more devices a host than cores, each computes
   * devices / cores times slower. */
  int32_t cores;
  int64_t first_host, first_rank, first_device;
} pf_sim_host_group;

/* One class of link: per direction bandwidth and the latency of crossing it. */
typedef struct pf_sim_link {
  double bandwidth;   /* bytes/s, each direction */
  int64_t latency_ns;
} pf_sim_link;

typedef struct pf_sim_cluster {
  char name[PF_SIM_NAME_MAX];
  int n_types;
  pf_sim_device_type *types;
  int n_groups;
  pf_sim_host_group *groups;
  int64_t hosts, ranks, devices;
  int32_t islands;
  int32_t max_devices_per_host;
  /* Links. Inside a host every device has a port of intra_host bandwidth
   * into a non-blocking switch (NVLink/NVSwitch, PCIe, shared memory).
   * Between hosts of one island, traffic leaves by one of the host's
   * nics_per_host NICs (device i of a host uses NIC i mod nics_per_host)
   * into a non-blocking island fabric. Between islands, traffic leaves by
   * the host's DCN port (dcn) and, when dcn_island_bandwidth > 0, shares
   * the island's uplink of that bandwidth. */
  pf_sim_link intra_host;
  pf_sim_link nic;
  int32_t nics_per_host;
  pf_sim_link dcn;            /* only when islands > 1 */
  double dcn_island_bandwidth; /* bytes/s; 0: no island-wide limit */
  /* The runtime's own costs. */
  int64_t op_dispatch_ns; /* per op a device runs */
  int64_t transfer_ns;    /* per transfer, on top of the link latency */
  /* runtime.transfer_by_size: the cost of a message by its size, on top of
   * the link latency and bytes / bandwidth, at n_transfer_points sizes
   * (increasing); 0 points: transfer_ns for every transfer and nothing for
   * a collective's messages (pf_sim_message_ns). */
  int32_t n_transfer_points;
  uint64_t transfer_point_bytes[PF_SIM_TRANSFER_POINTS];
  int64_t transfer_point_ns[PF_SIM_TRANSFER_POINTS];
  int64_t step_ns;        /* per execution (one step) */
  int64_t dispatch_ns;    /* the controller, per execution it sends (step_ns when not given) */
} pf_sim_cluster;

/* The runtime's own cost of one message of `bytes` (on top of the link's
 * latency and bytes / bandwidth): with runtime.transfer_by_size, linear
 * between its points and the end points' values beyond them, for a
 * transfer and for each message of a collective alike (the runtime's
 * collectives are point-to-point messages); without, transfer_ns for a
 * transfer (collective = 0) and 0 for a collective's message. */
int64_t pf_sim_message_ns(const pf_sim_cluster *cl, uint64_t bytes, int collective);

/* Where a device is. */
typedef struct pf_sim_place {
  int64_t host;
  int64_t rank;
  int32_t local;  /* index among its host's devices */
  int32_t island;
  int32_t type;
  int32_t group;
} pf_sim_place;

/* Reads a cluster description (JSON, docs/cluster-format.md) from
 * text[0..len). `source` names the text in messages (a file name). Every
 * field is checked; an error is PF_EDECODE (not JSON) or PF_EINVAL (a field
 * missing, of the wrong type, out of range, unknown), with a message in diag
 * "SOURCE:LINE: FIELD: what is wrong". *out is the caller's: free it with
 * pf_sim_cluster_free. */
int pf_sim_cluster_parse(const char *text, size_t len, const char *source, pf_sim_cluster **out,
                         pf_diag *diag);

/* Reads the file at `path`; errors as pf_sim_cluster_parse, and PF_ESYS
 * when the file cannot be read. */
int pf_sim_cluster_load_file(const char *path, pf_sim_cluster **out, pf_diag *diag);

/* A built-in cluster by name ("local", "dgx-h100", "palm"); PF_ENOTFOUND
 * (naming the presets) for another name. "local" is the file that
 * `pathflow calibrate` wrote (pf_sim_local_cluster_path) when there is one,
 * with that file's errors if it does not load; else the built-in
 * placeholder figures. */
int pf_sim_cluster_preset(const char *name, pf_sim_cluster **out, pf_diag *diag);

/* A preset's JSON text, or NULL for an unknown name; `names` (may be NULL)
 * receives a static ", "-separated list of the preset names. */
const char *pf_sim_cluster_preset_text(const char *name, const char **names);

/* Where `pathflow calibrate` writes this machine's cluster file and the
 * "local" preset looks for it: $PATHFLOW_LOCAL_CLUSTER when set, else
 * $XDG_CONFIG_HOME/pathflow/local.json, else $HOME/.config/pathflow/local.json.
 * Returns buf (len bytes), or NULL when none of them is set or the path
 * does not fit. Whether the file exists is the caller's to check. */
const char *pf_sim_local_cluster_path(char *buf, size_t len);

/* The file the "local" preset reads instead of its placeholder figures:
 * pf_sim_local_cluster_path into buf when that file exists, else NULL.
 * `name` is the preset asked for; NULL for any other than "local". */
const char *pf_sim_local_cluster_file(const char *name, char *buf, size_t len);

/* A preset name or a file: presets first, then the file system. */
int pf_sim_cluster_load(const char *name_or_path, pf_sim_cluster **out, pf_diag *diag);

/* Frees a cluster; NULL is ignored. */
void pf_sim_cluster_free(pf_sim_cluster *cl);

/* Where device `device` (0 .. devices-1) is; PF_ERANGE outside. O(log groups). */
int pf_sim_cluster_locate(const pf_sim_cluster *cl, int64_t device, pf_sim_place *out);

/* "cpu", "gpu", "tpu". */
const char *pf_sim_device_kind_name(pf_sim_device_kind k);

#endif
