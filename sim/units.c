#include "sim/units.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/util.h"

typedef struct unit {
  const char *name;
  double scale;
} unit;

static const unit time_units[] = {{"s", 1}, {"ms", 1e-3}, {"us", 1e-6}, {"ns", 1e-9}};
static const unit bw_units[] = {
    {"B/s", 1},     {"KB/s", 1e3},     {"MB/s", 1e6},     {"GB/s", 1e9},     {"TB/s", 1e12},
    {"b/s", 0.125}, {"Kb/s", 1e3 / 8}, {"Mb/s", 1e6 / 8}, {"Gb/s", 1e9 / 8}, {"Tb/s", 1e12 / 8}};
static const unit byte_units[] = {
    {"B", 1},      {"KB", 1e3},     {"MB", 1e6},     {"GB", 1e9},     {"TB", 1e12},    {"PB", 1e15},
    {"KiB", 1024}, {"MiB", 1048576}, {"GiB", 1073741824.0}, {"TiB", 1099511627776.0},
    {"PiB", 1125899906842624.0}};
static const unit flop_units[] = {{"FLOP/s", 1},     {"KFLOP/s", 1e3},  {"MFLOP/s", 1e6},
                                  {"GFLOP/s", 1e9},  {"TFLOP/s", 1e12}, {"PFLOP/s", 1e15}};

int pf_sim_parse_quantity(const char *s, pf_sim_quantity q, double *out) {
  const unit *units;
  size_t n;
  char *end;
  double v;
  switch (q) {
    case PF_SIM_TIME: units = time_units; n = PF_ARRAY_LEN(time_units); break;
    case PF_SIM_BANDWIDTH: units = bw_units; n = PF_ARRAY_LEN(bw_units); break;
    case PF_SIM_BYTES: units = byte_units; n = PF_ARRAY_LEN(byte_units); break;
    case PF_SIM_FLOPS: units = flop_units; n = PF_ARRAY_LEN(flop_units); break;
    default: return -1;
  }
  /* strtod alone would take hex, "inf", "nan" and leading spaces. */
  if (s == NULL || !((s[0] >= '0' && s[0] <= '9') || (s[0] == '-' && s[1] >= '0' && s[1] <= '9')))
    return -1;
  if (strchr(s, 'x') != NULL || strchr(s, 'X') != NULL) return -1; /* no unit has an x */
  v = strtod(s, &end);
  if (end == s || !isfinite(v)) return -1;
  if (*end == ' ') end++;
  for (size_t i = 0; i < n; i++)
    if (strcmp(end, units[i].name) == 0) {
      double r = v * units[i].scale;
      if (!isfinite(r)) return -1;
      *out = r;
      return 0;
    }
  return -1;
}

const char *pf_sim_quantity_help(pf_sim_quantity q) {
  switch (q) {
    case PF_SIM_TIME: return "a time: a number of seconds or a string such as \"1.5us\" (s, ms, us, ns)";
    case PF_SIM_BANDWIDTH:
      return "a bandwidth: a number of bytes/s or a string such as \"400Gb/s\" or \"450GB/s\" "
             "(B/s or b/s with K, M, G, T: powers of 1000)";
    case PF_SIM_BYTES:
      return "a size: a number of bytes or a string such as \"80GB\" or \"32GiB\" "
             "(B with K, M, G, T, P: powers of 1000, or Ki, Mi, Gi, Ti, Pi: powers of 1024)";
    case PF_SIM_FLOPS:
      return "a speed: a number of flop/s or a string such as \"275TFLOP/s\" (K, M, G, T, P: powers of 1000)";
  }
  return "?";
}
