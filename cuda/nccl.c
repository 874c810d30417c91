#include "cuda/nccl.h"

#include <stdlib.h>
#include <string.h>

#include "pathflow/error.h"

#ifdef PF_HAVE_NCCL
#include <dlfcn.h>
#include <nccl.h>
#include <pthread.h>

_Static_assert(sizeof(ncclUniqueId) == PF_NCCL_ID_BYTES, "an NCCL id is 128 bytes");

/* NCCL is opened at run time, not linked: the plugin then loads on a GPU
 * machine without it (its collectives are staged instead), and carries no
 * 200 MB library. PATHFLOW_NCCL_LIBRARY names the file (default
 * libnccl.so.2 on the library path). */
static struct {
  ncclResult_t (*get_unique_id)(ncclUniqueId *);
  ncclResult_t (*comm_init_rank)(ncclComm_t *, int, ncclUniqueId, int);
  ncclResult_t (*comm_destroy)(ncclComm_t);
  ncclResult_t (*all_reduce)(const void *, void *, size_t, ncclDataType_t, ncclRedOp_t,
                             ncclComm_t, cudaStream_t);
  ncclResult_t (*broadcast)(const void *, void *, size_t, ncclDataType_t, int, ncclComm_t,
                            cudaStream_t);
  ncclResult_t (*all_gather)(const void *, void *, size_t, ncclDataType_t, ncclComm_t,
                             cudaStream_t);
  ncclResult_t (*reduce_scatter)(const void *, void *, size_t, ncclDataType_t, ncclRedOp_t,
                                 ncclComm_t, cudaStream_t);
  ncclResult_t (*send)(const void *, size_t, ncclDataType_t, int, ncclComm_t, cudaStream_t);
  ncclResult_t (*recv)(void *, size_t, ncclDataType_t, int, ncclComm_t, cudaStream_t);
  ncclResult_t (*group_start)(void);
  ncclResult_t (*group_end)(void);
  ncclResult_t (*comm_count)(const ncclComm_t, int *);
  const char *(*error_string)(ncclResult_t);
  int ok;
} nccl;
static pthread_once_t nccl_once = PTHREAD_ONCE_INIT;

static void nccl_open(void) {
  const char *path = getenv("PATHFLOW_NCCL_LIBRARY");
  void *h = dlopen(path && *path ? path : "libnccl.so.2", RTLD_NOW | RTLD_LOCAL);
  if (h == NULL) return;
  *(void **)&nccl.get_unique_id = dlsym(h, "ncclGetUniqueId");
  *(void **)&nccl.comm_init_rank = dlsym(h, "ncclCommInitRank");
  *(void **)&nccl.comm_destroy = dlsym(h, "ncclCommDestroy");
  *(void **)&nccl.all_reduce = dlsym(h, "ncclAllReduce");
  *(void **)&nccl.broadcast = dlsym(h, "ncclBroadcast");
  *(void **)&nccl.all_gather = dlsym(h, "ncclAllGather");
  *(void **)&nccl.reduce_scatter = dlsym(h, "ncclReduceScatter");
  *(void **)&nccl.send = dlsym(h, "ncclSend");
  *(void **)&nccl.recv = dlsym(h, "ncclRecv");
  *(void **)&nccl.group_start = dlsym(h, "ncclGroupStart");
  *(void **)&nccl.group_end = dlsym(h, "ncclGroupEnd");
  *(void **)&nccl.comm_count = dlsym(h, "ncclCommCount");
  *(void **)&nccl.error_string = dlsym(h, "ncclGetErrorString");
  nccl.ok = nccl.get_unique_id && nccl.comm_init_rank && nccl.comm_destroy && nccl.all_reduce &&
            nccl.broadcast && nccl.all_gather && nccl.reduce_scatter && nccl.send && nccl.recv &&
            nccl.group_start && nccl.group_end && nccl.comm_count && nccl.error_string;
}

int pf_nccl_available(void) {
  const char *e = getenv("PATHFLOW_NCCL");
  if (e != NULL && strcmp(e, "0") == 0) return 0;
  pthread_once(&nccl_once, nccl_open);
  return nccl.ok;
}

static int nccl_error(pf_diag *diag, ncclResult_t r, const char *what) {
  return pf_diag_error(diag, r == ncclInvalidArgument || r == ncclInvalidUsage ? PF_EINVAL : PF_ESYS,
                       "NCCL: %s: %s", what, nccl.error_string(r));
}

int pf_nccl_id(uint8_t *id, pf_diag *diag) {
  ncclUniqueId u;
  ncclResult_t r;
  if (!pf_nccl_available()) return pf_diag_error(diag, PF_ENOTSUP, "NCCL is not loaded");
  if ((r = nccl.get_unique_id(&u)) != ncclSuccess)
    return nccl_error(diag, r, "making a communicator id");
  memcpy(id, u.internal, PF_NCCL_ID_BYTES);
  return 0;
}

int pf_nccl_join(int ordinal, const uint8_t *id, int n, int me, void **comm, pf_diag *diag) {
  ncclUniqueId u;
  ncclComm_t c;
  ncclResult_t r;
  cudaError_t err;
  *comm = NULL;
  if (!pf_nccl_available()) return pf_diag_error(diag, PF_ENOTSUP, "NCCL is not loaded");
  if (n < 1 || me < 0 || me >= n)
    return pf_diag_error(diag, PF_EINVAL, "NCCL: member %d of %d", me, n);
  /* The communicator is the current device's. */
  if ((err = cudaSetDevice(ordinal)) != cudaSuccess)
    return pf_diag_error(diag, PF_ESYS, "NCCL: GPU %d: %s", ordinal, cudaGetErrorString(err));
  memcpy(u.internal, id, PF_NCCL_ID_BYTES);
  if ((r = nccl.comm_init_rank(&c, n, u, me)) != ncclSuccess)
    return nccl_error(diag, r, "joining a communicator");
  *comm = c;
  return 0;
}

