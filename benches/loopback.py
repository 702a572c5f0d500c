#!/usr/bin/env python3
"""ptproxy loopback benchmark (issue 13): the ptproxy pair against the HAProxy HTTP/2-over-TLS
pair on 127.0.0.1, no link emulator, one pair after another, each in front of one ptb-upstream.
Per pair: requests per second at 64 keep-alive clients with the proxies' CPU per request, and a
single large GET with its rate and the proxies' CPU per GiB. Writes a markdown report (ratios
ptproxy/HAProxy and the issue's targets) to benches/results/loopback-<timestamp>.md and the raw
figures beside it in .json. See benches/README.md, section "Loopback (no emulator)".

Standard library only; the helpers shared with bench.py (process groups, /proc CPU sampling,
templates, certificates, number formatting) are imported from it. No root needed: no namespaces,
every port is picked free on 127.0.0.1. Every child runs in its own process group, is recorded
in <run dir>/pids and stopped by its id on exit (also on an error or Ctrl-C); every wait has a
timeout.
"""

import argparse
import datetime
import json
import os
import platform
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import bench  # noqa: E402  (shared helpers; bench.py runs nothing on import)
from bench import BenchError, Stop, log, fmt_num, summarize, wait_log  # noqa: E402

ROOT = bench.ROOT
TOOLS = bench.TOOLS
LOOP = "127.0.0.1"
GIB = 1024 ** 3
MIB = 1024 ** 2
PAIR_NAMES = ("ptproxy", "haproxy")


# ----------------------------------------------------------------------------- ports, helpers


def free_port(kinds=(socket.SOCK_STREAM,)):
    """A port on 127.0.0.1 that is free for every socket kind given (TCP and/or UDP) right now.
    Bounded: a few tries, then an error."""
    for _ in range(50):
        s = socket.socket(socket.AF_INET, kinds[0])
        s.bind((LOOP, 0))
        port = s.getsockname()[1]
        others = []
        try:
            for k in kinds[1:]:
                o = socket.socket(socket.AF_INET, k)
                others.append(o)
                o.bind((LOOP, port))
            return port
        except OSError:
            continue
        finally:
            s.close()
            for o in others:
                o.close()
    raise BenchError("no free port on 127.0.0.1 after 50 tries")


