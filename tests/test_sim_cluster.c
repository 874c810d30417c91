/* The simulator's cluster description: the presets, a full file, units, the
 * strict JSON reader, and every kind of error naming its field and line. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <unistd.h>

#include "base/diag.h"
#include "sim/cluster.h"
#include "sim/json.h"
#include "sim/units.h"

/* A valid file; the cases below change one line of it. Line numbers:
 * 1 {, 2 version, 3 name, 4 device_types, 5 "g": {, 6 kind, 7 flops,
 * 8 memory, 9 memory_bandwidth, 10 }, 11 }, 12 hosts [, 13 group 0,
 * 14 group 1, 15 ], 16 links, 17 intra_host, 18 nic, 19 dcn, 20 }, 21 runtime,
 * 22 }. */
static const char *const base_lines[] = {
    "{",
    "  \"version\": 1,",
    "  \"name\": \"two-islands\",",
    "  \"device_types\": {",
    "    \"g\": {",
    "      \"kind\": \"gpu\",",
    "      \"flops\": {\"f32\": \"60TFLOP/s\", \"bf16\": 1e15},",
    "      \"memory\": \"80GiB\",",
    "      \"memory_bandwidth\": \"3TB/s\"",
    "    }",
    "  },",
    "  \"hosts\": [",
    "    {\"count\": 3, \"ranks_per_host\": 2, \"devices_per_rank\": 4, \"device\": \"g\"},",
    "    {\"count\": 3, \"ranks_per_host\": 2, \"devices_per_rank\": 4, \"island\": 1}",
    "  ],",
    "  \"links\": {",
    "    \"intra_host\": {\"bandwidth\": \"450GB/s\", \"latency\": \"2us\"},",
    "    \"nic\": {\"count\": 4, \"bandwidth\": \"400Gb/s\", \"latency\": 5e-6},",
    "    \"dcn\": {\"bandwidth\": \"100Gb/s\", \"latency\": \"10 us\", \"island_bandwidth\": \"1Tb/s\"}",
    "  },",
    "  \"runtime\": {\"op_dispatch\": \"1us\", \"transfer\": \"3us\", \"step\": \"0.05ms\"}",
    "}"};
#define N_LINES (sizeof base_lines / sizeof base_lines[0])

/* The base file with line `line` (1-based; 0: none) replaced by `repl`
 * and line `drop` (0: none) left out. */
static char *file_without(int line, const char *repl, int drop) {
  size_t cap = 8192, used = 0;
  char *buf = malloc(cap);
  for (size_t i = 0; i < N_LINES; i++)
    if ((int)i + 1 != drop)
      used += (size_t)snprintf(buf + used, cap - used, "%s\n", (int)i + 1 == line ? repl : base_lines[i]);
  return buf;
}

static char *file_with(int line, const char *repl) { return file_without(line, repl, 0); }

static int parse(const char *text, pf_sim_cluster **cl, pf_diag *d) {
  pf_diag_init(d);
  return pf_sim_cluster_parse(text, strlen(text), "c.json", cl, d);
}

