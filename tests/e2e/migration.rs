//! NAT rebinding: the client's address as the server sees it changes in the middle of a
//! transfer (a NAT gave the flow a new port, and the old mapping dies). The session must carry
//! on, on the same connection, any number of times, without losing or stalling the requests in
//! flight. And under connection-ID churn (a client retiring the server's IDs over and over),
//! the server's table of routed IDs stays bounded.

use crate::harness::http::{build_request, HttpConn};
use crate::harness::pattern::check_pattern;
use crate::harness::{free_tcp_port, heavy_lock, PairBuilder, Upstream};
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A UDP "NAT": clients talk to `front`; it forwards to the server from a back socket that
/// `rebind` replaces with a fresh one (new source port), like a NAT losing its mapping. The old
/// mapping still delivers the server's stragglers for `grace`, then it is gone (what the server
/// sends to the old port after that is lost).
struct Nat {
    front: SocketAddr,
    back: Arc<Mutex<Arc<UdpSocket>>>,
    client: Arc<Mutex<Option<SocketAddr>>>,
    front_sock: Arc<UdpSocket>,
    stop: Arc<AtomicBool>,
    /// When the current mapping was replaced (None while it is the current one), per mapping.
    retired: Mutex<Arc<Mutex<Option<Instant>>>>,
    rebinds: AtomicU64,
    grace: Duration,
    /// An on-path attacker: the next client datagram is also sent from this socket, first.
    relay_next: Arc<Mutex<Option<Arc<UdpSocket>>>>,
    relayed_bytes: Arc<AtomicU64>,
}

const READ_TIMEOUT: Duration = Duration::from_millis(20);
/// A NAT whose old mapping forwards stragglers for a while (the gentle case).
const GENTLE: Duration = Duration::from_millis(100);
/// A NAT whose old mapping dies the moment it is replaced (packets in flight to it are lost).
const ABRUPT: Duration = Duration::ZERO;

impl Nat {
    fn start(server: SocketAddr, grace: Duration) -> Nat {
        let front_sock = Arc::new(UdpSocket::bind("127.0.0.1:0").expect("bind front"));
        front_sock
            .set_read_timeout(Some(READ_TIMEOUT))
            .expect("timeout");
        let nat = Nat {
            front: front_sock.local_addr().expect("addr"),
            back: Arc::new(Mutex::new(Arc::new(
                UdpSocket::bind("127.0.0.1:0").expect("bind back"),
            ))),
            client: Arc::new(Mutex::new(None)),
            front_sock,
            stop: Arc::new(AtomicBool::new(false)),
            retired: Mutex::new(Arc::new(Mutex::new(None))),
            rebinds: AtomicU64::new(0),
            grace,
            relay_next: Arc::new(Mutex::new(None)),
            relayed_bytes: Arc::new(AtomicU64::new(0)),
        };
        let (front, back, client, stop) = (
            nat.front_sock.clone(),
            nat.back.clone(),
            nat.client.clone(),
            nat.stop.clone(),
        );
        let (relay_next, relayed_bytes) = (nat.relay_next.clone(), nat.relayed_bytes.clone());
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 65536];
            while !stop.load(Ordering::SeqCst) {
                let Ok((n, from)) = front.recv_from(&mut buf) else {
                    continue;
                };
                *client.lock().expect("lock") = Some(from);
                if let Some(attacker) = relay_next.lock().expect("lock").take() {
                    let _ = attacker.send_to(&buf[..n], server);
                    relayed_bytes.fetch_add(n as u64, Ordering::SeqCst);
                }
                let sock = back.lock().expect("lock").clone();
                let _ = sock.send_to(&buf[..n], server);
            }
        });
        let first = nat.retired.lock().expect("lock").clone();
        nat.pump_back(first);
        nat
    }

    /// Relays what the server sends to the current back socket towards the client, until the
    /// mapping was retired `grace` ago.
    fn pump_back(&self, retired: Arc<Mutex<Option<Instant>>>) {
        let sock = self.back.lock().expect("lock").clone();
        sock.set_read_timeout(Some(READ_TIMEOUT)).expect("timeout");
        let (front, client, stop, grace) = (
            self.front_sock.clone(),
            self.client.clone(),
            self.stop.clone(),
            self.grace,
        );
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 65536];
            while !stop.load(Ordering::SeqCst) {
                let dead = retired
                    .lock()
                    .expect("lock")
                    .is_some_and(|t| t.elapsed() >= grace);
                if dead {
                    return; // the socket closes: the old port answers ICMP unreachable
                }
                let Ok((n, _)) = sock.recv_from(&mut buf) else {
                    continue;
                };
                if let Some(c) = *client.lock().expect("lock") {
                    let _ = front.send_to(&buf[..n], c);
                }
            }
        });
    }

    /// The flow gets a new source port from now on; the old mapping dies shortly after.
    fn rebind(&self) -> SocketAddr {
        let fresh = Arc::new(UdpSocket::bind("127.0.0.1:0").expect("bind new back"));
        let addr = fresh.local_addr().expect("addr");
        *self.back.lock().expect("lock") = fresh;
        let mapping = Arc::new(Mutex::new(None));
        let old = std::mem::replace(&mut *self.retired.lock().expect("lock"), mapping.clone());
        *old.lock().expect("lock") = Some(Instant::now());
        self.pump_back(mapping);
        self.rebinds.fetch_add(1, Ordering::SeqCst);
        addr
    }
}

