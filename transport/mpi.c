#include "transport/mpi.h"

#if defined(OPEN_MPI) && OPEN_MPI
#include <mpi-ext.h> /* MPIX_CUDA_AWARE_SUPPORT, MPIX_Query_cuda_support */
#endif

#include <stdio.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "base/box.h"
#include "base/probe.h"
#include "base/util.h"
#include "pathflow/error.h"

/* Control messages above this size are refused (a plan of a huge graph
 * still fits). */
#define CTRL_MAX ((int)(512u << 20))
/* A body must be matched this long after its header (its sender sends both
 * together), or that frame is refused. */
#define BODY_WAIT_NS 5000000000ull

/* Control frames: on CTRL_TAG, a frame byte then the message itself
 * (FRAME_INLINE), or the 8-byte length of a message that follows on
 * CTRL_BODY_TAG (FRAME_LARGE: a plan). A receive for the next frame is
 * always posted and tested first on every poll, so a poll costs no probe
 * of its own. */
#define CTRL_TAG 0
#define CTRL_BODY_TAG 1
#define CTRL_INLINE 8192
#define FRAME_INLINE 0
#define FRAME_LARGE 1

/* Requests expected to complete soon (sends) are tested on every poll, in
 * the same MPI_Testsome as the oldest others. */
#define QUICK_MAX 32
/* Testing thousands of posted receives on every poll costs more than the
 * polling itself: each poll tests the oldest PF_MPI_WINDOW requests (they
 * complete first, in gang order); one poll in ROTATE_EVERY also tests a
 * rotating window of the rest. */
#define PF_MPI_WINDOW 64
#define ROTATE_EVERY 4u
/* With one quick request alone in flight (a chain of small collectives),
 * its own test runs MPI's progress engine; the control receive is tested
 * (a second test and pass of the engine) on one poll in CTRL_EVERY: a
 * control message waits a few polls more, a chain's round pays one test. */
#define CTRL_EVERY 8u

typedef struct tracked {
  pf_mpi_cb cb;
  void *arg;
} tracked;

/* A frame held back because an earlier large body of its sender has not
 * come yet: a peer's messages are delivered in the order it sent them. */
typedef struct held_frame {
  uint8_t *bytes;
  int count;
  struct held_frame *next;
} held_frame;

/* Per peer: the body a FRAME_LARGE header announced. It is received
 * asynchronously: probed for on each call of pf_mpi_ctrl_recv until it
 * is matched (then received with MPI_Imrecv) or BODY_WAIT_NS passed (then
 * only that frame is refused); the loop never waits for it. */
typedef struct body_wait {
  int active;
  uint64_t n;        /* the size announced */
  uint64_t deadline; /* pf_now_ns by which it must be matched */
  MPI_Request req;   /* once matched; MPI_REQUEST_NULL before */
  uint8_t *buf;
  held_frame *held, *held_tail;
} body_wait;

/* A message or refusal ready for pf_mpi_ctrl_recv, in arrival order. */
typedef struct ready_msg {
  int peer, rc;
  uint8_t *buf;
  size_t len;
  char why[PF_DIAG_MSG_MAX];
  struct ready_msg *next;
} ready_msg;

/* A group's collectives (allocated one by one: a pointer to one is the
 * transport's communicator handle, and must not move). */
typedef struct group_lane {
  int32_t *ranks; /* the lane's members (lane.ranks points here) */
  pf_mpi_lane lane;
} group_lane;

/* Under AddressSanitizer keep nothing: a reused block would hide a
 * use-after-free (as runtime/storage.c's block cache does). */
#if defined(__SANITIZE_ADDRESS__)
#define SCRATCH_KEEP 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SCRATCH_KEEP 0
#endif
#endif
#ifndef SCRATCH_KEEP
#define SCRATCH_KEEP 16
#endif
#define SCRATCH_MAX_BYTES ((size_t)256 << 20)

struct pf_mpi {
  pf_transport iface; /* first: the transport interface */
  int rank, size, tag_ub, local_rank, local_size;
  int we_initialized;
  MPI_Comm ctrl, data, coll, boot;
  /* Tracked requests: parallel arrays, as MPI_Testsome wants them, in
   * [base, base + n). A completed request leaves a hole (MPI_REQUEST_NULL,
   * NULL callback), dropped from either end at once and from the middle
   * in batches: removing one must not cost a pass over thousands of posted
   * receives. */
  MPI_Request *reqs;
  tracked *tr;
  size_t base, n, holes, cap, cap_tr;
  size_t cursor; /* rotating test window over the requests past the first */
  unsigned polls, quick_polls;
  MPI_Request quick[QUICK_MAX];
  tracked quick_tr[QUICK_MAX];
  int n_quick;
  /* The posted control receive; ctrl_ready once it completed and until
   * pf_mpi_ctrl_recv takes the frame. */
  MPI_Request ctrl_req;
  uint8_t *ctrl_buf;
  int ctrl_ready, ctrl_failed, ctrl_truncated;
  MPI_Status ctrl_st;
  /* Large bodies in progress (per peer), how many, how many matched (their
   * receives count as pending requests), and what is ready to hand out. */
  body_wait *bodies;
  int n_bodies, n_matched;
  ready_msg *ready_head, *ready_tail;
  int indices[QUICK_MAX + PF_MPI_WINDOW];
  MPI_Status statuses[QUICK_MAX + PF_MPI_WINDOW];
  group_lane **groups; /* by group number; NULL: not met yet */
  size_t cap_groups;
  /* pf_mpi_scratch_*: blocks kept for the next collective. */
  void *scratch[SCRATCH_KEEP + 1];
  size_t scratch_size[SCRATCH_KEEP + 1], scratch_bytes;
  int n_scratch;
  /* Test hook (pf_mpi_set_fault_ctrl_send): the n-th control send with a
   * callback fails; sends with a callback so far. */
  int64_t fault_ctrl_send_at, ctrl_sends;
};

int pf_mpi_launched(void) {
  return getenv("OMPI_COMM_WORLD_SIZE") != NULL || getenv("PMIX_RANK") != NULL ||
         getenv("PMI_RANK") != NULL;
}

int pf_mpi_launched_rank(void) {
  static const char *const vars[] = {"OMPI_COMM_WORLD_RANK", "PMIX_RANK", "PMI_RANK"};
  for (size_t i = 0; i < sizeof vars / sizeof *vars; i++) {
    const char *v = getenv(vars[i]);
    char *end;
    long r;
    if (v == NULL || *v == '\0') continue;
    r = strtol(v, &end, 10);
    if (*end == '\0' && r >= 0 && r < (1L << 30)) return (int)r;
  }
  return 0;
}

