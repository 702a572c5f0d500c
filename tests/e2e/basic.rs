//! Basic request forwarding: GET, request bodies, header handling.

use crate::harness::http::{chunked_body, has_token};
use crate::harness::pattern::pattern;
use crate::harness::upstream::ReqFraming;
use crate::harness::{PairBuilder, Upstream};

#[test]
fn get_hello_reaches_upstream_once_with_client_host() {
    let up = Upstream::start();
    let pair = PairBuilder::new(up.addr()).name("get_hello").start();
    let mut c = pair.conn();
    let r = c
        .request(
            "GET",
            "/hello",
            &[
                ("Host", "app.example.test:8080"),
                ("User-Agent", "ptproxy-e2e"),
            ],
            None,
        )
        .expect("GET /hello");
    assert_eq!(r.status(), 200, "{r}");
    assert_eq!(r.body, b"hello", "{r}");

    let reqs = up.requests();
    assert_eq!(
        reqs.len(),
        1,
        "upstream must see exactly one request: {reqs:#?}"
    );
    let q = &reqs[0];
    assert_eq!(
        (q.method.as_str(), q.target.as_str(), q.version.as_str()),
        ("GET", "/hello", "HTTP/1.1")
    );
    assert_eq!(
        q.header_all("host"),
        vec!["app.example.test:8080"],
        "Host must be the client's Host: {:?}",
        q.headers
    );
    assert_eq!(q.header("user-agent"), Some("ptproxy-e2e"));
    assert_eq!(q.body_len, 0);
    assert!(
        q.framing == ReqFraming::None || q.framing == ReqFraming::Length(0),
        "{:?}",
        q.framing
    );

    // the query string is carried verbatim
    let r = c
        .request(
            "GET",
            "/hello?a=1&b=%20x&c",
            &[("Host", "other.test")],
            None,
        )
        .expect("GET with query");
    assert_eq!((r.status(), r.body.as_slice()), (200, &b"hello"[..]), "{r}");
    let reqs = up.requests();
    assert_eq!(reqs.len(), 2);
    assert_eq!(reqs[1].target, "/hello?a=1&b=%20x&c");
    assert_eq!(reqs[1].header_all("host"), vec!["other.test"]);
    assert!(up.errors().is_empty(), "{:?}", up.errors());
}

#[test]
fn post_bodies_with_content_length_and_chunked_arrive_intact() {
    let up = Upstream::start();
    let pair = PairBuilder::new(up.addr()).name("post_bodies").start();
    let mut c = pair.conn();

    // Content-Length body
    let body = pattern(100_000);
    let r = c.post("/echo", &body).expect("POST /echo CL");
    assert_eq!(r.status(), 200, "{r}");
    assert!(
        r.body == body,
        "echoed CL body differs ({} bytes back)",
        r.body.len()
    );
    let q = up.requests().pop().unwrap();
    assert_eq!((q.method.as_str(), q.path()), ("POST", "/echo"));
    assert_eq!(q.framing, ReqFraming::Length(100_000));
    assert!(
        q.body.as_deref() == Some(&body[..]),
        "upstream got a different body ({} bytes)",
        q.body_len
    );

    // chunked body, odd chunk sizes
    let body = pattern(70_001);
    let parts: Vec<&[u8]> = vec![
        &body[..1],
        &body[1..4096],
        &body[4096..34_096],
        &body[34_096..],
    ];
    let r = c
        .request(
            "POST",
            "/echo",
            &[
                ("Transfer-Encoding", "chunked"),
                ("Content-Type", "application/octet-stream"),
            ],
            Some(&chunked_body(&parts)),
        )
        .expect("POST /echo chunked");
    assert_eq!(r.status(), 200, "{r}");
    assert!(
        r.body == body,
        "echoed chunked body differs ({} bytes back)",
        r.body.len()
    );
    let q = up.requests().pop().unwrap();
    assert!(
        matches!(q.framing, ReqFraming::Chunked | ReqFraming::Length(70_001)),
        "chunked request arrived as {:?}",
        q.framing
    );
    assert!(
        q.body.as_deref() == Some(&body[..]),
        "upstream got a different body ({} bytes)",
        q.body_len
    );

    // empty body
    let r = c.post("/echo", b"").expect("POST /echo empty");
    assert_eq!((r.status(), r.body.len()), (200, 0), "{r}");
    let q = up.requests().pop().unwrap();
    assert_eq!(q.body_len, 0);
    assert!(
        matches!(
            q.framing,
            ReqFraming::Length(0) | ReqFraming::None | ReqFraming::Chunked
        ),
        "{:?}",
        q.framing
    );
    assert!(up.errors().is_empty(), "{:?}", up.errors());
}

