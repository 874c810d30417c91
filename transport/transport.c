#include "transport/transport.h"

#include <stdio.h>
#include <stdlib.h>

void pf_transport_abort(pf_transport *t, int code, const char *why) {
  if (t != NULL) t->ops->abort(t, code, why);
  fprintf(stderr, "pathflow: %s; ending the process\n", why);
  fflush(stderr);
  abort();
}
