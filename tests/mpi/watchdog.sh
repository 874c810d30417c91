#!/bin/sh
# With PATHFLOW_WATCHDOG_S=1, a step stalled for 3.5 s on the last rank must
# make every rank report what it waits on, then finish normally.
set -u
mpirun=$1 exe=$2 plugin=$3 np=${4:-3}
out=$(mktemp)
trap 'rm -f "$out"' EXIT
timeout -k 10 120 "$mpirun" --oversubscribe --bind-to none -np "$np" -x PATHFLOW_CPU_DEVICES=1 \
  -x PATHFLOW_WATCHDOG_S=1 "$exe" "$plugin" >"$out" 2>&1
rc=$?
cat "$out"
[ "$rc" -eq 0 ] || { echo "FAIL: exit status $rc"; exit 1; }
grep -q "step finished with PF_OK" "$out" || { echo "FAIL: the step did not finish"; exit 1; }
r=0
while [ "$r" -lt "$np" ]; do
  grep -q "pathflow watchdog: rank $r:" "$out" || { echo "FAIL: rank $r printed no report"; exit 1; }
  r=$((r + 1))
done
grep -q "waits on\|waiting for" "$out" || { echo "FAIL: the report says nothing of what waits"; exit 1; }
# The stalled rank's allgather is queued behind its kernel; the others'
# is issued.
grep -q 'collective "gather" of step [0-9]*: waiting for its input' "$out" ||
  { echo "FAIL: the stalled rank does not name its queued collective"; exit 1; }
grep -q 'collective "gather" (allgather) issued' "$out" ||
  { echo "FAIL: no rank names its issued collective"; exit 1; }
echo "ok: every rank reported what it waits on"
