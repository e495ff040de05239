#!/usr/bin/env bash
# Fault test on real network namespaces (../shared/netlab): five `broach node`
# processes on five hosts with their own addresses.
#  1. 10% loss on every link for 30 s: no member is ever declared dead.
#  2. partition {h1,h2} / {h3,h4,h5}: each side declares the other dead;
#     heal: one cluster of five again.
# Exits 77 (skipped) where netlab cannot run (not root, no netns, no nft).
# usage: netlab_membership_test.sh BROACH_CLI NETLAB [LOSS_SECONDS]
set -u
CLI=$1
NETLAB=$2
LOSS_SECONDS=${3:-30}
export NETLAB_PREFIX=bm$$
"$NETLAB" check partition >/dev/null 2>&1 || { echo "netlab unavailable: skipping"; exit 77; }
"$NETLAB" check loss >/dev/null 2>&1 || { echo "netlab loss unavailable: skipping"; exit 77; }
work=$(mktemp -d)
cleanup() { "$NETLAB" down >/dev/null 2>&1; rm -rf "$work"; }
trap cleanup EXIT
fail() { echo "FAIL: $*"; for f in "$work"/n*.log; do echo "--- $f"; tail -n 20 "$f"; done; exit 1; }

"$NETLAB" up 5 >/dev/null || fail "netlab up"
for i in 1 2 3 4 5; do
  seed=()
  [ "$i" -gt 1 ] && seed=(--seed 10.99.0.1:7946)
  "$NETLAB" spawn "h$i" --log "$work/n$i.log" "$CLI" node --ip "10.99.0.$i" --port 7946 \
    --name "n$i" --log-level info "${seed[@]}" >/dev/null || fail "spawn h$i"
done

# view HOST: "addr state" lines of that host's own member's view.
view() {
  "$NETLAB" exec "$1" "$CLI" members --seed "10.99.0.${1#h}:7946" --json --timeout 2 2>/dev/null |
    python3 -c 'import json,sys
for m in json.load(sys.stdin): print(m["address"], m["state"])' 2>/dev/null
}
# count HOST STATE: how many members HOST sees in STATE.
count() { view "$1" | awk -v s="$2" '$2 == s' | wc -l; }
# wait_until SECONDS CMD...: polls CMD every second.
wait_until() {
  local limit=$1; shift
  for _ in $(seq 1 "$limit"); do "$@" && return 0; sleep 1; done
  "$@"
}
all_see() {  # all_see N: every host sees N alive
  for h in h1 h2 h3 h4 h5; do [ "$(count "$h" alive)" -eq "$1" ] || return 1; done
}

wait_until 60 all_see 5 || fail "five nodes did not converge"
echo "converged: 5 alive everywhere"

# 1. Loss on every link.
"$NETLAB" impair all loss 10% >/dev/null || fail "impair"
end=$((SECONDS + LOSS_SECONDS))
while [ $SECONDS -lt $end ]; do
  for h in h1 h2 h3 h4 h5; do
    d=$(count "$h" dead)
    [ "$d" -eq 0 ] || fail "$h declared $d member(s) dead under 10% loss"
  done
  sleep 5
done
"$NETLAB" clear all >/dev/null
if grep -h " is dead" "$work"/n*.log; then fail "a member was declared dead under 10% loss"; fi
echo "10% loss for ${LOSS_SECONDS}s: no member declared dead"

# 2. Partition and heal.
"$NETLAB" partition h1,h2 / h3,h4,h5 >/dev/null || fail "partition"
side_dead() { [ "$(count h1 dead)" -eq 3 ] && [ "$(count h3 dead)" -eq 2 ]; }
wait_until 60 side_dead || fail "the two sides did not declare each other dead"
echo "partitioned: each side sees the other dead"
"$NETLAB" heal >/dev/null || fail "heal"
wait_until 90 all_see 5 || fail "the cluster did not merge after heal"
echo "healed: one cluster of five again"
exit 0
