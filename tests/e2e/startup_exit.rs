//! Small requests on a lossy link must not end BBR2's startup at their own rate. quiche marks
//! its sender application-limited only when it builds a packet without stream data, so rounds
//! of small requests and answers, with a retransmission now and then, count as rounds without
//! bandwidth growth; after three of them startup ended on a "bandwidth plateau" at the load's
//! rate (about 100 KB/s). Past startup, BBR2 probes up only every few seconds, and with random
//! loss above its 1.5% threshold each lossy round cuts its estimate, so the next large answer
//! crawled at that rate for tens of seconds (10 MiB in 26-30 s at 2-3% loss in the benchmark).
//! Startup now ends on loss or not at all. Behind a relay with 2% loss each way and a 50 ms RTT:
//! the small-request load of the benchmark, then a download, on the server's metrics.

use crate::harness::admin::{metrics_addr, scrape};
use crate::harness::{HttpConn, Pair, PairBuilder, RelayConfig, Upstream};
use std::time::{Duration, Instant};

const LOSS: f64 = 0.02;
const ONE_WAY: Duration = Duration::from_millis(25);
const SEQUENTIAL: usize = 50;
const CLIENTS: usize = 16;
const LOAD: Duration = Duration::from_secs(3);
const SIZE: u64 = 4 * 1024 * 1024;
/// The download takes about 0.5 s here (eight round trips of ramp-up and repairs); at the rate
/// of the small requests it took over 30 s.
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

#[test]
fn small_requests_on_a_lossy_link_leave_the_next_download_its_rate() {
    let up = Upstream::start();
    let (metrics, metrics_json) = metrics_addr();
    // Ethernet-sized datagrams, as on such a link (path MTU discovery off).
    let pair = PairBuilder::new(up.addr())
        .name("startup_exit")
        .both("transport.pmtu_discovery", "false")
        .both("transport.congestion_control", "\"bbr2\"")
        .server("metrics.listen", &metrics_json)
        .relay(RelayConfig::lossy(LOSS, ONE_WAY, 29))
        .start();

    let far = Instant::now() + Duration::from_secs(60);
    assert_eq!(small_requests(&pair, far, SEQUENTIAL), SEQUENTIAL);
    let until = Instant::now() + LOAD;
    let done: usize = std::thread::scope(|s| {
        let workers: Vec<_> = (0..CLIENTS)
            .map(|_| s.spawn(|| small_requests(&pair, until, 10_000)))
            .collect();
        workers.into_iter().map(|w| w.join().expect("client")).sum()
    });

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
