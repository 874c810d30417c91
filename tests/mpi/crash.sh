#!/bin/sh
# A kernel that crashes its process on the last rank (SIGSEGV, abort(),
# SIGFPE, SIGBUS, SIGILL, each in turn)
# must end the job with a non-zero status and a line from pathflow's signal
# handler naming the rank, the signal, the kernel, the program, the shard and
# the step, not only Open MPI's backtrace without symbols.
set -u
mpirun=$1 exe=$2 plugin=$3 np=${4:-3}
out=$(mktemp)
trap 'rm -f "$out"' EXIT
last=$((np - 1))
for case in "test.segv_shard SIGSEGV" "test.abort_shard SIGABRT" "test.fpe_shard SIGFPE" \
  "test.bus_shard SIGBUS" "test.ill_shard SIGILL"; do
  kernel=${case% *} sig=${case#* }
  start=$(date +%s)
  timeout -k 10 120 "$mpirun" --oversubscribe --bind-to none -np "$np" -x PATHFLOW_CPU_DEVICES=1 \
    "$exe" "$plugin" "$kernel" >"$out" 2>&1
  rc=$?
  cat "$out"
  if [ "$rc" -eq 0 ]; then echo "FAIL: $kernel: the job exited 0"; exit 1; fi
  # 124: SIGTERM ended it; a hung mpirun that ignores SIGTERM is killed at
  # 130 s (137, which is also a rank's SIGKILL: told apart by the time).
  if [ "$rc" -eq 124 ] || [ $(( $(date +%s) - start )) -ge 120 ]; then
    echo "FAIL: $kernel: the job hung (killed by timeout)"; exit 1
  fi
  line=$(grep "pathflow: rank $last: $sig" "$out" | head -1)
  [ -n "$line" ] || { echo "FAIL: $kernel: no $sig report from rank $last"; exit 1; }
  for want in "kernel \"$kernel\"" 'program "slow"' "shard $last of $np" 'step [0-9]'; do
    echo "$line" | grep -q "$want" || { echo "FAIL: the report lacks $want"; exit 1; }
  done
  echo "ok: $line"
done
