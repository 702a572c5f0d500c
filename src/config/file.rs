//! The JSON configuration as written on disk: a serde mirror with every optional field an
//! `Option`, unknown fields rejected. Nothing here interprets values; `config::validate` turns a
//! `ClientFile`/`ServerFile` into a checked [`super::Config`].
//!
//! Services arrive as optional fields beside the single-service ones (`services` beside
//! `upstream` on the server, `listeners` beside `listen` on the client), so older files stay
//! valid.

use serde::Deserialize;

/// `--role client` file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientFile {
    #[serde(default)]
    pub listen: Vec<String>,
    /// Listeners with routes to named services (instead of, or beside, `listen`).
    #[serde(default)]
    pub listeners: Vec<ListenerFile>,
    /// The one server (named `default`), or `peers` for several.
    pub peer: Option<PeerFile>,
    pub peers: Option<Vec<PeerFile>>,
    /// A peer silent this long takes no new requests (default: derived from the path).
    pub peer_silence_ms: Option<u64>,
    pub tls: ClientTlsFile,
    #[serde(default)]
    pub transport: TransportFile,
    #[serde(default)]
    pub http: ClientHttpFile,
    #[serde(default)]
    pub reconnect: ReconnectFile,
    #[serde(default)]
    pub metrics: Option<MetricsFile>,
    pub log_level: Option<String>,
    #[serde(default)]
    pub debug: Option<DebugFile>,
    pub reuse_port: Option<bool>,
}

/// `--role server` file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerFile {
    pub listen: String,
    /// The default service: requests that name no service.
    pub upstream: Option<UpstreamFile>,
    /// The default service's CONNECT destinations (`HOST:PORT`, exact); absent = none.
    pub connect_to: Option<Vec<String>>,
    #[serde(default)]
    pub services: Vec<ServiceFile>,
    pub tls: ServerTlsFile,
    #[serde(default)]
    pub transport: TransportFile,
    #[serde(default)]
    pub http: ServerHttpFile,
    #[serde(default)]
    pub admission: AdmissionFile,
    #[serde(default)]
    pub metrics: Option<MetricsFile>,
    pub log_level: Option<String>,
    #[serde(default)]
    pub debug: Option<DebugFile>,
    pub reuse_port: Option<bool>,
}

/// Debugging aids (off unless configured).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DebugFile {
    pub qlog_dir: Option<String>,
}

