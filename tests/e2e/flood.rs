//! Spoofed QUIC Initial floods (issue 9, items 2 and 3). Real client Initials, made by driving
//! throwaway `quiche::connect` clients, go out from many UDP sockets that never answer, as a
//! spoofed victim would not: from many loopback addresses (127.0.1.x), from many ports of one
//! address, and cut into datagrams under 1200 bytes. Meanwhile the real pair keeps its session
//! and every request succeeds; afterwards each spoofing socket has received at most 3x what
//! it sent, the server's memory stayed bounded, and `/metrics` shows the refusals.

use crate::harness::admin::{metric, metrics_addr};
use crate::harness::pattern::{pattern, sink_answer};
use crate::harness::{heavy_lock, poll_until, HttpConn, Pair, PairBuilder, Upstream};
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const RSS_LIMIT_KIB: u64 = 64 * 1024;
/// ClientHellos each spoofing socket sends (one fresh connection ID each).
const HELLOS_PER_SOCKET: usize = 8;
/// Sockets on 127.0.1.1, 127.0.1.2, ...: many source addresses.
const MANY_ADDRESSES: usize = 200;
/// Sockets on 127.0.0.2: many ports of one address.
const MANY_PORTS: usize = 100;
/// Sockets on 127.0.0.3 whose Initials travel in datagrams under 1200 bytes.
const UNDERSIZED: usize = 50;
const UNDERSIZED_DATAGRAM: usize = 600;

/// A socket playing a spoofed source: sends Initials, never answers, counts what comes back.
struct Spoofer {
    socket: UdpSocket,
    sent: u64,
    received: u64,
    undersized: bool,
}

impl Spoofer {
    fn bind(ip: &str, undersized: bool) -> Spoofer {
        let socket =
            UdpSocket::bind(format!("{ip}:0")).unwrap_or_else(|e| panic!("bind {ip}: {e}"));
        socket.set_nonblocking(true).expect("nonblocking");
        Spoofer {
            socket,
            sent: 0,
            received: 0,
            undersized,
        }
    }

    fn addr(&self) -> SocketAddr {
        self.socket.local_addr().expect("local addr")
    }

    fn send(&mut self, datagram: &[u8], to: SocketAddr) -> usize {
        match self.socket.send_to(datagram, to) {
            Ok(n) => {
                self.sent += n as u64;
                1
            }
            Err(_) => 0,
        }
    }

    /// Reads whatever arrived (bounded); returns how many datagrams.
    fn drain(&mut self) -> usize {
        let mut buf = [0u8; 65_535];
        for i in 0..10_000 {
            match self.socket.recv(&mut buf) {
                Ok(n) => self.received += n as u64,
                Err(_) => return i,
            }
        }
        10_000
    }
}

/// Makes the datagrams of real client Initials (a whole ClientHello each), as a quiche client
/// would send them from `from` to `server`, in datagrams of at most `max_len` bytes.
struct InitialMaker {
    config: quiche::Config,
    next_id: u64,
}

impl InitialMaker {
    fn new() -> InitialMaker {
        let mut config = quiche::Config::new(quiche::PROTOCOL_VERSION).expect("quiche config");
        config
            .set_application_protos(quiche::h3::APPLICATION_PROTOCOL)
            .expect("alpn");
        config.verify_peer(false);
        config.set_max_send_udp_payload_size(1350);
        InitialMaker { config, next_id: 1 }
    }

    fn hello(&mut self, from: SocketAddr, server: SocketAddr, max_len: usize) -> Vec<Vec<u8>> {
        self.next_id += 1;
        let mut scid = [0u8; 16];
        scid[..8].copy_from_slice(&self.next_id.to_be_bytes());
        scid[8..]
            .copy_from_slice(&(self.next_id.wrapping_mul(0x9e37_79b9_7f4a_7c15)).to_be_bytes());
        let scid = quiche::ConnectionId::from_ref(&scid);
        let mut conn =
            quiche::connect(None, &scid, from, server, &mut self.config).expect("quiche connect");
        let mut out = Vec::new();
        let mut buf = [0u8; 1500];
        for _ in 0..16 {
            match conn.send(&mut buf[..max_len]) {
                Ok((n, _)) => out.push(buf[..n].to_vec()),
                Err(_) => break,
            }
        }
        out
    }
}

