//! Server role: TCP connections to the upstream HTTP/1.1 service, connected on demand and kept
//! alive in an idle pool for reuse.
//!
//! Each connection is `Connecting` (non-blocking connect under way), `Busy` (carrying one
//! exchange) or `Idle` (in the pool). An idle connection that becomes readable was closed or
//! spoke out of turn: it is dropped, never reused. Idle ones expire after
//! `upstream.idle_timeout_ms`; at most `upstream.max_idle` are kept.
//!
//! A named upstream is resolved to all its addresses ([`crate::resolve`]): a connect that fails
//! moves on to the next address within the same request, the address that worked is tried first
//! for the next connections, and the name is resolved again once a whole round failed.

use std::io;
use std::net::SocketAddr;
use std::time::Instant;

use mio::{Interest, Registry, Token};
use slab::Slab;

use crate::bridge::tcp::TcpConn;
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
}

pub struct Pool {
    addresses: Candidates,
    max_idle: usize,
    pub conns: Slab<Upstream>,
    /// Idle connection keys, most recently used last.
    idle: Vec<usize>,
}

impl Pool {
    pub fn new(address: HostPort, max_idle: usize) -> Self {
        Pool {
            addresses: Candidates::new(address),
            max_idle,
            conns: Slab::new(),
            idle: Vec::new(),
        }
    }

    /// An idle connection for a new exchange, or a new one being connected.
    pub fn checkout(&mut self, registry: &Registry, owner: usize) -> io::Result<usize> {
        while let Some(key) = self.idle.pop() {
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
        self.connect_new(registry, owner)
    }

    /// A new connection being connected, never one from the pool.
    pub fn connect_new(&mut self, registry: &Registry, owner: usize) -> io::Result<usize> {
        let (tcp, address) = self.connect_to(0)?;
        let entry = self.conns.vacant_entry();
        let key = entry.key();
        entry.insert(Upstream {
            tcp,
            state: UpState::Connecting,
            reused: 0,
            owner,
            address,
            tried: 0,
        });
        self.register(registry, key)?;
        Ok(key)
    }

    /// Starts a non-blocking connect to address number `index` of the upstream (in the order
    /// to try: the one that worked last first).
    fn connect_to(&mut self, index: usize) -> io::Result<(TcpConn, SocketAddr)> {
        let target = self.addresses.target.to_string();
        let ordered = self
            .addresses
            .ordered(Instant::now())
            .map_err(|e| io::Error::new(e.kind(), format!("cannot resolve {target}: {e}")))?;
        let address = ordered.get(index).copied().ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("{target}: no address left"),
            )
        })?;
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
        log::info!(
            "upstream {} at {}: connect failed: {error}",
            self.addresses.target,
            up.address
        );
        let tried = up.tried + 1;
        if tried >= self.addresses.round_len() {
            self.addresses.restart();
            return Ok(false);
        }
        let _ = registry.deregister(&mut up.tcp.stream);
        let (tcp, address) = self.connect_to(tried)?;
        if let Some(up) = self.conns.get_mut(key) {
            *up = Upstream {
                tcp,
                state: UpState::Connecting,
                reused: 0,
                owner: up.owner,
                address,
                tried,
            };
        }
        self.register(registry, key)?;
        Ok(true)
    }

    /// The connect of `key` succeeded: its address is tried first from now on.
    pub fn connected(&mut self, key: usize) {
        if let Some(up) = self.conns.get(key) {
            self.addresses.worked(up.address);
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
        if reusable && clean && self.idle.len() < self.max_idle {
            up.tcp.release_buffers();
            up.state = UpState::Idle { since: now };
            self.idle.push(key);
        } else {
            self.close(registry, key);
        }
    }

    pub fn close(&mut self, registry: &Registry, key: usize) {
        if let Some(mut up) = self.conns.try_remove(key) {
            let _ = registry.deregister(&mut up.tcp.stream);
        }
        self.idle.retain(|k| *k != key);
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

    /// Closes idle connections older than `max_age`; returns when the next one expires.
    pub fn expire_idle(
        &mut self,
        registry: &Registry,
        now: Instant,
        max_age: std::time::Duration,
    ) -> Option<Instant> {
        let expired: Vec<usize> = self
            .idle
            .iter()
            .copied()
            .filter(|k| matches!(self.conns.get(*k).map(|u| u.state), Some(UpState::Idle { since }) if since + max_age <= now))
            .collect();
        for key in expired {
            self.close(registry, key);
        }
        self.idle
            .iter()
            .filter_map(|k| match self.conns.get(*k).map(|u| u.state) {
                Some(UpState::Idle { since }) => Some(since + max_age),
                _ => None,
            })
            .min()
    }

    pub fn idle_count(&self) -> usize {
        self.idle.len()
    }
}
