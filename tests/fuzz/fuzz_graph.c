/* libFuzzer: pf_graph_decode_env on arbitrary bytes, then the full
 * validator on whatever decoded, so that hostile graphs reach the shape
 * functions of the built-in kernels too; a graph that validates is then
 * compiled (pf_schedule) for small simulated clusters of 4 devices, so that
 * hostile graphs reach placement, lowering and memory planning.
 *
 * A graph that decodes must also re-encode and decode to the same bytes; a
 * compile that fails must say why; every plan a compile makes must pass
 * pf_plan_check on its rank's devices and survive encode -> decode. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/diag.h"
#include "graph/graph_codec.h"
#include "graph/graph_internal.h"
#include "kernels/registry.h"
#include "plan/plan.h"
#include "scheduler/schedule.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* One registry for the whole run: it lives until exit. */
static pf_registry *registry;
static pf_diag env_diag;
static pf_graph_env env;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc;
  (void)argv;
  if (pf_registry_create(&registry) != 0 ||
      pf_builtin_kernels_register(registry) != 0)
    abort();
  env.registry = registry;
  env.num_devices[PF_DEVICE_CPU] = 4;
  env.diag = &env_diag;
  return 0;
}

static void roundtrip(const pf_graph_env *e, const pf_graph *g) {
  pf_graph *h = NULL;
  uint8_t *a = NULL, *b = NULL;
  size_t na = 0, nb = 0;
  pf_diag d;
  if (pf_graph_encode(g, &a, &na) != 0) abort();
  if (pf_graph_decode_env(e, a, na, &h, &d) != 0) abort();
  if (pf_graph_encode(h, &b, &nb) != 0) abort();
  if (na != nb || (na > 0 && memcmp(a, b, na) != 0)) abort();
  free(a);
  free(b);
  pf_graph_destroy(h);
}

/* Compiles g for HOSTS x RANKS_PER_HOST x DEVICES_PER_RANK (4 devices in
 * all, as env says), each device with `memory` bytes (0: unknown), and
 * checks what comes out. */
static void compile_for(const pf_graph *g, int hosts, int ranks_per_host, int per_rank,
                        int64_t memory) {
  pf_cluster_device devices[4];
  pf_cluster cl = {.n_ranks = hosts * ranks_per_host, .n_devices = 4, .devices = devices};
  pf_compiled *c = NULL;
  pf_diag d;
  pf_diag_init(&d);
  for (int k = 0; k < 4; k++)
    devices[k] = (pf_cluster_device){.rank = k / per_rank, .local = k % per_rank,
                                     .host = (k / per_rank) % hosts, .kind = PF_DEVICE_CPU,
                                     .memory = memory};
  if (pf_schedule(g, &cl, 1, &c, &d) != 0) {
    if (c != NULL || d.code == 0 || d.msg[0] == '\0') abort();
    return;
  }
  for (int r = 0; r < c->n_ranks; r++) {
    pf_plan *q = NULL;
    uint8_t *buf = NULL;
    size_t len = 0;
    if (c->plans[r] == NULL) continue;
    if (pf_plan_check(c->plans[r], per_rank, &d) != 0) abort();
    if (pf_plan_encode(c->plans[r], &buf, &len) != 0) abort();
    if (pf_plan_decode(buf, len, per_rank, &q, &d) != 0) abort();
    if (!pf_plan_equal(c->plans[r], q)) abort();
    free(buf);
    pf_plan_free(q);
  }
  pf_compiled_free(c);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const pf_graph_env *e = &env;
  pf_graph *g = NULL;
  pf_diag d;
  if (pf_graph_decode_env(e, data, size, &g, &d) != 0) {
    if (g != NULL || d.code == 0 || d.msg[0] == '\0') abort();
    return 0;
  }
  roundtrip(e, g);
  pf_diag_init(&d);
  if (pf_graph_check(g, &d) == 0) {
    compile_for(g, 1, 1, 4, 0);       /* one rank: copies, no transfers */
    compile_for(g, 2, 1, 2, 0);       /* two hosts: transfers, hierarchical collectives */
    compile_for(g, 2, 2, 1, 1 << 20); /* a rank per device, 1 MiB each: memory limits */
  }
  pf_graph_destroy(g);
  return 0;
}
