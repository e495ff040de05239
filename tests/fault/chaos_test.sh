#!/usr/bin/env bash
# Chaos under load on real network namespaces (../shared/netlab).
#
# Five provider hosts (h1..h5, `chaos_node serve`: "put" is not idempotent
# and records every execution's id, "get" is idempotent) and a load host (h6,
# `chaos_node load`: 4 calls by name always in flight, each with a unique id
# and a 3 s deadline) while this runs, in order:
#   A. 30% loss on h2 (both ways), 10 s
#   B. duplication 5% + reordering 25% + 20 ms +- 20 ms delay on h3 (both ways), 10 s
#   C. partition {h1,h2} / {h3,h4,h5,h6} for 10 s, then heal
#   D. kill -9 of h4's provider, restarted 8 s later
#   E. SIGSTOP of h5 for 3 s, then SIGCONT
#   F. a rolling restart: each provider in turn gets SIGTERM (graceful drain),
#      is started again and is routed to again before the next one
# Invariants, checked at the end from the providers' records, the caller's
# log and every node's log:
#   1. every call ended with the right result or a typed error, within its
#      deadline + 1 s;
#   2. no "put" ran twice (0 duplicate executions);
#   3. no call failed during the rolling restart;
#   4. no member was declared dead unless it was killed, paused or
#      partitioned at the time (or in the 20 s after);
#   5. after the last fault, one cluster of six again within 2 push-pull
#      periods (30 s).
# Prints a summary. Exits 77 (skipped) where netlab cannot run.
# usage: chaos_test.sh CHAOS_NODE BROACH_CLI NETLAB
set -u
NODE=$1
CLI=$2
NETLAB=$3
export NETLAB_PREFIX=ch$$
for what in partition loss dup delay; do
  "$NETLAB" check "$what" >/dev/null 2>&1 || { echo "netlab ($what) unavailable: skipping"; exit 77; }
done
work=$(mktemp -d)
cleanup() { "$NETLAB" down >/dev/null 2>&1; rm -rf "$work"; }
trap cleanup EXIT
fail() {
  echo "FAIL: $*"
  for f in "$work"/h*.log; do echo "--- $f"; tail -n 15 "$f"; done
  exit 1
}
now_ms() { date +%s%3N; }
phase() { echo "$1 $2 $(now_ms)" >>"$work/phases"; }  # phase NAME start|end

"$NETLAB" up 6 >/dev/null || fail "netlab up"
addr() { echo "10.99.0.${1#h}:7000"; }
start_provider() {  # start_provider HOST SEED
  "$NETLAB" spawn "$1" --log "$work/$1.log" "$NODE" serve "10.99.0.${1#h}" 7000 "$2" "$work/$1.record" \
    >/dev/null || fail "spawn $1"
}
start_provider h1 -
for h in h2 h3 h4 h5; do start_provider "$h" "$(addr h1)"; done

# view HOST: "address state" per member, as HOST's own node sees it.
view() {
  "$NETLAB" exec "$1" "$CLI" members --seed "$(addr "$1")" --json --timeout 2 2>/dev/null |
    python3 -c 'import json,sys
for m in json.load(sys.stdin): print(m["address"], m["state"])' 2>/dev/null
}
count() { view "$1" | awk -v s="$2" '$2 == s' | wc -l; }
wait_until() {  # wait_until SECONDS CMD...: polls CMD every 0.5 s
  local end=$((SECONDS + $1)); shift
  while [ $SECONDS -lt $end ]; do "$@" && return 0; sleep 0.5; done
  "$@"
}
all_see() {  # all_see N: every host sees N alive (the six asked at once)
  local h
  for h in h1 h2 h3 h4 h5 h6; do view "$h" >"$work/view.$h" & done
  wait
  local ok=0 line=""
  for h in h1 h2 h3 h4 h5 h6; do
    local n
    n=$(awk '$2 == "alive"' "$work/view.$h" | wc -l)
    line+=" $h:$n$(awk '$2 != "alive" {printf ",%s=%s", $1, $2}' "$work/view.$h")"
    [ "$n" -eq "$1" ] || ok=1
  done
  echo "$(now_ms)$line" >>"$work/views"  # what each host saw, for the summary
  return $ok
}
providers_routed() {  # the load host routes "put" to five providers
  local n
  n=$("$NETLAB" exec h6 "$CLI" routes --seed "$(addr h6)" --json --timeout 2 2>/dev/null |
      python3 -c 'import json,sys; print(len(json.load(sys.stdin).get("put", [])))' 2>/dev/null)
  [ "${n:-0}" -eq 5 ]
}

"$NETLAB" spawn h6 --log "$work/h6.log" "$NODE" load 10.99.0.6 7000 "$(addr h1)" "$work/calls.log" \
  "$work/stop" 4 3000 >/dev/null || fail "spawn load"
wait_until 60 all_see 6 || fail "six nodes did not converge"
wait_until 30 providers_routed || fail "the load host does not route to five providers"
phase load start
sleep 3
echo "converged; load running"

phase A start
"$NETLAB" impair h2 dir both loss 30% >/dev/null || fail "impair h2"
sleep 10
"$NETLAB" clear h2 >/dev/null
phase A end

phase B start
"$NETLAB" impair h3 dir both delay 20ms 20ms reorder 25% duplicate 5% >/dev/null || fail "impair h3"
sleep 10
"$NETLAB" clear h3 >/dev/null
phase B end

phase C start
"$NETLAB" partition h1,h2 / h3,h4,h5,h6 >/dev/null || fail "partition"
sleep 10
"$NETLAB" heal >/dev/null
phase C end
wait_until 30 all_see 6 || fail "no single cluster 30 s after the partition healed"

