//! State machine for the chunked transfer coding (RFC 9112 7.1), decoding.
//!
//! Inputs: successive slices of the message body as they arrive. Outputs:
//! payload bytes appended to a caller buffer, at most `room` per step, and
//! the trailer fields once the body ended. Used through `body::BodyDecoder`.
//!
//! Invariants: bytes are processed strictly in order and no decision depends
//! on where the input was split, so any split gives the same result. Every
//! framing line must end in CRLF; chunk-size lines are capped at
//! [`MAX_CHUNK_LINE`] bytes and the trailer section at
//! [`MAX_TRAILER_SECTION`], so memory stays bounded. Chunk extensions are
//! checked against their grammar (RFC 9112 7.1.1) and dropped.

use super::head::{crlf_lines, parse_field_line, Header};
use super::syntax::{is_field_byte, is_ows, is_tchar};

/// Longest chunk-size line, extensions and CRLF included.
pub(crate) const MAX_CHUNK_LINE: usize = 4096;
/// Longest trailer section, final CRLF included.
pub(crate) const MAX_TRAILER_SECTION: usize = 64 * 1024;
/// A chunk size has at most 16 hex digits (it must fit in a u64).
const MAX_SIZE_DIGITS: usize = 16;

/// Where the decoder is inside the chunked body.
#[derive(Debug, Clone)]
enum Phase {
    /// Collecting a chunk-size line (bytes so far, CRLF included when done).
    SizeLine(Vec<u8>),
    /// Payload bytes left in the current chunk (never zero).
    Data(u64),
    /// Expecting the CR that ends chunk data.
    DataCr,
    /// Expecting the LF that ends chunk data.
    DataLf,
    /// Collecting the trailer section after the last chunk.
    Trailers(Vec<u8>),
    /// Last chunk, trailers and final CRLF consumed.
    Done,
}

/// Incremental chunked decoder; errors are short static reasons.
#[derive(Debug, Clone)]
pub(crate) struct ChunkedDecoder {
    phase: Phase,
    trailers: Vec<Header>,
}

impl ChunkedDecoder {
    pub(crate) fn new() -> Self {
        ChunkedDecoder {
            phase: Phase::SizeLine(Vec::new()),
            trailers: Vec::new(),
        }
    }

    pub(crate) fn is_done(&self) -> bool {
        matches!(self.phase, Phase::Done)
    }

    pub(crate) fn take_trailers(&mut self) -> Vec<Header> {
        std::mem::take(&mut self.trailers)
    }

    /// Consumes a prefix of `input`, appending at most `room` payload bytes
    /// to `out`. Returns 0 only when done, when `input` is empty, or when
    /// payload is next and `room` is 0.
    pub(crate) fn step(
        &mut self,
        input: &[u8],
        out: &mut Vec<u8>,
        room: usize,
    ) -> Result<usize, &'static str> {
        match &mut self.phase {
            Phase::SizeLine(line) => {
                let (used, complete) =
                    append_line_part(line, input, MAX_CHUNK_LINE, "chunk size line too long")?;
                if complete {
                    let size = parse_size_line(line)?;
                    self.phase = phase_after_size(size);
                }
                Ok(used)
            }
            Phase::Data(remaining) => {
                let used = copy_payload(input, *remaining, out, room);
                *remaining -= used as u64;
                if *remaining == 0 {
                    self.phase = Phase::DataCr;
                }
                Ok(used)
            }
            Phase::DataCr => self.expect_byte(input, b'\r', Phase::DataLf),
            Phase::DataLf => self.expect_byte(input, b'\n', Phase::SizeLine(Vec::new())),
            Phase::Trailers(section) => {
                let (used, complete) = append_line_part(
                    section,
                    input,
                    MAX_TRAILER_SECTION,
                    "trailer section too large",
                )?;
                if complete && is_section_end(section) {
                    self.trailers = parse_trailers(section)?;
                    self.phase = Phase::Done;
                }
                Ok(used)
            }
            Phase::Done => Ok(0),
        }
    }

    fn expect_byte(
        &mut self,
        input: &[u8],
        wanted: u8,
        next: Phase,
    ) -> Result<usize, &'static str> {
        match input.first() {
            None => Ok(0),
            Some(&byte) if byte == wanted => {
                self.phase = next;
                Ok(1)
            }
            Some(_) => Err("missing CRLF after chunk data"),
        }
    }
}

