//! Per-source handshake rate limit: one token bucket per client IP address (ports are free for
//! an attacker to vary, so they share the bucket). The table is bounded: a bucket that has
//! refilled completely is the same as no bucket and is forgotten when room is needed; when
//! every tracked source is still busy, new sources are refused until one refills.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Instant;

/// Sources tracked at once (about 40 bytes each).
pub const MAX_SOURCES: usize = 4096;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

#[derive(Debug)]
pub struct RateLimiter {
    rate: f64,
    burst: f64,
    capacity: usize,
    buckets: HashMap<IpAddr, Bucket>,
}

impl RateLimiter {
    /// `rate` handshakes per second per source, `burst` at once.
    pub fn new(rate: u32, burst: u32) -> Self {
        Self::with_capacity(rate, burst, MAX_SOURCES)
    }

    fn with_capacity(rate: u32, burst: u32, capacity: usize) -> Self {
        RateLimiter {
            rate: f64::from(rate),
            burst: f64::from(burst.max(1)),
            capacity,
            buckets: HashMap::new(),
        }
    }

    /// Takes one handshake from `source`'s bucket; false when it is empty.
    pub fn allow(&mut self, source: IpAddr, now: Instant) -> bool {
        if !self.buckets.contains_key(&source) && !self.make_room(now) {
            return false;
        }
        let (rate, burst) = (self.rate, self.burst);
        let b = self.buckets.entry(source).or_insert(Bucket {
            tokens: burst,
            at: now,
        });
        b.tokens = refilled(b, rate, burst, now);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Forgets full buckets when the table is full; false if none could go.
    fn make_room(&mut self, now: Instant) -> bool {
        if self.buckets.len() < self.capacity {
            return true;
        }
        let (rate, burst) = (self.rate, self.burst);
        self.buckets
            .retain(|_, b| refilled(b, rate, burst, now) < burst);
        self.buckets.len() < self.capacity
    }

    pub fn sources(&self) -> usize {
        self.buckets.len()
    }
}

fn refilled(b: &Bucket, rate: f64, burst: f64, now: Instant) -> f64 {
    let secs = now.saturating_duration_since(b.at).as_secs_f64();
    (b.tokens + secs * rate).min(burst)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn a_burst_then_the_sustained_rate() {
        let mut r = RateLimiter::new(10, 3);
        let t0 = Instant::now();
        let a = ip("192.0.2.1");
        let first: Vec<bool> = (0..5).map(|_| r.allow(a, t0)).collect();
        assert_eq!(first, [true, true, true, false, false]);
        assert!(!r.allow(a, t0 + Duration::from_millis(50)), "half a token");
        assert!(
            r.allow(a, t0 + Duration::from_millis(100)),
            "one token after 1/rate"
        );
        assert!(!r.allow(a, t0 + Duration::from_millis(100)));
        let later = t0 + Duration::from_secs(60);
        let refilled: Vec<bool> = (0..4).map(|_| r.allow(a, later)).collect();
        assert_eq!(refilled, [true, true, true, false], "never above the burst");
    }

    #[test]
    fn sources_are_limited_apart() {
        let mut r = RateLimiter::new(1, 1);
        let t0 = Instant::now();
        assert!(r.allow(ip("192.0.2.1"), t0));
        assert!(!r.allow(ip("192.0.2.1"), t0));
        assert!(
            r.allow(ip("192.0.2.2"), t0),
            "another address has its own bucket"
        );
        assert!(r.allow(ip("2001:db8::1"), t0));
    }

    #[test]
    fn the_table_stays_bounded() {
        let mut r = RateLimiter::with_capacity(1, 2, 2);
        let t0 = Instant::now();
        assert!(r.allow(ip("192.0.2.1"), t0));
        assert!(r.allow(ip("192.0.2.2"), t0));
        assert!(
            !r.allow(ip("192.0.2.3"), t0),
            "table full of busy sources: refused"
        );
        assert_eq!(r.sources(), 2);
        let later = t0 + Duration::from_secs(5);
        assert!(
            r.allow(ip("192.0.2.3"), later),
            "refilled buckets make room"
        );
        assert_eq!(r.sources(), 1);
    }
}
