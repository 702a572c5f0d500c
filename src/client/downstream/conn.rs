//! The HTTP/1.1 connection from a local service as a downstream uses it ([`DownstreamConn`]):
//! buffers, reading and writing, and the two ways to close. [`TcpConn`] is the production
//! implementation; tests use an in-memory one, so a downstream runs without sockets.

use crate::bridge::pump::H1Buffers;
use crate::bridge::tcp::TcpConn;

pub trait DownstreamConn: H1Buffers {
    /// Reads what the socket has (within the input bound); whether anything (or EOF) came.
    fn fill(&mut self) -> bool;
    /// Writes queued output; whether any byte left.
    fn flush(&mut self) -> bool;
    /// Queues bytes to send (dropped once writing failed).
    fn queue(&mut self, bytes: &[u8]);
    fn pending_output(&self) -> usize;
    /// The client finished sending (clean EOF).
    fn eof(&self) -> bool;
    /// Reading or writing failed.
    fn is_broken(&self) -> bool;
    fn write_failed(&self) -> bool;
    /// Bytes received since the connection opened.
    fn received(&self) -> u64;
    /// Ends our side (FIN) once the output is sent.
    fn shutdown_write(&mut self);
    /// Makes the coming close a reset (RST), so a partial response never looks complete.
    fn reset_on_close(&mut self);
    /// The connection went idle: its buffers' memory may go back (kept by default).
    fn release_buffers(&mut self) {}
}

impl DownstreamConn for TcpConn {
    fn fill(&mut self) -> bool {
        TcpConn::fill(self)
    }
    fn flush(&mut self) -> bool {
        TcpConn::flush(self)
    }
    fn queue(&mut self, bytes: &[u8]) {
        TcpConn::queue(self, bytes);
    }
    fn pending_output(&self) -> usize {
        TcpConn::pending_output(self)
    }
    fn eof(&self) -> bool {
        self.eof
    }
    fn is_broken(&self) -> bool {
        TcpConn::is_broken(self)
    }
    fn write_failed(&self) -> bool {
        self.write_failed.is_some()
    }
    fn received(&self) -> u64 {
        self.received
    }
    fn shutdown_write(&mut self) {
        let _ = self.stream.shutdown(std::net::Shutdown::Write);
    }
    fn reset_on_close(&mut self) {
        crate::net::set_linger_zero(&self.stream);
    }
    fn release_buffers(&mut self) {
        TcpConn::release_buffers(self);
    }
}
