//! Server role, requests in, without sockets: the table of [`Exchange`]s (one per request
//! stream) with their timers, fed with each session's HTTP/3 events.
//!
//! A new request stream starts an exchange (or is refused with REQUEST_REJECTED once the server
//! is stopping, so the client may retry it elsewhere); data, trailers, the end and resets of its
//! stream drive it. Exchanges with work left are marked dirty and run again in the same turn;
//! their timers go to its [`Agenda`] (one entry per exchange). A session is polled for at
//! most `events_per_turn` events per turn ([`H3_EVENTS_PER_TURN`] in production); one left with
//! events leaves work on the [`Agenda`], so the driver comes back without waiting for a
//! packet.
//!
//! [`Requests`] owns no socket, registry or clock: the server's driver (`streams`) and the
//! simulated pair (`crate::sim`) both run it, lending the sessions, the clock and the upstream
//! ports ([`Upstreams`]) for each call.

use std::ops::ControlFlow;
use std::time::Instant;

use slab::Slab;

use super::exchange::port::UpstreamPort;
use super::exchange::route::route;
use super::exchange::{Ctx, Exchange, Outcome};
use super::peer::PeerConn;
use crate::bridge::stream::H3Stream;
use crate::config::ServerConfig;
use crate::metrics::Metrics;
use crate::quic;
use crate::reactor::agenda::Agenda;
use crate::reactor::backlog::{drain_bounded, H3_EVENTS_PER_TURN};

/// Where exchanges get their upstream connections: the pool (production) or an in-memory
/// upstream (simulation, tests).
pub trait Upstreams {
    /// Runs `f` with the upstream port of exchange `owner`, for service number `service`.
    fn with_port<T>(
        &mut self,
        owner: usize,
        service: usize,
        now: Instant,
        f: impl FnOnce(&mut dyn UpstreamPort) -> T,
    ) -> T;
}

/// What one call lends the requests: the clock, the configuration, the counters and the
/// upstream ports.
pub struct Env<'a, U> {
    pub now: Instant,
    pub cfg: &'a ServerConfig,
    pub metrics: &'a mut Metrics,
    pub upstreams: &'a mut U,
    /// The server is stopping: new request streams are refused.
    pub stopping: bool,
}

/// Every request stream of the server's sessions.
pub struct Requests {
    /// Each exchange with the key of its session.
    exchanges: Slab<(usize, Exchange)>,
    /// Their timers, those with progress possible, and events left at the cap.
    agenda: Agenda,
    events_per_turn: usize,
}

impl Default for Requests {
    fn default() -> Self {
        Self::with_event_cap(H3_EVENTS_PER_TURN)
    }
}

impl Requests {
    /// A table whose sessions are polled for at most `events_per_turn` events per turn.
    pub fn with_event_cap(events_per_turn: usize) -> Self {
        Requests {
            exchanges: Slab::new(),
            agenda: Agenda::default(),
            events_per_turn: events_per_turn.max(1),
        }
    }

    /// Exchanges in flight.
    pub fn len(&self) -> usize {
        self.exchanges.len()
    }

    pub fn is_empty(&self) -> bool {
        self.exchanges.is_empty()
    }

    /// The timers, the exchanges with progress possible, the events left at the cap.
    pub fn agenda(&self) -> &Agenda {
        &self.agenda
    }

    /// Whether an exchange in flight is for service number `service`.
    pub fn uses_service(&self, service: usize) -> bool {
        self.exchanges
            .iter()
            .any(|(_, (_, ex))| ex.service() == service)
    }

    /// A reload moved the services: service `i` is now number `moved[i]`.
    pub fn services_moved(&mut self, moved: &[Option<usize>]) {
        for (_, (_, ex)) in self.exchanges.iter_mut() {
            if let Some(Some(to)) = moved.get(ex.service()) {
                ex.service_moved(*to);
            }
        }
    }

    /// Exchange `ek` may progress (its upstream socket became ready).
    pub fn mark_dirty(&mut self, ek: usize) {
        self.agenda.mark(ek);
    }

