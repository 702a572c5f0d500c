#!/usr/bin/env bash
# Quick start: builds ptproxy, then runs on loopback
#   demo upstream (127.0.0.1:8000) <- ptproxy --role server conf/b.json (UDP 4433)
#                                   <- ptproxy --role client conf/a.json (TCP 8080) <- one request
# and shows the request going through. Uses the demo certificates in conf/demo-certs (demo only!).
set -euo pipefail
cd "$(dirname "$0")/.."
.ci/prereqs
cargo build --release --quiet
logs=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$logs"; }
trap cleanup EXIT

python3 conf/demo-upstream.py 8000 2>"$logs/upstream.log" & pids+=($!)
target/release/ptproxy --role server conf/b.json 2>"$logs/server.log" & pids+=($!)
target/release/ptproxy --role client conf/a.json 2>"$logs/client.log" & pids+=($!)

# Wait (at most 10 s each) until the upstream listens and the client's session is up.
wait_for() { # file pattern
  for _ in $(seq 100); do grep -q "$2" "$1" && return 0; sleep 0.1; done
  echo "timed out waiting for '$2' in $1:"; cat "$logs"/*.log; exit 1
}
wait_for "$logs/upstream.log" "listening on"
wait_for "$logs/client.log" "session established"

echo "== request: POST http://127.0.0.1:8080/hello through the pair"
if command -v curl >/dev/null; then
  curl -sS -i --max-time 10 -H 'X-Demo: 1' --data 'hello over HTTP/3' http://127.0.0.1:8080/hello
else
  python3 -c 'import urllib.request as u; r=u.urlopen(u.Request("http://127.0.0.1:8080/hello", data=b"hello over HTTP/3", headers={"X-Demo":"1"}), timeout=10); print(r.status, r.reason); print(r.read().decode())'
fi
echo
echo "== client log"; cat "$logs/client.log"
echo "== server log"; cat "$logs/server.log"
