#!/usr/bin/env python3
"""ptproxy side-by-side benchmark: orchestrates namespaces, the emulated link, the pairs and
the load generator, and writes the markdown report. Run it through benches/run.sh, which
installs and builds what is missing; see benches/README.md for what is measured and how.

Only the Python standard library is used. Every child process is started in its own process
group, recorded in <run dir>/pids, and stopped by its id; every wait has a timeout.
"""

import argparse
import datetime
import json
import math
import os
import platform
import re
import shlex
import signal
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
TOOLS = os.path.join(HERE, "tools", "target", "release")
TEMPLATES = os.path.join(HERE, "templates")
PTPROXY = os.path.join(ROOT, "target", "production", "ptproxy")

NS_C, NS_S = "ptb-client", "ptb-server"
A_ADDR, B_ADDR = "10.201.0.1", "10.201.0.2"
SERVER_NAME, CLIENT_NAME = "ptb-server.bench", "ptb-client.bench"
UPSTREAM_PORT = 8000
SMALL_BODY = 100

KIND_TEMPLATES = {
    "nginx": ("nginx-client.conf", "nginx-server.conf"),
    "haproxy": ("haproxy-client.cfg", "haproxy-server.cfg"),
    "ptproxy": ("ptproxy-client.json", "ptproxy-server.json"),
}


class BenchError(Exception):
    pass


class Stop(Exception):
    pass


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# ----------------------------------------------------------------------------- links


class Link:
    def __init__(self, name, rtt_ms, loss_pct, rate_mbit=0.0, queue_bytes=0):
        self.name = name
        self.rtt_ms = float(rtt_ms)
        self.loss_pct = float(loss_pct)
        self.rate_mbit = float(rate_mbit)
        self.queue_bytes = int(queue_bytes)

    def describe(self):
        s = f"RTT {self.rtt_ms:g} ms, loss {self.loss_pct:g}% each way"
        s += f", {self.rate_mbit:g} Mbit/s each way" if self.rate_mbit else ", no rate limit"
        return s

    def to_json(self):
        return dict(name=self.name, rtt_ms=self.rtt_ms, loss_pct=self.loss_pct, rate_mbit=self.rate_mbit,
                    queue_bytes=self.queue_bytes)


def default_links(rtt):
    return [
        Link(f"rtt{rtt:g}", rtt, 0),
        Link(f"rtt{rtt:g}-loss1", rtt, 1),
        Link(f"rtt{rtt:g}-loss2", rtt, 2),
        Link(f"rtt{rtt:g}-loss3", rtt, 3),
        Link(f"rtt{rtt:g}-20mbit", rtt, 0, 20),
    ]


def parse_link(spec):
    """NAME:rtt=50,loss=1,rate=20,queue=125000"""
    if ":" not in spec:
        raise BenchError(f"--link {spec!r}: expected NAME:rtt=MS,loss=PCT[,rate=MBIT][,queue=BYTES]")
    name, rest = spec.split(":", 1)
    kv = dict(rtt=50, loss=0, rate=0, queue=0)
    for part in filter(None, rest.split(",")):
        k, _, v = part.partition("=")
        if k not in kv:
            raise BenchError(f"--link {spec!r}: unknown key {k!r}")
        kv[k] = float(v)
    return Link(name, kv["rtt"], kv["loss"], kv["rate"], kv["queue"])


# ----------------------------------------------------------------------------- processes


class Procs:
    """Every process this run started; stopped by process-group id (their own group)."""

    def __init__(self, pidfile):
        self.pidfile = pidfile
        self.live = []

    def _record(self):
        with open(self.pidfile, "w") as f:
            for p in self.live:
                if p.poll() is None:
                    f.write(f"{p.pid}\n")

    def start(self, ns, argv, logpath, env=None, stdin=None, stdout=None):
        full = (["ip", "netns", "exec", ns] if ns else []) + argv
        out = stdout if stdout is not None else open(logpath, "ab")
        p = subprocess.Popen(full, stdin=stdin if stdin is not None else subprocess.DEVNULL, stdout=out,
                             stderr=subprocess.STDOUT if stdout is None else open(logpath, "ab"),
                             env=env, start_new_session=True)
        p.ptb_log = logpath
        self.live.append(p)
        self._record()
        return p

    def stop(self, p, grace=3.0):
        if p.poll() is None:
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                p.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                try:
                    p.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    pass
        if p in self.live:
            self.live.remove(p)
        self._record()

    def stop_all(self):
        for p in list(reversed(self.live)):
            self.stop(p, grace=2.0)


