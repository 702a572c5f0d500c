//! Header translation between HTTP/1.1 heads and HTTP/3 field lists (RFC 9114 §4.1–4.3).
//!
//! - Hop-by-hop fields never cross: `Connection` and every field it names, `Keep-Alive`,
//!   `Proxy-Connection`, `TE`, `Transfer-Encoding`, `Upgrade`. Each side re-frames the body itself.
//! - `Host` <-> `:authority`; names are lowercased on the HTTP/3 side; every other field keeps its
//!   order and duplicates, except `Content-Length`, sent to HTTP/3 once with its one value.
//! - Whatever arrives from HTTP/3 is checked before it becomes HTTP/1.1 bytes: a name or value
//!   with CR, LF, NUL or another control character (header injection), a value with leading or
//!   trailing whitespace, an uppercase name, a misplaced or unknown pseudo-header, a `:scheme`
//!   other than `http` or `https` is refused with a reason.
//! - ptproxy's internal fields (`ptproxy-service`, `ptproxy-link-encoding`) never reach the far
//!   side: callers' and upstreams' copies are removed, and ptproxy's own are removed on arrival.

pub mod connect;
mod field;
pub mod forwarding;

pub use field::Field;

use quiche::h3::{Header as H3Header, NameValue};

use crate::bridge::compression::COMPRESSED_FIELD;
use crate::h1::body;
use crate::h1::syntax;
use crate::h1::{head, Header, RequestHead, ResponseHead, Version};

/// The field that names the service a request is for. Only ptproxy writes it (the client
/// removes any copy a caller sent) and only ptproxy reads it (the server removes it before
/// the upstream).
pub const SERVICE_FIELD: &str = "ptproxy-service";

/// Fields that describe one hop and are removed when crossing to the other protocol.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "transfer-encoding",
    "upgrade",
];

/// Names listed in the `Connection` fields of `headers` (lowercased), which are hop-by-hop too.
fn connection_tokens(headers: &[Header]) -> Vec<String> {
    headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("connection"))
        .flat_map(|h| h.value.split(|b| *b == b','))
        .filter_map(|t| std::str::from_utf8(t).ok())
        .map(|t| t.trim().to_ascii_lowercase())
        .filter(|t| !t.is_empty())
        .collect()
}

/// The end-to-end fields of an HTTP/1.1 head, lowercased, minus hop-by-hop ones and `extra_drop`,
/// appended to `out`. `Content-Length` becomes one field with one value, where the first one stood.
fn end_to_end(headers: &[Header], extra_drop: &[&str], out: &mut Vec<Field>) {
    let named = connection_tokens(headers);
    let mut length = single_content_length(headers);
    for h in headers {
        // Names compared without case are what their lowercased forms compared with `==` were
        // (the lists and the tokens are lowercase): no lowercased copy per field.
        let is = |name: &&str| h.name.eq_ignore_ascii_case(name);
        let drop = HOP_BY_HOP.iter().any(is)
            || extra_drop.iter().any(is)
            || named.iter().any(|t| h.name.eq_ignore_ascii_case(t));
        if drop {
            continue;
        }
        if h.name.eq_ignore_ascii_case("content-length") {
            out.extend(length.take());
            continue;
        }
        out.push(lowercased(&h.name, &h.value));
    }
}

/// An HTTP/3 field with `name` lowercased: through a stack buffer for any usual name, so the
/// field's own copy is the only allocation.
fn lowercased(name: &str, value: &[u8]) -> Field {
    let mut buf = [0u8; 64];
    match buf.get_mut(..name.len()) {
        Some(lower) => {
            lower.copy_from_slice(name.as_bytes());
            lower.make_ascii_lowercase();
            Field::new(lower, value)
        }
        None => Field::new(name.to_ascii_lowercase().as_bytes(), value),
    }
}

/// The decimal digits of `n`, written into `buf` (no `String` per status or length).
fn decimal(mut n: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut at = buf.len();
    loop {
        at -= 1;
        buf[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return &buf[at..];
        }
    }
}

/// The `content-length` field to send for HTTP/1.1 fields that may repeat it or list it
/// (`5, 5`): in HTTP/3 a list is malformed (the peer resets the stream or closes the session),
/// so the one value they all agree on is sent once (RFC 9110 §8.6). Values that disagree were
/// refused before when they frame a body (400 / 502); on a message without a body (a response
/// to HEAD, a 304) they frame nothing and are dropped rather than passed on malformed.
fn single_content_length(headers: &[Header]) -> Option<Field> {
    let length = body::declared_length(headers).ok()??;
    Some(Field::named_copy(
        b"content-length",
        decimal(length, &mut [0; 20]),
    ))
}

