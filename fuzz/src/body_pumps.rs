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

mod h1_to_h3;
mod h3_to_h1;

use ptproxy::h1::{BodyEncoding, BodyFraming, Header};

use h1_to_h3::h1_to_h3;
use h3_to_h1::h3_to_h1;

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

/// Steps after the script until the pump stalls, at most [`FINAL_STEPS`]; `Err` as for a step.
fn final_steps(mut step: impl FnMut() -> Result<bool, ()>) -> Result<(), ()> {
    for _ in 0..FINAL_STEPS {
        if !step()? {
            break;
        }
    }
    Ok(())
}
