//! What the datagram path ([`UdpIo`](super::udp::UdpIo)) needs from a UDP socket, as a trait:
//! receive one (possibly GRO-aggregated) datagram, send one, send a GSO batch, tell the local
//! address. Production uses `mio::net::UdpSocket` through the offload functions
//! ([`super::offload`]); the simulated pair plugs in an in-memory socket that injects
//! WouldBlock, refuses GSO and aggregates receives, so that the real `UdpIo` runs under it.
//! Static dispatch: `UdpIo` is generic over the socket, nothing is boxed.

use std::io;
use std::net::{IpAddr, SocketAddr};

use super::offload::{self, Received};

pub trait DatagramSocket {
    /// Receives into `buf`: one datagram, or several of one sender glued together (GRO), with
    /// their size in [`Received::segment`]. WouldBlock when nothing is waiting.
    fn recv_aggregate(&mut self, buf: &mut [u8]) -> io::Result<Received>;

    fn send_to(&mut self, buf: &[u8], to: SocketAddr) -> io::Result<usize>;

    /// Sends `buf` as datagrams of `segment` bytes (the last may be shorter) in one call (GSO).
    fn send_segments(&mut self, buf: &[u8], segment: usize, to: SocketAddr) -> io::Result<usize>;

    fn local_addr(&self) -> io::Result<SocketAddr>;

    /// Asks for receive aggregation; false when the socket cannot aggregate.
    fn enable_gro(&mut self) -> bool {
        false
    }

    /// Asks for each datagram's destination address ([`Received::to`]), and lets sends name
    /// their source; false when the socket cannot.
    fn enable_pktinfo(&mut self) -> bool {
        false
    }

    /// [`Self::send_to`] from the local address `from` (with packet info on).
    fn send_to_from(&mut self, buf: &[u8], to: SocketAddr, _from: IpAddr) -> io::Result<usize> {
        self.send_to(buf, to)
    }

    /// [`Self::send_segments`] from the local address `from` (with packet info on).
    fn send_segments_from(
        &mut self,
        buf: &[u8],
        segment: usize,
        to: SocketAddr,
        _from: IpAddr,
    ) -> io::Result<usize> {
        self.send_segments(buf, segment, to)
    }
}

impl DatagramSocket for mio::net::UdpSocket {
    fn recv_aggregate(&mut self, buf: &mut [u8]) -> io::Result<Received> {
        offload::recv_aggregate(self, buf)
    }

    fn send_to(&mut self, buf: &[u8], to: SocketAddr) -> io::Result<usize> {
        mio::net::UdpSocket::send_to(self, buf, to)
    }

    fn send_segments(&mut self, buf: &[u8], segment: usize, to: SocketAddr) -> io::Result<usize> {
        offload::send_segments(self, buf, segment, to, None)
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        mio::net::UdpSocket::local_addr(self)
    }

    fn enable_gro(&mut self) -> bool {
        offload::enable_gro(self)
    }

    fn enable_pktinfo(&mut self) -> bool {
        let v6 = mio::net::UdpSocket::local_addr(self).is_ok_and(|a| a.is_ipv6());
        offload::enable_pktinfo(self, v6)
    }

    fn send_to_from(&mut self, buf: &[u8], to: SocketAddr, from: IpAddr) -> io::Result<usize> {
        offload::send_from(self, buf, to, from)
    }

    fn send_segments_from(
        &mut self,
        buf: &[u8],
        segment: usize,
        to: SocketAddr,
        from: IpAddr,
    ) -> io::Result<usize> {
        offload::send_segments(self, buf, segment, to, Some(from))
    }
}
