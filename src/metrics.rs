//! Counters and gauges of one process, rendered in the Prometheus text format.
//!
//! Single-threaded: plain integers, no atomics. The role owns a [`Metrics`] and bumps it where
//! things happen (one place per event: request completion, session loss, datagram
//! duplication); live values (session state, RTT, open connections) are read from the role
//! at scrape time into a [`Snapshot`]. Names follow Prometheus conventions: `ptproxy_` prefix,
//! `_total` counters, base units `_seconds` and `_bytes`.

use std::fmt::Write;
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
    /// Time since the last packet from the peer (with liveness checks on).
    pub silence: Option<Duration>,
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
            silence: session.peer_silence(now),
        })
    }
}

/// Writes one metric: name, type, help, samples (label set text, value).
type MetricSink<'a> = dyn FnMut(&str, &str, &str, &[(String, String)]) + 'a;

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

    fn render(&self, m: &mut MetricSink<'_>) {
        let one = |v: u64| vec![(String::new(), v.to_string())];
        m(
            "ptproxy_handshakes_in_progress",
            "gauge",
            "Server: QUIC connections still in handshake.",
            &one(self.handshakes_in_progress),
        );
        let refused: Vec<(String, String)> = [
            ("rate_limit", self.refused_rate_limit),
            ("handshake_cap", self.refused_handshake_cap),
            ("session_cap", self.refused_session_cap),
            ("invalid_token", self.refused_invalid_token),
        ]
        .iter()
        .map(|(r, v)| (format!("{{reason=\"{r}\"}}"), v.to_string()))
        .collect();
        m(
            "ptproxy_handshakes_refused_total",
            "counter",
            "Server: new handshakes refused (dropped unanswered), by reason.",
            &refused,
        );
        m(
            "ptproxy_retries_sent_total",
            "counter",
            "Server: stateless Retry packets sent (address validation).",
            &one(self.retries_sent),
        );
        m(
            "ptproxy_initials_dropped_undersized_total",
            "counter",
            "Server: Initial packets dropped for arriving in datagrams under 1200 bytes.",
            &one(self.dropped_undersized),
        );
        m(
            "ptproxy_handshakes_timed_out_total",
            "counter",
            "Server: handshakes dropped unfinished after admission.handshake_timeout_ms.",
            &one(self.handshakes_timed_out),
        );
        m(
            "ptproxy_amplification_limited_total",
            "counter",
            "Server: connections held at 3x the bytes received before address validation.",
            &one(self.amplification_limited),
        );
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
    /// The client's attempts to reach its peer.
    pub peer_contact: Option<PeerContact>,
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
        }
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

    /// The Prometheus text exposition of these metrics and `snap`.
    pub fn render(&self, snap: &Snapshot, now: Instant) -> String {
        let mut out = String::with_capacity(4096);
        let mut m = |name: &str, kind: &str, help: &str, samples: &[(String, String)]| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (labels, value) in samples {
                let _ = writeln!(out, "{name}{labels} {value}");
            }
        };
        let one = |v: String| vec![(String::new(), v)];
        m(
            "ptproxy_build_info",
            "gauge",
            "Version and role of this process.",
            &[(
                format!(
                    "{{version=\"{}\",role=\"{}\"}}",
                    env!("CARGO_PKG_VERSION"),
                    self.role
                ),
                "1".into(),
            )],
        );
        m(
            "ptproxy_process_uptime_seconds",
            "gauge",
            "Seconds since this process started.",
            &one(secs(now.saturating_duration_since(self.started))),
        );
        m(
            "ptproxy_session_up",
            "gauge",
            "Usable QUIC sessions to peers (client: 1 when up).",
            &one(snap.sessions_up.to_string()),
        );
        m(
            "ptproxy_session_uptime_seconds",
            "gauge",
            "Seconds since the current session came up (0 when down).",
            &one(snap
                .session_up_since
                .map(|t| secs(now.saturating_duration_since(t)))
                .unwrap_or_else(|| "0".into())),
        );
        m(
            "ptproxy_session_reconnects_total",
            "counter",
            "Sessions re-established after a loss.",
            &one(self.reconnects.to_string()),
        );
        m(
            "ptproxy_peer_address_changes_total",
            "counter",
            "Server: sessions moved to a client's new, validated address (NAT rebinding).",
            &one(self.address_changes.to_string()),
        );
        m(
            "ptproxy_peer_address_validation_failures_total",
            "counter",
            "Server: new client addresses that did not answer their address check.",
            &one(self.address_validation_failures.to_string()),
        );
        let reason = self.last_disconnect.as_deref().unwrap_or("none");
        m(
            "ptproxy_session_last_disconnect_info",
            "gauge",
            "Why the last session ended.",
            &[(format!("{{reason=\"{}\"}}", escape(reason)), "1".into())],
        );
        let refusals: Vec<(String, String)> = self
            .tls_refusals
            .iter()
            .map(|(reason, n)| (format!("{{reason=\"{reason}\"}}"), n.to_string()))
            .collect();
        m(
            "ptproxy_tls_refusals_total",
            "counter",
            "Peers refused in the TLS handshake, by reason.",
            &refusals,
        );
        let path = |f: fn(&PathFigures) -> String| -> Vec<(String, String)> {
            snap.paths
                .iter()
                .map(|p| (format!("{{peer=\"{}\"}}", escape(&p.peer)), f(p)))
                .collect()
        };
        m(
            "ptproxy_rtt_seconds",
            "gauge",
            "Smoothed round-trip time of the session path.",
            &path(|p| secs(p.rtt)),
        );
        m(
            "ptproxy_rtt_min_seconds",
            "gauge",
            "Minimum round-trip time seen on the session path.",
            &path(|p| secs(p.min_rtt.unwrap_or_default())),
        );
        m(
            "ptproxy_rtt_variance_seconds",
            "gauge",
            "Round-trip time variation of the session path.",
            &path(|p| secs(p.rttvar)),
        );
        m(
            "ptproxy_congestion_window_bytes",
            "gauge",
            "Congestion window of the session path.",
            &path(|p| p.cwnd.to_string()),
        );
        m(
            "ptproxy_peer_silence_seconds",
            "gauge",
            "Time since the last packet from the peer (liveness checks on).",
            &path(|p| secs(p.silence.unwrap_or_default())),
        );
        m(
            "ptproxy_dead_peer_detections_total",
            "counter",
            "Sessions abandoned because the peer was silent for the liveness timeout.",
            &one(self.dead_peers.to_string()),
        );
        let mut t = self.closed_transport;
        t.add(&snap.live_transport);
        m(
            "ptproxy_sent_packets_total",
            "counter",
            "QUIC packets sent.",
            &one(t.sent_packets.to_string()),
        );
        m(
            "ptproxy_received_packets_total",
            "counter",
            "QUIC packets received.",
            &one(t.recv_packets.to_string()),
        );
        m(
            "ptproxy_lost_packets_total",
            "counter",
            "QUIC packets declared lost.",
            &one(t.lost_packets.to_string()),
        );
        m(
            "ptproxy_spurious_lost_packets_total",
            "counter",
            "QUIC packets declared lost that were acknowledged later (reordering or delay).",
            &one(t.spurious_lost_packets.to_string()),
        );
        m(
            "ptproxy_retransmitted_packets_total",
            "counter",
            "QUIC packets retransmitted.",
            &one(t.retrans_packets.to_string()),
        );
        m(
            "ptproxy_sent_bytes_total",
            "counter",
            "QUIC bytes sent.",
            &one(t.sent_bytes.to_string()),
        );
        m(
            "ptproxy_received_bytes_total",
            "counter",
            "QUIC bytes received.",
            &one(t.recv_bytes.to_string()),
        );
        m(
            "ptproxy_lost_bytes_total",
            "counter",
            "QUIC bytes declared lost.",
            &one(t.lost_bytes.to_string()),
        );
        m(
            "ptproxy_duplicated_datagrams_total",
            "counter",
            "Datagrams sent twice by loss hiding.",
            &one(snap.duplicated.0.to_string()),
        );
        m(
            "ptproxy_duplicated_bytes_total",
            "counter",
            "Bytes sent twice by loss hiding.",
            &one(snap.duplicated.1.to_string()),
        );
        m(
            "ptproxy_streams_open",
            "gauge",
            "Requests in flight on the session(s).",
            &one(snap.streams_open.to_string()),
        );
        let classes: Vec<(String, String)> = (1..=5)
            .map(|c| {
                (
                    format!("{{code=\"{c}xx\"}}"),
                    self.requests_by_class[c].to_string(),
                )
            })
            .collect();
        m(
            "ptproxy_requests_total",
            "counter",
            "Requests completed, by status class.",
            &classes,
        );
        let mut hist: Vec<(String, String)> = DURATION_BUCKETS
            .iter()
            .zip(self.duration_buckets.iter())
            .map(|(b, c)| (format!("_bucket{{le=\"{b}\"}}"), c.to_string()))
            .collect();
        hist.push((
            "_bucket{le=\"+Inf\"}".into(),
            self.duration_count.to_string(),
        ));
        hist.push(("_sum".into(), format!("{:.6}", self.duration_sum)));
        hist.push(("_count".into(), self.duration_count.to_string()));
        m(
            "ptproxy_request_duration_seconds",
            "histogram",
            "Time from request head to response end.",
            &hist,
        );
        if let Some(n) = snap.client_connections {
            m(
                "ptproxy_client_connections_open",
                "gauge",
                "HTTP/1.1 connections from local services.",
                &one(n.to_string()),
            );
        }
        if let Some((open, idle)) = snap.upstream_connections {
            m(
                "ptproxy_upstream_connections_open",
                "gauge",
                "TCP connections to the upstream.",
                &one(open.to_string()),
            );
            m(
                "ptproxy_upstream_pool_idle",
                "gauge",
                "Idle keep-alive upstream connections.",
                &one(idle.to_string()),
            );
        }
        if let Some(a) = &snap.admission {
            a.render(&mut m);
        }
        if let Some(c) = &snap.peer_contact {
            render_peer_contact(&mut out, c);
        }
        out
    }
}