def descendants(pids):
    """pids plus all their descendants (nginx workers are children of the master)."""
    children = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                st = f.read()
            ppid = int(st[st.rindex(")") + 2:].split()[1])
            children.setdefault(ppid, []).append(int(d))
        except (OSError, ValueError, IndexError):
            continue
    out, todo = [], list(pids)
    while todo:
        p = todo.pop()
        if p in out:
            continue
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def wait_log(path, needle, what, procs_started, timeout):
    """Waits until `needle` is in the log at `path`; fails at once if one of `procs_started`
    exited, or after `timeout` s."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        try:
            with open(path, errors="replace") as f:
                if needle in f.read():
                    return
        except OSError:
            pass
        for p in procs_started:
            if p.poll() is not None:
                raise BenchError(f"{what} exited (rc {p.returncode}); see {p.ptb_log}")
        time.sleep(0.002)
    raise BenchError(f"{what}: no {needle!r} in its log within {timeout} s; see {path}")


def cpu_ns(pids):
    """CPU time (user+system) of the processes, summed over their threads, in ns.
    /proc/PID/task/TID/schedstat has nanosecond resolution; /proc/PID/stat (10 ms ticks) is the
    fallback."""
    total = 0
    for pid in pids:
        try:
            tids = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        got = False
        for tid in tids:
            try:
                with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                    total += int(f.read().split()[0])
                    got = True
            except (OSError, ValueError, IndexError):
                pass
        if not got:
            try:
                with open(f"/proc/{pid}/stat") as f:
                    st = f.read()
                fields = st[st.rindex(")") + 2:].split()
                total += (int(fields[11]) + int(fields[12])) * 1_000_000_000 // os.sysconf("SC_CLK_TCK")
            except (OSError, ValueError, IndexError):
                pass
    return total


def vm_hwm_kib(pids):
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("VmHWM:"):
                        total += int(line.split()[1])
        except (OSError, ValueError):
            pass
    return total


def run_json(argv, ns, timeout):
    """Runs a helper (in a namespace) that prints one JSON object; bounded by timeout."""
    full = ["ip", "netns", "exec", ns] + argv
    try:
        r = subprocess.run(full, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"ok": False, "error": f"helper timed out after {timeout:.0f} s"}
    try:
        return json.loads(r.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return {"ok": False, "error": f"helper failed (rc {r.returncode}): {r.stderr.strip()[:300]}"}


# ----------------------------------------------------------------------------- relay


class Relay:
    def __init__(self, procs, link, logdir, seed):
        self.link = link
        argv = [os.path.join(TOOLS, "ptb-relay"), "--a-ns", NS_C, "--b-ns", NS_S, "--a-addr", A_ADDR,
                "--b-addr", B_ADDR, "--delay-ms", str(link.rtt_ms / 2), "--loss-a2b", str(link.loss_pct / 100),
                "--loss-b2a", str(link.loss_pct / 100), "--seed", str(seed)]
        if link.rate_mbit:
            argv += ["--rate-mbit", str(link.rate_mbit)]
        if link.queue_bytes:
            argv += ["--queue-bytes", str(link.queue_bytes)]
        self.p = procs.start(None, argv, os.path.join(logdir, f"relay-{link.name}.log"), stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE)
        self.procs = procs
        line = self._readline(10)
        if line != "READY":
            raise BenchError(f"relay did not start ({line!r}); see {self.p.ptb_log}")

    def _readline(self, timeout):
        import select
        fd = self.p.stdout
        r, _, _ = select.select([fd], [], [], timeout)
        if not r:
            return None
        return fd.readline().decode().strip()

    def cmd(self, c):
        self.p.stdin.write((c + "\n").encode())
        self.p.stdin.flush()
        return self._readline(5)

    def reset(self, seed):
        self.cmd(f"reset {seed}")

    def stats(self):
        line = self.cmd("stats")
        try:
            return json.loads(line)
        except (TypeError, ValueError):
            return None

    def close(self):
        try:
            self.p.stdin.write(b"quit\n")
            self.p.stdin.flush()
        except OSError:
            pass
        self.procs.stop(self.p)


class NetemLink:
    """The same interface as Relay, on a veth pair with a netem qdisc on each end's egress.
    Used where the kernel has sch_netem (`--emulator auto` detects it). Link bytes are the
    qdiscs' sent bytes plus their drops at the mean packet size (netem has no per-phase reseed:
    the loss sequence differs between pairs)."""

    def __init__(self, link):
        self.link = link
        if subprocess.run(["ip", "-n", NS_C, "link", "show", "ptba0"], capture_output=True).returncode != 0:
            sh(["ip", "-n", NS_C, "link", "add", "ptba0", "type", "veth", "peer", "name", "ptbb0", "netns", NS_S])
            for ns, dev, addr in ((NS_C, "ptba0", A_ADDR), (NS_S, "ptbb0", B_ADDR)):
                sh(["ip", "-n", ns, "addr", "add", f"{addr}/24", "dev", dev])
                sh(["ip", "-n", ns, "link", "set", dev, "mtu", "1500", "up"])
                # Segmentation offloads would hand netem 64 KiB super-packets: real packets only.
                r = subprocess.run(["ip", "netns", "exec", ns, "ethtool", "-K", dev, "tso", "off", "gso", "off",
                                    "gro", "off"], capture_output=True, text=True)
                if r.returncode != 0:
                    log(f"warning: ethtool -K {dev} failed ({r.stderr.strip()[:100]}); rate emulation may be coarse")
        for ns, dev in ((NS_C, "ptba0"), (NS_S, "ptbb0")):
            argv = ["ip", "netns", "exec", ns, "tc", "qdisc", "replace", "dev", dev, "root", "netem",
                    "delay", f"{link.rtt_ms / 2:g}ms"]
            if link.loss_pct:
                argv += ["loss", f"{link.loss_pct:g}%"]
            if link.rate_mbit:
                bytes_per_s = link.rate_mbit * 1e6 / 8
                queue = link.queue_bytes or max(65536, int(bytes_per_s * link.rtt_ms / 1000))  # as the relay
                in_delay_line = int(bytes_per_s * link.rtt_ms / 2000)  # netem's limit counts these too
                argv += ["rate", f"{link.rate_mbit:g}mbit", "limit", str(max(64, (queue + in_delay_line) // 1500))]
            else:
                argv += ["limit", "100000"]
            sh(argv)
        self.base = self._counters()

    def _counters(self):
        out = {}
        for key, ns, dev in (("a2b", NS_C, "ptba0"), ("b2a", NS_S, "ptbb0")):
            r = subprocess.run(["ip", "netns", "exec", ns, "tc", "-s", "-j", "qdisc", "show", "dev", dev],
                               capture_output=True, text=True)
            try:
                q = [x for x in json.loads(r.stdout) if x.get("kind") == "netem"][0]
                out[key] = (int(q.get("bytes", 0)), int(q.get("packets", 0)), int(q.get("drops", 0)))
            except (ValueError, IndexError):
                out[key] = (0, 0, 0)
        return out

    def reset(self, seed):
        self.base = self._counters()

    def stats(self):
        now = self._counters()
        st = {}
        for k in ("a2b", "b2a"):
            b, p, d = (now[k][i] - self.base[k][i] for i in range(3))
            mean = b / p if p else 0
            st[k] = {"offered_pkts": p + d, "offered_bytes": int(b + d * mean), "lost_pkts": d}
        return st

    def close(self):
        for ns, dev in ((NS_C, "ptba0"), (NS_S, "ptbb0")):
            subprocess.run(["ip", "netns", "exec", ns, "tc", "qdisc", "del", "dev", dev, "root"], capture_output=True)


def link_bytes(st):
    if not st:
        return None
    return st["a2b"]["offered_bytes"] + st["b2a"]["offered_bytes"]


# ----------------------------------------------------------------------------- pairs


def render(template, values):
    with open(os.path.join(TEMPLATES, template)) as f:
        text = f.read()

    def sub(m):
        k = m.group(1)
        if k == "extra" and k not in values:  # optional: a pair's extra lines, none by default
            return ""
        if k not in values:
            raise BenchError(f"{template}: unknown placeholder {{{{{k}}}}}")
        return str(values[k])

    return re.sub(r"\{\{(\w+)\}\}", sub, text)


def deep_merge(base, extra):
    for k, v in extra.items():
        if isinstance(v, dict) and isinstance(base.get(k), dict):
            deep_merge(base[k], v)
        else:
            base[k] = v
    return base


class Pair:
    def __init__(self, spec, index):
        self.spec = spec
        self.name = spec["name"]
        self.kind = spec["kind"]
        if self.kind not in ("direct", "nginx", "haproxy", "ptproxy"):
            raise BenchError(f"pairs.json: {self.name}: unknown kind {self.kind!r}")
        self.peer = bool(spec.get("peer"))
        self.links = spec.get("links")
        # A/B of two builds in one run: a pair may name its own ptproxy binary.
        self.binary = spec.get("binary", PTPROXY)
        self.client_port = 18080 + index
        self.server_port = 18443 + index
        self.procs_started = []

    def addr(self):
        if self.kind == "direct":
            return f"{B_ADDR}:{UPSTREAM_PORT}"
        return f"127.0.0.1:{self.client_port}"

    def values(self, link, pki, d, args):
        return dict(client_port=self.client_port, server_port=self.server_port, server_addr=B_ADDR,
                    client_addr=A_ADDR, server_name=SERVER_NAME, client_name=CLIENT_NAME, pki=pki, dir=d,
                    upstream_port=UPSTREAM_PORT, rtt_ms=int(link.rtt_ms), nginx_workers=args.nginx_workers,
                    haproxy_threads=args.haproxy_threads, h2_window=args.h2_window)

    def link_hint(self, link):
        """`transport.link` from the emulated link: its rate, or the pair's `unlimited_mbps` on a link
        without a rate limit, and its RTT."""
        hint = self.spec["link_hint"]
        rate = int(link.rate_mbit) or int(hint.get("unlimited_mbps", 1000))
        return dict(rate_mbps=rate, rtt_ms=int(link.rtt_ms), **hint.get("extra", {}))

    def write_configs(self, link, pki, d, args):
        """Returns (client config path, server config path)."""
        tc, ts = self.spec.get("templates", KIND_TEMPLATES[self.kind])
        paths = []
        for side, tmpl in (("client", tc), ("server", ts)):
            sd = os.path.join(d, side)
            os.makedirs(sd, exist_ok=True)
            # `server_extra`/`client_extra` (pairs-compression.json): lines for the template's {{extra}}.
            text = render(tmpl, dict(self.values(link, pki, sd, args), extra=self.spec.get(f"{side}_extra", "")))
            if self.kind == "ptproxy":
                cfg = json.loads(text)
                deep_merge(cfg.setdefault("transport", {}), self.spec.get("transport", {}))
                deep_merge(cfg.setdefault("transport", {}), self.spec.get(f"{side}_transport", {}))
                deep_merge(cfg, self.spec.get(side, {}))
                if "link_hint" in self.spec:
                    cfg["transport"]["link"] = self.link_hint(link)
                text = json.dumps(cfg, indent=2)
            path = os.path.join(sd, os.path.basename(tmpl))
            with open(path, "w") as f:
                f.write(text + "\n")
            paths.append(path)
        return paths

    def start(self, procs, link, pki, d, args):
        """Starts both sides and waits until ready. Returns None, or a reason for skipping."""
        if self.kind == "direct":
            return None
        cc, sc = self.write_configs(link, pki, d, args)
        slog, clog = os.path.join(d, "server.log"), os.path.join(d, "client.log")
        if self.kind == "nginx":
            for ns, cfg in ((NS_C, cc), (NS_S, sc)):
                r = subprocess.run(["ip", "netns", "exec", ns, "nginx", "-t", "-q", "-e", os.devnull, "-c", cfg],
                                   capture_output=True, text=True)
                if r.returncode != 0:
                    return f"nginx -t rejected {os.path.basename(cfg)}: {r.stderr.strip()[:300]}"
            self.procs_started.append(procs.start(NS_S, ["nginx", "-e", os.path.join(d, "server", "nginx-error.log"),
                                                         "-c", sc], slog))
            self._wait_port(NS_S, f"{B_ADDR}:{self.server_port}", "server-side nginx")
            self.procs_started.append(procs.start(NS_C, ["nginx", "-e", os.path.join(d, "client", "nginx-error.log"),
                                                         "-c", cc], clog))
            self._wait_port(NS_C, f"127.0.0.1:{self.client_port}", "client-side nginx")
        elif self.kind == "haproxy":
            for ns, cfg in ((NS_C, cc), (NS_S, sc)):
                r = subprocess.run(["ip", "netns", "exec", ns, "haproxy", "-c", "-q", "-f", cfg],
                                   capture_output=True, text=True)
                if r.returncode != 0:
                    return f"haproxy -c rejected {os.path.basename(cfg)}: {(r.stdout + r.stderr).strip()[:300]}"
            self.procs_started.append(procs.start(NS_S, ["haproxy", "-db", "-f", sc], slog))
            self._wait_port(NS_S, f"{B_ADDR}:{self.server_port}", "server-side haproxy")
            self.procs_started.append(procs.start(NS_C, ["haproxy", "-db", "-f", cc], clog))
            self._wait_port(NS_C, f"127.0.0.1:{self.client_port}", "client-side haproxy")
        elif self.kind == "ptproxy":
            for role, cfg in (("client", cc), ("server", sc)):
                r = subprocess.run([self.binary, "--role", role, "--check", cfg], capture_output=True, text=True)
                if r.returncode != 0:
                    return f"ptproxy --check rejected the {role} config: {(r.stdout + r.stderr).strip()[:300]}"
            env = dict(os.environ, RUST_LOG=os.environ.get("PTB_RUST_LOG", "info"))
            self.procs_started.append(procs.start(NS_S, [self.binary, "--role", "server", sc], slog, env=env))
            self._wait_log(slog, "listening for QUIC", "server-side ptproxy", 10)
            self.procs_started.append(procs.start(NS_C, [self.binary, "--role", "client", cc], clog, env=env))
            self._wait_log(clog, "session established", "client-side ptproxy", 20)
        return None

    def _wait_port(self, ns, addr, what):
        r = run_json([os.path.join(TOOLS, "ptb-load"), "wait", "--addr", addr, "--deadline", "15"], ns, 20)
        if not r.get("ok"):
            raise BenchError(f"{self.name}: {what} did not accept on {addr} within 15 s")

    def _wait_log(self, path, needle, what, timeout):
        wait_log(path, needle, f"{self.name}: {what}", self.procs_started, timeout)

    def pids(self):
        return descendants([p.pid for p in self.procs_started if p.poll() is None])

    def stop(self, procs):
        for p in reversed(self.procs_started):
            procs.stop(p)
        self.procs_started = []


# ----------------------------------------------------------------------------- stats


def pct(values, q):
    if not values:
        return None
    s = sorted(values)
    k = max(0, math.ceil(q / 100 * len(s)) - 1)
    return s[k]


def summarize(lat):
    if not lat:
        return {}
    return dict(p50=pct(lat, 50), p90=pct(lat, 90), p99=pct(lat, 99), max=max(lat), mean=sum(lat) / len(lat),
                count=len(lat))


# ----------------------------------------------------------------------------- one (pair, link)


def start_on_link(pair, procs, link, pki, d, args, relay, seed, res):
    """Starts `pair` for a phase on `link`: both namespaces' TCP congestion control (new sockets
    pick it up: the run's --tcp-cc or the pair's own "tcp_cc" from pairs.json), the relay's loss
    generator reset to `seed`, then the pair's processes. True (with res["skipped"] set) when the
    pair cannot run."""
    tcp_cc = pair.spec.get("tcp_cc", args.tcp_cc)
    for ns in (NS_C, NS_S):
        sh(["ip", "netns", "exec", ns, "sysctl", "-qw", f"net.ipv4.tcp_congestion_control={tcp_cc}"])
    res["tcp_cc"] = tcp_cc
    relay.reset(seed)
    skip = pair.start(procs, link, pki, d, args)
    if skip:
        res["skipped"] = skip
        return True
    return False


def measure(pair, link, relay, procs, pki, d, args, deadline_at):
    os.makedirs(d, exist_ok=True)
    res = {"pair": pair.name, "link": link.name}
    load = os.path.join(TOOLS, "ptb-load")
    addr = pair.addr()
    seed = args.seed

    def budget_left():
        return deadline_at - time.monotonic()

    def phase(name, argv, timeout):
        if budget_left() < 5:
            raise Stop(f"time budget exhausted before {pair.name}/{link.name}/{name}")
        relay.reset(seed)
        out = run_json([load] + argv + ["--addr", addr], NS_C, timeout)
        st = relay.stats()
        out["link_bytes"] = link_bytes(st)
        res.setdefault("link_stats", {})[name] = st  # raw per-direction counters, in the .json
        if not out.get("ok"):
            res.setdefault("errors", []).append(f"{name}: {out.get('error') or out.get('last_error')}")
        elif out.get("errors"):
            res.setdefault("errors", []).append(f"{name}: {out['errors']} failed request(s), last: {out.get('last_error')}")
        return out

    if start_on_link(pair, procs, link, pki, d, args, relay, seed, res):
        return res
    # Cold: the pair has just become ready; nothing has crossed it yet.
    out = phase("cold", ["cold", "--timeout", "10"], 20)
    res["cold_ms"] = out.get("ms") if out.get("ok") else None

    pids = pair.pids()
    res["pids"] = len(pids)
    c0 = cpu_ns(pids)
    n = args.seq_n
    seq_to = n * 5 * link.rtt_ms / 1000 + 30
    for key, extra in (("seq_ka", []), ("seq_new", ["--new-conn"])):
        out = phase(key, ["seq", "--n", str(n), "--timeout", "10", "--deadline", str(seq_to)] + extra, seq_to + 15)
        lat = out.get("lat_ms") or []
        res[key] = summarize(lat)
        res[key]["errors"] = out.get("errors", 0 if out.get("ok") else None)
        if out.get("link_bytes") is not None and lat:
            res[key]["link_bytes_per_req"] = out["link_bytes"] / len(lat)
    c1 = cpu_ns(pair.pids())
    done = (res["seq_ka"].get("count") or 0) + (res["seq_new"].get("count") or 0)
    if pids and done:
        res["cpu_ms_per_1000_seq"] = (c1 - c0) / 1e6 / done * 1000

    c0 = cpu_ns(pair.pids())
    out = phase("conc", ["conc", "--clients", str(args.conc_clients), "--duration", str(args.conc_seconds),
                         "--timeout", "10"], args.conc_seconds + 40)
    c1 = cpu_ns(pair.pids())
    lat = out.get("lat_ms") or []
    res["conc"] = summarize(lat)
    if lat and out.get("elapsed_s"):
        res["conc"]["rps"] = len(lat) / out["elapsed_s"]
        res["conc"]["errors"] = out.get("errors", 0)
        if pids:
            res["cpu_ms_per_1000_conc"] = (c1 - c0) / 1e6 / len(lat) * 1000
        if out.get("link_bytes") is not None:
            res["conc"]["link_bytes_per_req"] = out["link_bytes"] / len(lat)

    size = int(args.bulk_mib * 1024 * 1024)
    for key in ("get", "post"):
        out = phase(key, [key, "--size", str(size), "--timeout", "30", "--deadline", str(args.bulk_deadline)],
                    args.bulk_deadline + 20)
        res[key] = {"ok": bool(out.get("ok")), "seconds": out.get("seconds"), "size": size}
        if out.get("link_bytes") is not None:
            res[key]["link_bytes"] = out["link_bytes"]
        if not out.get("ok"):
            res[key]["error"] = out.get("error")

    pids = pair.pids()
    if pids:
        res["rss_kib"] = vm_hwm_kib(pids)
    # Processes that died during the run are a finding, not a crash of the benchmark.
    for p in pair.procs_started:
        if p.poll() is not None:
            res.setdefault("errors", []).append(f"process {p.args[-1]} exited with {p.returncode}")
    return res


# ----------------------------------------------------------------------------- report


def floor_small(link):
    return link.rtt_ms


def floor_bulk(link, size):
    if not link.rate_mbit:
        return None
    return link.rtt_ms / 1000 + size * 8 / (link.rate_mbit * 1e6)


def fmt_num(v, unit=""):
    if v is None:
        return "—"
    if abs(v) >= 100:
        s = f"{v:.0f}"
    elif abs(v) >= 10:
        s = f"{v:.1f}"
    else:
        s = f"{v:.2f}"
    return s + unit


def ratio(v, ref, higher_better=False):
    if v is None or ref is None or ref == 0 or v == 0:
        return None
    return ref / v if higher_better else v / ref


def fmt_ratio(r):
    return "—" if r is None else f"{r:.2f}"


# A figure: (row label, getter(res) -> value, unit, floor(link, args) -> value|None, higher_better)
def figures(args):
    size = int(args.bulk_mib * 1024 * 1024)
    mib = f"{args.bulk_mib:g} MiB"
    g = lambda *ks: (lambda r: _get(r, ks))
    return [
        ("cold first request (ms)", g("cold_ms"), lambda l: floor_small(l), False),
        ("seq keep-alive p50 (ms)", g("seq_ka", "p50"), lambda l: floor_small(l), False),
        ("seq keep-alive p90 (ms)", g("seq_ka", "p90"), lambda l: floor_small(l), False),
        ("seq keep-alive p99 (ms)", g("seq_ka", "p99"), lambda l: floor_small(l), False),
        ("seq new-conn p50 (ms)", g("seq_new", "p50"), lambda l: floor_small(l), False),
        ("seq new-conn p90 (ms)", g("seq_new", "p90"), lambda l: floor_small(l), False),
        ("seq new-conn p99 (ms)", g("seq_new", "p99"), lambda l: floor_small(l), False),
        (f"{args.conc_clients} clients req/s", g("conc", "rps"),
         lambda l: args.conc_clients * 1000 / floor_small(l), True),
        (f"{args.conc_clients} clients p99 (ms)", g("conc", "p99"), lambda l: floor_small(l), False),
        (f"GET {mib} (s)", lambda r: _bulk(r, "get"), lambda l: floor_bulk(l, size), False),
        (f"POST {mib} (s)", lambda r: _bulk(r, "post"), lambda l: floor_bulk(l, size), False),
        ("proxy CPU ms / 1000 req (seq)", g("cpu_ms_per_1000_seq"), lambda l: None, False),
        ("proxy CPU ms / 1000 req (32 clients)", g("cpu_ms_per_1000_conc"), lambda l: None, False),
        ("proxy peak RSS, both sides (MiB)", lambda r: (r.get("rss_kib") / 1024) if r.get("rss_kib") else None,
         lambda l: None, False),
        ("link bytes / request (seq keep-alive)", g("seq_ka", "link_bytes_per_req"), lambda l: None, False),
        ("link bytes / request (seq new-conn)", g("seq_new", "link_bytes_per_req"), lambda l: None, False),
        (f"link bytes / payload, GET {mib}", lambda r: _bulk_bytes(r, "get"), lambda l: None, False),
        (f"link bytes / payload, POST {mib}", lambda r: _bulk_bytes(r, "post"), lambda l: None, False),
    ]


def _get(r, ks):
    for k in ks:
        if not isinstance(r, dict):
            return None
        r = r.get(k)
    return r


def _bulk(r, key):
    b = r.get(key) or {}
    return b.get("seconds") if b.get("ok") else None


def _bulk_bytes(r, key):
    b = r.get(key) or {}
    if b.get("ok") and b.get("link_bytes"):
        return b["link_bytes"] / b["size"]
    return None


def best_peer(results, pairs, link, getter, higher_better):
    vals = [getter(results[(p.name, link.name)]) for p in pairs if p.peer and (p.name, link.name) in results]
    vals = [v for v in vals if v is not None]
    if not vals:
        return None
    return max(vals) if higher_better else min(vals)


def report(results, pairs, links, args, meta):
    L = []
    L.append(f"# ptproxy side-by-side benchmark — {meta['started']}")
    L.append("")
    L.append(f"- command: `{meta['command']}`")
    L.append(f"- ptproxy: `{meta['ptproxy_version']}`, commit `{meta['commit']}`")
    L.append(f"- machine: {meta['machine']}")
    L.append(f"- link emulation: {meta['emulation']}")
    L.append(f"- per pair and link: cold request, {args.seq_n} sequential requests on one keep-alive connection "
             f"and {args.seq_n} on a new connection each, {args.conc_clients} keep-alive clients for "
             f"{args.conc_seconds:g} s, GET and POST of {args.bulk_mib:g} MiB (deadline {args.bulk_deadline:g} s)")
    cc = sorted({r.get("tcp_cc") for r in results.values() if r.get("tcp_cc")})
    L.append(f"- TCP congestion control (direct, nginx, HAProxy): {', '.join(cc) or args.tcp_cc}; "
             f"nginx worker_processes {args.nginx_workers}, HAProxy nbthread {args.haproxy_threads}, "
             f"one ptproxy thread per side")
    L.append(f"- run time: {meta['elapsed_s']:.0f} s")
    L.append("")
    L.append("Each cell: `value · ×floor · ×best peer`. The floor is the physical limit: 1 RTT per request on "
             "an established session, RTT + payload serialization for bulk transfers (only on rate-limited links). "
             "The best peer is the better of the nginx and HAProxy pairs on that link and figure. Ratios are "
             "oriented so that 1.00 is the reference and higher is worse (for req/s: reference ÷ value). "
             "— = not applicable or failed (see notes).")
    L.append("")
    for link in links:
        shown = [p for p in pairs if (p.name, link.name) in results]
        if not shown:
            continue
        L.append(f"## {link.name}: {link.describe()}")
        L.append("")
        L.append("| figure | floor | " + " | ".join(p.name for p in shown) + " |")
        L.append("|---|---:|" + "---:|" * len(shown))
        for label, getter, floorf, hb in figures(args):
            fl = floorf(link)
            bp = best_peer(results, shown, link, getter, hb)
            cells = []
            for p in shown:
                r = results[(p.name, link.name)]
                if r.get("skipped"):
                    cells.append("skipped")
                    continue
                v = getter(r)
                if v is None:
                    cells.append("—")
                    continue
                parts = [fmt_num(v)]
                if fl is not None:
                    parts.append(fmt_ratio(ratio(v, fl, hb)))
                elif bp is not None:
                    parts.append("—")
                if bp is not None:
                    parts.append(fmt_ratio(ratio(v, bp, hb)))
                cells.append(" · ".join(parts))
            L.append(f"| {label} | {fmt_num(fl) if fl is not None else '—'} | " + " | ".join(cells) + " |")
        L.append("")
    L += targets_section(results, pairs, links, args)
    L += cost_targets_section(results, pairs, links, args)
    L += compare_section(results, pairs, links, args)
    notes = []
    for (pn, ln), r in results.items():
        if r.get("skipped"):
            notes.append(f"- {pn} / {ln}: skipped: {r['skipped']}")
        for e in r.get("errors", []):
            notes.append(f"- {pn} / {ln}: {e}")
    for s in meta.get("stopped", []):
        notes.append(f"- {s}")
    if notes:
        L.append("## Notes")
        L.append("")
        L += notes
        L.append("")
    return "\n".join(L) + "\n"


def ptproxy_results(results, pairs, links):
    """(pair, link, result) for every ptproxy pair and link that was measured (not skipped)."""
    for p in pairs:
        if p.kind != "ptproxy":
            continue
        for link in links:
            r = results.get((p.name, link.name))
            if r and not r.get("skipped"):
                yield p, link, r


def targets_section(results, pairs, links, args):
    """Issue 4's targets for every ptproxy pair: pass/miss with the measured ratio."""
    size = int(args.bulk_mib * 1024 * 1024)
    rows = []
    for p, link, r in ptproxy_results(results, pairs, links):
        fl = floor_small(link)
        checks = [("cold ≤ 1.2× floor", ratio(r.get("cold_ms"), fl), 1.2),
                  ("seq p50 ≤ 1.1× floor", ratio(_get(r, ("seq_ka", "p50")), fl), 1.1)]
        if link.loss_pct >= 3:
            bp = best_peer(results, pairs, link, lambda x: _get(x, ("seq_ka", "p99")), False)
            checks.append(("seq p99 ≤ 0.5× best peer", ratio(_get(r, ("seq_ka", "p99")), bp), 0.5))
        if link.rate_mbit and link.loss_pct == 0:
            for key in ("get", "post"):
                checks.append((f"{key.upper()} ≥ 90% of {link.rate_mbit:g} Mbit/s",
                               link_rate_share(size, _bulk(r, key), link), -0.9))
        hap = [x for x in pairs if x.kind == "haproxy"]
        if hap:
            hr = results.get((hap[0].name, link.name)) or {}
            checks.append(("CPU/1000 req ≤ HAProxy pair", ratio(r.get("cpu_ms_per_1000_seq"),
                                                                hr.get("cpu_ms_per_1000_seq")), 1.0))
        rows += [target_row(p, link, *c) for c in checks]
    return target_table("Issue 4 targets", rows)


