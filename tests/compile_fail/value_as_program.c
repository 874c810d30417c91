/* expect: pf_value_t.*pf_program_t|pf_program_t.*pf_value_t
 * The output value of a program where the program is wanted. */
#include <pathflow.h>

int build(pf_graph *g, pf_value_t x, pf_value_t y);

int build(pf_graph *g, pf_value_t x, pf_value_t y) {
  return pf_graph_set_input(g, y, 0, x);
}
