//! How the link judges its peer's liveness: *suspect* once the peer has been silent longer
//! than an alive one can be (new requests then go to another peer while one is healthy, see
//! `client::peers`), *dead* at the liveness timeout (the session is abandoned and a new one
//! started).

use std::time::{Duration, Instant};

use super::{PeerLink, State};
use crate::metrics::{Metrics, TransportCounters};
use crate::quic;
use crate::quic::session::Session;

impl PeerLink {
    /// The peer's silence after which it is suspect, on the current session.
    pub(super) fn allowance(&self, session: &Session) -> Duration {
        self.silence_allowance
            .unwrap_or_else(|| session.expected_silence())
    }

    /// Up, takes new requests and its peer is not suspect. An attempt in 0-RTT takes requests
    /// too but is not healthy: its peer has not answered yet, and may be the one that died.
    pub fn is_healthy(&self) -> bool {
        matches!(self.state, State::Up { goaway: false, .. }) && !self.suspect
    }

    /// Whether the peer is suspect now (up, and silent beyond its allowance); logs changes.
    pub(super) fn check_silence(&mut self, now: Instant) -> bool {
        let State::Up { session, .. } = &self.state else {
            self.suspect = false;
            return false;
        };
        let (quiet, allowance) = (session.quiet_for(now), self.allowance(session));
        let suspect = quiet > allowance;
        if suspect && !self.suspect {
            log::warn!(
                "peer {} ({}) silent for {} ms (allowance {} ms): new requests go to another peer while one is healthy",
                self.name,
                self.peer,
                quiet.as_millis(),
                allowance.as_millis()
            );
        } else if !suspect && self.suspect {
            log::info!(
                "peer {} ({}) answers again: it takes requests",
                self.name,
                self.peer
            );
        }
        std::mem::replace(&mut self.suspect, suspect) != suspect && suspect
    }

    /// The peer went silent for the liveness timeout: the session is abandoned at once (with a
    /// CONNECTION_CLOSE in case only the other direction failed) and a new one is started
    /// after the backoff. True when that happened.
    pub(super) fn abandon_if_peer_dead(&mut self, now: Instant, metrics: &mut Metrics) -> bool {
        let State::Up { session, .. } = &mut self.state else {
            return false;
        };
        if !session.peer_dead() {
            return false;
        }
        let reason = format!(
            "peer silent for {} ms (liveness timeout {} ms): abandoned",
            session.peer_silence(now).unwrap_or_default().as_millis(),
            session.liveness_timeout().unwrap_or_default().as_millis()
        );
        let _ = session
            .conn
            .close(true, quic::h3_code::NO_ERROR, b"peer silent");
        if let Some(udp) = self.udp.as_mut() {
            udp.send_final(&mut session.conn, None);
        }
        log::warn!("session lost: {reason}; reconnecting");
        metrics.dead_peers += 1;
        metrics.record_session_closed(TransportCounters::of(&session.conn), &reason);
        self.reconnect_after_loss(now);
        true
    }
}
