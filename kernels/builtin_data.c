/* Data sets on the executors: idx_read loads an IDX file (MNIST's format,
 * gzip or plain) into a device buffer once; batch_rows picks a step's
 * batch from it on the device, in an order drawn from a seed and the
 * epoch. Nothing passes through the controller but the step number.
 *
 * Partitioned (attribute split_rows of idx_read, partitioned of
 * batch_rows): device s of k keeps only rows [s n/k, (s+1) n/k) of the
 * file, and each step takes its rows of the batch from a permutation of
 * that part drawn from (seed, epoch, s): the layout depends on the device's
 * place in the slice, not on how the devices are spread over ranks, so one
 * rank with two devices computes what two ranks with one device do. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "base/util.h"
#include "kernels/builtin_internal.h"
#include "kernels/sharding.h"
#include "pathflow/error.h"

/* ---- idx_read ------------------------------------------------------------ */

/* The IDX header: 0, 0, a type byte (0x08: unsigned bytes), the rank, then
 * one big-endian u32 per dimension. */
static int read_header(gzFile f, const char *path, pf_spec *file, pf_diag *diag) {
  unsigned char head[4], d[4];
  if (gzread(f, head, 4) != 4)
    return pf_diag_error(diag, PF_EDECODE, "idx_read: %s: truncated: no IDX header",
                         path);
  if (head[0] != 0 || head[1] != 0 || head[2] != 0x08 || head[3] < 1 ||
      head[3] > PF_MAX_RANK)
    return pf_diag_error(diag, PF_EDECODE,
                         "idx_read: %s: not an IDX file of unsigned bytes (header "
                         "%02x %02x %02x %02x; expected 00 00 08 and a rank of 1 "
                         "to %d)",
                         path, head[0], head[1], head[2], head[3], PF_MAX_RANK);
  file->dtype = PF_U8;
  file->rank = head[3];
  for (int i = 0; i < file->rank; i++) {
    if (gzread(f, d, 4) != 4)
      return pf_diag_error(diag, PF_EDECODE,
                           "idx_read: %s: truncated in the header (dimension %d)",
                           path, i);
    file->dims[i] = (int64_t)d[0] << 24 | (int64_t)d[1] << 16 | (int64_t)d[2] << 8 | d[3];
  }
  return 0;
}

static int idx_read_shape(const pf_attrs *attrs, int n_in, const pf_spec *in,
                          int n_out, pf_spec *out, pf_diag *diag) {
  const int64_t *dims;
  int n = pf_attrs_get_ints(attrs, "shape", &dims);
  const char *path = pf_attrs_get_string(attrs, "path", NULL);
  int64_t split;
  int rc;
  if ((rc = pf_builtin_int_attr("idx_read", attrs, "split_rows", 0, 0, 1, &split, diag)) != 0)
    return rc;
  (void)n_in;
  (void)in;
  (void)n_out;
  if (path == NULL || path[0] == '\0')
    return pf_diag_error(diag, PF_EINVAL, "idx_read: attribute path (a string) is missing");
  if (n < 1 || n > PF_MAX_RANK)
    return pf_diag_error(diag, PF_EINVAL,
                         "idx_read: attribute shape (the file's dimensions, 1 to %d "
                         "of them, trailing ones possibly flattened) is missing",
                         PF_MAX_RANK);
  out[0] = pf_spec_make(PF_U8, n, dims);
  if (pf_spec_check(&out[0]) != 0)
    return pf_diag_error(diag, PF_EINVAL, "idx_read: attribute shape is not a shape");
  return 0;
}

/* 1 if `want` is `file` with its trailing dimensions merged into the last
 * one (or `file` itself): [N, 28, 28] may be read as [N, 784], never as
 * [N, 28 * 14, 2]. */
static int flattens(const pf_spec *file, const pf_spec *want) {
  int64_t tail = 1;
  if (want->rank > file->rank || want->rank < 1) return 0;
  for (int i = 0; i < want->rank - 1; i++)
    if (file->dims[i] != want->dims[i]) return 0;
  for (int i = want->rank - 1; i < file->rank; i++) tail *= file->dims[i];
  return tail == want->dims[want->rank - 1];
}

/* Reads the file into the output after checking that its header says what
 * the graph was built with, and that no byte is missing. Split by rows
 * ("shape" is then one device's part), device s keeps part s: a gzip
 * stream cannot be entered in the middle, so it decompresses the rows
 * before its part without keeping them and stops after its part; the last
 * device reads to the end, checking the stream's CRC and that nothing
 * follows. */
