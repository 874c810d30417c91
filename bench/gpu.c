/* gpu: the CUDA backend against the CUDA calls it wraps, on one GPU.
 *
 * Each figure is pathflow's path and its baseline in the same run,
 * alternated (A, B, A, B, ...) so that clocks and other load hit both, with
 * the median of the rounds and the ratio pathflow / baseline:
 *
 *   matmul       4096x4096x4096 f32 through the CUDA matmul kernel
 *                (cuda/kernels.h, cuBLAS behind it) vs cublasSgemm called
 *                directly on the same stream, in TFLOP/s (CUDA events)
 *   tiny matmul  8x8x8 f32, many in a row, host time per op: the
 *                launcher's own cost over a direct cublasSgemm, in us
 *   h2d, d2h     256 MiB between device memory and a pinned staging buffer
 *                of the pool (cuda/pool.h), cudaMemcpyAsync on the stream,
 *                vs cudaMemcpy from cudaMallocHost memory, in GB/s
 *
 * Prints one line per figure, "gpu: NAME pathflow X baseline Y ratio R
 * UNIT", for scripts/gpu-check to collect. Exit 77 without a GPU.
 *
 * Usage: gpu [-r ROUNDS (7)]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include "base/diag.h"
#include "base/util.h"
#include "cuda/discover.h"
#include "cuda/kernels.h"
#include "cuda/pool.h"
#include "pathflow/attrs.h"

#define CHECK(call)                                                          \
  do {                                                                       \
    cudaError_t e_ = (call);                                                 \
    if (e_ != cudaSuccess) {                                                 \
      fprintf(stderr, "gpu: %s: %s\n", #call, cudaGetErrorString(e_));       \
      exit(1);                                                               \
    }                                                                        \
  } while (0)

#define MAX_ROUNDS 64

static int rounds = 7;


static void report(const char *name, double *a, double *b, const char *unit) {
  double ma = pf_median(a, (size_t)rounds), mb = pf_median(b, (size_t)rounds);
  printf("gpu: %-12s pathflow %10.3f baseline %10.3f ratio %6.3f %s\n", name,
         ma, mb, ma / mb, unit);
  fflush(stdout);
}

static void die_diag(const char *what, int rc, const pf_diag *d) {
  fprintf(stderr, "gpu: %s: %s: %s\n", what, pf_errname(rc), d->msg);
  exit(1);
}

/* One matmul call of n x n x n through the CUDA kernel. */
typedef struct mm {
  pf_cuda_stream *s;
  const pf_cuda_kernel *k;
  pf_view in[2], out[1];
  pf_kernel_call call;
  pf_diag diag;
  int64_t n;
} mm;

static void mm_init(mm *m, pf_cuda_stream *s, int64_t n) {
  size_t bytes = (size_t)(n * n) * sizeof(float);
  float *host = malloc(bytes);
  memset(m, 0, sizeof *m);
  m->s = s;
  m->n = n;
  m->k = pf_cuda_kernel_find("matmul");
  for (int64_t i = 0; i < n * n; i++) host[i] = (float)((i * 7919) % 1000) / 1000.0f - 0.5f;
  for (int i = 0; i < 2; i++) {
    m->in[i].spec = pf_spec_2d(PF_F32, n, n);
    CHECK(cudaMalloc(&m->in[i].data, bytes));
    CHECK(cudaMemcpy(m->in[i].data, host, bytes, cudaMemcpyHostToDevice));
  }
  m->out[0].spec = pf_spec_2d(PF_F32, n, n);
  CHECK(cudaMalloc(&m->out[0].data, bytes));
  pf_diag_init(&m->diag);
  m->call = (pf_kernel_call){.attrs = NULL, .n_in = 2, .in = m->in, .n_out = 1,
                             .out = m->out, .num_shards = 1, .diag = &m->diag};
  free(host);
}

static void mm_free(mm *m) {
  for (int i = 0; i < 2; i++) CHECK(cudaFree(m->in[i].data));
  CHECK(cudaFree(m->out[0].data));
}

static void mm_pathflow(mm *m) {
  int rc = m->k->compute(&m->call, m->s);
  if (rc != 0) die_diag("matmul", rc, &m->diag);
}

/* The same product as cuda/kernels.c asks of cuBLAS, row-major. */
static void mm_direct(mm *m) {
  const float one = 1, zero = 0;
  int n = (int)m->n;
  if (cublasSgemm(m->s->blas, CUBLAS_OP_N, CUBLAS_OP_N, n, n, n, &one,
                  m->in[1].data, n, m->in[0].data, n, &zero, m->out[0].data,
                  n) != CUBLAS_STATUS_SUCCESS) {
    fprintf(stderr, "gpu: cublasSgemm failed\n");
    exit(1);
  }
}

/* Seconds of GPU time for `iters` calls of fn, by events on the stream. */
static double gpu_time(mm *m, void (*fn)(mm *), int iters) {
  cudaEvent_t a, b;
  float ms;
  CHECK(cudaEventCreate(&a));
  CHECK(cudaEventCreate(&b));
  CHECK(cudaEventRecord(a, m->s->stream));
  for (int i = 0; i < iters; i++) fn(m);
  CHECK(cudaEventRecord(b, m->s->stream));
  CHECK(cudaEventSynchronize(b));
  CHECK(cudaEventElapsedTime(&ms, a, b));
  CHECK(cudaEventDestroy(a));
  CHECK(cudaEventDestroy(b));
  return ms / 1e3;
}

