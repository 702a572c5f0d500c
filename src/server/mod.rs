//! Server role: accepts QUIC sessions from authenticated clients and issues each request
//! stream at the upstream over a pool of keep-alive TCP connections.
//!
//! Datagram routing: a packet goes to the connection whose ID is its destination CID. A new
//! client's Initial packets carry a DCID the client chose; we derive our own CID from it with an
//! HMAC, so every packet of a multi-packet ClientHello reaches the same connection without a
//! Retry round trip. A short-header packet for a connection we do not know (say, after a
//! restart) gets a stateless reset, whose token derives from the server's private key, so a
//! restarted server can reset its predecessor's sessions and clients reconnect at once instead
//! of waiting for their idle timeout.
//!
//! New handshakes go through [`admission`] first (size, Retry token, per-source rate, caps,
//! Retry under pressure), and until a client's address is validated the datagrams sent to it
//! stay within 3x what it sent ([`PeerConn::budget`]). A Retry gives the client a short ID
//! (see [`admission::RETRY_CID_LEN`]); its next Initials carry that ID as destination, and the
//! connection made for them takes the ID derived from it, so routing stays the same.
//! Handshakes not done within `admission.handshake_timeout_ms` are dropped.

pub mod admission;
pub mod exchange;
pub mod peer;
pub mod peer_address;
pub mod upstream;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Instant;

use mio::event::Event;
use mio::{Interest, Registry, Token};
use ring::hmac;
use slab::Slab;

use crate::admin::{Admin, Page};
use crate::config::{Config, ServerConfig};
use crate::metrics::{
    AdmissionCounters, Metrics, PathFigures, Snapshot, TransportCounters, METRICS_CONTENT_TYPE,
};
use crate::quic::amplification::SendBudget;
use crate::quic::debug::DebugTaps;
use crate::quic::liveness::Liveness;
use crate::quic::refusal::{Refusal, RefusalLog, RefusalSlot};
use crate::quic::session::Session;
use crate::quic::udp::{LossHider, UdpIo};
use crate::quic::{self, path_check, tls, CID_LEN};
use crate::reactor::{Control, Driver, CONN_BASE, UDP};
use crate::time::TimerQueue;
use admission::{Admission, Load, Verdict};
use exchange::{Ctx, Exchange, Outcome};
use peer::PeerConn;
use upstream::{Pool, UpState};

/// The server probes a silent client after half the liveness timeout: the client's own probes
/// (after a third) normally arrive first, so an idle session costs one PING exchange, not two.
const SERVER_FIRST_PROBE_SHARE: u32 = 2;

pub struct ServerProxy {
    cfg: ServerConfig,
    quiche_config: quiche::Config,
    udp: UdpIo,
    local: SocketAddr,
    conns: Slab<PeerConn>,
    by_cid: HashMap<Vec<u8>, usize>,
    cid_key: hmac::Key,
    reset_key: hmac::Key,
    exchanges: Slab<(usize, Exchange)>,
    pool: Pool,
    timers: TimerQueue<usize>,
    next_idle_expiry: Option<Instant>,
    dirty: Vec<usize>,
    stopping: bool,
    admin: Option<Admin>,
    metrics: Metrics,
    /// Client names admitted; shared with the TLS verify callback so SIGHUP can change it.
    allowed_client_names: tls::AllowedNames,
    /// Where the TLS verify callback says why it refused a client certificate.
    refusals: RefusalSlot,
    refusal_log: RefusalLog,
    /// Graceful stop: when to give up on requests still in flight.
    drain_deadline: Option<Instant>,
    /// Loss hiding policy and counters.
    hider: LossHider,
    /// The last send stopped at a quantum: come back without waiting.
    send_pending: bool,
    debug: DebugTaps,
    /// Which new handshakes are taken on, and the counts of those that were not.
    admission: Admission,
}

