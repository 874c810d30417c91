/* Internal: a timeline of real runs in Chrome trace JSON (open it in
 * Perfetto or chrome://tracing): one file per rank, one row per device
 * plus one for the loop thread's transfers and collectives. Written by the
 * loop thread only. Enabled with PATHFLOW_TRACE=1; files go to
 * PATHFLOW_TRACE_DIR (default: the working directory). */
#ifndef PF_RUNTIME_TRACE_H
#define PF_RUNTIME_TRACE_H

#include <stdint.h>

typedef struct pf_trace pf_trace;
struct pf_diag;

/* When `enabled`, checks that PATHFLOW_TRACE_DIR (default ".") is a writable
 * directory, so that pf_init fails at once rather than a run later. Returns
 * 0 or PF_EINVAL with a message naming the variable and its value. */
int pf_trace_check_dir(int enabled, struct pf_diag *d);

/* The row (Chrome "tid") of the loop thread's events. */
#define PF_TRACE_LOOP_ROW 1000

/* Opens pathflow-trace.RANK.json. Errors: PF_ESYS (the message names the
 * file), PF_ENOMEM. */
int pf_trace_open(int rank, pf_trace **out, char *why, int why_len);
/* One complete event from start_ns to end_ns (pf_now_ns clock). */
void pf_trace_event(pf_trace *t, const char *name, const char *category, int row,
                    uint64_t start_ns, uint64_t end_ns, uint64_t step);
/* Ends the JSON array and closes the file. NULL: no-op. */
void pf_trace_close(pf_trace *t);

#endif
