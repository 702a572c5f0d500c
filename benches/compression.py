"""`bench.py --scenario compression` (issue 15): link bytes with body compression off and on.

Per pair (benches/pairs-compression.json) and link (rtt50 by default), after one warm-up request:
small GETs one at a time on a keep-alive connection and under 32 clients, the JSON API mix
(POST 2 KB of JSON, 20 KB of JSON back) one at a time and under 32 clients, and one 1 MiB random
(incompressible, labelled text/plain so that every compressor tries it) body each way, and one
JSON body of --comp-bulk-mib each way for the proxy CPU per MiB in bulk. Every body
is checked: the upstream checks request bodies against their X-Body-Fnv, ptb-load checks plain
responses against the JSON they must be and random downloads against the upstream's checksum;
gzip responses (nginx, HAProxy) are saved by ptb-load and checked here after decompression.

A pair with `"train_dictionary": {"samples": N}` (the shared-dictionary column) gets, at setup,
a zstd dictionary trained by `ptproxy train-dictionary` from N request-sized and N
response-sized JSON bodies made like the JSON mix's (by `ptb-load samples`, with seeds the mix
never uses), set as both ends' `http.compression.dictionary`.

bench.py owns the run (namespaces, relay, pairs, processes); this module measures one
(pair, link) and writes the report. Standard library only.
"""

import glob
import gzip
import os
import re
import subprocess
import time

import bench
from bench import NS_C, TOOLS, Stop, _get, cpu_ns, fmt_num, link_bytes, run_json, sh, summarize

JSON_REQ, JSON_RESP = 2048, 20480
RANDOM_SIZE = 1 << 20
SMALL_SEQ_TARGET, SMALL_CONC_TARGET = 420, 340  # link bytes per small request (issue 15)
JSON_TARGET, RANDOM_TARGET = 0.35, 1.01  # x the ptproxy pair with compression off


def add_args(ap):
    ap.add_argument("--comp-seq-n", type=int, help="compression scenario: small GETs and JSON requests "
                    "one at a time (100; quick 30)")
    ap.add_argument("--comp-conc-n", type=int, help="compression scenario: JSON requests per client "
                    "under --conc-clients clients (10; quick 4)")
    ap.add_argument("--comp-bulk-mib", type=int, default=8, help="compression scenario: size of the JSON "
                    "transfer each way (CPU per MiB in bulk), MiB")


def defaults(args):
    q = args.quick
    args.comp_seq_n = args.comp_seq_n or (30 if q else 100)
    args.comp_conc_n = args.comp_conc_n or (4 if q else 10)


def default_links(rtt):
    return [bench.Link(f"rtt{rtt:g}", rtt, 0)]


def fnv1a64(data):
    h = 0xcbf29ce484222325
    for b in data:
        h = ((h ^ b) * 0x100000001b3) & 0xFFFFFFFFFFFFFFFF
    return h


def check_gzip_samples(save_dir):
    """ptb-load saved the first gzip response of each client as <fnv>-<size>.gz: decompress each
    and compare. Returns (checked, bad)."""
    checked, bad = 0, 0
    for path in glob.glob(os.path.join(save_dir, "*.gz")):
        want_fnv, want_size = os.path.basename(path)[:-3].split("-")
        with open(path, "rb") as f:
            raw = f.read()
        try:
            plain = gzip.decompress(raw)
        except (OSError, EOFError):
            plain = b""
        checked += 1
        if len(plain) != int(want_size) or fnv1a64(plain) != int(want_fnv, 16):
            bad += 1
    return checked, bad


def zstd_counters(pair):
    """ptproxy's link-compression counters of the bodies each side sent (requests: client,
    responses: server), from each side's metrics listener (`metrics.listen` in the pair's
    `client`/`server`); {} for other pairs."""
    out = {}
    for side, ns in (("client", bench.NS_C), ("server", bench.NS_S)):
        listen = _get(pair.spec, (side, "metrics", "listen"))
        if pair.kind != "ptproxy" or not listen:
            continue
        r = subprocess.run(["ip", "netns", "exec", ns, "curl", "-s", "-m", "5", f"http://{listen}/metrics"],
                           capture_output=True, text=True)
        for kind in ("plain", "link"):
            m = re.search(rf'^ptproxy_compressed_body_{kind}_bytes_total\{{direction="sent"\}} (\d+)', r.stdout, re.M)
            if m:
                out[f"{side}_{kind}"] = int(m.group(1))
    return out


