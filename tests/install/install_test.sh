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
# The Python package, when it was built: installed where Debian's python3
# looks (for the prefix /usr: /usr/lib/python3/dist-packages).
pydir="$work/prefix/lib/python3/dist-packages"
if compgen -G "$BUILD/python/_broach*.so" >/dev/null; then
  compgen -G "$pydir/_broach*.so" >/dev/null
  PYTHONPATH="$pydir" /usr/bin/python3 -c '
import broach, BroachRpc, threadPool.BroachPool
from BroachRpc.common import GlobalVariable
with broach.Node(json="{\"logLevel\":\"warn\",\"params\":{\"rpcIp\":\"127.0.0.1\",\"rpcPort\":0}}") as n:
    n.provide("add", lambda a, b: a + b)
    assert n.call("add", 1, 2, to=n.address) == 3
'
  echo "installed Python package imports and calls"
fi
echo "installed package builds and runs"
