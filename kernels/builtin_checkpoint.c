/* Checkpoints written and read by the executors themselves: every device
 * writes its own shard of a value to its own file, so no tensor passes
 * through the controller. A file is written whole or not at all: to a
 * temporary name, flushed, fsync'd, renamed, and its directory fsync'd.
 *
 *   checkpoint_save(x, step) -> i64 scalar (bytes written by this device)
 *   checkpoint_load(step)    -> x (spec from attributes "shape", "dtype")
 *   checkpoint_prune(step)   -> i64 scalar (files this device removed)
 *
 * Files are "<dir>/step-<step>/<name>.shard<k>", k the device's shard of the
 * value (every device of a replicated value writes its own copy). A file
 * starts with a header (magic, dtype, rank, dims, layout, shard, shard count,
 * data bytes, CRC-32 of the data) that loading checks before anything is
 * used. Kernels cannot see layouts, so both kernels take the value's layout
 * as attribute "split_axis" (-1: whole on every device), which their
 * sharding rules hold the graph to and the header records. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "base/file.h"
#include "base/util.h"
#include "kernels/builtin_internal.h"
#include "kernels/sharding.h"
#include "pathflow/error.h"

#define MAGIC 0x31544b43504650ull /* "PFPCKT1" */

typedef struct header {
  uint64_t magic;
  int32_t dtype, rank;
  int64_t dims[PF_MAX_RANK];
  int32_t shard, num_shards;
  uint64_t nbytes;
  uint32_t crc;
  int32_t split_axis;
} header;

static int path_of(const pf_kernel_call *call, int64_t step, char *dir, size_t dlen, char *file,
                   size_t flen) {
  const char *root = pf_attrs_get_string(call->attrs, "dir", "");
  const char *name = pf_attrs_get_string(call->attrs, "name", "");
  int a = snprintf(dir, dlen, "%s/step-%lld", root, (long long)step);
  int b = snprintf(file, flen, "%s/%s.shard%d", dir, name, call->shard);
  if (a < 0 || (size_t)a >= dlen || b < 0 || (size_t)b >= flen)
    return pf_diag_error(call->diag, PF_EINVAL, "checkpoint: path too long for \"%s\"", root);
  return 0;
}

static int names_ok(const pf_attrs *attrs, const char *kernel, pf_diag *diag) {
  const char *dir = pf_attrs_get_string(attrs, "dir", NULL);
  const char *name = pf_attrs_get_string(attrs, "name", NULL);
  if (dir == NULL || dir[0] == '\0' || name == NULL || name[0] == '\0' || strchr(name, '/'))
    return pf_diag_error(diag, PF_EINVAL,
                         "%s: attributes dir and name (no '/') are strings it needs", kernel);
  return 0;
}

static int want_step(const char *kernel, const pf_spec *s, int idx, pf_diag *diag) {
  char b[PF_BUILTIN_SPEC_STR];
  if (s->dtype == PF_I64 && s->rank == 0) return 0;
  return pf_diag_error(diag, PF_ESHAPE, "%s: input %d is %s; expected the step, an i64 scalar",
                       kernel, idx, pf_spec_str(s, b, sizeof b));
}

/* ---- save -------------------------------------------------------------------------------- */

static int save_shape(const pf_attrs *attrs, int n_in, const pf_spec *in, int n_out,
                      pf_spec *out, pf_diag *diag) {
  int rc;
  (void)n_in;
  (void)n_out;
  if ((rc = names_ok(attrs, "checkpoint_save", diag)) ||
      (rc = want_step("checkpoint_save", &in[1], 1, diag)))
    return rc;
  out[0] = pf_spec_scalar(PF_I64);
  return 0;
}

