//! Server role: accepts QUIC sessions from authenticated clients and issues each request
//! stream at the upstream over a pool of keep-alive TCP connections.
//!
//! [`ServerProxy`] keeps all the server's state in one struct; its methods are grouped along the
//! data path, one module each:
//!
//! - `routing`: datagrams in, to the connection of their destination CID ([`cid_routes`]);
//!   new handshakes (through [`admission`]), stateless resets;
//! - `streams` and [`requests`]: each session's HTTP/3 events, to one [`exchange::Exchange`]
//!   per request stream (`requests` is the sans-IO table the simulated pair runs too;
//!   `streams` lends it the sessions, the pool and the clock);
//! - [`exchange`] and [`upstream`]: a request carried to the upstream and its response back
//!   (`pool_port`: the pool as the exchanges' upstream port);
//! - [`peer`] and [`peer_address`]: one client connection, and its address across rebindings;
//! - `operate`: the operator's side: `/metrics` and `/health`, graceful stop, reload, and how
//!   sessions end (silent clients, closed sessions, TLS refusals).
//!
//! This module holds the struct, its constructor, the sending at the end of each turn and the
//! reactor's [`Driver`] interface, which calls the others in order.

pub mod admission;
pub mod cid_routes;
pub mod endpoints;
pub mod exchange;
mod health;
mod operate;
pub mod peer;
pub mod peer_address;
mod pool_port;
pub mod requests;
mod routing;
mod streams;
mod targets;
pub mod upstream;

use std::net::SocketAddr;
use std::time::Instant;

use mio::event::Event;
use mio::{Registry, Token};
use ring::hmac;
use slab::Slab;

use crate::admin::Admin;
use crate::config::{Config, ServerConfig};
use crate::metrics::Metrics;
use crate::quic::debug::DebugTaps;
use crate::quic::refusal::{RefusalLog, RefusalSlot};
use crate::quic::setup::PathSizing;
use crate::quic::udp::{LossHider, UdpIo};
use crate::quic::{self, tls};
use crate::reactor::backlog::Backlog;
use crate::reactor::{Control, Driver, CONN_BASE, RESOLVER, UDP};
use crate::resolver::Resolver;
use admission::Admission;
use cid_routes::CidRoutes;
use peer::PeerConn;
use requests::Requests;
use upstream::{Pool, UpState};

/// The server role: every session, exchange and upstream connection of the process.
pub struct ServerProxy {
    cfg: ServerConfig,
    quiche_config: quiche::Config,
    /// Fits `quiche_config` to the route back to each new session's client.
    path_sizing: PathSizing,
    udp: UdpIo,
    local: SocketAddr,
    conns: Slab<PeerConn>,
    /// Our connection IDs, to the connection each leads to.
    routes: CidRoutes,
    cid_key: hmac::Key,
    /// Every request stream of every session, each an exchange.
    requests: Requests,
    pool: Pool,
    next_idle_expiry: Option<Instant>,
    /// When the next health check starts or times out.
    next_health_check: Option<Instant>,
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
    /// The UDP socket reported readiness, or its last read stopped at its cap: read it next.
    udp_backlog: Backlog,
    debug: DebugTaps,
    /// Which new handshakes are taken on, and the counts of those that were not.
    admission: Admission,
    /// Resolves the upstream names off the reactor thread.
    resolver: Resolver,
    /// The datagram being routed (kept between datagrams).
    rx: Vec<u8>,
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
        let mut pool = Pool::new(&cfg.services);
        let resolver = start_resolver(registry, &mut pool)?;
        log::info!("{}", LossHider::new(cfg.transport.loss_hiding).describe());
        udp.register(registry, UDP)?;
        let local = udp.local_addr()?;
        if local.ip().is_unspecified() && !udp.enable_pktinfo() {
            log::warn!(
                "listen {local}: the socket cannot report which address a client sent to; with \
                 several addresses on this host, clients of the second one get no answer"
            );
        }
        log::info!(
            "listening for QUIC on {local}, services: {}",
            describe_services(&cfg.services)
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
            path_sizing: PathSizing::new(&cfg.transport, cfg.http.max_head_bytes),
            udp,
            local,
            conns: Slab::new(),
            routes: CidRoutes::new(
                hmac::Key::new(hmac::HMAC_SHA256, reset_secret.as_ref()),
                cfg.transport.connection_id_bytes,
            ),
            cid_key: hmac::Key::new(hmac::HMAC_SHA256, &seed),
            requests: Requests::default(),
            pool,
            next_idle_expiry: None,
            next_health_check: None,
            stopping: false,
            admin,
            metrics: Metrics::new("server", Instant::now()),
            allowed_client_names,
            refusals,
            refusal_log: RefusalLog::default(),
            drain_deadline: None,
            hider: LossHider::new(cfg.transport.loss_hiding),
            send_pending: false,
            udp_backlog: Backlog::default(),
            debug: DebugTaps::new(cfg.ops.qlog_dir.clone()),
            admission: Admission::new(cfg.admission.clone(), &key_pem),
            resolver,
            rx: Vec::new(),
        })
    }

    /// Takes the names resolved since the last turn and asks for those due for renewal.
    fn refresh_names(&mut self, now: Instant) {
        for (name, result) in self.resolver.answers() {
            self.pool.on_resolved(&name, result, now);
        }
        for name in self.pool.names_to_resolve(now) {
            self.resolver.ask(&name);
        }
    }

    /// Sends what every session has to send now (at most one quantum each); true when one
    /// stopped at its quantum with more to send.
    fn send_all(&mut self, now: Instant) -> bool {
        let mut pending = false;
        for pc in self.conns.iter_mut().map(|(_, pc)| pc) {
            let (udp, metrics) = (&mut self.udp, &mut self.metrics);
            if peer_address::before_sending(&mut pc.peer, &pc.client, pc.local, udp, metrics, now) {
                continue;
            }
            if pc.session.may_hold_send(now) && !self.udp.pacer_waits() {
                self.udp.flush(now); // only an ACK is owed, and it waits for the response
                continue;
            }
            let to = Some(pc.peer.current());
            pending |= self.udp.send_within(
                &mut pc.session.conn,
                now,
                &mut self.hider,
                &mut pc.budget,
                &mut pc.session.pace,
                to,
            );
            pc.session.on_sent();
            if pc.budget.take_newly_limited() {
                self.admission.on_amplification_limited(now);
            }
        }
        pending
    }
}

