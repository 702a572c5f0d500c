//! A precise wake-up for the event loop: a Linux timerfd registered with mio.
//!
//! epoll timeouts count whole milliseconds, so a pacing release time 200 µs ahead would be
//! rounded up to 1 ms (for a paced 5 MB transfer that rounding alone cost seconds). The loop
//! arms this timer with the exact (nanosecond) distance to its next deadline and keeps the
//! rounded epoll timeout only as a fallback.
//!
//! Arming is a system call, and the deadline seldom moves between two turns of a busy loop
//! (the same pacing release, the same loss timer): [`PreciseTimer::arm_for`] arms only for a
//! new deadline, and only for one near enough ([`PRECISE_WITHIN`]) that the epoll timeout's
//! rounding up to the next millisecond would matter. A deadline that went away or moved later
//! (a loss timer re-armed by an acknowledgement, a pacing hold that ended) disarms the timer:
//! a disarm is one system call, a stale expiry a whole wake-up of the loop.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

use mio::unix::SourceFd;
use mio::{Interest, Registry, Token};

/// Deadlines further away than this are left to the epoll timeout (at most 1 ms late, a
/// tenth of the wait).
pub const PRECISE_WITHIN: Duration = Duration::from_millis(10);

pub struct PreciseTimer {
    fd: OwnedFd,
    /// The deadline the timer is armed for, until it fires.
    armed_for: Option<Instant>,
}

impl PreciseTimer {
    pub fn new(registry: &Registry, token: Token) -> io::Result<Self> {
        // SAFETY: plain timerfd_create(2); the result is checked before use.
        let raw = unsafe {
            libc::timerfd_create(
                libc::CLOCK_MONOTONIC,
                libc::TFD_NONBLOCK | libc::TFD_CLOEXEC,
            )
        };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a fresh descriptor nobody else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        registry.register(&mut SourceFd(&fd.as_raw_fd()), token, Interest::READABLE)?;
        Ok(PreciseTimer {
            fd,
            armed_for: None,
        })
    }

    /// Makes sure the loop wakes at `deadline`, `after` from now, and not before: arms the
    /// timer when the deadline is near and not the one it is armed for already, disarms it
    /// when it is armed for an earlier moment nothing waits for any more.
    pub fn arm_for(&mut self, deadline: Option<Instant>, after: Duration) {
        if self.armed_for == deadline {
            return;
        }
        match deadline {
            Some(at) if after <= PRECISE_WITHIN => {
                self.arm(after);
                self.armed_for = Some(at);
            }
            _ if self
                .armed_for
                .is_some_and(|a| deadline.is_none_or(|d| a < d)) =>
            {
                self.arm(Duration::ZERO);
                self.armed_for = None;
            }
            _ => {}
        }
    }

    /// Fires once, `after` from now (a zero duration disarms it).
    pub fn arm(&self, after: Duration) {
        let spec = libc::itimerspec {
            it_interval: libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            it_value: libc::timespec {
                tv_sec: after.as_secs().min(i64::MAX as u64) as libc::time_t,
                tv_nsec: after.subsec_nanos() as libc::c_long,
            },
        };
        // SAFETY: `spec` is a valid itimerspec; the old value is not requested.
        let rc =
            unsafe { libc::timerfd_settime(self.fd.as_raw_fd(), 0, &spec, std::ptr::null_mut()) };
        if rc != 0 {
            log::debug!("timerfd_settime: {}", io::Error::last_os_error());
        }
    }

    /// Consumes the expiration count after the timer fired (edge-triggered readiness).
    pub fn clear(&mut self) {
        self.armed_for = None;
        let mut count = [0u8; 8];
        // SAFETY: `count` is valid for an 8-byte write, the size timerfd reads produce.
        unsafe {
            libc::read(self.fd.as_raw_fd(), count.as_mut_ptr().cast(), count.len());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mio::{Events, Poll};

    const TIMER: Token = Token(3);

    /// Whether the timer fired within `wait`.
    fn fired(poll: &mut Poll, wait: Duration) -> bool {
        let mut events = Events::with_capacity(4);
        let until = Instant::now() + wait;
        while let Some(left) = until.checked_duration_since(Instant::now()) {
            poll.poll(&mut events, Some(left)).expect("poll");
            if events.iter().any(|e| e.token() == TIMER) {
                return true;
            }
        }
        false
    }

    #[test]
    fn a_near_deadline_fires_once() {
        let mut poll = Poll::new().expect("poll");
        let mut timer = PreciseTimer::new(poll.registry(), TIMER).expect("timer");
        let after = Duration::from_millis(5);
        timer.arm_for(Some(Instant::now() + after), after);
        assert!(fired(&mut poll, Duration::from_millis(200)));
        timer.clear();
        assert!(!fired(&mut poll, Duration::from_millis(30)));
    }

    #[test]
    fn a_deadline_that_went_away_or_moved_far_disarms_the_timer() {
        let mut poll = Poll::new().expect("poll");
        let mut timer = PreciseTimer::new(poll.registry(), TIMER).expect("timer");
        let after = Duration::from_millis(5);
        timer.arm_for(Some(Instant::now() + after), after);
        timer.arm_for(None, Duration::MAX);
        assert!(!fired(&mut poll, Duration::from_millis(50)), "no deadline");
        timer.arm_for(Some(Instant::now() + after), after);
        let far = Duration::from_secs(5);
        timer.arm_for(Some(Instant::now() + far), far);
        assert!(
            !fired(&mut poll, Duration::from_millis(50)),
            "left to epoll"
        );
    }
}
