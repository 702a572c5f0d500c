//! Configuration: one JSON file per side, loaded in two layers.
//!
//! 1. [`file`] mirrors the JSON with serde (`deny_unknown_fields`, optional fields).
//! 2. [`load`] validates it into a [`Config`] of typed values (`Duration`, `SocketAddr`, enums,
//!    absolute paths). Every default is a `DEFAULT_*` const below, every error is a
//!    [`ConfigError`] naming the field. Relative paths resolve against the config file's folder.
//!    The `transport`, `http` and `admission` sections are validated in sibling modules of
//!    those names; the role-level assembly and shared checks stay here.
//!
//! Nothing outside this module reads JSON or knows a default.

mod compression;
mod file;
mod http;
mod json_error;
pub mod peers;
pub mod services;
mod transport;
mod values;

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use values::{host_port, millis, positive, socket_addr, ticket_key, tls_files};

pub use crate::resolve::HostPort;
pub use compression::CompressionPolicy;
pub use http::{ClientHttpConfig, Forwarding, ServerHttpConfig};
pub use peers::{PeerGroup, Policy, DEFAULT_PEER};
pub use services::{ConnectTo, ListenerRules, Route, ServiceConfig, Services};
pub use transport::{CongestionControl, KnownLink, LossHiding, LossHidingMode, TransportConfig};

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
/// `transport.link.hold_window`: with a known link, BBR2's window never falls below the link's
/// bandwidth-delay product nor its pacing below 90% of the link's rate, so a transfer after an
/// idle period or a low estimate goes at the link's rate (`quic::pace_floor`).
pub const DEFAULT_LINK_HOLD_WINDOW: bool = true;
/// `transport.link.rtt_ms` at most this (a known RTT beyond it is a configuration mistake).
pub const MAX_LINK_RTT_MS: u64 = 10_000;
/// `transport.link.rate_mbps` at most this (1 Tbit/s).
pub const MAX_LINK_RATE_MBPS: u64 = 1_000_000;
/// Bytes of each connection ID this side issues (RFC 9000 allows 0-20; every packet to this
/// side carries one). Eight random bytes route and keep connections apart on a point-to-point
/// link, where quiche's default 20 cost 12 bytes more in every packet.
pub const DEFAULT_CONNECTION_ID_BYTES: usize = 8;
/// The shortest connection ID this side issues (the server routes by them; a Retry's is 8).
pub const MIN_CONNECTION_ID_BYTES: usize = 4;
/// How long an owed ACK may wait (`transport.ack_delay_ms`) for a second full-size datagram, or
/// under CUBIC and Reno for the answer to a completed request or response to carry it
/// (`TransportConfig::holds_acks_for_answers`). Loopback upstreams and callers answer within a
/// millisecond; a slower answer costs one ACK-only datagram as before.
pub const DEFAULT_ACK_DELAY_MS: u64 = 5;
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
/// Server side: a WebSocket tunnel moving no byte either way for this long is reset (5 min).
pub const DEFAULT_TUNNEL_IDLE_TIMEOUT_MS: u64 = 300_000;
/// The longest `http.tunnel_idle_timeout_ms` (one day).
pub const MAX_TUNNEL_IDLE_TIMEOUT_MS: u64 = 86_400_000;
pub const DEFAULT_EARLY_DATA: bool = true;
/// `http.compression.enabled`: off, since compressing secrets together with bytes an attacker
/// controls leaks them through the length (BREACH, VORACLE); see the README.
pub const DEFAULT_COMPRESSION_ENABLED: bool = false;
/// `http.compression.min_bytes`: a body declaring fewer bytes goes plain (the frame header and
/// checksum cost ~15 bytes; below 1 KiB little is gained).
pub const DEFAULT_COMPRESSION_MIN_BYTES: u64 = 1024;
/// `http.compression.min_bytes` on a session using a shared dictionary
/// (`http.compression.dictionary`) when `min_bytes` is not set: measured with API-like JSON
/// and a 16 KiB dictionary, 128 bytes become 38 (122 without it), 512 become 89 (236): the
/// ~20 bytes of the link-encoding field are repaid from about 100 bytes up.
pub const DEFAULT_COMPRESSION_MIN_BYTES_WITH_DICTIONARY: u64 = 128;
/// `http.compression.types`: text, JSON, XML, JavaScript and form data (not protobuf, images,
/// archives: already dense).
pub const DEFAULT_COMPRESSION_TYPES: &[&str] = &[
    "text/*",
    "application/json",
    "+json",
    "application/xml",
    "+xml",
    "application/javascript",
    "application/x-www-form-urlencoded",
];
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
/// Idle upstream connections kept per service: at least the requests a busy client keeps in
/// flight, or the pool closes connections between bursts only to open them again (at 32, 64
/// clients made it connect anew for a fifth to a third of all requests). Idle ones still close
/// after `upstream.idle_timeout_ms`, and hold no buffer memory.
pub const DEFAULT_UPSTREAM_MAX_IDLE: usize = 256;
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
    /// Each listener's routes and allowed sources (same order as `listen`).
    pub listener_rules: Vec<ListenerRules>,
    /// The servers it keeps sessions to (one named `default` for the single `peer`).
    pub peers: Vec<PeerConfig>,
    /// A peer silent this long takes no new requests (`peer_silence_ms`; `None`: derived
    /// from the path, see `client::peers`).
    pub peer_silence: Option<Duration>,
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
    /// The named services and the default one (the top-level `upstream`).
    pub services: Services,
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
    /// Routes and metrics name it by this.
    pub name: String,
    /// `HOST:PORT`; a name is resolved to all its addresses at each round of attempts.
    pub address: HostPort,
    /// DNS name or IP address the server certificate must carry.
    pub server_name: String,
    /// A session to each address the name resolves to (`sessions: per_address`), instead of
    /// one session to the first address that answers.
    pub per_address: bool,
}

