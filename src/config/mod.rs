//! Configuration: one JSON file per side, loaded in two layers.
//!
//! 1. [`file`] mirrors the JSON with serde (`deny_unknown_fields`, optional fields).
//! 2. [`load`] validates it into a [`Config`] of typed values (`Duration`, `SocketAddr`, enums,
//!    absolute paths). Every default is a `DEFAULT_*` const below, every error is a
//!    [`ConfigError`] naming the field. Relative paths resolve against the config file's folder.
//!
//! Nothing outside this module reads JSON or knows a default.

mod file;
mod json_error;

use std::fmt;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use crate::resolve::HostPort;

/// BBR2: on the lossy links ptproxy is made for, loss-based CUBIC collapses (10 MiB at 1% loss
/// and 50 ms RTT: 25 s with CUBIC, 0.9 s with BBR2 in `benches/`).
pub const DEFAULT_CONGESTION_CONTROL: CongestionControl = CongestionControl::Bbr2;
pub const DEFAULT_PACING: bool = true;
pub const DEFAULT_INITIAL_RTT_MS: u64 = 100;
pub const DEFAULT_IDLE_TIMEOUT_MS: u64 = 30_000;
pub const DEFAULT_KEEPALIVE_INTERVAL_MS: u64 = 5_000;
/// A peer silent this long is declared dead (see `quic::liveness`); 0 turns detection off.
pub const DEFAULT_LIVENESS_TIMEOUT_MS: u64 = 3_000;
/// Shortest liveness timeout accepted: below it, scheduling noise alone could look like death.
pub const MIN_LIVENESS_TIMEOUT_MS: u64 = 200;
pub const DEFAULT_CONNECTION_WINDOW: u64 = 16 * 1024 * 1024;
pub const DEFAULT_STREAM_WINDOW: u64 = 4 * 1024 * 1024;
pub const DEFAULT_MAX_CONCURRENT_STREAMS: u64 = 1000;
pub const DEFAULT_UDP_BUFFER: usize = 4 * 1024 * 1024;
pub const DEFAULT_INITIAL_CWND_PACKETS: usize = 10;
pub const DEFAULT_PMTU_DISCOVERY: bool = true;
pub const DEFAULT_LOSS_HIDING_MAX_DATAGRAM: usize = 1300;
pub const DEFAULT_LOSS_HIDING_INTERACTIVE_BYTES: u64 = 32 * 1024;
pub const DEFAULT_SESSION_WAIT_MS: u64 = 2_000;
pub const DEFAULT_MAX_CONNECTIONS: usize = 4096;
pub const DEFAULT_HEAD_TIMEOUT_MS: u64 = 10_000;
pub const DEFAULT_KEEPALIVE_TIMEOUT_MS: u64 = 60_000;
/// Client side: longest wait for the next byte of a request body.
pub const DEFAULT_BODY_TIMEOUT_MS: u64 = 10_000;
pub const DEFAULT_MAX_HEAD_BYTES: usize = 64 * 1024;
pub const DEFAULT_ACCESS_LOG: bool = true;
pub const DEFAULT_FORWARDED: bool = true;
pub const DEFAULT_DRAIN_TIMEOUT_MS: u64 = 10_000;
pub const DEFAULT_EARLY_DATA: bool = true;
/// Methods sent in 0-RTT by default: safe ones, harmless if an attacker replays them.
pub const DEFAULT_EARLY_DATA_METHODS: &[&str] = &["GET", "HEAD", "OPTIONS"];
/// Size of a TLS session ticket key file (BoringSSL: name, HMAC and AES keys).
pub const TICKET_KEY_LEN: usize = 48;
pub const DEFAULT_LOG_LEVEL: log::LevelFilter = log::LevelFilter::Info;
pub const DEFAULT_VIA: bool = true;
pub const DEFAULT_X_FORWARDED_FOR: bool = false;
pub const DEFAULT_INITIAL_BACKOFF_MS: u64 = 100;
pub const DEFAULT_MAX_BACKOFF_MS: u64 = 5_000;
pub const DEFAULT_UPSTREAM_CONNECT_TIMEOUT_MS: u64 = 3_000;
pub const DEFAULT_UPSTREAM_RESPONSE_TIMEOUT_MS: u64 = 30_000;
pub const DEFAULT_UPSTREAM_MAX_IDLE: usize = 32;
pub const DEFAULT_UPSTREAM_IDLE_TIMEOUT_MS: u64 = 30_000;
pub const DEFAULT_RETRY: RetryMode = RetryMode::Auto;
pub const DEFAULT_MAX_HANDSHAKES: usize = 32;
pub const DEFAULT_MAX_SESSIONS: usize = 64;
pub const DEFAULT_HANDSHAKE_TIMEOUT_MS: u64 = 5_000;
pub const DEFAULT_SOURCE_RATE: u32 = 10;
pub const DEFAULT_SOURCE_BURST: u32 = 20;
/// Listening sockets are not shared with other processes unless asked (`reuse_port`, `--cpu`).
pub const DEFAULT_REUSE_PORT: bool = false;
/// Default handshake timeout: this many initial RTTs (`transport.initial_rtt_ms`)...
pub const DEFAULT_HANDSHAKE_TIMEOUT_RTTS: u32 = 30;
/// ...but at least this long (and never beyond `transport.idle_timeout_ms`).
pub const MIN_DEFAULT_HANDSHAKE_TIMEOUT_MS: u64 = 3_000;

