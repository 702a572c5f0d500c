//! Checks shared by the cargo-fuzz targets (`fuzz_targets/*.rs`) and by the replay test of the
//! main crate (`tests/fuzz_replay.rs` includes this file with `#[path]`).
//!
//! Each `pub fn <target>(data: &[u8])` decodes the raw fuzzer input exactly as the fuzz target
//! does and panics (assert) when an invariant does not hold. It only uses the public API of
//! `ptproxy` plus `quiche::h3::Header`, so it builds in both places, on stable Rust.

use std::path::Path;

mod body_pumps;
mod exchange;
mod exchange_client;
pub mod exchange_scripts;
mod exchange_server;
pub mod pump_scripts;

pub use body_pumps::body_pumps;
pub use exchange::exchange;

use ptproxy::bridge::headers::{content_length, request_from_h3, response_from_h3};
use ptproxy::h1::body::decode_in_pieces;
use ptproxy::h1::{
    parse_request, parse_response, reason_phrase, write_request_head, write_response_head,
    BodyDecoder, BodyEncoder, BodyEncoding, BodyFraming, Limits, ResponseHead, Version,
};

/// Every target, as named in `fuzz_targets/`, `corpus/` and `regressions/`.
pub const TARGETS: &[&str] = &[
    "h1_request_head",
    "h1_response_head",
    "h1_chunked",
    "h3_to_h1_headers",
    "config_json",
    "body_pumps",
    "exchange",
];

/// Runs the checks of `target` on `data`; `false` for an unknown target name.
pub fn run(target: &str, data: &[u8]) -> bool {
    match target {
        "h1_request_head" => h1_request_head(data),
        "h1_response_head" => h1_response_head(data),
        "h1_chunked" => h1_chunked(data),
        "h3_to_h1_headers" => h3_to_h1_headers(data),
        "config_json" => config_json(data),
        "body_pumps" => body_pumps(data),
        "exchange" => exchange(data),
        _ => return false,
    }
    true
}

/// Tight limits: whatever they accept, the default limits accept identically.
fn small_limits() -> Limits {
    Limits {
        max_head_bytes: 256,
        max_headers: 4,
        max_request_line: 64,
    }
}

/// Limits for re-parsing a written head: writing may make it longer (`Name: value` gets one SP;
/// a reason phrase with non-UTF-8 obs-text was decoded lossily, each such byte became a 3-byte
/// U+FFFD), so the size caps are relaxed; the field count cap is kept.
fn reparse_limits(limits: &Limits, written: usize) -> Limits {
    Limits {
        max_head_bytes: limits.max_head_bytes.max(written + 1),
        max_request_line: limits.max_request_line.max(written),
        ..*limits
    }
}

/// `parse_request` never panics; an accepted head re-serializes to bytes that parse back to
/// the same head, consuming exactly the written length; bytes after the head do not matter and
/// a strict prefix of the head is incomplete (`Ok(None)`).
pub fn h1_request_head(data: &[u8]) {
    head_round_trip(data, parse_request, write_request_head);
}

/// Same as [`h1_request_head`] for `parse_response` / `write_response_head`.
pub fn h1_response_head(data: &[u8]) {
    head_round_trip(data, parse_response, write_response_head);
}

/// A head parser: the head and the bytes it took, `None` while incomplete.
type HeadParser<H, E> = fn(&[u8], &Limits) -> Result<Option<(H, usize)>, E>;

/// The checks both head targets share, for a parser and its writer.
fn head_round_trip<H: Clone + PartialEq + std::fmt::Debug, E: PartialEq + std::fmt::Debug>(
    data: &[u8],
    parse: HeadParser<H, E>,
    write: fn(&H, &mut Vec<u8>),
) {
    let limits = Limits::default();
    let parsed = parse(data, &limits);
    if let Ok(Some(small)) = parse(data, &small_limits()) {
        assert_eq!(parsed, Ok(Some(small)), "tight limits accepted more");
    }
    let Ok(Some((head, consumed))) = parsed else {
        return;
    };
    assert!(
        consumed <= data.len(),
        "consumed {consumed} > input {}",
        data.len()
    );
    assert_eq!(
        parse(&data[..consumed], &limits),
        Ok(Some((head.clone(), consumed))),
        "the head alone parses differently"
    );
    for cut in [consumed - 1, consumed / 2] {
        assert_eq!(
            parse(&data[..cut], &limits),
            Ok(None),
            "prefix of {cut} bytes"
        );
    }
    let mut written = Vec::new();
    write(&head, &mut written);
    let again = parse(&written, &reparse_limits(&limits, written.len()));
    assert_eq!(
        again,
        Ok(Some((head, written.len()))),
        "written head {:?} does not parse back equal",
        String::from_utf8_lossy(&written)
    );
}

