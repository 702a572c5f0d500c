//! Dead-peer detection: with default settings a dead server, a dead client or a dead link is
//! noticed in seconds, not at the 30 s idle timeout, and a slow, lossy but alive link is never
//! declared dead.

use crate::harness::admin::{health, metrics_addr, scrape, wait_health, Scrape};
use crate::harness::pair::{LOG_QUIC_LISTEN, LOG_SESSION_LOST, LOG_SESSION_UP, READY_TIMEOUT};
use crate::harness::{poll_until, HttpConn, PairBuilder, RelayConfig, Upstream};
use std::io::Read;
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// When a request of the stream finished, and its status or I/O error.
type Answer = (Instant, Result<u16, String>);

/// Detection bound the issue sets for the default settings.
const NOTICE: Duration = Duration::from_secs(4);
/// Reconnection bound once the peer is back.
const RECOVER: Duration = Duration::from_secs(2);

#[test]
fn killed_server_is_noticed_in_seconds_and_picked_up_again() {
    let up = Upstream::start();
    let (cm, cm_json) = metrics_addr();
    let mut pair = PairBuilder::new(up.addr())
        .name("liveness_server_killed")
        .client("metrics.listen", &cm_json)
        .start();
    assert_eq!(pair.get("/hello").status(), 200);
    assert_eq!(health(cm), Ok(200));
    let killed = Instant::now();
    pair.server.kill();

    // A request sent one second after the kill is answered, not left hanging.
    let addr = pair.http_addr;
    let late = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(1));
        let t = Instant::now();
        let mut c = HttpConn::connect(addr).map_err(|e| e.to_string())?;
        c.set_deadline(Duration::from_secs(20));
        let r = c.get("/hello").map_err(|e| e.to_string())?;
        Ok::<_, String>((r.status(), r.body_str(), t.elapsed()))
    });

    let noticed =
        wait_health(cm, 503, NOTICE + Duration::from_secs(2)).unwrap_or_else(|e| panic!("{e}"));
    let since_kill = killed.elapsed();
    eprintln!("client /health 503 {since_kill:?} after the kill");
    assert!(since_kill <= NOTICE, "noticed after {since_kill:?}");
    pair.client
        .wait_for_log("peer silent", Duration::from_secs(1))
        .unwrap_or_else(|e| panic!("the loss names the silence: {e}"));
    let s = scrape(cm);
    assert_eq!(s.get("ptproxy_session_up", ""), 0.0);
    assert_eq!(s.get("ptproxy_dead_peer_detections_total", ""), 1.0);
    let _ = noticed;

    let (status, body, took) = late.join().expect("late request").expect("an answer");
    eprintln!("request sent 1 s after the kill: {status} after {took:?}");
    assert_eq!(status, 503, "{body}");
    let session_wait = Duration::from_millis(2000);
    assert!(
        took <= session_wait + NOTICE,
        "answered after {took:?} (bound: session_wait + 4 s)"
    );

    pair.server.start();
    pair.server.expect_log(LOG_QUIC_LISTEN, READY_TIMEOUT);
    let back =
        wait_health(cm, 200, RECOVER + Duration::from_secs(3)).unwrap_or_else(|e| panic!("{e}"));
    eprintln!("client /health 200 again {back:?} after the restart");
    assert!(back <= RECOVER, "picked up again after {back:?}");
    assert_eq!(pair.get("/hello").status(), 200);
}

