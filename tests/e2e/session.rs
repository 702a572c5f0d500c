//! The persistent QUIC session: pre-established, survives server restarts,
//! 503 when there is none.

use crate::harness::pair::{LOG_SESSION_LOST, LOG_SESSION_UP};
use crate::harness::relay::RelayConfig;
use crate::harness::{http, HttpConn, PairBuilder, Upstream};
use std::time::{Duration, Instant};

#[test]
fn first_request_uses_the_pre_established_session() {
    let up = Upstream::start();
    let pair = PairBuilder::new(up.addr())
        .name("preestablished")
        .relay(RelayConfig::clean())
        .start();
    let relay = pair.relay();
    // let the tail of the handshake (e.g. Handshake-packet ACKs) settle
    assert!(
        relay.wait_stable(Duration::from_millis(500), Duration::from_secs(5), |s| (
            s.to_server.long_header,
            s.to_client.long_header
        )),
        "long-header packets keep flowing after the session was established: {:?}",
        relay.stats()
    );
    let before = relay.stats();
    assert!(
        before.to_server.long_header > 0 && before.to_client.long_header > 0,
        "handshake did not cross the relay: {before:?}"
    );

    let r = pair.get("/hello");
    assert_eq!((r.status(), r.body.as_slice()), (200, &b"hello"[..]), "{r}");
    let after = relay.stats();
    assert!(
        after.to_server.forwarded > before.to_server.forwarded,
        "request did not cross the relay: {before:?} -> {after:?}"
    );
    assert_eq!(
        (after.to_server.long_header, after.to_client.long_header),
        (before.to_server.long_header, before.to_client.long_header),
        "handshake (long-header) packets were exchanged for the first request"
    );
    assert_eq!(
        pair.client.count_log(LOG_SESSION_UP),
        1,
        "client established more than one session"
    );
    assert_eq!(
        pair.server.count_log(LOG_SESSION_UP),
        1,
        "server accepted more than one session"
    );
}

#[test]
fn client_recovers_after_server_is_killed_and_restarted() {
    let up = Upstream::start();
    let mut pair = PairBuilder::new(up.addr()).name("server_restart").start(); // default transport/reconnect settings: recovery must not need tuning
    let r = pair.get("/hello");
    assert_eq!(r.status(), 200, "{r}");
    let mark = pair.client.log_len();
    let client_pid = pair.client.pid();

    pair.restart_server(); // SIGKILL, then start again with the same config/port

    let t0 = Instant::now();
    let deadline = t0 + Duration::from_secs(10);
    let mut attempts = Vec::new();
    let mut ok = false;
    while Instant::now() < deadline {
        let left = deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(100));
        let res = HttpConn::connect_timeout(pair.http_addr, left.min(Duration::from_secs(3)))
            .and_then(|mut c| c.get("/hello"));
        match res {
            Ok(r) if r.status() == 200 && r.body == b"hello" => {
                ok = true;
                break;
            }
            Ok(r) => attempts.push(format!(
                "{:?}: {} {:?}",
                t0.elapsed(),
                r.status(),
                r.body_str()
            )),
            Err(e) => attempts.push(format!("{:?}: {e}", t0.elapsed())),
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        ok,
        "no successful request within 10 s after the server restart; attempts: {attempts:#?}"
    );
    eprintln!(
        "recovered {:?} after restart; failed attempts: {attempts:?}",
        t0.elapsed()
    );
    assert_eq!(
        pair.client.pid(),
        client_pid,
        "the client must not have been restarted"
    );
    assert!(pair.client.is_running());
    pair.client
        .wait_for_log_since(mark, LOG_SESSION_LOST, Duration::from_secs(1))
        .expect("client must log the lost session");
    assert!(
        pair.client.count_log(LOG_SESSION_UP) >= 2,
        "client must log a second session"
    );
}

fn assert_client_503(r: &http::Response, elapsed: Duration, min: Duration, max: Duration) {
    assert_eq!(r.status(), 503, "{r}");
    assert!(r.body_str().starts_with("ptproxy client:"), "{r}");
    let ps = r.header("proxy-status").unwrap_or_default();
    assert!(ps.starts_with("ptproxy-client"), "proxy-status {ps:?}: {r}");
    assert!(
        elapsed >= min && elapsed <= max,
        "503 after {elapsed:?}, expected {min:?}..{max:?}"
    );
}

