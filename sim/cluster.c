#include "sim/cluster.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/diag.h"
#include "base/util.h"
#include "sim/json.h"
#include "sim/units.h"

/* The reader: where messages go and what they name. */
typedef struct rd {
  const char *src;
  pf_diag *diag;
} rd;

#define PATH_MAX_LEN 160

__attribute__((format(printf, 4, 5))) static int bad(rd *r, int line, const char *field, const char *fmt, ...) {
  char what[PF_DIAG_MSG_MAX];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(what, sizeof what, fmt, ap);
  va_end(ap);
  return pf_diag_error(r->diag, PF_EINVAL, "%s:%d: %s: %s", r->src, line, field, what);
}

/* out = path.key (or key at the top level), cut to PATH_MAX_LEN. */
static void join(char *out, const char *path, const char *key) {
  size_t a = strlen(path), b = strlen(key), dot = a > 0;
  if (a > PATH_MAX_LEN - 1) a = PATH_MAX_LEN - 1;
  memmove(out, path, a);
  if (dot && a < PATH_MAX_LEN - 1) out[a++] = '.';
  if (b > PATH_MAX_LEN - 1 - a) b = PATH_MAX_LEN - 1 - a;
  memcpy(out + a, key, b);
  out[a + b] = '\0';
}

/* Refuses a member of obj not in allowed[] (a typo would otherwise silently
 * leave a default in place). */
static int check_keys(rd *r, const pf_json *obj, const char *path, const char *const *allowed, size_t n) {
  for (size_t i = 0; i < obj->len; i++) {
    size_t k = 0;
    while (k < n && strcmp(obj->keys[i], allowed[k]) != 0) k++;
    if (k < n) continue;
    char list[256] = "", field[PATH_MAX_LEN];
    for (k = 0; k < n; k++) {
      size_t used = strlen(list);
      snprintf(list + used, sizeof list - used, "%s%s", k ? ", " : "", allowed[k]);
    }
    join(field, path, obj->keys[i]);
    return bad(r, obj->key_lines[i], field, "unknown key (expected one of: %s)", list);
  }
  return 0;
}

static int want_type(rd *r, const pf_json *v, const char *field, pf_json_type t, const char *what) {
  if (v->type == t) return 0;
  return bad(r, v->line, field, "expected %s, found %s", what, pf_json_type_name(v->type));
}

/* obj[key], or an error at the object's line when it is missing. */
static int member(rd *r, const pf_json *obj, const char *path, const char *key, int required,
                  const pf_json **out) {
  char field[PATH_MAX_LEN];
  *out = pf_json_get(obj, key);
  if (*out != NULL || !required) return 0;
  join(field, path, key);
  return bad(r, obj->line, field, "missing (required in the object that starts on this line)");
}

/* A number or a string with a unit; at least `min` (or above it when
 * `strict`). */
static int quantity(rd *r, const pf_json *v, const char *field, pf_sim_quantity q, double min, int strict,
                    double *out) {
  double x;
  if (v->type == PF_JSON_NUMBER) {
    x = v->number;
  } else if (v->type == PF_JSON_STRING) {
    if (pf_sim_parse_quantity(v->string, q, &x) != 0)
      return bad(r, v->line, field, "\"%s\" is not %s", v->string, pf_sim_quantity_help(q));
  } else {
    return bad(r, v->line, field, "expected %s, found %s", pf_sim_quantity_help(q), pf_json_type_name(v->type));
  }
  if (strict ? !(x > min) : !(x >= min))
    return bad(r, v->line, field, "%g is %s; it must be %s %g", x, x < 0 ? "negative" : "out of range",
               strict ? "more than" : "at least", min);
  *out = x;
  return 0;
}

static int time_ns(rd *r, const pf_json *v, const char *field, int64_t *out) {
  double s = 0;
  int rc = quantity(r, v, field, PF_SIM_TIME, 0, 0, &s);
  if (rc != 0) return rc;
  if (s > 1e6) return bad(r, v->line, field, "%g s is more than the 10^6 s allowed", s);
  *out = (int64_t)llround(s * 1e9);
  return 0;
}

