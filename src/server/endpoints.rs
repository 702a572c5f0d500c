//! One service's upstream addresses, their health, and the choice among them (sans-IO).
//!
//! A service names one or more `HOST:PORT` targets; each is resolved (off the loop, see
//! [`crate::resolver`]) to all its addresses, and the union is the service's endpoints. New
//! connections go to a healthy endpoint by the service's [`Balance`]: round robin, or the one
//! with the fewest connections in use. Health is passive: a connect that fails (refused, timed
//! out) takes its endpoint out for a backoff that doubles with each failure in a row
//! ([`DOWN_BACKOFF_MIN`] up to [`DOWN_BACKOFF_MAX`]); once it has passed, the endpoint is tried
//! again, and a connect that succeeds brings it back for good. With active checks on
//! ([`super::health`]), a failed check takes an endpoint out until a check passes. When no
//! endpoint is healthy the request gets a 502 naming the service and why each address is out.

use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::config::Balance;
use crate::resolve::{Candidates, HostPort};

/// Backoff after a first failed connect.
pub const DOWN_BACKOFF_MIN: Duration = Duration::from_secs(1);
/// Longest backoff: a recovered upstream is found again within this.
pub const DOWN_BACKOFF_MAX: Duration = Duration::from_secs(10);

#[derive(Debug, Clone)]
struct Endpoint {
    addr: SocketAddr,
    /// Out until then (a failed connect).
    down_until: Option<Instant>,
    /// Failed connects in a row.
    failures: u32,
    last_error: Option<String>,
    /// Connections in use (connecting or carrying an exchange).
    outstanding: u32,
    /// Its last active check failed.
    check_failed: bool,
}

impl Endpoint {
    fn new(addr: SocketAddr) -> Self {
        Endpoint {
            addr,
            down_until: None,
            failures: 0,
            last_error: None,
            outstanding: 0,
            check_failed: false,
        }
    }

    fn healthy(&self, now: Instant) -> bool {
        !self.check_failed && self.down_until.is_none_or(|t| t <= now)
    }
}

pub struct Endpoints {
    /// The service's name, for the 502 and the logs.
    service: String,
    names: Vec<Candidates>,
    /// Why each name's last resolution failed.
    resolve_errors: Vec<Option<String>>,
    list: Vec<Endpoint>,
    balance: Balance,
    /// Round robin: where the next choice starts.
    cursor: usize,
}

impl Endpoints {
    pub fn new(service: &str, targets: &[HostPort], balance: Balance) -> Self {
        let mut e = Endpoints {
            service: service.to_string(),
            names: targets.iter().cloned().map(Candidates::new).collect(),
            resolve_errors: vec![None; targets.len()],
            list: Vec::new(),
            balance,
            cursor: 0,
        };
        e.rebuild();
        e
    }

    pub fn set_balance(&mut self, balance: Balance) {
        self.balance = balance;
    }

    /// New targets (a reload): names kept keep their answer; the endpoints of addresses that
    /// stay keep their health.
    pub fn set_targets(&mut self, targets: &[HostPort]) {
        if self.names.iter().map(|c| &c.target).eq(targets.iter()) {
            return;
        }
        let mut names = Vec::with_capacity(targets.len());
        let mut errors = Vec::with_capacity(targets.len());
        for t in targets {
            match self.names.iter().position(|c| c.target == *t) {
                Some(i) => {
                    names.push(self.names[i].clone());
                    errors.push(self.resolve_errors[i].clone());
                }
                None => {
                    names.push(Candidates::new(t.clone()));
                    errors.push(None);
                }
            }
        }
        self.names = names;
        self.resolve_errors = errors;
        self.rebuild();
    }

    /// The names whose answer is missing or due for renewal.
    pub fn names_to_resolve(&self, now: Instant) -> impl Iterator<Item = &HostPort> {
        self.names
            .iter()
            .filter(move |c| c.wants_resolution(now))
            .map(|c| &c.target)
    }

    /// A resolution of `name` finished; a failed or empty one keeps what was known.
    pub fn on_resolved(
        &mut self,
        name: &HostPort,
        result: &io::Result<Vec<SocketAddr>>,
        now: Instant,
    ) {
        let mut changed = false;
        for (c, error) in self.names.iter_mut().zip(&mut self.resolve_errors) {
            if c.target != *name {
                continue;
            }
            match result {
                Ok(found) if !found.is_empty() => {
                    c.resolved(found, now);
                    *error = None;
                    changed = true;
                }
                Ok(_) => *error = Some(format!("{name} resolves to no address")),
                Err(e) => *error = Some(format!("cannot resolve {name}: {e}")),
            }
        }
        if changed {
            self.rebuild();
        }
    }

    /// The endpoints from every name's answer, keeping the health of those that stay.
    fn rebuild(&mut self) {
        let mut list: Vec<Endpoint> = Vec::new();
        for c in &self.names {
            for addr in c.known() {
                if list.iter().any(|e| e.addr == *addr) {
                    continue;
                }
                let kept = self.list.iter().find(|e| e.addr == *addr).cloned();
                list.push(kept.unwrap_or_else(|| Endpoint::new(*addr)));
            }
        }
        self.list = list;
    }

