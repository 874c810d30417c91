/* One test per validation error: each checks the code, that the message in
 * pf_last_error names the node and the values or sizes at fault, and that
 * the context still compiles and runs a good graph right afterwards.
 *
 * Graph-level errors are raised three ways where the API allows: by the
 * builders, by pf_graph_validate / pf_compile on a rewired graph
 * (pf_graph_set_input), and on a graph decoded from bytes that were edited
 * after encoding (the way an untrusted graph arrives). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "graph/graph_internal.h"
#include "pathflow.h"
#include "proto/pathflow.pb-c.h"

#define NDEV 4

static pf_context *ctx;

#define OK(call)                                                              \
  do {                                                                        \
    int rc_ = (call);                                                         \
    if (rc_ != 0)                                                             \
      fail_msg("%s = %s: %s", #call, pf_errname(rc_), pf_last_error(ctx));    \
  } while (0)

/* The call returns `code` and pf_last_error contains every needle. */
#define FAILS(code, call, ...)                                                \
  do {                                                                        \
    int rc_ = (call);                                                         \
    const char *needles_[] = {__VA_ARGS__};                                   \
    if (rc_ != (code))                                                        \
      fail_msg("line %d: %s = %s, expected %s (%s)", __LINE__, #call,         \
               pf_errname(rc_), pf_errname(code), pf_last_error(ctx));        \
    for (size_t k_ = 0; k_ < sizeof needles_ / sizeof *needles_; k_++)        \
      if (strstr(pf_last_error(ctx), needles_[k_]) == NULL)                   \
        fail_msg("line %d: %s: message \"%s\" does not mention \"%s\"",       \
                 __LINE__, #call, pf_last_error(ctx), needles_[k_]);          \
  } while (0)

/* The message does not contain `s`. */
#define NOT_MENTIONED(s)                                                      \
  do {                                                                        \
    if (strstr(pf_last_error(ctx), (s)) != NULL)                              \
      fail_msg("line %d: message \"%s\" mentions \"%s\"", __LINE__,          \
               pf_last_error(ctx), (s));                                      \
  } while (0)

/* Occurrences of needle in pf_last_error. */
static int mentions(const char *needle) {
  int n = 0;
  for (const char *p = pf_last_error(ctx); (p = strstr(p, needle)) != NULL; p++) n++;
  return n;
}

static int setup(void **state) {
  pf_init_options o = {.cpu_devices = NDEV};
  (void)state;
  return pf_init(NULL, NULL, &o, &ctx);
}

static int teardown(void **state) {
  (void)state;
  return pf_finalize(ctx);
}

/* ---- helpers ---------------------------------------------------------------- */

static pf_graph *new_graph(void) {
  pf_graph *g = NULL;
  OK(pf_graph_create(ctx, &g));
  return g;
}

static pf_slice_t new_slice(pf_graph *g, int n) {
  pf_slice_t s = {PF_NO_ID};
  OK(pf_graph_slice(g, PF_DEVICE_CPU, n, &s));
  return s;
}

static pf_value_t new_input(pf_graph *g, const char *name, pf_spec spec,
                            pf_slice_t s, pf_sharding sh) {
  pf_value_t v = PF_NO_VALUE;
  OK(pf_graph_input(g, name, &spec, s, sh, &v));
  return v;
}

static pf_value_t prog1(pf_graph *g, const char *name, const char *kernel,
                        pf_slice_t s, int n_in, const pf_value_t *in,
                        pf_program_t *prog) {
  pf_value_t out = PF_NO_VALUE;
  pf_program_desc d = {.name = name, .kernel = kernel, .slice = s,
                       .n_in = n_in, .in = in};
  OK(pf_graph_program(g, &d, &out, prog));
  return out;
}

static pf_tensor *f32_tensor(int64_t n, float scale, float offset) {
  pf_spec s = pf_spec_1d(PF_F32, n);
  pf_tensor *t = NULL;
  OK(pf_tensor_create(&s, &t));
  for (int64_t i = 0; i < n; i++)
    ((float *)pf_tensor_data(t))[i] = (float)i * scale + offset;
  return t;
}

/* z = x + y over two devices, split by halves: compile, run, check. Called
 * after every error to show the context took no harm. */
static void assert_usable(void) {
  pf_graph *g = new_graph();
  pf_slice_t s = new_slice(g, 2);
  pf_value_t x = new_input(g, "x", pf_spec_1d(PF_F32, 8), s, pf_split(0));
  pf_value_t y = new_input(g, "y", pf_spec_1d(PF_F32, 8), s, pf_split(0));
  pf_value_t z = prog1(g, "sum", "add", s, 2, (pf_value_t[]){x, y}, NULL);
  pf_executable *exe = NULL;
  pf_future *f = NULL;
  pf_tensor *xt = f32_tensor(8, 1.0f, 0.5f), *yt = f32_tensor(8, -2.0f, 10.0f);
  pf_tensor *zt = NULL;
  int rc;
  OK(pf_graph_output(g, "z", z));
  OK(pf_compile(g, &exe));
  OK(pf_execute(exe, 2,
                (pf_feed[]){{.name = "x", .tensor = xt}, {.name = "y", .tensor = yt}},
                &f));
  rc = pf_future_wait(f);
  if (rc != 0) fail_msg("usable: %s: %s", pf_errname(rc), pf_future_error(f));
  OK(pf_future_fetch(f, "z", &zt));
  for (int i = 0; i < 8; i++)
    assert_true(((const float *)pf_tensor_cdata(zt))[i] ==
                ((float)i + 0.5f) + ((float)i * -2.0f + 10.0f));
  pf_tensor_destroy(xt);
  pf_tensor_destroy(yt);
  pf_tensor_destroy(zt);
  pf_future_destroy(f);
  pf_executable_destroy(exe);
  pf_graph_destroy(g);
}

/* Both pf_graph_validate and pf_compile refuse g with `code`; compile
 * leaves no executable. The message check is left to the caller (after
 * pf_compile, which reports the same problem). */
static void assert_refused(pf_graph *g, int code) {
  pf_executable *exe = (pf_executable *)&exe;
  int rc = pf_graph_validate(g);
  char msg[512];
  if (rc != code)
    fail_msg("validate = %s, expected %s (%s)", pf_errname(rc), pf_errname(code),
             pf_last_error(ctx));
  snprintf(msg, sizeof msg, "%s", pf_last_error(ctx));
  assert_true(strlen(msg) > 0);
  rc = pf_compile(g, &exe);
  if (rc != code)
    fail_msg("compile = %s, expected %s (%s)", pf_errname(rc), pf_errname(code),
             pf_last_error(ctx));
  assert_null(exe);
  /* Both describe the same problem. */
  assert_string_equal(pf_last_error(ctx), msg);
}

/* Encodes g, lets `edit` change the message, and decodes the result into a
 * new graph (which must decode: only semantics are broken). `edit` is called
 * with undo = 0 before packing and undo = 1 after, so that it can put back
 * counts it shortened before protobuf-c frees the message. */
typedef void (*edit_fn)(Pathflow__Graph *m, int undo);

static pf_graph *edited(const pf_graph *g, edit_fn edit) {
  uint8_t *buf = NULL, *out;
  size_t len = 0, n;
  Pathflow__Graph *m;
  pf_graph *h = NULL;
  OK(pf_graph_encode(g, &buf, &len));
  m = pathflow__graph__unpack(NULL, len, buf);
  assert_non_null(m);
  free(buf);
  edit(m, 0);
  n = pathflow__graph__get_packed_size(m);
  out = malloc(n ? n : 1);
  assert_non_null(out);
  pathflow__graph__pack(m, out);
  edit(m, 1);
  pathflow__graph__free_unpacked(m, NULL);
  OK(pf_graph_decode(ctx, out, n, &h));
  free(out);
  assert_non_null(h);
  return h;
}

/* x[4] -> identity "first" -> output "out", on one slice of `n`. */
static pf_graph *small_graph(int n) {
  pf_graph *g = new_graph();
  pf_slice_t s = new_slice(g, n);
  pf_value_t x = new_input(g, "x", pf_spec_1d(PF_F32, 4), s, pf_replicated());
  pf_value_t y = prog1(g, "first", "identity", s, 1, &x, NULL);
  OK(pf_graph_output(g, "out", y));
  OK(pf_graph_validate(g));
  return g;
}

/* A control edge whose ids point nowhere, or at one program twice, is
 * PF_EDECODE naming the edge; a valid one decodes and orders the graph. */
static void test_control_edge_decode(void **state) {
  pf_graph *g = small_graph(1), *h = NULL;
  uint8_t *buf = NULL, *out;
  size_t len = 0, n;
  Pathflow__Graph *m;
  pf_value_t x = {0}, y; /* small_graph's input */
  const int32_t bad[][2] = {{0, 99}, {-1, 0}, {1, 1}};
  (void)state;
  y = prog1(g, "second", "identity", (pf_slice_t){0}, 1, &x, NULL);
  OK(pf_graph_output(g, "out2", y));
  OK(pf_graph_control(g, (pf_program_t){1}, (pf_program_t){0}));
  OK(pf_graph_encode(g, &buf, &len));
  OK(pf_graph_decode(ctx, buf, len, &h));
  OK(pf_graph_validate(h));
  pf_graph_destroy(h);
  for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
    m = pathflow__graph__unpack(NULL, len, buf);
    assert_non_null(m);
    assert_int_equal(m->n_controls, 1);
    m->controls[0]->before = bad[k][0];
    m->controls[0]->after = bad[k][1];
    n = pathflow__graph__get_packed_size(m);
    out = malloc(n);
    assert_non_null(out);
    pathflow__graph__pack(m, out);
    pathflow__graph__free_unpacked(m, NULL);
    h = NULL;
    assert_int_equal(pf_graph_decode(ctx, out, n, &h), PF_EDECODE);
    assert_null(h);
    assert_non_null(strstr(pf_last_error(ctx), "control dependency"));
    free(out);
  }
  free(buf);
  pf_graph_destroy(g);
}

