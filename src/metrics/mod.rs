//! Counters and gauges of one process, rendered in the Prometheus text format.
//!
//! Single-threaded: plain integers, no atomics. The role owns a [`Metrics`] and bumps it where
//! things happen (one place per event: request completion, session loss, datagram
//! duplication); live values (session state, RTT, open connections) are read from the role
//! at scrape time into a [`Snapshot`]. Names follow Prometheus conventions: `ptproxy_` prefix,
//! `_total` counters, base units `_seconds` and `_bytes`.
//!
//! This module holds the types and the recording; `render` writes the exposition.

mod render;

use std::time::{Duration, Instant};

use crate::quic::session::Session;

/// Content type of the Prometheus text exposition format.
pub const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Upper bounds (seconds) of the request duration histogram.
const DURATION_BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

/// Transport counters of QUIC connections (monotonic across reconnects once summed).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TransportCounters {
    pub sent_packets: u64,
    pub recv_packets: u64,
    pub lost_packets: u64,
    /// Packets declared lost that arrived after all (reordering or delay, not loss).
    pub spurious_lost_packets: u64,
    pub retrans_packets: u64,
    pub sent_bytes: u64,
    pub recv_bytes: u64,
    pub lost_bytes: u64,
}

impl TransportCounters {
    pub fn of(conn: &quiche::Connection) -> Self {
        let s = conn.stats();
        TransportCounters {
            sent_packets: s.sent as u64,
            recv_packets: s.recv as u64,
            lost_packets: s.lost as u64,
            spurious_lost_packets: s.spurious_lost as u64,
            retrans_packets: s.retrans as u64,
            sent_bytes: s.sent_bytes,
            recv_bytes: s.recv_bytes,
            lost_bytes: s.lost_bytes,
        }
    }

    pub fn add(&mut self, o: &TransportCounters) {
        self.sent_packets += o.sent_packets;
        self.recv_packets += o.recv_packets;
        self.lost_packets += o.lost_packets;
        self.spurious_lost_packets += o.spurious_lost_packets;
        self.retrans_packets += o.retrans_packets;
        self.sent_bytes += o.sent_bytes;
        self.recv_bytes += o.recv_bytes;
        self.lost_bytes += o.lost_bytes;
    }
}

/// Path figures of one live session.
#[derive(Debug, Clone)]
pub struct PathFigures {
    pub peer: String,
    pub rtt: Duration,
    pub min_rtt: Option<Duration>,
    pub rttvar: Duration,
    pub cwnd: usize,
    /// The largest UDP payload the path sends now: what path MTU discovery confirmed (1200
    /// bytes until a probe is acknowledged), or the fixed size without discovery.
    pub max_datagram: usize,
    /// The congestion controller's estimate of the path's bandwidth, bytes per second (BBR2's;
    /// CUBIC and Reno keep none).
    pub bandwidth: Option<u64>,
    /// When the congestion controller has left its startup phase: why, and the bandwidth it
    /// estimated then (bytes per second, 0 where it keeps no estimate).
    pub startup_exit: Option<StartupExitFigures>,
    /// Time since the last packet from the peer (with liveness checks on).
    pub silence: Option<Duration>,
}

/// Why and where a session's congestion controller left its startup phase, from quiche's
/// record of the moment. An estimate there far below the link's rate means bulk transfers on
/// the session ramp up slowly from then on (BBR2 probes up about 25% every 2-3 s).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StartupExitFigures {
    pub reason: &'static str,
    pub bandwidth: u64,
}

impl StartupExitFigures {
    fn of(exit: &quiche::StartupExit) -> Self {
        StartupExitFigures {
            reason: startup_exit_reason(exit.reason),
            bandwidth: exit.bandwidth.unwrap_or(0),
        }
    }
}

/// The `reason` label of a startup exit.
fn startup_exit_reason(reason: quiche::StartupExitReason) -> &'static str {
    match reason {
        quiche::StartupExitReason::Loss => "loss",
        quiche::StartupExitReason::BandwidthPlateau => "bandwidth_plateau",
        quiche::StartupExitReason::PersistentQueue => "persistent_queue",
        quiche::StartupExitReason::ConservativeSlowStartRounds => "slow_start_rounds",
    }
}

