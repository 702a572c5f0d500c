//! The `exchange` target, server role: `ptproxy::server::exchange::Exchange` on the shared
//! in-memory doubles of `ptproxy::testing::server` (a request stream that checks every frame as
//! it is sent, upstream connections and their pool).
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
use std::time::Duration;

use ptproxy::server::exchange::Outcome;
use ptproxy::testing::server::ServerRig;
use ptproxy::testing::{Clocked, MemConn};
use quiche::h3::Header as H3Header;

use super::exchange::{
    base_instant, clock_step, read_responses, size, ByteBudget, Reader, FINAL_ADVANCE,
    FINAL_CLOCK_STEPS, MAX_EXPIRIES, RESPONSES,
};

/// How far past its room an upstream output may grow in one operation: the request head is
/// written whole when the connection is ready (under 200 bytes for the fields used here), and
/// the request body pump may go 8 bytes over (one chunk's framing) and write the body's end
/// (`0\r\n`, trailers, `\r\n`: under 64 bytes here) in full.
pub const OUTPUT_OVERHEAD: usize = 512;

const METHODS: &[&str] = &["GET", "HEAD", "POST", "PUT", "DELETE", ""];

/// The exchange on the shared doubles (`ptproxy::testing::server`: the stream checks frame
/// order itself), plus what the end-of-exchange checks need.
struct World {
    rig: ServerRig,
    method: &'static str,
    /// The end of the exchange was checked.
    checked: bool,
    /// Bytes from the peer and the upstream, within the per-input cap ([`ByteBudget`]).
    budget: ByteBudget,
}

impl World {
    /// Once the exchange is over: the stream must hold a complete answer or a reset.
    fn check_finished(&mut self) {
        if !self.rig.finished || self.checked {
            return;
        }
        self.checked = true;
        let s = &self.rig.stream;
        assert!(
            s.reset.is_some() || (s.final_head().is_some() && s.fin),
            "finished without an answer and FIN or a reset (heads {}, fin {})",
            s.heads.len(),
            s.fin
        );
        self.check_clean_end();
    }

    /// A clean FIN after the upstream's head: the upstream's whole body, nothing less.
    fn check_clean_end(&self) {
        let s = &self.rig.stream;
        if !s.fin || s.is_synthesized() || s.final_head().is_none() {
            return;
        }
        let conn = self
            .rig
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

    fn advance(&mut self, by: Duration) {
        self.rig.advance(by, MAX_EXPIRIES);
    }

    fn feed(&mut self, bytes: &[u8]) {
        let bytes = self.budget.take(bytes);
        self.rig.stream.incoming.extend_from_slice(bytes);
    }

    fn upstream_sends(&mut self, bytes: &[u8]) {
        let bytes = self.budget.take(bytes);
        if let Some(c) = self.rig.pool.latest() {
            c.send(bytes);
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
    let mut rig = ServerRig::new(
        base_instant(),
        Duration::from_secs(2),
        Duration::from_secs(5),
    );
    if a & 32 != 0 {
        rig.pool.next = Some(MemConn::pooled());
    }
    let mut w = World {
        rig,
        method,
        checked: false,
        budget: ByteBudget::default(),
    };
    let mut extra = Vec::new();
    if a & 16 != 0 {
        extra.push(H3Header::new(
            b"content-length",
            length.to_string().as_bytes(),
        ));
    }
    w.rig.start(method, &extra, a & 8 != 0);
    w.check_finished();
    while let Some(op) = reader.byte() {
        step(&mut w, op, reader);
        w.check_finished();
    }
    for _ in 0..FINAL_CLOCK_STEPS {
        if w.rig.finished {
            break;
        }
        w.advance(FINAL_ADVANCE / FINAL_CLOCK_STEPS as u32);
        w.check_finished();
    }
    assert!(
        w.rig.finished,
        "the exchange still runs 10 minutes after the script"
    );
}

/// One operation, then a drive (as the reactor drives an exchange after any event).
fn step(w: &mut World, op: u8, reader: &mut Reader) {
    let before = w.rig.pool.latest_key().map(|i| {
        let c = &w.rig.pool.conns[i];
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
            if let Some(ex) = w.rig.exchange.as_mut() {
                ex.on_finished();
            }
        }
        3 => {
            let list = trailers(reader.arg());
            w.rig.run(|ex, ctx| match ex.on_trailers(&list) {
                Outcome::Finished => ex.abort(ctx),
                other => other,
            });
        }
        4 => {
            w.rig.run(|ex, ctx| ex.abort(ctx));
        }
        5 => {
            let c = reader.arg();
            if let Some(conn) = w.rig.pool.latest() {
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
            if let Some(c) = w.rig.pool.latest() {
                c.ended = true;
            }
        }
        9 => {
            let r = reader.arg();
            limits_changed = true;
            if let Some(c) = w.rig.pool.latest() {
                c.cap = size(r);
            }
        }
        10 => {
            let r = reader.arg();
            limits_changed = true;
            if let Some(c) = w.rig.pool.latest() {
                c.reads = match r {
                    255 => usize::MAX,
                    0 => 0,
                    r => c.reads.saturating_add(size(r)),
                };
            }
        }
        11 => w.rig.stream.blocked = reader.arg() % 2 == 1,
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
            w.rig.stream.per_call = Some(size(reader.arg()));
        }
    }
    w.rig.drive();
    check_output(w, before, limits_changed);
}

/// The latest connection's output stays within its room (see [`OUTPUT_OVERHEAD`]).
fn check_output(
    w: &World,
    before: Option<(usize, usize, usize, usize, usize)>,
    limits_changed: bool,
) {
    let Some((index, held, written, cap, reads)) = before else {
        return;
    };
    let c = &w.rig.pool.conns[index];
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
