//! The `body_pumps` target: the two body pumps of `ptproxy::bridge::pump` driven by a script of
//! operations against in-memory sides, checking after every step that the bytes that leave are
//! exactly the ones an independent decode of the same input gives, within the room granted.
//!
//! Input layout: `[mode] [n0 n1 n2] [limit] ops...` (a missing byte counts as 0).
//!
//! - `mode % 8` picks the pump and the framing: 0..=3 `H1ToH3` with `BodyFraming::{None,
//!   ContentLength(n), Chunked, UntilClose}`; 4..=7 `H3ToH1` with `BodyEncoding::{None,
//!   ContentLength(n), Chunked, UntilClose}`. `n` is `n0 | n1 << 8 | n2 << 16`.
//! - `limit` (`H1ToH3` only): 0 no limit, else `Some(size(limit - 1))` (see [`size`]).
//! - Each op is an opcode byte (`% 8`) and its arguments; the script ends with the input.
//!
//! | op | `H1ToH3` (HTTP/1.1 body in) | `H3ToH1` (stream data in) |
//! |---|---|---|
//! | 0 `k bytes` | feed the next `k` input bytes to the HTTP/1.1 side | deliver them on the stream |
//! | 1 `b c` | feed `(c + 1) * 512` bytes `b` | deliver them |
//! | 2 | the HTTP/1.1 input ends (EOF) | the stream ends (FIN after its data) |
//! | 3 `c` | stream capacity per call: `size(c)` (0 = blocked) | stream bytes per read: `size(c)` |
//! | 4 `b` | stream credit in all: `size(b)`, 255 = unlimited | HTTP/1.1 output room `size(b)` |
//! | 5 | step | step |
//! | 6 | step | the socket writes out everything queued |
//! | 7 | the stream's next call fails | trailers: set `b % 4` of [`trailer_set`] |
//!
//! Fed bytes stop at [`MAX_BYTES`]. After the script, unless the pump failed, the receiving
//! side gets unlimited room and the pump is stepped until it stalls (at most [`FINAL_STEPS`]
//! times); then the outcome must be the one the framing dictates.
//!
//! Checks, `H1ToH3` (the oracle decodes all fed bytes at once with `BodyDecoder`, then
//! `at_eof` if the input ended):
//! - the payload sent equals a prefix of the oracle's payload, `sent` counts it, and it never
//!   exceeds the limit; what the pump consumed decodes (a second decoder) to at most
//!   `BODY_CHUNK` bytes more than it sent, and no `send_body` call carries more than that;
//! - FIN (bare or with trailers) comes once, nothing after it (the sink panics otherwise), only
//!   with the whole body: the oracle is done, all its payload sent, its trailers (as
//!   `trailers_to_h3`) sent as the trailer section; `is_done()` is exactly "FIN sent";
//! - an error never comes with FIN: `Body(e)` is the oracle's error (a truncated body is
//!   `Truncated`), `TooLarge` only for a payload over the limit, `Stream` only after an
//!   injected failure; `Ok(false)` moved nothing; `waits_for_input()` only with nothing
//!   pending and the input not ended;
//! - after the final steps without error: everything the oracle decoded was sent, the pump is
//!   done exactly when the oracle is, the bytes after the body are left in the input.
//!
//! Checks, `H3ToH1` (a `BodyDecoder` for the same framing reads everything written):
//! - a step writes nothing when the room is 0; otherwise at most the room, plus for chunked
//!   8 bytes (one chunk's size line and CRLFs: a read is at most 16 KiB, 4 hex digits), or,
//!   in the step that writes the end, at most `room - 1` plus the end itself (`0\r\n`, the
//!   trailer fields, `\r\n`);
//! - all written bytes decode, none after the body's end, to exactly the payload the pump
//!   read from the stream (`received` of it; all of it unless the step failed);
//! - the end is written only after `on_finished` (the stream ended and all its data was
//!   read), once; chunked: with the trailers set; Content-Length: after exactly `n` bytes;
//! - `TooLong` only when the stream gave more than `n` (or any data for `None`),
//!   `Truncated` only when it ended short of `n`; neither writes an end;
//! - after the final steps without error: the stream gave at most `n` (exactly `n` if it
//!   ended), the end was written exactly when the stream ended.

