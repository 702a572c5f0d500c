//! The `transport` section (both roles): QUIC tuning of the session. Congestion control and
//! pacing (with its cap), timeouts and dead-peer detection (liveness), flow-control windows,
//! UDP buffers, path MTU discovery, connection ID length and loss hiding. Defaults are the
//! `DEFAULT_*` consts of the parent module.

use std::time::Duration;

use super::{file, millis, positive, ConfigError};
use super::{DEFAULT_ACK_DELAY_MS, DEFAULT_CONNECTION_ID_BYTES, MIN_CONNECTION_ID_BYTES};
use super::{
    DEFAULT_CONGESTION_CONTROL, DEFAULT_CONNECTION_WINDOW, DEFAULT_IDLE_TIMEOUT_MS,
    DEFAULT_INITIAL_CWND_PACKETS, DEFAULT_INITIAL_RTT_MS, DEFAULT_KEEPALIVE_INTERVAL_MS,
    DEFAULT_LIVENESS_TIMEOUT_MS, DEFAULT_LOSS_HIDING_INTERACTIVE_BYTES,
    DEFAULT_LOSS_HIDING_MAX_DATAGRAM, DEFAULT_MAX_CONCURRENT_STREAMS, DEFAULT_PACING,
    DEFAULT_PMTU_DISCOVERY, DEFAULT_STREAM_WINDOW, DEFAULT_UDP_BUFFER, MIN_LIVENESS_TIMEOUT_MS,
};
use super::{DEFAULT_LINK_HOLD_WINDOW, MAX_LINK_RATE_MBPS, MAX_LINK_RTT_MS};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CongestionControl {
    Cubic,
    Reno,
    Bbr2,
}

impl CongestionControl {
    /// The name quiche's `set_cc_algorithm_name` takes.
    pub fn quiche_name(self) -> &'static str {
        match self {
            CongestionControl::Cubic => "cubic",
            CongestionControl::Reno => "reno",
            CongestionControl::Bbr2 => "bbr2_gcongestion",
        }
    }
}

#[derive(Debug, Clone)]
pub struct TransportConfig {
    pub congestion_control: CongestionControl,
    pub pacing: bool,
    pub initial_rtt: Duration,
    pub idle_timeout: Duration,
    pub keepalive_interval: Duration,
    /// Declare the peer dead after this long without a packet from it (`None`: off, only the
    /// idle timeout ends a silent session).
    pub liveness_timeout: Option<Duration>,
    pub connection_window: u64,
    pub stream_window: u64,
    pub max_concurrent_streams: u64,
    pub udp_recv_buffer: usize,
    pub udp_send_buffer: usize,
    /// Pacing rate cap in Mbit/s (`None`: the congestion controller decides). Only BBR2 paces.
    pub max_pacing_rate_mbps: Option<u64>,
    /// The path's rate and RTT when the operator knows them (`transport.link`).
    pub link: Option<KnownLink>,
    /// Initial congestion window in packets (quiche's default 10).
    pub initial_congestion_window_packets: usize,
    pub pmtu_discovery: bool,
    /// Bytes of each connection ID this side issues.
    pub connection_id_bytes: usize,
    /// How long an owed ACK may wait for a second full-size datagram or for the answer to
    /// carry it (zero: never).
    pub ack_delay: Duration,
    pub loss_hiding: LossHiding,
}

/// A path whose rate and RTT are known (`transport.link`): the session starts at its
/// bandwidth-delay product instead of probing up to it (see `quic::setup`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KnownLink {
    pub rate_mbps: u64,
    pub rtt: Duration,
    /// BBR2's window never falls below the bandwidth-delay product (no slow start after idle),
    /// nor its pacing below 90% of the rate (`quic::pace_floor`).
    pub hold_window: bool,
}

impl KnownLink {
    /// Bytes in flight that fill the link for one RTT.
    pub fn bdp_bytes(&self) -> u64 {
        (self.rate_mbps as u128 * 1_000_000 / 8 * self.rtt.as_micros() / 1_000_000) as u64
    }

