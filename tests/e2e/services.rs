//! Several services over one session, and who may use them (issue 12, first part): routes by
//! listener and Host to named services, each with its own upstream; the service field only
//! ptproxy writes and reads; unknown services and denied identities refused by the server with
//! nothing reaching any upstream; callers outside a listener's allowed sources refused.

use std::net::SocketAddr;
use std::time::Duration;

use crate::harness::admin::{metric, metrics_addr};
use crate::harness::h3_client::{H3Client, H3Outcome};
use crate::harness::pki::TestPki;
use crate::harness::{free_tcp_port, HttpConn, PairBuilder, Upstream};

fn local(port: u16) -> SocketAddr {
    format!("127.0.0.1:{port}").parse().expect("address")
}

fn get(addr: SocketAddr, host: &str, target: &str, extra: &[(&str, &str)]) -> (u16, String) {
    let mut conn = HttpConn::connect(addr).expect("connect to the client");
    let mut headers = vec![("Host", host)];
    headers.extend_from_slice(extra);
    let r = conn
        .request("GET", target, &headers, None)
        .expect("a response");
    (r.status(), r.body_str())
}

/// Sets `field` of `proxy`'s config (started as `config`) to `json`, sends SIGHUP and waits
/// for the reload's summary line, which it returns.
fn reload(
    proxy: &crate::harness::Proxy,
    config: &crate::harness::json::Json,
    field: &str,
    json: &str,
) -> String {
    let mut config = config.clone();
    config.set(field, crate::harness::json::Json::must(json));
    crate::ops::write_json(proxy.config(), &config);
    let mark = proxy.log_len();
    crate::ops::signal(proxy, "HUP");
    proxy
        .wait_for_log_since(mark, "SIGHUP: applied", Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn requests_reach_their_service_s_upstream_over_one_session_with_host_unchanged() {
    let (default, orders, billing) = (Upstream::start(), Upstream::start(), Upstream::start());
    let routed = local(free_tcp_port());
    let (metrics, metrics_json) = metrics_addr();
    let (server_metrics, server_metrics_json) = metrics_addr();
    let services = format!(
        r#"[{{"name": "orders", "upstream": {{"address": "{}"}}}},
            {{"name": "billing", "upstream": {{"address": "{}"}}}}]"#,
        orders.addr(),
        billing.addr()
    );
    let listeners = format!(
        r#"[{{"address": "{routed}", "routes": [{{"host": "orders.example", "service": "orders"}},
                                                 {{"service": "billing"}}]}}]"#
    );
    let pair = PairBuilder::new(default.addr())
        .name("services_routes")
        .server("services", &services)
        .client("listeners", &listeners)
        .client("metrics.listen", &metrics_json)
        .server("metrics.listen", &server_metrics_json)
        .start();
    let cases: &[(SocketAddr, &str, &str, &Upstream)] = &[
        (pair.http_addr, "a.example", "/hello?d1", &default),
        (routed, "orders.example:8080", "/hello?o1", &orders),
        (routed, "ORDERS.example", "/hello?o2", &orders),
        (routed, "other.example", "/hello?b1", &billing),
        (pair.http_addr, "a.example", "/hello?d2", &default),
    ];
    for (addr, host, target, upstream) in cases {
        // A caller's own service field is ignored (only the client's route names the service).
        let (status, body) = get(*addr, host, target, &[("ptproxy-service", "billing")]);
        assert_eq!(status, 200, "{host}{target}: {body}");
        upstream.assert_routed_here(target, host);
    }
    assert_eq!(default.request_count(), 2);
    assert_eq!(orders.request_count(), 2);
    assert_eq!(billing.request_count(), 1);
    let counted = |service: &str| {
        let series =
            format!("ptproxy_service_requests_total{{service=\"{service}\",code=\"2xx\"}}");
        metric(server_metrics, &series)
    };
    assert_eq!(
        (counted("default"), counted("orders"), counted("billing")),
        (Some(2.0), Some(2.0), Some(1.0)),
        "requests counted by service"
    );
    assert_eq!(
        metric(metrics, "ptproxy_session_reconnects_total"),
        Some(0.0),
        "all services share the one session"
    );
}

