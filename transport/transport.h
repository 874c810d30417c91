/* Internal: the transport interface.
 *
 * What the runtime needs to move data and messages between ranks: posting
 * sends and receives of boxes of buffers, collectives on communicators,
 * making progress and running completion callbacks, the control channel,
 * and ending the job. A transport is a struct of function pointers with one
 * implementation per file: MPI (transport/mpi.c), the real one, and an
 * in-process loopback (transport/loopback.c) that runs the ranks of a job
 * as runtimes of one process, for tests and for debugging multi-rank plans
 * without mpirun. A process of one rank has no transport at all (NULL).
 * docs/architecture.md says how to add one.
 *
 * Threads: every call is made by the owning runtime's loop thread, except
 * where noted; callbacks run inside progress, on that thread.
 */
#ifndef PF_TRANSPORT_TRANSPORT_H
#define PF_TRANSPORT_TRANSPORT_H

#include <stddef.h>
#include <stdint.h>

#include "base/diag.h"
#include "pathflow/types.h"

typedef struct pf_transport pf_transport;
/* A communicator: a set of ranks that run collectives together. Made and
 * owned by the transport (freed when it finalizes). */
typedef struct pf_transport_comm pf_transport_comm;

/* Called when a send, receive or collective completes: status 0, or
 * PF_EMPI (the operation failed; the peer may not have the data). */
typedef void (*pf_transport_cb)(void *arg, int status);

/* A box of a buffer addressed for this transport, made once per plan op
 * (pf_transport_ops.box_prepare), used by every step. */
typedef struct pf_xfer_box {
  size_t nbytes; /* the payload */
  void *impl;    /* the transport's own (an MPI datatype...) */
} pf_xfer_box;

/* One collective, as every rank of the communicator issues it:
 *   ALLREDUCE       count elements of dtype from send (NULL: in place, from
 *                   recv) reduced with reduce_op into recv
 *   ALLGATHER       bytes from send; recv gets every rank's, in rank order
 *   REDUCE_SCATTER  send holds n blocks of count elements; recv gets block
 *                   r of their reduction on rank r
 *   BROADCAST       bytes of recv on rank `root` go to recv on every rank
 *   ALL_TO_ALL      send holds n chunks of bytes; chunk k goes to rank k,
 *                   and recv gets chunk r of every rank, in rank order
 * MEAN reduces as SUM (the caller divides). */
typedef struct pf_collective_call {
  pf_collective_kind kind;
  const void *send;
  void *recv;
  size_t count;
  size_t bytes;
  pf_dtype dtype;
  pf_reduce_op reduce_op;
  int root;
} pf_collective_call;

/* Called once every frame of a control message has left (status 0) or
 * failed (PF_EMPI: the peer may not have it), with a copy of the caller's
 * bytes. */
typedef void (*pf_transport_sent_fn)(void *arg, int status);

typedef struct pf_transport_ops {
  /* Addresses the box (offset, extent) of a buffer of spec `buffer`.
   * Errors: PF_ERANGE (too large for the transport), PF_EMPI, PF_ENOMEM. */
  int (*box_prepare)(pf_transport *t, const pf_spec *buffer, const int64_t *offset,
                     const int64_t *extent, pf_xfer_box *out);
  void (*box_release)(pf_transport *t, pf_xfer_box *b);
  /* Posts a send of box b of the buffer at data to `peer`, matched by a
   * receive with the same tag; cb runs when it completes. Errors (cb is
   * then never called): PF_EMPI, PF_ENOMEM. */
  int (*send)(pf_transport *t, const void *data, const pf_xfer_box *b, int peer, int tag,
              pf_transport_cb cb, void *arg);
  int (*recv)(pf_transport *t, void *data, const pf_xfer_box *b, int peer, int tag,
              pf_transport_cb cb, void *arg);
  /* The communicator over `ranks` (rank i of it is ranks[i]), made once
   * and cached, without communicating: `group` is the job's number for
   * this list (pf_plan_comm.group: the same list has the same number on
   * every rank, and no other list has it). A rank not in the list gets one
   * it must not use. Errors: PF_EINVAL (the group was met before with
   * another list), PF_ERANGE (more groups than the transport can keep
   * apart), PF_ENOMEM. */
  int (*comm_for)(pf_transport *t, const int32_t *ranks, int n, uint32_t group,
                  pf_transport_comm **out);
  /* Issues a collective on comm (in the same order on every member); cb
   * runs when it completes. Errors (cb never called; the caller must not
   * leave its peers waiting): PF_EMPI, PF_EINVAL (a dtype it cannot
   * reduce), PF_ENOMEM. */
  int (*collective)(pf_transport *t, pf_transport_comm *comm, const pf_collective_call *call,
                    pf_transport_cb cb, void *arg);
  /* Makes progress: runs the callbacks of what completed. Returns how many
   * completed, or PF_EMPI. */
  int (*progress)(pf_transport *t);
  /* Operations posted and not completed (control sends included). */
  int (*pending)(const pf_transport *t);
  /* Sends a control message (buf, malloc'd, is the transport's now);
   * `sent`, if not NULL, gets a copy of the arg_size bytes at arg.
   * Errors (sent never called): PF_ERANGE (too large), PF_EMPI, PF_ENOMEM. */
  int (*ctrl_send)(pf_transport *t, int peer, uint8_t *buf, size_t len,
                   pf_transport_sent_fn sent, const void *arg, size_t arg_size);
  /* The heartbeat thread may call ctrl_send too, serialized with the loop
   * by the runtime's transport lock. */
  /* Receives a control message if one is ready: *buf (malloc'd, the
   * caller's) from *peer, or *buf NULL when none; never waits. Errors as
   * pf_mpi_ctrl_recv. Called by the loop thread only. */
  int (*ctrl_recv)(pf_transport *t, int *peer, uint8_t **buf, size_t *len, pf_diag *d);
  /* Test hook (PATHFLOW_FAULT_CTRL_SEND): the n-th ctrl_send with a
   * `sent` callback from now on sends nothing and reports PF_EMPI. May be
   * NULL (the transport has no such hook). */
  void (*fault_ctrl_send)(pf_transport *t, int64_t n);
  /* Gives the hook the transport calls, from any thread, when something
   * arrived for this rank or one of its operations completed (the
   * runtime wakes its loop). NULL for a transport that must be polled. */
  void (*set_wake)(pf_transport *t, void (*wake)(void *arg), void *arg);
  /* Ends the whole job: prints why, naming this rank, and does not return. */
  void (*abort)(pf_transport *t, int code, const char *why) __attribute__((noreturn));
} pf_transport_ops;

struct pf_transport {
  const pf_transport_ops *ops;
  int rank, size;
  int local_rank, local_size; /* this rank among those of its host */
  int tag_ub;                 /* usable tags are [0, tag_ub] */
  /* 1 when nothing tells the loop that a message arrived: it must poll
   * (MPI). 0 when the transport calls the hook given to set_wake instead
   * (loopback). */
  int needs_polling;
  /* 1: sends and receives may name CUDA device memory (a CUDA-aware MPI,
   * MPIX_Query_cuda_support): a GPU then need not stage its transfers
   * through host buffers. 0: host memory only. */
  int cuda_memory;
};

/* Ends the job: through t when there is one, else (a process of one rank)
 * prints why and aborts the process. */
void pf_transport_abort(pf_transport *t, int code, const char *why) __attribute__((noreturn));

#endif
