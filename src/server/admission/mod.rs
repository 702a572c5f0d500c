//! Which new QUIC handshakes the server takes on, decided before any per-connection state
//! exists (a spoofed Initial must cost next to nothing):
//!
//! 1. a datagram that starts with an Initial packet but is under 1200 bytes is dropped
//!    (RFC 9000 §14.1);
//! 2. a Retry token, if present, must be ours, for this address, unexpired ([`token`]);
//! 3. the source IP address must have handshakes left in its bucket ([`rate`]);
//! 4. without a token, a Retry is sent instead of a connection when `admission.retry` says so
//!    (`always`, or `auto` while a quarter of `max_handshakes` are in progress): the Retry is
//!    smaller than the Initial and no state is kept;
//! 5. the caps on connections and on handshakes in progress must have room.
//!
//! Refusals are silent drops (an answer would go to a possibly spoofed address). Every outcome
//! is counted for `/metrics` and reported in one summary log line per [`SUMMARY_INTERVAL`] at
//! most, so a flood cannot flood the log.

pub mod rate;
pub mod token;

use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime};

use crate::config::{AdmissionConfig, RetryMode};
use crate::metrics::AdmissionCounters;
use rate::RateLimiter;
use token::TokenKey;

/// Smallest datagram that may carry a client's Initial packet (RFC 9000 §14.1).
pub const MIN_INITIAL_DATAGRAM: usize = quiche::MIN_CLIENT_INITIAL_LEN;
/// At most one admission summary line this often.
pub const SUMMARY_INTERVAL: Duration = Duration::from_secs(5);
/// Length of the connection ID a Retry gives the client: short, because quiche encodes the
/// server's transport parameters (with this ID, the original one and ours) into 128 bytes. Our
/// real ID for the connection derives from it, as from any Initial's destination ID.
pub const RETRY_CID_LEN: usize = 8;
/// How long a Retry token is good for: the client uses it one round trip later (and in its
/// Initial retransmissions).
const TOKEN_LIFETIME_SECS: u64 = 10;

/// What to do with an Initial packet for an unknown connection.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Create a connection. `odcid` is set when the client came back with our Retry token:
    /// its address is validated, and the connection's ID is the one the Retry gave it.
    Accept { odcid: Option<Vec<u8>> },
    /// Send this Retry packet; keep nothing.
    Retry(Vec<u8>),
    /// Drop the datagram unanswered.
    Refuse,
}

/// The server's current load, as the caps see it.
#[derive(Debug, Clone, Copy)]
pub struct Load {
    pub handshakes: usize,
    pub sessions: usize,
}

#[derive(Debug, Clone, Copy)]
enum Refusal {
    RateLimit,
    HandshakeCap,
    SessionCap,
    InvalidToken,
}

pub struct Admission {
    cfg: AdmissionConfig,
    key: TokenKey,
    limiter: RateLimiter,
    pub counters: AdmissionCounters,
    /// The counters as of the last summary line.
    logged: AdmissionCounters,
    last_summary: Option<Instant>,
    /// Something happened since the last summary; due at this time.
    summary_due: Option<Instant>,
}

impl Admission {
    /// `tls_key` is the server's private key (PEM), from which the Retry token key derives.
    pub fn new(cfg: AdmissionConfig, tls_key: &[u8]) -> Self {
        Admission {
            limiter: RateLimiter::new(cfg.source_rate, cfg.source_burst),
            key: TokenKey::from_tls_key(tls_key),
            cfg,
            counters: AdmissionCounters::default(),
            logged: AdmissionCounters::default(),
            last_summary: None,
            summary_due: None,
        }
    }

    pub fn handshake_timeout(&self) -> Duration {
        self.cfg.handshake_timeout
    }

    /// True (and counted) for a datagram starting with an Initial packet that is too short to
    /// be one a client may send.
    pub fn drop_undersized(&mut self, ty: quiche::Type, datagram_len: usize, now: Instant) -> bool {
        if ty != quiche::Type::Initial || datagram_len >= MIN_INITIAL_DATAGRAM {
            return false;
        }
        self.counters.dropped_undersized += 1;
        self.note(now);
        true
    }