#[test]
fn request_gets_503_when_server_was_never_up() {
    let up = Upstream::start();
    let pair = PairBuilder::new(up.addr())
        .name("no_server")
        .start_server(false)
        .client("http.session_wait_ms", "500")
        .start();
    let mut c = pair.conn();
    let t = Instant::now();
    let r = c.get("/hello").expect("a response, not a hang/close");
    assert_client_503(
        &r,
        t.elapsed(),
        Duration::from_millis(400),
        Duration::from_secs(3),
    );
    assert_eq!(up.request_count(), 0);
    assert_eq!(pair.client.count_log(LOG_SESSION_UP), 0);
}

#[test]
fn request_gets_503_after_server_is_killed() {
    let up = Upstream::start();
    let mut pair = PairBuilder::new(up.addr())
        .name("server_killed")
        .both("transport.idle_timeout_ms", "1000")
        .both("transport.keepalive_interval_ms", "300")
        .client("http.session_wait_ms", "500")
        .start();
    let r = pair.get("/hello");
    assert_eq!(r.status(), 200, "{r}");
    let mark = pair.client.log_len();
    pair.server.kill();
    // the client notices (idle timeout 1 s) and logs it
    pair.client
        .wait_for_log_since(mark, LOG_SESSION_LOST, Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("{e}"));
    let mut c = pair.conn();
    let t = Instant::now();
    let r = c.get("/hello").expect("a response, not a hang/close");
    assert_client_503(
        &r,
        t.elapsed(),
        Duration::from_millis(400),
        Duration::from_secs(3),
    );
    assert_eq!(up.request_count(), 1);
}

/// Short-header packets (after the handshake) of `len`-byte connection IDs on both ends: the
/// average UDP payload per datagram over 40 sequential requests.
fn bytes_per_datagram_with_cids(up: &Upstream, len: usize) -> f64 {
    let pair = PairBuilder::new(up.addr())
        .name(&format!("session_cid_{len}"))
        .relay(RelayConfig::clean())
        .both("transport.connection_id_bytes", &len.to_string())
        .start();
    let r = pair.get("/hello?warm");
    assert_eq!(r.status(), 200, "{r}");
    let before = pair.relay().stats();
    for i in 0..40 {
        let r = pair.get(&format!("/hello?{i}"));
        assert_eq!(r.status(), 200, "{r}");
    }
    let after = pair.relay().stats();
    let dir = |b: crate::harness::relay::DirStats, a: crate::harness::relay::DirStats| {
        (
            a.received - b.received,
            a.received_bytes - b.received_bytes,
            a.long_header - b.long_header,
        )
    };
    let (up_n, up_bytes, up_long) = dir(before.to_server, after.to_server);
    let (down_n, down_bytes, down_long) = dir(before.to_client, after.to_client);
    assert_eq!(
        up_long + down_long,
        0,
        "only short-header packets after the handshake"
    );
    (up_bytes + down_bytes) as f64 / (up_n + down_n) as f64
}

/// `transport.connection_id_bytes` sets the length of the IDs each end issues, so every
/// packet to it carries that many bytes of destination ID: 4-byte IDs make each datagram 16
/// bytes smaller than 20-byte ones (what quiche's default was), whatever else it carries.
#[test]
fn shorter_connection_ids_make_every_packet_smaller() {
    let up = Upstream::start();
    let short = bytes_per_datagram_with_cids(&up, 4);
    let long = bytes_per_datagram_with_cids(&up, 20);
    let saved = long - short;
    eprintln!("bytes per datagram: {short:.1} with 4-byte IDs, {long:.1} with 20-byte ones");
    assert!(
        (12.0..=20.0).contains(&saved),
        "bytes per datagram: {short:.1} with 4-byte IDs, {long:.1} with 20-byte ones ({saved:.1} apart, 16 expected)"
    );
}

/// Each end chooses the length of its own IDs: a client with 4-byte IDs and a server with
/// 20-byte ones work together, through a Retry too (whose ID is at most 8 bytes).
#[test]
fn ends_with_different_connection_id_lengths_work_together_through_a_retry() {
    let up = Upstream::start();
    let pair = PairBuilder::new(up.addr())
        .name("session_cid_mixed")
        .client("transport.connection_id_bytes", "4")
        .server("transport.connection_id_bytes", "20")
        .server("admission.retry", "\"always\"")
        .start();
    for i in 0..5 {
        let r = pair.get(&format!("/hello?{i}"));
        assert_eq!(r.status(), 200, "{r}");
    }
    let pair = PairBuilder::new(up.addr())
        .name("session_cid_short_server")
        .client("transport.connection_id_bytes", "20")
        .server("transport.connection_id_bytes", "4")
        .server("admission.retry", "\"always\"")
        .start();
    let r = pair.get("/hello");
    assert_eq!(r.status(), 200, "{r}");
}
