//! The `exchange` target, client role: `ptproxy::client::downstream::Downstream` on an
//! in-memory connection from service A ([`Conn`]) and an in-memory session ([`Session`]).
//!
//! Start: `a % 2`: the session is up (else down); `a & 2`: pipelined requests are given one
//! after the other by service A, it reads everything unless told otherwise; `b` is unused.
//! Session wait 2 s, head timeout 5 s, keep-alive 10 s, body timeout 3 s.
//!
//! | op | meaning |
//! |---|---|
//! | 0 `v` | service A sends request `REQUESTS[v % len]` |
//! | 1 `k bytes` | it sends `k` raw bytes |
//! | 2 | it ends its side (EOF) |
//! | 3 `s` | the session: `s % 5` up / down / refusing with Credit / Streams / Failed |
//! | 4 `v f` | the peer's response head `v % 7` on the open stream (`f` odd: more frames follow) |
//! | 5 `k bytes` | the peer sends `k` response body bytes on it |
//! | 6 | the peer ends the stream (`on_finished`) |
//! | 7 | the peer resets it (`on_stream_failed`) |
//! | 8 | the session is lost (`on_session_lost`, then the session is down) |
//! | 9 `r` | A's connection output capacity: `size(r)` (0: room 0, A does not read) |
//! | 10 | A reads everything written so far |
//! | 11 `b` / 12 `b` | the clock moves a small / large step (`clock_step`) |
//! | 13 | drive |
//! | 14 `t` | the peer's trailers (`t` odd: invalid) |
//! | 15 `v` | the peer sends `RESPONSES[v % len]` as body bytes |
//!
//! Checks (panics): what service A got (read plus held) parses as a sequence of responses
//! (interim ones skipped) with at most one final response per stream opened, plus one
//! answered locally; once the connection closes without a reset (closing or done), every
//! final response is complete: a response whose body was cut short (the peer's body ended
//! short of its length, a reset mid-body) only ever ends in a reset; the output held never
//! exceeds `max(capacity, held when the capacity was set)` by more than [`OUTPUT_OVERHEAD`];
//! a done connection holds no stream; no busy loop; after the script and the final clock
//! advance the downstream is idle, closing or done. Completeness is not judged when A's input
//! holds `HEAD` (its responses have no body whatever their fields say). The downstream has no
//! timer on a request whose stream is open (the peer's server answers or times out, else the
//! session dies): after the script the session is lost, then the clock moves.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use ptproxy::bridge::answers;
use ptproxy::bridge::pump::H1Buffers;
use ptproxy::bridge::stream::{OpenRefused, SessionPort, StreamFailed};
use ptproxy::client::downstream::{Ctx, Downstream, DownstreamConn, Phase};
use ptproxy::config::{ClientHttpConfig, Forwarding};
use ptproxy::metrics::Metrics;
use quiche::h3::Header as H3Header;

use super::exchange::{
    base_instant, clock_step, read_responses, size, Reader, FINAL_ADVANCE, FINAL_CLOCK_STEPS,
    MAX_BYTES, MAX_EXPIRIES, RESPONSES,
};

/// How far past its capacity service A's output may grow: a response head is written whole
/// (under 256 bytes for the fields used here), a synthesized answer too (under 1 KiB), plus one
/// chunk's framing and the body's end.
pub const OUTPUT_OVERHEAD: usize = 2048;

/// Requests service A sends.
pub const REQUESTS: &[&[u8]] = &[
    b"GET /a HTTP/1.1\r\nHost: b.test\r\n\r\n",
    b"POST /p HTTP/1.1\r\nHost: b.test\r\nContent-Length: 5\r\n\r\nhello",
    b"POST /c HTTP/1.1\r\nHost: b.test\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
    b"PUT /u HTTP/1.1\r\nHost: b.test\r\nContent-Length: 10\r\n\r\nshort",
    b"GET /old HTTP/1.0\r\n\r\n",
    b"GET /close HTTP/1.1\r\nHost: b.test\r\nConnection: close\r\n\r\n",
    b"POST /e HTTP/1.1\r\nHost: b.test\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nok",
    b"GET /bad HTTP/1.1\r\nHost: b.test\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
    b"HEAD /h HTTP/1.1\r\nHost: b.test\r\n\r\n",
    b"GET /a HTT",
];

/// The peer's response heads: `(status, content-length)`; `None` status is an invalid section.
const HEADS: &[(Option<&str>, Option<&str>)] = &[
    (Some("200"), Some("5")),
    (Some("200"), None),
    (Some("204"), None),
    (Some("103"), None),
    (Some("404"), Some("0")),
    (None, None),
    (Some("200"), Some("10")),
];

#[derive(Default)]
struct Conn {
    input: Vec<u8>,
    eof: bool,
    output: Vec<u8>,
    /// What service A read.
    seen: Vec<u8>,
    cap: usize,
    received: u64,
    shut: bool,
    reset: bool,
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
        self.eof
    }
    fn write_room(&self) -> usize {
        self.cap.saturating_sub(self.output.len())
    }
    fn output(&mut self) -> &mut Vec<u8> {
        assert!(!self.shut, "output after the write side was shut");
        &mut self.output
    }
}

