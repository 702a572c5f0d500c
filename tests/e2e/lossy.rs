//! Lossy, delayed link between the proxies.

use crate::harness::pattern::pattern;
use crate::harness::relay::RelayConfig;
use crate::harness::{PairBuilder, Upstream};
use std::time::{Duration, Instant};

#[test]
fn lossy_link_5pct_10ms_requests_and_2mb_post_are_byte_exact() {
    let up = Upstream::start();
    let pair = PairBuilder::new(up.addr())
        .name("lossy")
        .relay(RelayConfig::lossy(
            0.05,
            Duration::from_millis(10),
            0x5EED_0014,
        ))
        .start();
    let mut c = pair.conn();
    c.set_deadline(Duration::from_secs(120));
    let t = Instant::now();
    for i in 0..50usize {
        if i % 2 == 0 {
            let n = 1 + i * 1013;
            let r = c
                .get(&format!("/bytes/{n}"))
                .unwrap_or_else(|e| panic!("request {i}: {e}"));
            assert_eq!(r.status(), 200, "request {i}: {r}");
            assert!(
                r.body == pattern(n),
                "request {i}: wrong body ({} bytes)",
                r.body.len()
            );
        } else {
            let body = format!("lossy request {i} ").repeat(i).into_bytes();
            let r = c
                .post("/echo", &body)
                .unwrap_or_else(|e| panic!("request {i}: {e}"));
            assert_eq!(r.status(), 200, "request {i}: {r}");
            assert_eq!(r.body, body, "request {i}");
        }
    }
    eprintln!("50 requests over the lossy link in {:?}", t.elapsed());
    let t = Instant::now();
    let big = pattern(2 * 1024 * 1024);
    let r = c.post("/echo", &big).expect("2 MB POST");
    assert_eq!(r.status(), 200, "{r}");
    assert!(
        r.body == big,
        "2 MB echo differs ({} bytes back)",
        r.body.len()
    );
    eprintln!("2 MB echo over the lossy link in {:?}", t.elapsed());
    let s = pair.relay().stats();
    eprintln!("relay stats: {s:?}");
    assert!(
        s.to_server.dropped > 0 && s.to_client.dropped > 0,
        "the relay dropped nothing: {s:?}"
    );
    assert_eq!(up.request_count(), 51);
}
