//! HTTP/1.x message heads: strict parsing into owned values, and lookups.
//!
//! Inputs: the bytes buffered from a peer, starting at a message boundary,
//! plus [`Limits`]. Outputs: `Ok(None)` while the head is incomplete but
//! still within limits, `Ok(Some((head, consumed)))` once the final empty
//! line arrived (`consumed` covers the whole head, so a pipelined message
//! starts right after), or a [`ParseError`] naming the status to answer.
//!
//! httparse does the tokenizing, inside a thin strict layer, in three steps:
//!
//! 1. `strict` pre-scans the framing httparse is lenient about: it locates
//!    the start line and the empty line ending the head, requires CRLF on
//!    every line (httparse also takes a bare LF), skips leading empty lines
//!    of requests only, and applies the size limits (414 / 431).
//! 2. httparse, configured with every leniency off, splits the start line
//!    and the header fields (`request`, `response`); the header array
//!    has `max_headers` slots, so one field more is a 431.
//! 3. ptproxy's semantic checks: request-target forms and `Host`
//!    (`target`), status codes 100..=599, `HTTP/1.2`..`HTTP/1.9` read as
//!    HTTP/1.1.
//!
//! Where httparse refuses a head, the reason it gives is coarser than
//! ptproxy's (`Token` covers the method, a doubled space and the target), so
//! the refused line is diagnosed again by ptproxy's own grammar checks, in
//! wire order, to name the reason ptproxy has always answered with. That is
//! also the one place where ptproxy accepts what httparse does not: versions
//! `HTTP/1.2`..`HTTP/1.9` (RFC 9112 2.3), whose fields httparse then splits
//! with `httparse::parse_headers`.
//!
//! The former own tokenizer lives on as a test oracle (`oracle.rs`): a
//! differential test holds both to the same answers. Measured with
//! `tests::cost_against_the_former_tokenizer`, httparse is as fast on a tiny
//! request and 1.6-1.8x as fast on 250-500 byte heads.
//!
//! Strictness (RFC 9112, hardened against request smuggling): every line
//! ends in CRLF (a bare LF or bare CR is an error), field names are tokens
//! directly followed by the colon, values hold no CTL except HTAB, obs-fold
//! is rejected, request targets must be in one of the four forms allowed
//! for their method, and HTTP/1.1 requests carry exactly one valid `Host`.
//! Versions `HTTP/1.2`..`HTTP/1.9` are read as HTTP/1.1 (RFC 9112 2.3);
//! other majors get 505. Empty lines before a request line are skipped but
//! count toward `max_head_bytes`; `max_request_line` also bounds the status
//! line of responses. Every response error maps to 502.
//!
//! Invariant: a returned head re-serializes (see `h1::write`) to bytes that
//! parse back to an equal value.

use std::fmt;

use super::syntax::list_elements;

#[cfg(test)]
mod differential;
#[cfg(test)]
mod oracle;
mod request;
mod response;
mod strict;
mod target;
#[cfg(test)]
mod tests;

pub(crate) use strict::{crlf_lines, parse_field_line};
pub(crate) use target::{is_valid_authority, is_valid_target};

/// HTTP/1 minor version of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    Http10,
    Http11,
}

impl Version {
    /// The protocol version as written on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Version::Http10 => "HTTP/1.0",
            Version::Http11 => "HTTP/1.1",
        }
    }
}

/// One header field; the name keeps the case it was received with, the
/// value has surrounding whitespace removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub name: String,
    pub value: Vec<u8>,
}

impl Header {
    pub fn new(name: impl Into<String>, value: impl Into<Vec<u8>>) -> Self {
        Header {
            name: name.into(),
            value: value.into(),
        }
    }

    /// Case-insensitive name comparison.
    pub fn is_named(&self, name: &str) -> bool {
        self.name.eq_ignore_ascii_case(name)
    }
}

/// A parsed request line plus header fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHead {
    pub method: String,
    pub target: String,
    pub version: Version,
    pub headers: Vec<Header>,
}

/// A parsed status line plus header fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseHead {
    pub version: Version,
    pub status: u16,
    pub reason: String,
    pub headers: Vec<Header>,
}

/// Size limits applied while a head is parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Whole head, including skipped leading empty lines and the final CRLF.
    pub max_head_bytes: usize,
    /// Number of header fields.
    pub max_headers: usize,
    /// Request line (or status line) without its CRLF.
    pub max_request_line: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_head_bytes: 65536,
            max_headers: 100,
            max_request_line: 8192,
        }
    }
}

