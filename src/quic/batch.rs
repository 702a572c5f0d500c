//! What one batched system call carries: the outgoing [`Batch`] (a turn's due datagrams
//! gathered into messages for one `sendmmsg`, equal sizes to one destination merged for GSO)
//! and the [`Inbox`] (the messages one `recvmmsg` read, handed out datagram by datagram, GRO
//! aggregates cut apart). The datagram path ([`UdpIo`](super::udp::UdpIo)) owns one of each.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::ops::Range;

use super::offload::{self, Outgoing, Received};
use super::setup::MAX_DATAGRAM;
use super::socket::DatagramSocket;

/// Due datagrams gathered for one send call: up to [`offload::MAX_MESSAGES`] messages (any
/// destinations), each a GSO batch (same destination and source, equal sizes; a shorter last
/// one closes it) or a single datagram.
#[derive(Debug, Default)]
pub struct Batch {
    pub buf: Vec<u8>,
    pub messages: Vec<Outgoing>,
    /// The last message takes no more datagrams (a shorter one closed it).
    closed: bool,
}

impl Batch {
    /// Largest GSO message: one IP datagram's worth.
    const MAX_BYTES: usize = 64_000;

    /// Whether `data` can join the last message as one more GSO segment.
    pub fn extends(&self, data: &[u8], to: SocketAddr, from: Option<IpAddr>) -> bool {
        self.messages.last().is_some_and(|m| {
            m.to == to
                && m.from == from
                && !self.closed
                && data.len() <= m.segment
                && m.len.div_ceil(m.segment.max(1)) < offload::MAX_SEGMENTS
                && m.len + data.len() <= Self::MAX_BYTES
        })
    }

    /// No room for a new message: flush before adding one.
    pub fn full(&self) -> bool {
        self.messages.len() >= offload::MAX_MESSAGES
    }

    /// Adds a datagram: to the last message when `gso` allows and it fits, else as a new one.
    pub fn push(&mut self, data: &[u8], to: SocketAddr, from: Option<IpAddr>, gso: bool) {
        let joins = gso && self.extends(data, to, from);
        match self.messages.last_mut() {
            Some(m) if joins => {
                m.len += data.len();
                self.closed = data.len() < m.segment;
            }
            _ => {
                self.messages.push(Outgoing {
                    start: self.buf.len(),
                    len: data.len(),
                    segment: data.len().max(1),
                    to,
                    from,
                });
                self.closed = false;
            }
        }
        self.buf.extend_from_slice(data);
    }

    /// Empties the batch, keeping its buffers' memory for the next one.
    pub fn clear(&mut self) {
        self.buf.clear();
        self.messages.clear();
        self.closed = false;
    }
}

/// Messages read at most by one receive call (each may be a GRO aggregate).
const RECV_MESSAGES: usize = offload::MAX_MESSAGES;

/// The messages of the last receive call, and how far they were handed out.
pub struct Inbox {
    /// [`RECV_MESSAGES`] slots of [`MAX_DATAGRAM`] bytes, one per message.
    buf: Vec<u8>,
    /// The messages (each possibly GRO-aggregated); the first `count` are valid.
    received: Vec<Received>,
    count: usize,
    /// Where the next datagram to hand out starts: message index and offset in it.
    next: (usize, usize),
    /// The message the datagram last handed out came from.
    current: Option<usize>,
}

impl Inbox {
    pub fn new() -> Self {
        Inbox {
            // Zeroed memory is mapped lazily: slots no receive fills cost no resident memory.
            buf: vec![0; RECV_MESSAGES * MAX_DATAGRAM],
            received: vec![offload::EMPTY; RECV_MESSAGES],
            count: 0,
            next: (0, 0),
            current: None,
        }
    }

    /// Replaces the messages with the next ones `socket` has (one call); how many arrived.
    pub fn receive<S: DatagramSocket>(&mut self, socket: &mut S) -> io::Result<usize> {
        (self.count, self.next, self.current) = (0, (0, 0), None);
        self.count = socket.recv_batch(&mut self.buf, MAX_DATAGRAM, &mut self.received)?;
        Ok(self.count)
    }

    /// The next datagram not handed out yet: where its bytes are ([`Self::bytes_mut`]) and
    /// who sent it.
    pub fn next_datagram(&mut self) -> Option<(Range<usize>, SocketAddr)> {
        while self.next.0 < self.count {
            let (index, offset) = self.next;
            let r = &self.received[index];
            // An empty datagram is handed out too (once), as the socket gave it.
            if offset < r.len || offset == 0 {
                self.next.1 = offset + r.segment;
                self.current = Some(index);
                let base = index * MAX_DATAGRAM;
                let end = (offset + r.segment).min(r.len);
                return Some((base + offset..base + end, r.from));
            }
            self.next = (index + 1, 0);
        }
        None
    }

    pub fn bytes_mut(&mut self, range: Range<usize>) -> &mut [u8] {
        &mut self.buf[range]
    }

    /// The local address the datagram last handed out was sent to (packet info on).
    pub fn destination(&self) -> Option<IpAddr> {
        self.current.and_then(|i| self.received[i].to)
    }
}

impl Default for Inbox {
    fn default() -> Self {
        Self::new()
    }
}
