#include "runtime/trace.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sys/stat.h>
#include <unistd.h>

#include "base/diag.h"
#include "pathflow/error.h"

struct pf_trace {
  FILE *f;
  int rank;
  int first;
};

int pf_trace_check_dir(int enabled, pf_diag *d) {
  const char *dir = getenv("PATHFLOW_TRACE_DIR");
  struct stat st;
  if (!enabled) return 0;
  if (dir == NULL || *dir == '\0') dir = ".";
  if (stat(dir, &st) != 0)
    return pf_diag_error(d, PF_EINVAL, "PATHFLOW_TRACE_DIR=\"%s\": %s (expected a writable directory)",
                         dir, strerror(errno));
  if (!S_ISDIR(st.st_mode) || access(dir, W_OK | X_OK) != 0)
    return pf_diag_error(d, PF_EINVAL, "PATHFLOW_TRACE_DIR=\"%s\": not a writable directory", dir);
  return 0;
}

int pf_trace_open(int rank, pf_trace **out, char *why, int why_len) {
  const char *dir = getenv("PATHFLOW_TRACE_DIR");
  char path[4096];
  pf_trace *t;
  *out = NULL;
  snprintf(path, sizeof path, "%s/pathflow-trace.%d.json", dir && *dir ? dir : ".", rank);
  if ((t = calloc(1, sizeof *t)) == NULL) return PF_ENOMEM;
  if ((t->f = fopen(path, "w")) == NULL) {
    snprintf(why, (size_t)why_len, "PATHFLOW_TRACE: cannot write %s: %s", path, strerror(errno));
    free(t);
    return PF_ESYS;
  }
  t->rank = rank;
  t->first = 1;
  fprintf(t->f, "[\n");
  fprintf(t->f,
          "{\"name\":\"process_name\",\"ph\":\"M\",\"pid\":%d,\"args\":{\"name\":\"rank %d\"}},\n"
          "{\"name\":\"thread_name\",\"ph\":\"M\",\"pid\":%d,\"tid\":%d,\"args\":{\"name\":\"loop "
          "(transfers, collectives)\"}}",
          rank, rank, rank, PF_TRACE_LOOP_ROW);
  t->first = 0;
  *out = t;
  return 0;
}

/* Names come from user programs: keep the JSON valid whatever they hold. */
static void put_string(FILE *f, const char *s) {
  fputc('"', f);
  for (; s && *s; s++) {
    unsigned char c = (unsigned char)*s;
    if (c == '"' || c == '\\')
      fprintf(f, "\\%c", c);
    else if (c < 0x20)
      fprintf(f, "\\u%04x", c);
    else
      fputc(c, f);
  }
  fputc('"', f);
}

void pf_trace_event(pf_trace *t, const char *name, const char *category, int row,
                    uint64_t start_ns, uint64_t end_ns, uint64_t step) {
  if (t == NULL || end_ns < start_ns) return;
  fprintf(t->f, ",\n{\"name\":");
  put_string(t->f, name);
  fprintf(t->f, ",\"cat\":");
  put_string(t->f, category);
  fprintf(t->f, ",\"ph\":\"X\",\"pid\":%d,\"tid\":%d,\"ts\":%.3f,\"dur\":%.3f,"
          "\"args\":{\"step\":%llu}}",
          t->rank, row, (double)start_ns / 1e3, (double)(end_ns - start_ns) / 1e3,
          (unsigned long long)step);
}

void pf_trace_close(pf_trace *t) {
  if (t == NULL) return;
  fprintf(t->f, "\n]\n");
  fclose(t->f);
  free(t);
}
