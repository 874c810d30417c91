/* pf_msg <-> pathflow.Control. Decoding trusts nothing: counts, sizes and
 * strings are checked, plans go through pf_plan_decode. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/arena.h"
#include "base/util.h"
#include "base/wire.h"
#include "pathflow/error.h"
#include "proto/pathflow.pb-c.h"
#include "runtime/msg.h"

#define MSG_MAX ((size_t)512 << 20)
#define IDS_MAX (1u << 20)
#define STRING_MAX 4096
/* Counters: 8 totals, at most as many devices as a Register may announce
 * and as many peers as ids in a message. */
#define COUNTER_TOTALS 8
#define COUNTER_DEVICES_MAX 4096
#define COUNTER_PEERS_MAX (1 << 20)

pf_msg *pf_msg_new(pf_msg_kind kind) {
  pf_msg *m = calloc(1, sizeof *m);
  if (m) m->kind = kind;
  return m;
}

void pf_msg_free(pf_msg *m) {
  if (m == NULL) return;
  free(m->message);
  pf_plan_free(m->plan);
  free(m->inputs);
  free(m->outputs);
  free(m->drop);
  free(m->ids);
  if (m->data)
    for (uint32_t i = 0; i < m->n_shards; i++) pf_storage_unref(m->data[i]);
  free(m->data);
  free(m->shards);
  free(m->host);
  free(m->devices);
  free(m->comm_ids);
  pf_counters_free(m->counters);
  free(m->data_bytes);
  free(m);
}

const char *pf_msg_kind_name(pf_msg_kind k) {
  static const char *const names[] = {"none",      "register", "load",    "load_done",
                                      "run",       "step_done", "fetch",  "fetch_reply",
                                      "put",       "release",  "unload",  "shutdown",
                                      "heartbeat", "connect", "dump", "counters", "counters_reply",
                                      "step_started", "expect"};
  _Static_assert(PF_ARRAY_LEN(names) == PF_MSG_KIND_LAST + 1, "a name for every kind");
  return (unsigned)k < PF_ARRAY_LEN(names) ? names[k] : "?";
}

/* ---- encode ---------------------------------------------------------------- */

static ProtobufCBinaryData bytes_of(const pf_storage *s, size_t n) {
  ProtobufCBinaryData b;
  b.len = s ? n : 0;
  b.data = s ? s->data : NULL;
  return b;
}

/* A message's communicator ids on the wire: *store and *ptrs, malloc'd,
 * point into m (freed by the caller after packing). */
static int comm_ids_out(const pf_msg *m, Pathflow__CommId ***out, size_t *n,
                        Pathflow__CommId **store, Pathflow__CommId ***ptrs) {
  *out = NULL;
  *n = 0;
  if (m->n_comm_ids == 0) return 0;
  if (m->n_comm_ids > IDS_MAX) return PF_EINVAL;
  *store = pf_calloc(m->n_comm_ids, sizeof **store);
  *ptrs = pf_calloc(m->n_comm_ids, sizeof **ptrs);
  if (*store == NULL || *ptrs == NULL) return PF_ENOMEM;
  for (uint32_t i = 0; i < m->n_comm_ids; i++) {
    Pathflow__CommId init = PATHFLOW__COMM_ID__INIT;
    (*store)[i] = init;
    (*store)[i].comm = m->comm_ids[i].comm;
    (*store)[i].id.data = (uint8_t *)m->comm_ids[i].id;
    (*store)[i].id.len = PF_MSG_COMM_ID_MAX;
    (*ptrs)[i] = &(*store)[i];
  }
  *out = *ptrs;
  *n = m->n_comm_ids;
  return 0;
}

/* The ids a LOAD_DONE or CONNECT carries: each at most PF_MSG_COMM_ID_MAX
 * bytes (zero-padded here). */
static int comm_ids_in(pf_msg *m, Pathflow__CommId *const *ids, size_t n, pf_diag *d) {
  if (n == 0) return 0;
  if (n > IDS_MAX) return pf_diag_error(d, PF_EDECODE, "control message: %zu communicator ids", n);
  if ((m->comm_ids = pf_calloc(n, sizeof *m->comm_ids)) == NULL) return PF_ENOMEM;
  m->n_comm_ids = (uint32_t)n;
  for (size_t i = 0; i < n; i++) {
    if (ids[i]->id.len > PF_MSG_COMM_ID_MAX || (ids[i]->id.len > 0 && ids[i]->id.data == NULL))
      return pf_diag_error(d, PF_EDECODE,
                           "control message: communicator %d's id has %zu bytes, at most %d",
                           (int)ids[i]->comm, ids[i]->id.len, PF_MSG_COMM_ID_MAX);
    m->comm_ids[i].comm = ids[i]->comm;
    if (ids[i]->id.len) memcpy(m->comm_ids[i].id, ids[i]->id.data, ids[i]->id.len);
  }
  return 0;
}