impl ServerProxy {
    pub fn new(
        cfg: &ServerConfig,
        registry: &Registry,
    ) -> Result<Self, Box<dyn std::error::Error>> {
        let allowed_client_names = tls::AllowedNames::new(cfg.allowed_client_names.clone());
        let refusals = RefusalSlot::default();
        let tls = tls::server_context(&cfg.tls, allowed_client_names.clone(), refusals.clone())?;
        let mut quiche_config =
            quic::setup::quiche_config(&cfg.transport, tls, cfg.http.max_head_bytes)?;
        if let Some(key) = &cfg.ticket_key {
            quiche_config
                .set_ticket_key(key)
                .map_err(|e| format!("tls.ticket_key_file: {e}"))?;
        }
        if cfg.early_data {
            quiche_config.enable_early_data();
            let keys = if cfg.ticket_key.is_some() {
                "the ticket key file: resumption survives restarts"
            } else {
                "a per-process ticket key: resumption ends with this process"
            };
            log::info!("0-RTT resumption on, with {keys}");
        }
        let t = &cfg.transport;
        let socket = crate::net::bind_udp(
            cfg.listen,
            t.udp_recv_buffer,
            t.udp_send_buffer,
            cfg.reuse_port,
        )
        .map_err(|e| format!("listen {}: {e}", cfg.listen))?;
        let admin = match cfg.ops.metrics_listen {
            Some(addr) => Some(
                Admin::bind(addr, registry).map_err(|e| format!("metrics.listen {addr}: {e}"))?,
            ),
            None => None,
        };
        let mut udp = UdpIo::new(socket);
        log::info!("{}", LossHider::new(cfg.transport.loss_hiding).describe());
        registry.register(
            &mut udp.socket,
            UDP,
            Interest::READABLE | Interest::WRITABLE,
        )?;
        let local = udp.local_addr()?;
        log::info!(
            "listening for QUIC on {local}, upstream {}",
            cfg.upstream.address
        );
        let mut seed = [0u8; 32];
        quic::random_bytes(&mut seed);
        let key_pem = std::fs::read(&cfg.tls.key).map_err(|e| format!("tls.key: {e}"))?;
        let reset_secret = hmac::sign(
            &hmac::Key::new(hmac::HMAC_SHA256, b"ptproxy stateless reset v1"),
            &key_pem,
        );
        Ok(ServerProxy {
            cfg: cfg.clone(),
            quiche_config,
            udp,
            local,
            conns: Slab::new(),
            by_cid: HashMap::new(),
            cid_key: hmac::Key::new(hmac::HMAC_SHA256, &seed),
            reset_key: hmac::Key::new(hmac::HMAC_SHA256, reset_secret.as_ref()),
            exchanges: Slab::new(),
            pool: Pool::new(cfg.upstream.address.clone(), cfg.upstream.max_idle),
            timers: TimerQueue::default(),
            next_idle_expiry: None,
            dirty: Vec::new(),
            stopping: false,
            admin,
            metrics: Metrics::new("server", Instant::now()),
            allowed_client_names,
            refusals,
            refusal_log: RefusalLog::default(),
            drain_deadline: None,
            hider: LossHider::new(cfg.transport.loss_hiding),
            send_pending: false,
            debug: DebugTaps::new(cfg.ops.qlog_dir.clone()),
            admission: Admission::new(cfg.admission.clone(), &key_pem),
        })
    }

    fn reset_token(&self, cid: &[u8]) -> u128 {
        reset_token(&self.reset_key, cid)
    }

    /// Reads every waiting datagram and routes it.
    fn handle_readable(&mut self, now: Instant) {
        for _ in 0..100_000 {
            let (data, from) = match self.udp.recv() {
                Ok(Some((data, from))) => (data.to_vec(), from),
                Ok(None) => return,
                Err(e) => {
                    log::warn!("udp receive: {e}");
                    return;
                }
            };
            self.route(data, from, now);
        }
    }

