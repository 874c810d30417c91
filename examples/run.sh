#!/bin/sh
# run.sh EXPECT COMMAND...: runs an example (alone or under mpirun) and passes
# when it exits 0 and its output has a line matching EXPECT (a grep -E
# pattern). ctest's PASS_REGULAR_EXPRESSION alone would ignore the exit code.
set -u
expect=$1; shift
out=$("$@" 2>&1); rc=$?
printf '%s\n' "$out"
if [ "$rc" -ne 0 ]; then echo "FAIL: exit status $rc: $*"; exit 1; fi
if ! printf '%s\n' "$out" | grep -Eq "$expect"; then
  echo "FAIL: no line matches '$expect'"; exit 1
fi
echo "PASS"
