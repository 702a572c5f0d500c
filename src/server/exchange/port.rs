//! The exchange's port to the upstream: the few operations an [`super::Exchange`] performs on
//! upstream connections ([`UpstreamPort`], [`UpstreamConn`]). The server role adapts its
//! connection pool to them (`server::pool_port`); tests, the simulation and the fuzzer
//! implement them in memory, so the exchange logic runs (and times out) without sockets or a
//! registry.

use std::io;

use crate::bridge::pump::H1Buffers;
use crate::resolve::HostPort;

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
    /// Reading or writing failed (a reset by the peer, ...): the connection did not end cleanly.
    fn is_broken(&self) -> bool {
        false
    }
    /// Half-closes the connection (FIN) once its queued output is written; `false` while
    /// output is still pending (call again after a flush).
    fn close_write(&mut self) -> bool {
        true
    }
    /// Makes the coming close a reset (RST), not a clean end (FIN).
    fn abort_on_close(&mut self) {}
}

/// The upstream connections an exchange may use (the pool in production).
pub trait UpstreamPort {
    /// An idle connection, or a new one being connected.
    fn checkout(&mut self) -> io::Result<usize>;
    /// A new connection being connected, never a pooled one.
    fn connect_new(&mut self) -> io::Result<usize>;
    /// A new connection to a CONNECT destination (one the service allows) being connected;
    /// never pooled.
    fn connect_to(&mut self, destination: &HostPort) -> io::Result<usize>;
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
