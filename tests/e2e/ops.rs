//! Operations features: the `/metrics` + `/health` endpoint, graceful stop on SIGTERM, config
//! reload on SIGHUP, SO_REUSEPORT on both roles' sockets when asked (`reuse_port`, `--cpu N`) and
//! "address in use" when not.
//!
//! Helpers that only these tests need (signals, a slow upstream, hand-made configs) live here
//! rather than in the shared harness; the operator endpoint helpers are in `harness::admin`.

use crate::harness::admin::{admin_get, health, metrics_addr, scrape, wait_health, Scrape};
use crate::harness::json::Json;
use crate::harness::pair::{LOG_HTTP_LISTEN, LOG_QUIC_LISTEN, LOG_SESSION_UP, READY_TIMEOUT};
use crate::harness::proxy::{Proxy, Role};
use crate::harness::relay::RelayConfig;
use crate::harness::tmp::TempDir;
use crate::harness::{
    free_tcp_port, free_udp_port, http, poll_until, HttpConn, PairBuilder, Upstream,
};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

const LOG_ADMIN_LISTEN: &str = "serving /metrics and /health on";

// ---------------------------------------------------------------------------------------------
// helpers
// ---------------------------------------------------------------------------------------------

/// Polls `/metrics` until `name{labels}` equals `want`; returns the last scrape either way.
fn wait_metric(addr: SocketAddr, name: &str, labels: &str, want: f64, timeout: Duration) -> Scrape {
    let mut last = None;
    let hit = poll_until(timeout, Duration::from_millis(50), || {
        let s = scrape(addr);
        let ok = s.value(name, labels) == Some(want);
        last = Some(s);
        ok.then_some(())
    });
    let s = last.unwrap();
    if hit.is_none() {
        eprintln!(
            "[ops] {name}{labels} did not reach {want} within {timeout:?} on {addr} (now {:?})",
            s.value(name, labels)
        );
    }
    s
}

/// Sends `sig` (e.g. "TERM") to the current process of `p` (and to nothing else).
#[track_caller]
pub(crate) fn signal(p: &Proxy, sig: &str) {
    let pid = p
        .pid()
        .unwrap_or_else(|| panic!("{}: not running, cannot send SIG{sig}", p.name()));
    let st = Command::new("kill")
        .args([format!("-{sig}"), pid.to_string()])
        .status()
        .expect("run kill");
    assert!(st.success(), "kill -{sig} {pid} failed: {st:?}");
}

/// Waits up to `timeout` for the process of `p` to exit.
pub(crate) fn wait_exit(p: &Proxy, timeout: Duration) -> Option<ExitStatus> {
    poll_until(timeout, Duration::from_millis(20), || p.exit_status())
}

/// Waits for a line with index >= `mark` containing `needle`, ignoring ASCII case.
fn wait_log_nocase(
    p: &Proxy,
    mark: usize,
    needle: &str,
    timeout: Duration,
) -> Result<String, String> {
    let n = needle.to_ascii_lowercase();
    poll_until(timeout, Duration::from_millis(20), || {
        p.log_lines()
            .into_iter()
            .skip(mark)
            .find(|l| l.to_ascii_lowercase().contains(&n))
    })
    .ok_or_else(|| {
        format!(
            "{}: no log line containing {needle:?} (any case) within {timeout:?}",
            p.name()
        )
    })
}

/// env_logger's default format: `[<timestamp> DEBUG <module>] message`.
fn is_debug_line(l: &str) -> bool {
    l.starts_with('[') && l.split(']').next().is_some_and(|h| h.contains(" DEBUG "))
        || l.starts_with("[DEBUG")
}

fn abs(p: std::path::PathBuf) -> Json {
    Json::str(p.to_str().expect("UTF-8 path"))
}

/// A client config like PairBuilder's.
fn client_json(listen: SocketAddr, peer: SocketAddr) -> Json {
    let mut c = Json::object();
    c.set("listen", Json::array(vec![Json::str(listen.to_string())]));
    c.set("peer.address", Json::str(peer.to_string()));
    c.set("peer.server_name", Json::str("localhost"));
    c.set("tls.ca", abs(crate::harness::pki("ca.pem")));
    c.set("tls.cert", abs(crate::harness::pki("client.pem")));
    c.set("tls.key", abs(crate::harness::pki("client.key")));
    c
}

/// A server config like PairBuilder's.
fn server_json(listen: SocketAddr, upstream: SocketAddr) -> Json {
    let mut s = Json::object();
    s.set("listen", Json::str(listen.to_string()));
    s.set("upstream.address", Json::str(upstream.to_string()));
    s.set("tls.ca", abs(crate::harness::pki("ca.pem")));
    s.set("tls.cert", abs(crate::harness::pki("server.pem")));
    s.set("tls.key", abs(crate::harness::pki("server.key")));
    s
}

pub(crate) fn write_json(path: &Path, j: &Json) {
    std::fs::write(path, j.pretty()).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

/// An upstream that answers every request `delay` after its head arrived, with
/// `200` and body `slow <target>\n`, then closes. Counts the heads it received.
struct SlowUpstream {
    addr: SocketAddr,
    heads: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    acceptor: Option<JoinHandle<()>>,
}

impl SlowUpstream {
    fn start(delay: Duration) -> SlowUpstream {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind slow upstream");
        let addr = l.local_addr().unwrap();
        let heads = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (h, s) = (heads.clone(), stop.clone());
        let acceptor = std::thread::spawn(move || {
            for conn in l.incoming() {
                if s.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(conn) = conn else { continue };
                let h = h.clone();
                std::thread::spawn(move || slow_serve(conn, &h, delay));
            }
        });
        SlowUpstream {
            addr,
            heads,
            stop,
            acceptor: Some(acceptor),
        }
    }

    fn heads(&self) -> usize {
        self.heads.load(Ordering::SeqCst)
    }
}

fn slow_serve(mut conn: TcpStream, heads: &AtomicUsize, delay: Duration) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(30)));
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        match conn.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    let head = String::from_utf8_lossy(&buf).into_owned();
    let target = head.split(' ').nth(1).unwrap_or("?").to_string();
    heads.fetch_add(1, Ordering::SeqCst);
    std::thread::sleep(delay);
    let body = format!("slow {target}\n");
    let resp = format!(
        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = conn.write_all(resp.as_bytes());
    let _ = conn.flush();
}

