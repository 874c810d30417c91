/* The running library's version (include/pathflow/version.h). */
#include "pathflow/version.h"

#define PF_STR2(x) #x
#define PF_STR(x) PF_STR2(x)

unsigned pf_version(const char **text) {
  if (text)
    *text = PF_STR(PATHFLOW_VERSION_MAJOR) "." PF_STR(PATHFLOW_VERSION_MINOR) "." PF_STR(
        PATHFLOW_VERSION_PATCH);
  return PATHFLOW_VERSION_HEX;
}
