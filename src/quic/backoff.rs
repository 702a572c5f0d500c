//! Reconnect pacing for the client's session: capped exponential backoff with jitter, pure.
//!
//! Attempt 0 (the first reconnect after a session that was up) waits `initial`; each failed
//! attempt doubles the wait up to `max`. Jitter draws the wait uniformly from [wait/2, wait]
//! so that many clients restarted together do not reconnect in lockstep.

use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    failures: u32,
}

impl Backoff {
    pub fn new(initial: Duration, max: Duration) -> Self {
        Backoff {
            initial,
            max,
            failures: 0,
        }
    }

    /// The wait before the next attempt; `random` is a uniform sample in [0, 1).
    pub fn next_delay(&mut self, random: f64) -> Duration {
        let factor = 2u32.saturating_pow(self.failures.min(30));
        let wait = self.initial.saturating_mul(factor).min(self.max);
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
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(1000));
        let full: Vec<u128> = (0..6).map(|_| b.next_delay(1.0).as_millis()).collect();
        assert_eq!(full, vec![100, 200, 400, 800, 1000, 1000]);
        b.reset();
        assert_eq!(b.next_delay(0.0), Duration::from_millis(50));
        let d = b.next_delay(0.5);
        assert!(
            d >= Duration::from_millis(100) && d <= Duration::from_millis(200),
            "{d:?}"
        );
    }
}
