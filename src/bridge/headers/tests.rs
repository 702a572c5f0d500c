//! Header mapping: hop-by-hop removal, Host <-> :authority, order and duplicates kept,
//! injection and malformed HTTP/3 sections refused.

use super::*;

fn h(name: &str, value: &str) -> Header {
    Header {
        name: name.to_string(),
        value: value.as_bytes().to_vec(),
    }
}

fn h3(name: &str, value: &str) -> H3Header {
    H3Header::new(name.as_bytes(), value.as_bytes())
}

fn pairs(list: &[impl NameValue]) -> Vec<(String, String)> {
    list.iter()
        .map(|f| {
            (
                String::from_utf8_lossy(f.name()).into_owned(),
                String::from_utf8_lossy(f.value()).into_owned(),
            )
        })
        .collect()
}

fn request(headers: Vec<Header>) -> RequestHead {
    RequestHead {
        method: "GET".into(),
        target: "/a?b".into(),
        version: Version::Http11,
        headers,
    }
}

#[test]
fn request_drops_hop_by_hop_and_connection_named_fields_keeps_order_and_duplicates() {
    let req = request(vec![
        h("Host", "svc.example:8080"),
        h("Connection", "keep-alive, X-Hop"),
        h("X-Hop", "1"),
        h("Keep-Alive", "timeout=5"),
        h("Proxy-Connection", "x"),
        h("TE", "trailers"),
        h("Transfer-Encoding", "chunked"),
        h("Upgrade", "websocket"),
        h("X-Dup", "a"),
        h("Accept", "*/*"),
        h("X-Dup", "b"),
    ]);
    let out = request_to_h3(&req, b"svc.example:8080", "/a?b");
    let expected: Vec<(String, String)> = [
        (":method", "GET"),
        (":scheme", "http"),
        (":authority", "svc.example:8080"),
        (":path", "/a?b"),
        ("x-dup", "a"),
        ("accept", "*/*"),
        ("x-dup", "b"),
    ]
    .iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect();
    assert_eq!(pairs(&out), expected);
}

#[test]
fn response_to_h3_lowercases_and_strips() {
    let resp = ResponseHead {
        version: Version::Http11,
        status: 200,
        reason: "OK".into(),
        headers: vec![
            h("Content-Type", "text/plain"),
            h("Connection", "close"),
            h("Set-Cookie", "a=1"),
            h("Set-Cookie", "b=2"),
        ],
    };
    let out = pairs(&response_to_h3(&resp));
    assert_eq!(out[0], (":status".into(), "200".into()));
    assert_eq!(
        &out[1..],
        &[
            ("content-type".to_string(), "text/plain".to_string()),
            ("set-cookie".to_string(), "a=1".to_string()),
            ("set-cookie".to_string(), "b=2".to_string()),
        ]
    );
}

#[test]
fn request_from_h3_puts_host_first_and_keeps_fields() {
    let list = [
        h3(":method", "POST"),
        h3(":scheme", "http"),
        h3(":authority", "b.internal"),
        h3(":path", "/x"),
        h3("x-a", "1"),
        h3("te", "trailers"),
        h3("x-a", "2"),
    ];
    let head = request_from_h3(&list).expect("valid request");
    assert_eq!(head.method, "POST");
    assert_eq!(head.target, "/x");
    let names: Vec<(&str, &[u8])> = head
        .headers
        .iter()
        .map(|f| (f.name.as_str(), f.value.as_slice()))
        .collect();
    assert_eq!(
        names,
        vec![("host", &b"b.internal"[..]), ("x-a", b"1"), ("x-a", b"2")]
    );
}