def run_json(argv, timeout):
    """Runs a helper that prints one JSON object as its last line; bounded by timeout."""
    try:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"ok": False, "error": f"{os.path.basename(argv[0])} timed out after {timeout:.0f} s"}
    try:
        return json.loads(r.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        name = os.path.basename(argv[0])
        return {"ok": False, "error": f"{name} failed (rc {r.returncode}): {r.stderr.strip()[:300]}"}


def load(*argv, timeout):
    return run_json([os.path.join(TOOLS, "ptb-load")] + [str(a) for a in argv], timeout)


def wait_port(port, what, procs_started, deadline=15):
    r = load("wait", "--addr", f"{LOOP}:{port}", "--deadline", deadline, timeout=deadline + 5)
    if not r.get("ok"):
        died = [p for p in procs_started if p.poll() is not None]
        hint = f" (it exited with {died[0].returncode}; see {died[0].ptb_log})" if died else ""
        raise BenchError(f"{what} did not accept on {LOOP}:{port} within {deadline} s{hint}")


# ----------------------------------------------------------------------------- pairs


class LoopPair:
    """One proxy pair on loopback: a client-side process (HTTP/1.1 in) and a server-side process
    (to the upstream). `start` returns None when ready, or the reason the pair is skipped."""

    def __init__(self, name, args, pki, run_dir, upstream_port):
        self.name = name
        self.args = args
        self.pki = pki
        self.dir = os.path.join(run_dir, name)
        self.upstream_port = upstream_port
        self.client_port = None
        self.started = []

    def values(self, side_dir):
        return dict(client_port=self.client_port, server_port=self.server_port, server_addr=LOOP, client_addr=LOOP,
                    server_name=bench.SERVER_NAME, client_name=bench.CLIENT_NAME, pki=self.pki, dir=side_dir,
                    upstream_port=self.upstream_port, rtt_ms=self.args.initial_rtt_ms,
                    nginx_workers=1, haproxy_threads=self.args.haproxy_threads, h2_window=self.args.h2_window)

    def write(self, side, template, transform=None):
        sd = os.path.join(self.dir, side)
        os.makedirs(sd, exist_ok=True)
        text = bench.render(template, self.values(sd))
        if transform:
            text = transform(text)
        path = os.path.join(sd, os.path.basename(template))
        with open(path, "w") as f:
            f.write(text + "\n")
        return path

    def start(self, procs):
        self.client_port = free_port()
        if self.name == "ptproxy":
            return self._start_ptproxy(procs)
        return self._start_haproxy(procs)

    def _start_ptproxy(self, procs):
        binary = self.args.ptproxy_bin
        if not os.access(binary, os.X_OK):
            return f"{binary} missing: cargo build --profile production"
        self.server_port = free_port((socket.SOCK_DGRAM,))

        def bbr2(text):
            cfg = json.loads(text)
            cfg.setdefault("transport", {})["congestion_control"] = "bbr2"  # the default; explicit here
            cfg["transport"]["initial_rtt_ms"] = self.args.initial_rtt_ms
            return json.dumps(cfg, indent=2)

        cc = self.write("client", "ptproxy-client.json", bbr2)
        sc = self.write("server", "ptproxy-server.json", bbr2)
        for role, cfg in (("client", cc), ("server", sc)):
            r = subprocess.run([binary, "--role", role, "--check", cfg], capture_output=True, text=True, timeout=20)
            if r.returncode != 0:
                return f"ptproxy --check rejected the {role} config: {(r.stdout + r.stderr).strip()[:300]}"
        env = dict(os.environ, RUST_LOG=os.environ.get("PTB_RUST_LOG", "info"))
        slog, clog = os.path.join(self.dir, "server.log"), os.path.join(self.dir, "client.log")
        self.started.append(procs.start(None, [binary, "--role", "server", sc], slog, env=env))
        wait_log(slog, "listening for QUIC", "server-side ptproxy", self.started, 10)
        self.started.append(procs.start(None, [binary, "--role", "client", cc], clog, env=env))
        wait_log(clog, "session established", "client-side ptproxy", self.started, 20)
        wait_port(self.client_port, "client-side ptproxy", self.started)
        return None

    def _start_haproxy(self, procs):
        haproxy = self.args.haproxy_bin
        if not os.access(haproxy, os.X_OK):
            return f"haproxy is not installed ({haproxy} missing; apt-get install haproxy): pair skipped"
        self.server_port = free_port()
        cc = self.write("client", "haproxy-client.cfg")
        sc = self.write("server", "haproxy-server.cfg")
        for cfg in (cc, sc):
            r = subprocess.run([haproxy, "-c", "-q", "-f", cfg], capture_output=True, text=True, timeout=20)
            if r.returncode != 0:
                return f"haproxy -c rejected {os.path.basename(cfg)}: {(r.stdout + r.stderr).strip()[:300]}"
        slog, clog = os.path.join(self.dir, "server.log"), os.path.join(self.dir, "client.log")
        self.started.append(procs.start(None, [haproxy, "-db", "-f", sc], slog))
        wait_port(self.server_port, "server-side haproxy", self.started)
        self.started.append(procs.start(None, [haproxy, "-db", "-f", cc], clog))
        wait_port(self.client_port, "client-side haproxy", self.started)
        return None

    def pids(self):
        return bench.descendants([p.pid for p in self.started if p.poll() is None])

    def cpu_by_side(self):
        """CPU ns of each side's processes: {"server": ns, "client": ns} (started in that order)."""
        return {side: bench.cpu_ns(bench.descendants([p.pid])) for side, p in zip(("server", "client"), self.started)}

    def stop(self, procs):
        for p in reversed(self.started):
            procs.stop(p)
        self.started = []


# ----------------------------------------------------------------------------- measuring


def run_pair(name, args, pki, run_dir, procs):
    """One pair in front of its own fresh ptb-upstream; the upstream's death during the pair (its
    log, or someone else's kill) is a note on the pair's figures."""
    os.makedirs(run_dir, exist_ok=True)
    port = free_port()
    upstream = procs.start(None, [os.path.join(TOOLS, "ptb-upstream"), f"{LOOP}:{port}"],
                           os.path.join(run_dir, f"upstream-{name}.log"))
    try:
        wait_port(port, "ptb-upstream", [upstream], deadline=10)
        res = measure(LoopPair(name, args, pki, run_dir, port), procs, args, upstream.pid)
        if upstream.poll() is not None:
            res.setdefault("errors", []).append(
                f"ptb-upstream exited with {upstream.returncode} during this pair (see upstream-{name}.log): "
                "its figures are void")
        return res
    finally:
        procs.stop(upstream)


def measure(pair, procs, args, upstream_pid):
    """Starts the pair, runs the phases, stops it. Returns the pair's result dict."""
    res = {"pair": pair.name}
    os.makedirs(pair.dir, exist_ok=True)
    try:
        skip = pair.start(procs)
        if skip:
            res["skipped"] = skip
            return res
        addr = f"{LOOP}:{pair.client_port}"
        res["pids"] = len(pair.pids())
        errors = res.setdefault("errors", [])

        # Warm-up: the pair's own session/connection is up and the upstream pool is filled a little.
        out = load("seq", "--addr", addr, "--n", 200, "--timeout", 10, "--deadline", 30, timeout=45)
        if not out.get("ok"):
            raise BenchError(f"warm-up requests failed: {out.get('error') or out.get('last_error')}")

        # (a) 64 keep-alive clients.
        pids = pair.pids()
        c0, s0, u0, t0 = bench.cpu_ns(pids), pair.cpu_by_side(), bench.cpu_ns([upstream_pid]), time.monotonic()
        out = load("conc", "--addr", addr, "--clients", args.clients, "--duration", args.duration,
                   "--timeout", 10, timeout=args.duration + 60)
        c1, s1, u1, wall = bench.cpu_ns(pids), pair.cpu_by_side(), bench.cpu_ns([upstream_pid]), time.monotonic() - t0
        lat = out.get("lat_ms") or []
        conc = summarize(lat)
        conc["errors"] = out.get("errors")
        if out.get("errors"):
            errors.append(f"{args.clients} clients: {out['errors']} failed request(s), last: {out.get('last_error')}")
        if lat and out.get("elapsed_s"):
            cpu_s = (c1 - c0) / 1e9
            conc.update(rps=len(lat) / out["elapsed_s"], elapsed_s=out["elapsed_s"], cpu_s=cpu_s,
                        cpu_us_per_req=cpu_s * 1e6 / len(lat), req_per_cpu_s=len(lat) / cpu_s if cpu_s else None,
                        proxy_cores=cpu_s / wall, upstream_cpu_s=(u1 - u0) / 1e9,
                        client_share=client_share(s0, s1))
        elif not out.get("ok"):
            errors.append(f"{args.clients} clients: {out.get('error') or out.get('last_error')}")
        res["conc"] = conc

        # (b) one large GET.
        c0, s0 = bench.cpu_ns(pair.pids()), pair.cpu_by_side()
        out = load("get", "--addr", addr, "--size", args.bytes, "--timeout", 30, "--deadline", args.bulk_deadline,
                   timeout=args.bulk_deadline + 30)
        c1, s1 = bench.cpu_ns(pair.pids()), pair.cpu_by_side()
        get = {"ok": bool(out.get("ok")), "seconds": out.get("seconds"), "size": args.bytes}
        if out.get("ok") and out.get("seconds"):
            cpu_s = (c1 - c0) / 1e9
            get.update(gbit_s=args.bytes * 8 / out["seconds"] / 1e9, cpu_s=cpu_s,
                       cpu_s_per_gib=cpu_s / (args.bytes / GIB), proxy_cores=cpu_s / out["seconds"],
                       client_share=client_share(s0, s1))
        else:
            get["error"] = out.get("error")
            errors.append(f"GET {human_bytes(args.bytes)}: {out.get('error')}")
        res["get"] = get
        res["rss_kib"] = bench.vm_hwm_kib(pair.pids())
        for p in pair.started:
            if p.poll() is not None:
                errors.append(f"process {p.args[-1]} exited with {p.returncode}")
    except BenchError as e:
        res["skipped"] = str(e)
    finally:
        pair.stop(procs)
    return res


def client_share(before, after):
    """The client side's share of the pair's CPU between two cpu_by_side() samples, in %."""
    d = {k: after.get(k, 0) - before.get(k, 0) for k in before}
    total = sum(d.values())
    return 100 * d.get("client", 0) / total if total else None


MEDIAN_KEYS = {"conc": ("rps", "cpu_us_per_req", "req_per_cpu_s", "p50", "p99", "proxy_cores", "client_share"),
               "get": ("gbit_s", "seconds", "cpu_s_per_gib", "proxy_cores", "client_share")}


def median(values):
    v = sorted(x for x in values if x is not None)
    if not v:
        return None
    m = len(v) // 2
    return v[m] if len(v) % 2 else (v[m - 1] + v[m]) / 2


def combine(rounds):
    """One pair's rounds as one result: the median of each figure over the rounds that measured it;
    notes carry their round. A single round is returned as it is."""
    if len(rounds) == 1:
        return rounds[0]
    ok = [r for r in rounds if not r.get("skipped")]
    out = {"pair": rounds[0]["pair"], "rounds": len(rounds), "errors": []}
    for i, r in enumerate(rounds, 1):
        out["errors"] += [f"round {i}: {e}" for e in r.get("errors", [])]
        if r.get("skipped"):
            out["errors"].append(f"round {i}: skipped: {r['skipped']}")
    if not ok:
        out["skipped"] = rounds[0]["skipped"]
        return out
    for phase, keys in MEDIAN_KEYS.items():
        out[phase] = {k: median(g(r, phase, k) for r in ok) for k in keys}
    out["get"]["ok"] = any(g(r, "get", "ok") for r in ok)
    out["rss_kib"] = median(r.get("rss_kib") for r in ok)
    return out


# ----------------------------------------------------------------------------- report


def human_bytes(n):
    if n % GIB == 0:
        return f"{n // GIB} GiB"
    if n % MIB == 0:
        return f"{n // MIB} MiB"
    return f"{n} bytes"


def g(r, *ks):
    for k in ks:
        if not isinstance(r, dict):
            return None
        r = r.get(k)
    return r


def figures(args):
    """(label, getter, whether a ptproxy/HAProxy ratio means something)"""
    size = human_bytes(args.bytes)
    n = args.clients
    return [
        (f"{n} clients: requests/s", lambda r: g(r, "conc", "rps"), True),
        (f"{n} clients: proxy CPU µs / request (both sides)", lambda r: g(r, "conc", "cpu_us_per_req"), True),
        (f"{n} clients: requests / proxy CPU second", lambda r: g(r, "conc", "req_per_cpu_s"), True),
        (f"{n} clients: p50 latency (ms)", lambda r: g(r, "conc", "p50"), True),
        (f"{n} clients: p99 latency (ms)", lambda r: g(r, "conc", "p99"), True),
        (f"{n} clients: proxy CPU busy (cores)", lambda r: g(r, "conc", "proxy_cores"), True),
        (f"{n} clients: client side's share of the CPU (%)", lambda r: g(r, "conc", "client_share"), False),
        (f"GET {size}: Gbit/s", lambda r: g(r, "get", "gbit_s"), True),
        (f"GET {size}: seconds", lambda r: g(r, "get", "seconds") if g(r, "get", "ok") else None, True),
        (f"GET {size}: proxy CPU s / GiB (both sides)", lambda r: g(r, "get", "cpu_s_per_gib"), True),
        (f"GET {size}: proxy CPU busy (cores)", lambda r: g(r, "get", "proxy_cores"), True),
        (f"GET {size}: client side's share of the CPU (%)", lambda r: g(r, "get", "client_share"), False),
        ("proxy peak RSS, both sides (MiB)", lambda r: r.get("rss_kib") / 1024 if r.get("rss_kib") else None, True),
    ]


def ratio(a, b):
    if a is None or b is None or b == 0:
        return None
    return a / b


def targets(results):
    pt, hp = results.get("ptproxy") or {}, results.get("haproxy") or {}
    rows = []
    cpu_gib = ratio(g(pt, "get", "cpu_s_per_gib"), g(hp, "get", "cpu_s_per_gib"))
    rows.append(("proxy CPU per GiB ≤ 1.5× the HAProxy pair", cpu_gib, cpu_gib is not None and cpu_gib <= 1.5))
    rps_cpu = ratio(g(pt, "conc", "req_per_cpu_s"), g(hp, "conc", "req_per_cpu_s"))
    rows.append(("requests per proxy CPU second ≥ the HAProxy pair", rps_cpu, rps_cpu is not None and rps_cpu >= 1.0))
    return rows


def table(results, args):
    """The figures table: one column per measured pair, then ptproxy ÷ HAProxy."""
    shown = [n for n in PAIR_NAMES if n in results]
    if not shown:
        return ["No pair was measured (see the notes).", ""]
    both = len(shown) == 2
    L = ["| figure | " + " | ".join(shown) + (" | ptproxy / HAProxy |" if both else ""),
         "|---|" + "---:|" * (len(shown) + both)]
    for label, getter, compare in figures(args):
        values = [None if results[n].get("skipped") else getter(results[n]) for n in shown]
        cells = ["skipped" if results[n].get("skipped") else fmt_num(v) for n, v in zip(shown, values)]
        if both:
            rr = ratio(*values) if compare else None
            cells.append("—" if rr is None else f"{rr:.2f}")
        L.append(f"| {label} | " + " | ".join(cells) + " |")
    L.append("")
    return L


def report(results, args, meta):
    L = [f"# ptproxy loopback benchmark — {meta['started']}", ""]
    L.append(f"- command: `{meta['command']}`")
    L.append(f"- ptproxy: `{meta['ptproxy_version']}` (`{args.ptproxy_bin}`), commit `{meta['commit']}`")
    L.append(f"- machine: {meta['machine']}; load average at the start "
             + " / ".join(f"{x:.2f}" for x in meta["loadavg_start"]) + " (other work shares the machine)")
    L.append(f"- link: none: everything on 127.0.0.1 (loopback, MTU {meta['lo_mtu']}), no emulator")
    L.append(f"- pairs, one after another, each in front of its own fresh ptb-upstream: ptproxy (one process per side, "
             f"BBR2, `initial_rtt_ms` {args.initial_rtt_ms}, access log off; `templates/ptproxy-*.json`) and "
             f"HAProxy → HTTP/2 over TLS 1.3 → HAProxy (nbthread {args.haproxy_threads} per side, "
             f"`templates/haproxy-*.cfg`)")
    L.append(f"- per pair: 200 warm-up requests, then {args.clients} keep-alive clients looping `GET /small` "
             f"(100-byte body) for {args.duration:g} s, then one `GET /bytes/{args.bytes}` "
             f"(deadline {args.bulk_deadline:g} s)"
             + (f"; {args.rounds} rounds, pairs alternating, each figure the median over the rounds"
                if args.rounds > 1 else ""))
    L.append("- proxy CPU: user+system of both proxy processes (all threads), from `/proc/PID/task/*/schedstat`, "
             "over each phase; the load generator and the upstream share the same cores and are not counted")
    L.append(f"- run time: {meta['elapsed_s']:.0f} s")
    L.append("")
    L += table(results, args)
    L.append("Ratios are ptproxy ÷ HAProxy, whatever the figure's direction (for req/s and Gbit/s higher is "
             "better, for CPU and latency lower is better). On loopback the load generator, the upstream and "
             "both proxies share the machine's cores: req/s and Gbit/s are bounded by the machine, so the "
             "per-request and per-GiB CPU figures are the comparison.")
    L.append("")
    if "ptproxy" in results and "haproxy" in results:
        L += ["## Issue 13 targets (loopback)", "", "| target | ratio | result |", "|---|---:|---|"]
        for label, rr, ok in targets(results):
            L.append(f"| {label} | {'—' if rr is None else f'{rr:.2f}'} | {'PASS' if ok else 'FAIL'} |")
        L.append("")
    notes = []
    for n, r in results.items():
        if r.get("skipped"):
            notes.append(f"- {n}: skipped: {r['skipped']}")
        for e in r.get("errors", []):
            notes.append(f"- {n}: {e}")
    notes += [f"- {s}" for s in meta.get("stopped", [])]
    if notes:
        L += ["## Notes", ""] + notes + [""]
    return "\n".join(L) + "\n"


# ----------------------------------------------------------------------------- main


def one_line(res):
    if res.get("skipped"):
        return f"skipped: {res['skipped']}"
    return (f"{fmt_num(g(res, 'conc', 'rps'))} req/s, {fmt_num(g(res, 'conc', 'cpu_us_per_req'))} µs CPU/req, "
            f"GET {fmt_num(g(res, 'get', 'gbit_s'))} Gbit/s, {fmt_num(g(res, 'get', 'cpu_s_per_gib'))} CPU s/GiB"
            + (f"; {len(res['errors'])} note(s)" if res.get("errors") else ""))


def lo_mtu():
    try:
        with open("/sys/class/net/lo/mtu") as f:
            return f.read().strip()
    except OSError:
        return "?"


def main():
    ap = argparse.ArgumentParser(description="ptproxy vs HAProxy h2 pair on loopback (see benches/README.md)")
    ap.add_argument("--duration", type=float, help="seconds of the 64-client phase (default 10; --quick 3)")
    ap.add_argument("--bytes", type=int, help="size of the single GET (default 1 GiB; --quick 256 MiB)")
    ap.add_argument("--quick", action="store_true", help="3 s of clients, 256 MiB GET, one round")
    ap.add_argument("--clients", type=int, default=64)
    ap.add_argument("--rounds", type=int, help="run the pairs N times, alternating, and report the medians "
                    "(default 3; --quick 1)")
    ap.add_argument("--ptproxy-bin", default=os.path.join(ROOT, "target", "release", "ptproxy"))
    ap.add_argument("--pairs", default=",".join(PAIR_NAMES), help="comma-separated: ptproxy,haproxy")
    ap.add_argument("--initial-rtt-ms", type=int, default=1, help="ptproxy transport.initial_rtt_ms (default 1)")
    ap.add_argument("--haproxy-bin", default=shutil.which("haproxy") or "/usr/sbin/haproxy")
    ap.add_argument("--haproxy-threads", type=int, default=1)
    ap.add_argument("--h2-window", type=int, default=4194304, help="HAProxy tune.h2.initial-window-size")
    ap.add_argument("--bulk-deadline", type=float, help="bound on the GET, s (default 60 + 10 s per 100 MiB)")
    ap.add_argument("--out", default=os.path.join(HERE, "results"))
    ap.add_argument("--command", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    args.duration = args.duration or (3 if args.quick else 10)
    args.rounds = max(1, args.rounds or (1 if args.quick else 3))
    args.bytes = args.bytes or (256 * MIB if args.quick else GIB)
    args.bulk_deadline = args.bulk_deadline or 60 + 10 * args.bytes / (100 * MIB)
    args.ptproxy_bin = os.path.abspath(args.ptproxy_bin)
    want = [p for p in args.pairs.split(",") if p]
    for p in want:
        if p not in PAIR_NAMES:
            raise BenchError(f"--pairs: unknown pair {p!r} (have {', '.join(PAIR_NAMES)})")
    for b in ("ptb-load", "ptb-upstream"):
        if not os.access(os.path.join(TOOLS, b), os.X_OK):
            raise BenchError(f"{TOOLS}/{b} missing: cargo build --release --manifest-path benches/tools/Cargo.toml")

    started = datetime.datetime.now()
    stamp = "loopback-" + started.strftime("%Y%m%d-%H%M%S")
    run_dir = os.path.join(args.out, "runs", stamp)
    os.makedirs(run_dir, exist_ok=True)
    state = os.environ.get("PTB_STATE_DIR") or run_dir  # loopback.sh's trap reads <state>/pids
    procs = bench.Procs(os.path.join(state, "pids"))
    t_start = time.monotonic()
    meta = {"started": started.strftime("%Y-%m-%d %H:%M:%S"), "stopped": [], "lo_mtu": lo_mtu(),
            "command": (args.command or " ".join(map(shlex.quote, sys.argv))).strip(), "commit": bench.git_commit(),
            "loadavg_start": os.getloadavg()}
    if os.access(args.ptproxy_bin, os.X_OK):
        r = subprocess.run([args.ptproxy_bin, "--version"], capture_output=True, text=True, timeout=10)
        meta["ptproxy_version"] = r.stdout.strip() or "n/a"
    else:
        meta["ptproxy_version"] = "n/a"
    try:
        hv = subprocess.run([args.haproxy_bin, "-v"], capture_output=True, text=True, timeout=10).stdout.split()[2]
    except (OSError, IndexError, subprocess.TimeoutExpired):
        hv = "not installed"
    meta["machine"] = f"{os.cpu_count()} CPUs, Linux {platform.release()}, HAProxy {hv}"

    def on_signal(signum, frame):
        raise Stop(f"stopped by signal {signum}")

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    rounds = {}
    log(f"run dir {run_dir}; pairs {', '.join(want)}")
    try:
        pki = bench.make_pki(run_dir)
        for rnd in range(1, args.rounds + 1):
            for name in [n for n in PAIR_NAMES if n in want]:
                log(f"{name} ..." + (f" (round {rnd} of {args.rounds})" if args.rounds > 1 else ""))
                t0 = time.monotonic()
                res = run_pair(name, args, pki, os.path.join(run_dir, f"round{rnd}") if args.rounds > 1 else run_dir,
                               procs)
                rounds.setdefault(name, []).append(res)
                log(f"{name} done in {time.monotonic() - t0:.0f} s: {one_line(res)}")
    except Stop as e:
        meta["stopped"].append(f"run stopped early: {e}; the table holds what was measured before")
        log(str(e))
    finally:
        procs.stop_all()

    meta["elapsed_s"] = time.monotonic() - t_start
    results = {name: combine(rs) for name, rs in rounds.items()}
    md = report(results, args, meta)
    os.makedirs(args.out, exist_ok=True)
    md_path = os.path.join(args.out, f"{stamp}.md")
    with open(md_path, "w") as f:
        f.write(md)
    with open(os.path.join(args.out, f"{stamp}.json"), "w") as f:
        json.dump({"meta": meta, "args": vars(args), "results": results, "rounds": rounds,
                   "targets": [dict(target=t, ratio=r, ok=ok) for t, r, ok in targets(results)]}, f, indent=1)
    print()
    print(md)
    log(f"report: {md_path}")
    return 0 if results and not meta["stopped"] else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchError as e:
        print(f"loopback: {e}", file=sys.stderr)
        sys.exit(2)