static int mpi_fail(pf_diag *d, int err, const char *what) {
  char msg[MPI_MAX_ERROR_STRING];
  int len = 0;
  MPI_Error_string(err, msg, &len);
  return pf_diag_error(d, PF_EMPI, "%s: %s", what, msg);
}

/* The control receive takes one byte more than the largest frame: a frame
 * that fills it is too long (pathflow never sends one; MPI may or may not
 * report the truncation), and is refused rather than read cut short. Its
 * buffer is much larger than that count: Open MPI 4.1's shared-memory
 * transport was seen writing a whole 9000-byte message into a receive
 * posted for 8194 bytes, so a foreign frame up to CTRL_GUARD_BYTES lands in
 * memory we own (beyond that a hostile peer of the job could still
 * overwrite the heap; pathflow's own ranks never send one). */
#define CTRL_RECV_BYTES (CTRL_INLINE + 2)
#define CTRL_GUARD_BYTES (1 << 20)

static int post_ctrl(pf_mpi *m) {
  return MPI_Irecv(m->ctrl_buf, CTRL_RECV_BYTES, MPI_BYTE, MPI_ANY_SOURCE, CTRL_TAG, m->ctrl,
                   &m->ctrl_req);
}

/* MPI_Test of the control receive: ready, failed, or a frame too long for
 * it (MPI_ERR_TRUNCATE: refused, the channel goes on). */
static int test_ctrl(pf_mpi *m) {
  int flag = 0, err, cls = 0;
  PF_PROBE("mpi.test_ctrl");
  err = MPI_Test(&m->ctrl_req, &flag, &m->ctrl_st);
  PF_PROBE("mpi.test_ctrl.out");
  if (err == MPI_SUCCESS) {
    m->ctrl_ready = flag;
    return 0;
  }
  MPI_Error_class(err, &cls);
  m->ctrl_ready = 1;
  if (cls == MPI_ERR_TRUNCATE) {
    m->ctrl_truncated = 1;
    return 0;
  }
  m->ctrl_failed = 1;
  return PF_EMPI;
}

/* 1 once this process's MPI_Init_thread has failed: MPI may not be called
 * again (pf_mpi_abort then ends the process without it). */
static int init_failed;

int pf_mpi_init(int *argc, char ***argv, pf_mpi **out, pf_diag *d) {
  pf_mpi *m;
  int inited = 0, provided = 0, err, flag = 0;
  int *ub = NULL;
  *out = NULL;
  MPI_Initialized(&inited);
  if (!inited) {
    err = MPI_Init_thread(argc, argv, MPI_THREAD_SERIALIZED, &provided);
    if (err != MPI_SUCCESS) {
      init_failed = 1;
      return pf_diag_error(d, PF_EMPI, "MPI_Init_thread failed");
    }
  } else {
    MPI_Query_thread(&provided);
  }
  if (provided < MPI_THREAD_SERIALIZED)
    return pf_diag_error(d, PF_EMPI,
                         "MPI provides thread level %d; pathflow needs "
                         "MPI_THREAD_SERIALIZED (its loop thread makes the MPI calls)",
                         provided);
  if ((m = calloc(1, sizeof *m)) == NULL) return PF_ENOMEM;
  m->we_initialized = !inited;
  MPI_Comm_rank(MPI_COMM_WORLD, &m->rank);
  MPI_Comm_size(MPI_COMM_WORLD, &m->size);
  MPI_Comm_dup(MPI_COMM_WORLD, &m->ctrl);
  MPI_Comm_dup(MPI_COMM_WORLD, &m->data);
  MPI_Comm_dup(MPI_COMM_WORLD, &m->coll);
  MPI_Comm_dup(MPI_COMM_WORLD, &m->boot);
  /* Errors come back as codes: pathflow reports them with the rank and the
   * operation, then ends the job itself. */
  MPI_Comm_set_errhandler(m->ctrl, MPI_ERRORS_RETURN);
  MPI_Comm_set_errhandler(m->data, MPI_ERRORS_RETURN);
  MPI_Comm_set_errhandler(m->coll, MPI_ERRORS_RETURN);
  {
    MPI_Comm node;
    if (MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &node) ==
        MPI_SUCCESS) {
      MPI_Comm_rank(node, &m->local_rank);
      MPI_Comm_size(node, &m->local_size);
      MPI_Comm_free(&node);
    }
  }
  MPI_Comm_get_attr(MPI_COMM_WORLD, MPI_TAG_UB, &ub, &flag);
  m->tag_ub = flag && ub ? *ub : 32767;
  m->ctrl_req = MPI_REQUEST_NULL;
  m->bodies = pf_calloc((size_t)m->size, sizeof *m->bodies);
  for (int r = 0; m->bodies != NULL && r < m->size; r++) m->bodies[r].req = MPI_REQUEST_NULL;
  if ((m->ctrl_buf = malloc(CTRL_GUARD_BYTES)) == NULL || m->bodies == NULL) {
    pf_mpi_finalize(m);
    return PF_ENOMEM;
  }
  if ((err = post_ctrl(m)) != MPI_SUCCESS) {
    pf_mpi_finalize(m);
    return mpi_fail(d, err, "posting the control receive");
  }
  *out = m;
  return 0;
}

void pf_mpi_finalize(pf_mpi *m) {
  if (m == NULL) return;
  /* Only control sends can be left (steps are done): let them finish in
   * the background. */
  for (size_t i = m->base; i < m->base + m->n; i++)
    if (m->reqs[i] != MPI_REQUEST_NULL) MPI_Request_free(&m->reqs[i]);
  for (int i = 0; i < m->n_quick; i++)
    if (m->quick[i] != MPI_REQUEST_NULL) MPI_Request_free(&m->quick[i]);
  if (m->ctrl_req != MPI_REQUEST_NULL) {
    MPI_Cancel(&m->ctrl_req);
    MPI_Wait(&m->ctrl_req, MPI_STATUS_IGNORE);
  }
  free(m->ctrl_buf);
  for (int r = 0; m->bodies != NULL && r < m->size; r++) {
    body_wait *b = &m->bodies[r];
    /* A matched receive cannot be cancelled: let it finish unseen. */
    if (b->req != MPI_REQUEST_NULL) MPI_Request_free(&b->req);
    free(b->buf);
    while (b->held) {
      held_frame *h = b->held;
      b->held = h->next;
      free(h->bytes);
      free(h);
    }
  }
  free(m->bodies);
  while (m->ready_head) {
    ready_msg *r = m->ready_head;
    m->ready_head = r->next;
    free(r->buf);
    free(r);
  }
  for (size_t i = 0; i < m->cap_groups; i++)
    if (m->groups[i] != NULL) {
      pf_mpi_lane_fini(&m->groups[i]->lane);
      free(m->groups[i]->ranks);
      free(m->groups[i]);
    }
  MPI_Comm_free(&m->ctrl);
  MPI_Comm_free(&m->data);
  MPI_Comm_free(&m->coll);
  MPI_Comm_free(&m->boot);
  /* Rank 0 returns to its caller, which finalizes MPI if it initialized it.
   * Every other rank is an executor that exits inside pf_init right after
   * this: it must finalize MPI even when the program initialized MPI itself
   * (a raw-MPI part before pf_init, as in bench/transfer.c), or mpirun
   * reports an improper exit and the job fails. */
  if (m->we_initialized || m->rank != 0) MPI_Finalize();
  free(m->groups);
  for (int i = 0; i < m->n_scratch; i++) free(m->scratch[i]);
  free(m->reqs);
  free(m->tr);
  free(m);
}

