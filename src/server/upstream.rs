//! Server role: TCP connections to the upstream HTTP/1.1 services, connected on demand and kept
//! alive in an idle pool for reuse, one pool per service ([`Target`]) over one slab (so one
//! token space).
//!
//! Each connection is `Connecting` (non-blocking connect under way), `Busy` (carrying one
//! exchange) or `Idle` (in its service's pool). An idle connection that becomes readable was
//! closed or spoke out of turn: it is dropped, never reused. Idle ones expire after the
//! service's `upstream.idle_timeout_ms`; at most its `upstream.max_idle` are kept.
//!
//! A named upstream is resolved to all its addresses ([`crate::resolve`]) off the reactor
//! thread ([`crate::resolver`]): the pool only ever connects to addresses it already knows,
//! asks for a new resolution when its answer is [`RESOLVE_TTL`](crate::resolve::RESOLVE_TTL)
//! old or a whole round of connects failed, and takes the answer when it comes. A connect that
//! fails moves on to the next address within the same request, and the address that worked is
//! tried first for the next connections.

use std::io;
use std::net::SocketAddr;
use std::time::Instant;

use mio::{Interest, Registry, Token};
use slab::Slab;

use crate::bridge::tcp::TcpConn;
use crate::config::Services;
use crate::reactor::CONN_BASE;
use crate::resolve::{Candidates, HostPort};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpState {
    Connecting,
    Busy,
    Idle { since: Instant },
}

pub struct Upstream {
    pub tcp: TcpConn,
    pub state: UpState,
    /// Exchanges this connection carried (0 for a fresh one).
    pub reused: u32,
    /// The exchange using it (meaningless while idle).
    pub owner: usize,
    /// Where it connects (or connected) to, and its place in the upstream's address list.
    pub address: SocketAddr,
    tried: usize,
    /// The service (its [`Target`]) it belongs to.
    target: usize,
}

/// One service's upstream: its addresses and its idle connections.
pub struct Target {
    addresses: Candidates,
    /// Why the last resolution failed (kept for the 502 until one succeeds).
    resolve_error: Option<String>,
    max_idle: usize,
    idle_timeout: std::time::Duration,
    /// Idle connection keys, most recently used last.
    idle: Vec<usize>,
}

pub struct Pool {
    /// One per service, in the order of [`Services::list`].
    targets: Vec<Target>,
    pub conns: Slab<Upstream>,
}

impl Pool {
    pub fn new(services: &Services) -> Self {
        let targets = services
            .list
            .iter()
            .map(|s| Target {
                addresses: Candidates::new(s.upstream.address.clone()),
                resolve_error: None,
                max_idle: s.upstream.max_idle,
                idle_timeout: s.upstream.idle_timeout,
                idle: Vec::new(),
            })
            .collect();
        Pool {
            targets,
            conns: Slab::new(),
        }
    }

    /// New limits and idle timeouts for the same services (a reload).
    pub fn reconfigure(&mut self, services: &Services) {
        for (t, s) in self.targets.iter_mut().zip(&services.list) {
            t.max_idle = s.upstream.max_idle;
            t.idle_timeout = s.upstream.idle_timeout;
        }
    }

    /// The names whose answer is missing or due for renewal (each once).
    pub fn names_to_resolve(&self, now: Instant) -> Vec<HostPort> {
        let mut names: Vec<HostPort> = Vec::new();
        for t in &self.targets {
            if t.addresses.wants_resolution(now) && !names.contains(&t.addresses.target) {
                names.push(t.addresses.target.clone());
            }
        }
        names
    }

    /// A resolution of `name` finished: every service naming it takes the answer. A failed or
    /// empty one keeps the addresses known so far.
    pub fn on_resolved(
        &mut self,
        name: &HostPort,
        result: io::Result<Vec<SocketAddr>>,
        now: Instant,
    ) {
        for t in self
            .targets
            .iter_mut()
            .filter(|t| t.addresses.target == *name)
        {
            match &result {
                Ok(found) if !found.is_empty() => {
                    t.addresses.resolved(found, now);
                    t.resolve_error = None;
                }
                Ok(_) => t.resolve_error = Some(format!("{name} resolves to no address")),
                Err(e) => {
                    log::warn!("cannot resolve upstream {name}: {e}");
                    t.resolve_error = Some(format!("cannot resolve {name}: {e}"));
                }
            }
        }
    }

    fn target(&mut self, index: usize) -> io::Result<&mut Target> {
        self.targets
            .get_mut(index)
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no such service"))
    }

    /// An idle connection of service `target` for a new exchange, or a new one being connected.
    pub fn checkout(
        &mut self,
        registry: &Registry,
        owner: usize,
        target: usize,
    ) -> io::Result<usize> {
        while let Some(key) = self.target(target)?.idle.pop() {
            let Some(up) = self.conns.get_mut(key) else {
                continue;
            };
            up.tcp.fill();
            if up.tcp.eof || up.tcp.is_broken() || !up.tcp.input.is_empty() {
                self.close(registry, key);
                continue;
            }
            up.state = UpState::Busy;
            up.reused += 1;
            up.owner = owner;
            return Ok(key);
        }
        self.connect_new(registry, owner, target)
    }

