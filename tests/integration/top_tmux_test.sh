#!/usr/bin/env bash
# `broach top` in a real terminal (tmux): against two `broach node`s under a
# `broach bench` load it shows a row per member for "add" with calls/s, a
# key changes the sort at once, and q quits; without a terminal it prints
# plain tables. Skipped (77) where tmux is absent.
# usage: top_tmux_test.sh BIN_DIR
set -u
BIN=$1
command -v tmux >/dev/null || { echo "SKIP: tmux not installed"; exit 77; }
work=$(mktemp -d)
sock="broach-top-test-$$"
pids=()
cleanup() {
  tmux -L "$sock" kill-server 2>/dev/null
  for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null; done
  wait 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT
screen() { tmux -L "$sock" capture-pane -p -t top 2>/dev/null; }
fail() { echo "FAIL: $*"; echo "--- screen"; screen; for f in "$work"/*.out; do echo "--- $f"; tail -5 "$f"; done; exit 1; }

# shellcheck source=process_lib.sh
source "$(dirname "$0")/process_lib.sh"

start_node n1
seed=$addr
start_node n2 --seed "$seed"
other=$addr
routed=0
for _ in $(seq 1 1000); do
  n=$("$BIN/broach" routes --seed "$seed" --json 2>/dev/null |
      python3 -c 'import json,sys; print(len(json.load(sys.stdin).get("add", [])))' 2>/dev/null)
  [[ $n == 2 ]] && { routed=1; break; }
  sleep 0.01
done
[[ $routed == 1 ]] || fail "the seed never routed add to both nodes"
"$BIN/broach" bench --seed "$seed" --service add --args '[1,2]' --concurrency 2 --duration 60 \
  >"$work/bench.out" 2>&1 &
pids+=($!)

tmux -L "$sock" new-session -d -s top -x 160 -y 40 "$BIN/broach top --seed $seed --sort member" ||
  fail "tmux did not start"
# Both members' "add" rows with calls per second above 0 (20 s at most).
ok=0
for _ in $(seq 1 200); do
  rows=$(screen | awk -v a="$seed" -v b="$other" '$3 == "add" && ($1 == a || $1 == b) && $4 + 0 > 0 {print $1}' | sort -u | wc -l)
  [[ $rows == 2 ]] && { ok=1; break; }
  sleep 0.1
done
[[ $ok == 1 ]] || fail "top did not show both members serving add"
screen | grep -q "sort: member" || fail "the --sort flag is not shown"
# Sorted by member: the rows come in address order.
order=$(screen | awk '$3 == "add" {print $1}')
[[ $order == "$(printf '%s\n' "$order" | sort)" ]] || fail "rows not sorted by member: $order"
# A key re-sorts at once (no wait for the next refresh needed, but allow it).
tmux -L "$sock" send-keys -t top e
ok=0
for _ in $(seq 1 50); do screen | grep -q "sort: errors" && { ok=1; break; }; sleep 0.1; done
[[ $ok == 1 ]] || fail "key e did not sort by errors"
# q quits: the session ends with top.
tmux -L "$sock" send-keys -t top q
ok=0
for _ in $(seq 1 50); do tmux -L "$sock" has-session -t top 2>/dev/null || { ok=1; break; }; sleep 0.1; done
[[ $ok == 1 ]] || fail "q did not quit"

# Not a terminal: plain tables, one per refresh, no escape sequences.
"$BIN/broach" top --seed "$seed" --iterations 2 --interval 0.5 >"$work/plain.out" 2>&1 || fail "plain top failed"
[[ $(grep -c '^broach top' "$work/plain.out") == 2 ]] || fail "expected 2 tables: $(cat "$work/plain.out")"
grep -q $'\x1b' "$work/plain.out" && fail "escape sequences in plain output"
grep -q " add " "$work/plain.out" || fail "no add row in plain output: $(cat "$work/plain.out")"
echo "PASS: top showed both members, sorted, re-sorted on a key, quit on q; plain output without a terminal"
