#!/usr/bin/env bash
# Allocations per request through the ptproxy pair on loopback (issue 13): both proxies run with
# an LD_PRELOAD counter (benches/tools/alloc/count.c, built here with gcc), 64 keep-alive
# clients (ptb-load) send GET /small for a few seconds, and the counts read before and after
# are divided by the requests served. No root needed; every process it starts is stopped on exit.
#
#   benches/allocs.sh [CLIENTS (64)] [SECONDS (3)]
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(dirname "$here")
clients=${1:-64} secs=${2:-3}
bin=$root/target/production/ptproxy tools=$here/tools/target/release
[ -x "$bin" ] || (cd "$root" && cargo build --profile production --quiet)
[ -x "$tools/ptb-load" ] || (cd "$here/tools" && cargo build --release --quiet)
command -v gcc >/dev/null || { echo "allocs.sh: gcc is needed for the counter" >&2; exit 2; }

work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT INT TERM
gcc -O2 -shared -fPIC -o "$work/count.so" "$here/tools/alloc/count.c" -ldl

read -r up quic listen < <(python3 -c '
import socket
s=[socket.socket() for _ in range(3)]
for x in s: x.bind(("127.0.0.1", 0))
print(*[x.getsockname()[1] for x in s])')
certs=$root/conf/demo-certs
cat > "$work/b.json" <<JSON
{"listen": "127.0.0.1:$quic", "upstream": {"address": "127.0.0.1:$up"},
 "tls": {"ca": "$certs/ca.pem", "cert": "$certs/server.pem", "key": "$certs/server.key"},
 "http": {"access_log": false}, "log_level": "warn"}
JSON
cat > "$work/a.json" <<JSON
{"listen": ["127.0.0.1:$listen"], "peer": {"address": "127.0.0.1:$quic", "server_name": "localhost"},
 "tls": {"ca": "$certs/ca.pem", "cert": "$certs/client.pem", "key": "$certs/client.key"},
 "http": {"access_log": false}, "log_level": "warn"}
JSON

"$tools/ptb-upstream" "127.0.0.1:$up" 2>/dev/null & pids+=($!)
LD_PRELOAD=$work/count.so "$bin" --role server "$work/b.json" 2>"$work/server.log" & server=$!; pids+=($server)
LD_PRELOAD=$work/count.so "$bin" --role client "$work/a.json" 2>"$work/client.log" & client=$!; pids+=($client)
timeout 20 "$tools/ptb-load" wait --addr "127.0.0.1:$listen" --deadline 10 >/dev/null
timeout 30 "$tools/ptb-load" conc --addr "127.0.0.1:$listen" --clients "$clients" --duration 1 >/dev/null
kill -USR2 "$server" "$client"
timeout $((secs + 30)) "$tools/ptb-load" conc --addr "127.0.0.1:$listen" --clients "$clients" --duration "$secs" >"$work/load.json"
kill -USR2 "$server" "$client"
for _ in $(seq 50); do
  [ "$(grep -c '^ALLOCS' "$work/client.log")" -ge 2 ] && [ "$(grep -c '^ALLOCS' "$work/server.log")" -ge 2 ] && break
  sleep 0.1
done
python3 - "$work" "$clients" <<'PY'
import json, re, sys
work, clients = sys.argv[1], sys.argv[2]
n = json.load(open(f"{work}/load.json"))["ok"]
print(f"allocations per request, {clients} keep-alive clients, {n} requests")
print("| side | malloc | calloc | realloc | free |")
print("|---|---:|---:|---:|---:|")
for side in ("client", "server"):
    rows = [l for l in open(f"{work}/{side}.log") if l.startswith("ALLOCS")]
    if len(rows) < 2 or n == 0:
        sys.exit(f"allocs.sh: no counts from the {side} (rows {len(rows)}, requests {n})")
    a, b = [dict((k, int(v)) for k, v in re.findall(r"(\w+)=(\d+)", r)) for r in rows[:2]]
    per = [(b[k] - a[k]) / n for k in ("malloc", "calloc", "realloc", "free")]
    print(f"| {side} | " + " | ".join(f"{v:.1f}" for v in per) + " |")
PY
