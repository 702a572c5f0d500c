//! Server role, the operator's side: the `/metrics` and `/health` page, the graceful stop
//! (GOAWAY, drain, then closing what is left) and the immediate one on a second signal, SIGHUP
//! reloads, and how sessions end: silent clients dropped, closed sessions reaped and counted,
//! clients refused in the TLS handshake reported.

use std::net::SocketAddr;
use std::time::Instant;

use mio::Registry;

use super::ServerProxy;
use crate::admin::Page;
use crate::config::Config;
use crate::metrics::{
    AdmissionCounters, PathFigures, Snapshot, TransportCounters, METRICS_CONTENT_TYPE,
};
use crate::quic;
use crate::quic::refusal::Refusal;

impl ServerProxy {
    /// The operator endpoint's answer for `path`.
    pub(super) fn page(&self, path: &str, now: Instant) -> Page {
        let sessions_up = self
            .conns
            .iter()
            .filter(|(_, pc)| pc.session.is_usable())
            .count();
        match path {
            "/metrics" => {
                let mut snap = Snapshot {
                    sessions_up,
                    streams_open: self.requests.len(),
                    upstream_connections: Some((self.pool.conns.len(), self.pool.idle_count())),
                    routed_connection_ids: Some(self.routes.len()),
                    timer_entries: self.requests.agenda().timer_entries(),
                    upstream_health: self.upstream_health(now),
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

    /// Each service's upstream addresses and whether they take new connections.
    fn upstream_health(&self, now: Instant) -> Vec<(String, SocketAddr, bool)> {
        let services = self.cfg.services.list.iter();
        services
            .zip(self.pool.health(now))
            .flat_map(|(s, list)| list.into_iter().map(|(a, up)| (s.name.clone(), a, up)))
            .collect()
    }

    /// A first stop signal: GOAWAY to every session (no new requests), the requests in flight
    /// get `http.drain_timeout_ms` to finish.
    pub(super) fn start_drain(&mut self, now: Instant) {
        log::info!(
            "stopping: GOAWAY to {} session(s); {} request(s) in flight get up to {} ms",
            self.conns.len(),
            self.requests.len(),
            self.cfg.ops.drain_timeout.as_millis()
        );
        self.stopping = true;
        self.drain_deadline = Some(now + self.cfg.ops.drain_timeout);
        for pc in self.conns.iter_mut().map(|(_, pc)| pc) {
            let next = pc.streams.keys().max().map_or(0, |id| id + 4);
            if let Some(h3) = pc.session.h3.as_mut() {
                let _ = h3.send_goaway(&mut pc.session.conn, next);
                pc.session.ack.on_output();
            }
        }
    }

    /// Graceful stop: the clients close their sessions once their last stream finished (they
    /// got our GOAWAY), which is the only moment we know every response byte was delivered.
    /// Sessions still open at the drain deadline are closed by us, once: the deadline is then
    /// cleared, so that the turns of the sessions' closing period neither wake at once for a
    /// deadline already handled nor repeat the warning.
    pub(super) fn finish_drain(&mut self, now: Instant) {
        if self.drain_deadline.is_none_or(|d| d > now) {
            return;
        }
        self.drain_deadline = None;
        if !self.requests.is_empty() {
            log::warn!(
                "drain deadline passed with {} request(s) in flight",
                self.requests.len()
            );
        }
        self.close_sessions();
    }

    /// A second stop signal: every session is closed and its last packets sent at once.
    pub(super) fn stop_now(&mut self) {
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

    /// SIGHUP: applies what may change while running and names what may not.
    pub(super) fn reload(&mut self, config: &Config) {
        let Config::Server(new) = config else {
            log::error!("SIGHUP: the reloaded file is not a server config; nothing changed");
            return;
        };
        let old = &self.cfg;
        let fixed = [
            ("listen", old.listen != new.listen),
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
        self.move_services(&new.services);
        self.cfg.http = new.http.clone();
        self.cfg.allowed_client_names = new.allowed_client_names.clone();
        self.cfg.ops.log_level = new.ops.log_level;
        self.cfg.ops.drain_timeout = new.ops.drain_timeout;
        log::info!("SIGHUP: applied log_level, http.*, services (added, removed, moved), upstream addresses, timeouts and limits, allow lists and tls.allowed_client_names (new sessions)");
    }

    /// A reload's services: new ones are added, changed ones take their new settings, removed
    /// or reordered ones move; requests in flight finish on the services they started with
    /// (kept as retired while used), new requests see the new list.
    fn move_services(&mut self, new: &crate::config::Services) {
        let (requests, pool) = (&self.requests, &self.pool);
        let in_use = |i| requests.uses_service(i) || pool.uses_target(i);
        let (merged, moved) = self.cfg.services.merged_for_reload(new, in_use);
        let retired: Vec<&str> = merged
            .list
            .iter()
            .filter(|s| s.retired)
            .map(|s| s.name.as_str())
            .collect();
        if !retired.is_empty() {
            log::info!(
                "SIGHUP: services removed while in use finish their requests: {}",
                retired.join(", ")
            );
        }
        self.requests.services_moved(&moved);
        self.pool.services_moved(&moved, &merged);
        self.cfg.services = merged;
    }

    /// Sessions whose client went silent for the liveness timeout are closed at once (their
    /// streams and upstream connections are freed when they are reaped), instead of holding
    /// them until the idle timeout.
    pub(super) fn drop_silent_clients(&mut self, now: Instant) {
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

    /// Drops sessions that are closed, with their exchanges.
    pub(super) fn reap_closed(&mut self, registry: &Registry, now: Instant) {
        let closed: Vec<usize> = self
            .conns
            .iter()
            .filter(|(_, pc)| pc.session.conn.is_closed())
            .map(|(k, _)| k)
            .collect();
        for ck in closed {
            let mut pc = self.forget(registry, ck, now);
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
