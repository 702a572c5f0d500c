//! Link compression of bodies (issue #15 item 1): bodies cross compressed only when both ends
//! enabled it, and the upstream and the caller see byte-identical bodies and heads either way.
//! Compression shows in the link's datagrams (the relay's counters) and in the compressed-body
//! metrics. Corrupt compressed data is covered by the pump's unit tests
//! (`bridge::pump::tests::corrupt_or_cut_compressed_data_never_ends_the_body`): QUIC's AEAD
//! rejects any datagram a relay alters, so corruption cannot be injected on the link.

use crate::harness::admin::{metrics_addr, scrape};
use crate::harness::pattern::{fill_text, pattern, text, Checksum};
use crate::harness::{heavy_lock, Pair, PairBuilder, RelayConfig, Upstream};
use std::io::Write;
use std::time::{Duration, Instant};

const ON: &str = r#"{"enabled": true}"#;
const BODY: usize = 300 * 1024;

fn pair(up: &Upstream, name: &str, client_on: bool, server_on: bool) -> (Pair, String, String) {
    let (client_metrics, client_json) = metrics_addr();
    let (server_metrics, server_json) = metrics_addr();
    let mut b = PairBuilder::new(up.addr())
        .name(name)
        .relay(RelayConfig::clean())
        .client("metrics.listen", &client_json)
        .server("metrics.listen", &server_json);
    if client_on {
        b = b.client("http.compression", ON);
    }
    if server_on {
        b = b.server("http.compression", ON);
    }
    (
        b.start(),
        client_metrics.to_string(),
        server_metrics.to_string(),
    )
}

/// UDP payload bytes the relay received (both ways) while `f` ran. (Bytes, not datagrams:
/// a datagram's size depends on the path's MTU, up to 16 KiB on loopback.)
fn link_bytes<T>(pair: &Pair, f: impl FnOnce() -> T) -> (T, u64) {
    let total = |p: &Pair| {
        let s = p.relay().stats();
        s.to_server.received_bytes + s.to_client.received_bytes
    };
    let before = total(pair);
    let out = f();
    (out, total(pair) - before)
}

/// POSTs `body` typed `content_type` to the echo endpoint; checks the upstream got it
/// byte-exact, with the caller's head fields and no trace of link compression, and the
/// caller got it back byte-exact.
pub(crate) fn echo(
    pair: &Pair,
    up: &Upstream,
    content_type: &str,
    extra: &[(&str, &str)],
    body: &[u8],
) {
    let before = up.requests().len();
    let mut headers = vec![("Content-Type", content_type)];
    headers.extend_from_slice(extra);
    let mut c = pair.conn();
    c.set_deadline(Duration::from_secs(30));
    let r = c
        .request("POST", "/echo_typed", &headers, Some(body))
        .unwrap_or_else(|e| panic!("{content_type}: {e}"));
    assert_eq!(r.status(), 200, "{content_type}: {r}");
    assert!(
        r.body == body,
        "{content_type}: the caller got {} other bytes",
        r.body.len()
    );
    assert_eq!(r.header("content-type"), Some(content_type));
    assert_eq!(r.header("ptproxy-link-encoding"), None);
    let reqs = up.requests();
    let q = &reqs[before..].last().expect("recorded").clone();
    assert!(
        q.body.as_deref() == Some(body),
        "{content_type}: the upstream got other bytes"
    );
    let field = |name: &str| {
        q.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    };
    assert_eq!(field("content-length"), Some(body.len().to_string()));
    assert_eq!(field("content-type").as_deref(), Some(content_type));
    assert_eq!(field("ptproxy-link-encoding"), None);
    for (n, v) in extra {
        assert_eq!(field(n).as_deref(), Some(*v));
    }
}

fn json(len: usize) -> Vec<u8> {
    let mut out = b"[".to_vec();
    let mut i = 0;
    while out.len() < len - 64 {
        out.extend_from_slice(
            format!("{{\"id\":{i},\"name\":\"user {i}\",\"active\":true}},").as_bytes(),
        );
        i += 1;
    }
    out.extend_from_slice(b"{}]");
    out
}