use ptproxy::bridge::headers::trailers_to_h3;
use ptproxy::bridge::pump::{
    H1Buffers, H1ToH3, H1ToH3Error, H3ToH1, H3ToH1Error, StreamFailed, StreamSink, StreamSource,
    BODY_CHUNK,
};
use ptproxy::h1::{BodyDecoder, BodyEncoder, BodyEncoding, BodyError, BodyFraming, Header};
use quiche::h3::Header as H3Header;

/// Cap on the bytes fed to the HTTP/1.1 side or delivered on the stream, per input.
pub const MAX_BYTES: usize = 1 << 20;
/// Steps after the script, with unlimited room; each step moves all it can, so 8 is plenty.
pub const FINAL_STEPS: usize = 8;
/// Chunked framing around one chunk of at most 16 KiB (the pump's read size): `XXXX\r\n` and
/// `\r\n`.
const CHUNK_OVERHEAD: usize = 8;
/// Room and capacity of the final steps ("unlimited", with space left for the sums above).
const UNLIMITED: usize = 1 << 40;

/// A size from one byte: 0..=127 as is, 128..=255 as 1 KiB..=128 KiB.
pub fn size(b: u8) -> usize {
    match b {
        0..=127 => usize::from(b),
        _ => (usize::from(b) - 127) * 1024,
    }
}

/// The trailer sections op 7 of `H3ToH1` chooses from.
pub fn trailer_set(index: u8) -> Vec<Header> {
    match index % 4 {
        0 => Vec::new(),
        1 => vec![Header::new("x-checksum", "abc")],
        2 => vec![Header::new("x-a", "1"), Header::new("X-B", "two words")],
        _ => vec![Header::new("etag", "\"v1\"")],
    }
}

/// One decoded operation; its meaning depends on the pump (see the module table).
#[derive(Debug, Clone, Copy)]
enum Op<'a> {
    Bytes(&'a [u8]),
    Fill(u8, usize),
    End,
    Capacity(usize),
    /// `H1ToH3`: stream credit (`None` unlimited); `H3ToH1`: output room.
    Credit(Option<usize>),
    Step,
    /// `H1ToH3`: step; `H3ToH1`: drain the output.
    Six,
    /// `H1ToH3`: fail the next stream call; `H3ToH1`: set trailers.
    Seven(u8),
}

/// Reads the input front to back; every op takes at least one byte, so a script has at most
/// `data.len()` ops.
struct Reader<'a> {
    data: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn byte(&mut self) -> Option<u8> {
        let b = self.data.get(self.at).copied();
        self.at += 1;
        b
    }

    fn arg(&mut self) -> u8 {
        self.byte().unwrap_or(0)
    }

    fn bytes(&mut self, k: usize) -> &'a [u8] {
        let start = self.at.min(self.data.len());
        let end = start.saturating_add(k).min(self.data.len());
        self.at = end;
        &self.data[start..end]
    }

    fn op(&mut self) -> Option<Op<'a>> {
        Some(match self.byte()? % 8 {
            0 => {
                let k = usize::from(self.arg());
                Op::Bytes(self.bytes(k))
            }
            1 => Op::Fill(self.arg(), (usize::from(self.arg()) + 1) * 512),
            2 => Op::End,
            3 => Op::Capacity(size(self.arg())),
            4 => match self.arg() {
                255 => Op::Credit(None),
                b => Op::Credit(Some(size(b))),
            },
            5 => Op::Step,
            6 => Op::Six,
            _ => Op::Seven(self.arg()),
        })
    }
}