    /// The link's rate in bytes per second.
    pub fn bytes_per_second(&self) -> u64 {
        self.rate_mbps * 1_000_000 / 8
    }
}

/// Which datagrams are sent twice, so that one lost copy costs nothing (see `quic::udp`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LossHidingMode {
    Off,
    /// Datagrams up to `max_datagram` bytes.
    Small,
    /// Every datagram while less than `interactive_bytes` left in the last RTT.
    Interactive,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LossHiding {
    pub mode: LossHidingMode,
    pub max_datagram: usize,
    pub interactive_bytes: u64,
    /// Delay of the second copy (0: right away), to survive short loss bursts.
    pub gap: Duration,
}

pub(super) fn validate(raw: file::TransportFile) -> Result<TransportConfig, ConfigError> {
    let congestion_control = match raw.congestion_control.as_deref() {
        None => DEFAULT_CONGESTION_CONTROL,
        Some("cubic") => CongestionControl::Cubic,
        Some("reno") => CongestionControl::Reno,
        Some("bbr2") => CongestionControl::Bbr2,
        Some(other) => {
            return Err(ConfigError::new(
                "transport.congestion_control",
                format!("unknown algorithm {other:?} (expected \"cubic\", \"reno\" or \"bbr2\")"),
            ))
        }
    };
    let idle_timeout = millis(
        "transport.idle_timeout_ms",
        raw.idle_timeout_ms,
        DEFAULT_IDLE_TIMEOUT_MS,
    )?;
    let keepalive_interval = millis(
        "transport.keepalive_interval_ms",
        raw.keepalive_interval_ms,
        DEFAULT_KEEPALIVE_INTERVAL_MS,
    )?;
    if keepalive_interval * 2 > idle_timeout {
        return Err(ConfigError::new(
            "transport.keepalive_interval_ms",
            "must be at most half of transport.idle_timeout_ms, or the session idles out between keepalives",
        ));
    }
    let liveness_timeout = liveness(raw.liveness_timeout_ms, idle_timeout)?;
    let link = known_link(raw.link, congestion_control)?;
    Ok(TransportConfig {
        congestion_control,
        pacing: raw.pacing.unwrap_or(DEFAULT_PACING),
        initial_rtt: millis(
            "transport.initial_rtt_ms",
            raw.initial_rtt_ms,
            link.map_or(DEFAULT_INITIAL_RTT_MS, |l| l.rtt.as_millis() as u64),
        )?,
        idle_timeout,
        keepalive_interval,
        liveness_timeout,
        connection_window: window(
            "transport.connection_window",
            raw.connection_window,
            DEFAULT_CONNECTION_WINDOW,
        )?,
        stream_window: window(
            "transport.stream_window",
            raw.stream_window,
            DEFAULT_STREAM_WINDOW,
        )?,
        max_concurrent_streams: positive(
            "transport.max_concurrent_streams",
            raw.max_concurrent_streams
                .unwrap_or(DEFAULT_MAX_CONCURRENT_STREAMS),
        )?,
        udp_recv_buffer: positive(
            "transport.udp_recv_buffer",
            raw.udp_recv_buffer.unwrap_or(DEFAULT_UDP_BUFFER),
        )?,
        udp_send_buffer: positive(
            "transport.udp_send_buffer",
            raw.udp_send_buffer.unwrap_or(DEFAULT_UDP_BUFFER),
        )?,
        max_pacing_rate_mbps: pacing_cap(raw.max_pacing_rate_mbps, congestion_control)?,
        link,
        initial_congestion_window_packets: positive(
            "transport.initial_congestion_window_packets",
            raw.initial_congestion_window_packets
                .unwrap_or(DEFAULT_INITIAL_CWND_PACKETS),
        )?,
        pmtu_discovery: raw.pmtu_discovery.unwrap_or(DEFAULT_PMTU_DISCOVERY),
        connection_id_bytes: connection_id_bytes(raw.connection_id_bytes)?,
        ack_delay: ack_delay(raw.ack_delay_ms)?,
        loss_hiding: loss_hiding(raw.loss_hiding)?,
    })
}

