//! Access control by peer identity: who a verified client certificate says the caller is
//! ([`Identity`]: DNS SANs, URI SANs such as SPIFFE IDs, the CN of a certificate without any
//! SAN), the patterns a service's allow list names them by ([`IdentityPattern`]), and the
//! rules that may narrow an identity to some methods and path prefixes ([`AllowRule`]).
//!
//! Patterns: `*` (any identity); `*.corp.example` (exactly one more DNS label, never the bare
//! suffix); a URI ending in `/*` (every URI below that path, segment-wise); anything else is
//! an exact name (DNS names and the CN case-insensitively, URIs exactly). A DNS pattern never
//! matches a URI SAN and the other way round.
//!
//! Callers of a client listener may be limited to source address blocks ([`Cidr`]).
//!
//! Path prefixes match whole segments (`/v1/orders` admits `/v1/orders`, `/v1/orders/7` and
//! `/v1/orders?x`, not `/v1/ordersX`), and a path holding a dot segment or a percent-encoded
//! dot or slash never matches a prefix: the upstream would resolve it elsewhere.

use std::net::IpAddr;

use boring::nid::Nid;
use boring::x509::X509Ref;

/// Who a verified client certificate names.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Identity {
    pub dns: Vec<String>,
    pub uris: Vec<String>,
    /// The subject CN, used only when the certificate carries no SAN at all.
    pub cn: Option<String>,
}

impl Identity {
    pub fn of(cert: &X509Ref) -> Self {
        let mut id = Identity::default();
        match cert.subject_alt_names() {
            Some(sans) => {
                for san in sans.iter() {
                    if let Some(dns) = san.dnsname() {
                        id.dns.push(dns.to_owned());
                    } else if let Some(uri) = san.uri() {
                        id.uris.push(uri.to_owned());
                    }
                }
            }
            None => {
                id.cn = cert
                    .subject_name()
                    .entries_by_nid(Nid::COMMONNAME)
                    .find_map(|e| e.data().as_utf8().ok().map(|s| s.to_string()));
            }
        }
        id
    }

    /// The names to show in logs and answers: URIs, DNS names, or the CN.
    pub fn describe(&self) -> String {
        let names: Vec<&str> = self
            .uris
            .iter()
            .chain(&self.dns)
            .chain(&self.cn)
            .map(String::as_str)
            .collect();
        if names.is_empty() {
            "(no name)".into()
        } else {
            names.join(",")
        }
    }

    /// DNS-like names: the DNS SANs, or the CN of a certificate without SANs.
    fn dns_names(&self) -> impl Iterator<Item = &str> {
        self.dns.iter().chain(&self.cn).map(String::as_str)
    }
}

/// How an allow list names an identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdentityPattern {
    Any,
    /// A DNS name or CN, compared without case.
    Dns(String),
    /// `*.suffix`: the suffix with its leading dot, lowercased.
    DnsWildcard(String),
    Uri(String),
    /// A URI prefix ending in `/`.
    UriPrefix(String),
}

impl IdentityPattern {
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if text == "*" {
            return Ok(IdentityPattern::Any);
        }
        if text.is_empty() || text.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(format!("{text:?} is not a name"));
        }
        if text.contains("://") {
            return match text.strip_suffix('*') {
                Some(prefix) if prefix.ends_with('/') && !prefix.contains('*') => {
                    Ok(IdentityPattern::UriPrefix(prefix.into()))
                }
                None if !text.contains('*') => Ok(IdentityPattern::Uri(text.into())),
                _ => Err(format!(
                    "{text:?}: a URI takes a wildcard only as its last segment (\"/*\")"
                )),
            };
        }
        match text.strip_prefix('*') {
            Some(suffix)
                if suffix.starts_with('.') && suffix.len() > 1 && !suffix.contains('*') =>
            {
                Ok(IdentityPattern::DnsWildcard(suffix.to_ascii_lowercase()))
            }
            None if !text.contains('*') => Ok(IdentityPattern::Dns(text.into())),
            _ => Err(format!(
                "{text:?}: a name takes a wildcard only as its whole first label (\"*.example\")"
            )),
        }
    }

    pub fn matches(&self, id: &Identity) -> bool {
        match self {
            IdentityPattern::Any => true,
            IdentityPattern::Dns(name) => id.dns_names().any(|n| n.eq_ignore_ascii_case(name)),
            IdentityPattern::DnsWildcard(suffix) => id.dns_names().any(|n| {
                let n = n.to_ascii_lowercase();
                n.strip_suffix(suffix.as_str())
                    .is_some_and(|label| !label.is_empty() && !label.contains('.'))
            }),
            IdentityPattern::Uri(uri) => id.uris.iter().any(|u| u == uri),
            IdentityPattern::UriPrefix(prefix) => id
                .uris
                .iter()
                .any(|u| u.len() > prefix.len() && u.starts_with(prefix.as_str())),
        }
    }
}