/// The client's session attempts: state, counts and the last failure.
fn render_peer_contact(out: &mut String, c: &PeerContact) {
    let _ = writeln!(
        out,
        "# HELP ptproxy_peer_state State of the session to the peer (1 for the current one).\n\
         # TYPE ptproxy_peer_state gauge"
    );
    for state in ["connecting", "up", "waiting"] {
        let v = u8::from(state == c.state);
        let _ = writeln!(out, "ptproxy_peer_state{{state=\"{state}\"}} {v}");
    }
    let _ = writeln!(
        out,
        "# HELP ptproxy_peer_connect_attempts_total Session attempts started.\n\
         # TYPE ptproxy_peer_connect_attempts_total counter\n\
         ptproxy_peer_connect_attempts_total {}",
        c.attempts
    );
    let _ = writeln!(
        out,
        "# HELP ptproxy_peer_connect_failures_total Session attempts that failed before the \
         session was up.\n# TYPE ptproxy_peer_connect_failures_total counter\n\
         ptproxy_peer_connect_failures_total {}",
        c.failures
    );
    let (kind, reason) = c
        .last_error
        .as_ref()
        .map(|(k, r)| (*k, r.as_str()))
        .unwrap_or(("none", "none"));
    let _ = writeln!(
        out,
        "# HELP ptproxy_peer_last_error_info The last failed attempt since the session was up.\n\
         # TYPE ptproxy_peer_last_error_info gauge\n\
         ptproxy_peer_last_error_info{{kind=\"{kind}\",reason=\"{}\"}} 1",
        escape(reason)
    );
}

