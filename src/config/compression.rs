//! The `http.compression` section of both roles: link compression of bodies between the two
//! ptproxy ends ([`crate::bridge::compression`]), off by default (README "Link compression"
//! says why). Validated into the [`Policy`] the pumps' callers consult.

use super::{file, ConfigError};
use super::{
    DEFAULT_COMPRESSION_ENABLED, DEFAULT_COMPRESSION_MIN_BYTES, DEFAULT_COMPRESSION_TYPES,
};
pub use crate::bridge::compression::Policy as CompressionPolicy;

/// `http.compression` (absent: the defaults, compression off).
pub(super) fn policy(
    raw: Option<&file::CompressionFile>,
) -> Result<CompressionPolicy, ConfigError> {
    let default = file::CompressionFile::default();
    let raw = raw.unwrap_or(&default);
    let types = match &raw.types {
        Some(list) => list
            .iter()
            .map(|t| media_pattern(t))
            .collect::<Result<Vec<_>, _>>()?,
        None => DEFAULT_COMPRESSION_TYPES
            .iter()
            .map(|t| t.to_string())
            .collect(),
    };
    Ok(CompressionPolicy {
        enabled: raw.enabled.unwrap_or(DEFAULT_COMPRESSION_ENABLED),
        min_bytes: raw.min_bytes.unwrap_or(DEFAULT_COMPRESSION_MIN_BYTES),
        types,
    })
}

/// One entry of `http.compression.types`, lowercased: `type/*`, `+suffix` or `type/subtype`.
fn media_pattern(raw: &str) -> Result<String, ConfigError> {
    let t = raw.trim().to_ascii_lowercase();
    let token = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$&-^_.+".contains(&b))
    };
    let valid = match (t.strip_prefix('+'), t.split_once('/')) {
        (Some(suffix), None) => token(suffix),
        (None, Some((kind, "*"))) => token(kind),
        (None, Some((kind, sub))) => token(kind) && token(sub),
        _ => false,
    };
    if !valid {
        return Err(ConfigError::new(
            "http.compression.types",
            format!("{raw:?} is not a media type, type/* or +suffix"),
        ));
    }
    Ok(t)
}