/// Runs the `body_pumps` checks on one input (layout in the module doc).
pub fn body_pumps(data: &[u8]) {
    let mut reader = Reader { data, at: 0 };
    let mode = reader.arg() % 8;
    let n = u64::from(reader.arg()) | u64::from(reader.arg()) << 8 | u64::from(reader.arg()) << 16;
    let limit = match reader.arg() {
        0 => None,
        b => Some(size(b - 1) as u64),
    };
    let ops: Vec<Op> = std::iter::from_fn(|| reader.op()).collect();
    match mode {
        0 => h1_to_h3(BodyFraming::None, limit, &ops),
        1 => h1_to_h3(BodyFraming::ContentLength(n), limit, &ops),
        2 => h1_to_h3(BodyFraming::Chunked, limit, &ops),
        3 => h1_to_h3(BodyFraming::UntilClose, limit, &ops),
        4 => h3_to_h1(BodyEncoding::None, &ops),
        5 => h3_to_h1(BodyEncoding::ContentLength(n), &ops),
        6 => h3_to_h1(BodyEncoding::Chunked, &ops),
        _ => h3_to_h1(BodyEncoding::UntilClose, &ops),
    }
}

/// Appends the bytes of a `Bytes` / `Fill` op to `all`, up to [`MAX_BYTES`] in all; returns the
/// appended part.
fn append<'v>(op: &Op, all: &'v mut Vec<u8>) -> &'v [u8] {
    let start = all.len();
    let room = MAX_BYTES - start;
    match *op {
        Op::Bytes(bytes) => all.extend_from_slice(&bytes[..bytes.len().min(room)]),
        Op::Fill(b, count) => all.resize(start + count.min(room), b),
        _ => {}
    }
    &all[start..]
}

/// An HTTP/1.1 side: input fed by the script, output bounded by `room`.
#[derive(Default)]
struct H1Side {
    input: Vec<u8>,
    /// Input bytes consumed so far.
    consumed: usize,
    ended: bool,
    output: Vec<u8>,
    room: usize,
}

impl H1Buffers for H1Side {
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
        self.consumed += n;
    }
    fn input_ended(&self) -> bool {
        self.ended
    }
    fn write_room(&self) -> usize {
        self.room.saturating_sub(self.output.len())
    }
    fn output(&mut self) -> &mut Vec<u8> {
        &mut self.output
    }
}

fn injected() -> StreamFailed {
    StreamFailed {
        cancelled: true,
        detail: "injected".into(),
    }
}

/// The sending half of a stream: takes at most `capacity` bytes per call and `credit` in all.
#[derive(Default)]
struct Sink {
    capacity: usize,
    credit: Option<usize>,
    fail_next: bool,
    /// An injected failure was returned.
    failed: bool,
    data: Vec<u8>,
    fin: bool,
    trailers: Option<Vec<H3Header>>,
}

impl Sink {
    fn open(&self) -> usize {
        self.capacity.min(self.credit.unwrap_or(usize::MAX))
    }

    fn fail(&mut self) -> Result<(), StreamFailed> {
        if std::mem::take(&mut self.fail_next) {
            self.failed = true;
            return Err(injected());
        }
        Ok(())
    }
}

impl StreamSink for Sink {
    fn send_body(&mut self, data: &[u8], fin: bool) -> Result<Option<usize>, StreamFailed> {
        assert!(!self.fin, "send_body after FIN");
        assert!(data.len() <= BODY_CHUNK, "pending chunk of {}", data.len());
        self.fail()?;
        if self.open() == 0 {
            return Ok(None);
        }
        let n = data.len().min(self.open());
        self.credit = self.credit.map(|c| c - n);
        self.data.extend_from_slice(&data[..n]);
        self.fin = fin && n == data.len();
        Ok(Some(n))
    }

    fn send_trailers(&mut self, fields: &[H3Header]) -> Result<bool, StreamFailed> {
        assert!(!self.fin, "trailers after FIN");
        self.fail()?;
        if self.open() == 0 {
            return Ok(false);
        }
        self.trailers = Some(fields.to_vec());
        self.fin = true;
        Ok(true)
    }
}

