//! Client role: accepts HTTP/1.1 from local services and carries each request over the one
//! HTTP/3 session to the peer.
//!
//! [`ClientProxy`] owns the listeners, the [`link::PeerLink`] (session with reconnect) and a slab
//! of [`downstream::Downstream`] connections; HTTP/3 events are routed to downstreams by stream
//! id. Everything runs on the reactor thread. The operator's side (the `/metrics` and `/health`
//! page, graceful and immediate stops, reloads) is in `operate.rs`.

pub mod contact;
pub mod dial;
pub mod downstream;
pub mod link;
mod operate;
pub mod probe;
pub mod request;

use std::collections::HashMap;
use std::io;
use std::ops::ControlFlow;
use std::time::Instant;

use mio::event::Event;
use mio::net::TcpListener;
use mio::{Interest, Registry, Token};
use slab::Slab;

use crate::accept_pause::{self, AcceptPause};
use crate::admin::Admin;
use crate::bridge::answers;
use crate::bridge::stream::SessionPort;
use crate::bridge::tcp::TcpConn;
use crate::config::{ClientConfig, ClientHttpConfig, Config};
use crate::metrics::Metrics;
use crate::reactor::backlog::{drain_bounded, Backlog, H3_EVENTS_PER_TURN};
use crate::reactor::{Control, Driver, ADMIN_CONN_BASE, CONN_BASE, LISTENER_BASE, UDP};
use crate::time::TimerTable;
use downstream::{Ctx, Downstream};
use link::{LinkEvent, PeerLink};

/// Most TCP listeners one client process may have (token space below `CONN_BASE`).
pub const MAX_LISTENERS: usize = ADMIN_CONN_BASE - LISTENER_BASE;

pub struct ClientProxy {
    /// The config running now (reloads replace the reloadable parts).
    config: ClientConfig,
    http: ClientHttpConfig,
    default_authority: String,
    link: PeerLink,
    admin: Option<Admin>,
    metrics: Metrics,
    /// Graceful stop: when to give up on requests still in flight.
    drain_deadline: Option<Instant>,
    /// The last send stopped at its quantum: come back without waiting.
    send_pending: bool,
    /// The UDP socket reported readiness, or its last read stopped at its cap: read it next.
    udp_backlog: Backlog,
    /// HTTP/3 events were left at the poll cap: poll again without waiting.
    h3_backlog: Backlog,
    listeners: Vec<TcpListener>,
    downs: Slab<Downstream>,
    by_stream: HashMap<u64, usize>,
    timers: TimerTable<usize>,
    dirty: Vec<usize>,
    stopping: bool,
    /// Why no session is up, refreshed each turn while it is not (for 503 answers).
    why_down: String,
    /// Request bodies pause while a request head waits for connection credit.
    hold_bodies: bool,
    /// Accepting paused at the descriptor limit (retried on a timer).
    accept_pause: AcceptPause,
}

impl ClientProxy {
    /// Binds the listeners and starts the session at once, before any request arrives.
    pub fn new(
        cfg: &ClientConfig,
        registry: &Registry,
    ) -> Result<Self, Box<dyn std::error::Error>> {
        if cfg.listen.len() > MAX_LISTENERS {
            return Err(format!("listen: at most {MAX_LISTENERS} addresses").into());
        }
        let mut listeners = Vec::new();
        for (i, addr) in cfg.listen.iter().enumerate() {
            let mut l = crate::net::bind_tcp_listener(*addr, cfg.reuse_port)
                .map_err(|e| format!("listen[{i}] {addr}: {e}"))?;
            registry.register(&mut l, Token(LISTENER_BASE + i), Interest::READABLE)?;
            log::info!("listening for HTTP/1.1 on {}", l.local_addr()?);
            listeners.push(l);
        }
        let admin = match cfg.ops.metrics_listen {
            Some(addr) => Some(
                Admin::bind(addr, registry).map_err(|e| format!("metrics.listen {addr}: {e}"))?,
            ),
            None => None,
        };
        let mut link = PeerLink::new(cfg)?;
        log::info!("{}", link.describe_loss_hiding());
        link.handle_timeout(registry, Instant::now());
        Ok(ClientProxy {
            config: cfg.clone(),
            admin,
            metrics: Metrics::new("client", Instant::now()),
            drain_deadline: None,
            send_pending: false,
            udp_backlog: Backlog::default(),
            h3_backlog: Backlog::default(),
            http: cfg.http.clone(),
            default_authority: cfg.peer.server_name.clone(),
            link,
            listeners,
            downs: Slab::new(),
            by_stream: HashMap::new(),
            timers: TimerTable::default(),
            dirty: Vec::new(),
            stopping: false,
            why_down: String::new(),
            hold_bodies: false,
            accept_pause: AcceptPause::default(),
        })
    }

