//! Server role: TCP connections to the upstream HTTP/1.1 services, connected on demand and kept
//! alive in an idle pool for reuse, one pool per service ([`Target`]) over one slab (so one
//! token space).
//!
//! Each connection is `Connecting` (non-blocking connect under way), `Busy` (carrying one
//! exchange) or `Idle` (in its service's pool). An idle connection that becomes readable was
//! closed or spoke out of turn: it is dropped, never reused. Idle ones expire after the
//! service's `upstream.idle_timeout_ms`; at most its `upstream.max_idle` are kept.
//!
//! A service's CONNECT destinations (`connect_to`) are targets of their own, kept apart from
//! the services ([`TargetId::Destination`], see `targets`): their names are resolved ahead of
//! use like the upstreams', their connections are always new and never pooled.
//!
//! Which address a new connection goes to is the target's [`super::endpoints::Endpoints`]'
//! decision: its names resolved off the reactor thread ([`crate::resolver`]), balanced across
//! the healthy addresses, an address whose connect fails taken out for a while. A connect that
//! fails (or times out) moves on to another healthy address within the same request, before
//! anything was sent.

use std::io;
use std::net::SocketAddr;
use std::time::Instant;

use mio::{Interest, Registry, Token};
use slab::Slab;

use super::health::Probe;
use super::targets::{Target, TargetId};
use crate::bridge::tcp::TcpConn;
use crate::config::Services;
use crate::reactor::CONN_BASE;
use crate::resolve::HostPort;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpState {
    Connecting,
    Busy,
    Idle {
        since: Instant,
    },
    /// Its connect failed and no address was left to try: out of use, awaiting close.
    Failed,
    /// A health check's own connection ([`super::health`]).
    Probe(Probe),
}

pub struct Upstream {
    pub tcp: TcpConn,
    pub state: UpState,
    /// Exchanges this connection carried (0 for a fresh one).
    pub reused: u32,
    /// The exchange using it (meaningless while idle).
    pub owner: usize,
    /// Where it connects (or connected) to.
    pub address: SocketAddr,
    /// The addresses this connection's request tried so far (the last one is `address`).
    tried: Vec<SocketAddr>,
    /// The service (or CONNECT destination) it belongs to.
    pub(super) target: TargetId,
}

impl Upstream {
    /// A health check's connection to `address` of service `target`.
    pub(super) fn probe(
        tcp: TcpConn,
        address: SocketAddr,
        target: usize,
        deadline: Instant,
    ) -> Self {
        Upstream {
            tcp,
            state: UpState::Probe(Probe { deadline }),
            reused: 0,
            owner: usize::MAX,
            address,
            tried: Vec::new(),
            target: TargetId::Service(target),
        }
    }
}

pub struct Pool {
    /// One per service, in the order of [`Services::list`].
    pub(super) targets: Vec<Target>,
    /// Every CONNECT destination any configuration named, each with its name (append-only:
    /// a [`TargetId::Destination`] stays valid across reloads).
    pub(super) destinations: Vec<(HostPort, Target)>,
    /// Health-check connections open now.
    pub(super) probes_in_flight: usize,
    pub conns: Slab<Upstream>,
}

impl Pool {
    pub fn new(services: &Services) -> Self {
        let targets = services.list.iter().map(Target::new).collect();
        let mut pool = Pool {
            targets,
            destinations: Vec::new(),
            probes_in_flight: 0,
            conns: Slab::new(),
        };
        pool.add_destinations(services);
        pool
    }

    /// New limits and idle timeouts for the same services (a reload).
    /// The services after a reload: the same ones first (new settings and addresses; an
    /// address kept keeps its health and idle connections), then any new ones.
    pub fn reconfigure(&mut self, services: &Services) {
        for (t, s) in self.targets.iter_mut().zip(&services.list) {
            t.max_idle = s.upstream.max_idle;
            t.idle_timeout = s.upstream.idle_timeout;
            t.endpoints.set_balance(s.upstream.balance);
            t.endpoints.set_targets(&s.upstream.addresses);
            // A retired service takes no new request: its addresses need no more checks.
            t.health_check = s.upstream.health_check.clone().filter(|_| !s.retired);
            t.endpoints.set_checked(t.health_check.is_some());
        }
        for s in services.list.iter().skip(self.targets.len()) {
            self.targets.push(Target::new(s));
        }
        self.add_destinations(services);
    }

    /// Whether a connection (in use or idle) belongs to service number `target`.
    pub fn uses_target(&self, target: usize) -> bool {
        self.conns
            .iter()
            .any(|(_, u)| u.target == TargetId::Service(target))
    }

