/* train_mpi: the baseline of bench/train.sh, a hand-written data-parallel
 * training loop with MPI and OpenBLAS and no runtime in between: the same
 * model as examples/train_mlp (784-H-10, ReLU, softmax cross-entropy), the
 * same global batch split over the ranks, Adam, f32. Each step: the rank's
 * rows of the batch from the data set in memory, forward and backward with
 * cblas_sgemm, one MPI_Allreduce of all gradients packed in one buffer (the
 * best such a loop does), the Adam update. Prints samples/s over the timed
 * steps on rank 0.
 *
 *   mpirun -np N train_mpi [--hidden H] [--batch B] [--steps S] [--data DIR] */
#include <cblas.h>
#include <math.h>
#include <mpi.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zlib.h>

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* The data bytes of an IDX file (header skipped), or NULL. */
static uint8_t *read_idx(const char *path, size_t n, int header) {
  uint8_t *buf = malloc(n);
  unsigned char skip[16];
  gzFile f = gzopen(path, "rb");
  if (f == NULL || buf == NULL || gzread(f, skip, (unsigned)header) != header ||
      gzread(f, buf, (unsigned)n) != (int)n) {
    fprintf(stderr, "train_mpi: cannot read %s\n", path);
    exit(1);
  }
  gzclose(f);
  return buf;
}

typedef struct adam {
  float *m, *v;
} adam;

/* As pathflow's adam kernel computes it: in f32, the bias corrections
 * folded into two constants, one vectorized loop updating in place. */
static void adam_step(float *restrict p, const float *restrict g, float *restrict m,
                      float *restrict v, size_t n, int t, float lr) {
  const double b1 = 0.9, b2 = 0.999;
  const float step = (float)(lr / (1 - pow(b1, t))), r = (float)(1 / sqrt(1 - pow(b2, t)));
  const float fb1 = (float)b1, fb2 = (float)b2, ob1 = (float)(1 - b1), ob2 = (float)(1 - b2);
  for (size_t i = 0; i < n; i++) {
    float nm = fb1 * m[i] + ob1 * g[i], nv = fb2 * v[i] + ob2 * g[i] * g[i];
    m[i] = nm;
    v[i] = nv;
    p[i] -= step * nm / (sqrtf(nv) * r + 1e-8f);
  }
}

