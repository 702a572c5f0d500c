//! A downstream connection run without sockets or a session: an in-memory client connection,
//! an in-memory session, and a manual clock. Each test replays one timer or bound hazard.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use quiche::h3::Header as H3Header;

use super::*;
use crate::bridge::pump::H1Buffers;
use crate::bridge::stream::{OpenRefused, StreamFailed};
use crate::config::Forwarding;

const SECOND: Duration = Duration::from_secs(1);

/// The client's connection: input fed by the test, output kept within `cap`.
#[derive(Default)]
struct MemConn {
    input: Vec<u8>,
    eof: bool,
    output: Vec<u8>,
    cap: usize,
    received: u64,
    shut: bool,
    reset: bool,
}

impl MemConn {
    fn feed(&mut self, bytes: &[u8]) {
        self.input.extend_from_slice(bytes);
        self.received += bytes.len() as u64;
    }
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.output).into_owned()
    }
}

impl H1Buffers for MemConn {
    fn input(&self) -> &[u8] {
        &self.input
    }
    fn consume(&mut self, n: usize) {
        self.input.drain(..n);
    }
    fn input_ended(&self) -> bool {
        self.eof
    }
    fn write_room(&self) -> usize {
        self.cap.saturating_sub(self.output.len())
    }
    fn output(&mut self) -> &mut Vec<u8> {
        &mut self.output
    }
}

impl DownstreamConn for MemConn {
    fn fill(&mut self) -> bool {
        false
    }
    fn flush(&mut self) -> bool {
        false
    }
    fn queue(&mut self, bytes: &[u8]) {
        self.output.extend_from_slice(bytes);
    }
    fn pending_output(&self) -> usize {
        self.output.len()
    }
    fn eof(&self) -> bool {
        self.eof
    }
    fn is_broken(&self) -> bool {
        false
    }
    fn write_failed(&self) -> bool {
        false
    }
    fn received(&self) -> u64 {
        self.received
    }
    fn shutdown_write(&mut self) {
        self.shut = true;
    }
    fn reset_on_close(&mut self) {
        self.reset = true;
    }
}

/// The session: opens streams (or refuses with `refuse`) and records what they carry.
#[derive(Default)]
struct MemSession {
    refuse: Option<OpenRefused>,
    next: u64,
    opened: Vec<(Vec<H3Header>, bool)>,
    body: HashMap<u64, Vec<u8>>,
    incoming: HashMap<u64, Vec<u8>>,
}

impl SessionPort for MemSession {
    fn accepts(&self, _fields: &[H3Header]) -> bool {
        true
    }
    fn open_request(&mut self, fields: &[H3Header], fin: bool) -> Result<u64, OpenRefused> {
        if let Some(why) = &self.refuse {
            return Err(why.clone());
        }
        self.opened.push((fields.to_vec(), fin));
        let id = self.next;
        self.next += 4;
        Ok(id)
    }
    fn send_body(
        &mut self,
        id: u64,
        data: &[u8],
        _fin: bool,
    ) -> Result<Option<usize>, StreamFailed> {
        self.body.entry(id).or_default().extend_from_slice(data);
        Ok(Some(data.len()))
    }
    fn send_trailers(&mut self, _id: u64, _fields: &[H3Header]) -> Result<bool, StreamFailed> {
        Ok(true)
    }
    fn recv_body(&mut self, id: u64, buf: &mut [u8]) -> Result<usize, StreamFailed> {
        let data = self.incoming.entry(id).or_default();
        let n = buf.len().min(data.len());
        buf[..n].copy_from_slice(&data[..n]);
        data.drain(..n);
        Ok(n)
    }
    fn stop_sending(&mut self, _id: u64, _code: u64) {}
    fn reset(&mut self, _id: u64, _code: u64) {}
}

struct World {
    t0: Instant,
    now: Instant,
    http: ClientHttpConfig,
    session: MemSession,
    session_up: bool,
    by_stream: HashMap<u64, usize>,
    metrics: Metrics,
    down: Downstream<MemConn>,
}