static int integer(rd *r, const pf_json *v, const char *field, int64_t min, int64_t max, int64_t *out) {
  int rc = want_type(r, v, field, PF_JSON_NUMBER, "an integer");
  if (rc != 0) return rc;
  if (v->number != floor(v->number)) return bad(r, v->line, field, "%g is not an integer", v->number);
  if (v->number < (double)min || v->number > (double)max)
    return bad(r, v->line, field, "%g is %s; it must be in [%lld, %lld]", v->number,
               v->number < 0 ? "negative" : "out of range", (long long)min, (long long)max);
  *out = (int64_t)v->number;
  return 0;
}

static int name_copy(rd *r, const pf_json *v, const char *field, char *dst) {
  int rc = want_type(r, v, field, PF_JSON_STRING, "a string");
  if (rc != 0) return rc;
  size_t n = strlen(v->string);
  if (n == 0 || n >= PF_SIM_NAME_MAX)
    return bad(r, v->line, field, "a name of 1 to %d characters, found %zu", PF_SIM_NAME_MAX - 1, n);
  memcpy(dst, v->string, n + 1);
  return 0;
}

static int read_link(rd *r, const pf_json *links, const char *key, int required, pf_sim_link *out,
                     const pf_json **obj_out) {
  /* count belongs to nic and island_bandwidth to dcn only. */
  static const char *const plain[] = {"bandwidth", "latency"};
  static const char *const nic[] = {"bandwidth", "latency", "count"};
  static const char *const dcn[] = {"bandwidth", "latency", "island_bandwidth"};
  const char *const *allowed = strcmp(key, "nic") == 0 ? nic : strcmp(key, "dcn") == 0 ? dcn : plain;
  size_t n_allowed = allowed == plain ? 2 : 3;
  char path[PATH_MAX_LEN], field[PATH_MAX_LEN];
  const pf_json *obj, *v;
  int rc;
  *obj_out = NULL;
  join(path, "links", key);
  if ((rc = member(r, links, "links", key, required, &obj)) != 0 || obj == NULL) return rc;
  if ((rc = want_type(r, obj, path, PF_JSON_OBJECT, "an object")) != 0 ||
      (rc = check_keys(r, obj, path, allowed, n_allowed)) != 0)
    return rc;
  if ((rc = member(r, obj, path, "bandwidth", 1, &v)) != 0) return rc;
  join(field, path, "bandwidth");
  if ((rc = quantity(r, v, field, PF_SIM_BANDWIDTH, 0, 1, &out->bandwidth)) != 0) return rc;
  if ((rc = member(r, obj, path, "latency", 1, &v)) != 0) return rc;
  join(field, path, "latency");
  if ((rc = time_ns(r, v, field, &out->latency_ns)) != 0) return rc;
  *obj_out = obj;
  return 0;
}

double pf_sim_kernel_efficiency(const pf_sim_device_type *t, const char *kernel) {
  for (int k = 0; kernel != NULL && k < t->n_kernels; k++)
    if (strcmp(t->kernels[k].name, kernel) == 0) return t->kernels[k].efficiency;
  return 1.0;
}

/* device_types.NAME.kernel_efficiency: {kernel: fraction of the roofline}. */
static int read_efficiency(rd *r, const pf_json *v, const char *field, pf_sim_device_type *t) {
  int rc;
  if ((rc = want_type(r, v, field, PF_JSON_OBJECT, "an object of kernel: efficiency")) != 0)
    return rc;
  if (v->len > PF_SIM_MAX_KERNELS)
    return bad(r, v->line, field, "%zu kernels: give at most %d", v->len, PF_SIM_MAX_KERNELS);
  for (size_t i = 0; i < v->len; i++) {
    char f2[PATH_MAX_LEN];
    double e;
    join(f2, field, v->keys[i]);
    if (strlen(v->keys[i]) == 0 || strlen(v->keys[i]) >= PF_SIM_NAME_MAX)
      return bad(r, v->key_lines[i], f2, "a kernel's name has 1 to %d characters", PF_SIM_NAME_MAX - 1);
    if ((rc = want_type(r, v->items[i], f2, PF_JSON_NUMBER, "a number")) != 0) return rc;
    e = v->items[i]->number;
    if (!(e > 0) || e > 1000)
      return bad(r, v->items[i]->line, f2, "%g is out of range; it must be more than 0, at most 1000", e);
    memcpy(t->kernels[i].name, v->keys[i], strlen(v->keys[i]) + 1);
    t->kernels[i].efficiency = e;
  }
  t->n_kernels = (int)v->len;
  return 0;
}