/// Which side of the link this process is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Client,
    Server,
}

/// A validated configuration for either role.
#[derive(Debug, Clone)]
pub enum Config {
    Client(ClientConfig),
    Server(ServerConfig),
}

#[derive(Debug, Clone)]
pub struct ClientConfig {
    pub listen: Vec<SocketAddr>,
    pub peer: PeerConfig,
    pub tls: TlsFiles,
    pub transport: TransportConfig,
    pub http: ClientHttpConfig,
    pub reconnect: ReconnectConfig,
    pub ops: OpsConfig,
    /// Resume with 0-RTT after a reconnect (`tls.early_data`).
    pub early_data: bool,
    /// Share the listen addresses with other processes (SO_REUSEPORT; `reuse_port`, `--cpu`).
    pub reuse_port: bool,
}

/// Operating settings both roles share.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpsConfig {
    /// Where `/metrics` and `/health` are served; `None` = no listener.
    pub metrics_listen: Option<SocketAddr>,
    /// Log level when `RUST_LOG` is not set (changeable by SIGHUP).
    pub log_level: log::LevelFilter,
    /// How long a graceful stop waits for requests in flight.
    pub drain_timeout: Duration,
    /// Where each QUIC connection writes a qlog trace (`None` = no qlog).
    pub qlog_dir: Option<PathBuf>,
}

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub upstream: UpstreamConfig,
    pub tls: TlsFiles,
    /// Client certificate names (DNS SAN or CN) allowed in; `None` admits any the CA signed.
    pub allowed_client_names: Option<Vec<String>>,
    pub transport: TransportConfig,
    pub http: ServerHttpConfig,
    /// Which new handshakes are taken on (`admission.*`).
    pub admission: AdmissionConfig,
    pub ops: OpsConfig,
    /// Accept 0-RTT from resuming clients (`tls.early_data`).
    pub early_data: bool,
    /// Session ticket key from `tls.ticket_key_file`, so tickets survive restarts.
    pub ticket_key: Option<Vec<u8>>,
    /// Share the QUIC address with other processes (SO_REUSEPORT; `reuse_port`, `--cpu`).
    pub reuse_port: bool,
}

#[derive(Debug, Clone)]
pub struct PeerConfig {
    /// `HOST:PORT`; a name is resolved to all its addresses at each round of attempts.
    pub address: HostPort,
    /// DNS name or IP address the server certificate must carry.
    pub server_name: String,
}

#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

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
    /// Initial congestion window in packets (quiche's default 10).
    pub initial_congestion_window_packets: usize,
    pub pmtu_discovery: bool,
    pub loss_hiding: LossHiding,
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