    fn accept(&mut self, registry: &Registry, index: usize, now: Instant) {
        loop {
            let Some(listener) = self.listeners.get(index) else {
                return;
            };
            let (stream, peer) = match listener.accept() {
                Ok(pair) => pair,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if accept_pause::is_resource_exhaustion(&e) => {
                    self.accept_pause.pause("listen", &e, now);
                    return;
                }
                Err(e) => {
                    log::warn!("accept: {e}");
                    return;
                }
            };
            self.accept_pause.accepted("listen");
            let mut tcp = TcpConn::new(stream);
            if self.downs.len() >= self.http.max_connections {
                let answer = answers::Answer::new(
                    answers::Side::Client,
                    503,
                    "connection_limit_reached",
                    "too many client connections (http.max_connections)",
                );
                tcp.queue(&answer.to_h1(true, false));
                tcp.flush();
                continue;
            }
            let _ = tcp.stream.set_nodelay(true);
            let entry = self.downs.vacant_entry();
            let key = entry.key();
            if let Err(e) = registry.register(
                &mut tcp.stream,
                Token(CONN_BASE + key),
                Interest::READABLE | Interest::WRITABLE,
            ) {
                log::warn!("register connection from {peer}: {e}");
                continue;
            }
            let down = Downstream::new(tcp, peer, &self.http, now);
            self.timers.set(key, down.timers.next());
            entry.insert(down);
            self.dirty.push(key);
        }
    }

