//! WebSocket over HTTP/3 extended CONNECT (RFC 9220), server side: a bare HTTP/3 client
//! opens extended CONNECT streams against the ptproxy server, whose upstream speaks WebSocket
//! (the harness's [`WsUpstream`]). Malformed CONNECT forms are reset with H3_MESSAGE_ERROR and
//! reach no upstream; an accepted upgrade is a 200 whose stream carries bytes both ways,
//! FIN for FIN; a refused one is relayed; an upstream reset resets the stream.

use std::time::Duration;

use crate::harness::admin::{metric, metrics_addr};
use crate::harness::h3_client::{H3Client, H3Outcome};
use crate::harness::pattern;
use crate::harness::ws_upstream::{head_field, WsBehaviour, WsUpstream};
use crate::harness::PairBuilder;

const H3_MESSAGE_ERROR: u64 = 0x10e;
const WAIT: Duration = Duration::from_secs(15);
/// RFC 6455 §1.3's example key and the accept it calls for.
const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
const ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

/// An extended CONNECT for WebSocket on `/chat`, plus `extra` fields.
fn ws_connect(extra: &[(&'static str, &'static str)]) -> Vec<(&'static str, &'static str)> {
    let mut v = vec![
        (":method", "CONNECT"),
        (":protocol", "websocket"),
        (":scheme", "http"),
        (":authority", "chat.example"),
        (":path", "/chat"),
    ];
    v.extend_from_slice(extra);
    v
}

fn without(
    fields: Vec<(&'static str, &'static str)>,
    name: &str,
) -> Vec<(&'static str, &'static str)> {
    fields.into_iter().filter(|(n, _)| *n != name).collect()
}

fn replaced(
    fields: Vec<(&'static str, &'static str)>,
    name: &str,
    value: &'static str,
) -> Vec<(&'static str, &'static str)> {
    fields
        .into_iter()
        .map(|(n, v)| if n == name { (n, value) } else { (n, v) })
        .collect()
}

#[test]
fn malformed_extended_connects_are_reset_and_reach_no_upstream() {
    let up = WsUpstream::start(WsBehaviour::Echo);
    let pair = PairBuilder::new(up.addr()).name("ws_malformed").start();
    let mut c = H3Client::connect(pair.quic_addr);
    let ws = || ws_connect(&[("sec-websocket-key", KEY)]);
    let cases: Vec<(&str, Vec<(&str, &str)>)> = vec![
        (
            "CONNECT with :path but no :protocol",
            without(ws(), ":protocol"),
        ),
        (":protocol on GET", replaced(ws(), ":method", "GET")),
        ("no :scheme", without(ws(), ":scheme")),
        ("no :path", without(ws(), ":path")),
        ("no :authority", without(ws(), ":authority")),
        (":scheme ftp", replaced(ws(), ":scheme", "ftp")),
    ];
    for (what, fields) in &cases {
        let s = c.open(fields);
        match c.outcome(s, WAIT) {
            H3Outcome::Reset(code) => assert_eq!(code, H3_MESSAGE_ERROR, "{what}"),
            other => panic!("{what}: {other:?}"),
        }
    }
    assert_eq!(
        up.connection_count(),
        0,
        "nothing malformed may reach the upstream: {:?}",
        up.heads()
    );
    // A well-formed one still works on the same session.
    let s = c.open(&ws());
    let seen = c.wait_for(s, WAIT, |s| s.status.is_some());
    assert_eq!(seen.status, Some(200), "{seen:?}");
    assert_eq!(up.connection_count(), 1);
}

