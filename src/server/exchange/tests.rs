//! The server exchange run without sockets or a session: an in-memory request stream and
//! upstream, and a manual clock. Each test is one timer hazard, replayed step by step.

use std::time::Duration;

use crate::testing::server::ServerRig;
use crate::testing::{FromStart, MemConn, Released};

const SECOND: Duration = Duration::from_secs(1);

type World = FromStart<ServerRig>;

/// An exchange with the given connect and response timeouts, at t0.
fn world(connect: Duration, response: Duration) -> World {
    FromStart::new(|t0| ServerRig::new(t0, connect, response))
}

#[test]
fn a_connect_that_never_completes_is_a_504_at_the_connect_timeout() {
    let mut w = world(2 * SECOND, 30 * SECOND);
    w.pool.next = Some(MemConn::fresh());
    w.start("GET", &[], false);
    assert_eq!(w.deadline(), Some(2 * SECOND), "the connect timer is armed");
    w.advance_to(2 * SECOND - Duration::from_millis(1));
    assert!(w.stream.heads.is_empty());
    w.advance_to(2 * SECOND);
    assert_eq!(w.stream.status(), Some(504));
    assert!(String::from_utf8_lossy(&w.stream.data).contains("did not accept the connection"));
    assert!(w.finished && w.stream.fin, "answered and done");
}

#[test]
fn a_connect_timeout_moves_the_request_to_another_address_with_a_timeout_of_its_own() {
    let mut w = world(2 * SECOND, 30 * SECOND);
    w.pool.next = Some(MemConn::fresh());
    w.pool.spare_addresses = 1;
    w.start("GET", &[], false);
    w.advance_to(2 * SECOND);
    assert!(
        w.stream.heads.is_empty(),
        "no 504 while another address is left"
    );
    assert_eq!(
        w.pool.failed_connects.len(),
        1,
        "{:?}",
        w.pool.failed_connects
    );
    assert!(w.pool.failed_connects[0].contains("timed out"));
    assert_eq!(
        w.deadline(),
        Some(4 * SECOND),
        "the new attempt has its own connect timeout"
    );
    w.advance_to(4 * SECOND);
    assert_eq!(w.stream.status(), Some(504), "no address left");
    assert_eq!(w.pool.failed_connects.len(), 2);
    assert!(w.finished && w.stream.fin);
}

#[test]
fn equal_connect_and_response_timeouts_each_apply() {
    // A reused connection (no connect): the response timeout runs from the request head.
    let mut w = world(2 * SECOND, 2 * SECOND);
    w.pool.next = Some(MemConn::pooled());
    w.start("GET", &[], false);
    assert_eq!(w.deadline(), Some(2 * SECOND), "response timer armed");
    w.advance_to(2 * SECOND);
    assert_eq!(w.stream.status(), Some(504));
    assert!(String::from_utf8_lossy(&w.stream.data).contains("did not answer within 2000 ms"));

    // A fresh connection that connects at 1 s: the response timeout runs from then.
    let mut w = world(2 * SECOND, 2 * SECOND);
    w.pool.next = Some(MemConn::fresh());
    w.start("GET", &[], false);
    w.advance_to(SECOND);
    if let Some(c) = w.pool.latest() {
        c.outcome = Some(Ok(()));
    }
    w.run(|ex, ctx| ex.drive(ctx));
    assert_eq!(
        w.deadline(),
        Some(3 * SECOND),
        "connect timer cleared, response armed"
    );
    w.advance_to(3 * SECOND);
    assert_eq!(w.stream.status(), Some(504));
    assert!(String::from_utf8_lossy(&w.stream.data).contains("did not answer"));
}

#[test]
fn a_504_that_cannot_leave_a_blocked_stream_ends_in_a_reset() {
    let mut w = world(SECOND, SECOND);
    w.pool.next = Some(MemConn::fresh());
    w.stream.blocked = true;
    w.start("GET", &[], false);
    w.advance_to(SECOND);
    assert!(w.stream.heads.is_empty(), "blocked: nothing left");
    assert!(!w.finished);
    assert_eq!(w.deadline(), Some(2 * SECOND), "one period to deliver it");
    w.advance_to(2 * SECOND);
    assert!(w.finished, "given up");
    assert_eq!(w.stream.reset, Some(crate::quic::h3_code::INTERNAL_ERROR));
}

