/* The control channel of the MPI transport, on 2 ranks: messages of every
 * size (inline frames and header plus body) arrive whole and in order, and
 * frames that are not pathflow's are refused with PF_EDECODE naming their
 * sender, while the channel goes on with the next frame. A header whose
 * body never comes stalls nothing: no call waits for it, other peers'
 * messages flow, and after 5 s only that frame is refused; its sender's
 * later messages follow, in order. */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/util.h"
#include "pathflow/error.h"
#include "transport/mpi.h"
#include "mpi_check.h"


/* Around the inline limit (8 KiB), and large enough for MPI's rendezvous. */
static const size_t sizes[] = {0, 1, 100, 8191, 8192, 8193, 100000, (size_t)3 << 20};
#define N_SIZES (sizeof sizes / sizeof *sizes)

static uint8_t *pattern(size_t n, unsigned seed) {
  uint8_t *b = malloc(n ? n : 1);
  CHECK(b != NULL);
  for (size_t i = 0; i < n; i++) b[i] = (uint8_t)(seed * 31u + i * 7u + (i >> 8));
  return b;
}

/* Polls until a message or a refusal (its reason in *why) comes. */
static int next(pf_mpi *m, int *peer, uint8_t **buf, size_t *len, pf_diag *why) {
  for (;;) {
    int rc;
    CHECK(pf_mpi_progress(m) >= 0);
    *peer = -1;
    pf_diag_init(why);
    rc = pf_mpi_ctrl_recv(m, peer, buf, len, why);
    if (rc != 0 || *buf != NULL) return rc;
  }
}

static void sender(pf_mpi *m) {
  MPI_Comm ctrl = pf_mpi_ctrl_comm(m);
  uint8_t unknown[3] = {7, 1, 2}, header[9] = {1}, body[50] = {0}, short_header[4] = {1, 0, 0, 0};
  uint64_t announced = 100;
  for (size_t k = 0; k < N_SIZES; k++)
    CHECK(pf_mpi_ctrl_send(m, 0, pattern(sizes[k], (unsigned)k), sizes[k]) == 0);
  /* An unknown frame byte; a large frame whose body is not the size its
   * header announces; a header of the wrong length. */
  CHECK(MPI_Send(unknown, 3, MPI_BYTE, 0, 0, ctrl) == MPI_SUCCESS);
  memcpy(header + 1, &announced, sizeof announced);
  CHECK(MPI_Send(header, 9, MPI_BYTE, 0, 0, ctrl) == MPI_SUCCESS);
  CHECK(MPI_Send(body, 50, MPI_BYTE, 0, 1, ctrl) == MPI_SUCCESS);
  CHECK(MPI_Send(short_header, 4, MPI_BYTE, 0, 0, ctrl) == MPI_SUCCESS);
  /* An inline frame longer than any pathflow sends, and one a byte longer
   * than the longest it sends: refused, not read cut short. */
  {
    static uint8_t big[9000], over[8194];
    CHECK(MPI_Send(big, sizeof big, MPI_BYTE, 0, 0, ctrl) == MPI_SUCCESS);
    CHECK(MPI_Send(over, sizeof over, MPI_BYTE, 0, 0, ctrl) == MPI_SUCCESS);
  }
  CHECK(pf_mpi_ctrl_send(m, 0, pattern(10, 99), 10) == 0);
  while (pf_mpi_pending(m) > 0) CHECK(pf_mpi_progress(m) >= 0);
}

static void receiver(pf_mpi *m) {
  static const char *reasons[5] = {"frame byte 7", "its body has 50", "4 bytes, frame byte 1",
                                   "more than 8193 bytes", "more than 8193 bytes"};
  uint8_t *buf, *want;
  size_t len;
  int peer;
  pf_diag why;
  for (size_t k = 0; k < N_SIZES; k++) {
    CHECK(next(m, &peer, &buf, &len, &why) == 0);
    want = pattern(sizes[k], (unsigned)k);
    CHECK(peer == 1);
    CHECK(len == sizes[k]);
    CHECK(memcmp(buf, want, len) == 0);
    free(want);
    free(buf);
  }
  for (int k = 0; k < 5; k++) {
    CHECK(next(m, &peer, &buf, &len, &why) == PF_EDECODE);
    CHECK(peer == 1);
    CHECK(buf == NULL);
    CHECK(strstr(why.msg, reasons[k]) != NULL); /* says what is wrong */
  }
  CHECK(next(m, &peer, &buf, &len, &why) == 0);
  want = pattern(10, 99);
  CHECK(peer == 1 && len == 10 && memcmp(buf, want, len) == 0);
  free(want);
  free(buf);
  printf("control channel: %zu messages of 0 B to 3 MiB whole and in order, "
         "5 foreign frames refused, the channel still in order after them\n",
         N_SIZES + 1);
}

