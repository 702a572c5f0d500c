//! Server role, requests in: each session's HTTP/3 events go to one [`Exchange`] per request
//! stream, and every exchange is run with its view of the server state ([`Ctx`]).
//!
//! A new request stream starts an exchange (or is refused with REQUEST_REJECTED once the server
//! is stopping, so the client may retry it elsewhere); data, trailers, the end and resets of its
//! stream drive it. Exchanges with work left are marked dirty and run again in the same turn;
//! their timers go to the server's [`crate::time::TimerTable`] (one entry per exchange).

use std::ops::ControlFlow;
use std::time::Instant;

use mio::Registry;

use super::exchange::port::PoolPort;
use super::exchange::{Ctx, Exchange, Outcome};
use super::peer::PeerConn;
use super::upstream::Pool;
use super::ServerProxy;
use crate::bridge::stream::H3Stream;
use crate::config::ServerConfig;
use crate::metrics::Metrics;
use crate::quic::{self, tls};
use crate::reactor::backlog::{drain_bounded, H3_EVENTS_PER_TURN};

impl ServerProxy {
    /// After input: announce new sessions, poll their HTTP/3 events (at most
    /// [`H3_EVENTS_PER_TURN`] each: a session left with events sets `h3_backlog`, polled again
    /// next turn), collect writable streams.
    pub(super) fn poll_sessions(&mut self, registry: &Registry, now: Instant) {
        self.h3_backlog.take();
        let keys: Vec<usize> = self.conns.iter().map(|(k, _)| k).collect();
        for ck in keys {
            self.announce(ck, now);
            let drain = drain_bounded(H3_EVENTS_PER_TURN, || self.poll_event(registry, ck, now));
            self.h3_backlog.note(drain);
            if let Some(pc) = self.conns.get_mut(ck) {
                while let Some(id) = pc.session.conn.stream_writable_next() {
                    if let Some(&ek) = pc.streams.get(&id) {
                        self.dirty.push(ek);
                    }
                }
            }
        }
    }

    /// Polls one HTTP/3 event of session `ck` and handles it; breaks when there is none.
    fn poll_event(&mut self, registry: &Registry, ck: usize, now: Instant) -> ControlFlow<()> {
        let Some(pc) = self.conns.get_mut(ck) else {
            return ControlFlow::Break(());
        };
        let Some(h3) = pc.session.h3.as_mut() else {
            return ControlFlow::Break(());
        };
        let (stream, event) = match h3.poll(&mut pc.session.conn) {
            Ok(pair) => pair,
            Err(quiche::h3::Error::Done) => return ControlFlow::Break(()),
            Err(e) => {
                log::warn!("HTTP/3 error on the session with {}: {e}", pc.client);
                return ControlFlow::Break(());
            }
        };
        self.on_h3_event(registry, ck, stream, event, now);
        ControlFlow::Continue(())
    }

    /// Logs a session that just became usable (naming the client's certificate) and keeps the
    /// IDs routed to it current.
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
        self.refresh_cids(ck);
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
                    return self.reject_stream(ck, stream);
                }
                let ek = self.exchanges.vacant_key();
                let ports = Ports {
                    pool: &mut self.pool,
                    metrics: &mut self.metrics,
                    cfg: &self.cfg,
                    registry,
                    now,
                };
                let ex = self.conns.get_mut(ck).and_then(|pc| {
                    ports.run(pc, ek, stream, |ctx| {
                        Exchange::start(ctx, stream, &list, more_frames)
                    })
                });
                let Some(ex) = ex else { return };
                self.timers.set(ek, ex.timers.next());
                self.exchanges.insert((ck, ex));
                if let Some(pc) = self.conns.get_mut(ck) {
                    pc.streams.insert(stream, ek);
                }
                self.dirty.push(ek);
            }
            (event, Some(ek)) => {
                let data = matches!(event, Event::Data);
                if !data {
                    self.run_exchange(registry, ek, now, |ex, ctx| ex.on_stream_event(ctx, event));
                }
                self.dirty.push(ek);
            }
            _ => {}
        }
    }

    /// After our GOAWAY: a new request stream is refused unprocessed, so the client may retry
    /// it elsewhere.
    fn reject_stream(&mut self, ck: usize, stream: u64) {
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
    }

    /// Runs `f` on exchange `ek`; removes it when finished, reschedules its timer otherwise.
    pub(super) fn run_exchange(
        &mut self,
        registry: &Registry,
        ek: usize,
        now: Instant,
        f: impl FnOnce(&mut Exchange, &mut Ctx<'_>) -> Outcome,
    ) {
        let Some((ck, ex)) = self.exchanges.get_mut(ek) else {
            return;
        };
        let ports = Ports {
            pool: &mut self.pool,
            metrics: &mut self.metrics,
            cfg: &self.cfg,
            registry,
            now,
        };
        let stream = ex.stream;
        let outcome = match self.conns.get_mut(*ck) {
            Some(pc) => ports
                .run(pc, ek, stream, |ctx| f(ex, ctx))
                .unwrap_or(Outcome::Finished),
            None => Outcome::Finished,
        };
        if outcome == Outcome::Yielded {
            self.dirty.push(ek);
        }
        match outcome {
            Outcome::Continue | Outcome::Yielded => self.timers.set(ek, ex.timers.next()),
            Outcome::Finished => {
                self.timers.set(ek, None);
                let (ck, ex) = self.exchanges.remove(ek);
                if let Some(pc) = self.conns.get_mut(ck) {
                    pc.streams.remove(&ex.stream);
                }
            }
        }
    }
}

/// What the server lends an exchange while it runs (split borrows of its fields).
struct Ports<'a> {
    pool: &'a mut Pool,
    metrics: &'a mut Metrics,
    cfg: &'a ServerConfig,
    registry: &'a Registry,
    now: Instant,
}

impl Ports<'_> {
    /// Runs `f` with the context of exchange `ek` on `stream` of session `pc`: its ports are
    /// that stream (quiche) and the pool. `None` when the session has no HTTP/3 layer.
    fn run<T>(
        self,
        pc: &mut PeerConn,
        ek: usize,
        stream: u64,
        f: impl FnOnce(&mut Ctx<'_>) -> T,
    ) -> Option<T> {
        let h3 = pc.session.h3.as_mut()?;
        let mut stream = H3Stream {
            h3,
            conn: &mut pc.session.conn,
            id: stream,
        };
        let mut pool = PoolPort {
            pool: self.pool,
            registry: self.registry,
            owner: ek,
            now: self.now,
        };
        let mut ctx = Ctx {
            now: self.now,
            stream: &mut stream,
            pool: &mut pool,
            upstream: &self.cfg.upstream,
            max_head_bytes: self.cfg.http.max_head_bytes,
            access_log: self.cfg.http.access_log,
            client: &pc.client,
            metrics: self.metrics,
        };
        Some(f(&mut ctx))
    }
}