/// HTTP/1.1 request head -> HTTP/3 request fields. `authority` comes from the absolute-form
/// target or the Host field (the caller validated their presence).
pub fn request_to_h3(head: &RequestHead, authority: &[u8], path: &str) -> Vec<Field> {
    // Room for the pseudo-headers, the fields and what the client adds (forwarding, service).
    let mut out = Vec::with_capacity(head.headers.len() + 8);
    out.extend([
        Field::method(&head.method),
        Field::fixed(b":scheme", b"http"),
        Field::named_copy(b":authority", authority),
        Field::named_copy(b":path", path.as_bytes()),
    ]);
    end_to_end(
        &head.headers,
        &[
            "host",
            SERVICE_FIELD,
            COMPRESSED_FIELD,
            forwarding::MARK_FIELD,
        ],
        &mut out,
    );
    out
}

/// The service a request's fields name (the value of [`SERVICE_FIELD`]); `None` when they
/// name none. Two of them are refused: which one would count is ambiguous.
pub fn service_of(list: &[H3Header]) -> Result<Option<&str>, FieldError> {
    let mut named = list.iter().filter(|h| h.name() == SERVICE_FIELD.as_bytes());
    let first = named.next();
    if named.next().is_some() {
        return Err(FieldError("more than one ptproxy-service field"));
    }
    first
        .map(|h| std::str::from_utf8(h.value()).map_err(|_| FieldError("invalid ptproxy-service")))
        .transpose()
}

/// The raw `:method` and `:path` of request fields (empty when absent), for decisions taken
/// before the request is converted (its conversion refuses what is malformed).
pub fn method_and_path(list: &[H3Header]) -> (&[u8], &[u8]) {
    let find = |name: &[u8]| {
        list.iter()
            .find(|h| h.name() == name)
            .map_or(&b""[..], |h| h.value())
    };
    (find(b":method"), find(b":path"))
}

/// HTTP/1.1 response head -> HTTP/3 response fields.
pub fn response_to_h3(head: &ResponseHead) -> Vec<Field> {
    let mut out = Vec::with_capacity(head.headers.len() + 1);
    out.push(Field::status(head.status));
    end_to_end(&head.headers, &[COMPRESSED_FIELD], &mut out);
    out
}

/// RFC 9114 §4.2.2 size of a field section: names and values plus 32 bytes per field.
pub fn field_section_size(list: &[impl NameValue]) -> u64 {
    list.iter()
        .map(|f| (f.name().len() + f.value().len() + 32) as u64)
        .sum()
}

/// SETTINGS_MAX_FIELD_SECTION_SIZE (RFC 9114 §7.2.4.1).
const SETTINGS_MAX_FIELD_SECTION_SIZE: u64 = 0x6;

/// Whether the peer accepts a field section this large (sending a larger one would close the
/// whole session, so callers answer locally instead).
pub fn peer_accepts(h3: &quiche::h3::Connection, list: &[impl NameValue]) -> bool {
    let limit = h3.peer_settings_raw().and_then(|s| {
        s.iter()
            .find(|(id, _)| *id == SETTINGS_MAX_FIELD_SECTION_SIZE)
            .map(|(_, v)| *v)
    });
    limit.is_none_or(|limit| field_section_size(list) <= limit)
}

/// Why an HTTP/3 field section cannot become HTTP/1.1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FieldError(pub &'static str);

/// The pseudo-headers and regular fields of an HTTP/3 section, validated.
struct Split<'a> {
    /// The whole section: its pseudo-headers (every name starting with `:`, all ahead of the
    /// regular fields: [`split`] checked) are read in place, not collected.
    list: &'a [H3Header],
    pseudo_count: usize,
    fields: Vec<Header>,
}

impl<'a> Split<'a> {
    /// The pseudo-header names without their `:`, with their values.
    fn pseudo(&self) -> impl Iterator<Item = (&'a [u8], &'a [u8])> {
        self.list
            .iter()
            .filter_map(|h| Some((h.name().strip_prefix(b":")?, h.value())))
    }
}