    /// Runs `f` on downstream `key` with the shared context, then reschedules or removes it.
    fn with_down(
        &mut self,
        registry: &Registry,
        key: usize,
        now: Instant,
        f: impl FnOnce(&mut Downstream, &mut Ctx<'_>),
    ) {
        let Some(down) = self.downs.get_mut(key) else {
            return;
        };
        let accepting = self.link.accepts_requests() && !self.stopping;
        let early = self.link.in_early_data();
        let mut ctx = Ctx {
            key,
            now,
            http: &self.http,
            default_authority: &self.default_authority,
            session: self.link.usable().map(|s| s as &mut dyn SessionPort),
            accepting,
            early,
            stopping: self.stopping,
            why_down: &self.why_down,
            hold_bodies: self.hold_bodies,
            by_stream: &mut self.by_stream,
            metrics: &mut self.metrics,
        };
        f(down, &mut ctx);
        if down.is_done() {
            self.timers.set(key, None);
            let mut down = self.downs.remove(key);
            let _ = registry.deregister(&mut down.tcp.stream);
            return;
        }
        if down.is_idle() {
            down.tcp.release_buffers();
        }
        if down.more_work {
            self.dirty.push(key);
        }
        self.timers.set(key, down.timers.next());
    }

    /// Dispatches HTTP/3 events to the downstreams owning the streams, at most
    /// [`H3_EVENTS_PER_TURN`]; events left at the cap set `h3_backlog` (polled next turn).
    fn poll_h3(&mut self, registry: &Registry, now: Instant) {
        self.h3_backlog.take();
        let drain = drain_bounded(H3_EVENTS_PER_TURN, || self.poll_h3_event(registry, now));
        self.h3_backlog.note(drain);
    }

    /// Polls one HTTP/3 event and hands it to its downstream; breaks when there is none.
    fn poll_h3_event(&mut self, registry: &Registry, now: Instant) -> ControlFlow<()> {
        // Polled while connecting too: the peer's SETTINGS are what make the session usable.
        let Some(session) = self.link.session_mut() else {
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
        if matches!(event, quiche::h3::Event::GoAway) {
            self.link.on_goaway();
            return ControlFlow::Continue(());
        }
        let Some(&key) = self.by_stream.get(&id) else {
            return ControlFlow::Continue(());
        };
        self.with_down(registry, key, now, |d, ctx| d.on_stream_event(ctx, event));
        ControlFlow::Continue(())
    }

    /// Request heads go first: every request waiting for its stream (blocked on credit or
    /// stream count, or waiting for 0-RTT) tries again whenever anything happened, before any
    /// body moves, and bodies stay paused while a head still waits for credit they would take.
    fn send_waiting_heads(&mut self, registry: &Registry, now: Instant) {
        let waiting: Vec<usize> = self
            .downs
            .iter()
            .filter(|(_, d)| d.is_waiting())
            .map(|(k, _)| k)
            .collect();
        let was_held = std::mem::replace(&mut self.hold_bodies, true);
        for &key in &waiting {
            self.with_down(registry, key, now, |d, ctx| d.drive(ctx));
        }
        // Those that opened their stream move their body in the main pass.
        self.dirty.extend(waiting);
        let cwnd = self.link.cwnd();
        self.hold_bodies = self
            .downs
            .iter()
            .any(|(_, d)| d.head_waits_for_credit(cwnd));
        if was_held && !self.hold_bodies {
            self.dirty.extend(
                self.downs
                    .iter()
                    .filter(|(_, d)| d.sends_body())
                    .map(|(k, _)| k),
            );
        }
    }

    /// Streams that got flow-control credit back: their request bodies can move again.
    fn collect_writable(&mut self) {
        let Some(session) = self.link.usable() else {
            return;
        };
        while let Some(id) = session.conn.stream_writable_next() {
            if let Some(&key) = self.by_stream.get(&id) {
                self.dirty.push(key);
            }
        }
    }

    /// The session died: every stream on it is gone.
    fn fail_all_streams(&mut self, registry: &Registry, now: Instant) {
        let keys: Vec<usize> = self.by_stream.drain().map(|(_, k)| k).collect();
        for key in keys {
            self.with_down(registry, key, now, |d, ctx| d.on_session_lost(ctx));
        }
    }
}

impl Driver for ClientProxy {
    fn handle_event(&mut self, registry: &Registry, event: &Event, now: Instant) {
        match event.token() {
            UDP => {
                // An ICMP error comes as an error event: the read reports it. The read is done
                // in `process`, once per turn, where a read left at its cap resumes.
                if event.is_readable() || event.is_error() {
                    self.udp_backlog.mark();
                }
                if event.is_writable() {
                    self.link.handle_writable(now);
                }
            }
            token if Admin::owns(token) => {
                if let Some(mut admin) = self.admin.take() {
                    admin.handle_event(registry, event, now, |path| self.page(path, now));
                    self.admin = Some(admin);
                }
            }
            Token(t) if (LISTENER_BASE..ADMIN_CONN_BASE).contains(&t) => {
                if !self.stopping && !self.accept_pause.is_paused() {
                    self.accept(registry, t - LISTENER_BASE, now);
                }
            }
            Token(t) => {
                let key = t - CONN_BASE;
                if let Some(d) = self.downs.get_mut(key) {
                    d.tcp.on_event(event);
                    self.dirty.push(key);
                }
            }
        }
    }

    fn process(&mut self, registry: &Registry, now: Instant) {
        self.metrics.loop_turns += 1;
        if let Some(admin) = self.admin.as_mut() {
            admin.handle_timeout(registry, now);
        }
        if self.accept_pause.retry_due(now) && !self.stopping {
            for index in 0..self.listeners.len() {
                self.accept(registry, index, now);
            }
        }
        if self.udp_backlog.take() {
            let drain = self.link.handle_readable(now);
            self.udp_backlog.note(drain);
        }
        self.link.handle_timeout(registry, now);
        self.poll_h3(registry, now);
        match self.link.update(now, &mut self.metrics) {
            // Requests waiting for the session go out now; requests sent in 0-RTT may have had
            // response events while the handshake was done but the link not yet `Up` (no
            // usable session: their data stayed unread and quiche does not announce it again).
            LinkEvent::Up => self.dirty.extend(
                self.downs
                    .iter()
                    .filter(|(_, d)| d.is_waiting() || d.has_stream())
                    .map(|(k, _)| k),
            ),
            LinkEvent::Lost => self.fail_all_streams(registry, now),
            LinkEvent::None => {}
        }
        if !self.link.accepts_requests() {
            self.why_down = self.link.why_down(now);
        }
        self.collect_writable();
        for key in self.timers.expired(now) {
            self.with_down(registry, key, now, |d, ctx| d.on_timer(ctx));
        }
        if self.link.accepts_requests() {
            self.send_waiting_heads(registry, now);
        }
        let mut dirty = std::mem::take(&mut self.dirty);
        dirty.sort_unstable();
        dirty.dedup();
        for key in dirty {
            self.with_down(registry, key, now, |d, ctx| d.drive(ctx));
        }
        self.link.retire_if_idle(self.by_stream.len());
        if self.stopping {
            self.finish_drain(registry, now);
        }
        self.send_pending = self.link.flush(now);
    }

    fn next_deadline(&self) -> Option<Instant> {
        if !self.dirty.is_empty()
            || self.send_pending
            || self.udp_backlog.is_pending()
            || self.h3_backlog.is_pending()
        {
            return Some(Instant::now());
        }
        let d = crate::time::earliest(self.link.next_deadline(), self.timers.next_deadline());
        let d = crate::time::earliest(d, self.admin.as_ref().and_then(Admin::next_deadline));
        let d = crate::time::earliest(d, self.accept_pause.next_deadline());
        crate::time::earliest(d, self.drain_deadline)
    }

    fn on_terminate(&mut self, registry: &Registry, now: Instant) -> Control {
        if self.stopping {
            self.stop_now(registry, now);
            return Control::Exit;
        }
        self.start_drain(registry, now);
        Control::Continue
    }

    fn on_reload(&mut self, config: &Config) {
        self.reload(config);
    }

    fn is_finished(&self) -> bool {
        self.stopping && self.link.is_closed()
    }
}