def link_rate_share(size, seconds, link):
    """The share of a rate-limited link's rate that a transfer of `size` bytes in `seconds`
    reached: its floor (the request's RTT plus the payload at the link's rate) over its time,
    as issues 4 and 13 count it (issue 13: 4.24 s floor, 4.44 s through HAProxy, "95.5%")."""
    fl = floor_bulk(link, size)
    return fl / seconds if seconds and fl else None


def target_row(pair, link, label, v, lim):
    """One target's row: `v` against `lim` (a ratio at most `lim`; a negative `lim`: a share of
    the link rate of at least `-lim`)."""
    if v is None:
        verdict, shown = "n/a", "—"
    elif lim < 0:  # at least |lim|
        verdict = "pass" if v >= -lim else f"miss by {(-lim - v) * 100:.0f} pts"
        shown = f"{v * 100:.0f}% of link rate"
    else:
        verdict = "pass" if v <= lim else f"miss ({v / lim:.2f}× the target)"
        shown = f"{v:.2f}×"
    return f"| {pair.name} | {link.name} | {label} | {shown} | {verdict} |"


def target_table(title, rows):
    if not rows:
        return []
    return [f"## {title}", "", "| pair | link | target | measured | verdict |", "|---|---|---|---|---|"] + rows + [""]


