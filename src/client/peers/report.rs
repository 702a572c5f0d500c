//! What the peers look like from outside: `/health` lines, the metrics figures, and the
//! reason a route has no usable peer (the 503 answers).

use std::time::Instant;

use super::{PeerEntry, PeerSlot, Peers};
use crate::config::PeerGroup;
use crate::metrics::{PeerFigures, Snapshot};

/// A link's name in logs and health lines: the peer's, with the address for a per-address
/// peer's links.
pub(super) fn label(slot: &PeerSlot) -> String {
    match slot.address {
        Some(a) => format!("{} ({a})", slot.link.name),
        None => slot.link.name.clone(),
    }
}

/// Why no link of `group` takes requests: each peer's reason (the bare reason with one peer).
pub(super) fn why_down(peers: &Peers, group: Option<&PeerGroup>) -> String {
    let entries: Vec<_> = peers.entries(group).collect();
    let one = peers.peers.len() == 1 && entries.len() == 1;
    let mut reasons = Vec::new();
    for entry in entries {
        for slot in entry.links.iter().filter_map(|k| peers.slots.get(*k)) {
            reasons.push(match one && entry.links.len() == 1 {
                true => slot.why_down.clone(),
                false => format!("peer {}: {}", label(slot), slot.why_down),
            });
        }
        if let (Some(name), true) = (&entry.name, entry.links.is_empty()) {
            reasons.push(format!("peer {}: {}", entry.config.name, name.problem));
        }
    }
    if reasons.is_empty() {
        return "no configured peer serves this route".into();
    }
    reasons.join("; ")
}

impl Peers {
    /// Every configured peer has a session up (a per-address peer: one of its addresses).
    pub fn all_up(&self) -> bool {
        self.peers.iter().all(|e| {
            e.links
                .iter()
                .any(|k| self.slots.get(*k).is_some_and(|s| s.link.is_up()))
        })
    }

    /// One line per link (and per peer without an address yet) for `/health`.
    pub fn health_lines(&self, now: Instant) -> String {
        let mut out = String::new();
        for entry in &self.peers {
            for slot in entry.links.iter().filter_map(|k| self.slots.get(*k)) {
                out.push_str(&health_line(slot, now));
            }
            if let (Some(name), true) = (&entry.name, entry.links.is_empty()) {
                out.push_str(&no_address_line(entry, &name.problem));
            }
        }
        out
    }

    /// Live figures for the metrics endpoint.
    pub fn snapshot(&self, snap: &mut Snapshot, now: Instant) {
        for entry in &self.peers {
            for slot in entry.links.iter().filter_map(|k| self.slots.get(*k)) {
                slot.link.snapshot(snap, now);
                snap.peers.push(PeerFigures {
                    name: slot.link.name.clone(),
                    address: slot.address.map(|a| a.to_string()),
                    contact: slot.link.contact_figures(),
                    up_since: slot.link.up_since(),
                    healthy: slot.link.is_healthy(),
                    requests: slot.requests,
                });
            }
        }
    }
}

fn health_line(slot: &PeerSlot, now: Instant) -> String {
    let link = &slot.link;
    let name = label(slot);
    if link.is_healthy() {
        format!("peer {name}: session up\n")
    } else if link.is_up() {
        format!(
            "peer {name}: session up, not taking new requests: {}\n",
            link.why_down(now)
        )
    } else {
        let c = link.contact_figures();
        format!(
            "peer {name}: session down ({}, {} attempt(s), {} failed): {}\n",
            c.state,
            c.attempts,
            c.failures,
            link.why_down(now)
        )
    }
}

fn no_address_line(entry: &PeerEntry, problem: &str) -> String {
    format!(
        "peer {}: no session, no address yet: {problem}\n",
        entry.config.name
    )
}
