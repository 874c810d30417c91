#!/bin/sh
# Installs the build into a scratch (non-system) prefix, then builds and runs
# an outside program against it twice: with pkg-config, and with
# find_package(pathflow). Then runs the installed pathflow-worker from that
# prefix with no LD_LIBRARY_PATH: alone (--help), and as rank 1 of an MPMD job.
set -eu
src=$1
build=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cmake --install "$build" --prefix "$tmp/prefix" >/dev/null
libdir=$(ls -d "$tmp"/prefix/lib*/ | head -1)

echo "== pkg-config"
PKG_CONFIG_PATH="$libdir/pkgconfig" pkg-config --cflags --libs pathflow
# shellcheck disable=SC2046
cc -std=c11 -Wall -Werror -o "$tmp/outside_pc" "$src/tests/install/outside.c" \
  $(PKG_CONFIG_PATH="$libdir/pkgconfig" pkg-config --cflags --libs pathflow)
LD_LIBRARY_PATH="$libdir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" "$tmp/outside_pc"

echo "== find_package(pathflow)"
version=$(sed -n 's/^#define PATHFLOW_VERSION_\(MAJOR\|MINOR\|PATCH\) *\([0-9]*\).*/\2/p' \
  "$src/include/pathflow/version.h" | paste -sd.)
cmake -S "$src/tests/install" -B "$tmp/outside" -DCMAKE_PREFIX_PATH="$tmp/prefix" \
  -DPF_WANT="$version" >/dev/null
# The package's version check: another major.minor is refused.
if cmake -S "$src/tests/install" -B "$tmp/refused" -DCMAKE_PREFIX_PATH="$tmp/prefix" \
  -DPF_WANT=99.0 >"$tmp/refused.log" 2>&1; then
  echo "FAIL: find_package(pathflow 99.0) accepted version $version"; exit 1
fi
grep -q "pathflow" "$tmp/refused.log" || { cat "$tmp/refused.log"; exit 1; }
echo "find_package(pathflow $version) found it; find_package(pathflow 99.0) refused"
cmake --build "$tmp/outside" >/dev/null
"$tmp/outside/outside"
"$tmp/outside/outside_static"

echo "== installed pathflow-worker, no LD_LIBRARY_PATH"
worker="$tmp/prefix/bin/pathflow-worker"
# The loader must find libpathflow through the worker's own RUNPATH.
env -u LD_LIBRARY_PATH "$worker" --help >/dev/null ||
  { echo "FAIL: $worker does not start:"; env -u LD_LIBRARY_PATH "$worker" --help; exit 1; }
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
env -u LD_LIBRARY_PATH mpirun --oversubscribe -np 1 "$tmp/outside/outside_static" \
  : -np 1 "$worker"
echo "PASS"
