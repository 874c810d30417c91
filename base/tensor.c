#include <stdlib.h>
#include <string.h>

#include "base/util.h"
#include "pathflow/error.h"
#include "pathflow/tensor.h"

struct pf_tensor {
  pf_spec spec;
  size_t nbytes;
  void *data;
};

int pf_tensor_create(const pf_spec *spec, pf_tensor **out) {
  pf_tensor *t;
  int rc;
  if (out == NULL) return PF_EINVAL;
  *out = NULL;
  if ((rc = pf_spec_check(spec)) != 0) return rc;
  t = calloc(1, sizeof *t);
  if (t == NULL) return PF_ENOMEM;
  t->spec = *spec;
  t->nbytes = pf_spec_nbytes(spec);
  t->data = pf_aligned_alloc(t->nbytes);
  if (t->data == NULL) {
    free(t);
    return PF_ENOMEM;
  }
  memset(t->data, 0, t->nbytes);
  *out = t;
  return 0;
}

int pf_tensor_from(const pf_spec *spec, const void *data, size_t nbytes,
                   pf_tensor **out) {
  int rc;
  if (out == NULL) return PF_EINVAL;
  *out = NULL;
  if ((rc = pf_spec_check(spec)) != 0) return rc;
  if (nbytes != pf_spec_nbytes(spec)) return PF_ESHAPE;
  if (data == NULL && nbytes != 0) return PF_EINVAL;
  if ((rc = pf_tensor_create(spec, out)) != 0) return rc;
  if (nbytes) memcpy((*out)->data, data, nbytes);
  return 0;
}

void pf_tensor_destroy(pf_tensor *t) {
  if (t == NULL) return;
  pf_aligned_free(t->data);
  free(t);
}

const pf_spec *pf_tensor_spec(const pf_tensor *t) { return &t->spec; }
void *pf_tensor_data(pf_tensor *t) { return t->data; }
const void *pf_tensor_cdata(const pf_tensor *t) { return t->data; }
size_t pf_tensor_nbytes(const pf_tensor *t) { return t->nbytes; }

/* ---- printing ------------------------------------------------------------------- */

static float half_to_float(uint16_t h) {
  uint32_t sign = (uint32_t)(h >> 15) << 31, exp = (h >> 10) & 0x1f, mant = h & 0x3ff, bits;
  float f;
  if (exp == 0) { /* zero or subnormal: mant * 2^-24 */
    f = (float)mant / 16777216.0f;
    return sign ? -f : f;
  }
  if (exp == 31)
    bits = sign | 0x7f800000u | (mant << 13); /* inf or nan */
  else
    bits = sign | ((exp + 112) << 23) | (mant << 13);
  memcpy(&f, &bits, sizeof f);
  return f;
}

/* Element i formatted into buf, as numpy would write it (%g for floats). */
static void format_element(const pf_tensor *t, int64_t i, char *buf, size_t len) {
  const void *p = (const char *)t->data + (size_t)i * pf_dtype_size(t->spec.dtype);
  double v = 0;
  switch (t->spec.dtype) {
    case PF_I32: snprintf(buf, len, "%d", *(const int32_t *)p); return;
    case PF_I64: snprintf(buf, len, "%lld", (long long)*(const int64_t *)p); return;
    case PF_U8: snprintf(buf, len, "%u", (unsigned)*(const uint8_t *)p); return;
    case PF_F32: v = *(const float *)p; break;
    case PF_F64: v = *(const double *)p; break;
    case PF_BF16: {
      uint32_t bits = (uint32_t)*(const uint16_t *)p << 16;
      float f;
      memcpy(&f, &bits, sizeof f);
      v = f;
      break;
    }
    case PF_F16: v = half_to_float(*(const uint16_t *)p); break;
    default: snprintf(buf, len, "?"); return;
  }
  snprintf(buf, len, "%.*g", t->spec.dtype == PF_F64 ? 10 : 6, v);
}

typedef struct printer {
  const pf_tensor *t;
  FILE *out;
  int summarize; /* show PF_TENSOR_PRINT_EDGE items at each end of long axes */
  int width;     /* of the widest element shown */
} printer;

/* The index along an axis of length n that position k of those shown
 * stands for, or -1 for the "..." in the middle. */
static int64_t shown(const printer *p, int64_t n, int64_t k, int64_t *count) {
  int64_t e = PF_TENSOR_PRINT_EDGE;
  if (!p->summarize || n <= 2 * e) {
    *count = n;
    return k;
  }
  *count = 2 * e + 1;
  return k < e ? k : k == e ? -1 : n - (2 * e + 1 - k);
}

/* Walks the elements shown: measures their width (out NULL) or prints. */
static void walk(printer *p, int axis, int64_t offset, int indent) {
  const pf_spec *s = &p->t->spec;
  int64_t count, stride = 1;
  char buf[48];
  if (s->rank == 0) {
    format_element(p->t, 0, buf, sizeof buf);
    if (p->out) fputs(buf, p->out); else if ((int)strlen(buf) > p->width) p->width = (int)strlen(buf);
    return;
  }
  for (int i = axis + 1; i < s->rank; i++) stride *= s->dims[i];
  if (p->out) fputc('[', p->out);
  shown(p, s->dims[axis], 0, &count);
  for (int64_t k = 0; k < count; k++) {
    int64_t i = shown(p, s->dims[axis], k, &count);
    if (k > 0 && p->out) {
      fputc(',', p->out);
      if (axis + 1 < s->rank) {
        for (int b = axis + 1; b < s->rank; b++) fputc('\n', p->out);
        fprintf(p->out, "%*s", indent + 1, "");
      } else {
        fputc(' ', p->out);
      }
    }
    if (i < 0) {
      if (p->out) fputs("...", p->out);
      continue;
    }
    if (axis + 1 < s->rank) {
      walk(p, axis + 1, offset + i * stride, indent + 1);
    } else {
      format_element(p->t, offset + i, buf, sizeof buf);
      if (p->out)
        fprintf(p->out, "%*s", p->width, buf);
      else if ((int)strlen(buf) > p->width)
        p->width = (int)strlen(buf);
    }
  }
  if (p->out) fputc(']', p->out);
}

int pf_tensor_print(const pf_tensor *t, FILE *out) {
  printer p = {.t = t};
  char spec[128];
  if (t == NULL || out == NULL) return PF_EINVAL;
  p.summarize = pf_spec_numel(&t->spec) > PF_TENSOR_PRINT_THRESHOLD;
  walk(&p, 0, 0, 0); /* widths */
  p.out = out;
  fprintf(out, "%s\n", pf_spec_str(&t->spec, spec, sizeof spec));
  walk(&p, 0, 0, 0);
  fputc('\n', out);
  return ferror(out) ? PF_ESYS : 0;
}
