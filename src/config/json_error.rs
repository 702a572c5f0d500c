//! Naming the field in serde_json's errors, which give only a line and a column.
//!
//! Input: the config text and a `serde_json::Error`. Output: a [`ConfigError`] whose field is
//! the dotted path of the key at the error position (`transport.pacing`), found by scanning
//! the text up to that position and tracking which object key every open `{` belongs to. An
//! unknown key is named with the object that holds it (`tls.insecure_skip_verify: unknown
//! field in "tls"`), since serde reports it before its colon, where the key of the previous
//! field would otherwise be taken for it.

use super::ConfigError;

/// A serde_json error, with the field it is about.
pub(super) fn config_error(text: &str, e: &serde_json::Error) -> ConfigError {
    let position = format!(" at line {} column {}", e.line(), e.column());
    let full = e.to_string();
    let message = full.strip_suffix(&position).unwrap_or(&full);
    let where_ = format!("line {}, column {}", e.line(), e.column());
    let scan = scan(text, offset_of(text, e.line(), e.column()));
    if let Some((key, expected)) = unknown_field(message) {
        let holder = scan.enclosing();
        let place = if holder.is_empty() {
            "at the top level".to_string()
        } else {
            format!("in {holder:?}")
        };
        let field = if holder.is_empty() {
            key.to_string()
        } else {
            format!("{holder}.{key}")
        };
        return ConfigError::new(
            field,
            format!("unknown field {place}; {expected} ({where_})"),
        );
    }
    let field = scan.current();
    let field = if field.is_empty() {
        "(json)".to_string()
    } else {
        field
    };
    ConfigError::new(field, full)
}

/// `("key", "expected one of ...")` from serde's "unknown field `key`, expected one of ...".
fn unknown_field(message: &str) -> Option<(&str, &str)> {
    let rest = message.strip_prefix("unknown field `")?;
    let (key, expected) = rest.split_once("`, ")?;
    Some((key, expected))
}

/// Byte offset just past (one-based) `column` of `line`.
fn offset_of(text: &str, line: usize, column: usize) -> usize {
    let before: usize = text
        .split_inclusive('\n')
        .take(line.saturating_sub(1))
        .map(str::len)
        .sum();
    (before + column).min(text.len())
}

/// The open objects and arrays at a position, each with the key its current member has.
struct Scan {
    /// One entry per open `{` or `[`: the key being read in it (always `None` for arrays).
    open: Vec<Option<String>>,
}

impl Scan {
    /// Dotted path of the keys of the open containers but the innermost: the object holding
    /// a key that was read but whose colon was not reached.
    fn enclosing(&self) -> String {
        let outer = &self.open[..self.open.len().saturating_sub(1)];
        join(outer)
    }

    /// Dotted path of every open key: the field whose value is at the position.
    fn current(&self) -> String {
        join(&self.open)
    }
}

fn join(keys: &[Option<String>]) -> String {
    keys.iter().flatten().cloned().collect::<Vec<_>>().join(".")
}

/// Scans `text[..end]` (JSON, possibly cut anywhere) for the open containers and their keys.
fn scan(text: &str, end: usize) -> Scan {
    let bytes = &text.as_bytes()[..end];
    let mut open: Vec<Option<String>> = Vec::new();
    let mut last_string: Option<String> = None;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'"' => {
                let close = string_end(bytes, i + 1);
                last_string = Some(String::from_utf8_lossy(&bytes[i + 1..close]).into_owned());
                i = close;
            }
            b':' => {
                if let Some(top) = open.last_mut() {
                    *top = last_string.take();
                }
            }
            b',' => {
                if let Some(top) = open.last_mut() {
                    *top = None;
                }
            }
            b'{' | b'[' => open.push(None),
            b'}' | b']' => {
                open.pop();
            }
            _ => {}
        }
        i += 1;
    }
    Scan { open }
}

/// Index of the quote closing a string whose content starts at `start` (or the end).
fn string_end(bytes: &[u8], start: usize) -> usize {
    let mut i = start;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b'"' => return i,
            _ => i += 1,
        }
    }
    bytes.len()
}
