//! The strict layer around httparse: what httparse tolerates and ptproxy refuses.
//!
//! - Framing pre-scan, before httparse sees a byte: locates the start line
//!   and the empty line that ends the head, requires CRLF on every line
//!   (httparse also takes a bare LF, and skips leading empty lines of
//!   responses too), and applies `max_request_line` / `max_head_bytes`.
//! - The httparse configuration ([`config`]): every leniency off (spaces
//!   after a field name, obs-fold, repeated delimiters, a space before the
//!   first field, skipping invalid fields), whatever the crate's defaults.
//! - Header slots: httparse fills a fixed array; it gets exactly
//!   `max_headers` slots, so one field more is `TooManyHeaders`.
//! - Diagnosis: httparse's errors are coarse, so a refused field section is
//!   checked again line by line here ([`parse_field_line`], in wire order,
//!   the count limit first) to name ptproxy's reason. The same line grammar
//!   parses chunked trailers (`h1::chunked`).

use std::mem::MaybeUninit;

use super::{Fault, Header, Limits, Version};
use crate::h1::syntax::{ascii_string, is_field_byte, is_ows, is_tchar, trim_ows};

/// The httparse parser with every leniency switched off explicitly.
pub(super) fn config() -> httparse::ParserConfig {
    let mut config = httparse::ParserConfig::default();
    config
        .allow_spaces_after_header_name_in_responses(false)
        .allow_obsolete_multiline_headers_in_responses(false)
        .allow_multiple_spaces_in_request_line_delimiters(false)
        .allow_multiple_spaces_in_response_status_delimiters(false)
        .allow_space_before_first_header_name(false)
        .ignore_invalid_headers_in_responses(false)
        .ignore_invalid_headers_in_requests(false);
    config
}

/// Header slots on the stack up to this limit (the default is 100).
const INLINE_SLOTS: usize = 128;

/// The fixed array httparse parses header fields into, `max_headers` long:
/// on the stack for the usual limits, on the heap above [`INLINE_SLOTS`].
pub(super) struct HeaderSlots<'b> {
    inline: [MaybeUninit<httparse::Header<'b>>; INLINE_SLOTS],
    heap: Vec<MaybeUninit<httparse::Header<'b>>>,
    len: usize,
}

impl<'b> HeaderSlots<'b> {
    pub(super) fn new(limits: &Limits) -> Self {
        let len = limits.max_headers;
        let heap = if len > INLINE_SLOTS {
            vec![MaybeUninit::uninit(); len]
        } else {
            Vec::new()
        };
        HeaderSlots {
            inline: [MaybeUninit::uninit(); INLINE_SLOTS],
            heap,
            len,
        }
    }

    pub(super) fn as_mut(&mut self) -> &mut [MaybeUninit<httparse::Header<'b>>] {
        if self.len > INLINE_SLOTS {
            &mut self.heap
        } else {
            &mut self.inline[..self.len]
        }
    }
}

/// Owned copies of the fields httparse split (names are tokens, so ASCII).
pub(super) fn owned_headers(fields: &[httparse::Header<'_>]) -> Vec<Header> {
    fields
        .iter()
        .map(|field| Header::new(field.name, field.value))
        .collect()
}

/// HTTP minor version as httparse reports it (it knows only 1.0 and 1.1).
pub(super) fn version_from_minor(minor: u8) -> Version {
    if minor == 0 {
        Version::Http10
    } else {
        Version::Http11
    }
}

/// The part of `buf` a head of at most `max_head_bytes` can occupy.
pub(super) fn head_window<'a>(buf: &'a [u8], limits: &Limits) -> &'a [u8] {
    &buf[..buf.len().min(limits.max_head_bytes)]
}

/// Result for a head without its final empty line yet: an error once the
/// buffer already holds `max_head_bytes` (the head can only be larger).
pub(super) fn incomplete<T>(buf: &[u8], limits: &Limits) -> Result<Option<T>, Fault> {
    if buf.len() >= limits.max_head_bytes {
        return Err(Fault::TooLarge("header section too large"));
    }
    Ok(None)
}

