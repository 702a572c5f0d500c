//! A precise wake-up for the event loop: a Linux timerfd registered with mio.
//!
//! epoll timeouts count whole milliseconds, so a pacing release time 200 µs ahead would be
//! rounded up to 1 ms (for a paced 5 MB transfer that rounding alone cost seconds). The loop
//! arms this timer with the exact (nanosecond) distance to its next deadline and keeps the
//! rounded epoll timeout only as a fallback.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

use mio::unix::SourceFd;
use mio::{Interest, Registry, Token};

pub struct PreciseTimer {
    fd: OwnedFd,
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
        Ok(PreciseTimer { fd })
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
    pub fn clear(&self) {
        let mut count = [0u8; 8];
        // SAFETY: `count` is valid for an 8-byte write, the size timerfd reads produce.
        unsafe {
            libc::read(self.fd.as_raw_fd(), count.as_mut_ptr().cast(), count.len());
        }
    }
}