static int save_compute(const pf_kernel_call *call) {
  const pf_view *x = &call->in[0];
  int64_t step = *(const int64_t *)call->in[1].data;
  char dir[1024], file[1200];
  header h;
  int rc;
  if ((rc = path_of(call, step, dir, sizeof dir, file, sizeof file)) != 0) return rc;
  memset(&h, 0, sizeof h);
  h.magic = MAGIC;
  h.dtype = x->spec.dtype;
  h.rank = x->spec.rank;
  memcpy(h.dims, x->spec.dims, sizeof h.dims);
  h.shard = call->shard;
  h.num_shards = call->num_shards;
  h.nbytes = pf_spec_nbytes(&x->spec);
  h.crc = (uint32_t)crc32(0, x->data, (uInt)h.nbytes);
  h.split_axis = (int32_t)pf_attrs_get_int(call->attrs, "split_axis", -1);
  if (mkdir(pf_attrs_get_string(call->attrs, "dir", ""), 0777) != 0 && errno != EEXIST)
    return pf_diag_error(call->diag, PF_ESYS, "checkpoint_save: cannot make %s: %s",
                         pf_attrs_get_string(call->attrs, "dir", ""), strerror(errno));
  if (mkdir(dir, 0777) != 0 && errno != EEXIST)
    return pf_diag_error(call->diag, PF_ESYS, "checkpoint_save: cannot make %s: %s", dir,
                         strerror(errno));
  /* Header then data, in a temporary file renamed over the shard's. */
  if ((rc = pf_file_write_atomic(file, (const void *[]){&h, x->data},
                                 (size_t[]){sizeof h, (size_t)h.nbytes}, 2, call->diag)) != 0) {
    pf_diag_prefix(call->diag, "checkpoint_save");
    return rc;
  }
  *(int64_t *)call->out[0].data = (int64_t)(sizeof h + h.nbytes);
  return 0;
}

/* The layout attribute "split_axis" names: whole (-1) or split. */
static pf_sharding layout_of(const pf_attrs *attrs) {
  int64_t a = pf_attrs_get_int(attrs, "split_axis", -1);
  return a < 0 ? pf_replicated() : pf_split((int)a);
}

/* Each device saves its own shard of the value, laid out as split_axis
 * says; the byte counts add up (a partial count) over the slice. */
static int save_sharding(const pf_attrs *attrs, int n_in, const pf_spec *in,
                         const pf_sharding *in_sh, int num_devices, int n_out,
                         pf_sharding *out_sh, pf_diag *diag) {
  pf_sharding want = layout_of(attrs);
  (void)in;
  (void)n_out;
  if (num_devices > 1 &&
      (in_sh[1].kind != PF_SHARD_REPLICATED || in_sh[0].kind != want.kind ||
       (want.kind == PF_SHARD_SPLIT && in_sh[0].axis != want.axis)))
    return pf_sharding_refuse(diag, "checkpoint_save", n_in, in_sh,
                              "the value must be laid out as attribute split_axis says "
                              "(-1: whole) and the step whole");
  out_sh[0] = num_devices > 1 ? pf_partial() : pf_replicated();
  return 0;
}

/* ---- load -------------------------------------------------------------------------------- */

static int load_shape(const pf_attrs *attrs, int n_in, const pf_spec *in, int n_out,
                      pf_spec *out, pf_diag *diag) {
  const int64_t *dims;
  int64_t dt;
  int rc, n = pf_attrs_get_ints(attrs, "shape", &dims);
  (void)n_in;
  (void)n_out;
  if ((rc = names_ok(attrs, "checkpoint_load", diag)) ||
      (rc = want_step("checkpoint_load", &in[0], 0, diag)) ||
      (rc = pf_builtin_int_attr("checkpoint_load", attrs, "dtype", PF_F32, 0,
                                PF_DTYPE_COUNT - 1, &dt, diag)))
    return rc;
  if (n < 0 || n > PF_MAX_RANK)
    return pf_diag_error(diag, PF_EINVAL,
                         "checkpoint_load: attribute shape (the shard's dims) is missing");
  out[0] = pf_spec_make((pf_dtype)dt, n, dims);
  if (pf_spec_check(&out[0]) != 0)
    return pf_diag_error(diag, PF_EINVAL, "checkpoint_load: attribute shape is not a shape");
  return 0;
}

