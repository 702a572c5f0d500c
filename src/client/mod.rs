//! Client role: accepts HTTP/1.1 from local services and carries each request over the
//! HTTP/3 session to a peer (one session per configured peer).
//!
//! [`ClientProxy`] owns the listeners, the [`peers::Peers`] (a [`link::PeerLink`], the session
//! with its reconnects, per peer) and the [`downstreams::Downstreams`] table of
//! [`downstream::Downstream`] connections, to which HTTP/3 events are routed by link and stream
//! ID (a sans-IO table the simulated pair runs too; the driver lends it the links, the clock
//! and the configuration, and releases the sockets of connections that ended). Everything runs on the reactor thread. The operator's side (the `/metrics` and `/health`
//! page, graceful and immediate stops, reloads) is in `operate.rs`.

pub mod contact;
pub mod dial;
pub mod downstream;
pub mod downstreams;
pub mod link;
mod operate;
pub mod peers;
pub mod probe;
pub mod stream_routes;

use std::io;
use std::rc::Rc;
use std::time::Instant;

use mio::event::Event;
use mio::net::TcpListener;
use mio::{Interest, Registry, Token};

use crate::accept_pause::{self, AcceptPause};
use crate::admin::Admin;
use crate::bridge::answers;
use crate::bridge::tcp::TcpConn;
use crate::config::{ClientConfig, ClientHttpConfig, Config, ListenerRules};
use crate::metrics::Metrics;
use crate::reactor::{Control, Driver, CONN_BASE, LISTENER_BASE, PEER_UDP_BASE, RESOLVER};
use downstream::Downstream;
use downstreams::{Downstreams, Env};
use link::LinkEvent;
use peers::Peers;

/// Most TCP listeners one client process may have (token space below `PEER_UDP_BASE`).
pub const MAX_LISTENERS: usize = PEER_UDP_BASE - LISTENER_BASE;

pub struct ClientProxy {
    /// The config running now (reloads replace the reloadable parts).
    config: ClientConfig,
    http: ClientHttpConfig,
    default_authority: String,
    peers: Peers,
    admin: Option<Admin>,
    metrics: Metrics,
    /// Graceful stop: when to give up on requests still in flight.
    drain_deadline: Option<Instant>,
    /// The last send stopped at its quantum: come back without waiting.
    send_pending: bool,
    listeners: Vec<TcpListener>,
    /// Each listener's routes and allowed sources (`None`: no routes, any source).
    rules: Vec<Option<Rc<ListenerRules>>>,
    /// Service A's connections and their request streams.
    downs: Downstreams,
    stopping: bool,
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
        let peers = Peers::new(cfg, registry)?;
        Ok(ClientProxy {
            config: cfg.clone(),
            admin,
            metrics: Metrics::new("client", Instant::now()),
            drain_deadline: None,
            send_pending: false,
            http: cfg.http.clone(),
            default_authority: default_authority(cfg),
            peers,
            listeners,
            rules: shared_rules(&cfg.listener_rules),
            downs: Downstreams::default(),
            stopping: false,
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
            let rules = self.rules.get(index).cloned().flatten();
            if rules.as_ref().is_some_and(|r| !r.admits(peer.ip())) {
                log::info!("refusing a caller from {peer}: not in the listener's allow_sources");
                self.metrics.record_refused(None, "source_denied");
                tcp.queue(&answers::source_denied(peer.ip()).to_h1(true, false));
                tcp.flush();
                continue;
            }
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
            let key = self.downs.vacant_key();
            if let Err(e) = registry.register(
                &mut tcp.stream,
                Token(CONN_BASE + key),
                Interest::READABLE | Interest::WRITABLE,
            ) {
                log::warn!("register connection from {peer}: {e}");
                continue;
            }
            self.downs
                .insert(Downstream::new(tcp, peer, &self.http, now).with_rules(rules));
        }
    }