static int read_type(rd *r, const char *name, int line, const pf_json *obj, pf_sim_device_type *t) {
  static const char *const keys[] = {"kind", "flops", "memory", "memory_bandwidth",
                                     "kernel_efficiency"};
  char path[PATH_MAX_LEN], field[PATH_MAX_LEN];
  const pf_json *v;
  double x;
  int rc;
  snprintf(path, sizeof path, "device_types.%s", name);
  if (strlen(name) == 0 || strlen(name) >= PF_SIM_NAME_MAX)
    return bad(r, line, path, "a device type's name has 1 to %d characters", PF_SIM_NAME_MAX - 1);
  memcpy(t->name, name, strlen(name) + 1);
  if ((rc = want_type(r, obj, path, PF_JSON_OBJECT, "an object")) != 0 ||
      (rc = check_keys(r, obj, path, keys, PF_ARRAY_LEN(keys))) != 0)
    return rc;
  if ((rc = member(r, obj, path, "kind", 1, &v)) != 0) return rc;
  join(field, path, "kind");
  if ((rc = want_type(r, v, field, PF_JSON_STRING, "a string")) != 0) return rc;
  int k = 0;
  while (k < PF_SIM_KIND_COUNT && strcmp(v->string, pf_sim_device_kind_name((pf_sim_device_kind)k)) != 0) k++;
  if (k == PF_SIM_KIND_COUNT) return bad(r, v->line, field, "\"%s\" is not cpu, gpu or tpu", v->string);
  t->kind = (pf_sim_device_kind)k;
  if ((rc = member(r, obj, path, "flops", 1, &v)) != 0) return rc;
  join(field, path, "flops");
  if ((rc = want_type(r, v, field, PF_JSON_OBJECT, "an object of dtype: flop/s")) != 0) return rc;
  if (v->len == 0) return bad(r, v->line, field, "no dtype: give the peak flop/s of at least one");
  for (size_t i = 0; i < v->len; i++) {
    char f2[PATH_MAX_LEN];
    int d = 0;
    join(f2, field, v->keys[i]);
    while (d < PF_DTYPE_COUNT && strcmp(v->keys[i], pf_dtype_name((pf_dtype)d)) != 0) d++;
    if (d == PF_DTYPE_COUNT)
      return bad(r, v->key_lines[i], f2, "unknown dtype (expected f32, f64, i32, i64, u8, bf16 or f16)");
    if ((rc = quantity(r, v->items[i], f2, PF_SIM_FLOPS, 0, 1, &t->flops[d])) != 0) return rc;
  }
  if ((rc = member(r, obj, path, "memory", 1, &v)) != 0) return rc;
  join(field, path, "memory");
  if ((rc = quantity(r, v, field, PF_SIM_BYTES, 0, 1, &x)) != 0) return rc;
  if (x > 9.0e18) return bad(r, v->line, field, "%g bytes is more than 2^63", x);
  t->memory = (int64_t)x;
  if ((rc = member(r, obj, path, "memory_bandwidth", 1, &v)) != 0) return rc;
  join(field, path, "memory_bandwidth");
  if ((rc = quantity(r, v, field, PF_SIM_BANDWIDTH, 0, 1, &t->memory_bandwidth)) != 0) return rc;
  if ((rc = member(r, obj, path, "kernel_efficiency", 0, &v)) != 0) return rc;
  join(field, path, "kernel_efficiency");
  return v ? read_efficiency(r, v, field, t) : 0;
}