/// `spare` more fields fit in the result without growing it (the caller's own additions).
fn split(list: &[H3Header], spare: usize) -> Result<Split<'_>, FieldError> {
    let mut pseudo_count = 0;
    let mut fields = Vec::with_capacity(list.len() + spare);
    // Any regular field, `te: trailers` too (it is not passed on, so `fields` does not show it).
    let mut regular_seen = false;
    for (i, h) in list.iter().enumerate() {
        let (name, value) = (h.name(), h.value());
        check_value(value)?;
        if name.starts_with(b":") {
            if regular_seen {
                return Err(FieldError("pseudo-header after regular field"));
            }
            if list[..i].iter().any(|p| p.name() == name) {
                return Err(FieldError("duplicated pseudo-header"));
            }
            pseudo_count += 1;
            continue;
        }
        regular_seen = true;
        let name = valid_name(name)?;
        if HOP_BY_HOP.contains(&name) && !(name == "te" && value == b"trailers") {
            return Err(FieldError("connection-specific field in HTTP/3"));
        }
        if name != "te" {
            fields.push(Header {
                name: name.to_string(),
                value: value.to_vec(),
            });
        }
    }
    Ok(Split {
        list,
        pseudo_count,
        fields,
    })
}

/// A field value must not contain CR, LF, NUL or another control character but HTAB, nor
/// start or end with whitespace: such a field section is malformed (RFC 9114 §4.1.2,
/// RFC 9110 §5.5), it is refused rather than cleaned up.
fn check_value(value: &[u8]) -> Result<(), FieldError> {
    if value.iter().any(|b| matches!(b, b'\r' | b'\n' | 0)) {
        return Err(FieldError("field value contains CR, LF or NUL"));
    }
    if value.iter().any(|&b| (b < 0x20 && b != b'\t') || b == 0x7f) {
        return Err(FieldError("field value contains a control character"));
    }
    let space = |b: Option<&u8>| matches!(b, Some(b' ' | b'\t'));
    if space(value.first()) || space(value.last()) {
        return Err(FieldError(
            "field value with leading or trailing whitespace",
        ));
    }
    Ok(())
}

/// A field name must be a non-empty lowercase token.
fn valid_name(name: &[u8]) -> Result<&str, FieldError> {
    let token =
        |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit() || b"!#$%&'*+-.^_`|~".contains(&b);
    if name.is_empty() || !name.iter().all(|b| token(*b)) {
        return Err(FieldError("invalid or uppercase field name"));
    }
    std::str::from_utf8(name).map_err(|_| FieldError("invalid field name"))
}

fn pseudo<'a>(split: &Split<'a>, name: &[u8]) -> Option<&'a [u8]> {
    split.pseudo().find(|(n, _)| *n == name).map(|(_, v)| v)
}

/// HTTP/3 request fields -> HTTP/1.1 request head (with `Host` first). Body framing fields are
/// the caller's to add.
pub fn request_from_h3(list: &[H3Header]) -> Result<RequestHead, FieldError> {
    let s = split(list, 1)?;
    if s.pseudo()
        .any(|(n, _)| !matches!(n, b"method" | b"scheme" | b"authority" | b"path"))
    {
        return Err(FieldError("unknown request pseudo-header"));
    }
    let method = pseudo(&s, b"method").ok_or(FieldError("missing :method"))?;
    if !syntax::is_token(method) {
        return Err(FieldError("invalid :method"));
    }
    if method == b"CONNECT" {
        return Err(FieldError("unsupported :method"));
    }
    let scheme = pseudo(&s, b"scheme").ok_or(FieldError("missing :scheme"))?;
    if scheme != b"http" && scheme != b"https" {
        return Err(FieldError(":scheme is neither http nor https"));
    }
    let path = pseudo(&s, b"path").ok_or(FieldError("missing :path"))?;
    // origin-form, or `*` for OPTIONS: what an HTTP/1.1 request line may carry (RFC 9112 §3.2).
    let origin_form = path.first() == Some(&b'/') || path == b"*";
    if !origin_form || !head::is_valid_target(method, path) {
        return Err(FieldError("invalid :path"));
    }
    let host_field = || s.fields.iter().find(|h| h.name == "host");
    let authority = match pseudo(&s, b"authority") {
        Some(a) => a.to_vec(),
        None => match host_field() {
            Some(h) => h.value.clone(),
            None => return Err(FieldError("missing :authority and host")),
        },
    };
    if !head::is_valid_authority(&authority, false) {
        return Err(FieldError("invalid :authority"));
    }
    let (method, path) = (
        String::from_utf8_lossy(method).into_owned(),
        String::from_utf8_lossy(path).into_owned(),
    );
    // The fields in their order after `Host` (their vector has room for it: no growth).
    let mut headers = s.fields;
    const OURS: [&str; 4] = [
        "host",
        SERVICE_FIELD,
        COMPRESSED_FIELD,
        forwarding::MARK_FIELD,
    ];
    headers.retain(|h| !OURS.contains(&h.name.as_str()));
    headers.insert(
        0,
        Header {
            name: "host".into(),
            value: authority,
        },
    );
    join_cookies(&mut headers);
    Ok(RequestHead {
        method,
        target: path,
        version: Version::Http11,
        headers,
    })
}

