/* A user kernel with a CUDA implementation, registered through
 * pf_init_options.kernels for PF_DEVICE_GPU beside its CPU twin: on a GPU
 * it is given its device's stream (pf_kernel_call.stream, a cudaStream_t)
 * and queues its work there, without a .cu file (a device-to-device
 * cudaMemcpyAsync), and the built-in kernel after it on the same device
 * reads what it wrote by stream order alone. Run through pf_init with
 * PATHFLOW_CUDA=1 (the CUDA plugin beside libpathflow), against the same
 * graph on a CPU slice. Without a GPU: exit 77, skipped. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <cuda_runtime_api.h>

#include "pathflow.h"

#define PF_TEST_SKIP 77
#define ROWS 1024
#define COLS 96

static pf_context *ctx;
static int n_gpus;

#define OK(call)                                                                     \
  do {                                                                               \
    int rc_ = (call);                                                                \
    if (rc_ != 0) fail_msg("%s: %s: %s", #call, pf_errname(rc_), pf_last_error(ctx)); \
  } while (0)

/* ---- "user_copy": y = x ---------------------------------------------------- */

static atomic_int gpu_calls, cpu_calls;

static int copy_shape(const pf_attrs *attrs, int n_in, const pf_spec *in, int n_out,
                      pf_spec *out, pf_diag *diag) {
  (void)attrs;
  (void)n_in;
  (void)n_out;
  (void)diag;
  out[0] = in[0];
  return 0;
}

/* Queued on the device's stream and not waited for: the device reports
 * the op done when the stream has run it. */
static int copy_gpu(const pf_kernel_call *call) {
  cudaError_t err;
  if (call->stream == NULL)
    return pf_diag_error(call->diag, PF_EINVAL,
                         "user_copy on GPU device %d: call->stream is NULL; a GPU kernel "
                         "is given its device's cudaStream_t",
                         call->device);
  err = cudaMemcpyAsync(call->out[0].data, call->in[0].data, pf_spec_nbytes(&call->in[0].spec),
                        cudaMemcpyDeviceToDevice, (cudaStream_t)call->stream);
  if (err != cudaSuccess)
    return pf_diag_error(call->diag, PF_ESYS, "user_copy on GPU device %d: cudaMemcpyAsync: %s",
                         call->device, cudaGetErrorString(err));
  atomic_fetch_add(&gpu_calls, 1);
  return 0;
}

static int copy_cpu(const pf_kernel_call *call) {
  if (call->stream != NULL)
    return pf_diag_error(call->diag, PF_EINVAL,
                         "user_copy on CPU device %d: call->stream is %p; expected NULL",
                         call->device, call->stream);
  memcpy(call->out[0].data, call->in[0].data, pf_spec_nbytes(&call->in[0].spec));
  atomic_fetch_add(&cpu_calls, 1);
  return 0;
}

static const pf_kernel_def user_kernels[] = {
    {.name = "user_copy", .kind = PF_DEVICE_GPU, .n_in = 1, .n_out = 1, .shape = copy_shape,
     .sharding = pf_sharding_rule_elementwise, .compute = copy_gpu},
    {.name = "user_copy", .kind = PF_DEVICE_CPU, .n_in = 1, .n_out = 1, .shape = copy_shape,
     .sharding = pf_sharding_rule_elementwise, .compute = copy_cpu},
};

/* c = user_copy(x); y = 3c + c: the built-ins read the user kernel's
 * output on the same stream. x split by rows over n devices. */
static pf_executable *build(pf_device_kind kind, int n) {
  pf_graph *g;
  pf_slice_t s;
  pf_value_t x, c, t, y;
  pf_spec xs = pf_spec_2d(PF_F32, ROWS, COLS);
  pf_attrs *a;
  pf_executable *exe;
  OK(pf_graph_create(ctx, &g));
  OK(pf_graph_slice(g, kind, n, &s));
  OK(pf_graph_input(g, "x", &xs, s, n > 1 ? pf_split(0) : pf_replicated(), &x));
  OK(pf_graph_program(g, &(pf_program_desc){.kernel = "user_copy", .slice = s, .n_in = 1, .in = &x},
                      &c, NULL));
  OK(pf_attrs_create(&a));
  OK(pf_attrs_set_float(a, "alpha", 3));
  OK(pf_graph_program(g, &(pf_program_desc){.kernel = "scale", .attrs = a, .slice = s, .n_in = 1,
                                             .in = &c},
                      &t, NULL));
  pf_attrs_destroy(a);
  OK(pf_graph_program(g, &(pf_program_desc){.kernel = "add", .slice = s, .n_in = 2,
                                             .in = (pf_value_t[]){t, c}},
                      &y, NULL));
  OK(pf_graph_output(g, "c", c));
  OK(pf_graph_output(g, "y", y));
  OK(pf_compile(g, &exe));
  pf_graph_destroy(g);
  return exe;
}

