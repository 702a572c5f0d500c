#!/usr/bin/env bash
# ptproxy side-by-side benchmark: the one command to run. See benches/README.md.
#
#   benches/run.sh [--quick] [--pairs a,b] [--links a,b] [--link NAME:rtt=50,loss=1,rate=20] [...]
#
# Needs root (network namespaces, TUN devices) and Rust (cargo). Installs nginx, haproxy,
# iproute2, openssl and python3 with apt when they are missing, builds ptproxy (release) and the
# helpers in benches/tools, runs every pair on every link, and writes
# benches/results/<timestamp>.md (+ .json with the raw figures). Every process it starts and
# both namespaces are removed on exit, also on failure or Ctrl-C. The run is bounded by
# --budget (default 3000 s, 1200 s with --quick) plus a hard timeout on top.
# Options of its own: --no-install, --no-build. All others go to benches/bench.py (--help).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(dirname "$here")

install=1 build=1 quick=0 budget=""
pass=()
prev=""
for a in "$@"; do
  case "$a" in
    --no-install) install=0; continue ;;
    --no-build) build=0; continue ;;
    --quick) quick=1 ;;
    -h|--help) exec python3 "$here/bench.py" --help ;;
  esac
  [ "$prev" = "--budget" ] && budget=$a
  prev=$a
  pass+=("$a")
done
case "${PTB_QUICK:-0}" in 0|false|no|"") ;; *) quick=1 ;; esac
[ -z "$budget" ] && budget=${PTB_BUDGET:-}
if [ -z "$budget" ]; then budget=$([ $quick = 1 ] && echo 1200 || echo 3000); fi
hard=$(( ${budget%.*} + 300 ))

[ "$(id -u)" -eq 0 ] || { echo "run.sh: needs root (network namespaces and TUN devices)" >&2; exit 2; }
[ -c /dev/net/tun ] || { echo "run.sh: /dev/net/tun is missing (modprobe tun)" >&2; exit 2; }

if [ $install = 1 ]; then
  missing=()
  command -v nginx >/dev/null 2>&1 || missing+=(nginx)
  command -v haproxy >/dev/null 2>&1 || missing+=(haproxy)
  command -v ip >/dev/null 2>&1 || missing+=(iproute2)
  command -v tc >/dev/null 2>&1 || missing+=(iproute2)
  command -v openssl >/dev/null 2>&1 || missing+=(openssl)
  command -v python3 >/dev/null 2>&1 || missing+=(python3)
  command -v timeout >/dev/null 2>&1 || missing+=(coreutils)
  command -v ethtool >/dev/null 2>&1 || missing+=(ethtool)   # offloads off, netem path only
  if [ ${#missing[@]} -gt 0 ]; then
    echo "run.sh: installing ${missing[*]}" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(printf '%s\n' "${missing[@]}" | sort -u) >/dev/null
  fi
fi
command -v cargo >/dev/null 2>&1 || { echo "run.sh: cargo not found: install Rust (https://rustup.rs)" >&2; exit 2; }

if [ $build = 1 ]; then
  [ -x "$root/.ci/prereqs" ] && "$root/.ci/prereqs"
  echo "run.sh: building ptproxy (production profile) and benches/tools" >&2
  (cd "$root" && cargo build --profile production --quiet)
  cargo build --release --quiet --manifest-path "$here/tools/Cargo.toml"
fi

# shellcheck source=benches/stop_started.sh
. "$here/stop_started.sh"
state=$(mktemp -d /tmp/ptb-state.XXXXXX)
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  stop_started
  if [ -f "$state/netns-owned" ]; then
    ip netns del ptb-client 2>/dev/null || true
    ip netns del ptb-server 2>/dev/null || true
  fi
  rm -rf "$state"
  exit $rc
}
trap cleanup EXIT INT TERM

cd "$root"
PTB_STATE_DIR=$state timeout -k 30 "$hard" python3 "$here/bench.py" --command "benches/run.sh $*" "${pass[@]}" &
bench_pid=$!
wait "$bench_pid"
