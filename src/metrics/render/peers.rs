//! The client's peers in the exposition: one family per figure, one sample per peer (and per
//! address for a peer with a session per address), labelled by the peer's configured name.

use std::fmt::Write;
use std::time::Instant;

use super::escape;
use crate::metrics::PeerFigures;

/// The client's peers: each one's session state, attempts and last failure, health, uptime
/// and requests, labelled by the peer's configured name.
pub(super) fn render(out: &mut String, peers: &[PeerFigures], now: Instant) {
    let mut family =
        |name: &str,
         kind: &str,
         help: &str,
         samples: &dyn Fn(&PeerFigures) -> Vec<(String, String)>| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for p in peers {
                let mut peer = format!("peer=\"{}\"", escape(&p.name));
                if let Some(a) = &p.address {
                    let _ = write!(peer, ",address=\"{}\"", escape(a));
                }
                for (labels, value) in samples(p) {
                    let _ = writeln!(out, "{name}{{{peer}{labels}}} {value}");
                }
            }
        };
    family(
        "ptproxy_peer_state",
        "gauge",
        "State of the session to each peer (1 for the current one).",
        &|p| {
            ["connecting", "up", "waiting"]
                .iter()
                .map(|s| {
                    (
                        format!(",state=\"{s}\""),
                        u8::from(*s == p.contact.state).to_string(),
                    )
                })
                .collect()
        },
    );
    family(
        "ptproxy_peer_healthy",
        "gauge",
        "1 while the peer takes new requests: session up, not going away, not silent.",
        &|p| vec![(String::new(), u8::from(p.healthy).to_string())],
    );
    family(
        "ptproxy_peer_session_uptime_seconds",
        "gauge",
        "Seconds since the session to the peer came up (0 when down).",
        &|p| {
            let up = p
                .up_since
                .map_or(0.0, |t| now.saturating_duration_since(t).as_secs_f64());
            vec![(String::new(), format!("{up:.3}"))]
        },
    );
    family(
        "ptproxy_peer_requests_total",
        "counter",
        "Request streams opened on the session to the peer.",
        &|p| vec![(String::new(), p.requests.to_string())],
    );
    family(
        "ptproxy_peer_connect_attempts_total",
        "counter",
        "Session attempts started.",
        &|p| vec![(String::new(), p.contact.attempts.to_string())],
    );
    family(
        "ptproxy_peer_connect_failures_total",
        "counter",
        "Session attempts that failed before the session was up.",
        &|p| vec![(String::new(), p.contact.failures.to_string())],
    );
    family(
        "ptproxy_peer_last_error_info",
        "gauge",
        "The last failed attempt since the session was up.",
        &|p| {
            let (kind, reason) = p
                .contact
                .last_error
                .as_ref()
                .map(|(k, r)| (*k, r.as_str()))
                .unwrap_or(("none", "none"));
            vec![(
                format!(",kind=\"{kind}\",reason=\"{}\"", escape(reason)),
                "1".into(),
            )]
        },
    );
}