    /// Decides on an Initial packet (in a datagram of at least 1200 bytes) for an unknown
    /// connection. `our_cid` is the ID we would give the connection, derived from `hdr.dcid`.
    pub fn admit(
        &mut self,
        hdr: &quiche::Header<'_>,
        our_cid: &[u8],
        from: SocketAddr,
        load: Load,
        now: Instant,
    ) -> Verdict {
        let odcid = match hdr.token.as_deref().filter(|t| !t.is_empty()) {
            None => None,
            Some(t) => match self.key.check(t, from, &hdr.dcid, unix_secs()) {
                Ok(odcid) => Some(odcid),
                Err(e) => {
                    log::debug!("Retry token from {from} refused: {e:?}");
                    return self.refuse(Refusal::InvalidToken, now);
                }
            },
        };
        if !self.limiter.allow(from.ip(), now) {
            return self.refuse(Refusal::RateLimit, now);
        }
        if odcid.is_none() && self.wants_retry(load) {
            return self.retry(hdr, our_cid, from, now);
        }
        if load.sessions >= self.cfg.max_sessions {
            return self.refuse(Refusal::SessionCap, now);
        }
        if load.handshakes >= self.cfg.max_handshakes {
            return self.refuse(Refusal::HandshakeCap, now);
        }
        Verdict::Accept { odcid }
    }

    fn wants_retry(&self, load: Load) -> bool {
        match self.cfg.retry {
            RetryMode::Always => true,
            RetryMode::Never => false,
            RetryMode::Auto => load.handshakes >= self.cfg.auto_retry_threshold(),
        }
    }

    /// A Retry telling the client to come back to (a prefix of) `our_cid` with a token for
    /// `from`.
    fn retry(
        &mut self,
        hdr: &quiche::Header<'_>,
        our_cid: &[u8],
        from: SocketAddr,
        now: Instant,
    ) -> Verdict {
        let retry_cid = &our_cid[..RETRY_CID_LEN.min(our_cid.len())];
        let expiry = unix_secs() + TOKEN_LIFETIME_SECS;
        let token = self.key.mint(from, &hdr.dcid, retry_cid, expiry);
        let new_scid = quiche::ConnectionId::from_ref(retry_cid);
        let mut out = vec![0u8; 256];
        match quiche::retry(
            &hdr.scid,
            &hdr.dcid,
            &new_scid,
            &token,
            hdr.version,
            &mut out,
        ) {
            Ok(n) => {
                out.truncate(n);
                self.counters.retries_sent += 1;
                self.note(now);
                Verdict::Retry(out)
            }
            Err(e) => {
                log::debug!("cannot build a Retry for {from}: {e}");
                Verdict::Refuse
            }
        }
    }

    fn refuse(&mut self, why: Refusal, now: Instant) -> Verdict {
        let c = &mut self.counters;
        match why {
            Refusal::RateLimit => c.refused_rate_limit += 1,
            Refusal::HandshakeCap => c.refused_handshake_cap += 1,
            Refusal::SessionCap => c.refused_session_cap += 1,
            Refusal::InvalidToken => c.refused_invalid_token += 1,
        }
        self.note(now);
        Verdict::Refuse
    }

    pub fn on_handshake_timed_out(&mut self, now: Instant) {
        self.counters.handshakes_timed_out += 1;
        self.note(now);
    }

    pub fn on_amplification_limited(&mut self, now: Instant) {
        self.counters.amplification_limited += 1;
        self.note(now);
    }

    /// Something worth a summary happened: log now if the last line is old enough, else when
    /// it is.
    fn note(&mut self, now: Instant) {
        if self.summary_due.is_none() {
            let due = self.last_summary.map_or(now, |t| t + SUMMARY_INTERVAL);
            self.summary_due = Some(due.max(now));
        }
        self.log_summary(now);
    }

    /// Writes the summary line if one is due.
    pub fn log_summary(&mut self, now: Instant) {
        if self.summary_due.is_none_or(|t| t > now) {
            return;
        }
        self.summary_due = None;
        let since = self.last_summary.map(|t| now.saturating_duration_since(t));
        self.last_summary = Some(now);
        let (c, l) = (&self.counters, &self.logged);
        // Packets dropped unanswered are worth a warning; Retry and timeouts alone are not.
        let dropped = c.refused() + c.dropped_undersized > l.refused() + l.dropped_undersized;
        let level = if dropped {
            log::Level::Warn
        } else {
            log::Level::Info
        };
        log::log!(
            level,
            "handshake admission{}: {} refused (rate limit {}, handshake cap {}, session cap {}, \
             invalid token {}), {} Retry sent, {} undersized Initial dropped, {} handshake(s) timed out, \
             {} held at the 3x amplification limit",
            since.map_or(String::new(), |d| format!(" in the last {:.0} s", d.as_secs_f64())),
            c.refused() - l.refused(),
            c.refused_rate_limit - l.refused_rate_limit,
            c.refused_handshake_cap - l.refused_handshake_cap,
            c.refused_session_cap - l.refused_session_cap,
            c.refused_invalid_token - l.refused_invalid_token,
            c.retries_sent - l.retries_sent,
            c.dropped_undersized - l.dropped_undersized,
            c.handshakes_timed_out - l.handshakes_timed_out,
            c.amplification_limited - l.amplification_limited,
        );
        self.logged = self.counters;
    }

