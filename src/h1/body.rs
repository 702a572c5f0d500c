//! HTTP/1.x message bodies: framing decisions, incremental decoding, encoding.
//!
//! Inputs: a parsed head (to decide the framing, RFC 9112 6.3), then body
//! bytes as they arrive (decoder) or payload to send (encoder). Outputs: a
//! [`BodyFraming`] or the status to answer, decoded payload appended to a
//! caller buffer with a size cap (backpressure), and encoded wire bytes.
//!
//! Smuggling rules: requests with both `Transfer-Encoding` and
//! `Content-Length`, conflicting or malformed lengths, `Transfer-Encoding`
//! on HTTP/1.0, or any transfer coding other than a single final `chunked`
//! are refused (400, or 501 for codings ptproxy does not implement).
//! Responses follow the same rules with 502, except that a coding list not
//! ending in `chunked` is read until close, as RFC 9112 6.3 prescribes.
//!
//! Invariants: the decoder never consumes bytes past the end of the body
//! (they belong to the next pipelined message), never lets the output grow
//! beyond the caller's limit, and gives the same output and result however
//! the input is split ([`decode_in_pieces`] checks exactly that). After an
//! error the decoder keeps returning that error.

use std::fmt;

use super::chunked::{copy_payload, ChunkedDecoder};
use super::head::{headers_named, Header, ParseError, RequestHead, ResponseHead, Version};
use super::syntax::list_elements;
use super::write::write_fields;

/// How the length of a message body is determined.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFraming {
    /// No body at all.
    None,
    /// Exactly this many bytes.
    ContentLength(u64),
    /// Chunked transfer coding.
    Chunked,
    /// Everything until the connection closes (responses only).
    UntilClose,
}

/// Body framing of a request (RFC 9112 6.3), or the status to answer.
pub fn request_framing(head: &RequestHead) -> Result<BodyFraming, ParseError> {
    let bad_request = |reason| ParseError::new(400, reason);
    let codings = declared_codings(&head.headers).map_err(bad_request)?;
    let length = declared_length(&head.headers).map_err(bad_request)?;
    match (codings, length) {
        (Some(_), Some(_)) => Err(bad_request(BOTH_FIELDS)),
        (Some(codings), None) => request_coding_framing(head.version, codings),
        (None, Some(length)) => Ok(BodyFraming::ContentLength(length)),
        (None, None) => Ok(BodyFraming::None),
    }
}

/// Body framing of a response to a `request_method` request, or a 502.
///
/// A 2xx answer to CONNECT yields `None`: the connection becomes a tunnel.
pub fn response_framing(
    head: &ResponseHead,
    request_method: &str,
) -> Result<BodyFraming, ParseError> {
    if response_has_no_body(head.status, request_method) {
        return Ok(BodyFraming::None);
    }
    let bad_gateway = |reason| ParseError::new(502, reason);
    let codings = declared_codings(&head.headers).map_err(bad_gateway)?;
    let length = declared_length(&head.headers).map_err(bad_gateway)?;
    match (codings, length) {
        (Some(_), Some(_)) => Err(bad_gateway(BOTH_FIELDS)),
        (Some(_), None) if head.version == Version::Http10 => {
            Err(bad_gateway("transfer-encoding in HTTP/1.0 response"))
        }
        (Some(codings), None) if codings.chunked_count > 1 => Err(bad_gateway(CHUNKED_TWICE)),
        (Some(codings), None) if codings.chunked_is_final => Ok(BodyFraming::Chunked),
        (Some(_), None) => Ok(BodyFraming::UntilClose),
        (None, Some(length)) => Ok(BodyFraming::ContentLength(length)),
        (None, None) => Ok(BodyFraming::UntilClose),
    }
}

const BOTH_FIELDS: &str = "both transfer-encoding and content-length";
const CHUNKED_TWICE: &str = "chunked applied more than once";

fn response_has_no_body(status: u16, request_method: &str) -> bool {
    request_method == "HEAD"
        || (100..200).contains(&status)
        || status == 204
        || status == 304
        || (request_method == "CONNECT" && (200..300).contains(&status))
}

/// Summary of every `Transfer-Encoding` element of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Codings {
    chunked_count: usize,
    chunked_is_final: bool,
    has_other: bool,
}

/// `None` without `Transfer-Encoding`; an error if the fields list nothing.
fn declared_codings(headers: &[Header]) -> Result<Option<Codings>, &'static str> {
    let mut fields = headers_named(headers, "transfer-encoding").peekable();
    if fields.peek().is_none() {
        return Ok(None);
    }
    let mut codings = Codings {
        chunked_count: 0,
        chunked_is_final: false,
        has_other: false,
    };
    for coding in fields.flat_map(list_elements).filter(|c| !c.is_empty()) {
        let chunked = coding.eq_ignore_ascii_case(b"chunked");
        codings.chunked_count += usize::from(chunked);
        codings.has_other |= !chunked;
        codings.chunked_is_final = chunked;
    }
    if codings.chunked_count == 0 && !codings.has_other {
        return Err("empty transfer-encoding");
    }
    Ok(Some(codings))
}