/// What a one-shot decode of all the fed bytes gives.
struct Oracle {
    payload: Vec<u8>,
    consumed: usize,
    done: bool,
    /// The trailer section due on the stream (`None`: a bare FIN).
    trailers: Option<Vec<H3Header>>,
    error: Option<BodyError>,
}

fn oracle(framing: BodyFraming, wire: &[u8], ended: bool) -> Oracle {
    let mut decoder = BodyDecoder::new(framing);
    let mut payload = Vec::new();
    let mut result = decoder.decode(wire, &mut payload, usize::MAX);
    if result.is_ok() && !decoder.is_done() && ended {
        result = decoder.at_eof().map(|()| wire.len());
    }
    let trailers = trailers_to_h3(&decoder.take_trailers());
    Oracle {
        payload,
        consumed: result.clone().unwrap_or(0),
        done: decoder.is_done(),
        trailers: (!trailers.is_empty()).then_some(trailers),
        error: result.err(),
    }
}

/// `H1ToH3` under test with its sides and the checks' state.
struct H1ToH3Run {
    pump: H1ToH3,
    h1: H1Side,
    sink: Sink,
    limit: Option<u64>,
    /// Every byte fed to the HTTP/1.1 side.
    fed: Vec<u8>,
    /// What the oracle decoded: all that the script feeds.
    wire: Vec<u8>,
    oracle: Oracle,
    /// Decodes what the pump consumed, to know what it holds.
    shadow: BodyDecoder,
    shadow_at: usize,
    shadow_payload: Vec<u8>,
}

fn h1_to_h3(framing: BodyFraming, limit: Option<u64>, ops: &[Op]) {
    let mut wire = Vec::new();
    for op in ops.iter().take_while(|op| !matches!(op, Op::End)) {
        append(op, &mut wire);
    }
    let ended = ops.iter().any(|op| matches!(op, Op::End));
    let mut run = H1ToH3Run {
        pump: H1ToH3::new(framing, limit),
        h1: H1Side::default(),
        sink: Sink::default(),
        limit,
        fed: Vec::new(),
        oracle: oracle(framing, &wire, ended),
        wire,
        shadow: BodyDecoder::new(framing),
        shadow_at: 0,
        shadow_payload: Vec::new(),
    };
    if run.play(ops).and_then(|()| run.final_steps()).is_ok() {
        run.check_final();
    }
}

/// Steps after the script until the pump stalls, at most [`FINAL_STEPS`]; `Err` as for a step.
fn final_steps(mut step: impl FnMut() -> Result<bool, ()>) -> Result<(), ()> {
    for _ in 0..FINAL_STEPS {
        if !step()? {
            break;
        }
    }
    Ok(())
}

impl H1ToH3Run {
    /// Runs the script; `Err` once the pump failed (it is then dropped, as the proxy drops
    /// the exchange).
    fn play(&mut self, ops: &[Op]) -> Result<(), ()> {
        for op in ops {
            match *op {
                Op::Bytes(_) | Op::Fill(..) if !self.h1.ended => {
                    let piece = append(op, &mut self.fed);
                    self.h1.input.extend_from_slice(piece);
                }
                Op::End => self.h1.ended = true,
                Op::Capacity(c) => self.sink.capacity = c,
                Op::Credit(c) => self.sink.credit = c,
                Op::Step | Op::Six => {
                    self.step()?;
                }
                Op::Seven(_) => self.sink.fail_next = true,
                _ => {}
            }
        }
        Ok(())
    }

    /// The stream takes everything from now on.
    fn final_steps(&mut self) -> Result<(), ()> {
        assert!(self.fed == self.wire, "the oracle saw other bytes");
        self.sink.capacity = UNLIMITED;
        self.sink.credit = None;
        self.sink.fail_next = false;
        final_steps(|| self.step())
    }

