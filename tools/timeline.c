/* Chrome trace timelines read back, compared and drawn (see timeline.h). */
#include "tools/timeline.h"

#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/diag.h"
#include "base/file.h"
#include "base/util.h"
#include "sim/json.h"
#include "sim/replay.h"

#define LOOP_ROW 1000 /* runtime/trace.h's PF_TRACE_LOOP_ROW */
#define SIM_PID 100000 /* the simulated devices' processes in a comparison */
#define MAX_RANKS (1 << 20)

void tl_free(tl_trace *t) {
  if (t == NULL) return;
  for (size_t i = 0; i < t->n; i++) free(t->ev[i].name);
  for (size_t k = 0; k < t->n_links; k++) {
    free(t->links[k].name);
    free(t->links[k].ts);
    free(t->links[k].v);
  }
  free(t->links);
  free(t->ev);
  free(t);
}

static double num(const pf_json *o, const char *key, double dflt) {
  const pf_json *v = pf_json_get(o, key);
  return v && v->type == PF_JSON_NUMBER ? v->number : dflt;
}

/* A sample of the simulator's per-link counters (pid
 * PF_SIM_TRACE_LINKS_PID), appended to its link's row. */
static int link_sample(tl_trace *t, const pf_json *e) {
  const pf_json *name = pf_json_get(e, "name"), *args = pf_json_get(e, "args");
  tl_link *l = t->n_links ? &t->links[t->n_links - 1] : NULL;
  if (name == NULL || name->type != PF_JSON_STRING) return 0;
  if (l == NULL || strcmp(l->name, name->string) != 0) { /* a link's samples come together */
    if (pf_grow((void **)&t->links, &t->cap_links, t->n_links + 1, sizeof *t->links) != 0)
      return PF_ENOMEM;
    l = &t->links[t->n_links++];
    memset(l, 0, sizeof *l);
    if ((l->name = pf_strdup(name->string)) == NULL) return PF_ENOMEM;
  }
  if (pf_grow((void **)&l->ts, &l->cap_ts, l->n + 1, sizeof *l->ts) != 0 ||
      pf_grow((void **)&l->v, &l->cap_v, l->n + 1, sizeof *l->v) != 0)
    return PF_ENOMEM;
  l->ts[l->n] = num(e, "ts", 0);
  l->v[l->n++] = num(args, "GB/s", 0);
  return 0;
}


/* The process (rank) and row of event e; -1 when absent. */
static void where(const pf_json *e, int64_t *pid, int64_t *tid) {
  double p = num(e, "pid", -1), t = num(e, "tid", -1);
  *pid = p >= 0 && p < MAX_RANKS && p == floor(p) ? (int64_t)p : -1;
  *tid = t >= 0 && t <= LOOP_ROW && t == floor(t) ? (int64_t)t : -1;
}

