//! ACKs held for the answer (`transport.ack_delay_ms`, CUBIC and Reno only): a request and its
//! response cross the link in one datagram each way, each side's ACK riding on its next
//! datagram, where ACKs sent at once cost an ACK-only datagram each way (four datagrams per
//! request). Pairs run side by side over relays with the same delay: ACKs held (for the longest
//! delay allowed, so that a send wrongly held back would show as 25 ms more per request) and
//! `ack_delay_ms: 0`.

use crate::harness::pattern::sink_answer;
use crate::harness::relay::{RelayConfig, RelayStats};
use crate::harness::{heavy_lock, Pair, PairBuilder, Upstream};
use std::time::{Duration, Instant};

const ONE_WAY: Duration = Duration::from_millis(5);
const REQUESTS: usize = 60;
/// The longest hold allowed (`transport.ack_delay_ms`).
const HOLD_MS: &str = "25";

/// A CUBIC pair with `transport.ack_delay_ms` on both ends.
fn pair(up: &Upstream, name: &str, ack_delay_ms: &str) -> Pair {
    PairBuilder::new(up.addr())
        .name(name)
        .both("transport.congestion_control", "\"cubic\"")
        .both("transport.initial_rtt_ms", "10")
        .both("transport.ack_delay_ms", ack_delay_ms)
        .relay(RelayConfig::lossy(0.0, ONE_WAY, 0xac4))
        .start()
}

fn datagrams(s: &RelayStats) -> (u64, u64) {
    (s.to_server.received, s.to_client.received)
}

/// Sequential GETs of `target` on one keep-alive connection: datagrams on the link per
/// request (to the server, to the client; counted once the link is quiet) and the median
/// latency.
fn per_request(pair: &Pair, target: &str, requests: usize) -> ((f64, f64), Duration) {
    let mut c = pair.conn();
    c.set_deadline(Duration::from_secs(60));
    let warm = c.get(target).expect("first request");
    assert_eq!(warm.status(), 200, "{warm}");
    let relay = pair.relay();
    let quiet = |relay: &crate::harness::relay::UdpRelay| {
        assert!(
            relay.wait_stable(Duration::from_millis(300), Duration::from_secs(10), |s| {
                datagrams(s)
            }),
            "the link did not go quiet"
        );
        datagrams(&relay.stats())
    };
    let before = quiet(relay);
    let mut latencies = Vec::with_capacity(requests);
    for i in 0..requests {
        let t = Instant::now();
        let r = c.get(target).unwrap_or_else(|e| panic!("request {i}: {e}"));
        latencies.push(t.elapsed());
        assert_eq!(r.status(), 200, "request {i}: {r}");
    }
    let after = quiet(relay);
    latencies.sort();
    let per = |a: u64, b: u64| (a - b) as f64 / requests as f64;
    (
        (per(after.0, before.0), per(after.1, before.1)),
        latencies[requests / 2],
    )
}

#[test]
fn acks_ride_on_the_next_request_or_response() {
    let up = Upstream::start();
    let held = pair(&up, "acks_held", HOLD_MS);
    let at_once = pair(&up, "acks_at_once", "0");
    let (h, a) = std::thread::scope(|s| {
        let h = s.spawn(|| per_request(&held, "/hello", REQUESTS));
        let a = s.spawn(|| per_request(&at_once, "/hello", REQUESTS));
        (h.join(), a.join())
    });
    let (((h_up, h_down), h_p50), ((a_up, a_down), a_p50)) =
        (h.expect("held pair"), a.expect("at-once pair"));
    eprintln!(
        "datagrams per request (up/down): held {h_up:.2}/{h_down:.2} (p50 {h_p50:?}), \
         at once {a_up:.2}/{a_down:.2} (p50 {a_p50:?})"
    );
    assert!(
        a_up + a_down >= 3.5,
        "ACKs at once: about 4 datagrams per request expected, got {a_up:.2}/{a_down:.2}"
    );
    assert!(
        h_up <= 1.2 && h_down <= 1.2,
        "held ACKs: about 1 datagram each way per request expected, got {h_up:.2}/{h_down:.2}"
    );
    // Nothing a request needs waits for a held ACK: the median is not 25 ms later.
    assert!(
        h_p50 <= a_p50 + Duration::from_millis(4),
        "held ACKs slowed requests down: p50 {h_p50:?} against {a_p50:?}"
    );
}