/// Input layout: `[out_limit] [n] [n piece lengths] body...` (`n` taken mod 16; a missing
/// byte counts as 0). The chunked body is decoded in one `decode` call with unlimited output,
/// then through `decode_in_pieces` with the fuzzer's pieces and output limit, one byte at a
/// time with a 1-byte output buffer, and in one piece with a 1-byte buffer: all four outcomes
/// must be equal. A body that decodes completely re-encodes (`BodyEncoder`) to bytes that
/// decode to the same payload and trailers.
pub fn h1_chunked(data: &[u8]) {
    let out_limit = usize::from(data.first().copied().unwrap_or(0));
    let count = usize::from(data.get(1).copied().unwrap_or(0) % 16);
    let lens_end = (2 + count).min(data.len());
    let pieces: Vec<usize> = data
        .get(2..lens_end)
        .unwrap_or(&[])
        .iter()
        .map(|&b| usize::from(b))
        .collect();
    let body = data.get(lens_end..).unwrap_or(&[]);
    let framing = BodyFraming::Chunked;

    // One shot, through the decoder itself.
    let mut decoder = BodyDecoder::new(framing);
    let mut payload = Vec::new();
    let result = decoder.decode(body, &mut payload, usize::MAX);
    if let Ok(consumed) = result {
        assert!(consumed <= body.len());
        if !decoder.is_done() {
            assert_eq!(consumed, body.len(), "stopped early without being done");
        }
    }
    let reference = decode_in_pieces(framing, body, &[], usize::MAX);
    assert_eq!(
        reference.payload, payload,
        "decode_in_pieces vs one decode call"
    );
    assert_eq!(reference.error, result.clone().err());
    assert_eq!(reference.consumed, result.clone().unwrap_or(0));
    assert_eq!(reference.done, decoder.is_done());
    assert_eq!(reference.trailers, decoder.take_trailers());
    assert!(
        reference.trailers.is_empty() || reference.done,
        "trailers before the end"
    );
    assert!(
        reference.error.is_none() || !reference.done,
        "done and failed"
    );

    let ones = vec![1usize; body.len()];
    for (lens, limit) in [(&pieces[..], out_limit), (&ones[..], 1), (&[][..], 1)] {
        let outcome = decode_in_pieces(framing, body, lens, limit);
        assert_eq!(outcome, reference, "pieces {lens:?}, out_limit {limit}");
    }

    if reference.done && body.len() < 16 * 1024 {
        let mut encoder = BodyEncoder::new(BodyEncoding::Chunked);
        let mut wire = Vec::new();
        for part in reference.payload.chunks(out_limit.max(1)) {
            encoder.encode(part, &mut wire).expect("chunked encode");
        }
        encoder
            .finish(&reference.trailers, &mut wire)
            .expect("chunked finish");
        let again = decode_in_pieces(framing, &wire, &[], usize::MAX);
        assert_eq!(
            again.error,
            None,
            "re-encoded body {:?}",
            String::from_utf8_lossy(&wire)
        );
        assert!(again.done);
        assert_eq!(again.consumed, wire.len());
        assert_eq!(again.payload, reference.payload);
        assert_eq!(again.trailers, reference.trailers);
    }
}

