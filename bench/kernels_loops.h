/* bench/kernels' hand-written loops: o = f(a, b) over n floats. */
#ifndef PF_BENCH_KERNELS_LOOPS_H
#define PF_BENCH_KERNELS_LOOPS_H

#include <stdint.h>

/* bias_add's rows: x [n / WIDTH, WIDTH] + b [WIDTH]. */
#define LOOP_BIAS_WIDTH 256

void loop_add(float *o, const float *a, const float *b, int64_t n);
void loop_mul(float *o, const float *a, const float *b, int64_t n);
void loop_relu(float *o, const float *a, const float *b, int64_t n);
void loop_sgd(float *o, const float *a, const float *b, int64_t n);
void loop_bias_add(float *o, const float *a, const float *b, int64_t n);

#endif