    /// A reload moved the services (service `i` is now number `moved[i]`, see
    /// [`Services::merged_for_reload`]): each pool goes with its service, new services get a
    /// new one, then every service takes its settings.
    pub fn services_moved(&mut self, moved: &[Option<usize>], services: &Services) {
        let mut old: Vec<Option<Target>> = std::mem::take(&mut self.targets)
            .into_iter()
            .map(Some)
            .collect();
        let mut placed: Vec<Option<Target>> = services.list.iter().map(|_| None).collect();
        for (i, to) in moved.iter().enumerate() {
            if let (Some(to), Some(t)) = (to, old.get_mut(i).and_then(Option::take)) {
                placed[*to] = Some(t);
            }
        }
        self.targets = placed
            .into_iter()
            .zip(&services.list)
            .map(|(t, s)| t.unwrap_or_else(|| Target::new(s)))
            .collect();
        for (_, up) in self.conns.iter_mut() {
            if let TargetId::Service(from) = up.target {
                if let Some(Some(to)) = moved.get(from) {
                    up.target = TargetId::Service(*to);
                }
            }
        }
        self.reconfigure(services);
    }

    /// The names whose answer is missing or due for renewal (each once).
    pub fn names_to_resolve(&self, now: Instant) -> Vec<HostPort> {
        let mut names: Vec<HostPort> = Vec::new();
        for name in self
            .all_targets()
            .flat_map(|t| t.endpoints.names_to_resolve(now))
        {
            if !names.contains(name) {
                names.push(name.clone());
            }
        }
        names
    }

    /// A resolution of `name` finished: every service naming it takes the answer.
    pub fn on_resolved(
        &mut self,
        name: &HostPort,
        result: io::Result<Vec<SocketAddr>>,
        now: Instant,
    ) {
        if let Err(e) = &result {
            log::warn!("cannot resolve upstream {name}: {e}");
        }
        let destinations = self.destinations.iter_mut().map(|(_, t)| t);
        for t in self.targets.iter_mut().chain(destinations) {
            t.endpoints.on_resolved(name, &result, now);
        }
    }

    /// Each service's addresses and whether they take new connections now (for metrics).
    pub fn health(&self, now: Instant) -> Vec<Vec<(SocketAddr, bool)>> {
        self.targets
            .iter()
            .map(|t| t.endpoints.health(now))
            .collect()
    }

    /// A connection of service `target` for a new exchange: the address is chosen first (by
    /// the service's balance, among the healthy ones), then an idle connection to it is
    /// reused, or a new one is connected.
    pub fn checkout(
        &mut self,
        registry: &Registry,
        owner: usize,
        service: usize,
    ) -> io::Result<usize> {
        let target = TargetId::Service(service);
        let address = self.choose(target, &[])?;
        while let Some(key) = self.take_idle(target, address) {
            let Some(up) = self.conns.get_mut(key) else {
                continue;
            };
            up.tcp.fill();
            if up.tcp.eof || up.tcp.is_broken() || !up.tcp.input().is_empty() {
                self.close(registry, key);
                continue;
            }
            up.state = UpState::Busy;
            up.reused += 1;
            up.owner = owner;
            self.target(target)?.endpoints.acquire(address);
            return Ok(key);
        }
        self.connect_at(registry, owner, target, address, Vec::new())
    }

    /// A new connection of service `service` being connected, never one from the pool.
    pub fn connect_new(
        &mut self,
        registry: &Registry,
        owner: usize,
        service: usize,
    ) -> io::Result<usize> {
        let target = TargetId::Service(service);
        let address = self.choose(target, &[])?;
        self.connect_at(registry, owner, target, address, Vec::new())
    }

    /// The address `target`'s endpoints choose, not one of `tried`.
    pub(super) fn choose(
        &mut self,
        target: TargetId,
        tried: &[SocketAddr],
    ) -> io::Result<SocketAddr> {
        self.target(target)?
            .endpoints
            .choose(Instant::now(), tried)
            .map_err(|why| io::Error::new(io::ErrorKind::NotFound, why))
    }

    /// The most recently pooled idle connection of service `target` to `address`, out of the
    /// idle list.
    fn take_idle(&mut self, target: TargetId, address: SocketAddr) -> Option<usize> {
        let t = match target {
            TargetId::Service(i) => self.targets.get_mut(i)?,
            TargetId::Destination(_) => return None,
        };
        let conns = &self.conns;
        let pos = t
            .idle
            .iter()
            .rposition(|k| conns.get(*k).is_some_and(|u| u.address == address))?;
        Some(t.idle.remove(pos))
    }

    /// Starts a connect to `address` for `owner`; `tried` are the addresses its request tried
    /// before.
    pub(super) fn connect_at(
        &mut self,
        registry: &Registry,
        owner: usize,
        target: TargetId,
        address: SocketAddr,
        mut tried: Vec<SocketAddr>,
    ) -> io::Result<usize> {
        let tcp = self.open(target, address)?;
        tried.push(address);
        let key = self.conns.insert(Upstream {
            tcp,
            state: UpState::Connecting,
            reused: 0,
            owner,
            address,
            tried,
            target,
        });
        self.register(registry, key)?;
        Ok(key)
    }

