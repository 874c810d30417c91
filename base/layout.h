/* Internal: where the shards of a sharded tensor lie in the global tensor. */
#ifndef PF_BASE_LAYOUT_H
#define PF_BASE_LAYOUT_H

#include "pathflow/error.h"
#include "pathflow/types.h"

/* Shard spec of global spec `global` under sharding `sh` over n devices.
 * PF_ESPLIT (message in diag, naming `what`) if the axis is out of range or
 * does not divide. */
int pf_shard_spec(const pf_spec *global, pf_sharding sh, int n,
                  pf_spec *local, const char *what, pf_diag *diag);

/* Region of shard `s` of `n` under `sh` in the global tensor `global`:
 * lo[i] .. lo[i] + extent[i] on each axis. Assumes the split divides (the
 * graph validator guarantees it). */
void pf_shard_region(const pf_spec *global, pf_sharding sh, int n, int s,
                     int64_t *lo, int64_t *extent);

/* Intersects two regions of the same rank. Returns 0 if empty, else 1 with
 * the intersection in lo/extent. */
int pf_region_intersect(int rank, const int64_t *lo_a, const int64_t *ext_a,
                        const int64_t *lo_b, const int64_t *ext_b,
                        int64_t *lo, int64_t *extent);

/* 1 if both shardings lay the data out the same way over n devices. */
int pf_sharding_equal(pf_sharding a, pf_sharding b);

#endif
