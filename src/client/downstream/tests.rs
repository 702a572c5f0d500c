//! A downstream connection run without sockets or a session: an in-memory client connection,
//! an in-memory session, and a manual clock. Each test replays one timer or bound hazard.

use std::time::Duration;

use quiche::h3::{Header as H3Header, NameValue};

use super::*;
use crate::bridge::stream::OpenRefused;
use crate::testing::client::ClientRig;
use crate::testing::FromStart;

const SECOND: Duration = Duration::from_secs(1);

type World = FromStart<ClientRig>;

/// A downstream whose client holds up to 256 KiB of output, at t0.
fn world() -> World {
    FromStart::new(|t0| ClientRig::new(t0, 256 * 1024))
}

#[test]
fn without_a_session_a_request_is_answered_503_at_the_session_wait() {
    let mut w = world();
    w.link.up = false;
    w.send(b"GET /a HTTP/1.1\r\nHost: b.test\r\n\r\n");
    w.advance_to(2 * SECOND - Duration::from_millis(1));
    assert!(w.down.tcp.output.is_empty(), "{}", w.down.tcp.text());
    w.advance_to(2 * SECOND);
    let text = w.down.tcp.text();
    assert!(text.starts_with("HTTP/1.1 503 "), "{text}");
    assert!(text.contains("test (down)"), "names why: {text}");
}

#[test]
fn a_session_out_of_streams_is_a_503_that_says_so() {
    let mut w = world();
    w.link.session.refuse = Some(OpenRefused::Streams);
    w.send(b"GET /a HTTP/1.1\r\nHost: b.test\r\n\r\n");
    w.advance_to(2 * SECOND);
    let text = w.down.tcp.text();
    assert!(text.starts_with("HTTP/1.1 503 "), "{text}");
    assert!(text.contains("stream"), "{text}");
}

#[test]
fn a_request_body_that_stops_arriving_is_a_408_at_the_body_timeout() {
    let mut w = world();
    w.send(b"POST /a HTTP/1.1\r\nHost: b.test\r\nContent-Length: 10\r\n\r\nabc");
    assert_eq!(w.link.session.opened.len(), 1, "the request went out");
    w.advance_to(2 * SECOND);
    w.send(b"de");
    // The clock restarts with each byte: 3 s from the last one.
    w.advance_to(5 * SECOND - Duration::from_millis(1));
    assert!(w.down.tcp.output.is_empty());
    w.advance_to(5 * SECOND);
    let text = w.down.tcp.text();
    assert!(text.starts_with("HTTP/1.1 408 "), "{text}");
    assert_eq!(w.link.session.body[&0], b"abcde");
}

#[test]
fn keep_alive_and_head_timeouts_each_apply_in_their_phase() {
    let mut w = world();
    w.send(b"GET /a HTTP/1.1\r\nHost: b.test\r\n\r\n");
    w.respond("200", b"ok");
    assert!(w.down.tcp.text().ends_with("ok"));
    assert!(w.down.is_idle());
    // Idle: the keep-alive timeout (10 s) applies from the response's end...
    w.advance_to(9 * SECOND);
    assert!(w.down.is_idle());
    // ...until a head starts: then the head timeout (5 s from its first byte).
    w.send(b"GET /b HTT");
    w.advance_to(14 * SECOND - Duration::from_millis(1));
    assert!(!w.down.tcp.text().contains("408"));
    w.advance_to(14 * SECOND);
    assert!(
        w.down.tcp.text().contains("HTTP/1.1 408 "),
        "{}",
        w.down.tcp.text()
    );
}

#[test]
fn an_idle_connection_closes_at_the_keep_alive_timeout() {
    let mut w = world();
    w.send(b"GET /a HTTP/1.1\r\nHost: b.test\r\n\r\n");
    w.respond("204", b"");
    w.advance_to(10 * SECOND - Duration::from_millis(1));
    assert!(!w.down.is_done());
    w.advance_to(10 * SECOND);
    assert!(w.down.is_done());
}

#[test]
fn endless_interim_responses_to_a_client_that_does_not_read_stay_bounded() {
    let mut w = world();
    w.down.tcp.cap = 4096;
    w.send(b"GET /a HTTP/1.1\r\nHost: b.test\r\n\r\n");
    let hint = vec![
        H3Header::new(b":status", b"103"),
        H3Header::new(b"link", "</style.css>; rel=preload".repeat(8).as_bytes()),
    ];
    for _ in 0..10_000 {
        w.with(|d, ctx| d.on_headers(ctx, &hint, true));
    }
    let out = w.down.tcp.output.len();
    assert!(
        out <= 4096,
        "{out} bytes held for a client that does not read"
    );
    let relayed = w.down.tcp.text().matches("HTTP/1.1 103").count();
    assert!((1..=16).contains(&relayed), "{relayed} relayed");
    w.respond("200", b"ok");
}

