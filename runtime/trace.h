/* Internal: a timeline of real runs in Chrome trace JSON (open it in
 * Perfetto or chrome://tracing). Enabled with PATHFLOW_TRACE=1; files go to
 * PATHFLOW_TRACE_DIR (default: the working directory).
 *
 * Each rank writes pathflow-trace.RANK.json as it runs (written by its loop
 * thread only): one process per rank, one named row per device plus one for
 * the loop thread's transfers and collectives, each event labelled with the
 * user's step (the n-th pf_execute of its executable). When rank 0 closes
 * its timeline it merges every rank's file it can see (same job, complete)
 * into one pathflow-trace.json for the whole job and removes the parts.
 * When some rank's file is not there (another host's disk), it names those
 * ranks and keeps the parts, and `pathflow trace` merges them once copied
 * together (pf_trace_merge). */
#ifndef PF_RUNTIME_TRACE_H
#define PF_RUNTIME_TRACE_H

#include <stdint.h>

typedef struct pf_trace pf_trace;
struct pf_diag;

/* The row (Chrome "tid") of the loop thread's events; device d is row d. */
#define PF_TRACE_LOOP_ROW 1000

/* When `enabled`, checks that PATHFLOW_TRACE_DIR (default ".") is a writable
 * directory, so that pf_init fails at once rather than a run later. Returns
 * 0 or PF_EINVAL with a message naming the variable and its value. */
int pf_trace_check_dir(int enabled, struct pf_diag *d);

/* Opens pathflow-trace.RANK.json for rank `rank` of `size`, with a named row
 * for each of its `num_devices` devices and one for the loop thread.
 * Errors: PF_ESYS (the message names the file), PF_ENOMEM. */
int pf_trace_open(int rank, int size, int num_devices, pf_trace **out, char *why, int why_len);

/* One complete event from start_ns to end_ns (pf_now_ns clock) of step
 * `step_id` (the runtime's id, as messages print it), which is the
 * `user_step`-th run (from 1) of executable `executable`. */
void pf_trace_event(pf_trace *t, const char *name, const char *category, int row,
                    uint64_t start_ns, uint64_t end_ns, uint64_t executable, uint64_t user_step,
                    uint64_t step_id);

/* Ends the JSON array and closes the file; on rank 0, then merges the job's
 * files into pathflow-trace.json (waiting up to a few seconds for ranks
 * still closing theirs) and says on stderr which ranks it could not merge.
 * NULL: no-op. */
void pf_trace_close(pf_trace *t);

/* Merges per-rank timeline files (each as pf_trace_close leaves it) into
 * one JSON array in `out`. Returns 0, or PF_ESYS / PF_EDECODE (a file that
 * cannot be read or is not a complete timeline) with why[why_len] naming
 * the file. */
int pf_trace_merge(const char *out, const char *const *files, int n_files, char *why,
                   int why_len);

#endif
