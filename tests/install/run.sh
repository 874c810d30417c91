#!/bin/sh
# Installs the build into a scratch prefix, then builds and runs an outside
# program against it twice: with pkg-config, and with find_package(pathflow).
set -eu
src=$1
build=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cmake --install "$build" --prefix "$tmp/prefix" >/dev/null
libdir=$(ls -d "$tmp"/prefix/lib*/ | head -1)
export LD_LIBRARY_PATH="$libdir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"

echo "== pkg-config"
PKG_CONFIG_PATH="$libdir/pkgconfig" pkg-config --cflags --libs pathflow
# shellcheck disable=SC2046
cc -std=c11 -Wall -Werror -o "$tmp/outside_pc" "$src/tests/install/outside.c" \
  $(PKG_CONFIG_PATH="$libdir/pkgconfig" pkg-config --cflags --libs pathflow)
"$tmp/outside_pc"

echo "== find_package(pathflow)"
cmake -S "$src/tests/install" -B "$tmp/outside" -DCMAKE_PREFIX_PATH="$tmp/prefix" >/dev/null
cmake --build "$tmp/outside" >/dev/null
"$tmp/outside/outside"
"$tmp/outside/outside_static"
