//! Accepting at the file-descriptor limit: when `accept` fails with EMFILE/ENFILE (or the
//! kernel is out of socket memory), the pending connection stays in the backlog and mio, being
//! edge-triggered, reports nothing new until another connection arrives. So the listener's
//! owner stops trying and retries on a timer ([`RETRY`]) until a descriptor is free again.
//! The condition is logged at most every [`LOG_EVERY`], however often the listener flaps
//! between accepting and running out (it does: freed descriptors are taken at once by the
//! backlog), and "accepting again" only ends an episode that was logged.

use std::io;
use std::time::{Duration, Instant};

/// How long accepting pauses after running out of descriptors.
pub const RETRY: Duration = Duration::from_millis(200);
/// Least time between two warnings of one episode.
pub const LOG_EVERY: Duration = Duration::from_secs(60);

#[derive(Debug, Default)]
pub struct AcceptPause {
    /// Paused until then; `None` when accepting normally.
    until: Option<Instant>,
    /// Failed accepts since the last warning (shown with the next one).
    failures: u64,
    last_warning: Option<Instant>,
    /// The current shortage was logged: its end is logged too.
    warned: bool,
}

/// Whether `e` means "no descriptor or socket buffer left", which only time can cure.
pub fn is_resource_exhaustion(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}

impl AcceptPause {
    /// `accept` on `what` failed with `e` (see [`is_resource_exhaustion`]): pause.
    pub fn pause(&mut self, what: &str, e: &io::Error, now: Instant) {
        self.until = Some(now + RETRY);
        self.failures += 1;
        let quiet = self
            .last_warning
            .is_some_and(|t| now.saturating_duration_since(t) < LOG_EVERY);
        if !quiet {
            log::warn!(
                "{what}: cannot accept connections: {e} ({} failed accept(s)); retrying every {} ms \
                 (raise the descriptor limit, e.g. LimitNOFILE=, or lower http.max_connections)",
                self.failures,
                RETRY.as_millis()
            );
            self.failures = 0;
            self.last_warning = Some(now);
            self.warned = true;
        }
    }

    /// A connection was accepted: the episode (if any) is over.
    pub fn accepted(&mut self, what: &str) {
        if std::mem::take(&mut self.warned) {
            log::info!("{what}: accepting connections again");
        }
    }

    pub fn is_paused(&self) -> bool {
        self.until.is_some()
    }

    /// True once when the pause is over: time to try accepting again.
    pub fn retry_due(&mut self, now: Instant) -> bool {
        if self.until.is_some_and(|t| t <= now) {
            self.until = None;
            return true;
        }
        false
    }

    pub fn next_deadline(&self) -> Option<Instant> {
        self.until
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pauses_then_retries_once_per_period() {
        let emfile = io::Error::from_raw_os_error(libc::EMFILE);
        assert!(is_resource_exhaustion(&emfile));
        assert!(!is_resource_exhaustion(&io::Error::from_raw_os_error(
            libc::ECONNABORTED
        )));
        let t0 = Instant::now();
        let mut p = AcceptPause::default();
        assert!(!p.is_paused() && !p.retry_due(t0));
        p.pause("listen", &emfile, t0);
        assert!(p.is_paused());
        assert_eq!(p.next_deadline(), Some(t0 + RETRY));
        assert!(!p.retry_due(t0 + RETRY / 2));
        assert!(p.retry_due(t0 + RETRY));
        assert!(!p.is_paused() && !p.retry_due(t0 + RETRY * 2));
        // Warned once; the next failures within LOG_EVERY are only counted.
        p.pause("listen", &emfile, t0 + RETRY);
        assert_eq!((p.failures, p.last_warning), (1, Some(t0)));
        p.pause("listen", &emfile, t0 + LOG_EVERY);
        assert_eq!((p.failures, p.last_warning), (0, Some(t0 + LOG_EVERY)));
        p.accepted("listen");
        assert!(!p.warned);
    }

    /// Regression: right after descriptors are freed, the backlog takes them again; that
    /// new shortage within LOG_EVERY is counted, not logged as a second episode.
    #[test]
    fn flapping_at_the_limit_warns_once_per_period() {
        let emfile = io::Error::from_raw_os_error(libc::EMFILE);
        let t0 = Instant::now();
        let mut p = AcceptPause::default();
        p.pause("listen", &emfile, t0);
        p.accepted("listen");
        let later = t0 + RETRY;
        p.pause("listen", &emfile, later);
        assert_eq!((p.failures, p.last_warning, p.warned), (1, Some(t0), false));
        p.accepted("listen");
        p.pause("listen", &emfile, t0 + LOG_EVERY);
        assert_eq!(
            (p.failures, p.last_warning, p.warned),
            (0, Some(t0 + LOG_EVERY), true)
        );
    }
}
