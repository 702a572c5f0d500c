//! The client's sessions, one per configured peer (or, for a peer with `sessions:
//! per_address`, one per address its name resolves to): which one a new request uses, and
//! the reactor plumbing of each (its UDP socket's token, its read backlog, its timers).
//!
//! A link is *healthy* while its session is up, not going away, and the peer not silent beyond
//! what an alive peer shows (keepalives or liveness probes go out at least that often and an
//! answer takes a few probe timeouts; `peer_silence_ms` overrides it). A group's policy picks
//! among the links of its peers ([`choice::pick`]). A per-address peer's name is resolved off
//! the loop ([`crate::resolver`]) at start and every [`crate::resolve::RESOLVE_TTL`]: a new address gets a
//! session, a vanished one is drained. SIGHUP adds peers at once and drains removed ones:
//! a drained link takes no new request and closes once its last stream ended.

pub mod choice;
mod names;
mod report;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use mio::{Registry, Token};
use slab::Slab;

use crate::bridge::headers::forwarding::Completion;

use super::downstreams::Links;
use super::link::{LinkEvent, PeerLink};
use crate::config::{ClientConfig, PeerConfig, PeerGroup, Policy};
use crate::quic::session::Session;
use crate::reactor::backlog::Backlog;
use crate::reactor::{PEER_UDP_BASE, RESOLVER};
use crate::resolve::HostPort;
use crate::resolver::Resolver;
use choice::{pick, Health};
use names::NameState;

/// Most sessions one client keeps (the token space between `PEER_UDP_BASE` and `RESOLVER`).
pub const MAX_LINKS: usize = RESOLVER.0 - PEER_UDP_BASE;
/// How long start-up waits for the first answers of per-address peers' names.
const FIRST_RESOLUTION_WAIT: Duration = Duration::from_secs(2);
/// After a failed lookup, the next one is this much later.
const RESOLVE_RETRY: Duration = Duration::from_secs(5);

struct PeerSlot {
    link: PeerLink,
    /// The address a per-address peer's link goes to (the `address` metrics label).
    address: Option<SocketAddr>,
    /// The UDP socket reported readiness, or its last read stopped at its cap.
    backlog: Backlog,
    /// Why it takes no requests (refreshed each turn while so), for 503 answers.
    why_down: String,
    /// Removed (by a reload, or its address left the name): no new requests; closed and
    /// dropped once its streams ended.
    removed: bool,
    /// Request streams opened on it.
    requests: u64,
}

/// One configured peer and its links.
struct PeerEntry {
    config: PeerConfig,
    name: Option<NameState>,
    links: Vec<usize>,
}

/// Every peer's links, peers in configuration order.
pub struct Peers {
    slots: Slab<PeerSlot>,
    peers: Vec<PeerEntry>,
    /// Started when a per-address peer has a name to resolve.
    resolver: Option<Resolver>,
    /// The configuration new links are made with (TLS, transport, reconnect).
    running: ClientConfig,
}

impl Peers {
    /// The links of every peer of `cfg`, each starting its session at once (per-address
    /// names first wait up to [`FIRST_RESOLUTION_WAIT`] for their addresses).
    pub fn new(
        cfg: &ClientConfig,
        registry: &Registry,
    ) -> Result<Self, Box<dyn std::error::Error>> {
        let mut peers = Peers {
            slots: Slab::new(),
            peers: Vec::new(),
            resolver: None,
            running: cfg.clone(),
        };
        let now = Instant::now();
        for p in &cfg.peers {
            peers.add_peer(p.clone(), registry, now)?;
        }
        if let Some(resolver) = peers.resolver.as_mut() {
            for (target, found) in resolver.wait_all(FIRST_RESOLUTION_WAIT) {
                peers.on_resolved(&target, found, registry, now);
            }
        }
        if let Some((_, first)) = peers.slots.iter().next() {
            log::info!("{}", first.link.describe_loss_hiding());
        }
        Ok(peers)
    }

    /// A peer: its link now, or (per-address name) a lookup of its addresses.
    fn add_peer(
        &mut self,
        config: PeerConfig,
        registry: &Registry,
        now: Instant,
    ) -> Result<(), Box<dyn std::error::Error>> {
        let mut entry = PeerEntry {
            name: None,
            links: Vec::new(),
            config,
        };
        if entry.config.per_address && entry.config.address.literal().is_none() {
            let target = entry.config.address.clone();
            self.resolver_mut(registry)?.ask(&target);
            entry.name = Some(NameState {
                problem: format!("resolving {target}"),
                target,
                resolved_at: None,
                next_lookup: now + RESOLVE_RETRY,
            });
        } else {
            let key = self.make_link(&entry.config, None, registry, now)?;
            entry.links.push(key);
        }
        self.peers.push(entry);
        Ok(())
    }

    /// A link to `peer` (to `address` only, for a per-address peer), its session started.
    fn make_link(
        &mut self,
        peer: &PeerConfig,
        address: Option<SocketAddr>,
        registry: &Registry,
        now: Instant,
    ) -> Result<usize, Box<dyn std::error::Error>> {
        if self.slots.len() >= MAX_LINKS {
            return Err(format!("peers: at most {MAX_LINKS} sessions").into());
        }
        let mut target = peer.clone();
        if let Some(addr) = address {
            target.address = HostPort::from(addr);
        }
        let key = self.slots.vacant_key();
        let mut link = PeerLink::new(&self.running, &target, Token(PEER_UDP_BASE + key))?;
        link.handle_timeout(registry, now);
        self.slots.insert(PeerSlot {
            link,
            address,
            backlog: Backlog::default(),
            why_down: String::new(),
            removed: false,
            requests: 0,
        });
        Ok(key)
    }