#[test]
fn hop_by_hop_headers_are_dropped_and_end_to_end_kept_in_order() {
    let up = Upstream::start();
    let pair = PairBuilder::new(up.addr()).name("headers").start();
    let mut c = pair.conn();
    let r = c
        .request(
            "GET",
            "/headers",
            &[
                ("Host", "hdr.test"),
                ("Connection", "keep-alive, X-Hop"),
                ("X-Hop", "1"),
                ("Keep-Alive", "timeout=5"),
                ("Proxy-Connection", "x"),
                ("TE", "trailers"),
                ("Upgrade", "foo"),
                ("X-Dup", "a"),
                ("Accept", "text/plain"),
                ("X-Custom-Thing", "Value With  Spaces; and=stuff"),
                ("X-Dup", "b"),
                ("User-Agent", "ptproxy-e2e/1.0"),
                ("Cookie", "k=v"),
            ],
            None,
        )
        .expect("GET /headers");
    assert_eq!(r.status(), 200, "{r}");
    // the proxy must keep our connection usable (Connection: keep-alive)
    let again = c
        .get("/hello")
        .expect("second request on the same connection");
    assert_eq!(again.body, b"hello");

    let q = up
        .requests()
        .into_iter()
        .find(|q| q.path() == "/headers")
        .expect("request recorded");
    let names: Vec<String> = q
        .headers
        .iter()
        .map(|(n, _)| n.to_ascii_lowercase())
        .collect();
    for hop in ["x-hop", "keep-alive", "proxy-connection", "te", "upgrade"] {
        assert!(
            !names.iter().any(|n| n == hop),
            "hop-by-hop header {hop:?} reached the upstream: {:?}",
            q.headers
        );
    }
    // a Connection header of the proxy's own is tolerated, but not ours
    for tok in ["x-hop", "upgrade", "te"] {
        assert!(
            !has_token(&q.headers, "connection", tok),
            "Connection token {tok:?} forwarded: {:?}",
            q.headers
        );
    }
    assert_eq!(
        q.header_all("x-dup"),
        vec!["a", "b"],
        "duplicates must arrive twice, in order: {:?}",
        q.headers
    );
    assert_eq!(q.header_all("host"), vec!["hdr.test"]);
    assert_eq!(q.header("accept"), Some("text/plain"));
    assert_eq!(
        q.header("x-custom-thing"),
        Some("Value With  Spaces; and=stuff")
    );
    assert_eq!(q.header("user-agent"), Some("ptproxy-e2e/1.0"));
    assert_eq!(q.header("cookie"), Some("k=v"));
    // ordinary headers keep their relative order
    let pos = |n: &str| names.iter().position(|x| x == n).unwrap();
    assert!(
        pos("accept") < pos("x-custom-thing") && pos("x-custom-thing") < pos("user-agent"),
        "order changed: {:?}",
        q.headers
    );
    // what the upstream reported back agrees with what it recorded
    assert!(
        r.body_str().to_ascii_lowercase().contains("x-dup: a\n"),
        "{r}"
    );
    assert!(up.errors().is_empty(), "{:?}", up.errors());
}
