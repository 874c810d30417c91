/* Internal to the pathflow tool and bench/sim_fidelity: measuring this
 * machine through the real runtime, and the `local` cluster file that
 * describes it (docs/cluster-format.md, "Calibration"). */
#ifndef PF_TOOLS_CALIBRATION_H
#define PF_TOOLS_CALIBRATION_H

#include "base/diag.h"
#include "pathflow.h"

/* Transfer sizes calibration measures: 16 B to 4 MiB. */
#define TOOL_TRANSFER_SIZES 6

typedef struct tool_cal {
  pf_context *ctx; /* rank 0 of a job of at least 2 ranks, a device each */
  int reps;        /* timed runs per graph */
  int quiet;       /* 1: print nothing */
  char why[512];   /* what failed */
} tool_cal;

/* Everything that goes in the file, and what the printout shows. */
typedef struct tool_figures {
  double op_ns, step_ns, dispatch_ns, flops, mem_bw, link_bw, latency_ns, transfer_ns;
  double ar_ns, ar_model_ns;
  int n_points; /* runtime.transfer_by_size: bytes and the cost beyond latency and bandwidth */
  double point_bytes[TOOL_TRANSFER_SIZES], point_ns[TOOL_TRANSFER_SIZES];
} tool_figures;

/* Measures devices 0 and 1 (ranks 0 and 1) into *f, printing each figure
 * unless c->quiet. Returns 0, or the error of a graph's build, compile or
 * run, with c->why saying which. */
int tool_calibration_measure(tool_cal *c, tool_figures *f);

/* Writes f as a cluster file of one host with `ranks` ranks of a device
 * each, atomically. Returns 0, or the file error with d's message. */
int tool_calibration_write(const char *path, const tool_figures *f, int ranks, pf_diag *d);

#endif
