//! The datagrams that wait, on the datagram path ([`UdpIo`]): packets quiche made whose
//! release time is ahead or that met a full socket (the in-order queue), and loss hiding's
//! second copies (kept apart so they never hold back the queue); when the next one may leave,
//! and whether quiche's pacer holds the next packet back.

use std::collections::VecDeque;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use super::batch::Batch;
use super::offload;
use super::socket::DatagramSocket;
use super::udp::UdpIo;

/// A packet waiting for the socket or for its release time.
pub(super) struct Queued {
    pub data: Vec<u8>,
    pub to: SocketAddr,
    /// The source address to name (packet info on), else the kernel's choice.
    pub from: Option<IpAddr>,
    pub at: Instant,
}

impl<S: DatagramSocket> UdpIo<S> {
    /// The peer moved from `old` to `new`: packets still waiting (socket full, pacing, delayed
    /// copies) go to the new address.
    pub fn redirect(&mut self, old: SocketAddr, new: SocketAddr) {
        for q in self.queue.iter_mut().chain(self.delayed.iter_mut()) {
            if q.to == old {
                q.to = new;
            }
        }
    }

    /// Sends queued datagrams whose release time has come, in order, then due delayed copies:
    /// up to [`offload::MAX_MESSAGES`] per call.
    pub fn flush(&mut self, now: Instant) {
        let due = &mut self.due;
        Self::drain_due(
            &mut self.socket,
            &mut self.queue,
            &mut self.blocked,
            due,
            now,
        );
        Self::drain_due(
            &mut self.socket,
            &mut self.delayed,
            &mut self.blocked,
            due,
            now,
        );
    }

    /// Sends the due front of `queue` in batched calls (one datagram per message, gathered in
    /// `due`); a datagram the socket refuses for itself is dropped, as a direct send's would be.
    fn drain_due(
        socket: &mut S,
        queue: &mut VecDeque<Queued>,
        blocked: &mut bool,
        due: &mut Batch,
        now: Instant,
    ) {
        while !*blocked {
            due.clear();
            let ready = queue.iter().take(offload::MAX_MESSAGES);
            for q in ready.take_while(|q| q.at <= now) {
                due.push(&q.data, q.to, q.from, false);
            }
            let Some(first) = due.messages.first().copied() else {
                break;
            };
            match socket.send_batch(&due.buf, &due.messages) {
                Ok(0) => break,
                Ok(n) => {
                    queue.drain(..n.min(queue.len()));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => *blocked = true,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    log::debug!("udp send to {}: {e}", first.to);
                    queue.pop_front();
                }
            }
        }
        due.clear();
    }

    /// The pacer holds quiche's next packet back (it is made when [`Self::next_release`] comes).
    pub fn pacer_waits(&self) -> bool {
        self.pacing_wake.is_some()
    }

    /// When the next queued packet may leave, or the pacer lets the next one be made (if
    /// the socket is not blocked).
    pub fn next_release(&self) -> Option<Instant> {
        if self.blocked {
            return None;
        }
        let queued = crate::time::earliest(
            self.queue.front().map(|q| q.at),
            self.delayed.front().map(|q| q.at),
        );
        crate::time::earliest(queued, self.pacing_wake)
    }
}
