//! The client's sessions, one per configured peer: which one a new request uses, and the
//! reactor plumbing of each (its UDP socket's token, its read backlog, its timers).
//!
//! A peer is *healthy* while its session is up, not going away, and the peer not silent beyond
//! what an alive peer shows (keepalives or liveness probes go out at least that often and an
//! answer takes a few probe timeouts; `peer_silence_ms` overrides it). A group's policy picks
//! among healthy peers ([`pick`]): `failover` the first in order, `spread` the one with the
//! fewest requests in flight; with none healthy, a suspect one (up but silent) still beats
//! waiting. SIGHUP adds peers at once and drains removed ones: they take no new request and
//! close once their last stream ended.

use std::time::Instant;

use mio::{Registry, Token};
use slab::Slab;

use super::downstreams::Links;
use super::link::{LinkEvent, PeerLink};
use crate::config::{ClientConfig, PeerGroup, Policy};
use crate::metrics::{PeerFigures, Snapshot};
use crate::quic::session::Session;
use crate::reactor::backlog::Backlog;
use crate::reactor::{PEER_UDP_BASE, RESOLVER};

/// Most sessions one client keeps (the token space between `PEER_UDP_BASE` and `RESOLVER`).
pub const MAX_LINKS: usize = RESOLVER.0 - PEER_UDP_BASE;

/// How a link can serve a new request right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    Healthy,
    /// Up, but its peer has been silent beyond what an alive peer shows.
    Suspect,
    /// No session that takes new requests.
    Down,
}

/// The link for a new request among `candidates` (in the group's order): the policy's choice
/// among the healthy ones, else among the suspect ones; `None` when all are down.
pub fn pick(
    candidates: &[(usize, Health)],
    policy: Policy,
    load: &dyn Fn(usize) -> usize,
) -> Option<usize> {
    let among = |wanted: Health| {
        let mut keys = candidates
            .iter()
            .filter(|(_, h)| *h == wanted)
            .map(|(k, _)| *k);
        match policy {
            Policy::Failover => keys.next(),
            Policy::Spread => keys.min_by_key(|k| load(*k)),
        }
    };
    among(Health::Healthy).or_else(|| among(Health::Suspect))
}

struct PeerSlot {
    link: PeerLink,
    /// The UDP socket reported readiness, or its last read stopped at its cap.
    backlog: Backlog,
    /// Why it takes no requests (refreshed each turn while so), for 503 answers.
    why_down: String,
    /// Removed by a reload: no new requests; closed and dropped once its streams ended.
    removed: bool,
    /// Request streams opened on it.
    requests: u64,
}

/// Every peer's link, in configuration order.
pub struct Peers {
    slots: Slab<PeerSlot>,
    /// Keys in configuration order (removed peers left out).
    order: Vec<usize>,
}

impl Peers {
    /// A link per peer of `cfg`, each starting its session at once.
    pub fn new(
        cfg: &ClientConfig,
        registry: &Registry,
    ) -> Result<Self, Box<dyn std::error::Error>> {
        let mut peers = Peers {
            slots: Slab::new(),
            order: Vec::new(),
        };
        peers.add_missing(cfg, registry, Instant::now())?;
        if let Some(first) = peers.slots.iter().next() {
            log::info!("{}", first.1.link.describe_loss_hiding());
        }
        Ok(peers)
    }

    /// Adds a link for each peer of `cfg` not yet known (by name).
    fn add_missing(
        &mut self,
        cfg: &ClientConfig,
        registry: &Registry,
        now: Instant,
    ) -> Result<(), Box<dyn std::error::Error>> {
        for peer in &cfg.peers {
            if self.find(&peer.name).is_some() {
                continue;
            }
            if self.slots.len() >= MAX_LINKS {
                return Err(format!("peers: at most {MAX_LINKS} sessions").into());
            }
            let key = self.slots.vacant_key();
            let mut link = PeerLink::new(cfg, peer, Token(PEER_UDP_BASE + key))?;
            link.handle_timeout(registry, now);
            self.slots.insert(PeerSlot {
                link,
                backlog: Backlog::default(),
                why_down: String::new(),
                removed: false,
                requests: 0,
            });
            self.order.push(key);
        }
        Ok(())
    }

    fn find(&self, name: &str) -> Option<usize> {
        self.order
            .iter()
            .copied()
            .find(|k| self.slots.get(*k).is_some_and(|s| s.link.name == name))
    }

    /// The link whose UDP socket `token` is.
    pub fn owner(&self, token: Token) -> Option<usize> {
        let key = token.0.checked_sub(PEER_UDP_BASE)?;
        self.slots.contains(key).then_some(key)
    }

    /// Readiness of link `key`'s socket.
    pub fn on_socket_event(&mut self, key: usize, readable: bool, writable: bool, now: Instant) {
        let Some(slot) = self.slots.get_mut(key) else {
            return;
        };
        if readable {
            slot.backlog.mark();
        }
        if writable {
            slot.link.handle_writable(now);
        }
    }

