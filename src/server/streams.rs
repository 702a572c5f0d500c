//! Server role, requests in: lends the sans-IO [`Requests`] table what it works with (the
//! sessions, the upstream pool as each exchange's port, the clock, the counters), and keeps the
//! sessions' connection IDs current.

use std::time::Instant;

use mio::Registry;
use slab::Slab;

use super::exchange::port::UpstreamPort;
use super::peer::PeerConn;
use super::pool_port::PoolPort;
use super::requests::{Env, Requests, Upstreams};
use super::upstream::Pool;
use super::ServerProxy;

/// The pool as the exchanges' upstream ports (each exchange checks connections out in its
/// own name).
pub(super) struct PoolPorts<'a> {
    pool: &'a mut Pool,
    registry: &'a Registry,
}

impl Upstreams for PoolPorts<'_> {
    fn with_port<T>(
        &mut self,
        owner: usize,
        service: usize,
        now: Instant,
        f: impl FnOnce(&mut dyn UpstreamPort) -> T,
    ) -> T {
        f(&mut PoolPort {
            pool: self.pool,
            registry: self.registry,
            owner,
            target: service,
            now,
        })
    }
}

impl ServerProxy {
    /// After input: announce new sessions, keep their connection IDs current, and let the
    /// requests take the sessions' HTTP/3 events.
    pub(super) fn poll_sessions(&mut self, registry: &Registry, now: Instant) {
        let keys: Vec<usize> = self.conns.iter().map(|(k, _)| k).collect();
        for ck in keys {
            if let Some(pc) = self.conns.get_mut(ck) {
                pc.announce_if_usable(now);
                self.routes.refresh(ck, pc);
            }
        }
        self.with_requests(registry, now, |requests, conns, env| {
            requests.poll_sessions(conns, env)
        });
    }

    /// Runs `f` on the requests with the sessions and what they work with this turn.
    pub(super) fn with_requests<T>(
        &mut self,
        registry: &Registry,
        now: Instant,
        f: impl FnOnce(&mut Requests, &mut Slab<PeerConn>, &mut Env<PoolPorts<'_>>) -> T,
    ) -> T {
        let mut ports = PoolPorts {
            pool: &mut self.pool,
            registry,
        };
        let mut env = Env {
            now,
            cfg: &self.cfg,
            metrics: &mut self.metrics,
            upstreams: &mut ports,
            stopping: self.stopping,
        };
        f(&mut self.requests, &mut self.conns, &mut env)
    }
}
