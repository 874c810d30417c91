/* fake_idx DIR: writes Fashion-MNIST-shaped data, in the same gzip'd IDX
 * files examples/train_mlp reads (train 60000 and test 10000 images of
 * 28x28 u8 pixels, labels 0-9), with pseudo-random contents. For timing a
 * training step where the real data set is not installed (a GPU machine
 * lent for minutes: bench/gpu_train.sh --fake-data); the rate does not
 * depend on the pixels, the accuracy does (it stays at chance). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

static uint64_t state = 0x9e3779b97f4a7c15ull;

static uint64_t next(void) { /* splitmix64 */
  uint64_t z = (state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

static int put_be32(gzFile f, uint32_t v) {
  unsigned char b[4] = {(unsigned char)(v >> 24), (unsigned char)(v >> 16),
                        (unsigned char)(v >> 8), (unsigned char)v};
  return gzwrite(f, b, 4) == 4 ? 0 : -1;
}

/* One IDX file: magic (u8, rank), dims, then n bytes of data. */
static int write_idx(const char *dir, const char *name, int rank, const uint32_t *dims,
                     int labels) {
  char path[4096];
  unsigned char buf[1 << 16];
  uint64_t total = 1;
  gzFile f;
  snprintf(path, sizeof path, "%s/%s", dir, name);
  if ((f = gzopen(path, "wb1")) == NULL) {
    fprintf(stderr, "fake_idx: cannot write %s\n", path);
    return -1;
  }
  if (put_be32(f, 0x00000800u | (uint32_t)rank) != 0) goto fail;
  for (int i = 0; i < rank; i++) {
    if (put_be32(f, dims[i]) != 0) goto fail;
    total *= dims[i];
  }
  while (total > 0) {
    size_t n = total < sizeof buf ? (size_t)total : sizeof buf;
    for (size_t i = 0; i < n; i++) {
      uint64_t r = next();
      buf[i] = labels ? (unsigned char)(r % 10) : (unsigned char)r;
    }
    if (gzwrite(f, buf, (unsigned)n) != (int)n) goto fail;
    total -= n;
  }
  return gzclose(f) == Z_OK ? 0 : -1;
fail:
  fprintf(stderr, "fake_idx: writing %s failed\n", path);
  gzclose(f);
  return -1;
}

int main(int argc, char **argv) {
  static const uint32_t train[3] = {60000, 28, 28}, test[3] = {10000, 28, 28};
  if (argc != 2) {
    fprintf(stderr, "usage: fake_idx DIR\n");
    return 2;
  }
  return write_idx(argv[1], "train-images-idx3-ubyte.gz", 3, train, 0) ||
                 write_idx(argv[1], "train-labels-idx1-ubyte.gz", 1, train, 1) ||
                 write_idx(argv[1], "t10k-images-idx3-ubyte.gz", 3, test, 0) ||
                 write_idx(argv[1], "t10k-labels-idx1-ubyte.gz", 1, test, 1)
             ? 1
             : 0;
}