impl PathFigures {
    pub fn of(session: &Session, peer: String, now: Instant) -> Option<Self> {
        let conn = &session.conn;
        let mut paths = conn.path_stats();
        let active = paths
            .find(|p| p.active)
            .or_else(|| conn.path_stats().next());
        active.map(|p| PathFigures {
            peer,
            rtt: p.rtt,
            min_rtt: p.min_rtt,
            rttvar: p.rttvar,
            cwnd: p.cwnd,
            max_datagram: p.pmtu,
            bandwidth: p.max_bandwidth,
            startup_exit: p.startup_exit.as_ref().map(StartupExitFigures::of),
            silence: session.peer_silence(now),
        })
    }
}

/// Server: what happened to new handshakes (counters) and how many are in progress.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AdmissionCounters {
    /// Datagrams starting with an Initial packet but shorter than 1200 bytes.
    pub dropped_undersized: u64,
    pub refused_rate_limit: u64,
    pub refused_handshake_cap: u64,
    pub refused_session_cap: u64,
    pub refused_invalid_token: u64,
    pub retries_sent: u64,
    pub handshakes_timed_out: u64,
    /// Connections whose sending stopped at the 3x limit before address validation.
    pub amplification_limited: u64,
    /// Gauge: connections still in handshake.
    pub handshakes_in_progress: u64,
}

impl AdmissionCounters {
    /// Handshakes refused, any reason.
    pub fn refused(&self) -> u64 {
        self.refused_rate_limit
            + self.refused_handshake_cap
            + self.refused_session_cap
            + self.refused_invalid_token
    }
}

/// Live values gathered from the role at scrape time.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// Sessions usable right now (client: 0 or 1).
    pub sessions_up: usize,
    /// Since when the (client's) session has been up.
    pub session_up_since: Option<Instant>,
    /// Counters of the live sessions (added to those of closed ones).
    pub live_transport: TransportCounters,
    pub paths: Vec<PathFigures>,
    pub streams_open: usize,
    pub client_connections: Option<usize>,
    pub upstream_connections: Option<(usize, usize)>,
    /// Loss hiding: (datagrams, bytes) sent twice.
    pub duplicated: (u64, u64),
    /// Server: handshake admission.
    pub admission: Option<AdmissionCounters>,
    /// Client: each peer's session, in configuration order.
    pub peers: Vec<PeerFigures>,
    /// Server: connection IDs routed to a session (all sessions; retired ones are removed).
    pub routed_connection_ids: Option<usize>,
    /// Entries in the role's timer table (at most one per connection or exchange).
    pub timer_entries: usize,
    /// Server: each service's upstream addresses and whether they take new connections.
    pub upstream_health: Vec<(String, std::net::SocketAddr, bool)>,
}

/// One peer of the client: its session and the requests sent to it.
#[derive(Debug, Clone, Default)]
pub struct PeerFigures {
    /// The name in the configuration (the `peer` label).
    pub name: String,
    /// The address of a per-address peer's session (the `address` label).
    pub address: Option<String>,
    pub contact: PeerContact,
    pub up_since: Option<Instant>,
    /// Takes new requests (up, not going away, not silent).
    pub healthy: bool,
    /// Request streams opened on it.
    pub requests: u64,
}

/// How the client's session to its peer is doing (client only).
#[derive(Debug, Clone, Default)]
pub struct PeerContact {
    /// `connecting`, `up` or `waiting` (backoff between attempts).
    pub state: &'static str,
    pub attempts: u64,
    pub failures: u64,
    /// Kind label and reason of the last failed attempt since the session was last up.
    pub last_error: Option<(&'static str, String)>,
}

/// WebSocket tunnels (extended CONNECT) and the bytes they carried, counted as they flow.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TunnelCounters {
    pub opened: u64,
    /// Gauge: tunnels open now.
    pub open: u64,
    /// Bytes from the stream to the upstream side.
    pub bytes_to_upstream: u64,
    /// Bytes from the upstream side to the stream.
    pub bytes_from_upstream: u64,
}