#[test]
fn an_unknown_service_is_a_404_from_the_server_and_nothing_reaches_an_upstream() {
    let upstream = Upstream::start();
    let routed = local(free_tcp_port());
    let (metrics, metrics_json) = metrics_addr();
    // The client routes to a service the server does not have.
    let listeners = format!(r#"[{{"address": "{routed}", "routes": [{{"service": "ghost"}}]}}]"#);
    let pair = PairBuilder::new(upstream.addr())
        .name("services_unknown")
        .client("listeners", &listeners)
        .server("metrics.listen", &metrics_json)
        .start();
    let (status, body) = get(routed, "a.example", "/x", &[]);
    assert_eq!(status, 404, "{body}");
    assert!(
        body.contains("ptproxy server") && body.contains("ghost"),
        "{body}"
    );
    // A bare HTTP/3 client naming an unknown service directly.
    let mut h3 = H3Client::connect(pair.quic_addr);
    let stream = h3.send(
        &[
            (":method", "GET"),
            (":scheme", "http"),
            (":authority", "a.example"),
            (":path", "/y"),
            ("ptproxy-service", "nope"),
        ],
        None,
    );
    let H3Outcome::Response { status, fields, .. } = h3.outcome(stream, Duration::from_secs(10))
    else {
        panic!("the stream was reset instead of answered");
    };
    assert_eq!(status, 404);
    let proxy_status = fields
        .iter()
        .find(|(n, _)| n == "proxy-status")
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    assert!(
        proxy_status.contains("ptproxy-server") && proxy_status.contains("destination_not_found"),
        "{proxy_status}"
    );
    assert_eq!(upstream.request_count(), 0, "nothing reached the upstream");
    assert_eq!(
        metric(
            metrics,
            "ptproxy_requests_refused_total{service=\"\",reason=\"unknown_service\"}"
        ),
        Some(2.0)
    );
}

#[test]
fn access_is_decided_by_the_client_s_identity_method_and_path() {
    let upstream = Upstream::start();
    let dir = crate::harness::tmp::TempDir::new("services_acl_pki");
    let mut pki = TestPki::new(dir.path());
    let identities = [
        ("reader", "reader", vec!["spiffe://corp/ns/a/sa/reader"]),
        ("billing", "billing", vec!["billing.corp.test"]),
        ("stranger", "stranger", vec!["stranger.other.test"]),
    ];
    let (metrics, metrics_json) = metrics_addr();
    let services = format!(
        r#"[{{"name": "orders", "upstream": {{"address": "{up}"}},
              "allow": [{{"identity": "spiffe://corp/ns/a/*", "methods": ["GET", "HEAD"], "paths": ["/status"]}},
                        {{"identity": "*.corp.test"}}]}}]"#,
        up = upstream.addr()
    );
    // (identity, method, target, expected status)
    let table: &[(&str, &str, &str, u16)] = &[
        ("reader", "GET", "/status/200", 200),
        ("reader", "POST", "/status/200", 403),
        ("reader", "GET", "/hello", 403),
        ("reader", "GET", "/status/../hello", 403),
        ("billing", "POST", "/echo", 200),
        ("stranger", "GET", "/status/200", 403),
    ];
    let mut allowed = 0;
    for (stem, cn, sans) in &identities {
        let sans: Vec<&str> = sans.iter().map(|s| &**s).collect();
        let (cert, key) = pki.leaf(stem, cn, &sans);
        let routed = local(free_tcp_port());
        let listeners =
            format!(r#"[{{"address": "{routed}", "routes": [{{"service": "orders"}}]}}]"#);
        let s = |p: &std::path::Path| format!("{:?}", p.to_str().expect("path"));
        let pair = PairBuilder::new(upstream.addr())
            .name(&format!("services_acl_{stem}"))
            .server("services", &services)
            .server("tls.ca", &s(&pki.ca()))
            .server("tls.cert", &s(&dir.path().join("server.pem")))
            .server("tls.key", &s(&dir.path().join("server.key")))
            .server("metrics.listen", &metrics_json)
            .client("tls.ca", &s(&pki.ca()))
            .client("tls.cert", &s(&cert))
            .client("tls.key", &s(&key))
            .client("listeners", &listeners)
            .start();
        for (who, method, target, expected) in table.iter().filter(|row| row.0 == *stem) {
            let mut conn = HttpConn::connect(routed).expect("connect");
            let body = (*method == "POST").then_some(&b"x"[..]);
            let r = conn
                .request(method, target, &[("Host", "orders.example")], body)
                .expect("response");
            assert_eq!(
                r.status(),
                *expected,
                "{who} {method} {target}: {}",
                r.body_str()
            );
            if *expected == 403 {
                assert!(
                    r.header("proxy-status")
                        .is_some_and(|v| v.contains("http_request_denied")),
                    "{:?}",
                    r.header("proxy-status")
                );
                assert!(r.body_str().contains("\"orders\""), "{}", r.body_str());
            } else {
                allowed += 1;
            }
        }
        let denied = table
            .iter()
            .filter(|row| row.0 == *stem && row.3 == 403)
            .count() as f64;
        let series = "ptproxy_requests_refused_total{service=\"orders\",reason=\"access_denied\"}";
        assert_eq!(metric(metrics, series).unwrap_or(0.0), denied, "{stem}");
        drop(pair);
    }
    assert_eq!(
        upstream.request_count(),
        allowed,
        "denied requests never reach the upstream"
    );
}