impl DownstreamConn for Conn {
    fn fill(&mut self) -> bool {
        false
    }
    fn flush(&mut self) -> bool {
        false
    }
    fn queue(&mut self, bytes: &[u8]) {
        assert!(!self.shut, "output after the write side was shut");
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

#[derive(Default)]
struct Session {
    refuse: Option<OpenRefused>,
    next: u64,
    opened: usize,
    incoming: HashMap<u64, Vec<u8>>,
}

impl SessionPort for Session {
    fn accepts(&self, _fields: &[H3Header]) -> bool {
        true
    }
    fn open_request(&mut self, _fields: &[H3Header], _fin: bool) -> Result<u64, OpenRefused> {
        if let Some(why) = &self.refuse {
            return Err(why.clone());
        }
        self.opened += 1;
        let id = self.next;
        self.next += 4;
        Ok(id)
    }
    fn send_body(
        &mut self,
        _id: u64,
        data: &[u8],
        _fin: bool,
    ) -> Result<Option<usize>, StreamFailed> {
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
    now: Instant,
    http: ClientHttpConfig,
    session: Session,
    session_up: bool,
    by_stream: HashMap<u64, usize>,
    metrics: Metrics,
    down: Downstream<Conn>,
    /// Output held when the capacity was last set.
    held_at_cap: usize,
    fed: usize,
    /// A's input holds `HEAD` somewhere.
    head_requests: bool,
}

impl World {
    fn with(&mut self, f: impl FnOnce(&mut Downstream<Conn>, &mut Ctx<'_>)) {
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
            why_down: "fuzz (down)",
            hold_bodies: false,
            by_stream: &mut self.by_stream,
            metrics: &mut self.metrics,
        };
        f(&mut self.down, &mut ctx);
        for _ in 0..super::exchange::MAX_YIELDS {
            if !self.down.more_work {
                return;
            }
            self.down.drive(&mut ctx);
        }
        panic!("drive keeps yielding: a busy loop");
    }

    fn drive(&mut self) {
        self.with(|d, ctx| d.drive(ctx));
    }

    /// The stream the downstream has open, if any.
    fn stream(&self) -> Option<u64> {
        self.by_stream.keys().copied().max()
    }

    fn advance(&mut self, by: Duration) {
        let to = self.now + by;
        for _ in 0..100_000 {
            match self.down.timers.next() {
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

    fn fire_due(&mut self) {
        for _ in 0..MAX_EXPIRIES {
            if self.down.timers.next().is_none_or(|at| at > self.now) {
                return;
            }
            self.with(|d, ctx| d.on_timer(ctx));
        }
        assert!(
            self.down.timers.next().is_none_or(|at| at > self.now),
            "a deadline still due after {MAX_EXPIRIES} expiries: a busy loop"
        );
    }

    fn a_sends(&mut self, bytes: &[u8]) {
        let conn = &mut self.down.tcp;
        if conn.eof {
            return;
        }
        let take = bytes.len().min(MAX_BYTES - self.fed);
        self.fed += take;
        conn.input.extend_from_slice(&bytes[..take]);
        conn.received += take as u64;
        self.head_requests |= bytes.windows(4).any(|w| w == b"HEAD");
    }

    fn peer_sends(&mut self, bytes: &[u8]) {
        let Some(id) = self.stream() else { return };
        let take = bytes.len().min(MAX_BYTES - self.fed);
        self.fed += take;
        self.session
            .incoming
            .entry(id)
            .or_default()
            .extend_from_slice(&bytes[..take]);
    }

    fn closed(&self) -> bool {
        matches!(
            self.down.phase,
            Phase::Closing | Phase::Lingering | Phase::Done
        )
    }

    /// The invariants that hold after every operation.
    fn check(&self) {
        let conn = &self.down.tcp;
        let limit = self.held_at_cap.max(conn.cap) + OUTPUT_OVERHEAD;
        assert!(
            conn.output.len() <= limit,
            "{} bytes held for service A, capacity {}",
            conn.output.len(),
            conn.cap
        );
        if self.down.is_done() {
            assert!(
                self.by_stream.is_empty(),
                "a done connection holds a stream"
            );
        }
        let mut all = conn.seen.clone();
        all.extend_from_slice(&conn.output);
        let closed = self.closed();
        let responses = read_responses(&all, "GET", closed);
        let finals = responses.len();
        assert!(
            finals <= self.session.opened + 1,
            "{finals} final responses for {} streams opened",
            self.session.opened
        );
        if closed && !conn.reset && !self.head_requests {
            if let Some(last) = responses.iter().find(|r| !r.complete) {
                panic!(
                    "the connection closes cleanly after an incomplete {} response ({} body bytes)",
                    last.status,
                    last.payload.len()
                );
            }
        }
    }
}

fn response_head(v: u8) -> Vec<H3Header> {
    let (status, length) = HEADS[usize::from(v) % HEADS.len()];
    let mut fields = Vec::new();
    match status {
        Some(s) => fields.push(H3Header::new(b":status", s.as_bytes())),
        None => fields.push(H3Header::new(b":path", b"/nope")),
    }
    if let Some(n) = length {
        fields.push(H3Header::new(b"content-length", n.as_bytes()));
    }
    fields.push(H3Header::new(b"server", b"fuzz"));
    fields
}

/// The client role of the `exchange` target (layout in the module doc).
pub fn client(reader: &mut Reader) {
    let a = reader.arg();
    let _ = reader.arg();
    let now = base_instant();
    let second = Duration::from_secs(1);
    let http = ClientHttpConfig {
        session_wait: 2 * second,
        max_connections: 16,
        head_timeout: 5 * second,
        keepalive_timeout: 10 * second,
        max_head_bytes: 16 * 1024,
        max_body_bytes: None,
        access_log: false,
        forwarding: Forwarding {
            forwarded: false,
            via: false,
            x_forwarded_for: false,
        },
        early_data_methods: Vec::new(),
        body_timeout: 3 * second,
    };
    let conn = Conn {
        cap: 64 * 1024,
        ..Conn::default()
    };
    let down = Downstream::new(
        conn,
        "127.0.0.1:40000".parse().expect("address"),
        &http,
        now,
    );
    let mut w = World {
        now,
        http,
        session: Session::default(),
        session_up: a.is_multiple_of(2),
        by_stream: HashMap::new(),
        metrics: Metrics::new("client", now),
        down,
        held_at_cap: 0,
        fed: 0,
        head_requests: false,
    };
    while let Some(op) = reader.byte() {
        step(&mut w, op, reader);
        w.check();
    }
    // The downstream has no timer of its own on a request the peer holds (the peer answers,
    // or the session dies of its idle timeout): the session goes away at the end.
    if w.stream().is_some() {
        w.with(|d, ctx| d.on_session_lost(ctx));
    }
    w.session_up = false;
    w.drive();
    w.check();
    for _ in 0..FINAL_CLOCK_STEPS {
        w.advance(FINAL_ADVANCE / FINAL_CLOCK_STEPS as u32);
        w.check();
    }
    assert!(
        w.down.is_idle() || w.closed(),
        "the downstream still carries a request 10 minutes after the script"
    );
}

fn step(w: &mut World, op: u8, reader: &mut Reader) {
    match op % 16 {
        0 => {
            let v = usize::from(reader.arg()) % REQUESTS.len();
            w.a_sends(REQUESTS[v]);
            w.drive();
        }
        1 => {
            let k = usize::from(reader.arg());
            let bytes = reader.bytes(k);
            w.a_sends(bytes);
            w.drive();
        }
        2 => {
            w.down.tcp.eof = true;
            w.drive();
        }
        3 => {
            let s = reader.arg() % 5;
            w.session_up = s != 1;
            w.session.refuse = match s {
                2 => Some(OpenRefused::Credit),
                3 => Some(OpenRefused::Streams),
                4 => Some(OpenRefused::Failed("fuzz".into())),
                _ => None,
            };
            w.drive();
        }
        4 => {
            let fields = response_head(reader.arg());
            let more = reader.arg() % 2 == 1;
            if w.stream().is_some() {
                w.with(|d, ctx| d.on_headers(ctx, &fields, more));
            }
        }
        5 => {
            let k = usize::from(reader.arg());
            let bytes = reader.bytes(k);
            w.peer_sends(bytes);
            w.drive();
        }
        6 => {
            if w.stream().is_some() {
                w.with(|d, ctx| d.on_finished(ctx));
            }
        }
        7 => {
            if w.stream().is_some() {
                w.with(|d, ctx| d.on_stream_failed(ctx, answers::peer_reset(0x10c)));
            }
        }
        8 => {
            if w.stream().is_some() {
                w.with(|d, ctx| d.on_session_lost(ctx));
            }
            w.session_up = false;
            w.drive();
        }
        9 => {
            w.down.tcp.cap = size(reader.arg());
            w.held_at_cap = w.down.tcp.output.len();
        }
        10 => {
            let conn = &mut w.down.tcp;
            let out = std::mem::take(&mut conn.output);
            conn.seen.extend_from_slice(&out);
            w.held_at_cap = 0;
            w.drive();
        }
        11 => {
            let by = clock_step(reader.arg(), false);
            w.advance(by);
        }
        12 => {
            let by = clock_step(reader.arg(), true);
            w.advance(by);
        }
        13 => w.drive(),
        14 => {
            let list = if reader.arg() % 2 == 1 {
                vec![H3Header::new(b":status", b"200")]
            } else {
                vec![H3Header::new(b"x-sum", b"1")]
            };
            if w.stream().is_some() {
                w.with(|d, ctx| d.on_headers(ctx, &list, false));
            }
        }
        _ => {
            let v = usize::from(reader.arg()) % RESPONSES.len();
            w.peer_sends(RESPONSES[v]);
            w.drive();
        }
    }
}