/// Requests through the pair, one after the other, until `stop`: a GET whose body is checked
/// byte for byte and a POST whose checksum the upstream returns. Returns (done, failures).
fn real_traffic(http: SocketAddr, stop: Arc<AtomicBool>) -> (usize, Vec<String>) {
    let body = pattern(64 * 1024);
    let deadline = Instant::now() + Duration::from_secs(120);
    let (mut done, mut failures) = (0, Vec::new());
    for i in 0..2_000 {
        if (stop.load(Ordering::Relaxed) && i >= 10) || Instant::now() > deadline {
            break;
        }
        let mut c = match HttpConn::connect_timeout(http, Duration::from_secs(5)) {
            Ok(c) => c,
            Err(e) => {
                failures.push(format!("connect: {e}"));
                continue;
            }
        };
        c.set_deadline(Duration::from_secs(20));
        match c.download_pattern("/bytes/200000") {
            Ok((h, n)) if h.status == 200 && n == 200_000 => {}
            other => failures.push(format!("GET /bytes/200000: {other:?}")),
        }
        let want = sink_answer(body.len() as u64, crate::harness::pattern::checksum(&body));
        match c.post("/sink", &body) {
            Ok(r) if r.status() == 200 && r.body_str() == want => {}
            other => failures.push(format!("POST /sink: {other:?}")),
        }
        done += 2;
    }
    (done, failures)
}

fn spoofers() -> Vec<Spoofer> {
    let mut v = Vec::new();
    for i in 0..MANY_ADDRESSES {
        v.push(Spoofer::bind(&format!("127.0.1.{}", i + 1), false));
    }
    for _ in 0..MANY_PORTS {
        v.push(Spoofer::bind("127.0.0.2", false));
    }
    for _ in 0..UNDERSIZED {
        v.push(Spoofer::bind("127.0.0.3", true));
    }
    v
}

/// Sends every spoofer's ClientHellos, round by round; samples the handshakes in progress
/// after each round. Returns (full-size datagrams, undersized datagrams, highest gauge seen).
fn flood(pair: &Pair, metrics: SocketAddr, spoofers: &mut [Spoofer]) -> (usize, usize, f64) {
    let mut maker = InitialMaker::new();
    let (mut full, mut small, mut peak) = (0, 0, 0.0f64);
    for _ in 0..HELLOS_PER_SOCKET {
        for s in spoofers.iter_mut() {
            let max_len = if s.undersized {
                UNDERSIZED_DATAGRAM
            } else {
                1350
            };
            for d in maker.hello(s.addr(), pair.quic_addr, max_len) {
                let n = s.send(&d, pair.quic_addr);
                if s.undersized {
                    small += n;
                } else {
                    full += n;
                }
            }
            s.drain();
        }
        if let Some(v) = metric(metrics, "ptproxy_handshakes_in_progress") {
            peak = peak.max(v);
        }
        // Pace the rounds a little so the server reads rather than the kernel dropping.
        std::thread::sleep(Duration::from_millis(100));
    }
    (full, small, peak)
}

