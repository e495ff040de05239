#!/usr/bin/env bash
# cmake --install into a scratch prefix, then build and run a separate
# project that does find_package(broach) and links broach::broach.
# usage: install_test.sh BUILD_DIR SOURCE_DIR
set -eu
BUILD=$1
SRC=$2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cmake --install "$BUILD" --prefix "$work/prefix" >/dev/null
test -f "$work/prefix/include/broach/broach.hpp"
test -x "$work/prefix/bin/broach"
cmake -S "$SRC/tests/install/consumer" -B "$work/build" -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_PREFIX_PATH="$work/prefix" >/dev/null
cmake --build "$work/build" >/dev/null
"$work/build/consumer"
"$work/prefix/bin/broach" --help >/dev/null
echo "installed package builds and runs"