fn phase_after_size(size: u64) -> Phase {
    if size == 0 {
        Phase::Trailers(Vec::new())
    } else {
        Phase::Data(size)
    }
}

/// Copies up to `room` bytes of `input`, but no more than `limit`.
pub(crate) fn copy_payload(input: &[u8], limit: u64, out: &mut Vec<u8>, room: usize) -> usize {
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    let used = input.len().min(room).min(limit);
    out.extend_from_slice(&input[..used]);
    used
}

/// Appends `input` up to and including the first LF to `line`. Returns the
/// bytes used and whether a line was completed (it then ends in CRLF).
fn append_line_part(
    line: &mut Vec<u8>,
    input: &[u8],
    cap: usize,
    too_long: &'static str,
) -> Result<(usize, bool), &'static str> {
    let lf = input.iter().position(|&b| b == b'\n');
    let used = lf.map_or(input.len(), |i| i + 1);
    if line.len() + used > cap {
        return Err(too_long);
    }
    line.extend_from_slice(&input[..used]);
    if lf.is_none() {
        return Ok((used, false));
    }
    if !line.ends_with(b"\r\n") {
        return Err("bare LF in chunked framing");
    }
    Ok((used, true))
}

/// The trailer section ends with an empty line.
fn is_section_end(section: &[u8]) -> bool {
    section == b"\r\n" || section.ends_with(b"\r\n\r\n")
}

fn parse_trailers(section: &[u8]) -> Result<Vec<Header>, &'static str> {
    let fields = &section[..section.len().saturating_sub(2)];
    crlf_lines(fields).map(parse_field_line).collect()
}

/// `chunk-size [chunk-ext] CRLF` (the line includes its CRLF).
pub(crate) fn parse_size_line(line: &[u8]) -> Result<u64, &'static str> {
    let line = line.strip_suffix(b"\r\n").unwrap_or(line);
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    if digits == 0 {
        return Err("invalid chunk size");
    }
    if digits > MAX_SIZE_DIGITS {
        return Err("chunk size too large");
    }
    check_chunk_extensions(&line[digits..])?;
    line[..digits]
        .iter()
        .try_fold(0u64, |acc, &digit| {
            let value = char::from(digit).to_digit(16)?;
            acc.checked_mul(16)?.checked_add(u64::from(value))
        })
        .ok_or("chunk size too large")
}

/// The chunk extensions after the size: `*( BWS ";" BWS chunk-ext-name [ BWS "=" BWS
/// chunk-ext-val ] )` (RFC 9112 7.1.1), names are tokens, values tokens or quoted strings.
/// Anything after the size that does not start with `;` (after optional whitespace) is a bad
/// size; a `;` not followed by a well-formed extension is a bad extension.
fn check_chunk_extensions(extensions: &[u8]) -> Result<(), &'static str> {
    const INVALID: &str = "invalid chunk extension";
    if !extensions.is_empty() && skip_ows(extensions).first() != Some(&b';') {
        return Err("invalid chunk size");
    }
    let mut rest = extensions;
    while !rest.is_empty() {
        rest = skip_ows(rest).strip_prefix(b";").ok_or(INVALID)?;
        rest = skip_token(skip_ows(rest)).ok_or(INVALID)?;
        if let Some(value) = skip_ows(rest).strip_prefix(b"=") {
            rest = skip_ext_value(skip_ows(value)).ok_or(INVALID)?;
        }
    }
    Ok(())
}

fn skip_ows(bytes: &[u8]) -> &[u8] {
    let spaces = bytes.iter().take_while(|&&b| is_ows(b)).count();
    &bytes[spaces..]
}

/// The bytes after a leading token, `None` without one.
fn skip_token(bytes: &[u8]) -> Option<&[u8]> {
    let len = bytes.iter().take_while(|&&b| is_tchar(b)).count();
    (len > 0).then(|| &bytes[len..])
}

/// The bytes after a leading `token / quoted-string`, `None` without one.
fn skip_ext_value(bytes: &[u8]) -> Option<&[u8]> {
    match bytes {
        [b'"', quoted @ ..] => skip_quoted_rest(quoted),
        _ => skip_token(bytes),
    }
}

