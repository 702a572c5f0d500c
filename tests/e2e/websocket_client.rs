//! WebSocket over HTTP/3 extended CONNECT (RFC 9220), client side, through the real pair: a
//! raw WebSocket client as service A ([`WsClient`]) upgrades through the ptproxy client, the
//! harness's [`WsUpstream`] is service B. The caller gets `101` with the accept for its key
//! and then a byte-exact tunnel, FIN for FIN; a refusal is relayed, a wrong accept is a 502,
//! and an upstream dying mid-tunnel resets the caller's connection.

use std::time::Duration;

use crate::harness::admin::{metric, metrics_addr};
use crate::harness::pattern;
use crate::harness::ws_client::{self, frame, WsClient, BINARY, CLOSE, KEY, PING, PONG, TEXT};
use crate::harness::ws_upstream::{head_field, WsBehaviour, WsUpstream};
use crate::harness::PairBuilder;

const WAIT: Duration = Duration::from_secs(15);
/// The accept RFC 6455 §1.3's example key calls for.
const ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

/// Asserts a `101 Switching Protocols` with the right accept and the upgrade fields.
pub(crate) fn assert_switched(c: &WsClient) {
    assert_eq!(c.status(), 101, "{}", c.head);
    assert_eq!(c.field("sec-websocket-accept"), Some(ACCEPT), "{}", c.head);
    assert_eq!(c.field("upgrade"), Some("websocket"), "{}", c.head);
    assert_eq!(c.field("connection"), Some("Upgrade"), "{}", c.head);
}

#[test]
fn an_upgrade_becomes_a_tunnel_with_frames_and_a_close_handshake() {
    let up = WsUpstream::start(WsBehaviour::Echo);
    let (metrics, metrics_json) = metrics_addr();
    let pair = PairBuilder::new(up.addr())
        .name("wsc_echo")
        .client("metrics.listen", &metrics_json)
        .client("http.access_log", "true")
        .start();
    let mut c = WsClient::upgrade(pair.http_addr, &[("Origin", "http://chat.example")]);
    assert_switched(&c);
    let heads = up.heads();
    assert_eq!(heads.len(), 1, "{heads:?}");
    let h = &heads[0];
    assert!(h.starts_with("GET /chat HTTP/1.1\r\n"), "{h}");
    assert_eq!(head_field(h, "sec-websocket-key"), Some(KEY), "{h}");
    assert_eq!(head_field(h, "origin"), Some("http://chat.example"), "{h}");

    // Real frames, echoed as they are (framing is opaque to ptproxy).
    for (opcode, payload) in [
        (TEXT, &b"hello"[..]),
        (BINARY, &[0u8, 1, 2, 255][..]),
        (PING, b"are you there"),
        (PONG, b"yes"),
    ] {
        let f = frame(opcode, payload);
        c.send(&f);
        assert_eq!(c.recv(f.len(), WAIT), f, "opcode {opcode}");
    }
    assert_eq!(metric(metrics, "ptproxy_tunnels_open"), Some(1.0));

    // The close handshake both ways, then FIN both ways: a clean end.
    let close = frame(CLOSE, &[0x03, 0xe8]); // 1000, normal closure
    c.send(&close);
    assert_eq!(c.recv(close.len(), WAIT), close);
    c.finish();
    let rest = c
        .read_to_end()
        .expect("a clean end after the close handshake");
    assert!(rest.is_empty(), "{rest:?}");
    assert!(up.saw_fin(1), "the caller's FIN must reach the upstream");
    let closed = crate::harness::poll_until(WAIT, Duration::from_millis(20), || {
        (metric(metrics, "ptproxy_tunnels_open") == Some(0.0)).then_some(())
    });
    assert!(closed.is_some(), "the tunnel must be counted closed");
    pair.client.expect_log("tunnel=websocket", WAIT);
}

#[test]
fn one_mib_each_way_is_byte_exact() {
    let up = WsUpstream::start(WsBehaviour::Echo);
    let pair = PairBuilder::new(up.addr()).name("wsc_bulk").start();
    let mut c = WsClient::upgrade(pair.http_addr, &[]);
    assert_switched(&c);
    let big = pattern::pattern(1 << 20);
    let echoed = c.send_while_receiving(big.clone(), big.len(), Duration::from_secs(60));
    assert!(echoed == big, "the echo differs from what was sent");
    c.finish();
    assert_eq!(c.read_to_end().expect("clean end").len(), 0);
}

#[test]
fn the_subprotocol_passes_both_ways() {
    let up = WsUpstream::start(WsBehaviour::Echo);
    let pair = PairBuilder::new(up.addr()).name("wsc_subprotocol").start();
    let c = WsClient::upgrade(
        pair.http_addr,
        &[("Sec-WebSocket-Protocol", "chat, superchat")],
    );
    assert_switched(&c);
    assert_eq!(
        c.field("sec-websocket-protocol"),
        Some("chat"),
        "{}",
        c.head
    );
    let heads = up.heads();
    assert_eq!(
        head_field(&heads[0], "sec-websocket-protocol"),
        Some("chat, superchat")
    );
}

