//! The names certificates are issued for, checked before anything is made: `--server-name`
//! (an IP address, or a DNS name) and `--client-name` (a DNS-style name, since the server
//! matches `tls.allowed_client_names` against the client certificate's DNS names).

use std::fmt;
use std::net::IpAddr;

use super::CertsError;

/// What the server certificate is issued for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerName {
    Dns(String),
    Ip(IpAddr),
}

impl ServerName {
    /// Parses `--server-name`: an IP address, or a DNS name.
    pub fn parse(name: &str) -> Result<ServerName, CertsError> {
        if let Ok(ip) = name.parse::<IpAddr>() {
            return Ok(ServerName::Ip(ip));
        }
        check_dns_name(name).map_err(|reason| CertsError::InvalidName {
            what: "server name",
            name: name.to_string(),
            reason: format!("{reason} (expected a DNS name or an IP address)"),
        })?;
        Ok(ServerName::Dns(name.to_string()))
    }
}

impl fmt::Display for ServerName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServerName::Dns(name) => f.write_str(name),
            ServerName::Ip(ip) => write!(f, "{ip}"),
        }
    }
}

/// Checks `--client-name`: a DNS-style name, since the server matches
/// `tls.allowed_client_names` against the certificate's DNS names.
pub fn check_client_name(name: &str) -> Result<(), CertsError> {
    let reason = if name.parse::<IpAddr>().is_ok() {
        Some("an IP address cannot be a client name (the server matches DNS names)".to_string())
    } else {
        check_dns_name(name).err()
    };
    match reason {
        None => Ok(()),
        Some(reason) => Err(CertsError::InvalidName {
            what: "client name",
            name: name.to_string(),
            reason,
        }),
    }
}

/// Letters, digits and hyphens in dot-separated labels of 1 to 63 characters (no leading or
/// trailing hyphen), 253 characters at most, not all-numeric (a mistyped IP address).
fn check_dns_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("must not be empty".into());
    }
    if name.len() > 253 {
        return Err("longer than 253 characters".into());
    }
    for label in name.split('.') {
        if label.is_empty() {
            return Err("empty label (leading, trailing or double dot)".into());
        }
        if label.len() > 63 {
            return Err(format!("label {label:?} is longer than 63 characters"));
        }
        if let Some(c) = label
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || *c == '-'))
        {
            return Err(format!(
                "character {c:?} is not allowed (letters, digits, '-' and '.' only)"
            ));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(format!("label {label:?} starts or ends with '-'"));
        }
    }
    if name.chars().all(|c| c.is_ascii_digit() || c == '.') {
        return Err("looks like an IP address but is not a valid one".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::DEFAULT_CLIENT_NAME;
    use super::*;

    #[test]
    fn names() {
        assert_eq!(
            ServerName::parse("127.0.0.1").unwrap(),
            ServerName::Ip("127.0.0.1".parse().unwrap())
        );
        assert_eq!(
            ServerName::parse("::1").unwrap(),
            ServerName::Ip("::1".parse().unwrap())
        );
        assert_eq!(
            ServerName::parse("b.example.internal").unwrap(),
            ServerName::Dns("b.example.internal".into())
        );
        for bad in [
            "",
            "a..b",
            ".a",
            "a.",
            "-a",
            "a-",
            "a b",
            "*.x",
            "a_b",
            "1.2.3.256",
            "é.x",
        ] {
            assert!(ServerName::parse(bad).is_err(), "{bad:?} accepted");
        }
        assert!(check_client_name(DEFAULT_CLIENT_NAME).is_ok());
        assert!(check_client_name("client-a.example.internal").is_ok());
        assert!(check_client_name("10.0.0.1").is_err());
        assert!(check_client_name("a/b").is_err());
        assert!(ServerName::parse(&"a".repeat(64)).is_err());
        assert!(ServerName::parse(&["a"; 128].join(".")).is_err());
    }
}
