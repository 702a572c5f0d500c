//! When BBR2's startup ends, read from the server's metrics (`quic::setup`):
//! - A download over a link slower than BBR2's smallest window per round trip must end it, at
//!   the link's rate. quiche ends it there on its plateau rule (three rounds without 25%
//!   bandwidth growth); its loss exit, checked only in rounds it does not count as
//!   application-limited, did not fire, and a startup without the plateau rule never ended
//!   and lost half of the download's packets.
//! - The known defect that rule brings, kept as an ignored test that reproduces it (in 5 of 7
//!   runs here): small requests on a lossy link end startup at their own rate. quiche marks its
//!   sender application-limited only when it builds a packet without stream data, so rounds of
//!   small requests and answers, with a retransmission now and then, count as rounds without
//!   bandwidth growth; after three of them startup ends on a "bandwidth plateau" at the load's
//!   rate (24 KB/s here). Past startup, BBR2 probes up only every few seconds, and with random
//!   loss above its 1.5% threshold each lossy round cuts its estimate, so the next large answer
//!   crawls at that rate (10 MiB in 26-30 s at 2-3% loss in the benchmark). Behind a relay
//!   with 2% loss each way and a 50 ms RTT: the small-request load of the benchmark, then a
//!   download.
//! - With a known link that holds its window, the same early exit costs the download nothing:
//!   the link's pacing floor (`quic::pace_floor`) keeps BBR2 at 90% of the stated rate or above.

use crate::harness::admin::{metrics_addr, scrape};
use crate::harness::{HttpConn, Pair, PairBuilder, RelayConfig, Upstream};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

const LOSS: f64 = 0.02;
const ONE_WAY: Duration = Duration::from_millis(25);
const SEQUENTIAL: usize = 50;
const CLIENTS: usize = 16;
const LOAD: Duration = Duration::from_secs(3);
const SIZE: u64 = 4 * 1024 * 1024;
/// The download takes 0.6-0.7 s here while startup runs; after startup ended at the small
/// requests' rate it took 7.2 s.
const DOWNLOAD_BOUND: Duration = Duration::from_secs(5);
/// An estimate below this when startup ended is the small requests' rate, not the path's.
const SMALL_REQUEST_RATE: f64 = 1_000_000.0;
const EXIT: &str = "ptproxy_path_startup_exit_bandwidth_bytes";

/// Keep-alive GETs of a small answer on one connection, until `until`; returns how many.
fn small_requests(pair: &Pair, until: Instant, bound: usize) -> usize {
    let mut c: HttpConn = pair.conn();
    let mut n = 0;
    while Instant::now() < until && n < bound {
        c.send(b"GET /hello HTTP/1.1\r\nHost: b.test\r\n\r\n")
            .expect("send a request");
        let r = c.read_response("GET").expect("an answer");
        assert_eq!(r.status(), 200);
        n += 1;
    }
    n
}

/// The benchmark's small-request load: sequential requests on one connection, then
/// `CLIENTS` concurrent ones for `LOAD`; returns how many concurrent requests were answered.
fn small_request_load(pair: &Pair) -> usize {
    let far = Instant::now() + Duration::from_secs(60);
    assert_eq!(small_requests(pair, far, SEQUENTIAL), SEQUENTIAL);
    let until = Instant::now() + LOAD;
    std::thread::scope(|s| {
        let workers: Vec<_> = (0..CLIENTS)
            .map(|_| s.spawn(|| small_requests(pair, until, 10_000)))
            .collect();
        workers.into_iter().map(|w| w.join().expect("client")).sum()
    })
}

/// A BBR2 pair with Ethernet-sized datagrams (path MTU discovery off), as on such links, over
/// `relay`, knowing `link` (`transport.link`) when given; the server's metrics address.
fn bbr2_pair(
    up: &Upstream,
    name: &str,
    relay: RelayConfig,
    link: Option<&str>,
) -> (Pair, SocketAddr) {
    let (metrics, metrics_json) = metrics_addr();
    let mut b = PairBuilder::new(up.addr())
        .name(name)
        .both("transport.pmtu_discovery", "false")
        .both("transport.congestion_control", "\"bbr2\"")
        .server("metrics.listen", &metrics_json)
        .relay(relay);
    if let Some(link) = link {
        b = b.both("transport.link", link);
    }
    (b.start(), metrics)
}

