//! A peer link's datagrams: what its socket received goes into the session (and the server's
//! address checks are answered), what the session has to send goes out (within the send
//! quantum), and the last packets leave before the process exits.

use std::io;
use std::net::SocketAddr;
use std::ops::ControlFlow;
use std::time::Instant;

use mio::Registry;

use super::{PeerLink, State};
use crate::quic::path_check;
use crate::quic::session::Session;
use crate::quic::udp::UdpIo;
use crate::reactor::backlog::{drain_bounded, Drain, DATAGRAMS_PER_TURN};

/// The server checks that a new address of ours (a NAT rebinding) is really us: the answer,
/// keyed by the session's TLS secrets, goes out from our socket, so through the NAT's new
/// mapping. A lost answer is asked again.
fn answer_address_check(
    udp: &UdpIo,
    session: &mut Session,
    nonce: &path_check::Nonce,
    to: SocketAddr,
) {
    match path_check::response(&mut session.conn, nonce) {
        Some(answer) => {
            let _ = udp.socket.send_to(&answer, to);
        }
        None => log::debug!("address check from {to} before the handshake is done: not answered"),
    }
}

impl PeerLink {
    /// Reads the datagrams waiting on the socket into the session, at most
    /// [`DATAGRAMS_PER_TURN`]; `Capped` when it stopped there (read again next turn).
    pub fn handle_readable(&mut self, now: Instant) -> Drain {
        let Some(udp) = self.udp.as_mut() else {
            return Drain::Emptied;
        };
        let session = match &mut self.state {
            State::Connecting(s) | State::Up { session: s, .. } => s,
            State::Waiting { .. } => return Drain::Emptied,
        };
        let Ok(to) = udp.local_addr() else {
            return Drain::Emptied;
        };
        let peer = self.peer;
        drain_bounded(DATAGRAMS_PER_TURN, || match udp.recv() {
            Ok(Some((data, from))) if path_check::is_ours(data) => {
                let challenge = path_check::parse_challenge(data).filter(|_| from == peer);
                if let Some(nonce) = challenge {
                    answer_address_check(udp, session, &nonce, from);
                }
                ControlFlow::Continue(())
            }
            Ok(Some((data, from))) => {
                session.handle_datagram(data, from, to, now);
                ControlFlow::Continue(())
            }
            Ok(None) => ControlFlow::Break(()),
            Err(e) => {
                log::warn!("udp receive: {e}");
                ControlFlow::Break(())
            }
        })
    }

    pub fn handle_writable(&mut self, registry: &Registry, now: Instant) {
        if let Some(udp) = self.udp.as_mut() {
            udp.on_writable(now);
            udp.update_interest(registry, self.token);
        }
    }

    /// Sends whatever the session has to send.
    /// Returns true when it stopped at the send quantum with more to send.
    pub fn flush(&mut self, registry: &Registry, now: Instant) -> bool {
        let more = self.send(now);
        if let Some(udp) = self.udp.as_mut() {
            udp.update_interest(registry, self.token);
        }
        more
    }

    fn send(&mut self, now: Instant) -> bool {
        let Some(udp) = self.udp.as_mut() else {
            return false;
        };
        match &mut self.state {
            State::Connecting(s) | State::Up { session: s, .. }
                if s.may_hold_send(now) && !udp.pacer_waits() =>
            {
                udp.flush(now); // only an ACK is owed, and it waits for the next request
                false
            }
            State::Connecting(s) | State::Up { session: s, .. } => {
                let more = udp.send_from(&mut s.conn, now, &mut self.hider, &mut s.pace, None);
                s.on_sent();
                more
            }
            State::Waiting { .. } => {
                udp.flush(now);
                false
            }
        }
    }

    /// Sends the session's last packets (its CONNECTION_CLOSE) before the process exits.
    pub fn send_final(&mut self) {
        let session = match &mut self.state {
            State::Connecting(s) | State::Up { session: s, .. } => s,
            State::Waiting { .. } => return,
        };
        if let Some(udp) = self.udp.as_mut() {
            udp.send_final(&mut session.conn, None);
        }
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.udp
            .as_ref()
            .map(|u| u.local_addr())
            .unwrap_or_else(|| Err(io::ErrorKind::NotConnected.into()))
    }
}