/// Error with the HTTP status to answer and a short human reason
/// ("invalid header name", "request line too long", ...).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    pub status: u16,
    pub reason: &'static str,
}

impl ParseError {
    pub const fn new(status: u16, reason: &'static str) -> Self {
        ParseError { status, reason }
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.reason, self.status)
    }
}

impl std::error::Error for ParseError {}

/// What went wrong, before it is mapped to a request or response status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    Invalid(&'static str),
    TooLarge(&'static str),
    StartLineTooLong,
    VersionNotSupported,
}

impl Fault {
    fn for_request(self) -> ParseError {
        match self {
            Fault::Invalid(reason) => ParseError::new(400, reason),
            Fault::TooLarge(reason) => ParseError::new(431, reason),
            Fault::StartLineTooLong => ParseError::new(414, "request line too long"),
            Fault::VersionNotSupported => ParseError::new(505, "HTTP version not supported"),
        }
    }

    fn for_response(self) -> ParseError {
        let reason = match self {
            Fault::Invalid(reason) | Fault::TooLarge(reason) => reason,
            Fault::StartLineTooLong => "status line too long",
            Fault::VersionNotSupported => "HTTP version not supported",
        };
        ParseError::new(502, reason)
    }
}

/// Parses a request head from the start of `buf`.
///
/// `Ok(None)`: incomplete and still within limits. `Ok(Some((head, n)))`:
/// `n` bytes (including skipped leading empty lines and the final CRLFCRLF)
/// form the head; the body or next request starts at `buf[n..]`.
pub fn parse_request(
    buf: &[u8],
    limits: &Limits,
) -> Result<Option<(RequestHead, usize)>, ParseError> {
    request::parse_request_head(buf, limits).map_err(Fault::for_request)
}

/// Parses a response head from the start of `buf`; same contract as
/// [`parse_request`], every error carries status 502.
pub fn parse_response(
    buf: &[u8],
    limits: &Limits,
) -> Result<Option<(ResponseHead, usize)>, ParseError> {
    response::parse_response_head(buf, limits).map_err(Fault::for_response)
}

/// Value of the first field named `name` (case-insensitive).
pub fn find_header<'a>(headers: &'a [Header], name: &str) -> Option<&'a [u8]> {
    headers
        .iter()
        .find(|h| h.is_named(name))
        .map(|h| h.value.as_slice())
}

/// Values of every field named `name` (case-insensitive), in order.
pub fn headers_named<'a>(headers: &'a [Header], name: &'a str) -> impl Iterator<Item = &'a [u8]> {
    headers
        .iter()
        .filter(move |h| h.is_named(name))
        .map(|h| h.value.as_slice())
}

/// Whether any `Connection` field lists `token` (case-insensitive).
pub fn has_connection_token(headers: &[Header], token: &str) -> bool {
    headers_named(headers, "connection")
        .flat_map(list_elements)
        .any(|element| element.eq_ignore_ascii_case(token.as_bytes()))
}

/// HTTP/1.1 persists unless `close`; HTTP/1.0 only with `keep-alive`.
fn keep_alive(version: Version, headers: &[Header]) -> bool {
    if has_connection_token(headers, "close") {
        return false;
    }
    version == Version::Http11 || has_connection_token(headers, "keep-alive")
}

impl RequestHead {
    /// Value of the first field named `lname` (case-insensitive).
    pub fn header(&self, lname: &str) -> Option<&[u8]> {
        find_header(&self.headers, lname)
    }

    /// Values of all fields named `lname` (case-insensitive), in order.
    pub fn headers_named<'a>(&'a self, lname: &'a str) -> impl Iterator<Item = &'a [u8]> {
        headers_named(&self.headers, lname)
    }

    /// Whether the client asked to keep the connection open afterwards.
    pub fn wants_keep_alive(&self) -> bool {
        keep_alive(self.version, &self.headers)
    }
}

impl ResponseHead {
    /// Value of the first field named `lname` (case-insensitive).
    pub fn header(&self, lname: &str) -> Option<&[u8]> {
        find_header(&self.headers, lname)
    }

    /// Values of all fields named `lname` (case-insensitive), in order.
    pub fn headers_named<'a>(&'a self, lname: &'a str) -> impl Iterator<Item = &'a [u8]> {
        headers_named(&self.headers, lname)
    }

    /// Whether the server allows reusing the connection afterwards.
    pub fn wants_keep_alive(&self) -> bool {
        keep_alive(self.version, &self.headers)
    }
}
