#include "transport/mpi.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/util.h"
#include "pathflow/error.h"
#include "pathflow/graph.h"

/* Control messages above this size are refused (a plan of a huge graph
 * still fits). */
#define CTRL_MAX ((int)(512u << 20))

typedef struct tracked {
  pf_mpi_cb cb;
  void *arg;
} tracked;

typedef struct cached_comm {
  int32_t *ranks;
  int n;
  MPI_Comm comm;
} cached_comm;

struct pf_mpi {
  int rank, size, tag_ub;
  int we_initialized;
  MPI_Comm ctrl, data, boot;
  /* Tracked requests: parallel arrays, as MPI_Testsome wants them, in
   * [base, base + n). A completed request leaves a hole (MPI_REQUEST_NULL,
   * NULL callback), dropped from either end at once and from the middle
   * in batches: removing one must not cost a pass over thousands of posted
   * receives. */
  MPI_Request *reqs;
  tracked *tr;
  size_t base, n, holes, cap, cap_tr;
  size_t cursor; /* rotating test window over the requests past the first */
  int *indices;
  MPI_Status *statuses;
  size_t cap_idx, cap_st;
  cached_comm *comms;
  size_t n_comms, cap_comms;
};

int pf_mpi_launched(void) {
  const char *force = getenv("PATHFLOW_MPI");
  if (force && *force) return strcmp(force, "0") != 0;
  return getenv("OMPI_COMM_WORLD_SIZE") != NULL || getenv("PMIX_RANK") != NULL ||
         getenv("PMI_RANK") != NULL;
}

static int mpi_fail(pf_diag *d, int err, const char *what) {
  char msg[MPI_MAX_ERROR_STRING];
  int len = 0;
  MPI_Error_string(err, msg, &len);
  return pf_diag_error(d, PF_EMPI, "%s: %s", what, msg);
}