#[test]
fn an_accepted_upgrade_tunnels_bytes_both_ways_fin_for_fin() {
    let up = WsUpstream::start(WsBehaviour::Echo);
    let (metrics, metrics_json) = metrics_addr();
    let pair = PairBuilder::new(up.addr())
        .name("ws_echo")
        .server("metrics.listen", &metrics_json)
        .start();
    let mut c = H3Client::connect(pair.quic_addr);
    let s = c.open(&ws_connect(&[
        ("sec-websocket-key", KEY),
        ("sec-websocket-version", "13"),
        ("sec-websocket-protocol", "chat, superchat"),
        ("origin", "http://chat.example"),
    ]));
    let head = c.wait_for(s, WAIT, |s| s.status.is_some());
    assert_eq!(head.status, Some(200), "{head:?}");
    assert_eq!(head.field("sec-websocket-accept"), Some(ACCEPT), "{head:?}");
    assert_eq!(
        head.field("sec-websocket-protocol"),
        Some("chat"),
        "{head:?}"
    );
    assert!(
        head.field("upgrade").is_none() && head.field("connection").is_none(),
        "hop-by-hop fields must not cross: {head:?}"
    );

    // The upgrade request the upstream got.
    let heads = up.heads();
    assert_eq!(heads.len(), 1, "{heads:?}");
    let h = &heads[0];
    assert!(h.starts_with("GET /chat HTTP/1.1\r\n"), "{h}");
    assert_eq!(head_field(h, "host"), Some("chat.example"), "{h}");
    assert_eq!(head_field(h, "upgrade"), Some("websocket"), "{h}");
    assert_eq!(head_field(h, "connection"), Some("Upgrade"), "{h}");
    assert_eq!(head_field(h, "sec-websocket-version"), Some("13"), "{h}");
    assert_eq!(head_field(h, "sec-websocket-key"), Some(KEY), "{h}");
    assert_eq!(
        head_field(h, "sec-websocket-protocol"),
        Some("chat, superchat"),
        "{h}"
    );
    assert_eq!(head_field(h, "origin"), Some("http://chat.example"), "{h}");

    // Bytes both ways, byte-exact: a small message, then 1 MiB in pieces.
    c.send_data(s, b"hello", false, WAIT);
    let seen = c.wait_for(s, WAIT, |s| s.data.len() >= 5);
    assert_eq!(seen.data, b"hello");
    let big = pattern::pattern(1 << 20);
    for piece in big.chunks(100_000) {
        c.send_data(s, piece, false, WAIT);
    }
    let total = 5 + big.len();
    let seen = c.wait_for(s, Duration::from_secs(30), |s| s.data.len() >= total);
    assert_eq!(seen.data.len(), total, "no more and no less than was sent");
    assert!(
        seen.data[5..] == big[..],
        "the echo differs from what was sent"
    );
    assert_eq!(
        metric(metrics, "ptproxy_tunnels_open"),
        Some(1.0),
        "one tunnel open"
    );

    // Our FIN reaches the upstream as a FIN; its FIN comes back as the stream's end.
    c.send_data(s, b"", true, WAIT);
    let end = c.wait_for(s, WAIT, |_| false);
    assert!(end.finished && end.reset.is_none(), "{end:?}");
    assert!(up.saw_fin(1), "the upstream must see the half-close");
    assert_eq!(up.connection_count(), 1, "one fresh connection");
    let closed = crate::harness::poll_until(WAIT, Duration::from_millis(20), || {
        (metric(metrics, "ptproxy_tunnels_open") == Some(0.0)).then_some(())
    });
    assert!(closed.is_some(), "the tunnel must be counted closed");
    assert_eq!(
        metric(metrics, "ptproxy_tunnel_bytes_to_upstream_total"),
        Some(total as f64)
    );
    assert_eq!(
        metric(metrics, "ptproxy_tunnel_bytes_from_upstream_total"),
        Some(total as f64)
    );
    pair.server.expect_log("tunnel=websocket", WAIT);
}

#[test]
fn an_upgrade_without_a_key_gets_one_from_the_server() {
    let up = WsUpstream::start(WsBehaviour::Echo);
    let pair = PairBuilder::new(up.addr()).name("ws_no_key").start();
    let mut c = H3Client::connect(pair.quic_addr);
    let s = c.open(&ws_connect(&[]));
    let head = c.wait_for(s, WAIT, |s| s.status.is_some());
    assert_eq!(head.status, Some(200), "{head:?}");
    assert_eq!(
        head.field("sec-websocket-accept"),
        None,
        "the accept of a key the caller did not send is not relayed"
    );
    let heads = up.heads();
    let key = head_field(&heads[0], "sec-websocket-key").unwrap_or("");
    assert_eq!(key.len(), 24, "a 16-byte base64 key: {key:?}");
    c.send_data(s, b"ping", true, WAIT);
    let end = c.wait_for(s, WAIT, |_| false);
    assert_eq!(end.data, b"ping");
    assert!(end.finished, "{end:?}");
}

#[test]
fn a_refused_upgrade_is_relayed_as_is() {
    let up = WsUpstream::start(WsBehaviour::Refuse(403));
    let pair = PairBuilder::new(up.addr()).name("ws_refused").start();
    let mut c = H3Client::connect(pair.quic_addr);
    let s = c.open(&ws_connect(&[("sec-websocket-key", KEY)]));
    let end = c.wait_for(s, WAIT, |_| false);
    assert_eq!(end.status, Some(403), "{end:?}");
    assert!(end.finished && end.reset.is_none(), "{end:?}");
    assert_eq!(end.data, b"upgrade refused by the test upstream\n");
    assert!(
        end.field("proxy-status").is_none(),
        "the upstream's own answer, not ours: {end:?}"
    );
}