static void test_full_file(void **state) {
  pf_sim_cluster *cl;
  pf_diag d;
  char *text = file_with(0, NULL);
  int rc = parse(text, &cl, &d);
  free(text);
  if (rc != 0) fail_msg("%s", d.msg);
  assert_string_equal(cl->name, "two-islands");
  assert_int_equal(cl->hosts, 6);
  assert_int_equal(cl->ranks, 12);
  assert_int_equal(cl->devices, 48);
  assert_int_equal(cl->islands, 2);
  assert_int_equal(cl->nics_per_host, 4);
  assert_true(cl->types[0].flops[PF_F32] == 60e12);
  assert_true(cl->types[0].flops[PF_BF16] == 1e15);
  assert_true(cl->types[0].flops[PF_F64] == 0);
  assert_int_equal(cl->types[0].memory, 80LL << 30);
  assert_true(cl->types[0].memory_bandwidth == 3e12);
  assert_true(cl->intra_host.bandwidth == 450e9);
  assert_true(cl->nic.bandwidth == 50e9);
  assert_int_equal(cl->nic.latency_ns, 5000);
  assert_int_equal(cl->dcn.latency_ns, 10000);
  assert_true(cl->dcn_island_bandwidth == 125e9);
  assert_int_equal(cl->op_dispatch_ns, 1000);
  assert_int_equal(cl->step_ns, 50000);
  /* Device 8*3 + 8 + 5 = 37: the second group's second host, its rank 1. */
  pf_sim_place p;
  assert_int_equal(pf_sim_cluster_locate(cl, 37, &p), 0);
  assert_int_equal(p.host, 4);
  assert_int_equal(p.island, 1);
  assert_int_equal(p.local, 5);
  assert_int_equal(p.rank, 9);
  assert_int_equal(p.group, 1);
  assert_int_equal(pf_sim_cluster_locate(cl, 48, &p), PF_ERANGE);
  assert_int_equal(pf_sim_cluster_locate(cl, -1, &p), PF_ERANGE);
  pf_sim_cluster_free(cl);
}

static void test_presets(void **state) {
  pf_sim_cluster *cl;
  pf_diag d;
  pf_sim_place p;
  pf_diag_init(&d);
  if (pf_sim_cluster_preset("palm", &cl, &d) != 0) fail_msg("%s", d.msg);
  assert_int_equal(cl->devices, 6144);
  assert_int_equal(cl->islands, 2);
  assert_int_equal(cl->hosts, 1536);
  assert_int_equal(pf_sim_cluster_locate(cl, 6143, &p), 0);
  assert_int_equal(p.host, 1535);
  assert_int_equal(p.island, 1);
  assert_int_equal(p.local, 3);
  assert_int_equal(pf_sim_cluster_locate(cl, 3072, &p), 0);
  assert_int_equal(p.island, 1);
  assert_int_equal(p.host, 768);
  pf_sim_cluster_free(cl);
  if (pf_sim_cluster_preset("dgx-h100", &cl, &d) != 0) fail_msg("%s", d.msg);
  assert_int_equal(cl->devices, 256);
  assert_int_equal(cl->max_devices_per_host, 8);
  assert_true(cl->nic.bandwidth == 50e9); /* 400 Gb/s */
  pf_sim_cluster_free(cl);
  /* The built-in local, not a file `pathflow calibrate` left on this machine. */
  setenv("PATHFLOW_LOCAL_CLUSTER", "/nonexistent/local.json", 1);
  if (pf_sim_cluster_preset("local", &cl, &d) != 0) fail_msg("%s", d.msg);
  assert_int_equal(cl->devices, 2);
  pf_sim_cluster_free(cl);
  { /* a calibrated file, when there is one, is the local preset */
    char path[] = "/tmp/pf_local_XXXXXX";
    const char *text = pf_sim_cluster_preset_text("dgx-h100", NULL);
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    setenv("PATHFLOW_LOCAL_CLUSTER", path, 1);
    if (pf_sim_cluster_preset("local", &cl, &d) != 0) fail_msg("%s", d.msg);
    assert_int_equal(cl->devices, 256);
    pf_sim_cluster_free(cl);
    assert_int_equal(write(fd = open(path, O_WRONLY | O_TRUNC), "{", 1), 1);
    close(fd);
    assert_int_equal(pf_sim_cluster_preset("local", &cl, &d), PF_EDECODE);
    assert_non_null(strstr(d.msg, path)); /* a broken file is an error, not a fallback */
    unlink(path);
    unsetenv("PATHFLOW_LOCAL_CLUSTER");
    pf_diag_init(&d);
  }
  assert_int_equal(pf_sim_cluster_preset("nope", &cl, &d), PF_ENOTFOUND);
  assert_non_null(strstr(d.msg, "local, dgx-h100, palm"));
  pf_diag_init(&d);
  assert_int_equal(pf_sim_cluster_load("/nonexistent/c.json", &cl, &d), PF_ESYS);
  assert_non_null(strstr(d.msg, "/nonexistent/c.json"));
}