#[derive(Debug)]
pub struct Metrics {
    role: &'static str,
    started: Instant,
    requests_by_class: [u64; 6],
    duration_buckets: [u64; DURATION_BUCKETS.len()],
    duration_sum: f64,
    duration_count: u64,
    pub reconnects: u64,
    /// Sessions abandoned because the peer went silent for the liveness timeout.
    pub dead_peers: u64,
    pub last_disconnect: Option<String>,
    /// Counters of sessions that closed.
    closed_transport: TransportCounters,
    /// Handshakes refused by our certificate check, by reason (`quic::refusal` labels).
    tls_refusals: std::collections::BTreeMap<&'static str, u64>,
    /// Server: clients followed to a new, validated address (NAT rebinding).
    pub address_changes: u64,
    /// Server: new client addresses that never answered their address check.
    pub address_validation_failures: u64,
    /// Turns of the event loop (a process that spins shows here).
    pub loop_turns: u64,
    /// Server: requests finished, by service (configured names) and status class.
    service_requests: std::collections::BTreeMap<String, [u64; 6]>,
    /// Requests refused before any upstream, by service (from the config; empty when none
    /// applies) and reason.
    refused: std::collections::BTreeMap<(String, &'static str), u64>,
    pub tunnels: TunnelCounters,
}

impl Metrics {
    pub fn new(role: &'static str, now: Instant) -> Self {
        Metrics {
            role,
            started: now,
            requests_by_class: [0; 6],
            duration_buckets: [0; DURATION_BUCKETS.len()],
            duration_sum: 0.0,
            duration_count: 0,
            reconnects: 0,
            dead_peers: 0,
            last_disconnect: None,
            closed_transport: TransportCounters::default(),
            tls_refusals: Default::default(),
            address_changes: 0,
            address_validation_failures: 0,
            loop_turns: 0,
            refused: Default::default(),
            service_requests: Default::default(),
            tunnels: TunnelCounters::default(),
        }
    }

    /// A tunnel opened (the upstream accepted the upgrade).
    pub fn record_tunnel_opened(&mut self) {
        self.tunnels.opened += 1;
        self.tunnels.open += 1;
    }

    /// A tunnel ended, whichever way.
    pub fn record_tunnel_closed(&mut self) {
        self.tunnels.open = self.tunnels.open.saturating_sub(1);
    }

    /// Bytes a tunnel moved since it was last counted, each way.
    pub fn record_tunnel_bytes(&mut self, to_upstream: u64, from_upstream: u64) {
        self.tunnels.bytes_to_upstream += to_upstream;
        self.tunnels.bytes_from_upstream += from_upstream;
    }

    /// Server: a request to service `service` (a configured name) finished with `status`.
    pub fn record_service_request(&mut self, service: &str, status: u16) {
        let class = usize::from((status / 100).clamp(1, 5));
        match self.service_requests.get_mut(service) {
            Some(row) => row[class] += 1,
            None => {
                let mut row = [0; 6];
                row[class] = 1;
                self.service_requests.insert(service.to_string(), row);
            }
        }
    }

    /// A request refused for `reason` (`unknown_service`, `access_denied`, `source_denied`)
    /// before reaching any upstream; `service` names a configured service, never a name a
    /// request chose, so the label set stays bounded.
    pub fn record_refused(&mut self, service: Option<&str>, reason: &'static str) {
        let key = (service.unwrap_or("").to_string(), reason);
        *self.refused.entry(key).or_default() += 1;
    }

    /// A peer was refused in the TLS handshake for `reason`.
    pub fn record_tls_refusal(&mut self, reason: &'static str) {
        *self.tls_refusals.entry(reason).or_default() += 1;
    }

    /// One request finished (answered or aborted) with `status` after `duration`.
    pub fn record_request(&mut self, status: u16, duration: Duration) {
        let class = (status / 100).min(5) as usize;
        self.requests_by_class[class] += 1;
        let secs = duration.as_secs_f64();
        for (i, bound) in DURATION_BUCKETS.iter().enumerate() {
            if secs <= *bound {
                self.duration_buckets[i] += 1;
            }
        }
        self.duration_sum += secs;
        self.duration_count += 1;
    }

    /// A session closed: keep its counters and why it ended.
    pub fn record_session_closed(&mut self, counters: TransportCounters, reason: &str) {
        self.closed_transport.add(&counters);
        self.last_disconnect = Some(reason.to_string());
    }

    pub fn requests_with_class(&self, class: u16) -> u64 {
        self.requests_by_class[(class as usize).min(5)]
    }
}