static int read_group(rd *r, const pf_json *obj, int idx, pf_sim_cluster *cl, pf_sim_host_group *g) {
  static const char *const keys[] = {"count", "ranks_per_host", "devices_per_rank", "device", "island",
                                     "cores"};
  char path[PATH_MAX_LEN], field[PATH_MAX_LEN];
  const pf_json *v;
  int64_t x;
  int rc;
  snprintf(path, sizeof path, "hosts[%d]", idx);
  if ((rc = want_type(r, obj, path, PF_JSON_OBJECT, "an object")) != 0 ||
      (rc = check_keys(r, obj, path, keys, PF_ARRAY_LEN(keys))) != 0)
    return rc;
  if ((rc = member(r, obj, path, "count", 1, &v)) != 0) return rc;
  join(field, path, "count");
  if ((rc = integer(r, v, field, 1, PF_SIM_MAX_DEVICES, &g->hosts)) != 0) return rc;
  g->ranks_per_host = g->devices_per_rank = 1;
  if ((rc = member(r, obj, path, "ranks_per_host", 0, &v)) != 0) return rc;
  join(field, path, "ranks_per_host");
  if (v && (rc = integer(r, v, field, 1, 1 << 16, &x)) != 0) return rc;
  if (v) g->ranks_per_host = (int32_t)x;
  if ((rc = member(r, obj, path, "devices_per_rank", 0, &v)) != 0) return rc;
  join(field, path, "devices_per_rank");
  if (v && (rc = integer(r, v, field, 1, 1 << 16, &x)) != 0) return rc;
  if (v) g->devices_per_rank = (int32_t)x;
  if ((int64_t)g->ranks_per_host * g->devices_per_rank > (1 << 16))
    return bad(r, obj->line, path, "%d ranks of %d devices is more than %d devices a host", g->ranks_per_host,
               g->devices_per_rank, 1 << 16);
  if ((rc = member(r, obj, path, "cores", 0, &v)) != 0) return rc;
  join(field, path, "cores");
  if (v && (rc = integer(r, v, field, 1, 1 << 20, &x)) != 0) return rc;
  g->cores = v ? (int32_t)x : 0;
  if ((rc = member(r, obj, path, "island", 0, &v)) != 0) return rc;
  join(field, path, "island");
  if (v && (rc = integer(r, v, field, 0, PF_SIM_MAX_ISLANDS - 1, &x)) != 0) return rc;
  g->island = v ? (int32_t)x : 0;
  if ((rc = member(r, obj, path, "device", cl->n_types != 1, &v)) != 0) return rc;
  g->type = 0;
  if (v) {
    join(field, path, "device");
    if ((rc = want_type(r, v, field, PF_JSON_STRING, "the name of a device type")) != 0) return rc;
    int t = 0;
    while (t < cl->n_types && strcmp(cl->types[t].name, v->string) != 0) t++;
    if (t == cl->n_types) return bad(r, v->line, field, "\"%s\" is not one of device_types", v->string);
    g->type = t;
  }
  return 0;
}

/* runtime.transfer_by_size: [[bytes, seconds], ...], bytes increasing. */
static int read_transfer_points(rd *r, const pf_json *v, pf_sim_cluster *cl) {
  char field[PATH_MAX_LEN];
  int rc;
  if ((rc = want_type(r, v, "runtime.transfer_by_size", PF_JSON_ARRAY,
                      "an array of [bytes, seconds] points")) != 0)
    return rc;
  if (v->len < 1 || v->len > PF_SIM_TRANSFER_POINTS)
    return bad(r, v->line, "runtime.transfer_by_size", "%zu points: give 1 to %d", v->len,
               PF_SIM_TRANSFER_POINTS);
  for (size_t i = 0; i < v->len; i++) {
    const pf_json *pt = v->items[i];
    double bytes;
    snprintf(field, sizeof field, "runtime.transfer_by_size[%zu]", i);
    if (pt->type != PF_JSON_ARRAY || pt->len != 2)
      return bad(r, pt->line, field, "expected a point [bytes, seconds]");
    if ((rc = quantity(r, pt->items[0], field, PF_SIM_BYTES, 0, 0, &bytes)) != 0 ||
        (rc = time_ns(r, pt->items[1], field, &cl->transfer_point_ns[i])) != 0)
      return rc;
    if (bytes > 1e18) return bad(r, pt->line, field, "%g bytes is too many", bytes);
    cl->transfer_point_bytes[i] = (uint64_t)bytes;
    if (i > 0 && cl->transfer_point_bytes[i] <= cl->transfer_point_bytes[i - 1])
      return bad(r, pt->line, field, "%llu bytes: the sizes must increase",
                 (unsigned long long)cl->transfer_point_bytes[i]);
  }
  cl->n_transfer_points = (int32_t)v->len;
  return 0;
}

