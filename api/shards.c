/* Moving whole tensors between the host and a value's shards. */
#include <stdlib.h>

#include "api/context_internal.h"
#include "base/layout.h"
#include "base/util.h"
#include "base/box.h"

static void region_box(const pf_spec *global, pf_sharding sh, int n, int s,
                       int to_shard, pf_box *box) {
  int64_t lo[PF_MAX_RANK], ext[PF_MAX_RANK];
  pf_shard_region(global, sh, n, s, lo, ext);
  box->rank = global->rank;
  for (int i = 0; i < global->rank; i++) {
    box->src_offset[i] = to_shard ? lo[i] : 0;
    box->dst_offset[i] = to_shard ? 0 : lo[i];
    box->extent[i] = ext[i];
  }
}

int pf_shards_gather(const pf_spec *global, pf_sharding sh, int n,
                     pf_storage *const *shards, pf_tensor **out) {
  pf_spec local;
  int rc, parts = sh.kind == PF_SHARD_REPLICATED ? 1 : n;
  if ((rc = pf_tensor_create(global, out)) != 0) return rc;
  pf_shard_spec(global, sh, n, &local, "", NULL);
  for (int s = 0; s < parts; s++) {
    pf_box box;
    region_box(global, sh, n, s, 0, &box);
    pf_box_copy(pf_tensor_data(*out), global->dims, shards[s]->data, local.dims,
                &box, pf_dtype_size(global->dtype));
  }
  return 0;
}

int pf_shards_scatter(const pf_spec *global, pf_sharding sh, int n,
                      const void *data, pf_storage **shards) {
  pf_spec local;
  pf_shard_spec(global, sh, n, &local, "", NULL);
  for (int s = 0; s < n; s++) shards[s] = NULL;
  for (int s = 0; s < n; s++) {
    pf_box box;
    shards[s] = pf_storage_new(pf_spec_nbytes(&local), 0);
    if (shards[s] == NULL) {
      for (int k = 0; k < s; k++) pf_storage_unref(shards[k]);
      return PF_ENOMEM;
    }
    region_box(global, sh, n, s, 1, &box);
    pf_box_copy(shards[s]->data, local.dims, data, global->dims, &box,
                pf_dtype_size(global->dtype));
  }
  return 0;
}
