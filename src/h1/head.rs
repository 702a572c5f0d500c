//! HTTP/1.x message heads: strict parsing into owned values, and lookups.
//!
//! Inputs: the bytes buffered from a peer, starting at a message boundary,
//! plus [`Limits`]. Outputs: `Ok(None)` while the head is incomplete but
//! still within limits, `Ok(Some((head, consumed)))` once the final empty
//! line arrived (`consumed` covers the whole head, so a pipelined message
//! starts right after), or a [`ParseError`] naming the status to answer.
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

use super::syntax::{
    ascii_string, is_field_byte, is_ows, is_tchar, is_token, list_elements, trim_ows,
};

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
    parse_request_head(buf, limits).map_err(Fault::for_request)
}

/// Parses a response head from the start of `buf`; same contract as
/// [`parse_request`], every error carries status 502.
pub fn parse_response(
    buf: &[u8],
    limits: &Limits,
) -> Result<Option<(ResponseHead, usize)>, ParseError> {
    parse_response_head(buf, limits).map_err(Fault::for_response)
}

fn parse_request_head(buf: &[u8], limits: &Limits) -> Result<Option<(RequestHead, usize)>, Fault> {
    let window = head_window(buf, limits);
    let line = locate_start_line(window, true)?;
    check_start_line_len(&line, limits)?;
    if !line.complete {
        check_request_line_prefix(line.text)?;
        return incomplete(buf, limits);
    }
    let (method, target, version) = parse_request_line(line.text)?;
    let Some(raw) = locate_fields(window, line.fields_start)? else {
        return incomplete(buf, limits);
    };
    let headers = parse_fields(raw.fields, limits)?;
    check_host_fields(version, &headers)?;
    let head = RequestHead {
        method,
        target,
        version,
        headers,
    };
    Ok(Some((head, raw.head_len)))
}

fn parse_response_head(
    buf: &[u8],
    limits: &Limits,
) -> Result<Option<(ResponseHead, usize)>, Fault> {
    let window = head_window(buf, limits);
    let line = locate_start_line(window, false)?;
    check_start_line_len(&line, limits)?;
    if !line.complete {
        check_status_line_prefix(line.text)?;
        return incomplete(buf, limits);
    }
    let (version, status, reason) = parse_status_line(line.text)?;
    let Some(raw) = locate_fields(window, line.fields_start)? else {
        return incomplete(buf, limits);
    };
    let headers = parse_fields(raw.fields, limits)?;
    let head = ResponseHead {
        version,
        status,
        reason,
        headers,
    };
    Ok(Some((head, raw.head_len)))
}

/// The part of `buf` a head of at most `max_head_bytes` can occupy.
fn head_window<'a>(buf: &'a [u8], limits: &Limits) -> &'a [u8] {
    &buf[..buf.len().min(limits.max_head_bytes)]
}

/// Result for a head without its final empty line yet: an error once the
/// buffer already holds `max_head_bytes` (the head can only be larger).
fn incomplete<T>(buf: &[u8], limits: &Limits) -> Result<Option<T>, Fault> {
    if buf.len() >= limits.max_head_bytes {
        return Err(Fault::TooLarge("header section too large"));
    }
    Ok(None)
}

/// The start line found in a buffer (possibly still incomplete).
struct StartLine<'a> {
    /// Line content without CRLF (without a trailing CR when incomplete).
    text: &'a [u8],
    complete: bool,
    /// Offset of the first field line, meaningful when `complete`.
    fields_start: usize,
}

fn locate_start_line(buf: &[u8], skip_empty_lines: bool) -> Result<StartLine<'_>, Fault> {
    let offset = if skip_empty_lines {
        leading_empty_lines_len(buf)
    } else {
        0
    };
    let rest = &buf[offset..];
    match find_line_end(rest)? {
        Some(len) => Ok(StartLine {
            text: &rest[..len],
            complete: true,
            fields_start: offset + len + 2,
        }),
        None => Ok(StartLine {
            text: rest.strip_suffix(b"\r").unwrap_or(rest),
            complete: false,
            fields_start: buf.len(),
        }),
    }
}

