//! The simulated ends: service A's connections to the client proxy ([`ServiceConn`], the
//! shared [`MemConn`] double the test writes requests into and reads responses from) and service B,
//! the origin behind the server proxy ([`Origin`], an [`UpstreamPort`] whose connections answer
//! every complete request at once). Requests name their answer: `GET /r/ID/SIZE` gets SIZE
//! bytes derived from ID; a POST gets its own body back; `GET /stall` is never answered.

use std::io;
use std::time::Instant;

use slab::Slab;

use crate::bridge::pump::H1Buffers;
use crate::h1::body::{self, BodyDecoder, BodyFraming};
use crate::h1::head::{self, Limits};
use crate::resolve::HostPort;
use crate::server::exchange::port::{UpstreamConn, UpstreamPort};
use crate::server::requests::Upstreams;
use crate::testing::MemConn;

/// The payload service B sends for request `id`.
pub fn payload(id: u64, size: usize) -> Vec<u8> {
    (0..size)
        .map(|i| (id.wrapping_mul(31).wrapping_add(i as u64 * 7) % 251) as u8)
        .collect()
}

/// One connection of service A: the shared double, with room for 256 KiB of output, which
/// the test reads with [`MemConn::take_response`].
pub type ServiceConn = MemConn;

/// A new connection of service A.
pub fn service_conn() -> ServiceConn {
    MemConn::accepted(256 * 1024)
}

/// One connection to service B: what the proxy writes is read by B at once, and every
/// complete request is answered into the proxy's input.
#[derive(Debug, Default)]
pub struct OriginConn {
    /// Answers B wrote, not read by the proxy yet.
    input: Vec<u8>,
    fresh: bool,
    /// The proxy's bytes not sent yet.
    output: Vec<u8>,
    /// What B received and has not answered yet.
    at_origin: Vec<u8>,
    connecting: bool,
    reused: u32,
    pub requests: u64,
}

impl OriginConn {
    /// Answers every complete request B holds.
    fn answer(&mut self) {
        for _ in 0..1024 {
            let Ok(Some((req, len))) = head::parse_request(&self.at_origin, &Limits::default())
            else {
                return;
            };
            let framing = body::request_framing(&req).unwrap_or(BodyFraming::None);
            let mut decoder = BodyDecoder::new(framing);
            let mut body = Vec::new();
            let Ok(used) = decoder.decode(&self.at_origin[len..], &mut body, usize::MAX) else {
                return;
            };
            if !decoder.is_done() {
                return;
            }
            self.at_origin.drain(..len + used);
            self.requests += 1;
            if req.target.starts_with("/stall") {
                continue; // read, never answered
            }
            let answer = if req.method == "POST" {
                body
            } else {
                let mut parts = req.target.split('/').skip(2);
                let id = parts.next().and_then(|s| s.parse().ok()).unwrap_or(0);
                let size = parts.next().and_then(|s| s.parse().ok()).unwrap_or(0);
                payload(id, size)
            };
            self.input.extend_from_slice(
                format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n",
                    answer.len()
                )
                .as_bytes(),
            );
            self.input.extend_from_slice(&answer);
            self.fresh = true;
        }
    }
}

impl H1Buffers for OriginConn {
    fn input(&self) -> &[u8] {
        &self.input
    }
    fn consume(&mut self, n: usize) {
        self.input.drain(..n);
    }
    fn input_ended(&self) -> bool {
        false
    }
    fn write_room(&self) -> usize {
        (256 * 1024usize).saturating_sub(self.output.len())
    }
    fn output(&mut self) -> &mut Vec<u8> {
        &mut self.output
    }
}

impl UpstreamConn for OriginConn {
    fn is_connecting(&self) -> bool {
        self.connecting
    }
    fn connect_result(&mut self) -> Option<io::Result<()>> {
        Some(Ok(()))
    }
    fn set_connected(&mut self) {
        self.connecting = false;
    }
    fn fill(&mut self) -> bool {
        std::mem::take(&mut self.fresh)
    }
    fn flush(&mut self) -> bool {
        if self.output.is_empty() {
            return false;
        }
        self.at_origin.append(&mut self.output);
        self.answer();
        true
    }
    fn reused(&self) -> u32 {
        self.reused
    }
}

/// Service B: a pool of connections kept alive between requests.
#[derive(Debug, Default)]
pub struct Origin {
    pub conns: Slab<OriginConn>,
    idle: Vec<usize>,
    pub connects: u64,
}

impl Origin {
    /// Requests service B read on its connections still open.
    pub fn requests_read(&self) -> u64 {
        self.conns.iter().map(|(_, c)| c.requests).sum()
    }
}

impl UpstreamPort for Origin {
    fn checkout(&mut self) -> io::Result<usize> {
        if let Some(key) = self.idle.pop() {
            if let Some(c) = self.conns.get_mut(key) {
                c.reused += 1;
            }
            return Ok(key);
        }
        self.connect_new()
    }
    fn connect_new(&mut self) -> io::Result<usize> {
        self.connects += 1;
        Ok(self.conns.insert(OriginConn {
            connecting: true,
            ..OriginConn::default()
        }))
    }
    /// Service B stands for every CONNECT destination too.
    fn connect_to(&mut self, _destination: &HostPort) -> io::Result<usize> {
        self.connect_new()
    }
    fn connect_failed(&mut self, _key: usize, _error: &io::Error) -> io::Result<bool> {
        Ok(false)
    }
    fn connected(&mut self, _key: usize) {}
    fn checkin(&mut self, key: usize, reusable: bool) {
        let clean = self
            .conns
            .get(key)
            .is_some_and(|c| c.input.is_empty() && c.output.is_empty());
        if reusable && clean {
            self.idle.push(key);
        } else {
            self.close(key);
        }
    }
    fn close(&mut self, key: usize) {
        self.conns.try_remove(key);
        self.idle.retain(|k| *k != key);
    }
    fn conn(&mut self, key: usize) -> Option<&mut dyn UpstreamConn> {
        self.conns.get_mut(key).map(|c| c as &mut dyn UpstreamConn)
    }
}

/// Service B is every exchange's upstream port: it has one address and no owners.
impl Upstreams for Origin {
    fn with_port<T>(
        &mut self,
        _owner: usize,
        _service: usize,
        _now: Instant,
        f: impl FnOnce(&mut dyn UpstreamPort) -> T,
    ) -> T {
        f(self)
    }
}