#[test]
fn a_refused_upgrade_is_relayed_as_is() {
    let up = WsUpstream::start(WsBehaviour::Refuse(403));
    let pair = PairBuilder::new(up.addr()).name("wsc_refused").start();
    let mut c = WsClient::upgrade(pair.http_addr, &[]);
    assert_eq!(c.status(), 403, "{}", c.head);
    assert!(c.field("proxy-status").is_none(), "{}", c.head);
    let body = c.read_to_end().expect("the answer ends cleanly");
    assert_eq!(body, b"upgrade refused by the test upstream\n");
}

#[test]
fn a_wrong_accept_is_a_502_and_the_connection_closes() {
    let up = WsUpstream::start(WsBehaviour::WrongAccept);
    let pair = PairBuilder::new(up.addr()).name("wsc_bad_accept").start();
    let mut c = WsClient::upgrade(pair.http_addr, &[]);
    assert_eq!(c.status(), 502, "{}", c.head);
    assert!(
        c.field("proxy-status")
            .is_some_and(|v| v.contains("Sec-WebSocket-Accept")),
        "{}",
        c.head
    );
    // The connection ends after the answer (clean or reset, but no tunnel).
    let _ = c.read_to_end();
}

#[test]
fn broken_handshakes_are_400_and_reach_no_upstream() {
    let up = WsUpstream::start(WsBehaviour::Echo);
    let pair = PairBuilder::new(up.addr())
        .name("wsc_bad_handshake")
        .start();
    for (what, request) in [
        (
            "bad key",
            ws_client::upgrade_request("/chat", "c2hvcnQ=", &[]),
        ),
        (
            "POST",
            ws_client::upgrade_request("/chat", KEY, &[]).replacen("GET", "POST", 1),
        ),
    ] {
        let c = WsClient::send_raw(pair.http_addr, &request);
        assert_eq!(c.status(), 400, "{what}: {}", c.head);
    }
    assert_eq!(up.connection_count(), 0, "{:?}", up.heads());
}

#[test]
fn an_upstream_dying_mid_tunnel_resets_the_callers_connection() {
    let up = WsUpstream::start(WsBehaviour::ResetAfter(10));
    let pair = PairBuilder::new(up.addr())
        .name("wsc_upstream_reset")
        .start();
    let mut c = WsClient::upgrade(pair.http_addr, &[]);
    assert_switched(&c);
    c.send(b"0123456789");
    c.assert_reset();
}

#[test]
fn twenty_websockets_at_once_each_carry_their_own_bytes() {
    let up = WsUpstream::start(WsBehaviour::Echo);
    let pair = PairBuilder::new(up.addr()).name("wsc_many").start();
    let mut clients: Vec<WsClient> = (0..20)
        .map(|_| WsClient::upgrade(pair.http_addr, &[]))
        .collect();
    for c in &clients {
        assert_switched(c);
    }
    let message =
        |i: usize, round: usize| frame(TEXT, format!("socket {i} round {round}").as_bytes());
    // Interleaved: every socket sends its round before any reads its echo.
    for round in 0..3 {
        for (i, c) in clients.iter_mut().enumerate() {
            c.send(&message(i, round));
        }
    }
    for (i, c) in clients.iter_mut().enumerate() {
        let want: Vec<u8> = (0..3).flat_map(|r| message(i, r)).collect();
        assert_eq!(c.recv(want.len(), WAIT), want, "socket {i}");
        c.finish();
        assert_eq!(c.read_to_end().expect("clean end").len(), 0, "socket {i}");
    }
    assert_eq!(
        up.connection_count(),
        20,
        "one upstream connection per socket"
    );
}

#[test]
fn a_silent_tunnel_is_reset_at_the_clients_idle_timeout() {
    let up = WsUpstream::start(WsBehaviour::Echo);
    let pair = PairBuilder::new(up.addr())
        .name("wsc_idle")
        .client("http.tunnel_idle_timeout_ms", "3000")
        .start();
    let mut c = WsClient::upgrade(pair.http_addr, &[]);
    assert_switched(&c);
    c.send(b"still here");
    assert_eq!(
        c.recv(10, WAIT),
        b"still here",
        "bytes flowed before the silence"
    );
    c.assert_reset();
    pair.client
        .expect_log("the tunnel moved no byte for 3000 ms", WAIT);
    assert!(
        crate::harness::poll_until(WAIT, Duration::from_millis(20), || up
            .saw_reset(1)
            .then_some(()))
        .is_some(),
        "the upstream connection is reset too (through the stream's reset)"
    );
}
