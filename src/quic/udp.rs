//! The datagram path: one UDP socket (any [`DatagramSocket`]: the mio socket in production, an
//! in-memory one in the simulated pair), the loop that moves quiche's outgoing packets onto it,
//! and the queues for packets that must wait (socket full, pacing release time ahead, delayed
//! duplicate: [`super::release`]).
//!
//! Invariants: packets leave in the order quiche produced them; a packet quiche produced is never
//! dropped because the socket said WouldBlock (quiche already counts it as sent), it waits for
//! WRITABLE instead. Every packet goes through [`UdpIo::transmit`], the one place a datagram
//! policy sits: pacing release times (quiche's, or earlier by the pacing floor: [`PaceFloor`]),
//! and loss hiding ([`LossHider`]), which sends selected datagrams twice so that a single loss
//! costs no recovery round (the receiver drops the copy by packet number).
//! [`UdpIo::send_within`] also keeps a server's sending to an unvalidated address within the
//! anti-amplification budget ([`SendBudget`]).

use std::collections::VecDeque;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use super::amplification::SendBudget;
use super::batch::{Batch, Inbox};
pub use super::loss_hiding::LossHider;
use super::pace_floor::{FloorRate, PaceFloor};
use super::release::Queued;
use super::setup::MAX_DATAGRAM;
use super::socket::DatagramSocket;

/// Stop asking quiche for more packets once this many are queued.
const MAX_QUEUED: usize = 1024;
/// Packets sent at most by [`UdpIo::send_final`] (a close needs one).
const MAX_FINAL_PACKETS: usize = 4;

/// The datagram path over a socket `S` (a real mio socket in production; see
/// [`DatagramSocket`]).
pub struct UdpIo<S: DatagramSocket = mio::net::UdpSocket> {
    pub socket: S,
    pub(super) queue: VecDeque<Queued>,
    /// Second copies sent `gap` after their original (kept apart so they never hold back the
    /// in-order queue).
    pub(super) delayed: VecDeque<Queued>,
    /// The socket returned WouldBlock; nothing is sent until it reports WRITABLE.
    pub(super) blocked: bool,
    /// The socket is registered for WRITABLE too (only while blocked: `super::interest`).
    pub(super) writable_interest: bool,
    /// The pacer holds the next packet until then: come back to `send_from` at that time.
    pub(super) pacing_wake: Option<Instant>,
    /// Segmentation offload still allowed (off after the kernel refused it once).
    gso: bool,
    /// Due packets gathered for one send call.
    batch: Batch,
    /// Queued datagrams gathered for one send call when their time has come.
    pub(super) due: Batch,
    /// The messages of the last receive call, handed out datagram by datagram.
    inbox: Inbox,
    send_buf: Vec<u8>,
    /// The last ICMP error (port or host unreachable) reported on the socket (connected sockets
    /// only: the kernel reports none on an unconnected one).
    unreachable: Option<io::Error>,
    /// Each datagram's destination is reported and each send names its source (a server bound
    /// to a wildcard address: [`UdpIo::enable_pktinfo`]).
    pktinfo: bool,
    /// The socket's address, asked once (it is bound, and connected if it will be, before
    /// it is wrapped): every received datagram names it.
    local: Option<SocketAddr>,
}

impl<S: DatagramSocket> UdpIo<S> {
    pub fn new(mut socket: S) -> Self {
        let gro = socket.enable_gro();
        log::debug!(
            "UDP offload: GSO tried on first batch, GRO {}",
            if gro { "on" } else { "unavailable" }
        );
        UdpIo {
            pktinfo: false,
            local: socket.local_addr().ok(),
            socket,
            queue: VecDeque::new(),
            delayed: VecDeque::new(),
            blocked: false,
            writable_interest: false,
            pacing_wake: None,
            gso: true,
            batch: Batch::default(),
            due: Batch::default(),
            inbox: Inbox::new(),
            send_buf: vec![0; MAX_DATAGRAM],
            unreachable: None,
        }
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        match self.local {
            Some(addr) => Ok(addr),
            None => self.socket.local_addr(),
        }
    }

    /// The ICMP error reported since the last call, if any.
    pub fn take_unreachable(&mut self) -> Option<io::Error> {
        self.unreachable.take()
    }

    /// Receives one datagram (cutting GRO aggregates apart, reading several messages per
    /// call); `Ok(None)` when the socket is drained.
    pub fn recv(&mut self) -> io::Result<Option<(&mut [u8], SocketAddr)>> {
        let next = match self.inbox.next_datagram() {
            Some(next) => Some(next),
            None if self.receive_messages()? => self.inbox.next_datagram(),
            None => None,
        };
        Ok(next.map(|(range, from)| (self.inbox.bytes_mut(range), from)))
    }

