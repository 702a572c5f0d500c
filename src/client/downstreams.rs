//! Client role, without sockets: every connection from service A ([`Downstream`]) and the
//! request streams they own, their timers, and the HTTP/3 events of the sessions (one per
//! peer) routed to them by link and stream ID.
//!
//! Work is found three ways: a connection's socket was ready (the driver marks it dirty), a
//! stream event or writable stream names its connection, a timer came due. Request heads go
//! first: every request waiting for its stream tries again before any body moves, and bodies
//! pause while a head still waits for credit they would take. The session is polled for at
//! most `events_per_turn` events per turn ([`H3_EVENTS_PER_TURN`] in production); one left
//! with events leaves work on the [`Agenda`], so the driver comes back at once.
//!
//! [`Downstreams`] owns no socket, registry or clock: the client's driver (`ClientProxy`) and
//! the simulated pair (`crate::sim`) both run it, lending it the sessions ([`Links`]), the
//! clock and the configuration for each call. Which session a request takes is the links'
//! decision ([`Links::choose`], by its route's peer group), made each time a request not
//! sent yet tries again: a request waiting for a session goes to whichever comes up first. Connections that ended are handed back
//! ([`Downstreams::take_closed`]) so the driver can deregister their sockets.

use std::ops::ControlFlow;
use std::time::Instant;

use slab::Slab;

use super::downstream::conn::DownstreamConn;
use super::downstream::{Ctx, Downstream};
use super::stream_routes::{StreamRef, StreamRoutes};
use crate::bridge::stream::SessionPort;
use crate::bridge::tcp::TcpConn;
use crate::config::{ClientHttpConfig, PeerGroup};
use crate::metrics::Metrics;
use crate::quic::session::Session;
use crate::reactor::agenda::Agenda;
use crate::reactor::backlog::{drain_bounded, H3_EVENTS_PER_TURN};

/// The sessions as the downstreams see them, each named by a link key:
/// [`super::peers::Peers`] in production (a [`super::link::PeerLink`] per peer, with its
/// reconnects), one bare session in the simulation. Keys with no link answer `None`/false.
pub trait Links {
    /// Every link key is below this.
    fn key_bound(&self) -> usize;
    /// The session, if one exists (connecting or up): its HTTP/3 events are polled.
    fn session_mut(&mut self, link: usize) -> Option<&mut Session>;
    /// The session when streams may use it (up, or in 0-RTT).
    fn usable(&mut self, link: usize) -> Option<&mut Session>;
    /// New requests may open streams (up without GOAWAY, or in 0-RTT).
    fn accepts_requests(&self, link: usize) -> bool;
    fn in_early_data(&self, link: usize) -> bool;
    /// The peer sent GOAWAY.
    fn on_goaway(&mut self, link: usize);
    /// The congestion window of the session's active path (0 without a session).
    fn cwnd(&self, link: usize) -> usize;
    /// The link a new request for `group` (`None`: any peer, failover) takes now, given each
    /// link's streams in flight; `None` when no link of the group takes requests.
    fn choose(&self, group: Option<&PeerGroup>, load: &dyn Fn(usize) -> usize) -> Option<usize>;
    /// Why no link of `group` takes requests, for 503 answers.
    fn why_down(&self, group: Option<&PeerGroup>) -> String;
    /// A request stream was opened on `link`.
    fn note_request(&mut self, _link: usize) {}
    /// The session of `link` as the request streams use it, when they may.
    fn port(&mut self, link: usize) -> Option<&mut dyn SessionPort> {
        let session = self.usable(link)?;
        Some(session as &mut dyn SessionPort)
    }
}

/// What one call lends the downstreams.
pub struct Env<'a> {
    pub now: Instant,
    pub links: &'a mut dyn Links,
    pub http: &'a ClientHttpConfig,
    /// Authority for HTTP/1.0 requests without Host.
    pub default_authority: &'a str,
    /// A graceful stop is under way.
    pub stopping: bool,
    pub metrics: &'a mut Metrics,
}

/// Service A's connections and their request streams.
pub struct Downstreams<T: DownstreamConn = TcpConn> {
    downs: Slab<Downstream<T>>,
    /// Each open request stream, to the connection it belongs to.
    streams: StreamRoutes,
    /// Their timers, those with progress possible, and events left at the cap.
    agenda: Agenda,
    events_per_turn: usize,
    /// A request head waits for connection credit: bodies pause.
    hold_bodies: bool,
    /// The session's events are being handed out: output waits for the end of the turn.
    defer_flush: bool,
    /// Connections that ended, for the driver to release.
    closed: Vec<Downstream<T>>,
}

