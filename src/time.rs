//! Deadlines as plain data: a queue of `(Instant, key)` ordered by time.
//!
//! Owners keep their own current deadline and schedule it here; entries are never removed
//! early. When an entry expires the owner checks whether it still applies (lazy deletion), so
//! rescheduling is one insert and the reactor only ever asks [`TimerQueue::next_deadline`].

use std::collections::BTreeSet;
use std::time::Instant;

#[derive(Debug)]
pub struct TimerQueue<K: Ord + Copy> {
    entries: BTreeSet<(Instant, K)>,
}

impl<K: Ord + Copy> Default for TimerQueue<K> {
    fn default() -> Self {
        TimerQueue {
            entries: BTreeSet::new(),
        }
    }
}

impl<K: Ord + Copy> TimerQueue<K> {
    pub fn schedule(&mut self, at: Instant, key: K) {
        self.entries.insert((at, key));
    }

    pub fn next_deadline(&self) -> Option<Instant> {
        self.entries.first().map(|(at, _)| *at)
    }

    /// Removes and returns the keys whose deadline is at or before `now`, earliest first.
    pub fn expired(&mut self, now: Instant) -> Vec<K> {
        let mut out = Vec::new();
        while let Some(&(at, key)) = self.entries.first() {
            if at > now {
                break;
            }
            self.entries.pop_first();
            out.push(key);
        }
        out
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// The earlier of two optional deadlines.
pub fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, None) => a,
        (None, b) => b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn expires_in_time_order_and_keeps_later_ones() {
        let t0 = Instant::now();
        let mut q = TimerQueue::default();
        q.schedule(t0 + Duration::from_millis(30), 3u32);
        q.schedule(t0 + Duration::from_millis(10), 1);
        q.schedule(t0 + Duration::from_millis(20), 2);
        assert_eq!(q.next_deadline(), Some(t0 + Duration::from_millis(10)));
        assert_eq!(q.expired(t0 + Duration::from_millis(20)), vec![1, 2]);
        assert_eq!(q.len(), 1);
        assert_eq!(q.expired(t0), Vec::<u32>::new());
        assert_eq!(q.expired(t0 + Duration::from_secs(1)), vec![3]);
        assert!(q.is_empty());
    }

    #[test]
    fn earliest_of_optional_deadlines() {
        let t0 = Instant::now();
        let t1 = t0 + Duration::from_millis(1);
        assert_eq!(earliest(Some(t1), Some(t0)), Some(t0));
        assert_eq!(earliest(None, Some(t1)), Some(t1));
        assert_eq!(earliest(Some(t0), None), Some(t0));
        assert_eq!(earliest(None, None), None);
    }
}
