/* Internal: one rank's runtime: one libuv loop thread, the executor's
 * devices, this rank's executor service, and (in a job of several ranks)
 * its transport (transport/transport.h: MPI, or the loopback).
 *
 * The loop thread owns the service and every transport call. Other threads
 * reach it through uv_async_send: the user thread sends control messages,
 * devices report finished steps and ready transfers, a loopback transport
 * says something arrived. In a process alone in its job, or with a
 * transport that wakes it, the loop sleeps until woken. With MPI (a
 * transport that must be polled), the loop polls MPI without
 * pause while requests are in flight and for PATHFLOW_SPIN_US after the
 * last activity; while steps run (or the controller waits) it polls and
 * yields the core between polls;
 * then backs off to a timer (1 ms doubling to PATHFLOW_POLL_MAX_MS, and to
 * PATHFLOW_IDLE_POLL_MS after a second of quiet), so an idle rank uses next
 * to no CPU.
 *
 * In a job of several ranks a heartbeat thread sends heartbeats and checks
 * that peers are alive (PATHFLOW_RANK_TIMEOUT_S) every second; its MPI
 * calls are serialized with the loop's by a lock the loop lets go of while
 * libuv waits for I/O and while it yields.
 */
#ifndef PF_RUNTIME_RUNTIME_H
#define PF_RUNTIME_RUNTIME_H

#include "runtime/msg.h"
#include "runtime/service.h"

typedef struct pf_runtime pf_runtime;

typedef struct pf_runtime_config {
  int num_devices; /* CPU devices */
  pf_registry *registry; /* borrowed */
  /* NULL: a process alone in its job; borrowed otherwise (the runtime
   * sets its wake hook). */
  pf_transport *transport;
  /* Rank 0 only: messages from executors (load_done, step_done,
   * fetch_reply), on the loop thread; the callee owns the message. */
  void (*on_reply)(void *arg, pf_msg *m);
  void *reply_arg;
  /* Rank 0 only: 1 while the controller waits for replies (steps in
   * flight, loads, fetches): the loop keeps polling MPI instead of sleeping.
   * Called on the loop thread; may be NULL. */
  int (*controller_busy)(void *arg);
  int64_t device_memory; /* what each CPU device reports it has */
  /* Devices from plugins (runtime/device_plugins.h), n_extra_devices of
   * them, after the num_devices CPU devices (pf_executor_config): taken
   * over, and destroyed by pf_runtime_stop or by a start that fails. */
  pf_device *const *extra_devices;
  int n_extra_devices;
  pf_clock *clock;       /* NULL: the real clock */
} pf_runtime_config;

/* Starts the executor, the service and the loop thread.
 * Errors: PF_EINVAL, PF_ENOMEM, PF_ESYS. */
int pf_runtime_start(const pf_runtime_config *cfg, pf_runtime **out);

/* Sends `m` to the executor of `rank` (this process's own included). Takes
 * ownership. Thread-safe. Errors: PF_ESTATE (stopping), PF_EINVAL (rank). */
int pf_runtime_send(pf_runtime *rt, int rank, pf_msg *m);

/* A send that cannot fail later: pf_runtime_send_reserve takes what
 * queueing a message needs now (NULL when out of memory); the message then
 * goes with pf_runtime_send_reserved, which consumes the reservation and
 * takes `m`. The dispatcher reserves a step's run messages before any of
 * them goes out: once one rank has its part of a step, every other rank
 * must get its own, or the first would wait for its peers forever. An
 * unused reservation is freed with pf_runtime_reservation_free (NULL: no-op). */
typedef struct pf_runtime_reservation pf_runtime_reservation;
pf_runtime_reservation *pf_runtime_send_reserve(void);
void pf_runtime_send_reserved(pf_runtime *rt, pf_runtime_reservation *res, int rank, pf_msg *m);
void pf_runtime_reservation_free(pf_runtime_reservation *res);

/* Executor ranks: blocks until the controller sends shutdown. */
void pf_runtime_wait_shutdown(pf_runtime *rt);

/* The CPU a thread of this process that waits for this rank's replies
 * (the controller's client) should wait on, or -1 for anywhere: the loop
 * thread's, when it is pinned there and every CPU of the process's mask
 * carries a rank's loop (two ranks on two cores). A thread woken on a CPU
 * where another rank's loop spins waits behind it, yields or not (Linux's
 * EEVDF scheduler: synchronous dispatch ran 6x slower, in one run of four,
 * whenever the client had landed there); its own loop gives way to it.
 * Thread-safe (set before pf_runtime_start returns). */
int pf_runtime_client_cpu(const pf_runtime *rt);

/* Whether the loop thread runs the devices' ops by default
 * (PATHFLOW_LOOP_RUNS_OPS unset), in a job whose loop has transfers to
 * make: when it has no CPU of its own to spin on beside the workers. cpus:
 * CPUs in the process's affinity mask; online: the host's (<= 0 unknown);
 * local_ranks: the job's ranks on this host; cpu_devices, other_devices:
 * this rank's CPU devices and others (GPUs). 1 with one CPU, with more
 * ranks than the host has CPUs, or with one CPU device and fewer than two
 * CPUs per rank (the loop and the worker would share one: runtime.c says
 * what that cost); else 0. */
int pf_loop_runs_ops_default(int cpus, long online, int local_ranks, int cpu_devices,
                             int other_devices);

/* Rank 0: tells every other rank to shut down. Then, on every rank: stops
 * the loop and the workers and frees the runtime. Steps must be done. */
void pf_runtime_stop(pf_runtime *rt);


#endif
