//! How a UDP socket is registered with the event loop: for READABLE always, for WRITABLE only
//! while a send waits for room.
//!
//! A UDP socket reports "writable" each time the kernel frees a datagram it sent (its send
//! buffer drained below half), and the loop's edge-triggered registration turns each of those
//! into a wake-up: with WRITABLE registered for good, every datagram sent woke the loop once
//! more for nothing (a third of all wake-ups of a client under 32 keep-alive clients). The
//! interest is added when a send meets WouldBlock and removed once the socket took the backlog;
//! re-registering reports a socket that is already writable at once, so no edge is lost.

use std::io;

use mio::{Interest, Registry, Token};

use super::udp::UdpIo;

impl UdpIo<mio::net::UdpSocket> {
    /// Registers the socket with `token`, for READABLE.
    pub fn register(&mut self, registry: &Registry, token: Token) -> io::Result<()> {
        registry.register(&mut self.socket, token, Interest::READABLE)?;
        self.writable_interest = false;
        Ok(())
    }

    /// After sending: WRITABLE is registered exactly while a send is blocked.
    pub fn update_interest(&mut self, registry: &Registry, token: Token) {
        if self.blocked == self.writable_interest {
            return;
        }
        let interest = if self.blocked {
            Interest::READABLE | Interest::WRITABLE
        } else {
            Interest::READABLE
        };
        match registry.reregister(&mut self.socket, token, interest) {
            Ok(()) => self.writable_interest = self.blocked,
            Err(e) => log::warn!("udp socket: cannot change its readiness interest: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use mio::{Events, Poll, Token};

    use crate::quic::udp::UdpIo;

    const SOCKET: Token = Token(7);

    fn socket() -> mio::net::UdpSocket {
        mio::net::UdpSocket::bind("127.0.0.1:0".parse().expect("address")).expect("bind")
    }

    /// Events for `SOCKET` within `wait`: (readable, writable) seen.
    fn events(poll: &mut Poll, wait: Duration) -> (bool, bool) {
        let mut events = Events::with_capacity(16);
        let (mut readable, mut writable) = (false, false);
        let until = Instant::now() + wait;
        while let Some(left) = until.checked_duration_since(Instant::now()) {
            poll.poll(&mut events, Some(left)).expect("poll");
            for e in events.iter().filter(|e| e.token() == SOCKET) {
                readable |= e.is_readable();
                writable |= e.is_writable();
            }
        }
        (readable, writable)
    }

    #[test]
    fn sending_datagrams_wakes_nobody_while_nothing_is_blocked() {
        let mut poll = Poll::new().expect("poll");
        let peer = socket();
        let to = peer.local_addr().expect("peer address");
        let mut udp = UdpIo::new(socket());
        udp.register(poll.registry(), SOCKET).expect("register");
        for _ in 0..20 {
            udp.socket.send_to(b"datagram", to).expect("send");
        }
        udp.update_interest(poll.registry(), SOCKET);
        let (readable, writable) = events(&mut poll, Duration::from_millis(100));
        assert!(!readable && !writable, "no wake-up for our own sends");
        let mut buf = [0u8; 16];
        assert_eq!(peer.recv_from(&mut buf).expect("datagram arrived").0, 8);
    }

    #[test]
    fn a_blocked_socket_is_reported_writable_then_left_alone_again() {
        let mut poll = Poll::new().expect("poll");
        let mut udp = UdpIo::new(socket());
        udp.register(poll.registry(), SOCKET).expect("register");
        udp.blocked = true; // as after a WouldBlock
        udp.update_interest(poll.registry(), SOCKET);
        assert_eq!(
            events(&mut poll, Duration::from_millis(100)),
            (false, true),
            "a socket with room is reported at once when WRITABLE is added"
        );
        udp.on_writable(Instant::now());
        udp.update_interest(poll.registry(), SOCKET);
        assert!(!udp.writable_interest);
        let peer = socket();
        udp.socket
            .send_to(b"datagram", peer.local_addr().expect("peer address"))
            .expect("send");
        assert_eq!(
            events(&mut poll, Duration::from_millis(100)),
            (false, false)
        );
    }
}
