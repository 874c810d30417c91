#!/bin/sh
# A kernel that never returns (here: sleeps an hour on the last rank). With
# PATHFLOW_WATCHDOG_S=1 and PATHFLOW_HANG_TIMEOUT_S=2 the watchdog reports
# after 1 s, and 2 s later the job must end with a non-zero status and a
# message naming the rank, the program and the kernel; it used to hang
# forever after the report.
set -u
mpirun=$1 exe=$2 plugin=$3 np=${4:-3}
out=$(mktemp)
trap 'rm -f "$out"' EXIT
start=$(date +%s)
timeout -k 10 120 "$mpirun" --oversubscribe --bind-to none -np "$np" -x PATHFLOW_CPU_DEVICES=1 \
  -x PATHFLOW_WATCHDOG_S=1 -x PATHFLOW_HANG_TIMEOUT_S=2 "$exe" "$plugin" test.sleep_shard 3600000 \
  >"$out" 2>&1
rc=$?
elapsed=$(( $(date +%s) - start ))
cat "$out"
last=$((np - 1))
if [ "$rc" -eq 0 ]; then echo "FAIL: the job exited 0"; exit 1; fi
if [ "$rc" -eq 124 ]; then echo "FAIL: the job hung (killed by timeout)"; exit 1; fi
line=$(grep "rank $last: hung:" "$out" | head -1)
[ -n "$line" ] || { echo "FAIL: no hang message from rank $last"; exit 1; }
echo "$line" | grep -q 'kernel "test.sleep_shard"' || { echo "FAIL: the message lacks the kernel"; exit 1; }
echo "$line" | grep -q 'program "slow"' || { echo "FAIL: the message lacks the program"; exit 1; }
# Ends after watchdog + limit (3 s); 60 s only catches a hang.
if [ "$elapsed" -gt 60 ]; then echo "FAIL: took ${elapsed}s to end"; exit 1; fi
echo "ok: the hung kernel ended the job in ${elapsed}s with status $rc"