    /// A non-blocking connect to `address` of service `target`, counted as in use from now on
    /// (a connect refused at once takes the address out).
    fn open(&mut self, target: TargetId, address: SocketAddr) -> io::Result<TcpConn> {
        let endpoints = &mut self.target(target)?.endpoints;
        match mio::net::TcpStream::connect(address) {
            Ok(stream) => {
                endpoints.acquire(address);
                Ok(TcpConn::new(stream))
            }
            Err(e) => {
                endpoints.failed(address, &e.to_string(), Instant::now());
                Err(e)
            }
        }
    }

    pub(super) fn register(&mut self, registry: &Registry, key: usize) -> io::Result<()> {
        let Some(up) = self.conns.get_mut(key) else {
            return Ok(());
        };
        registry.register(
            &mut up.tcp.stream,
            Token(CONN_BASE + key),
            Interest::READABLE | Interest::WRITABLE,
        )
    }

    /// The connect of `key` failed (or timed out) with `error`: its address is taken out for a
    /// while, and the request moves to another healthy address it did not try yet: `key` is
    /// then a new connection being connected (`Ok(true)`). With none left the error stands
    /// (`Ok(false)`), and once every address failed the names are resolved again.
    pub fn connect_failed(
        &mut self,
        registry: &Registry,
        key: usize,
        error: &io::Error,
    ) -> io::Result<bool> {
        let Some(up) = self.conns.get_mut(key) else {
            return Ok(false);
        };
        let (target, owner, failed_at) = (up.target, up.owner, up.address);
        let tried = std::mem::take(&mut up.tried);
        up.state = UpState::Failed;
        let _ = registry.deregister(&mut up.tcp.stream);
        let endpoints = &mut self.target(target)?.endpoints;
        endpoints.release(failed_at);
        endpoints.failed(failed_at, &error.to_string(), Instant::now());
        let Ok(next) = self.choose(target, &tried) else {
            self.target(target)?.endpoints.restart_names();
            return Ok(false);
        };
        // The new attempt takes the same key: the exchange holds it.
        let tcp = self.open(target, next)?;
        let mut tried = tried;
        tried.push(next);
        if let Some(up) = self.conns.get_mut(key) {
            *up = Upstream {
                tcp,
                state: UpState::Connecting,
                reused: 0,
                owner,
                address: next,
                tried,
                target,
            };
        }
        self.register(registry, key)?;
        Ok(true)
    }

    /// The connect of `key` succeeded: its address is tried first from now on.
    pub fn connected(&mut self, key: usize) {
        if let Some(up) = self.conns.get(key) {
            let address = up.address;
            if let Some(t) = self.target_mut(up.target) {
                t.endpoints.succeeded(address);
            }
        }
    }

    /// Returns a connection after an exchange: pooled if `reusable`, closed otherwise.
    pub fn checkin(&mut self, registry: &Registry, key: usize, reusable: bool, now: Instant) {
        let Some(up) = self.conns.get_mut(key) else {
            return;
        };
        let clean = up.tcp.input().is_empty()
            && up.tcp.pending_output() == 0
            && !up.tcp.eof
            && !up.tcp.is_broken();
        let target = match up.target {
            TargetId::Service(i) => self.targets.get_mut(i),
            TargetId::Destination(_) => None,
        };
        if let Some(t) = target.filter(|t| reusable && clean && t.idle.len() < t.max_idle) {
            up.tcp.release_buffers();
            up.state = UpState::Idle { since: now };
            t.idle.push(key);
            t.endpoints.release(up.address);
        } else {
            self.close(registry, key);
        }
    }

    pub fn close(&mut self, registry: &Registry, key: usize) {
        if let Some(mut up) = self.conns.try_remove(key) {
            let _ = registry.deregister(&mut up.tcp.stream);
            if let Some(t) = self.target_mut(up.target) {
                t.idle.retain(|k| *k != key);
                if matches!(up.state, UpState::Connecting | UpState::Busy) {
                    t.endpoints.release(up.address);
                }
            }
        }
    }

    /// An event on an idle connection: the upstream closed it or sent something unasked.
    pub fn on_idle_event(&mut self, registry: &Registry, key: usize) {
        let Some(up) = self.conns.get_mut(key) else {
            return;
        };
        up.tcp.fill();
        if up.tcp.eof || up.tcp.is_broken() || !up.tcp.input().is_empty() {
            log::debug!("idle upstream connection closed by the upstream");
            self.close(registry, key);
            return;
        }
        up.tcp.release_buffers();
    }

    /// Closes idle connections older than their service's idle timeout; returns when the next
    /// one expires.
    pub fn expire_idle(&mut self, registry: &Registry, now: Instant) -> Option<Instant> {
        let mut expired = Vec::new();
        let mut next: Option<Instant> = None;
        for t in &self.targets {
            for key in &t.idle {
                if let Some(UpState::Idle { since }) = self.conns.get(*key).map(|u| u.state) {
                    let at = since + t.idle_timeout;
                    if at <= now {
                        expired.push(*key);
                    } else {
                        next = crate::time::earliest(next, Some(at));
                    }
                }
            }
        }
        for key in expired {
            self.close(registry, key);
        }
        next
    }

    pub fn idle_count(&self) -> usize {
        self.targets.iter().map(|t| t.idle.len()).sum()
    }
}