/* Every "X" <- "Y" in the cycle message is an edge of g: program X reads an
 * output of program Y. A last name cut off by the message's length (no
 * closing quote) must still be the start of such a Y. Returns the number of
 * names listed, whole or cut, or -1 with the reason in `why`. */
static int cycle_path_names(const pf_graph *g, char *why, size_t len) {
  const char *msg = pf_last_error(ctx), *p = strstr(msg, "cycle: ");
  char prev[PF_NAME_MAX + 1] = "", cur[PF_NAME_MAX + 1];
  int names = 0;
  assert_non_null(p);
  p += strlen("cycle: ");
  for (;;) {
    const char *open = strchr(p, '"'), *close;
    int cut;
    size_t n;
    if (open == NULL) break;
    close = strchr(open + 1, '"');
    cut = close == NULL;
    n = cut ? strlen(open + 1) : (size_t)(close - open - 1);
    if (cut && n == 0) break;
    assert_true(n <= PF_NAME_MAX);
    memcpy(cur, open + 1, n);
    cur[n] = '\0';
    if (names > 0) {
      const pf_gprogram *x = NULL;
      int edge = 0;
      /* Between two names there is exactly the arrow. */
      if (strncmp(p, " <- ", 4) != 0 || open != p + 4) {
        snprintf(why, len, "cycle message \"%s\": no arrow before \"%s\"", msg,
                 cur);
        return -1;
      }
      for (size_t i = 0; i < g->n_programs; i++)
        if (strcmp(g->programs[i].name, prev) == 0) x = &g->programs[i];
      assert_non_null(x);
      for (int i = 0; i < x->n_in; i++) {
        int32_t q = g->values[x->in[i]].producer;
        if (q >= 0 && (cut ? strncmp(g->programs[q].name, cur, n)
                           : strcmp(g->programs[q].name, cur)) == 0)
          edge = 1;
      }
      if (!edge) {
        snprintf(why, len,
                 "cycle message \"%s\": program \"%.12s...\" does not read "
                 "\"%.12s...\"",
                 msg, prev, cur);
        return -1;
      }
    }
    names++;
    if (cut) break;
    memcpy(prev, cur, n + 1);
    p = close + 1;
  }
  return names;
}

static int check_cycle_path(const pf_graph *g) {
  char why[1024];
  int n = cycle_path_names(g, why, sizeof why);
  if (n < 0) fail_msg("%s", why);
  return n;
}

