#include "train_common.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

void tc_check(pf_context *ctx, int rc, const char *what) {
  if (rc == 0) return;
  fprintf(stderr, "%s failed: %s: %s\n", what, pf_strerror(rc), pf_last_error(ctx));
  exit(1);
}

pf_buffer_t *tc_find(tc_named *b, const char *name) {
  for (int i = 0; i < b->n; i++)
    if (strcmp(b->name[i], name) == 0) return &b->buf[i];
  return NULL;
}

static int listed(const char *const *names, const char *name) {
  for (; names && *names; names++)
    if (strcmp(*names, name) == 0) return 1;
  return 0;
}

void tc_collect(pf_context *ctx, pf_executable *exe, pf_future *f, tc_named *b,
                const char *const *skip) {
  for (int i = 0; i < pf_executable_num_outputs(exe); i++) {
    const char *name;
    pf_buffer_t *slot;
    tc_check(ctx, pf_executable_output(exe, i, &name, NULL), "pf_executable_output");
    if (listed(skip, name)) continue;
    if ((slot = tc_find(b, name)) != NULL) {
      tc_check(ctx, pf_buffer_release(ctx, *slot), "pf_buffer_release");
    } else {
      if (b->n == TC_MAX_BUFFERS) {
        fprintf(stderr, "more than %d named buffers\n", TC_MAX_BUFFERS);
        exit(1);
      }
      slot = &b->buf[b->n];
      snprintf(b->name[b->n++], sizeof b->name[0], "%s", name);
    }
    tc_check(ctx, pf_future_output(f, name, slot), "pf_future_output");
  }
}

pf_future *tc_run(pf_context *ctx, pf_executable *exe, tc_named *b, int n_host,
                  const char *const *host_names, pf_tensor *const *host_tensors) {
  pf_feed feeds[TC_MAX_BUFFERS + 8];
  pf_future *f;
  int n = pf_executable_num_inputs(exe);
  if (n > (int)(sizeof feeds / sizeof feeds[0])) {
    fprintf(stderr, "an executable with %d inputs\n", n);
    exit(1);
  }
  for (int i = 0; i < n; i++) {
    const char *name;
    int h;
    tc_check(ctx, pf_executable_input(exe, i, &name, NULL), "pf_executable_input");
    feeds[i] = (pf_feed){.name = name};
    for (h = 0; h < n_host && strcmp(host_names[h], name) != 0; h++) continue;
    if (h < n_host) {
      feeds[i].tensor = host_tensors[h];
    } else {
      pf_buffer_t *src = tc_find(b, name);
      if (src == NULL) {
        fprintf(stderr, "no buffer for input %s\n", name);
        exit(1);
      }
      feeds[i].buffer = *src;
    }
  }
  tc_check(ctx, pf_execute(exe, n, feeds, &f), "pf_execute");
  return f;
}

void tc_release(pf_context *ctx, tc_named *b) {
  for (int i = 0; i < b->n; i++) pf_buffer_release(ctx, b->buf[i]);
  b->n = 0;
}

double tc_now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}