#[derive(Debug, Clone)]
pub struct ClientHttpConfig {
    pub session_wait: Duration,
    pub max_connections: usize,
    pub head_timeout: Duration,
    pub keepalive_timeout: Duration,
    pub max_head_bytes: usize,
    /// Largest request body accepted (413 beyond); `None` = no limit.
    pub max_body_bytes: Option<u64>,
    pub access_log: bool,
    /// Which forwarding fields the client side adds to requests.
    pub forwarding: Forwarding,
    /// Methods that may travel in 0-RTT (replayable; keep them idempotent).
    pub early_data_methods: Vec<String>,
    /// A request body that brings no byte for this long is given up (408, or a reset once
    /// the response started).
    pub body_timeout: Duration,
}

/// Forwarding fields added to each request (RFC 7239 `Forwarded`, `Via`, `X-Forwarded-For`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Forwarding {
    pub forwarded: bool,
    pub via: bool,
    pub x_forwarded_for: bool,
}

#[derive(Debug, Clone)]
pub struct ServerHttpConfig {
    pub access_log: bool,
    pub max_head_bytes: usize,
}

#[derive(Debug, Clone)]
pub struct ReconnectConfig {
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    /// An attempt with no completed handshake by then is abandoned (and reported at once).
    pub handshake_timeout: Duration,
}

#[derive(Debug, Clone)]
pub struct UpstreamConfig {
    /// `HOST:PORT`; a name is resolved to all its addresses, re-resolved when they all fail.
    pub address: HostPort,
    pub connect_timeout: Duration,
    pub response_timeout: Duration,
    pub max_idle: usize,
    pub idle_timeout: Duration,
}

impl Config {
    /// Shares the listen addresses with other processes (`--cpu` implies it).
    pub fn set_reuse_port(&mut self) {
        match self {
            Config::Client(c) => c.reuse_port = true,
            Config::Server(s) => s.reuse_port = true,
        }
    }
}

/// A configuration problem, naming the field (dotted JSON path) and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub field: String,
    pub reason: String,
}

impl ConfigError {
    fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        ConfigError {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.reason)
    }
}

impl std::error::Error for ConfigError {}

/// Reads, parses and validates the config file at `path` for `role`.
pub fn load(path: &Path, role: Role) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError::new(path.display().to_string(), format!("cannot read: {e}")))?;
    let base = path.parent().unwrap_or(Path::new("."));
    parse(&text, base, role)
}

/// Parses and validates config text; `base` is the folder relative paths resolve against.
pub fn parse(text: &str, base: &Path, role: Role) -> Result<Config, ConfigError> {
    let json_error = |e: serde_json::Error| json_error::config_error(text, &e);
    match role {
        Role::Client => {
            let raw: file::ClientFile = serde_json::from_str(text).map_err(json_error)?;
            client(raw, base).map(Config::Client)
        }
        Role::Server => {
            let raw: file::ServerFile = serde_json::from_str(text).map_err(json_error)?;
            server(raw, base).map(Config::Server)
        }
    }
}