/* ---- PF_ECYCLE ----------------------------------------------------------------- */

static void test_cycle(void **state) {
  pf_graph *g = new_graph();
  pf_slice_t s = new_slice(g, 1);
  pf_value_t x = new_input(g, "x", pf_spec_1d(PF_F32, 4), s, pf_replicated());
  pf_program_t pa;
  pf_value_t pre, a, b, c, tail;
  (void)state;
  /* pre -> cyc_a -> cyc_b -> cyc_c -> tail, then cyc_a reads cyc_c. */
  pre = prog1(g, "pre", "identity", s, 1, &x, NULL);
  a = prog1(g, "cyc_a", "add", s, 2, (pf_value_t[]){pre, x}, &pa);
  b = prog1(g, "cyc_b", "relu", s, 1, &a, NULL);
  c = prog1(g, "cyc_c", "identity", s, 1, &b, NULL);
  tail = prog1(g, "tail", "identity", s, 1, &c, NULL);
  OK(pf_graph_output(g, "out", tail));
  OK(pf_graph_validate(g));
  OK(pf_graph_set_input(g, pa, 1, c));
  assert_refused(g, PF_ECYCLE);
  FAILS(PF_ECYCLE, pf_graph_validate(g), "\"cyc_a\"", "\"cyc_b\"", "\"cyc_c\"");
  assert_int_equal(check_cycle_path(g), 4);
  /* Programs off the cycle are not on its path. */
  NOT_MENTIONED("\"tail\"");
  NOT_MENTIONED("\"pre\"");
  /* The cycle is listed once round: the start repeated at the end, no more. */
  assert_int_equal(mentions("\"cyc_a\"") + mentions("\"cyc_b\"") +
                       mentions("\"cyc_c\""),
                   4);
  /* Undo: valid again. */
  OK(pf_graph_set_input(g, pa, 1, x));
  OK(pf_graph_validate(g));
  /* A program reading its own output. */
  OK(pf_graph_set_input(g, pa, 0, a));
  assert_refused(g, PF_ECYCLE);
  FAILS(PF_ECYCLE, pf_graph_validate(g), "\"cyc_a\"");
  assert_int_equal(mentions("\"cyc_a\""), 2);
  assert_int_equal(check_cycle_path(g), 2);
  NOT_MENTIONED("\"cyc_b\"");
  NOT_MENTIONED("\"tail\"");
  pf_graph_destroy(g);

  assert_usable();
}

/* A cycle of 12 programs with 127-byte names: more than the message holds.
 * Whatever part of the cycle is listed must be true: each arrow an edge. */
static void test_cycle_long_names(void **state) {
  pf_graph *g = new_graph();
  pf_slice_t s = new_slice(g, 1);
  pf_value_t x = new_input(g, "x", pf_spec_1d(PF_F32, 4), s, pf_replicated());
  pf_value_t v = x;
  pf_program_t first = {PF_NO_ID};
  char name[PF_NAME_MAX + 1];
  (void)state;
  for (int i = 0; i < 12; i++) {
    memset(name, 'a' + i, PF_NAME_MAX);
    name[PF_NAME_MAX] = '\0';
    v = prog1(g, name, "identity", s, 1, &v, i == 0 ? &first : NULL);
  }
  prog1(g, "after", "identity", s, 1, &v, NULL);
  OK(pf_graph_set_input(g, first, 0, v));
  assert_refused(g, PF_ECYCLE);
  FAILS(PF_ECYCLE, pf_graph_validate(g), "cycle");
  NOT_MENTIONED("\"after\"");
  {
    /* Checked before failing, so that a failure leaks nothing. */
    char why[1024];
    int n = cycle_path_names(g, why, sizeof why);
    pf_graph_destroy(g);
    if (n < 0) fail_msg("%s", why);
    assert_true(n >= 1);
  }
  assert_usable();
}

/* ---- PF_ENOKERNEL -------------------------------------------------------------- */

static void rename_kernel(Pathflow__Graph *m, int undo) {
  /* "identity" -> "identitz", in place (same length, nothing to free). */
  char *k = m->programs[0]->kernel;
  assert_string_equal(k, undo ? "identitz" : "identity");
  k[7] = undo ? 'y' : 'z';
}

static void test_no_kernel(void **state) {
  pf_graph *g = small_graph(1), *h;
  pf_value_t out;
  pf_program_desc d = {.name = "mystery", .kernel = "no_such_kernel",
                       .slice = {0}, .n_in = 1, .in = (pf_value_t[]){{0}}};
  (void)state;
  FAILS(PF_ENOKERNEL, pf_graph_program(g, &d, &out, NULL), "\"mystery\"",
        "\"no_such_kernel\"", "cpu");
  d.name = NULL;
  FAILS(PF_ENOKERNEL, pf_graph_program(g, &d, &out, NULL), "no_such_kernel_1");
  assert_int_equal(pf_graph_num_programs(g), 1);
  /* From bytes: the kernel is looked up again. */
  h = edited(g, rename_kernel);
  assert_refused(h, PF_ENOKERNEL);
  FAILS(PF_ENOKERNEL, pf_graph_validate(h), "\"first\"", "\"identitz\"");
  pf_graph_destroy(h);
  pf_graph_destroy(g);
  assert_usable();
}

/* ---- PF_EARITY ------------------------------------------------------------------- */

static void drop_program_input(Pathflow__Graph *m, int undo) {
  Pathflow__Program *p = m->programs[0];
  if (undo) {
    p->n_inputs++;
    p->n_in_shardings++;
  } else {
    assert_int_equal(p->n_inputs, 2);
    p->n_inputs--;
    p->n_in_shardings--;
  }
}