#[test]
fn an_upstream_that_stops_reading_after_a_complete_response_ends_the_exchange() {
    let mut w = world(SECOND, 3 * SECOND);
    // A reused connection whose upstream reads nothing more.
    w.pool.next = Some(MemConn {
        reads: 0,
        ..MemConn::pooled()
    });
    w.start("POST", &[], true);
    let key = w.pool.latest_key().expect("a connection");
    let body = 30_000;
    // The whole body fits the output exactly: it is all read from the stream, the stream
    // ends, and the body's end is still to be written when the response is complete.
    if let Some(c) = w.pool.latest() {
        c.cap = c.output.len() + body;
    }
    w.stream.incoming = vec![b'x'; body];
    w.run(|ex, ctx| ex.drive(ctx));
    w.run(|ex, ctx| {
        ex.on_finished();
        ex.drive(ctx)
    });
    if let Some(c) = w.pool.latest() {
        c.send(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
    }
    w.run(|ex, ctx| ex.drive(ctx));
    assert_eq!(w.stream.status(), Some(200));
    assert_eq!(w.stream.data, b"ok");
    assert!(!w.finished, "the request body still waits for the upstream");
    w.advance_to(3 * SECOND);
    assert!(w.finished, "the stalled upstream ends the exchange");
    assert!(
        w.pool.conns[key].released == Some(Released::Closed),
        "and its connection is closed"
    );
}

#[test]
fn a_peer_reset_after_a_complete_response_does_not_reset_it() {
    // Found by the `exchange` fuzz target: the response went out with its FIN while the end
    // of the request body still waited for the upstream; the peer's reset then reset the
    // complete response too.
    let mut w = world(SECOND, 3 * SECOND);
    w.pool.next = Some(MemConn {
        reads: 0,
        ..MemConn::pooled()
    });
    w.start("POST", &[], true);
    if let Some(c) = w.pool.latest() {
        c.cap = c.output.len() + 10;
    }
    w.stream.incoming = vec![b'x'; 10];
    w.run(|ex, ctx| ex.drive(ctx));
    w.run(|ex, ctx| {
        ex.on_finished();
        ex.drive(ctx)
    });
    if let Some(c) = w.pool.latest() {
        c.send(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
    }
    w.run(|ex, ctx| ex.drive(ctx));
    assert!(
        w.stream.fin && !w.finished,
        "complete, the upload still flowing"
    );
    w.run(|ex, ctx| ex.abort(ctx));
    assert!(w.finished);
    assert_eq!(w.stream.reset, None, "the complete response stays complete");
    assert!(w.stream.stop_sending.is_some(), "the upload is stopped");
}

#[test]
fn a_handled_deadline_is_never_due_again() {
    // Every hazard above, replayed at every instant of a 10 s window: after the timers due at
    // a given time were handled, none is due any more (the reactor would spin otherwise).
    for connects in [true, false] {
        let mut w = world(SECOND, 2 * SECOND);
        w.pool.next = Some(if connects {
            MemConn::connects()
        } else {
            MemConn::fresh()
        });
        w.stream.blocked = !connects;
        w.start("GET", &[], false);
        for ms in (0..10_000).step_by(50) {
            w.advance_to(Duration::from_millis(ms));
            if w.finished {
                break;
            }
            assert!(
                w.deadline().is_none_or(|d| d > Duration::from_millis(ms)),
                "due again at {ms} ms"
            );
        }
        assert!(w.finished, "every exchange ends (connects: {connects})");
    }
}

fn field(name: &str, value: &str) -> quiche::h3::Header {
    quiche::h3::Header::new(name.as_bytes(), value.as_bytes())
}

#[test]
fn a_malformed_extended_connect_is_reset_and_takes_no_connection() {
    let mut w = world(SECOND, SECOND);
    w.pool.next = Some(MemConn::pooled());
    // `:protocol` on a GET (RFC 8441 §4: only with CONNECT).
    assert!(w.start("GET", &[field(":protocol", "websocket")], true));
    assert_eq!(w.stream.reset, Some(crate::quic::h3_code::MESSAGE_ERROR));
    assert!(w.stream.heads.is_empty(), "no answer, a reset");
    assert!(w.pool.conns.is_empty(), "no upstream connection taken");
}

#[test]
fn a_websocket_tunnel_uses_a_fresh_connection_and_its_idle_timeout_resets_it() {
    let mut w = world(SECOND, 2 * SECOND);
    w.pool.next = Some(MemConn::pooled());
    let key = "dGhlIHNhbXBsZSBub25jZQ==";
    let ws = [
        field(":protocol", "websocket"),
        field("sec-websocket-key", key),
    ];
    w.start("CONNECT", &ws, true);
    assert!(w.pool.next.is_some(), "the pooled connection is not used");
    if let Some(c) = w.pool.latest() {
        assert_eq!(c.reused, 0, "a fresh connection");
        c.outcome = Some(Ok(()));
    }
    w.run(|ex, ctx| ex.drive(ctx));
    let conn = w.pool.latest_key().expect("the tunnel's connection");
    let upgrade = String::from_utf8_lossy(&w.pool.conns[conn].read).into_owned();
    assert!(upgrade.starts_with("GET /x HTTP/1.1\r\n"), "{upgrade}");
    for line in [
        "upgrade: websocket",
        "connection: Upgrade",
        "sec-websocket-version: 13",
    ] {
        assert!(upgrade.contains(line), "{line} missing from {upgrade}");
    }
    assert!(upgrade.contains(key), "{upgrade}");

    // 101 (with the first tunnel bytes right behind it) -> 200, then bytes both ways.
    if let Some(c) = w.pool.latest() {
        c.send(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\nhi");
    }
    w.run(|ex, ctx| ex.drive(ctx));
    assert_eq!(w.stream.status(), Some(200));
    assert_eq!(w.stream.data, b"hi");
    assert!(!w.stream.fin, "the tunnel stays open");
    w.stream.incoming = b"yo".to_vec();
    w.run(|ex, ctx| ex.drive(ctx));
    assert!(w.pool.conns[conn].read.ends_with(b"\r\n\r\nyo"));
    assert_eq!(w.metrics.tunnels.open, 1);
    assert_eq!(
        (
            w.metrics.tunnels.bytes_to_upstream,
            w.metrics.tunnels.bytes_from_upstream
        ),
        (2, 2)
    );

    // No response timeout while open (2 s); the idle timeout (300 s in the rig) resets it.
    w.advance_to(10 * SECOND);
    assert!(!w.finished, "an open tunnel has no response timeout");
    w.advance_to(400 * SECOND);
    assert!(w.finished, "the idle tunnel is given up");
    assert!(w.stream.reset.is_some());
    assert_eq!(w.pool.conns[conn].released, Some(Released::Closed));
    assert_eq!(w.metrics.tunnels.open, 0);
}

/// A plain CONNECT's fields: `:method` and `:authority` only (RFC 9114 §4.4).
fn plain_connect(authority: &str) -> [quiche::h3::Header; 2] {
    [field(":method", "CONNECT"), field(":authority", authority)]
}

fn allow_connect_to(w: &mut World, list: &[&str]) {
    let list: Vec<_> = list
        .iter()
        .map(|d| crate::resolve::HostPort::parse(d).expect("a test destination"))
        .collect();
    w.connect_to = list.into();
}

#[test]
fn a_connect_to_a_listed_destination_tunnels_on_a_fresh_connection_from_its_connect() {
    let mut w = world(SECOND, 2 * SECOND);
    allow_connect_to(&mut w, &["db.test:5432"]);
    w.pool.next = Some(MemConn::pooled());
    w.start_fields(&plain_connect("DB.test:5432"), true);
    assert_eq!(w.pool.destinations, ["db.test:5432"]);
    assert!(w.pool.next.is_some(), "the pooled connection is not used");
    assert!(
        w.stream.heads.is_empty(),
        "no answer before the connection is up"
    );
    if let Some(c) = w.pool.latest() {
        assert_eq!(c.reused, 0, "a fresh connection");
        c.outcome = Some(Ok(()));
    }
    w.run(|ex, ctx| ex.drive(ctx));
    assert_eq!(w.stream.status(), Some(200));
    assert!(!w.stream.is_synthesized());
    let conn = w.pool.latest_key().expect("the tunnel's connection");
    assert!(
        w.pool.conns[conn].read.is_empty(),
        "no request head is written"
    );

    // The destination speaks first (an SSH banner), then bytes both ways.
    if let Some(c) = w.pool.latest() {
        c.send(b"SSH-2.0-test\r\n");
    }
    w.run(|ex, ctx| ex.drive(ctx));
    assert_eq!(w.stream.data, b"SSH-2.0-test\r\n");
    w.stream.incoming = b"hello".to_vec();
    w.run(|ex, ctx| ex.drive(ctx));
    assert_eq!(w.pool.conns[conn].read, b"hello");
    assert!(!w.stream.fin && !w.finished, "the tunnel stays open");
    assert_eq!(w.metrics.tunnels.open, 1);
    w.advance_to(10 * SECOND);
    assert!(!w.finished, "an open tunnel has no response timeout");
}

#[test]
fn a_connect_to_an_unlisted_destination_is_a_403_and_connects_nowhere() {
    let mut w = world(SECOND, SECOND);
    allow_connect_to(&mut w, &["db.test:5432"]);
    for other in ["db.test:22", "db2.test:5432", "10.0.0.1:5432"] {
        w.finished = false;
        w.stream = Default::default();
        assert!(w.start_fields(&plain_connect(other), true), "{other}");
        assert_eq!(w.stream.status(), Some(403), "{other}");
        assert!(w.stream.is_synthesized());
        let body = String::from_utf8_lossy(&w.stream.data).into_owned();
        assert!(
            body.contains(other) && body.contains("connect_to"),
            "{body}"
        );
    }
    assert!(w.pool.conns.is_empty() && w.pool.destinations.is_empty());
}

#[test]
fn a_connect_through_a_service_without_connect_to_is_a_501() {
    let mut w = world(SECOND, SECOND);
    assert!(w.start_fields(&plain_connect("db.test:5432"), true));
    assert_eq!(w.stream.status(), Some(501));
    assert!(String::from_utf8_lossy(&w.stream.data).contains("no connect_to"));
    assert!(w.pool.conns.is_empty());
}
