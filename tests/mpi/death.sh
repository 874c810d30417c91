#!/bin/sh
# kill -9 of one rank (rank NP-1, from inside a kernel) must end the whole
# job with a non-zero status and a message naming the lost rank, within a
# bounded time (PATHFLOW_RANK_TIMEOUT_S, here 5 s, is the backstop; mpirun
# usually notices first).
set -u
mpirun=$1 exe=$2 plugin=$3 np=${4:-4}
out=$(mktemp)
trap 'rm -f "$out"' EXIT
start=$(date +%s)
timeout -k 10 60 "$mpirun" --oversubscribe --bind-to none -np "$np" -x PATHFLOW_CPU_DEVICES=1 \
  -x PATHFLOW_RANK_TIMEOUT_S=5 "$exe" "$plugin" >"$out" 2>&1
rc=$?
elapsed=$(( $(date +%s) - start ))
cat "$out"
lost=$((np - 1))
if [ "$rc" -eq 0 ]; then echo "FAIL: the job exited 0 after rank $lost died"; exit 1; fi
if [ "$rc" -eq 124 ]; then echo "FAIL: the job hung (killed by timeout)"; exit 1; fi
if ! grep -q "rank $lost" "$out"; then echo "FAIL: no message names rank $lost"; exit 1; fi
if [ "$elapsed" -gt 30 ]; then echo "FAIL: took ${elapsed}s to end"; exit 1; fi
echo "ok: rank $lost died, the job ended in ${elapsed}s with status $rc"
