//! Builds the `quiche::Config` for either role from the validated transport settings and a
//! TLS context. One place decides every QUIC knob: flow-control windows, stream limits,
//! congestion control, pacing, timers and datagram sizes.

use std::io;
use std::net::SocketAddr;

use boring::ssl::SslContextBuilder;

use crate::bridge::compression::{self, Dictionary};
use crate::bridge::headers::forwarding::Completion;
use crate::config::{KnownLink, TransportConfig, DEFAULT_INITIAL_CWND_PACKETS};

/// Largest UDP payload we accept (and the receive buffer size).
pub const MAX_DATAGRAM: usize = 65_535;
/// Payload we send when the path's MTU is not discovered (`transport.pmtu_discovery: false`)
/// or its route's MTU is unknown: fits IPv6 minimum MTU with headroom.
pub const SEND_DATAGRAM: usize = 1_350;
/// The smallest datagram QUIC paths must carry (RFC 9000 §14); quiche sends this size until a
/// path MTU probe is acknowledged.
const MIN_DATAGRAM: usize = 1_200;
/// The largest packet quiche builds once a session is up (its length must fit a two-byte
/// varint): measured on loopback, 1 GiB through the pair took 2.5 s of proxy CPU with
/// 1350-byte datagrams, 1.5 s with 8952 and 1.35 s with 16 383 (`benches/README.md`).
const LARGEST_PACKET: usize = 16_383;
/// Unidirectional streams the peer may open: H3 control + QPACK encoder/decoder + GREASE, with room.
const MAX_UNI_STREAMS: u64 = 16;
const UNI_STREAM_WINDOW: u64 = 1024 * 1024;
/// Connection IDs each side may hold from the other (the one in use plus spares).
const ACTIVE_CID_LIMIT: u64 = 4;
/// How much application data quiche buffers, as a multiple of `min(congestion window, peer's
/// connection credit)`. It must stay 1: quiche 0.30 multiplies the peer's *flow-control credit*
/// by this factor too and never checks the credit again when it packetizes stream data, so any
/// factor above 1 lets concurrent bodies overrun the peer's connection window, which the peer
/// answers by closing the session with FLOW_CONTROL_ERROR (`tests/e2e/soak.rs`).
const SEND_CAPACITY_FACTOR: f64 = 1.0;
/// Largest HTTP/3 field section we accept (RFC 9114 §4.2.2 size: names + values + 32 each):
/// room for the default 64 KiB HTTP/1.1 head plus per-field overhead. Larger sections from a
/// client are answered 431 locally (`bridge::headers::field_section_size`).
pub const MAX_FIELD_SECTION_SIZE: u64 = 256 * 1024;

/// The largest window a known link sets, in packets: below quiche's congestion window ceiling
/// (20 000 packets).
const MAX_LINK_WINDOW_PACKETS: usize = 10_000;

/// IP and UDP header bytes in front of a datagram's payload.
fn header_bytes(peer: SocketAddr) -> usize {
    if peer.is_ipv4() {
        20 + 8
    } else {
        40 + 8
    }
}

/// What sizes a session's datagrams and the windows quiche counts in packets, for one path:
/// quiche's congestion windows are packets times the largest datagram, and that datagram is
/// the path's.
#[derive(Debug, Clone, Copy)]
pub struct PathSizing {
    pmtu_discovery: bool,
    link: Option<KnownLink>,
    initial_cwnd_packets: usize,
    largest_head: usize,
}

impl PathSizing {
    /// The sizing of `t`'s sessions; `largest_head` as for [`quiche_config`].
    pub fn new(t: &TransportConfig, largest_head: usize) -> PathSizing {
        PathSizing {
            pmtu_discovery: t.pmtu_discovery,
            link: t.link,
            initial_cwnd_packets: t.initial_congestion_window_packets,
            largest_head,
        }
    }

