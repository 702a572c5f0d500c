//! The `exchange` target, server role: `ptproxy::server::exchange::Exchange` on an in-memory
//! request stream ([`Stream`], which checks every frame as it is sent) and in-memory upstream
//! connections ([`Pool`], [`Conn`]).
//!
//! Start: `a % 6` picks the method (GET, HEAD, POST, PUT, DELETE, or an invalid empty one,
//! answered 400); `a & 8`: a body follows the fields; `a & 16`: with `content-length: b`;
//! `a & 32`: the first connection is a reused pooled one (else a fresh one still connecting).
//! Connect timeout 2 s, response timeout 5 s.
//!
//! | op | meaning |
//! |---|---|
//! | 0 `k bytes` | `k` request body bytes arrive on the stream |
//! | 1 `b c` | `(c + 1) * 512` bytes `b` arrive |
//! | 2 | the stream ends (`on_finished`) |
//! | 3 `t` | request trailers: `t % 3` valid / invalid (a pseudo-field) / empty |
//! | 4 | the peer resets the stream (`abort`) |
//! | 5 `c` | the latest connection's connect: `c % 3` succeeds / fails / hangs |
//! | 6 `v` | the latest connection receives response `RESPONSES[v % len]` |
//! | 7 `k bytes` | it receives `k` raw bytes |
//! | 8 | the upstream closes it (input ended) |
//! | 9 `r` | its output capacity: `size(r)` (0: room 0) |
//! | 10 `r` | the upstream reads `size(r)` more bytes of its output (255: all from now on, 0: none) |
//! | 11 `b` | the stream is blocked (`b` odd) or not |
//! | 12 `b` / 13 `b` | the clock moves a small / large step (`clock_step`) |
//! | 14 | drive |
//! | 15 `b` | the stream takes at most `size(b)` body bytes per call (0: blocked for data) |
//!
//! Checks (panics): the stream sees at most one final head (status >= 200), interim heads only
//! before it, body and trailers only after it, nothing after its FIN or a reset, never both a
//! FIN and a reset; when the exchange returns `Finished`, the stream has a final head and a FIN,
//! or a reset; a FIN after a head that came from the upstream (no `proxy-status`) carries
//! exactly the complete decoded body of the upstream's response (a truncated body never ends
//! cleanly); an upstream connection's output never exceeds `max(held before, capacity)` by more
//! than [`OUTPUT_OVERHEAD`], and nothing is written to one whose room is 0 and which reads
//! nothing, once the request head is in; no busy loop (see `crate::exchange`); after the
//! script and the final clock advance the exchange has finished.

use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use ptproxy::bridge::pump::H1Buffers;
use ptproxy::bridge::stream::{ExchangeStream, StreamFailed, StreamSink, StreamSource};
use ptproxy::config::UpstreamConfig;
use ptproxy::metrics::Metrics;
use ptproxy::server::exchange::port::{UpstreamConn, UpstreamPort};
use ptproxy::server::exchange::{Ctx, Exchange, Outcome};
use quiche::h3::{Header as H3Header, NameValue};

use super::exchange::{
    base_instant, clock_step, read_responses, size, Reader, FINAL_ADVANCE, FINAL_CLOCK_STEPS,
    MAX_BYTES, MAX_EXPIRIES, MAX_YIELDS, RESPONSES,
};

/// How far past its room an upstream output may grow in one operation: the request head is
/// written whole when the connection is ready (under 200 bytes for the fields used here), and
/// the request body pump may go 8 bytes over (one chunk's framing) and write the body's end
/// (`0\r\n`, trailers, `\r\n`: under 64 bytes here) in full.
pub const OUTPUT_OVERHEAD: usize = 512;

const METHODS: &[&str] = &["GET", "HEAD", "POST", "PUT", "DELETE", ""];

/// The request stream, checking the response as the exchange sends it.
#[derive(Default)]
struct Stream {
    blocked: bool,
    /// Body bytes taken per `send_body` call.
    per_call: Option<usize>,
    finals: usize,
    final_fields: Vec<H3Header>,
    data: Vec<u8>,
    fin: bool,
    reset: bool,
    incoming: Vec<u8>,
}

