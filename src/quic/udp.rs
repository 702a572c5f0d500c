//! The datagram path: one UDP socket, the loop that moves quiche's outgoing packets onto it,
//! and a queue for packets that must wait (socket full, or a pacing release time ahead).
//!
//! Invariants: packets leave in the order quiche produced them; a packet quiche produced is never
//! dropped because the socket said WouldBlock (quiche already counts it as sent), it waits for
//! WRITABLE instead. Every transmission goes through [`UdpIo::transmit`], the one place a
//! datagram policy (pacing, duplication) can sit.

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::time::Instant;

use super::setup::MAX_DATAGRAM;

/// A packet waiting for the socket or for its release time.
struct Queued {
    data: Vec<u8>,
    to: SocketAddr,
    at: Instant,
}

/// Stop asking quiche for more packets once this many are queued.
const MAX_QUEUED: usize = 1024;

pub struct UdpIo {
    pub socket: mio::net::UdpSocket,
    queue: VecDeque<Queued>,
    /// The socket returned WouldBlock; nothing is sent until it reports WRITABLE.
    blocked: bool,
    recv_buf: Vec<u8>,
    send_buf: Vec<u8>,
}

impl UdpIo {
    pub fn new(socket: mio::net::UdpSocket) -> Self {
        UdpIo {
            socket,
            queue: VecDeque::new(),
            blocked: false,
            recv_buf: vec![0; MAX_DATAGRAM],
            send_buf: vec![0; MAX_DATAGRAM],
        }
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.socket.local_addr()
    }

    /// Receives one datagram; `Ok(None)` when the socket is drained.
    pub fn recv(&mut self) -> io::Result<Option<(&mut [u8], SocketAddr)>> {
        loop {
            match self.socket.recv_from(&mut self.recv_buf) {
                Ok((n, from)) => return Ok(Some((&mut self.recv_buf[..n], from))),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                // ICMP errors from an earlier send surface here; they say nothing about this read.
                Err(e) if is_transient(&e) => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// Called on WRITABLE: the socket has room again.
    pub fn on_writable(&mut self, now: Instant) {
        self.blocked = false;
        self.flush(now);
    }

    /// Moves everything `conn` wants to send onto the wire (or the queue). Returns false when the
    /// connection hit a local error and should be considered closed.
    pub fn send_from(&mut self, conn: &mut quiche::Connection, now: Instant) {
        self.flush(now);
        while !self.blocked && self.queue.len() < MAX_QUEUED {
            match conn.send(&mut self.send_buf) {
                Ok((n, info)) => {
                    let horizon = now + conn.max_release_into_future();
                    let at = if info.at > horizon { info.at } else { now };
                    let data = self.send_buf[..n].to_vec();
                    self.transmit(data, info.to, at, now);
                }
                Err(quiche::Error::Done) => break,
                Err(e) => {
                    log::debug!("quiche send: {e}");
                    break;
                }
            }
        }
    }

    /// Sends one datagram now if it is due and nothing is queued ahead of it, else queues it.
    fn transmit(&mut self, data: Vec<u8>, to: SocketAddr, at: Instant, now: Instant) {
        if self.blocked || !self.queue.is_empty() || at > now {
            self.queue.push_back(Queued { data, to, at });
            return;
        }
        if let Err(e) = self.socket.send_to(&data, to) {
            if e.kind() == io::ErrorKind::WouldBlock {
                self.blocked = true;
                self.queue.push_back(Queued { data, to, at });
            } else {
                log::debug!("udp send to {to}: {e}");
            }
        }
    }

    /// Sends queued datagrams whose release time has come, in order.
    pub fn flush(&mut self, now: Instant) {
        while !self.blocked {
            let Some(front) = self.queue.front() else {
                break;
            };
            if front.at > now {
                break;
            }
            match self.socket.send_to(&front.data, front.to) {
                Ok(_) => {
                    self.queue.pop_front();
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.blocked = true,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    log::debug!("udp send to {}: {e}", front.to);
                    self.queue.pop_front();
                }
            }
        }
    }

    /// When the first queued packet may leave (if the socket is not blocked).
    pub fn next_release(&self) -> Option<Instant> {
        if self.blocked {
            return None;
        }
        self.queue.front().map(|q| q.at)
    }

    /// True when more packets could be produced right now (queue has room, socket not blocked).
    pub fn has_room(&self) -> bool {
        !self.blocked && self.queue.len() < MAX_QUEUED
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
