#include "runtime/trace.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "base/diag.h"
#include "base/util.h"
#include "pathflow/error.h"

/* How long rank 0 waits for another rank's file to appear (a rank that
 * opened its timeline late) and to be complete (a rank still closing it)
 * before merging without it. */
#define TRACE_APPEAR_NS 1000000000ull
#define TRACE_COMPLETE_NS 10000000000ull

struct pf_trace {
  FILE *f;
  int rank, size;
  char dir[2048];
  char job[64]; /* the launcher's job id: files of one job carry the same */
};

/* The directory of the timeline files. */
static const char *trace_dir(void) {
  const char *dir = getenv("PATHFLOW_TRACE_DIR");
  return dir && *dir ? dir : ".";
}

/* The id of this job, the same on every rank (Open MPI through PMIx, or
 * Slurm): a file left by another job is never merged into this one. "" when
 * the launcher gives none. */
static void job_id(char *out, size_t len) {
  static const char *vars[] = {"PMIX_NAMESPACE", "OMPI_MCA_ess_base_jobid", "SLURM_JOB_ID"};
  out[0] = '\0';
  for (size_t i = 0; i < PF_ARRAY_LEN(vars); i++) {
    const char *v = getenv(vars[i]);
    if (v && *v) {
      /* Kept to characters that need no escaping in JSON. */
      size_t n = 0;
      for (; v[n] && n + 1 < len; n++) out[n] = (v[n] == '"' || v[n] == '\\') ? '_' : v[n];
      out[n] = '\0';
      return;
    }
  }
}

static void rank_path(char *out, size_t len, const char *dir, int rank) {
  snprintf(out, len, "%s/pathflow-trace.%d.json", dir, rank);
}

