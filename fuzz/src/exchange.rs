//! The `exchange` target: one role's per-request state machine (the server's
//! `ptproxy::server::exchange::Exchange`, or the client's `ptproxy::client::downstream::Downstream`)
//! driven through its ports by a script of operations, with a manual clock, checking after every
//! operation that every request ends with exactly one answer or a reset, that a truncated body
//! never ends cleanly, that buffers stay within their bounds and that no deadline spins.
//!
//! Input layout: `[role] [a] [b] ops...` (a missing byte counts as 0). `role % 2`: 0 server
//! (`exchange_server`), 1 client (`exchange_client`); `a` and `b` configure the start (see each
//! module). Each op is an opcode byte (`% 16`) and its arguments; the script ends with the input,
//! so a script has at most `data.len()` ops. After the script the clock moves far (+10 minutes,
//! in steps through every deadline) and the machine must be over.
//!
//! Clock: every op that advances the clock goes through each deadline on the way, handling the
//! timers due at each instant with at most [`MAX_EXPIRIES`] `on_timer` calls; more, or a
//! deadline still at or before the instant just handled, is a busy loop (a finding).

use std::time::{Duration, Instant};

use ptproxy::h1::{parse_response, response_framing, BodyDecoder, BodyFraming, Limits};

pub use super::exchange_client::client;
pub use super::exchange_server::server;

/// `on_timer` calls per instant before the deadline must lie in the future (each call handles
/// one expired slot; the machines have at most 5 slots).
pub const MAX_EXPIRIES: usize = 6;
/// Clock steps after the script (each up to the next deadline, or +1 minute).
pub const FINAL_CLOCK_STEPS: usize = 40;
/// How far the clock moves after the script.
pub const FINAL_ADVANCE: Duration = Duration::from_secs(600);
/// Cap on the bytes fed into a machine per input.
pub const MAX_BYTES: usize = 1 << 20;

/// What is left of [`MAX_BYTES`] for one input, whichever side the bytes come from.
#[derive(Default)]
pub struct ByteBudget {
    fed: usize,
}

impl ByteBudget {
    /// As much of `bytes` as the budget still allows (counted as fed).
    pub fn take<'a>(&mut self, bytes: &'a [u8]) -> &'a [u8] {
        let take = bytes.len().min(MAX_BYTES - self.fed);
        self.fed += take;
        &bytes[..take]
    }
}

/// The fixed base of the manual clock (the process's first call): no wall clock otherwise.
pub fn base_instant() -> Instant {
    use std::sync::OnceLock;
    static BASE: OnceLock<Instant> = OnceLock::new();
    *BASE.get_or_init(Instant::now)
}

/// Runs the `exchange` checks on one input (layout in the module doc).
pub fn exchange(data: &[u8]) {
    let mut reader = Reader::new(data);
    let role = reader.arg();
    if role.is_multiple_of(2) {
        server(&mut reader);
    } else {
        client(&mut reader);
    }
}

/// Reads the input front to back.
pub struct Reader<'a> {
    data: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        Reader { data, at: 0 }
    }
    pub fn byte(&mut self) -> Option<u8> {
        let b = self.data.get(self.at).copied();
        self.at += 1;
        b
    }
    pub fn arg(&mut self) -> u8 {
        self.byte().unwrap_or(0)
    }
    pub fn bytes(&mut self, k: usize) -> &'a [u8] {
        let start = self.at.min(self.data.len());
        let end = start.saturating_add(k).min(self.data.len());
        self.at = end;
        &self.data[start..end]
    }
}

/// A size from one byte: 0..=127 as is, 128..=255 as 1 KiB..=128 KiB.
pub fn size(b: u8) -> usize {
    match b {
        0..=127 => usize::from(b),
        _ => (usize::from(b) - 127) * 1024,
    }
}

/// A small clock step (0..=127 ms, then 1..=128 s) or a large one (`b` * 10 s).
pub fn clock_step(b: u8, large: bool) -> Duration {
    if large {
        Duration::from_secs(u64::from(b) * 10)
    } else {
        match b {
            0..=127 => Duration::from_millis(u64::from(b)),
            _ => Duration::from_secs(u64::from(b) - 127),
        }
    }
}

/// Upstream / peer response bytes from the vocabulary: valid, interim, truncated, malformed,
/// chunked (complete and cut), until-close.
pub const RESPONSES: &[&[u8]] = &[
    b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
    b"HTTP/1.1 204 No Content\r\n\r\n",
    b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n",
    b"HTTP/1.1 100 Continue\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nx-sum: 1\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n",
    b"HTTP/1.1 200 OK\r\n\r\nuntil close",
    b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabc",
    b"HTTP/1.1 2000 Bad\r\n\r\n",
    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    b"HTTP/1.1 304 Not Modified\r\nContent-Length: 99\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n",
    b"ello, world\r\n",
];

/// One HTTP/1.1 response read back by an oracle.
#[derive(Debug)]
pub struct ReadResponse {
    pub status: u16,
    /// Its body ended as its framing says (Content-Length reached, last chunk, or EOF for a
    /// body delimited by the close).
    pub complete: bool,
    pub payload: Vec<u8>,
}

/// The responses in `bytes` (a connection's input, in order): interim ones skipped, final ones
/// with their body decoded as framed for a `method` request; `ended`: the bytes are all there
/// will be. Stops at the first incomplete or invalid message (the last entry is then
/// incomplete, or absent for a head that does not parse).
pub fn read_responses(bytes: &[u8], method: &str, ended: bool) -> Vec<ReadResponse> {
    let limits = Limits {
        max_head_bytes: 1 << 20,
        max_headers: 1000,
        max_request_line: 1 << 20,
    };
    let mut out = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let Ok(Some((head, len))) = parse_response(&bytes[at..], &limits) else {
            break;
        };
        at += len;
        if head.status < 200 {
            continue;
        }
        let Ok(framing) = response_framing(&head, method) else {
            out.push(ReadResponse {
                status: head.status,
                complete: false,
                payload: Vec::new(),
            });
            break;
        };
        let mut decoder = BodyDecoder::new(framing);
        let mut payload = Vec::new();
        let decoded = decoder.decode(&bytes[at..], &mut payload, usize::MAX);
        let Ok(used) = decoded else {
            out.push(ReadResponse {
                status: head.status,
                complete: false,
                payload,
            });
            break;
        };
        at += used;
        let complete = decoder.is_done()
            || (ended && framing == BodyFraming::UntilClose && decoder.at_eof().is_ok());
        out.push(ReadResponse {
            status: head.status,
            complete,
            payload,
        });
        if !complete || framing == BodyFraming::UntilClose {
            break;
        }
    }
    out
}