#[test]
fn request_from_h3_refuses_malformed_sections() {
    let base = |extra: Vec<H3Header>| {
        let mut v = vec![
            h3(":method", "GET"),
            h3(":scheme", "http"),
            h3(":authority", "b"),
            h3(":path", "/"),
        ];
        v.extend(extra);
        v
    };
    let cases: Vec<(Vec<H3Header>, &str)> = vec![
        (base(vec![h3("x-a", "1\r\nInjected: yes")]), "CR, LF"),
        (base(vec![h3("x-a", "nul\0")]), "CR, LF"),
        (base(vec![h3("X-Upper", "1")]), "uppercase"),
        (base(vec![h3("connection", "close")]), "connection-specific"),
        (
            base(vec![h3("transfer-encoding", "chunked")]),
            "connection-specific",
        ),
        (base(vec![h3("te", "gzip")]), "connection-specific"),
        (
            base(vec![h3("x-a", "1"), h3(":protocol", "x")]),
            "pseudo-header after",
        ),
        (
            // `te: trailers` is a regular field too, though it is not passed on.
            vec![
                h3("te", "trailers"),
                h3(":method", "GET"),
                h3(":scheme", "http"),
                h3(":authority", "b"),
                h3(":path", "/"),
            ],
            "pseudo-header after",
        ),
        (
            vec![
                h3(":method", "GET"),
                h3(":method", "GET"),
                h3(":scheme", "http"),
                h3(":path", "/"),
            ],
            "duplicated",
        ),
        (
            vec![
                h3(":scheme", "http"),
                h3(":authority", "b"),
                h3(":path", "/"),
            ],
            "missing :method",
        ),
        (
            vec![
                h3(":method", "GET"),
                h3(":authority", "b"),
                h3(":path", "/"),
            ],
            "missing :scheme",
        ),
        (
            vec![
                h3(":method", "GET"),
                h3(":scheme", "http"),
                h3(":authority", "b"),
            ],
            "missing :path",
        ),
        (
            vec![
                h3(":method", "GET"),
                h3(":scheme", "http"),
                h3(":path", "/"),
            ],
            "missing :authority",
        ),
        (
            vec![
                h3(":method", "GET"),
                h3(":scheme", "http"),
                h3(":authority", "b"),
                h3(":path", "/a b"),
            ],
            "invalid :path",
        ),
        (
            vec![
                h3(":method", "GET"),
                h3(":scheme", "http"),
                h3(":authority", "b"),
                h3(":path", "x"),
            ],
            "invalid :path",
        ),
        (
            vec![
                h3(":method", "GET"),
                h3(":scheme", "http"),
                h3(":authority", "b"),
                h3(":path", "/"),
                h3(":status", "200"),
            ],
            "unknown request pseudo",
        ),
        (
            vec![h3(":method", "CONNECT"), h3(":authority", "b:1")],
            "unsupported :method",
        ),
    ];
    for (list, want) in cases {
        let err = request_from_h3(&list).expect_err(want);
        assert!(err.0.contains(want), "{:?} should mention {want}", err.0);
    }
}

#[test]
fn request_from_h3_refuses_untrimmed_values_controls_and_unknown_schemes() {
    let with = |scheme: &str, extra: Vec<H3Header>| {
        let mut v = vec![
            h3(":method", "GET"),
            h3(":scheme", scheme),
            h3(":authority", "b"),
            h3(":path", "/"),
        ];
        v.extend(extra);
        v
    };
    let cases: Vec<(Vec<H3Header>, &str)> = vec![
        (
            with("http", vec![h3("x-a", " lead")]),
            "leading or trailing",
        ),
        (
            with("http", vec![h3("x-a", "trail\t")]),
            "leading or trailing",
        ),
        (
            with("http", vec![h3("x-a", "bell\x07")]),
            "control character",
        ),
        (
            with("http", vec![h3("x-a", "esc\x1b[0m")]),
            "control character",
        ),
        (
            with("http", vec![h3("x-a", "del\x7f")]),
            "control character",
        ),
        (with("ftp", vec![]), ":scheme"),
        (with("HTTP", vec![]), ":scheme"),
        (with("", vec![]), ":scheme"),
    ];
    for (list, want) in cases {
        let err = request_from_h3(&list).expect_err(want);
        assert!(err.0.contains(want), "{:?} should mention {want}", err.0);
    }
    // An inner HTAB or space is fine, and so is https.
    let ok = with("https", vec![h3("x-a", "a\tb c")]);
    let head = request_from_h3(&ok).expect("valid request");
    assert!(head.headers.iter().any(|f| f.value == b"a\tb c"));
}

