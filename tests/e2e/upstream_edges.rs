//! The server side facing a misbehaving upstream: connects that hang, responses that never
//! reach their final head, keep-alive connections closed under the proxy's feet, and transfer
//! codings HTTP/3 cannot carry (issue 10).

use crate::harness::raw_upstream::{Part, RawUpstream};
use crate::harness::{PairBuilder, Response, Upstream};
use std::time::{Duration, Instant};

fn assert_server_error(r: &Response, status: u16) {
    assert_eq!(r.status(), status, "{r}");
    assert!(r.body_str().starts_with("ptproxy server:"), "{r}");
}

#[test]
fn connect_timeout_fires_on_an_upstream_that_never_answers_syns() {
    let (_listener, _fill, addr) = crate::harness::hanging_tcp_addr();
    let pair = PairBuilder::new(addr)
        .name("connect_timeout")
        .server("upstream.connect_timeout_ms", "1000")
        .server("upstream.response_timeout_ms", "30000")
        .start();
    let mut c = pair.conn();
    c.set_timeout(Duration::from_secs(20));
    let t = Instant::now();
    let r = c.get("/hello").expect("GET must be answered");
    let el = t.elapsed();
    assert_server_error(&r, 504);
    assert!(
        el >= Duration::from_millis(900) && el <= Duration::from_secs(5),
        "504 after {el:?}, expected about 1 s"
    );
}

#[test]
fn response_timeout_fires_on_a_reused_connection_when_it_equals_the_connect_timeout() {
    let up = Upstream::start();
    let pair = PairBuilder::new(up.addr())
        .name("equal_timeouts")
        .server("upstream.connect_timeout_ms", "1000")
        .server("upstream.response_timeout_ms", "1000")
        .start();
    let mut c = pair.conn();
    c.set_timeout(Duration::from_secs(20));
    let r = c.get("/hello").expect("GET /hello");
    assert_eq!(r.status(), 200, "{r}");
    let t = Instant::now();
    let r = c.get("/stall").expect("GET /stall must be answered");
    let el = t.elapsed();
    assert_server_error(&r, 504);
    assert!(
        el >= Duration::from_millis(900) && el <= Duration::from_secs(5),
        "504 after {el:?}, expected about 1 s"
    );
    assert_eq!(
        up.connection_count(),
        1,
        "the stalled GET must reuse the pooled connection"
    );
}

const EARLY_HINTS: &[u8] = b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n";
const OK_HELLO: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";

/// GET `target` through a pair in front of `up` with a 1 s response timeout; the answer and
/// how long it took.
fn get_with_short_timeout(up: &RawUpstream, name: &str, target: &str) -> (Response, Duration) {
    let pair = PairBuilder::new(up.addr())
        .name(name)
        .server("upstream.response_timeout_ms", "1000")
        .start();
    let mut c = pair.conn();
    c.set_timeout(Duration::from_secs(30));
    let t = Instant::now();
    let r = c.get(target).expect("GET must be answered");
    (r, t.elapsed())
}

#[test]
fn too_many_interim_responses_give_502() {
    let up = RawUpstream::start(|_| {
        let mut parts: Vec<Part> = (0..100)
            .map(|_| Part::Bytes(EARLY_HINTS.to_vec()))
            .collect();
        parts.push(Part::Bytes(OK_HELLO.to_vec()));
        parts
    });
    let (r, _) = get_with_short_timeout(&up, "interim_flood", "/hints");
    assert_server_error(&r, 502);
    assert!(r.body_str().contains("interim"), "{r}");
}

#[test]
fn interim_responses_do_not_extend_the_wait_for_the_final_head() {
    // One 103 every 150 ms for 12 s, then the final head: the 1 s bound must end it first.
    let up = RawUpstream::start(|_| {
        let mut parts = Vec::new();
        for _ in 0..80 {
            parts.push(Part::Bytes(EARLY_HINTS.to_vec()));
            parts.push(Part::Sleep(Duration::from_millis(150)));
        }
        parts.push(Part::Bytes(OK_HELLO.to_vec()));
        parts
    });
    let (r, el) = get_with_short_timeout(&up, "interim_trickle", "/hints");
    assert_server_error(&r, 504);
    assert!(
        el <= Duration::from_secs(5),
        "504 after {el:?}, expected about 1 s"
    );
}

#[test]
fn a_trickled_response_head_does_not_extend_the_response_timeout() {
    // The head arrives one byte every 100 ms (about 8 s in all).
    let up = RawUpstream::start(|_| {
        let head = format!(
            "HTTP/1.1 200 OK\r\nX-Slow: {}\r\nContent-Length: 5\r\n\r\nhello",
            "a".repeat(40)
        );
        head.bytes()
            .flat_map(|b| {
                [
                    Part::Bytes(vec![b]),
                    Part::Sleep(Duration::from_millis(100)),
                ]
            })
            .collect()
    });
    let (r, el) = get_with_short_timeout(&up, "trickled_head", "/slow-head");
    assert_server_error(&r, 504);
    assert!(
        el >= Duration::from_millis(900) && el <= Duration::from_secs(5),
        "504 after {el:?}, expected about 1 s"
    );
}

/// An upstream that answers the first request of each connection (keep-alive, no
/// `Connection: close`) and closes the connection when the second one arrives, as a server
/// whose idle timeout fires just as the proxy reuses the connection.
fn closes_on_reuse() -> RawUpstream {
    let seen = std::sync::Mutex::new(std::collections::HashMap::<usize, usize>::new());
    RawUpstream::start(move |req| {
        let mut seen = seen.lock().unwrap();
        let n = seen.entry(req.conn).or_insert(0);
        *n += 1;
        match *n {
            1 => vec![Part::Bytes(OK_HELLO.to_vec())],
            _ => vec![Part::Close],
        }
    })
}

