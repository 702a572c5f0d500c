//! In-memory doubles of the exchange machines' ports, for tests only: the unit tests of
//! `server::exchange` and `client::downstream` and the `exchange` fuzz target (`fuzz/src`, also
//! replayed by `tests/fuzz_replay.rs`) drive the real machines through them, with a manual
//! clock. Each double records what the machine did and has knobs (plain pub fields) for the
//! failures a test injects: blocked streams, connects that fail or hang, refused streams, peers
//! that stop reading.
//!
//! Compiled only for `cfg(test)` or with the `testing` feature (the fuzz crate and the main
//! crate's own integration tests turn it on): production builds never compile it.
//!
//! - [`MemConn`]: a TCP connection, upstream (server) or from service A (client).
//! - [`server`]: the request stream and the upstream pool, and a rig holding one exchange.
//! - [`client`]: the session, and a rig holding one downstream.
//! - [`certs`]: self-signed certificates with chosen names.

use std::ops::{Deref, DerefMut};
use std::time::{Duration, Instant};

pub mod certs;
pub mod client;
mod conn;
pub mod server;

pub use conn::{MemConn, Released};

/// Consecutive `drive` calls that yield (step budget spent) before it counts as a busy loop.
pub const MAX_YIELDS: usize = 4096;

/// A machine with timers, as a manual clock drives it.
pub trait Clocked {
    fn now_mut(&mut self) -> &mut Instant;
    /// The machine's earliest deadline.
    fn next_deadline(&self) -> Option<Instant>;
    /// Handles what is due now (one `on_timer` call, as the reactor makes it).
    fn on_timer(&mut self);

    /// Whether a deadline is at or before now.
    fn is_due(&mut self) -> bool {
        let now = *self.now_mut();
        self.next_deadline().is_some_and(|at| at <= now)
    }

    /// Handles the timers due now with at most `max` `on_timer` calls; panics when one is
    /// still due after them (the reactor would spin).
    fn fire_due(&mut self, max: usize) {
        for _ in 0..max {
            if !self.is_due() {
                return;
            }
            self.on_timer();
        }
        assert!(
            !self.is_due(),
            "timers still due after {max} expiries: a busy loop"
        );
    }

    /// Moves the clock forward by `by`, stopping at every deadline on the way to handle it
    /// (at most `max` `on_timer` calls each).
    fn advance(&mut self, by: Duration, max: usize) {
        let to = *self.now_mut() + by;
        for _ in 0..100_000 {
            match self.next_deadline() {
                Some(at) if at <= to => {
                    let now = self.now_mut();
                    *now = (*now).max(at);
                    self.fire_due(max);
                }
                _ => {
                    *self.now_mut() = to;
                    return;
                }
            }
        }
        panic!("more than 100000 deadlines in one clock step");
    }
}

/// A rig whose clock the test moves to instants counted from `t0`, as a reactor would: every
/// timer due then is handled (at most 8 `on_timer` calls).
pub struct FromStart<R> {
    pub t0: Instant,
    pub rig: R,
}

impl<R: Clocked> FromStart<R> {
    /// `rig` built with its clock at `t0` (now).
    pub fn new(rig: impl FnOnce(Instant) -> R) -> Self {
        let t0 = Instant::now();
        FromStart { t0, rig: rig(t0) }
    }
    /// Moves the clock to `at` from t0 and handles what is due.
    pub fn advance_to(&mut self, at: Duration) {
        *self.rig.now_mut() = self.t0 + at;
        self.rig.fire_due(8);
    }
    /// The next deadline, from t0.
    pub fn deadline(&self) -> Option<Duration> {
        self.rig.next_deadline().map(|d| d - self.t0)
    }
}

impl<R> Deref for FromStart<R> {
    type Target = R;
    fn deref(&self) -> &R {
        &self.rig
    }
}

impl<R> DerefMut for FromStart<R> {
    fn deref_mut(&mut self) -> &mut R {
        &mut self.rig
    }
}
