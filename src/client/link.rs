//! The client's one session to its peer, kept up forever.
//!
//! States: `Connecting` (handshake under way) -> `Up` (peer SETTINGS seen: requests may use it)
//! -> closed -> `Waiting` (backoff) -> `Connecting` ... Each attempt binds a fresh UDP socket, so
//! packets of a dead connection can never be confused with the new one. Every loss is logged with
//! its reason.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use mio::{Interest, Registry};

use crate::config::{ClientConfig, TransportConfig};
use crate::net;
use crate::quic::backoff::Backoff;
use crate::quic::session::Session;
use crate::quic::udp::UdpIo;
use crate::quic::{self, tls, CID_LEN};
use crate::reactor::UDP;

enum State {
    Connecting(Session),
    Up(Session),
    Waiting { until: Instant },
}

/// What changed in the link during a step, for the proxy to react to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkEvent {
    None,
    /// The session became usable.
    Up,
    /// A usable session died: its streams are gone.
    Lost,
}

pub struct PeerLink {
    quiche_config: quiche::Config,
    peer: SocketAddr,
    server_name: String,
    transport: TransportConfig,
    state: State,
    backoff: Backoff,
    udp: Option<UdpIo>,
}

impl PeerLink {
    pub fn new(cfg: &ClientConfig) -> Result<Self, Box<dyn std::error::Error>> {
        let tls = tls::client_context(&cfg.tls)?;
        let quiche_config = quic::setup::quiche_config(&cfg.transport, tls)?;
        Ok(PeerLink {
            quiche_config,
            peer: cfg.peer.address,
            server_name: cfg.peer.server_name.clone(),
            transport: cfg.transport.clone(),
            state: State::Waiting {
                until: Instant::now(),
            },
            backoff: Backoff::new(cfg.reconnect.initial_backoff, cfg.reconnect.max_backoff),
            udp: None,
        })
    }

    /// Starts a connection attempt on a fresh UDP socket.
    fn connect(
        &mut self,
        registry: &Registry,
        now: Instant,
    ) -> Result<(), Box<dyn std::error::Error>> {
        if let Some(mut old) = self.udp.take() {
            let _ = registry.deregister(&mut old.socket);
        }
        let bind: SocketAddr = if self.peer.is_ipv4() {
            "0.0.0.0:0"
        } else {
            "[::]:0"
        }
        .parse()
        .map_err(|e| format!("{e}"))?;
        let t = &self.transport;
        let mut udp = UdpIo::new(net::bind_udp(bind, t.udp_recv_buffer, t.udp_send_buffer)?);
        registry.register(
            &mut udp.socket,
            UDP,
            Interest::READABLE | Interest::WRITABLE,
        )?;
        let local = udp.local_addr()?;
        let mut scid = [0u8; CID_LEN];
        quic::random_bytes(&mut scid);
        let scid = quiche::ConnectionId::from_ref(&scid);
        let ip: Option<IpAddr> = self.server_name.parse().ok();
        let sni = if ip.is_some() {
            None
        } else {
            Some(self.server_name.as_str())
        };
        let mut conn = quiche::connect(sni, &scid, local, self.peer, &mut self.quiche_config)?;
        if let Some(ip) = ip {
            tls::pin_server_ip(&mut conn, ip)?;
        }
        log::debug!(
            "connecting to {} ({}) from {local}",
            self.peer,
            self.server_name
        );
        self.state = State::Connecting(Session::new(conn, t.keepalive_interval, now));
        self.udp = Some(udp);
        Ok(())
    }

    /// The session, if one exists (connecting or up).
    pub fn session_mut(&mut self) -> Option<&mut Session> {
        match &mut self.state {
            State::Connecting(s) | State::Up(s) => Some(s),
            State::Waiting { .. } => None,
        }
    }

    /// The session when requests may use it.
    pub fn usable(&mut self) -> Option<&mut Session> {
        match &mut self.state {
            State::Up(s) => Some(s),
            _ => None,
        }
    }

    pub fn is_up(&self) -> bool {
        matches!(self.state, State::Up(_))
    }

