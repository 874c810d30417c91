/* Moving whole tensors between the host and a value's shards. */
#include <stdlib.h>

#include "api/context_internal.h"
#include "base/box.h"
#include "base/layout.h"
#include "base/util.h"

int pf_shards_gather(const pf_spec *global, pf_sharding sh, int n,
                     pf_storage *const *shards, pf_tensor **out) {
  pf_spec local;
  int rc, parts = sh.kind == PF_SHARD_REPLICATED ? 1 : n;
  if ((rc = pf_tensor_create(global, out)) != 0) return rc;
  pf_shard_spec(global, sh, n, &local, "", NULL);
  for (int s = 0; s < parts; s++) {
    int64_t zero[PF_MAX_RANK] = {0}, lo[PF_MAX_RANK], ext[PF_MAX_RANK];
    pf_shard_region(global, sh, n, s, lo, ext);
    pf_block_copy(pf_tensor_data(*out), global, lo, shards[s]->data, &local, zero, ext);
  }
  return 0;
}

int pf_shards_scatter(const pf_spec *global, pf_sharding sh, int n,
                      const void *data, pf_storage **shards) {
  pf_spec local;
  pf_shard_spec(global, sh, n, &local, "", NULL);
  for (int s = 0; s < n; s++) shards[s] = NULL;
  for (int s = 0; s < n; s++) {
    int64_t zero[PF_MAX_RANK] = {0}, lo[PF_MAX_RANK], ext[PF_MAX_RANK];
    shards[s] = pf_storage_new(pf_spec_nbytes(&local), 0);
    if (shards[s] == NULL) {
      for (int k = 0; k < s; k++) pf_storage_unref(shards[k]);
      return PF_ENOMEM;
    }
    pf_shard_region(global, sh, n, s, lo, ext);
    pf_block_copy(shards[s]->data, &local, zero, data, global, lo, ext);
  }
  return 0;
}