phase D start
"$NETLAB" kill h4 KILL >/dev/null
sleep 8
start_provider h4 "$(addr h5)"
phase D end
wait_until 30 all_see 6 || fail "the restarted h4 was not readmitted"

phase E start
"$NETLAB" pause h5 >/dev/null
sleep 3
"$NETLAB" resume h5 >/dev/null
phase E end
wait_until 30 all_see 6 || fail "no single cluster 30 s after h5 resumed"
wait_until 30 providers_routed || fail "the load host does not route to five providers before the rolling restart"

phase F start
for h in h1 h2 h3 h4 h5; do
  "$NETLAB" kill "$h" TERM >/dev/null
  gone=0
  for _ in $(seq 1 200); do
    [ -z "$("$NETLAB" pids "$h" 2>/dev/null)" ] && { gone=1; break; }
    sleep 0.05
  done
  [ $gone -eq 1 ] || fail "$h did not stop within 10 s of SIGTERM"
  next=h$(( ${h#h} % 5 + 1 ))
  start_provider "$h" "$(addr "$next")"
  wait_until 30 providers_routed || fail "$h was not routed to again after its restart"
done
phase F end

t_last=$(now_ms)
wait_until 30 all_see 6 || fail "no single cluster within 30 s of the last fault"
took=$(( $(now_ms) - t_last ))
(( took <= 30000 )) || fail "one cluster again only $took ms after the last fault (bound: 2 push-pull periods, 30 s)"
echo "one cluster again within $took ms of the last fault (bound 30 s); the views until then:"
awk -v t="$t_last" '$1 >= t {printf "  +%d ms:", $1 - t; for (i = 2; i <= NF; i++) printf " %s", $i; print ""}' "$work/views" | tail -8
sleep 1
phase load end
touch "$work/stop"
for _ in $(seq 1 200); do [ -z "$("$NETLAB" pids h6 2>/dev/null)" ] && break; sleep 0.05; done

python3 - "$work" <<'PY' || fail "invariants violated"
import collections, datetime, glob, os, re, sys
work = sys.argv[1]
phases = {}
for line in open(os.path.join(work, "phases")):
    name, edge, ms = line.split()
    phases.setdefault(name, {})[edge] = int(ms)
DEADLINE, SLACK = 3000, 1000
calls = [l.split() for l in open(os.path.join(work, "calls.log")) if l.strip()]
kinds = collections.Counter(c[4] for c in calls)
bad = []
max_ms = 0
for start, end, svc, cid, outcome in calls:
    took = int(end) - int(start)
    max_ms = max(max_ms, took)
    if outcome == "wrong":
        bad.append(f"call {cid} ({svc}) returned a wrong result")
    if took > DEADLINE + SLACK:
        bad.append(f"call {cid} ({svc}) took {took} ms ({outcome})")
# 2. Duplicate executions of the non-idempotent "put".
ran = collections.Counter()
for f in glob.glob(os.path.join(work, "*.record")):
    for l in open(f):
        if l.strip():
            ran[l.strip()] += 1
dups = {k: v for k, v in ran.items() if v > 1}
if dups:
    bad.append(f"{len(dups)} put calls ran more than once, e.g. {list(dups.items())[:5]}")
# Every put that answered ok ran exactly once.
for start, end, svc, cid, outcome in calls:
    if svc == "put" and outcome == "ok" and ran[cid] != 1:
        bad.append(f"put {cid} answered ok but ran {ran[cid]} times")
        break
# 3. The rolling restart: no failed call ended inside it.
f0, f1 = phases["F"]["start"], phases["F"]["end"]
rolling = [c for c in calls if f0 <= int(c[1]) <= f1]
rolling_failed = [c for c in rolling if c[4] != "ok"]
if rolling_failed:
    bad.append(f"{len(rolling_failed)} of {len(rolling)} calls failed during the rolling restart: {rolling_failed[:5]}")
# 4. Deaths only of members faulted at the time (or in the 20 s after).
GRACE = 20000
faulted = [("C", {1, 2, 3, 4, 5, 6}), ("D", {4}), ("E", {5})]
def allowed(host, t):
    return any(phases[p]["start"] <= t <= phases[p]["end"] + GRACE and host in hosts for p, hosts in faulted)
false_deaths = []
pat = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}) .*member 10\.99\.0\.(\d+):7000 is dead")
for f in sorted(glob.glob(os.path.join(work, "h*.log"))):
    for l in open(f, errors="replace"):
        m = pat.match(l)
        if not m:
            continue
        t = int(datetime.datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S.%f").timestamp() * 1000)
        host = int(m.group(2))
        if not allowed(host, t):
            false_deaths.append(f"{os.path.basename(f)}: h{host} declared dead at {m.group(1)}")
if false_deaths:
    bad.append(f"{len(false_deaths)} false deaths: {false_deaths[:5]}")
ok = kinds.get("ok", 0)
errors = {k: v for k, v in kinds.items() if k != "ok"}
print(f"calls {len(calls)}, ok {ok}, errors {sum(errors.values())} {dict(errors)}, max latency {max_ms} ms, "
      f"duplicate executions {len(dups)}, puts executed {sum(ran.values())}, "
      f"rolling restart {len(rolling)} calls / {len(rolling_failed)} failed, false deaths {len(false_deaths)}")
if len(calls) < 1000:
    bad.append(f"only {len(calls)} calls: the load did not run")
for b in bad:
    print("VIOLATION:", b)
sys.exit(1 if bad else 0)
PY
echo "chaos under load: all invariants hold"
exit 0
