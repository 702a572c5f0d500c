//! Services and routes: the server's table of named services (each with its upstream and its
//! allow list) and the client's listeners with their ordered routes to those services.
//!
//! A file of the single-service shape (`upstream` on the server, `listen` on the client) is
//! the one-service case: its upstream is the server's default service, which requests naming no
//! service reach, and its listeners have no routes (their requests name no service).

use super::file::{AllowFile, HealthCheckFile, ServiceFile, UpstreamFile};
use super::DEFAULT_BALANCE;
use super::{host_port, millis, Balance, ConfigError, UpstreamConfig};
use super::{HealthCheck, DEFAULT_HEALTH_CHECK_INTERVAL_MS, DEFAULT_HEALTH_CHECK_TIMEOUT_MS};
use super::{
    DEFAULT_UPSTREAM_CONNECT_TIMEOUT_MS, DEFAULT_UPSTREAM_IDLE_TIMEOUT_MS,
    DEFAULT_UPSTREAM_MAX_IDLE, DEFAULT_UPSTREAM_RESPONSE_TIMEOUT_MS,
};
use crate::access::{AllowRule, IdentityPattern};
use crate::resolve::HostPort;

mod connect;
mod listeners;
pub use connect::ConnectTo;
pub use listeners::{client, ListenerRules, Route};

/// The name of the service the top-level `upstream` defines.
pub const DEFAULT_SERVICE: &str = "default";
/// Longest service name (it travels with each request and labels metrics).
pub const MAX_SERVICE_NAME: usize = 64;

/// One service of the server.
#[derive(Debug, Clone)]
pub struct ServiceConfig {
    pub name: String,
    pub upstream: UpstreamConfig,
    /// Who may use it; `None` = any client the server admits.
    pub allow: Option<Vec<AllowRule>>,
    /// The destinations a plain CONNECT through it may open (exact `HOST:PORT`); empty =
    /// CONNECT refused.
    pub connect_to: ConnectTo,
    /// Whether its response bodies go compressed on the link (`None`: as
    /// `http.compression.enabled` says).
    pub compression: Option<bool>,
    /// Removed by a reload while requests to it were in flight: they finish, no new request
    /// reaches it.
    pub retired: bool,
}

/// The server's services; requests naming none go to `default` when there is one.
#[derive(Debug, Clone)]
pub struct Services {
    pub list: Vec<ServiceConfig>,
    pub default: Option<usize>,
}

impl ServiceConfig {
    /// Whether its response bodies go compressed, `default` being `http.compression.enabled`.
    pub fn compresses(&self, default: bool) -> bool {
        self.compression.unwrap_or(default)
    }
}

impl Services {
    /// Whether any service compresses its responses (`default`: `http.compression.enabled`):
    /// then this end announces link compression.
    pub fn any_compresses(&self, default: bool) -> bool {
        self.list.iter().any(|s| s.compresses(default))
    }

    /// The service a request names (`None`: the default one).
    pub fn find(&self, name: Option<&str>) -> Option<usize> {
        match name {
            None => self.default,
            Some(name) => self.list.iter().position(|s| s.name == name && !s.retired),
        }
    }

    pub fn get(&self, index: usize) -> Option<&ServiceConfig> {
        self.list.get(index)
    }

    /// The services after a reload to `new` that removes or reorders some: `new`'s list, then
    /// those of this list it drops that `in_use` says requests still use (retired: they finish,
    /// nothing new reaches them). Also where each of this list's services went (`None`: gone,
    /// nothing used it).
    pub fn merged_for_reload(
        &self,
        new: &Services,
        in_use: impl Fn(usize) -> bool,
    ) -> (Services, Vec<Option<usize>>) {
        let mut merged = new.clone();
        let mut moved = Vec::with_capacity(self.list.len());
        for (i, old) in self.list.iter().enumerate() {
            let kept = (!old.retired).then(|| new.find(Some(&old.name))).flatten();
            let place = match kept {
                Some(j) => Some(j),
                None if in_use(i) => {
                    merged.list.push(ServiceConfig {
                        retired: true,
                        ..old.clone()
                    });
                    Some(merged.list.len() - 1)
                }
                None => None,
            };
            moved.push(place);
        }
        (merged, moved)
    }
}