void pf_mpi_abort(pf_mpi *m, int code, const char *why) {
  int up = 0, down = 0, provided = 0;
  fprintf(stderr, "pathflow: rank %d: %s; ending the job\n", m ? m->rank : pf_mpi_launched_rank(),
          why);
  fflush(stderr);
  /* Without a pf_mpi (pf_init failed before MPI was up), MPI is brought up
   * only to abort through it: MPI_Init waits for every rank to reach it, so
   * mpirun tears the job down with every process known to it. A process
   * that simply exits while the others are inside MPI_Init can hang Open
   * MPI 4.1's mpirun (a PMIx connection racing the teardown). */
  MPI_Initialized(&up);
  MPI_Finalized(&down);
  /* Not after a failed MPI_Init_thread: MPI may not be called again, and
   * this process dies of the abort below, which mpirun sees and answers by
   * ending the job. */
  if (!up && !down && !init_failed)
    up = MPI_Init_thread(NULL, NULL, MPI_THREAD_SERIALIZED, &provided) == MPI_SUCCESS;
  if (up && !down && !init_failed) MPI_Abort(MPI_COMM_WORLD, code);
  abort();
}

int pf_mpi_rank(const pf_mpi *m) { return m->rank; }
int pf_mpi_size(const pf_mpi *m) { return m->size; }
int pf_mpi_local_rank(const pf_mpi *m) { return m->local_rank; }
int pf_mpi_local_size(const pf_mpi *m) { return m->local_size > 0 ? m->local_size : 1; }
int pf_mpi_tag_ub(const pf_mpi *m) { return m->tag_ub; }
MPI_Comm pf_mpi_data_comm(const pf_mpi *m) { return m->data; }
MPI_Comm pf_mpi_ctrl_comm(const pf_mpi *m) { return m->ctrl; }

int pf_mpi_gather(pf_mpi *m, const uint8_t *mine, size_t len, uint8_t ***all,
                  size_t **lens, pf_diag *d) {
  int mylen = (int)len, *counts = NULL, *displs = NULL, total = 0, err;
  uint8_t *flat = NULL;
  if (len > (size_t)CTRL_MAX) return pf_diag_error(d, PF_ERANGE, "registration too large");
  if (m->rank == 0) {
    counts = calloc((size_t)m->size, sizeof *counts);
    displs = calloc((size_t)m->size, sizeof *displs);
    if (!counts || !displs) goto nomem;
  }
  err = MPI_Gather(&mylen, 1, MPI_INT, counts, 1, MPI_INT, 0, m->boot);
  if (err != MPI_SUCCESS) return mpi_fail(d, err, "registration (MPI_Gather)");
  if (m->rank == 0) {
    for (int r = 0; r < m->size; r++) {
      displs[r] = total;
      total += counts[r];
    }
    if ((flat = malloc(total ? (size_t)total : 1)) == NULL) goto nomem;
  }
  err = MPI_Gatherv(mine, mylen, MPI_BYTE, flat, counts, displs, MPI_BYTE, 0, m->boot);
  if (err != MPI_SUCCESS) return mpi_fail(d, err, "registration (MPI_Gatherv)");
  if (m->rank == 0) {
    *all = calloc((size_t)m->size, sizeof **all);
    *lens = calloc((size_t)m->size, sizeof **lens);
    if (!*all || !*lens) goto nomem;
    for (int r = 0; r < m->size; r++) {
      (*all)[r] = malloc(counts[r] ? (size_t)counts[r] : 1);
      if ((*all)[r] == NULL) goto nomem;
      memcpy((*all)[r], flat + displs[r], (size_t)counts[r]);
      (*lens)[r] = (size_t)counts[r];
    }
  }
  free(flat);
  free(counts);
  free(displs);
  return 0;
nomem:
  free(flat);
  free(counts);
  free(displs);
  return pf_diag_error(d, PF_ENOMEM, "registration: out of memory");
}

/* ---- tracking ------------------------------------------------------------ */

/* Moves the live requests to the front of the arrays, in order. */
static void compact(pf_mpi *m) {
  size_t w = 0;
  for (size_t i = m->base; i < m->base + m->n; i++)
    if (m->tr[i].cb != NULL) {
      m->reqs[w] = m->reqs[i];
      m->tr[w++] = m->tr[i];
    }
  m->base = 0;
  m->n = w;
  m->holes = 0;
  m->cursor = 0;
}

int pf_mpi_track(pf_mpi *m, MPI_Request req, pf_mpi_cb cb, void *arg) {
  size_t at;
  if (m->base + m->n == m->cap_tr || m->base + m->n == m->cap) {
    /* Out of room at the end: close the gaps, and leave twice the live
     * count free, so that the next compaction is as far away. */
    compact(m);
    if (pf_grow((void **)&m->reqs, &m->cap, 2 * m->n + 16, sizeof *m->reqs) ||
        pf_grow((void **)&m->tr, &m->cap_tr, 2 * m->n + 16, sizeof *m->tr))
      return PF_ENOMEM;
  }
  at = m->base + m->n++;
  m->reqs[at] = req;
  m->tr[at].cb = cb;
  m->tr[at].arg = arg;
  return 0;
}

int pf_mpi_track_quick(pf_mpi *m, MPI_Request req, pf_mpi_cb cb, void *arg) {
  if (m->n_quick == QUICK_MAX) return pf_mpi_track(m, req, cb, arg);
  m->quick[m->n_quick] = req;
  m->quick_tr[m->n_quick].cb = cb;
  m->quick_tr[m->n_quick].arg = arg;
  m->n_quick++;
  return 0;
}

int pf_mpi_pending(const pf_mpi *m) {
  return (int)(m->n - m->holes) + m->n_quick + m->n_matched;
}

