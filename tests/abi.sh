#!/bin/sh
# Checks that the shared library exports exactly the public API: every
# function declared PF_API in include/pathflow/*.h, and nothing else (no
# internal layer, no protobuf-c code, no stray helper). Usage: abi.sh SRC LIB
set -eu
src=$1
lib=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
sed -n 's/^PF_API [^(]*[ *]\(pf_[a-z0-9_]*\)(.*/\1/p' "$src"/include/pathflow/*.h |
  sort -u >"$tmp/declared"
nm -D --defined-only "$lib" | awk '$2 ~ /^[TtWwDdBbRrVvIi]$/ { print $3 }' |
  grep -v '^_' | sort -u >"$tmp/exported"
[ -s "$tmp/declared" ] || { echo "FAIL: no PF_API declaration found"; exit 1; }
fail=0
extra=$(comm -13 "$tmp/declared" "$tmp/exported")
missing=$(comm -23 "$tmp/declared" "$tmp/exported")
if [ -n "$extra" ]; then
  echo "FAIL: exported but not declared PF_API in a public header:"
  echo "$extra" | sed 's/^/  /'
  fail=1
fi
if [ -n "$missing" ]; then
  echo "FAIL: declared PF_API but not exported (undefined, or static?):"
  echo "$missing" | sed 's/^/  /'
  fail=1
fi
[ $fail -eq 0 ] && echo "abi: $(wc -l <"$tmp/exported") exported symbols, all of them public API"
exit $fail