#[test]
fn spoofed_initials_get_at_most_3x_back_and_the_real_session_carries_on() {
    let _heavy = heavy_lock();
    let up = Upstream::start();
    let (maddr, mjson) = metrics_addr();
    let pair = PairBuilder::new(up.addr())
        .name("flood")
        .server("metrics.listen", &mjson)
        .start();
    assert_eq!(pair.get("/hello").status(), 200);
    let rss_before = pair.server.rss_kib().expect("server RSS");

    let stop = Arc::new(AtomicBool::new(false));
    let traffic = {
        let (http, stop) = (pair.http_addr, stop.clone());
        std::thread::spawn(move || real_traffic(http, stop))
    };
    let mut spoofers = spoofers();
    let t = Instant::now();
    let (full, small, peak_in_progress) = flood(&pair, maddr, &mut spoofers);
    let flood_secs = t.elapsed().as_secs_f64();

    // Every spoofed handshake is dropped by the handshake timeout; then nothing more comes.
    let settled = poll_until(Duration::from_secs(20), Duration::from_millis(100), || {
        for s in spoofers.iter_mut() {
            s.drain();
        }
        (metric(maddr, "ptproxy_handshakes_in_progress") == Some(0.0)).then_some(())
    });
    for s in spoofers.iter_mut() {
        s.drain();
    }
    stop.store(true, Ordering::Relaxed);
    let (requests, failures) = traffic.join().expect("traffic thread");
    let peak_rss = pair.server.peak_rss_kib().expect("server VmHWM");

    let (mut full_sent, mut full_back, mut small_sent, mut small_back) = (0, 0, 0, 0);
    let mut worst = (0.0f64, None);
    for s in &spoofers {
        if s.undersized {
            (small_sent, small_back) = (small_sent + s.sent, small_back + s.received);
        } else {
            (full_sent, full_back) = (full_sent + s.sent, full_back + s.received);
        }
        let ratio = s.received as f64 / s.sent.max(1) as f64;
        if ratio > worst.0 {
            worst = (ratio, Some((s.addr(), s.sent, s.received)));
        }
    }
    let hellos = (spoofers.len() * HELLOS_PER_SOCKET) as f64;
    let full_hellos = ((MANY_ADDRESSES + MANY_PORTS) * HELLOS_PER_SOCKET) as f64;
    let small_hellos = (UNDERSIZED * HELLOS_PER_SOCKET) as f64;
    eprintln!(
        "[flood] {hellos} spoofed ClientHellos in {flood_secs:.1} s: {full} datagrams >= 1200 B, \
         {small} under 1200 B; back per full-size ClientHello {:.0} B for {:.0} B sent ({:.2}x), \
         per undersized ClientHello {:.0} B for {:.0} B sent ({:.2}x); worst socket {worst:?}; \
         server RSS {rss_before} KiB before, peak {peak_rss} KiB; handshakes in progress peak \
         {peak_in_progress}; real requests {requests}, failures {}",
        full_back as f64 / full_hellos,
        full_sent as f64 / full_hellos,
        full_back as f64 / full_sent.max(1) as f64,
        small_back as f64 / small_hellos,
        small_sent as f64 / small_hellos,
        small_back as f64 / small_sent.max(1) as f64,
        failures.len(),
    );

    assert!(failures.is_empty(), "real requests failed: {failures:?}");
    assert!(requests >= 20, "only {requests} real requests ran");
    assert_eq!(
        pair.client.count_log("session lost"),
        0,
        "the real client lost its session"
    );
    assert!(
        worst.0 <= 3.0,
        "a spoofed source got more than 3x what it sent: {worst:?}"
    );
    assert!(
        peak_rss < RSS_LIMIT_KIB,
        "server peak RSS {peak_rss} KiB >= {RSS_LIMIT_KIB} KiB"
    );
    assert!(
        settled.is_some(),
        "handshakes still in progress 20 s after the flood"
    );
    let get = |series: &str| metric(maddr, series).unwrap_or_else(|| panic!("{series} missing"));
    let undersized = get("ptproxy_initials_dropped_undersized_total");
    assert!(
        undersized > 0.0 && undersized <= small as f64,
        "undersized Initials dropped: {undersized} of {small} sent"
    );
    assert_eq!(small_back, 0, "undersized Initials were answered");
    assert!(
        get("ptproxy_handshakes_refused_total{reason=\"rate_limit\"}") > 0.0,
        "many ports of one address were not rate limited"
    );
    assert!(
        get("ptproxy_retries_sent_total") > 0.0,
        "no Retry under the flood"
    );
    assert!(get("ptproxy_handshakes_timed_out_total") > 0.0);
    assert!(
        peak_in_progress <= 32.0,
        "handshakes in progress {peak_in_progress} above the default cap"
    );
    // The log says so in summaries, not a line per packet.
    let summaries = pair.server.count_log("handshake admission");
    let bound = (t.elapsed().as_secs() / 5 + 2) as usize;
    assert!(
        (1..=bound).contains(&summaries),
        "{summaries} admission summary lines (expected 1..={bound})"
    );
    assert_eq!(pair.server.count_log("session established"), 1);
}