/// Length of the CRLF pairs at the start of `buf` (RFC 9112 2.2).
fn leading_empty_lines_len(buf: &[u8]) -> usize {
    buf.chunks_exact(2)
        .take_while(|pair| *pair == b"\r\n")
        .count()
        * 2
}

/// Length of the first line of `buf` without its CRLF, `None` if no LF yet.
fn find_line_end(buf: &[u8]) -> Result<Option<usize>, Fault> {
    let Some(lf) = buf.iter().position(|&b| b == b'\n') else {
        return Ok(None);
    };
    match lf.checked_sub(1) {
        Some(cr) if buf[cr] == b'\r' => Ok(Some(cr)),
        _ => Err(Fault::Invalid("bare LF line terminator")),
    }
}

fn check_start_line_len(line: &StartLine<'_>, limits: &Limits) -> Result<(), Fault> {
    if line.text.len() > limits.max_request_line {
        return Err(Fault::StartLineTooLong);
    }
    Ok(())
}

/// Rejects garbage (e.g. a TLS handshake) before the request line completes.
fn check_request_line_prefix(partial: &[u8]) -> Result<(), Fault> {
    let method = partial.split(|&b| b == b' ').next().unwrap_or_default();
    if method.iter().all(|&b| is_tchar(b)) {
        Ok(())
    } else {
        Err(Fault::Invalid("invalid method"))
    }
}

fn check_status_line_prefix(partial: &[u8]) -> Result<(), Fault> {
    let len = partial.len().min(5);
    if partial[..len] == b"HTTP/"[..len] {
        Ok(())
    } else {
        Err(Fault::Invalid("invalid status line"))
    }
}

/// The field lines of a complete head.
struct RawFields<'a> {
    /// Field lines, each ending in CRLF, without the final empty line.
    fields: &'a [u8],
    /// Bytes from the start of the buffer through the final CRLF.
    head_len: usize,
}

/// Finds the empty line ending the head, checking every line ends in CRLF.
fn locate_fields(buf: &[u8], fields_start: usize) -> Result<Option<RawFields<'_>>, Fault> {
    let mut line_start = fields_start;
    loop {
        let Some(len) = find_line_end(&buf[line_start..])? else {
            return Ok(None);
        };
        if len == 0 {
            return Ok(Some(RawFields {
                fields: &buf[fields_start..line_start],
                head_len: line_start + 2,
            }));
        }
        line_start += len + 2;
    }
}

/// Splits CRLF-terminated lines (already checked to contain no bare LF).
pub(crate) fn crlf_lines(block: &[u8]) -> impl Iterator<Item = &[u8]> {
    block
        .split(|&b| b == b'\n')
        .filter_map(|line| line.strip_suffix(b"\r"))
}

fn parse_fields(block: &[u8], limits: &Limits) -> Result<Vec<Header>, Fault> {
    let mut headers = Vec::new();
    for line in crlf_lines(block) {
        if headers.len() == limits.max_headers {
            return Err(Fault::TooLarge("too many header fields"));
        }
        headers.push(parse_field_line(line).map_err(Fault::Invalid)?);
    }
    Ok(headers)
}

/// Parses one `name: value` line (without CRLF). Shared with trailers.
pub(crate) fn parse_field_line(line: &[u8]) -> Result<Header, &'static str> {
    if line.first().is_some_and(|&b| is_ows(b)) {
        return Err("obsolete line folding");
    }
    let name_len = line.iter().take_while(|&&b| is_tchar(b)).count();
    let (name, rest) = line.split_at(name_len);
    let value = match rest {
        [b':', value @ ..] if !name.is_empty() => trim_ows(value),
        [b' ' | b'\t', ..] if !name.is_empty() => return Err("whitespace before colon"),
        [] if !name.is_empty() => return Err("header line without colon"),
        _ => return Err("invalid header name"),
    };
    if !value.iter().all(|&b| is_field_byte(b)) {
        return Err("invalid header value");
    }
    Ok(Header::new(ascii_string(name), value))
}