static void test_arity(void **state) {
  pf_graph *g = new_graph(), *h;
  pf_slice_t s = new_slice(g, 1);
  pf_value_t x = new_input(g, "x", pf_spec_1d(PF_F32, 4), s, pf_replicated());
  pf_value_t v;
  pf_program_desc d = {.name = "lonely_add", .kernel = "add", .slice = s,
                       .n_in = 1, .in = &x};
  (void)state;
  FAILS(PF_EARITY, pf_graph_program(g, &d, &v, NULL), "\"lonely_add\"",
        "\"add\"", "2", "got 1");
  d.n_in = 3;
  d.in = (pf_value_t[]){x, x, x};
  FAILS(PF_EARITY, pf_graph_program(g, &d, &v, NULL), "\"lonely_add\"", "got 3");
  d.n_in = 0;
  FAILS(PF_EARITY, pf_graph_program(g, &d, &v, NULL), "\"lonely_add\"", "got 0");
  d.n_in = -1;
  FAILS(PF_EARITY, pf_graph_program(g, &d, &v, NULL), "\"lonely_add\"", "-1");
  d.n_in = PF_MAX_ARGS + 1;
  FAILS(PF_EARITY, pf_graph_program(g, &d, &v, NULL), "\"lonely_add\"", "1025");
  d.n_in = 2;
  d.in = NULL;
  FAILS(PF_EARITY, pf_graph_program(g, &d, &v, NULL), "\"lonely_add\"");
  /* From bytes: a program that lost an input. */
  v = prog1(g, "pair", "add", s, 2, (pf_value_t[]){x, x}, NULL);
  OK(pf_graph_output(g, "out", v));
  h = edited(g, drop_program_input);
  assert_refused(h, PF_EARITY);
  FAILS(PF_EARITY, pf_graph_validate(h), "\"pair\"", "\"add\"", "2", "got 1");
  pf_graph_destroy(h);
  pf_graph_destroy(g);
  assert_usable();
}

/* ---- PF_EDTYPE ----------------------------------------------------------------- */

static void test_dtype(void **state) {
  pf_graph *g = new_graph();
  pf_slice_t s = new_slice(g, 2);
  pf_value_t x = new_input(g, "x", pf_spec_1d(PF_F32, 4), s, pf_split(0));
  pf_value_t y = new_input(g, "y", pf_spec_1d(PF_F32, 4), s, pf_split(0));
  pf_value_t z = new_input(g, "z", pf_spec_1d(PF_F64, 4), s, pf_split(0));
  pf_value_t v;
  pf_program_t p;
  pf_program_desc d = {.name = "mixed", .kernel = "add", .slice = s, .n_in = 2,
                       .in = (pf_value_t[]){x, z}};
  (void)state;
  /* Shard specs over 2 devices: [2]. */
  FAILS(PF_EDTYPE, pf_graph_program(g, &d, &v, NULL), "\"mixed\"", "\"add\"",
        "f32[2]", "f64[2]");
  /* Rewired: add(x, y) made to read z. */
  v = prog1(g, "sum", "add", s, 2, (pf_value_t[]){x, y}, &p);
  OK(pf_graph_output(g, "out", v));
  OK(pf_graph_validate(g));
  OK(pf_graph_set_input(g, p, 1, z));
  assert_refused(g, PF_EDTYPE);
  FAILS(PF_EDTYPE, pf_graph_validate(g), "\"sum\"", "f64[2]", "f32[2]");
  /* Both inputs f64: the kernel accepts it, but the output value is f32. */
  OK(pf_graph_set_input(g, p, 0, z));
  assert_refused(g, PF_EDTYPE);
  FAILS(PF_EDTYPE, pf_graph_validate(g), "\"sum\"", "f64[4]", "f32[4]");
  pf_graph_destroy(g);
  assert_usable();
}

/* ---- PF_ESHAPE ----------------------------------------------------------------- */

static void test_shape(void **state) {
  pf_graph *g = new_graph();
  pf_slice_t s = new_slice(g, 1);
  pf_value_t x = new_input(g, "x", pf_spec_1d(PF_F32, 4), s, pf_replicated());
  pf_value_t y = new_input(g, "y", pf_spec_1d(PF_F32, 5), s, pf_replicated());
  pf_value_t a = new_input(g, "a", pf_spec_2d(PF_F32, 2, 3), s, pf_replicated());
  pf_value_t b = new_input(g, "b", pf_spec_2d(PF_F32, 4, 5), s, pf_replicated());
  pf_value_t v;
  pf_program_t p;
  (void)state;
  {
    pf_program_desc d = {.name = "mismatch", .kernel = "add", .slice = s,
                         .n_in = 2, .in = (pf_value_t[]){x, y}};
    FAILS(PF_ESHAPE, pf_graph_program(g, &d, &v, NULL), "\"mismatch\"",
          "\"add\"", "f32[4]", "f32[5]");
  }
  {
    pf_program_desc d = {.name = "mm", .kernel = "matmul", .slice = s,
                         .n_in = 2, .in = (pf_value_t[]){a, b}};
    FAILS(PF_ESHAPE, pf_graph_program(g, &d, &v, NULL), "\"mm\"", "\"matmul\"",
          "3", "4", "f32[2,3]", "f32[4,5]");
  }
  /* Rewired: identity of x made to read y; the kernel is happy, the output
   * value is not. */
  v = prog1(g, "copy", "identity", s, 1, &x, &p);
  OK(pf_graph_output(g, "out", v));
  OK(pf_graph_set_input(g, p, 0, y));
  assert_refused(g, PF_ESHAPE);
  FAILS(PF_ESHAPE, pf_graph_validate(g), "\"copy\"", "f32[5]", "f32[4]");
  pf_graph_destroy(g);
  assert_usable();
}

/* ---- PF_ESPLIT ----------------------------------------------------------------- */

static void bad_value_axis(Pathflow__Graph *m, int undo) {
  /* Value 0 is input x, split(0). */
  Pathflow__Sharding *sh = m->values[0]->sharding;
  assert_int_equal(sh->kind, PF_SHARD_SPLIT);
  sh->axis = undo ? 0 : 3;
}

