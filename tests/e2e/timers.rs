//! Timers seen from outside, through the operator endpoint: the timer table holds at most one
//! entry per connection or exchange however many requests went through (it used to keep one
//! per deadline change until that deadline passed), and a process waiting on a stalled
//! upstream or an idle session sleeps instead of spinning (event loop turns per second).

use crate::harness::admin::{metric, metrics_addr};
use crate::harness::raw_upstream::{Part, RawUpstream};
use crate::harness::{poll_until, Pair, PairBuilder, Upstream};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

fn gauge(addr: SocketAddr, name: &str) -> f64 {
    metric(addr, name).unwrap_or_else(|| panic!("{name} missing at {addr}"))
}

/// A pair with the operator endpoint on both sides.
fn pair_with_metrics(name: &str, upstream: SocketAddr) -> (Pair, SocketAddr, SocketAddr) {
    let (client_metrics, client_json) = metrics_addr();
    let (server_metrics, server_json) = metrics_addr();
    let pair = PairBuilder::new(upstream)
        .name(name)
        .client("metrics.listen", &client_json)
        .server("metrics.listen", &server_json)
        .server("upstream.response_timeout_ms", "4000")
        .start();
    (pair, client_metrics, server_metrics)
}

#[test]
fn the_timer_table_holds_one_entry_per_connection_whatever_the_traffic() {
    let up = Upstream::start();
    let (pair, client_metrics, server_metrics) = pair_with_metrics("timers_table", up.addr());
    let mut conns: Vec<_> = (0..4).map(|_| pair.conn()).collect();
    for round in 0..300 {
        for conn in conns.iter_mut() {
            let r = conn.get("/hello").expect("GET on a keep-alive connection");
            assert_eq!(r.status(), 200, "round {round}: {r}");
        }
    }
    // 1200 requests: each one moved its connection's deadlines several times.
    let client = gauge(client_metrics, "ptproxy_timer_entries");
    let server = gauge(server_metrics, "ptproxy_timer_entries");
    assert!(
        client <= 4.0,
        "client timer entries {client} for 4 open connections"
    );
    assert!(
        server <= 1.0,
        "server timer entries {server} with no request in flight"
    );
    drop(conns);
}

/// Turns of the event loop over `window`, on each side.
fn turns_during(window: Duration, client: SocketAddr, server: SocketAddr) -> (f64, f64) {
    let c0 = gauge(client, "ptproxy_event_loop_turns_total");
    let s0 = gauge(server, "ptproxy_event_loop_turns_total");
    std::thread::sleep(window); // the quantity measured is what happens in this time
    let c1 = gauge(client, "ptproxy_event_loop_turns_total");
    let s1 = gauge(server, "ptproxy_event_loop_turns_total");
    (c1 - c0, s1 - s0)
}

#[test]
fn waiting_on_a_stalled_upstream_does_not_spin() {
    // The upstream reads the request and never answers.
    let up = RawUpstream::start(|_| vec![Part::Sleep(Duration::from_secs(8))]);
    let (pair, client_metrics, server_metrics) = pair_with_metrics("timers_spin", up.addr());
    let window = Duration::from_secs(1);
    let (idle_client, idle_server) = turns_during(window, client_metrics, server_metrics);
    let addr = pair.http_addr;
    let started = Instant::now();
    let waiting = std::thread::spawn(move || crate::harness::http::get(addr, "/stalled"));
    // Wait until the request is in flight on the server, then measure while it waits.
    poll_until(Duration::from_secs(3), Duration::from_millis(20), || {
        (gauge(server_metrics, "ptproxy_streams_open") >= 1.0).then_some(())
    })
    .expect("the request reaches the server");
    let (busy_client, busy_server) = turns_during(window, client_metrics, server_metrics);
    let r = waiting.join().expect("request thread").expect("an answer");
    assert_eq!(r.status(), 504, "{r}");
    assert!(started.elapsed() >= Duration::from_secs(3), "504 too early");
    // Scrapes, keepalives and liveness probes make a few turns a second; a loop polling with
    // a zero timeout makes tens of thousands.
    for (what, turns) in [
        ("idle client", idle_client),
        ("idle server", idle_server),
        ("client waiting", busy_client),
        ("server waiting", busy_server),
    ] {
        assert!(turns < 200.0, "{what}: {turns} loop turns in {window:?}");
    }
}
