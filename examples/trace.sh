#!/bin/sh
# trace.sh MPIRUN EXAMPLE: runs EXAMPLE on 2 ranks with PATHFLOW_TRACE=1 and
# checks that the job leaves one timeline, pathflow-trace.json, holding both
# ranks, their named device rows and the user's step, and no per-rank parts.
set -eu
mpirun=$1
example=$2
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
"$mpirun" --oversubscribe -np 2 -x PATHFLOW_TRACE=1 -x PATHFLOW_TRACE_DIR="$dir" \
  -x PATHFLOW_CPU_DEVICES=1 "$example"
ls "$dir"
fail() { echo "FAIL: $*"; exit 1; }
[ -f "$dir/pathflow-trace.json" ] || fail "no pathflow-trace.json"
[ "$(ls "$dir")" = "pathflow-trace.json" ] || fail "per-rank files left beside it"
t="$dir/pathflow-trace.json"
for r in 0 1; do
  grep -q "\"name\":\"process_name\",\"ph\":\"M\",\"pid\":$r," "$t" || fail "rank $r not named"
  grep -q "\"pid\":$r,\"tid\":0,\"args\":{\"name\":\"device 0\"}" "$t" || fail "rank $r device row not named"
  grep -q "\"ph\":\"X\",\"pid\":$r," "$t" || fail "no events of rank $r"
done
grep -q '"args":{"step":1,' "$t" || fail "no event of the user's step 1"
tail -c 3 "$t" | od -c | grep -q ']' || fail "not a closed JSON array"
echo "PASS: one timeline for the job"