/// The server's services from the top-level `upstream` (the default service) and `services`.
pub fn server(
    upstream: Option<UpstreamFile>,
    connect_to: Option<Vec<String>>,
    services: Vec<ServiceFile>,
) -> Result<Services, ConfigError> {
    let mut list = Vec::new();
    let default = match upstream {
        Some(up) => {
            list.push(ServiceConfig {
                retired: false,
                name: DEFAULT_SERVICE.into(),
                upstream: upstream_config("upstream", up)?,
                allow: None,
                connect_to: connect::destinations("connect_to", connect_to)?,
                compression: None,
            });
            Some(0)
        }
        None if connect_to.is_some() => return Err(ConfigError::new(
            "connect_to",
            "belongs to the top-level upstream's service: set \"upstream\", or put it in a service",
        )),
        None => None,
    };
    for (i, raw) in services.into_iter().enumerate() {
        let field = format!("services[{i}]");
        let name = service_name(&format!("{field}.name"), &raw.name)?;
        if list.iter().any(|s: &ServiceConfig| s.name == name) {
            let why = if name == DEFAULT_SERVICE {
                "is the name of the top-level upstream's service".to_string()
            } else {
                "names a service listed before".to_string()
            };
            return Err(ConfigError::new(
                format!("{field}.name"),
                format!("{name:?} {why}"),
            ));
        }
        list.push(ServiceConfig {
            retired: false,
            upstream: upstream_config(&format!("{field}.upstream"), raw.upstream)?,
            allow: raw
                .allow
                .map(|rules| allow_rules(&format!("{field}.allow"), rules))
                .transpose()?,
            connect_to: connect::destinations(&format!("{field}.connect_to"), raw.connect_to)?,
            compression: raw.compression,
            name,
        });
    }
    if list.is_empty() {
        return Err(ConfigError::new(
            "upstream",
            "needed unless \"services\" names at least one service",
        ));
    }
    Ok(Services { list, default })
}

pub fn upstream_config(field: &str, up: UpstreamFile) -> Result<UpstreamConfig, ConfigError> {
    Ok(UpstreamConfig {
        addresses: upstream_addresses(field, up.address, up.addresses)?,
        health_check: up
            .health_check
            .map(|h| health_check(&format!("{field}.health_check"), h))
            .transpose()?,
        balance: match up.balance.as_deref() {
            None => DEFAULT_BALANCE,
            Some("round_robin") => Balance::RoundRobin,
            Some("least_outstanding") => Balance::LeastOutstanding,
            Some(other) => {
                return Err(ConfigError::new(
                    format!("{field}.balance"),
                    format!("{other:?} is not one of round_robin, least_outstanding"),
                ))
            }
        },
        connect_timeout: millis(
            &format!("{field}.connect_timeout_ms"),
            up.connect_timeout_ms,
            DEFAULT_UPSTREAM_CONNECT_TIMEOUT_MS,
        )?,
        response_timeout: millis(
            &format!("{field}.response_timeout_ms"),
            up.response_timeout_ms,
            DEFAULT_UPSTREAM_RESPONSE_TIMEOUT_MS,
        )?,
        max_idle: up.max_idle.unwrap_or(DEFAULT_UPSTREAM_MAX_IDLE),
        idle_timeout: millis(
            &format!("{field}.idle_timeout_ms"),
            up.idle_timeout_ms,
            DEFAULT_UPSTREAM_IDLE_TIMEOUT_MS,
        )?,
    })
}

fn health_check(field: &str, raw: HealthCheckFile) -> Result<HealthCheck, ConfigError> {
    let path_ok = raw.path.starts_with('/') && raw.path.bytes().all(|b| b.is_ascii_graphic());
    if !path_ok {
        return Err(ConfigError::new(
            format!("{field}.path"),
            format!(
                "{:?} is not a request path (starts with '/', no spaces or controls)",
                raw.path
            ),
        ));
    }
    let check = HealthCheck {
        path: raw.path,
        interval: millis(
            &format!("{field}.interval_ms"),
            raw.interval_ms,
            DEFAULT_HEALTH_CHECK_INTERVAL_MS,
        )?,
        timeout: millis(
            &format!("{field}.timeout_ms"),
            raw.timeout_ms,
            DEFAULT_HEALTH_CHECK_TIMEOUT_MS,
        )?,
    };
    if check.timeout > check.interval {
        return Err(ConfigError::new(
            format!("{field}.timeout_ms"),
            "must not exceed interval_ms (a check would still run when the next one starts)",
        ));
    }
    Ok(check)
}

