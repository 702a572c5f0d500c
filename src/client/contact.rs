//! First contact with the peer, as the operator sees it: how many session attempts were made,
//! how the last one failed and why that is likely, for the log, `/health`, `/metrics` and the
//! 503 answers given while no session is up.
//!
//! Failure warnings are rate-limited: the first failure of a kind is logged at once (with the
//! likely causes); further failures of the same kind are summarized at most once per
//! [`SUMMARY_INTERVAL`]. Pure: the caller passes `now` and logs the lines it gets back.

use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::metrics::PeerContact;
use crate::resolve::HostPort;

/// Repeated failures of one kind are summarized at most this often.
pub const SUMMARY_INTERVAL: Duration = Duration::from_secs(30);

/// How a session attempt failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// The peer name did not resolve.
    Resolve,
    /// An ICMP error came back (port or host unreachable).
    Unreachable,
    /// Nothing answered within the handshake timeout.
    HandshakeTimeout,
    /// The peer answered but the session closed (TLS refused, protocol error...).
    Closed,
    /// The attempt could not even start here (socket, TLS setup).
    Local,
}

impl FailureKind {
    /// What usually causes it, for the first warning.
    fn likely_causes(self) -> &'static str {
        match self {
            FailureKind::Resolve => "a typo in peer.address, or DNS not reachable",
            FailureKind::Unreachable => {
                "no ptproxy server listening on that UDP port (not started, crashed, wrong port), \
                 or a route or firewall rejecting the packets"
            }
            FailureKind::HandshakeTimeout => {
                "no ptproxy server listening there, UDP blocked (or dropped) by a firewall, \
                 or a wrong peer.address"
            }
            FailureKind::Closed => {
                "see the reason: certificates, names or versions that do not match"
            }
            FailureKind::Local => "see the reason",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            FailureKind::Resolve => "resolve",
            FailureKind::Unreachable => "unreachable",
            FailureKind::HandshakeTimeout => "handshake_timeout",
            FailureKind::Closed => "closed",
            FailureKind::Local => "local",
        }
    }
}

/// Attempts and failures of the client's session to its peer.
#[derive(Debug)]
pub struct Contact {
    target: HostPort,
    pub attempts: u64,
    pub failures: u64,
    /// Failures since the session was last up.
    consecutive: u64,
    /// The address being (or last) tried and since when.
    current: Option<(SocketAddr, Instant)>,
    /// The last failure: kind and the one-line reason.
    last: Option<(FailureKind, String)>,
    /// When a failure line was last logged, and failures left out since.
    last_logged: Option<Instant>,
    suppressed: u64,
}

impl Contact {
    pub fn new(target: HostPort) -> Self {
        Contact {
            target,
            attempts: 0,
            failures: 0,
            consecutive: 0,
            current: None,
            last: None,
            last_logged: None,
            suppressed: 0,
        }
    }

    /// An attempt to `addr` starts.
    pub fn attempt(&mut self, addr: SocketAddr, now: Instant) {
        self.attempts += 1;
        self.current = Some((addr, now));
    }

    /// The attempt failed; returns the warning to log now, if one is due.
    pub fn failed(&mut self, kind: FailureKind, reason: String, now: Instant) -> Option<String> {
        self.failures += 1;
        self.consecutive += 1;
        let same_kind = self.last.as_ref().is_some_and(|(k, _)| *k == kind);
        let where_ = self.where_();
        self.last = Some((kind, reason));
        let reason = self.last.as_ref().map(|(_, r)| r.as_str()).unwrap_or("");
        let due = self
            .last_logged
            .is_none_or(|t| now.saturating_duration_since(t) >= SUMMARY_INTERVAL);
        if same_kind && !due {
            self.suppressed += 1;
            return None;
        }
        self.last_logged = Some(now);
        let line = if same_kind {
            format!(
                "still no session to the peer {where_}: {} attempts failed in a row ({} not \
                 logged), the last: {reason}",
                self.consecutive,
                std::mem::take(&mut self.suppressed)
            )
        } else {
            self.suppressed = 0;
            format!(
                "no session to the peer {where_}: {reason}; likely: {}; retrying (repeated failures \
                 of this kind are summarized every {} s)",
                kind.likely_causes(),
                SUMMARY_INTERVAL.as_secs()
            )
        };
        Some(line)
    }

    /// The session came up; returns a line to log when failures came before.
    pub fn up(&mut self) -> Option<String> {
        let failed = std::mem::take(&mut self.consecutive);
        self.suppressed = 0;
        self.last_logged = None;
        self.last = None;
        (failed > 0).then(|| {
            format!(
                "peer {} reached after {failed} failed attempt(s)",
                self.where_()
            )
        })
    }