/* Tests requests [lo, lo + n) of the tracked array (holes are
 * MPI_REQUEST_NULL, which MPI_Testsome skips); puts the indices of those
 * that completed in m->indices, negative (-i - 1) for a failed one.
 * Returns how many completed. */
static int test_window(pf_mpi *m, size_t lo, size_t n, int *err_out) {
  int outcount = 0, err;
  err = MPI_Testsome((int)n, m->reqs + lo, &outcount, m->indices, m->statuses);
  if (err != MPI_SUCCESS && err != MPI_ERR_IN_STATUS) {
    *err_out = PF_EMPI;
    return 0;
  }
  if (outcount == MPI_UNDEFINED) return 0;
  for (int k = 0; k < outcount; k++) {
    m->indices[k] += (int)lo;
    if (err == MPI_ERR_IN_STATUS && m->statuses[k].MPI_ERROR != MPI_SUCCESS)
      m->indices[k] = -m->indices[k] - 1; /* failed: marked negative */
  }
  return outcount;
}

/* After completions: drops the holes at both ends; compacts when holes
 * fill half the array or half the window of the oldest requests (which
 * would then test too few live ones). Amortized O(1) per completion. */
static void drop_holes(pf_mpi *m) {
  size_t head_holes = 0;
  while (m->n > 0 && m->tr[m->base].cb == NULL) {
    m->base++;
    m->n--;
    m->holes--;
  }
  while (m->n > 0 && m->tr[m->base + m->n - 1].cb == NULL) {
    m->n--;
    m->holes--;
  }
  if (m->n == 0) m->base = 0;
  if (m->holes == 0) return;
  for (size_t i = m->base; i < m->base + PF_MINOF(m->n, (size_t)PF_MPI_WINDOW); i++)
    head_holes += m->tr[i].cb == NULL;
  if (2 * m->holes > m->n || 2 * head_holes > PF_MPI_WINDOW) compact(m);
}

/* A completed request of the main array: its callback goes to done[]. */
static void take_main(pf_mpi *m, size_t i, int failed, tracked *done, int *status, int *n_done) {
  done[*n_done] = m->tr[i];
  status[(*n_done)++] = failed ? PF_EMPI : 0;
  m->tr[i].cb = NULL;
  m->reqs[i] = MPI_REQUEST_NULL;
  m->holes++;
}

/* The one quick request, when nothing else is tracked (a chain of small
 * collectives): MPI_Test costs less than MPI_Testsome and its bookkeeping,
 * and runs MPI's progress engine when the request is not complete yet,
 * then looks again.
 * A test that fails is the request's failure, as MPI_ERR_IN_STATUS is for
 * MPI_Testsome (MPI frees a request that completed in error). */
static int test_one_quick(pf_mpi *m) {
  int flag = 0, err;
  tracked t = m->quick_tr[0];
  PF_PROBE("mpi.test_quick");
  err = MPI_Test(&m->quick[0], &flag, MPI_STATUS_IGNORE);
  if (err == MPI_SUCCESS && !flag) {
    PF_PROBE("mpi.test_quick.none");
    return 0;
  }
  PF_PROBE("mpi.test_quick.done");
  m->quick[0] = MPI_REQUEST_NULL;
  m->quick_tr[0].cb = NULL;
  m->n_quick = 0;
  t.cb(t.arg, err == MPI_SUCCESS ? 0 : PF_EMPI);
  return 1;
}

int pf_mpi_progress(pf_mpi *m) {
  enum { FRONT = QUICK_MAX + PF_MPI_WINDOW };
  MPI_Request front[FRONT], *tested = front;
  tracked done[QUICK_MAX + 2 * PF_MPI_WINDOW];
  int status[QUICK_MAX + 2 * PF_MPI_WINDOW];
  int n_done = 0, outcount = 0, err, werr = 0, nf, nq = m->n_quick;
  size_t head = PF_MINOF(m->n, (size_t)PF_MPI_WINDOW);
  if (nq == 1 && head == 0) {
    /* Its own test runs the engine: the control receive only on one poll
     * in CTRL_EVERY. */
    if (!m->ctrl_ready && ++m->quick_polls % CTRL_EVERY == 0) test_ctrl(m);
    return test_one_quick(m);
  }
  /* MPI_Test runs MPI's progress engine, then looks at the control
   * receive again; MPI_Testsome looks at its requests before it runs the
   * engine, and does not look again: testing the control receive first
   * lets the Testsome see what this pass of the engine completed, one poll
   * earlier. */
  if (!m->ctrl_ready) test_ctrl(m);
  /* One MPI_Testsome for the quick requests and the oldest others, which
   * makes completed entries MPI_REQUEST_NULL in the array it tests: the
   * quick array itself when only quick ones are in flight, else a copy of
   * both; the originals are cleared below either way. */
  if (nq + head == 0) return 0;
  if (head == 0) {
    tested = m->quick;
    nf = nq;
  } else {
    for (int q = 0; q < nq; q++) front[q] = m->quick[q];
    memcpy(front + nq, m->reqs + m->base, head * sizeof *front);
    nf = nq + (int)head;
  }
  PF_PROBE("mpi.testsome");
  err = MPI_Testsome(nf, tested, &outcount, m->indices, m->statuses);
  if (outcount > 0 && outcount != MPI_UNDEFINED)
    PF_PROBE("mpi.testsome.done");
  else
    PF_PROBE("mpi.testsome.none");
  if (err != MPI_SUCCESS && err != MPI_ERR_IN_STATUS) return PF_EMPI;
  for (int k = 0; outcount != MPI_UNDEFINED && k < outcount; k++) {
    int i = m->indices[k];
    int failed = err == MPI_ERR_IN_STATUS && m->statuses[k].MPI_ERROR != MPI_SUCCESS;
    if (i < nq) {
      done[n_done] = m->quick_tr[i];
      status[n_done++] = failed ? PF_EMPI : 0;
      m->quick_tr[i].cb = NULL;
      m->quick[i] = MPI_REQUEST_NULL;
    } else {
      take_main(m, m->base + (size_t)(i - nq), failed, done, status, &n_done);
    }
  }
  if (m->n > head && ++m->polls % ROTATE_EVERY == 0) {
    size_t rest = m->n - head, start, len;
    int got;
    if (m->cursor >= rest) m->cursor = 0;
    start = m->base + head + m->cursor;
    len = PF_MINOF(rest - m->cursor, (size_t)PF_MPI_WINDOW);
    /* On failure, still run the callbacks of what completed above: those
     * requests are gone from MPI. */
    got = test_window(m, start, len, &werr);
    for (int k = 0; k < got; k++) {
      int i = m->indices[k] >= 0 ? m->indices[k] : -m->indices[k] - 1;
      take_main(m, (size_t)i, m->indices[k] < 0, done, status, &n_done);
    }
    m->cursor += len;
  }
  if (n_done == 0) return werr;
  /* Bookkeeping first, callbacks after: a callback may track new requests. */
  if (nq > 0) {
    int w = 0;
    for (int q = 0; q < nq; q++)
      if (m->quick_tr[q].cb != NULL) {
        m->quick[w] = m->quick[q];
        m->quick_tr[w++] = m->quick_tr[q];
      }
    m->n_quick = w;
  }
  drop_holes(m);
  for (int k = 0; k < n_done; k++) done[k].cb(done[k].arg, status[k]);
  return werr ? werr : n_done;
}

