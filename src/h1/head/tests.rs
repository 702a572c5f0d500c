//! Unit tests of the head parsers (the differential test against the former
//! own tokenizer is in `differential.rs`).

use super::*;

fn limits() -> Limits {
    Limits::default()
}

fn req(input: &[u8]) -> Result<Option<(RequestHead, usize)>, ParseError> {
    parse_request(input, &limits())
}

fn req_ok(input: &[u8]) -> RequestHead {
    match req(input) {
        Ok(Some((head, used))) => {
            assert_eq!(used, input.len(), "{:?}", String::from_utf8_lossy(input));
            head
        }
        other => panic!("{:?}: {other:?}", String::from_utf8_lossy(input)),
    }
}

fn req_err(input: &[u8]) -> ParseError {
    match req(input) {
        Err(e) => e,
        other => panic!("{:?}: {other:?}", String::from_utf8_lossy(input)),
    }
}

/// httparse must agree with every head we accept (differential check).
fn assert_httparse_agrees(input: &[u8], head: &RequestHead) {
    let mut fields = [httparse::EMPTY_HEADER; 16];
    let mut parsed = httparse::Request::new(&mut fields);
    let status = parsed.parse(input).expect("httparse rejects");
    assert!(status.is_complete());
    assert_eq!(parsed.method, Some(head.method.as_str()));
    assert_eq!(parsed.path, Some(head.target.as_str()));
    let names: Vec<(&str, &[u8])> = parsed.headers.iter().map(|h| (h.name, h.value)).collect();
    let ours: Vec<(&str, &[u8])> = head
        .headers
        .iter()
        .map(|h| (h.name.as_str(), h.value.as_slice()))
        .collect();
    assert_eq!(names, ours);
}