#[test]
fn a_handled_deadline_is_never_due_again() {
    for session_up in [true, false] {
        let mut w = world();
        w.link.up = session_up;
        w.send(b"POST /a HTTP/1.1\r\nHost: b.test\r\nContent-Length: 5\r\n\r\nab");
        for ms in (0..30_000).step_by(100) {
            w.advance_to(Duration::from_millis(ms));
            if w.down.is_done() {
                break;
            }
            let next = w.down.timers.next().map(|d| d - w.t0);
            assert!(
                next.is_none_or(|d| d > Duration::from_millis(ms)),
                "due again at {ms} ms"
            );
        }
        // Answered (408 or 503), closed after the linger: nothing is left waiting.
        let text = w.down.tcp.text();
        assert!(
            text.starts_with("HTTP/1.1 408") || text.starts_with("HTTP/1.1 503"),
            "{text}"
        );
        assert!(w.down.is_done(), "session up: {session_up}");
    }
}

#[test]
fn a_closing_connection_whose_client_stops_reading_ends_at_the_keep_alive_timeout() {
    let mut w = world();
    w.down.tcp.cap = 1024;
    // HTTP/1.0: the connection closes after the response, whose end the client never takes.
    w.send(b"GET /a HTTP/1.0\r\nHost: b.test\r\n\r\n");
    w.respond("200", &[b'x'; 500]);
    assert!(
        matches!(w.down.phase, Phase::Closing),
        "closing with output held"
    );
    // The keep-alive timeout here is 10 s.
    w.advance_to(9 * SECOND);
    assert!(!w.down.is_done(), "the client may still take it");
    w.advance_to(10 * SECOND);
    assert!(
        w.down.is_done(),
        "held output does not keep a connection forever"
    );
}

/// The rig with a second peer (link 1), down at first.
fn two_peers() -> World {
    let mut w = world();
    w.link.spare = Some(crate::testing::client::MemPeer::default());
    w
}

#[test]
fn a_request_waiting_for_a_session_takes_the_peer_that_comes_up_first() {
    let mut w = two_peers();
    w.link.up = false;
    w.send(b"GET /a HTTP/1.1\r\nHost: b.test\r\n\r\n");
    assert_eq!(w.link.session.opened.len(), 0);
    w.advance_to(SECOND);
    if let Some(p) = w.link.spare.as_mut() {
        p.up = true;
    }
    w.drive();
    let spare = w.link.spare.as_ref().map_or(0, |p| p.session.opened.len());
    assert_eq!(
        (w.link.session.opened.len(), spare),
        (0, 1),
        "sent to the second peer"
    );
    w.respond("200", b"ok");
    assert!(
        w.down.tcp.text().starts_with("HTTP/1.1 200 "),
        "{}",
        w.down.tcp.text()
    );
}

#[test]
fn a_get_on_a_silent_peer_moves_once_to_the_other_and_a_post_stays() {
    let mut w = two_peers();
    w.send(b"GET /a HTTP/1.1\r\nHost: b.test\r\n\r\n");
    assert_eq!(w.link.session.opened.len(), 1, "the first peer took it");
    // The first peer goes silent while the second one is up.
    w.link.suspect = true;
    if let Some(p) = w.link.spare.as_mut() {
        p.up = true;
    }
    w.with(|d, ctx| d.move_off(ctx, 0));
    let spare = w.link.spare.as_ref().map_or(0, |p| p.session.opened.len());
    assert_eq!(spare, 1, "the GET went out again on the second peer");
    assert!(
        w.streams.refs().iter().all(|s| s.link == 1),
        "only its new stream is routed"
    );
    // It was sent twice already: the second peer going silent while the first one answers
    // again leaves it where it is.
    w.link.suspect = false;
    w.with(|d, ctx| d.move_off(ctx, 1));
    assert_eq!(w.link.session.opened.len(), 1, "not sent a third time");
    assert!(w.streams.refs().iter().all(|s| s.link == 1));
    w.respond("200", b"ok");
    let text = w.down.tcp.text();
    assert!(text.starts_with("HTTP/1.1 200 "), "{text}");

    // A POST may have reached the silent peer's upstream: it is never sent twice.
    let mut w = two_peers();
    w.send(b"POST /a HTTP/1.1\r\nHost: b.test\r\nContent-Length: 2\r\n\r\nhi");
    w.link.suspect = true;
    if let Some(p) = w.link.spare.as_mut() {
        p.up = true;
    }
    w.with(|d, ctx| d.move_off(ctx, 0));
    let spare = w.link.spare.as_ref().map_or(0, |p| p.session.opened.len());
    assert_eq!(
        (w.link.session.opened.len(), spare),
        (1, 0),
        "the POST stays on its stream"
    );
}