    /// A new connection of service `target` being connected, never one from the pool.
    pub fn connect_new(
        &mut self,
        registry: &Registry,
        owner: usize,
        target: usize,
    ) -> io::Result<usize> {
        let (tcp, address) = self.connect_to(target, 0)?;
        let entry = self.conns.vacant_entry();
        let key = entry.key();
        entry.insert(Upstream {
            tcp,
            state: UpState::Connecting,
            reused: 0,
            owner,
            address,
            tried: 0,
            target,
        });
        self.register(registry, key)?;
        Ok(key)
    }

    /// Starts a non-blocking connect to address number `index` of service `target`'s upstream
    /// (in the order to try: the one that worked last first).
    fn connect_to(&mut self, target: usize, index: usize) -> io::Result<(TcpConn, SocketAddr)> {
        let t = self.target(target)?;
        let known = t.addresses.known();
        let address = match (known.get(index), &t.resolve_error) {
            (Some(a), _) => *a,
            (None, Some(why)) if known.is_empty() => {
                return Err(io::Error::new(io::ErrorKind::NotFound, why.clone()))
            }
            (None, _) if known.is_empty() => {
                let name = &t.addresses.target;
                let why = format!("{name}: not resolved yet");
                return Err(io::Error::new(io::ErrorKind::NotFound, why));
            }
            (None, _) => {
                let why = format!("{}: no address left", t.addresses.target);
                return Err(io::Error::new(io::ErrorKind::NotFound, why));
            }
        };
        let stream = mio::net::TcpStream::connect(address)?;
        Ok((TcpConn::new(stream), address))
    }

    fn register(&mut self, registry: &Registry, key: usize) -> io::Result<()> {
        let Some(up) = self.conns.get_mut(key) else {
            return Ok(());
        };
        registry.register(
            &mut up.tcp.stream,
            Token(CONN_BASE + key),
            Interest::READABLE | Interest::WRITABLE,
        )
    }

    /// The connect of `key` failed with `error`: retries on the next address when the list has
    /// one this checkout did not try yet (`Ok(true)`); else the error stands and the next
    /// checkout resolves the name again.
    pub fn connect_failed(
        &mut self,
        registry: &Registry,
        key: usize,
        error: &io::Error,
    ) -> io::Result<bool> {
        let Some(up) = self.conns.get_mut(key) else {
            return Ok(false);
        };
        let (target, failed_at) = (up.target, up.address);
        let tried = up.tried + 1;
        let _ = registry.deregister(&mut up.tcp.stream);
        let addresses = &mut self.target(target)?.addresses;
        log::info!(
            "upstream {} at {failed_at}: connect failed: {error}",
            addresses.target
        );
        if tried >= addresses.round_len() {
            addresses.restart();
            return Ok(false);
        }
        let (tcp, address) = self.connect_to(target, tried)?;
        if let Some(up) = self.conns.get_mut(key) {
            *up = Upstream {
                tcp,
                state: UpState::Connecting,
                reused: 0,
                owner: up.owner,
                address,
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
            if let Some(t) = self.targets.get_mut(up.target) {
                t.addresses.worked(up.address);
            }
        }
    }

    /// Returns a connection after an exchange: pooled if `reusable`, closed otherwise.
    pub fn checkin(&mut self, registry: &Registry, key: usize, reusable: bool, now: Instant) {
        let Some(up) = self.conns.get_mut(key) else {
            return;
        };
        let clean = up.tcp.input.is_empty()
            && up.tcp.pending_output() == 0
            && !up.tcp.eof
            && !up.tcp.is_broken();
        let target = self.targets.get_mut(up.target);
        if let Some(t) = target.filter(|t| reusable && clean && t.idle.len() < t.max_idle) {
            up.tcp.release_buffers();
            up.state = UpState::Idle { since: now };
            t.idle.push(key);
        } else {
            self.close(registry, key);
        }
    }

    pub fn close(&mut self, registry: &Registry, key: usize) {
        if let Some(mut up) = self.conns.try_remove(key) {
            let _ = registry.deregister(&mut up.tcp.stream);
            if let Some(t) = self.targets.get_mut(up.target) {
                t.idle.retain(|k| *k != key);
            }
        }
    }

    /// An event on an idle connection: the upstream closed it or sent something unasked.
    pub fn on_idle_event(&mut self, registry: &Registry, key: usize) {
        let Some(up) = self.conns.get_mut(key) else {
            return;
        };
        up.tcp.fill();
        if up.tcp.eof || up.tcp.is_broken() || !up.tcp.input.is_empty() {
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