#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Debug, Clone)]
pub struct ReconnectConfig {
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    /// An attempt with no completed handshake by then is abandoned (and reported at once).
    pub handshake_timeout: Duration,
}

/// How a service's requests are spread over its healthy addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Balance {
    RoundRobin,
    /// The address with the fewest connections in use.
    LeastOutstanding,
}

pub const DEFAULT_BALANCE: Balance = Balance::RoundRobin;
pub const DEFAULT_HEALTH_CHECK_INTERVAL_MS: u64 = 2_000;
pub const DEFAULT_HEALTH_CHECK_TIMEOUT_MS: u64 = 1_000;

/// Active checks of a service's addresses: `GET path` every `interval`, answered in `timeout`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheck {
    pub path: String,
    pub interval: Duration,
    pub timeout: Duration,
}

#[derive(Debug, Clone)]
pub struct UpstreamConfig {
    /// `HOST:PORT` targets; each name is resolved to all its addresses (off the loop).
    pub addresses: Vec<HostPort>,
    pub balance: Balance,
    /// Active checks; `None`: health is passive only (failed connects).
    pub health_check: Option<HealthCheck>,
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

    /// Its `http.compression` section.
    pub fn compression(&self) -> &CompressionPolicy {
        match self {
            Config::Client(c) => &c.http.compression,
            Config::Server(s) => &s.http.compression,
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
    let peers = peers::peers(raw.peer, raw.peers)?;
    let (listen, listener_rules) = services::client(&raw.listen, raw.listeners, &peers)?
        .into_iter()
        .unzip();
    let peer_silence = raw
        .peer_silence_ms
        .map(|ms| positive("peer_silence_ms", ms).map(Duration::from_millis))
        .transpose()?;
    let http = raw.http;
    let transport_cfg = transport::validate(raw.transport)?;
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
        listener_rules,
        peers,
        peer_silence,
        tls: tls_files(base, &raw.tls.ca, &raw.tls.cert, &raw.tls.key)?,
        transport: transport_cfg,
        http: http::client(&http, base)?,
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
        services: services::server(raw.upstream, raw.connect_to, raw.services)?,
        tls: tls_files(base, &raw.tls.ca, &raw.tls.cert, &raw.tls.key)?,
        allowed_client_names,
        transport: transport::validate(raw.transport)?,
        http: http::server(&raw.http, base)?,
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

mod admission;
pub use admission::{AdmissionConfig, RetryMode};

#[cfg(test)]
mod tests;