/* ---- control ------------------------------------------------------------ */

/* One control message in flight: its frames (one, or a header and a
 * body), each freed as it completes, and who to tell once all have, with
 * a copy of what the caller wants back: one allocation per message (a
 * control message per step each way: no more). */
typedef struct ctrl_out ctrl_out;
typedef struct frame_out {
  ctrl_out *msg;
  uint8_t *buf;
} frame_out;

struct ctrl_out {
  int pending; /* frames not yet completed */
  int status;  /* the first failure */
  int fake_failure; /* PATHFLOW_FAULT_CTRL_SEND: report PF_EMPI */
  int n_frames;
  frame_out frames[2];
  pf_mpi_sent_fn sent;
  _Alignas(max_align_t) unsigned char arg[]; /* the caller's, copied */
};

static void ctrl_out_release(ctrl_out *c) {
  if (--c->pending > 0) return;
  if (c->sent != NULL) c->sent(c->arg, c->fake_failure ? PF_EMPI : c->status);
  free(c);
}

static void frame_done(void *arg, int status) {
  frame_out *f = arg;
  ctrl_out *c = f->msg;
  if (status != 0 && c->status == 0) c->status = PF_EMPI;
  free(f->buf);
  ctrl_out_release(c);
}

void pf_mpi_set_fault_ctrl_send(pf_mpi *m, int64_t n) { m->fault_ctrl_send_at = n; }

/* Sends one frame of message c; `owned`: buf is its own allocation, freed
 * when sent (else it lives in c). */
static int send_frame(pf_mpi *m, ctrl_out *c, int peer, int tag, uint8_t *buf, size_t len,
                      int owned) {
  MPI_Request req;
  frame_out *f = &c->frames[c->n_frames++];
  int err;
  /* A faked failure sends nothing: a request that completes at once, as
   * a failed one would, and the peer never gets the message. */
  err = c->fake_failure
            ? MPI_Irecv(NULL, 0, MPI_BYTE, MPI_PROC_NULL, tag, m->ctrl, &req)
            : MPI_Isend(buf, (int)len, MPI_BYTE, peer, tag, m->ctrl, &req);
  if (err != MPI_SUCCESS) {
    if (owned) free(buf);
    return PF_EMPI;
  }
  f->msg = c;
  f->buf = owned ? buf : NULL;
  c->pending++;
  if (pf_mpi_track_quick(m, req, frame_done, f) != 0)
    frame_done(f, MPI_Wait(&req, MPI_STATUS_IGNORE) == MPI_SUCCESS ? 0 : PF_EMPI);
  return 0;
}

int pf_mpi_ctrl_send_cb(pf_mpi *m, int peer, uint8_t *buf, size_t len, pf_mpi_sent_fn sent,
                        const void *arg, size_t arg_size) {
  uint8_t *frame;
  uint64_t n = len;
  ctrl_out *c;
  int rc;
  if (len > (size_t)CTRL_MAX) {
    free(buf);
    return PF_ERANGE;
  }
  /* One block for the record, the caller's copy and, for a small message,
   * the frame itself: no more allocations per message than one frame. */
  size_t head = (sizeof *c + (sent != NULL ? arg_size : 0) + 15) & ~(size_t)15;
  if ((c = malloc(head + (len <= CTRL_INLINE ? len + 1 : 0))) == NULL) {
    free(buf);
    return PF_ENOMEM;
  }
  memset(c, 0, sizeof *c);
  if (sent != NULL && arg_size > 0) memcpy(c->arg, arg, arg_size);
  c->pending = 1; /* held until every frame is out */
  if (sent != NULL && m->fault_ctrl_send_at > 0 && ++m->ctrl_sends == m->fault_ctrl_send_at)
    c->fake_failure = 1;
  if (len <= CTRL_INLINE) {
    /* Small (every message but a plan): the frame carries it. */
    frame = (uint8_t *)c + head;
    frame[0] = FRAME_INLINE;
    memcpy(frame + 1, buf, len);
    free(buf);
    rc = send_frame(m, c, peer, CTRL_TAG, frame, len + 1, 0);
  } else if ((frame = malloc(1 + sizeof n)) == NULL) {
    free(buf);
    rc = PF_ENOMEM;
  } else {
    frame[0] = FRAME_LARGE;
    memcpy(frame + 1, &n, sizeof n);
    if ((rc = send_frame(m, c, peer, CTRL_TAG, frame, 1 + sizeof n, 1)) != 0)
      free(buf);
    else
      rc = send_frame(m, c, peer, CTRL_BODY_TAG, buf, len, 1);
  }
  /* An error returned is the caller's to handle: `sent` is not called. */
  if (rc == 0) c->sent = sent;
  ctrl_out_release(c);
  return rc;
}

int pf_mpi_ctrl_send(pf_mpi *m, int peer, uint8_t *buf, size_t len) {
  return pf_mpi_ctrl_send_cb(m, peer, buf, len, NULL, NULL, 0);
}

/* Queues a message (rc 0, buf owned) or a refusal (rc != 0, why) from
 * `peer` for pf_mpi_ctrl_recv. */
static int push_ready(pf_mpi *m, int peer, int rc, uint8_t *buf, size_t len, const char *why) {
  ready_msg *r = calloc(1, sizeof *r);
  if (r == NULL) {
    free(buf);
    return PF_ENOMEM;
  }
  r->peer = peer;
  r->rc = rc;
  r->buf = buf;
  r->len = len;
  snprintf(r->why, sizeof r->why, "%s", why ? why : "");
  if (m->ready_tail)
    m->ready_tail->next = r;
  else
    m->ready_head = r;
  m->ready_tail = r;
  return 0;
}

static int route_frame(pf_mpi *m, int peer, const uint8_t *bytes, int count);
static int advance_body(pf_mpi *m, int peer);

/* The body of `peer` is resolved (rc 0: buf holds it; else refused, why
 * says so): queue it, then the frames held behind it, in order. */
