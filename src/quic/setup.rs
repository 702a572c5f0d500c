//! Builds the `quiche::Config` for either role from the validated transport settings and a
//! TLS context. One place decides every QUIC knob: flow-control windows, stream limits,
//! congestion control, pacing, timers and datagram sizes.

use boring::ssl::SslContextBuilder;

use crate::bridge::compression::{self, Dictionary};
use crate::bridge::headers::forwarding::Completion;
use crate::config::{KnownLink, TransportConfig, DEFAULT_INITIAL_CWND_PACKETS};

/// Largest UDP payload we accept (and the receive buffer size).
pub const MAX_DATAGRAM: usize = 65_535;
/// Payload we send before path MTU discovery learns more: fits IPv6 minimum MTU with headroom.
pub const SEND_DATAGRAM: usize = 1_350;
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

/// The known link's bandwidth-delay product in packets (`transport.link`), at least quiche's
/// default initial window.
fn link_window_packets(link: &KnownLink) -> usize {
    let bdp = usize::try_from(link.bdp_bytes()).unwrap_or(usize::MAX);
    bdp.div_ceil(SEND_DATAGRAM)
        .clamp(DEFAULT_INITIAL_CWND_PACKETS, MAX_LINK_WINDOW_PACKETS)
}

/// The initial congestion window: the configured one, raised to a known link's
/// bandwidth-delay product, so the first transfer does not probe up to a rate already known.
fn initial_cwnd_packets(t: &TransportConfig) -> usize {
    let link = t.link.as_ref().map_or(0, link_window_packets);
    t.initial_congestion_window_packets.max(link)
}

/// BBR2's floor for the congestion window, in packets: never below the configured initial
/// window (BBR2's own floor), a known link's bandwidth-delay product when the link says to hold
/// it (after an idle period the window stays at the link's size: no slow start again), and
/// large enough for the largest head. quiche writes a field section only whole, and only into
/// `min(free congestion window, peer's credit)`, so a head larger than the window could never
/// leave. BBR2 paces at its bandwidth estimate, so the floor does not turn into bursts. CUBIC
/// and Reno have no such floor (see README "Transport").
fn min_cwnd_packets(t: &TransportConfig, largest_head: usize) -> usize {
    let head_packets = (largest_head + HEAD_SLACK).div_ceil(SEND_DATAGRAM);
    let floor = match &t.link {
        Some(link) if link.hold_window => initial_cwnd_packets(t),
        _ => t.initial_congestion_window_packets,
    };
    floor.max(head_packets)
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
    c.set_max_send_udp_payload_size(SEND_DATAGRAM);
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
    c.set_initial_congestion_window_packets(initial_cwnd_packets(t));
    c.set_custom_bbr_params(quiche::BbrParams {
        min_cwnd_packets: Some(min_cwnd_packets(t, largest_head)),
        // A known link's rate paces the initial window (and bounds the first estimate).
        initial_pacing_rate_bytes_per_second: t.link.map(|l| l.bytes_per_second()),
        ..Default::default()
    });
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
        assert_eq!(
            initial_cwnd_packets(&t),
            t.initial_congestion_window_packets
        );
        assert_eq!(min_cwnd_packets(&t, 0), t.initial_congestion_window_packets);
    }

    #[test]
    fn a_known_link_starts_at_its_bdp_and_holds_it() {
        // 20 Mbit/s x 50 ms: 125 000 bytes, 93 packets of 1350 bytes.
        let t = transport(Some((20, 50, true)));
        assert_eq!(initial_cwnd_packets(&t), 93);
        assert_eq!(min_cwnd_packets(&t, 0), 93);
        let (conn, stream, _, _) = windows(&t);
        assert_eq!(
            (conn, stream),
            (t.connection_window, t.stream_window),
            "4 BDPs < defaults"
        );
        // Not held: it starts there, but BBR2 may shrink the window to the configured floor.
        let t = transport(Some((20, 50, false)));
        assert_eq!(initial_cwnd_packets(&t), 93);
        assert_eq!(min_cwnd_packets(&t, 0), t.initial_congestion_window_packets);
    }

    #[test]
    fn a_fast_link_widens_the_flow_control_windows_and_clamps_the_cwnd() {
        // 1 Gbit/s x 50 ms: 6.25 MB per RTT, windows of 25 MB.
        let t = transport(Some((1000, 50, true)));
        assert_eq!(
            windows(&t),
            (25_000_000, 25_000_000, 25_000_000, 25_000_000)
        );
        assert_eq!(initial_cwnd_packets(&t), 4630);
        let t = transport(Some((100_000, 1000, true)));
        assert_eq!(initial_cwnd_packets(&t), MAX_LINK_WINDOW_PACKETS);
        // A larger configured initial window wins; the largest head still sets the floor.
        let mut t = transport(Some((1, 10, true)));
        t.initial_congestion_window_packets = 40;
        assert_eq!(initial_cwnd_packets(&t), 40);
        assert_eq!(
            min_cwnd_packets(&t, 256 * 1024),
            (256 * 1024 + HEAD_SLACK).div_ceil(SEND_DATAGRAM)
        );
    }
}