int pf_trace_check_dir(int enabled, pf_diag *d) {
  const char *dir = trace_dir();
  struct stat st;
  if (!enabled) return 0;
  if (stat(dir, &st) != 0)
    return pf_diag_error(d, PF_EINVAL, "PATHFLOW_TRACE_DIR=\"%s\": %s (expected a writable directory)",
                         dir, strerror(errno));
  if (!S_ISDIR(st.st_mode) || access(dir, W_OK | X_OK) != 0)
    return pf_diag_error(d, PF_EINVAL, "PATHFLOW_TRACE_DIR=\"%s\": not a writable directory", dir);
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

int pf_trace_open(int rank, int size, int num_devices, pf_trace **out, char *why, int why_len) {
  char path[sizeof ((pf_trace *)0)->dir + 64], host[256] = "";
  pf_trace *t;
  *out = NULL;
  if ((t = calloc(1, sizeof *t)) == NULL) return PF_ENOMEM;
  snprintf(t->dir, sizeof t->dir, "%s", trace_dir());
  rank_path(path, sizeof path, t->dir, rank);
  if ((t->f = fopen(path, "w")) == NULL) {
    snprintf(why, (size_t)why_len, "PATHFLOW_TRACE: cannot write %s: %s", path, strerror(errno));
    free(t);
    return PF_ESYS;
  }
  t->rank = rank;
  t->size = size;
  job_id(t->job, sizeof t->job);
  gethostname(host, sizeof host - 1);
  /* Metadata first, one record per line (pf_trace_merge relies on the
   * layout: "[\n", records joined by ",\n", "\n]\n"). Rows are sorted:
   * ranks in order, each rank's devices in order, its loop row last. */
  fprintf(t->f, "[\n{\"name\":\"process_name\",\"ph\":\"M\",\"pid\":%d,\"args\":{\"name\":", rank);
  {
    char name[300];
    snprintf(name, sizeof name, "rank %d (%s)", rank, host);
    put_string(t->f, name);
  }
  fprintf(t->f, ",\"job\":\"%s\"}},\n", t->job);
  fprintf(t->f, "{\"name\":\"process_sort_index\",\"ph\":\"M\",\"pid\":%d,\"args\":{\"sort_index\":%d}}",
          rank, rank);
  for (int d = 0; d < num_devices; d++)
    fprintf(t->f,
            ",\n{\"name\":\"thread_name\",\"ph\":\"M\",\"pid\":%d,\"tid\":%d,\"args\":{\"name\":"
            "\"device %d\"}},\n"
            "{\"name\":\"thread_sort_index\",\"ph\":\"M\",\"pid\":%d,\"tid\":%d,\"args\":{"
            "\"sort_index\":%d}}",
            rank, d, d, rank, d, d);
  fprintf(t->f,
          ",\n{\"name\":\"thread_name\",\"ph\":\"M\",\"pid\":%d,\"tid\":%d,\"args\":{\"name\":\"loop "
          "(transfers, collectives)\"}},\n"
          "{\"name\":\"thread_sort_index\",\"ph\":\"M\",\"pid\":%d,\"tid\":%d,\"args\":{"
          "\"sort_index\":%d}}",
          rank, PF_TRACE_LOOP_ROW, rank, PF_TRACE_LOOP_ROW, PF_TRACE_LOOP_ROW);
  *out = t;
  return 0;
}

void pf_trace_event(pf_trace *t, const char *name, const char *category, int row,
                    uint64_t start_ns, uint64_t end_ns, uint64_t executable, uint64_t user_step,
                    uint64_t step_id) {
  if (t == NULL || end_ns < start_ns) return;
  fprintf(t->f, ",\n{\"name\":");
  put_string(t->f, name);
  fprintf(t->f, ",\"cat\":");
  put_string(t->f, category);
  fprintf(t->f, ",\"ph\":\"X\",\"pid\":%d,\"tid\":%d,\"ts\":%.3f,\"dur\":%.3f,"
          "\"args\":{\"step\":%llu,\"executable\":%llu,\"step_id\":%llu}}",
          t->rank, row, (double)start_ns / 1e3, (double)(end_ns - start_ns) / 1e3,
          (unsigned long long)user_step, (unsigned long long)executable,
          (unsigned long long)step_id);
}

/* The whole of a file, NUL-terminated; NULL if it cannot be read. */
static char *read_all(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  char *buf = NULL;
  long n;
  if (f == NULL) return NULL;
  if (fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) >= 0 && fseek(f, 0, SEEK_SET) == 0 &&
      (buf = malloc((size_t)n + 1)) != NULL) {
    *len = fread(buf, 1, (size_t)n, f);
    buf[*len] = '\0';
    if (*len != (size_t)n) {
      free(buf);
      buf = NULL;
    }
  }
  fclose(f);
  return buf;
}

/* 1 if text is a whole timeline as pf_trace_close leaves it. */
static int complete(const char *text, size_t len) {
  return len >= 5 && memcmp(text, "[\n", 2) == 0 && memcmp(text + len - 3, "\n]\n", 3) == 0;
}

int pf_trace_merge(const char *out, const char *const *files, int n_files, char *why,
                   int why_len) {
  char tmp[4200];
  FILE *f;
  int rc = 0;
  snprintf(tmp, sizeof tmp, "%s.part", out);
  if ((f = fopen(tmp, "w")) == NULL) {
    snprintf(why, (size_t)why_len, "cannot write %s: %s", tmp, strerror(errno));
    return PF_ESYS;
  }
  fputs("[\n", f);
  for (int i = 0; i < n_files && rc == 0; i++) {
    size_t len = 0;
    char *text = read_all(files[i], &len);
    if (text == NULL) {
      snprintf(why, (size_t)why_len, "cannot read %s: %s", files[i], strerror(errno));
      rc = PF_ESYS;
    } else if (!complete(text, len)) {
      snprintf(why, (size_t)why_len, "%s is not a complete pathflow timeline", files[i]);
      rc = PF_EDECODE;
    } else {
      /* The records between "[\n" and "\n]\n". */
      if (i > 0) fputs(",\n", f);
      fwrite(text + 2, 1, len - 5, f);
    }
    free(text);
  }
  fputs("\n]\n", f);
  if (fclose(f) != 0 && rc == 0) {
    snprintf(why, (size_t)why_len, "cannot write %s: %s", tmp, strerror(errno));
    rc = PF_ESYS;
  }
  if (rc == 0 && rename(tmp, out) != 0) {
    snprintf(why, (size_t)why_len, "cannot write %s: %s", out, strerror(errno));
    rc = PF_ESYS;
  }
  if (rc != 0) remove(tmp);
  return rc;
}