impl Drop for Nat {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// A pair whose client reaches the server through a [`Nat`]; the client serves metrics on
/// the returned address.
fn pair_behind_nat(
    name: &str,
    grace: Duration,
) -> (Upstream, crate::harness::Pair, Nat, SocketAddr) {
    let up = Upstream::start();
    let metrics: SocketAddr = format!("127.0.0.1:{}", free_tcp_port()).parse().unwrap();
    let builder = PairBuilder::new(up.addr()).name(name).start_server(true);
    let quic = builder
        .server_config()
        .get("listen")
        .and_then(|j| j.as_str().map(str::to_string));
    let server: SocketAddr = quic.expect("server listen").parse().expect("addr");
    let nat = Nat::start(server, grace);
    let pair = builder
        .client("peer.address", &format!("\"{}\"", nat.front))
        .client("metrics.listen", &format!("\"{metrics}\""))
        .start();
    (up, pair, nat, metrics)
}

/// The session never broke: one session on each side, no loss logged, no reconnect counted.
fn assert_one_session(pair: &crate::harness::Pair, metrics: SocketAddr) {
    assert_eq!(
        pair.client.count_log("session lost"),
        0,
        "the session was lost"
    );
    assert_eq!(
        pair.client.count_log("session established"),
        1,
        "the client had to reconnect"
    );
    assert_eq!(
        pair.server.count_log("session established"),
        1,
        "the server saw a new session"
    );
    let page = crate::harness::http::get(metrics, "/metrics").expect("client /metrics");
    let text = page.body_str();
    assert!(
        text.lines()
            .any(|l| l.trim() == "ptproxy_session_reconnects_total 0"),
        "reconnects counted:\n{text}"
    );
}

#[test]
fn session_survives_the_client_address_changing_mid_transfer() {
    let (_up, pair, nat, metrics) = pair_behind_nat("nat_rebinding", GENTLE);
    const SIZE: usize = 32 * 1024 * 1024;
    std::thread::scope(|s| {
        // The reader pauses after 1 MiB, so the transfer is still in flight across the rebinds.
        let download = s.spawn(|| {
            let mut c = pair.conn();
            c.set_deadline(Duration::from_secs(60));
            c.download_pattern_paused(
                &format!("/bytes/{SIZE}"),
                1 << 20,
                Duration::from_millis(1500),
            )
        });
        // Rebind twice while the download runs, with requests on another connection between.
        let mut c = pair.conn();
        c.set_deadline(Duration::from_secs(30));
        for i in 0..30 {
            if i == 5 || i == 20 {
                let port = nat.rebind();
                eprintln!("NAT now sends from {port}");
            }
            let body = format!("request {i} across a rebinding").into_bytes();
            let r = c
                .post("/echo", &body)
                .unwrap_or_else(|e| panic!("request {i}: {e}"));
            assert_eq!((r.status(), &r.body), (200, &body), "request {i}: {r}");
        }
        assert!(
            !download.is_finished(),
            "the download was not in flight across the rebinds"
        );
        let (head, n) = download.join().expect("download thread").expect("download");
        assert_eq!(head.status, 200, "{head:?}");
        assert_eq!(
            n, SIZE as u64,
            "download cut short (the pattern itself is checked while reading)"
        );
    });
    assert_eq!(nat.rebinds.load(Ordering::SeqCst), 2);
    assert_one_session(&pair, metrics);
}

/// Reads the pattern body of `GET target` at no more than `rate` bytes per second (so the
/// transfer spans the rebindings), counting progress in `read`. Returns the status and length.
fn download_slowly(c: &mut HttpConn, target: &str, rate: u64, read: &AtomicU64) -> (u16, u64) {
    c.send(&build_request("GET", target, &[], None))
        .expect("send GET");
    let head = c.read_head("GET").expect("download head");
    let start = Instant::now();
    let mut off = 0u64;
    let mut scratch = Vec::new();
    let mut mismatch = None;
    c.read_body_with(&head, &mut |b| {
        if mismatch.is_none() {
            mismatch = check_pattern(off, b, &mut scratch).err();
        }
        off += b.len() as u64;
        read.store(off, Ordering::SeqCst);
        let due = Duration::from_secs_f64(off as f64 / rate as f64);
        if let Some(ahead) = due.checked_sub(start.elapsed()) {
            std::thread::sleep(ahead.min(Duration::from_millis(100)));
        }
    })
    .unwrap_or_else(|e| panic!("download body after {off} bytes: {e}"));
    assert_eq!(mismatch, None, "downloaded body differs from the pattern");
    (head.status, off)
}

/// Small requests one after the other until `stop`; returns each one's latency (and logs
/// the slow ones, with their time since `epoch`).
fn request_stream(c: &mut HttpConn, stop: &AtomicBool, epoch: Instant) -> Vec<Duration> {
    let mut latencies = Vec::new();
    for i in 0..20_000 {
        if stop.load(Ordering::SeqCst) {
            break;
        }
        let body = format!("small request {i}").into_bytes();
        let t = Instant::now();
        let r = c
            .post("/echo", &body)
            .unwrap_or_else(|e| panic!("request {i}: {e}"));
        latencies.push(t.elapsed());
        if t.elapsed() > Duration::from_millis(20) {
            eprintln!("{:?}: request {i} took {:?}", t - epoch, t.elapsed());
        }
        assert_eq!((r.status(), &r.body), (200, &body), "request {i}: {r}");
        std::thread::sleep(Duration::from_millis(10));
    }
    latencies
}

#[test]
fn session_survives_ten_rebindings_during_a_download_and_a_request_stream() {
    let _heavy = heavy_lock();
    let (_up, pair, nat, metrics) = pair_behind_nat("nat_rebinding_storm", ABRUPT);
    // A request's normal time on this pair, before any rebinding.
    let mut c = pair.conn();
    let mut normal = request_stream_n(&mut c, 20);
    normal.sort();
    let normal = normal[normal.len() / 2];
    const SIZE: u64 = 48 * 1024 * 1024;
    const RATE: u64 = 8 * 1024 * 1024;
    const REBINDS: u64 = 10;
    let read = AtomicU64::new(0);
    let stop = AtomicBool::new(false);
    let started = Instant::now();
    std::thread::scope(|s| {
        let download = s.spawn(|| {
            let mut d = pair.conn();
            d.set_deadline(Duration::from_secs(60));
            download_slowly(&mut d, &format!("/bytes/{SIZE}"), RATE, &read)
        });
        let requests = s.spawn(|| {
            c.set_deadline(Duration::from_secs(60));
            request_stream(&mut c, &stop, started)
        });
        let began =
            crate::harness::poll_until(Duration::from_secs(10), Duration::from_millis(10), || {
                (read.load(Ordering::SeqCst) >= 1 << 20).then_some(())
            });
        assert!(began.is_some(), "the download did not start");
        for i in 0..REBINDS {
            std::thread::sleep(Duration::from_millis(300 + (i * 53) % 200));
            let port = nat.rebind();
            eprintln!(
                "{:?}: rebinding {} (NAT now sends from {port}), {} bytes downloaded",
                started.elapsed(),
                i + 1,
                read.load(Ordering::SeqCst)
            );
        }
        // One more interval on the last mapping, then the request stream ends.
        std::thread::sleep(Duration::from_millis(500));
        let in_flight = !download.is_finished();
        stop.store(true, Ordering::SeqCst);
        let latencies = requests.join().expect("request thread");
        let (status, n) = download.join().expect("download thread");
        eprintln!(
            "download of {n} bytes took {:?}; {} small requests, normal {normal:?}, slowest {:?}",
            started.elapsed(),
            latencies.len(),
            latencies.iter().max()
        );
        assert!(
            in_flight,
            "the download was not in flight across the rebindings"
        );
        assert_eq!((status, n), (200, SIZE), "download cut short");
        let slowest = latencies.iter().max().copied().unwrap_or_default();
        assert!(
            slowest <= normal + Duration::from_secs(1),
            "a small request waited {slowest:?} (normal {normal:?})"
        );
        assert!(
            latencies.len() >= 50,
            "too few requests: {}",
            latencies.len()
        );
    });
    assert_eq!(nat.rebinds.load(Ordering::SeqCst), REBINDS);
    assert_one_session(&pair, metrics);
    assert_eq!(
        pair.server
            .count_log("(NAT rebinding; new address validated)"),
        REBINDS as usize,
        "the server did not follow every rebinding"
    );
}

/// `n` small requests; their latencies.
fn request_stream_n(c: &mut HttpConn, n: usize) -> Vec<Duration> {
    (0..n)
        .map(|i| {
            let body = format!("warm-up {i}").into_bytes();
            let t = Instant::now();
            let r = c.post("/echo", &body).expect("warm-up request");
            assert_eq!((r.status(), &r.body), (200, &body), "warm-up {i}: {r}");
            t.elapsed()
        })
        .collect()
}

/// Before the fix, quiche moved the session to a new path and the stream data in flight to the
/// dead old address was only recovered by that old path's own backed-off probe timer: the
/// download stalled until the server gave up on it 30 s later (4 trials out of 4).
#[test]
fn a_full_speed_download_is_not_stalled_by_a_rebinding() {
    let _heavy = heavy_lock();
    let (_up, pair, nat, metrics) = pair_behind_nat("nat_rebinding_once", ABRUPT);
    const SIZE: u64 = 64 * 1024 * 1024;
    let read = AtomicU64::new(0);
    let started = Instant::now();
    std::thread::scope(|s| {
        let download = s.spawn(|| {
            let mut d = pair.conn();
            d.set_deadline(Duration::from_secs(20));
            download_slowly(&mut d, &format!("/bytes/{SIZE}"), u64::MAX, &read)
        });
        let midway =
            crate::harness::poll_until(Duration::from_secs(10), Duration::from_millis(1), || {
                (read.load(Ordering::SeqCst) >= 8 << 20).then_some(())
            });
        assert!(midway.is_some(), "the download did not get going");
        nat.rebind();
        let at = read.load(Ordering::SeqCst);
        assert!(at < SIZE, "the download ended before the rebinding");
        let (status, n) = download.join().expect("download thread");
        eprintln!(
            "rebinding after {at} bytes; download done in {:?}",
            started.elapsed()
        );
        assert_eq!((status, n), (200, SIZE), "download cut short");
    });
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the download stalled: {:?}",
        started.elapsed()
    );
    assert_one_session(&pair, metrics);
}

