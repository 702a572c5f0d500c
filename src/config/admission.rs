//! The server's `admission` section: which new QUIC handshakes it takes on. Caps on handshakes
//! in progress and on sessions, the handshake timeout, the per-source handshake rate and when
//! to answer with a stateless Retry. Defaults are the `DEFAULT_*` consts of the parent module.

use std::time::Duration;

use super::{file, millis, positive, ConfigError};
use super::{
    DEFAULT_HANDSHAKE_TIMEOUT_MS, DEFAULT_MAX_HANDSHAKES, DEFAULT_MAX_SESSIONS, DEFAULT_RETRY,
    DEFAULT_SOURCE_BURST, DEFAULT_SOURCE_RATE,
};

/// When a new client must prove its address with a Retry round trip first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryMode {
    /// Only while handshakes pile up (a quarter of `max_handshakes` in progress): the normal
    /// reconnect keeps its 0-RTT, a flood costs no state.
    Auto,
    /// Every new handshake (costs one round trip and 0-RTT).
    Always,
    /// Never (the caps and the rate limit still apply).
    Never,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdmissionConfig {
    pub retry: RetryMode,
    /// Connections still in handshake at once; more are refused.
    pub max_handshakes: usize,
    /// Connections at once (handshaking or up); more are refused.
    pub max_sessions: usize,
    /// A handshake not finished by then is dropped (well before the idle timeout).
    pub handshake_timeout: Duration,
    /// New handshakes per second per source IP address (sustained).
    pub source_rate: u32,
    /// New handshakes per source IP address allowed at once.
    pub source_burst: u32,
}

impl AdmissionConfig {
    /// Handshakes in progress from which `retry: "auto"` sends Retry.
    pub fn auto_retry_threshold(&self) -> usize {
        (self.max_handshakes / 4).max(1)
    }
}

pub(super) fn validate(raw: file::AdmissionFile) -> Result<AdmissionConfig, ConfigError> {
    let retry = match raw.retry.as_deref() {
        None => DEFAULT_RETRY,
        Some("auto") => RetryMode::Auto,
        Some("always") => RetryMode::Always,
        Some("never") => RetryMode::Never,
        Some(other) => {
            return Err(ConfigError::new(
                "admission.retry",
                format!("unknown mode {other:?} (expected \"auto\", \"always\" or \"never\")"),
            ))
        }
    };
    let max_handshakes = positive(
        "admission.max_handshakes",
        raw.max_handshakes.unwrap_or(DEFAULT_MAX_HANDSHAKES),
    )?;
    let max_sessions = positive(
        "admission.max_sessions",
        raw.max_sessions.unwrap_or(DEFAULT_MAX_SESSIONS),
    )?;
    let source_rate = positive(
        "admission.source_rate",
        raw.source_rate.unwrap_or(DEFAULT_SOURCE_RATE),
    )?;
    let source_burst = positive(
        "admission.source_burst",
        raw.source_burst.unwrap_or(DEFAULT_SOURCE_BURST),
    )?;
    Ok(AdmissionConfig {
        retry,
        max_handshakes,
        max_sessions,
        handshake_timeout: millis(
            "admission.handshake_timeout_ms",
            raw.handshake_timeout_ms,
            DEFAULT_HANDSHAKE_TIMEOUT_MS,
        )?,
        source_rate,
        source_burst,
    })
}