    /// Fits `c` to the path to `peer` before a connection is made with it (quiche reads these
    /// knobs when it creates a connection); returns the largest datagram it may send.
    pub fn fit(&self, c: &mut quiche::Config, peer: SocketAddr) -> usize {
        let datagram = self.datagram_ceiling(crate::net::route_mtu(peer), peer);
        self.apply(c, datagram);
        datagram
    }

    /// The largest UDP payload a session may send to `peer` whose route has `route_mtu`. With
    /// path MTU discovery, what the route's MTU leaves (up to [`LARGEST_PACKET`]): quiche sends
    /// [`MIN_DATAGRAM`] until a probe of that size is acknowledged, and bisects down when
    /// probes are lost on a smaller hop further on. Without it, [`SEND_DATAGRAM`], which any
    /// path is expected to carry, or less when the route's MTU leaves less; when the route's
    /// MTU is unknown, [`SEND_DATAGRAM`].
    pub fn datagram_ceiling(&self, route_mtu: io::Result<usize>, peer: SocketAddr) -> usize {
        match route_mtu {
            Ok(mtu) => {
                let room = mtu.saturating_sub(header_bytes(peer));
                let largest = if self.pmtu_discovery {
                    LARGEST_PACKET
                } else {
                    SEND_DATAGRAM
                };
                room.clamp(MIN_DATAGRAM, largest)
            }
            Err(e) => {
                log::debug!("route MTU to {peer}: {e}; datagrams of {SEND_DATAGRAM} bytes");
                SEND_DATAGRAM
            }
        }
    }

    /// Sets `c`'s largest datagram and the windows counted in packets of that size.
    fn apply(&self, c: &mut quiche::Config, datagram: usize) {
        c.set_max_send_udp_payload_size(datagram);
        c.set_initial_congestion_window_packets(self.initial_cwnd_packets(datagram));
        c.set_custom_bbr_params(quiche::BbrParams {
            min_cwnd_packets: Some(self.min_cwnd_packets(datagram)),
            // A known link's rate paces the initial window (and bounds the first estimate).
            initial_pacing_rate_bytes_per_second: self.link.map(|l| l.bytes_per_second()),
            // STARTUP's plateau rule stays quiche's (three rounds without 25% growth): on a
            // lossy link it may end STARTUP at the rate of small requests, but without it
            // STARTUP did not end on a link slower than the window above and lost half of a
            // download's packets; more rounds only put the early exit off (README "Transport",
            // known defect; `tests/e2e/startup_exit.rs`).
            ..Default::default()
        });
    }

    /// The known link's bandwidth-delay product in packets of `datagram` bytes
    /// (`transport.link`), at least quiche's default initial window.
    fn link_window_packets(link: &KnownLink, datagram: usize) -> usize {
        let bdp = usize::try_from(link.bdp_bytes()).unwrap_or(usize::MAX);
        bdp.div_ceil(datagram)
            .clamp(DEFAULT_INITIAL_CWND_PACKETS, MAX_LINK_WINDOW_PACKETS)
    }

    /// The initial congestion window: the configured one, raised to a known link's
    /// bandwidth-delay product, so the first transfer does not probe up to a rate already
    /// known. Counted in packets as TCP's initial window is in segments: larger datagrams
    /// (a path MTU above Ethernet's) make it larger in bytes.
    fn initial_cwnd_packets(&self, datagram: usize) -> usize {
        let link = self
            .link
            .as_ref()
            .map_or(0, |l| Self::link_window_packets(l, datagram));
        self.initial_cwnd_packets.max(link)
    }