/// A 10 s blackhole of the link in the middle of a request stream: detected within 4 s,
/// recovered within 2 s of its end, and every request gets an answer.
#[test]
fn blackholed_link_is_noticed_and_recovered_with_every_request_answered() {
    let up = Upstream::start();
    let (cm, cm_json) = metrics_addr();
    let pair = Arc::new(
        PairBuilder::new(up.addr())
            .name("liveness_blackhole")
            .client("metrics.listen", &cm_json)
            .relay(RelayConfig::clean())
            .start(),
    );
    let stop = Arc::new(AtomicBool::new(false));
    let answers: Arc<Mutex<Vec<Answer>>> = Arc::default();
    let workers: Vec<_> = (0..4)
        .map(|_| {
            let (pair, stop, answers) = (pair.clone(), stop.clone(), answers.clone());
            std::thread::spawn(move || {
                for _ in 0..10_000 {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let answer = HttpConn::connect(pair.http_addr)
                        .and_then(|mut c| {
                            c.set_deadline(Duration::from_secs(20));
                            c.get("/hello")
                        })
                        .map(|r| r.status())
                        .map_err(|e| e.to_string());
                    answers.lock().expect("lock").push((Instant::now(), answer));
                    std::thread::sleep(Duration::from_millis(50));
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    let start = Instant::now();
    pair.relay().blackhole(true);
    let noticed =
        wait_health(cm, 503, NOTICE + Duration::from_secs(2)).unwrap_or_else(|e| panic!("{e}"));
    eprintln!("blackhole noticed after {noticed:?}");
    assert!(noticed <= NOTICE, "noticed after {noticed:?}");
    let rest = Duration::from_secs(10).saturating_sub(start.elapsed());
    std::thread::sleep(rest);
    pair.relay().blackhole(false);
    let ended = Instant::now();
    let back =
        wait_health(cm, 200, RECOVER + Duration::from_secs(5)).unwrap_or_else(|e| panic!("{e}"));
    eprintln!("session back {back:?} after the blackhole ended");
    assert!(back <= RECOVER, "recovered after {back:?}");
    // A 200 after the recovery, then stop the stream.
    let fresh = poll_until(Duration::from_secs(5), Duration::from_millis(20), || {
        let answers = answers.lock().expect("lock");
        answers
            .iter()
            .any(|(t, a)| *t > ended && *a == Ok(200))
            .then_some(())
    });
    stop.store(true, Ordering::SeqCst);
    for w in workers {
        w.join().expect("worker");
    }
    assert!(
        fresh.is_some(),
        "requests succeed again after the blackhole"
    );
    let answers = answers.lock().expect("lock");
    let bad: Vec<_> = answers
        .iter()
        .filter(|(_, a)| !matches!(a, Ok(200) | Ok(503)))
        .collect();
    let refused = answers.iter().filter(|(_, a)| *a == Ok(503)).count();
    eprintln!("{} requests: {refused} answered 503", answers.len());
    assert!(bad.is_empty(), "requests without a 200/503 answer: {bad:?}");
}

/// An idle session over a slow (RTT 200 ms), lossy (5% each way) link stays up for a minute:
/// no false detection, no reconnect.
#[test]
fn idle_session_over_a_slow_lossy_link_is_not_declared_dead() {
    let up = Upstream::start();
    let (cm, cm_json) = metrics_addr();
    let pair = PairBuilder::new(up.addr())
        .name("liveness_lossy_idle")
        .client("metrics.listen", &cm_json)
        .relay(RelayConfig::lossy(0.05, Duration::from_millis(100), 0x11fe))
        .start();
    assert_eq!(pair.get("/hello").status(), 200);
    let t = Instant::now();
    let mut samples = 0;
    while t.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_secs(1));
        assert_eq!(
            health(cm),
            Ok(200),
            "session down after {:?} of idling",
            t.elapsed()
        );
        samples += 1;
    }
    let s = scrape(cm);
    eprintln!(
        "{samples} health samples; relay {:?}; silence now {:?}",
        pair.relay().stats(),
        s.samples("ptproxy_peer_silence_seconds")
    );
    assert_eq!(
        pair.client.count_log(LOG_SESSION_LOST),
        0,
        "no session loss"
    );
    assert_eq!(s.get("ptproxy_session_reconnects_total", ""), 0.0);
    assert_eq!(s.get("ptproxy_dead_peer_detections_total", ""), 0.0);
    assert!(
        pair.relay().stats().to_server.dropped > 0,
        "the link did lose packets"
    );
    assert_eq!(pair.get("/hello").status(), 200);
}

/// The server drops the session of a client that vanished (SIGKILL) within seconds, and with
/// it the upstream connection of the request that client had in flight.
#[test]
fn server_drops_a_vanished_client_and_frees_its_upstream_connection() {
    let upstream = TcpListener::bind("127.0.0.1:0").expect("bind upstream");
    let (sm, sm_json) = metrics_addr();
    let mut pair = PairBuilder::new(upstream.local_addr().expect("addr"))
        .name("liveness_client_killed")
        .server("metrics.listen", &sm_json)
        .start();
    let addr = pair.http_addr;
    let _pending = std::thread::spawn(move || {
        let mut c = HttpConn::connect(addr).ok()?;
        c.set_deadline(Duration::from_secs(30));
        c.get("/never").ok()
    });
    let (mut conn, _) = upstream.accept().expect("the request reaches the upstream");
    conn.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    let mut head = [0u8; 4096];
    let n = conn.read(&mut head).expect("request head");
    assert!(n > 0, "request head");
    assert_eq!(health(sm), Ok(200));
    let killed = Instant::now();
    pair.client.kill();
    // The upstream connection of the vanished client's request is closed.
    let mut rest = [0u8; 1024];
    let closed = conn.read(&mut rest);
    let took = killed.elapsed();
    eprintln!("upstream connection ended ({closed:?}) {took:?} after the client vanished");
    assert!(
        matches!(closed, Ok(0)) || closed.is_err() && took < Duration::from_secs(15),
        "{closed:?}"
    );
    assert!(
        took <= NOTICE + Duration::from_secs(1),
        "freed after {took:?}"
    );
    pair.server
        .wait_for_log("silent for", Duration::from_secs(1))
        .unwrap_or_else(|e| panic!("{e}"));
    wait_health(sm, 503, Duration::from_secs(2)).unwrap_or_else(|e| panic!("{e}"));
    let s = scrape(sm);
    assert_eq!(s.get("ptproxy_dead_peer_detections_total", ""), 1.0);
    assert_eq!(s.get("ptproxy_streams_open", ""), 0.0);
    assert_eq!(pair.server.count_log(LOG_SESSION_UP), 1);
}

/// What liveness probing costs on an idle link with the default settings: both directions'
/// QUIC bytes over a quiet period, scaled to an hour (README "Transport" states the figure).
#[test]
fn idle_probing_cost_stays_within_the_stated_bytes_per_hour() {
    const QUIET: Duration = Duration::from_secs(20);
    /// README: about 0.5 MB per hour, both directions together (QUIC payload, without the
    /// 28 bytes of IP and UDP headers per datagram).
    const STATED_MAX_PER_HOUR: f64 = 600_000.0;
    let up = Upstream::start();
    let (cm, cm_json) = metrics_addr();
    let pair = PairBuilder::new(up.addr())
        .name("liveness_idle_cost")
        .client("metrics.listen", &cm_json)
        .start();
    assert_eq!(pair.get("/hello").status(), 200);
    std::thread::sleep(Duration::from_secs(2));
    let bytes = |s: &Scrape| {
        s.get("ptproxy_sent_bytes_total", "") + s.get("ptproxy_received_bytes_total", "")
    };
    let before = bytes(&scrape(cm));
    std::thread::sleep(QUIET);
    let after = scrape(cm);
    let per_hour = (bytes(&after) - before) * 3600.0 / QUIET.as_secs_f64();
    eprintln!(
        "idle link: {:.0} bytes in {QUIET:?} = {per_hour:.0} bytes per hour (both directions)",
        bytes(&after) - before
    );
    assert!(per_hour > 0.0, "probes do go out on an idle link");
    assert!(
        per_hour <= STATED_MAX_PER_HOUR,
        "{per_hour:.0} bytes per hour, README states at most {STATED_MAX_PER_HOUR}"
    );
    assert_eq!(after.get("ptproxy_dead_peer_detections_total", ""), 0.0);
}