/// The optional operator endpoint (`/metrics`, `/health`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsFile {
    pub listen: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeerFile {
    /// Required in `peers`; the single `peer` is `default`.
    pub name: Option<String>,
    pub address: String,
    /// `one` (default) or `per_address`: a session to each address of the name.
    pub sessions: Option<String>,
    pub server_name: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientTlsFile {
    pub ca: String,
    pub cert: String,
    pub key: String,
    pub early_data: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerTlsFile {
    pub ca: String,
    pub cert: String,
    pub key: String,
    pub allowed_client_names: Option<Vec<String>>,
    pub early_data: Option<bool>,
    pub ticket_key_file: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransportFile {
    pub congestion_control: Option<String>,
    pub pacing: Option<bool>,
    pub initial_rtt_ms: Option<u64>,
    pub idle_timeout_ms: Option<u64>,
    pub keepalive_interval_ms: Option<u64>,
    pub liveness_timeout_ms: Option<u64>,
    pub connection_window: Option<u64>,
    pub stream_window: Option<u64>,
    pub max_concurrent_streams: Option<u64>,
    pub udp_recv_buffer: Option<usize>,
    pub udp_send_buffer: Option<usize>,
    pub max_pacing_rate_mbps: Option<u64>,
    pub link: Option<LinkFile>,
    pub initial_congestion_window_packets: Option<usize>,
    pub pmtu_discovery: Option<bool>,
    /// Bytes of each connection ID this side issues.
    pub connection_id_bytes: Option<usize>,
    pub ack_delay_ms: Option<u64>,
    pub loss_hiding: Option<LossHidingFile>,
}

/// `transport.link`: the path's rate and RTT when the operator knows them.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinkFile {
    pub rate_mbps: u64,
    pub rtt_ms: u64,
    pub hold_window: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LossHidingFile {
    pub mode: String,
    pub max_datagram: Option<usize>,
    pub interactive_bytes: Option<u64>,
    pub gap_ms: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientHttpFile {
    pub session_wait_ms: Option<u64>,
    pub max_connections: Option<usize>,
    pub head_timeout_ms: Option<u64>,
    pub keepalive_timeout_ms: Option<u64>,
    pub max_head_bytes: Option<usize>,
    pub max_body_bytes: Option<u64>,
    pub access_log: Option<bool>,
    pub forwarded: Option<bool>,
    pub via: Option<bool>,
    pub x_forwarded_for: Option<bool>,
    pub drain_timeout_ms: Option<u64>,
    pub early_data_methods: Option<Vec<String>>,
    pub body_timeout_ms: Option<u64>,
    pub tunnel_idle_timeout_ms: Option<u64>,
    pub compression: Option<CompressionFile>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerHttpFile {
    pub access_log: Option<bool>,
    pub max_head_bytes: Option<usize>,
    pub drain_timeout_ms: Option<u64>,
    pub tunnel_idle_timeout_ms: Option<u64>,
    pub compression: Option<CompressionFile>,
}

/// `http.compression` of either role: link compression of bodies between the two ends.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompressionFile {
    pub enabled: Option<bool>,
    pub min_bytes: Option<u64>,
    pub types: Option<Vec<String>>,
    pub dictionary: Option<String>,
}

/// Server: which new handshakes are taken on (caps, Retry, per-source rate).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdmissionFile {
    pub retry: Option<String>,
    pub max_handshakes: Option<usize>,
    pub max_sessions: Option<usize>,
    pub handshake_timeout_ms: Option<u64>,
    pub source_rate: Option<u32>,
    pub source_burst: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReconnectFile {
    pub initial_backoff_ms: Option<u64>,
    pub max_backoff_ms: Option<u64>,
    pub handshake_timeout_ms: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamFile {
    /// One `HOST:PORT` (a name may give several addresses) ...
    pub address: Option<String>,
    /// ... or several.
    pub addresses: Option<Vec<String>>,
    /// `round_robin` or `least_outstanding` across the healthy addresses.
    pub balance: Option<String>,
    /// Active checks of each address (off when absent).
    pub health_check: Option<HealthCheckFile>,
    pub connect_timeout_ms: Option<u64>,
    pub response_timeout_ms: Option<u64>,
    pub max_idle: Option<usize>,
    pub idle_timeout_ms: Option<u64>,
}

/// One named service of the server.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceFile {
    pub name: String,
    pub upstream: UpstreamFile,
    /// Who may use it; absent = any client the server admits.
    pub allow: Option<Vec<AllowFile>>,
    /// Where a plain CONNECT through it may go (`HOST:PORT`, exact); absent = nowhere.
    pub connect_to: Option<Vec<String>>,
    /// Link compression of its response bodies; absent = `http.compression.enabled`.
    pub compression: Option<bool>,
}

/// One entry of a service's allow list.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AllowFile {
    pub identity: String,
    pub methods: Option<Vec<String>>,
    pub paths: Option<Vec<String>>,
}

/// One local listener of the client with its routes.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerFile {
    pub address: String,
    /// Tried in order; the first whose `host` matches (or that names none) takes the request.
    #[serde(default)]
    pub routes: Vec<RouteFile>,
    /// Caller addresses allowed (CIDRs); absent = any.
    pub allow_sources: Option<Vec<String>>,
    /// The peers its routes use unless a route names its own (absent: every peer).
    pub peers: Option<Vec<String>>,
    pub policy: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteFile {
    pub host: Option<String>,
    pub service: String,
    /// The peers this route uses, in order (absent: the listener's, else every peer).
    pub peers: Option<Vec<String>>,
    pub policy: Option<String>,
    /// Link compression of its request bodies; absent = `http.compression.enabled`.
    pub compression: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthCheckFile {
    pub path: String,
    pub interval_ms: Option<u64>,
    pub timeout_ms: Option<u64>,
}
