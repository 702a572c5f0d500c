//! The `http` section: HTTP/1.1 settings of each role. The client's listener (session wait,
//! connection cap, timeouts, size limits, forwarding fields, methods allowed in 0-RTT) and the
//! server's (access log, head size limit); both have the WebSocket tunnel idle timeout. The shared `http.drain_timeout_ms` belongs to the
//! operating settings in the parent module, whose `DEFAULT_*` consts are the defaults here.

use std::path::Path;
use std::time::Duration;

use super::{file, millis, positive, CompressionPolicy, ConfigError};
use super::{
    DEFAULT_ACCESS_LOG, DEFAULT_BODY_TIMEOUT_MS, DEFAULT_EARLY_DATA_METHODS, DEFAULT_FORWARDED,
    DEFAULT_HEAD_TIMEOUT_MS, DEFAULT_KEEPALIVE_TIMEOUT_MS, DEFAULT_MAX_CONNECTIONS,
    DEFAULT_MAX_HEAD_BYTES, DEFAULT_SESSION_WAIT_MS, DEFAULT_TUNNEL_IDLE_TIMEOUT_MS, DEFAULT_VIA,
    DEFAULT_X_FORWARDED_FOR, MAX_TUNNEL_IDLE_TIMEOUT_MS,
};

#[derive(Debug, Clone)]
pub struct ClientHttpConfig {
    pub session_wait: Duration,
    pub max_connections: usize,
    pub head_timeout: Duration,
    pub keepalive_timeout: Duration,
    pub max_head_bytes: usize,
    /// Largest request body accepted (413 beyond); `None` = no limit.
    pub max_body_bytes: Option<u64>,
    pub access_log: bool,
    /// Which forwarding fields the client side adds to requests.
    pub forwarding: Forwarding,
    /// Methods that may travel in 0-RTT (replayable; keep them idempotent).
    pub early_data_methods: Vec<String>,
    /// A request body that brings no byte for this long is given up (408, or a reset once
    /// the response started).
    pub body_timeout: Duration,
    /// A WebSocket tunnel moving no byte either way for this long is reset.
    pub tunnel_idle_timeout: Duration,
    /// Which request bodies go compressed over the link (`http.compression`).
    pub compression: CompressionPolicy,
}

/// Forwarding fields added to each request (RFC 7239 `Forwarded`, `Via`, `X-Forwarded-For`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Forwarding {
    pub forwarded: bool,
    pub via: bool,
    pub x_forwarded_for: bool,
}

#[derive(Debug, Clone)]
pub struct ServerHttpConfig {
    pub access_log: bool,
    pub max_head_bytes: usize,
    /// A WebSocket tunnel moving no byte either way for this long is reset.
    pub tunnel_idle_timeout: Duration,
    /// Which response bodies go compressed over the link (`http.compression`).
    pub compression: CompressionPolicy,
}

/// The client's `http` section.
pub(super) fn client(
    http: &file::ClientHttpFile,
    base: &Path,
) -> Result<ClientHttpConfig, ConfigError> {
    Ok(ClientHttpConfig {
        session_wait: millis(
            "http.session_wait_ms",
            http.session_wait_ms,
            DEFAULT_SESSION_WAIT_MS,
        )?,
        max_connections: positive(
            "http.max_connections",
            http.max_connections.unwrap_or(DEFAULT_MAX_CONNECTIONS),
        )?,
        head_timeout: millis(
            "http.head_timeout_ms",
            http.head_timeout_ms,
            DEFAULT_HEAD_TIMEOUT_MS,
        )?,
        keepalive_timeout: millis(
            "http.keepalive_timeout_ms",
            http.keepalive_timeout_ms,
            DEFAULT_KEEPALIVE_TIMEOUT_MS,
        )?,
        max_head_bytes: head_bytes("http.max_head_bytes", http.max_head_bytes)?,
        max_body_bytes: http
            .max_body_bytes
            .map(|v| positive("http.max_body_bytes", v))
            .transpose()?,
        access_log: http.access_log.unwrap_or(DEFAULT_ACCESS_LOG),
        early_data_methods: early_data_methods(http.early_data_methods.clone())?,
        forwarding: Forwarding {
            forwarded: http.forwarded.unwrap_or(DEFAULT_FORWARDED),
            via: http.via.unwrap_or(DEFAULT_VIA),
            x_forwarded_for: http.x_forwarded_for.unwrap_or(DEFAULT_X_FORWARDED_FOR),
        },
        body_timeout: millis(
            "http.body_timeout_ms",
            http.body_timeout_ms,
            DEFAULT_BODY_TIMEOUT_MS,
        )?,
        tunnel_idle_timeout: tunnel_idle_timeout(http.tunnel_idle_timeout_ms)?,
        compression: super::compression::policy(http.compression.as_ref(), base)?,
    })
}

/// The server's `http` section.
pub(super) fn server(
    http: &file::ServerHttpFile,
    base: &Path,
) -> Result<ServerHttpConfig, ConfigError> {
    Ok(ServerHttpConfig {
        access_log: http.access_log.unwrap_or(DEFAULT_ACCESS_LOG),
        max_head_bytes: head_bytes("http.max_head_bytes", http.max_head_bytes)?,
        tunnel_idle_timeout: tunnel_idle_timeout(http.tunnel_idle_timeout_ms)?,
        compression: super::compression::policy(http.compression.as_ref(), base)?,
    })
}

fn early_data_methods(raw: Option<Vec<String>>) -> Result<Vec<String>, ConfigError> {
    let methods = raw.unwrap_or_else(|| {
        DEFAULT_EARLY_DATA_METHODS
            .iter()
            .map(|m| m.to_string())
            .collect()
    });
    for m in &methods {
        let token = !m.is_empty()
            && m.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
        if !token {
            return Err(ConfigError::new(
                "http.early_data_methods",
                format!("{m:?} is not a method name"),
            ));
        }
    }
    Ok(methods)
}

/// `http.tunnel_idle_timeout_ms`: positive, at most [`MAX_TUNNEL_IDLE_TIMEOUT_MS`].
fn tunnel_idle_timeout(value: Option<u64>) -> Result<Duration, ConfigError> {
    let field = "http.tunnel_idle_timeout_ms";
    let timeout = millis(field, value, DEFAULT_TUNNEL_IDLE_TIMEOUT_MS)?;
    if timeout > Duration::from_millis(MAX_TUNNEL_IDLE_TIMEOUT_MS) {
        return Err(ConfigError::new(
            field,
            format!("must be at most {MAX_TUNNEL_IDLE_TIMEOUT_MS} ms (one day)"),
        ));
    }
    Ok(timeout)
}

fn head_bytes(field: &str, value: Option<usize>) -> Result<usize, ConfigError> {
    let v = value.unwrap_or(DEFAULT_MAX_HEAD_BYTES);
    if !(1024..=1024 * 1024).contains(&v) {
        return Err(ConfigError::new(
            field,
            "must be between 1024 and 1048576 bytes",
        ));
    }
    Ok(v)
}