def zstd_delta(before, after):
    """Bytes compressed during a phase: {"up": (plain, link), "down": (plain, link)}."""
    d = {}
    for way, side in (("up", "client"), ("down", "server")):
        if f"{side}_plain" in before and f"{side}_plain" in after:
            d[way] = (after[f"{side}_plain"] - before[f"{side}_plain"], after[f"{side}_link"] - before[f"{side}_link"])
    return d


def prepare_dictionary(pair, d, res):
    """Trains the pair's dictionary (see the module doc) into `d` and puts its path in both ends'
    config. False (with an error noted in res) when it cannot."""
    spec = pair.spec.get("train_dictionary")
    if not spec:
        return True
    samples, out = os.path.join(d, "dictionary-samples"), os.path.join(d, "link.dict")
    os.makedirs(samples, exist_ok=True)
    if os.path.exists(out):
        os.remove(out)
    gen = subprocess.run([os.path.join(TOOLS, "ptb-load"), "samples", "--save-dir", samples, "--n",
                          str(spec.get("samples", 200)), "--req-size", str(JSON_REQ), "--resp-size",
                          str(JSON_RESP)], capture_output=True, text=True, timeout=120)
    train = subprocess.run([pair.binary, "train-dictionary", "--out", out, samples],
                           capture_output=True, text=True, timeout=300) if gen.returncode == 0 else gen
    m = re.search(r"dictionary id ([0-9a-f]{16})", train.stdout)
    if train.returncode != 0 or not m:
        res["skipped"] = f"dictionary not trained: {(train.stderr or train.stdout).strip()[:300]}"
        return False
    res["dictionary"] = {"id": m.group(1), "bytes": os.path.getsize(out), "samples": 2 * spec.get("samples", 200)}
    for side in ("client", "server"):
        bench.deep_merge(pair.spec.setdefault(side, {}), {"http": {"compression": {"dictionary": out}}})
    return True


def measure(pair, link, relay, procs, pki, d, args, deadline_at):
    os.makedirs(d, exist_ok=True)
    res = {"pair": pair.name, "link": link.name, "scenario": "compression"}
    load = os.path.join(TOOLS, "ptb-load")
    addr = pair.addr()

    def phase(name, argv, timeout):
        if deadline_at - time.monotonic() < 5:
            raise Stop(f"time budget exhausted before {pair.name}/{link.name}/{name}")
        relay.reset(args.seed)
        z0 = zstd_counters(pair)
        out = run_json([load] + argv + ["--addr", addr], NS_C, timeout)
        st = relay.stats()
        z = zstd_delta(z0, zstd_counters(pair))
        if z:
            res.setdefault("zstd", {})[name] = z
        res.setdefault("link_stats", {})[name] = st
        out["link_bytes"] = link_bytes(st)
        if not out.get("ok"):
            res.setdefault("errors", []).append(f"{name}: {out.get('error') or out.get('last_error')}")
        elif out.get("errors") or out.get("mismatches"):
            res.setdefault("errors", []).append(f"{name}: {out.get('errors')} failed, {out.get('mismatches')} "
                                                f"wrong bodies, last: {out.get('last_error')}")
        return out

    if not prepare_dictionary(pair, d, res):
        return res
    if bench.start_on_link(pair, procs, link, pki, d, args, relay, args.seed, res):
        return res
    phase("warm", ["cold", "--timeout", "10"], 20)

    n = args.comp_seq_n
    to = n * 5 * link.rtt_ms / 1000 + 30
    out = phase("small_seq", ["seq", "--n", str(n), "--timeout", "10", "--deadline", str(to)], to + 15)
    res["small_seq"] = per_request(out, len(out.get("lat_ms") or []))
    out = phase("small_conc", ["conc", "--clients", str(args.conc_clients), "--duration", str(args.conc_seconds),
                               "--timeout", "10"], args.conc_seconds + 40)
    res["small_conc"] = per_request(out, len(out.get("lat_ms") or []))

    save = os.path.join(d, "gzip-samples")
    os.makedirs(save, exist_ok=True)
    cpu_ns_total, json_reqs = 0, 0
    for key, clients, count in (("json_seq", 1, n), ("json_conc", args.conc_clients, args.comp_conc_n)):
        pids = pair.pids()
        c0 = cpu_ns(pids)
        out = phase(key, ["json", "--clients", str(clients), "--n", str(count), "--req-size", str(JSON_REQ),
                          "--resp-size", str(JSON_RESP), "--timeout", "10", "--deadline", str(to),
                          "--save-dir", save], to + 15)
        cpu = cpu_ns(pair.pids()) - c0 if pids else None
        done = len(out.get("lat_ms") or [])
        r = per_request(out, done)
        r["payload_per_req"] = JSON_REQ + JSON_RESP
        if done and out.get("link_bytes") is not None:
            r["link_per_payload"] = out["link_bytes"] / (done * (JSON_REQ + JSON_RESP))
        r["encoded"], r["encoded_bytes"] = out.get("encoded"), out.get("encoded_bytes")
        if cpu is not None and done:
            r["cpu_us_per_req"] = cpu / 1e3 / done
            r["cpu_ms_per_mib"] = cpu / 1e6 / (done * (JSON_REQ + JSON_RESP) / 2**20)
            cpu_ns_total += cpu
            json_reqs += done
        res[key] = r
    if json_reqs:
        res["json_cpu_ms_per_mib"] = cpu_ns_total / 1e6 / (json_reqs * (JSON_REQ + JSON_RESP) / 2**20)

    for key in ("get", "post"):
        out = phase(f"random_{key}", [key, "--random", "--size", str(RANDOM_SIZE), "--timeout", "30",
                                      "--deadline", str(args.bulk_deadline)], args.bulk_deadline + 20)
        res[f"random_{key}"] = {"ok": bool(out.get("ok")), "seconds": out.get("seconds")}
        if out.get("ok") and out.get("link_bytes") is not None:
            res[f"random_{key}"]["link_per_payload"] = out["link_bytes"] / RANDOM_SIZE
    size = args.comp_bulk_mib << 20
    for key in ("get", "post"):
        c0 = cpu_ns(pair.pids())
        out = phase(f"json_{key}", [key, "--json", "--size", str(size), "--timeout", "30", "--save-dir", save,
                                    "--deadline", str(args.bulk_deadline)], args.bulk_deadline + 20)
        cpu = cpu_ns(pair.pids()) - c0
        r = res[f"json_{key}"] = {"ok": bool(out.get("ok")), "seconds": out.get("seconds"), "encoded": out.get("encoded")}
        if out.get("ok") and out.get("link_bytes") is not None:
            r["link_per_payload"] = out["link_bytes"] / size
            r["cpu_ms_per_mib"] = cpu / 1e6 / args.comp_bulk_mib
    res["gzip_checked"], res["gzip_bad"] = check_gzip_samples(save)
    if res["gzip_bad"]:
        res.setdefault("errors", []).append(f"{res['gzip_bad']} of {res['gzip_checked']} gzip responses wrong "
                                            "after decompression")
    for p in pair.procs_started:
        if p.poll() is not None:
            res.setdefault("errors", []).append(f"process {p.args[-1]} exited with {p.returncode}")
    return res


