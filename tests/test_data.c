/* Data sets on the executors: idx_read and batch_rows on IDX files written
 * here (gzip and plain), the batches on one device against those split over
 * two, epochs, labels kept beside their images; missing, truncated and
 * corrupt files named in the error; and the real Fashion-MNIST test set
 * from Debian's dataset-fashion-mnist. */
#include "testing.h"

#include <unistd.h>
#include <zlib.h>

static pf_context *ctx;
static char dir[64];

static int setup(void **state) {
  (void)state;
  snprintf(dir, sizeof dir, "/tmp/pf_test_data_XXXXXX");
  if (mkdtemp(dir) == NULL) return -1;
  return pf_init(NULL, NULL, &(pf_init_options){.cpu_devices = 2}, &ctx);
}

static int teardown(void **state) {
  char cmd[128];
  (void)state;
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  if (system(cmd) != 0) return -1;
  return pf_finalize(ctx);
}

/* Writes an IDX file of u8 with `rank` dims; `cut` bytes fewer than the data;
 * `extra` bytes more; gzip or not. Returns its path (static buffer). */
static const char *write_idx(const char *name, int rank, const int64_t *dims,
                             const uint8_t *data, int cut, int extra, int gz) {
  static char path[128];
  uint8_t head[4 + 4 * PF_MAX_RANK];
  size_t n = 1, h = 4;
  snprintf(path, sizeof path, "%s/%s", dir, name);
  head[0] = head[1] = 0;
  head[2] = 0x08;
  head[3] = (uint8_t)rank;
  for (int i = 0; i < rank; i++) {
    n *= (size_t)dims[i];
    for (int b = 3; b >= 0; b--) head[h++] = (uint8_t)(dims[i] >> (8 * b));
  }
  if (gz) {
    gzFile f = gzopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(gzwrite(f, head, (unsigned)h), (int)h);
    if (n - (size_t)cut > 0) assert_int_equal(gzwrite(f, data, (unsigned)(n - (size_t)cut)), (int)(n - (size_t)cut));
    for (int i = 0; i < extra; i++) gzputc(f, 7);
    gzclose(f);
  } else {
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(head, 1, h, f), h);
    assert_int_equal(fwrite(data, 1, n - (size_t)cut, f), n - (size_t)cut);
    for (int i = 0; i < extra; i++) fputc(7, f);
    fclose(f);
  }
  return path;
}

enum { ROWS = 12, H = 2, W = 3 };
static uint8_t images[ROWS * H * W], labels[ROWS];

/* Row r of the images starts with byte r, and its label is r % 10, so a
 * batch shows which rows it took and whether labels follow them. */
static void make_data(void) {
  for (int r = 0; r < ROWS; r++) {
    for (int j = 0; j < H * W; j++) images[r * H * W + j] = (uint8_t)(r * 16 + j);
    labels[r] = (uint8_t)(r % 10);
  }
}

typedef struct loader {
  pf_executable *exe;
} loader;

/* images -> batch_rows(f32, /255), labels -> batch_rows(i64), on n devices
 * with `batch` rows per device, split by rows when n > 1; `part`: each
 * device reads and draws from its part of the rows only. */
static int build_parts(const char *img, const char *lab, int n, int batch, int part,
                       loader *l) {
  pf_graph *g;
  pf_slice_t s;
  pf_value_t d[2], step, x[2];
  const char *paths[2] = {img, lab};
  int rc = 0;
  OK(pf_graph_create(ctx, &g));
  OK(pf_graph_slice(g, PF_DEVICE_CPU, n, &s));
  OK(pf_graph_input(g, "step", &(pf_spec){PF_I64, 0, {0}}, s, pf_replicated(), &step));
  for (int i = 0; i < 2; i++) {
    pf_attrs *a;
    OK(pf_attrs_create(&a));
    OK(pf_attrs_set_string(a, "path", paths[i]));
    OK(pf_attrs_set_ints(a, "shape",
                         i == 0 ? (int64_t[]){ROWS / (part ? n : 1), H, W}
                                : (int64_t[]){ROWS / (part ? n : 1)},
                         i == 0 ? 3 : 1));
    OK(pf_attrs_set_int(a, "split_rows", part));
    OK(pf_graph_program(g, &(pf_program_desc){.kernel = "idx_read", .attrs = a, .slice = s},
                        &d[i], NULL));
    pf_attrs_destroy(a);
    OK(pf_attrs_create(&a));
    OK(pf_attrs_set_int(a, "batch", batch));
    OK(pf_attrs_set_int(a, "seed", 42));
    OK(pf_attrs_set_int(a, "split_rows", n > 1));
    OK(pf_attrs_set_int(a, "partitioned", part));
    OK(pf_attrs_set_int(a, "dtype", i == 0 ? PF_F32 : PF_I64));
    if (i == 0) OK(pf_attrs_set_float(a, "scale", 1.0 / 255));
    OK(pf_graph_program(g, &(pf_program_desc){.kernel = "batch_rows", .attrs = a, .slice = s,
                                              .n_in = 2, .in = (pf_value_t[]){d[i], step}},
                        &x[i], NULL));
    pf_attrs_destroy(a);
  }
  OK(pf_graph_output(g, "x", x[0]));
  OK(pf_graph_output(g, "y", x[1]));
  rc = pf_compile(g, &l->exe);
  pf_graph_destroy(g);
  return rc;
}

