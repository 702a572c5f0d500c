//! The congestion controller's view of the path in the server's metrics: BBR2's bandwidth
//! estimate, and why and at what estimate it left its startup phase. Behind a relay that
//! serializes at 20 Mbit/s with a queue of one bandwidth-delay product, as a rate-limited link
//! does, small requests leave startup running (their rounds are application-limited), and a
//! download ends it with an estimate at the link's rate.

use crate::harness::admin::{metrics_addr, scrape, Scrape};
use crate::harness::{PairBuilder, RelayConfig, Upstream};
use std::time::Duration;

/// 20 Mbit/s.
const RATE: u64 = 2_500_000;
/// 20 ms each way: the bandwidth-delay product is 100 000 bytes.
const ONE_WAY: Duration = Duration::from_millis(20);
const BDP: u64 = 100_000;
const SIZE: u64 = 4 * 1024 * 1024;
const EXIT: &str = "ptproxy_path_startup_exit_bandwidth_bytes";
const ESTIMATE: &str = "ptproxy_path_bandwidth_estimate_bytes";

/// `value` as a share of the link's rate.
fn share_of_rate(value: f64) -> f64 {
    value / RATE as f64
}

#[track_caller]
fn assert_near_rate(what: &str, value: f64, scrape: &Scrape) {
    let share = share_of_rate(value);
    assert!(
        (0.5..=1.5).contains(&share),
        "{what}: {value} bytes/s, {share:.2}x the link's {RATE}:\n{}",
        scrape.text
    );
}

#[test]
fn the_bandwidth_estimate_and_startup_exit_follow_a_rate_limited_link() {
    let up = Upstream::start();
    let (metrics, metrics_json) = metrics_addr();
    // Ethernet-sized datagrams (path MTU discovery off: 1350 bytes), as on such a link: in the
    // loopback route's 16 KiB datagrams BBR2's window floor alone would exceed the queue.
    let pair = PairBuilder::new(up.addr())
        .name("path_estimate")
        .both("transport.pmtu_discovery", "false")
        .server("metrics.listen", &metrics_json)
        .relay(RelayConfig::lossy(0.0, ONE_WAY, 17).with_rate(RATE, BDP))
        .start();

    for _ in 0..5 {
        assert_eq!(pair.get("/hello").status(), 200);
    }
    let s = scrape(metrics);
    assert!(
        s.samples(EXIT).is_empty(),
        "startup ended on small requests:\n{}",
        s.text
    );
    s.single(ESTIMATE);

    let took = pair.download_exact(SIZE, Duration::from_secs(60));
    // The relay holds the rate: the download cannot beat it.
    assert!(
        took.as_secs_f64() >= SIZE as f64 / RATE as f64 * 0.95,
        "{SIZE} bytes in {took:?} through a {RATE} bytes/s relay"
    );

    let s = scrape(metrics);
    let (labels, at_exit) = s.single(EXIT);
    assert!(
        ["loss", "bandwidth_plateau", "persistent_queue"]
            .iter()
            .any(|r| labels.contains(&format!("reason=\"{r}\""))),
        "{labels}"
    );
    assert_near_rate("estimate when startup ended", at_exit, &s);
    assert_near_rate("estimate after the download", s.single(ESTIMATE).1, &s);
    eprintln!(
        "download {took:?}; startup ended {labels} at {:.2}x the rate",
        share_of_rate(at_exit)
    );
}
