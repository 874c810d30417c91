/* Internal: an executor's persistent buffers: (buffer id, shard) ->
 * storage. Owned by the loop thread. */
#ifndef PF_RUNTIME_STORE_H
#define PF_RUNTIME_STORE_H

#include <stdint.h>

#include "runtime/storage.h"

typedef struct pf_store pf_store;

int pf_store_create(pf_store **out);
/* Frees the store and drops every storage reference it holds. */
void pf_store_destroy(pf_store *s);
/* Stores `st` (the store takes this reference) under (id, shard), dropping
 * what was there. Errors: PF_EINVAL (id 0 or a negative shard), PF_ENOMEM;
 * on error the reference is dropped. */
int pf_store_put(pf_store *s, uint64_t id, int32_t shard, pf_storage *st);
/* Marks (id, shard) as a shard that a run in flight (the `step`-th run of
 * executable `exe`) will make: pf_store_get finds nothing there and pf_store_expected says it is
 * coming, until pf_store_put stores it or pf_store_fail says it never
 * will. Errors: PF_EINVAL (id 0 or a negative shard), PF_ENOMEM. */
int pf_store_expect(pf_store *s, uint64_t id, int32_t shard, uint64_t exe, uint64_t step);
/* The run that was to make (id, shard) failed: the mark stays, so that a
 * run or fetch asking for it can say which run (pf_store_failed), until
 * pf_store_drop. No-op unless (id, shard) is expected. */
void pf_store_fail(pf_store *s, uint64_t id, int32_t shard);
/* 1 if (id, shard) is expected; with shard -1, if any shard of id is. */
int pf_store_expected(pf_store *s, uint64_t id, int32_t shard);
/* 1 if the run that was to make (id, shard) failed, with its executable
 * and step (as given to pf_store_expect); else 0. */
int pf_store_failed(pf_store *s, uint64_t id, int32_t shard, uint64_t *exe, uint64_t *step);
/* The storage under (id, shard), not referenced, or NULL. */
pf_storage *pf_store_get(pf_store *s, uint64_t id, int32_t shard);
/* Drops every shard of `id`, and its marks. Returns how many shards there
 * were. Costs a lookup per shard index between the lowest and highest
 * stored under `id`, never a scan of the table. */
int pf_store_drop(pf_store *s, uint64_t id);
/* Number of (id, shard) entries and their bytes, for the watchdog. */
size_t pf_store_count(const pf_store *s);
size_t pf_store_bytes(const pf_store *s);
/* Slots examined by every lookup so far: what the tests count to check
 * that each operation costs O(1), not O(entries). */
uint64_t pf_store_probes(const pf_store *s);

#endif