#[test]
fn a_caller_outside_the_listener_s_allowed_sources_gets_a_403() {
    let upstream = Upstream::start();
    let (open, closed) = (local(free_tcp_port()), local(free_tcp_port()));
    let listeners = format!(
        r#"[{{"address": "{open}", "allow_sources": ["127.0.0.0/8"]}},
            {{"address": "{closed}", "allow_sources": ["10.0.0.0/8", "::1"]}}]"#
    );
    let _pair = PairBuilder::new(upstream.addr())
        .name("services_sources")
        .client("listeners", &listeners)
        .start();
    assert_eq!(get(open, "a.example", "/hello", &[]).0, 200);
    let (status, body) = get(closed, "a.example", "/hello", &[]);
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("127.0.0.1"), "{body}");
    assert_eq!(upstream.request_count(), 1);
}

#[test]
fn sighup_applies_new_allow_lists_and_routes_on_the_same_session() {
    let (orders, billing) = (Upstream::start(), Upstream::start());
    let routed = local(free_tcp_port());
    let (metrics, metrics_json) = metrics_addr();
    let services = |allowed: &str| {
        format!(
            r#"[{{"name": "orders", "upstream": {{"address": "{}"}}, "allow": [{{"identity": "{allowed}"}}]}},
                {{"name": "billing", "upstream": {{"address": "{}"}}}}]"#,
            orders.addr(),
            billing.addr()
        )
    };
    let listeners = |service: &str| {
        format!(r#"[{{"address": "{routed}", "routes": [{{"service": "{service}"}}]}}]"#)
    };
    let pair = PairBuilder::new(orders.addr())
        .name("services_reload")
        .server("services", &services("client.test"))
        .client("listeners", &listeners("orders"))
        .client("metrics.listen", &metrics_json)
        .start();
    assert_eq!(get(routed, "a.example", "/hello?1", &[]).0, 200);

    // The server's allow list no longer names this client.
    reload(
        &pair.server,
        &pair.server_config,
        "services",
        &services("someone-else.test"),
    );
    let (status, body) = get(routed, "a.example", "/hello?2", &[]);
    assert_eq!(status, 403, "{body}");

    // The client's listener now routes to billing, which admits anyone.
    reload(
        &pair.client,
        &pair.client_config,
        "listeners",
        &listeners("billing"),
    );
    assert_eq!(get(routed, "a.example", "/hello?3", &[]).0, 200);
    assert_eq!((orders.request_count(), billing.request_count()), (1, 1));
    assert_eq!(
        metric(metrics, "ptproxy_session_reconnects_total"),
        Some(0.0),
        "the reloads kept the session"
    );
}