fn request_coding_framing(version: Version, codings: Codings) -> Result<BodyFraming, ParseError> {
    if version == Version::Http10 {
        return Err(ParseError::new(
            400,
            "transfer-encoding in HTTP/1.0 request",
        ));
    }
    if codings.chunked_count > 1 {
        return Err(ParseError::new(400, CHUNKED_TWICE));
    }
    if !codings.chunked_is_final {
        return Err(ParseError::new(
            400,
            "chunked is not the final transfer coding",
        ));
    }
    if codings.has_other {
        return Err(ParseError::new(501, "transfer coding not supported"));
    }
    Ok(BodyFraming::Chunked)
}

/// `None` without `Content-Length`; the one value all elements agree on.
pub(crate) fn declared_length(headers: &[Header]) -> Result<Option<u64>, &'static str> {
    let mut length = None;
    for element in headers_named(headers, "content-length").flat_map(list_elements) {
        let value = parse_content_length(element).ok_or("invalid content-length")?;
        if length.is_some_and(|known| known != value) {
            return Err("conflicting content-length values");
        }
        length = Some(value);
    }
    Ok(length)
}

/// `1*DIGIT` that fits in a u64.
fn parse_content_length(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    digits.iter().try_fold(0u64, |acc, &digit| {
        acc.checked_mul(10)?.checked_add(u64::from(digit - b'0'))
    })
}

/// Why a body could not be decoded or encoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyError {
    /// Framing bytes violate the syntax (reason attached).
    Malformed(&'static str),
    /// The input ended (or `finish` came) before the declared end.
    Truncated,
    /// More payload than the framing allows.
    TooLong,
}

impl fmt::Display for BodyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BodyError::Malformed(reason) => write!(f, "malformed body: {reason}"),
            BodyError::Truncated => f.write_str("body truncated"),
            BodyError::TooLong => f.write_str("body longer than declared"),
        }
    }
}

impl std::error::Error for BodyError {}

#[derive(Debug, Clone)]
enum DecodeState {
    Fixed(u64),
    UntilClose,
    Chunked(ChunkedDecoder),
    Done,
    Failed(BodyError),
}

/// Incremental body decoder for one message.
#[derive(Debug, Clone)]
pub struct BodyDecoder {
    framing: BodyFraming,
    state: DecodeState,
    trailers: Vec<Header>,
}

impl BodyDecoder {
    pub fn new(framing: BodyFraming) -> Self {
        let state = match framing {
            BodyFraming::None | BodyFraming::ContentLength(0) => DecodeState::Done,
            BodyFraming::ContentLength(length) => DecodeState::Fixed(length),
            BodyFraming::Chunked => DecodeState::Chunked(ChunkedDecoder::new()),
            BodyFraming::UntilClose => DecodeState::UntilClose,
        };
        BodyDecoder {
            framing,
            state,
            trailers: Vec::new(),
        }
    }

    /// Decodes framing from `input`, appending payload to `out` without
    /// letting `out.len()` exceed `out_limit`. Returns how many input bytes
    /// were consumed (may be less than `input.len()` when `out` is full or
    /// the body ended: bytes after the body end are NOT consumed, they
    /// belong to the next message). Framing bytes are consumed even while
    /// `out` is full, so a finished body is noticed without output room.
    pub fn decode(
        &mut self,
        input: &[u8],
        out: &mut Vec<u8>,
        out_limit: usize,
    ) -> Result<usize, BodyError> {
        if let DecodeState::Failed(error) = &self.state {
            return Err(error.clone());
        }
        let mut consumed = 0;
        loop {
            let room = out_limit.saturating_sub(out.len());
            match self.step(&input[consumed..], out, room) {
                Ok(0) => return Ok(consumed),
                Ok(used) => consumed += used,
                Err(error) => {
                    self.state = DecodeState::Failed(error.clone());
                    return Err(error);
                }
            }
        }
    }