int64_t pf_sim_message_ns(const pf_sim_cluster *cl, uint64_t bytes, int collective) {
  const uint64_t *x = cl->transfer_point_bytes;
  const int64_t *y = cl->transfer_point_ns;
  int n = cl->n_transfer_points, i = 1;
  if (n == 0) return collective ? 0 : cl->transfer_ns;
  if (bytes <= x[0]) return y[0];
  if (bytes >= x[n - 1]) return y[n - 1];
  while (x[i] < bytes) i++;
  return y[i - 1] + (int64_t)llround((double)(y[i] - y[i - 1]) * (double)(bytes - x[i - 1]) /
                                     (double)(x[i] - x[i - 1]));
}

static int read_runtime(rd *r, const pf_json *root, pf_sim_cluster *cl) {
  /* dispatch is optional (the controller's cost per execution sent; files
   * written before it existed leave it out): the step cost when absent. */
  static const char *const keys[] = {"op_dispatch", "transfer", "step", "dispatch",
                                     "transfer_by_size"};
  int64_t *dst[] = {&cl->op_dispatch_ns, &cl->transfer_ns, &cl->step_ns, &cl->dispatch_ns};
  char field[PATH_MAX_LEN];
  const pf_json *obj, *v;
  int rc;
  if ((rc = member(r, root, "", "runtime", 1, &obj)) != 0 ||
      (rc = want_type(r, obj, "runtime", PF_JSON_OBJECT, "an object")) != 0 ||
      (rc = check_keys(r, obj, "runtime", keys, PF_ARRAY_LEN(keys))) != 0)
    return rc;
  if ((rc = member(r, obj, "runtime", "transfer_by_size", 0, &v)) != 0 ||
      (v && (rc = read_transfer_points(r, v, cl)) != 0))
    return rc;
  for (size_t i = 0; i < PF_ARRAY_LEN(keys) - 1; i++) {
    int required = i < 3;
    if ((rc = member(r, obj, "runtime", keys[i], required, &v)) != 0) return rc;
    join(field, "runtime", keys[i]);
    if (v == NULL) {
      cl->dispatch_ns = cl->step_ns;
      continue;
    }
    if ((rc = time_ns(r, v, field, dst[i])) != 0) return rc;
  }
  return 0;
}

