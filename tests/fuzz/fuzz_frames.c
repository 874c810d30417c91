/* libFuzzer: the control channel's frame layer (transport/mpi.c) on hostile
 * frames, under a real MPI (a singleton: this process is rank 0 of 1).
 *
 * Each input is a series of frames that rank 0 sends itself on the control
 * communicator, in order: one byte (bit 0: the control tag or the body tag
 * that follows a large frame's header), two bytes of length (little endian,
 * at most 12000: past the 8193 bytes of the longest inline frame, so frames
 * too long for the control receive are generated too), then the frame. Then
 * pf_mpi_progress and pf_mpi_ctrl_recv run until nothing more comes.
 *
 * Beyond no crash, leak or hang: the channel never breaks (PF_EMPI), a
 * refused frame comes with a message naming its sender, and every message
 * delivered is one that was sent whole: the payload of an inline frame, or
 * a body of the size its header announced. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/diag.h"
#include "pathflow/error.h"
#include "transport/mpi.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The transport's wire constants (transport/mpi.c). */
#define CTRL_TAG 0
#define CTRL_BODY_TAG 1
#define CTRL_INLINE 8192
#define FRAME_INLINE 0
#define MAX_FRAMES 64

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  int provided;
  /* Sends to self complete at once (eager) up to this size, so an input's
   * sends never wait for a receive that the frames do not call for. */
  setenv("OMPI_MCA_btl_self_eager_limit", "65536", 1);
  if (MPI_Init_thread(argc, argv, MPI_THREAD_SERIALIZED, &provided) != MPI_SUCCESS) abort();
  /* Open MPI allocates some things once, on first use, and keeps them: let
   * that happen here, not inside the first input, where the leak check
   * would take them for a leak. */
  {
    static const uint8_t warm[] = {0, 4, 0, FRAME_INLINE, 'a', 'b', 'c',
                                   0, 9, 0, 1,  3,   0,   0, 0, 0, 0, 0,
                                   1, 3, 0, 'x', 'y', 'z'};
    for (int i = 0; i < 2; i++) LLVMFuzzerTestOneInput(warm, sizeof warm);
  }
  return 0;
}

/* 1 if buf[0..len) is the payload of an inline frame or a body frame. */
static int was_sent(const uint8_t *buf, size_t len, const uint8_t *const *frames,
                    const int *lens, const int *tags, int n) {
  for (int i = 0; i < n; i++) {
    const uint8_t *p = frames[i];
    size_t plen = (size_t)lens[i];
    if (tags[i] == CTRL_TAG) {
      if (plen < 1 || p[0] != FRAME_INLINE) continue;
      p++, plen--;
    }
    if (plen == len && (len == 0 || memcmp(p, buf, len) == 0)) return 1;
  }
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const uint8_t *frames[MAX_FRAMES];
  int lens[MAX_FRAMES], tags[MAX_FRAMES], n = 0, delivered = 0;
  MPI_Request reqs[MAX_FRAMES];
  pf_mpi *m = NULL;
  pf_diag d;
  size_t at = 0;
  pf_diag_init(&d);
  if (pf_mpi_init(NULL, NULL, &m, &d) != 0) abort();
  while (n < MAX_FRAMES && at + 3 <= size) {
    int len = data[at + 1] | data[at + 2] << 8;
    if (len > 12000) len = 12000;
    if ((size_t)len > size - at - 3) len = (int)(size - at - 3);
    tags[n] = data[at] & 1 ? CTRL_BODY_TAG : CTRL_TAG;
    frames[n] = data + at + 3;
    lens[n] = len;
    if (MPI_Isend(frames[n], len, MPI_BYTE, 0, tags[n], pf_mpi_ctrl_comm(m), &reqs[n]) !=
        MPI_SUCCESS)
      abort();
    at += 3 + (size_t)len;
    n++;
  }
  /* Everything sent is here after a few polls; a body announced and never
   * sent stays owed (its 5 s deadline is not waited for). */
  for (int quiet = 0, k = 0; quiet < 8 && k < 8 * n + 64; k++) {
    uint8_t *buf = NULL;
    size_t len = 0;
    int peer = -1, rc;
    if (pf_mpi_progress(m) < 0) abort();
    pf_diag_init(&d);
    rc = pf_mpi_ctrl_recv(m, &peer, &buf, &len, &d);
    if (rc == PF_EMPI) abort(); /* a peer's frame broke the channel */
    if (rc != 0) {
      if (d.msg[0] == '\0' || buf != NULL) abort();
      if (rc != PF_ENOMEM && peer != 0) abort();
      quiet = 0;
    } else if (buf != NULL) {
      if (peer != 0 || !was_sent(buf, len, frames, lens, tags, n) || ++delivered > n) abort();
      free(buf);
      quiet = 0;
    } else {
      quiet++;
    }
  }
  for (int i = 0; i < n; i++) MPI_Wait(&reqs[i], MPI_STATUS_IGNORE);
  pf_mpi_finalize(m);
  return 0;
}
