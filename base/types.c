#include <stdio.h>
#include <string.h>

#include "base/util.h"
#include "pathflow/error.h"
#include "pathflow/types.h"

static const struct {
  const char *name;
  size_t size;
} dtype_info[PF_DTYPE_COUNT] = {
    [PF_F32] = {"f32", 4}, [PF_F64] = {"f64", 8},  [PF_I32] = {"i32", 4},
    [PF_I64] = {"i64", 8}, [PF_U8] = {"u8", 1},    [PF_BF16] = {"bf16", 2},
    [PF_F16] = {"f16", 2},
};

static int dtype_valid(pf_dtype d) { return (unsigned)d < PF_DTYPE_COUNT; }

size_t pf_dtype_size(pf_dtype d) { return dtype_valid(d) ? dtype_info[d].size : 0; }

const char *pf_dtype_name(pf_dtype d) {
  return dtype_valid(d) ? dtype_info[d].name : "?";
}

const char *pf_device_kind_name(pf_device_kind k) {
  switch (k) {
    case PF_DEVICE_CPU:
      return "cpu";
    case PF_DEVICE_GPU:
      return "gpu";
    default:
      return "?";
  }
}

pf_spec pf_spec_make(pf_dtype dtype, int rank, const int64_t *dims) {
  pf_spec s;
  memset(&s, 0, sizeof s);
  s.dtype = dtype;
  s.rank = rank;
  if (rank > 0 && rank <= PF_MAX_RANK && dims != NULL)
    memcpy(s.dims, dims, (size_t)rank * sizeof dims[0]);
  return s;
}

pf_spec pf_spec_scalar(pf_dtype dtype) { return pf_spec_make(dtype, 0, NULL); }

pf_spec pf_spec_1d(pf_dtype dtype, int64_t d0) {
  return pf_spec_make(dtype, 1, &d0);
}

pf_spec pf_spec_2d(pf_dtype dtype, int64_t d0, int64_t d1) {
  int64_t d[2] = {d0, d1};
  return pf_spec_make(dtype, 2, d);
}

int pf_spec_check(const pf_spec *s) {
  uint64_t n;
  if (s == NULL) return PF_EINVAL;
  if (!dtype_valid(s->dtype)) return PF_EDTYPE;
  if (s->rank < 0 || s->rank > PF_MAX_RANK) return PF_ESHAPE;
  n = pf_dtype_size(s->dtype);
  for (int i = 0; i < s->rank; i++) {
    if (s->dims[i] < 0) return PF_ESHAPE;
    if (s->dims[i] != 0 && n > (UINT64_C(1) << 62) / (uint64_t)s->dims[i])
      return PF_ERANGE;
    n *= (uint64_t)s->dims[i];
  }
  return 0;
}

int pf_spec_explain(const pf_spec *s, char *why, size_t len) {
  int rc = pf_spec_check(s);
  char dims[PF_MAX_RANK * 22 + 1] = "";
  if (len > 0) why[0] = '\0';
  if (rc == 0 || len == 0) return rc;
  if (s == NULL) {
    snprintf(why, len, "no spec (NULL)");
  } else if (!dtype_valid(s->dtype)) {
    snprintf(why, len, "dtype %d is not a pathflow dtype (0..%d)", (int)s->dtype,
             PF_DTYPE_COUNT - 1);
  } else if (s->rank < 0 || s->rank > PF_MAX_RANK) {
    snprintf(why, len, "rank %d %s (a spec has 0..%d dimensions)", s->rank,
             s->rank < 0 ? "< 0" : "> " PF_STR(PF_MAX_RANK), PF_MAX_RANK);
  } else {
    /* The dims as given: pf_spec_str is for valid specs. */
    for (int i = 0; i < s->rank; i++)
      snprintf(dims + strlen(dims), sizeof dims - strlen(dims), "%s%lld", i ? "," : "",
               (long long)s->dims[i]);
    for (int i = 0; i < s->rank; i++)
      if (s->dims[i] < 0) {
        snprintf(why, len, "%s[%s]: dimension %d is %lld (dimensions are >= 0)",
                 pf_dtype_name(s->dtype), dims, i, (long long)s->dims[i]);
        return rc;
      }
    snprintf(why, len, "%s[%s]: more than 2^62 bytes", pf_dtype_name(s->dtype), dims);
  }
  return rc;
}

int64_t pf_spec_numel(const pf_spec *s) {
  int64_t n = 1;
  for (int i = 0; i < s->rank; i++) n *= s->dims[i];
  return n;
}

size_t pf_spec_nbytes(const pf_spec *s) {
  return (size_t)pf_spec_numel(s) * pf_dtype_size(s->dtype);
}

int pf_spec_equal(const pf_spec *a, const pf_spec *b) {
  if (a->dtype != b->dtype || a->rank != b->rank) return 0;
  for (int i = 0; i < a->rank; i++)
    if (a->dims[i] != b->dims[i]) return 0;
  return 1;
}

char *pf_spec_str(const pf_spec *s, char *buf, size_t len) {
  size_t off;
  int n;
  if (buf == NULL || len == 0) return buf;
  if (s == NULL) {
    snprintf(buf, len, "(null)");
    return buf;
  }
  n = snprintf(buf, len, "%s[", pf_dtype_name(s->dtype));
  off = n > 0 ? (size_t)n : 0;
  for (int i = 0; i < s->rank && i < PF_MAX_RANK && off < len; i++) {
    n = snprintf(buf + off, len - off, i ? ",%lld" : "%lld",
                 (long long)s->dims[i]);
    if (n > 0) off += (size_t)n;
  }
  if (off < len) snprintf(buf + off, len - off, "]");
  buf[len - 1] = '\0';
  return buf;
}