/// RFC 9000 §9.3.3: an on-path attacker relays a genuine client packet from its own address,
/// ahead of the original. The server must not move the session there (the attacker cannot
/// answer the address check), must send it no more than 3x what it received from it, and the
/// session must carry on at the client's real address meanwhile.
#[test]
fn a_client_packet_relayed_from_elsewhere_does_not_move_the_session() {
    let (_up, pair, nat, metrics) = pair_behind_nat("nat_relayed", GENTLE);
    let attacker = Arc::new(UdpSocket::bind("127.0.0.1:0").expect("bind attacker"));
    attacker
        .set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    let mut c = pair.conn();
    c.set_deadline(Duration::from_secs(30));
    let normal = request_stream_n(&mut c, 5);
    let normal = normal.iter().max().copied().unwrap_or_default();
    *nat.relay_next.lock().expect("lock") = Some(attacker.clone());
    for i in 0..20 {
        let body = format!("request {i} while an attacker relays").into_bytes();
        let t = Instant::now();
        let r = c.post("/echo", &body).expect("request");
        assert_eq!((r.status(), &r.body), (200, &body), "request {i}: {r}");
        assert!(
            t.elapsed() <= normal + Duration::from_secs(1),
            "request {i} took {:?}",
            t.elapsed()
        );
    }
    assert!(
        nat.relay_next.lock().expect("lock").is_none(),
        "nothing relayed"
    );
    pair.server
        .expect_log("did not answer its address check", Duration::from_secs(10));
    let (mut got, mut buf) = (0u64, [0u8; 2048]);
    for _ in 0..100 {
        let Ok((n, _)) = attacker.recv_from(&mut buf) else {
            break;
        };
        assert_eq!(buf[0], 0, "the attacker got more than address challenges");
        got += n as u64;
    }
    let sent = nat.relayed_bytes.load(Ordering::SeqCst);
    eprintln!("attacker relayed {sent} bytes, got {got} bytes of challenges");
    assert!(got > 0, "the relayed address was not challenged");
    assert!(got <= 3 * sent, "amplification: {got} bytes for {sent}");
    assert_eq!(pair.server.count_log("moved from"), 0, "the session moved");
    assert_one_session(&pair, metrics);
    let r = c.post("/echo", b"after").expect("request after");
    assert_eq!((r.status(), r.body.as_slice()), (200, &b"after"[..]));
}

