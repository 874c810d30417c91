#include "base/layout.h"

#include <stdio.h>

void pf_shard_region(const pf_spec *global, pf_sharding sh, int n, int s,
                     int64_t *lo, int64_t *extent) {
  for (int i = 0; i < global->rank; i++) {
    lo[i] = 0;
    extent[i] = global->dims[i];
  }
  if (sh.kind == PF_SHARD_SPLIT && n > 0 && sh.axis >= 0 && sh.axis < global->rank) {
    int64_t block = global->dims[sh.axis] / n;
    lo[sh.axis] = block * s;
    extent[sh.axis] = block;
  }
}

int pf_region_intersect(int rank, const int64_t *lo_a, const int64_t *ext_a,
                        const int64_t *lo_b, const int64_t *ext_b, int64_t *lo,
                        int64_t *extent) {
  for (int i = 0; i < rank; i++) {
    int64_t a_hi = lo_a[i] + ext_a[i], b_hi = lo_b[i] + ext_b[i];
    int64_t l = lo_a[i] > lo_b[i] ? lo_a[i] : lo_b[i];
    int64_t h = a_hi < b_hi ? a_hi : b_hi;
    if (h <= l) return 0;
    lo[i] = l;
    extent[i] = h - l;
  }
  return 1;
}

int pf_sharding_equal(pf_sharding a, pf_sharding b) {
  if (a.kind != b.kind) return 0;
  return a.kind != PF_SHARD_SPLIT || a.axis == b.axis;
}

char *pf_sharding_str(pf_sharding sh, char *buf, size_t len) {
  if (buf == NULL || len == 0) return buf;
  switch (sh.kind) {
    case PF_SHARD_REPLICATED: snprintf(buf, len, "replicated"); break;
    case PF_SHARD_SPLIT: snprintf(buf, len, "split(%d)", sh.axis); break;
    case PF_SHARD_PARTIAL: snprintf(buf, len, "partial"); break;
    default: snprintf(buf, len, "?"); break;
  }
  return buf;
}

int pf_shard_spec(const pf_spec *global, pf_sharding sh, int n, pf_spec *local,
                  const char *what, pf_diag *diag) {
  char buf[128];
  *local = *global;
  if (sh.kind == PF_SHARD_REPLICATED || sh.kind == PF_SHARD_PARTIAL) return 0;
  if (sh.kind != PF_SHARD_SPLIT)
    return pf_diag_error(diag, PF_EINVAL, "%s: unknown sharding kind %d", what,
                         sh.kind);
  if (sh.axis < 0 || sh.axis >= global->rank)
    return pf_diag_error(diag, PF_ESPLIT, "%s: split axis %d out of range for %s",
                         what, sh.axis, pf_spec_str(global, buf, sizeof buf));
  if (n < 1 || global->dims[sh.axis] % n != 0)
    return pf_diag_error(
        diag, PF_ESPLIT,
        "%s: split axis %d of %s (size %lld) does not divide over %d devices",
        what, sh.axis, pf_spec_str(global, buf, sizeof buf),
        (long long)global->dims[sh.axis], n);
  local->dims[sh.axis] /= n;
  return 0;
}
