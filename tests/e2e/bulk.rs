//! 200 MB each way, byte exact, with bounded proxy memory.

use crate::harness::pattern::sink_answer;
use crate::harness::{heavy_lock, Pair, PairBuilder, Upstream};
use std::time::{Duration, Instant};

const BIG: u64 = 200 * 1024 * 1024;
const RSS_LIMIT_KIB: u64 = 64 * 1024;
const TRANSFER_DEADLINE: Duration = Duration::from_secs(120);

fn assert_peak_rss(pair: &Pair, what: &str) {
    for p in [&pair.client, &pair.server] {
        let kib = p
            .peak_rss_kib()
            .unwrap_or_else(|| panic!("{}: no VmHWM (process gone?)", p.name()));
        eprintln!("{what}: {} peak RSS {} KiB", p.name(), kib);
        assert!(
            kib < RSS_LIMIT_KIB,
            "{what}: {} peak RSS {kib} KiB >= {RSS_LIMIT_KIB} KiB",
            p.name()
        );
    }
}

#[test]
fn download_200mb_is_byte_exact_with_bounded_memory() {
    let _heavy = heavy_lock();
    let up = Upstream::start();
    let pair = PairBuilder::new(up.addr()).name("download_200mb").start();
    let mut c = pair.conn();
    c.set_deadline(TRANSFER_DEADLINE);
    let t = Instant::now();
    let (head, n) = c
        .download_pattern(&format!("/bytes/{BIG}"))
        .unwrap_or_else(|e| panic!("download after {:?}: {e}", t.elapsed()));
    let secs = t.elapsed().as_secs_f64();
    eprintln!(
        "download {BIG} bytes in {secs:.1}s ({:.1} MB/s)",
        BIG as f64 / secs / 1e6
    );
    assert_eq!(head.status, 200, "{head:?}");
    assert_eq!(n, BIG, "short body");
    assert_peak_rss(&pair, "after 200 MB download");
}

#[test]
fn upload_200mb_is_byte_exact_with_bounded_memory() {
    let _heavy = heavy_lock();
    let up = Upstream::start();
    let pair = PairBuilder::new(up.addr()).name("upload_200mb").start();
    let mut c = pair.conn();
    c.set_deadline(TRANSFER_DEADLINE);
    let t = Instant::now();
    let (r, sum) = c
        .upload_pattern("POST", "/sink", BIG)
        .unwrap_or_else(|e| panic!("upload after {:?}: {e}", t.elapsed()));
    let secs = t.elapsed().as_secs_f64();
    eprintln!(
        "upload {BIG} bytes in {secs:.1}s ({:.1} MB/s)",
        BIG as f64 / secs / 1e6
    );
    assert_eq!(r.status(), 200, "{r}");
    assert_eq!(
        r.body_str(),
        sink_answer(BIG, sum),
        "upstream received different bytes"
    );
    let q = up.requests().pop().expect("recorded");
    assert_eq!((q.body_len, q.body_sum), (BIG, sum));
    assert_peak_rss(&pair, "after 200 MB upload");
}

const PAUSED_SIZE: u64 = 32 * 1024 * 1024;

/// A consumer that stops reading for a while lets flow control and buffers
/// fill up along the whole path; forwarding must resume when it reads again.
#[test]
fn download_resumes_after_the_client_stops_reading_for_a_while() {
    let up = Upstream::start();
    let pair = PairBuilder::new(up.addr()).name("download_paused").start();
    let mut c = pair.conn();
    c.set_deadline(Duration::from_secs(60));
    let t = Instant::now();
    let (head, n) = c
        .download_pattern_paused(
            &format!("/bytes/{PAUSED_SIZE}"),
            1 << 20,
            Duration::from_secs(2),
        )
        .unwrap_or_else(|e| panic!("download after {:?}: {e}", t.elapsed()));
    assert_eq!(head.status, 200, "{head:?}");
    assert_eq!(n, PAUSED_SIZE, "short body");
    // the connection is still usable
    let r = c.get("/hello").expect("request after the paused download");
    assert_eq!(r.body, b"hello", "{r}");
}

#[test]
fn upload_resumes_after_the_upstream_stops_reading_for_a_while() {
    let up = Upstream::start();
    let pair = PairBuilder::new(up.addr()).name("upload_paused").start();
    let mut c = pair.conn();
    c.set_deadline(Duration::from_secs(60));
    let t = Instant::now();
    let (r, sum) = c
        .upload_pattern(
            "POST",
            "/sink?pause_ms=2000&pause_after=1048576",
            PAUSED_SIZE,
        )
        .unwrap_or_else(|e| panic!("upload after {:?}: {e}", t.elapsed()));
    assert_eq!(r.status(), 200, "{r}");
    assert_eq!(
        r.body_str(),
        sink_answer(PAUSED_SIZE, sum),
        "upstream received different bytes"
    );
    let r = c.get("/hello").expect("request after the paused upload");
    assert_eq!(r.body, b"hello", "{r}");
}