    fn step(&mut self, input: &[u8], out: &mut Vec<u8>, room: usize) -> Result<usize, BodyError> {
        match &mut self.state {
            DecodeState::Fixed(remaining) => {
                let used = copy_payload(input, *remaining, out, room);
                *remaining -= used as u64;
                if *remaining == 0 {
                    self.state = DecodeState::Done;
                }
                Ok(used)
            }
            DecodeState::UntilClose => Ok(copy_payload(input, u64::MAX, out, room)),
            DecodeState::Chunked(chunked) => {
                let used = chunked
                    .step(input, out, room)
                    .map_err(BodyError::Malformed)?;
                if chunked.is_done() {
                    self.trailers = chunked.take_trailers();
                    self.state = DecodeState::Done;
                }
                Ok(used)
            }
            DecodeState::Done | DecodeState::Failed(_) => Ok(0),
        }
    }

    /// The whole body (including last chunk and trailers) has been consumed.
    pub fn is_done(&self) -> bool {
        matches!(self.state, DecodeState::Done)
    }

    /// The input ended: Ok (and done) for `UntilClose`, Ok if already done,
    /// `Err(Truncated)` otherwise.
    pub fn at_eof(&mut self) -> Result<(), BodyError> {
        match &self.state {
            DecodeState::Done => Ok(()),
            DecodeState::UntilClose => {
                self.state = DecodeState::Done;
                Ok(())
            }
            DecodeState::Failed(error) => Err(error.clone()),
            DecodeState::Fixed(_) | DecodeState::Chunked(_) => {
                self.state = DecodeState::Failed(BodyError::Truncated);
                Err(BodyError::Truncated)
            }
        }
    }

    /// Trailer fields of a chunked body, once done (empty before, and after
    /// the first call).
    pub fn take_trailers(&mut self) -> Vec<Header> {
        std::mem::take(&mut self.trailers)
    }

    /// For `ContentLength` framing: payload bytes still expected.
    pub fn remaining(&self) -> Option<u64> {
        match (&self.state, self.framing) {
            (DecodeState::Fixed(remaining), _) => Some(*remaining),
            (_, BodyFraming::ContentLength(_)) if self.is_done() => Some(0),
            _ => None,
        }
    }
}

/// Everything observable about decoding one input; see [`decode_in_pieces`].
/// `consumed` is 0 when `error` is set (a failing `decode` reports no count);
/// `payload` then holds the payload that preceded the error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeOutcome {
    pub payload: Vec<u8>,
    pub consumed: usize,
    pub done: bool,
    pub trailers: Vec<Header>,
    pub error: Option<BodyError>,
}

/// Decodes `input` with a fresh decoder, delivered in consecutive pieces of
/// `piece_lens` bytes (the remainder arrives last) through an output buffer
/// of `out_limit` bytes (at least 1) that is drained after every call, like
/// a connection would. Pure; for tests and fuzzing: the outcome must not
/// depend on `piece_lens` or `out_limit`.
pub fn decode_in_pieces(
    framing: BodyFraming,
    input: &[u8],
    piece_lens: &[usize],
    out_limit: usize,
) -> DecodeOutcome {
    let mut decoder = BodyDecoder::new(framing);
    let mut out = Vec::new();
    let out_limit = out_limit.max(1);
    let mut outcome = DecodeOutcome {
        payload: Vec::new(),
        consumed: 0,
        done: false,
        trailers: Vec::new(),
        error: None,
    };
    for end in piece_ends(input.len(), piece_lens) {
        let available = &input[..end];
        let fed = feed_until_stalled(&mut decoder, available, &mut out, out_limit, &mut outcome);
        if let Err(error) = fed {
            outcome.consumed = 0;
            outcome.error = Some(error);
            break;
        }
    }
    outcome.done = decoder.is_done();
    outcome.trailers = decoder.take_trailers();
    outcome
}

/// Cumulative ends of the pieces, clamped to `len`, ending with `len`.
fn piece_ends(len: usize, piece_lens: &[usize]) -> Vec<usize> {
    let mut end = 0usize;
    let mut ends: Vec<usize> = piece_lens
        .iter()
        .map(|piece| {
            end = end.saturating_add(*piece).min(len);
            end
        })
        .collect();
    ends.push(len);
    ends
}

/// Feeds the unconsumed part of `available` until the decoder stops.
fn feed_until_stalled(
    decoder: &mut BodyDecoder,
    available: &[u8],
    out: &mut Vec<u8>,
    out_limit: usize,
    outcome: &mut DecodeOutcome,
) -> Result<(), BodyError> {
    loop {
        let result = decoder.decode(&available[outcome.consumed..], out, out_limit);
        outcome.payload.append(out);
        match result? {
            0 => return Ok(()),
            used => outcome.consumed += used,
        }
    }
}

/// How we frame a body we write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyEncoding {
    None,
    ContentLength(u64),
    Chunked,
    UntilClose,
}

/// Frames payload for the wire; trailers are only sent with `Chunked` (for
/// other encodings `finish` drops them).
#[derive(Debug, Clone)]
pub struct BodyEncoder {
    encoding: BodyEncoding,
    written: u64,
    finished: bool,
}

