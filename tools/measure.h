/* Internal to the pathflow tool and bench/sim_fidelity: graphs built for
 * timing real runs, their timing, and the same graph simulated.
 *
 * The graphs make their data on the devices (kernel "fill") rather than
 * taking host feeds, so that a real run and the simulator do the same work:
 * the simulator does not model feeds. */
#ifndef PF_TOOLS_MEASURE_H
#define PF_TOOLS_MEASURE_H

#include <stdint.h>

#include "pathflow.h"
#include "sim/cluster.h"
#include "sim/replay.h"

/* A slice of one device pinned to `device`. */
int tool_slice1(pf_graph *g, int device, pf_slice_t *out);

/* A slice of devices 0 .. n-1, pinned. */
int tool_slice_all(pf_graph *g, int n, pf_slice_t *out);

/* Adds a "fill" program on `slice` making `spec` (the block's spec when
 * `sharding` is split, as fill reads it) of constant `value`. */
int tool_fill(pf_graph *g, pf_slice_t slice, pf_spec spec, pf_sharding sharding, double value,
              pf_value_t *out);

/* Adds a program of `kernel` on `slice` reading in[0..n); its first output
 * in *out. */
int tool_op(pf_graph *g, const char *kernel, pf_slice_t slice, int n, const pf_value_t *in,
            pf_value_t *out);

/* Compiles g (not consumed) and runs it warmup + reps times, each run
 * pf_execute + pf_future_wait + pf_future_destroy; *median_ns is the median
 * of the timed runs (reps <= 256). Errors: pf_compile's and pf_execute's,
 * with pf_last_error(ctx) / the future's message copied to why. */
int tool_time_graph(pf_context *ctx, pf_graph *g, int warmup, int reps, double *median_ns,
                    char *why, size_t why_len);

/* Compiles g and sends `runs` runs of it with up to `window` (<= 64) in
 * flight, after a window's worth to warm up: *per_run_ns is the wall time
 * per run while the pipe is full, what the controller's dispatch costs a
 * run when the devices have little to do. Errors: as tool_time_graph,
 * PF_EINVAL (runs < 1, window out of range). */
int tool_time_pipelined(pf_context *ctx, pf_graph *g, int runs, int window, double *per_run_ns,
                        char *why, size_t why_len);

/* Compiles g for the first `devices` devices of `cl` with the scheduler of
 * a real run (as `pathflow sim` does) and replays one execution; `opt` as
 * pf_sim_replay's (NULL: defaults). Kernel costs come from g's own
 * registry. The caller frees *out with pf_sim_result_free. Errors: the
 * scheduler's, the export's and the replay's, with d's message. */
int tool_simulate(pf_graph *g, const pf_sim_cluster *cl, int64_t devices,
                  const pf_sim_options *opt, pf_sim_result **out, pf_diag *d);

#endif
