//! The pacing floor (`quic::pace_floor`): while BBR2 is in STARTUP, the server paces an answer
//! no slower than RFC 9002's pacer (1.25 congestion windows per RTT), whatever low rate the
//! small requests before it left BBR2's estimate at. Observed at the relay, where the server's
//! datagrams arrive as it sends them: after small requests and an idle gap, an answer that fits
//! the window leaves within 0.8 RTT (quiche's own pacer, at the requests' rate, spread such an
//! answer over 133 ms, 3.3 RTTs), and the end of STARTUP does not pause a transfer. The bytes
//! arrive intact.

use crate::harness::relay::RelayConfig;
use crate::harness::{Pair, PairBuilder, Upstream};
use std::time::{Duration, Instant};

const ONE_WAY: Duration = Duration::from_millis(20);
const RTT: Duration = Duration::from_millis(40);
/// Within BBR2's window floor (57 packets, the largest head's worth, of at least 1200 bytes).
const ANSWER: u64 = 48 * 1024;
/// Datagrams at least this large carry the answer's body (ACKs and small answers are below).
const FULL: usize = 1000;

fn pair(up: &Upstream) -> Pair {
    // Ethernet-sized datagrams (path MTU discovery off: 1350 bytes), so the answer is many
    // datagrams, as on a real link (the loopback route allows 16 KiB ones).
    PairBuilder::new(up.addr())
        .name("pace_floor")
        .both("transport.congestion_control", "\"bbr2\"")
        .both("transport.pmtu_discovery", "false")
        .relay(RelayConfig::lossy(0.0, ONE_WAY, 0xf100).with_arrival_log())
        .start()
}

/// When the full-size datagrams the server sent after the relay's `mark`-th arrived at the relay.
fn full_datagrams_after(pair: &Pair, mark: usize) -> Vec<Instant> {
    let log = pair.relay().arrivals_to_client();
    log.iter()
        .skip(mark)
        .filter(|(_, bytes)| *bytes >= FULL)
        .map(|(at, _)| *at)
        .collect()
}

/// How long the server took to send the full-size datagrams it sent after `mark` (the first
/// to the last one's arrival at the relay), and how many there were.
fn spread_after(pair: &Pair, mark: usize) -> (Duration, usize) {
    let data = full_datagrams_after(pair, mark);
    match (data.first(), data.last()) {
        (Some(first), Some(last)) => (last.duration_since(*first), data.len()),
        _ => (Duration::ZERO, 0),
    }
}

#[test]
fn an_answer_within_the_window_leaves_at_the_windows_pace_after_small_requests() {
    let up = Upstream::start();
    let pair = pair(&up);
    for _ in 0..5 {
        assert_eq!(pair.get("/hello").status(), 200);
    }
    let relay = pair.relay();
    // An idle gap: everything acknowledged, nothing in flight.
    assert!(
        relay.wait_stable(Duration::from_millis(300), Duration::from_secs(10), |s| {
            (s.to_server.received, s.to_client.received)
        }),
        "the link did not go quiet"
    );
    let mark = relay.arrivals_to_client().len();
    pair.download_exact(ANSWER, Duration::from_secs(20));
    let (spread, datagrams) = spread_after(&pair, mark);
    eprintln!("a {ANSWER}-byte answer left in {datagrams} datagrams over {spread:?} (RTT {RTT:?})");
    assert!(
        datagrams as u64 >= ANSWER / 1350,
        "the answer should be full-size datagrams: {datagrams}"
    );
    assert!(
        spread < RTT * 4 / 5,
        "the answer's {datagrams} datagrams left over {spread:?}, more than 0.8 RTT ({RTT:?}): \
         paced at the small requests' rate, not the window's"
    );
}

/// 5 Mbit/s with a queue of one bandwidth-delay product (40 ms): the window BBR2 starts with
/// (the largest head's worth, 68 KB) is 2.7 BDPs, so at the floor's rate the first rounds
/// overflow the queue and STARTUP ends a few round trips into the transfer.
const RATE_BYTES_PER_SEC: u64 = 625_000;
const QUEUE_BYTES: u64 = 25_000;
const TRANSFER: u64 = 1024 * 1024;
/// The longest pause the sender may take mid-transfer: BBR2 paces at 0.35 of the rate at the
/// slowest (DRAIN), 6 ms per datagram here, and repairs a loss within the flight. Measured with
/// the lead not taken off quiche's schedule: 137-167 ms pauses where STARTUP ended.
const LONGEST_PAUSE: Duration = Duration::from_millis(60);

/// The longest pause between two full-size datagrams the server sent after `mark`, before the
/// transfer's last tenth.
fn longest_pause_after(pair: &Pair, mark: usize) -> (Duration, usize) {
    let data = full_datagrams_after(pair, mark);
    // The tail is left out: a lost last datagram waits for a probe timeout (about 2 RTTs).
    let body = &data[..data.len() * 9 / 10];
    let longest = body
        .windows(2)
        .map(|w| w[1].duration_since(w[0]))
        .max()
        .unwrap_or_default();
    (longest, data.len())
}

/// The datagrams the floor sends early put quiche's own schedule ahead of the clock; when
/// STARTUP ends and the floor is off, the session keeps to quiche's spacing from when packets
/// really left, instead of waiting out that lead (which after small requests is hundreds of
/// milliseconds: quiche scheduled the window at the requests' rate).
#[test]
fn the_end_of_startup_does_not_pause_a_transfer() {
    let up = Upstream::start();
    let pair = PairBuilder::new(up.addr())
        .name("pace_floor_exit")
        .both("transport.congestion_control", "\"bbr2\"")
        .both("transport.pmtu_discovery", "false")
        .relay(
            RelayConfig::lossy(0.0, ONE_WAY, 0xf101)
                .with_rate(RATE_BYTES_PER_SEC, QUEUE_BYTES)
                .with_arrival_log(),
        )
        .start();
    for _ in 0..5 {
        assert_eq!(pair.get("/hello").status(), 200);
    }
    let mark = pair.relay().arrivals_to_client().len();
    let took = pair.download_exact(TRANSFER, Duration::from_secs(60));
    let (longest, datagrams) = longest_pause_after(&pair, mark);
    eprintln!("{TRANSFER} bytes in {took:?}, {datagrams} datagrams, longest pause {longest:?}");
    assert!(
        longest < LONGEST_PAUSE,
        "the server paused {longest:?} mid-transfer (at most {LONGEST_PAUSE:?})"
    );
}
