#!/usr/bin/env bash
# Fault test on real network namespaces (../shared/netlab): a keyed cluster
# of five `broach node` processes on five hosts, 2% loss on every link, a
# steady call load from a sixth process that is a member (`broach bench
# --join`), and while it runs: install a new key, make it primary, remove
# the old one (`broach keys`). Every member applies every step; the load has
# 0 failed calls; afterwards the old key is refused by every node and the
# new one works everywhere.
# Exits 77 (skipped) where netlab cannot run (not root, no netns, no nft).
# usage: netlab_keys_test.sh BROACH_CLI NETLAB
set -u
CLI=$1
NETLAB=$2
export NETLAB_PREFIX=bk$$
"$NETLAB" check loss >/dev/null 2>&1 || { echo "netlab loss unavailable: skipping"; exit 77; }
work=$(mktemp -d)
cleanup() { "$NETLAB" down >/dev/null 2>&1; rm -rf "$work"; }
trap cleanup EXIT
fail() { echo "FAIL: $*"; for f in "$work"/*.log "$work"/*.out; do [ -f "$f" ] && { echo "--- $f"; tail -n 20 "$f"; }; done; exit 1; }

"$CLI" keygen > "$work/old.key" || fail "keygen"
"$CLI" keygen > "$work/new.key" || fail "keygen"
old=$(grep -v '^#' "$work/old.key" | head -n 1)
new=$(grep -v '^#' "$work/new.key" | head -n 1)

"$NETLAB" up 5 >/dev/null || fail "netlab up"
for i in 1 2 3 4 5; do
  cp "$work/old.key" "$work/ring$i"  # each node writes its own ring back
  seed=()
  [ "$i" -gt 1 ] && seed=(--seed 10.99.0.1:7946)
  "$NETLAB" spawn "h$i" --log "$work/n$i.log" "$CLI" node --ip "10.99.0.$i" --port 7946 \
    --name "n$i" --log-level info --keyring "$work/ring$i" "${seed[@]}" >/dev/null || fail "spawn h$i"
done

# alive HOST KEYFILE: how many members HOST's node sees alive.
alive() {
  "$NETLAB" exec "$1" "$CLI" members --seed "10.99.0.${1#h}:7946" --keyring "$2" --json --timeout 2 2>/dev/null |
    python3 -c 'import json,sys
print(sum(1 for m in json.load(sys.stdin) if m["state"] == "alive"))' 2>/dev/null || echo 0
}
wait_until() {  # wait_until SECONDS CMD...: polls CMD every second
  local limit=$1; shift
  for _ in $(seq 1 "$limit"); do "$@" && return 0; sleep 1; done
  "$@"
}
all_see() {  # all_see N KEYFILE
  for h in h1 h2 h3 h4 h5; do [ "$(alive "$h" "$2")" -eq "$1" ] || return 1; done
}
wait_until 60 all_see 5 "$work/old.key" || fail "five keyed nodes did not converge"
echo "converged: 5 keyed members"

"$NETLAB" impair all loss 2% >/dev/null || fail "impair"
# The load: a member on h1 calling add on every provider, 4 in flight.
cp "$work/old.key" "$work/ring-bench"
"$NETLAB" exec h1 "$CLI" bench --seed 10.99.0.2:7946 --join --ip 10.99.0.1 --keyring "$work/ring-bench" \
  --service add --args '[1,2]' --concurrency 4 --duration 600 --json > "$work/bench.out" 2> "$work/bench.log" &
bench=$!
wait_until 30 all_see 6 "$work/old.key" || fail "the load generator did not join"
echo "load running"
sleep 3  # let calls run under the old key first (not a wait for a condition)

# step OP KEY KEYFILE: run `broach keys` and check all six members applied it.
step() {
  "$NETLAB" exec h3 "$CLI" keys "$1" "$2" --seed 10.99.0.3:7946 --keyring "$3" --timeout 3 > "$work/step.out" 2>&1 ||
    fail "keys $1 failed: $(cat "$work/step.out")"
  n=$(grep -c 'applied' "$work/step.out")
  [ "$n" -eq 6 ] || fail "keys $1: $n of 6 members applied it: $(cat "$work/step.out")"
  echo "keys $1: applied by all 6 members"
}
step install "$new" "$work/old.key"
sleep 2
step use "$new" "$work/old.key"
sleep 2
step remove "$old" "$work/new.key"

# The load runs until told to stop (600 s is only a bound): it must outlast
# the three rotations however slow this machine is today.
kill -INT "$bench"
wait "$bench" || fail "bench exited with $?"
python3 - "$work/bench.out" <<'EOF' || fail "the load saw failed calls"
import json, sys
r = json.load(open(sys.argv[1]))
print(f"load: {r['ok']} calls ok, {r['errors']} failed {r['errors_by_kind']}")
sys.exit(0 if r["errors"] == 0 and r["ok"] > 1000 else 1)
EOF
"$NETLAB" clear all >/dev/null

# The old key no longer opens anywhere; the new one works everywhere.
for i in 1 2 3 4 5; do
  "$NETLAB" exec h2 "$CLI" call --to "10.99.0.$i:7946" --keyring "$work/old.key" --timeout 1 add 1 2 >/dev/null 2>&1
  rc=$?
  [ "$rc" -eq 3 ] || fail "n$i answered a call sealed with the removed key (exit $rc)"
  out=$("$NETLAB" exec h2 "$CLI" call --to "10.99.0.$i:7946" --keyring "$work/new.key" --timeout 2 add 1 2) ||
    fail "n$i refused the new key"
  [ "$out" = "3" ] || fail "n$i: add 1 2 = $out"
  grep -q "$old" "$work/ring$i" && fail "n$i's keyring file still holds the removed key"
done
echo "old key refused by all 5 nodes; new key works on all 5; rings written back"
exit 0