/* Control{load: LoadPlan{plan}} with the plan written in place: through
 * protobuf-c the plan would be encoded, then copied into the message (for
 * a plan of 1.5 million ops, 80 MB copied into 80 MB of fresh pages: a
 * third of the encoding's time). The two fields around it are written by
 * hand (base/wire.h), and read so by pf_msg_decode (load_plan_in). */
#define CONTROL_LOAD_FIELD 2 /* pathflow.proto: Control.load */
#define LOAD_PLAN_FIELD 1    /* LoadPlan.plan */
static int load_encode(const pf_plan *p, uint8_t **buf, size_t *len) {
  pf_plan_writer *w;
  size_t n, inner;
  uint8_t *at;
  int rc;
  if ((rc = pf_plan_measure(p, &w, &n)) != 0) return rc;
  inner = pf_wire_field_len(LOAD_PLAN_FIELD, n);
  *len = pf_wire_field_len(CONTROL_LOAD_FIELD, inner);
  if ((*buf = pf_mallocn(*len, 1)) == NULL) {
    pf_plan_writer_free(w);
    return PF_ENOMEM;
  }
  pf_prefault(*buf, *len); /* as pf_plan_encode's buffer */
  at = pf_wire_field_start(*buf, CONTROL_LOAD_FIELD, inner);
  at = pf_wire_field_start(at, LOAD_PLAN_FIELD, n);
  pf_plan_write(w, at);
  return 0;
}