impl BodyEncoder {
    pub fn new(enc: BodyEncoding) -> Self {
        BodyEncoder {
            encoding: enc,
            written: 0,
            finished: false,
        }
    }

    /// Chunked: one chunk per call (empty data writes nothing);
    /// ContentLength: `Err(TooLong)` if more than declared (nothing written);
    /// None, or after `finish`: `Err(TooLong)` if `data` is non-empty.
    pub fn encode(&mut self, data: &[u8], out: &mut Vec<u8>) -> Result<(), BodyError> {
        if data.is_empty() {
            return Ok(());
        }
        if self.finished {
            return Err(BodyError::TooLong);
        }
        let total = self.written.saturating_add(data.len() as u64);
        match self.encoding {
            BodyEncoding::None => return Err(BodyError::TooLong),
            BodyEncoding::ContentLength(length) if total > length => {
                return Err(BodyError::TooLong)
            }
            BodyEncoding::ContentLength(_) | BodyEncoding::UntilClose => {
                out.extend_from_slice(data)
            }
            BodyEncoding::Chunked => write_chunk(data, out),
        }
        self.written = total;
        Ok(())
    }

    /// Chunked: last chunk, trailers and final CRLF; ContentLength:
    /// `Err(Truncated)` if short. A second call does nothing.
    pub fn finish(&mut self, trailers: &[Header], out: &mut Vec<u8>) -> Result<(), BodyError> {
        if self.finished {
            return Ok(());
        }
        match self.encoding {
            BodyEncoding::ContentLength(length) if self.written < length => {
                return Err(BodyError::Truncated)
            }
            BodyEncoding::Chunked => {
                out.extend_from_slice(b"0\r\n");
                write_fields(trailers, out);
                out.extend_from_slice(b"\r\n");
            }
            _ => {}
        }
        self.finished = true;
        Ok(())
    }

    pub fn is_finished(&self) -> bool {
        self.finished
    }
}

