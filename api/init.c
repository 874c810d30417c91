/* The context's life: pf_init (options, kernels, the transport, device
 * registration, the runtime of every rank this process holds) and
 * pf_finalize. */
#define _GNU_SOURCE /* sched_getaffinity */
#include <cblas.h>
#include <dlfcn.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "api/context_internal.h"
#include "base/util.h"
#include "runtime/device_plugins.h"
#include "transport/loopback.h"

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
    return pf_diag_error(d, PF_EINVAL, "pf_init: cpu_devices = %d, need >= 0", opts->cpu_devices);
  if (opts && opts->cpu_devices > 0) {
    *out = opts->cpu_devices;
    return 0;
  }
  if ((rc = pf_env_int("PATHFLOW_CPU_DEVICES", affinity_cores(), 1, 4096, &n, d))) return rc;
  /* More workers than cores time-share them: legal (tests do it), but a
   * classic slowdown when unintended, so say it once per process. */
  static int warned;
  if (n > affinity_cores() && !warned) {
    warned = 1;
    fprintf(stderr,
            "pathflow: warning: PATHFLOW_CPU_DEVICES=%s gives %lld devices but this process "
            "may run on %d cores: device workers will share cores (docs/cli.md, Binding)\n",
            getenv("PATHFLOW_CPU_DEVICES"), (long long)n, affinity_cores());
  }
  *out = (int)n;
  return 0;
}

/* 1 if pf_init initializes MPI: PATHFLOW_MPI=1 or 0 decides, unset leaves it
 * to mpirun's variables. Any other value is PF_EINVAL. */
static int mpi_wanted(pf_diag *d, int *out) {
  int64_t v;
  int rc = pf_env_int("PATHFLOW_MPI", -1, 0, 1, &v, d);
  /* Set even on error: a bad value under mpirun still ends the job as an
   * MPI job does (see pf_init's fail path). */
  *out = rc != 0 || v < 0 ? pf_mpi_launched() : (int)v;
  return rc;
}

/* PATHFLOW_LOOPBACK_RANKS=N (N >= 2): this process holds every rank of an
 * N-rank job, joined by the loopback transport (transport/loopback.h). */
static int loopback_wanted(int use_mpi, pf_diag *d, int *out) {
  int64_t v = 0;
  int rc = pf_env_int("PATHFLOW_LOOPBACK_RANKS", 0, 0, 4096, &v, d);
  if (rc != 0) return rc;
  if (v > 1 && use_mpi)
    return pf_diag_error(d, PF_EINVAL,
                         "PATHFLOW_LOOPBACK_RANKS=%lld in an MPI job: the ranks are either "
                         "mpirun's processes or loopback ranks of one process, not both",
                         (long long)v);
  *out = v > 1 ? (int)v : 0;
  return 0;
}

/* PATHFLOW_COUNTERS=1: every rank's counters are printed at pf_finalize. */
static int counters_wanted(pf_diag *d, int *out) {
  int64_t v = 0;
  int rc = pf_env_int("PATHFLOW_COUNTERS", 0, 0, 1, &v, d);
  if (rc == 0) *out = (int)v;
  return rc;
}

/* PATHFLOW_HUGE_PAGES=0|1, read where memory is taken (base/pages.c); a
 * bad value is refused here as the other variables are. */
static int huge_pages_checked(pf_diag *d) {
  int64_t v;
  return pf_env_int("PATHFLOW_HUGE_PAGES", 1, 0, 1, &v, d);
}

static int pending_limit(const pf_init_options *opts, pf_diag *d, int *out) {
  if (opts && opts->max_pending < 0)
    return pf_diag_error(d, PF_EINVAL, "pf_init: max_pending = %d, need >= 0", opts->max_pending);
  *out = opts && opts->max_pending > 0 ? opts->max_pending : PF_MAX_PENDING_DEFAULT;
  return 0;
}

