/* Shared helpers for the tests that run under mpirun. Only rank 0 runs the
 * tests: the other ranks serve inside pf_init and exit when rank 0 calls
 * pf_finalize. */
#ifndef PF_TESTS_MPI_COMMON_H
#define PF_TESTS_MPI_COMMON_H

#include "../testing.h"

extern pf_context *ctx;


/* A slice of n devices pinned to devices first, first+1, ... (with one
 * device per rank, device i is rank i). */
static inline pf_slice_t pinned_slice(pf_graph *g, int n, int first) {
  pf_slice_t s;
  int devs[64];
  for (int i = 0; i < n; i++) devs[i] = first + i;
  OK(pf_graph_slice(g, PF_DEVICE_CPU, n, &s));
  OK(pf_graph_slice_pin(g, s, devs));
  return s;
}

static inline pf_tensor *seq_tensor(pf_spec spec, double base) {
  pf_tensor *t;
  OK(pf_tensor_create(&spec, &t));
  for (int64_t i = 0; i < pf_spec_numel(&spec); i++) {
    double v = base + 0.25 * (double)(i % 97) - 3.0;
    switch (spec.dtype) {
      case PF_F32: ((float *)pf_tensor_data(t))[i] = (float)v; break;
      case PF_F64: ((double *)pf_tensor_data(t))[i] = v; break;
      case PF_I32: ((int32_t *)pf_tensor_data(t))[i] = (int32_t)(base + (double)i); break;
      case PF_I64: ((int64_t *)pf_tensor_data(t))[i] = (int64_t)(base + (double)i); break;
      default: break;
    }
  }
  return t;
}

static inline pf_tensor *run_one(pf_executable *exe, int n, const pf_feed *feeds,
                                 const char *out) {
  pf_future *f;
  pf_tensor *t;
  OK(pf_execute(exe, n, feeds, &f));
  OK(pf_future_wait(f));
  OK(pf_future_fetch(f, out, &t));
  pf_future_destroy(f);
  return t;
}

#endif
