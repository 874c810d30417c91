/* Must compile, warning-free: every call the failing files get wrong, made
 * with the right ids. If this fails, the failures of the others prove
 * nothing (a missing header, a bad flag), and run.sh says so. */
#include <pathflow.h>

int build(pf_context *ctx);

int build(pf_context *ctx) {
  pf_graph *g;
  pf_slice_t s;
  pf_value_t x, y;
  pf_program_t p;
  pf_spec spec = pf_spec_1d(PF_F32, 4);
  int rc;
  if ((rc = pf_graph_create(ctx, &g)) != 0) return rc;
  if ((rc = pf_graph_slice(g, PF_DEVICE_CPU, 1, &s)) == 0 &&
      (rc = pf_graph_input(g, "x", &spec, s, pf_replicated(), &x)) == 0 &&
      (rc = pf_graph_program(g,
                             &(pf_program_desc){.kernel = "relu", .slice = s,
                                                .n_in = 1, .in = &x},
                             &y, &p)) == 0 &&
      (rc = pf_graph_set_input(g, p, 0, x)) == 0 &&
      (rc = pf_graph_control(g, p, p)) == 0 &&
      (rc = pf_graph_output(g, "y", (pf_value_t){1})) == 0)
    rc = pf_graph_program_slice(g, p, &s);
  pf_graph_destroy(g);
  return rc;
}