/// Sum of the compressed-body byte counters of one end: (plain, link) for `direction`.
pub(crate) fn compressed(metrics: &str, direction: &str) -> (f64, f64) {
    let s = scrape(metrics.parse().expect("address"));
    let labels = format!("{{direction=\"{direction}\"}}");
    (
        s.get("ptproxy_compressed_body_plain_bytes_total", &labels),
        s.get("ptproxy_compressed_body_link_bytes_total", &labels),
    )
}

#[test]
fn json_text_and_binary_bodies_cross_byte_exact_both_ways() {
    let up = Upstream::start();
    let (pair, client_m, server_m) = pair(&up, "compression_on", true, true);
    let binary = pattern(BODY);
    let (_, plain_bytes) = link_bytes(&pair, || {
        echo(&pair, &up, "application/octet-stream", &[], &binary)
    });
    let (_, json_bytes) = link_bytes(&pair, || {
        echo(&pair, &up, "application/json", &[], &json(BODY))
    });
    let (_, text_bytes) = link_bytes(&pair, || {
        echo(&pair, &up, "text/plain; charset=utf-8", &[], &text(BODY))
    });
    eprintln!("link bytes for {BODY} bytes each way: binary {plain_bytes}, JSON {json_bytes}, text {text_bytes}");
    assert!(
        json_bytes * 4 < plain_bytes,
        "JSON: {json_bytes} vs {plain_bytes}"
    );
    assert!(
        text_bytes * 4 < plain_bytes,
        "text: {text_bytes} vs {plain_bytes}"
    );
    // Both directions went compressed: requests by the client, responses by the server.
    let expected = (json(BODY).len() + text(BODY).len() + chunked_json(&pair, &up)) as f64;
    let (sent_plain, sent_link) = compressed(&client_m, "sent");
    let (got_plain, got_link) = compressed(&server_m, "received");
    assert_eq!(
        sent_plain, expected,
        "the binary body went plain, the others compressed"
    );
    assert_eq!((sent_plain, sent_link), (got_plain, got_link), "requests");
    assert!(
        sent_link * 4.0 < sent_plain,
        "{sent_link} link bytes for {sent_plain}"
    );
    let (sent_plain, sent_link) = compressed(&server_m, "sent");
    let (got_plain, got_link) = compressed(&client_m, "received");
    assert_eq!((sent_plain, sent_link), (got_plain, got_link), "responses");
    assert!(
        sent_link * 4.0 < sent_plain,
        "{sent_link} link bytes for {sent_plain}"
    );
}

/// A chunked JSON request (length unknown: counts as large) crosses compressed and arrives
/// byte-exact; returns its length.
fn chunked_json(pair: &Pair, up: &Upstream) -> usize {
    let body = json(BODY);
    let parts: Vec<&[u8]> = body.chunks(10_000).collect();
    let mut c = pair.conn();
    c.set_deadline(Duration::from_secs(30));
    let head = "POST /echo_typed HTTP/1.1\r\nHost: e2e.test\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n";
    let mut wire = head.as_bytes().to_vec();
    wire.extend_from_slice(&crate::harness::http::chunked_body(&parts));
    c.send(&wire).expect("send");
    let r = c.read_response("POST").expect("response");
    assert_eq!(r.status(), 200, "{r}");
    assert!(
        r.body == body,
        "chunked: the caller got {} other bytes",
        r.body.len()
    );
    let q = up.requests().pop().expect("recorded");
    assert!(
        q.body.as_deref() == Some(&body[..]),
        "chunked: the upstream got other bytes"
    );
    body.len()
}

#[test]
fn an_already_encoded_body_passes_untouched() {
    let up = Upstream::start();
    let (pair, client_m, server_m) = pair(&up, "compression_gzip", true, true);
    // Compressible bytes, but declared gzip: ptproxy must not touch them.
    let body = text(BODY);
    let (_, n) = link_bytes(&pair, || {
        echo(
            &pair,
            &up,
            "text/plain",
            &[("Content-Encoding", "gzip")],
            &body,
        )
    });
    assert!(
        n as usize > 2 * BODY,
        "{n} link bytes: the body was compressed"
    );
    // A small body under min_bytes goes plain too.
    echo(&pair, &up, "application/json", &[], b"{\"small\":true}");
    assert_eq!(compressed(&client_m, "sent"), (0.0, 0.0));
    assert_eq!(compressed(&server_m, "sent"), (0.0, 0.0));
    let r = pair.get("/hello");
    assert_eq!(r.body, b"hello", "{r}");
}

