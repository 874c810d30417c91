/* hello_graph: y = sum over rows of (x @ w), with the matmul split over two
 * devices by rows of x and the reduction on a third device. */
#include <pathflow.h>
#include <stdio.h>

#define CHECK(call)                                                      \
  do {                                                                   \
    int rc_ = (call);                                                    \
    if (rc_ != 0) {                                                      \
      fprintf(stderr, "%s failed: %s: %s\n", #call, pf_strerror(rc_),     \
              pf_last_error(ctx));                                       \
      return 1;                                                          \
    }                                                                    \
  } while (0)

int main(int argc, char **argv) {
  pf_context *ctx = NULL;
  pf_graph *g;
  pf_executable *exe;
  pf_future *fut;
  pf_tensor *x, *w, *y;
  pf_slice_t two, one;
  pf_value_t vx, vw, vxw, vy;
  pf_spec xs = pf_spec_2d(PF_F32, 4, 3), ws = pf_spec_2d(PF_F32, 3, 2);
  pf_sharding rows = pf_split(0);
  pf_attrs *axis0;

  CHECK(pf_init(&argc, &argv, NULL, &ctx));
  CHECK(pf_graph_create(ctx, &g));
  CHECK(pf_graph_slice(g, PF_DEVICE_CPU, 2, &two));
  CHECK(pf_graph_slice(g, PF_DEVICE_CPU, 1, &one));
  CHECK(pf_graph_input(g, "x", &xs, two, rows, &vx));
  CHECK(pf_graph_input(g, "w", &ws, two, pf_replicated(), &vw));
  /* Each device multiplies its two rows of x by the whole of w. */
  pf_program_desc mm = {.name = "matmul", .kernel = "matmul", .slice = two,
                        .n_in = 2, .in = (pf_value_t[]){vx, vw},
                        .out_shardings = &rows};
  CHECK(pf_graph_program(g, &mm, &vxw, NULL));
  /* The reduction gathers the row blocks onto the third device. */
  CHECK(pf_attrs_create(&axis0));
  CHECK(pf_attrs_set_int(axis0, "axis", 0));
  pf_program_desc sum = {.name = "colsum", .kernel = "reduce_sum",
                         .attrs = axis0, .slice = one, .n_in = 1, .in = &vxw};
  CHECK(pf_graph_program(g, &sum, &vy, NULL));
  pf_attrs_destroy(axis0);
  CHECK(pf_graph_output(g, "y", vy));
  CHECK(pf_compile(g, &exe));

  CHECK(pf_tensor_create(&xs, &x));
  CHECK(pf_tensor_create(&ws, &w));
  for (int i = 0; i < 12; i++) ((float *)pf_tensor_data(x))[i] = (float)i;
  for (int i = 0; i < 6; i++) ((float *)pf_tensor_data(w))[i] = (float)(i + 1);
  pf_feed feeds[] = {{.name = "x", .tensor = x}, {.name = "w", .tensor = w}};
  CHECK(pf_execute(exe, 2, feeds, &fut));
  CHECK(pf_future_wait(fut));
  CHECK(pf_future_fetch(fut, "y", &y));
  /* The same computation on the host; exact (small integers in f32). */
  const float *xd = pf_tensor_data(x), *wd = pf_tensor_data(w), *out = pf_tensor_data(y);
  float want[2] = {0, 0};
  for (int i = 0; i < 4; i++)
    for (int k = 0; k < 3; k++)
      for (int j = 0; j < 2; j++) want[j] += xd[i * 3 + k] * wd[k * 2 + j];
  int bad = out[0] != want[0] || out[1] != want[1];
  printf("y = colsum(x @ w) = [%g, %g] (expected [%g, %g]) on %d devices: %s\n",
         out[0], out[1], want[0], want[1], pf_device_count(ctx, PF_DEVICE_CPU),
         bad ? "WRONG" : "ok");

  pf_tensor_destroy(x);
  pf_tensor_destroy(w);
  pf_tensor_destroy(y);
  pf_future_destroy(fut);
  pf_executable_destroy(exe);
  pf_graph_destroy(g);
  return pf_finalize(ctx) != 0 || bad;
}
