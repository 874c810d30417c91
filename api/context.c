/* The context's accessors, its error sink, and what it makes: kernels
 * registered after pf_init, graphs. */
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

uint64_t pf_context_new_id(pf_context *ctx) { return ++ctx->next_id; }

int pf_context_live(pf_context *ctx, const char *call) {
  if (ctx == NULL) return PF_EINVAL;
  pf_context_begin(ctx);
  if (ctx->finalized)
    return pf_context_error(ctx, PF_ESTATE, "%s: the context was finalized", call);
  return 0;
}

const char *pf_last_error(const pf_context *ctx) {
  return ctx ? ctx->diag.msg : "no context (a failed pf_init prints its message on stderr)";
}
int pf_rank(const pf_context *ctx) { return ctx ? ctx->rank : 0; }
int pf_world_size(const pf_context *ctx) { return ctx ? ctx->size : 0; }

int pf_device_count(const pf_context *ctx, pf_device_kind kind) {
  if (ctx == NULL || ctx->finalized || (unsigned)kind >= PF_DEVICE_KIND_COUNT) return 0;
  return ctx->num_devices[kind];
}

int pf_kernel_register(pf_context *ctx, const pf_kernel_def *def) {
  int rc;
  if ((rc = pf_context_live(ctx, "pf_kernel_register")) != 0) return rc;
  rc = pf_registry_add(ctx->registry, def);
  if (rc == PF_EEXIST)
    return pf_context_error(ctx, rc, "kernel \"%s\" for %s devices is already registered",
                            def->name, pf_device_kind_name(def->kind));
  if (rc != 0)
    return pf_context_error(ctx, rc, "kernel \"%s\": bad definition (name, functions, or "
                            "input/output counts)",
                            def && def->name ? def->name : "(null)");
  return 0;
}

int pf_kernel_outputs(pf_context *ctx, const char *name, pf_device_kind kind) {
  const pf_kernel *k;
  int rc;
  if ((rc = pf_context_live(ctx, "pf_kernel_outputs")) != 0) return rc;
  k = pf_registry_find(ctx->registry, name, kind);
  if (k == NULL)
    return pf_context_error(ctx, PF_ENOKERNEL, "no kernel \"%s\" for %s devices",
                            name ? name : "(null)", pf_device_kind_name(kind));
  return k->def.n_out;
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
  int rc;
  if ((rc = pf_context_live(ctx, "pf_graph_create")) != 0) return rc;
  if (out == NULL) return pf_context_error(ctx, PF_EINVAL, "pf_graph_create: out is NULL");
  graph_env(ctx, &env);
  return pf_graph_new(&env, out);
}

int pf_graph_decode(pf_context *ctx, const uint8_t *buf, size_t len, pf_graph **out) {
  pf_graph_env env;
  int rc;
  if ((rc = pf_context_live(ctx, "pf_graph_decode")) != 0) return rc;
  if (out == NULL || (buf == NULL && len > 0))
    return pf_context_error(ctx, PF_EINVAL, "pf_graph_decode: out or buf is NULL");
  graph_env(ctx, &env);
  return pf_graph_decode_env(&env, buf, len, out, pf_context_begin(ctx));
}
