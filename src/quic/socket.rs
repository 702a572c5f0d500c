//! What the datagram path ([`UdpIo`](super::udp::UdpIo)) needs from a UDP socket, as a trait:
//! receive one (possibly GRO-aggregated) datagram or several in one call, send one, send a GSO
//! batch, send several messages in one call, tell the local address. Production uses
//! `mio::net::UdpSocket` through the offload functions ([`super::offload`]); the simulated pair plugs in an in-memory socket that injects
//! WouldBlock, refuses GSO and aggregates receives, so that the real `UdpIo` runs under it.
//! Static dispatch: `UdpIo` is generic over the socket, nothing is boxed.

use std::io;
use std::net::{IpAddr, SocketAddr};

use super::offload::{self, Outgoing, Received};

pub trait DatagramSocket {
    /// Receives into `buf`: one datagram, or several of one sender glued together (GRO), with
    /// their size in [`Received::segment`]. WouldBlock when nothing is waiting.
    fn recv_aggregate(&mut self, buf: &mut [u8]) -> io::Result<Received>;

    /// Receives up to `out.len()` messages in one call, message `i` into the `slot` bytes of
    /// `buf` from `i * slot` (each as [`Self::recv_aggregate`]); returns how many arrived.
    /// By default one message per call.
    fn recv_batch(
        &mut self,
        buf: &mut [u8],
        slot: usize,
        out: &mut [Received],
    ) -> io::Result<usize> {
        let (Some(first), Some(part)) = (out.first_mut(), buf.get_mut(..slot)) else {
            return Ok(0);
        };
        *first = self.recv_aggregate(part)?;
        Ok(1)
    }

    fn send_to(&mut self, buf: &[u8], to: SocketAddr) -> io::Result<usize>;

    /// Sends `messages` (parts of `buf`: datagrams or GSO batches, any destinations) in order,
    /// in one call where the socket can; returns how many were sent, an error only when the
    /// first one could not be. By default one call per message.
    fn send_batch(&mut self, buf: &[u8], messages: &[Outgoing]) -> io::Result<usize> {
        for (i, m) in messages.iter().enumerate() {
            let data = m.data(buf);
            let sent = match (m.gso_segment(), m.from) {
                (Some(segment), Some(from)) => {
                    self.send_segments_from(data, segment.into(), m.to, from)
                }
                (Some(segment), None) => self.send_segments(data, segment.into(), m.to),
                (None, Some(from)) => self.send_to_from(data, m.to, from),
                (None, None) => self.send_to(data, m.to),
            };
            match sent {
                Ok(_) => {}
                Err(e) if i == 0 => return Err(e),
                Err(_) => return Ok(i),
            }
        }
        Ok(messages.len())
    }

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

    fn recv_batch(
        &mut self,
        buf: &mut [u8],
        slot: usize,
        out: &mut [Received],
    ) -> io::Result<usize> {
        offload::recv_many(self, buf, slot, out)
    }

    fn send_to(&mut self, buf: &[u8], to: SocketAddr) -> io::Result<usize> {
        mio::net::UdpSocket::send_to(self, buf, to)
    }

    fn send_batch(&mut self, buf: &[u8], messages: &[Outgoing]) -> io::Result<usize> {
        offload::send_many(self, buf, messages)
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
