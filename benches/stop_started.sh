# Sourced by run.sh and loopback.sh. stop_started: stops the Python runner ($bench_pid), then,
# by recorded process-group id only, whatever it started and could not stop itself
# ($state/pids).
stop_started() {
  if [ -n "${bench_pid:-}" ] && kill -0 "$bench_pid" 2>/dev/null; then
    kill -TERM "$bench_pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$bench_pid" 2>/dev/null || break; sleep 0.1; done
  fi
  if [ -f "$state/pids" ]; then
    while read -r pid; do
      [ -n "$pid" ] && kill -KILL -- "-$pid" 2>/dev/null || true
    done < "$state/pids"
  fi
}