# Issue 13's 10 MiB time at 2% loss, in seconds.
COST_LOSS2_BULK_S = 0.6


def cost_targets_section(results, pairs, links, args):
    """Issue 13's targets for every ptproxy pair: 32-client proxy CPU at or below the HAProxy
    pair's, and the 10 MiB transfers: at or below the best TCP pair's time on an unlimited clean
    link, at least 95% of a rate-limited link, at most 0.6 s at 2% loss."""
    size = int(args.bulk_mib * 1024 * 1024)
    hap = [x for x in pairs if x.kind == "haproxy"]
    rows = []
    for p, link, r in ptproxy_results(results, pairs, links):
        checks = []
        if hap:
            hr = results.get((hap[0].name, link.name)) or {}
            checks.append(("32-client CPU/1000 req ≤ HAProxy pair",
                           ratio(r.get("cpu_ms_per_1000_conc"), hr.get("cpu_ms_per_1000_conc")), 1.0))
        for key in ("get", "post"):
            s = _bulk(r, key)
            if link.rate_mbit and link.loss_pct == 0:
                checks.append((f"{key.upper()} ≥ 95% of {link.rate_mbit:g} Mbit/s",
                               link_rate_share(size, s, link), -0.95))
            elif not link.rate_mbit and link.loss_pct == 0:
                bp = best_peer(results, pairs, link, lambda x, k=key: _bulk(x, k), False)
                checks.append((f"{key.upper()} ≤ best TCP pair", ratio(s, bp), 1.0))
            elif not link.rate_mbit and link.loss_pct == 2 and args.bulk_mib == 10:
                checks.append((f"{key.upper()} ≤ {COST_LOSS2_BULK_S} s",
                               ratio(s, COST_LOSS2_BULK_S), 1.0))
        rows += [target_row(p, link, *c) for c in checks]
    return target_table("Issue 13 targets", rows)


