/* libFuzzer: pf_graph_decode_env on arbitrary bytes, then the full
 * validator on whatever decoded, so that hostile graphs reach the shape
 * functions of the built-in kernels too.
 *
 * A graph that decodes must also re-encode and decode to the same bytes. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/diag.h"
#include "graph/graph_codec.h"
#include "graph/graph_internal.h"
#include "kernels/registry.h"

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
  (void)pf_graph_check(g, &d);
  pf_graph_destroy(g);
  return 0;
}
