#include "base/probe.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#if defined(__x86_64__) || defined(__i386__)
#include <x86intrin.h>
#endif

typedef struct table {
  uint64_t last_t;
  int last;
  uint64_t gaps, cycles; /* gaps: passes past PF_PROBE_GAP; cycles: in pairs */
  uint64_t passes[PF_PROBE_MAX + 1][PF_PROBE_MAX + 1];
  uint64_t pair_cycles[PF_PROBE_MAX + 1][PF_PROBE_MAX + 1];
  struct table *next;
  int number; /* in the order threads made theirs */
} table;

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static const char *names[PF_PROBE_MAX + 1];
static int n_names;
static table *tables;
static int n_tables;
static __thread table *mine;

/* The counter: the CPU's time stamps on x86, fenced on both sides so that
 * the work before a probe retires before the read and none after it starts
 * before; elsewhere nanoseconds. */
static inline uint64_t ticks(void) {
#if defined(__x86_64__) || defined(__i386__)
  uint64_t t;
  _mm_lfence();
  t = __rdtsc();
  _mm_lfence();
  return t;
#else
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
#endif
}

static void report_at_exit(void) {
  const char *pattern = getenv("PATHFLOW_PROBES");
  char path[4096];
  size_t w = 0;
  FILE *f;
  if (pattern == NULL || pattern[0] == '\0') return;
  for (const char *p = pattern; *p && w + 24 < sizeof path; p++) {
    if (p[0] == '%' && p[1] == 'p') {
      w += (size_t)snprintf(path + w, sizeof path - w, "%ld", (long)getpid());
      p++;
    } else {
      path[w++] = *p;
    }
  }
  path[w] = '\0';
  if ((f = fopen(path, "w")) == NULL) {
    fprintf(stderr, "pathflow: PATHFLOW_PROBES: cannot write %s\n", path);
    return;
  }
  pf_probe_report(f);
  fclose(f);
}

int pf_probe_id(const char *name) {
  int id = 0;
  pthread_mutex_lock(&lock);
  for (int i = 1; i <= n_names && id == 0; i++)
    if (strcmp(names[i], name) == 0) id = i;
  if (id == 0 && n_names < PF_PROBE_MAX) {
    if (n_names == 0) atexit(report_at_exit);
    names[id = ++n_names] = name;
  }
  pthread_mutex_unlock(&lock);
  return id;
}

/* The calling thread's table, made on its first probe (NULL: no memory). */
static table *own_table(void) {
  if (mine != NULL) return mine;
  if ((mine = calloc(1, sizeof *mine)) == NULL) return NULL;
  pthread_mutex_lock(&lock);
  mine->number = n_tables++;
  mine->next = tables;
  tables = mine;
  pthread_mutex_unlock(&lock);
  return mine;
}

/* A pass through probe id on table t. */
static void hit(table *t, int id) {
  uint64_t now = ticks(), d = now - t->last_t;
  if (t->last != 0 && d < PF_PROBE_GAP) {
    t->passes[t->last][id]++;
    t->pair_cycles[t->last][id] += d;
    t->cycles += d;
  } else if (t->last != 0) {
    t->gaps++;
  }
  t->last = id;
  t->last_t = ticks(); /* the bookkeeping above goes to no pair */
}

void pf_probe_hit(int id) {
  table *t;
  if (id <= 0 || id > PF_PROBE_MAX || (t = own_table()) == NULL) return;
  hit(t, id);
}

void pf_probe_pair(int a, int b, uint64_t *passes, uint64_t *cycles) {
  table *t = mine;
  *passes = *cycles = 0;
  if (t == NULL || a <= 0 || b <= 0 || a > PF_PROBE_MAX || b > PF_PROBE_MAX) return;
  *passes = t->passes[a][b];
  *cycles = t->pair_cycles[a][b];
}

/* What a probe adds to each pair on this machine: two probes back to back,
 * as PF_PROBE makes them, counted on a scratch table in place of the
 * thread's own; the least average of a few tries (a preempted try would
 * say far more). */
static double floor_ticks(void) {
  enum { N = 512, TRIES = 8 };
  table *t = calloc(1, sizeof *t), *own = mine;
  double best = 0;
  mine = t;
  for (int k = 0; t != NULL && k < TRIES; k++) {
    double avg;
    t->last = 0;
    t->passes[1][2] = t->pair_cycles[1][2] = 0;
    for (int i = 0; i < N; i++) {
      pf_probe_hit(1);
      pf_probe_hit(2);
    }
    avg = (double)t->pair_cycles[1][2] / (double)(t->passes[1][2] ? t->passes[1][2] : 1);
    if (k == 0 || avg < best) best = avg;
  }
  mine = own;
  free(t);
  return best;
}

typedef struct row {
  int a, b;
  uint64_t cycles;
} row;

static int by_cycles(const void *x, const void *y) {
  const row *p = x, *q = y;
  return p->cycles < q->cycles ? 1 : p->cycles > q->cycles ? -1 : 0;
}

int pf_probe_report(FILE *f) {
  static row rows[PF_PROBE_MAX * PF_PROBE_MAX];
  int written = 0;
  pthread_mutex_lock(&lock);
  fprintf(f, "# pathflow probes, process %ld: floor %.1f ticks a probe (subtract it from each "
             "average)\n", (long)getpid(), floor_ticks());
  for (table *t = tables; t != NULL; t = t->next) {
    int n = 0;
    if (t->cycles == 0) continue;
    for (int a = 1; a <= n_names; a++)
      for (int b = 1; b <= n_names; b++)
        if (t->passes[a][b] > 0 && t->pair_cycles[a][b] * 1000 >= t->cycles)
          rows[n++] = (row){a, b, t->pair_cycles[a][b]};
    qsort(rows, (size_t)n, sizeof *rows, by_cycles);
    fprintf(f, "# thread %d: %llu ticks in pairs, %llu gaps\n", t->number,
            (unsigned long long)t->cycles, (unsigned long long)t->gaps);
    fprintf(f, "%-28s %-28s %12s %14s %9s %7s\n", "from", "to", "passes", "ticks", "average",
            "share");
    for (int k = 0; k < n; k++) {
      uint64_t p = t->passes[rows[k].a][rows[k].b];
      fprintf(f, "%-28s %-28s %12llu %14llu %9.1f %6.1f%%\n", names[rows[k].a], names[rows[k].b],
              (unsigned long long)p, (unsigned long long)rows[k].cycles,
              (double)rows[k].cycles / (double)p, 100.0 * (double)rows[k].cycles / (double)t->cycles);
    }
    written += n;
  }
  pthread_mutex_unlock(&lock);
  return written;
}