fn client(raw: file::ClientFile, base: &Path) -> Result<ClientConfig, ConfigError> {
    if raw.listen.is_empty() {
        return Err(ConfigError::new("listen", "needs at least one address"));
    }
    let listen = raw
        .listen
        .iter()
        .enumerate()
        .map(|(i, a)| socket_addr(&format!("listen[{i}]"), a))
        .collect::<Result<Vec<_>, _>>()?;
    let server_name = raw.peer.server_name.trim().to_string();
    if server_name.is_empty() {
        return Err(ConfigError::new("peer.server_name", "must not be empty"));
    }
    // What the server certificate must carry (SNI and the name check): a name no certificate
    // can match would only fail every handshake after the start.
    crate::certs::ServerName::parse(&server_name)
        .map_err(|e| ConfigError::new("peer.server_name", e.to_string()))?;
    let http = raw.http;
    let transport_cfg = transport(raw.transport)?;
    let reconnect = ReconnectConfig {
        initial_backoff: millis(
            "reconnect.initial_backoff_ms",
            raw.reconnect.initial_backoff_ms,
            DEFAULT_INITIAL_BACKOFF_MS,
        )?,
        max_backoff: millis(
            "reconnect.max_backoff_ms",
            raw.reconnect.max_backoff_ms,
            DEFAULT_MAX_BACKOFF_MS,
        )?,
        handshake_timeout: handshake_timeout(raw.reconnect.handshake_timeout_ms, &transport_cfg)?,
    };
    if reconnect.max_backoff < reconnect.initial_backoff {
        return Err(ConfigError::new(
            "reconnect.max_backoff_ms",
            "must not be smaller than reconnect.initial_backoff_ms",
        ));
    }
    Ok(ClientConfig {
        listen,
        peer: PeerConfig {
            address: host_port("peer.address", &raw.peer.address)?,
            server_name,
        },
        tls: tls_files(base, &raw.tls.ca, &raw.tls.cert, &raw.tls.key)?,
        transport: transport_cfg,
        http: ClientHttpConfig {
            session_wait: millis(
                "http.session_wait_ms",
                http.session_wait_ms,
                DEFAULT_SESSION_WAIT_MS,
            )?,
            max_connections: positive(
                "http.max_connections",
                http.max_connections.unwrap_or(DEFAULT_MAX_CONNECTIONS),
            )?,
            head_timeout: millis(
                "http.head_timeout_ms",
                http.head_timeout_ms,
                DEFAULT_HEAD_TIMEOUT_MS,
            )?,
            keepalive_timeout: millis(
                "http.keepalive_timeout_ms",
                http.keepalive_timeout_ms,
                DEFAULT_KEEPALIVE_TIMEOUT_MS,
            )?,
            max_head_bytes: head_bytes("http.max_head_bytes", http.max_head_bytes)?,
            max_body_bytes: http
                .max_body_bytes
                .map(|v| positive("http.max_body_bytes", v))
                .transpose()?,
            access_log: http.access_log.unwrap_or(DEFAULT_ACCESS_LOG),
            early_data_methods: early_data_methods(http.early_data_methods.clone())?,
            forwarding: Forwarding {
                forwarded: http.forwarded.unwrap_or(DEFAULT_FORWARDED),
                via: http.via.unwrap_or(DEFAULT_VIA),
                x_forwarded_for: http.x_forwarded_for.unwrap_or(DEFAULT_X_FORWARDED_FOR),
            },
            body_timeout: millis(
                "http.body_timeout_ms",
                http.body_timeout_ms,
                DEFAULT_BODY_TIMEOUT_MS,
            )?,
        },
        reconnect,
        ops: ops(
            base,
            raw.metrics,
            raw.log_level.as_deref(),
            http.drain_timeout_ms,
            raw.debug,
        )?,
        early_data: raw.tls.early_data.unwrap_or(DEFAULT_EARLY_DATA),
        reuse_port: raw.reuse_port.unwrap_or(DEFAULT_REUSE_PORT),
    })
}

/// `reconnect.handshake_timeout_ms`, or the default derived from the initial RTT.
fn handshake_timeout(ms: Option<u64>, t: &TransportConfig) -> Result<Duration, ConfigError> {
    let field = "reconnect.handshake_timeout_ms";
    let Some(ms) = ms else {
        let derived = (t.initial_rtt * DEFAULT_HANDSHAKE_TIMEOUT_RTTS)
            .max(Duration::from_millis(MIN_DEFAULT_HANDSHAKE_TIMEOUT_MS));
        return Ok(derived.min(t.idle_timeout));
    };
    let timeout = Duration::from_millis(positive(field, ms)?);
    if timeout > t.idle_timeout {
        return Err(ConfigError::new(
            field,
            "must not exceed transport.idle_timeout_ms (the idle timeout would end the attempt first)",
        ));
    }
    Ok(timeout)
}

