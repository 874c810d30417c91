/* Internal: splitmix64's finalizer, the core of the counter-based
 * generators (init_uniform, batch_rows' order).
 *
 * A header of its own, callable from CUDA device code as well as from C,
 * so that the CUDA kernels (cuda/) draw exactly the numbers the CPU
 * kernels draw: one definition, no copy to drift.
 */
#ifndef PF_BASE_MIX64_H
#define PF_BASE_MIX64_H

#include <stdint.h>

#ifdef __CUDACC__
#define PF_HOST_DEVICE __host__ __device__
#else
#define PF_HOST_DEVICE
#endif

/* A bijective mix of a 64-bit counter. */
static inline PF_HOST_DEVICE uint64_t pf_mix64(uint64_t x) {
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ull;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

#endif
