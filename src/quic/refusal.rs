//! Why a TLS handshake was refused, in words an operator can act on, and how often to say so.
//!
//! The server's certificate check ([`super::tls::server_context`]) records the precise reason in
//! a [`RefusalSlot`] while quiche runs the handshake; when the refused connection closes, the
//! server turns it (or, when the check never ran, the TLS alert it sent) into a [`Refusal`],
//! counts it by [`Refusal::label`] and logs it through a [`RefusalLog`]: once per peer address
//! and minute, so a misconfigured or hostile client cannot flood the log.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use boring::x509::X509VerifyError;

/// Why the peer's certificate (or the handshake) was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Not signed by the configured CA (or self-signed).
    UnknownCa,
    Expired,
    NotYetValid,
    /// The client sent no certificate.
    NoCertificate,
    /// Signed by the CA, but none of its names is in `tls.allowed_client_names`.
    NameNotAllowed(Vec<String>),
    /// Another certificate problem, as the X.509 verifier words it.
    BadCertificate(&'static str),
    /// Refused before any certificate check (the TLS alert sent).
    Alert(u8),
}

/// TLS alerts (RFC 8446 §6) that carry a refusal reason.
const ALERT_CERTIFICATE_EXPIRED: u8 = 45;
const ALERT_UNKNOWN_CA: u8 = 48;
const ALERT_CERTIFICATE_REQUIRED: u8 = 116;

impl Refusal {
    /// The reason the X.509 verifier gave.
    pub fn from_verify_error(e: X509VerifyError) -> Self {
        match e {
            X509VerifyError::UNABLE_TO_GET_ISSUER_CERT
            | X509VerifyError::UNABLE_TO_GET_ISSUER_CERT_LOCALLY
            | X509VerifyError::UNABLE_TO_VERIFY_LEAF_SIGNATURE
            | X509VerifyError::DEPTH_ZERO_SELF_SIGNED_CERT
            | X509VerifyError::SELF_SIGNED_CERT_IN_CHAIN
            | X509VerifyError::CERT_SIGNATURE_FAILURE => Refusal::UnknownCa,
            X509VerifyError::CERT_HAS_EXPIRED => Refusal::Expired,
            X509VerifyError::CERT_NOT_YET_VALID => Refusal::NotYetValid,
            other => Refusal::BadCertificate(other.error_string()),
        }
    }

    /// The reason a TLS alert we sent stands for (when no certificate check recorded one).
    pub fn from_alert(alert: u8) -> Self {
        match alert {
            ALERT_CERTIFICATE_REQUIRED => Refusal::NoCertificate,
            ALERT_UNKNOWN_CA => Refusal::UnknownCa,
            ALERT_CERTIFICATE_EXPIRED => Refusal::Expired,
            other => Refusal::Alert(other),
        }
    }

    /// The `reason` label of `ptproxy_tls_refusals_total`.
    pub fn label(&self) -> &'static str {
        match self {
            Refusal::UnknownCa => "unknown_ca",
            Refusal::Expired => "expired",
            Refusal::NotYetValid => "not_yet_valid",
            Refusal::NoCertificate => "no_certificate",
            Refusal::NameNotAllowed(_) => "name_not_allowed",
            Refusal::BadCertificate(_) => "bad_certificate",
            Refusal::Alert(_) => "handshake_failed",
        }
    }

    /// One sentence for the log.
    pub fn describe(&self) -> String {
        match self {
            Refusal::UnknownCa => "its certificate is not signed by tls.ca".into(),
            Refusal::Expired => "its certificate has expired".into(),
            Refusal::NotYetValid => "its certificate is not valid yet (check the clocks)".into(),
            Refusal::NoCertificate => "it sent no certificate".into(),
            Refusal::NameNotAllowed(names) => {
                format!("its certificate names {names:?} are not in tls.allowed_client_names")
            }
            Refusal::BadCertificate(why) => format!("its certificate is refused: {why}"),
            Refusal::Alert(alert) => {
                format!("the TLS handshake failed ({})", alert_name(*alert))
            }
        }
    }
}