int pf_msg_encode(const pf_msg *m, uint8_t **buf, size_t *len) {
  Pathflow__Control c = PATHFLOW__CONTROL__INIT;
  Pathflow__Register reg = PATHFLOW__REGISTER__INIT;
  Pathflow__Device *dev_store = NULL;
  Pathflow__LoadDone load_done = PATHFLOW__LOAD_DONE__INIT;
  Pathflow__RunStep run = PATHFLOW__RUN_STEP__INIT;
  Pathflow__StepDone step_done = PATHFLOW__STEP_DONE__INIT;
  Pathflow__Fetch fetch = PATHFLOW__FETCH__INIT;
  Pathflow__FetchReply reply = PATHFLOW__FETCH_REPLY__INIT;
  Pathflow__Put put = PATHFLOW__PUT__INIT;
  Pathflow__Spec spec = PATHFLOW__SPEC__INIT;
  Pathflow__Release rel = PATHFLOW__RELEASE__INIT;
  Pathflow__Unload unload = PATHFLOW__UNLOAD__INIT;
  Pathflow__Expect expect = PATHFLOW__EXPECT__INIT;
  Pathflow__Connect connect = PATHFLOW__CONNECT__INIT;
  Pathflow__Counters counters = PATHFLOW__COUNTERS__INIT;
  Pathflow__CountersReply counters_reply = PATHFLOW__COUNTERS_REPLY__INIT;
  uint64_t totals[COUNTER_TOTALS], *cdev = NULL, *cpeer = NULL;
  ProtobufCBinaryData *datas = NULL;
  Pathflow__CommId *id_store = NULL, **id_ptrs = NULL;
  int64_t dims[PF_MAX_RANK];
  int rc = 0;
  *buf = NULL;
  /* What no receiver accepts (pf_msg_decode refuses it) is not sent. */
  if (m->n_inputs > IDS_MAX || m->n_outputs > IDS_MAX || m->n_drop > IDS_MAX ||
      m->n_ids > IDS_MAX || m->n_shards > IDS_MAX)
    return PF_EINVAL;
  switch (m->kind) {
    case PF_MSG_REGISTER:
      reg.host = m->host ? m->host : "";
      reg.n_devices = 0;
      reg.devices = NULL;
      if (m->n_devices > 0) {
        Pathflow__Device **list;
        if (m->devices == NULL) return PF_EINVAL;
        list = pf_mallocn((size_t)m->n_devices, sizeof *list);
        dev_store = pf_mallocn((size_t)m->n_devices, sizeof *dev_store);
        if (list == NULL || dev_store == NULL) {
          free(list);
          free(dev_store);
          return PF_ENOMEM;
        }
        for (int i = 0; i < m->n_devices; i++) {
          pathflow__device__init(&dev_store[i]);
          dev_store[i].kind = (int32_t)m->devices[i].kind;
          dev_store[i].memory = m->devices[i].memory;
          dev_store[i].stage = m->devices[i].stage;
          dev_store[i].own_memory = m->devices[i].own_memory != 0;
          list[i] = &dev_store[i];
        }
        reg.devices = list;
        reg.n_devices = (size_t)m->n_devices;
      }
      c.body_case = PATHFLOW__CONTROL__BODY_REGISTER;
      c.register_ = &reg;
      break;
    case PF_MSG_LOAD:
      return load_encode(m->plan, buf, len);
    case PF_MSG_LOAD_DONE:
      load_done.executable = m->executable;
      load_done.status = m->status;
      load_done.message = m->message ? m->message : "";
      if ((rc = comm_ids_out(m, &load_done.comm_ids, &load_done.n_comm_ids, &id_store,
                             &id_ptrs)) != 0)
        goto out;
      c.body_case = PATHFLOW__CONTROL__BODY_LOAD_DONE;
      c.load_done = &load_done;
      break;
    case PF_MSG_RUN:
      run.executable = m->executable;
      run.step = m->step;
      run.n_inputs = m->n_inputs;
      run.inputs = m->inputs;
      run.n_outputs = m->n_outputs;
      run.outputs = m->outputs;
      run.n_drop = m->n_drop;
      run.drop = m->drop;
      run.n_release = m->n_ids;
      run.release = m->ids;
      run.slot = m->slot;
      run.ack_start = m->ack_start != 0;
      c.body_case = PATHFLOW__CONTROL__BODY_RUN;
      c.run = &run;
      break;
    case PF_MSG_STEP_DONE:
    case PF_MSG_STEP_STARTED:
      step_done.started = m->kind == PF_MSG_STEP_STARTED;
      step_done.executable = m->executable;
      step_done.step = m->step;
      step_done.status = m->status;
      step_done.message = m->message ? m->message : "";
      c.body_case = PATHFLOW__CONTROL__BODY_STEP_DONE;
      c.step_done = &step_done;
      break;
    case PF_MSG_FETCH:
      fetch.request = m->request;
      fetch.buffer = m->buffer;
      fetch.n_shards = m->n_shards;
      fetch.shards = m->shards;
      c.body_case = PATHFLOW__CONTROL__BODY_FETCH;
      c.fetch = &fetch;
      break;
    case PF_MSG_FETCH_REPLY:
      reply.request = m->request;
      reply.status = m->status;
      reply.message = m->message ? m->message : "";
      reply.n_shards = m->n_shards;
      reply.shards = m->shards;
      if (m->data_path) {
        reply.data_path = 1;
        reply.data_tag = m->data_tag;
        reply.n_data_bytes = m->n_shards;
        reply.data_bytes = m->data_bytes;
      } else if (m->n_shards > 0 && m->data) {
        datas = pf_calloc(m->n_shards, sizeof *datas);
        if (datas == NULL) return PF_ENOMEM;
        for (uint32_t i = 0; i < m->n_shards; i++)
          datas[i] = bytes_of(m->data[i], m->data[i] ? m->data[i]->nbytes : 0);
        reply.n_data = m->n_shards;
        reply.data = datas;
      }
      c.body_case = PATHFLOW__CONTROL__BODY_FETCH_REPLY;
      c.fetch_reply = &reply;
      break;
    case PF_MSG_PUT:
      /* the storage is read for pf_spec_nbytes(spec) bytes */
      if (pf_spec_check(&m->spec) != 0 ||
          (!m->data_path && (m->data == NULL || m->data[0] == NULL ||
                             m->data[0]->nbytes < pf_spec_nbytes(&m->spec))))
        return PF_EINVAL;
      put.data_path = m->data_path != 0;
      put.data_tag = m->data_tag;
      put.buffer = m->buffer;
      put.shard = m->n_shards ? m->shards[0] : 0;
      for (int i = 0; i < m->spec.rank; i++) dims[i] = m->spec.dims[i];
      spec.dtype = m->spec.dtype;
      spec.n_dims = (size_t)m->spec.rank;
      spec.dims = dims;
      put.spec = &spec;
      if (!m->data_path) put.data = bytes_of(m->data[0], pf_spec_nbytes(&m->spec));
      c.body_case = PATHFLOW__CONTROL__BODY_PUT;
      c.put = &put;
      break;
    case PF_MSG_RELEASE:
      rel.n_buffers = m->n_ids;
      rel.buffers = m->ids;
      c.body_case = PATHFLOW__CONTROL__BODY_RELEASE;
      c.release = &rel;
      break;
    case PF_MSG_UNLOAD:
      unload.executable = m->executable;
      c.body_case = PATHFLOW__CONTROL__BODY_UNLOAD;
      c.unload = &unload;
      break;
    case PF_MSG_CONNECT:
      connect.executable = m->executable;
      if ((rc = comm_ids_out(m, &connect.comm_ids, &connect.n_comm_ids, &id_store, &id_ptrs)) !=
          0)
        goto out;
      c.body_case = PATHFLOW__CONTROL__BODY_CONNECT;
      c.connect = &connect;
      break;
    case PF_MSG_SHUTDOWN:
      c.body_case = PATHFLOW__CONTROL__BODY_SHUTDOWN;
      c.shutdown = 1;
      break;
    case PF_MSG_HEARTBEAT:
      c.body_case = PATHFLOW__CONTROL__BODY_HEARTBEAT;
      c.heartbeat = 1;
      break;
    case PF_MSG_DUMP:
      c.body_case = PATHFLOW__CONTROL__BODY_DUMP;
      c.dump = 1;
      break;
    case PF_MSG_COUNTERS:
      counters.request = m->request;
      c.body_case = PATHFLOW__CONTROL__BODY_COUNTERS;
      c.counters = &counters;
      break;
    case PF_MSG_EXPECT:
      expect.executable = m->executable;
      expect.bytes = m->bytes;
      c.body_case = PATHFLOW__CONTROL__BODY_EXPECT;
      c.expect = &expect;
      break;
    case PF_MSG_COUNTERS_REPLY:
      counters_reply.request = m->request;
      counters_reply.status = m->status;
      counters_reply.message = m->message ? m->message : "";
      if (m->counters != NULL) {
        const pf_counters *k = m->counters;
        if (k->num_devices > COUNTER_DEVICES_MAX || k->num_peers > COUNTER_PEERS_MAX)
          return PF_EINVAL;
        cdev = pf_mallocn((size_t)k->num_devices * 2 + 1, sizeof *cdev);
        cpeer = pf_mallocn((size_t)k->num_peers * 8 + 1, sizeof *cpeer);
        if (cdev == NULL || cpeer == NULL) {
          free(cdev);
          free(cpeer);
          return PF_ENOMEM;
        }
        totals[0] = k->steps;
        totals[1] = k->steps_failed;
        totals[2] = k->transfer_wait_ns;
        totals[3] = k->collectives;
        totals[4] = k->collective_bytes;
        totals[5] = k->collective_wait_ns;
        totals[6] = k->buffers_held;
        totals[7] = k->buffer_bytes_held;
        for (int d = 0; d < k->num_devices; d++) {
          cdev[2 * d] = k->devices[d].ops_run;
          cdev[2 * d + 1] = k->devices[d].wait_ns;
        }
        for (int p = 0; p < k->num_peers; p++) {
          const pf_peer_counters *q = &k->peers[p];
          uint64_t *o = &cpeer[8 * (size_t)p];
          o[0] = q->data_bytes_sent;
          o[1] = q->data_bytes_received;
          o[2] = q->data_messages_sent;
          o[3] = q->data_messages_received;
          o[4] = q->control_bytes_sent;
          o[5] = q->control_bytes_received;
          o[6] = q->control_messages_sent;
          o[7] = q->control_messages_received;
        }
        counters_reply.n_totals = COUNTER_TOTALS;
        counters_reply.totals = totals;
        counters_reply.n_devices = (size_t)k->num_devices * 2;
        counters_reply.devices = cdev;
        counters_reply.n_peers = (size_t)k->num_peers * 8;
        counters_reply.peers = cpeer;
      }
      c.body_case = PATHFLOW__CONTROL__BODY_COUNTERS_REPLY;
      c.counters_reply = &counters_reply;
      break;
    default:
      return PF_EINVAL;
  }
  *len = pathflow__control__get_packed_size(&c);
  *buf = malloc(*len ? *len : 1);
  if (*buf == NULL)
    rc = PF_ENOMEM;
  else
    pathflow__control__pack(&c, *buf);
out:
  free(id_store);
  free(id_ptrs);
  free(datas);
  free(reg.devices);
  free(dev_store);
  free(cdev);
  free(cpeer);
  return rc;
}

