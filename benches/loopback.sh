#!/usr/bin/env bash
# ptproxy loopback benchmark (no link emulator): the ptproxy pair against the HAProxy h2 pair on
# 127.0.0.1. See benches/README.md, section "Loopback (no emulator)".
#
#   benches/loopback.sh [--quick] [--duration S] [--bytes N] [--pairs ptproxy,haproxy] [...]
#
# No root needed. Builds ptproxy (release) and the helpers in benches/tools when their binaries
# are missing (--build: always run cargo build), then runs benches/loopback.py, which writes
# benches/results/loopback-<timestamp>.md (+ .json). Every process it started is stopped on exit,
# also on failure or Ctrl-C; the whole run is bounded by a hard timeout (--hard-timeout, 1800 s).
# Options of its own: --build, --hard-timeout S. All others go to loopback.py (--help).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(dirname "$here")

build=0 hard=1800 ptproxy_bin="$root/target/production/ptproxy"
pass=()
prev=""
for a in "$@"; do
  case "$prev" in
    --hard-timeout) hard=$a; prev=""; continue ;;
    --ptproxy-bin) ptproxy_bin=$a ;;
  esac
  case "$a" in
    --build) build=1; prev=""; continue ;;
    --hard-timeout) prev=$a; continue ;;
    -h|--help) exec python3 "$here/loopback.py" --help ;;
  esac
  prev=$a
  pass+=("$a")
done

command -v haproxy >/dev/null 2>&1 || [ -x /usr/sbin/haproxy ] ||
  echo "loopback.sh: haproxy is not installed (apt-get install haproxy): the HAProxy pair will be skipped" >&2
if [ $build = 1 ] || [ ! -x "$ptproxy_bin" ]; then
  [ "$ptproxy_bin" = "$root/target/production/ptproxy" ] || { echo "loopback.sh: $ptproxy_bin missing" >&2; exit 2; }
  echo "loopback.sh: building ptproxy (production profile)" >&2
  (cd "$root" && cargo build --profile production --quiet)
fi
tools=$here/tools/target/release
if [ $build = 1 ] || [ ! -x "$tools/ptb-load" ] || [ ! -x "$tools/ptb-upstream" ]; then
  echo "loopback.sh: building benches/tools" >&2
  cargo build --release --quiet --manifest-path "$here/tools/Cargo.toml"
fi

# shellcheck source=benches/stop_started.sh
. "$here/stop_started.sh"
state=$(mktemp -d /tmp/ptb-loop-state.XXXXXX)
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  stop_started
  rm -rf "$state"
  exit $rc
}
trap cleanup EXIT INT TERM

cd "$root"
PTB_STATE_DIR=$state timeout -k 30 "$hard" python3 "$here/loopback.py" --command "benches/loopback.sh $*" "${pass[@]}" &
bench_pid=$!
wait "$bench_pid"