/// An upstream answering the upgrade with a plain 2xx did not switch protocols: passed on, it
/// would read as "tunnel open" (RFC 9220), so the server answers 502 instead.
#[test]
fn a_plain_2xx_to_an_upgrade_is_a_502() {
    let up = WsUpstream::start(WsBehaviour::Refuse(200));
    let pair = PairBuilder::new(up.addr()).name("ws_plain_200").start();
    let mut c = H3Client::connect(pair.quic_addr);
    let s = c.open(&ws_connect(&[("sec-websocket-key", KEY)]));
    let end = c.wait_for(s, WAIT, |_| false);
    assert_eq!(end.status, Some(502), "{end:?}");
    let why = end.field("proxy-status").unwrap_or_default();
    assert!(why.contains("101 Switching Protocols"), "{end:?}");
}

#[test]
fn an_upstream_dying_mid_tunnel_resets_the_stream() {
    let up = WsUpstream::start(WsBehaviour::ResetAfter(10));
    let pair = PairBuilder::new(up.addr())
        .name("ws_upstream_reset")
        .start();
    let mut c = H3Client::connect(pair.quic_addr);
    let s = c.open(&ws_connect(&[("sec-websocket-key", KEY)]));
    let head = c.wait_for(s, WAIT, |s| s.status.is_some());
    assert_eq!(head.status, Some(200), "{head:?}");
    c.send_data(s, b"0123456789", false, WAIT);
    let end = c.wait_for(s, WAIT, |_| false);
    assert!(
        end.reset.is_some() && !end.finished,
        "an upstream reset must never look like a clean end: {end:?}"
    );
}

#[test]
fn an_idle_tunnel_is_reset_after_the_idle_timeout() {
    let up = WsUpstream::start(WsBehaviour::Echo);
    let pair = PairBuilder::new(up.addr())
        .name("ws_idle")
        .server("http.tunnel_idle_timeout_ms", "3000")
        .start();
    let mut c = H3Client::connect(pair.quic_addr);
    let s = c.open(&ws_connect(&[("sec-websocket-key", KEY)]));
    let head = c.wait_for(s, WAIT, |s| s.status.is_some());
    assert_eq!(head.status, Some(200), "{head:?}");
    c.send_data(s, b"still here", false, WAIT);
    let end = c.wait_for(s, WAIT, |_| false);
    assert_eq!(end.data, b"still here", "bytes flowed before the silence");
    assert!(end.reset.is_some(), "{end:?}");
    pair.server
        .expect_log("the tunnel moved no byte for 3000 ms", WAIT);
}

#[test]
fn a_stream_reset_mid_tunnel_resets_the_upstream_connection() {
    let up = WsUpstream::start(WsBehaviour::Echo);
    let pair = PairBuilder::new(up.addr()).name("ws_caller_reset").start();
    let mut c = H3Client::connect(pair.quic_addr);
    let s = c.open(&ws_connect(&[("sec-websocket-key", KEY)]));
    c.send_data(s, b"abc", false, WAIT);
    let seen = c.wait_for(s, WAIT, |s| s.data.len() >= 3);
    assert_eq!(
        (seen.status, seen.data.as_slice()),
        (Some(200), &b"abc"[..])
    );
    c.reset_stream(s, 0x10c); // H3_REQUEST_CANCELLED
    let reset = crate::harness::poll_until(WAIT, Duration::from_millis(20), || {
        c.idle(Duration::from_millis(20));
        (up.saw_reset(1) || up.saw_fin(1)).then_some(())
    });
    assert!(reset.is_some(), "the upstream connection was not ended");
    assert!(
        up.saw_reset(1) && !up.saw_fin(1),
        "an aborted tunnel must reach the upstream as a reset, never a FIN"
    );
}

#[test]
fn twenty_tunnels_at_once_each_carry_their_own_bytes() {
    let up = WsUpstream::start(WsBehaviour::Echo);
    let pair = PairBuilder::new(up.addr()).name("ws_many").start();
    let mut c = H3Client::connect(pair.quic_addr);
    let streams: Vec<u64> = (0..20)
        .map(|_| c.open(&ws_connect(&[("sec-websocket-key", KEY)])))
        .collect();
    let message = |i: usize, round: usize| format!("tunnel {i} round {round};").into_bytes();
    // Interleaved: every tunnel sends its round before any reads its echo.
    for round in 0..3 {
        for (i, &s) in streams.iter().enumerate() {
            c.send_data(s, &message(i, round), round == 2, WAIT);
        }
    }
    for (i, &s) in streams.iter().enumerate() {
        let end = c.wait_for(s, WAIT, |_| false);
        let want: Vec<u8> = (0..3).flat_map(|r| message(i, r)).collect();
        assert_eq!(end.status, Some(200), "tunnel {i}: {end:?}");
        assert_eq!(end.data, want, "tunnel {i}");
        assert!(end.finished, "tunnel {i}: {end:?}");
    }
    assert_eq!(up.connection_count(), 20, "one fresh connection per tunnel");
}