/* 1 if the file of another rank is ready to merge: complete, of this job. */
static int rank_file_ready(const pf_trace *t, const char *path, int *exists) {
  size_t len = 0;
  char *text = read_all(path, &len), want[96];
  int ok;
  *exists = text != NULL;
  if (text == NULL) return 0;
  snprintf(want, sizeof want, "\"job\":\"%s\"}", t->job);
  /* The job id is on the first record's line. */
  ok = complete(text, len) && strstr(text, want) != NULL &&
       strstr(text, want) < (strchr(text + 2, '\n') ? strchr(text + 2, '\n') : text + len);
  free(text);
  return ok;
}

/* Rank 0: merges the files of every rank it can see into pathflow-trace.json
 * and removes them; the others stay, named on stderr. */
static void merge_job(const pf_trace *t) {
  char **paths = pf_calloc((size_t)t->size, sizeof *paths), out[sizeof t->dir + 32], why[512];
  const char **merged = pf_calloc((size_t)t->size, sizeof *merged);
  char missing[256] = "";
  int n = 0, n_missing = 0, rc;
  uint64_t start = pf_now_ns();
  snprintf(out, sizeof out, "%s/pathflow-trace.json", t->dir);
  for (int r = 0; paths && merged && r < t->size; r++) {
    int exists = 0;
    if ((paths[r] = malloc(sizeof t->dir + 32)) == NULL) break;
    rank_path(paths[r], sizeof t->dir + 32, t->dir, r);
    /* Ranks close their files once they hear of the shutdown, which rank 0
     * sent before closing its own: wait a little for them. A file that never
 * appears is on another host's disk. */
    while (r > 0 && !rank_file_ready(t, paths[r], &exists) &&
           pf_now_ns() - start < (exists ? TRACE_COMPLETE_NS : TRACE_APPEAR_NS)) {
      struct timespec ts = {0, 10000000};
      nanosleep(&ts, NULL);
    }
    if (r == 0 || rank_file_ready(t, paths[r], &exists)) {
      merged[n++] = paths[r];
    } else {
      size_t used = strlen(missing);
      if (used + 16 < sizeof missing)
        snprintf(missing + used, sizeof missing - used, "%s%d", n_missing ? ", " : "", r);
      n_missing++;
    }
  }
  if (paths == NULL || merged == NULL || n + n_missing < t->size) {
    fprintf(stderr, "pathflow: trace: out of memory merging the timelines: they stay in %s\n",
            t->dir);
  } else if ((rc = pf_trace_merge(out, merged, n, why, sizeof why)) != 0) {
    fprintf(stderr, "pathflow: trace: merging the timelines failed (%s): they stay in %s\n", why,
            t->dir);
  } else if (n_missing == 0) {
    for (int i = 0; i < n; i++) remove(merged[i]);
  } else {
    /* The parts stay, so that one command merges them all once the others
     * are copied here. */
    fprintf(stderr,
            "pathflow: trace: %s holds %d of %d ranks; the timelines of ranks %s are not in %s "
            "on this host (or did not finish): copy them there, then run `pathflow trace "
            "pathflow-trace.json pathflow-trace.*.json` in it\n",
            out, n, t->size, missing, t->dir);
  }
  for (int r = 0; paths && r < t->size; r++) free(paths[r]);
  free(paths);
  free(merged);
}

void pf_trace_close(pf_trace *t) {
  if (t == NULL) return;
  fprintf(t->f, "\n]\n");
  fclose(t->f);
  if (t->rank == 0) merge_job(t);
  free(t);
}
