//! Resource limits at the HTTP edges (issue 10): the operator endpoint under idle sockets,
//! request bodies that stall, the descriptor limit on accept, and buffers of idle keep-alive
//! connections.

use crate::harness::admin::{health, metrics_addr};
use crate::harness::pair::READY_TIMEOUT;
use crate::harness::{PairBuilder, Upstream};
use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

const LOG_ADMIN_LISTEN: &str = "serving /metrics and /health on";

/// Whether the peer closed `s` within `timeout` (EOF or reset); false if it stayed open.
fn closed_within(s: &mut TcpStream, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        let _ = s.set_read_timeout(Some(left));
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return false
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(_) => return true,
        }
    }
}

/// Item 3: 600 sockets that never finish a request head (more than the old 512-slot table)
/// do not lock the operator endpoint out, and each is closed after the head timeout (5 s).
#[test]
fn operator_endpoint_answers_past_idle_sockets_and_closes_them() {
    let up = Upstream::start();
    let (cm, cm_json) = metrics_addr();
    let pair = PairBuilder::new(up.addr())
        .name("edge_admin_idle")
        .client("metrics.listen", &cm_json)
        .start();
    pair.client.expect_log(LOG_ADMIN_LISTEN, READY_TIMEOUT);
    let mut idle = Vec::new();
    for i in 0..600 {
        let mut s = TcpStream::connect_timeout(&cm, Duration::from_secs(3)).expect("connect");
        if i % 2 == 1 {
            s.write_all(b"GET /health HTTP/1.1\r\n")
                .expect("partial head");
        }
        idle.push(s);
    }
    let newest_opened = Instant::now();
    let t = Instant::now();
    let h = health(cm);
    assert_eq!(h, Ok(200), "/health behind 600 idle sockets");
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "/health took {:?}",
        t.elapsed()
    );
    // The newest idle sockets were not pushed out to make room: they time out.
    let newest = idle.last_mut().expect("sockets");
    assert!(
        closed_within(newest, Duration::from_secs(20)),
        "an idle operator connection stayed open 20 s"
    );
    let lived = newest_opened.elapsed();
    assert!(
        lived >= Duration::from_secs(4),
        "closed after {lived:?}, before the 5 s head timeout"
    );
    assert_eq!(health(cm), Ok(200), "/health after the timeouts");
}
