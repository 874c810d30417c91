#!/bin/sh
# The graph ids of pathflow/graph.h are distinct types: misusing one must not
# compile. Usage: run.sh CC INCLUDE_DIR [DIR]
# control.c must compile cleanly (-Wall -Wextra -Werror), so that the
# headers and flags are known good; every other DIR/*.c must fail to compile
# even without -Werror, with a diagnostic line matching the extended regex
# after "expect:" in the file (the types involved: gcc names them in the note
# under the error, clang in the error), so that it fails for that reason and
# not another.
set -u
cc=$1
inc=$2
dir=${3:-$(dirname "$0")}
flags="-std=c11 -fsyntax-only -I$inc"
fail=0
tmp=$(mktemp)
trap 'rm -f "$tmp"' EXIT

# shellcheck disable=SC2086
if ! "$cc" $flags -Wall -Wextra -Werror "$dir/control.c" >"$tmp" 2>&1; then
  cat "$tmp"
  echo "FAIL: control.c does not compile: the other results would mean nothing"
  exit 1
fi
echo "ok: control.c compiles"

n=0
for f in "$dir"/*.c; do
  name=$(basename "$f")
  [ "$name" = control.c ] && continue
  n=$((n + 1))
  want=$(sed -n 's/^.*expect: //p' "$f" | head -1)
  if [ -z "$want" ]; then
    echo "FAIL: $name has no 'expect:' line"; fail=1; continue
  fi
  # shellcheck disable=SC2086
  if "$cc" $flags "$f" >"$tmp" 2>&1; then
    echo "FAIL: $name compiled; it must not"; fail=1
  elif ! grep -q "error" "$tmp" || ! grep -Eq "$want" "$tmp"; then
    cat "$tmp"
    echo "FAIL: $name failed, but no error matches /$want/"; fail=1
  else
    echo "ok: $name refused: $(grep -E -m1 "$want" "$tmp")"
  fi
done
[ "$n" -gt 0 ] || { echo "FAIL: no cases in $dir"; exit 1; }
exit $fail