static int read_cluster(rd *r, const pf_json *root, pf_sim_cluster *cl) {
  static const char *const keys[] = {"version", "name", "device_types", "hosts", "links", "runtime"};
  static const char *const link_keys[] = {"intra_host", "nic", "dcn"};
  const pf_json *v, *links, *nic, *dcn, *unused;
  int64_t x;
  int rc;
  if (root->type != PF_JSON_OBJECT) return bad(r, root->line, "(top level)", "expected an object, found %s", pf_json_type_name(root->type));
  if ((rc = check_keys(r, root, "", keys, PF_ARRAY_LEN(keys))) != 0) return rc;
  if ((rc = member(r, root, "", "version", 1, &v)) != 0 || (rc = integer(r, v, "version", 1, 1, &x)) != 0)
    return rc;
  snprintf(cl->name, sizeof cl->name, "cluster");
  if ((rc = member(r, root, "", "name", 0, &v)) != 0 || (v && (rc = name_copy(r, v, "name", cl->name)) != 0))
    return rc;
  /* Device types. */
  if ((rc = member(r, root, "", "device_types", 1, &v)) != 0 ||
      (rc = want_type(r, v, "device_types", PF_JSON_OBJECT, "an object of name: device type")) != 0)
    return rc;
  if (v->len == 0 || v->len > PF_SIM_MAX_TYPES)
    return bad(r, v->line, "device_types", "%zu device types: give 1 to %d", v->len, PF_SIM_MAX_TYPES);
  if ((cl->types = calloc(v->len, sizeof *cl->types)) == NULL) return PF_ENOMEM;
  cl->n_types = (int)v->len;
  for (size_t i = 0; i < v->len; i++)
    if ((rc = read_type(r, v->keys[i], v->key_lines[i], v->items[i], &cl->types[i])) != 0) return rc;
  /* Host groups. */
  if ((rc = member(r, root, "", "hosts", 1, &v)) != 0 ||
      (rc = want_type(r, v, "hosts", PF_JSON_ARRAY, "an array of host groups")) != 0)
    return rc;
  if (v->len == 0 || v->len > PF_SIM_MAX_GROUPS)
    return bad(r, v->line, "hosts", "%zu host groups: give 1 to %d", v->len, PF_SIM_MAX_GROUPS);
  if ((cl->groups = calloc(v->len, sizeof *cl->groups)) == NULL) return PF_ENOMEM;
  cl->n_groups = (int)v->len;
  int32_t max_island = -1;
  for (size_t i = 0; i < v->len; i++) {
    pf_sim_host_group *g = &cl->groups[i];
    if ((rc = read_group(r, v->items[i], (int)i, cl, g)) != 0) return rc;
    int64_t per_host = (int64_t)g->ranks_per_host * g->devices_per_rank;
    g->first_host = cl->hosts;
    g->first_rank = cl->ranks;
    g->first_device = cl->devices;
    cl->hosts += g->hosts;
    cl->ranks += g->hosts * g->ranks_per_host;
    cl->devices += g->hosts * per_host;
    if (cl->devices > PF_SIM_MAX_DEVICES)
      return bad(r, v->items[i]->line, "hosts", "more than %lld devices in all", (long long)PF_SIM_MAX_DEVICES);
    if (per_host > cl->max_devices_per_host) cl->max_devices_per_host = (int32_t)per_host;
    if (g->island > max_island) max_island = g->island;
  }
  cl->islands = max_island + 1;
  for (int32_t is = 0; is < cl->islands; is++) {
    int found = 0;
    for (int i = 0; i < cl->n_groups && !found; i++) found = cl->groups[i].island == is;
    if (!found)
      return bad(r, v->line, "hosts", "no host group in island %d: islands are numbered 0 to %d without gaps", is,
                 cl->islands - 1);
  }
  /* Links. */
  if ((rc = member(r, root, "", "links", 1, &links)) != 0 ||
      (rc = want_type(r, links, "links", PF_JSON_OBJECT, "an object")) != 0 ||
      (rc = check_keys(r, links, "links", link_keys, PF_ARRAY_LEN(link_keys))) != 0)
    return rc;
  if ((rc = read_link(r, links, "intra_host", 1, &cl->intra_host, &unused)) != 0) return rc;
  if ((rc = read_link(r, links, "nic", 1, &cl->nic, &nic)) != 0) return rc;
  cl->nics_per_host = 1;
  if ((v = pf_json_get(nic, "count")) != NULL) {
    if ((rc = integer(r, v, "links.nic.count", 1, 1 << 16, &x)) != 0) return rc;
    cl->nics_per_host = (int32_t)x;
  }
  if ((rc = read_link(r, links, "dcn", cl->islands > 1, &cl->dcn, &dcn)) != 0) return rc;
  if (dcn && cl->islands == 1)
    return bad(r, dcn->line, "links.dcn", "given, but every host group is in island 0 (set \"island\" on the groups)");
  if (dcn && (v = pf_json_get(dcn, "island_bandwidth")) != NULL &&
      (rc = quantity(r, v, "links.dcn.island_bandwidth", PF_SIM_BANDWIDTH, 0, 1, &cl->dcn_island_bandwidth)) != 0)
    return rc;
  return read_runtime(r, root, cl);
}

