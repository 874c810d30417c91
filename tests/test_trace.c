/* PATHFLOW_TRACE=1 writes a Chrome trace of real runs: one event per op,
 * on the row of its device, in a file per rank. */
#include <unistd.h>

#include "testing.h"

static pf_context *ctx;

static void test_trace_file(void **state) {
  char dir[] = "/tmp/pathflow-trace-XXXXXX", path[256], *text;
  pf_graph *g;
  pf_executable *exe;
  pf_future *f;
  pf_slice_t s;
  pf_value_t x, y, z;
  pf_spec spec = pf_spec_1d(PF_F32, 64);
  pf_tensor *t;
  FILE *fp;
  long n;
  int depth = 0, events = 0;
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
  snprintf(path, sizeof path, "%s/pathflow-trace.0.json", dir);
  fp = fopen(path, "r");
  assert_non_null(fp);
  fseek(fp, 0, SEEK_END);
  n = ftell(fp);
  fseek(fp, 0, SEEK_SET);
  text = calloc(1, (size_t)n + 1);
  assert_int_equal(fread(text, 1, (size_t)n, fp), (size_t)n);
  fclose(fp);
  /* A JSON array of balanced objects, the quote in a name escaped. */
  assert_int_equal(text[0], '[');
  for (long i = 0; i < n; i++) {
    depth += text[i] == '{' ? 1 : text[i] == '}' ? -1 : 0;
    assert_true(depth >= 0);
  }
  assert_int_equal(depth, 0);
  assert_non_null(strstr(text, "\n]"));
  assert_non_null(strstr(text, "first \\\"quoted\\\""));
  for (char *p = text; (p = strstr(p, "\"ph\":\"X\"")) != NULL; p++) events++;
  /* 2 programs x 2 shards x 3 steps, one event each. */
  assert_int_equal(events, 12);
  assert_non_null(strstr(text, "\"tid\":1"));
  free(text);
  remove(path);
  rmdir(dir);
}

int main(void) {
  const struct CMUnitTest tests[] = {cmocka_unit_test(test_trace_file)};
  return cmocka_run_group_tests(tests, NULL, NULL);
}