fn secs(d: Duration) -> String {
    format!("{:.6}", d.as_secs_f64())
}

/// Escapes a label value (backslash, quote, newline).
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_histogram_and_labels() {
        let t0 = Instant::now();
        let mut m = Metrics::new("client", t0);
        m.record_request(200, Duration::from_millis(3));
        m.record_request(503, Duration::from_millis(700));
        m.record_session_closed(
            TransportCounters {
                lost_packets: 4,
                spurious_lost_packets: 2,
                ..Default::default()
            },
            "idle \"timeout\"",
        );
        let snap = Snapshot {
            sessions_up: 1,
            live_transport: TransportCounters {
                lost_packets: 1,
                ..Default::default()
            },
            paths: vec![PathFigures {
                peer: "b".into(),
                rtt: Duration::from_millis(50),
                min_rtt: None,
                rttvar: Duration::ZERO,
                cwnd: 14720,
                silence: Some(Duration::from_millis(1500)),
            }],
            client_connections: Some(2),
            ..Default::default()
        };
        let text = m.render(&snap, t0);
        for line in [
            "ptproxy_requests_total{code=\"2xx\"} 1",
            "ptproxy_requests_total{code=\"5xx\"} 1",
            "ptproxy_request_duration_seconds_bucket{le=\"0.005\"} 1",
            "ptproxy_request_duration_seconds_bucket{le=\"1\"} 2",
            "ptproxy_request_duration_seconds_count 2",
            "ptproxy_lost_packets_total 5",
            "ptproxy_spurious_lost_packets_total 2",
            "ptproxy_rtt_seconds{peer=\"b\"} 0.050000",
            "ptproxy_congestion_window_bytes{peer=\"b\"} 14720",
            "ptproxy_peer_silence_seconds{peer=\"b\"} 1.500000",
            "ptproxy_dead_peer_detections_total 0",
            "ptproxy_session_last_disconnect_info{reason=\"idle \\\"timeout\\\"\"} 1",
            "ptproxy_client_connections_open 2",
            "ptproxy_session_up 1",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
        assert!(!text.contains("ptproxy_upstream_pool_idle"));
        assert!(!text.contains("ptproxy_handshakes"), "server-only metrics");
    }

    #[test]
    fn renders_admission_counters_for_the_server() {
        let t0 = Instant::now();
        let snap = Snapshot {
            admission: Some(AdmissionCounters {
                dropped_undersized: 4,
                refused_rate_limit: 3,
                refused_invalid_token: 1,
                retries_sent: 7,
                handshakes_timed_out: 2,
                amplification_limited: 5,
                handshakes_in_progress: 6,
                ..AdmissionCounters::default()
            }),
            ..Default::default()
        };
        let text = Metrics::new("server", t0).render(&snap, t0);
        for line in [
            "ptproxy_handshakes_in_progress 6",
            "ptproxy_handshakes_refused_total{reason=\"rate_limit\"} 3",
            "ptproxy_handshakes_refused_total{reason=\"handshake_cap\"} 0",
            "ptproxy_handshakes_refused_total{reason=\"session_cap\"} 0",
            "ptproxy_handshakes_refused_total{reason=\"invalid_token\"} 1",
            "ptproxy_retries_sent_total 7",
            "ptproxy_initials_dropped_undersized_total 4",
            "ptproxy_handshakes_timed_out_total 2",
            "ptproxy_amplification_limited_total 5",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
    }
}
