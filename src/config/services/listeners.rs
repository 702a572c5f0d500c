//! The client's listeners and their routes: which local addresses take callers, who may use
//! each, and which service (and peers) a request's host leads to. The first route whose host
//! matches takes the request; only the last may match any host.

use std::net::SocketAddr;

use super::super::file::{ListenerFile, RouteFile};
use super::super::peers::{self, PeerGroup};
use super::super::{socket_addr, ConfigError, PeerConfig};
use super::service_name;
use crate::access::Cidr;

/// One route of a client listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// The request's host (without port, lower case) must be this; `None` matches any.
    pub host: Option<String>,
    pub service: String,
    /// The peers it uses (`None`: the listener's).
    pub peers: Option<PeerGroup>,
    /// Whether its request bodies go compressed on the link (`None`: as
    /// `http.compression.enabled` says).
    pub compression: Option<bool>,
}

/// What a client listener does with its callers beyond accepting them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListenerRules {
    /// Tried in order; empty = requests name no service (the server's default one).
    pub routes: Vec<Route>,
    /// Caller addresses allowed; `None` = any.
    pub allow_sources: Option<Vec<Cidr>>,
    /// The peers of routes that name none (`None`: every peer, failover).
    pub peers: Option<PeerGroup>,
}

impl ListenerRules {
    /// The service for a request to `host` (its authority): the first route matching it
    /// (the last route matches any); `None` for a listener without routes.
    pub fn route(&self, host: Option<&str>) -> Option<&str> {
        self.matching(host).map(|r| r.service.as_str())
    }

    /// The peers a request to `host` may use (`None`: every peer, failover).
    pub fn peers(&self, host: Option<&str>) -> Option<&PeerGroup> {
        self.matching(host)
            .and_then(|r| r.peers.as_ref())
            .or(self.peers.as_ref())
    }

    /// Whether request bodies to `host` go compressed, `default` being
    /// `http.compression.enabled`.
    pub fn compresses(&self, host: Option<&str>, default: bool) -> bool {
        self.matching(host)
            .and_then(|r| r.compression)
            .unwrap_or(default)
    }

    /// Whether any route compresses (then this end announces link compression).
    pub fn any_compresses(&self, default: bool) -> bool {
        default || self.routes.iter().any(|r| r.compression == Some(true))
    }

    fn matching(&self, host: Option<&str>) -> Option<&Route> {
        let host = host.map(strip_port);
        self.routes.iter().find(|r| {
            r.host
                .as_deref()
                .is_none_or(|h| host.is_some_and(|actual| actual.eq_ignore_ascii_case(h)))
        })
    }

    /// Whether a caller from `addr` may use the listener.
    pub fn admits(&self, addr: std::net::IpAddr) -> bool {
        self.allow_sources
            .as_ref()
            .is_none_or(|blocks| blocks.iter().any(|b| b.contains(addr)))
    }
}

/// `host[:port]` or `[v6]:port` without the port.
fn strip_port(authority: &str) -> &str {
    if let Some(rest) = authority.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match authority.rsplit_once(':') {
        Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host,
        _ => authority,
    }
}

/// The client's listeners: `listen` (no routes) then `listeners`; addresses must differ.
pub fn client(
    listen: &[String],
    listeners: Vec<ListenerFile>,
    known_peers: &[PeerConfig],
) -> Result<Vec<(SocketAddr, ListenerRules)>, ConfigError> {
    let mut out: Vec<(SocketAddr, ListenerRules)> = Vec::new();
    for (i, a) in listen.iter().enumerate() {
        out.push((
            socket_addr(&format!("listen[{i}]"), a)?,
            ListenerRules::default(),
        ));
    }
    for (i, raw) in listeners.into_iter().enumerate() {
        let field = format!("listeners[{i}]");
        let address = socket_addr(&format!("{field}.address"), &raw.address)?;
        let rules = ListenerRules {
            peers: peers::group(&field, raw.peers, raw.policy, known_peers)?,
            routes: routes(&field, raw.routes, known_peers)?,
            allow_sources: raw
                .allow_sources
                .map(|list| {
                    list.iter()
                        .enumerate()
                        .map(|(j, c)| {
                            Cidr::parse(c).map_err(|e| {
                                ConfigError::new(format!("{field}.allow_sources[{j}]"), e)
                            })
                        })
                        .collect::<Result<Vec<_>, _>>()
                })
                .transpose()?,
        };
        out.push((address, rules));
    }
    if out.is_empty() {
        return Err(ConfigError::new("listen", "needs at least one address"));
    }
    for (i, (addr, _)) in out.iter().enumerate() {
        if out[..i].iter().any(|(a, _)| a == addr) {
            return Err(ConfigError::new(
                "listeners",
                format!("{addr} is listed twice (in listen or listeners)"),
            ));
        }
    }
    Ok(out)
}

fn routes(
    field: &str,
    raw: Vec<RouteFile>,
    known_peers: &[PeerConfig],
) -> Result<Vec<Route>, ConfigError> {
    let count = raw.len();
    raw.into_iter()
        .enumerate()
        .map(|(i, r)| {
            let field = format!("{field}.routes[{i}]");
            let service = service_name(&format!("{field}.service"), &r.service)?;
            let host = match r.host {
                Some(h) if h.trim().is_empty() => {
                    return Err(ConfigError::new(format!("{field}.host"), "must not be empty"))
                }
                Some(_) if i + 1 == count => {
                    return Err(ConfigError::new(
                        format!("{field}.host"),
                        "the last route must match any host (no \"host\"): it takes the requests no other route matches",
                    ))
                }
                Some(h) => Some(h.trim().to_ascii_lowercase()),
                None if i + 1 < count => {
                    return Err(ConfigError::new(
                        format!("{field}.host"),
                        "only the last route may match any host (the ones after it would never be used)",
                    ))
                }
                None => None,
            };
            let peers = peers::group(&field, r.peers, r.policy, known_peers)?;
            Ok(Route {
                host,
                service,
                peers,
                compression: r.compression,
            })
        })
        .collect()
}