/* A large-frame header whose body is never sent, then a real message. */
static void sender_forged(pf_mpi *m) {
  uint8_t header[9] = {1};
  uint64_t announced = 1000;
  memcpy(header + 1, &announced, sizeof announced);
  CHECK(MPI_Send(header, 9, MPI_BYTE, 0, 0, pf_mpi_ctrl_comm(m)) == MPI_SUCCESS);
  CHECK(pf_mpi_ctrl_send(m, 0, pattern(10, 77), 10) == 0);
  while (pf_mpi_pending(m) > 0) CHECK(pf_mpi_progress(m) >= 0);
}

static void receiver_forged(pf_mpi *m) {
  uint64_t t_start = pf_now_ns(), longest = 0, t_refused = 0, last_self = 0;
  int self_seen = 0, refused = 0;
  uint8_t *want = pattern(10, 77);
  /* This rank's own messages stand for the other peers: they must flow
   * while rank 1's body is owed. */
  CHECK(pf_mpi_ctrl_send(m, 0, pattern(5, 55), 5) == 0);
  for (;;) {
    uint8_t *buf;
    size_t len;
    int peer = -1, rc;
    pf_diag why;
    uint64_t t0 = pf_now_ns(), dt;
    pf_diag_init(&why);
    CHECK(pf_mpi_progress(m) >= 0);
    rc = pf_mpi_ctrl_recv(m, &peer, &buf, &len, &why);
    dt = pf_now_ns() - t0;
    if (dt > longest) longest = dt;
    if (rc == PF_EDECODE) {
      CHECK(peer == 1 && !refused);
      CHECK(strstr(why.msg, "did not come within") != NULL);
      refused = 1;
      t_refused = pf_now_ns();
      continue;
    }
    CHECK(rc == 0);
    if (buf == NULL) {
      /* Another message to itself every 10 ms while the body is owed. */
      if (!refused && last_self != 0 && pf_now_ns() - last_self > 10000000u) {
        CHECK(pf_mpi_ctrl_send(m, 0, pattern(5, 55), 5) == 0);
        last_self = 0;
      }
      continue;
    }
    if (peer == 0) {
      CHECK(len == 5);
      if (!refused) self_seen++;
      last_self = pf_now_ns();
      free(buf);
      continue;
    }
    /* Rank 1's message comes after the refusal of its header, in order. */
    CHECK(peer == 1 && refused);
    CHECK(len == 10 && memcmp(buf, want, len) == 0);
    free(buf);
    break;
  }
  while (pf_mpi_pending(m) > 0) CHECK(pf_mpi_progress(m) >= 0);
  free(want);
  /* The old channel waited for the body inside one call for 5 s. A call
   * here is microseconds; 1 s only catches a wait. */
  CHECK(longest < 1000000000u);
  CHECK(self_seen >= 2);
  CHECK(t_refused - t_start >= 4000000000u); /* the body was given its time */
  printf("body never sent: longest call %.3f ms, %d messages of another peer meanwhile, "
         "the header refused after %.1f s, its sender's next message then in order\n",
         (double)longest / 1e6, self_seen, (double)(t_refused - t_start) / 1e9);
}

int main(int argc, char **argv) {
  pf_mpi *m;
  pf_diag d;
  pf_diag_init(&d);
  CHECK(pf_mpi_init(&argc, &argv, &m, &d) == 0);
  CHECK(pf_mpi_size(m) == 2);
  if (pf_mpi_rank(m) == 1)
    sender(m);
  else
    receiver(m);
  CHECK(MPI_Barrier(MPI_COMM_WORLD) == MPI_SUCCESS);
  if (pf_mpi_rank(m) == 1)
    sender_forged(m);
  else
    receiver_forged(m);
  CHECK(MPI_Barrier(MPI_COMM_WORLD) == MPI_SUCCESS);
  pf_mpi_finalize(m);
  return 0;
}
