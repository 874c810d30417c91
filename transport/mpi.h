/* Internal: the MPI transport (transport/transport.h's interface over MPI,
 * pf_mpi_transport; the functions below are its parts, and what pf_init
 * and the transport's own tests use directly).
 *
 * Thread level MPI_THREAD_SERIALIZED: pf_mpi_init and pf_mpi_finalize run on
 * the user's thread while no other pathflow thread exists; every other call
 * here is made by the loop thread only (runtime/runtime.c). No device worker
 * ever calls MPI.
 *
 * Four duplicates of MPI_COMM_WORLD keep traffic apart: control messages
 * (plans, run, done, fetch...), tensor data (point-to-point transfers),
 * collectives (every group of ranks on one communicator, apart by tags:
 * pf_mpi_lane), and the rank registry exchange at start.
 */
#ifndef PF_TRANSPORT_MPI_H
#define PF_TRANSPORT_MPI_H

#include <mpi.h>
#include <stddef.h>
#include <stdint.h>

#include "base/diag.h"
#include "pathflow/types.h"
#include "transport/transport.h"

typedef struct pf_mpi pf_mpi;

/* 1 if this process was started by mpirun (or another PMI/PMIx launcher):
 * its environment says so. pf_init initializes MPI then, unless
 * PATHFLOW_MPI says otherwise; 0 for a plain local process. */
int pf_mpi_launched(void);
/* This process's rank as its launcher gave it (OMPI_COMM_WORLD_RANK,
 * PMIX_RANK or PMI_RANK), readable before MPI is initialized, so that
 * messages of a failing start name the right rank; 0 when none is set. */
int pf_mpi_launched_rank(void);

/* MPI_Init_thread(SERIALIZED) unless MPI is already initialized (then the
 * provided level is checked), the duplicated communicators, this rank's
 * place on its host, and the posted receive for the first control frame.
 * Errors: PF_EMPI (with the reason in diag), PF_ENOMEM. */
int pf_mpi_init(int *argc, char ***argv, pf_mpi **out, pf_diag *diag);
/* Frees the communicators and calls MPI_Finalize if pf_mpi_init called
 * MPI_Init, or on an executor rank (which exits after this, inside pf_init,
 * whoever initialized MPI). Pending requests are freed; the control receive
 * is cancelled. */
void pf_mpi_finalize(pf_mpi *m);
/* Ends the whole job now: prints `why` to stderr and MPI_Abort(code). With
 * m NULL (MPI not set up by pathflow) it calls MPI_Init first when MPI is
 * not initialized, so that the abort goes through mpirun (which waits for
 * every rank to reach MPI_Init); abort() if MPI cannot be used. */
void pf_mpi_abort(pf_mpi *m, int code, const char *why) __attribute__((noreturn));

int pf_mpi_rank(const pf_mpi *m);
int pf_mpi_size(const pf_mpi *m);
/* This rank among the ranks on its host (0 for the first). */
int pf_mpi_local_rank(const pf_mpi *m);
/* How many ranks run on this host. */
int pf_mpi_local_size(const pf_mpi *m);
/* Usable tags are [0, tag_ub]. */
int pf_mpi_tag_ub(const pf_mpi *m);
MPI_Comm pf_mpi_data_comm(const pf_mpi *m);
/* The control communicator (tests inject foreign frames through it). */
MPI_Comm pf_mpi_ctrl_comm(const pf_mpi *m);

/* Blocking all-to-root gather of one message per rank (used once, at start,
 * for device registration). On rank 0, *all gets size() malloc'd buffers and
 * *lens their lengths (caller frees each and both arrays). */
int pf_mpi_gather(pf_mpi *m, const uint8_t *mine, size_t len, uint8_t ***all,
                  size_t **lens, pf_diag *diag);

/* ---- completion tracking ------------------------------------------------ */

/* Called on the loop thread when a tracked request completes: status 0, or
 * PF_EMPI. */
typedef void (*pf_mpi_cb)(void *arg, int status);

/* Tracks an already-started request. Errors: PF_ENOMEM. */
int pf_mpi_track(pf_mpi *m, MPI_Request req, pf_mpi_cb cb, void *arg);
/* Like pf_mpi_track, for a request expected to complete soon (a send):
 * tested on every poll (up to 32 such; more go with the others).
 * Errors: PF_ENOMEM. */
