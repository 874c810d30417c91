/* expect: pf_value_t.*pf_slice_t|pf_slice_t.*pf_value_t
 * A slice marked as an output, as if it were a value. */
#include <pathflow.h>

int build(pf_graph *g, pf_slice_t s);

int build(pf_graph *g, pf_slice_t s) { return pf_graph_output(g, "y", s); }