/* ---- decode ---------------------------------------------------------------- */

static int bad(pf_diag *d, const char *what) {
  return pf_diag_error(d, PF_EDECODE, "control message: %s", what);
}

static char *str_copy(const char *s, pf_diag *d, int *rc) {
  char *c;
  if (s == NULL) return NULL;
  if (strlen(s) > STRING_MAX) {
    *rc = bad(d, "string too long");
    return NULL;
  }
  if ((c = pf_strdup(s)) == NULL) *rc = PF_ENOMEM;
  return c;
}

static uint64_t *ids_copy(const uint64_t *v, size_t n, uint32_t *count, pf_diag *d, int *rc) {
  uint64_t *c;
  if (n > IDS_MAX) {
    *rc = bad(d, "too many ids");
    return NULL;
  }
  c = pf_mallocn(n, sizeof *c);
  if (c == NULL) {
    *rc = PF_ENOMEM;
    return NULL;
  }
  if (n) memcpy(c, v, n * sizeof *c);
  *count = (uint32_t)n;
  return c;
}

static int32_t *shards_copy(const int32_t *v, size_t n, pf_diag *d, int *rc) {
  int32_t *c;
  if (n > IDS_MAX) {
    *rc = bad(d, "too many shards");
    return NULL;
  }
  c = pf_mallocn(n, sizeof *c);
  if (c == NULL) {
    *rc = PF_ENOMEM;
    return NULL;
  }
  for (size_t i = 0; i < n; i++) {
    if (v[i] < 0) {
      free(c);
      *rc = bad(d, "negative shard index");
      return NULL;
    }
    c[i] = v[i];
  }
  return c;
}