fn write_chunk(data: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(format!("{:x}\r\n", data.len()).as_bytes());
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(version: Version, fields: &[(&str, &str)]) -> RequestHead {
        RequestHead {
            method: "POST".into(),
            target: "/".into(),
            version,
            headers: fields.iter().map(|(n, v)| Header::new(*n, *v)).collect(),
        }
    }

    fn response(status: u16, version: Version, fields: &[(&str, &str)]) -> ResponseHead {
        ResponseHead {
            version,
            status,
            reason: String::new(),
            headers: fields.iter().map(|(n, v)| Header::new(*n, *v)).collect(),
        }
    }

    type Fields = &'static [(&'static str, &'static str)];
    /// Framing, or the status of the refusal.
    type Expected = Result<BodyFraming, u16>;

    const TE: &str = "Transfer-Encoding";
    const CL: &str = "Content-Length";

    #[test]
    fn request_framing_rules() {
        use BodyFraming::*;
        let v11 = Version::Http11;
        #[rustfmt::skip]
        let cases: &[(Version, Fields, Expected)] = &[
            (v11, &[], Ok(None)),
            (v11, &[(CL, "0")], Ok(ContentLength(0))),
            (v11, &[(CL, "42")], Ok(ContentLength(42))),
            (v11, &[(CL, "007")], Ok(ContentLength(7))),
            (v11, &[(CL, "5"), ("content-length", "5")], Ok(ContentLength(5))),
            (v11, &[(CL, "5, 5,5")], Ok(ContentLength(5))),
            (v11, &[(CL, "18446744073709551615")], Ok(ContentLength(u64::MAX))),
            (v11, &[(CL, "18446744073709551616")], Err(400)),
            (v11, &[(CL, "99999999999999999999999")], Err(400)),
            (v11, &[(CL, "5"), (CL, "6")], Err(400)),
            (v11, &[(CL, "5, 6")], Err(400)),
            (v11, &[(CL, "5,")], Err(400)),
            (v11, &[(CL, "")], Err(400)),
            (v11, &[(CL, "+5")], Err(400)),
            (v11, &[(CL, "-5")], Err(400)),
            (v11, &[(CL, "0x5")], Err(400)),
            (v11, &[(CL, "5 5")], Err(400)),
            (v11, &[(CL, "5.0")], Err(400)),
            (v11, &[(TE, "chunked")], Ok(Chunked)),
            (v11, &[(TE, "CHUNKED")], Ok(Chunked)),
            (v11, &[(TE, ", chunked,")], Ok(Chunked)),
            (Version::Http10, &[(TE, "chunked")], Err(400)),
            (v11, &[(TE, "chunked"), (CL, "5")], Err(400)),
            (v11, &[(CL, "5"), (TE, "chunked")], Err(400)),
            (v11, &[(TE, "chunked"), (CL, "x")], Err(400)),
            (v11, &[(TE, "chunked"), (TE, "chunked")], Err(400)),
            (v11, &[(TE, "chunked, chunked")], Err(400)),
            (v11, &[(TE, "chunked, identity")], Err(400)),
            (v11, &[(TE, "chunked"), (TE, "gzip")], Err(400)),
            (v11, &[(TE, "xchunked")], Err(400)),
            (v11, &[(TE, "chunked;q=1")], Err(400)),
            (v11, &[(TE, "chunk ed")], Err(400)),
            (v11, &[(TE, "\"chunked\"")], Err(400)),
            (v11, &[(TE, "")], Err(400)),
            (v11, &[(TE, " , ")], Err(400)),
            (v11, &[(TE, "identity")], Err(400)),
            (v11, &[(TE, "gzip, chunked")], Err(501)),
            (v11, &[(TE, "identity"), (TE, "chunked")], Err(501)),
        ];
        for (version, fields, expected) in cases {
            let got = request_framing(&request(*version, fields)).map_err(|e| e.status);
            assert_eq!(&got, expected, "{version:?} {fields:?}");
        }
    }

    #[test]
    fn response_framing_rules() {
        use BodyFraming::*;
        let v11 = Version::Http11;
        #[rustfmt::skip]
        let cases: &[(&str, u16, Version, Fields, Expected)] = &[
            ("GET", 200, v11, &[], Ok(UntilClose)),
            ("GET", 200, v11, &[(CL, "3")], Ok(ContentLength(3))),
            ("GET", 200, v11, &[(CL, "3, 3")], Ok(ContentLength(3))),
            ("HEAD", 200, v11, &[(CL, "3")], Ok(None)),
            ("HEAD", 200, v11, &[(TE, "chunked")], Ok(None)),
            ("GET", 100, v11, &[], Ok(None)),
            ("GET", 101, v11, &[], Ok(None)),
            ("GET", 204, v11, &[(CL, "3")], Ok(None)),
            ("GET", 304, v11, &[(CL, "3")], Ok(None)),
            ("CONNECT", 200, v11, &[], Ok(None)),
            ("CONNECT", 407, v11, &[(CL, "3")], Ok(ContentLength(3))),
            ("GET", 200, v11, &[(TE, "chunked")], Ok(Chunked)),
            ("GET", 200, v11, &[(TE, "gzip, chunked")], Ok(Chunked)),
            ("GET", 200, v11, &[(TE, "chunked, identity")], Ok(UntilClose)),
            ("GET", 200, v11, &[(TE, "gzip")], Ok(UntilClose)),
            ("GET", 200, v11, &[(TE, "chunked, chunked")], Err(502)),
            ("GET", 200, v11, &[(TE, "")], Err(502)),
            ("GET", 200, Version::Http10, &[(TE, "chunked")], Err(502)),
            ("GET", 200, v11, &[(TE, "chunked"), (CL, "3")], Err(502)),
            ("GET", 200, v11, &[(CL, "3"), (CL, "4")], Err(502)),
            ("GET", 200, v11, &[(CL, "-3")], Err(502)),
            ("GET", 200, v11, &[(CL, "")], Err(502)),
        ];
        for (method, status, version, fields, expected) in cases {
            let head = response(*status, *version, fields);
            let got = response_framing(&head, method).map_err(|e| e.status);
            assert_eq!(&got, expected, "{method} {status} {fields:?}");
        }
    }

    /// Classic smuggling payloads, parsed end to end: each must be refused.
    #[test]
    fn smuggling_classics_are_refused() {
        #[rustfmt::skip]
        let cases: &[&[u8]] = &[
            // CL.TE and TE.CL
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nG",
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n8\r\nSMUGGLED\r\n0\r\n\r\n",
            // TE.TE obfuscations
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding : chunked\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, identity\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: x\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-encoding: chunked\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\tchunked\r\nContent-Length: 4\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding\t:chunked\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: a\r\nX: y\r\n Transfer-Encoding: chunked\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: \x0bchunked\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\nContent-Length: 4\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: \"chunked\"\r\n\r\n",
            b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
            // CL.CL
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4 5\r\n\r\n",
        ];
        for input in cases {
            let refused = match super::super::head::parse_request(input, &Default::default()) {
                Err(_) => true,
                Ok(Some((head, _))) => request_framing(&head).is_err(),
                Ok(None) => panic!("incomplete: {:?}", String::from_utf8_lossy(input)),
            };
            assert!(refused, "{:?}", String::from_utf8_lossy(input));
        }
    }

    /// Valid chunked bodies: (input, payload, trailers, trailing bytes left).
    #[rustfmt::skip]
    const CHUNKED_OK: &[(&[u8], &[u8], Fields, usize)] = &[
        (b"0\r\n\r\n", b"", &[], 0),
        (b"5\r\nhello\r\n0\r\n\r\n", b"hello", &[], 0),
        (b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\nGET / HTTP/1.1\r\n", b"hello world", &[], 16),
        (b"A;ext=1\r\n0123456789\r\n0;last\r\n\r\n", b"0123456789", &[], 0),
        (b"3 ; a=\"b\"\r\nabc\r\n0\r\nX-Sum: 1\r\nY:  two words \r\n\r\nZ", b"abc", &[("X-Sum", "1"), ("Y", "two words")], 1),
        (b"1\r\n\n\r\n0\r\n\r\n", b"\n", &[], 0),
        (b"02\r\n\r\n\r\n0000\r\n\r\n", b"\r\n", &[], 0),
        (b"f\r\n0123456789abcde\r\n0\r\n\r\n", b"0123456789abcde", &[], 0),
    ];

    /// Invalid chunked bodies and the error they must give.
    #[rustfmt::skip]
    const CHUNKED_BAD: &[(&[u8], BodyError)] = &[
        (b"\r\n", BodyError::Malformed("invalid chunk size")),
        (b"x\r\n", BodyError::Malformed("invalid chunk size")),
        (b"-1\r\n", BodyError::Malformed("invalid chunk size")),
        (b"0x1\r\na\r\n0\r\n\r\n", BodyError::Malformed("invalid chunk size")),
        (b" 1\r\na\r\n0\r\n\r\n", BodyError::Malformed("invalid chunk size")),
        (b"5\nhello\r\n0\r\n\r\n", BodyError::Malformed("bare LF in chunked framing")),
        (b"5\r\nhello\n0\r\n\r\n", BodyError::Malformed("missing CRLF after chunk data")),
        (b"5\r\nhelloX\r\n0\r\n\r\n", BodyError::Malformed("missing CRLF after chunk data")),
        (b"5\r\nhello\rX0\r\n\r\n", BodyError::Malformed("missing CRLF after chunk data")),
        (b"3\r\nhello\r\n0\r\n\r\n", BodyError::Malformed("missing CRLF after chunk data")),
        (b"0\r\n\n", BodyError::Malformed("bare LF in chunked framing")),
        (b"0\r\nX: y\n\r\n", BodyError::Malformed("bare LF in chunked framing")),
        (b"0\r\nX: y\r\n\n", BodyError::Malformed("bare LF in chunked framing")),
        (b"0\r\nX : y\r\n\r\n", BodyError::Malformed("whitespace before colon")),
        (b"0\r\nX: y\r\n z\r\n\r\n", BodyError::Malformed("obsolete line folding")),
        (b"0\r\nX: \x01\r\n\r\n", BodyError::Malformed("invalid header value")),
        (b"1;\x00\r\na\r\n0\r\n\r\n", BodyError::Malformed("invalid chunk extension")),
        (b"10000000000000000\r\n", BodyError::Malformed("chunk size too large")),
    ];

    fn one_shot(framing: BodyFraming, input: &[u8]) -> DecodeOutcome {
        decode_in_pieces(framing, input, &[], usize::MAX)
    }

    /// Every single split point, every pair of split points (short inputs),
    /// byte-at-a-time and a 1-byte output buffer all match one-shot decoding.
    fn assert_split_invariant(framing: BodyFraming, input: &[u8]) {
        let expected = one_shot(framing, input);
        let label = String::from_utf8_lossy(input);
        for first in 0..=input.len() {
            assert_eq!(
                decode_in_pieces(framing, input, &[first], 3),
                expected,
                "{label:?} @{first}"
            );
            if input.len() <= 48 {
                for second in 0..=input.len() - first {
                    let got = decode_in_pieces(framing, input, &[first, second], 1);
                    assert_eq!(got, expected, "{label:?} @{first}+{second}");
                }
            }
        }
        let bytes = vec![1; input.len()];
        assert_eq!(
            decode_in_pieces(framing, input, &bytes, 1),
            expected,
            "{label:?} bytewise"
        );
    }

    #[test]
    fn chunked_decodes_valid_bodies() {
        for &(input, payload, trailers, left) in CHUNKED_OK {
            let outcome = one_shot(BodyFraming::Chunked, input);
            let trailers: Vec<Header> = trailers.iter().map(|(n, v)| Header::new(*n, *v)).collect();
            let label = String::from_utf8_lossy(input);
            assert_eq!(outcome.error, None, "{label:?}");
            assert!(outcome.done, "{label:?}");
            assert_eq!(outcome.payload, payload, "{label:?}");
            assert_eq!(outcome.trailers, trailers, "{label:?}");
            assert_eq!(outcome.consumed, input.len() - left, "{label:?}");
            assert_split_invariant(BodyFraming::Chunked, input);
        }
    }

    #[test]
    fn chunked_rejects_invalid_bodies() {
        for (input, error) in CHUNKED_BAD {
            let outcome = one_shot(BodyFraming::Chunked, input);
            assert_eq!(
                outcome.error.as_ref(),
                Some(error),
                "{:?}",
                String::from_utf8_lossy(input)
            );
            assert_split_invariant(BodyFraming::Chunked, input);
        }
    }

    #[test]
    fn chunked_line_and_trailer_caps() {
        let mut long_ext = b"1;".to_vec();
        long_ext.resize(4094, b'a');
        long_ext.extend_from_slice(b"\r\nx\r\n0\r\n\r\n");
        assert!(one_shot(BodyFraming::Chunked, &long_ext).done);
        long_ext.insert(2, b'a');
        let outcome = one_shot(BodyFraming::Chunked, &long_ext);
        assert_eq!(
            outcome.error,
            Some(BodyError::Malformed("chunk size line too long"))
        );
        let endless = vec![b'a'; 5000];
        let outcome = decode_in_pieces(BodyFraming::Chunked, &endless, &[1; 5000], 1);
        assert_eq!(
            outcome.error,
            Some(BodyError::Malformed("chunk size line too long"))
        );
        let mut trailers = b"0\r\n".to_vec();
        while trailers.len() < 70_000 {
            trailers.extend_from_slice(b"X-Filler: 0123456789012345678901234567890123456789\r\n");
        }
        trailers.extend_from_slice(b"\r\n");
        let outcome = one_shot(BodyFraming::Chunked, &trailers);
        assert_eq!(
            outcome.error,
            Some(BodyError::Malformed("trailer section too large"))
        );
    }

    #[test]
    fn errors_are_sticky() {
        let mut decoder = BodyDecoder::new(BodyFraming::Chunked);
        let mut out = Vec::new();
        let error = BodyError::Malformed("invalid chunk size");
        assert_eq!(decoder.decode(b"z\r\n", &mut out, 10), Err(error.clone()));
        assert_eq!(
            decoder.decode(b"0\r\n\r\n", &mut out, 10),
            Err(error.clone())
        );
        assert_eq!(decoder.at_eof(), Err(error));
    }

    #[test]
    fn content_length_stops_at_the_end_of_the_body() {
        let mut decoder = BodyDecoder::new(BodyFraming::ContentLength(5));
        let mut out = Vec::new();
        assert_eq!(decoder.remaining(), Some(5));
        assert_eq!(decoder.decode(b"hel", &mut out, 2), Ok(2));
        assert_eq!(decoder.decode(b"l", &mut out, 2), Ok(0));
        out.clear();
        assert_eq!(decoder.remaining(), Some(3));
        assert_eq!(decoder.decode(b"lloGET", &mut out, 64), Ok(3));
        assert_eq!((out.as_slice(), decoder.is_done()), (&b"llo"[..], true));
        assert_eq!(decoder.remaining(), Some(0));
        assert_eq!(decoder.decode(b"GET", &mut out, 64), Ok(0));
        assert_eq!(decoder.at_eof(), Ok(()));
        for (framing, input) in [
            (BodyFraming::ContentLength(7), &b"abcdefghij"[..]),
            (BodyFraming::UntilClose, b"abc"),
        ] {
            assert_split_invariant(framing, input);
        }
    }

    #[test]
    fn eof_handling() {
        #[rustfmt::skip]
        let cases: &[(BodyFraming, &[u8], Result<(), BodyError>)] = &[
            (BodyFraming::None, b"", Ok(())),
            (BodyFraming::ContentLength(0), b"", Ok(())),
            (BodyFraming::ContentLength(3), b"ab", Err(BodyError::Truncated)),
            (BodyFraming::ContentLength(3), b"abc", Ok(())),
            (BodyFraming::UntilClose, b"abc", Ok(())),
            (BodyFraming::Chunked, b"1\r\na\r\n", Err(BodyError::Truncated)),
            (BodyFraming::Chunked, b"0\r\n\r", Err(BodyError::Truncated)),
            (BodyFraming::Chunked, b"0\r\n\r\n", Ok(())),
        ];
        for (framing, input, expected) in cases {
            let mut decoder = BodyDecoder::new(*framing);
            let mut out = Vec::new();
            assert_eq!(
                decoder.decode(input, &mut out, 64),
                Ok(input.len()),
                "{framing:?}"
            );
            assert_eq!(&decoder.at_eof(), expected, "{framing:?} {input:?}");
            assert_eq!(decoder.is_done(), expected.is_ok());
        }
        let mut none = BodyDecoder::new(BodyFraming::None);
        assert!(none.is_done());
        assert_eq!(none.decode(b"GET", &mut Vec::new(), 64), Ok(0));
        assert_eq!(none.remaining(), None);
    }

    #[test]
    fn encoder_outputs_exact_bytes() {
        type Pieces = &'static [&'static [u8]];
        let trailers = [Header::new("X-Sum", "abc")];
        #[rustfmt::skip]
        let cases: &[(BodyEncoding, Pieces, &[u8])] = &[
            (BodyEncoding::Chunked, &[b"hello", b"", b"0123456789abcdef"], b"5\r\nhello\r\n10\r\n0123456789abcdef\r\n0\r\nX-Sum: abc\r\n\r\n"),
            (BodyEncoding::Chunked, &[], b"0\r\nX-Sum: abc\r\n\r\n"),
            (BodyEncoding::ContentLength(5), &[b"he", b"llo"], b"hello"),
            (BodyEncoding::UntilClose, &[b"he", b"llo"], b"hello"),
            (BodyEncoding::None, &[b""], b""),
        ];
        for (encoding, pieces, expected) in cases {
            let mut encoder = BodyEncoder::new(*encoding);
            let mut out = Vec::new();
            for piece in pieces.iter() {
                encoder.encode(piece, &mut out).unwrap();
            }
            assert!(!encoder.is_finished());
            encoder.finish(&trailers, &mut out).unwrap();
            assert!(encoder.is_finished());
            encoder.finish(&trailers, &mut out).unwrap();
            assert_eq!(
                String::from_utf8_lossy(&out),
                String::from_utf8_lossy(expected),
                "{encoding:?}"
            );
        }
    }

    #[test]
    fn encoder_refuses_wrong_lengths() {
        let mut out = Vec::new();
        let mut fixed = BodyEncoder::new(BodyEncoding::ContentLength(3));
        assert_eq!(fixed.encode(b"abcd", &mut out), Err(BodyError::TooLong));
        assert_eq!(fixed.encode(b"ab", &mut out), Ok(()));
        assert_eq!(fixed.finish(&[], &mut out), Err(BodyError::Truncated));
        assert!(!fixed.is_finished());
        assert_eq!(fixed.encode(b"cd", &mut out), Err(BodyError::TooLong));
        assert_eq!(out, b"ab");
        let mut none = BodyEncoder::new(BodyEncoding::None);
        assert_eq!(none.encode(b"x", &mut out), Err(BodyError::TooLong));
        let mut chunked = BodyEncoder::new(BodyEncoding::Chunked);
        chunked.finish(&[], &mut out).unwrap();
        assert_eq!(chunked.encode(b"late", &mut out), Err(BodyError::TooLong));
    }

    /// Mutated chunked bodies decode identically whatever the split.
    #[test]
    fn mutated_chunked_bodies_are_split_invariant() {
        let mut rng = super::super::testing::Rng(0x9e37_79b9_7f4a_7c15);
        for _ in 0..3_000 {
            let seed = CHUNKED_OK[rng.below(CHUNKED_OK.len())].0;
            let input = rng.mutate(seed);
            let expected = one_shot(BodyFraming::Chunked, &input);
            let pieces: Vec<usize> = (0..4).map(|_| rng.below(input.len() + 1)).collect();
            let got = decode_in_pieces(BodyFraming::Chunked, &input, &pieces, rng.below(4));
            assert_eq!(got, expected, "{input:?} {pieces:?}");
            let bytes = vec![1; input.len()];
            let got = decode_in_pieces(BodyFraming::Chunked, &input, &bytes, 1);
            assert_eq!(got, expected, "{input:?} bytewise");
        }
    }

    #[test]
    fn chunked_round_trip() {
        let payload: Vec<u8> = (0..=255u8).cycle().take(3000).collect();
        let trailers = vec![
            Header::new("X-Checksum", "sha256=abc"),
            Header::new("x-n", ""),
        ];
        for piece in [1, 7, 255, 256, 4096] {
            let mut encoder = BodyEncoder::new(BodyEncoding::Chunked);
            let mut wire = Vec::new();
            for data in payload.chunks(piece) {
                encoder.encode(data, &mut wire).unwrap();
            }
            encoder.finish(&trailers, &mut wire).unwrap();
            let outcome = decode_in_pieces(BodyFraming::Chunked, &wire, &[piece + 3; 64], 100);
            assert_eq!(outcome.payload, payload, "piece {piece}");
            assert_eq!(outcome.trailers, trailers);
            assert_eq!(
                (outcome.consumed, outcome.done, outcome.error),
                (wire.len(), true, None)
            );
        }
    }
}
