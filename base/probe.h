/* Internal: cycle probes, for finding where a hot path's time goes.
 *
 * A step of a 2-rank stencil costs about a microsecond, spread over twenty
 * places in four layers, none of them more than a tenth of it; `perf`
 * cannot say where in this project's virtual machines (no hardware
 * counters, and its timer samples land on the wrong side of locked
 * instructions and MPI's calls). A probe is a named point in the code. A
 * thread passing one reads the CPU's time-stamp counter (between fences, so
 * that the work before the probe is counted before it) and adds the cycles
 * since its previous probe to the pair (previous, this one): over millions
 * of passes, a table of how long the code takes from each point to each
 * next, with how often each way is taken. Gaps longer than PF_PROBE_GAP
 * cycles (a sleep, a preempted thread) are counted apart, not in a pair.
 *
 * Built in only with `cmake -DPF_PROBES=ON`: PF_PROBE(name) expands to
 * nothing otherwise, and the functions below, always there, are only called
 * by the tests. With it on, each process writes its threads' tables at exit
 * to the file PATHFLOW_PROBES names ("%p" in it becomes the process id;
 * unset: nothing is written). A pass costs the probe itself some 50 cycles
 * (the fences and the counter read; the report's "floor" line measures it
 * on the machine): subtract it once from each pair's average.
 * docs/performance.md, "Where a step's time goes", shows how to read one.
 *
 * Threads: any; each keeps a table of its own (made at its first probe,
 * kept to the end of the process: a thread's table outlives the thread, so
 * that the report at exit still has it). */
#ifndef PF_BASE_PROBE_H
#define PF_BASE_PROBE_H

#include <stdint.h>
#include <stdio.h>

/* Distinct probe names a process may have; later ones are not counted. */
#define PF_PROBE_MAX 64
/* A pass further than this from the thread's previous probe is a gap. */
#define PF_PROBE_GAP ((uint64_t)1 << 22)

/* The id of probe `name` (a string that lives as long as the process: the
 * macro passes a literal), registered on first use: 1 .. PF_PROBE_MAX, the
 * same for the same name from any thread; 0 once PF_PROBE_MAX names are
 * taken. The first registration arranges the report at exit when
 * PATHFLOW_PROBES is set. Thread-safe. */
int pf_probe_id(const char *name);

/* The calling thread passes probe `id` (0: ignored). */
void pf_probe_hit(int id);

/* The calling thread's counts from probe a to probe b: passes and cycles
 * (0 and 0 when it has none). */
void pf_probe_pair(int a, int b, uint64_t *passes, uint64_t *cycles);

/* Writes every thread's table to f: per thread, its cycles and gaps, then
 * each pair holding at least a thousandth of its cycles, largest first
 * (from, to, passes, cycles, average, share). Returns the number of pairs
 * written. */
int pf_probe_report(FILE *f);

#ifdef PF_PROBES
#define PF_PROBE(name)                                                         \
  do {                                                                         \
    static _Atomic int pf_probe_site_;                                         \
    int pf_probe_i_ = pf_probe_site_;                                          \
    if (pf_probe_i_ == 0) pf_probe_site_ = pf_probe_i_ = pf_probe_id(name);    \
    pf_probe_hit(pf_probe_i_);                                                 \
  } while (0)
#else
#define PF_PROBE(name) ((void)0)
#endif

#endif
