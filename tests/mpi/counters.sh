#!/bin/sh
# PATHFLOW_COUNTERS=1 prints every rank's counters at pf_finalize, one block
# per rank, named, in rank order, with the one transfer hello_graph makes
# (rank 1 sends its partial row sums, 2 f64, to rank 0).
# Usage: counters.sh MPIRUN HELLO_GRAPH
set -u
mpirun=$1 exe=$2
out=$(mktemp)
trap 'rm -f "$out"' EXIT
PATHFLOW_COUNTERS=1 timeout -k 10 120 "$mpirun" --oversubscribe --bind-to none -np 2 \
  -x PATHFLOW_CPU_DEVICES=1 -x PATHFLOW_COUNTERS "$exe" >"$out" 2>&1
rc=$?
cat "$out"
[ "$rc" -eq 0 ] || { echo "FAIL: the job exited $rc"; exit 1; }
blocks=$(grep -c '^pathflow counters: rank [01]$' "$out")
[ "$blocks" -eq 2 ] || { echo "FAIL: $blocks counter blocks, expected 2"; exit 1; }
# Rank 0's block comes first, then rank 1's.
first=$(grep -m1 '^pathflow counters: rank' "$out")
[ "$first" = "pathflow counters: rank 0" ] || { echo "FAIL: blocks out of rank order"; exit 1; }
sed -n '/^pathflow counters: rank 1$/,$p' "$out" |
  grep -q 'peer rank 0: data 16 bytes sent (1 messages)' ||
  { echo "FAIL: rank 1's block does not show its 16-byte send to rank 0"; exit 1; }
sed -n '/^pathflow counters: rank 0$/,/^pathflow counters: rank 1$/p' "$out" |
  grep -q 'peer rank 1: data 0 bytes sent (0 messages), 16 received (1)' ||
  { echo "FAIL: rank 0's block does not show the 16 bytes from rank 1"; exit 1; }
echo "ok: every rank's counters, named, in rank order"
