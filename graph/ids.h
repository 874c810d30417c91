/* Internal: the public graph ids and the indexes behind them.
 *
 * At the API a slice, value or program is a one-member struct
 * (pathflow/graph.h), so that one kind cannot be passed for another. Inside
 * the library they are plain int32 indexes into the graph's arrays (-1:
 * none), which is what the IR, the validator and the scheduler store and
 * compare. The public functions convert at their boundary with these, and
 * nothing below them holds a public id.
 */
#ifndef PF_GRAPH_IDS_H
#define PF_GRAPH_IDS_H

#include "pathflow/graph.h"

/* The public id of index i (PF_NO_ID: the absent one). */
static inline pf_slice_t pf_slice_of(int32_t i) { return (pf_slice_t){i}; }
static inline pf_value_t pf_value_of(int32_t i) { return (pf_value_t){i}; }
static inline pf_program_t pf_program_of(int32_t i) { return (pf_program_t){i}; }

/* The ids of n value indexes. (The other way, a public function reads each
 * `.id` as it checks it.) */
static inline void pf_values_of(pf_value_t *dst, const int32_t *src, int n) {
  for (int i = 0; i < n; i++) dst[i] = pf_value_of(src[i]);
}

#endif