static int build(const char *img, const char *lab, int n, int batch, loader *l) {
  return build_parts(img, lab, n, batch, 0, l);
}

/* Runs step `step`; the rows taken (from the images' first bytes) go to
 * rows[], and their labels are checked against them. Returns the wait's
 * code. */
static int take(loader *l, int64_t step, int n_rows, int *rows) {
  pf_tensor *t, *x, *y;
  pf_spec ss = pf_spec_scalar(PF_I64);
  pf_future *f;
  int rc;
  OK(pf_tensor_create(&ss, &t));
  *(int64_t *)pf_tensor_data(t) = step;
  OK(pf_execute(l->exe, 1, &(pf_feed){.name = "step", .tensor = t}, &f));
  rc = pf_future_wait(f);
  if (rc == 0) {
    OK(pf_future_fetch(f, "x", &x));
    OK(pf_future_fetch(f, "y", &y));
    for (int r = 0; r < n_rows; r++) {
      float first = ((float *)pf_tensor_data(x))[r * H * W];
      rows[r] = (int)lroundf(first * 255) / 16;
      assert_int_equal(((int64_t *)pf_tensor_data(y))[r], rows[r] % 10);
      assert_float_equal(((float *)pf_tensor_data(x))[r * H * W + 5], (rows[r] * 16 + 5) / 255.0,
                         1e-6);
    }
    pf_tensor_destroy(x);
    pf_tensor_destroy(y);
  }
  pf_tensor_destroy(t);
  pf_future_destroy(f);
  return rc;
}

static void test_batches(void **state) {
  loader one, two;
  int a[4], b[4], seen[ROWS] = {0};
  char img[128];
  (void)state;
  make_data();
  snprintf(img, sizeof img, "%s", write_idx("img.gz", 3, (int64_t[]){ROWS, H, W}, images, 0, 0, 1));
  OK(build(img, write_idx("lab", 1, (int64_t[]){ROWS}, labels, 0, 0, 0), 1, 4, &one));
  OK(build(img, write_idx("lab", 1, (int64_t[]){ROWS}, labels, 0, 0, 0), 2, 2, &two));
  /* An epoch is 3 steps of 4 rows: every row once. One device and two
   * devices with half the batch each see the same rows. */
  for (int step = 0; step < 3; step++) {
    OK(take(&one, step, 4, a));
    OK(take(&two, step, 4, b));
    for (int r = 0; r < 4; r++) {
      assert_int_equal(a[r], b[r]);
      seen[a[r]]++;
    }
  }
  for (int r = 0; r < ROWS; r++) assert_int_equal(seen[r], 1);
  /* The next epoch draws another order. */
  OK(take(&one, 0, 4, a));
  OK(take(&one, 3, 4, b));
  assert_true(memcmp(a, b, sizeof a) != 0);
  pf_executable_destroy(one.exe);
  pf_executable_destroy(two.exe);
}

/* Partitioned over 2 devices: device 0 holds rows 0-5 and device 1 rows
 * 6-11 (of a gzip file and a plain one); each step's first half comes from
 * part 0, the second from part 1; an epoch of 3 steps takes every row of
 * each part once, the next epoch another order; a file cut short in the
 * last part fails the read naming it. */
static void test_partitioned(void **state) {
  loader two;
  int a[4], b[4], seen[ROWS] = {0};
  char img[128];
  (void)state;
  make_data();
  snprintf(img, sizeof img, "%s", write_idx("pimg.gz", 3, (int64_t[]){ROWS, H, W}, images, 0, 0, 1));
  OK(build_parts(img, write_idx("plab", 1, (int64_t[]){ROWS}, labels, 0, 0, 0), 2, 2, 1, &two));
  for (int step = 0; step < 3; step++) {
    OK(take(&two, step, 4, a));
    for (int r = 0; r < 4; r++) {
      if (r < 2) assert_true(a[r] < ROWS / 2);
      else assert_true(a[r] >= ROWS / 2);
      seen[a[r]]++;
    }
  }
  for (int r = 0; r < ROWS; r++) assert_int_equal(seen[r], 1);
  OK(take(&two, 0, 4, a));
  OK(take(&two, 3, 4, b));
  assert_true(memcmp(a, b, sizeof a) != 0);
  pf_executable_destroy(two.exe);
  snprintf(img, sizeof img, "%s", write_idx("pcut.gz", 3, (int64_t[]){ROWS, H, W}, images, 5, 0, 1));
  OK(build_parts(img, write_idx("plab", 1, (int64_t[]){ROWS}, labels, 0, 0, 0), 2, 2, 1, &two));
  assert_int_not_equal(take(&two, 0, 4, a), 0);
  assert_non_null(strstr(pf_last_error(ctx), "pcut.gz"));
  assert_non_null(strstr(pf_last_error(ctx), "truncated"));
  pf_executable_destroy(two.exe);
}

