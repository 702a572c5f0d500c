//! 0-RTT on reconnect: with a ticket key file, a restarted server still accepts the client's
//! session ticket, and the client's first request on the new session travels in early data.

use crate::harness::tmp::TempDir;
use crate::harness::{PairBuilder, Upstream};
use std::time::Duration;

#[test]
fn after_a_server_restart_the_client_resumes_with_0rtt() {
    let up = Upstream::start();
    let dir = TempDir::new("zero_rtt");
    let key = dir.join("ticket.key");
    let mut bytes = [0u8; 48];
    for (i, b) in bytes.iter_mut().enumerate() {
        *b = (i as u8).wrapping_mul(37) ^ 0x5a;
    }
    std::fs::write(&key, bytes).expect("ticket key");
    let mut pair = PairBuilder::new(up.addr())
        .name("zero_rtt")
        .server(
            "tls.ticket_key_file",
            &format!("{:?}", key.to_str().expect("utf-8")),
        )
        // Long, so that no session-wait timer can stand in for the data path (below).
        .client("http.session_wait_ms", "20000")
        .start();
    let r = pair.get("/hello");
    assert_eq!(r.status(), 200, "{r}");
    pair.server.expect_log(
        "0-RTT resumption on, with the ticket key file",
        Duration::from_secs(1),
    );
    let mark = pair.client.log_len();

    pair.restart_server();
    // The first request meets the dead session (stateless reset), waits for the next one and
    // goes out in 0-RTT on it.
    let started = std::time::Instant::now();
    let r = pair.get("/hello");
    assert_eq!((r.status(), r.body.as_slice()), (200, &b"hello"[..]), "{r}");
    // Regression: a response that arrived while the handshake was done but the link not yet
    // up stayed unread until a timer happened to drive the connection.
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the 0-RTT response took {:?}",
        started.elapsed()
    );
    let line = pair
        .client
        .wait_for_log_since(mark, "session established", Duration::from_secs(10))
        .expect("a new session");
    assert!(
        line.contains("resumed with 0-RTT accepted"),
        "not resumed with 0-RTT: {line}"
    );
}

#[test]
fn without_the_ticket_key_file_a_restarted_server_falls_back_to_a_full_handshake() {
    let up = Upstream::start();
    let mut pair = PairBuilder::new(up.addr())
        .name("zero_rtt_fallback")
        .start();
    assert_eq!(pair.get("/hello").status(), 200);
    let mark = pair.client.log_len();
    pair.restart_server();
    let r = pair.get("/hello");
    assert_eq!((r.status(), r.body.as_slice()), (200, &b"hello"[..]), "{r}");
    let line = pair
        .client
        .wait_for_log_since(mark, "session established", Duration::from_secs(10))
        .expect("a new session");
    assert!(
        !line.contains("0-RTT accepted"),
        "0-RTT cannot survive a new ticket key: {line}"
    );
}
