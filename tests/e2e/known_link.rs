//! A known link (`transport.link`): the session starts at the link's bandwidth-delay product and
//! keeps it across idle periods, so a large transfer after small requests and an idle pause does
//! not probe up from a small window again. Observed through the server's
//! `ptproxy_congestion_window_bytes` (the server sends the responses), side by side with a pair
//! that knows nothing of the link, over the same 40 ms relay; the bytes arrive intact.

use crate::harness::admin::{metrics_addr, scrape};
use crate::harness::{Pair, PairBuilder, RelayConfig, Upstream};
use std::net::SocketAddr;
use std::time::Duration;

/// 100 Mbit/s x 40 ms: a bandwidth-delay product of 500 000 bytes.
const LINK: &str = r#"{"rate_mbps": 100, "rtt_ms": 40}"#;
const BDP: f64 = 500_000.0;
/// The window is kept in packets of the datagram size quiche starts with (1200 bytes until path
/// MTU discovery raised it) for a BDP counted in 1350-byte packets: at least 1200/1350 of it.
const FLOOR_SHARE: f64 = 0.85;
const SIZE: u64 = 4 * 1024 * 1024;
const IDLE: Duration = Duration::from_millis(1500);

fn pair(up: SocketAddr, name: &str, link: bool) -> (Pair, SocketAddr) {
    let (metrics, metrics_json) = metrics_addr();
    // Ethernet-sized datagrams (path MTU discovery off: 1350 bytes), as on a 100 Mbit/s link:
    // BBR2's floor is counted in packets, and in the loopback route's 16 KiB datagrams the
    // floor alone (the largest head's worth) exceeds this link's BDP.
    let mut b = PairBuilder::new(up)
        .name(name)
        .both("transport.pmtu_discovery", "false")
        .relay(RelayConfig::lossy(0.0, Duration::from_millis(20), 13))
        .server("metrics.listen", &metrics_json);
    if link {
        b = b.both("transport.link", LINK);
    }
    (b.start(), metrics)
}

fn server_cwnd(metrics: SocketAddr) -> f64 {
    scrape(metrics).single("ptproxy_congestion_window_bytes").1
}

/// Small requests, an idle pause, then the window the next transfer starts with.
fn cwnd_after_small_requests_and_idle(pair: &Pair, metrics: SocketAddr) -> f64 {
    for _ in 0..5 {
        assert_eq!(pair.get("/hello").status(), 200);
    }
    std::thread::sleep(IDLE); // the idle period is what is under test
    server_cwnd(metrics)
}

#[test]
fn known_link_keeps_its_window_across_idle_periods() {
    let up = Upstream::start();
    let (plain, plain_metrics) = pair(up.addr(), "link_unknown", false);
    let (linked, linked_metrics) = pair(up.addr(), "link_known", true);

    let plain_cwnd = cwnd_after_small_requests_and_idle(&plain, plain_metrics);
    let linked_cwnd = cwnd_after_small_requests_and_idle(&linked, linked_metrics);
    eprintln!("after small requests and {IDLE:?} idle: cwnd {plain_cwnd} bytes without the link, {linked_cwnd} with it (BDP {BDP})");
    assert!(
        linked_cwnd >= BDP * FLOOR_SHARE,
        "known link: the window after idle ({linked_cwnd} bytes) is below the link's BDP ({BDP})"
    );
    assert!(
        plain_cwnd < BDP * FLOOR_SHARE,
        "without the link the window ({plain_cwnd}) should be small: the test would show nothing"
    );

    // A transfer and another pause: the window never falls below the link's BDP.
    linked.download_exact(SIZE, Duration::from_secs(60));
    plain.download_exact(SIZE, Duration::from_secs(60));
    std::thread::sleep(IDLE);
    let linked_cwnd = server_cwnd(linked_metrics);
    assert!(
        linked_cwnd >= BDP * FLOOR_SHARE,
        "known link: after a transfer and idle the window ({linked_cwnd}) fell below the BDP"
    );
}