/// HTTP/3 may split the `cookie` field into one field per cookie (RFC 9114 §4.2.1); HTTP/1.1
/// allows only one Cookie field (RFC 6265 §5.4), so they are joined with `"; "` into the first.
fn join_cookies(headers: &mut Vec<Header>) {
    let Some(first) = headers.iter().position(|h| h.name == "cookie") else {
        return;
    };
    let joined = headers
        .iter()
        .filter(|h| h.name == "cookie" && !h.value.is_empty())
        .map(|h| h.value.as_slice())
        .collect::<Vec<_>>()
        .join(&b"; "[..]);
    headers[first].value = joined;
    let mut index = 0;
    headers.retain(|h| {
        index += 1;
        h.name != "cookie" || index - 1 == first
    });
}

/// Fields that must not travel in a trailer section (RFC 9110 §6.5.1): framing, routing,
/// and connection management.
const NOT_IN_TRAILERS: &[&str] = &[
    "content-length",
    "host",
    "trailer",
    "expect",
    "range",
    "authorization",
];

/// HTTP/1.1 trailer fields -> HTTP/3 trailer section (lowercased, disallowed fields dropped).
pub fn trailers_to_h3(trailers: &[Header]) -> Vec<H3Header> {
    let mut out = Vec::with_capacity(trailers.len());
    end_to_end(trailers, NOT_IN_TRAILERS, &mut out);
    // Trailers are rare: quiche's own fields, as the body pumps send them.
    out.iter()
        .map(|f| H3Header::new(f.name(), f.value()))
        .collect()
}

/// HTTP/3 trailer section -> HTTP/1.1 trailer fields, validated like any field section;
/// pseudo-headers are not allowed in trailers, disallowed fields are dropped.
pub fn trailers_from_h3(list: &[H3Header]) -> Result<Vec<Header>, FieldError> {
    let s = split(list, 0)?;
    if s.pseudo_count != 0 {
        return Err(FieldError("pseudo-header in trailers"));
    }
    Ok(s.fields
        .into_iter()
        .filter(|h| !NOT_IN_TRAILERS.contains(&h.name.as_str()))
        .collect())
}

/// HTTP/3 response fields -> status and HTTP/1.1 fields (framing fields are the caller's to add).
pub fn response_from_h3(list: &[H3Header]) -> Result<(u16, Vec<Header>), FieldError> {
    // Room for the framing field the caller adds.
    let s = split(list, 1)?;
    if s.pseudo_count != 1 {
        return Err(FieldError(
            "response needs exactly one pseudo-header, :status",
        ));
    }
    let status = pseudo(&s, b"status").ok_or(FieldError("missing :status"))?;
    let status = std::str::from_utf8(status)
        .ok()
        .filter(|t| t.len() == 3)
        .and_then(|t| t.parse::<u16>().ok())
        .filter(|s| (100..=599).contains(s))
        .ok_or(FieldError("invalid :status"))?;
    let mut fields = s.fields;
    fields.retain(|h| h.name != COMPRESSED_FIELD);
    Ok((status, fields))
}

/// The Content-Length field of an HTTP/3 section, if present and valid.
pub fn content_length(fields: &[Header]) -> Result<Option<u64>, FieldError> {
    let mut found: Option<u64> = None;
    for h in fields
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("content-length"))
    {
        let text =
            std::str::from_utf8(&h.value).map_err(|_| FieldError("invalid content-length"))?;
        let n: u64 = match text.trim() {
            t if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) => t
                .parse()
                .map_err(|_| FieldError("invalid content-length"))?,
            _ => return Err(FieldError("invalid content-length")),
        };
        if found.is_some_and(|f| f != n) {
            return Err(FieldError("conflicting content-length"));
        }
        found = Some(n);
    }
    Ok(found)
}

#[cfg(test)]
mod tests;