def compare_section(results, pairs, links, args):
    """Pairs with `compare_to` in pairs.json (e.g. loss hiding on vs off) against their baseline."""
    out = []
    for p in pairs:
        base = p.spec.get("compare_to")
        if not base:
            continue
        rows = []
        for link in links:
            r, b = results.get((p.name, link.name)), results.get((base, link.name))
            if not r or not b or r.get("skipped") or b.get("skipped"):
                continue
            for label, ks in (("seq keep-alive p50 (ms)", ("seq_ka", "p50")), ("seq keep-alive p99 (ms)", ("seq_ka", "p99")),
                              ("seq new-conn p99 (ms)", ("seq_new", "p99")),
                              ("link bytes / request (seq keep-alive)", ("seq_ka", "link_bytes_per_req"))):
                v, bv = _get(r, ks), _get(b, ks)
                rows.append(f"| {link.name} | {label} | {fmt_num(bv)} | {fmt_num(v)} | {fmt_ratio(ratio(v, bv))} | "
                            f"{fmt_ratio(ratio(v, floor_small(link))) if 'ms' in label else '—'} |")
            for key in ("get", "post"):
                v, bv = _bulk_bytes(r, key), _bulk_bytes(b, key)
                rows.append(f"| {link.name} | link bytes / payload, {key.upper()} | {fmt_num(bv)} | {fmt_num(v)} | "
                            f"{fmt_ratio(ratio(v, bv))} | — |")
        if rows:
            out += [f"## {p.name} against {base}", "",
                    f"| link | figure | {base} | {p.name} | ratio | ×floor |", "|---|---|---:|---:|---:|---:|"] + rows + [""]
    return out


def http_summary(res):
    """One log line per (pair, link) of the http scenario."""
    return (f"skipped: {res['skipped']}" if res.get("skipped") else
            f"cold {fmt_num(res.get('cold_ms'))} ms, seq p50 {fmt_num(_get(res, ('seq_ka', 'p50')))} "
            f"p99 {fmt_num(_get(res, ('seq_ka', 'p99')))} ms, "
            f"GET {fmt_num(_bulk(res, 'get'))} s, POST {fmt_num(_bulk(res, 'post'))} s"
            + (f"; {len(res['errors'])} note(s)" if res.get("errors") else ""))


# ----------------------------------------------------------------------------- WebSocket scenario
# `--scenario websocket` (issue 14): per pair and link, `ptb-wsload` opens --ws-sockets WebSockets
# through the pair (to ptb-upstream's echo), then every socket loops one small text message and
# its echo for --ws-seconds. One phase per (pair, link); the report has its own tables and targets.


def default_ws_links(rtt):
    return [Link(f"rtt{rtt:g}", rtt, 0), Link(f"rtt{rtt:g}-loss2", rtt, 2)]