int tl_parse(const char *text, size_t len, const char *source, tl_trace **out, pf_diag *d) {
  pf_json_doc *doc;
  const pf_json *root, *list;
  tl_trace *t;
  int32_t *rows = NULL; /* real: devices of each rank, then the first device of each */
  int64_t max_pid = -1;
  int rc;
  *out = NULL;
  if ((rc = pf_json_parse(text, len, &doc, d)) != 0) return rc;
  root = pf_json_root(doc);
  list = root->type == PF_JSON_ARRAY ? root : pf_json_get(root, "traceEvents");
  if (list == NULL || list->type != PF_JSON_ARRAY) {
    pf_json_free(doc);
    return pf_diag_error(d, PF_EDECODE, "%s: not a Chrome trace (an array of events, or an "
                                        "object with traceEvents)", source);
  }
  if ((t = calloc(1, sizeof *t)) == NULL || (t->ev = calloc(list->len + 1, sizeof *t->ev)) == NULL) {
    free(t);
    pf_json_free(doc);
    return PF_ENOMEM;
  }
  t->simulated = root->type == PF_JSON_OBJECT;
  for (size_t i = 0; i < list->len; i++) {
    int64_t pid, tid;
    where(list->items[i], &pid, &tid);
    max_pid = PF_MAXOF(max_pid, pid);
  }
  if ((rows = calloc((size_t)(max_pid + 2) * 2, sizeof *rows)) == NULL) {
    tl_free(t);
    pf_json_free(doc);
    return PF_ENOMEM;
  }
  /* A real run's devices: its "device N" rows (tid < 1000) per rank. */
  for (size_t i = 0; i < list->len; i++) {
    const pf_json *e = list->items[i], *ph = pf_json_get(e, "ph");
    int64_t pid, tid;
    where(e, &pid, &tid);
    if (pid < 0 || tid < 0 || ph == NULL || ph->type != PF_JSON_STRING) continue;
    if (t->simulated) rows[pid] = 1;
    else if (tid < LOOP_ROW) rows[pid] = (int32_t)PF_MAXOF(rows[pid], tid + 1);
  }
  for (int64_t p = 0; p <= max_pid; p++) { /* first device of each rank */
    rows[max_pid + 1 + p + 1] = rows[max_pid + 1 + p] + rows[p];
  }
  t->n_devices = t->simulated ? (int32_t)(max_pid + 1)
                 : max_pid >= 0 ? rows[2 * (max_pid + 1)] : 0;
  for (size_t i = 0; i < list->len && rc == 0; i++) {
    const pf_json *e = list->items[i], *ph = pf_json_get(e, "ph"), *name = pf_json_get(e, "name"),
                  *args = pf_json_get(e, "args");
    tl_event *v = &t->ev[t->n];
    int64_t pid, tid;
    if (t->simulated && ph != NULL && ph->type == PF_JSON_STRING && strcmp(ph->string, "C") == 0 &&
        num(e, "pid", -1) == PF_SIM_TRACE_LINKS_PID) {
      rc = link_sample(t, e);
      continue;
    }
    if (ph == NULL || ph->type != PF_JSON_STRING || strcmp(ph->string, "X") != 0) continue;
    where(e, &pid, &tid);
    if (name == NULL || name->type != PF_JSON_STRING || pid < 0 || tid < 0 ||
        num(e, "ts", -1) < 0 || num(e, "dur", -1) < 0) {
      rc = pf_diag_error(d, PF_EDECODE, "%s:%d: a complete event (\"ph\":\"X\") needs name, "
                                        "pid, tid, ts and dur", source, e->line);
      break;
    }
    v->comm = t->simulated ? tid == 1 : tid == LOOP_ROW;
    v->device = t->simulated ? (int32_t)pid
                             : rows[max_pid + 1 + pid] + (v->comm ? 0 : (int32_t)tid);
    v->step = (int64_t)num(args, "step", 1);
    v->exe = (int64_t)num(args, "executable", 0);
    v->ts = num(e, "ts", 0);
    v->dur = num(e, "dur", 0);
    if ((v->name = pf_strdup(name->string)) == NULL) rc = PF_ENOMEM;
    else t->n++;
  }
  free(rows);
  pf_json_free(doc);
  if (rc != 0) tl_free(t);
  else *out = t;
  return rc;
}

int tl_load(const char *path, tl_trace **out, pf_diag *d) {
  uint8_t *buf;
  size_t len;
  int rc = pf_file_read(path, &buf, &len, d);
  if (rc != 0) return rc;
  rc = tl_parse((const char *)buf, len, path, out, d);
  free(buf);
  return rc;
}

/* ---- comparison --------------------------------------------------------------------------- */

/* The events of one step of one executable, compute ones first sorted by
 * (device, base name, start). */
typedef struct view {
  const tl_event **ev;
  size_t n;
  double t0, t1; /* first start, last end */
} view;

static size_t base_len(const char *name) { /* name less a trailing "[i/n]" */
  size_t n = strlen(name);
  if (n > 0 && name[n - 1] == ']') {
    const char *b = strrchr(name, '[');
    if (b != NULL && strchr(b, '/') != NULL) return (size_t)(b - name);
  }
  return n;
}

static int cmp_op(const void *pa, const void *pb) {
  const tl_event *a = *(const tl_event *const *)pa, *b = *(const tl_event *const *)pb;
  size_t la = base_len(a->name), lb = base_len(b->name);
  int c;
  if (a->comm != b->comm) return a->comm - b->comm;
  if (a->device != b->device) return a->device < b->device ? -1 : 1;
  if ((c = strncmp(a->name, b->name, PF_MINOF(la, lb))) != 0) return c;
  if (la != lb) return la < lb ? -1 : 1;
  return a->ts < b->ts ? -1 : a->ts > b->ts;
}

static int make_view(const tl_trace *t, int64_t exe, int64_t step, view *v) {
  *v = (view){.t0 = INFINITY, .t1 = -INFINITY};
  if ((v->ev = calloc(t->n + 1, sizeof *v->ev)) == NULL) return PF_ENOMEM;
  for (size_t i = 0; i < t->n; i++) {
    const tl_event *e = &t->ev[i];
    if (e->exe != exe || e->step != step) continue;
    v->ev[v->n++] = e;
    v->t0 = PF_MINOF(v->t0, e->ts);
    v->t1 = PF_MAXOF(v->t1, e->ts + e->dur);
  }
  qsort(v->ev, v->n, sizeof *v->ev, cmp_op);
  return 0;
}

