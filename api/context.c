#define _GNU_SOURCE /* sched_getaffinity */
#include <cblas.h>
#include <dlfcn.h>
#include <sched.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "api/context_internal.h"
#include "base/util.h"
#include "graph/graph_codec.h"

pf_diag *pf_context_begin(pf_context *ctx) {
  pf_diag_init(&ctx->diag);
  return &ctx->diag;
}

int pf_context_error(pf_context *ctx, int code, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  pf_diag_verror(&ctx->diag, code, fmt, ap);
  va_end(ap);
  return code;
}

const char *pf_last_error(const pf_context *ctx) { return ctx ? ctx->diag.msg : ""; }

int pf_device_count(const pf_context *ctx, pf_device_kind kind) {
  if (ctx == NULL || (unsigned)kind >= PF_DEVICE_KIND_COUNT) return 0;
  return ctx->num_devices[kind];
}

/* Devices default to the cores this process may run on, so that a rank
 * bound by mpirun --bind-to gets one device per core it owns. */
static int affinity_cores(void) {
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof set, &set) != 0) return 1;
  return CPU_COUNT(&set) > 0 ? CPU_COUNT(&set) : 1;
}

static int cpu_device_count(const pf_init_options *opts, pf_diag *d, int *out) {
  int64_t n;
  int rc;
  if (opts && opts->cpu_devices < 0)
    return pf_diag_error(d, PF_EINVAL, "pf_init: cpu_devices = %d, need >= 0",
                         opts->cpu_devices);
  if (opts && opts->cpu_devices > 0) {
    *out = opts->cpu_devices;
    return 0;
  }
  if ((rc = pf_env_int("PATHFLOW_CPU_DEVICES", affinity_cores(), 1, 4096, &n, d)))
    return rc;
  *out = (int)n;
  return 0;
}

int pf_init(int *argc, char ***argv, const pf_init_options *opts,
            pf_context **out) {
  pf_context *ctx;
  pf_executor_config cfg;
  pf_diag d;
  int rc, ncpu = 0;
  (void)argc;
  (void)argv;
  if (out == NULL) return PF_EINVAL;
  *out = NULL;
  pf_diag_init(&d);
  if ((rc = cpu_device_count(opts, &d, &ncpu)) != 0) return rc;
  if ((ctx = calloc(1, sizeof *ctx)) == NULL) return PF_ENOMEM;
  /* Parallelism comes from devices (one worker per core); OpenBLAS threads
   * on top would oversubscribe every core. */
  openblas_set_num_threads(1);
  if ((rc = pf_registry_create(&ctx->registry)) != 0 ||
      (rc = pf_builtin_kernels_register(ctx->registry)) != 0)
    goto fail;
  ctx->num_devices[PF_DEVICE_CPU] = ncpu;
  ctx->cluster.n_ranks = 1;
  ctx->cluster.n_devices = ncpu;
  ctx->cluster.devices = pf_calloc((size_t)ncpu, sizeof *ctx->cluster.devices);
  if (ctx->cluster.devices == NULL) {
    rc = PF_ENOMEM;
    goto fail;
  }
  for (int i = 0; i < ncpu; i++) {
    ctx->cluster.devices[i].rank = 0;
    ctx->cluster.devices[i].local = i;
    ctx->cluster.devices[i].kind = PF_DEVICE_CPU;
  }
  cfg.num_devices = ncpu;
  cfg.rank = 0;
  cfg.registry = ctx->registry;
  if ((rc = pf_runtime_start(&cfg, &ctx->runtime)) != 0) goto fail;
  *out = ctx;
  return 0;
fail:
  pf_registry_destroy(ctx->registry);
  free(ctx->cluster.devices);
  free(ctx);
  return rc;
}

int pf_finalize(pf_context *ctx) {
  if (ctx == NULL) return 0;
  pf_future_free_all(ctx); /* waits for executions in flight */
  pf_runtime_stop(ctx->runtime);
  pf_executable_free_all(ctx);
  pf_buffers_clear(&ctx->buffers);
  pf_registry_destroy(ctx->registry);
  free(ctx->cluster.devices);
  free(ctx);
  return 0;
}

int pf_kernel_register(pf_context *ctx, const pf_kernel_def *def) {
  int rc;
  if (ctx == NULL) return PF_EINVAL;
  pf_context_begin(ctx);
  rc = pf_registry_add(ctx->registry, def);
  if (rc == PF_EEXIST)
    return pf_context_error(ctx, rc, "kernel \"%s\" for %s devices is already registered",
                            def->name, pf_device_kind_name(def->kind));
  if (rc != 0)
    return pf_context_error(ctx, rc, "kernel \"%s\": bad definition (name, "
                            "functions, or input/output counts)",
                            def && def->name ? def->name : "(null)");
  return 0;
}

int pf_kernel_outputs(pf_context *ctx, const char *name, pf_device_kind kind) {
  const pf_kernel *k;
  if (ctx == NULL) return PF_EINVAL;
  k = pf_registry_find(ctx->registry, name, kind);
  return k ? k->def.n_out : PF_ENOKERNEL;
}

int pf_kernels_load(pf_context *ctx, const char *path) {
  void *lib;
  pf_plugin_init_fn init;
  int rc;
  if (ctx == NULL || path == NULL) return PF_EINVAL;
  pf_context_begin(ctx);
  if ((lib = dlopen(path, RTLD_NOW | RTLD_LOCAL)) == NULL)
    return pf_context_error(ctx, PF_ENOTFOUND, "kernels plugin %s: %s", path, dlerror());
  *(void **)&init = dlsym(lib, PF_PLUGIN_INIT_SYMBOL);
  if (init == NULL)
    return pf_context_error(ctx, PF_ENOTFOUND, "kernels plugin %s: no symbol %s",
                            path, PF_PLUGIN_INIT_SYMBOL);
  /* The library stays loaded: its kernels are called until the process ends. */
  if ((rc = init(ctx->registry)) != 0)
    return pf_context_error(ctx, rc, "kernels plugin %s: %s returned %s", path,
                            PF_PLUGIN_INIT_SYMBOL, pf_errname(rc));
  return 0;
}

static void graph_env(pf_context *ctx, pf_graph_env *env) {
  memset(env, 0, sizeof *env);
  env->registry = ctx->registry;
  memcpy(env->num_devices, ctx->num_devices, sizeof env->num_devices);
  env->diag = &ctx->diag;
  env->owner = ctx;
}

int pf_graph_create(pf_context *ctx, pf_graph **out) {
  pf_graph_env env;
  if (ctx == NULL || out == NULL) return PF_EINVAL;
  pf_context_begin(ctx);
  graph_env(ctx, &env);
  return pf_graph_new(&env, out);
}

int pf_graph_decode(pf_context *ctx, const uint8_t *buf, size_t len,
                    pf_graph **out) {
  pf_graph_env env;
  if (ctx == NULL || out == NULL || (buf == NULL && len > 0)) return PF_EINVAL;
  graph_env(ctx, &env);
  return pf_graph_decode_env(&env, buf, len, out, pf_context_begin(ctx));
}
