//! Datagrams sized to the path: path MTU discovery probes up to what the route's MTU leaves
//! (on loopback, quiche's largest packet, 16 383 bytes, where 1350 was the fixed size before),
//! and finds a smaller hop further on without losing a byte or the session. The pairs run
//! behind a relay that records the largest datagram it passed on each way and, as a hop with a
//! smaller MTU, drops larger ones.

use crate::harness::admin::{metrics_addr, scrape};
use crate::harness::pattern::sink_answer;
use crate::harness::relay::{DirStats, RelayConfig};
use crate::harness::{Pair, PairBuilder, Upstream};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

const SIZE: u64 = 4 * 1024 * 1024;
const DEADLINE: Duration = Duration::from_secs(60);
/// quiche's largest packet once a session is up.
const LARGEST_PACKET: u64 = 16_383;
/// UDP payload of a 1500-byte Ethernet MTU over IPv4.
const ETHERNET_PAYLOAD: u64 = 1472;

/// A 4 MiB download and a 4 MiB upload, both byte exact.
fn transfer_both_ways(pair: &Pair, up: &Upstream, label: &str) {
    let t = Instant::now();
    pair.download_exact(SIZE, DEADLINE);
    let mut c = pair.conn();
    c.set_deadline(DEADLINE);
    let (r, sum) = c
        .upload_pattern("POST", "/sink", SIZE)
        .unwrap_or_else(|e| panic!("upload after {:?}: {e}", t.elapsed()));
    assert_eq!(r.status(), 200, "{r}");
    assert_eq!(
        r.body_str(),
        sink_answer(SIZE, sum),
        "upstream got other bytes"
    );
    let q = up.requests().pop().expect("the upload was recorded");
    assert_eq!((q.body_len, q.body_sum), (SIZE, sum));
    eprintln!("{label}: both ways in {:?}", t.elapsed());
}

/// A pair behind `relay`, and its server's metrics address.
fn pair(up: &Upstream, name: &str, relay: RelayConfig) -> (Pair, SocketAddr) {
    let (metrics, metrics_json) = metrics_addr();
    let pair = PairBuilder::new(up.addr())
        .name(name)
        .server("metrics.listen", &metrics_json)
        .relay(relay)
        .start();
    (pair, metrics)
}

/// The largest datagram the server's session path sends now, as its metrics say.
fn server_max_datagram(metrics: SocketAddr) -> f64 {
    scrape(metrics).single("ptproxy_path_max_datagram_bytes").1
}

/// Mean datagram size between two snapshots of one direction.
fn mean_size(before: DirStats, after: DirStats) -> u64 {
    let count = after.received - before.received;
    (after.received_bytes - before.received_bytes) / count.max(1)
}

#[test]
fn datagrams_grow_to_what_the_loopback_route_carries() {
    let up = Upstream::start();
    let (discovered, metrics) = pair(&up, "pmtu_loopback", RelayConfig::clean());
    transfer_both_ways(&discovered, &up, "discovered");
    assert_eq!(server_max_datagram(metrics), LARGEST_PACKET as f64);
    let s = discovered.relay().stats();
    eprintln!("discovered: {s:?}");
    for (way, d) in [
        ("to the client", s.to_client),
        ("to the server", s.to_server),
    ] {
        assert!(
            d.largest_forwarded > ETHERNET_PAYLOAD && d.largest_forwarded <= LARGEST_PACKET,
            "{way}: largest datagram {} bytes",
            d.largest_forwarded
        );
        assert_eq!(d.too_large, 0);
    }
    assert_eq!(
        s.to_client.largest_forwarded, LARGEST_PACKET,
        "bulk data fills quiche's largest packet"
    );

    // The fixed size without discovery, as before.
    let fixed = PairBuilder::new(up.addr())
        .name("pmtu_off")
        .both("transport.pmtu_discovery", "false")
        .relay(RelayConfig::clean())
        .start();
    transfer_both_ways(&fixed, &up, "fixed");
    let s = fixed.relay().stats();
    assert!(s.to_client.largest_forwarded <= 1350, "{s:?}");
    assert!(s.to_server.largest_forwarded <= 1350, "{s:?}");
}

/// The loopback route says 65 536 bytes, but a hop on the way passes at most 1400: the probes
/// above it are lost (and only they: data goes at the size last acknowledged), the search
/// settles just under the hop's MTU, and the transfers are byte exact on the first session.
#[test]
fn a_smaller_hop_further_on_is_found_without_losing_data() {
    const HOP: usize = 1400;
    let up = Upstream::start();
    let (pair, metrics) = pair(&up, "pmtu_hop", RelayConfig::clean().with_hop_mtu(HOP));
    let first = pair.get("/bytes/10");
    assert_eq!(first.status(), 200, "{first}");
    // The handshake's last long-header datagrams may trail the first answer.
    let relay = pair.relay();
    let settled = relay.wait_stable(Duration::from_millis(200), Duration::from_secs(10), |_| {
        relay.long_header_total()
    });
    assert!(settled, "the handshake did not settle");
    let handshakes = relay.long_header_total();
    transfer_both_ways(&pair, &up, "hop");
    let after = pair.relay().stats();
    eprintln!("hop {HOP}: {after:?}");
    let probes_lost = after.to_client.too_large + after.to_server.too_large;
    assert!(probes_lost > 0, "no datagram above the hop MTU was tried");
    assert_eq!(
        pair.relay().long_header_total(),
        handshakes,
        "a new session was started"
    );
    // Settled near the hop's MTU, not at the 1200 bytes QUIC starts with.
    pair.download_exact(SIZE, DEADLINE);
    let settled = pair.relay().stats();
    let mean = mean_size(after.to_client, settled.to_client);
    eprintln!("hop {HOP}: the second download averaged {mean} bytes a datagram");
    assert!(mean > 1300, "download datagrams averaged {mean} bytes");
    assert_eq!(
        settled.to_client.too_large, after.to_client.too_large,
        "probing went on"
    );
    let reported = server_max_datagram(metrics);
    assert!(
        reported > 1300.0 && reported <= HOP as f64,
        "the server's metrics say {reported} bytes"
    );
}
