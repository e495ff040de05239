#!/usr/bin/env bash
# Lifeguard's case with real processes: 20 `broach node` processes on
# loopback; one of them is starved — SIGSTOP for 2 s out of every 10 (its
# loop stalls; the datagrams sent to it wait in its socket buffer) — for
# DURATION seconds (default 40; docs/membership.md quotes a 600 s run).
# 2 s is less than the suspicion timeout at 20 members (2.6 s at least), so:
#   - no other member is ever declared dead (by anyone, the starved one
#     included, although it wakes up to find all its probes timed out);
#   - the starved member is at worst suspected, never declared dead.
# Checked from every node's log at the end; the counts are printed.
# usage: starvation_processes_test.sh BIN_DIR [DURATION]
set -u
BIN=$1
DURATION=${2:-40}
N=20
work=$(mktemp -d)
pids=()
cleanup() {
  {
    for p in "${pids[@]}"; do kill -CONT "$p"; kill -KILL "$p"; done
    wait
  } 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT
fail() { echo "FAIL: $*"; for f in "$work"/n1.out "$work"/n2.out; do echo "--- $f"; tail -5 "$f"; done; exit 1; }
wait_line() {  # wait_line FILE PATTERN: 10 s at most
  for _ in $(seq 1 1000); do grep -q "$2" "$1" 2>/dev/null && return 0; sleep 0.01; done
  return 1
}

"$BIN/broach" node --port 0 --name n1 --log-level info >"$work/n1.out" 2>&1 &
pids+=($!)
wait_line "$work/n1.out" "^listening on" || fail "node 1 did not start"
seed=$(awk '/^listening on/ {print $3; exit}' "$work/n1.out")
for i in $(seq 2 $N); do
  "$BIN/broach" node --port 0 --seed "$seed" --name "n$i" --log-level info >"$work/n$i.out" 2>&1 &
  pids+=($!)
done
for i in $(seq 2 $N); do wait_line "$work/n$i.out" "^listening on" || fail "node $i did not start"; done
starved_pid=${pids[4]}
starved_addr=$(awk '/^listening on/ {print $3; exit}' "$work/n5.out")
all_alive() {
  local n
  n=$("$BIN/broach" members --seed "$seed" --json --timeout 2 2>/dev/null |
      python3 -c 'import json,sys; print(sum(m["state"] == "alive" for m in json.load(sys.stdin)))' 2>/dev/null)
  [ "${n:-0}" -eq $N ]
}
end=$((SECONDS + 60))
until all_alive; do [ $SECONDS -lt $end ] || fail "$N nodes did not converge"; sleep 0.2; done
# Count only what happens from here.
for i in $(seq 1 $N); do wc -l <"$work/n$i.out" >"$work/n$i.mark"; done

cycles=$((DURATION / 10))
for _ in $(seq 1 $cycles); do
  kill -STOP "$starved_pid"
  sleep 2
  kill -CONT "$starved_pid"
  sleep 8
done
sleep 3  # the last stall's suspicions run out or are refuted

python3 - "$work" "$N" "$starved_addr" "$cycles" <<'PY' || fail "false deaths"
import sys
work, n, starved, cycles = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
dead_other = dead_starved = suspect_other = suspect_starved = refuted = 0
examples = []
for i in range(1, n + 1):
    skip = int(open(f"{work}/n{i}.mark").read())
    for line in open(f"{work}/n{i}.out", errors="replace").readlines()[skip:]:
        if " is dead" in line:
            if starved in line:
                dead_starved += 1
            else:
                dead_other += 1
            examples.append(f"n{i}: {line.strip()}")
        elif " is suspect" in line:
            if starved in line:
                suspect_starved += 1
            else:
                suspect_other += 1
        elif "refut" in line:
            refuted += 1
print(f"{cycles} stalls of 2 s: the starved member was suspected {suspect_starved} times (by any member), "
      f"declared dead {dead_starved} times; other members suspected {suspect_other} times, "
      f"declared dead {dead_other} times")
for e in examples[:10]:
    print("  ", e)
sys.exit(1 if dead_other or dead_starved else 0)
PY
echo "no false deaths"
