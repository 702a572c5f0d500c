//! Response framing towards the HTTP/1.x client.

use crate::harness::http::{Framing, HttpConn};
use crate::harness::upstream::{CHUNKED_BODY, CLOSE_BODY};
use crate::harness::{PairBuilder, Upstream};
use std::time::Duration;

#[test]
fn chunked_upstream_response_arrives_complete_on_http11() {
    let up = Upstream::start();
    let pair = PairBuilder::new(up.addr()).name("resp_chunked").start();
    let mut c = pair.conn();
    for _ in 0..2 {
        let r = c.get("/chunked").expect("GET /chunked");
        assert_eq!(r.status(), 200, "{r}");
        assert!(
            matches!(r.framing(), Framing::Chunked | Framing::Length(_)),
            "{r}"
        );
        assert_eq!(r.body_str(), CHUNKED_BODY);
    }
}

#[test]
fn close_delimited_upstream_response_arrives_framed_on_http11() {
    let up = Upstream::start();
    let pair = PairBuilder::new(up.addr()).name("resp_close").start();
    let mut c = pair.conn();
    let r = c.get("/close").expect("GET /close");
    assert_eq!(r.status(), 200, "{r}");
    assert_eq!(r.body_str(), CLOSE_BODY, "{r}");
    assert!(
        matches!(r.framing(), Framing::Chunked | Framing::Length(_)),
        "expected chunked or Content-Length towards the HTTP/1.1 client: {r}"
    );
    // explicit framing means the client connection stays usable
    if !r.head.closes() {
        let r2 = c
            .get("/hello")
            .expect("request after /close on the same connection");
        assert_eq!(r2.body, b"hello", "{r2}");
    }
}

#[test]
fn http10_client_gets_readable_bodies() {
    let up = Upstream::start();
    let pair = PairBuilder::new(up.addr()).name("http10").start();
    for (path, want) in [
        ("/chunked", CHUNKED_BODY),
        ("/close", CLOSE_BODY),
        ("/hello", "hello"),
    ] {
        let mut c = HttpConn::connect(pair.http_addr).unwrap();
        c.set_timeout(Duration::from_secs(10));
        c.send(format!("GET {path} HTTP/1.0\r\nHost: e2e.test\r\n\r\n").as_bytes())
            .unwrap();
        let r = c
            .read_response("GET")
            .unwrap_or_else(|e| panic!("HTTP/1.0 GET {path}: {e}"));
        assert_eq!(r.status(), 200, "{path}: {r}");
        assert!(
            matches!(r.framing(), Framing::Close | Framing::Length(_)),
            "{path}: HTTP/1.0 client must not get chunked: {r}"
        );
        assert_eq!(r.body_str(), want, "{path}: {r}");
    }
}

#[test]
fn head_204_and_304_responses_carry_no_body() {
    let up = Upstream::start();
    let pair = PairBuilder::new(up.addr()).name("nobody").start();
    let mut c = pair.conn();
    c.set_timeout(Duration::from_secs(10));
    // after each body-less response the next response must parse cleanly on the
    // same connection: any stray body byte would corrupt it
    let r = c.request("HEAD", "/hello", &[], None).expect("HEAD /hello");
    assert_eq!(r.status(), 200, "{r}");
    let r = c.get("/hello").expect("GET after HEAD");
    assert_eq!(r.body, b"hello", "{r}");

    let r = c
        .request("HEAD", "/bytes/100000", &[], None)
        .expect("HEAD /bytes");
    assert_eq!(r.status(), 200, "{r}");
    let r = c.get("/hello").expect("GET after HEAD /bytes");
    assert_eq!(r.body, b"hello", "{r}");

    let r = c.get("/status/204").expect("GET /status/204");
    assert_eq!(r.status(), 204, "{r}");
    assert!(
        r.header("transfer-encoding").is_none(),
        "204 with Transfer-Encoding: {r}"
    );
    let r = c.get("/hello").expect("GET after 204");
    assert_eq!(r.body, b"hello", "{r}");

    let r = c.get("/status/304").expect("GET /status/304");
    assert_eq!(r.status(), 304, "{r}");
    // (Transfer-Encoding is allowed on a 304, but no body may follow)
    let r = c.get("/hello").expect("GET after 304");
    assert_eq!(r.body, b"hello", "{r}");
    // nothing else pending on the connection
    assert!(
        !matches!(
            c.io.poll_readable(Duration::from_millis(200)),
            Ok(crate::harness::http::Readable::Data)
        ),
        "unexpected extra bytes"
    );
}