def per_request(out, done):
    r = summarize(out.get("lat_ms") or [])
    r["errors"] = (out.get("errors") or 0) + (out.get("mismatches") or 0)
    if done and out.get("link_bytes") is not None:
        r["link_per_req"] = out["link_bytes"] / done
    return r


def summary(res):
    if res.get("skipped"):
        return f"skipped: {res['skipped']}"
    g = lambda *ks: fmt_num(_get(res, ks))
    return (f"small {g('small_seq', 'link_per_req')} / {g('small_conc', 'link_per_req')} B/req, "
            f"JSON {g('json_seq', 'link_per_req')} B/req, random GET {g('random_get', 'link_per_payload')} "
            f"POST {g('random_post', 'link_per_payload')} B/B"
            + (f"; {len(res['errors'])} note(s)" if res.get("errors") else ""))


def figures(args):
    g = lambda *ks: (lambda r: _get(r, ks))
    c = args.conc_clients
    return [
        ("small GET, one at a time: link bytes / request", g("small_seq", "link_per_req")),
        (f"small GET, {c} clients: link bytes / request", g("small_conc", "link_per_req")),
        ("JSON mix, one at a time: link bytes / request", g("json_seq", "link_per_req")),
        ("JSON mix, one at a time: link bytes / payload byte", g("json_seq", "link_per_payload")),
        (f"JSON mix, {c} clients: link bytes / request", g("json_conc", "link_per_req")),
        (f"JSON mix, {c} clients: link bytes / payload byte", g("json_conc", "link_per_payload")),
        ("JSON mix, one at a time: p50 (ms)", g("json_seq", "p50")),
        (f"JSON mix, {c} clients: p99 (ms)", g("json_conc", "p99")),
        ("JSON mix: proxy CPU ms / MiB of payload (both phases)", g("json_cpu_ms_per_mib")),
        ("JSON mix, one at a time: proxy CPU µs / request", g("json_seq", "cpu_us_per_req")),
        (f"JSON mix, {c} clients: proxy CPU µs / request", g("json_conc", "cpu_us_per_req")),
        ("JSON responses gzip-encoded to the caller", lambda r: _sum(r, "encoded")),
        ("1 MiB random GET: link bytes / payload byte", g("random_get", "link_per_payload")),
        ("1 MiB random POST: link bytes / payload byte", g("random_post", "link_per_payload")),
        (f"{args.comp_bulk_mib} MiB JSON GET: link bytes / payload byte", g("json_get", "link_per_payload")),
        (f"{args.comp_bulk_mib} MiB JSON POST: link bytes / payload byte", g("json_post", "link_per_payload")),
        (f"{args.comp_bulk_mib} MiB JSON GET: proxy CPU ms / MiB", g("json_get", "cpu_ms_per_mib")),
        (f"{args.comp_bulk_mib} MiB JSON POST: proxy CPU ms / MiB", g("json_post", "cpu_ms_per_mib")),
        (f"{args.comp_bulk_mib} MiB JSON GET (s)", g("json_get", "seconds")),
        (f"{args.comp_bulk_mib} MiB JSON POST (s)", g("json_post", "seconds")),
    ]