    /// Reads the sockets that have datagrams, runs every link's timers and notices what
    /// changed: the events, by link.
    pub fn step(
        &mut self,
        registry: &Registry,
        now: Instant,
        metrics: &mut crate::metrics::Metrics,
    ) -> Vec<(usize, LinkEvent)> {
        let mut events = Vec::new();
        for (key, slot) in self.slots.iter_mut() {
            if slot.backlog.take() {
                let drain = slot.link.handle_readable(now);
                slot.backlog.note(drain);
            }
            slot.link.handle_timeout(registry, now);
            match slot.link.update(now, metrics) {
                LinkEvent::None => {}
                event => events.push((key, event)),
            }
            if !slot.link.accepts_requests() {
                slot.why_down = slot.link.why_down(now);
            }
        }
        events
    }

    /// Some link takes new requests.
    pub fn any_accepts(&self) -> bool {
        self.slots
            .iter()
            .any(|(_, s)| !s.removed && s.link.accepts_requests())
    }

    /// Closes links that went away (GOAWAY, or removed by a reload) once their last stream
    /// ended; drops removed ones once closed.
    pub fn retire_idle(&mut self, streams_on: impl Fn(usize) -> usize) {
        let mut gone = Vec::new();
        for (key, slot) in self.slots.iter_mut() {
            let open = streams_on(key);
            slot.link.retire_if_idle(open);
            if slot.removed && open == 0 {
                slot.link.close();
                if slot.link.is_closed() {
                    gone.push(key);
                }
            }
        }
        for key in gone {
            let mut slot = self.slots.remove(key);
            slot.link.send_final();
            log::info!("peer {} removed", slot.link.name);
        }
    }

    /// Sends what every session has to send; true when one stopped at its send quantum.
    pub fn flush(&mut self, now: Instant) -> bool {
        let mut pending = false;
        for (_, slot) in self.slots.iter_mut() {
            pending |= slot.link.flush(now);
        }
        pending
    }

    /// Reads left at their cap: come back at once.
    pub fn has_backlog(&self) -> bool {
        self.slots.iter().any(|(_, s)| s.backlog.is_pending())
    }

    pub fn next_deadline(&self) -> Option<Instant> {
        self.slots
            .iter()
            .filter_map(|(_, s)| s.link.next_deadline())
            .min()
    }

    /// Graceful stop: every session closes, none reconnects.
    pub fn close(&mut self) {
        for (_, slot) in self.slots.iter_mut() {
            slot.link.close();
        }
    }

    /// The sessions' last packets before the process exits.
    pub fn send_final(&mut self) {
        for (_, slot) in self.slots.iter_mut() {
            slot.link.send_final();
        }
    }

    pub fn is_closed(&self) -> bool {
        self.slots.iter().all(|(_, s)| s.link.is_closed())
    }

    /// Every configured peer has its session up.
    pub fn all_up(&self) -> bool {
        self.active().all(|(_, s)| s.link.is_up())
    }

    fn active(&self) -> impl Iterator<Item = (usize, &PeerSlot)> {
        self.order
            .iter()
            .filter_map(|k| self.slots.get(*k).map(|s| (*k, s)))
    }

    /// One line per peer for `/health`.
    pub fn health_lines(&self, now: Instant) -> String {
        let mut out = String::new();
        for (_, slot) in self.active() {
            let link = &slot.link;
            let line = if link.is_healthy() {
                format!("peer {}: session up\n", link.name)
            } else if link.is_up() {
                format!(
                    "peer {}: session up but {}\n",
                    link.name,
                    link.why_down(now)
                )
            } else {
                let c = link.contact_figures();
                format!(
                    "peer {}: session down ({}, {} attempt(s), {} failed): {}\n",
                    link.name,
                    c.state,
                    c.attempts,
                    c.failures,
                    link.why_down(now)
                )
            };
            out.push_str(&line);
        }
        out
    }

    /// Live figures for the metrics endpoint.
    pub fn snapshot(&self, snap: &mut Snapshot, now: Instant) {
        for (_, slot) in self.active() {
            slot.link.snapshot(snap, now);
            snap.peers.push(PeerFigures {
                name: slot.link.name.clone(),
                contact: slot.link.contact_figures(),
                up_since: slot.link.up_since(),
                healthy: slot.link.is_healthy(),
                requests: slot.requests,
            });
        }
    }

