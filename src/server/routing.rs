//! Server role, datagrams in: each goes to the connection whose ID is its destination CID, and
//! a client's first Initial packet makes a new connection once [`admission`](super::admission)
//! takes it on.
//!
//! A new client's Initial packets carry a DCID the client chose; we derive our own CID from it
//! with an HMAC, so every packet of a multi-packet ClientHello reaches the same connection
//! without a Retry round trip. A short-header packet for a connection we do not know (say, after
//! a restart) gets a stateless reset, whose token derives from the server's private key, so a
//! restarted server can reset its predecessor's sessions and clients reconnect at once instead
//! of waiting for their idle timeout.
//!
//! New handshakes go through [`admission`](super::admission) first (size, Retry token,
//! per-source rate, caps, Retry under pressure), and until a client's address is validated the
//! datagrams sent to it stay within 3x what it sent ([`PeerConn::budget`]). A Retry gives the
//! client a short ID (see [`RETRY_CID_LEN`](super::admission::RETRY_CID_LEN)); its next Initials
//! carry that ID as destination, and the connection made for them takes the ID derived from it,
//! so routing stays the same.
//! Handshakes not done within `admission.handshake_timeout_ms` are dropped.
//!
//! Once a session is up, the client is kept supplied with spare IDs (each routed here, with its
//! reset token); the IDs it retires stop leading to the session ([`super::cid_routes::CidRoutes`]).

use std::net::SocketAddr;
use std::ops::ControlFlow;
use std::time::Instant;

use mio::Registry;
use ring::hmac;

use super::admission::{Load, Verdict};
use super::peer::PeerConn;
use super::{peer_address, ServerProxy};
use crate::quic::amplification::SendBudget;
use crate::quic::liveness::Liveness;
use crate::quic::session::Session;
use crate::quic::{self, path_check};
use crate::reactor::backlog::{drain_bounded, DATAGRAMS_PER_TURN};

/// The server probes a silent client after half the liveness timeout: the client's own probes
/// (after a third) normally arrive first, so an idle session costs one PING exchange, not two.
const SERVER_FIRST_PROBE_SHARE: u32 = 2;

impl ServerProxy {
    /// Reads the waiting datagrams (at most [`DATAGRAMS_PER_TURN`]) and routes them; a read
    /// stopped at the cap leaves the socket in `udp_backlog`, read again next turn.
    pub(super) fn handle_readable(&mut self, now: Instant) {
        let drain = drain_bounded(DATAGRAMS_PER_TURN, || self.route_next(now));
        self.udp_backlog.note(drain);
    }

    /// Reads and routes one datagram; breaks when the socket has none (or failed).
    fn route_next(&mut self, now: Instant) -> ControlFlow<()> {
        // The datagram is copied out of the socket's buffer (routing it needs `self` whole)
        // into one buffer kept from datagram to datagram: no allocation per datagram.
        let mut data = std::mem::take(&mut self.rx);
        let from = match self.udp.recv() {
            Ok(Some((received, from))) => {
                data.clear();
                data.extend_from_slice(received);
                from
            }
            Ok(None) => {
                self.rx = data;
                return ControlFlow::Break(());
            }
            Err(e) => {
                self.rx = data;
                log::warn!("udp receive: {e}");
                return ControlFlow::Break(());
            }
        };
        // Bound to a wildcard address, the socket says which of ours the client sent to.
        let to = self
            .udp
            .last_destination()
            .map_or(self.local, |ip| SocketAddr::new(ip, self.local.port()));
        self.route(&mut data, from, to, now);
        self.rx = data;
        ControlFlow::Continue(())
    }

    fn route(&mut self, data: &mut [u8], from: SocketAddr, to: SocketAddr, now: Instant) {
        if path_check::is_ours(data) {
            self.on_path_response(data, from);
            return;
        }
        let cid_len = self.routes.cid_len();
        let Ok(hdr) = quiche::Header::from_slice(data, cid_len) else {
            log::trace!("dropping unparseable datagram from {from}");
            return;
        };
        if self.admission.drop_undersized(hdr.ty, data.len(), now) {
            return;
        }
        let derived = hmac::sign(&self.cid_key, &hdr.dcid);
        let derived = &derived.as_ref()[..cid_len];
        let key = self
            .routes
            .get(hdr.dcid.as_ref())
            .or_else(|| self.routes.get(derived));
        let key = match key {
            Some(k) => k,
            None if hdr.ty == quiche::Type::Initial => {
                match self.accept(&hdr, derived.to_vec(), from, to, now) {
                    Some(k) => k,
                    None => return,
                }
            }
            None if hdr.ty == quiche::Type::Short => {
                self.send_stateless_reset(&hdr.dcid, data.len(), from, to);
                return;
            }
            None => return,
        };
        if let Some(pc) = self.conns.get_mut(key) {
            pc.receive(data, hdr.ty, from, to, now);
            if let Some(refusal) = self.refusals.take() {
                pc.refusal = Some(refusal);
            }
        }
    }

    /// A client's answer to an address challenge: the session whose challenge it answers
    /// moves to the address it came from.
    fn on_path_response(&mut self, data: &[u8], from: SocketAddr) {
        for (_, pc) in self.conns.iter_mut() {
            let Some(nonce) = pc.peer.pending_nonce(from) else {
                continue;
            };
            if path_check::verify(&mut pc.session.conn, &nonce, data) {
                let change = pc.peer.on_validated();
                peer_address::report(change, &pc.client, &mut self.udp, &mut self.metrics);
                return;
            }
        }
        log::trace!("dropping a datagram from {from} that is neither QUIC nor an expected answer");
    }

