//! The work a role's table of state machines has for the loop: one timer per machine, the
//! machines with possible progress this turn ("dirty"), and the source of events left at a
//! poll cap ([`Backlog`]). Both roles' sans-IO tables (`server::requests`,
//! `client::downstreams`) keep one; while it [`has_work`](Agenda::has_work), the driver's
//! deadline is now.

use std::time::Instant;

use super::backlog::{Backlog, Drain};
use crate::time::TimerTable;

#[derive(Debug, Default)]
pub struct Agenda {
    timers: TimerTable<usize>,
    dirty: Vec<usize>,
    backlog: Backlog,
}

impl Agenda {
    /// Machine `key`'s timer: its next deadline, or none.
    pub fn set_timer(&mut self, key: usize, at: Option<Instant>) {
        self.timers.set(key, at);
    }

    /// The machines whose timer is due at `now` (each handed out once).
    pub fn expired(&mut self, now: Instant) -> Vec<usize> {
        self.timers.expired(now)
    }

    /// Machine `key` may progress: run it before the turn ends.
    pub fn mark(&mut self, key: usize) {
        self.dirty.push(key);
    }

    pub fn mark_all(&mut self, keys: impl IntoIterator<Item = usize>) {
        self.dirty.extend(keys);
    }

    /// The machines marked so far, each once, in key order; the marks are cleared.
    pub fn take_marked(&mut self) -> Vec<usize> {
        let mut dirty = std::mem::take(&mut self.dirty);
        dirty.sort_unstable();
        dirty.dedup();
        dirty
    }

    /// A poll of the events source begins (what it leaves is noted by [`Self::note_poll`]).
    pub fn start_poll(&mut self) {
        self.backlog.take();
    }

    /// How the poll ended: stopped at its cap, it leaves work for the next turn.
    pub fn note_poll(&mut self, drain: Drain) {
        self.backlog.note(drain);
    }

    /// Work is left for this turn or the next (marked machines, events left at the cap).
    pub fn has_work(&self) -> bool {
        !self.dirty.is_empty() || self.backlog.is_pending()
    }

    pub fn next_deadline(&self) -> Option<Instant> {
        self.timers.next_deadline()
    }

    /// Entries in the timer table (at most one per machine).
    pub fn timer_entries(&self) -> usize {
        self.timers.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn marks_come_back_once_each_and_capped_polls_leave_work() {
        let mut a = Agenda::default();
        assert!(!a.has_work());
        a.mark_all([5, 1, 5, 3, 1]);
        assert!(a.has_work());
        assert_eq!(a.take_marked(), vec![1, 3, 5]);
        assert!(!a.has_work());
        a.start_poll();
        a.note_poll(Drain::Capped);
        assert!(a.has_work(), "a poll stopped at its cap leaves work");
        a.start_poll();
        a.note_poll(Drain::Emptied);
        assert!(!a.has_work());
    }

    #[test]
    fn one_timer_per_machine() {
        let mut a = Agenda::default();
        let t0 = Instant::now();
        for i in 0..1000u64 {
            a.set_timer(7, Some(t0 + Duration::from_millis(i)));
        }
        a.set_timer(8, Some(t0 + Duration::from_secs(5)));
        assert_eq!(a.timer_entries(), 2);
        assert_eq!(a.next_deadline(), Some(t0 + Duration::from_millis(999)));
        assert_eq!(a.expired(t0 + Duration::from_secs(1)), vec![7]);
        a.set_timer(8, None);
        assert_eq!(a.timer_entries(), 0);
    }
}
