/* The hand-written half of bench/kernels: each built-in element loop as a
 * user would write it, in a file of its own (so that the benchmark cannot
 * inline it and see through the timing loop) compiled at -O3. */
#include "bench/kernels_loops.h"

void loop_add(float *o, const float *a, const float *b, int64_t n) {
  for (int64_t i = 0; i < n; i++) o[i] = a[i] + b[i];
}

void loop_mul(float *o, const float *a, const float *b, int64_t n) {
  for (int64_t i = 0; i < n; i++) o[i] = a[i] * b[i];
}

void loop_relu(float *o, const float *a, const float *b, int64_t n) {
  (void)b;
  for (int64_t i = 0; i < n; i++) o[i] = a[i] > 0 ? a[i] : 0;
}

void loop_sgd(float *o, const float *a, const float *b, int64_t n) {
  const float lr = 0.01f;
  for (int64_t i = 0; i < n; i++) o[i] = a[i] - lr * b[i];
}

void loop_bias_add(float *o, const float *a, const float *b, int64_t n) {
  const int64_t m = LOOP_BIAS_WIDTH;
  for (int64_t r = 0; r < n / m; r++)
    for (int64_t j = 0; j < m; j++) o[r * m + j] = a[r * m + j] + b[j];
}
