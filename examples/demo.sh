#!/usr/bin/env bash
# `make demo`: two nodes on loopback and real calls between them.
set -euo pipefail
BUILD=${1:-build}
BIN="$BUILD/bin"
tmp=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$tmp"; }
trap cleanup EXIT

start() {  # start NAME: runs `broach node` on a free port, prints its address
  "$BIN/broach" node --ip 127.0.0.1 --port 0 --name "$1" --log-level warn >"$tmp/$1.out" 2>"$tmp/$1.err" &
  pids+=($!)
  for _ in $(seq 1 300); do
    grep -q "listening on" "$tmp/$1.out" 2>/dev/null && break
    sleep 0.02
  done
  awk '/listening on/ {print $3}' "$tmp/$1.out"
}

A=$(start node-a)
B=$(start node-b)
echo "== two nodes on loopback: A=$A B=$B"
echo
echo "== broach call --to $A add 1 2"
"$BIN/broach" call --to "$A" add 1 2
echo "== broach call --to $B echo '{\"hello\": [1, 2, 3]}'"
"$BIN/broach" call --to "$B" echo '{"hello": [1, 2, 3]}'
echo "== broach call --to $A work02 1 2   (nobody registered work02)"
"$BIN/broach" call --to "$A" work02 1 2 || echo "   -> exit status $? (the call failed with a typed error)"
echo
echo "== a C++ node (examples/hello) calling A with typed arguments:"
"$BIN/example_hello" "$A"