#[test]
fn a_name_that_takes_long_to_resolve_holds_up_only_its_own_service() {
    // The server resolves upstream names through a hosts file that is a FIFO: every lookup
    // blocks until the test writes the answer, as a dead DNS server would make getaddrinfo
    // wait. Meanwhile the default service (an IP literal) must be served at once.
    let (default, slow) = (Upstream::start(), Upstream::start());
    let dir = crate::harness::tmp::TempDir::new("services_slow_dns");
    let fifo = dir.path().join("hosts.fifo");
    let path = std::ffi::CString::new(fifo.to_str().expect("path")).expect("c path");
    // SAFETY: a valid NUL-terminated path; mkfifo only creates the file.
    assert_eq!(unsafe { libc::mkfifo(path.as_ptr(), 0o600) }, 0, "mkfifo");
    let services = format!(
        r#"[{{"name": "slow", "upstream": {{"address": "slow.test:{}"}}}}]"#,
        slow.addr().port()
    );
    let routed = local(free_tcp_port());
    let listeners = format!(r#"[{{"address": "{routed}", "routes": [{{"service": "slow"}}]}}]"#);
    let pair = PairBuilder::new(default.addr())
        .name("services_slow_dns")
        .server("services", &services)
        .client("listeners", &listeners)
        .env("PTPROXY_HOSTS_FILE", fifo.to_str().expect("path"))
        .start();
    // The service whose name is not resolved yet answers at once, and says why.
    let (status, body) = get(routed, "a.example", "/hello?early", &[]);
    assert_eq!(status, 502, "{body}");
    assert!(body.contains("slow.test"), "{body}");
    for i in 0..20 {
        let started = std::time::Instant::now();
        let (status, body) = get(pair.http_addr, "a.example", &format!("/hello?{i}"), &[]);
        assert_eq!(status, 200, "{body}");
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "a request to another service waited {:?} for the lookup",
            started.elapsed()
        );
    }
    // The lookup gets its answer.
    std::fs::write(&fifo, "127.0.0.1 slow.test\n").expect("answer the lookup");
    let served =
        crate::harness::poll_until(Duration::from_secs(5), Duration::from_millis(20), || {
            let (status, _) = get(routed, "a.example", "/hello?late", &[]);
            (status == 200).then_some(())
        });
    assert!(served.is_some(), "the answered name never served");
    assert!(slow.request_count() >= 1);
    assert_eq!(default.request_count(), 20);
}

