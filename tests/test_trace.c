/* PATHFLOW_TRACE=1 writes a Chrome trace of real runs: one event per op,
 * on the named row of its device, labelled with the user's step, in one
 * file for the job (per-rank files merged by rank 0). */
#include <unistd.h>

#include "runtime/trace.h"
#include "testing.h"

/* The whole of a file, NUL-terminated (the caller frees it). */
static char *slurp(const char *path) {
  FILE *fp = fopen(path, "r");
  char *text;
  long n;
  if (fp == NULL) fail_msg("cannot open %s", path);
  fseek(fp, 0, SEEK_END);
  n = ftell(fp);
  fseek(fp, 0, SEEK_SET);
  text = calloc(1, (size_t)n + 1);
  assert_int_equal(fread(text, 1, (size_t)n, fp), (size_t)n);
  fclose(fp);
  return text;
}

/* A JSON array of balanced objects. */
static void assert_balanced(const char *text) {
  int depth = 0;
  assert_int_equal(text[0], '[');
  for (const char *p = text; *p; p++) {
    depth += *p == '{' ? 1 : *p == '}' ? -1 : 0;
    assert_true(depth >= 0);
  }
  assert_int_equal(depth, 0);
  assert_non_null(strstr(text, "\n]\n"));
}

static pf_context *ctx;

static void test_trace_file(void **state) {
  char dir[] = "/tmp/pathflow-trace-XXXXXX", path[256], want[64], *text;
  pf_graph *g;
  pf_executable *exe;
  pf_future *f;
  pf_slice_t s;
  pf_value_t x, y, z;
  pf_spec spec = pf_spec_1d(PF_F32, 64);
  pf_tensor *t;
  int events = 0;
  (void)state;
  assert_non_null(mkdtemp(dir));
  setenv("PATHFLOW_TRACE", "1", 1);
  setenv("PATHFLOW_TRACE_DIR", dir, 1);
  assert_int_equal(pf_init(NULL, NULL, &(pf_init_options){.cpu_devices = 2}, &ctx), 0);
  unsetenv("PATHFLOW_TRACE");
  unsetenv("PATHFLOW_TRACE_DIR");
  OK(pf_graph_create(ctx, &g));
  OK(pf_graph_slice(g, PF_DEVICE_CPU, 2, &s));
  OK(pf_graph_input(g, "x", &spec, s, pf_split(0), &x));
  OK(pf_graph_program(g, &(pf_program_desc){.name = "first \"quoted\"", .kernel = "relu",
                                             .slice = s, .n_in = 1, .in = &x},
                      &y, NULL));
  OK(pf_graph_program(g, &(pf_program_desc){.name = "second", .kernel = "scale", .slice = s,
                                             .n_in = 1, .in = &y},
                      &z, NULL));
  OK(pf_graph_output(g, "z", z));
  OK(pf_compile(g, &exe));
  OK(pf_tensor_create(&spec, &t));
  for (int k = 0; k < 3; k++) {
    OK(pf_execute(exe, 1, &(pf_feed){.name = "x", .tensor = t}, &f));
    OK(pf_future_wait(f));
    pf_future_destroy(f);
  }
  pf_tensor_destroy(t);
  pf_executable_destroy(exe);
  pf_graph_destroy(g);
  OK(pf_finalize(ctx));
  /* The job's one file; the rank's own part was merged into it. */
  snprintf(path, sizeof path, "%s/pathflow-trace.0.json", dir);
  assert_int_equal(access(path, F_OK), -1);
  snprintf(path, sizeof path, "%s/pathflow-trace.json", dir);
  text = slurp(path);
  assert_balanced(text);
  assert_non_null(strstr(text, "first \\\"quoted\\\""));
  for (char *p = text; (p = strstr(p, "\"ph\":\"X\"")) != NULL; p++) events++;
  /* 2 programs x 2 shards x 3 steps, one event each. */
  assert_int_equal(events, 12);
  assert_non_null(strstr(text, "\"tid\":1"));
  /* Rows named: both devices and the loop. */
  assert_non_null(strstr(text, "\"tid\":0,\"args\":{\"name\":\"device 0\"}"));
  assert_non_null(strstr(text, "\"tid\":1,\"args\":{\"name\":\"device 1\"}"));
  assert_non_null(strstr(text, "\"args\":{\"name\":\"loop (transfers, collectives)\"}"));
  /* The user's steps 1, 2, 3: four events each (2 programs x 2 shards). */
  for (int k = 1; k <= 3; k++) {
    int n = 0;
    snprintf(want, sizeof want, "\"args\":{\"step\":%d,", k);
    for (char *p = text; (p = strstr(p, want)) != NULL; p++) n++;
    if (n != 4) fail_msg("step %d: %d events, want 4", k, n);
  }
  assert_null(strstr(text, "\"args\":{\"step\":4,"));
  free(text);
  remove(path);
  rmdir(dir);
}

/* pathflow trace: per-rank files merge into one array; a file cut short
 * is refused, naming it. */
static void test_trace_merge(void **state) {
  char dir[] = "/tmp/pathflow-merge-XXXXXX", out[256], why[512], *text;
  char paths[2][256];
  const char *files[2] = {paths[0], paths[1]};
  pf_trace *t;
  FILE *fp;
  (void)state;
  assert_non_null(mkdtemp(dir));
  setenv("PATHFLOW_TRACE_DIR", dir, 1);
  for (int r = 1; r <= 2; r++) { /* not rank 0: that one merges on close */
    assert_int_equal(pf_trace_open(r, 3, 1, &t, why, sizeof why), 0);
    pf_trace_event(t, "op", "kernel", 0, 1000, 2000, 7, 1, 42);
    pf_trace_close(t);
    snprintf(paths[r - 1], sizeof paths[0], "%s/pathflow-trace.%d.json", dir, r);
  }
  unsetenv("PATHFLOW_TRACE_DIR");
  snprintf(out, sizeof out, "%s/job.json", dir);
  assert_int_equal(pf_trace_merge(out, files, 2, why, sizeof why), 0);
  text = slurp(out);
  assert_balanced(text);
  assert_non_null(strstr(text, "\"pid\":1,\"tid\":0,\"ts\":1.000"));
  assert_non_null(strstr(text, "\"pid\":2,\"tid\":0,\"ts\":1.000"));
  assert_non_null(strstr(text, "\"args\":{\"step\":1,\"executable\":7,\"step_id\":42}"));
  free(text);
  /* Cut short: the closing bracket missing. */
  fp = fopen(paths[1], "w");
  fputs("[\n{\"name\":\"process_name\"", fp);
  fclose(fp);
  assert_int_equal(pf_trace_merge(out, files, 2, why, sizeof why), PF_EDECODE);
  assert_non_null(strstr(why, paths[1]));
  assert_non_null(strstr(why, "not a complete pathflow timeline"));
  for (int i = 0; i < 2; i++) remove(paths[i]);
  remove(out);
  rmdir(dir);
}

int main(void) {
  const struct CMUnitTest tests[] = {cmocka_unit_test(test_trace_file),
                                     cmocka_unit_test(test_trace_merge)};
  return cmocka_run_group_tests(tests, NULL, NULL);
}
