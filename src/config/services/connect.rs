//! A service's CONNECT destinations (`connect_to`): the exact `HOST:PORT` addresses a plain
//! CONNECT through the service may open a TCP connection to. Nothing else is reachable: no
//! wildcards, no port ranges, and an absent list means the service refuses every CONNECT.

use crate::config::ConfigError;
use crate::resolve::HostPort;

/// A service's CONNECT destinations; empty = CONNECT refused.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConnectTo(Vec<HostPort>);

/// The validated `connect_to` list at `field` (absent: empty, CONNECT refused).
pub(super) fn destinations(
    field: &str,
    raw: Option<Vec<String>>,
) -> Result<ConnectTo, ConfigError> {
    let Some(list) = raw else {
        return Ok(ConnectTo::default());
    };
    if list.is_empty() {
        return Err(ConfigError::new(
            field,
            "an empty list allows no destination; omit it to refuse CONNECT",
        ));
    }
    list.iter()
        .enumerate()
        .map(|(i, text)| destination(&format!("{field}[{i}]"), text))
        .collect::<Result<_, _>>()
        .map(ConnectTo)
}

fn destination(field: &str, text: &str) -> Result<HostPort, ConfigError> {
    let mut hp = HostPort::parse(text).map_err(|e| ConfigError::new(field, e))?;
    if hp.port == 0 {
        return Err(ConfigError::new(field, format!("{text:?}: port 0")));
    }
    hp.host.make_ascii_lowercase();
    Ok(hp)
}

impl ConnectTo {
    /// Whether a CONNECT may open `destination` (host names compared without case, IP
    /// literals in their canonical form, ports exactly).
    pub fn allows(&self, destination: &HostPort) -> bool {
        self.0.iter().any(|allowed| {
            allowed.port == destination.port && allowed.host.eq_ignore_ascii_case(&destination.host)
        })
    }
}

impl From<Vec<HostPort>> for ConnectTo {
    fn from(mut list: Vec<HostPort>) -> Self {
        for d in &mut list {
            d.host.make_ascii_lowercase();
        }
        ConnectTo(list)
    }
}

impl ConnectTo {
    /// No destination: the service refuses CONNECT (501).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Every destination (the pool resolves their names ahead of use).
    pub fn iter(&self) -> impl Iterator<Item = &HostPort> {
        self.0.iter()
    }
}
