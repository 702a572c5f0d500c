//! The exchange's port to the upstream: the few operations an [`super::Exchange`] performs on
//! upstream connections ([`UpstreamPort`], [`UpstreamConn`]), and their production adapter
//! over the connection pool ([`PoolPort`]). Tests implement the same traits in memory, so the
//! exchange logic runs (and times out) without sockets or a registry.

use std::io;
use std::time::Instant;

use mio::Registry;

use crate::bridge::pump::H1Buffers;
use crate::server::upstream::{Pool, UpState, Upstream};

/// One upstream connection, as an exchange uses it.
pub trait UpstreamConn: H1Buffers {
    /// The non-blocking connect is still under way.
    fn is_connecting(&self) -> bool;
    /// How the connect ended, once it did.
    fn connect_result(&mut self) -> Option<io::Result<()>>;
    /// The connect succeeded: the connection carries this exchange now.
    fn set_connected(&mut self);
    /// Reads what the socket has (within the input bound); whether anything came.
    fn fill(&mut self) -> bool;
    /// Writes queued output; whether any byte left.
    fn flush(&mut self) -> bool;
    /// Exchanges this connection carried before (0 for a fresh one).
    fn reused(&self) -> u32;
}

/// The upstream connections an exchange may use (the pool in production).
pub trait UpstreamPort {
    /// An idle connection, or a new one being connected.
    fn checkout(&mut self) -> io::Result<usize>;
    /// A new connection being connected, never a pooled one.
    fn connect_new(&mut self) -> io::Result<usize>;
    /// The connect of `key` failed with `error`: `Ok(true)` when the next address of the
    /// upstream is being tried on the same key.
    fn connect_failed(&mut self, key: usize, error: &io::Error) -> io::Result<bool>;
    /// The connect of `key` succeeded.
    fn connected(&mut self, key: usize);
    /// The exchange is done with `key`: pooled if `reusable` (and clean), else closed.
    fn checkin(&mut self, key: usize, reusable: bool);
    fn close(&mut self, key: usize);
    fn conn(&mut self, key: usize) -> Option<&mut dyn UpstreamConn>;
}

impl H1Buffers for Upstream {
    fn input(&self) -> &[u8] {
        &self.tcp.input
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