static int cmp_dbl(const void *pa, const void *pb) {
  double a = *(const double *)pa, b = *(const double *)pb;
  return a < b ? -1 : a > b;
}

static int same_op(const tl_event *a, const tl_event *b) {
  size_t la = base_len(a->name);
  return a->device == b->device && la == base_len(b->name) && strncmp(a->name, b->name, la) == 0;
}

static int cmp_i64(const void *pa, const void *pb) {
  int64_t a = *(const int64_t *)pa, b = *(const int64_t *)pb;
  return a < b ? -1 : a > b;
}

static double pct(double sim, double real) { return real > 0 ? 100 * (sim - real) / real : 0; }

static void put_name(FILE *f, const char *s) {
  fputc('"', f);
  for (; *s; s++)
    if (*s == '"' || *s == '\\') fprintf(f, "\\%c", *s);
    else if ((unsigned char)*s < 0x20) fprintf(f, "\\u%04x", (unsigned char)*s);
    else fputc(*s, f);
  fputc('"', f);
}

static void write_json(FILE *f, const tl_trace *real, const view *r, const view *s) {
  fprintf(f, "{\"displayTimeUnit\":\"ns\",\"traceEvents\":[\n");
  for (int32_t dv = 0; dv < real->n_devices; dv++)
    fprintf(f, "{\"ph\":\"M\",\"name\":\"process_name\",\"pid\":%d,\"args\":{\"name\":\"real: "
               "device %d\"}},\n{\"ph\":\"M\",\"name\":\"process_sort_index\",\"pid\":%d,"
               "\"args\":{\"sort_index\":%d}},\n",
            dv, dv, dv, dv);
  for (int32_t dv = 0; dv < real->n_devices; dv++)
    fprintf(f, "{\"ph\":\"M\",\"name\":\"process_name\",\"pid\":%d,\"args\":{\"name\":"
               "\"simulated: device %d\"}},\n{\"ph\":\"M\",\"name\":\"process_sort_index\","
               "\"pid\":%d,\"args\":{\"sort_index\":%d}},\n",
            SIM_PID + dv, dv, SIM_PID + dv, SIM_PID + dv);
  for (int k = 0; k < 2; k++) {
    const view *v = k == 0 ? r : s;
    for (size_t i = 0; i < v->n; i++) {
      const tl_event *e = v->ev[i];
      fprintf(f, "{\"ph\":\"X\",\"name\":");
      put_name(f, e->name);
      fprintf(f, ",\"cat\":\"%s\",\"pid\":%d,\"tid\":%d,\"ts\":%.3f,\"dur\":%.3f}%s\n",
              e->comm ? "communication" : "compute", (k ? SIM_PID : 0) + e->device, e->comm,
              e->ts - v->t0, e->dur, k == 1 && i + 1 == v->n ? "" : ",");
    }
  }
  if (s->n == 0) fprintf(f, "{}\n");
  fprintf(f, "]}\n");
}

