//! Small validators the configuration sections share: positive numbers and durations,
//! socket and `HOST:PORT` addresses, files that must exist (TLS material, the ticket key). Each
//! error names the field it is about.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{ConfigError, TlsFiles, TICKET_KEY_LEN};
use crate::resolve::HostPort;

/// Reads the 48-byte session ticket key.
pub(super) fn ticket_key(base: &Path, path: &str) -> Result<Vec<u8>, ConfigError> {
    let full = existing_file(base, "tls.ticket_key_file", path)?;
    let key = std::fs::read(&full)
        .map_err(|e| ConfigError::new("tls.ticket_key_file", format!("{}: {e}", full.display())))?;
    if key.len() != TICKET_KEY_LEN {
        return Err(ConfigError::new(
            "tls.ticket_key_file",
            format!("{} holds {} bytes; it must hold exactly {TICKET_KEY_LEN} random bytes (head -c 48 /dev/urandom)", full.display(), key.len()),
        ));
    }
    Ok(key)
}

/// A positive duration in milliseconds, or the default.
pub(super) fn millis(
    field: &str,
    value: Option<u64>,
    default: u64,
) -> Result<Duration, ConfigError> {
    let ms = positive(field, value.unwrap_or(default))?;
    Ok(Duration::from_millis(ms))
}

pub(super) fn positive<T: PartialOrd + Default>(field: &str, value: T) -> Result<T, ConfigError> {
    if value > T::default() {
        Ok(value)
    } else {
        Err(ConfigError::new(field, "must be greater than zero"))
    }
}

pub(super) fn socket_addr(field: &str, text: &str) -> Result<SocketAddr, ConfigError> {
    if let Ok(addr) = text.parse() {
        return Ok(addr);
    }
    let mut found = text.to_socket_addrs().map_err(|e| {
        ConfigError::new(field, format!("{text:?} is not a HOST:PORT address ({e})"))
    })?;
    found
        .next()
        .ok_or_else(|| ConfigError::new(field, format!("{text:?} resolves to no address")))
}

/// A `HOST:PORT` target: syntax checked now, the name resolved when connecting.
pub(super) fn host_port(field: &str, text: &str) -> Result<HostPort, ConfigError> {
    HostPort::parse(text).map_err(|reason| ConfigError::new(field, reason))
}

pub(super) fn tls_files(
    base: &Path,
    ca: &str,
    cert: &str,
    key: &str,
) -> Result<TlsFiles, ConfigError> {
    Ok(TlsFiles {
        ca: existing_file(base, "tls.ca", ca)?,
        cert: existing_file(base, "tls.cert", cert)?,
        key: existing_file(base, "tls.key", key)?,
    })
}

/// Resolves `path` against `base` and checks that it names a readable file.
fn existing_file(base: &Path, field: &str, path: &str) -> Result<PathBuf, ConfigError> {
    if path.is_empty() {
        return Err(ConfigError::new(field, "must not be empty"));
    }
    let full = base.join(path);
    match std::fs::metadata(&full) {
        Ok(m) if m.is_file() => Ok(full),
        Ok(_) => Err(ConfigError::new(
            field,
            format!("{} is not a file", full.display()),
        )),
        Err(e) => Err(ConfigError::new(field, format!("{}: {e}", full.display()))),
    }
}
