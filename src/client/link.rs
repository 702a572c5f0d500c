//! The client's one session to its peer, kept up forever.
//!
//! States: `Connecting` (handshake under way) -> `Up` (peer SETTINGS seen: requests may use it)
//! -> closed -> `Waiting` (backoff) -> `Connecting` ... Each attempt binds a fresh UDP socket, so
//! packets of a dead connection can never be confused with the new one. Every loss is logged with
//! its reason.
//!
//! This module is the state machine. How an attempt is started, abandoned and reported (first
//! contact) lives in `link/attempt.rs`, the session ticket kept for 0-RTT in
//! `link/resumption.rs`, reading and sending its datagrams in `link/datagrams.rs`, and the
//! connection setup shared with `--check --connect` in [`super::dial`].

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::{Registry, Token};

use crate::bridge::compression::Dictionary;
use crate::bridge::headers::forwarding::Completion;
use crate::config::{ClientConfig, PeerConfig, TransportConfig};
use crate::metrics::{Metrics, PathFigures, Snapshot, TransportCounters};
use crate::quic::backoff::Backoff;
use crate::quic::debug::DebugTaps;
use crate::quic::session::Session;
use crate::quic::setup::PathSizing;
use crate::quic::udp::{LossHider, UdpIo};
use crate::quic::{self, tls};
use crate::resolve::Candidates;

use super::contact::{Contact, FailureKind};
use resumption::Resumption;

mod attempt;
mod datagrams;
mod health;
mod resumption;

enum State {
    Connecting(Session),
    /// Usable; `goaway` once the peer announced it is going away (no new requests on it).
    Up {
        session: Session,
        since: Instant,
        goaway: bool,
    },
    Waiting {
        until: Instant,
    },
}

/// What changed in the link during a step, for the proxy to react to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkEvent {
    None,
    /// The session became usable.
    Up,
    /// A usable session died: its streams are gone.
    Lost,
    /// The peer has been silent longer than an alive peer would be: new requests go to
    /// other peers, requests that may be repeated move off it.
    Suspect,
}

pub struct PeerLink {
    /// The peer's name in the configuration (routes, metrics and logs use it).
    pub name: String,
    /// The reactor token of its UDP socket.
    token: Token,
    /// A peer silent longer than this is suspect (`None`: [`Session::expected_silence`]).
    silence_allowance: Option<Duration>,
    /// The session is up but its peer is suspect (see [`LinkEvent::Suspect`]).
    suspect: bool,
    quiche_config: quiche::Config,
    /// Fits `quiche_config` to the route of each attempt.
    path_sizing: PathSizing,
    /// The address of the current (or last) attempt.
    peer: SocketAddr,
    /// The peer's addresses, tried in turn.
    addresses: Candidates,
    contact: Contact,
    handshake_timeout: Duration,
    /// When the attempt under way is abandoned if its handshake has not completed.
    handshake_deadline: Option<Instant>,
    /// An attempt carrying 0-RTT streams was abandoned: report them lost.
    abandoned_early: bool,
    server_name: String,
    transport: TransportConfig,
    /// Announce link compression on each session (`http.compression.enabled`).
    announces_compression: bool,
    /// The shared dictionary announced with it (`http.compression.dictionary`).
    dictionary: Option<Arc<Dictionary>>,
    /// What of the forwarding fields its sessions leave to the server end (`http.forwarding`).
    forwarding: Completion,
    state: State,
    backoff: Backoff,
    udp: Option<UdpIo>,
    /// A session was up before (the next one counts as a reconnect).
    was_up: bool,
    /// Graceful stop: never reconnect.
    stopped: bool,
    /// Resume with 0-RTT (`tls.early_data`), with the last ticket we got.
    resumption: Resumption,
    /// The current attempt started in 0-RTT (its streams count as live).
    early: bool,
    /// Loss hiding policy and counters (kept across reconnects).
    hider: LossHider,
    debug: DebugTaps,
}

