//! A service with several upstream addresses (issue 12): requests balanced across the healthy
//! ones, an address whose connect is refused or times out taken out (passive health) and its
//! request moved to another address before anything was sent, the address tried again after
//! its backoff and back once it answers; a name contributes every address it resolves to.

use std::time::{Duration, Instant};

use crate::harness::admin::{metric, metrics_addr};
use crate::harness::{closed_tcp_addr, hanging_tcp_addr, poll_until, PairBuilder, Upstream};

#[test]
fn a_refusing_and_a_silent_address_cost_no_request_and_come_back_when_they_answer() {
    let healthy = Upstream::start();
    let refusing = closed_tcp_addr();
    let (_listener, _fill, silent) = hanging_tcp_addr();
    let (metrics, metrics_json) = metrics_addr();
    let addresses = format!(r#"["{refusing}", "{silent}", "{}"]"#, healthy.addr());
    let pair = PairBuilder::new(healthy.addr())
        .name("pool_health")
        .server_remove("upstream.address")
        .server("upstream.addresses", &addresses)
        .server("upstream.connect_timeout_ms", "300")
        .server("metrics.listen", &metrics_json)
        .start();
    let up = |addr: std::net::SocketAddr| {
        metric(
            metrics,
            &format!("ptproxy_upstream_address_up{{service=\"default\",address=\"{addr}\"}}"),
        )
    };
    let mut slowest = Duration::ZERO;
    for i in 0..30 {
        let started = Instant::now();
        let r = pair.get(&format!("/hello?{i}"));
        slowest = slowest.max(started.elapsed());
        assert_eq!(r.status(), 200, "request {i}: {r}");
    }
    assert_eq!(
        healthy.request_count(),
        30,
        "every request reached the healthy address"
    );
    // At most one connect timeout (300 ms) and one refusal on the way to the healthy address.
    assert!(
        slowest < Duration::from_secs(2),
        "slowest request {slowest:?}"
    );
    assert_eq!(up(refusing), Some(0.0), "the refusing address is out");
    assert_eq!(up(silent), Some(0.0), "the silent address is out");
    assert_eq!(up(healthy.addr()), Some(1.0));

    // The refusing address starts answering: after its backoff it is tried again and stays.
    let revived = Upstream::start_at(refusing);
    let back = poll_until(Duration::from_secs(15), Duration::from_millis(100), || {
        let r = pair.get("/hello?again");
        assert_eq!(r.status(), 200, "{r}");
        (revived.request_count() > 0).then_some(())
    });
    assert!(back.is_some(), "the revived address never got a request");
    assert_eq!(
        up(refusing),
        Some(1.0),
        "back in after a successful connect"
    );
}

#[test]
fn requests_are_spread_round_robin_over_the_healthy_addresses() {
    let (a, b) = (Upstream::start(), Upstream::start());
    let addresses = format!(r#"["{}", "{}"]"#, a.addr(), b.addr());
    let pair = PairBuilder::new(a.addr())
        .name("pool_round_robin")
        .server_remove("upstream.address")
        .server("upstream.addresses", &addresses)
        .start();
    // A new connection per request at the client still reuses upstream connections, so the
    // spread shows in new upstream connections: hold several requests open at once.
    let mut conns: Vec<_> = (0..6).map(|_| pair.conn()).collect();
    for (i, c) in conns.iter_mut().enumerate() {
        c.send(format!("GET /stall?{i} HTTP/1.1\r\nHost: e2e.test\r\n\r\n").as_bytes())
            .expect("send");
    }
    let spread = poll_until(Duration::from_secs(5), Duration::from_millis(20), || {
        (a.request_count() + b.request_count() == 6).then_some(())
    });
    assert!(
        spread.is_some(),
        "{} + {} requests arrived",
        a.request_count(),
        b.request_count()
    );
    assert_eq!((a.request_count(), b.request_count()), (3, 3));
}

#[test]
fn a_name_contributes_each_address_it_resolves_to() {
    let healthy = Upstream::start();
    let (metrics, metrics_json) = metrics_addr();
    let pair = PairBuilder::new(healthy.addr())
        .name("pool_localhost")
        .server(
            "upstream.address",
            &format!("\"localhost:{}\"", healthy.addr().port()),
        )
        .server("metrics.listen", &metrics_json)
        .start();
    for i in 0..10 {
        let r = pair.get(&format!("/hello?{i}"));
        assert_eq!(r.status(), 200, "{r}");
    }
    let rows = crate::harness::admin::scrape(metrics).samples("ptproxy_upstream_address_up");
    let system = localhost_addresses(healthy.addr().port());
    assert_eq!(
        rows.len(),
        system.len(),
        "one row per address of localhost: {rows:?}"
    );
    for addr in &system {
        assert!(
            rows.iter()
                .any(|(labels, _)| labels.contains(&addr.to_string())),
            "{addr} missing: {rows:?}"
        );
    }
    let healthy_row = format!("{{service=\"default\",address=\"{}\"}}", healthy.addr());
    assert!(
        rows.iter()
            .any(|(labels, up)| *labels == healthy_row && *up == 1.0),
        "{rows:?}"
    );
}

/// Every address the system resolver gives `localhost` (each once).
fn localhost_addresses(port: u16) -> Vec<std::net::SocketAddr> {
    use std::net::ToSocketAddrs;
    let mut unique = Vec::new();
    for a in ("localhost", port)
        .to_socket_addrs()
        .expect("localhost resolves")
    {
        if !unique.contains(&a) {
            unique.push(a);
        }
    }
    unique
}

/// A TCP listener that accepts connections and never answers on them (held until dropped).
struct SilentListener {
    addr: std::net::SocketAddr,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl SilentListener {
    fn start() -> SilentListener {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("addr");
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut held = Vec::new();
            // Bounded: the test drops the listener long before this ends.
            for _ in 0..60_000 {
                if flag.load(std::sync::atomic::Ordering::Relaxed) {
                    return;
                }
                match listener.accept() {
                    Ok((s, _)) => held.push(s),
                    Err(_) => std::thread::sleep(Duration::from_millis(1)),
                }
            }
        });
        SilentListener {
            addr,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for SilentListener {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[test]
fn an_address_that_accepts_but_never_answers_is_taken_out_by_its_health_check() {
    let healthy = Upstream::start();
    let silent = SilentListener::start();
    let (metrics, metrics_json) = metrics_addr();
    let addresses = format!(r#"["{}", "{}"]"#, silent.addr, healthy.addr());
    let pair = PairBuilder::new(healthy.addr())
        .name("pool_health_check")
        .server_remove("upstream.address")
        .server("upstream.addresses", &addresses)
        .server(
            "upstream.health_check",
            r#"{"path": "/hello", "interval_ms": 200, "timeout_ms": 150}"#,
        )
        .server("metrics.listen", &metrics_json)
        .start();
    let series = |addr: std::net::SocketAddr| {
        format!("ptproxy_upstream_address_up{{service=\"default\",address=\"{addr}\"}}")
    };
    let out = poll_until(Duration::from_secs(5), Duration::from_millis(20), || {
        (metric(metrics, &series(silent.addr)) == Some(0.0)).then_some(())
    });
    assert!(out.is_some(), "the silent address was never taken out");
    assert_eq!(metric(metrics, &series(healthy.addr())), Some(1.0));
    for i in 0..30 {
        let r = pair.get(&format!("/hello?req{i}"));
        assert_eq!(r.status(), 200, "request {i}: {r}");
    }
    let served = healthy
        .requests()
        .iter()
        .filter(|r| r.target.starts_with("/hello?req"))
        .count();
    assert_eq!(served, 30, "every request reached the healthy address");
    // The checks keep running: the healthy address sees them every interval.
    let checks = |up: &Upstream| {
        up.requests()
            .iter()
            .filter(|r| r.header("user-agent") == Some("ptproxy-health-check"))
            .count()
    };
    let before = checks(&healthy);
    let more = poll_until(Duration::from_secs(5), Duration::from_millis(50), || {
        (checks(&healthy) >= before + 2).then_some(())
    });
    assert!(more.is_some(), "no further checks after {before}");
    assert_eq!(
        metric(metrics, &series(silent.addr)),
        Some(0.0),
        "still out"
    );
}
