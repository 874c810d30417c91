/* libFuzzer: pf_chakra_decode on arbitrary bytes.
 *
 * Beyond "no crash, no leak": a failure says why; a trace that decodes
 * survives encode -> decode with the same nodes, else the reader and the
 * writer disagree about the format. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/diag.h"
#include "sim/chakra.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  pf_chakra_trace *t = NULL, *u = NULL;
  pf_diag d;
  uint8_t *buf = NULL;
  size_t len = 0;
  pf_diag_init(&d);
  if (pf_chakra_decode(data, size, "fuzz.et", &t, &d) != 0) {
    if (t != NULL || d.code == 0 || d.msg[0] == '\0') abort();
    return 0;
  }
  if (pf_chakra_encode(t, &buf, &len) != 0) abort();
  if (pf_chakra_decode(buf, len, "again.et", &u, &d) != 0) abort();
  if (u->n_nodes != t->n_nodes) abort();
  for (uint32_t i = 0; i < t->n_nodes; i++) {
    const pf_chakra_node *a = &t->nodes[i], *b = &u->nodes[i];
    if (a->id != b->id || a->type != b->type || strcmp(a->name, b->name) != 0 ||
        a->n_data_deps != b->n_data_deps || a->n_ctrl_deps != b->n_ctrl_deps ||
        a->comm_size != b->comm_size || a->comm_type != b->comm_type ||
        a->comm_src != b->comm_src || a->comm_dst != b->comm_dst ||
        a->duration_us != b->duration_us || a->n_group != b->n_group)
      abort();
  }
  free(buf);
  pf_chakra_free(u);
  pf_chakra_free(t);
  return 0;
}
