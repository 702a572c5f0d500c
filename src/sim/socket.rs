//! A simulated UDP socket under the production datagram path: the pair's sides each own a
//! [`UdpIo<SimSocket>`](crate::quic::udp::UdpIo), so the simulation sends and receives through
//! the real queues, GSO batches and GRO cut-apart. Sends land in an outbox the pair moves onto
//! the link; the pair fills the inbox from the link. Faults, drawn from the socket's own
//! seeded [`Rng`] ([`SocketFaults`]): a send finds the socket full (WouldBlock until the pair
//! calls [`SimSocket::make_writable`], as the kernel reports WRITABLE), the kernel refuses
//! GSO, and a receive hands out a GRO-style aggregate of several datagrams of one sender.
//! [`send_turn`] is one side's sending in a turn of the pair, as the reactor does it.

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::time::Instant;

use super::link::{Faults, Rng};
use crate::quic::offload::{Received, MAX_SEGMENTS};
use crate::quic::session::Session;
use crate::quic::socket::DatagramSocket;
use crate::quic::udp::{LossHider, UdpIo};

#[cfg(test)]
mod tests;

/// What the socket does wrong, by chance or always.
#[derive(Debug, Clone, Copy, Default)]
pub struct SocketFaults {
    /// Chance that a send finds the socket full: WouldBlock, then every send until
    /// [`SimSocket::make_writable`].
    pub would_block: f64,
    /// The kernel refuses segmentation offload (an error other than WouldBlock).
    pub no_gso: bool,
    /// Chance that a receive glues the datagrams that follow, of the same sender and size,
    /// onto the first (GRO).
    pub gro: f64,
}

/// What the socket did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SocketStats {
    /// Datagrams that left (a GSO batch counts its segments).
    pub datagrams: u64,
    /// Times the socket became full (injected WouldBlocks).
    pub would_blocks: u64,
    /// Sends refused with WouldBlock (the injected ones and those while full).
    pub refused_sends: u64,
    pub gso_batches: u64,
    pub gso_refused: u64,
    /// Receives that handed out more than one datagram.
    pub gro_aggregates: u64,
}

#[derive(Debug)]
pub struct SimSocket {
    addr: SocketAddr,
    outbox: Vec<(Vec<u8>, SocketAddr)>,
    inbox: VecDeque<(Vec<u8>, SocketAddr)>,
    full: bool,
    /// Send calls still accepted before the socket becomes full (a test's exact WouldBlock).
    fill_in: Option<u32>,
    rng: Rng,
    pub faults: SocketFaults,
    pub stats: SocketStats,
}

impl SimSocket {
    pub fn new(addr: SocketAddr, seed: u64) -> Self {
        SimSocket {
            addr,
            outbox: Vec::new(),
            inbox: VecDeque::new(),
            full: false,
            fill_in: None,
            rng: Rng::new(seed),
            faults: SocketFaults::default(),
            stats: SocketStats::default(),
        }
    }

    /// The datagrams sent since the last call, in order, with their destinations.
    pub fn take_outbox(&mut self) -> Vec<(Vec<u8>, SocketAddr)> {
        std::mem::take(&mut self.outbox)
    }

    /// A datagram from `from` arrives.
    pub fn arrive(&mut self, datagram: Vec<u8>, from: SocketAddr) {
        self.inbox.push_back((datagram, from));
    }

    pub fn is_full(&self) -> bool {
        self.full
    }

    /// The socket has room again (the reactor would see WRITABLE).
    pub fn make_writable(&mut self) {
        self.full = false;
    }

    /// The socket accepts `sends` more send calls, then is full.
    pub fn fill_after(&mut self, sends: u32) {
        self.fill_in = Some(sends);
    }

    /// WouldBlock if the socket is full or becomes full now.
    fn room(&mut self) -> io::Result<()> {
        if !self.full {
            let filled = match self.fill_in.as_mut() {
                Some(0) => true,
                Some(n) => {
                    *n -= 1;
                    false
                }
                None => false,
            };
            if filled || self.rng.chance(self.faults.would_block) {
                self.fill_in = None;
                self.full = true;
                self.stats.would_blocks += 1;
            }
        }
        if self.full {
            self.stats.refused_sends += 1;
            return Err(io::ErrorKind::WouldBlock.into());
        }
        Ok(())
    }

    /// How many datagrams after the first one in the inbox a GRO receive glues on: same
    /// sender, same size (the last may be shorter, and closes the aggregate), within `room`.
    fn aggregate_len(&self, room: usize) -> usize {
        let Some((first, from)) = self.inbox.front() else {
            return 0;
        };
        let (segment, mut total, mut more) = (first.len(), first.len(), 0);
        for (d, f) in self.inbox.iter().skip(1) {
            if f != from || d.len() > segment || total + d.len() > room || more + 1 >= MAX_SEGMENTS
            {
                break;
            }
            total += d.len();
            more += 1;
            if d.len() < segment {
                break;
            }
        }
        more
    }
}

impl DatagramSocket for SimSocket {
    fn recv_aggregate(&mut self, buf: &mut [u8]) -> io::Result<Received> {
        if self.inbox.is_empty() {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let more = if self.rng.chance(self.faults.gro) {
            self.aggregate_len(buf.len())
        } else {
            0
        };
        let Some((first, from)) = self.inbox.pop_front() else {
            return Err(io::ErrorKind::WouldBlock.into());
        };
        // A datagram larger than the buffer is cut short, as the kernel does.
        let segment = first.len().min(buf.len());
        buf[..segment].copy_from_slice(&first[..segment]);
        let mut len = segment;
        for (d, _) in self.inbox.drain(..more) {
            buf[len..len + d.len()].copy_from_slice(&d);
            len += d.len();
        }
        if more > 0 {
            self.stats.gro_aggregates += 1;
        }
        Ok(Received {
            len,
            segment,
            from,
            to: None,
        })
    }

    fn send_to(&mut self, buf: &[u8], to: SocketAddr) -> io::Result<usize> {
        self.room()?;
        self.outbox.push((buf.to_vec(), to));
        self.stats.datagrams += 1;
        Ok(buf.len())
    }

    fn send_segments(&mut self, buf: &[u8], segment: usize, to: SocketAddr) -> io::Result<usize> {
        if self.faults.no_gso {
            self.stats.gso_refused += 1;
            return Err(io::Error::from_raw_os_error(libc::EIO));
        }
        self.room()?;
        for d in buf.chunks(segment.max(1)) {
            self.outbox.push((d.to_vec(), to));
            self.stats.datagrams += 1;
        }
        self.stats.gso_batches += 1;
        Ok(buf.len())
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.addr)
    }
}

impl From<&Faults> for SocketFaults {
    fn from(f: &Faults) -> Self {
        SocketFaults {
            would_block: f.would_block,
            no_gso: f.no_gso,
            gro: f.gro,
        }
    }
}

/// One side's sending, as the reactor does it: a socket found full last turn has room again
/// (WRITABLE: the datagram path sends what waited), then the datagram path takes what quiche
/// has, one send quantum per call. Packets the pacer holds stay queued in `udp` for a later
/// turn.
pub fn send_turn(
    udp: &mut UdpIo<SimSocket>,
    session: &mut Session,
    hider: &mut LossHider,
    faults: &Faults,
    now: Instant,
) {
    udp.socket.faults = SocketFaults::from(faults);
    if udp.socket.is_full() {
        udp.socket.make_writable();
        udp.on_writable(now);
    }
    for _ in 0..10_000 {
        if !udp.send_from(&mut session.conn, now, hider, &mut session.pace, None) {
            break;
        }
    }
}
