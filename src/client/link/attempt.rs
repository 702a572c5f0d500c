//! First contact: [`PeerLink`]'s session attempts. An attempt goes to the next address of the
//! peer's name ([`Candidates`](crate::resolve::Candidates)) on a fresh UDP socket, connected to
//! the peer so that ICMP errors come back on it; it is abandoned when no handshake completed
//! within `reconnect.handshake_timeout_ms`, or at once when an ICMP error (port or host
//! unreachable) arrives. The next address of the round is tried at once; after a whole round
//! the backoff applies and the name is resolved again.
//! [`Contact`](crate::client::contact::Contact) reports the failures, and says why no session is
//! up.

use std::error::Error;
use std::net::SocketAddr;
use std::time::Instant;

use mio::{Registry, Token};

use super::{PeerLink, State};
use crate::client::contact::{describe_icmp, FailureKind};
use crate::client::dial;
use crate::config::TransportConfig;
use crate::metrics::PeerContact;
use crate::net;
use crate::quic::liveness::Liveness;
use crate::quic::session::Session;
use crate::quic::udp::UdpIo;

/// The client probes a silent server after a third of the liveness timeout (the server waits
/// for half, so the client's probes keep both sides informed).
const CLIENT_FIRST_PROBE_SHARE: u32 = 3;

impl PeerLink {
    /// Starts an attempt on the next address of the peer.
    pub(super) fn start_attempt(&mut self, registry: &Registry, now: Instant) {
        match self.addresses.next_address(now) {
            Ok(addr) => self.peer = addr,
            Err(e) => {
                let reason = format!("cannot resolve {}: {e}", self.addresses.target.host);
                return self.attempt_failed(now, FailureKind::Resolve, reason);
            }
        }
        self.contact.attempt(self.peer, now);
        match self.connect(registry, now) {
            Ok(()) => self.handshake_deadline = Some(now + self.handshake_timeout),
            Err(e) => {
                let reason = format!("cannot start a session: {e}");
                self.attempt_failed(now, FailureKind::Local, reason);
            }
        }
    }

    /// Starts a connection attempt to `self.peer` on a fresh UDP socket.
    fn connect(&mut self, registry: &Registry, now: Instant) -> Result<(), Box<dyn Error>> {
        if let Some(mut old) = self.udp.take() {
            let _ = registry.deregister(&mut old.socket);
        }
        let t = &self.transport;
        let mut udp = attempt_socket(self.peer, t, registry, self.token)?;
        let local = udp.local_addr()?;
        let cid_len = t.connection_id_bytes;
        let datagram = self.path_sizing.fit(&mut self.quiche_config, self.peer);
        let mut conn = dial::connect(
            &self.server_name,
            local,
            self.peer,
            &mut self.quiche_config,
            cid_len,
        )?;
        self.debug.attach(&mut conn, "client");
        log::debug!(
            "connecting to {} ({}) from {local}, datagrams up to {datagram} bytes",
            self.peer,
            self.server_name
        );
        let resuming = self.resumption.offer(&mut conn);
        let liveness = Liveness::configured(t.liveness_timeout, CLIENT_FIRST_PROBE_SHARE, now);
        let mut session = Session::new(conn, t.keepalive_interval, liveness, now);
        session.announce_compression(self.announces_compression, self.dictionary.clone());
        session.hold_acks(t.ack_delay, t.holds_acks_for_answers());
        session.set_pacing_floor(t);
        session.announce_forwarding(self.forwarding);
        if resuming {
            // ClientHello out now, then HTTP/3 can start in 0-RTT before any answer.
            udp.send_from(
                &mut session.conn,
                now,
                &mut self.hider,
                &mut session.pace,
                None,
            );
            session.ensure_h3();
        }
        self.early = session.conn.is_in_early_data() && session.h3.is_some();
        if self.early {
            log::debug!(
                "resuming the session to {}: requests may go in 0-RTT",
                self.peer
            );
        }
        self.state = State::Connecting(session);
        self.udp = Some(udp);
        Ok(())
    }

    /// The attempt under way had no handshake done by its deadline.
    pub(super) fn handshake_timed_out(&mut self, now: Instant) {
        let reason = format!(
            "handshake timed out: nothing answered within {} ms",
            self.handshake_timeout.as_millis()
        );
        self.attempt_failed(now, FailureKind::HandshakeTimeout, reason);
    }

    /// An attempt that never came up ended: report it, then try the next address of the round
    /// at once, or (round over) wait for the backoff.
    pub(super) fn attempt_failed(&mut self, now: Instant, kind: FailureKind, reason: String) {
        self.handshake_deadline = None;
        // Requests sent in 0-RTT on the abandoned attempt are lost with it.
        self.abandoned_early |= std::mem::take(&mut self.early);
        if self.stopped {
            return self.retry_later(now);
        }
        if let Some(line) = self.contact.failed(kind, reason, now) {
            log::warn!("{line}");
        }
        if self.addresses.round_over() {
            self.retry_later(now);
        } else {
            self.state = State::Waiting { until: now };
        }
    }

    /// An ICMP error on the attempt's socket ends it at once.
    pub(super) fn check_unreachable(&mut self, now: Instant) {
        if !matches!(self.state, State::Connecting(_)) {
            return;
        }
        let Some(e) = self.udp.as_mut().and_then(UdpIo::take_unreachable) else {
            return;
        };
        self.attempt_failed(now, FailureKind::Unreachable, describe_icmp(&e));
    }

    /// The state of the session attempts, for `/metrics` and `/health`.
    pub fn contact_figures(&self) -> PeerContact {
        self.contact.figures(match self.state {
            State::Connecting(_) => "connecting",
            State::Up { .. } => "up",
            State::Waiting { .. } => "waiting",
        })
    }

    /// Why no session is up, naming the peer (for 503 answers and `/health`).
    pub fn why_down(&self, now: Instant) -> String {
        match &self.state {
            State::Up { .. } if self.suspect => {
                format!("{} (silent: its keepalives go unanswered)", self.peer)
            }
            State::Up { .. } => format!("{} (the session is going away)", self.peer),
            State::Connecting(_) => self.contact.why_down(true, now),
            State::Waiting { .. } => self.contact.why_down(false, now),
        }
    }
}

/// A fresh UDP socket for one attempt: connected, so that ICMP errors (nothing listening, host
/// unreachable) reach us, and registered with the reactor.
fn attempt_socket(
    peer: SocketAddr,
    t: &TransportConfig,
    registry: &Registry,
    token: Token,
) -> Result<UdpIo, Box<dyn Error>> {
    let socket = net::bind_udp(
        dial::wildcard(peer),
        t.udp_recv_buffer,
        t.udp_send_buffer,
        false,
    )?;
    socket.connect(peer)?;
    let mut udp = UdpIo::new(socket);
    udp.register(registry, token)?;
    Ok(udp)
}
