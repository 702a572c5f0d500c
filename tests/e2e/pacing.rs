//! Pacing is honoured: with BBR2, packets leave at the times quiche schedules, so a
//! `transport.max_pacing_rate` cap shapes a transfer. Two pairs side by side in one run: the
//! capped one must take at least most of size / rate, the uncapped one far less (a ratio, not
//! an absolute time), and both deliver the bytes intact.

use crate::harness::{Pair, PairBuilder, Upstream};
use std::time::{Duration, Instant};

const SIZE: u64 = 4 * 1024 * 1024;
/// 16 Mbit/s: the capped 4 MiB transfer needs about 2 s.
const RATE_MBPS: u64 = 16;

fn timed_download(pair: &Pair) -> Duration {
    let mut c = pair.conn();
    c.set_deadline(Duration::from_secs(60));
    let t = Instant::now();
    let (head, n) = c
        .download_pattern(&format!("/bytes/{SIZE}"))
        .expect("download");
    assert_eq!((head.status, n), (200, SIZE), "{head:?}");
    t.elapsed()
}

#[test]
fn max_pacing_rate_shapes_a_bbr2_transfer() {
    let up = Upstream::start();
    let free = PairBuilder::new(up.addr())
        .name("pacing_free")
        .both("transport.congestion_control", "\"bbr2\"")
        .start();
    let capped = PairBuilder::new(up.addr())
        .name("pacing_capped")
        .both("transport.congestion_control", "\"bbr2\"")
        .server("transport.max_pacing_rate_mbps", &RATE_MBPS.to_string())
        .start();
    let free_time = timed_download(&free);
    let capped_time = timed_download(&capped);
    let ideal = Duration::from_secs_f64(SIZE as f64 * 8.0 / (RATE_MBPS as f64 * 1e6));
    eprintln!("4 MiB: uncapped {free_time:?}, capped at {RATE_MBPS} Mbit/s {capped_time:?} (ideal {ideal:?})");
    assert!(
        capped_time >= ideal.mul_f64(0.7),
        "the pacing cap was not honoured: {capped_time:?} for {ideal:?} worth of bytes"
    );
    assert!(
        capped_time >= free_time * 3,
        "capped {capped_time:?} vs uncapped {free_time:?}: the cap made too little difference"
    );
}