impl World {
    fn new() -> Self {
        let t0 = Instant::now();
        let http = ClientHttpConfig {
            session_wait: 2 * SECOND,
            max_connections: 16,
            head_timeout: 5 * SECOND,
            keepalive_timeout: 10 * SECOND,
            max_head_bytes: 16 * 1024,
            max_body_bytes: None,
            access_log: false,
            forwarding: Forwarding {
                forwarded: false,
                via: false,
                x_forwarded_for: false,
            },
            early_data_methods: Vec::new(),
            body_timeout: 3 * SECOND,
        };
        let conn = MemConn {
            cap: 256 * 1024,
            ..MemConn::default()
        };
        let down = Downstream::new(conn, "127.0.0.1:40000".parse().expect("address"), &http, t0);
        World {
            t0,
            now: t0,
            http,
            session: MemSession::default(),
            session_up: true,
            by_stream: HashMap::new(),
            metrics: Metrics::new("client", t0),
            down,
        }
    }

    fn with(&mut self, f: impl FnOnce(&mut Downstream<MemConn>, &mut Ctx<'_>)) {
        let mut ctx = Ctx {
            key: 0,
            now: self.now,
            http: &self.http,
            default_authority: "b.test",
            session: self
                .session_up
                .then_some(&mut self.session as &mut dyn SessionPort),
            accepting: true,
            early: false,
            stopping: false,
            why_down: "test (down)",
            hold_bodies: false,
            by_stream: &mut self.by_stream,
            metrics: &mut self.metrics,
        };
        f(&mut self.down, &mut ctx);
    }

    fn send(&mut self, bytes: &[u8]) {
        self.down.tcp.feed(bytes);
        self.with(|d, ctx| d.drive(ctx));
    }

    /// Moves the clock to `at` (from t0) and fires what is due, as the reactor does.
    fn advance_to(&mut self, at: Duration) {
        self.now = self.t0 + at;
        for _ in 0..8 {
            if self.down.timers.next().is_none_or(|d| d > self.now) {
                return;
            }
            self.with(|d, ctx| d.on_timer(ctx));
        }
        panic!("timers still due after 8 expiries at {at:?}: a busy loop");
    }

    /// The peer's response on the last opened stream.
    fn respond(&mut self, status: &str, body: &[u8]) {
        let id = self.session.next - 4;
        let fields = vec![
            H3Header::new(b":status", status.as_bytes()),
            H3Header::new(b"content-length", body.len().to_string().as_bytes()),
        ];
        self.session.incoming.insert(id, body.to_vec());
        self.with(|d, ctx| d.on_headers(ctx, &fields, !body.is_empty()));
        self.with(|d, ctx| d.on_finished(ctx));
    }
}

#[test]
fn without_a_session_a_request_is_answered_503_at_the_session_wait() {
    let mut w = World::new();
    w.session_up = false;
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
    let mut w = World::new();
    w.session.refuse = Some(OpenRefused::Streams);
    w.send(b"GET /a HTTP/1.1\r\nHost: b.test\r\n\r\n");
    w.advance_to(2 * SECOND);
    let text = w.down.tcp.text();
    assert!(text.starts_with("HTTP/1.1 503 "), "{text}");
    assert!(text.contains("stream"), "{text}");
}

#[test]
fn a_request_body_that_stops_arriving_is_a_408_at_the_body_timeout() {
    let mut w = World::new();
    w.send(b"POST /a HTTP/1.1\r\nHost: b.test\r\nContent-Length: 10\r\n\r\nabc");
    assert_eq!(w.session.opened.len(), 1, "the request went out");
    w.advance_to(2 * SECOND);
    w.send(b"de");
    // The clock restarts with each byte: 3 s from the last one.
    w.advance_to(5 * SECOND - Duration::from_millis(1));
    assert!(w.down.tcp.output.is_empty());
    w.advance_to(5 * SECOND);
    let text = w.down.tcp.text();
    assert!(text.starts_with("HTTP/1.1 408 "), "{text}");
    assert_eq!(w.session.body[&0], b"abcde");
}

#[test]
fn keep_alive_and_head_timeouts_each_apply_in_their_phase() {
    let mut w = World::new();
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
    let mut w = World::new();
    w.send(b"GET /a HTTP/1.1\r\nHost: b.test\r\n\r\n");
    w.respond("204", b"");
    w.advance_to(10 * SECOND - Duration::from_millis(1));
    assert!(!w.down.is_done());
    w.advance_to(10 * SECOND);
    assert!(w.down.is_done());
}

#[test]
fn endless_interim_responses_to_a_client_that_does_not_read_stay_bounded() {
    let mut w = World::new();
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
        let mut w = World::new();
        w.session_up = session_up;
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
    let mut w = World::new();
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
