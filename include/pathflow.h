/* pathflow: an MPMD distributed dataflow runtime.
 *
 * The one header a user includes. See docs/api.md for a guided tour.
 */
#ifndef PATHFLOW_H
#define PATHFLOW_H

#include "pathflow/version.h"
#include "pathflow/error.h"
#include "pathflow/types.h"
#include "pathflow/tensor.h"
#include "pathflow/attrs.h"
#include "pathflow/kernel.h"
#include "pathflow/context.h"
#include "pathflow/graph.h"
#include "pathflow/grad.h"
#include "pathflow/execute.h"
#include "pathflow/counters.h"

#endif