static pf_storage *storage_from(const ProtobufCBinaryData *b, int *rc) {
  pf_storage *s = pf_storage_new(b->len, 0);
  if (s == NULL) {
    *rc = PF_ENOMEM;
    return NULL;
  }
  if (b->len) memcpy(s->data, b->data, b->len);
  return s;
}

static int decode_counters(const Pathflow__CountersReply *r, pf_msg *m, pf_diag *d) {
  pf_counters *k;
  int rc = 0;
  m->kind = PF_MSG_COUNTERS_REPLY;
  m->request = r->request;
  m->status = r->status;
  m->message = str_copy(r->message, d, &rc);
  if (rc) return rc;
  /* A failed reply carries no counters. */
  if (r->n_totals == 0 && r->n_devices == 0 && r->n_peers == 0 && r->status != 0) return 0;
  if (r->n_totals != COUNTER_TOTALS) return bad(d, "counters_reply: wrong number of totals");
  if (r->n_devices % 2 != 0 || r->n_devices / 2 > COUNTER_DEVICES_MAX)
    return bad(d, "counters_reply: device list of a wrong length");
  if (r->n_peers % 8 != 0 || r->n_peers / 8 > COUNTER_PEERS_MAX)
    return bad(d, "counters_reply: peer list of a wrong length");
  if ((k = pf_counters_new(0, (int)(r->n_devices / 2), (int)(r->n_peers / 8))) == NULL)
    return PF_ENOMEM;
  k->steps = r->totals[0];
  k->steps_failed = r->totals[1];
  k->transfer_wait_ns = r->totals[2];
  k->collectives = r->totals[3];
  k->collective_bytes = r->totals[4];
  k->collective_wait_ns = r->totals[5];
  k->buffers_held = r->totals[6];
  k->buffer_bytes_held = r->totals[7];
  for (int i = 0; i < k->num_devices; i++) {
    k->devices[i].ops_run = r->devices[2 * i];
    k->devices[i].wait_ns = r->devices[2 * i + 1];
  }
  for (int p = 0; p < k->num_peers; p++) {
    const uint64_t *o = &r->peers[8 * (size_t)p];
    pf_peer_counters *q = &k->peers[p];
    q->data_bytes_sent = o[0];
    q->data_bytes_received = o[1];
    q->data_messages_sent = o[2];
    q->data_messages_received = o[3];
    q->control_bytes_sent = o[4];
    q->control_bytes_received = o[5];
    q->control_messages_sent = o[6];
    q->control_messages_received = o[7];
  }
  pf_counters_sum(k);
  m->counters = k;
  return 0;
}

