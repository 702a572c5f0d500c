//! Errors synthesized by the server side: 502 and 504.

use crate::harness::{closed_tcp_addr, PairBuilder, Response, Upstream};
use std::time::{Duration, Instant};

fn assert_server_error(r: &Response, status: u16) {
    assert_eq!(r.status(), status, "{r}");
    assert!(
        r.body_str().starts_with("ptproxy server:"),
        "body must start with \"ptproxy server:\": {r}"
    );
    let ps = r.header("proxy-status").unwrap_or_default();
    assert!(ps.starts_with("ptproxy-server"), "proxy-status {ps:?}: {r}");
}

#[test]
fn unreachable_upstream_gives_502() {
    let pair = PairBuilder::new(closed_tcp_addr())
        .name("upstream_closed_port")
        .start();
    let mut c = pair.conn();
    let r = c.get("/hello").expect("GET /hello");
    assert_server_error(&r, 502);
    // and again on a fresh connection
    let r = pair.get("/hello");
    assert_server_error(&r, 502);
}

#[test]
fn upstream_going_down_gives_502() {
    let mut up = Upstream::start();
    let pair = PairBuilder::new(up.addr()).name("upstream_down").start();
    let r = pair.get("/hello");
    assert_eq!(r.status(), 200, "{r}");
    up.shutdown(); // listener and existing (pooled) connections closed
    let r = pair.get("/hello");
    assert_server_error(&r, 502);
}

#[test]
fn stalled_upstream_gives_504_after_response_timeout() {
    let up = Upstream::start();
    let pair = PairBuilder::new(up.addr())
        .name("upstream_stall")
        .server("upstream.response_timeout_ms", "1000")
        .start();
    let mut c = pair.conn();
    c.set_timeout(Duration::from_secs(15));
    let t = Instant::now();
    let r = c.get("/stall").expect("GET /stall must be answered");
    let el = t.elapsed();
    assert_server_error(&r, 504);
    assert!(
        el >= Duration::from_millis(900) && el <= Duration::from_secs(5),
        "504 after {el:?}, expected about 1 s"
    );
    assert!(
        up.requests().iter().any(|q| q.path() == "/stall"),
        "upstream never saw /stall"
    );
    // the proxies still work afterwards
    let r = pair.get("/hello");
    assert_eq!(r.status(), 200, "{r}");
}
