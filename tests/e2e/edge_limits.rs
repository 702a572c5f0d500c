//! Resource limits at the HTTP edges (issue 10): the operator endpoint under idle sockets,
//! request bodies that stall, the descriptor limit on accept, and buffers of idle keep-alive
//! connections.

use crate::harness::admin::{health, metric, metrics_addr};
use crate::harness::pair::READY_TIMEOUT;
use crate::harness::{poll_until, PairBuilder, Upstream};
use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

const LOG_ADMIN_LISTEN: &str = "serving /metrics and /health on";

/// Whether the peer closed `s` within `timeout` (EOF or reset); false if it stayed open.
fn closed_within(s: &mut TcpStream, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        let _ = s.set_read_timeout(Some(left));
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return false
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(_) => return true,
        }
    }
}

/// Item 3: 600 sockets that never finish a request head (more than the old 512-slot table)
/// do not lock the operator endpoint out, and each is closed after the head timeout (5 s).
#[test]
fn operator_endpoint_answers_past_idle_sockets_and_closes_them() {
    let up = Upstream::start();
    let (cm, cm_json) = metrics_addr();
    let pair = PairBuilder::new(up.addr())
        .name("edge_admin_idle")
        .client("metrics.listen", &cm_json)
        .start();
    pair.client.expect_log(LOG_ADMIN_LISTEN, READY_TIMEOUT);
    let mut idle = Vec::new();
    for i in 0..600 {
        let mut s = TcpStream::connect_timeout(&cm, Duration::from_secs(3)).expect("connect");
        if i % 2 == 1 {
            s.write_all(b"GET /health HTTP/1.1\r\n")
                .expect("partial head");
        }
        idle.push(s);
    }
    let newest_opened = Instant::now();
    let t = Instant::now();
    let h = health(cm);
    assert_eq!(h, Ok(200), "/health behind 600 idle sockets");
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "/health took {:?}",
        t.elapsed()
    );
    // The newest idle sockets were not pushed out to make room: they time out.
    let newest = idle.last_mut().expect("sockets");
    assert!(
        closed_within(newest, Duration::from_secs(20)),
        "an idle operator connection stayed open 20 s"
    );
    let lived = newest_opened.elapsed();
    assert!(
        lived >= Duration::from_secs(4),
        "closed after {lived:?}, before the 5 s head timeout"
    );
    assert_eq!(health(cm), Ok(200), "/health after the timeouts");
}

/// Item 7: a request body that stops arriving is given up after `http.body_timeout_ms`: 408
/// before the response head, and the stream is released; a slow but steady body is not.
#[test]
fn a_stalled_request_body_gets_408_and_frees_its_stream() {
    let up = Upstream::start();
    let (cm, cm_json) = metrics_addr();
    let pair = PairBuilder::new(up.addr())
        .name("edge_body_stall")
        .client("metrics.listen", &cm_json)
        .client("http.body_timeout_ms", "1000")
        .start();
    pair.client.expect_log(LOG_ADMIN_LISTEN, READY_TIMEOUT);

    // A byte every 300 ms: slow, never idle for the timeout; it completes.
    let mut c = pair.conn();
    c.set_timeout(Duration::from_secs(10));
    c.send(b"POST /echo HTTP/1.1\r\nHost: e2e.test\r\nContent-Length: 6\r\n\r\n")
        .expect("head");
    for b in b"trickl" {
        std::thread::sleep(Duration::from_millis(300));
        c.send(&[*b]).expect("body byte");
    }
    let r = c.read_response("POST").expect("response to the slow body");
    assert_eq!((r.status(), r.body_str().as_str()), (200, "trickl"));

    // Three bytes of ten, then nothing.
    let mut c = pair.conn();
    c.set_timeout(Duration::from_secs(10));
    let t = Instant::now();
    c.send(b"POST /echo HTTP/1.1\r\nHost: e2e.test\r\nContent-Length: 10\r\n\r\nabc")
        .expect("partial request");
    let r = c
        .read_response("POST")
        .expect("an answer to the stalled body");
    let waited = t.elapsed();
    assert_eq!(r.status(), 408, "{}", r.body_str());
    assert!(
        r.body_str().contains("http.body_timeout_ms"),
        "{}",
        r.body_str()
    );
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(6),
        "408 after {waited:?} with a 1000 ms body timeout"
    );
    assert!(
        c.peer_closed_within(Duration::from_secs(5)),
        "closed after the 408"
    );
    let released = poll_until(Duration::from_secs(5), Duration::from_millis(50), || {
        (metric(cm, "ptproxy_streams_open") == Some(0.0)).then_some(())
    });
    assert!(
        released.is_some(),
        "the stalled request's stream was not released"
    );
}