    /// Creates a connection for a client's first Initial packet.
    fn accept(
        &mut self,
        hdr: &quiche::Header<'_>,
        scid: Vec<u8>,
        from: SocketAddr,
        local: SocketAddr,
        now: Instant,
    ) -> Option<usize> {
        if self.stopping {
            return None;
        }
        if !quiche::version_is_supported(hdr.version) {
            let mut out = [0u8; 1500];
            if let Ok(n) = quiche::negotiate_version(&hdr.scid, &hdr.dcid, &mut out) {
                let _ = self.udp.send_now(&out[..n], from, local);
            }
            return None;
        }
        let odcid = match self.admission.admit(hdr, &scid, from, self.load(), now) {
            Verdict::Accept { odcid } => odcid,
            Verdict::Retry(packet) => {
                let _ = self.udp.send_now(&packet, from, local);
                return None;
            }
            Verdict::Refuse => return None,
        };
        let budget = match odcid {
            Some(_) => SendBudget::validated(),
            None => SendBudget::unvalidated(),
        };
        self.quiche_config
            .set_stateless_reset_token(Some(self.routes.reset_token(&scid)));
        let datagram = self.path_sizing.fit(&mut self.quiche_config, from);
        log::debug!("datagrams to {from}: up to {datagram} bytes");
        let cid = quiche::ConnectionId::from_ref(&scid);
        let accepted: quiche::Result<quiche::Connection> = match &odcid {
            // After a Retry the client sends to the Retry's short ID, whose derived ID is `scid`.
            Some(odcid) => quiche::accept_with_retry(
                &cid,
                quiche::RetryConnectionIds {
                    original_destination_cid: &quiche::ConnectionId::from_ref(odcid),
                    retry_source_cid: &hdr.dcid,
                },
                local,
                from,
                &mut self.quiche_config,
            ),
            None => quiche::accept(&cid, None, local, from, &mut self.quiche_config),
        };
        let mut conn = match accepted {
            Ok(c) => c,
            Err(e) => {
                log::warn!("cannot accept a session from {from}: {e}");
                return None;
            }
        };
        self.debug.attach(&mut conn, "server");
        let liveness = Liveness::configured(
            self.cfg.transport.liveness_timeout,
            SERVER_FIRST_PROBE_SHARE,
            now,
        );
        let mut session = Session::new(conn, self.cfg.transport.keepalive_interval, liveness, now);
        let http = &self.cfg.http;
        session.announce_compression(
            self.cfg.services.any_compresses(http.compression.enabled),
            http.compression.dictionary.clone(),
        );
        let t = &self.cfg.transport;
        session.hold_acks(t.ack_delay, t.holds_acks_for_answers());
        session.set_pacing_floor(t);
        let key = self.conns.insert(PeerConn::new(
            session,
            from,
            local,
            scid.clone(),
            budget,
            now + self.admission.handshake_timeout(),
        ));
        self.routes.insert(scid, key);
        log::debug!("new session attempt from {from}");
        Some(key)
    }

    /// Connections in handshake and in all, for the admission caps.
    fn load(&self) -> Load {
        Load {
            handshakes: self.handshakes_in_progress(),
            sessions: self.conns.len(),
        }
    }

    pub(super) fn handshakes_in_progress(&self) -> usize {
        self.conns
            .iter()
            .filter(|(_, pc)| pc.is_handshaking())
            .count()
    }

    /// Drops connections whose handshake outlived `admission.handshake_timeout_ms` (mostly
    /// spoofed Initials): no close is sent, since their address was never shown to be real.
    pub(super) fn expire_handshakes(&mut self, registry: &Registry, now: Instant) {
        let expired: Vec<usize> = self
            .conns
            .iter()
            .filter(|(_, pc)| pc.handshake_deadline().is_some_and(|d| d <= now))
            .map(|(k, _)| k)
            .collect();
        for ck in expired {
            let pc = self.forget(registry, ck, now);
            log::debug!("handshake with {} timed out", pc.client);
            self.admission.on_handshake_timed_out(now);
        }
    }

    /// RFC 9000 §10.3: unpredictable bits, then the token; shorter than the packet that caused it
    /// so two servers cannot loop.
    fn send_stateless_reset(
        &mut self,
        dcid: &[u8],
        received: usize,
        to: SocketAddr,
        local: SocketAddr,
    ) {
        const MIN: usize = 21;
        if received <= MIN + 1 || dcid.len() != self.routes.cid_len() {
            return;
        }
        let len = (received - 1).min(43);
        let mut packet = vec![0u8; len];
        quic::random_bytes(&mut packet[..len - 16]);
        packet[0] = 0x40 | (packet[0] & 0x3f);
        packet[len - 16..].copy_from_slice(&self.routes.reset_token(dcid).to_be_bytes());
        log::debug!("stateless reset to {to} for an unknown connection");
        let _ = self.udp.send_now(&packet, to, local);
    }

    /// Removes connection `ck`, its routes and its exchanges (closing their upstream
    /// connections).
    pub(super) fn forget(&mut self, registry: &Registry, ck: usize, now: Instant) -> PeerConn {
        let mut pc = self.conns.remove(ck);
        self.routes.forget(&pc);
        self.with_requests(registry, now, |requests, _, env| {
            requests.forget_session(&mut pc, env)
        });
        pc
    }
}
