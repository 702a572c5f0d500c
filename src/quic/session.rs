//! One QUIC connection carrying HTTP/3, as both roles use it: the quiche connection, its H3
//! layer once the handshake is done, the keepalive timer, dead-peer detection
//! ([`super::liveness`]), whether a send may wait for the answer to carry its ACK
//! ([`super::ack_hold`]) and the close reason.
//!
//! The session is *usable* only once the peer's H3 SETTINGS arrived: in TLS 1.3 a client
//! finishes its handshake before the server has checked the client certificate, so "handshake
//! done" alone would call a session up that the server is about to refuse.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use quiche::h3;

use crate::bridge::compression::dictionary::{self, Dictionary};
use crate::bridge::headers::forwarding::{Completion, ServerEnd};
use crate::config::TransportConfig;

use super::ack_hold::AckHold;
use super::liveness::{Liveness, RttEstimate, Verdict};
use super::pace_floor::PaceFloor;
use super::refusal::alert_name;

pub struct Session {
    pub conn: quiche::Connection,
    pub h3: Option<h3::Connection>,
    keepalive_interval: Duration,
    next_keepalive: Instant,
    /// Set once [`Session::is_usable`] was first observed (for logging "established" once).
    announced: bool,
    /// Dead-peer detection (`None`: off).
    liveness: Option<Liveness>,
    /// The peer went silent for the liveness timeout: the session must be abandoned.
    peer_dead: bool,
    /// When the last packet from the peer was accepted.
    last_receive: Instant,
    /// This end announces link compression in its SETTINGS (`http.compression.enabled`).
    announces_compression: bool,
    /// What this end announces about forwarding fields ([`Completion`]): a client what it
    /// leaves to the server end, a server nothing (that it completes requests).
    forwarding: Completion,
    /// Whether an owed ACK may wait for the answer (off unless [`Session::hold_acks`]).
    /// Every write to quiche on this session's streams reports to it ([`AckHold::on_output`]).
    pub ack: AckHold,
    /// The floor under BBR2's pacing rate in STARTUP: this session's schedule
    /// ([`PaceFloor`], handed to [`super::udp::UdpIo::send_from`]).
    pub pace: PaceFloor,
    /// The shared dictionary this end announces with it (`http.compression.dictionary`),
    /// kept for the session's life whatever a reload loads.
    dictionary: Option<Arc<Dictionary>>,
}

impl Session {
    pub fn new(
        conn: quiche::Connection,
        keepalive_interval: Duration,
        liveness: Option<Liveness>,
        now: Instant,
    ) -> Self {
        Session {
            conn,
            h3: None,
            keepalive_interval,
            next_keepalive: now + keepalive_interval,
            announced: false,
            liveness,
            peer_dead: false,
            last_receive: now,
            announces_compression: false,
            forwarding: Completion::default(),
            ack: AckHold::new(Duration::ZERO, false),
            pace: PaceFloor::default(),
            dictionary: None,
        }
    }

    /// Lets an owed ACK wait up to `delay` (`transport.ack_delay_ms`) for a second full-size
    /// datagram, and with `for_answers` for the answer to a completed message to carry it.
    pub fn hold_acks(&mut self, delay: Duration, for_answers: bool) {
        self.ack = AckHold::new(delay, for_answers);
    }

    /// The pacing floor as `t` sets it ([`PaceFloor::for_transport`]).
    pub fn set_pacing_floor(&mut self, t: &TransportConfig) {
        self.pace = PaceFloor::for_transport(t);
    }

    /// Whether the send due now would only carry an ACK that may still wait: a hold is armed
    /// and nothing else is owed (handshakes, 0-RTT and closes never wait).
    pub fn may_hold_send(&self, now: Instant) -> bool {
        if self.ack.deadline().is_none() {
            return false;
        }
        let c = &self.conn;
        let settled = c.is_established()
            && !c.is_in_early_data()
            && !c.is_draining()
            && !c.is_closed()
            && c.local_error().is_none();
        settled && self.ack.holds(now, packets_lost(c))
    }

    /// An HTTP/3 event was polled: one that completes the peer's message (a request at the
    /// server, a response at the client) lets its ACK wait for the answer.
    pub fn note_event(&mut self, event: &h3::Event, now: Instant) {
        if matches!(
            event,
            h3::Event::Finished
                | h3::Event::Headers {
                    more_frames: false,
                    ..
                }
        ) {
            self.ack.expect_answer(now);
        }
    }

    /// quiche was asked to send: what was owed is on its way.
    pub fn on_sent(&mut self) {
        if self.ack.enabled() {
            let conn = &self.conn;
            self.ack.on_sent(|| packets_lost(conn));
        }
    }

    /// Announce link compression in this end's SETTINGS (before the HTTP/3 layer starts),
    /// with the id of `dictionary` when one is configured.
    pub fn announce_compression(&mut self, on: bool, dictionary: Option<Arc<Dictionary>>) {
        self.announces_compression = on;
        self.dictionary = dictionary.filter(|_| on);
    }

