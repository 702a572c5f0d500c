//! Forwarding fields (`http.forwarded`, `http.via`) whose constant parts the server end writes: the
//! upstream gets exactly the fields the client end used to send, whichever end wrote them
//! (`bridge::headers::forwarding`); an older server end gets every field from the client.

use crate::harness::h3_server::BareH3Server;
use crate::harness::pair::{LOG_SESSION_UP, READY_TIMEOUT};
use crate::harness::{PairBuilder, Upstream};

/// The upstream's view of a raw request: the `/headers` answer, one "name: value" per line,
/// lower-cased names.
fn upstream_fields(raw: &[u8], pair: &crate::harness::Pair) -> Vec<(String, String)> {
    let mut c = pair.conn();
    c.send(raw).expect("request sent");
    let r = c.read_response("GET").expect("a response");
    assert_eq!(r.status(), 200, "{r}");
    r.body_str()
        .lines()
        .filter_map(|l| l.split_once(": "))
        .map(|(n, v)| (n.to_ascii_lowercase(), v.to_string()))
        .collect()
}

fn values<'a>(fields: &'a [(String, String)], name: &str) -> Vec<&'a str> {
    fields
        .iter()
        .filter(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
        .collect()
}

#[test]
fn the_upstream_gets_the_same_forwarding_fields_whichever_end_writes_them() {
    let up = Upstream::start();
    let pair = PairBuilder::new(up.addr())
        .name("forwarding_completed")
        .client("http.x_forwarded_for", "true")
        .start();

    let f = upstream_fields(
        b"GET /headers HTTP/1.1\r\nHost: e2e.test\r\nVia: 1.0 proxy-a\r\nForwarded: for=192.0.2.7;proto=https\r\n\r\n",
        &pair,
    );
    assert_eq!(values(&f, "via"), ["1.0 proxy-a", "1.1 ptproxy"], "{f:?}");
    assert_eq!(
        values(&f, "forwarded"),
        ["for=192.0.2.7;proto=https", "for=127.0.0.1;proto=http"],
        "{f:?}"
    );
    assert_eq!(values(&f, "x-forwarded-for"), ["127.0.0.1"], "{f:?}");
    assert!(values(&f, "ptproxy-forwarding").is_empty(), "{f:?}");

    // An HTTP/1.0 caller's fields say 1.0: the client sends them complete.
    let f = upstream_fields(b"GET /headers HTTP/1.0\r\nHost: e2e.test\r\n\r\n", &pair);
    assert_eq!(values(&f, "via"), ["1.0 ptproxy"], "{f:?}");
    assert_eq!(
        values(&f, "forwarded"),
        ["for=127.0.0.1;proto=http"],
        "{f:?}"
    );

    // A caller's copy of the mark cannot stop the server end from writing its part.
    let f = upstream_fields(
        b"GET /headers HTTP/1.1\r\nHost: e2e.test\r\nptproxy-forwarding: complete\r\n\r\n",
        &pair,
    );
    assert_eq!(values(&f, "via"), ["1.1 ptproxy"], "{f:?}");
    assert_eq!(
        values(&f, "forwarded"),
        ["for=127.0.0.1;proto=http"],
        "{f:?}"
    );
    assert!(values(&f, "ptproxy-forwarding").is_empty(), "{f:?}");
}

/// A server end that announces nothing (an older ptproxy) gets every field from the client,
/// with no mark; the ptproxy server end gets only the caller's address of the client's own.
#[test]
fn an_older_server_end_gets_every_field_from_the_client() {
    let bare = BareH3Server::start();
    let pair = PairBuilder::new(crate::harness::closed_tcp_addr())
        .name("forwarding_older_server")
        .start_server(false)
        .client("peer.address", &format!("\"{}\"", bare.addr()))
        .start();
    pair.client.expect_log(LOG_SESSION_UP, READY_TIMEOUT);
    let r = pair.get("/anything");
    assert_eq!(r.status(), 200, "{r}");
    let requests = bare.requests();
    let f = requests.last().expect("the bare server got the request");
    assert_eq!(values(f, "via"), ["1.1 ptproxy"], "{f:?}");
    assert_eq!(
        values(f, "forwarded"),
        ["for=127.0.0.1;proto=http"],
        "{f:?}"
    );
    assert!(values(f, "ptproxy-forwarding").is_empty(), "{f:?}");
}