int tl_compare(const tl_trace *real, const tl_trace *sim, int64_t exe, FILE *report, FILE *json,
               pf_diag *d) {
  view r = {0}, s = {0};
  int64_t *steps = NULL, n_steps = 0, best = -1;
  double *spans = NULL, sum_abs = 0, sum_start = 0, sim_span;
  size_t matched = 0, shown = 0;
  int rc = 0;
  if (exe < 0) { /* the executable with the most events */
    size_t most = 0;
    for (size_t i = 0; i < real->n; i++) {
      size_t c = 0;
      for (size_t j = 0; j < real->n; j++) c += real->ev[j].exe == real->ev[i].exe;
      if (c > most) most = c, best = real->ev[i].exe;
      if (most * 2 > real->n) break;
    }
    exe = best;
  }
  if ((steps = calloc(real->n + 1, sizeof *steps)) == NULL ||
      (spans = calloc(real->n + 1, sizeof *spans)) == NULL) {
    rc = PF_ENOMEM;
    goto out;
  }
  for (size_t i = 0; i < real->n; i++) { /* the executable's steps, each once, in order */
    int64_t k = 0;
    if (real->ev[i].exe != exe) continue;
    while (k < n_steps && steps[k] != real->ev[i].step) k++;
    if (k == n_steps) steps[n_steps++] = real->ev[i].step;
  }
  if (n_steps == 0) {
    rc = pf_diag_error(d, PF_EINVAL, "the real run has no event of executable %" PRId64, exe);
    goto out;
  }
  qsort(steps, (size_t)n_steps, sizeof *steps, cmp_i64);
  if ((rc = make_view(sim, 0, 1, &s)) != 0) goto out;
  sim_span = s.n ? s.t1 - s.t0 : 0;
  fprintf(report, "per step (executable %" PRId64 "; first op's start to last op's end):\n", exe);
  fprintf(report, "%8s %12s %12s %8s\n", "step", "real_ms", "simulated_ms", "error");
  for (int64_t k = 0; k < n_steps; k++) {
    view v;
    if ((rc = make_view(real, exe, steps[k], &v)) != 0) goto out;
    spans[k] = v.t1 - v.t0;
    free(v.ev);
    fprintf(report, "%8" PRId64 " %12.3f %12.3f %+7.1f%%\n", steps[k], spans[k] * 1e-3,
            sim_span * 1e-3, pct(sim_span, spans[k]));
  }
  { /* the median step */
    double *sorted = malloc((size_t)n_steps * sizeof *sorted), med;
    int64_t pick = 0;
    if (sorted == NULL) {
      rc = PF_ENOMEM;
      goto out;
    }
    memcpy(sorted, spans, (size_t)n_steps * sizeof *sorted);
    qsort(sorted, (size_t)n_steps, sizeof *sorted, cmp_dbl);
    med = sorted[(n_steps - 1) / 2];
    free(sorted);
    while (spans[pick] != med) pick++;
    if ((rc = make_view(real, exe, steps[pick], &r)) != 0) goto out;
    fprintf(report, "median step %" PRId64 ": real %.3f ms, simulated %.3f ms, error %+.1f%%\n",
            steps[pick], med * 1e-3, sim_span * 1e-3, pct(sim_span, med));
  }
  fprintf(report, "per op (median step; compute ops matched by device, name and order):\n");
  fprintf(report, "%6s %-28s %10s %10s %8s %10s\n", "device", "op", "real_us", "sim_us", "error",
          "start_err_us");
  for (size_t i = 0, j = 0; i < r.n && j < s.n && !r.ev[i]->comm && !s.ev[j]->comm;) {
    int c = cmp_op(&r.ev[i], &s.ev[j]);
    if (same_op(r.ev[i], s.ev[j])) {
      const tl_event *a = r.ev[i], *b = s.ev[j];
      double start_err = (b->ts - s.t0) - (a->ts - r.t0);
      sum_abs += fabs(b->dur - a->dur);
      sum_start += fabs(start_err);
      if (shown++ < 40)
        fprintf(report, "%6d %-28.*s %10.3f %10.3f %+7.1f%% %+10.3f\n", a->device,
                (int)PF_MINOF(base_len(a->name), 28), a->name, a->dur, b->dur,
                pct(b->dur, a->dur), start_err);
      matched++, i++, j++;
    } else if (c < 0) {
      i++;
    } else {
      j++;
    }
  }
  if (shown > 40) fprintf(report, "  ... %zu more\n", shown - 40);
  if (matched == 0) {
    rc = pf_diag_error(d, PF_EINVAL, "no compute op of the real run's step matches one of the "
                                     "simulation's: not the same graph?");
    goto out;
  }
  fprintf(report, "ops matched: %zu; mean absolute error: duration %.3f us, start %.3f us\n",
          matched, sum_abs / (double)matched, sum_start / (double)matched);
  if (json) write_json(json, real, &r, &s);
out:
  free(r.ev);
  free(s.ev);
  free(steps);
  free(spans);
  return rc;
}

/* ---- the Gantt chart ---------------------------------------------------------------------- */

static void xml_text(FILE *f, const char *s) {
  for (; *s; s++)
    if (*s == '<') fputs("&lt;", f);
    else if (*s == '>') fputs("&gt;", f);
    else if (*s == '&') fputs("&amp;", f);
    else if ((unsigned char)*s >= 0x20) fputc(*s, f);
}

