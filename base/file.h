/* Internal: whole files read and written. */
#ifndef PF_BASE_FILE_H
#define PF_BASE_FILE_H

#include <stddef.h>
#include <stdint.h>

#include "base/diag.h"

/* Reads all of `path` into a new buffer (*buf, *len; the caller frees it;
 * one byte more is allocated and zeroed, so text can be read as a string).
 * Errors: PF_ESYS (the message names the file and the reason), PF_ENOMEM. */
int pf_file_read(const char *path, uint8_t **buf, size_t *len, pf_diag *d);

/* Writes parts[0..n) (lens[i] bytes each, one after the other) to `path`
 * so that a reader sees the old file or the whole new one, even across a
 * crash: a temporary file beside it ("<path>.tmp<pid>"), flushed and
 * fsync'd, renamed over it, and the directory fsync'd. Errors: PF_ESYS
 * (naming the file and the reason); the temporary file is removed. */
int pf_file_write_atomic(const char *path, const void *const *parts, const size_t *lens, int n,
                         pf_diag *d);

#endif