    /// One `step` and the checks after it; `Err` when the pump failed (it is then dropped,
    /// as the proxy drops the exchange).
    fn step(&mut self) -> Result<bool, ()> {
        let before = (
            self.h1.consumed,
            self.sink.data.len(),
            self.sink.fin,
            self.sink.trailers.is_some(),
        );
        let result = self.pump.step(&mut self.h1, &mut self.sink);
        self.follow_consumed();
        self.check_sent();
        match result {
            Ok(true) => Ok(true),
            Ok(false) => {
                let after = (
                    self.h1.consumed,
                    self.sink.data.len(),
                    self.sink.fin,
                    self.sink.trailers.is_some(),
                );
                assert_eq!(before, after, "Ok(false) but something moved");
                Ok(false)
            }
            Err(error) => {
                self.check_error(error);
                Err(())
            }
        }
    }

    /// Feeds the bytes the pump consumed since the last step to the shadow decoder.
    fn follow_consumed(&mut self) {
        let fresh = &self.fed[self.shadow_at..self.h1.consumed];
        let mut used = 0;
        loop {
            let result = self
                .shadow
                .decode(&fresh[used..], &mut self.shadow_payload, usize::MAX);
            match result {
                Ok(0) => break,
                Ok(n) => used += n,
                Err(e) => panic!("the pump consumed bytes that do not decode: {e:?}"),
            }
        }
        assert_eq!(used, fresh.len(), "the consumed bytes stop mid-way");
        self.shadow_at = self.h1.consumed;
    }

    fn check_sent(&self) {
        let sent = &self.sink.data;
        assert_eq!(self.pump.sent, sent.len() as u64, "sent counts the payload");
        assert!(
            self.shadow_payload.starts_with(sent),
            "sent payload is not what was decoded"
        );
        let pending = self.shadow_payload.len() - sent.len();
        assert!(pending <= BODY_CHUNK, "{pending} decoded bytes pending");
        if let Some(max) = self.limit {
            assert!(
                sent.len() as u64 <= max,
                "{} sent over limit {max}",
                sent.len()
            );
        }
        assert_eq!(self.sink.fin, self.pump.is_done(), "is_done() is FIN sent");
        if self.sink.fin {
            assert!(self.oracle.done, "FIN before the body's end");
            assert!(
                *sent == self.oracle.payload,
                "FIN without the whole payload"
            );
            assert_eq!(self.sink.trailers, self.oracle.trailers, "trailer section");
        }
        if self.pump.waits_for_input() {
            assert!(!self.h1.ended, "waits for input after EOF");
            assert_eq!(pending, 0, "waits for input with payload pending");
        }
    }

    fn check_error(&self, error: H1ToH3Error) {
        assert!(
            !self.sink.fin && !self.pump.is_done(),
            "{error:?} after FIN"
        );
        match error {
            H1ToH3Error::Body(e) => assert_eq!(Some(e), self.oracle.error, "body error"),
            H1ToH3Error::TooLarge(max) => {
                assert_eq!(Some(max), self.limit, "TooLarge names the limit");
                assert!(
                    self.oracle.payload.len() as u64 > max,
                    "TooLarge for a payload of {} <= {max}",
                    self.oracle.payload.len()
                );
            }
            H1ToH3Error::Stream(e) => {
                assert!(self.sink.failed && e == injected(), "stream error {e:?}")
            }
        }
    }

    /// The pump stalled with unlimited stream room and saw all input: it is where the oracle is.
    fn check_final(&self) {
        let oracle = &self.oracle;
        assert_eq!(oracle.error, None, "the pump missed the body's error");
        if let Some(max) = self.limit {
            assert!(
                oracle.payload.len() as u64 <= max,
                "the pump missed the limit"
            );
        }
        assert!(self.sink.data == oracle.payload, "payload not all sent");
        assert_eq!(self.pump.is_done(), oracle.done, "done");
        if oracle.done {
            assert_eq!(self.h1.consumed, oracle.consumed, "bytes after the body");
        } else {
            assert!(
                self.pump.waits_for_input(),
                "stalled but not waiting for input"
            );
        }
    }
}

/// The receiving half of a stream: `incoming` is read at most `capacity` bytes per call.
#[derive(Default)]
struct Source {
    incoming: Vec<u8>,
    capacity: usize,
    /// Everything `recv_body` returned.
    read: Vec<u8>,
    /// The stream's FIN came (after `incoming`).
    ended: bool,
}

