//! Mutual TLS: only clients with a certificate from the configured CA (and,
//! if configured, an allowed name) get a session.

use crate::harness::admin::metrics_addr;
use crate::harness::pair::LOG_SESSION_UP;
use crate::harness::relay::RelayConfig;
use crate::harness::{HttpConn, Pair, PairBuilder, Upstream};
use std::net::SocketAddr;
use std::time::Duration;

/// The server logs why it refused the client once per address and minute (however many
/// handshakes the client retries), and counts every refusal by reason.
fn assert_refusal_reported(pair: &Pair, metrics: SocketAddr, reason: &str, words: &str) {
    let line = pair
        .server
        .wait_for_log("refused client 127.0.0.1:", Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(line.contains(words), "the log names the reason: {line}");
    assert_eq!(
        pair.server.count_log("refused client"),
        1,
        "one line per address and minute"
    );
    let mut c = HttpConn::connect(metrics).expect("connect to the server's metrics");
    let text = c.get("/metrics").expect("GET /metrics").body_str();
    let sample = format!("ptproxy_tls_refusals_total{{reason=\"{reason}\"}} ");
    let count: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix(&sample))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {sample:?} in\n{text}"));
    assert!(count >= 2, "every refused handshake is counted: {count}");
}

/// Requests through a client that must not get a session: all 503, nothing
/// reaches the upstream, the server never establishes a session.
fn assert_refused(pair: &Pair, up: &Upstream) {
    for i in 0..2 {
        let mut c = pair.conn();
        c.set_timeout(Duration::from_secs(15));
        let r = c
            .get("/hello")
            .unwrap_or_else(|e| panic!("request {i}: {e}"));
        assert_eq!(r.status(), 503, "request {i} must not get through: {r}");
        assert!(r.body_str().starts_with("ptproxy client:"), "{r}");
    }
    assert_eq!(up.request_count(), 0, "a request reached the upstream");
    assert_eq!(
        pair.server.count_log(LOG_SESSION_UP),
        0,
        "server established a session with an unauthorized client"
    );
    let s = pair.relay().stats();
    assert!(
        s.to_server.received > 0 && s.to_client.received > 0,
        "no handshake traffic at all, so nothing was tested: {s:?}"
    );
    assert_eq!(
        pair.client.count_log(LOG_SESSION_UP),
        0,
        "client considered a session established although the server refuses it"
    );
}

#[test]
fn client_with_certificate_from_other_ca_is_refused() {
    let up = Upstream::start();
    let (metrics, metrics_json) = metrics_addr();
    let pair = PairBuilder::new(up.addr())
        .name("other_ca")
        .server("metrics.listen", &metrics_json)
        .client_identity("other-client")
        .client("http.session_wait_ms", "1000")
        .relay(RelayConfig::clean())
        .expect_session(false)
        .start();
    assert_refused(&pair, &up);
    assert_refusal_reported(&pair, metrics, "unknown_ca", "not signed by tls.ca");
}

#[test]
fn client_name_not_in_allowed_client_names_is_refused() {
    let up = Upstream::start();
    let (metrics, metrics_json) = metrics_addr();
    let pair = PairBuilder::new(up.addr())
        .name("stranger")
        .server("metrics.listen", &metrics_json)
        .server("tls.allowed_client_names", r#"["client.test"]"#)
        .client_identity("client2")
        .client("http.session_wait_ms", "1000")
        .relay(RelayConfig::clean())
        .expect_session(false)
        .start();
    assert_refused(&pair, &up);
    assert_refusal_reported(
        &pair,
        metrics,
        "name_not_allowed",
        "not in tls.allowed_client_names",
    );
}

#[test]
fn client_name_in_allowed_client_names_is_accepted() {
    let up = Upstream::start();
    let pair = PairBuilder::new(up.addr())
        .name("allowed")
        .server("tls.allowed_client_names", r#"["client.test"]"#)
        .start();
    let r = pair.get("/hello");
    assert_eq!((r.status(), r.body.as_slice()), (200, &b"hello"[..]), "{r}");
    assert_eq!(pair.server.count_log(LOG_SESSION_UP), 1);
}
