//! A plain CONNECT through the real pair (issue #14 item 4): the caller's `CONNECT host:port`
//! crosses the session as an HTTP/3 CONNECT, and the server opens a TCP connection to the
//! destination only when the service's `connect_to` lists it exactly. The destination speaks
//! first (a banner, as SSH does); the tunnel is byte-exact, FIN for FIN, and a destination
//! dying mid-tunnel resets the caller. Unlisted destinations get 403, a service without
//! `connect_to` 501, and neither reaches anything.

use std::net::SocketAddr;
use std::time::Duration;

use crate::harness::pattern;
use crate::harness::tcp_destination::{Behaviour, TcpDestination, BANNER};
use crate::harness::ws_client::WsClient;
use crate::harness::Upstream;
use crate::harness::{closed_tcp_addr, Pair, PairBuilder};

const WAIT: Duration = Duration::from_secs(15);

fn connect_request(destination: SocketAddr) -> String {
    format!("CONNECT {destination} HTTP/1.1\r\nHost: {destination}\r\n\r\n")
}

/// A pair whose default service lists `allowed` in `connect_to`.
fn pair_allowing(name: &str, up: &Upstream, allowed: &[SocketAddr]) -> Pair {
    let list: Vec<String> = allowed.iter().map(|a| format!("\"{a}\"")).collect();
    PairBuilder::new(up.addr())
        .name(name)
        .server("connect_to", &format!("[{}]", list.join(", ")))
        .start()
}

#[test]
fn a_listed_destination_speaks_first_and_carries_a_mib_each_way_fin_for_fin() {
    let up = Upstream::start();
    let dest = TcpDestination::start(Behaviour::Echo);
    let pair = pair_allowing("connect_tunnel", &up, &[dest.addr()]);
    let mut c = WsClient::send_raw(pair.http_addr, &connect_request(dest.addr()));
    assert_eq!(c.status(), 200, "{}", c.head);
    assert_eq!(c.field("content-length"), None, "{}", c.head);
    assert_eq!(c.field("transfer-encoding"), None, "{}", c.head);
    assert_eq!(
        c.recv(BANNER.len(), WAIT),
        BANNER,
        "the destination spoke first"
    );

    let big = pattern::pattern(1 << 20);
    let echoed = c.send_while_receiving(big.clone(), big.len(), Duration::from_secs(60));
    assert!(echoed == big, "the echo differs from what was sent");

    c.finish();
    assert_eq!(c.read_to_end().expect("a clean end").len(), 0);
    assert!(dest.saw_fin(1), "the caller's FIN reached the destination");
    assert_eq!(dest.connection_count(), 1);
    assert_eq!(up.request_count(), 0, "the service's upstream saw nothing");
    pair.server.expect_log("tunnel=connect", WAIT);
    pair.client.expect_log("tunnel=connect", WAIT);
}

#[test]
fn unlisted_destinations_get_403_and_a_service_without_connect_to_501_reaching_nothing() {
    let up = Upstream::start();
    let listed = TcpDestination::start(Behaviour::Echo);
    let other = TcpDestination::start(Behaviour::Echo);
    let pair = pair_allowing("connect_denied", &up, &[listed.addr()]);
    for denied in [
        other.addr(),
        SocketAddr::new([127, 0, 0, 2].into(), listed.addr().port()),
    ] {
        let mut c = WsClient::send_raw(pair.http_addr, &connect_request(denied));
        assert_eq!(c.status(), 403, "{denied}: {}", c.head);
        let status = c.field("proxy-status").unwrap_or_default().to_string();
        assert!(status.contains("destination_ip_prohibited"), "{status}");
        let body = String::from_utf8_lossy(&c.read_to_end().unwrap_or_default()).into_owned();
        assert!(body.contains("connect_to"), "{body}");
    }
    // A body on a CONNECT is refused by the client (RFC 9110 §9.3.6: no content).
    let a = listed.addr();
    let c = WsClient::send_raw(
        pair.http_addr,
        &format!("CONNECT {a} HTTP/1.1\r\nHost: {a}\r\nContent-Length: 2\r\n\r\nhi"),
    );
    assert_eq!(c.status(), 400, "{}", c.head);
    assert_eq!(other.connection_count() + listed.connection_count(), 0);
    drop(pair);

    let off = PairBuilder::new(up.addr()).name("connect_off").start();
    let c = WsClient::send_raw(off.http_addr, &connect_request(listed.addr()));
    assert_eq!(c.status(), 501, "{}", c.head);
    assert!(c.field("proxy-status").is_some(), "{}", c.head);
    assert_eq!(listed.connection_count(), 0);
    assert_eq!(up.request_count(), 0);
}

#[test]
fn a_listed_destination_refusing_the_connection_is_a_502() {
    let up = Upstream::start();
    let closed = closed_tcp_addr();
    let pair = pair_allowing("connect_refused", &up, &[closed]);
    let c = WsClient::send_raw(pair.http_addr, &connect_request(closed));
    assert_eq!(c.status(), 502, "{}", c.head);
}

#[test]
fn a_destination_dying_mid_tunnel_resets_the_callers_connection() {
    let up = Upstream::start();
    let dest = TcpDestination::start(Behaviour::ResetAfter(10));
    let pair = pair_allowing("connect_reset", &up, &[dest.addr()]);
    let mut c = WsClient::send_raw(pair.http_addr, &connect_request(dest.addr()));
    assert_eq!(c.status(), 200, "{}", c.head);
    assert_eq!(c.recv(BANNER.len(), WAIT), BANNER);
    c.send(b"0123456789");
    c.assert_reset();
}

#[test]
fn a_destination_listed_by_name_is_resolved_and_matched_without_case() {
    let up = Upstream::start();
    let dest = TcpDestination::start(Behaviour::Echo);
    let port = dest.addr().port();
    let pair = PairBuilder::new(up.addr())
        .name("connect_named")
        .server("connect_to", &format!("[\"localhost:{port}\"]"))
        .start();
    let request = format!("CONNECT LocalHost:{port} HTTP/1.1\r\nHost: LocalHost:{port}\r\n\r\n");
    let mut c = WsClient::send_raw(pair.http_addr, &request);
    assert_eq!(c.status(), 200, "{}", c.head);
    assert_eq!(c.recv(BANNER.len(), WAIT), BANNER);
    c.send(b"ping");
    assert_eq!(c.recv(4, WAIT), b"ping");
}