static void user_kernel_on_gpu(void **state) {
  pf_spec xs = pf_spec_2d(PF_F32, ROWS, COLS);
  pf_tensor *x, *got[2][2];
  int n = n_gpus >= 2 ? 2 : 1;
  (void)state;
  OK(pf_tensor_create(&xs, &x));
  for (int64_t i = 0; i < pf_spec_numel(&xs); i++)
    ((float *)pf_tensor_data(x))[i] = (float)(i % 23 - 11);
  for (int k = 0; k < 2; k++) {
    pf_executable *exe = build(k == 0 ? PF_DEVICE_GPU : PF_DEVICE_CPU, k == 0 ? n : 1);
    pf_future *f;
    atomic_store(&gpu_calls, 0);
    atomic_store(&cpu_calls, 0);
    OK(pf_execute(exe, 1, &(pf_feed){.name = "x", .tensor = x}, &f));
    OK(pf_future_wait(f));
    OK(pf_future_fetch(f, "c", &got[k][0]));
    OK(pf_future_fetch(f, "y", &got[k][1]));
    pf_future_destroy(f);
    pf_executable_destroy(exe);
    /* Each twin ran where it belongs, once per device of the slice. */
    assert_int_equal(atomic_load(&gpu_calls), k == 0 ? n : 0);
    assert_int_equal(atomic_load(&cpu_calls), k == 0 ? 0 : 1);
  }
  for (int o = 0; o < 2; o++) {
    const float *a = pf_tensor_cdata(got[0][o]), *b = pf_tensor_cdata(got[1][o]);
    const float *xv = pf_tensor_cdata(x);
    for (int64_t i = 0; i < pf_spec_numel(&xs); i++)
      if (a[i] != b[i] || b[i] != xv[i] * (o == 0 ? 1 : 4))
        fail_msg("%s[%lld]: GPU %g, CPU %g, x %g", o == 0 ? "c" : "y", (long long)i,
                 (double)a[i], (double)b[i], (double)xv[i]);
    pf_tensor_destroy(got[0][o]);
    pf_tensor_destroy(got[1][o]);
  }
  pf_tensor_destroy(x);
}

int main(void) {
  const struct CMUnitTest tests[] = {cmocka_unit_test(user_kernel_on_gpu)};
  int n = 0, rc;
  if (cudaGetDeviceCount(&n) != cudaSuccess) n = 0;
  (void)cudaGetLastError();
  if (n == 0) {
    printf("SKIP test_cuda_user_kernel: no CUDA GPU visible; run scripts/gpu-check on a "
           "machine with one\n");
    return PF_TEST_SKIP;
  }
  setenv("PATHFLOW_CUDA", "1", 1);
  unsetenv("PATHFLOW_DEVICE_PLUGINS");
  unsetenv("PATHFLOW_LOOPBACK_RANKS");
  if ((rc = pf_init(NULL, NULL,
                    &(pf_init_options){.cpu_devices = 1, .kernels = user_kernels, .n_kernels = 2},
                    &ctx)) != 0) {
    /* A machine with a GPU must not skip: pf_init said why on stderr. */
    fprintf(stderr, "pf_init with PATHFLOW_CUDA=1 and %d GPUs: %s\n", n, pf_errname(rc));
    return 1;
  }
  n_gpus = pf_device_count(ctx, PF_DEVICE_GPU);
  printf("%d GPU devices\n", n_gpus);
  rc = cmocka_run_group_tests(tests, NULL, NULL);
  if (pf_finalize(ctx) != 0) return 1;
  return rc;
}
