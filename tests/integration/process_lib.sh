# Shared by the shell tests that run `broach` processes (sourced).
# Needs: $BIN (the directory of `broach`), $work (a scratch directory),
# pids (an array the caller's cleanup kills) and fail().

# wait_line FILE PATTERN: polls (10 s at most) until FILE has a line matching PATTERN.
wait_line() {
  for _ in $(seq 1 1000); do grep -q "$2" "$1" 2>/dev/null && return 0; sleep 0.01; done
  return 1
}

# start_node NAME [ARGS...]: starts `broach node` on a free loopback port
# with output in $work/NAME.out, waits until it listens, and sets $addr to
# its address and $pid to its process id.
start_node() {
  local name=$1
  shift
  "$BIN/broach" node --port 0 --log-level warn "$@" >"$work/$name.out" 2>&1 &
  pid=$!
  pids+=($pid)
  wait_line "$work/$name.out" "listening on" || fail "$name did not start"
  addr=$(awk '/listening on/ {print $3; exit}' "$work/$name.out")
}
