/* expect: int.*pf_value_t|pf_value_t.*int
 * A bare index where a value is wanted: ids are made explicitly,
 * (pf_value_t){3}, never converted from an int. */
#include <pathflow.h>

int build(pf_graph *g);

int build(pf_graph *g) { return pf_graph_output(g, "y", 3); }