static int idx_read_compute(const pf_kernel_call *call) {
  const char *path = pf_attrs_get_string(call->attrs, "path", "");
  const pf_spec *part = &call->out[0].spec;
  int split = pf_attrs_get_int(call->attrs, "split_rows", 0) != 0;
  int64_t k = split ? call->num_shards : 1;
  pf_spec whole = *part;
  char a[PF_BUILTIN_SPEC_STR], b[PF_BUILTIN_SPEC_STR];
  size_t total = pf_spec_nbytes(part), got = 0;
  size_t skip = split ? total * (size_t)call->shard : 0;
  unsigned char extra;
  pf_spec file;
  int rc = 0, last = !split || call->shard == k - 1;
  const pf_spec *want = &whole;
  gzFile f = gzopen(path, "rb");
  if (f == NULL)
    return pf_diag_error(call->diag, errno == ENOENT ? PF_ENOTFOUND : PF_ESYS,
                         "idx_read: cannot open %s: %s%s", path, strerror(errno),
                         strstr(path, "fashion-mnist")
                             ? " (install Debian's dataset-fashion-mnist: "
                               "scripts/install-deps does)"
                             : "");
  whole.dims[0] *= k;
  if ((rc = read_header(f, path, &file, call->diag)) != 0) goto done;
  if (!flattens(&file, want)) {
    rc = pf_diag_error(call->diag, PF_EDECODE,
                       "idx_read: %s holds %s; the graph expects %s%s", path,
                       pf_spec_str(&file, a, sizeof a), pf_spec_str(want, b, sizeof b),
                       split ? " (its rows split over the devices)" : "");
    goto done;
  }
  while (skip > 0) { /* the rows of the parts before this one */
    char scratch[1 << 16];
    int n = gzread(f, scratch, skip > sizeof scratch ? (unsigned)sizeof scratch : (unsigned)skip);
    if (n <= 0) break;
    skip -= (size_t)n;
  }
  while (skip == 0 && got < total) {
    unsigned chunk = total - got > (1u << 30) ? 1u << 30 : (unsigned)(total - got);
    int n = gzread(f, (char *)call->out[0].data + got, chunk);
    if (n <= 0) break;
    got += (size_t)n;
  }
  if (got < total) {
    int zerr;
    const char *why = gzerror(f, &zerr);
    rc = pf_diag_error(call->diag, PF_EDECODE,
                       "idx_read: %s: truncated or corrupt: %zu of %zu data bytes "
                       "read (%s)",
                       path, got, total, zerr != Z_OK ? why : "end of file");
  } else if (last && gzread(f, &extra, 1) != 0) {
    rc = pf_diag_error(call->diag, PF_EDECODE,
                       "idx_read: %s: more data than its header announces", path);
  }
done:
  gzclose(f);
  return rc;
}

/* Whole on every device, or split by rows with attribute split_rows. */
static int idx_read_sharding(const pf_attrs *attrs, int n_in, const pf_spec *in,
                             const pf_sharding *in_sh, int num_devices, int n_out,
                             pf_sharding *out_sh, pf_diag *diag) {
  (void)n_in;
  (void)in;
  (void)in_sh;
  (void)n_out;
  (void)diag;
  out_sh[0] = num_devices > 1 && pf_attrs_get_int(attrs, "split_rows", 0) != 0 ? pf_split(0)
                                                                              : pf_replicated();
  return 0;
}

/* ---- batch_rows ---------------------------------------------------------- */

