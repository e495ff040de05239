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

echo
echo "== the seed's own example (examples/seed_demo): two providers and a caller from"
echo "   config files in the seed's format (application1/2/3.json), on ports 18080-18082"
DEMO=examples/seed_demo
"$BIN/seed_provider" "$DEMO/application1.json" >"$tmp/p1.out" 2>"$tmp/p1.err" &
p1=$!
pids+=($p1)
"$BIN/seed_provider" "$DEMO/application2.json" >"$tmp/p2.out" 2>"$tmp/p2.err" &
p2=$!
pids+=($p2)
for f in p1 p2; do
  for _ in $(seq 1 300); do grep -q ready "$tmp/$f.out" 2>/dev/null && break; sleep 0.02; done
  cat "$tmp/$f.out"
done
"$BIN/seed_caller" "$DEMO/application3.json"
# Let the providers drain their queues (dropping work nobody waits for),
# then stop them and show what they ran.
sleep 4
kill -TERM "$p1" "$p2"
wait "$p1" "$p2" 2>/dev/null || true
tail -n 1 "$tmp/p1.out" "$tmp/p2.out" | grep provider