impl Driver for ServerProxy {
    fn handle_event(&mut self, registry: &Registry, event: &Event, now: Instant) {
        match event.token() {
            UDP => {
                if event.is_readable() {
                    // Read in `process`, once per turn, where a read left at its cap resumes.
                    self.udp_backlog.mark();
                }
                if event.is_writable() {
                    self.udp.on_writable(now);
                    self.udp.update_interest(registry, UDP);
                }
            }
            // Answers are taken in `process`, every turn.
            RESOLVER => {}
            token if Admin::owns(token) => {
                if let Some(mut admin) = self.admin.take() {
                    admin.handle_event(registry, event, now, |path| self.page(path, now));
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
                } else if matches!(up.state, UpState::Probe(_)) {
                    self.pool.on_probe_event(registry, key);
                } else {
                    self.requests.mark_dirty(up.owner);
                }
            }
            Token(_) => {}
        }
    }

    fn process(&mut self, registry: &Registry, now: Instant) {
        self.metrics.loop_turns += 1;
        if let Some(admin) = self.admin.as_mut() {
            admin.handle_timeout(registry, now);
        }
        if self.udp_backlog.take() {
            self.handle_readable(now);
        }
        self.refresh_names(now);
        for pc in self.conns.iter_mut().map(|(_, pc)| pc) {
            pc.session.handle_timeout(now);
        }
        self.drop_silent_clients(now);
        self.poll_sessions(registry, now);
        self.with_requests(registry, now, |requests, conns, env| {
            requests.fire_timers(conns, env);
            requests.drive_dirty(conns, env);
        });
        // Each service has its own idle timeout: a connection pooled this turn may expire
        // before the one known so far.
        self.next_idle_expiry = self.pool.expire_idle(registry, now);
        self.next_health_check = self.pool.run_health_checks(registry, now);
        if self.stopping {
            self.finish_drain(now);
        }
        self.send_pending = self.send_all(now);
        self.udp.update_interest(registry, UDP);
        self.reap_closed(registry, now);
        self.expire_handshakes(registry, now);
        self.admission.log_summary(now);
    }

    fn next_deadline(&self) -> Option<Instant> {
        if self.requests.agenda().has_work() || self.send_pending || self.udp_backlog.is_pending() {
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
        let d = crate::time::earliest(sessions, self.requests.agenda().next_deadline());
        let d = crate::time::earliest(d, self.next_idle_expiry);
        let d = crate::time::earliest(d, self.next_health_check);
        let d = crate::time::earliest(d, self.drain_deadline);
        let d = crate::time::earliest(d, self.admission.next_deadline());
        let d = crate::time::earliest(d, self.admin.as_ref().and_then(Admin::next_deadline));
        crate::time::earliest(d, self.udp.next_release())
    }

    fn on_terminate(&mut self, _registry: &Registry, now: Instant) -> Control {
        if self.stopping {
            self.stop_now();
            return Control::Exit;
        }
        self.start_drain(now);
        Control::Continue
    }

    fn on_reload(&mut self, _registry: &Registry, config: &Config) {
        self.reload(config);
    }

    fn is_finished(&self) -> bool {
        self.stopping && self.conns.is_empty()
    }
}

/// `name -> address` of every service, for the start-up line.
fn describe_services(services: &crate::config::Services) -> String {
    let list: Vec<String> = services
        .list
        .iter()
        .map(|s| {
            let targets: Vec<String> = s.upstream.addresses.iter().map(|a| a.to_string()).collect();
            format!("{} -> {}", s.name, targets.join(" "))
        })
        .collect();
    list.join(", ")
}

/// How long the start waits for the upstream names' first answers (a dead DNS server must not
/// hold the start for long: services whose name is still unresolved answer 502 meanwhile).
const FIRST_RESOLUTION_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// Starts the resolver and gives the pool the first answers for its names.
fn start_resolver(registry: &Registry, pool: &mut Pool) -> std::io::Result<Resolver> {
    let mut resolver = Resolver::start(registry, RESOLVER)?;
    let now = Instant::now();
    for name in pool.names_to_resolve(now) {
        resolver.ask(&name);
    }
    for (name, result) in resolver.wait_all(FIRST_RESOLUTION_WAIT) {
        pool.on_resolved(&name, result, Instant::now());
    }
    Ok(resolver)
}
