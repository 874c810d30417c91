/* The CUDA device's box copies (pf_cuda_box_pieces): the 3D copies it
 * would hand cudaMemcpy3D are performed here on host memory, as CUDA
 * defines them (pitched pointers, positions in bytes and rows), and must
 * move exactly what pf_box_copy moves, for random boxes of every rank.
 * Needs no GPU: it runs everywhere the backend is built. */
#include <string.h>

#include "cuda_testing.h"

#include "base/box.h"
#include "runtime/device_cuda.h"

/* cudaMemcpy3D on host memory. */
static int host_piece(void *arg, const struct cudaMemcpy3DParms *p) {
  int *pieces = arg;
  (*pieces)++;
  assert_true(p->srcPos.x + p->extent.width <= p->srcPtr.xsize);
  assert_true(p->dstPos.x + p->extent.width <= p->dstPtr.xsize);
  assert_true(p->srcPos.y + p->extent.height <= p->srcPtr.ysize);
  assert_true(p->dstPos.y + p->extent.height <= p->dstPtr.ysize);
  for (size_t z = 0; z < p->extent.depth; z++)
    for (size_t y = 0; y < p->extent.height; y++)
      memcpy((char *)p->dstPtr.ptr +
                 ((p->dstPos.z + z) * p->dstPtr.ysize + p->dstPos.y + y) * p->dstPtr.pitch +
                 p->dstPos.x,
             (const char *)p->srcPtr.ptr +
                 ((p->srcPos.z + z) * p->srcPtr.ysize + p->srcPos.y + y) * p->srcPtr.pitch +
                 p->srcPos.x,
             p->extent.width);
  return 0;
}

static uint64_t rng = 7;
static int64_t rnd(int64_t n) { /* [0, n) */
  rng = rng * 6364136223846793005ull + 1442695040888963407ull;
  return (int64_t)((rng >> 33) % (uint64_t)n);
}

static void test_random_boxes(void **state) {
  (void)state;
  for (int trial = 0; trial < 3000; trial++) {
    int rank = (int)rnd(PF_MAX_RANK + 1);
    int64_t sd[PF_MAX_RANK], dd[PF_MAX_RANK], sn = 1, dn = 1;
    size_t elem = (size_t)1 << rnd(4);
    pf_box b;
    unsigned char *src, *want, *got;
    int pieces = 0;
    memset(&b, 0, sizeof b);
    b.rank = rank;
    for (int a = 0; a < rank; a++) {
      /* Often whole along an axis (those merge), sometimes not. */
      int whole = rnd(2) == 0;
      sd[a] = 1 + rnd(4);
      dd[a] = whole ? sd[a] : 1 + rnd(4);
      b.extent[a] = whole ? sd[a] : 1 + rnd(sd[a] < dd[a] ? sd[a] : dd[a]);
      b.src_offset[a] = rnd(sd[a] - b.extent[a] + 1);
      b.dst_offset[a] = rnd(dd[a] - b.extent[a] + 1);
      sn *= sd[a];
      dn *= dd[a];
    }
    src = malloc((size_t)sn * elem);
    want = malloc((size_t)dn * elem);
    got = malloc((size_t)dn * elem);
    for (int64_t k = 0; k < sn * (int64_t)elem; k++) src[k] = (unsigned char)rnd(256);
    for (int64_t k = 0; k < dn * (int64_t)elem; k++) want[k] = got[k] = (unsigned char)rnd(256);
    pf_box_copy(want, dd, src, sd, &b, elem);
    assert_int_equal(pf_cuda_box_pieces(got, dd, src, sd, &b, elem, cudaMemcpyDefault, host_piece,
                                        &pieces),
                     0);
    if (memcmp(want, got, (size_t)dn * elem) != 0) fail_msg("trial %d (rank %d) differs", trial, rank);
    /* A box of rank 3 or less is one cudaMemcpy3D. */
    if (rank <= 3) assert_int_equal(pieces, 1);
    free(src);
    free(want);
    free(got);
  }
}

/* A box whole in both tensors is one contiguous run: one piece, one row. */
static void test_whole_is_one_run(void **state) {
  int64_t dims[4] = {3, 4, 5, 6};
  float src[360], dst[360];
  pf_box b;
  int pieces = 0;
  (void)state;
  memset(&b, 0, sizeof b);
  b.rank = 4;
  for (int a = 0; a < 4; a++) b.extent[a] = dims[a];
  for (int k = 0; k < 360; k++) src[k] = (float)k;
  assert_int_equal(pf_cuda_box_pieces(dst, dims, src, dims, &b, sizeof(float), cudaMemcpyDefault,
                                      host_piece, &pieces),
                   0);
  assert_int_equal(pieces, 1);
  assert_memory_equal(dst, src, sizeof src);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_random_boxes),
      cmocka_unit_test(test_whole_is_one_run),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