static int decode_body(const Pathflow__Control *c, int num_devices, pf_msg *m, pf_diag *d) {
  int rc = 0;
  switch (c->body_case) {
    case PATHFLOW__CONTROL__BODY_REGISTER:
      m->kind = PF_MSG_REGISTER;
      if (c->register_->n_devices < 1 || c->register_->n_devices > 4096)
        return bad(d, "register: device count out of range");
      m->n_devices = (int32_t)c->register_->n_devices;
      if ((m->devices = pf_calloc((size_t)m->n_devices, sizeof *m->devices)) == NULL)
        return PF_ENOMEM;
      for (int i = 0; i < m->n_devices; i++) {
        const Pathflow__Device *dv = c->register_->devices[i];
        if (dv->kind < 0 || dv->kind >= PF_DEVICE_KIND_COUNT)
          return bad(d, "register: a device of unknown kind");
        if (dv->memory < 0) return bad(d, "register: a device with negative memory");
        if ((dv->stage & ~(uint32_t)PF_STAGE_ALL) != 0)
          return bad(d, "register: a device with unknown stage bits");
        m->devices[i].kind = (pf_device_kind)dv->kind;
        m->devices[i].memory = dv->memory;
        m->devices[i].stage = dv->stage;
        m->devices[i].own_memory = dv->own_memory;
      }
      m->host = str_copy(c->register_->host, d, &rc);
      return rc;
    case PATHFLOW__CONTROL__BODY_LOAD:
      m->kind = PF_MSG_LOAD;
      return pf_plan_decode(c->load->plan.data, c->load->plan.len, num_devices, &m->plan, d);
    case PATHFLOW__CONTROL__BODY_LOAD_DONE:
      m->kind = PF_MSG_LOAD_DONE;
      m->executable = c->load_done->executable;
      m->status = c->load_done->status;
      m->message = str_copy(c->load_done->message, d, &rc);
      if (rc == 0) rc = comm_ids_in(m, c->load_done->comm_ids, c->load_done->n_comm_ids, d);
      return rc;
    case PATHFLOW__CONTROL__BODY_RUN:
      m->kind = PF_MSG_RUN;
      m->executable = c->run->executable;
      m->step = c->run->step;
      if (c->run->slot >= PF_MSG_SLOTS) return bad(d, "run: dispatch slot out of range");
      m->slot = c->run->slot;
      m->ack_start = c->run->ack_start;
      m->inputs = ids_copy(c->run->inputs, c->run->n_inputs, &m->n_inputs, d, &rc);
      if (rc == 0) m->outputs = ids_copy(c->run->outputs, c->run->n_outputs, &m->n_outputs, d, &rc);
      if (rc == 0) m->drop = ids_copy(c->run->drop, c->run->n_drop, &m->n_drop, d, &rc);
      if (rc == 0) m->ids = ids_copy(c->run->release, c->run->n_release, &m->n_ids, d, &rc);
      return rc;
    case PATHFLOW__CONTROL__BODY_STEP_DONE:
      m->kind = c->step_done->started ? PF_MSG_STEP_STARTED : PF_MSG_STEP_DONE;
      m->executable = c->step_done->executable;
      m->step = c->step_done->step;
      m->status = c->step_done->status;
      m->message = str_copy(c->step_done->message, d, &rc);
      return rc;
    case PATHFLOW__CONTROL__BODY_FETCH:
      m->kind = PF_MSG_FETCH;
      m->request = c->fetch->request;
      m->buffer = c->fetch->buffer;
      m->shards = shards_copy(c->fetch->shards, c->fetch->n_shards, d, &rc);
      m->n_shards = (uint32_t)c->fetch->n_shards;
      return rc;
    case PATHFLOW__CONTROL__BODY_FETCH_REPLY: {
      const Pathflow__FetchReply *r = c->fetch_reply;
      m->kind = PF_MSG_FETCH_REPLY;
      m->request = r->request;
      m->status = r->status;
      m->message = str_copy(r->message, d, &rc);
      if (rc) return rc;
      m->shards = shards_copy(r->shards, r->n_shards, d, &rc);
      if (rc) return rc;
      m->n_shards = (uint32_t)r->n_shards;
      if (r->data_path) {
        /* The data follows on the data path: sizes checked here, bytes
         * received by the runtime. */
        if (r->n_data != 0 || r->n_data_bytes != r->n_shards || r->data_tag < 0)
          return bad(d, "fetch_reply: data path with data, bad sizes or a negative tag");
        for (size_t i = 0; i < r->n_data_bytes; i++)
          if (r->data_bytes[i] > (uint64_t)PF_MSG_DATA_MAX)
            return bad(d, "fetch_reply: a shard larger than 511 MiB");
        m->data_path = 1;
        m->data_tag = r->data_tag;
        m->data_bytes = pf_mallocn(r->n_shards + 1, sizeof *m->data_bytes);
        if (m->data_bytes == NULL) return PF_ENOMEM;
        if (r->n_shards) memcpy(m->data_bytes, r->data_bytes, r->n_shards * sizeof *m->data_bytes);
        return 0;
      }
      /* no data (a failed reply may carry none) or one blob per shard:
       * pf_msg has one count for shards and data */
      if ((r->status == 0 || r->n_data != 0) && r->n_data != r->n_shards)
        return bad(d, "fetch_reply: data count differs from shard count");
      if (r->n_data == 0) return 0;
      m->data = pf_calloc(r->n_data, sizeof *m->data);
      if (m->data == NULL) return PF_ENOMEM;
      for (size_t i = 0; i < r->n_data && rc == 0; i++) m->data[i] = storage_from(&r->data[i], &rc);
      return rc;
    }
    case PATHFLOW__CONTROL__BODY_PUT: {
      const Pathflow__Put *p = c->put;
      m->kind = PF_MSG_PUT;
      m->buffer = p->buffer;
      if (p->spec == NULL || p->spec->n_dims > PF_MAX_RANK || p->shard < 0)
        return bad(d, "put: missing or bad spec");
      m->spec = pf_spec_make((pf_dtype)p->spec->dtype, (int)p->spec->n_dims, p->spec->dims);
      if (pf_spec_check(&m->spec) != 0 ||
          (p->data_path ? p->data.len != 0 || p->data_tag < 0 ||
                              pf_spec_nbytes(&m->spec) > (size_t)PF_MSG_DATA_MAX
                        : pf_spec_nbytes(&m->spec) != p->data.len))
        return bad(d, "put: data size does not match the spec");
      m->shards = shards_copy(&p->shard, 1, d, &rc);
      if (rc) return rc;
      m->n_shards = 1;
      if (p->data_path) {
        m->data_path = 1;
        m->data_tag = p->data_tag;
        return 0; /* the runtime receives the bytes */
      }
      m->data = pf_calloc(1, sizeof *m->data);
      if (m->data == NULL) return PF_ENOMEM;
      m->data[0] = storage_from(&p->data, &rc);
      return rc;
    }
    case PATHFLOW__CONTROL__BODY_RELEASE:
      m->kind = PF_MSG_RELEASE;
      m->ids = ids_copy(c->release->buffers, c->release->n_buffers, &m->n_ids, d, &rc);
      return rc;
    case PATHFLOW__CONTROL__BODY_UNLOAD:
      m->kind = PF_MSG_UNLOAD;
      m->executable = c->unload->executable;
      return 0;
    case PATHFLOW__CONTROL__BODY_CONNECT:
      m->kind = PF_MSG_CONNECT;
      m->executable = c->connect->executable;
      return comm_ids_in(m, c->connect->comm_ids, c->connect->n_comm_ids, d);
    case PATHFLOW__CONTROL__BODY_SHUTDOWN:
      m->kind = PF_MSG_SHUTDOWN;
      return 0;
    case PATHFLOW__CONTROL__BODY_HEARTBEAT:
      m->kind = PF_MSG_HEARTBEAT;
      return 0;
    case PATHFLOW__CONTROL__BODY_DUMP:
      m->kind = PF_MSG_DUMP;
      return 0;
    case PATHFLOW__CONTROL__BODY_COUNTERS:
      m->kind = PF_MSG_COUNTERS;
      m->request = c->counters->request;
      return 0;
    case PATHFLOW__CONTROL__BODY_EXPECT:
      /* Any size: the receiver caps what it readies by its own memory. */
      m->kind = PF_MSG_EXPECT;
      m->executable = c->expect->executable;
      m->bytes = c->expect->bytes;
      return 0;
    case PATHFLOW__CONTROL__BODY_COUNTERS_REPLY:
      return decode_counters(c->counters_reply, m, d);
    default:
      return bad(d, "no body");
  }
}