def _sum(r, k):
    vals = [_get(r, (p, k)) for p in ("json_seq", "json_conc")]
    return sum(v for v in vals if v is not None) if any(v is not None for v in vals) else None


def baseline_of(pairs):
    """The ptproxy pair without compression: the one the others name in `compare_to`."""
    for p in pairs:
        if p.spec.get("compare_to"):
            return p.spec["compare_to"]
    return None


def report(results, pairs, links, args, meta):
    c = args.conc_clients
    L = [f"# ptproxy link compression benchmark (issue 15) — {meta['started']}", "",
         f"- command: `{meta['command']}`",
         f"- ptproxy: `{meta['ptproxy_version']}`, commit `{meta['commit']}`",
         f"- machine: {meta['machine']}",
         f"- link emulation: {meta['emulation']}",
         f"- per pair and link: one warm-up `GET /small`; {args.comp_seq_n} `GET /small` (100-byte body) one at a "
         f"time on a keep-alive connection; {c} keep-alive clients looping `GET /small` for {args.conc_seconds:g} s; "
         f"JSON mix: `POST /json/{JSON_RESP}` with {JSON_REQ} bytes of JSON (`application/json`, `Accept-Encoding: "
         f"gzip`), {JSON_RESP} bytes of JSON back, {args.comp_seq_n} one at a time, then {c} clients x "
         f"{args.comp_conc_n}; one {RANDOM_SIZE >> 20} MiB random body each way (`text/plain`, so that every "
         f"compressor tries it); one {args.comp_bulk_mib} MiB JSON body each way (`GET /json/N` with "
         "`Accept-Encoding: gzip`, `POST /sink`), for the proxy CPU per MiB in bulk",
         "- every body checked: request bodies by the upstream (FNV-1a 64 in `X-Body-Fnv`), plain JSON responses "
         "and random downloads by ptb-load, gzip responses (nginx, HAProxy: the caller asked for gzip) by "
         "decompressing the first of each client and the bulk one here",
         "- link bytes: IP bytes offered to the link, both directions; payload: plain body bytes (request + "
         f"response: {JSON_REQ + JSON_RESP} per JSON request); proxy CPU: user+system of both sides",
         f"- TCP congestion control (nginx, HAProxy): "
         f"{', '.join(sorted({r.get('tcp_cc') for r in results.values() if r.get('tcp_cc')})) or args.tcp_cc}",
         f"- run time: {meta['elapsed_s']:.0f} s", ""]
    base = baseline_of(pairs)
    for link in links:
        shown = [p for p in pairs if (p.name, link.name) in results]
        if not shown:
            continue
        L += [f"## {link.name}: {link.describe()}", "",
              "| figure | " + " | ".join(p.name for p in shown) + " |", "|---|" + "---:|" * len(shown)]
        for label, getter in figures(args):
            cells = []
            for p in shown:
                r = results[(p.name, link.name)]
                v = None if r.get("skipped") else getter(r)
                count = label.startswith("JSON responses")
                cells.append("skipped" if r.get("skipped") else str(v) if count and v is not None else fmt_num(v))
            L.append(f"| {label} | " + " | ".join(cells) + " |")
        L.append("")
        if base and (base, link.name) in results:
            L += ratios_table(results, shown, link, base, c)
    L += zstd_section(results, pairs, links)
    L += targets(results, pairs, links, base, c)
    notes = [f"- {pn} / {ln}: skipped: {r['skipped']}" for (pn, ln), r in results.items() if r.get("skipped")]
    notes += [f"- {pn} / {ln}: {e}" for (pn, ln), r in results.items() for e in r.get("errors", [])]
    notes += [f"- {pn} / {ln}: {r.get('gzip_checked')} gzip response(s) decompressed and checked, "
              f"{r.get('gzip_bad')} wrong" for (pn, ln), r in results.items() if r.get("gzip_checked")]
    notes += [f"- {pn} / {ln}: shared dictionary trained at setup from {r['dictionary']['samples']} JSON bodies "
              f"({JSON_REQ} and {JSON_RESP} bytes, made like the mix's with other seeds): "
              f"{r['dictionary']['bytes']} bytes, id {r['dictionary']['id']}"
              for (pn, ln), r in results.items() if r.get("dictionary")]
    notes += [f"- {s}" for s in meta.get("stopped", [])]
    if notes:
        L += ["## Notes", ""] + notes + [""]
    return "\n".join(L) + "\n"