int pf_mpi_track_quick(pf_mpi *m, MPI_Request req, pf_mpi_cb cb, void *arg);
/* One poll: MPI_Test of the control receive, one MPI_Testsome over the
 * quick requests and the 64 oldest others, and on one poll in 4 a rotating
 * window of 64 of the rest; runs the callbacks of those that completed. A
 * control frame that arrived is left for pf_mpi_ctrl_recv (not counted).
 * Returns how many requests completed, or PF_EMPI. */
int pf_mpi_progress(pf_mpi *m);
/* Number of tracked requests not yet completed, and control message
 * bodies being received. */
int pf_mpi_pending(const pf_mpi *m);

/* ---- control channel ------------------------------------------------------ */

/* Sends a whole control message; `buf` (malloc'd) is freed when sent. */
int pf_mpi_ctrl_send(pf_mpi *m, int peer, uint8_t *buf, size_t len);

/* Called once every frame of a control message has completed: status 0,
 * or PF_EMPI when one of its MPI requests failed at completion (the peer
 * may not have it). From pf_mpi_progress, on the progressing thread. */
typedef void (*pf_mpi_sent_fn)(void *arg, int status);
/* As pf_mpi_ctrl_send, and then `sent(copy, status)` once it completes,
 * `copy` being a copy of the arg_size bytes at `arg` kept with the message
 * (suitably aligned; valid during the call). sent may be NULL. When it
 * returns an error, `sent` is never called. */
int pf_mpi_ctrl_send_cb(pf_mpi *m, int peer, uint8_t *buf, size_t len, pf_mpi_sent_fn sent,
                        const void *arg, size_t arg_size);
/* Test hook (PATHFLOW_FAULT_CTRL_SEND): the n-th pf_mpi_ctrl_send_cb with a
 * callback from now on sends nothing and completes with PF_EMPI, as a send
 * whose request failed would. 0: off. */
void pf_mpi_set_fault_ctrl_send(pf_mpi *m, int64_t n);
/* Receives one control message if one is ready: *buf (malloc'd, owned by
 * the caller) and *peer, or *buf = NULL when none. Never waits. The body
 * of a large message (a plan), which follows its header on its own tag,
 * is received asynchronously: each call looks once at every body owed
 * (MPI_Improbe, then MPI_Imrecv once matched), and a peer's later frames
 * are held until its body is in, so each peer's messages keep their
 * order. A matched body counts in pf_mpi_pending. Errors: PF_EMPI,
 * PF_ENOMEM (with *peer set when it concerns one message: then that one
 * is lost and the channel goes on), PF_EDECODE (not a control frame, a
 * body too large or not the size its header announced, or no body within
 * 5 s of its header: d says which, *peer names the sender, and the channel
 * goes on with the next frame; only that frame is lost). */
int pf_mpi_ctrl_recv(pf_mpi *m, int *peer, uint8_t **buf, size_t *len, pf_diag *d);

/* ---- data -------------------------------------------------------------- */

/* How to address a box of a buffer with MPI: a byte displacement, a count
 * and a datatype (MPI_BYTE for a contiguous box, else a committed subarray
 * type that pf_mpi_box_free releases). */
typedef struct pf_mpi_box {
  size_t displacement;
  size_t nbytes; /* the payload: the box's elements times the dtype size */
  int count;
  MPI_Datatype type;
  int owned;
} pf_mpi_box;

int pf_mpi_box_make(const pf_spec *buffer, const int64_t *offset,
                    const int64_t *extent, pf_mpi_box *out);
void pf_mpi_box_free(pf_mpi_box *b);

/* The MPI datatype of a dtype for reductions (MPI_DATATYPE_NULL if none),
 * and of a reduce op (pf_reduce_op; MEAN reduces as SUM). */
MPI_Datatype pf_mpi_dtype(pf_dtype dtype);
MPI_Op pf_mpi_op(int reduce_op);

/* ---- collectives over point-to-point messages (mpi_lane.c,
 *      mpi_allreduce.c, mpi_exchange.c) ------------------------------------ */

/* Allreduces of at most this many bytes go by recursive doubling, larger
 * ones by a ring (see mpi_allreduce.c). */
#define PF_MPI_AR_SMALL_BYTES 8192

