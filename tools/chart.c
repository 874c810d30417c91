/* pathflow chart: a training run's metrics (the CSV train_mlp --metrics
 * writes) as an SVG chart: loss against step on the left, train and test
 * accuracy against step on the right, with axes, ticks and labels. Plain
 * SVG written by hand: no dependency, opens in any browser. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tools/tool.h"

typedef struct series {
  double *x, *y;
  size_t n, cap;
} series;

static int push(series *s, double x, double y) {
  if (s->n == s->cap) {
    size_t cap = s->cap ? 2 * s->cap : 256;
    double *nx = realloc(s->x, cap * sizeof *nx), *ny;
    if (nx == NULL) return -1;
    s->x = nx;
    if ((ny = realloc(s->y, cap * sizeof *ny)) == NULL) return -1;
    s->y = ny;
    s->cap = cap;
  }
  s->x[s->n] = x;
  s->y[s->n++] = y;
  return 0;
}

/* Reads "kind,epoch,step,loss,accuracy" rows: kind "step" (loss, train
 * accuracy) or "epoch" (test accuracy). Returns 0, or -1 with a message
 * naming the line. */
static int read_metrics(const char *path, series *loss, series *train, series *test,
                        char *why, size_t len) {
  char line[512], kind[16];
  int lineno = 0;
  FILE *f = fopen(path, "r");
  if (f == NULL) {
    snprintf(why, len, "cannot open %s", path);
    return -1;
  }
  while (fgets(line, sizeof line, f)) {
    double epoch, step, l, acc;
    lineno++;
    if (lineno == 1 && strncmp(line, "kind,", 5) == 0) continue;
    if (sscanf(line, "%15[^,],%lf,%lf,%lf,%lf", kind, &epoch, &step, &l, &acc) != 5 ||
        (strcmp(kind, "step") != 0 && strcmp(kind, "epoch") != 0)) {
      snprintf(why, len, "%s line %d: expected kind,epoch,step,loss,accuracy", path, lineno);
      fclose(f);
      return -1;
    }
    if ((strcmp(kind, "step") == 0 && (push(loss, step, l) || push(train, step, acc))) ||
        (strcmp(kind, "epoch") == 0 && push(test, step, acc))) {
      snprintf(why, len, "out of memory");
      fclose(f);
      return -1;
    }
  }
  fclose(f);
  if (loss->n == 0) {
    snprintf(why, len, "%s has no step rows", path);
    return -1;
  }
  return 0;
}

/* A "nice" tick step for a range: 1, 2 or 5 times a power of ten. */
static double tick_step(double range) {
  double p = pow(10, floor(log10(range / 5))), r = range / 5 / p;
  return p * (r < 1.5 ? 1 : r < 3.5 ? 2 : 5);
}

typedef struct panel {
  double x0, y0, w, h;         /* plot area in pixels */
  double xmin, xmax, ymin, ymax;
} panel;

static double px(const panel *p, double x) { return p->x0 + (x - p->xmin) / (p->xmax - p->xmin) * p->w; }
static double py(const panel *p, double y) { return p->y0 + p->h - (y - p->ymin) / (p->ymax - p->ymin) * p->h; }