    /// An endpoint for a new connection: healthy, not in `tried`, by the balance policy.
    /// `Err` says why there is none (unresolved, every address down or tried).
    pub fn choose(&mut self, now: Instant, tried: &[SocketAddr]) -> Result<SocketAddr, String> {
        let usable = |e: &Endpoint| e.healthy(now) && !tried.contains(&e.addr);
        let n = self.list.len();
        let pick = match self.balance {
            Balance::RoundRobin => (0..n)
                .map(|i| (self.cursor + i) % n)
                .find(|&i| usable(&self.list[i])),
            Balance::LeastOutstanding => (0..n)
                .map(|i| (self.cursor + i) % n)
                .filter(|&i| usable(&self.list[i]))
                .min_by_key(|&i| self.list[i].outstanding),
        };
        match pick {
            Some(i) => {
                self.cursor = (i + 1) % n.max(1);
                Ok(self.list[i].addr)
            }
            None => Err(self.why_none(now, tried)),
        }
    }

    fn why_none(&self, now: Instant, tried: &[SocketAddr]) -> String {
        if self.list.is_empty() {
            let why: Vec<String> = self.resolve_errors.iter().flatten().cloned().collect();
            let names: Vec<String> = self.names.iter().map(|c| c.target.to_string()).collect();
            return match why.is_empty() {
                true => format!(
                    "service {:?}: {} not resolved yet",
                    self.service,
                    names.join(", ")
                ),
                false => format!("service {:?}: {}", self.service, why.join("; ")),
            };
        }
        let each: Vec<String> = self
            .list
            .iter()
            .map(|e| {
                let state = match (&e.last_error, e.healthy(now)) {
                    (_, true) if tried.contains(&e.addr) => "failed just now".to_string(),
                    (Some(err), _) => format!("down: {err}"),
                    (None, _) => "down".to_string(),
                };
                format!("{} {state}", e.addr)
            })
            .collect();
        format!(
            "service {:?}: no upstream address left ({})",
            self.service,
            each.join("; ")
        )
    }

    /// A connect to `addr` failed: out for a backoff that doubles with each failure in a row.
    pub fn failed(&mut self, addr: SocketAddr, error: &str, now: Instant) {
        let service = &self.service;
        let Some(e) = self.list.iter_mut().find(|e| e.addr == addr) else {
            return;
        };
        e.failures = e.failures.saturating_add(1);
        let backoff = DOWN_BACKOFF_MIN
            .saturating_mul(1 << (e.failures - 1).min(8))
            .min(DOWN_BACKOFF_MAX);
        if e.failures == 1 {
            log::warn!(
                "service {service:?}: upstream {addr} down ({error}); retried in {backoff:?}"
            );
        }
        e.down_until = Some(now + backoff);
        e.last_error = Some(error.to_string());
    }

    /// A connect to `addr` succeeded: it is healthy again.
    pub fn succeeded(&mut self, addr: SocketAddr) {
        let service = &self.service;
        if let Some(e) = self.list.iter_mut().find(|e| e.addr == addr) {
            if e.failures > 0 {
                log::info!("service {service:?}: upstream {addr} is back");
            }
            e.failures = 0;
            e.down_until = None;
            e.last_error = None;
        }
    }

    /// An active check of `addr` ended: passed (the endpoint is in, whatever failed before) or
    /// failed (out until a check passes).
    pub fn checked(&mut self, addr: SocketAddr, result: Result<(), String>) {
        let service = &self.service;
        let Some(e) = self.list.iter_mut().find(|e| e.addr == addr) else {
            return;
        };
        match result {
            Ok(()) => {
                if e.check_failed {
                    log::info!(
                        "service {service:?}: upstream {addr} passes its health check again"
                    );
                }
                *e = Endpoint {
                    outstanding: e.outstanding,
                    ..Endpoint::new(addr)
                };
            }
            Err(why) => {
                if !e.check_failed {
                    log::warn!("service {service:?}: upstream {addr} out: {why}");
                }
                e.check_failed = true;
                e.last_error = Some(why);
            }
        }
    }

    /// Active checks were turned off: what they decided no longer counts.
    pub fn set_checked(&mut self, on: bool) {
        if !on {
            for e in &mut self.list {
                e.check_failed = false;
            }
        }
    }

    /// Every endpoint's address.
    pub fn addresses(&self) -> Vec<SocketAddr> {
        self.list.iter().map(|e| e.addr).collect()
    }

    /// A connection to `addr` went into use, or out of it.
    pub fn acquire(&mut self, addr: SocketAddr) {
        if let Some(e) = self.list.iter_mut().find(|e| e.addr == addr) {
            e.outstanding += 1;
        }
    }

    pub fn release(&mut self, addr: SocketAddr) {
        if let Some(e) = self.list.iter_mut().find(|e| e.addr == addr) {
            e.outstanding = e.outstanding.saturating_sub(1);
        }
    }

    /// Every endpoint failed: the names are resolved again.
    pub fn restart_names(&mut self) {
        for c in &mut self.names {
            c.restart();
        }
    }

    /// Each endpoint and whether it takes new connections now.
    pub fn health(&self, now: Instant) -> Vec<(SocketAddr, bool)> {
        self.list.iter().map(|e| (e.addr, e.healthy(now))).collect()
    }
}

#[cfg(test)]
mod tests;