/* Each failure fails the execution with a message naming the file and what
 * is wrong with it; the context stays usable. */
static void test_bad_files(void **state) {
  static const struct {
    const char *name;
    int rank, cut, extra, gz, bad_header;
    int64_t dims[3];
    const char *words[2];
  } cases[] = {
      {"short.gz", 3, 5, 0, 1, 0, {ROWS, H, W}, {"truncated", "67 of 72"}},
      {"short", 3, 1, 0, 0, 0, {ROWS, H, W}, {"truncated", "71 of 72"}},
      {"long", 3, 0, 3, 0, 0, {ROWS, H, W}, {"more data", "long"}},
      {"other.gz", 3, 0, 0, 1, 0, {ROWS, W, H}, {"u8[12,3,2]", "u8[12,2,3]"}},
      {"garbage", 3, 0, 0, 0, 1, {ROWS, H, W}, {"not an IDX", "garbage"}},
  };
  char lab[128];
  (void)state;
  make_data();
  snprintf(lab, sizeof lab, "%s", write_idx("lab", 1, (int64_t[]){ROWS}, labels, 0, 0, 0));
  for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
    loader l;
    int rows[4], rc;
    const char *p = write_idx(cases[c].name, cases[c].rank, cases[c].dims, images, cases[c].cut,
                              cases[c].extra, cases[c].gz);
    if (cases[c].bad_header) {
      FILE *f = fopen(p, "r+b");
      assert_non_null(f);
      fputc(0x0d, f); /* first header byte */
      fclose(f);
    }
    OK(build(p, lab, 2, 2, &l));
    rc = take(&l, 0, 4, rows);
    assert_int_not_equal(rc, 0);
    for (int w = 0; w < 2; w++)
      if (strstr(pf_last_error(ctx), cases[c].words[w]) == NULL)
        fail_msg("%s: message \"%s\" lacks \"%s\"", cases[c].name, pf_last_error(ctx),
                 cases[c].words[w]);
    pf_executable_destroy(l.exe);
  }
  {
    loader l;
    int rows[4];
    OK(build("/nonexistent/fashion-mnist/x.gz", lab, 1, 4, &l));
    assert_int_not_equal(take(&l, 0, 4, rows), 0);
    assert_non_null(strstr(pf_last_error(ctx), "/nonexistent/fashion-mnist/x.gz"));
    assert_non_null(strstr(pf_last_error(ctx), "dataset-fashion-mnist"));
    pf_executable_destroy(l.exe);
  }
}

/* The real Fashion-MNIST test set: 10,000 labels, 1,000 of each class. */
static void test_fashion_mnist(void **state) {
  const char *path = "/usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz";
  pf_graph *g;
  pf_slice_t s;
  pf_value_t v;
  pf_attrs *a;
  pf_executable *exe;
  pf_future *f;
  pf_tensor *t;
  int count[10] = {0};
  (void)state;
  if (access(path, R_OK) != 0) {
    print_message("skipped: %s is missing (Debian's dataset-fashion-mnist)\n", path);
    skip();
  }
  OK(pf_graph_create(ctx, &g));
  OK(pf_graph_slice(g, PF_DEVICE_CPU, 1, &s));
  OK(pf_attrs_create(&a));
  OK(pf_attrs_set_string(a, "path", path));
  OK(pf_attrs_set_ints(a, "shape", (int64_t[]){10000}, 1));
  OK(pf_graph_program(g, &(pf_program_desc){.kernel = "idx_read", .attrs = a, .slice = s}, &v,
                      NULL));
  pf_attrs_destroy(a);
  OK(pf_graph_output(g, "labels", v));
  OK(pf_compile(g, &exe));
  OK(pf_execute(exe, 0, NULL, &f));
  OK(pf_future_wait(f));
  OK(pf_future_fetch(f, "labels", &t));
  for (int i = 0; i < 10000; i++) {
    uint8_t c = ((uint8_t *)pf_tensor_data(t))[i];
    assert_true(c < 10);
    count[c]++;
  }
  for (int c = 0; c < 10; c++) assert_int_equal(count[c], 1000);
  pf_tensor_destroy(t);
  pf_future_destroy(f);
  pf_executable_destroy(exe);
  pf_graph_destroy(g);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_batches),
      cmocka_unit_test(test_partitioned),
      cmocka_unit_test(test_bad_files),
      cmocka_unit_test(test_fashion_mnist),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
