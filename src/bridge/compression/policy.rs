//! Which bodies go compressed on the link ([`Policy::compresses`]: the one place that decision
//! is taken), from `http.compression` and whether the session uses a shared dictionary.

use std::sync::Arc;

use quiche::h3::NameValue;

use super::Dictionary;

/// Which bodies are compressed (`http.compression`; the default compresses nothing).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Policy {
    /// The default of the services (server) and routes (client) that do not say.
    pub enabled: bool,
    /// Bodies declaring fewer bytes go plain; an unknown length counts as large.
    pub min_bytes: u64,
    /// Media types: `type/*`, `+suffix` or an exact `type/subtype` (lowercase).
    pub types: Vec<String>,
    /// The shared dictionary this end announces (`http.compression.dictionary`).
    pub dictionary: Option<Arc<Dictionary>>,
    /// What `min_bytes` is on a session using the dictionary.
    pub dictionary_min_bytes: u64,
}

impl Policy {
    /// Whether a body with these (HTTP/3, lowercase) fields is worth compressing: not
    /// content-encoded already, of a listed type, not declared shorter than `min_bytes`
    /// (`dictionary_min_bytes` when `with_dictionary`: the session uses the dictionary).
    /// Whether its service or route compresses at all is the caller's question
    /// (`services[].compression`, `routes[].compression`, defaulting to `enabled`).
    pub fn compresses<T: NameValue>(&self, fields: &[T], with_dictionary: bool) -> bool {
        let min_bytes = match with_dictionary {
            true => self.dictionary_min_bytes,
            false => self.min_bytes,
        };
        let value = |name: &[u8]| {
            fields.iter().find(|f| f.name() == name).map(|f| {
                String::from_utf8_lossy(f.value())
                    .trim()
                    .to_ascii_lowercase()
            })
        };
        let encoded = fields
            .iter()
            .filter(|f| f.name() == b"content-encoding")
            .any(|f| !f.value().trim_ascii().eq_ignore_ascii_case(b"identity"));
        let short = value(b"content-length")
            .and_then(|v| v.parse::<u64>().ok())
            .is_some_and(|n| n < min_bytes.max(1));
        let typed = value(b"content-type").is_some_and(|t| self.lists_type(&t));
        !encoded && !short && typed
    }

    /// Whether the media type of a Content-Type value (lowercase) is listed.
    fn lists_type(&self, content_type: &str) -> bool {
        let media = content_type.split(';').next().unwrap_or("").trim();
        let Some((kind, _)) = media.split_once('/') else {
            return false;
        };
        self.types.iter().any(|t| {
            if let Some(suffix) = t.strip_prefix('+') {
                media.ends_with(&format!("+{suffix}"))
            } else if let Some(prefix) = t.strip_suffix("/*") {
                kind == prefix
            } else {
                media == t
            }
        })
    }
}