    /// The link whose UDP socket `token` is.
    pub fn owner(&self, token: Token) -> Option<usize> {
        let key = token.0.checked_sub(PEER_UDP_BASE)?;
        self.slots.contains(key).then_some(key)
    }

    /// Readiness of link `key`'s socket.
    pub fn on_socket_event(
        &mut self,
        registry: &Registry,
        key: usize,
        readable: bool,
        writable: bool,
        now: Instant,
    ) {
        let Some(slot) = self.slots.get_mut(key) else {
            return;
        };
        if readable {
            slot.backlog.mark();
        }
        if writable {
            slot.link.handle_writable(registry, now);
        }
    }

    /// Takes name lookups, reads the sockets that have datagrams, runs every link's timers and
    /// notices what changed: the events, by link.
    pub fn step(
        &mut self,
        registry: &Registry,
        now: Instant,
        metrics: &mut crate::metrics::Metrics,
    ) -> Vec<(usize, LinkEvent)> {
        self.refresh_names(registry, now);
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

    /// Closes links that went away (GOAWAY, or removed) once their last stream ended; drops
    /// removed ones once closed.
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
            log::info!("peer {} removed", report::label(&slot));
        }
    }

    /// Sends what every session has to send; true when one stopped at its send quantum.
    pub fn flush(&mut self, registry: &Registry, now: Instant) -> bool {
        let mut pending = false;
        for (_, slot) in self.slots.iter_mut() {
            pending |= slot.link.flush(registry, now);
        }
        pending
    }

    /// Reads left at their cap: come back at once.
    pub fn has_backlog(&self) -> bool {
        self.slots.iter().any(|(_, s)| s.backlog.is_pending())
    }

    pub fn next_deadline(&self) -> Option<Instant> {
        let links = self
            .slots
            .iter()
            .filter_map(|(_, s)| s.link.next_deadline());
        let names = self
            .peers
            .iter()
            .filter_map(|p| p.name.as_ref())
            .map(|n| n.next_lookup);
        links.chain(names).min()
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

    /// SIGHUP with `cfg` (the running settings with the new peer list): peers new in it get
    /// their links now; peers it no longer names take no new request and close once their
    /// streams ended. Kept peers keep their sessions.
    pub fn reload(&mut self, cfg: &ClientConfig, registry: &Registry, now: Instant) {
        self.running = cfg.clone();
        for (_, slot) in self.slots.iter_mut() {
            slot.link
                .set_dictionary(cfg.http.compression.dictionary.clone());
            slot.link
                .set_forwarding(Completion::left_by(&cfg.http.forwarding));
        }
        let kept = |name: &str| cfg.peers.iter().any(|p| p.name == name);
        for entry in self.peers.iter().filter(|e| !kept(&e.config.name)) {
            log::info!(
                "SIGHUP: peer {} removed: it takes no new requests and closes once its requests finished",
                entry.config.name
            );
            for key in &entry.links {
                if let Some(slot) = self.slots.get_mut(*key) {
                    slot.removed = true;
                }
            }
        }
        self.peers.retain(|e| kept(&e.config.name));
        for p in &cfg.peers {
            if self.entry(&p.name).is_some() {
                continue;
            }
            match self.add_peer(p.clone(), registry, now) {
                Ok(()) => log::info!("SIGHUP: peer {} added", p.name),
                Err(e) => log::error!("SIGHUP: peer {} not added: {e}", p.name),
            }
        }
        let position = |e: &PeerEntry| cfg.peers.iter().position(|p| p.name == e.config.name);
        self.peers.sort_by_key(position);
    }

    fn entry(&self, name: &str) -> Option<&PeerEntry> {
        self.peers.iter().find(|e| e.config.name == name)
    }

    /// The configured peers of `group` (every peer when `None`), in order.
    fn entries<'a>(
        &'a self,
        group: Option<&'a PeerGroup>,
    ) -> impl Iterator<Item = &'a PeerEntry> + 'a {
        // Either every peer or the group's, without a vector (this runs for every request).
        let all = self.peers.iter().filter(move |_| group.is_none());
        let named = group
            .into_iter()
            .flat_map(|g| g.peers.iter().filter_map(|n| self.entry(n)));
        all.chain(named)
    }

    /// Each link of `group`'s peers with its health, in order.
    fn candidates(&self, group: Option<&PeerGroup>) -> Vec<(usize, Health)> {
        let health = |s: &PeerSlot| match () {
            _ if s.removed => Health::Down,
            _ if s.link.is_healthy() => Health::Healthy,
            _ if s.link.accepts_requests() => Health::Suspect,
            _ => Health::Down,
        };
        self.entries(group)
            .flat_map(|e| e.links.iter())
            .filter_map(|k| self.slots.get(*k).map(|s| (*k, health(s))))
            .collect()
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
        report::why_down(self, group)
    }
    fn note_request(&mut self, link: usize) {
        if let Some(s) = self.slots.get_mut(link) {
            s.requests += 1;
        }
    }
}