/// Connection-ID churn (issue 11): a client that retires the server's connection IDs one
/// after the other, 200 times, while the pair's own client is rebound by the NAT every 20
/// retirements. The server forgets every retired ID (`retired_scid_next`, the CID routing
/// table) and issues a fresh one, so its table of routed IDs never holds more than twice the
/// `active_connection_id_limit` (4) per session, and ends where it started.
#[test]
fn connection_id_churn_leaves_the_server_s_routing_table_bounded() {
    use crate::harness::admin::{metric, metrics_addr};
    use crate::harness::h3_client::H3Client;
    use crate::harness::poll_until;
    const RETIREMENTS: usize = 200;
    const PER_REBIND: usize = 20;
    /// Two sessions (the pair's and the bare client's), each at most 2 x the limit of 4.
    const BOUND: f64 = (2 * 2 * 4) as f64;
    const ROUTED: &str = "ptproxy_server_routed_connection_ids";
    let _heavy = heavy_lock();
    let up = Upstream::start();
    let (smetrics, sjson) = metrics_addr();
    let builder = PairBuilder::new(up.addr())
        .name("cid_churn")
        .server("metrics.listen", &sjson);
    let quic = builder
        .server_config()
        .get("listen")
        .and_then(|j| j.as_str().map(str::to_string));
    let server: SocketAddr = quic.expect("server listen").parse().expect("addr");
    let nat = Nat::start(server, GENTLE);
    let pair = builder
        .client("peer.address", &format!("\"{}\"", nat.front))
        .start();
    let mut churner = H3Client::connect(server);
    // Both sessions hold their spare IDs: the table's size at rest (the bare client is kept
    // going while the test waits, or the server would drop it as silent).
    let mut at_rest = 0.0;
    poll_until(Duration::from_secs(10), Duration::ZERO, || {
        churner.idle(Duration::from_millis(100));
        let now = metric(smetrics, ROUTED)?;
        let settled = now == at_rest && now > 0.0;
        at_rest = now;
        settled.then_some(())
    })
    .expect("the routed-ID gauge never settled");
    let mut peak = at_rest;
    let mut retired = 0;
    for round in 1..=RETIREMENTS / PER_REBIND {
        retired += churner.retire_connection_ids(PER_REBIND, Duration::from_secs(10));
        let validated = pair
            .server
            .count_log("(NAT rebinding; new address validated)");
        nat.rebind();
        let r = pair.post("/echo", format!("round {round}").as_bytes());
        assert_eq!(
            r.status(),
            200,
            "round {round}: a request across the rebinding"
        );
        poll_until(Duration::from_secs(10), Duration::from_millis(20), || {
            let now = pair
                .server
                .count_log("(NAT rebinding; new address validated)");
            (now > validated).then_some(())
        })
        .expect("the server did not follow the rebinding");
        let now = metric(smetrics, ROUTED).expect("server /metrics");
        peak = peak.max(now);
        assert!(
            now <= BOUND,
            "after {retired} retirements: {now} routed IDs (bound {BOUND})"
        );
    }
    assert_eq!(retired, RETIREMENTS, "the churn did not complete");
    // Every retired ID was replaced by one fresh one: back to the size at rest.
    let back = poll_until(Duration::from_secs(5), Duration::ZERO, || {
        churner.idle(Duration::from_millis(50));
        (metric(smetrics, ROUTED)? == at_rest).then_some(())
    });
    assert!(
        back.is_some(),
        "routed IDs: {:?} after the churn, {at_rest} at rest (peak {peak})",
        metric(smetrics, ROUTED)
    );
    eprintln!("routed IDs: {at_rest} at rest, peak {peak} over {RETIREMENTS} retirements");
    // The pair's session carried on across the rebindings (the server has two: the pair's and
    // the bare client's).
    assert_eq!(
        pair.client.count_log("session lost"),
        0,
        "the session was lost"
    );
    assert_eq!(
        pair.client.count_log("session established"),
        1,
        "the client reconnected"
    );
    assert_eq!(
        churner.retire_connection_ids(1, Duration::from_secs(5)),
        1,
        "the churning session is gone"
    );
}