/* Each case: the line replaced, its text, and what the message must hold. */
typedef struct bad_case {
  int line;
  const char *repl;
  const char *want;
  int drop; /* a line to leave out, 0: none */
} bad_case;

static const bad_case bad_cases[] = {
    /* missing: named at the line of the object that lacks it */
    {8, "", "c.json:5: device_types.g.memory: missing", 0},
    {2, "", "c.json:1: version: missing", 0},
    {17, "    \"intra_host\": {\"bandwidth\": \"450GB/s\"},", "c.json:17: links.intra_host.latency: missing", 0},
    {18, "    \"nic\": {\"count\": 4, \"bandwidth\": \"400Gb/s\", \"latency\": 5e-6}",
     "c.json:16: links.dcn: missing (required", 19},
    {13, "    {\"count\": 3, \"ranks_per_host\": 2, \"devices_per_rank\": 4, \"device\": \"g\"},\n    {\"ranks_per_host\": 2},",
     "c.json:14: hosts[1].count: missing", 0},
    /* wrong type */
    {8, "      \"memory\": true,", "c.json:8: device_types.g.memory: expected a size", 0},
    {13, "    {\"count\": \"3\", \"device\": \"g\"},", "c.json:13: hosts[0].count: expected an integer, found string", 0},
    {12, "  \"hosts\": {", NULL, 0}, /* also a JSON error later; checked separately */
    {6, "      \"kind\": 3,", "c.json:6: device_types.g.kind: expected a string, found number", 0},
    {18, "    \"nic\": [],", "c.json:18: links.nic: expected an object, found array", 0},
    /* negative or out of range */
    {17, "    \"intra_host\": {\"bandwidth\": -5, \"latency\": \"2us\"},", "c.json:17: links.intra_host.bandwidth: -5 is negative", 0},
    {21, "  \"runtime\": {\"op_dispatch\": \"-1us\", \"transfer\": \"3us\", \"step\": \"0.05ms\"}",
     "c.json:21: runtime.op_dispatch: -1e-06 is negative", 0},
    {13, "    {\"count\": -3, \"device\": \"g\"},", "c.json:13: hosts[0].count: -3 is negative", 0},
    {13, "    {\"count\": 2.5, \"device\": \"g\"},", "c.json:13: hosts[0].count: 2.5 is not an integer", 0},
    {13, "    {\"count\": 3, \"device\": \"g\", \"cores\": 0},", "c.json:13: hosts[0].cores: 0 is out of range", 0},
    {21, "  \"runtime\": {\"op_dispatch\": \"1us\", \"transfer\": \"3us\", \"step\": \"0.05ms\", \"dispatch\": -1}",
     "c.json:21: runtime.dispatch: -1 is negative", 0},
    {7, "      \"flops\": {\"f32\": 0},", "c.json:7: device_types.g.flops.f32: 0 is out of range; it must be more than 0", 0},
    {21, "  \"runtime\": {\"op_dispatch\": \"1us\", \"transfer\": \"3us\", \"step\": \"0.05ms\", "
         "\"transfer_by_size\": [[16, \"1us\"], [16, \"2us\"]]}",
     "c.json:21: runtime.transfer_by_size[1]: 16 bytes: the sizes must increase", 0},
    {21, "  \"runtime\": {\"op_dispatch\": \"1us\", \"transfer\": \"3us\", \"step\": \"0.05ms\", "
         "\"transfer_by_size\": [[16, \"-1us\"]]}",
     "c.json:21: runtime.transfer_by_size[0]: -1e-06 is negative", 0},
    {21, "  \"runtime\": {\"op_dispatch\": \"1us\", \"transfer\": \"3us\", \"step\": \"0.05ms\", "
         "\"transfer_by_size\": [[16]]}",
     "c.json:21: runtime.transfer_by_size[0]: expected a point [bytes, seconds]", 0},
    {9, "      \"memory_bandwidth\": \"3TB/s\", \"kernel_efficiency\": {\"add\": 0}",
     "c.json:9: device_types.g.kernel_efficiency.add: 0 is out of range", 0},
    {9, "      \"memory_bandwidth\": \"3TB/s\", \"kernel_efficiency\": {\"add\": \"fast\"}",
     "c.json:9: device_types.g.kernel_efficiency.add: expected a number, found string", 0},
    {9, "      \"memory_bandwidth\": \"3TB/s\", \"kernel_efficiency\": [0.5]",
     "c.json:9: device_types.g.kernel_efficiency: expected an object of kernel: efficiency", 0},
    {21, "  \"runtime\": {\"op_dispatch\": \"1us\", \"transfer\": \"3us\", \"step\": \"0.05ms\", "
         "\"transfer_by_size\": []}",
     "c.json:21: runtime.transfer_by_size: 0 points: give 1 to 16", 0},
    {2, "  \"version\": 2,", "c.json:2: version: 2 is out of range", 0},
    /* unknown key */
    {3, "  \"nmae\": \"x\",", "c.json:3: nmae: unknown key (expected one of: version, name,", 0},
    {18, "    \"nic\": {\"count\": 4, \"bandwidth\": \"400Gb/s\", \"latency\": 5e-6, \"mtu\": 9000},",
     "c.json:18: links.nic.mtu: unknown key", 0},
    {17, "    \"intra_host\": {\"bandwidth\": \"450GB/s\", \"latency\": \"2us\", \"count\": 2},",
     "c.json:17: links.intra_host.count: unknown key", 0},
    {7, "      \"flops\": {\"f33\": 1},", "c.json:7: device_types.g.flops.f33: unknown dtype", 0},
    /* bad values of the right type */
    {8, "      \"memory\": \"80 gigs\",", "c.json:8: device_types.g.memory: \"80 gigs\" is not a size", 0},
    {18, "    \"nic\": {\"count\": 4, \"bandwidth\": \"400GB\", \"latency\": 5e-6},",
     "c.json:18: links.nic.bandwidth: \"400GB\" is not a bandwidth", 0},
    {6, "      \"kind\": \"fpga\",", "c.json:6: device_types.g.kind: \"fpga\" is not cpu, gpu or tpu", 0},
    {13, "    {\"count\": 3, \"device\": \"h\"},", "c.json:13: hosts[0].device: \"h\" is not one of device_types", 0},
    {14, "    {\"count\": 3, \"island\": 2}", "c.json:12: hosts: no host group in island 1", 0},
    /* bad lines: not JSON */
    {10, "    },", "c.json: line 11: expected a key in quotes, found '}'", 0},
    {15, "  ]", "c.json: line 16: expected ',' or '}', found '\"'", 0},
    {3, "  \"name\": 'x',", "c.json: line 3: expected a JSON value, found '''", 0},
    {3, "  // a comment", "c.json: line 3: expected a key in quotes, found '/'", 0},
    {3, "  \"version\": 1,", "c.json: line 3: \"version\" appears twice in one object (first on line 2)", 0},
};