impl<T: DownstreamConn> Default for Downstreams<T> {
    fn default() -> Self {
        Self::with_event_cap(H3_EVENTS_PER_TURN)
    }
}

impl<T: DownstreamConn> Downstreams<T> {
    /// A table whose session is polled for at most `events_per_turn` events per turn.
    pub fn with_event_cap(events_per_turn: usize) -> Self {
        Downstreams {
            downs: Slab::new(),
            streams: StreamRoutes::default(),
            agenda: Agenda::default(),
            events_per_turn: events_per_turn.max(1),
            hold_bodies: false,
            defer_flush: false,
            closed: Vec::new(),
        }
    }

    /// Connections open.
    pub fn len(&self) -> usize {
        self.downs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.downs.is_empty()
    }

    /// Request streams open.
    pub fn streams_open(&self) -> usize {
        self.streams.len()
    }

    /// Request streams open on `link`.
    pub fn streams_on(&self, link: usize) -> usize {
        self.streams.on_link(link)
    }

    /// Requests in flight: with a stream, or waiting for one.
    pub fn in_flight(&self) -> usize {
        self.streams.len() + self.downs.iter().filter(|(_, d)| d.is_waiting()).count()
    }

    /// The timers, the connections with progress possible, the events left at the cap.
    pub fn agenda(&self) -> &Agenda {
        &self.agenda
    }

    /// The key the next connection will get (to register its socket under it).
    pub fn vacant_key(&self) -> usize {
        self.downs.vacant_key()
    }

    /// A new connection: driven this turn.
    pub fn insert(&mut self, down: Downstream<T>) -> usize {
        let next = down.timers.next();
        let key = self.downs.insert(down);
        self.agenda.set_timer(key, next);
        self.agenda.mark(key);
        key
    }

    pub fn get_mut(&mut self, key: usize) -> Option<&mut Downstream<T>> {
        self.downs.get_mut(key)
    }

    /// Connection `key` may progress (its socket was ready).
    pub fn mark_dirty(&mut self, key: usize) {
        self.agenda.mark(key);
    }

    /// Every connection is driven this turn (a stop began).
    pub fn mark_all_dirty(&mut self) {
        self.agenda.mark_all(self.downs.iter().map(|(k, _)| k));
    }

    /// Connections that ended since the last call.
    pub fn take_closed(&mut self) -> Vec<Downstream<T>> {
        std::mem::take(&mut self.closed)
    }

    /// Runs `f` on connection `key` with its context, then reschedules or removes it.
    pub fn with_down(
        &mut self,
        key: usize,
        env: &mut Env<'_>,
        f: impl FnOnce(&mut Downstream<T>, &mut Ctx<'_>),
    ) {
        let Some(down) = self.downs.get_mut(key) else {
            return;
        };
        let mut ctx = Ctx {
            key,
            now: env.now,
            http: env.http,
            default_authority: env.default_authority,
            links: &mut *env.links,
            stopping: env.stopping,
            hold_bodies: self.hold_bodies,
            defer_flush: self.defer_flush,
            streams: &mut self.streams,
            metrics: env.metrics,
        };
        f(down, &mut ctx);
        if down.is_done() {
            self.agenda.set_timer(key, None);
            let down = self.downs.remove(key);
            self.closed.push(down);
            return;
        }
        if down.is_idle() {
            down.tcp.release_buffers();
        }
        if down.more_work {
            self.agenda.mark(key);
        }
        self.agenda.set_timer(key, down.timers.next());
    }

    /// Runs `f` on every connection.
    pub fn for_each(&mut self, env: &mut Env<'_>, f: impl Fn(&mut Downstream<T>, &mut Ctx<'_>)) {
        let keys: Vec<usize> = self.downs.iter().map(|(k, _)| k).collect();
        for key in keys {
            self.with_down(key, env, &f);
        }
    }

    /// Hands the sessions' HTTP/3 events to the connections owning their streams (at most the
    /// cap per session; events left set the backlog, polled next turn).
    pub fn poll_h3(&mut self, env: &mut Env<'_>) {
        self.agenda.start_poll();
        self.defer_flush = true;
        for link in 0..env.links.key_bound() {
            let drain = drain_bounded(self.events_per_turn, || self.poll_h3_event(env, link));
            self.agenda.note_poll(drain);
        }
        self.defer_flush = false;
    }