int pf_mpi_init(int *argc, char ***argv, pf_mpi **out, pf_diag *d) {
  pf_mpi *m;
  int inited = 0, provided = 0, err, flag = 0;
  int *ub = NULL;
  *out = NULL;
  MPI_Initialized(&inited);
  if (!inited) {
    err = MPI_Init_thread(argc, argv, MPI_THREAD_SERIALIZED, &provided);
    if (err != MPI_SUCCESS) return pf_diag_error(d, PF_EMPI, "MPI_Init_thread failed");
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
  MPI_Comm_dup(MPI_COMM_WORLD, &m->boot);
  /* Errors come back as codes: pathflow reports them with the rank and the
   * operation, then ends the job itself. */
  MPI_Comm_set_errhandler(m->ctrl, MPI_ERRORS_RETURN);
  MPI_Comm_set_errhandler(m->data, MPI_ERRORS_RETURN);
  MPI_Comm_get_attr(MPI_COMM_WORLD, MPI_TAG_UB, &ub, &flag);
  m->tag_ub = flag && ub ? *ub : 32767;
  *out = m;
  return 0;
}

void pf_mpi_finalize(pf_mpi *m) {
  if (m == NULL) return;
  /* Only control sends can be left (steps are done): let them finish in
   * the background. */
  for (size_t i = m->base; i < m->base + m->n; i++)
    if (m->reqs[i] != MPI_REQUEST_NULL) MPI_Request_free(&m->reqs[i]);
  for (size_t i = 0; i < m->n_comms; i++) {
    if (m->comms[i].comm != MPI_COMM_NULL) MPI_Comm_free(&m->comms[i].comm);
    free(m->comms[i].ranks);
  }
  MPI_Comm_free(&m->ctrl);
  MPI_Comm_free(&m->data);
  MPI_Comm_free(&m->boot);
  /* Rank 0 returns to its caller, which finalizes MPI if it initialized it.
   * Every other rank is an executor that exits inside pf_init right after
   * this: it must finalize MPI even when the program initialized MPI itself
   * (a raw-MPI part before pf_init, as in bench/transfer.c), or mpirun
   * reports an improper exit and the job fails. */
  if (m->we_initialized || m->rank != 0) MPI_Finalize();
  free(m->comms);
  free(m->reqs);
  free(m->tr);
  free(m->indices);
  free(m->statuses);
  free(m);
}

void pf_mpi_abort(pf_mpi *m, int code, const char *why) {
  fprintf(stderr, "pathflow: rank %d: %s; ending the job\n", m ? m->rank : 0, why);
  fflush(stderr);
  if (m != NULL) MPI_Abort(MPI_COMM_WORLD, code);
  abort();
}

int pf_mpi_rank(const pf_mpi *m) { return m->rank; }
int pf_mpi_size(const pf_mpi *m) { return m->size; }
int pf_mpi_tag_ub(const pf_mpi *m) { return m->tag_ub; }
MPI_Comm pf_mpi_data_comm(const pf_mpi *m) { return m->data; }

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

int pf_mpi_pending(const pf_mpi *m) { return (int)(m->n - m->holes); }

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

/* Testing thousands of posted receives on every poll costs more than the
 * polling itself: test the oldest PF_MPI_WINDOW requests (they complete
 * first, in gang order) and a rotating window of the rest. */
#define PF_MPI_WINDOW 64

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

int pf_mpi_progress(pf_mpi *m) {
  int outcount = 0, err = 0;
  int done_idx[2 * PF_MPI_WINDOW];
  if (m->n == 0) return 0;
  if (pf_grow((void **)&m->indices, &m->cap_idx, 2 * PF_MPI_WINDOW, sizeof *m->indices) ||
      pf_grow((void **)&m->statuses, &m->cap_st, 2 * PF_MPI_WINDOW, sizeof *m->statuses))
    return PF_ENOMEM;
  {
    size_t head = PF_MINOF(m->n, (size_t)PF_MPI_WINDOW);
    int got = test_window(m, m->base, head, &err);
    memcpy(done_idx, m->indices, (size_t)got * sizeof *done_idx);
    outcount = got;
    if (m->n > head) {
      size_t rest = m->n - head, start, len;
      if (m->cursor >= rest) m->cursor = 0;
      start = m->base + head + m->cursor;
      len = PF_MINOF(rest - m->cursor, (size_t)PF_MPI_WINDOW);
      got = test_window(m, start, len, &err);
      memcpy(done_idx + outcount, m->indices, (size_t)got * sizeof *done_idx);
      outcount += got;
      m->cursor += len;
    }
    if (err) return err;
  }
  if (outcount == 0) return 0;
  /* Run the callbacks after the bookkeeping, so that a callback may track
   * new requests safely. */
  {
    tracked done[2 * PF_MPI_WINDOW];
    int status_err[2 * PF_MPI_WINDOW];
    for (int k = 0; k < outcount; k++) {
      int i = done_idx[k] >= 0 ? done_idx[k] : -done_idx[k] - 1;
      done[k] = m->tr[i];
      status_err[k] = done_idx[k] >= 0 ? 0 : PF_EMPI;
      m->tr[i].cb = NULL;
      m->reqs[i] = MPI_REQUEST_NULL;
      m->holes++;
    }
    drop_holes(m);
    for (int k = 0; k < outcount; k++) done[k].cb(done[k].arg, status_err[k]);
    return outcount;
  }
}

/* ---- control ------------------------------------------------------------ */

static void free_buffer(void *arg, int status) {
  (void)status;
  free(arg);
}

int pf_mpi_ctrl_send(pf_mpi *m, int peer, uint8_t *buf, size_t len) {
  MPI_Request req;
  int err;
  if (len > (size_t)CTRL_MAX) {
    free(buf);
    return PF_ERANGE;
  }
  err = MPI_Isend(buf, (int)len, MPI_BYTE, peer, 0, m->ctrl, &req);
  if (err != MPI_SUCCESS) {
    free(buf);
    return PF_EMPI;
  }
  if (pf_mpi_track(m, req, free_buffer, buf) != 0) {
    MPI_Wait(&req, MPI_STATUS_IGNORE);
    free(buf);
  }
  return 0;
}

int pf_mpi_ctrl_recv(pf_mpi *m, int *peer, uint8_t **buf, size_t *len) {
  MPI_Message msg;
  MPI_Status st;
  int flag = 0, count = 0, err;
  *buf = NULL;
  *len = 0;
  err = MPI_Improbe(MPI_ANY_SOURCE, 0, m->ctrl, &flag, &msg, &st);
  if (err != MPI_SUCCESS) return PF_EMPI;
  if (!flag) return 0;
  MPI_Get_count(&st, MPI_BYTE, &count);
  *buf = malloc(count > 0 ? (size_t)count : 1);
  if (*buf == NULL) {
    MPI_Mrecv(NULL, 0, MPI_BYTE, &msg, MPI_STATUS_IGNORE);
    return PF_ENOMEM;
  }
  /* The message has arrived: this receive does not wait on a peer. */
  err = MPI_Mrecv(*buf, count, MPI_BYTE, &msg, MPI_STATUS_IGNORE);
  if (err != MPI_SUCCESS) {
    free(*buf);
    *buf = NULL;
    return PF_EMPI;
  }
  *peer = st.MPI_SOURCE;
  *len = (size_t)count;
  return 0;
}

/* ---- data ------------------------------------------------------------------ */

int pf_mpi_box_make(const pf_spec *buffer, const int64_t *offset,
                    const int64_t *extent, pf_mpi_box *out) {
  size_t es = pf_dtype_size(buffer->dtype), nbytes = es;
  int64_t stride = 1, disp = 0;
  int contiguous = 1, rank = buffer->rank, i = 0;
  memset(out, 0, sizeof *out);
  for (int k = 0; k < rank; k++) nbytes *= (size_t)extent[k];
  for (int k = rank - 1; k >= 0; k--) {
    disp += offset[k] * stride;
    stride *= buffer->dims[k];
  }
  while (i < rank && extent[i] == 1) i++;
  for (int k = i + 1; k < rank; k++)
    if (extent[k] != buffer->dims[k]) contiguous = 0;
  if (contiguous && nbytes <= (size_t)INT32_MAX) {
    out->displacement = (size_t)disp * es;
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

int pf_mpi_comm_for(pf_mpi *m, const int32_t *ranks, int n, MPI_Comm *out) {
  MPI_Group world, group;
  int member = 0, err;
  cached_comm *c;
  for (size_t i = 0; i < m->n_comms; i++)
    if (m->comms[i].n == n && memcmp(m->comms[i].ranks, ranks, (size_t)n * sizeof *ranks) == 0) {
      *out = m->comms[i].comm;
      return 0;
    }
  for (int i = 0; i < n; i++) member |= ranks[i] == m->rank;
  if (pf_grow((void **)&m->comms, &m->cap_comms, m->n_comms + 1, sizeof *m->comms))
    return PF_ENOMEM;
  c = &m->comms[m->n_comms];
  c->ranks = pf_mallocn((size_t)n, sizeof *ranks);
  if (c->ranks == NULL) return PF_ENOMEM;
  memcpy(c->ranks, ranks, (size_t)n * sizeof *ranks);
  c->n = n;
  c->comm = MPI_COMM_NULL;
  if (member) {
    MPI_Comm_group(m->boot, &world);
    MPI_Group_incl(world, n, ranks, &group);
    err = MPI_Comm_create_group(m->boot, group, 1, &c->comm);
    MPI_Group_free(&group);
    MPI_Group_free(&world);
    if (err != MPI_SUCCESS) {
      free(c->ranks);
      return PF_EMPI;
    }
    MPI_Comm_set_errhandler(c->comm, MPI_ERRORS_RETURN);
  }
  m->n_comms++;
  *out = c->comm;
  return 0;
}
