/* Internal: building per-rank counters (the public record is in
 * include/pathflow/counters.h). */
#ifndef PF_BASE_COUNTERS_H
#define PF_BASE_COUNTERS_H

#include "pathflow/counters.h"

/* A zeroed record for `num_devices` devices and `num_peers` ranks; NULL
 * when out of memory or a count is negative. Free with pf_counters_free. */
pf_counters *pf_counters_new(int rank, int num_devices, int num_peers);

/* Recomputes the totals that are sums over devices and peers (ops_run,
 * device_wait_ns, transfers_sent, transfers_received). */
void pf_counters_sum(pf_counters *c);

#endif