static int finish_body(pf_mpi *m, int peer, int rc, const char *why) {
  body_wait *b = &m->bodies[peer];
  held_frame *h = b->held;
  int err = push_ready(m, peer, rc, rc == 0 ? b->buf : NULL, rc == 0 ? (size_t)b->n : 0, why);
  if (rc != 0) free(b->buf);
  b->buf = NULL;
  b->active = 0;
  b->held = b->held_tail = NULL;
  m->n_bodies--;
  /* A held frame may announce another body: the rest are then held
   * behind that one (route_frame appends them to the new list). */
  while (h != NULL) {
    held_frame *next = h->next;
    int e = route_frame(m, peer, h->bytes, h->count);
    if (err == 0) err = e;
    free(h->bytes);
    free(h);
    h = next;
  }
  return err;
}

/* One look at the body `peer` owes: matched yet (then receive it without
 * waiting), received, or past its deadline. */
static int advance_body(pf_mpi *m, int peer) {
  body_wait *b = &m->bodies[peer];
  char why[PF_DIAG_MSG_MAX];
  if (b->req == MPI_REQUEST_NULL) {
    MPI_Message msg;
    MPI_Status st;
    int flag = 0, body = 0;
    if (MPI_Improbe(peer, CTRL_BODY_TAG, m->ctrl, &flag, &msg, &st) != MPI_SUCCESS)
      return PF_EMPI;
    if (!flag) {
      if (pf_now_ns() < b->deadline) return 0;
      snprintf(why, sizeof why, "control frame announces a %llu-byte body that did not come "
               "within %llu s", (unsigned long long)b->n, BODY_WAIT_NS / 1000000000ull);
      return finish_body(m, peer, PF_EDECODE, why);
    }
    MPI_Get_count(&st, MPI_BYTE, &body);
    if (b->n > (uint64_t)CTRL_MAX || (uint64_t)body != b->n) {
      /* Not the size announced, or too large: drop it unread. */
      MPI_Mrecv(NULL, 0, MPI_BYTE, &msg, MPI_STATUS_IGNORE);
      snprintf(why, sizeof why, "control frame announces %llu bytes (at most %d), its body has %d",
               (unsigned long long)b->n, CTRL_MAX, body);
      return finish_body(m, peer, PF_EDECODE, why);
    }
    if ((b->buf = pf_mallocn(b->n ? (size_t)b->n : 1, 1)) == NULL) {
      MPI_Mrecv(NULL, 0, MPI_BYTE, &msg, MPI_STATUS_IGNORE);
      snprintf(why, sizeof why, "out of memory for a %llu-byte control message",
               (unsigned long long)b->n);
      return finish_body(m, peer, PF_ENOMEM, why);
    }
    if (MPI_Imrecv(b->buf, (int)b->n, MPI_BYTE, &msg, &b->req) != MPI_SUCCESS) {
      b->req = MPI_REQUEST_NULL;
      return finish_body(m, peer, PF_EMPI, "receiving a control message body failed");
    }
    m->n_matched++;
  }
  {
    int flag = 0, err = MPI_Test(&b->req, &flag, MPI_STATUS_IGNORE);
    if (err == MPI_SUCCESS && !flag) return 0;
    b->req = MPI_REQUEST_NULL;
    m->n_matched--;
    return finish_body(m, peer, err == MPI_SUCCESS ? 0 : PF_EMPI,
                       "receiving a control message body failed");
  }
}

/* A frame of `peer` that is not delivered at once: held behind a body
 * still owed, the start of a body (FRAME_LARGE), an inline message, or a
 * refusal; whatever results goes to the ready queue. */
static int route_frame(pf_mpi *m, int peer, const uint8_t *bytes, int count) {
  body_wait *b = &m->bodies[peer];
  char why[PF_DIAG_MSG_MAX];
  if (b->active) {
    held_frame *h = calloc(1, sizeof *h);
    if (h == NULL || (h->bytes = malloc(count > 0 ? (size_t)count : 1)) == NULL) {
      free(h);
      return PF_ENOMEM;
    }
    memcpy(h->bytes, bytes, (size_t)count);
    h->count = count;
    if (b->held_tail)
      b->held_tail->next = h;
    else
      b->held = h;
    b->held_tail = h;
    return 0;
  }
  if (count >= 1 && bytes[0] == FRAME_INLINE) {
    uint8_t *buf = malloc(count > 1 ? (size_t)count - 1 : 1);
    if (buf == NULL) return PF_ENOMEM;
    memcpy(buf, bytes + 1, (size_t)count - 1);
    return push_ready(m, peer, 0, buf, (size_t)count - 1, NULL);
  }
  if (count == 1 + (int)sizeof(uint64_t) && bytes[0] == FRAME_LARGE) {
    memcpy(&b->n, bytes + 1, sizeof b->n);
    b->active = 1;
    b->deadline = pf_now_ns() + BODY_WAIT_NS;
    b->req = MPI_REQUEST_NULL;
    m->n_bodies++;
    /* Its sender sent it right after the header: usually here already. */
    return advance_body(m, peer);
  }
  snprintf(why, sizeof why,
           "not a pathflow control frame (%d bytes, frame byte %d; want %d with the "
           "message, or %d and an 8-byte length)",
           count, count > 0 ? bytes[0] : -1, FRAME_INLINE, FRAME_LARGE);
  return push_ready(m, peer, PF_EDECODE, NULL, 0, why);
}

/* Reposts the control receive and tests it at once (a burst of replies is
 * read in one poll). */
static int repost_ctrl(pf_mpi *m) {
  if (post_ctrl(m) != MPI_SUCCESS) return PF_EMPI;
  return test_ctrl(m);
}

/* Not inlined into t_ctrl_recv: its frame would make the check there,
 * which almost every poll ends at, cost as much as a call. */