fn ops(
    base: &Path,
    metrics: Option<file::MetricsFile>,
    log_level: Option<&str>,
    drain_timeout_ms: Option<u64>,
    debug: Option<file::DebugFile>,
) -> Result<OpsConfig, ConfigError> {
    let qlog_dir = match debug.and_then(|d| d.qlog_dir) {
        None => None,
        Some(dir) => {
            let full = base.join(&dir);
            if !full.is_dir() {
                return Err(ConfigError::new(
                    "debug.qlog_dir",
                    format!("{} is not a directory", full.display()),
                ));
            }
            Some(full)
        }
    };
    let metrics_listen = metrics
        .map(|m| socket_addr("metrics.listen", &m.listen))
        .transpose()?;
    let log_level = match log_level {
        None => DEFAULT_LOG_LEVEL,
        Some(text) => text.parse().map_err(|_| {
            ConfigError::new(
                "log_level",
                format!("{text:?} is not one of off, error, warn, info, debug, trace"),
            )
        })?,
    };
    Ok(OpsConfig {
        metrics_listen,
        log_level,
        drain_timeout: millis(
            "http.drain_timeout_ms",
            drain_timeout_ms,
            DEFAULT_DRAIN_TIMEOUT_MS,
        )?,
        qlog_dir,
    })
}

fn server(raw: file::ServerFile, base: &Path) -> Result<ServerConfig, ConfigError> {
    let up = raw.upstream;
    let allowed_client_names = match raw.tls.allowed_client_names {
        Some(names) if names.is_empty() => {
            return Err(ConfigError::new(
                "tls.allowed_client_names",
                "an empty list would refuse every client; omit the field to admit any client the CA signed",
            ))
        }
        other => other,
    };
    Ok(ServerConfig {
        listen: socket_addr("listen", &raw.listen)?,
        upstream: UpstreamConfig {
            address: host_port("upstream.address", &up.address)?,
            connect_timeout: millis(
                "upstream.connect_timeout_ms",
                up.connect_timeout_ms,
                DEFAULT_UPSTREAM_CONNECT_TIMEOUT_MS,
            )?,
            response_timeout: millis(
                "upstream.response_timeout_ms",
                up.response_timeout_ms,
                DEFAULT_UPSTREAM_RESPONSE_TIMEOUT_MS,
            )?,
            max_idle: up.max_idle.unwrap_or(DEFAULT_UPSTREAM_MAX_IDLE),
            idle_timeout: millis(
                "upstream.idle_timeout_ms",
                up.idle_timeout_ms,
                DEFAULT_UPSTREAM_IDLE_TIMEOUT_MS,
            )?,
        },
        tls: tls_files(base, &raw.tls.ca, &raw.tls.cert, &raw.tls.key)?,
        allowed_client_names,
        transport: transport(raw.transport)?,
        http: ServerHttpConfig {
            access_log: raw.http.access_log.unwrap_or(DEFAULT_ACCESS_LOG),
            max_head_bytes: head_bytes("http.max_head_bytes", raw.http.max_head_bytes)?,
        },
        admission: admission::validate(raw.admission)?,
        ops: ops(
            base,
            raw.metrics,
            raw.log_level.as_deref(),
            raw.http.drain_timeout_ms,
            raw.debug,
        )?,
        early_data: raw.tls.early_data.unwrap_or(DEFAULT_EARLY_DATA),
        ticket_key: raw
            .tls
            .ticket_key_file
            .as_deref()
            .map(|p| ticket_key(base, p))
            .transpose()?,
        reuse_port: raw.reuse_port.unwrap_or(DEFAULT_REUSE_PORT),
    })
}

fn early_data_methods(raw: Option<Vec<String>>) -> Result<Vec<String>, ConfigError> {
    let methods = raw.unwrap_or_else(|| {
        DEFAULT_EARLY_DATA_METHODS
            .iter()
            .map(|m| m.to_string())
            .collect()
    });
    for m in &methods {
        let token = !m.is_empty()
            && m.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
        if !token {
            return Err(ConfigError::new(
                "http.early_data_methods",
                format!("{m:?} is not a method name"),
            ));
        }
    }
    Ok(methods)
}