    /// BBR2's floor for the congestion window, in packets: never below the configured initial
    /// window (BBR2's own floor), a known link's bandwidth-delay product when the link says to
    /// hold it (after an idle period the window stays at the link's size: no slow start
    /// again), and large enough for the largest head. quiche writes a field section only whole,
    /// and only into `min(free congestion window, peer's credit)`, so a head larger than the
    /// window could never leave. The head is counted in the smallest datagrams: BBR2 scales
    /// its floor down with the datagram size when path MTU probes fail. BBR2 paces at its
    /// bandwidth estimate, so the floor does not turn into bursts. CUBIC and Reno have no such
    /// floor (see README "Transport").
    fn min_cwnd_packets(&self, datagram: usize) -> usize {
        let head_packets = (self.largest_head + HEAD_SLACK).div_ceil(MIN_DATAGRAM);
        let floor = match &self.link {
            Some(link) if link.hold_window => self.initial_cwnd_packets(datagram),
            _ => self.initial_cwnd_packets,
        };
        floor.max(head_packets)
    }
}

/// Flow-control windows a known link needs, in bandwidth-delay products: at 2% loss the left
/// edge of a window waits a repair round or two for a lost packet while the sender goes on at
/// the link's rate (measured in `benches/`: 10 MiB at 2% loss over 50 ms took 0.54 s with 4 MiB
/// stream windows at 300 Mbit/s, 0.37 s with 16 MiB).
const LINK_WINDOW_BDPS: u64 = 4;

/// Flow-control windows, (initial connection, initial stream, connection ceiling, stream
/// ceiling). A known link raises the initial windows to `LINK_WINDOW_BDPS` of its
/// bandwidth-delay product. quiche's autotuning may grow a stream's window up to the
/// connection's, so one stream alone can fill the link (a fixed 4 MiB stream window caps one
/// transfer at 4 MiB per RTT); the connection window still bounds what all streams buffer.
fn windows(t: &TransportConfig) -> (u64, u64, u64, u64) {
    let link = t
        .link
        .as_ref()
        .map_or(0, |l| l.bdp_bytes().saturating_mul(LINK_WINDOW_BDPS));
    let connection = t.connection_window.max(link);
    let stream = t.stream_window.max(link);
    (connection, stream, connection, stream.max(connection))
}

/// Both roles send SETTINGS_ENABLE_CONNECT_PROTOCOL (RFC 9220): the server carries WebSocket
/// over extended CONNECT, and accepts `:protocol` only while this is on.
pub const EXTENDED_CONNECT: bool = true;

/// The HTTP/3 settings both roles use; `compression`: announce link compression of bodies
/// (`http.compression.enabled`, see [`crate::bridge::compression`]), with the id of
/// `dictionary` (`http.compression.dictionary`) when one is configured.
pub fn h3_config(
    compression: bool,
    dictionary: Option<&Dictionary>,
    forwarding: Completion,
) -> Result<quiche::h3::Config, quiche::h3::Error> {
    let mut c = quiche::h3::Config::new()?;
    c.set_max_field_section_size(MAX_FIELD_SECTION_SIZE);
    c.enable_extended_connect(EXTENDED_CONNECT);
    let mut settings = vec![forwarding.announcement()];
    if compression {
        settings.extend(compression::announcement());
        settings.extend(compression::dictionary::announcement(dictionary));
    }
    c.set_additional_settings(settings)?;
    Ok(c)
}

#[derive(Debug)]
pub struct SetupError(pub String);

impl std::fmt::Display for SetupError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for SetupError {}

/// Room a head's field section needs beyond its HTTP/1.1 size: QPACK prefix, HEADERS frame
/// header, pseudo-header fields.
const HEAD_SLACK: usize = 2 * 1024;

