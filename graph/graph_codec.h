/* Internal: the graph codec (pathflow.Graph). The wire helpers it shares
 * with the plan codec are in base/wire.h.
 *
 * Decoders never trust their bytes: every count, index, enum and string
 * length is checked before anything is built from it, and every error is
 * PF_EDECODE with a message naming the element at fault.
 */
#ifndef PF_GRAPH_GRAPH_CODEC_H
#define PF_GRAPH_GRAPH_CODEC_H

#include <stddef.h>
#include <stdint.h>

#include "base/diag.h"
#include "base/wire.h"
#include "graph/graph_internal.h"
#include "proto/pathflow.pb-c.h"

/* Parses and structurally checks a pathflow.Graph into a new graph bound to
 * `env` (pf_graph_new). Indices are checked, semantics are not: run
 * pf_graph_check on the result. On error *out is NULL and the message is in
 * `diag` (may be NULL). Errors: PF_EINVAL, PF_EDECODE, PF_ENOMEM. */
int pf_graph_decode_env(const pf_graph_env *env, const uint8_t *buf,
                        size_t len, pf_graph **out, pf_diag *diag);

#endif