    /// Reads every datagram waiting on the socket into the session.
    pub fn handle_readable(&mut self) {
        let Some(udp) = self.udp.as_mut() else { return };
        let session = match &mut self.state {
            State::Connecting(s) | State::Up(s) => s,
            State::Waiting { .. } => return,
        };
        let Ok(to) = udp.local_addr() else { return };
        loop {
            match udp.recv() {
                Ok(Some((data, from))) => session.handle_datagram(data, from, to),
                Ok(None) => break,
                Err(e) => {
                    log::warn!("udp receive: {e}");
                    break;
                }
            }
        }
    }

    pub fn handle_writable(&mut self, now: Instant) {
        if let Some(udp) = self.udp.as_mut() {
            udp.on_writable(now);
        }
    }

    /// Timers: quiche's, keepalive, and the backoff wait.
    pub fn handle_timeout(&mut self, registry: &Registry, now: Instant) {
        match &mut self.state {
            State::Waiting { until } if *until <= now => {
                if let Err(e) = self.connect(registry, now) {
                    self.retry_later(now, &format!("cannot start a session: {e}"));
                }
            }
            State::Waiting { .. } => {}
            State::Connecting(s) | State::Up(s) => s.handle_timeout(now),
        }
    }

    /// Notices state changes after input and timers.
    pub fn update(&mut self, now: Instant) -> LinkEvent {
        let (closed, reason, newly_usable) = match &mut self.state {
            State::Waiting { .. } => return LinkEvent::None,
            State::Connecting(s) | State::Up(s) => {
                (s.conn.is_closed(), s.close_reason(), s.take_newly_usable())
            }
        };
        if closed {
            let was_up = self.is_up();
            if was_up {
                log::info!("session lost: {reason}");
            }
            self.retry_later(now, &reason);
            return if was_up {
                LinkEvent::Lost
            } else {
                LinkEvent::None
            };
        }
        if newly_usable {
            let old = std::mem::replace(&mut self.state, State::Waiting { until: now });
            if let State::Connecting(s) = old {
                log::info!(
                    "session established with {} ({}), rtt {:?}",
                    self.peer,
                    self.server_name,
                    s.conn.path_stats().next().map(|p| p.rtt)
                );
                self.state = State::Up(s);
            }
            self.backoff.reset();
            return LinkEvent::Up;
        }
        LinkEvent::None
    }

    fn retry_later(&mut self, now: Instant, reason: &str) {
        let delay = self.backoff.next_delay(quic::random_unit());
        if !self.is_up() {
            log::warn!(
                "session to {} not established: {reason}; retrying in {} ms",
                self.peer,
                delay.as_millis()
            );
        }
        self.state = State::Waiting { until: now + delay };
    }

    /// Sends whatever the session has to send.
    pub fn flush(&mut self, now: Instant) {
        let Some(udp) = self.udp.as_mut() else { return };
        match &mut self.state {
            State::Connecting(s) | State::Up(s) => udp.send_from(&mut s.conn, now),
            State::Waiting { .. } => udp.flush(now),
        }
    }

    pub fn next_deadline(&self) -> Option<Instant> {
        let state = match &self.state {
            State::Waiting { until } => Some(*until),
            State::Connecting(s) | State::Up(s) => s.next_deadline(),
        };
        crate::time::earliest(state, self.udp.as_ref().and_then(|u| u.next_release()))
    }

    /// Starts closing the session (graceful stop).
    pub fn close(&mut self) {
        if let Some(s) = self.session_mut() {
            let _ = s.conn.close(true, quic::h3_code::NO_ERROR, b"shutdown");
        }
    }

    /// True when no session remains open.
    pub fn is_closed(&self) -> bool {
        match &self.state {
            State::Connecting(s) | State::Up(s) => s.conn.is_closed(),
            State::Waiting { .. } => true,
        }
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.udp
            .as_ref()
            .map(|u| u.local_addr())
            .unwrap_or_else(|| Err(io::ErrorKind::NotConnected.into()))
    }
}