const UPGRADE: &[u8] = b"GET /chat HTTP/1.1\r\nHost: b.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";

#[test]
fn a_websocket_upgrade_to_a_peer_without_extended_connect_is_a_501() {
    let mut w = world();
    w.link.session.no_extended_connect = true;
    w.send(UPGRADE);
    let text = w.down.tcp.text();
    assert!(text.starts_with("HTTP/1.1 501 "), "{text}");
    assert!(text.contains("Proxy-Status: "), "{text}");
    assert!(text.contains("SETTINGS_ENABLE_CONNECT_PROTOCOL"), "{text}");
    assert!(w.link.session.opened.is_empty(), "no stream for it");
}

#[test]
fn a_tunnel_holds_bytes_until_the_101_then_half_closes_on_the_streams_end() {
    let mut w = world();
    w.down.tcp.reads = usize::MAX;
    w.send(UPGRADE);
    w.send(b"early");
    let (fields, fin) = &w.link.session.opened[0];
    assert!(!fin, "a tunnel's stream stays open");
    let has = |n: &[u8], v: &[u8]| fields.iter().any(|f| f.name() == n && f.value() == v);
    assert!(has(b":method", b"CONNECT") && has(b":protocol", b"websocket"));
    assert!(
        w.link.session.body.is_empty(),
        "no byte before the peer accepts"
    );

    let id = w.stream().unwrap_or(0);
    let ok = [
        H3Header::new(b":status", b"200"),
        H3Header::new(b"sec-websocket-accept", b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="),
    ];
    w.link.session.incoming.insert(id, b"from peer".to_vec());
    w.with(|d, ctx| d.on_headers(ctx, &ok, true));
    let read = String::from_utf8_lossy(&w.down.tcp.read).into_owned();
    assert!(read.starts_with("HTTP/1.1 101 "), "{read}");
    assert!(read.ends_with("\r\n\r\nfrom peer"), "{read}");
    assert_eq!(
        w.link.session.body[&id], b"early",
        "held bytes flow after the 101"
    );
    assert_eq!(w.metrics.tunnels.open, 1);

    // Silence is no stalled body: no 408 long after http.body_timeout_ms.
    w.advance_to(60 * SECOND);
    assert!(matches!(w.down.phase, Phase::Exchange(_)));

    // The stream's end half-closes the caller; its bytes still flow, then its FIN ends it.
    w.with(|d, ctx| d.on_finished(ctx));
    assert!(w.down.tcp.shut && !w.down.tcp.reset);
    w.send(b" late");
    assert_eq!(w.link.session.body[&id], b"early late");
    w.down.tcp.ended = true;
    w.drive();
    assert!(
        !matches!(w.down.phase, Phase::Exchange(_)),
        "the tunnel ended"
    );
    assert_eq!(w.metrics.tunnels.open, 0);
}

#[test]
fn a_tunnel_moving_no_byte_for_the_idle_timeout_is_reset_both_ways() {
    let mut w = world();
    w.down.tcp.reads = usize::MAX;
    w.send(UPGRADE);
    let ok = [
        H3Header::new(b":status", b"200"),
        H3Header::new(b"sec-websocket-accept", b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="),
    ];
    w.with(|d, ctx| d.on_headers(ctx, &ok, true));
    w.advance_to(50 * SECOND);
    w.send(b"still here");
    // 100 s (the rig's http.tunnel_idle_timeout_ms) from the last byte, not from the 101.
    w.advance_to(150 * SECOND - Duration::from_millis(1));
    assert!(matches!(w.down.phase, Phase::Exchange(_)));
    w.advance_to(150 * SECOND);
    assert!(w.down.is_done() && w.down.tcp.reset, "the caller is reset");
    assert!(w.stream().is_none(), "the stream is given up (reset)");
    assert_eq!(w.metrics.tunnels.open, 0);
}

#[test]
fn a_websocket_upgrade_before_the_peers_settings_waits_for_them() {
    let mut w = world();
    w.link.session.settings_pending = true;
    w.send(UPGRADE);
    assert!(
        w.down.tcp.text().is_empty(),
        "no 501 before the SETTINGS came"
    );
    assert!(w.link.session.opened.is_empty(), "no stream yet");
    w.link.session.settings_pending = false;
    w.with(|d, ctx| d.drive(ctx));
    assert_eq!(
        w.link.session.opened.len(),
        1,
        "the extended CONNECT goes out"
    );
    assert!(w.down.tcp.text().is_empty(), "{}", w.down.tcp.text());
}