    /// Polls every session's HTTP/3 events (at most the cap each) and collects the streams
    /// that became writable.
    pub fn poll_sessions<U: Upstreams>(&mut self, conns: &mut Slab<PeerConn>, env: &mut Env<U>) {
        self.agenda.start_poll();
        let keys: Vec<usize> = conns.iter().map(|(k, _)| k).collect();
        for ck in keys {
            let Some(pc) = conns.get_mut(ck) else {
                continue;
            };
            let drain = drain_bounded(self.events_per_turn, || self.poll_event(ck, pc, env));
            self.agenda.note_poll(drain);
            while let Some(id) = pc.session.conn.stream_writable_next() {
                if let Some(&ek) = pc.streams.get(&id) {
                    self.agenda.mark(ek);
                }
            }
        }
    }

    /// Polls one HTTP/3 event of session `ck` and handles it; breaks when there is none.
    fn poll_event<U: Upstreams>(
        &mut self,
        ck: usize,
        pc: &mut PeerConn,
        env: &mut Env<U>,
    ) -> ControlFlow<()> {
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
        pc.session.note_event(&event, env.now);
        self.on_h3_event(ck, pc, stream, event, env);
        ControlFlow::Continue(())
    }

    fn on_h3_event<U: Upstreams>(
        &mut self,
        ck: usize,
        pc: &mut PeerConn,
        stream: u64,
        event: quiche::h3::Event,
        env: &mut Env<U>,
    ) {
        use quiche::h3::Event;
        match (event, pc.streams.get(&stream).copied()) {
            (Event::Headers { list, more_frames }, None) => {
                if env.stopping {
                    return reject_stream(pc, stream);
                }
                let ek = self.exchanges.vacant_key();
                let identity = pc.identity();
                let routed = route(&list, identity, &env.cfg.services, env.metrics);
                let service = *routed.as_ref().unwrap_or(&0);
                let started = with_ctx(pc, ek, stream, service, env, |ctx| {
                    Exchange::start(ctx, stream, routed, &list, more_frames)
                });
                let Some(ex) = started else { return };
                self.agenda.set_timer(ek, ex.timers.next());
                self.exchanges.insert((ck, ex));
                pc.streams.insert(stream, ek);
                self.agenda.mark(ek);
            }
            (event, Some(ek)) => {
                if !matches!(event, Event::Data) {
                    self.run_on(pc, ek, env, |ex, ctx| ex.on_stream_event(ctx, event));
                }
                self.agenda.mark(ek);
            }
            _ => {}
        }
    }

    /// Fires the exchanges' timers due now.
    pub fn fire_timers<U: Upstreams>(&mut self, conns: &mut Slab<PeerConn>, env: &mut Env<U>) {
        for ek in self.agenda.expired(env.now) {
            self.run(conns, ek, env, |ex, ctx| ex.on_timer(ctx));
        }
    }

    /// Drives every exchange marked dirty (once each).
    pub fn drive_dirty<U: Upstreams>(&mut self, conns: &mut Slab<PeerConn>, env: &mut Env<U>) {
        for ek in self.agenda.take_marked() {
            self.run(conns, ek, env, |ex, ctx| ex.drive(ctx));
        }
    }