/// `transport.connection_id_bytes`: from [`MIN_CONNECTION_ID_BYTES`] to RFC 9000's 20.
fn connection_id_bytes(raw: Option<usize>) -> Result<usize, ConfigError> {
    let n = raw.unwrap_or(DEFAULT_CONNECTION_ID_BYTES);
    let max = quiche::MAX_CONN_ID_LEN;
    if !(MIN_CONNECTION_ID_BYTES..=max).contains(&n) {
        return Err(ConfigError::new(
            "transport.connection_id_bytes",
            format!("must be {MIN_CONNECTION_ID_BYTES} to {max}"),
        ));
    }
    Ok(n)
}

impl TransportConfig {
    /// Whether a completed request or response lets its ACK wait for the answer
    /// (`quic::ack_hold`): under CUBIC and Reno. quiche 0.30's BBR2 learns that its sender is
    /// application-limited only when it builds a packet without stream data (in practice, an
    /// ACK-only packet): with the ACKs riding on requests and responses it never does, takes
    /// the low delivery rates of request/response traffic for the path's bandwidth and paces by
    /// them (4 MiB transfers after a request phase took 3.5x as long on a 50 ms link, and the
    /// 32-client p99 went from 56 to 147 ms). Bulk data received is acknowledged every second
    /// datagram under every controller: the receiving side still sends ACK-only packets.
    pub fn holds_acks_for_answers(&self) -> bool {
        self.congestion_control != CongestionControl::Bbr2
    }
}

/// `transport.ack_delay_ms`: 0 (acknowledge at once) to the `max_ack_delay` quiche advertises,
/// which the peer's loss timers allow for (RFC 9000 §13.2.1).
fn ack_delay(raw: Option<u64>) -> Result<Duration, ConfigError> {
    let delay = Duration::from_millis(raw.unwrap_or(DEFAULT_ACK_DELAY_MS));
    let max = crate::quic::ack_hold::MAX_ACK_DELAY;
    if delay > max {
        return Err(ConfigError::new(
            "transport.ack_delay_ms",
            format!(
                "must be at most {} (the max_ack_delay this side advertises)",
                max.as_millis()
            ),
        ));
    }
    Ok(delay)
}

/// `transport.liveness_timeout_ms`: 0 is off; otherwise long enough not to mistake scheduling
/// noise for death, and shorter than the idle timeout (or it would never act first). Left
/// unset with an idle timeout at or below the default, the idle timeout is the quicker check.
fn liveness(ms: Option<u64>, idle_timeout: Duration) -> Result<Option<Duration>, ConfigError> {
    let field = "transport.liveness_timeout_ms";
    let ms = match ms {
        Some(ms) => ms,
        None if Duration::from_millis(DEFAULT_LIVENESS_TIMEOUT_MS) >= idle_timeout => 0,
        None => DEFAULT_LIVENESS_TIMEOUT_MS,
    };
    if ms == 0 {
        return Ok(None);
    }
    if ms < MIN_LIVENESS_TIMEOUT_MS {
        return Err(ConfigError::new(
            field,
            format!("must be 0 (off) or at least {MIN_LIVENESS_TIMEOUT_MS} ms"),
        ));
    }
    let timeout = Duration::from_millis(ms);
    if timeout >= idle_timeout {
        return Err(ConfigError::new(
            field,
            "must be shorter than transport.idle_timeout_ms (or 0 to leave dead-peer detection to the idle timeout)",
        ));
    }
    Ok(Some(timeout))
}