    /// The configured target, and the address tried when it differs.
    fn where_(&self) -> String {
        match self.current {
            Some((addr, _)) if addr.to_string() != self.target.to_string() => {
                format!("{} ({addr})", self.target)
            }
            _ => self.target.to_string(),
        }
    }

    /// Why there is no session right now, in one line (for 503 answers and `/health`):
    /// `TARGET (REASON)`.
    pub fn why_down(&self, connecting: bool, now: Instant) -> String {
        let target = self.where_();
        match (&self.last, self.current) {
            (Some((_, reason)), _) => format!("{target} ({reason})"),
            (None, Some((_, since))) if connecting => format!(
                "{target} (handshake under way for {} ms, no answer yet; attempt {})",
                now.saturating_duration_since(since).as_millis(),
                self.attempts
            ),
            _ => format!("{target} (not connected yet)"),
        }
    }

    /// The figures for `/metrics` and `/health`, with the link's `state` name.
    pub fn figures(&self, state: &'static str) -> PeerContact {
        PeerContact {
            state,
            attempts: self.attempts,
            failures: self.failures,
            last_error: self.last.as_ref().map(|(k, r)| (k.label(), r.clone())),
        }
    }
}

/// An ICMP error on the attempt's socket, in words.
pub fn describe_icmp(e: &io::Error) -> String {
    if e.kind() == io::ErrorKind::ConnectionRefused {
        "ICMP port unreachable: nothing listens on that UDP port".to_string()
    } else {
        format!("ICMP error: {e}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn contact() -> Contact {
        Contact::new(HostPort::parse("peer.test:4433").unwrap())
    }

    #[test]
    fn first_failure_is_logged_at_once_with_causes_then_summarized() {
        let mut c = contact();
        let t0 = Instant::now();
        let addr: SocketAddr = "127.0.0.1:4433".parse().unwrap();
        c.attempt(addr, t0);
        let first = c
            .failed(
                FailureKind::HandshakeTimeout,
                "handshake timed out".into(),
                t0,
            )
            .expect("first failure logged");
        assert!(first.contains("peer.test:4433 (127.0.0.1:4433)"), "{first}");
        assert!(first.contains("UDP blocked"), "{first}");
        for i in 1..10 {
            let t = t0 + Duration::from_secs(i);
            c.attempt(addr, t);
            assert_eq!(
                c.failed(
                    FailureKind::HandshakeTimeout,
                    "handshake timed out".into(),
                    t
                ),
                None
            );
        }
        let later = t0 + SUMMARY_INTERVAL;
        c.attempt(addr, later);
        let summary = c
            .failed(
                FailureKind::HandshakeTimeout,
                "handshake timed out".into(),
                later,
            )
            .expect("summary after the interval");
        assert!(
            summary.contains("11 attempts failed in a row (9 not logged)"),
            "{summary}"
        );
    }

    #[test]
    fn a_new_kind_of_failure_is_logged_at_once() {
        let mut c = contact();
        let t0 = Instant::now();
        c.attempt("127.0.0.1:4433".parse().unwrap(), t0);
        assert!(c
            .failed(FailureKind::Unreachable, "refused".into(), t0)
            .is_some());
        assert!(c
            .failed(FailureKind::Unreachable, "refused".into(), t0)
            .is_none());
        let other = c.failed(FailureKind::HandshakeTimeout, "timed out".into(), t0);
        assert!(other.is_some_and(|l| l.contains("likely")));
        assert_eq!(c.failures, 3);
    }

    #[test]
    fn why_down_names_the_peer_and_the_reason() {
        let mut c = contact();
        let t0 = Instant::now();
        assert_eq!(c.why_down(false, t0), "peer.test:4433 (not connected yet)");
        c.attempt("[::1]:4433".parse().unwrap(), t0);
        let during = c.why_down(true, t0 + Duration::from_millis(1500));
        assert!(
            during.contains("[::1]:4433") && during.contains("1500 ms"),
            "{during}"
        );
        c.failed(FailureKind::Unreachable, "ICMP port unreachable".into(), t0);
        assert_eq!(
            c.why_down(false, t0),
            "peer.test:4433 ([::1]:4433) (ICMP port unreachable)"
        );
        assert!(c.up().is_some_and(|l| l.contains("after 1 failed")));
        assert!(c.up().is_none());
    }
}
