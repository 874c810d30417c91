/* pf_init with what it prints to stderr captured, for tests that check
 * pf_init's messages (test_device_plugins, tests/cuda/test_cuda_plugin).
 * Include after cmocka.h, pathflow.h and unistd.h. */
#ifndef PF_TESTS_INIT_CAPTURE_H
#define PF_TESTS_INIT_CAPTURE_H

/* The file stderr goes to: made by init_capture_open (a setup). */
static int capture_fd = -1;

/* Makes the capture file (unlinked at once, from `template`, a mkstemp
 * pattern). Returns 0, or -1. */
static int init_capture_open(char *template) {
  if ((capture_fd = mkstemp(template)) < 0) return -1;
  unlink(template);
  return 0;
}

/* pf_init with stderr sent to the capture file, whose text (up to n - 1
 * bytes) lands in `text`. Returns what pf_init returned. */
static int init_quiet(pf_context **out, char *text, size_t n) {
  int saved, rc;
  ssize_t got;
  fflush(stderr);
  saved = dup(2);
  assert_true(saved >= 0);
  assert_int_equal(ftruncate(capture_fd, 0), 0);
  assert_int_equal(lseek(capture_fd, 0, SEEK_SET), 0);
  assert_true(dup2(capture_fd, 2) >= 0);
  rc = pf_init(NULL, NULL, NULL, out);
  fflush(stderr);
  assert_true(dup2(saved, 2) >= 0);
  close(saved);
  got = pread(capture_fd, text, n - 1, 0);
  text[got > 0 ? got : 0] = '\0';
  return rc;
}

#endif
