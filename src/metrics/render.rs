//! The Prometheus text exposition of [`Metrics`]: one `# HELP`/`# TYPE` block per metric,
//! counters of this process plus the live values of a [`Snapshot`] taken at scrape time.

use std::fmt::Write;
use std::time::{Duration, Instant};

use super::{AdmissionCounters, Metrics, PathFigures, Snapshot, TunnelCounters, DURATION_BUCKETS};

mod peers;

/// Writes one metric: name, type, help, samples (label set text, value).
type MetricSink<'a> = dyn FnMut(&str, &str, &str, &[(String, String)]) + 'a;

impl TunnelCounters {
    fn render(&self, m: &mut MetricSink<'_>) {
        let one = |v: u64| vec![(String::new(), v.to_string())];
        m(
            "ptproxy_tunnels_opened_total",
            "counter",
            "WebSocket tunnels opened (the upstream accepted the upgrade).",
            &one(self.opened),
        );
        m(
            "ptproxy_tunnels_open",
            "gauge",
            "WebSocket tunnels open now.",
            &one(self.open),
        );
        m(
            "ptproxy_tunnel_bytes_to_upstream_total",
            "counter",
            "Bytes the WebSocket tunnels carried from the peer to the upstream side.",
            &one(self.bytes_to_upstream),
        );
        m(
            "ptproxy_tunnel_bytes_from_upstream_total",
            "counter",
            "Bytes the WebSocket tunnels carried from the upstream side to the peer.",
            &one(self.bytes_from_upstream),
        );
    }
}