#[test]
fn an_end_with_compression_off_interoperates() {
    for (client_on, server_on) in [(true, false), (false, true)] {
        let up = Upstream::start();
        let name = format!("compression_one_side_{client_on}");
        let (pair, client_m, server_m) = pair(&up, &name, client_on, server_on);
        let body = json(BODY);
        let (_, n) = link_bytes(&pair, || echo(&pair, &up, "application/json", &[], &body));
        assert!(
            n as usize > 2 * BODY,
            "{n} link bytes: the body was compressed"
        );
        for m in [&client_m, &server_m] {
            assert_eq!(compressed(m, "sent"), (0.0, 0.0));
            assert_eq!(compressed(m, "received"), (0.0, 0.0));
        }
    }
}

const BIG: u64 = 200 * 1024 * 1024;
const RSS_LIMIT_KIB: u64 = 64 * 1024;
const TRANSFER_DEADLINE: Duration = Duration::from_secs(180);

fn assert_peak_rss(pair: &Pair, what: &str) {
    for p in [&pair.client, &pair.server] {
        let kib = p
            .peak_rss_kib()
            .unwrap_or_else(|| panic!("{}: no VmHWM", p.name()));
        eprintln!("{what}: {} peak RSS {kib} KiB", p.name());
        assert!(
            kib < RSS_LIMIT_KIB,
            "{what}: {} peak RSS {kib} KiB",
            p.name()
        );
    }
}

#[test]
fn compressible_200mb_download_and_upload_with_bounded_memory() {
    let _heavy = heavy_lock();
    let up = Upstream::start();
    let (pair, client_m, server_m) = pair(&up, "compression_200mb", true, true);

    let mut c = pair.conn();
    c.set_deadline(TRANSFER_DEADLINE);
    let t = Instant::now();
    c.send(format!("GET /text/{BIG} HTTP/1.1\r\nHost: e2e.test\r\n\r\n").as_bytes())
        .expect("send");
    let head = c.read_head("GET").expect("head");
    assert_eq!(head.status, 200, "{head:?}");
    let (mut off, mut scratch, mut mismatch) = (0u64, Vec::new(), None);
    c.read_body_with(&head, &mut |b| {
        scratch.resize(b.len(), 0);
        fill_text(off, &mut scratch);
        if mismatch.is_none() && scratch != b {
            mismatch = Some(off);
        }
        off += b.len() as u64;
    })
    .unwrap_or_else(|e| panic!("download after {:?}: {e}", t.elapsed()));
    assert_eq!((off, mismatch), (BIG, None), "the body differs");
    eprintln!("download {BIG} bytes in {:.1}s", t.elapsed().as_secs_f64());
    let (plain, link) = compressed(&server_m, "sent");
    assert!(
        plain >= BIG as f64 && link * 4.0 < plain,
        "{link} link bytes for {plain}"
    );

    let t = Instant::now();
    let head = format!(
        "POST /sink HTTP/1.1\r\nHost: e2e.test\r\nContent-Type: text/plain\r\nContent-Length: {BIG}\r\n\r\n"
    );
    let mut c = pair.conn();
    c.set_deadline(TRANSFER_DEADLINE);
    c.send(head.as_bytes()).expect("head");
    let (mut sum, mut buf, mut off) = (Checksum::new(), vec![0u8; 64 * 1024], 0u64);
    while off < BIG {
        assert!(t.elapsed() < TRANSFER_DEADLINE, "upload stalled at {off}");
        let k = ((BIG - off) as usize).min(buf.len());
        fill_text(off, &mut buf[..k]);
        sum.update(&buf[..k]);
        c.io.stream
            .write_all(&buf[..k])
            .unwrap_or_else(|e| panic!("upload at {off}: {e}"));
        off += k as u64;
    }
    let r = c.read_response("POST").expect("response");
    assert_eq!(r.status(), 200, "{r}");
    assert_eq!(
        r.body_str(),
        crate::harness::pattern::sink_answer(BIG, sum.value())
    );
    eprintln!("upload {BIG} bytes in {:.1}s", t.elapsed().as_secs_f64());
    let (plain, link) = compressed(&client_m, "sent");
    assert!(
        plain >= BIG as f64 && link * 4.0 < plain,
        "{link} link bytes for {plain}"
    );
    assert_peak_rss(&pair, "after 200 MB compressible download and upload");
}

