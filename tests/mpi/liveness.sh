#!/bin/sh
# Liveness must not declare a healthy rank dead. With PATHFLOW_RANK_TIMEOUT_S=2:
# 1. every rank of a job is stopped (SIGSTOP) for 4 s in the middle of a step,
#    then resumed (SIGCONT): the job must complete (it used to end with
#    "rank 0 lost": each checker blamed its peers for its own stall);
# 2. the last rank running a 5 s kernel keeps its heartbeats (the step
#    completes; the rank's peers do not declare it lost).
# A truly killed rank is still named: tests/mpi/death.sh.
set -u
mpirun=$1 exe=$2 plugin=$3 np=${4:-3}
out=$(mktemp)
trap 'rm -f "$out"' EXIT
timeout -k 10 120 "$mpirun" --oversubscribe --bind-to none -np "$np" -x PATHFLOW_CPU_DEVICES=1 \
  -x PATHFLOW_RANK_TIMEOUT_S=2 "$exe" "$plugin" test.sleep_shard 5000 >"$out" 2>&1 &
job=$!
# The ranks: processes under this job (timeout, mpirun, ranks) running $exe.
first_arg() { tr '\0' '\n' < "/proc/$1/cmdline" 2>/dev/null | head -1; }
ranks_pids=""
i=0
while [ "$i" -lt 300 ]; do
  ranks_pids=""
  for p in $(pgrep -P "$job"); do
    for q in $p $(pgrep -P "$p"); do
      [ "$(first_arg "$q")" = "$exe" ] && ranks_pids="$ranks_pids $q"
    done
  done
  [ "$(echo $ranks_pids | wc -w)" -ge "$np" ] && break
  sleep 0.1
  i=$((i + 1))
done
[ "$(echo $ranks_pids | wc -w)" -ge "$np" ] || { echo "FAIL: did not find the $np ranks"; exit 1; }
sleep 1.5
kill -STOP $ranks_pids
echo "stopped ranks (pids$ranks_pids) for 4 s"
sleep 4
kill -CONT $ranks_pids
wait "$job"
rc=$?
cat "$out"
[ "$rc" -eq 0 ] || { echo "FAIL: exit status $rc after a 4 s stop of every rank (timeout 2 s)"; exit 1; }
grep -q "step finished with PF_OK" "$out" || { echo "FAIL: the step did not finish"; exit 1; }
if grep -q "lost" "$out"; then echo "FAIL: a rank was declared lost"; exit 1; fi
echo "ok: $np ranks stopped for 4 s with a 2 s rank timeout, resumed, and completed"
