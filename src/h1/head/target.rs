//! Request-target and `Host` semantics (RFC 9112 3.2): which target forms a
//! method may use, what an authority is, and the `Host` field rules.
//!
//! Applied after httparse split the request line (httparse takes any
//! visible byte in a target); also used by `bridge::headers` to check the
//! `:path` and `:authority` of HTTP/3 requests before they become HTTP/1.

use super::{headers_named, Fault, Header, Version};

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
pub(super) fn check_host_fields(version: Version, headers: &[Header]) -> Result<(), Fault> {
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