/// Reads the 48-byte session ticket key.
fn ticket_key(base: &Path, path: &str) -> Result<Vec<u8>, ConfigError> {
    let full = existing_file(base, "tls.ticket_key_file", path)?;
    let key = std::fs::read(&full)
        .map_err(|e| ConfigError::new("tls.ticket_key_file", format!("{}: {e}", full.display())))?;
    if key.len() != TICKET_KEY_LEN {
        return Err(ConfigError::new(
            "tls.ticket_key_file",
            format!("{} holds {} bytes; it must hold exactly {TICKET_KEY_LEN} random bytes (head -c 48 /dev/urandom)", full.display(), key.len()),
        ));
    }
    Ok(key)
}

fn transport(raw: file::TransportFile) -> Result<TransportConfig, ConfigError> {
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
    Ok(TransportConfig {
        congestion_control,
        pacing: raw.pacing.unwrap_or(DEFAULT_PACING),
        initial_rtt: millis(
            "transport.initial_rtt_ms",
            raw.initial_rtt_ms,
            DEFAULT_INITIAL_RTT_MS,
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
        initial_congestion_window_packets: positive(
            "transport.initial_congestion_window_packets",
            raw.initial_congestion_window_packets
                .unwrap_or(DEFAULT_INITIAL_CWND_PACKETS),
        )?,
        pmtu_discovery: raw.pmtu_discovery.unwrap_or(DEFAULT_PMTU_DISCOVERY),
        loss_hiding: loss_hiding(raw.loss_hiding)?,
    })
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

/// A positive duration in milliseconds, or the default.
fn millis(field: &str, value: Option<u64>, default: u64) -> Result<Duration, ConfigError> {
    let ms = positive(field, value.unwrap_or(default))?;
    Ok(Duration::from_millis(ms))
}

fn positive<T: PartialOrd + Default>(field: &str, value: T) -> Result<T, ConfigError> {
    if value > T::default() {
        Ok(value)
    } else {
        Err(ConfigError::new(field, "must be greater than zero"))
    }
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

fn head_bytes(field: &str, value: Option<usize>) -> Result<usize, ConfigError> {
    let v = value.unwrap_or(DEFAULT_MAX_HEAD_BYTES);
    if !(1024..=1024 * 1024).contains(&v) {
        return Err(ConfigError::new(
            field,
            "must be between 1024 and 1048576 bytes",
        ));
    }
    Ok(v)
}

fn socket_addr(field: &str, text: &str) -> Result<SocketAddr, ConfigError> {
    if let Ok(addr) = text.parse() {
        return Ok(addr);
    }
    let mut found = text.to_socket_addrs().map_err(|e| {
        ConfigError::new(field, format!("{text:?} is not a HOST:PORT address ({e})"))
    })?;
    found
        .next()
        .ok_or_else(|| ConfigError::new(field, format!("{text:?} resolves to no address")))
}

/// A `HOST:PORT` target: syntax checked now, the name resolved when connecting.
fn host_port(field: &str, text: &str) -> Result<HostPort, ConfigError> {
    HostPort::parse(text).map_err(|reason| ConfigError::new(field, reason))
}

fn tls_files(base: &Path, ca: &str, cert: &str, key: &str) -> Result<TlsFiles, ConfigError> {
    Ok(TlsFiles {
        ca: existing_file(base, "tls.ca", ca)?,
        cert: existing_file(base, "tls.cert", cert)?,
        key: existing_file(base, "tls.key", key)?,
    })
}

/// Resolves `path` against `base` and checks that it names a readable file.
fn existing_file(base: &Path, field: &str, path: &str) -> Result<PathBuf, ConfigError> {
    if path.is_empty() {
        return Err(ConfigError::new(field, "must not be empty"));
    }
    let full = base.join(path);
    match std::fs::metadata(&full) {
        Ok(m) if m.is_file() => Ok(full),
        Ok(_) => Err(ConfigError::new(
            field,
            format!("{} is not a file", full.display()),
        )),
        Err(e) => Err(ConfigError::new(field, format!("{}: {e}", full.display()))),
    }
}

mod admission;
pub use admission::{AdmissionConfig, RetryMode};

#[cfg(test)]
mod tests;
