#!/usr/bin/env bash
# IPv6 on real network namespaces (../shared/netlab): netlab gives its hosts
# IPv4 addresses; this test adds fd99::I/64 to each host's eth0 and runs
# three `broach node` processes on those IPv6 addresses only.
#  1. they join through one seed ([fd99::1]:7946) and every host sees three
#     alive members, by their IPv6 addresses;
#  2. a call by name from h3 (`broach call --seed`) is answered;
#  3. partition h3 from {h1,h2}: each side declares the other dead; heal: one
#     cluster of three again.
# Exits 77 (skipped) where netlab cannot run (not root, no netns, no nft) or
# the hosts cannot take an IPv6 address.
# usage: netlab_ipv6_test.sh BROACH_CLI NETLAB
set -u
CLI=$1
NETLAB=$2
export NETLAB_PREFIX=b6$$
"$NETLAB" check partition >/dev/null 2>&1 || { echo "netlab unavailable: skipping"; exit 77; }
work=$(mktemp -d)
cleanup() { "$NETLAB" down >/dev/null 2>&1; rm -rf "$work"; }
trap cleanup EXIT
fail() { echo "FAIL: $*"; for f in "$work"/n*.log; do echo "--- $f"; tail -n 20 "$f"; done; exit 1; }

"$NETLAB" up 3 >/dev/null || fail "netlab up"
for i in 1 2 3; do
  # nodad: usable at once (no duplicate-address wait); the lab is private.
  "$NETLAB" exec "h$i" sh -c "sysctl -qw net.ipv6.conf.all.disable_ipv6=0 net.ipv6.conf.eth0.disable_ipv6=0 \
      2>/dev/null; ip -6 addr add fd99::$i/64 dev eth0 nodad" >/dev/null 2>&1 ||
    { echo "netlab hosts cannot take an IPv6 address: skipping"; exit 77; }
done
for i in 1 2 3; do
  seed=()
  [ "$i" -gt 1 ] && seed=(--seed "[fd99::1]:7946")
  "$NETLAB" spawn "h$i" --log "$work/n$i.log" "$CLI" node --ip "fd99::$i" --port 7946 \
    --name "n$i" --log-level info "${seed[@]}" >/dev/null || fail "spawn h$i"
done

# view HOST: "addr state" lines of that host's own member's view.
view() {
  "$NETLAB" exec "$1" "$CLI" members --seed "[fd99::${1#h}]:7946" --json --timeout 2 2>/dev/null |
    python3 -c 'import json,sys
for m in json.load(sys.stdin): print(m["address"], m["state"])' 2>/dev/null
}
count() { view "$1" | awk -v s="$2" '$2 == s' | wc -l; }
wait_until() {
  local limit=$1; shift
  for _ in $(seq 1 "$limit"); do "$@" && return 0; sleep 1; done
  "$@"
}
all_see() {
  for h in h1 h2 h3; do [ "$(count "$h" alive)" -eq "$1" ] || return 1; done
}

wait_until 60 all_see 3 || fail "three IPv6 nodes did not converge"
for i in 1 2 3; do
  view h1 | grep -qx "\[fd99::$i\]:7946 alive" || fail "h1 does not list [fd99::$i]:7946 alive: $(view h1)"
done
echo "converged: 3 alive everywhere, by their IPv6 addresses"

out=$("$NETLAB" exec h3 "$CLI" call --seed "[fd99::1]:7946" add 20 22 --timeout 3 2>&1) || fail "call by name: $out"
[ "$out" = "42" ] || fail "call by name answered '$out', not 42"
echo "call by name over IPv6: add 20 22 = $out"

"$NETLAB" partition h1,h2 / h3 >/dev/null || fail "partition"
side_dead() { [ "$(count h1 dead)" -eq 1 ] && [ "$(count h3 dead)" -eq 2 ]; }
wait_until 60 side_dead || fail "the two sides did not declare each other dead"
echo "partitioned: each side sees the other dead"
"$NETLAB" heal >/dev/null || fail "heal"
wait_until 90 all_see 3 || fail "the cluster did not merge after heal"
echo "healed: one cluster of three again"
exit 0