/// An upstream slower than the hold: the server's ACK leaves alone when the delay runs out,
/// early enough that the client never retransmits the request (which would show as a second
/// datagram up per request), and the answer still carries nothing late.
#[test]
fn a_slow_answer_gets_its_ack_at_the_deadline_without_retransmissions() {
    let up = Upstream::start();
    let held = pair(&up, "acks_slow_upstream", "5");
    let ((up_n, down_n), p50) = per_request(&held, "/delay/60", 15);
    eprintln!("slow upstream, datagrams per request: {up_n:.2} up, {down_n:.2} down, p50 {p50:?}");
    assert!(
        up_n <= 1.2,
        "one datagram up per request (the client's ACK rides on the next request), got {up_n:.2}"
    );
    assert!(
        (1.8..=2.2).contains(&down_n),
        "the server's ACK alone at the deadline, then the response: 2 down expected, got {down_n:.2}"
    );
    assert!(
        p50 < Duration::from_millis(60 + 10 + 25),
        "p50 {p50:?} for a 60 ms upstream over a 10 ms link"
    );
}

const BULK: u64 = 4 * 1024 * 1024;

/// One download and one upload of [`BULK`] bytes, byte-exact; their times.
fn transfers(pair: &Pair) -> (Duration, Duration) {
    let mut c = pair.conn();
    c.set_deadline(Duration::from_secs(60));
    let t = Instant::now();
    let (head, n) = c
        .download_pattern(&format!("/bytes/{BULK}"))
        .expect("download");
    let get = t.elapsed();
    assert_eq!((head.status, n), (200, BULK), "{head:?}");
    let t = Instant::now();
    let (r, sum) = c.upload_pattern("POST", "/sink", BULK).expect("upload");
    let post = t.elapsed();
    assert_eq!(r.status(), 200, "{r}");
    assert_eq!(
        r.body_str(),
        sink_answer(BULK, sum),
        "upstream received other bytes"
    );
    (get, post)
}

/// The faster of two rounds of [`transfers`] (one round varies 2-3x on a loaded machine).
fn best_transfers(pair: &Pair) -> (Duration, Duration) {
    let (get1, post1) = transfers(pair);
    let (get2, post2) = transfers(pair);
    (get1.min(get2), post1.min(post2))
}

/// Bulk data never arms a hold (only a completed message does), so transfers take as long as
/// with ACKs sent at once (a hold on bulk data made them 3-5x slower in an earlier attempt).
#[test]
fn bulk_transfers_are_not_slowed_down() {
    let _heavy = heavy_lock();
    let up = Upstream::start();
    let held = pair(&up, "acks_bulk_held", HOLD_MS);
    let at_once = pair(&up, "acks_bulk_at_once", "0");
    let (h_get, h_post) = best_transfers(&held);
    let (a_get, a_post) = best_transfers(&at_once);
    eprintln!("4 MiB GET/POST: held ACKs {h_get:?}/{h_post:?}, at once {a_get:?}/{a_post:?}");
    let slack = Duration::from_millis(400);
    assert!(
        h_get <= a_get * 2 + slack,
        "GET {h_get:?} against {a_get:?}"
    );
    assert!(
        h_post <= a_post * 2 + slack,
        "POST {h_post:?} against {a_post:?}"
    );
}

/// Under BBR2 (the default) a completed message is acknowledged at once: four datagrams per
/// small request (`TransportConfig::holds_acks_for_answers` says why).
#[test]
fn bbr2_acknowledges_a_completed_message_at_once() {
    let up = Upstream::start();
    let pair = PairBuilder::new(up.addr())
        .name("acks_bbr2")
        .both("transport.initial_rtt_ms", "10")
        .relay(RelayConfig::lossy(0.0, ONE_WAY, 0xac4))
        .start();
    let ((up_n, down_n), _) = per_request(&pair, "/hello", 20);
    assert!(
        up_n + down_n >= 3.5,
        "BBR2: an ACK-only datagram each way expected, got {up_n:.2}/{down_n:.2} per request"
    );
}

