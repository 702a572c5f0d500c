//! Reconnect pacing for the client's session: capped exponential backoff with jitter, pure.
//!
//! Attempt 0 (the first reconnect after a session that was up) waits `initial`; each failed
//! attempt doubles the wait up to `max`. Jitter draws the wait uniformly from [wait/2, wait]
//! so that many clients restarted together do not reconnect in lockstep.
//!
//! For [`FAST_WINDOW`] after a session was lost the wait stays at most [`FAST_CAP`]: a peer
//! that restarts (a deploy, a crash under systemd) is back within seconds, and the session
//! should be back with it, not up to `max` later. Past the window, attempts thin out to `max`
//! so that a long outage costs little (about 2.5 KB per attempt: two Initial datagrams).

use std::time::{Duration, Instant};

/// How long after a loss reconnect attempts stay frequent.
pub const FAST_WINDOW: Duration = Duration::from_secs(30);
/// The longest wait between attempts within [`FAST_WINDOW`].
pub const FAST_CAP: Duration = Duration::from_secs(1);

#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    failures: u32,
    /// End of the fast window of the last loss.
    fast_until: Option<Instant>,
}

impl Backoff {
    pub fn new(initial: Duration, max: Duration) -> Self {
        Backoff {
            initial,
            max,
            failures: 0,
            fast_until: None,
        }
    }

    /// A session that was up was lost at `now`: attempts start over, frequent for a while.
    pub fn on_loss(&mut self, now: Instant) {
        self.failures = 0;
        self.fast_until = Some(now + FAST_WINDOW);
    }

    /// The wait before the next attempt at `now`; `random` is a uniform sample in [0, 1).
    pub fn next_delay(&mut self, now: Instant, random: f64) -> Duration {
        let cap = match self.fast_until {
            Some(until) if now < until => self.max.min(FAST_CAP),
            _ => self.max,
        };
        let factor = 2u32.saturating_pow(self.failures.min(30));
        let wait = self.initial.saturating_mul(factor).min(cap);
        self.failures = self.failures.saturating_add(1);
        wait.mul_f64(0.5 + 0.5 * random.clamp(0.0, 1.0))
    }

    /// The session came up: the next loss starts from `initial` again.
    pub fn reset(&mut self) {
        self.failures = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_cap_with_jitter_in_range() {
        let now = Instant::now();
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(1000));
        let full: Vec<u128> = (0..6).map(|_| b.next_delay(now, 1.0).as_millis()).collect();
        assert_eq!(full, vec![100, 200, 400, 800, 1000, 1000]);
        b.reset();
        assert_eq!(b.next_delay(now, 0.0), Duration::from_millis(50));
        let d = b.next_delay(now, 0.5);
        assert!(
            d >= Duration::from_millis(100) && d <= Duration::from_millis(200),
            "{d:?}"
        );
    }

    #[test]
    fn attempts_stay_frequent_for_a_while_after_a_loss() {
        let t0 = Instant::now();
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
        b.on_loss(t0);
        let waits: Vec<u128> = (0..8).map(|_| b.next_delay(t0, 1.0).as_millis()).collect();
        assert_eq!(waits, vec![100, 200, 400, 800, 1000, 1000, 1000, 1000]);
        let later = t0 + FAST_WINDOW + Duration::from_secs(1);
        assert_eq!(
            b.next_delay(later, 1.0),
            Duration::from_secs(5),
            "then up to max"
        );
        b.on_loss(later);
        assert_eq!(
            b.next_delay(later, 1.0),
            Duration::from_millis(100),
            "starts over"
        );
    }
}
