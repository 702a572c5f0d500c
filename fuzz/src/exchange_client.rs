//! The `exchange` target, client role: `ptproxy::client::downstream::Downstream` on the shared
//! in-memory doubles of `ptproxy::testing::client` (service A's connection, the session).
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

use std::time::Duration;

use ptproxy::bridge::answers;
use ptproxy::bridge::stream::OpenRefused;
use ptproxy::client::downstream::Phase;
use ptproxy::testing::client::ClientRig;
use ptproxy::testing::Clocked;
use quiche::h3::Header as H3Header;

use super::exchange::{
    base_instant, clock_step, read_responses, size, ByteBudget, Reader, FINAL_ADVANCE,
    FINAL_CLOCK_STEPS, MAX_EXPIRIES, RESPONSES,
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

/// The downstream on the shared doubles (`ptproxy::testing::client`), plus what the checks
/// need.
struct World {
    rig: ClientRig,
    /// Output held when the capacity was last set.
    held_at_cap: usize,
    /// Bytes from service A and the peer, within the per-input cap ([`ByteBudget`]).
    budget: ByteBudget,
    /// A's input holds `HEAD` somewhere.
    head_requests: bool,
}

impl World {
    fn advance(&mut self, by: Duration) {
        self.rig.advance(by, MAX_EXPIRIES);
    }

    fn a_sends(&mut self, bytes: &[u8]) {
        if self.rig.down.tcp.ended {
            return;
        }
        self.head_requests |= bytes.windows(4).any(|w| w == b"HEAD");
        let bytes = self.budget.take(bytes);
        self.rig.down.tcp.send(bytes);
    }

    fn peer_sends(&mut self, bytes: &[u8]) {
        let Some(id) = self.rig.stream() else { return };
        let bytes = self.budget.take(bytes);
        self.rig
            .link
            .session
            .incoming
            .entry(id)
            .or_default()
            .extend_from_slice(bytes);
    }

    fn closed(&self) -> bool {
        matches!(
            self.rig.down.phase,
            Phase::Closing | Phase::Lingering | Phase::Done
        )
    }

    /// The invariants that hold after every operation.
    fn check(&self) {
        let conn = &self.rig.down.tcp;
        let limit = self.held_at_cap.max(conn.cap) + OUTPUT_OVERHEAD;
        assert!(
            conn.output.len() <= limit,
            "{} bytes held for service A, capacity {}",
            conn.output.len(),
            conn.cap
        );
        if self.rig.down.is_done() {
            assert!(
                self.rig.streams.is_empty(),
                "a done connection holds a stream"
            );
        }
        let mut all = conn.read.clone();
        all.extend_from_slice(&conn.output);
        let closed = self.closed();
        let responses = read_responses(&all, "GET", closed);
        let finals = responses.len();
        let opened = self.rig.link.session.opened.len();
        assert!(
            finals <= opened + 1,
            "{finals} final responses for {opened} streams opened",
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
    let mut rig = ClientRig::new(base_instant(), 64 * 1024);
    rig.link.up = a.is_multiple_of(2);
    let mut w = World {
        rig,
        held_at_cap: 0,
        budget: ByteBudget::default(),
        head_requests: false,
    };
    while let Some(op) = reader.byte() {
        step(&mut w, op, reader);
        w.check();
    }
    // The downstream has no timer of its own on a request the peer holds (the peer answers,
    // or the session dies of its idle timeout): the session goes away at the end.
    if w.rig.stream().is_some() {
        w.rig.with(|d, ctx| d.on_session_lost(ctx));
    }
    w.rig.link.up = false;
    w.rig.drive();
    w.check();
    for _ in 0..FINAL_CLOCK_STEPS {
        w.advance(FINAL_ADVANCE / FINAL_CLOCK_STEPS as u32);
        w.check();
    }
    assert!(
        w.rig.down.is_idle() || w.closed(),
        "the downstream still carries a request 10 minutes after the script"
    );
}

fn step(w: &mut World, op: u8, reader: &mut Reader) {
    match op % 16 {
        0 => {
            let v = usize::from(reader.arg()) % REQUESTS.len();
            w.a_sends(REQUESTS[v]);
            w.rig.drive();
        }
        1 => {
            let k = usize::from(reader.arg());
            let bytes = reader.bytes(k);
            w.a_sends(bytes);
            w.rig.drive();
        }
        2 => {
            w.rig.down.tcp.ended = true;
            w.rig.drive();
        }
        3 => {
            let s = reader.arg() % 5;
            w.rig.link.up = s != 1;
            w.rig.link.session.refuse = match s {
                2 => Some(OpenRefused::Credit),
                3 => Some(OpenRefused::Streams),
                4 => Some(OpenRefused::Failed("fuzz".into())),
                _ => None,
            };
            w.rig.drive();
        }
        4 => {
            let fields = response_head(reader.arg());
            let more = reader.arg() % 2 == 1;
            if w.rig.stream().is_some() {
                w.rig.with(|d, ctx| d.on_headers(ctx, &fields, more));
            }
        }
        5 => {
            let k = usize::from(reader.arg());
            let bytes = reader.bytes(k);
            w.peer_sends(bytes);
            w.rig.drive();
        }
        6 => {
            if w.rig.stream().is_some() {
                w.rig.with(|d, ctx| d.on_finished(ctx));
            }
        }
        7 => {
            if w.rig.stream().is_some() {
                w.rig
                    .with(|d, ctx| d.on_stream_failed(ctx, answers::peer_reset(0x10c)));
            }
        }
        8 => {
            if w.rig.stream().is_some() {
                w.rig.with(|d, ctx| d.on_session_lost(ctx));
            }
            w.rig.link.up = false;
            w.rig.drive();
        }
        9 => {
            w.rig.down.tcp.cap = size(reader.arg());
            w.held_at_cap = w.rig.down.tcp.output.len();
        }
        10 => {
            w.rig.down.tcp.read_all();
            w.held_at_cap = 0;
            w.rig.drive();
        }
        11 => {
            let by = clock_step(reader.arg(), false);
            w.advance(by);
        }
        12 => {
            let by = clock_step(reader.arg(), true);
            w.advance(by);
        }
        13 => w.rig.drive(),
        14 => {
            let list = if reader.arg() % 2 == 1 {
                vec![H3Header::new(b":status", b"200")]
            } else {
                vec![H3Header::new(b"x-sum", b"1")]
            };
            if w.rig.stream().is_some() {
                w.rig.with(|d, ctx| d.on_headers(ctx, &list, false));
            }
        }
        _ => {
            let v = usize::from(reader.arg()) % RESPONSES.len();
            w.peer_sends(RESPONSES[v]);
            w.rig.drive();
        }
    }
}
