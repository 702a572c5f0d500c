//! Bounded drains and the work they leave behind.
//!
//! The loops that empty a source of work in one turn (datagrams waiting on a UDP socket, HTTP/3
//! events waiting in a session) stop after a fixed number of items, so one busy source cannot
//! starve the rest of the turn (timers, TCP sockets, sending). mio is edge-triggered: what such a
//! loop leaves behind gets no new readiness event, and would wait for the next packet or timer.
//! So [`drain_bounded`] says whether it stopped at its cap, and the role keeps a [`Backlog`] per
//! source: while one is set, the role's `next_deadline` is now and its next `process` drains
//! that source again.

use std::ops::ControlFlow;

/// Most datagrams one UDP socket is read for in one loop turn (both roles).
pub const DATAGRAMS_PER_TURN: usize = 1024;
/// Most HTTP/3 events one session is polled for in one loop turn (both roles).
pub const H3_EVENTS_PER_TURN: usize = 10_000;

/// How a bounded drain ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Drain {
    /// The source said it had nothing more.
    Emptied,
    /// The cap stopped it: the source may hold more work.
    Capped,
}

/// Runs `step` until it breaks (the source is empty, or failed) or `cap` steps ran.
///
/// A source that happens to empty on exactly the `cap`-th step is reported `Capped`: it costs
/// one more (empty) drain, never a lost item.
pub fn drain_bounded(cap: usize, mut step: impl FnMut() -> ControlFlow<()>) -> Drain {
    for _ in 0..cap {
        if step().is_break() {
            return Drain::Emptied;
        }
    }
    Drain::Capped
}

/// A source that may hold work: drain it in the next turn, without waiting for an event.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Backlog {
    pending: bool,
}

impl Backlog {
    /// The source reported readiness (or otherwise has work): drain it this turn.
    pub fn mark(&mut self) {
        self.pending = true;
    }

    /// Records how a drain of the source ended; a capped drain leaves work pending.
    pub fn note(&mut self, drain: Drain) {
        self.pending |= drain == Drain::Capped;
    }

    /// Whether the source has work pending (the role's `next_deadline` is then now).
    pub fn is_pending(&self) -> bool {
        self.pending
    }

    /// Whether the source has work pending, clearing the flag (the caller drains it now).
    pub fn take(&mut self) -> bool {
        std::mem::take(&mut self.pending)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A source of `items` work items, drained by steps.
    fn step_of(items: &mut usize) -> impl FnMut() -> ControlFlow<()> + '_ {
        move || {
            if *items == 0 {
                return ControlFlow::Break(());
            }
            *items -= 1;
            ControlFlow::Continue(())
        }
    }

    #[test]
    fn a_drain_stops_at_its_cap_and_says_so() {
        let mut items = 25;
        assert_eq!(drain_bounded(10, step_of(&mut items)), Drain::Capped);
        assert_eq!(items, 15, "exactly the cap was taken");
        assert_eq!(drain_bounded(100, step_of(&mut items)), Drain::Emptied);
        assert_eq!(items, 0);
    }

    /// The role's loop as the backlog drives it: one readiness edge for 25 items, a cap of 10,
    /// no further edge. Every item is taken, in three turns, each at most the cap.
    #[test]
    fn a_backlog_finishes_the_work_left_at_the_cap_without_a_new_event() {
        let mut items = 25;
        let mut backlog = Backlog::default();
        backlog.mark();
        let mut turns = 0;
        while backlog.take() {
            turns += 1;
            assert!(turns <= 10, "the backlog never ended");
            let before = items;
            backlog.note(drain_bounded(10, step_of(&mut items)));
            assert!(before - items <= 10, "a turn took more than the cap");
        }
        assert_eq!((items, turns), (0, 3));
        assert!(!backlog.is_pending());
    }

    #[test]
    fn an_emptied_drain_leaves_nothing_pending() {
        let mut backlog = Backlog::default();
        backlog.note(Drain::Emptied);
        assert!(!backlog.is_pending());
        backlog.note(Drain::Capped);
        backlog.note(Drain::Emptied);
        assert!(
            backlog.is_pending(),
            "a capped drain in the turn keeps it pending"
        );
        assert!(backlog.take());
        assert!(!backlog.take());
    }
}
