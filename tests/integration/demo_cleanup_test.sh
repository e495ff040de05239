#!/usr/bin/env bash
# demo_cleanup_test.sh BIN_DIR REPO_ROOT
#
# `make demo` (examples/demo.sh) must leave no process behind:
#   1. after a full run,
#   2. after SIGINT to its process group (Ctrl-C) once both `broach node`s are up,
#   3. after SIGTERM to the script alone while the seed providers run.
# The demo runs against a private bin dir of symlinks to BIN_DIR's binaries, so
# every process it starts has that unique dir in its command line and nothing
# else on the machine (another demo, another test) is counted.
set -uo pipefail

fail() { echo "demo_cleanup_test: FAIL: $*" >&2; exit 1; }
[ $# -eq 2 ] || { echo "usage: $0 BIN_DIR REPO_ROOT" >&2; exit 1; }
BIN=$(cd "$1" && pwd) || fail "no bin dir $1"
ROOT=$(cd "$2" && pwd) || fail "no repo root $2"
[ -f "$ROOT/examples/demo.sh" ] || fail "no $ROOT/examples/demo.sh"

work=$(mktemp -d "${TMPDIR:-/tmp}/demo_cleanup.XXXXXX")
MARK="$work/bin/"       # in the command line of everything the demo starts
demo_pid=""

# Ours, whatever happens: stop a demo still running and anything it left.
finish() {
  local status=$?
  [ -n "$demo_pid" ] && kill -KILL -- "-$demo_pid" 2>/dev/null
  local p
  for p in $(pgrep -f -- "$MARK"); do kill -KILL "$p" 2>/dev/null; done
  rm -rf "$work"
  exit "$status"
}
trap finish EXIT
trap 'exit 1' INT TERM

mkdir "$work/bin"
for b in broach example_hello seed_provider seed_caller; do
  [ -x "$BIN/$b" ] || fail "missing $BIN/$b"
  ln -s "$BIN/$b" "$work/bin/$b"
done

leftovers() { pgrep -a -f -- "$MARK"; }   # prints them; status 0 iff any
count() { pgrep -f -- "$MARK$1" | wc -l; }

# start_demo LOG: the demo in its own session/process group (pgid = its pid),
# as a terminal's foreground job would be. Started from a subshell: bash
# starts a plain `cmd &` with SIGINT ignored (no job control), and a shell
# that starts with SIGINT ignored cannot trap it, which is not Ctrl-C.
start_demo() {
  (cd "$ROOT" && exec setsid bash examples/demo.sh "$work") >"$1" 2>&1 </dev/null &
  demo_pid=$!
  wait_until 10 own_group || fail "the demo did not get its own process group (pid $demo_pid)"
}
own_group() { [ "$(ps -o pgid= -p "$demo_pid" | tr -d ' ')" = "$demo_pid" ]; }
# sigint_ignored: the demo script ignores SIGINT (bit 2 of SigIgn).
sigint_ignored() {
  local mask
  mask=$(awk '/^SigIgn:/ {print $2}' "/proc/$demo_pid/status" 2>/dev/null) || return 1
  [ -n "$mask" ] && (((16#$mask & 2) != 0))
}

# wait_until SECONDS CMD...: polls CMD every 0.05 s; status 0 once it holds.
wait_until() {
  local deadline=$((SECONDS + $1)); shift
  until "$@"; do
    ((SECONDS < deadline)) || return 1
    sleep 0.05
  done
}
demo_alive() { kill -0 "$demo_pid" 2>/dev/null; }
demo_gone() { ! demo_alive; }
all_gone() { demo_gone && ! pgrep -f -- "$MARK" >/dev/null; }
nodes_up() { [ "$(count "broach node")" -ge 2 ] && grep -q "== two nodes on loopback" "$work/$log"; }
providers_up() { [ "$(count seed_provider)" -ge 2 ]; }

leftovers >/dev/null && fail "processes with $MARK before the demo ran?"

# --- 1. a full run --------------------------------------------------------
log=full.log
start_demo "$work/$log"
wait_until 200 demo_gone || fail "the full demo run did not finish within 200 s"
wait "$demo_pid"; status=$?
demo_pid=""
if [ "$status" -ne 0 ]; then
  cat "$work/$log" >&2
  fail "the full demo run exited with status $status"
fi
grep -q "== two nodes on loopback" "$work/$log" || fail "full run: no nodes line in the demo's output"
grep -q "provider" "$work/$log" || fail "full run: no provider summary in the demo's output"
if left=$(leftovers); then
  echo "$left" >&2
  fail "after a full demo run these processes it started are still running"
fi
echo "ok 1: full run (status 0) left no process behind"

# --- 2. SIGINT to the process group once both nodes are up ----------------
log=int.log
start_demo "$work/$log"
wait_until 60 nodes_up || { cat "$work/$log" >&2; fail "the two broach nodes did not come up within 60 s"; }
sigint_ignored && fail "test harness: the demo was started with SIGINT ignored, so this is not a Ctrl-C"
kill -INT -- "-$demo_pid"
if ! wait_until 10 all_gone; then
  leftovers >&2
  demo_alive && echo "(the demo script $demo_pid is still running)" >&2
  fail "10 s after SIGINT to the demo's process group, processes it started are still running"
fi
wait "$demo_pid"; status=$?
demo_pid=""
echo "ok 2: SIGINT to the process group: demo exited ($status), nothing left behind"

# --- 3. SIGTERM to the script alone while the seed providers run -----------
log=term.log
start_demo "$work/$log"
wait_until 120 providers_up || { cat "$work/$log" >&2; fail "the seed providers did not come up within 120 s"; }
kill -TERM "$demo_pid"
if ! wait_until 10 all_gone; then
  leftovers >&2
  demo_alive && echo "(the demo script $demo_pid is still running)" >&2
  fail "10 s after SIGTERM to the demo script, processes it started are still running"
fi
wait "$demo_pid"; status=$?
demo_pid=""
echo "ok 3: SIGTERM to the script: demo exited ($status), nothing left behind"
exit 0
