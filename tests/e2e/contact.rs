//! First contact: a wrong or dead peer address is reported at once (ICMP unreachable, handshake
//! timeout), 503 answers and `/health` say why, repeated failures are summarized, a late server
//! is picked up, and a name with several addresses reaches the one that works (peer and
//! upstream).

use crate::harness::admin::{self, metric, metrics_addr};
use crate::harness::pair::{LOG_QUIC_LISTEN, LOG_SESSION_UP, READY_TIMEOUT};
use crate::harness::tmp::TempDir;
use crate::harness::{http, poll_until, PairBuilder, Upstream};
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

/// The client's failure warning (first of a kind).
const LOG_NO_SESSION: &str = "no session to the peer";

fn scrape(addr: SocketAddr) -> String {
    admin::scrape(addr).text
}

/// A hosts file giving `name` the addresses `ips`, in this order.
pub(crate) fn hosts_file(dir: &TempDir, name: &str, ips: &[&str]) -> String {
    let path = dir.join("hosts");
    let text: String = ips.iter().map(|ip| format!("{ip} {name}\n")).collect();
    std::fs::write(&path, text).unwrap();
    path.to_str().expect("UTF-8 path").to_string()
}

#[test]
fn a_closed_peer_port_is_reported_at_once_then_a_late_server_is_picked_up() {
    let up = Upstream::start();
    let (metrics, metrics_json) = metrics_addr();
    let t0 = Instant::now();
    let mut pair = PairBuilder::new(up.addr())
        .name("contact_closed_port")
        .start_server(false)
        .client("metrics.listen", &metrics_json)
        .start();
    let peer = pair.quic_addr.to_string();
    let warning = pair
        .client
        .wait_for_log(
            LOG_NO_SESSION,
            Duration::from_secs(5).saturating_sub(t0.elapsed()),
        )
        .unwrap_or_else(|e| panic!("no warning within 5 s of start: {e}"));
    assert!(
        warning.contains(&peer) && warning.contains("ICMP port unreachable"),
        "the warning must name {peer} and the ICMP error: {warning}"
    );
    assert!(warning.contains("likely"), "{warning}");

    // a request made meanwhile: 503 naming the peer and the reason
    let r = pair.get("/hello");
    assert_eq!(r.status(), 503, "{r}");
    let body = r.body_str();
    assert!(
        body.contains(&format!("no session to the peer proxy {peer}"))
            && body.contains("ICMP port unreachable"),
        "the 503 must name the peer and the reason: {body:?}"
    );
    let health = http::get(metrics, "/health").expect("GET /health");
    assert_eq!(health.status(), 503, "{health}");
    let h = health.body_str();
    assert!(
        h.contains("session down (") && h.contains("attempt(s)") && h.contains(&peer),
        "/health must show the state, the attempts and the peer: {h:?}"
    );
    let m = scrape(metrics);
    assert!(
        metric(
            metrics,
            "ptproxy_peer_connect_failures_total{peer=\"default\"}"
        )
        .is_some_and(|v| v >= 1.0),
        "{m}"
    );
    assert!(
        m.contains("ptproxy_peer_last_error_info{peer=\"default\",kind=\"unreachable\""),
        "{m}"
    );
    assert!(
        m.contains("ptproxy_peer_state{peer=\"default\",state=\"up\"} 0"),
        "{m}"
    );

    // the server starts 10 s after the client
    std::thread::sleep(Duration::from_secs(10).saturating_sub(t0.elapsed()));
    let failures_before = metric(
        metrics,
        "ptproxy_peer_connect_failures_total{peer=\"default\"}",
    )
    .expect("failures metric");
    assert!(
        failures_before >= 3.0,
        "retries went on while the server was down: {failures_before}"
    );
    assert_eq!(
        pair.client.count_log(LOG_NO_SESSION),
        1,
        "repeated failures of the same kind must be summarized, not logged each time:\n{}",
        pair.client.log_lines().join("\n")
    );
    pair.server.start();
    pair.server.expect_log(LOG_QUIC_LISTEN, READY_TIMEOUT);
    let t1 = Instant::now();
    // handshake timeout (3 s) + the largest backoff (5 s), plus a margin for a loaded machine
    pair.client
        .wait_for_log(LOG_SESSION_UP, Duration::from_secs(11))
        .unwrap_or_else(|e| panic!("the late server was not picked up: {e}"));
    eprintln!("late server picked up {:?} after it started", t1.elapsed());
    pair.client
        .expect_log("reached after", Duration::from_secs(1));
    let r = pair.get("/hello");
    assert_eq!((r.status(), r.body_str().as_str()), (200, "hello"), "{r}");
    let m = scrape(metrics);
    assert!(
        m.contains("ptproxy_peer_state{peer=\"default\",state=\"up\"} 1"),
        "{m}"
    );
}

