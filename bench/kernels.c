/* kernels: the built-in CPU kernels' element loops against the same loops
 * written by hand, in one run.
 *
 * Each kernel is called directly (its compute function, no executor, no
 * dispatch) on warm buffers of N floats, beside a hand-written C loop of
 * the same arithmetic (bench/kernels_loops.c, compiled at -O3 in a file of
 * its own: what a user's own code gets from the compiler). Every figure
 * is the median of R calls; the bytes are the inputs' and the output's,
 * as the kernels' cost functions count them. The outputs of both are
 * compared element by element before anything is timed.
 *
 * Why this exists: `add` looped over a[i * stride] with strides known only
 * at run time, was not vectorized, and ran at a third of this loop's rate
 * for months, unseen (it set the memory bandwidth the simulator's
 * calibration measures, too).
 *
 * Usage: kernels [-r REPS (101)]
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/diag.h"
#include "base/util.h"
#include "bench/kernels_loops.h"
#include "kernels/registry.h"
#include "pathflow.h"

typedef void (*loop_fn)(float *o, const float *a, const float *b, int64_t n);

static const struct {
  const char *kernel;
  int n_in;
  loop_fn loop;
} cases[] = {
    {"add", 2, loop_add},   {"mul", 2, loop_mul},           {"relu", 1, loop_relu},
    {"sgd", 2, loop_sgd},   {"bias_add", 2, loop_bias_add},
};

static const int64_t sizes[] = {16384, 262144, 1048576, 4194304};

static int reps = 101;

static float *floats(int64_t n, unsigned seed) {
  float *p = pf_aligned_alloc((size_t)n * sizeof *p);
  if (p == NULL) {
    fprintf(stderr, "kernels: out of memory\n");
    exit(1);
  }
  srand(seed);
  for (int64_t i = 0; i < n; i++) p[i] = (float)(rand() % 2001 - 1000) * 1e-3f;
  return p;
}

/* Times case c at n floats (t: room for 2 * reps times); prints its row. Returns 0, or 1 if the kernel
 * is missing, fails, or disagrees with the loop. */
static int run_case(pf_registry *reg, int c, int64_t n, double *t) {
  const pf_kernel *k = pf_registry_find(reg, cases[c].kernel, PF_DEVICE_CPU);
  int64_t nb = strcmp(cases[c].kernel, "bias_add") == 0 ? LOOP_BIAS_WIDTH : n;
  float *a = floats(n, 1), *b = floats(nb, 2), *o = floats(n, 3), *want = floats(n, 4);
  pf_view in[2], out;
  pf_kernel_call call;
  pf_diag d;
  double pf_ns, loop_ns, bytes;
  int rc = 0;
  if (k == NULL) {
    fprintf(stderr, "kernels: %s is not registered\n", cases[c].kernel);
    return 1;
  }
  in[0] = (pf_view){.spec = nb == n ? pf_spec_1d(PF_F32, n) : pf_spec_2d(PF_F32, n / nb, nb), .data = a};
  in[1] = (pf_view){.spec = pf_spec_1d(PF_F32, nb), .data = b};
  out = (pf_view){.spec = in[0].spec, .data = o};
  memset(&call, 0, sizeof call);
  call.n_in = cases[c].n_in;
  call.in = in;
  call.n_out = 1;
  call.out = &out;
  call.num_shards = 1;
  call.user = k->def.user;
  call.diag = &d;
  pf_diag_init(&d);
  cases[c].loop(want, a, b, n);
  if (k->def.compute(&call) != 0) {
    fprintf(stderr, "kernels: %s failed: %s\n", cases[c].kernel, d.msg);
    rc = 1;
  }
  for (int64_t i = 0; i < n && rc == 0; i++)
    if (!(fabsf(o[i] - want[i]) <= 1e-6f * fmaxf(1.0f, fabsf(want[i])))) {
      fprintf(stderr, "kernels: %s element %lld: %g, the loop gives %g\n", cases[c].kernel,
              (long long)i, (double)o[i], (double)want[i]);
      rc = 1;
    }
  /* Alternated call by call, into the same output: the machine's drift
   * and the output's pages are the same for both. */
  for (int r = 0; r < reps && rc == 0; r++) {
    uint64_t t0 = pf_now_ns(), t1;
    k->def.compute(&call);
    t1 = pf_now_ns();
    cases[c].loop(o, a, b, n);
    t[r] = (double)(t1 - t0);
    t[reps + r] = (double)(pf_now_ns() - t1);
  }
  pf_ns = pf_median(t, (size_t)reps);
  loop_ns = pf_median(t + reps, (size_t)reps);
  bytes = 4.0 * (double)(2 * n + (cases[c].n_in == 2 ? nb : 0));
  if (rc == 0)
    printf("%-9s %9lld %11.2f %9.1f %11.2f %9.1f %7.2f\n", cases[c].kernel, (long long)n,
           pf_ns * 1e-3, bytes / pf_ns, loop_ns * 1e-3, bytes / loop_ns, pf_ns / loop_ns);
  pf_aligned_free(a);
  pf_aligned_free(b);
  pf_aligned_free(o);
  pf_aligned_free(want);
  return rc;
}

int main(int argc, char **argv) {
  pf_registry *reg;
  double *t;
  int opt, rc = 0;
  while ((opt = getopt(argc, argv, "r:")) != -1) {
    if (opt == 'r' && atoi(optarg) >= 1 && atoi(optarg) <= 100000) {
      reps = atoi(optarg);
    } else {
      fprintf(stderr, "usage: %s [-r REPS (101), 1 to 100000]\n", argv[0]);
      return 2;
    }
  }
  if (pf_registry_create(&reg) != 0 || pf_builtin_kernels_register(reg) != 0 ||
      (t = calloc(2 * (size_t)reps, sizeof *t)) == NULL) {
    fprintf(stderr, "kernels: cannot set up the built-in kernels\n");
    return 1;
  }
  printf("# kernels: built-in CPU kernels called directly against hand-written loops (-O3), "
         "f32, median of %d calls\n", reps);
  printf("%-9s %9s %11s %9s %11s %9s %7s\n", "kernel", "floats", "pathflow_us", "GB/s", "loop_us",
         "GB/s", "ratio");
  for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++)
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) rc |= run_case(reg, (int)c, sizes[s], t);
  printf("#   ratio: pathflow's time over the loop's (1 or less: as fast as a loop written by hand)\n");
  free(t);
  pf_registry_destroy(reg);
  return rc;
}