int pf_sim_cluster_parse(const char *text, size_t len, const char *source, pf_sim_cluster **out, pf_diag *diag) {
  rd r = {.src = source ? source : "cluster", .diag = diag};
  pf_json_doc *doc;
  pf_sim_cluster *cl;
  int rc = pf_json_parse(text, len, &doc, diag);
  if (rc != 0) {
    pf_diag_prefix(diag, "%s", r.src);
    return rc;
  }
  if ((cl = calloc(1, sizeof *cl)) == NULL) {
    pf_json_free(doc);
    return pf_diag_error(diag, PF_ENOMEM, "%s: out of memory", r.src);
  }
  rc = read_cluster(&r, pf_json_root(doc), cl);
  pf_json_free(doc);
  if (rc != 0) {
    if (rc == PF_ENOMEM) pf_diag_error(diag, PF_ENOMEM, "%s: out of memory", r.src);
    pf_sim_cluster_free(cl);
    return rc;
  }
  *out = cl;
  return 0;
}

int pf_sim_cluster_load_file(const char *path, pf_sim_cluster **out, pf_diag *diag) {
  FILE *f = fopen(path, "rb");
  char *buf = NULL;
  size_t len = 0, cap = 0;
  int rc;
  if (f == NULL) return pf_diag_error(diag, PF_ESYS, "%s: cannot open: %s", path, strerror(errno));
  for (;;) {
    if (len == cap && pf_grow((void **)&buf, &cap, cap ? cap * 2 : 65536, 1) != 0) {
      fclose(f);
      free(buf);
      return pf_diag_error(diag, PF_ENOMEM, "%s: out of memory", path);
    }
    size_t n = fread(buf + len, 1, cap - len, f);
    len += n;
    if (n == 0) break;
  }
  rc = ferror(f) ? pf_diag_error(diag, PF_ESYS, "%s: read error", path) : 0;
  fclose(f);
  if (rc == 0) rc = pf_sim_cluster_parse(buf, len, path, out, diag);
  free(buf);
  return rc;
}

int pf_sim_cluster_load(const char *name_or_path, pf_sim_cluster **out, pf_diag *diag) {
  if (pf_sim_cluster_preset_text(name_or_path, NULL) != NULL) return pf_sim_cluster_preset(name_or_path, out, diag);
  return pf_sim_cluster_load_file(name_or_path, out, diag);
}

int pf_sim_cluster_preset(const char *name, pf_sim_cluster **out, pf_diag *diag) {
  const char *names, *text = pf_sim_cluster_preset_text(name, &names);
  char src[64], path[4096];
  if (text != NULL && pf_sim_local_cluster_file(name, path, sizeof path) != NULL)
    return pf_sim_cluster_load_file(path, out, diag); /* calibrated: docs/cluster-format.md */
  if (text == NULL)
    return pf_diag_error(diag, PF_ENOTFOUND, "no cluster preset \"%s\" (presets: %s)", name, names);
  snprintf(src, sizeof src, "preset %s", name);
  return pf_sim_cluster_parse(text, strlen(text), src, out, diag);
}

void pf_sim_cluster_free(pf_sim_cluster *cl) {
  if (cl == NULL) return;
  free(cl->types);
  free(cl->groups);
  free(cl);
}

int pf_sim_cluster_locate(const pf_sim_cluster *cl, int64_t device, pf_sim_place *out) {
  int lo = 0, hi = cl->n_groups - 1;
  if (device < 0 || device >= cl->devices) return PF_ERANGE;
  while (lo < hi) { /* the last group whose first device is <= device */
    int mid = (lo + hi + 1) / 2;
    if (cl->groups[mid].first_device <= device) lo = mid;
    else hi = mid - 1;
  }
  const pf_sim_host_group *g = &cl->groups[lo];
  int64_t per_host = (int64_t)g->ranks_per_host * g->devices_per_rank, off = device - g->first_device;
  out->group = lo;
  out->host = g->first_host + off / per_host;
  out->local = (int32_t)(off % per_host);
  out->rank = g->first_rank + (off / per_host) * g->ranks_per_host + out->local / g->devices_per_rank;
  out->island = g->island;
  out->type = g->type;
  return 0;
}

const char *pf_sim_device_kind_name(pf_sim_device_kind k) {
  switch (k) {
    case PF_SIM_CPU: return "cpu";
    case PF_SIM_GPU: return "gpu";
    case PF_SIM_TPU: return "tpu";
    default: return "?";
  }
}