fn parse_request_line(line: &[u8]) -> Result<(String, String, Version), Fault> {
    let parts: Vec<&[u8]> = line.split(|&b| b == b' ').collect();
    let [method, target, version] = parts[..] else {
        return Err(Fault::Invalid("invalid request line"));
    };
    if !is_token(method) {
        return Err(Fault::Invalid("invalid method"));
    }
    let version = parse_version(version)?;
    if !is_valid_target(method, target) {
        return Err(Fault::Invalid("invalid request target"));
    }
    Ok((ascii_string(method), ascii_string(target), version))
}

/// `HTTP/1.0` and `HTTP/1.1`; `HTTP/1.x` with a higher digit reads as 1.1.
fn parse_version(bytes: &[u8]) -> Result<Version, Fault> {
    match bytes {
        [b'H', b'T', b'T', b'P', b'/', major, b'.', minor]
            if major.is_ascii_digit() && minor.is_ascii_digit() =>
        {
            match (major, minor) {
                (b'1', b'0') => Ok(Version::Http10),
                (b'1', _) => Ok(Version::Http11),
                _ => Err(Fault::VersionNotSupported),
            }
        }
        _ => Err(Fault::Invalid("invalid HTTP version")),
    }
}

/// Target characters: visible ASCII except `#` (fragments are not sent).
fn is_target_byte(byte: u8) -> bool {
    (0x21..=0x7e).contains(&byte) && byte != b'#'
}

/// origin-form, absolute-form (http/https), asterisk-form for OPTIONS,
/// authority-form for CONNECT (RFC 9112 3.2).
pub(crate) fn is_valid_target(method: &[u8], target: &[u8]) -> bool {
    if target.is_empty() || !target.iter().all(|&b| is_target_byte(b)) {
        return false;
    }
    if method == b"CONNECT" {
        return is_valid_authority(target, true);
    }
    match target {
        b"*" => method == b"OPTIONS",
        [b'/', ..] => true,
        _ => is_absolute_http_uri(target),
    }
}

fn is_absolute_http_uri(target: &[u8]) -> bool {
    let Some(colon) = target.iter().position(|&b| b == b':') else {
        return false;
    };
    let (scheme, rest) = target.split_at(colon);
    let known_scheme =
        scheme.eq_ignore_ascii_case(b"http") || scheme.eq_ignore_ascii_case(b"https");
    let Some(after_slashes) = rest.strip_prefix(b"://") else {
        return false;
    };
    let authority_len = after_slashes
        .iter()
        .position(|&b| b == b'/' || b == b'?')
        .unwrap_or(after_slashes.len());
    known_scheme && is_valid_authority(&after_slashes[..authority_len], false)
}

/// `host [":" port]` without userinfo; the port is mandatory for CONNECT.
pub(crate) fn is_valid_authority(authority: &[u8], port_required: bool) -> bool {
    let (host, port) = split_host_port(authority);
    let port_ok = match port {
        Some(port) => is_valid_port(port),
        None => !port_required,
    };
    port_ok && is_valid_host(host)
}

fn split_host_port(authority: &[u8]) -> (&[u8], Option<&[u8]>) {
    let host_end = if authority.first() == Some(&b'[') {
        authority
            .iter()
            .position(|&b| b == b']')
            .map_or(authority.len(), |i| i + 1)
    } else {
        authority
            .iter()
            .position(|&b| b == b':')
            .unwrap_or(authority.len())
    };
    let (host, rest) = authority.split_at(host_end);
    match rest {
        [] => (host, None),
        [b':', port @ ..] => (host, Some(port)),
        _ => (authority, None),
    }
}

fn is_valid_host(host: &[u8]) -> bool {
    match host {
        [b'[', inner @ .., b']'] => {
            !inner.is_empty()
                && inner
                    .iter()
                    .all(|&b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
        }
        _ => !host.is_empty() && host.iter().all(|&b| is_reg_name_byte(b)),
    }
}

/// unreserved / pct-encoded / sub-delims (RFC 3986 reg-name).
fn is_reg_name_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric()
        || matches!(
            byte,
            b'-' | b'.'
                | b'_'
                | b'~'
                | b'%'
                | b'!'
                | b'$'
                | b'&'
                | b'\''
                | b'('
                | b')'
                | b'*'
                | b'+'
                | b','
                | b';'
                | b'='
        )
}