/// The bytes after the closing quote of a quoted string whose opening quote is already
/// consumed: `*( qdtext / quoted-pair ) DQUOTE` (RFC 9110 5.6.4). `None` when unterminated or
/// when it holds a byte that is not allowed (a CTL other than HTAB).
fn skip_quoted_rest(mut bytes: &[u8]) -> Option<&[u8]> {
    loop {
        match bytes {
            [b'"', rest @ ..] => return Some(rest),
            [b'\\', escaped, rest @ ..] if is_field_byte(*escaped) => bytes = rest,
            [b'\\', ..] => return None,
            [byte, rest @ ..] if is_field_byte(*byte) => bytes = rest,
            _ => return None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_lines() {
        let cases: &[(&[u8], Result<u64, &str>)] = &[
            (b"0\r\n", Ok(0)),
            (b"1a\r\n", Ok(26)),
            (b"A\r\n", Ok(10)),
            (b"000000000000000F\r\n", Ok(15)),
            (b"ffffffffffffffff\r\n", Ok(u64::MAX)),
            (b"5;name=value\r\n", Ok(5)),
            (b"5 ; a=\"b c\" ;d\r\n", Ok(5)),
            (b"5\t;x\r\n", Ok(5)),
            (b"\r\n", Err("invalid chunk size")),
            (b" 5\r\n", Err("invalid chunk size")),
            (b"+5\r\n", Err("invalid chunk size")),
            (b"-5\r\n", Err("invalid chunk size")),
            (b"0x5\r\n", Err("invalid chunk size")),
            (b"5 \r\n", Err("invalid chunk size")),
            (b"5 5\r\n", Err("invalid chunk size")),
            (b"5g\r\n", Err("invalid chunk size")),
            (b"10000000000000000\r\n", Err("chunk size too large")),
            (b"00000000000000005\r\n", Err("chunk size too large")),
            (b"5;a\x00\r\n", Err("invalid chunk extension")),
            (b"5;a\rb\r\n", Err("invalid chunk extension")),
            (b"5;a\x7f\r\n", Err("invalid chunk extension")),
        ];
        for &(line, expected) in cases {
            assert_eq!(
                parse_size_line(line),
                expected,
                "{:?}",
                String::from_utf8_lossy(line)
            );
        }
    }

    #[test]
    fn chunk_extensions_follow_their_grammar() {
        #[rustfmt::skip]
        let valid: &[&[u8]] = &[
            b";a", b";a=b", b" ; a = b", b"\t;\ta\t=\t\"\"", b";a=\"b c;d\"", b";a=\"q\\\"x\"",
            b";a=\"\xe9\"", b";a;b=c;d=\"e\"", b";!#$%&'*+-.^_`|~=x",
        ];
        for ext in valid {
            assert_eq!(
                check_chunk_extensions(ext),
                Ok(()),
                "{:?}",
                String::from_utf8_lossy(ext)
            );
        }
        #[rustfmt::skip]
        let invalid: &[&[u8]] = &[
            b";", b";;;", b";=x", b"; =x", b";a=", b";a= ", b";a;", b";a ", b";a=b ", b";a b",
            b";a=b c", b";a==b", b";a=\"b", b";a=\"b\\\"", b";a=\"b\"c", b";a=b\"", b";a\"=b",
            b";a=\"\x01\"", b";a=\"x\\\x7f\"", b";a(b)", b";a=b,c", b";a@b=c",
        ];
        for ext in invalid {
            assert_eq!(
                check_chunk_extensions(ext),
                Err("invalid chunk extension"),
                "{:?}",
                String::from_utf8_lossy(ext)
            );
        }
        // The audit's inputs, as whole size lines.
        for line in [&b"2;\r\n"[..], b"3;=x\r\n", b"5;;;\r\n", b"5;a=\"b\r\n"] {
            assert_eq!(parse_size_line(line), Err("invalid chunk extension"));
        }
    }

    #[test]
    fn line_parts_enforce_crlf_and_cap() {
        let mut line = Vec::new();
        assert_eq!(
            append_line_part(&mut line, b"5\r", 8, "long"),
            Ok((2, false))
        );
        assert_eq!(
            append_line_part(&mut line, b"\nrest", 8, "long"),
            Ok((1, true))
        );
        let mut line = Vec::new();
        assert_eq!(
            append_line_part(&mut line, b"5\n", 8, "long"),
            Err("bare LF in chunked framing")
        );
        let mut line = Vec::new();
        assert_eq!(
            append_line_part(&mut line, b"123456789", 8, "long"),
            Err("long")
        );
    }
}