static void axes(FILE *f, const panel *p, const char *title, const char *ylabel) {
  double dx = tick_step(p->xmax - p->xmin), dy = tick_step(p->ymax - p->ymin);
  fprintf(f, "<rect x='%.1f' y='%.1f' width='%.1f' height='%.1f' fill='none' stroke='#333'/>\n",
          p->x0, p->y0, p->w, p->h);
  for (double x = ceil(p->xmin / dx) * dx; x <= p->xmax + 1e-9; x += dx)
    fprintf(f,
            "<line x1='%.1f' y1='%.1f' x2='%.1f' y2='%.1f' stroke='#ddd'/>"
            "<text x='%.1f' y='%.1f' font-size='11' text-anchor='middle'>%g</text>\n",
            px(p, x), p->y0, px(p, x), p->y0 + p->h, px(p, x), p->y0 + p->h + 15, x);
  for (double y = ceil(p->ymin / dy) * dy; y <= p->ymax + 1e-9; y += dy)
    fprintf(f,
            "<line x1='%.1f' y1='%.1f' x2='%.1f' y2='%.1f' stroke='#ddd'/>"
            "<text x='%.1f' y='%.1f' font-size='11' text-anchor='end'>%g</text>\n",
            p->x0, py(p, y), p->x0 + p->w, py(p, y), p->x0 - 5, py(p, y) + 4, y);
  fprintf(f,
          "<text x='%.1f' y='%.1f' font-size='14' text-anchor='middle'>%s</text>"
          "<text x='%.1f' y='%.1f' font-size='12' text-anchor='middle'>step</text>"
          "<text x='%.1f' y='%.1f' font-size='12' text-anchor='middle' "
          "transform='rotate(-90 %.1f %.1f)'>%s</text>\n",
          p->x0 + p->w / 2, p->y0 - 10, title, p->x0 + p->w / 2, p->y0 + p->h + 32, p->x0 - 42,
          p->y0 + p->h / 2, p->x0 - 42, p->y0 + p->h / 2, ylabel);
}

static void line(FILE *f, const panel *p, const series *s, const char *color) {
  fprintf(f, "<polyline fill='none' stroke='%s' stroke-width='1.5' points='", color);
  for (size_t i = 0; i < s->n; i++) fprintf(f, "%.1f,%.1f ", px(p, s->x[i]), py(p, s->y[i]));
  fprintf(f, "'/>\n");
}

static void range(const series *s, double *lo, double *hi) {
  for (size_t i = 0; i < s->n; i++) {
    if (s->y[i] < *lo) *lo = s->y[i];
    if (s->y[i] > *hi) *hi = s->y[i];
  }
}

int tool_chart(const char *csv, const char *svg, char *why, size_t len) {
  series loss = {0}, train = {0}, test = {0};
  panel left = {70, 40, 380, 260, 0, 1, 1e300, -1e300}, right = left;
  FILE *f;
  int rc = -1;
  if (read_metrics(csv, &loss, &train, &test, why, len) != 0) goto done;
  left.xmax = loss.x[loss.n - 1] > 0 ? loss.x[loss.n - 1] : 1;
  range(&loss, &left.ymin, &left.ymax);
  left.ymin = 0;
  if (left.ymax <= left.ymin) left.ymax = left.ymin + 1;
  right.x0 = 540;
  right.xmax = left.xmax;
  range(&train, &right.ymin, &right.ymax);
  range(&test, &right.ymin, &right.ymax);
  right.ymin = floor(right.ymin * 10) / 10;
  right.ymax = 1;
  if ((f = fopen(svg, "w")) == NULL) {
    snprintf(why, len, "cannot write %s", svg);
    goto done;
  }
  fprintf(f, "<svg xmlns='http://www.w3.org/2000/svg' width='960' height='360' "
             "font-family='sans-serif'>\n<rect width='100%%' height='100%%' fill='white'/>\n");
  axes(f, &left, "Training loss", "loss");
  line(f, &left, &loss, "#1f77b4");
  axes(f, &right, "Accuracy", "accuracy");
  line(f, &right, &train, "#ff7f0e");
  line(f, &right, &test, "#2ca02c");
  for (size_t i = 0; i < test.n; i++)
    fprintf(f, "<circle cx='%.1f' cy='%.1f' r='3' fill='#2ca02c'/>\n", px(&right, test.x[i]),
            py(&right, test.y[i]));
  fprintf(f,
          "<text x='%.1f' y='%.1f' font-size='12' fill='#ff7f0e'>train (per step)</text>"
          "<text x='%.1f' y='%.1f' font-size='12' fill='#2ca02c'>test (per epoch)</text>\n"
          "</svg>\n",
          right.x0 + 10, right.y0 + right.h - 30, right.x0 + 10, right.y0 + right.h - 12);
  rc = fclose(f) == 0 ? 0 : -1;
  if (rc != 0) snprintf(why, len, "cannot write %s", svg);
done:
  free(loss.x);
  free(loss.y);
  free(train.x);
  free(train.y);
  free(test.x);
  free(test.y);
  return rc;
}