#[test]
fn a_service_added_by_sighup_serves_at_once_while_requests_to_the_others_flow() {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::Arc;
    let (default, search) = (Upstream::start(), Upstream::start());
    let routed = local(free_tcp_port());
    let (metrics, metrics_json) = metrics_addr();
    let pair = PairBuilder::new(default.addr())
        .name("services_added")
        .client("listeners", &format!(r#"[{{"address": "{routed}"}}]"#))
        .client("metrics.listen", &metrics_json)
        .start();
    // A steady stream of requests to the default service across both reloads.
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let addr = pair.http_addr;
    let stream = {
        let (stop, ok, failed) = (stop.clone(), ok.clone(), failed.clone());
        std::thread::spawn(move || {
            for i in 0..100_000 {
                if stop.load(Ordering::Relaxed) {
                    return;
                }
                match HttpConn::connect(addr).and_then(|mut c| c.get(&format!("/hello?flow{i}"))) {
                    Ok(r) if r.status() == 200 => ok.fetch_add(1, Ordering::Relaxed),
                    _ => failed.fetch_add(1, Ordering::Relaxed),
                };
            }
        })
    };
    let services = format!(
        r#"[{{"name": "search", "upstream": {{"address": "{}"}}}}]"#,
        search.addr()
    );
    let line = reload(&pair.server, &pair.server_config, "services", &services);
    assert!(line.contains("services (added"), "{line}");
    let listeners = format!(r#"[{{"address": "{routed}", "routes": [{{"service": "search"}}]}}]"#);
    reload(&pair.client, &pair.client_config, "listeners", &listeners);
    let (status, body) = get(routed, "a.example", "/hello?new", &[]);
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        search.request_count(),
        1,
        "the new service's upstream got it"
    );
    stop.store(true, Ordering::Relaxed);
    stream.join().expect("request stream");
    assert!(ok.load(Ordering::Relaxed) > 0);
    assert_eq!(
        failed.load(Ordering::Relaxed),
        0,
        "a request failed during the reloads"
    );
    assert_eq!(
        metric(metrics, "ptproxy_session_reconnects_total"),
        Some(0.0)
    );
}

#[test]
fn a_service_removed_by_sighup_finishes_its_requests_in_flight_and_takes_no_new_one() {
    let (orders, billing) = (Upstream::start(), Upstream::start());
    let (to_orders, to_billing) = (local(free_tcp_port()), local(free_tcp_port()));
    let (metrics, metrics_json) = metrics_addr();
    let (server_metrics, server_metrics_json) = metrics_addr();
    let services = |list: &[(&str, SocketAddr)]| {
        let entries: Vec<String> = list
            .iter()
            .map(|(name, addr)| {
                format!(r#"{{"name": "{name}", "upstream": {{"address": "{addr}"}}}}"#)
            })
            .collect();
        format!("[{}]", entries.join(", "))
    };
    let listeners = format!(
        r#"[{{"address": "{to_orders}", "routes": [{{"service": "orders"}}]}},
            {{"address": "{to_billing}", "routes": [{{"service": "billing"}}]}}]"#
    );
    let pair = PairBuilder::new(orders.addr())
        .name("services_removed")
        .server(
            "services",
            &services(&[("orders", orders.addr()), ("billing", billing.addr())]),
        )
        .server("metrics.listen", &server_metrics_json)
        .client("listeners", &listeners)
        .client("metrics.listen", &metrics_json)
        .start();
    // An upload to billing that the upstream stops reading for 2 s: in flight across the reload.
    let upload = std::thread::spawn(move || {
        let mut c = HttpConn::connect(to_billing).expect("connect");
        c.set_timeout(Duration::from_secs(20));
        c.upload_pattern("POST", "/sink?pause_ms=2000&pause_after=1000", 64 * 1024)
            .map(|(r, _)| (r.status(), r.body_str()))
    });
    let in_flight =
        crate::harness::poll_until(Duration::from_secs(5), Duration::from_millis(10), || {
            (metric(server_metrics, "ptproxy_streams_open") == Some(1.0)).then_some(())
        });
    assert!(in_flight.is_some(), "the upload never reached the server");
    // billing removed, a new service before orders (which moves).
    let list = services(&[("search", billing.addr()), ("orders", orders.addr())]);
    reload(&pair.server, &pair.server_config, "services", &list);
    pair.server
        .wait_for_log("finish their requests: billing", Duration::from_secs(2))
        .unwrap_or_else(|e| panic!("{e}"));
    let (status, body) = upload
        .join()
        .expect("upload thread")
        .expect("upload answered");
    assert_eq!(status, 200, "{body}");
    assert!(
        body.starts_with(&format!("len={} ", 64 * 1024)),
        "the whole body: {body}"
    );
    // No new request reaches the removed service; the moved one keeps serving.
    let (status, body) = get(to_billing, "a.example", "/hello?after", &[]);
    assert_eq!(status, 404, "{body}");
    assert_eq!(get(to_orders, "a.example", "/hello?after", &[]).0, 200);
    assert_eq!(
        billing.request_count(),
        1,
        "only the upload reached billing"
    );
    assert_eq!(
        metric(metrics, "ptproxy_session_reconnects_total"),
        Some(0.0)
    );
}