/// `plain` as one zstd frame with a content checksum, as a ptproxy end sends it.
fn zstd_frame(plain: &[u8]) -> Vec<u8> {
    use zstd::zstd_safe::{CCtx, CParameter};
    let mut cctx = CCtx::create();
    cctx.set_parameter(CParameter::ChecksumFlag(true))
        .expect("checksum");
    let mut out = Vec::with_capacity(plain.len() + 1024);
    cctx.compress2(&mut out, plain).expect("compress");
    out
}

/// A fake peer (a bare HTTP/3 client) sends marked request bodies straight to the server:
/// a sound frame reaches the upstream decompressed; a corrupt one, or one cut before its
/// checksum (all plain bytes there but unverified), resets the stream and never reaches the
/// upstream as a complete request.
#[test]
fn a_corrupt_compressed_request_is_reset_never_delivered() {
    use crate::harness::h3_client::{H3Client, H3Outcome};
    const H3_MESSAGE_ERROR: u64 = 0x10e;
    let up = Upstream::start();
    let (pair, _, _) = pair(&up, "compression_corrupt", true, true);
    let mut c = H3Client::connect(pair.quic_addr);
    let wait = Duration::from_secs(10);
    let body = json(100_000);
    let length = body.len().to_string();
    let fields = |path: &'static str| {
        vec![
            (":method", "POST"),
            (":scheme", "http"),
            (":authority", "localhost"),
            (":path", path),
            ("content-type", "application/json"),
            ("content-length", length.as_str()),
            ("ptproxy-link-encoding", "zstd"),
        ]
    };
    let frame = zstd_frame(&body);
    let s = c.send(&fields("/echo_typed"), Some(&frame));
    match c.outcome(s, wait) {
        H3Outcome::Response {
            status, body: got, ..
        } => {
            assert_eq!(status, 200);
            assert!(got == body, "the echo differs");
        }
        other => panic!("a sound frame: {other:?}"),
    }
    let q = up.requests().pop().expect("recorded");
    assert!(
        q.body.as_deref() == Some(&body[..]),
        "the upstream got other bytes"
    );
    assert!(q.headers.iter().all(|(n, _)| n != "ptproxy-link-encoding"));

    let mut flipped = frame.clone();
    let middle = flipped.len() / 2;
    flipped[middle] ^= 0x20;
    let cut = frame[..frame.len() - 4].to_vec();
    let garbage = body[..2000].to_vec();
    for (what, path, bad) in [
        ("flipped", "/corrupt_flipped", flipped),
        ("cut before the checksum", "/corrupt_cut", cut),
        ("not zstd", "/corrupt_plain", garbage),
    ] {
        let errors_before = up.errors().len();
        let s = c.send(&fields(path), Some(&bad));
        match c.outcome(s, wait) {
            H3Outcome::Reset(code) => assert_eq!(code, H3_MESSAGE_ERROR, "{what}"),
            H3Outcome::Response { status, .. } => {
                assert!(status >= 400, "{what}: {status}")
            }
        }
        // If the head reached the upstream, its connection must end without a complete
        // request (the harness records the error); otherwise nothing reached it at all.
        let ended = crate::harness::poll_until(wait, Duration::from_millis(10), || {
            let head_seen = up.heads().iter().any(|h| h.target() == path);
            let conn_failed = up.errors().len() > errors_before;
            (!head_seen || conn_failed).then_some(())
        });
        assert!(
            ended.is_some(),
            "{what}: the upstream connection neither failed nor stayed untouched (a complete request?)"
        );
        let reached = up.requests().iter().any(|q| q.target == path);
        assert!(!reached, "{what}: the upstream got a complete request");
    }
    let r = pair.get("/hello");
    assert_eq!(r.body, b"hello", "{r}");
}

