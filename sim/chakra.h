/* Internal: Chakra execution traces, read and written.
 *
 * Chakra (MLCommons) is the trace format ASTRA-sim and its tools exchange:
 * one file per device, "<prefix>.<device>.et", a stream of varint-length-
 * delimited protobuf messages (proto/chakra.proto): a GlobalMetadata, then
 * Nodes. A node computes, sends, receives or joins a collective, and lists
 * the nodes of the same file it waits for.
 *
 * Reading checks everything: a truncated varint, a length past the end, a
 * message that does not decode, an unknown node type, a duplicate id, a
 * dependency on a missing node, a cycle, and a communication node without
 * the attributes it needs are errors whose message names the file, the byte
 * offset or the node. Attribute values of any integer kind are accepted (a
 * uint64 comm_size read as 0 is a known trap between Chakra tools).
 *
 * Times are in microseconds in the format; pathflow keeps them as given.
 */
#ifndef PF_SIM_CHAKRA_H
#define PF_SIM_CHAKRA_H

#include <stddef.h>
#include <stdint.h>

#include "base/diag.h"

/* Node types, as the format numbers them. */
enum {
  PF_CHAKRA_MEM_LOAD = 2,
  PF_CHAKRA_MEM_STORE = 3,
  PF_CHAKRA_COMP = 4,
  PF_CHAKRA_SEND = 5,
  PF_CHAKRA_RECV = 6,
  PF_CHAKRA_COLL = 7,
  /* Not Chakra's: a wait of delay_ns that holds no device, which the
   * simulator's workloads add (sim/workload.h: the controller's dispatch,
   * a run message's way to its device, a step's start). Never read from
   * or written to a file. */
  PF_CHAKRA_DELAY = 100,
};

/* Collective kinds, as the format numbers them (comm_type). */
enum {
  PF_CHAKRA_ALL_REDUCE = 0,
  PF_CHAKRA_REDUCE = 1,
  PF_CHAKRA_ALL_GATHER = 2,
  PF_CHAKRA_GATHER = 3,
  PF_CHAKRA_SCATTER = 4,
  PF_CHAKRA_BROADCAST = 5,
  PF_CHAKRA_ALL_TO_ALL = 6,
  PF_CHAKRA_REDUCE_SCATTER = 7,
  PF_CHAKRA_REDUCE_SCATTER_BLOCK = 8,
  PF_CHAKRA_BARRIER = 9,
  PF_CHAKRA_COMM_TYPE_COUNT
};

/* The longest kernel name a trace may give (pf_kernel). */
#define PF_CHAKRA_KERNEL_MAX 255

/* One node. The attributes a simulator needs are decoded into fields; -1
 * (or 0 for sizes) where the trace does not give them. */
typedef struct pf_chakra_node {
  uint64_t id;
  char *name;    /* never NULL ("" when unnamed) */
  int32_t type;  /* PF_CHAKRA_COMP, ... */
  uint32_t n_data_deps, n_ctrl_deps;
  uint64_t *data_deps, *ctrl_deps; /* ids of nodes of the same trace */
  uint64_t duration_us;            /* duration_micros: measured compute time */
  uint64_t num_ops;                /* COMP: floating-point operations */
  uint64_t tensor_size;            /* COMP: bytes moved to and from memory */
  uint64_t comm_size;              /* SEND, RECV, COLL: bytes */
  int64_t comm_src, comm_dst;      /* RECV from, SEND to (device ids) */
  int64_t comm_tag;
  int32_t comm_type; /* COLL: PF_CHAKRA_ALL_REDUCE, ... */
  /* COLL: the devices taking part (the "pf_comm_group" attribute pathflow
   * writes), NULL for a trace that does not say: every device. */
  uint32_t n_group;
  int64_t *group;
  int32_t is_cpu_op; /* -1: not given */
  /* COMP: the kernel that runs it (the "pf_kernel" attribute pathflow
   * writes), NULL when the trace does not say. */
  char *kernel;
  /* The simulator's own, never in a file: a DELAY's wait, and which run
   * of a workload the node belongs to (0: none; else the run's index + 1). */
  uint64_t delay_ns;
  uint32_t run;
} pf_chakra_node;

/* One device's trace. */
typedef struct pf_chakra_trace {
  char *version; /* GlobalMetadata.version; never NULL */
  uint32_t n_nodes;
  pf_chakra_node *nodes; /* in file order */
} pf_chakra_trace;

/* Decodes and checks a trace from bytes. `what` names it in messages (a
 * file name). Errors: PF_EDECODE (malformed: the message names the byte
 * offset or the node and what is wrong), PF_ECYCLE (a dependency cycle: the
 * message names a node on it), PF_ENOMEM. The caller frees *out with
 * pf_chakra_free. */
int pf_chakra_decode(const uint8_t *buf, size_t len, const char *what, pf_chakra_trace **out,
                     pf_diag *d);

/* pf_chakra_decode on the contents of `path`. Errors: those, and PF_ESYS
 * (cannot read: the message names the file and the reason). */
int pf_chakra_read(const char *path, pf_chakra_trace **out, pf_diag *d);

/* Encodes a trace (version "pathflow" when t->version is NULL) into a new
 * buffer *buf of *len bytes, which the caller frees. Errors: PF_ENOMEM. */
int pf_chakra_encode(const pf_chakra_trace *t, uint8_t **buf, size_t *len);

/* Writes a trace to `path` atomically (a temporary file renamed over it).
 * Errors: PF_ESYS (naming the file), PF_ENOMEM. */
int pf_chakra_write(const char *path, const pf_chakra_trace *t, pf_diag *d);

/* Frees a trace and everything it points to. NULL: no-op. */
void pf_chakra_free(pf_chakra_trace *t);

#endif