static void test_split(void **state) {
  pf_graph *g = new_graph(), *h;
  pf_slice_t three = new_slice(g, 3), two = new_slice(g, 2);
  pf_value_t v, x;
  (void)state;
  /* Inputs: 10 does not divide over 3; axis past the rank. */
  FAILS(PF_ESPLIT, pf_graph_input(g, "ten", &(pf_spec){PF_F32, 1, {10}}, three,
                                  pf_split(0), &v),
        "\"ten\"", "10", "3");
  FAILS(PF_ESPLIT, pf_graph_input(g, "flat", &(pf_spec){PF_F32, 2, {6, 6}}, three,
                                  pf_split(2), &v),
        "\"flat\"", "axis 2", "f32[6,6]");
  assert_int_equal(pf_graph_num_inputs(g), 0);
  x = new_input(g, "x", pf_spec_1d(PF_F32, 6), two, pf_split(0));
  /* Program outputs: axis past the rank, which no rule gives. */
  {
    pf_program_desc d = {.name = "wide", .kernel = "relu", .slice = two,
                         .n_in = 1, .in = &x,
                         .out_shardings = (pf_sharding[]){pf_split(1)}};
    FAILS(PF_ESHARDING, pf_graph_program(g, &d, &v, NULL), "\"wide\"",
          "output 0", "split(1)", "split(0)");
  }
  /* Program inputs: 6 does not divide over 4... of a slice of 3 it does;
   * consume x split over 3 devices of a 3-slice with axis out of range. */
  {
    pf_program_desc d = {.name = "odd", .kernel = "relu", .slice = three,
                         .n_in = 1, .in = &x,
                         .in_shardings = (pf_sharding[]){pf_split(1)}};
    FAILS(PF_ESPLIT, pf_graph_program(g, &d, &v, NULL), "\"odd\"", "input 0",
          "axis 1");
  }
  {
    pf_value_t seven = new_input(g, "seven", pf_spec_1d(PF_F32, 7), three,
                                 pf_replicated());
    pf_program_desc d = {.name = "uneven", .kernel = "relu", .slice = three,
                         .n_in = 1, .in = &seven,
                         .in_shardings = (pf_sharding[]){pf_split(0)}};
    FAILS(PF_ESPLIT, pf_graph_program(g, &d, &v, NULL), "\"uneven\"", "input 0",
          "7", "3");
  }
  /* From bytes: a value whose split axis is out of range. */
  v = prog1(g, "r", "relu", two, 1, &x, NULL);
  OK(pf_graph_output(g, "out", v));
  OK(pf_graph_validate(g));
  h = edited(g, bad_value_axis);
  assert_refused(h, PF_ESPLIT);
  FAILS(PF_ESPLIT, pf_graph_validate(h), "value 0", "axis 3", "f32[6]");
  pf_graph_destroy(h);
  pf_graph_destroy(g);
  assert_usable();
}

/* ---- PF_ESLICE ----------------------------------------------------------------- */

static void big_slice(Pathflow__Graph *m, int undo) {
  m->slices[0]->num_devices = undo ? 1 : NDEV + 3;
}

static void bad_pin(Pathflow__Graph *m, int undo) {
  assert_int_equal(m->slices[0]->n_pinned, 2);
  m->slices[0]->pinned[1] = undo ? 0 : NDEV;
}

static void test_slice(void **state) {
  pf_graph *g = new_graph(), *h;
  pf_slice_t s = {PF_NO_ID};
  (void)state;
  FAILS(PF_ESLICE, pf_graph_slice(g, PF_DEVICE_CPU, NDEV + 1, &s), "5", "4");
  FAILS(PF_ESLICE, pf_graph_slice(g, PF_DEVICE_CPU, 1000, &s), "1000", "4");
  assert_int_equal(s.id, PF_NO_ID);
  s = new_slice(g, 2);
  FAILS(PF_ESLICE, pf_graph_slice_pin(g, s, (int[]){1, NDEV}), "4");
  FAILS(PF_ESLICE, pf_graph_slice_pin(g, s, (int[]){1, 77}), "77");
  FAILS(PF_ESLICE, pf_graph_slice_pin(g, s, (int[]){-2, 0}), "-2");
  assert_null(g->slices[s.id].pinned);
  pf_graph_destroy(g);

  /* From bytes: a graph for a bigger machine. */
  g = small_graph(1);
  h = edited(g, big_slice);
  assert_refused(h, PF_ESLICE);
  FAILS(PF_ESLICE, pf_graph_validate(h), "slice 0", "7", "4");
  pf_graph_destroy(h);
  pf_graph_destroy(g);

  /* From bytes: a pin past the devices there are. */
  g = small_graph(2);
  OK(pf_graph_slice_pin(g, (pf_slice_t){0}, (int[]){1, 0}));
  h = edited(g, bad_pin);
  assert_refused(h, PF_ESLICE);
  FAILS(PF_ESLICE, pf_graph_validate(h), "slice 0", "pinned device 4");
  pf_graph_destroy(h);
  pf_graph_destroy(g);
  assert_usable();
}

/* ---- PF_ENOOUTPUT ------------------------------------------------------------- */

static void drop_last_input(Pathflow__Graph *m, int undo) {
  if (undo) {
    m->n_inputs++;
  } else {
    assert_int_equal(m->n_inputs, 2);
    assert_string_equal(m->inputs[1]->name, "y");
    m->n_inputs--;
  }
}

static void test_no_output(void **state) {
  pf_graph *g, *h;
  pf_slice_t s;
  pf_value_t x, y, v;
  (void)state;
  /* From bytes: output "out" is input y, and the graph loses its input y;
   * value 1 is then made by nothing. */
  g = new_graph();
  s = new_slice(g, 1);
  x = new_input(g, "x", pf_spec_1d(PF_F32, 4), s, pf_replicated());
  y = new_input(g, "y", pf_spec_1d(PF_F32, 4), s, pf_replicated());
  assert_int_equal(y.id, 1);
  OK(pf_graph_output(g, "keep", x));
  OK(pf_graph_output(g, "out", y));
  OK(pf_graph_validate(g));
  h = edited(g, drop_last_input);
  assert_int_equal(pf_graph_num_inputs(h), 1);
  assert_refused(h, PF_ENOOUTPUT);
  FAILS(PF_ENOOUTPUT, pf_graph_validate(h), "\"out\"", "value 1");
  NOT_MENTIONED("\"keep\"");
  pf_graph_destroy(h);
  pf_graph_destroy(g);

  /* Through the internal appenders: a value no program makes and no input
   * names, marked as an output. */
  g = new_graph();
  s = new_slice(g, 1);
  x = new_input(g, "x", pf_spec_1d(PF_F32, 4), s, pf_replicated());
  {
    pf_spec four = pf_spec_1d(PF_F32, 4);
    pf_gvalue orphan = {.spec = &four, .slice = s.id,
                        .sharding = pf_replicated(), .producer = -1,
                        .output_index = 0};
    OK(pf_graph_add_value(g, &orphan));
    v = (pf_value_t){(int32_t)(g->n_values - 1)};
    OK(pf_graph_add_named(g, 1, "orphan", v.id));
  }
  assert_refused(g, PF_ENOOUTPUT);
  FAILS(PF_ENOOUTPUT, pf_graph_validate(g), "\"orphan\"", "value 1");

  /* A program reading that value is refused the same way, naming the
   * program. */
  g->n_outputs--; /* drop "orphan" (its name is freed below) */
  free(g->outputs[g->n_outputs].name);
  {
    pf_program_t p;
    pf_value_t r = prog1(g, "reader", "relu", s, 1, &x, &p);
    OK(pf_graph_output(g, "r", r));
    OK(pf_graph_validate(g));
    OK(pf_graph_set_input(g, p, 0, v));
    assert_refused(g, PF_ENOOUTPUT);
    FAILS(PF_ENOOUTPUT, pf_graph_validate(g), "\"reader\"", "value 1");
  }
  pf_graph_destroy(g);
  assert_usable();
}