impl Stream {
    fn check_open(&self, what: &str) {
        assert!(!self.reset, "{what} after a reset");
        assert!(!self.fin, "{what} after the FIN");
    }
    fn is_synthesized(&self) -> bool {
        self.final_fields
            .iter()
            .any(|f| f.name() == b"proxy-status")
    }
    fn status(&self) -> Option<u16> {
        let f = self.final_fields.iter().find(|f| f.name() == b":status")?;
        std::str::from_utf8(f.value()).ok()?.parse().ok()
    }
}

impl StreamSink for Stream {
    fn send_body(&mut self, data: &[u8], fin: bool) -> Result<Option<usize>, StreamFailed> {
        self.check_open("body");
        assert_eq!(self.finals, 1, "body before the final head");
        let take = data.len().min(self.per_call.unwrap_or(usize::MAX));
        if self.blocked || (take == 0 && !data.is_empty()) {
            return Ok(None);
        }
        self.data.extend_from_slice(&data[..take]);
        self.fin = fin && take == data.len();
        Ok(Some(take))
    }
    fn send_trailers(&mut self, fields: &[H3Header]) -> Result<bool, StreamFailed> {
        self.check_open("trailers");
        assert_eq!(self.finals, 1, "trailers before the final head");
        assert!(
            fields.iter().all(|f| !f.name().starts_with(b":")),
            "a pseudo-field in the trailers"
        );
        if self.blocked {
            return Ok(false);
        }
        self.fin = true;
        Ok(true)
    }
}

impl StreamSource for Stream {
    fn recv_body(&mut self, buf: &mut [u8]) -> Result<usize, StreamFailed> {
        let n = buf.len().min(self.incoming.len());
        buf[..n].copy_from_slice(&self.incoming[..n]);
        self.incoming.drain(..n);
        Ok(n)
    }
}

impl ExchangeStream for Stream {
    fn send_fields(
        &mut self,
        fields: &[H3Header],
        first: bool,
        fin: bool,
    ) -> Result<bool, StreamFailed> {
        self.check_open("a field section");
        let status = fields
            .iter()
            .find(|f| f.name() == b":status")
            .and_then(|f| std::str::from_utf8(f.value()).ok()?.parse::<u16>().ok());
        let Some(status) = status else {
            panic!("a response head without a valid :status: {fields:?}");
        };
        assert_eq!(self.finals, 0, "a head ({status}) after the final head");
        if self.blocked {
            return Ok(false);
        }
        assert!(status >= 100, "status {status}");
        let _ = first;
        if status >= 200 {
            self.finals = 1;
            self.final_fields = fields.to_vec();
        } else {
            assert!(!fin, "FIN on an interim response");
        }
        self.fin = fin;
        Ok(true)
    }
    fn accepts(&self, _fields: &[H3Header]) -> bool {
        true
    }
    fn stop_sending(&mut self, _code: u64) {}
    fn reset(&mut self, _code: u64) {
        assert!(!self.fin, "a reset after a clean FIN");
        self.reset = true;
    }
}

/// One upstream connection.
struct Conn {
    connecting: bool,
    /// The connect's outcome once known (`None`: it hangs).
    outcome: Option<Result<(), io::ErrorKind>>,
    input: Vec<u8>,
    /// Everything the upstream sent on it.
    sent: Vec<u8>,
    ended: bool,
    output: Vec<u8>,
    cap: usize,
    reads: usize,
    /// Bytes the upstream read (the request as it saw it).
    read: Vec<u8>,
    reused: u32,
    /// Checked in or closed by the exchange.
    released: bool,
}

impl Conn {
    fn new(reused: bool) -> Self {
        Conn {
            connecting: !reused,
            outcome: None,
            input: Vec::new(),
            sent: Vec::new(),
            ended: false,
            output: Vec::new(),
            cap: 64 * 1024,
            reads: usize::MAX,
            read: Vec::new(),
            reused: u32::from(reused),
            released: false,
        }
    }
    /// Bytes ever written into it.
    fn written(&self) -> usize {
        self.read.len() + self.output.len()
    }
}

