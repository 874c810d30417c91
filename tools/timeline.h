/* Internal to the pathflow tool: Chrome trace timelines read back, for
 * `pathflow sim --compare` and `--svg` (tools/timeline.c).
 *
 * Two layouts are read. A real run's (PATHFLOW_TRACE, runtime/trace.h): a
 * JSON array, a process per rank, row (tid) d its local device d, row 1000
 * its loop thread's transfers and collectives, each event's args.step the
 * n-th run of its executable (args.executable). The simulator's
 * (sim/replay.h): an object whose traceEvents has a process per device, row
 * 0 its compute, row 1 its communication, one execution. Both become the
 * same list of events on global devices (ranks' devices numbered in rank
 * order, as the scheduler numbers them). */
#ifndef PF_TOOLS_TIMELINE_H
#define PF_TOOLS_TIMELINE_H

#include <stdint.h>
#include <stdio.h>

#include "pathflow/error.h"

typedef struct tl_event {
  char *name;
  int32_t device;  /* global device */
  int32_t comm;    /* 1: a transfer or collective (a rank's loop row: its first device) */
  int64_t step;    /* a real run's args.step; 1 for the simulator's */
  int64_t exe;     /* a real run's args.executable; 0 for the simulator's */
  double ts, dur;  /* microseconds */
} tl_event;

/* A link's traffic over time (the simulator's per-link counters): value
 * v[k] in GB/s from ts[k] (us) to the next sample. */
typedef struct tl_link {
  char *name;
  size_t n, cap_ts, cap_v;
  double *ts, *v;
} tl_link;

typedef struct tl_trace {
  int simulated;   /* the simulator's layout */
  int32_t n_devices;
  size_t n;
  tl_event *ev;
  size_t n_links, cap_links; /* the simulator's links with traffic, in trace order */
  tl_link *links;
} tl_trace;

/* Reads a timeline of either layout from the file at `path`. Errors:
 * PF_ESYS (the file), PF_EDECODE (not JSON, or not a timeline: the message
 * names the file and the event), PF_ENOMEM. Free with tl_free. */
int tl_load(const char *path, tl_trace **out, pf_diag *d);

/* The same from text[0..len), `source` naming it in messages. */
int tl_parse(const char *text, size_t len, const char *source, tl_trace **out, pf_diag *d);

void tl_free(tl_trace *t);

/* Compares a run (`real`, either layout) with a simulation of the same
 * graph (`sim`, one execution). The real run's executable is `exe` (-1: the
 * one with the most events). Prints on `report` each step's makespan
 * (first start to last end of its events) beside the simulated one with
 * the error, then per compute op (matched by device, name less any
 * "[shard/n]", and order on the device) the measured and simulated
 * duration, the error of the median step's, and the mean absolute error.
 * When `json` is not NULL, writes the median step (shifted to start at 0)
 * and the simulation into one Chrome trace there, two groups of processes:
 * "real" ranks first, then "simulated" devices. Returns 0, or PF_EINVAL
 * (no step of that executable, no op matched) with the message in d. */
int tl_compare(const tl_trace *real, const tl_trace *sim, int64_t exe, FILE *report, FILE *json,
               pf_diag *d);

/* Draws t as an SVG Gantt chart: per device a compute row and a
 * communication row (the device's link traffic: transfers and collectives),
 * the time axis in ms, at most `max_devices` devices (the rest counted in a
 * note); then, for a simulation, a row per link (up to `max_devices`),
 * shaded by its traffic against the busiest link's peak. Events of a real
 * run are of its first step. Returns 0 or PF_ESYS. */
int tl_svg(const tl_trace *t, FILE *f, int max_devices);

#endif