/* protobuf-c's allocations while a control message is unpacked: from a
 * block on the stack, malloc past its end. A run order or a step's answer
 * is a few small blocks (the envelope, the body, its id lists), each a
 * malloc and a free before, on the path of every step. */
#define UNPACK_SPACE 2048
typedef struct unpack_space {
  size_t used;
  _Alignas(max_align_t) unsigned char bytes[UNPACK_SPACE];
} unpack_space;

static void *space_alloc(void *arg, size_t n) {
  unpack_space *s = arg;
  size_t need = (n + sizeof(max_align_t) - 1) & ~(sizeof(max_align_t) - 1);
  if (need >= n && need <= UNPACK_SPACE - s->used) {
    void *p = s->bytes + s->used;
    s->used += need;
    return p;
  }
  return malloc(n);
}

static void space_free(void *arg, void *p) {
  unpack_space *s = arg;
  uintptr_t at = (uintptr_t)p, lo = (uintptr_t)s->bytes;
  if (at - lo >= UNPACK_SPACE) free(p); /* not one of ours (NULL included) */
}

/* The plan of a LOAD as load_encode writes it, Control{load:
 * LoadPlan{plan}} and nothing else, where it lies (*n bytes); NULL for any
 * other message. protobuf-c would copy the plan out first (80 MB of fresh
 * memory for a plan of 1.5 million ops); any other shape of a LOAD still
 * goes through it. */
static const uint8_t *load_plan_in(const uint8_t *buf, size_t len, size_t *n) {
  const uint8_t *p = buf, *end = buf + len;
  pf_wire_field f;
  if (buf == NULL || pf_wire_field_next(&p, end, &f) != 0 || p != end ||
      f.number != CONTROL_LOAD_FIELD || f.type != PF_WIRE_LENGTH_DELIMITED)
    return NULL;
  p = f.data;
  end = f.data + f.len;
  if (pf_wire_field_next(&p, end, &f) != 0 || p != end || f.number != LOAD_PLAN_FIELD ||
      f.type != PF_WIRE_LENGTH_DELIMITED)
    return NULL;
  *n = f.len;
  return f.data;
}

