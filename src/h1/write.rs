//! HTTP/1.x head serialization and canonical reason phrases.
//!
//! Inputs: owned heads, usually built from HTTP/3 fields received from the
//! peer. Output: wire bytes appended to a caller buffer (`HTTP/1.0` or
//! `HTTP/1.1` start line, `Name: value` lines, empty line).
//!
//! Invariant: the output never lets a value break the message structure,
//! whatever the head holds. Bytes that could (RFC 9110 5.5) are neutralised:
//! in field values and the reason phrase every CTL except HTAB (CR, LF, NUL
//! included) becomes SP; fields whose name is not a token are dropped; bytes
//! of the method or target outside visible ASCII are percent-encoded. Heads
//! returned by `h1::head` parsers are written unchanged and parse back equal.

use super::head::{Header, RequestHead, ResponseHead, Version};
use super::syntax::{is_field_byte, is_token};

/// Appends `METHOD target HTTP/1.x`, the fields and the empty line.
pub fn write_request_head(head: &RequestHead, out: &mut Vec<u8>) {
    // Room for the usual head (no byte percent-encoded) at once, not growth step by step.
    out.reserve(head.method.len() + head.target.len() + 12 + fields_len(&head.headers) + 2);
    write_start_line_part(head.method.as_bytes(), out);
    out.push(b' ');
    write_start_line_part(head.target.as_bytes(), out);
    out.push(b' ');
    out.extend_from_slice(head.version.as_str().as_bytes());
    out.extend_from_slice(b"\r\n");
    write_fields(&head.headers, out);
    out.extend_from_slice(b"\r\n");
}

/// Appends `HTTP/1.x status reason`, the fields and the empty line. The
/// status is written as given; callers pass 100..=999.
pub fn write_response_head(head: &ResponseHead, out: &mut Vec<u8>) {
    write_response(head.version, head.status, &head.reason, &head.headers, out);
}

fn write_response(
    version: Version,
    status: u16,
    reason: &str,
    headers: &[Header],
    out: &mut Vec<u8>,
) {
    out.reserve(15 + reason.len() + fields_len(headers) + 2);
    out.extend_from_slice(version.as_str().as_bytes());
    out.push(b' ');
    write_status_code(status, out);
    out.push(b' ');
    write_field_value(reason.as_bytes(), out);
    out.extend_from_slice(b"\r\n");
    write_fields(headers, out);
    out.extend_from_slice(b"\r\n");
}

/// The status code's decimal digits (no `String` per head).
fn write_status_code(status: u16, out: &mut Vec<u8>) {
    let mut digits = [0u8; 5];
    let mut at = digits.len();
    let mut n = status;
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
}

/// The bytes `headers` take as `Name: value` lines.
fn fields_len(headers: &[Header]) -> usize {
    headers
        .iter()
        .map(|h| h.name.len() + h.value.len() + 4)
        .sum()
}

/// Writes an HTTP/1.1 response head with `status`, its canonical reason phrase and `headers`:
/// what a proxy emits for a response it did not receive as HTTP/1.1 (from HTTP/3, or made up).
pub fn write_status_head(status: u16, headers: Vec<Header>, out: &mut Vec<u8>) {
    write_response(
        Version::Http11,
        status,
        reason_phrase(status),
        &headers,
        out,
    );
}

/// Appends one `Name: value` line per field (also used for trailers).
pub fn write_fields(headers: &[Header], out: &mut Vec<u8>) {
    for header in headers {
        if !is_token(header.name.as_bytes()) {
            continue;
        }
        out.extend_from_slice(header.name.as_bytes());
        out.extend_from_slice(b": ");
        write_field_value(&header.value, out);
        out.extend_from_slice(b"\r\n");
    }
}

fn write_field_value(value: &[u8], out: &mut Vec<u8>) {
    out.extend(
        value
            .iter()
            .map(|&b| if is_field_byte(b) { b } else { b' ' }),
    );
}

