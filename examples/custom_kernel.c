/* custom_kernel: a user kernel, "saxpy" (out = a*x + y), run over 2 devices. */
#include <pathflow.h>
#include <stdio.h>

/* On error, print the call, the code and the context's message; exit 1. */
#define CHECK(call)                                                         \
  do {                                                                      \
    int rc_ = (call);                                                       \
    if (rc_ != 0) return fprintf(stderr, "%s: %s: %s\n", #call,             \
                                 pf_strerror(rc_), pf_last_error(ctx)), 1;  \
  } while (0)

/* Shape: called as the graph is built, on shard specs. x and y must have the
 * same f32 spec, which is also the output's. */
static int saxpy_shape(const pf_attrs *attrs, int n_in, const pf_spec *in,
                       int n_out, pf_spec *out, pf_diag *d) {
  char xs[64], ys[64];
  if (in[0].dtype != PF_F32 || in[1].dtype != PF_F32)
    return pf_diag_error(d, PF_EDTYPE, "saxpy takes f32 inputs");
  if (!pf_spec_equal(&in[0], &in[1]))
    return pf_diag_error(d, PF_ESHAPE, "x is %s but y is %s",
                         pf_spec_str(&in[0], xs, sizeof xs), pf_spec_str(&in[1], ys, sizeof ys));
  out[0] = in[0];
  return 0;
}

/* Cost of one shard: per element, 2 flops and 12 bytes (x, y read; out written). */
static void saxpy_cost(const pf_attrs *attrs, int n_in, const pf_spec *in,
                       int n_out, const pf_spec *out, pf_cost *cost) {
  cost->flops = 2.0 * (double)pf_spec_numel(&in[0]);
  cost->bytes = 12.0 * (double)pf_spec_numel(&in[0]);
}

/* Compute: runs on a device's worker thread, on that device's shard. */
static int saxpy_compute(const pf_kernel_call *c) {
  float a = (float)pf_attrs_get_float(c->attrs, "a", 1.0);
  const float *x = c->in[0].data, *y = c->in[1].data;
  float *out = c->out[0].data;
  for (int64_t i = 0; i < pf_spec_numel(&c->out[0].spec); i++) out[i] = a * x[i] + y[i];
  return 0;
}

int main(int argc, char **argv) {
  pf_context *ctx = NULL;
  pf_graph *g;
  pf_attrs *attrs;
  pf_executable *exe;
  pf_future *fut;
  pf_tensor *x, *y, *r;
  pf_slice_t two;
  pf_value_t vx, vy, vz, vout;
  pf_spec spec = pf_spec_1d(PF_F32, 8), half = pf_spec_1d(PF_F32, 4);
  pf_sharding halves = pf_split(0); /* device i holds elements [4i, 4i+4) */
  float a = 2.5f, xd[8], yd[8];
  /* Register the kernel through pf_init's options, not pf_kernel_register
   * after pf_init: under mpirun, ranks other than 0 serve inside pf_init and
   * never reach the code after it, so a kernel registered there would exist
   * on rank 0 only and pf_compile would refuse any plan that runs it on
   * another rank. */
  pf_kernel_def def = {.name = "saxpy", .kind = PF_DEVICE_CPU, .n_in = 2, .n_out = 1,
                       .shape = saxpy_shape, .cost = saxpy_cost, .compute = saxpy_compute};
  pf_init_options opts = {.kernels = &def, .n_kernels = 1};
  CHECK(pf_init(&argc, &argv, &opts, &ctx));
  /* One saxpy program on a 2-device slice, reading inputs split the same way
   * (so nothing moves) and writing an output split the same way. */
  CHECK(pf_graph_create(ctx, &g));
  CHECK(pf_graph_slice(g, PF_DEVICE_CPU, 2, &two));
  CHECK(pf_graph_input(g, "x", &spec, two, halves, &vx));
  CHECK(pf_graph_input(g, "y", &spec, two, halves, &vy));
  CHECK(pf_attrs_create(&attrs));
  CHECK(pf_attrs_set_float(attrs, "a", a));
  pf_program_desc p = {.kernel = "saxpy", .attrs = attrs, .slice = two, .n_in = 2,
                       .in = (pf_value_t[]){vx, vy}, .out_shardings = &halves};
  CHECK(pf_graph_program(g, &p, &vout, NULL));
  CHECK(pf_graph_output(g, "out", vout));
  CHECK(pf_compile(g, &exe)); /* the executable no longer needs the graph */
  /* The shape function refuses a mismatch as soon as the program is added. */
  CHECK(pf_graph_input(g, "z", &half, two, halves, &vz));
  p.in = (pf_value_t[]){vx, vz};
  int bad = pf_graph_program(g, &p, &vout, NULL) != PF_ESHAPE;
  printf("saxpy(x, z) refused: %s\n", pf_last_error(ctx));
  pf_attrs_destroy(attrs); /* programs keep their own copy */
  pf_graph_destroy(g);
  /* Feed host tensors (copied in by pf_execute), run, fetch the gathered result. */
  for (int i = 0; i < 8; i++) xd[i] = (float)i, yd[i] = (float)(10 * i);
  CHECK(pf_tensor_from(&spec, xd, sizeof xd, &x));
  CHECK(pf_tensor_from(&spec, yd, sizeof yd, &y));
  pf_feed feeds[] = {{.name = "x", .tensor = x}, {.name = "y", .tensor = y}};
  CHECK(pf_execute(exe, 2, feeds, &fut));
  pf_tensor_destroy(x), pf_tensor_destroy(y);
  CHECK(pf_future_wait(fut));
  CHECK(pf_future_fetch(fut, "out", &r));

  /* Check against the same computation on the host. */
  const float *out = pf_tensor_cdata(r);
  printf("saxpy a=%g on 2 devices:", a);
  for (int i = 0; i < 8; i++) printf(" %g", out[i]);
  for (int i = 0; i < 8; i++) bad |= out[i] != a * xd[i] + yd[i]; /* exact: small values */
  printf(bad ? "  WRONG\n" : "  ok\n");
  pf_tensor_destroy(r);
  pf_future_destroy(fut);
  pf_executable_destroy(exe);
  return pf_finalize(ctx) != 0 || bad;
}