def measure_ws(pair, link, relay, procs, pki, d, args, deadline_at):
    os.makedirs(d, exist_ok=True)
    res = {"pair": pair.name, "link": link.name, "scenario": "websocket"}
    if deadline_at - time.monotonic() < args.ws_seconds + 10:
        raise Stop(f"time budget exhausted before {pair.name}/{link.name}/websocket")
    if start_on_link(pair, procs, link, pki, d, args, relay, args.seed, res):
        return res
    # Warm-up: one GET /small through the pair, so that its link connection exists before the
    # WebSockets open, as it would after any earlier traffic (ptproxy's session is up already).
    # Without it, 32 handshakes at once on a cold HAProxy pair open 32 HTTP/2 connections.
    warm = run_json([os.path.join(TOOLS, "ptb-load"), "cold", "--addr", pair.addr(), "--timeout", "10"], NS_C, 20)
    if not warm.get("ok"):
        res.setdefault("errors", []).append(f"warm-up request: {warm.get('error')}")
    pids = pair.pids()
    relay.reset(args.seed)
    c0 = cpu_ns(pids)
    argv = [os.path.join(TOOLS, "ptb-wsload"), "--addr", pair.addr(), "--sockets", str(args.ws_sockets),
            "--duration", str(args.ws_seconds), "--size", str(args.ws_size), "--timeout", "10"]
    # TCP connections across the link, counted halfway through the echo loop (handshakes take
    # at most a few seconds even with a lost SYN).
    conns = {}
    timer = threading.Timer(min(args.ws_seconds / 2 + 2, args.ws_seconds), lambda: conns.update(n=tcp_conns_to_server()))
    timer.start()
    try:
        out = run_json(argv, NS_C, args.ws_seconds + 60)
    finally:
        timer.cancel()
    c1 = cpu_ns(pair.pids())
    st = relay.stats()
    res["link_stats"] = {"ws": st}
    lat = out.get("lat_ms") or []
    res["ws"] = summarize(lat)
    res["handshake"] = summarize(out.get("handshake_ms") or [])
    for k in ("sockets", "sockets_open", "errors", "mismatches", "clean_closes", "elapsed_s", "size"):
        res["ws"][k] = out.get(k)
    res["ws"]["link_tcp_conns"] = conns.get("n")
    if lat and out.get("elapsed_s"):
        res["ws"]["msgs_per_s"] = len(lat) / out["elapsed_s"]
        if pids:
            res["ws"]["cpu_ms_per_1000"] = (c1 - c0) / 1e6 / len(lat) * 1000
        if link_bytes(st) is not None:
            res["ws"]["link_bytes_per_msg"] = link_bytes(st) / len(lat)
    if not out.get("ok"):
        res.setdefault("errors", []).append(f"websocket: {out.get('error') or out.get('last_error')}")
    elif out.get("errors") or out.get("mismatches"):
        res.setdefault("errors", []).append(
            f"websocket: {out.get('errors')} failed socket(s), {out.get('mismatches')} echo mismatch(es), "
            f"last: {out.get('last_error')}")
    if out.get("sockets_open") is not None and out.get("sockets_open") != out.get("sockets"):
        res.setdefault("errors", []).append(f"websocket: {out.get('sockets_open')} of {out.get('sockets')} handshakes succeeded")
    for p in pair.procs_started:
        if p.poll() is not None:
            res.setdefault("errors", []).append(f"process {p.args[-1]} exited with {p.returncode}")
    return res


def tcp_conns_to_server():
    """Established TCP connections from the client namespace to the server side's address."""
    r = subprocess.run(["ip", "netns", "exec", NS_C, "ss", "-tnH", "state", "established", "dst", B_ADDR],
                       capture_output=True, text=True)
    return len(r.stdout.splitlines()) if r.returncode == 0 else None


def ws_summary(res):
    """One log line per (pair, link)."""
    if res.get("skipped"):
        return f"skipped: {res['skipped']}"
    w = res.get("ws") or {}
    return (f"echo p50 {fmt_num(w.get('p50'))} p99 {fmt_num(w.get('p99'))} ms, {w.get('count') or 0} messages, "
            f"handshake p50 {fmt_num(_get(res, ('handshake', 'p50')))} ms"
            + (f"; {len(res['errors'])} note(s)" if res.get("errors") else ""))


def ws_figures(args):
    g = lambda *ks: (lambda r: _get(r, ks))
    rtt = lambda l: floor_small(l)
    none = lambda l: None
    n = args.ws_sockets
    return [
        ("handshake p50 (ms)", g("handshake", "p50"), rtt, False),
        ("handshake max (ms)", g("handshake", "max"), rtt, False),
        ("echo p50 (ms)", g("ws", "p50"), rtt, False),
        ("echo p90 (ms)", g("ws", "p90"), rtt, False),
        ("echo p99 (ms)", g("ws", "p99"), rtt, False),
        ("echo max (ms)", g("ws", "max"), rtt, False),
        ("messages / s", g("ws", "msgs_per_s"), lambda l: n * 1000 / floor_small(l), True),
        ("messages echoed", g("ws", "count"), none, True),
        ("failed sockets / echo mismatches", lambda r: None, none, False),
        ("clean closes", g("ws", "clean_closes"), none, True),
        ("TCP connections across the link", g("ws", "link_tcp_conns"), none, False),
        ("proxy CPU ms / 1000 messages", g("ws", "cpu_ms_per_1000"), none, False),
        ("link bytes / message", g("ws", "link_bytes_per_msg"), none, False),
    ]


def ws_report(results, pairs, links, args, meta):
    L = [f"# ptproxy WebSocket echo benchmark — {meta['started']}", "",
         f"- command: `{meta['command']}`",
         f"- ptproxy: `{meta['ptproxy_version']}`, commit `{meta['commit']}`",
         f"- machine: {meta['machine']}",
         f"- link emulation: {meta['emulation']}",
         f"- per pair and link: `ptb-wsload` opens {args.ws_sockets} WebSockets at once through the pair's "
         f"client side (RFC 6455 handshake, `Sec-WebSocket-Accept` checked) to `ptb-upstream`'s echo, then each "
         f"socket loops for {args.ws_seconds:g} s: one masked {args.ws_size}-byte text message, wait for its echo "
         f"(compared byte for byte), record the round trip. Handshakes are timed before the loop starts (connect "
         f"included); the echo clock starts when every socket is open.",
         "- HAProxy pair: WebSocket over its HTTP/2 link as an extended CONNECT (RFC 8441, `ws h2`); nginx pair: "
         "an HTTP/1.1 Upgrade over TLS on a connection of its own per WebSocket; ptproxy: HTTP/3 extended CONNECT "
         "(RFC 9220) on the one QUIC session. Before the WebSockets open, one `GET /small` crosses the pair (its "
         "link connection is up, as after any earlier traffic); the TCP connections across the link are counted "
         "halfway through the echo loop",
         f"- TCP congestion control (direct, nginx, HAProxy): "
         f"{', '.join(sorted({r.get('tcp_cc') for r in results.values() if r.get('tcp_cc')})) or args.tcp_cc}",
         f"- run time: {meta['elapsed_s']:.0f} s", "",
         "Each cell: `value · ×floor · ×best peer`. Floor: 1 RTT per echo (and per handshake on an established "
         f"session); {args.ws_sockets} sockets can at most echo {args.ws_sockets} messages per RTT. Best peer: the "
         "better of the nginx and HAProxy pairs. Higher ratios are worse.", ""]
    for link in links:
        shown = [p for p in pairs if (p.name, link.name) in results]
        if not shown:
            continue
        L += [f"## {link.name}: {link.describe()}", "",
              "| figure | floor | " + " | ".join(p.name for p in shown) + " |", "|---|---:|" + "---:|" * len(shown)]
        for label, getter, floorf, hb in ws_figures(args):
            fl = floorf(link)
            plain = label in ("messages echoed", "clean closes", "TCP connections across the link")
            bp = None if plain else best_peer(results, shown, link, getter, hb)
            cells = []
            for p in shown:
                r = results[(p.name, link.name)]
                if r.get("skipped"):
                    cells.append("skipped")
                    continue
                if label.startswith("failed sockets"):
                    w = r.get("ws") or {}
                    open_ = w.get("sockets_open")
                    failed = None if open_ is None else (w.get("sockets") or 0) - open_ + (w.get("errors") or 0)
                    cells.append(f"{fmt_int(failed)} / {fmt_int(w.get('mismatches'))}")
                    continue
                v = getter(r)
                if v is None:
                    cells.append("—")
                    continue
                parts = [str(v) if plain else fmt_num(v)]
                if fl is not None:
                    parts.append(fmt_ratio(ratio(v, fl, hb)))
                if bp is not None:
                    parts.append(fmt_ratio(ratio(v, bp, hb)))
                cells.append(" · ".join(parts))
            L.append(f"| {label} | {fmt_num(fl) if fl is not None else '—'} | " + " | ".join(cells) + " |")
        L.append("")
    L += ws_targets_section(results, pairs, links)
    notes = [f"- {pn} / {ln}: skipped: {r['skipped']}" for (pn, ln), r in results.items() if r.get("skipped")]
    notes += [f"- {pn} / {ln}: {e}" for (pn, ln), r in results.items() for e in r.get("errors", [])]
    notes += [f"- {s}" for s in meta.get("stopped", [])]
    if notes:
        L += ["## Notes", ""] + notes + [""]
    return "\n".join(L) + "\n"


def fmt_int(v):
    return "—" if v is None else str(v)


