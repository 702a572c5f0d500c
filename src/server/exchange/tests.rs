//! The server exchange run without sockets or a session: an in-memory request stream and
//! upstream, and a manual clock. Each test is one timer hazard, replayed step by step.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use quiche::h3::{Header as H3Header, NameValue};

use super::port::{UpstreamConn, UpstreamPort};
use super::*;
use crate::bridge::pump::H1Buffers;
use crate::bridge::stream::{StreamFailed, StreamSink, StreamSource};
use crate::metrics::Metrics;

const SECOND: Duration = Duration::from_secs(1);

/// The request stream: what the exchange sent, and a switch to block it.
#[derive(Default)]
struct MemStream {
    blocked: bool,
    /// Field sections sent, with their FIN flag.
    sections: Vec<(Vec<H3Header>, bool)>,
    data: Vec<u8>,
    fin: bool,
    /// Request body bytes the peer sent, not read yet.
    incoming: Vec<u8>,
    stop_sending: Option<u64>,
    reset: Option<u64>,
}

impl MemStream {
    fn status(&self) -> Option<String> {
        let (fields, _) = self.sections.last()?;
        fields
            .iter()
            .find(|f| f.name() == b":status")
            .map(|f| String::from_utf8_lossy(f.value()).into_owned())
    }
}

impl StreamSink for MemStream {
    fn send_body(&mut self, data: &[u8], fin: bool) -> Result<Option<usize>, StreamFailed> {
        if self.blocked {
            return Ok(None);
        }
        self.data.extend_from_slice(data);
        self.fin |= fin;
        Ok(Some(data.len()))
    }
    fn send_trailers(&mut self, fields: &[H3Header]) -> Result<bool, StreamFailed> {
        self.send_fields(fields, false, true)
    }
}

impl StreamSource for MemStream {
    fn recv_body(&mut self, buf: &mut [u8]) -> Result<usize, StreamFailed> {
        let n = buf.len().min(self.incoming.len());
        buf[..n].copy_from_slice(&self.incoming[..n]);
        self.incoming.drain(..n);
        Ok(n)
    }
}

impl ExchangeStream for MemStream {
    fn send_fields(
        &mut self,
        fields: &[H3Header],
        _first: bool,
        fin: bool,
    ) -> Result<bool, StreamFailed> {
        if self.blocked {
            return Ok(false);
        }
        self.sections.push((fields.to_vec(), fin));
        self.fin |= fin;
        Ok(true)
    }
    fn accepts(&self, _fields: &[H3Header]) -> bool {
        true
    }
    fn stop_sending(&mut self, code: u64) {
        self.stop_sending = Some(code);
    }
    fn reset(&mut self, code: u64) {
        self.reset = Some(code);
    }
}

/// One upstream connection: scripted connect outcome, input, bounded output.
struct MemConn {
    connecting: bool,
    /// What the connect ends with once `connecting` (`None`: SYNs vanish).
    connect_outcome: Option<io::ErrorKind>,
    connects: bool,
    input: Vec<u8>,
    ended: bool,
    output: Vec<u8>,
    /// Most output bytes held.
    cap: usize,
    /// Output bytes the upstream will read (then it stops reading).
    reads: usize,
    written: Vec<u8>,
    reused: u32,
}

impl MemConn {
    fn fresh(connects: bool) -> Self {
        MemConn {
            connecting: true,
            connect_outcome: None,
            connects,
            input: Vec::new(),
            ended: false,
            output: Vec::new(),
            cap: 64 * 1024,
            reads: usize::MAX,
            written: Vec::new(),
            reused: 0,
        }
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
        self.ended
    }
    fn write_room(&self) -> usize {
        self.cap.saturating_sub(self.output.len())
    }
    fn output(&mut self) -> &mut Vec<u8> {
        &mut self.output
    }
}

impl UpstreamConn for MemConn {
    fn is_connecting(&self) -> bool {
        self.connecting
    }
    fn connect_result(&mut self) -> Option<io::Result<()>> {
        if self.connects {
            return Some(Ok(()));
        }
        self.connect_outcome.map(|k| Err(io::Error::from(k)))
    }
    fn set_connected(&mut self) {
        self.connecting = false;
    }
    fn fill(&mut self) -> bool {
        false
    }
    fn flush(&mut self) -> bool {
        let n = self.output.len().min(self.reads);
        self.reads -= n;
        self.written.extend(self.output.drain(..n));
        n > 0
    }
    fn reused(&self) -> u32 {
        self.reused
    }
}

/// The pool: hands out `next` (a pooled connection or a fresh one).
#[derive(Default)]
struct MemPool {
    next: Option<MemConn>,
    conns: HashMap<usize, MemConn>,
    keys: usize,
    closed: Vec<usize>,
    checked_in: Vec<(usize, bool)>,
}