static int load_plugin(pf_registry *reg, const char *path, pf_diag *d) {
  void *lib;
  pf_plugin_init_fn init;
  int rc;
  if ((lib = dlopen(path, RTLD_NOW | RTLD_LOCAL)) == NULL)
    return pf_diag_error(d, PF_ENOTFOUND, "kernels plugin %s: %s", path, dlerror());
  *(void **)&init = dlsym(lib, PF_PLUGIN_INIT_SYMBOL);
  if (init == NULL)
    return pf_diag_error(d, PF_ENOTFOUND, "kernels plugin %s: no symbol %s", path,
                         PF_PLUGIN_INIT_SYMBOL);
  /* The library stays loaded: its kernels are called until the process ends. */
  if ((rc = init(reg)) != 0)
    return pf_diag_error(d, rc, "kernels plugin %s: %s returned %s", path, PF_PLUGIN_INIT_SYMBOL,
                         pf_errname(rc));
  return 0;
}

static int register_kernels(pf_registry *reg, const pf_init_options *opts, pf_diag *d) {
  const char *env = getenv("PATHFLOW_KERNELS");
  int rc;
  if ((rc = pf_builtin_kernels_register(reg)) != 0)
    return pf_diag_error(d, rc, "registering the built-in kernels failed");
  for (int i = 0; opts && opts->kernels && i < opts->n_kernels; i++)
    if ((rc = pf_registry_add(reg, &opts->kernels[i])) != 0)
      return pf_diag_error(d, rc, "pf_init: kernel \"%s\": %s",
                           opts->kernels[i].name ? opts->kernels[i].name : "(null)",
                           pf_strerror(rc));
  for (int i = 0; opts && opts->kernel_plugins && opts->kernel_plugins[i]; i++)
    if ((rc = load_plugin(reg, opts->kernel_plugins[i], d)) != 0) return rc;
  if (env && *env) {
    char *copy = pf_strdup(env), *save = NULL;
    if (copy == NULL) return PF_ENOMEM;
    for (char *p = strtok_r(copy, ":", &save); p && rc == 0; p = strtok_r(NULL, ":", &save))
      rc = load_plugin(reg, p, d);
    free(copy);
  }
  return rc;
}

/* Where the devices' memory came from, for PF_EMEMORY's message: as rank 0
 * sees it (mpirun gives every rank its environment unless told otherwise). */
static const char *memory_origin(void) {
  static char origin[160];
  const char *e = getenv("PATHFLOW_DEVICE_MEMORY");
  if (e && *e)
    snprintf(origin, sizeof origin, "PATHFLOW_DEVICE_MEMORY=%.100s", e);
  else
    snprintf(origin, sizeof origin,
             "the host's memory divided among its devices (PATHFLOW_DEVICE_MEMORY is not set)");
  return origin;
}

/* Each device's share of this host's memory, unless PATHFLOW_DEVICE_MEMORY
 * says: what each device registers, and the runtime's devices report. */
static int device_memory(int ncpu, pf_diag *d, int64_t *out) {
  int64_t phys = (int64_t)sysconf(_SC_PHYS_PAGES) * (int64_t)sysconf(_SC_PAGESIZE);
  return pf_env_bytes("PATHFLOW_DEVICE_MEMORY", phys > 0 ? phys / ncpu : 0, 1, out, d);
}

/* The devices of a rank as it registers them, in local index order: ncpu
 * CPU devices of `memory` bytes each, then the plugins' devices as they
 * report themselves (a GPU its own memory). *out is malloc'd. */
static int local_devices(int ncpu, int64_t memory, const pf_plugin_devices *plug,
                         pf_msg_device **out, int *n) {
  pf_msg_device *v;
  *n = ncpu + plug->n;
  if ((v = pf_calloc((size_t)*n, sizeof *v)) == NULL) return PF_ENOMEM;
  for (int i = 0; i < ncpu; i++) v[i] = (pf_msg_device){PF_DEVICE_CPU, memory, 0, 0};
  for (int i = 0; i < plug->n; i++) {
    pf_device_info info;
    memset(&info, 0, sizeof info);
    plug->devices[i]->ops->info(plug->devices[i], &info);
    v[ncpu + i] = (pf_msg_device){info.kind, info.memory_bytes,
                                  info.own_memory ? info.stage : 0, info.own_memory != 0};
  }
  *out = v;
  return 0;
}