impl StreamSource for Source {
    fn recv_body(&mut self, buf: &mut [u8]) -> Result<usize, StreamFailed> {
        let n = buf.len().min(self.incoming.len()).min(self.capacity);
        buf[..n].copy_from_slice(&self.incoming[..n]);
        self.read.extend(self.incoming.drain(..n));
        Ok(n)
    }
}

/// `H3ToH1` under test with its sides and the checks' state.
struct H3ToH1Run {
    encoding: BodyEncoding,
    pump: H3ToH1,
    source: Source,
    h1: H1Side,
    /// Every byte delivered on the stream.
    delivered: Vec<u8>,
    trailers: Vec<Header>,
    /// Decodes everything the pump wrote.
    checker: BodyDecoder,
    decoded: Vec<u8>,
}

fn framing_of(encoding: BodyEncoding) -> BodyFraming {
    match encoding {
        BodyEncoding::None => BodyFraming::None,
        BodyEncoding::ContentLength(n) => BodyFraming::ContentLength(n),
        BodyEncoding::Chunked => BodyFraming::Chunked,
        BodyEncoding::UntilClose => BodyFraming::UntilClose,
    }
}

fn h3_to_h1(encoding: BodyEncoding, ops: &[Op]) {
    let mut run = H3ToH1Run {
        encoding,
        pump: H3ToH1::new(encoding),
        source: Source::default(),
        h1: H1Side::default(),
        delivered: Vec::new(),
        trailers: Vec::new(),
        checker: BodyDecoder::new(framing_of(encoding)),
        decoded: Vec::new(),
    };
    if run.play(ops).and_then(|()| run.final_steps()).is_ok() {
        run.check_final();
    }
}

