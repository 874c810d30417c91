/* Internal: control messages between the controller and the executors.
 *
 * The same struct travels in-process (rank 0 talking to its own executor:
 * no encoding, tensor data passed as storages) and over MPI (encoded as
 * pathflow.Control by runtime/msg_codec.c, decoded with every field
 * checked).
 */
#ifndef PF_RUNTIME_MSG_H
#define PF_RUNTIME_MSG_H

#include <stdint.h>

#include "base/counters.h"
#include "plan/plan.h"
#include "runtime/storage.h"

/* Steps in flight at once, across all executables: each dispatched step
 * holds one slot, and its transfers use that slot's window of tags. */
#define PF_MSG_SLOTS 64

/* The most bytes of one shard a PUT or FETCH_REPLY carries: the public
 * PF_HOST_SHARD_MAX (api/ checks it before anything is sent; it asserts the
 * two agree). A decoded message announcing more is refused. */
#define PF_MSG_DATA_MAX ((int64_t)511 << 20)

typedef enum pf_msg_kind {
  PF_MSG_NONE = 0,
  PF_MSG_REGISTER,    /* executor -> controller, at start: host, devices */
  PF_MSG_LOAD,        /* plan: checked and kept; collectives not yet usable */
  PF_MSG_LOAD_DONE,   /* executable, status, message */
  PF_MSG_RUN,         /* executable, step, inputs, outputs, drop, ids (released first) */
  PF_MSG_STEP_DONE,   /* executable, step, status, message */
  PF_MSG_FETCH,       /* request, buffer, shards */
  PF_MSG_FETCH_REPLY, /* request, status, message, shards, data */
  PF_MSG_PUT,         /* buffer, shards[0], spec, data[0] */
  PF_MSG_RELEASE,     /* ids */
  PF_MSG_UNLOAD,      /* executable */
  PF_MSG_SHUTDOWN,
  PF_MSG_HEARTBEAT,
  PF_MSG_CONNECT,     /* executable: make its communicators (every rank loaded) */
  PF_MSG_DUMP,        /* print what is pending (watchdog) */
  PF_MSG_COUNTERS,    /* request: send this rank's counters */
  PF_MSG_COUNTERS_REPLY, /* request, status, message, counters */
  /* executable, step: the RUN asked for it (ack_start): the step is
   * started here, its receives posted or about to be (sequential dispatch
   * sends the next stage's RUN on it, so a stage's sends meet receives) */
  PF_MSG_STEP_STARTED,
  PF_MSG_EXPECT, /* executable, bytes: a plan of about that size comes next */
  /* The last kind, for range checks: a kind added after it moves it. */
  PF_MSG_KIND_LAST = PF_MSG_EXPECT
} pf_msg_kind;

/* One device as its rank registers it (pathflow.Device). */
typedef struct pf_msg_device {
  pf_device_kind kind;
  int64_t memory; /* bytes the scheduler may plan on it, >= 0 */
  uint32_t stage; /* pf_stage: data paths staged through host buffers */
  int own_memory; /* pf_device_info.own_memory */
} pf_msg_device;

/* A device communicator's id (LOAD_DONE, CONNECT; runtime/device.h's
 * comm_id), zero-padded. */
#define PF_MSG_COMM_ID_MAX 128
typedef struct pf_msg_comm_id {
  int32_t comm;
  uint8_t id[PF_MSG_COMM_ID_MAX];
} pf_msg_comm_id;

typedef struct pf_msg {
  pf_msg_kind kind;
  int32_t from; /* sender rank, filled in by the receiver */
  uint64_t executable, step, request, buffer;
  uint64_t bytes; /* EXPECT */
  uint32_t slot; /* RUN: dispatch slot, selects the step's tag window */
  int32_t ack_start; /* RUN: answer STEP_STARTED once the step starts */
  int32_t status;
  char *message; /* owned; may be NULL */
  pf_plan *plan; /* LOAD; owned */
  uint32_t n_inputs, n_outputs, n_drop, n_ids, n_shards;
  uint64_t *inputs, *outputs, *drop; /* RUN; owned */
  /* RELEASE; RUN: buffers released before it (the receiver handles them
   * as a RELEASE received just before the run); owned */
  uint64_t *ids;
  int32_t *shards;                   /* FETCH, FETCH_REPLY, PUT; owned */
  pf_storage **data;                 /* FETCH_REPLY, PUT: one ref per shard */
  pf_spec spec;                      /* PUT: the shard's spec */
  char *host;                        /* REGISTER; owned */
  int32_t n_devices;                 /* REGISTER */
  pf_msg_device *devices;            /* REGISTER: n_devices, in local index order; owned */
  pf_counters *counters;             /* COUNTERS_REPLY; owned */
  uint32_t n_comm_ids;
  pf_msg_comm_id *comm_ids;          /* LOAD_DONE, CONNECT; owned */
  /* PUT, FETCH_REPLY: the data travels on the data path, not in the
   * message (runtime/runtime.c): chunks tagged data_tag, data_tag + 1...;
   * data_bytes (FETCH_REPLY, owned) gives each shard's size. Encoding
   * such a message leaves the data out; decoding one leaves data NULL
   * for the runtime to receive. */
  int32_t data_path, data_tag;
  uint64_t *data_bytes;
} pf_msg;

/* A new zeroed message of `kind` (malloc'd). NULL when out of memory. */
pf_msg *pf_msg_new(pf_msg_kind kind);
/* Frees the message and everything it owns. NULL: no-op. */
void pf_msg_free(pf_msg *m);
/* "run", "step_done", ... */
const char *pf_msg_kind_name(pf_msg_kind kind);

/* Serializes to pathflow.Control. *buf is malloc'd, owned by the caller.
 * Errors: PF_ENOMEM, PF_EINVAL (kind NONE; a REGISTER with devices but no
 * device list; a PUT whose spec is bad or whose storage is smaller than
 * the spec; more ids or shards than pf_msg_decode accepts, 2^20). */
int pf_msg_encode(const pf_msg *m, uint8_t **buf, size_t *len);

/* Parses a pathflow.Control, checking every field (plans with
 * pf_plan_check against `num_devices` local devices). *out is a new
 * message. Errors: PF_EDECODE (naming what is wrong), PF_ENOMEM. */
int pf_msg_decode(const uint8_t *buf, size_t len, int num_devices,
                  pf_msg **out, pf_diag *diag);

/* For a message that pf_msg_decode refused: what it concerns, when its
 * envelope can still be read, so that only that is failed. Returns 1 and
 * sets *kind, *executable and *key (the step for RUN, STEP_DONE and
 * STEP_STARTED, the
 * request for FETCH and FETCH_REPLY, the buffer for PUT; else 0) when the
 * bytes are a pathflow.Control of a kind that something waits on; 0 when
 * they are not one (a foreign message: nothing waits on it) or nothing
 * waits on its kind. */
int pf_msg_concerns(const uint8_t *buf, size_t len, pf_msg_kind *kind, uint64_t *executable,
                    uint64_t *key);

#endif