/// The start line found in a buffer (possibly still incomplete).
pub(super) struct StartLine<'a> {
    /// Offset of the start line (after skipped leading empty lines).
    pub(super) start: usize,
    /// Line content without CRLF (without a trailing CR when incomplete).
    pub(super) text: &'a [u8],
    pub(super) complete: bool,
    /// Offset of the first field line, meaningful when `complete`.
    pub(super) fields_start: usize,
}

/// Finds the start line, skipping leading CRLF pairs for requests only.
pub(super) fn locate_start_line(
    buf: &[u8],
    skip_empty_lines: bool,
) -> Result<StartLine<'_>, Fault> {
    let start = if skip_empty_lines {
        leading_empty_lines_len(buf)
    } else {
        0
    };
    let rest = &buf[start..];
    match find_line_end(rest)? {
        Some(len) => Ok(StartLine {
            start,
            text: &rest[..len],
            complete: true,
            fields_start: start + len + 2,
        }),
        None => Ok(StartLine {
            start,
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

pub(super) fn check_start_line_len(line: &StartLine<'_>, limits: &Limits) -> Result<(), Fault> {
    if line.text.len() > limits.max_request_line {
        return Err(Fault::StartLineTooLong);
    }
    Ok(())
}

/// The field lines of a complete head.
pub(super) struct RawFields {
    /// Offset of the first field line.
    pub(super) start: usize,
    /// Offset of the final empty line (the field lines end here).
    pub(super) end: usize,
    /// Bytes from the start of the buffer through the final CRLF.
    pub(super) head_len: usize,
}

/// Finds the empty line ending the head, checking every line ends in CRLF.
pub(super) fn locate_fields(buf: &[u8], fields_start: usize) -> Result<Option<RawFields>, Fault> {
    let mut line_start = fields_start;
    loop {
        let Some(len) = find_line_end(&buf[line_start..])? else {
            return Ok(None);
        };
        if len == 0 {
            return Ok(Some(RawFields {
                start: fields_start,
                end: line_start,
                head_len: line_start + 2,
            }));
        }
        line_start += len + 2;
    }
}

/// Where httparse's input ends: the whole head once its end is known, else
/// the start line alone (which httparse answers with Partial or an error).
pub(super) fn httparse_input_end(
    line: &StartLine<'_>,
    fields: &Result<Option<RawFields>, Fault>,
) -> usize {
    match fields {
        Ok(Some(raw)) => raw.head_len,
        _ => line.fields_start,
    }
}

/// Splits a field section (with its final CRLF) with httparse, for a
/// start line httparse refused but ptproxy accepts (`HTTP/1.2`..`1.9`).
pub(super) fn parse_fields(
    buf: &[u8],
    raw: &RawFields,
    limits: &Limits,
) -> Result<Vec<Header>, Fault> {
    let mut slots = vec![httparse::EMPTY_HEADER; limits.max_headers];
    match httparse::parse_headers(&buf[raw.start..raw.head_len], &mut slots) {
        Ok(httparse::Status::Complete((_, fields))) => Ok(owned_headers(fields)),
        _ => Err(diagnose_fields(&buf[raw.start..raw.end], limits)),
    }
}

/// Why httparse refused the field lines `block` (CRLF-terminated, without
/// the final empty line): the first fault in wire order.
pub(super) fn diagnose_fields(block: &[u8], limits: &Limits) -> Fault {
    for (count, line) in crlf_lines(block).enumerate() {
        if count == limits.max_headers {
            return Fault::TooLarge("too many header fields");
        }
        if let Err(reason) = parse_field_line(line) {
            return Fault::Invalid(reason);
        }
    }
    Fault::Invalid("invalid header field")
}

/// Splits CRLF-terminated lines (already checked to contain no bare LF).
pub(crate) fn crlf_lines(block: &[u8]) -> impl Iterator<Item = &[u8]> {
    block
        .split(|&b| b == b'\n')
        .filter_map(|line| line.strip_suffix(b"\r"))
}

/// Parses one `name: value` line (without CRLF). Used for chunked trailers
/// and to name the reason when httparse refuses a field line.
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

/// `HTTP/1.0` and `HTTP/1.1`; `HTTP/1.x` with a higher digit reads as 1.1.
pub(super) fn parse_version(bytes: &[u8]) -> Result<Version, Fault> {
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
