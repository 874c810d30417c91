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