/// Over a lossy link, requests whose ACKs were held (and whose answers carrying them are lost
/// as often as anything else) all complete, byte-exact: a held ACK is recovered like any other.
#[test]
fn held_acks_over_a_lossy_link_lose_no_request() {
    let up = Upstream::start();
    let pair = PairBuilder::new(up.addr())
        .name("acks_lossy")
        .both("transport.congestion_control", "\"cubic\"")
        .both("transport.initial_rtt_ms", "10")
        .both("transport.ack_delay_ms", HOLD_MS)
        .relay(RelayConfig::lossy(0.05, ONE_WAY, 0xac5))
        .start();
    let mut c = pair.conn();
    c.set_deadline(Duration::from_secs(60));
    for i in 0..150usize {
        let body = format!("request {i} ").repeat(1 + i % 40);
        let r = c
            .post("/echo", body.as_bytes())
            .unwrap_or_else(|e| panic!("request {i}: {e}"));
        assert_eq!(r.status(), 200, "request {i}: {r}");
        assert_eq!(
            r.body,
            body.as_bytes(),
            "request {i}: other bytes came back"
        );
    }
    let stats = pair.relay().stats();
    assert!(
        stats.to_server.dropped + stats.to_client.dropped > 0,
        "the relay dropped nothing: the test proved nothing"
    );
}

/// A BBR2 pair whose server paces at 20 Mbit/s (so the data reaches the client spread out, one
/// datagram per loop turn) with `transport.ack_delay_ms` on both ends. Its datagrams are an
/// Ethernet path's (path MTU discovery off: 1350 bytes), as a 20 Mbit/s link's would be; the
/// loopback route's 16 KiB datagrams arrive 6.5 ms apart at that rate, past the 5 ms hold, and
/// are acknowledged one by one (one ACK per 16 KiB).
fn paced_bbr2(up: &Upstream, name: &str, ack_delay_ms: &str) -> Pair {
    PairBuilder::new(up.addr())
        .name(name)
        .both("transport.pmtu_discovery", "false")
        .both("transport.initial_rtt_ms", "10")
        .both("transport.ack_delay_ms", ack_delay_ms)
        .server("transport.max_pacing_rate_mbps", "20")
        .relay(RelayConfig::lossy(0.0, ONE_WAY, 0xac6))
        .start()
}

/// A 2 MiB download: its time, and the client's datagrams (its ACKs) per datagram of data.
fn acks_per_data_datagram(pair: &Pair) -> (Duration, f64) {
    const SIZE: u64 = 2 * 1024 * 1024;
    let mut c = pair.conn();
    c.set_deadline(Duration::from_secs(60));
    let warm = c.get("/hello").expect("first request");
    assert_eq!(warm.status(), 200, "{warm}");
    let before = pair.relay().stats();
    let t = Instant::now();
    let (head, n) = c
        .download_pattern(&format!("/bytes/{SIZE}"))
        .expect("download");
    let took = t.elapsed();
    assert_eq!((head.status, n), (200, SIZE), "{head:?}");
    let after = pair.relay().stats();
    let acks = after.to_server.received - before.to_server.received;
    let data = after.to_client.received - before.to_client.received;
    (took, acks as f64 / data as f64)
}

/// Bulk data received is acknowledged every second datagram, under BBR2 too, where one ACK
/// went back per datagram whenever the data arrived spread out; the transfer is as fast.
#[test]
fn spread_out_bulk_data_is_acknowledged_every_second_datagram() {
    let _heavy = heavy_lock();
    let up = Upstream::start();
    let held = paced_bbr2(&up, "acks_spread_held", "5");
    let at_once = paced_bbr2(&up, "acks_spread_at_once", "0");
    let (h_took, h_ratio) = acks_per_data_datagram(&held);
    let (a_took, a_ratio) = acks_per_data_datagram(&at_once);
    eprintln!(
        "2 MiB paced at 20 Mbit/s: ACKs per data datagram {h_ratio:.2} held ({h_took:?}), \
         {a_ratio:.2} at once ({a_took:?})"
    );
    assert!(
        h_ratio <= 0.6,
        "held: about one ACK per two data datagrams expected, got {h_ratio:.2}"
    );
    assert!(
        h_took <= a_took * 3 / 2 + Duration::from_millis(400),
        "held ACKs slowed the transfer: {h_took:?} against {a_took:?}"
    );
}
