//! Loss hiding: over a link losing 3% of datagrams each way, sending small datagrams twice
//! removes most loss-recovery stalls. The pairs with the mode off and on run side by side in
//! the same test, over relays with the same seed, and the test compares them (a ratio, not an
//! absolute time).

use crate::harness::relay::RelayConfig;
use crate::harness::{Pair, PairBuilder, Upstream};
use std::time::{Duration, Instant};

const ONE_WAY: Duration = Duration::from_millis(20);
const REQUESTS: usize = 200;
/// A request slower than this needed a loss recovery round (the floor is one RTT, 40 ms).
const SLOW: Duration = Duration::from_millis(120);

fn pair(up: &Upstream, name: &str, loss_hiding: Option<&str>) -> Pair {
    let mut b = PairBuilder::new(up.addr())
        .name(name)
        .both("transport.initial_rtt_ms", "40")
        .relay(RelayConfig::lossy(0.03, ONE_WAY, 0x1055_0006));
    if let Some(mode) = loss_hiding {
        b = b.both("transport.loss_hiding", mode);
    }
    b.start()
}

/// Datagrams the pair's relay dropped so far, both ways.
fn dropped(pair: &Pair) -> u64 {
    let s = pair.relay().stats();
    s.to_server.dropped + s.to_client.dropped
}

/// Sequential small requests on one connection; returns how many were slow while the link
/// dropped a datagram (a loss-recovery stall, not a scheduling hiccup of this loaded test
/// machine, which a request meeting no loss can show too), and the latencies.
fn slow_requests(pair: &Pair) -> (usize, Vec<Duration>) {
    let mut c = pair.conn();
    c.set_deadline(Duration::from_secs(120));
    let mut latencies = Vec::with_capacity(REQUESTS);
    let mut stalls = 0;
    for i in 0..REQUESTS {
        let drops_before = dropped(pair);
        let t = Instant::now();
        let r = c
            .get("/hello")
            .unwrap_or_else(|e| panic!("request {i}: {e}"));
        let took = t.elapsed();
        latencies.push(took);
        if took > SLOW && dropped(pair) > drops_before {
            stalls += 1;
        }
        assert_eq!(
            (r.status(), r.body.as_slice()),
            (200, &b"hello"[..]),
            "request {i}: {r}"
        );
    }
    latencies.sort();
    (stalls, latencies)
}

#[test]
fn sending_small_datagrams_twice_removes_most_slow_requests_at_3pct_loss() {
    let up = Upstream::start();
    let off = pair(&up, "hiding_off", None);
    let small = pair(
        &up,
        "hiding_small",
        Some(r#"{"mode": "small", "max_datagram": 1300}"#),
    );
    let interactive = pair(
        &up,
        "hiding_interactive",
        Some(r#"{"mode": "interactive"}"#),
    );
    let (off_r, small_r, inter_r) = std::thread::scope(|s| {
        let a = s.spawn(|| slow_requests(&off));
        let b = s.spawn(|| slow_requests(&small));
        let c = s.spawn(|| slow_requests(&interactive));
        (a.join(), b.join(), c.join())
    });
    let (off_slow, off_lat) = off_r.expect("off pair");
    let (small_slow, small_lat) = small_r.expect("small pair");
    let (inter_slow, inter_lat) = inter_r.expect("interactive pair");
    let p99 = |l: &Vec<Duration>| l[l.len() * 99 / 100];
    eprintln!(
        "slow (> {SLOW:?}) with a datagram dropped, of {REQUESTS}: off {off_slow} (p99 {:?}), small {small_slow} (p99 {:?}), interactive {inter_slow} (p99 {:?})",
        p99(&off_lat),
        p99(&small_lat),
        p99(&inter_lat)
    );
    assert!(
        off_slow >= 6,
        "the lossy link caused too few slow requests to compare ({off_slow})"
    );
    for (mode, slow) in [("small", small_slow), ("interactive", inter_slow)] {
        assert!(
            slow * 4 <= off_slow,
            "{mode}: {slow} slow requests vs {off_slow} without loss hiding"
        );
    }
    for (p, name) in [(&small, "small"), (&interactive, "interactive")] {
        assert!(
            p.client.count_log("loss hiding:") >= 1,
            "{name}: no start-up line about loss hiding"
        );
    }
    let off_bytes = off.relay().stats();
    let small_bytes = small.relay().stats();
    assert!(
        small_bytes.to_server.received > off_bytes.to_server.received,
        "loss hiding sent no extra datagrams: {small_bytes:?} vs {off_bytes:?}"
    );
}
