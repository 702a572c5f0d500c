//! The names of per-address peers (`sessions: per_address`): asked of the resolver thread at
//! start and every [`RESOLVE_TTL`], a session made for each new address and the links of
//! addresses gone drained; a failed lookup keeps the links there are and asks again later.

use std::net::SocketAddr;
use std::time::Instant;

use mio::Registry;

use super::{Peers, RESOLVE_RETRY};
use crate::reactor::RESOLVER;
use crate::resolve::{HostPort, RESOLVE_TTL};
use crate::resolver::Resolver;

/// A per-address peer's name, renewed like upstream names.
pub(super) struct NameState {
    pub(super) target: HostPort,
    pub(super) resolved_at: Option<Instant>,
    /// The next lookup is asked no earlier than this.
    pub(super) next_lookup: Instant,
    /// Why it has no address yet (for 503 answers and `/health`).
    pub(super) problem: String,
}

impl Peers {
    pub(super) fn resolver_mut(&mut self, registry: &Registry) -> std::io::Result<&mut Resolver> {
        if self.resolver.is_none() {
            self.resolver = Some(Resolver::start(registry, RESOLVER)?);
        }
        self.resolver
            .as_mut()
            .ok_or_else(|| std::io::Error::other("resolver not started"))
    }

    /// A lookup of a per-address peer's name finished: a session for each new address, the
    /// links of addresses no longer there drained. A failed lookup keeps the links it has.
    pub(super) fn on_resolved(
        &mut self,
        target: &HostPort,
        found: std::io::Result<Vec<SocketAddr>>,
        registry: &Registry,
        now: Instant,
    ) {
        for i in 0..self.peers.len() {
            let entry = &mut self.peers[i];
            let Some(name) = entry.name.as_mut().filter(|n| &n.target == target) else {
                continue;
            };
            let found = match &found {
                Ok(list) if !list.is_empty() => list.clone(),
                Ok(_) => {
                    name.problem = format!("{target} has no address");
                    Vec::new()
                }
                Err(e) => {
                    name.problem = format!("cannot resolve {target}: {e}");
                    Vec::new()
                }
            };
            if found.is_empty() {
                log::warn!(
                    "peer {}: {}; asking again in {} s",
                    entry.config.name,
                    name.problem,
                    RESOLVE_RETRY.as_secs()
                );
                name.next_lookup = now + RESOLVE_RETRY;
                continue;
            }
            name.resolved_at = Some(now);
            name.next_lookup = now + RESOLVE_TTL;
            self.follow_addresses(i, &found, registry, now);
        }
    }

    /// Makes peer `i`'s links match `found`: one per address.
    fn follow_addresses(
        &mut self,
        i: usize,
        found: &[SocketAddr],
        registry: &Registry,
        now: Instant,
    ) {
        let slots = &mut self.slots;
        let entry = &mut self.peers[i];
        entry.links.retain(|key| {
            let Some(slot) = slots.get_mut(*key) else {
                return false;
            };
            let kept = slot.address.is_some_and(|a| found.contains(&a));
            if !kept {
                log::info!(
                    "peer {}: {:?} left the name: its session is drained",
                    slot.link.name,
                    slot.address
                );
                slot.removed = true;
            }
            kept
        });
        let config = entry.config.clone();
        for addr in found {
            let known = self.peers[i]
                .links
                .iter()
                .any(|k| self.slots.get(*k).is_some_and(|s| s.address == Some(*addr)));
            if known {
                continue;
            }
            match self.make_link(&config, Some(*addr), registry, now) {
                Ok(key) => {
                    log::info!("peer {}: a session to {addr}", config.name);
                    self.peers[i].links.push(key);
                }
                Err(e) => log::error!("peer {}: no session to {addr}: {e}", config.name),
            }
        }
    }

    /// Takes the lookups finished since the last turn and asks for the names due again.
    pub(super) fn refresh_names(&mut self, registry: &Registry, now: Instant) {
        let Some(resolver) = self.resolver.as_mut() else {
            return;
        };
        let answers = resolver.answers();
        for (target, found) in answers {
            self.on_resolved(&target, found, registry, now);
        }
        let due: Vec<HostPort> = self
            .peers
            .iter()
            .filter_map(|p| p.name.as_ref())
            .filter(|n| n.next_lookup <= now)
            .map(|n| n.target.clone())
            .collect();
        if let Some(resolver) = self.resolver.as_mut() {
            for target in &due {
                resolver.ask(target);
            }
        }
        for n in self.peers.iter_mut().filter_map(|p| p.name.as_mut()) {
            if due.contains(&n.target) {
                n.next_lookup = now + RESOLVE_RETRY;
            }
        }
    }
}