    /// Announce what this end leaves to the server end of the forwarding fields (a client;
    /// before the HTTP/3 layer starts).
    pub fn announce_forwarding(&mut self, left: Completion) {
        self.forwarding = left;
    }

    /// What the peer announced about forwarding fields (`None`: an older peer).
    pub fn peer_forwarding(&self) -> Option<Completion> {
        Completion::announced_by(self.h3.as_ref()?.peer_settings_raw())
    }

    /// A client's view of the server end: whether it writes the forwarding fields' constant
    /// parts (and what this end announced it leaves to it).
    pub fn forwarding_server(&self) -> ServerEnd {
        match self.h3.as_ref().and_then(|h3| h3.peer_settings_raw()) {
            None => ServerEnd::Unknown,
            Some(s) => match Completion::announced_by(Some(s)) {
                Some(_) => ServerEnd::Completes(self.forwarding),
                None => ServerEnd::Older,
            },
        }
    }

    /// Both ends announced link compression: bodies may go compressed on this session.
    pub fn link_compression(&self) -> bool {
        self.announces_compression
            && self.h3.as_ref().is_some_and(|h3| {
                crate::bridge::compression::peer_announces(h3.peer_settings_raw())
            })
    }

    /// The dictionary both ends announced (the same id), when bodies go compressed: the one
    /// this session's compressed bodies may use, both ways.
    pub fn link_dictionary(&self) -> Option<Arc<Dictionary>> {
        if !self.link_compression() {
            return None;
        }
        let settings = self.h3.as_ref()?.peer_settings_raw();
        dictionary::agreed(self.dictionary.as_ref(), settings)
    }

    /// Feeds one received datagram to quiche and creates the H3 layer when the handshake is done.
    pub fn handle_datagram(
        &mut self,
        data: &mut [u8],
        from: SocketAddr,
        to: SocketAddr,
        now: Instant,
    ) {
        let info = quiche::RecvInfo { from, to };
        let len = data.len();
        match self.conn.recv(data, info) {
            Ok(_) => {
                self.ack.on_datagram(now, len);
                self.last_receive = self.last_receive.max(now);
                if let Some(l) = self.liveness.as_mut() {
                    l.on_receive(now);
                }
            }
            Err(e) => log::debug!("quic recv from {from}: {e}"),
        }
        self.ensure_h3();
    }

    /// Creates the HTTP/3 layer once the connection can carry it (handshake done, or 0-RTT).
    pub fn ensure_h3(&mut self) {
        if self.h3.is_some() || !(self.conn.is_established() || self.conn.is_in_early_data()) {
            return;
        }
        let dictionary = self.dictionary.as_deref();
        let made = super::setup::h3_config(self.announces_compression, dictionary, self.forwarding)
            .and_then(|cfg| h3::Connection::with_transport(&mut self.conn, &cfg));
        match made {
            Ok(h3) => self.h3 = Some(h3),
            Err(e) => {
                log::warn!("cannot start HTTP/3 on the session: {e}");
                let _ = self
                    .conn
                    .close(true, h3::WireErrorCode::InternalError as u64, b"h3 setup");
            }
        }
    }

    /// Established, authenticated by both sides (peer SETTINGS seen) and not closing.
    pub fn is_usable(&self) -> bool {
        !self.conn.is_closed()
            && !self.conn.is_draining()
            && self
                .h3
                .as_ref()
                .is_some_and(|h| h.peer_settings_raw().is_some())
    }

    /// Offers the peer spare connection IDs of `cid_len` bytes (as many as it accepts), so
    /// that a path change (NAT rebinding, address migration) can move to a fresh ID. Returns
    /// the IDs issued, for a server to route them.
    pub fn issue_spare_cids(
        &mut self,
        cid_len: usize,
        mut reset_token: impl FnMut(&[u8]) -> u128,
    ) -> Vec<Vec<u8>> {
        let mut issued = Vec::new();
        for _ in 0..self.conn.scids_left().min(4) {
            let cid = super::new_cid(cid_len);
            let token = reset_token(&cid);
            if self
                .conn
                .new_scid(&quiche::ConnectionId::from_ref(&cid), token, false)
                .is_err()
            {
                break;
            }
            issued.push(cid);
        }
        issued
    }

    /// True exactly once: the first time the session is seen usable.
    pub fn take_newly_usable(&mut self) -> bool {
        if !self.announced && self.is_usable() {
            self.announced = true;
            return true;
        }
        false
    }

