//! [`MemConn`]: one TCP connection held in memory, as either role's machine sees it (an
//! upstream connection of the server, service A's connection to the client). The far end is
//! the test: it sends ([`MemConn::send`]), reads up to a budget (`reads`), closes its side
//! (`ended`); the connect is scripted (`outcome`).

use std::io;

use crate::bridge::pump::H1Buffers;
use crate::client::downstream::DownstreamConn;
use crate::h1::body::{self, BodyDecoder};
use crate::h1::head::{self, Limits};
use crate::server::exchange::port::UpstreamConn;

/// How the machine let go of an upstream connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Released {
    CheckedIn { reusable: bool },
    Closed,
}

pub struct MemConn {
    pub connecting: bool,
    /// How the connect ends once known (`None`: it hangs, the SYNs vanish).
    pub outcome: Option<Result<(), io::ErrorKind>>,
    /// Sent by the far end, not consumed yet.
    pub input: Vec<u8>,
    /// Everything the far end sent.
    pub sent: Vec<u8>,
    /// The far end closed its side (EOF).
    pub ended: bool,
    /// Written by the machine, not read by the far end yet.
    pub output: Vec<u8>,
    /// Most output bytes the machine should hold (it checks `write_room`).
    pub cap: usize,
    /// Output bytes the far end still reads on a flush (`usize::MAX`: all).
    pub reads: usize,
    /// What the far end read.
    pub read: Vec<u8>,
    pub reused: u32,
    pub released: Option<Released>,
    /// The machine shut its write side (FIN).
    pub shut: bool,
    /// The machine made the close a reset.
    pub reset: bool,
}

impl MemConn {
    /// A fresh upstream connection, still connecting; the connect hangs until `outcome` is set.
    pub fn fresh() -> Self {
        MemConn {
            connecting: true,
            outcome: None,
            input: Vec::new(),
            sent: Vec::new(),
            ended: false,
            output: Vec::new(),
            cap: 64 * 1024,
            reads: usize::MAX,
            read: Vec::new(),
            reused: 0,
            released: None,
            shut: false,
            reset: false,
        }
    }
    /// A fresh upstream connection whose connect succeeds.
    pub fn connects() -> Self {
        MemConn {
            outcome: Some(Ok(())),
            ..MemConn::fresh()
        }
    }
    /// A connected upstream connection from the idle pool.
    pub fn pooled() -> Self {
        MemConn {
            connecting: false,
            reused: 1,
            ..MemConn::fresh()
        }
    }
    /// An accepted connection from service A, holding at most `cap` output bytes, which A
    /// reads only when told ([`MemConn::read_all`]).
    pub fn accepted(cap: usize) -> Self {
        MemConn {
            connecting: false,
            cap,
            reads: 0,
            ..MemConn::fresh()
        }
    }
    /// The far end sends `bytes` (nothing once it closed its side).
    pub fn send(&mut self, bytes: &[u8]) {
        if !self.ended {
            self.input.extend_from_slice(bytes);
            self.sent.extend_from_slice(bytes);
        }
    }
    /// The far end reads everything written so far.
    pub fn read_all(&mut self) {
        self.read.append(&mut self.output);
    }
    /// Input bytes the machine consumed (when all input came through [`MemConn::send`]).
    pub fn consumed(&self) -> usize {
        self.sent.len() - self.input.len()
    }
    /// Bytes ever written into it.
    pub fn written(&self) -> usize {
        self.read.len() + self.output.len()
    }
    /// The output not read yet, as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.output).into_owned()
    }
    /// A complete response at the front of the output, taken: (status, body).
    pub fn take_response(&mut self, method: &str) -> Option<(u16, Vec<u8>)> {
        let (resp, len) = head::parse_response(&self.output, &Limits::default()).ok()??;
        let framing = body::response_framing(&resp, method).ok()?;
        let mut decoder = BodyDecoder::new(framing);
        let mut payload = Vec::new();
        let used = decoder
            .decode(&self.output[len..], &mut payload, usize::MAX)
            .ok()?;
        if !decoder.is_done() {
            return None;
        }
        self.output.drain(..len + used);
        Some((resp.status, payload))
    }
}

impl H1Buffers for MemConn {
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
        assert!(!self.shut, "output after the write side was shut");
        &mut self.output
    }
}

impl UpstreamConn for MemConn {
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
        DownstreamConn::flush(self)
    }
    fn reused(&self) -> u32 {
        self.reused
    }
}

impl DownstreamConn for MemConn {
    fn fill(&mut self) -> bool {
        false
    }
    /// The far end reads up to its `reads` budget.
    fn flush(&mut self) -> bool {
        let n = self.output.len().min(self.reads);
        if self.reads != usize::MAX {
            self.reads -= n;
        }
        self.read.extend(self.output.drain(..n));
        n > 0
    }
    fn queue(&mut self, bytes: &[u8]) {
        self.output().extend_from_slice(bytes);
    }
    fn pending_output(&self) -> usize {
        self.output.len()
    }
    fn eof(&self) -> bool {
        self.ended
    }
    fn is_broken(&self) -> bool {
        false
    }
    fn write_failed(&self) -> bool {
        false
    }
    fn received(&self) -> u64 {
        self.sent.len() as u64
    }
    fn shutdown_write(&mut self) {
        self.shut = true;
    }
    fn reset_on_close(&mut self) {
        self.reset = true;
    }
}
