/* What the GPU graph tests share (test_gpu_staging.c, mpi_gpu_staging.c):
 * exact small-integer data, and a graph run on GPUs and on CPUs with the
 * same feeds whose outputs must be equal. Include after ../testing.h. */
#ifndef PF_TESTS_PLUGIN_GPU_COMPARE_H
#define PF_TESTS_PLUGIN_GPU_COMPARE_H

#define GPU_COMPARE_MAX 8

/* Small integers in f32: every sum is exact in any order, on any device
 * (a real GPU's reductions and cuBLAS included), so equality is exact. */
static pf_tensor *ints(pf_spec spec, int seed) {
  pf_tensor *t;
  OK(pf_tensor_create(&spec, &t));
  for (int64_t i = 0; i < pf_spec_numel(&spec); i++)
    ((float *)pf_tensor_data(t))[i] = (float)((i * 7 + seed * 13) % 11 - 5);
  return t;
}

/* Ops run so far by the GPU devices of every rank: local devices from
 * first_gpu on (the CPU devices come first on each rank). */
static uint64_t gpu_ops(pf_context *context, int first_gpu) {
  uint64_t n = 0;
  for (int r = 0; r < pf_world_size(context); r++) {
    pf_counters *c;
    OK(pf_counters_get(context, r, &c));
    for (int i = first_gpu; i < c->num_devices; i++) n += c->devices[i].ops_run;
    pf_counters_free(c);
  }
  return n;
}

/* Runs exe[0] (the graph on GPU slices) twice, so that the second step
 * reuses freed device memory, and exe[1] (on CPU slices) once, with the
 * same feeds; checks that the first ran ops on the GPUs and the second
 * none, and that every output in outs is equal on both, and not all zero
 * (the graphs compute something). Destroys both executables. */
static void gpu_compare_run(pf_context *context, pf_executable *exe[2], int n_feeds,
                            const pf_feed *feeds, int n_outs, const char *const *outs,
                            int first_gpu) {
  pf_tensor *got[2][GPU_COMPARE_MAX];
  assert_true(n_outs <= GPU_COMPARE_MAX);
  for (int k = 0; k < 2; k++) {
    uint64_t ops0 = gpu_ops(context, first_gpu);
    for (int rep = 0; rep < (k == 0 ? 2 : 1); rep++) {
      pf_future *f;
      OK(pf_execute(exe[k], n_feeds, feeds, &f));
      OK(pf_future_wait(f));
      for (int o = 0; o < n_outs; o++) {
        if (rep == 1) pf_tensor_destroy(got[k][o]);
        OK(pf_future_fetch(f, outs[o], &got[k][o]));
      }
      pf_future_destroy(f);
    }
    if (k == 0)
      assert_true(gpu_ops(context, first_gpu) > ops0);
    else
      assert_int_equal(gpu_ops(context, first_gpu), ops0);
  }
  for (int o = 0; o < n_outs; o++) {
    const pf_spec *a = pf_tensor_spec(got[0][o]);
    const float *p = pf_tensor_cdata(got[0][o]), *q = pf_tensor_cdata(got[1][o]);
    int64_t nz = 0;
    assert_true(pf_spec_equal(a, pf_tensor_spec(got[1][o])));
    for (int64_t i = 0; i < pf_spec_numel(a); i++) {
      if (p[i] != q[i])
        fail_msg("output %s[%lld]: GPU %g, CPU %g", outs[o], (long long)i, (double)p[i],
                 (double)q[i]);
      nz += q[i] != 0;
    }
    assert_true(nz > 0);
    pf_tensor_destroy(got[0][o]);
    pf_tensor_destroy(got[1][o]);
  }
  pf_executable_destroy(exe[0]);
  pf_executable_destroy(exe[1]);
}

#endif