impl UpstreamPort for MemPool {
    fn checkout(&mut self) -> io::Result<usize> {
        let conn = self.next.take().unwrap_or_else(|| MemConn::fresh(true));
        self.keys += 1;
        self.conns.insert(self.keys, conn);
        Ok(self.keys)
    }
    fn connect_new(&mut self) -> io::Result<usize> {
        self.checkout()
    }
    fn connect_failed(&mut self, _key: usize, _error: &io::Error) -> io::Result<bool> {
        Ok(false)
    }
    fn connected(&mut self, _key: usize) {}
    fn checkin(&mut self, key: usize, reusable: bool) {
        self.checked_in.push((key, reusable));
    }
    fn close(&mut self, key: usize) {
        self.closed.push(key);
    }
    fn conn(&mut self, key: usize) -> Option<&mut dyn UpstreamConn> {
        if self.closed.contains(&key) {
            return None;
        }
        self.conns.get_mut(&key).map(|c| c as &mut dyn UpstreamConn)
    }
}

/// An exchange with its in-memory world and a manual clock.
struct World {
    t0: Instant,
    now: Instant,
    stream: MemStream,
    pool: MemPool,
    config: UpstreamConfig,
    metrics: Metrics,
    exchange: Option<Exchange>,
    finished: bool,
}

impl World {
    fn new(connect: Duration, response: Duration) -> Self {
        let t0 = Instant::now();
        let address: SocketAddr = "127.0.0.1:9".parse().expect("address");
        World {
            t0,
            now: t0,
            stream: MemStream::default(),
            pool: MemPool::default(),
            config: UpstreamConfig {
                address: address.into(),
                connect_timeout: connect,
                response_timeout: response,
                max_idle: 8,
                idle_timeout: SECOND,
            },
            metrics: Metrics::new("server", t0),
            exchange: None,
            finished: false,
        }
    }