/// A TLS alert's name (RFC 8446 §6), for transport error codes 0x100 + alert.
pub fn alert_name(alert: u8) -> String {
    let name = match alert {
        10 => "unexpected_message",
        20 => "bad_record_mac",
        40 => "handshake_failure",
        42 => "bad_certificate",
        43 => "unsupported_certificate",
        44 => "certificate_revoked",
        ALERT_CERTIFICATE_EXPIRED => "certificate_expired",
        46 => "certificate_unknown",
        47 => "illegal_parameter",
        ALERT_UNKNOWN_CA => "unknown_ca",
        49 => "access_denied",
        50 => "decode_error",
        51 => "decrypt_error",
        70 => "protocol_version",
        80 => "internal_error",
        109 => "missing_extension",
        ALERT_CERTIFICATE_REQUIRED => "certificate_required",
        120 => "no_application_protocol",
        _ => return format!("TLS alert {alert}"),
    };
    format!("TLS alert {alert} {name}")
}

/// Where the certificate check leaves its reason for the connection being handshaken (the
/// check runs inside quiche's `recv`, on this thread, for one connection at a time).
#[derive(Debug, Clone, Default)]
pub struct RefusalSlot(Arc<Mutex<Option<Refusal>>>);

impl RefusalSlot {
    pub fn put(&self, refusal: Refusal) {
        if let Ok(mut slot) = self.0.lock() {
            *slot = Some(refusal);
        }
    }

    pub fn take(&self) -> Option<Refusal> {
        self.0.lock().ok().and_then(|mut slot| slot.take())
    }
}

/// How long one address stays quiet in the log after a refusal was logged for it.
const QUIET: Duration = Duration::from_secs(60);
/// Addresses remembered at most (older entries are forgotten past that).
const MAX_ADDRESSES: usize = 4096;

/// Rate limit of the refusal log: one line per peer address per [`QUIET`], saying how many
/// refusals were not logged in between.
#[derive(Debug, Default)]
pub struct RefusalLog {
    /// Per address: when its last line was logged, refusals not logged since.
    seen: HashMap<IpAddr, (Instant, u64)>,
}

impl RefusalLog {
    /// Whether to log a refusal for `ip` now; `Some(n)` with the refusals suppressed since the
    /// last line.
    pub fn admit(&mut self, ip: IpAddr, now: Instant) -> Option<u64> {
        if let Some((last, suppressed)) = self.seen.get_mut(&ip) {
            if now.saturating_duration_since(*last) < QUIET {
                *suppressed += 1;
                return None;
            }
            let n = std::mem::take(suppressed);
            *last = now;
            return Some(n);
        }
        if self.seen.len() >= MAX_ADDRESSES {
            self.seen
                .retain(|_, (last, _)| now.saturating_duration_since(*last) < QUIET);
        }
        if self.seen.len() < MAX_ADDRESSES {
            self.seen.insert(ip, (now, 0));
        }
        Some(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verifier_errors_map_to_operator_reasons() {
        let r = Refusal::from_verify_error(X509VerifyError::UNABLE_TO_GET_ISSUER_CERT_LOCALLY);
        assert_eq!(
            (r.label(), r.describe().contains("tls.ca")),
            ("unknown_ca", true)
        );
        let r = Refusal::from_verify_error(X509VerifyError::CERT_HAS_EXPIRED);
        assert_eq!(r.label(), "expired");
        let r = Refusal::from_verify_error(X509VerifyError::CERT_NOT_YET_VALID);
        assert_eq!(r.label(), "not_yet_valid");
        let r = Refusal::from_verify_error(X509VerifyError::CERT_REVOKED);
        assert_eq!(r.label(), "bad_certificate");
    }

    #[test]
    fn alerts_map_to_reasons_and_names() {
        assert_eq!(Refusal::from_alert(116), Refusal::NoCertificate);
        assert_eq!(Refusal::from_alert(48), Refusal::UnknownCa);
        assert_eq!(Refusal::from_alert(40).label(), "handshake_failed");
        assert_eq!(alert_name(116), "TLS alert 116 certificate_required");
        assert_eq!(alert_name(200), "TLS alert 200");
    }

    #[test]
    fn log_admits_once_per_address_and_minute_and_counts_the_rest() {
        let mut log = RefusalLog::default();
        let t0 = Instant::now();
        let a: IpAddr = "192.0.2.1".parse().expect("ip");
        let b: IpAddr = "192.0.2.2".parse().expect("ip");
        assert_eq!(log.admit(a, t0), Some(0));
        assert_eq!(log.admit(a, t0 + Duration::from_secs(1)), None);
        assert_eq!(log.admit(a, t0 + Duration::from_secs(2)), None);
        assert_eq!(log.admit(b, t0 + Duration::from_secs(2)), Some(0));
        assert_eq!(log.admit(a, t0 + QUIET + Duration::from_secs(1)), Some(2));
    }
}