def ws_targets_section(results, pairs, links):
    """Issue 14: echo p99 on the lossy link at most 0.5x the best peer's (every ptproxy pair),
    and with loss hiding at most 1.2x the 1-RTT floor."""
    rows = []
    for p, link, r in ptproxy_results(results, pairs, links):
        if not link.loss_pct:
            continue
        hiding = bool(_get(p.spec, ("transport", "loss_hiding")))
        p99 = _get(r, ("ws", "p99"))
        bp = best_peer(results, pairs, link, lambda x: _get(x, ("ws", "p99")), False)
        checks = [("echo p99 ≤ 0.5× best peer", ratio(p99, bp), 0.5)]
        if hiding:
            checks.append(("echo p99 with loss hiding ≤ 1.2× floor", ratio(p99, floor_small(link)), 1.2))
        for label, v, lim in checks:
            if v is None:
                verdict, shown = "n/a", "—"
            else:
                verdict = "pass" if v <= lim else f"miss ({v / lim:.2f}× the target)"
                shown = f"{v:.2f}× ({fmt_num(p99)} ms)"
            rows.append(f"| {p.name} | {link.name} | {label} | {shown} | {verdict} |")
    if not rows:
        return []
    return ["## Issue 14 targets", "", "| pair | link | target | measured | verdict |", "|---|---|---|---|---|"] + rows + [""]


# ----------------------------------------------------------------------------- setup


def sh(argv, check=True):
    r = subprocess.run(argv, capture_output=True, text=True)
    if check and r.returncode != 0:
        raise BenchError(f"{' '.join(argv)}: {r.stderr.strip()}")
    return r


def netns_setup():
    existing = sh(["ip", "netns", "list"]).stdout
    for ns in (NS_C, NS_S):
        if re.search(rf"^{re.escape(ns)}\b", existing, re.M):
            pids = sh(["ip", "netns", "pids", ns], check=False).stdout.split()
            if pids:
                raise BenchError(f"network namespace {ns} exists with processes {pids}: another run? "
                                 f"stop it, or remove the namespace with `ip netns del {ns}`")
            sh(["ip", "netns", "del", ns])
        sh(["ip", "netns", "add", ns])
        sh(["ip", "-n", ns, "link", "set", "lo", "up"])
        sh(["ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1",
            "net.ipv6.conf.default.disable_ipv6=1"], check=False)


def netns_teardown():
    for ns in (NS_C, NS_S):
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def netem_available():
    """True when `tc qdisc add ... netem` works here (probed in a throwaway namespace)."""
    ns = "ptb-probe"
    subprocess.run(["ip", "netns", "del", ns], capture_output=True)
    try:
        if subprocess.run(["ip", "netns", "add", ns], capture_output=True).returncode != 0:
            return False
        subprocess.run(["ip", "-n", ns, "link", "set", "lo", "up"], capture_output=True)
        r = subprocess.run(["ip", "netns", "exec", ns, "tc", "qdisc", "add", "dev", "lo", "root", "netem",
                            "delay", "1ms"], capture_output=True)
        return r.returncode == 0
    except FileNotFoundError:
        return False
    finally:
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)


ALLOWED_CC = "/proc/sys/net/ipv4/tcp_allowed_congestion_control"


def allow_tcp_cc(wanted):
    """A namespace other than the initial one may only select congestion controls listed in the
    (host-wide) tcp_allowed_congestion_control. Adds the wanted ones; returns the old list to
    restore at the end, or None when nothing changed."""
    try:
        with open(ALLOWED_CC) as f:
            old = f.read().strip()
    except OSError:
        return None
    missing = [c for c in sorted(wanted) if c not in old.split()]
    if not missing:
        return None
    for c in missing:
        try:
            subprocess.run(["modprobe", f"tcp_{c}"], capture_output=True)
        except FileNotFoundError:
            pass
    with open(ALLOWED_CC, "w") as f:
        f.write(" ".join(old.split() + missing))
    log(f"tcp_allowed_congestion_control: added {' '.join(missing)} for this run (restored at the end)")
    return old


def make_pki(d):
    pki = os.path.join(d, "pki")
    sh(["bash", os.path.join(ROOT, "conf", "make-certs.sh"), pki, SERVER_NAME, CLIENT_NAME, "30"])
    for side in ("server", "client"):
        with open(os.path.join(pki, f"{side}-combined.pem"), "w") as out:
            for part in (f"{side}.pem", f"{side}.key"):
                with open(os.path.join(pki, part)) as f:
                    out.write(f.read())
    os.chmod(pki, 0o755)
    for f in os.listdir(pki):
        if f != "ca.key":
            os.chmod(os.path.join(pki, f), 0o644)
    return pki


def git_commit():
    r = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    c = r.stdout.strip() or "unknown"
    d = subprocess.run(["git", "-C", ROOT, "status", "--porcelain", "--untracked-files=no", "src"],
                       capture_output=True, text=True).stdout.strip()
    return c + (" + uncommitted changes in src/" if d else "")


# ----------------------------------------------------------------------------- main


def env_argv(ap):
    """PTB_<OPTION> environment variables (e.g. PTB_QUICK=1, PTB_PAIRS=nginx,ptproxy-bbr2,
    PTB_SEQ_N=300) act as options given before the command line's own, which win."""
    out = []
    for a in ap._actions:
        if not a.option_strings or a.dest == "help":
            continue
        v = os.environ.get("PTB_" + a.dest.upper())
        if v is None or v == "":
            continue
        if a.nargs == 0:  # store_true
            if v not in ("0", "false", "no"):
                out.append(a.option_strings[0])
        elif a.dest == "link":
            for spec in v.split(";"):
                out += [a.option_strings[0], spec]
        else:
            out += [a.option_strings[0], v]
    return out