/* ---- execution errors ------------------------------------------------------------ */

/* x[4] + y[4] on two devices, compiled. */
static pf_executable *sum_exe(void) {
  pf_graph *g = new_graph();
  pf_slice_t s = new_slice(g, 2);
  pf_value_t x = new_input(g, "x", pf_spec_1d(PF_F32, 4), s, pf_split(0));
  pf_value_t y = new_input(g, "y", pf_spec_1d(PF_F32, 4), s, pf_split(0));
  pf_value_t z = prog1(g, "sum", "add", s, 2, (pf_value_t[]){x, y}, NULL);
  pf_executable *exe = NULL;
  OK(pf_graph_output(g, "z", z));
  OK(pf_compile(g, &exe));
  pf_graph_destroy(g);
  return exe;
}

/* Runs exe on tensors and keeps output z as a device buffer. */
static pf_buffer_t sum_buffer(pf_executable *exe, const pf_tensor *x,
                              const pf_tensor *y) {
  pf_future *f = NULL;
  pf_buffer_t b = {0};
  OK(pf_execute(exe, 2,
                (pf_feed[]){{.name = "x", .tensor = x}, {.name = "y", .tensor = y}},
                &f));
  OK(pf_future_wait(f));
  OK(pf_future_output(f, "z", &b));
  assert_true(b.id != 0);
  pf_future_destroy(f);
  return b;
}

static void test_no_feed(void **state) {
  pf_executable *exe = sum_exe();
  pf_tensor *x = f32_tensor(4, 1, 0);
  pf_future *f = (pf_future *)&f;
  (void)state;
  FAILS(PF_ENOFEED, pf_execute(exe, 1, (pf_feed[]){{.name = "x", .tensor = x}}, &f),
        "\"y\"");
  assert_null(f);
  NOT_MENTIONED("\"x\"");
  FAILS(PF_ENOFEED, pf_execute(exe, 1, (pf_feed[]){{.name = "y", .tensor = x}}, &f),
        "\"x\"");
  FAILS(PF_ENOFEED, pf_execute(exe, 0, NULL, &f), "\"x\"");
  assert_null(f);
  pf_tensor_destroy(x);
  pf_executable_destroy(exe);
  assert_usable();
}

static void test_feed_shape(void **state) {
  pf_executable *exe = sum_exe();
  pf_tensor *good = f32_tensor(4, 1, 0), *five = f32_tensor(5, 1, 0), *wide,
            *dbl;
  pf_future *f = (pf_future *)&f;
  pf_spec s;
  (void)state;
  s = pf_spec_1d(PF_F64, 4);
  OK(pf_tensor_create(&s, &dbl));
  s = pf_spec_2d(PF_F32, 4, 1);
  OK(pf_tensor_create(&s, &wide));
  FAILS(PF_EFEEDSHAPE,
        pf_execute(exe, 2,
                   (pf_feed[]){{.name = "x", .tensor = five},
                               {.name = "y", .tensor = good}},
                   &f),
        "\"x\"", "f32[5]", "f32[4]");
  assert_null(f);
  FAILS(PF_EFEEDSHAPE,
        pf_execute(exe, 2,
                   (pf_feed[]){{.name = "x", .tensor = good},
                               {.name = "y", .tensor = dbl}},
                   &f),
        "\"y\"", "f64[4]", "f32[4]");
  FAILS(PF_EFEEDSHAPE,
        pf_execute(exe, 2,
                   (pf_feed[]){{.name = "y", .tensor = good},
                               {.name = "x", .tensor = wide}},
                   &f),
        "\"x\"", "f32[4,1]", "f32[4]");
  assert_null(f);
  /* A device buffer of the wrong spec: output of another executable. */
  {
    pf_graph *g = new_graph();
    pf_slice_t sl = new_slice(g, 1);
    pf_value_t v = new_input(g, "v", pf_spec_1d(PF_F32, 5), sl, pf_replicated());
    pf_value_t r = prog1(g, "r", "relu", sl, 1, &v, NULL);
    pf_executable *other = NULL;
    pf_future *of = NULL;
    pf_buffer_t b;
    OK(pf_graph_output(g, "r", r));
    OK(pf_compile(g, &other));
    OK(pf_execute(other, 1, (pf_feed[]){{.name = "v", .tensor = five}}, &of));
    OK(pf_future_wait(of));
    OK(pf_future_output(of, "r", &b));
    FAILS(PF_EFEEDSHAPE,
          pf_execute(exe, 2,
                     (pf_feed[]){{.name = "x", .tensor = good},
                                 {.name = "y", .buffer = b}},
                     &f),
          "\"y\"", "f32[5]", "f32[4]");
    assert_null(f);
    OK(pf_buffer_release(ctx, b));
    pf_future_destroy(of);
    pf_executable_destroy(other);
    pf_graph_destroy(g);
  }
  pf_tensor_destroy(good);
  pf_tensor_destroy(five);
  pf_tensor_destroy(wide);
  pf_tensor_destroy(dbl);
  pf_executable_destroy(exe);
  assert_usable();
}

