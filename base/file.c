#include "base/file.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int pf_file_read(const char *path, uint8_t **buf, size_t *len, pf_diag *d) {
  FILE *f = fopen(path, "rb");
  uint8_t *b = NULL;
  size_t n = 0, cap = 0;
  if (f == NULL) return pf_diag_error(d, PF_ESYS, "cannot read %s: %s", path, strerror(errno));
  for (;;) {
    size_t got;
    if (cap - n < 65536) {
      uint8_t *nb = realloc(b, cap = cap ? 2 * cap : 65536);
      if (nb == NULL) {
        free(b);
        fclose(f);
        return pf_diag_error(d, PF_ENOMEM, "reading %s: out of memory", path);
      }
      b = nb;
    }
    got = fread(b + n, 1, cap - n - 1, f);
    n += got;
    if (got == 0) break;
  }
  if (ferror(f)) {
    int e = errno;
    free(b);
    fclose(f);
    return pf_diag_error(d, PF_ESYS, "reading %s: %s", path, strerror(e));
  }
  fclose(f);
  b[n] = 0;
  *buf = b;
  *len = n;
  return 0;
}

static int sync_dir_of(const char *path) {
  char copy[4096];
  int fd, rc;
  snprintf(copy, sizeof copy, "%s", path);
  fd = open(dirname(copy), O_RDONLY | O_DIRECTORY);
  if (fd < 0) return -1;
  rc = fsync(fd);
  close(fd);
  return rc;
}

int pf_file_write_atomic(const char *path, const void *const *parts, const size_t *lens, int n,
                         pf_diag *d) {
  char tmp[4200];
  FILE *f;
  int e, ok = 1;
  if (snprintf(tmp, sizeof tmp, "%s.tmp%d", path, (int)getpid()) >= (int)sizeof tmp)
    return pf_diag_error(d, PF_ESYS, "cannot write %s: path too long", path);
  if ((f = fopen(tmp, "wb")) == NULL)
    return pf_diag_error(d, PF_ESYS, "cannot write %s: %s", tmp, strerror(errno));
  for (int i = 0; i < n && ok; i++) ok = lens[i] == 0 || fwrite(parts[i], lens[i], 1, f) == 1;
  if (!ok || fflush(f) != 0 || fsync(fileno(f)) != 0) {
    e = errno;
    fclose(f);
    unlink(tmp);
    return pf_diag_error(d, PF_ESYS, "writing %s: %s", tmp, strerror(e));
  }
  fclose(f);
  if (rename(tmp, path) != 0 || sync_dir_of(path) != 0) {
    e = errno;
    unlink(tmp);
    return pf_diag_error(d, PF_ESYS, "cannot write %s: %s", path, strerror(e));
  }
  return 0;
}
