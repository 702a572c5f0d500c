//! The differential test of the head parsers: the httparse-based production path against the
//! former own tokenizer (`oracle.rs`), over seeded mutations of the fuzz corpus, and a cost
//! comparison run by hand.

use super::*;
use crate::h1::testing::Rng;

/// Heads from the fuzz corpus of `target` plus a few hand-picked ones.
fn differential_seeds(target: &str, extra: &[&[u8]]) -> Vec<Vec<u8>> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut seeds: Vec<Vec<u8>> = extra.iter().map(|seed| seed.to_vec()).collect();
    for entry in std::fs::read_dir(dir).expect("fuzz corpus") {
        seeds.push(std::fs::read(entry.expect("corpus entry").path()).expect("corpus file"));
    }
    seeds
}

/// The httparse-based parsers answer every input exactly as the former own
/// tokenizer did (head, length, status and reason), under default and tight
/// limits, over 300k seeded mutations of the fuzz corpus.
#[test]
fn agrees_with_the_former_tokenizer() {
    let requests = differential_seeds(
        "h1_request_head",
        &[
            b"\r\nPOST /u HTTP/1.1\r\nHost: a\r\nX-E:\r\nX-T: \t v \t\r\nX-O: \x80\xff\r\n\r\n",
            b"GET http://h.test:80/p?q HTTP/1.2\r\nHost: h.test\r\nA: 1\r\nB: 2\r\n\r\nrest",
            b"CONNECT [::1]:80 HTTP/1.0\r\nhost: [::1]:80\r\n\r\n",
            b"OPTIONS * HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n",
        ],
    );
    let responses = differential_seeds(
        "h1_response_head",
        &[
            b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nX: \x80y\r\n\r\nabc",
            b"HTTP/1.7 204 \xe2\x9c\x93 \xff\r\nA: 1\r\nB: 2\r\n\r\n",
            b"HTTP/1.0 599\r\n\r\n",
        ],
    );
    let tight = Limits {
        max_head_bytes: 64,
        max_headers: 2,
        max_request_line: 24,
    };
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for _ in 0..300_000 {
        let request_seed = &requests[rng.below(requests.len())];
        let request = rng.mutate(request_seed);
        let response_seed = &responses[rng.below(responses.len())];
        let response = rng.mutate(response_seed);
        for limits in [Limits::default(), tight] {
            for input in [&request, &response] {
                let shown = String::from_utf8_lossy(input);
                assert_eq!(
                    parse_request(input, &limits),
                    oracle::parse_request(input, &limits),
                    "request {shown:?} {limits:?}"
                );
                assert_eq!(
                    parse_response(input, &limits),
                    oracle::parse_response(input, &limits),
                    "response {shown:?} {limits:?}"
                );
            }
        }
    }
}

/// Cost comparison with the former tokenizer (run by hand:
/// `cargo test --release --lib head::tests::cost -- --ignored --nocapture`).
/// Prints nanoseconds per parse of typical heads for both; not a pass/fail
/// test, the machine is shared.
#[test]
#[ignore]
fn cost_against_the_former_tokenizer() {
    use std::hint::black_box;
    use std::time::Instant;
    let browser = b"GET /static/app.js?v=3 HTTP/1.1\r\nHost: service-b.internal:8080\r\n\
User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko)\r\n\
Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n\
Accept-Language: en-US,en;q=0.5\r\nAccept-Encoding: gzip, deflate, br\r\n\
Connection: keep-alive\r\nCookie: session=0123456789abcdef0123456789abcdef; theme=dark\r\n\
Upgrade-Insecure-Requests: 1\r\nSec-Fetch-Dest: document\r\nSec-Fetch-Mode: navigate\r\n\
Sec-Fetch-Site: none\r\nCache-Control: max-age=0\r\n\r\n";
    let small = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n";
    let response = b"HTTP/1.1 200 OK\r\nDate: Mon, 30 Nov 2026 02:00:00 GMT\r\n\
Content-Type: application/json\r\nContent-Length: 1234\r\nConnection: keep-alive\r\n\
Cache-Control: no-store\r\nETag: \"33a64df551425fcc55e4d42a148795d9f25f89d4\"\r\n\
Vary: Accept-Encoding\r\nServer: service-b\r\n\r\n";
    const ROUNDS: u32 = 200_000;
    let limits = Limits::default();
    let time = |parse: &dyn Fn(&[u8]) -> bool, input: &[u8]| {
        let start = Instant::now();
        for _ in 0..ROUNDS {
            assert!(parse(black_box(input)));
        }
        start.elapsed().as_nanos() / u128::from(ROUNDS)
    };
    let new_req = |input: &[u8]| matches!(parse_request(input, &limits), Ok(Some(_)));
    let old_req = |input: &[u8]| matches!(oracle::parse_request(input, &limits), Ok(Some(_)));
    let new_resp = |input: &[u8]| matches!(parse_response(input, &limits), Ok(Some(_)));
    let old_resp = |input: &[u8]| matches!(oracle::parse_response(input, &limits), Ok(Some(_)));
    for (name, input, new, old) in [
        (
            "small request",
            &small[..],
            &new_req as &dyn Fn(&[u8]) -> bool,
            &old_req as &dyn Fn(&[u8]) -> bool,
        ),
        ("browser request", &browser[..], &new_req, &old_req),
        ("response", &response[..], &new_resp, &old_resp),
    ] {
        // Alternate to spread the shared machine's noise over both.
        let (mut new_ns, mut old_ns) = (Vec::new(), Vec::new());
        for _ in 0..5 {
            new_ns.push(time(new, input));
            old_ns.push(time(old, input));
        }
        new_ns.sort_unstable();
        old_ns.sort_unstable();
        println!(
            "{name} ({} bytes): httparse {} ns, former {} ns (median of 5)",
            input.len(),
            new_ns[2],
            old_ns[2]
        );
    }
}