static int batch_rows_shape(const pf_attrs *attrs, int n_in, const pf_spec *in,
                            int n_out, pf_spec *out, pf_diag *diag) {
  char s[PF_BUILTIN_SPEC_STR];
  int64_t batch, dt, seed;
  double scale;
  int rc;
  (void)n_in;
  (void)n_out;
  int64_t split, part;
  if ((rc = pf_builtin_int_attr("batch_rows", attrs, "batch", 0, 1, INT64_MAX, &batch,
                                diag)) ||
      (rc = pf_builtin_int_attr("batch_rows", attrs, "split_rows", 0, 0, 1, &split, diag)) ||
      (rc = pf_builtin_int_attr("batch_rows", attrs, "partitioned", 0, 0, 1, &part, diag)) ||
      (rc = pf_builtin_int_attr("batch_rows", attrs, "dtype", PF_F32, 0, PF_DTYPE_COUNT - 1,
                                &dt, diag)) ||
      (rc = pf_builtin_int_attr("batch_rows", attrs, "seed", 0, INT64_MIN, INT64_MAX, &seed,
                                diag)) ||
      (rc = pf_builtin_float_attr("batch_rows", attrs, "scale", 1, &scale, diag)))
    return rc;
  if (part && !split)
    return pf_diag_error(diag, PF_EINVAL,
                         "batch_rows: partitioned data (each device holds its part) "
                         "gives a batch split by rows: set split_rows too");
  if (dt != PF_F32 && dt != PF_F64 && dt != PF_I32 && dt != PF_I64)
    return pf_diag_error(diag, PF_EDTYPE,
                         "batch_rows: attribute dtype is %s; expected f32, f64, i32 "
                         "or i64",
                         pf_dtype_name((pf_dtype)dt));
  if (in[0].dtype != PF_U8 || in[0].rank < 1)
    return pf_diag_error(diag, PF_EDTYPE, "batch_rows: input 0 is %s; expected u8 rows",
                         pf_spec_str(&in[0], s, sizeof s));
  if (in[1].dtype != PF_I64 || in[1].rank != 0)
    return pf_diag_error(diag, PF_ESHAPE,
                         "batch_rows: input 1 is %s; expected the step, an i64 scalar",
                         pf_spec_str(&in[1], s, sizeof s));
  if (batch > in[0].dims[0])
    return pf_diag_error(diag, PF_ESHAPE,
                         "batch_rows: attribute batch is %lld but input 0 has %lld rows",
                         (long long)batch, (long long)in[0].dims[0]);
  out[0] = in[0];
  out[0].dtype = (pf_dtype)dt;
  out[0].dims[0] = batch;
  return 0;
}

/* Row r of epoch e's order: a Fisher-Yates shuffle of 0..n-1 driven by a
 * counter-based generator keyed by (seed, epoch), so every device and rank
 * draws the same order with no state. */
static void epoch_order(uint64_t seed, int64_t epoch, int64_t n, int64_t *order) {
  uint64_t key = pf_builtin_mix64(seed ^ pf_builtin_mix64((uint64_t)epoch + 0x9e3779b97f4a7c15ull));
  for (int64_t i = 0; i < n; i++) order[i] = i;
  for (int64_t i = n - 1; i > 0; i--) {
    int64_t j = (int64_t)(pf_builtin_mix64(key + (uint64_t)i) % (uint64_t)(i + 1)), t = order[i];
    order[i] = order[j];
    order[j] = t;
  }
}

/* The order of (seed, epoch) over n rows, drawn once per epoch per thread:
 * drawing 60,000 rows costs about as much as a whole small training step,
 * and every step of the epoch (on every device thread) needs the same one.
 * NULL when out of memory. */
typedef struct order_cache {
  int64_t *order, n, epoch;
  uint64_t seed;
} order_cache;

static pthread_key_t cache_key;
static pthread_once_t cache_once = PTHREAD_ONCE_INIT;

static void cache_free(void *p) {
  order_cache *c = p;
  free(c->order);
  free(c);
}

static void cache_key_make(void) { (void)pthread_key_create(&cache_key, cache_free); }

/* The thread's cache, freed when the thread ends. NULL when out of memory. */
static const int64_t *cached_order(uint64_t seed, int64_t epoch, int64_t n) {
  order_cache *c;
  pthread_once(&cache_once, cache_key_make);
  if ((c = pthread_getspecific(cache_key)) == NULL) {
    if ((c = calloc(1, sizeof *c)) == NULL) return NULL;
    if (pthread_setspecific(cache_key, c) != 0) {
      free(c);
      return NULL;
    }
  }
  if (c->order == NULL || c->n != n || c->epoch != epoch || c->seed != seed) {
    int64_t *o = realloc(c->order, (size_t)(n > 0 ? n : 1) * sizeof *o);
    if (o == NULL) return NULL;
    c->order = o;
    c->n = n;
    c->epoch = epoch;
    c->seed = seed;
    epoch_order(seed, epoch, n, o);
  }
  return c->order;
}

/* Output rows: this device's block of the step's global batch. With the
 * output split by rows over k devices, the global batch is k x `batch`
 * rows and device s takes rows s*batch.. of it, so k devices see exactly
 * the rows one device with batch k x `batch` would. An epoch is the
 * floor(n / global batch) steps; the rest of the order is skipped.
 * Partitioned, input 0 is device s's part (n rows of its own): it takes
 * `batch` rows a step from the order of its part under (seed, epoch, s),
 * floor(n / batch) steps an epoch (the same count: n and the batch are both
 * the global ones over k). */
