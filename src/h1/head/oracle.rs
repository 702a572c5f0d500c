//! Test oracle: ptproxy's former own HTTP/1 head tokenizer, kept verbatim
//! (before httparse took over the tokenizing) so that the differential test
//! in `tests.rs` can check the httparse-based parser answers every input
//! exactly as it did: same head, same length, same status and reason.

use super::target::{check_host_fields, is_valid_target};
use super::{Fault, Header, Limits, ParseError, RequestHead, ResponseHead, Version};
use crate::h1::syntax::{ascii_string, is_field_byte, is_ows, is_tchar, is_token, trim_ows};

pub(super) fn parse_request(
    buf: &[u8],
    limits: &Limits,
) -> Result<Option<(RequestHead, usize)>, ParseError> {
    parse_request_head(buf, limits).map_err(Fault::for_request)
}

pub(super) fn parse_response(
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
fn crlf_lines(block: &[u8]) -> impl Iterator<Item = &[u8]> {
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
fn parse_field_line(line: &[u8]) -> Result<Header, &'static str> {
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
