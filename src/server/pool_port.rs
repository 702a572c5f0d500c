//! Server role: the connection pool as the exchanges' upstream port ([`PoolPort`]), and a pooled
//! connection as an [`UpstreamConn`]. The exchange machine sees only the port traits; this is
//! the production side of them.

use std::io;
use std::time::Instant;

use mio::Registry;

use super::exchange::port::{UpstreamConn, UpstreamPort};
use super::upstream::{Pool, UpState, Upstream};
use crate::bridge::pump::H1Buffers;
use crate::resolve::HostPort;

impl H1Buffers for Upstream {
    fn input(&self) -> &[u8] {
        self.tcp.input()
    }
    fn consume(&mut self, n: usize) {
        self.tcp.consume(n);
    }
    fn input_ended(&self) -> bool {
        self.tcp.input_ended()
    }
    fn write_room(&self) -> usize {
        self.tcp.write_room()
    }
    fn output(&mut self) -> &mut Vec<u8> {
        self.tcp.output_mut()
    }
}

impl UpstreamConn for Upstream {
    fn is_connecting(&self) -> bool {
        self.state == UpState::Connecting
    }
    fn connect_result(&mut self) -> Option<io::Result<()>> {
        self.tcp.connect_result()
    }
    fn set_connected(&mut self) {
        self.state = UpState::Busy;
        let _ = self.tcp.stream.set_nodelay(true);
    }
    fn fill(&mut self) -> bool {
        self.tcp.fill()
    }
    fn flush(&mut self) -> bool {
        self.tcp.flush()
    }
    fn reused(&self) -> u32 {
        self.reused
    }
    fn is_broken(&self) -> bool {
        self.tcp.is_broken()
    }
    fn close_write(&mut self) -> bool {
        if self.tcp.pending_output() > 0 {
            return false;
        }
        if let Err(e) = self.tcp.stream.shutdown(std::net::Shutdown::Write) {
            log::debug!("half-closing an upstream connection: {e}");
        }
        true
    }
    fn abort_on_close(&mut self) {
        crate::net::set_linger_zero(&self.tcp.stream);
    }
}

/// The pool seen by one exchange (`owner`) of service `target`.
pub struct PoolPort<'a> {
    pub pool: &'a mut Pool,
    pub registry: &'a Registry,
    pub owner: usize,
    pub target: usize,
    pub now: Instant,
}

impl UpstreamPort for PoolPort<'_> {
    fn checkout(&mut self) -> io::Result<usize> {
        self.pool.checkout(self.registry, self.owner, self.target)
    }
    fn connect_new(&mut self) -> io::Result<usize> {
        self.pool
            .connect_new(self.registry, self.owner, self.target)
    }
    fn connect_to(&mut self, destination: &HostPort) -> io::Result<usize> {
        self.pool
            .connect_destination(self.registry, self.owner, destination)
    }
    fn connect_failed(&mut self, key: usize, error: &io::Error) -> io::Result<bool> {
        self.pool.connect_failed(self.registry, key, error)
    }
    fn connected(&mut self, key: usize) {
        self.pool.connected(key);
    }
    fn checkin(&mut self, key: usize, reusable: bool) {
        self.pool.checkin(self.registry, key, reusable, self.now);
    }
    fn close(&mut self, key: usize) {
        self.pool.close(self.registry, key);
    }
    fn conn(&mut self, key: usize) -> Option<&mut dyn UpstreamConn> {
        self.pool
            .conns
            .get_mut(key)
            .map(|u| u as &mut dyn UpstreamConn)
    }
}