__attribute__((noinline)) int pf_mpi_ctrl_recv(pf_mpi *m, int *peer, uint8_t **buf, size_t *len,
                                               pf_diag *d) {
  int rc;
  *buf = NULL;
  *len = 0;
  /* Bodies owed: one look at each (no waiting). */
  for (int r = 0; m->n_bodies > 0 && r < m->size; r++)
    if (m->bodies[r].active && (rc = advance_body(m, r)) != 0) return rc;
  for (;;) {
    int count = 0, src;
    if (m->ready_head != NULL) {
      ready_msg *r = m->ready_head;
      if ((m->ready_head = r->next) == NULL) m->ready_tail = NULL;
      *peer = r->peer;
      *buf = r->buf;
      *len = r->len;
      rc = r->rc;
      if (rc != 0) pf_diag_error(d, rc, "%s", r->why);
      free(r);
      return rc;
    }
    if (!m->ctrl_ready) return 0;
    m->ctrl_ready = 0;
    if (m->ctrl_failed) return PF_EMPI;
    src = m->ctrl_st.MPI_SOURCE;
    MPI_Get_count(&m->ctrl_st, MPI_BYTE, &count);
    if (m->ctrl_truncated || count >= CTRL_RECV_BYTES) {
      char why[160];
      m->ctrl_truncated = 0;
      snprintf(why, sizeof why,
               "not a pathflow control frame (more than %d bytes on the control tag, where "
               "longer messages come as a header and a body)",
               CTRL_INLINE + 1);
      rc = push_ready(m, src, PF_EDECODE, NULL, 0, why);
      if (repost_ctrl(m) != 0) return PF_EMPI;
      if (rc != 0) return rc;
      continue;
    }
    if (count >= 1 && m->ctrl_buf[0] == FRAME_INLINE && !m->bodies[src].active) {
      /* The common case, straight to the caller. */
      if ((*buf = malloc(count > 1 ? (size_t)count - 1 : 1)) == NULL) return PF_ENOMEM;
      memcpy(*buf, m->ctrl_buf + 1, (size_t)count - 1);
      *len = (size_t)count - 1;
      *peer = src;
      if (repost_ctrl(m) != 0) {
        free(*buf);
        *buf = NULL;
        return PF_EMPI;
      }
      return 0;
    }
    rc = route_frame(m, src, m->ctrl_buf, count);
    if (repost_ctrl(m) != 0) return PF_EMPI;
    if (rc != 0) return rc;
  }
}

/* ---- data ------------------------------------------------------------------ */

int pf_mpi_box_make(const pf_spec *buffer, const int64_t *offset,
                    const int64_t *extent, pf_mpi_box *out) {
  size_t es = pf_dtype_size(buffer->dtype), nbytes, disp;
  int rank = buffer->rank, contiguous;
  memset(out, 0, sizeof *out);
  contiguous = pf_block_run(buffer, offset, extent, &disp, &nbytes);
  out->nbytes = nbytes;
  if (contiguous && nbytes <= (size_t)INT32_MAX) {
    out->displacement = disp;
    out->count = (int)nbytes;
    out->type = MPI_BYTE;
    return 0;
  }
  {
    int sizes[PF_MAX_RANK + 1], sub[PF_MAX_RANK + 1], starts[PF_MAX_RANK + 1];
    MPI_Datatype elem;
    for (int k = 0; k < rank; k++) {
      if (buffer->dims[k] > INT32_MAX) return PF_ERANGE;
      sizes[k] = (int)buffer->dims[k];
      sub[k] = (int)extent[k];
      starts[k] = (int)offset[k];
    }
    MPI_Type_contiguous((int)es, MPI_BYTE, &elem);
    if (MPI_Type_create_subarray(rank, sizes, sub, starts, MPI_ORDER_C, elem,
                                 &out->type) != MPI_SUCCESS) {
      MPI_Type_free(&elem);
      return PF_EMPI;
    }
    MPI_Type_free(&elem);
    MPI_Type_commit(&out->type);
    out->count = 1;
    out->owned = 1;
    out->displacement = 0;
  }
  return 0;
}

void pf_mpi_box_free(pf_mpi_box *b) {
  if (b->owned) MPI_Type_free(&b->type);
  b->owned = 0;
}

MPI_Datatype pf_mpi_dtype(pf_dtype dtype) {
  switch (dtype) {
    case PF_F32: return MPI_FLOAT;
    case PF_F64: return MPI_DOUBLE;
    case PF_I32: return MPI_INT32_T;
    case PF_I64: return MPI_INT64_T;
    case PF_U8: return MPI_UINT8_T;
    default: return MPI_DATATYPE_NULL;
  }
}

MPI_Op pf_mpi_op(int reduce_op) {
  switch (reduce_op) {
    case PF_REDUCE_MAX: return MPI_MAX;
    case PF_REDUCE_MIN: return MPI_MIN;
    default: return MPI_SUM;
  }
}

void *pf_mpi_scratch_take(pf_mpi *m, size_t need, size_t *size) {
  int best = -1;
  void *p;
  /* The last given back, when it fits without wasting half of itself: a
   * run of collectives of one shape takes it every time. */
  if (m->n_scratch > 0 && m->scratch_size[m->n_scratch - 1] >= need &&
      m->scratch_size[m->n_scratch - 1] / 2 <= need)
    best = m->n_scratch - 1;
  else
    for (int i = 0; i < m->n_scratch; i++) /* the smallest that is large enough */
      if (m->scratch_size[i] >= need && (best < 0 || m->scratch_size[i] < m->scratch_size[best]))
        best = i;
  if (best >= 0) {
    p = m->scratch[best];
    *size = m->scratch_size[best];
    m->scratch_bytes -= *size;
    m->n_scratch--;
    m->scratch[best] = m->scratch[m->n_scratch];
    m->scratch_size[best] = m->scratch_size[m->n_scratch];
    return p;
  }
  *size = need;
  return malloc(need);
}

void pf_mpi_scratch_give(pf_mpi *m, void *p, size_t size) {
  if (p == NULL) return;
  if (m->n_scratch == SCRATCH_KEEP || m->scratch_bytes + size > SCRATCH_MAX_BYTES) {
    int small = 0; /* make room by the smallest kept, if it is smaller */
    for (int i = 1; i < m->n_scratch; i++)
      if (m->scratch_size[i] < m->scratch_size[small]) small = i;
    if (m->n_scratch == 0 || m->scratch_size[small] >= size ||
        m->scratch_bytes - m->scratch_size[small] + size > SCRATCH_MAX_BYTES) {
      free(p);
      return;
    }
    free(m->scratch[small]);
    m->scratch_bytes -= m->scratch_size[small];
    m->scratch[small] = m->scratch[--m->n_scratch];
    m->scratch_size[small] = m->scratch_size[m->n_scratch];
  }
  m->scratch[m->n_scratch] = p;
  m->scratch_size[m->n_scratch++] = size;
  m->scratch_bytes += size;
}

/* The lane of group `group` over `ranks`, met first now or before (with
 * the same ranks: the controller gives each list of ranks its own
 * number). Nothing is sent: see mpi_lane.c. */
