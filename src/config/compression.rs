//! The `http.compression` section of both roles: link compression of bodies between the two
//! ptproxy ends ([`crate::bridge::compression`]), off by default (README "Link compression"
//! says why). Validated into the [`Policy`] the pumps' callers consult.

use std::path::Path;
use std::sync::Arc;

use super::{file, ConfigError};
use super::{
    DEFAULT_COMPRESSION_ENABLED, DEFAULT_COMPRESSION_MIN_BYTES,
    DEFAULT_COMPRESSION_MIN_BYTES_WITH_DICTIONARY, DEFAULT_COMPRESSION_TYPES,
};
use crate::bridge::compression::Dictionary;
pub use crate::bridge::compression::Policy as CompressionPolicy;

/// `http.compression` (absent: the defaults, compression off); `base` is the folder a relative
/// `dictionary` path resolves against.
pub(super) fn policy(
    raw: Option<&file::CompressionFile>,
    base: &Path,
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
    let dictionary = raw
        .dictionary
        .as_deref()
        .map(|path| dictionary(base, path))
        .transpose()?;
    Ok(CompressionPolicy {
        enabled: raw.enabled.unwrap_or(DEFAULT_COMPRESSION_ENABLED),
        min_bytes: raw.min_bytes.unwrap_or(DEFAULT_COMPRESSION_MIN_BYTES),
        types,
        dictionary,
        dictionary_min_bytes: raw
            .min_bytes
            .unwrap_or(DEFAULT_COMPRESSION_MIN_BYTES_WITH_DICTIONARY),
    })
}

/// `http.compression.dictionary`: a zstd dictionary file, read and prepared now (at start and
/// on each reload).
fn dictionary(base: &Path, path: &str) -> Result<Arc<Dictionary>, ConfigError> {
    let full = base.join(path);
    Dictionary::load(&full).map_err(|reason| {
        ConfigError::new(
            "http.compression.dictionary",
            format!("{}: {reason}", full.display()),
        )
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