/* The collectives of one group of ranks (a plan's communicator), all on
 * one communicator shared by every group (a duplicate of MPI_COMM_WORLD):
 * the group's own tags keep them apart, so a group needs no communicator
 * of its own and nothing is created collectively when a plan is loaded.
 * How many were issued (every member issues a group's collectives in the
 * same order: the tags follow from it), how many are in flight, and those
 * waiting for a tag. */
typedef struct pf_mpi_lane {
  MPI_Comm comm;        /* MPI_COMM_NULL: this rank is not a member */
  const int32_t *ranks; /* member i is rank ranks[i] of comm */
  int rank, size;       /* this rank among the members, and their number */
  int tag_base;         /* the group's tags: [tag_base, tag_base + width * PF_MPI_ROUNDS) */
  int width;            /* collectives in flight at once: a power of two */
  uint64_t seq;
  int in_flight;
  struct pf_mpi_coll *first, *last; /* in flight, oldest first */
  struct pf_mpi_coll *waiting, *waiting_tail;
  /* The last collective set up, as set up (its algorithm's fields) and
   * the tmp bytes it needs: the next of the same shape (a training step's
   * allreduces, a chain of them) starts as its copy. NULL: none yet. */
  struct pf_mpi_coll *shape;
  size_t shape_tmp;
  /* Persistent receives of the small exchanges (mpi_coll.h, pf_mpi_pair):
   * width * pair_rounds of them (the doubling rounds of `size` members,
   * and round 0 unused), made as first used; NULL: none yet. */
  struct pf_mpi_pair *pairs;
  int pair_rounds;
} pf_mpi_lane;

/* Memory for collectives in flight (their records and what they receive
 * into), kept for the next instead of going back to malloc: a ring of 800
 * KB holds 400 KB, which glibc serves from fresh pages each time (an mmap,
 * or a loop-thread arena trimmed by madvise after each free), and page
 * faults then cost more than the exchange (8 allreduces of 256 KiB in
 * flight: 4.9 ms against 0.6). Up to 16 blocks, 256 MiB in all; loop
 * thread only. pf_mpi_scratch_take returns a block of at least `need`
 * bytes (its size in *size) or NULL (out of memory); give it back with
 * its size. */
void *pf_mpi_scratch_take(pf_mpi *m, size_t need, size_t *size);
void pf_mpi_scratch_give(pf_mpi *m, void *p, size_t size);

/* Tags per collective: round 0, up to 30 doubling rounds, the last. */
#define PF_MPI_ROUNDS 32

/* How many collectives of a group may be in flight (a power of two, 4 to
 * 64), given the transport's tags [0, tag_ub], and so how many groups fit
 * (pf_mpi_max_groups). */
int pf_mpi_lane_width(int tag_ub);
int pf_mpi_max_groups(int tag_ub);
/* Sets up the lane of group `group` over comm, whose member i is comm rank
 * ranks[i] (kept, not copied), n members; `me` is this process's rank in
 * comm (not a member: the lane must not be used). */
void pf_mpi_lane_init(pf_mpi_lane *lane, MPI_Comm comm, const int32_t *ranks, int n, int me,
                      uint32_t group, int tag_ub);
/* Frees what the lane keeps (its template): after its last collective. */
void pf_mpi_lane_fini(pf_mpi_lane *lane);
/* Starts a collective (transport/transport.h's pf_collective_call; roots
 * and chunks are numbered by member) over the lane's members; cb(arg,
 * status) on the loop thread once done, from a later pf_mpi_progress (from
 * inside this call only for a group of one member, or when its requests
 * could not be tracked for want of memory and were waited for here).
 * Allreduce and reduce-scatter take f32, f64, i32, i64. Every rank gets
 * the same bits from an allreduce. Errors: PF_EINVAL (a kind or dtype it
 * cannot do, a root out of range, not a member), PF_ERANGE (a message
 * over 2 GiB), PF_ENOMEM, PF_EMPI (nothing of it is in flight; a failure
 * after that comes through cb). */
int pf_mpi_collective_start(pf_mpi *m, pf_mpi_lane *lane, const pf_collective_call *c,
                            pf_mpi_cb cb, void *arg);

/* The transport interface of m (owned by m: valid until pf_mpi_finalize);
 * NULL for NULL. */
pf_transport *pf_mpi_transport(pf_mpi *m);

#endif
