//! Response heads (server role: what the upstream sends): the strict
//! pre-scan, httparse's split, then status-code semantics. Every fault maps
//! to 502 (see `Fault::for_response`).
//!
//! Beyond httparse: no empty line may precede the status line (httparse
//! skips them), the code must be 100..=599 (httparse takes any three
//! digits), `HTTP/1.2`..`HTTP/1.9` read as HTTP/1.1, and the reason phrase
//! is kept from the raw bytes (httparse hands back an empty reason when it
//! holds obs-text).

use super::strict::{
    check_start_line_len, config, head_window, httparse_input_end, incomplete, locate_fields,
    locate_start_line, owned_headers, parse_fields, parse_version, version_from_minor, HeaderSlots,
};
use super::{Fault, Limits, ResponseHead, Version};
use crate::h1::syntax::is_field_byte;

const INVALID: Fault = Fault::Invalid("invalid status line");

/// `HTTP/1.1 200 `: the reason phrase starts after these 13 bytes.
const REASON_OFFSET: usize = 13;

/// A status line, as httparse or the diagnosis split it.
struct StatusLine<'a> {
    version: Version,
    status: u16,
    reason: &'a [u8],
}

pub(super) fn parse_response_head(
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
    if line.text.is_empty() {
        return Err(INVALID);
    }
    let fields = locate_fields(window, line.fields_start);
    let head_end = httparse_input_end(&line, &fields);
    let mut slots = HeaderSlots::new(limits);
    let mut parsed = httparse::Response::new(&mut []);
    let status = config().parse_response_with_uninit_headers(
        &mut parsed,
        &window[..head_end],
        slots.as_mut(),
    );
    let status_line = match (&status, parsed.version, parsed.code) {
        (Ok(_), Some(minor), Some(code)) => StatusLine {
            version: version_from_minor(minor),
            status: code,
            reason: line.text.get(REASON_OFFSET..).unwrap_or_default(),
        },
        _ => diagnose_status_line(line.text)?,
    };
    if !(100..=599).contains(&status_line.status) {
        return Err(INVALID);
    }
    let Some(raw) = fields? else {
        return incomplete(buf, limits);
    };
    let headers = match status {
        Ok(httparse::Status::Complete(_)) => owned_headers(parsed.headers),
        // A field refused, or a status line only the diagnosis accepted.
        _ => parse_fields(window, &raw, limits)?,
    };
    let head = ResponseHead {
        version: status_line.version,
        status: status_line.status,
        reason: String::from_utf8_lossy(status_line.reason).into_owned(),
        headers,
    };
    Ok(Some((head, raw.head_len)))
}

/// Rejects what cannot become a status line before it completes.
fn check_status_line_prefix(partial: &[u8]) -> Result<(), Fault> {
    let len = partial.len().min(5);
    if partial[..len] == b"HTTP/"[..len] {
        Ok(())
    } else {
        Err(INVALID)
    }
}

/// ptproxy's own reading of a status line httparse refused: names the
/// fault, or accepts the line when only its version (`HTTP/1.2`..`1.9`)
/// was beyond httparse.
fn diagnose_status_line(line: &[u8]) -> Result<StatusLine<'_>, Fault> {
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
    Ok(StatusLine {
        version,
        status,
        reason,
    })
}

/// Three ASCII digits forming a status code, 100..=599 (RFC 9110 §15: the
/// first digit is the class, 1 to 5; anything else is not a valid status).
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