static void test_not_found(void **state) {
  pf_executable *exe = sum_exe();
  pf_tensor *t = f32_tensor(4, 1, 0), *out = NULL;
  pf_future *f = (pf_future *)&f;
  pf_buffer_t b;
  (void)state;
  FAILS(PF_ENOTFOUND,
        pf_execute(exe, 3,
                   (pf_feed[]){{.name = "x", .tensor = t},
                               {.name = "nope", .tensor = t},
                               {.name = "y", .tensor = t}},
                   &f),
        "\"nope\"");
  assert_null(f);
  /* An output name that is no output. */
  OK(pf_execute(exe, 2,
                (pf_feed[]){{.name = "x", .tensor = t}, {.name = "y", .tensor = t}},
                &f));
  OK(pf_future_wait(f));
  FAILS(PF_ENOTFOUND, pf_future_fetch(f, "zz", &out), "\"zz\"");
  assert_null(out);
  FAILS(PF_ENOTFOUND, pf_future_output(f, "x", &b), "\"x\"");
  assert_int_equal(b.id, 0);
  pf_future_destroy(f);
  pf_tensor_destroy(t);
  pf_executable_destroy(exe);
  assert_usable();
}

static void dup_input_name(Pathflow__Graph *m, int undo) {
  /* "y" -> "x", in place. */
  char *n = m->inputs[1]->name;
  assert_string_equal(n, undo ? "x" : "y");
  n[0] = undo ? 'y' : 'x';
}

static void test_exists(void **state) {
  pf_executable *exe = sum_exe();
  pf_tensor *t = f32_tensor(4, 1, 0);
  pf_future *f = (pf_future *)&f;
  pf_graph *g = new_graph();
  pf_slice_t s = new_slice(g, 1);
  pf_value_t x = new_input(g, "x", pf_spec_1d(PF_F32, 4), s, pf_replicated());
  pf_value_t v, r;
  (void)state;
  FAILS(PF_EEXIST,
        pf_execute(exe, 3,
                   (pf_feed[]){{.name = "x", .tensor = t},
                               {.name = "y", .tensor = t},
                               {.name = "x", .tensor = t}},
                   &f),
        "\"x\"", "twice");
  assert_null(f);
  /* Builders: program, input and output names. */
  FAILS(PF_EEXIST, pf_graph_input(g, "x", &(pf_spec){PF_F64, 1, {2}}, s,
                                  pf_replicated(), &v),
        "input \"x\"");
  r = prog1(g, "relu", "relu", s, 1, &x, NULL);
  {
    pf_program_desc d = {.name = "relu", .kernel = "identity", .slice = s,
                         .n_in = 1, .in = &x};
    FAILS(PF_EEXIST, pf_graph_program(g, &d, &v, NULL), "program \"relu\"");
  }
  OK(pf_graph_output(g, "out", r));
  FAILS(PF_EEXIST, pf_graph_output(g, "out", x), "output \"out\"");
  /* A name may be both an input and an output, or a program and an output. */
  OK(pf_graph_output(g, "x", x));
  OK(pf_graph_output(g, "relu", r));
  /* Kernels are not names of programs: "relu" the kernel again is fine
   * under another name. */
  prog1(g, "relu2", "relu", s, 1, &x, NULL);
  OK(pf_graph_validate(g));
  pf_graph_destroy(g);
  /* From bytes: two inputs called "x" do not decode. */
  {
    pf_graph *g2 = new_graph(), *h = (pf_graph *)&h;
    pf_slice_t s2 = new_slice(g2, 1);
    uint8_t *buf = NULL, *out;
    size_t len = 0, n;
    Pathflow__Graph *m;
    new_input(g2, "x", pf_spec_1d(PF_F32, 4), s2, pf_replicated());
    new_input(g2, "y", pf_spec_1d(PF_F32, 4), s2, pf_replicated());
    OK(pf_graph_encode(g2, &buf, &len));
    m = pathflow__graph__unpack(NULL, len, buf);
    assert_non_null(m);
    dup_input_name(m, 0);
    n = pathflow__graph__get_packed_size(m);
    out = malloc(n);
    assert_non_null(out);
    pathflow__graph__pack(m, out);
    dup_input_name(m, 1);
    pathflow__graph__free_unpacked(m, NULL);
    FAILS(PF_EDECODE, pf_graph_decode(ctx, out, n, &h), "\"x\"", "repeated");
    assert_null(h);
    free(out);
    free(buf);
    pf_graph_destroy(g2);
  }
  pf_tensor_destroy(t);
  pf_executable_destroy(exe);
  assert_usable();
}