    /// Polls one HTTP/3 event of `link` and hands it to its connection; breaks when there is
    /// none.
    fn poll_h3_event(&mut self, env: &mut Env<'_>, link: usize) -> ControlFlow<()> {
        // Polled while connecting too: the peer's SETTINGS are what make the session usable.
        let Some(session) = env.links.session_mut(link) else {
            return ControlFlow::Break(());
        };
        let Some(h3) = session.h3.as_mut() else {
            return ControlFlow::Break(());
        };
        let (id, event) = match h3.poll(&mut session.conn) {
            Ok(pair) => pair,
            Err(quiche::h3::Error::Done) => return ControlFlow::Break(()),
            Err(e) => {
                log::warn!("HTTP/3 error on the session: {e}");
                return ControlFlow::Break(());
            }
        };
        session.note_event(&event, env.now);
        if matches!(event, quiche::h3::Event::GoAway) {
            env.links.on_goaway(link);
            return ControlFlow::Continue(());
        }
        if let Some(key) = self.streams.get(StreamRef { link, id }) {
            self.with_down(key, env, |d, ctx| d.on_stream_event(ctx, event));
        }
        ControlFlow::Continue(())
    }

    /// The session came up: requests waiting for it go out now, and requests sent in 0-RTT
    /// read the response events they may have had while the link was not yet up (their data
    /// stayed unread and quiche does not announce it again).
    pub fn on_link_up(&mut self) {
        self.agenda.mark_all(
            self.downs
                .iter()
                .filter(|(_, d)| d.is_waiting() || d.has_stream())
                .map(|(k, _)| k),
        );
    }

    /// The session of `link` died: every stream on it is gone.
    pub fn fail_all_streams(&mut self, env: &mut Env<'_>, link: usize) {
        for key in self.streams.take_link(link) {
            self.with_down(key, env, |d, ctx| d.on_session_lost(ctx));
        }
    }

    /// The peer of `link` went silent: requests on it that may be repeated and have no
    /// response yet go to another peer now (once), if their group has a healthier one.
    pub fn move_off_suspect(&mut self, env: &mut Env<'_>, link: usize) {
        for key in self.streams.owners_on(link) {
            self.with_down(key, env, |d, ctx| d.move_off(ctx, link));
        }
    }

    /// Streams that got flow-control credit back: their request bodies can move again.
    pub fn collect_writable(&mut self, env: &mut Env<'_>) {
        for link in 0..env.links.key_bound() {
            let Some(session) = env.links.usable(link) else {
                continue;
            };
            while let Some(id) = session.conn.stream_writable_next() {
                if let Some(key) = self.streams.get(StreamRef { link, id }) {
                    self.agenda.mark(key);
                }
            }
        }
    }

    /// Fires the connections' timers due now.
    pub fn fire_timers(&mut self, env: &mut Env<'_>) {
        for key in self.agenda.expired(env.now) {
            self.with_down(key, env, |d, ctx| d.on_timer(ctx));
        }
    }

    /// Request heads go first: every request waiting for its stream (blocked on credit or
    /// stream count, or waiting for 0-RTT) tries again whenever anything happened, before any
    /// body moves, and bodies stay paused while a head still waits for credit they would take.
    pub fn send_waiting_heads(&mut self, env: &mut Env<'_>) {
        let waiting: Vec<usize> = self
            .downs
            .iter()
            .filter(|(_, d)| d.is_waiting())
            .map(|(k, _)| k)
            .collect();
        let was_held = std::mem::replace(&mut self.hold_bodies, true);
        for &key in &waiting {
            self.with_down(key, env, |d, ctx| d.drive(ctx));
        }
        // Those that opened their stream move their body in the main pass.
        self.agenda.mark_all(waiting);
        let links = &*env.links;
        self.hold_bodies = self
            .downs
            .iter()
            .any(|(_, d)| d.head_waits_for_credit(|link| links.cwnd(link)));
        if was_held && !self.hold_bodies {
            self.agenda.mark_all(
                self.downs
                    .iter()
                    .filter(|(_, d)| d.sends_body())
                    .map(|(k, _)| k),
            );
        }
    }

    /// Drives every connection marked dirty (once each).
    pub fn drive_dirty(&mut self, env: &mut Env<'_>) {
        for key in self.agenda.take_marked() {
            self.with_down(key, env, |d, ctx| d.drive(ctx));
        }
    }
}