#[test]
fn idempotent_requests_are_retried_once_when_a_reused_connection_was_closed() {
    let up = closes_on_reuse();
    let pair = PairBuilder::new(up.addr()).name("retry_on_reuse").start();
    let mut c = pair.conn();
    c.set_timeout(Duration::from_secs(20));
    for i in 0..20 {
        let r = c.get(&format!("/n{i}")).expect("GET");
        assert_eq!(r.status(), 200, "GET #{i}: {r}");
        assert_eq!(r.body, b"hello", "GET #{i}");
    }
    // Each GET after the first met a closed connection and was sent again on a new one.
    assert_eq!(up.connection_count(), 20, "{:?}", up.errors());
}

#[test]
fn a_post_is_not_retried_when_a_reused_connection_was_closed() {
    let up = closes_on_reuse();
    let pair = PairBuilder::new(up.addr()).name("no_retry_post").start();
    let mut c = pair.conn();
    c.set_timeout(Duration::from_secs(20));
    let r = c.get("/first").expect("GET");
    assert_eq!(r.status(), 200, "{r}");
    let r = c.post("/form", b"a=1").expect("POST must be answered");
    assert_server_error(&r, 502);
    let posts = up.requests().iter().filter(|q| q.method == "POST").count();
    assert_eq!(posts, 1, "the POST must reach the upstream exactly once");
}

#[test]
fn a_transfer_coding_other_than_chunked_gives_502_naming_it() {
    let up = RawUpstream::start(|_| {
        vec![Part::Bytes(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n\
              5\r\n\x1f\x8b\x08\x00\x00\r\n0\r\n\r\n"
                .to_vec(),
        )]
    });
    let pair = PairBuilder::new(up.addr()).name("gzip_te").start();
    let r = pair.get("/coded");
    assert_server_error(&r, 502);
    assert!(r.body_str().contains("transfer coding gzip"), "{r}");
    // chunked alone still crosses
    let up = RawUpstream::start(|_| {
        vec![Part::Bytes(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
                .to_vec(),
        )]
    });
    let pair = PairBuilder::new(up.addr()).name("chunked_te").start();
    let r = pair.get("/plain");
    assert_eq!((r.status(), r.body.as_slice()), (200, &b"hello"[..]), "{r}");
}

mod h3_validation {
    //! Requests only a raw HTTP/3 client sends, straight to the server (RFC 9114 §4.1.2).
    use crate::harness::h3_client::{H3Client, H3Outcome};
    use crate::harness::{PairBuilder, Upstream};
    use std::time::Duration;

    const H3_MESSAGE_ERROR: u64 = 0x10e;

    fn request(
        extra: &[(&'static str, &'static str)],
        method: &'static str,
    ) -> Vec<(&'static str, &'static str)> {
        let mut v = vec![
            (":method", method),
            (":scheme", "http"),
            (":authority", "localhost"),
            (":path", "/echo"),
        ];
        v.extend_from_slice(extra);
        v
    }

    #[test]
    fn malformed_requests_are_refused_by_the_server() {
        let up = Upstream::start();
        let pair = PairBuilder::new(up.addr()).name("h3_malformed").start();
        let mut c = H3Client::connect(pair.quic_addr);
        let wait = Duration::from_secs(10);

        // A body longer, then shorter, than its Content-Length: H3_MESSAGE_ERROR.
        for (len, body) in [("3", &b"hello"[..]), ("10", &b"hello"[..])] {
            let fields = request(&[("content-length", len)], "POST");
            let s = c.send(&fields, Some(body));
            match c.outcome(s, wait) {
                H3Outcome::Reset(code) => assert_eq!(code, H3_MESSAGE_ERROR, "CL {len}"),
                other => panic!("content-length {len} with 5 bytes: {other:?}"),
            }
        }
        // Untrimmed values, control characters, an unknown scheme: 400, never forwarded.
        let cases: &[&[(&str, &str)]] = &[
            &[("x-a", " leading")],
            &[("x-a", "trailing ")],
            &[("x-a", "bell\x07")],
            &[("x-a", "esc\x1b")],
        ];
        for extra in cases {
            let s = c.send(&request(extra, "GET"), None);
            match c.outcome(s, wait) {
                H3Outcome::Response { status, body, .. } => {
                    assert_eq!(status, 400, "{extra:?}: {}", String::from_utf8_lossy(&body))
                }
                other => panic!("{extra:?}: {other:?}"),
            }
        }
        let mut bad_scheme = request(&[], "GET");
        bad_scheme[1] = (":scheme", "ftp");
        let s = c.send(&bad_scheme, None);
        assert!(
            matches!(c.outcome(s, wait), H3Outcome::Response { status: 400, .. }),
            ":scheme ftp must be refused"
        );
        assert!(
            up.requests().is_empty(),
            "nothing malformed may reach the upstream"
        );
        // A well-formed request still works on the same session.
        let s = c.send(&request(&[], "GET"), None);
        assert!(matches!(
            c.outcome(s, wait),
            H3Outcome::Response { status: 200, .. }
        ));
    }
}

#[test]
fn a_204_reaches_the_caller_without_content_length() {
    let up = RawUpstream::start(|_| {
        vec![Part::Bytes(
            b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\nX-Kept: yes\r\n\r\n".to_vec(),
        )]
    });
    let pair = PairBuilder::new(up.addr()).name("no_content").start();
    let r = pair.get("/empty");
    assert_eq!(r.status(), 204, "{r}");
    assert_eq!(r.header("x-kept"), Some("yes"), "{r}");
    assert_eq!(r.header("content-length"), None, "{r}");
}