    /// Reads the next messages in one call; false when the socket is drained.
    fn receive_messages(&mut self) -> io::Result<bool> {
        loop {
            match self.inbox.receive(&mut self.socket) {
                Ok(n) => return Ok(n > 0),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                // ICMP errors from an earlier send surface here; they say nothing about this read.
                Err(e) if is_transient(&e) => {
                    self.unreachable = Some(e);
                    continue;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Called on WRITABLE: the socket has room again.
    pub fn on_writable(&mut self, now: Instant) {
        self.blocked = false;
        self.flush(now);
    }

    /// Moves what `conn` wants to send onto the wire (or the queues), at most one
    /// `send_quantum` per call so that one busy connection cannot starve the rest of the loop.
    /// Returns true when it stopped at the quantum with more to send.
    /// `peer`, when given, replaces the destination quiche chose (the server follows a
    /// client's rebinding itself: `server::peer_address`). `pace` is the session's pacing
    /// floor ([`PaceFloor`]): a packet quiche's pacer holds back leaves when the floor lets it.
    pub fn send_from(
        &mut self,
        conn: &mut quiche::Connection,
        now: Instant,
        hider: &mut LossHider,
        pace: &mut PaceFloor,
        peer: Option<SocketAddr>,
    ) -> bool {
        self.send_within(conn, now, hider, &mut SendBudget::validated(), pace, peer)
    }

    /// [`Self::send_from`] within an anti-amplification budget: each datagram quiche makes
    /// fits the allowance (quiche builds packets for the buffer it is given), and nothing is
    /// asked for once the allowance is spent; copies for loss hiding are charged too.
    pub fn send_within(
        &mut self,
        conn: &mut quiche::Connection,
        now: Instant,
        hider: &mut LossHider,
        budget: &mut SendBudget,
        pace: &mut PaceFloor,
        peer: Option<SocketAddr>,
    ) -> bool {
        self.flush(now);
        let quantum = conn.send_quantum().max(MAX_DATAGRAM);
        let path = conn.path_stats().next();
        let rtt = path.as_ref().map_or(Duration::from_millis(100), |p| p.rtt);
        let floor = pace.rate(conn, path.as_ref());
        let horizon = now + conn.max_release_into_future();
        let mut sent = 0;
        self.pacing_wake = None;
        while !self.blocked && self.queue.len() < MAX_QUEUED {
            if sent >= quantum {
                self.flush_batch(now);
                return true;
            }
            let Some(by_floor) = self.may_make_next(conn, pace, floor, now, horizon) else {
                break;
            };
            let Some(room) = budget.room(self.send_buf.len()) else {
                break;
            };
            match conn.send(&mut self.send_buf[..room]) {
                Ok((n, info)) => {
                    sent += n;
                    budget.on_sent(n);
                    let release = pace.release(info.at);
                    let at = if release > horizon && !by_floor {
                        release
                    } else {
                        now
                    };
                    pace.on_sent(n, floor, info.at, by_floor, now);
                    let to = peer.unwrap_or(info.to);
                    let src = self.source(info.from);
                    // Lent out while transmitted (taking it allocates nothing): the packet is
                    // copied only into the send batch, or into the queue when it must wait.
                    let buf = std::mem::take(&mut self.send_buf);
                    let data = &buf[..n];
                    if budget.allows(n) && hider.duplicate(n, now, rtt) {
                        budget.on_sent(n);
                        self.duplicate(data, to, src, at, hider.gap(), now);
                    }
                    self.transmit(data, to, src, at, now);
                    self.send_buf = buf;
                }
                Err(quiche::Error::Done) => break,
                Err(e) => {
                    log::debug!("quiche send: {e}");
                    break;
                }
            }
        }
        self.flush_batch(now);
        false
    }

    /// Whether the next packet may be made now: `Some(by_floor)` (true: the pacing floor lets
    /// it go before quiche's pacer would), or `None`, with the time to come back set. The pacer
    /// says when the next packet is due (less the lead the floor gave it): it is asked for no
    /// earlier than the release horizon, so packets are created (and timed by quiche) when
    /// they leave.
    fn may_make_next(
        &mut self,
        conn: &quiche::Connection,
        pace: &mut PaceFloor,
        floor: Option<FloorRate>,
        now: Instant,
        horizon: Instant,
    ) -> Option<bool> {
        let Some(due) = conn.get_next_release_time().and_then(|d| d.time(now)) else {
            pace.on_quiche_idle();
            return Some(false);
        };
        let release = pace.release(due);
        if release <= horizon {
            return Some(false);
        }
        if pace.allows(floor, horizon) {
            return Some(true);
        }
        let floor_release = pace.next_release(floor);
        self.pacing_wake = Some(floor_release.map_or(release, |f| f.min(release)));
        None
    }

    /// Last words before the process exits: sends what `conn` has right now (after `close`, its
    /// CONNECTION_CLOSE) straight to the socket, ignoring pacing, release times and the queues,
    /// which nobody will serve any more.
    /// `peer` replaces quiche's destination as in [`Self::send_from`].
    pub fn send_final(&mut self, conn: &mut quiche::Connection, peer: Option<SocketAddr>) {
        for _ in 0..MAX_FINAL_PACKETS {
            let Ok((n, info)) = conn.send(&mut self.send_buf) else {
                break;
            };
            let to = peer.unwrap_or(info.to);
            let src = self.source(info.from);
            if let Err(e) = Self::send_raw(&mut self.socket, &self.send_buf[..n], to, src) {
                log::debug!("udp send to {to}: {e}");
            }
        }
    }

    /// Schedules the second copy of a datagram: in line right after the original, or `gap`
    /// later on the side queue.
    fn duplicate(
        &mut self,
        data: &[u8],
        to: SocketAddr,
        src: Option<IpAddr>,
        at: Instant,
        gap: Duration,
        now: Instant,
    ) {
        if gap.is_zero() {
            // Sent first, so the original follows it at once; order between copies is irrelevant.
            self.transmit(data, to, src, at, now);
        } else {
            self.delayed.push_back(Queued {
                data: data.to_vec(),
                to,
                from: src,
                at: at.max(now) + gap,
            });
        }
    }

    /// Sends one datagram now if it is due and nothing is queued ahead of it (gathered into the
    /// batch for one send call, into a GSO message when possible), else queues it.
    fn transmit(
        &mut self,
        data: &[u8],
        to: SocketAddr,
        src: Option<IpAddr>,
        at: Instant,
        now: Instant,
    ) {
        if self.blocked || !self.queue.is_empty() || at > now {
            self.flush_batch(now);
            self.queue.push_back(Queued {
                data: data.to_vec(),
                to,
                from: src,
                at,
            });
            return;
        }
        if !(self.gso && self.batch.extends(data, to, src)) && self.batch.full() {
            self.flush_batch(now);
        }
        // Checked after the flush: a GSO send refused there turns GSO off for this packet too.
        self.batch.push(data, to, src, self.gso);
    }

    /// The source address to name for a packet quiche made on a path from `from`: with
    /// packet info on, the address the peer sent to; else none (the kernel's choice).
    fn source(&self, from: SocketAddr) -> Option<IpAddr> {
        self.pktinfo.then_some(from.ip())
    }

    fn send_raw(
        socket: &mut S,
        data: &[u8],
        to: SocketAddr,
        src: Option<IpAddr>,
    ) -> io::Result<usize> {
        match src {
            Some(from) => socket.send_to_from(data, to, from),
            None => socket.send_to(data, to),
        }
    }

    /// Turns on packet info: each datagram's destination is reported
    /// ([`UdpIo::last_destination`]) and every send goes out from the address of the path it
    /// belongs to. For a socket bound to a wildcard address; false when the socket cannot.
    pub fn enable_pktinfo(&mut self) -> bool {
        self.pktinfo = self.socket.enable_pktinfo();
        self.pktinfo
    }

    /// The local address the last datagram [`UdpIo::recv`] handed out was sent to, when packet
    /// info is on.
    pub fn last_destination(&self) -> Option<IpAddr> {
        self.inbox.destination()
    }

    /// Sends one datagram made outside a connection (a Retry, a version negotiation, a
    /// stateless reset, an address check) at once, from `from` (the address the datagram it
    /// answers was sent to) when packet info is on.
    pub fn send_now(&mut self, data: &[u8], to: SocketAddr, from: SocketAddr) -> io::Result<usize> {
        let src = self.source(from);
        Self::send_raw(&mut self.socket, data, to, src)
    }

    /// Sends one datagram; on WouldBlock it waits in the queue.
    fn send_one(&mut self, data: &[u8], to: SocketAddr, src: Option<IpAddr>, now: Instant) {
        if self.blocked {
            self.queue.push_back(Queued {
                data: data.to_vec(),
                to,
                from: src,
                at: now,
            });
            return;
        }
        if let Err(e) = Self::send_raw(&mut self.socket, data, to, src) {
            if e.kind() == io::ErrorKind::WouldBlock {
                self.blocked = true;
                self.queue.push_back(Queued {
                    data: data.to_vec(),
                    to,
                    from: src,
                    at: now,
                });
            } else {
                log::debug!("udp send to {to}: {e}");
                if is_transient(&e) {
                    self.unreachable = Some(e);
                }
            }
        }
    }

    /// Sends the gathered batch: its messages (GSO batches or single datagrams) in one call
    /// where the socket allows; what the call does not take (socket full, GSO refused: then
    /// GSO stays off) goes datagram by datagram, or waits in the queue.
    fn flush_batch(&mut self, now: Instant) {
        if self.batch.messages.is_empty() {
            return;
        }
        // Lent out while sent (taking it allocates nothing), then given back emptied.
        let mut batch = std::mem::take(&mut self.batch);
        let taken = self.send_messages(&batch);
        for m in &batch.messages[taken..] {
            for datagram in m.data(&batch.buf).chunks(m.segment) {
                self.send_one(datagram, m.to, m.from, now);
            }
        }
        batch.clear();
        self.batch = batch;
    }

    /// Sends the batch's messages in as few calls as the socket takes; returns how many it
    /// took (sent, or dropped on an error of their own, as [`Self::send_one`] does). Stops
    /// when the socket is full or refuses GSO.
    fn send_messages(&mut self, batch: &Batch) -> usize {
        let mut done = 0;
        // Each call takes a message, fills the socket or ends the loop; an interrupted one or
        // a reported ICMP error (which the failed call consumed) is retried, within bounds.
        for _ in 0..2 * batch.messages.len() + 1 {
            let Some(first) = batch.messages.get(done).copied() else {
                break;
            };
            if self.blocked {
                break;
            }
            match self.socket.send_batch(&batch.buf, &batch.messages[done..]) {
                Ok(0) => break,
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.blocked = true,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if is_transient(&e) => self.unreachable = Some(e),
                Err(e) if first.gso_segment().is_some() => {
                    log::debug!("UDP GSO refused ({e}); sending datagram by datagram from now on");
                    self.gso = false;
                    break;
                }
                Err(e) => {
                    log::debug!("udp send to {}: {e}", first.to);
                    done += 1;
                }
            }
        }
        done
    }
}

fn is_transient(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::HostUnreachable
            | io::ErrorKind::NetworkUnreachable
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{LossHiding, LossHidingMode};

    /// A nonblocking loopback socket for the datagram path, and a poll that waits (bounded)
    /// until it is readable.
    fn loopback_io() -> (UdpIo, mio::Poll) {
        let socket =
            mio::net::UdpSocket::bind("127.0.0.1:0".parse().expect("address")).expect("bind");
        let mut io = UdpIo::new(socket);
        let poll = mio::Poll::new().expect("poll");
        poll.registry()
            .register(&mut io.socket, mio::Token(0), mio::Interest::READABLE)
            .expect("register");
        (io, poll)
    }

    fn wait_readable(poll: &mut mio::Poll) {
        let mut events = mio::Events::with_capacity(4);
        poll.poll(&mut events, Some(Duration::from_secs(5)))
            .expect("poll");
        assert!(!events.is_empty(), "nothing arrived within 5 s");
    }

    /// The receive path hands out, one by one and in order, datagrams of mixed sizes from
    /// two senders that arrived together (read in one batched call), then reports the drain.
    #[test]
    fn batched_receive_hands_out_every_datagram_with_its_source() {
        let (mut io, mut poll) = loopback_io();
        let to = io.local_addr().expect("addr");
        let senders = [
            std::net::UdpSocket::bind("127.0.0.1:0").expect("bind"),
            std::net::UdpSocket::bind("127.0.0.1:0").expect("bind"),
        ];
        let sizes = [1200, 1200, 700, 50, 1200, 9];
        for (i, size) in sizes.iter().enumerate() {
            senders[i % 2]
                .send_to(&vec![i as u8; *size], to)
                .expect("send");
        }
        wait_readable(&mut poll);
        let mut got = Vec::new();
        for _ in 0..sizes.len() + 1 {
            match io.recv().expect("receive") {
                Some((data, from)) => got.push((data.to_vec(), from)),
                None => break,
            }
        }
        assert_eq!(got.len(), sizes.len(), "every datagram, then drained");
        for (i, (data, from)) in got.iter().enumerate() {
            assert_eq!(*from, senders[i % 2].local_addr().expect("addr"), "{i}");
            assert_eq!(*data, vec![i as u8; sizes[i]], "{i}");
        }
        assert!(io.recv().expect("receive").is_none());
    }

    /// A turn's datagrams of mixed sizes to two destinations are gathered into a few
    /// messages (equal sizes to one destination merged for GSO) and leave in one flush, in
    /// order per destination.
    #[test]
    fn mixed_datagrams_leave_in_one_batched_flush() {
        let (mut io, _poll) = loopback_io();
        let (mut x, mut px) = loopback_io();
        let (mut y, mut py) = loopback_io();
        let (to_x, to_y) = (x.local_addr().expect("addr"), y.local_addr().expect("addr"));
        let now = Instant::now();
        let sent = [
            (to_x, 1200, 1),
            (to_x, 1200, 2),
            (to_x, 300, 3),
            (to_y, 1200, 4),
            (to_x, 80, 5),
            (to_y, 1200, 6),
        ];
        for (to, size, fill) in sent {
            io.transmit(&vec![fill; size], to, None, now, now);
        }
        // x: 1200+1200+300 in one GSO message; y: 1200; x: 80; y: 1200.
        assert_eq!(io.batch.messages.len(), 4);
        io.flush_batch(now);
        assert!(io.batch.messages.is_empty() && io.queue.is_empty());
        for (rx, poll, to) in [(&mut x, &mut px, to_x), (&mut y, &mut py, to_y)] {
            wait_readable(poll);
            let expected: Vec<Vec<u8>> = sent
                .iter()
                .filter(|(dest, _, _)| *dest == to)
                .map(|(_, size, fill)| vec![*fill; *size])
                .collect();
            let mut got = Vec::new();
            for _ in 0..expected.len() + 1 {
                match rx.recv().expect("receive") {
                    Some((data, _)) => got.push(data.to_vec()),
                    None => break,
                }
            }
            assert_eq!(got, expected, "to {to}");
        }
    }

    /// Datagrams held for their release time leave together once it has come, in order, and
    /// the queue is empty after one flush.
    #[test]
    fn due_queued_datagrams_leave_in_order_in_one_flush() {
        let (mut io, _poll) = loopback_io();
        let (mut x, mut px) = loopback_io();
        let to = x.local_addr().expect("addr");
        let now = Instant::now();
        let later = now + Duration::from_millis(5);
        for (size, fill) in [(1200, 1u8), (90, 2), (1200, 3)] {
            io.transmit(&vec![fill; size], to, None, later, now);
        }
        io.flush(now);
        assert_eq!(io.queue.len(), 3, "not due yet");
        io.flush(later);
        assert!(io.queue.is_empty() && io.due.messages.is_empty());
        wait_readable(&mut px);
        let mut got = Vec::new();
        for _ in 0..4 {
            match x.recv().expect("receive") {
                Some((data, _)) => got.push((data.len(), data[0])),
                None => break,
            }
        }
        assert_eq!(got, vec![(1200, 1), (90, 2), (1200, 3)]);
    }

    fn hider(mode: LossHidingMode) -> LossHider {
        LossHider::new(LossHiding {
            mode,
            max_datagram: 1000,
            interactive_bytes: 3000,
            gap: Duration::ZERO,
        })
    }

    #[test]
    fn small_mode_duplicates_by_size_and_counts() {
        let mut h = hider(LossHidingMode::Small);
        let now = Instant::now();
        let rtt = Duration::from_millis(50);
        assert!(h.duplicate(1000, now, rtt));
        assert!(!h.duplicate(1001, now, rtt));
        assert_eq!((h.datagrams, h.bytes), (1, 1000));
        assert!(!hider(LossHidingMode::Off).duplicate(10, now, rtt));
    }

    #[test]
    fn interactive_mode_stops_during_bulk_and_resumes_after_an_rtt() {
        let mut h = hider(LossHidingMode::Interactive);
        let t0 = Instant::now();
        let rtt = Duration::from_millis(50);
        let dups: Vec<bool> = (0..5).map(|_| h.duplicate(1200, t0, rtt)).collect();
        assert_eq!(
            dups,
            vec![true, true, false, false, false],
            "3000 bytes per RTT allowed"
        );
        assert!(
            h.duplicate(1200, t0 + Duration::from_millis(60), rtt),
            "quiet again one RTT later"
        );
    }
}