#[test]
fn response_from_h3_validates_status() {
    assert_eq!(
        response_from_h3(&[h3(":status", "204")]).map(|r| r.0),
        Ok(204)
    );
    for bad in ["20", "2000", "abc", "099"] {
        assert!(response_from_h3(&[h3(":status", bad)]).is_err(), "{bad}");
    }
    assert!(response_from_h3(&[h3("content-type", "x")]).is_err());
    assert!(response_from_h3(&[h3(":status", "200"), h3(":path", "/")]).is_err());
}

#[test]
fn content_length_must_be_digits_and_agree() {
    assert_eq!(content_length(&[h("content-length", "12")]), Ok(Some(12)));
    assert_eq!(
        content_length(&[h("content-length", "12"), h("content-length", "12")]),
        Ok(Some(12))
    );
    assert_eq!(content_length(&[]), Ok(None));
    for bad in [
        vec![h("content-length", "1"), h("content-length", "2")],
        vec![h("content-length", "-1")],
        vec![h("content-length", "")],
        vec![h("content-length", "0x10")],
        vec![h("content-length", "99999999999999999999999")],
    ] {
        assert!(content_length(&bad).is_err(), "{bad:?}");
    }
}

#[test]
fn trailers_are_validated_and_filtered_both_ways() {
    let out = pairs(&trailers_to_h3(&[
        h("X-Checksum", "abc"),
        h("Content-Length", "5"),
        h("Connection", "x"),
    ]));
    assert_eq!(out, vec![("x-checksum".to_string(), "abc".to_string())]);
    let back =
        trailers_from_h3(&[h3("x-checksum", "abc"), h3("host", "evil")]).expect("valid trailers");
    assert_eq!(back, vec![h("x-checksum", "abc")]);
    assert!(trailers_from_h3(&[h3(":status", "200")]).is_err());
    assert!(trailers_from_h3(&[h3("x-a", "a\r\nb")]).is_err());
}

/// Only the `content-length` fields of a mapped section.
fn content_lengths(list: &[impl NameValue]) -> Vec<(String, String)> {
    pairs(list)
        .into_iter()
        .filter(|(n, _)| n == "content-length")
        .collect()
}

#[test]
fn content_length_reaches_http3_once_with_one_value() {
    let once = || vec![("content-length".to_string(), "5".to_string())];
    for fields in [
        vec![h("Content-Length", "5, 5")],
        vec![h("Content-Length", "5"), h("content-length", "5")],
        vec![
            h("Content-Length", "5 ,5"),
            h("X-A", "1"),
            h("Content-Length", "005"),
        ],
    ] {
        let out = request_to_h3(&request(fields.clone()), b"a", "/");
        assert_eq!(content_lengths(&out), once(), "request {fields:?}");
        let resp = ResponseHead {
            version: Version::Http11,
            status: 200,
            reason: "OK".into(),
            headers: fields.clone(),
        };
        assert_eq!(
            content_lengths(&response_to_h3(&resp)),
            once(),
            "response {fields:?}"
        );
    }
    // where the first one stood, other fields in order
    let out = request_to_h3(
        &request(vec![
            h("X-A", "1"),
            h("Content-Length", "2"),
            h("X-B", "2"),
            h("Content-Length", "2"),
        ]),
        b"a",
        "/",
    );
    let names: Vec<String> = pairs(&out[4..]).into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["x-a", "content-length", "x-b"]);
    // values that disagree frame nothing here (a response to HEAD): dropped, never sent as a list
    let head_resp = ResponseHead {
        version: Version::Http11,
        status: 200,
        reason: "OK".into(),
        headers: vec![h("Content-Length", "5, 6")],
    };
    assert!(content_lengths(&response_to_h3(&head_resp)).is_empty());
}

