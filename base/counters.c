/* Per-rank counters (include/pathflow/counters.h): the record, its
 * arithmetic and its printed form. The runtime fills them in. */
#include "base/counters.h"

#include <stdlib.h>
#include <string.h>

#include "base/util.h"
#include "pathflow/error.h"

pf_counters *pf_counters_new(int rank, int num_devices, int num_peers) {
  pf_counters *c;
  if (num_devices < 0 || num_peers < 0) return NULL;
  if ((c = calloc(1, sizeof *c)) == NULL) return NULL;
  c->rank = rank;
  c->num_devices = num_devices;
  c->num_peers = num_peers;
  c->devices = pf_calloc((size_t)num_devices + 1, sizeof *c->devices);
  c->peers = pf_calloc((size_t)num_peers + 1, sizeof *c->peers);
  if (c->devices == NULL || c->peers == NULL) {
    pf_counters_free(c);
    return NULL;
  }
  return c;
}

void pf_counters_free(pf_counters *c) {
  if (c == NULL) return;
  free(c->devices);
  free(c->peers);
  free(c);
}

void pf_counters_sum(pf_counters *c) {
  c->ops_run = c->device_wait_ns = 0;
  c->transfers_sent = c->transfers_received = 0;
  for (int d = 0; d < c->num_devices; d++) {
    c->ops_run += c->devices[d].ops_run;
    c->device_wait_ns += c->devices[d].wait_ns;
  }
  for (int p = 0; p < c->num_peers; p++) {
    c->transfers_sent += c->peers[p].data_messages_sent;
    c->transfers_received += c->peers[p].data_messages_received;
  }
}

/* a - b into *out, or 1 when b is larger (not the same series). */
static int sub(uint64_t a, uint64_t b, uint64_t *out) {
  if (b > a) return 1;
  *out = a - b;
  return 0;
}

int pf_counters_diff(const pf_counters *after, const pf_counters *before, pf_counters **out) {
  pf_counters *c;
  int bad = 0;
  if (out == NULL) return PF_EINVAL;
  *out = NULL;
  if (after == NULL || before == NULL || after->rank != before->rank ||
      after->num_devices != before->num_devices || after->num_peers != before->num_peers)
    return PF_EINVAL;
  if ((c = pf_counters_new(after->rank, after->num_devices, after->num_peers)) == NULL)
    return PF_ENOMEM;
#define SUB(field) bad |= sub(after->field, before->field, &c->field)
  SUB(steps);
  SUB(steps_failed);
  SUB(transfer_wait_ns);
  SUB(collectives);
  SUB(collective_bytes);
  SUB(collective_wait_ns);
  c->buffers_held = after->buffers_held; /* levels, not counts */
  c->buffer_bytes_held = after->buffer_bytes_held;
  for (int d = 0; d < c->num_devices; d++) {
    SUB(devices[d].ops_run);
    SUB(devices[d].wait_ns);
  }
  for (int p = 0; p < c->num_peers; p++) {
    SUB(peers[p].data_bytes_sent);
    SUB(peers[p].data_bytes_received);
    SUB(peers[p].data_messages_sent);
    SUB(peers[p].data_messages_received);
    SUB(peers[p].control_bytes_sent);
    SUB(peers[p].control_bytes_received);
    SUB(peers[p].control_messages_sent);
    SUB(peers[p].control_messages_received);
  }
#undef SUB
  if (bad) {
    pf_counters_free(c);
    return PF_EINVAL;
  }
  pf_counters_sum(c);
  *out = c;
  return 0;
}

static double ms(uint64_t ns) { return (double)ns / 1e6; }

int pf_counters_print(const pf_counters *c, FILE *f) {
  if (c == NULL || f == NULL) return PF_EINVAL;
  fprintf(f, "pathflow counters: rank %d\n", c->rank);
  fprintf(f, "  steps %llu (%llu failed), ops run %llu, devices waited %.3f ms\n",
          (unsigned long long)c->steps, (unsigned long long)c->steps_failed,
          (unsigned long long)c->ops_run, ms(c->device_wait_ns));
  fprintf(f, "  transfers %llu sent, %llu received, %.3f ms from post to completion\n",
          (unsigned long long)c->transfers_sent, (unsigned long long)c->transfers_received,
          ms(c->transfer_wait_ns));
  fprintf(f, "  collectives %llu, %llu bytes contributed, %.3f ms from issue to completion\n",
          (unsigned long long)c->collectives, (unsigned long long)c->collective_bytes,
          ms(c->collective_wait_ns));
  fprintf(f, "  buffers held %llu, %llu bytes\n", (unsigned long long)c->buffers_held,
          (unsigned long long)c->buffer_bytes_held);
  for (int d = 0; d < c->num_devices; d++)
    fprintf(f, "  device %d: ops run %llu, waited %.3f ms\n", d,
            (unsigned long long)c->devices[d].ops_run, ms(c->devices[d].wait_ns));
  for (int p = 0; p < c->num_peers; p++) {
    const pf_peer_counters *q = &c->peers[p];
    if ((q->data_messages_sent | q->data_messages_received | q->control_messages_sent |
         q->control_messages_received) == 0)
      continue;
    fprintf(f,
            "  peer rank %d: data %llu bytes sent (%llu messages), %llu received (%llu); "
            "control %llu bytes sent (%llu), %llu received (%llu)\n",
            p, (unsigned long long)q->data_bytes_sent, (unsigned long long)q->data_messages_sent,
            (unsigned long long)q->data_bytes_received,
            (unsigned long long)q->data_messages_received,
            (unsigned long long)q->control_bytes_sent,
            (unsigned long long)q->control_messages_sent,
            (unsigned long long)q->control_bytes_received,
            (unsigned long long)q->control_messages_received);
  }
  return fflush(f) == 0 && !ferror(f) ? 0 : PF_ESYS;
}