static int group_for(pf_mpi *m, const int32_t *ranks, int n, uint32_t group, group_lane **out) {
  group_lane *g;
  if (n < 1) return PF_EINVAL;
  if (group >= (uint32_t)pf_mpi_max_groups(m->tag_ub)) return PF_ERANGE;
  if (group >= m->cap_groups) {
    size_t cap = m->cap_groups ? m->cap_groups : 16;
    group_lane **grown;
    while (cap <= group) cap *= 2;
    if ((grown = realloc(m->groups, cap * sizeof *grown)) == NULL) return PF_ENOMEM;
    memset(grown + m->cap_groups, 0, (cap - m->cap_groups) * sizeof *grown);
    m->groups = grown;
    m->cap_groups = cap;
  }
  if ((g = m->groups[group]) != NULL) {
    if (g->lane.size != n || memcmp(g->ranks, ranks, (size_t)n * sizeof *ranks) != 0)
      return PF_EINVAL;
    *out = g;
    return 0;
  }
  if ((g = calloc(1, sizeof *g)) == NULL) return PF_ENOMEM;
  if ((g->ranks = pf_mallocn((size_t)n, sizeof *ranks)) == NULL) {
    free(g);
    return PF_ENOMEM;
  }
  memcpy(g->ranks, ranks, (size_t)n * sizeof *ranks);
  pf_mpi_lane_init(&g->lane, m->coll, g->ranks, n, m->rank, group, m->tag_ub);
  m->groups[group] = g;
  *out = g;
  return 0;
}

/* ---- the transport interface --------------------------------------------------- */

static int t_box_prepare(pf_transport *t, const pf_spec *buffer, const int64_t *offset,
                         const int64_t *extent, pf_xfer_box *out) {
  pf_mpi_box *b = malloc(sizeof *b);
  int rc;
  (void)t;
  out->impl = b;
  out->nbytes = 0;
  if (b == NULL) return PF_ENOMEM;
  if ((rc = pf_mpi_box_make(buffer, offset, extent, b)) != 0) {
    free(b);
    out->impl = NULL;
    return rc;
  }
  out->nbytes = b->nbytes;
  return 0;
}

static void t_box_release(pf_transport *t, pf_xfer_box *x) {
  (void)t;
  if (x->impl != NULL) pf_mpi_box_free(x->impl);
  free(x->impl);
  x->impl = NULL;
}

static int t_send(pf_transport *t, const void *data, const pf_xfer_box *x, int peer, int tag,
                  pf_transport_cb cb, void *arg) {
  pf_mpi *m = (pf_mpi *)t;
  const pf_mpi_box *b = x->impl;
  MPI_Request req;
  int err;
  PF_PROBE("mpi.isend");
  err = MPI_Isend((const char *)data + b->displacement, b->count, b->type, peer, tag, m->data,
                  &req);
  PF_PROBE("mpi.isend.out");
  if (err != MPI_SUCCESS) return PF_EMPI;
  /* A send completes soon: tested on every poll. */
  return pf_mpi_track_quick(m, req, cb, arg);
}

static int t_recv(pf_transport *t, void *data, const pf_xfer_box *x, int peer, int tag,
                  pf_transport_cb cb, void *arg) {
  pf_mpi *m = (pf_mpi *)t;
  const pf_mpi_box *b = x->impl;
  MPI_Request req;
  int err;
  PF_PROBE("mpi.irecv");
  err = MPI_Irecv((char *)data + b->displacement, b->count, b->type, peer, tag, m->data, &req);
  PF_PROBE("mpi.irecv.out");
  if (err != MPI_SUCCESS) return PF_EMPI;
  return pf_mpi_track(m, req, cb, arg);
}

static int t_comm_for(pf_transport *t, const int32_t *ranks, int n, uint32_t group,
                      pf_transport_comm **out) {
  return group_for((pf_mpi *)t, ranks, n, group, (group_lane **)out);
}

static int t_collective(pf_transport *t, pf_transport_comm *handle, const pf_collective_call *c,
                        pf_transport_cb cb, void *arg) {
  return pf_mpi_collective_start((pf_mpi *)t, &((group_lane *)handle)->lane, c, cb, arg);
}

static int t_progress(pf_transport *t) { return pf_mpi_progress((pf_mpi *)t); }
static int t_pending(const pf_transport *t) { return pf_mpi_pending((const pf_mpi *)t); }

static int t_ctrl_send(pf_transport *t, int peer, uint8_t *buf, size_t len,
                       pf_transport_sent_fn sent, const void *arg, size_t arg_size) {
  return pf_mpi_ctrl_send_cb((pf_mpi *)t, peer, buf, len, sent, arg, arg_size);
}

static int t_ctrl_recv(pf_transport *t, int *peer, uint8_t **buf, size_t *len, pf_diag *d) {
  const pf_mpi *m = (const pf_mpi *)t;
  /* Every poll asks, and almost always nothing is there: answered here,
   * without entering pf_mpi_ctrl_recv (its frame and buffers cost more
   * than the answer). */
  if (!m->ctrl_ready && m->ready_head == NULL && m->n_bodies == 0) {
    *buf = NULL;
    *len = 0;
    return 0;
  }
  return pf_mpi_ctrl_recv((pf_mpi *)t, peer, buf, len, d);
}

__attribute__((noreturn)) static void t_abort(pf_transport *t, int code, const char *why) {
  pf_mpi_abort((pf_mpi *)t, code, why);
}

static void t_fault_ctrl_send(pf_transport *t, int64_t n) {
  pf_mpi_set_fault_ctrl_send((pf_mpi *)t, n);
}

static const pf_transport_ops mpi_ops = {
    .box_prepare = t_box_prepare,
    .box_release = t_box_release,
    .send = t_send,
    .recv = t_recv,
    .comm_for = t_comm_for,
    .collective = t_collective,
    .progress = t_progress,
    .pending = t_pending,
    .ctrl_send = t_ctrl_send,
    .ctrl_recv = t_ctrl_recv,
    .fault_ctrl_send = t_fault_ctrl_send,
    .abort = t_abort,
};

/* 1 when this Open MPI was built CUDA-aware and says so at run time (the
 * way its documentation asks: the compile-time macro, then the query). */
static int cuda_aware(void) {
#if defined(MPIX_CUDA_AWARE_SUPPORT) && MPIX_CUDA_AWARE_SUPPORT
  return MPIX_Query_cuda_support() == 1;
#else
  return 0;
#endif
}

pf_transport *pf_mpi_transport(pf_mpi *m) {
  if (m == NULL) return NULL;
  m->iface.ops = &mpi_ops;
  m->iface.rank = m->rank;
  m->iface.size = m->size;
  m->iface.local_rank = m->local_rank;
  m->iface.local_size = pf_mpi_local_size(m);
  m->iface.tag_ub = m->tag_ub;
  m->iface.needs_polling = 1;
  m->iface.cuda_memory = cuda_aware();
  return &m->iface;
}
