/* Internal: the gradient rules of the built-in kernels and collectives
 * (graph/grad_rules.c). They live in the graph layer because a rule builds
 * graph programs; kernels/ knows nothing of graphs. */
#ifndef PF_GRAPH_GRAD_RULES_H
#define PF_GRAPH_GRAD_RULES_H

#include "pathflow/grad.h"

/* The rule of built-in kernel (or collective) `kernel`, whatever the device
 * kind; NULL when it has none (argmax, sgd, fill, ...). */
pf_grad_fn pf_grad_builtin_rule(const char *kernel);

#endif
