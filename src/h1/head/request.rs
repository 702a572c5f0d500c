//! Request heads (client role: what service A sends): the strict pre-scan,
//! httparse's split, then target and `Host` semantics.
//!
//! Order of the checks, which decides the reason a head with several faults
//! gets: start line framing and length (414), the request line as soon as
//! it is complete (method, delimiters, version, target), then bare LF in
//! the field lines, completeness, the field lines in order (a field beyond
//! `max_headers` is a 431), and `Host`.

use super::strict::{
    check_start_line_len, config, head_window, httparse_input_end, incomplete, locate_fields,
    locate_start_line, owned_headers, parse_fields, parse_version, version_from_minor, HeaderSlots,
};
use super::target::{check_host_fields, is_valid_target};
use super::{Fault, Limits, RequestHead, Version};
use crate::h1::syntax::{ascii_string, is_tchar, is_token};

/// A request line, as httparse or the diagnosis split it.
struct RequestLine<'a> {
    method: &'a [u8],
    target: &'a [u8],
    version: Version,
}

pub(super) fn parse_request_head(
    buf: &[u8],
    limits: &Limits,
) -> Result<Option<(RequestHead, usize)>, Fault> {
    let window = head_window(buf, limits);
    let line = locate_start_line(window, true)?;
    check_start_line_len(&line, limits)?;
    if !line.complete {
        check_request_line_prefix(line.text)?;
        return incomplete(buf, limits);
    }
    let fields = locate_fields(window, line.fields_start);
    let head_end = httparse_input_end(&line, &fields);
    let mut slots = HeaderSlots::new(limits);
    let mut parsed = httparse::Request::new(&mut []);
    let status = config().parse_request_with_uninit_headers(
        &mut parsed,
        &window[line.start..head_end],
        slots.as_mut(),
    );
    let request_line = match (&status, parsed.method, parsed.path, parsed.version) {
        (Ok(_), Some(method), Some(target), Some(minor)) => RequestLine {
            method: method.as_bytes(),
            target: target.as_bytes(),
            version: version_from_minor(minor),
        },
        _ => diagnose_request_line(line.text)?,
    };
    if !is_valid_target(request_line.method, request_line.target) {
        return Err(Fault::Invalid("invalid request target"));
    }
    let Some(raw) = fields? else {
        return incomplete(buf, limits);
    };
    let headers = match status {
        Ok(httparse::Status::Complete(_)) => owned_headers(parsed.headers),
        // A field refused, or a request line only the diagnosis accepted.
        _ => parse_fields(window, &raw, limits)?,
    };
    check_host_fields(request_line.version, &headers)?;
    let head = RequestHead {
        method: ascii_string(request_line.method),
        target: ascii_string(request_line.target),
        version: request_line.version,
        headers,
    };
    Ok(Some((head, raw.head_len)))
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

/// ptproxy's own reading of a request line httparse refused: names the
/// fault, or accepts the line when only its version (`HTTP/1.2`..`1.9`)
/// was beyond httparse. The target is checked by the caller, last.
fn diagnose_request_line(line: &[u8]) -> Result<RequestLine<'_>, Fault> {
    let parts: Vec<&[u8]> = line.split(|&b| b == b' ').collect();
    let [method, target, version] = parts[..] else {
        return Err(Fault::Invalid("invalid request line"));
    };
    if !is_token(method) {
        return Err(Fault::Invalid("invalid method"));
    }
    let version = parse_version(version)?;
    Ok(RequestLine {
        method,
        target,
        version,
    })
}