static void bench_matmul(pf_cuda_stream *s) {
  double a[MAX_ROUNDS], b[MAX_ROUNDS];
  int64_t n = 4096;
  int iters = 20;
  double flop = 2.0 * (double)n * (double)n * (double)n * iters;
  mm m;
  mm_init(&m, s, n);
  (void)gpu_time(&m, mm_pathflow, 3); /* warm up: cuBLAS picks its kernel */
  (void)gpu_time(&m, mm_direct, 3);
  for (int r = 0; r < rounds; r++) {
    a[r] = flop / gpu_time(&m, mm_pathflow, iters) / 1e12;
    b[r] = flop / gpu_time(&m, mm_direct, iters) / 1e12;
  }
  report("matmul4096", a, b, "TFLOP/s (f32, higher is better)");
  mm_free(&m);
}

/* Host time per call, the stream drained at the end: for tiny products
 * that is the cost of issuing them. */
static double host_time_per_op(mm *m, void (*fn)(mm *), int iters) {
  uint64_t t0 = pf_now_ns();
  for (int i = 0; i < iters; i++) fn(m);
  CHECK(cudaStreamSynchronize(m->s->stream));
  return (double)(pf_now_ns() - t0) / 1e3 / iters;
}

static void bench_tiny(pf_cuda_stream *s) {
  double a[MAX_ROUNDS], b[MAX_ROUNDS];
  int iters = 20000;
  mm m;
  mm_init(&m, s, 8);
  (void)host_time_per_op(&m, mm_pathflow, 1000);
  (void)host_time_per_op(&m, mm_direct, 1000);
  for (int r = 0; r < rounds; r++) {
    a[r] = host_time_per_op(&m, mm_pathflow, iters);
    b[r] = host_time_per_op(&m, mm_direct, iters);
  }
  report("tiny_matmul", a, b, "us per op (8x8x8 f32, lower is better)");
  mm_free(&m);
}

static void bench_copies(pf_cuda_stream *s, pf_cuda_pool *pool) {
  double h2d[2][MAX_ROUNDS], d2h[2][MAX_ROUNDS];
  size_t bytes = (size_t)256 << 20;
  void *dev, *staging, *pinned;
  pf_diag d;
  int rc;
  pf_diag_init(&d);
  CHECK(cudaMalloc(&dev, bytes));
  if ((rc = pf_cuda_staging_get(pool, bytes, &staging, &d)) != 0)
    die_diag("staging", rc, &d);
  CHECK(cudaMallocHost(&pinned, bytes));
  memset(staging, 1, bytes);
  memset(pinned, 1, bytes);
  for (int r = -1; r < rounds; r++) { /* round -1 warms up */
    uint64_t t;
    double v[4];
    t = pf_now_ns();
    CHECK(cudaMemcpyAsync(dev, staging, bytes, cudaMemcpyHostToDevice, s->stream));
    CHECK(cudaStreamSynchronize(s->stream));
    v[0] = (double)bytes / (double)(pf_now_ns() - t);
    t = pf_now_ns();
    CHECK(cudaMemcpy(dev, pinned, bytes, cudaMemcpyHostToDevice));
    v[1] = (double)bytes / (double)(pf_now_ns() - t);
    t = pf_now_ns();
    CHECK(cudaMemcpyAsync(staging, dev, bytes, cudaMemcpyDeviceToHost, s->stream));
    CHECK(cudaStreamSynchronize(s->stream));
    v[2] = (double)bytes / (double)(pf_now_ns() - t);
    t = pf_now_ns();
    CHECK(cudaMemcpy(pinned, dev, bytes, cudaMemcpyDeviceToHost));
    v[3] = (double)bytes / (double)(pf_now_ns() - t);
    if (r < 0) continue;
    h2d[0][r] = v[0];
    h2d[1][r] = v[1];
    d2h[0][r] = v[2];
    d2h[1][r] = v[3];
  }
  report("h2d", h2d[0], h2d[1], "GB/s (256 MiB, pinned)");
  report("d2h", d2h[0], d2h[1], "GB/s (256 MiB, pinned)");
  (void)pf_cuda_staging_put(pool, staging, NULL);
  CHECK(cudaFreeHost(pinned));
  CHECK(cudaFree(dev));
}

int main(int argc, char **argv) {
  pf_cuda_device_info info[1];
  pf_cuda_stream *s;
  pf_cuda_pool *pool;
  pf_diag d;
  int n = 0, rc;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "-r") == 0 && i + 1 < argc) {
      rounds = atoi(argv[++i]);
    } else {
      fprintf(stderr, "usage: gpu [-r ROUNDS]\n");
      return 2;
    }
  }
  if (rounds < 1 || rounds > MAX_ROUNDS) {
    fprintf(stderr, "gpu: -r takes 1..%d\n", MAX_ROUNDS);
    return 2;
  }
  pf_diag_init(&d);
  if ((rc = pf_cuda_discover(info, 1, &n, &d)) != 0) die_diag("discover", rc, &d);
  if (n == 0) {
    printf("gpu: SKIP: no CUDA GPU visible\n");
    return 77;
  }
  printf("gpu: device %d: %s, %d SMs, sm_%d%d, %.1f GiB\n", info[0].ordinal,
         info[0].name, info[0].sm_count, info[0].cc_major, info[0].cc_minor,
         (double)info[0].total_bytes / (1 << 30));
  if ((rc = pf_cuda_stream_create(info[0].ordinal, &s, &d)) != 0)
    die_diag("stream", rc, &d);
  if ((rc = pf_cuda_pool_create(info[0].ordinal, &pool, &d)) != 0)
    die_diag("pool", rc, &d);
  bench_matmul(s);
  bench_tiny(s);
  bench_copies(s, pool);
  pf_cuda_pool_destroy(pool);
  pf_cuda_stream_destroy(s);
  return 0;
}