impl PeerLink {
    /// The link to `peer`, its UDP sockets registered under `token`.
    pub fn new(
        cfg: &ClientConfig,
        peer: &PeerConfig,
        token: Token,
    ) -> Result<Self, Box<dyn std::error::Error>> {
        let tls = tls::client_context(&cfg.tls)?;
        let mut quiche_config =
            quic::setup::quiche_config(&cfg.transport, tls, cfg.http.max_head_bytes)?;
        if cfg.early_data {
            quiche_config.enable_early_data();
        }
        Ok(PeerLink {
            name: peer.name.clone(),
            token,
            silence_allowance: cfg.peer_silence,
            suspect: false,
            quiche_config,
            path_sizing: PathSizing::new(&cfg.transport, cfg.http.max_head_bytes),
            peer: peer
                .address
                .literal()
                .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], peer.address.port))),
            addresses: Candidates::new(peer.address.clone()),
            contact: Contact::new(peer.address.clone()),
            handshake_timeout: cfg.reconnect.handshake_timeout,
            handshake_deadline: None,
            abandoned_early: false,
            server_name: peer.server_name.clone(),
            transport: cfg.transport.clone(),
            announces_compression: cfg
                .listener_rules
                .iter()
                .any(|r| r.any_compresses(cfg.http.compression.enabled)),
            dictionary: cfg.http.compression.dictionary.clone(),
            forwarding: Completion::left_by(&cfg.http.forwarding),
            state: State::Waiting {
                until: Instant::now(),
            },
            backoff: Backoff::new(cfg.reconnect.initial_backoff, cfg.reconnect.max_backoff),
            udp: None,
            was_up: false,
            stopped: false,
            resumption: Resumption::new(cfg.early_data),
            early: false,
            hider: LossHider::new(cfg.transport.loss_hiding),
            debug: DebugTaps::new(cfg.ops.qlog_dir.clone()),
        })
    }

    /// Keeps the newest session ticket the server gave us.
    fn keep_ticket(&mut self) {
        if let State::Connecting(s) | State::Up { session: s, .. } = &self.state {
            self.resumption.keep(&s.conn);
        }
    }

    /// Requests may be sent in 0-RTT right now (resumed session, handshake not done).
    pub fn in_early_data(&self) -> bool {
        matches!(&self.state, State::Connecting(s) if self.early && s.conn.is_in_early_data())
    }

    /// The session, if one exists (connecting or up).
    pub fn session_mut(&mut self) -> Option<&mut Session> {
        match &mut self.state {
            State::Connecting(s) | State::Up { session: s, .. } => Some(s),
            State::Waiting { .. } => None,
        }
    }

    /// The session when streams may use it (including a session going away).
    pub fn usable(&mut self) -> Option<&mut Session> {
        let early = self.in_early_data();
        match &mut self.state {
            State::Up { session, .. } => Some(session),
            State::Connecting(session) if early => Some(session),
            _ => None,
        }
    }

    /// The congestion window of the session's active path (0 without a session).
    pub fn cwnd(&self) -> usize {
        match &self.state {
            State::Connecting(s) | State::Up { session: s, .. } => {
                s.conn.path_stats().find(|p| p.active).map_or(0, |p| p.cwnd)
            }
            State::Waiting { .. } => 0,
        }
    }

    pub fn is_up(&self) -> bool {
        matches!(self.state, State::Up { .. })
    }

    /// New requests may open streams now.
    pub fn accepts_requests(&self) -> bool {
        matches!(self.state, State::Up { goaway: false, .. }) || self.in_early_data()
    }

    /// The peer sent GOAWAY: finish what runs, send new requests on the next session.
    pub fn on_goaway(&mut self) {
        if let State::Up { goaway, .. } = &mut self.state {
            if !*goaway {
                log::info!(
                    "peer {} is going away (GOAWAY): new requests wait for the next session",
                    self.peer
                );
            }
            *goaway = true;
        }
    }

    /// Closes a session that went away once its last stream finished, to reconnect.
    pub fn retire_if_idle(&mut self, streams_open: usize) {
        if let State::Up {
            session,
            goaway: true,
            ..
        } = &mut self.state
        {
            if streams_open == 0 && !session.conn.is_closed() {
                let _ = session
                    .conn
                    .close(true, quic::h3_code::NO_ERROR, b"peer going away");
            }
        }
    }

    /// Logs the loss hiding mode and its cost (once, at start-up).
    pub fn describe_loss_hiding(&self) -> String {
        self.hider.describe()
    }

    /// Adds this link's live figures to the metrics endpoint's (the peer's own ones are
    /// [`crate::client::peers::Peers::snapshot`]'s).
    pub fn snapshot(&self, snap: &mut Snapshot, now: Instant) {
        snap.duplicated.0 += self.hider.datagrams;
        snap.duplicated.1 += self.hider.bytes;
        match &self.state {
            State::Up { session, since, .. } => {
                snap.sessions_up += 1;
                snap.session_up_since = crate::time::earliest(snap.session_up_since, Some(*since));
                snap.live_transport
                    .add(&TransportCounters::of(&session.conn));
                snap.paths
                    .extend(PathFigures::of(session, self.name.clone(), now));
            }
            State::Connecting(session) => snap
                .live_transport
                .add(&TransportCounters::of(&session.conn)),
            State::Waiting { .. } => {}
        }
    }

    /// Since when the session has been up.
    pub fn up_since(&self) -> Option<Instant> {
        match &self.state {
            State::Up { since, .. } => Some(*since),
            _ => None,
        }
    }

    /// The shared dictionary the next sessions announce (a reload); a running session keeps
    /// the one it announced, so both its ends keep the same bytes.
    pub fn set_dictionary(&mut self, dictionary: Option<Arc<Dictionary>>) {
        self.dictionary = dictionary;
    }

    /// What the next sessions leave to the server end of the forwarding fields (a reload); a
    /// running session's requests go complete when they no longer match its announcement.
    pub fn set_forwarding(&mut self, left: Completion) {
        self.forwarding = left;
    }

    /// Timers: quiche's, keepalive, and the backoff wait.
    pub fn handle_timeout(&mut self, registry: &Registry, now: Instant) {
        match &mut self.state {
            State::Waiting { until } if *until <= now => self.start_attempt(registry, now),
            State::Waiting { .. } => {}
            State::Connecting(_) if self.handshake_deadline.is_some_and(|d| d <= now) => {
                self.handshake_timed_out(now)
            }
            State::Connecting(s) | State::Up { session: s, .. } => s.handle_timeout(now),
        }
    }

    /// Notices state changes after input and timers.
    pub fn update(&mut self, now: Instant, metrics: &mut Metrics) -> LinkEvent {
        self.keep_ticket();
        self.check_unreachable(now);
        if std::mem::take(&mut self.abandoned_early) {
            return LinkEvent::Lost;
        }
        if let State::Up { session, .. } = &mut self.state {
            // Keep the server supplied with spare IDs (retired ones are replaced).
            session.issue_spare_cids(self.transport.connection_id_bytes, |_| {
                let mut t = [0u8; 16];
                quic::random_bytes(&mut t);
                u128::from_be_bytes(t)
            });
        }
        if self.abandon_if_peer_dead(now, metrics) {
            return LinkEvent::Lost;
        }

        let (closed, newly_usable) = match &mut self.state {
            State::Waiting { .. } => return LinkEvent::None,
            State::Connecting(s) | State::Up { session: s, .. } => {
                (s.conn.is_closed(), s.take_newly_usable())
            }
        };
        if closed {
            // Streams opened in 0-RTT die with the attempt as well.
            let was_up = self.is_up() || std::mem::take(&mut self.early);
            if let State::Connecting(s) | State::Up { session: s, .. } = &mut self.state {
                let reason = s.close_reason_detailed();
                metrics.record_session_closed(TransportCounters::of(&s.conn), &reason);
                if was_up {
                    log::info!("session lost: {reason}");
                    self.reconnect_after_loss(now);
                } else {
                    self.attempt_failed(now, FailureKind::Closed, reason);
                }
            }
            return if was_up {
                LinkEvent::Lost
            } else {
                LinkEvent::None
            };
        }
        if newly_usable {
            let old = std::mem::replace(&mut self.state, State::Waiting { until: now });
            if let State::Connecting(session) = old {
                log::info!(
                    "session established with {} ({}), rtt {:?}{}",
                    self.peer,
                    self.server_name,
                    session.conn.path_stats().next().map(|p| p.rtt),
                    resumption::note(&session.conn)
                );
                self.state = State::Up {
                    session,
                    since: now,
                    goaway: false,
                };
            }
            self.handshake_deadline = None;
            self.addresses.worked(self.peer);
            if let Some(line) = self.contact.up() {
                log::info!("{line}");
            }
            if self.was_up {
                metrics.reconnects += 1;
            }
            self.was_up = true;
            self.backoff.reset();
            return LinkEvent::Up;
        }
        let was_suspect = self.suspect;
        if self.check_silence(now) {
            return LinkEvent::Suspect;
        }
        if was_suspect && !self.suspect {
            return LinkEvent::Up;
        }
        LinkEvent::None
    }

    /// A session that was up is gone: resolve the name again (the address that worked first)
    /// and start attempts, frequent for a while (`quic::backoff`).
    fn reconnect_after_loss(&mut self, now: Instant) {
        self.addresses.restart();
        self.backoff.on_loss(now);
        self.retry_later(now);
    }

    fn retry_later(&mut self, now: Instant) {
        if self.stopped {
            self.state = State::Waiting {
                until: now + std::time::Duration::from_secs(3600),
            };
            return;
        }
        let delay = self.backoff.next_delay(now, quic::random_unit());
        log::debug!("next session attempt in {} ms", delay.as_millis());
        self.state = State::Waiting { until: now + delay };
    }

    pub fn next_deadline(&self) -> Option<Instant> {
        let state = match &self.state {
            State::Waiting { until } => Some(*until),
            State::Up { session: s, .. } if !self.suspect => {
                let quiet = s.quiet_deadline(self.allowance(s) + Duration::from_millis(1));
                crate::time::earliest(s.next_deadline(), Some(quiet))
            }
            State::Connecting(s) | State::Up { session: s, .. } => {
                crate::time::earliest(s.next_deadline(), self.handshake_deadline)
            }
        };
        crate::time::earliest(state, self.udp.as_ref().and_then(|u| u.next_release()))
    }

    /// Starts closing the session for good (graceful stop): no reconnect follows.
    pub fn close(&mut self) {
        self.stopped = true;
        if let Some(s) = self.session_mut() {
            let _ = s.conn.close(true, quic::h3_code::NO_ERROR, b"shutdown");
        }
    }

    /// True when no session remains open.
    pub fn is_closed(&self) -> bool {
        match &self.state {
            State::Connecting(s) | State::Up { session: s, .. } => s.conn.is_closed(),
            State::Waiting { .. } => true,
        }
    }
}