int tl_svg(const tl_trace *t, FILE *f, int max_devices) {
  const int label = 110, width = 1100, row = 14, top = 30;
  int32_t shown = PF_MINOF(t->n_devices, max_devices);
  int64_t step = INT64_MAX, exe = t->n ? t->ev[0].exe : 0;
  double t0 = INFINITY, t1 = -INFINITY, scale;
  int height;
  for (size_t i = 0; i < t->n; i++)
    if (t->ev[i].exe == exe) step = PF_MINOF(step, t->ev[i].step);
  for (size_t i = 0; i < t->n; i++)
    if (t->ev[i].exe == exe && t->ev[i].step == step) {
      t0 = PF_MINOF(t0, t->ev[i].ts);
      t1 = PF_MAXOF(t1, t->ev[i].ts + t->ev[i].dur);
    }
  if (!(t1 > t0)) t0 = 0, t1 = 1;
  int32_t links = (int32_t)PF_MINOF(t->n_links, (size_t)max_devices);
  double peak = 0;
  for (size_t k = 0; k < t->n_links; k++)
    for (size_t i = 0; i < t->links[k].n; i++) peak = PF_MAXOF(peak, t->links[k].v[i]);
  scale = (double)(width - label - 10) / (t1 - t0);
  height = top + shown * (2 * row + 6) + (links ? 16 + links * (row + 2) : 0) + 30;
  fprintf(f, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
             "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" "
             "font-family=\"sans-serif\" font-size=\"10\">\n"
             "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n"
             "<text x=\"4\" y=\"14\" font-size=\"12\">%s timeline, %.3f ms: compute (blue) and "
             "communication (orange) per device</text>\n",
          width, height, t->simulated ? "simulated" : "real", (t1 - t0) * 1e-3);
  for (int k = 0; k <= 10; k++) { /* the time axis */
    double x = label + k * (width - label - 10) / 10.0;
    fprintf(f, "<line x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%d\" stroke=\"#ddd\"/>"
               "<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\">%.3g</text>\n",
            x, top - 4, x, height - 24, x, height - 12, (t1 - t0) * 1e-3 * k / 10);
  }
  fprintf(f, "<text x=\"%d\" y=\"%d\">ms</text>\n", width - 30, height - 2);
  for (int32_t dv = 0; dv < shown; dv++) {
    int y = top + dv * (2 * row + 6);
    fprintf(f, "<g class=\"device\" data-device=\"%d\">\n<text x=\"4\" y=\"%d\">device %d</text>"
               "<text x=\"4\" y=\"%d\" fill=\"#888\">comm</text>\n",
            dv, y + row - 3, dv, y + 2 * row - 3);
    for (size_t i = 0; i < t->n; i++) {
      const tl_event *e = &t->ev[i];
      if (e->device != dv || e->exe != exe || e->step != step) continue;
      fprintf(f, "<rect x=\"%.2f\" y=\"%d\" width=\"%.2f\" height=\"%d\" fill=\"%s\"><title>",
              label + (e->ts - t0) * scale, y + (e->comm ? row : 0), PF_MAXOF(0.5, e->dur * scale),
              row - 2, e->comm ? "#f0a030" : "#3070c0");
      xml_text(f, e->name);
      fprintf(f, " %.3f us</title></rect>\n", e->dur);
    }
    fprintf(f, "</g>\n");
  }
  if (links > 0) { /* the links' traffic, darker when busier */
    int y0 = top + shown * (2 * row + 6) + 12;
    fprintf(f, "<text x=\"4\" y=\"%d\" font-size=\"11\">links (peak %.3g GB/s)</text>\n", y0,
            peak);
    for (int32_t k = 0; k < links; k++) {
      const tl_link *l = &t->links[k];
      int y = y0 + 4 + k * (row + 2);
      fprintf(f, "<g class=\"link\"><text x=\"4\" y=\"%d\" fill=\"#555\">", y + row - 4);
      xml_text(f, l->name);
      fprintf(f, "</text>\n");
      for (size_t i = 0; i + 1 < l->n; i++) {
        double a = PF_MAXOF(l->ts[i], t0), b = PF_MINOF(l->ts[i + 1], t1);
        if (!(l->v[i] > 0) || b <= a) continue;
        fprintf(f, "<rect x=\"%.2f\" y=\"%d\" width=\"%.2f\" height=\"%d\" fill=\"#2a9d5c\" "
                   "fill-opacity=\"%.3f\"><title>%.3g GB/s</title></rect>\n",
                label + (a - t0) * scale, y, PF_MAXOF(0.5, (b - a) * scale), row - 2,
                peak > 0 ? 0.15 + 0.85 * l->v[i] / peak : 1.0, l->v[i]);
      }
      fprintf(f, "</g>\n");
    }
  }
  if (shown < t->n_devices)
    fprintf(f, "<text x=\"4\" y=\"%d\">... and %d devices more</text>\n", height - 2,
            t->n_devices - shown);
  fprintf(f, "</svg>\n");
  return ferror(f) ? PF_ESYS : 0;
}
