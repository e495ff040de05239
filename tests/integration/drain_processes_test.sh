#!/usr/bin/env bash
# SIGTERM to one of three `broach node` providers while `broach bench --seed`
# keeps 4 calls in flight: the provider drains (keeps serving until the
# bench's refreshed routes stop sending to it, then refuses with a retryable
# "not run"), so no call fails, and it exits well within drainMs.
# usage: drain_processes_test.sh BIN_DIR
set -u
BIN=$1
work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null; done
  wait 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT
fail() { echo "FAIL: $*"; for f in "$work"/*.out "$work"/bench.json; do echo "--- $f"; tail -5 "$f"; done; exit 1; }

# shellcheck source=process_lib.sh
source "$(dirname "$0")/process_lib.sh"

"$BIN/broach" node --port 0 --log-level warn >"$work/n1.out" 2>&1 &
pids+=($!)
wait_line "$work/n1.out" "listening on" || fail "node 1 did not start"
seed=$(awk '/listening on/ {print $3; exit}' "$work/n1.out")
"$BIN/broach" node --port 0 --seed "$seed" --log-level warn >"$work/n2.out" 2>&1 &
pids+=($!)
"$BIN/broach" node --port 0 --seed "$seed" --log-level warn >"$work/n3.out" 2>&1 &
leaving=$!
pids+=($leaving)
wait_line "$work/n2.out" "listening on" || fail "node 2 did not start"
wait_line "$work/n3.out" "listening on" || fail "node 3 did not start"
leaving_addr=$(awk '/listening on/ {print $3; exit}' "$work/n3.out")
# All three must provide "add" in the seed's routes before the load starts.
routed=0
for _ in $(seq 1 1000); do
  n=$("$BIN/broach" routes --seed "$seed" --json 2>/dev/null |
      python3 -c 'import json,sys; print(len(json.load(sys.stdin).get("add", [])))' 2>/dev/null)
  [[ $n == 3 ]] && { routed=1; break; }
  sleep 0.01
done
[[ $routed == 1 ]] || fail "the seed never routed add to 3 providers"
"$BIN/broach" bench --seed "$seed" --service add --args '[1,2]' --concurrency 4 --duration 10 --json \
  >"$work/bench.json" 2>/dev/null &
bench=$!
pids+=($bench)
# Stop the provider once it has served a share of the load (300 requests:
# a moment in a release build, a few seconds of the 10 s run under
# ThreadSanitizer on a busy machine).
served=0
deadline=$(( $(date +%s) + 20 ))
while (( $(date +%s) < deadline )); do
  n=$("$BIN/broach" stats --seed "$leaving_addr" --json 2>/dev/null |
      python3 -c 'import json,sys; print(json.load(sys.stdin)["calls"]["requests_received"])' 2>/dev/null)
  [[ -n $n ]] && (( n > 300 )) && { served=1; break; }
  sleep 0.01
done
[[ $served == 1 ]] || fail "the provider never got the load"
t0=$(date +%s%N)
kill -TERM "$leaving"
# Bounded: a provider that never exits fails the test instead of hanging it.
for _ in $(seq 1 3000); do kill -0 "$leaving" 2>/dev/null || break; sleep 0.01; done
kill -0 "$leaving" 2>/dev/null && fail "the stopped provider did not exit within 30 s"
wait "$leaving"
rc=$?
took_ms=$(( ($(date +%s%N) - t0) / 1000000 ))
[[ $rc -eq 0 ]] || fail "the stopped provider exited with $rc"
(( took_ms < 5000 )) || fail "stop took ${took_ms} ms (drainMs is 5000)"
wait "$bench" || fail "broach bench failed"
python3 - "$work/bench.json" <<'PY' || fail "calls failed"
import json, sys
r = json.load(open(sys.argv[1]))
print(f"calls {r['calls']}, errors {r['errors']} {r['errors_by_kind']}, retried elsewhere {r['retried_elsewhere']}")
sys.exit(0 if r["errors"] == 0 and r["calls"] > 300 else 1)
PY
echo "provider drained in ${took_ms} ms; no call failed"