/* Every rank tells rank 0 its host and devices (CPU devices, then the
 * devices plugins started: plug[0] in an MPI job, plug[r] for each rank
 * this process holds otherwise); rank 0 builds the cluster view the
 * scheduler places programs on. */
static int build_cluster(pf_context *ctx, int ncpu, int64_t device_memory,
                         const pf_plugin_devices *plug, pf_diag *d) {
  pf_msg *mine = pf_msg_new(PF_MSG_REGISTER);
  uint8_t *buf = NULL, **all = NULL;
  size_t len = 0, *lens = NULL;
  char host[256] = "localhost";
  int rc = 0, total = 0;
  int32_t *counts = pf_calloc((size_t)ctx->size, sizeof *counts);
  pf_msg_device **devs = pf_calloc((size_t)ctx->size, sizeof *devs);
  int32_t *host_id = pf_calloc((size_t)ctx->size, sizeof *host_id);
  char **hosts = pf_calloc((size_t)ctx->size, sizeof *hosts);
  int n_hosts = 0;
  if (mine == NULL || counts == NULL || devs == NULL || host_id == NULL || hosts == NULL) {
    pf_msg_free(mine);
    free(counts);
    free(devs);
    free(host_id);
    free(hosts);
    return pf_diag_error(d, PF_ENOMEM, "pf_init: out of memory");
  }
  gethostname(host, sizeof host - 1);
  mine->host = pf_strdup(host);
  if (ctx->mpi == NULL) {
    /* This process holds every rank (one, or the loopback's), on one
     * host; each rank has the devices started for it. */
    for (int r = 0; r < ctx->size && rc == 0; r++) {
      int n;
      if ((rc = local_devices(ncpu, device_memory, &plug[r], &devs[r], &n)) == 0) counts[r] = n;
    }
  } else {
    rc = local_devices(ncpu, device_memory, &plug[0], &mine->devices, &mine->n_devices);
    if (rc == 0) rc = pf_msg_encode(mine, &buf, &len);
    if (rc == 0) rc = pf_mpi_gather(ctx->mpi, buf, len, &all, &lens, d);
    if (rc == 0 && ctx->rank == 0)
      for (int r = 0; r < ctx->size && rc == 0; r++) {
        pf_msg *m;
        rc = pf_msg_decode(all[r], lens[r], 1, &m, d);
        if (rc == 0 && m->kind != PF_MSG_REGISTER)
          rc = pf_diag_error(d, PF_EDECODE, "rank %d: bad registration", r);
        if (rc == 0) {
          int h = 0;
          counts[r] = m->n_devices;
          devs[r] = m->devices; /* taken from the message */
          m->devices = NULL;
          /* Ranks that registered the same host name share a host id. */
          while (h < n_hosts && strcmp(hosts[h], m->host ? m->host : "") != 0) h++;
          if (h == n_hosts) hosts[n_hosts++] = pf_strdup(m->host ? m->host : "");
          host_id[r] = h;
        }
        pf_msg_free(m);
      }
  }
  if (rc != 0 && d->code == 0)
    pf_diag_error(d, rc, "pf_init: registering the devices: %s", pf_strerror(rc));
  pf_msg_free(mine);
  free(buf);
  for (int r = 0; all && r < ctx->size; r++) free(all[r]);
  free(all);
  free(lens);
  for (int r = 0; r < ctx->size; r++) total += counts[r];
  if (rc == 0 && ctx->rank == 0) {
    ctx->cluster.devices = pf_calloc((size_t)total, sizeof *ctx->cluster.devices);
    if (ctx->cluster.devices == NULL) rc = pf_diag_error(d, PF_ENOMEM, "pf_init: out of memory");
    for (int r = 0, k = 0; rc == 0 && r < ctx->size; r++)
      for (int i = 0; i < counts[r]; i++, k++) {
        pf_cluster_device *cd = &ctx->cluster.devices[k];
        cd->rank = r;
        cd->local = i;
        cd->kind = devs[r][i].kind;
        cd->memory = devs[r][i].memory;
        cd->stage = devs[r][i].stage;
        cd->own_memory = devs[r][i].own_memory;
        cd->host = host_id[r];
        ctx->num_devices[cd->kind]++;
      }
    ctx->cluster.n_ranks = ctx->size;
    ctx->cluster.n_devices = total;
    ctx->cluster.memory_origin = memory_origin();
  }
  free(counts);
  for (int r = 0; r < ctx->size; r++) free(devs[r]);
  free(devs);
  free(host_id);
  for (int h = 0; h < n_hosts; h++) free(hosts[h]);
  free(hosts);
  return rc;
}