    /// Runs `f` on the downstreams with what they work with this turn, then releases the
    /// sockets of the connections that ended.
    fn with_downs<R>(
        &mut self,
        registry: &Registry,
        now: Instant,
        f: impl FnOnce(&mut Downstreams, &mut Env<'_>) -> R,
    ) -> R {
        let mut env = Env {
            now,
            links: &mut self.peers,
            http: &self.http,
            default_authority: &self.default_authority,
            stopping: self.stopping,
            metrics: &mut self.metrics,
        };
        let out = f(&mut self.downs, &mut env);
        for mut down in self.downs.take_closed() {
            let _ = registry.deregister(&mut down.tcp.stream);
        }
        out
    }
}

/// The listeners' rules as the connections share them; `None` for a listener without any.
fn shared_rules(rules: &[ListenerRules]) -> Vec<Option<Rc<ListenerRules>>> {
    rules
        .iter()
        .map(|r| (*r != ListenerRules::default()).then(|| Rc::new(r.clone())))
        .collect()
}

/// Authority for HTTP/1.0 requests without Host: the first peer's server name.
fn default_authority(cfg: &ClientConfig) -> String {
    cfg.peers
        .first()
        .map(|p| p.server_name.clone())
        .unwrap_or_default()
}

impl Driver for ClientProxy {
    fn handle_event(&mut self, registry: &Registry, event: &Event, now: Instant) {
        match event.token() {
            token if self.peers.owner(token).is_some() => {
                // An ICMP error comes as an error event: the read reports it. The read is done
                // in `process`, once per turn, where a read left at its cap resumes.
                let readable = event.is_readable() || event.is_error();
                if let Some(key) = self.peers.owner(token) {
                    self.peers
                        .on_socket_event(registry, key, readable, event.is_writable(), now);
                }
            }
            token if Admin::owns(token) => {
                if let Some(mut admin) = self.admin.take() {
                    admin.handle_event(registry, event, now, |path| self.page(path, now));
                    self.admin = Some(admin);
                }
            }
            // Name answers are taken in `process`, each turn.
            RESOLVER => {}
            Token(t) if (LISTENER_BASE..LISTENER_BASE + MAX_LISTENERS).contains(&t) => {
                if !self.stopping && !self.accept_pause.is_paused() {
                    self.accept(registry, t - LISTENER_BASE, now);
                }
            }
            Token(t) => {
                let Some(key) = t.checked_sub(CONN_BASE) else {
                    return;
                };
                if let Some(d) = self.downs.get_mut(key) {
                    d.tcp.on_event(event);
                    self.downs.mark_dirty(key);
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
        let events = self.peers.step(registry, now, &mut self.metrics);
        self.with_downs(registry, now, |downs, env| downs.poll_h3(env));
        for (link, event) in events {
            match event {
                LinkEvent::Up => self.downs.on_link_up(),
                LinkEvent::Lost => self.with_downs(registry, now, |downs, env| {
                    downs.fail_all_streams(env, link)
                }),
                LinkEvent::Suspect => self.with_downs(registry, now, |downs, env| {
                    downs.move_off_suspect(env, link)
                }),
                LinkEvent::None => {}
            }
        }
        let accepting = self.peers.any_accepts();
        self.with_downs(registry, now, |downs, env| {
            downs.collect_writable(env);
            downs.fire_timers(env);
            if accepting {
                downs.send_waiting_heads(env);
            }
            downs.drive_dirty(env);
        });
        let downs = &self.downs;
        self.peers.retire_idle(|link| downs.streams_on(link));
        if self.stopping {
            self.finish_drain(registry, now);
        }
        self.send_pending = self.peers.flush(registry, now);
    }

    fn next_deadline(&self) -> Option<Instant> {
        if self.downs.agenda().has_work() || self.send_pending || self.peers.has_backlog() {
            return Some(Instant::now());
        }
        let d = crate::time::earliest(
            self.peers.next_deadline(),
            self.downs.agenda().next_deadline(),
        );
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

    fn on_reload(&mut self, registry: &Registry, config: &Config) {
        self.reload(registry, config);
    }

    fn is_finished(&self) -> bool {
        self.stopping && self.peers.is_closed()
    }
}