static int load_compute(const pf_kernel_call *call) {
  const pf_spec *want = &call->out[0].spec;
  int64_t step = *(const int64_t *)call->in[0].data;
  char dir[1024], file[1200], a[PF_BUILTIN_SPEC_STR], b[PF_BUILTIN_SPEC_STR];
  pf_spec got;
  header h;
  FILE *f;
  int rc = path_of(call, step, dir, sizeof dir, file, sizeof file);
  if (rc != 0) return rc;
  if ((f = fopen(file, "rb")) == NULL)
    return pf_diag_error(call->diag, errno == ENOENT ? PF_ENOTFOUND : PF_ESYS,
                         "checkpoint_load: cannot open %s: %s", file, strerror(errno));
  if (fread(&h, sizeof h, 1, f) != 1 || h.magic != MAGIC || h.rank < 0 ||
      h.rank > PF_MAX_RANK || h.dtype < 0 || h.dtype >= PF_DTYPE_COUNT) {
    fclose(f);
    return pf_diag_error(call->diag, PF_EDECODE,
                         "checkpoint_load: %s is not a pathflow checkpoint file", file);
  }
  got = pf_spec_make((pf_dtype)h.dtype, h.rank, h.dims);
  if (!pf_spec_equal(&got, want) || h.shard != call->shard || h.num_shards != call->num_shards ||
      h.split_axis != (int32_t)pf_attrs_get_int(call->attrs, "split_axis", -1)) {
    fclose(f);
    return pf_diag_error(call->diag, PF_EDECODE,
                         "checkpoint_load: %s holds shard %d of %d (split axis %d), %s; expected "
                         "shard %d of %d (split axis %lld), %s",
                         file, h.shard, h.num_shards, h.split_axis, pf_spec_str(&got, a, sizeof a),
                         call->shard, call->num_shards,
                         (long long)pf_attrs_get_int(call->attrs, "split_axis", -1),
                         pf_spec_str(want, b, sizeof b));
  }
  if ((h.nbytes && fread(call->out[0].data, h.nbytes, 1, f) != 1) ||
      (uint32_t)crc32(0, call->out[0].data, (uInt)h.nbytes) != h.crc) {
    fclose(f);
    return pf_diag_error(call->diag, PF_EDECODE,
                         "checkpoint_load: %s is truncated or corrupt (its data does not match "
                         "its checksum)",
                         file);
  }
  fclose(f);
  return 0;
}

/* Each device reads its own shard file: the value comes back laid out as
 * it was saved (split_axis; the "shape" attribute is the shard's). */
static int load_sharding(const pf_attrs *attrs, int n_in, const pf_spec *in,
                         const pf_sharding *in_sh, int num_devices, int n_out,
                         pf_sharding *out_sh, pf_diag *diag) {
  (void)in;
  (void)n_out;
  if (num_devices > 1 && in_sh[0].kind != PF_SHARD_REPLICATED)
    return pf_sharding_refuse(diag, "checkpoint_load", n_in, in_sh, "the step must be whole");
  out_sh[0] = num_devices > 1 ? layout_of(attrs) : pf_replicated();
  return 0;
}

/* ---- prune ------------------------------------------------------------------------------- */

/* checkpoint_prune(step): the device removes its own files (".shard<k>",
 * and a ".shard<k>.tmp..." a killed write left) from every "<dir>/step-<n>"
 * with n <= step that is not among the `keep` newest of those, then the
 * directory if that emptied it (another device's files keep it). Run after
 * the manifest names `step`: the checkpoint it names is the newest and
 * stays. Directories past `step` (a write the manifest never named) are
 * left: the run that resumes writes them again. */
static int prune_shape(const pf_attrs *attrs, int n_in, const pf_spec *in, int n_out,
                       pf_spec *out, pf_diag *diag) {
  const char *dir = pf_attrs_get_string(attrs, "dir", NULL);
  int rc;
  (void)n_in;
  (void)n_out;
  if (dir == NULL || dir[0] == '\0')
    return pf_diag_error(diag, PF_EINVAL, "checkpoint_prune: attribute dir is a string it needs");
  if (pf_attrs_get_int(attrs, "keep", 0) < 1)
    return pf_diag_error(diag, PF_EINVAL,
                         "checkpoint_prune: attribute keep (checkpoints to keep) must be >= 1");
  if ((rc = want_step("checkpoint_prune", &in[0], 0, diag)) != 0) return rc;
  out[0] = pf_spec_scalar(PF_I64);
  return 0;
}

