//! Client role, the operator's side: the `/metrics` and `/health` page, the graceful stop
//! (no new connections, requests in flight finish until the drain deadline, then answered 503
//! or reset) and the immediate one on a second signal, and SIGHUP reloads.

use std::time::Instant;

use mio::Registry;

use super::ClientProxy;
use crate::admin::Page;
use crate::config::Config;
use crate::metrics::{Snapshot, METRICS_CONTENT_TYPE};

impl ClientProxy {
    /// Graceful stop: no new connections; requests in flight get up to `ops.drain_timeout`.
    pub(super) fn start_drain(&mut self, registry: &Registry, now: Instant) {
        log::info!(
            "stopping: no new connections; {} request(s) in flight get up to {} ms",
            self.downs.in_flight(),
            self.config.ops.drain_timeout.as_millis()
        );
        self.stopping = true;
        for mut l in self.listeners.drain(..) {
            let _ = registry.deregister(&mut l);
        }
        self.drain_deadline = Some(now + self.config.ops.drain_timeout);
        self.downs.mark_all_dirty();
    }

    /// Graceful stop: once nothing is in flight (or the drain deadline passed), close the session.
    pub(super) fn finish_drain(&mut self, registry: &Registry, now: Instant) {
        let expired = self.drain_deadline.is_some_and(|d| d <= now);
        if expired && !self.downs.is_empty() {
            log::warn!(
                "drain deadline passed with {} connection(s) still open",
                self.downs.len()
            );
            self.give_up_in_flight(registry, now);
        }
        if self.downs.is_empty() || expired {
            self.drain_deadline = None;
            self.peers.close();
        }
    }

    /// Stopping now: every request still in flight gets its answer (503 before its response
    /// began, an abort after), then the session closes.
    fn give_up_in_flight(&mut self, registry: &Registry, now: Instant) {
        self.with_downs(registry, now, |downs, env| {
            downs.for_each(env, |d, ctx| d.on_shutdown(ctx))
        });
    }

    /// The operator endpoint's answer for `path`.
    pub(super) fn page(&self, path: &str, now: Instant) -> Page {
        match path {
            "/metrics" => {
                let mut snap = Snapshot {
                    streams_open: self.downs.streams_open(),
                    client_connections: Some(self.downs.len()),
                    timer_entries: self.downs.agenda().timer_entries(),
                    ..Snapshot::default()
                };
                self.peers.snapshot(&mut snap, now);
                (200, METRICS_CONTENT_TYPE, self.metrics.render(&snap, now))
            }
            "/health" => self.health(now),
            _ => (404, "text/plain", "try /metrics or /health\n".into()),
        }
    }

    /// Second stop signal: every request in flight gets its answer now (503 before its response
    /// began, a reset after), and the session's CONNECTION_CLOSE goes out before the exit.
    pub(super) fn stop_now(&mut self, registry: &Registry, now: Instant) {
        log::warn!("second stop signal: answering requests in flight and exiting now");
        self.give_up_in_flight(registry, now);
        self.peers.close();
        self.peers.send_final();
    }

    /// `/health`: 200 while every peer's session is up, else 503; a line per peer either way.
    fn health(&self, now: Instant) -> Page {
        let lines = self.peers.health_lines(now);
        if self.peers.all_up() {
            (200, "text/plain", format!("ok: session up\n{lines}"))
        } else {
            (
                503,
                "text/plain",
                format!("not every peer's session is up\n{lines}"),
            )
        }
    }

    /// SIGHUP with the freshly loaded config: applies what can change, reports the rest.
    pub(super) fn reload(&mut self, registry: &Registry, config: &Config) {
        let Config::Client(new) = config else {
            log::error!("SIGHUP: the reloaded file is not a client config; nothing changed");
            return;
        };
        let old = &self.config;
        let fixed = [
            (
                "listen",
                format!("{:?}", old.listen) != format!("{:?}", new.listen),
            ),
            (
                "peers (address or server_name of a kept name)",
                old.peers.iter().any(|p| {
                    new.peers
                        .iter()
                        .any(|q| q.name == p.name && format!("{p:?}") != format!("{q:?}"))
                }),
            ),
            ("peer_silence_ms", old.peer_silence != new.peer_silence),
            ("tls", format!("{:?}", old.tls) != format!("{:?}", new.tls)),
            (
                "transport",
                format!("{:?}", old.transport) != format!("{:?}", new.transport),
            ),
            (
                "reconnect",
                format!("{:?}", old.reconnect) != format!("{:?}", new.reconnect),
            ),
            ("metrics", old.ops.metrics_listen != new.ops.metrics_listen),
        ];
        let same_listeners = old.listen == new.listen;
        crate::reactor::report_fixed(&fixed);
        crate::logging::set_level(new.ops.log_level);
        self.http = new.http.clone();
        self.config.http = new.http.clone();
        if same_listeners {
            self.rules = super::shared_rules(&new.listener_rules);
            self.config.listener_rules = new.listener_rules.clone();
        }
        self.config.ops.log_level = new.ops.log_level;
        self.config.ops.drain_timeout = new.ops.drain_timeout;
        // New peers get the running TLS and transport settings (changes to those need a
        // restart), kept ones their running address and server name.
        let running = std::mem::take(&mut self.config.peers);
        self.config.peers = new
            .peers
            .iter()
            .map(|p| {
                running
                    .iter()
                    .find(|r| r.name == p.name)
                    .unwrap_or(p)
                    .clone()
            })
            .collect();
        self.peers
            .reload(&self.config, registry, std::time::Instant::now());
        log::info!(
            "SIGHUP: applied log_level, http.* settings, peers added or removed and listener routes (new connections)"
        );
    }
}