void pf_nccl_leave(void *comm) {
  if (comm != NULL && nccl.ok) (void)nccl.comm_destroy((ncclComm_t)comm);
}

int pf_nccl_collective(cudaStream_t stream, void *comm, pf_collective_kind kind,
                       pf_reduce_op reduce_op, pf_dtype dtype, size_t count, int root,
                       const void *in, void *out, pf_diag *diag) {
  static const int types[PF_DTYPE_COUNT] = {
      [PF_F32] = ncclFloat32, [PF_F64] = ncclFloat64, [PF_I32] = ncclInt32,
      [PF_I64] = ncclInt64,   [PF_U8] = ncclUint8,    [PF_BF16] = ncclBfloat16,
      [PF_F16] = ncclFloat16};
  static const ncclRedOp_t ops[PF_REDUCE_COUNT] = {
      [PF_REDUCE_SUM] = ncclSum, [PF_REDUCE_MAX] = ncclMax, [PF_REDUCE_MIN] = ncclMin,
      [PF_REDUCE_MEAN] = ncclAvg};
  ncclResult_t r;
  if ((unsigned)dtype >= PF_DTYPE_COUNT)
    return pf_diag_error(diag, PF_ENOTSUP, "NCCL: dtype %d", (int)dtype);
  if (kind == PF_ALLREDUCE) {
    int integer = dtype == PF_I32 || dtype == PF_I64 || dtype == PF_U8;
    if ((unsigned)reduce_op >= PF_REDUCE_COUNT || (reduce_op == PF_REDUCE_MEAN && integer))
      return pf_diag_error(diag, PF_ENOTSUP, "NCCL: reduction %d on %s", (int)reduce_op,
                           pf_dtype_name(dtype));
    r = nccl.all_reduce(in, out, count, (ncclDataType_t)types[dtype], ops[reduce_op],
                      (ncclComm_t)comm, stream);
  } else if (kind == PF_BROADCAST) {
    r = nccl.broadcast(in, out, count, (ncclDataType_t)types[dtype], root, (ncclComm_t)comm,
                       stream);
  } else if (kind == PF_ALLGATHER) {
    r = nccl.all_gather(in, out, count, (ncclDataType_t)types[dtype], (ncclComm_t)comm, stream);
  } else if (kind == PF_REDUCE_SCATTER) {
    int integer = dtype == PF_I32 || dtype == PF_I64 || dtype == PF_U8;
    if ((unsigned)reduce_op >= PF_REDUCE_COUNT || (reduce_op == PF_REDUCE_MEAN && integer))
      return pf_diag_error(diag, PF_ENOTSUP, "NCCL: reduction %d on %s", (int)reduce_op,
                           pf_dtype_name(dtype));
    r = nccl.reduce_scatter(in, out, count, (ncclDataType_t)types[dtype], ops[reduce_op],
                            (ncclComm_t)comm, stream);
  } else if (kind == PF_ALL_TO_ALL) {
    /* NCCL has no all-to-all call: a group of sends and receives, one pair
     * per member, chunk k to and from member k. */
    size_t chunk = count * pf_dtype_size(dtype);
    int n = 0;
    if ((r = nccl.comm_count((ncclComm_t)comm, &n)) != ncclSuccess)
      return nccl_error(diag, r, "all-to-all");
    if ((r = nccl.group_start()) != ncclSuccess) return nccl_error(diag, r, "all-to-all");
    for (int k = 0; k < n && r == ncclSuccess; k++) {
      r = nccl.send((const char *)in + (size_t)k * chunk, count, (ncclDataType_t)types[dtype], k,
                    (ncclComm_t)comm, stream);
      if (r == ncclSuccess)
        r = nccl.recv((char *)out + (size_t)k * chunk, count, (ncclDataType_t)types[dtype], k,
                      (ncclComm_t)comm, stream);
    }
    {
      ncclResult_t e = nccl.group_end();
      if (r == ncclSuccess) r = e;
    }
  } else {
    return pf_diag_error(diag, PF_ENOTSUP, "NCCL: collective kind %d", (int)kind);
  }
  return r == ncclSuccess ? 0 : nccl_error(diag, r, "collective");
}

#else /* no NCCL: collectives over GPUs are staged through the host */

int pf_nccl_available(void) { return 0; }

int pf_nccl_id(uint8_t *id, pf_diag *diag) {
  (void)id;
  return pf_diag_error(diag, PF_ENOTSUP, "built without NCCL");
}

int pf_nccl_join(int ordinal, const uint8_t *id, int n, int me, void **comm, pf_diag *diag) {
  (void)ordinal;
  (void)id;
  (void)n;
  (void)me;
  *comm = NULL;
  return pf_diag_error(diag, PF_ENOTSUP, "built without NCCL");
}

void pf_nccl_leave(void *comm) { (void)comm; }

int pf_nccl_collective(cudaStream_t stream, void *comm, pf_collective_kind kind,
                       pf_reduce_op reduce_op, pf_dtype dtype, size_t count, int root,
                       const void *in, void *out, pf_diag *diag) {
  (void)stream;
  (void)comm;
  (void)kind;
  (void)reduce_op;
  (void)dtype;
  (void)count;
  (void)root;
  (void)in;
  (void)out;
  return pf_diag_error(diag, PF_ENOTSUP, "built without NCCL");
}

#endif