/* Starts the devices of the device plugins (runtime/device_plugins.h) for
 * each rank this process serves: *out gets one set per rank (one in an MPI
 * job, ctx->size otherwise), after the ncpu CPU devices. */
static int plugins_start(pf_context *ctx, int ncpu, pf_plugin_devices **out, pf_diag *d) {
  int n = ctx->mpi ? 1 : ctx->size, rc = 0;
  pf_plugin_devices *plug = pf_calloc((size_t)n, sizeof *plug);
  if (plug == NULL) return pf_diag_error(d, PF_ENOMEM, "pf_init: out of memory");
  for (int i = 0; i < n && rc == 0; i++) {
    pf_device_plugins_config pc = {
        .rank = ctx->mpi ? ctx->rank : i, .first_index = ncpu, .registry = ctx->registry,
        .transport_cuda_memory = ctx->mpi ? pf_mpi_transport(ctx->mpi)->cuda_memory : 0};
    rc = pf_device_plugins_start(&pc, &plug[i], d);
  }
  *out = plug;
  return rc;
}

static void plugins_free(pf_plugin_devices *plug, int n) {
  for (int i = 0; plug && i < n; i++) pf_plugin_devices_free(&plug[i]);
  free(plug);
}

/* Stops the loopback ranks this process serves besides rank 0 (told to
 * shut down by rank 0's runtime, or never given work) and the fabric. */
static void loopback_stop(pf_context *ctx, int wait_shutdown) {
  for (int r = 0; r < ctx->n_peers; r++) {
    if (wait_shutdown) pf_runtime_wait_shutdown(ctx->peers[r]);
    pf_runtime_stop(ctx->peers[r]);
  }
  free(ctx->peers);
  ctx->peers = NULL;
  ctx->n_peers = 0;
  pf_loopback_destroy(ctx->loopback);
  ctx->loopback = NULL;
}

/* Hands the plugin devices of p to cfg: the runtime started with it takes
 * them over, whether it starts or not (runtime/runtime.h); p keeps the
 * array until give_back_array. */
static void hand_over(pf_runtime_config *cfg, const pf_plugin_devices *p) {
  cfg->extra_devices = p->devices;
  cfg->n_extra_devices = p->n;
}

/* After pf_runtime_start, successful or not: the devices are the
 * runtime's (or destroyed), p is left empty. */
static void give_back_array(pf_plugin_devices *p) {
  free(p->devices);
  p->devices = NULL;
  p->n = 0;
}

/* Starts the runtimes of loopback ranks 1..size-1: executors that serve
 * rank 0 from this process, each with its own loop and devices (its CPU
 * devices and plug[r]'s). */