static void test_errors_name_field_and_line(void **state) {
  for (size_t i = 0; i < sizeof bad_cases / sizeof bad_cases[0]; i++) {
    const bad_case *c = &bad_cases[i];
    pf_sim_cluster *cl = NULL;
    pf_diag d;
    char *text = file_without(c->line, c->repl, c->drop);
    int rc = parse(text, &cl, &d);
    free(text);
    if (rc == 0) fail_msg("case %zu (line %d: %s) was accepted", i, c->line, c->repl);
    assert_null(cl);
    assert_true(rc == PF_EINVAL || rc == PF_EDECODE);
    if (c->want && strstr(d.msg, c->want) == NULL)
      fail_msg("case %zu: message \"%s\" lacks \"%s\"", i, d.msg, c->want);
    if (c->want == NULL) assert_non_null(strstr(d.msg, "c.json"));
  }
}

/* device_types.*.kernel_efficiency: read, and 1 for a kernel it does not
 * name (or none). */
static void test_kernel_efficiency(void **state) {
  pf_sim_cluster *cl;
  pf_diag d;
  char *text = file_with(9, "      \"memory_bandwidth\": \"3TB/s\", "
                            "\"kernel_efficiency\": {\"fill\": 0.5, \"relu\": 1.25}");
  (void)state;
  assert_int_equal(parse(text, &cl, &d), 0);
  free(text);
  assert_int_equal(cl->types[0].n_kernels, 2);
  assert_true(pf_sim_kernel_efficiency(&cl->types[0], "fill") == 0.5);
  assert_true(pf_sim_kernel_efficiency(&cl->types[0], "relu") == 1.25);
  assert_true(pf_sim_kernel_efficiency(&cl->types[0], "add") == 1.0);
  assert_true(pf_sim_kernel_efficiency(&cl->types[0], NULL) == 1.0);
  pf_sim_cluster_free(cl);
}

