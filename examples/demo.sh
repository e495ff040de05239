#!/usr/bin/env bash
# `make demo`: two nodes on loopback and real calls between them.
set -euo pipefail
BUILD=${1:-build}
BIN="$BUILD/bin"
tmp=$(mktemp -d)
pids=()  # every process the demo starts; cleanup stops them all

# On any exit (normal end, error, Ctrl-C, SIGTERM): TERM what we started, give
# it up to ~5 s to go, then KILL what is left, and remove the scratch dir.
cleanup() {
  trap '' INT TERM  # a second Ctrl-C must not cut the cleanup short
  local p live=() left deadline=$((SECONDS + 5))
  # `jobs -p` also catches a process started but not yet recorded in pids.
  for p in "${pids[@]}" $(jobs -p); do
    kill -TERM "$p" 2>/dev/null && live+=("$p")
  done
  while ((${#live[@]})) && ((SECONDS < deadline)); do
    sleep 0.1
    left=()
    for p in "${live[@]}"; do kill -0 "$p" 2>/dev/null && left+=("$p"); done
    live=("${left[@]}")
  done
  for p in "${live[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT   # exit, so the EXIT trap runs cleanup
trap 'exit 143' TERM

# run CMD...: runs CMD to completion like a foreground command, but as a
# recorded child the script waits for, so a signal to the script is handled
# at once (bash defers traps until a foreground command ends) and cleanup
# also stops CMD.
run() {
  "$@" <&0 &
  local p=$!
  pids+=("$p")
  wait "$p"
}

start() {  # start NAME VAR: runs `broach node` on a free port, sets VAR to its address
  "$BIN/broach" node --ip 127.0.0.1 --port 0 --name "$1" --log-level warn >"$tmp/$1.out" 2>"$tmp/$1.err" &
  pids+=($!)
  for _ in $(seq 1 300); do
    grep -q "listening on" "$tmp/$1.out" 2>/dev/null && break
    sleep 0.02
  done
  printf -v "$2" '%s' "$(awk '/listening on/ {print $3}' "$tmp/$1.out")"
}

start node-a A
start node-b B
echo "== two nodes on loopback: A=$A B=$B"
echo
echo "== broach call --to $A add 1 2"
run "$BIN/broach" call --to "$A" add 1 2
echo "== broach call --to $B echo '{\"hello\": [1, 2, 3]}'"
run "$BIN/broach" call --to "$B" echo '{"hello": [1, 2, 3]}'
echo "== broach call --to $A work02 1 2   (nobody registered work02)"
run "$BIN/broach" call --to "$A" work02 1 2 || echo "   -> exit status $? (the call failed with a typed error)"
echo
echo "== a C++ node (examples/hello) calling A with typed arguments:"
run "$BIN/example_hello" "$A"

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
run "$BIN/seed_caller" "$DEMO/application3.json"
# Let the providers drain their queues (dropping work nobody waits for),
# then stop them and show what they ran.
run sleep 4
kill -TERM "$p1" "$p2"
wait "$p1" "$p2" 2>/dev/null || true
tail -n 1 "$tmp/p1.out" "$tmp/p2.out" | grep provider