def main():
    ap = argparse.ArgumentParser(description="ptproxy side-by-side benchmark (see benches/README.md)")
    ap.add_argument("--quick", action="store_true", help="short run: 50 sequential requests, 4 s of 32 clients, 4 MiB transfers")
    ap.add_argument("--pairs", help="comma-separated pair names from pairs.json (default: all)")
    ap.add_argument("--pairs-file", help="default: benches/pairs.json (benches/pairs-websocket.json with "
                    "--scenario websocket, benches/pairs-compression.json with --scenario compression)")
    ap.add_argument("--scenario", choices=("http", "websocket", "compression"), default="http",
                    help="http: the request/transfer figures (default); websocket: the WebSocket echo round trip "
                    "(issue 14) on rtt50 and rtt50-loss2; compression: link bytes with body compression (issue 15) "
                    "on rtt50")
    ap.add_argument("--ws-sockets", type=int, default=32, help="WebSockets open at once (websocket scenario)")
    ap.add_argument("--ws-seconds", type=float, help="echo loop duration per pair and link (10; quick 4)")
    ap.add_argument("--ws-size", type=int, default=64, help="message size, bytes (48-125)")
    ap.add_argument("--links", help="comma-separated names of the default links to run (default: all)")
    ap.add_argument("--link", action="append", default=[], metavar="NAME:rtt=MS,loss=PCT[,rate=MBIT][,queue=BYTES]",
                    help="a custom link (repeatable); replaces the default links")
    ap.add_argument("--rtt", type=float, default=50, help="RTT of the default links, ms (default 50)")
    ap.add_argument("--seq-n", type=int)
    ap.add_argument("--conc-clients", type=int, default=32)
    ap.add_argument("--conc-seconds", type=float)
    ap.add_argument("--bulk-mib", type=float)
    ap.add_argument("--bulk-deadline", type=float)
    ap.add_argument("--budget", type=float, help="bound on the whole run, seconds (default 3000, quick 1200)")
    ap.add_argument("--seed", type=int, default=4242, help="loss generator seed (the same for every pair and phase)")
    ap.add_argument("--nginx-workers", type=int, default=1)
    ap.add_argument("--haproxy-threads", type=int, default=1)
    ap.add_argument("--h2-window", type=int, default=4194304, help="HAProxy tune.h2.initial-window-size")
    ap.add_argument("--tcp-cc", help="TCP congestion control in both namespaces (direct, nginx and HAProxy "
                    "pairs): default bbr where the kernel has it, else cubic; a pair's \"tcp_cc\" overrides it")
    ap.add_argument("--emulator", choices=("auto", "tun", "netem"), default="auto",
                    help="link emulator: netem where the kernel has it (auto), else the TUN relay")
    ap.add_argument("--out", default=os.path.join(HERE, "results"))
    ap.add_argument("--command", default=None, help=argparse.SUPPRESS)
    # The compression scenario lives in compression.py, which imports this module as `bench`:
    # the same module object, so that its Stop and BenchError are the ones caught here.
    sys.modules.setdefault("bench", sys.modules[__name__])
    import compression
    compression.add_args(ap)
    args = ap.parse_args(env_argv(ap) + sys.argv[1:])
    q = args.quick
    args.seq_n = args.seq_n or (50 if q else 200)
    args.conc_seconds = args.conc_seconds or (4 if q else 10)
    args.bulk_mib = args.bulk_mib or (4 if q else 10)
    args.bulk_deadline = args.bulk_deadline or (40 if q else 90)
    args.budget = args.budget or (1200 if q else 3000)
    args.ws_seconds = args.ws_seconds or (4 if q else 10)
    ws = args.scenario == "websocket"
    comp = args.scenario == "compression"
    compression.defaults(args)
    args.pairs_file = args.pairs_file or os.path.join(
        HERE, "pairs-websocket.json" if ws else "pairs-compression.json" if comp else "pairs.json")
    try:
        with open("/proc/sys/net/ipv4/tcp_available_congestion_control") as f:
            avail = f.read().split()
    except OSError:
        avail = ["cubic"]
    if not args.tcp_cc:
        args.tcp_cc = "bbr" if "bbr" in avail else "cubic"

    if os.geteuid() != 0:
        raise BenchError("needs root (network namespaces, TUN devices)")
    for b in ("ptb-relay", "ptb-load", "ptb-upstream") + (("ptb-wsload",) if ws else ()):
        if not os.access(os.path.join(TOOLS, b), os.X_OK):
            raise BenchError(f"{TOOLS}/{b} missing: build benches/tools first (run.sh does)")

    with open(args.pairs_file) as f:
        specs = json.load(f)
    names = [s["name"] for s in specs]
    if args.pairs:
        want = args.pairs.split(",")
        for w in want:
            if w not in names:
                raise BenchError(f"--pairs: no pair {w!r} in {args.pairs_file} (have {', '.join(names)})")
        specs = [s for s in specs if s["name"] in want]
    pairs = [Pair(s, i) for i, s in enumerate(specs)]
    if any(p.kind == "ptproxy" for p in pairs) and not os.access(PTPROXY, os.X_OK):
        raise BenchError(f"{PTPROXY} missing: cargo build --profile production")

    if args.link:
        links = [parse_link(s) for s in args.link]
    else:
        links = (default_ws_links if ws else compression.default_links if comp else default_links)(args.rtt)
        if args.links:
            want = args.links.split(",")
            known = [l.name for l in links]
            links = [l for l in links if l.name in want]
            if not links:
                raise BenchError(f"--links: none of {want} among {known}")

    started = datetime.datetime.now()
    stamp = ("websocket-" if ws else "compression-" if comp else "") + started.strftime("%Y%m%d-%H%M%S")
    run_dir = os.path.join(args.out, "runs", stamp)
    os.makedirs(run_dir, exist_ok=True)
    state = os.environ.get("PTB_STATE_DIR") or run_dir  # run.sh's trap reads it to clean up
    procs = Procs(os.path.join(state, "pids"))
    t_start = time.monotonic()
    deadline_at = t_start + args.budget
    results = {}
    meta = {"started": started.strftime("%Y-%m-%d %H:%M:%S"), "command": args.command or " ".join(map(shlex.quote, sys.argv)),
            "commit": git_commit(), "stopped": []}
    r = subprocess.run([PTPROXY, "--version"], capture_output=True, text=True) if os.access(PTPROXY, os.X_OK) else None
    meta["ptproxy_version"] = (r.stdout.strip() if r else "n/a") or "n/a"
    meta["machine"] = (f"{os.cpu_count()} CPUs, Linux {platform.release()}, "
                       f"nginx {sh(['nginx', '-v'], check=False).stderr.strip().split('/')[-1]}, "
                       f"HAProxy {sh(['haproxy', '-v'], check=False).stdout.split()[2]}")
    netem = netem_available()
    if args.emulator == "netem" and not netem:
        raise BenchError("--emulator netem: `tc qdisc add ... netem` does not work on this kernel")
    use_netem = args.emulator == "netem" or (args.emulator == "auto" and netem)
    if use_netem:
        meta["emulation"] = (f"veth pair between namespaces {NS_C} and {NS_S} with a netem qdisc on each "
                             "egress (delay RTT/2, loss, rate); offloads off")
    else:
        meta["emulation"] = ("user-space TUN relay (benches/tools/src/bin/ptb-relay.rs) between namespaces "
                             f"{NS_C} and {NS_S}: per-direction seeded loss, serialization-rate queue, "
                             "one-way delay = RTT/2; carries TCP and UDP alike"
                             + ("" if netem else " (sch_netem is not available in this kernel)"))

    def on_signal(signum, frame):
        raise Stop(f"stopped by signal {signum}")

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    restore_allowed_cc = None
    log(f"run dir {run_dir}; pairs {', '.join(p.name for p in pairs)}; links {', '.join(l.name for l in links)}")
    try:
        netns_setup()
        open(os.path.join(state, "netns-owned"), "w").close()
        restore_allowed_cc = allow_tcp_cc({args.tcp_cc} | {p.spec["tcp_cc"] for p in pairs if p.spec.get("tcp_cc")})
        pki = make_pki(run_dir)
        upstream = procs.start(NS_S, [os.path.join(TOOLS, "ptb-upstream"), f"0.0.0.0:{UPSTREAM_PORT}"],
                               os.path.join(run_dir, "upstream.log"))
        r = run_json([os.path.join(TOOLS, "ptb-load"), "wait", "--addr", f"127.0.0.1:{UPSTREAM_PORT}", "--deadline", "10"],
                     NS_S, 15)
        if not r.get("ok"):
            raise BenchError("the upstream did not start; see upstream.log")
        for li, link in enumerate(links):
            relay = NetemLink(link) if use_netem else Relay(procs, link, run_dir, args.seed)
            try:
                for pair in pairs:
                    if pair.links and link.name not in pair.links:
                        continue
                    if time.monotonic() > deadline_at - 10:
                        raise Stop("time budget exhausted")
                    log(f"{link.name}: {pair.name} ...")
                    d = os.path.join(run_dir, link.name, pair.name)
                    t0 = time.monotonic()
                    try:
                        res = (measure_ws if ws else compression.measure if comp else measure)(
                            pair, link, relay, procs, pki, d, args, deadline_at)
                    except BenchError as e:
                        res = {"pair": pair.name, "link": link.name, "skipped": str(e)}
                    finally:
                        pair.stop(procs)
                    results[(pair.name, link.name)] = res
                    log(f"{link.name}: {pair.name} done in {time.monotonic() - t0:.0f} s: "
                        + (ws_summary if ws else compression.summary if comp else http_summary)(res))
            finally:
                relay.close()
        procs.stop(upstream)
    except Stop as e:
        meta["stopped"].append(f"run stopped early: {e}; the tables hold what was measured before")
        log(str(e))
    finally:
        procs.stop_all()
        netns_teardown()
        if restore_allowed_cc:
            with open(ALLOWED_CC, "w") as f:
                f.write(restore_allowed_cc)

    meta["elapsed_s"] = time.monotonic() - t_start
    md = (ws_report if ws else compression.report if comp else report)(results, pairs, links, args, meta)
    os.makedirs(args.out, exist_ok=True)
    md_path = os.path.join(args.out, f"{stamp}.md")
    with open(md_path, "w") as f:
        f.write(md)
    with open(os.path.join(args.out, f"{stamp}.json"), "w") as f:
        json.dump({"meta": meta, "args": vars(args), "links": [l.to_json() for l in links],
                   "results": [dict(v) for v in results.values()]}, f, indent=1)
    print()
    print(md)
    log(f"report: {md_path}")
    return 0 if results else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchError as e:
        print(f"bench: {e}", file=sys.stderr)
        sys.exit(2)