#[test]
fn with_retry_always_the_real_client_connects_through_a_retry() {
    let up = Upstream::start();
    let (maddr, mjson) = metrics_addr();
    let pair = PairBuilder::new(up.addr())
        .name("flood_retry_always")
        .server("admission.retry", "\"always\"")
        .server("metrics.listen", &mjson)
        .start();
    let r = pair.get("/hello");
    assert_eq!((r.status(), r.body.as_slice()), (200, &b"hello"[..]), "{r}");
    let body = pattern(300_000);
    let r = pair.post("/echo", &body);
    assert_eq!(r.status(), 200);
    assert!(r.body == body, "echo not byte-exact");
    let retries = metric(maddr, "ptproxy_retries_sent_total").expect("retries metric");
    assert!(retries >= 1.0, "no Retry sent: {retries}");
    assert_eq!(
        metric(
            maddr,
            "ptproxy_handshakes_refused_total{reason=\"invalid_token\"}"
        ),
        Some(0.0)
    );
}

#[test]
fn unfinished_handshakes_are_capped_and_dropped_after_the_handshake_timeout() {
    let up = Upstream::start();
    let (maddr, mjson) = metrics_addr();
    let pair = PairBuilder::new(up.addr())
        .name("flood_caps")
        .server("admission.retry", "\"never\"")
        .server("admission.max_handshakes", "4")
        .server("admission.handshake_timeout_ms", "1000")
        .server("metrics.listen", &mjson)
        .start();
    let mut maker = InitialMaker::new();
    let mut spoofers: Vec<Spoofer> = (0..10)
        .map(|i| Spoofer::bind(&format!("127.0.2.{}", i + 1), false))
        .collect();
    for s in spoofers.iter_mut() {
        for d in maker.hello(s.addr(), pair.quic_addr, 1350) {
            s.send(&d, pair.quic_addr);
        }
    }
    let capped = poll_until(Duration::from_secs(10), Duration::from_millis(50), || {
        let refused = metric(
            maddr,
            "ptproxy_handshakes_refused_total{reason=\"handshake_cap\"}",
        )?;
        (refused == 6.0).then_some(())
    });
    assert!(
        capped.is_some(),
        "expected 6 of 10 handshakes refused by the cap of 4, got {:?}",
        metric(
            maddr,
            "ptproxy_handshakes_refused_total{reason=\"handshake_cap\"}"
        )
    );
    let timed_out = poll_until(Duration::from_secs(10), Duration::from_millis(50), || {
        (metric(maddr, "ptproxy_handshakes_timed_out_total")? == 4.0).then_some(())
    });
    assert!(
        timed_out.is_some(),
        "the 4 admitted handshakes did not time out"
    );
    assert_eq!(metric(maddr, "ptproxy_handshakes_in_progress"), Some(0.0));
    let mut answered = Vec::new();
    for s in spoofers.iter_mut() {
        s.drain();
        assert!(
            s.received <= 3 * s.sent,
            "{} got {} for {}",
            s.addr(),
            s.received,
            s.sent
        );
        if s.received > 0 {
            answered.push((s.sent, s.received));
        }
    }
    eprintln!("[flood] admitted spoofed handshakes, (bytes sent, bytes back): {answered:?}");
    assert_eq!(
        answered.len(),
        4,
        "only the admitted handshakes are answered"
    );
    let r = pair.get("/hello");
    assert_eq!(r.status(), 200, "the real session is unaffected: {r}");
}