    fn run(&mut self, f: impl FnOnce(&mut Exchange, &mut Ctx<'_>) -> Outcome) {
        let mut ctx = Ctx {
            now: self.now,
            stream: &mut self.stream,
            pool: &mut self.pool,
            upstream: &self.config,
            max_head_bytes: 16 * 1024,
            access_log: false,
            client: "test",
            metrics: &mut self.metrics,
        };
        let ex = self.exchange.as_mut().expect("exchange");
        if f(ex, &mut ctx) == Outcome::Finished {
            self.finished = true;
        }
    }

    /// A request arrives (`body`: whether DATA follows the fields).
    fn start(&mut self, method: &str, body: bool) {
        let fields = vec![
            H3Header::new(b":method", method.as_bytes()),
            H3Header::new(b":scheme", b"http"),
            H3Header::new(b":authority", b"b.test"),
            H3Header::new(b":path", b"/x"),
        ];
        let mut ctx = Ctx {
            now: self.now,
            stream: &mut self.stream,
            pool: &mut self.pool,
            upstream: &self.config,
            max_head_bytes: 16 * 1024,
            access_log: false,
            client: "test",
            metrics: &mut self.metrics,
        };
        self.exchange = Some(Exchange::start(&mut ctx, 0, Ok(0), &fields, body));
        self.run(|ex, ctx| ex.drive(ctx));
    }

    /// Advances the clock to `at` (from t0) and fires what is due, as the reactor does: the
    /// exchange's deadline must never be due again right after it was handled.
    fn advance_to(&mut self, at: Duration) {
        self.now = self.t0 + at;
        for _ in 0..8 {
            let due = self
                .exchange
                .as_ref()
                .and_then(|ex| ex.timers.next())
                .is_some_and(|d| d <= self.now);
            if !due || self.finished {
                return;
            }
            self.run(|ex, ctx| ex.on_timer(ctx));
        }
        panic!("timers still due after 8 expiries at {at:?}: a busy loop");
    }

    fn deadline(&self) -> Option<Duration> {
        self.exchange
            .as_ref()
            .and_then(|ex| ex.timers.next())
            .map(|d| d - self.t0)
    }
}

#[test]
fn a_connect_that_never_completes_is_a_504_at_the_connect_timeout() {
    let mut w = World::new(2 * SECOND, 30 * SECOND);
    w.pool.next = Some(MemConn::fresh(false));
    w.start("GET", false);
    assert_eq!(w.deadline(), Some(2 * SECOND), "the connect timer is armed");
    w.advance_to(2 * SECOND - Duration::from_millis(1));
    assert!(w.stream.sections.is_empty());
    w.advance_to(2 * SECOND);
    assert_eq!(w.stream.status().as_deref(), Some("504"));
    assert!(String::from_utf8_lossy(&w.stream.data).contains("did not accept the connection"));
    assert!(w.finished && w.stream.fin, "answered and done");
}

#[test]
fn equal_connect_and_response_timeouts_each_apply() {
    // A reused connection (no connect): the response timeout runs from the request head.
    let mut w = World::new(2 * SECOND, 2 * SECOND);
    w.pool.next = Some(MemConn {
        connecting: false,
        reused: 1,
        ..MemConn::fresh(true)
    });
    w.start("GET", false);
    assert_eq!(w.deadline(), Some(2 * SECOND), "response timer armed");
    w.advance_to(2 * SECOND);
    assert_eq!(w.stream.status().as_deref(), Some("504"));
    assert!(String::from_utf8_lossy(&w.stream.data).contains("did not answer within 2000 ms"));

    // A fresh connection that connects at 1 s: the response timeout runs from then.
    let mut w = World::new(2 * SECOND, 2 * SECOND);
    w.pool.next = Some(MemConn::fresh(false));
    w.start("GET", false);
    w.advance_to(SECOND);
    let key = w.pool.keys;
    if let Some(c) = w.pool.conns.get_mut(&key) {
        c.connects = true;
    }
    w.run(|ex, ctx| ex.drive(ctx));
    assert_eq!(
        w.deadline(),
        Some(3 * SECOND),
        "connect timer cleared, response armed"
    );
    w.advance_to(3 * SECOND);
    assert_eq!(w.stream.status().as_deref(), Some("504"));
    assert!(String::from_utf8_lossy(&w.stream.data).contains("did not answer"));
}

#[test]
fn a_504_that_cannot_leave_a_blocked_stream_ends_in_a_reset() {
    let mut w = World::new(SECOND, SECOND);
    w.pool.next = Some(MemConn::fresh(false));
    w.stream.blocked = true;
    w.start("GET", false);
    w.advance_to(SECOND);
    assert!(w.stream.sections.is_empty(), "blocked: nothing left");
    assert!(!w.finished);
    assert_eq!(w.deadline(), Some(2 * SECOND), "one period to deliver it");
    w.advance_to(2 * SECOND);
    assert!(w.finished, "given up");
    assert_eq!(w.stream.reset, Some(crate::quic::h3_code::INTERNAL_ERROR));
}

#[test]
fn an_upstream_that_stops_reading_after_a_complete_response_ends_the_exchange() {
    let mut w = World::new(SECOND, 3 * SECOND);
    // A reused connection whose upstream reads nothing more.
    w.pool.next = Some(MemConn {
        connecting: false,
        reused: 1,
        reads: 0,
        ..MemConn::fresh(true)
    });
    w.start("POST", true);
    let key = w.pool.keys;
    let body = 30_000;
    // The whole body fits the output exactly: it is all read from the stream, the stream
    // ends, and the body's end is still to be written when the response is complete.
    if let Some(c) = w.pool.conns.get_mut(&key) {
        c.cap = c.output.len() + body;
    }
    w.stream.incoming = vec![b'x'; body];
    w.run(|ex, ctx| ex.drive(ctx));
    w.run(|ex, ctx| {
        ex.on_finished();
        ex.drive(ctx)
    });
    if let Some(c) = w.pool.conns.get_mut(&key) {
        c.input = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok".to_vec();
    }
    w.run(|ex, ctx| ex.drive(ctx));
    assert_eq!(w.stream.status().as_deref(), Some("200"));
    assert_eq!(w.stream.data, b"ok");
    assert!(!w.finished, "the request body still waits for the upstream");
    w.advance_to(3 * SECOND);
    assert!(w.finished, "the stalled upstream ends the exchange");
    assert!(w.pool.closed.contains(&key), "and its connection is closed");
}

#[test]
fn a_peer_reset_after_a_complete_response_does_not_reset_it() {
    // Found by the `exchange` fuzz target: the response went out with its FIN while the end
    // of the request body still waited for the upstream; the peer's reset then reset the
    // complete response too.
    let mut w = World::new(SECOND, 3 * SECOND);
    w.pool.next = Some(MemConn {
        connecting: false,
        reused: 1,
        reads: 0,
        ..MemConn::fresh(true)
    });
    w.start("POST", true);
    let key = w.pool.keys;
    if let Some(c) = w.pool.conns.get_mut(&key) {
        c.cap = c.output.len() + 10;
    }
    w.stream.incoming = vec![b'x'; 10];
    w.run(|ex, ctx| ex.drive(ctx));
    w.run(|ex, ctx| {
        ex.on_finished();
        ex.drive(ctx)
    });
    if let Some(c) = w.pool.conns.get_mut(&key) {
        c.input = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok".to_vec();
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
        let mut w = World::new(SECOND, 2 * SECOND);
        w.pool.next = Some(MemConn::fresh(connects));
        w.stream.blocked = !connects;
        w.start("GET", false);
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