/// Input layout: one field per line (`\n`); the name is what precedes the first space, the
/// value the rest. In names and values `\r`, `\n`, `\0`, `\t`, `\\` and `\xHH` are unescaped,
/// so CR/LF/NUL injection attempts can be expressed.
pub fn h3_fields(data: &[u8]) -> Vec<quiche::h3::Header> {
    data.split(|&b| b == b'\n')
        .filter(|line| !line.is_empty())
        .map(|line| {
            let (name, value) = match line.iter().position(|&b| b == b' ') {
                Some(sp) => (&line[..sp], &line[sp + 1..]),
                None => (line, &[][..]),
            };
            quiche::h3::Header::new(&unescape(name), &unescape(value))
        })
        .collect()
}

fn unescape(bytes: &[u8]) -> Vec<u8> {
    let hex = |b: u8| char::from(b).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = match (bytes[i], bytes.get(i + 1)) {
            (b'\\', Some(b'r')) => Some((b'\r', 2)),
            (b'\\', Some(b'n')) => Some((b'\n', 2)),
            (b'\\', Some(b'0')) => Some((0, 2)),
            (b'\\', Some(b't')) => Some((b'\t', 2)),
            (b'\\', Some(b'\\')) => Some((b'\\', 2)),
            (b'\\', Some(b'x')) => match (
                bytes.get(i + 2).and_then(|&b| hex(b)),
                bytes.get(i + 3).and_then(|&b| hex(b)),
            ) {
                (Some(hi), Some(lo)) => Some((hi << 4 | lo, 4)),
                _ => None,
            },
            _ => None,
        };
        match escaped {
            Some((byte, len)) => {
                out.push(byte);
                i += len;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    out
}

/// `request_from_h3`, `response_from_h3` and `content_length` never panic. An accepted request
/// written as HTTP/1.1 parses back with `parse_request` with the same method, target, version
/// and number of fields (nothing injected, nothing the strict parser refuses); the same for an
/// accepted response with `parse_response` (status and number of fields).
pub fn h3_to_h1_headers(data: &[u8]) {
    let fields = h3_fields(data);
    if let Ok(head) = request_from_h3(&fields) {
        let _ = content_length(&head.headers);
        let mut written = Vec::new();
        write_request_head(&head, &mut written);
        let limits = Limits {
            max_headers: head.headers.len().max(100),
            ..reparse_limits(&Limits::default(), written.len())
        };
        let shown = String::from_utf8_lossy(&written);
        let parsed = match parse_request(&written, &limits) {
            Ok(Some((parsed, consumed))) => {
                assert_eq!(consumed, written.len(), "request {shown:?}");
                parsed
            }
            other => panic!("request_from_h3 accepted {head:?}, written as {shown:?}: {other:?}"),
        };
        assert_eq!(parsed.method, head.method, "method changed: {shown:?}");
        assert_eq!(parsed.target, head.target, "target changed: {shown:?}");
        assert_eq!(parsed.version, head.version, "version changed: {shown:?}");
        assert_eq!(
            parsed.headers.len(),
            head.headers.len(),
            "field count changed: {shown:?}"
        );
    }
    if let Ok((status, headers)) = response_from_h3(&fields) {
        let _ = content_length(&headers);
        let head = ResponseHead {
            version: Version::Http11,
            status,
            reason: reason_phrase(status).to_string(),
            headers,
        };
        let mut written = Vec::new();
        write_response_head(&head, &mut written);
        let limits = Limits {
            max_headers: head.headers.len().max(100),
            ..reparse_limits(&Limits::default(), written.len())
        };
        let shown = String::from_utf8_lossy(&written);
        match parse_response(&written, &limits) {
            Ok(Some((parsed, consumed))) => {
                assert_eq!(consumed, written.len(), "response {shown:?}");
                assert_eq!(parsed.status, status, "status changed: {shown:?}");
                assert_eq!(
                    parsed.headers.len(),
                    head.headers.len(),
                    "field count changed: {shown:?}"
                );
            }
            other => panic!("response_from_h3 accepted {head:?}, written as {shown:?}: {other:?}"),
        }
    }
}

/// `ptproxy::config::parse` never panics, for either role (errors are fine). The input is read
/// as UTF-8 lossily; TLS paths resolve against a folder that does not exist.
pub fn config_json(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    for role in [ptproxy::config::Role::Client, ptproxy::config::Role::Server] {
        let _ = ptproxy::config::parse(&text, Path::new("/nonexistent"), role);
    }
}