impl H3ToH1Run {
    /// Runs the script; `Err` once the pump failed (it is then dropped).
    fn play(&mut self, ops: &[Op]) -> Result<(), ()> {
        for op in ops {
            match *op {
                Op::Bytes(_) | Op::Fill(..) if !self.source.ended => {
                    let piece = append(op, &mut self.delivered);
                    self.source.incoming.extend_from_slice(piece);
                }
                Op::End => self.source.ended = true,
                Op::Capacity(c) => self.source.capacity = c,
                Op::Credit(room) => self.h1.room = room.unwrap_or(UNLIMITED),
                Op::Step => {
                    self.step()?;
                }
                Op::Six => self.h1.output.clear(),
                Op::Seven(b) => {
                    self.trailers = trailer_set(b);
                    self.pump.set_trailers(self.trailers.clone());
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// The stream is read and the output written without limit from now on (the output is
    /// written out before each step).
    fn final_steps(&mut self) -> Result<(), ()> {
        self.source.capacity = UNLIMITED;
        self.h1.room = UNLIMITED;
        final_steps(|| {
            self.h1.output.clear();
            self.step()
        })
    }

    /// `on_finished` once the stream ended and its data was read, one `step`, and the checks
    /// after it; `Err` when the pump failed (it is then dropped).
    fn step(&mut self) -> Result<bool, ()> {
        if self.source.ended && self.source.incoming.is_empty() && !self.pump.is_finished() {
            self.pump.on_finished();
        }
        let was_done = self.pump.is_done();
        let room = self.h1.write_room();
        let out_before = self.h1.output.len();
        let read_before = self.source.read.len();
        let result = self.pump.step(&mut self.source, &mut self.h1);
        let written = self.h1.output[out_before..].to_vec();
        let ended_now = self.pump.is_done() && !was_done;
        self.check_room(room, written.len(), ended_now);
        self.follow_written(&written);
        if ended_now {
            self.check_end();
        }
        match result {
            Ok(progress) => {
                assert_eq!(
                    self.pump.received,
                    self.source.read.len() as u64,
                    "read but not written"
                );
                let moved = !written.is_empty() || self.source.read.len() > read_before;
                assert!(progress || !moved, "Ok(false) but something moved");
                Ok(progress)
            }
            Err(error) => {
                self.check_error(error);
                Err(())
            }
        }
    }

    /// The bytes of the body's end for the current trailers (0 unless chunked).
    fn end_len(&self) -> usize {
        let mut end = Vec::new();
        if self.encoding == BodyEncoding::Chunked {
            let mut encoder = BodyEncoder::new(BodyEncoding::Chunked);
            encoder.finish(&self.trailers, &mut end).expect("finish");
        }
        end.len()
    }

    fn check_room(&self, room: usize, written: usize, ended_now: bool) {
        if room == 0 {
            assert_eq!(written, 0, "wrote without room");
            return;
        }
        let bound = match self.encoding {
            BodyEncoding::Chunked if ended_now => room - 1 + self.end_len(),
            BodyEncoding::Chunked => room + CHUNK_OVERHEAD,
            _ => room,
        };
        assert!(written <= bound, "wrote {written} with room {room}");
    }

    /// Decodes the freshly written bytes: all of them belong to the body, and what they carry
    /// is what was read from the stream.
    fn follow_written(&mut self, written: &[u8]) {
        let used = self
            .checker
            .decode(written, &mut self.decoded, usize::MAX)
            .unwrap_or_else(|e| panic!("written body does not decode: {e:?}"));
        assert_eq!(used, written.len(), "bytes written after the body's end");
        let received = usize::try_from(self.pump.received).expect("received");
        assert_eq!(self.decoded.len(), received, "received counts the payload");
        assert!(
            self.decoded[..] == self.source.read[..received],
            "written payload differs from the stream's"
        );
        if self.encoding == BodyEncoding::Chunked && self.checker.is_done() {
            assert!(self.pump.is_done(), "last chunk written but not done");
        }
    }

    /// The end was written (in this step): after the stream ended, with the whole body.
    fn check_end(&mut self) {
        assert!(self.pump.is_finished(), "body ended before the stream did");
        assert!(self.source.incoming.is_empty(), "ended with data unread");
        match self.encoding {
            BodyEncoding::Chunked | BodyEncoding::ContentLength(_) | BodyEncoding::None => {
                assert!(self.checker.is_done(), "done without the body's end")
            }
            BodyEncoding::UntilClose => {}
        }
        if self.encoding == BodyEncoding::Chunked {
            assert_eq!(
                self.checker.take_trailers(),
                self.trailers,
                "written trailers"
            );
        }
    }

    fn check_error(&self, error: H3ToH1Error) {
        assert!(!self.pump.is_done(), "{error:?} after the body's end");
        let read = self.source.read.len() as u64;
        match (error, self.encoding) {
            (H3ToH1Error::TooLong, BodyEncoding::ContentLength(n)) => {
                assert!(read > n, "TooLong after {read} of {n}")
            }
            (H3ToH1Error::TooLong, BodyEncoding::None) => assert!(read > 0, "TooLong, no data"),
            (H3ToH1Error::Truncated, BodyEncoding::ContentLength(n)) => {
                assert!(self.pump.is_finished(), "Truncated before the stream ended");
                assert!(self.pump.received < n, "Truncated at {} of {n}", read);
            }
            (error, encoding) => panic!("{error:?} for {encoding:?}"),
        }
    }

    /// The pump stalled with unlimited room and all data delivered: where the framing says.
    fn check_final(&self) {
        assert!(self.source.incoming.is_empty(), "data left unread");
        let total = self.delivered.len() as u64;
        match self.encoding {
            BodyEncoding::ContentLength(n) => {
                assert!(total <= n, "{total} bytes of {n} without TooLong");
                if self.source.ended {
                    assert_eq!(total, n, "ended short without Truncated");
                }
            }
            BodyEncoding::None => assert_eq!(total, 0, "data for no body without TooLong"),
            _ => {}
        }
        assert_eq!(
            self.pump.is_done(),
            self.source.ended,
            "done iff the stream ended"
        );
    }
}