/// One entry of a service's allow list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowRule {
    pub identity: IdentityPattern,
    /// Methods allowed (upper case); `None` = any.
    pub methods: Option<Vec<String>>,
    /// Path prefixes allowed; `None` = any path.
    pub paths: Option<Vec<String>>,
}

impl AllowRule {
    fn admits(&self, id: &Identity, method: &str, target: &str) -> bool {
        self.identity.matches(id)
            && self
                .methods
                .as_ref()
                .is_none_or(|m| m.iter().any(|m| m == method))
            && self
                .paths
                .as_ref()
                .is_none_or(|p| p.iter().any(|prefix| path_within(target, prefix)))
    }
}

/// Whether `id` may send `method` to `target` under the allow list `rules` (`None`: the
/// service names no rules, so any identity the server admitted may).
pub fn allows(rules: Option<&[AllowRule]>, id: &Identity, method: &str, target: &str) -> bool {
    rules.is_none_or(|rules| rules.iter().any(|r| r.admits(id, method, target)))
}

/// Whether the path of request target `target` lies within `prefix`, segment-wise.
fn path_within(target: &str, prefix: &str) -> bool {
    let path = target.split(['?', '#']).next().unwrap_or("");
    if !path.starts_with('/') || resolves_elsewhere(path) {
        return false;
    }
    let Some(rest) = path.strip_prefix(prefix) else {
        return false;
    };
    prefix.ends_with('/') || rest.is_empty() || rest.starts_with('/')
}

/// A dot segment, or an encoded dot or slash an upstream may decode into one.
fn resolves_elsewhere(path: &str) -> bool {
    let lower = path.to_ascii_lowercase();
    lower.contains("%2e")
        || lower.contains("%2f")
        || lower.contains("%5c")
        || lower.contains('\\')
        || path.split('/').any(|s| s == "." || s == "..")
}

/// An address block: `10.0.0.0/8`, `2001:db8::/32`, or one address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl Cidr {
    pub fn parse(text: &str) -> Result<Self, String> {
        let (addr, prefix) = match text.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (text, None),
        };
        let network: IpAddr = addr
            .trim()
            .parse()
            .map_err(|_| format!("{text:?} is not an address or ADDRESS/PREFIX block"))?;
        let max = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => match p.trim().parse::<u8>() {
                Ok(n) if n <= max => n,
                _ => return Err(format!("{text:?}: the prefix length must be 0 to {max}")),
            },
        };
        let cidr = Cidr { network, prefix };
        if cidr.masked(network) != Some(bits(network)) {
            return Err(format!(
                "{text:?}: address bits are set beyond the prefix length"
            ));
        }
        Ok(cidr)
    }

    /// Whether `addr` lies in the block (an IPv4-mapped IPv6 address counts as IPv4).
    pub fn contains(&self, addr: IpAddr) -> bool {
        self.masked(addr.to_canonical()) == Some(bits(self.network))
    }

    /// `addr`'s bits under this block's mask; `None` for the other address family.
    fn masked(&self, addr: IpAddr) -> Option<u128> {
        if addr.is_ipv4() != self.network.is_ipv4() {
            return None;
        }
        let width = if addr.is_ipv4() { 32 } else { 128 };
        let shift = width - u32::from(self.prefix);
        let mask = if shift >= 128 { 0 } else { u128::MAX << shift };
        Some(bits(addr) & mask)
    }
}

fn bits(addr: IpAddr) -> u128 {
    match addr {
        IpAddr::V4(a) => u128::from(u32::from(a)),
        IpAddr::V6(a) => u128::from(a),
    }
}

#[cfg(test)]
mod tests;