    /// Runs `f` on exchange `ek` of whatever session it belongs to.
    fn run<U: Upstreams>(
        &mut self,
        conns: &mut Slab<PeerConn>,
        ek: usize,
        env: &mut Env<U>,
        f: impl FnOnce(&mut Exchange, &mut Ctx<'_>) -> Outcome,
    ) {
        let Some(&(ck, _)) = self.exchanges.get(ek) else {
            return;
        };
        match conns.get_mut(ck) {
            Some(pc) => self.run_on(pc, ek, env, f),
            None => self.finish(None, ek),
        }
    }

    /// Runs `f` on exchange `ek` of session `pc`; removes it when finished, reschedules its
    /// timer otherwise.
    fn run_on<U: Upstreams>(
        &mut self,
        pc: &mut PeerConn,
        ek: usize,
        env: &mut Env<U>,
        f: impl FnOnce(&mut Exchange, &mut Ctx<'_>) -> Outcome,
    ) {
        let Some((_, ex)) = self.exchanges.get_mut(ek) else {
            return;
        };
        let (stream, service) = (ex.stream, ex.service());
        let outcome =
            with_ctx(pc, ek, stream, service, env, |ctx| f(ex, ctx)).unwrap_or(Outcome::Finished);
        match outcome {
            Outcome::Continue => self.agenda.set_timer(ek, ex.timers.next()),
            Outcome::Yielded => {
                self.agenda.set_timer(ek, ex.timers.next());
                self.agenda.mark(ek);
            }
            Outcome::Finished => self.finish(Some(pc), ek),
        }
    }

    /// Removes exchange `ek` and its stream's route.
    fn finish(&mut self, pc: Option<&mut PeerConn>, ek: usize) {
        self.agenda.set_timer(ek, None);
        if let Some((_, ex)) = self.exchanges.try_remove(ek) {
            if let Some(pc) = pc {
                pc.streams.remove(&ex.stream);
            }
        }
    }

    /// Session `pc` is gone: its exchanges end and their upstream connections are closed, an
    /// open tunnel's with a reset (RST): its caller is gone, which is no clean end (a FIN
    /// would tell the upstream the caller finished, e.g. when the drain deadline closes the
    /// session).
    pub fn forget_session<U: Upstreams>(&mut self, pc: &mut PeerConn, env: &mut Env<U>) {
        for (_, ek) in pc.streams.drain() {
            self.agenda.set_timer(ek, None);
            if let Some((_, mut ex)) = self.exchanges.try_remove(ek) {
                let tunnel_open = ex.close_tunnel(env.metrics);
                if let Some(key) = ex.upstream() {
                    env.upstreams.with_port(ek, ex.service(), env.now, |port| {
                        if let Some(up) = port.conn(key).filter(|_| tunnel_open) {
                            up.abort_on_close();
                        }
                        port.close(key)
                    });
                }
            }
        }
    }
}

/// After our GOAWAY: a new request stream is refused unprocessed, so the client may retry
/// it elsewhere.
fn reject_stream(pc: &mut PeerConn, stream: u64) {
    pc.session.ack.on_output();
    let conn = &mut pc.session.conn;
    let code = quic::h3_code::REQUEST_REJECTED;
    let _ = conn.stream_shutdown(stream, quiche::Shutdown::Read, code);
    let _ = conn.stream_shutdown(stream, quiche::Shutdown::Write, code);
}

/// Runs `f` with the context of exchange `ek` of service number `service` on `stream` of
/// session `pc`: its ports are that stream (quiche) and its service's upstream port. `None`
/// when the session has no HTTP/3 layer or the service no longer exists.
fn with_ctx<U: Upstreams, T>(
    pc: &mut PeerConn,
    ek: usize,
    stream: u64,
    service: usize,
    env: &mut Env<U>,
    f: impl FnOnce(&mut Ctx<'_>) -> T,
) -> Option<T> {
    let config = env.cfg.services.get(service)?;
    let (upstream, name) = (&config.upstream, config.name.as_str());
    let policy = &env.cfg.http.compression;
    let compression =
        (pc.session.link_compression() && config.compresses(policy.enabled)).then_some(policy);
    let dictionary = pc.session.link_dictionary();
    let forwarding = pc.session.peer_forwarding();
    let mut stream = H3Stream::of(&mut pc.session, stream)?;
    let (now, cfg, metrics, client) = (env.now, env.cfg, &mut *env.metrics, &pc.client);
    let out = env.upstreams.with_port(ek, service, now, |pool| {
        let mut ctx = Ctx {
            now,
            stream: &mut stream,
            pool,
            upstream,
            service: name,
            max_head_bytes: cfg.http.max_head_bytes,
            access_log: cfg.http.access_log,
            client,
            metrics,
            tunnel_idle_timeout: cfg.http.tunnel_idle_timeout,
            connect_to: &config.connect_to,
            compression,
            dictionary,
            forwarding,
        };
        f(&mut ctx)
    });
    Some(out)
}