static int loopback_start(pf_context *ctx, const pf_runtime_config *base,
                          pf_plugin_devices *plug, pf_diag *d) {
  int rc;
  if ((ctx->peers = pf_calloc((size_t)ctx->size, sizeof *ctx->peers)) == NULL)
    return pf_diag_error(d, PF_ENOMEM, "pf_init: out of memory");
  for (int r = 1; r < ctx->size; r++) {
    pf_runtime_config cfg = *base;
    cfg.transport = pf_loopback_transport(ctx->loopback, r);
    cfg.on_reply = NULL;
    cfg.reply_arg = NULL;
    cfg.controller_busy = NULL;
    hand_over(&cfg, &plug[r]);
    rc = pf_runtime_start(&cfg, &ctx->peers[ctx->n_peers]);
    give_back_array(&plug[r]);
    if (rc != 0) return pf_diag_error(d, rc, "pf_init: could not start loopback rank %d", r);
    ctx->n_peers++;
  }
  return 0;
}

static void context_free(pf_context *ctx) {
  loopback_stop(ctx, 0);
  pf_controller_table_free(ctx);
  pf_comm_groups_free(&ctx->groups);
  free(ctx->mem_in_flight);
  pf_registry_destroy(ctx->registry);
  free(ctx->cluster.devices);
  pthread_mutex_destroy(&ctx->lock);
  pthread_cond_destroy(&ctx->cond);
  free(ctx);
}

int pf_init(int *argc, char ***argv, const pf_init_options *opts, pf_context **out) {
  pf_context *ctx;
  pf_runtime_config cfg = {0};
  pf_plugin_devices *plug = NULL;
  pf_diag d;
  int rc, ncpu = 0, use_mpi = 0, loopback = 0;
  int64_t memory = 0;
  if (out == NULL) return PF_EINVAL;
  *out = NULL;
  pf_diag_init(&d);
  if ((ctx = calloc(1, sizeof *ctx)) == NULL) return PF_ENOMEM;
  pthread_mutex_init(&ctx->lock, NULL);
  pthread_cond_init(&ctx->cond, NULL);
  ctx->size = 1;
  /* Parallelism comes from devices (one worker per core); OpenBLAS threads
   * on top would oversubscribe every core. */
  openblas_set_num_threads(1);
  if ((rc = mpi_wanted(&d, &use_mpi)) != 0 ||
      (rc = cpu_device_count(opts, &d, &ncpu)) != 0 ||
      (rc = pending_limit(opts, &d, &ctx->max_pending)) != 0 ||
      (rc = pf_registry_create(&ctx->registry)) != 0 ||
      (rc = register_kernels(ctx->registry, opts, &d)) != 0 ||
      (rc = loopback_wanted(use_mpi, &d, &loopback)) != 0 ||
      (rc = device_memory(ncpu, &d, &memory)) != 0 ||
      (rc = counters_wanted(&d, &ctx->print_counters)) != 0 ||
      (rc = huge_pages_checked(&d)) != 0)
    goto fail;
  if (use_mpi) {
    if ((rc = pf_mpi_init(argc, argv, &ctx->mpi, &d)) != 0) goto fail;
    ctx->rank = pf_mpi_rank(ctx->mpi);
    ctx->size = pf_mpi_size(ctx->mpi);
  } else if (loopback) {
    if ((rc = pf_loopback_create(loopback, &ctx->loopback)) != 0) goto fail;
    ctx->size = loopback;
  }
  if ((rc = plugins_start(ctx, ncpu, &plug, &d)) != 0 ||
      (rc = build_cluster(ctx, ncpu, memory, plug, &d)) != 0)
    goto fail;
  if (ctx->rank == 0 && (ctx->mem_in_flight = pf_calloc((size_t)ctx->cluster.n_devices,
                                                        sizeof *ctx->mem_in_flight)) == NULL) {
    rc = pf_diag_error(&d, PF_ENOMEM, "pf_init: out of memory");
    goto fail;
  }
  cfg.num_devices = ncpu;
  cfg.registry = ctx->registry;
  cfg.device_memory = memory;
  if (ctx->loopback && (rc = loopback_start(ctx, &cfg, plug, &d)) != 0) goto fail;
  cfg.transport = ctx->loopback ? pf_loopback_transport(ctx->loopback, 0)
                                : pf_mpi_transport(ctx->mpi);
  cfg.on_reply = pf_controller_on_reply;
  cfg.reply_arg = ctx;
  cfg.controller_busy = pf_controller_busy;
  hand_over(&cfg, &plug[0]);
  rc = pf_runtime_start(&cfg, &ctx->runtime);
  give_back_array(&plug[0]);
  free(plug); /* every rank's set was handed over */
  plug = NULL;
  if (rc != 0) {
    pf_diag_error(&d, rc, "pf_init: could not start the runtime");
    goto fail;
  }
  if (ctx->rank != 0) {
    /* An executor: serve the controller until it finalizes, then leave. */
    pf_runtime_wait_shutdown(ctx->runtime);
    pf_runtime_stop(ctx->runtime);
    pf_mpi_finalize(ctx->mpi);
    context_free(ctx);
    exit(0);
  }
  *out = ctx;
  return 0;
fail:
  /* Before MPI is up (a kernels plugin that fails to load), the rank is
   * the launcher's: a worker's error must not read "rank 0". */
  fprintf(stderr, "pathflow: rank %d: pf_init failed: %s (%s)\n",
          ctx->mpi ? ctx->rank : pf_mpi_launched_rank(),
          d.msg[0] ? d.msg : pf_strerror(rc), pf_errname(rc));
  /* In an MPI job the other ranks cannot go on without this one: end the
   * job through MPI, even before MPI is up (pf_mpi_abort brings it up, for
   * a reason it gives). */
  if (ctx->mpi || use_mpi) pf_mpi_abort(ctx->mpi, 1, "pf_init failed");
  /* Devices not handed to a runtime yet (the runtimes started own theirs). */
  plugins_free(plug, ctx->mpi ? 1 : ctx->size);
  context_free(ctx);
  return rc;
}

