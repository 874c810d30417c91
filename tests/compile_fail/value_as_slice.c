/* expect: pf_value_t.*pf_slice_t|pf_slice_t.*pf_value_t
 * A value passed where pf_graph_input wants the slice it lives on. */
#include <pathflow.h>

int build(pf_graph *g, pf_value_t x);

int build(pf_graph *g, pf_value_t x) {
  pf_spec spec = pf_spec_1d(PF_F32, 4);
  pf_value_t y;
  return pf_graph_input(g, "y", &spec, x, pf_replicated(), &y);
}