/* runtime.transfer_by_size: read with units, and a message's cost
 * interpolated between its points (the end points' beyond); without it, a
 * transfer costs runtime.transfer and a collective's message nothing. */
static void test_transfer_by_size(void **state) {
  pf_sim_cluster *cl;
  pf_diag d;
  char *text;
  (void)state;
  text = file_with(21, "  \"runtime\": {\"op_dispatch\": \"1us\", \"transfer\": \"3us\", "
                       "\"step\": \"0.05ms\", \"transfer_by_size\": [[16, \"1us\"], "
                       "[\"4KiB\", \"5us\"], [65536, 2e-6]]}");
  assert_int_equal(parse(text, &cl, &d), 0);
  free(text);
  assert_int_equal(cl->n_transfer_points, 3);
  assert_int_equal(cl->transfer_point_bytes[1], 4096);
  assert_int_equal(pf_sim_message_ns(cl, 0, 0), 1000);        /* below the first */
  assert_int_equal(pf_sim_message_ns(cl, 16, 1), 1000);
  assert_int_equal(pf_sim_message_ns(cl, 2056, 0), 3000);     /* halfway: 1 -> 5 us */
  assert_int_equal(pf_sim_message_ns(cl, 4096, 1), 5000);
  assert_int_equal(pf_sim_message_ns(cl, 34816, 0), 3500);    /* halfway: 5 -> 2 us */
  assert_int_equal(pf_sim_message_ns(cl, 1 << 30, 0), 2000);  /* beyond the last */
  pf_sim_cluster_free(cl);
  text = file_with(0, NULL);
  assert_int_equal(parse(text, &cl, &d), 0);
  free(text);
  assert_int_equal(cl->n_transfer_points, 0);
  assert_int_equal(pf_sim_message_ns(cl, 4096, 0), 3000);
  assert_int_equal(pf_sim_message_ns(cl, 4096, 1), 0);
  pf_sim_cluster_free(cl);
}

static void test_dcn_needs_islands(void **state) {
  pf_sim_cluster *cl;
  pf_diag d;
  char *text = file_with(14, "    {\"count\": 3, \"ranks_per_host\": 2, \"devices_per_rank\": 4}");
  assert_int_equal(parse(text, &cl, &d), PF_EINVAL);
  free(text);
  assert_non_null(strstr(d.msg, "c.json:19: links.dcn: given, but every host group is in island 0"));
}

