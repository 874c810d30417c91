/* A kernels plugin for the MPMD and fault tests, loaded by pathflow-worker
 * --kernels and by rank 0 through pf_init_options.kernel_plugins.
 *   test.twice        out = 2 * x (f64)
 *   test.fail_shard   out = x, but fails on shard attr "shard"
 *   test.die_shard    out = x, but kills its process on shard attr "shard"
 *   test.sleep_shard  out = x, after sleeping attr "ms" on shard attr "shard"
 *   test.segv_shard   out = x, but writes through a bad pointer (SIGSEGV) on
 *                     shard attr "shard"
 *   test.abort_shard  out = x, but calls abort() on shard attr "shard"
 *   test.fpe_shard    out = x, but divides an integer by zero (SIGFPE)
 *   test.bus_shard    out = x, but reads a mapped page past the end of its
 *                     file (SIGBUS)
 *   test.ill_shard    out = x, but runs an illegal instruction (SIGILL) */
#include <pathflow.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

static int same_shape(const pf_attrs *a, int n_in, const pf_spec *in, int n_out, pf_spec *out,
                      pf_diag *d) {
  (void)a, (void)n_in, (void)n_out;
  if (in[0].dtype != PF_F64) return pf_diag_error(d, PF_EDTYPE, "test kernels take f64");
  out[0] = in[0];
  return 0;
}

static int twice(const pf_kernel_call *c) {
  const double *x = c->in[0].data;
  double *y = c->out[0].data;
  for (int64_t i = 0; i < pf_spec_numel(&c->in[0].spec); i++) y[i] = 2 * x[i];
  return 0;
}

static int fail_shard(const pf_kernel_call *c) {
  if (c->shard == pf_attrs_get_int(c->attrs, "shard", -1))
    return pf_diag_error(c->diag, PF_EINVAL, "test.fail_shard: failing on shard %d as asked",
                         c->shard);
  memcpy(c->out[0].data, c->in[0].data, pf_spec_nbytes(&c->in[0].spec));
  return 0;
}

static int die_shard(const pf_kernel_call *c) {
  if (c->shard == pf_attrs_get_int(c->attrs, "shard", -1)) raise(SIGKILL);
  memcpy(c->out[0].data, c->in[0].data, pf_spec_nbytes(&c->in[0].spec));
  return 0;
}

static int sleep_shard(const pf_kernel_call *c) {
  if (c->shard == pf_attrs_get_int(c->attrs, "shard", -1)) {
    int64_t ms = pf_attrs_get_int(c->attrs, "ms", 0);
    struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
  }
  memcpy(c->out[0].data, c->in[0].data, pf_spec_nbytes(&c->in[0].spec));
  return 0;
}

static int segv_shard(const pf_kernel_call *c) {
  if (c->shard == pf_attrs_get_int(c->attrs, "shard", -1)) {
    /* An address the compiler cannot see through: the first page. */
    volatile int *bad = (volatile int *)(uintptr_t)pf_attrs_get_int(c->attrs, "address", 8);
    *bad = 1;
  }
  memcpy(c->out[0].data, c->in[0].data, pf_spec_nbytes(&c->in[0].spec));
  return 0;
}

static int abort_shard(const pf_kernel_call *c) {
  if (c->shard == pf_attrs_get_int(c->attrs, "shard", -1)) abort();
  memcpy(c->out[0].data, c->in[0].data, pf_spec_nbytes(&c->in[0].spec));
  return 0;
}

static int fpe_shard(const pf_kernel_call *c) {
  if (c->shard == pf_attrs_get_int(c->attrs, "shard", -1)) {
    volatile int num = 1, den = 0; /* volatile: no folding, no UB warning */
    volatile int q = num / den;
    (void)q;
  }
  memcpy(c->out[0].data, c->in[0].data, pf_spec_nbytes(&c->in[0].spec));
  return 0;
}

static int bus_shard(const pf_kernel_call *c) {
  if (c->shard == pf_attrs_get_int(c->attrs, "shard", -1)) {
    /* A page mapped from an empty file: touching it is a bus error. */
    FILE *f = tmpfile();
    volatile char *p = f ? mmap(NULL, 4096, PROT_READ, MAP_SHARED, fileno(f), 0) : MAP_FAILED;
    if (p != MAP_FAILED) (void)p[0];
  }
  memcpy(c->out[0].data, c->in[0].data, pf_spec_nbytes(&c->in[0].spec));
  return 0;
}

static int ill_shard(const pf_kernel_call *c) {
  if (c->shard == pf_attrs_get_int(c->attrs, "shard", -1)) __builtin_trap();
  memcpy(c->out[0].data, c->in[0].data, pf_spec_nbytes(&c->in[0].spec));
  return 0;
}

int pathflow_kernels_init(pf_registry *reg);
int pathflow_kernels_init(pf_registry *reg) {
  pf_kernel_def d = {.kind = PF_DEVICE_CPU, .n_in = 1, .n_out = 1, .shape = same_shape};
  int rc;
  d.name = "test.twice";
  d.compute = twice;
  if ((rc = pf_registry_add(reg, &d)) != 0) return rc;
  d.name = "test.fail_shard";
  d.compute = fail_shard;
  if ((rc = pf_registry_add(reg, &d)) != 0) return rc;
  d.name = "test.die_shard";
  d.compute = die_shard;
  if ((rc = pf_registry_add(reg, &d)) != 0) return rc;
  d.name = "test.sleep_shard";
  d.compute = sleep_shard;
  if ((rc = pf_registry_add(reg, &d)) != 0) return rc;
  d.name = "test.segv_shard";
  d.compute = segv_shard;
  if ((rc = pf_registry_add(reg, &d)) != 0) return rc;
  d.name = "test.abort_shard";
  d.compute = abort_shard;
  if ((rc = pf_registry_add(reg, &d)) != 0) return rc;
  d.name = "test.fpe_shard";
  d.compute = fpe_shard;
  if ((rc = pf_registry_add(reg, &d)) != 0) return rc;
  d.name = "test.bus_shard";
  d.compute = bus_shard;
  if ((rc = pf_registry_add(reg, &d)) != 0) return rc;
  d.name = "test.ill_shard";
  d.compute = ill_shard;
  return pf_registry_add(reg, &d);
}