/// Item 7, after the response head went out: the stalled upload's connection is reset (a
/// response cut short never looks complete) and its stream released.
#[test]
fn a_request_body_stalled_after_the_response_head_resets_the_connection() {
    // An upstream that answers as soon as it has the request head, then keeps the body open.
    let origin = TcpListener::bind("127.0.0.1:0").expect("bind origin");
    let origin_addr = origin.local_addr().expect("origin address");
    let held = std::thread::spawn(move || {
        let (mut s, _) = origin.accept().ok()?;
        s.set_read_timeout(Some(Duration::from_secs(20))).ok()?;
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") && head.len() < 65536 {
            if s.read(&mut byte).ok()? == 0 {
                return None;
            }
            head.push(byte[0]);
        }
        s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nearly")
            .ok()?;
        let mut rest = Vec::new();
        let _ = s.read_to_end(&mut rest);
        Some(s)
    });
    let (cm, cm_json) = metrics_addr();
    let pair = PairBuilder::new(origin_addr)
        .name("edge_body_stall_late")
        .client("metrics.listen", &cm_json)
        .client("http.body_timeout_ms", "1000")
        .start();
    pair.client.expect_log(LOG_ADMIN_LISTEN, READY_TIMEOUT);
    let mut c = pair.conn();
    c.set_timeout(Duration::from_secs(10));
    c.send(b"POST /up HTTP/1.1\r\nHost: e2e.test\r\nContent-Length: 10\r\n\r\nabc")
        .expect("partial request");
    let head = c.read_head("POST").expect("the response head");
    assert_eq!(head.status, 200);
    let t = Instant::now();
    let mut got = 0;
    let body = c.read_body_with(&head, &mut |b| got += b.len());
    assert!(
        body.is_err() && got < 100 && t.elapsed() < Duration::from_secs(8),
        "a stalled upload's response must end in a reset: {body:?} after {got} bytes, {:?}",
        t.elapsed()
    );
    let released = poll_until(Duration::from_secs(5), Duration::from_millis(50), || {
        (metric(cm, "ptproxy_streams_open") == Some(0.0)).then_some(())
    });
    assert!(
        released.is_some(),
        "the stalled request's stream was not released"
    );
    drop(pair);
    let _ = held.join();
}

/// Lowers the descriptor limit (soft and hard) of the running process `pid`.
fn limit_descriptors(pid: u32, n: u64) {
    let limit = libc::rlimit {
        rlim_cur: n,
        rlim_max: n,
    };
    // SAFETY: prlimit(2) on a child we own, with a valid rlimit and no old-value pointer.
    let rc = unsafe {
        libc::prlimit(
            pid as libc::pid_t,
            libc::RLIMIT_NOFILE,
            &limit,
            std::ptr::null_mut(),
        )
    };
    assert_eq!(rc, 0, "prlimit: {}", std::io::Error::last_os_error());
}

fn open_descriptors(pid: u32) -> u64 {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count() as u64)
        .expect("/proc/PID/fd")
}

/// Item 8: at the descriptor limit the client pauses accepting and retries on a timer, so a
/// connection left in the backlog is served once descriptors are free, without another
/// connection arriving to wake the listener.
#[test]
fn at_the_descriptor_limit_accepting_resumes_by_itself() {
    let up = Upstream::start();
    let pair = PairBuilder::new(up.addr())
        .name("edge_emfile")
        .client("http.head_timeout_ms", "60000")
        .start();
    let pid = pair.client.pid().expect("client pid");
    let spare = 20;
    limit_descriptors(pid, open_descriptors(pid) + spare);
    // More idle connections than descriptors: the last ones stay in the listen backlog.
    let mut idle: Vec<TcpStream> = (0..spare + 20)
        .map(|_| {
            TcpStream::connect_timeout(&pair.http_addr, Duration::from_secs(3)).expect("connect")
        })
        .collect();
    pair.client
        .expect_log("Too many open files", Duration::from_secs(10));
    // The newest one (certainly not accepted) carries a request.
    let mut waiting = idle.pop().expect("connections");
    waiting
        .write_all(b"GET /hello HTTP/1.1\r\nHost: e2e.test\r\n\r\n")
        .expect("request");
    // Free the descriptors: every other connection goes away; none new arrives.
    drop(idle);
    let t = Instant::now();
    waiting
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let mut answer = Vec::new();
    let mut buf = [0u8; 1024];
    while !answer.ends_with(b"hello") && t.elapsed() < Duration::from_secs(5) {
        match waiting.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => answer.extend_from_slice(&buf[..n]),
        }
    }
    let text = String::from_utf8_lossy(&answer);
    assert!(
        text.starts_with("HTTP/1.1 200") && text.ends_with("hello"),
        "the request in the backlog was not served within {:?}: {text:?}",
        t.elapsed()
    );
    assert!(
        t.elapsed() < Duration::from_secs(3),
        "served after {:?}",
        t.elapsed()
    );
    pair.client
        .expect_log("accepting connections again", Duration::from_secs(5));
    assert_eq!(
        pair.client.count_log("cannot accept connections"),
        1,
        "the descriptor shortage is logged once"
    );
}

/// Item 9: keep-alive connections that went idle after large responses give their buffer
/// memory back. 150 connections each download 1 MB and stay open: the client's RSS must not
/// keep a response buffer per connection (before: about 150 KB each, 20+ MB here).
#[test]
fn idle_keep_alive_connections_do_not_keep_their_buffers() {
    let _heavy = crate::harness::heavy_lock();
    let up = Upstream::start();
    let pair = PairBuilder::new(up.addr()).name("edge_idle_rss").start();
    // Warm up allocator and session with a few transfers on throwaway connections.
    for _ in 0..3 {
        let (head, n) = pair
            .conn()
            .download_pattern("/bytes/1000000")
            .expect("warm-up");
        assert_eq!((head.status, n), (200, 1_000_000));
    }
    let before = pair.client.rss_kib().expect("client RSS");
    let mut idle = Vec::new();
    for i in 0..150 {
        let mut c = pair.conn();
        let (head, n) = c
            .download_pattern("/bytes/1000000")
            .unwrap_or_else(|e| panic!("download {i}: {e}"));
        assert_eq!((head.status, n), (200, 1_000_000), "download {i}");
        idle.push(c);
    }
    let after = pair.client.rss_kib().expect("client RSS");
    let grown = after.saturating_sub(before);
    eprintln!("client RSS {before} -> {after} KiB with 150 idle connections");
    // What 150 open connections legitimately cost (socket state, slab entries) is far below
    // this; one kept response buffer each is far above it.
    assert!(
        grown < 8 * 1024,
        "client RSS grew by {grown} KiB with 150 idle connections ({before} -> {after} KiB)"
    );
    drop(idle);
}