fn is_valid_port(port: &[u8]) -> bool {
    if port.is_empty() {
        return true;
    }
    port.len() <= 5
        && port.iter().all(u8::is_ascii_digit)
        && port
            .iter()
            .fold(0u32, |acc, &d| acc * 10 + u32::from(d - b'0'))
            <= 65535
}

/// RFC 9112 3.2: one `Host` at most, exactly one in HTTP/1.1, and valid.
fn check_host_fields(version: Version, headers: &[Header]) -> Result<(), Fault> {
    let mut hosts = headers_named(headers, "host");
    match (hosts.next(), hosts.next()) {
        (Some(_), Some(_)) => Err(Fault::Invalid("multiple host headers")),
        (None, _) if version == Version::Http11 => Err(Fault::Invalid("missing host header")),
        (Some(host), None) if !host.is_empty() && !is_valid_authority(host, false) => {
            Err(Fault::Invalid("invalid host header"))
        }
        _ => Ok(()),
    }
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

fn parse_status_line(line: &[u8]) -> Result<(Version, u16, String), Fault> {
    const INVALID: Fault = Fault::Invalid("invalid status line");
    let (version, rest) = line.split_at(line.len().min(8));
    let version = parse_version(version).map_err(|_| INVALID)?;
    let (digits, reason) = match rest {
        [b' ', a, b, c] => ([*a, *b, *c], &[][..]),
        [b' ', a, b, c, b' ', reason @ ..] => ([*a, *b, *c], reason),
        _ => return Err(INVALID),
    };
    let status = parse_status_code(digits).ok_or(INVALID)?;
    if !reason.iter().all(|&b| is_field_byte(b)) {
        return Err(Fault::Invalid("invalid reason phrase"));
    }
    Ok((
        version,
        status,
        String::from_utf8_lossy(reason).into_owned(),
    ))
}

/// Three ASCII digits forming a status code, 100..=599 (RFC 9110 §15: the first digit is the
/// class, 1 to 5; anything else is not a valid status).
fn parse_status_code(digits: [u8; 3]) -> Option<u16> {
    if !digits.iter().all(u8::is_ascii_digit) || !(b'1'..=b'5').contains(&digits[0]) {
        return None;
    }
    Some(
        digits
            .iter()
            .fold(0u16, |acc, &d| acc * 10 + u16::from(d - b'0')),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits::default()
    }

    fn req(input: &[u8]) -> Result<Option<(RequestHead, usize)>, ParseError> {
        parse_request(input, &limits())
    }

    fn req_ok(input: &[u8]) -> RequestHead {
        match req(input) {
            Ok(Some((head, used))) => {
                assert_eq!(used, input.len(), "{:?}", String::from_utf8_lossy(input));
                head
            }
            other => panic!("{:?}: {other:?}", String::from_utf8_lossy(input)),
        }
    }

    fn req_err(input: &[u8]) -> ParseError {
        match req(input) {
            Err(e) => e,
            other => panic!("{:?}: {other:?}", String::from_utf8_lossy(input)),
        }
    }

    /// httparse must agree with every head we accept (differential check).
    fn assert_httparse_agrees(input: &[u8], head: &RequestHead) {
        let mut fields = [httparse::EMPTY_HEADER; 16];
        let mut parsed = httparse::Request::new(&mut fields);
        let status = parsed.parse(input).expect("httparse rejects");
        assert!(status.is_complete());
        assert_eq!(parsed.method, Some(head.method.as_str()));
        assert_eq!(parsed.path, Some(head.target.as_str()));
        let names: Vec<(&str, &[u8])> = parsed.headers.iter().map(|h| (h.name, h.value)).collect();
        let ours: Vec<(&str, &[u8])> = head
            .headers
            .iter()
            .map(|h| (h.name.as_str(), h.value.as_slice()))
            .collect();
        assert_eq!(names, ours);
    }

    #[test]
    fn accepts_valid_requests() {
        #[rustfmt::skip]
        let cases: &[(&[u8], &str, &str, Version, usize)] = &[
            (b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", "GET", "/", Version::Http11, 1),
            (b"GET /x?y=1 HTTP/1.0\r\n\r\n", "GET", "/x?y=1", Version::Http10, 0),
            (b"\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", "GET", "/", Version::Http11, 1),
            (b"GET / HTTP/1.2\r\nHost: a\r\n\r\n", "GET", "/", Version::Http11, 1),
            (b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n", "OPTIONS", "*", Version::Http11, 1),
            (b"CONNECT h.test:443 HTTP/1.1\r\nHost: h.test:443\r\n\r\n", "CONNECT", "h.test:443", Version::Http11, 1),
            (b"CONNECT [::1]:80 HTTP/1.1\r\nHost: [::1]:80\r\n\r\n", "CONNECT", "[::1]:80", Version::Http11, 1),
            (b"GET http://h.test/p HTTP/1.1\r\nHost: h.test\r\n\r\n", "GET", "http://h.test/p", Version::Http11, 1),
            (b"GET HTTPS://h.test:8443?q HTTP/1.1\r\nHost: h.test\r\n\r\n", "GET", "HTTPS://h.test:8443?q", Version::Http11, 1),
            (b"POST /u HTTP/1.1\r\nHost: a\r\nX-E:\r\nX-T: \t v  a \t\r\nX-O: \x80\xff\r\n\r\n", "POST", "/u", Version::Http11, 4),
            (b"GET / HTTP/1.1\r\nHost:\r\n\r\n", "GET", "/", Version::Http11, 1),
            (b"M-SEARCH / HTTP/1.1\r\nhost: 127.0.0.1:8080\r\n\r\n", "M-SEARCH", "/", Version::Http11, 1),
        ];
        for &(input, method, target, version, count) in cases {
            let head = req_ok(input);
            assert_eq!(
                (head.method.as_str(), head.target.as_str()),
                (method, target)
            );
            assert_eq!((head.version, head.headers.len()), (version, count));
            // httparse skips no leading empty line and knows no HTTP/1.2.
            if !input.starts_with(b"\r\n") && !input.windows(8).any(|w| w == b"HTTP/1.2") {
                assert_httparse_agrees(input, &head);
            }
        }
    }

    #[test]
    fn header_values_are_trimmed_and_names_keep_case() {
        let head = req_ok(b"GET / HTTP/1.1\r\nHoST: a\r\nX-T: \t v  a \t\r\n\r\n");
        assert_eq!(head.headers[0], Header::new("HoST", "a"));
        assert_eq!(head.header("x-t"), Some(&b"v  a"[..]));
        assert_eq!(head.header("missing"), None);
    }

    #[test]
    fn rejects_malformed_requests() {
        #[rustfmt::skip]
        let cases: &[(&[u8], u16, &str)] = &[
            (b"GET / HTTP/1.1\nHost: a\r\n\r\n", 400, "bare LF line terminator"),
            (b"GET / HTTP/1.1\r\nHost: a\n\r\n", 400, "bare LF line terminator"),
            (b"GET / HTTP/1.1\r\nHost: a\r\n\n", 400, "bare LF line terminator"),
            (b"\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", 400, "bare LF line terminator"),
            (b"GET / HTTP/1.1\r\nHost: a\rX: b\r\n\r\n", 400, "invalid header value"),
            (b"GET / HTTP/1.1\r\nHost: a\r\nX: a\0b\r\n\r\n", 400, "invalid header value"),
            (b"GET / HTTP/1.1\r\nHost: a\r\nX: a\x0bb\r\n\r\n", 400, "invalid header value"),
            (b"GET / HTTP/1.1\r\nHost: a\r\nX: a\x7f\r\n\r\n", 400, "invalid header value"),
            (b"GET / HTTP/1.1\r\nHost : a\r\n\r\n", 400, "whitespace before colon"),
            (b"GET / HTTP/1.1\r\nHost\t: a\r\n\r\n", 400, "whitespace before colon"),
            (b"GET / HTTP/1.1\r\nHost: a\r\nX: b\r\n c\r\n\r\n", 400, "obsolete line folding"),
            (b"GET / HTTP/1.1\r\n Host: a\r\n\r\n", 400, "obsolete line folding"),
            (b"GET / HTTP/1.1\r\nHo\"st: a\r\n\r\n", 400, "invalid header name"),
            (b"GET / HTTP/1.1\r\n: a\r\nHost: a\r\n\r\n", 400, "invalid header name"),
            (b"GET / HTTP/1.1\r\nHost: a\r\nNoColon\r\n\r\n", 400, "header line without colon"),
            (b"G@T / HTTP/1.1\r\nHost: a\r\n\r\n", 400, "invalid method"),
            (b"GET  / HTTP/1.1\r\nHost: a\r\n\r\n", 400, "invalid request line"),
            (b"GET / HTTP/1.1 \r\nHost: a\r\n\r\n", 400, "invalid request line"),
            (b"GET /\tx HTTP/1.1\r\nHost: a\r\n\r\n", 400, "invalid request target"),
            (b"GET / HTTP/1.1\r\r\nHost: a\r\n\r\n", 400, "invalid HTTP version"),
            (b"GET / http/1.1\r\nHost: a\r\n\r\n", 400, "invalid HTTP version"),
            (b"GET / HTTP/1.10\r\nHost: a\r\n\r\n", 400, "invalid HTTP version"),
            (b"GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505, "HTTP version not supported"),
            (b"GET / HTTP/0.9\r\nHost: a\r\n\r\n", 505, "HTTP version not supported"),
            (b"GET x HTTP/1.1\r\nHost: a\r\n\r\n", 400, "invalid request target"),
            (b"GET /a#f HTTP/1.1\r\nHost: a\r\n\r\n", 400, "invalid request target"),
            (b"GET /\xc3\xa9 HTTP/1.1\r\nHost: a\r\n\r\n", 400, "invalid request target"),
            (b"GET * HTTP/1.1\r\nHost: a\r\n\r\n", 400, "invalid request target"),
            (b"OPTIONS ** HTTP/1.1\r\nHost: a\r\n\r\n", 400, "invalid request target"),
            (b"GET h.test:80 HTTP/1.1\r\nHost: a\r\n\r\n", 400, "invalid request target"),
            (b"CONNECT / HTTP/1.1\r\nHost: a\r\n\r\n", 400, "invalid request target"),
            (b"CONNECT h.test HTTP/1.1\r\nHost: a\r\n\r\n", 400, "invalid request target"),
            (b"CONNECT h.test:99999 HTTP/1.1\r\nHost: a\r\n\r\n", 400, "invalid request target"),
            (b"CONNECT u@h.test:80 HTTP/1.1\r\nHost: a\r\n\r\n", 400, "invalid request target"),
            (b"GET ftp://h.test/ HTTP/1.1\r\nHost: a\r\n\r\n", 400, "invalid request target"),
            (b"GET http:///p HTTP/1.1\r\nHost: a\r\n\r\n", 400, "invalid request target"),
            (b"GET http://u@h.test/ HTTP/1.1\r\nHost: a\r\n\r\n", 400, "invalid request target"),
            (b"GET / HTTP/1.1\r\n\r\n", 400, "missing host header"),
            (b"GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n", 400, "multiple host headers"),
            (b"GET / HTTP/1.0\r\nHost: a\r\nhost: b\r\n\r\n", 400, "multiple host headers"),
            (b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n", 400, "invalid host header"),
            (b"GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", 400, "invalid host header"),
            (b"\x16\x03\x01\x02\x00\x01\x00", 400, "invalid method"),
        ];
        for &(input, status, reason) in cases {
            let error = req_err(input);
            assert_eq!(
                (error.status, error.reason),
                (status, reason),
                "{:?}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn smuggling_header_obfuscations_are_rejected_at_parse_time() {
        #[rustfmt::skip]
        let cases: &[&[u8]] = &[
            b"Transfer-Encoding : chunked",
            b"Transfer-Encoding\t: chunked",
            b" Transfer-Encoding: chunked",
            b"\tTransfer-Encoding: chunked",
            b"Transfer-Encoding: \x0bchunked",
            b"Transfer-Encoding: chunked\x00",
            b"Transfer_Encoding\x0c: chunked",
            b"Content-Length : 5",
            b"Content-Length:\r 5",
        ];
        for field in cases {
            let mut input = b"POST / HTTP/1.1\r\nHost: a\r\n".to_vec();
            input.extend_from_slice(field);
            input.extend_from_slice(b"\r\n\r\n");
            assert_eq!(
                req_err(&input).status,
                400,
                "{:?}",
                String::from_utf8_lossy(field)
            );
        }
    }

    #[test]
    fn every_prefix_of_a_valid_head_is_incomplete() {
        let input = b"\r\nPOST /p HTTP/1.1\r\nHost: a\r\nX: y\r\n\r\n";
        for len in 0..input.len() {
            assert_eq!(req(&input[..len]), Ok(None), "prefix {len}");
        }
        let response = b"HTTP/1.1 200 OK\r\nX: y\r\n\r\n";
        for len in 0..response.len() {
            assert_eq!(
                parse_response(&response[..len], &limits()),
                Ok(None),
                "prefix {len}"
            );
        }
    }

    #[test]
    fn pipelined_requests_parse_one_after_another() {
        let first = b"POST /a HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\n";
        let second = b"GET /b HTTP/1.1\r\nHost: a\r\n\r\n";
        let mut input = first.to_vec();
        input.extend_from_slice(b"abc");
        input.extend_from_slice(second);
        let (head, used) = req(&input).unwrap().unwrap();
        assert_eq!((head.target.as_str(), used), ("/a", first.len()));
        let rest = &input[used + 3..];
        let (head, used) = req(rest).unwrap().unwrap();
        assert_eq!((head.target.as_str(), used), ("/b", second.len()));
    }

    #[test]
    fn request_line_limit() {
        let limits = Limits {
            max_request_line: 16,
            ..Limits::default()
        };
        let at_limit = b"GET /23 HTTP/1.1\r\nHost: a\r\n\r\n";
        assert!(parse_request(at_limit, &limits).unwrap().is_some());
        #[rustfmt::skip]
        let cases: &[&[u8]] = &[
            b"GET /234 HTTP/1.1\r\nHost: a\r\n\r\n",
            b"GET /234567890123",
            b"\r\nGET /234567890123",
        ];
        for input in cases {
            let error = parse_request(input, &limits).unwrap_err();
            assert_eq!(error, ParseError::new(414, "request line too long"));
        }
        assert_eq!(parse_request(b"GET /23456789012\r", &limits), Ok(None));
    }

    #[test]
    fn head_size_limit_counts_leading_empty_lines() {
        let input = b"\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n";
        let exact = Limits {
            max_head_bytes: input.len(),
            ..Limits::default()
        };
        assert!(parse_request(input, &exact).unwrap().is_some());
        let smaller = Limits {
            max_head_bytes: input.len() - 1,
            ..Limits::default()
        };
        for len in [input.len(), input.len() - 1] {
            let error = parse_request(&input[..len], &smaller).unwrap_err();
            assert_eq!(error, ParseError::new(431, "header section too large"));
        }
        assert_eq!(parse_request(&input[..input.len() - 2], &smaller), Ok(None));
        let blank = b"\r\n".repeat(40000);
        assert_eq!(req_err(&blank).status, 431);
    }

    #[test]
    fn header_count_limit() {
        let limits = Limits {
            max_headers: 2,
            ..Limits::default()
        };
        let two = b"GET / HTTP/1.1\r\nHost: a\r\nX: 1\r\n\r\n";
        assert_eq!(
            parse_request(two, &limits)
                .unwrap()
                .unwrap()
                .0
                .headers
                .len(),
            2
        );
        let three = b"GET / HTTP/1.1\r\nHost: a\r\nX: 1\r\nY: 2\r\n\r\n";
        let error = parse_request(three, &limits).unwrap_err();
        assert_eq!(error, ParseError::new(431, "too many header fields"));
        let error = parse_response(b"HTTP/1.1 200 OK\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n", &limits);
        assert_eq!(error.unwrap_err().status, 502);
    }

    #[test]
    fn parses_responses() {
        #[rustfmt::skip]
        let cases: &[(&[u8], Version, u16, &str, usize)] = &[
            (b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", Version::Http11, 200, "OK", 1),
            (b"HTTP/1.0 404 Not Found\r\n\r\n", Version::Http10, 404, "Not Found", 0),
            (b"HTTP/1.1 204 \r\n\r\n", Version::Http11, 204, "", 0),
            (b"HTTP/1.1 204\r\n\r\n", Version::Http11, 204, "", 0),
            (b"HTTP/1.1 599 Weird\tPhrase \r\n\r\n", Version::Http11, 599, "Weird\tPhrase ", 0),
            (b"HTTP/1.1 100 Continue\r\n\r\n", Version::Http11, 100, "Continue", 0),
            (b"HTTP/1.7 200 OK\r\n\r\n", Version::Http11, 200, "OK", 0),
            (b"HTTP/1.1 200 \xe2\x9c\x93\r\n\r\n", Version::Http11, 200, "\u{2713}", 0),
        ];
        for &(input, version, status, reason, count) in cases {
            let (head, used) = parse_response(input, &limits()).unwrap().unwrap();
            assert_eq!(used, input.len());
            assert_eq!(
                (head.version, head.status, head.reason.as_str()),
                (version, status, reason)
            );
            assert_eq!(head.headers.len(), count);
        }
    }

    #[test]
    fn rejects_malformed_responses_with_502() {
        #[rustfmt::skip]
        let cases: &[&[u8]] = &[
            b"HTTP/1.1 20 OK\r\n\r\n",
            b"HTTP/1.1 2000 OK\r\n\r\n",
            b"HTTP/1.1 099 OK\r\n\r\n",
            b"HTTP/1.1 600 Beyond\r\n\r\n",
            b"HTTP/1.1 999 Weird\r\n\r\n",
            b"HTTP/1.1 2x0 OK\r\n\r\n",
            b"HTTP/1.1  200 OK\r\n\r\n",
            b"HTTP/2.0 200 OK\r\n\r\n",
            b"HTTP/2 200 OK\r\n\r\n",
            b"http/1.1 200 OK\r\n\r\n",
            b"HTTP/1.1 200 O\x01K\r\n\r\n",
            b"\r\nHTTP/1.1 200 OK\r\n\r\n",
            b"HTTP/1.1 200 OK\nX: y\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nX : y\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nX: y\r\n z\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nX: \x00\r\n\r\n",
            b"SSH-2.0",
        ];
        for input in cases {
            let error = parse_response(input, &limits()).unwrap_err();
            assert_eq!(error.status, 502, "{:?}", String::from_utf8_lossy(input));
        }
    }

    #[test]
    fn keep_alive_rules() {
        #[rustfmt::skip]
        let cases: &[(Version, &[&str], bool)] = &[
            (Version::Http11, &[], true),
            (Version::Http11, &["close"], false),
            (Version::Http11, &["Upgrade, CLOSE"], false),
            (Version::Http11, &["keep-alive", "close"], false),
            (Version::Http10, &[], false),
            (Version::Http10, &["Keep-Alive"], true),
            (Version::Http10, &["te, keep-alive"], true),
            (Version::Http10, &["keep-alive, close"], false),
            (Version::Http10, &["keep-alived"], false),
        ];
        for &(version, values, expected) in cases {
            let headers: Vec<Header> = values
                .iter()
                .map(|v| Header::new("Connection", *v))
                .collect();
            let request = RequestHead {
                method: "GET".into(),
                target: "/".into(),
                version,
                headers: headers.clone(),
            };
            let response = ResponseHead {
                version,
                status: 200,
                reason: "OK".into(),
                headers,
            };
            assert_eq!(
                request.wants_keep_alive(),
                expected,
                "{version:?} {values:?}"
            );
            assert_eq!(
                response.wants_keep_alive(),
                expected,
                "{version:?} {values:?}"
            );
        }
    }

    #[test]
    fn headers_named_returns_all_in_order() {
        let head = req_ok(b"GET / HTTP/1.1\r\nHost: a\r\nX: 1\r\nY: 2\r\nx: 3\r\n\r\n");
        let values: Vec<&[u8]> = head.headers_named("X").collect();
        assert_eq!(values, [&b"1"[..], b"3"]);
        let (response, _) = parse_response(b"HTTP/1.1 200 OK\r\nX: 1\r\nx: 3\r\n\r\n", &limits())
            .unwrap()
            .unwrap();
        assert_eq!(response.headers_named("x").count(), 2);
        assert_eq!(response.header("X"), Some(&b"1"[..]));
    }
}