impl AdmissionCounters {
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

impl Metrics {
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
        let z = crate::bridge::compression::counters();
        let ways = |sent: u64, received: u64| {
            vec![
                ("{direction=\"sent\"}".to_string(), sent.to_string()),
                ("{direction=\"received\"}".to_string(), received.to_string()),
            ]
        };
        m(
            "ptproxy_compressed_body_plain_bytes_total",
            "counter",
            "Link compression: body bytes before compression (sent) or after decompression (received).",
            &ways(z.sent_plain, z.received_plain),
        );
        m(
            "ptproxy_compressed_body_link_bytes_total",
            "counter",
            "Link compression: the same bodies' bytes on the link (compressed).",
            &ways(z.sent_compressed, z.received_compressed),
        );
        m(
            "ptproxy_event_loop_turns_total",
            "counter",
            "Turns of the event loop: waits that ended (events, timers or work left).",
            &one(self.loop_turns.to_string()),
        );
        m(
            "ptproxy_timer_entries",
            "gauge",
            "Entries in the timer table: at most one per connection or exchange.",
            &one(snap.timer_entries.to_string()),
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
        let refused: Vec<(String, String)> = self
            .refused
            .iter()
            .map(|((service, reason), n)| {
                let labels = format!("{{service=\"{}\",reason=\"{reason}\"}}", escape(service));
                (labels, n.to_string())
            })
            .collect();
        let by_service: Vec<(String, String)> = self
            .service_requests
            .iter()
            .flat_map(|(service, row)| {
                (1..6).filter(move |c| row[*c] > 0).map(move |class| {
                    let labels = format!("{{service=\"{}\",code=\"{class}xx\"}}", escape(service));
                    (labels, row[class].to_string())
                })
            })
            .collect();
        m(
            "ptproxy_service_requests_total",
            "counter",
            "Server: requests finished, by service and status class.",
            &by_service,
        );
        m(
            "ptproxy_requests_refused_total",
            "counter",
            "Requests refused before reaching any upstream, by service and reason.",
            &refused,
        );
        let path = |f: fn(&PathFigures) -> String| path_samples(&snap.paths, |p| Some(("", f(p))));
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
            "ptproxy_path_max_datagram_bytes",
            "gauge",
            "Largest UDP payload the session path sends now (path MTU discovery's result).",
            &path(|p| p.max_datagram.to_string()),
        );
        m(
            "ptproxy_path_bandwidth_estimate_bytes",
            "gauge",
            "Congestion controller's estimate of the session path's bandwidth, bytes per second (BBR2).",
            &path_samples(&snap.paths, |p| Some(("", p.bandwidth?.to_string()))),
        );
        m(
            "ptproxy_path_startup_exit_bandwidth_bytes",
            "gauge",
            "Bandwidth estimate (bytes per second) when the congestion controller left startup, by reason; absent while in startup.",
            &path_samples(&snap.paths, |p| {
                let exit = p.startup_exit?;
                Some((exit.reason, exit.bandwidth.to_string()))
            }),
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
        if !snap.upstream_health.is_empty() {
            let rows: Vec<(String, String)> = snap
                .upstream_health
                .iter()
                .map(|(service, addr, up)| {
                    let labels = format!("{{service=\"{}\",address=\"{addr}\"}}", escape(service));
                    (labels, u8::from(*up).to_string())
                })
                .collect();
            m(
                "ptproxy_upstream_address_up",
                "gauge",
                "Server: 1 while an upstream address takes new connections, 0 while it is out after a failed connect.",
                &rows,
            );
        }
        if let Some(n) = snap.routed_connection_ids {
            m(
                "ptproxy_server_routed_connection_ids",
                "gauge",
                "Server: connection IDs routed to a session (retired ones are removed).",
                &one(n.to_string()),
            );
        }
        if let Some(a) = &snap.admission {
            a.render(&mut m);
        }
        self.tunnels.render(&mut m);
        if !snap.peers.is_empty() {
            peers::render(&mut out, &snap.peers, now);
        }
        out
    }
}

/// One sample per session path that `f` gives a value for, labelled with the peer and, when
/// `f` names one, a `reason`.
fn path_samples<'a>(
    paths: &'a [PathFigures],
    f: impl Fn(&'a PathFigures) -> Option<(&'static str, String)>,
) -> Vec<(String, String)> {
    paths
        .iter()
        .filter_map(|p| {
            let (reason, value) = f(p)?;
            let peer = escape(&p.peer);
            let labels = if reason.is_empty() {
                format!("{{peer=\"{peer}\"}}")
            } else {
                format!("{{peer=\"{peer}\",reason=\"{reason}\"}}")
            };
            Some((labels, value))
        })
        .collect()
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
    use crate::metrics::{StartupExitFigures, TransportCounters};

    /// A path to peer `b` in startup, without a bandwidth estimate or liveness checks.
    fn path_to_b() -> PathFigures {
        PathFigures {
            peer: "b".into(),
            rtt: Duration::from_millis(50),
            min_rtt: None,
            rttvar: Duration::ZERO,
            cwnd: 14720,
            max_datagram: 1472,
            bandwidth: None,
            startup_exit: None,
            silence: None,
        }
    }

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
                bandwidth: Some(2_500_000),
                startup_exit: Some(StartupExitFigures {
                    reason: "bandwidth_plateau",
                    bandwidth: 2_400_000,
                }),
                silence: Some(Duration::from_millis(1500)),
                ..path_to_b()
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
            "ptproxy_path_max_datagram_bytes{peer=\"b\"} 1472",
            "ptproxy_path_bandwidth_estimate_bytes{peer=\"b\"} 2500000",
            "ptproxy_path_startup_exit_bandwidth_bytes{peer=\"b\",reason=\"bandwidth_plateau\"} 2400000",
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
        assert!(!text.contains("ptproxy_server_routed_connection_ids"));
    }

    #[test]
    fn a_path_in_startup_without_an_estimate_has_no_bandwidth_samples() {
        let t0 = Instant::now();
        let snap = Snapshot {
            paths: vec![path_to_b()],
            ..Default::default()
        };
        let text = Metrics::new("client", t0).render(&snap, t0);
        assert!(text.contains("ptproxy_congestion_window_bytes{peer=\"b\"} 14720"));
        for name in [
            "ptproxy_path_bandwidth_estimate_bytes",
            "ptproxy_path_startup_exit_bandwidth_bytes",
        ] {
            assert!(text.contains(&format!("# TYPE {name} gauge")), "{text}");
            assert!(
                !text.contains(&format!("{name}{{")),
                "{name} sampled in\n{text}"
            );
        }
    }

    #[test]
    fn renders_the_server_s_routed_connection_ids() {
        let t0 = Instant::now();
        let snap = Snapshot {
            routed_connection_ids: Some(5),
            ..Default::default()
        };
        let text = Metrics::new("server", t0).render(&snap, t0);
        assert!(
            text.lines()
                .any(|l| l == "ptproxy_server_routed_connection_ids 5"),
            "missing in\n{text}"
        );
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