/// A fake server end (a bare HTTP/3 server) answers with marked response bodies: a sound
/// frame reaches the caller decompressed and byte-exact; a corrupt one, or one cut before its
/// checksum, never completes at the caller (its connection is closed mid-body).
#[test]
fn a_corrupt_compressed_response_never_completes_at_the_caller() {
    use crate::harness::h3_server::{zstd_plain, BareH3Server};
    use crate::harness::pair::{LOG_SESSION_UP, READY_TIMEOUT};
    let bare = BareH3Server::start();
    let pair = PairBuilder::new(crate::harness::closed_tcp_addr())
        .name("compression_corrupt_response")
        .start_server(false)
        .client("peer.address", &format!("\"{}\"", bare.addr()))
        .client("http.compression", ON)
        .start();
    pair.client.expect_log(LOG_SESSION_UP, READY_TIMEOUT);
    let r = pair.get("/zstd/good");
    assert_eq!(r.status(), 200, "{r}");
    assert!(
        r.body == zstd_plain(),
        "the caller got {} other bytes",
        r.body.len()
    );
    assert_eq!(r.header("ptproxy-link-encoding"), None);
    assert_eq!(
        r.header("content-length"),
        Some(zstd_plain().len().to_string().as_str())
    );
    for case in ["flipped", "cut"] {
        let mut c = pair.conn();
        c.set_deadline(Duration::from_secs(10));
        match c.get(&format!("/zstd/{case}")) {
            Err(_) => {}
            Ok(r) => panic!(
                "{case}: a complete response reached the caller: {}",
                r.status()
            ),
        }
    }
    let r = pair.get("/zstd/good");
    assert_eq!(r.status(), 200, "the session is still fine: {r}");
}

/// Per service (server, responses) and per route (client, requests): `compression: false` on
/// a service keeps its responses plain while another service's go compressed over the same
/// session, and a route with `compression: true` compresses request bodies although the
/// client's `http.compression.enabled` is off (it still announces the setting).
#[test]
fn a_service_or_route_switch_overrides_the_default() {
    let (squeezed, plain) = (Upstream::start(), Upstream::start());
    let routed = format!("127.0.0.1:{}", crate::harness::free_tcp_port());
    let (server_metrics, server_json) = metrics_addr();
    let services = format!(
        r#"[{{"name": "squeezed", "upstream": {{"address": "{}"}}}},
            {{"name": "plain", "upstream": {{"address": "{}"}}, "compression": false}}]"#,
        squeezed.addr(),
        plain.addr()
    );
    let listeners = format!(
        r#"[{{"address": "{routed}", "routes": [{{"host": "plain.example", "service": "plain"}},
                                               {{"service": "squeezed", "compression": true}}]}}]"#
    );
    let _pair = PairBuilder::new(squeezed.addr())
        .name("compression_per_service")
        .server("http.compression", ON)
        .server("services", &services)
        .client("listeners", &listeners)
        .server("metrics.listen", &server_json)
        .start();
    let routed: std::net::SocketAddr = routed.parse().expect("address");
    let link_bytes = |direction: &str| {
        let series =
            format!("ptproxy_compressed_body_link_bytes_total{{direction=\"{direction}\"}}");
        crate::harness::admin::metric(server_metrics, &series).unwrap_or(0.0)
    };
    let get = |host: &str| {
        let mut c = crate::harness::HttpConn::connect(routed).expect("connect");
        let r = c
            .request("GET", "/text/200000", &[("Host", host)], None)
            .expect("a response");
        assert_eq!(r.status(), 200, "{host}: {r}");
        assert!(r.body == text(200_000), "{host}: the body differs");
    };
    get("plain.example");
    assert_eq!(
        link_bytes("sent"),
        0.0,
        "the plain service's response went compressed"
    );
    get("squeezed.example");
    let sent = link_bytes("sent");
    assert!(
        sent > 0.0 && sent < 100_000.0,
        "the other service's did not: {sent}"
    );

    // The squeezed route compresses a request body: the server received it compressed.
    let body = text(100_000);
    let mut c = crate::harness::HttpConn::connect(routed).expect("connect");
    let r = c
        .request(
            "POST",
            "/echo_typed",
            &[("Host", "squeezed.example"), ("Content-Type", "text/plain")],
            Some(&body),
        )
        .expect("a response");
    assert_eq!(r.status(), 200, "{r}");
    assert!(r.body == body, "the echo differs");
    assert!(
        link_bytes("received") > 0.0,
        "the request body did not come compressed"
    );
}