/// A pacing cap only means something where quiche paces: BBR2. Refused with CUBIC or Reno
/// rather than silently ignored.
fn pacing_cap(mbps: Option<u64>, cc: CongestionControl) -> Result<Option<u64>, ConfigError> {
    let Some(mbps) = mbps else { return Ok(None) };
    let field = "transport.max_pacing_rate_mbps";
    if cc != CongestionControl::Bbr2 {
        return Err(ConfigError::new(
            field,
            "only bbr2 paces packets; with cubic or reno a cap would have no effect",
        ));
    }
    positive(field, mbps).map(Some)
}

/// `transport.link`: a rate up to `MAX_LINK_RATE_MBPS` and an RTT up to `MAX_LINK_RTT_MS`. Holding the window
/// (and the rate) is BBR2's floor; with CUBIC or Reno an explicit `hold_window: true` is refused (it would
/// have no effect) and the default is off.
fn known_link(
    raw: Option<file::LinkFile>,
    cc: CongestionControl,
) -> Result<Option<KnownLink>, ConfigError> {
    let Some(raw) = raw else { return Ok(None) };
    let rate_mbps = positive("transport.link.rate_mbps", raw.rate_mbps)?;
    if rate_mbps > MAX_LINK_RATE_MBPS {
        return Err(ConfigError::new(
            "transport.link.rate_mbps",
            format!("must be at most {MAX_LINK_RATE_MBPS} Mbit/s"),
        ));
    }
    let rtt_ms = positive("transport.link.rtt_ms", raw.rtt_ms)?;
    if rtt_ms > MAX_LINK_RTT_MS {
        return Err(ConfigError::new(
            "transport.link.rtt_ms",
            format!("must be at most {MAX_LINK_RTT_MS} ms"),
        ));
    }
    let bbr2 = cc == CongestionControl::Bbr2;
    if raw.hold_window == Some(true) && !bbr2 {
        return Err(ConfigError::new(
            "transport.link.hold_window",
            "only bbr2 has a window floor; with cubic or reno it would have no effect",
        ));
    }
    Ok(Some(KnownLink {
        rate_mbps,
        rtt: Duration::from_millis(rtt_ms),
        hold_window: raw.hold_window.unwrap_or(DEFAULT_LINK_HOLD_WINDOW) && bbr2,
    }))
}

fn loss_hiding(raw: Option<file::LossHidingFile>) -> Result<LossHiding, ConfigError> {
    let Some(raw) = raw else {
        return Ok(LossHiding {
            mode: LossHidingMode::Off,
            max_datagram: DEFAULT_LOSS_HIDING_MAX_DATAGRAM,
            interactive_bytes: DEFAULT_LOSS_HIDING_INTERACTIVE_BYTES,
            gap: Duration::ZERO,
        });
    };
    let mode = match raw.mode.as_str() {
        "off" => LossHidingMode::Off,
        "small" => LossHidingMode::Small,
        "interactive" => LossHidingMode::Interactive,
        other => {
            return Err(ConfigError::new(
                "transport.loss_hiding.mode",
                format!("unknown mode {other:?} (expected \"off\", \"small\" or \"interactive\")"),
            ))
        }
    };
    Ok(LossHiding {
        mode,
        max_datagram: positive(
            "transport.loss_hiding.max_datagram",
            raw.max_datagram.unwrap_or(DEFAULT_LOSS_HIDING_MAX_DATAGRAM),
        )?,
        interactive_bytes: positive(
            "transport.loss_hiding.interactive_bytes",
            raw.interactive_bytes
                .unwrap_or(DEFAULT_LOSS_HIDING_INTERACTIVE_BYTES),
        )?,
        gap: Duration::from_millis(raw.gap_ms.unwrap_or(0)),
    })
}

/// Flow-control windows: at least one full datagram, at most what QUIC can express (2^62).
fn window(field: &str, value: Option<u64>, default: u64) -> Result<u64, ConfigError> {
    let v = value.unwrap_or(default);
    if !(1500..(1 << 62)).contains(&v) {
        return Err(ConfigError::new(
            field,
            "must be between 1500 and 2^62 bytes",
        ));
    }
    Ok(v)
}
