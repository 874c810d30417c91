/* Internal: the context and the objects it owns. */
#ifndef PF_API_CONTEXT_INTERNAL_H
#define PF_API_CONTEXT_INTERNAL_H

#include <pthread.h>

#include "base/diag.h"
#include "graph/graph_internal.h"
#include "pathflow.h"
#include "runtime/runtime.h"
#include "scheduler/schedule.h"

/* A device-resident value: one storage per shard. */
typedef struct pf_buffer_entry {
  uint64_t id;
  pf_spec spec; /* global */
  pf_sharding sharding;
  int num_shards;
  pf_storage **shards;
} pf_buffer_entry;

typedef struct pf_buffer_table {
  pf_buffer_entry *items; /* sorted by id (ids only grow) */
  size_t n, cap;
  uint64_t next_id;
} pf_buffer_table;

struct pf_context {
  pf_registry *registry;
  pf_runtime *runtime;
  pf_cluster cluster;
  int num_devices[PF_DEVICE_KIND_COUNT];
  pf_diag diag;
  pf_buffer_table buffers;
  uint64_t next_executable_id;
  pf_executable *executables; /* live, for pf_finalize */
  pf_future *futures;         /* live, for pf_finalize */
};

/* Resets and returns the context's error sink. */
pf_diag *pf_context_begin(pf_context *ctx);
/* Records an error in the context and returns code. */
int pf_context_error(pf_context *ctx, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Buffer table (api/buffers.c). add takes ownership of the shard refs and
 * the array. */
int pf_buffers_add(pf_buffer_table *t, const pf_spec *spec, pf_sharding sh,
                   int num_shards, pf_storage **shards, uint64_t *id);
pf_buffer_entry *pf_buffers_find(pf_buffer_table *t, uint64_t id);
void pf_buffers_remove(pf_buffer_table *t, uint64_t id);
void pf_buffers_clear(pf_buffer_table *t);

/* Host <-> shards (api/shards.c). */
int pf_shards_gather(const pf_spec *global, pf_sharding sh, int n,
                     pf_storage *const *shards, pf_tensor **out);
int pf_shards_scatter(const pf_spec *global, pf_sharding sh, int n,
                      const void *data, const int32_t *devices,
                      pf_storage **shards);

/* Executables and futures unlink themselves; finalize frees the rest. */
void pf_executable_free_all(pf_context *ctx);
void pf_future_free_all(pf_context *ctx);

#endif