    /// When the pending summary line is due.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.summary_due
    }
}

fn unix_secs() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{AdmissionConfig, RetryMode};

    fn admission(retry: RetryMode, burst: u32) -> Admission {
        let cfg = AdmissionConfig {
            retry,
            max_handshakes: 8,
            max_sessions: 10,
            handshake_timeout: Duration::from_secs(5),
            source_rate: 1,
            source_burst: burst,
        };
        Admission::new(cfg, b"test key")
    }

    /// A real client Initial (first datagram of a quiche client's ClientHello).
    fn initial() -> Vec<u8> {
        let mut cfg = quiche::Config::new(quiche::PROTOCOL_VERSION).expect("config");
        cfg.set_application_protos(&[b"h3"]).expect("alpn");
        let scid = quiche::ConnectionId::from_ref(&[7; 16]);
        let (a, b) = (addr(1), addr(2));
        let mut conn = quiche::connect(None, &scid, a, b, &mut cfg).expect("connect");
        let mut out = vec![0u8; 1350];
        let (n, _) = conn.send(&mut out).expect("first Initial");
        out.truncate(n);
        out
    }

    fn addr(last: u8) -> SocketAddr {
        SocketAddr::from(([192, 0, 2, last], 4433))
    }

    fn admit(a: &mut Admission, datagram: &mut [u8], from: SocketAddr, load: Load) -> Verdict {
        let hdr = quiche::Header::from_slice(datagram, 20).expect("header");
        a.admit(&hdr, &[9; 20], from, load, Instant::now())
    }

    const IDLE: Load = Load {
        handshakes: 0,
        sessions: 1,
    };

    #[test]
    fn undersized_initials_are_dropped_and_counted() {
        let mut a = admission(RetryMode::Auto, 4);
        let now = Instant::now();
        assert!(a.drop_undersized(quiche::Type::Initial, 1199, now));
        assert!(!a.drop_undersized(quiche::Type::Initial, 1200, now));
        assert!(!a.drop_undersized(quiche::Type::Handshake, 100, now));
        assert_eq!(a.counters.dropped_undersized, 1);
    }

    #[test]
    fn auto_retry_under_pressure_carries_a_token_for_the_client_address() {
        let mut a = admission(RetryMode::Auto, 4);
        let mut d = initial();
        assert_eq!(
            admit(&mut a, &mut d, addr(1), IDLE),
            Verdict::Accept { odcid: None },
            "no pressure: no Retry, 0-RTT stays possible"
        );
        let busy = Load {
            handshakes: 2,
            sessions: 3,
        };
        let Verdict::Retry(retry) = admit(&mut a, &mut d, addr(1), busy) else {
            panic!("a quarter of the handshake cap in progress: Retry expected")
        };
        let mut retry = retry;
        let hdr = quiche::Header::from_slice(&mut retry, 20).expect("Retry header");
        assert_eq!(hdr.ty, quiche::Type::Retry);
        assert_eq!(hdr.scid.len(), RETRY_CID_LEN);
        let token = hdr.token.clone().expect("token");
        let first = quiche::Header::from_slice(&mut d, 20).expect("header");
        let odcid = first.dcid.to_vec();
        assert_eq!(
            a.key.check(&token, addr(1), &hdr.scid, unix_secs()),
            Ok(odcid),
            "the token carries the original DCID for this address"
        );
        assert_eq!(
            a.key.check(&token, addr(3), &hdr.scid, unix_secs()),
            Err(token::TokenError::Forged)
        );
        assert_eq!(a.counters.retries_sent, 1);
    }

    #[test]
    fn rate_limit_then_caps_refuse_and_count() {
        let mut a = admission(RetryMode::Never, 2);
        let mut d = initial();
        let full_sessions = Load {
            handshakes: 0,
            sessions: 10,
        };
        assert_eq!(
            admit(&mut a, &mut d, addr(1), full_sessions),
            Verdict::Refuse
        );
        let full_handshakes = Load {
            handshakes: 8,
            sessions: 8,
        };
        assert_eq!(
            admit(&mut a, &mut d, addr(1), full_handshakes),
            Verdict::Refuse
        );
        assert_eq!(admit(&mut a, &mut d, addr(1), IDLE), Verdict::Refuse);
        assert_eq!(
            admit(&mut a, &mut d, addr(2), IDLE),
            Verdict::Accept { odcid: None },
            "another source has its own bucket"
        );
        let c = a.counters;
        assert_eq!(
            (
                c.refused_session_cap,
                c.refused_handshake_cap,
                c.refused_rate_limit
            ),
            (1, 1, 1)
        );
        assert_eq!(c.refused(), 3);
    }
}