    /// Runs quiche's timers, our keepalive and the liveness check when due.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.conn.timeout_instant().is_some_and(|t| t <= now) {
            self.conn.on_timeout();
            self.ack.on_output(); // a probe, a retransmission or a close may be due
        }
        let live = self.conn.is_established() && !self.conn.is_closed();
        if now >= self.next_keepalive {
            if live {
                let _ = self.conn.send_ack_eliciting();
                self.ack.on_output();
            }
            self.next_keepalive = now + self.keepalive_interval;
        }
        let est = self.rtt_estimate();
        match self
            .liveness
            .as_mut()
            .filter(|_| live)
            .map(|l| l.poll(now, est))
        {
            Some(Verdict::Probe) => {
                let _ = self.conn.send_ack_eliciting();
                self.ack.on_output();
            }
            Some(Verdict::Dead) => self.peer_dead = true,
            Some(Verdict::Alive) | None => {}
        }
    }

    pub fn next_deadline(&self) -> Option<Instant> {
        let liveness = self
            .liveness
            .as_ref()
            .filter(|_| self.conn.is_established() && !self.peer_dead)
            .map(|l| l.deadline(self.rtt_estimate()));
        let d = crate::time::earliest(self.conn.timeout_instant(), Some(self.next_keepalive));
        let d = crate::time::earliest(d, self.ack.deadline());
        crate::time::earliest(d, liveness)
    }

    /// The peer was silent for the whole liveness timeout (the caller abandons the session).
    pub fn peer_dead(&self) -> bool {
        self.peer_dead
    }

    /// How long the peer has been silent (`None` without liveness checks).
    pub fn peer_silence(&self, now: Instant) -> Option<Duration> {
        self.liveness.as_ref().map(|l| l.silence(now))
    }

    /// The liveness timeout in force on the current path.
    pub fn liveness_timeout(&self) -> Option<Duration> {
        let est = self.rtt_estimate();
        self.liveness.as_ref().map(|l| l.timeout(est))
    }

    /// How long the peer has been silent (whether or not liveness checks are on).
    pub fn quiet_for(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.last_receive)
    }

    /// When the peer's silence reaches `allowance`.
    pub fn quiet_deadline(&self, allowance: Duration) -> Instant {
        self.last_receive + allowance
    }

    /// The longest silence an alive peer shows: something ack-eliciting goes out at least
    /// this often (a keepalive, or a liveness probe), then an answer takes at most three probe
    /// timeouts of the path (RTT, its variation and the ACK delay; two lost in a row).
    pub fn expected_silence(&self) -> Duration {
        let est = self.rtt_estimate();
        let probe_every = self.liveness.as_ref().map_or(self.keepalive_interval, |l| {
            l.first_probe_after(est).min(self.keepalive_interval)
        });
        probe_every + est.pto() * 3
    }

    fn rtt_estimate(&self) -> RttEstimate {
        self.conn
            .path_stats()
            .find(|p| p.active)
            .map(|p| RttEstimate {
                rtt: p.rtt,
                rttvar: p.rttvar,
            })
            .unwrap_or_default()
    }

    /// The TLS alert we sent to refuse the handshake, if that is how the connection ended.
    pub fn local_tls_alert(&self) -> Option<u8> {
        self.conn
            .local_error()
            .filter(|e| !e.is_app && (0x100..=0x1ff).contains(&e.error_code))
            .map(|e| (e.error_code - 0x100) as u8)
    }

    /// Why the connection closed (or is closing), for the log. A certificate our side refused
    /// is named with the verifier's reason.
    pub fn close_reason_detailed(&mut self) -> String {
        let reason = self.close_reason();
        match self
            .local_tls_alert()
            .and(super::tls::local_verify_failure(&mut self.conn))
        {
            Some(why) => format!("{reason}: the peer's certificate: {why}"),
            None => reason,
        }
    }

    /// Why the connection closed (or is closing), for the log.
    pub fn close_reason(&self) -> String {
        if let Some(e) = self.conn.peer_error() {
            return format!("closed by peer: {}", describe(e));
        }
        if let Some(e) = self.conn.local_error() {
            return format!("closed locally: {}", describe(e));
        }
        if self.conn.is_timed_out() {
            return "idle timeout (no packets from the peer)".to_string();
        }
        if self.conn.is_closed() {
            return "peer reset the connection (stateless reset: it restarted or lost state)"
                .to_string();
        }
        "open".to_string()
    }
}

/// Packets quiche declared lost so far (per path: `stats()` walks every stream).
fn packets_lost(conn: &quiche::Connection) -> usize {
    conn.path_stats().map(|p| p.lost).sum()
}

fn describe(e: &quiche::ConnectionError) -> String {
    let reason = String::from_utf8_lossy(&e.reason);
    let space = if e.is_app { "application" } else { "transport" };
    let meaning = match (e.is_app, e.error_code) {
        (false, code @ 0x100..=0x1ff) => {
            format!(
                " ({}: certificate or handshake refused)",
                alert_name(code as u8)
            )
        }
        (false, code) => transport_error_name(code).to_string(),
        (true, _) => String::new(),
    };
    format!("{space} error {:#x}{meaning} {reason:?}", e.error_code)
}

fn transport_error_name(code: u64) -> &'static str {
    match code {
        0x0 => " (no error)",
        0x1 => " (internal error)",
        0x2 => " (connection refused)",
        0xa => " (protocol violation)",
        _ => "",
    }
}