#[test]
fn cookie_fields_from_http3_become_one_cookie_field() {
    let request_with = |cookies: &[(&str, &str)]| {
        let mut list = vec![
            h3(":method", "GET"),
            h3(":scheme", "http"),
            h3(":authority", "b.internal"),
            h3(":path", "/"),
        ];
        list.extend(cookies.iter().map(|(n, v)| h3(n, v)));
        let head = request_from_h3(&list).expect("valid request");
        head.headers
            .iter()
            .map(|f| {
                (
                    f.name.clone(),
                    String::from_utf8_lossy(&f.value).into_owned(),
                )
            })
            .collect::<Vec<_>>()
    };
    let owned = |v: &[(&str, &str)]| {
        v.iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        request_with(&[
            ("cookie", "a=1"),
            ("x-a", "1"),
            ("cookie", "b=2"),
            ("cookie", "c=3")
        ]),
        owned(&[
            ("host", "b.internal"),
            ("cookie", "a=1; b=2; c=3"),
            ("x-a", "1")
        ])
    );
    assert_eq!(
        request_with(&[("x-a", "1"), ("cookie", "a=1; b=2")]),
        owned(&[("host", "b.internal"), ("x-a", "1"), ("cookie", "a=1; b=2")])
    );
    assert_eq!(
        request_with(&[("cookie", "a=1"), ("cookie", ""), ("cookie", "b=2")]),
        owned(&[("host", "b.internal"), ("cookie", "a=1; b=2")])
    );
}

#[test]
fn the_service_field_is_read_by_ptproxy_and_never_crosses() {
    // HTTP/1.1 -> HTTP/3: a caller's copies are removed (only the client adds the field).
    let mut req = request(vec![
        h("Host", "a"),
        h("PTProxy-Service", "admin"),
        h("ptproxy-service", "admin2"),
        h("x", "1"),
    ]);
    req.target = "/".into();
    let out = pairs(&request_to_h3(&req, b"a", "/"));
    assert!(out.iter().all(|(n, _)| n != SERVICE_FIELD), "{out:?}");
    // HTTP/3: the value is read, and removed before the upstream.
    let list = vec![
        h3(":method", "GET"),
        h3(":scheme", "http"),
        h3(":authority", "a"),
        h3(":path", "/x"),
        h3(SERVICE_FIELD, "orders"),
        h3("x", "1"),
    ];
    assert_eq!(service_of(&list), Ok(Some("orders")));
    assert_eq!(method_and_path(&list), (&b"GET"[..], &b"/x"[..]));
    let head = request_from_h3(&list).expect("valid");
    assert!(
        head.headers.iter().all(|h| h.name != SERVICE_FIELD),
        "{:?}",
        head.headers
    );
    assert_eq!(service_of(&list[..4]), Ok(None));
    let twice = [list.clone(), vec![h3(SERVICE_FIELD, "billing")]].concat();
    assert!(
        service_of(&twice).is_err(),
        "two service fields are ambiguous"
    );
}

#[test]
fn numbers_and_names_written_without_a_string_are_the_same_bytes() {
    for n in [0u64, 7, 10, 200, 599, 1234567890, u64::MAX] {
        assert_eq!(decimal(n, &mut [0; 20]), n.to_string().as_bytes());
    }
    // Names longer than the stack buffer are lowercased too.
    let long = format!("X-{}", "Ab".repeat(40));
    for name in ["Content-Type", "x-ok", &long] {
        let field = lowercased(name, b"v");
        assert_eq!(field.name(), name.to_ascii_lowercase().as_bytes());
        assert_eq!(field.value(), b"v");
    }
    let resp = ResponseHead {
        version: Version::Http11,
        status: 204,
        reason: String::new(),
        headers: vec![h("Content-Length", "0, 0"), h("X-A", "1")],
    };
    assert_eq!(
        pairs(&response_to_h3(&resp)),
        [(":status", "204"), ("content-length", "0"), ("x-a", "1")]
            .map(|(n, v)| (n.to_string(), v.to_string()))
    );
}