#[test]
fn accepts_valid_requests() {
    #[rustfmt::skip]
    let cases: &[(&[u8], &str, &str, Version, usize)] = &[
        (b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", "GET", "/", Version::Http11, 1),
        (b"GET /x?y=1 HTTP/1.0\r\n\r\n", "GET", "/x?y=1", Version::Http10, 0),
        (b"\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", "GET", "/", Version::Http11, 1),
        (b"GET / HTTP/1.2\r\nHost: a\r\n\r\n", "GET", "/", Version::Http11, 1),
        (b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n", "OPTIONS", "*", Version::Http11, 1),
        (b"CONNECT h.test:443 HTTP/1.1\r\nHost: h.test:443\r\n\r\n", "CONNECT", "h.test:443", Version::Http11, 1),
        (b"CONNECT [::1]:80 HTTP/1.1\r\nHost: [::1]:80\r\n\r\n", "CONNECT", "[::1]:80", Version::Http11, 1),
        (b"GET http://h.test/p HTTP/1.1\r\nHost: h.test\r\n\r\n", "GET", "http://h.test/p", Version::Http11, 1),
        (b"GET HTTPS://h.test:8443?q HTTP/1.1\r\nHost: h.test\r\n\r\n", "GET", "HTTPS://h.test:8443?q", Version::Http11, 1),
        (b"POST /u HTTP/1.1\r\nHost: a\r\nX-E:\r\nX-T: \t v  a \t\r\nX-O: \x80\xff\r\n\r\n", "POST", "/u", Version::Http11, 4),
        (b"GET / HTTP/1.1\r\nHost:\r\n\r\n", "GET", "/", Version::Http11, 1),
        (b"M-SEARCH / HTTP/1.1\r\nhost: 127.0.0.1:8080\r\n\r\n", "M-SEARCH", "/", Version::Http11, 1),
    ];
    for &(input, method, target, version, count) in cases {
        let head = req_ok(input);
        assert_eq!(
            (head.method.as_str(), head.target.as_str()),
            (method, target)
        );
        assert_eq!((head.version, head.headers.len()), (version, count));
        // httparse skips no leading empty line and knows no HTTP/1.2.
        if !input.starts_with(b"\r\n") && !input.windows(8).any(|w| w == b"HTTP/1.2") {
            assert_httparse_agrees(input, &head);
        }
    }
}

#[test]
fn header_values_are_trimmed_and_names_keep_case() {
    let head = req_ok(b"GET / HTTP/1.1\r\nHoST: a\r\nX-T: \t v  a \t\r\n\r\n");
    assert_eq!(head.headers[0], Header::new("HoST", "a"));
    assert_eq!(head.header("x-t"), Some(&b"v  a"[..]));
    assert_eq!(head.header("missing"), None);
}

#[test]
fn rejects_malformed_requests() {
    #[rustfmt::skip]
    let cases: &[(&[u8], u16, &str)] = &[
        (b"GET / HTTP/1.1\nHost: a\r\n\r\n", 400, "bare LF line terminator"),
        (b"GET / HTTP/1.1\r\nHost: a\n\r\n", 400, "bare LF line terminator"),
        (b"GET / HTTP/1.1\r\nHost: a\r\n\n", 400, "bare LF line terminator"),
        (b"\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", 400, "bare LF line terminator"),
        (b"GET / HTTP/1.1\r\nHost: a\rX: b\r\n\r\n", 400, "invalid header value"),
        (b"GET / HTTP/1.1\r\nHost: a\r\nX: a\0b\r\n\r\n", 400, "invalid header value"),
        (b"GET / HTTP/1.1\r\nHost: a\r\nX: a\x0bb\r\n\r\n", 400, "invalid header value"),
        (b"GET / HTTP/1.1\r\nHost: a\r\nX: a\x7f\r\n\r\n", 400, "invalid header value"),
        (b"GET / HTTP/1.1\r\nHost : a\r\n\r\n", 400, "whitespace before colon"),
        (b"GET / HTTP/1.1\r\nHost\t: a\r\n\r\n", 400, "whitespace before colon"),
        (b"GET / HTTP/1.1\r\nHost: a\r\nX: b\r\n c\r\n\r\n", 400, "obsolete line folding"),
        (b"GET / HTTP/1.1\r\n Host: a\r\n\r\n", 400, "obsolete line folding"),
        (b"GET / HTTP/1.1\r\nHo\"st: a\r\n\r\n", 400, "invalid header name"),
        (b"GET / HTTP/1.1\r\n: a\r\nHost: a\r\n\r\n", 400, "invalid header name"),
        (b"GET / HTTP/1.1\r\nHost: a\r\nNoColon\r\n\r\n", 400, "header line without colon"),
        (b"G@T / HTTP/1.1\r\nHost: a\r\n\r\n", 400, "invalid method"),
        (b"GET  / HTTP/1.1\r\nHost: a\r\n\r\n", 400, "invalid request line"),
        (b"GET / HTTP/1.1 \r\nHost: a\r\n\r\n", 400, "invalid request line"),
        (b"GET /\tx HTTP/1.1\r\nHost: a\r\n\r\n", 400, "invalid request target"),
        (b"GET / HTTP/1.1\r\r\nHost: a\r\n\r\n", 400, "invalid HTTP version"),
        (b"GET / http/1.1\r\nHost: a\r\n\r\n", 400, "invalid HTTP version"),
        (b"GET / HTTP/1.10\r\nHost: a\r\n\r\n", 400, "invalid HTTP version"),
        (b"GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505, "HTTP version not supported"),
        (b"GET / HTTP/0.9\r\nHost: a\r\n\r\n", 505, "HTTP version not supported"),
        (b"GET x HTTP/1.1\r\nHost: a\r\n\r\n", 400, "invalid request target"),
        (b"GET /a#f HTTP/1.1\r\nHost: a\r\n\r\n", 400, "invalid request target"),
        (b"GET /\xc3\xa9 HTTP/1.1\r\nHost: a\r\n\r\n", 400, "invalid request target"),
        (b"GET * HTTP/1.1\r\nHost: a\r\n\r\n", 400, "invalid request target"),
        (b"OPTIONS ** HTTP/1.1\r\nHost: a\r\n\r\n", 400, "invalid request target"),
        (b"GET h.test:80 HTTP/1.1\r\nHost: a\r\n\r\n", 400, "invalid request target"),
        (b"CONNECT / HTTP/1.1\r\nHost: a\r\n\r\n", 400, "invalid request target"),
        (b"CONNECT h.test HTTP/1.1\r\nHost: a\r\n\r\n", 400, "invalid request target"),
        (b"CONNECT h.test:99999 HTTP/1.1\r\nHost: a\r\n\r\n", 400, "invalid request target"),
        (b"CONNECT u@h.test:80 HTTP/1.1\r\nHost: a\r\n\r\n", 400, "invalid request target"),
        (b"GET ftp://h.test/ HTTP/1.1\r\nHost: a\r\n\r\n", 400, "invalid request target"),
        (b"GET http:///p HTTP/1.1\r\nHost: a\r\n\r\n", 400, "invalid request target"),
        (b"GET http://u@h.test/ HTTP/1.1\r\nHost: a\r\n\r\n", 400, "invalid request target"),
        (b"GET / HTTP/1.1\r\n\r\n", 400, "missing host header"),
        (b"GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n", 400, "multiple host headers"),
        (b"GET / HTTP/1.0\r\nHost: a\r\nhost: b\r\n\r\n", 400, "multiple host headers"),
        (b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n", 400, "invalid host header"),
        (b"GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", 400, "invalid host header"),
        (b"\x16\x03\x01\x02\x00\x01\x00", 400, "invalid method"),
    ];
    for &(input, status, reason) in cases {
        let error = req_err(input);
        assert_eq!(
            (error.status, error.reason),
            (status, reason),
            "{:?}",
            String::from_utf8_lossy(input)
        );
    }
}

#[test]
fn smuggling_header_obfuscations_are_rejected_at_parse_time() {
    #[rustfmt::skip]
    let cases: &[&[u8]] = &[
        b"Transfer-Encoding : chunked",
        b"Transfer-Encoding\t: chunked",
        b" Transfer-Encoding: chunked",
        b"\tTransfer-Encoding: chunked",
        b"Transfer-Encoding: \x0bchunked",
        b"Transfer-Encoding: chunked\x00",
        b"Transfer_Encoding\x0c: chunked",
        b"Content-Length : 5",
        b"Content-Length:\r 5",
    ];
    for field in cases {
        let mut input = b"POST / HTTP/1.1\r\nHost: a\r\n".to_vec();
        input.extend_from_slice(field);
        input.extend_from_slice(b"\r\n\r\n");
        assert_eq!(
            req_err(&input).status,
            400,
            "{:?}",
            String::from_utf8_lossy(field)
        );
    }
}

#[test]
fn every_prefix_of_a_valid_head_is_incomplete() {
    let input = b"\r\nPOST /p HTTP/1.1\r\nHost: a\r\nX: y\r\n\r\n";
    for len in 0..input.len() {
        assert_eq!(req(&input[..len]), Ok(None), "prefix {len}");
    }
    let response = b"HTTP/1.1 200 OK\r\nX: y\r\n\r\n";
    for len in 0..response.len() {
        assert_eq!(
            parse_response(&response[..len], &limits()),
            Ok(None),
            "prefix {len}"
        );
    }
}

#[test]
fn pipelined_requests_parse_one_after_another() {
    let first = b"POST /a HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\n";
    let second = b"GET /b HTTP/1.1\r\nHost: a\r\n\r\n";
    let mut input = first.to_vec();
    input.extend_from_slice(b"abc");
    input.extend_from_slice(second);
    let (head, used) = req(&input).unwrap().unwrap();
    assert_eq!((head.target.as_str(), used), ("/a", first.len()));
    let rest = &input[used + 3..];
    let (head, used) = req(rest).unwrap().unwrap();
    assert_eq!((head.target.as_str(), used), ("/b", second.len()));
}

#[test]
fn request_line_limit() {
    let limits = Limits {
        max_request_line: 16,
        ..Limits::default()
    };
    let at_limit = b"GET /23 HTTP/1.1\r\nHost: a\r\n\r\n";
    assert!(parse_request(at_limit, &limits).unwrap().is_some());
    #[rustfmt::skip]
    let cases: &[&[u8]] = &[
        b"GET /234 HTTP/1.1\r\nHost: a\r\n\r\n",
        b"GET /234567890123",
        b"\r\nGET /234567890123",
    ];
    for input in cases {
        let error = parse_request(input, &limits).unwrap_err();
        assert_eq!(error, ParseError::new(414, "request line too long"));
    }
    assert_eq!(parse_request(b"GET /23456789012\r", &limits), Ok(None));
}

#[test]
fn head_size_limit_counts_leading_empty_lines() {
    let input = b"\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n";
    let exact = Limits {
        max_head_bytes: input.len(),
        ..Limits::default()
    };
    assert!(parse_request(input, &exact).unwrap().is_some());
    let smaller = Limits {
        max_head_bytes: input.len() - 1,
        ..Limits::default()
    };
    for len in [input.len(), input.len() - 1] {
        let error = parse_request(&input[..len], &smaller).unwrap_err();
        assert_eq!(error, ParseError::new(431, "header section too large"));
    }
    assert_eq!(parse_request(&input[..input.len() - 2], &smaller), Ok(None));
    let blank = b"\r\n".repeat(40000);
    assert_eq!(req_err(&blank).status, 431);
}

#[test]
fn header_count_limit() {
    let limits = Limits {
        max_headers: 2,
        ..Limits::default()
    };
    let two = b"GET / HTTP/1.1\r\nHost: a\r\nX: 1\r\n\r\n";
    assert_eq!(
        parse_request(two, &limits)
            .unwrap()
            .unwrap()
            .0
            .headers
            .len(),
        2
    );
    let three = b"GET / HTTP/1.1\r\nHost: a\r\nX: 1\r\nY: 2\r\n\r\n";
    let error = parse_request(three, &limits).unwrap_err();
    assert_eq!(error, ParseError::new(431, "too many header fields"));
    let error = parse_response(b"HTTP/1.1 200 OK\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n", &limits);
    assert_eq!(error.unwrap_err().status, 502);
}

#[test]
fn parses_responses() {
    #[rustfmt::skip]
    let cases: &[(&[u8], Version, u16, &str, usize)] = &[
        (b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", Version::Http11, 200, "OK", 1),
        (b"HTTP/1.0 404 Not Found\r\n\r\n", Version::Http10, 404, "Not Found", 0),
        (b"HTTP/1.1 204 \r\n\r\n", Version::Http11, 204, "", 0),
        (b"HTTP/1.1 204\r\n\r\n", Version::Http11, 204, "", 0),
        (b"HTTP/1.1 599 Weird\tPhrase \r\n\r\n", Version::Http11, 599, "Weird\tPhrase ", 0),
        (b"HTTP/1.1 100 Continue\r\n\r\n", Version::Http11, 100, "Continue", 0),
        (b"HTTP/1.7 200 OK\r\n\r\n", Version::Http11, 200, "OK", 0),
        (b"HTTP/1.1 200 \xe2\x9c\x93\r\n\r\n", Version::Http11, 200, "\u{2713}", 0),
    ];
    for &(input, version, status, reason, count) in cases {
        let (head, used) = parse_response(input, &limits()).unwrap().unwrap();
        assert_eq!(used, input.len());
        assert_eq!(
            (head.version, head.status, head.reason.as_str()),
            (version, status, reason)
        );
        assert_eq!(head.headers.len(), count);
    }
}

#[test]
fn rejects_malformed_responses_with_502() {
    #[rustfmt::skip]
    let cases: &[&[u8]] = &[
        b"HTTP/1.1 20 OK\r\n\r\n",
        b"HTTP/1.1 2000 OK\r\n\r\n",
        b"HTTP/1.1 099 OK\r\n\r\n",
        b"HTTP/1.1 600 Beyond\r\n\r\n",
        b"HTTP/1.1 999 Weird\r\n\r\n",
        b"HTTP/1.1 2x0 OK\r\n\r\n",
        b"HTTP/1.1  200 OK\r\n\r\n",
        b"HTTP/2.0 200 OK\r\n\r\n",
        b"HTTP/2 200 OK\r\n\r\n",
        b"http/1.1 200 OK\r\n\r\n",
        b"HTTP/1.1 200 O\x01K\r\n\r\n",
        b"\r\nHTTP/1.1 200 OK\r\n\r\n",
        b"HTTP/1.1 200 OK\nX: y\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nX : y\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nX: y\r\n z\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nX: \x00\r\n\r\n",
        b"SSH-2.0",
    ];
    for input in cases {
        let error = parse_response(input, &limits()).unwrap_err();
        assert_eq!(error.status, 502, "{:?}", String::from_utf8_lossy(input));
    }
}

#[test]
fn keep_alive_rules() {
    #[rustfmt::skip]
    let cases: &[(Version, &[&str], bool)] = &[
        (Version::Http11, &[], true),
        (Version::Http11, &["close"], false),
        (Version::Http11, &["Upgrade, CLOSE"], false),
        (Version::Http11, &["keep-alive", "close"], false),
        (Version::Http10, &[], false),
        (Version::Http10, &["Keep-Alive"], true),
        (Version::Http10, &["te, keep-alive"], true),
        (Version::Http10, &["keep-alive, close"], false),
        (Version::Http10, &["keep-alived"], false),
    ];
    for &(version, values, expected) in cases {
        let headers: Vec<Header> = values
            .iter()
            .map(|v| Header::new("Connection", *v))
            .collect();
        let request = RequestHead {
            method: "GET".into(),
            target: "/".into(),
            version,
            headers: headers.clone(),
        };
        let response = ResponseHead {
            version,
            status: 200,
            reason: "OK".into(),
            headers,
        };
        assert_eq!(
            request.wants_keep_alive(),
            expected,
            "{version:?} {values:?}"
        );
        assert_eq!(
            response.wants_keep_alive(),
            expected,
            "{version:?} {values:?}"
        );
    }
}

#[test]
fn headers_named_returns_all_in_order() {
    let head = req_ok(b"GET / HTTP/1.1\r\nHost: a\r\nX: 1\r\nY: 2\r\nx: 3\r\n\r\n");
    let values: Vec<&[u8]> = head.headers_named("X").collect();
    assert_eq!(values, [&b"1"[..], b"3"]);
    let (response, _) = parse_response(b"HTTP/1.1 200 OK\r\nX: 1\r\nx: 3\r\n\r\n", &limits())
        .unwrap()
        .unwrap();
    assert_eq!(response.headers_named("x").count(), 2);
    assert_eq!(response.header("X"), Some(&b"1"[..]));
}

/// What httparse alone would get wrong, each filled in by the strict layer.
#[test]
fn httparse_gaps_are_filled() {
    // httparse hands back an empty reason when it holds obs-text.
    let (head, _) = parse_response(b"HTTP/1.1 200 a\xffb\r\n\r\n", &limits())
        .unwrap()
        .unwrap();
    assert_eq!(head.reason, "a\u{fffd}b");
    // httparse skips empty lines before a status line, and takes bare LF.
    for input in [
        &b"\r\nHTTP/1.1 200 OK\r\n\r\n"[..],
        b"HTTP/1.1 200 OK\r\nX: y\n\r\n",
    ] {
        assert_eq!(parse_response(input, &limits()).unwrap_err().status, 502);
    }
    // httparse takes any three digits as a status code.
    for input in [&b"HTTP/1.1 000 X\r\n\r\n"[..], b"HTTP/1.1 600 X\r\n\r\n"] {
        assert_eq!(
            parse_response(input, &limits()).unwrap_err(),
            ParseError::new(502, "invalid status line")
        );
    }
    // httparse knows only HTTP/1.0 and 1.1; the fields still go through it.
    let head = req_ok(b"GET / HTTP/1.3\r\nHost: a\r\nX:  b \r\n\r\n");
    assert_eq!(
        (head.version, head.header("x")),
        (Version::Http11, Some(&b"b"[..]))
    );
    let error = req_err(b"GET / HTTP/1.3\r\nHost: a\r\nX : b\r\n\r\n");
    assert_eq!(error, ParseError::new(400, "whitespace before colon"));
}

/// Above 128 header slots httparse's array moves to the heap; the limit
/// holds the same way.
#[test]
fn header_count_limit_beyond_the_inline_slots() {
    let limits = Limits {
        max_headers: 200,
        ..Limits::default()
    };
    let head_with = |count: usize| {
        let mut input = b"GET / HTTP/1.1\r\nHost: a\r\n".to_vec();
        for i in 1..count {
            input.extend_from_slice(format!("X-{i}: {i}\r\n").as_bytes());
        }
        input.extend_from_slice(b"\r\n");
        input
    };
    let (head, _) = parse_request(&head_with(200), &limits).unwrap().unwrap();
    assert_eq!(head.headers.len(), 200);
    assert_eq!(
        parse_request(&head_with(201), &limits).unwrap_err(),
        ParseError::new(431, "too many header fields")
    );
    assert_eq!(
        parse_request(&head_with(101), &Limits::default()).unwrap_err(),
        ParseError::new(431, "too many header fields")
    );
}