    fn route(&mut self, mut data: Vec<u8>, from: SocketAddr, now: Instant) {
        if path_check::is_ours(&data) {
            self.on_path_response(&data, from);
            return;
        }
        let Ok(hdr) = quiche::Header::from_slice(&mut data, CID_LEN) else {
            log::trace!("dropping unparseable datagram from {from}");
            return;
        };
        if self.admission.drop_undersized(hdr.ty, data.len(), now) {
            return;
        }
        let derived = hmac::sign(&self.cid_key, &hdr.dcid);
        let derived = &derived.as_ref()[..CID_LEN];
        let key = self
            .by_cid
            .get(hdr.dcid.as_ref())
            .or_else(|| self.by_cid.get(derived))
            .copied();
        let key = match key {
            Some(k) => k,
            None if hdr.ty == quiche::Type::Initial => {
                match self.accept(&hdr, derived.to_vec(), from, now) {
                    Some(k) => k,
                    None => return,
                }
            }
            None if hdr.ty == quiche::Type::Short => {
                self.send_stateless_reset(&hdr.dcid, data.len(), from);
                return;
            }
            None => return,
        };
        let local = self.local;
        if let Some(pc) = self.conns.get_mut(key) {
            pc.receive(&mut data, hdr.ty, from, local, now);
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
        now: Instant,
    ) -> Option<usize> {
        if self.stopping {
            return None;
        }
        if !quiche::version_is_supported(hdr.version) {
            let mut out = [0u8; 1500];
            if let Ok(n) = quiche::negotiate_version(&hdr.scid, &hdr.dcid, &mut out) {
                let _ = self.udp.socket.send_to(&out[..n], from);
            }
            return None;
        }
        let odcid = match self.admission.admit(hdr, &scid, from, self.load(), now) {
            Verdict::Accept { odcid } => odcid,
            Verdict::Retry(packet) => {
                let _ = self.udp.socket.send_to(&packet, from);
                return None;
            }
            Verdict::Refuse => return None,
        };
        let budget = match odcid {
            Some(_) => SendBudget::validated(),
            None => SendBudget::unvalidated(),
        };
        self.quiche_config
            .set_stateless_reset_token(Some(self.reset_token(&scid)));
        let cid = quiche::ConnectionId::from_ref(&scid);
        let accepted: quiche::Result<quiche::Connection> = match &odcid {
            // After a Retry the client sends to the Retry's short ID, whose derived ID is `scid`.
            Some(odcid) => quiche::accept_with_retry(
                &cid,
                quiche::RetryConnectionIds {
                    original_destination_cid: &quiche::ConnectionId::from_ref(odcid),
                    retry_source_cid: &hdr.dcid,
                },
                self.local,
                from,
                &mut self.quiche_config,
            ),
            None => quiche::accept(&cid, None, self.local, from, &mut self.quiche_config),
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
        let key = self.conns.insert(PeerConn::new(
            Session::new(conn, self.cfg.transport.keepalive_interval, liveness, now),
            from,
            scid.clone(),
            budget,
            now + self.admission.handshake_timeout(),
        ));
        self.by_cid.insert(scid, key);
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

    fn handshakes_in_progress(&self) -> usize {
        self.conns
            .iter()
            .filter(|(_, pc)| pc.is_handshaking())
            .count()
    }

    /// Drops connections whose handshake outlived `admission.handshake_timeout_ms` (mostly
    /// spoofed Initials): no close is sent, since their address was never shown to be real.
    fn expire_handshakes(&mut self, registry: &Registry, now: Instant) {
        let expired: Vec<usize> = self
            .conns
            .iter()
            .filter(|(_, pc)| pc.handshake_deadline().is_some_and(|d| d <= now))
            .map(|(k, _)| k)
            .collect();
        for ck in expired {
            let pc = self.forget(registry, ck);
            log::debug!("handshake with {} timed out", pc.client);
            self.admission.on_handshake_timed_out(now);
        }
    }

    /// RFC 9000 §10.3: unpredictable bits, then the token; shorter than the packet that caused it
    /// so two servers cannot loop.
    fn send_stateless_reset(&mut self, dcid: &[u8], received: usize, to: SocketAddr) {
        const MIN: usize = 21;
        if received <= MIN + 1 || dcid.len() != CID_LEN {
            return;
        }
        let len = (received - 1).min(43);
        let mut packet = vec![0u8; len];
        quic::random_bytes(&mut packet[..len - 16]);
        packet[0] = 0x40 | (packet[0] & 0x3f);
        packet[len - 16..].copy_from_slice(&self.reset_token(dcid).to_be_bytes());
        log::debug!("stateless reset to {to} for an unknown connection");
        let _ = self.udp.socket.send_to(&packet, to);
    }

    /// After input: announce new sessions, poll their HTTP/3 events, collect writable streams.
    fn poll_sessions(&mut self, registry: &Registry, now: Instant) {
        let keys: Vec<usize> = self.conns.iter().map(|(k, _)| k).collect();
        for ck in keys {
            self.announce(ck, now);
            for _ in 0..10_000 {
                let Some(pc) = self.conns.get_mut(ck) else {
                    break;
                };
                let Some(h3) = pc.session.h3.as_mut() else {
                    break;
                };
                let (stream, event) = match h3.poll(&mut pc.session.conn) {
                    Ok(pair) => pair,
                    Err(quiche::h3::Error::Done) => break,
                    Err(e) => {
                        log::warn!("HTTP/3 error on the session with {}: {e}", pc.client);
                        break;
                    }
                };
                self.on_h3_event(registry, ck, stream, event, now);
            }
            if let Some(pc) = self.conns.get_mut(ck) {
                while let Some(id) = pc.session.conn.stream_writable_next() {
                    if let Some(&ek) = pc.streams.get(&id) {
                        self.dirty.push(ek);
                    }
                }
            }
        }
    }

    fn announce(&mut self, ck: usize, now: Instant) {
        let Some(pc) = self.conns.get_mut(ck) else {
            return;
        };
        if pc.session.take_newly_usable() {
            if let Some(der) = pc.session.conn.peer_cert() {
                if let Ok(cert) = boring::x509::X509::from_der(der) {
                    pc.client = format!(
                        "{} ({})",
                        pc.client,
                        tls::certificate_names(&cert).join(",")
                    );
                }
            }
            log::info!("session established with client {}", pc.client);
            pc.up_since = Some(now);
        }
        if pc.up_since.is_some() {
            // Keep the client supplied with spare IDs (retired ones are replaced).
            let reset_key = &self.reset_key;
            let spare = pc
                .session
                .issue_spare_cids(|cid| reset_token(reset_key, cid));
            for cid in spare {
                self.by_cid.insert(cid.clone(), ck);
                pc.cids.push(cid);
            }
        }
        // IDs the client retired no longer lead to this session.
        while let Some(cid) = pc.session.conn.retired_scid_next() {
            self.by_cid.remove(cid.as_ref());
            pc.cids.retain(|c| c.as_slice() != cid.as_ref());
        }
    }

    fn on_h3_event(
        &mut self,
        registry: &Registry,
        ck: usize,
        stream: u64,
        event: quiche::h3::Event,
        now: Instant,
    ) {
        use quiche::h3::Event;
        let existing = self
            .conns
            .get(ck)
            .and_then(|pc| pc.streams.get(&stream))
            .copied();
        match (event, existing) {
            (Event::Headers { list, more_frames }, None) => {
                if self.stopping {
                    // After our GOAWAY: refused unprocessed, so the client may retry it elsewhere.
                    if let Some(pc) = self.conns.get_mut(ck) {
                        let conn = &mut pc.session.conn;
                        let _ = conn.stream_shutdown(
                            stream,
                            quiche::Shutdown::Read,
                            quic::h3_code::REQUEST_REJECTED,
                        );
                        let _ = conn.stream_shutdown(
                            stream,
                            quiche::Shutdown::Write,
                            quic::h3_code::REQUEST_REJECTED,
                        );
                    }
                    return;
                }
                let ek = self.exchanges.vacant_key();
                let ex = self.with_ctx(registry, ck, ek, now, |ctx| {
                    Exchange::start(ctx, stream, &list, more_frames)
                });
                let Some(ex) = ex else { return };
                self.exchanges.insert((ck, ex));
                if let Some(pc) = self.conns.get_mut(ck) {
                    pc.streams.insert(stream, ek);
                }
                self.dirty.push(ek);
            }
            (Event::Headers { list, .. }, Some(ek)) => {
                self.run_exchange(registry, ek, now, |ex, ctx| match ex.on_trailers(&list) {
                    Outcome::Finished => ex.abort(ctx),
                    other => other,
                });
                self.dirty.push(ek);
            }
            (Event::Data, Some(ek)) => self.dirty.push(ek),
            (Event::Finished, Some(ek)) => {
                if let Some((_, ex)) = self.exchanges.get_mut(ek) {
                    ex.on_finished();
                }
                self.dirty.push(ek);
            }
            (Event::Reset(_), Some(ek)) => {
                self.run_exchange(registry, ek, now, |ex, ctx| ex.abort(ctx))
            }
            _ => {}
        }
    }

    /// Builds the exchange context for connection `ck` and runs `f` in it.
    fn with_ctx<T>(
        &mut self,
        registry: &Registry,
        ck: usize,
        ek: usize,
        now: Instant,
        f: impl FnOnce(&mut Ctx<'_>) -> T,
    ) -> Option<T> {
        let pc = self.conns.get_mut(ck)?;
        let mut ctx = context(
            pc,
            &mut self.pool,
            &mut self.metrics,
            &self.cfg,
            registry,
            ek,
            now,
        );
        Some(f(&mut ctx))
    }

    /// Runs `f` on exchange `ek`; removes it when finished, reschedules its timer otherwise.
    fn run_exchange(
        &mut self,
        registry: &Registry,
        ek: usize,
        now: Instant,
        f: impl FnOnce(&mut Exchange, &mut Ctx<'_>) -> Outcome,
    ) {
        let Some((ck, ex)) = self.exchanges.get_mut(ek) else {
            return;
        };
        let before = ex.deadline;
        let outcome = match self.conns.get_mut(*ck) {
            Some(pc) => f(
                ex,
                &mut context(
                    pc,
                    &mut self.pool,
                    &mut self.metrics,
                    &self.cfg,
                    registry,
                    ek,
                    now,
                ),
            ),
            None => Outcome::Finished,
        };
        if outcome == Outcome::Yielded {
            self.dirty.push(ek);
        }
        match outcome {
            Outcome::Continue | Outcome::Yielded => {
                if ex.deadline != before || now >= before {
                    self.timers.schedule(ex.deadline, ek);
                }
            }
            Outcome::Finished => {
                let (ck, ex) = self.exchanges.remove(ek);
                if let Some(pc) = self.conns.get_mut(ck) {
                    pc.streams.remove(&ex.stream);
                }
            }
        }
    }

    /// Graceful stop: the clients close their sessions once their last stream finished (they
    /// got our GOAWAY), which is the only moment we know every response byte was delivered.
    /// Sessions still open at the drain deadline are closed by us.
    fn finish_drain(&mut self, now: Instant) {
        if self.drain_deadline.is_none_or(|d| d > now) {
            return;
        }
        if !self.exchanges.is_empty() {
            log::warn!(
                "drain deadline passed with {} request(s) in flight",
                self.exchanges.len()
            );
        }
        self.close_sessions();
    }

    /// Sessions whose client went silent for the liveness timeout are closed at once (their
    /// streams and upstream connections are freed when they are reaped), instead of holding
    /// them until the idle timeout.
    fn drop_silent_clients(&mut self, now: Instant) {
        for pc in self.conns.iter_mut().map(|(_, pc)| pc) {
            let conn = &pc.session.conn;
            if !pc.session.peer_dead() || conn.is_closed() || conn.is_draining() {
                continue;
            }
            log::warn!(
                "client {} silent for {} ms (liveness timeout {} ms): dropping its session",
                pc.client,
                pc.session.peer_silence(now).unwrap_or_default().as_millis(),
                pc.session
                    .liveness_timeout()
                    .unwrap_or_default()
                    .as_millis(),
            );
            self.metrics.dead_peers += 1;
            let _ = pc
                .session
                .conn
                .close(true, quic::h3_code::NO_ERROR, b"peer silent");
        }
    }

    /// Closes every session (CONNECTION_CLOSE goes out with the next send), so that clients
    /// learn at once that their requests in flight are lost instead of waiting for a timeout.
    fn close_sessions(&mut self) {
        for pc in self.conns.iter_mut().map(|(_, pc)| pc) {
            if !pc.session.conn.is_closed() && !pc.session.conn.is_draining() {
                let _ =
                    pc.session
                        .conn
                        .close(true, quic::h3_code::NO_ERROR, b"server shutting down");
            }
        }
    }

    /// Sends what every session has to send now (at most one quantum each); true when one
    /// stopped at its quantum with more to send.
    fn send_all(&mut self, now: Instant) -> bool {
        let mut pending = false;
        for pc in self.conns.iter_mut().map(|(_, pc)| pc) {
            let (udp, metrics) = (&mut self.udp, &mut self.metrics);
            if peer_address::before_sending(&mut pc.peer, &pc.client, udp, metrics, now) {
                continue;
            }
            let to = Some(pc.peer.current());
            pending |= self.udp.send_within(
                &mut pc.session.conn,
                now,
                &mut self.hider,
                &mut pc.budget,
                to,
            );
            if pc.budget.take_newly_limited() {
                self.admission.on_amplification_limited(now);
            }
        }
        pending
    }

    /// The operator endpoint's answer for `path`.
    fn page(&self, path: &str, now: Instant) -> Page {
        let sessions_up = self
            .conns
            .iter()
            .filter(|(_, pc)| pc.session.is_usable())
            .count();
        match path {
            "/metrics" => {
                let mut snap = Snapshot {
                    sessions_up,
                    streams_open: self.exchanges.len(),
                    upstream_connections: Some((self.pool.conns.len(), self.pool.idle_count())),
                    duplicated: (self.hider.datagrams, self.hider.bytes),
                    admission: Some(AdmissionCounters {
                        handshakes_in_progress: self.handshakes_in_progress() as u64,
                        ..self.admission.counters
                    }),
                    ..Snapshot::default()
                };
                for (_, pc) in self.conns.iter() {
                    snap.live_transport
                        .add(&TransportCounters::of(&pc.session.conn));
                    snap.paths
                        .extend(PathFigures::of(&pc.session, pc.client.clone(), now));
                }
                (200, METRICS_CONTENT_TYPE, self.metrics.render(&snap, now))
            }
            "/health" if sessions_up > 0 => (
                200,
                "text/plain",
                format!("ok: {sessions_up} session(s) up\n"),
            ),
            "/health" => (503, "text/plain", "no session up\n".into()),
            _ => (404, "text/plain", "try /metrics or /health\n".into()),
        }
    }

    /// Drops sessions that are closed, with their exchanges.
    fn reap_closed(&mut self, registry: &Registry, now: Instant) {
        let closed: Vec<usize> = self
            .conns
            .iter()
            .filter(|(_, pc)| pc.session.conn.is_closed())
            .map(|(k, _)| k)
            .collect();
        for ck in closed {
            let mut pc = self.forget(registry, ck);
            let reason = pc.session.close_reason();
            match pc
                .session
                .local_tls_alert()
                .filter(|_| pc.up_since.is_none())
            {
                Some(alert) => {
                    let refusal = pc.refusal.take().unwrap_or(Refusal::from_alert(alert));
                    self.report_refusal(pc.addr, &refusal, now);
                }
                None => log::info!("session with client {} ended: {reason}", pc.client),
            }
            self.metrics
                .record_session_closed(TransportCounters::of(&pc.session.conn), &reason);
        }
    }

    /// Removes connection `ck`, its routes and its exchanges (closing their upstream
    /// connections).
    fn forget(&mut self, registry: &Registry, ck: usize) -> PeerConn {
        let mut pc = self.conns.remove(ck);
        for cid in &pc.cids {
            self.by_cid.remove(cid);
        }
        for (_, ek) in pc.streams.drain() {
            if let Some((_, ex)) = self.exchanges.try_remove(ek) {
                if let Some(key) = ex.upstream() {
                    self.pool.close(registry, key);
                }
            }
        }
        pc
    }
}

impl ServerProxy {
    /// A client was refused in the TLS handshake: counted by reason, logged once per address
    /// and minute.
    fn report_refusal(&mut self, addr: SocketAddr, refusal: &Refusal, now: Instant) {
        self.metrics.record_tls_refusal(refusal.label());
        if let Some(suppressed) = self.refusal_log.admit(addr.ip(), now) {
            let more = match suppressed {
                0 => String::new(),
                n => format!(" ({n} more refusals from this address since the last line)"),
            };
            log::warn!("refused client {addr}: {}{more}", refusal.describe());
        }
    }
}

/// The stateless reset token of one of our connection IDs: derived from the TLS key, so a
/// restarted server resets its predecessor's sessions (RFC 9000 §10.3).
fn reset_token(key: &hmac::Key, cid: &[u8]) -> u128 {
    let tag = hmac::sign(key, cid);
    let mut t = [0u8; 16];
    t.copy_from_slice(&tag.as_ref()[..16]);
    u128::from_be_bytes(t)
}

/// The per-exchange view of the server state (split borrows of its fields).
fn context<'a>(
    pc: &'a mut PeerConn,
    pool: &'a mut Pool,
    metrics: &'a mut Metrics,
    cfg: &'a ServerConfig,
    registry: &'a Registry,
    key: usize,
    now: Instant,
) -> Ctx<'a> {
    Ctx {
        now,
        key,
        registry,
        session: &mut pc.session,
        pool,
        upstream: &cfg.upstream,
        max_head_bytes: cfg.http.max_head_bytes,
        access_log: cfg.http.access_log,
        client: &pc.client,
        metrics,
    }
}

impl Driver for ServerProxy {
    fn handle_event(&mut self, registry: &Registry, event: &Event, now: Instant) {
        match event.token() {
            UDP => {
                if event.is_readable() {
                    self.handle_readable(now);
                }
                if event.is_writable() {
                    self.udp.on_writable(now);
                }
            }
            token if Admin::owns(token) => {
                if let Some(mut admin) = self.admin.take() {
                    admin.handle_event(registry, event, |path| self.page(path, now));
                    self.admin = Some(admin);
                }
            }
            Token(t) if t >= CONN_BASE => {
                let key = t - CONN_BASE;
                let Some(up) = self.pool.conns.get_mut(key) else {
                    return;
                };
                up.tcp.on_event(event);
                if matches!(up.state, UpState::Idle { .. }) {
                    self.pool.on_idle_event(registry, key);
                } else {
                    self.dirty.push(up.owner);
                }
            }
            Token(_) => {}
        }
    }

    fn process(&mut self, registry: &Registry, now: Instant) {
        for pc in self.conns.iter_mut().map(|(_, pc)| pc) {
            pc.session.handle_timeout(now);
        }
        self.drop_silent_clients(now);
        self.poll_sessions(registry, now);
        for ek in self.timers.expired(now) {
            self.run_exchange(registry, ek, now, |ex, ctx| ex.on_timer(ctx));
        }
        let mut dirty = std::mem::take(&mut self.dirty);
        dirty.sort_unstable();
        dirty.dedup();
        for ek in dirty {
            self.run_exchange(registry, ek, now, |ex, ctx| ex.drive(ctx));
        }
        if self.next_idle_expiry.is_none_or(|t| t <= now) {
            self.next_idle_expiry =
                self.pool
                    .expire_idle(registry, now, self.cfg.upstream.idle_timeout);
        }
        if self.stopping {
            self.finish_drain(now);
        }
        self.send_pending = self.send_all(now);
        self.reap_closed(registry, now);
        self.expire_handshakes(registry, now);
        self.admission.log_summary(now);
    }

    fn next_deadline(&self) -> Option<Instant> {
        if !self.dirty.is_empty() || self.send_pending {
            return Some(Instant::now());
        }
        let sessions = self
            .conns
            .iter()
            .filter_map(|(_, pc)| {
                crate::time::earliest(
                    pc.session.next_deadline(),
                    crate::time::earliest(pc.handshake_deadline(), pc.peer.next_deadline()),
                )
            })
            .min();
        let d = crate::time::earliest(sessions, self.timers.next_deadline());
        let d = crate::time::earliest(d, self.next_idle_expiry);
        let d = crate::time::earliest(d, self.drain_deadline);
        let d = crate::time::earliest(d, self.admission.next_deadline());
        crate::time::earliest(d, self.udp.next_release())
    }

    fn on_terminate(&mut self, _registry: &Registry, now: Instant) -> Control {
        if self.stopping {
            log::warn!(
                "second stop signal: closing {} session(s) and exiting now",
                self.conns.len()
            );
            self.close_sessions();
            // Only to validated addresses: the anti-amplification limit holds to the end.
            for pc in self.conns.iter_mut().map(|(_, pc)| pc) {
                if pc.budget.is_validated() {
                    self.udp
                        .send_final(&mut pc.session.conn, Some(pc.peer.current()));
                }
            }
            return Control::Exit;
        }
        log::info!(
            "stopping: GOAWAY to {} session(s); {} request(s) in flight get up to {} ms",
            self.conns.len(),
            self.exchanges.len(),
            self.cfg.ops.drain_timeout.as_millis()
        );
        self.stopping = true;
        self.drain_deadline = Some(now + self.cfg.ops.drain_timeout);
        for pc in self.conns.iter_mut().map(|(_, pc)| pc) {
            let next = pc.streams.keys().max().map_or(0, |id| id + 4);
            if let Some(h3) = pc.session.h3.as_mut() {
                let _ = h3.send_goaway(&mut pc.session.conn, next);
            }
        }
        Control::Continue
    }

    fn on_reload(&mut self, config: &Config) {
        let Config::Server(new) = config else {
            log::error!("SIGHUP: the reloaded file is not a server config; nothing changed");
            return;
        };
        let old = &self.cfg;
        let fixed = [
            ("listen", old.listen != new.listen),
            (
                "upstream.address",
                old.upstream.address != new.upstream.address,
            ),
            ("tls", format!("{:?}", old.tls) != format!("{:?}", new.tls)),
            (
                "transport",
                format!("{:?}", old.transport) != format!("{:?}", new.transport),
            ),
            ("metrics", old.ops.metrics_listen != new.ops.metrics_listen),
            ("admission", old.admission != new.admission),
        ];
        crate::reactor::report_fixed(&fixed);
        crate::logging::set_level(new.ops.log_level);
        self.allowed_client_names
            .set(new.allowed_client_names.clone());
        let address = self.cfg.upstream.address.clone();
        self.cfg.upstream = new.upstream.clone();
        self.cfg.upstream.address = address;
        self.cfg.http = new.http.clone();
        self.cfg.allowed_client_names = new.allowed_client_names.clone();
        self.cfg.ops.log_level = new.ops.log_level;
        self.cfg.ops.drain_timeout = new.ops.drain_timeout;
        log::info!("SIGHUP: applied log_level, http.*, upstream timeouts and tls.allowed_client_names (new sessions)");
    }

    fn is_finished(&self) -> bool {
        self.stopping && self.conns.is_empty()
    }
}
