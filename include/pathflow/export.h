/* pathflow: which symbols the shared library exports.
 *
 * The library is built with hidden visibility: only declarations marked
 * PF_API are part of its ABI. tests/abi.sh checks that the exported symbols
 * are exactly the PF_API functions of the public headers.
 */
#ifndef PATHFLOW_EXPORT_H
#define PATHFLOW_EXPORT_H

#if defined(__GNUC__) || defined(__clang__)
#define PF_API __attribute__((visibility("default")))
#else
#define PF_API
#endif

#endif