    /// SIGHUP: peers new in `cfg` get a link now; peers it no longer names take no new
    /// request and close once their streams ended. Unchanged peers keep their session.
    pub fn reload(&mut self, cfg: &ClientConfig, registry: &Registry, now: Instant) {
        let keep = |name: &str| cfg.peers.iter().any(|p| p.name == name);
        for key in self.order.clone() {
            let Some(slot) = self.slots.get_mut(key) else {
                continue;
            };
            if !keep(&slot.link.name) {
                log::info!(
                    "SIGHUP: peer {} removed: it takes no new requests and closes once its requests finished",
                    slot.link.name
                );
                slot.removed = true;
                self.order.retain(|k| *k != key);
            }
        }
        let before = self.order.len();
        if let Err(e) = self.add_missing(cfg, registry, now) {
            log::error!("SIGHUP: {e}");
        }
        for key in &self.order[before..] {
            if let Some(s) = self.slots.get(*key) {
                log::info!("SIGHUP: peer {} added", s.link.name);
            }
        }
        let order: Vec<usize> = cfg
            .peers
            .iter()
            .filter_map(|p| self.find(&p.name))
            .collect();
        self.order = order;
    }

    /// Each candidate link of `group` (every peer when `None`) with its health, in order.
    fn candidates(&self, group: Option<&PeerGroup>) -> Vec<(usize, Health)> {
        let health = |s: &PeerSlot| match () {
            _ if s.link.is_healthy() => Health::Healthy,
            _ if s.link.accepts_requests() => Health::Suspect,
            _ => Health::Down,
        };
        match group {
            None => self.active().map(|(k, s)| (k, health(s))).collect(),
            Some(g) => g
                .peers
                .iter()
                .filter_map(|name| self.find(name))
                .filter_map(|k| self.slots.get(k).map(|s| (k, health(s))))
                .collect(),
        }
    }

    fn link(&self, key: usize) -> Option<&PeerLink> {
        self.slots.get(key).map(|s| &s.link)
    }

    fn link_mut(&mut self, key: usize) -> Option<&mut PeerLink> {
        self.slots.get_mut(key).map(|s| &mut s.link)
    }
}

impl Links for Peers {
    fn key_bound(&self) -> usize {
        self.slots.capacity()
    }
    fn session_mut(&mut self, link: usize) -> Option<&mut Session> {
        self.link_mut(link)?.session_mut()
    }
    fn usable(&mut self, link: usize) -> Option<&mut Session> {
        self.link_mut(link)?.usable()
    }
    fn accepts_requests(&self, link: usize) -> bool {
        self.slots
            .get(link)
            .is_some_and(|s| !s.removed && s.link.accepts_requests())
    }
    fn in_early_data(&self, link: usize) -> bool {
        self.link(link).is_some_and(PeerLink::in_early_data)
    }
    fn on_goaway(&mut self, link: usize) {
        if let Some(l) = self.link_mut(link) {
            l.on_goaway();
        }
    }
    fn cwnd(&self, link: usize) -> usize {
        self.link(link).map_or(0, PeerLink::cwnd)
    }
    fn choose(&self, group: Option<&PeerGroup>, load: &dyn Fn(usize) -> usize) -> Option<usize> {
        let policy = group.map_or(Policy::Failover, |g| g.policy);
        pick(&self.candidates(group), policy, load)
    }
    fn why_down(&self, group: Option<&PeerGroup>) -> String {
        let lines: Vec<String> = self
            .candidates(group)
            .iter()
            .filter_map(|(k, _)| self.slots.get(*k))
            .map(|s| match self.slots.len() {
                1 => s.why_down.clone(),
                _ => format!("peer {}: {}", s.link.name, s.why_down),
            })
            .collect();
        if lines.is_empty() {
            return "no peer configured for this route (removed by a reload)".into();
        }
        lines.join("; ")
    }
    fn note_request(&mut self, link: usize) {
        if let Some(s) = self.slots.get_mut(link) {
            s.requests += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn none(_: usize) -> usize {
        0
    }

    #[test]
    fn failover_takes_the_first_healthy_peer_in_order() {
        use Health::*;
        let c = [(3, Down), (1, Suspect), (7, Healthy), (2, Healthy)];
        assert_eq!(pick(&c, Policy::Failover, &none), Some(7));
        let c = [(3, Down), (1, Suspect), (2, Suspect)];
        assert_eq!(
            pick(&c, Policy::Failover, &none),
            Some(1),
            "a suspect peer beats waiting"
        );
        assert_eq!(pick(&[(3, Down)], Policy::Failover, &none), None);
        assert_eq!(pick(&[], Policy::Spread, &none), None);
    }

    #[test]
    fn spread_takes_the_least_loaded_healthy_peer() {
        use Health::*;
        let load = |k: usize| [5, 2, 2, 0][k];
        let c = [(0, Healthy), (1, Healthy), (2, Healthy), (3, Suspect)];
        assert_eq!(
            pick(&c, Policy::Spread, &load),
            Some(1),
            "fewest in flight, the earlier on a tie; the idle suspect one is not taken"
        );
        let c = [(0, Down), (3, Suspect), (1, Suspect)];
        assert_eq!(pick(&c, Policy::Spread, &load), Some(3));
    }
}
