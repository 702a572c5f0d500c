//! Self-tests of the harness pieces that do not need ptproxy: the mock
//! upstream against the raw HTTP client, the UDP relay between two plain
//! sockets, JSON and the byte pattern.

use crate::harness::http::{self, build_request, chunked_body, Framing, HttpConn};
use crate::harness::json::Json;
use crate::harness::pattern::{
    check_pattern, checksum, fill_pattern, pattern, pattern_checksum, sink_answer, Checksum,
};
use crate::harness::relay::{RelayConfig, UdpRelay};
use crate::harness::upstream::{ReqFraming, Upstream, CHUNKED_BODY, CLOSE_BODY};
use std::net::UdpSocket;
use std::time::{Duration, Instant};

#[test]
fn selftest_json_parse_edit_print() {
    let mut j =
        Json::must(r#"{"a": {"b": [1, "x\"y", true, null]}, "c": -1.5e3, "s": "\u00e9\n"}"#);
    assert_eq!(j.get("a.b").unwrap().as_array().unwrap().len(), 4);
    assert_eq!(j.get("s").unwrap().as_str(), Some("é\n"));
    j.set("a.d.e", Json::num(5));
    j.set("c", Json::str("z"));
    assert_eq!(
        j.remove("a.b").unwrap().as_array().unwrap()[1].as_str(),
        Some("x\"y")
    );
    let again = Json::must(&j.pretty());
    assert_eq!(again, j);
    assert_eq!(Json::must(&j.to_string()), j);
    assert_eq!(j.to_string(), r#"{"a":{"d":{"e":5}},"c":"z","s":"é\n"}"#);
    assert!(Json::parse("{\"a\":1,}").is_err());
    assert!(Json::parse("[1 2]").is_err());
}

#[test]
fn selftest_pattern_and_checksum_are_chunking_independent() {
    let whole = pattern(100_003);
    let mut pieces = vec![0u8; 100_003];
    let mut off = 0;
    for k in [1usize, 7, 8, 9, 4096, 13, 65536] {
        let end = (off + k).min(pieces.len());
        fill_pattern(off as u64, &mut pieces[off..end]);
        off = end;
    }
    fill_pattern(off as u64, &mut pieces[off..]);
    assert_eq!(whole, pieces);
    let mut c = Checksum::new();
    for part in whole.chunks(777) {
        c.update(part);
    }
    assert_eq!(c.value(), checksum(&whole));
    assert_eq!(c.value(), pattern_checksum(100_003));
    assert_ne!(checksum(&whole[..100_002]), checksum(&whole));
    let mut scratch = Vec::new();
    assert_eq!(check_pattern(5, &whole[5..], &mut scratch), Ok(()));
    assert!(
        check_pattern(6, &whole[5..], &mut scratch).is_err(),
        "a shift must be detected"
    );
    let mut bad = whole.clone();
    bad[77_777] ^= 1;
    assert_eq!(check_pattern(0, &bad, &mut scratch), Err(77_777));
}

#[test]
fn selftest_upstream_routes_with_raw_client() {
    let up = Upstream::start();
    let a = up.addr();
    let mut c = HttpConn::connect(a).unwrap();
    let r = c
        .request(
            "GET",
            "/hello?x=1",
            &[("Host", "h.test:81"), ("X-Dup", "a"), ("X-Dup", "b")],
            None,
        )
        .unwrap();
    assert_eq!((r.status(), r.body.as_slice()), (200, &b"hello"[..]), "{r}");
    assert_eq!(r.framing(), Framing::Length(5));

    let body = pattern(300_000);
    let r = c.post("/echo", &body).unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.body == body);

    let parts: Vec<&[u8]> = vec![&body[..1], &body[1..5000], &body[5000..]];
    let r = c
        .request(
            "POST",
            "/echo",
            &[("Transfer-Encoding", "chunked")],
            Some(&chunked_body(&parts)),
        )
        .unwrap();
    assert!(r.body == body);

    let r = c
        .request(
            "POST",
            "/echo",
            &[("Expect", "100-continue")],
            Some(b"expecting"),
        )
        .unwrap();
    assert_eq!(
        (r.status(), r.body.as_slice()),
        (200, &b"expecting"[..]),
        "{r}"
    );

    let r = c.get("/chunked").unwrap();
    assert_eq!(r.framing(), Framing::Chunked);
    assert_eq!(r.body_str(), CHUNKED_BODY);

    let r = c.request("HEAD", "/hello", &[], None).unwrap();
    assert_eq!(
        (r.status(), r.body.len(), r.header("content-length")),
        (200, 0, Some("5"))
    );
    for code in [204u16, 304, 201, 404] {
        let r = c.get(&format!("/status/{code}")).unwrap();
        assert_eq!(r.status(), code);
        assert!(r.body.is_empty());
    }
    let r = c
        .request(
            "GET",
            "/headers",
            &[("X-Dup", "a"), ("x-other", "1"), ("X-Dup", "b")],
            None,
        )
        .unwrap();
    assert_eq!(
        r.body_str(),
        "Host: e2e.test\nX-Dup: a\nx-other: 1\nX-Dup: b\n",
        "{r}"
    );
    let r = c.get("/nope").unwrap();
    assert_eq!(r.status(), 404);

    // pipelining: 3 requests in one write
    let mut all = build_request("POST", "/echo", &[], Some(b"one"));
    all.extend(build_request("GET", "/bytes/10", &[], None));
    all.extend(build_request("POST", "/echo", &[], Some(b"three")));
    c.send(&all).unwrap();
    assert_eq!(c.read_response("POST").unwrap().body, b"one");
    assert_eq!(c.read_response("GET").unwrap().body, pattern(10));
    assert_eq!(c.read_response("POST").unwrap().body, b"three");

    let r = c.get("/close").unwrap();
    assert_eq!(
        (r.framing(), r.body_str().as_str()),
        (Framing::Close, CLOSE_BODY)
    );
    assert!(c.peer_closed_within(Duration::from_secs(2)));
    assert_eq!(
        up.connection_count(),
        1,
        "everything above used one keep-alive connection"
    );

    // HTTP/1.0
    let mut c = HttpConn::connect(a).unwrap();
    c.send(b"GET /chunked HTTP/1.0\r\n\r\n").unwrap();
    let r = c.read_response("GET").unwrap();
    assert_eq!(
        (r.framing(), r.body_str().as_str()),
        (Framing::Close, CHUNKED_BODY)
    );

    let reqs = up.requests();
    assert_eq!(reqs[0].target, "/hello?x=1");
    assert_eq!(reqs[0].header_all("x-dup"), vec!["a", "b"]);
    assert_eq!(reqs[0].header("HOST"), Some("h.test:81"));
    assert_eq!(reqs[1].framing, ReqFraming::Length(300_000));
    assert_eq!(reqs[2].framing, ReqFraming::Chunked);
    assert!(reqs[2].body.as_deref() == Some(&body[..]));
    assert_eq!(reqs.last().unwrap().version, "HTTP/1.0");
    assert!(up.errors().is_empty(), "{:?}", up.errors());
}

#[test]
fn selftest_upstream_bulk_stall_and_shutdown() {
    let mut up = Upstream::start();
    let a = up.addr();
    let n = 8 * 1024 * 1024 + 3;
    let mut c = HttpConn::connect(a).unwrap();
    let (h, got) = c.download_pattern(&format!("/bytes/{n}")).unwrap();
    assert_eq!((h.status, got), (200, n));
    let (r, sum) = c.upload_pattern("POST", "/sink", n).unwrap();
    assert_eq!(r.body_str(), sink_answer(n, sum));
    assert_eq!(sum, pattern_checksum(n));
    let rec = up.requests().pop().unwrap();
    assert_eq!(
        (rec.body_len, rec.body_sum, rec.body.is_none()),
        (n, sum, true)
    );

    // paused consumers on either side
    let t = Instant::now();
    let (_, got) = c
        .download_pattern_paused("/bytes/4000000", 100_000, Duration::from_millis(300))
        .unwrap();
    assert_eq!(got, 4_000_000);
    let (r, sum) = c
        .upload_pattern("POST", "/sink?pause_ms=300&pause_after=100000", 4_000_000)
        .unwrap();
    assert_eq!(r.body_str(), sink_answer(4_000_000, sum));
    assert!(
        t.elapsed() >= Duration::from_millis(600),
        "pauses not applied"
    );

    // a corrupted download is detected
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let bad = l.local_addr().unwrap();
    let t = std::thread::spawn(move || {
        use std::io::{Read, Write};
        let (mut s, _) = l.accept().unwrap();
        let mut b = [0u8; 1024];
        let _ = s.read(&mut b);
        let mut body = pattern(100_000);
        body[54_321] ^= 0x10;
        s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n")
            .unwrap();
        s.write_all(&body).unwrap();
    });
    let err = HttpConn::connect(bad)
        .unwrap()
        .download_pattern("/x")
        .expect_err("corruption not detected");
    assert!(err.to_string().contains("offset 54321"), "{err}");
    t.join().unwrap();

    // stall: no answer
    let mut s = HttpConn::connect(a).unwrap();
    s.set_timeout(Duration::from_millis(300));
    let t = Instant::now();
    assert!(s.get("/stall").is_err());
    assert!(t.elapsed() >= Duration::from_millis(250));
    assert!(up.wait_for_requests(3, Duration::from_secs(1)));

    // shutdown: refused, existing connections closed
    up.shutdown();
    assert!(c.peer_closed_within(Duration::from_secs(2)));
    assert!(
        std::net::TcpStream::connect(a).is_err(),
        "port must refuse after shutdown"
    );
    let _ = http::get(a, "/hello").expect_err("refused");
}

#[test]
fn selftest_relay_forwards_counts_and_blackholes() {
    let server = UdpSocket::bind("127.0.0.1:0").unwrap();
    let relay = UdpRelay::start(server.local_addr().unwrap(), RelayConfig::clean()).unwrap();
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    server
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let mut buf = [0u8; 2048];
    client.send_to(&[0xC0, 1, 2, 3], relay.addr()).unwrap(); // long header
    let (n, from) = server.recv_from(&mut buf).unwrap();
    assert_eq!((&buf[..n], from), (&[0xC0u8, 1, 2, 3][..], relay.addr()));
    server.send_to(&[0x40, 9], from).unwrap(); // short header
    let (n, from) = client.recv_from(&mut buf).unwrap();
    assert_eq!((&buf[..n], from), (&[0x40u8, 9][..], relay.addr()));
    let s = relay.stats();
    assert_eq!(
        (
            s.to_server.received,
            s.to_server.forwarded,
            s.to_server.long_header
        ),
        (1, 1, 1)
    );
    assert_eq!(
        (
            s.to_client.received,
            s.to_client.forwarded,
            s.to_client.long_header
        ),
        (1, 1, 0)
    );

    relay.blackhole(true);
    client.send_to(&[0x40, 1], relay.addr()).unwrap();
    server
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    assert!(
        server.recv_from(&mut buf).is_err(),
        "blackholed datagram arrived"
    );
    assert!(
        relay.wait_stable(Duration::from_millis(50), Duration::from_secs(1), |s| s
            .to_server
            .dropped)
    );
    assert_eq!(relay.stats().to_server.dropped, 1);
    relay.blackhole(false);
    client.send_to(&[0x40, 2], relay.addr()).unwrap();
    server
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let (n, _) = server.recv_from(&mut buf).unwrap();
    assert_eq!(&buf[..n], &[0x40, 2]);
}

/// A hop MTU drops larger datagrams (counted as too large) and passes the others; the largest
/// datagram passed on is recorded per direction.
#[test]
fn selftest_relay_hop_mtu_drops_larger_datagrams() {
    let server = UdpSocket::bind("127.0.0.1:0").unwrap();
    let cfg = RelayConfig::clean().with_hop_mtu(1400);
    let relay = UdpRelay::start(server.local_addr().unwrap(), cfg).unwrap();
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    server
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let mut buf = [0u8; 4096];
    client.send_to(&[0x40; 1401], relay.addr()).unwrap();
    client.send_to(&[0x40; 1400], relay.addr()).unwrap();
    let (n, _) = server.recv_from(&mut buf).unwrap();
    assert_eq!(n, 1400, "the datagram over the hop MTU was passed on");
    let s = relay.stats().to_server;
    assert_eq!((s.received, s.forwarded), (2, 1));
    assert_eq!((s.dropped, s.too_large, s.largest_forwarded), (1, 1, 1400));
}

/// A rate limit serializes datagrams at its rate and drops what does not fit its queue (counted
/// as queue full): a burst of 100 datagrams of 1000 bytes at 200 000 bytes/s with 50 000 bytes
/// of queue passes about 51, spread over about 250 ms.
#[test]
fn selftest_relay_rate_limit_spaces_datagrams_and_drops_past_its_queue() {
    const LEN: usize = 1000;
    const RATE: u64 = 200_000;
    let server = UdpSocket::bind("127.0.0.1:0").unwrap();
    let cfg = RelayConfig::clean().with_rate(RATE, 50_000);
    let relay = UdpRelay::start(server.local_addr().unwrap(), cfg).unwrap();
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    for i in 0..100u8 {
        client
            .send_to(&[0x40 | (i & 0x3f); LEN], relay.addr())
            .unwrap();
    }
    server
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut buf = [0u8; 2048];
    let mut arrivals = Vec::new();
    while let Ok((n, _)) = server.recv_from(&mut buf) {
        assert_eq!(n, LEN);
        arrivals.push(Instant::now());
    }
    let s = relay.stats().to_server;
    assert_eq!(s.received, 100);
    assert_eq!(s.forwarded, arrivals.len() as u64);
    assert_eq!(
        (s.dropped, s.queue_full),
        (100 - s.forwarded, 100 - s.forwarded)
    );
    assert!((45..=60).contains(&s.forwarded), "{s:?}");
    // Never faster than the rate: n datagrams take (n - 1) serialization times at least.
    let span = *arrivals.last().unwrap() - arrivals[0];
    let least = Duration::from_secs_f64((arrivals.len() - 1) as f64 * LEN as f64 / RATE as f64);
    assert!(
        span >= least.mul_f64(0.95),
        "{} datagrams in {span:?}, at the rate {least:?}",
        arrivals.len()
    );
}

/// Sends `count` numbered datagrams through a lossy relay each way; returns
/// the indices that arrived per direction and the minimum observed latency.
fn lossy_run(seed: u64, count: u32) -> (Vec<u32>, Vec<u32>, Duration) {
    let server = UdpSocket::bind("127.0.0.1:0").unwrap();
    let cfg = RelayConfig {
        seed,
        loss_to_server: 0.05,
        loss_to_client: 0.05,
        delay_to_server: Duration::from_millis(10),
        delay_to_client: Duration::from_millis(10),
        hop_mtu: None,
        rate: None,
        log_arrivals: false,
    };
    let relay = UdpRelay::start(server.local_addr().unwrap(), cfg).unwrap();
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    let t0 = Instant::now();
    // receiver: (index, arrival time since t0) until 300 ms of silence
    let receiver = |sock: UdpSocket| {
        std::thread::spawn(move || {
            sock.set_read_timeout(Some(Duration::from_millis(300)))
                .unwrap();
            let mut got = Vec::new();
            let mut buf = [0u8; 64];
            while let Ok((n, _)) = sock.recv_from(&mut buf) {
                assert_eq!(n, 5);
                got.push((
                    u32::from_le_bytes(buf[1..5].try_into().unwrap()),
                    t0.elapsed(),
                ));
            }
            (sock, got)
        })
    };
    let send_all = |sock: &UdpSocket, to| {
        let mut sent_at = Vec::new();
        for i in 0..count {
            let mut d = vec![0x40];
            d.extend(i.to_le_bytes());
            sent_at.push(t0.elapsed());
            sock.send_to(&d, to).unwrap();
            if i % 5 == 4 {
                std::thread::sleep(Duration::from_millis(1)); // stay below socket buffers
            }
        }
        sent_at
    };
    let min_latency = |sent: &[Duration], got: &[(u32, Duration)]| {
        got.iter()
            .map(|(i, at)| *at - sent[*i as usize])
            .min()
            .unwrap()
    };
    let rx = receiver(server.try_clone().unwrap());
    let sent = send_all(&client, relay.addr());
    let (_, up) = rx.join().unwrap();
    let lat_up = min_latency(&sent, &up);
    // the relay now knows the client address; send back
    let rx = receiver(client.try_clone().unwrap());
    let sent = send_all(&server, relay.addr());
    let (_, down) = rx.join().unwrap();
    let lat_down = min_latency(&sent, &down);
    let s = relay.stats();
    assert_eq!(s.to_server.received, count as u64);
    assert_eq!(s.to_server.forwarded + s.to_server.dropped, count as u64);
    assert_eq!(
        s.to_server.forwarded,
        up.len() as u64,
        "datagrams lost outside the relay"
    );
    assert_eq!(
        s.to_client.forwarded,
        down.len() as u64,
        "datagrams lost outside the relay"
    );
    let idx = |v: Vec<(u32, Duration)>| v.into_iter().map(|(i, _)| i).collect::<Vec<u32>>();
    (idx(up), idx(down), lat_up.min(lat_down))
}

#[test]
fn selftest_relay_loss_is_seeded_and_delay_applies() {
    let count = 1000;
    let (up1, down1, lat) = lossy_run(42, count);
    for (name, got) in [("to server", &up1), ("to client", &down1)] {
        let lost = count as usize - got.len();
        assert!(
            (20..=90).contains(&lost),
            "{name}: lost {lost} of {count} at 5%"
        );
        assert!(got.windows(2).all(|w| w[0] < w[1]), "{name}: reordered");
    }
    assert!(
        lat >= Duration::from_millis(10),
        "one-way delay {lat:?} < 10ms"
    );
    let (up2, down2, _) = lossy_run(42, count);
    assert_eq!(
        (up1.clone(), down1),
        (up2, down2),
        "same seed must give the same loss pattern"
    );
    let (up3, _, _) = lossy_run(43, count);
    assert_ne!(up1, up3, "different seeds should differ");
}
