/* expect: incompatible.*pf_value_t
 * A value given as a program's slice in its descriptor. (The compiler
 * names the slice's member here: a designated initializer may elide the
 * braces of pf_slice_t, so `.slice = 0` would only warn, -Wmissing-braces;
 * a value is refused outright.) */
#include <pathflow.h>

int build(pf_graph *g, pf_value_t x);

int build(pf_graph *g, pf_value_t x) {
  pf_value_t y;
  return pf_graph_program(
      g, &(pf_program_desc){.kernel = "relu", .slice = x, .n_in = 1, .in = &x}, &y, NULL);
}