#[test]
fn a_silent_peer_times_out_the_handshake_with_a_clear_warning() {
    let up = Upstream::start();
    // holds the port and never answers (like a firewall dropping UDP)
    let hole = UdpSocket::bind("127.0.0.1:0").unwrap();
    let silent = hole.local_addr().unwrap().to_string();
    let (metrics, metrics_json) = metrics_addr();
    let t0 = Instant::now();
    let pair = PairBuilder::new(up.addr())
        .name("contact_silent")
        .start_server(false)
        .client("peer.address", &format!("\"{silent}\""))
        .client("http.session_wait_ms", "4000")
        .client("metrics.listen", &metrics_json)
        .start();
    let warning = pair
        .client
        .wait_for_log(
            LOG_NO_SESSION,
            Duration::from_secs(5).saturating_sub(t0.elapsed()),
        )
        .unwrap_or_else(|e| panic!("no warning within 5 s of start: {e}"));
    assert!(
        warning.contains(&silent)
            && warning.contains("handshake timed out: nothing answered within 3000 ms")
            && warning.contains("UDP blocked"),
        "{warning}"
    );
    let r = pair.get("/hello");
    assert_eq!(r.status(), 503, "{r}");
    let body = r.body_str();
    assert!(
        body.contains(&silent) && body.contains("handshake timed out"),
        "the 503 must name the peer and the reason: {body:?}"
    );
    // a second timeout is counted but not warned again
    let failed_twice = poll_until(Duration::from_secs(8), Duration::from_millis(100), || {
        metric(
            metrics,
            "ptproxy_peer_connect_failures_total{peer=\"default\"}",
        )
        .filter(|v| *v >= 2.0)
    });
    assert!(failed_twice.is_some(), "{}", scrape(metrics));
    assert_eq!(pair.client.count_log(LOG_NO_SESSION), 1);
    assert!(scrape(metrics).contains("kind=\"handshake_timeout\""));
}

#[test]
fn a_name_with_a_silent_address_first_reaches_the_server_on_the_other() {
    let up = Upstream::start();
    let dir = TempDir::new("contact_two_addresses");
    let builder = PairBuilder::new(up.addr()).name("contact_two_addresses");
    // find the server's port: PairBuilder chose it; a silent socket takes the same port on ::1
    let quic: SocketAddr = builder
        .server_config()
        .get("listen")
        .and_then(|j| j.as_str())
        .and_then(|a| a.parse().ok())
        .expect("server listen address");
    let hole = UdpSocket::bind(("::1", quic.port()))
        .unwrap_or_else(|e| panic!("bind [::1]:{} for the silent address: {e}", quic.port()));
    let hosts = hosts_file(&dir, "twohomed.test", &["::1", "127.0.0.1"]);
    let name = format!("twohomed.test:{}", quic.port());
    let pair = builder
        .client("peer.address", &format!("\"{name}\""))
        .client("reconnect.handshake_timeout_ms", "1500")
        .env("PTPROXY_HOSTS_FILE", &hosts)
        .start();
    let warning = pair
        .client
        .expect_log(LOG_NO_SESSION, Duration::from_secs(1));
    assert!(
        warning.contains(&format!("{name} ([::1]:{})", quic.port()))
            && warning.contains("handshake timed out"),
        "IPv6 first (resolver order), and it was silent: {warning}"
    );
    let up_line = pair
        .client
        .expect_log(LOG_SESSION_UP, Duration::from_secs(1));
    assert!(up_line.contains(&quic.to_string()), "{up_line}");
    let r = pair.get("/hello");
    assert_eq!((r.status(), r.body_str().as_str()), (200, "hello"), "{r}");
    drop(hole);
}

#[test]
fn names_reach_the_peer_and_an_upstream_with_a_dead_address_first() {
    let up = Upstream::start();
    let dir = TempDir::new("contact_names");
    // nothing listens on [::1]:PORT (TCP): the server moves on to 127.0.0.1 in the same request
    let hosts = hosts_file(&dir, "upstream.test", &["::1", "127.0.0.1"]);
    let builder = PairBuilder::new(up.addr())
        .name("contact_names")
        .server(
            "upstream.address",
            &format!("\"upstream.test:{}\"", up.addr().port()),
        )
        .env("PTPROXY_HOSTS_FILE", &hosts);
    let port = builder
        .server_config()
        .get("listen")
        .and_then(|j| j.as_str())
        .and_then(|a| a.parse::<SocketAddr>().ok())
        .expect("server listen")
        .port();
    // the peer by a real name, through the system resolver
    let pair = builder
        .client("peer.address", &format!("\"localhost:{port}\""))
        .start();
    for i in 0..3 {
        let r = pair.get("/hello");
        assert_eq!(
            (r.status(), r.body_str().as_str()),
            (200, "hello"),
            "request {i}: {r}"
        );
    }
    // [::1] is refused once and taken out (passive health, issue 12); 127.0.0.1 serves.
    let failed = pair
        .server
        .log_lines()
        .into_iter()
        .filter(|l| l.contains(" down ("))
        .collect::<Vec<_>>();
    assert_eq!(
        failed.len(),
        1,
        "[::1] refused once, then out while 127.0.0.1 serves: {failed:?}"
    );
    assert!(failed[0].contains("[::1]"), "{failed:?}");
}