#[test]
#[ignore = "known defect (README \"Transport\", known links): quiche's plateau rule ends STARTUP at the small requests' rate"]
fn small_requests_on_a_lossy_link_leave_the_next_download_its_rate() {
    let up = Upstream::start();
    let (pair, metrics) = bbr2_pair(
        &up,
        "startup_exit",
        RelayConfig::lossy(LOSS, ONE_WAY, 29),
        None,
    );

    let done = small_request_load(&pair);

    let s = scrape(metrics);
    for (labels, at_exit) in s.samples(EXIT) {
        assert!(
            at_exit >= SMALL_REQUEST_RATE,
            "startup ended at the small requests' rate ({labels}: {at_exit} bytes/s, after {done} concurrent requests):\n{}",
            s.text
        );
    }

    let took = pair.download_exact(SIZE, Duration::from_secs(60));
    let s = scrape(metrics);
    eprintln!(
        "{done} concurrent requests; then {SIZE} bytes in {took:?}; startup exit: {:?}",
        s.samples(EXIT)
    );
    assert!(
        took < DOWNLOAD_BOUND,
        "{SIZE} bytes took {took:?} after small requests:\n{}",
        s.text
    );
}

/// The relay's path stated as a known link: 100 Mbit/s (the relay itself has no rate limit) and
/// its 50 ms RTT. Its pacing floor is 90% of that, 11.25 MB/s.
const LINK: &str = r#"{"rate_mbps": 100, "rtt_ms": 50}"#;
/// Rounds of the small-request load at most, until startup has ended (it did after the first
/// in 5 of 7 runs without a known link).
const LOAD_ROUNDS: usize = 4;
/// After startup ended at the small requests' rate (24-26 KB/s, in every run here), the 4 MiB
/// took 0.57-0.63 s with the link's pacing floor and 5.4-7.3 s without it.
const LINK_DOWNLOAD_BOUND: Duration = Duration::from_secs(2);

#[test]
fn a_known_link_keeps_the_download_after_an_early_startup_exit_at_its_rate() {
    let up = Upstream::start();
    let relay = RelayConfig::lossy(LOSS, ONE_WAY, 31);
    let (pair, metrics) = bbr2_pair(&up, "startup_exit_link", relay, Some(LINK));

    let mut rounds = 0;
    let mut done = 0;
    while rounds < LOAD_ROUNDS && scrape(metrics).samples(EXIT).is_empty() {
        done += small_request_load(&pair);
        rounds += 1;
    }
    let exit = scrape(metrics).samples(EXIT);
    let took = pair.download_exact(SIZE, Duration::from_secs(60));
    eprintln!(
        "{rounds} load rounds, {done} concurrent requests; startup exit {exit:?}; then {SIZE} bytes in {took:?}"
    );
    assert!(
        took < LINK_DOWNLOAD_BOUND,
        "{SIZE} bytes took {took:?} over a known link after small requests (startup exit {exit:?}):\n{}",
        scrape(metrics).text
    );
}

/// 2.5 MB/s with a queue of 10 KB and 10 ms RTT: a bandwidth-delay product of 25 KB, where
/// BBR2's smallest window (the largest head's worth, 57 packets) is about 77 KB.
const SLOW_RATE: u64 = 2_500_000;
const SLOW_QUEUE: u64 = 10_000;
const SLOW_ONE_WAY: Duration = Duration::from_millis(5);
/// Lost packets as a share of those sent: 0.07-0.10 when startup ends on quiche's plateau rule,
/// 0.48 when it never ended (the rule off).
const LOSS_SHARE_BOUND: f64 = 0.2;

#[test]
fn a_download_over_a_link_slower_than_the_window_ends_startup_at_its_rate() {
    let up = Upstream::start();
    let relay = RelayConfig::lossy(0.0, SLOW_ONE_WAY, 7).with_rate(SLOW_RATE, SLOW_QUEUE);
    let (pair, metrics) = bbr2_pair(&up, "startup_exit_slow", relay, None);
    for _ in 0..5 {
        assert_eq!(pair.get("/hello").status(), 200);
    }
    let took = pair.download_exact(SIZE, Duration::from_secs(60));

    let s = scrape(metrics);
    let sent = s.single("ptproxy_sent_packets_total").1;
    let lost = s.single("ptproxy_lost_packets_total").1;
    eprintln!(
        "{SIZE} bytes in {took:?}: {sent} packets sent, {lost} lost; startup exit {:?}",
        s.samples(EXIT)
    );
    let (labels, at_exit) = s.single(EXIT);
    let share = at_exit / SLOW_RATE as f64;
    assert!(
        (0.5..=1.5).contains(&share),
        "startup ended ({labels}) at {at_exit} bytes/s, {share:.2}x the link's rate"
    );
    assert!(
        lost <= sent * LOSS_SHARE_BOUND,
        "{lost} of {sent} packets lost: startup overran the link too long"
    );
}
