//! The server side facing a misbehaving upstream: connects that hang, responses that never
//! reach their final head, keep-alive connections closed under the proxy's feet, and transfer
//! codings HTTP/3 cannot carry (issue 10).

use crate::harness::raw_upstream::{Part, RawUpstream};
use crate::harness::{PairBuilder, Response, Upstream};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

fn assert_server_error(r: &Response, status: u16) {
    assert_eq!(r.status(), status, "{r}");
    assert!(r.body_str().starts_with("ptproxy server:"), "{r}");
}

/// A loopback address where connect() hangs: a listener with an accept backlog of one whose
/// queue is full (never accepted), so the kernel drops further SYNs. Returns the listener and
/// the connections filling it (both must live as long as the address is used).
fn hanging_addr() -> (TcpListener, Vec<TcpStream>, SocketAddr) {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = l.local_addr().unwrap();
    // SAFETY: listen(2) on a socket this function owns.
    assert_eq!(
        unsafe { libc::listen(l.as_raw_fd(), 0) },
        0,
        "listen(fd, 0)"
    );
    let mut fill = Vec::new();
    for _ in 0..16 {
        match TcpStream::connect_timeout(&addr, Duration::from_millis(300)) {
            Ok(s) => fill.push(s),
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => return (l, fill, addr),
            Err(e) => panic!("filling the backlog: {e}"),
        }
    }
    panic!(
        "connect to {addr} never hung after {} connections",
        fill.len()
    );
}

#[test]
fn connect_timeout_fires_on_an_upstream_that_never_answers_syns() {
    let (_listener, _fill, addr) = hanging_addr();
    let pair = PairBuilder::new(addr)
        .name("connect_timeout")
        .server("upstream.connect_timeout_ms", "1000")
        .server("upstream.response_timeout_ms", "30000")
        .start();
    let mut c = pair.conn();
    c.set_timeout(Duration::from_secs(20));
    let t = Instant::now();
    let r = c.get("/hello").expect("GET must be answered");
    let el = t.elapsed();
    assert_server_error(&r, 504);
    assert!(
        el >= Duration::from_millis(900) && el <= Duration::from_secs(5),
        "504 after {el:?}, expected about 1 s"
    );
}

#[test]
fn response_timeout_fires_on_a_reused_connection_when_it_equals_the_connect_timeout() {
    let up = Upstream::start();
    let pair = PairBuilder::new(up.addr())
        .name("equal_timeouts")
        .server("upstream.connect_timeout_ms", "1000")
        .server("upstream.response_timeout_ms", "1000")
        .start();
    let mut c = pair.conn();
    c.set_timeout(Duration::from_secs(20));
    let r = c.get("/hello").expect("GET /hello");
    assert_eq!(r.status(), 200, "{r}");
    let t = Instant::now();
    let r = c.get("/stall").expect("GET /stall must be answered");
    let el = t.elapsed();
    assert_server_error(&r, 504);
    assert!(
        el >= Duration::from_millis(900) && el <= Duration::from_secs(5),
        "504 after {el:?}, expected about 1 s"
    );
    assert_eq!(
        up.connection_count(),
        1,
        "the stalled GET must reuse the pooled connection"
    );
}
