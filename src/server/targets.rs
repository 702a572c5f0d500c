//! Server role: whose connections the upstream pool holds. Each service is a [`Target`] (its
//! addresses, health checks and idle connections), in the order of the services list, and so
//! is each CONNECT destination a service allows (`connect_to`): its name resolved ahead of use,
//! no checks, nothing kept idle. Destinations are kept apart ([`TargetId::Destination`]) and
//! never removed, so a connection's target stays valid across reloads that move services.

use std::io;
use std::time::Instant;

use mio::Registry;

use super::endpoints::Endpoints;
use super::upstream::Pool;
use crate::config::{HealthCheck, ServiceConfig, Services};
use crate::resolve::HostPort;

/// Whose connection an [`Upstream`] is: a service's (its number in [`Services::list`]) or
/// a CONNECT destination's (its place in [`Pool`]'s destinations, which never moves).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetId {
    Service(usize),
    Destination(usize),
}

/// One service's upstream: its addresses and its idle connections.
pub struct Target {
    pub(super) endpoints: Endpoints,
    /// Active checks, and when the next round starts.
    pub(super) health_check: Option<HealthCheck>,
    pub(super) next_probe: Option<Instant>,
    pub(super) max_idle: usize,
    pub(super) idle_timeout: std::time::Duration,
    /// Idle connection keys, most recently used last.
    pub(super) idle: Vec<usize>,
}

impl Target {
    pub(super) fn new(s: &ServiceConfig) -> Self {
        Target {
            endpoints: Endpoints::new(&s.name, &s.upstream.addresses, s.upstream.balance),
            health_check: s.upstream.health_check.clone(),
            next_probe: None,
            max_idle: s.upstream.max_idle,
            idle_timeout: s.upstream.idle_timeout,
            idle: Vec::new(),
        }
    }

    /// A CONNECT destination: its name, no checks, nothing kept idle.
    fn destination(name: &HostPort) -> Self {
        Target {
            endpoints: Endpoints::new(
                "connect_to",
                std::slice::from_ref(name),
                crate::config::Balance::RoundRobin,
            ),
            health_check: None,
            next_probe: None,
            max_idle: 0,
            idle_timeout: std::time::Duration::ZERO,
            idle: Vec::new(),
        }
    }
}

impl Pool {
    /// Takes every CONNECT destination `services` name that is new (its name resolved from
    /// now on, ahead of the first CONNECT).
    pub(super) fn add_destinations(&mut self, services: &Services) {
        for name in services.list.iter().flat_map(|s| s.connect_to.iter()) {
            if self.destination_index(name).is_none() {
                self.destinations
                    .push((name.clone(), Target::destination(name)));
            }
        }
    }

    fn destination_index(&self, name: &HostPort) -> Option<usize> {
        self.destinations.iter().position(|(n, _)| n == name)
    }

    pub(super) fn all_targets(&self) -> impl Iterator<Item = &Target> {
        let destinations = self.destinations.iter().map(|(_, t)| t);
        self.targets.iter().chain(destinations)
    }

    pub(super) fn target_mut(&mut self, id: TargetId) -> Option<&mut Target> {
        match id {
            TargetId::Service(i) => self.targets.get_mut(i),
            TargetId::Destination(i) => self.destinations.get_mut(i).map(|(_, t)| t),
        }
    }

    pub(super) fn target(&mut self, id: TargetId) -> io::Result<&mut Target> {
        self.target_mut(id)
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no such service"))
    }

    /// A new connection to CONNECT destination `name` (one a configuration allows) being
    /// connected; it is never pooled.
    pub fn connect_destination(
        &mut self,
        registry: &Registry,
        owner: usize,
        name: &HostPort,
    ) -> io::Result<usize> {
        let index = match self.destination_index(name) {
            Some(i) => i,
            None => {
                self.destinations
                    .push((name.clone(), Target::destination(name)));
                self.destinations.len() - 1
            }
        };
        let target = TargetId::Destination(index);
        let address = self.choose(target, &[])?;
        self.connect_at(registry, owner, target, address, Vec::new())
    }
}