int pf_msg_decode(const uint8_t *buf, size_t len, int num_devices, pf_msg **out,
                  pf_diag *d) {
  unpack_space space;
  ProtobufCAllocator alloc = {space_alloc, space_free, &space};
  Pathflow__Control *c;
  const uint8_t *plan;
  size_t plan_len;
  pf_msg *m;
  int rc;
  if (out == NULL) return PF_EINVAL;
  *out = NULL;
  if (d != NULL) pf_diag_init(d);
  if (buf == NULL && len > 0)
    return pf_diag_error(d, PF_EINVAL, "control message: NULL buffer");
  if (len > MSG_MAX) return bad(d, "message too large");
  if ((plan = load_plan_in(buf, len, &plan_len)) != NULL) {
    if ((m = calloc(1, sizeof *m)) == NULL) return PF_ENOMEM;
    m->kind = PF_MSG_LOAD;
    if ((rc = pf_plan_decode(plan, plan_len, num_devices, &m->plan, d)) != 0) {
      pf_msg_free(m);
      return rc;
    }
    *out = m;
    return 0;
  }
  space.used = 0;
  if ((c = pathflow__control__unpack(&alloc, len, buf ? buf : (const uint8_t *)"")) == NULL)
    return bad(d, "not a pathflow.Control");
  if ((m = calloc(1, sizeof *m)) == NULL) {
    pathflow__control__free_unpacked(c, &alloc);
    return PF_ENOMEM;
  }
  rc = decode_body(c, num_devices, m, d);
  pathflow__control__free_unpacked(c, &alloc);
  if (rc != 0) {
    pf_msg_free(m);
    if (rc == PF_ENOMEM) pf_diag_error(d, rc, "control message: out of memory");
    return rc;
  }
  *out = m;
  return 0;
}

/* Plan.executable (field 1) of n encoded bytes, read alone; 0 when the
 * bytes are not a message. */
#define PLAN_EXECUTABLE_FIELD 1
static uint64_t plan_executable(const uint8_t *plan, size_t n) {
  const uint8_t *p = plan, *end = plan + n;
  uint64_t id = 0;
  while (p < end) {
    pf_wire_field f;
    const uint8_t *q;
    uint64_t key;
    if (pf_wire_field_next(&p, end, &f) != 0) return 0;
    if (f.number != PLAN_EXECUTABLE_FIELD || f.type != PF_WIRE_VARINT) continue;
    q = f.start;
    if (pf_wire_varint_get(&q, f.end, &key) != 0 || pf_wire_varint_get(&q, f.end, &id) != 0)
      return 0;
  }
  return id; /* the last one, as protobuf reads a repeated scalar */
}

int pf_msg_concerns(const uint8_t *buf, size_t len, pf_msg_kind *kind, uint64_t *executable,
                    uint64_t *key) {
  Pathflow__Control *c;
  const uint8_t *plan;
  size_t plan_len;
  int known = 1;
  *kind = PF_MSG_NONE;
  *executable = *key = 0;
  if (len <= MSG_MAX && (plan = load_plan_in(buf, len, &plan_len)) != NULL) {
    /* A refused plan can be 80 MB: its id alone is read. */
    *kind = PF_MSG_LOAD;
    *executable = plan_executable(plan, plan_len);
    return *executable != 0;
  }
  if ((buf == NULL && len > 0) || len > MSG_MAX ||
      (c = pathflow__control__unpack(NULL, len, buf ? buf : (const uint8_t *)"")) == NULL)
    return 0;
  switch (c->body_case) {
    case PATHFLOW__CONTROL__BODY_LOAD: {
      /* The executable is inside the plan: read its envelope only. */
      Pathflow__Plan *p = pathflow__plan__unpack(NULL, c->load->plan.len, c->load->plan.data);
      *kind = PF_MSG_LOAD;
      if (p != NULL) *executable = p->executable;
      known = p != NULL && p->executable != 0;
      if (p != NULL) pathflow__plan__free_unpacked(p, NULL);
      break;
    }
    case PATHFLOW__CONTROL__BODY_LOAD_DONE:
      *kind = PF_MSG_LOAD_DONE;
      *executable = c->load_done->executable;
      break;
    case PATHFLOW__CONTROL__BODY_RUN:
      *kind = PF_MSG_RUN;
      *executable = c->run->executable;
      *key = c->run->step;
      break;
    case PATHFLOW__CONTROL__BODY_STEP_DONE:
      *kind = c->step_done->started ? PF_MSG_STEP_STARTED : PF_MSG_STEP_DONE;
      *executable = c->step_done->executable;
      *key = c->step_done->step;
      break;
    case PATHFLOW__CONTROL__BODY_FETCH:
      *kind = PF_MSG_FETCH;
      *key = c->fetch->request;
      break;
    case PATHFLOW__CONTROL__BODY_FETCH_REPLY:
      *kind = PF_MSG_FETCH_REPLY;
      *key = c->fetch_reply->request;
      break;
    case PATHFLOW__CONTROL__BODY_PUT:
      *kind = PF_MSG_PUT;
      *key = c->put->buffer;
      break;
    case PATHFLOW__CONTROL__BODY_COUNTERS:
      *kind = PF_MSG_COUNTERS;
      *key = c->counters->request;
      break;
    case PATHFLOW__CONTROL__BODY_COUNTERS_REPLY:
      *kind = PF_MSG_COUNTERS_REPLY;
      *key = c->counters_reply->request;
      break;
    default:
      known = 0; /* nothing waits on an answer to the others */
  }
  pathflow__control__free_unpacked(c, NULL);
  return known;
}