/// A quiche config for HTTP/3 over `tls` with the transport knobs of `t`. `largest_head` is the
/// largest HTTP/1.1 head this side sends as a field section (`http.max_head_bytes`).
pub fn quiche_config(
    t: &TransportConfig,
    tls: SslContextBuilder,
    largest_head: usize,
) -> Result<quiche::Config, SetupError> {
    let err = |what: &str, e: quiche::Error| SetupError(format!("{what}: {e}"));
    let mut c = quiche::Config::with_boring_ssl_ctx_builder(quiche::PROTOCOL_VERSION, tls)
        .map_err(|e| err("QUIC TLS setup", e))?;
    c.set_application_protos(quiche::h3::APPLICATION_PROTOCOL)
        .map_err(|e| err("ALPN", e))?;
    c.set_max_idle_timeout(t.idle_timeout.as_millis() as u64);
    c.set_initial_rtt(t.initial_rtt);
    c.set_max_recv_udp_payload_size(MAX_DATAGRAM);
    let (connection_window, stream_window, max_connection_window, max_stream_window) = windows(t);
    c.set_initial_max_data(connection_window);
    c.set_max_connection_window(max_connection_window);
    c.set_initial_max_stream_data_bidi_local(stream_window);
    c.set_initial_max_stream_data_bidi_remote(stream_window);
    c.set_max_stream_window(max_stream_window);
    c.set_initial_max_stream_data_uni(UNI_STREAM_WINDOW);
    c.set_initial_max_streams_bidi(t.max_concurrent_streams);
    c.set_initial_max_streams_uni(MAX_UNI_STREAMS);
    // Spare connection IDs for path changes (NAT rebinding): each side keeps the peer supplied.
    c.set_active_connection_id_limit(ACTIVE_CID_LIMIT);
    c.set_cc_algorithm_name(t.congestion_control.quiche_name())
        .map_err(|e| err("transport.congestion_control", e))?;
    c.enable_pacing(t.pacing);
    c.set_send_capacity_factor(SEND_CAPACITY_FACTOR);
    if let Some(mbps) = t.max_pacing_rate_mbps {
        c.set_max_pacing_rate(mbps); // quiche's BBR2 reads this in Mbit/s
    }
    // Until a path is known (`PathSizing::fit`), the datagram size any path carries.
    PathSizing::new(t, largest_head).apply(&mut c, SEND_DATAGRAM);
    c.discover_pmtu(t.pmtu_discovery);
    if super::debug::keylog_path().is_some() {
        c.log_keys();
    }
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn transport(link: Option<(u64, u64, bool)>) -> TransportConfig {
        let mut t = crate::sim::pair::default_configs().0.transport;
        t.link = link.map(|(rate_mbps, rtt_ms, hold_window)| KnownLink {
            rate_mbps,
            rtt: Duration::from_millis(rtt_ms),
            hold_window,
        });
        t
    }

    #[test]
    fn without_a_link_a_stream_may_grow_to_the_connection_window() {
        let t = transport(None);
        let (conn, stream, max_conn, max_stream) = windows(&t);
        assert_eq!((conn, stream), (t.connection_window, t.stream_window));
        assert_eq!(
            (max_conn, max_stream),
            (t.connection_window, t.connection_window)
        );
        let s = PathSizing::new(&t, 0);
        assert_eq!(
            s.initial_cwnd_packets(SEND_DATAGRAM),
            t.initial_congestion_window_packets
        );
        assert_eq!(
            s.min_cwnd_packets(SEND_DATAGRAM),
            t.initial_congestion_window_packets
        );
    }

    #[test]
    fn a_known_link_starts_at_its_bdp_and_holds_it() {
        // 20 Mbit/s x 50 ms: 125 000 bytes, 93 packets of 1350 bytes, 85 of 1472.
        let t = transport(Some((20, 50, true)));
        let s = PathSizing::new(&t, 0);
        assert_eq!(s.initial_cwnd_packets(SEND_DATAGRAM), 93);
        assert_eq!(s.min_cwnd_packets(SEND_DATAGRAM), 93);
        assert_eq!(s.initial_cwnd_packets(1472), 85);
        assert_eq!(s.min_cwnd_packets(1472), 85);
        let (conn, stream, _, _) = windows(&t);
        assert_eq!(
            (conn, stream),
            (t.connection_window, t.stream_window),
            "4 BDPs < defaults"
        );
        // Not held: it starts there, but BBR2 may shrink the window to the configured floor.
        let t = transport(Some((20, 50, false)));
        let s = PathSizing::new(&t, 0);
        assert_eq!(s.initial_cwnd_packets(SEND_DATAGRAM), 93);
        assert_eq!(
            s.min_cwnd_packets(SEND_DATAGRAM),
            t.initial_congestion_window_packets
        );
    }

    #[test]
    fn a_fast_link_widens_the_flow_control_windows_and_clamps_the_cwnd() {
        // 1 Gbit/s x 50 ms: 6.25 MB per RTT, windows of 25 MB.
        let t = transport(Some((1000, 50, true)));
        assert_eq!(
            windows(&t),
            (25_000_000, 25_000_000, 25_000_000, 25_000_000)
        );
        assert_eq!(
            PathSizing::new(&t, 0).initial_cwnd_packets(SEND_DATAGRAM),
            4630
        );
        let t = transport(Some((100_000, 1000, true)));
        assert_eq!(
            PathSizing::new(&t, 0).initial_cwnd_packets(SEND_DATAGRAM),
            MAX_LINK_WINDOW_PACKETS
        );
        // A larger configured initial window wins; the largest head still sets the floor.
        let mut t = transport(Some((1, 10, true)));
        t.initial_congestion_window_packets = 40;
        let s = PathSizing::new(&t, 256 * 1024);
        assert_eq!(s.initial_cwnd_packets(SEND_DATAGRAM), 40);
        assert_eq!(
            s.min_cwnd_packets(SEND_DATAGRAM),
            (256 * 1024 + HEAD_SLACK).div_ceil(MIN_DATAGRAM)
        );
    }

    /// The floor fits the largest head even after BBR2 scaled it down to the smallest datagram
    /// (path MTU probes lost): the regression was a floor counted in 1350-byte packets, 51 for
    /// a 64 KiB head, which at 1200 bytes each no longer held the head's 67.6 KB.
    #[test]
    fn the_window_floor_holds_the_largest_head_in_the_smallest_datagrams() {
        let t = transport(None);
        let head = 64 * 1024;
        let s = PathSizing::new(&t, head);
        for datagram in [MIN_DATAGRAM, SEND_DATAGRAM, 1472, 8972, LARGEST_PACKET] {
            let floor_after_fallback = s.min_cwnd_packets(datagram) * MIN_DATAGRAM;
            assert!(
                floor_after_fallback >= head + HEAD_SLACK,
                "{datagram}: {floor_after_fallback}"
            );
        }
    }

    /// The datagram ceiling: what the route's MTU leaves after the IP and UDP headers, within
    /// QUIC's minimum and quiche's largest packet; 1350 bytes without discovery or without a
    /// known route MTU.
    #[test]
    fn the_datagram_ceiling_follows_the_route_mtu() {
        let t = transport(None);
        let s = PathSizing::new(&t, 0);
        let v4: SocketAddr = "192.0.2.1:443".parse().expect("literal");
        let v6: SocketAddr = "[2001:db8::1]:443".parse().expect("literal");
        assert_eq!(s.datagram_ceiling(Ok(1500), v4), 1472);
        assert_eq!(s.datagram_ceiling(Ok(1500), v6), 1452);
        assert_eq!(s.datagram_ceiling(Ok(9000), v4), 8972);
        assert_eq!(s.datagram_ceiling(Ok(65536), v4), LARGEST_PACKET);
        assert_eq!(s.datagram_ceiling(Ok(1280), v6), 1232);
        assert_eq!(s.datagram_ceiling(Ok(1220), v6), MIN_DATAGRAM);
        let unknown = Err(io::Error::other("no route"));
        assert_eq!(s.datagram_ceiling(unknown, v4), SEND_DATAGRAM);
        let mut t = t;
        t.pmtu_discovery = false;
        let s = PathSizing::new(&t, 0);
        assert_eq!(s.datagram_ceiling(Ok(9000), v4), SEND_DATAGRAM);
        assert_eq!(s.datagram_ceiling(Ok(1280), v6), 1232);
    }
}