def zstd_section(results, pairs, links):
    """What ptproxy's compressor itself achieved per phase (its metrics): link ÷ plain body bytes."""
    rows = []
    for (pn, ln), r in results.items():
        for phase, ways in (r.get("zstd") or {}).items():
            for way, (plain, linkb) in sorted(ways.items()):
                if plain:
                    rows.append(f"| {pn} | {ln} | {phase} | {'requests' if way == 'up' else 'responses'} | "
                                f"{plain} | {linkb} | {linkb / plain:.3f} |")
    if not rows:
        return []
    return ["ptproxy's own counters (`ptproxy_compressed_body_{plain,link}_bytes_total`, sent side), per phase: "
            "the bodies it compressed and their size on the link (zstd frames, before QUIC/IP overhead):", "",
            "| pair | link | phase | bodies | plain bytes | compressed bytes | ratio |", "|---|---|---|---|---:|---:|---:|"] + rows + [""]


def ratios_table(results, shown, link, base, c):
    b = results[(base, link.name)]
    rows = [f"Against `{base}` (ptproxy, compression off), link bytes:", "",
            "| figure | " + " | ".join(p.name for p in shown) + " |", "|---|" + "---:|" * len(shown)]
    for label, ks in (("JSON mix, one at a time", ("json_seq", "link_per_req")),
                      (f"JSON mix, {c} clients", ("json_conc", "link_per_req")),
                      ("1 MiB random GET", ("random_get", "link_per_payload")),
                      ("1 MiB random POST", ("random_post", "link_per_payload")),
                      ("JSON bulk GET", ("json_get", "link_per_payload")),
                      ("JSON bulk POST", ("json_post", "link_per_payload"))):
        bv = _get(b, ks)
        cells = []
        for p in shown:
            v = _get(results[(p.name, link.name)], ks)
            cells.append(f"{v / bv:.3f}x" if v and bv else "—")
        rows.append(f"| {label} | " + " | ".join(cells) + " |")
    return rows + [""]


def targets(results, pairs, links, base, c):
    rows = []
    for p, link, r in bench.ptproxy_results(results, pairs, links):
        b = results.get((base, link.name)) or {}
        checks = [("small GET one at a time ≤ 420 link bytes", _get(r, ("small_seq", "link_per_req")), SMALL_SEQ_TARGET, ""),
                  (f"small GET under {c} clients ≤ 340 link bytes", _get(r, ("small_conc", "link_per_req")),
                   SMALL_CONC_TARGET, "")]
        if p.name != base:
            for label, ks, lim in (("JSON mix one at a time ≤ 0.35x off", ("json_seq", "link_per_req"), JSON_TARGET),
                                   (f"JSON mix {c} clients ≤ 0.35x off", ("json_conc", "link_per_req"), JSON_TARGET),
                                   ("random GET ≤ 1.01x off", ("random_get", "link_per_payload"), RANDOM_TARGET),
                                   ("random POST ≤ 1.01x off", ("random_post", "link_per_payload"), RANDOM_TARGET)):
                v, bv = _get(r, ks), _get(b, ks)
                checks.append((label, v / bv if v and bv else None, lim, "x"))
        for label, v, lim, unit in checks:
            if v is None:
                verdict, shown = "n/a", "—"
            else:
                verdict = "pass" if v <= lim else f"miss ({v / lim:.2f}x the target)"
                shown = f"{v:.3f}x" if unit else f"{v:.0f}"
            rows.append(f"| {p.name} | {link.name} | {label} | {shown} | {verdict} |")
    if not rows:
        return []
    return ["## Issue 15 targets", "", "| pair | link | target | measured | verdict |", "|---|---|---|---|---|"] + rows + [""]
