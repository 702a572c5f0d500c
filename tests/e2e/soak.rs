//! Load soak: 64 concurrent clients moving 1 MiB bodies both ways through the pair over the
//! relay, with and without loss, with the default windows and with a small connection window.
//! The one session must survive all of it (no session lost, no reconnect) and every request
//! must be answered 200 with a byte-exact body.
//!
//! This is the regression test for the flow-control collapse (quiche multiplied the peer's
//! connection credit by the send capacity factor, so concurrent bodies overran the window and
//! the receiver closed the session with FLOW_CONTROL_ERROR) and for request heads starved by
//! bulk bodies (503 while the session was up).

use crate::harness::pattern::{pattern_checksum, sink_answer};
use crate::harness::{heavy_lock, Pair, PairBuilder, RelayConfig, Upstream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const CLIENTS: usize = 64;
const BODY: u64 = 1024 * 1024;
/// Each client alternates POST and GET this many times on one keep-alive connection.
const ROUNDS: usize = 2;
const ONE_WAY_DELAY: Duration = Duration::from_millis(10);
const SOAK_DEADLINE: Duration = Duration::from_secs(90);

/// One client's work: ROUNDS x (POST 1 MiB to /sink, GET 1 MiB), checking every byte.
fn client_rounds(pair: &Pair, failures: &Mutex<Vec<String>>, done: &AtomicUsize) {
    let fail = |what: String| {
        failures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(what)
    };
    let mut c = match crate::harness::HttpConn::connect(pair.http_addr) {
        Ok(c) => c,
        Err(e) => return fail(format!("connect: {e}")),
    };
    c.set_deadline(SOAK_DEADLINE);
    let expected_sink = sink_answer(BODY, pattern_checksum(BODY));
    for round in 0..ROUNDS {
        match c.upload_pattern("POST", "/sink", BODY) {
            Ok((r, _)) if r.status() == 200 && r.body_str() == expected_sink => {
                done.fetch_add(1, Ordering::SeqCst)
            }
            Ok((r, _)) => {
                return fail(format!(
                    "round {round} POST: {} {:?}",
                    r.status(),
                    r.body_str()
                ))
            }
            Err(e) => return fail(format!("round {round} POST: {e}")),
        };
        match c.download_pattern(&format!("/bytes/{BODY}")) {
            Ok((h, n)) if h.status == 200 && n == BODY => done.fetch_add(1, Ordering::SeqCst),
            Ok((h, n)) => return fail(format!("round {round} GET: {} with {n} bytes", h.status)),
            Err(e) => return fail(format!("round {round} GET: {e}")),
        };
    }
}

fn soak(name: &str, loss: f64, connection_window: Option<u64>) {
    let _heavy = heavy_lock();
    let up = Upstream::start();
    let mut builder = PairBuilder::new(up.addr())
        .name(name)
        .relay(RelayConfig::lossy(loss, ONE_WAY_DELAY, 0x50a4))
        // More upstream connections than clients, so the pool never throttles the soak.
        .server("upstream.max_idle", "128");
    if let Some(w) = connection_window {
        builder = builder.both("transport.connection_window", &w.to_string());
    }
    let pair = Arc::new(builder.start());
    let failures = Arc::new(Mutex::new(Vec::new()));
    let done = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let threads: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (pair, failures, done) = (pair.clone(), failures.clone(), done.clone());
            std::thread::spawn(move || client_rounds(&pair, &failures, &done))
        })
        .collect();
    for t in threads {
        t.join().expect("client thread panicked");
    }
    let failures = failures.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let ok = done.load(Ordering::SeqCst);
    eprintln!(
        "{name}: {ok} of {} requests ok in {:.1}s, relay {:?}",
        CLIENTS * ROUNDS * 2,
        started.elapsed().as_secs_f64(),
        pair.relay().stats()
    );
    let lost = pair
        .client
        .count_log(crate::harness::pair::LOG_SESSION_LOST);
    if lost > 0 || !failures.is_empty() {
        pair.dump_logs();
    }
    assert_eq!(lost, 0, "{name}: the session was lost {lost} time(s)");
    assert!(
        failures.is_empty(),
        "{name}: {} client(s) failed, first: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    assert_eq!(ok, CLIENTS * ROUNDS * 2, "{name}: requests answered 200");
}

#[test]
fn soak_no_loss_default_windows() {
    soak("soak_clean_default", 0.0, None);
}

#[test]
fn soak_one_percent_loss_default_windows() {
    soak("soak_loss1_default", 0.01, None);
}

#[test]
fn soak_no_loss_4mib_connection_window() {
    soak("soak_clean_4mib", 0.0, Some(4 * 1024 * 1024));
}

#[test]
fn soak_one_percent_loss_4mib_connection_window() {
    soak("soak_loss1_4mib", 0.01, Some(4 * 1024 * 1024));
}

/// When the session is up but has no room for a new request, the 503 says why instead of
/// claiming there is no session: here every stream the peer allows is taken by a stalled request.
#[test]
fn stream_limit_reached_is_answered_honestly() {
    let up = Upstream::start();
    let pair = PairBuilder::new(up.addr())
        .name("soak_stream_limit")
        .server("transport.max_concurrent_streams", "2")
        .client("http.session_wait_ms", "500")
        .start();
    let stalled: Vec<_> = (0..2)
        .map(|_| {
            let mut c = pair.conn();
            c.send(b"GET /stall HTTP/1.1\r\nHost: e2e.test\r\n\r\n")
                .expect("send stalled request");
            c
        })
        .collect();
    assert!(
        up.wait_for_requests(2, Duration::from_secs(5)),
        "both stalled requests reach the upstream"
    );
    let r = pair.get("/hello");
    assert_eq!(r.status(), 503, "{}", r.body_str());
    let body = r.body_str();
    assert!(
        body.contains("session to the peer proxy is up")
            && body.contains("limit on concurrent streams"),
        "the 503 names the real reason: {body:?}"
    );
    assert!(
        r.header("proxy-status")
            .is_some_and(|v| v.contains("connection_limit_reached")),
        "{:?}",
        r.header("proxy-status")
    );
    drop(stalled);
}

/// The same when the connection's flow-control credit is held by an upload the upstream does
/// not read: the new request gets an honest 503 in `http.session_wait_ms`, the session stays.
#[test]
fn credit_exhausted_is_answered_honestly() {
    let up = Upstream::start();
    let pair = Arc::new(
        PairBuilder::new(up.addr())
            .name("soak_credit")
            .server("transport.connection_window", "65536")
            .client("http.session_wait_ms", "500")
            .start(),
    );
    // The upstream reads nothing of this body for 20 s: credit, socket buffers and the
    // server's window all fill up.
    let uploader = {
        let pair = pair.clone();
        std::thread::spawn(move || {
            let mut c = pair.conn();
            c.set_deadline(Duration::from_secs(60));
            let _ = c.upload_pattern("POST", "/sink?pause_after=0&pause_ms=20000", 64 << 20);
        })
    };
    let answer =
        crate::harness::poll_until(Duration::from_secs(20), Duration::from_millis(100), || {
            let r = pair.get("/hello");
            (r.status() == 503).then_some(r)
        })
        .expect("a request is refused once the credit is used up");
    let body = answer.body_str();
    assert!(
        body.contains("session to the peer proxy is up") && body.contains("no send credit"),
        "the 503 names the real reason: {body:?}"
    );
    assert_eq!(
        pair.client
            .count_log(crate::harness::pair::LOG_SESSION_LOST),
        0,
        "the session stays up"
    );
    drop(up);
    let _ = uploader.join();
}