/// `address` or `addresses` (exactly one), each `HOST:PORT`, none twice.
fn upstream_addresses(
    field: &str,
    address: Option<String>,
    addresses: Option<Vec<String>>,
) -> Result<Vec<HostPort>, ConfigError> {
    let parsed = match (address, addresses) {
        (Some(a), None) => vec![host_port(&format!("{field}.address"), &a)?],
        (None, Some(list)) if !list.is_empty() => list
            .iter()
            .enumerate()
            .map(|(i, a)| host_port(&format!("{field}.addresses[{i}]"), a))
            .collect::<Result<Vec<_>, _>>()?,
        (None, Some(_)) => {
            return Err(ConfigError::new(
                format!("{field}.addresses"),
                "must not be empty",
            ))
        }
        (Some(_), Some(_)) => {
            return Err(ConfigError::new(
                format!("{field}.addresses"),
                "give either address or addresses, not both",
            ))
        }
        (None, None) => {
            return Err(ConfigError::new(
                format!("{field}.address"),
                "missing (or give addresses)",
            ))
        }
    };
    for (i, a) in parsed.iter().enumerate() {
        if parsed[..i].contains(a) {
            return Err(ConfigError::new(
                format!("{field}.addresses[{i}]"),
                format!("{a} is listed twice"),
            ));
        }
    }
    Ok(parsed)
}

/// Lower-case letters, digits, `.`, `_` and `-`, starting with a letter or digit.
fn service_name(field: &str, text: &str) -> Result<String, ConfigError> {
    let valid = !text.is_empty()
        && text.len() <= MAX_SERVICE_NAME
        && text.as_bytes()[0].is_ascii_alphanumeric()
        && text.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-')
        });
    if valid {
        Ok(text.to_string())
    } else {
        Err(ConfigError::new(
            field,
            format!(
                "{text:?}: 1 to {MAX_SERVICE_NAME} lower-case letters, digits, '.', '_' or '-', starting with a letter or digit"
            ),
        ))
    }
}

fn allow_rules(field: &str, rules: Vec<AllowFile>) -> Result<Vec<AllowRule>, ConfigError> {
    if rules.is_empty() {
        return Err(ConfigError::new(
            field,
            "an empty list would refuse everyone; omit it to admit any client the server admits",
        ));
    }
    rules
        .into_iter()
        .enumerate()
        .map(|(i, r)| allow_rule(&format!("{field}[{i}]"), r))
        .collect()
}

fn allow_rule(field: &str, raw: AllowFile) -> Result<AllowRule, ConfigError> {
    let identity = IdentityPattern::parse(&raw.identity)
        .map_err(|e| ConfigError::new(format!("{field}.identity"), e))?;
    let methods = raw
        .methods
        .map(|list| non_empty(&format!("{field}.methods"), list, method))
        .transpose()?;
    let paths = raw
        .paths
        .map(|list| non_empty(&format!("{field}.paths"), list, path_prefix))
        .transpose()?;
    Ok(AllowRule {
        identity,
        methods,
        paths,
    })
}

/// Each entry checked by `check`; an empty list is refused (it would admit nothing).
fn non_empty(
    field: &str,
    list: Vec<String>,
    check: fn(&str) -> Result<String, String>,
) -> Result<Vec<String>, ConfigError> {
    if list.is_empty() {
        return Err(ConfigError::new(
            field,
            "an empty list would admit nothing; omit it to admit any",
        ));
    }
    list.iter()
        .enumerate()
        .map(|(i, s)| check(s).map_err(|e| ConfigError::new(format!("{field}[{i}]"), e)))
        .collect()
}

fn method(text: &str) -> Result<String, String> {
    let valid = !text.is_empty() && text.bytes().all(|b| b.is_ascii_uppercase());
    valid
        .then(|| text.to_string())
        .ok_or_else(|| format!("{text:?} is not a method (upper-case letters, e.g. \"GET\")"))
}

fn path_prefix(text: &str) -> Result<String, String> {
    let valid = text.starts_with('/')
        && !text.contains(['?', '#', '%', '\\'])
        && !text.split('/').any(|s| s == "." || s == "..");
    valid.then(|| text.to_string()).ok_or_else(|| {
        format!(
            "{text:?} is not a path prefix (starts with '/', no query, no '%', no dot segments)"
        )
    })
}

#[cfg(test)]
mod tests;