/* 1 if file name `f` is shard k's: "<name>.shard<k>" or "<name>.shard<k>.tmp...". */
static int own_file(const char *f, int k) {
  const char *at = strstr(f, ".shard"), *next;
  char *end;
  long v;
  while (at != NULL && (next = strstr(at + 1, ".shard")) != NULL) at = next;
  if (at == NULL) return 0;
  v = strtol(at + 6, &end, 10);
  return end != at + 6 && v == k && (*end == '\0' || strncmp(end, ".tmp", 4) == 0);
}

static int cmp_desc(const void *a, const void *b) {
  int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
  return x < y ? 1 : x > y ? -1 : 0;
}

static int prune_compute(const pf_kernel_call *call) {
  const char *root = pf_attrs_get_string(call->attrs, "dir", "");
  int64_t keep = pf_attrs_get_int(call->attrs, "keep", 1);
  int64_t step = *(const int64_t *)call->in[0].data, removed = 0, *steps = NULL;
  size_t n = 0, cap = 0;
  DIR *d = opendir(root);
  struct dirent *e;
  if (d == NULL)
    return pf_diag_error(call->diag, PF_ESYS, "checkpoint_prune: cannot read %s: %s", root,
                         strerror(errno));
  while ((e = readdir(d)) != NULL) {
    char *end;
    long long v;
    if (strncmp(e->d_name, "step-", 5) != 0) continue;
    v = strtoll(e->d_name + 5, &end, 10);
    if (end == e->d_name + 5 || *end != '\0' || v < 0 || v > step) continue;
    if (n == cap) {
      int64_t *more = realloc(steps, (cap = cap ? 2 * cap : 16) * sizeof *steps);
      if (more == NULL) {
        free(steps);
        closedir(d);
        return pf_diag_error(call->diag, PF_ENOMEM, "checkpoint_prune: out of memory");
      }
      steps = more;
    }
    steps[n++] = v;
  }
  closedir(d);
  if (n > 0) qsort(steps, n, sizeof *steps, cmp_desc);
  for (size_t i = (size_t)keep; i < n; i++) {
    char sub[1024];
    DIR *sd;
    snprintf(sub, sizeof sub, "%s/step-%lld", root, (long long)steps[i]);
    if ((sd = opendir(sub)) == NULL) continue; /* another device removed it */
    while ((e = readdir(sd)) != NULL) {
      char file[1400];
      if (!own_file(e->d_name, call->shard)) continue;
      snprintf(file, sizeof file, "%s/%s", sub, e->d_name);
      if (unlink(file) == 0) removed++;
    }
    closedir(sd);
    rmdir(sub); /* fails while other devices' files remain: theirs to remove */
  }
  free(steps);
  *(int64_t *)call->out[0].data = removed;
  return 0;
}

/* The step whole on every device; the counts add up over the slice. */
static int prune_sharding(const pf_attrs *attrs, int n_in, const pf_spec *in,
                          const pf_sharding *in_sh, int num_devices, int n_out,
                          pf_sharding *out_sh, pf_diag *diag) {
  (void)attrs;
  (void)in;
  (void)n_out;
  if (num_devices > 1 && in_sh[0].kind != PF_SHARD_REPLICATED)
    return pf_sharding_refuse(diag, "checkpoint_prune", n_in, in_sh, "the step must be whole");
  out_sh[0] = num_devices > 1 ? pf_partial() : pf_replicated();
  return 0;
}

static const pf_kernel_def defs[] = {
    {.name = "checkpoint_prune", .n_in = 1, .n_out = 1, .shape = prune_shape,
     .sharding = prune_sharding, .compute = prune_compute},
    {.name = "checkpoint_save", .n_in = 2, .n_out = 1, .shape = save_shape,
     .sharding = save_sharding, .compute = save_compute},
    {.name = "checkpoint_load", .n_in = 1, .n_out = 1, .shape = load_shape,
     .sharding = load_sharding, .compute = load_compute},
};

int pf_builtin_register_checkpoint(pf_registry *reg) {
  return pf_builtin_add_all(reg, defs, PF_ARRAY_LEN(defs));
}