impl Drop for SlowUpstream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(t) = self.acceptor.take() {
            let _ = t.join();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// 1. /metrics on both sides
// ---------------------------------------------------------------------------------------------

#[test]
fn metrics_count_requests_by_class_on_both_sides() {
    let up = Upstream::start();
    let (cm, cm_json) = metrics_addr();
    let (sm, sm_json) = metrics_addr();
    let pair = PairBuilder::new(up.addr())
        .name("ops_metrics")
        .client("metrics.listen", &cm_json)
        .server("metrics.listen", &sm_json)
        .start();
    pair.client.expect_log(LOG_ADMIN_LISTEN, READY_TIMEOUT);
    pair.server.expect_log(LOG_ADMIN_LISTEN, READY_TIMEOUT);

    assert_eq!(health(cm), Ok(200), "client /health with the session up");
    assert_eq!(health(sm), Ok(200), "server /health with a session up");

    // 20 requests on two keep-alive connections: 12 x 200, 8 x 404
    let mut conns = [pair.conn(), pair.conn()];
    let (mut ok, mut nf) = (0u32, 0u32);
    for i in 0..20usize {
        let c = &mut conns[i % 2];
        if i % 5 == 1 || i % 5 == 3 {
            let r = c
                .get("/status/404")
                .unwrap_or_else(|e| panic!("request {i}: {e}"));
            assert_eq!(r.status(), 404, "request {i}: {r}");
            nf += 1;
        } else {
            let r = c
                .get("/hello")
                .unwrap_or_else(|e| panic!("request {i}: {e}"));
            assert_eq!(
                (r.status(), r.body_str().as_str()),
                (200, "hello"),
                "request {i}: {r}"
            );
            ok += 1;
        }
        if i == 9 {
            // mid-traffic scrape: the counters already hold the first 10 requests
            for (side, addr) in [("client", cm), ("server", sm)] {
                let s = wait_metric(
                    addr,
                    "ptproxy_request_duration_seconds_count",
                    "",
                    10.0,
                    Duration::from_secs(2),
                );
                assert_eq!(
                    (
                        s.get("ptproxy_requests_total", "{code=\"2xx\"}"),
                        s.get("ptproxy_requests_total", "{code=\"4xx\"}"),
                        s.get("ptproxy_request_duration_seconds_count", ""),
                    ),
                    (ok as f64, nf as f64, 10.0),
                    "{side} after 10 requests:\n{}",
                    s.text
                );
            }
        }
    }
    assert_eq!((ok, nf), (12, 8));
    assert_eq!(up.request_count(), 20);

    for (side, addr) in [("client", cm), ("server", sm)] {
        let s = wait_metric(
            addr,
            "ptproxy_request_duration_seconds_count",
            "",
            20.0,
            Duration::from_secs(2),
        );
        let t = &s.text;
        // build info
        let (labels, v) = s.single("ptproxy_build_info");
        assert_eq!(v, 1.0, "{side}: build_info value\n{t}");
        assert!(
            labels.contains(&format!("version=\"{}\"", env!("CARGO_PKG_VERSION")))
                && labels.contains(&format!("role=\"{side}\"")),
            "{side}: build_info labels {labels}"
        );
        // requests by class
        for (class, want) in [
            ("1xx", 0.0),
            ("2xx", 12.0),
            ("3xx", 0.0),
            ("4xx", 8.0),
            ("5xx", 0.0),
        ] {
            assert_eq!(
                s.get("ptproxy_requests_total", &format!("{{code=\"{class}\"}}")),
                want,
                "{side}: requests_total{{code={class}}}\n{t}"
            );
        }
        // histogram: count, +Inf bucket, monotone buckets, positive sum
        assert_eq!(
            s.get("ptproxy_request_duration_seconds_count", ""),
            20.0,
            "{side}\n{t}"
        );
        assert_eq!(
            s.get("ptproxy_request_duration_seconds_bucket", "{le=\"+Inf\"}"),
            20.0,
            "{side}\n{t}"
        );
        let buckets = s.samples("ptproxy_request_duration_seconds_bucket");
        assert!(buckets.len() >= 2, "{side}: too few buckets\n{t}");
        assert!(
            buckets.windows(2).all(|w| w[0].1 <= w[1].1),
            "{side}: buckets not cumulative: {buckets:?}"
        );
        let sum = s.get("ptproxy_request_duration_seconds_sum", "");
        assert!(
            sum > 0.0 && sum < 20.0 * 5.0,
            "{side}: duration sum {sum}\n{t}"
        );
        // session and path
        assert_eq!(s.get("ptproxy_session_up", ""), 1.0, "{side}\n{t}");
        assert!(
            s.get("ptproxy_session_uptime_seconds", "") > 0.0 || side == "server",
            "{side}: uptime\n{t}"
        );
        assert_eq!(
            s.get("ptproxy_session_reconnects_total", ""),
            0.0,
            "{side}\n{t}"
        );
        let (_, rtt) = s.single("ptproxy_rtt_seconds");
        assert!(rtt > 0.0 && rtt < 1.0, "{side}: rtt {rtt}\n{t}");
        let (_, min_rtt) = s.single("ptproxy_rtt_min_seconds");
        assert!(
            min_rtt > 0.0 && min_rtt <= rtt + 1e-6,
            "{side}: min rtt {min_rtt} > rtt {rtt}\n{t}"
        );
        s.single("ptproxy_rtt_variance_seconds");
        let (_, cwnd) = s.single("ptproxy_congestion_window_bytes");
        assert!(cwnd >= 1200.0, "{side}: cwnd {cwnd}\n{t}");
        // transport counters
        for name in [
            "ptproxy_sent_packets_total",
            "ptproxy_received_packets_total",
            "ptproxy_sent_bytes_total",
            "ptproxy_received_bytes_total",
        ] {
            assert!(s.get(name, "") > 0.0, "{side}: {name} is 0\n{t}");
        }
        for name in [
            "ptproxy_lost_packets_total",
            "ptproxy_retransmitted_packets_total",
            "ptproxy_lost_bytes_total",
            "ptproxy_duplicated_datagrams_total",
        ] {
            let v = s.get(name, "");
            assert!(v >= 0.0 && v.is_finite(), "{side}: {name} = {v}\n{t}");
        }
        assert!(
            s.get("ptproxy_sent_bytes_total", "") >= s.get("ptproxy_sent_packets_total", ""),
            "{side}: fewer bytes than packets sent\n{t}"
        );
        assert_eq!(
            s.get("ptproxy_streams_open", ""),
            0.0,
            "{side}: streams open when idle\n{t}"
        );
    }

    // role-specific gauges
    let s = wait_metric(
        cm,
        "ptproxy_client_connections_open",
        "",
        2.0,
        Duration::from_secs(2),
    );
    assert_eq!(
        s.get("ptproxy_client_connections_open", ""),
        2.0,
        "client: two keep-alive connections are open\n{}",
        s.text
    );
    assert!(
        s.value("ptproxy_upstream_connections_open", "").is_none(),
        "client reports upstream gauges"
    );
    let s = scrape(sm);
    let open = s.get("ptproxy_upstream_connections_open", "");
    let idle = s.get("ptproxy_upstream_pool_idle", "");
    assert!(
        open >= 1.0 && open <= up.connection_count() as f64 && idle == open,
        "server: upstream open {open}, idle {idle}, mock upstream saw {} connection(s)\n{}",
        up.connection_count(),
        s.text
    );
    assert!(
        s.value("ptproxy_client_connections_open", "").is_none(),
        "server reports client gauge"
    );
    // the server reports the client's certificate-less path label too
    let (peer, _) = s.single("ptproxy_rtt_seconds");
    assert!(peer.starts_with("{peer=\""), "server rtt label {peer}");

    // the client's idle keep-alive connections are counted down when they close
    drop(conns);
    let c = wait_metric(
        cm,
        "ptproxy_client_connections_open",
        "",
        0.0,
        Duration::from_secs(3),
    );
    assert_eq!(
        c.get("ptproxy_client_connections_open", ""),
        0.0,
        "client connections after the test closed both\n{}",
        c.text
    );

    // a request in flight shows as an open stream on both sides
    let mut stall = pair.conn();
    stall
        .send(&http::build_request("GET", "/stall", &[], None))
        .unwrap();
    let seen = poll_until(Duration::from_secs(5), Duration::from_millis(20), || {
        up.heads()
            .iter()
            .any(|h| h.target() == "/stall")
            .then_some(())
    });
    assert!(seen.is_some(), "/stall never reached the upstream");
    let c = wait_metric(cm, "ptproxy_streams_open", "", 1.0, Duration::from_secs(2));
    assert_eq!(
        c.get("ptproxy_streams_open", ""),
        1.0,
        "client streams_open with /stall in flight\n{}",
        c.text
    );
    assert_eq!(
        c.get("ptproxy_client_connections_open", ""),
        1.0,
        "client connections with /stall\n{}",
        c.text
    );
    let s = wait_metric(sm, "ptproxy_streams_open", "", 1.0, Duration::from_secs(2));
    assert_eq!(
        s.get("ptproxy_streams_open", ""),
        1.0,
        "server streams_open with /stall in flight\n{}",
        s.text
    );
    assert!(
        s.get("ptproxy_upstream_pool_idle", "") < s.get("ptproxy_upstream_connections_open", ""),
        "server: the /stall upstream connection is not idle\n{}",
        s.text
    );

    // (a client that closes while its request is in flight may be half-closing and still get
    // the response, so /stall's connection stays counted: it is closed with the test)
    drop(stall);

    // the endpoint itself
    let (st, _, _) = admin_get(cm, "/nope").expect("GET /nope");
    assert_eq!(st, 404, "unknown admin path");
}

// ---------------------------------------------------------------------------------------------
// 2. loss counters
// ---------------------------------------------------------------------------------------------

#[test]
fn metrics_count_lost_and_retransmitted_packets_over_a_lossy_link() {
    let up = Upstream::start();
    let (cm, cm_json) = metrics_addr();
    let (sm, sm_json) = metrics_addr();
    let pair = PairBuilder::new(up.addr())
        .name("ops_lossy_metrics")
        .client("metrics.listen", &cm_json)
        .server("metrics.listen", &sm_json)
        .relay(RelayConfig::lossy(
            0.05,
            Duration::from_millis(5),
            0x0B5_105,
        ))
        .start();
    pair.client.expect_log(LOG_ADMIN_LISTEN, READY_TIMEOUT);
    pair.server.expect_log(LOG_ADMIN_LISTEN, READY_TIMEOUT);
    let mut c = pair.conn();
    c.set_deadline(Duration::from_secs(120));
    let n = 2 * 1024 * 1024;
    let (head, got) = c
        .download_pattern(&format!("/bytes/{n}"))
        .expect("2 MB download over the lossy link");
    assert_eq!((head.status, got), (200, n as u64));
    for i in 0..50 {
        let r = c
            .post(
                "/echo",
                format!("lossy ops request {i}").repeat(20).as_bytes(),
            )
            .unwrap_or_else(|e| panic!("request {i}: {e}"));
        assert_eq!(r.status(), 200, "request {i}: {r}");
    }
    let relay = pair.relay().stats();
    assert!(
        relay.to_client.dropped > 0,
        "the relay dropped nothing towards the client: {relay:?}"
    );

    let s = scrape(sm);
    let c_s = scrape(cm);
    let lost = s.get("ptproxy_lost_packets_total", "");
    let retrans = s.get("ptproxy_retransmitted_packets_total", "");
    let lost_bytes = s.get("ptproxy_lost_bytes_total", "");
    eprintln!(
        "relay {relay:?}\nserver lost {lost} retrans {retrans} lost_bytes {lost_bytes}; client lost {} retrans {}",
        c_s.get("ptproxy_lost_packets_total", ""),
        c_s.get("ptproxy_retransmitted_packets_total", "")
    );
    assert!(
        lost > 0.0,
        "server (the sender of 2 MB) counted no lost packets; relay {relay:?}\n{}",
        s.text
    );
    assert!(
        retrans > 0.0,
        "server counted no retransmitted packets; relay {relay:?}\n{}",
        s.text
    );
    assert!(lost_bytes > 0.0, "server counted no lost bytes\n{}", s.text);
    // Under load the relay may hold a packet past quiche's loss threshold: declared lost,
    // acknowledged later. Those are counted apart and are not losses of the link.
    let spurious = s.get("ptproxy_spurious_lost_packets_total", "");
    assert!(
        lost - spurious <= relay.to_client.dropped as f64 + 1.0,
        "server declared more packets lost ({lost}, {spurious} of them spurious) than the relay dropped towards the client ({})",
        relay.to_client.dropped
    );
    assert!(
        s.get("ptproxy_sent_bytes_total", "") >= n as f64,
        "server sent fewer bytes than the 2 MB body\n{}",
        s.text
    );
    assert_eq!(
        s.get("ptproxy_requests_total", "{code=\"2xx\"}"),
        51.0,
        "{}",
        s.text
    );
}

// ---------------------------------------------------------------------------------------------
// 3. /health follows the session
// ---------------------------------------------------------------------------------------------

#[test]
fn health_flips_with_the_session_and_reconnects_are_counted() {
    let up = Upstream::start();
    let (cm, cm_json) = metrics_addr();
    let (sm, sm_json) = metrics_addr();
    let mut pair = PairBuilder::new(up.addr())
        .name("ops_health")
        .client("metrics.listen", &cm_json)
        .server("metrics.listen", &sm_json)
        .both("transport.idle_timeout_ms", "1000")
        .both("transport.keepalive_interval_ms", "300")
        .start();
    pair.client.expect_log(LOG_ADMIN_LISTEN, READY_TIMEOUT);
    pair.server.expect_log(LOG_ADMIN_LISTEN, READY_TIMEOUT);
    assert_eq!(health(cm), Ok(200), "client /health with the pair up");
    assert_eq!(health(sm), Ok(200), "server /health with the pair up");
    let s = scrape(cm);
    assert_eq!(
        s.get("ptproxy_session_reconnects_total", ""),
        0.0,
        "{}",
        s.text
    );
    assert_eq!(
        s.single("ptproxy_session_last_disconnect_info").0,
        "{reason=\"none\"}",
        "no disconnect yet\n{}",
        s.text
    );

    pair.server.kill();
    let took = wait_health(cm, 503, Duration::from_secs(5)).unwrap_or_else(|e| panic!("{e}"));
    eprintln!("client /health 503 {took:?} after the server was killed");
    let s = scrape(cm);
    assert_eq!(
        s.get("ptproxy_session_up", ""),
        0.0,
        "session_up with the server down\n{}",
        s.text
    );
    assert_eq!(
        s.get("ptproxy_session_uptime_seconds", ""),
        0.0,
        "uptime with the server down\n{}",
        s.text
    );

    pair.server.start();
    pair.server.expect_log(LOG_QUIC_LISTEN, READY_TIMEOUT);
    let took = wait_health(cm, 200, Duration::from_secs(10)).unwrap_or_else(|e| panic!("{e}"));
    eprintln!("client /health 200 {took:?} after the server restarted");
    wait_health(sm, 200, Duration::from_secs(5)).unwrap_or_else(|e| panic!("server: {e}"));
    let r = pair.get("/hello");
    assert_eq!(r.status(), 200, "{r}");

    let s = scrape(cm);
    assert_eq!(s.get("ptproxy_session_up", ""), 1.0, "{}", s.text);
    assert_eq!(
        s.get("ptproxy_session_reconnects_total", ""),
        1.0,
        "one reconnect after one server restart\n{}",
        s.text
    );
    let (labels, v) = s.single("ptproxy_session_last_disconnect_info");
    assert_eq!(v, 1.0);
    let reason = labels
        .strip_prefix("{reason=\"")
        .and_then(|r| r.strip_suffix("\"}"))
        .unwrap_or_else(|| panic!("last_disconnect_info labels {labels}"));
    assert!(
        !reason.is_empty() && reason != "none",
        "last_disconnect_info has no reason: {labels}"
    );
    eprintln!("last disconnect reason: {reason}");

    // the server's /health: 503 once its only client is gone
    pair.client.kill();
    let took =
        wait_health(sm, 503, Duration::from_secs(5)).unwrap_or_else(|e| panic!("server: {e}"));
    eprintln!("server /health 503 {took:?} after the client was killed");
    let s = scrape(sm);
    assert_eq!(
        s.get("ptproxy_session_up", ""),
        0.0,
        "server session_up without clients\n{}",
        s.text
    );
}

// ---------------------------------------------------------------------------------------------
// 4. SIGTERM: graceful stop with requests in flight
// ---------------------------------------------------------------------------------------------

fn sigterm_with_50_slow_requests_in_flight(side: Role) {
    const N: usize = 50;
    let up = SlowUpstream::start(Duration::from_secs(1));
    let pair = PairBuilder::new(up.addr)
        .name(&format!("ops_sigterm_{}", side.as_str()))
        .both("http.drain_timeout_ms", "5000")
        .start();
    let addr = pair.http_addr;
    let workers: Vec<_> = (0..N)
        .map(|i| {
            std::thread::spawn(move || -> Result<(u16, String), String> {
                let mut c = HttpConn::connect_timeout(addr, Duration::from_secs(15))
                    .map_err(|e| format!("connect: {e}"))?;
                c.set_deadline(Duration::from_secs(15));
                let r = c.get(&format!("/slow/{i}")).map_err(|e| e.to_string())?;
                Ok((r.status(), r.body_str()))
            })
        })
        .collect();
    let all_in = poll_until(Duration::from_secs(10), Duration::from_millis(5), || {
        (up.heads() >= N).then_some(())
    });
    assert!(
        all_in.is_some(),
        "the upstream received only {} of {N} requests",
        up.heads()
    );

    let target = match side {
        Role::Client => &pair.client,
        Role::Server => &pair.server,
    };
    let mark = target.log_len();
    let t = Instant::now();
    signal(target, "TERM");
    target
        .wait_for_log_since(mark, "stopping", Duration::from_secs(2))
        .unwrap_or_else(|e| panic!("{e}"));
    if side == Role::Client {
        // no new connections once stopping (the listener closes right after that log line)
        let refused = poll_until(Duration::from_secs(1), Duration::from_millis(10), || {
            TcpStream::connect_timeout(&addr, Duration::from_millis(500))
                .is_err()
                .then_some(())
        });
        assert!(
            refused.is_some(),
            "the stopping client still accepts connections on {addr}"
        );
    }

    let results: Vec<_> = workers.into_iter().map(|w| w.join().unwrap()).collect();
    let answered = t.elapsed();
    let bad: Vec<String> = results
        .iter()
        .enumerate()
        .filter_map(|(i, r)| match r {
            Ok((200, b)) if *b == format!("slow /slow/{i}\n") => None,
            other => Some(format!("request {i}: {other:?}")),
        })
        .collect();
    assert!(
        bad.is_empty(),
        "{} of {N} requests in flight were not answered 200 after SIGTERM to the {}: {bad:#?}",
        bad.len(),
        side.as_str()
    );
    let st = wait_exit(target, Duration::from_secs(10));
    let exited = t.elapsed();
    eprintln!(
        "{}: all {N} answered {answered:?} after SIGTERM, exit {st:?} after {exited:?}",
        side.as_str()
    );
    let st =
        st.unwrap_or_else(|| panic!("the {} did not exit within 10 s of SIGTERM", side.as_str()));
    assert!(
        st.success(),
        "the {} exited with {st:?} after SIGTERM",
        side.as_str()
    );
    assert!(
        exited <= Duration::from_millis(6000),
        "the {} took {exited:?} to exit (drain deadline 5 s)",
        side.as_str()
    );
    assert_eq!(
        up.heads(),
        N,
        "requests reached the upstream more than once"
    );
}

#[test]
fn sigterm_to_client_finishes_50_requests_in_flight_then_exits_0() {
    sigterm_with_50_slow_requests_in_flight(Role::Client);
}

#[test]
fn sigterm_to_server_finishes_50_requests_in_flight_then_exits_0() {
    sigterm_with_50_slow_requests_in_flight(Role::Server);
}

/// A request's status, body and Proxy-Status.
type Answered = (u16, String, String);

/// Sends `n` requests on their own connections in threads; each returns (status, body,
/// Proxy-Status).
fn requests_in_flight(
    addr: SocketAddr,
    n: usize,
    method: &'static str,
) -> Vec<JoinHandle<Result<Answered, String>>> {
    (0..n)
        .map(|i| {
            std::thread::spawn(move || {
                let mut c = HttpConn::connect_timeout(addr, Duration::from_secs(5))
                    .map_err(|e| format!("connect: {e}"))?;
                c.set_deadline(Duration::from_secs(30));
                let target = format!("/slow/{i}");
                let r = match method {
                    "POST" => c.post(&target, b"payload"),
                    _ => c.get(&target),
                }
                .map_err(|e| e.to_string())?;
                let status = r.header("proxy-status").unwrap_or_default().to_string();
                Ok((r.status(), r.body_str(), status))
            })
        })
        .collect()
}

/// A second SIGTERM makes the server exit at once, but it still closes its sessions: the
/// client learns at once that its requests in flight are lost and answers them 503, instead
/// of waiting for the idle timeout (about 36 s before the fix).
#[test]
fn second_sigterm_to_server_closes_sessions_so_clients_answer_at_once() {
    const N: usize = 4;
    let up = SlowUpstream::start(Duration::from_secs(60));
    let pair = PairBuilder::new(up.addr)
        .name("ops_sigterm_twice_server")
        .client("http.session_wait_ms", "1000")
        .start();
    let workers = requests_in_flight(pair.http_addr, N, "POST");
    let all_in = poll_until(Duration::from_secs(10), Duration::from_millis(5), || {
        (up.heads() >= N).then_some(())
    });
    assert!(all_in.is_some(), "upstream got {} of {N}", up.heads());
    let mark = pair.server.log_len();
    signal(&pair.server, "TERM");
    pair.server
        .wait_for_log_since(mark, "stopping", Duration::from_secs(2))
        .unwrap_or_else(|e| panic!("{e}"));
    let t = Instant::now();
    signal(&pair.server, "TERM");
    let st = wait_exit(&pair.server, Duration::from_secs(5)).expect("server exits at once");
    eprintln!("server exited {st:?} after {:?}", t.elapsed());
    for w in workers {
        let (status, body, proxy_status) = w.join().expect("worker").expect("answer");
        assert_eq!(status, 503, "{body}");
        assert!(body.contains("lost"), "{body}");
        assert!(proxy_status.contains("ptproxy-client"), "{proxy_status}");
    }
    let answered = t.elapsed();
    assert!(
        answered < Duration::from_secs(5),
        "requests in flight were answered {answered:?} after the fast exit (idle timeout: 30 s)"
    );
    pair.client
        .wait_for_log("session lost: closed by peer", Duration::from_secs(1))
        .unwrap_or_else(|e| panic!("the client saw the server's CONNECTION_CLOSE: {e}"));
}

/// At the client's drain deadline, requests whose response has not begun get a 503 with
/// Proxy-Status (they were closed silently before), and the client exits.
#[test]
fn client_drain_deadline_answers_requests_in_flight_503() {
    const N: usize = 4;
    let up = SlowUpstream::start(Duration::from_secs(60));
    let pair = PairBuilder::new(up.addr)
        .name("ops_drain_deadline_client")
        .client("http.drain_timeout_ms", "1000")
        .start();
    let workers = requests_in_flight(pair.http_addr, N, "GET");
    let all_in = poll_until(Duration::from_secs(10), Duration::from_millis(5), || {
        (up.heads() >= N).then_some(())
    });
    assert!(all_in.is_some(), "upstream got {} of {N}", up.heads());
    let t = Instant::now();
    signal(&pair.client, "TERM");
    for w in workers {
        let (status, body, proxy_status) = w.join().expect("worker").expect("answer");
        assert_eq!(status, 503, "{body}");
        assert!(body.contains("shutting down"), "{body}");
        assert!(
            proxy_status.starts_with("ptproxy-client; error=proxy_internal_error"),
            "{proxy_status}"
        );
    }
    let answered = t.elapsed();
    assert!(
        answered >= Duration::from_millis(900) && answered < Duration::from_secs(5),
        "answered {answered:?} after SIGTERM (drain deadline 1 s)"
    );
    let st = wait_exit(&pair.client, Duration::from_secs(5)).expect("client exits");
    assert!(st.success(), "{st:?}");
}

/// A second SIGTERM to the client does the same at once.
#[test]
fn second_sigterm_to_client_answers_requests_in_flight_503_and_exits() {
    const N: usize = 3;
    let up = SlowUpstream::start(Duration::from_secs(60));
    let pair = PairBuilder::new(up.addr)
        .name("ops_sigterm_twice_client")
        .client("http.drain_timeout_ms", "30000")
        .start();
    let workers = requests_in_flight(pair.http_addr, N, "GET");
    let all_in = poll_until(Duration::from_secs(10), Duration::from_millis(5), || {
        (up.heads() >= N).then_some(())
    });
    assert!(all_in.is_some(), "upstream got {} of {N}", up.heads());
    let mark = pair.client.log_len();
    signal(&pair.client, "TERM");
    pair.client
        .wait_for_log_since(mark, "stopping", Duration::from_secs(2))
        .unwrap_or_else(|e| panic!("{e}"));
    let t = Instant::now();
    signal(&pair.client, "TERM");
    for w in workers {
        let (status, body, _) = w.join().expect("worker").expect("answer");
        assert_eq!(status, 503, "{body}");
        assert!(body.contains("shutting down"), "{body}");
    }
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
    wait_exit(&pair.client, Duration::from_secs(5)).expect("client exits");
}

// ---------------------------------------------------------------------------------------------
// 5. SO_REUSEPORT
// ---------------------------------------------------------------------------------------------

#[test]
fn two_servers_share_one_udp_address_with_so_reuseport() {
    let up = Upstream::start();
    let dir = TempDir::new("ops_reuseport_udp");
    let quic: SocketAddr = format!("127.0.0.1:{}", free_udp_port()).parse().unwrap();
    let mut scfg = server_json(quic, up.addr());
    scfg.set("reuse_port", Json::bool(true));
    let (pa, pb) = (dir.join("server-a.json"), dir.join("server-b.json"));
    write_json(&pa, &scfg);
    write_json(&pb, &scfg);
    let server_a = Proxy::spawn("server-a", Role::Server, &pa);
    server_a.expect_log(LOG_QUIC_LISTEN, READY_TIMEOUT);
    let server_b = Proxy::spawn("server-b", Role::Server, &pb);
    server_b
        .wait_for_log(LOG_QUIC_LISTEN, READY_TIMEOUT)
        .unwrap_or_else(|e| panic!("a second server on the same UDP address {quic}: {e}"));

    let mut clients: Vec<(Proxy, SocketAddr)> = Vec::new();
    while clients.len() < 16 {
        let i = clients.len();
        let listen: SocketAddr = format!("127.0.0.1:{}", free_tcp_port()).parse().unwrap();
        let path = dir.join(&format!("client-{i}.json"));
        write_json(&path, &client_json(listen, quic));
        let c = Proxy::spawn(&format!("client-{i}"), Role::Client, &path);
        c.expect_log(LOG_HTTP_LISTEN, READY_TIMEOUT);
        c.expect_log(LOG_SESSION_UP, READY_TIMEOUT);
        clients.push((c, listen));
        if clients.len() >= 6
            && server_a.count_log(LOG_SESSION_UP) > 0
            && server_b.count_log(LOG_SESSION_UP) > 0
        {
            break;
        }
    }
    // the servers log their side of the handshake in the same loop turn; give the line a moment
    let total = || server_a.count_log(LOG_SESSION_UP) + server_b.count_log(LOG_SESSION_UP);
    poll_until(Duration::from_secs(2), Duration::from_millis(20), || {
        (total() >= clients.len()).then_some(())
    });
    let (a, b) = (
        server_a.count_log(LOG_SESSION_UP),
        server_b.count_log(LOG_SESSION_UP),
    );
    eprintln!(
        "{} clients: server A has {a} session(s), server B {b}",
        clients.len()
    );
    assert!(
        a > 0 && b > 0,
        "with {} clients, server A has {a} session(s) and server B {b}: both must serve",
        clients.len()
    );
    assert_eq!(a + b, clients.len(), "one session per client in all");
    for (c, listen) in &clients {
        let r = http::get(*listen, "/hello")
            .unwrap_or_else(|e| panic!("{}: GET /hello: {e}", c.name()));
        assert_eq!(
            (r.status(), r.body_str().as_str()),
            (200, "hello"),
            "{}: {r}",
            c.name()
        );
    }
    assert!(server_a.is_running() && server_b.is_running());
    assert_eq!(up.request_count(), clients.len());
}

#[test]
fn two_clients_share_one_tcp_listen_address_with_so_reuseport() {
    let up = Upstream::start();
    let pair = PairBuilder::new(up.addr())
        .name("ops_reuseport_tcp")
        .client("reuse_port", "true")
        .start();
    let second = Proxy::spawn("client-2", Role::Client, pair.client.config());
    second
        .wait_for_log(LOG_HTTP_LISTEN, READY_TIMEOUT)
        .unwrap_or_else(|e| {
            panic!(
                "a second client on the same TCP address {}: {e}",
                pair.http_addr
            )
        });
    second.expect_log(LOG_SESSION_UP, READY_TIMEOUT);
    // fresh connections are spread over both listeners by the kernel
    let mut n = 0;
    while n < 40 {
        let r = pair.get("/hello");
        assert_eq!(
            (r.status(), r.body_str().as_str()),
            (200, "hello"),
            "request {n}: {r}"
        );
        n += 1;
        if n >= 20 && pair.client.count_log("access ") > 0 && second.count_log("access ") > 0 {
            break;
        }
    }
    // the access line is written after the response: let the last one arrive
    let lines = || pair.client.count_log("access ") + second.count_log("access ");
    poll_until(Duration::from_secs(2), Duration::from_millis(10), || {
        (lines() >= n).then_some(())
    });
    let (a, b) = (
        pair.client.count_log("access "),
        second.count_log("access "),
    );
    eprintln!("{n} connections: first client served {a}, second {b}");
    assert_eq!(a + b, n, "every request has one access line");
    assert!(
        a > 0 && b > 0,
        "{n} connections all went to one client (first {a}, second {b})"
    );
    assert!(pair.client.is_running() && second.is_running());
}

/// Waits (10 s at most) for `p` to exit and for its error line containing `needle` (the log
/// readers may lag behind the exit); its exit status and log.
fn exit_and_log(p: &Proxy, needle: &str) -> (ExitStatus, String) {
    let st = poll_until(Duration::from_secs(10), Duration::from_millis(20), || {
        p.exit_status()
    });
    let _ = p.wait_for_log(needle, Duration::from_secs(5));
    let log = p.log_lines().join("\n");
    match st {
        Some(st) => (st, log),
        None => panic!("{} still runs 10 s after start:\n{log}", p.name()),
    }
}

#[test]
fn a_second_client_on_the_same_address_without_reuse_port_fails_naming_it() {
    let up = Upstream::start();
    let pair = PairBuilder::new(up.addr())
        .name("ops_addr_in_use_tcp")
        .start();
    let second = Proxy::spawn("client-2", Role::Client, pair.client.config());
    let (st, log) = exit_and_log(&second, "address in use");
    assert!(
        !st.success(),
        "the second client exited with {st:?}:\n{log}"
    );
    assert!(
        log.contains("address in use")
            && log.contains(&pair.http_addr.to_string())
            && log.contains("reuse_port"),
        "the error must say `address in use`, name {} and the setting:\n{log}",
        pair.http_addr
    );
    assert_eq!(second.count_log(LOG_HTTP_LISTEN), 0, "{log}");
    // the first one still serves every request
    for i in 0..5 {
        let r = pair.get("/hello");
        assert_eq!(r.status(), 200, "request {i}: {r}");
    }
    assert!(pair.client.is_running());
}

#[test]
fn a_second_server_on_the_same_udp_address_without_reuse_port_fails_naming_it() {
    let up = Upstream::start();
    let pair = PairBuilder::new(up.addr())
        .name("ops_addr_in_use_udp")
        .start();
    let second = Proxy::spawn("server-2", Role::Server, pair.server.config());
    let (st, log) = exit_and_log(&second, "address in use");
    assert!(
        !st.success(),
        "the second server exited with {st:?}:\n{log}"
    );
    assert!(
        log.contains("address in use") && log.contains(&pair.quic_addr.to_string()),
        "the error must say `address in use` and name {}:\n{log}",
        pair.quic_addr
    );
    assert_eq!(second.count_log(LOG_QUIC_LISTEN), 0, "{log}");
    assert_eq!(pair.get("/hello").status(), 200);
}

// ---------------------------------------------------------------------------------------------
// 6. SIGHUP
// ---------------------------------------------------------------------------------------------

/// One normal request (200) and one the client refuses after parsing it (an upgrade to a
/// protocol it does not carry: 501), whose refusal the client logs at debug level.
#[track_caller]
fn witness_requests(addr: SocketAddr) {
    let r = http::get(addr, "/hello").expect("GET /hello");
    assert_eq!(r.status(), 200, "{r}");
    let mut c = HttpConn::connect(addr).expect("connect");
    c.send(b"GET / HTTP/1.1\r\nHost: h.test\r\nConnection: upgrade\r\nUpgrade: IRC/6.9\r\n\r\n")
        .unwrap();
    let r = c.read_response("upgrade").expect("answer to the upgrade");
    assert_eq!(r.status(), 501, "{r}");
}

#[test]
fn sighup_changes_the_log_level_and_reports_fields_that_need_a_restart() {
    let up = Upstream::start();
    let pair = PairBuilder::new(up.addr())
        .name("ops_sighup")
        .client("log_level", "\"info\"")
        .env("RUST_LOG", "") // empty = unset: the config's log_level decides
        .start();
    let path = pair.client.config().to_path_buf();
    let mut cfg = pair.client_config.clone();

    witness_requests(pair.http_addr);
    // a marker request after the witnesses: once its access line is in, any line they
    // caused is in too (one stderr stream, in order)
    let r = pair.get("/hello?after-witnesses");
    assert_eq!(r.status(), 200, "{r}");
    pair.client
        .expect_log("after-witnesses", Duration::from_secs(2));
    let debug: Vec<String> = pair
        .client
        .log_lines()
        .into_iter()
        .filter(|l| is_debug_line(l))
        .collect();
    assert!(
        debug.is_empty(),
        "DEBUG lines at log_level info: {debug:#?}"
    );
    assert!(
        pair.client.log_lines().iter().any(|l| l.contains(" INFO ")),
        "no INFO line: is the log format as expected?"
    );

    // info -> debug
    cfg.set("log_level", Json::str("debug"));
    write_json(&path, &cfg);
    let mark = pair.client.log_len();
    signal(&pair.client, "HUP");
    let line = wait_log_nocase(
        &pair.client,
        mark,
        "log level is now debug",
        Duration::from_secs(5),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    eprintln!("reload: {line}");
    assert!(pair.client.is_running(), "SIGHUP stopped the client");
    let mark = pair.client.log_len();
    witness_requests(pair.http_addr);
    let seen = poll_until(Duration::from_secs(3), Duration::from_millis(20), || {
        pair.client
            .log_lines()
            .into_iter()
            .skip(mark)
            .find(|l| is_debug_line(l))
    });
    assert!(
        seen.is_some(),
        "no DEBUG line after a normal and a refused request at log_level debug; lines since: {:#?}",
        pair.client
            .log_lines()
            .into_iter()
            .skip(mark)
            .collect::<Vec<_>>()
    );

    // listen cannot change without a restart
    let new_listen: SocketAddr = format!("127.0.0.1:{}", free_tcp_port()).parse().unwrap();
    cfg.set(
        "listen",
        Json::array(vec![Json::str(new_listen.to_string())]),
    );
    write_json(&path, &cfg);
    let mark = pair.client.log_len();
    signal(&pair.client, "HUP");
    let line = pair
        .client
        .wait_for_log_since(mark, "need a restart", Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        line.contains("listen"),
        "the warning does not name listen: {line}"
    );
    assert!(line.contains("NOT applied"), "{line}");
    for f in ["peer", "tls", "transport"] {
        assert!(
            !line.contains(&format!(" {f}")),
            "the warning names {f}, which did not change: {line}"
        );
    }
    pair.client
        .wait_for_log_since(mark, "SIGHUP: applied", Duration::from_secs(2))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        pair.client
            .log_lines()
            .iter()
            .skip(mark)
            .filter(|l| l.to_ascii_lowercase().contains("log level is now"))
            .count(),
        0,
        "the level did not change, yet a change was logged"
    );
    // not applied: the old address still serves, the new one is not bound
    let r = pair.get("/hello");
    assert_eq!(r.status(), 200, "{r}");
    assert!(
        TcpStream::connect_timeout(&new_listen, Duration::from_secs(1)).is_err(),
        "the client listens on the new address {new_listen} without a restart"
    );
    assert!(pair.client.is_running());
}

// ---------------------------------------------------------------------------------------------
// 7. --cpu
// ---------------------------------------------------------------------------------------------

/// Spawns `ptproxy --role client --cpu CPU CONFIG` with output to files in `dir`.
fn spawn_with_cpu(dir: &TempDir, cfg: &Path, cpu: &str, tag: &str) -> std::process::Child {
    let out = std::fs::File::create(dir.join(&format!("{tag}.out"))).unwrap();
    let err = std::fs::File::create(dir.join(&format!("{tag}.err"))).unwrap();
    Command::new(crate::harness::ptproxy_bin())
        .args(["--role", "client", "--cpu", cpu])
        .arg(cfg)
        .env("RUST_LOG", "info")
        .env("RUST_LOG_STYLE", "never")
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .expect("spawn ptproxy")
}

/// Kills and reaps a child this test started.
struct ChildGuard(std::process::Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn cpu_option_pins_the_process_and_rejects_a_missing_core() {
    let dir = TempDir::new("ops_cpu");
    let listen: SocketAddr = format!("127.0.0.1:{}", free_tcp_port()).parse().unwrap();
    let peer: SocketAddr = format!("127.0.0.1:{}", free_udp_port()).parse().unwrap();
    let cfg = dir.join("client.json");
    write_json(&cfg, &client_json(listen, peer));

    let mut child = ChildGuard(spawn_with_cpu(&dir, &cfg, "0", "cpu0"));
    let pid = child.0.id();
    let err_path = dir.join("cpu0.err");
    let listening = poll_until(READY_TIMEOUT, Duration::from_millis(20), || {
        if let Ok(Some(st)) = child.0.try_wait() {
            return Some(Err(st));
        }
        let log = std::fs::read_to_string(&err_path).unwrap_or_default();
        log.contains(LOG_HTTP_LISTEN).then_some(Ok(()))
    });
    let log = std::fs::read_to_string(&err_path).unwrap_or_default();
    match listening {
        Some(Ok(())) => {}
        Some(Err(st)) => panic!("--cpu 0: the client exited with {st:?}:\n{log}"),
        None => panic!("--cpu 0: the client did not start listening:\n{log}"),
    }
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read /proc status");
    let allowed = status
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .map(|v| v.trim().to_string());
    assert_eq!(
        allowed.as_deref(),
        Some("0"),
        "--cpu 0: Cpus_allowed_list of pid {pid}; log:\n{log}"
    );
    // every thread of the process (if any) is pinned too
    if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for t in tasks.flatten() {
            let s = std::fs::read_to_string(t.path().join("status")).unwrap_or_default();
            let a = s
                .lines()
                .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
                .map(|v| v.trim().to_string());
            assert_eq!(
                a.as_deref(),
                Some("0"),
                "thread {:?} of pid {pid}",
                t.file_name()
            );
        }
    }
    // --cpu implies reuse_port: a second process pinned the same way shares the address
    let mut twin = ChildGuard(spawn_with_cpu(&dir, &cfg, "0", "cpu0-twin"));
    let twin_err = dir.join("cpu0-twin.err");
    let shared = poll_until(READY_TIMEOUT, Duration::from_millis(20), || {
        if let Ok(Some(st)) = twin.0.try_wait() {
            return Some(Err(st));
        }
        let log = std::fs::read_to_string(&twin_err).unwrap_or_default();
        log.contains(LOG_HTTP_LISTEN).then_some(Ok(()))
    });
    let twin_log = std::fs::read_to_string(&twin_err).unwrap_or_default();
    assert!(
        matches!(shared, Some(Ok(()))),
        "--cpu 0 twin on {listen}: {shared:?}:\n{twin_log}"
    );
    drop(twin);
    drop(child);

    let mut bad = ChildGuard(spawn_with_cpu(&dir, &cfg, "99999", "cpu99999"));
    let st = poll_until(Duration::from_secs(10), Duration::from_millis(20), || {
        bad.0.try_wait().ok().flatten()
    });
    let log = std::fs::read_to_string(dir.join("cpu99999.err")).unwrap_or_default();
    let st = st.unwrap_or_else(|| panic!("--cpu 99999: still running after 10 s:\n{log}"));
    assert!(!st.success(), "--cpu 99999 exited with {st:?}:\n{log}");
    assert!(
        log.contains("99999") && log.to_ascii_lowercase().contains("cpu"),
        "--cpu 99999: the error does not name the cpu:\n{log}"
    );
    assert!(
        !log.contains(LOG_HTTP_LISTEN),
        "--cpu 99999: started listening before failing:\n{log}"
    );
}

/// README: "debug adds per-stream detail". With `log_level` debug (RUST_LOG unset), a plain
/// successful request leaves at least one DEBUG line on each side.
#[test]
fn log_level_debug_adds_per_request_detail() {
    let up = Upstream::start();
    let pair = PairBuilder::new(up.addr())
        .name("ops_debug_detail")
        .both("log_level", "\"debug\"")
        .env("RUST_LOG", "")
        .start();
    // startup debug lines (e.g. the connection attempt) prove the level is in effect
    assert!(
        pair.client.log_lines().iter().any(|l| is_debug_line(l)),
        "no DEBUG line at all from the client at log_level debug"
    );
    let (cm, sm) = (pair.client.log_len(), pair.server.log_len());
    let r = pair.get("/hello");
    assert_eq!(r.status(), 200, "{r}");
    pair.client.expect_log("access ", Duration::from_secs(2));
    pair.server.expect_log("access ", Duration::from_secs(2));
    std::thread::sleep(Duration::from_millis(200)); // let the reader threads catch up
    let since =
        |p: &Proxy, m: usize| -> Vec<String> { p.log_lines().into_iter().skip(m).collect() };
    let c = since(&pair.client, cm);
    let s = since(&pair.server, sm);
    assert!(
        c.iter().any(|l| is_debug_line(l)),
        "client: no DEBUG line for a request at log_level debug; lines: {c:#?}"
    );
    assert!(
        s.iter().any(|l| is_debug_line(l)),
        "server: no DEBUG line for a request at log_level debug; lines: {s:#?}"
    );
}