fn write_start_line_part(bytes: &[u8], out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &byte in bytes {
        if (0x21..=0x7e).contains(&byte) {
            out.push(byte);
        } else {
            out.extend_from_slice(&[
                b'%',
                HEX[usize::from(byte >> 4)],
                HEX[usize::from(byte & 0xf)],
            ]);
        }
    }
}

/// Canonical reason phrase of every status in the IANA registry, "" for
/// unknown or unused codes.
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        101 => "Switching Protocols",
        102 => "Processing",
        103 => "Early Hints",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        203 => "Non-Authoritative Information",
        204 => "No Content",
        205 => "Reset Content",
        206 => "Partial Content",
        207 => "Multi-Status",
        208 => "Already Reported",
        226 => "IM Used",
        300 => "Multiple Choices",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        304 => "Not Modified",
        305 => "Use Proxy",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        402 => "Payment Required",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        407 => "Proxy Authentication Required",
        408 => "Request Timeout",
        409 => "Conflict",
        410 => "Gone",
        411 => "Length Required",
        412 => "Precondition Failed",
        413 => "Content Too Large",
        414 => "URI Too Long",
        415 => "Unsupported Media Type",
        416 => "Range Not Satisfiable",
        417 => "Expectation Failed",
        421 => "Misdirected Request",
        422 => "Unprocessable Content",
        423 => "Locked",
        424 => "Failed Dependency",
        425 => "Too Early",
        426 => "Upgrade Required",
        428 => "Precondition Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        451 => "Unavailable For Legal Reasons",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        506 => "Variant Also Negotiates",
        507 => "Insufficient Storage",
        508 => "Loop Detected",
        510 => "Not Extended",
        511 => "Network Authentication Required",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::super::head::{parse_request, parse_response, Limits, Version};
    use super::super::testing::Rng;
    use super::*;

    fn request(method: &str, target: &str, headers: Vec<Header>) -> RequestHead {
        RequestHead {
            method: method.into(),
            target: target.into(),
            version: Version::Http11,
            headers,
        }
    }

    fn written_request(head: &RequestHead) -> String {
        let mut out = Vec::new();
        write_request_head(head, &mut out);
        String::from_utf8_lossy(&out).into_owned()
    }

    #[test]
    fn request_heads_exact_bytes() {
        #[rustfmt::skip]
        let cases: &[(RequestHead, &str)] = &[
            (
                request(
                    "GET",
                    "/a?b",
                    vec![Header::new("Host", "h"), Header::new("X-Empty", "")],
                ),
                "GET /a?b HTTP/1.1\r\nHost: h\r\nX-Empty: \r\n\r\n",
            ),
            (
                RequestHead {
                    version: Version::Http10,
                    ..request("OPTIONS", "*", vec![])
                },
                "OPTIONS * HTTP/1.0\r\n\r\n",
            ),
            (
                request(
                    "GET",
                    "/a b\r\n",
                    vec![Header::new("X", "a\r\nInjected: 1\0")],
                ),
                "GET /a%20b%0D%0A HTTP/1.1\r\nX: a  Injected: 1 \r\n\r\n",
            ),
            (
                request(
                    "GET",
                    "/",
                    vec![
                        Header::new("Bad Name", "v"),
                        Header::new("", "v"),
                        Header::new("Ok", &b"\tv\x80"[..]),
                    ],
                ),
                "GET / HTTP/1.1\r\nOk: \tv\u{fffd}\r\n\r\n",
            ),
        ];
        for (head, expected) in cases {
            assert_eq!(&written_request(head), expected);
        }
    }

    #[test]
    fn response_heads_exact_bytes() {
        #[rustfmt::skip]
        let cases: &[(ResponseHead, &str)] = &[
            (
                ResponseHead {
                    version: Version::Http11,
                    status: 200,
                    reason: "OK".into(),
                    headers: vec![Header::new("Content-Length", "0")],
                },
                "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
            ),
            (
                ResponseHead {
                    version: Version::Http10,
                    status: 204,
                    reason: String::new(),
                    headers: vec![],
                },
                "HTTP/1.0 204 \r\n\r\n",
            ),
            (
                ResponseHead {
                    version: Version::Http11,
                    status: 502,
                    reason: "Bad\r\nX: y".into(),
                    headers: vec![],
                },
                "HTTP/1.1 502 Bad  X: y\r\n\r\n",
            ),
        ];
        for (head, expected) in cases {
            let mut out = Vec::new();
            write_response_head(head, &mut out);
            assert_eq!(String::from_utf8_lossy(&out), *expected);
        }
    }

    #[test]
    fn parsed_heads_round_trip() {
        let limits = Limits::default();
        let requests: &[&[u8]] = &[
            b"\r\nGET /x?y HTTP/1.1\r\nHost: a\r\nX:  v w \r\nE:\r\n\r\n",
            b"GET http://h:1/p HTTP/1.2\r\nHost: h:1\r\nO: \x80\xff\r\n\r\n",
            b"CONNECT h:443 HTTP/1.0\r\n\r\n",
        ];
        for input in requests {
            let (head, _) = parse_request(input, &limits).unwrap().unwrap();
            let mut out = Vec::new();
            write_request_head(&head, &mut out);
            assert_eq!(
                parse_request(&out, &limits).unwrap(),
                Some((head, out.len()))
            );
        }
        let responses: &[&[u8]] = &[
            b"HTTP/1.1 200 OK\r\nA: b\r\n\r\n",
            b"HTTP/1.0 204\r\n\r\n",
            b"HTTP/1.1 299 \xffodd \r\nA:\r\n\r\n",
        ];
        for input in responses {
            let (head, _) = parse_response(input, &limits).unwrap().unwrap();
            let mut out = Vec::new();
            write_response_head(&head, &mut out);
            assert_eq!(
                parse_response(&out, &limits).unwrap(),
                Some((head, out.len()))
            );
        }
    }

    /// Mutated heads never panic the parsers, and accepted ones round-trip.
    #[test]
    fn mutated_heads_round_trip() {
        let limits = Limits::default();
        let seeds: &[&[u8]] = &[
            b"GET /x?y HTTP/1.1\r\nHost: a:1\r\nX: v\r\n\r\n",
            b"CONNECT h:443 HTTP/1.1\r\nHost: h:443\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nA: b\r\n\r\n",
        ];
        let mut rng = Rng(0x2545_f491_4f6c_dd1d);
        for _ in 0..20_000 {
            let seed = seeds[rng.below(seeds.len())];
            let input = rng.mutate(seed);
            if let Ok(Some((head, _))) = parse_request(&input, &limits) {
                let mut out = Vec::new();
                write_request_head(&head, &mut out);
                assert_eq!(
                    parse_request(&out, &limits),
                    Ok(Some((head, out.len()))),
                    "{input:?}"
                );
            }
            if let Ok(Some((head, _))) = parse_response(&input, &limits) {
                let mut out = Vec::new();
                write_response_head(&head, &mut out);
                assert_eq!(
                    parse_response(&out, &limits),
                    Ok(Some((head, out.len()))),
                    "{input:?}"
                );
            }
        }
    }

    #[test]
    fn status_codes_are_their_decimal_digits() {
        for status in [0u16, 7, 42, 100, 200, 404, 999, u16::MAX] {
            let mut out = Vec::new();
            write_status_head(status, vec![Header::new("A", "b")], &mut out);
            let expected = format!(
                "HTTP/1.1 {status} {}\r\nA: b\r\n\r\n",
                reason_phrase(status)
            );
            assert_eq!(String::from_utf8_lossy(&out), expected);
        }
    }

    #[test]
    fn reason_phrases() {
        #[rustfmt::skip]
        let cases = [
            (100, "Continue"),
            (200, "OK"),
            (308, "Permanent Redirect"),
            (413, "Content Too Large"),
            (418, ""),
            (431, "Request Header Fields Too Large"),
            (505, "HTTP Version Not Supported"),
            (511, "Network Authentication Required"),
            (599, ""),
            (0, ""),
        ];
        for (status, phrase) in cases {
            assert_eq!(reason_phrase(status), phrase, "{status}");
        }
    }
}
