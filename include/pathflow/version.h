/* pathflow: the library's version.
 *
 * The PATHFLOW_VERSION_* macros give the version a program was compiled
 * against; pf_version() the version of the library it runs with. CMake reads
 * its project version from this file, so the two cannot disagree.
 * Versions with the same major and minor numbers are ABI compatible
 * (the CMake package accepts the same major.minor only).
 */
#ifndef PATHFLOW_VERSION_H
#define PATHFLOW_VERSION_H

#include "export.h"

#ifdef __cplusplus
extern "C" {
#endif

#define PATHFLOW_VERSION_MAJOR 0
#define PATHFLOW_VERSION_MINOR 1
#define PATHFLOW_VERSION_PATCH 0
/* The version as one number, major * 10000 + minor * 100 + patch, for
 * compile-time comparisons. */
#define PATHFLOW_VERSION_HEX                                                   \
  (PATHFLOW_VERSION_MAJOR * 10000 + PATHFLOW_VERSION_MINOR * 100 +             \
   PATHFLOW_VERSION_PATCH)

/* Returns the running library's version as PATHFLOW_VERSION_HEX encodes it;
 * *text (if text is not NULL) is set to "major.minor.patch", a static string
 * the caller does not free. Never fails. */
PF_API unsigned pf_version(const char **text);

#ifdef __cplusplus
}
#endif

#endif