void pf_abort(int code, const char *why) {
  if (why == NULL) why = "pf_abort";
  if (pf_mpi_launched()) pf_mpi_abort(NULL, code, why);
  fprintf(stderr, "pathflow: %s; ending the job\n", why);
  exit(code);
}

/* Finalized contexts stay allocated (and reachable from here, so leak
 * checkers see no leak) with their registry, which graphs of the context
 * still read: a call with a finalized context, or with a graph of it, is
 * PF_ESTATE instead of a use after free. A few KiB per pf_init. */
static pf_context *finalized;

int pf_finalize(pf_context *ctx) {
  int rc;
  if (ctx == NULL) return 0;
  if ((rc = pf_context_live(ctx, "pf_finalize")) != 0) return rc;
  pf_future_free_all(ctx); /* waits for executions in flight */
  pf_executable_free_all(ctx);
  pf_buffers_clear(ctx);
  if (ctx->print_counters) pf_counters_print_all(ctx, stderr);
  pf_runtime_stop(ctx->runtime); /* tells the executors to shut down */
  ctx->runtime = NULL;
  loopback_stop(ctx, 1);
  pf_mpi_finalize(ctx->mpi);
  ctx->mpi = NULL;
  pf_controller_table_free(ctx);
  pf_comm_groups_free(&ctx->groups);
  free(ctx->mem_in_flight);
  ctx->mem_in_flight = NULL;
  free(ctx->cluster.devices);
  ctx->cluster.devices = NULL;
  ctx->cluster.n_devices = 0;
  ctx->finalized = 1;
  ctx->next_finalized = finalized;
  finalized = ctx;
  return 0;
}

int pf_kernels_load(pf_context *ctx, const char *path) {
  int rc;
  if ((rc = pf_context_live(ctx, "pf_kernels_load")) != 0) return rc;
  if (path == NULL) return pf_context_error(ctx, PF_EINVAL, "pf_kernels_load: no path");
  return load_plugin(ctx->registry, path, &ctx->diag);
}
