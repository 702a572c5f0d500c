//! The client's peers: the servers it keeps sessions to (`peer`, or a named list `peers`), and
//! the groups routes send requests to, with their policy (`failover` or `spread`).
//!
//! A file with one `peer` is the one-peer case: that peer is named [`DEFAULT_PEER`] and every
//! request goes to it. With `peers`, a route (or a listener, for its routes that name none)
//! lists the peers it may use; one that lists none may use every peer, in file order, with
//! failover.

use super::file::PeerFile;
use super::{host_port, ConfigError, PeerConfig};

/// The name of the peer the single-peer shape (`peer`) defines.
pub const DEFAULT_PEER: &str = "default";
/// Most peers one client may name (each costs a session and a UDP socket).
pub const MAX_PEERS: usize = 64;

/// How a group picks the peer for a new request among its healthy ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Policy {
    /// The first healthy peer in the group's order.
    #[default]
    Failover,
    /// The healthy peer with the fewest requests in flight.
    Spread,
}

/// The peers a route may use, in order, and how it picks among them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerGroup {
    pub peers: Vec<String>,
    pub policy: Policy,
}

/// `peer` or `peers` (exactly one of them), each peer checked and named.
pub fn peers(
    single: Option<PeerFile>,
    list: Option<Vec<PeerFile>>,
) -> Result<Vec<PeerConfig>, ConfigError> {
    match (single, list) {
        (Some(_), Some(_)) => Err(ConfigError::new(
            "peers",
            "give either peer (one server) or peers (several), not both",
        )),
        (None, None) => Err(ConfigError::new(
            "peer",
            "missing: the server to keep a session to (or peers)",
        )),
        (Some(one), None) => Ok(vec![peer("peer", one, Some(DEFAULT_PEER))?]),
        (None, Some(list)) => named_peers(list),
    }
}

fn named_peers(list: Vec<PeerFile>) -> Result<Vec<PeerConfig>, ConfigError> {
    if list.is_empty() || list.len() > MAX_PEERS {
        return Err(ConfigError::new(
            "peers",
            format!("needs 1 to {MAX_PEERS} peers"),
        ));
    }
    let mut out: Vec<PeerConfig> = Vec::with_capacity(list.len());
    for (i, raw) in list.into_iter().enumerate() {
        let field = format!("peers[{i}]");
        let p = peer(&field, raw, None)?;
        if out.iter().any(|q| q.name == p.name) {
            return Err(ConfigError::new(
                format!("{field}.name"),
                format!("{:?} is used by an earlier peer", p.name),
            ));
        }
        out.push(p);
    }
    Ok(out)
}

/// One peer; `default_name` is used when the file gives none (the single `peer` only).
fn peer(field: &str, raw: PeerFile, default_name: Option<&str>) -> Result<PeerConfig, ConfigError> {
    let name = match (raw.name.as_deref(), default_name) {
        (Some(n), _) => peer_name(&format!("{field}.name"), n)?,
        (None, Some(d)) => d.to_string(),
        (None, None) => {
            return Err(ConfigError::new(
                format!("{field}.name"),
                "missing: each of several peers needs a name (routes and metrics use it)",
            ))
        }
    };
    let server_name = raw.server_name.trim().to_string();
    let sn_field = format!("{field}.server_name");
    if server_name.is_empty() {
        return Err(ConfigError::new(sn_field, "must not be empty"));
    }
    // What the server certificate must carry (SNI and the name check): a name no certificate
    // can match would only fail every handshake after the start.
    crate::certs::ServerName::parse(&server_name)
        .map_err(|e| ConfigError::new(sn_field, e.to_string()))?;
    let per_address = match raw.sessions.as_deref() {
        None | Some("one") => false,
        Some("per_address") => true,
        Some(other) => {
            return Err(ConfigError::new(
                format!("{field}.sessions"),
                format!("{other:?}: expected \"one\" or \"per_address\""),
            ))
        }
    };
    Ok(PeerConfig {
        name,
        address: host_port(&format!("{field}.address"), &raw.address)?,
        server_name,
        per_address,
    })
}

/// A peer name: what labels its metrics, so short and plain.
fn peer_name(field: &str, text: &str) -> Result<String, ConfigError> {
    let valid = !text.is_empty()
        && text.len() <= 64
        && text.as_bytes()[0].is_ascii_alphanumeric()
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if valid {
        Ok(text.to_string())
    } else {
        Err(ConfigError::new(
            field,
            format!("{text:?}: 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit"),
        ))
    }
}

/// A route's or listener's `peers` and `policy`: `None` when it names no peer (every peer,
/// failover). Each name must be one of `known`.
pub fn group(
    field: &str,
    names: Option<Vec<String>>,
    policy: Option<String>,
    known: &[PeerConfig],
) -> Result<Option<PeerGroup>, ConfigError> {
    let policy = match policy.as_deref() {
        None | Some("failover") => Policy::Failover,
        Some("spread") => Policy::Spread,
        Some(other) => {
            return Err(ConfigError::new(
                format!("{field}.policy"),
                format!("{other:?}: expected \"failover\" or \"spread\""),
            ))
        }
    };
    let Some(names) = names else {
        return Ok((policy != Policy::Failover).then(|| PeerGroup {
            peers: known.iter().map(|p| p.name.clone()).collect(),
            policy,
        }));
    };
    if names.is_empty() {
        return Err(ConfigError::new(
            format!("{field}.peers"),
            "must name at least one peer (omit it to use every peer)",
        ));
    }
    for (i, name) in names.iter().enumerate() {
        let f = format!("{field}.peers[{i}]");
        if !known.iter().any(|p| &p.name == name) {
            return Err(ConfigError::new(f, format!("no peer is named {name:?}")));
        }
        if names[..i].contains(name) {
            return Err(ConfigError::new(f, format!("{name:?} is listed twice")));
        }
    }
    Ok(Some(PeerGroup {
        peers: names,
        policy,
    }))
}

#[cfg(test)]
mod tests;
