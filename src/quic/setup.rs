//! Builds the `quiche::Config` for either role from the validated transport settings and a
//! TLS context. One place decides every QUIC knob: flow-control windows, stream limits,
//! congestion control, pacing, timers and datagram sizes.

use boring::ssl::SslContextBuilder;

use crate::config::TransportConfig;

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

/// BBR2's floor for the congestion window, in packets: never below the initial window (BBR2's
/// own floor), and large enough for the largest head. quiche writes a field section only
/// whole, and only into `min(free congestion window, peer's credit)`, so a head larger than
/// the window could never leave. BBR2 paces at its bandwidth estimate, so the floor does not
/// turn into bursts. CUBIC and Reno have no such floor (see README "Transport").
fn min_cwnd_packets(t: &TransportConfig, largest_head: usize) -> usize {
    let head_packets = (largest_head + HEAD_SLACK).div_ceil(SEND_DATAGRAM);
    t.initial_congestion_window_packets.max(head_packets)
}

/// The HTTP/3 settings both roles use.
pub fn h3_config() -> Result<quiche::h3::Config, quiche::h3::Error> {
    let mut c = quiche::h3::Config::new()?;
    c.set_max_field_section_size(MAX_FIELD_SECTION_SIZE);
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
    c.set_initial_max_data(t.connection_window);
    c.set_max_connection_window(t.connection_window);
    c.set_initial_max_stream_data_bidi_local(t.stream_window);
    c.set_initial_max_stream_data_bidi_remote(t.stream_window);
    c.set_max_stream_window(t.stream_window);
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
    c.set_initial_congestion_window_packets(t.initial_congestion_window_packets);
    c.set_custom_bbr_params(quiche::BbrParams {
        min_cwnd_packets: Some(min_cwnd_packets(t, largest_head)),
        ..Default::default()
    });
    c.discover_pmtu(t.pmtu_discovery);
    if super::debug::keylog_path().is_some() {
        c.log_keys();
    }
    Ok(c)
}