int main(int argc, char **argv) {
  int hidden = 256, batch = 128, steps = 300, rank, world, in = 784, out = 10;
  const char *dir = "/usr/share/datasets/fashion-mnist";
  char path[1024];
  uint8_t *images, *labels;
  size_t n_w1, n_w2, n_all;
  float *params, *grads, *x, *h, *z, *dz, *dh;
  adam st;
  double t0 = 0;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (strcmp(argv[i], "--hidden") == 0) hidden = atoi(argv[i + 1]);
    else if (strcmp(argv[i], "--batch") == 0) batch = atoi(argv[i + 1]);
    else if (strcmp(argv[i], "--steps") == 0) steps = atoi(argv[i + 1]);
    else if (strcmp(argv[i], "--data") == 0) dir = argv[i + 1];
  }
  MPI_Init(&argc, &argv);
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &world);
  openblas_set_num_threads(1);
  if (batch % world != 0 || steps < 20) {
    if (rank == 0) fprintf(stderr, "train_mpi: the batch must divide over the ranks, steps >= 20\n");
    MPI_Abort(MPI_COMM_WORLD, 2);
  }
  snprintf(path, sizeof path, "%s/train-images-idx3-ubyte.gz", dir);
  images = read_idx(path, 60000u * 784u, 16);
  snprintf(path, sizeof path, "%s/train-labels-idx1-ubyte.gz", dir);
  labels = read_idx(path, 60000u, 8);
  /* All parameters (and so all gradients) in one buffer: w1 b1 w2 b2. */
  n_w1 = (size_t)in * hidden;
  n_w2 = (size_t)hidden * out;
  n_all = n_w1 + hidden + n_w2 + out;
  params = calloc(n_all, sizeof *params);
  grads = calloc(n_all, sizeof *grads);
  st.m = calloc(n_all, sizeof *st.m);
  st.v = calloc(n_all, sizeof *st.v);
  {
    int b = batch / world;
    x = malloc(sizeof *x * (size_t)b * in);
    h = malloc(sizeof *h * (size_t)b * hidden);
    dh = malloc(sizeof *dh * (size_t)b * hidden);
    z = malloc(sizeof *z * (size_t)b * out);
    dz = malloc(sizeof *dz * (size_t)b * out);
  }
  srand(1);
  for (size_t i = 0; i < n_w1; i++) params[i] = ((float)rand() / RAND_MAX * 2 - 1) * sqrtf(6.0f / in);
  for (size_t i = 0; i < n_w2; i++)
    params[n_w1 + hidden + i] = ((float)rand() / RAND_MAX * 2 - 1) * sqrtf(6.0f / hidden);
  for (int s = 0; s < steps; s++) {
    const int b = batch / world, first = (s * batch + rank * b) % (60000 - batch);
    float *w1 = params, *b1 = w1 + n_w1, *w2 = b1 + hidden, *b2 = w2 + n_w2;
    float *g1 = grads, *gb1 = g1 + n_w1, *g2 = gb1 + hidden, *gb2 = g2 + n_w2;
    if (s == 10) { /* warm up, then time */
      MPI_Barrier(MPI_COMM_WORLD);
      t0 = now_s();
    }
    for (int r = 0; r < b; r++)
      for (int j = 0; j < in; j++) x[r * in + j] = images[(size_t)(first + r) * in + j] / 255.0f;
    /* h = relu(x w1 + b1); z = h w2 + b2 */
    for (int r = 0; r < b; r++) memcpy(h + r * hidden, b1, sizeof *h * hidden);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, b, hidden, in, 1, x, in, w1, hidden,
                1, h, hidden);
    for (int i = 0; i < b * hidden; i++) h[i] = h[i] > 0 ? h[i] : 0;
    for (int r = 0; r < b; r++) memcpy(z + r * out, b2, sizeof *z * out);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, b, out, hidden, 1, h, hidden, w2, out,
                1, z, out);
    /* dz = (softmax(z) - onehot) / batch */
    for (int r = 0; r < b; r++) {
      float max = z[r * out], sum = 0;
      for (int o = 1; o < out; o++) max = fmaxf(max, z[r * out + o]);
      for (int o = 0; o < out; o++) sum += dz[r * out + o] = expf(z[r * out + o] - max);
      for (int o = 0; o < out; o++)
        dz[r * out + o] = (dz[r * out + o] / sum - (o == labels[first + r])) / (float)batch;
    }
    /* g2 = h^T dz; gb2 = sum dz; dh = dz w2^T * (h > 0); g1 = x^T dh; gb1 = sum dh */
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, hidden, out, b, 1, h, hidden, dz, out, 0,
                g2, out);
    for (int o = 0; o < out; o++) {
      gb2[o] = 0;
      for (int r = 0; r < b; r++) gb2[o] += dz[r * out + o];
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, b, hidden, out, 1, dz, out, w2, out, 0,
                dh, hidden);
    for (int i = 0; i < b * hidden; i++)
      if (h[i] <= 0) dh[i] = 0;
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, in, hidden, b, 1, x, in, dh, hidden, 0,
                g1, hidden);
    for (int j = 0; j < hidden; j++) {
      gb1[j] = 0;
      for (int r = 0; r < b; r++) gb1[j] += dh[r * hidden + j];
    }
    MPI_Allreduce(MPI_IN_PLACE, grads, (int)n_all, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
    adam_step(params, grads, st.m, st.v, n_all, s + 1, 0.001f);
  }
  MPI_Barrier(MPI_COMM_WORLD);
  if (rank == 0)
    printf("train_mpi: %d ranks, 784-%d-10, batch %d: %.0f samples/s\n", world, hidden, batch,
           (double)(steps - 10) * batch / (now_s() - t0));
  MPI_Finalize();
  return 0;
}
