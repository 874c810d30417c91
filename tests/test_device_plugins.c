/* Device plugins as pf_init opens them (runtime/device_plugins.c), through
 * libpathflow.so as a program gets it: a listed plugin that does not open
 * or lacks the open symbol fails pf_init with a message naming the path;
 * a bad PATHFLOW_CUDA names the variable; without an NVIDIA driver the
 * CUDA plugin is not even looked for, and the context has no GPU device.
 * pf_init's messages go to stderr (there is no context to hold them): the
 * tests read them back from a file. */
#include "testing.h"

#include <unistd.h>

#include "init_capture.h"

static pf_context *ctx;
static char err_path[] = "/tmp/pf_test_device_plugins_XXXXXX";

static void expect_failure(int code, const char *const *words) {
  char text[4096];
  int rc = init_quiet(&ctx, text, sizeof text);
  if (rc == 0) {
    pf_finalize(ctx);
    fail_msg("pf_init succeeded; expected %s", pf_errname(code));
  }
  assert_null(ctx);
  if (rc != code) fail_msg("pf_init: %s, expected %s (%s)", pf_errname(rc), pf_errname(code), text);
  for (int i = 0; words[i]; i++)
    if (strstr(text, words[i]) == NULL) fail_msg("message \"%s\" lacks \"%s\"", text, words[i]);
}

static int setup(void **state) {
  (void)state;
  if (init_capture_open(err_path) != 0) return -1;
  setenv("PATHFLOW_CPU_DEVICES", "2", 1);
  unsetenv("PATHFLOW_LOOPBACK_RANKS");
  return 0;
}

static int teardown(void **state) {
  (void)state;
  close(capture_fd);
  return 0;
}

/* Each test starts with no plugin asked for and CUDA off. */
static int reset(void **state) {
  (void)state;
  unsetenv("PATHFLOW_DEVICE_PLUGINS");
  unsetenv("PATHFLOW_LOOPBACK_RANKS");
  setenv("PATHFLOW_CUDA", "0", 1);
  ctx = NULL;
  return 0;
}

static void listed_plugin_missing(void **state) {
  (void)state;
  setenv("PATHFLOW_DEVICE_PLUGINS", "/nonexistent/libpf_no_such_plugin.so", 1);
  expect_failure(PF_ENOTFOUND, (const char *[]){"PATHFLOW_DEVICE_PLUGINS",
                                                "/nonexistent/libpf_no_such_plugin.so", NULL});
}

/* The loopback's ranks each start plugin devices: a failure there leaves
 * nothing running either. */
static void listed_plugin_missing_loopback(void **state) {
  (void)state;
  setenv("PATHFLOW_LOOPBACK_RANKS", "3", 1);
  setenv("PATHFLOW_DEVICE_PLUGINS", "/nonexistent/libpf_no_such_plugin.so", 1);
  expect_failure(PF_ENOTFOUND, (const char *[]){"/nonexistent/libpf_no_such_plugin.so", NULL});
}

static void listed_plugin_without_symbol(void **state) {
  (void)state;
  setenv("PATHFLOW_DEVICE_PLUGINS", PF_NOSYM_PLUGIN, 1);
  expect_failure(PF_ENOTFOUND,
                 (const char *[]){PF_NOSYM_PLUGIN, "pathflow_device_plugin_open", NULL});
}

/* Empty entries of the list are skipped; the path that fails is named. */
static void empty_entries_skipped(void **state) {
  (void)state;
  setenv("PATHFLOW_DEVICE_PLUGINS", "::/nonexistent/second.so:", 1);
  expect_failure(PF_ENOTFOUND,
                 (const char *[]){"PATHFLOW_DEVICE_PLUGINS: /nonexistent/second.so", NULL});
}

static void bad_cuda_value(void **state) {
  (void)state;
  setenv("PATHFLOW_CUDA", "yes", 1);
  expect_failure(PF_EINVAL, (const char *[]){"PATHFLOW_CUDA=yes", "0, 1 or auto", NULL});
}

static void no_plugins(void **state) {
  char text[4096];
  (void)state;
  setenv("PATHFLOW_DEVICE_PLUGINS", "", 1);
  assert_int_equal(init_quiet(&ctx, text, sizeof text), 0);
  assert_int_equal(pf_device_count(ctx, PF_DEVICE_CPU), 2);
  assert_int_equal(pf_device_count(ctx, PF_DEVICE_GPU), 0);
  OK(pf_finalize(ctx));
  setenv("PATHFLOW_LOOPBACK_RANKS", "2", 1);
  assert_int_equal(init_quiet(&ctx, text, sizeof text), 0);
  assert_int_equal(pf_device_count(ctx, PF_DEVICE_CPU), 4);
  assert_int_equal(pf_device_count(ctx, PF_DEVICE_GPU), 0);
  OK(pf_finalize(ctx));
}

/* PATHFLOW_CUDA unset (auto) and "auto": without an NVIDIA driver, no GPU
 * device and no error, whatever is installed. */
static void cuda_auto_without_driver(void **state) {
  const char *modes[] = {NULL, "auto"};
  (void)state;
  if (access("/proc/driver/nvidia/version", F_OK) == 0)
    skip(); /* a GPU machine: tests/cuda/test_cuda_plugin covers it */
  for (int i = 0; i < 2; i++) {
    char text[4096];
    if (modes[i])
      setenv("PATHFLOW_CUDA", modes[i], 1);
    else
      unsetenv("PATHFLOW_CUDA");
    assert_int_equal(init_quiet(&ctx, text, sizeof text), 0);
    assert_int_equal(pf_device_count(ctx, PF_DEVICE_GPU), 0);
    assert_int_equal(pf_device_count(ctx, PF_DEVICE_CPU), 2);
    assert_null(strstr(text, "warning"));
    OK(pf_finalize(ctx));
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup(listed_plugin_missing, reset),
      cmocka_unit_test_setup(listed_plugin_missing_loopback, reset),
      cmocka_unit_test_setup(listed_plugin_without_symbol, reset),
      cmocka_unit_test_setup(empty_entries_skipped, reset),
      cmocka_unit_test_setup(bad_cuda_value, reset),
      cmocka_unit_test_setup(no_plugins, reset),
      cmocka_unit_test_setup(cuda_auto_without_driver, reset),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