static void test_units(void **state) {
  double v;
  assert_int_equal(pf_sim_parse_quantity("400Gb/s", PF_SIM_BANDWIDTH, &v), 0);
  assert_true(v == 50e9);
  assert_int_equal(pf_sim_parse_quantity("1.5 us", PF_SIM_TIME, &v), 0);
  assert_true(fabs(v - 1.5e-6) < 1e-18);
  assert_int_equal(pf_sim_parse_quantity("32GiB", PF_SIM_BYTES, &v), 0);
  assert_true(v == 32.0 * 1073741824.0);
  assert_int_equal(pf_sim_parse_quantity("2KB", PF_SIM_BYTES, &v), 0);
  assert_true(v == 2000);
  assert_int_equal(pf_sim_parse_quantity("275TFLOP/s", PF_SIM_FLOPS, &v), 0);
  assert_true(v == 275e12);
  const char *bad[] = {"", "us", "1", "1  us", " 1us", "0x10us", "inf s", "nan s", "1us ", "1 Gbps", "1e999s"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
    if (pf_sim_parse_quantity(bad[i], PF_SIM_TIME, &v) == 0 && pf_sim_parse_quantity(bad[i], PF_SIM_BANDWIDTH, &v) == 0)
      fail_msg("\"%s\" accepted", bad[i]);
  assert_int_equal(pf_sim_parse_quantity("1 Gbps", PF_SIM_BANDWIDTH, &v), -1);
  assert_int_equal(pf_sim_parse_quantity("1us", PF_SIM_BYTES, &v), -1);
}

static void test_json_strict(void **state) {
  pf_json_doc *doc;
  pf_diag d;
  const char *ok = "{\"a\": [1, -2.5e3, true, false, null], \"s\": \"x\\u00e9\\n\\ud83d\\ude00\"}";
  pf_diag_init(&d);
  if (pf_json_parse(ok, strlen(ok), &doc, &d) != 0) fail_msg("%s", d.msg);
  const pf_json *a = pf_json_get(pf_json_root(doc), "a"), *s = pf_json_get(pf_json_root(doc), "s");
  assert_int_equal(a->len, 5);
  assert_true(a->items[1]->number == -2500);
  assert_int_equal(a->items[4]->type, PF_JSON_NULL);
  assert_string_equal(s->string, "x\xc3\xa9\n\xf0\x9f\x98\x80");
  pf_json_free(doc);
  const char *bad[] = {"[1,]", "{\"a\":1,}", "[01]", "[1.]", "[.5]", "[NaN]", "[Infinity]", "\"a\\x\"",
                       "\"\\u0000\"", "\"\\udc00\"", "[1] [2]", "{\"a\" 1}", "", "[", "\"abc", "[1e400]",
                       "{\"a\":1,\"a\":2}", "[\"a\tb\"]", "tru"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    pf_diag_init(&d);
    if (pf_json_parse(bad[i], strlen(bad[i]), &doc, &d) == 0) fail_msg("\"%s\" accepted", bad[i]);
    assert_non_null(strstr(d.msg, "line 1"));
  }
  /* Deep nesting is refused, not a stack overflow. */
  char deep[300];
  memset(deep, '[', sizeof deep);
  pf_diag_init(&d);
  assert_int_equal(pf_json_parse(deep, sizeof deep, &doc, &d), PF_EDECODE);
  assert_non_null(strstr(d.msg, "nested deeper than"));
  /* So is an object too wide to check its keys for duplicates quickly;
   * one member fewer is fine. */
  for (int n = PF_JSON_MAX_MEMBERS + 1; n >= PF_JSON_MAX_MEMBERS; n--) {
    size_t cap = (size_t)n * 16 + 8, used = 0;
    char *wide = malloc(cap);
    used += (size_t)snprintf(wide, cap, "{");
    for (int i = 0; i < n; i++) used += (size_t)snprintf(wide + used, cap - used, "%s\"k%d\": 0", i ? "," : "", i);
    snprintf(wide + used, cap - used, "}");
    pf_diag_init(&d);
    int rc = pf_json_parse(wide, strlen(wide), &doc, &d);
    free(wide);
    if (n > PF_JSON_MAX_MEMBERS) {
      assert_int_equal(rc, PF_EDECODE);
      assert_non_null(strstr(d.msg, "more than 4096 members"));
    } else {
      assert_int_equal(rc, 0);
      assert_int_equal(pf_json_root(doc)->len, PF_JSON_MAX_MEMBERS);
      pf_json_free(doc);
    }
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_full_file),
      cmocka_unit_test(test_presets),
      cmocka_unit_test(test_errors_name_field_and_line),
      cmocka_unit_test(test_dcn_needs_islands),
      cmocka_unit_test(test_transfer_by_size),
      cmocka_unit_test(test_kernel_efficiency),
      cmocka_unit_test(test_units),
      cmocka_unit_test(test_json_strict),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