impl H1Buffers for Conn {
    fn input(&self) -> &[u8] {
        &self.input
    }
    fn consume(&mut self, n: usize) {
        assert!(
            n <= self.input.len(),
            "consumed {n} of {}",
            self.input.len()
        );
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

impl UpstreamConn for Conn {
    fn is_connecting(&self) -> bool {
        self.connecting
    }
    fn connect_result(&mut self) -> Option<io::Result<()>> {
        self.outcome.map(|r| r.map_err(io::Error::from))
    }
    fn set_connected(&mut self) {
        self.connecting = false;
    }
    fn fill(&mut self) -> bool {
        false
    }
    fn flush(&mut self) -> bool {
        let n = self.output.len().min(self.reads);
        if self.reads != usize::MAX {
            self.reads -= n;
        }
        self.read.extend(self.output.drain(..n));
        n > 0
    }
    fn reused(&self) -> u32 {
        self.reused
    }
}

#[derive(Default)]
struct Pool {
    first_reused: bool,
    conns: Vec<Conn>,
}

impl Pool {
    fn latest(&mut self) -> Option<&mut Conn> {
        self.conns.last_mut().filter(|c| !c.released)
    }
}

impl UpstreamPort for Pool {
    fn checkout(&mut self) -> io::Result<usize> {
        let reused = self.conns.is_empty() && self.first_reused;
        self.conns.push(Conn::new(reused));
        Ok(self.conns.len() - 1)
    }
    fn connect_new(&mut self) -> io::Result<usize> {
        self.conns.push(Conn::new(false));
        Ok(self.conns.len() - 1)
    }
    fn connect_failed(&mut self, _key: usize, _error: &io::Error) -> io::Result<bool> {
        Ok(false)
    }
    fn connected(&mut self, _key: usize) {}
    fn checkin(&mut self, key: usize, _reusable: bool) {
        self.release(key);
    }
    fn close(&mut self, key: usize) {
        self.release(key);
    }
    fn conn(&mut self, key: usize) -> Option<&mut dyn UpstreamConn> {
        self.conns
            .get_mut(key)
            .filter(|c| !c.released)
            .map(|c| c as &mut dyn UpstreamConn)
    }
}

impl Pool {
    fn release(&mut self, key: usize) {
        let conn = self.conns.get_mut(key).expect("a key the pool gave");
        assert!(!conn.released, "connection {key} released twice");
        conn.released = true;
    }
}

struct World {
    now: Instant,
    method: &'static str,
    stream: Stream,
    pool: Pool,
    config: UpstreamConfig,
    metrics: Metrics,
    exchange: Option<Exchange>,
    finished: bool,
    fed: usize,
}

impl World {
    fn run(&mut self, f: impl FnOnce(&mut Exchange, &mut Ctx<'_>) -> Outcome) {
        let Some(ex) = self.exchange.as_mut() else {
            return;
        };
        let mut ctx = Ctx {
            now: self.now,
            stream: &mut self.stream,
            pool: &mut self.pool,
            upstream: &self.config,
            max_head_bytes: 16 * 1024,
            access_log: false,
            client: "fuzz",
            metrics: &mut self.metrics,
        };
        let mut outcome = f(ex, &mut ctx);
        let mut yields = 0;
        while outcome == Outcome::Yielded {
            yields += 1;
            assert!(
                yields <= MAX_YIELDS,
                "drive yields without end: a busy loop"
            );
            outcome = ex.drive(&mut ctx);
        }
        if outcome == Outcome::Finished {
            self.finish();
        }
    }

    fn drive(&mut self) {
        self.run(|ex, ctx| ex.drive(ctx));
    }

    /// The exchange is over: the stream must hold a complete answer or a reset.
    fn finish(&mut self) {
        self.exchange = None;
        self.finished = true;
        let s = &self.stream;
        assert!(
            s.reset || (s.finals == 1 && s.fin),
            "finished without an answer and FIN or a reset (finals {}, fin {})",
            s.finals,
            s.fin
        );
        self.check_clean_end();
    }

    /// A clean FIN after the upstream's head: the upstream's whole body, nothing less.
    fn check_clean_end(&self) {
        let s = &self.stream;
        if !s.fin || s.is_synthesized() || s.finals == 0 {
            return;
        }
        let conn = self
            .pool
            .conns
            .iter()
            .rev()
            .find(|c| !c.sent.is_empty())
            .expect("an upstream head came from some connection");
        let responses = read_responses(&conn.sent, self.method, conn.ended);
        let first = responses
            .first()
            .expect("the upstream's bytes hold a final head");
        assert_eq!(Some(first.status), s.status(), "status changed");
        assert!(
            first.complete,
            "the upstream's body was cut short, yet the stream ended cleanly"
        );
        assert!(
            first.payload == s.data,
            "the stream carried {} body bytes, the upstream sent {}",
            s.data.len(),
            first.payload.len()
        );
    }

    /// Moves the clock to `to`, through every deadline on the way.
    fn advance(&mut self, by: Duration) {
        let to = self.now + by;
        for _ in 0..100_000 {
            let next = self.exchange.as_ref().and_then(|ex| ex.timers.next());
            match next {
                Some(at) if at <= to => {
                    self.now = self.now.max(at);
                    self.fire_due();
                }
                _ => {
                    self.now = to;
                    return;
                }
            }
        }
        panic!("more than 100000 deadlines in one clock step");
    }

    /// Handles the timers due now, each once.
    fn fire_due(&mut self) {
        for _ in 0..MAX_EXPIRIES {
            let due = self
                .exchange
                .as_ref()
                .and_then(|ex| ex.timers.next())
                .is_some_and(|at| at <= self.now);
            if !due {
                return;
            }
            self.run(|ex, ctx| ex.on_timer(ctx));
        }
        let next = self.exchange.as_ref().and_then(|ex| ex.timers.next());
        assert!(
            next.is_none_or(|at| at > self.now),
            "a deadline still due after {MAX_EXPIRIES} expiries: a busy loop"
        );
    }

    fn feed(&mut self, bytes: &[u8]) {
        let take = bytes.len().min(MAX_BYTES - self.fed);
        self.fed += take;
        self.stream.incoming.extend_from_slice(&bytes[..take]);
    }

    fn upstream_sends(&mut self, bytes: &[u8]) {
        let take = bytes.len().min(MAX_BYTES - self.fed);
        self.fed += take;
        if let Some(c) = self.pool.latest() {
            if !c.ended {
                c.input.extend_from_slice(&bytes[..take]);
                c.sent.extend_from_slice(&bytes[..take]);
            }
        }
    }
}

fn trailers(t: u8) -> Vec<H3Header> {
    match t % 3 {
        0 => vec![H3Header::new(b"x-checksum", b"abc")],
        1 => vec![H3Header::new(b":path", b"/x")],
        _ => Vec::new(),
    }
}

/// The server role of the `exchange` target (layout in the module doc).
pub fn server(reader: &mut Reader) {
    let a = reader.arg();
    let length = reader.arg();
    let method = METHODS[usize::from(a) % METHODS.len()];
    let body = a & 8 != 0;
    let now = base_instant();
    let address: SocketAddr = "127.0.0.1:9".parse().expect("address");
    let mut w = World {
        now,
        method,
        stream: Stream::default(),
        pool: Pool {
            first_reused: a & 32 != 0,
            ..Pool::default()
        },
        config: UpstreamConfig {
            address: address.into(),
            connect_timeout: Duration::from_secs(2),
            response_timeout: Duration::from_secs(5),
            max_idle: 8,
            idle_timeout: Duration::from_secs(1),
        },
        metrics: Metrics::new("server", now),
        exchange: None,
        finished: false,
        fed: 0,
    };
    let mut fields = vec![
        H3Header::new(b":method", method.as_bytes()),
        H3Header::new(b":scheme", b"http"),
        H3Header::new(b":authority", b"b.test"),
        H3Header::new(b":path", b"/x"),
    ];
    if a & 16 != 0 {
        fields.push(H3Header::new(
            b"content-length",
            length.to_string().as_bytes(),
        ));
    }
    {
        let mut ctx = Ctx {
            now: w.now,
            stream: &mut w.stream,
            pool: &mut w.pool,
            upstream: &w.config,
            max_head_bytes: 16 * 1024,
            access_log: false,
            client: "fuzz",
            metrics: &mut w.metrics,
        };
        w.exchange = Some(Exchange::start(&mut ctx, 0, Ok(0), &fields, body));
    }
    w.drive();
    while let Some(op) = reader.byte() {
        step(&mut w, op, reader);
    }
    for _ in 0..FINAL_CLOCK_STEPS {
        if w.finished {
            break;
        }
        w.advance(FINAL_ADVANCE / FINAL_CLOCK_STEPS as u32);
    }
    assert!(
        w.finished,
        "the exchange still runs 10 minutes after the script"
    );
}

/// One operation, then a drive (as the reactor drives an exchange after any event).
fn step(w: &mut World, op: u8, reader: &mut Reader) {
    let before = w
        .pool
        .conns
        .len()
        .checked_sub(1)
        .filter(|&i| !w.pool.conns[i].released)
        .map(|i| {
            let c = &w.pool.conns[i];
            (i, c.output.len(), c.written(), c.cap, c.reads)
        });
    let mut limits_changed = false;
    match op % 16 {
        0 => {
            let k = usize::from(reader.arg());
            w.feed(reader.bytes(k));
        }
        1 => {
            let (b, c) = (reader.arg(), reader.arg());
            w.feed(&vec![b; (usize::from(c) + 1) * 512]);
        }
        2 => {
            if let Some(ex) = w.exchange.as_mut() {
                ex.on_finished();
            }
        }
        3 => {
            let list = trailers(reader.arg());
            w.run(|ex, ctx| match ex.on_trailers(&list) {
                Outcome::Finished => ex.abort(ctx),
                other => other,
            });
        }
        4 => w.run(|ex, ctx| ex.abort(ctx)),
        5 => {
            let c = reader.arg();
            if let Some(conn) = w.pool.latest() {
                if conn.connecting {
                    conn.outcome = match c % 3 {
                        0 => Some(Ok(())),
                        1 => Some(Err(io::ErrorKind::ConnectionRefused)),
                        _ => None,
                    };
                }
            }
        }
        6 => {
            let v = usize::from(reader.arg()) % RESPONSES.len();
            w.upstream_sends(RESPONSES[v]);
        }
        7 => {
            let k = usize::from(reader.arg());
            let bytes = reader.bytes(k);
            w.upstream_sends(bytes);
        }
        8 => {
            if let Some(c) = w.pool.latest() {
                c.ended = true;
            }
        }
        9 => {
            let r = reader.arg();
            limits_changed = true;
            if let Some(c) = w.pool.latest() {
                c.cap = size(r);
            }
        }
        10 => {
            let r = reader.arg();
            limits_changed = true;
            if let Some(c) = w.pool.latest() {
                c.reads = match r {
                    255 => usize::MAX,
                    0 => 0,
                    r => c.reads.saturating_add(size(r)),
                };
            }
        }
        11 => w.stream.blocked = reader.arg() % 2 == 1,
        12 => {
            let by = clock_step(reader.arg(), false);
            w.advance(by);
        }
        13 => {
            let by = clock_step(reader.arg(), true);
            w.advance(by);
        }
        14 => {}
        _ => {
            w.stream.per_call = Some(size(reader.arg()));
        }
    }
    w.drive();
    check_output(w, before, limits_changed);
}

/// The latest connection's output stays within its room (see [`OUTPUT_OVERHEAD`]).
fn check_output(
    w: &mut World,
    before: Option<(usize, usize, usize, usize, usize)>,
    limits_changed: bool,
) {
    let Some((index, held, written, cap, reads)) = before else {
        return;
    };
    let c = &w.pool.conns[index];
    assert!(
        c.output.len() <= held.max(c.cap) + OUTPUT_OVERHEAD,
        "upstream output {} over its capacity {} (held {held} before)",
        c.output.len(),
        c.cap
    );
    if !limits_changed && written > 0 && held >= cap && reads == 0 {
        assert_eq!(
            c.written(),
            written,
            "bytes written to an upstream with no room that reads nothing"
        );
    }
}