static int batch_rows_compute(const pf_kernel_call *call) {
  const pf_spec *ds = &call->in[0].spec, *os = &call->out[0].spec;
  int64_t n = ds->dims[0], b = os->dims[0], k = call->num_shards;
  int64_t step = *(const int64_t *)call->in[1].data, row = pf_spec_numel(ds) / (n ? n : 1);
  int split = pf_attrs_get_int(call->attrs, "split_rows", 0) != 0;
  int part = pf_attrs_get_int(call->attrs, "partitioned", 0) != 0;
  int64_t global = split && !part ? b * k : b, per_epoch, epoch, first;
  const int64_t *order;
  uint64_t seed = (uint64_t)pf_attrs_get_int(call->attrs, "seed", 0);
  double scale = pf_attrs_get_float(call->attrs, "scale", 1);
  const uint8_t *src = call->in[0].data;
  if (global > n)
    return pf_diag_error(call->diag, PF_ESHAPE,
                         "batch_rows: a global batch of %lld rows from %lld", (long long)global,
                         (long long)n);
  if (step < 0)
    return pf_diag_error(call->diag, PF_EINVAL, "batch_rows: step %lld is negative",
                         (long long)step);
  per_epoch = n / global;
  epoch = step / per_epoch;
  first = (step % per_epoch) * global + (split && !part ? call->shard * b : 0);
  if (part) /* a key per part: (seed, shard) mixed, never the bare seed */
    seed = pf_builtin_mix64(seed ^ pf_builtin_mix64((uint64_t)call->shard + 0x632be59bd9b4e019ull));
  if ((order = cached_order(seed, epoch, n)) == NULL)
    return pf_diag_error(call->diag, PF_ENOMEM, "batch_rows: out of memory");
  for (int64_t r = 0; r < b; r++) {
    const uint8_t *x = src + order[first + r] * row;
    switch (os->dtype) {
      case PF_F32: {
        float *o = (float *)call->out[0].data + r * row, fs = (float)scale;
        for (int64_t j = 0; j < row; j++) o[j] = (float)x[j] * fs;
      } break;
      case PF_F64: {
        double *o = (double *)call->out[0].data + r * row;
        for (int64_t j = 0; j < row; j++) o[j] = x[j] * scale;
      } break;
      case PF_I32: {
        int32_t *o = (int32_t *)call->out[0].data + r * row;
        for (int64_t j = 0; j < row; j++) o[j] = (int32_t)x[j];
      } break;
      default: {
        int64_t *o = (int64_t *)call->out[0].data + r * row;
        for (int64_t j = 0; j < row; j++) o[j] = (int64_t)x[j];
      } break;
    }
  }
  return 0;
}

/* The data and the step whole on every device, or with attribute
 * partitioned the data split by rows (each device's part). The kernel
 * reads whether its output is split from attribute split_rows (it cannot
 * see shardings), so the attribute decides the layout: split by rows with
 * it, whole without. */
static int batch_rows_sharding(const pf_attrs *attrs, int n_in, const pf_spec *in,
                               const pf_sharding *in_sh, int num_devices, int n_out,
                               pf_sharding *out_sh, pf_diag *diag) {
  (void)in;
  (void)n_out;
  if (num_devices > 1 && pf_attrs_get_int(attrs, "partitioned", 0) != 0) {
    if (in_sh[0].kind != PF_SHARD_SPLIT || in_sh[0].axis != 0 ||
        in_sh[1].kind != PF_SHARD_REPLICATED)
      return pf_sharding_refuse(diag, "batch_rows", n_in, in_sh,
                                "partitioned: the data set split by rows (each device's "
                                "part) and the step whole");
  } else if (num_devices > 1 &&
             pf_sharding_count(n_in, in_sh, PF_SHARD_REPLICATED) != n_in) {
    return pf_sharding_refuse(diag, "batch_rows", n_in, in_sh,
                              "the data set and the step must be whole on every device");
  }
  out_sh[0] = pf_attrs_get_int(attrs, "split_rows", 0) != 0 ? pf_split(0) : pf_replicated();
  return 0;
}

static const pf_kernel_def defs[] = {
    {.name = "idx_read", .n_in = 0, .n_out = 1, .shape = idx_read_shape,
     .sharding = idx_read_sharding, .compute = idx_read_compute},
    {.name = "batch_rows", .n_in = 2, .n_out = 1, .shape = batch_rows_shape,
     .cost = pf_builtin_cost_numel, .sharding = batch_rows_sharding,
     .compute = batch_rows_compute},
};

int pf_builtin_register_data(pf_registry *reg) {
  return pf_builtin_add_all(reg, defs, PF_ARRAY_LEN(defs));
}