static void test_stale(void **state) {
  pf_executable *exe = sum_exe();
  pf_tensor *x = f32_tensor(4, 1, 0), *y = f32_tensor(4, 0, 2), *out = NULL;
  pf_buffer_t b = sum_buffer(exe, x, y), b2, never = {12345}, zero = {0};
  pf_future *f = (pf_future *)&f;
  pf_spec s;
  char id[32];
  (void)state;
  /* Live: fetch, spec, and feed work. */
  OK(pf_buffer_fetch(ctx, b, &out));
  for (int i = 0; i < 4; i++)
    assert_true(((const float *)pf_tensor_cdata(out))[i] == (float)i + 2.0f);
  pf_tensor_destroy(out);
  OK(pf_buffer_spec(ctx, b, &s));
  assert_true(pf_spec_equal(&s, &(pf_spec){PF_F32, 1, {4}}));
  OK(pf_execute(exe, 2,
                (pf_feed[]){{.name = "x", .buffer = b}, {.name = "y", .tensor = y}},
                &f));
  OK(pf_future_wait(f));
  OK(pf_future_output(f, "z", &b2));
  pf_future_destroy(f);
  assert_true(b2.id != b.id);
  /* Released: every use is PF_ESTALE, naming the id. */
  snprintf(id, sizeof id, "%llu", (unsigned long long)b.id);
  OK(pf_buffer_release(ctx, b));
  out = (pf_tensor *)&out;
  FAILS(PF_ESTALE, pf_buffer_fetch(ctx, b, &out), id);
  assert_null(out);
  FAILS(PF_ESTALE, pf_buffer_release(ctx, b), id);
  FAILS(PF_ESTALE, pf_buffer_spec(ctx, b, &s), id);
  f = (pf_future *)&f;
  FAILS(PF_ESTALE,
        pf_execute(exe, 2,
                   (pf_feed[]){{.name = "x", .buffer = b}, {.name = "y", .tensor = y}},
                   &f),
        id, "\"x\"");
  assert_null(f);
  /* Never made. */
  FAILS(PF_ESTALE, pf_buffer_fetch(ctx, never, &out), "12345");
  FAILS(PF_ESTALE, pf_buffer_release(ctx, never), "12345");
  FAILS(PF_ESTALE, pf_buffer_spec(ctx, never, &s), "12345");
  FAILS(PF_ESTALE, pf_buffer_fetch(ctx, zero, &out), "0");
  FAILS(PF_ESTALE, pf_buffer_release(ctx, zero), "0");
  /* The other buffer is untouched by all that: 2 * x + 2. */
  OK(pf_buffer_fetch(ctx, b2, &out));
  for (int i = 0; i < 4; i++)
    assert_true(((const float *)pf_tensor_cdata(out))[i] == (float)i + 4.0f);
  pf_tensor_destroy(out);
  OK(pf_buffer_release(ctx, b2));
  FAILS(PF_ESTALE, pf_buffer_fetch(ctx, b2, &out), "");
  /* Released while an execution that reads it may still be running: the
   * execution keeps what it needs. */
  {
    pf_buffer_t h = sum_buffer(exe, x, y), b3;
    OK(pf_execute(exe, 2,
                  (pf_feed[]){{.name = "x", .buffer = h}, {.name = "y", .buffer = h}},
                  &f));
    OK(pf_buffer_release(ctx, h));
    OK(pf_future_wait(f));
    OK(pf_future_output(f, "z", &b3));
    pf_future_destroy(f);
    OK(pf_buffer_fetch(ctx, b3, &out));
    for (int i = 0; i < 4; i++)
      assert_true(((const float *)pf_tensor_cdata(out))[i] == 2.0f * ((float)i + 2.0f));
    pf_tensor_destroy(out);
    OK(pf_buffer_release(ctx, b3));
    FAILS(PF_ESTALE, pf_buffer_release(ctx, h), "");
  }
  pf_tensor_destroy(x);
  pf_tensor_destroy(y);
  pf_executable_destroy(exe);
  assert_usable();
}

/* execute.h: pf_future_output "Each call gives a new id over the same
 * device memory". Releasing one of two handles leaves the other. */
/* An output is handed over once: a second pf_future_output gives
 * PF_ESTATE; the buffer handed over survives the future, and once released
 * it is stale. */
static void test_output_taken_once(void **state) {
  pf_executable *exe = sum_exe();
  pf_tensor *x = f32_tensor(4, 1, 0), *y = f32_tensor(4, 0, 2), *out = NULL;
  pf_future *f = NULL;
  pf_buffer_t h1 = {0}, h2 = {0};
  (void)state;
  OK(pf_execute(exe, 2,
                (pf_feed[]){{.name = "x", .tensor = x}, {.name = "y", .tensor = y}},
                &f));
  OK(pf_future_wait(f));
  OK(pf_future_output(f, "z", &h1));
  FAILS(PF_ESTATE, pf_future_output(f, "z", &h2), "already taken");
  assert_true(h2.id == 0);
  pf_future_destroy(f);
  pf_tensor_destroy(x);
  pf_tensor_destroy(y);
  OK(pf_buffer_fetch(ctx, h1, &out));
  for (int i = 0; i < 4; i++)
    assert_true(((const float *)pf_tensor_cdata(out))[i] == (float)i + 2.0f);
  pf_tensor_destroy(out);
  OK(pf_buffer_release(ctx, h1));
  FAILS(PF_ESTALE, pf_buffer_fetch(ctx, h1, &out), "");
  pf_executable_destroy(exe);
  assert_usable();
}

static void test_feed_both_or_neither(void **state) {
  pf_executable *exe = sum_exe();
  pf_tensor *x = f32_tensor(4, 1, 0), *y = f32_tensor(4, 0, 2);
  pf_buffer_t b = sum_buffer(exe, x, y);
  pf_future *f = (pf_future *)&f;
  (void)state;
  FAILS(PF_EINVAL,
        pf_execute(exe, 2,
                   (pf_feed[]){{.name = "x", .tensor = x, .buffer = b},
                               {.name = "y", .tensor = y}},
                   &f),
        "\"x\"");
  assert_null(f);
  FAILS(PF_EINVAL,
        pf_execute(exe, 2,
                   (pf_feed[]){{.name = "x", .tensor = x}, {.name = "y"}},
                   &f),
        "\"y\"");
  assert_null(f);
  FAILS(PF_EINVAL,
        pf_execute(exe, 2,
                   (pf_feed[]){{.name = NULL, .tensor = x}, {.name = "y", .tensor = y}},
                   &f),
        "feed 0");
  assert_null(f);
  assert_int_equal(pf_execute(exe, 1, NULL, &f), PF_EINVAL);
  assert_int_equal(pf_execute(exe, -1, NULL, &f), PF_EINVAL);
  assert_int_equal(pf_execute(NULL, 0, NULL, &f), PF_EINVAL);
  /* The buffer survived the refused feeds. */
  {
    pf_tensor *out = NULL;
    OK(pf_buffer_fetch(ctx, b, &out));
    for (int i = 0; i < 4; i++)
      assert_true(((const float *)pf_tensor_cdata(out))[i] == (float)i + 2.0f);
    pf_tensor_destroy(out);
  }
  OK(pf_buffer_release(ctx, b));
  pf_tensor_destroy(x);
  pf_tensor_destroy(y);
  pf_executable_destroy(exe);
  assert_usable();
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_cycle),
      cmocka_unit_test(test_cycle_long_names),
      cmocka_unit_test(test_no_kernel),
      cmocka_unit_test(test_arity),
      cmocka_unit_test(test_dtype),
      cmocka_unit_test(test_shape),
      cmocka_unit_test(test_split),
      cmocka_unit_test(test_slice),
      cmocka_unit_test(test_no_output),
      cmocka_unit_test(test_no_feed),
      cmocka_unit_test(test_feed_shape),
      cmocka_unit_test(test_not_found),
      cmocka_unit_test(test_exists),
      cmocka_unit_test(test_stale),
      cmocka_unit_test(test_output_taken_once),
      cmocka_unit_test(test_feed_both_or_neither),
      cmocka_unit_test(test_control_edge_decode),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
