//! Deadlines as plain data, in two layers (the shape of quinn-proto's `TimerTable`):
//!
//! - [`Slots`]: one object's named timers (connect, response, head, keep-alive, linger, ...).
//!   Each slot is armed and cleared explicitly; [`Slots::pop_expired`] hands out a slot that
//!   fired and clears it, so a past deadline is handled once and is never re-armed by accident.
//! - [`TimerTable`]: the process-wide order of the owners of such slots, with at most one entry
//!   per owner (its earliest slot), replaced in place whenever it changes. Its size is the
//!   number of owners with a timer, whatever the traffic or the timeouts.
//!
//! The reactor only ever asks [`TimerTable::next_deadline`].

use std::collections::{BTreeSet, HashMap};
use std::hash::Hash;
use std::time::Instant;

/// Most named timers one object may have.
const MAX_SLOTS: usize = 8;

/// A set of named timers: an enum whose variants index the slots.
pub trait Slot: Copy + std::fmt::Debug + 'static {
    /// Every variant, in index order (`ALL[s.index()] == s`).
    const ALL: &'static [Self];
    fn index(self) -> usize;
}

/// One object's named timers.
#[derive(Debug, Clone)]
pub struct Slots<S: Slot> {
    at: [Option<Instant>; MAX_SLOTS],
    _names: std::marker::PhantomData<S>,
}

impl<S: Slot> Default for Slots<S> {
    fn default() -> Self {
        debug_assert!(S::ALL.len() <= MAX_SLOTS);
        Slots {
            at: [None; MAX_SLOTS],
            _names: std::marker::PhantomData,
        }
    }
}

impl<S: Slot> Slots<S> {
    /// Arms (or moves) `slot` to fire at `at`.
    pub fn arm(&mut self, slot: S, at: Instant) {
        self.at[slot.index()] = Some(at);
    }

    pub fn clear(&mut self, slot: S) {
        self.at[slot.index()] = None;
    }

    pub fn get(&self, slot: S) -> Option<Instant> {
        self.at[slot.index()]
    }

    pub fn is_armed(&self, slot: S) -> bool {
        self.get(slot).is_some()
    }

    /// The earliest armed slot's deadline.
    pub fn next(&self) -> Option<Instant> {
        self.at.iter().flatten().min().copied()
    }

    /// The earliest slot due at `now`, cleared: each expiry is handed out exactly once. Other
    /// due slots stay armed (the owner's deadline is then already due) so that a handler whose
    /// action ends them (an answer ends the connect and response waits) can clear them first.
    pub fn pop_expired(&mut self, now: Instant) -> Option<S> {
        let (_, index) = self
            .at
            .iter()
            .enumerate()
            .filter_map(|(i, at)| at.filter(|at| *at <= now).map(|at| (at, i)))
            .min()?;
        self.at[index] = None;
        S::ALL.get(index).copied()
    }
}

/// Owners ordered by their next deadline; one entry per owner.
#[derive(Debug)]
pub struct TimerTable<K: Ord + Copy + Hash> {
    order: BTreeSet<(Instant, K)>,
    by_owner: HashMap<K, Instant>,
}

impl<K: Ord + Copy + Hash> Default for TimerTable<K> {
    fn default() -> Self {
        TimerTable {
            order: BTreeSet::new(),
            by_owner: HashMap::new(),
        }
    }
}

impl<K: Ord + Copy + Hash> TimerTable<K> {
    /// Sets `owner`'s next deadline (`None` removes it), replacing the previous one.
    pub fn set(&mut self, owner: K, at: Option<Instant>) {
        let previous = match at {
            Some(at) => self.by_owner.insert(owner, at),
            None => self.by_owner.remove(&owner),
        };
        if previous == at {
            return;
        }
        if let Some(previous) = previous {
            self.order.remove(&(previous, owner));
        }
        if let Some(at) = at {
            self.order.insert((at, owner));
        }
    }

    pub fn next_deadline(&self) -> Option<Instant> {
        self.order.first().map(|(at, _)| *at)
    }

    /// Removes and returns the owners due at `now`, earliest first. Each must be handled and
    /// then [`TimerTable::set`] again from its slots.
    pub fn expired(&mut self, now: Instant) -> Vec<K> {
        let mut out = Vec::new();
        while let Some(&(at, owner)) = self.order.first() {
            if at > now {
                break;
            }
            self.order.pop_first();
            self.by_owner.remove(&owner);
            out.push(owner);
        }
        out
    }

    /// Entries held: at most one per owner.
    pub fn len(&self) -> usize {
        self.order.len()
    }

    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
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

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum T {
        Connect,
        Response,
    }

    impl Slot for T {
        const ALL: &'static [Self] = &[T::Connect, T::Response];
        fn index(self) -> usize {
            self as usize
        }
    }

    #[test]
    fn a_slot_fires_once_and_stays_cleared() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut s = Slots::<T>::default();
        assert_eq!((s.next(), s.pop_expired(t0)), (None, None));
        s.arm(T::Response, t0 + ms(10));
        s.arm(T::Connect, t0 + ms(20));
        assert_eq!(s.next(), Some(t0 + ms(10)));
        assert_eq!(s.pop_expired(t0 + ms(5)), None);
        assert_eq!(s.pop_expired(t0 + ms(30)), Some(T::Response));
        assert_eq!(
            s.next(),
            Some(t0 + ms(20)),
            "the other due slot stays armed"
        );
        assert_eq!(s.pop_expired(t0 + ms(30)), Some(T::Connect));
        // Handled: nothing is left to fire again, however late it is.
        assert_eq!((s.pop_expired(t0 + ms(60)), s.next()), (None, None));
        s.arm(T::Response, t0 + ms(40));
        s.clear(T::Response);
        assert_eq!(s.next(), None);
    }

    #[test]
    fn the_table_holds_one_entry_per_owner_whatever_the_rearming() {
        let t0 = Instant::now();
        let mut q = TimerTable::default();
        // 10^5 re-armings of 3 owners (what a busy exchange does on every progress).
        for i in 0..100_000u64 {
            q.set(i % 3, Some(t0 + Duration::from_micros(i)));
        }
        assert_eq!(q.len(), 3);
        q.set(1, None);
        assert_eq!(q.len(), 2);
        let last = t0 + Duration::from_micros(99_999);
        assert_eq!(q.next_deadline(), Some(t0 + Duration::from_micros(99_998)));
        assert_eq!(q.expired(last), vec![2, 0]);
        assert!(q.is_empty() && q.expired(last + Duration::from_secs(1)).is_empty());
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
